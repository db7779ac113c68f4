
/*
 * ngx_http_ocdz_module: the requests a worker holds for their card.
 *
 * A held request (a waiter) is in a bucket by its top-up id and in one
 * of two queues: held (nothing to do until a NOTIFY, a re-check or its
 * timer) or pending (to look at). At most max_looking looks run at
 * once; the others wait in pending, so a NOTIFY for many waiters, the
 * LISTEN connection coming back, or a shutdown never floods the pool.
 *
 *   held --NOTIFY, re-check--> pending --pump--> looking --still not
 *   ready--> held (or pending again: woken while looking, or its wait
 *   ended). Its timer, or a shutdown, marks it final: its next look is
 *   the last, audited and answered whatever it finds.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_ocdz_card_wait.h"
#include "ngx_ocdz_pg_listen.h"


#define NGX_HTTP_OCDZ_W_NONE        0
#define NGX_HTTP_OCDZ_W_HELD        1
#define NGX_HTTP_OCDZ_W_PENDING     2
#define NGX_HTTP_OCDZ_W_LOOKING     3

#define NGX_HTTP_OCDZ_WAIT_RETRY    200     /* ms: the pool said no */
#define NGX_HTTP_OCDZ_WAIT_DRAIN    500     /* ms: shutdown's pace check */


/*
 * the LISTEN, and whether the trigger that sends the NOTIFY is there
 * (sql/ocdz.sql): without it the module checks again on a timer
 */
#define NGX_HTTP_OCDZ_LISTEN_SQL                                              \
    "LISTEN ocdz_card;"                                                       \
    " SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t"                   \
    " JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"                        \
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"               \
    " WHERE n.nspname = 'ocdz' AND c.relname = 'orders'"                      \
    " AND t.tgname = 'ocdz_notify_card' AND t.tgenabled <> 'D')"


/* ev->data of its events: read by nginx's debug log as a connection */

struct ngx_http_ocdz_wait_s {
    void                      *data;
    void                      *unused[2];
    ngx_socket_t               ident;       /* -1 */

    ngx_log_t                 *log;
    ngx_ocdz_pg_listen_t      *listen;

    ngx_queue_t               *buckets;
    ngx_uint_t                 mask;        /* buckets - 1, a power of 2 */
    ngx_queue_t                held;
    ngx_queue_t                pending;

    ngx_uint_t                 nwaiters;
    ngx_uint_t                 nlooking;
    ngx_uint_t                 max_looking;
    ngx_uint_t                 limit;
    ngx_msec_t                 recheck;

    ngx_event_t                recheck_timer;  /* while not listening */
    ngx_event_t                pump_event;
    ngx_event_t                retry_timer;    /* the pool said no */
    ngx_event_t                drain_timer;    /* a shutdown: holds the
                                                  exit until all answered */

    unsigned                   listening:1;    /* and the trigger is */
    unsigned                   exiting:1;
};


