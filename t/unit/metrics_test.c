/*
 * Unit tests of ocdz_metrics: bucket lookup, label escaping, and both
 * renderings of a snapshot (the length asked first equals the text,
 * a cut buffer stays NUL-free past its size, cumulative buckets).
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_metrics.h"


static char *
render(size_t (*fn)(const ocdz_metrics_t *, const ocdz_metrics_build_t *,
    char *, size_t), const ocdz_metrics_t *m, const ocdz_metrics_build_t *b)
{
    char    *p;
    size_t   n, n2;

    n = fn(m, b, NULL, 0);
    p = malloc(n + 1);
    n2 = fn(m, b, p, n + 1);

    ok(n == n2 && strlen(p) == n, "length asked first is the text's");

    return p;
}


int
main(void)
{
    char                  buf[64], small[16], *p;
    size_t                n;
    ocdz_metrics_t        m;
    ocdz_metrics_build_t  b;

    is_int(ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                               OCDZ_M_REVEAL_BUCKETS, 0), 0, "0 us: first");
    is_int(ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                               OCDZ_M_REVEAL_BUCKETS, 1000), 0,
           "a bound is in its own bucket (le)");
    is_int(ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                               OCDZ_M_REVEAL_BUCKETS, 1001), 1,
           "just over a bound: the next");
    is_int(ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                               OCDZ_M_REVEAL_BUCKETS, 99000000),
           OCDZ_M_REVEAL_BUCKETS, "past the last: +Inf");
    is_int(ocdz_metrics_bucket(ocdz_metrics_batch_bounds,
                               OCDZ_M_BATCH_BUCKETS, 3), 2, "batch of 3: le 4");

    is_int(ocdz_metrics_class(0), 0, "no answer: none");
    is_int(ocdz_metrics_class(204), 2, "204: 2xx");
    is_int(ocdz_metrics_class(503), 5, "503: 5xx");
    is_int(ocdz_metrics_class(999), 0, "999: none");
    is_int(ocdz_metrics_pause_reason(429), OCDZ_M_PAUSE_RATE, "429: rate");
    is_int(ocdz_metrics_pause_reason(403), OCDZ_M_PAUSE_ACCESS, "403");
    is_int(ocdz_metrics_pause_reason(302), OCDZ_M_PAUSE_REDIRECT, "302");

    is_int(ocdz_metrics_result("ORDER_NOT_FOUND", 15), 5, "result index");
    is_int(ocdz_metrics_result("ORDER_NOT_FOUN", 14), -1, "prefix: none");
    is_int(ocdz_metrics_result("INTERNAL_ERROR", 14), OCDZ_M_RESULTS - 1,
           "last result");

    n = ocdz_metrics_escape(buf, sizeof(buf), "a\"b\\c\nd");
    ok(n == 10 && strcmp(buf, "a\\\"b\\\\c\\nd") == 0, "escaped");
    n = ocdz_metrics_escape(small, 4, "a\"bcdef");
    ok(n == 8 && strlen(small) == 3, "cut escape: NUL-terminated");
    n = ocdz_metrics_escape(small, 3, "a\"b");
    ok(n == 4 && strcmp(small, "a") == 0, "a cut never splits an escape");

    memset(&m, 0, sizeof(m));
    b.version = "0.1.0";
    b.server = "1.22\"x";
    b.schema_version = 1;

    m.reveals[0] = 7;
    m.reveal_hist[0] = 3;
    m.reveal_hist[2] = 4;
    m.reveal_sum_us = 1234567;
    m.checks[3][2] = 2;
    m.paused = 1;
    m.pause_reason = OCDZ_M_PAUSE_RATE;
    m.db_conns[OCDZ_M_CONN_IDLE] = 8;

    p = render(ocdz_metrics_prometheus, &m, &b);

    ok(strstr(p, "# TYPE ocdz_reveals_total counter\n") != NULL, "TYPE");
    ok(strstr(p, "ocdz_reveals_total{result=\"CARD_REVEALED\","
                 "status=\"200\"} 7\n") != NULL, "reveal counter");
    ok(strstr(p, "ocdz_reveal_duration_seconds_bucket{le=\"0.001000\"} 3\n")
       != NULL, "first bucket");
    ok(strstr(p, "ocdz_reveal_duration_seconds_bucket{le=\"0.005000\"} 7\n")
       != NULL, "buckets are cumulative");
    ok(strstr(p, "ocdz_reveal_duration_seconds_bucket{le=\"+Inf\"} 7\n")
       != NULL, "+Inf");
    ok(strstr(p, "ocdz_reveal_duration_seconds_sum 1.234567\n") != NULL,
       "sum in seconds");
    ok(strstr(p, "ocdz_reveal_duration_seconds_count 7\n") != NULL, "count");
    ok(strstr(p, "nginx_version=\"1.22\\\"x\"") != NULL, "label escaped");
    ok(strstr(p, "ocdz_poller_checks_total{outcome=\"fulfilled\","
                 "class=\"2xx\"} 2\n") != NULL, "check counter");
    ok(strstr(p, "ocdz_poller_paused{reason=\"rate_limited\"} 1\n") != NULL,
       "pause with its reason");
    ok(strstr(p, "ocdz_db_connections{state=\"idle\"} 8\n") != NULL, "pool");
    ok(strstr(p, "ocdz_orders_waiting") == NULL, "no backlog yet: absent");
    ok(p[strlen(p) - 1] == '\n', "ends with a newline");
    free(p);

    m.backlog_at = 1700000000;
    m.orders[1] = 5;
    m.paused = 0;
    p = render(ocdz_metrics_prometheus, &m, &b);
    ok(strstr(p, "ocdz_orders_waiting{status=\"HANDLING\"} 5\n") != NULL,
       "backlog");
    ok(strstr(p, "ocdz_poller_paused{reason=\"none\"} 0\n") != NULL,
       "not paused: reason none");
    free(p);

    p = render(ocdz_metrics_json, &m, &b);
    ok(p[0] == '{' && strstr(p, "\"CARD_REVEALED\":7") != NULL, "json");
    ok(strstr(p, "\"nginx_version\":\"1.22\\\"x\"") != NULL, "json escaped");
    ok(strstr(p, "\"HANDLING\":5") != NULL, "json backlog");
    free(p);

    /* the outbox: counters, a histogram by channel, the backlog */

    is_int(ocdz_metrics_channel("sms"), 2, "channel index");
    is_int(ocdz_metrics_channel("fax"), -1, "unknown channel: none");
    is_int(ocdz_metrics_send_outcome("pending"), OCDZ_M_SEND_RETRIED,
           "pending again: retried");
    is_int(ocdz_metrics_send_outcome("skipped"), OCDZ_M_SEND_SKIPPED,
           "skipped");
    is_int(ocdz_metrics_send_outcome("sending"), -1, "not an outcome");

    m.sends[0][OCDZ_M_SEND_SENT] = 3;
    m.sends[2][OCDZ_M_SEND_RETRIED] = 1;
    m.send_hist[2][1] = 1;
    m.send_hist[2][OCDZ_M_SEND_BUCKETS] = 2;
    m.send_sum_us[2] = 40000000;
    m.sending = 4;
    m.waiters = 6;
    m.outbox[1][2] = 9;
    m.outbox_due_age[0] = 12;

    p = render(ocdz_metrics_prometheus, &m, &b);
    ok(strstr(p, "ocdz_outbox_deliveries_total{channel=\"webhook\","
                 "outcome=\"sent\"} 3\n") != NULL, "deliveries counter");
    ok(strstr(p, "ocdz_outbox_deliveries_total{channel=\"sms\","
                 "outcome=\"retried\"} 1\n") != NULL, "retried");
    ok(strstr(p, "# TYPE ocdz_outbox_send_duration_seconds histogram\n")
       != NULL && strstr(p, "# TYPE ocdz_outbox_send_duration_seconds "
                            "histogram\n# TYPE") == NULL,
       "one TYPE for the histogram of every channel");
    ok(strstr(p, "ocdz_outbox_send_duration_seconds_bucket{channel=\"sms\","
                 "le=\"0.010000\"} 1\n") != NULL, "labelled bucket");
    ok(strstr(p, "ocdz_outbox_send_duration_seconds_bucket{channel=\"sms\","
                 "le=\"+Inf\"} 3\n") != NULL, "labelled +Inf");
    ok(strstr(p, "ocdz_outbox_send_duration_seconds_sum{channel=\"sms\"} "
                 "40.000000\n") != NULL, "labelled sum");
    ok(strstr(p, "ocdz_outbox_send_duration_seconds_count{channel=\"sms\"} "
                 "3\n") != NULL, "labelled count");
    ok(strstr(p, "ocdz_outbox_send_duration_seconds_count{channel=\"email\"} "
                 "0\n") != NULL, "every channel, even without sends");
    ok(strstr(p, "ocdz_outbox_sends_in_flight 4\n") != NULL, "in flight");
    ok(strstr(p, "ocdz_card_waiters 6\n") != NULL, "waiters");
    ok(strstr(p, "ocdz_outbox_rows{channel=\"email\",state=\"failed\"} 9\n")
       != NULL, "outbox backlog");
    ok(strstr(p, "ocdz_outbox_oldest_due_age_seconds{channel=\"webhook\"} "
                 "12\n") != NULL, "outbox oldest due");
    free(p);

    p = render(ocdz_metrics_json, &m, &b);
    ok(strstr(p, "\"outbox\":{\"deliveries\":{\"webhook\":{\"sent\":3,")
       != NULL, "json deliveries");
    ok(strstr(p, "\"sms\":{\"buckets\":[") != NULL, "json histogram");
    ok(strstr(p, "\"email\":{\"pending\":0,\"sending\":0,\"failed\":9,")
       != NULL, "json outbox rows");
    ok(strstr(p, "\"card_wait\":{\"waiters\":6}}\n") != NULL,
       "json waiters, and the end");
    free(p);

    m.backlog_at = 0;
    p = render(ocdz_metrics_prometheus, &m, &b);
    ok(strstr(p, "ocdz_outbox_rows") == NULL, "no backlog: no outbox rows");
    free(p);
    p = render(ocdz_metrics_json, &m, &b);
    ok(strstr(p, "\"rows\"") == NULL, "json: no rows either");
    free(p);
    m.backlog_at = 1700000000;

    /* a cut buffer: the length still the whole text's */

    n = ocdz_metrics_prometheus(&m, &b, small, sizeof(small));
    ok(n > sizeof(small) && strlen(small) == sizeof(small) - 1,
       "cut rendering");

    return done_testing();
}
