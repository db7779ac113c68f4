/*
 * The metrics of the ocdz_status location: their names, help texts,
 * types and labels in one table, histogram bucket lookup, and the two
 * renderings of a snapshot (Prometheus text exposition format 0.0.4 and
 * JSON).
 *
 * Pure C, no nginx. A snapshot is a plain struct of 64-bit numbers; the
 * module keeps the counters of one in shared memory (updated with
 * relaxed atomics), adds up the per-worker gauges, and hands the sum
 * here. No metric or label holds a card code, token, key, user id or
 * top-up id: every label value comes from a fixed table below.
 */

#ifndef _OCDZ_METRICS_H_INCLUDED_
#define _OCDZ_METRICS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* reveal results, in the card endpoint's order of outcomes */
#define OCDZ_M_RESULTS          13

/* checks: the transition's write (OCDZ_WRITE_*) by HTTP class */
#define OCDZ_M_OUTCOMES         6
#define OCDZ_M_CLASSES          6       /* none, 1xx .. 5xx */

/* connections of the database pool, by state */
#define OCDZ_M_CONN_IDLE        0
#define OCDZ_M_CONN_BUSY        1
#define OCDZ_M_CONN_CONNECTING  2
#define OCDZ_M_CONN_CLOSED      3       /* not opened yet, database up */
#define OCDZ_M_CONN_DOWN        4       /* closed, database known down */
#define OCDZ_M_CONN_STATES      5

/* why every check pauses */
#define OCDZ_M_PAUSE_NONE       0
#define OCDZ_M_PAUSE_REDIRECT   1
#define OCDZ_M_PAUSE_ACCESS     2       /* 401 with no token left, 403 */
#define OCDZ_M_PAUSE_RATE       3       /* 429 */
#define OCDZ_M_PAUSE_BAD_URL    4       /* 404 of the URL, not the order */
#define OCDZ_M_PAUSE_OTHER      5
#define OCDZ_M_PAUSE_REASONS    6

/* orders waiting, by status (the backlog) */
#define OCDZ_M_ORDER_STATUSES   4       /* PENDING, HANDLING, QUEUED,
                                           UNKNOWN_ERROR */

#define OCDZ_M_REVEAL_BUCKETS   12
#define OCDZ_M_UPSTREAM_BUCKETS 10
#define OCDZ_M_BATCH_BUCKETS    9

/* the delivery outbox: its channels, the outcomes of an attempt, and
 * the states of its backlog */
#define OCDZ_M_CHANNELS         3       /* webhook, email, sms */
#define OCDZ_M_SEND_SENT        0
#define OCDZ_M_SEND_RETRIED     1       /* pending again, after a backoff */
#define OCDZ_M_SEND_FAILED      2
#define OCDZ_M_SEND_SKIPPED     3
#define OCDZ_M_SEND_OUTCOMES    4
#define OCDZ_M_OUTBOX_STATES    3       /* pending, sending, failed */
#define OCDZ_M_SEND_BUCKETS     11


/*
 * Only uint64_t members, so that the module can read and add it as an
 * array of them (OCDZ_M_WORDS).
 */
typedef struct {
    /* counters */
    uint64_t   reveals[OCDZ_M_RESULTS];
    uint64_t   reveal_hist[OCDZ_M_REVEAL_BUCKETS + 1];   /* last: +Inf */
    uint64_t   reveal_sum_us;
    uint64_t   db_shed;
    uint64_t   db_statements;
    uint64_t   db_batch_hist[OCDZ_M_BATCH_BUCKETS + 1];
    uint64_t   db_batch_sum;
    uint64_t   db_connects;
    uint64_t   db_connect_failures;
    uint64_t   checks[OCDZ_M_OUTCOMES][OCDZ_M_CLASSES];
    uint64_t   upstream_hist[OCDZ_M_UPSTREAM_BUCKETS + 1];
    uint64_t   upstream_sum_us;
    uint64_t   pauses[OCDZ_M_PAUSE_REASONS];
    uint64_t   sends[OCDZ_M_CHANNELS][OCDZ_M_SEND_OUTCOMES];
    uint64_t   send_hist[OCDZ_M_CHANNELS][OCDZ_M_SEND_BUCKETS + 1];
    uint64_t   send_sum_us[OCDZ_M_CHANNELS];

    /* times, Unix seconds, 0: never */
    uint64_t   last_reveal;
    uint64_t   last_check;     /* the last check the API answered 2xx */

    /* gauges, added up over the workers */
    uint64_t   db_conns[OCDZ_M_CONN_STATES];
    uint64_t   db_queue;
    uint64_t   leases;         /* orders leased by the pollers */
    uint64_t   secondary;      /* workers on the secondary token */
    uint64_t   paused;         /* workers whose checks pause */
    uint64_t   pause_reason;   /* OCDZ_M_PAUSE_*, the latest pause's */
    uint64_t   sending;        /* outbox sends in flight */
    uint64_t   waiters;        /* requests held by ?wait= */

    /* the backlog, refreshed by one worker: valid when backlog_at */
    uint64_t   backlog_at;     /* Unix seconds of the refresh, 0: none */
    uint64_t   orders[OCDZ_M_ORDER_STATUSES];
    uint64_t   oldest_due_age; /* seconds */
    uint64_t   shared_pause;   /* 1: ocdz.poller_state pauses every host */
    uint64_t   outbox[OCDZ_M_CHANNELS][OCDZ_M_OUTBOX_STATES];
    uint64_t   outbox_due_age[OCDZ_M_CHANNELS];    /* seconds */
} ocdz_metrics_t;

