/*
 * libFuzzer target: ocdz_mail_build() with arbitrary recipient, card
 * code, fields, display name and subject and text templates, read back
 * with the unit tests' MIME reader (t/unit/mime.h).
 *
 * Input: one byte (language, options), then NUL-separated: recipient,
 * card code, number, transaction number, display name, subject
 * template, text template.
 *
 * Invariants, when a message is built: CRLF lines only, header lines
 * within 998 and body lines within 76 characters; exactly the expected
 * headers, in order (no field adds one); To is the recipient; the
 * subject decodes to the rendered subject with no character split
 * between encoded words; in the body the boundary occurs only as the
 * three delimiters; each part decodes to exactly its rendered text.
 * Always:
 * every block the builder allocated was wiped before it was released;
 * a refusal leaves no buffer and gives a printable reason.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_mail.h"
#include "../t/unit/mime.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)


static int  allocs, frees, dirty;


static void *
spy_alloc(void *data, size_t size)
{
    size_t  *p;

    p = malloc(size + sizeof(size_t));
    if (p == NULL) {
        return NULL;
    }

    allocs++;
    p[0] = size;

    return p + 1;
}


static void
spy_free(void *data, void *ptr)
{
    size_t          i, *p;
    unsigned char  *b = ptr;

    p = (size_t *) ptr - 1;

    for (i = 0; i < p[0]; i++) {
        dirty += b[i] != 0;
    }

    frees++;
    free(p);
}


static const ocdz_alloc_t  spy = { spy_alloc, spy_free, NULL };


/* The rendered text, with CRLF line breaks when crlf. */

static char *
rendered(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars, int crlf,
    size_t *len)
{
    char        *s, err[256];
    size_t       i, o;
    ocdz_buf_t   b;

    ocdz_buf_init(&b, &ocdz_alloc_std, 0);
    check(ocdz_tpl_render(tpl, vars, &b, err, sizeof(err)) == OCDZ_MSG_OK);

    s = malloc(b.len * 2 + 1);
    check(s != NULL);

    for (i = 0, o = 0; i < b.len; i++) {
        if (crlf && b.data[i] == '\n') {
            s[o++] = '\r';
        }

        s[o++] = b.data[i];
    }

    s[o] = '\0';
    *len = o;
    ocdz_buf_free(&b);

    return s;
}


/* The i-th part, up to the next "\r\n--" boundary. */

