/*
 * Unit tests of ocdz_jwt: tokens are built here, signed with OpenSSL's
 * HMAC, then verified, tampered with and refused.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tap.h"
#include "ocdz_jwt.h"
#include "ocdz_test.h"


#define NOW  1761700000L    /* 2025-10-29 */


static const char  *secret = "0123456789abcdef0123456789abcdef";
static char         tok[16384];
static char         user[OCDZ_JWT_USER_MAX + 1];


/* header.payload.signature, signed with key (or unsigned when NULL) */

static const char *
make_key(const char *header, const char *payload, const char *key,
    size_t sig_len)
{
    size_t         n;
    unsigned int   mac_len;
    unsigned char  mac[EVP_MAX_MD_SIZE];

    n = ocdz_test_b64url((const unsigned char *) header, strlen(header), tok);
    tok[n++] = '.';
    n += ocdz_test_b64url((const unsigned char *) payload, strlen(payload),
                          tok + n);

    if (key != NULL) {
        HMAC(EVP_sha256(), key, (int) strlen(key), (unsigned char *) tok, n,
             mac, &mac_len);
        tok[n++] = '.';
        ocdz_test_b64url(mac, sig_len < mac_len ? sig_len : mac_len, tok + n);

    } else {
        tok[n++] = '.';
        tok[n] = '\0';
    }

    return tok;
}


static const char *
make(const char *header, const char *payload)
{
    return make_key(header, payload, secret, 32);
}


static const char *
claims(const char *fmt, long a, long b)
{
    static char  buf[1024];

    snprintf(buf, sizeof(buf), fmt, a, b);

    return buf;
}


static int
verify_conf(const ocdz_jwt_conf_t *conf, const char *t)
{
    return ocdz_jwt_verify(conf, t, strlen(t), NOW, user, sizeof(user));
}


static int
verify(const char *t)
{
    ocdz_jwt_conf_t  conf;

    conf.secret = (const unsigned char *) secret;
    conf.secret_len = strlen(secret);
    conf.user_claim = "sub";
    conf.leeway = 30;

    return verify_conf(&conf, t);
}


#define HS256  "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"


static void
test_valid(void)
{
    ocdz_jwt_conf_t  conf;

    is_int(verify(make(HS256, claims("{\"sub\":\"user-42\",\"exp\":%ld}",
                                     NOW + 3600, 0))),
           OCDZ_JWT_OK, "valid token");
    is_str(user, "user-42", "user from sub");

    /* a token from jwt.io's HS256 example, re-signed with our secret */
    is_int(verify(make("{\"alg\":\"HS256\"}",
                       claims("{\"sub\":\"1234567890\",\"name\":\"John Doe\","
                              "\"iat\":1516239022,\"exp\":%ld,\"nbf\":%ld}",
                              NOW + 60, NOW - 60))),
           OCDZ_JWT_OK, "no typ, nbf in the past");
    is_str(user, "1234567890", "user");

    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld.75}",
                                     NOW + 10, 0))),
           OCDZ_JWT_OK, "fractional exp");
    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld.0e0}",
                                     NOW + 10, 0))),
           OCDZ_JWT_OK, "exp with an exponent");

    is_int(verify(make(HS256, claims("{\"sub\":987654321,\"exp\":%ld}",
                                     NOW + 10, 0))),
           OCDZ_JWT_OK, "numeric sub");
    is_str(user, "987654321", "numeric sub written in decimal");

    is_int(verify(make(HS256, claims("{\"sub\":0,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_OK, "sub 0");
    is_str(user, "0", "sub 0 written");

    is_int(verify(make(HS256, claims("{\"sub\":\"\\u0645\\u0631\","
                                     "\"exp\":%ld,\"aud\":[\"a\",{\"b\":"
                                     "[1,2]}],\"x\":{\"sub\":\"evil\"}}",
                                     NOW + 10, 0))),
           OCDZ_JWT_OK, "nested claims and a non-ASCII sub");
    is_str(user, "\xd9\x85\xd8\xb1", "non-ASCII sub decoded");

    is_int(verify(make("{\"typ\":\"JWT\",\"kid\":\"k1\",\"alg\":\"HS256\"}",
                       claims("{\"exp\":%ld,\"sub\":\"z\"}", NOW + 10, 0))),
           OCDZ_JWT_OK, "alg last in the header, kid ignored");

    conf.secret = (const unsigned char *) secret;
    conf.secret_len = strlen(secret);
    conf.user_claim = "user_id";
    conf.leeway = 0;

    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"nope\",\"user_id\":"
                                          "\"c-77\",\"exp\":%ld}",
                                          NOW + 10, 0))),
           OCDZ_JWT_OK, "custom claim name");
    is_str(user, "c-77", "user from the custom claim");

    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"only-sub\","
                                          "\"exp\":%ld}", NOW + 10, 0))),
           OCDZ_JWT_ERR_NO_USER, "custom claim missing");

    conf.user_claim = NULL;
    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"dflt\",\"exp\":%ld}",
                                          NOW + 10, 0))),
           OCDZ_JWT_OK, "NULL user_claim means sub");
    is_str(user, "dflt", "default claim sub");
}


