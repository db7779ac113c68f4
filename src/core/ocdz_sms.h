/*
 * The card delivered by SMS through an HTTP gateway: the text rendered
 * from its template and counted in SMS parts, the gateway's request
 * body, and the gateway's message id read from its JSON reply.
 *
 * Pure C, no nginx.
 *
 * Counting (3GPP TS 23.038 / 23.040):
 *   - GSM 7-bit when every character is in the default alphabet or its
 *     extension table; the extension characters ^ { } \ [ ~ ] | and the
 *     euro sign, and form feed, take two septets (escape + code). One
 *     SMS holds 160 septets; a concatenated one 153 per part, and an
 *     escape pair is never split between two parts.
 *   - otherwise UCS-2 (UTF-16 on today's phones): one SMS holds 70 code
 *     units, 67 per part when concatenated; a character outside the BMP
 *     takes two units (a surrogate pair), never split between parts.
 *   Characters are Unicode scalar values (valid UTF-8 only); nothing is
 *   transliterated: one character outside GSM 7-bit makes the whole
 *   message UCS-2.
 *
 * Too long: an SMS that needs more parts than allowed is never cut (a
 * cut could drop the card code). ocdz_sms_build() refuses it with
 * OCDZ_MSG_ERR_TOO_LONG and a reason (parts, units, encoding): the glue
 * records a permanent failure. ocdz_sms_check() catches it earlier, at
 * configuration time, by rendering the template with every field at a
 * worst-case length (in digits: fields are codes and numbers) and both
 * card types' instructions; what it cannot foresee (a field longer than
 * assumed, a non-GSM character in a field making the message UCS-2)
 * is left to the send-time refusal.
 *
 * With the built-in templates and the default worst case: English and
 * French fit one GSM-7 part, Arabic needs two UCS-2 parts.
 *
 * How the outbox sender uses it:
 *   configuration: parse the SMS text template for each language
 *     (OCDZ_TPL_SMS_TEXT), ocdz_sms_check() each with the configured
 *     maximum number of parts (an error fails "nginx -t"); parse the
 *     gateway body (OCDZ_TPL_SMS_FORM or OCDZ_TPL_SMS_JSON); check the
 *     reply id path with ocdz_sms_reply_path_valid().
 *   send time: ocdz_sms_phone_valid() on the customer's number (a
 *     refusal: skipped, with the reason); vars as for mail, with the
 *     decrypted card; ocdz_sms_build() into a buffer; then
 *     ocdz_sms_gateway_body() into a second one; ocdz_buf_free() the
 *     first; wipe the card; POST the body (CURLOPT_POSTFIELDS with
 *     CURLOPT_POSTFIELDSIZE, or a read callback), with the gateway's
 *     headers; after the transfer, ocdz_buf_free() the body. On a 2xx
 *     reply, ocdz_sms_reply_id() gives the id to store (its absence is
 *     not a failure of the send).
 */

#ifndef _OCDZ_SMS_H_INCLUDED_
#define _OCDZ_SMS_H_INCLUDED_


#include <stddef.h>

#include "ocdz_instructions.h"
#include "ocdz_template.h"
#include "ocdz_buf.h"


#define OCDZ_SMS_GSM_SINGLE      160     /* septets */
#define OCDZ_SMS_GSM_PART        153
#define OCDZ_SMS_UCS2_SINGLE     70      /* UTF-16 code units */
#define OCDZ_SMS_UCS2_PART       67
#define OCDZ_SMS_PARTS_MAX       10      /* most parts one may allow */

#define OCDZ_SMS_PHONE_MIN       6       /* digits */
#define OCDZ_SMS_PHONE_MAX       15      /* E.164 */

#define OCDZ_SMS_REPLY_MAX       16384   /* bytes of a gateway reply read */
#define OCDZ_SMS_REPLY_DEPTH     32
#define OCDZ_SMS_PATH_MAX        8       /* components of a reply id path */
#define OCDZ_SMS_PATH_KEY_MAX    64
#define OCDZ_SMS_ID_MAX          128     /* bytes of a message id */


typedef enum {
    OCDZ_SMS_GSM7 = 0,
    OCDZ_SMS_UCS2
} ocdz_sms_enc_e;


typedef struct {
    ocdz_sms_enc_e           encoding;
    size_t                   chars;      /* Unicode characters */
    size_t                   units;      /* septets or UTF-16 units */
    size_t                   parts;      /* 1 at least */
} ocdz_sms_count_t;


