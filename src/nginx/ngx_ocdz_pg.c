
/*
 * ngx_http_ocdz_module: the per-worker asynchronous PostgreSQL pool.
 *
 * Each worker owns pool_size slots. A slot is free (no connection),
 * connecting (PQconnectPoll, then the schema version check), idle, or
 * busy (preparing or running one statement). Queries that find no idle
 * slot wait in one FIFO queue; free slots are connected for them.
 * Queries of a statement with an array form gather in the queue and go
 * together (see ngx_ocdz_pg_hold() and ngx_ocdz_pg_gather()).
 *
 * Sockets belong to libpq. They are wrapped in nginx connections only
 * to get events, watched level-triggered, and never closed by nginx.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <sys/stat.h>

#include <openssl/ssl.h>

#include "ngx_ocdz_pg.h"
#include "ngx_ocdz_status.h"
#include "ocdz_alarm.h"


#if (NGX_OCDZ_PG_MAX_STMTS > 64)
#error NGX_OCDZ_PG_MAX_STMTS must fit the prepared bit mask
#endif


#define NGX_OCDZ_PG_FREE           0
#define NGX_OCDZ_PG_CONNECTING     1
#define NGX_OCDZ_PG_CHECKING       2
#define NGX_OCDZ_PG_IDLE           3
#define NGX_OCDZ_PG_PREPARING      4
#define NGX_OCDZ_PG_RUNNING        5

#define NGX_OCDZ_PG_SCHEMA_QUERY                                             \
    "SELECT max(version) FROM ocdz.schema_version"


/*
 * The owners of events that are not connections (a slot's timer, the
 * pool's own events) are ev->data. nginx's debug logging reads ev->data
 * as a connection (ngx_event_ident() prints its fd): like ngx_resolver_t
 * in nginx core, such an owner starts with three pointers and an "fd"
 * of -1, where ngx_connection_t has data, read, write and fd.
 */

typedef struct {
    ngx_ocdz_pg_pool_t      *pool;
    PGconn                  *pgconn;
    ngx_connection_t        *c;           /* wraps PQsocket() */
    ngx_socket_t             ident;       /* -1: see above */

    ngx_uint_t               state;
    dev_t                    dev;         /* identity of the wrapped */
    ino_t                    ino;         /* socket */

    ngx_ocdz_pg_query_t     *query;       /* NULL when abandoned; a batch
                                             goes on in query->batch_next */
    ngx_uint_t               stmt;
    ngx_uint_t               nbatch;      /* queries the batch was sent
                                             with, 0: not sent yet */
    PGresult                *res;         /* the result kept */
    ngx_event_t              timer;       /* connect or query timeout */
    uint64_t                 prepared;    /* statements prepared here */

    unsigned                 background:1;
    unsigned                 batch:1;     /* runs an array form */
} ngx_ocdz_pg_conn_t;


struct ngx_ocdz_pg_pool_s {
    ngx_ocdz_pg_conf_t      *conf;
    ngx_log_t               *log;
    ngx_ocdz_pg_conn_t      *conns;
    ngx_socket_t             ident;       /* -1: see above */

    ngx_uint_t               nconns;

    u_char                  *abuf;        /* array parameters of a batch */
    size_t                   abuf_size;
    size_t                   abuf_used;

    ngx_queue_t              queue;       /* waiting for a connection */
    ngx_uint_t               nqueued;
    ngx_uint_t               nqueued_fg;
    ngx_uint_t               nrunning_bg;
    ngx_uint_t               nqueued_stmt[NGX_OCDZ_PG_MAX_STMTS];
    ngx_event_t              queue_timer;

    ngx_queue_t              failed;      /* UNAVAILABLE to deliver */
    ngx_event_t              fail_event;
    ngx_event_t              batch_event; /* dispatch at the end of this
                                             event loop turn */
    ngx_event_t              hold_timer;  /* the longest a batch waits
                                             for more queries */

    ngx_msec_t               down_until;
    unsigned                 down:1;

    /* an outage, logged once (ocdz_alarm): the database down, or its
       schema too old; what was refused meanwhile, of it the poller's */
    ocdz_alarm_t             outage[2];
    ngx_uint_t               refused_bg;
};

#define NGX_OCDZ_PG_OUTAGE_DOWN    0
#define NGX_OCDZ_PG_OUTAGE_SCHEMA  1


/* what ngx_event_ident() reads must be where it reads it */

