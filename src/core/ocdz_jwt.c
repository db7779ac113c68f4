/*
 * HS256 JSON Web Token verification.
 *
 * Order of checks: shape and length, header (alg must be HS256), then
 * the signature over "header.payload", and only then the payload JSON:
 * claims from a token we did not sign are never looked at.
 */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <yajl/yajl_parse.h>

#include "ocdz_jwt.h"


#define OCDZ_JWT_SIG_LEN     32
#define OCDZ_JWT_DEPTH_MAX   16
#define OCDZ_JWT_DEC_MAX     (OCDZ_JWT_MAX / 4 * 3 + 3)
#define OCDZ_JWT_KEYS_MAX    (OCDZ_JWT_DEC_MAX / 4 + 2)
#define OCDZ_JWT_NUM_MAX     64


typedef enum {
    OCDZ_JWT_K_OTHER = 0,
    OCDZ_JWT_K_ALG,
    OCDZ_JWT_K_TYP,
    OCDZ_JWT_K_CRIT,
    OCDZ_JWT_K_EXP,
    OCDZ_JWT_K_NBF
} ocdz_jwt_key_e;


typedef struct {
    int             payload;          /* 0: the header, 1: the claims */
    const char     *user_claim;
    size_t          user_claim_len;

    int             rc;               /* first refusal, OCDZ_JWT_OK */
    unsigned        depth;
    int             seen_value;
    ocdz_jwt_key_e  key;              /* current top-level key */
    int             key_is_user;

    /* keys of the objects open now, a stack: a closed object's go */
    size_t          obj_start[OCDZ_JWT_DEPTH_MAX + 1];
    size_t          arena_start[OCDZ_JWT_DEPTH_MAX + 1];
    size_t          nkeys;
    uint16_t        key_off[OCDZ_JWT_KEYS_MAX];
    uint16_t        key_len[OCDZ_JWT_KEYS_MAX];
    size_t          arena_used;

    /* header */
    int             alg_ok;

    /* claims */
    int             exp_seen;         /* 1: a number, -1: unusable */
    double          exp;
    int             nbf_seen;
    double          nbf;
    int             user_seen;        /* 1: usable, -1: unusable */
    char            user[OCDZ_JWT_USER_MAX + 1];

    /* last: resets clear everything before it */
    unsigned char   arena[OCDZ_JWT_DEC_MAX];
} ocdz_jwt_ctx_t;


static int ocdz_jwt_b64url_decode(const char *in, size_t len,
    unsigned char *out, size_t *out_len);
static int ocdz_jwt_parse(ocdz_jwt_ctx_t *ctx, const unsigned char *json,
    size_t len);
static int ocdz_jwt_refuse(ocdz_jwt_ctx_t *ctx, int rc);
static int ocdz_jwt_top_value(ocdz_jwt_ctx_t *ctx);
static int ocdz_jwt_number_value(const char *s, size_t len, double *v);
static int ocdz_jwt_user_string(ocdz_jwt_ctx_t *ctx, const unsigned char *s,
    size_t len);
static int ocdz_jwt_user_number(ocdz_jwt_ctx_t *ctx, const char *s,
    size_t len);
static int ocdz_jwt_open(ocdz_jwt_ctx_t *ctx);

static int ocdz_jwt_null(void *data);
static int ocdz_jwt_boolean(void *data, int val);
static int ocdz_jwt_number(void *data, const char *s, size_t len);
static int ocdz_jwt_string(void *data, const unsigned char *s, size_t len);
static int ocdz_jwt_start_map(void *data);
static int ocdz_jwt_map_key(void *data, const unsigned char *key,
    size_t len);
static int ocdz_jwt_end_map(void *data);
static int ocdz_jwt_start_array(void *data);
static int ocdz_jwt_end_array(void *data);


static const yajl_callbacks  ocdz_jwt_callbacks = {
    ocdz_jwt_null,
    ocdz_jwt_boolean,
    NULL,
    NULL,
    ocdz_jwt_number,
    ocdz_jwt_string,
    ocdz_jwt_start_map,
    ocdz_jwt_map_key,
    ocdz_jwt_end_map,
    ocdz_jwt_start_array,
    ocdz_jwt_end_array
};


