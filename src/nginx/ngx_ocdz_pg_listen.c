
/*
 * ngx_http_ocdz_module: the worker's LISTEN connection.
 *
 * States: down (a timer to connect), connecting (PQconnectPoll under
 * the connect timeout), starting (the SQL sent, its results read), up
 * (notifications read as they come). The socket is libpq's, wrapped in
 * an nginx connection for its events, watched level-triggered, never
 * closed by nginx; up, it is an idle connection, which a graceful
 * shutdown closes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <sys/stat.h>

#include <openssl/ssl.h>

#include "ngx_ocdz_pg_listen.h"


#define NGX_OCDZ_PG_LISTEN_DOWN_ST      0
#define NGX_OCDZ_PG_LISTEN_CONNECTING   1
#define NGX_OCDZ_PG_LISTEN_STARTING     2
#define NGX_OCDZ_PG_LISTEN_UP_ST        3

#define NGX_OCDZ_PG_LISTEN_FIRST_DELAY  1000
#define NGX_OCDZ_PG_LISTEN_MAX_DELAY    30000


/* ev->data of the timer: read by nginx's debug log as a connection */

struct ngx_ocdz_pg_listen_s {
    void                    *data;
    PGconn                  *pgconn;
    ngx_connection_t        *c;
    ngx_socket_t             ident;       /* -1 */

    ngx_ocdz_pg_conf_t      *conf;
    ngx_log_t               *log;
    const char              *sql;
    ngx_ocdz_pg_listen_pt    handler;

    ngx_uint_t               state;
    dev_t                    dev;         /* identity of the wrapped */
    ino_t                    ino;         /* socket */
    ngx_event_t              timer;       /* connect, or connect again */
    ngx_msec_t               delay;       /* before the next connect */
    ngx_int_t                notified;    /* the SQL's boolean, -1 none */
    ngx_uint_t               failed;      /* the SQL failed */
    unsigned                 told_up:1;
    unsigned                 told_down:1;
};


