/*
 * Unit tests of ocdz_upstream: OneClickDz replies parsed into the
 * reply struct, and every way a reply is refused.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_upstream.h"


static ocdz_upstream_reply_t  r;
static char                   err[256];


static int
parse(const char *body)
{
    return ocdz_upstream_parse((const unsigned char *) body, strlen(body),
                               &r, err, sizeof(err));
}


static int
parse_n(const char *body, size_t len)
{
    return ocdz_upstream_parse((const unsigned char *) body, len, &r, err,
                               sizeof(err));
}


static int
all_zero(const void *p, size_t n)
{
    const unsigned char  *c = p;

    while (n--) {
        if (*c++ != 0) {
            return 0;
        }
    }

    return 1;
}


/* {"a":[[...]]} with n arrays: n + 1 levels */

static const char *
deep(size_t n)
{
    size_t       i;
    static char  buf[20100];

    if (n > 10000) {
        n = 10000;
    }

    memcpy(buf, "{\"a\":", 5);

    for (i = 0; i < n; i++) {
        buf[5 + i] = '[';
        buf[5 + n + i] = ']';
    }

    buf[5 + 2 * n] = '}';
    buf[6 + 2 * n] = '\0';

    return buf;
}


/* {"a":{"a":...{}...}}: n levels of objects */

static const char *
deep_obj(size_t n)
{
    size_t       i, o;
    static char  buf[1024];

    o = 0;

    for (i = 1; i < n && o < 900; i++) {
        memcpy(buf + o, "{\"a\":", 5);
        o += 5;
    }

    buf[o++] = '{';

    for (i = 0; i < n; i++) {
        buf[o++] = '}';
    }

    buf[o] = '\0';

    return buf;
}


static void
test_sample_fulfilled(void)
{
    /* the reply of GET /v3/internet/check-id/{id} from the docs */
    static const char  *body =
        "{\"success\":true,\"data\":{\"_id\":\"6901616fe9e88196b4eb64b2\","
        "\"ref\":\"internet-order-001\",\"status\":\"FULFILLED\",\n"
        " \"type\":\"ADSL\",\"number\":\"036362608\",\"topup_amount\":1000,"
        "\"card_code\":\"123456789012\",\n"
        " \"num_trans\":\"AT-2025-12345\","
        "\"date_traitement\":\"2025-10-29T01:05:30.000Z\","
        "\"created_at\":\"2025-10-29T01:00:00.000Z\"}}";

    is_int(parse(body), OCDZ_UP_OK, "sample FULFILLED reply parses");
    is_int(r.success, 1, "success true");
    is_int(r.has_data, 1, "has data");
    is_int(r.has_error, 0, "no error object");
    is_str(r.id, "6901616fe9e88196b4eb64b2", "data._id");
    is_str(r.ref, "internet-order-001", "data.ref");
    is_str(r.status_str, "FULFILLED", "data.status as text");
    is_int(r.status, OCDZ_ST_FULFILLED, "status FULFILLED");
    is_str(r.type, "ADSL", "data.type");
    is_str(r.number, "036362608", "data.number keeps its leading 0");
    is_int(r.topup_amount, 1000, "data.topup_amount");
    is_str(r.card_code, "123456789012", "data.card_code");
    is_int(r.card_code_len, 12, "card_code_len");
    is_int(r.has_card_code, 1, "has_card_code");
    is_str(r.num_trans, "AT-2025-12345", "data.num_trans");
    is_str(r.date_traitement, "2025-10-29T01:05:30.000Z",
           "data.date_traitement");
    is_str(r.created_at, "2025-10-29T01:00:00.000Z", "data.created_at");
    is_str(r.refund_message, "", "no refund_message");
    is_int(r.status_code, 0, "no statusCode");
    is_str(r.error_code, "", "no error code");
    is_str(err, "", "no error text on success");

    ok(ocdz_topup_id_valid(r.id, strlen(r.id)), "the _id is a top-up id");

    ocdz_upstream_reply_wipe(&r);
    ok(all_zero(&r, sizeof(r)), "wipe zeroes the whole struct");
}