static const char  *ocdz_jwt_rc_strs[] = {
    "ok",
    "malformed token",
    "algorithm not accepted",
    "bad signature",
    "token expired",
    "token not yet valid",
    "no usable exp claim",
    "no usable user claim",
    "token too long"
};


int
ocdz_jwt_verify(const ocdz_jwt_conf_t *conf, const char *token,
    size_t len, time_t now, char *user, size_t user_size)
{
    int              rc;
    long             leeway;
    size_t           i, dots[2], ndots, n, sig_len;
    double           t;
    unsigned int     mac_len;
    unsigned char    mac[EVP_MAX_MD_SIZE];
    unsigned char    sig[OCDZ_JWT_DEC_MAX];
    unsigned char    json[OCDZ_JWT_DEC_MAX];
    ocdz_jwt_ctx_t  *ctx;

    if (user != NULL && user_size > 0) {
        user[0] = '\0';
    }

    if (token == NULL || len == 0) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    if (len > OCDZ_JWT_MAX) {
        return OCDZ_JWT_ERR_TOO_LONG;
    }

    ndots = 0;

    for (i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (ndots == 2) {
                return OCDZ_JWT_ERR_FORMAT;
            }

            dots[ndots++] = i;
        }
    }

    if (ndots != 2 || dots[0] == 0 || dots[1] == dots[0] + 1) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    ctx = malloc(sizeof(ocdz_jwt_ctx_t));
    if (ctx == NULL) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    /* the header */

    if (ocdz_jwt_b64url_decode(token, dots[0], json, &n) != 0) {
        rc = OCDZ_JWT_ERR_FORMAT;
        goto done;
    }

    memset(ctx, 0, offsetof(ocdz_jwt_ctx_t, arena));
    ctx->payload = 0;

    rc = ocdz_jwt_parse(ctx, json, n);
    if (rc != OCDZ_JWT_OK) {
        goto done;
    }

    if (!ctx->alg_ok) {
        rc = OCDZ_JWT_ERR_ALG;
        goto done;
    }

    /* the signature, before anything in the payload is read */

    if (conf == NULL || conf->secret == NULL || conf->secret_len == 0
        || conf->secret_len > 0x7fffffff)
    {
        rc = OCDZ_JWT_ERR_SIGNATURE;
        goto done;
    }

    if (ocdz_jwt_b64url_decode(token + dots[1] + 1, len - dots[1] - 1, sig,
                               &sig_len)
        != 0)
    {
        rc = OCDZ_JWT_ERR_FORMAT;
        goto done;
    }

    if (sig_len != OCDZ_JWT_SIG_LEN) {
        rc = OCDZ_JWT_ERR_SIGNATURE;
        goto done;
    }

    mac_len = 0;

    if (HMAC(EVP_sha256(), conf->secret, (int) conf->secret_len,
             (const unsigned char *) token, dots[1], mac, &mac_len)
        == NULL
        || mac_len != OCDZ_JWT_SIG_LEN)
    {
        OPENSSL_cleanse(mac, sizeof(mac));
        rc = OCDZ_JWT_ERR_SIGNATURE;
        goto done;
    }

    rc = CRYPTO_memcmp(mac, sig, OCDZ_JWT_SIG_LEN) == 0
         ? OCDZ_JWT_OK : OCDZ_JWT_ERR_SIGNATURE;

    /* a MAC we computed for someone else's input must not linger */
    OPENSSL_cleanse(mac, sizeof(mac));

    if (rc != OCDZ_JWT_OK) {
        goto done;
    }

    /* the claims */

    if (ocdz_jwt_b64url_decode(token + dots[0] + 1, dots[1] - dots[0] - 1,
                               json, &n)
        != 0)
    {
        rc = OCDZ_JWT_ERR_FORMAT;
        goto done;
    }

    memset(ctx, 0, offsetof(ocdz_jwt_ctx_t, arena));
    ctx->payload = 1;
    ctx->user_claim = (conf->user_claim && conf->user_claim[0])
                      ? conf->user_claim : "sub";
    ctx->user_claim_len = strlen(ctx->user_claim);

    rc = ocdz_jwt_parse(ctx, json, n);
    if (rc != OCDZ_JWT_OK) {
        goto done;
    }

    if (ctx->exp_seen != 1) {
        rc = OCDZ_JWT_ERR_NO_EXP;
        goto done;
    }

    leeway = conf->leeway > 0 ? conf->leeway : 0;
    t = (double) now;

    /* valid while now < exp (RFC 7519 4.1.4), give or take the leeway */
    if (t >= ctx->exp + (double) leeway) {
        rc = OCDZ_JWT_ERR_EXPIRED;
        goto done;
    }

    if (ctx->nbf_seen && t + (double) leeway < ctx->nbf) {
        rc = OCDZ_JWT_ERR_NOT_YET;
        goto done;
    }

    n = strlen(ctx->user);

    if (ctx->user_seen != 1 || user == NULL || n >= user_size) {
        rc = OCDZ_JWT_ERR_NO_USER;
        goto done;
    }

    memcpy(user, ctx->user, n + 1);
    rc = OCDZ_JWT_OK;

