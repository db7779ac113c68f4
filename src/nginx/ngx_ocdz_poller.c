/*
 * The background poller.
 *
 * Each worker runs one timer. A tick claims due orders with a lease in
 * one statement (FOR UPDATE SKIP LOCKED, so workers and hosts share the
 * work without meeting), checks each upstream with one curl transfer,
 * turns the reply into one state transition and writes it back in one
 * statement that names the lease token: a worker whose lease expired
 * and was taken over writes nothing, and every write is idempotent, so
 * an interrupted check is simply done again when its lease expires.
 * For the same reason the poller's transactions do not wait for their
 * WAL flush (see the statements).
 *
 * The worker's event loop is shared with card requests: replies are
 * handled a slice per turn and checks started at a pace, so that many
 * checks ending together do not hold the requests back.
 *
 * Checks that say the whole client is wrong (access token refused,
 * 403, 429, a redirect, a 404 without the API envelope) pause every
 * check of every worker and host through ocdz.poller_state, and never
 * count against the order.
 *
 * Nothing here logs an access token, a card code or a reply body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/rand.h>

#include "ngx_ocdz_poller.h"
#include "ngx_ocdz_curl.h"
#include "ocdz_upstream.h"


#define NGX_OCDZ_POLLER_TICK_MAX    1000   /* ms between claims, at most */
#define NGX_OCDZ_POLLER_KICK        20     /* ms: claim after slots free */
#define NGX_OCDZ_POLLER_AHEAD       2      /* slots per check in flight */
#define NGX_OCDZ_POLLER_SLICE       8      /* replies handled per event
                                              loop turn, checks started
                                              per ms */
#define NGX_OCDZ_POLLER_BATCH_WAIT  20     /* ms a write-back may wait
                                              for others of its kind */
#define NGX_OCDZ_POLLER_BATCH_MIN   32     /* so many go at once */
#define NGX_OCDZ_POLLER_INTERVAL_MIN 100
#define NGX_OCDZ_POLLER_LEASE_BYTES 16     /* random, sent as hex */
#define NGX_OCDZ_POLLER_ERR_MAX     200    /* last_error, pause_reason */
#define NGX_OCDZ_POLLER_CODE_MAX    48     /* upstream error codes shown */
#define NGX_OCDZ_POLLER_PATH        "/v3/internet/check-id/"
#define NGX_OCDZ_POLLER_USER_AGENT  "ngx_http_ocdz_module"


/*
 * The statements, in the order of ngx_ocdz_poller_sql[]. The common
 * write-backs (progress, fault, refunded, fulfilled) go in batches: one
 * statement, one commit for every result of that kind waiting.
 */

enum {
    NGX_OCDZ_S_CLAIM = 0,
    NGX_OCDZ_S_PROGRESS,
    NGX_OCDZ_S_FAULT,
    NGX_OCDZ_S_REFUNDED,
    NGX_OCDZ_S_FULFILLED,
    NGX_OCDZ_S_NOT_FOUND,
    NGX_OCDZ_S_RELEASE,
    NGX_OCDZ_S_UNLEASE,
    NGX_OCDZ_S_COUNT
};

#define ngx_ocdz_poller_batched(stmt)                                        \
    ((stmt) >= NGX_OCDZ_S_PROGRESS && (stmt) <= NGX_OCDZ_S_FULFILLED)


typedef struct {
    const char                 *sql;
    int                         nparams;
} ngx_ocdz_poller_sql_t;


typedef enum {
    NGX_OCDZ_SLOT_FREE = 0,
    NGX_OCDZ_SLOT_READY,           /* claimed, waits for a transfer */
    NGX_OCDZ_SLOT_CHECKING,        /* the transfer runs */
    NGX_OCDZ_SLOT_FINISHED,        /* it ended, the reply waits its turn */
    NGX_OCDZ_SLOT_WRITING,         /* the write-back runs */
    NGX_OCDZ_SLOT_WAITING          /* the write-back waits its turn */
} ngx_ocdz_slot_state_e;


/* One claimed order: its curl handle, reply buffer and write-back. */

typedef struct {
    ngx_queue_t                 queue;      /* in free, ready, finished,
                                               waiting or the batch */
    ngx_ocdz_slot_state_e       state;

    CURL                       *easy;       /* kept for reuse */
    u_char                     *body;       /* OCDZ_UPSTREAM_BODY_MAX */
    size_t                      body_len;
    time_t                      retry_after;    /* s, -1: none */
    ngx_uint_t                  token;      /* which token the check
                                               used */
    CURLcode                    rc;         /* how the transfer ended */
    long                        http;
    unsigned                    oversized:1;
    char                        curl_err[CURL_ERROR_SIZE];

    /* the order, as claimed */
    char                        topup_id[OCDZ_TOPUP_ID_MAX + 1];
    char                        lease[2 * NGX_OCDZ_POLLER_LEASE_BYTES
                                      + 1];
    ngx_int_t                   attempts;
    ngx_int_t                   not_found;
    ngx_msec_t                  finished;   /* when the check ended */

    /* the write-back */
    ngx_uint_t                  stmt;
    ngx_ocdz_pg_query_t         q;
    ngx_msec_t                  delay;      /* next check, logs */
    char                        p_status[OCDZ_UP_SHORT_MAX + 1];
    char                        p_ms[NGX_INT64_LEN + 1];
    char                        p_n[NGX_INT64_LEN + 1];
    char                        p_error[NGX_OCDZ_POLLER_ERR_MAX + 1];
    char                        p_reason[NGX_OCDZ_POLLER_ERR_MAX + 1];
    char                        p_text[OCDZ_UP_TEXT_MAX + 1];
    char                        p_num_trans[OCDZ_UP_SHORT_MAX + 1];
    char                        p_date[OCDZ_UP_SHORT_MAX + 1];
    char                        p_card[OCDZ_RECORD_MAX + 1];
} ngx_ocdz_poller_slot_t;


/* Write-backs of one kind, in one statement. */

typedef struct {
    ngx_ocdz_pg_query_t         q;
    ngx_event_t                 timer;      /* the wait for others */
    ngx_uint_t                  stmt;
    ngx_queue_t                 slots;
    ngx_uint_t                  n;
    u_char                     *buf;        /* the array literals */
    size_t                      size;
    size_t                      used;
    unsigned                    running:1;
} ngx_ocdz_poller_batch_t;


typedef struct {
    ngx_http_ocdz_main_conf_t  *omcf;
    ngx_log_t                  *log;

    ngx_event_t                 timer;
    ngx_connection_t            dummy;      /* timer.data: fd = -1 */
    ngx_msec_t                  tick;

    ngx_uint_t                  stmt[NGX_OCDZ_S_COUNT];

    /*
     * Twice as many slots as checks in flight: the orders of the next
     * round are claimed while this one runs, and a check that ends
     * starts the next at once, while its write-back waits for a batch.
     */
    ngx_ocdz_poller_slot_t     *slots;
    ngx_uint_t                  nslots;
    ngx_uint_t                  busy;
    ngx_uint_t                  conc;       /* poller_concurrency */
    ngx_uint_t                  checking;   /* transfers running */
    ngx_queue_t                 free;
    ngx_queue_t                 ready;      /* claimed, not checked yet */
    ngx_uint_t                  nready;
    ngx_queue_t                 finished;   /* ended, reply not handled */

    /*
     * Replies are handled and checks started from this event, a slice
     * per turn of the event loop, so that a wave of checks ending
     * together never holds the worker away from requests for long.
     */
    ngx_event_t                 run;
    ngx_msec_t                  start_msec; /* checks started in that ms */
    ngx_uint_t                  start_n;
    ngx_queue_t                 waiting;    /* write-backs to send */
    ngx_uint_t                  pg_running; /* our queries in the pool */
    ngx_ocdz_poller_batch_t     batch;
    ngx_msec_t                  paused_until;   /* a pause decided here */

    const char                 *sync_commit;    /* "off", or NULL: the
                                                   connection's own */

    ngx_ocdz_pg_query_t         claim;
    ngx_uint_t                  claim_limit;
    char                        claim_n[NGX_INT64_LEN + 1];
    char                        claim_lease[2 * NGX_OCDZ_POLLER_LEASE_BYTES
                                            + 1];
    char                        claim_ms[NGX_INT64_LEN + 1];

    /* the API */
    char                       *url;        /* base + path + id + NUL */
    size_t                      url_prefix;
    u_char                     *ca_pem;     /* ocdz_api_ca_file, read by
                                               the master */
    size_t                      ca_pem_len;
    char                       *proxy;
    struct curl_slist          *headers[2]; /* primary, secondary */
    ngx_uint_t                  token;      /* the one in use */
    ngx_uint_t                  ntokens;

    ocdz_cipher_t              *cipher;
    ngx_ocdz_pg_pool_t         *pg;
    ngx_ocdz_curl_t            *curl;

    unsigned                    started:1;
    unsigned                    claiming:1;
    unsigned                    want_claim:1;   /* declined while our own
                                                   queries held the share:
                                                   the next to end claims */
    unsigned                    backlog:1;  /* last claim was full */
    ngx_msec_t                  pause_logged;   /* until then: quieter */
    ngx_uint_t                  refused;    /* statements logged as
                                               refused, a bit each */

    unsigned                    db_down:1;  /* logged, until back */
    unsigned                    easy_failed:1; /* logged once */
} ngx_ocdz_poller_t;


