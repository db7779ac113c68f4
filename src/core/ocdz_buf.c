/*
 * The delivery messages' building blocks: a wiping output buffer over
 * the caller's allocator, strict UTF-8, escaping per output format.
 */

#include <stdlib.h>
#include <string.h>

#include "ocdz_crypto.h"
#include "ocdz_buf.h"


#define OCDZ_BUF_MIN   256


static int ocdz_buf_grow(ocdz_buf_t *b, size_t n);
static void *ocdz_std_alloc(void *data, size_t size);
static void ocdz_std_free(void *data, void *p);


const ocdz_alloc_t  ocdz_alloc_std = {
    ocdz_std_alloc,
    ocdz_std_free,
    NULL
};

static const char  ocdz_hex_digits[] = "0123456789ABCDEF";
static const char  ocdz_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";


void
ocdz_buf_init(ocdz_buf_t *b, const ocdz_alloc_t *alloc, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->size = 0;
    b->max = max ? max : OCDZ_BUF_MAX_DEFAULT;
    b->alloc = alloc;
    b->error = OCDZ_MSG_OK;
}


int
ocdz_buf_add(ocdz_buf_t *b, const void *p, size_t n)
{
    if (b->error != OCDZ_MSG_OK) {
        return b->error;
    }

    if (n == 0) {
        return OCDZ_MSG_OK;
    }

    if (n > b->max - b->len) {
        b->error = OCDZ_MSG_ERR_TOO_LONG;
        return b->error;
    }

    if (b->len + n + 1 > b->size && ocdz_buf_grow(b, n) != OCDZ_MSG_OK) {
        return b->error;
    }

    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';

    return OCDZ_MSG_OK;
}


int
ocdz_buf_add_str(ocdz_buf_t *b, const char *s)
{
    return ocdz_buf_add(b, s, strlen(s));
}


int
ocdz_buf_add_char(ocdz_buf_t *b, int c)
{
    unsigned char  ch = (unsigned char) c;

    return ocdz_buf_add(b, &ch, 1);
}


int
ocdz_buf_add_escaped(ocdz_buf_t *b, ocdz_esc_e esc, const unsigned char *s,
    size_t n)
{
    size_t          i, run;
    const char     *rep;
    unsigned char   c, tmp[8];

    if (esc == OCDZ_ESC_TEXT || n == 0) {
        return ocdz_buf_add(b, s, n);
    }

    run = 0;

    for (i = 0; i < n; i++) {
        c = s[i];
        rep = NULL;
        tmp[0] = '\0';

        switch (esc) {

        case OCDZ_ESC_HTML:
            switch (c) {
            case '&':  rep = "&amp;"; break;
            case '<':  rep = "&lt;"; break;
            case '>':  rep = "&gt;"; break;
            case '"':  rep = "&quot;"; break;
            case '\'': rep = "&#39;"; break;
            default:   break;
            }

            break;

        case OCDZ_ESC_JSON:
            if (c == '"') {
                rep = "\\\"";

            } else if (c == '\\') {
                rep = "\\\\";

            } else if (c == '\n') {
                rep = "\\n";

            } else if (c == '\r') {
                rep = "\\r";

            } else if (c == '\t') {
                rep = "\\t";

            } else if (c < 0x20 || c == 0x7f) {
                memcpy(tmp, "\\u00", 4);
                tmp[4] = ocdz_hex_digits[c >> 4];
                tmp[5] = ocdz_hex_digits[c & 0xf];
                tmp[6] = '\0';

            } else if (c == 0xe2 && i + 2 < n && s[i + 1] == 0x80
                       && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9))
            {
                /* U+2028, U+2029: valid JSON, but end a JavaScript line */
                rep = s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029";
                ocdz_buf_add(b, s + i - run, run);
                ocdz_buf_add_str(b, rep);
                run = 0;
                i += 2;
                continue;
            }

            break;

        default: /* OCDZ_ESC_FORM */
            if (c == ' ') {
                rep = "+";

            } else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
                         || (c >= '0' && c <= '9') || c == '*' || c == '-'
                         || c == '.' || c == '_'))
            {
                tmp[0] = '%';
                tmp[1] = ocdz_hex_digits[c >> 4];
                tmp[2] = ocdz_hex_digits[c & 0xf];
                tmp[3] = '\0';
            }

            break;
        }

        if (rep == NULL && tmp[0] == '\0') {
            run++;
            continue;
        }

        ocdz_buf_add(b, s + i - run, run);
        ocdz_buf_add_str(b, rep ? rep : (const char *) tmp);
        run = 0;
    }

    /* an escaped byte of a card code may be in it */
    ocdz_wipe(tmp, sizeof(tmp));

    return ocdz_buf_add(b, s + n - run, run);
}