done:

    free(ctx);

    return rc;
}


const char *
ocdz_jwt_rc_str(int rc)
{
    if (rc < 0
        || (size_t) rc >= sizeof(ocdz_jwt_rc_strs) / sizeof(char *))
    {
        return "unknown error";
    }

    return ocdz_jwt_rc_strs[rc];
}


/*
 * base64url (RFC 4648 section 5) without padding, as JWS wants it:
 * '=' and characters outside the alphabet are refused, and so are
 * non-zero bits left over at the end (one encoding per value).
 */

static int
ocdz_jwt_b64url_decode(const char *in, size_t len, unsigned char *out,
    size_t *out_len)
{
    size_t         i, o;
    uint32_t       acc;
    unsigned       bits, c;
    unsigned char  v;

    if (len % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    o = 0;

    for (i = 0; i < len; i++) {
        c = (unsigned char) in[i];

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';

        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;

        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;

        } else if (c == '-') {
            v = 62;

        } else if (c == '_') {
            v = 63;

        } else {
            return -1;
        }

        acc = (acc << 6) | v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char) (acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }

    if (acc != 0) {
        return -1;
    }

    *out_len = o;

    return 0;
}


static int
ocdz_jwt_parse(ocdz_jwt_ctx_t *ctx, const unsigned char *json, size_t len)
{
    yajl_handle  h;
    yajl_status  st;

    ctx->rc = OCDZ_JWT_OK;

    if (len == 0) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    h = yajl_alloc(&ocdz_jwt_callbacks, NULL, ctx);
    if (h == NULL) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    st = yajl_parse(h, json, len);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st == yajl_status_client_canceled) {
        return ctx->rc;
    }

    if (st != yajl_status_ok || !ctx->seen_value) {
        return OCDZ_JWT_ERR_FORMAT;
    }

    return OCDZ_JWT_OK;
}


/* Records the refusal; returns 0 so that a callback cancels with it. */

static int
ocdz_jwt_refuse(ocdz_jwt_ctx_t *ctx, int rc)
{
    if (ctx->rc == OCDZ_JWT_OK) {
        ctx->rc = rc;
    }

    return 0;
}


/*
 * Called for every scalar value: 1 when it is a member of the top-level
 * object (ctx->key tells which), 0 when nested, -1 when it is the top
 * level itself (not an object: refused).
 */

static int
ocdz_jwt_top_value(ocdz_jwt_ctx_t *ctx)
{
    if (ctx->depth == 0) {
        return -1;
    }

    return ctx->depth == 1;
}


/* A JSON number as a finite double, for exp and nbf. */

