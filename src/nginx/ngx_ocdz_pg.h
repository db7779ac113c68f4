/*
 * A per-worker pool of PostgreSQL connections driven by nginx events.
 *
 * All libpq lives here: the configuration (conninfo, addresses and
 * statements, read by the master) in ngx_ocdz_pg_conf.c, the run time
 * in ngx_ocdz_pg.c. Connections are made with PQconnectStartParams and
 * PQconnectPoll under our own connect timer, statements are sent with
 * PQsendQueryPrepared (prepared asynchronously once per connection) or
 * PQsendQueryParams, flushed with PQflush, and read with
 * PQconsumeInput/PQisBusy/PQgetResult until NULL. The fd is libpq's:
 * nginx never closes it.
 *
 * A caller fills an ngx_ocdz_pg_query_t, calls ngx_ocdz_pg_send() and
 * gets exactly one call of its handler later (never from inside
 * ngx_ocdz_pg_send), unless it calls ngx_ocdz_pg_abandon() first.
 *
 * Statements with an array form are batched: queries of one statement
 * that wait together go to the server as one statement, one transaction
 * and one commit, each query answered by its own row.
 *
 * The sockets are watched level-triggered and, under TLS, OpenSSL's
 * buffer is drained before waiting (SSL_pending): link with libssl.
 */

#ifndef _NGX_OCDZ_PG_H_INCLUDED_
#define _NGX_OCDZ_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <libpq-fe.h>


#define NGX_OCDZ_PG_MAX_PARAMS     8
#define NGX_OCDZ_PG_MAX_STMTS      64
#define NGX_OCDZ_PG_MAX_BATCH      256
#define NGX_OCDZ_PG_ERRLEN         512     /* ngx_ocdz_pg_errmsg() */

/* schema version the module needs: sql/ocdz.sql sets it */
#define NGX_OCDZ_SCHEMA_VERSION    2


/* what a handler is told */
#define NGX_OCDZ_PG_OK             0   /* res: the statement's tuples or
                                          command result */
#define NGX_OCDZ_PG_UNAVAILABLE    1   /* database down or too old, pool
                                          and queue full, timed out,
                                          connection lost: res is NULL */
#define NGX_OCDZ_PG_QUERY_ERROR    2   /* the server refused the
                                          statement: res has the error */
/*
 * Errors of SQLSTATE classes 08 (connection), 53 (resources) and 57
 * (operator intervention, statement_timeout) are UNAVAILABLE, not
 * QUERY_ERROR: they say nothing about the statement. Query errors are
 * logged at [error] with the statement name and SQLSTATE (the message
 * too, except for classes 22 and 23, which may quote values).
 */

/*
 * A condition that makes the statement's transaction commit with
 * synchronous_commit set to param (a text parameter: "off", or NULL for
 * the connection's own setting). Set inside the statement so that it
 * stays one statement: it can be prepared, and with PgBouncer in
 * transaction mode the setting ends with the transaction. Written as an
 * uncorrelated subquery: evaluated once, before any row is written.
 */
#define NGX_OCDZ_PG_ASYNC_COMMIT(param)                                      \
    "(SELECT set_config('synchronous_commit', "                              \
                       "coalesce(" param ", "                                \
                                "current_setting('synchronous_commit')), "   \
                       "true)) IS NOT NULL"

/* who asks: background work may use only part of the pool */
#define NGX_OCDZ_PG_FOREGROUND     0
#define NGX_OCDZ_PG_BACKGROUND     1


typedef struct ngx_ocdz_pg_pool_s   ngx_ocdz_pg_pool_t;
typedef struct ngx_ocdz_pg_query_s  ngx_ocdz_pg_query_t;


