/*
 * One OneClickDz reply parsed with yajl's event parser.
 *
 * Only the top-level object and its "data" and "error" objects are read;
 * everything else is walked and skipped, under the same caps. Keys are
 * tracked per object at every level, so a duplicate anywhere is refused:
 * a reply that means two things to two parsers is not a reply we act on.
 */

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <yajl/yajl_parse.h>

#include "ocdz_upstream.h"


typedef enum {
    OCDZ_F_SKIP = 0,           /* unknown key: the value is walked */
    OCDZ_F_SUCCESS,
    OCDZ_F_DATA,
    OCDZ_F_ERROR,
    OCDZ_F_MESSAGE,
    OCDZ_F_STATUS_CODE,
    OCDZ_F_STR,                /* a string copied into the reply */
    OCDZ_F_AMOUNT
} ocdz_up_kind_e;


typedef enum {
    OCDZ_SEC_TOP = 0,
    OCDZ_SEC_DATA,
    OCDZ_SEC_ERROR
} ocdz_up_section_e;


typedef struct {
    ocdz_up_section_e   section;
    const char         *name;     /* the key */
    const char         *path;     /* for error messages */
    ocdz_up_kind_e      kind;
    size_t              offset;   /* of the buffer in the reply */
    size_t              max;      /* longest string, without the NUL */
} ocdz_up_field_t;


/* One key seen in one object: an open-addressing hash set entry. */
typedef struct {
    uint32_t            serial;   /* object it belongs to; 0: empty */
    uint32_t            hash;
    uint32_t            off;      /* into the key arena */
    uint32_t            len;
} ocdz_up_key_t;


typedef struct {
    ocdz_up_key_t      *slots;
    size_t              mask;
    size_t              nkeys;
    unsigned char      *arena;
    size_t              used;
    size_t              size;
} ocdz_up_keyset_t;


typedef struct {
    ocdz_upstream_reply_t  *reply;
    ocdz_up_keyset_t        keys;

    int                     rc;
    char                   *err;
    size_t                  errlen;

    unsigned                depth;
    uint32_t                serial[OCDZ_UPSTREAM_DEPTH_MAX + 1];
    uint32_t                next_serial;

    ocdz_up_section_e       section;   /* of the object at depth 2 */
    const ocdz_up_field_t  *field;     /* of the current key at depth 1
                                          or 2; NULL: unknown */
    int                     seen_value;
} ocdz_up_ctx_t;


#define ocdz_up_off(f)  offsetof(ocdz_upstream_reply_t, f)


static const ocdz_up_field_t  ocdz_up_fields[] = {

    { OCDZ_SEC_TOP, "success", "success", OCDZ_F_SUCCESS, 0, 0 },
    { OCDZ_SEC_TOP, "data", "data", OCDZ_F_DATA, 0, 0 },
    { OCDZ_SEC_TOP, "error", "error", OCDZ_F_ERROR,
      ocdz_up_off(error_code), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_TOP, "message", "message", OCDZ_F_MESSAGE,
      ocdz_up_off(error_message), OCDZ_UP_TEXT_MAX },
    { OCDZ_SEC_TOP, "statusCode", "statusCode", OCDZ_F_STATUS_CODE, 0, 0 },

    { OCDZ_SEC_ERROR, "code", "error.code", OCDZ_F_STR,
      ocdz_up_off(error_code), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_ERROR, "message", "error.message", OCDZ_F_STR,
      ocdz_up_off(error_message), OCDZ_UP_TEXT_MAX },

    { OCDZ_SEC_DATA, "_id", "data._id", OCDZ_F_STR,
      ocdz_up_off(id), OCDZ_UP_ID_MAX },
    { OCDZ_SEC_DATA, "ref", "data.ref", OCDZ_F_STR,
      ocdz_up_off(ref), OCDZ_UP_ID_MAX },
    { OCDZ_SEC_DATA, "status", "data.status", OCDZ_F_STR,
      ocdz_up_off(status_str), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "type", "data.type", OCDZ_F_STR,
      ocdz_up_off(type), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "number", "data.number", OCDZ_F_STR,
      ocdz_up_off(number), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "topup_amount", "data.topup_amount", OCDZ_F_AMOUNT,
      0, 0 },
    { OCDZ_SEC_DATA, "card_code", "data.card_code", OCDZ_F_STR,
      ocdz_up_off(card_code), OCDZ_UP_CARD_MAX },
    { OCDZ_SEC_DATA, "num_trans", "data.num_trans", OCDZ_F_STR,
      ocdz_up_off(num_trans), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "date_traitement", "data.date_traitement", OCDZ_F_STR,
      ocdz_up_off(date_traitement), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "created_at", "data.created_at", OCDZ_F_STR,
      ocdz_up_off(created_at), OCDZ_UP_SHORT_MAX },
    { OCDZ_SEC_DATA, "refund_message", "data.refund_message", OCDZ_F_STR,
      ocdz_up_off(refund_message), OCDZ_UP_TEXT_MAX },

    { OCDZ_SEC_TOP, NULL, NULL, OCDZ_F_SKIP, 0, 0 }
};


