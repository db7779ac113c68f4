/*
 * Unit tests of ocdz_mail: messages built and parsed back here (headers
 * unfolded, boundary, parts, transfer encodings decoded to the exact
 * rendered text, RFC 2047 subjects decoded), address checks, header
 * injection attempts, wiping of every block the builder used.
 *
 * "mail_test --emit LANG [hostile]" writes one message to stdout and
 * "mail_test --part LANG subject|text|html [hostile]" the text a part
 * must decode to: t/unit/mail_python.t checks them with Python's email
 * package.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_mail.h"
#include "mime.h"


#define S(x)  ((ocdz_str_t) { sizeof(x) - 1, (const unsigned char *) (x) })

#define NOW         1761700000L    /* Wed, 29 Oct 2025 01:06:40 +0000 */


typedef struct {
    int           allocs;
    int           frees;
    int           dirty;
} spy_t;


static char              err[1024];
static ocdz_tpl_t       *tpls[OCDZ_LANG_N][3];
static ocdz_mail_conf_t  conf;


static void *
spy_alloc(void *data, size_t size)
{
    spy_t   *s = data;
    size_t  *p;

    p = malloc(size + sizeof(size_t));
    if (p == NULL) {
        return NULL;
    }

    s->allocs++;
    p[0] = size;

    return p + 1;
}


static void
spy_free(void *data, void *ptr)
{
    size_t          i, *p;
    spy_t          *s = data;
    unsigned char  *b = ptr;

    p = (size_t *) ptr - 1;

    for (i = 0; i < p[0]; i++) {
        if (b[i] != 0) {
            s->dirty++;
            break;
        }
    }

    s->frees++;
    free(p);
}


static void
card_vars(ocdz_tpl_vars_t *vars, ocdz_lang_e lang, int hostile)
{
    ocdz_tpl_vars_init(vars, NULL, OCDZ_TYPE_ADSL, lang);

    vars->v[OCDZ_VAR_CARD_CODE] = S("123456789012");
    vars->v[OCDZ_VAR_NUMBER] = S("036362608");
    vars->v[OCDZ_VAR_VALUE] = S("1000");
    vars->v[OCDZ_VAR_NUM_TRANS] = S("AT-2025-12345");
    vars->v[OCDZ_VAR_DATE] = S("2025-10-29T01:05:30.000Z");
    vars->v[OCDZ_VAR_TOPUP_ID] = S("690161a3e9e88196b4eb6545");

    if (hostile) {
        vars->v[OCDZ_VAR_CARD_CODE] = S("12=34 .5 \xc3\xa9=?x?=");
        vars->v[OCDZ_VAR_NUMBER] = S("<script>alert('x')</script>\r\n"
                                     "Bcc: victim@example.com");
        vars->v[OCDZ_VAR_VALUE] = S("1000\r\nX-Evil: 1");
        vars->v[OCDZ_VAR_NUM_TRANS] = S("\"quoted\" & <b>");
    }
}


static void
load_templates(void)
{
    int         k, l;
    ocdz_buf_t  text;

    ocdz_buf_init(&text, &ocdz_alloc_std, 0);

    for (l = 0; l < OCDZ_LANG_N; l++) {
        for (k = 0; k < 3; k++) {
            ocdz_buf_reset(&text);
            ocdz_tpl_builtin(k, l, &text);

            if (ocdz_tpl_parse(&ocdz_alloc_std, k, (char *) text.data,
                               text.len, &tpls[l][k], err, sizeof(err))
                != OCDZ_MSG_OK)
            {
                printf("# %s\n", err);
                exit(1);
            }
        }
    }

    ocdz_buf_free(&text);

    memset(&conf, 0, sizeof(conf));
    conf.from = S("noreply@shop.example");
    conf.from_name = S("Boutique \xc3\x89l\xc3\xa9phant");
    conf.reply_to = S("support@shop.example");
    conf.domain = S("shop.example");
}


static int
build(const ocdz_mail_conf_t *c, const ocdz_tpl_t *const *t,
    const ocdz_tpl_vars_t *vars, const char *to, const char *channel,
    time_t date, ocdz_buf_t *out)
{
    ocdz_mail_t  m;

    m.subject = t[0];
    m.text = t[1];
    m.html = t[2];
    m.vars = vars;
    m.to.data = (const unsigned char *) to;
    m.to.len = strlen(to);
    m.topup_id = S("690161a3e9e88196b4eb6545");
    m.channel.data = (const unsigned char *) channel;
    m.channel.len = strlen(channel);
    m.date = date;

    err[0] = '\0';

    return ocdz_mail_build(c, &m, out, err, sizeof(err));
}


