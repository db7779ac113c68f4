
/*
 * ngx_http_ocdz_module: the background poller.
 *
 * Each worker leases due orders in one statement (FOR UPDATE SKIP
 * LOCKED, so that workers and hosts share the work without meeting),
 * checks each one upstream with ngx_ocdz_api, asks ocdz_transition what
 * the reply means, and writes that back in one statement naming the
 * lease token: a worker whose lease expired and was taken over writes
 * nothing, and every write is idempotent, so an interrupted check is
 * simply done again. The write-backs go through the pool's batch
 * statements: those of one kind that come together share a statement
 * and a commit, and one the database refuses fails alone.
 *
 * An order makes these steps: claimed (READY), checked (CHECKING), its
 * reply waiting its turn (FINISHED), its write-back in the pool
 * (WRITING), done (FREE). One event moves the poller on; every handler
 * only changes the state of its slot and calls
 * ngx_ocdz_poller_schedule(), the one place that decides when the
 * event runs next. The worker's event loop is shared with card
 * requests: replies are handled a slice per turn and checks started at
 * a pace, so that many checks ending together never hold requests back.
 *
 * Nothing here logs an access token, a card code or a reply body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/rand.h>

#include "ngx_ocdz_poller.h"
#include "ngx_ocdz_api.h"
#include "ngx_ocdz_status.h"
#include "ocdz_transition.h"


#define NGX_OCDZ_POLLER_TICK_MAX    1000   /* ms between claims, at most */
#define NGX_OCDZ_POLLER_KICK        20     /* ms: claim after slots free */
#define NGX_OCDZ_POLLER_AHEAD       2      /* slots per check in flight */
#define NGX_OCDZ_POLLER_SLICE       8      /* replies handled per event
                                              loop turn, checks started
                                              per ms */
#define NGX_OCDZ_POLLER_GATHER      20     /* ms a write-back may wait
                                              for others of its kind */
#define NGX_OCDZ_POLLER_ENOUGH      32     /* so many go at once */
#define NGX_OCDZ_POLLER_INTERVAL_MIN 100
#define NGX_OCDZ_POLLER_LEASE_BYTES 16     /* random, sent as hex */


/*
 * The statements, in the order of ngx_ocdz_poller_sql[]: the claim, one
 * write-back per ocdz_write_e (at NGX_OCDZ_S_WRITE + write), and the
 * give-back of a graceful shutdown.
 */

enum {
    NGX_OCDZ_S_CLAIM = 0,
    NGX_OCDZ_S_WRITE,
    NGX_OCDZ_S_GIVE_BACK = NGX_OCDZ_S_WRITE + OCDZ_WRITE_COUNT,
    NGX_OCDZ_S_COUNT
};

/* the configuration keeps their indexes */
typedef char  ngx_ocdz_poller_stmts_check[
    NGX_OCDZ_S_COUNT == NGX_HTTP_OCDZ_POLLER_STMTS ? 1 : -1];


typedef struct {
    const char                 *sql;
    int                         nparams;
    ngx_uint_t                  batched;
} ngx_ocdz_poller_sql_t;


typedef enum {
    NGX_OCDZ_SLOT_FREE = 0,
    NGX_OCDZ_SLOT_READY,           /* claimed, its check waits to start */
    NGX_OCDZ_SLOT_CHECKING,        /* the call runs */
    NGX_OCDZ_SLOT_FINISHED,        /* its reply (or a write-back the pool
                                      declined) waits its turn */
    NGX_OCDZ_SLOT_WRITING          /* its write-back is in the pool */
} ngx_ocdz_slot_state_e;


/* One claimed order: its call, its transition, its write-back. */

typedef struct {
    ngx_queue_t                 queue;      /* in free, ready or
                                               finished */
    ngx_ocdz_poller_t          *poller;
    ngx_ocdz_slot_state_e       state;
    ngx_ocdz_api_call_t         call;
    ngx_uint_t                  token;      /* the one its check used */

    /* the order, as claimed */
    char                        topup_id[OCDZ_TOPUP_ID_MAX + 1];
    char                        lease[2 * NGX_OCDZ_POLLER_LEASE_BYTES
                                      + 1];
    int64_t                     attempts;
    int64_t                     not_found;
    ngx_msec_t                  claimed;    /* its lease began */
    ngx_msec_t                  started;    /* its call began */

    /* the write-back */
    unsigned                    decided:1;  /* tr is this check's */
    ocdz_transition_t           tr;
    ngx_uint_t                  stmt;
    ngx_ocdz_pg_query_t         q;
    char                        p_ms[NGX_INT64_LEN + 1];
    char                        p_card[OCDZ_RECORD_MAX + 1];
} ngx_ocdz_poller_slot_t;


/*
 * The poller is its event's ev->data. nginx's debug logging reads
 * ev->data as a connection (ngx_event_ident() prints its fd): like
 * ngx_resolver_t in nginx core, it starts with three pointers and an
 * "fd" of -1, where ngx_connection_t has data, read, write and fd.
 */

struct ngx_ocdz_poller_s {
    ngx_http_ocdz_main_conf_t  *omcf;
    ngx_log_t                  *log;
    ngx_ocdz_pg_pool_t         *pg;
    ngx_socket_t                ident;      /* -1: see above */

    ngx_event_t                 event;      /* the one that moves it on */
    ngx_ocdz_api_t             *api;
    ocdz_cipher_t              *cipher;
    ocdz_tr_conf_t              tr;         /* the policy's numbers */
    ngx_uint_t                 *stmt;       /* the statements' indexes */
    const char                 *sync_commit;    /* "off", or NULL: the
                                                   connection's own */
    ngx_uint_t                  has_secondary;
    ngx_uint_t                  token;      /* the access token in use */

    /*
     * Twice as many slots as checks in flight: the orders of the next
     * round are claimed while this one runs, and a check that ends
     * starts the next at once, while its write-back waits for others.
     */
    ngx_ocdz_poller_slot_t     *slots;
    ngx_uint_t                  nslots;
    ngx_uint_t                  busy;
    ngx_uint_t                  conc;       /* poller_concurrency */
    ngx_uint_t                  checking;   /* calls running */
    ngx_queue_t                 free;
    ngx_queue_t                 ready;
    ngx_queue_t                 finished;

