/*
 * The ocdz_status metrics: tables and renderings (ocdz_metrics.h).
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <inttypes.h>

#include "ocdz_metrics.h"


const char  *ocdz_metrics_results[OCDZ_M_RESULTS] = {
    "CARD_REVEALED", "CARD_READY", "PREFLIGHT", "SESSION_REQUIRED",
    "INVALID_TOPUP_ID", "ORDER_NOT_FOUND", "ORDER_NOT_READY",
    "ORDER_REFUNDED", "DELIVERY_FAILED", "METHOD_NOT_ALLOWED",
    "HTTPS_REQUIRED", "SERVICE_UNAVAILABLE", "INTERNAL_ERROR"
};

const unsigned  ocdz_metrics_result_status[OCDZ_M_RESULTS] = {
    200, 200, 204, 401, 400, 404, 409, 410, 500, 405, 403, 503, 500
};

/* in the order of OCDZ_WRITE_* (ocdz_transition.h) */
const char  *ocdz_metrics_outcomes[OCDZ_M_OUTCOMES] = {
    "progress", "fault", "refunded", "fulfilled", "not_found", "released"
};

static const char  *ocdz_metrics_classes[OCDZ_M_CLASSES] = {
    "none", "1xx", "2xx", "3xx", "4xx", "5xx"
};

static const char  *ocdz_metrics_states[OCDZ_M_CONN_STATES] = {
    "idle", "busy", "connecting", "closed", "down"
};

const char  *ocdz_metrics_pause_reasons[OCDZ_M_PAUSE_REASONS] = {
    "none", "redirect", "access_refused", "rate_limited", "bad_url", "other"
};

const char  *ocdz_metrics_order_statuses[OCDZ_M_ORDER_STATUSES] = {
    "PENDING", "HANDLING", "QUEUED", "UNKNOWN_ERROR"
};

const char  *ocdz_metrics_channels[OCDZ_M_CHANNELS] = {
    "webhook", "email", "sms"
};

/* in the order of OCDZ_M_SEND_*, and the states the sender writes */
const char  *ocdz_metrics_send_outcomes[OCDZ_M_SEND_OUTCOMES] = {
    "sent", "retried", "failed", "skipped"
};

static const char  *ocdz_metrics_send_states[OCDZ_M_SEND_OUTCOMES] = {
    "sent", "pending", "failed", "skipped"
};

const char  *ocdz_metrics_outbox_states[OCDZ_M_OUTBOX_STATES] = {
    "pending", "sending", "failed"
};

const uint64_t  ocdz_metrics_reveal_bounds[OCDZ_M_REVEAL_BUCKETS] = {
    1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000, 2500000, 5000000
};

const uint64_t  ocdz_metrics_upstream_bounds[OCDZ_M_UPSTREAM_BUCKETS] = {
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
    15000000, 30000000
};

const uint64_t  ocdz_metrics_batch_bounds[OCDZ_M_BATCH_BUCKETS] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256
};

/* a webhook on a LAN takes milliseconds, an SMTP dialogue seconds */
const uint64_t  ocdz_metrics_send_bounds[OCDZ_M_SEND_BUCKETS] = {
    5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
    10000000, 30000000
};


typedef struct {
    char     *buf;
    size_t    size;
    size_t    len;          /* the whole text's, even past size */
} ocdz_out_t;


