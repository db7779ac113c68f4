/*
 * Webhook bodies, their HMAC-SHA256 signature header and its check.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "ocdz_crypto.h"
#include "ocdz_webhook.h"


#define OCDZ_WH_MAC_LEN      32
#define OCDZ_WH_T_DIGITS     18       /* of t: no overflow, and far off */


static void ocdz_wh_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int ocdz_wh_text_ok(const ocdz_str_t *s);
static void ocdz_wh_field(ocdz_buf_t *out, const char *key,
    const unsigned char *s, size_t n);
static int ocdz_wh_mac(const unsigned char *secret, size_t secret_len,
    const char *t, size_t t_len, const unsigned char *body, size_t len,
    unsigned char mac[OCDZ_WH_MAC_LEN]);
static int ocdz_wh_hex(const char *s, size_t n, unsigned char *out);


static const char  *ocdz_wh_names[OCDZ_WH_EVENT_N] = {
    "order.fulfilled", "order.refunded", "order.error", "delivery.sent",
    "delivery.failed"
};

static const char  *ocdz_wh_statuses[OCDZ_WH_EVENT_N] = {
    "FULFILLED", "REFUNDED", "ERROR", "SENT", "FAILED"
};

static const char  *ocdz_wh_rc_strs[] = {
    "ok",
    "malformed signature header",
    "signature does not match",
    "timestamp outside the tolerance",
    "secret of the wrong size"
};


const char *
ocdz_webhook_event_name(ocdz_wh_event_e event)
{
    return (unsigned) event < OCDZ_WH_EVENT_N ? ocdz_wh_names[event]
                                              : "unknown";
}


int
ocdz_webhook_event_id(const ocdz_webhook_event_t *ev, char *out,
    size_t size)
{
    size_t          i;
    EVP_MD_CTX     *md;
    unsigned int    n;
    unsigned char   h[EVP_MAX_MD_SIZE];
    const char     *name;

    if (size > 0) {
        out[0] = '\0';
    }

    if ((unsigned) ev->event >= OCDZ_WH_EVENT_N || size < OCDZ_WH_ID_LEN + 1
        || !ocdz_token_valid(ev->topup_id.data, ev->topup_id.len, 64)
        || (ev->channel.len > 0
            && !ocdz_token_valid(ev->channel.data, ev->channel.len, 64)))
    {
        return OCDZ_MSG_ERR_INPUT;
    }

    name = ocdz_wh_names[ev->event];

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return OCDZ_MSG_ERR_NOMEM;
    }

    /* NUL-separated: no two (id, event, channel) give one input */
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1
        || EVP_DigestUpdate(md, "ocdz-webhook", sizeof("ocdz-webhook")) != 1
        || EVP_DigestUpdate(md, ev->topup_id.data, ev->topup_id.len) != 1
        || EVP_DigestUpdate(md, "", 1) != 1
        || EVP_DigestUpdate(md, name, strlen(name) + 1) != 1
        || EVP_DigestUpdate(md, ev->channel.data ? ev->channel.data
                                : (const unsigned char *) "",
                            ev->channel.len) != 1
        || EVP_DigestFinal_ex(md, h, &n) != 1)
    {
        EVP_MD_CTX_free(md);
        return OCDZ_MSG_ERR_NOMEM;
    }

    EVP_MD_CTX_free(md);

    memcpy(out, "evt_", 4);

    for (i = 0; i < (OCDZ_WH_ID_LEN - 4) / 2; i++) {
        out[4 + 2 * i] = "0123456789abcdef"[h[i] >> 4];
        out[5 + 2 * i] = "0123456789abcdef"[h[i] & 0xf];
    }

    out[OCDZ_WH_ID_LEN] = '\0';

    return OCDZ_MSG_OK;
}