static ngx_int_t ngx_ocdz_poller_find_stmts(ngx_ocdz_poller_t *p);
static char *ngx_ocdz_poller_msec(u_char *buf, size_t size, ngx_msec_t ms);
static void ngx_ocdz_poller_tick(ngx_event_t *ev);
static void ngx_ocdz_poller_arm(ngx_msec_t delay);
static void ngx_ocdz_poller_kick(void);
static void ngx_ocdz_poller_pump(void);
static ngx_int_t ngx_ocdz_poller_claim(ngx_uint_t limit);
static void ngx_ocdz_poller_claim_handler(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_ocdz_poller_check(ngx_ocdz_poller_slot_t *slot);
static CURL *ngx_ocdz_poller_easy(ngx_ocdz_poller_slot_t *slot);
static size_t ngx_ocdz_poller_body(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t ngx_ocdz_poller_header(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_ocdz_poller_done(CURL *easy, CURLcode rc, void *data);
static void ngx_ocdz_poller_schedule(void);
static void ngx_ocdz_poller_run(ngx_event_t *ev);
static void ngx_ocdz_poller_finish(ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_reply(ngx_ocdz_poller_slot_t *slot,
    long http);
static void ngx_ocdz_poller_reply_200(ngx_ocdz_poller_slot_t *slot,
    ocdz_upstream_reply_t *reply);
static void ngx_ocdz_poller_fulfilled(ngx_ocdz_poller_slot_t *slot,
    ocdz_upstream_reply_t *reply);
static void ngx_ocdz_poller_unauthorized(ngx_ocdz_poller_slot_t *slot,
    const char *code);
static void ngx_ocdz_poller_progress(ngx_ocdz_poller_slot_t *slot,
    ocdz_status_e status);
static void ngx_ocdz_poller_fault(ngx_ocdz_poller_slot_t *slot,
    const char *fmt, ...);
static void ngx_ocdz_poller_pause(ngx_ocdz_poller_slot_t *slot,
    ngx_msec_t pause, const char *fmt, ...);
static ngx_msec_t ngx_ocdz_poller_backoff(ngx_ocdz_poller_slot_t *slot,
    ngx_msec_t base);
static void ngx_ocdz_poller_write(ngx_ocdz_poller_slot_t *slot);
static int ngx_ocdz_poller_params(ngx_ocdz_poller_slot_t *slot,
    const char **values);
static void ngx_ocdz_poller_write_handler(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_ocdz_poller_resend(void);
static void ngx_ocdz_poller_start_ready(void);
static void ngx_ocdz_poller_query_init(ngx_ocdz_pg_query_t *q,
    ngx_uint_t stmt, ngx_ocdz_pg_handler_pt handler, void *data);
static ngx_int_t ngx_ocdz_poller_batch_send(void);
static void ngx_ocdz_poller_batch_handler(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static void ngx_ocdz_poller_batch_timer(ngx_event_t *ev);
static u_char *ngx_ocdz_poller_array(u_char *p, const char *v,
    ngx_uint_t first);
static void ngx_ocdz_poller_written(ngx_ocdz_poller_slot_t *slot,
    ngx_int_t n);
static void ngx_ocdz_poller_unlease(ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_slot_done(ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_db_error(ngx_uint_t stmt, ngx_int_t rc,
    PGresult *res);
static void ngx_ocdz_poller_db_ok(ngx_uint_t stmt);
static void ngx_ocdz_poller_code(const char *code, char *out, size_t size);
static ngx_uint_t ngx_ocdz_poller_code_is(const char *code,
    const char *want);
static void ngx_ocdz_poller_copy_text(char *dst, size_t size,
    const char *src);
static ngx_uint_t ngx_ocdz_poller_exiting(void);


/*
 * The statements. Each is one round trip; "now()" is the database's
 * clock, so hosts with skewed clocks agree. Every write names the lease
 * token and never changes an order in a final state, except to give its
 * lease back: someone else (support staff, the storefront) may have
 * closed an order while it was being checked.
 *
 * Every statement commits with synchronous_commit off (unless
 * "ocdz_poller_sync_commit on"), set inside the statement itself so that
 * it stays one statement: it can be prepared, and with PgBouncer in
 * transaction mode the setting ends with the transaction. Its last
 * parameter is "off", or NULL for the connection's own setting. The
 * condition is an uncorrelated subquery: evaluated once, and before any
 * row is written, since a row is only written once it has passed it.
 *
 * Why a commit lost in a crash costs nothing:
 *  - nothing outside the database has seen it: the poller does not act
 *    on a write-back's result beyond logging it;
 *  - what is lost is redone: a lost claim leaves the order due, a lost
 *    write-back leaves it in its old state with its lease, which expires
 *    (ocdz_poller_lease), and the order is checked again; check-id
 *    answers the order object every time, and a FULFILLED one (final)
 *    carries its card_code, num_trans and date_traitement (OneClickDz
 *    API v3, GET /v3/internet/check-id), so the card is stored again,
 *    with one CARD_STORED row as before;
 *  - no card is ever revealed from an unflushed write: a reveal commits
 *    its audit row synchronously before the card is sent, and that
 *    flushes the whole WAL up to it, the poller's earlier commits too;
 *  - the storefront and the reveals read only committed rows, and an
 *    asynchronous commit is visible at once, like any other.
 */

#define NGX_OCDZ_POLLER_FINAL  "('FULFILLED', 'REFUNDED', 'ERROR')"

#define NGX_OCDZ_POLLER_ASYNC(n)                                             \
    "(SELECT set_config('synchronous_commit', "                              \
                       "coalesce($" n "::text, "                             \
                                "current_setting('synchronous_commit')), "   \
                       "true)) IS NOT NULL"

static ngx_ocdz_poller_sql_t  ngx_ocdz_poller_sql[NGX_OCDZ_S_COUNT] = {

    /*
     * claim: $1 how many, $2 lease token, $3 lease (ms). "= ANY (ARRAY
     * (...))" makes the due orders an array looked up by primary key: a
     * join with them was planned as a hash join over every order.
     */
    { "UPDATE ocdz.orders SET "
          "lease_token = $2, "
          "lease_until = now() + $3::bigint * interval '1 millisecond', "
          "attempts = attempts + 1, "
          "last_checked_at = now() "
      "WHERE topup_id = ANY (ARRAY ("
          "SELECT topup_id FROM ocdz.orders "
          "WHERE status IN ('PENDING', 'HANDLING', 'QUEUED', "
                           "'UNKNOWN_ERROR') "
          "AND next_check_at <= now() "
          "AND (lease_until IS NULL OR lease_until < now()) "
          "AND NOT EXISTS (SELECT 1 FROM ocdz.poller_state "
                          "WHERE id = 1 AND paused_until > now()) "
          "AND " NGX_OCDZ_POLLER_ASYNC("4") " "
          "ORDER BY next_check_at "
          "LIMIT $1::integer "
          "FOR UPDATE SKIP LOCKED)) "
      "RETURNING topup_id, attempts, not_found_count, status",
      4 },

    /*
     * The batches take arrays, element i of each for one order: $1 top-up
     * ids, $2 lease tokens, then as below; they return the orders written.
     * PostgreSQL may plan them at every call (custom plans: the arrays'
     * lengths vary), so they stay as plain as they can.
     */

    /* still on its way: $3 statuses, $4 next checks (ms), $5 last_error */
    { "UPDATE ocdz.orders o SET "
          "status = v.status, "
          "next_check_at = now() + v.ms * interval '1 millisecond', "
          "not_found_count = 0, "
          "last_error = v.error, "
          "last_checked_at = now(), "
          "lease_token = NULL, lease_until = NULL "
      "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
                  "$5::text[]) AS v(topup_id, lease, status, ms, error) "
      "WHERE o.topup_id = v.topup_id AND o.lease_token = v.lease "
      "AND o.status NOT IN " NGX_OCDZ_POLLER_FINAL " "
      "AND " NGX_OCDZ_POLLER_ASYNC("6") " "
      "RETURNING o.topup_id",
      6 },

    /* the check failed, not the order: $3 last_error, $4 next (ms) */
    { "UPDATE ocdz.orders o SET "
          "last_error = v.error, "
          "next_check_at = now() + v.ms * interval '1 millisecond', "
          "last_checked_at = now(), "
          "lease_token = NULL, lease_until = NULL "
      "FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
          "AS v(topup_id, lease, error, ms) "
      "WHERE o.topup_id = v.topup_id AND o.lease_token = v.lease "
      "AND o.status NOT IN " NGX_OCDZ_POLLER_FINAL " "
      "AND " NGX_OCDZ_POLLER_ASYNC("5") " "
      "RETURNING o.topup_id",
      5 },

    /* final: refunded upstream; $3 refund_message or NULL */
    { "UPDATE ocdz.orders o SET "
          "status = 'REFUNDED', "
          "refund_message = v.message, "
          "last_error = NULL, "
          "last_checked_at = now(), "
          "lease_token = NULL, lease_until = NULL "
      "FROM unnest($1::text[], $2::text[], $3::text[]) "
          "AS v(topup_id, lease, message) "
      "WHERE o.topup_id = v.topup_id AND o.lease_token = v.lease "
      "AND o.status NOT IN " NGX_OCDZ_POLLER_FINAL " "
      "AND " NGX_OCDZ_POLLER_ASYNC("4") " "
      "RETURNING o.topup_id",
      4 },

    /* final: the cards, sealed, and their audit rows, together or not at
     * all; $3 card_enc, $4 num_trans, $5 date_traitement */
    { "WITH upd AS ("
          "UPDATE ocdz.orders o SET "
              "status = 'FULFILLED', "
              "card_enc = v.card, "
              "num_trans = v.num_trans, "
              "date_traitement = v.date, "
              "fulfilled_at = now(), "
              "last_error = NULL, "
              "last_checked_at = now(), "
              "lease_token = NULL, lease_until = NULL "
          "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
                      "$5::text[]) AS v(topup_id, lease, card, num_trans, "
                                       "date) "
          "WHERE o.topup_id = v.topup_id AND o.lease_token = v.lease "
          "AND o.status NOT IN " NGX_OCDZ_POLLER_FINAL " "
          "AND " NGX_OCDZ_POLLER_ASYNC("6") " "
          "RETURNING o.topup_id, o.user_id, o.attempts), "
      "audit AS ("
          "INSERT INTO ocdz.audit (event, topup_id, user_id, method, "
                                  "detail) "
          "SELECT 'CARD_STORED', topup_id, user_id, 'poller', "
              "'FULFILLED upstream; stored after ' || attempts "
              "|| ' checks' "
          "FROM upd) "
      "SELECT topup_id FROM upd",
      6 },

    /* 404 NOT_FOUND: $3 checks before ERROR, $4 next check (ms) */
    { "UPDATE ocdz.orders SET "
          "not_found_count = not_found_count + 1, "
          "status = CASE WHEN not_found_count + 1 >= $3::integer "
                        "THEN 'ERROR' ELSE status END, "
          "last_error = CASE WHEN not_found_count + 1 >= $3::integer "
                        "THEN 'not found upstream after ' "
                             "|| (not_found_count + 1) || ' checks' "
                        "ELSE 'not found upstream (' "
                             "|| (not_found_count + 1) || ' of ' "
                             "|| $3::integer || ')' END, "
          "next_check_at = now() + $4::bigint * interval '1 millisecond', "
          "last_checked_at = now(), "
          "lease_token = NULL, lease_until = NULL "
      "WHERE topup_id = $1 AND lease_token = $2 "
      "AND status NOT IN " NGX_OCDZ_POLLER_FINAL " "
      "AND " NGX_OCDZ_POLLER_ASYNC("5") " "
      "RETURNING status, not_found_count",
      5 },

    /* not the order's fault: give the lease back (the claim's attempt
     * does not count) and, when $4 > 0, pause every check for $4 ms
     * with reason $5; $3 last_error */
    { "WITH rel AS ("
          "UPDATE ocdz.orders SET "
              "attempts = greatest(attempts - 1, 0), "
              "last_error = $3, "
              "last_checked_at = now(), "
              "lease_token = NULL, lease_until = NULL "
          "WHERE topup_id = $1 AND lease_token = $2 "
          "AND status NOT IN " NGX_OCDZ_POLLER_FINAL " "
          "AND " NGX_OCDZ_POLLER_ASYNC("6") " "
          "RETURNING 1), "
      "pause AS ("
          "UPDATE ocdz.poller_state SET "
              "paused_until = greatest(coalesce(paused_until, now()), "
                  "now() + $4::bigint * interval '1 millisecond'), "
              "pause_reason = $5, "
              "updated_at = now() "
          "WHERE id = 1 AND $4::bigint > 0 "
          "AND " NGX_OCDZ_POLLER_ASYNC("6") " "
          "RETURNING 1) "
      "SELECT (SELECT count(*) FROM rel), (SELECT count(*) FROM pause)",
      6 },

    /*
     * a write-back that wrote nothing: if the order was closed meanwhile
     * (by support staff, the storefront), its lease is given back and
     * nothing else; if the lease was taken over, nothing at all
     */
    { "UPDATE ocdz.orders SET lease_token = NULL, lease_until = NULL "
      "WHERE topup_id = $1 AND lease_token = $2 "
      "AND status IN " NGX_OCDZ_POLLER_FINAL " "
      "AND " NGX_OCDZ_POLLER_ASYNC("3"),
      3 }
};


static ngx_ocdz_poller_t      ngx_ocdz_poller;
static ocdz_upstream_reply_t  ngx_ocdz_poller_parsed;  /* wiped after use */


char *
ngx_ocdz_poller_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    u_char      a[NGX_INT64_LEN + 4], b[NGX_INT64_LEN + 4];
    ngx_uint_t  i;

    if (!omcf->poller) {
        return NGX_CONF_OK;
    }

    if (omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_poller on\" needs \"ocdz_db\": orders "
                           "are claimed and updated in PostgreSQL");
        return NGX_CONF_ERROR;
    }

    if (omcf->keyring == NULL || omcf->keyring->nkeys == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_poller on\" needs \"ocdz_card_key\": "
                           "the cards it stores are encrypted");
        return NGX_CONF_ERROR;
    }

    if (omcf->api_token[0].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_poller on\" needs "
                           "\"ocdz_api_token_file\": the OneClickDz API "
                           "wants an access token");
        return NGX_CONF_ERROR;
    }

    if (omcf->api_base.len <= sizeof("https://") - 1
        || ngx_strncasecmp(omcf->api_base.data, (u_char *) "https://",
                           sizeof("https://") - 1)
           != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_poller on\" needs an https:// "
                           "\"ocdz_api_base\"");
        return NGX_CONF_ERROR;
    }

    if (omcf->poller_lease <= omcf->api_timeout) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_poller_lease %s must be longer than "
                           "ocdz_api_timeout %s: a check must end before "
                           "another worker may take its order over",
                           ngx_ocdz_poller_msec(a, sizeof(a),
                                                omcf->poller_lease),
                           ngx_ocdz_poller_msec(b, sizeof(b),
                                                omcf->api_timeout));
        return NGX_CONF_ERROR;
    }

    if (omcf->poller_interval < NGX_OCDZ_POLLER_INTERVAL_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_poller_interval %s is too short: at "
                           "least %dms",
                           ngx_ocdz_poller_msec(a, sizeof(a),
                                                omcf->poller_interval),
                           NGX_OCDZ_POLLER_INTERVAL_MIN);
        return NGX_CONF_ERROR;
    }

    if (omcf->poller_concurrency == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_poller_concurrency must be at least 1");
        return NGX_CONF_ERROR;
    }

    if (omcf->pg->background_max == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_poller on\" needs at least one "
                           "database connection "
                           "(\"ocdz_poller_db_connections\")");
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < NGX_OCDZ_S_COUNT; i++) {
        if (ngx_ocdz_pg_add_stmt(cf, omcf->pg, ngx_ocdz_poller_sql[i].sql,
                                 ngx_ocdz_poller_sql[i].nparams)
            == NGX_ERROR)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_ocdz_poller_init_process(ngx_http_ocdz_worker_t *w)
{
    ngx_cycle_t                *cycle = w->cycle;
    ngx_http_ocdz_main_conf_t  *omcf = w->omcf;
    u_char              *buf;
    size_t               len;
    ngx_uint_t           i;
    ngx_msec_t           first;
    ngx_ocdz_poller_t   *p;
    struct curl_slist   *list, *next;

    p = &ngx_ocdz_poller;

    if (!omcf->poller || p->started) {
        return NGX_OK;
    }

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_memzero(p, sizeof(ngx_ocdz_poller_t));

    p->omcf = omcf;
    p->log = cycle->log;

    ngx_queue_init(&p->free);
    ngx_queue_init(&p->ready);
    ngx_queue_init(&p->finished);
    ngx_queue_init(&p->waiting);
    ngx_queue_init(&p->batch.slots);

    if (ngx_ocdz_poller_find_stmts(p) != NGX_OK) {
        return NGX_ERROR;
    }

    p->cipher = w->cipher;
    p->pg = w->pg;
    p->curl = w->curl;
    w->poller = (void *) p;

    /* the URL: base, path, then the id written in place per check */

    p->url_prefix = omcf->api_base.len + sizeof(NGX_OCDZ_POLLER_PATH) - 1;

    p->url = ngx_alloc(p->url_prefix + OCDZ_TOPUP_ID_MAX + 1, cycle->log);
    if (p->url == NULL) {
        goto failed;
    }

    ngx_memcpy(ngx_cpymem(p->url, omcf->api_base.data, omcf->api_base.len),
               NGX_OCDZ_POLLER_PATH, sizeof(NGX_OCDZ_POLLER_PATH) - 1);
    p->url[p->url_prefix] = '\0';

    if (omcf->api_ca_pem.len) {
        p->ca_pem = ngx_alloc(omcf->api_ca_pem.len, cycle->log);
        if (p->ca_pem == NULL) {
            goto failed;
        }

        ngx_memcpy(p->ca_pem, omcf->api_ca_pem.data, omcf->api_ca_pem.len);
        p->ca_pem_len = omcf->api_ca_pem.len;
    }

    if (omcf->api_proxy.len) {
        p->proxy = ngx_alloc(omcf->api_proxy.len + 1, cycle->log);
        if (p->proxy == NULL) {
            goto failed;
        }

        *ngx_cpymem(p->proxy, omcf->api_proxy.data, omcf->api_proxy.len) =
                                                                        '\0';
    }

    /* one header list per token, shared by every transfer */

    for (i = 0; i < 2; i++) {
        if (omcf->api_token[i].len == 0) {
            continue;
        }

        len = sizeof("X-Access-Token: ") - 1 + omcf->api_token[i].len + 1;

        buf = ngx_alloc(len, cycle->log);
        if (buf == NULL) {
            goto failed;
        }

        *ngx_sprintf(buf, "X-Access-Token: %V", &omcf->api_token[i]) = '\0';

        list = curl_slist_append(NULL, "Accept: application/json");
        next = list ? curl_slist_append(list, (char *) buf) : NULL;

        ocdz_wipe(buf, len);
        ngx_free(buf);

        if (next == NULL) {
            if (list) {
                curl_slist_free_all(list);
            }
            goto failed;
        }

        p->headers[i] = list;
        p->ntokens++;
    }

    p->conc = omcf->poller_concurrency;
    p->nslots = p->conc * NGX_OCDZ_POLLER_AHEAD;

    p->slots = ngx_calloc(p->nslots * sizeof(ngx_ocdz_poller_slot_t),
                          cycle->log);
    if (p->slots == NULL) {
        goto failed;
    }

    for (i = 0; i < p->nslots; i++) {
        ngx_queue_insert_tail(&p->free, &p->slots[i].queue);
    }

    p->tick = ngx_min(omcf->poller_interval, NGX_OCDZ_POLLER_TICK_MAX);

    p->dummy.fd = (ngx_socket_t) -1;

    p->timer.handler = ngx_ocdz_poller_tick;
    p->timer.data = &p->dummy;
    p->timer.log = cycle->log;
    p->timer.cancelable = 1;

    p->run.handler = ngx_ocdz_poller_run;
    p->run.data = &p->dummy;
    p->run.log = cycle->log;
    p->run.cancelable = 1;

    p->batch.timer.handler = ngx_ocdz_poller_batch_timer;
    p->batch.timer.data = &p->dummy;
    p->batch.timer.log = cycle->log;
    p->batch.timer.cancelable = 1;

    p->sync_commit = omcf->poller_sync_commit ? NULL : "off";

    p->started = 1;

    /* workers started together do not claim together */

    first = 100 + (ngx_msec_t) ngx_random() % p->tick;
    ngx_add_timer(&p->timer, first);

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, cycle->log, 0,
                   "ocdz poller: first tick in %M ms", first);

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                  "ocdz poller: cannot start");

    p->started = 1;
    ngx_ocdz_poller_exit_process(w);

    return NGX_ERROR;
}