static void
test_times(void)
{
    ocdz_jwt_conf_t  conf;

    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld}",
                                     NOW - 3600, 0))),
           OCDZ_JWT_ERR_EXPIRED, "expired token");
    is_str(user, "", "no user on failure");

    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld}",
                                     NOW - 29, 0))),
           OCDZ_JWT_OK, "expired within the leeway is accepted");
    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld}",
                                     NOW - 30, 0))),
           OCDZ_JWT_ERR_EXPIRED, "expired by exactly the leeway");

    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld,"
                                     "\"nbf\":%ld}", NOW + 7200,
                                     NOW + 3600))),
           OCDZ_JWT_ERR_NOT_YET, "nbf in the future");
    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld,"
                                     "\"nbf\":%ld}", NOW + 7200,
                                     NOW + 30))),
           OCDZ_JWT_OK, "nbf within the leeway");
    is_int(verify(make(HS256, claims("{\"sub\":\"u\",\"exp\":%ld,"
                                     "\"nbf\":\"%ld\"}", NOW + 7200,
                                     NOW))),
           OCDZ_JWT_ERR_FORMAT, "nbf as a string");

    conf.secret = (const unsigned char *) secret;
    conf.secret_len = strlen(secret);
    conf.user_claim = "sub";
    conf.leeway = 0;

    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"u\",\"exp\":%ld}",
                                          NOW, 0))),
           OCDZ_JWT_ERR_EXPIRED, "exp == now is expired without leeway");
    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"u\",\"exp\":%ld}",
                                          NOW + 1, 0))),
           OCDZ_JWT_OK, "exp == now + 1 is valid");
    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"u\",\"exp\":%ld,"
                                          "\"nbf\":%ld}", NOW + 10,
                                          NOW + 1))),
           OCDZ_JWT_ERR_NOT_YET, "nbf == now + 1 without leeway");

    conf.leeway = -100;
    is_int(verify_conf(&conf, make(HS256,
                                   claims("{\"sub\":\"u\",\"exp\":%ld}",
                                          NOW + 1, 0))),
           OCDZ_JWT_OK, "a negative leeway counts as 0");

    is_int(verify(make(HS256, "{\"sub\":\"u\"}")), OCDZ_JWT_ERR_NO_EXP,
           "no exp");
    is_int(verify(make(HS256, "{\"sub\":\"u\",\"exp\":\"1999999999\"}")),
           OCDZ_JWT_ERR_NO_EXP, "exp as a string");
    is_int(verify(make(HS256, "{\"sub\":\"u\",\"exp\":null}")),
           OCDZ_JWT_ERR_NO_EXP, "exp null");
    is_int(verify(make(HS256, "{\"sub\":\"u\",\"exp\":[1999999999]}")),
           OCDZ_JWT_ERR_NO_EXP, "exp in an array");
    is_int(verify(make(HS256, "{\"sub\":\"u\",\"exp\":1e999}")),
           OCDZ_JWT_ERR_NO_EXP, "infinite exp");
    is_int(verify(make(HS256, "{\"sub\":\"u\",\"x\":{\"exp\":1999999999}}")),
           OCDZ_JWT_ERR_NO_EXP, "a nested exp does not count");
}


