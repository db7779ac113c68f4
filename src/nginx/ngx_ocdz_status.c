/*
 * ocdz_status: the counters' zone, the hooks, the backlog refresh and
 * the location's handler (ngx_ocdz_status.h).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <nginx.h>

#include "ngx_http_ocdz_module.h"
#include "ngx_ocdz_status.h"
#include "ngx_ocdz_outbox.h"
#include "ngx_ocdz_card_wait.h"
#include "ocdz_metrics.h"


#define NGX_OCDZ_STATUS_ZONE       "ocdz_status"
#define NGX_OCDZ_STATUS_SLOTS      64       /* workers with gauges */
#define NGX_OCDZ_STATUS_REFRESH    1000     /* a worker's gauges, ms */
#define NGX_OCDZ_STATUS_BACKLOG    5000     /* the backlog, ms */


/* what one worker holds now; pid 0: no worker */
typedef struct {
    uint64_t                   pid;
    uint64_t                   conns[OCDZ_M_CONN_STATES];
    uint64_t                   queue;
    uint64_t                   leases;
    uint64_t                   secondary;
    uint64_t                   paused_until;   /* ngx_current_msec clock,
                                                  the same in every
                                                  process: monotonic */
    uint64_t                   pause_reason;
    uint64_t                   sending;        /* outbox sends */
    uint64_t                   waiters;        /* held by ?wait= */
} ngx_ocdz_status_slot_t;


typedef struct {
    uint64_t                   layout;  /* the size of this struct: a
                                           reload into a module whose
                                           counters differ starts anew */
    ocdz_metrics_t             m;       /* counters; its gauges unused */
    ngx_ocdz_status_slot_t     slots[NGX_OCDZ_STATUS_SLOTS];
} ngx_ocdz_status_shm_t;


/*
 * A worker's run time, its timer's ev->data. nginx's debug logging
 * reads ev->data as a connection: like ngx_resolver_t, it starts with
 * three pointers and an "fd" of -1 (see ngx_ocdz_pg.c).
 */
typedef struct ngx_ocdz_status_worker_s {
    ngx_http_ocdz_worker_t    *worker;
    ngx_ocdz_status_shm_t     *sh;
    ngx_log_t                 *log;
    ngx_socket_t               ident;

    ngx_event_t                timer;
    ngx_msec_t                 backlog_at;  /* the next refresh */
    ngx_ocdz_pg_query_t        query;
    unsigned                   waiting:1;
} ngx_ocdz_status_worker_t;


typedef char  ngx_ocdz_status_ident_check[
    offsetof(ngx_ocdz_status_worker_t, ident)
    == offsetof(ngx_connection_t, fd) ? 1 : -1];


static ngx_int_t ngx_ocdz_status_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_ocdz_status_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_ocdz_status_wants_json(ngx_http_request_t *r);
static void ngx_ocdz_status_snapshot(ngx_ocdz_status_shm_t *sh,
    ocdz_metrics_t *m);
static void ngx_ocdz_status_publish(ngx_ocdz_status_worker_t *sw);
static void ngx_ocdz_status_timer(ngx_event_t *ev);
static void ngx_ocdz_status_backlog(ngx_ocdz_status_worker_t *sw);
static void ngx_ocdz_status_backlog_done(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);


/*
 * The backlog: orders not final by status, the age of the oldest one
 * due, and whether the shared pause holds; outbox rows not sent by
 * channel and state, and the age of the oldest one due by channel (due
 * as the sender's lease sees it); every few seconds by one worker.
 */
#define NGX_OCDZ_STATUS_OUTBOX_COUNT(ch, st)                                 \
    "count(*) FILTER (WHERE channel = '" ch "' AND state = '" st "'), "

#define NGX_OCDZ_STATUS_OUTBOX_AGE(ch)                                       \
    "coalesce(extract(epoch FROM now() - min(next_attempt_at) "              \
    "FILTER (WHERE channel = '" ch "' AND state IN ('pending', 'sending') "  \
    "AND next_attempt_at <= now() "                                          \
    "AND (lease_until IS NULL OR lease_until < now())))::bigint, 0)"