/* The text a part must decode to: rendered, with CRLF line breaks. */

static char *
expected(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars, int crlf)
{
    char        *s;
    size_t       i, o;
    ocdz_buf_t   b;

    ocdz_buf_init(&b, &ocdz_alloc_std, 0);

    if (ocdz_tpl_render(tpl, vars, &b, err, sizeof(err)) != OCDZ_MSG_OK) {
        return NULL;
    }

    s = malloc(b.len * 2 + 1);

    for (i = 0, o = 0; i < b.len; i++) {
        if (crlf && b.data[i] == '\n') {
            s[o++] = '\r';
        }

        s[o++] = b.data[i];
    }

    s[o] = '\0';
    ocdz_buf_free(&b);

    return s;
}


/* Longest line in s, CRLF excluded. */

static size_t
longest(const char *s, size_t n, int *in_body_too_long)
{
    size_t       max, len;
    const char  *p, *eol;

    max = 0;

    for (p = s; p < s + n; p = eol + 2) {
        eol = strstr(p, "\r\n");
        if (eol == NULL) {
            eol = s + n;
        }

        len = eol - p;
        max = len > max ? len : max;

        if (in_body_too_long != NULL && len > 76 && p > strstr(s, "\r\n\r\n"))
        {
            *in_body_too_long = 1;
        }

        if (eol == s + n) {
            break;
        }
    }

    return max;
}


/*
 * Parses the message and checks its structure; each decoded part is
 * compared with what its template renders to.
 */

