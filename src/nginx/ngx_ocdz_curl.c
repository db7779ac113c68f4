/*
 * libcurl's multi socket interface on nginx events and one nginx timer.
 *
 * One multi handle per worker. curl tells us, through the socket
 * callback, which of its sockets to watch for what: each is wrapped in
 * an nginx connection with level-triggered events (a read that leaves
 * bytes behind, in the kernel or inside OpenSSL, is simply reported
 * again). curl's single timeout is one nginx timer. Neither callback
 * calls curl: they only change events and the timer; curl is driven
 * from the event handlers, which then collect finished transfers and
 * report them after curl_multi_remove_handle().
 *
 * The sockets are curl's: nginx never closes them. A wrapped socket is
 * released (events deleted, connection freed with fd = -1) when curl
 * stops watching it or, should that ever be skipped, when curl is about
 * to close it (CURLOPT_CLOSESOCKETFUNCTION).
 *
 * The worker's event loop is shared with requests: at most
 * NGX_OCDZ_CURL_SLICE curl sockets are served per turn. The others stay
 * ready and, being level-triggered, come back in the next turn, after
 * the requests that arrived meanwhile.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_ocdz_curl.h"


#define NGX_OCDZ_CURL_SLICE  8        /* sockets served per loop turn */


typedef struct ngx_ocdz_curl_sock_s  ngx_ocdz_curl_sock_t;

struct ngx_ocdz_curl_sock_s {
    ngx_queue_t             queue;        /* in used or free */
    ngx_ocdz_curl_t        *cu;
    ngx_connection_t       *c;
    curl_socket_t           fd;
};


typedef struct {
    ngx_queue_t             queue;        /* in transfers or free */
    CURL                   *easy;
    ngx_ocdz_curl_done_pt   done;
    void                   *data;
    unsigned                failed:1;
} ngx_ocdz_curl_xfer_t;


/*
 * The timer's and the turn event's ev->data. nginx's debug logging
 * reads ev->data as a connection (ngx_event_ident() prints its fd):
 * like ngx_resolver_t in nginx core, it starts with three pointers and
 * an "fd" of -1, where ngx_connection_t has data, read, write and fd.
 */

struct ngx_ocdz_curl_s {
    CURLM                  *multi;
    ngx_log_t              *log;
    void                   *unused;
    ngx_socket_t            ident;        /* -1: see above */

    ngx_event_t             timer;
    ngx_event_t             turn;         /* the end of a loop turn */
    ngx_uint_t              served;       /* sockets served this turn */

    ngx_queue_t             socks;        /* watched sockets */
    ngx_queue_t             free_socks;
    ngx_queue_t             xfers;        /* running transfers */
    ngx_queue_t             free_xfers;
    ngx_uint_t              running;

    unsigned                global:1;     /* curl_global_init done */
    unsigned                failed:1;     /* some xfer->failed */
};


