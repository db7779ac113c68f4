/*
 * Session tokens as a request carries them: in a cookie of a Cookie
 * header, or after "Bearer " in an Authorization header. Pure C, no
 * nginx: the card endpoint calls it, the fuzzer drives it.
 *
 * A token is 16 to OCDZ_JWT_MAX characters of [A-Za-z0-9-_.~+/=] (URL-
 * safe or standard base64, JWTs). Found tokens point into the header
 * value given: nothing is copied or allocated.
 */

#ifndef _OCDZ_SESSION_H_INCLUDED_
#define _OCDZ_SESSION_H_INCLUDED_


#include <stddef.h>

#include "ocdz_jwt.h"


#define OCDZ_SESSION_TOKEN_MIN  16
#define OCDZ_SESSION_TOKEN_MAX  OCDZ_JWT_MAX


/* 1 if s[0..len) is a well-formed session token, else 0 */
int ocdz_session_token_valid(const char *s, size_t len);

/*
 * The first cookie called name[0..name_len) in one Cookie header value
 * whose value is a valid token (cookies are separated by ';', spaces and
 * tabs before a cookie and spaces after its value are ignored; a cookie
 * with an invalid value is skipped). Returns 1 and sets *token, *len, or
 * 0. An empty name never matches.
 */
int ocdz_session_cookie(const char *header, size_t header_len,
    const char *name, size_t name_len, const char **token, size_t *len);

/*
 * The token of an Authorization header value "Bearer <token>" (the
 * scheme in any case, spaces before the token ignored). Returns 1 and
 * sets *token, *len when the token is valid, else 0.
 */
int ocdz_session_bearer(const char *header, size_t header_len,
    const char **token, size_t *len);


#endif /* _OCDZ_SESSION_H_INCLUDED_ */