    ngx_msec_t                  tick;
    ngx_msec_t                  claim_at;   /* when the next claim is due */
    ngx_msec_t                  start_msec; /* checks started in that ms */
    ngx_uint_t                  start_n;
    ngx_msec_t                  write_at;   /* after the pool declined:
                                               when to try again */
    ngx_msec_t                  paused_until;   /* a pause decided here */
    ngx_msec_t                  pause_logged;   /* until then: quieter */

    ngx_ocdz_pg_query_t         claim;
    ngx_uint_t                  claim_limit;
    char                        claim_n[NGX_INT64_LEN + 1];
    char                        claim_lease[2 * NGX_OCDZ_POLLER_LEASE_BYTES
                                            + 1];
    char                        claim_ms[NGX_INT64_LEN + 1];

    ocdz_upstream_reply_t       reply;      /* wiped after each use */

    ngx_uint_t                  refused;    /* statements logged as
                                               refused, a bit each */

    /* failures every check meets, logged once each (ocdz_alarm) */
    ocdz_alarm_t                alarms[OCDZ_ALARM_COUNT];

    unsigned                    claiming:1;
    unsigned                    backlog:1;  /* the last claim was full */
    unsigned                    db_down:1;  /* logged, until back */
    unsigned                    exiting:1;  /* a graceful shutdown */
};


typedef char  ngx_ocdz_poller_ident_check[
    offsetof(ngx_ocdz_poller_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static void ngx_ocdz_poller_schedule(ngx_ocdz_poller_t *p);
static void ngx_ocdz_poller_handler(ngx_event_t *ev);
static void ngx_ocdz_poller_claim(ngx_ocdz_poller_t *p);
static void ngx_ocdz_poller_claimed(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res);
static void ngx_ocdz_poller_start(ngx_ocdz_poller_t *p);
static void ngx_ocdz_poller_check(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_checked(ngx_ocdz_api_call_t *call);
static void ngx_ocdz_poller_decide(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_seal(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot, ocdz_check_t *check);
static void ngx_ocdz_poller_log(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_alarm(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot, ngx_uint_t answered);
static ngx_int_t ngx_ocdz_poller_write(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_written(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res);
static void ngx_ocdz_poller_give_back(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_done(ngx_ocdz_poller_t *p,
    ngx_ocdz_poller_slot_t *slot);
static void ngx_ocdz_poller_db_error(ngx_ocdz_poller_t *p, ngx_uint_t stmt,
    ngx_int_t rc, PGresult *res);
static void ngx_ocdz_poller_db_ok(ngx_ocdz_poller_t *p, ngx_uint_t stmt);
static char *ngx_ocdz_poller_msec(u_char *buf, size_t size, ngx_msec_t ms);


/*
 * The statements. "now()" is the database's clock, so hosts with skewed
 * clocks agree. Every write names the lease token and never changes an
 * order in a final state beyond giving its lease back: someone else
 * (support staff, the storefront) may have closed an order while it was
 * being checked.
 *
 * Every statement commits with synchronous_commit off (unless
 * "ocdz_poller_sync_commit on"): NGX_OCDZ_PG_ASYNC_COMMIT, its last
 * parameter "off", or NULL for the connection's own setting.
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

/*
 * A write-back, written once in its array form (ngx_ocdz_pg_add_batch):
 * element i of each array for one order, $1 the top-up ids, $2 the
 * lease tokens, then the statement's own columns; its last parameter is
 * synchronous_commit, the same in every element. The orders whose lease
 * it holds are locked first (l): one someone closed meanwhile only gets
 * its lease back (g), the others the transition (w), so that no final
 * order keeps a lease, whatever it was checked for. One row comes back
 * per element, in order: 'written', 'final' or NULL (the lease was lost
 * to another worker), then the status and not_found_count written.
 * PostgreSQL may plan it at every call (custom plans: the arrays'
 * lengths vary), so it stays as plain as it can.
 */

#define NGX_OCDZ_POLLER_WRITE(arrays, cols, sync, set, extra)                \
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[]" arrays ") "     \
        "WITH ORDINALITY AS v(topup_id, lease" cols ", n)), "                \
    "l AS (SELECT o.topup_id, o.status IN " NGX_OCDZ_POLLER_FINAL            \
              " AS final "                                                   \
        "FROM ocdz.orders o JOIN v "                                         \
        "ON o.topup_id = v.topup_id AND o.lease_token = v.lease "            \
        "WHERE " NGX_OCDZ_PG_ASYNC_COMMIT("($" sync "::text[])[1]") " "      \
        "FOR UPDATE OF o), "                                                 \
    "g AS (UPDATE ocdz.orders o SET lease_token = NULL, lease_until = NULL " \
        "FROM l WHERE o.topup_id = l.topup_id AND l.final "                  \
        "RETURNING o.topup_id), "                                            \
    "w AS (UPDATE ocdz.orders o SET " set ", "                               \
            "lease_token = NULL, lease_until = NULL "                        \
        "FROM v JOIN l ON l.topup_id = v.topup_id AND NOT l.final "          \
        "WHERE o.topup_id = v.topup_id "                                     \
        "RETURNING o.topup_id, o.status, o.not_found_count, o.user_id, "     \
                  "o.attempts)"                                              \
    extra " "                                                                \
    "SELECT CASE WHEN w.topup_id IS NOT NULL THEN 'written' "                \
               "WHEN g.topup_id IS NOT NULL THEN 'final' END, "              \
           "w.status, w.not_found_count "                                    \
    "FROM v LEFT JOIN w ON w.topup_id = v.topup_id "                         \
           "LEFT JOIN g ON g.topup_id = v.topup_id "                         \
    "ORDER BY v.n"

#define NGX_OCDZ_POLLER_NEXT                                                 \
    "next_check_at = now() + v.ms * interval '1 millisecond'"

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
          "AND " NGX_OCDZ_PG_ASYNC_COMMIT("$4::text") " "
          "ORDER BY next_check_at "
          "LIMIT $1::integer "
          "FOR UPDATE SKIP LOCKED)) "
      "RETURNING topup_id, attempts, not_found_count, status",
      4, 0 },

    /* still on its way: $3 statuses, $4 next checks (ms) */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[], $4::bigint[]", ", status, ms",
          "5",
          "status = v.status, " NGX_OCDZ_POLLER_NEXT ", "
          "not_found_count = 0, last_error = NULL, last_checked_at = now()",
          ""),
      5, 1 },

    /* the check failed, not the order: $3 last_error, $4 next (ms) */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[], $4::bigint[]", ", error, ms",
          "5",
          "last_error = v.error, " NGX_OCDZ_POLLER_NEXT ", "
          "last_checked_at = now()",
          ""),
      5, 1 },

    /* final: refunded upstream; $3 refund_message or NULL */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[]", ", message", "4",
          "status = 'REFUNDED', refund_message = v.message, "
          "last_error = NULL, last_checked_at = now()",
          ""),
      4, 1 },

    /* final: the cards, sealed, and their audit rows, together or not at
     * all; $3 card_enc, $4 num_trans, $5 date_traitement */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[], $4::text[], $5::text[]",
          ", card, num_trans, date", "6",
          "status = 'FULFILLED', card_enc = v.card, "
          "num_trans = v.num_trans, date_traitement = v.date, "
          "fulfilled_at = now(), last_error = NULL, last_checked_at = now()",
          ", a AS (INSERT INTO ocdz.audit (event, topup_id, user_id, "
                                          "method, detail) "
              "SELECT 'CARD_STORED', topup_id, user_id, 'poller', "
                  "'FULFILLED upstream; stored after ' || attempts "
                  "|| ' checks' "
              "FROM w)"),
      6, 1 },

    /* 404 NOT_FOUND: $3 'ERROR' after the last allowed or NULL (status
     * kept), $4 last_error, $5 next check (ms) */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[], $4::text[], $5::bigint[]",
          ", status, error, ms", "6",
          "not_found_count = o.not_found_count + 1, "
          "status = coalesce(v.status, o.status), last_error = v.error, "
          NGX_OCDZ_POLLER_NEXT ", last_checked_at = now()",
          ""),
      6, 1 },

    /* not the order's fault: its lease back (the claim's attempt does
     * not count) and, for the longest $4 > 0, a pause of every check for
     * $4 ms with reason $5; $3 last_error */
    { NGX_OCDZ_POLLER_WRITE(", $3::text[], $4::bigint[], $5::text[]",
          ", error, ms, reason", "6",
          "attempts = greatest(o.attempts - 1, 0), last_error = v.error, "
          "last_checked_at = now()",
          ", p AS (UPDATE ocdz.poller_state s SET "
                  "paused_until = greatest(coalesce(s.paused_until, now()), "
                      "now() + x.ms * interval '1 millisecond'), "
                  "pause_reason = x.reason, updated_at = now() "
              "FROM (SELECT ms, reason FROM v WHERE ms > 0 "
                    "ORDER BY ms DESC LIMIT 1) x "
              "WHERE s.id = 1 "
              "AND " NGX_OCDZ_PG_ASYNC_COMMIT("($6::text[])[1]") ")"),
      6, 1 },

    /* a graceful shutdown: the leases of the checks it gives up back,
     * the claims' attempts not counted */
    { NGX_OCDZ_POLLER_WRITE("", "", "3",
          "attempts = greatest(o.attempts - 1, 0)",
          ""),
      3, 1 }
};