#define NGX_OCDZ_STATUS_OUTBOX_CHANNEL(ch)                                   \
    NGX_OCDZ_STATUS_OUTBOX_COUNT(ch, "pending")                              \
    NGX_OCDZ_STATUS_OUTBOX_COUNT(ch, "sending")                              \
    NGX_OCDZ_STATUS_OUTBOX_COUNT(ch, "failed")                               \
    NGX_OCDZ_STATUS_OUTBOX_AGE(ch)

/* the columns: the orders', then per channel its three states and age */
#define NGX_OCDZ_STATUS_ORDER_COLS   (OCDZ_M_ORDER_STATUSES + 2)
#define NGX_OCDZ_STATUS_COLS                                                 \
    (NGX_OCDZ_STATUS_ORDER_COLS                                              \
     + OCDZ_M_CHANNELS * (OCDZ_M_OUTBOX_STATES + 1))

#define NGX_OCDZ_STATUS_BACKLOG_SQL                                          \
    "WITH o AS ("                                                            \
    "SELECT count(*) FILTER (WHERE status = 'PENDING'), "                    \
    "count(*) FILTER (WHERE status = 'HANDLING'), "                          \
    "count(*) FILTER (WHERE status = 'QUEUED'), "                            \
    "count(*) FILTER (WHERE status = 'UNKNOWN_ERROR'), "                     \
    "coalesce(extract(epoch FROM now() - min(next_check_at) "                \
    "FILTER (WHERE next_check_at <= now()))::bigint, 0), "                   \
    "(SELECT count(*) FROM ocdz.poller_state "                               \
    "WHERE id = 1 AND paused_until > now()) "                                \
    "FROM ocdz.orders "                                                      \
    "WHERE status IN ('PENDING', 'HANDLING', 'QUEUED', 'UNKNOWN_ERROR')), "  \
    "b AS (SELECT "                                                          \
    NGX_OCDZ_STATUS_OUTBOX_CHANNEL("webhook") ", "                           \
    NGX_OCDZ_STATUS_OUTBOX_CHANNEL("email") ", "                             \
    NGX_OCDZ_STATUS_OUTBOX_CHANNEL("sms") " "                                \
    "FROM ocdz.outbox "                                                      \
    "WHERE state IN ('pending', 'sending', 'failed')) "                      \
    "SELECT * FROM o, b"


static ngx_str_t  ngx_ocdz_status_zone_name =
    ngx_string(NGX_OCDZ_STATUS_ZONE);


#define ngx_ocdz_status_add(p, n)                                            \
    (void) __atomic_fetch_add((p), (uint64_t) (n), __ATOMIC_RELAXED)

#define ngx_ocdz_status_set(p, v)                                            \
    __atomic_store_n((p), (uint64_t) (v), __ATOMIC_RELAXED)

#define ngx_ocdz_status_get(p)                                               \
    __atomic_load_n((p), __ATOMIC_RELAXED)


char *
ngx_ocdz_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    size_t                      size;
    ngx_shm_zone_t             *zone;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ocdz_module);

    /* room for the slab pool's own pages, then the counters */

    size = 8 * ngx_pagesize
           + ngx_align(sizeof(ngx_ocdz_status_shm_t), ngx_pagesize);

    zone = ngx_shared_memory_add(cf, &ngx_ocdz_status_zone_name, size,
                                 &ngx_http_ocdz_module);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->init = ngx_ocdz_status_init_zone;
    omcf->status = zone;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_ocdz_status_handler;

    return NGX_CONF_OK;
}


/* once every directive is read: the pool counts, the backlog query */

