/*
 * Text and identifiers: see ocdz_text.h.
 */

#include "ocdz_text.h"


size_t
ocdz_utf8_len(const unsigned char *p, size_t n)
{
    size_t         len, i;
    unsigned char  lo, hi;

    if (n == 0) {
        return 0;
    }

    if (p[0] < 0x80) {
        return 1;
    }

    /* the second byte's range rules out overlongs, surrogates, > U+10FFFF */

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        len = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        len = 3;

        if (p[0] == 0xe0) {
            lo = 0xa0;

        } else if (p[0] == 0xed) {
            hi = 0x9f;
        }

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        len = 4;

        if (p[0] == 0xf0) {
            lo = 0x90;

        } else if (p[0] == 0xf4) {
            hi = 0x8f;
        }

    } else {
        return 0;
    }

    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < len; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return len;
}


size_t
ocdz_utf8_next(const unsigned char *p, const unsigned char *end,
    uint32_t *cp)
{
    size_t    n, i;
    uint32_t  c;

    if (p >= end) {
        return 0;
    }

    n = ocdz_utf8_len(p, end - p);

    switch (n) {
    case 1:
        *cp = p[0];
        return 1;
    case 2:
        c = p[0] & 0x1f;
        break;
    case 3:
        c = p[0] & 0x0f;
        break;
    case 4:
        c = p[0] & 0x07;
        break;
    default:
        return 0;
    }

    for (i = 1; i < n; i++) {
        c = (c << 6) | (p[i] & 0x3f);
    }

    *cp = c;

    return n;
}


int
ocdz_utf8_valid(const unsigned char *s, size_t n, size_t *bad)
{
    size_t  i, k;

    for (i = 0; i < n; i += k) {
        k = ocdz_utf8_len(s + i, n - i);

        if (k == 0) {
            if (bad != NULL) {
                *bad = i;
            }

            return 0;
        }
    }

    return 1;
}


static int
ocdz_text_control(unsigned char ch, unsigned flags)
{
    if ((flags & OCDZ_TEXT_LINES) && (ch == '\t' || ch == '\n')) {
        return 0;
    }

    return ch < 0x20 || ch == 0x7f;
}


int
ocdz_text_valid(const unsigned char *s, size_t len, unsigned flags)
{
    size_t  i, n;

    if (s == NULL) {
        return len == 0;
    }

    for (i = 0; i < len; i += n) {
        n = ocdz_utf8_len(s + i, len - i);

        if (n == 0 || ocdz_text_control(s[i], flags)) {
            return 0;
        }
    }

    return 1;
}


void
ocdz_text_sanitize(unsigned char *s, size_t len)
{
    size_t  i, n;

    for (i = 0; i < len; i += n) {
        n = ocdz_utf8_len(s + i, len - i);

        if (n == 0 || ocdz_text_control(s[i], 0)) {
            s[i] = '?';
            n = 1;
        }
    }
}


size_t
ocdz_text_prefix(const unsigned char *s, size_t len, size_t max)
{
    if (len <= max) {
        return len;
    }

    /* back off the continuation bytes of a sequence the cap would cut */

    while (max > 0 && (s[max] & 0xc0) == 0x80) {
        max--;
    }

    return max;
}


static int
ocdz_topup_id_check(const char *s, size_t len, int upper)
{
    size_t  i;
    int     ch;

    if (s == NULL || len != OCDZ_TOPUP_ID_LEN) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) s[i];

        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')
              || (upper && ch >= 'A' && ch <= 'F')))
        {
            return 0;
        }
    }

    return 1;
}


int
ocdz_topup_id_valid(const char *s, size_t len)
{
    return ocdz_topup_id_check(s, len, 1);
}


int
ocdz_topup_id_stored(const char *s, size_t len)
{
    return ocdz_topup_id_check(s, len, 0);
}