char *
ngx_ocdz_poller_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    u_char                 a[NGX_INT64_LEN + 4], b[NGX_INT64_LEN + 4];
    ngx_int_t              stmt;
    ngx_uint_t             i;
    ngx_ocdz_pg_gather_t   gather;

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

    /*
     * Write-backs of a kind wait up to NGX_OCDZ_POLLER_GATHER ms for
     * others, NGX_OCDZ_POLLER_ENOUGH of them go at once: each statement
     * costs a round trip, a commit and often a plan, and checks started
     * at a pace end at a pace, not together.
     */

    gather.max = NGX_OCDZ_PG_MAX_BATCH;
    gather.enough = NGX_OCDZ_POLLER_ENOUGH;
    gather.wait = NGX_OCDZ_POLLER_GATHER;
    gather.nagle = 0;

    for (i = 0; i < NGX_OCDZ_S_COUNT; i++) {

        if (ngx_ocdz_poller_sql[i].batched) {
            stmt = ngx_ocdz_pg_add_batch(cf, omcf->pg,
                                         ngx_ocdz_poller_sql[i].sql,
                                         ngx_ocdz_poller_sql[i].nparams,
                                         &gather);

        } else {
            stmt = ngx_ocdz_pg_add_stmt(cf, omcf->pg,
                                        ngx_ocdz_poller_sql[i].sql,
                                        ngx_ocdz_poller_sql[i].nparams);
        }

        if (stmt == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        omcf->poller_stmts[i] = stmt;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_ocdz_poller_init_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t                  i;
    ngx_ocdz_poller_t          *p;
    ngx_ocdz_poller_slot_t     *slot;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = w->omcf;

    p = ngx_pcalloc(w->cycle->pool, sizeof(ngx_ocdz_poller_t));
    if (p == NULL) {
        return NGX_ERROR;
    }

    p->omcf = omcf;
    p->log = w->log;
    p->pg = w->pg;
    p->ident = (ngx_socket_t) -1;
    p->cipher = w->cipher;
    p->stmt = omcf->poller_stmts;
    p->sync_commit = omcf->poller_sync_commit ? NULL : "off";
    p->has_secondary = (omcf->api_token[1].len != 0);

    p->tr.interval = omcf->poller_interval;
    p->tr.queued_interval = omcf->poller_queued_interval;
    p->tr.max_backoff = omcf->poller_max_backoff;
    p->tr.pause = omcf->poller_pause;
    p->tr.retry_after_max = omcf->poller_retry_after_max;
    p->tr.backoff_after = omcf->poller_backoff_after;
    p->tr.not_found_retries = omcf->poller_not_found_retries;

    p->api = ngx_ocdz_api_create(w);
    if (p->api == NULL) {
        return NGX_ERROR;
    }

    w->poller = p;

    ngx_queue_init(&p->free);
    ngx_queue_init(&p->ready);
    ngx_queue_init(&p->finished);

    p->conc = omcf->poller_concurrency;
    p->nslots = p->conc * NGX_OCDZ_POLLER_AHEAD;

    p->slots = ngx_pcalloc(w->cycle->pool,
                           p->nslots * sizeof(ngx_ocdz_poller_slot_t));
    if (p->slots == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < p->nslots; i++) {
        slot = &p->slots[i];
        slot->poller = p;
        slot->call.done = ngx_ocdz_poller_checked;
        slot->call.data = slot;
        ngx_queue_insert_tail(&p->free, &slot->queue);
    }

    p->tick = ngx_min(omcf->poller_interval, NGX_OCDZ_POLLER_TICK_MAX);

    p->event.handler = ngx_ocdz_poller_handler;
    p->event.data = p;
    p->event.log = p->log;
    p->event.cancelable = 1;

    /* workers started together do not claim together */

    p->claim_at = ngx_current_msec + 100 + (ngx_msec_t) ngx_random() % p->tick;

    ngx_ocdz_poller_schedule(p);

    return NGX_OK;
}


void
ngx_ocdz_poller_shutdown(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t               i, given, written;
    ngx_queue_t             *qu;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = w->poller;

    if (p == NULL || p->exiting) {
        return;
    }

    p->exiting = 1;

    if (p->event.timer_set) {
        ngx_del_timer(&p->event);
    }

    if (p->event.posted) {
        ngx_delete_posted_event(&p->event);
    }

    /*
     * A claim on its way goes on: the orders it leases go back as soon
     * as it is answered (ngx_ocdz_poller_claimed()), if the worker is
     * still there, or when their lease expires.
     */

    /* replies in hand: their write-backs, which the worker waits for */

    written = 0;

    while (!ngx_queue_empty(&p->finished)) {
        qu = ngx_queue_head(&p->finished);
        ngx_queue_remove(qu);
        ngx_queue_init(qu);

        slot = ngx_queue_data(qu, ngx_ocdz_poller_slot_t, queue);

        ngx_ocdz_poller_decide(p, slot);

        if (ngx_ocdz_poller_write(p, slot) == NGX_OK) {
            written++;
        }
    }

    given = 0;

    for (i = 0; i < p->nslots; i++) {
        slot = &p->slots[i];

        switch (slot->state) {

        case NGX_OCDZ_SLOT_CHECKING:
            ngx_ocdz_api_stop(&slot->call);
            p->checking--;

            /* fall through */

        case NGX_OCDZ_SLOT_READY:
            if (slot->state == NGX_OCDZ_SLOT_READY) {
                ngx_queue_remove(&slot->queue);
                ngx_queue_init(&slot->queue);
            }

            ngx_ocdz_poller_give_back(p, slot);
            given++;
            break;

        case NGX_OCDZ_SLOT_WRITING:

            /* one still waiting in the pool goes as the worker's last */

            if (slot->q.waiting
                && slot->q.background == NGX_OCDZ_PG_BACKGROUND)
            {
                ngx_ocdz_pg_abandon(&slot->q);

                if (slot->stmt == p->stmt[NGX_OCDZ_S_GIVE_BACK]) {
                    ngx_ocdz_poller_give_back(p, slot);

                } else if (ngx_ocdz_poller_write(p, slot) == NGX_OK) {
                    written++;
                }
            }

            break;

        default:
            break;
        }
    }

    if (given || written) {
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: shutting down: %ui results written, "
                      "the leases of %ui orders given back", written, given);
    }
}


