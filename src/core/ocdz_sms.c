/*
 * SMS: the GSM 7-bit alphabet, part counting, the text and the gateway
 * body, and the message id of a gateway's JSON reply.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ocdz_sms.h"


#define OCDZ_SMS_WORST_MAX   1024


typedef struct {
    char                     key[OCDZ_SMS_PATH_MAX][OCDZ_SMS_PATH_KEY_MAX
                                                    + 1];
    size_t                   key_len[OCDZ_SMS_PATH_MAX];
    long                     index[OCDZ_SMS_PATH_MAX];    /* -1: a key */
    size_t                   ncomp;
} ocdz_sms_path_t;


/* Where the reply parser is: level d is the d-th open container. */
typedef struct {
    const ocdz_sms_path_t   *path;
    unsigned                 depth;
    unsigned char            is_array[OCDZ_SMS_REPLY_DEPTH + 1];
    size_t                   next[OCDZ_SMS_REPLY_DEPTH + 1];
    unsigned char            on_path[OCDZ_SMS_REPLY_DEPTH + 1];
    unsigned                 found;
    const char              *bad;       /* why the value is unusable */
    char                    *id;
    size_t                   size;
} ocdz_sms_reply_t;


static void ocdz_sms_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static size_t ocdz_sms_split(size_t per, const unsigned char *text,
    size_t len);
static int ocdz_sms_path_parse(const char *s, size_t len,
    ocdz_sms_path_t *path);
static int ocdz_sms_reply_at(ocdz_sms_reply_t *r);
static int ocdz_sms_reply_scalar(ocdz_sms_reply_t *r,
    const unsigned char *s, size_t len, int usable);
static int ocdz_sms_reply_null(void *ctx);
static int ocdz_sms_reply_boolean(void *ctx, int val);
static int ocdz_sms_reply_number(void *ctx, const char *s, size_t len);
static int ocdz_sms_reply_string(void *ctx, const unsigned char *s,
    size_t len);
static int ocdz_sms_reply_start(ocdz_sms_reply_t *r, int array);
static int ocdz_sms_reply_start_map(void *ctx);
static int ocdz_sms_reply_start_array(void *ctx);
static int ocdz_sms_reply_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int ocdz_sms_reply_end(void *ctx);


/* GSM 03.38 default alphabet beyond ASCII */
static const uint32_t  ocdz_gsm_basic[] = {
    0x00a3, 0x00a5, 0x00e8, 0x00e9, 0x00f9, 0x00ec, 0x00f2, 0x00c7,
    0x00d8, 0x00f8, 0x00c5, 0x00e5, 0x0394, 0x03a6, 0x0393, 0x039b,
    0x03a9, 0x03a0, 0x03a8, 0x03a3, 0x0398, 0x039e, 0x00c6, 0x00e6,
    0x00df, 0x00c9, 0x00a4, 0x00a1, 0x00c4, 0x00d6, 0x00d1, 0x00dc,
    0x00a7, 0x00bf, 0x00e4, 0x00f6, 0x00f1, 0x00fc, 0x00e0
};

static const yajl_callbacks  ocdz_sms_reply_callbacks = {
    ocdz_sms_reply_null,
    ocdz_sms_reply_boolean,
    NULL,
    NULL,
    ocdz_sms_reply_number,
    ocdz_sms_reply_string,
    ocdz_sms_reply_start_map,
    ocdz_sms_reply_map_key,
    ocdz_sms_reply_end,
    ocdz_sms_reply_start_array,
    ocdz_sms_reply_end
};


int
ocdz_sms_gsm_septets(uint32_t cp)
{
    size_t  i;

    if (cp == '\n' || cp == '\r') {
        return 1;
    }

    if (cp == '\f') {
        return 2;
    }

    if (cp >= 0x20 && cp <= 0x7e) {
        if (cp == '`') {
            return 0;
        }

        return strchr("^{}\\[~]|", (int) cp) != NULL ? 2 : 1;
    }

    if (cp == 0x20ac) {
        return 2;
    }

    for (i = 0; i < sizeof(ocdz_gsm_basic) / sizeof(uint32_t); i++) {
        if (ocdz_gsm_basic[i] == cp) {
            return 1;
        }
    }

    return 0;
}