static const char  *ocdz_status_names[] = {
    "none", "other", "PENDING", "HANDLING", "QUEUED", "UNKNOWN_ERROR",
    "FULFILLED", "REFUNDED"
};


static void *ocdz_up_malloc(void *ctx, size_t size);
static void *ocdz_up_realloc(void *ctx, void *p, size_t size);
static void ocdz_up_free(void *ctx, void *p);

static int ocdz_up_keyset_init(ocdz_up_keyset_t *ks, size_t body_len);
static void ocdz_up_keyset_free(ocdz_up_keyset_t *ks);
static int ocdz_up_keyset_add(ocdz_up_keyset_t *ks, uint32_t serial,
    const unsigned char *key, size_t len);

static int ocdz_up_fail(ocdz_up_ctx_t *ctx, int rc, const char *what,
    const char *why);
static const ocdz_up_field_t *ocdz_up_value(ocdz_up_ctx_t *ctx);
static const char *ocdz_up_where(ocdz_up_ctx_t *ctx);
static int ocdz_up_wrong_type(ocdz_up_ctx_t *ctx, const ocdz_up_field_t *f);
static int ocdz_up_amount(const char *s, size_t len, long long *out);

static int ocdz_up_null(void *data);
static int ocdz_up_boolean(void *data, int val);
static int ocdz_up_number(void *data, const char *s, size_t len);
static int ocdz_up_string(void *data, const unsigned char *s, size_t len);
static int ocdz_up_start_map(void *data);
static int ocdz_up_map_key(void *data, const unsigned char *key,
    size_t len);
static int ocdz_up_end_map(void *data);
static int ocdz_up_start_array(void *data);
static int ocdz_up_end_array(void *data);


static const yajl_callbacks  ocdz_up_callbacks = {
    ocdz_up_null,
    ocdz_up_boolean,
    NULL,
    NULL,
    ocdz_up_number,
    ocdz_up_string,
    ocdz_up_start_map,
    ocdz_up_map_key,
    ocdz_up_end_map,
    ocdz_up_start_array,
    ocdz_up_end_array
};