void
ngx_ocdz_poller_exit_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t               i;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = w->poller;

    if (p == NULL) {
        return;
    }

    w->poller = NULL;

    if (p->event.timer_set) {
        ngx_del_timer(&p->event);
    }

    if (p->event.posted) {
        ngx_delete_posted_event(&p->event);
    }

    if (p->claiming) {
        ngx_ocdz_pg_abandon(&p->claim);
    }

    /* leases still held expire: those orders are checked again */

    for (i = 0; p->slots && i < p->nslots; i++) {
        slot = &p->slots[i];

        ngx_ocdz_pg_abandon(&slot->q);
        ngx_ocdz_api_free(&slot->call);

        ocdz_wipe(slot, sizeof(ngx_ocdz_poller_slot_t));
    }

    if (p->api) {
        ngx_ocdz_api_destroy(p->api);
    }

    ocdz_upstream_reply_wipe(&p->reply);
    ocdz_wipe(p->claim_lease, sizeof(p->claim_lease));
}


/*
 * The one place that decides when the poller's event runs next: in the
 * next turn of the event loop (after its network events: requests come
 * first) when replies wait or checks may start, else on its timer, at
 * the earliest of the next claim, the pace and a write-back the pool
 * declined.
 */

static void
ngx_ocdz_poller_schedule(ngx_ocdz_poller_t *p)
{
    ngx_uint_t      startable, paced, timed;
    ngx_msec_int_t  wait, w;

    if (p->exiting || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    /* not while exiting: the slot may be a new worker's by then */

    ngx_ocdz_status_poller(p->omcf->status, p->busy, p->token,
                           p->paused_until);

    startable = !ngx_queue_empty(&p->ready) && p->checking < p->conc;
    paced = (p->start_msec == ngx_current_msec
             && p->start_n >= NGX_OCDZ_POLLER_SLICE);

    if ((startable && !paced)
        || (!ngx_queue_empty(&p->finished)
            && (ngx_msec_int_t) (p->write_at - ngx_current_msec) <= 0))
    {
        if (!p->event.posted) {
#if (nginx_version >= 1017005)
            ngx_post_event(&p->event, &ngx_posted_next_events);
#else
            ngx_post_event(&p->event, &ngx_posted_events);
#endif
        }

        return;
    }

    /* the pace holds checks back: the next millisecond */

    timed = startable;
    wait = 1;

    /* the next claim, unless one runs (its handler schedules) */

    if (!p->claiming) {
        w = (ngx_msec_int_t) (p->claim_at - ngx_current_msec);

        if (!timed || w < wait) {
            wait = w;
        }

        timed = 1;
    }

    /* write-backs the pool declined */

    if (!ngx_queue_empty(&p->finished)) {
        w = (ngx_msec_int_t) (p->write_at - ngx_current_msec);

        if (!timed || w < wait) {
            wait = w;
        }

        timed = 1;
    }

    if (!timed) {
        if (p->event.timer_set) {
            ngx_del_timer(&p->event);
        }

        return;
    }

    if (wait < 1) {
        wait = 1;
    }

    /* ngx_add_timer() would keep an old timer within 300 ms of the new */

    if (p->event.timer_set) {
        ngx_del_timer(&p->event);
    }

    ngx_add_timer(&p->event, (ngx_msec_t) wait);
}


/* the event: a slice of replies, the checks that may start, a claim */

static void
ngx_ocdz_poller_handler(ngx_event_t *ev)
{
    ngx_uint_t               n;
    ngx_queue_t             *q;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = ev->data;

    if (p->exiting) {
        return;
    }

    if (p->event.timer_set) {
        ngx_del_timer(&p->event);
    }

    for (n = 0; n < NGX_OCDZ_POLLER_SLICE; n++) {

        if (ngx_queue_empty(&p->finished)
            || (ngx_msec_int_t) (p->write_at - ngx_current_msec) > 0)
        {
            break;
        }

        q = ngx_queue_head(&p->finished);
        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        ngx_ocdz_poller_decide(p, slot);

        /* one that waits was written off: its lease has expired */

        if (ngx_current_msec - slot->claimed >= p->omcf->poller_lease) {
            ngx_queue_remove(q);
            ngx_queue_init(q);

            ngx_log_error(NGX_LOG_WARN, p->log, 0,
                          "ocdz poller: top-up %s: result not written, "
                          "the database was unavailable; checked again "
                          "later", slot->topup_id);

            ngx_ocdz_poller_done(p, slot);
            continue;
        }

        if (ngx_ocdz_poller_write(p, slot) != NGX_OK) {

            /* the pool declines (database down): the next tick */

            p->write_at = ngx_current_msec + p->tick;
            break;
        }

        ngx_queue_remove(q);
        ngx_queue_init(q);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: %ui replies handled, %s",
                   n, ngx_queue_empty(&p->finished) ? "none left"
                                                    : "more next turn");

    ngx_ocdz_poller_start(p);

    if ((ngx_msec_int_t) (p->claim_at - ngx_current_msec) <= 0
        && !p->claiming)
    {
        ngx_ocdz_poller_claim(p);
    }

    ngx_ocdz_poller_schedule(p);
}


/* the claim: as many due orders as free slots, under one new lease */

static void
ngx_ocdz_poller_claim(ngx_ocdz_poller_t *p)
{
    u_char                rnd[NGX_OCDZ_POLLER_LEASE_BYTES];
    ngx_uint_t            room;
    ngx_msec_t            delay;
    ngx_ocdz_pg_query_t  *q;

    delay = p->tick;

    if (delay >= 8) {
        delay += (ngx_msec_t) ngx_random() % (delay / 8);
    }

    room = p->nslots - p->busy;

    if (room == 0) {
        /* a freed slot claims again soon, see ngx_ocdz_poller_done() */
        p->backlog = 1;
        p->claim_at = ngx_current_msec + delay;
        return;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: RAND_bytes() failed");
        p->claim_at = ngx_current_msec + delay;
        return;
    }

    *ngx_hex_dump((u_char *) p->claim_lease, rnd, sizeof(rnd)) = '\0';
    *ngx_sprintf((u_char *) p->claim_n, "%ui", room) = '\0';
    *ngx_sprintf((u_char *) p->claim_ms, "%M", p->omcf->poller_lease) =
                                                                        '\0';

    p->claim_limit = room;

    q = &p->claim;
    ngx_memzero(q, sizeof(ngx_ocdz_pg_query_t));

    q->stmt = p->stmt[NGX_OCDZ_S_CLAIM];
    q->nparams = 4;
    q->values[0] = p->claim_n;
    q->values[1] = p->claim_lease;
    q->values[2] = p->claim_ms;
    q->values[3] = p->sync_commit;
    q->background = NGX_OCDZ_PG_BACKGROUND;
    q->handler = ngx_ocdz_poller_claimed;
    q->data = p;
    q->log = p->log;

    if (ngx_ocdz_pg_send(p->pg, q) != NGX_OK) {
        ngx_ocdz_poller_db_error(p, NGX_OCDZ_S_CLAIM,
                                 NGX_OCDZ_PG_UNAVAILABLE, NULL);
        p->claim_at = ngx_current_msec + delay;
        return;
    }

    p->claiming = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: claiming up to %ui orders", room);
}


static void
ngx_ocdz_poller_claimed(ngx_ocdz_pg_query_t *q, ngx_int_t rc, PGresult *res)
{
    int                      n, i;
    char                    *v;
    size_t                   len;
    ngx_int_t                attempts, not_found;
    ngx_msec_t               delay;
    ngx_queue_t             *fq;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    p = q->data;

    p->claiming = 0;

    delay = p->tick;

    if (delay >= 8) {
        delay += (ngx_msec_t) ngx_random() % (delay / 8);
    }

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        ngx_ocdz_poller_db_error(p, NGX_OCDZ_S_CLAIM, rc, res);
        p->claim_at = ngx_current_msec + delay;
        ngx_ocdz_poller_schedule(p);
        return;
    }

    ngx_ocdz_poller_db_ok(p, NGX_OCDZ_S_CLAIM);

    n = PQntuples(res);

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, p->log, 0,
                   "ocdz poller: claimed %d orders", n);

    for (i = 0; i < n; i++) {

        if (ngx_queue_empty(&p->free)) {
            /* cannot happen: we claim at most the free slots */
            break;
        }

        v = PQgetvalue(res, i, 0);
        len = PQgetlength(res, i, 0);

        if (len > OCDZ_TOPUP_ID_MAX) {
            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: a claimed top-up id is too long");
            continue;
        }

        fq = ngx_queue_head(&p->free);
        ngx_queue_remove(fq);
        slot = ngx_queue_data(fq, ngx_ocdz_poller_slot_t, queue);
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
        slot->claimed = ngx_current_msec;
        slot->decided = 0;

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, p->log, 0,
                       "ocdz poller: top-up %s (%s), attempt %L",
                       slot->topup_id, PQgetvalue(res, i, 3),
                       slot->attempts);

        slot->state = NGX_OCDZ_SLOT_READY;
        ngx_queue_insert_tail(&p->ready, &slot->queue);
    }

    /* a full claim: more are due, as soon as slots free */

    p->backlog = ((ngx_uint_t) n >= p->claim_limit);

    p->claim_at = ngx_current_msec
                  + ((p->backlog && p->busy < p->nslots)
                     ? NGX_OCDZ_POLLER_KICK : delay);

    if (p->exiting) {
        /* a graceful shutdown began meanwhile: these go back at once */

        while (!ngx_queue_empty(&p->ready)) {
            fq = ngx_queue_head(&p->ready);
            ngx_queue_remove(fq);
            ngx_queue_init(fq);

            slot = ngx_queue_data(fq, ngx_ocdz_poller_slot_t, queue);
            ngx_ocdz_poller_give_back(p, slot);
        }

        return;
    }

    ngx_ocdz_poller_schedule(p);
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
ngx_ocdz_poller_start(ngx_ocdz_poller_t *p)
{
    ngx_queue_t             *q;
    ngx_ocdz_poller_slot_t  *slot;

    if (p->start_msec != ngx_current_msec) {
        p->start_msec = ngx_current_msec;
        p->start_n = 0;
    }

    while (!ngx_queue_empty(&p->ready)
           && p->checking < p->conc
           && p->start_n < NGX_OCDZ_POLLER_SLICE)
    {
        p->start_n++;

        q = ngx_queue_head(&p->ready);
        ngx_queue_remove(q);
        ngx_queue_init(q);

        slot = ngx_queue_data(q, ngx_ocdz_poller_slot_t, queue);

        /* before nginx's resolver has answered: as if paused */

        if ((ngx_msec_int_t) (p->paused_until - ngx_current_msec) > 0
            || !ngx_ocdz_api_ready(p->api))
        {
            ocdz_transition_paused(&slot->tr);
            slot->decided = 1;
            slot->state = NGX_OCDZ_SLOT_FINISHED;
            ngx_queue_insert_tail(&p->finished, &slot->queue);
            continue;
        }

        ngx_ocdz_poller_check(p, slot);
    }
}