int
ocdz_buf_add_base64(ocdz_buf_t *b, const unsigned char *s, size_t n)
{
    size_t         i;
    unsigned long  v;
    char           q[4];

    for (i = 0; i + 2 < n; i += 3) {
        v = ((unsigned long) s[i] << 16) | ((unsigned long) s[i + 1] << 8)
            | s[i + 2];
        q[0] = ocdz_b64_chars[(v >> 18) & 63];
        q[1] = ocdz_b64_chars[(v >> 12) & 63];
        q[2] = ocdz_b64_chars[(v >> 6) & 63];
        q[3] = ocdz_b64_chars[v & 63];
        ocdz_buf_add(b, q, 4);
    }

    if (n - i == 1) {
        v = (unsigned long) s[i] << 16;
        q[0] = ocdz_b64_chars[(v >> 18) & 63];
        q[1] = ocdz_b64_chars[(v >> 12) & 63];
        q[2] = '=';
        q[3] = '=';
        ocdz_buf_add(b, q, 4);

    } else if (n - i == 2) {
        v = ((unsigned long) s[i] << 16) | ((unsigned long) s[i + 1] << 8);
        q[0] = ocdz_b64_chars[(v >> 18) & 63];
        q[1] = ocdz_b64_chars[(v >> 12) & 63];
        q[2] = ocdz_b64_chars[(v >> 6) & 63];
        q[3] = '=';
        ocdz_buf_add(b, q, 4);
    }

    /* the chunk may have held a card code */
    ocdz_wipe(q, sizeof(q));

    return b->error;
}


int
ocdz_buf_add_hex(ocdz_buf_t *b, const unsigned char *s, size_t n)
{
    size_t  i;
    char    h[2];

    for (i = 0; i < n; i++) {
        h[0] = "0123456789abcdef"[s[i] >> 4];
        h[1] = "0123456789abcdef"[s[i] & 0xf];
        ocdz_buf_add(b, h, 2);
    }

    return b->error;
}


void
ocdz_buf_reset(ocdz_buf_t *b)
{
    if (b->data != NULL) {
        ocdz_wipe(b->data, b->len);
        b->data[0] = '\0';
    }

    b->len = 0;
    b->error = OCDZ_MSG_OK;
}


void
ocdz_buf_free(ocdz_buf_t *b)
{
    if (b->data != NULL) {
        ocdz_wipe(b->data, b->size);

        if (b->alloc->free != NULL) {
            b->alloc->free(b->alloc->data, b->data);
        }
    }

    b->data = NULL;
    b->len = 0;
    b->size = 0;
}


int
ocdz_is_control(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}


int
ocdz_token_valid(const unsigned char *s, size_t n, size_t max)
{
    size_t  i;

    if (s == NULL || n == 0 || n > max) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'
              || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}


/* The old block is wiped before it goes: it may hold a card code. */

static int
ocdz_buf_grow(ocdz_buf_t *b, size_t n)
{
    size_t          size;
    unsigned char  *p;

    size = b->size < OCDZ_BUF_MIN ? OCDZ_BUF_MIN : b->size;

    while (size < b->len + n + 1) {
        size = size > (size_t) -1 / 2 ? b->len + n + 1 : size * 2;
    }

    if (size > b->max + 1) {
        size = b->max + 1;
    }

    p = b->alloc->alloc(b->alloc->data, size);
    if (p == NULL) {
        b->error = OCDZ_MSG_ERR_NOMEM;
        return b->error;
    }

    if (b->data != NULL) {
        memcpy(p, b->data, b->len + 1);
        ocdz_wipe(b->data, b->size);

        if (b->alloc->free != NULL) {
            b->alloc->free(b->alloc->data, b->data);
        }
    }

    b->data = p;
    b->size = size;

    return OCDZ_MSG_OK;
}


static void *
ocdz_std_alloc(void *data, size_t size)
{
    return malloc(size);
}


static void
ocdz_std_free(void *data, void *p)
{
    free(p);
}