int
ocdz_upstream_parse(const unsigned char *body, size_t len,
    ocdz_upstream_reply_t *reply, char *err, size_t errlen)
{
    int                rc;
    size_t             at;
    yajl_handle        h;
    yajl_status        st;
    ocdz_up_ctx_t      ctx;
    unsigned char     *msg;
    yajl_alloc_funcs   afs;

    memset(reply, 0, sizeof(ocdz_upstream_reply_t));
    reply->success = -1;
    reply->topup_amount = -1;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    memset(&ctx, 0, sizeof(ocdz_up_ctx_t));
    ctx.reply = reply;
    ctx.err = err;
    ctx.errlen = errlen;
    ctx.rc = OCDZ_UP_OK;
    ctx.next_serial = 1;

    if (len > OCDZ_UPSTREAM_BODY_MAX) {
        ocdz_up_fail(&ctx, OCDZ_UP_ERR_TOO_BIG, "body", "too large");
        return OCDZ_UP_ERR_TOO_BIG;
    }

    if (len == 0 || body == NULL) {
        ocdz_up_fail(&ctx, OCDZ_UP_ERR_SYNTAX, "body", "empty");
        return OCDZ_UP_ERR_SYNTAX;
    }

    if (ocdz_up_keyset_init(&ctx.keys, len) != 0) {
        ocdz_up_fail(&ctx, OCDZ_UP_ERR_TOO_BIG, "body", "out of memory");
        return OCDZ_UP_ERR_TOO_BIG;
    }

    afs.malloc = ocdz_up_malloc;
    afs.realloc = ocdz_up_realloc;
    afs.free = ocdz_up_free;
    afs.ctx = NULL;

    h = yajl_alloc(&ocdz_up_callbacks, &afs, &ctx);
    if (h == NULL) {
        ocdz_up_keyset_free(&ctx.keys);
        ocdz_up_fail(&ctx, OCDZ_UP_ERR_TOO_BIG, "body", "out of memory");
        return OCDZ_UP_ERR_TOO_BIG;
    }

    /* the defaults, said out loud: one value, nothing after it */
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    at = 0;

    st = yajl_parse(h, body, len);
    if (st == yajl_status_ok) {
        at = len;
        st = yajl_complete_parse(h);

    } else {
        at = yajl_get_bytes_consumed(h);
    }

    if (st == yajl_status_client_canceled) {
        rc = ctx.rc;

    } else if (st != yajl_status_ok) {
        rc = OCDZ_UP_ERR_SYNTAX;

        if (err != NULL && errlen > 0) {
            /* not verbose: the verbose form quotes the body */
            msg = yajl_get_error(h, 0, body, len);

            if (msg != NULL) {
                msg[strcspn((char *) msg, "\r\n")] = '\0';
                snprintf(err, errlen, "invalid JSON near byte %zu: %s",
                         at, (char *) msg);
                yajl_free_error(h, msg);

            } else {
                snprintf(err, errlen, "invalid JSON");
            }
        }

    } else if (!ctx.seen_value) {
        ocdz_up_fail(&ctx, OCDZ_UP_ERR_SYNTAX, "body", "no value");
        rc = OCDZ_UP_ERR_SYNTAX;

    } else {
        rc = OCDZ_UP_OK;
    }

    yajl_free(h);
    ocdz_up_keyset_free(&ctx.keys);

    if (rc != OCDZ_UP_OK) {
        /* nothing half-parsed leaves here, the card code least of all */
        OPENSSL_cleanse(reply, sizeof(ocdz_upstream_reply_t));
        reply->success = -1;
        reply->topup_amount = -1;
        return rc;
    }

    reply->status = reply->status_str[0]
                    ? ocdz_status_from_str(reply->status_str,
                                           strlen(reply->status_str))
                    : OCDZ_ST_NONE;

    return OCDZ_UP_OK;
}


void
ocdz_upstream_reply_wipe(ocdz_upstream_reply_t *reply)
{
    if (reply != NULL) {
        OPENSSL_cleanse(reply, sizeof(ocdz_upstream_reply_t));
    }
}


ocdz_status_e
ocdz_status_from_str(const char *s, size_t len)
{
    size_t  i;

    if (s == NULL || len == 0) {
        return OCDZ_ST_NONE;
    }

    for (i = OCDZ_ST_PENDING; i <= OCDZ_ST_REFUNDED; i++) {
        if (strlen(ocdz_status_names[i]) == len
            && memcmp(ocdz_status_names[i], s, len) == 0)
        {
            return (ocdz_status_e) i;
        }
    }

    return OCDZ_ST_OTHER;
}