typedef char  ngx_ocdz_pg_conn_ident_check[
    offsetof(ngx_ocdz_pg_conn_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];
typedef char  ngx_ocdz_pg_pool_ident_check[
    offsetof(ngx_ocdz_pg_pool_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static ngx_int_t ngx_ocdz_pg_connect(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_connect_poll(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_connect_failed(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_check_schema(ngx_ocdz_pg_conn_t *pc,
    PGresult *res);
static ngx_int_t ngx_ocdz_pg_wrap(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_unwrap(ngx_ocdz_pg_conn_t *pc);
static ngx_int_t ngx_ocdz_pg_watch(ngx_ocdz_pg_conn_t *pc,
    ngx_uint_t read, ngx_uint_t write);
static ngx_int_t ngx_ocdz_pg_flush(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_close(ngx_ocdz_pg_conn_t *pc);

static void ngx_ocdz_pg_event_handler(ngx_event_t *ev);
static void ngx_ocdz_pg_timer_handler(ngx_event_t *ev);
static void ngx_ocdz_pg_idle_handler(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_read(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_done(ngx_ocdz_pg_conn_t *pc);
static ngx_int_t ngx_ocdz_pg_classify(ngx_ocdz_pg_conn_t *pc,
    PGresult *res, ngx_log_t *log);
static void ngx_ocdz_pg_lost(ngx_ocdz_pg_conn_t *pc, const char *what);
static void ngx_ocdz_pg_finish(ngx_ocdz_pg_conn_t *pc, ngx_int_t rc,
    PGresult *res, ngx_uint_t close);

static ngx_int_t ngx_ocdz_pg_run(ngx_ocdz_pg_conn_t *pc,
    ngx_ocdz_pg_query_t *q);
static ngx_int_t ngx_ocdz_pg_send_stmt(ngx_ocdz_pg_conn_t *pc);
static ngx_int_t ngx_ocdz_pg_batch_params(ngx_ocdz_pg_conn_t *pc,
    const char **values);
static ngx_ocdz_pg_query_t *ngx_ocdz_pg_next(ngx_ocdz_pg_pool_t *pool);
static ngx_uint_t ngx_ocdz_pg_hold(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q);
static void ngx_ocdz_pg_gather(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q);
static void ngx_ocdz_pg_unbatch(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q, ngx_uint_t failed);
static void ngx_ocdz_pg_wipe_batch(ngx_ocdz_pg_pool_t *pool);
static void ngx_ocdz_pg_dispatch(ngx_ocdz_pg_pool_t *pool);
static void ngx_ocdz_pg_enqueue(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q, ngx_uint_t head);
static void ngx_ocdz_pg_dequeue(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q);
static void ngx_ocdz_pg_fail(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q);
static void ngx_ocdz_pg_fail_handler(ngx_event_t *ev);
static void ngx_ocdz_pg_batch_handler(ngx_event_t *ev);
static void ngx_ocdz_pg_arm_queue_timer(ngx_ocdz_pg_pool_t *pool);
static void ngx_ocdz_pg_queue_timer_handler(ngx_event_t *ev);

static ngx_ocdz_pg_conn_t *ngx_ocdz_pg_idle_conn(ngx_ocdz_pg_pool_t *pool);
static ngx_uint_t ngx_ocdz_pg_count(ngx_ocdz_pg_pool_t *pool,
    ngx_uint_t state);
static ngx_uint_t ngx_ocdz_pg_is_down(ngx_ocdz_pg_pool_t *pool);
static ngx_uint_t ngx_ocdz_pg_ssl_pending(PGconn *conn);
static void ngx_ocdz_pg_notice(void *arg, const PGresult *res);
static ngx_uint_t ngx_ocdz_pg_quotes_values(const char *sqlstate);
static ngx_log_t *ngx_ocdz_pg_log(ngx_ocdz_pg_conn_t *pc);
static void ngx_ocdz_pg_outage(ngx_ocdz_pg_pool_t *pool, ngx_uint_t which,
    const char *fmt, ...);
static void ngx_ocdz_pg_outage_end(ngx_ocdz_pg_pool_t *pool);
static void ngx_ocdz_pg_refused(ngx_ocdz_pg_pool_t *pool,
    ngx_ocdz_pg_query_t *q);


/* worker life */


ngx_ocdz_pg_pool_t *
ngx_ocdz_pg_create(ngx_cycle_t *cycle, ngx_ocdz_pg_conf_t *pgcf)
{
    ngx_uint_t           i;
    ngx_ocdz_pg_conn_t  *pc;
    ngx_ocdz_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_ocdz_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->conf = pgcf;
    pool->log = cycle->log;
    pool->ident = (ngx_socket_t) -1;
    pool->nconns = pgcf->pool_size;

    pool->conns = ngx_pcalloc(cycle->pool,
                              pool->nconns * sizeof(ngx_ocdz_pg_conn_t));
    if (pool->conns == NULL) {
        return NULL;
    }

    for (i = 0; i < pool->nconns; i++) {
        pc = &pool->conns[i];
        pc->pool = pool;
        pc->ident = (ngx_socket_t) -1;
        pc->timer.handler = ngx_ocdz_pg_timer_handler;
        pc->timer.data = pc;
        pc->timer.log = pool->log;
        pc->timer.cancelable = 1;
    }

    ngx_queue_init(&pool->queue);
    ngx_queue_init(&pool->failed);

    pool->queue_timer.handler = ngx_ocdz_pg_queue_timer_handler;
    pool->queue_timer.data = pool;
    pool->queue_timer.log = pool->log;
    pool->queue_timer.cancelable = 1;

    pool->fail_event.handler = ngx_ocdz_pg_fail_handler;
    pool->fail_event.data = pool;
    pool->fail_event.log = pool->log;

    pool->batch_event.handler = ngx_ocdz_pg_batch_handler;
    pool->batch_event.data = pool;
    pool->batch_event.log = pool->log;

    pool->hold_timer.handler = ngx_ocdz_pg_batch_handler;
    pool->hold_timer.data = pool;
    pool->hold_timer.log = pool->log;
    pool->hold_timer.cancelable = 1;

    return pool;
}


void
ngx_ocdz_pg_destroy(ngx_ocdz_pg_pool_t *pool)
{
    ngx_uint_t            i;
    ngx_queue_t          *qu;
    ngx_ocdz_pg_conn_t   *pc;
    ngx_ocdz_pg_query_t  *q;

    for (i = 0; i < pool->nconns; i++) {
        pc = &pool->conns[i];

        while (pc->query) {
            q = pc->query;
            pc->query = q->batch_next;
            q->batch_next = NULL;
            q->running = 0;
            q->conn = NULL;
        }

        ngx_ocdz_pg_close(pc);
    }

    while (!ngx_queue_empty(&pool->queue)) {
        qu = ngx_queue_head(&pool->queue);
        q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);
        ngx_ocdz_pg_dequeue(pool, q);
    }

    while (!ngx_queue_empty(&pool->failed)) {
        qu = ngx_queue_head(&pool->failed);
        q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);
        ngx_queue_remove(qu);
        q->failing = 0;
    }

    if (pool->queue_timer.timer_set) {
        ngx_del_timer(&pool->queue_timer);
    }

    if (pool->fail_event.posted) {
        ngx_delete_posted_event(&pool->fail_event);
    }

    if (pool->batch_event.posted) {
        ngx_delete_posted_event(&pool->batch_event);
    }

    if (pool->hold_timer.timer_set) {
        ngx_del_timer(&pool->hold_timer);
    }

    if (pool->abuf) {
        ngx_free(pool->abuf);
        pool->abuf = NULL;
    }
}


/* the callers' side */


ngx_int_t
ngx_ocdz_pg_send(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_int_t            rc;
    ngx_uint_t           capacity, batch, idle;
    ngx_ocdz_pg_conn_t  *pc;

    if (q->waiting || q->running || q->failing) {
        ngx_log_error(NGX_LOG_ALERT, q->log ? q->log : pool->log, 0,
                      "ocdz pg: query sent twice");
        return NGX_ERROR;
    }

    if (q->stmt >= pool->conf->nstmts
        || q->nparams != pool->conf->stmts[q->stmt].nparams
        || q->handler == NULL)
    {
        ngx_log_error(NGX_LOG_ALERT, q->log ? q->log : pool->log, 0,
                      "ocdz pg: invalid query: statement %ui, "
                      "%d parameters", q->stmt, q->nparams);
        return NGX_ERROR;
    }

    if (q->log == NULL) {
        q->log = pool->log;
    }

    q->pool = pool;
    q->conn = NULL;
    q->batch_next = NULL;
    q->alone = 0;
    q->queued_at = ngx_current_msec;

    /*
     * A statement with an array form waits for the end of this event
     * loop turn, so that the requests that came in together go to the
     * database together; the others start now if they can.
     */

    batch = (pool->conf->stmts[q->stmt].batch != NGX_ERROR);

    if (!batch && ngx_queue_empty(&pool->queue)
        && (q->background == NGX_OCDZ_PG_FOREGROUND
            || pool->nrunning_bg < pool->conf->background_max))
    {
        /* a stale idle connection is closed by run(): try the next */

        while ((pc = ngx_ocdz_pg_idle_conn(pool)) != NULL) {
            rc = ngx_ocdz_pg_run(pc, q);

            if (rc == NGX_OK) {
                return NGX_OK;
            }

            if (rc == NGX_ERROR) {
                ngx_ocdz_pg_fail(pool, q);
                return NGX_OK;
            }
        }
    }

    idle = ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_IDLE);

    if (idle == 0 && ngx_ocdz_pg_is_down(pool)) {
        ngx_log_debug0(NGX_LOG_DEBUG_EVENT, q->log, 0,
                       "ocdz pg: database down, declined");
        ngx_ocdz_status_db_shed(pool->conf->status);
        ngx_ocdz_pg_refused(pool, q);
        return NGX_DECLINED;
    }

    /*
     * Slots idle, being or to be connected take one query each.
     * Background queries wait apart: the caller bounds them.
     */

    if (q->background == NGX_OCDZ_PG_FOREGROUND) {
        capacity = pool->conf->queue_size + idle
                   + ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_FREE)
                   + ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_CONNECTING)
                   + ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_CHECKING);

        if (pool->nqueued_fg >= capacity) {
            ngx_log_error(NGX_LOG_WARN, q->log, 0,
                          "ocdz pg: %ui queries wait for a database "
                          "connection, declined", pool->nqueued_fg);
            ngx_ocdz_status_db_shed(pool->conf->status);
            return NGX_DECLINED;
        }
    }

    ngx_ocdz_pg_enqueue(pool, q, 0);

    if (batch) {
        if (!pool->batch_event.posted) {
            ngx_post_event(&pool->batch_event, &ngx_posted_events);
        }

        ngx_ocdz_pg_arm_queue_timer(pool);

    } else {
        ngx_ocdz_pg_dispatch(pool);
    }

    return NGX_OK;
}


void
ngx_ocdz_pg_abandon(ngx_ocdz_pg_query_t *q)
{
    ngx_ocdz_pg_conn_t    *pc;
    ngx_ocdz_pg_pool_t    *pool;
    ngx_ocdz_pg_query_t  **qp;

    /* nothing of q is in the pool: its handler ran, or the pool is gone */

    if (!q->waiting && !q->running && !q->failing) {
        return;
    }

    pool = q->pool;

    if (q->waiting) {
        ngx_ocdz_pg_dequeue(pool, q);
        ngx_ocdz_pg_arm_queue_timer(pool);

    } else if (q->failing) {
        ngx_queue_remove(&q->queue);
        q->failing = 0;

    } else if (q->conn == NULL) {

        /* its batch's result is being handed out: skip it */

        q->running = 0;

    } else {
        pc = q->conn;

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, q->log, 0,
                       "ocdz pg: ocdz_s%ui abandoned while running",
                       pc->stmt);

        /*
         * The statement runs on; q's part of the result will be
         * discarded. Its values were copied into libpq's buffer when
         * the statement was sent, or will never be.
         */

        for (qp = &pc->query; *qp; qp = &(*qp)->batch_next) {
            if (*qp == q) {
                *qp = q->batch_next;
                break;
            }
        }

        if (pc->query == NULL) {
            pc->timer.cancelable = 1;
        }

        q->batch_next = NULL;
        q->conn = NULL;
        q->running = 0;
    }
}


const char *
ngx_ocdz_pg_sqlstate(PGresult *res)
{
    const char  *s;

    if (res == NULL) {
        return "";
    }

    s = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return s ? s : "";
}


/* connecting */


static ngx_int_t
ngx_ocdz_pg_connect(ngx_ocdz_pg_conn_t *pc)
{
    u_char               buf[NGX_OCDZ_PG_ERRLEN];
    ngx_ocdz_pg_pool_t  *pool;

    pool = pc->pool;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "ocdz pg: connecting slot %ui",
                   (ngx_uint_t) (pc - pool->conns));

    pc->pgconn = PQconnectStartParams(pool->conf->keywords,
                                      pool->conf->values, 0);
    ngx_ocdz_status_db_connect(pool->conf->status, 0);

    if (pc->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: PQconnectStartParams() failed: "
                      "out of memory");
        return NGX_ERROR;
    }

    pc->state = NGX_OCDZ_PG_CONNECTING;
    pc->prepared = 0;

    if (PQstatus(pc->pgconn) == CONNECTION_BAD) {
        ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_DOWN,
                           "could not connect to \"%V\": %s",
                           &pool->conf->conninfo,
                           ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                              PQerrorMessage(pc->pgconn)));
        goto failed;
    }

    if (PQsetnonblocking(pc->pgconn, 1) == -1) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: PQsetnonblocking() failed: %s",
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(pc->pgconn)));
        goto failed;
    }

    PQsetNoticeReceiver(pc->pgconn, ngx_ocdz_pg_notice, pc);

    /* as if PQconnectPoll() had said PGRES_POLLING_WRITING */

    if (ngx_ocdz_pg_wrap(pc) != NGX_OK
        || ngx_ocdz_pg_watch(pc, 0, 1) != NGX_OK)
    {
        goto failed;
    }

    pc->timer.cancelable = 1;
    ngx_add_timer(&pc->timer, pool->conf->connect_timeout);

    return NGX_OK;