void
ngx_ocdz_poller_exit_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t               i;
    ngx_ocdz_poller_t       *p;
    struct curl_slist       *h;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;

    if (!p->started) {
        return;
    }

    p->started = 0;

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }

    if (p->timer.posted) {
        ngx_delete_posted_event(&p->timer);
    }

    if (p->run.timer_set) {
        ngx_del_timer(&p->run);
    }

    if (p->run.posted) {
        ngx_delete_posted_event(&p->run);
    }

    if (p->batch.timer.timer_set) {
        ngx_del_timer(&p->batch.timer);
    }

    if (p->claiming) {
        ngx_ocdz_pg_abandon(&p->claim);
        p->claiming = 0;
    }

    if (p->batch.running) {
        ngx_ocdz_pg_abandon(&p->batch.q);
        p->batch.running = 0;
    }

    if (p->batch.buf) {
        ocdz_wipe(p->batch.buf, p->batch.size);
        ngx_free(p->batch.buf);
    }

    /*
     * leases of orders in flight or claimed ahead simply expire: they
     * are checked again
     */

    for (i = 0; p->slots && i < p->nslots; i++) {
        slot = &p->slots[i];

        switch (slot->state) {

        case NGX_OCDZ_SLOT_CHECKING:
            ngx_ocdz_curl_stop(p->curl, slot->easy);
            break;

        case NGX_OCDZ_SLOT_WRITING:
            if (!ngx_ocdz_poller_batched(slot->stmt)) {
                ngx_ocdz_pg_abandon(&slot->q);
            }
            break;

        default:
            break;
        }

        if (slot->easy) {
            curl_easy_cleanup(slot->easy);
        }

        if (slot->body) {
            ocdz_wipe(slot->body, OCDZ_UPSTREAM_BODY_MAX);
            ngx_free(slot->body);
        }

        ocdz_wipe(slot, sizeof(ngx_ocdz_poller_slot_t));
    }

    if (p->slots) {
        ngx_free(p->slots);
    }

    for (i = 0; i < 2; i++) {
        for (h = p->headers[i]; h; h = h->next) {
            ocdz_wipe(h->data, ngx_strlen(h->data));
        }

        if (p->headers[i]) {
            curl_slist_free_all(p->headers[i]);
        }
    }

    if (p->url) {
        ngx_free(p->url);
    }

    if (p->ca_pem) {
        ngx_free(p->ca_pem);
    }

    if (p->proxy) {
        ngx_free(p->proxy);
    }

    w->poller = NULL;

    ocdz_upstream_reply_wipe(&ngx_ocdz_poller_parsed);

    ngx_memzero(p, sizeof(ngx_ocdz_poller_t));
}