char *
ngx_ocdz_status_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    omcf->status_stmt = NGX_ERROR;

    if (omcf->pg == NULL) {
        return NGX_CONF_OK;
    }

    omcf->pg->status = omcf->status;

    omcf->status_stmt = ngx_ocdz_pg_add_stmt(cf, omcf->pg,
                                             NGX_OCDZ_STATUS_BACKLOG_SQL, 0);
    if (omcf->status_stmt == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a reload with the same size keeps the old zone and its counters */

static ngx_int_t
ngx_ocdz_status_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t        *shpool;
    ngx_ocdz_status_shm_t  *sh;

    if (data) {
        zone->data = data;
        sh = data;

        if (sh->layout != sizeof(ngx_ocdz_status_shm_t)) {
            ngx_memzero(sh, sizeof(ngx_ocdz_status_shm_t));
            sh->layout = sizeof(ngx_ocdz_status_shm_t);
        }

        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_ocdz_status_shm_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    sh->layout = sizeof(ngx_ocdz_status_shm_t);
    zone->data = sh;
    shpool->data = sh;

    return NGX_OK;
}


ngx_int_t
ngx_ocdz_status_init_process(ngx_http_ocdz_worker_t *w)
{
    ngx_ocdz_status_shm_t     *sh;
    ngx_ocdz_status_slot_t    *slot;
    ngx_ocdz_status_worker_t  *sw;

    if (w->omcf->status == NULL || w->omcf->status->data == NULL) {
        return NGX_OK;
    }

    sh = w->omcf->status->data;

    sw = ngx_pcalloc(w->cycle->pool, sizeof(ngx_ocdz_status_worker_t));
    if (sw == NULL) {
        return NGX_ERROR;
    }

    sw->worker = w;
    sw->sh = sh;
    sw->log = w->log;
    sw->ident = -1;

    /* a worker started in the place of one that died: its slot anew */

    if (ngx_worker < NGX_OCDZ_STATUS_SLOTS) {
        slot = &sh->slots[ngx_worker];
        ngx_memzero(slot, sizeof(ngx_ocdz_status_slot_t));
        ngx_ocdz_status_set(&slot->pid, ngx_pid);
    }

    sw->timer.handler = ngx_ocdz_status_timer;
    sw->timer.data = sw;
    sw->timer.log = w->log;
    sw->timer.cancelable = 1;

    sw->backlog_at = ngx_current_msec;

    w->status = sw;

    ngx_add_timer(&sw->timer, NGX_OCDZ_STATUS_REFRESH);

    return NGX_OK;
}


void
ngx_ocdz_status_exit_process(ngx_http_ocdz_worker_t *w)
{
    ngx_ocdz_status_slot_t    *slot;
    ngx_ocdz_status_worker_t  *sw;

    sw = w->status;

    if (sw == NULL) {
        return;
    }

    if (sw->timer.timer_set) {
        ngx_del_timer(&sw->timer);
    }

    if (sw->waiting) {
        ngx_ocdz_pg_abandon(&sw->query);
        sw->waiting = 0;
    }

    /* the slot is given up unless a new worker has it already */

    if (ngx_worker < NGX_OCDZ_STATUS_SLOTS) {
        slot = &sw->sh->slots[ngx_worker];

        if (ngx_ocdz_status_get(&slot->pid) == (uint64_t) ngx_pid) {
            ngx_memzero(slot, sizeof(ngx_ocdz_status_slot_t));
        }
    }

    w->status = NULL;
}


/* this worker's gauges into its slot */

static void
ngx_ocdz_status_publish(ngx_ocdz_status_worker_t *sw)
{
    ngx_ocdz_pg_counts_t     n;
    ngx_ocdz_status_slot_t  *slot;

    /* an old worker that exits leaves its slot to the new one */

    if (ngx_worker >= NGX_OCDZ_STATUS_SLOTS || sw->worker->pg == NULL
        || ngx_exiting)
    {
        return;
    }

    slot = &sw->sh->slots[ngx_worker];

    ngx_ocdz_pg_counts(sw->worker->pg, &n);

    ngx_ocdz_status_set(&slot->pid, ngx_pid);
    ngx_ocdz_status_set(&slot->conns[OCDZ_M_CONN_IDLE], n.idle);
    ngx_ocdz_status_set(&slot->conns[OCDZ_M_CONN_BUSY], n.busy);
    ngx_ocdz_status_set(&slot->conns[OCDZ_M_CONN_CONNECTING], n.connecting);
    ngx_ocdz_status_set(&slot->conns[OCDZ_M_CONN_CLOSED],
                        n.down ? 0 : n.closed);
    ngx_ocdz_status_set(&slot->conns[OCDZ_M_CONN_DOWN],
                        n.down ? n.closed : 0);
    ngx_ocdz_status_set(&slot->queue, n.queued);
    ngx_ocdz_status_set(&slot->sending, sw->worker->outbox
                        ? ngx_ocdz_outbox_sending(sw->worker->outbox) : 0);
    ngx_ocdz_status_set(&slot->waiters, sw->worker->wait
                        ? ngx_http_ocdz_wait_count(sw->worker->wait) : 0);
}


static void
ngx_ocdz_status_timer(ngx_event_t *ev)
{
    ngx_ocdz_status_worker_t  *sw = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_ocdz_status_publish(sw);

    /* the backlog: one worker, the first */

    if (ngx_worker == 0
        && sw->worker->omcf->status_stmt != NGX_ERROR
        && !sw->waiting
        && (ngx_msec_int_t) (ngx_current_msec - sw->backlog_at) >= 0)
    {
        sw->backlog_at = ngx_current_msec + NGX_OCDZ_STATUS_BACKLOG;
        ngx_ocdz_status_backlog(sw);
    }

    ngx_add_timer(&sw->timer, NGX_OCDZ_STATUS_REFRESH);
}


static void
ngx_ocdz_status_backlog(ngx_ocdz_status_worker_t *sw)
{
    ngx_ocdz_pg_query_t  *q;

    q = &sw->query;

    q->stmt = sw->worker->omcf->status_stmt;
    q->nparams = 0;
    q->background = NGX_OCDZ_PG_BACKGROUND;
    q->handler = ngx_ocdz_status_backlog_done;
    q->data = sw;
    q->log = sw->log;

    if (ngx_ocdz_pg_send(sw->worker->pg, q) == NGX_OK) {
        sw->waiting = 1;
    }
}


static void
ngx_ocdz_status_backlog_done(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    ngx_int_t                  v;
    ngx_uint_t                 i, c, k;
    ocdz_metrics_t            *m;
    ngx_ocdz_status_worker_t  *sw;

    sw = q->data;
    sw->waiting = 0;

    if (rc != NGX_OCDZ_PG_OK || PQntuples(res) != 1
        || PQnfields(res) != NGX_OCDZ_STATUS_COLS)
    {
        return;
    }

    m = &sw->sh->m;

    for (i = 0; i < NGX_OCDZ_STATUS_COLS; i++) {
        v = ngx_atoi((u_char *) PQgetvalue(res, 0, i),
                     PQgetlength(res, 0, i));
        if (v < 0) {
            v = 0;
        }

        if (i < OCDZ_M_ORDER_STATUSES) {
            ngx_ocdz_status_set(&m->orders[i], v);

        } else if (i == OCDZ_M_ORDER_STATUSES) {
            ngx_ocdz_status_set(&m->oldest_due_age, v);

        } else if (i == OCDZ_M_ORDER_STATUSES + 1) {
            ngx_ocdz_status_set(&m->shared_pause, v);

        } else {
            /* an outbox channel's states, then its age */
            c = (i - NGX_OCDZ_STATUS_ORDER_COLS) / (OCDZ_M_OUTBOX_STATES + 1);
            k = (i - NGX_OCDZ_STATUS_ORDER_COLS) % (OCDZ_M_OUTBOX_STATES + 1);

            if (k < OCDZ_M_OUTBOX_STATES) {
                ngx_ocdz_status_set(&m->outbox[c][k], v);

            } else {
                ngx_ocdz_status_set(&m->outbox_due_age[c], v);
            }
        }
    }

    ngx_ocdz_status_set(&m->backlog_at, ngx_time());
}


/* the hooks */

void
ngx_ocdz_status_reveal(ngx_shm_zone_t *zone, ngx_http_request_t *r,
    ngx_str_t *code)
{
    int              i;
    uint64_t         us;
    ngx_time_t      *tp;
    ngx_msec_int_t   ms;
    ocdz_metrics_t  *m;

    if (zone == NULL || zone->data == NULL) {
        return;
    }

    i = ocdz_metrics_result((const char *) code->data, code->len);
    if (i < 0) {
        return;
    }

    m = &((ngx_ocdz_status_shm_t *) zone->data)->m;

    tp = ngx_timeofday();
    ms = (ngx_msec_int_t) ((tp->sec - r->start_sec) * 1000
                           + (tp->msec - r->start_msec));
    us = (ms > 0) ? (uint64_t) ms * 1000 : 0;

    ngx_ocdz_status_add(&m->reveals[i], 1);
    ngx_ocdz_status_add(&m->reveal_hist[
        ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                            OCDZ_M_REVEAL_BUCKETS, us)], 1);
    ngx_ocdz_status_add(&m->reveal_sum_us, us);

    if (i == 0) {
        ngx_ocdz_status_set(&m->last_reveal, tp->sec);
    }
}


