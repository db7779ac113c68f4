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


/*
 * Every directive's default, set here and nowhere else. One line per
 * directive: the macro is named after the directive (ocdz_db_pool_size:
 * NGX_HTTP_OCDZ_DEFAULT_DB_POOL_SIZE), the comment gives the default as
 * nginx.conf and README.md write it; a string default is its own text.
 * Directives without a default (ocdz_db, ocdz_card_key...) are absent.
 */

#define NGX_HTTP_OCDZ_DEFAULT_DB_POOL_SIZE              4       /* 4 */
#define NGX_HTTP_OCDZ_DEFAULT_DB_QUEUE                  128     /* 128 */
#define NGX_HTTP_OCDZ_DEFAULT_DB_BATCH                  16      /* 16 */
#define NGX_HTTP_OCDZ_DEFAULT_DB_BATCH_WAIT             1       /* 1ms */
#define NGX_HTTP_OCDZ_DEFAULT_DB_CONNECT_TIMEOUT        3000    /* 3s */
#define NGX_HTTP_OCDZ_DEFAULT_DB_QUERY_TIMEOUT          5000    /* 5s */
#define NGX_HTTP_OCDZ_DEFAULT_DB_STATEMENT_TIMEOUT      4000    /* 4s */
#define NGX_HTTP_OCDZ_DEFAULT_DB_RETRY_DELAY            1000    /* 1s */
#define NGX_HTTP_OCDZ_DEFAULT_DB_PREPARED               1       /* on */
#define NGX_HTTP_OCDZ_DEFAULT_API_BASE         "https://api.oneclickdz.com"
#define NGX_HTTP_OCDZ_DEFAULT_API_TIMEOUT               15000   /* 15s */
#define NGX_HTTP_OCDZ_DEFAULT_API_CONNECT_TIMEOUT       5000    /* 5s */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER                    0       /* off */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_INTERVAL           5000    /* 5s */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_BACKOFF_AFTER      60      /* 60 */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_MAX_BACKOFF        600000  /* 10m */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_QUEUED_INTERVAL    7200000 /* 2h */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_LEASE              60000   /* 60s */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_PAUSE              60000   /* 60s */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_RETRY_AFTER_MAX    600000  /* 10m */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_CONCURRENCY        16      /* 16 */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_DB_CONNECTIONS     1       /* 1 */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_SYNC_COMMIT        0       /* off */
#define NGX_HTTP_OCDZ_DEFAULT_POLLER_NOT_FOUND_RETRIES  5       /* 5 */
#define NGX_HTTP_OCDZ_DEFAULT_SESSION      NGX_HTTP_OCDZ_SESSION_DB  /* db */
#define NGX_HTTP_OCDZ_DEFAULT_SESSION_COOKIE            "ocdz_session"
#define NGX_HTTP_OCDZ_DEFAULT_SESSION_BEARER            1       /* on */
#define NGX_HTTP_OCDZ_DEFAULT_JWT_USER_CLAIM            "sub"
#define NGX_HTTP_OCDZ_DEFAULT_JWT_LEEWAY                30      /* 30s */
#define NGX_HTTP_OCDZ_DEFAULT_HTTPS_ONLY                0       /* off */
#define NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT                 0       /* 0s */
#define NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT_LIMIT           1024    /* 1024 */
#define NGX_HTTP_OCDZ_DEFAULT_CARD_WAIT_RECHECK         10000   /* 10s */
/* the delivery outbox (ngx_ocdz_outbox.c, ngx_ocdz_outbox_conf.c) */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX                    0       /* off */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_INTERVAL           1000    /* 1s */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_CONCURRENCY        8       /* 8 */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_LEASE              60000   /* 60s */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_ATTEMPTS           8       /* 8 */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_BACKOFF            10000   /* 10s */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_MAX_BACKOFF        3600000 /* 1h */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_SYNC_COMMIT        0       /* off */
#define NGX_HTTP_OCDZ_DEFAULT_OUTBOX_YIELD              100     /* 100ms */
#define NGX_HTTP_OCDZ_DEFAULT_WEBHOOK_TIMEOUT           10000   /* 10s */
#define NGX_HTTP_OCDZ_DEFAULT_SMS_MAX_PARTS             2       /* 2 */
#define NGX_HTTP_OCDZ_DEFAULT_SMS_TIMEOUT               10000   /* 10s */
#define NGX_HTTP_OCDZ_DEFAULT_SMTP_TIMEOUT              30000   /* 30s */
/* what an order's NULL channels means (ngx_ocdz_outbox.c) */
#define NGX_HTTP_OCDZ_DEFAULT_DELIVERY_CHANNELS  0x03   /* email sms */


/* ocdz_delivery_channels: bits (the default 0x03 is both) */
#define NGX_HTTP_OCDZ_CH_EMAIL          0x01
#define NGX_HTTP_OCDZ_CH_SMS            0x02


/* the poller's statements, by what they write (ngx_ocdz_poller.c) */
#define NGX_HTTP_OCDZ_POLLER_STMTS      8

/* the outbox sender's: the lease and the outcome */
#define NGX_HTTP_OCDZ_OUTBOX_STMTS      2


typedef struct ngx_http_ocdz_worker_s  ngx_http_ocdz_worker_t;
typedef struct ngx_ocdz_resolve_conf_s  ngx_ocdz_resolve_conf_t;
typedef struct ngx_ocdz_smtp_conf_s  ngx_ocdz_smtp_conf_t;