static int
ocdz_jwt_number_value(const char *s, size_t len, double *v)
{
    char    buf[OCDZ_JWT_NUM_MAX + 1], *end;
    double  d;

    if (len == 0 || len > OCDZ_JWT_NUM_MAX) {
        return -1;
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    d = strtod(buf, &end);

    if (end != buf + len || !isfinite(d)) {
        return -1;
    }

    *v = d;

    return 0;
}


static int
ocdz_jwt_user_string(ocdz_jwt_ctx_t *ctx, const unsigned char *s,
    size_t len)
{
    size_t  i;

    if (len == 0 || len > OCDZ_JWT_USER_MAX) {
        ctx->user_seen = -1;
        return 1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            ctx->user_seen = -1;
            return 1;
        }
    }

    memcpy(ctx->user, s, len);
    ctx->user[len] = '\0';
    ctx->user_seen = 1;

    return 1;
}


/* A non-negative integer, copied as written: JSON has one decimal form. */

static int
ocdz_jwt_user_number(ocdz_jwt_ctx_t *ctx, const char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > 20 || (s[0] == '0' && len > 1)) {
        ctx->user_seen = -1;
        return 1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            ctx->user_seen = -1;
            return 1;
        }
    }

    memcpy(ctx->user, s, len);
    ctx->user[len] = '\0';
    ctx->user_seen = 1;

    return 1;
}


static int
ocdz_jwt_null(void *data)
{
    int              top;
    ocdz_jwt_ctx_t  *ctx = data;

    top = ocdz_jwt_top_value(ctx);

    if (top < 0) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    if (top == 0) {
        return 1;
    }

    if (ctx->key_is_user) {
        ctx->user_seen = -1;
    }

    switch (ctx->key) {

    case OCDZ_JWT_K_ALG:
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_ALG);

    case OCDZ_JWT_K_TYP:
    case OCDZ_JWT_K_NBF:
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);

    case OCDZ_JWT_K_EXP:
        ctx->exp_seen = -1;
        return 1;

    default:
        return 1;
    }
}


static int
ocdz_jwt_boolean(void *data, int val)
{
    return ocdz_jwt_null(data);
}


static int
ocdz_jwt_number(void *data, const char *s, size_t len)
{
    int              top;
    ocdz_jwt_ctx_t  *ctx = data;

    top = ocdz_jwt_top_value(ctx);

    if (top < 0) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    if (top == 0) {
        return 1;
    }

    if (ctx->key_is_user) {
        ocdz_jwt_user_number(ctx, s, len);
    }

    switch (ctx->key) {

    case OCDZ_JWT_K_ALG:
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_ALG);

    case OCDZ_JWT_K_TYP:
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);

    case OCDZ_JWT_K_EXP:
        ctx->exp_seen = ocdz_jwt_number_value(s, len, &ctx->exp) == 0
                        ? 1 : -1;
        return 1;

    case OCDZ_JWT_K_NBF:
        if (ocdz_jwt_number_value(s, len, &ctx->nbf) != 0) {
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
        }

        ctx->nbf_seen = 1;
        return 1;

    default:
        return 1;
    }
}


static int
ocdz_jwt_string(void *data, const unsigned char *s, size_t len)
{
    int              top;
    ocdz_jwt_ctx_t  *ctx = data;

    top = ocdz_jwt_top_value(ctx);

    if (top < 0 || memchr(s, '\0', len) != NULL) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    if (top == 0) {
        return 1;
    }

    if (ctx->key_is_user) {
        ocdz_jwt_user_string(ctx, s, len);
    }

    switch (ctx->key) {

    case OCDZ_JWT_K_ALG:
        /* exactly, case and all: "hs256" is not an algorithm */
        if (len != 5 || memcmp(s, "HS256", 5) != 0) {
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_ALG);
        }

        ctx->alg_ok = 1;
        return 1;

    case OCDZ_JWT_K_NBF:
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);

    case OCDZ_JWT_K_EXP:
        ctx->exp_seen = -1;
        return 1;

    default:
        return 1;
    }
}


static int
ocdz_jwt_start_map(void *data)
{
    ocdz_jwt_ctx_t  *ctx = data;

    if (ctx->depth == 0) {
        ctx->seen_value = 1;
    }

    return ocdz_jwt_open(ctx);
}