const char *
ocdz_status_str(ocdz_status_e st)
{
    if ((unsigned) st > OCDZ_ST_REFUNDED) {
        return "invalid";
    }

    return ocdz_status_names[st];
}


/*
 * yajl copies strings with escapes (a card code may have some) into its
 * own buffers: wipe every block before it goes back to libc.
 */

static void *
ocdz_up_malloc(void *ctx, size_t size)
{
    return malloc(size);
}


static void *
ocdz_up_realloc(void *ctx, void *p, size_t size)
{
    void    *n;
    size_t   old;

    if (p == NULL) {
        return malloc(size);
    }

    old = malloc_usable_size(p);

    n = malloc(size ? size : 1);
    if (n == NULL) {
        return NULL;
    }

    memcpy(n, p, old < size ? old : size);
    OPENSSL_cleanse(p, old);
    free(p);

    return n;
}


static void
ocdz_up_free(void *ctx, void *p)
{
    if (p != NULL) {
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
    }
}


/*
 * Keys of all objects in one set, told apart by a serial per object.
 * A body of len bytes holds fewer than len / 4 + 2 keys whose decoded
 * bytes add up to at most len, so both sizes are known up front and the
 * set never grows. Keys are not secret: plain malloc.
 */

static int
ocdz_up_keyset_init(ocdz_up_keyset_t *ks, size_t body_len)
{
    size_t  n;

    memset(ks, 0, sizeof(ocdz_up_keyset_t));

    n = 16;
    while (n < 2 * (body_len / 4 + 2)) {
        n *= 2;
    }

    ks->slots = calloc(n, sizeof(ocdz_up_key_t));
    ks->arena = malloc(body_len + 1);

    if (ks->slots == NULL || ks->arena == NULL) {
        ocdz_up_keyset_free(ks);
        return -1;
    }

    ks->mask = n - 1;
    ks->size = body_len + 1;

    return 0;
}


static void
ocdz_up_keyset_free(ocdz_up_keyset_t *ks)
{
    free(ks->slots);
    free(ks->arena);
    ks->slots = NULL;
    ks->arena = NULL;
}


/* Returns 0 when added, 1 for a duplicate, -1 when over the caps. */

static int
ocdz_up_keyset_add(ocdz_up_keyset_t *ks, uint32_t serial,
    const unsigned char *key, size_t len)
{
    size_t          i;
    uint32_t        h;
    ocdz_up_key_t  *k;

    if (len > ks->size - ks->used || ks->nkeys >= ks->mask / 2) {
        return -1;
    }

    /* FNV-1a over the serial and the key */
    h = 2166136261u;

    for (i = 0; i < 4; i++) {
        h = (h ^ ((serial >> (8 * i)) & 0xff)) * 16777619u;
    }

    for (i = 0; i < len; i++) {
        h = (h ^ key[i]) * 16777619u;
    }

    for (i = h & ks->mask; ks->slots[i].serial != 0; i = (i + 1) & ks->mask)
    {
        k = &ks->slots[i];

        if (k->serial == serial && k->hash == h && k->len == len
            && memcmp(ks->arena + k->off, key, len) == 0)
        {
            return 1;
        }
    }

    k = &ks->slots[i];
    k->serial = serial;
    k->hash = h;
    k->off = (uint32_t) ks->used;
    k->len = (uint32_t) len;

    if (len) {
        memcpy(ks->arena + ks->used, key, len);
    }

    ks->used += len;
    ks->nkeys++;

    return 0;
}


/* Records the first failure; returns 0 so callbacks can cancel with it. */

static int
ocdz_up_fail(ocdz_up_ctx_t *ctx, int rc, const char *what, const char *why)
{
    if (ctx->rc == OCDZ_UP_OK) {
        ctx->rc = rc;

        if (ctx->err != NULL && ctx->errlen > 0) {
            snprintf(ctx->err, ctx->errlen, "%s: %s", what, why);
        }
    }

    return 0;
}