int
ocdz_webhook_body(const ocdz_webhook_event_t *ev, ocdz_buf_t *out,
    char *err, size_t errlen)
{
    int         delivery, rc;
    char        id[OCDZ_WH_ID_LEN + 1], when[80];
    struct tm   tm;
    time_t      t;

    if ((unsigned) ev->event >= OCDZ_WH_EVENT_N) {
        ocdz_wh_err(err, errlen, "unknown event");
        return OCDZ_MSG_ERR_INPUT;
    }

    delivery = ev->event == OCDZ_WH_DELIVERY_SENT
               || ev->event == OCDZ_WH_DELIVERY_FAILED;

    if (!ocdz_token_valid(ev->topup_id.data, ev->topup_id.len, 64)) {
        ocdz_wh_err(err, errlen, "top-up id: 1-64 of [A-Za-z0-9_-] "
                    "expected");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (delivery != (ev->channel.len > 0)) {
        ocdz_wh_err(err, errlen, delivery ? "a delivery event needs a "
                    "channel" : "an order event has no channel");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (ocdz_webhook_event_id(ev, id, sizeof(id)) != OCDZ_MSG_OK) {
        ocdz_wh_err(err, errlen, "channel: 1-64 of [A-Za-z0-9_-] expected");
        return OCDZ_MSG_ERR_INPUT;
    }

    if (!ocdz_wh_text_ok(&ev->ref) || !ocdz_wh_text_ok(&ev->num_trans)
        || !ocdz_wh_text_ok(&ev->message_id) || !ocdz_wh_text_ok(&ev->error))
    {
        ocdz_wh_err(err, errlen, "ref, num_trans, message_id or error: not "
                    "UTF-8 or longer than %d bytes", OCDZ_WH_FIELD_MAX);
        return OCDZ_MSG_ERR_INPUT;
    }

    t = ev->time;

    if (t < 0 || gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 > 9999) {
        ocdz_wh_err(err, errlen, "event time out of range");
        return OCDZ_MSG_ERR_INPUT;
    }

    snprintf(when, sizeof(when), "%04d-%02d-%02dT%02d:%02d:%02dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec);

    ocdz_buf_add_str(out, "{");
    ocdz_wh_field(out, "id", (const unsigned char *) id, strlen(id));
    ocdz_wh_field(out, ",\"type",
                  (const unsigned char *) ocdz_wh_names[ev->event],
                  strlen(ocdz_wh_names[ev->event]));
    ocdz_wh_field(out, ",\"topup_id", ev->topup_id.data, ev->topup_id.len);
    ocdz_wh_field(out, ",\"ref", ev->ref.data, ev->ref.len);
    ocdz_wh_field(out, ",\"status",
                  (const unsigned char *) ocdz_wh_statuses[ev->event],
                  strlen(ocdz_wh_statuses[ev->event]));
    ocdz_wh_field(out, ",\"channel", ev->channel.data, ev->channel.len);
    ocdz_wh_field(out, ",\"num_trans", ev->num_trans.data,
                  ev->num_trans.len);
    ocdz_wh_field(out, ",\"message_id", ev->message_id.data,
                  ev->message_id.len);
    ocdz_wh_field(out, ",\"error", ev->error.data, ev->error.len);
    ocdz_wh_field(out, ",\"time", (const unsigned char *) when,
                  strlen(when));
    ocdz_buf_add_str(out, "}");

    rc = out->error;

    if (rc != OCDZ_MSG_OK) {
        ocdz_wh_err(err, errlen, rc == OCDZ_MSG_ERR_NOMEM ? "out of memory"
                                                          : "body too long");
        ocdz_buf_free(out);
    }

    return rc;
}


int
ocdz_webhook_sign(const unsigned char *secret, size_t secret_len, time_t t,
    const unsigned char *body, size_t len, char *out, size_t size)
{
    int            n;
    char           ts[OCDZ_WH_T_DIGITS + 2];
    size_t         i;
    unsigned char  mac[OCDZ_WH_MAC_LEN];

    if (size > 0) {
        out[0] = '\0';
    }

    if (secret == NULL || secret_len < OCDZ_WH_SECRET_MIN
        || secret_len > OCDZ_WH_SECRET_MAX)
    {
        return OCDZ_WH_ERR_SECRET;
    }

    if (t < 0 || (long long) t > 999999999999999999LL
        || size < OCDZ_WH_SIGNATURE_SIZE)
    {
        return OCDZ_WH_ERR_HEADER;
    }

    n = snprintf(ts, sizeof(ts), "%lld", (long long) t);

    if (ocdz_wh_mac(secret, secret_len, ts, n, body, len, mac) != 0) {
        return OCDZ_WH_ERR_HEADER;
    }

    n = snprintf(out, size, "t=%s,v1=", ts);

    for (i = 0; i < OCDZ_WH_MAC_LEN; i++) {
        out[n + 2 * i] = "0123456789abcdef"[mac[i] >> 4];
        out[n + 2 * i + 1] = "0123456789abcdef"[mac[i] & 0xf];
    }

    out[n + 2 * OCDZ_WH_MAC_LEN] = '\0';

    ocdz_wipe(mac, sizeof(mac));

    return OCDZ_WH_OK;
}


int
ocdz_webhook_verify(const unsigned char *secret, size_t secret_len,
    const char *header, size_t header_len, const unsigned char *body,
    size_t len, time_t now, long tolerance)
{
    int             match, rc;
    size_t          i, nv1, klen, vlen, t_len;
    long long       t, diff;
    const char     *p, *end, *elt, *eq, *val, *t_str;
    unsigned char   mac[OCDZ_WH_MAC_LEN];
    unsigned char   v1[OCDZ_WH_V1_MAX][OCDZ_WH_MAC_LEN];

    if (secret == NULL || secret_len < OCDZ_WH_SECRET_MIN
        || secret_len > OCDZ_WH_SECRET_MAX)
    {
        return OCDZ_WH_ERR_SECRET;
    }

    if (header == NULL || header_len == 0 || header_len > OCDZ_WH_HEADER_MAX
        || tolerance < 0)
    {
        return OCDZ_WH_ERR_HEADER;
    }

    t_str = NULL;
    t_len = 0;
    t = 0;
    nv1 = 0;

    p = header;
    end = header + header_len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        elt = p;

        while (p < end && *p != ',') {
            p++;
        }

        vlen = p - elt;

        while (vlen > 0 && (elt[vlen - 1] == ' ' || elt[vlen - 1] == '\t')) {
            vlen--;
        }

        if (p < end) {
            p++;
        }

        eq = memchr(elt, '=', vlen);
        if (eq == NULL) {
            return OCDZ_WH_ERR_HEADER;
        }

        klen = eq - elt;
        val = eq + 1;
        vlen -= klen + 1;

        if (klen == 1 && elt[0] == 't') {
            if (t_str != NULL || vlen == 0 || vlen > OCDZ_WH_T_DIGITS) {
                return OCDZ_WH_ERR_HEADER;
            }

            for (i = 0; i < vlen; i++) {
                if (val[i] < '0' || val[i] > '9') {
                    return OCDZ_WH_ERR_HEADER;
                }

                t = t * 10 + (val[i] - '0');
            }

            t_str = val;
            t_len = vlen;

        } else if (klen == 2 && elt[0] == 'v' && elt[1] == '1') {
            if (nv1 == OCDZ_WH_V1_MAX) {
                return OCDZ_WH_ERR_HEADER;
            }

            /* a v1 of another size cannot match: skipped, not an error */
            if (vlen == 2 * OCDZ_WH_MAC_LEN
                && ocdz_wh_hex(val, vlen, v1[nv1]) == 0)
            {
                nv1++;
            }
        }
    }

    if (t_str == NULL || nv1 == 0) {
        return OCDZ_WH_ERR_HEADER;
    }

    if (ocdz_wh_mac(secret, secret_len, t_str, t_len, body, len, mac) != 0)
    {
        return OCDZ_WH_ERR_SIGNATURE;
    }

    match = 0;

    for (i = 0; i < nv1; i++) {
        match |= CRYPTO_memcmp(mac, v1[i], OCDZ_WH_MAC_LEN) == 0;
    }

    ocdz_wipe(mac, sizeof(mac));

    if (!match) {
        return OCDZ_WH_ERR_SIGNATURE;
    }

    diff = (long long) now - t;
    rc = (diff > tolerance || -diff > tolerance) ? OCDZ_WH_ERR_STALE
                                                 : OCDZ_WH_OK;

    return rc;
}


const char *
ocdz_webhook_rc_str(int rc)
{
    if (rc < 0
        || (size_t) rc >= sizeof(ocdz_wh_rc_strs) / sizeof(char *))
    {
        return "unknown error";
    }

    return ocdz_wh_rc_strs[rc];
}


static void
ocdz_wh_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err != NULL && errlen > 0) {
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);
    }
}


