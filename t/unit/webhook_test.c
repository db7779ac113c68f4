/*
 * Unit tests of ocdz_webhook: the JSON body, the event id, the
 * signature against vectors computed independently (openssl dgst
 * -sha256 -hmac, Python's hashlib), and the receiver's check.
 */

#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "tap.h"
#include "ocdz_webhook.h"


#define S(x)  ((ocdz_str_t) { sizeof(x) - 1, (const unsigned char *) (x) })

#define SECRET      "whsec_0123456789abcdef"
#define SECRET_LEN  (sizeof(SECRET) - 1)
#define T_EVENT     1761700000L
#define T_SENT      1761700123L

/*
 * printf '1761700123.%s' "$BODY" > f;
 * openssl dgst -sha256 -hmac whsec_0123456789abcdef f
 */
#define BODY_SENT                                                            \
    "{\"id\":\"evt_352027bb24b5ae89dc4e6df9a7d0b657\",\"type\":"             \
    "\"delivery.sent\",\"topup_id\":\"690161a3e9e88196b4eb6545\",\"ref\":"   \
    "\"order-17\",\"status\":\"SENT\",\"channel\":\"email\",\"num_trans\":"  \
    "\"AT-2025-12345\",\"message_id\":\"<ocdz.690161a3e9e88196b4eb6545."     \
    "email@shop.example>\",\"error\":null,\"time\":\"2025-10-29T01:06:40Z\"}"
#define SIG_SENT                                                             \
    "t=1761700123,v1=45a144d6f83693d4f17f3b1aeffdce35e85939de0351356f08aee9" \
    "a5070bd76b"

/* HMAC-SHA256(SECRET, "1761700123.{\"id\":\"evt_x\"}"), Python's hmac */
#define MAC_X                                                                \
    "d47c80945a7a45ccd4055da4374f5a16b2fc29bb034b00fa456a14d1496bd090"


static char  err[256];


static ocdz_webhook_event_t
sent_event(void)
{
    ocdz_webhook_event_t  ev;

    memset(&ev, 0, sizeof(ev));
    ev.event = OCDZ_WH_DELIVERY_SENT;
    ev.topup_id = S("690161a3e9e88196b4eb6545");
    ev.ref = S("order-17");
    ev.channel = S("email");
    ev.num_trans = S("AT-2025-12345");
    ev.message_id = S("<ocdz.690161a3e9e88196b4eb6545.email@shop.example>");
    ev.time = T_EVENT;

    return ev;
}


static const char *
body(const ocdz_webhook_event_t *ev, ocdz_buf_t *out)
{
    ocdz_buf_init(out, &ocdz_alloc_std, 0);
    err[0] = '\0';

    if (ocdz_webhook_body(ev, out, err, sizeof(err)) != OCDZ_MSG_OK) {
        return NULL;
    }

    return (const char *) out->data;
}


static int
verify(const char *secret, const char *header, const char *b, long now,
    long tolerance)
{
    return ocdz_webhook_verify((const unsigned char *) secret,
                               strlen(secret), header, strlen(header),
                               (const unsigned char *) b, strlen(b), now,
                               tolerance);
}