/*
 * Statement indexes belong to the configuration cycle: looked up in this
 * worker's own pool configuration, not kept in statics set while a
 * configuration (maybe one that later failed) was being read.
 */

static ngx_int_t
ngx_ocdz_poller_find_stmts(ngx_ocdz_poller_t *p)
{
    size_t               len;
    ngx_uint_t           i, j;
    ngx_ocdz_pg_conf_t  *pgcf;

    pgcf = p->omcf->pg;

    for (i = 0; i < NGX_OCDZ_S_COUNT; i++) {
        len = ngx_strlen(ngx_ocdz_poller_sql[i].sql);

        for (j = 0; j < pgcf->nstmts; j++) {
            if (pgcf->stmts[j].sql.len == len
                && ngx_strncmp(pgcf->stmts[j].sql.data,
                               ngx_ocdz_poller_sql[i].sql, len)
                   == 0)
            {
                break;
            }
        }

        if (j == pgcf->nstmts) {
            ngx_log_error(NGX_LOG_EMERG, p->log, 0,
                          "ocdz poller: statement %ui is not registered",
                          i);
            return NGX_ERROR;
        }

        p->stmt[i] = j;
    }

    return NGX_OK;
}


/* "15s" or "1500ms", NUL-terminated, for messages */

static char *
ngx_ocdz_poller_msec(u_char *buf, size_t size, ngx_msec_t ms)
{
    u_char  *last;

    if (ms % 1000 == 0) {
        last = ngx_snprintf(buf, size - 1, "%Ms", ms / 1000);

    } else {
        last = ngx_snprintf(buf, size - 1, "%Mms", ms);
    }

    *last = '\0';

    return (char *) buf;
}


static ngx_uint_t
ngx_ocdz_poller_exiting(void)
{
    return ngx_exiting || ngx_quit || ngx_terminate;
}


/* the timer: resend declined write-backs first, then claim */

static void
ngx_ocdz_poller_tick(ngx_event_t *ev)
{
    ngx_uint_t          room;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!p->started || ngx_ocdz_poller_exiting()) {
        return;
    }

    room = p->nslots - p->busy;

    if (room == 0) {
        /* a freed slot claims again, see ngx_ocdz_poller_slot_done() */
        p->backlog = 1;
        ngx_ocdz_poller_resend();
        ngx_ocdz_poller_arm(p->tick);
        return;
    }

    /* the claim goes first: waiting write-backs go in one batch anyway */

    p->want_claim = 1;
    ngx_ocdz_poller_pump();

    if (p->want_claim) {
        /* declined: a query of ours that ends claims, or the next tick */

        if (p->pg_running == 0) {
            p->want_claim = 0;
        }

        ngx_ocdz_poller_arm(p->tick);
    }
}


/*
 * After a query of ours: a claim that was declined for it goes now,
 * then the write-backs waiting.
 */

static void
ngx_ocdz_poller_pump(void)
{
    ngx_uint_t          room;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!p->started) {
        return;
    }

    if (p->want_claim && !p->claiming && !ngx_ocdz_poller_exiting()) {
        room = p->nslots - p->busy;

        if (room == 0 || ngx_ocdz_poller_claim(room) == NGX_OK) {
            p->want_claim = 0;
        }
    }

    ngx_ocdz_poller_resend();
}


/* the next tick, a little randomised; never while a claim runs */

static void
ngx_ocdz_poller_arm(ngx_msec_t delay)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!p->started || p->claiming || ngx_ocdz_poller_exiting()) {
        return;
    }

    if (delay >= 8) {
        delay += (ngx_msec_t) ngx_random() % (delay / 8);
    }

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }

    ngx_add_timer(&p->timer, delay);
}


/* slots freed after a full claim: claim again soon, not a tick later */

static void
ngx_ocdz_poller_kick(void)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!p->backlog || p->claiming || !p->started
        || ngx_ocdz_poller_exiting())
    {
        return;
    }

    if (p->timer.timer_set
        && (ngx_msec_int_t) (p->timer.timer.key - ngx_current_msec)
           <= NGX_OCDZ_POLLER_KICK)
    {
        return;
    }

    if (p->timer.timer_set) {
        ngx_del_timer(&p->timer);
    }

    ngx_add_timer(&p->timer, NGX_OCDZ_POLLER_KICK);
}


static ngx_int_t
ngx_ocdz_poller_claim(ngx_uint_t limit)
{
    u_char                rnd[NGX_OCDZ_POLLER_LEASE_BYTES];
    ngx_int_t             rc;
    ngx_ocdz_poller_t    *p;
    ngx_ocdz_pg_query_t  *q;

    p = &ngx_ocdz_poller;

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: RAND_bytes() failed");
        return NGX_ERROR;
    }

    *ngx_hex_dump((u_char *) p->claim_lease, rnd, sizeof(rnd)) = '\0';
    *ngx_sprintf((u_char *) p->claim_n, "%ui", limit) = '\0';
    *ngx_sprintf((u_char *) p->claim_ms, "%M", p->omcf->poller_lease) =
                                                                        '\0';

    p->claim_limit = limit;

    q = &p->claim;
    ngx_ocdz_poller_query_init(q, NGX_OCDZ_S_CLAIM,
                               ngx_ocdz_poller_claim_handler, p);

    q->nparams = 4;
    q->values[0] = p->claim_n;
    q->values[1] = p->claim_lease;
    q->values[2] = p->claim_ms;
    q->values[3] = p->sync_commit;

    rc = ngx_ocdz_pg_send(p->pg, q);

    if (rc != NGX_OK) {
        /* our own write-backs may fill the background share: no outage */
        if (p->pg_running == 0) {
            ngx_ocdz_poller_db_error(NGX_OCDZ_S_CLAIM,
                                     NGX_OCDZ_PG_UNAVAILABLE, NULL);
        }

        return NGX_DECLINED;
    }

    p->claiming = 1;
    p->pg_running++;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: claiming up to %ui orders", limit);

    return NGX_OK;
}


static void
ngx_ocdz_poller_claim_handler(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    int                      n, i;
    char                    *v;
    size_t                   len;
    ngx_int_t                attempts, not_found;
    ngx_queue_t             *fq;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = q->data;

    p->claiming = 0;
    p->pg_running--;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        ngx_ocdz_poller_db_error(NGX_OCDZ_S_CLAIM, rc, res);
        ngx_ocdz_poller_resend();
        ngx_ocdz_poller_arm(p->tick);
        return;
    }

    ngx_ocdz_poller_db_ok(NGX_OCDZ_S_CLAIM);

    n = PQntuples(res);

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: claimed %d orders", n);

    if (ngx_ocdz_poller_exiting()) {
        /* leases expire; another worker checks these */
        return;
    }

    for (i = 0; i < n; i++) {

        if (ngx_queue_empty(&p->free)) {
            /* cannot happen: we claim at most the free slots */
            break;
        }

        fq = ngx_queue_head(&p->free);
        slot = ngx_queue_data(fq, ngx_ocdz_poller_slot_t, queue);

        v = PQgetvalue(res, i, 0);
        len = PQgetlength(res, i, 0);

        if (len > OCDZ_TOPUP_ID_MAX) {
            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: a claimed top-up id is too long");
            continue;
        }

        ngx_queue_remove(fq);
        ngx_queue_init(fq);
        p->busy++;

        ngx_memcpy(slot->topup_id, v, len);
        slot->topup_id[len] = '\0';
        ngx_memcpy(slot->lease, p->claim_lease, sizeof(slot->lease));

        attempts = ngx_atoi((u_char *) PQgetvalue(res, i, 1),
                            PQgetlength(res, i, 1));
        not_found = ngx_atoi((u_char *) PQgetvalue(res, i, 2),
                             PQgetlength(res, i, 2));

        slot->attempts = attempts == NGX_ERROR ? 0 : attempts;
        slot->not_found = not_found == NGX_ERROR ? 0 : not_found;

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, p->log, 0,
                       "ocdz poller: top-up %s (%s), attempt %i",
                       slot->topup_id, PQgetvalue(res, i, 3),
                       slot->attempts);

        slot->state = NGX_OCDZ_SLOT_READY;
        ngx_queue_insert_tail(&p->ready, &slot->queue);
        p->nready++;
    }

    /* started from the run event, a slice at a time */
    ngx_ocdz_poller_schedule();

    p->backlog = ((ngx_uint_t) n >= p->claim_limit);

    if (p->backlog && p->busy < p->nslots) {
        ngx_ocdz_poller_arm(NGX_OCDZ_POLLER_KICK);

    } else {
        ngx_ocdz_poller_arm(p->tick);
    }

    ngx_ocdz_poller_pump();
}


/*
 * Starts checks of claimed orders while fewer than poller_concurrency
 * run, at most NGX_OCDZ_POLLER_SLICE a millisecond: checks started
 * together end together (the API answers in about the same time), and
 * a burst after a claim would come back as a burst of replies. During
 * a pause decided here the orders claimed ahead are given back instead:
 * their attempt does not count.
 */