typedef struct {
    ngx_ocdz_pg_conf_t        *pg;            /* NULL: no ocdz_db, else
                                                 &pg_conf */
    ngx_ocdz_pg_conf_t         pg_conf;
    ngx_uint_t                 db_batch;      /* reveals per statement */
    ngx_msec_t                 db_batch_wait;
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
    ngx_uint_t                 poller_stmts[NGX_HTTP_OCDZ_POLLER_STMTS];

    ngx_flag_t                 has_card_location;

    /* waiting for the card (ngx_ocdz_card_wait.c) */
    ngx_uint_t                 card_wait_limit;     /* per worker */
    ngx_msec_t                 card_wait_recheck;   /* not listening */
    ngx_flag_t                 card_wait_on;        /* some location */
    /* the delivery outbox and its channels */
    ngx_flag_t                 outbox;
    ngx_msec_t                 outbox_interval;
    ngx_uint_t                 outbox_concurrency;   /* per worker */
    ngx_msec_t                 outbox_lease;
    ngx_uint_t                 outbox_attempts;
    ngx_msec_t                 outbox_backoff;       /* the first retry's
                                                        delay, doubled */
    ngx_msec_t                 outbox_max_backoff;
    ngx_flag_t                 outbox_sync_commit;   /* off: leases and
                                                        outcomes commit
                                                        asynchronously */
    ngx_msec_t                 outbox_yield;         /* leases at least so
                                                        far apart while
                                                        reveals run, 0:
                                                        never */
    ngx_uint_t                 outbox_stmts[NGX_HTTP_OCDZ_OUTBOX_STMTS];
    ngx_str_t                  webhook_url;          /* empty: none */
    ngx_str_t                  webhook_secret;       /* secret, from a
                                                        file */
    ngx_msec_t                 webhook_timeout;
    ngx_str_t                  sms_url;              /* empty: none */
    ngx_uint_t                 sms_body_json;        /* else form */
    ngx_str_t                  sms_body;             /* the template */
    struct ocdz_tpl_s         *sms_body_tpl;
    struct ocdz_tpl_s         *sms_text_tpl[3];     /* en, fr, ar */
    ngx_str_t                  sms_token;            /* secret, from a
                                                        file */
    ngx_str_t                  sms_sender;
    ngx_str_t                  sms_reply_id;         /* JSON path */
    ngx_uint_t                 sms_max_parts;
    ngx_msec_t                 sms_timeout;
    ngx_str_t                  smtp_url;             /* empty: none */
    ngx_str_t                  smtp_user;            /* secret, from a */
    ngx_str_t                  smtp_password;        /* file */
    ngx_str_t                  smtp_ca_pem;          /* the CA's PEM */
    ngx_str_t                  outbox_ca_pem;        /* webhook, SMS */
    ngx_msec_t                 smtp_timeout;
    ngx_ocdz_smtp_conf_t      *smtp;                 /* the client's, from
                                                        the above */
    ngx_str_t                  mail_from;
    ngx_str_t                  mail_from_name;
    ngx_str_t                  mail_reply_to;
    ngx_str_t                  mail_domain;          /* of Message-ID */
    struct ocdz_mail_conf_s   *mail_conf;            /* From, Reply-To,
                                                        Message-ID domain */
    struct ocdz_tpl_s         *mail_tpl[3][3];      /* language: subject,
                                                        text, HTML */
    /* templates from files, the default channels */
    ngx_str_t                  mail_tpl_file[3][3];  /* empty: built-in */
    ngx_str_t                  sms_text_file[3];
    ngx_uint_t                 delivery_channels;    /* for NULL channels:
                                                        NGX_HTTP_OCDZ_CH_* */
    /* ocdz_status (ngx_ocdz_status.c) */
    ngx_shm_zone_t            *status;        /* NULL: no ocdz_status */
    ngx_int_t                  status_stmt;   /* the backlog query, or
                                                 NGX_ERROR */
    /* the API's host names (ngx_ocdz_resolve.c): NULL, no poller */
    ngx_ocdz_resolve_conf_t   *resolve;
    /* the outbox URLs' host names (ngx_ocdz_resolve.c): NULL, none */
    ngx_ocdz_resolve_conf_t   *outbox_resolve;
    ngx_int_t                  outbox_hosts[3];  /* of the webhook, SMS,
                                                    SMTP URLs: the name's
                                                    index, -1 none */

    /* this worker process's run time: set by init_process */
    ngx_http_ocdz_worker_t    *worker;
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

    ngx_msec_t                 card_wait;     /* the longest wait=, 0 off */

    ngx_int_t                  stmt_reveal;   /* statement indexes */
    ngx_int_t                  stmt_failed;
} ngx_http_ocdz_loc_conf_t;


/*
 * What one worker process runs, made by init_process for its cycle and
 * undone by exit_process: reachable from the main configuration, and
 * handed to each part, which passes its own context in ev->data.
 */
struct ngx_http_ocdz_worker_s {
    ngx_cycle_t                   *cycle;
    ngx_http_ocdz_main_conf_t     *omcf;
    ngx_log_t                     *log;
    ngx_ocdz_pg_pool_t            *pg;        /* NULL: no ocdz_db */
    ocdz_cipher_t                 *cipher;    /* AES-256-GCM: the card
                                                 endpoint opens, the
                                                 poller seals */
    struct ngx_http_ocdz_card_s   *card;      /* the card endpoint's */
    struct ngx_ocdz_curl_s        *curl;      /* NULL: no poller */
    struct ngx_ocdz_poller_s      *poller;
    struct ngx_ocdz_outbox_s      *outbox;    /* NULL: ocdz_outbox off */
    ngx_connection_t              *watcher;   /* hears a graceful
                                                 shutdown begin */
    struct ngx_http_ocdz_wait_s   *wait;      /* NULL: no ocdz_card_wait */
    struct ngx_ocdz_status_worker_s  *status; /* NULL: no ocdz_status */
};


extern ngx_module_t  ngx_http_ocdz_module;


#endif /* _NGX_HTTP_OCDZ_MODULE_H_INCLUDED_ */