static void
check_message(const char *what, const char *msg, size_t len,
    const ocdz_tpl_t *const *t, const ocdz_tpl_vars_t *vars,
    const char *want_cte)
{
    int             i, ok_parts, too_long;
    char            name[256], boundary[128], delim[160], close[160];
    char            subject[4096], ctes[2][32];
    char           *want, *got;
    size_t          n, split;
    const char     *v, *p, *q, *end, *cte;
    mime_entity_t   e, part;

    snprintf(name, sizeof(name), "%s: parses as headers and a body", what);
    if (!ok(mime_parse(msg, len, &e) == 0, name)) {
        return;
    }

    snprintf(name, sizeof(name), "%s: each header once", what);
    ok(mime_header(&e, "Date") && mime_header(&e, "From")
       && mime_header(&e, "To") && mime_header(&e, "Subject")
       && mime_header(&e, "Message-ID") && mime_header(&e, "MIME-Version")
       && mime_header(&e, "Content-Type")
       && mime_header(&e, "Content-Language"), name);

    snprintf(name, sizeof(name), "%s: Date from the given time", what);
    is_str(mime_header(&e, "Date"), "Wed, 29 Oct 2025 01:06:40 +0000", name);

    snprintf(name, sizeof(name), "%s: MIME-Version 1.0", what);
    is_str(mime_header(&e, "MIME-Version"), "1.0", name);

    snprintf(name, sizeof(name), "%s: Content-Language", what);
    is_str(mime_header(&e, "Content-Language"), ocdz_lang_str(vars->lang),
           name);

    snprintf(name, sizeof(name), "%s: no Bcc, no injected header", what);
    ok(mime_header(&e, "Bcc") == NULL && mime_header(&e, "X-Evil") == NULL
       && e.n == 10, name);

    /* the subject decodes to the rendered subject */
    want = expected(t[0], vars, 0);
    snprintf(name, sizeof(name), "%s: subject decodes to the rendered one",
             what);
    ok(mime_decode_2047(mime_header(&e, "Subject"), subject, &split) == 0
       && want != NULL && strcmp(subject, want) == 0, name);
    if (want != NULL && strcmp(subject, want) != 0) {
        printf("#   got '%s'\n#   want '%s'\n", subject, want);
    }
    free(want);

    snprintf(name, sizeof(name), "%s: no encoded word splits a character",
             what);
    is_int(split, 0, name);

    v = mime_header(&e, "Content-Type");
    p = v ? strstr(v, "boundary=\"") : NULL;
    snprintf(name, sizeof(name), "%s: multipart/alternative with a boundary",
             what);
    if (!ok(v && strncmp(v, "multipart/alternative;", 22) == 0 && p, name)) {
        return;
    }

    p += 10;
    q = strchr(p, '"');
    snprintf(boundary, sizeof(boundary), "%.*s", (int) (q - p), p);

    snprintf(name, sizeof(name), "%s: the boundary, 1-70 characters, "
             "occurs only as delimiters", what);
    snprintf(delim, sizeof(delim), "\r\n--%s", boundary);
    ok(strlen(boundary) >= 1 && strlen(boundary) <= 70
       && mime_count(e.body, e.body_len, boundary) == 3
       && mime_count(e.body, e.body_len, delim) == 3, name);

    snprintf(delim, sizeof(delim), "\r\n--%s--\r\n", boundary);
    snprintf(name, sizeof(name), "%s: ends with the close delimiter", what);
    ok(e.body_len > strlen(delim)
       && strcmp(e.body + e.body_len - strlen(delim), delim) == 0, name);

    too_long = 0;
    snprintf(name, sizeof(name), "%s: lines within 78, body lines 76", what);
    ok(longest(msg, len, &too_long) <= 78 && !too_long, name);

    /* the two parts, each up to the next delimiter */
    snprintf(delim, sizeof(delim), "\r\n--%s\r\n", boundary);
    snprintf(close, sizeof(close), "\r\n--%s--\r\n", boundary);
    ok_parts = 1;
    p = e.body;
    end = e.body + e.body_len;
    ctes[0][0] = ctes[1][0] = '\0';

    for (i = 0; i < 2; i++) {
        p = mime_find(p, end - p, delim);
        if (p == NULL) {
            ok_parts = 0;
            break;
        }

        p += strlen(delim);
        q = mime_find(p, end - p, delim);
        q = q ? q : mime_find(p, end - p, close);
        if (q == NULL || mime_parse(p, q - p, &part) != 0) {
            ok_parts = 0;
            break;
        }

        v = mime_header(&part, "Content-Type");
        if (v == NULL || strcmp(v, i == 0 ? "text/plain; charset=UTF-8"
                                          : "text/html; charset=UTF-8"))
        {
            printf("#   part %d Content-Type %s\n", i, v ? v : "none");
            ok_parts = 0;
        }

        cte = mime_header(&part, "Content-Transfer-Encoding");
        snprintf(ctes[i], sizeof(ctes[i]), "%s", cte ? cte : "");
        got = malloc(part.body_len + 1);

        if (strcmp(ctes[i], "quoted-printable") == 0) {
            n = mime_decode_qp(part.body, part.body_len, got);

        } else if (strcmp(ctes[i], "base64") == 0) {
            n = mime_decode_b64(part.body, part.body_len, got);

        } else {
            n = (size_t) -1;
        }

        want = expected(t[i + 1], vars, 1);

        if (n == (size_t) -1 || want == NULL || n != strlen(want)
            || memcmp(got, want, n) != 0)
        {
            printf("#   part %d does not decode to the rendered text\n", i);
            ok_parts = 0;
        }

        free(want);
        free(got);
        p = q;
    }

    snprintf(name, sizeof(name), "%s: text/plain then text/html, each "
             "decoding to exactly the rendered text", what);
    ok(ok_parts, name);

    if (want_cte != NULL) {
        snprintf(name, sizeof(name), "%s: parts in %s", what, want_cte);
        ok(strcmp(ctes[0], want_cte) == 0 && strcmp(ctes[1], want_cte) == 0,
           name);
    }
}


static void
test_languages(void)
{
    int               l;
    char              what[64];
    ocdz_buf_t        out;
    ocdz_tpl_vars_t   vars;

    static const char  *cte[OCDZ_LANG_N] = {
        "quoted-printable", "quoted-printable", "base64"
    };

    for (l = 0; l < OCDZ_LANG_N; l++) {
        card_vars(&vars, l, 0);
        ocdz_buf_init(&out, &ocdz_alloc_std, 0);

        snprintf(what, sizeof(what), "%s message", ocdz_lang_str(l));
        is_int(build(&conf, (const ocdz_tpl_t *const *) tpls[l], &vars,
                     "client@example.com", "email", NOW, &out),
               OCDZ_MSG_OK, what);

        check_message(what, (char *) out.data, out.len,
                      (const ocdz_tpl_t *const *) tpls[l], &vars, cte[l]);
        ocdz_buf_free(&out);

        card_vars(&vars, l, 1);
        ocdz_buf_init(&out, &ocdz_alloc_std, 0);

        snprintf(what, sizeof(what), "%s message, hostile fields",
                 ocdz_lang_str(l));
        is_int(build(&conf, (const ocdz_tpl_t *const *) tpls[l], &vars,
                     "client@example.com", "email", NOW, &out),
               OCDZ_MSG_OK, what);
        check_message(what, (char *) out.data, out.len,
                      (const ocdz_tpl_t *const *) tpls[l], &vars, NULL);
        ocdz_buf_free(&out);
    }
}


