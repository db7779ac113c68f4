/*
 * A per-worker pool of PostgreSQL connections driven by nginx events.
 *
 * All libpq lives here. Connections are made with PQconnectStartParams
 * and PQconnectPoll under our own connect timer, statements are sent
 * with PQsendQueryPrepared (prepared asynchronously once per
 * connection) or PQsendQueryParams, flushed with PQflush, and read with
 * PQconsumeInput/PQisBusy/PQgetResult until NULL. The fd is libpq's:
 * nginx never closes it.
 *
 * A caller fills an ngx_ocdz_pg_query_t, calls ngx_ocdz_pg_send() and
 * gets exactly one call of its handler later (never from inside
 * ngx_ocdz_pg_send), unless it calls ngx_ocdz_pg_abandon() first.
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
#define NGX_OCDZ_PG_MAX_STMTS      32
#define NGX_OCDZ_PG_MAX_BATCH      256

/* schema version the module needs: sql/ocdz.sql sets it */
#define NGX_OCDZ_SCHEMA_VERSION    1


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

/* who asks: background work may use only part of the pool */
#define NGX_OCDZ_PG_FOREGROUND     0
#define NGX_OCDZ_PG_BACKGROUND     1


typedef struct {
    ngx_str_t                sql;           /* NUL-terminated */
    int                      nparams;
    char                     name[16];      /* "ocdz_s<n>" */
    ngx_int_t                batch;         /* index of its array form,
                                               or NGX_ERROR */
} ngx_ocdz_pg_stmt_t;


/*
 * Configuration, built by the master from nginx.conf. Numbers left 0 or
 * NGX_CONF_UNSET_* get defaults in the worker: pool_size 4,
 * background_max (pool_size + 1) / 2 (0 when set: no background work),
 * queue_size 64, connect_timeout 5 s, query_timeout 10 s (also the
 * longest wait in the queue), retry_delay 1 s, statement_timeout off,
 * batch_max 16, batch_wait 0 (the directive's default is 1 ms).
 */
typedef struct {
    ngx_str_t                conninfo;      /* as written, for messages */
    const char             **keywords;      /* NULL-terminated, for */
    const char             **values;        /* PQconnectStartParams */
    ngx_str_t                password;      /* from a file; secret */

    ngx_uint_t               pool_size;     /* connections per worker */
    ngx_uint_t               background_max;/* of which background */
    ngx_uint_t               queue_size;    /* waiting queries */
    ngx_msec_t               connect_timeout;
    ngx_msec_t               query_timeout;
    ngx_msec_t               statement_timeout; /* server side, 0: off */
    ngx_msec_t               retry_delay;   /* after a failed connect */
    ngx_flag_t               prepared;      /* named prepared statements */
    ngx_uint_t               batch_max;     /* queries per batch, 1: off */
    ngx_msec_t               batch_wait;    /* longest hold for a bigger
                                               batch, 0: off */

    ngx_ocdz_pg_stmt_t       stmts[NGX_OCDZ_PG_MAX_STMTS];
    ngx_uint_t               nstmts;
} ngx_ocdz_pg_conf_t;


typedef struct ngx_ocdz_pg_query_s  ngx_ocdz_pg_query_t;

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


/*
 * Configuration time (master): parse a libpq conninfo string or URI,
 * refuse an inline password, add gssencmode=disable and
 * application_name unless given, turn a host name into hostaddr (name
 * resolution at run time would block a worker). Messages go through
 * ngx_conf_log_error; returns NGX_CONF_OK or NGX_CONF_ERROR.
 *
 * The password and statement_timeout (options=-c ...) are added to the
 * keywords by ngx_ocdz_pg_init_process, so the directives that set
 * them may come before or after this one.
 */
char *ngx_ocdz_pg_conf_conninfo(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    ngx_str_t *conninfo);

/*
 * Registers a statement; returns its index or NGX_ERROR (logged). The
 * same SQL and count registered again get the same index.
 */
ngx_int_t ngx_ocdz_pg_add_stmt(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, int nparams);

/*
 * Worker: creates the pool (connections are made when first needed).
 * Does nothing without ocdz_db (pgcf NULL or no keywords) and in
 * helper processes (cache manager/loader).
 */
ngx_int_t ngx_ocdz_pg_init_process(ngx_cycle_t *cycle,
    ngx_ocdz_pg_conf_t *pgcf);

/*
 * Worker exit: closes every connection; queued queries are dropped.
 * Until then a graceful shutdown waits for foreground queries (their
 * timers are not cancelable), never for idle or background ones.
 */
void ngx_ocdz_pg_exit_process(ngx_cycle_t *cycle);

/*
 * Runs q on a free connection, or queues it. q must start zeroed
 * (ngx_pcalloc) or be one whose handler has run. NGX_OK: the handler will
 * be called. NGX_DECLINED: not now (database known down, queue full,
 * background share used, no pool in this process); the handler will not
 * be called. NGX_ERROR: misuse (bad statement index or parameter count,
 * no handler, q already in use), logged at [alert].
 */
ngx_int_t ngx_ocdz_pg_send(ngx_ocdz_pg_query_t *q);

/*
 * The owner of q goes away: its handler will never be called. A queued
 * q is dropped; a running statement finishes unseen (query_timeout
 * still bounds it). Safe to call at any time, also after the handler.
 */
void ngx_ocdz_pg_abandon(ngx_ocdz_pg_query_t *q);

/*
 * Registers the array form of statement single: each parameter is a
 * text[] holding one element per query, in order, and the statement
 * returns exactly one row per element, ordered by it. Queries of single
 * that wait together are then sent as one statement, one transaction
 * and one commit (at most batch_max of them); each handler gets the
 * shared res and its own q->row. A batch the server refuses is run
 * again query by query, so one bad query fails alone. Returns NGX_OK
 * or NGX_ERROR (logged).
 */
ngx_int_t ngx_ocdz_pg_add_batch_stmt(ngx_conf_t *cf,
    ngx_ocdz_pg_conf_t *pgcf, ngx_uint_t single, const char *sql);

/* Connections background work could use now without waiting. */
ngx_uint_t ngx_ocdz_pg_background_free(void);

/* The SQLSTATE of an error result, or "" */
const char *ngx_ocdz_pg_sqlstate(PGresult *res);


#endif /* _NGX_OCDZ_PG_H_INCLUDED_ */
