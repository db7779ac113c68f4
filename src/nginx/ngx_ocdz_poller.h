/*
 * The background poller: a timer in each worker claims due orders with
 * a lease in PostgreSQL, checks each upstream through ngx_ocdz_curl,
 * and writes one state transition back with the lease token.
 */

#ifndef _NGX_OCDZ_POLLER_H_INCLUDED_
#define _NGX_OCDZ_POLLER_H_INCLUDED_


#include "ngx_http_ocdz_module.h"


/* Configuration: checks the settings, registers the statements. */
char *ngx_ocdz_poller_prepare(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);

ngx_int_t ngx_ocdz_poller_init_process(ngx_http_ocdz_worker_t *w);
void ngx_ocdz_poller_exit_process(ngx_http_ocdz_worker_t *w);


#endif /* _NGX_OCDZ_POLLER_H_INCLUDED_ */