static int
ocdz_wh_text_ok(const ocdz_str_t *s)
{
    if (s->len == 0) {
        return 1;
    }

    return s->data != NULL && s->len <= OCDZ_WH_FIELD_MAX
           && ocdz_utf8_valid(s->data, s->len, NULL);
}


/* "key":"value" (the caller writes the separator and opening quote of
 * all keys but the first), control characters as spaces; null for an
 * empty value. */

static void
ocdz_wh_field(ocdz_buf_t *out, const char *key, const unsigned char *s,
    size_t n)
{
    size_t                k;
    uint32_t              cp;
    const unsigned char  *p, *run, *end;

    if (key[0] != ',') {
        ocdz_buf_add_char(out, '"');
    }

    ocdz_buf_add_str(out, key);

    if (n == 0 || s == NULL) {
        ocdz_buf_add_str(out, "\":null");
        return;
    }

    ocdz_buf_add_str(out, "\":\"");

    p = s;
    run = s;
    end = s + n;

    while (p < end) {
        k = ocdz_utf8_next(p, end, &cp);
        if (k == 0) {
            break;
        }

        if (ocdz_is_control(cp)) {
            ocdz_buf_add_escaped(out, OCDZ_ESC_JSON, run, p - run);
            ocdz_buf_add_char(out, ' ');
            run = p + k;
        }

        p += k;
    }

    ocdz_buf_add_escaped(out, OCDZ_ESC_JSON, run, p - run);
    ocdz_buf_add_char(out, '"');
}