static int
ocdz_jwt_map_key(void *data, const unsigned char *key, size_t len)
{
    size_t           i;
    ocdz_jwt_ctx_t  *ctx = data;

    if (memchr(key, '\0', len) != NULL) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    for (i = ctx->obj_start[ctx->depth]; i < ctx->nkeys; i++) {
        if (ctx->key_len[i] == len
            && memcmp(ctx->arena + ctx->key_off[i], key, len) == 0)
        {
            /* the same claim twice: which one would a reader believe? */
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
        }
    }

    if (ctx->nkeys == OCDZ_JWT_KEYS_MAX
        || len > sizeof(ctx->arena) - ctx->arena_used)
    {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    ctx->key_off[ctx->nkeys] = (uint16_t) ctx->arena_used;
    ctx->key_len[ctx->nkeys] = (uint16_t) len;
    ctx->nkeys++;

    memcpy(ctx->arena + ctx->arena_used, key, len);
    ctx->arena_used += len;

    ctx->key = OCDZ_JWT_K_OTHER;
    ctx->key_is_user = 0;

    if (ctx->depth != 1) {
        return 1;
    }

    if (!ctx->payload) {
        if (len == 3 && memcmp(key, "alg", 3) == 0) {
            ctx->key = OCDZ_JWT_K_ALG;

        } else if (len == 3 && memcmp(key, "typ", 3) == 0) {
            ctx->key = OCDZ_JWT_K_TYP;

        } else if (len == 4 && memcmp(key, "crit", 4) == 0) {
            /* we understand no extension, so none may be critical */
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_ALG);
        }

        return 1;
    }

    if (len == 3 && memcmp(key, "exp", 3) == 0) {
        ctx->key = OCDZ_JWT_K_EXP;

    } else if (len == 3 && memcmp(key, "nbf", 3) == 0) {
        ctx->key = OCDZ_JWT_K_NBF;
    }

    if (len == ctx->user_claim_len
        && memcmp(key, ctx->user_claim, len) == 0)
    {
        ctx->key_is_user = 1;
    }

    return 1;
}


static int
ocdz_jwt_end_map(void *data)
{
    ocdz_jwt_ctx_t  *ctx = data;

    ctx->nkeys = ctx->obj_start[ctx->depth];
    ctx->arena_used = ctx->arena_start[ctx->depth];
    ctx->depth--;
    ctx->key = OCDZ_JWT_K_OTHER;
    ctx->key_is_user = 0;

    return 1;
}


static int
ocdz_jwt_start_array(void *data)
{
    ocdz_jwt_ctx_t  *ctx = data;

    if (ctx->depth == 0) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    return ocdz_jwt_open(ctx);
}


/*
 * Opens an object or an array. As a member of the top level, it is the
 * wrong type for every key we know.
 */

static int
ocdz_jwt_open(ocdz_jwt_ctx_t *ctx)
{
    if (ctx->depth == 1) {
        if (ctx->key_is_user) {
            ctx->user_seen = -1;
        }

        switch (ctx->key) {

        case OCDZ_JWT_K_ALG:
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_ALG);

        case OCDZ_JWT_K_TYP:
        case OCDZ_JWT_K_NBF:
            return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);

        case OCDZ_JWT_K_EXP:
            ctx->exp_seen = -1;
            break;

        default:
            break;
        }
    }

    if (ctx->depth == OCDZ_JWT_DEPTH_MAX) {
        return ocdz_jwt_refuse(ctx, OCDZ_JWT_ERR_FORMAT);
    }

    ctx->depth++;
    ctx->obj_start[ctx->depth] = ctx->nkeys;
    ctx->arena_start[ctx->depth] = ctx->arena_used;
    ctx->key = OCDZ_JWT_K_OTHER;
    ctx->key_is_user = 0;

    return 1;
}


static int
ocdz_jwt_end_array(void *data)
{
    return ocdz_jwt_end_map(data);
}