static void
test_body(void)
{
    int                    all, i;
    char                   id1[OCDZ_WH_ID_LEN + 1], id2[OCDZ_WH_ID_LEN + 1];
    yajl_val               doc;
    ocdz_buf_t             out;
    const char            *s;
    ocdz_webhook_event_t   ev, ev2;

    static const char     *keys[] = {
        "id", "type", "topup_id", "ref", "status", "channel", "num_trans",
        "message_id", "error", "time"
    };

    ev = sent_event();
    s = body(&ev, &out);
    is_str(s, BODY_SENT, "delivery.sent body");

    doc = s ? yajl_tree_parse(s, err, sizeof(err)) : NULL;
    all = doc != NULL && YAJL_IS_OBJECT(doc)
          && doc->u.object.len == sizeof(keys) / sizeof(keys[0]);

    for (i = 0; all && i < (int) (sizeof(keys) / sizeof(keys[0])); i++) {
        all = strcmp(doc->u.object.keys[i], keys[i]) == 0;
    }

    ok(all, "... valid JSON with exactly the documented keys");
    yajl_tree_free(doc);
    ocdz_buf_free(&out);

    memset(&ev, 0, sizeof(ev));
    ev.event = OCDZ_WH_ORDER_FULFILLED;
    ev.topup_id = S("690161a3e9e88196b4eb6545");
    ev.num_trans = S("AT-2025-12345");
    ev.time = T_EVENT;
    is_str(body(&ev, &out),
           "{\"id\":\"evt_2a6b22c5643f919564bb3fe752d4c185\",\"type\":"
           "\"order.fulfilled\",\"topup_id\":\"690161a3e9e88196b4eb6545\","
           "\"ref\":null,\"status\":\"FULFILLED\",\"channel\":null,"
           "\"num_trans\":\"AT-2025-12345\",\"message_id\":null,\"error\":"
           "null,\"time\":\"2025-10-29T01:06:40Z\"}",
           "order.fulfilled body: no channel, nulls for absent values");
    ocdz_buf_free(&out);

    ev.event = OCDZ_WH_ORDER_REFUNDED;
    ev.num_trans = S("");
    s = body(&ev, &out);
    ok(s && strstr(s, "\"type\":\"order.refunded\"")
       && strstr(s, "\"status\":\"REFUNDED\""), "order.refunded");
    ocdz_buf_free(&out);

    ev.event = OCDZ_WH_ORDER_ERROR;
    ev.error = S("upstream said \"NOT_FOUND\"\r\nX: y\x01 \xd8\xa8");
    s = body(&ev, &out);
    ok(s && strstr(s, "\"status\":\"ERROR\"")
       && strstr(s, "\"error\":\"upstream said \\\"NOT_FOUND\\\"  X: y  "
                 "\xd8\xa8\""), "order.error: the reason escaped, "
       "control characters as spaces");
    doc = s ? yajl_tree_parse(s, err, sizeof(err)) : NULL;
    ok(doc != NULL, "... valid JSON");
    yajl_tree_free(doc);
    ocdz_buf_free(&out);

    ev = sent_event();
    ev.event = OCDZ_WH_DELIVERY_FAILED;
    ev.channel = S("sms");
    ev.message_id = S("");
    ev.error = S("gateway answered 500");
    s = body(&ev, &out);
    ok(s && strstr(s, "\"type\":\"delivery.failed\"")
       && strstr(s, "\"status\":\"FAILED\"") && strstr(s, "\"channel\":\"sms\"")
       && strstr(s, "\"error\":\"gateway answered 500\""), "delivery.failed");
    ocdz_buf_free(&out);

    /* the event id: the idempotency key */

    ev = sent_event();
    ocdz_webhook_event_id(&ev, id1, sizeof(id1));
    is_str(id1, "evt_352027bb24b5ae89dc4e6df9a7d0b657",
           "event id = evt_ + SHA-256 of id, event, channel (hashlib)");
    ev2 = ev;
    ev2.time = T_EVENT + 86400;
    ev2.message_id = S("another");
    ev2.num_trans = S("");
    ocdz_webhook_event_id(&ev2, id2, sizeof(id2));
    is_str(id2, id1, "the same event sent again keeps its id");
    ev2.channel = S("sms");
    ocdz_webhook_event_id(&ev2, id2, sizeof(id2));
    ok(strcmp(id1, id2) != 0, "another channel, another id");
    ev2 = ev;
    ev2.event = OCDZ_WH_DELIVERY_FAILED;
    ocdz_webhook_event_id(&ev2, id2, sizeof(id2));
    ok(strcmp(id1, id2) != 0, "another event, another id");

    /* refusals */

    ev = sent_event();
    ev.channel = S("");
    ok(body(&ev, &out) == NULL && strstr(err, "needs a channel")
       && out.data == NULL, "a delivery event without a channel refused");
    ev = sent_event();
    ev.event = OCDZ_WH_ORDER_FULFILLED;
    ok(body(&ev, &out) == NULL && strstr(err, "has no channel"),
       "an order event with a channel refused");
    ev = sent_event();
    ev.topup_id = S("6901\"}");
    ok(body(&ev, &out) == NULL && strstr(err, "top-up id"),
       "a top-up id that is not a token refused");
    ev = sent_event();
    ev.channel = S("e\"mail");
    ok(body(&ev, &out) == NULL, "a channel that is not a token refused");
    ev = sent_event();
    ev.error = S("\xff");
    ok(body(&ev, &out) == NULL && strstr(err, "not UTF-8"),
       "text not UTF-8 refused");
    ev = sent_event();
    ev.ref.data = (const unsigned char *) BODY_SENT BODY_SENT;
    ev.ref.len = OCDZ_WH_FIELD_MAX + 1;
    ok(body(&ev, &out) == NULL, "a field over 256 bytes refused");
    ev.ref.len = OCDZ_WH_FIELD_MAX;
    ok(body(&ev, &out) != NULL, "a field of 256 bytes");
    ocdz_buf_free(&out);
    ev = sent_event();
    ev.event = OCDZ_WH_EVENT_N;
    ok(body(&ev, &out) == NULL, "an unknown event refused");
    ev = sent_event();
    ev.time = -1;
    ok(body(&ev, &out) == NULL, "a negative time refused");
}