/* How the queries of a statement with an array form gather. */
typedef struct {
    ngx_uint_t               max;           /* queries per statement, at
                                               most NGX_OCDZ_PG_MAX_BATCH */
    ngx_uint_t               enough;        /* so many waiting go at once */
    ngx_msec_t               wait;          /* the first of them waits for
                                               others at most so long */
    ngx_uint_t               nagle;         /* ... and only while a
                                               statement of its kind
                                               (foreground, background)
                                               runs in this worker */
} ngx_ocdz_pg_gather_t;


typedef struct {
    ngx_str_t                sql;           /* NUL-terminated */
    int                      nparams;
    char                     name[16];      /* "ocdz_s<n>" */
    ngx_int_t                batch;         /* index of its array form,
                                               or NGX_ERROR */
    ngx_ocdz_pg_gather_t     gather;
} ngx_ocdz_pg_stmt_t;


/*
 * Configuration, built by the master from nginx.conf. Every number is
 * set by the module, whose defaults are in ngx_http_ocdz_module.h.
 */
typedef struct {
    ngx_str_t                conninfo;      /* as written, for messages */
    const char             **keywords;      /* NULL-terminated, for */
    const char             **values;        /* PQconnectStartParams */
    ngx_str_t                password;      /* from a file; secret */

    ngx_uint_t               pool_size;     /* connections per worker */
    ngx_uint_t               background_max;/* of which background */
    ngx_uint_t               queue_size;    /* waiting foreground queries */
    ngx_msec_t               connect_timeout;
    ngx_msec_t               query_timeout; /* also the longest wait in
                                               the queue */
    ngx_msec_t               statement_timeout; /* server side, 0: off */
    ngx_msec_t               retry_delay;   /* after a failed connect */
    ngx_flag_t               prepared;      /* named prepared statements */

    ngx_ocdz_pg_stmt_t       stmts[NGX_OCDZ_PG_MAX_STMTS];
    ngx_uint_t               nstmts;

    ngx_shm_zone_t          *status;        /* ocdz_status's counters,
                                               NULL: none */
} ngx_ocdz_pg_conf_t;


typedef void (*ngx_ocdz_pg_handler_pt)(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);


struct ngx_ocdz_pg_query_s {
    /*
     * filled by the caller; values are NUL-terminated text (libpq reads
     * them with strlen: lengths only matter for binary parameters,
     * which are not used) and must stay valid until the handler is
     * called or the query abandoned, since a queued query is sent later
     */
    ngx_uint_t               stmt;          /* index from add_stmt */
    int                      nparams;       /* the statement's count */
    const char              *values[NGX_OCDZ_PG_MAX_PARAMS];  /* NULL is
                                                                 SQL NULL */
    int                      lengths[NGX_OCDZ_PG_MAX_PARAMS];
    ngx_uint_t               background;    /* NGX_OCDZ_PG_BACKGROUND */
    ngx_ocdz_pg_handler_pt   handler;
    void                    *data;
    ngx_log_t               *log;

    /* set by the pool for the handler: this query's row of res */
    int                      row;

    /* the pool's own */
    ngx_ocdz_pg_pool_t      *pool;
    ngx_queue_t              queue;
    ngx_ocdz_pg_query_t     *batch_next;    /* sent in the same batch */
    void                    *conn;
    ngx_msec_t               queued_at;
    unsigned                 waiting:1;
    unsigned                 running:1;
    unsigned                 failing:1;     /* its UNAVAILABLE is posted */
    unsigned                 alone:1;       /* never batched again: its
                                               batch failed */
};


/* configuration time (master): ngx_ocdz_pg_conf.c */

/*
 * Parses a libpq conninfo string or URI, refuses an inline password and
 * service=, adds gssencmode=disable and application_name unless given,
 * turns a host name into hostaddr (name resolution at run time would
 * block a worker). Messages go through ngx_conf_log_error; returns
 * NGX_CONF_OK or NGX_CONF_ERROR.
 */
char *ngx_ocdz_pg_conf_conninfo(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    ngx_str_t *conninfo);