failed:

    ngx_ocdz_pg_close(pc);
    return NGX_ERROR;
}


static void
ngx_ocdz_pg_connect_poll(ngx_ocdz_pg_conn_t *pc)
{
    u_char                     buf[NGX_OCDZ_PG_ERRLEN];
    ngx_ocdz_pg_pool_t        *pool;
    PostgresPollingStatusType  st;

    pool = pc->pool;

    st = PQconnectPoll(pc->pgconn);

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "ocdz pg: slot %ui PQconnectPoll(): %d",
                   (ngx_uint_t) (pc - pool->conns), (int) st);

    if (st == PGRES_POLLING_FAILED) {
        ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_DOWN,
                           "could not connect to \"%V\": %s",
                           &pool->conf->conninfo,
                           ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                              PQerrorMessage(pc->pgconn)));
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    /* libpq may have moved to another socket: next address, no SSL */

    if (ngx_ocdz_pg_wrap(pc) != NGX_OK) {
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    switch (st) {

    case PGRES_POLLING_READING:
        if (ngx_ocdz_pg_watch(pc, 1, 0) != NGX_OK) {
            ngx_ocdz_pg_connect_failed(pc);
            return;
        }

        /* the socket says nothing of bytes already inside OpenSSL */

        if (ngx_ocdz_pg_ssl_pending(pc->pgconn)) {
            ngx_post_event(pc->c->read, &ngx_posted_events);
        }

        return;

    case PGRES_POLLING_WRITING:
        if (ngx_ocdz_pg_watch(pc, 0, 1) != NGX_OK) {
            ngx_ocdz_pg_connect_failed(pc);
        }

        return;

    default: /* PGRES_POLLING_OK */
        break;
    }

    /* connected: check the schema once; connect_timeout still runs */

    pc->state = NGX_OCDZ_PG_CHECKING;

    if (!PQsendQuery(pc->pgconn, NGX_OCDZ_PG_SCHEMA_QUERY)) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: could not send the schema check: %s",
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(pc->pgconn)));
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    if (ngx_ocdz_pg_flush(pc) != NGX_OK) {
        ngx_ocdz_pg_lost(pc, "sending the schema check");
    }
}


static void
ngx_ocdz_pg_connect_failed(ngx_ocdz_pg_conn_t *pc)
{
    ngx_ocdz_pg_pool_t  *pool;

    pool = pc->pool;

    ngx_ocdz_pg_close(pc);
    ngx_ocdz_status_db_connect(pool->conf->status, 1);

    /* decline at once for a while instead of queueing for nothing */

    pool->down = 1;
    pool->down_until = ngx_current_msec + pool->conf->retry_delay;

    ngx_ocdz_pg_dispatch(pool);
}


static void
ngx_ocdz_pg_check_schema(ngx_ocdz_pg_conn_t *pc, PGresult *res)
{
    u_char               buf[NGX_OCDZ_PG_ERRLEN];
    ngx_int_t            version;
    const char          *sqlstate, *msg;
    ngx_ocdz_pg_pool_t  *pool;

    pool = pc->pool;

    if (PQstatus(pc->pgconn) != CONNECTION_OK || res == NULL) {
        ngx_ocdz_pg_lost(pc, "checking the schema version");
        return;
    }

    if (PQresultStatus(res) == PGRES_TUPLES_OK) {

        if (PQntuples(res) != 1 || PQnfields(res) != 1) {
            version = 0;

        } else if (PQgetisnull(res, 0, 0)) {
            version = 0;

        } else {
            version = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                               PQgetlength(res, 0, 0));
            if (version == NGX_ERROR) {
                version = 0;
            }
        }

        if (version < NGX_OCDZ_SCHEMA_VERSION) {
            ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_SCHEMA,
                               "database schema version %i is older than "
                               "the module needs (%d): run sql/ocdz.sql",
                               version, NGX_OCDZ_SCHEMA_VERSION);
            ngx_ocdz_pg_connect_failed(pc);
            return;
        }

    } else {
        sqlstate = ngx_ocdz_pg_sqlstate(res);

        if (ngx_strcmp(sqlstate, "42P01") == 0
            || ngx_strcmp(sqlstate, "3F000") == 0)
        {
            ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_SCHEMA,
                               "database schema version 0 is older than "
                               "the module needs (%d): run sql/ocdz.sql "
                               "(ocdz.schema_version is missing)",
                               NGX_OCDZ_SCHEMA_VERSION);

        } else {
            msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

            ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_SCHEMA,
                               "checking the database schema version "
                               "failed: %s (SQLSTATE %s)",
                               ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                                  msg ? msg : ""),
                               sqlstate);
        }

        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    if (PQtransactionStatus(pc->pgconn) != PQTRANS_IDLE) {
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                   "ocdz pg: slot %ui connected",
                   (ngx_uint_t) (pc - pool->conns));

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    pool->down = 0;

    ngx_ocdz_pg_outage_end(pool);

    if (ngx_ocdz_pg_watch(pc, 1, 0) != NGX_OK) {
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    pc->state = NGX_OCDZ_PG_IDLE;
    pc->c->idle = 1;

    ngx_ocdz_pg_dispatch(pool);
}


/*
 * Wraps PQsocket() in an nginx connection, again if libpq has moved to
 * another socket. The fd number alone does not tell: a new socket
 * often gets the number libpq just closed, and epoll forgot the old one.
 */