static void
check_part(const char *body, const char *end, const char *boundary, int i,
    const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars)
{
    char                   *got, *want, delim[160], next[160];
    size_t                  n, wlen;
    const char             *p, *q, *cte;

    static mime_entity_t    part;

    snprintf(delim, sizeof(delim), "\r\n--%s\r\n", boundary);
    snprintf(next, sizeof(next), "\r\n--%s", boundary);

    p = mime_find(body, end - body, delim);
    check(p != NULL);

    /* the i-th delimiter */
    while (i-- > 0) {
        p = mime_find(p + 1, end - p - 1, delim);
        check(p != NULL);
    }

    p += strlen(delim);
    q = mime_find(p, end - p, next);
    check(q != NULL);
    check(mime_parse(p, q - p, &part) == 0 && part.n == 2);

    cte = mime_header(&part, "Content-Transfer-Encoding");
    check(cte != NULL);

    got = malloc(part.body_len + 1);
    check(got != NULL);

    if (strcmp(cte, "quoted-printable") == 0) {
        n = mime_decode_qp(part.body, part.body_len, got);

    } else {
        check(strcmp(cte, "base64") == 0);
        n = mime_decode_b64(part.body, part.body_len, got);
    }

    want = rendered(tpl, vars, 1, &wlen);
    check(n == wlen && memcmp(got, want, n) == 0);

    free(got);
    free(want);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    i, rc, lang;
    char                   err[512], boundary[128], delim[160];
    char                  *want, *subject;
    size_t                 len, n, split;
    ocdz_buf_t             out, text;
    ocdz_mail_t            m;
    ocdz_tpl_t            *t[3], *custom[3];
    const char            *v, *p, *q, *line, *hdr_end;
    const uint8_t         *f[7], *end, *nul;
    size_t                 flen[7];
    ocdz_tpl_vars_t        vars;
    ocdz_mail_conf_t       conf;

    static mime_entity_t   e;
    static ocdz_tpl_t     *builtin[OCDZ_LANG_N][3];
    static const char     *names[] = {
        "Date", "From", "Reply-To", "To", "Subject", "Message-ID",
        "MIME-Version", "Content-Type", "Content-Language",
        "Auto-Submitted"
    };

    if (builtin[0][0] == NULL) {
        ocdz_buf_init(&text, &ocdz_alloc_std, 0);

        for (lang = 0; lang < OCDZ_LANG_N; lang++) {
            for (i = 0; i < 3; i++) {
                ocdz_buf_reset(&text);
                ocdz_tpl_builtin(i, lang, &text);
                check(ocdz_tpl_parse(&ocdz_alloc_std, i, (char *) text.data,
                                     text.len, &builtin[lang][i], err,
                                     sizeof(err)) == OCDZ_MSG_OK);
            }
        }

        ocdz_buf_free(&text);
    }

    if (size < 1) {
        return 0;
    }

    lang = data[0] % OCDZ_LANG_N;
    end = data + size;
    p = (const char *) data + 1;

    for (i = 0; i < 7; i++) {
        nul = memchr(p, '\0', end - (const uint8_t *) p);
        f[i] = (const uint8_t *) p;
        flen[i] = nul ? (size_t) (nul - (const uint8_t *) p)
                      : (size_t) (end - (const uint8_t *) p);
        p = nul ? (const char *) nul + 1 : (const char *) end;
    }

    for (i = 0; i < 3; i++) {
        t[i] = builtin[lang][i];
        custom[i] = NULL;
    }

    /* custom subject and text when the input gives parsable ones */
    if ((data[0] & 0x10) && flen[5] > 0 && flen[5] < 600
        && ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_SUBJECT,
                          (const char *) f[5], flen[5], &custom[0], err,
                          sizeof(err)) == OCDZ_MSG_OK)
    {
        t[0] = custom[0];
    }

    if ((data[0] & 0x20) && flen[6] > 0
        && ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_TEXT,
                          (const char *) f[6], flen[6], &custom[1], err,
                          sizeof(err)) == OCDZ_MSG_OK)
    {
        t[1] = custom[1];
    }

    ocdz_tpl_vars_init(&vars, NULL, (data[0] >> 6) & 1, lang);
    vars.v[OCDZ_VAR_CARD_CODE].data = f[1];
    vars.v[OCDZ_VAR_CARD_CODE].len = flen[1];
    vars.v[OCDZ_VAR_NUMBER].data = f[2];
    vars.v[OCDZ_VAR_NUMBER].len = flen[2] < 300 ? flen[2] : 300;
    vars.v[OCDZ_VAR_NUM_TRANS].data = f[3];
    vars.v[OCDZ_VAR_NUM_TRANS].len = flen[3];
    vars.v[OCDZ_VAR_VALUE].data = (const unsigned char *) "1000";
    vars.v[OCDZ_VAR_VALUE].len = 4;

    memset(&conf, 0, sizeof(conf));
    conf.from.data = (const unsigned char *) "noreply@shop.example";
    conf.from.len = 20;
    conf.domain.data = (const unsigned char *) "shop.example";
    conf.domain.len = 12;

    if (data[0] & 0x08) {
        conf.reply_to.data = (const unsigned char *) "help@shop.example";
        conf.reply_to.len = 17;
    }

    if (data[0] & 0x04) {
        conf.from_name.data = f[4];
        conf.from_name.len = flen[4];
    }

    m.subject = t[0];
    m.text = t[1];
    m.html = t[2];
    m.vars = &vars;
    m.to.data = f[0];
    m.to.len = flen[0];
    m.topup_id.data = (const unsigned char *) "690161a3e9e88196b4eb6545";
    m.topup_id.len = 24;
    m.channel.data = (const unsigned char *) "email";
    m.channel.len = 5;
    m.date = 1761700000;

    allocs = frees = dirty = 0;
    ocdz_buf_init(&out, &spy, 0);
    err[0] = '\0';

    rc = ocdz_mail_build(&conf, &m, &out, err, sizeof(err));

    if (rc != OCDZ_MSG_OK) {
        check(rc == OCDZ_MSG_ERR_INPUT || rc == OCDZ_MSG_ERR_TOO_LONG);
        check(out.data == NULL && err[0] != '\0');

        for (n = 0; err[n]; n++) {
            check((unsigned char) err[n] >= 0x20
                  && (unsigned char) err[n] < 0x7f);
        }

        goto done;
    }

    /* lines */

    hdr_end = mime_find((char *) out.data, out.len, "\r\n\r\n");
    check(hdr_end != NULL);

    for (line = (char *) out.data; line < (char *) out.data + out.len;
         line = q + 2)
    {
        q = mime_find(line, (char *) out.data + out.len - line, "\r\n");
        check(q != NULL);
        check((size_t) (q - line) <= (line < hdr_end ? 998 : 76));
    }

    check(mime_parse((char *) out.data, out.len, &e) == 0);

    /* exactly the expected headers, in order */
    for (i = 0, n = 0; i < 10; i++) {
        if (i == 2 && conf.reply_to.len == 0) {
            continue;
        }

        check((int) n < e.n && strcmp(e.h[n].name, names[i]) == 0);
        n++;
    }

    check((int) n == e.n);
    check(strlen(mime_header(&e, "To")) == flen[0]
          && memcmp(mime_header(&e, "To"), f[0], flen[0]) == 0);

    /* the subject */
    v = mime_header(&e, "Subject");
    subject = malloc(strlen(v) + 1);
    check(subject != NULL);
    check(mime_decode_2047(v, subject, &split) == 0 && split == 0);
    want = rendered(t[0], &vars, 0, &len);
    check(strlen(subject) == len && memcmp(subject, want, len) == 0);
    free(want);
    free(subject);

    /* the boundary and the parts */
    v = strstr(mime_header(&e, "Content-Type"), "boundary=\"");
    check(v != NULL);
    v += 10;
    q = strchr(v, '"');
    check(q != NULL && q - v < 100);
    snprintf(boundary, sizeof(boundary), "%.*s", (int) (q - v), v);

    check(mime_count(e.body, e.body_len, boundary) == 3);

    snprintf(delim, sizeof(delim), "\r\n--%s\r\n", boundary);
    check(mime_count(e.body, e.body_len, delim) == 2);
    check_part(e.body, e.body + e.body_len, boundary, 0, t[1], &vars);
    check_part(e.body, e.body + e.body_len, boundary, 1, t[2], &vars);

    snprintf(delim, sizeof(delim), "\r\n--%s--\r\n", boundary);
    check(e.body_len > strlen(delim)
          && strcmp(e.body + e.body_len - strlen(delim), delim) == 0);

done:

    ocdz_buf_free(&out);
    check(frees == allocs && dirty == 0);

    ocdz_tpl_free(&ocdz_alloc_std, custom[0]);
    ocdz_tpl_free(&ocdz_alloc_std, custom[1]);

    return 0;
}