/*
 * Once every directive is read: adds the password and statement_timeout
 * (options=-c ...) to the keywords, whatever the directives' order.
 */
char *ngx_ocdz_pg_conf_done(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf);

/*
 * Registers a statement; returns its index or NGX_ERROR (logged). The
 * same SQL and count registered again get the same index.
 */
ngx_int_t ngx_ocdz_pg_add_stmt(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, int nparams);

/*
 * Registers a statement written once, in its array form: each parameter
 * written $n::type[] holds one element per query, in order, and the
 * statement returns exactly one row per element, ordered by it. The
 * form a query sent alone runs is derived from it ($n::type[] becomes
 * ARRAY[$n::type]), so the two never disagree. With gather, queries
 * that wait together are sent as one statement (one transaction, one
 * commit), each handler given the shared res and its own q->row; a
 * batch the server refuses is run again query by query, so one bad
 * query fails alone. Without gather (or with gather->max < 2), every
 * query goes alone. Returns the index queries are sent with, or
 * NGX_ERROR (logged).
 */
ngx_int_t ngx_ocdz_pg_add_batch(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, int nparams, ngx_ocdz_pg_gather_t *gather);

/*
 * One line from a libpq message for a log: ERROR lines (they may quote
 * values), DETAIL, HINT, CONTEXT and statement lines are dropped.
 */
u_char *ngx_ocdz_pg_errmsg(u_char *buf, size_t size, const char *msg);


/* run time (a worker): ngx_ocdz_pg.c */

/*
 * The worker's pool (connections are made when first needed), or NULL
 * on failure (logged).
 */
ngx_ocdz_pg_pool_t *ngx_ocdz_pg_create(ngx_cycle_t *cycle,
    ngx_ocdz_pg_conf_t *pgcf);

/*
 * Worker exit: closes every connection; queued queries are dropped and
 * no handler is called any more. Until then a graceful shutdown waits
 * for foreground queries (their timers are not cancelable), never for
 * idle or background ones.
 */
void ngx_ocdz_pg_destroy(ngx_ocdz_pg_pool_t *pool);

/*
 * Runs q on a free connection, or queues it. q must start zeroed
 * (ngx_pcalloc) or be one whose handler has run or that was abandoned.
 * NGX_OK: the handler will be called. NGX_DECLINED: not now (database
 * known down, queue full); the handler will not be called. NGX_ERROR:
 * misuse (bad statement index or parameter count, no handler, q
 * already in use), logged at [alert].
 *
 * Background queries start only on the background share of the
 * connections and never take the room of foreground ones in the queue:
 * their number is the caller's to bound.
 */
ngx_int_t ngx_ocdz_pg_send(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_query_t *q);

/*
 * The owner of q goes away: its handler will never be called. A queued
 * q is dropped; a running statement finishes unseen (query_timeout
 * still bounds it). Safe to call at any time, also after the handler
 * and after the pool is destroyed.
 */
void ngx_ocdz_pg_abandon(ngx_ocdz_pg_query_t *q);

/* The SQLSTATE of an error result, or "" */
const char *ngx_ocdz_pg_sqlstate(PGresult *res);


/* What the pool holds now: for ocdz_status and the outbox's yield. */
typedef struct {
    ngx_uint_t               idle;
    ngx_uint_t               busy;          /* preparing or running */
    ngx_uint_t               busy_fg;       /* of them foreground */
    ngx_uint_t               connecting;    /* or checking the schema */
    ngx_uint_t               closed;
    ngx_uint_t               queued;
    ngx_uint_t               queued_fg;     /* of them foreground */
    ngx_uint_t               down;          /* the database known down */
} ngx_ocdz_pg_counts_t;

void ngx_ocdz_pg_counts(ngx_ocdz_pg_pool_t *pool, ngx_ocdz_pg_counts_t *n);


#endif /* _NGX_OCDZ_PG_H_INCLUDED_ */
