
/*
 * ngx_http_ocdz_module: delivery of OneClickDz internet recharge cards.
 *
 * This file holds the directives, the configuration structures' create
 * and merge (every default in ngx_http_ocdz_module.h), and the process
 * hooks: the worker's run time is one ngx_http_ocdz_worker_t. The work
 * is done in src/nginx: the card endpoint (ngx_ocdz_card.c), the poller
 * (ngx_ocdz_poller.c) and its OneClickDz call (ngx_ocdz_api.c), the
 * PostgreSQL pool (ngx_ocdz_pg_conf.c, ngx_ocdz_pg.c) and the curl glue
 * (ngx_ocdz_curl.c), the requests held for their card
 * (ngx_ocdz_card_wait.c) and the LISTEN connection that wakes them
 * (ngx_ocdz_pg_listen.c); and in the pure C cores of src/core (ocdz_*.c).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <sys/prctl.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ngx_http_ocdz_module.h"
#include "ngx_ocdz_card.h"
#include "ngx_ocdz_card_wait.h"
#include "ngx_ocdz_curl.h"
#include "ngx_ocdz_poller.h"
#include "ngx_ocdz_outbox.h"
#include "ngx_ocdz_status.h"
#include "ngx_ocdz_resolve.h"
#include "ocdz_template.h"
#include "ocdz_text.h"


#define NGX_HTTP_OCDZ_SECRET_MAX      4096


/* parses one argument of a list directive into its array element */
typedef char *(*ngx_http_ocdz_item_pt)(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);


static ngx_int_t ngx_http_ocdz_preconfiguration(ngx_conf_t *cf);
static void *ngx_http_ocdz_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_ocdz_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_ocdz_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ocdz_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_ocdz_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_ocdz_init_process(ngx_cycle_t *cycle);
static void ngx_http_ocdz_exit_process(ngx_cycle_t *cycle);
static void ngx_http_ocdz_stop(ngx_http_ocdz_worker_t *w);
static ngx_int_t ngx_http_ocdz_watch(ngx_http_ocdz_worker_t *w);
static void ngx_http_ocdz_shutdown(ngx_event_t *ev);
static void ngx_http_ocdz_unwatch(ngx_http_ocdz_worker_t *w);

