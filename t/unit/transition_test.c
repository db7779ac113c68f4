/*
 * Unit tests of ocdz_transition over every row of README.md's table of
 * upstream answers ("The poller"), each with the write-back, the delay,
 * the pause and the texts written. Replies are real JSON, parsed by
 * ocdz_upstream as the poller parses them.
 */

#include <string.h>

#include "ocdz_transition.h"
#include "tap.h"


#define ID      "690161a3e9e88196b4eb6545"
#define OTHER   "690161a3e9e88196b4eb6546"

#define ENV_OK(data)    "{\"success\":true,\"data\":" data "}"
#define ENV_ERR(code)   "{\"success\":false,\"error\":{\"code\":\"" code    \
                        "\",\"message\":\"Something\"}}"
#define ORDER(status)   "{\"_id\":\"" ID "\",\"status\":\"" status "\""


static ocdz_tr_conf_t  conf = {
    5000,                   /* interval */
    2 * 3600 * 1000,        /* queued_interval */
    10 * 60 * 1000,         /* max_backoff */
    60000,                  /* pause */
    10 * 60 * 1000,         /* retry_after_max */
    60,                     /* backoff_after */
    5                       /* not_found_retries */
};

static ocdz_check_t           in;
static ocdz_upstream_reply_t  reply;
static ocdz_transition_t      out;
static char                   perr[128];


static void
check_init(int64_t attempts, int64_t not_found)
{
    memset(&in, 0, sizeof(ocdz_check_t));

    in.topup_id = ID;
    in.attempts = attempts;
    in.not_found = not_found;
    in.retry_after = -1;
    in.retry_at = -1;
    in.now = 1761700000;
}


/* an answer with a body, the order at attempts and not_found */

static ocdz_transition_t *
answer(long http, const char *body, int64_t attempts, int64_t not_found)
{
    check_init(attempts, not_found);

    in.call = OCDZ_CALL_ANSWERED;
    in.http = http;
    in.parsed = ocdz_upstream_parse((const unsigned char *) body,
                                    strlen(body), &reply, perr,
                                    sizeof(perr));
    in.parse_err = perr;
    in.reply = &reply;

    ocdz_transition(&conf, &in, &out);

    return &out;
}


static ocdz_transition_t *
call_failed(ocdz_call_e call, int code, const char *text)
{
    check_init(1, 0);

    in.call = call;
    in.call_code = code;
    in.call_text = text;
    in.http = (call == OCDZ_CALL_OVERSIZED) ? 200 : 0;
    in.parsed = -1;

    ocdz_transition(&conf, &in, &out);

    return &out;
}


static int
is_fault(const char *want)
{
    return out.write == OCDZ_WRITE_FAULT && strcmp(out.error, want) == 0
           && out.pause == 0 && out.delay == conf.interval;
}


static int
is_pause(uint64_t pause, const char *reason_starts)
{
    return out.write == OCDZ_WRITE_RELEASE && out.pause == pause
           && strncmp(out.reason, reason_starts, strlen(reason_starts)) == 0;
}


/* FULFILLED with a card, the id asked */