/* one check: GET {base}/v3/internet/check-id/{id} */

static void
ngx_ocdz_poller_check(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    ocdz_check_t  check;

    slot->state = NGX_OCDZ_SLOT_FINISHED;
    slot->token = p->token;

    ngx_memzero(&check, sizeof(ocdz_check_t));
    check.topup_id = slot->topup_id;
    check.attempts = slot->attempts;

    if (!ocdz_topup_id_valid(slot->topup_id, ngx_strlen(slot->topup_id))) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: an order has an invalid top-up id; "
                      "it is not checked");
        ocdz_transition_fault(&p->tr, &check, &slot->tr,
                              "invalid top-up id in the database");
        slot->decided = 1;
        ngx_ocdz_poller_log(p, slot);
        ngx_queue_insert_tail(&p->finished, &slot->queue);
        return;
    }

    if (ngx_ocdz_api_check(p->api, &slot->call, slot->topup_id, slot->token)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: top-up %s: could not start the check",
                      slot->topup_id);
        ocdz_transition_fault(&p->tr, &check, &slot->tr,
                              "could not start the check");
        slot->decided = 1;
        ngx_ocdz_poller_log(p, slot);
        ngx_queue_insert_tail(&p->finished, &slot->queue);
        return;
    }

    slot->state = NGX_OCDZ_SLOT_CHECKING;
    slot->started = ngx_current_msec;
    p->checking++;
}