#define OCDZ_M_WORDS  (sizeof(ocdz_metrics_t) / sizeof(uint64_t))


typedef struct {
    const char  *version;        /* the module's */
    const char  *server;         /* nginx's version */
    unsigned     schema_version;
} ocdz_metrics_build_t;


/* the label values, for the hooks and the tests */
extern const char  *ocdz_metrics_results[OCDZ_M_RESULTS];
extern const unsigned  ocdz_metrics_result_status[OCDZ_M_RESULTS];
extern const char  *ocdz_metrics_outcomes[OCDZ_M_OUTCOMES];
extern const char  *ocdz_metrics_pause_reasons[OCDZ_M_PAUSE_REASONS];
extern const char  *ocdz_metrics_order_statuses[OCDZ_M_ORDER_STATUSES];
extern const char  *ocdz_metrics_channels[OCDZ_M_CHANNELS];
extern const char  *ocdz_metrics_send_outcomes[OCDZ_M_SEND_OUTCOMES];
extern const char  *ocdz_metrics_outbox_states[OCDZ_M_OUTBOX_STATES];

/* the bucket upper bounds: microseconds, and queries per statement */
extern const uint64_t  ocdz_metrics_reveal_bounds[OCDZ_M_REVEAL_BUCKETS];
extern const uint64_t  ocdz_metrics_upstream_bounds[OCDZ_M_UPSTREAM_BUCKETS];
extern const uint64_t  ocdz_metrics_batch_bounds[OCDZ_M_BATCH_BUCKETS];
extern const uint64_t  ocdz_metrics_send_bounds[OCDZ_M_SEND_BUCKETS];


/* The index of a reveal result's name, or -1. */
int ocdz_metrics_result(const char *name, size_t len);

/* The index of an outbox channel's name, or -1. */
int ocdz_metrics_channel(const char *name);

/*
 * The outcome (OCDZ_M_SEND_*) of an attempt from the state the sender
 * writes: sent, pending (retried), failed, skipped; or -1.
 */
int ocdz_metrics_send_outcome(const char *state);

/* The bucket of a value: the first bound >= value, n for +Inf. */
unsigned ocdz_metrics_bucket(const uint64_t *bounds, unsigned n,
    uint64_t value);

/* The HTTP class (0: no answer, 1..5: 1xx..5xx) of a status. */
unsigned ocdz_metrics_class(long http);

/* The pause reason of a pause decided on an answer with this status. */
unsigned ocdz_metrics_pause_reason(long http);

/*
 * A Prometheus label value escaped (\\, \", \n) into dst, NUL-terminated
 * when size > 0; returns the escaped length, which may be more than
 * size - 1 (then the output is cut).
 */
size_t ocdz_metrics_escape(char *dst, size_t size, const char *s);

/*
 * Renders m, snprintf-like: writes at most size bytes (buf may be NULL
 * with size 0) and returns the length of the whole text, so a caller
 * may ask for the length first.
 */
size_t ocdz_metrics_prometheus(const ocdz_metrics_t *m,
    const ocdz_metrics_build_t *b, char *buf, size_t size);
size_t ocdz_metrics_json(const ocdz_metrics_t *m,
    const ocdz_metrics_build_t *b, char *buf, size_t size);


#endif /* _OCDZ_METRICS_H_INCLUDED_ */
