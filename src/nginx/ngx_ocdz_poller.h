/*
 * The background poller: each worker leases due orders in PostgreSQL,
 * checks each upstream (ngx_ocdz_api), asks ocdz_transition what the
 * reply means, and writes the transition back through the pool's batch
 * statements, naming its lease.
 */

#ifndef _NGX_OCDZ_POLLER_H_INCLUDED_
#define _NGX_OCDZ_POLLER_H_INCLUDED_


#include "ngx_http_ocdz_module.h"


typedef struct ngx_ocdz_poller_s  ngx_ocdz_poller_t;


/* Configuration: checks the settings, registers the statements. */
char *ngx_ocdz_poller_prepare(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);

/* Worker: w->poller, started; NGX_ERROR on failure (logged). */
ngx_int_t ngx_ocdz_poller_init_process(ngx_http_ocdz_worker_t *w);

/*
 * A graceful shutdown begins: no more claims or checks; the results in
 * hand are written and the leases of the checks given up are given
 * back, in statements the worker waits for (bounded by
 * ocdz_db_query_timeout), so that the orders are checked again at once
 * by the next workers, not after ocdz_poller_lease.
 */
void ngx_ocdz_poller_shutdown(ngx_http_ocdz_worker_t *w);

/* Worker exit: stops everything; leases still held simply expire. */
void ngx_ocdz_poller_exit_process(ngx_http_ocdz_worker_t *w);


#endif /* _NGX_OCDZ_POLLER_H_INCLUDED_ */
