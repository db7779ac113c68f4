/*
 * What the unit tests (t/unit) and the fuzzers (fuzz/) share: the test
 * keys and order, base64url, hand-made records. Header only: each
 * program takes what it uses.
 */

#ifndef _OCDZ_TEST_H_INCLUDED_
#define _OCDZ_TEST_H_INCLUDED_


#include <stdio.h>
#include <string.h>


#define OCDZ_TEST_TOPUP   "0123456789abcdef01234567"

/* the AES-256 key of NIST SP 800-38A, and 00 01 .. 1f */
#define OCDZ_TEST_K1_HEX  "603deb1015ca71be2b73aef0857d77811f352c073b6108d7" \
                          "2d9810a30914dff4"
#define OCDZ_TEST_K2_HEX  "000102030405060708090a0b0c0d0e0f101112131415161718" \
                          "191a1b1c1d1e1f"


/* base64url without padding of in[0..len); out gets 4/3 len + 1 bytes */

static inline size_t
ocdz_test_b64url(const unsigned char *in, size_t len, char *out)
{
    static const char  *abc =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t              i, o;
    unsigned long       v;

    o = 0;

    for (i = 0; i + 2 < len; i += 3) {
        v = ((unsigned long) in[i] << 16) | (in[i + 1] << 8) | in[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }

    if (len - i == 1) {
        v = (unsigned long) in[i] << 16;
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = ((unsigned long) in[i] << 16) | (in[i + 1] << 8);
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
    }

    out[o] = '\0';

    return o;
}


/* a v1 record "ocdz1.<key id>.<base64url(raw)>" built by hand */

static inline size_t
ocdz_test_v1_record(const char *key_id, const unsigned char *raw, size_t n,
    char *out)
{
    int  len;

    len = sprintf(out, "ocdz1.%s.", key_id);

    return len + ocdz_test_b64url(raw, n, out + len);
}


static inline int
ocdz_test_is_zero(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }

    return 1;
}


#endif /* _OCDZ_TEST_H_INCLUDED_ */