static ngx_int_t
ngx_ocdz_pg_wrap(ngx_ocdz_pg_conn_t *pc)
{
    int                  fd;
    struct stat          st;
    ngx_connection_t    *c;
    ngx_ocdz_pg_pool_t  *pool;

    pool = pc->pool;

    fd = PQsocket(pc->pgconn);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: libpq has no socket");
        return NGX_ERROR;
    }

    if (fstat(fd, &st) == -1) {
        ngx_log_error(NGX_LOG_ALERT, pool->log, ngx_errno,
                      "ocdz pg: fstat(%d) failed", fd);
        return NGX_ERROR;
    }

    if (pc->c) {
        if (pc->c->fd == fd && pc->dev == st.st_dev && pc->ino == st.st_ino)
        {
            return NGX_OK;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                       "ocdz pg: socket changed from %d to %d",
                       pc->c->fd, fd);

        ngx_ocdz_pg_unwrap(pc);
    }

    c = ngx_get_connection(fd, pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->read->handler = ngx_ocdz_pg_event_handler;
    c->write->handler = ngx_ocdz_pg_event_handler;
    c->read->log = pool->log;
    c->write->log = pool->log;

    pc->c = c;
    pc->dev = st.st_dev;
    pc->ino = st.st_ino;

    return NGX_OK;
}


/* frees the nginx connection; the socket stays libpq's to close */

static void
ngx_ocdz_pg_unwrap(ngx_ocdz_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->c;
    pc->c = NULL;

    /*
     * NGX_CLOSE_EVENT: no epoll_ctl() call; closing the socket (libpq
     * has done it or is about to) removes it from epoll
     */

    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active || c->write->disabled) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    c->fd = (ngx_socket_t) -1;
}


/*
 * Level-triggered, unlike nginx's own edge-triggered sockets: libpq
 * reads one chunk per PQconsumeInput(), so more may wait in the kernel.
 */

static ngx_int_t
ngx_ocdz_pg_watch(ngx_ocdz_pg_conn_t *pc, ngx_uint_t read, ngx_uint_t write)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (read && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!read && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (write && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!write && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* pushes what libpq buffered; write readiness is watched until done */

static ngx_int_t
ngx_ocdz_pg_flush(ngx_ocdz_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pgconn);

    if (rc == -1) {
        return NGX_ERROR;
    }

    return ngx_ocdz_pg_watch(pc, 1, rc == 1);
}


static void
ngx_ocdz_pg_close(ngx_ocdz_pg_conn_t *pc)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->res) {
        PQclear(pc->res);
        pc->res = NULL;
    }

    if (pc->c) {
        ngx_ocdz_pg_unwrap(pc);
    }

    if (pc->pgconn) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pc->pool->log, 0,
                       "ocdz pg: closing slot %ui",
                       (ngx_uint_t) (pc - pc->pool->conns));

        PQfinish(pc->pgconn);
        pc->pgconn = NULL;
    }

    pc->state = NGX_OCDZ_PG_FREE;
    pc->prepared = 0;
}


/* events */


static void
ngx_ocdz_pg_event_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_ocdz_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    switch (pc->state) {

    case NGX_OCDZ_PG_CONNECTING:
        ngx_ocdz_pg_connect_poll(pc);
        return;

    case NGX_OCDZ_PG_IDLE:
        ngx_ocdz_pg_idle_handler(pc);
        return;

    case NGX_OCDZ_PG_CHECKING:
    case NGX_OCDZ_PG_PREPARING:
    case NGX_OCDZ_PG_RUNNING:

        if (ev->write) {
            if (ngx_ocdz_pg_flush(pc) != NGX_OK) {
                ngx_ocdz_pg_lost(pc, "sending");
            }

            return;
        }

        ngx_ocdz_pg_read(pc);
        return;

    default:
        return;
    }
}


static void
ngx_ocdz_pg_timer_handler(ngx_event_t *ev)
{
    ngx_ocdz_pg_conn_t  *pc;
    ngx_ocdz_pg_pool_t  *pool;

    pc = ev->data;
    pool = pc->pool;

    switch (pc->state) {

    case NGX_OCDZ_PG_CONNECTING:
    case NGX_OCDZ_PG_CHECKING:
        ngx_ocdz_pg_outage(pool, NGX_OCDZ_PG_OUTAGE_DOWN,
                           "connecting to \"%V\" timed out after %M ms",
                           &pool->conf->conninfo,
                           pool->conf->connect_timeout);
        ngx_ocdz_pg_connect_failed(pc);
        return;

    case NGX_OCDZ_PG_PREPARING:
    case NGX_OCDZ_PG_RUNNING:

        /* PQcancel() blocks: the connection is closed instead */

        ngx_log_error(NGX_LOG_ERR, ngx_ocdz_pg_log(pc), NGX_ETIMEDOUT,
                      "ocdz pg: statement ocdz_s%ui timed out after %M ms, "
                      "closing its connection", pc->stmt,
                      pool->conf->query_timeout);
        ngx_ocdz_pg_finish(pc, NGX_OCDZ_PG_UNAVAILABLE, NULL, 1);
        return;

    default:
        return;
    }
}


/* idle: notice the server closing, honour graceful shutdown */

static void
ngx_ocdz_pg_idle_handler(ngx_ocdz_pg_conn_t *pc)
{
    u_char               buf[NGX_OCDZ_PG_ERRLEN];
    PGresult            *res;
    ngx_ocdz_pg_pool_t  *pool;

    pool = pc->pool;

    if (pc->c->close) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pool->log, 0,
                       "ocdz pg: closing idle slot %ui",
                       (ngx_uint_t) (pc - pool->conns));
        ngx_ocdz_pg_close(pc);
        return;
    }

    for ( ;; ) {
        if (!PQconsumeInput(pc->pgconn)
            || PQstatus(pc->pgconn) != CONNECTION_OK)
        {
            ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                          "ocdz pg: idle connection closed: %s",
                          ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                             PQerrorMessage(pc->pgconn)));
            ngx_ocdz_pg_close(pc);
            ngx_ocdz_pg_dispatch(pool);
            return;
        }

        while (!PQisBusy(pc->pgconn)) {
            res = PQgetResult(pc->pgconn);
            if (res == NULL) {
                break;
            }

            PQclear(res);
        }

        if (!ngx_ocdz_pg_ssl_pending(pc->pgconn)) {
            return;
        }
    }
}


static void
ngx_ocdz_pg_read(ngx_ocdz_pg_conn_t *pc)
{
    PGresult        *res;
    ExecStatusType   st;

    if (!PQconsumeInput(pc->pgconn)) {
        ngx_ocdz_pg_lost(pc, "reading");
        return;
    }

    for ( ;; ) {

        /*
         * PQgetResult() would block while busy. Bytes that OpenSSL
         * decrypted but libpq has no room for yet will never make the
         * socket readable: consume them before waiting.
         */

        while (PQisBusy(pc->pgconn)) {
            if (!ngx_ocdz_pg_ssl_pending(pc->pgconn)) {
                return;
            }

            if (!PQconsumeInput(pc->pgconn)) {
                ngx_ocdz_pg_lost(pc, "reading");
                return;
            }
        }

        res = PQgetResult(pc->pgconn);
        if (res == NULL) {
            break;
        }

        st = PQresultStatus(res);

        switch (st) {

        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            PQclear(res);
            ngx_ocdz_pg_lost(pc, "reading (unexpected COPY)");
            return;

        case PGRES_BAD_RESPONSE:
        case PGRES_NONFATAL_ERROR:
        case PGRES_FATAL_ERROR:

            /* the first error is the one that matters */

            if (pc->res && PQresultStatus(pc->res) == PGRES_FATAL_ERROR) {
                PQclear(res);
                break;
            }

            if (pc->res) {
                PQclear(pc->res);
            }

            pc->res = res;
            break;

        default:
            if (pc->res && PQresultStatus(pc->res) == PGRES_FATAL_ERROR) {
                PQclear(res);
                break;
            }

            if (pc->res) {
                PQclear(pc->res);
            }

            pc->res = res;
            break;
        }
    }

#if (NGX_DEBUG)
    {
    const char  *status;

    status = pc->res ? PQresStatus(PQresultStatus(pc->res)) : "no result";

    if (pc->state == NGX_OCDZ_PG_CHECKING) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, pc->pool->log, 0,
                       "ocdz pg: schema check: %s", status);

    } else {
        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, ngx_ocdz_pg_log(pc), 0,
                       "ocdz pg: %s ocdz_s%ui: %s",
                       pc->state == NGX_OCDZ_PG_PREPARING ? "prepare"
                                                          : "execute",
                       pc->stmt, status);
    }
    }