typedef char  ngx_ocdz_curl_ident_check[
    offsetof(ngx_ocdz_curl_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static int ngx_ocdz_curl_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_ocdz_curl_timer_cb(CURLM *multi, long timeout_ms,
    void *userp);
static int ngx_ocdz_curl_close_cb(void *clientp, curl_socket_t s);
static ngx_int_t ngx_ocdz_curl_watch(ngx_ocdz_curl_sock_t *sock, int what);
static void ngx_ocdz_curl_release(ngx_ocdz_curl_sock_t *sock);
static void ngx_ocdz_curl_fail(ngx_ocdz_curl_t *cu, CURL *easy);
static void ngx_ocdz_curl_event_handler(ngx_event_t *ev);
static void ngx_ocdz_curl_timer_handler(ngx_event_t *ev);
static void ngx_ocdz_curl_turn_handler(ngx_event_t *ev);
static void ngx_ocdz_curl_process_done(ngx_ocdz_curl_t *cu);
static ngx_ocdz_curl_xfer_t *ngx_ocdz_curl_find(ngx_ocdz_curl_t *cu,
    CURL *easy);
static void ngx_ocdz_curl_free_lists(ngx_ocdz_curl_t *cu);


ngx_ocdz_curl_t *
ngx_ocdz_curl_create(ngx_cycle_t *cycle, ngx_uint_t max_host_connections)
{
    CURLMcode                mc;
    CURLcode                 rc;
    curl_version_info_data  *ver;
    ngx_ocdz_curl_t         *cu;

    cu = ngx_pcalloc(cycle->pool, sizeof(ngx_ocdz_curl_t));
    if (cu == NULL) {
        return NULL;
    }

    cu->log = cycle->log;
    cu->ident = (ngx_socket_t) -1;

    ngx_queue_init(&cu->socks);
    ngx_queue_init(&cu->free_socks);
    ngx_queue_init(&cu->xfers);
    ngx_queue_init(&cu->free_xfers);

    /* after fork: curl's global state belongs to this process */

    rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "ocdz: curl_global_init() failed: %s",
                      curl_easy_strerror(rc));
        return NULL;
    }

    cu->global = 1;

    ver = curl_version_info(CURLVERSION_NOW);

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "ocdz: libcurl %s, %s",
                  ver->version ? ver->version : "?",
                  ver->ssl_version ? ver->ssl_version : "no TLS");

    if (!(ver->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ocdz: libcurl %s resolves names synchronously: "
                      "a slow DNS server would block the worker; use an "
                      "IP address in ocdz_api_base or a libcurl built "
                      "with the threaded resolver or c-ares",
                      ver->version ? ver->version : "?");
    }

    if (!(ver->features & CURL_VERSION_SSL)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "ocdz: libcurl %s has no TLS support: the OneClickDz "
                      "API cannot be reached",
                      ver->version ? ver->version : "?");
    }

    cu->multi = curl_multi_init();
    if (cu->multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "ocdz: curl_multi_init() failed");
        curl_global_cleanup();
        cu->global = 0;
        return NULL;
    }

    if (max_host_connections == 0) {
        max_host_connections = 1;
    }

    mc = curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION,
                           ngx_ocdz_curl_socket_cb);
    if (mc == CURLM_OK) {
        mc = curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    }
    if (mc == CURLM_OK) {
        mc = curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION,
                               ngx_ocdz_curl_timer_cb);
    }
    if (mc == CURLM_OK) {
        mc = curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    }
    if (mc == CURLM_OK) {
        mc = curl_multi_setopt(cu->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                               (long) max_host_connections);
    }
    if (mc == CURLM_OK) {
        /* keep as many idle connections as may run: they are reused */
        mc = curl_multi_setopt(cu->multi, CURLMOPT_MAXCONNECTS,
                               (long) max_host_connections);
    }

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "ocdz: curl_multi_setopt() failed: %s",
                      curl_multi_strerror(mc));
        curl_multi_cleanup(cu->multi);
        cu->multi = NULL;
        curl_global_cleanup();
        cu->global = 0;
        return NULL;
    }

    cu->timer.handler = ngx_ocdz_curl_timer_handler;
    cu->timer.data = cu;
    cu->timer.log = cycle->log;
    cu->timer.cancelable = 1;

    cu->turn.handler = ngx_ocdz_curl_turn_handler;
    cu->turn.data = cu;
    cu->turn.log = cycle->log;

    return cu;
}


void
ngx_ocdz_curl_destroy(ngx_ocdz_curl_t *cu)
{
    ngx_queue_t           *q;
    ngx_ocdz_curl_xfer_t  *x;
    ngx_ocdz_curl_sock_t  *sock;

    if (cu->multi == NULL) {
        if (cu->global) {
            curl_global_cleanup();
            cu->global = 0;
        }
        return;
    }

    /* every transfer goes, without callbacks */

    while (!ngx_queue_empty(&cu->xfers)) {
        q = ngx_queue_head(&cu->xfers);
        x = ngx_queue_data(q, ngx_ocdz_curl_xfer_t, queue);

        ngx_queue_remove(q);
        cu->running--;

        curl_multi_remove_handle(cu->multi, x->easy);
        ngx_free(x);
    }

    /* sockets still watched: their fds are open, curl closes them */

    while (!ngx_queue_empty(&cu->socks)) {
        q = ngx_queue_head(&cu->socks);
        sock = ngx_queue_data(q, ngx_ocdz_curl_sock_t, queue);

        curl_multi_assign(cu->multi, sock->fd, NULL);
        ngx_ocdz_curl_release(sock);
    }

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (cu->timer.posted) {
        ngx_delete_posted_event(&cu->timer);
    }

    if (cu->turn.posted) {
        ngx_delete_posted_event(&cu->turn);
    }

    /* from here on curl closes its cached connections on its own */

    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, NULL);

    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;

    ngx_ocdz_curl_free_lists(cu);

    if (cu->global) {
        curl_global_cleanup();
        cu->global = 0;
    }
}


