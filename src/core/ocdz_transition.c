/*
 * The poller's policy: see ocdz_transition.h. Each branch is one row of
 * README.md's table of upstream answers.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ocdz_text.h"
#include "ocdz_transition.h"


static void ocdz_tr_answered(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out);
static void ocdz_tr_ok(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out);
static void ocdz_tr_unauthorized(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out);
static void ocdz_tr_progress(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out, ocdz_status_e status);
static void ocdz_tr_pause(ocdz_transition_t *out, uint64_t pause,
    const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void ocdz_tr_vfault(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out, const char *fmt,
    va_list args);
static void ocdz_tr_fault(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static void ocdz_tr_code(const char *code, char *out, size_t size);
static int ocdz_tr_code_is(const char *code, const char *want);
static void ocdz_tr_copy_text(char *dst, size_t size, const char *src);
static void ocdz_tr_printf(char *buf, size_t size, const char *fmt,
    va_list args);


static const char  *ocdz_write_names[] = {
    "progress", "fault", "refunded", "fulfilled", "not found", "release"
};


void
ocdz_transition(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out)
{
    const char  *text;

    memset(out, 0, sizeof(ocdz_transition_t));

    text = (in->call_text && in->call_text[0]) ? in->call_text : "failed";

    switch (in->call) {

    case OCDZ_CALL_ANSWERED:
        ocdz_tr_answered(conf, in, out);
        return;

    case OCDZ_CALL_OVERSIZED:
        ocdz_tr_fault(conf, in, out, "oversized reply (HTTP %ld, over %d "
                      "bytes)", in->http, OCDZ_UPSTREAM_BODY_MAX);
        return;

    case OCDZ_CALL_TIMEOUT:
        ocdz_tr_fault(conf, in, out, "timed out (%s)", text);
        out->alarm = OCDZ_ALARM_API_TIMEOUT;
        return;

    default:
        ocdz_tr_fault(conf, in, out, "%s (curl %d)", text, in->call_code);
        out->alarm = ocdz_alarm_curl_kind(in->call_code);
        return;
    }
}


void
ocdz_transition_fault(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out, const char *fmt, ...)
{
    va_list  args;

    memset(out, 0, sizeof(ocdz_transition_t));

    va_start(args, fmt);
    ocdz_tr_vfault(conf, in, out, fmt, args);
    va_end(args);
}


void
ocdz_transition_paused(ocdz_transition_t *out)
{
    memset(out, 0, sizeof(ocdz_transition_t));

    ocdz_tr_pause(out, 0, "checks paused");
}


uint64_t
ocdz_backoff(const ocdz_tr_conf_t *conf, int64_t attempts, uint64_t base)
{
    int64_t   n;
    uint64_t  d, cap;

    cap = conf->max_backoff > base ? conf->max_backoff : base;
    d = base;

    n = (conf->backoff_after > (uint64_t) INT64_MAX)
        ? 0 : attempts - (int64_t) conf->backoff_after;

    while (n-- > 0 && d < cap) {
        d = (d > cap / 2) ? cap : d * 2;
    }

    return d < cap ? d : cap;
}


const char *
ocdz_write_str(ocdz_write_e write)
{
    if ((unsigned) write >= OCDZ_WRITE_COUNT) {
        return "invalid";
    }

    return ocdz_write_names[write];
}


/* an HTTP answer */

