/*
 * ngx_http_ocdz_module: delivery of OneClickDz internet recharge cards.
 *
 * Configuration structures shared by the module's files.
 */

#ifndef _NGX_HTTP_OCDZ_MODULE_H_INCLUDED_
#define _NGX_HTTP_OCDZ_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ocdz_crypto.h"
#include "ocdz_instructions.h"
#include "ngx_ocdz_pg.h"


/* the one place the version is set; debian/changelog follows it */
#define NGX_HTTP_OCDZ_VERSION           "0.1.0"


#define NGX_HTTP_OCDZ_SESSION_DB        1
#define NGX_HTTP_OCDZ_SESSION_JWT       2
#define NGX_HTTP_OCDZ_SESSION_VARIABLE  3

#define NGX_HTTP_OCDZ_TOKEN_MAX         512    /* session token bytes */


typedef struct {
    ngx_ocdz_pg_conf_t        *pg;            /* NULL: no ocdz_db, else
                                                 &pg_conf */
    ngx_ocdz_pg_conf_t         pg_conf;
    ocdz_keyring_t            *keyring;       /* NULL: no ocdz_card_key */
    ngx_flag_t                 key_current_marked;
    ocdz_instructions_t        instructions;

    /* the OneClickDz API */
    ngx_str_t                  api_base;      /* no trailing slash */
    ngx_str_t                  api_token[2];  /* primary, secondary:
                                                 secret, from files */
    ngx_str_t                  api_ca_file;
    ngx_str_t                  api_ca_pem;    /* its contents */
    ngx_str_t                  api_proxy;
    ngx_msec_t                 api_timeout;
    ngx_msec_t                 api_connect_timeout;

    /* the poller */
    ngx_flag_t                 poller;
    ngx_msec_t                 poller_interval;      /* HANDLING, PENDING */
    ngx_msec_t                 poller_queued_interval;
    ngx_msec_t                 poller_max_backoff;
    ngx_msec_t                 poller_lease;
    ngx_msec_t                 poller_pause;         /* 401, 403, bad URL */
    ngx_msec_t                 poller_retry_after_max;
    ngx_uint_t                 poller_concurrency;   /* per worker */
    ngx_uint_t                 poller_not_found_retries;
    ngx_uint_t                 poller_backoff_after; /* attempts */
    ngx_flag_t                 poller_sync_commit;   /* off: commits do
                                                        not wait for the
                                                        WAL flush */

    ngx_flag_t                 has_card_location;
} ngx_http_ocdz_main_conf_t;


typedef struct {
    ngx_http_complex_value_t  *card;          /* ocdz_card: the top-up id */

    ngx_uint_t                 session;       /* NGX_HTTP_OCDZ_SESSION_* */
    ngx_http_complex_value_t  *session_var;   /* ocdz_session $var */
    ngx_str_t                  session_cookie;
    ngx_flag_t                 session_bearer;
    ngx_str_t                  session_query; /* own SQL, $1 = token */

    ngx_str_t                  jwt_secret;    /* secret, from a file */
    ngx_str_t                  jwt_user_claim;
    time_t                     jwt_leeway;

    ngx_flag_t                 https_only;
    ngx_array_t               *trusted_proxies;   /* ngx_cidr_t */
    ngx_array_t               *cors_origins;      /* ngx_str_t */

    ngx_int_t                  stmt_reveal;   /* statement indexes */
    ngx_int_t                  stmt_failed;
} ngx_http_ocdz_loc_conf_t;


extern ngx_module_t  ngx_http_ocdz_module;


#endif /* _NGX_HTTP_OCDZ_MODULE_H_INCLUDED_ */