static void
test_headers(void)
{
    char               id1[OCDZ_MAIL_MSGID_SIZE], id2[OCDZ_MAIL_MSGID_SIZE];
    const char        *s;
    ocdz_buf_t         out, out2;
    mime_entity_t      e;
    const char        *v;
    ocdz_tpl_t        *t[3];
    ocdz_tpl_vars_t    vars;
    ocdz_mail_conf_t   c;
    size_t             split;
    char               subject[4096];

    card_vars(&vars, OCDZ_LANG_EN, 0);
    ocdz_buf_init(&out, &ocdz_alloc_std, 0);
    ocdz_buf_init(&out2, &ocdz_alloc_std, 0);

    /* the Message-ID: stable per order and channel */

    build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
          "client@example.com", "email", NOW, &out);
    vars.v[OCDZ_VAR_CARD_CODE] = S("999999999999");
    build(&conf, (const ocdz_tpl_t *const *) tpls[2], &vars,
          "other@example.com", "email", NOW + 3600, &out2);

    mime_parse((char *) out.data, out.len, &e);
    snprintf(id1, sizeof(id1), "%s", mime_header(&e, "Message-ID"));
    is_str(id1, "<ocdz.690161a3e9e88196b4eb6545.email@shop.example>",
           "Message-ID from the order, the channel and the domain");
    mime_parse((char *) out2.data, out2.len, &e);
    snprintf(id2, sizeof(id2), "%s", mime_header(&e, "Message-ID"));
    is_str(id2, id1, "the same order and channel give the same Message-ID "
           "(another time, card, language)");

    ocdz_buf_free(&out2);
    build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
          "client@example.com", "email-2", NOW, &out2);
    mime_parse((char *) out2.data, out2.len, &e);
    ok(strcmp(mime_header(&e, "Message-ID"), id1) != 0,
       "another channel name gives another Message-ID");
    ocdz_buf_free(&out2);

    mime_parse((char *) out.data, out.len, &e);
    is_str(mime_header(&e, "From"), "=?UTF-8?B?Qm91dGlxdWUgw4lsw6lwaGFudA==?= "
           "<noreply@shop.example>", "From: encoded display name, address");
    is_str(mime_header(&e, "Reply-To"), "support@shop.example", "Reply-To");
    is_str(mime_header(&e, "To"), "client@example.com", "To");
    is_str(mime_header(&e, "Subject"), "Your ADSL recharge card (1000 DA)",
           "a short ASCII subject goes as it is");
    is_str(mime_header(&e, "Auto-Submitted"), "auto-generated",
           "Auto-Submitted: no auto-replies");
    ocdz_buf_free(&out);

    /* ASCII display name with quotes; no Reply-To */

    c = conf;
    c.from_name = S("Shop \"Best\" \\ Co");
    c.reply_to = S("");
    build(&c, (const ocdz_tpl_t *const *) tpls[0], &vars,
          "client@example.com", "email", NOW, &out);
    mime_parse((char *) out.data, out.len, &e);
    is_str(mime_header(&e, "From"),
           "\"Shop \\\"Best\\\" \\\\ Co\" <noreply@shop.example>",
           "an ASCII display name quoted, \" and \\ escaped");
    ok(mime_header(&e, "Reply-To") == NULL, "no Reply-To when none is set");
    ocdz_buf_free(&out);

    c.from_name = S("");
    build(&c, (const ocdz_tpl_t *const *) tpls[0], &vars,
          "client@example.com", "email", NOW, &out);
    mime_parse((char *) out.data, out.len, &e);
    is_str(mime_header(&e, "From"), "noreply@shop.example",
           "no display name: the bare address");
    ocdz_buf_free(&out);

    /* long subjects: folded words, never a split character */

    s = "\xc3\xa9t\xc3\xa9 {number} "
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 "
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80 "
        "abcdefghijklmnopqrstuvwxyz0123456789 "
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 "
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 "
        "\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80 end";
    ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_SUBJECT, s, strlen(s),
                   &t[0], err, sizeof(err));
    t[1] = tpls[0][1];
    t[2] = tpls[0][2];
    vars.v[OCDZ_VAR_NUMBER] = S("=?UTF-8?B?SGk=?= 0123456789");
    is_int(build(&conf, (const ocdz_tpl_t *const *) t, &vars,
                 "client@example.com", "email", NOW, &out), OCDZ_MSG_OK,
           "a long mixed subject");
    check_message("long subject", (char *) out.data, out.len,
                  (const ocdz_tpl_t *const *) t, &vars, NULL);
    mime_parse((char *) out.data, out.len, &e);
    s = strstr((char *) out.data, "\r\nSubject: ");
    ok(s != NULL && mime_count(s, strstr(s + 2, "\r\nMessage-ID") - s, "\r\n ")
       >= 3, "... folded over several lines");
    mime_decode_2047(mime_header(&e, "Subject"), subject, &split);
    ok(strstr(subject, "=?UTF-8?B?SGk=?= 0123456789") != NULL,
       "an encoded word inside a value is text, not decoded");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, t[0]);

    /* white space at the ends of a subject would be lost unencoded */

    ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_SUBJECT, "{number}", 8,
                   &t[0], err, sizeof(err));
    vars.v[OCDZ_VAR_NUMBER] = S(" 12 ");
    build(&conf, (const ocdz_tpl_t *const *) t, &vars, "client@example.com",
          "email", NOW, &out);
    mime_parse((char *) out.data, out.len, &e);
    mime_decode_2047(mime_header(&e, "Subject"), subject, &split);
    ok(strncmp(mime_header(&e, "Subject"), "=?UTF-8?B?", 10) == 0
       && strcmp(subject, " 12 ") == 0,
       "a subject with white space at its ends is encoded, kept whole");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, t[0]);

    /* quoted-printable edges */

    s = ".dot\nFrom here\ntrailing   \nt\tab\t\n= {card_code}\n"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\nend ";
    ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_TEXT, s, strlen(s), &t[1],
                   err, sizeof(err));
    ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_MAIL_HTML,
                   "<p>{card_code}</p>", 18, &t[2], err, sizeof(err));
    t[0] = tpls[0][0];
    vars.v[OCDZ_VAR_CARD_CODE] = S("12=34");
    is_int(build(&conf, (const ocdz_tpl_t *const *) t, &vars,
                 "client@example.com", "email", NOW, &out), OCDZ_MSG_OK,
           "quoted-printable edge cases");
    check_message("QP edges", (char *) out.data, out.len,
                  (const ocdz_tpl_t *const *) t, &vars, "quoted-printable");
    s = (char *) out.data;
    ok(strstr(s, "\r\n=2Edot\r\n") && strstr(s, "\r\n=46rom here\r\n")
       && strstr(s, "trailing  =20\r\n") && strstr(s, "t\tab=09\r\n")
       && strstr(s, "=3D 12=3D34\r\n") && strstr(s, "\r\nend=20\r\n--"),
       "QP: leading dot, From, trailing white space, = encoded");
    v = strstr(s, "xxxxx");
    ok(v != NULL && strstr(v, "=\r\n") != NULL
       && strstr(v, "=\r\n") - v == 75, "QP: soft break at 75 + \"=\"");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, t[1]);
    ocdz_tpl_free(&ocdz_alloc_std, t[2]);
}