static void
test_alg(void)
{
    const char  *payload;

    payload = claims("{\"sub\":\"u\",\"exp\":%ld}", NOW + 3600, 0);

    is_int(verify(make_key("{\"alg\":\"none\",\"typ\":\"JWT\"}", payload,
                           NULL, 0)),
           OCDZ_JWT_ERR_ALG, "alg none, unsigned");
    is_int(verify(make("{\"alg\":\"none\"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg none, signed anyway");
    is_int(verify(make("{\"alg\":\"HS512\"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg HS512");
    is_int(verify(make("{\"alg\":\"RS256\"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg RS256");
    is_int(verify(make("{\"alg\":\"hs256\"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg hs256");
    is_int(verify(make("{\"alg\":\"HS256 \"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg with a trailing space");
    is_int(verify(make("{\"typ\":\"JWT\"}", payload)), OCDZ_JWT_ERR_ALG,
           "alg missing");
    is_int(verify(make("{\"alg\":null}", payload)), OCDZ_JWT_ERR_ALG,
           "alg null");
    is_int(verify(make("{\"alg\":[\"HS256\"]}", payload)), OCDZ_JWT_ERR_ALG,
           "alg in an array");
    is_int(verify(make("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", payload)),
           OCDZ_JWT_ERR_ALG, "crit header");
    is_int(verify(make("{\"alg\":\"HS256\",\"alg\":\"HS256\"}", payload)),
           OCDZ_JWT_ERR_FORMAT, "alg twice");
    is_int(verify(make("{\"alg\":\"HS256\",\"typ\":7}", payload)),
           OCDZ_JWT_ERR_FORMAT, "typ not a string");
    is_int(verify(make("[\"HS256\"]", payload)), OCDZ_JWT_ERR_FORMAT,
           "header not an object");
    is_int(verify(make("{\"alg\":\"HS256\"", payload)), OCDZ_JWT_ERR_FORMAT,
           "header truncated");
    is_int(verify(make("{\"x\":{\"alg\":\"HS256\"}}", payload)),
           OCDZ_JWT_ERR_ALG, "a nested alg does not count");
}


static void
test_signature(void)
{
    char         t[2048], *p;
    const char  *payload;
    size_t       n;

    payload = claims("{\"sub\":\"u\",\"exp\":%ld}", NOW + 3600, 0);

    is_int(verify(make_key(HS256, payload, "another secret", 32)),
           OCDZ_JWT_ERR_SIGNATURE, "wrong secret");
    is_int(verify(make_key(HS256, payload, secret, 31)),
           OCDZ_JWT_ERR_SIGNATURE, "signature truncated to 31 bytes");
    is_int(verify(make_key(HS256, payload, secret, 16)),
           OCDZ_JWT_ERR_SIGNATURE, "signature truncated to 16 bytes");

    /* the signature of another payload pasted on */
    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    p = strrchr(t, '.');
    make(HS256, claims("{\"sub\":\"admin\",\"exp\":%ld}", NOW + 3600, 0));
    n = strrchr(tok, '.') - tok;
    snprintf(tok + n, sizeof(tok) - n, "%s", p);
    is_int(verify(tok), OCDZ_JWT_ERR_SIGNATURE, "tampered payload");
    is_str(user, "", "no user from a tampered token");

    /* one bit flipped in the signature */
    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    n = strlen(t);
    t[n - 5] = t[n - 5] == 'A' ? 'B' : 'A';
    is_int(verify(t), OCDZ_JWT_ERR_SIGNATURE, "signature changed");

    /* the last character carries 4 unused bits: they must be zero */
    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    n = strlen(t);
    ok(t[n - 1] == 'A' || t[n - 1] == 'E' || t[n - 1] == 'I'
       || t[n - 1] == 'M' || t[n - 1] == 'Q' || t[n - 1] == 'U'
       || t[n - 1] == 'Y' || t[n - 1] == 'c' || t[n - 1] == 'g'
       || t[n - 1] == 'k' || t[n - 1] == 'o' || t[n - 1] == 's'
       || t[n - 1] == 'w' || t[n - 1] == '0' || t[n - 1] == '4'
       || t[n - 1] == '8', "canonical last character");
    t[n - 1] = t[n - 1] + 1;
    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "non-canonical signature refused");

    /* a payload that is not JSON, but signed: refused after the MAC */
    is_int(verify(make(HS256, "not json")), OCDZ_JWT_ERR_FORMAT,
           "signed garbage payload");
    is_int(verify(make_key(HS256, "not json", "wrong", 32)),
           OCDZ_JWT_ERR_SIGNATURE, "garbage payload, bad signature: "
           "the signature is checked first");

    /* empty secret */
    {
        ocdz_jwt_conf_t  conf;

        conf.secret = (const unsigned char *) "";
        conf.secret_len = 0;
        conf.user_claim = "sub";
        conf.leeway = 0;

        is_int(verify_conf(&conf, make(HS256, payload)),
               OCDZ_JWT_ERR_SIGNATURE, "empty secret verifies nothing");
        is_int(ocdz_jwt_verify(NULL, tok, strlen(tok), NOW, user,
                               sizeof(user)),
               OCDZ_JWT_ERR_SIGNATURE, "NULL conf verifies nothing");
    }
}


static void
test_format(void)
{
    char         t[8192];
    const char  *payload;
    size_t       n;

    payload = claims("{\"sub\":\"u\",\"exp\":%ld}", NOW + 3600, 0);

    is_int(verify(""), OCDZ_JWT_ERR_FORMAT, "empty token");
    is_int(verify("abc"), OCDZ_JWT_ERR_FORMAT, "no dots");
    is_int(verify("a.b"), OCDZ_JWT_ERR_FORMAT, "two parts");
    is_int(verify("a.b.c.d"), OCDZ_JWT_ERR_FORMAT, "four parts");
    is_int(verify(".."), OCDZ_JWT_ERR_FORMAT, "empty parts");

    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    n = strlen(t);
    memcpy(t + n, ".x", 3);
    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "a fourth part");

    /* padding: a 32-byte signature is 43 characters, 44 with "=" */
    snprintf(t, sizeof(t), "%s=", make(HS256, payload));
    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "padded signature refused");

    make("{\"alg\":\"HS256\"}", payload);
    n = strchr(tok, '.') - tok;
    snprintf(t, sizeof(t), "%.*s==%s", (int) n, tok, tok + n);
    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "padded header refused");

    /* standard base64 characters instead of base64url */
    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    n = strlen(t);

    {
        size_t  i;
        int     changed = 0;

        for (i = 0; i < n; i++) {
            if (t[i] == '-') {
                t[i] = '+';
                changed = 1;

            } else if (t[i] == '_') {
                t[i] = '/';
                changed = 1;
            }
        }

        if (!changed) {
            t[n - 3] = '+';
        }
    }

    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "'+' and '/' refused");

    snprintf(t, sizeof(t), " %s", make(HS256, payload));
    is_int(verify(t), OCDZ_JWT_ERR_FORMAT, "leading space refused");

    snprintf(t, sizeof(t), "%s", make(HS256, payload));
    t[3] = '\0';
    is_int(ocdz_jwt_verify(NULL, t, strlen(tok), NOW, user, sizeof(user)),
           OCDZ_JWT_ERR_FORMAT, "NUL inside the token refused");

    /* header base64 of length 4k+1 is impossible */
    is_int(verify("eyJhb.e30.AAAA"), OCDZ_JWT_ERR_FORMAT,
           "impossible base64 length");

    /* too long: one byte over the cap, even if valid otherwise */
    {
        char  pay[OCDZ_JWT_MAX];

        snprintf(pay, sizeof(pay), "{\"sub\":\"u\",\"exp\":%ld,\"pad\":\"",
                 NOW + 3600);
        n = strlen(pay);
        memset(pay + n, 'x', 3000);
        memcpy(pay + n + 3000, "\"}", 3);

        make(HS256, pay);
        ok(strlen(tok) > OCDZ_JWT_MAX, "built an over-long token");
        is_int(verify(tok), OCDZ_JWT_ERR_TOO_LONG, "token over the cap");

        memcpy(pay + n + 2800, "\"}", 3);
        make(HS256, pay);
        ok(strlen(tok) <= OCDZ_JWT_MAX, "built a token just under the cap");
        is_int(verify(tok), OCDZ_JWT_OK, "long token under the cap");
    }

    is_str(ocdz_jwt_rc_str(OCDZ_JWT_OK), "ok", "rc_str ok");
    is_str(ocdz_jwt_rc_str(OCDZ_JWT_ERR_EXPIRED), "token expired",
           "rc_str expired");
    is_str(ocdz_jwt_rc_str(OCDZ_JWT_ERR_TOO_LONG), "token too long",
           "rc_str too long");
    is_str(ocdz_jwt_rc_str(-1), "unknown error", "rc_str -1");
    is_str(ocdz_jwt_rc_str(99), "unknown error", "rc_str 99");
}


static void
test_claims(void)
{
    char  pay[512], name[300];

    is_int(verify(make(HS256, claims("{\"exp\":%ld}", NOW + 10, 0))),
           OCDZ_JWT_ERR_NO_USER, "missing sub");
    is_int(verify(make(HS256, claims("{\"sub\":\"\",\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "empty sub");
    is_int(verify(make(HS256, claims("{\"sub\":null,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "null sub");
    is_int(verify(make(HS256, claims("{\"sub\":true,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "boolean sub");
    is_int(verify(make(HS256, claims("{\"sub\":[\"u\"],\"exp\":%ld}",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_NO_USER, "array sub");
    is_int(verify(make(HS256, claims("{\"sub\":{\"id\":1},\"exp\":%ld}",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_NO_USER, "object sub");
    is_int(verify(make(HS256, claims("{\"sub\":-5,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "negative numeric sub");
    is_int(verify(make(HS256, claims("{\"sub\":1.5,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "fractional sub");
    is_int(verify(make(HS256, claims("{\"sub\":1e3,\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_ERR_NO_USER, "sub with an exponent");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\\nb\",\"exp\":%ld}",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_NO_USER, "control character in sub");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\\u0000b\",\"exp\":%ld}",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "NUL in sub");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"sub\":\"b\","
                                     "\"exp\":%ld}", NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "sub twice");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"exp\":%ld,"
                                     "\"exp\":%ld}", NOW + 10, NOW + 20))),
           OCDZ_JWT_ERR_FORMAT, "exp twice");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"s\\u0075b\":\"b\","
                                     "\"exp\":%ld}", NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "sub twice, once escaped");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"x\":{\"k\":1,"
                                     "\"k\":2},\"exp\":%ld}", NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "duplicate key in a nested object");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"x\":[{\"k\":1},"
                                     "{\"k\":2}],\"exp\":%ld}", NOW + 10,
                                     0))),
           OCDZ_JWT_OK, "same key in sibling objects");
    is_int(verify(make(HS256, claims("[{\"sub\":\"a\",\"exp\":%ld}]",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "payload an array");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"exp\":%ld} x",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "trailing garbage in the payload");
    is_int(verify(make(HS256, claims("{\"sub\":\"a\",\"exp\":%ld}{}",
                                     NOW + 10, 0))),
           OCDZ_JWT_ERR_FORMAT, "two values in the payload");
    is_int(verify(make(HS256, "{\"sub\":\"\xc3\x28\",\"exp\":9999999999}")),
           OCDZ_JWT_ERR_FORMAT, "invalid UTF-8 in the payload");
    is_int(verify(make(HS256, "{\"sub\":\"a\",\"exp\":9999999999,\"d\":"
                              "[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}")),
           OCDZ_JWT_ERR_FORMAT, "payload nested too deep");

    /* user claim length: 128 fit, 129 do not */
    memset(name, 'n', OCDZ_JWT_USER_MAX);
    name[OCDZ_JWT_USER_MAX] = '\0';
    snprintf(pay, sizeof(pay), "{\"sub\":\"%s\",\"exp\":%ld}", name,
             NOW + 10);
    is_int(verify(make(HS256, pay)), OCDZ_JWT_OK, "sub of 128 bytes");
    is_int(strlen(user), OCDZ_JWT_USER_MAX, "all 128 bytes written");

    memset(name, 'n', OCDZ_JWT_USER_MAX + 1);
    name[OCDZ_JWT_USER_MAX + 1] = '\0';
    snprintf(pay, sizeof(pay), "{\"sub\":\"%s\",\"exp\":%ld}", name,
             NOW + 10);
    is_int(verify(make(HS256, pay)), OCDZ_JWT_ERR_NO_USER,
           "sub of 129 bytes refused");

    /* the caller's buffer too small */
    {
        char             small[4];
        ocdz_jwt_conf_t  conf;

        conf.secret = (const unsigned char *) secret;
        conf.secret_len = strlen(secret);
        conf.user_claim = "sub";
        conf.leeway = 0;

        make(HS256, claims("{\"sub\":\"abcd\",\"exp\":%ld}", NOW + 10, 0));
        is_int(ocdz_jwt_verify(&conf, tok, strlen(tok), NOW, small,
                               sizeof(small)),
               OCDZ_JWT_ERR_NO_USER, "user buffer too small");
        is_str(small, "", "small buffer left empty");

        make(HS256, claims("{\"sub\":\"abc\",\"exp\":%ld}", NOW + 10, 0));
        is_int(ocdz_jwt_verify(&conf, tok, strlen(tok), NOW, small,
                               sizeof(small)),
               OCDZ_JWT_OK, "user buffer just large enough");
        is_str(small, "abc", "user fits");
    }
}


int
main(void)
{
    test_valid();
    test_times();
    test_alg();
    test_signature();
    test_format();
    test_claims();

    return done_testing();
}