void
ngx_ocdz_status_db_shed(ngx_shm_zone_t *zone)
{
    if (zone && zone->data) {
        ngx_ocdz_status_add(&((ngx_ocdz_status_shm_t *) zone->data)->m.db_shed,
                            1);
    }
}


void
ngx_ocdz_status_db_statement(ngx_shm_zone_t *zone, ngx_uint_t n)
{
    ocdz_metrics_t  *m;

    if (zone == NULL || zone->data == NULL) {
        return;
    }

    m = &((ngx_ocdz_status_shm_t *) zone->data)->m;

    ngx_ocdz_status_add(&m->db_statements, 1);
    ngx_ocdz_status_add(&m->db_batch_hist[
        ocdz_metrics_bucket(ocdz_metrics_batch_bounds, OCDZ_M_BATCH_BUCKETS,
                            n)], 1);
    ngx_ocdz_status_add(&m->db_batch_sum, n);
}


void
ngx_ocdz_status_db_connect(ngx_shm_zone_t *zone, ngx_uint_t failed)
{
    ocdz_metrics_t  *m;

    if (zone == NULL || zone->data == NULL) {
        return;
    }

    m = &((ngx_ocdz_status_shm_t *) zone->data)->m;

    if (failed) {
        ngx_ocdz_status_add(&m->db_connect_failures, 1);

    } else {
        ngx_ocdz_status_add(&m->db_connects, 1);
    }
}