/*
 * Called before every value: tells which field it fills (NULL: none, the
 * value is walked and skipped).
 */

static const ocdz_up_field_t *
ocdz_up_value(ocdz_up_ctx_t *ctx)
{
    if (ctx->depth == 0) {
        /* the top-level value itself; only an object gets past here */
        ctx->seen_value = 1;
        return NULL;
    }

    if (ctx->depth == 1 || (ctx->depth == 2 && ctx->section != OCDZ_SEC_TOP))
    {
        return ctx->field;
    }

    return NULL;
}


/* Names the object being read, for messages: never a key from the body. */

static const char *
ocdz_up_where(ocdz_up_ctx_t *ctx)
{
    if (ctx->depth == 1) {
        return "top-level object";
    }

    if (ctx->depth == 2 && ctx->section == OCDZ_SEC_DATA) {
        return "data";
    }

    if (ctx->depth == 2 && ctx->section == OCDZ_SEC_ERROR) {
        return "error";
    }

    return "nested object";
}


static int
ocdz_up_wrong_type(ocdz_up_ctx_t *ctx, const ocdz_up_field_t *f)
{
    return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, f->path, "wrong JSON type");
}


/* A non-negative integer: digits only, no sign, fraction or exponent. */

static int
ocdz_up_amount(const char *s, size_t len, long long *out)
{
    size_t     i;
    long long  v;

    if (len == 0 || len > 15) {
        return -1;
    }

    v = 0;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }

        v = v * 10 + (s[i] - '0');
    }

    *out = v;

    return 0;
}


static int
ocdz_up_null(void *data)
{
    ocdz_up_ctx_t  *ctx = data;

    if (ctx->depth == 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, "body",
                            "top level is not an object");
    }

    /* null stands for an absent field, whatever its type */

    return 1;
}


static int
ocdz_up_boolean(void *data, int val)
{
    ocdz_up_ctx_t          *ctx = data;
    const ocdz_up_field_t  *f;

    if (ctx->depth == 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, "body",
                            "top level is not an object");
    }

    f = ocdz_up_value(ctx);

    if (f == NULL) {
        return 1;
    }

    if (f->kind != OCDZ_F_SUCCESS) {
        return ocdz_up_wrong_type(ctx, f);
    }

    ctx->reply->success = val ? 1 : 0;

    return 1;
}


static int
ocdz_up_number(void *data, const char *s, size_t len)
{
    ocdz_up_ctx_t          *ctx = data;
    long long               v;
    const ocdz_up_field_t  *f;

    if (ctx->depth == 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, "body",
                            "top level is not an object");
    }

    f = ocdz_up_value(ctx);

    if (f == NULL) {
        return 1;
    }

    switch (f->kind) {

    case OCDZ_F_AMOUNT:
        if (ocdz_up_amount(s, len, &v) != 0) {
            return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, f->path,
                                "not a non-negative integer");
        }

        ctx->reply->topup_amount = v;
        return 1;

    case OCDZ_F_STATUS_CODE:
        if (ocdz_up_amount(s, len, &v) != 0 || v > 999) {
            return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, f->path,
                                "not an HTTP status");
        }

        ctx->reply->status_code = (int) v;
        return 1;

    default:
        return ocdz_up_wrong_type(ctx, f);
    }
}


static int
ocdz_up_string(void *data, const unsigned char *s, size_t len)
{
    char                   *dst;
    long long               v;
    ocdz_up_ctx_t          *ctx = data;
    const ocdz_up_field_t  *f;

    if (ctx->depth == 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, "body",
                            "top level is not an object");
    }

    if (memchr(s, '\0', len) != NULL) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_NUL, "string", "contains NUL");
    }

    f = ocdz_up_value(ctx);

    if (f == NULL) {
        return 1;
    }

    switch (f->kind) {

    case OCDZ_F_AMOUNT:
        if (ocdz_up_amount((const char *) s, len, &v) != 0) {
            return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, f->path,
                                "not a non-negative integer");
        }

        ctx->reply->topup_amount = v;
        return 1;

    case OCDZ_F_ERROR:
        /* a bare framework body: "error":"Not Found" */
    case OCDZ_F_MESSAGE:
    case OCDZ_F_STR:
        break;

    default:
        return ocdz_up_wrong_type(ctx, f);
    }

    if (len > f->max) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_TOO_BIG, f->path, "too long");
    }

    dst = (char *) ctx->reply + f->offset;
    memcpy(dst, s, len);
    dst[len] = '\0';

    if (f->offset == ocdz_up_off(card_code)) {
        ctx->reply->card_code_len = len;
        ctx->reply->has_card_code = (len > 0);
    }

    return 1;
}


