/*
 * The signed webhook to the storefront: one JSON body per event, its
 * signature header, and the check a receiver makes.
 *
 * Pure C, no nginx.
 *
 * Events: the order reached a final state (order.fulfilled,
 * order.refunded, order.error) or a delivery was sent or failed for
 * good (delivery.sent, delivery.failed). The body, keys always in this
 * order, absent values as null:
 *
 *     {"id":"evt_<32 hex>","type":"delivery.sent",
 *      "topup_id":"690161a3e9e88196b4eb6545","ref":"order-17",
 *      "status":"SENT","channel":"email","num_trans":"AT-2025-12345",
 *      "message_id":"<provider's id>","error":null,
 *      "time":"2025-10-29T01:05:30Z"}
 *
 * status is FULFILLED, REFUNDED or ERROR for order events, SENT or
 * FAILED for delivery events; channel is null for order events. The
 * card code is never in it: the event struct has no field that could
 * carry it, and the builder takes nothing else.
 *
 * "id" is the idempotency key: derived from the top-up id, the event
 * and the channel only, so the same event sent again (after a crash
 * between the send and its commit) has the same id; receivers drop an
 * id they have seen. The glue sends it also as the OCDZ_WH_ID_HEADER
 * header.
 *
 * Signature (as payment providers sign their webhooks), header
 * OCDZ_WH_SIGNATURE_HEADER:
 *
 *     t=<unix time of sending>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
 *
 * The receiver: take t and every v1 from the header (elements split on
 * ",", each "key=value"; other keys ignored), compute the HMAC of the
 * t digits as sent, ".", and the raw body bytes, compare it in constant
 * time with each v1, then refuse a t more than a tolerance (5 minutes
 * is usual) away from its clock. A retry is signed again with a new t
 * and carries the same id. ocdz_webhook_verify() does exactly that.
 *
 * How the outbox sender uses it:
 *   configuration: the secret read from a file (at least
 *     OCDZ_WH_SECRET_MIN bytes), kept for the workers, wiped at exit.
 *   send time: fill the event from the outbox row (the event time is
 *     the row's, not the attempt's); ocdz_webhook_body() into a buffer;
 *     ocdz_webhook_sign() with now; POST with Content-Type
 *     application/json, the signature and id headers; release the body
 *     after the transfer. A 2xx answer is success.
 */

#ifndef _OCDZ_WEBHOOK_H_INCLUDED_
#define _OCDZ_WEBHOOK_H_INCLUDED_


#include <stddef.h>
#include <time.h>

#include "ocdz_buf.h"


#define OCDZ_WH_SIGNATURE_HEADER   "Ocdz-Signature"
#define OCDZ_WH_ID_HEADER          "Ocdz-Event-Id"

#define OCDZ_WH_SECRET_MIN         16
#define OCDZ_WH_SECRET_MAX         1024
#define OCDZ_WH_TOLERANCE_DEFAULT  300       /* seconds */

#define OCDZ_WH_ID_LEN             36        /* "evt_" + 32 hex */
#define OCDZ_WH_SIGNATURE_SIZE     96        /* "t=...,v1=<64 hex>" NUL */
#define OCDZ_WH_HEADER_MAX         1024      /* signature header verified */
#define OCDZ_WH_V1_MAX             8         /* v1 values tried */
#define OCDZ_WH_FIELD_MAX          256       /* bytes of ref, num_trans,
                                                message_id, error */


typedef enum {
    OCDZ_WH_ORDER_FULFILLED = 0,
    OCDZ_WH_ORDER_REFUNDED,
    OCDZ_WH_ORDER_ERROR,
    OCDZ_WH_DELIVERY_SENT,
    OCDZ_WH_DELIVERY_FAILED,
    OCDZ_WH_EVENT_N
} ocdz_wh_event_e;


typedef enum {
    OCDZ_WH_OK = 0,
    OCDZ_WH_ERR_HEADER,        /* no t, no v1, malformed, too long */
    OCDZ_WH_ERR_SIGNATURE,     /* no v1 matches (wrong secret, body
                                  changed, t changed) */
    OCDZ_WH_ERR_STALE,         /* authentic, but t outside the window */
    OCDZ_WH_ERR_SECRET         /* secret shorter than OCDZ_WH_SECRET_MIN
                                  or longer than OCDZ_WH_SECRET_MAX */
} ocdz_wh_rc_e;


/* Every string borrowed; valid UTF-8 where text. No card code here. */
typedef struct {
    ocdz_wh_event_e          event;
    ocdz_str_t               topup_id;    /* 1-64 of [A-Za-z0-9_-] */
    ocdz_str_t               ref;         /* the storefront's, optional */
    ocdz_str_t               channel;     /* delivery events: a token
                                             ("email", "sms"); else empty */
    ocdz_str_t               num_trans;   /* optional */
    ocdz_str_t               message_id;  /* the provider's, optional */
    ocdz_str_t               error;       /* a short reason, optional;
                                             control characters become
                                             spaces */
    time_t                   time;        /* when the event happened */
} ocdz_webhook_event_t;


/* "order.fulfilled", ... */
const char *ocdz_webhook_event_name(ocdz_wh_event_e event);

/*
 * The event id, NUL-terminated, into out (size at least
 * OCDZ_WH_ID_LEN + 1). OCDZ_MSG_OK, or OCDZ_MSG_ERR_INPUT when the
 * top-up id or channel is not a token or the event is unknown.
 */
int ocdz_webhook_event_id(const ocdz_webhook_event_t *ev, char *out,
    size_t size);

/*
 * Appends the JSON body to out. OCDZ_MSG_OK; OCDZ_MSG_ERR_INPUT (bad
 * ids, a channel missing or where none belongs, text not UTF-8, a field
 * over OCDZ_WH_FIELD_MAX) with the reason in err; OCDZ_MSG_ERR_NOMEM.
 * On failure out is released.
 */
int ocdz_webhook_body(const ocdz_webhook_event_t *ev, ocdz_buf_t *out,
    char *err, size_t errlen);

/*
 * The signature header value for body sent at time t, NUL-terminated,
 * into out (size at least OCDZ_WH_SIGNATURE_SIZE). OCDZ_WH_OK,
 * OCDZ_WH_ERR_SECRET, or OCDZ_WH_ERR_HEADER (t negative, out small,
 * HMAC failure).
 */
int ocdz_webhook_sign(const unsigned char *secret, size_t secret_len,
    time_t t, const unsigned char *body, size_t len, char *out,
    size_t size);

/*
 * The receiver's check of a signature header (at most
 * OCDZ_WH_HEADER_MAX bytes, at most OCDZ_WH_V1_MAX v1 values) for body
 * at time now, t accepted within tolerance seconds either way.
 * Returns an ocdz_wh_rc_e.
 */
int ocdz_webhook_verify(const unsigned char *secret, size_t secret_len,
    const char *header, size_t header_len, const unsigned char *body,
    size_t len, time_t now, long tolerance);

const char *ocdz_webhook_rc_str(int rc);


#endif /* _OCDZ_WEBHOOK_H_INCLUDED_ */