static void
ngx_ocdz_poller_start_ready(void)
{
    ngx_queue_t             *q;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;

    if (p->start_msec != ngx_current_msec) {
        p->start_msec = ngx_current_msec;
        p->start_n = 0;
    }

    while (p->started && !ngx_queue_empty(&p->ready)
           && p->checking < p->conc
           && p->start_n < NGX_OCDZ_POLLER_SLICE
           && !ngx_ocdz_poller_exiting())
    {
        p->start_n++;

        q = ngx_queue_head(&p->ready);
        ngx_queue_remove(q);
        ngx_queue_init(q);
        p->nready--;

        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        if ((ngx_msec_int_t) (p->paused_until - ngx_current_msec) > 0) {
            slot->state = NGX_OCDZ_SLOT_WRITING;
            slot->finished = ngx_current_msec;
            slot->stmt = NGX_OCDZ_S_RELEASE;
            slot->delay = 0;
            ngx_cpystrn((u_char *) slot->p_reason,
                        (u_char *) "checks paused", sizeof(slot->p_reason));
            ngx_memcpy(slot->p_error, slot->p_reason,
                       sizeof(slot->p_error));
            ngx_ocdz_poller_write(slot);
            continue;
        }

        ngx_ocdz_poller_check(slot);
    }
}


/* one check: GET {base}/v3/internet/check-id/{id} */

static void
ngx_ocdz_poller_check(ngx_ocdz_poller_slot_t *slot)
{
    CURL               *easy;
    size_t              len;
    CURLcode            rc;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    slot->state = NGX_OCDZ_SLOT_WRITING;
    slot->finished = ngx_current_msec;

    len = ngx_strlen(slot->topup_id);

    if (!ocdz_topup_id_valid(slot->topup_id, len)) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: an order has an invalid top-up id; "
                      "it is not checked");
        ngx_ocdz_poller_fault(slot, "invalid top-up id in the database");
        ngx_ocdz_poller_write(slot);
        return;
    }

    easy = ngx_ocdz_poller_easy(slot);
    if (easy == NULL) {
        ngx_ocdz_poller_fault(slot, "could not start the check");
        ngx_ocdz_poller_write(slot);
        return;
    }

    ngx_memcpy(p->url + p->url_prefix, slot->topup_id, len + 1);

    slot->token = p->token;
    slot->body_len = 0;
    slot->oversized = 0;
    slot->retry_after = -1;
    slot->curl_err[0] = '\0';

    /* the URL is copied by curl; the header list is shared */

    rc = curl_easy_setopt(easy, CURLOPT_URL, p->url);

    if (rc == CURLE_OK) {
        rc = curl_easy_setopt(easy, CURLOPT_HTTPHEADER,
                              p->headers[slot->token]);
    }

    if (rc != CURLE_OK
        || ngx_ocdz_curl_start(p->curl, easy, ngx_ocdz_poller_done, slot) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: top-up %s: could not start the check",
                      slot->topup_id);
        ngx_ocdz_poller_fault(slot, "could not start the check");
        ngx_ocdz_poller_write(slot);
        return;
    }

    slot->state = NGX_OCDZ_SLOT_CHECKING;
    p->checking++;
}


/* the slot's easy handle, made once with every fixed option */

static CURL *
ngx_ocdz_poller_easy(ngx_ocdz_poller_slot_t *slot)
{
    CURL                       *easy;
    CURLcode                    rc;
    struct curl_blob            ca;
    ngx_ocdz_poller_t          *p;
    ngx_http_ocdz_main_conf_t  *omcf;

    if (slot->easy) {
        return slot->easy;
    }

    p = &ngx_ocdz_poller;
    omcf = p->omcf;

    if (slot->body == NULL) {
        slot->body = ngx_alloc(OCDZ_UPSTREAM_BODY_MAX, p->log);
        if (slot->body == NULL) {
            return NULL;
        }
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        goto failed;
    }

    rc = curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

#define ngx_ocdz_setopt(opt, val)                                            \
    if (rc == CURLE_OK) {                                                    \
        rc = curl_easy_setopt(easy, opt, val);                               \
    }

    ngx_ocdz_setopt(CURLOPT_HTTPGET, 1L);
    ngx_ocdz_setopt(CURLOPT_CONNECTTIMEOUT_MS,
                    (long) omcf->api_connect_timeout);
    ngx_ocdz_setopt(CURLOPT_TIMEOUT_MS, (long) omcf->api_timeout);

#if (LIBCURL_VERSION_NUM >= 0x075500)
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS_STR, "https");
    ngx_ocdz_setopt(CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS, (long) CURLPROTO_HTTPS);
    ngx_ocdz_setopt(CURLOPT_REDIR_PROTOCOLS, (long) CURLPROTO_HTTPS);
#endif

    /* a redirect would carry the access token elsewhere: never followed */
    ngx_ocdz_setopt(CURLOPT_FOLLOWLOCATION, 0L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYPEER, 1L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYHOST, 2L);
    ngx_ocdz_setopt(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);

    if (p->ca_pem) {
        ca.data = p->ca_pem;
        ca.len = p->ca_pem_len;
        ca.flags = CURL_BLOB_NOCOPY;
        ngx_ocdz_setopt(CURLOPT_CAINFO_BLOB, &ca);
    }

    /* "": no proxy from the environment, only ocdz_api_proxy */
    ngx_ocdz_setopt(CURLOPT_PROXY, p->proxy ? p->proxy : "");

    ngx_ocdz_setopt(CURLOPT_USERAGENT, NGX_OCDZ_POLLER_USER_AGENT);
    ngx_ocdz_setopt(CURLOPT_WRITEFUNCTION, ngx_ocdz_poller_body);
    ngx_ocdz_setopt(CURLOPT_WRITEDATA, slot);
    ngx_ocdz_setopt(CURLOPT_HEADERFUNCTION, ngx_ocdz_poller_header);
    ngx_ocdz_setopt(CURLOPT_HEADERDATA, slot);
    ngx_ocdz_setopt(CURLOPT_ERRORBUFFER, slot->curl_err);
    ngx_ocdz_setopt(CURLOPT_PRIVATE, slot);

#undef ngx_ocdz_setopt

    if (rc != CURLE_OK) {
        if (!p->easy_failed) {
            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: curl_easy_setopt() failed: %s",
                          curl_easy_strerror(rc));
            p->easy_failed = 1;
        }

        curl_easy_cleanup(easy);
        return NULL;
    }

    slot->easy = easy;

    return easy;

failed:

    ngx_log_error(NGX_LOG_ERR, p->log, 0,
                  "ocdz poller: curl_easy_init() failed");
    return NULL;
}


/* the body, up to the parser's cap; more aborts the transfer */

static size_t
ngx_ocdz_poller_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t                   n;
    ngx_ocdz_poller_slot_t  *slot;

    slot = userdata;
    n = size * nmemb;

    if (n > OCDZ_UPSTREAM_BODY_MAX - slot->body_len) {
        slot->oversized = 1;
        return 0;
    }

    ngx_memcpy(slot->body + slot->body_len, ptr, n);
    slot->body_len += n;

    return n;
}


/* headers: only Retry-After is read (seconds or an HTTP date) */

static size_t
ngx_ocdz_poller_header(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    u_char                  *p, *last;
    size_t                   n;
    time_t                   t;
    ngx_int_t                s;
    ngx_ocdz_poller_slot_t  *slot;

    slot = userdata;
    n = size * nmemb;

    p = (u_char *) ptr;
    last = p + n;

    /* a new response (after a proxy's CONNECT, or a 1xx) */

    if (n >= 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        slot->retry_after = -1;
        return n;
    }

    if (n <= sizeof("Retry-After:") - 1
        || ngx_strncasecmp(p, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1)
           != 0)
    {
        return n;
    }

    p += sizeof("Retry-After:") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' ' || last[-1] == '\t'))
    {
        last--;
    }

    if (p == last) {
        return n;
    }

    s = ngx_atoi(p, last - p);

    if (s != NGX_ERROR) {
        slot->retry_after = s;
        return n;
    }

    t = ngx_parse_http_time(p, last - p);

    if (t != NGX_ERROR) {
        slot->retry_after = t > ngx_time() ? t - ngx_time() : 0;
    }

    return n;
}


/*
 * A transfer ended (called by ngx_ocdz_curl, from an event handler):
 * the reply is handled later, from the run event.
 */

static void
ngx_ocdz_poller_done(CURL *easy, CURLcode rc, void *data)
{
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;
    slot = data;

    if (slot->state == NGX_OCDZ_SLOT_CHECKING) {
        p->checking--;
    }

    slot->state = NGX_OCDZ_SLOT_FINISHED;
    slot->finished = ngx_current_msec;
    slot->rc = rc;
    slot->http = 0;
    (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &slot->http);

    ngx_queue_insert_tail(&p->finished, &slot->queue);

    ngx_ocdz_poller_schedule();
}


/*
 * The run event goes in the next turn of the event loop (after its
 * network events: requests come first) when replies wait, or in a
 * millisecond when only the pace holds checks back.
 */

static void
ngx_ocdz_poller_schedule(void)
{
    ngx_uint_t          startable, paced;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!p->started || p->run.posted) {
        return;
    }

    startable = !ngx_queue_empty(&p->ready) && p->checking < p->conc
                && !ngx_ocdz_poller_exiting();

    paced = (p->start_msec == ngx_current_msec
             && p->start_n >= NGX_OCDZ_POLLER_SLICE);

    if (!ngx_queue_empty(&p->finished) || (startable && !paced)) {
#if (nginx_version >= 1017005)
        ngx_post_event(&p->run, &ngx_posted_next_events);
#else
        if (!p->run.timer_set) {
            ngx_add_timer(&p->run, 1);
        }
#endif
        return;
    }

    if (startable && !p->run.timer_set) {
        ngx_add_timer(&p->run, 1);
    }
}


/* a slice of replies, then the checks that may start */

static void
ngx_ocdz_poller_run(ngx_event_t *ev)
{
    ngx_uint_t               n;
    ngx_queue_t             *q;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;

    if (!p->started) {
        return;
    }

    if (p->run.timer_set) {
        ngx_del_timer(&p->run);
    }

    for (n = 0; n < NGX_OCDZ_POLLER_SLICE; n++) {

        if (ngx_queue_empty(&p->finished)) {
            break;
        }

        q = ngx_queue_head(&p->finished);
        ngx_queue_remove(q);
        ngx_queue_init(q);

        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        ngx_ocdz_poller_finish(slot);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: %ui replies handled, %s",
                   n, ngx_queue_empty(&p->finished) ? "none left"
                                                    : "more next turn");

    /* the orders claimed ahead take the freed places */
    ngx_ocdz_poller_start_ready();

    /* the write-backs go in batches: see ngx_ocdz_poller_batch_send() */
    if (ngx_queue_empty(&p->finished)) {
        (void) ngx_ocdz_poller_batch_send();
    }

    ngx_ocdz_poller_schedule();
}