#endif

    ngx_ocdz_pg_done(pc);
}


/* every result of a command is in */

static void
ngx_ocdz_pg_done(ngx_ocdz_pg_conn_t *pc)
{
    ngx_int_t   rc;
    PGresult   *res;

    res = pc->res;
    pc->res = NULL;

    switch (pc->state) {

    case NGX_OCDZ_PG_CHECKING:
        ngx_ocdz_pg_check_schema(pc, res);
        if (res) {
            PQclear(res);
        }

        return;

    case NGX_OCDZ_PG_PREPARING:

        if (res && PQresultStatus(res) == PGRES_COMMAND_OK
            && PQstatus(pc->pgconn) == CONNECTION_OK)
        {
            PQclear(res);
            pc->prepared |= (uint64_t) 1 << pc->stmt;

            if (pc->query == NULL) {
                /* abandoned: no values to execute with */
                ngx_ocdz_pg_finish(pc, NGX_OCDZ_PG_OK, NULL, 0);
                return;
            }

            if (ngx_ocdz_pg_send_stmt(pc) != NGX_OK) {
                ngx_ocdz_pg_lost(pc, "sending");
            }

            return;
        }

        break;

    default:
        break;
    }

    rc = ngx_ocdz_pg_classify(pc, res, ngx_ocdz_pg_log(pc));

    if (rc == NGX_OCDZ_PG_UNAVAILABLE && res) {
        PQclear(res);
        res = NULL;
    }

    ngx_ocdz_pg_finish(pc, rc, res, 0);
}


static ngx_int_t
ngx_ocdz_pg_classify(ngx_ocdz_pg_conn_t *pc, PGresult *res, ngx_log_t *log)
{
    u_char          buf[NGX_OCDZ_PG_ERRLEN];
    const char     *sqlstate, *msg;
    ExecStatusType  st;

    if (PQstatus(pc->pgconn) != CONNECTION_OK) {

        /* [warn]: a database that is down is logged by the reconnect */

        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "ocdz pg: connection lost running ocdz_s%ui: %s",
                      pc->stmt,
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(pc->pgconn)));
        return NGX_OCDZ_PG_UNAVAILABLE;
    }

    if (res == NULL) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "ocdz pg: no result for ocdz_s%ui", pc->stmt);
        return NGX_OCDZ_PG_UNAVAILABLE;
    }

    st = PQresultStatus(res);

    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        return NGX_OCDZ_PG_OK;
    }

    sqlstate = ngx_ocdz_pg_sqlstate(res);
    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

    if (msg == NULL || ngx_ocdz_pg_quotes_values(sqlstate)) {
        msg = "";
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "ocdz pg: %s ocdz_s%ui failed: SQLSTATE %s%s%s",
                  pc->state == NGX_OCDZ_PG_PREPARING ? "preparing"
                                                     : "statement",
                  pc->stmt, sqlstate, msg[0] ? ": " : "",
                  ngx_ocdz_pg_errmsg(buf, sizeof(buf), msg));

    if (ngx_strncmp(sqlstate, "08", 2) == 0
        || ngx_strncmp(sqlstate, "53", 2) == 0
        || ngx_strncmp(sqlstate, "57", 2) == 0)
    {
        return NGX_OCDZ_PG_UNAVAILABLE;
    }

    return NGX_OCDZ_PG_QUERY_ERROR;
}


/* from events only: may call the handler */

static void
ngx_ocdz_pg_lost(ngx_ocdz_pg_conn_t *pc, const char *what)
{
    u_char  buf[NGX_OCDZ_PG_ERRLEN];

    ngx_log_error(NGX_LOG_WARN, ngx_ocdz_pg_log(pc), 0,
                  "ocdz pg: connection lost %s: %s", what,
                  ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                     PQerrorMessage(pc->pgconn)));

    if (pc->state == NGX_OCDZ_PG_CONNECTING
        || pc->state == NGX_OCDZ_PG_CHECKING)
    {
        ngx_ocdz_pg_connect_failed(pc);
        return;
    }

    ngx_ocdz_pg_finish(pc, NGX_OCDZ_PG_UNAVAILABLE, NULL, 1);
}


/*
 * Ends the command on pc: the connection goes back to the pool or is
 * closed, waiting queries get their turn, then the handler is called.
 */

static void
ngx_ocdz_pg_finish(ngx_ocdz_pg_conn_t *pc, ngx_int_t rc, PGresult *res,
    ngx_uint_t close)
{
    ngx_uint_t             i, n, nbatch;
    ngx_ocdz_pg_pool_t    *pool;
    ngx_ocdz_pg_query_t   *q, *next;
    ngx_ocdz_pg_query_t   *batch[NGX_OCDZ_PG_MAX_BATCH];

    pool = pc->pool;

    /*
     * The queries leave the connection before any handler runs: a
     * handler may send again, and the connection may get new work.
     * Until its turn a query stays "running" without a connection, so
     * that an earlier handler abandoning it is noticed.
     */

    n = 0;

    for (q = pc->query; q; q = next) {
        next = q->batch_next;
        q->batch_next = NULL;
        q->conn = NULL;
        batch[n++] = q;
    }

    pc->query = NULL;
    nbatch = pc->nbatch;
    pc->nbatch = 0;
    pc->batch = 0;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->background) {
        pool->nrunning_bg--;
        pc->background = 0;
    }

    if (close
        || PQstatus(pc->pgconn) != CONNECTION_OK
        || PQtransactionStatus(pc->pgconn) != PQTRANS_IDLE
        || (ngx_exiting && ngx_queue_empty(&pool->queue))
        || ngx_ocdz_pg_watch(pc, 1, 0) != NGX_OK)
    {
        ngx_ocdz_pg_close(pc);

    } else {
        pc->state = NGX_OCDZ_PG_IDLE;
        pc->c->idle = 1;
    }

    if (rc == NGX_OCDZ_PG_QUERY_ERROR && nbatch > 1 && n) {

        /*
         * Nothing of a refused statement was committed: its queries run
         * again one by one, first in the queue, so that only the one
         * at fault fails.
         */

        ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                      "ocdz pg: a batch of %ui queries was refused, "
                      "running them one by one", nbatch);

        for (i = n; i > 0; i--) {
            q = batch[i - 1];
            q->running = 0;
            q->alone = 1;
            ngx_ocdz_pg_enqueue(pool, q, 1);
        }

        n = 0;
    }

    ngx_ocdz_pg_dispatch(pool);

    for (i = 0; i < n; i++) {
        q = batch[i];

        if (!q->running) {
            continue;
        }

        q->running = 0;
        q->handler(q, rc, rc == NGX_OCDZ_PG_UNAVAILABLE ? NULL : res);
    }

    if (res) {
        PQclear(res);
    }
}


/* queue and dispatch */


/*
 * Starts q on pc. NGX_DECLINED: nothing reached the server, pc is
 * closed, q may be tried elsewhere. NGX_ERROR: q failed. Never calls
 * the handler: it runs inside ngx_ocdz_pg_send().
 */

static ngx_int_t
ngx_ocdz_pg_run(ngx_ocdz_pg_conn_t *pc, ngx_ocdz_pg_query_t *q)
{
    ngx_int_t             rc;
    ngx_ocdz_pg_pool_t   *pool;
    ngx_ocdz_pg_query_t  *m;

    pool = pc->pool;

    pc->query = q;
    pc->nbatch = 0;
    pc->c->idle = 0;

    if (q->batch_next) {
        pc->stmt = pool->conf->stmts[q->stmt].batch;
        pc->batch = 1;

    } else {
        pc->stmt = q->stmt;
        pc->batch = 0;
    }

    if (q->background == NGX_OCDZ_PG_BACKGROUND) {
        pc->background = 1;
        pool->nrunning_bg++;
    }

    for (m = q; m; m = m->batch_next) {
        m->conn = pc;
        m->running = 1;
        m->row = 0;
    }

    rc = ngx_ocdz_pg_send_stmt(pc);

    if (rc != NGX_OK) {

        /* the batch stays linked for the caller */

        pc->query = NULL;
        pc->batch = 0;

        if (pc->background) {
            pc->background = 0;
            pool->nrunning_bg--;
        }

        for (m = q; m; m = m->batch_next) {
            m->conn = NULL;
            m->running = 0;
        }

        ngx_ocdz_pg_close(pc);

        return rc;
    }

    /* a foreground query keeps a graceful shutdown waiting for it */

    pc->timer.cancelable = (q->background == NGX_OCDZ_PG_BACKGROUND);
    ngx_add_timer(&pc->timer, pool->conf->query_timeout);

    return NGX_OK;
}