static void
test_pending(void)
{
    static const char  *body =
        "{\"success\":true,\"data\":{\"_id\":\"6901616fe9e88196b4eb64b2\","
        "\"ref\":\"internet-order-001\",\"status\":\"HANDLING\","
        "\"type\":\"4GLTE\",\"number\":\"213472731602\","
        "\"topup_amount\":500,"
        "\"created_at\":\"2025-10-29T01:00:00.000Z\"},"
        "\"meta\":{\"timestamp\":\"2025-10-29T00:00:00.000Z\"},"
        "\"requestId\":\"req_abc\"}";

    is_int(parse(body), OCDZ_UP_OK, "pending reply parses");
    is_int(r.status, OCDZ_ST_HANDLING, "status HANDLING");
    is_int(r.has_card_code, 0, "no card code yet");
    is_int(r.card_code_len, 0, "card_code_len 0");
    is_str(r.card_code, "", "card_code empty");
    is_str(r.num_trans, "", "no num_trans yet");
    is_str(r.date_traitement, "", "no date_traitement yet");
    is_str(r.type, "4GLTE", "type 4GLTE");
    is_int(r.topup_amount, 500, "amount 500");

    /* a pending order whose card fields are null */
    is_int(parse("{\"success\":true,\"data\":{\"status\":\"QUEUED\","
                 "\"card_code\":null,\"num_trans\":null,"
                 "\"topup_amount\":null}}"),
           OCDZ_UP_OK, "null card fields parse");
    is_int(r.status, OCDZ_ST_QUEUED, "status QUEUED");
    is_int(r.has_card_code, 0, "null card_code: no card");
    is_int(r.topup_amount, -1, "null topup_amount: absent");

    is_int(parse("{\"success\":true,\"data\":{\"status\":\"FULFILLED\","
                 "\"card_code\":\"\"}}"),
           OCDZ_UP_OK, "empty card_code parses");
    is_int(r.has_card_code, 0, "empty card_code is no card");

    is_int(parse("{\"data\":{\"topup_amount\":\"1500\"}}"), OCDZ_UP_OK,
           "topup_amount as a numeric string");
    is_int(r.topup_amount, 1500, "numeric string amount read");
    is_int(r.success, -1, "success absent");
    is_int(r.status, OCDZ_ST_NONE, "status absent");
}


static void
test_statuses(void)
{
    static const struct {
        const char     *s;
        ocdz_status_e   st;
    } cases[] = {
        { "PENDING", OCDZ_ST_PENDING },
        { "HANDLING", OCDZ_ST_HANDLING },
        { "QUEUED", OCDZ_ST_QUEUED },
        { "UNKNOWN_ERROR", OCDZ_ST_UNKNOWN_ERROR },
        { "FULFILLED", OCDZ_ST_FULFILLED },
        { "REFUNDED", OCDZ_ST_REFUNDED },
        { "fulfilled", OCDZ_ST_OTHER },
        { "FULFILLED ", OCDZ_ST_OTHER },
        { "CANCELLED", OCDZ_ST_OTHER },
        { "REFUND", OCDZ_ST_OTHER }
    };

    char    body[256], name[128];
    size_t  i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(body, sizeof(body),
                 "{\"success\":true,\"data\":{\"status\":\"%s\"}}",
                 cases[i].s);
        snprintf(name, sizeof(name), "status \"%s\"", cases[i].s);

        is_int(parse(body), OCDZ_UP_OK, name);
        is_int(r.status, cases[i].st, name);
        is_int(ocdz_status_from_str(cases[i].s, strlen(cases[i].s)),
               cases[i].st, "ocdz_status_from_str agrees");
    }

    is_int(ocdz_status_from_str("", 0), OCDZ_ST_NONE, "empty status: none");
    is_int(ocdz_status_from_str("FULFILLEDX", 9), OCDZ_ST_FULFILLED,
           "status_from_str honours len");
    is_str(ocdz_status_str(OCDZ_ST_REFUNDED), "REFUNDED", "status_str");
    is_str(ocdz_status_str(OCDZ_ST_UNKNOWN_ERROR), "UNKNOWN_ERROR",
           "status_str UNKNOWN_ERROR");
    is_str(ocdz_status_str((ocdz_status_e) 99), "invalid",
           "status_str out of range");

    is_int(parse("{\"success\":true,\"data\":{\"status\":\"\"}}"),
           OCDZ_UP_OK, "empty status parses");
    is_int(r.status, OCDZ_ST_NONE, "empty status is none");
}


