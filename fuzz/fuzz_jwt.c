/*
 * libFuzzer target: ocdz_jwt_verify(). The first byte picks a mode:
 *
 *   0  the rest is a token, checked against a fixed secret;
 *   1  the next byte is a length n: n bytes of secret, then the token;
 *   2  the rest is "header\npayload" JSON, which the harness encodes
 *      and signs with the fixed secret, so the claims parser is reached
 *      (a fuzzer does not forge HMAC-SHA256).
 *
 * Whatever the mode, the result must be a known code, a user only on
 * success, short and free of control characters.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ocdz_jwt.h"
#include "ocdz_test.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)

#define NOW  1761700000L


static const unsigned char  fixed_secret[] = "fuzz-secret-0123456789abcdef";


static void
verify(const ocdz_jwt_conf_t *conf, const char *token, size_t len)
{
    int     rc, rc2;
    char    user[OCDZ_JWT_USER_MAX + 1], user2[OCDZ_JWT_USER_MAX + 1];
    size_t  i, n;

    memset(user, 'X', sizeof(user));

    rc = ocdz_jwt_verify(conf, token, len, NOW, user, sizeof(user));

    check(rc >= OCDZ_JWT_OK && rc <= OCDZ_JWT_ERR_TOO_LONG);
    check(ocdz_jwt_rc_str(rc) != NULL);
    check(memchr(user, '\0', sizeof(user)) != NULL);

    if (rc != OCDZ_JWT_OK) {
        check(user[0] == '\0');
        check(len <= OCDZ_JWT_MAX || rc == OCDZ_JWT_ERR_TOO_LONG);
        return;
    }

    check(len <= OCDZ_JWT_MAX);

    n = strlen(user);
    check(n > 0 && n <= OCDZ_JWT_USER_MAX);

    for (i = 0; i < n; i++) {
        check((unsigned char) user[i] >= 0x20 && user[i] != 0x7f);
    }

    /* same input, same answer */
    rc2 = ocdz_jwt_verify(conf, token, len, NOW, user2, sizeof(user2));
    check(rc2 == rc && strcmp(user, user2) == 0);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char             *tok, *nl;
    size_t            n, hlen, plen;
    unsigned int      mac_len;
    unsigned char     mac[EVP_MAX_MD_SIZE];
    ocdz_jwt_conf_t   conf;

    if (size < 1) {
        return 0;
    }

    conf.secret = fixed_secret;
    conf.secret_len = sizeof(fixed_secret) - 1;
    conf.user_claim = "sub";
    conf.leeway = 60;

    switch (data[0] % 3) {

    case 0:
        verify(&conf, (const char *) data + 1, size - 1);
        break;

    case 1:
        if (size < 2) {
            return 0;
        }

        n = data[1] % 64;
        if (n > size - 2) {
            n = size - 2;
        }

        conf.secret = data + 2;
        conf.secret_len = n;
        conf.user_claim = (data[1] & 0x40) ? "uid" : "sub";
        verify(&conf, (const char *) data + 2 + n, size - 2 - n);
        break;

    default:
        nl = memchr(data + 1, '\n', size - 1);
        if (nl == NULL) {
            return 0;
        }

        hlen = nl - (const char *) data - 1;
        plen = size - 2 - hlen;

        tok = malloc(hlen * 2 + plen * 2 + 64);
        if (tok == NULL) {
            return 0;
        }

        n = ocdz_test_b64url(data + 1, hlen, tok);
        tok[n++] = '.';
        n += ocdz_test_b64url((const unsigned char *) nl + 1, plen, tok + n);

        HMAC(EVP_sha256(), conf.secret, (int) conf.secret_len,
             (unsigned char *) tok, n, mac, &mac_len);

        tok[n++] = '.';
        n += ocdz_test_b64url(mac, mac_len, tok + n);

        verify(&conf, tok, n);

        free(tok);
        break;
    }

    return 0;
}