static void
ocdz_tr_answered(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out)
{
    int                           parsed;
    int64_t                       ra;
    uint64_t                      pause, n;
    const char                   *sp;
    const ocdz_upstream_reply_t  *reply;

    parsed = (in->parsed == OCDZ_UP_OK && in->reply != NULL);
    reply = in->reply;

    /* an error code, when the body has one, helps whoever reads logs */

    if (parsed && in->http != 200) {
        ocdz_tr_code(reply->error_code, out->code, sizeof(out->code));
    }

    sp = out->code[0] ? " " : "";

    if (in->http == 200) {

        if (!parsed) {
            ocdz_tr_fault(conf, in, out, "unusable reply: %s",
                          in->parse_err ? in->parse_err : "not parsed");
            return;
        }

        ocdz_tr_ok(conf, in, out);
        return;
    }

    if (in->http >= 300 && in->http < 400) {
        ocdz_tr_pause(out, conf->pause, "the API answered with a redirect "
                      "(HTTP %ld), never followed: check ocdz_api_base",
                      in->http);
        return;
    }

    switch (in->http) {

    case 401:
        ocdz_tr_unauthorized(conf, in, out);
        return;

    case 403:
        out->alarm = OCDZ_ALARM_API_AUTH;
        ocdz_tr_pause(out, conf->pause, "the API refused access (HTTP "
                      "403%s%s): check the IP allow-list, the balance and "
                      "the key's permissions", sp, out->code);
        return;

    case 429:
        ra = in->retry_after;

        if (ra < 0 && in->retry_at >= 0) {
            ra = in->retry_at > in->now ? in->retry_at - in->now : 0;
        }

        if (ra < 0) {
            pause = conf->pause;

        } else if ((uint64_t) ra > conf->retry_after_max / 1000) {
            pause = conf->retry_after_max;

        } else {
            pause = (ra > 1 ? (uint64_t) ra : 1) * 1000;
        }

        ocdz_tr_pause(out, pause, "the API is rate limiting (HTTP 429%s%s)",
                      sp, out->code);
        return;

    case 404:
        if (parsed && reply->success == 0 && reply->has_error
            && ocdz_tr_code_is(reply->error_code, "NOT_FOUND"))
        {
            out->write = OCDZ_WRITE_NOT_FOUND;
            out->delay = ocdz_backoff(conf, in->attempts, conf->interval);

            n = (in->not_found < 0) ? 1 : (uint64_t) in->not_found + 1;

            if (n >= conf->not_found_retries) {
                out->to_error = 1;
                snprintf(out->error, sizeof(out->error),
                         "not found upstream after %llu checks",
                         (unsigned long long) n);

            } else {
                snprintf(out->error, sizeof(out->error),
                         "not found upstream (%llu of %llu)",
                         (unsigned long long) n,
                         (unsigned long long) conf->not_found_retries);
            }

            return;
        }

        if (!parsed || reply->success == -1 || !reply->has_error) {
            ocdz_tr_pause(out, conf->pause, "the API answered HTTP 404 "
                          "without its envelope: check ocdz_api_base");
            return;
        }

        ocdz_tr_fault(conf, in, out, "HTTP 404%s%s", sp, out->code);
        return;

    default:
        ocdz_tr_fault(conf, in, out, "HTTP %ld%s%s", in->http, sp,
                      out->code);
        return;
    }
}


/* 200: the order object */

static void
ocdz_tr_ok(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out)
{
    int                           final;
    size_t                        idlen;
    const ocdz_upstream_reply_t  *reply;

    reply = in->reply;

    if (reply->success != 1) {
        ocdz_tr_fault(conf, in, out, "reply without \"success\": true");
        return;
    }

    if (!reply->has_data) {
        ocdz_tr_fault(conf, in, out, "reply without \"data\"");
        return;
    }

    final = (reply->status == OCDZ_ST_FULFILLED
             || reply->status == OCDZ_ST_REFUNDED);

    /* a reply about another order must not change this one */

    idlen = strlen(reply->id);

    if (idlen == 0) {
        if (final) {
            ocdz_tr_fault(conf, in, out, "%s reply without data._id",
                          ocdz_status_str(reply->status));
            return;
        }

    } else if (idlen != strlen(in->topup_id)
               || strncasecmp(reply->id, in->topup_id, idlen) != 0)
    {
        ocdz_tr_fault(conf, in, out, "the reply is about another order");
        return;
    }

    switch (reply->status) {

    case OCDZ_ST_FULFILLED:
        if (!reply->has_card_code || reply->card_code_len == 0) {
            ocdz_tr_fault(conf, in, out, "FULFILLED without card_code: "
                          "upstream error, checked again");
            return;
        }

        out->write = OCDZ_WRITE_FULFILLED;
        ocdz_tr_copy_text(out->num_trans, sizeof(out->num_trans),
                          reply->num_trans);
        ocdz_tr_copy_text(out->date, sizeof(out->date),
                          reply->date_traitement);
        return;

    case OCDZ_ST_REFUNDED:
        out->write = OCDZ_WRITE_REFUNDED;
        ocdz_tr_copy_text(out->refund_message, sizeof(out->refund_message),
                          reply->refund_message);
        return;

    case OCDZ_ST_PENDING:
    case OCDZ_ST_HANDLING:
    case OCDZ_ST_QUEUED:
    case OCDZ_ST_UNKNOWN_ERROR:
        ocdz_tr_progress(conf, in, out, reply->status);
        return;

    case OCDZ_ST_NONE:
        ocdz_tr_fault(conf, in, out, "reply without data.status");
        return;

    default:
        ocdz_tr_fault(conf, in, out, "unknown status in the reply");
        return;
    }
}


/*
 * 401: the other token if there is one (the poller switches, once);
 * with none left, every check pauses and the next try starts again from
 * the primary.
 */