typedef char  ngx_http_ocdz_wait_ident_check[
    offsetof(ngx_http_ocdz_wait_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static void ngx_http_ocdz_wait_listen(void *data, ngx_uint_t event,
    ngx_str_t *payload, ngx_uint_t notified);
static void ngx_http_ocdz_wait_wake(ngx_http_ocdz_wait_t *wait,
    ngx_str_t *topup_id);
static void ngx_http_ocdz_wait_all(ngx_http_ocdz_wait_t *wait);
static void ngx_http_ocdz_wait_to_pending(ngx_http_ocdz_waiter_t *wt);
static void ngx_http_ocdz_wait_post(ngx_http_ocdz_wait_t *wait);
static void ngx_http_ocdz_wait_pump(ngx_event_t *ev);
static void ngx_http_ocdz_wait_timeout(ngx_event_t *ev);
static void ngx_http_ocdz_wait_recheck(ngx_event_t *ev);
static void ngx_http_ocdz_wait_drain(ngx_event_t *ev);
static void ngx_http_ocdz_wait_arm_recheck(ngx_http_ocdz_wait_t *wait);
static ngx_queue_t *ngx_http_ocdz_wait_bucket(ngx_http_ocdz_wait_t *wait,
    ngx_str_t *topup_id);


ngx_int_t
ngx_http_ocdz_card_wait_init_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t                  i, n;
    ngx_ocdz_pg_conf_t         *pgcf;
    ngx_http_ocdz_wait_t       *wait;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = w->omcf;
    pgcf = omcf->pg;

    wait = ngx_pcalloc(w->cycle->pool, sizeof(ngx_http_ocdz_wait_t));
    if (wait == NULL) {
        return NGX_ERROR;
    }

    wait->data = w;
    wait->ident = (ngx_socket_t) -1;
    wait->log = w->log;
    wait->limit = omcf->card_wait_limit;
    wait->recheck = omcf->card_wait_recheck;

    /* about two waiters a bucket at the limit */

    for (n = 64; n < wait->limit / 2 && n < 65536; n *= 2) { /* void */ }

    wait->buckets = ngx_palloc(w->cycle->pool, n * sizeof(ngx_queue_t));
    if (wait->buckets == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        ngx_queue_init(&wait->buckets[i]);
    }

    wait->mask = n - 1;

    ngx_queue_init(&wait->held);
    ngx_queue_init(&wait->pending);

    /*
     * looks at once: what the pool runs in one round of batches, and
     * never more than half its queue, which the customers' requests
     * need too
     */

    n = omcf->db_batch * pgcf->pool_size;
    n = ngx_min(n, ngx_max(pgcf->queue_size / 2, pgcf->pool_size));
    wait->max_looking = ngx_max(n, 1);

    wait->recheck_timer.handler = ngx_http_ocdz_wait_recheck;
    wait->recheck_timer.data = wait;
    wait->recheck_timer.log = wait->log;
    wait->recheck_timer.cancelable = 1;

    wait->pump_event.handler = ngx_http_ocdz_wait_pump;
    wait->pump_event.data = wait;
    wait->pump_event.log = wait->log;

    wait->retry_timer.handler = ngx_http_ocdz_wait_pump;
    wait->retry_timer.data = wait;
    wait->retry_timer.log = wait->log;
    wait->retry_timer.cancelable = 1;

    wait->drain_timer.handler = ngx_http_ocdz_wait_drain;
    wait->drain_timer.data = wait;
    wait->drain_timer.log = wait->log;

    wait->listen = ngx_ocdz_pg_listen_create(w->cycle, pgcf,
                                             NGX_HTTP_OCDZ_LISTEN_SQL,
                                             ngx_http_ocdz_wait_listen, wait);
    if (wait->listen == NULL) {
        return NGX_ERROR;
    }

    w->wait = wait;

    return NGX_OK;
}


/*
 * A graceful shutdown: every waiter looks for the last time (paced as
 * ever) and is answered; the drain timer, not cancelable, keeps the
 * worker until the last one is.
 */

void
ngx_http_ocdz_card_wait_shutdown(ngx_http_ocdz_worker_t *w)
{
    ngx_queue_t             *q;
    ngx_http_ocdz_wait_t    *wait;
    ngx_http_ocdz_waiter_t  *wt;

    wait = w->wait;

    if (wait->exiting) {
        return;
    }

    wait->exiting = 1;

    if (wait->recheck_timer.timer_set) {
        ngx_del_timer(&wait->recheck_timer);
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, wait->log, 0,
                   "ocdz wait: shutdown, %ui waiting", wait->nwaiters);

    for (q = ngx_queue_head(&wait->held);
         q != ngx_queue_sentinel(&wait->held);
         q = ngx_queue_next(q))
    {
        wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, queue);
        wt->final = 1;
    }

    for (q = ngx_queue_head(&wait->pending);
         q != ngx_queue_sentinel(&wait->pending);
         q = ngx_queue_next(q))
    {
        wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, queue);
        wt->final = 1;
    }

    ngx_http_ocdz_wait_all(wait);

    if (wait->nwaiters) {
        ngx_add_timer(&wait->drain_timer, NGX_HTTP_OCDZ_WAIT_DRAIN);
    }

    ngx_http_ocdz_wait_post(wait);
}