ngx_int_t
ngx_ocdz_curl_start(ngx_ocdz_curl_t *cu, CURL *easy,
    ngx_ocdz_curl_done_pt done, void *data)
{
    CURLMcode              mc;
    ngx_queue_t           *q;
    ngx_ocdz_curl_xfer_t  *x;

    if (cu->multi == NULL) {
        return NGX_ERROR;
    }

    if (!ngx_queue_empty(&cu->free_xfers)) {
        q = ngx_queue_head(&cu->free_xfers);
        ngx_queue_remove(q);
        x = ngx_queue_data(q, ngx_ocdz_curl_xfer_t, queue);

    } else {
        x = ngx_alloc(sizeof(ngx_ocdz_curl_xfer_t), cu->log);
        if (x == NULL) {
            return NGX_ERROR;
        }
    }

    x->easy = easy;
    x->done = done;
    x->data = data;
    x->failed = 0;

    /* a socket curl closes is unwrapped first, even if REMOVE was
     * skipped: nginx must never watch a closed (or reused) fd */

    if (curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                         ngx_ocdz_curl_close_cb)
        != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, cu) != CURLE_OK)
    {
        ngx_queue_insert_head(&cu->free_xfers, &x->queue);
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&cu->xfers, &x->queue);
    cu->running++;

    /* calls the timer callback only: the transfer starts from the timer */

    mc = curl_multi_add_handle(cu->multi, easy);

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                      "ocdz: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));

        ngx_queue_remove(&x->queue);
        cu->running--;
        ngx_queue_insert_head(&cu->free_xfers, &x->queue);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_ocdz_curl_stop(ngx_ocdz_curl_t *cu, CURL *easy)
{
    ngx_ocdz_curl_xfer_t  *x;

    if (cu->multi == NULL) {
        return;
    }

    x = ngx_ocdz_curl_find(cu, easy);
    if (x == NULL) {
        return;
    }

    ngx_queue_remove(&x->queue);
    cu->running--;

    curl_multi_remove_handle(cu->multi, easy);

    ngx_queue_insert_head(&cu->free_xfers, &x->queue);
}


/* curl: watch s for what (or stop watching it); never calls curl back */

static int
ngx_ocdz_curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_queue_t           *q;
    ngx_ocdz_curl_t       *cu;
    ngx_connection_t      *c;
    ngx_ocdz_curl_sock_t  *sock;

    cu = userp;
    sock = socketp;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, cu->log, 0,
                   "ocdz curl socket %d: %d, %s", (int) s, what,
                   sock ? "wrapped" : "new");

    if (what == CURL_POLL_REMOVE) {
        if (sock) {
            ngx_ocdz_curl_release(sock);
        }

        return 0;
    }

    if (sock == NULL) {
        c = ngx_get_connection((ngx_socket_t) s, cu->log);
        if (c == NULL) {
            ngx_log_error(NGX_LOG_ERR, cu->log, 0,
                          "ocdz: no free connection for a curl socket; "
                          "raise worker_connections");
            ngx_ocdz_curl_fail(cu, easy);
            return 0;
        }

        if (!ngx_queue_empty(&cu->free_socks)) {
            q = ngx_queue_head(&cu->free_socks);
            ngx_queue_remove(q);
            sock = ngx_queue_data(q, ngx_ocdz_curl_sock_t, queue);

        } else {
            sock = ngx_alloc(sizeof(ngx_ocdz_curl_sock_t), cu->log);
            if (sock == NULL) {
                ngx_free_connection(c);
                c->fd = (ngx_socket_t) -1;
                ngx_ocdz_curl_fail(cu, easy);
                return 0;
            }
        }

        sock->cu = cu;
        sock->c = c;
        sock->fd = s;

        c->data = sock;
        c->log = cu->log;
        c->read->log = cu->log;
        c->write->log = cu->log;
        c->read->handler = ngx_ocdz_curl_event_handler;
        c->write->handler = ngx_ocdz_curl_event_handler;

        ngx_queue_insert_tail(&cu->socks, &sock->queue);

        /* only stores the pointer: safe inside the callback */
        curl_multi_assign(cu->multi, s, sock);
    }

    if (ngx_ocdz_curl_watch(sock, what) != NGX_OK) {
        ngx_ocdz_curl_fail(cu, easy);
    }

    /* never -1: curl would declare the whole multi handle dead */

    return 0;
}