static void
test_injection(void)
{
    int                rc;
    char               why[256];
    ocdz_buf_t         out;
    ocdz_tpl_vars_t    vars;
    ocdz_mail_conf_t   c;
    ocdz_mail_t        m;

    card_vars(&vars, OCDZ_LANG_EN, 0);
    ocdz_buf_init(&out, &ocdz_alloc_std, 0);

    rc = build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
               "a@b.example\r\nBcc: x@y.example", "email", NOW, &out);
    ok(rc == OCDZ_MSG_ERR_INPUT && out.data == NULL
       && strstr(err, "recipient: control character"),
       "recipient with CRLF refused, nothing built");

    rc = build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
               "a@b.example, x@y.example", "email", NOW, &out);
    ok(rc == OCDZ_MSG_ERR_INPUT, "two recipients refused");

    rc = build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
               "client@example.com", "email\r\nX: y", NOW, &out);
    ok(rc == OCDZ_MSG_ERR_INPUT && strstr(err, "channel"),
       "channel with CRLF refused");

    c = conf;
    c.from_name = S("Shop\r\nBcc: x@y.example");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT
       && strstr(why, "From name: control character"),
       "display name with CRLF refused at configuration");
    rc = build(&c, (const ocdz_tpl_t *const *) tpls[0], &vars,
               "client@example.com", "email", NOW, &out);
    ok(rc == OCDZ_MSG_ERR_INPUT, "... and at build time");

    c = conf;
    c.from_name = S("Shop\xc2\x85");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT,
       "display name with NEL (U+0085) refused");

    c = conf;
    c.from_name = S("\xff");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT,
       "display name not UTF-8 refused");

    c = conf;
    c.reply_to = S("support@shop.example\nBcc: x@y");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT
       && strstr(why, "Reply-To"), "Reply-To with LF refused");

    c = conf;
    c.from = S("noreply@shop.example>\r\nBcc: <x@y");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT
       && strstr(why, "From address"), "From with CRLF refused");

    c = conf;
    c.domain = S("shop.example>\r\nX-A: b");
    ok(ocdz_mail_conf_check(&c, why, sizeof(why)) == OCDZ_MSG_ERR_INPUT
       && strstr(why, "Message-ID domain"), "domain with CRLF refused");

    m.subject = tpls[0][1];    /* a text template as subject */
    m.text = tpls[0][1];
    m.html = tpls[0][2];
    m.vars = &vars;
    m.to = S("client@example.com");
    m.topup_id = S("690161a3e9e88196b4eb6545");
    m.channel = S("email");
    m.date = NOW;
    ok(ocdz_mail_build(&conf, &m, &out, err, sizeof(err))
       == OCDZ_MSG_ERR_INPUT, "a template of the wrong kind refused");

    vars.v[OCDZ_VAR_CARD_CODE] = S("");
    rc = build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
               "client@example.com", "email", NOW, &out);
    ok(rc == OCDZ_MSG_ERR_INPUT && out.data == NULL
       && strstr(err, "{card_code} is empty"),
       "no mail without a card code");

    ocdz_buf_free(&out);
}