typedef char  ngx_ocdz_pg_listen_ident_check[
    offsetof(ngx_ocdz_pg_listen_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static void ngx_ocdz_pg_listen_connect(ngx_ocdz_pg_listen_t *l);
static void ngx_ocdz_pg_listen_poll(ngx_ocdz_pg_listen_t *l);
static void ngx_ocdz_pg_listen_read(ngx_ocdz_pg_listen_t *l);
static void ngx_ocdz_pg_listen_started(ngx_ocdz_pg_listen_t *l);
static void ngx_ocdz_pg_listen_lost(ngx_ocdz_pg_listen_t *l,
    const char *what);
static ngx_int_t ngx_ocdz_pg_listen_wrap(ngx_ocdz_pg_listen_t *l);
static ngx_int_t ngx_ocdz_pg_listen_watch(ngx_ocdz_pg_listen_t *l,
    ngx_uint_t read, ngx_uint_t write);
static void ngx_ocdz_pg_listen_close(ngx_ocdz_pg_listen_t *l);
static void ngx_ocdz_pg_listen_event(ngx_event_t *ev);
static void ngx_ocdz_pg_listen_timer(ngx_event_t *ev);
static ngx_uint_t ngx_ocdz_pg_listen_ssl_pending(PGconn *conn);
static void ngx_ocdz_pg_listen_notice(void *arg, const PGresult *res);


ngx_ocdz_pg_listen_t *
ngx_ocdz_pg_listen_create(ngx_cycle_t *cycle, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, ngx_ocdz_pg_listen_pt handler, void *data)
{
    ngx_ocdz_pg_listen_t  *l;

    l = ngx_pcalloc(cycle->pool, sizeof(ngx_ocdz_pg_listen_t));
    if (l == NULL) {
        return NULL;
    }

    l->data = data;
    l->ident = (ngx_socket_t) -1;
    l->conf = pgcf;
    l->log = cycle->log;
    l->sql = sql;
    l->handler = handler;
    l->state = NGX_OCDZ_PG_LISTEN_DOWN_ST;
    l->delay = NGX_OCDZ_PG_LISTEN_FIRST_DELAY;

    l->timer.handler = ngx_ocdz_pg_listen_timer;
    l->timer.data = l;
    l->timer.log = cycle->log;
    l->timer.cancelable = 1;

    /* at once, but never from inside init_process */

    ngx_add_timer(&l->timer, 1);

    return l;
}


void
ngx_ocdz_pg_listen_destroy(ngx_ocdz_pg_listen_t *l)
{
    ngx_ocdz_pg_listen_close(l);

    if (l->timer.timer_set) {
        ngx_del_timer(&l->timer);
    }

    l->handler = NULL;
}


ngx_uint_t
ngx_ocdz_pg_listen_up(ngx_ocdz_pg_listen_t *l)
{
    return l->state == NGX_OCDZ_PG_LISTEN_UP_ST;
}


static void
ngx_ocdz_pg_listen_connect(ngx_ocdz_pg_listen_t *l)
{
    u_char  buf[NGX_OCDZ_PG_ERRLEN];

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, l->log, 0,
                   "ocdz pg listen: connecting");

    l->pgconn = PQconnectStartParams(l->conf->keywords, l->conf->values, 0);

    if (l->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, l->log, 0,
                      "ocdz pg listen: PQconnectStartParams() failed: "
                      "out of memory");
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    l->state = NGX_OCDZ_PG_LISTEN_CONNECTING;

    if (PQstatus(l->pgconn) == CONNECTION_BAD
        || PQsetnonblocking(l->pgconn, 1) == -1)
    {
        ngx_log_error(NGX_LOG_ERR, l->log, 0,
                      "ocdz pg listen: could not connect to \"%V\": %s",
                      &l->conf->conninfo,
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(l->pgconn)));
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    /* libpq would print server notices to stderr */

    PQsetNoticeReceiver(l->pgconn, ngx_ocdz_pg_listen_notice, l);

    if (ngx_ocdz_pg_listen_wrap(l) != NGX_OK
        || ngx_ocdz_pg_listen_watch(l, 0, 1) != NGX_OK)
    {
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    ngx_add_timer(&l->timer, l->conf->connect_timeout);
}


static void
ngx_ocdz_pg_listen_poll(ngx_ocdz_pg_listen_t *l)
{
    u_char                     buf[NGX_OCDZ_PG_ERRLEN];
    PostgresPollingStatusType  st;

    st = PQconnectPoll(l->pgconn);

    if (st == PGRES_POLLING_FAILED) {
        ngx_log_error(NGX_LOG_ERR, l->log, 0,
                      "ocdz pg listen: could not connect to \"%V\": %s",
                      &l->conf->conninfo,
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(l->pgconn)));
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    if (ngx_ocdz_pg_listen_wrap(l) != NGX_OK) {
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    switch (st) {

    case PGRES_POLLING_READING:
        if (ngx_ocdz_pg_listen_watch(l, 1, 0) != NGX_OK) {
            ngx_ocdz_pg_listen_lost(l, NULL);
            return;
        }

        if (ngx_ocdz_pg_listen_ssl_pending(l->pgconn)) {
            ngx_post_event(l->c->read, &ngx_posted_events);
        }

        return;

    case PGRES_POLLING_WRITING:
        if (ngx_ocdz_pg_listen_watch(l, 0, 1) != NGX_OK) {
            ngx_ocdz_pg_listen_lost(l, NULL);
        }

        return;

    default: /* PGRES_POLLING_OK */
        break;
    }

    /* connected: the SQL, under the same connect timeout */

    l->state = NGX_OCDZ_PG_LISTEN_STARTING;
    l->notified = -1;
    l->failed = 0;

    if (!PQsendQuery(l->pgconn, l->sql)) {
        ngx_ocdz_pg_listen_lost(l, "sending LISTEN");
        return;
    }

    if (PQflush(l->pgconn) == -1
        || ngx_ocdz_pg_listen_watch(l, 1, 0) != NGX_OK)
    {
        ngx_ocdz_pg_listen_lost(l, "sending LISTEN");
    }
}


/* results of the SQL, then notifications; never PQgetResult while busy */

static void
ngx_ocdz_pg_listen_read(ngx_ocdz_pg_listen_t *l)
{
    PGnotify   *n;
    PGresult   *res;
    ngx_str_t   payload;

    for ( ;; ) {
        if (!PQconsumeInput(l->pgconn)
            || PQstatus(l->pgconn) != CONNECTION_OK)
        {
            ngx_ocdz_pg_listen_lost(l, "reading");
            return;
        }

        while (!PQisBusy(l->pgconn)) {
            res = PQgetResult(l->pgconn);
            if (res == NULL) {
                if (l->state == NGX_OCDZ_PG_LISTEN_STARTING) {
                    ngx_ocdz_pg_listen_started(l);

                    if (l->state != NGX_OCDZ_PG_LISTEN_UP_ST) {
                        return;
                    }
                }

                break;
            }

            switch (PQresultStatus(res)) {

            case PGRES_COMMAND_OK:
                break;

            case PGRES_TUPLES_OK:
                if (PQntuples(res) == 1 && PQnfields(res) == 1) {
                    l->notified = (PQgetvalue(res, 0, 0)[0] == 't');
                }

                break;

            default:
                l->failed = 1;
                break;
            }

            PQclear(res);
        }

        while ((n = PQnotifies(l->pgconn)) != NULL) {
            payload.data = (u_char *) n->extra;
            payload.len = ngx_strlen(n->extra);

            if (l->handler && l->state == NGX_OCDZ_PG_LISTEN_UP_ST) {
                l->handler(l->data, NGX_OCDZ_PG_LISTEN_NOTIFY, &payload, 0);
            }

            PQfreemem(n);
        }

        if (l->pgconn == NULL
            || !ngx_ocdz_pg_listen_ssl_pending(l->pgconn))
        {
            return;
        }
    }
}


static void
ngx_ocdz_pg_listen_started(ngx_ocdz_pg_listen_t *l)
{
    u_char      buf[NGX_OCDZ_PG_ERRLEN];
    ngx_uint_t  level;

    if (l->failed || l->notified == -1
        || PQtransactionStatus(l->pgconn) != PQTRANS_IDLE)
    {
        ngx_log_error(NGX_LOG_ERR, l->log, 0,
                      "ocdz pg listen: LISTEN failed: %s",
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         PQerrorMessage(l->pgconn)));
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }

    if (l->timer.timer_set) {
        ngx_del_timer(&l->timer);
    }

    l->state = NGX_OCDZ_PG_LISTEN_UP_ST;
    l->delay = NGX_OCDZ_PG_LISTEN_FIRST_DELAY;
    l->c->idle = 1;

    level = !l->notified ? NGX_LOG_WARN
            : l->told_down ? NGX_LOG_NOTICE : NGX_LOG_INFO;

    ngx_log_error(level, l->log, 0,
                  "ocdz pg listen: listening%s",
                  l->notified ? "" : ", but the NOTIFY trigger of "
                  "sql/ocdz.sql is missing: waiting requests are "
                  "checked again on a timer");

    l->told_up = 1;
    l->told_down = 0;

    if (l->handler) {
        l->handler(l->data, NGX_OCDZ_PG_LISTEN_UP, NULL,
                   (ngx_uint_t) l->notified);
    }
}


/* closes, tells, and connects again later (never while exiting) */

static void
ngx_ocdz_pg_listen_lost(ngx_ocdz_pg_listen_t *l, const char *what)
{
    u_char      buf[NGX_OCDZ_PG_ERRLEN];
    ngx_uint_t  level;

    level = (l->state == NGX_OCDZ_PG_LISTEN_UP_ST) ? NGX_LOG_WARN
                                                    : NGX_LOG_ERR;

    if (what) {
        ngx_log_error(level, l->log, 0,
                      "ocdz pg listen: connection lost %s: %s", what,
                      ngx_ocdz_pg_errmsg(buf, sizeof(buf),
                                         l->pgconn
                                         ? PQerrorMessage(l->pgconn) : ""));
    }

    ngx_ocdz_pg_listen_close(l);

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, l->log, 0,
                  "ocdz pg listen: not listening; waiting requests are "
                  "checked again on a timer; connecting again in %M ms",
                  l->delay);

    if (l->timer.timer_set) {
        ngx_del_timer(&l->timer);
    }

    ngx_add_timer(&l->timer, l->delay);

    l->delay = ngx_min(l->delay * 2, NGX_OCDZ_PG_LISTEN_MAX_DELAY);

    if (!l->told_down) {
        l->told_down = 1;

        if (l->told_up) {
            l->told_up = 0;

            if (l->handler) {
                l->handler(l->data, NGX_OCDZ_PG_LISTEN_DOWN, NULL, 0);
            }
        }
    }
}


static ngx_int_t
ngx_ocdz_pg_listen_wrap(ngx_ocdz_pg_listen_t *l)
{
    int                fd;
    struct stat        st;
    ngx_connection_t  *c;

    fd = PQsocket(l->pgconn);

    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, l->log, 0,
                      "ocdz pg listen: libpq has no socket");
        return NGX_ERROR;
    }

    if (fstat(fd, &st) == -1) {
        ngx_log_error(NGX_LOG_ALERT, l->log, ngx_errno,
                      "ocdz pg listen: fstat(%d) failed", fd);
        return NGX_ERROR;
    }

    /*
     * libpq may move to a new socket while connecting (next address,
     * SSL refused), often with the number it just closed
     */

    if (l->c) {
        if (l->c->fd == fd && l->dev == st.st_dev && l->ino == st.st_ino) {
            return NGX_OK;
        }

        c = l->c;
        l->c = NULL;

        if (ngx_del_conn) {
            ngx_del_conn(c, NGX_CLOSE_EVENT);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
    }

    c = ngx_get_connection(fd, l->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = l;
    c->read->handler = ngx_ocdz_pg_listen_event;
    c->write->handler = ngx_ocdz_pg_listen_event;
    c->read->log = l->log;
    c->write->log = l->log;

    l->c = c;
    l->dev = st.st_dev;
    l->ino = st.st_ino;

    return NGX_OK;
}


/* level-triggered: libpq reads one chunk per PQconsumeInput() */

static ngx_int_t
ngx_ocdz_pg_listen_watch(ngx_ocdz_pg_listen_t *l, ngx_uint_t read,
    ngx_uint_t write)
{
    ngx_connection_t  *c;

    c = l->c;

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


static void
ngx_ocdz_pg_listen_close(ngx_ocdz_pg_listen_t *l)
{
    ngx_connection_t  *c;

    if (l->timer.timer_set) {
        ngx_del_timer(&l->timer);
    }

    c = l->c;

    if (c) {
        l->c = NULL;

        /* NGX_CLOSE_EVENT: libpq closes the socket, epoll forgets it */

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

    if (l->pgconn) {
        PQfinish(l->pgconn);
        l->pgconn = NULL;
    }

    l->state = NGX_OCDZ_PG_LISTEN_DOWN_ST;
}


static void
ngx_ocdz_pg_listen_event(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_ocdz_pg_listen_t  *l;

    c = ev->data;
    l = c->data;

    if (c->close) {
        /* a graceful shutdown: nothing more to hear */

        ngx_log_debug0(NGX_LOG_DEBUG_EVENT, l->log, 0,
                       "ocdz pg listen: closing for the shutdown");
        ngx_ocdz_pg_listen_close(l);
        return;
    }

    switch (l->state) {

    case NGX_OCDZ_PG_LISTEN_CONNECTING:
        ngx_ocdz_pg_listen_poll(l);
        return;

    case NGX_OCDZ_PG_LISTEN_STARTING:
    case NGX_OCDZ_PG_LISTEN_UP_ST:

        if (ev->write) {
            if (PQflush(l->pgconn) == -1) {
                ngx_ocdz_pg_listen_lost(l, "sending");
                return;
            }

            (void) ngx_ocdz_pg_listen_watch(l, 1, 0);
            return;
        }

        ngx_ocdz_pg_listen_read(l);
        return;

    default:
        return;
    }
}


static void
ngx_ocdz_pg_listen_timer(ngx_event_t *ev)
{
    ngx_ocdz_pg_listen_t  *l;

    l = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    switch (l->state) {

    case NGX_OCDZ_PG_LISTEN_DOWN_ST:
        ngx_ocdz_pg_listen_connect(l);
        return;

    default:
        ngx_log_error(NGX_LOG_ERR, l->log, NGX_ETIMEDOUT,
                      "ocdz pg listen: connecting to \"%V\" timed out",
                      &l->conf->conninfo);
        ngx_ocdz_pg_listen_lost(l, NULL);
        return;
    }
}


static ngx_uint_t
ngx_ocdz_pg_listen_ssl_pending(PGconn *conn)
{
    SSL  *ssl;

    if (!PQsslInUse(conn)) {
        return 0;
    }

    ssl = PQsslStruct(conn, "OpenSSL");

    return ssl != NULL && SSL_pending(ssl) > 0;
}


static void
ngx_ocdz_pg_listen_notice(void *arg, const PGresult *res)
{
    const char            *severity, *sqlstate;
    ngx_ocdz_pg_listen_t  *l;

    l = arg;

    /* the message may quote values: the SQLSTATE says enough */

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    ngx_log_error(NGX_LOG_NOTICE, l->log, 0,
                  "ocdz pg listen: server %s (SQLSTATE %s)",
                  severity ? severity : "NOTICE", sqlstate ? sqlstate : "");
}