static ngx_int_t
ngx_ocdz_pg_send_stmt(ngx_ocdz_pg_conn_t *pc)
{
    int                   sent;
    u_char                buf[NGX_OCDZ_PG_ERRLEN];
    ngx_log_t            *log;
    const char          **values;
    ngx_ocdz_pg_pool_t   *pool;
    ngx_ocdz_pg_conf_t   *pgcf;
    ngx_ocdz_pg_stmt_t   *stmt;
    ngx_ocdz_pg_query_t  *q;
    const char           *avalues[NGX_OCDZ_PG_MAX_PARAMS];

    pool = pc->pool;
    pgcf = pool->conf;
    q = pc->query;
    stmt = &pgcf->stmts[pc->stmt];
    log = q->log;
    values = q->values;

    if (pc->batch
        && !(pgcf->prepared && !(pc->prepared & ((uint64_t) 1 << pc->stmt))))
    {
        if (ngx_ocdz_pg_batch_params(pc, avalues) != NGX_OK) {
            return NGX_ERROR;
        }

        values = avalues;
    }

    if (pgcf->prepared && !(pc->prepared & ((uint64_t) 1 << pc->stmt))) {

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, log, 0,
                       "ocdz pg: prepare %s, %uz bytes",
                       stmt->name, stmt->sql.len);

        if (!PQsendPrepare(pc->pgconn, stmt->name,
                           (char *) stmt->sql.data, stmt->nparams, NULL))
        {
            goto failed;
        }

        pc->state = NGX_OCDZ_PG_PREPARING;

    } else if (pgcf->prepared) {

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, log, 0,
                       "ocdz pg: execute %s, %d parameters, %ui queries",
                       stmt->name, q->nparams, pc->nbatch);

        /* libpq copies the values: the batch's buffer is wiped at once */

        sent = PQsendQueryPrepared(pc->pgconn, stmt->name, q->nparams,
                                   values, pc->batch ? NULL : q->lengths,
                                   NULL, 0);
        ngx_ocdz_pg_wipe_batch(pool);

        if (!sent) {
            goto failed;
        }

        pc->state = NGX_OCDZ_PG_RUNNING;

    } else {

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, log, 0,
                       "ocdz pg: send %s unprepared, %d parameters, "
                       "%ui queries", stmt->name, q->nparams, pc->nbatch);

        sent = PQsendQueryParams(pc->pgconn, (char *) stmt->sql.data,
                                 q->nparams, NULL, values,
                                 pc->batch ? NULL : q->lengths, NULL, 0);
        ngx_ocdz_pg_wipe_batch(pool);

        if (!sent) {
            goto failed;
        }

        pc->state = NGX_OCDZ_PG_RUNNING;
    }

    if (ngx_ocdz_pg_flush(pc) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "ocdz pg: sending %s failed: %s", stmt->name,
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(pc->pgconn)));
        return NGX_ERROR;
    }

    if (pc->state == NGX_OCDZ_PG_RUNNING) {
        ngx_ocdz_status_db_statement(pgcf->status,
                                     pc->nbatch ? pc->nbatch : 1);
    }

    return NGX_OK;

failed:

    ngx_log_error(NGX_LOG_WARN, log, 0,
                  "ocdz pg: could not send %s, trying another "
                  "connection: %s", stmt->name,
                  ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                     PQerrorMessage(pc->pgconn)));
    return NGX_DECLINED;
}


/*
 * Gives idle connections to waiting queries, connects free slots for
 * the rest, and fails them all when nothing could ever serve them.
 * Never calls a handler: failures are posted.
 */

static void
ngx_ocdz_pg_dispatch(ngx_ocdz_pg_pool_t *pool)
{
    ngx_int_t             rc;
    ngx_uint_t            i, connecting, bg, share, wanted;
    ngx_queue_t          *qu;
    ngx_ocdz_pg_conn_t   *pc;
    ngx_ocdz_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->queue)) {
        pc = ngx_ocdz_pg_idle_conn(pool);
        if (pc == NULL) {
            break;
        }

        q = ngx_ocdz_pg_next(pool);
        if (q == NULL) {
            break;
        }

        ngx_ocdz_pg_dequeue(pool, q);
        ngx_ocdz_pg_gather(pool, q);

        rc = ngx_ocdz_pg_run(pc, q);

        if (rc == NGX_DECLINED) {
            ngx_ocdz_pg_unbatch(pool, q, 0);

        } else if (rc == NGX_ERROR) {
            ngx_ocdz_pg_unbatch(pool, q, 1);
        }
    }

    if (ngx_queue_empty(&pool->queue)) {
        ngx_ocdz_pg_arm_queue_timer(pool);
        return;
    }

    connecting = ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_CONNECTING)
                 + ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_CHECKING);

    /* background queries beyond their share wait for it, not for more */

    bg = pool->nqueued - pool->nqueued_fg;
    share = (pool->conf->background_max > pool->nrunning_bg)
            ? pool->conf->background_max - pool->nrunning_bg : 0;
    wanted = pool->nqueued_fg + ngx_min(bg, share);

    for (i = 0; i < pool->nconns; i++) {

        if (connecting >= wanted || ngx_ocdz_pg_is_down(pool)) {
            break;
        }

        pc = &pool->conns[i];

        if (pc->state != NGX_OCDZ_PG_FREE) {
            continue;
        }

        if (ngx_ocdz_pg_connect(pc) == NGX_OK) {
            connecting++;
            continue;
        }

        pool->down = 1;
        pool->down_until = ngx_current_msec + pool->conf->retry_delay;
    }

    if (ngx_ocdz_pg_count(pool, NGX_OCDZ_PG_FREE) == pool->nconns) {

        /* nothing connected or connecting: the database is down */

        while (!ngx_queue_empty(&pool->queue)) {
            qu = ngx_queue_head(&pool->queue);
            q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

            ngx_ocdz_pg_dequeue(pool, q);
            ngx_ocdz_pg_fail(pool, q);
        }
    }

    ngx_ocdz_pg_arm_queue_timer(pool);
}


/*
 * The oldest waiting query that may start now: a background one only
 * on the background share of the connections, and none held to gather
 * more of its statement.
 */

static ngx_ocdz_pg_query_t *
ngx_ocdz_pg_next(ngx_ocdz_pg_pool_t *pool)
{
    ngx_queue_t          *qu;
    ngx_ocdz_pg_query_t  *q;

    for (qu = ngx_queue_head(&pool->queue);
         qu != ngx_queue_sentinel(&pool->queue);
         qu = ngx_queue_next(qu))
    {
        q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

        if (q->background == NGX_OCDZ_PG_BACKGROUND
            && pool->nrunning_bg >= pool->conf->background_max)
        {
            continue;
        }

        if (ngx_ocdz_pg_hold(pool, q)) {
            continue;
        }

        return q;
    }

    return NULL;
}


/*
 * A query of a statement with an array form waits a little for others
 * of its statement (gather->wait after it came, until gather->enough of
 * them wait): each statement costs a round trip, a commit and often a
 * plan. With gather->nagle, only while a statement of its kind runs in
 * this worker, as Nagle's algorithm holds small packets while one is
 * unacknowledged: reveals arriving one by one still share a commit
 * (about 40% less database CPU per reveal at 32 connections,
 * bench/RESULTS.md), and with nothing running nothing waits.
 */

