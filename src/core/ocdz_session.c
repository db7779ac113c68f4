/*
 * Session tokens in request headers: see ocdz_session.h.
 */

#include <string.h>
#include <strings.h>

#include "ocdz_session.h"


#define OCDZ_BEARER      "Bearer "
#define OCDZ_BEARER_LEN  (sizeof(OCDZ_BEARER) - 1)


int
ocdz_session_token_valid(const char *s, size_t len)
{
    size_t  i;
    int     c;

    if (s == NULL || len < OCDZ_SESSION_TOKEN_MIN
        || len > OCDZ_SESSION_TOKEN_MAX)
    {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'
            || c == '~' || c == '+' || c == '/' || c == '=')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


int
ocdz_session_cookie(const char *header, size_t header_len,
    const char *name, size_t name_len, const char **token, size_t *len)
{
    size_t       n;
    const char  *p, *last, *start, *end, *v;

    if (header == NULL || name == NULL || name_len == 0) {
        return 0;
    }

    p = header;
    last = header + header_len;

    while (p < last) {

        while (p < last && (*p == ' ' || *p == ';' || *p == '\t')) {
            p++;
        }

        start = p;

        while (p < last && *p != ';') {
            p++;
        }

        end = p;

        if ((size_t) (end - start) <= name_len
            || start[name_len] != '='
            || memcmp(start, name, name_len) != 0)
        {
            continue;
        }

        v = start + name_len + 1;
        n = end - v;

        while (n && v[n - 1] == ' ') {
            n--;
        }

        if (ocdz_session_token_valid(v, n)) {
            *token = v;
            *len = n;
            return 1;
        }
    }

    return 0;
}


int
ocdz_session_bearer(const char *header, size_t header_len,
    const char **token, size_t *len)
{
    size_t       n;
    const char  *v;

    if (header == NULL || header_len <= OCDZ_BEARER_LEN
        || strncasecmp(header, OCDZ_BEARER, OCDZ_BEARER_LEN) != 0)
    {
        return 0;
    }

    v = header + OCDZ_BEARER_LEN;
    n = header_len - OCDZ_BEARER_LEN;

    while (n && v[0] == ' ') {
        v++;
        n--;
    }

    if (!ocdz_session_token_valid(v, n)) {
        return 0;
    }

    *token = v;
    *len = n;

    return 1;
}