static int
ocdz_wh_mac(const unsigned char *secret, size_t secret_len, const char *t,
    size_t t_len, const unsigned char *body, size_t len,
    unsigned char mac[OCDZ_WH_MAC_LEN])
{
    int            rc;
    size_t         n;
    EVP_MAC       *m;
    OSSL_PARAM     params[2];
    EVP_MAC_CTX   *ctx;

    m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (m == NULL) {
        return -1;
    }

    ctx = EVP_MAC_CTX_new(m);
    if (ctx == NULL) {
        EVP_MAC_free(m);
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();

    n = 0;
    rc = EVP_MAC_init(ctx, secret, secret_len, params) == 1
         && EVP_MAC_update(ctx, (const unsigned char *) t, t_len) == 1
         && EVP_MAC_update(ctx, (const unsigned char *) ".", 1) == 1
         && (len == 0 || EVP_MAC_update(ctx, body, len) == 1)
         && EVP_MAC_final(ctx, mac, &n, OCDZ_WH_MAC_LEN) == 1
         && n == OCDZ_WH_MAC_LEN;

    /* freeing the context cleanses the key schedule in it */
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);

    if (!rc) {
        ocdz_wipe(mac, OCDZ_WH_MAC_LEN);
        return -1;
    }

    return 0;
}


static int
ocdz_wh_hex(const char *s, size_t n, unsigned char *out)
{
    int     hi, lo;
    size_t  i;

    for (i = 0; i < n; i += 2) {
        hi = (s[i] >= '0' && s[i] <= '9') ? s[i] - '0'
             : (s[i] >= 'a' && s[i] <= 'f') ? s[i] - 'a' + 10
             : (s[i] >= 'A' && s[i] <= 'F') ? s[i] - 'A' + 10 : -1;
        lo = (s[i + 1] >= '0' && s[i + 1] <= '9') ? s[i + 1] - '0'
             : (s[i + 1] >= 'a' && s[i + 1] <= 'f') ? s[i + 1] - 'a' + 10
             : (s[i + 1] >= 'A' && s[i + 1] <= 'F') ? s[i + 1] - 'A' + 10
             : -1;

        if (hi < 0 || lo < 0) {
            return -1;
        }

        out[i / 2] = (unsigned char) (hi << 4 | lo);
    }

    return 0;
}