int
ocdz_sms_count(const unsigned char *text, size_t len,
    ocdz_sms_count_t *count)
{
    int                   gsm;
    size_t                k, chars, units;
    uint32_t              cp;
    const unsigned char  *p, *end;

    memset(count, 0, sizeof(ocdz_sms_count_t));
    count->parts = 1;

    if (len == 0) {
        return OCDZ_MSG_OK;
    }

    if (!ocdz_utf8_valid(text, len, NULL)) {
        return OCDZ_MSG_ERR_INPUT;
    }

    end = text + len;
    gsm = 1;
    chars = 0;

    for (p = text; p < end; p += k) {
        k = ocdz_utf8_next(p, end, &cp);

        if (ocdz_sms_gsm_septets(cp) == 0) {
            gsm = 0;
        }

        chars++;
    }

    units = 0;

    for (p = text; p < end; p += k) {
        k = ocdz_utf8_next(p, end, &cp);
        units += gsm ? (size_t) ocdz_sms_gsm_septets(cp)
                     : (cp > 0xffff ? 2 : 1);
    }

    count->encoding = gsm ? OCDZ_SMS_GSM7 : OCDZ_SMS_UCS2;
    count->chars = chars;
    count->units = units;

    if (units > (gsm ? OCDZ_SMS_GSM_SINGLE : OCDZ_SMS_UCS2_SINGLE)) {
        count->parts = ocdz_sms_split(gsm ? OCDZ_SMS_GSM_PART
                                          : OCDZ_SMS_UCS2_PART, text, len);
    }

    return OCDZ_MSG_OK;
}


void
ocdz_sms_worst_default(ocdz_sms_worst_t *worst)
{
    memset(worst, 0, sizeof(ocdz_sms_worst_t));

    worst->len[OCDZ_VAR_CARD_CODE] = 24;
    worst->len[OCDZ_VAR_NUM_TRANS] = 32;
    worst->len[OCDZ_VAR_NUMBER] = 12;
    worst->len[OCDZ_VAR_VALUE] = 6;
    worst->len[OCDZ_VAR_DATE] = 24;
    worst->len[OCDZ_VAR_TOPUP_ID] = 24;
    worst->len[OCDZ_VAR_SHOP] = 32;
}