/* Longest value assumed for each placeholder by ocdz_sms_check(). */
typedef struct {
    size_t                   len[OCDZ_VAR_N];
} ocdz_sms_worst_t;


/* The gateway body's values (see the gateway fields in ocdz_template.h) */
typedef struct {
    ocdz_str_t               to;          /* checked phone number */
    ocdz_str_t               message;     /* from ocdz_sms_build() */
    const ocdz_sms_count_t  *count;       /* gives {unicode} */
    ocdz_str_t               sender;
    ocdz_str_t               idempotency_key;   /* stable for the order
                                                   and channel (the
                                                   outbox row's id, or
                                                   "<topup id>-sms") */
    ocdz_str_t               topup_id;
} ocdz_sms_gateway_t;


/* Counts text; OCDZ_MSG_OK, or OCDZ_MSG_ERR_INPUT if not valid UTF-8. */
int ocdz_sms_count(const unsigned char *text, size_t len,
    ocdz_sms_count_t *count);

/* Septets a character takes in GSM 7-bit: 1, 2 (extension), 0 (none). */
int ocdz_sms_gsm_septets(uint32_t cp);

/*
 * The defaults: card code 24, transaction number 32, number 12, value
 * 6, date 24, top-up id 24, shop 32.
 */
void ocdz_sms_worst_default(ocdz_sms_worst_t *worst);

/*
 * Configuration-time check of an SMS text template against max_parts
 * (1-OCDZ_SMS_PARTS_MAX): rendered with the worst-case values (worst
 * NULL: the defaults) for both card types in lang with set (NULL: the
 * built-in instructions). count (may be NULL) gets the largest count.
 * OCDZ_MSG_OK, or OCDZ_MSG_ERR_TOO_LONG / _INPUT with the reason in err.
 */
int ocdz_sms_check(const ocdz_tpl_t *tpl, ocdz_lang_e lang,
    const ocdz_instructions_t *set, const ocdz_sms_worst_t *worst,
    size_t max_parts, ocdz_sms_count_t *count, char *err, size_t errlen);

/*
 * Renders the SMS text into out and counts it into count (zeroes when
 * nothing was rendered). When it needs more than max_parts parts:
 * OCDZ_MSG_ERR_TOO_LONG and a reason in err; other failures as
 * ocdz_tpl_render(). On failure out is wiped and released.
 */
int ocdz_sms_build(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars,
    size_t max_parts, ocdz_buf_t *out, ocdz_sms_count_t *count, char *err,
    size_t errlen);

/* An optional "+" and 6-15 digits: 1, else 0. */
int ocdz_sms_phone_valid(const unsigned char *s, size_t len);

/*
 * Renders the gateway body template (OCDZ_TPL_SMS_FORM or _JSON) into
 * out. The phone number is checked here again. On failure out is wiped
 * and released.
 */
int ocdz_sms_gateway_body(const ocdz_tpl_t *body,
    const ocdz_sms_gateway_t *g, ocdz_buf_t *out, char *err,
    size_t errlen);

/*
 * A reply id path: dot-separated keys, a component of digits also
 * indexes an array ("messages.0.id"), at most OCDZ_SMS_PATH_MAX
 * components of 1-OCDZ_SMS_PATH_KEY_MAX printable ASCII bytes. 1 if
 * valid, else 0.
 */
int ocdz_sms_reply_path_valid(const char *path, size_t len);

/*
 * The message id at path in a JSON reply (at most OCDZ_SMS_REPLY_MAX
 * bytes, OCDZ_SMS_REPLY_DEPTH deep): a string or a number, written as
 * given, NUL-terminated, into id (size at least OCDZ_SMS_ID_MAX + 1).
 * It must be 1-OCDZ_SMS_ID_MAX bytes of printable ASCII without space.
 * OCDZ_MSG_OK; or OCDZ_MSG_ERR_INPUT (not JSON, no such value, the path
 * matched twice, an unusable value) / _TOO_LONG, with the reason in err
 * (never quoting the reply).
 */
int ocdz_sms_reply_id(const unsigned char *reply, size_t len,
    const char *path, char *id, size_t size, char *err, size_t errlen);


#endif /* _OCDZ_SMS_H_INCLUDED_ */