static void
test_errors(void)
{
    is_int(parse("{\"success\":false,\"error\":{\"code\":"
                 "\"INVALID_ACCESS_TOKEN\",\"message\":\"Invalid API key\","
                 "\"details\":{}},\"requestId\":\"req_1\"}"),
           OCDZ_UP_OK, "401 envelope parses");
    is_int(r.success, 0, "success false");
    is_int(r.has_error, 1, "has_error");
    is_int(r.has_data, 0, "no data");
    is_str(r.error_code, "INVALID_ACCESS_TOKEN", "401 code");
    is_str(r.error_message, "Invalid API key", "401 message");

    is_int(parse("{\"success\":false,\"error\":{\"code\":\"NOT_FOUND\","
                 "\"message\":\"Top-up not found\",\"details\":"
                 "{\"id\":\"x\",\"nested\":[1,{\"a\":[]}]}}}"),
           OCDZ_UP_OK, "404 envelope parses");
    is_str(r.error_code, "NOT_FOUND", "404 code");
    is_str(r.error_message, "Top-up not found", "404 message");

    is_int(parse("{\"success\":false,\"error\":{\"code\":"
                 "\"RATE_LIMIT_EXCEEDED\",\"message\":\"Too many\"}}"),
           OCDZ_UP_OK, "429 envelope parses");
    is_str(r.error_code, "RATE_LIMIT_EXCEEDED", "429 code");

    is_int(parse("{\"message\":\"Cannot GET /v3/nope\",\"error\":"
                 "\"Not Found\",\"statusCode\":404}"),
           OCDZ_UP_OK, "bare framework 404 parses");
    is_int(r.has_error, 0, "bare body: has_error 0");
    is_str(r.error_code, "Not Found", "bare body: error string");
    is_str(r.error_message, "Cannot GET /v3/nope", "bare body: message");
    is_int(r.status_code, 404, "bare body: statusCode");
    is_int(r.success, -1, "bare body: no success");

    is_int(parse("{\"statusCode\":4040}"), OCDZ_UP_ERR_SHAPE,
           "statusCode out of range refused");
    is_int(parse("{\"statusCode\":\"404\"}"), OCDZ_UP_ERR_SHAPE,
           "statusCode as string refused");
}