static void ocdz_out(ocdz_out_t *o, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;


static void
ocdz_out(ocdz_out_t *o, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    room;
    va_list   args;

    p = NULL;
    room = 0;

    if (o->len < o->size) {
        p = o->buf + o->len;
        room = o->size - o->len;
    }

    va_start(args, fmt);
    n = vsnprintf(p, room, fmt, args);
    va_end(args);

    if (n > 0) {
        o->len += (size_t) n;
    }
}


int
ocdz_metrics_result(const char *name, size_t len)
{
    int  i;

    for (i = 0; i < OCDZ_M_RESULTS; i++) {
        if (strlen(ocdz_metrics_results[i]) == len
            && memcmp(ocdz_metrics_results[i], name, len) == 0)
        {
            return i;
        }
    }

    return -1;
}


int
ocdz_metrics_channel(const char *name)
{
    int  i;

    for (i = 0; i < OCDZ_M_CHANNELS; i++) {
        if (strcmp(ocdz_metrics_channels[i], name) == 0) {
            return i;
        }
    }

    return -1;
}


int
ocdz_metrics_send_outcome(const char *state)
{
    int  i;

    for (i = 0; i < OCDZ_M_SEND_OUTCOMES; i++) {
        if (strcmp(ocdz_metrics_send_states[i], state) == 0) {
            return i;
        }
    }

    return -1;
}


unsigned
ocdz_metrics_bucket(const uint64_t *bounds, unsigned n, uint64_t value)
{
    unsigned  i;

    for (i = 0; i < n; i++) {
        if (value <= bounds[i]) {
            return i;
        }
    }

    return n;
}


unsigned
ocdz_metrics_class(long http)
{
    if (http < 100 || http > 599) {
        return 0;
    }

    return (unsigned) (http / 100);
}


unsigned
ocdz_metrics_pause_reason(long http)
{
    if (http >= 300 && http < 400) {
        return OCDZ_M_PAUSE_REDIRECT;
    }

    switch (http) {
    case 401:
    case 403:
        return OCDZ_M_PAUSE_ACCESS;
    case 429:
        return OCDZ_M_PAUSE_RATE;
    case 404:
        return OCDZ_M_PAUSE_BAD_URL;
    default:
        return OCDZ_M_PAUSE_OTHER;
    }
}


size_t
ocdz_metrics_escape(char *dst, size_t size, const char *s)
{
    char    c, e;
    size_t  n, w, k;
    int     full;

    n = 0;
    w = 0;
    full = 0;

    for ( /* void */ ; *s; s++) {
        c = *s;
        e = (c == '\\') ? '\\' : (c == '"') ? '"' : (c == '\n') ? 'n' : 0;
        k = e ? 2 : 1;

        /* a cut never splits an escape: a lone \ would escape the " */

        if (!full && w + k < size) {
            if (e) {
                dst[w++] = '\\';
                c = e;
            }

            dst[w++] = c;

        } else {
            full = 1;
        }

        n += k;
    }

    if (size) {
        dst[w] = '\0';
    }

    return n;
}


/* microseconds as seconds, exactly */

static void
ocdz_out_us(ocdz_out_t *o, uint64_t us)
{
    ocdz_out(o, "%" PRIu64 ".%06" PRIu64, us / 1000000, us % 1000000);
}


static void
ocdz_head(ocdz_out_t *o, const char *name, const char *type,
    const char *help)
{
    ocdz_out(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


/* a histogram's samples; labels: "" or 'name="value",' */

static void
ocdz_hist_samples(ocdz_out_t *o, const char *name, const char *labels,
    const uint64_t *bounds, unsigned n, const uint64_t *hist, uint64_t sum,
    int seconds)
{
    unsigned  i;
    uint64_t  cum;

    cum = 0;

    for (i = 0; i < n; i++) {
        cum += hist[i];
        ocdz_out(o, "%s_bucket{%sle=\"", name, labels);

        if (seconds) {
            ocdz_out_us(o, bounds[i]);
        } else {
            ocdz_out(o, "%" PRIu64, bounds[i]);
        }

        ocdz_out(o, "\"} %" PRIu64 "\n", cum);
    }

    cum += hist[n];

    ocdz_out(o, "%s_bucket{%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, cum);

    /* "channel=\"sms\"," as {channel="sms"} */

    if (labels[0]) {
        ocdz_out(o, "%s_sum{%.*s} ", name, (int) strlen(labels) - 1, labels);

    } else {
        ocdz_out(o, "%s_sum ", name);
    }

    if (seconds) {
        ocdz_out_us(o, sum);
    } else {
        ocdz_out(o, "%" PRIu64, sum);
    }

    if (labels[0]) {
        ocdz_out(o, "\n%s_count{%.*s} %" PRIu64 "\n", name,
                 (int) strlen(labels) - 1, labels, cum);

    } else {
        ocdz_out(o, "\n%s_count %" PRIu64 "\n", name, cum);
    }
}


static void
ocdz_histogram(ocdz_out_t *o, const char *name, const char *help,
    const uint64_t *bounds, unsigned n, const uint64_t *hist, uint64_t sum,
    int seconds)
{
    ocdz_head(o, name, "histogram", help);
    ocdz_hist_samples(o, name, "", bounds, n, hist, sum, seconds);
}


size_t
ocdz_metrics_prometheus(const ocdz_metrics_t *m,
    const ocdz_metrics_build_t *b, char *buf, size_t size)
{
    char        ver[64], nver[64], label[32];
    unsigned    i, j, r;
    ocdz_out_t  o;

    o.buf = buf;
    o.size = size;
    o.len = 0;

    ocdz_metrics_escape(ver, sizeof(ver), b->version);
    ocdz_metrics_escape(nver, sizeof(nver), b->server);

    ocdz_head(&o, "ocdz_build_info", "gauge",
              "The module's version, nginx's and the database schema "
              "version the module needs; always 1.");
    ocdz_out(&o, "ocdz_build_info{version=\"%s\",nginx_version=\"%s\","
             "schema_version=\"%u\"} 1\n", ver, nver, b->schema_version);

    /* reveals */

    ocdz_head(&o, "ocdz_reveals_total", "counter",
              "Card endpoint requests answered, by result and HTTP status.");

    for (i = 0; i < OCDZ_M_RESULTS; i++) {
        ocdz_out(&o, "ocdz_reveals_total{result=\"%s\",status=\"%u\"} %"
                 PRIu64 "\n", ocdz_metrics_results[i],
                 ocdz_metrics_result_status[i], m->reveals[i]);
    }

    ocdz_histogram(&o, "ocdz_reveal_duration_seconds",
                   "Time from the request to the card endpoint's answer.",
                   ocdz_metrics_reveal_bounds, OCDZ_M_REVEAL_BUCKETS,
                   m->reveal_hist, m->reveal_sum_us, 1);

    ocdz_head(&o, "ocdz_last_reveal_timestamp_seconds", "gauge",
              "When a card was last revealed (Unix time), 0: never.");
    ocdz_out(&o, "ocdz_last_reveal_timestamp_seconds %" PRIu64 "\n",
             m->last_reveal);

    /* the database pool */

    ocdz_head(&o, "ocdz_db_connections", "gauge",
              "Database connections of all workers, by state.");

    for (i = 0; i < OCDZ_M_CONN_STATES; i++) {
        ocdz_out(&o, "ocdz_db_connections{state=\"%s\"} %" PRIu64 "\n",
                 ocdz_metrics_states[i], m->db_conns[i]);
    }

    ocdz_head(&o, "ocdz_db_queue_depth", "gauge",
              "Queries waiting for a database connection, all workers.");
    ocdz_out(&o, "ocdz_db_queue_depth %" PRIu64 "\n", m->db_queue);

    ocdz_head(&o, "ocdz_db_shed_total", "counter",
              "Queries refused at once (database down or queue full): "
              "a reveal answers 503.");
    ocdz_out(&o, "ocdz_db_shed_total %" PRIu64 "\n", m->db_shed);

    ocdz_head(&o, "ocdz_db_statements_total", "counter",
              "Statements sent to the database.");
    ocdz_out(&o, "ocdz_db_statements_total %" PRIu64 "\n",
             m->db_statements);

    ocdz_histogram(&o, "ocdz_db_batch_size", "Queries per statement sent.",
                   ocdz_metrics_batch_bounds, OCDZ_M_BATCH_BUCKETS,
                   m->db_batch_hist, m->db_batch_sum, 0);

    ocdz_head(&o, "ocdz_db_connects_total", "counter",
              "Database connections opened or attempted.");
    ocdz_out(&o, "ocdz_db_connects_total %" PRIu64 "\n", m->db_connects);

    ocdz_head(&o, "ocdz_db_connect_failures_total", "counter",
              "Database connection attempts that failed.");
    ocdz_out(&o, "ocdz_db_connect_failures_total %" PRIu64 "\n",
             m->db_connect_failures);

    /* the poller */

    ocdz_head(&o, "ocdz_poller_checks_total", "counter",
              "Order checks against the API, by outcome and HTTP class of "
              "the answer (none: no answer).");

    for (i = 0; i < OCDZ_M_OUTCOMES; i++) {
        for (j = 0; j < OCDZ_M_CLASSES; j++) {
            ocdz_out(&o, "ocdz_poller_checks_total{outcome=\"%s\","
                     "class=\"%s\"} %" PRIu64 "\n", ocdz_metrics_outcomes[i],
                     ocdz_metrics_classes[j], m->checks[i][j]);
        }
    }

    ocdz_histogram(&o, "ocdz_upstream_duration_seconds",
                   "Duration of the API calls of the checks.",
                   ocdz_metrics_upstream_bounds, OCDZ_M_UPSTREAM_BUCKETS,
                   m->upstream_hist, m->upstream_sum_us, 1);

    ocdz_head(&o, "ocdz_poller_last_success_timestamp_seconds", "gauge",
              "When the API last answered a check with 2xx (Unix time), "
              "0: never.");
    ocdz_out(&o, "ocdz_poller_last_success_timestamp_seconds %" PRIu64 "\n",
             m->last_check);

    ocdz_head(&o, "ocdz_poller_leases", "gauge",
              "Orders leased by the pollers of this nginx.");
    ocdz_out(&o, "ocdz_poller_leases %" PRIu64 "\n", m->leases);

    r = (m->paused && m->pause_reason < OCDZ_M_PAUSE_REASONS)
        ? (unsigned) m->pause_reason : OCDZ_M_PAUSE_NONE;

    ocdz_head(&o, "ocdz_poller_paused", "gauge",
              "1 while every check pauses, with the reason.");
    ocdz_out(&o, "ocdz_poller_paused{reason=\"%s\"} %d\n",
             ocdz_metrics_pause_reasons[r], m->paused ? 1 : 0);

    ocdz_head(&o, "ocdz_poller_pauses_total", "counter",
              "Pauses of every check decided, by reason.");

    for (i = 1; i < OCDZ_M_PAUSE_REASONS; i++) {
        ocdz_out(&o, "ocdz_poller_pauses_total{reason=\"%s\"} %" PRIu64 "\n",
                 ocdz_metrics_pause_reasons[i], m->pauses[i]);
    }

    ocdz_head(&o, "ocdz_poller_secondary_token", "gauge",
              "1 while a poller checks with the secondary access token.");
    ocdz_out(&o, "ocdz_poller_secondary_token %d\n", m->secondary ? 1 : 0);

    /* the outbox */

    ocdz_head(&o, "ocdz_outbox_deliveries_total", "counter",
              "Outbox delivery attempts ended, by channel and outcome "
              "(retried: pending again after a backoff).");

    for (i = 0; i < OCDZ_M_CHANNELS; i++) {
        for (j = 0; j < OCDZ_M_SEND_OUTCOMES; j++) {
            ocdz_out(&o, "ocdz_outbox_deliveries_total{channel=\"%s\","
                     "outcome=\"%s\"} %" PRIu64 "\n",
                     ocdz_metrics_channels[i], ocdz_metrics_send_outcomes[j],
                     m->sends[i][j]);
        }
    }

    ocdz_head(&o, "ocdz_outbox_send_duration_seconds", "histogram",
              "Duration of the outbox's sends (the transfer), by channel.");

    for (i = 0; i < OCDZ_M_CHANNELS; i++) {
        snprintf(label, sizeof(label), "channel=\"%s\",",
                 ocdz_metrics_channels[i]);
        ocdz_hist_samples(&o, "ocdz_outbox_send_duration_seconds", label,
                          ocdz_metrics_send_bounds, OCDZ_M_SEND_BUCKETS,
                          m->send_hist[i], m->send_sum_us[i], 1);
    }

    ocdz_head(&o, "ocdz_outbox_sends_in_flight", "gauge",
              "Outbox sends in flight, all workers.");
    ocdz_out(&o, "ocdz_outbox_sends_in_flight %" PRIu64 "\n", m->sending);

    ocdz_head(&o, "ocdz_card_waiters", "gauge",
              "Card requests held by ?wait= until their order changes, "
              "all workers.");
    ocdz_out(&o, "ocdz_card_waiters %" PRIu64 "\n", m->waiters);

    if (m->backlog_at) {
        ocdz_head(&o, "ocdz_orders_waiting", "gauge",
                  "Orders not final yet, by status.");

        for (i = 0; i < OCDZ_M_ORDER_STATUSES; i++) {
            ocdz_out(&o, "ocdz_orders_waiting{status=\"%s\"} %" PRIu64 "\n",
                     ocdz_metrics_order_statuses[i], m->orders[i]);
        }

        ocdz_head(&o, "ocdz_oldest_due_order_age_seconds", "gauge",
                  "How long the oldest order due for a check has waited.");
        ocdz_out(&o, "ocdz_oldest_due_order_age_seconds %" PRIu64 "\n",
                 m->oldest_due_age);

        ocdz_head(&o, "ocdz_poller_shared_pause", "gauge",
                  "1 while every check of every host pauses "
                  "(ocdz.poller_state).");
        ocdz_out(&o, "ocdz_poller_shared_pause %d\n",
                 m->shared_pause ? 1 : 0);

        ocdz_head(&o, "ocdz_outbox_rows", "gauge",
                  "Outbox rows not sent, by channel and state (all hosts).");

        for (i = 0; i < OCDZ_M_CHANNELS; i++) {
            for (j = 0; j < OCDZ_M_OUTBOX_STATES; j++) {
                ocdz_out(&o, "ocdz_outbox_rows{channel=\"%s\",state=\"%s\"} "
                         "%" PRIu64 "\n", ocdz_metrics_channels[i],
                         ocdz_metrics_outbox_states[j], m->outbox[i][j]);
            }
        }

        ocdz_head(&o, "ocdz_outbox_oldest_due_age_seconds", "gauge",
                  "How long the oldest outbox row due for a send has "
                  "waited, by channel.");

        for (i = 0; i < OCDZ_M_CHANNELS; i++) {
            ocdz_out(&o, "ocdz_outbox_oldest_due_age_seconds{channel=\"%s\"} "
                     "%" PRIu64 "\n", ocdz_metrics_channels[i],
                     m->outbox_due_age[i]);
        }

        ocdz_head(&o, "ocdz_backlog_timestamp_seconds", "gauge",
                  "When the backlog gauges were last refreshed.");
        ocdz_out(&o, "ocdz_backlog_timestamp_seconds %" PRIu64 "\n",
                 m->backlog_at);
    }

    return o.len;
}


static void
ocdz_json_hist(ocdz_out_t *o, const char *name, const uint64_t *bounds,
    unsigned n, const uint64_t *hist, uint64_t sum, int seconds)
{
    unsigned  i;
    uint64_t  cum;

    ocdz_out(o, "\"%s\":{\"buckets\":[", name);

    cum = 0;

    for (i = 0; i <= n; i++) {
        cum += hist[i];
        ocdz_out(o, "%s{\"le\":", i ? "," : "");

        if (i == n) {
            ocdz_out(o, "\"+Inf\"");
        } else if (seconds) {
            ocdz_out_us(o, bounds[i]);
        } else {
            ocdz_out(o, "%" PRIu64, bounds[i]);
        }

        ocdz_out(o, ",\"count\":%" PRIu64 "}", cum);
    }

    ocdz_out(o, "],\"sum\":");

    if (seconds) {
        ocdz_out_us(o, sum);
    } else {
        ocdz_out(o, "%" PRIu64, sum);
    }

    ocdz_out(o, ",\"count\":%" PRIu64 "}", cum);
}


size_t
ocdz_metrics_json(const ocdz_metrics_t *m, const ocdz_metrics_build_t *b,
    char *buf, size_t size)
{
    char        ver[64], nver[64];
    unsigned    i, j, r;
    ocdz_out_t  o;

    o.buf = buf;
    o.size = size;
    o.len = 0;

    /* the version strings hold no control characters: " and \ escaped
     * the same way in both formats */
    ocdz_metrics_escape(ver, sizeof(ver), b->version);
    ocdz_metrics_escape(nver, sizeof(nver), b->server);

    ocdz_out(&o, "{\"build\":{\"version\":\"%s\",\"nginx_version\":\"%s\","
             "\"schema_version\":%u},", ver, nver, b->schema_version);

    ocdz_out(&o, "\"reveals\":{\"results\":{");

    for (i = 0; i < OCDZ_M_RESULTS; i++) {
        ocdz_out(&o, "%s\"%s\":%" PRIu64, i ? "," : "",
                 ocdz_metrics_results[i], m->reveals[i]);
    }

    ocdz_out(&o, "},");
    ocdz_json_hist(&o, "duration_seconds", ocdz_metrics_reveal_bounds,
                   OCDZ_M_REVEAL_BUCKETS, m->reveal_hist, m->reveal_sum_us,
                   1);
    ocdz_out(&o, ",\"last_timestamp\":%" PRIu64 "},", m->last_reveal);

    ocdz_out(&o, "\"db\":{\"connections\":{");

    for (i = 0; i < OCDZ_M_CONN_STATES; i++) {
        ocdz_out(&o, "%s\"%s\":%" PRIu64, i ? "," : "",
                 ocdz_metrics_states[i], m->db_conns[i]);
    }

    ocdz_out(&o, "},\"queue_depth\":%" PRIu64 ",\"shed\":%" PRIu64
             ",\"statements\":%" PRIu64 ",", m->db_queue, m->db_shed,
             m->db_statements);
    ocdz_json_hist(&o, "batch_size", ocdz_metrics_batch_bounds,
                   OCDZ_M_BATCH_BUCKETS, m->db_batch_hist, m->db_batch_sum,
                   0);
    ocdz_out(&o, ",\"connects\":%" PRIu64 ",\"connect_failures\":%" PRIu64
             "},", m->db_connects, m->db_connect_failures);

    ocdz_out(&o, "\"poller\":{\"checks\":{");

    for (i = 0; i < OCDZ_M_OUTCOMES; i++) {
        ocdz_out(&o, "%s\"%s\":{", i ? "," : "", ocdz_metrics_outcomes[i]);

        for (j = 0; j < OCDZ_M_CLASSES; j++) {
            ocdz_out(&o, "%s\"%s\":%" PRIu64, j ? "," : "",
                     ocdz_metrics_classes[j], m->checks[i][j]);
        }

        ocdz_out(&o, "}");
    }

    ocdz_out(&o, "},");
    ocdz_json_hist(&o, "upstream_duration_seconds",
                   ocdz_metrics_upstream_bounds, OCDZ_M_UPSTREAM_BUCKETS,
                   m->upstream_hist, m->upstream_sum_us, 1);

    r = (m->paused && m->pause_reason < OCDZ_M_PAUSE_REASONS)
        ? (unsigned) m->pause_reason : OCDZ_M_PAUSE_NONE;

    ocdz_out(&o, ",\"last_success_timestamp\":%" PRIu64 ",\"leases\":%"
             PRIu64 ",\"paused\":%d,\"pause_reason\":\"%s\",\"pauses\":{",
             m->last_check, m->leases, m->paused ? 1 : 0,
             ocdz_metrics_pause_reasons[r]);

    for (i = 1; i < OCDZ_M_PAUSE_REASONS; i++) {
        ocdz_out(&o, "%s\"%s\":%" PRIu64, i > 1 ? "," : "",
                 ocdz_metrics_pause_reasons[i], m->pauses[i]);
    }

    ocdz_out(&o, "},\"secondary_token\":%d", m->secondary ? 1 : 0);

    if (m->backlog_at) {
        ocdz_out(&o, ",\"orders_waiting\":{");

        for (i = 0; i < OCDZ_M_ORDER_STATUSES; i++) {
            ocdz_out(&o, "%s\"%s\":%" PRIu64, i ? "," : "",
                     ocdz_metrics_order_statuses[i], m->orders[i]);
        }

        ocdz_out(&o, "},\"oldest_due_order_age_seconds\":%" PRIu64
                 ",\"shared_pause\":%d,\"backlog_timestamp\":%" PRIu64,
                 m->oldest_due_age, m->shared_pause ? 1 : 0, m->backlog_at);
    }

    ocdz_out(&o, "},\"outbox\":{\"deliveries\":{");

    for (i = 0; i < OCDZ_M_CHANNELS; i++) {
        ocdz_out(&o, "%s\"%s\":{", i ? "," : "", ocdz_metrics_channels[i]);

        for (j = 0; j < OCDZ_M_SEND_OUTCOMES; j++) {
            ocdz_out(&o, "%s\"%s\":%" PRIu64, j ? "," : "",
                     ocdz_metrics_send_outcomes[j], m->sends[i][j]);
        }

        ocdz_out(&o, "}");
    }

    ocdz_out(&o, "},\"send_duration_seconds\":{");

    for (i = 0; i < OCDZ_M_CHANNELS; i++) {
        ocdz_out(&o, "%s", i ? "," : "");
        ocdz_json_hist(&o, ocdz_metrics_channels[i], ocdz_metrics_send_bounds,
                       OCDZ_M_SEND_BUCKETS, m->send_hist[i],
                       m->send_sum_us[i], 1);
    }

    ocdz_out(&o, "},\"sends_in_flight\":%" PRIu64, m->sending);

    if (m->backlog_at) {
        ocdz_out(&o, ",\"rows\":{");

        for (i = 0; i < OCDZ_M_CHANNELS; i++) {
            ocdz_out(&o, "%s\"%s\":{", i ? "," : "",
                     ocdz_metrics_channels[i]);

            for (j = 0; j < OCDZ_M_OUTBOX_STATES; j++) {
                ocdz_out(&o, "\"%s\":%" PRIu64 ",",
                         ocdz_metrics_outbox_states[j], m->outbox[i][j]);
            }

            ocdz_out(&o, "\"oldest_due_age_seconds\":%" PRIu64 "}",
                     m->outbox_due_age[i]);
        }

        ocdz_out(&o, "}");
    }

    ocdz_out(&o, "},\"card_wait\":{\"waiters\":%" PRIu64 "}}\n",
             m->waiters);

    return o.len;
}
