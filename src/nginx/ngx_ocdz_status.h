/*
 * ocdz_status: a location that shows how the module is doing, in the
 * Prometheus text format (0.0.4) or in JSON (?format=json, or Accept:
 * application/json). Protected like stub_status, with allow and deny.
 *
 * The counters live in a shared memory zone made when ocdz_status is
 * configured: every worker adds to them with relaxed atomic additions
 * (no lock), they add up across workers, and they outlive a reload
 * (the zone is reused while its size stays) and the death of a worker.
 * What a worker holds right now (database connections by state, its
 * queue, its leases, its pause) is its own slot, indexed by its worker
 * number, and added up on a scrape.
 *
 * The hooks take the zone from the configuration (NULL: no
 * ocdz_status, nothing is counted) and cost a few atomic additions.
 * No metric or label holds a card code, token, key, user id or top-up
 * id (ocdz_metrics.h).
 */

#ifndef _NGX_OCDZ_STATUS_H_INCLUDED_
#define _NGX_OCDZ_STATUS_H_INCLUDED_


#include "ngx_http_ocdz_module.h"


/* the ocdz_status directive: a location's content handler */
char *ngx_ocdz_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/*
 * Once every directive is read (init_main_conf): the pool counts, and
 * the backlog query is registered.
 */
char *ngx_ocdz_status_prepare(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);

/* Worker start and exit: the slot of this worker, its refresh timer. */
ngx_int_t ngx_ocdz_status_init_process(ngx_http_ocdz_worker_t *w);
void ngx_ocdz_status_exit_process(ngx_http_ocdz_worker_t *w);


/* hooks; zone NULL: nothing is counted */

#define ngx_http_ocdz_status_zone(r)                                         \
    ((ngx_http_ocdz_main_conf_t *)                                           \
     ngx_http_get_module_main_conf(r, ngx_http_ocdz_module))->status

/* the card endpoint answered r with this result code */
void ngx_ocdz_status_reveal(ngx_shm_zone_t *zone,
    ngx_http_request_t *r, ngx_str_t *code);

/* the pool declined a query at once (a reveal answers 503) */
void ngx_ocdz_status_db_shed(ngx_shm_zone_t *zone);

/* a statement went to the server, for n queries */
void ngx_ocdz_status_db_statement(ngx_shm_zone_t *zone, ngx_uint_t n);

/* a connection attempt started, or one failed */
void ngx_ocdz_status_db_connect(ngx_shm_zone_t *zone, ngx_uint_t failed);

/*
 * A check ended: its write (OCDZ_WRITE_*), the HTTP status of the
 * answer (0: none), the pause it decided (ms, 0: none) and how long
 * the call took.
 */
void ngx_ocdz_status_check(ngx_shm_zone_t *zone, ngx_uint_t write,
    long http, uint64_t pause, ngx_msec_t elapsed);

/*
 * The poller of this worker: orders it holds leased, the access token
 * in use (1: the secondary), until when its checks pause (msec clock).
 */
void ngx_ocdz_status_poller(ngx_shm_zone_t *zone, ngx_uint_t leases,
    ngx_uint_t token, ngx_msec_t paused_until);

/*
 * An outbox delivery attempt ended: its channel ("webhook", "email",
 * "sms"), the state written ("sent", "pending": retried, "failed",
 * "skipped") and when its transfer started (0: none, not timed).
 */
void ngx_ocdz_status_outbox(ngx_shm_zone_t *zone, const char *channel,
    const char *state, ngx_msec_t started);


#endif /* _NGX_OCDZ_STATUS_H_INCLUDED_ */