static void
test_refusals(void)
{
    char   *big;
    size_t  i, n;

    is_int(parse("{\"success\":true,\"success\":false}"),
           OCDZ_UP_ERR_DUPLICATE, "duplicate top-level key refused");
    ok(strstr(err, "duplicate") != NULL, "duplicate: reason says so");
    is_int(r.success, -1, "refused reply is cleared");

    is_int(parse("{\"data\":{\"card_code\":\"111\",\"card_code\":\"222\"}}"),
           OCDZ_UP_ERR_DUPLICATE, "duplicate key in data refused");
    is_str(r.card_code, "", "no card code left after a refusal");
    ok(strstr(err, "111") == NULL && strstr(err, "222") == NULL,
       "reason does not quote the body");

    is_int(parse("{\"data\":{\"status\":\"PENDING\","
                 "\"st\\u0061tus\":\"FULFILLED\"}}"),
           OCDZ_UP_ERR_DUPLICATE, "duplicate key through an escape refused");
    is_int(parse("{\"data\":{},\"data\":{}}"), OCDZ_UP_ERR_DUPLICATE,
           "data twice refused");
    is_int(parse("{\"meta\":{\"a\":1,\"a\":2}}"), OCDZ_UP_ERR_DUPLICATE,
           "duplicate key in a skipped object refused");
    is_int(parse("{\"meta\":[{\"a\":1},{\"a\":2}],\"x\":{\"a\":1}}"),
           OCDZ_UP_OK, "same key in different objects is fine");
    is_int(parse("{\"error\":{\"code\":\"A\",\"code\":\"B\"}}"),
           OCDZ_UP_ERR_DUPLICATE, "duplicate key in error refused");

    is_int(parse("{\"data\":{\"card_code\":\"12\\u00003\"}}"),
           OCDZ_UP_ERR_NUL, "NUL in card_code refused");
    is_int(parse("{\"data\":{\"zzz\":\"a\\u0000\"}}"), OCDZ_UP_ERR_NUL,
           "NUL in an unknown field refused");
    is_int(parse("{\"da\\u0000ta\":{}}"), OCDZ_UP_ERR_NUL,
           "NUL in a key refused");

    is_int(parse("{\"data\":{\"card_code\":123456789012}}"),
           OCDZ_UP_ERR_SHAPE, "card_code as a number refused");
    ok(strstr(err, "data.card_code") != NULL, "shape reason names the field");
    ok(strstr(err, "123456789012") == NULL, "shape reason quotes nothing");
    is_int(parse("{\"data\":{\"status\":[\"FULFILLED\"]}}"),
           OCDZ_UP_ERR_SHAPE, "status as an array refused");
    is_int(parse("{\"data\":{\"ref\":{}}}"), OCDZ_UP_ERR_SHAPE,
           "ref as an object refused");
    is_int(parse("{\"success\":\"true\"}"), OCDZ_UP_ERR_SHAPE,
           "success as a string refused");
    is_int(parse("{\"success\":1}"), OCDZ_UP_ERR_SHAPE,
           "success as a number refused");
    is_int(parse("{\"data\":[]}"), OCDZ_UP_ERR_SHAPE,
           "data as an array refused");
    is_int(parse("{\"data\":\"x\"}"), OCDZ_UP_ERR_SHAPE,
           "data as a string refused");
    is_int(parse("{\"data\":null}"), OCDZ_UP_OK, "data null is absent");
    is_int(r.has_data, 0, "data null: has_data 0");
    is_int(parse("{\"error\":42}"), OCDZ_UP_ERR_SHAPE,
           "error as a number refused");
    is_int(parse("{\"data\":{\"topup_amount\":-5}}"), OCDZ_UP_ERR_SHAPE,
           "negative amount refused");
    is_int(parse("{\"data\":{\"topup_amount\":10.5}}"), OCDZ_UP_ERR_SHAPE,
           "fractional amount refused");
    is_int(parse("{\"data\":{\"topup_amount\":\"12a\"}}"), OCDZ_UP_ERR_SHAPE,
           "non-numeric amount string refused");
    is_int(parse("{\"data\":{\"topup_amount\":true}}"), OCDZ_UP_ERR_SHAPE,
           "boolean amount refused");
    is_int(parse("{\"data\":{\"topup_amount\":1e400}}"), OCDZ_UP_ERR_SHAPE,
           "huge amount refused");

    is_int(parse("[]"), OCDZ_UP_ERR_SHAPE, "top-level array refused");
    is_int(parse("\"x\""), OCDZ_UP_ERR_SHAPE, "top-level string refused");
    is_int(parse("42"), OCDZ_UP_ERR_SHAPE, "top-level number refused");
    is_int(parse("null"), OCDZ_UP_ERR_SHAPE, "top-level null refused");
    is_int(parse("true"), OCDZ_UP_ERR_SHAPE, "top-level boolean refused");

    is_int(parse(""), OCDZ_UP_ERR_SYNTAX, "empty body refused");
    is_int(parse("   "), OCDZ_UP_ERR_SYNTAX, "blank body refused");
    is_int(parse("{\"success\":true,\"data\":{\"status\":\"FULF"),
           OCDZ_UP_ERR_SYNTAX, "truncated JSON refused");
    is_int(parse("{\"success\":true"), OCDZ_UP_ERR_SYNTAX,
           "unclosed object refused");
    is_int(parse("{\"success\":true} x"), OCDZ_UP_ERR_SYNTAX,
           "trailing garbage refused");
    is_int(parse("{\"success\":true}{}"), OCDZ_UP_ERR_SYNTAX,
           "a second value refused");
    is_int(parse("{\"success\":true}\n"), OCDZ_UP_OK,
           "trailing white space is fine");
    is_int(parse("{\"a\":1,}"), OCDZ_UP_ERR_SYNTAX, "trailing comma refused");
    is_int(parse("{/* c */\"a\":1}"), OCDZ_UP_ERR_SYNTAX, "comments refused");
    is_int(parse("{'a':1}"), OCDZ_UP_ERR_SYNTAX, "single quotes refused");
    is_int(parse("{\"data\":{\"card_code\":\"\xff\xfe\"}}"),
           OCDZ_UP_ERR_SYNTAX, "invalid UTF-8 refused");
    ok(strstr(err, "\xff") == NULL, "syntax reason quotes nothing");
    ok(strncmp(err, "invalid JSON", 12) == 0, "syntax reason");

    is_int(parse_n("{\"a\":1}\0", 8), OCDZ_UP_ERR_SYNTAX,
           "raw NUL after the value refused");

    /* depth: 16 levels are fine, 17 are not */
    is_int(parse(deep(OCDZ_UPSTREAM_DEPTH_MAX - 1)), OCDZ_UP_OK,
           "16 levels parse");
    is_int(parse(deep(OCDZ_UPSTREAM_DEPTH_MAX)), OCDZ_UP_ERR_TOO_BIG,
           "17 levels refused");
    ok(strstr(err, "deep") != NULL, "depth reason");
    is_int(parse(deep(10000)), OCDZ_UP_ERR_TOO_BIG,
           "10001 levels refused");
    is_int(parse(deep_obj(OCDZ_UPSTREAM_DEPTH_MAX)), OCDZ_UP_OK,
           "16 levels of objects parse");
    is_int(parse(deep_obj(OCDZ_UPSTREAM_DEPTH_MAX + 1)), OCDZ_UP_ERR_TOO_BIG,
           "17 levels of objects refused");

    big = malloc(OCDZ_UPSTREAM_BODY_MAX + 2);

    if (big != NULL) {
        /* exactly the cap: parses; one byte more: refused */
        memset(big, ' ', OCDZ_UPSTREAM_BODY_MAX + 1);
        memcpy(big, "{\"a\":1}", 7);

        is_int(parse_n(big, OCDZ_UPSTREAM_BODY_MAX), OCDZ_UP_OK,
               "body at the cap parses");
        is_int(parse_n(big, OCDZ_UPSTREAM_BODY_MAX + 1), OCDZ_UP_ERR_TOO_BIG,
               "body over the cap refused");

        /* many distinct keys: the key set copes */
        n = 0;
        big[n++] = '{';

        for (i = 0; n + 16 < OCDZ_UPSTREAM_BODY_MAX; i++) {
            n += snprintf(big + n, 16, "\"%zx\":0,", i);
        }

        big[n - 1] = '}';

        is_int(parse_n(big, n), OCDZ_UP_OK, "thousands of keys parse");

        /* the same with one key repeated at the very end */
        memcpy(big + n - 1, ",\"0\":1}", 7);
        n += 6;

        is_int(parse_n(big, n), OCDZ_UP_ERR_DUPLICATE,
               "a late duplicate among thousands is found");

        free(big);
    }
}