static void
test_fulfilled(void)
{
    answer(200, ENV_OK(ORDER("FULFILLED") ",\"card_code\":\"123456789012\","
                       "\"num_trans\":\"T-9\",\"date_traitement\":"
                       "\"2025-10-29 10:00:00\"}"), 3, 0);
    is_int(out.write, OCDZ_WRITE_FULFILLED, "fulfilled: the card is stored");
    is_str(out.num_trans, "T-9", "fulfilled: num_trans");
    is_str(out.date, "2025-10-29 10:00:00", "fulfilled: date_traitement");
    is_str(out.error, "", "fulfilled: last_error cleared");
    is_int(out.pause, 0, "fulfilled: no pause");

    answer(200, ENV_OK("{\"_id\":\"690161A3E9E88196B4EB6545\",\"status\":"
                       "\"FULFILLED\",\"card_code\":\"1\"}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_FULFILLED,
           "fulfilled: the id in upper case is the same order");
    is_str(out.num_trans, "", "fulfilled: no num_trans, none written");

    /* texts the database would refuse are not written at all */
    answer(200, ENV_OK(ORDER("FULFILLED") ",\"card_code\":\"1\","
                       "\"num_trans\":\"T\xed\xa0\x80X\",\"date_traitement\":"
                       "\"a\\u001bb\"}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_FULFILLED,
           "fulfilled with odd texts: still stored");
    is_str(out.num_trans, "", "fulfilled: an encoded surrogate is no "
           "num_trans (PostgreSQL would refuse the statement)");
    is_str(out.date, "", "fulfilled: an escape character is no date");
}


/* HANDLING, PENDING: interval, backoff after backoff_after checks */

static void
test_progress(void)
{
    answer(200, ENV_OK(ORDER("HANDLING") "}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_PROGRESS, "handling: progress");
    is_int(out.status, OCDZ_ST_HANDLING, "handling: status HANDLING");
    is_int(out.delay, 5000, "handling: next check after the interval");
    is_str(out.error, "", "handling: last_error cleared");

    answer(200, ENV_OK(ORDER("PENDING") "}"), 60, 0);
    is_int(out.status, OCDZ_ST_PENDING, "pending: status PENDING");
    is_int(out.delay, 5000, "pending: still the interval at 60 checks");

    answer(200, ENV_OK(ORDER("PENDING") "}"), 61, 0);
    is_int(out.delay, 10000, "pending: 61 checks, twice the interval");

    answer(200, ENV_OK(ORDER("HANDLING") "}"), 63, 0);
    is_int(out.delay, 40000, "handling: 63 checks, 8 times");

    answer(200, ENV_OK(ORDER("HANDLING") "}"), 100000, 0);
    is_int(out.delay, 600000, "handling: capped at ocdz_poller_max_backoff");

    is_int(ocdz_backoff(&conf, 1000, 900000), 900000,
           "backoff: an interval longer than the cap is kept");
    is_int(ocdz_backoff(&conf, -5, 5000), 5000,
           "backoff: a negative count is no backoff");
}


/* QUEUED: ocdz_poller_queued_interval */

static void
test_queued(void)
{
    answer(200, ENV_OK(ORDER("QUEUED") "}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_PROGRESS, "queued: progress");
    is_int(out.status, OCDZ_ST_QUEUED, "queued: status QUEUED");
    is_int(out.delay, 2 * 3600 * 1000, "queued: the queued interval");

    answer(200, ENV_OK(ORDER("QUEUED") "}"), 500, 0);
    is_int(out.delay, 2 * 3600 * 1000, "queued: no backoff");
}


/* UNKNOWN_ERROR: kept, checked again with backoff, never refunded */

static void
test_unknown_error(void)
{
    answer(200, ENV_OK(ORDER("UNKNOWN_ERROR") "}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_PROGRESS, "unknown error: progress");
    is_int(out.status, OCDZ_ST_UNKNOWN_ERROR, "unknown error: kept");

    answer(200, ENV_OK(ORDER("UNKNOWN_ERROR") "}"), 62, 0);
    is_int(out.delay, 20000, "unknown error: backoff");
}


/* REFUNDED: final, with refund_message */

static void
test_refunded(void)
{
    answer(200, ENV_OK(ORDER("REFUNDED") ",\"refund_message\":"
                       "\"Num\\u00e9ro invalide\\nretry\"}"), 2, 0);
    is_int(out.write, OCDZ_WRITE_REFUNDED, "refunded: final");
    is_str(out.refund_message, "Num\xc3\xa9ro invalide\nretry",
           "refunded: refund_message, UTF-8 and lines kept");

    answer(200, ENV_OK(ORDER("REFUNDED") "}"), 2, 0);
    is_str(out.refund_message, "", "refunded: no message, NULL");

    answer(200, ENV_OK(ORDER("REFUNDED") ",\"refund_message\":"
                       "\"bad \\udc00\"}"), 2, 0);
    is_str(out.refund_message, "", "refunded: a message that is not text "
           "is not written");
}


/* 404 NOT_FOUND: checked again; after the retries, ERROR */

static void
test_not_found(void)
{
    answer(404, ENV_ERR("NOT_FOUND"), 1, 0);
    is_int(out.write, OCDZ_WRITE_NOT_FOUND, "404 NOT_FOUND: counted");
    ok(!out.to_error, "404 NOT_FOUND: not ERROR yet");
    is_str(out.error, "not found upstream (1 of 5)",
           "404 NOT_FOUND: last_error counts");
    is_int(out.delay, 5000, "404 NOT_FOUND: next check after the interval");
    is_str(out.code, "NOT_FOUND", "404 NOT_FOUND: the code for the log");

    answer(404, ENV_ERR("NOT_FOUND"), 5, 4);
    ok(out.to_error, "404 NOT_FOUND, the fifth: ERROR for a person");
    is_str(out.error, "not found upstream after 5 checks",
           "404 NOT_FOUND, the fifth: last_error");

    answer(404, ENV_ERR("not-found"), 1, 0);
    is_int(out.write, OCDZ_WRITE_NOT_FOUND,
           "404 not-found: the code in another spelling");

    conf.not_found_retries = 0;
    answer(404, ENV_ERR("NOT_FOUND"), 1, 0);
    ok(out.to_error, "ocdz_poller_not_found_retries 0: ERROR at once");
    conf.not_found_retries = 5;

    answer(404, ENV_ERR("ORDER_GONE"), 1, 0);
    ok(is_fault("HTTP 404 ORDER_GONE"),
       "404 with another code: a fault naming it");
}


/* 401: the secondary token if there is one, else a pause */

static void
test_unauthorized(void)
{
    answer(401, ENV_ERR("INVALID_TOKEN"), 1, 0);
    ok(is_pause(60000, "OneClickDz rejected the access token (HTTP 401 "
                "INVALID_TOKEN): check ocdz_api_token_file"),
       "401, one token: every check pauses");
    is_int(out.token, OCDZ_TOKEN_PRIMARY, "401, one token: the primary");
    is_str(out.error, "checks paused: OneClickDz rejected the access token "
           "(HTTP 401 INVALID_TOKEN): check ocdz_api_token_file",
           "401: last_error says checks pause");

    answer(401, ENV_ERR("INVALID_TOKEN"), 1, 0);
    in.has_secondary = 1;
    ocdz_transition(&conf, &in, &out);
    ok(is_pause(0, "access token rejected (HTTP 401); checked again with "
                "the secondary token"),
       "401 with the primary, a secondary: no pause");
    is_int(out.token, OCDZ_TOKEN_SECONDARY, "401: the secondary from now");
    is_str(out.error, out.reason, "401: the lease back with the reason");

    in.token = 1;
    ocdz_transition(&conf, &in, &out);
    ok(is_pause(60000, "OneClickDz rejected the secondary access token"),
       "401 with the secondary: every check pauses");
    is_int(out.token, OCDZ_TOKEN_PRIMARY, "401 with the secondary: the "
           "primary for the next try");
}


/* 403, 3xx, 404 without the API's envelope: a pause, never a fault */

static void
test_pauses(void)
{
    answer(403, ENV_ERR("IP_NOT_ALLOWED"), 1, 0);
    ok(is_pause(60000, "the API refused access (HTTP 403 IP_NOT_ALLOWED): "
                "check the IP allow-list"), "403: every check pauses");
    is_int(out.token, OCDZ_TOKEN_KEEP, "403: the token is kept");

    answer(403, "<html>Forbidden</html>", 1, 0);
    ok(is_pause(60000, "the API refused access (HTTP 403): "),
       "403 without a body we read: pauses, no code");

    answer(301, "", 1, 0);
    ok(is_pause(60000, "the API answered with a redirect (HTTP 301), never "
                "followed: check ocdz_api_base"), "301: pauses");

    answer(307, "{}", 1, 0);
    ok(is_pause(60000, "the API answered with a redirect (HTTP 307)"),
       "307: pauses");

    answer(404, "<html>Not Found</html>", 1, 0);
    ok(is_pause(60000, "the API answered HTTP 404 without its envelope"),
       "404 HTML (a wrong base URL): pauses");

    answer(404, "{\"statusCode\":404,\"message\":\"Cannot GET\"}", 1, 0);
    ok(is_pause(60000, "the API answered HTTP 404 without its envelope"),
       "404 of a framework, no envelope: pauses");
}


/* 429: Retry-After, capped by ocdz_poller_retry_after_max */

static void
test_rate_limit(void)
{
    answer(429, ENV_ERR("RATE_LIMIT_EXCEEDED"), 1, 0);
    ok(is_pause(60000, "the API is rate limiting (HTTP 429 "
                "RATE_LIMIT_EXCEEDED)"),
       "429 without Retry-After: ocdz_poller_pause");

    in.retry_after = 30;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 30000, "429 Retry-After: 30 seconds");

    in.retry_after = 0;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 1000, "429 Retry-After: 0 is a second");

    in.retry_after = 100000;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 600000, "429 Retry-After: capped");

    in.retry_after = -1;
    in.retry_at = in.now + 45;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 45000, "429 Retry-After as a date: 45 s ahead");

    in.retry_at = in.now - 45;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 1000, "429 Retry-After as a past date: a second");

    in.retry_at = in.now + 86400;
    ocdz_transition(&conf, &in, &out);
    is_int(out.pause, 600000, "429 Retry-After as a date a day ahead: "
           "capped");
}


/*
 * 5xx, timeouts, connection and TLS errors, malformed or oversized
 * JSON, duplicate keys, \u0000, missing fields, another id, FULFILLED
 * without a card, unknown status: last_error, next check with backoff,
 * nothing marked done.
 */

static void
test_faults(void)
{
    answer(500, "Internal Server Error", 1, 0);
    ok(is_fault("HTTP 500"), "500: a fault");

    answer(503, ENV_ERR("SERVICE_DOWN"), 1, 0);
    ok(is_fault("HTTP 503 SERVICE_DOWN"), "503: a fault naming the code");

    answer(502, ENV_ERR("card 1234 5678 stolen"), 1, 0);
    ok(is_fault("HTTP 502"), "a code that is free text is not shown");

    answer(503, ENV_ERR("AB"), 1, 0);
    ok(is_fault("HTTP 503"), "a code of two letters is not shown");

    answer(500, ENV_ERR("SERVICE_DOWN"), 62, 0);
    is_int(out.delay, 20000, "a fault backs off like a check");

    call_failed(OCDZ_CALL_TIMEOUT, 28, "Operation timed out after 15000 "
                "milliseconds with 0 bytes received");
    ok(is_fault("timed out (Operation timed out after 15000 milliseconds "
                "with 0 bytes received)"), "timeout: a fault");

    call_failed(OCDZ_CALL_FAILED, 7, "Failed to connect to 127.0.0.1 port "
                "1: Connection refused");
    ok(is_fault("Failed to connect to 127.0.0.1 port 1: Connection refused "
                "(curl 7)"), "connection refused: a fault");

    call_failed(OCDZ_CALL_FAILED, 35, NULL);
    ok(is_fault("failed (curl 35)"), "TLS error without a message: a fault");

    call_failed(OCDZ_CALL_FAILED, 35, "bad \x01 \xff");
    ok(is_fault("bad ? ? (curl 35)"), "a message that is not text is made "
       "text");

    call_failed(OCDZ_CALL_OVERSIZED, 23, "Failure writing output");
    ok(is_fault("oversized reply (HTTP 200, over 65536 bytes)"),
       "oversized reply: a fault");

    answer(200, "{\"success\":true,", 1, 0);
    ok(out.write == OCDZ_WRITE_FAULT
       && strncmp(out.error, "unusable reply: ", 16) == 0,
       "truncated JSON: unusable reply");

    answer(200, "{\"success\":true,\"success\":true}", 1, 0);
    ok(out.write == OCDZ_WRITE_FAULT
       && strncmp(out.error, "unusable reply: ", 16) == 0,
       "duplicate keys: unusable reply");

    answer(200, ENV_OK(ORDER("FULFILLED") ",\"card_code\":\"12\\u000034\"}"),
           1, 0);
    ok(out.write == OCDZ_WRITE_FAULT
       && strncmp(out.error, "unusable reply: ", 16) == 0,
       "\\u0000: unusable reply");

    answer(200, "{\"data\":" ORDER("FULFILLED") ",\"card_code\":\"1\"}}",
           1, 0);
    ok(is_fault("reply without \"success\": true"), "no success: a fault");

    answer(200, "{\"success\":true}", 1, 0);
    ok(is_fault("reply without \"data\""), "no data: a fault");

    answer(200, ENV_OK("{\"_id\":\"" OTHER "\",\"status\":\"FULFILLED\","
                       "\"card_code\":\"1\"}"), 1, 0);
    ok(is_fault("the reply is about another order"),
       "another id: a fault, nothing stored");

    answer(200, ENV_OK("{\"status\":\"FULFILLED\",\"card_code\":\"1\"}"),
           1, 0);
    ok(is_fault("FULFILLED reply without data._id"),
       "FULFILLED without _id: a fault");

    answer(200, ENV_OK("{\"status\":\"REFUNDED\"}"), 1, 0);
    ok(is_fault("REFUNDED reply without data._id"),
       "REFUNDED without _id: a fault");

    answer(200, ENV_OK("{\"status\":\"HANDLING\"}"), 1, 0);
    is_int(out.write, OCDZ_WRITE_PROGRESS,
           "HANDLING without _id: progress (nothing final)");

    answer(200, ENV_OK(ORDER("FULFILLED") "}"), 1, 0);
    ok(is_fault("FULFILLED without card_code: upstream error, checked "
                "again"), "FULFILLED without a card: a fault");

    answer(200, ENV_OK(ORDER("FULFILLED") ",\"card_code\":\"\"}"), 1, 0);
    ok(is_fault("FULFILLED without card_code: upstream error, checked "
                "again"), "FULFILLED with an empty card: a fault");

    answer(200, ENV_OK(ORDER("SHIPPED") "}"), 1, 0);
    ok(is_fault("unknown status in the reply"), "unknown status: a fault");

    answer(200, ENV_OK("{\"_id\":\"" ID "\"}"), 1, 0);
    ok(is_fault("reply without data.status"), "no status: a fault");

    check_init(1, 0);
    ocdz_transition_fault(&conf, &in, &out, "could not encrypt the card "
                          "(%s)", "no key");
    ok(is_fault("could not encrypt the card (no key)"),
       "a fault the poller decides");
}


/* orders claimed ahead during a pause: given back, not checked */

static void
test_paused(void)
{
    ocdz_transition_paused(&out);
    is_int(out.write, OCDZ_WRITE_RELEASE, "paused: the lease back");
    is_int(out.pause, 0, "paused: no new pause");
    is_str(out.error, "checks paused", "paused: last_error");
}


static void
test_names(void)
{
    is_str(ocdz_write_str(OCDZ_WRITE_PROGRESS), "progress", "name: progress");
    is_str(ocdz_write_str(OCDZ_WRITE_RELEASE), "release", "name: release");
    is_str(ocdz_write_str(OCDZ_WRITE_COUNT), "invalid", "name: invalid");
}


/* failures every check meets: the caller logs them once (ocdz_alarm) */

static void
test_alarms(void)
{
    call_failed(OCDZ_CALL_FAILED, 60, "SSL certificate problem: "
                "self-signed certificate");
    is_int(out.alarm, OCDZ_ALARM_API_TLS, "curl 60: a TLS alarm");
    is_int(out.write, OCDZ_WRITE_FAULT, "curl 60: still the order's fault "
           "(retried)");

    call_failed(OCDZ_CALL_FAILED, 6, "Could not resolve host: x");
    is_int(out.alarm, OCDZ_ALARM_API_DNS, "curl 6: a DNS alarm");

    call_failed(OCDZ_CALL_FAILED, 7, "Failed to connect");
    is_int(out.alarm, OCDZ_ALARM_API_REFUSED, "curl 7: a refused alarm");

    call_failed(OCDZ_CALL_TIMEOUT, 28, "Operation timed out");
    is_int(out.alarm, OCDZ_ALARM_API_TIMEOUT, "timeout: a timeout alarm");

    call_failed(OCDZ_CALL_FAILED, 56, "Recv failure");
    is_int(out.alarm, OCDZ_ALARM_NONE, "curl 56: one call's, no alarm");

    answer(403, ENV_ERR("IP_NOT_ALLOWED"), 1, 0);
    is_int(out.alarm, OCDZ_ALARM_API_AUTH, "403: an access alarm");

    answer(401, ENV_ERR("INVALID_TOKEN"), 1, 0);
    is_int(out.alarm, OCDZ_ALARM_API_AUTH, "401, one token: an access "
           "alarm");

    answer(401, ENV_ERR("INVALID_TOKEN"), 1, 0);
    in.has_secondary = 1;
    ocdz_transition(&conf, &in, &out);
    is_int(out.alarm, OCDZ_ALARM_NONE, "401 with a secondary left: no "
           "alarm (the switch is logged)");

    answer(500, "oops", 1, 0);
    is_int(out.alarm, OCDZ_ALARM_NONE, "500: one check's, no alarm");

    answer(429, ENV_ERR("RATE_LIMITED"), 1, 0);
    is_int(out.alarm, OCDZ_ALARM_NONE, "429: no alarm");
}


int
main(void)
{
    test_fulfilled();
    test_progress();
    test_queued();
    test_unknown_error();
    test_refunded();
    test_not_found();
    test_unauthorized();
    test_pauses();
    test_rate_limit();
    test_faults();
    test_paused();
    test_names();
    test_alarms();

    ocdz_upstream_reply_wipe(&reply);

    return done_testing();
}