static void
ocdz_tr_unauthorized(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out)
{
    const char  *sp;

    sp = out->code[0] ? " " : "";

    if (in->token == 0 && in->has_secondary) {
        out->token = OCDZ_TOKEN_SECONDARY;
        ocdz_tr_pause(out, 0, "access token rejected (HTTP 401); checked "
                      "again with the secondary token");
        return;
    }

    out->token = OCDZ_TOKEN_PRIMARY;
    out->alarm = OCDZ_ALARM_API_AUTH;
    ocdz_tr_pause(out, conf->pause, "OneClickDz rejected the %saccess token "
                  "(HTTP 401%s%s): check ocdz_api_token_file",
                  in->has_secondary ? "secondary " : "", sp, out->code);
}


static void
ocdz_tr_progress(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out, ocdz_status_e status)
{
    out->write = OCDZ_WRITE_PROGRESS;
    out->status = status;
    out->delay = (status == OCDZ_ST_QUEUED)
                 ? conf->queued_interval
                 : ocdz_backoff(conf, in->attempts, conf->interval);
}


/*
 * Not the order's fault: its lease goes back untouched and, with a
 * pause, no worker of any host checks anything until it ends.
 */

static void
ocdz_tr_pause(ocdz_transition_t *out, uint64_t pause, const char *fmt, ...)
{
    size_t   len, n;
    va_list  args;

    va_start(args, fmt);
    ocdz_tr_printf(out->reason, sizeof(out->reason), fmt, args);
    va_end(args);

    out->write = OCDZ_WRITE_RELEASE;
    out->pause = pause;

    /* last_error: "checks paused: " and the reason, cut between
     * characters */

    len = pause ? sizeof("checks paused: ") - 1 : 0;
    memcpy(out->error, "checks paused: ", len);

    n = ocdz_text_prefix((unsigned char *) out->reason, strlen(out->reason),
                         OCDZ_TR_ERR_MAX - len);
    memcpy(out->error + len, out->reason, n);
    out->error[len + n] = '\0';
}


/* the check failed: the order keeps its status, tried again later */

static void
ocdz_tr_vfault(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out, const char *fmt, va_list args)
{
    ocdz_tr_printf(out->error, sizeof(out->error), fmt, args);

    out->write = OCDZ_WRITE_FAULT;
    out->delay = ocdz_backoff(conf, in->attempts, conf->interval);
}


static void
ocdz_tr_fault(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out, const char *fmt, ...)
{
    va_list  args;

    va_start(args, fmt);
    ocdz_tr_vfault(conf, in, out, fmt, args);
    va_end(args);
}


/*
 * An upstream error code, for logs and last_error: only when it looks
 * like one (letters, digits, "_" and "-", some letters), never free text.
 */

static void
ocdz_tr_code(const char *code, char *out, size_t size)
{
    size_t         i, letters;
    unsigned char  ch;

    out[0] = '\0';
    letters = 0;

    for (i = 0; code[i]; i++) {
        ch = (unsigned char) code[i];

        if (i + 1 >= size) {
            return;
        }

        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) {
            letters++;

        } else if (!((ch >= '0' && ch <= '9') || ch == '_' || ch == '-')) {
            return;
        }
    }

    if (letters < 3) {
        return;
    }

    memcpy(out, code, i + 1);
}


/* error codes are seen with "_" and with "-", in any case: both match */

static int
ocdz_tr_code_is(const char *code, const char *want)
{
    unsigned char  a, b;

    for ( ;; ) {
        a = (unsigned char) *code++;
        b = (unsigned char) *want++;

        if (a >= 'a' && a <= 'z') {
            a -= 'a' - 'A';
        }

        if (a == '-') {
            a = '_';
        }

        if (a != b) {
            return 0;
        }

        if (a == '\0') {
            return 1;
        }
    }
}


/* text for the database: valid UTF-8 without controls, else nothing */

static void
ocdz_tr_copy_text(char *dst, size_t size, const char *src)
{
    size_t  len;

    dst[0] = '\0';

    len = strlen(src);

    if (len == 0 || len >= size
        || !ocdz_text_valid((const unsigned char *) src, len,
                            OCDZ_TEXT_LINES))
    {
        return;
    }

    memcpy(dst, src, len + 1);
}


/*
 * last_error and pause_reason: whatever went in (curl's messages
 * included), what comes out is text the database takes, cut whole.
 */

static void
ocdz_tr_printf(char *buf, size_t size, const char *fmt, va_list args)
{
    int     n;
    size_t  len;

    n = vsnprintf(buf, size, fmt, args);

    len = (n < 0) ? 0 : ((size_t) n >= size ? size - 1 : (size_t) n);

    ocdz_text_sanitize((unsigned char *) buf, len);
    buf[len] = '\0';
}