static void
test_lengths(void)
{
    char  body[4096], field[2048];

    /* card_code: 128 bytes fit, 129 do not */
    memset(field, '7', OCDZ_UP_CARD_MAX);
    field[OCDZ_UP_CARD_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"card_code\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_OK, "card_code at its cap parses");
    is_int(r.card_code_len, OCDZ_UP_CARD_MAX, "card_code_len at the cap");
    is_int(strlen(r.card_code), OCDZ_UP_CARD_MAX, "card_code terminated");

    memset(field, '7', OCDZ_UP_CARD_MAX + 1);
    field[OCDZ_UP_CARD_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"card_code\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG, "card_code over its cap refused");
    ok(strstr(err, "card_code") != NULL && strstr(err, "777") == NULL,
       "too-long reason names the field only");

    memset(field, 'a', OCDZ_UP_ID_MAX + 1);
    field[OCDZ_UP_ID_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"_id\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG, "_id over its cap refused");

    memset(field, 'a', OCDZ_UP_SHORT_MAX + 1);
    field[OCDZ_UP_SHORT_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"status\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG, "status over its cap refused");
    snprintf(body, sizeof(body), "{\"error\":{\"code\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG, "error.code over its cap refused");
    snprintf(body, sizeof(body), "{\"error\":\"%s\"}", field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG, "bare error over its cap refused");
    snprintf(body, sizeof(body), "{\"meta\":{\"status\":\"%s\"}}", field);
    is_int(parse(body), OCDZ_UP_OK, "long value in a skipped object is fine");

    memset(field, 'm', OCDZ_UP_TEXT_MAX + 1);
    field[OCDZ_UP_TEXT_MAX + 1] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"refund_message\":\"%s\"}}",
             field);
    is_int(parse(body), OCDZ_UP_ERR_TOO_BIG,
           "refund_message over its cap refused");
    field[OCDZ_UP_TEXT_MAX] = '\0';
    snprintf(body, sizeof(body), "{\"data\":{\"refund_message\":\"%s\"}}",
             field);
    is_int(parse(body), OCDZ_UP_OK, "refund_message at its cap parses");

    /* an escaped card code comes out decoded */
    is_int(parse("{\"data\":{\"card_code\":\"12\\\"34\\\\56\\u0041\"}}"),
           OCDZ_UP_OK, "escaped card code parses");
    is_str(r.card_code, "12\"34\\56A", "escapes decoded");
    is_int(r.card_code_len, 9, "decoded length");
}


static void
test_arabic(void)
{
    /* "تم استرجاع المبلغ" and a mix of scripts, as UTF-8 and escaped */
    static const char  *msg =
        "\xd8\xaa\xd9\x85 \xd8\xa7\xd8\xb3\xd8\xaa\xd8\xb1\xd8\xac\xd8\xa7"
        "\xd8\xb9 \xd8\xa7\xd9\x84\xd9\x85\xd8\xa8\xd9\x84\xd8\xba "
        "- Montant rembours\xc3\xa9 \xf0\x9f\x92\xb3";
    char  body[512];

    snprintf(body, sizeof(body), "{\"success\":true,\"data\":{\"status\":"
             "\"REFUNDED\",\"refund_message\":\"%s\"}}", msg);

    is_int(parse(body), OCDZ_UP_OK, "refunded reply parses");
    is_int(r.status, OCDZ_ST_REFUNDED, "status REFUNDED");
    ok(strcmp(r.refund_message, msg) == 0,
       "Arabic refund_message preserved byte for byte");

    is_int(parse("{\"data\":{\"refund_message\":"
                 "\"\\u062a\\u0645 \\ud83d\\udcb3\"}}"),
           OCDZ_UP_OK, "escaped Arabic parses");
    is_str(r.refund_message, "\xd8\xaa\xd9\x85 \xf0\x9f\x92\xb3",
           "escapes decode to UTF-8");
}


static void
test_topup_id(void)
{
    ok(ocdz_topup_id_valid("690161a3e9e88196b4eb6545", 24), "hex id valid");
    ok(ocdz_topup_id_valid("690161A3E9E88196B4EB6545", 24),
       "uppercase hex id valid");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb654", 23), "23 digits");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb65451", 25), "25 digits");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb654g", 24), "non-hex");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb654 ", 24), "space");
    ok(!ocdz_topup_id_valid("../../../../etc/passwd00", 24), "path");
    ok(!ocdz_topup_id_valid(NULL, 24), "NULL");
    ok(!ocdz_topup_id_valid("", 0), "empty");
}


