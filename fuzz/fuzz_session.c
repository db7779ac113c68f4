/*
 * libFuzzer target: what a request hands the card endpoint before any
 * database work, all pure C:
 *
 *   ocdz_session_cookie()   a Cookie header value and a cookie name
 *   ocdz_session_bearer()   an Authorization header value
 *   ocdz_session_token_valid()
 *   ocdz_topup_id_valid()   the id from the location (or an argument)
 *   ocdz_lang_pick(), ocdz_lang_from_str()   Accept-Language, ?lang=
 *
 * and the configuration arguments that have pure parsers:
 *
 *   ocdz_key_decode(), ocdz_key_id_valid()   ocdz_card_key id file
 *
 * Each result is compared with a small reference written differently
 * (segments split with memchr, strspn on character sets), so the
 * fuzzer finds wrong answers as well as crashes. The first byte picks
 * the cookie name: "ocdz_session", a one-letter name, or the bytes up
 * to the first newline.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ocdz_crypto.h"
#include "ocdz_instructions.h"
#include "ocdz_session.h"
#include "ocdz_upstream.h"


#define check(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_session: check failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char  token_chars[] =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-_.~+/=";


/* the references */

static int
ref_in_set(const char *s, size_t len, const char *set)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (s[i] == '\0' || strchr(set, s[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}


static int
ref_token_valid(const char *s, size_t len)
{
    return len >= 16 && len <= OCDZ_JWT_MAX && ref_in_set(s, len, token_chars);
}


static int
ref_cookie(const char *h, size_t hlen, const char *name, size_t nlen,
    const char **tok, size_t *tlen)
{
    size_t       n;
    const char  *seg, *end, *semi, *v;

    if (nlen == 0) {
        return 0;
    }

    for (seg = h; seg <= h + hlen; seg = end + 1) {
        semi = memchr(seg, ';', h + hlen - seg);
        end = semi ? semi : h + hlen;

        while (seg < end && (*seg == ' ' || *seg == '\t')) {
            seg++;
        }

        if ((size_t) (end - seg) > nlen && memcmp(seg, name, nlen) == 0
            && seg[nlen] == '=')
        {
            v = seg + nlen + 1;
            n = end - v;

            while (n > 0 && v[n - 1] == ' ') {
                n--;
            }

            if (ref_token_valid(v, n)) {
                *tok = v;
                *tlen = n;
                return 1;
            }
        }

        if (semi == NULL) {
            break;
        }
    }

    return 0;
}


static int
ref_bearer(const char *h, size_t hlen, const char **tok, size_t *tlen)
{
    size_t  skip;

    if (hlen < 8 || strncasecmp(h, "bearer ", 7) != 0) {
        return 0;
    }

    for (skip = 7; skip < hlen && h[skip] == ' '; skip++) {
        /* void */
    }

    if (!ref_token_valid(h + skip, hlen - skip)) {
        return 0;
    }

    *tok = h + skip;
    *tlen = hlen - skip;

    return 1;
}


static int
ref_hex(int c)
{
    const char  *d = "0123456789abcdef", *u = "0123456789ABCDEF", *p;

    if (c == '\0') {
        return -1;
    }

    p = strchr(d, c);
    if (p) {
        return p - d;
    }

    p = strchr(u, c);
    return p ? p - u : -1;
}


static void
session(const char *h, size_t hlen, const char *name, size_t nlen)
{
    int          rc, ref;
    size_t       len, rlen;
    const char  *tok, *rtok;

    tok = rtok = NULL;
    len = rlen = 0;

    rc = ocdz_session_cookie(h, hlen, name, nlen, &tok, &len);
    ref = ref_cookie(h, hlen, name, nlen, &rtok, &rlen);

    check(rc == ref);

    if (rc) {
        check(tok == rtok && len == rlen);
        check(tok >= h && tok + len <= h + hlen);
        check(ocdz_session_token_valid(tok, len));
    }

    tok = rtok = NULL;

    rc = ocdz_session_bearer(h, hlen, &tok, &len);
    ref = ref_bearer(h, hlen, &rtok, &rlen);

    check(rc == ref);

    if (rc) {
        check(tok == rtok && len == rlen);
        check(tok > h && tok + len == h + hlen);
    }

    check(ocdz_session_token_valid(h, hlen) == ref_token_valid(h, hlen));
}


static void
ids(const char *s, size_t len)
{
    int            rc, ref, hi, lo;
    size_t         i, a, b;
    char           err[160];
    unsigned char  key[OCDZ_KEY_LEN], want[OCDZ_KEY_LEN];

    /* the top-up id: 24 hex digits, either case */

    ref = len == 24;
    for (i = 0; ref && i < len; i++) {
        ref = ref_hex((unsigned char) s[i]) >= 0;
    }

    check(ocdz_topup_id_valid(s, len) == ref);

    /* a key id */

    ref = len >= 1 && len <= OCDZ_KEY_ID_MAX
          && ref_in_set(s, len, "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    check(ocdz_key_id_valid(s, len) == ref);

    /* a key file: 64 hex digits, white space around them */

    a = 0;
    b = len;

    while (a < b && strchr(" \t\r\n", s[a]) && s[a] != '\0') {
        a++;
    }

    while (b > a && strchr(" \t\r\n", s[b - 1]) && s[b - 1] != '\0') {
        b--;
    }

    ref = b - a == 2 * OCDZ_KEY_LEN;

    for (i = 0; ref && i < OCDZ_KEY_LEN; i++) {
        hi = ref_hex((unsigned char) s[a + 2 * i]);
        lo = ref_hex((unsigned char) s[a + 2 * i + 1]);
        ref = hi >= 0 && lo >= 0;
        want[i] = ref ? (unsigned char) (hi << 4 | lo) : 0;
    }

    memset(key, 0xa5, sizeof(key));
    err[0] = '\0';

    rc = ocdz_key_decode(s, len, key, err, sizeof(err));

    check((rc == OCDZ_OK) == ref);

    if (rc == OCDZ_OK) {
        check(memcmp(key, want, sizeof(key)) == 0);

    } else {
        check(err[0] != '\0' && memchr(err, '\0', sizeof(err)) != NULL);

        for (i = 0; i < sizeof(key); i++) {
            check(key[i] == 0);
        }
    }

    ocdz_wipe(key, sizeof(key));
    ocdz_wipe(want, sizeof(want));

    /* languages: always one of ours */

    rc = ocdz_lang_pick(s, len);
    check(rc >= 0 && rc < OCDZ_LANG_N);

    rc = ocdz_lang_from_str(s, len);
    check(rc >= -1 && rc < OCDZ_LANG_N);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char        *buf;
    size_t       nlen;
    const char  *h, *name, *nl;

    if (size < 1) {
        return 0;
    }

    /* an exact-size copy: reads past the end are ASan's to see */

    buf = malloc(size - 1 ? size - 1 : 1);
    if (buf == NULL) {
        return 0;
    }

    memcpy(buf, data + 1, size - 1);
    h = buf;

    switch (data[0] % 3) {

    case 0:
        session(h, size - 1, "ocdz_session", sizeof("ocdz_session") - 1);
        break;

    case 1:
        session(h, size - 1, "s", 1);
        break;

    default:
        nl = memchr(h, '\n', size - 1);
        if (nl == NULL) {
            session(h, size - 1, "", 0);
            break;
        }

        name = h;
        nlen = nl - h;
        session(nl + 1, size - 2 - nlen, name, nlen);
        break;
    }

    ids(h, size - 1);

    free(buf);

    return 0;
}