/* a transfer we cannot watch: ended after curl returns, as a failure */

static void
ngx_ocdz_curl_fail(ngx_ocdz_curl_t *cu, CURL *easy)
{
    ngx_ocdz_curl_xfer_t  *x;

    x = ngx_ocdz_curl_find(cu, easy);

    if (x) {
        x->failed = 1;
        cu->failed = 1;
    }
}


/* level-triggered read and write events as curl asks; deletes first */

static ngx_int_t
ngx_ocdz_curl_watch(ngx_ocdz_curl_sock_t *sock, int what)
{
    ngx_uint_t         want_read, want_write;
    ngx_connection_t  *c;

    c = sock->c;

    want_read = (what == CURL_POLL_IN || what == CURL_POLL_INOUT);
    want_write = (what == CURL_POLL_OUT || what == CURL_POLL_INOUT);

    if (c->read->active && !want_read) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (c->write->active && !want_write) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (want_read && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (want_write && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Unwraps a socket (its fd still open: curl tells before closing):
 * deletes its events, frees the nginx connection without closing the
 * fd, which stays curl's.
 */

static void
ngx_ocdz_curl_release(ngx_ocdz_curl_sock_t *sock)
{
    ngx_connection_t  *c;

    c = sock->c;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_free_connection(c);

    /* stale events of this connection are recognised by fd == -1 */
    c->fd = (ngx_socket_t) -1;

    ngx_queue_remove(&sock->queue);
    sock->c = NULL;
    sock->fd = CURL_SOCKET_BAD;
    ngx_queue_insert_head(&sock->cu->free_socks, &sock->queue);
}


/* curl closes a socket: it must not stay in epoll under our connection */

static int
ngx_ocdz_curl_close_cb(void *clientp, curl_socket_t s)
{
    ngx_queue_t           *q;
    ngx_ocdz_curl_t       *cu;
    ngx_ocdz_curl_sock_t  *sock;

    cu = clientp;

    for (q = ngx_queue_head(&cu->socks);
         q != ngx_queue_sentinel(&cu->socks);
         q = ngx_queue_next(q))
    {
        sock = ngx_queue_data(q, ngx_ocdz_curl_sock_t, queue);

        if (sock->fd == s) {
            ngx_ocdz_curl_release(sock);
            break;
        }
    }

    return close(s);
}


/* curl: arm, re-arm or delete the one timer; never calls curl back */

static int
ngx_ocdz_curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_ocdz_curl_t  *cu;

    cu = userp;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, cu->log, 0,
                   "ocdz curl timer: %l", timeout_ms);

    /* ngx_add_timer() would keep an old timer within 300 ms of the new */

    if (cu->timer.timer_set) {
        ngx_del_timer(&cu->timer);
    }

    if (timeout_ms < 0) {
        return 0;
    }

    /* 0: "now", run from the event loop, not from here */

    ngx_add_timer(&cu->timer, (ngx_msec_t) timeout_ms);

    return 0;
}


static void
ngx_ocdz_curl_event_handler(ngx_event_t *ev)
{
    int                    running;
    curl_socket_t          fd;
    ngx_connection_t      *c;
    ngx_ocdz_curl_t       *cu;
    ngx_ocdz_curl_sock_t  *sock;

    c = ev->data;

    if (c->fd == (ngx_socket_t) -1) {
        return;
    }

    sock = c->data;
    cu = sock->cu;
    fd = sock->fd;

    if (cu->multi == NULL) {
        return;
    }

    /* posted events run once this turn's network events are handled */

    if (cu->served == 0) {
        ngx_post_event(&cu->turn, &ngx_posted_events);

    } else if (cu->served >= NGX_OCDZ_CURL_SLICE) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, cu->log, 0,
                       "ocdz curl event: %d next turn", (int) fd);
        return;
    }

    cu->served++;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, cu->log, 0,
                   "ocdz curl event: %d %s", (int) fd,
                   ev->write ? "out" : "in");

    /* may unwrap this very socket: c is not touched afterwards */

    (void) curl_multi_socket_action(cu->multi, fd,
                                    ev->write ? CURL_CSELECT_OUT
                                              : CURL_CSELECT_IN,
                                    &running);

    ngx_ocdz_curl_process_done(cu);
}