/* the call ended: its reply is handled in its turn, by the event */

static void
ngx_ocdz_poller_checked(ngx_ocdz_api_call_t *call)
{
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    slot = call->data;
    p = slot->poller;

    p->checking--;

    slot->state = NGX_OCDZ_SLOT_FINISHED;
    slot->decided = 0;
    ngx_queue_insert_tail(&p->finished, &slot->queue);

    ngx_ocdz_poller_schedule(p);
}


/* the reply's transition, then the body is wiped */

static void
ngx_ocdz_poller_decide(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    char                    err[128];
    ocdz_check_t            check;
    ngx_ocdz_api_result_t  *r;

    if (slot->decided) {
        return;
    }

    slot->decided = 1;

    r = &slot->call.result;

    ngx_memzero(&check, sizeof(ocdz_check_t));

    check.topup_id = slot->topup_id;
    check.attempts = slot->attempts;
    check.not_found = slot->not_found;
    check.token = slot->token;
    check.has_secondary = p->has_secondary;
    check.call = r->call;
    check.call_code = (int) r->rc;
    check.call_text = r->error;
    check.http = r->http;
    check.retry_after = r->retry_after;
    check.retry_at = r->retry_at;
    check.now = ngx_time();

    if (r->call == OCDZ_CALL_ANSWERED) {
        check.parsed = ocdz_upstream_parse(r->body, r->body_len, &p->reply,
                                           err, sizeof(err));
        check.parse_err = err;
        check.reply = &p->reply;
    }

    ocdz_transition(&p->tr, &check, &slot->tr);

    ngx_ocdz_status_check(p->omcf->status, slot->tr.write, r->http,
                          slot->tr.pause, ngx_current_msec - slot->started);

    if (slot->tr.write == OCDZ_WRITE_FULFILLED) {
        ngx_ocdz_poller_seal(p, slot, &check);
    }

    ngx_ocdz_poller_alarm(p, slot, r->call == OCDZ_CALL_ANSWERED);

    /* they may hold a card code */
    ocdz_upstream_reply_wipe(&p->reply);
    ngx_ocdz_api_wipe(&slot->call);

    ngx_ocdz_poller_log(p, slot);
}


/* the card: sealed to this order, stored with its audit row */

static void
ngx_ocdz_poller_seal(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot,
    ocdz_check_t *check)
{
    int     rc;
    size_t  len;

    rc = ocdz_seal(p->cipher, p->omcf->keyring, slot->topup_id,
                   ngx_strlen(slot->topup_id),
                   (unsigned char *) p->reply.card_code,
                   p->reply.card_code_len,
                   slot->p_card, sizeof(slot->p_card), &len);

    if (rc != OCDZ_OK) {
        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: top-up %s: cannot seal the card: %s",
                      slot->topup_id, ocdz_rc_str(rc));
        ocdz_transition_fault(&p->tr, check, &slot->tr,
                              "could not encrypt the card (%s)",
                              ocdz_rc_str(rc));
    }
}


/* what the check said, for whoever reads the logs */