static ngx_uint_t
ngx_ocdz_pg_hold(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_uint_t             i, running;
    ngx_msec_int_t         left;
    ngx_ocdz_pg_conn_t    *pc;
    ngx_ocdz_pg_stmt_t    *st;
    ngx_ocdz_pg_gather_t  *g;

    st = &pool->conf->stmts[q->stmt];
    g = &st->gather;

    if (st->batch == NGX_ERROR
        || g->wait == 0
        || q->alone
        || pool->nqueued_stmt[q->stmt] >= g->enough
        || ngx_exiting)
    {
        return 0;
    }

    left = (ngx_msec_int_t) (q->queued_at + g->wait - ngx_current_msec);
    if (left <= 0) {
        return 0;
    }

    if (g->nagle) {
        running = 0;

        for (i = 0; i < pool->nconns; i++) {
            pc = &pool->conns[i];

            if ((pc->state == NGX_OCDZ_PG_RUNNING
                 || pc->state == NGX_OCDZ_PG_PREPARING)
                && pc->background == q->background)
            {
                running = 1;
                break;
            }
        }

        if (!running) {
            return 0;
        }
    }

    /* the earliest end of a hold wakes the queue */

    if (!pool->hold_timer.timer_set
        || (ngx_msec_int_t) (pool->hold_timer.timer.key - ngx_current_msec)
           > left)
    {
        if (pool->hold_timer.timer_set) {
            ngx_del_timer(&pool->hold_timer);
        }

        ngx_add_timer(&pool->hold_timer, (ngx_msec_t) left);
    }

    return 1;
}


/*
 * Queries of the same statement that wait behind q go with it, if the
 * statement has an array form: one round trip and one commit for all.
 * Those that wait are the ones that would otherwise each wait for a
 * connection, so an idle pool never delays a query to make a batch
 * unless its statement asks for it (ngx_ocdz_pg_hold()).
 */

static void
ngx_ocdz_pg_gather(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_uint_t            n, max;
    ngx_queue_t          *qu, *next;
    ngx_ocdz_pg_stmt_t   *st;
    ngx_ocdz_pg_query_t  *m, *last;

    st = &pool->conf->stmts[q->stmt];

    if (st->batch == NGX_ERROR || q->alone) {
        return;
    }

    max = st->gather.max;
    last = q;
    n = 1;

    for (qu = ngx_queue_head(&pool->queue);
         qu != ngx_queue_sentinel(&pool->queue) && n < max;
         qu = next)
    {
        next = ngx_queue_next(qu);
        m = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

        if (m->stmt != q->stmt || m->alone || m->background != q->background)
        {
            continue;
        }

        ngx_ocdz_pg_dequeue(pool, m);

        last->batch_next = m;
        last = m;
        n++;
    }
}


/* A batch that could not be sent: back to the head of the queue, or failed */

static void
ngx_ocdz_pg_unbatch(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q,
    ngx_uint_t failed)
{
    ngx_queue_t          *prev;
    ngx_ocdz_pg_query_t  *next;

    prev = &pool->queue;

    for ( /* void */ ; q; q = next) {
        next = q->batch_next;
        q->batch_next = NULL;

        if (failed) {
            ngx_ocdz_pg_fail(pool, q);
            continue;
        }

        ngx_ocdz_pg_enqueue(pool, q, 1);

        /* in their order: each goes after the one before */

        ngx_queue_remove(&q->queue);
        ngx_queue_insert_after(prev, &q->queue);
        prev = &q->queue;
    }
}


/*
 * The array parameters of the batch on pc, as PostgreSQL's array text:
 * {"v1","v2",NULL}, with '"' and '\' escaped. Also gives each query
 * its row of the result.
 */

static ngx_int_t
ngx_ocdz_pg_batch_params(ngx_ocdz_pg_conn_t *pc, const char **values)
{
    int                   i, nparams;
    u_char               *p;
    size_t                size;
    ngx_uint_t            n;
    const char           *v;
    ngx_ocdz_pg_pool_t   *pool;
    ngx_ocdz_pg_query_t  *m;

    pool = pc->pool;
    nparams = pc->query->nparams;

    size = 0;
    n = 0;

    for (m = pc->query; m; m = m->batch_next) {
        m->row = (int) n++;

        for (i = 0; i < nparams; i++) {
            size += m->values[i] ? 2 * ngx_strlen(m->values[i]) + 3 : 5;
        }
    }

    size += 3 * nparams;

    if (size > pool->abuf_size) {
        if (pool->abuf) {
            ngx_free(pool->abuf);
        }

        pool->abuf_size = ngx_max(size, 4096);

        pool->abuf = ngx_alloc(pool->abuf_size, pool->log);
        if (pool->abuf == NULL) {
            pool->abuf_size = 0;
            return NGX_ERROR;
        }
    }

    p = pool->abuf;

    for (i = 0; i < nparams; i++) {
        values[i] = (char *) p;
        *p++ = '{';

        for (m = pc->query; m; m = m->batch_next) {
            if (m != pc->query) {
                *p++ = ',';
            }

            v = m->values[i];

            if (v == NULL) {
                p = ngx_cpymem(p, "NULL", 4);
                continue;
            }

            *p++ = '"';

            while (*v) {
                if (*v == '"' || *v == '\\') {
                    *p++ = '\\';
                }

                *p++ = *v++;
            }

            *p++ = '"';
        }

        *p++ = '}';
        *p++ = '\0';
    }

    pool->abuf_used = p - pool->abuf;
    pc->nbatch = n;

    return NGX_OK;
}


/* the values may hold session keys */

/* the values may hold session keys */

static void
ngx_ocdz_pg_wipe_batch(ngx_ocdz_pg_pool_t *pool)
{
    if (pool->abuf_used) {
        ngx_explicit_memzero(pool->abuf, pool->abuf_used);
        pool->abuf_used = 0;
    }
}


static void
ngx_ocdz_pg_enqueue(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q,
    ngx_uint_t head)
{
    if (head) {
        ngx_queue_insert_head(&pool->queue, &q->queue);

    } else {
        ngx_queue_insert_tail(&pool->queue, &q->queue);
    }

    q->waiting = 1;
    pool->nqueued++;
    pool->nqueued_stmt[q->stmt]++;

    if (q->background == NGX_OCDZ_PG_FOREGROUND) {
        pool->nqueued_fg++;
    }
}


static void
ngx_ocdz_pg_dequeue(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_queue_remove(&q->queue);

    q->waiting = 0;
    pool->nqueued--;
    pool->nqueued_stmt[q->stmt]--;

    if (q->background == NGX_OCDZ_PG_FOREGROUND) {
        pool->nqueued_fg--;
    }
}


/* q will get NGX_OCDZ_PG_UNAVAILABLE from a posted event */

static void
ngx_ocdz_pg_fail(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_ocdz_pg_refused(pool, q);

    ngx_queue_insert_tail(&pool->failed, &q->queue);
    q->failing = 1;

    if (!pool->fail_event.posted) {
        ngx_post_event(&pool->fail_event, &ngx_posted_events);
    }
}


static void
ngx_ocdz_pg_fail_handler(ngx_event_t *ev)
{
    ngx_queue_t          *qu;
    ngx_ocdz_pg_pool_t   *pool;
    ngx_ocdz_pg_query_t  *q;

    pool = ev->data;

    while (!ngx_queue_empty(&pool->failed)) {
        qu = ngx_queue_head(&pool->failed);
        q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

        ngx_queue_remove(qu);
        q->failing = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, q->log, 0,
                       "ocdz pg: ocdz_s%ui unavailable", q->stmt);

        q->handler(q, NGX_OCDZ_PG_UNAVAILABLE, NULL);
    }
}


static void
ngx_ocdz_pg_batch_handler(ngx_event_t *ev)
{
    ngx_ocdz_pg_dispatch(ev->data);
}


/*
 * One timer for the queue: FIFO with one timeout, so the head expires
 * first. It keeps a graceful shutdown waiting only for foreground work.
 */