static void
ngx_ocdz_curl_timer_handler(ngx_event_t *ev)
{
    int               running;
    ngx_ocdz_curl_t  *cu;

    cu = ev->data;

    if (cu->multi == NULL) {
        return;
    }

    (void) curl_multi_socket_action(cu->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running);

    ngx_ocdz_curl_process_done(cu);
}


static void
ngx_ocdz_curl_turn_handler(ngx_event_t *ev)
{
    ngx_ocdz_curl_t  *cu;

    cu = ev->data;
    cu->served = 0;
}


/* finished transfers: removed from the multi first, then reported */

static void
ngx_ocdz_curl_process_done(ngx_ocdz_curl_t *cu)
{
    int                     left;
    CURL                   *easy;
    CURLMsg                *msg;
    CURLcode                rc;
    ngx_queue_t            *q;
    ngx_ocdz_curl_xfer_t   *x;
    ngx_ocdz_curl_done_pt   done;
    void                   *data;

    while (cu->multi) {
        msg = curl_multi_info_read(cu->multi, &left);
        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        rc = msg->data.result;

        x = ngx_ocdz_curl_find(cu, easy);

        /* msg belongs to easy: not used after this */
        curl_multi_remove_handle(cu->multi, easy);

        if (x == NULL) {
            continue;
        }

        ngx_queue_remove(&x->queue);
        cu->running--;

        done = x->done;
        data = x->data;

        ngx_queue_insert_head(&cu->free_xfers, &x->queue);

        /* may start or stop transfers: we are outside curl here */
        done(easy, rc, data);
    }

    while (cu->failed && cu->multi) {
        cu->failed = 0;

        for (q = ngx_queue_head(&cu->xfers);
             q != ngx_queue_sentinel(&cu->xfers);
             q = ngx_queue_next(q))
        {
            x = ngx_queue_data(q, ngx_ocdz_curl_xfer_t, queue);

            if (x->failed) {
                /* done() may change the list: rescan after it */
                cu->failed = 1;

                easy = x->easy;
                done = x->done;
                data = x->data;

                ngx_ocdz_curl_stop(cu, easy);

                done(easy, CURLE_COULDNT_CONNECT, data);
                break;
            }
        }
    }
}


static ngx_ocdz_curl_xfer_t *
ngx_ocdz_curl_find(ngx_ocdz_curl_t *cu, CURL *easy)
{
    ngx_queue_t           *q;
    ngx_ocdz_curl_xfer_t  *x;

    for (q = ngx_queue_head(&cu->xfers);
         q != ngx_queue_sentinel(&cu->xfers);
         q = ngx_queue_next(q))
    {
        x = ngx_queue_data(q, ngx_ocdz_curl_xfer_t, queue);

        if (x->easy == easy) {
            return x;
        }
    }

    return NULL;
}


static void
ngx_ocdz_curl_free_lists(ngx_ocdz_curl_t *cu)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&cu->free_xfers)) {
        q = ngx_queue_head(&cu->free_xfers);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ocdz_curl_xfer_t, queue));
    }

    while (!ngx_queue_empty(&cu->free_socks)) {
        q = ngx_queue_head(&cu->free_socks);
        ngx_queue_remove(q);
        ngx_free(ngx_queue_data(q, ngx_ocdz_curl_sock_t, queue));
    }
}