static void
ngx_ocdz_poller_log(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    u_char              buf[NGX_INT64_LEN + 4];
    ngx_uint_t          level;
    ocdz_transition_t  *tr;

    tr = &slot->tr;

    if (tr->token == OCDZ_TOKEN_SECONDARY && p->token == 0) {
        p->token = 1;

        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: OneClickDz rejected the primary access "
                      "token (HTTP 401%s%s); using the secondary",
                      tr->code[0] ? " " : "", tr->code);

    } else if (tr->token == OCDZ_TOKEN_PRIMARY && slot->token == p->token) {
        p->token = 0;
    }

    switch (tr->write) {

    case OCDZ_WRITE_PROGRESS:
        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "ocdz poller: top-up %s is %s, next check in %uL ms",
                      slot->topup_id, ocdz_status_str(tr->status),
                      tr->delay);
        return;

    case OCDZ_WRITE_FAULT:
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "ocdz poller: check of top-up %s failed: %s; next "
                      "check in %uL ms", slot->topup_id, tr->error,
                      tr->delay);
        return;

    case OCDZ_WRITE_REFUNDED:
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: top-up %s was refunded upstream",
                      slot->topup_id);
        return;

    case OCDZ_WRITE_NOT_FOUND:
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "ocdz poller: top-up %s: not found upstream (HTTP 404 "
                      "NOT_FOUND, %L before)", slot->topup_id,
                      slot->not_found);
        return;

    case OCDZ_WRITE_RELEASE:

        if (tr->pause == 0) {
            return;
        }

        /* orders claimed ahead are given back, not checked */

        p->paused_until = ngx_current_msec + (ngx_msec_t) tr->pause;

        /*
         * checks in flight together say it together: log it once; an
         * access refused is the alarm's to log (ngx_ocdz_poller_alarm)
         */

        level = ((ngx_msec_int_t) (p->pause_logged - ngx_current_msec) > 0
                 || tr->alarm != OCDZ_ALARM_NONE)
                ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, p->log, 0,
                      "ocdz poller: %s; pausing all checks for %s "
                      "(top-up %s)", tr->reason,
                      ngx_ocdz_poller_msec(buf, sizeof(buf),
                                           (ngx_msec_t) tr->pause),
                      slot->topup_id);

        p->pause_logged = ngx_current_msec + (ngx_msec_t) tr->pause;
        return;

    default:
        return;
    }
}


/*
 * The transition's write-back, to the pool: it gathers those of a kind
 * in one statement. Declined (the database known down): NGX_DECLINED,
 * the slot stays as it was. A graceful shutdown waits for what is
 * written while it goes on: those are foreground.
 */

static ngx_int_t
ngx_ocdz_poller_write(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    ngx_int_t             rc;
    ocdz_transition_t    *tr;
    ngx_ocdz_pg_query_t  *q;

    tr = &slot->tr;
    q = &slot->q;

    ngx_memzero(q, sizeof(ngx_ocdz_pg_query_t));

    slot->stmt = p->stmt[NGX_OCDZ_S_WRITE + tr->write];

    q->stmt = slot->stmt;
    q->values[0] = slot->topup_id;
    q->values[1] = slot->lease;

    *ngx_sprintf((u_char *) slot->p_ms, "%uL",
                 tr->write == OCDZ_WRITE_RELEASE ? tr->pause : tr->delay)
        = '\0';

    switch (tr->write) {

    case OCDZ_WRITE_PROGRESS:
        q->values[2] = ocdz_status_str(tr->status);
        q->values[3] = slot->p_ms;
        q->nparams = 4;
        break;

    case OCDZ_WRITE_FAULT:
        q->values[2] = tr->error;
        q->values[3] = slot->p_ms;
        q->nparams = 4;
        break;

    case OCDZ_WRITE_REFUNDED:
        q->values[2] = tr->refund_message[0] ? tr->refund_message : NULL;
        q->nparams = 3;
        break;

    case OCDZ_WRITE_FULFILLED:
        q->values[2] = slot->p_card;
        q->values[3] = tr->num_trans[0] ? tr->num_trans : NULL;
        q->values[4] = tr->date[0] ? tr->date : NULL;
        q->nparams = 5;
        break;

    case OCDZ_WRITE_NOT_FOUND:
        q->values[2] = tr->to_error ? "ERROR" : NULL;
        q->values[3] = tr->error;
        q->values[4] = slot->p_ms;
        q->nparams = 5;
        break;

    default: /* OCDZ_WRITE_RELEASE */
        q->values[2] = tr->error;
        q->values[3] = slot->p_ms;
        q->values[4] = tr->reason;
        q->nparams = 5;
        break;
    }

    q->values[q->nparams++] = p->sync_commit;
    q->background = p->exiting ? NGX_OCDZ_PG_FOREGROUND
                               : NGX_OCDZ_PG_BACKGROUND;
    q->handler = ngx_ocdz_poller_written;
    q->data = slot;
    q->log = p->log;

    rc = ngx_ocdz_pg_send(p->pg, q);

    if (rc != NGX_OK) {
        ngx_ocdz_poller_db_error(p, NGX_OCDZ_S_WRITE + tr->write,
                                 NGX_OCDZ_PG_UNAVAILABLE, NULL);
        return NGX_DECLINED;
    }

    slot->state = NGX_OCDZ_SLOT_WRITING;

    return NGX_OK;
}


/* the leases of checks a graceful shutdown gives up */

static void
ngx_ocdz_poller_give_back(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    ngx_ocdz_pg_query_t  *q;

    q = &slot->q;

    ngx_memzero(q, sizeof(ngx_ocdz_pg_query_t));

    slot->stmt = p->stmt[NGX_OCDZ_S_GIVE_BACK];
    slot->state = NGX_OCDZ_SLOT_WRITING;

    q->stmt = slot->stmt;
    q->nparams = 3;
    q->values[0] = slot->topup_id;
    q->values[1] = slot->lease;
    q->values[2] = p->sync_commit;
    q->background = NGX_OCDZ_PG_FOREGROUND;
    q->handler = ngx_ocdz_poller_written;
    q->data = slot;
    q->log = p->log;

    if (ngx_ocdz_pg_send(p->pg, q) != NGX_OK) {
        /* the lease expires */
        ngx_ocdz_poller_done(p, slot);
    }
}


/* one row per write-back: written, its order final, or its lease lost */