int
ocdz_sms_check(const ocdz_tpl_t *tpl, ocdz_lang_e lang,
    const ocdz_instructions_t *set, const ocdz_sms_worst_t *worst,
    size_t max_parts, ocdz_sms_count_t *count, char *err, size_t errlen)
{
    int                rc, type;
    char               why[256];
    size_t             i;
    ocdz_buf_t         out;
    ocdz_tpl_vars_t    vars;
    ocdz_sms_count_t   c, most;
    ocdz_sms_worst_t   def;

    static const ocdz_var_e  fields[] = {
        OCDZ_VAR_NUMBER, OCDZ_VAR_VALUE, OCDZ_VAR_CARD_CODE,
        OCDZ_VAR_NUM_TRANS, OCDZ_VAR_DATE, OCDZ_VAR_TOPUP_ID, OCDZ_VAR_SHOP
    };
    static unsigned char     digits[OCDZ_SMS_WORST_MAX];

    if (ocdz_tpl_kind(tpl) != OCDZ_TPL_SMS_TEXT) {
        ocdz_sms_err(err, errlen, "not an SMS text template");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (max_parts < 1 || max_parts > OCDZ_SMS_PARTS_MAX) {
        ocdz_sms_err(err, errlen, "the most SMS parts must be 1 to %d",
                     OCDZ_SMS_PARTS_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (worst == NULL) {
        ocdz_sms_worst_default(&def);
        worst = &def;
    }

    if (digits[0] != '0') {
        memset(digits, '0', sizeof(digits));
    }

    memset(&most, 0, sizeof(most));
    ocdz_buf_init(&out, &ocdz_alloc_std, 0);

    for (type = 0; type < OCDZ_TYPE_N; type++) {
        ocdz_tpl_vars_init(&vars, set, type, lang);

        for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
            vars.v[fields[i]].data = digits;
            vars.v[fields[i]].len = worst->len[fields[i]] < sizeof(digits)
                                    ? worst->len[fields[i]]
                                    : sizeof(digits);
        }

        /* render() refuses an empty card code */
        if (vars.v[OCDZ_VAR_CARD_CODE].len == 0) {
            vars.v[OCDZ_VAR_CARD_CODE].len = 1;
        }

        ocdz_buf_reset(&out);

        rc = ocdz_tpl_render(tpl, &vars, &out, why, sizeof(why));
        if (rc != OCDZ_MSG_OK) {
            ocdz_buf_free(&out);
            ocdz_sms_err(err, errlen, "SMS text (%s): %s",
                         ocdz_lang_str(lang), why);
            return rc;
        }

        (void) ocdz_sms_count(out.data, out.len, &c);

        if (c.parts > most.parts
            || (c.parts == most.parts && c.units > most.units))
        {
            most = c;
        }

        if (c.parts > max_parts) {
            ocdz_buf_free(&out);
            ocdz_sms_err(err, errlen, "the SMS text (%s) can need %zu parts "
                         "(%zu %s, %s, %s card, fields at their longest), "
                         "more than the %zu allowed", ocdz_lang_str(lang),
                         c.parts, c.units,
                         c.encoding == OCDZ_SMS_GSM7 ? "septets"
                                                     : "UTF-16 units",
                         c.encoding == OCDZ_SMS_GSM7 ? "GSM-7" : "UCS-2",
                         ocdz_tpl_type_name(type), max_parts);
            return OCDZ_MSG_ERR_TOO_LONG;
        }
    }

    ocdz_buf_free(&out);

    if (count != NULL) {
        *count = most;
    }

    return OCDZ_MSG_OK;
}


int
ocdz_sms_build(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars,
    size_t max_parts, ocdz_buf_t *out, ocdz_sms_count_t *count, char *err,
    size_t errlen)
{
    int  rc;

    memset(count, 0, sizeof(ocdz_sms_count_t));

    if (ocdz_tpl_kind(tpl) != OCDZ_TPL_SMS_TEXT
        || max_parts < 1 || max_parts > OCDZ_SMS_PARTS_MAX)
    {
        ocdz_sms_err(err, errlen, "not an SMS text template, or the most "
                     "parts not 1 to %d", OCDZ_SMS_PARTS_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    rc = ocdz_tpl_render(tpl, vars, out, err, errlen);

    if (rc == OCDZ_MSG_OK) {
        rc = ocdz_sms_count(out->data, out->len, count);

        if (rc != OCDZ_MSG_OK) {
            ocdz_sms_err(err, errlen, "the SMS text is not valid UTF-8");

        } else if (count->parts > max_parts) {
            ocdz_sms_err(err, errlen, "the SMS needs %zu parts (%zu %s, %s), "
                         "more than the %zu allowed", count->parts,
                         count->units,
                         count->encoding == OCDZ_SMS_GSM7 ? "septets"
                                                          : "UTF-16 units",
                         count->encoding == OCDZ_SMS_GSM7 ? "GSM-7"
                                                          : "UCS-2",
                         max_parts);
            rc = OCDZ_MSG_ERR_TOO_LONG;
        }
    }

    if (rc != OCDZ_MSG_OK) {
        ocdz_buf_free(out);
    }

    return rc;
}


int
ocdz_sms_phone_valid(const unsigned char *s, size_t len)
{
    size_t  i;

    if (s == NULL) {
        return 0;
    }

    if (len > 0 && s[0] == '+') {
        s++;
        len--;
    }

    if (len < OCDZ_SMS_PHONE_MIN || len > OCDZ_SMS_PHONE_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    return 1;
}


int
ocdz_sms_gateway_body(const ocdz_tpl_t *body, const ocdz_sms_gateway_t *g,
    ocdz_buf_t *out, char *err, size_t errlen)
{
    int              rc, unicode;
    ocdz_tpl_vars_t  vars;

    if (ocdz_tpl_kind(body) != OCDZ_TPL_SMS_FORM
        && ocdz_tpl_kind(body) != OCDZ_TPL_SMS_JSON)
    {
        ocdz_sms_err(err, errlen, "not an SMS gateway body template");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (!ocdz_sms_phone_valid(g->to.data, g->to.len)) {
        ocdz_sms_err(err, errlen, "recipient: not a phone number (an "
                     "optional \"+\" and %d-%d digits)", OCDZ_SMS_PHONE_MIN,
                     OCDZ_SMS_PHONE_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    unicode = g->count != NULL && g->count->encoding == OCDZ_SMS_UCS2;

    memset(&vars, 0, sizeof(vars));
    vars.v[OCDZ_VAR_TO] = g->to;
    vars.v[OCDZ_VAR_MESSAGE] = g->message;
    vars.v[OCDZ_VAR_SENDER] = g->sender;
    vars.v[OCDZ_VAR_IDEMPOTENCY_KEY] = g->idempotency_key;
    vars.v[OCDZ_VAR_TOPUP_ID] = g->topup_id;
    vars.v[OCDZ_VAR_UNICODE].data = (const unsigned char *)
                                    (unicode ? "1" : "0");
    vars.v[OCDZ_VAR_UNICODE].len = 1;

    rc = ocdz_tpl_render(body, &vars, out, err, errlen);

    if (rc != OCDZ_MSG_OK) {
        ocdz_buf_free(out);
    }

    return rc;
}


int
ocdz_sms_reply_path_valid(const char *path, size_t len)
{
    ocdz_sms_path_t  p;

    return ocdz_sms_path_parse(path, len, &p) == 0;
}


int
ocdz_sms_reply_id(const unsigned char *reply, size_t len, const char *path,
    char *id, size_t size, char *err, size_t errlen)
{
    int                rc;
    yajl_handle        h;
    yajl_status        st;
    ocdz_sms_path_t    p;
    ocdz_sms_reply_t   r;

    if (size > 0) {
        id[0] = '\0';
    }

    if (path == NULL || ocdz_sms_path_parse(path, strlen(path), &p) != 0) {
        ocdz_sms_err(err, errlen, "invalid reply id path");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (size < OCDZ_SMS_ID_MAX + 1) {
        ocdz_sms_err(err, errlen, "id buffer too small");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (len > OCDZ_SMS_REPLY_MAX) {
        ocdz_sms_err(err, errlen, "reply longer than %d bytes",
                     OCDZ_SMS_REPLY_MAX);
        return OCDZ_MSG_ERR_TOO_LONG;
    }

    memset(&r, 0, sizeof(r));
    r.path = &p;
    r.on_path[0] = 1;
    r.id = id;
    r.size = size;

    h = yajl_alloc(&ocdz_sms_reply_callbacks, NULL, &r);
    if (h == NULL) {
        ocdz_sms_err(err, errlen, "out of memory");
        return OCDZ_MSG_ERR_NOMEM;
    }

    st = yajl_parse(h, reply, len);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    rc = OCDZ_MSG_ERR_INPUT;

    if (r.depth >= OCDZ_SMS_REPLY_DEPTH && st != yajl_status_ok) {
        ocdz_sms_err(err, errlen, "reply nested deeper than %d",
                     OCDZ_SMS_REPLY_DEPTH);

    } else if (st != yajl_status_ok && r.found < 2 && r.bad == NULL) {
        ocdz_sms_err(err, errlen, "reply is not JSON");

    } else if (r.found > 1) {
        ocdz_sms_err(err, errlen, "the id path matches twice (a key given "
                     "twice)");

    } else if (r.bad != NULL) {
        ocdz_sms_err(err, errlen, "the value at the id path is %s", r.bad);

    } else if (r.found == 0) {
        ocdz_sms_err(err, errlen, "no value at the id path");

    } else {
        rc = OCDZ_MSG_OK;
    }

    if (rc != OCDZ_MSG_OK) {
        id[0] = '\0';
    }

    return rc;
}


static void
ocdz_sms_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err != NULL && errlen > 0) {
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);
    }
}


/* Parts of at most per units: a character that does not fit in a part
 * goes whole to the next one. */

static size_t
ocdz_sms_split(size_t per, const unsigned char *text, size_t len)
{
    int                   gsm;
    size_t                k, w, fill, parts;
    uint32_t              cp;
    const unsigned char  *p, *end;

    gsm = (per == OCDZ_SMS_GSM_PART);
    end = text + len;
    fill = 0;
    parts = 1;

    for (p = text; p < end; p += k) {
        k = ocdz_utf8_next(p, end, &cp);
        w = gsm ? (size_t) ocdz_sms_gsm_septets(cp) : (cp > 0xffff ? 2 : 1);

        if (fill + w > per) {
            parts++;
            fill = 0;
        }

        fill += w;
    }

    return parts;
}


static int
ocdz_sms_path_parse(const char *s, size_t len, ocdz_sms_path_t *path)
{
    size_t  i, n, start;

    memset(path, 0, sizeof(ocdz_sms_path_t));

    if (s == NULL || len == 0) {
        return -1;
    }

    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f)
            {
                return -1;
            }

            continue;
        }

        n = i - start;

        if (n == 0 || n > OCDZ_SMS_PATH_KEY_MAX
            || path->ncomp == OCDZ_SMS_PATH_MAX)
        {
            return -1;
        }

        memcpy(path->key[path->ncomp], s + start, n);
        path->key_len[path->ncomp] = n;
        path->index[path->ncomp] = -1;

        if (n <= 9 && strspn(path->key[path->ncomp], "0123456789") == n) {
            path->index[path->ncomp] = strtol(path->key[path->ncomp], NULL,
                                              10);
        }

        path->ncomp++;
        start = i + 1;
    }

    return 0;
}


/* A value starts at the current level: is it the one the path names? */

static int
ocdz_sms_reply_at(ocdz_sms_reply_t *r)
{
    unsigned  d = r->depth;

    if (d == 0) {
        return 0;
    }

    if (r->is_array[d]) {
        r->on_path[d] = r->on_path[d - 1] && d - 1 < r->path->ncomp
                        && r->path->index[d - 1] >= 0
                        && (size_t) r->path->index[d - 1] == r->next[d];
        r->next[d]++;
    }

    return r->on_path[d] && d == r->path->ncomp;
}


static int
ocdz_sms_reply_scalar(ocdz_sms_reply_t *r, const unsigned char *s,
    size_t len, int usable)
{
    size_t  i;

    if (!ocdz_sms_reply_at(r)) {
        return 1;
    }

    if (++r->found > 1) {
        return 0;
    }

    if (!usable) {
        r->bad = "not a string or a number";
        return 1;
    }

    if (len == 0 || len > OCDZ_SMS_ID_MAX) {
        r->bad = len ? "too long" : "empty";
        return 1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f) {
            r->bad = "not printable ASCII";
            return 1;
        }
    }

    memcpy(r->id, s, len);
    r->id[len] = '\0';

    return 1;
}


static int
ocdz_sms_reply_null(void *ctx)
{
    return ocdz_sms_reply_scalar(ctx, NULL, 0, 0);
}


static int
ocdz_sms_reply_boolean(void *ctx, int val)
{
    return ocdz_sms_reply_scalar(ctx, NULL, 0, 0);
}


static int
ocdz_sms_reply_number(void *ctx, const char *s, size_t len)
{
    return ocdz_sms_reply_scalar(ctx, (const unsigned char *) s, len, 1);
}


static int
ocdz_sms_reply_string(void *ctx, const unsigned char *s, size_t len)
{
    return ocdz_sms_reply_scalar(ctx, s, len, 1);
}


static int
ocdz_sms_reply_start(ocdz_sms_reply_t *r, int array)
{
    if (ocdz_sms_reply_at(r)) {
        if (++r->found > 1) {
            return 0;
        }

        r->bad = "not a string or a number";
    }

    if (r->depth == OCDZ_SMS_REPLY_DEPTH) {
        return 0;
    }

    r->depth++;
    r->is_array[r->depth] = array;
    r->next[r->depth] = 0;
    r->on_path[r->depth] = 0;

    return 1;
}


static int
ocdz_sms_reply_start_map(void *ctx)
{
    return ocdz_sms_reply_start(ctx, 0);
}


static int
ocdz_sms_reply_start_array(void *ctx)
{
    return ocdz_sms_reply_start(ctx, 1);
}


static int
ocdz_sms_reply_map_key(void *ctx, const unsigned char *s, size_t len)
{
    ocdz_sms_reply_t  *r = ctx;
    unsigned           d = r->depth;

    r->on_path[d] = r->on_path[d - 1] && d - 1 < r->path->ncomp
                    && r->path->key_len[d - 1] == len
                    && memcmp(r->path->key[d - 1], s, len) == 0;

    return 1;
}


static int
ocdz_sms_reply_end(void *ctx)
{
    ocdz_sms_reply_t  *r = ctx;

    r->depth--;

    return 1;
}