/* one reply: one transition, then the body is wiped */

static void
ngx_ocdz_poller_finish(ngx_ocdz_poller_slot_t *slot)
{
    CURLcode  rc;
    long      http;

    slot->state = NGX_OCDZ_SLOT_WRITING;

    rc = slot->rc;
    http = slot->http;

    if (rc != CURLE_OK) {

        if (slot->oversized) {
            ngx_ocdz_poller_fault(slot, "oversized reply (HTTP %l, over "
                                  "%d bytes)", http, OCDZ_UPSTREAM_BODY_MAX);

        } else if (rc == CURLE_OPERATION_TIMEDOUT) {
            ngx_ocdz_poller_fault(slot, "timed out (%s)",
                                  slot->curl_err[0] ? slot->curl_err
                                  : curl_easy_strerror(rc));

        } else {
            ngx_ocdz_poller_fault(slot, "%s (curl %d)",
                                  slot->curl_err[0] ? slot->curl_err
                                  : curl_easy_strerror(rc), (int) rc);
        }

    } else {
        ngx_ocdz_poller_reply(slot, http);
    }

    /* it may hold a card code */
    ocdz_wipe(slot->body, slot->body_len);
    slot->body_len = 0;

    ngx_ocdz_poller_write(slot);
}


static void
ngx_ocdz_poller_reply(ngx_ocdz_poller_slot_t *slot, long http)
{
    int                     rc;
    char                    err[128];
    char                    code[NGX_OCDZ_POLLER_CODE_MAX + 1];
    ngx_msec_t              pause;
    ngx_ocdz_poller_t      *p;
    ocdz_upstream_reply_t  *reply;

    p = &ngx_ocdz_poller;
    reply = &ngx_ocdz_poller_parsed;

    rc = ocdz_upstream_parse(slot->body, slot->body_len, reply, err,
                             sizeof(err));

    /* an error code, when the body has one, helps whoever reads logs */

    code[0] = '\0';

    if (rc == OCDZ_UP_OK && http != 200) {
        ngx_ocdz_poller_code(reply->error_code, code, sizeof(code));
    }

    if (http == 200) {
        if (rc != OCDZ_UP_OK) {
            ngx_ocdz_poller_fault(slot, "unusable reply: %s", err);

        } else {
            ngx_ocdz_poller_reply_200(slot, reply);
        }

    } else if (http >= 300 && http < 400) {
        ngx_ocdz_poller_pause(slot, p->omcf->poller_pause,
                              "the API answered with a redirect (HTTP %l), "
                              "never followed: check ocdz_api_base", http);

    } else if (http == 401) {
        ngx_ocdz_poller_unauthorized(slot, code);

    } else if (http == 403) {
        ngx_ocdz_poller_pause(slot, p->omcf->poller_pause,
                              "the API refused access (HTTP 403%s%s): "
                              "check the IP allow-list, the balance and "
                              "the key's permissions",
                              code[0] ? " " : "", code);

    } else if (http == 429) {
        if (slot->retry_after >= 0) {
            pause = (ngx_msec_t) ngx_max(slot->retry_after, 1) * 1000;

            if ((time_t) (p->omcf->poller_retry_after_max / 1000)
                < slot->retry_after)
            {
                pause = p->omcf->poller_retry_after_max;
            }

        } else {
            pause = p->omcf->poller_pause;
        }

        ngx_ocdz_poller_pause(slot, pause,
                              "the API is rate limiting (HTTP 429%s%s)",
                              code[0] ? " " : "", code);

    } else if (http == 404) {
        if (rc == OCDZ_UP_OK && reply->success == 0 && reply->has_error
            && ngx_ocdz_poller_code_is(reply->error_code, "NOT_FOUND"))
        {
            ngx_memzero(slot->p_error, sizeof(slot->p_error));
            slot->stmt = NGX_OCDZ_S_NOT_FOUND;
            slot->delay = ngx_ocdz_poller_backoff(slot,
                                                 p->omcf->poller_interval);

            ngx_log_error(NGX_LOG_WARN, p->log, 0,
                          "ocdz poller: top-up %s: not found upstream "
                          "(HTTP 404 NOT_FOUND, %i before)",
                          slot->topup_id, slot->not_found);

        } else if (rc != OCDZ_UP_OK || reply->success == -1
                   || !reply->has_error)
        {
            ngx_ocdz_poller_pause(slot, p->omcf->poller_pause,
                                  "the API answered HTTP 404 without its "
                                  "envelope: check ocdz_api_base");

        } else {
            ngx_ocdz_poller_fault(slot, "HTTP 404%s%s",
                                  code[0] ? " " : "", code);
        }

    } else {
        ngx_ocdz_poller_fault(slot, "HTTP %l%s%s", http,
                              code[0] ? " " : "", code);
    }

    ocdz_upstream_reply_wipe(reply);
}


static void
ngx_ocdz_poller_reply_200(ngx_ocdz_poller_slot_t *slot,
    ocdz_upstream_reply_t *reply)
{
    size_t              idlen;
    ngx_uint_t          final;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (reply->success != 1) {
        ngx_ocdz_poller_fault(slot, "reply without \"success\": true");
        return;
    }

    if (!reply->has_data) {
        ngx_ocdz_poller_fault(slot, "reply without \"data\"");
        return;
    }

    final = (reply->status == OCDZ_ST_FULFILLED
             || reply->status == OCDZ_ST_REFUNDED);

    /* a reply about another order must not change this one */

    idlen = ngx_strlen(reply->id);

    if (idlen == 0) {
        if (final) {
            ngx_ocdz_poller_fault(slot, "%s reply without data._id",
                                  ocdz_status_str(reply->status));
            return;
        }

    } else if (idlen != ngx_strlen(slot->topup_id)
               || ngx_strncasecmp((u_char *) reply->id,
                                  (u_char *) slot->topup_id, idlen)
                  != 0)
    {
        ngx_ocdz_poller_fault(slot, "the reply is about another order");
        return;
    }

    switch (reply->status) {

    case OCDZ_ST_FULFILLED:
        ngx_ocdz_poller_fulfilled(slot, reply);
        return;

    case OCDZ_ST_REFUNDED:
        slot->stmt = NGX_OCDZ_S_REFUNDED;
        ngx_ocdz_poller_copy_text(slot->p_text, sizeof(slot->p_text),
                                  reply->refund_message);
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: top-up %s was refunded upstream",
                      slot->topup_id);
        return;

    case OCDZ_ST_PENDING:
    case OCDZ_ST_HANDLING:
    case OCDZ_ST_QUEUED:
    case OCDZ_ST_UNKNOWN_ERROR:
        ngx_ocdz_poller_progress(slot, reply->status);
        return;

    case OCDZ_ST_NONE:
        ngx_ocdz_poller_fault(slot, "reply without data.status");
        return;

    default:
        ngx_ocdz_poller_fault(slot, "unknown status in the reply");
        return;
    }
}


/* the card: sealed to this order, stored with its audit row */

static void
ngx_ocdz_poller_fulfilled(ngx_ocdz_poller_slot_t *slot,
    ocdz_upstream_reply_t *reply)
{
    int                 rc;
    size_t              len;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (!reply->has_card_code || reply->card_code_len == 0) {
        ngx_ocdz_poller_fault(slot, "FULFILLED without card_code: "
                              "upstream error, checked again");
        return;
    }

    rc = ocdz_seal(p->cipher, p->omcf->keyring, slot->topup_id,
                   ngx_strlen(slot->topup_id),
                   (unsigned char *) reply->card_code, reply->card_code_len,
                   slot->p_card, sizeof(slot->p_card), &len);

    if (rc != OCDZ_OK) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: top-up %s: cannot seal the card: %s",
                      slot->topup_id, ocdz_rc_str(rc));
        ngx_ocdz_poller_fault(slot, "could not encrypt the card (%s)",
                              ocdz_rc_str(rc));
        return;
    }

    ngx_ocdz_poller_copy_text(slot->p_num_trans, sizeof(slot->p_num_trans),
                              reply->num_trans);
    ngx_ocdz_poller_copy_text(slot->p_date, sizeof(slot->p_date),
                              reply->date_traitement);

    slot->stmt = NGX_OCDZ_S_FULFILLED;
}


/*
 * 401: the other token if there is one (this worker switches, once);
 * with none left, every check pauses and the next try starts again
 * from the primary.
 */

static void
ngx_ocdz_poller_unauthorized(ngx_ocdz_poller_slot_t *slot,
    const char *code)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (slot->token == 0 && p->headers[1]) {

        if (p->token == 0) {
            p->token = 1;

            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: OneClickDz rejected the primary "
                          "access token (HTTP 401%s%s); using the "
                          "secondary", code[0] ? " " : "", code);
        }

        ngx_ocdz_poller_pause(slot, 0, "access token rejected (HTTP 401); "
                              "checked again with the secondary token");
        return;
    }

    if (slot->token == p->token) {
        p->token = 0;
    }

    ngx_ocdz_poller_pause(slot, p->omcf->poller_pause,
                          "OneClickDz rejected the %saccess token "
                          "(HTTP 401%s%s): check ocdz_api_token_file",
                          p->ntokens > 1 ? "secondary " : "",
                          code[0] ? " " : "", code);
}


static void
ngx_ocdz_poller_progress(ngx_ocdz_poller_slot_t *slot, ocdz_status_e status)
{
    ngx_msec_t          delay;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (status == OCDZ_ST_QUEUED) {
        delay = p->omcf->poller_queued_interval;

    } else {
        delay = ngx_ocdz_poller_backoff(slot, p->omcf->poller_interval);
    }

    slot->stmt = NGX_OCDZ_S_PROGRESS;
    slot->delay = delay;
    ngx_cpystrn((u_char *) slot->p_status, (u_char *) ocdz_status_str(status),
                sizeof(slot->p_status));
    ngx_memzero(slot->p_error, sizeof(slot->p_error));

    ngx_log_error(NGX_LOG_INFO, p->log, 0,
                  "ocdz poller: top-up %s is %s, next check in %M ms",
                  slot->topup_id, slot->p_status, delay);
}


/* the check failed: the order keeps its status, tried again later */

static void
ngx_ocdz_poller_fault(ngx_ocdz_poller_slot_t *slot, const char *fmt, ...)
{
    u_char             *last;
    va_list             args;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    va_start(args, fmt);
    last = ngx_vslprintf((u_char *) slot->p_error,
                         (u_char *) slot->p_error + NGX_OCDZ_POLLER_ERR_MAX,
                         fmt, args);
    va_end(args);

    *last = '\0';

    slot->stmt = NGX_OCDZ_S_FAULT;
    slot->delay = ngx_ocdz_poller_backoff(slot, p->omcf->poller_interval);

    ngx_log_error(NGX_LOG_WARN, p->log, 0,
                  "ocdz poller: check of top-up %s failed: %s; next check "
                  "in %M ms", slot->topup_id, slot->p_error, slot->delay);
}