static char *ngx_http_ocdz_db(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_db_password_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_card_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_instructions_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_name_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_api_base(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_api_token_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_api_ca_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_api_proxy(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_card(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_session(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_session_query(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_jwt_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_webhook_secret_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_sms_gateway_body(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_sms_gateway_token_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_smtp_credentials_file(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_ca_pem_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_ocdz_delivery_template(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_delivery_channels(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_ocdz_palloc(void *data, size_t size);
static char *ngx_http_ocdz_trusted_proxies(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_ocdz_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static char *ngx_http_ocdz_list(ngx_conf_t *cf, ngx_array_t **list,
    size_t size, ngx_http_ocdz_item_pt item);
static char *ngx_http_ocdz_trusted_proxy(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);
static char *ngx_http_ocdz_cors_origin(ngx_conf_t *cf, ngx_str_t *value,
    void *elt);
static const char *ngx_http_ocdz_check_origin(ngx_str_t *url,
    const char **schemes, ngx_uint_t slash);
static char *ngx_http_ocdz_read_file(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, const char *what, ngx_uint_t secret, ngx_str_t *text);
static char *ngx_http_ocdz_read_file_as_is(ngx_conf_t *cf, ngx_str_t *name,
    size_t max, const char *what, ngx_uint_t secret, ngx_str_t *text);
static void ngx_http_ocdz_wipe_str(void *data);
static void ngx_http_ocdz_wipe_keyring(void *data);
static void ngx_http_ocdz_free_instructions(void *data);
static char *ngx_http_ocdz_check_bounds(ngx_conf_t *cf, void *post,
    void *data);


static ngx_conf_num_bounds_t  ngx_http_ocdz_pool_bounds = {
    ngx_http_ocdz_check_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_http_ocdz_queue_bounds = {
    ngx_http_ocdz_check_bounds, 0, 65536
};

static ngx_conf_num_bounds_t  ngx_http_ocdz_batch_bounds = {
    ngx_http_ocdz_check_bounds, 1, NGX_OCDZ_PG_MAX_BATCH
};

static ngx_conf_num_bounds_t  ngx_http_ocdz_concurrency_bounds = {
    ngx_http_ocdz_check_bounds, 1, 1024
};

static ngx_conf_num_bounds_t  ngx_http_ocdz_wait_limit_bounds = {
    ngx_http_ocdz_check_bounds, 1, 1000000
};

static ngx_conf_num_bounds_t  ngx_http_ocdz_small_bounds = {
    ngx_http_ocdz_check_bounds, 0, 1000000
};


/* what curl takes for CURLOPT_PROXY */
static const char  *ngx_http_ocdz_proxy_schemes[] = {
    "http", "https", "socks4", "socks4a", "socks5", "socks5h", NULL
};

static const char  *ngx_http_ocdz_origin_schemes[] = {
    "http", "https", NULL
};


/*
 * The worker this process runs, if any: the one per-process root, as
 * nginx keeps ngx_cycle. Everything else is reached from it or from the
 * configuration.
 */
static ngx_http_ocdz_worker_t  *ngx_http_ocdz_running;


static ngx_command_t  ngx_http_ocdz_commands[] = {

    /* PostgreSQL */

    { ngx_string("ocdz_db"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_db,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_db_password_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_db_password_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_db_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.pool_size),
      &ngx_http_ocdz_pool_bounds },

    { ngx_string("ocdz_db_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.queue_size),
      &ngx_http_ocdz_queue_bounds },

    { ngx_string("ocdz_db_batch"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, db_batch),
      &ngx_http_ocdz_batch_bounds },

    { ngx_string("ocdz_db_batch_wait"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, db_batch_wait),
      NULL },

    { ngx_string("ocdz_db_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.connect_timeout),
      NULL },

    { ngx_string("ocdz_db_query_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.query_timeout),
      NULL },

    { ngx_string("ocdz_db_statement_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.statement_timeout),
      NULL },

    { ngx_string("ocdz_db_retry_delay"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.retry_delay),
      NULL },

    { ngx_string("ocdz_db_prepared"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.prepared),
      NULL },

    /* cards */

    { ngx_string("ocdz_card_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_http_ocdz_card_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_instructions_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_instructions_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the OneClickDz API */

    { ngx_string("ocdz_api_base"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_api_base,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_api_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_ocdz_api_token_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_api_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_api_ca_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_api_proxy"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_api_proxy,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_api_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, api_timeout),
      NULL },

    { ngx_string("ocdz_api_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, api_connect_timeout),
      NULL },

    /* the poller */

    { ngx_string("ocdz_poller"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller),
      NULL },

    { ngx_string("ocdz_poller_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_interval),
      NULL },

    { ngx_string("ocdz_poller_queued_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_queued_interval),
      NULL },

    { ngx_string("ocdz_poller_max_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_max_backoff),
      NULL },

    { ngx_string("ocdz_poller_backoff_after"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_backoff_after),
      &ngx_http_ocdz_small_bounds },

    { ngx_string("ocdz_poller_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_lease),
      NULL },

    { ngx_string("ocdz_poller_pause"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_pause),
      NULL },

    { ngx_string("ocdz_poller_retry_after_max"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_retry_after_max),
      NULL },

    { ngx_string("ocdz_poller_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_concurrency),
      &ngx_http_ocdz_concurrency_bounds },

    { ngx_string("ocdz_poller_db_connections"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, pg_conf.background_max),
      &ngx_http_ocdz_pool_bounds },

    { ngx_string("ocdz_poller_not_found_retries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_not_found_retries),
      &ngx_http_ocdz_small_bounds },

    { ngx_string("ocdz_poller_sync_commit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, poller_sync_commit),
      NULL },

    /* the card endpoint */

    { ngx_string("ocdz_card"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_card,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_session"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_session,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_session_cookie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_name_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, session_cookie),
      NULL },

    { ngx_string("ocdz_session_bearer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, session_bearer),
      NULL },

    { ngx_string("ocdz_session_query"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_session_query,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_jwt_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_jwt_secret_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_jwt_user_claim"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_name_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, jwt_user_claim),
      NULL },

    { ngx_string("ocdz_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, jwt_leeway),
      NULL },

    { ngx_string("ocdz_https_only"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, https_only),
      NULL },

    { ngx_string("ocdz_trusted_proxies"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ocdz_trusted_proxies,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_cors_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_ocdz_cors_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* waiting for the card */

    { ngx_string("ocdz_card_wait"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ocdz_loc_conf_t, card_wait),
      NULL },

    { ngx_string("ocdz_card_wait_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, card_wait_limit),
      &ngx_http_ocdz_wait_limit_bounds },

    { ngx_string("ocdz_card_wait_recheck"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, card_wait_recheck),
      NULL },

    /* the delivery outbox (ngx_ocdz_outbox.c) */

    { ngx_string("ocdz_outbox"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox),
      NULL },

    { ngx_string("ocdz_outbox_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_interval),
      NULL },

    { ngx_string("ocdz_outbox_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_concurrency),
      NULL },

    { ngx_string("ocdz_outbox_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_lease),
      NULL },

    { ngx_string("ocdz_outbox_attempts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_attempts),
      NULL },

    { ngx_string("ocdz_outbox_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_backoff),
      NULL },

    { ngx_string("ocdz_outbox_max_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_max_backoff),
      NULL },

    { ngx_string("ocdz_outbox_sync_commit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_sync_commit),
      NULL },

    { ngx_string("ocdz_outbox_yield"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_yield),
      NULL },

    { ngx_string("ocdz_webhook_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, webhook_url),
      NULL },

    { ngx_string("ocdz_webhook_secret_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_webhook_secret_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_webhook_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, webhook_timeout),
      NULL },

    { ngx_string("ocdz_sms_gateway_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, sms_url),
      NULL },

    { ngx_string("ocdz_sms_gateway_body"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_ocdz_sms_gateway_body,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_sms_gateway_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_sms_gateway_token_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_sms_sender"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, sms_sender),
      NULL },

    { ngx_string("ocdz_sms_reply_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, sms_reply_id),
      NULL },

    { ngx_string("ocdz_sms_max_parts"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, sms_max_parts),
      NULL },

    { ngx_string("ocdz_sms_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, sms_timeout),
      NULL },

    { ngx_string("ocdz_smtp_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, smtp_url),
      NULL },

    { ngx_string("ocdz_smtp_credentials_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_smtp_credentials_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_smtp_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_ca_pem_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, smtp_ca_pem),
      NULL },

    { ngx_string("ocdz_outbox_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_ocdz_ca_pem_file,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, outbox_ca_pem),
      NULL },

    { ngx_string("ocdz_smtp_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, smtp_timeout),
      NULL },

    { ngx_string("ocdz_mail_from"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, mail_from),
      NULL },

    { ngx_string("ocdz_mail_from_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, mail_from_name),
      NULL },

    { ngx_string("ocdz_mail_reply_to"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, mail_reply_to),
      NULL },

    { ngx_string("ocdz_mail_domain"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_ocdz_main_conf_t, mail_domain),
      NULL },

    /* templates from files, the default channels (ngx_ocdz_outbox_conf.c) */

    { ngx_string("ocdz_mail_template"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_ocdz_delivery_template,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_sms_template"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_ocdz_delivery_template,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ocdz_delivery_channels"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_ocdz_delivery_channels,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    /* the status location (ngx_ocdz_status.c) */

    { ngx_string("ocdz_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_ocdz_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_ocdz_module_ctx = {
    ngx_http_ocdz_preconfiguration,        /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_ocdz_create_main_conf,        /* create main configuration */
    ngx_http_ocdz_init_main_conf,          /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ocdz_create_loc_conf,         /* create location configuration */
    ngx_http_ocdz_merge_loc_conf           /* merge location configuration */
};


ngx_module_t  ngx_http_ocdz_module = {
    NGX_MODULE_V1,
    &ngx_http_ocdz_module_ctx,             /* module context */
    ngx_http_ocdz_commands,                /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_ocdz_init_module,             /* init module */
    ngx_http_ocdz_init_process,            /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ocdz_exit_process,            /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_ocdz_preconfiguration(ngx_conf_t *cf)
{
    return ngx_http_ocdz_card_add_variables(cf);
}


static void *
ngx_http_ocdz_create_main_conf(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ocdz_main_conf_t));
    if (omcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     omcf->pg = NULL;
     *     omcf->keyring = NULL;
     *     omcf->api_base = { 0, NULL };
     *     omcf->api_token[] = { 0, NULL };
     *     omcf->api_ca_file = { 0, NULL };
     *     omcf->api_ca_pem = { 0, NULL };
     *     omcf->api_proxy = { 0, NULL };
     *     omcf->key_current_marked = 0;
     *     omcf->has_card_location = 0;
     */

    omcf->pg_conf.pool_size = NGX_CONF_UNSET_UINT;
    omcf->pg_conf.background_max = NGX_CONF_UNSET_UINT;
    omcf->pg_conf.queue_size = NGX_CONF_UNSET_UINT;
    omcf->db_batch = NGX_CONF_UNSET_UINT;
    omcf->db_batch_wait = NGX_CONF_UNSET_MSEC;
    omcf->pg_conf.connect_timeout = NGX_CONF_UNSET_MSEC;
    omcf->pg_conf.query_timeout = NGX_CONF_UNSET_MSEC;
    omcf->pg_conf.statement_timeout = NGX_CONF_UNSET_MSEC;
    omcf->pg_conf.retry_delay = NGX_CONF_UNSET_MSEC;
    omcf->pg_conf.prepared = NGX_CONF_UNSET;

    omcf->api_timeout = NGX_CONF_UNSET_MSEC;
    omcf->api_connect_timeout = NGX_CONF_UNSET_MSEC;

    omcf->poller = NGX_CONF_UNSET;
    omcf->poller_interval = NGX_CONF_UNSET_MSEC;
    omcf->poller_queued_interval = NGX_CONF_UNSET_MSEC;
    omcf->poller_max_backoff = NGX_CONF_UNSET_MSEC;
    omcf->poller_lease = NGX_CONF_UNSET_MSEC;
    omcf->poller_pause = NGX_CONF_UNSET_MSEC;
    omcf->poller_retry_after_max = NGX_CONF_UNSET_MSEC;
    omcf->poller_concurrency = NGX_CONF_UNSET_UINT;
    omcf->poller_not_found_retries = NGX_CONF_UNSET_UINT;
    omcf->poller_backoff_after = NGX_CONF_UNSET_UINT;
    omcf->poller_sync_commit = NGX_CONF_UNSET;

    omcf->card_wait_limit = NGX_CONF_UNSET_UINT;
    omcf->card_wait_recheck = NGX_CONF_UNSET_MSEC;
    omcf->outbox = NGX_CONF_UNSET;
    omcf->outbox_interval = NGX_CONF_UNSET_MSEC;
    omcf->outbox_concurrency = NGX_CONF_UNSET_UINT;
    omcf->outbox_lease = NGX_CONF_UNSET_MSEC;
    omcf->outbox_attempts = NGX_CONF_UNSET_UINT;
    omcf->outbox_backoff = NGX_CONF_UNSET_MSEC;
    omcf->outbox_max_backoff = NGX_CONF_UNSET_MSEC;
    omcf->outbox_sync_commit = NGX_CONF_UNSET;
    omcf->outbox_yield = NGX_CONF_UNSET_MSEC;
    omcf->webhook_timeout = NGX_CONF_UNSET_MSEC;
    omcf->sms_max_parts = NGX_CONF_UNSET_UINT;
    omcf->sms_timeout = NGX_CONF_UNSET_MSEC;
    omcf->smtp_timeout = NGX_CONF_UNSET_MSEC;
    omcf->delivery_channels = NGX_CONF_UNSET_UINT;

    ocdz_instructions_default(&omcf->instructions);

    /* loaded instruction texts are freed with the configuration */

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_ocdz_free_instructions;
    cln->data = &omcf->instructions;

    return omcf;
}


static char *
ngx_http_ocdz_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_ocdz_pg_conf_t  *pgcf;

    pgcf = &omcf->pg_conf;

    ngx_conf_init_uint_value(pgcf->pool_size,
                             NGX_HTTP_OCDZ_DEFAULT_DB_POOL_SIZE);
    ngx_conf_init_uint_value(pgcf->background_max,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_DB_CONNECTIONS);
    ngx_conf_init_uint_value(pgcf->queue_size,
                             NGX_HTTP_OCDZ_DEFAULT_DB_QUEUE);
    ngx_conf_init_msec_value(pgcf->connect_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_DB_CONNECT_TIMEOUT);
    ngx_conf_init_msec_value(pgcf->query_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_DB_QUERY_TIMEOUT);
    ngx_conf_init_msec_value(pgcf->statement_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_DB_STATEMENT_TIMEOUT);
    ngx_conf_init_msec_value(pgcf->retry_delay,
                             NGX_HTTP_OCDZ_DEFAULT_DB_RETRY_DELAY);
    ngx_conf_init_value(pgcf->prepared, NGX_HTTP_OCDZ_DEFAULT_DB_PREPARED);
    ngx_conf_init_uint_value(omcf->db_batch, NGX_HTTP_OCDZ_DEFAULT_DB_BATCH);
    ngx_conf_init_msec_value(omcf->db_batch_wait,
                             NGX_HTTP_OCDZ_DEFAULT_DB_BATCH_WAIT);

    if (pgcf->background_max > pgcf->pool_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_poller_db_connections %ui is more than "
                           "ocdz_db_pool_size %ui",
                           pgcf->background_max, pgcf->pool_size);
        return NGX_CONF_ERROR;
    }

    if (pgcf->password.len && omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_db_password_file is set but ocdz_db is not");
        return NGX_CONF_ERROR;
    }

    if (omcf->keyring && omcf->keyring->nkeys > 1
        && !omcf->key_current_marked)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no current card key: with several "
                           "\"ocdz_card_key\" directives, mark exactly one "
                           "of them \"current\"");
        return NGX_CONF_ERROR;
    }

    if (omcf->api_base.data == NULL) {
        ngx_str_set(&omcf->api_base, NGX_HTTP_OCDZ_DEFAULT_API_BASE);
    }

    ngx_conf_init_msec_value(omcf->api_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_API_TIMEOUT);
    ngx_conf_init_msec_value(omcf->api_connect_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_API_CONNECT_TIMEOUT);

    ngx_conf_init_value(omcf->poller, NGX_HTTP_OCDZ_DEFAULT_POLLER);
    ngx_conf_init_msec_value(omcf->poller_interval,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_INTERVAL);
    ngx_conf_init_msec_value(omcf->poller_queued_interval,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_QUEUED_INTERVAL);
    ngx_conf_init_msec_value(omcf->poller_max_backoff,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_MAX_BACKOFF);
    ngx_conf_init_msec_value(omcf->poller_lease,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_LEASE);
    ngx_conf_init_msec_value(omcf->poller_pause,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_PAUSE);
    ngx_conf_init_msec_value(omcf->poller_retry_after_max,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_RETRY_AFTER_MAX);
    ngx_conf_init_uint_value(omcf->poller_concurrency,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_CONCURRENCY);
    ngx_conf_init_uint_value(omcf->poller_not_found_retries,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_NOT_FOUND_RETRIES);
    ngx_conf_init_uint_value(omcf->poller_backoff_after,
                             NGX_HTTP_OCDZ_DEFAULT_POLLER_BACKOFF_AFTER);
    ngx_conf_init_value(omcf->poller_sync_commit,
                        NGX_HTTP_OCDZ_DEFAULT_POLLER_SYNC_COMMIT);

    ngx_conf_init_uint_value(omcf->card_wait_limit,
                             NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT_LIMIT);
    ngx_conf_init_msec_value(omcf->card_wait_recheck,
                             NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT_RECHECK);

    if (omcf->card_wait_recheck < 100) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_card_wait_recheck must be at least 100ms");
        return NGX_CONF_ERROR;
    }

    if (omcf->status && ngx_ocdz_status_prepare(cf, omcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (omcf->pg && ngx_ocdz_pg_conf_done(cf, omcf->pg) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(omcf->outbox, NGX_HTTP_OCDZ_DEFAULT_OUTBOX);
    ngx_conf_init_msec_value(omcf->outbox_interval,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_INTERVAL);
    ngx_conf_init_uint_value(omcf->outbox_concurrency,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_CONCURRENCY);
    ngx_conf_init_msec_value(omcf->outbox_lease,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_LEASE);
    ngx_conf_init_uint_value(omcf->outbox_attempts,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_ATTEMPTS);
    ngx_conf_init_msec_value(omcf->outbox_backoff,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_BACKOFF);
    ngx_conf_init_msec_value(omcf->outbox_max_backoff,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_MAX_BACKOFF);
    ngx_conf_init_value(omcf->outbox_sync_commit,
                        NGX_HTTP_OCDZ_DEFAULT_OUTBOX_SYNC_COMMIT);
    ngx_conf_init_msec_value(omcf->outbox_yield,
                             NGX_HTTP_OCDZ_DEFAULT_OUTBOX_YIELD);
    ngx_conf_init_msec_value(omcf->webhook_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_WEBHOOK_TIMEOUT);
    ngx_conf_init_uint_value(omcf->sms_max_parts,
                             NGX_HTTP_OCDZ_DEFAULT_SMS_MAX_PARTS);
    ngx_conf_init_msec_value(omcf->sms_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_SMS_TIMEOUT);
    ngx_conf_init_msec_value(omcf->smtp_timeout,
                             NGX_HTTP_OCDZ_DEFAULT_SMTP_TIMEOUT);
    ngx_conf_init_uint_value(omcf->delivery_channels,
                             NGX_HTTP_OCDZ_DEFAULT_DELIVERY_CHANNELS);

    if (omcf->poller) {
        if (ngx_ocdz_poller_prepare(cf, omcf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }

        /* the API's host names, last: the other mistakes are said first */

        omcf->resolve = ngx_pcalloc(cf->pool,
                                    sizeof(ngx_ocdz_resolve_conf_t));
        if (omcf->resolve == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_ocdz_resolve_conf(cf, omcf->resolve, &omcf->api_base,
                                  &omcf->api_proxy)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return ngx_ocdz_outbox_prepare(cf, omcf);
}


static void *
ngx_http_ocdz_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ocdz_loc_conf_t  *olcf;

    olcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ocdz_loc_conf_t));
    if (olcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     olcf->card = NULL;
     *     olcf->session_var = NULL;
     *     olcf->session_cookie = { 0, NULL };
     *     olcf->session_query = { 0, NULL };
     *     olcf->jwt_secret = { 0, NULL };
     *     olcf->jwt_user_claim = { 0, NULL };
     */

    olcf->session = NGX_CONF_UNSET_UINT;
    olcf->session_bearer = NGX_CONF_UNSET;
    olcf->jwt_leeway = NGX_CONF_UNSET;
    olcf->https_only = NGX_CONF_UNSET;
    olcf->trusted_proxies = NGX_CONF_UNSET_PTR;
    olcf->cors_origins = NGX_CONF_UNSET_PTR;
    olcf->stmt_reveal = NGX_CONF_UNSET;
    olcf->stmt_failed = NGX_CONF_UNSET;
    olcf->card_wait = NGX_CONF_UNSET_MSEC;

    return olcf;
}


static char *
ngx_http_ocdz_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ocdz_loc_conf_t *prev = parent;
    ngx_http_ocdz_loc_conf_t *conf = child;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_ocdz_main_conf_t  *omcf;

    /*
     * "if" and "limit_except" blocks in a card location are locations
     * of their own that keep the card handler: they must keep the card
     * too, or the handler runs without one
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (conf->card == NULL && clcf->noname && prev->card) {
        conf->card = prev->card;
        clcf->handler = ngx_http_ocdz_card_handler;
    }

    if (conf->session == NGX_CONF_UNSET_UINT) {
        conf->session = prev->session;
        conf->session_var = prev->session_var;
    }

    ngx_conf_merge_uint_value(conf->session, prev->session,
                              NGX_HTTP_OCDZ_DEFAULT_SESSION);
    ngx_conf_merge_str_value(conf->session_cookie, prev->session_cookie,
                             NGX_HTTP_OCDZ_DEFAULT_SESSION_COOKIE);
    ngx_conf_merge_value(conf->session_bearer, prev->session_bearer,
                         NGX_HTTP_OCDZ_DEFAULT_SESSION_BEARER);
    ngx_conf_merge_str_value(conf->session_query, prev->session_query, "");
    ngx_conf_merge_str_value(conf->jwt_secret, prev->jwt_secret, "");
    ngx_conf_merge_str_value(conf->jwt_user_claim, prev->jwt_user_claim,
                             NGX_HTTP_OCDZ_DEFAULT_JWT_USER_CLAIM);
    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway,
                             NGX_HTTP_OCDZ_DEFAULT_JWT_LEEWAY);
    ngx_conf_merge_value(conf->https_only, prev->https_only,
                         NGX_HTTP_OCDZ_DEFAULT_HTTPS_ONLY);
    ngx_conf_merge_ptr_value(conf->trusted_proxies, prev->trusted_proxies,
                             NULL);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);

    ngx_conf_merge_msec_value(conf->card_wait, prev->card_wait,
                              NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT);

    /* nginx's timers compare 32-bit differences: far below that */

    if (conf->card_wait > 86400000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_card_wait must be at most 24h");
        return NGX_CONF_ERROR;
    }

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_ocdz_module);

    if (conf->card && conf->card_wait) {
        omcf->card_wait_on = 1;
    }

    if (conf->card == NULL || conf->stmt_reveal != NGX_CONF_UNSET) {
        return NGX_CONF_OK;
    }

    if (omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_card\" needs a database: set \"ocdz_db\" "
                           "in the http block");
        return NGX_CONF_ERROR;
    }

    if (omcf->keyring == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_card\" needs a card key: set "
                           "\"ocdz_card_key\" in the http block");
        return NGX_CONF_ERROR;
    }

    if (conf->session == NGX_HTTP_OCDZ_SESSION_JWT
        && conf->jwt_secret.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_session jwt\" needs "
                           "\"ocdz_jwt_secret_file\"");
        return NGX_CONF_ERROR;
    }

    if (conf->session_query.len
        && conf->session != NGX_HTTP_OCDZ_SESSION_DB)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_session_query\" is only used with "
                           "\"ocdz_session db\"");
        return NGX_CONF_ERROR;
    }

    if (conf->session != NGX_HTTP_OCDZ_SESSION_VARIABLE
        && conf->session_bearer == 0 && conf->session_cookie.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the session token has nowhere to come from: "
                           "set \"ocdz_session_cookie\" or turn "
                           "\"ocdz_session_bearer\" on");
        return NGX_CONF_ERROR;
    }

    omcf->has_card_location = 1;

    return ngx_http_ocdz_card_prepare(cf, omcf, conf);
}


/*
 * Called for every new configuration. A process that already runs the
 * module's work is a single process (master_process off) reloading:
 * nginx does not call init_process again, keeps the old cycle's timers
 * and connections, closes the old cycle's log files and serves nothing
 * more (its new cycle has no connections). The work of the old
 * configuration stops here instead of running on with a closed log and
 * no room for a new socket.
 */

static ngx_int_t
ngx_http_ocdz_init_module(ngx_cycle_t *cycle)
{
    if (ngx_http_ocdz_running == NULL) {
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "ocdz: the configuration was reloaded with "
                  "\"master_process off\": the poller and the database "
                  "pool stop; restart nginx to start them again");

    ngx_http_ocdz_stop(ngx_http_ocdz_running);

    return NGX_OK;
}


static ngx_int_t
ngx_http_ocdz_init_process(ngx_cycle_t *cycle)
{
    ngx_http_ocdz_worker_t     *w;
    ngx_http_ocdz_main_conf_t  *omcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    omcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_ocdz_module);
    if (omcf == NULL) {
        return NGX_OK;
    }

    /*
     * nginx makes workers dumpable again just before this hook (for
     * working_directory); a worker that holds card keys must not leave
     * them in a core file.
     */

    if (omcf->keyring && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "prctl(PR_SET_DUMPABLE, 0) failed");
    }

    if (omcf->pg == NULL && !omcf->has_card_location && !omcf->poller) {
        return NGX_OK;
    }

    w = ngx_pcalloc(cycle->pool, sizeof(ngx_http_ocdz_worker_t));
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->cycle = cycle;
    w->omcf = omcf;
    w->log = cycle->log;

    omcf->worker = w;
    ngx_http_ocdz_running = w;

    if (omcf->pg) {
        w->pg = ngx_ocdz_pg_create(cycle, omcf->pg);
        if (w->pg == NULL) {
            goto failed;
        }
    }

    if (omcf->has_card_location || omcf->poller || omcf->outbox) {
        w->cipher = ocdz_cipher_new();
        if (w->cipher == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "ocdz: cannot create the AES-256-GCM context");
            goto failed;
        }
    }

    if (omcf->has_card_location) {
        if (ngx_http_ocdz_card_init_process(w) != NGX_OK) {
            goto failed;
        }
    }

    if (ngx_ocdz_status_init_process(w) != NGX_OK) {
        goto failed;
    }

    if (omcf->poller) {
        w->curl = ngx_ocdz_curl_create(cycle, omcf->poller_concurrency);
        if (w->curl == NULL) {
            goto failed;
        }

        if (ngx_ocdz_poller_init_process(w) != NGX_OK) {
            goto failed;
        }

        if (ngx_http_ocdz_watch(w) != NGX_OK) {
            goto failed;
        }
    }

    if (omcf->card_wait_on && w->pg) {
        if (ngx_http_ocdz_card_wait_init_process(w) != NGX_OK) {
            goto failed;
        }

        if (w->watcher == NULL && ngx_http_ocdz_watch(w) != NGX_OK) {
            goto failed;
        }
    }

    if (omcf->outbox) {
        if (w->curl == NULL) {
            w->curl = ngx_ocdz_curl_create(cycle, omcf->outbox_concurrency);
            if (w->curl == NULL) {
                goto failed;
            }
        }

        if (ngx_ocdz_outbox_init_process(w) != NGX_OK) {
            goto failed;
        }

        if (w->watcher == NULL && ngx_http_ocdz_watch(w) != NGX_OK) {
            goto failed;
        }
    }

    return NGX_OK;

failed:

    ngx_http_ocdz_stop(w);

    return NGX_ERROR;
}


static void
ngx_http_ocdz_exit_process(ngx_cycle_t *cycle)
{
    /* not cycle's main conf: the one running may belong to an older one */

    if (ngx_http_ocdz_running) {
        ngx_http_ocdz_stop(ngx_http_ocdz_running);
    }
}


/* undoes init_process, in the reverse order */

static void
ngx_http_ocdz_stop(ngx_http_ocdz_worker_t *w)
{
    if (w->watcher) {
        ngx_http_ocdz_unwatch(w);
    }

    if (w->outbox) {
        ngx_ocdz_outbox_exit_process(w);
    }

    if (w->poller) {
        ngx_ocdz_poller_exit_process(w);
    }

    if (w->wait) {
        ngx_http_ocdz_card_wait_exit_process(w);
    }

    if (w->status) {
        ngx_ocdz_status_exit_process(w);
    }

    if (w->curl) {
        ngx_ocdz_curl_destroy(w->curl);
        w->curl = NULL;
    }

    if (w->card) {
        ngx_http_ocdz_card_exit_process(w);
    }

    if (w->cipher) {
        ocdz_cipher_free(w->cipher);
        w->cipher = NULL;
    }

    if (w->pg) {
        ngx_ocdz_pg_destroy(w->pg);
        w->pg = NULL;
    }

    w->omcf->worker = NULL;

    if (ngx_http_ocdz_running == w) {
        ngx_http_ocdz_running = NULL;
    }
}


/*
 * nginx tells its idle connections that a graceful shutdown begins
 * (ngx_close_idle_connections(): c->close set, the read handler
 * called), and then exits as soon as only cancelable timers are left.
 * A connection that is only that, without a socket, lets the module
 * hear it too: its fd is -2, not -1, for nginx to look at it.
 */

static ngx_int_t
ngx_http_ocdz_watch(ngx_http_ocdz_worker_t *w)
{
    ngx_connection_t  *c, *saved;

    /* ngx_get_connection() records fd 0 in ngx_cycle->files, if any */

    saved = ngx_cycle->files ? ngx_cycle->files[0] : NULL;

    c = ngx_get_connection(0, w->log);

    if (ngx_cycle->files) {
        ngx_cycle->files[0] = saved;
    }

    if (c == NULL) {
        return NGX_ERROR;
    }

    c->fd = (ngx_socket_t) -2;
    c->idle = 1;
    c->data = w;
    c->log = w->log;
    c->read->log = w->log;
    c->read->handler = ngx_http_ocdz_shutdown;

    w->watcher = c;

    return NGX_OK;
}


static void
ngx_http_ocdz_shutdown(ngx_event_t *ev)
{
    ngx_connection_t        *c;
    ngx_http_ocdz_worker_t  *w;

    c = ev->data;
    w = c->data;

    if (!c->close) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, w->log, 0,
                   "ocdz: graceful shutdown");

    ngx_http_ocdz_unwatch(w);

    if (w->poller) {
        ngx_ocdz_poller_shutdown(w);
    }

    if (w->wait) {
        ngx_http_ocdz_card_wait_shutdown(w);
    }

    if (w->outbox) {
        ngx_ocdz_outbox_shutdown(w);
    }
}


static void
ngx_http_ocdz_unwatch(ngx_http_ocdz_worker_t *w)
{
    ngx_connection_t  *c;

    c = w->watcher;
    w->watcher = NULL;

    /* fd 0 is not ours in ngx_cycle->files: nothing there is touched */
    c->fd = 0;
    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


static char *
ngx_http_ocdz_db(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t  *value;

    if (omcf->pg) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "takes a libpq connection string, not an empty one";
    }

    if (ngx_ocdz_pg_conf_conninfo(cf, &omcf->pg_conf, &value[1])
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    omcf->pg = &omcf->pg_conf;

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_db_password_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t  *value;

    if (omcf->pg_conf.password.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_http_ocdz_read_file(cf, &value[1], 1024, "password", 1,
                                   &omcf->pg_conf.password);
}


static char *
ngx_http_ocdz_card_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    char                 err[128];
    u_char               key[OCDZ_KEY_LEN];
    ngx_int_t            current;
    ngx_str_t           *value, secret;
    ngx_pool_cleanup_t  *cln;

    value = cf->args->elts;

    if (!ocdz_key_id_valid((char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid card key id \"%V\": use 1 to %d "
                           "letters, digits, \"-\" or \"_\"",
                           &value[1], OCDZ_KEY_ID_MAX);
        return NGX_CONF_ERROR;
    }

    current = 0;

    if (cf->args->nelts == 4) {
        if (ngx_strcmp(value[3].data, "current") != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": the only one "
                               "\"ocdz_card_key\" takes is \"current\"",
                               &value[3]);
            return NGX_CONF_ERROR;
        }

        if (omcf->key_current_marked) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "card key \"%V\" is marked current, but "
                               "another key already is", &value[1]);
            return NGX_CONF_ERROR;
        }

        current = 1;
    }

    if (omcf->keyring == NULL) {
        omcf->keyring = ngx_pcalloc(cf->pool, sizeof(ocdz_keyring_t));
        if (omcf->keyring == NULL) {
            return NGX_CONF_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_ocdz_wipe_keyring;
        cln->data = omcf->keyring;
    }

    if (ngx_http_ocdz_read_file(cf, &value[2], 256, "card key", 1, &secret)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ocdz_key_decode((char *) secret.data, secret.len, key, err,
                        sizeof(err))
        != OCDZ_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "card key file \"%V\": %s (a key is 64 hex "
                           "digits, 32 bytes)", &value[2], err);
        return NGX_CONF_ERROR;
    }

    if (ocdz_keyring_add(omcf->keyring, (char *) value[1].data,
                         value[1].len, key, current
                         || omcf->keyring->nkeys == 0, err, sizeof(err))
        != OCDZ_OK)
    {
        ocdz_wipe(key, sizeof(key));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "card key \"%V\": %s",
                           &value[1], err);
        return NGX_CONF_ERROR;
    }

    ocdz_wipe(key, sizeof(key));

    if (current) {
        omcf->key_current_marked = 1;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_instructions_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    char        err[256];
    ngx_str_t  *value, text;

    value = cf->args->elts;

    if (ngx_http_ocdz_read_file(cf, &value[1], OCDZ_INSTR_FILE_MAX,
                                "instructions", 0, &text)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ocdz_instructions_load(&omcf->instructions, (char *) text.data,
                               text.len, err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "instructions file \"%V\": %s", &value[1], err);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A cookie name or a JWT claim name: a token (RFC 6265, RFC 7230), as
 * nothing else could ever match. "" turns the session cookie off.
 */

static char *
ngx_http_ocdz_name_slot(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char       *rv;
    u_char     *p, *last;
    ngx_str_t  *name;

    static u_char  separators[] = "()<>@,;:\\\"/[]?={}";

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    name = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (name->len == 0
        && ngx_strcmp(cmd->name.data, "ocdz_session_cookie") == 0)
    {
        return NGX_CONF_OK;
    }

    last = name->data + name->len;

    for (p = name->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f
            || ngx_strlchr(separators, separators + sizeof(separators) - 1,
                           *p))
        {
            break;
        }
    }

    if (name->len == 0 || p < last) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"%V\" name \"%V\": use letters, digits "
                           "and !#$%%&'*+-.^_`|~", &cmd->name, name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_api_base(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    u_char     *p;
    ngx_str_t  *value, base;
    ngx_url_t   u;

    if (omcf->api_base.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    base = value[1];

    if (base.len < sizeof("https://") - 1
        || ngx_strncasecmp(base.data, (u_char *) "https://",
                           sizeof("https://") - 1)
           != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_base \"%V\" is not an https:// URL",
                           &base);
        return NGX_CONF_ERROR;
    }

    /* user:password@ would show in "nginx -T" and in this message */

    for (p = base.data + sizeof("https://") - 1;
         p < base.data + base.len && *p != '/';
         p++)
    {
        if (*p == '@') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_api_base must not contain credentials "
                               "(\"user:password@\"): the access token goes "
                               "in ocdz_api_token_file");
            return NGX_CONF_ERROR;
        }
    }

    /* ngx_parse_url() would take "unix:/path" for a local socket */

    if (base.len >= sizeof("https://unix:") - 1
        && ngx_strncasecmp(base.data + sizeof("https://") - 1,
                           (u_char *) "unix:", sizeof("unix:") - 1)
           == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_base \"%V\" is malformed: the API is "
                           "reached by host name or address, not by a "
                           "unix socket", &base);
        return NGX_CONF_ERROR;
    }

    /* never into the scheme: "https://" alone must not wrap u.url.len */

    while (base.len > sizeof("https://") - 1
           && base.data[base.len - 1] == '/')
    {
        base.len--;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.len = base.len - (sizeof("https://") - 1);
    u.url.data = base.data + sizeof("https://") - 1;
    u.default_port = 443;
    u.no_resolve = 1;
    u.uri_part = 1;

    if (u.url.len == 0 || ngx_parse_url(cf->pool, &u) != NGX_OK
        || u.host.len == 0 || ngx_strlchr(base.data, base.data + base.len,
                                          '?')
        || ngx_strlchr(base.data, base.data + base.len, '#')
        || ngx_strlchr(base.data, base.data + base.len, ' '))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_base \"%V\" is malformed%s%s", &value[1],
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    omcf->api_base = base;

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_api_token_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    u_char      *p;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (omcf->api_token[0].data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_http_ocdz_read_file(cf, &value[i], 1024, "access token", 1,
                                    &omcf->api_token[i - 1])
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        /* the token goes into an HTTP header: no controls, no spaces */

        for (p = omcf->api_token[i - 1].data;
             p < omcf->api_token[i - 1].data + omcf->api_token[i - 1].len;
             p++)
        {
            if (*p <= 0x20 || *p >= 0x7f) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "access token file \"%V\" must hold one "
                                   "token of printable ASCII characters",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;
}


/* the webhook's HMAC secret: read once, kept for the workers, wiped */

static char *
ngx_http_ocdz_webhook_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t  *value;

    if (omcf->webhook_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_ocdz_read_file(cf, &value[1], OCDZ_WH_SECRET_MAX,
                                "webhook secret", 1, &omcf->webhook_secret)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (omcf->webhook_secret.len < OCDZ_WH_SECRET_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "webhook secret file \"%V\" must hold at least "
                           "%d bytes", &value[1], OCDZ_WH_SECRET_MIN);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "form" or "json" and the gateway's body template (parsed later) */

static char *
ngx_http_ocdz_sms_gateway_body(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t  *value;

    if (omcf->sms_body.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "form") == 0) {
        omcf->sms_body_json = 0;

    } else if (ngx_strcmp(value[1].data, "json") == 0) {
        omcf->sms_body_json = 1;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid body format \"%V\": \"form\" or "
                           "\"json\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (value[2].len == 0) {
        return "needs a body template";
    }

    omcf->sms_body = value[2];

    return NGX_CONF_OK;
}


/* the gateway's token, sent as "Authorization: Bearer <token>" */

static char *
ngx_http_ocdz_sms_gateway_token_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (omcf->sms_token.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_ocdz_read_file(cf, &value[1], 1024, "SMS gateway token", 1,
                                &omcf->sms_token)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (p = omcf->sms_token.data;
         p < omcf->sms_token.data + omcf->sms_token.len;
         p++)
    {
        if (*p <= 0x20 || *p >= 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "SMS gateway token file \"%V\" must hold "
                               "one token of printable ASCII characters",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (omcf->sms_token.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "SMS gateway token file \"%V\" is empty",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* "user:password" on one line; both kept for the workers, wiped */

static char *
ngx_http_ocdz_smtp_credentials_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    u_char              *colon, *p;
    ngx_str_t           *value, text;
    ngx_pool_cleanup_t  *cln;

    if (omcf->smtp_user.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_ocdz_read_file(cf, &value[1], 1024, "SMTP credentials", 1,
                                &text)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    colon = ngx_strlchr(text.data, text.data + text.len, ':');

    for (p = text.data; p < text.data + text.len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            colon = NULL;
            break;
        }
    }

    if (colon == NULL || colon == text.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "SMTP credentials file \"%V\" must hold one "
                           "line \"user:password\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the text stays in the pool (wiped with it): NUL-terminate parts */

    omcf->smtp_user.data = ngx_pnalloc(cf->pool, text.len + 2);
    if (omcf->smtp_user.data == NULL) {
        return NGX_CONF_ERROR;
    }

    omcf->smtp_user.len = colon - text.data;
    p = ngx_cpymem(omcf->smtp_user.data, text.data, omcf->smtp_user.len);
    *p++ = '\0';

    omcf->smtp_password.data = p;
    omcf->smtp_password.len = text.data + text.len - colon - 1;
    p = ngx_cpymem(p, colon + 1, omcf->smtp_password.len);
    *p = '\0';

    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_str_t));
    if (cln == NULL) {
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_ocdz_wipe_str;
    ((ngx_str_t *) cln->data)->data = omcf->smtp_user.data;
    ((ngx_str_t *) cln->data)->len = text.len + 2;

    return NGX_CONF_OK;
}


/*
 * ocdz_mail_template LANG PART FILE, ocdz_sms_template LANG FILE: the
 * file replaces that built-in template; read and parsed here, so that
 * nginx -t names the file, language and part of any mistake (the SMS
 * text is checked against ocdz_sms_max_parts once that is known).
 */

static char *
ngx_http_ocdz_delivery_template(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    int                rc;
    char               err[256];
    u_char             what[64];
    size_t             bad;
    ngx_str_t         *value, *file, text;
    ngx_uint_t         lang, part, sms;
    ocdz_alloc_t       alloc;
    ocdz_tpl_kind_e    kind;
    struct ocdz_tpl_s **tpl;

    static ngx_str_t  langs[3] = {
        ngx_string("en"), ngx_string("fr"), ngx_string("ar")
    };
    static ngx_str_t  parts[3] = {
        ngx_string("subject"), ngx_string("text"), ngx_string("html")
    };
    static const ocdz_tpl_kind_e  kinds[3] = {
        OCDZ_TPL_MAIL_SUBJECT, OCDZ_TPL_MAIL_TEXT, OCDZ_TPL_MAIL_HTML
    };

    value = cf->args->elts;
    sms = (cf->args->nelts == 3);

    for (lang = 0; lang < 3; lang++) {
        if (value[1].len == langs[lang].len
            && ngx_strncmp(value[1].data, langs[lang].data, langs[lang].len)
               == 0)
        {
            break;
        }
    }

    if (lang == 3) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid language \"%V\" in \"%V\": \"en\", "
                           "\"fr\" or \"ar\"", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (sms) {
        part = 0;
        kind = OCDZ_TPL_SMS_TEXT;
        file = &omcf->sms_text_file[lang];
        tpl = &omcf->sms_text_tpl[lang];

    } else {
        for (part = 0; part < 3; part++) {
            if (value[2].len == parts[part].len
                && ngx_strncmp(value[2].data, parts[part].data,
                               parts[part].len)
                   == 0)
            {
                break;
            }
        }

        if (part == 3) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid part \"%V\" in \"%V\": "
                               "\"subject\", \"text\" or \"html\"",
                               &value[2], &cmd->name);
            return NGX_CONF_ERROR;
        }

        kind = kinds[part];
        file = &omcf->mail_tpl_file[lang][part];
        tpl = &omcf->mail_tpl[lang][part];
    }

    /* "ocdz_mail_template fr html": what the messages name */

    if (sms) {
        ngx_snprintf(what, sizeof(what), "%V %V%Z", &cmd->name, &langs[lang]);

    } else {
        ngx_snprintf(what, sizeof(what), "%V %V %V%Z", &cmd->name,
                     &langs[lang], &parts[part]);
    }

    if (file->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" is duplicate (\"%V\" and \"%V\")",
                           what, file, &value[cf->args->nelts - 1]);
        return NGX_CONF_ERROR;
    }

    *file = value[cf->args->nelts - 1];

    if (ngx_http_ocdz_read_file_as_is(cf, file, OCDZ_TPL_TEXT_MAX,
                                      (char *) what, 0, &text)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (!ocdz_utf8_valid(text.data, text.len, &bad)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" is not valid UTF-8 (byte %uz)",
                           what, file, bad + 1);
        return NGX_CONF_ERROR;
    }

    /* the template lives as long as the configuration */

    alloc.alloc = ngx_http_ocdz_palloc;
    alloc.free = NULL;
    alloc.data = cf->pool;

    err[0] = '\0';

    rc = ocdz_tpl_parse(&alloc, kind, (char *) text.data, text.len, tpl, err,
                        sizeof(err));
    if (rc != OCDZ_MSG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s file \"%V\": %s",
                           what, file, err[0] ? err : "cannot parse it");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_ocdz_palloc(void *data, size_t size)
{
    return ngx_palloc(data, size);
}


/* ocdz_delivery_channels email sms | email | sms | none */

static char *
ngx_http_ocdz_delivery_channels(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, bit, none;

    if (omcf->delivery_channels != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    omcf->delivery_channels = 0;
    none = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcmp(value[i].data, "email") == 0) {
            bit = NGX_HTTP_OCDZ_CH_EMAIL;

        } else if (ngx_strcmp(value[i].data, "sms") == 0) {
            bit = NGX_HTTP_OCDZ_CH_SMS;

        } else if (ngx_strcmp(value[i].data, "none") == 0) {
            none = 1;
            continue;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid channel \"%V\" in "
                               "\"ocdz_delivery_channels\": \"email\", "
                               "\"sms\" or \"none\" alone", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (omcf->delivery_channels & bit) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "channel \"%V\" given twice in "
                               "\"ocdz_delivery_channels\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        omcf->delivery_channels |= bit;
    }

    if (none && cf->args->nelts > 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"none\" in \"ocdz_delivery_channels\" "
                           "stands alone");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the CA the SMTP server's certificate is checked against */

static char *
ngx_http_ocdz_ca_pem_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t  *value, *pem;

    pem = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (pem->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_ocdz_read_file(cf, &value[1], 1024 * 1024,
                                (char *) cmd->name.data, 0, pem)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_strnstr(pem->data, "-----BEGIN CERTIFICATE-----", pem->len)
        == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V \"%V\" holds no PEM certificate",
                           &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_api_ca_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    int                     i, n;
    BIO                    *bio;
    ngx_str_t              *value, *file;
    const char             *reason;
    STACK_OF(X509_INFO)    *infos;

    file = &omcf->api_ca_file;

    if (file->data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    *file = value[1];

    if (ngx_conf_full_name(cf->cycle, file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /*
     * Read by the master, like the secrets: workers run as another user
     * and may not read a root-only file. curl gets the PEM from memory
     * (CURLOPT_CAINFO_BLOB); one it could not use would fail every
     * check, so it is parsed the way curl's OpenSSL would, now.
     */

    if (ngx_http_ocdz_read_file(cf, &value[1], 4 * 1024 * 1024, "CA", 0,
                                &omcf->api_ca_pem)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    ERR_clear_error();

    bio = BIO_new_mem_buf(omcf->api_ca_pem.data, (int) omcf->api_ca_pem.len);
    if (bio == NULL) {
        return NGX_CONF_ERROR;
    }

    infos = PEM_X509_INFO_read_bio(bio, NULL, NULL, "");
    BIO_free(bio);

    if (infos == NULL) {
        reason = ERR_reason_error_string(ERR_peek_error());
        ERR_clear_error();
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_ca_file \"%V\" has a malformed PEM "
                           "block (%s)", file,
                           reason ? reason : "unknown error");
        return NGX_CONF_ERROR;
    }

    n = 0;

    for (i = 0; i < sk_X509_INFO_num(infos); i++) {
        if (sk_X509_INFO_value(infos, i)->x509) {
            n++;
        }
    }

    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    ERR_clear_error();

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_ca_file \"%V\" contains no PEM "
                           "certificate", file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_api_proxy(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_main_conf_t *omcf = conf;

    ngx_str_t   *value;
    const char  *err;

    if (omcf->api_proxy.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* a password here would show in nginx -T: say so without echoing it */

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '@')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_api_proxy must not contain credentials "
                           "(\"user:password@\"): they would show in "
                           "\"nginx -T\"");
        return NGX_CONF_ERROR;
    }

    err = ngx_http_ocdz_check_origin(&value[1], ngx_http_ocdz_proxy_schemes,
                                     1);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ocdz_api_proxy \"%V\": it has %s; write "
                           "it as scheme://host[:port], the scheme http, "
                           "https, socks4, socks4a, socks5 or socks5h",
                           &value[1], err);
        return NGX_CONF_ERROR;
    }

    omcf->api_proxy = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_card(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (olcf->card) {
        return "is duplicate";
    }

    value = cf->args->elts;

    olcf->card = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (olcf->card == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = olcf->card;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (olcf->card->lengths == NULL) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"ocdz_card %V\" names one fixed top-up id; "
                           "a capture such as $1 is usual", &value[1]);
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_ocdz_card_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_session(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (olcf->session != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "db") == 0) {
        olcf->session = NGX_HTTP_OCDZ_SESSION_DB;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "jwt") == 0) {
        olcf->session = NGX_HTTP_OCDZ_SESSION_JWT;
        return NGX_CONF_OK;
    }

    if (value[1].data[0] != '$' || value[1].len < 2) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid session source \"%V\": use \"db\", "
                           "\"jwt\" or a $variable", &value[1]);
        return NGX_CONF_ERROR;
    }

    if ((value[1].len > 6 && ngx_strncmp(value[1].data, "$http_", 6) == 0)
        || (value[1].len > 8
            && ngx_strncmp(value[1].data, "$cookie_", 8) == 0)
        || (value[1].len > 5 && ngx_strncmp(value[1].data, "$arg_", 5) == 0)
        || ngx_strcmp(value[1].data, "$args") == 0
        || ngx_strcmp(value[1].data, "$query_string") == 0
        || ngx_strcmp(value[1].data, "$request_uri") == 0
        || ngx_strcmp(value[1].data, "$uri") == 0)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "session variable \"%V\" is controlled by the "
                           "client: anyone can claim any user",
                           &value[1]);
    }

    olcf->session = NGX_HTTP_OCDZ_SESSION_VARIABLE;

    olcf->session_var = ngx_palloc(cf->pool,
                                   sizeof(ngx_http_complex_value_t));
    if (olcf->session_var == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = olcf->session_var;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_session_query(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    u_char     *p, *last;
    ngx_str_t  *value;
    ngx_uint_t  has_param;

    if (olcf->session_query.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* one statement that takes the token as $1 and nothing else */

    has_param = 0;
    last = value[1].data + value[1].len;

    while (last > value[1].data
           && (last[-1] == ';' || last[-1] == ' ' || last[-1] == '\n'
               || last[-1] == '\t' || last[-1] == '\r'))
    {
        last--;
    }

    for (p = value[1].data; p < last; p++) {

        if (*p == ';') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_session_query must be one statement "
                               "(it has a \";\")");
            return NGX_CONF_ERROR;
        }

        if (*p == '$' && p + 1 < last && p[1] >= '0' && p[1] <= '9') {
            if (p[1] != '1' || (p + 2 < last && p[2] >= '0' && p[2] <= '9'))
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "ocdz_session_query may use only $1, "
                                   "the session token");
                return NGX_CONF_ERROR;
            }

            has_param = 1;
        }
    }

    if (!has_param) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_session_query must use $1, the session "
                           "token");
        return NGX_CONF_ERROR;
    }

    olcf->session_query.len = last - value[1].data;
    olcf->session_query.data = ngx_pnalloc(cf->pool,
                                           olcf->session_query.len + 1);
    if (olcf->session_query.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(olcf->session_query.data, value[1].data,
                olcf->session_query.len + 1);

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_jwt_secret_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    char       *rv;
    ngx_str_t  *value;

    if (olcf->jwt_secret.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rv = ngx_http_ocdz_read_file(cf, &value[1], NGX_HTTP_OCDZ_SECRET_MAX,
                                 "JWT secret", 1, &olcf->jwt_secret);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    if (olcf->jwt_secret.len < 32) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "JWT secret file \"%V\" holds %uz bytes; HS256 "
                           "needs at least 32", &value[1],
                           olcf->jwt_secret.len);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_trusted_proxies(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    return ngx_http_ocdz_list(cf, &olcf->trusted_proxies, sizeof(ngx_cidr_t),
                              ngx_http_ocdz_trusted_proxy);
}


static char *
ngx_http_ocdz_cors_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ocdz_loc_conf_t *olcf = conf;

    return ngx_http_ocdz_list(cf, &olcf->cors_origins, sizeof(ngx_str_t),
                              ngx_http_ocdz_cors_origin);
}


/* a directive that takes a list, once per level: each argument parsed */

static char *
ngx_http_ocdz_list(ngx_conf_t *cf, ngx_array_t **list, size_t size,
    ngx_http_ocdz_item_pt item)
{
    void        *elt;
    ngx_str_t   *value;
    ngx_uint_t   i;

    if (*list != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *list = ngx_array_create(cf->pool, cf->args->nelts - 1, size);
    if (*list == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        elt = ngx_array_push(*list);
        if (elt == NULL) {
            return NGX_CONF_ERROR;
        }

        if (item(cf, &value[i], elt) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_trusted_proxy(ngx_conf_t *cf, ngx_str_t *value, void *elt)
{
    ngx_int_t  rc;

    rc = ngx_ptocidr(value, elt);

    if (rc == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid address or network \"%V\"", value);
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DONE) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "low address bits of %V are meaningless", value);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ocdz_cors_origin(ngx_conf_t *cf, ngx_str_t *value, void *elt)
{
    const char  *err;

    /* the Origin header is compared to it as is: no wildcard */

    if (value->len == 1 && value->data[0] == '*') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid origin \"*\" in ocdz_cors_origins: "
                           "a wildcard is not supported, list every "
                           "origin");
        return NGX_CONF_ERROR;
    }

    err = ngx_http_ocdz_check_origin(value, ngx_http_ocdz_origin_schemes, 0);
    if (err) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid origin \"%V\" in ocdz_cors_origins: it "
                           "has %s; write it as http://host[:port] or "
                           "https://host[:port]", value, err);
        return NGX_CONF_ERROR;
    }

    /* browsers leave a default port out of Origin: so do we */

    if (value->len > sizeof("https://:443") - 1
        && ngx_strncasecmp(value->data, (u_char *) "https://", 8) == 0
        && ngx_strncmp(value->data + value->len - 4, ":443", 4) == 0)
    {
        value->len -= 4;

    } else if (value->len > sizeof("http://:80") - 1
               && ngx_strncasecmp(value->data, (u_char *) "http://", 7) == 0
               && ngx_strncmp(value->data + value->len - 3, ":80", 3) == 0)
    {
        value->len -= 3;
    }

    *(ngx_str_t *) elt = *value;

    return NGX_CONF_OK;
}


/*
 * Checks scheme://host[:port], the form of an origin and of a proxy:
 * one of the schemes, a host name or a bracketed IPv6 address, a port
 * of 1 to 65535, and at most a final "/" when slash is set. Returns
 * NULL, or what is wrong, to follow "it has".
 */

static const char *
ngx_http_ocdz_check_origin(ngx_str_t *url, const char **schemes,
    ngx_uint_t slash)
{
    u_char      *p, *host, *last;
    size_t       len;
    ngx_int_t    port;
    ngx_uint_t   i;
#if (NGX_HAVE_INET6)
    u_char       addr6[16];
#endif

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p == 0x7f) {
            return "white space or a control character";
        }
    }

    p = ngx_strlchr(url->data, last, ':');
    if (p == NULL || last - p < 3 || p[1] != '/' || p[2] != '/') {
        return "no scheme";
    }

    len = p - url->data;

    for (i = 0; schemes[i]; i++) {
        if (len == ngx_strlen(schemes[i])
            && ngx_strncasecmp(url->data, (u_char *) schemes[i], len) == 0)
        {
            break;
        }
    }

    if (schemes[i] == NULL) {
        return "an unsupported scheme";
    }

    host = p + 3;

    if (host < last && *host == '[') {
        p = ngx_strlchr(host, last, ']');
        if (p == NULL) {
            return "an invalid IPv6 address (no \"]\")";
        }

#if (NGX_HAVE_INET6)
        if (ngx_inet6_addr(host + 1, p - host - 1, addr6) != NGX_OK) {
            return "an invalid IPv6 address";
        }
#else
        return "an IPv6 address, which this nginx does not support";
#endif

        p++;

    } else {
        for (p = host; p < last; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9')
                  || *p == '-' || *p == '.' || *p == '_'))
            {
                break;
            }
        }

        if (p == host) {
            return (p == last || *p == ':' || *p == '/') ? "no host"
                                                          : "an invalid host";
        }
    }

    if (p < last && *p == ':') {
        host = ++p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        port = ngx_atoi(host, p - host);

        if (port < 1 || port > 65535) {
            return "an invalid port (1 to 65535)";
        }
    }

    if (p == last || (slash && *p == '/' && p + 1 == last)) {
        return NULL;
    }

    if (*p == '/' || *p == '?' || *p == '#') {
        return "a path, a query or a fragment";
    }

    return "an invalid host or port";
}


/*
 * The bounds of a number directive. nginx's ngx_conf_check_num_bounds()
 * logs "value must be between ..." without naming the directive; an
 * error returned here is logged after the directive's name.
 */

static char *
ngx_http_ocdz_check_bounds(ngx_conf_t *cf, void *post, void *data)
{
    ngx_conf_num_bounds_t  *bounds = post;
    ngx_int_t              *np = data;

    u_char  *msg;

    if (*np >= bounds->low && *np <= bounds->high) {
        return NGX_CONF_OK;
    }

    msg = ngx_pnalloc(cf->pool, sizeof("must be between  and , not ")
                                + 3 * NGX_INT_T_LEN);
    if (msg == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_sprintf(msg, "must be between %i and %i, not %i%Z",
                       bounds->low, bounds->high, *np);

    return (char *) msg;
}


/*
 * Reads a small file while the master still runs as root (so 0600 files
 * owned by root work), trims white space around it, and wipes the copy
 * when the configuration is freed (a reload). For a secret, warns when
 * group or others may read the file.
 */

static char *
ngx_http_ocdz_read_file(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    const char *what, ngx_uint_t secret, ngx_str_t *text)
{
    u_char     *start, *end;
    ngx_str_t   path;

    if (ngx_http_ocdz_read_file_as_is(cf, name, max, what, secret, text)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    start = text->data;
    end = text->data + text->len;

    while (start < end && (*start == ' ' || *start == '\t'
                           || *start == '\r' || *start == '\n'))
    {
        start++;
    }

    while (end > start && (end[-1] == ' ' || end[-1] == '\t'
                           || end[-1] == '\r' || end[-1] == '\n'))
    {
        end--;
    }

    if (start == end) {
        path = *name;

        if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s file \"%V\" is empty",
                           what, &path);
        return NGX_CONF_ERROR;
    }

    *end = '\0';

    text->data = start;
    text->len = end - start;

    return NGX_CONF_OK;
}


/* the file as it is (a template): NUL-terminated, without a NUL inside */

static char *
ngx_http_ocdz_read_file_as_is(ngx_conf_t *cf, ngx_str_t *name, size_t max,
    const char *what, ngx_uint_t secret, ngx_str_t *text)
{
    u_char              *buf;
    size_t               size;
    ssize_t              n;
    ngx_fd_t             fd;
    ngx_str_t            path;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    path = *name;

    if (path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "empty %s file name", what);
        return NGX_CONF_ERROR;
    }

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot open %s file \"%V\"", what, &path);
        return NGX_CONF_ERROR;
    }

    buf = NULL;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot stat %s file \"%V\"", what, &path);
        goto failed;
    }

    if (!ngx_is_file(&fi)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" is not a regular file",
                           what, &path);
        goto failed;
    }

    size = (size_t) ngx_file_size(&fi);

    if (size > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" is too large (%uz bytes, at most "
                           "%uz)", what, &path, size, max);
        goto failed;
    }

    if (secret && (fi.st_mode & (S_IRGRP|S_IROTH)))
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "%s file \"%V\" is readable by group or others: "
                           "chmod 600 it", what, &path);
    }

    buf = ngx_pnalloc(cf->pool, size + 1);
    if (buf == NULL) {
        goto failed;
    }

    cln = ngx_pool_cleanup_add(cf->pool, sizeof(ngx_str_t));
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_ocdz_wipe_str;
    ((ngx_str_t *) cln->data)->data = buf;
    ((ngx_str_t *) cln->data)->len = size + 1;

    n = size ? ngx_read_fd(fd, buf, size) : 0;

    if (n == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "cannot read %s file \"%V\"", what, &path);
        goto failed;
    }

    if ((size_t) n != size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" changed while being read",
                           what, &path);
        goto failed;
    }

    ngx_close_file(fd);

    /* the text is used as a C string, too: it would be cut short */

    if (ngx_strlchr(buf, buf + size, '\0')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s file \"%V\" contains a NUL byte", what, &path);
        return NGX_CONF_ERROR;
    }

    buf[size] = '\0';

    text->data = buf;
    text->len = size;

    return NGX_CONF_OK;

failed:

    ngx_close_file(fd);
    return NGX_CONF_ERROR;
}


static void
ngx_http_ocdz_wipe_str(void *data)
{
    ngx_str_t  *s = data;

    ocdz_wipe(s->data, s->len);
}


static void
ngx_http_ocdz_wipe_keyring(void *data)
{
    ocdz_keyring_wipe(data);
}


static void
ngx_http_ocdz_free_instructions(void *data)
{
    ocdz_instructions_free(data);
}