static int
ocdz_up_start_map(void *data)
{
    ocdz_up_ctx_t          *ctx = data;
    const ocdz_up_field_t  *f;

    f = ocdz_up_value(ctx);

    if (ctx->depth == OCDZ_UPSTREAM_DEPTH_MAX) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_TOO_BIG, "body",
                            "nested too deep");
    }

    if (f != NULL) {
        switch (f->kind) {

        case OCDZ_F_DATA:
            ctx->section = OCDZ_SEC_DATA;
            ctx->reply->has_data = 1;
            break;

        case OCDZ_F_ERROR:
            ctx->section = OCDZ_SEC_ERROR;
            ctx->reply->has_error = 1;
            break;

        default:
            return ocdz_up_wrong_type(ctx, f);
        }
    }

    ctx->depth++;
    ctx->serial[ctx->depth] = ctx->next_serial++;
    ctx->field = NULL;

    return 1;
}


static int
ocdz_up_map_key(void *data, const unsigned char *key, size_t len)
{
    int                     rc;
    ocdz_up_ctx_t          *ctx = data;
    ocdz_up_section_e       sec;
    const ocdz_up_field_t  *f;

    if (memchr(key, '\0', len) != NULL) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_NUL, "key", "contains NUL");
    }

    rc = ocdz_up_keyset_add(&ctx->keys, ctx->serial[ctx->depth], key, len);

    if (rc == 1) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_DUPLICATE, ocdz_up_where(ctx),
                            "duplicate key");
    }

    if (rc != 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_TOO_BIG, "body", "too many keys");
    }

    ctx->field = NULL;

    if (ctx->depth == 1) {
        sec = OCDZ_SEC_TOP;

    } else if (ctx->depth == 2 && ctx->section != OCDZ_SEC_TOP) {
        sec = ctx->section;

    } else {
        return 1;
    }

    for (f = ocdz_up_fields; f->name != NULL; f++) {
        if (f->section == sec && strlen(f->name) == len
            && memcmp(f->name, key, len) == 0)
        {
            ctx->field = f;
            break;
        }
    }

    return 1;
}


static int
ocdz_up_end_map(void *data)
{
    ocdz_up_ctx_t  *ctx = data;

    if (ctx->depth == 2) {
        ctx->section = OCDZ_SEC_TOP;
    }

    ctx->depth--;
    ctx->field = NULL;

    return 1;
}


static int
ocdz_up_start_array(void *data)
{
    ocdz_up_ctx_t          *ctx = data;
    const ocdz_up_field_t  *f;

    if (ctx->depth == 0) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_SHAPE, "body",
                            "top level is not an object");
    }

    f = ocdz_up_value(ctx);

    if (f != NULL) {
        return ocdz_up_wrong_type(ctx, f);
    }

    if (ctx->depth == OCDZ_UPSTREAM_DEPTH_MAX) {
        return ocdz_up_fail(ctx, OCDZ_UP_ERR_TOO_BIG, "body",
                            "nested too deep");
    }

    ctx->depth++;
    ctx->field = NULL;

    return 1;
}


static int
ocdz_up_end_array(void *data)
{
    ocdz_up_ctx_t  *ctx = data;

    ctx->depth--;
    ctx->field = NULL;

    return 1;
}