void
ngx_http_ocdz_card_wait_exit_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t               i;
    ngx_queue_t             *q;
    ngx_http_ocdz_wait_t    *wait;
    ngx_http_ocdz_waiter_t  *wt;

    wait = w->wait;

    ngx_ocdz_pg_listen_destroy(wait->listen);

    /* waiters left (a reload with master_process off): let them go */

    for (i = 0; i <= wait->mask; i++) {
        while (!ngx_queue_empty(&wait->buckets[i])) {
            q = ngx_queue_head(&wait->buckets[i]);
            wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, bucket);
            ngx_http_ocdz_wait_leave(wt);
        }
    }

    if (wait->recheck_timer.timer_set) {
        ngx_del_timer(&wait->recheck_timer);
    }

    if (wait->retry_timer.timer_set) {
        ngx_del_timer(&wait->retry_timer);
    }

    if (wait->drain_timer.timer_set) {
        ngx_del_timer(&wait->drain_timer);
    }

    if (wait->pump_event.posted) {
        ngx_delete_posted_event(&wait->pump_event);
    }

    w->wait = NULL;
}


ngx_int_t
ngx_http_ocdz_wait_hold(ngx_http_ocdz_wait_t *wait,
    ngx_http_ocdz_waiter_t *wt, ngx_msec_t msec)
{
    if (wait->exiting) {
        return NGX_DECLINED;
    }

    if (wait->nwaiters >= wait->limit) {
        ngx_log_error(NGX_LOG_WARN, wt->timer.log, 0,
                      "ocdz: %ui requests wait for their card in this "
                      "worker (ocdz_card_wait_limit), 503",
                      wait->nwaiters);
        return NGX_BUSY;
    }

    wt->wait = wait;
    wt->state = NGX_HTTP_OCDZ_W_HELD;
    wt->again = 0;
    wt->final = 0;

    ngx_queue_insert_tail(ngx_http_ocdz_wait_bucket(wait, &wt->topup_id),
                          &wt->bucket);
    ngx_queue_insert_tail(&wait->held, &wt->queue);

    wait->nwaiters++;

    wt->timer.handler = ngx_http_ocdz_wait_timeout;
    wt->timer.cancelable = 1;
    ngx_add_timer(&wt->timer, msec);

    if (!wait->listening) {
        ngx_http_ocdz_wait_arm_recheck(wait);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, wt->timer.log, 0,
                   "ocdz wait: holding %V for %M ms (%ui waiting)",
                   &wt->topup_id, msec, wait->nwaiters);

    return NGX_OK;
}


void
ngx_http_ocdz_wait_again(ngx_http_ocdz_waiter_t *wt)
{
    ngx_http_ocdz_wait_t  *wait;

    wait = wt->wait;

    if (wait == NULL || wt->state != NGX_HTTP_OCDZ_W_LOOKING) {
        return;
    }

    wait->nlooking--;

    if (wt->again || wt->final) {
        wt->again = 0;
        wt->state = NGX_HTTP_OCDZ_W_PENDING;
        ngx_queue_insert_tail(&wait->pending, &wt->queue);

    } else {
        wt->state = NGX_HTTP_OCDZ_W_HELD;
        ngx_queue_insert_tail(&wait->held, &wt->queue);
    }

    ngx_http_ocdz_wait_post(wait);
}


