/*
 * Reading a message back, for the unit tests and the fuzzer of
 * ocdz_mail: headers unfolded, the body found, quoted-printable, base64
 * and RFC 2047 "B" words decoded. Strict: what ocdz_mail never writes
 * (a bare CR or LF, a header line without a colon) is an error. Every
 * search is bounded by the given length.
 */

#ifndef _OCDZ_MIME_H_INCLUDED_
#define _OCDZ_MIME_H_INCLUDED_


#include <string.h>
#include <strings.h>


#define MIME_HDRS_MAX   32
#define MIME_ARENA      (1 << 17)


typedef struct {
    char          name[64];
    const char   *value;            /* unfolded, NUL-terminated */
} mime_hdr_t;


typedef struct {
    mime_hdr_t    h[MIME_HDRS_MAX];
    int           n;
    const char   *body;
    size_t        body_len;
    size_t        used;
    char          arena[MIME_ARENA];
} mime_entity_t;


/* The first needle in s[0..n), or NULL. */

static const char *
mime_find(const char *s, size_t n, const char *needle)
{
    size_t  i, k;

    k = strlen(needle);

    for (i = 0; i + k <= n; i++) {
        if (memcmp(s + i, needle, k) == 0) {
            return s + i;
        }
    }

    return NULL;
}


static size_t
mime_count(const char *s, size_t n, const char *needle)
{
    size_t       c;
    const char  *p;

    c = 0;

    while ((p = mime_find(s, n, needle)) != NULL) {
        c++;
        n -= p + 1 - s;
        s = p + 1;
    }

    return c;
}


/* Headers (unfolded: CRLF dropped, the white space kept) and body. */

static int
mime_parse(const char *s, size_t n, mime_entity_t *e)
{
    size_t       len;
    const char  *p, *end, *eol, *colon;
    char        *v;

    e->n = 0;
    e->used = 0;
    e->body = NULL;
    e->body_len = 0;

    end = s + n;

    for (p = s; p < end; p++) {
        if ((*p == '\n' && (p == s || p[-1] != '\r'))
            || (*p == '\r' && (p + 1 == end || p[1] != '\n')))
        {
            return -1;
        }
    }

    for (p = s; p < end; p = eol + 2) {
        eol = mime_find(p, end - p, "\r\n");
        if (eol == NULL) {
            return -1;
        }

        if (eol == p) {
            e->body = eol + 2;
            e->body_len = end - e->body;
            return 0;
        }

        len = eol - p;

        if (*p == ' ' || *p == '\t') {
            /* a continuation: the arena's last value grows */
            if (e->n == 0 || e->used + len + 1 > MIME_ARENA) {
                return -1;
            }

            memcpy(e->arena + e->used - 1, p, len);
            e->used += len;
            e->arena[e->used - 1] = '\0';
            continue;
        }

        colon = memchr(p, ':', len);
        if (colon == NULL || e->n == MIME_HDRS_MAX
            || (size_t) (colon - p) >= sizeof(e->h[0].name))
        {
            return -1;
        }

        memcpy(e->h[e->n].name, p, colon - p);
        e->h[e->n].name[colon - p] = '\0';

        for (colon++; colon < eol && *colon == ' '; colon++) {
            /* void */
        }

        if (e->used + (eol - colon) + 1 > MIME_ARENA) {
            return -1;
        }

        v = e->arena + e->used;
        memcpy(v, colon, eol - colon);
        v[eol - colon] = '\0';
        e->used += (eol - colon) + 1;
        e->h[e->n++].value = v;
    }

    return -1;
}


/* The value of the one header called name; NULL if none or several. */

static const char *
mime_header(const mime_entity_t *e, const char *name)
{
    int          i;
    const char  *v = NULL;

    for (i = 0; i < e->n; i++) {
        if (strcasecmp(e->h[i].name, name) == 0) {
            if (v != NULL) {
                return NULL;
            }

            v = e->h[i].value;
        }
    }

    return v;
}


static int
mime_hex(int c)
{
    return (c >= '0' && c <= '9') ? c - '0'
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}


/* (size_t) -1 on anything but what RFC 2045 6.7 allows */

static size_t
mime_decode_qp(const char *s, size_t n, char *out)
{
    size_t  i, o;

    o = 0;

    for (i = 0; i < n; i++) {
        if (s[i] != '=') {
            out[o++] = s[i];
            continue;
        }

        if (i + 2 < n && s[i + 1] == '\r' && s[i + 2] == '\n') {
            i += 2;
            continue;
        }

        if (i + 2 >= n || mime_hex(s[i + 1]) < 0 || mime_hex(s[i + 2]) < 0) {
            return (size_t) -1;
        }

        out[o++] = (char) (mime_hex(s[i + 1]) << 4 | mime_hex(s[i + 2]));
        i += 2;
    }

    out[o] = '\0';

    return o;
}


static size_t
mime_decode_b64(const char *s, size_t n, char *out)
{
    size_t        i, o, bits;
    unsigned int  acc;
    const char   *abc, *q;

    abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    o = 0;
    acc = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        if (s[i] == '=' || s[i] == '\r' || s[i] == '\n') {
            continue;
        }

        q = s[i] ? strchr(abc, s[i]) : NULL;
        if (q == NULL) {
            return (size_t) -1;
        }

        acc = (acc << 6) | (unsigned int) (q - abc);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char) ((acc >> bits) & 0xff);
        }
    }

    out[o] = '\0';

    return o;
}


/*
 * An unfolded unstructured header value: raw text, or only "B" encoded
 * words of at most 75 characters, the white space between two words
 * dropped (RFC 2047 6.2). *split counts words that are not valid UTF-8
 * alone (a character cut between two words). out needs the value's
 * length + 1.
 */

static int
mime_decode_2047(const char *v, char *out, size_t *split)
{
    size_t       n, o;
    const char  *p, *end;

    *split = 0;

    if (strstr(v, "=?") == NULL) {
        strcpy(out, v);
        return 0;
    }

    o = 0;
    out[0] = '\0';

    for (p = v; *p; p = end + 2) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }

        if (*p == '\0') {
            break;
        }

        if (strncmp(p, "=?UTF-8?B?", 10) != 0) {
            return -1;
        }

        end = strstr(p + 10, "?=");
        if (end == NULL || end - p + 2 > 75) {
            return -1;
        }

        n = mime_decode_b64(p + 10, end - p - 10, out + o);
        if (n == (size_t) -1) {
            return -1;
        }

        if (!ocdz_utf8_valid((const unsigned char *) out + o, n, NULL)) {
            (*split)++;
        }

        o += n;
    }

    return 0;
}


#endif /* _OCDZ_MIME_H_INCLUDED_ */