static void
ngx_ocdz_pg_arm_queue_timer(ngx_ocdz_pg_pool_t *pool)
{
    ngx_msec_int_t        left;
    ngx_queue_t          *qu;
    ngx_ocdz_pg_query_t  *q;

    if (ngx_queue_empty(&pool->queue)) {
        if (pool->queue_timer.timer_set) {
            ngx_del_timer(&pool->queue_timer);
        }

        return;
    }

    qu = ngx_queue_head(&pool->queue);
    q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

    left = (ngx_msec_int_t) (q->queued_at + pool->conf->query_timeout
                             - ngx_current_msec);
    if (left < 1) {
        left = 1;
    }

    pool->queue_timer.cancelable = (pool->nqueued_fg == 0);
    ngx_add_timer(&pool->queue_timer, (ngx_msec_t) left);
}


static void
ngx_ocdz_pg_queue_timer_handler(ngx_event_t *ev)
{
    ngx_queue_t          *qu;
    ngx_ocdz_pg_pool_t   *pool;
    ngx_ocdz_pg_query_t  *q;

    pool = ev->data;

    while (!ngx_queue_empty(&pool->queue)) {
        qu = ngx_queue_head(&pool->queue);
        q = ngx_queue_data(qu, ngx_ocdz_pg_query_t, queue);

        if ((ngx_msec_int_t) (q->queued_at + pool->conf->query_timeout
                              - ngx_current_msec) > 0)
        {
            break;
        }

        ngx_ocdz_pg_dequeue(pool, q);

        ngx_log_error(NGX_LOG_ERR, q->log, NGX_ETIMEDOUT,
                      "ocdz pg: ocdz_s%ui waited %M ms for a database "
                      "connection", q->stmt, pool->conf->query_timeout);

        q->handler(q, NGX_OCDZ_PG_UNAVAILABLE, NULL);
    }

    ngx_ocdz_pg_arm_queue_timer(pool);
}


/* helpers */


static ngx_ocdz_pg_conn_t *
ngx_ocdz_pg_idle_conn(ngx_ocdz_pg_pool_t *pool)
{
    ngx_uint_t  i;

    for (i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state == NGX_OCDZ_PG_IDLE) {
            return &pool->conns[i];
        }
    }

    return NULL;
}


static ngx_uint_t
ngx_ocdz_pg_count(ngx_ocdz_pg_pool_t *pool, ngx_uint_t state)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < pool->nconns; i++) {
        if (pool->conns[i].state == state) {
            n++;
        }
    }

    return n;
}


static ngx_uint_t
ngx_ocdz_pg_is_down(ngx_ocdz_pg_pool_t *pool)
{
    return pool->down
           && (ngx_msec_int_t) (pool->down_until - ngx_current_msec) > 0;
}


static ngx_uint_t
ngx_ocdz_pg_ssl_pending(PGconn *conn)
{
    SSL  *ssl;

    if (!PQsslInUse(conn)) {
        return 0;
    }

    ssl = PQsslStruct(conn, "OpenSSL");

    return ssl != NULL && SSL_pending(ssl) > 0;
}


/* server notices, and the FATAL a server sends before closing */

static void
ngx_ocdz_pg_notice(void *arg, const PGresult *res)
{
    u_char              buf[NGX_OCDZ_PG_ERRLEN];
    ngx_uint_t          level;
    const char         *severity, *sqlstate, *msg;
    ngx_ocdz_pg_conn_t *pc;

    pc = arg;

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity == NULL) {
        severity = "NOTICE";
    }

    sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    if (sqlstate == NULL) {
        sqlstate = "";
    }

    msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL || ngx_ocdz_pg_quotes_values(sqlstate)) {
        msg = "";
    }

    level = (ngx_strcmp(severity, "FATAL") == 0
             || ngx_strcmp(severity, "PANIC") == 0
             || ngx_strcmp(severity, "WARNING") == 0)
            ? NGX_LOG_WARN : NGX_LOG_NOTICE;

    ngx_log_error(level, ngx_ocdz_pg_log(pc), 0,
                  "ocdz pg: server %s: %s (SQLSTATE %s)", severity,
                  ngx_ocdz_pg_errmsg(buf, sizeof(buf), msg), sqlstate);
}


/* data exceptions and constraint violations may quote parameters */

static ngx_uint_t
ngx_ocdz_pg_quotes_values(const char *sqlstate)
{
    return ngx_strncmp(sqlstate, "22", 2) == 0
           || ngx_strncmp(sqlstate, "23", 2) == 0;
}


static ngx_log_t *
ngx_ocdz_pg_log(ngx_ocdz_pg_conn_t *pc)
{
    if (pc->query && pc->query->log) {
        return pc->query->log;
    }

    return pc->pool->log;
}


/* what ocdz_status shows of this worker's pool */

void
ngx_ocdz_pg_counts(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_counts_t *n)
{
    ngx_uint_t  i;

    ngx_memzero(n, sizeof(ngx_ocdz_pg_counts_t));

    for (i = 0; i < pool->nconns; i++) {

        switch (pool->conns[i].state) {

        case NGX_OCDZ_PG_IDLE:
            n->idle++;
            break;

        case NGX_OCDZ_PG_PREPARING:
        case NGX_OCDZ_PG_RUNNING:
            n->busy++;
            n->busy_fg += !pool->conns[i].background;
            break;

        case NGX_OCDZ_PG_CONNECTING:
        case NGX_OCDZ_PG_CHECKING:
            n->connecting++;
            break;

        default:
            n->closed++;
            break;
        }
    }

    n->queued = pool->nqueued;
    n->queued_fg = pool->nqueued_fg;
    n->down = ngx_ocdz_pg_is_down(pool);
}


/*
 * An outage is logged once per worker, at [error] when it starts and
 * when it ends (Debian's nginx logs at "error"); a line a minute while
 * it lasts counts the failures; each failure is at [info].
 */

static void
ngx_ocdz_pg_outage(ngx_ocdz_pg_pool_t *pool, ngx_uint_t which,
    const char *fmt, ...)
{
    u_char         buf[NGX_OCDZ_PG_ERRLEN], *p;
    va_list        args;
    ocdz_alarm_t  *a;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + sizeof(buf) - 1, fmt, args);
    va_end(args);

    *p = '\0';

    a = &pool->outage[which];

    switch (ocdz_alarm_raise(a, ngx_current_msec, (char *) buf)) {

    case OCDZ_ALARM_LOG_START:
        if (!pool->outage[which ^ 1].active) {
            pool->refused_bg = 0;
        }

        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: the database is unavailable: %s; card "
                      "requests get 503 and checks wait (logged again "
                      "when it is back)", buf);
        return;

    case OCDZ_ALARM_LOG_REPEAT:
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: the database is still unavailable: %uL "
                      "more failures in the last minute, %uL queries "
                      "refused so far; the latest: %s",
                      a->reported, a->refused, buf);
        return;

    default:
        ngx_log_error(NGX_LOG_INFO, pool->log, 0, "ocdz pg: %s", buf);
        return;
    }
}


static void
ngx_ocdz_pg_outage_end(ngx_ocdz_pg_pool_t *pool)
{
    char           d[32];
    ngx_uint_t     i;
    ocdz_alarm_t  *a;

    for (i = 0; i < 2; i++) {
        a = &pool->outage[i];

        if (ocdz_alarm_clear(a, ngx_current_msec) != OCDZ_ALARM_LOG_END) {
            continue;
        }

        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "ocdz pg: the database is back after %s (%s): "
                      "%uL failed connection attempts, %uL queries "
                      "refused meanwhile (%ui of them background)",
                      ocdz_alarm_duration_str(d, sizeof(d), a->duration),
                      ocdz_alarm_kind_str(i == NGX_OCDZ_PG_OUTAGE_DOWN
                                          ? OCDZ_ALARM_DB_DOWN
                                          : OCDZ_ALARM_DB_SCHEMA),
                      a->count, a->refused, pool->refused_bg);
    }
}


static void
ngx_ocdz_pg_refused(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q)
{
    ngx_uint_t  i;

    for (i = 0; i < 2; i++) {
        if (pool->outage[i].active) {
            ocdz_alarm_refused(&pool->outage[i], 1);

            if (q->background) {
                pool->refused_bg++;
            }

            return;
        }
    }
}