static void
test_sign(void)
{
    char         sig[OCDZ_WH_SIGNATURE_SIZE], h[2048];
    const char  *b;

    b = BODY_SENT;

    is_int(ocdz_webhook_sign((const unsigned char *) SECRET, SECRET_LEN,
                             T_SENT, (const unsigned char *) b, strlen(b),
                             sig, sizeof(sig)), OCDZ_WH_OK, "sign");
    is_str(sig, SIG_SENT, "... matches openssl dgst -sha256 -hmac");

    ocdz_webhook_sign((const unsigned char *) SECRET, SECRET_LEN, T_SENT,
                      (const unsigned char *) "{\"id\":\"evt_x\"}", 14, sig,
                      sizeof(sig));
    is_str(sig, "t=1761700123,v1=" MAC_X, "... and Python's hmac");

    is_int(ocdz_webhook_sign((const unsigned char *) "short", 5, T_SENT,
                             (const unsigned char *) b, strlen(b), sig,
                             sizeof(sig)), OCDZ_WH_ERR_SECRET,
           "a secret under 16 bytes refused");
    is_int(ocdz_webhook_sign((const unsigned char *) SECRET, SECRET_LEN, -5,
                             (const unsigned char *) b, strlen(b), sig,
                             sizeof(sig)), OCDZ_WH_ERR_HEADER,
           "a negative time refused");
    is_int(ocdz_webhook_sign((const unsigned char *) SECRET, SECRET_LEN,
                             T_SENT, (const unsigned char *) b, strlen(b),
                             sig, 40), OCDZ_WH_ERR_HEADER,
           "a small buffer refused");

    /* the receiver */

    is_int(verify(SECRET, SIG_SENT, b, T_SENT, 300), OCDZ_WH_OK,
           "verify: fresh and authentic");
    is_int(verify(SECRET, SIG_SENT, b, T_SENT + 300, 300), OCDZ_WH_OK,
           "verify: 300 s later, tolerance 300");
    is_int(verify(SECRET, SIG_SENT, b, T_SENT + 301, 300), OCDZ_WH_ERR_STALE,
           "verify: 301 s later is stale (replay)");
    is_int(verify(SECRET, SIG_SENT, b, T_SENT - 301, 300), OCDZ_WH_ERR_STALE,
           "verify: 301 s in the future is stale");
    is_int(verify("whsec_0123456789abcdeF", SIG_SENT, b, T_SENT, 300),
           OCDZ_WH_ERR_SIGNATURE, "verify: wrong secret");
    is_int(verify(SECRET, SIG_SENT, "{\"id\":\"evt_352027bb24b5ae89dc4e6df9a7d"
                  "0b658\"}", T_SENT, 300), OCDZ_WH_ERR_SIGNATURE,
           "verify: another body");

    strcpy(h, BODY_SENT);
    h[strlen(h) - 3] = '1';
    is_int(verify(SECRET, SIG_SENT, h, T_SENT, 300), OCDZ_WH_ERR_SIGNATURE,
           "verify: one byte of the body changed");
    is_int(verify(SECRET, "t=1761700124,v1=45a144d6f83693d4f17f3b1aeffdce35e8"
                  "5939de0351356f08aee9a5070bd76b", b, T_SENT, 300),
           OCDZ_WH_ERR_SIGNATURE, "verify: the timestamp changed");
    is_int(verify(SECRET, "t=1761600000,v1=45a144d6f83693d4f17f3b1aeffdce35e8"
                  "5939de0351356f08aee9a5070bd76b", b, T_SENT, 300),
           OCDZ_WH_ERR_SIGNATURE,
           "verify: a forged old timestamp is a bad signature, not stale");

    is_int(verify(SECRET, "t=1761700123, v1=0000000000000000000000000000000000"
                  "000000000000000000000000000000 , v1=45A144D6F83693D4F17F3B1"
                  "AEFFDCE35E85939DE0351356F08AEE9A5070BD76B,v0=zz", b, T_SENT,
                  300), OCDZ_WH_OK,
           "verify: spaces, several v1 (key rotation), upper case, v0 "
           "ignored");
    is_int(verify(SECRET, "v1=45a144d6f83693d4f17f3b1aeffdce35e85939de0351356"
                  "f08aee9a5070bd76b,t=1761700123", b, T_SENT, 300),
           OCDZ_WH_OK, "verify: in any order");

    is_int(verify(SECRET, "v1=45a144d6f83693d4f17f3b1aeffdce35e85939de0351356"
                  "f08aee9a5070bd76b", b, T_SENT, 300), OCDZ_WH_ERR_HEADER,
           "verify: no t");
    is_int(verify(SECRET, "t=1761700123", b, T_SENT, 300),
           OCDZ_WH_ERR_HEADER, "verify: no v1");
    is_int(verify(SECRET, "t=1761700123,v1=45a1", b, T_SENT, 300),
           OCDZ_WH_ERR_HEADER, "verify: only a short v1");
    is_int(verify(SECRET, "t=1761700123,t=1761700123,v1=45a144d6f83693d4f17f"
                  "3b1aeffdce35e85939de0351356f08aee9a5070bd76b", b, T_SENT,
                  300), OCDZ_WH_ERR_HEADER, "verify: t twice");
    is_int(verify(SECRET, "t=17617001x3,v1=45a144d6f83693d4f17f3b1aeffdce35e8"
                  "5939de0351356f08aee9a5070bd76b", b, T_SENT, 300),
           OCDZ_WH_ERR_HEADER, "verify: t not digits");
    is_int(verify(SECRET, "t=-1761700123,v1=45a144d6f83693d4f17f3b1aeffdce35e"
                  "85939de0351356f08aee9a5070bd76b", b, T_SENT, 300),
           OCDZ_WH_ERR_HEADER, "verify: negative t");
    is_int(verify(SECRET, "t=1761700123,junk,v1=45a144d6f83693d4f17f3b1aeffdc"
                  "e35e85939de0351356f08aee9a5070bd76b", b, T_SENT, 300),
           OCDZ_WH_ERR_HEADER, "verify: an element without =");
    is_int(verify(SECRET, "", b, T_SENT, 300), OCDZ_WH_ERR_HEADER,
           "verify: empty header");
    is_int(verify("short", SIG_SENT, b, T_SENT, 300), OCDZ_WH_ERR_SECRET,
           "verify: short secret");

    strcpy(h, "t=1761700123");
    while (strlen(h) < 700) {
        strcat(h, ",v1=00000000000000000000000000000000000000000000000000000"
               "00000000000");
    }
    is_int(verify(SECRET, h, b, T_SENT, 300), OCDZ_WH_ERR_HEADER,
           "verify: more than 8 v1 values");

    strcpy(h, SIG_SENT);
    while (strlen(h) <= OCDZ_WH_HEADER_MAX) {
        strcat(h, ",x=y");
    }
    is_int(verify(SECRET, h, b, T_SENT, 300), OCDZ_WH_ERR_HEADER,
           "verify: header over 1024 bytes");

    is_str(ocdz_webhook_rc_str(OCDZ_WH_ERR_STALE),
           "timestamp outside the tolerance", "reasons named");
}


int
main(void)
{
    test_body();
    test_sign();

    return done_testing();
}