static void
ngx_ocdz_poller_written(ngx_ocdz_pg_query_t *q, ngx_int_t rc, PGresult *res)
{
    char                    *outcome;
    ngx_uint_t               stmt;
    ngx_ocdz_poller_t       *p;
    ngx_ocdz_poller_slot_t  *slot;

    slot = q->data;
    p = slot->poller;

    stmt = (slot->stmt == p->stmt[NGX_OCDZ_S_GIVE_BACK])
           ? NGX_OCDZ_S_GIVE_BACK : NGX_OCDZ_S_WRITE + slot->tr.write;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        /* the lease expires and the order is checked again */
        ngx_ocdz_poller_db_error(p, stmt, rc, res);
        ngx_ocdz_poller_done(p, slot);
        return;
    }

    ngx_ocdz_poller_db_ok(p, stmt);

    outcome = (q->row < PQntuples(res) && !PQgetisnull(res, q->row, 0))
              ? PQgetvalue(res, q->row, 0) : NULL;

    if (stmt == NGX_OCDZ_S_GIVE_BACK) {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, p->log, 0,
                       "ocdz poller: top-up %s: lease %s",
                       slot->topup_id, outcome ? "given back" : "lost");

    } else if (outcome == NULL || ngx_strcmp(outcome, "written") != 0) {
        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "ocdz poller: top-up %s: lease lost or order final; "
                      "nothing written", slot->topup_id);

    } else if (slot->tr.write == OCDZ_WRITE_FULFILLED) {
        ngx_log_error(NGX_LOG_NOTICE, p->log, 0,
                      "ocdz poller: top-up %s fulfilled; card stored",
                      slot->topup_id);

    } else if (slot->tr.write == OCDZ_WRITE_NOT_FOUND
               && ngx_strcmp(PQgetvalue(res, q->row, 1), "ERROR") == 0)
    {
        ngx_log_error(NGX_LOG_WARN, p->log, 0,
                      "ocdz poller: top-up %s: not found upstream after %s "
                      "checks; marked ERROR", slot->topup_id,
                      PQgetvalue(res, q->row, 2));
    }

    ngx_ocdz_poller_done(p, slot);
}


/* the slot is free again; slots freed after a full claim claim soon */

static void
ngx_ocdz_poller_done(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot)
{
    ocdz_wipe(slot->p_card, sizeof(slot->p_card));
    ocdz_wipe(&slot->tr, sizeof(ocdz_transition_t));
    ocdz_wipe(slot->lease, sizeof(slot->lease));

    slot->decided = 0;
    slot->state = NGX_OCDZ_SLOT_FREE;
    ngx_queue_insert_tail(&p->free, &slot->queue);
    p->busy--;

    if (p->exiting) {
        return;
    }

    if (p->backlog
        && (ngx_msec_int_t) (p->claim_at - ngx_current_msec)
           > NGX_OCDZ_POLLER_KICK)
    {
        p->claim_at = ngx_current_msec + NGX_OCDZ_POLLER_KICK;
    }

    ngx_ocdz_poller_schedule(p);
}


/*
 * A failure that every check meets (the API unreachable, access
 * refused) is logged at [error] once per worker when it starts, counted
 * while it lasts (a line a minute at most), and logged at [error] when
 * the API answers again, so that Debian's default level shows both.
 * Each failed check is still logged at [warn] (ngx_ocdz_poller_log).
 */

static void
ngx_ocdz_poller_alarm(ngx_ocdz_poller_t *p, ngx_ocdz_poller_slot_t *slot,
    ngx_uint_t answered)
{
    char                d[32];
    ngx_uint_t          i;
    ocdz_alarm_t       *a;
    const char         *detail;
    ocdz_alarm_kind_e   kind;

    kind = slot->tr.alarm;

    if (kind != OCDZ_ALARM_NONE) {
        a = &p->alarms[kind];
        detail = slot->tr.reason[0] ? slot->tr.reason : slot->tr.error;

        switch (ocdz_alarm_raise(a, ngx_current_msec, detail)) {

        case OCDZ_ALARM_LOG_START:
            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: %s: %s; checks fail until it is "
                          "fixed (logged again when it ends)",
                          ocdz_alarm_kind_str(kind), a->detail);
            break;

        case OCDZ_ALARM_LOG_REPEAT:
            ngx_log_error(NGX_LOG_ERR, p->log, 0,
                          "ocdz poller: still %s: %uL more failed checks "
                          "in the last minute; the latest: %s",
                          ocdz_alarm_kind_str(kind), a->reported,
                          a->detail);
            break;

        default:
            break;
        }
    }

    if (!answered) {
        return;
    }

    /* the API answered: it is reachable, and maybe access is back */

    for (i = OCDZ_ALARM_API_TLS; i <= OCDZ_ALARM_API_AUTH; i++) {
        if (i == (ngx_uint_t) kind) {
            continue;
        }

        a = &p->alarms[i];

        if (ocdz_alarm_clear(a, ngx_current_msec) != OCDZ_ALARM_LOG_END) {
            continue;
        }

        ngx_log_error(NGX_LOG_ERR, p->log, 0,
                      "ocdz poller: %s ended after %s, the API answers "
                      "again: %uL checks failed meanwhile",
                      ocdz_alarm_kind_str((ocdz_alarm_kind_e) i),
                      ocdz_alarm_duration_str(d, sizeof(d), a->duration),
                      a->count);
    }
}


/*
 * The pool logs a database outage at [error] (ngx_ocdz_pg.c); here it
 * is [info], once. A statement the server refuses is logged once until
 * it succeeds again.
 */

static void
ngx_ocdz_poller_db_error(ngx_ocdz_poller_t *p, ngx_uint_t stmt,
    ngx_int_t rc, PGresult *res)
{
    char  *msg;

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

    ngx_log_error(NGX_LOG_INFO, p->log, 0,
                  "ocdz poller: checks wait for the database");
}


static void
ngx_ocdz_poller_db_ok(ngx_ocdz_poller_t *p, ngx_uint_t stmt)
{
    p->refused &= ~((ngx_uint_t) 1 << stmt);

    if (p->db_down) {
        p->db_down = 0;

        ngx_log_error(NGX_LOG_INFO, p->log, 0,
                      "ocdz poller: the database answers; checks resume");
    }
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
