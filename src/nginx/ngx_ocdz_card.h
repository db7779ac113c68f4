/*
 * The card endpoint: session, ownership, one database round trip,
 * decryption inside the request, JSON, audit.
 */

#ifndef _NGX_OCDZ_CARD_H_INCLUDED_
#define _NGX_OCDZ_CARD_H_INCLUDED_


#include "ngx_http_ocdz_module.h"


typedef struct ngx_http_ocdz_card_s  ngx_http_ocdz_card_t;


/* Configuration: registers the location's statements. */
char *ngx_http_ocdz_card_prepare(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf, ngx_http_ocdz_loc_conf_t *olcf);

ngx_int_t ngx_http_ocdz_card_add_variables(ngx_conf_t *cf);

ngx_int_t ngx_http_ocdz_card_handler(ngx_http_request_t *r);

/* Worker: the endpoint's own state, in w->card. */
ngx_int_t ngx_http_ocdz_card_init_process(ngx_http_ocdz_worker_t *w);
void ngx_http_ocdz_card_exit_process(ngx_http_ocdz_worker_t *w);


#endif /* _NGX_OCDZ_CARD_H_INCLUDED_ */