void
ngx_ocdz_status_check(ngx_shm_zone_t *zone, ngx_uint_t write, long http,
    uint64_t pause, ngx_msec_t elapsed)
{
    uint64_t                 us;
    ngx_uint_t               cls, reason;
    ocdz_metrics_t          *m;
    ngx_ocdz_status_shm_t   *sh;

    if (zone == NULL || zone->data == NULL || write >= OCDZ_M_OUTCOMES) {
        return;
    }

    sh = zone->data;
    m = &sh->m;

    cls = ocdz_metrics_class(http);
    us = (uint64_t) elapsed * 1000;

    ngx_ocdz_status_add(&m->checks[write][cls], 1);
    ngx_ocdz_status_add(&m->upstream_hist[
        ocdz_metrics_bucket(ocdz_metrics_upstream_bounds,
                            OCDZ_M_UPSTREAM_BUCKETS, us)], 1);
    ngx_ocdz_status_add(&m->upstream_sum_us, us);

    if (cls == 2) {
        ngx_ocdz_status_set(&m->last_check, ngx_time());
    }

    if (pause) {
        reason = ocdz_metrics_pause_reason(http);
        ngx_ocdz_status_add(&m->pauses[reason], 1);

        if (ngx_worker < NGX_OCDZ_STATUS_SLOTS) {
            ngx_ocdz_status_set(&sh->slots[ngx_worker].pause_reason, reason);
        }
    }
}


void
ngx_ocdz_status_poller(ngx_shm_zone_t *zone, ngx_uint_t leases,
    ngx_uint_t token, ngx_msec_t paused_until)
{
    ngx_ocdz_status_slot_t  *slot;

    if (zone == NULL || zone->data == NULL
        || ngx_worker >= NGX_OCDZ_STATUS_SLOTS)
    {
        return;
    }

    slot = &((ngx_ocdz_status_shm_t *) zone->data)->slots[ngx_worker];

    ngx_ocdz_status_set(&slot->leases, leases);
    ngx_ocdz_status_set(&slot->secondary, token ? 1 : 0);
    ngx_ocdz_status_set(&slot->paused_until, paused_until);
}