static void
test_addresses(void)
{
    int          i, all;
    char         local[80], addr[300], env[OCDZ_MAIL_ENVELOPE_SIZE];
    const char  *a;

    static const char  *good[] = {
        "a@b", "first.last+tag@sub.example.co", "x_y-z@example.com",
        "!#$%&'*+-/=?^_`{|}~@example.com", "root@localhost",
        "a@1.2.3.4", "A@EXAMPLE.COM", "a@xn--bcher-kva.example", NULL
    };
    static const char  *bad[] = {
        "", "a", "@b", "a@", "a@@b", "a b@c", "a@b c", "a\r@b", "a@b\n",
        ".a@b", "a.@b", "a..b@c", "a@-b.c", "a@b-.c", "a@b..c", "a@.b",
        "a@b.", "\xc3\xa9@b.c", "<a@b>", "a@b@c", "\"a\"@b",
        "a@[127.0.0.1]", "a(b)@c", "a,b@c", "a;b@c", "a:b@c", "a@b_c",
        "a\\b@c", "a@b\x7f", NULL
    };

    all = 1;
    for (i = 0; good[i]; i++) {
        if (!ocdz_mail_addr_valid((const unsigned char *) good[i],
                                  strlen(good[i]), err, sizeof(err)))
        {
            printf("#   refused: %s (%s)\n", good[i], err);
            all = 0;
        }
    }
    ok(all, "valid addresses accepted");

    all = 1;
    for (i = 0; bad[i]; i++) {
        if (ocdz_mail_addr_valid((const unsigned char *) bad[i],
                                 strlen(bad[i]), err, sizeof(err)))
        {
            printf("#   accepted: %s\n", bad[i]);
            all = 0;
        }
    }
    ok(all, "invalid addresses refused (CR, LF, spaces, two @, dots, "
       "quotes, literals, non-ASCII)");

    memset(local, 'a', 64);
    snprintf(addr, sizeof(addr), "%.64s@example.com", local);
    ok(ocdz_mail_addr_valid((unsigned char *) addr, strlen(addr), NULL, 0),
       "64-byte local part");
    snprintf(addr, sizeof(addr), "%.64sa@example.com", local);
    ok(!ocdz_mail_addr_valid((unsigned char *) addr, strlen(addr), NULL, 0),
       "65-byte local part refused");
    snprintf(addr, sizeof(addr), "a@%.63s.com", local);
    ok(ocdz_mail_addr_valid((unsigned char *) addr, strlen(addr), NULL, 0),
       "63-byte label");
    snprintf(addr, sizeof(addr), "a@%.63sa.com", local);
    ok(!ocdz_mail_addr_valid((unsigned char *) addr, strlen(addr), NULL, 0),
       "64-byte label refused");

    memset(addr, 'b', sizeof(addr));
    memcpy(addr, "a@", 2);
    for (i = 2 + 63; i < 254; i += 64) {
        addr[i] = '.';
    }
    addr[254] = '\0';
    ok(ocdz_mail_addr_valid((unsigned char *) addr, 254, err, sizeof(err)),
       "254-byte address");
    addr[254] = 'b';
    addr[255] = '\0';
    ok(!ocdz_mail_addr_valid((unsigned char *) addr, 255, err, sizeof(err))
       && strstr(err, "longer than 254"), "255-byte address refused");

    a = "client@example.com";
    is_int(ocdz_mail_envelope((const unsigned char *) a, strlen(a), env,
                              sizeof(env)), OCDZ_MSG_OK, "envelope");
    is_str(env, "<client@example.com>", "... in angle brackets");
    a = "client@example.com>\r\nRCPT TO:<x@y";
    ok(ocdz_mail_envelope((const unsigned char *) a, strlen(a), env,
                          sizeof(env)) == OCDZ_MSG_ERR_INPUT && env[0] == 0,
       "no SMTP command injection through the envelope");
}


