/*
 * Email messages: address checks, header encoding (RFC 2047), body
 * encodings (quoted-printable, base64) and the multipart/alternative
 * message around them.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "ocdz_crypto.h"
#include "ocdz_mail.h"


#define OCDZ_MAIL_WORD_BYTES   39     /* text per encoded word: 52 base64
                                         characters, 64 with "=?UTF-8?B?" */
#define OCDZ_MAIL_LINE_SOFT    78
#define OCDZ_MAIL_QP_LINE      76
#define OCDZ_MAIL_B64_LINE     76
#define OCDZ_MAIL_BOUNDARY_HEX 24


static void ocdz_mail_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int ocdz_mail_atext(int c);
static int ocdz_mail_header_text(ocdz_buf_t *out, size_t used,
    const unsigned char *s, size_t n, int phrase);
static void ocdz_mail_words(ocdz_buf_t *out, const unsigned char *s,
    size_t n);
static void ocdz_mail_date(ocdz_buf_t *out, time_t t);
static void ocdz_mail_part(ocdz_buf_t *out, ocdz_buf_t *scratch,
    const char *boundary, const char *type, const unsigned char *s,
    size_t n);
static void ocdz_mail_qp(ocdz_buf_t *out, const unsigned char *s, size_t n);
static void ocdz_mail_base64(ocdz_buf_t *out, ocdz_buf_t *scratch,
    const unsigned char *s, size_t n);


