/*
 * libcurl's multi socket interface on nginx events and one nginx timer.
 *
 * All libcurl lives here and in the callers' easy-handle setup. curl's
 * sockets are wrapped in nginx connections (level-triggered read/write
 * events as curl asks), curl's timer is one nginx timer, completions
 * are read with curl_multi_info_read and reported through a callback
 * called outside any curl callback.
 */

#ifndef _NGX_OCDZ_CURL_H_INCLUDED_
#define _NGX_OCDZ_CURL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <curl/curl.h>


typedef struct ngx_ocdz_curl_s  ngx_ocdz_curl_t;

typedef void (*ngx_ocdz_curl_done_pt)(CURL *easy, CURLcode rc, void *data);


/* Worker: curl_global_init and the multi handle; NULL on failure. */
ngx_ocdz_curl_t *ngx_ocdz_curl_create(ngx_cycle_t *cycle,
    ngx_uint_t max_host_connections);

/* Worker exit: removes every transfer (no callbacks), frees sockets,
 * curl_multi_cleanup, curl_global_cleanup. */
void ngx_ocdz_curl_destroy(ngx_ocdz_curl_t *cu);

/*
 * Starts a transfer the caller has set up (URL, headers, callbacks,
 * timeouts). done is called once when it ends, never from inside
 * ngx_ocdz_curl_start(). Returns NGX_ERROR if curl refuses it (then
 * done is not called).
 */
ngx_int_t ngx_ocdz_curl_start(ngx_ocdz_curl_t *cu, CURL *easy,
    ngx_ocdz_curl_done_pt done, void *data);

/* Stops a running transfer without calling done. */
void ngx_ocdz_curl_stop(ngx_ocdz_curl_t *cu, CURL *easy);


#endif /* _NGX_OCDZ_CURL_H_INCLUDED_ */