static void
test_wiping(void)
{
    int               l;
    spy_t             spy;
    ocdz_alloc_t      a;
    ocdz_buf_t        out;
    ocdz_tpl_vars_t   vars;

    memset(&spy, 0, sizeof(spy));
    a.alloc = spy_alloc;
    a.free = spy_free;
    a.data = &spy;

    for (l = 0; l < OCDZ_LANG_N; l++) {
        card_vars(&vars, l, 0);
        ocdz_buf_init(&out, &a, 0);
        build(&conf, (const ocdz_tpl_t *const *) tpls[l], &vars,
              "client@example.com", "email", NOW, &out);
        ocdz_buf_free(&out);
    }

    card_vars(&vars, 0, 0);
    ocdz_buf_init(&out, &a, 0);
    build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars, "bad", "email",
          NOW, &out);

    ok(spy.allocs > 10, "the builder used scratch blocks");
    is_int(spy.frees, spy.allocs, "every block released");
    is_int(spy.dirty, 0, "every block wiped before it was released");

    ocdz_buf_init(&out, &a, 200);
    ok(build(&conf, (const ocdz_tpl_t *const *) tpls[0], &vars,
             "client@example.com", "email", NOW, &out)
       == OCDZ_MSG_ERR_TOO_LONG && out.data == NULL,
       "a message over the buffer's cap: refused, released");
    is_int(spy.dirty, 0, "... wiped");
}


static int
emit(int argc, char **argv)
{
    int               lang, k;
    char             *s;
    ocdz_buf_t        out;
    ocdz_tpl_vars_t   vars;

    lang = ocdz_lang_from_str(argv[2], strlen(argv[2]));
    if (lang < 0) {
        return 2;
    }

    load_templates();
    card_vars(&vars, lang, argc > 3 && strcmp(argv[argc - 1], "hostile") == 0);

    if (strcmp(argv[1], "--part") == 0) {
        k = strcmp(argv[3], "subject") == 0 ? 0
            : strcmp(argv[3], "text") == 0 ? 1 : 2;
        s = expected(tpls[lang][k], &vars, 0);
        fputs(s, stdout);
        free(s);
        return 0;
    }

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);

    if (build(&conf, (const ocdz_tpl_t *const *) tpls[lang], &vars,
              "client@example.com", "email", NOW, &out)
        != OCDZ_MSG_OK)
    {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    fwrite(out.data, 1, out.len, stdout);
    ocdz_buf_free(&out);

    return 0;
}


int
main(int argc, char **argv)
{
    if (argc >= 3 && (strcmp(argv[1], "--emit") == 0
                      || (argc >= 4 && strcmp(argv[1], "--part") == 0)))
    {
        return emit(argc, argv);
    }

    load_templates();

    test_languages();
    test_headers();
    test_injection();
    test_addresses();
    test_wiping();

    return done_testing();
}