int
ocdz_mail_conf_check(const ocdz_mail_conf_t *conf, char *err,
    size_t errlen)
{
    char                  why[128];
    size_t                k;
    uint32_t              cp;
    const unsigned char  *p, *end;

    if (!ocdz_mail_addr_valid(conf->from.data, conf->from.len, why,
                              sizeof(why)))
    {
        ocdz_mail_err(err, errlen, "From address: %s", why);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (conf->reply_to.len > 0
        && !ocdz_mail_addr_valid(conf->reply_to.data, conf->reply_to.len,
                                 why, sizeof(why)))
    {
        ocdz_mail_err(err, errlen, "Reply-To address: %s", why);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (conf->from_name.len > OCDZ_MAIL_NAME_MAX) {
        ocdz_mail_err(err, errlen, "From name: longer than %d bytes",
                      OCDZ_MAIL_NAME_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (conf->from_name.len > 0) {
        if (conf->from_name.data == NULL
            || !ocdz_utf8_valid(conf->from_name.data, conf->from_name.len,
                                NULL))
        {
            ocdz_mail_err(err, errlen, "From name: not valid UTF-8");
            return OCDZ_MSG_ERR_INPUT;
        }

        p = conf->from_name.data;
        end = p + conf->from_name.len;

        for ( /* void */ ; p < end; p += k) {
            k = ocdz_utf8_next(p, end, &cp);

            if (ocdz_is_control(cp)) {
                ocdz_mail_err(err, errlen, "From name: control character "
                              "(line breaks are not allowed)");
                return OCDZ_MSG_ERR_INPUT;
            }
        }
    }

    if (conf->domain.data == NULL
        || !ocdz_mail_domain_valid(conf->domain.data, conf->domain.len))
    {
        ocdz_mail_err(err, errlen, "Message-ID domain: not a host name "
                      "(labels of letters, digits and hyphens, at most "
                      "%d bytes)", OCDZ_MAIL_DOMAIN_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    return OCDZ_MSG_OK;
}


int
ocdz_mail_addr_valid(const unsigned char *addr, size_t len, char *err,
    size_t errlen)
{
    size_t                i, at, local;
    const unsigned char  *domain;

    if (addr == NULL || len == 0) {
        ocdz_mail_err(err, errlen, "empty address");
        return 0;
    }

    if (len > OCDZ_MAIL_ADDR_MAX) {
        ocdz_mail_err(err, errlen, "address longer than %d bytes",
                      OCDZ_MAIL_ADDR_MAX);
        return 0;
    }

    at = len;

    for (i = 0; i < len; i++) {
        if (addr[i] == '@') {
            if (at != len) {
                ocdz_mail_err(err, errlen, "more than one \"@\"");
                return 0;
            }

            at = i;
            continue;
        }

        if (addr[i] <= 0x20 || addr[i] >= 0x7f) {
            ocdz_mail_err(err, errlen, "%s in the address",
                          addr[i] >= 0x7f ? "non-ASCII character"
                          : addr[i] == ' ' ? "space"
                          : "control character");
            return 0;
        }
    }

    if (at == len) {
        ocdz_mail_err(err, errlen, "no \"@\"");
        return 0;
    }

    local = at;

    if (local == 0 || local > OCDZ_MAIL_LOCAL_MAX) {
        ocdz_mail_err(err, errlen, "local part empty or longer than %d "
                      "bytes", OCDZ_MAIL_LOCAL_MAX);
        return 0;
    }

    for (i = 0; i < local; i++) {
        if (addr[i] == '.') {
            if (i == 0 || i == local - 1 || addr[i - 1] == '.') {
                ocdz_mail_err(err, errlen, "misplaced \".\" in the local "
                              "part");
                return 0;
            }

            continue;
        }

        if (!ocdz_mail_atext(addr[i])) {
            ocdz_mail_err(err, errlen, "character \"%c\" not allowed in the "
                          "local part", addr[i]);
            return 0;
        }
    }

    domain = addr + at + 1;

    if (!ocdz_mail_domain_valid(domain, len - at - 1)) {
        ocdz_mail_err(err, errlen, "the domain is not a host name");
        return 0;
    }

    return 1;
}


int
ocdz_mail_domain_valid(const unsigned char *s, size_t len)
{
    size_t  i, label;

    if (s == NULL || len == 0 || len > OCDZ_MAIL_DOMAIN_MAX) {
        return 0;
    }

    label = 0;

    for (i = 0; i < len; i++) {
        if (s[i] == '.') {
            if (label == 0 || s[i - 1] == '-') {
                return 0;
            }

            label = 0;
            continue;
        }

        if (s[i] == '-') {
            if (label == 0) {
                return 0;
            }

        } else if (!((s[i] >= 'a' && s[i] <= 'z')
                     || (s[i] >= 'A' && s[i] <= 'Z')
                     || (s[i] >= '0' && s[i] <= '9')))
        {
            return 0;
        }

        if (++label > 63) {
            return 0;
        }
    }

    return label > 0 && s[len - 1] != '-';
}


int
ocdz_mail_envelope(const unsigned char *addr, size_t len, char *out,
    size_t size)
{
    if (size < len + 3 || !ocdz_mail_addr_valid(addr, len, NULL, 0)) {
        if (size > 0) {
            out[0] = '\0';
        }

        return OCDZ_MSG_ERR_INPUT;
    }

    out[0] = '<';
    memcpy(out + 1, addr, len);
    out[len + 1] = '>';
    out[len + 2] = '\0';

    return OCDZ_MSG_OK;
}


int
ocdz_mail_message_id(const ocdz_str_t *domain, const ocdz_str_t *topup_id,
    const ocdz_str_t *channel, char *out, size_t size)
{
    int  n;

    if (!ocdz_mail_domain_valid(domain->data, domain->len)
        || !ocdz_token_valid(topup_id->data, topup_id->len,
                             OCDZ_MAIL_ID_MAX)
        || !ocdz_token_valid(channel->data, channel->len, OCDZ_MAIL_ID_MAX))
    {
        if (size > 0) {
            out[0] = '\0';
        }

        return OCDZ_MSG_ERR_INPUT;
    }

    n = snprintf(out, size, "<ocdz.%.*s.%.*s@%.*s>",
                 (int) topup_id->len, (const char *) topup_id->data,
                 (int) channel->len, (const char *) channel->data,
                 (int) domain->len, (const char *) domain->data);

    if (n < 0 || (size_t) n >= size) {
        if (size > 0) {
            out[0] = '\0';
        }

        return OCDZ_MSG_ERR_INPUT;
    }

    return OCDZ_MSG_OK;
}


int
ocdz_mail_build(const ocdz_mail_conf_t *conf, const ocdz_mail_t *m,
    ocdz_buf_t *out, char *err, size_t errlen)
{
    int             rc;
    char            why[128], msgid[OCDZ_MAIL_MSGID_SIZE];
    char            boundary[sizeof(OCDZ_MAIL_BOUNDARY_PREFIX)
                             + OCDZ_MAIL_BOUNDARY_HEX];
    size_t          i;
    unsigned int    mdlen;
    unsigned char   md[EVP_MAX_MD_SIZE];
    ocdz_buf_t      subject, text, html, scratch;

    if (m->subject == NULL || m->text == NULL || m->html == NULL
        || m->vars == NULL
        || ocdz_tpl_kind(m->subject) != OCDZ_TPL_MAIL_SUBJECT
        || ocdz_tpl_kind(m->text) != OCDZ_TPL_MAIL_TEXT
        || ocdz_tpl_kind(m->html) != OCDZ_TPL_MAIL_HTML)
    {
        ocdz_mail_err(err, errlen, "templates missing or of the wrong kind");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (!ocdz_mail_addr_valid(m->to.data, m->to.len, why, sizeof(why))) {
        ocdz_mail_err(err, errlen, "recipient: %s", why);
        return OCDZ_MSG_ERR_INPUT;
    }

    rc = ocdz_mail_conf_check(conf, err, errlen);
    if (rc != OCDZ_MSG_OK) {
        return rc;
    }

    if (ocdz_mail_message_id(&conf->domain, &m->topup_id, &m->channel,
                             msgid, sizeof(msgid))
        != OCDZ_MSG_OK)
    {
        ocdz_mail_err(err, errlen, "top-up id or channel: 1-%d of "
                      "[A-Za-z0-9_-] expected", OCDZ_MAIL_ID_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    /* the boundary: stable for the message, "=_" keeps it out of QP and
     * base64 text */
    if (EVP_Digest(msgid, strlen(msgid), md, &mdlen, EVP_sha256(), NULL)
        != 1)
    {
        ocdz_mail_err(err, errlen, "SHA-256 failed");
        return OCDZ_MSG_ERR_NOMEM;
    }

    memcpy(boundary, OCDZ_MAIL_BOUNDARY_PREFIX,
           sizeof(OCDZ_MAIL_BOUNDARY_PREFIX) - 1);

    for (i = 0; i < OCDZ_MAIL_BOUNDARY_HEX / 2; i++) {
        snprintf(boundary + sizeof(OCDZ_MAIL_BOUNDARY_PREFIX) - 1 + 2 * i,
                 3, "%02x", md[i]);
    }

    ocdz_buf_init(&subject, out->alloc, 0);
    ocdz_buf_init(&text, out->alloc, out->max);
    ocdz_buf_init(&html, out->alloc, out->max);
    ocdz_buf_init(&scratch, out->alloc, out->max);

    rc = ocdz_tpl_render(m->subject, m->vars, &subject, err, errlen);
    if (rc != OCDZ_MSG_OK) {
        goto done;
    }

    rc = ocdz_tpl_render(m->text, m->vars, &text, err, errlen);
    if (rc != OCDZ_MSG_OK) {
        goto done;
    }

    rc = ocdz_tpl_render(m->html, m->vars, &html, err, errlen);
    if (rc != OCDZ_MSG_OK) {
        goto done;
    }

    /* cannot happen (one-line template, values cleaned), never trusted */
    for (i = 0; i < subject.len; i++) {
        if (subject.data[i] < 0x20 || subject.data[i] == 0x7f) {
            subject.data[i] = ' ';
        }
    }

    ocdz_buf_add_str(out, "Date: ");
    ocdz_mail_date(out, m->date);
    ocdz_buf_add_str(out, "\r\n");

    ocdz_buf_add_str(out, "From: ");

    if (conf->from_name.len > 0) {
        i = ocdz_mail_header_text(out, 6, conf->from_name.data,
                                  conf->from_name.len, 1);

        /* the address on a line of its own when the name is long */
        ocdz_buf_add_str(out, i + 3 + conf->from.len > OCDZ_MAIL_LINE_SOFT
                              ? "\r\n <" : " <");
        ocdz_buf_add(out, conf->from.data, conf->from.len);
        ocdz_buf_add_str(out, ">\r\n");

    } else {
        ocdz_buf_add(out, conf->from.data, conf->from.len);
        ocdz_buf_add_str(out, "\r\n");
    }

    if (conf->reply_to.len > 0) {
        ocdz_buf_add_str(out, "Reply-To: ");
        ocdz_buf_add(out, conf->reply_to.data, conf->reply_to.len);
        ocdz_buf_add_str(out, "\r\n");
    }

    ocdz_buf_add_str(out, "To: ");
    ocdz_buf_add(out, m->to.data, m->to.len);
    ocdz_buf_add_str(out, "\r\nSubject: ");
    ocdz_mail_header_text(out, 9, subject.data, subject.len, 0);
    ocdz_buf_add_str(out, "\r\nMessage-ID: ");
    ocdz_buf_add_str(out, msgid);
    ocdz_buf_add_str(out, "\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: multipart/alternative;\r\n"
                     " boundary=\"");
    ocdz_buf_add_str(out, boundary);
    ocdz_buf_add_str(out, "\"\r\nContent-Language: ");
    ocdz_buf_add_str(out, ocdz_lang_str(m->vars->lang));
    ocdz_buf_add_str(out, "\r\nAuto-Submitted: auto-generated\r\n\r\n"
                     "This is a multi-part message in MIME format.\r\n");

    ocdz_mail_part(out, &scratch, boundary, "text/plain", text.data,
                   text.len);
    ocdz_mail_part(out, &scratch, boundary, "text/html", html.data,
                   html.len);

    ocdz_buf_add_str(out, "\r\n--");
    ocdz_buf_add_str(out, boundary);
    ocdz_buf_add_str(out, "--\r\n");

    rc = out->error != OCDZ_MSG_OK ? out->error : scratch.error;

    if (rc == OCDZ_MSG_ERR_NOMEM) {
        ocdz_mail_err(err, errlen, "out of memory");

    } else if (rc != OCDZ_MSG_OK) {
        ocdz_mail_err(err, errlen, "the message is longer than %zu bytes",
                      out->max);
    }

done:

    ocdz_buf_free(&subject);
    ocdz_buf_free(&text);
    ocdz_buf_free(&html);
    ocdz_buf_free(&scratch);

    if (rc != OCDZ_MSG_OK) {
        ocdz_buf_free(out);
    }

    return rc;
}


static void
ocdz_mail_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err != NULL && errlen > 0) {
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);
    }
}


/* RFC 5322 atext */

static int
ocdz_mail_atext(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}


/*
 * An unstructured header value (phrase 0: Subject) or a display name
 * (phrase 1), used bytes already on the line. Short printable ASCII
 * goes as it is (a phrase quoted; a subject only without white space
 * at either end); anything else as encoded words. Returns the length
 * of the last line written.
 */

static int
ocdz_mail_header_text(ocdz_buf_t *out, size_t used, const unsigned char *s,
    size_t n, int phrase)
{
    size_t  i, extra;
    int     raw;

    /* readers drop white space around an unstructured value */
    raw = phrase || n == 0 || (s[0] != ' ' && s[n - 1] != ' ');
    extra = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e) {
            raw = 0;
            break;
        }

        if (s[i] == '=' && i + 1 < n && s[i + 1] == '?') {
            raw = 0;
            break;
        }

        if (phrase && (s[i] == '"' || s[i] == '\\')) {
            extra++;
        }
    }

    if (raw && used + n + extra + (phrase ? 2 : 0) <= OCDZ_MAIL_LINE_SOFT) {
        if (!phrase) {
            ocdz_buf_add(out, s, n);
            return used + n;
        }

        ocdz_buf_add_char(out, '"');

        for (i = 0; i < n; i++) {
            if (s[i] == '"' || s[i] == '\\') {
                ocdz_buf_add_char(out, '\\');
            }

            ocdz_buf_add_char(out, s[i]);
        }

        ocdz_buf_add_char(out, '"');

        return used + n + extra + 2;
    }

    ocdz_mail_words(out, s, n);

    /* the last word's line: a space, then at most one full word */
    return 1 + 12 + 4 * ((OCDZ_MAIL_WORD_BYTES + 2) / 3);
}


/*
 * RFC 2047 "B" encoded words of at most OCDZ_MAIL_WORD_BYTES bytes of
 * text, cut between characters, on folded lines. The caller has put
 * the header name; each word fits a 78-character line with it.
 */

static void
ocdz_mail_words(ocdz_buf_t *out, const unsigned char *s, size_t n)
{
    size_t    i, start, k;
    uint32_t  cp;

    if (n == 0) {
        return;
    }

    start = 0;
    i = 0;

    while (i < n) {
        k = ocdz_utf8_next(s + i, s + n, &cp);
        if (k == 0) {
            k = 1;    /* checked before; a byte is still a byte */
        }

        if (i + k - start > OCDZ_MAIL_WORD_BYTES) {
            ocdz_buf_add_str(out, start ? "\r\n =?UTF-8?B?" : "=?UTF-8?B?");
            ocdz_buf_add_base64(out, s + start, i - start);
            ocdz_buf_add_str(out, "?=");
            start = i;
        }

        i += k;
    }

    ocdz_buf_add_str(out, start ? "\r\n =?UTF-8?B?" : "=?UTF-8?B?");
    ocdz_buf_add_base64(out, s + start, n - start);
    ocdz_buf_add_str(out, "?=");
}


/* RFC 5322 3.3, in UTC, with English names whatever the locale. */

static void
ocdz_mail_date(ocdz_buf_t *out, time_t t)
{
    char       buf[64];
    struct tm  tm;

    static const char  *days[] = {
        "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"
    };
    static const char  *months[] = {
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep",
        "Oct", "Nov", "Dec"
    };

    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999
        || tm.tm_year + 1900 < 1970)
    {
        t = 0;
        gmtime_r(&t, &tm);
    }

    snprintf(buf, sizeof(buf), "%s, %02d %s %04d %02d:%02d:%02d +0000",
             days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);

    ocdz_buf_add_str(out, buf);
}


/*
 * One body part: quoted-printable, unless base64 is shorter (mostly
 * non-ASCII text). The CRLF after the content belongs to the next
 * delimiter (RFC 2046 5.1.1), so the decoded part is exactly the text.
 */

static void
ocdz_mail_part(ocdz_buf_t *out, ocdz_buf_t *scratch, const char *boundary,
    const char *type, const unsigned char *s, size_t n)
{
    size_t  i, qp, b64, lines;

    qp = 0;
    lines = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '\n') {
            lines++;
            qp += 2;

        } else {
            qp += (s[i] >= 0x21 && s[i] <= 0x7e && s[i] != '=')
                  || s[i] == ' ' ? 1 : 3;
        }
    }

    qp += qp / (OCDZ_MAIL_QP_LINE - 1) * 3;
    b64 = (n + lines + 2) / 3 * 4;
    b64 += b64 / OCDZ_MAIL_B64_LINE * 2;

    ocdz_buf_add_str(out, "\r\n--");
    ocdz_buf_add_str(out, boundary);
    ocdz_buf_add_str(out, "\r\nContent-Type: ");
    ocdz_buf_add_str(out, type);
    ocdz_buf_add_str(out, "; charset=UTF-8\r\nContent-Transfer-Encoding: ");

    if (qp <= b64) {
        ocdz_buf_add_str(out, "quoted-printable\r\n\r\n");
        ocdz_mail_qp(out, s, n);

    } else {
        ocdz_buf_add_str(out, "base64\r\n\r\n");
        ocdz_mail_base64(out, scratch, s, n);
    }
}


/*
 * RFC 2045 6.7. Lines of at most 76 characters with the soft break;
 * white space before a line break, and a "." or "From " starting a
 * line, are encoded (SMTP dot-stuffing and mbox "From " mangling then
 * have nothing to change).
 */

static void
ocdz_mail_qp(ocdz_buf_t *out, const unsigned char *s, size_t n)
{
    int            plain;
    size_t         i, col, tlen;
    unsigned char  c, tok[3];

    col = 0;

    for (i = 0; i < n; i++) {
        c = s[i];

        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            continue;
        }

        if (c == '\n') {
            ocdz_buf_add(out, "\r\n", 2);
            col = 0;
            continue;
        }

        plain = (c >= 0x21 && c <= 0x7e && c != '=');

        if (c == ' ' || c == '\t') {
            plain = !(i + 1 == n || s[i + 1] == '\n' || s[i + 1] == '\r');
        }

        tlen = plain ? 1 : 3;

        if (col + tlen > OCDZ_MAIL_QP_LINE - 1) {
            ocdz_buf_add(out, "=\r\n", 3);
            col = 0;
        }

        if (col == 0 && plain
            && (c == '.'
                || (c == 'F' && n - i >= 5 && memcmp(s + i, "From ", 5) == 0)))
        {
            plain = 0;
            tlen = 3;
        }

        if (plain) {
            ocdz_buf_add(out, &c, 1);

        } else {
            tok[0] = '=';
            tok[1] = "0123456789ABCDEF"[c >> 4];
            tok[2] = "0123456789ABCDEF"[c & 0xf];
            ocdz_buf_add(out, tok, 3);
        }

        col += tlen;
    }

    ocdz_wipe(tok, sizeof(tok));
}


/* The text with CRLF line breaks, base64 in lines of 76 characters. */

static void
ocdz_mail_base64(ocdz_buf_t *out, ocdz_buf_t *scratch,
    const unsigned char *s, size_t n)
{
    size_t  i, chunk;

    ocdz_buf_reset(scratch);

    for (i = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
            ocdz_buf_add_char(scratch, '\r');
        }

        ocdz_buf_add_char(scratch, s[i]);
    }

    if (scratch->error != OCDZ_MSG_OK) {
        return;
    }

    chunk = OCDZ_MAIL_B64_LINE / 4 * 3;

    for (i = 0; i < scratch->len; i += chunk) {
        if (i > 0) {
            ocdz_buf_add(out, "\r\n", 2);
        }

        ocdz_buf_add_base64(out, scratch->data + i,
                            scratch->len - i < chunk ? scratch->len - i
                                                     : chunk);
    }

    ocdz_buf_reset(scratch);
}