/*
 * Not the order's fault: its lease goes back untouched and, with a
 * pause, no worker of any host checks anything until it ends.
 */

static void
ngx_ocdz_poller_pause(ngx_ocdz_poller_slot_t *slot, ngx_msec_t pause,
    const char *fmt, ...)
{
    u_char             *last;
    va_list             args;
    ngx_uint_t          level;
    ngx_ocdz_poller_t  *p;
    u_char              buf[NGX_INT64_LEN + 4];

    p = &ngx_ocdz_poller;

    va_start(args, fmt);
    last = ngx_vslprintf((u_char *) slot->p_reason,
                         (u_char *) slot->p_reason + NGX_OCDZ_POLLER_ERR_MAX,
                         fmt, args);
    va_end(args);

    *last = '\0';

    slot->stmt = NGX_OCDZ_S_RELEASE;
    slot->delay = pause;

    if (pause) {
        /* orders claimed ahead are given back, not checked */
        p->paused_until = ngx_current_msec + pause;

        last = ngx_snprintf((u_char *) slot->p_error,
                            NGX_OCDZ_POLLER_ERR_MAX,
                            "checks paused: %s", slot->p_reason);
        *last = '\0';

        /* checks in flight together say it together: log it once */

        level = ((ngx_msec_int_t) (p->pause_logged - ngx_current_msec) > 0)
                ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, p->log, 0,
                      "ocdz poller: %s; pausing all checks for %s "
                      "(top-up %s)", slot->p_reason,
                      ngx_ocdz_poller_msec(buf, sizeof(buf), pause),
                      slot->topup_id);

        p->pause_logged = ngx_current_msec + pause;

    } else {
        ngx_memcpy(slot->p_error, slot->p_reason, sizeof(slot->p_error));
    }
}


/*
 * base until poller_backoff_after attempts, then doubling with each
 * attempt, capped at poller_max_backoff (or base, if that is longer)
 */

static ngx_msec_t
ngx_ocdz_poller_backoff(ngx_ocdz_poller_slot_t *slot, ngx_msec_t base)
{
    uint64_t                    d, cap;
    ngx_int_t                   n;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ngx_ocdz_poller.omcf;

    cap = ngx_max(omcf->poller_max_backoff, base);
    d = base;

    n = slot->attempts - (ngx_int_t) omcf->poller_backoff_after;

    while (n-- > 0 && d < cap) {
        d *= 2;
    }

    return (ngx_msec_t) ngx_min(d, cap);
}


/*
 * The transition. The common kinds wait for the next batch; the others
 * go in a statement of their own, and declined ones wait for a resend.
 * Statements take one more parameter than ngx_ocdz_poller_params()
 * gives: synchronous_commit.
 */

static void
ngx_ocdz_poller_write(ngx_ocdz_poller_slot_t *slot)
{
    ngx_int_t             rc;
    ngx_ocdz_poller_t    *p;
    ngx_ocdz_pg_query_t  *q;

    p = &ngx_ocdz_poller;

    if (slot->state == NGX_OCDZ_SLOT_WAITING) {
        ngx_queue_remove(&slot->queue);
        ngx_queue_init(&slot->queue);
    }

    if (ngx_ocdz_poller_batched(slot->stmt)) {
        /* sent by the run event, with the rest of its slice */
        slot->state = NGX_OCDZ_SLOT_WAITING;
        ngx_queue_insert_tail(&p->waiting, &slot->queue);
        return;
    }

    q = &slot->q;
    ngx_ocdz_poller_query_init(q, slot->stmt, ngx_ocdz_poller_write_handler,
                               slot);

    q->nparams = ngx_ocdz_poller_params(slot, q->values);
    q->values[q->nparams++] = p->sync_commit;

    rc = ngx_ocdz_pg_send(p->pg, q);

    if (rc != NGX_OK) {
        slot->state = NGX_OCDZ_SLOT_WAITING;
        ngx_queue_insert_tail(&p->waiting, &slot->queue);

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, p->log, 0,
                       "ocdz poller: top-up %s: write-back waits",
                       slot->topup_id);
        return;
    }

    slot->state = NGX_OCDZ_SLOT_WRITING;
    p->pg_running++;
}


/* the statement's parameters for one order; returns how many */

static int
ngx_ocdz_poller_params(ngx_ocdz_poller_slot_t *slot, const char **v)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    v[0] = slot->topup_id;
    v[1] = slot->lease;

    switch (slot->stmt) {

    case NGX_OCDZ_S_PROGRESS:
        *ngx_sprintf((u_char *) slot->p_ms, "%M", slot->delay) = '\0';
        v[2] = slot->p_status;
        v[3] = slot->p_ms;
        v[4] = slot->p_error[0] ? slot->p_error : NULL;
        return 5;

    case NGX_OCDZ_S_FAULT:
        *ngx_sprintf((u_char *) slot->p_ms, "%M", slot->delay) = '\0';
        v[2] = slot->p_error;
        v[3] = slot->p_ms;
        return 4;

    case NGX_OCDZ_S_REFUNDED:
        v[2] = slot->p_text[0] ? slot->p_text : NULL;
        return 3;

    case NGX_OCDZ_S_FULFILLED:
        v[2] = slot->p_card;
        v[3] = slot->p_num_trans[0] ? slot->p_num_trans : NULL;
        v[4] = slot->p_date[0] ? slot->p_date : NULL;
        return 5;

    case NGX_OCDZ_S_NOT_FOUND:
        *ngx_sprintf((u_char *) slot->p_n, "%ui",
                     p->omcf->poller_not_found_retries) = '\0';
        *ngx_sprintf((u_char *) slot->p_ms, "%M", slot->delay) = '\0';
        v[2] = slot->p_n;
        v[3] = slot->p_ms;
        return 4;

    case NGX_OCDZ_S_UNLEASE:
        return 2;

    default: /* NGX_OCDZ_S_RELEASE */
        *ngx_sprintf((u_char *) slot->p_ms, "%M", slot->delay) = '\0';
        v[2] = slot->p_error;
        v[3] = slot->p_ms;
        v[4] = slot->p_reason;
        return 5;
    }
}


static void
ngx_ocdz_poller_write_handler(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    char                    *status;
    ngx_int_t                n;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;
    slot = q->data;

    p->pg_running--;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        /* the lease expires and the order is checked again */
        ngx_ocdz_poller_db_error(slot->stmt, rc, res);
        goto done;
    }

    ngx_ocdz_poller_db_ok(slot->stmt);

    switch (slot->stmt) {

    case NGX_OCDZ_S_UNLEASE:
        /* written() has said it: "nothing written" */
        goto done;

    case NGX_OCDZ_S_RELEASE:
        n = (PQntuples(res) == 1) ? ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                                             PQgetlength(res, 0, 0))
                                  : 0;
        break;

    case NGX_OCDZ_S_NOT_FOUND:
        n = PQntuples(res);

        if (n == 1) {
            status = PQgetvalue(res, 0, 0);

            if (ngx_strcmp(status, "ERROR") == 0) {
                ngx_log_error(NGX_LOG_WARN, p->log, 0,
                              "ocdz poller: top-up %s: not found upstream "
                              "after %s checks; marked ERROR",
                              slot->topup_id, PQgetvalue(res, 0, 1));
            }
        }

        break;

    default:
        n = ngx_atoi((u_char *) PQcmdTuples(res),
                     ngx_strlen(PQcmdTuples(res)));
        break;
    }

    ngx_ocdz_poller_written(slot, n);

    if (n <= 0) {
        ngx_ocdz_poller_unlease(slot);
        ngx_ocdz_poller_pump();
        return;
    }

done:

    ngx_ocdz_poller_slot_done(slot);
    ngx_ocdz_poller_pump();
}


/*
 * Nothing was written: the lease was taken over, or someone (support
 * staff, the storefront) closed the order meanwhile. A final order gets
 * its lease back, in a statement of its own: this is rare, and the
 * common statements stay cheap to plan.
 */

static void
ngx_ocdz_poller_unlease(ngx_ocdz_poller_slot_t *slot)
{
    slot->stmt = NGX_OCDZ_S_UNLEASE;
    ngx_ocdz_poller_write(slot);
}


static void
ngx_ocdz_poller_written(ngx_ocdz_poller_slot_t *slot, ngx_int_t n)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (n <= 0) {
        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "ocdz poller: top-up %s: lease lost or order final; "
                      "nothing written", slot->topup_id);

    } else if (slot->stmt == NGX_OCDZ_S_FULFILLED) {
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: top-up %s fulfilled; card stored",
                      slot->topup_id);
    }
}


/*
 * Every waiting write-back of one kind (the oldest's) in one statement:
 * arrays of the parameters, one element per order. One batch runs at a
 * time; what comes meanwhile goes in the next. NGX_DECLINED: not now.
 */

/*
 * A background query of one of our statements. Parameters are text:
 * libpq reads them up to their NUL, so no lengths are given.
 */

static void
ngx_ocdz_poller_query_init(ngx_ocdz_pg_query_t *q, ngx_uint_t stmt,
    ngx_ocdz_pg_handler_pt handler, void *data)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    ngx_memzero(q, sizeof(ngx_ocdz_pg_query_t));

    q->stmt = p->stmt[stmt];
    q->background = NGX_OCDZ_PG_BACKGROUND;
    q->handler = handler;
    q->data = data;
    q->log = p->log;
}