void
ngx_ocdz_status_outbox(ngx_shm_zone_t *zone, const char *channel,
    const char *state, ngx_msec_t started)
{
    int              c, o;
    uint64_t         us;
    ocdz_metrics_t  *m;

    if (zone == NULL || zone->data == NULL) {
        return;
    }

    c = ocdz_metrics_channel(channel);
    o = ocdz_metrics_send_outcome(state);

    if (c < 0 || o < 0) {
        return;
    }

    m = &((ngx_ocdz_status_shm_t *) zone->data)->m;

    ngx_ocdz_status_add(&m->sends[c][o], 1);

    if (started == 0) {
        return;
    }

    us = (uint64_t) (ngx_msec_t) (ngx_current_msec - started) * 1000;

    ngx_ocdz_status_add(&m->send_hist[c][
        ocdz_metrics_bucket(ocdz_metrics_send_bounds, OCDZ_M_SEND_BUCKETS,
                            us)], 1);
    ngx_ocdz_status_add(&m->send_sum_us[c], us);
}


/* the location */

static ngx_int_t
ngx_ocdz_status_handler(ngx_http_request_t *r)
{
    size_t                      len;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_uint_t                  json;
    ngx_chain_t                 out;
    ocdz_metrics_t              m;
    ocdz_metrics_build_t        build;
    ngx_http_ocdz_main_conf_t  *omcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    omcf = ngx_http_get_module_main_conf(r, ngx_http_ocdz_module);

    if (omcf->status == NULL || omcf->status->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* this worker's own gauges as they are now */

    if (omcf->worker && omcf->worker->status) {
        ngx_ocdz_status_publish(omcf->worker->status);
    }

    ngx_ocdz_status_snapshot(omcf->status->data, &m);

    build.version = NGX_HTTP_OCDZ_VERSION;
    build.server = NGINX_VERSION;
    build.schema_version = NGX_OCDZ_SCHEMA_VERSION;

    json = ngx_ocdz_status_wants_json(r);

    len = json ? ocdz_metrics_json(&m, &build, NULL, 0)
               : ocdz_metrics_prometheus(&m, &build, NULL, 0);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json) {
        ocdz_metrics_json(&m, &build, (char *) b->pos, len + 1);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        ocdz_metrics_prometheus(&m, &build, (char *) b->pos, len + 1);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    b->last = b->pos + len;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = len;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_uint_t
ngx_ocdz_status_wants_json(ngx_http_request_t *r)
{
    ngx_str_t         value;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (ngx_http_arg(r, (u_char *) "format", sizeof("format") - 1, &value)
        == NGX_OK)
    {
        return (value.len == 4 && ngx_strncmp(value.data, "json", 4) == 0);
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept",
                               sizeof("Accept") - 1) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "application/json",
                                sizeof("application/json") - 2)
               != NULL)
        {
            return 1;
        }
    }

    return 0;
}


/* the counters, and the gauges of the workers added up */

static void
ngx_ocdz_status_snapshot(ngx_ocdz_status_shm_t *sh, ocdz_metrics_t *m)
{
    uint64_t                *src, *dst;
    ngx_uint_t               i, j;
    ngx_ocdz_status_slot_t  *slot;

    src = (uint64_t *) &sh->m;
    dst = (uint64_t *) m;

    for (i = 0; i < OCDZ_M_WORDS; i++) {
        dst[i] = ngx_ocdz_status_get(&src[i]);
    }

    ngx_memzero(m->db_conns, sizeof(m->db_conns));
    m->db_queue = 0;
    m->leases = 0;
    m->secondary = 0;
    m->paused = 0;
    m->pause_reason = OCDZ_M_PAUSE_NONE;
    m->sending = 0;
    m->waiters = 0;

    for (i = 0; i < NGX_OCDZ_STATUS_SLOTS; i++) {
        slot = &sh->slots[i];

        if (ngx_ocdz_status_get(&slot->pid) == 0) {
            continue;
        }

        for (j = 0; j < OCDZ_M_CONN_STATES; j++) {
            m->db_conns[j] += ngx_ocdz_status_get(&slot->conns[j]);
        }

        m->db_queue += ngx_ocdz_status_get(&slot->queue);
        m->leases += ngx_ocdz_status_get(&slot->leases);
        m->secondary += ngx_ocdz_status_get(&slot->secondary);
        m->sending += ngx_ocdz_status_get(&slot->sending);
        m->waiters += ngx_ocdz_status_get(&slot->waiters);

        if ((ngx_msec_int_t) (ngx_ocdz_status_get(&slot->paused_until)
                              - ngx_current_msec) > 0)
        {
            m->paused++;
            m->pause_reason = ngx_ocdz_status_get(&slot->pause_reason);
        }
    }
}