void
ngx_http_ocdz_wait_leave(ngx_http_ocdz_waiter_t *wt)
{
    ngx_http_ocdz_wait_t  *wait;

    wait = wt->wait;

    if (wait == NULL) {
        return;
    }

    ngx_queue_remove(&wt->bucket);

    if (wt->state == NGX_HTTP_OCDZ_W_LOOKING) {
        wait->nlooking--;

    } else {
        ngx_queue_remove(&wt->queue);
    }

    if (wt->timer.timer_set) {
        ngx_del_timer(&wt->timer);
    }

    wt->state = NGX_HTTP_OCDZ_W_NONE;
    wt->wait = NULL;
    wait->nwaiters--;

    if (wait->nwaiters == 0 && wait->drain_timer.timer_set) {
        ngx_del_timer(&wait->drain_timer);
    }

    ngx_http_ocdz_wait_post(wait);
}


static void
ngx_http_ocdz_wait_listen(void *data, ngx_uint_t event, ngx_str_t *payload,
    ngx_uint_t notified)
{
    ngx_http_ocdz_wait_t *wait = data;

    switch (event) {

    case NGX_OCDZ_PG_LISTEN_NOTIFY:
        ngx_http_ocdz_wait_wake(wait, payload);
        return;

    case NGX_OCDZ_PG_LISTEN_UP:
        wait->listening = notified ? 1 : 0;

        /* a NOTIFY may have been missed while it was down: look again */

        if (wait->nwaiters) {
            ngx_log_error(NGX_LOG_INFO, wait->log, 0,
                          "ocdz wait: listening, %ui waiting requests "
                          "look again", wait->nwaiters);
            ngx_http_ocdz_wait_all(wait);
        }

        if (wait->listening) {
            if (wait->recheck_timer.timer_set) {
                ngx_del_timer(&wait->recheck_timer);
            }

        } else {
            ngx_http_ocdz_wait_arm_recheck(wait);
        }

        return;

    default: /* NGX_OCDZ_PG_LISTEN_DOWN */
        wait->listening = 0;
        ngx_http_ocdz_wait_arm_recheck(wait);
        return;
    }
}


static void
ngx_http_ocdz_wait_wake(ngx_http_ocdz_wait_t *wait, ngx_str_t *topup_id)
{
    ngx_queue_t             *b, *q, *next;
    ngx_http_ocdz_waiter_t  *wt;

    if (topup_id->len != 24) {
        return;
    }

    b = ngx_http_ocdz_wait_bucket(wait, topup_id);

    for (q = ngx_queue_head(b); q != ngx_queue_sentinel(b); q = next) {
        next = ngx_queue_next(q);
        wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, bucket);

        if (ngx_memcmp(wt->topup_id.data, topup_id->data, 24) != 0) {
            continue;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, wt->timer.log, 0,
                       "ocdz wait: NOTIFY for %V", &wt->topup_id);

        if (wt->state == NGX_HTTP_OCDZ_W_HELD) {
            ngx_http_ocdz_wait_to_pending(wt);

        } else if (wt->state == NGX_HTTP_OCDZ_W_LOOKING) {
            /* that look may have read the row before the commit */
            wt->again = 1;
        }
    }

    ngx_http_ocdz_wait_post(wait);
}


/* every held waiter looks again */

static void
ngx_http_ocdz_wait_all(ngx_http_ocdz_wait_t *wait)
{
    ngx_queue_t             *q;
    ngx_http_ocdz_waiter_t  *wt;

    while (!ngx_queue_empty(&wait->held)) {
        q = ngx_queue_head(&wait->held);
        wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, queue);
        ngx_http_ocdz_wait_to_pending(wt);
    }

    /* looks that started before a NOTIFY could be missed: once more */

    ngx_http_ocdz_wait_post(wait);
}


static void
ngx_http_ocdz_wait_to_pending(ngx_http_ocdz_waiter_t *wt)
{
    ngx_queue_remove(&wt->queue);
    wt->state = NGX_HTTP_OCDZ_W_PENDING;
    ngx_queue_insert_tail(&wt->wait->pending, &wt->queue);
}


