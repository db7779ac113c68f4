/*
 * Waiting for the card (ocdz_card_wait): the requests a worker holds
 * until their order changes, found by top-up id when the LISTEN
 * connection hears a NOTIFY, looked at again on a timer while it does
 * not, and answered when their wait ends or the worker shuts down.
 *
 * The card endpoint owns each request and its database statement; this
 * file decides when a held request looks again (a "look": the reveal
 * statement), paces the looks so that they never flood the pool, and
 * keeps the per-worker limit.
 */

#ifndef _NGX_OCDZ_CARD_WAIT_H_INCLUDED_
#define _NGX_OCDZ_CARD_WAIT_H_INCLUDED_


#include "ngx_http_ocdz_module.h"


typedef struct ngx_http_ocdz_wait_s    ngx_http_ocdz_wait_t;
typedef struct ngx_http_ocdz_waiter_s  ngx_http_ocdz_waiter_t;


/*
 * A look of a held request: final 0 looks again and keeps waiting if the
 * order is still not ready (ngx_http_ocdz_wait_again()); final 1 is the
 * last look, answered whatever it finds. NGX_OK: sent; NGX_DECLINED: the
 * pool takes no more now (tried again soon); NGX_DONE: the request was
 * answered and has left.
 */
typedef ngx_int_t (*ngx_http_ocdz_look_pt)(ngx_http_ocdz_waiter_t *wt,
    ngx_uint_t final);


/* in the request's context; zeroed */
struct ngx_http_ocdz_waiter_s {
    ngx_queue_t                bucket;     /* by top-up id */
    ngx_queue_t                queue;      /* held, or to look at */
    ngx_event_t                timer;      /* the end of the wait */
    ngx_str_t                  topup_id;
    ngx_http_ocdz_wait_t      *wait;       /* NULL: not held */
    ngx_http_ocdz_look_pt      look;
    void                      *data;
    ngx_uint_t                 state;
    unsigned                   again:1;    /* woken while looking */
    unsigned                   final:1;    /* the next look is the last */
};


ngx_int_t ngx_http_ocdz_card_wait_init_process(ngx_http_ocdz_worker_t *w);
void ngx_http_ocdz_card_wait_shutdown(ngx_http_ocdz_worker_t *w);
void ngx_http_ocdz_card_wait_exit_process(ngx_http_ocdz_worker_t *w);

/*
 * Holds a request for msec: wt->topup_id, look and data set by the
 * caller; timer.data and timer.log too (the request's connection).
 * NGX_OK: held; NGX_BUSY: the worker holds ocdz_card_wait_limit already;
 * NGX_DECLINED: the worker is shutting down (look for the last time).
 */
ngx_int_t ngx_http_ocdz_wait_hold(ngx_http_ocdz_wait_t *wait,
    ngx_http_ocdz_waiter_t *wt, ngx_msec_t msec);

/* A look (final 0) found the order still not ready: wait on. */
void ngx_http_ocdz_wait_again(ngx_http_ocdz_waiter_t *wt);

/* The request is answered or gone: frees its slot. Safe to repeat. */
void ngx_http_ocdz_wait_leave(ngx_http_ocdz_waiter_t *wt);

/* The requests this worker holds (the status gauge). */
ngx_uint_t ngx_http_ocdz_wait_count(ngx_http_ocdz_wait_t *wait);


#endif /* _NGX_OCDZ_CARD_WAIT_H_INCLUDED_ */