static ngx_int_t
ngx_ocdz_poller_batch_send(void)
{
    int                       nparams, i;
    u_char                   *b, *buf;
    size_t                    need, size;
    ngx_int_t                 rc;
    ngx_uint_t                stmt, n;
    ngx_msec_t                oldest, wait;
    ngx_queue_t              *q, *next;
    const char               *v[NGX_OCDZ_PG_MAX_PARAMS];
    ngx_ocdz_poller_t        *p;
    ngx_ocdz_pg_query_t      *pq;
    ngx_ocdz_poller_slot_t   *slot;
    ngx_ocdz_poller_batch_t  *batch;

    p = &ngx_ocdz_poller;
    batch = &p->batch;

    if (batch->running || !p->started) {
        return NGX_DECLINED;
    }

    stmt = NGX_OCDZ_S_COUNT;
    nparams = 0;
    need = 0;
    n = 0;
    oldest = 0;

    for (q = ngx_queue_head(&p->waiting);
         q != ngx_queue_sentinel(&p->waiting);
         q = ngx_queue_next(q))
    {
        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        if (!ngx_ocdz_poller_batched(slot->stmt)
            || (stmt != NGX_OCDZ_S_COUNT && slot->stmt != stmt))
        {
            continue;
        }

        if (stmt == NGX_OCDZ_S_COUNT) {
            oldest = slot->finished;
        }

        stmt = slot->stmt;
        nparams = ngx_ocdz_poller_params(slot, v);

        /* every character escaped, quotes and a comma: the most */

        for (i = 0; i < nparams; i++) {
            need += v[i] ? 2 * ngx_strlen(v[i]) + 3 : sizeof("NULL,") - 1;
        }

        n++;
    }

    if (n == 0) {
        return NGX_OK;
    }

    /*
     * A few write-backs wait a little for others: each statement costs
     * a round trip, a commit and often a plan (the arrays' lengths
     * vary), and checks started at a pace end at a pace, not together.
     */

    wait = oldest + NGX_OCDZ_POLLER_BATCH_WAIT - ngx_current_msec;

    if (n < NGX_OCDZ_POLLER_BATCH_MIN && (ngx_msec_int_t) wait > 0
        && !ngx_ocdz_poller_exiting())
    {
        if (!batch->timer.timer_set) {
            ngx_add_timer(&batch->timer, wait);
        }

        return NGX_DECLINED;
    }

    if (batch->timer.timer_set) {
        ngx_del_timer(&batch->timer);
    }

    need += nparams * sizeof("{}");

    if (need > batch->size) {
        size = ngx_align(need, 16384);

        buf = ngx_alloc(size, p->log);
        if (buf == NULL) {
            return NGX_DECLINED;
        }

        if (batch->buf) {
            ocdz_wipe(batch->buf, batch->size);
            ngx_free(batch->buf);
        }

        batch->buf = buf;
        batch->size = size;
    }

    pq = &batch->q;
    ngx_ocdz_poller_query_init(pq, stmt, ngx_ocdz_poller_batch_handler,
                               batch);

    b = batch->buf;

    for (i = 0; i < nparams; i++) {
        pq->values[i] = (char *) b;
        *b++ = '{';

        n = 0;

        for (q = ngx_queue_head(&p->waiting);
             q != ngx_queue_sentinel(&p->waiting);
             q = ngx_queue_next(q))
        {
            slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

            if (slot->stmt != stmt) {
                continue;
            }

            (void) ngx_ocdz_poller_params(slot, v);
            b = ngx_ocdz_poller_array(b, v[i], n++ == 0);
        }

        *b++ = '}';
        *b++ = '\0';
    }

    batch->used = b - batch->buf;

    pq->values[nparams] = p->sync_commit;
    pq->nparams = nparams + 1;

    rc = ngx_ocdz_pg_send(p->pg, pq);

    if (rc != NGX_OK) {
        ocdz_wipe(batch->buf, batch->used);
        batch->used = 0;
        return NGX_DECLINED;
    }

    batch->stmt = stmt;
    batch->n = n;
    batch->running = 1;
    p->pg_running++;

    for (q = ngx_queue_head(&p->waiting);
         q != ngx_queue_sentinel(&p->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        if (slot->stmt == stmt) {
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&batch->slots, q);
            slot->state = NGX_OCDZ_SLOT_WRITING;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: batch of %ui write-backs, statement %ui",
                   n, stmt);

    return NGX_OK;
}


static void
ngx_ocdz_poller_batch_handler(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    int                       i, nrows;
    ngx_int_t                 n;
    ngx_queue_t              *qu;
    ngx_ocdz_poller_t        *p;
    ngx_ocdz_poller_slot_t   *slot;
    ngx_ocdz_poller_batch_t  *batch;

    p = &ngx_ocdz_poller;
    batch = q->data;

    batch->running = 0;
    p->pg_running--;

    ocdz_wipe(batch->buf, batch->used);
    batch->used = 0;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        /* the leases expire and the orders are checked again */
        ngx_ocdz_poller_db_error(batch->stmt, rc, res);
        nrows = -1;

    } else {
        ngx_ocdz_poller_db_ok(batch->stmt);
        nrows = PQntuples(res);
    }

    while (!ngx_queue_empty(&batch->slots)) {
        qu = ngx_queue_head(&batch->slots);
        ngx_queue_remove(qu);
        ngx_queue_init(qu);

        slot = ngx_queue_data(qu, ngx_ocdz_poller_slot_t, queue);

        if (nrows >= 0) {

            /* the orders written come back by id */

            n = 0;

            for (i = 0; i < nrows; i++) {
                if (ngx_strcmp(PQgetvalue(res, i, 0), slot->topup_id) == 0) {
                    n = 1;
                    break;
                }
            }

            ngx_ocdz_poller_written(slot, n);

            if (n == 0) {
                ngx_ocdz_poller_unlease(slot);
                continue;
            }
        }

        ngx_ocdz_poller_slot_done(slot);
    }

    ngx_ocdz_poller_pump();
}


static void
ngx_ocdz_poller_batch_timer(ngx_event_t *ev)
{
    (void) ngx_ocdz_poller_batch_send();
}


/* one element of an array literal: NULL, or quoted with \ escapes */

static u_char *
ngx_ocdz_poller_array(u_char *p, const char *v, ngx_uint_t first)
{
    if (!first) {
        *p++ = ',';
    }

    if (v == NULL) {
        return ngx_cpymem(p, "NULL", sizeof("NULL") - 1);
    }

    *p++ = '"';

    while (*v) {
        if (*v == '"' || *v == '\\') {
            *p++ = '\\';
        }

        *p++ = (u_char) *v++;
    }

    *p++ = '"';

    return p;
}


/*
 * Write-backs the pool declined go again when a query of ours ends or
 * the timer ticks; one whose lease has run out is given up: it could
 * not match any more, and the order is checked again.
 */

static void
ngx_ocdz_poller_resend(void)
{
    ngx_queue_t             *q, *next;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = &ngx_ocdz_poller;

    if (!p->started) {
        return;
    }

    for (q = ngx_queue_head(&p->waiting);
         q != ngx_queue_sentinel(&p->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        if (ngx_current_msec - slot->finished >= p->omcf->poller_lease) {
            ngx_queue_remove(q);
            ngx_queue_init(q);

            ngx_log_error(NGX_LOG_WARN, p->log, 0,
                          "ocdz poller: top-up %s: result not written, "
                          "the database was unavailable; checked again "
                          "later", slot->topup_id);

            ngx_ocdz_poller_slot_done(slot);
        }
    }

    /* the rare kinds one by one, in order; a declined one stops them */

    for (q = ngx_queue_head(&p->waiting);
         q != ngx_queue_sentinel(&p->waiting);
         q = next)
    {
        next = ngx_queue_next(q);
        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        if (ngx_ocdz_poller_batched(slot->stmt)) {
            continue;
        }

        ngx_ocdz_poller_write(slot);

        if (slot->state == NGX_OCDZ_SLOT_WAITING) {
            break;
        }
    }

    (void) ngx_ocdz_poller_batch_send();
}


static void
ngx_ocdz_poller_slot_done(ngx_ocdz_poller_slot_t *slot)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    ocdz_wipe(slot->p_card, sizeof(slot->p_card));
    ocdz_wipe(slot->p_text, sizeof(slot->p_text));
    ocdz_wipe(slot->p_num_trans, sizeof(slot->p_num_trans));
    ocdz_wipe(slot->p_date, sizeof(slot->p_date));
    ocdz_wipe(slot->lease, sizeof(slot->lease));

    slot->state = NGX_OCDZ_SLOT_FREE;
    ngx_queue_insert_tail(&p->free, &slot->queue);
    p->busy--;

    ngx_ocdz_poller_kick();
}


/*
 * Once per outage: [error] when it starts, [notice] when it ends. A
 * statement the server refuses is logged once until it succeeds again.
 */

static void
ngx_ocdz_poller_db_error(ngx_uint_t stmt, ngx_int_t rc, PGresult *res)
{
    char               *msg;
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    if (rc == NGX_OCDZ_PG_QUERY_ERROR && res) {
        if (p->refused & ((ngx_uint_t) 1 << stmt)) {
            return;
        }

        p->refused |= (ngx_uint_t) 1 << stmt;

        /* the primary message only: details may quote parameters */
        msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: the database refused the %s "
                      "statement: %s (SQLSTATE %s); is sql/ocdz.sql "
                      "applied and the role granted?",
                      stmt == NGX_OCDZ_S_CLAIM ? "claim" : "write-back",
                      msg ? msg : "?", ngx_ocdz_pg_sqlstate(res));
        return;
    }

    if (p->db_down) {
        return;
    }

    p->db_down = 1;

    ngx_log_error(NGX_LOG_ERR, p->log, 0,
                  "ocdz poller: the database is unavailable; checks wait "
                  "until it is back");
}


static void
ngx_ocdz_poller_db_ok(ngx_uint_t stmt)
{
    ngx_ocdz_poller_t  *p;

    p = &ngx_ocdz_poller;

    p->refused &= ~((ngx_uint_t) 1 << stmt);

    if (p->db_down) {
        p->db_down = 0;

        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: the database is back; checks resume");
    }
}


/*
 * An upstream error code, for logs and last_error: only when it looks
 * like one (letters, digits, "_" and "-", some letters), never free text.
 */

static void
ngx_ocdz_poller_code(const char *code, char *out, size_t size)
{
    size_t      i, letters;
    u_char      ch;

    out[0] = '\0';

    letters = 0;

    for (i = 0; code[i]; i++) {
        ch = (u_char) code[i];

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

    ngx_memcpy(out, code, i + 1);
}


/* error codes are seen with "_" and with "-": both match */

static ngx_uint_t
ngx_ocdz_poller_code_is(const char *code, const char *want)
{
    u_char  a, b;

    for ( ;; ) {
        a = ngx_toupper((u_char) *code);
        b = (u_char) *want;

        if (a == '-') {
            a = '_';
        }

        if (a != b) {
            return 0;
        }

        if (a == '\0') {
            return 1;
        }

        code++;
        want++;
    }
}


/* text for the database: valid UTF-8 without controls, else nothing */

static void
ngx_ocdz_poller_copy_text(char *dst, size_t size, const char *src)
{
    size_t  len;

    dst[0] = '\0';

    len = ngx_strlen(src);
    if (len == 0 || len >= size
        || !ocdz_text_valid((u_char *) src, len, OCDZ_TEXT_LINES))
    {
        return;
    }

    ngx_memcpy(dst, src, len + 1);
}