static void
ngx_http_ocdz_wait_post(ngx_http_ocdz_wait_t *wait)
{
    if (!ngx_queue_empty(&wait->pending) && !wait->pump_event.posted
        && !wait->retry_timer.timer_set)
    {
        ngx_post_event(&wait->pump_event, &ngx_posted_events);
    }
}


/* starts the looks of pending waiters, as many as the pace allows */

static void
ngx_http_ocdz_wait_pump(ngx_event_t *ev)
{
    ngx_int_t                rc;
    ngx_queue_t             *q;
    ngx_http_ocdz_wait_t    *wait;
    ngx_http_ocdz_waiter_t  *wt;

    wait = ev->data;

    while (wait->nlooking < wait->max_looking
           && !ngx_queue_empty(&wait->pending))
    {
        q = ngx_queue_head(&wait->pending);
        wt = ngx_queue_data(q, ngx_http_ocdz_waiter_t, queue);

        ngx_queue_remove(q);
        wt->state = NGX_HTTP_OCDZ_W_LOOKING;
        wait->nlooking++;

        rc = wt->look(wt, wt->final);

        if (rc == NGX_DECLINED) {
            /* the pool is full, or the database known down: later */

            if (wt->wait) {
                wait->nlooking--;
                wt->state = NGX_HTTP_OCDZ_W_PENDING;
                ngx_queue_insert_head(&wait->pending, &wt->queue);
            }

            if (!wait->retry_timer.timer_set) {
                ngx_add_timer(&wait->retry_timer, NGX_HTTP_OCDZ_WAIT_RETRY);
            }

            return;
        }

        /* NGX_OK: looking; NGX_DONE: answered, it has left */
    }
}


/* the end of a wait: the next look is the last */

static void
ngx_http_ocdz_wait_timeout(ngx_event_t *ev)
{
    ngx_http_ocdz_waiter_t  *wt;

    wt = (ngx_http_ocdz_waiter_t *)
             ((u_char *) ev - offsetof(ngx_http_ocdz_waiter_t, timer));

    if (wt->wait == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "ocdz wait: the wait for %V ended", &wt->topup_id);

    wt->final = 1;

    if (wt->state == NGX_HTTP_OCDZ_W_HELD) {
        ngx_http_ocdz_wait_to_pending(wt);
        ngx_http_ocdz_wait_post(wt->wait);
    }
}


static void
ngx_http_ocdz_wait_recheck(ngx_event_t *ev)
{
    ngx_http_ocdz_wait_t  *wait;

    wait = ev->data;

    if (wait->listening || wait->exiting || wait->nwaiters == 0) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, wait->log, 0,
                   "ocdz wait: not listening, %ui waiting look again",
                   wait->nwaiters);

    ngx_http_ocdz_wait_all(wait);
    ngx_http_ocdz_wait_arm_recheck(wait);
}


static void
ngx_http_ocdz_wait_drain(ngx_event_t *ev)
{
    ngx_http_ocdz_wait_t  *wait;

    wait = ev->data;

    if (wait->nwaiters == 0) {
        return;
    }

    if (!wait->retry_timer.timer_set) {
        ngx_http_ocdz_wait_pump(&wait->pump_event);
    }

    ngx_add_timer(&wait->drain_timer, NGX_HTTP_OCDZ_WAIT_DRAIN);
}


static void
ngx_http_ocdz_wait_arm_recheck(ngx_http_ocdz_wait_t *wait)
{
    if (wait->nwaiters && !wait->exiting && !wait->recheck_timer.timer_set) {
        ngx_add_timer(&wait->recheck_timer, wait->recheck);
    }
}


static ngx_queue_t *
ngx_http_ocdz_wait_bucket(ngx_http_ocdz_wait_t *wait, ngx_str_t *topup_id)
{
    return &wait->buckets[ngx_crc32_short(topup_id->data, topup_id->len)
                          & wait->mask];
}


ngx_uint_t
ngx_http_ocdz_wait_count(ngx_http_ocdz_wait_t *wait)
{
    return wait->nwaiters;
}