static void
test_misc(void)
{
    char  small[8];

    /* a short err buffer is still terminated */
    is_int(ocdz_upstream_parse((const unsigned char *) "[", 1, &r, small,
                               sizeof(small)),
           OCDZ_UP_ERR_SHAPE, "short err buffer");
    is_int(strlen(small), sizeof(small) - 1, "short err terminated");

    is_int(ocdz_upstream_parse((const unsigned char *) "{}", 2, &r, NULL, 0),
           OCDZ_UP_OK, "NULL err buffer");
    is_int(r.success, -1, "empty object: success absent");
    is_int(r.topup_amount, -1, "empty object: amount absent");

    /* only top-level data counts, not a nested one */
    is_int(parse("{\"meta\":{\"data\":{\"card_code\":\"x\"}}}"), OCDZ_UP_OK,
           "nested data parses");
    is_int(r.has_data, 0, "nested data is not data");
    is_int(r.has_card_code, 0, "nested card_code ignored");

    is_int(parse("{\"data\":{\"x\":{\"card_code\":\"x\","
                 "\"status\":\"FULFILLED\"}}}"),
           OCDZ_UP_OK, "data.x parses");
    is_int(r.has_card_code, 0, "data.x.card_code ignored");
    is_int(r.status, OCDZ_ST_NONE, "data.x.status ignored");

    is_int(parse("{\"data\":{\"items\":[{\"_id\":\"a\"}],\"_id\":\"b\"}}"),
           OCDZ_UP_OK, "data after an array parses");
    is_str(r.id, "b", "data._id after a nested array");
}


int
main(void)
{
    test_sample_fulfilled();
    test_pending();
    test_statuses();
    test_errors();
    test_refusals();
    test_lengths();
    test_arabic();
    test_topup_id();
    test_misc();

    return done_testing();
}
