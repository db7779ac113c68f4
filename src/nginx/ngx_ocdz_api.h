/*
 * The OneClickDz API call on the curl glue: GET
 * {ocdz_api_base}/v3/internet/check-id/{id} with X-Access-Token, HTTPS
 * only, peer and host verified, no redirect followed, no proxy but
 * ocdz_api_proxy. The body is captured up to OCDZ_UPSTREAM_BODY_MAX (a
 * larger one ends the transfer), Retry-After is read, and the result is
 * handed to the caller's done handler: exactly once per started call,
 * never from inside ngx_ocdz_api_check(), unless the call is stopped.
 *
 * Nothing here logs an access token or a reply body.
 */

#ifndef _NGX_OCDZ_API_H_INCLUDED_
#define _NGX_OCDZ_API_H_INCLUDED_


#include "ngx_http_ocdz_module.h"
#include "ngx_ocdz_curl.h"
#include "ocdz_transition.h"


typedef struct ngx_ocdz_api_s       ngx_ocdz_api_t;
typedef struct ngx_ocdz_api_call_s  ngx_ocdz_api_call_t;

typedef void (*ngx_ocdz_api_done_pt)(ngx_ocdz_api_call_t *call);


/* what a call brought back */
typedef struct {
    ocdz_call_e              call;        /* how it ended */
    CURLcode                 rc;
    long                     http;        /* 0: no answer */
    u_char                  *body;        /* wiped by ngx_ocdz_api_wipe() */
    size_t                   body_len;
    time_t                   retry_after; /* Retry-After, seconds, or -1 */
    time_t                   retry_at;    /* ... as a date, or -1 */
    char                     error[CURL_ERROR_SIZE];  /* curl's message */
} ngx_ocdz_api_result_t;


struct ngx_ocdz_api_call_s {
    ngx_ocdz_api_result_t    result;
    ngx_ocdz_api_done_pt     done;
    void                    *data;

    /* the API's own */
    ngx_ocdz_api_t          *api;
    CURL                    *easy;        /* kept for the next call */
    ngx_uint_t               resolved;    /* the addresses' generation
                                             it last used */
    unsigned                 running:1;
    unsigned                 oversized:1;
};


/*
 * Worker: the URL prefix, one header list per access token, the CA and
 * the proxy, from the configuration; NULL on failure (logged).
 */
ngx_ocdz_api_t *ngx_ocdz_api_create(ngx_http_ocdz_worker_t *w);

/* Worker exit: after every call has been freed. */
void ngx_ocdz_api_destroy(ngx_ocdz_api_t *api);

/*
 * Starts the check of one order with access token 0 (the primary) or 1
 * (the secondary, if configured). NGX_ERROR: it could not start
 * (logged); done will not be called.
 */
ngx_int_t ngx_ocdz_api_check(ngx_ocdz_api_t *api, ngx_ocdz_api_call_t *call,
    const char *topup_id, ngx_uint_t token);

/*
 * Whether a check may start: the API host has addresses (nginx's
 * resolver may not have answered yet).
 */
ngx_uint_t ngx_ocdz_api_ready(ngx_ocdz_api_t *api);

/* Stops a running call: done will not be called. */
void ngx_ocdz_api_stop(ngx_ocdz_api_call_t *call);

/* The reply has been read: wipes the body (it may hold a card code). */
void ngx_ocdz_api_wipe(ngx_ocdz_api_call_t *call);

/* Stops the call if it runs, frees its curl handle and buffer. */
void ngx_ocdz_api_free(ngx_ocdz_api_call_t *call);


#endif /* _NGX_OCDZ_API_H_INCLUDED_ */
