/*
 * libFuzzer target for ocdz_transition: any reply body with any HTTP
 * status, call outcome, order counters, token and Retry-After, through
 * ocdz_upstream_parse() as the poller does it.
 *
 * The first 16 bytes choose the check (HTTP status, how the call ended,
 * attempts, not_found_count, tokens, Retry-After, the backoff numbers);
 * the rest is the body. Besides crashes it checks the contract: every
 * text is text the database takes, a card is stored only from a 200
 * FULFILLED reply about this order with a card, refunds likewise, only
 * answers that say the client is wrong pause or give the lease back,
 * and delays stay between the interval and the longest backoff.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ocdz_text.h"
#include "ocdz_transition.h"


#define check(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_transition: check failed: %s (line %d)\n", \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define FUZZ_ID  "690161a3e9e88196b4eb6545"


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const long  statuses[] = {
    200, 200, 200, 200, 404, 404, 401, 403, 429, 429, 500, 503, 301, 302,
    307, 400
};


static int
is_text(const char *s, size_t size, unsigned flags)
{
    size_t  len;

    len = strnlen(s, size);

    return len < size && ocdz_text_valid((const unsigned char *) s, len,
                                         flags);
}


static int
about_this_order(const ocdz_upstream_reply_t *r)
{
    return strlen(r->id) == strlen(FUZZ_ID)
           && strncasecmp(r->id, FUZZ_ID, strlen(FUZZ_ID)) == 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                    perr[128];
    uint64_t                lo, hi;
    ocdz_check_t            in;
    ocdz_tr_conf_t          conf;
    ocdz_transition_t       out;
    ocdz_upstream_reply_t   reply;

    if (size < 16) {
        return 0;
    }

    conf.interval = 100 + data[0] * 100;
    conf.queued_interval = 3600000;
    conf.max_backoff = (uint64_t) data[1] * 10000;
    conf.pause = 60000;
    conf.retry_after_max = (uint64_t) data[2] * 1000;
    conf.backoff_after = data[3] % 70;
    conf.not_found_retries = data[4] % 8;

    memset(&in, 0, sizeof(ocdz_check_t));

    in.topup_id = FUZZ_ID;
    in.attempts = (int64_t) (data[5] | (data[6] << 8)) - 100;
    in.not_found = (int64_t) (data[7] % 10) - 1;
    in.token = data[8] & 1;
    in.has_secondary = (data[8] >> 1) & 1;
    in.call = (ocdz_call_e) (data[9] % 6 < 3 ? OCDZ_CALL_ANSWERED
                                             : data[9] % 6 - 2);
    in.call_code = data[10];
    in.call_text = (data[10] & 1) ? "Connection reset by peer" : NULL;
    in.http = (data[11] & 0x80) ? (long) data[11] * 7 - 900
                                : statuses[data[11] % 16];
    in.retry_after = (data[12] & 1) ? -1 : (int64_t) data[13] * 37;
    in.retry_at = (data[12] & 2) ? -1 : 1761700000 + (int64_t) data[14] - 90;
    in.now = 1761700000;

    in.parsed = ocdz_upstream_parse(data + 16, size - 16, &reply, perr,
                                    sizeof(perr));
    in.parse_err = perr;
    in.reply = (data[15] & 1) ? NULL : &reply;

    ocdz_transition(&conf, &in, &out);

    check((unsigned) out.write < OCDZ_WRITE_COUNT);
    check(ocdz_write_str(out.write) != NULL);

    check(is_text(out.error, sizeof(out.error), 0));
    check(is_text(out.reason, sizeof(out.reason), 0));
    check(is_text(out.code, sizeof(out.code), 0));
    check(is_text(out.refund_message, sizeof(out.refund_message),
                  OCDZ_TEXT_LINES));
    check(is_text(out.num_trans, sizeof(out.num_trans), OCDZ_TEXT_LINES));
    check(is_text(out.date, sizeof(out.date), OCDZ_TEXT_LINES));

    /* only a reply about this order, with a card, stores one */

    if (out.write == OCDZ_WRITE_FULFILLED || out.write == OCDZ_WRITE_REFUNDED)
    {
        check(in.call == OCDZ_CALL_ANSWERED && in.http == 200);
        check(in.parsed == OCDZ_UP_OK && in.reply != NULL);
        check(reply.success == 1 && reply.has_data);
        check(about_this_order(&reply));
        check(out.error[0] == '\0' && out.pause == 0);
    }

    if (out.write == OCDZ_WRITE_FULFILLED) {
        check(reply.status == OCDZ_ST_FULFILLED);
        check(reply.has_card_code && reply.card_code_len > 0);
    }

    if (out.write == OCDZ_WRITE_REFUNDED) {
        check(reply.status == OCDZ_ST_REFUNDED);
    }

    if (out.write == OCDZ_WRITE_PROGRESS) {
        check(in.http == 200 && out.error[0] == '\0');
        check(out.status == OCDZ_ST_PENDING || out.status == OCDZ_ST_HANDLING
              || out.status == OCDZ_ST_QUEUED
              || out.status == OCDZ_ST_UNKNOWN_ERROR);
    }

    if (out.write == OCDZ_WRITE_NOT_FOUND) {
        check(in.http == 404 && out.error[0] != '\0');
    }

    /* only answers that say the client is wrong give the lease back */

    if (out.write == OCDZ_WRITE_RELEASE) {
        check(in.call == OCDZ_CALL_ANSWERED);
        check(in.http == 401 || in.http == 403 || in.http == 404
              || in.http == 429 || (in.http >= 300 && in.http < 400));
        check(out.reason[0] != '\0' && out.error[0] != '\0');
        check(out.pause > 0 || in.http == 401
              || (in.http == 429 && conf.retry_after_max < 1000));
        check(out.pause <= conf.pause || out.pause <= conf.retry_after_max
              || out.pause == 1000);

    } else {
        check(out.pause == 0 && out.token == OCDZ_TOKEN_KEEP);
    }

    if (out.write == OCDZ_WRITE_FAULT) {
        check(out.error[0] != '\0');
    }

    /* the next check: between the interval and the longest backoff */

    if (out.write == OCDZ_WRITE_PROGRESS || out.write == OCDZ_WRITE_FAULT
        || out.write == OCDZ_WRITE_NOT_FOUND)
    {
        lo = conf.interval;
        hi = conf.max_backoff > conf.interval ? conf.max_backoff
                                              : conf.interval;

        if (out.write == OCDZ_WRITE_PROGRESS
            && out.status == OCDZ_ST_QUEUED)
        {
            check(out.delay == conf.queued_interval);

        } else {
            check(out.delay >= lo && out.delay <= hi);
        }
    }

    ocdz_upstream_reply_wipe(&reply);

    return 0;
}
