/*
 * HS256 JSON Web Token verification (RFC 7519 / 7515 compact form).
 *
 * Pure C, no nginx. HMAC-SHA256 through OpenSSL's one-shot HMAC(),
 * compared in constant time (CRYPTO_memcmp). Only "alg":"HS256" is
 * accepted ("none" and everything else is refused); "exp" is required,
 * "nbf" honoured; the user comes from a configurable claim (a string or
 * an integer).
 */

#ifndef _OCDZ_JWT_H_INCLUDED_
#define _OCDZ_JWT_H_INCLUDED_


#include <stddef.h>
#include <time.h>


#define OCDZ_JWT_MAX         4096     /* longest token we look at */
#define OCDZ_JWT_USER_MAX    128


typedef enum {
    OCDZ_JWT_OK = 0,
    OCDZ_JWT_ERR_FORMAT,       /* not three base64url parts, bad JSON */
    OCDZ_JWT_ERR_ALG,          /* alg missing or not HS256, or crit */
    OCDZ_JWT_ERR_SIGNATURE,
    OCDZ_JWT_ERR_EXPIRED,      /* exp in the past (beyond leeway) */
    OCDZ_JWT_ERR_NOT_YET,      /* nbf in the future (beyond leeway) */
    OCDZ_JWT_ERR_NO_EXP,
    OCDZ_JWT_ERR_NO_USER,      /* the user claim is missing or unusable */
    OCDZ_JWT_ERR_TOO_LONG
} ocdz_jwt_rc_e;


typedef struct {
    const unsigned char  *secret;
    size_t                secret_len;
    const char           *user_claim;   /* NUL-terminated, e.g. "sub" */
    long                  leeway;       /* seconds */
} ocdz_jwt_conf_t;


/*
 * Verifies token at time now; on success writes the user id
 * (NUL-terminated) into user. A numeric claim is written in decimal.
 */
int ocdz_jwt_verify(const ocdz_jwt_conf_t *conf, const char *token,
    size_t len, time_t now, char *user, size_t user_size);

const char *ocdz_jwt_rc_str(int rc);


#endif /* _OCDZ_JWT_H_INCLUDED_ */
