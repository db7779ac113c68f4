
/*
 * The card endpoint.
 *
 * A short state machine: check the method and the scheme, find the
 * session token (or the user, for JWT and trusted-variable sessions) and
 * the top-up id without touching the database, then run one statement
 * that resolves the session, checks ownership, loads the order and
 * writes the audit row (a second one only when the cookie's token is no
 * session and a Bearer token is there too); then open the card, write
 * the JSON straight into the output buffers and finalize. Every buffer
 * that held the card is wiped when the request's pool goes.
 *
 * With ?wait=N (ocdz_card_wait), a GET whose order is not ready yet is
 * held (ngx_ocdz_card_wait.c) and looks again, with the same statement,
 * when it is told to; the look that gives the answer audits it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <yajl/yajl_gen.h>

#include "ngx_ocdz_card.h"
#include "ngx_ocdz_card_wait.h"
#include "ngx_ocdz_status.h"
#include "ocdz_jwt.h"
#include "ocdz_session.h"
#include "ocdz_text.h"
#include "ocdz_upstream.h"


#define NGX_HTTP_OCDZ_OUT_CHUNK     1024    /* a small allocation: from
                                               the pool's own blocks */
#define NGX_HTTP_OCDZ_UA_MAX        512
#define NGX_HTTP_OCDZ_USER_MAX      128
#define NGX_HTTP_OCDZ_RETRY_AFTER   "2"


/* the columns the reveal statement returns */
#define NGX_HTTP_OCDZ_COL_USER      0
#define NGX_HTTP_OCDZ_COL_STATUS    1
#define NGX_HTTP_OCDZ_COL_TYPE      2
#define NGX_HTTP_OCDZ_COL_NUMBER    3
#define NGX_HTTP_OCDZ_COL_VALUE     4
#define NGX_HTTP_OCDZ_COL_CARD      5
#define NGX_HTTP_OCDZ_COL_TRANS     6
#define NGX_HTTP_OCDZ_COL_DATE      7
#define NGX_HTTP_OCDZ_COL_REFUND    8
#define NGX_HTTP_OCDZ_COL_FIRST     9
#define NGX_HTTP_OCDZ_COL_EVENT     10
#define NGX_HTTP_OCDZ_COL_STAMP     11      /* delivered_at, if this
                                               reveal set it */
#define NGX_HTTP_OCDZ_NCOLS         12


typedef enum {
    NGX_HTTP_OCDZ_R_NONE = 0,
    NGX_HTTP_OCDZ_R_REVEALED,
    NGX_HTTP_OCDZ_R_HEAD,
    NGX_HTTP_OCDZ_R_PREFLIGHT,
    NGX_HTTP_OCDZ_R_SESSION_REQUIRED,
    NGX_HTTP_OCDZ_R_INVALID_TOPUP_ID,
    NGX_HTTP_OCDZ_R_NOT_FOUND,
    NGX_HTTP_OCDZ_R_NOT_READY,
    NGX_HTTP_OCDZ_R_REFUNDED,
    NGX_HTTP_OCDZ_R_DELIVERY_FAILED,
    NGX_HTTP_OCDZ_R_METHOD_NOT_ALLOWED,
    NGX_HTTP_OCDZ_R_HTTPS_REQUIRED,
    NGX_HTTP_OCDZ_R_UNAVAILABLE,
    NGX_HTTP_OCDZ_R_INTERNAL_ERROR,
    NGX_HTTP_OCDZ_R_INVALID_WAIT
} ngx_http_ocdz_result_e;


typedef struct {
    ngx_uint_t                 status;
    ngx_str_t                  code;        /* $ocdz_result, "error" */
    const char                *message;
} ngx_http_ocdz_outcome_t;


/* one status and code per outcome, in one place */

static ngx_http_ocdz_outcome_t  ngx_http_ocdz_outcomes[] = {
    { 0, ngx_null_string, NULL },
    { NGX_HTTP_OK, ngx_string("CARD_REVEALED"), NULL },
    { NGX_HTTP_OK, ngx_string("CARD_READY"), NULL },
    { NGX_HTTP_NO_CONTENT, ngx_string("PREFLIGHT"), NULL },
    { NGX_HTTP_UNAUTHORIZED, ngx_string("SESSION_REQUIRED"),
      "A valid session is required." },
    { NGX_HTTP_BAD_REQUEST, ngx_string("INVALID_TOPUP_ID"),
      "The top-up id must be 24 hexadecimal characters." },
    { NGX_HTTP_NOT_FOUND, ngx_string("ORDER_NOT_FOUND"),
      "No such order." },
    { NGX_HTTP_CONFLICT, ngx_string("ORDER_NOT_READY"),
      "The order is not fulfilled yet." },
    { 410, ngx_string("ORDER_REFUNDED"),
      "The order failed and was refunded." },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, ngx_string("DELIVERY_FAILED"),
      "The card cannot be delivered now; support has been told." },
    { NGX_HTTP_NOT_ALLOWED, ngx_string("METHOD_NOT_ALLOWED"),
      "Use GET or HEAD." },
    { NGX_HTTP_FORBIDDEN, ngx_string("HTTPS_REQUIRED"),
      "Use HTTPS." },
    { NGX_HTTP_SERVICE_UNAVAILABLE, ngx_string("SERVICE_UNAVAILABLE"),
      "The service is temporarily unavailable; try again shortly." },
    { NGX_HTTP_INTERNAL_SERVER_ERROR, ngx_string("INTERNAL_ERROR"),
      "Internal error." },
    { NGX_HTTP_BAD_REQUEST, ngx_string("INVALID_WAIT"),
      "wait must be a whole number of seconds." }
};


typedef struct {
    ngx_http_request_t        *request;
    ngx_http_ocdz_worker_t    *worker;
    ngx_ocdz_pg_query_t        query;

    ngx_str_t                  topup_id;    /* lowercase, 24 hex */
    ngx_str_t                  user_id;     /* known before the query for
                                               JWT and variable sessions,
                                               after it for db sessions */
    ngx_str_t                  plain;       /* the opened card */
    ngx_str_t                  client_ip;
    ngx_str_t                  user_agent;
    ngx_str_t                  other;       /* the Bearer token, when the
                                               cookie has one too: tried
                                               if the cookie's is no
                                               session */
    u_char                     token_hash[SHA256_DIGEST_LENGTH * 2 + 1];

    ngx_http_ocdz_result_e     result;
    int                        row;         /* ours in the result */
    ngx_chain_t               *out;         /* the JSON body */
    ngx_chain_t               *out_last;
    ngx_int_t                  out_error;

    unsigned                   waiting:1;   /* a query is running */

    /* ocdz_card_wait: the request may be held for its card */
    ngx_msec_t                 wait;        /* 0: answer at once */
    ngx_http_ocdz_waiter_t     waiter;
    unsigned                   final_look:1;
} ngx_http_ocdz_ctx_t;


static ngx_int_t ngx_http_ocdz_https_ok(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf);
static ngx_int_t ngx_http_ocdz_get_topup_id(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx);
static ngx_int_t ngx_http_ocdz_session_params(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx);
static ngx_int_t ngx_http_ocdz_jwt_user(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx,
    ngx_str_t *token);
static ngx_int_t ngx_http_ocdz_token_param(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx,
    ngx_str_t *token);
static ngx_int_t ngx_http_ocdz_get_token(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_str_t *token, ngx_str_t *other);
static ngx_int_t ngx_http_ocdz_retry_session(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx);
static ngx_table_elt_t *ngx_http_ocdz_find_header(ngx_http_request_t *r,
    const char *name, size_t len);
static ngx_int_t ngx_http_ocdz_copy(ngx_http_request_t *r, ngx_str_t *dst,
    u_char *data, size_t len);
static ngx_int_t ngx_http_ocdz_copy_text(ngx_http_request_t *r,
    ngx_str_t *dst, u_char *data, size_t len);
static ngx_int_t ngx_http_ocdz_user_valid(u_char *p, size_t len);
static void ngx_http_ocdz_revealed(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_http_ocdz_get_wait(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx);
static ngx_int_t ngx_http_ocdz_hold(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_http_ocdz_look(ngx_http_ocdz_waiter_t *wt,
    ngx_uint_t final);
static void ngx_http_ocdz_wait_read(ngx_http_request_t *r);
static void ngx_http_ocdz_failure_recorded(ngx_ocdz_pg_query_t *q,
    ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_http_ocdz_open_card(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, PGresult *res);
static ngx_int_t ngx_http_ocdz_card_json(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, PGresult *res, u_char *card, size_t len);
static ngx_int_t ngx_http_ocdz_finish(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, ngx_http_ocdz_result_e result, PGresult *res);
static ngx_int_t ngx_http_ocdz_error_json(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, ngx_http_ocdz_outcome_t *oc, PGresult *res);
static ngx_int_t ngx_http_ocdz_send(ngx_http_request_t *r,
    ngx_http_ocdz_ctx_t *ctx, ngx_uint_t status);
static ngx_int_t ngx_http_ocdz_add_header(ngx_http_request_t *r,
    const char *name, const char *value);
static ngx_int_t ngx_http_ocdz_cors(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_uint_t preflight);
static void ngx_http_ocdz_out(void *data, const char *s, size_t len);
static void ngx_http_ocdz_reset_out(ngx_http_ocdz_ctx_t *ctx);
static void ngx_http_ocdz_cleanup(void *data);
static void *ngx_http_ocdz_yajl_malloc(void *ctx, size_t size);
static void *ngx_http_ocdz_yajl_realloc(void *ctx, void *p, size_t size);
static void ngx_http_ocdz_yajl_free(void *ctx, void *p);
static ngx_int_t ngx_http_ocdz_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_ocdz_vars[] = {

    { ngx_string("ocdz_user_id"), NULL, ngx_http_ocdz_variable,
      offsetof(ngx_http_ocdz_ctx_t, user_id), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ocdz_topup_id"), NULL, ngx_http_ocdz_variable,
      offsetof(ngx_http_ocdz_ctx_t, topup_id), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ocdz_result"), NULL, ngx_http_ocdz_variable,
      (uintptr_t) -1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static yajl_alloc_funcs  ngx_http_ocdz_yajl_alloc = {
    ngx_http_ocdz_yajl_malloc,
    ngx_http_ocdz_yajl_realloc,
    ngx_http_ocdz_yajl_free,
    NULL
};


/*
 * The worker's SHA-256 of session tokens, set up once (SHA256() would
 * fetch the digest anew); its AES-256-GCM context is the worker's.
 */

struct ngx_http_ocdz_card_s {
    EVP_MD                    *sha256;
    EVP_MD_CTX                *sha256_ctx;
};


/*
 * The reveal statement, written once, in its array form: every
 * parameter is an array with one element per reveal, and so is the
 * answer, row n for element n, the user NULL when there is no session.
 * A reveal sent alone runs the same text on one-element arrays
 * (ngx_ocdz_pg_add_batch()). The statement resolves the session,
 * checks ownership, loads the order and writes the audit row: a card is
 * never sent unless its audit row is committed, and all the cards of a
 * batch only after its one commit. The order that does not exist and
 * the order of someone else take the same path and give the same
 * answer. The first reveal marks the order delivered and returns the
 * stamp it set: a card that then does not open takes it back
 * (FAILED_SQL).
 *
 *   $1 session key   $2 top-up id   $3 client address   $4 user agent
 *   $5 "GET" or "HEAD": HEAD records no release; "WAIT": a GET that
 *      will be held if the order is not ready yet (not final), which
 *      records no ORDER_NOT_READY row then: the answer that ends the
 *      wait is audited, by the look that gives it
 */

#define NGX_HTTP_OCDZ_IN_SQL                                                  \
    "WITH i AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[],"     \
    " $4::text[], $5::text[]) WITH ORDINALITY"                                \
    " AS i(k, topup_id, ip, ua, m, n))"

#define NGX_HTTP_OCDZ_SESSION_DB_SQL                                          \
    ", s AS (SELECT i.*, (SELECT x.user_id FROM ocdz.sessions x"              \
    " WHERE x.token_hash = decode(i.k, 'hex') AND x.expires_at > now()"       \
    " LIMIT 1) AS user_id FROM i)"

#define NGX_HTTP_OCDZ_SESSION_USER_SQL                                        \
    ", s AS (SELECT i.*, i.k AS user_id FROM i)"

/*
 * The sysadmin's own session query takes the token as a plain $1 (its
 * type is the query's to decide): its reveals go one by one. A NULL or
 * empty user is no session (401).
 */

#define NGX_HTTP_OCDZ_OWN_IN_SQL                                              \
    "WITH i AS (SELECT * FROM unnest($2::text[], $3::text[], $4::text[],"     \
    " $5::text[]) WITH ORDINALITY AS i(topup_id, ip, ua, m, n))"              \
    ", s0(user_id) AS ("

#define NGX_HTTP_OCDZ_OWN_SESSION_SQL                                         \
    "), s AS (SELECT i.*, (SELECT s0.user_id::text FROM s0"                   \
    " WHERE s0.user_id IS NOT NULL AND s0.user_id::text <> '' LIMIT 1)"       \
    " AS user_id FROM i)"

#define NGX_HTTP_OCDZ_REVEAL_SQL                                              \
    ", r AS (SELECT s.n, s.topup_id, s.ip, s.ua, s.m, s.user_id, o.status,"   \
    " o.type, o.number, o.value, o.card_enc, o.num_trans,"                    \
    " o.date_traitement, o.refund_message, o.delivered_at IS NULL AS first,"  \
    " CASE WHEN s.user_id IS NULL THEN NULL"                                  \
    " WHEN o.topup_id IS NULL THEN 'ORDER_NOT_FOUND'"                         \
    " WHEN o.status = 'FULFILLED' AND o.card_enc IS NULL"                     \
    " THEN 'DELIVERY_FAILED'"                                                 \
    " WHEN o.status = 'FULFILLED' AND s.m = 'HEAD' THEN NULL"                 \
    " WHEN o.status = 'FULFILLED' THEN 'CARD_REVEALED'"                       \
    " WHEN o.status = 'REFUNDED' THEN 'ORDER_REFUNDED'"                       \
    " ELSE 'ORDER_NOT_READY' END AS event"                                    \
    " FROM s LEFT JOIN ocdz.orders o"                                         \
    " ON o.topup_id = s.topup_id AND o.user_id = s.user_id)"                  \
    ", a AS (INSERT INTO ocdz.audit"                                          \
    " (event, topup_id, user_id, method, client_ip, user_agent, detail)"      \
    " SELECT r.event, r.topup_id, r.user_id, 'in-app', r.ip, r.ua,"           \
    " CASE WHEN r.event = 'ORDER_NOT_READY' THEN r.status END"                \
    " FROM r WHERE r.event IS NOT NULL"                                       \
    " AND NOT (r.m = 'WAIT' AND r.event = 'ORDER_NOT_READY'"                  \
    " AND r.status <> 'ERROR') ORDER BY r.n)"                                 \
    ", d AS (UPDATE ocdz.orders o SET delivered_at = now() FROM r"            \
    " WHERE o.topup_id = r.topup_id AND o.delivered_at IS NULL"               \
    " AND r.event = 'CARD_REVEALED'"                                          \
    " RETURNING o.topup_id, extract(epoch FROM o.delivered_at) AS stamp)"     \
    " SELECT r.user_id, r.status, r.type, r.number, r.value, r.card_enc,"     \
    " r.num_trans, r.date_traitement, r.refund_message, r.first, r.event,"    \
    " d.stamp FROM r LEFT JOIN d"                                             \
    " ON d.topup_id = r.topup_id AND r.event = 'CARD_REVEALED' ORDER BY r.n"

/*
 * A reveal whose card does not open: its audit row, and the delivery
 * mark taken back, but only the one that reveal set ($6, the stamp it
 * was given; NULL when it set none), so that a mark set since by
 * another reveal stays.
 *
 *   $1 top-up id   $2 user   $3 client address   $4 user agent
 *   $5 detail      $6 the stamp, as extract(epoch ...) gave it
 */

#define NGX_HTTP_OCDZ_FAILED_SQL                                              \
    "WITH a AS (INSERT INTO ocdz.audit"                                       \
    " (event, topup_id, user_id, method, client_ip, user_agent, detail)"      \
    " VALUES ('CARD_REVEAL_FAILED', $1, $2, 'in-app', $3, $4, $5))"           \
    " UPDATE ocdz.orders SET delivered_at = NULL"                             \
    " WHERE topup_id = $1 AND extract(epoch FROM delivered_at) = $6::numeric"


char *
ngx_http_ocdz_card_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf,
    ngx_http_ocdz_loc_conf_t *olcf)
{
    u_char                *sql, *p;
    size_t                 len;
    const char            *reveal;
    ngx_ocdz_pg_gather_t   gather;

    /*
     * Nothing is remembered here between calls: ngx_ocdz_pg_add_stmt()
     * gives locations that share a statement the same index, and every
     * configuration (a reload after a refused one too) builds its own
     * list from scratch.
     */

    olcf->stmt_failed = ngx_ocdz_pg_add_stmt(cf, omcf->pg,
                                             NGX_HTTP_OCDZ_FAILED_SQL, 6);
    if (olcf->stmt_failed == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (olcf->session == NGX_HTTP_OCDZ_SESSION_DB
        && olcf->session_query.len)
    {
        len = sizeof(NGX_HTTP_OCDZ_OWN_IN_SQL) - 1
              + olcf->session_query.len
              + sizeof(NGX_HTTP_OCDZ_OWN_SESSION_SQL) - 1
              + sizeof(NGX_HTTP_OCDZ_REVEAL_SQL);

        sql = ngx_pnalloc(cf->pool, len);
        if (sql == NULL) {
            return NGX_CONF_ERROR;
        }

        p = ngx_cpymem(sql, NGX_HTTP_OCDZ_OWN_IN_SQL,
                       sizeof(NGX_HTTP_OCDZ_OWN_IN_SQL) - 1);
        p = ngx_cpymem(p, olcf->session_query.data, olcf->session_query.len);
        p = ngx_cpymem(p, NGX_HTTP_OCDZ_OWN_SESSION_SQL,
                       sizeof(NGX_HTTP_OCDZ_OWN_SESSION_SQL) - 1);
        ngx_memcpy(p, NGX_HTTP_OCDZ_REVEAL_SQL,
                   sizeof(NGX_HTTP_OCDZ_REVEAL_SQL));

        olcf->stmt_reveal = ngx_ocdz_pg_add_batch(cf, omcf->pg, (char *) sql,
                                                  5, NULL);

    } else {
        reveal = (olcf->session == NGX_HTTP_OCDZ_SESSION_DB)
                 ? NGX_HTTP_OCDZ_IN_SQL NGX_HTTP_OCDZ_SESSION_DB_SQL
                   NGX_HTTP_OCDZ_REVEAL_SQL
                 : NGX_HTTP_OCDZ_IN_SQL NGX_HTTP_OCDZ_SESSION_USER_SQL
                   NGX_HTTP_OCDZ_REVEAL_SQL;

        /* ocdz_db_batch and ocdz_db_batch_wait: Nagle's rule */

        gather.max = omcf->db_batch;
        gather.enough = omcf->db_batch;
        gather.wait = omcf->db_batch_wait;
        gather.nagle = 1;

        olcf->stmt_reveal = ngx_ocdz_pg_add_batch(cf, omcf->pg, reveal, 5,
                                                  &gather);
    }

    if (olcf->stmt_reveal == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_ocdz_card_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_ocdz_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ocdz_card_init_process(ngx_http_ocdz_worker_t *w)
{
    ngx_http_ocdz_card_t  *card;

    card = ngx_pcalloc(w->cycle->pool, sizeof(ngx_http_ocdz_card_t));
    if (card == NULL) {
        return NGX_ERROR;
    }

    w->card = card;

    card->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    card->sha256_ctx = EVP_MD_CTX_new();

    if (card->sha256 == NULL || card->sha256_ctx == NULL) {
        ngx_log_error(NGX_LOG_EMERG, w->log, 0,
                      "ocdz: cannot create the SHA-256 context");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_ocdz_card_exit_process(ngx_http_ocdz_worker_t *w)
{
    EVP_MD_CTX_free(w->card->sha256_ctx);
    EVP_MD_free(w->card->sha256);

    w->card = NULL;
}


ngx_int_t
ngx_http_ocdz_card_handler(ngx_http_request_t *r)
{
    size_t                      len;
    ngx_int_t                   rc;
    ngx_table_elt_t            *ua;
    ngx_pool_cleanup_t         *cln;
    ngx_http_ocdz_ctx_t        *ctx;
    ngx_http_ocdz_loc_conf_t   *olcf;
    ngx_http_ocdz_main_conf_t  *omcf;

    olcf = ngx_http_get_module_loc_conf(r, ngx_http_ocdz_module);

    if (olcf->card == NULL || olcf->stmt_reveal == NGX_CONF_UNSET) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "ocdz: card handler in a location without ocdz_card");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    omcf = ngx_http_get_module_main_conf(r, ngx_http_ocdz_module);

    if (omcf->worker == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "ocdz: card handler in a process the module did "
                      "not start");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ocdz_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->worker = omcf->worker;

    ngx_http_set_ctx(r, ctx, ngx_http_ocdz_module);

    /* every buffer of ours is wiped and every query let go at the end */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_ocdz_cleanup;
    cln->data = ctx;

    /* card bodies are never compressed, cached or served in ranges */

    r->gzip_tested = 1;
    r->gzip_ok = 0;
    r->allow_ranges = 0;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method == NGX_HTTP_OPTIONS && olcf->cors_origins
        && ngx_http_ocdz_cors(r, olcf, 1) == NGX_OK)
    {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_PREFLIGHT, NULL);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_ocdz_finish(r, ctx,
                                    NGX_HTTP_OCDZ_R_METHOD_NOT_ALLOWED, NULL);
    }

    if (olcf->https_only && ngx_http_ocdz_https_ok(r, olcf) != NGX_OK) {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_HTTPS_REQUIRED,
                                    NULL);
    }

    rc = ngx_http_ocdz_session_params(r, olcf, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_SESSION_REQUIRED,
                                    NULL);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_ocdz_get_topup_id(r, olcf, ctx);

    if (rc == NGX_DECLINED) {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_INVALID_TOPUP_ID,
                                    NULL);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_ocdz_get_wait(r, olcf, ctx) != NGX_OK) {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_INVALID_WAIT,
                                    NULL);
    }

    /* libpq takes text parameters NUL-terminated */

    if (ngx_http_ocdz_copy(r, &ctx->client_ip, r->connection->addr_text.data,
                           r->connection->addr_text.len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ua = r->headers_in.user_agent;

    if (ua) {
        /* never cut a UTF-8 sequence: PostgreSQL would refuse the text */

        len = ocdz_text_prefix(ua->value.data, ua->value.len,
                               NGX_HTTP_OCDZ_UA_MAX);

        if (ngx_http_ocdz_copy_text(r, &ctx->user_agent, ua->value.data,
                                    len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ctx->query.stmt = olcf->stmt_reveal;
    ctx->query.nparams = 5;
    ctx->query.values[1] = (char *) ctx->topup_id.data;
    ctx->query.lengths[1] = ctx->topup_id.len;
    ctx->query.values[2] = (char *) ctx->client_ip.data;
    ctx->query.lengths[2] = ctx->client_ip.len;
    ctx->query.values[3] = ua ? (char *) ctx->user_agent.data : NULL;
    ctx->query.lengths[3] = ctx->user_agent.len;
    ctx->query.values[4] = (r->method == NGX_HTTP_HEAD) ? "HEAD"
                           : ctx->wait ? "WAIT" : "GET";
    ctx->query.lengths[4] = ngx_strlen(ctx->query.values[4]);
    ctx->query.background = NGX_OCDZ_PG_FOREGROUND;
    ctx->query.handler = ngx_http_ocdz_revealed;
    ctx->query.data = ctx;
    ctx->query.log = r->connection->log;

    if (ngx_ocdz_pg_send(ctx->worker->pg, &ctx->query) != NGX_OK) {
        return ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_UNAVAILABLE,
                                    NULL);
    }

    ctx->waiting = 1;
    r->main->count++;

    return NGX_DONE;
}


static ngx_int_t
ngx_http_ocdz_https_ok(ngx_http_request_t *r, ngx_http_ocdz_loc_conf_t *olcf)
{
    ngx_table_elt_t  *proto;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        return NGX_OK;
    }
#endif

    if (olcf->trusted_proxies == NULL
        || ngx_cidr_match(r->connection->sockaddr, olcf->trusted_proxies)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    proto = ngx_http_ocdz_find_header(r, "X-Forwarded-Proto",
                                      sizeof("X-Forwarded-Proto") - 1);

    if (proto && proto->value.len == 5
        && ngx_strncasecmp(proto->value.data, (u_char *) "https", 5) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_ocdz_get_topup_id(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx)
{
    ngx_str_t  id;

    if (ngx_http_complex_value(r, olcf->card, &id) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!ocdz_topup_id_valid((char *) id.data, id.len)) {
        return NGX_DECLINED;
    }

    ctx->topup_id.data = ngx_pnalloc(r->pool, id.len + 1);
    if (ctx->topup_id.data == NULL) {
        return NGX_ERROR;
    }

    ngx_strlow(ctx->topup_id.data, id.data, id.len);
    ctx->topup_id.data[id.len] = '\0';
    ctx->topup_id.len = id.len;

    return NGX_OK;
}


/*
 * Fills $1 of the reveal statement: the SHA-256 of the session token
 * (the default store keeps hashes, never tokens), the token itself for
 * the sysadmin's own query, or the user a JWT or a trusted variable
 * names. NGX_DECLINED means 401.
 *
 * A request may carry two tokens, a cookie and a Bearer: a stale cookie
 * left in a browser must not hide a good Bearer. A JWT is checked here,
 * so the Bearer is tried at once; a database token can only be judged
 * by the statement, so the Bearer is kept in ctx->other for a second
 * statement, sent only when the first finds no session.
 */

static ngx_int_t
ngx_http_ocdz_session_params(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx)
{
    ngx_int_t   rc;
    ngx_str_t   token, other, user;

    if (olcf->session == NGX_HTTP_OCDZ_SESSION_VARIABLE) {

        if (ngx_http_complex_value(r, olcf->session_var, &user) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ngx_http_ocdz_user_valid(user.data, user.len) != NGX_OK) {
            return NGX_DECLINED;
        }

        if (ngx_http_ocdz_copy(r, &ctx->user_id, user.data, user.len)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        ctx->query.values[0] = (char *) ctx->user_id.data;
        ctx->query.lengths[0] = ctx->user_id.len;

        return NGX_OK;
    }

    if (ngx_http_ocdz_get_token(r, olcf, &token, &other) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (olcf->session == NGX_HTTP_OCDZ_SESSION_JWT) {

        rc = ngx_http_ocdz_jwt_user(r, olcf, ctx, &token);

        if (rc == NGX_DECLINED && other.len) {
            rc = ngx_http_ocdz_jwt_user(r, olcf, ctx, &other);
        }

        return rc;
    }

    ctx->other = other;

    return ngx_http_ocdz_token_param(r, olcf, ctx, &token);
}


/* The user of a session JWT, as $1. NGX_DECLINED: not a session. */

static ngx_int_t
ngx_http_ocdz_jwt_user(ngx_http_request_t *r, ngx_http_ocdz_loc_conf_t *olcf,
    ngx_http_ocdz_ctx_t *ctx, ngx_str_t *token)
{
    int               jrc;
    ocdz_jwt_conf_t   jcf;
    char              jwt_user[OCDZ_JWT_USER_MAX + 1];

    jcf.secret = olcf->jwt_secret.data;
    jcf.secret_len = olcf->jwt_secret.len;
    jcf.user_claim = (char *) olcf->jwt_user_claim.data;
    jcf.leeway = olcf->jwt_leeway;

    jrc = ocdz_jwt_verify(&jcf, (char *) token->data, token->len,
                          ngx_time(), jwt_user, sizeof(jwt_user));

    if (jrc != OCDZ_JWT_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ocdz: session JWT refused: %s", ocdz_jwt_rc_str(jrc));
        return NGX_DECLINED;
    }

    if (ngx_http_ocdz_user_valid((u_char *) jwt_user, ngx_strlen(jwt_user))
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "ocdz: session JWT refused: unusable user");
        return NGX_DECLINED;
    }

    if (ngx_http_ocdz_copy(r, &ctx->user_id, (u_char *) jwt_user,
                           ngx_strlen(jwt_user))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->query.values[0] = (char *) ctx->user_id.data;
    ctx->query.lengths[0] = ctx->user_id.len;

    return NGX_OK;
}


/* A database session token as $1: itself for the own query, or its hash */

static ngx_int_t
ngx_http_ocdz_token_param(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_http_ocdz_ctx_t *ctx,
    ngx_str_t *token)
{
    u_char                 digest[SHA256_DIGEST_LENGTH], *p;
    ngx_str_t              copy;
    ngx_http_ocdz_card_t  *card;

    if (olcf->session_query.len) {
        if (ngx_http_ocdz_copy(r, &copy, token->data, token->len) != NGX_OK) {
            return NGX_ERROR;
        }

        ctx->query.values[0] = (char *) copy.data;
        ctx->query.lengths[0] = copy.len;
        return NGX_OK;
    }

    card = ctx->worker->card;

    if (EVP_DigestInit_ex2(card->sha256_ctx, card->sha256, NULL) != 1
        || EVP_DigestUpdate(card->sha256_ctx, token->data, token->len) != 1
        || EVP_DigestFinal_ex(card->sha256_ctx, digest, NULL) != 1)
    {
        return NGX_ERROR;
    }

    p = ngx_hex_dump(ctx->token_hash, digest, sizeof(digest));
    *p = '\0';

    ctx->query.values[0] = (char *) ctx->token_hash;
    ctx->query.lengths[0] = p - ctx->token_hash;

    return NGX_OK;
}


/*
 * The token: the session cookie first, then "Authorization: Bearer".
 * When both hold one, *other is the Bearer's (the same token twice is
 * one), else empty.
 */

static ngx_int_t
ngx_http_ocdz_get_token(ngx_http_request_t *r,
    ngx_http_ocdz_loc_conf_t *olcf, ngx_str_t *token, ngx_str_t *other)
{
    size_t            len;
    ngx_str_t        *name;
    ngx_uint_t        i;
    const char       *t;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *auth;

    ngx_str_null(token);
    ngx_str_null(other);

    name = &olcf->session_cookie;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; name->len; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len != sizeof("Cookie") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "Cookie",
                               sizeof("Cookie") - 1)
               != 0)
        {
            continue;
        }

        if (ocdz_session_cookie((char *) h[i].value.data, h[i].value.len,
                                (char *) name->data, name->len, &t, &len))
        {
            token->data = (u_char *) t;
            token->len = len;
            break;
        }
    }

    auth = r->headers_in.authorization;

    if (olcf->session_bearer && auth
        && ocdz_session_bearer((char *) auth->value.data, auth->value.len,
                               &t, &len))
    {
        if (token->len == 0) {
            token->data = (u_char *) t;
            token->len = len;

        } else if (len != token->len
                   || ngx_memcmp(t, token->data, len) != 0)
        {
            other->data = (u_char *) t;
            other->len = len;
        }
    }

    return token->len ? NGX_OK : NGX_DECLINED;
}


/*
 * The first token gave no session: the statement again with the other.
 * NGX_OK: sent; NGX_DECLINED: no other token; NGX_BUSY: the pool takes
 * no more now; NGX_ERROR: not sent.
 */

static ngx_int_t
ngx_http_ocdz_retry_session(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx)
{
    ngx_int_t                  rc;
    ngx_str_t                  token;
    ngx_http_ocdz_loc_conf_t  *olcf;

    if (ctx->other.len == 0) {
        return NGX_DECLINED;
    }

    olcf = ngx_http_get_module_loc_conf(r, ngx_http_ocdz_module);

    token = ctx->other;
    ngx_str_null(&ctx->other);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "ocdz: no session for the cookie, trying the Bearer");

    if (ngx_http_ocdz_token_param(r, olcf, ctx, &token) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_ocdz_pg_send(ctx->worker->pg, &ctx->query);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_BUSY : NGX_ERROR;
    }

    ctx->waiting = 1;

    return NGX_OK;
}


static ngx_table_elt_t *
ngx_http_ocdz_find_header(ngx_http_request_t *r, const char *name,
    size_t len)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


static ngx_int_t
ngx_http_ocdz_copy(ngx_http_request_t *r, ngx_str_t *dst, u_char *data,
    size_t len)
{
    u_char  *p;

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, data, len);
    p[len] = '\0';

    dst->data = p;
    dst->len = len;

    return NGX_OK;
}


/*
 * Text from a request header for PostgreSQL, which refuses a whole
 * statement for one byte that is not UTF-8: such bytes and control
 * characters become '?'.
 */

static ngx_int_t
ngx_http_ocdz_copy_text(ngx_http_request_t *r, ngx_str_t *dst, u_char *data,
    size_t len)
{
    if (ngx_http_ocdz_copy(r, dst, data, len) != NGX_OK) {
        return NGX_ERROR;
    }

    ocdz_text_sanitize(dst->data, dst->len);

    return NGX_OK;
}


/* A user id from a JWT or a variable: 1-128 bytes of UTF-8, no controls. */

static ngx_int_t
ngx_http_ocdz_user_valid(u_char *p, size_t len)
{
    if (len == 0 || len > NGX_HTTP_OCDZ_USER_MAX
        || !ocdz_text_valid(p, len, 0))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static void
ngx_http_ocdz_revealed(ngx_ocdz_pg_query_t *q, ngx_int_t rc, PGresult *res)
{
    char                    *event;
    ngx_int_t                frc;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_ocdz_ctx_t     *ctx;
    ngx_http_ocdz_result_e   result;

    ctx = q->data;
    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;

    if (rc == NGX_OCDZ_PG_UNAVAILABLE) {
        result = NGX_HTTP_OCDZ_R_UNAVAILABLE;
        goto done;
    }

    if (rc != NGX_OCDZ_PG_OK) {
        /* the pool logged the server's message where it is safe to */

        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ocdz: card statement failed for top-up %V: "
                      "SQLSTATE %s", &ctx->topup_id,
                      ngx_ocdz_pg_sqlstate(res));
        result = NGX_HTTP_OCDZ_R_INTERNAL_ERROR;
        goto done;
    }

    ctx->row = q->row;

    if (ctx->row >= PQntuples(res)
        || PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_USER))
    {
        /* the database knows no such session: the other token, if any */

        frc = ngx_http_ocdz_retry_session(r, ctx);

        if (frc == NGX_OK) {
            return;
        }

        if (frc == NGX_DECLINED) {
            result = NGX_HTTP_OCDZ_R_SESSION_REQUIRED;

        } else if (frc == NGX_BUSY) {
            result = NGX_HTTP_OCDZ_R_UNAVAILABLE;

        } else {
            result = NGX_HTTP_OCDZ_R_INTERNAL_ERROR;
        }

        goto done;
    }

    if (PQnfields(res) != NGX_HTTP_OCDZ_NCOLS) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ocdz: card statement returned %d columns",
                      PQnfields(res));
        result = NGX_HTTP_OCDZ_R_INTERNAL_ERROR;
        goto done;
    }

    if (ctx->user_id.len == 0) {
        ctx->user_id.len = PQgetlength(res, ctx->row, NGX_HTTP_OCDZ_COL_USER);
        ctx->user_id.data = ngx_pnalloc(r->pool, ctx->user_id.len + 1);
        if (ctx->user_id.data == NULL) {
            result = NGX_HTTP_OCDZ_R_INTERNAL_ERROR;
            goto done;
        }

        ngx_memcpy(ctx->user_id.data,
                   PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_USER),
                   ctx->user_id.len + 1);
    }

    event = PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_EVENT);

    if (PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_EVENT)) {
        result = NGX_HTTP_OCDZ_R_HEAD;

    } else if (ngx_strcmp(event, "CARD_REVEALED") == 0) {

        /* answered now, even if recording a failure comes first */

        ngx_http_ocdz_wait_leave(&ctx->waiter);

        frc = ngx_http_ocdz_open_card(r, ctx, res);

        if (frc == NGX_DONE) {
            /* the failure is being recorded; the answer comes after */
            return;
        }

        if (frc == NGX_OK) {
            result = NGX_HTTP_OCDZ_R_REVEALED;

        } else {
            result = NGX_HTTP_OCDZ_R_DELIVERY_FAILED;
        }

    } else if (ngx_strcmp(event, "ORDER_NOT_FOUND") == 0) {
        result = NGX_HTTP_OCDZ_R_NOT_FOUND;

    } else if (ngx_strcmp(event, "ORDER_NOT_READY") == 0) {
        result = NGX_HTTP_OCDZ_R_NOT_READY;

        if (ctx->wait && !ctx->final_look
            && ngx_strcmp(PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_STATUS),
                          "ERROR")
               != 0)
        {
            frc = ngx_http_ocdz_hold(r, ctx, res);

            if (frc == NGX_OK) {
                return;
            }

            if (frc == NGX_BUSY) {
                result = NGX_HTTP_OCDZ_R_UNAVAILABLE;
            }
        }

    } else if (ngx_strcmp(event, "ORDER_REFUNDED") == 0) {
        result = NGX_HTTP_OCDZ_R_REFUNDED;

    } else {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ocdz: order %V is FULFILLED but has no stored card",
                      &ctx->topup_id);
        result = NGX_HTTP_OCDZ_R_DELIVERY_FAILED;
    }

done:

    if (ctx->waiter.wait) {
        if (rc == NGX_OCDZ_PG_UNAVAILABLE && !ctx->final_look) {
            /* a look while held: the wait goes on, the last look says */
            ngx_http_ocdz_wait_again(&ctx->waiter);
            return;
        }

        ngx_http_ocdz_wait_leave(&ctx->waiter);
    }

    if (result == NGX_HTTP_OCDZ_R_REVEALED) {
        frc = ngx_http_ocdz_send(r, ctx, NGX_HTTP_OK);

    } else {
        frc = ngx_http_ocdz_finish(r, ctx, result, res);
    }

    ngx_http_finalize_request(r, frc);
    ngx_http_run_posted_requests(c);
}


/*
 * ?wait=N: whole seconds, at most the location's ocdz_card_wait; HEAD is
 * never held. NGX_DECLINED: not a whole number (400 INVALID_WAIT).
 */

static ngx_int_t
ngx_http_ocdz_get_wait(ngx_http_request_t *r, ngx_http_ocdz_loc_conf_t *olcf,
    ngx_http_ocdz_ctx_t *ctx)
{
    u_char     *p, *last;
    uint64_t    n;
    ngx_str_t   arg;

    if (ngx_http_arg(r, (u_char *) "wait", 4, &arg) != NGX_OK) {
        return NGX_OK;
    }

    if (arg.len == 0) {
        return NGX_DECLINED;
    }

    n = 0;

    for (p = arg.data, last = arg.data + arg.len; p < last; p++) {
        if (*p < '0' || *p > '9') {
            return NGX_DECLINED;
        }

        /* more than any cap: stop counting, never overflow */

        if (n < 1000000000) {
            n = n * 10 + (*p - '0');
        }
    }

    if (r->method == NGX_HTTP_HEAD || ctx->worker->wait == NULL) {
        return NGX_OK;
    }

    ctx->wait = (ngx_msec_t) ngx_min(n * 1000, (uint64_t) olcf->card_wait);

    return NGX_OK;
}


/*
 * The order is not ready and the request may wait. NGX_OK: held (or,
 * held already, held on), or looking for the last time; NGX_BUSY: no
 * room (503).
 */

static ngx_int_t
ngx_http_ocdz_hold(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    PGresult *res)
{
    ngx_int_t                rc;
    ngx_http_ocdz_waiter_t  *wt;

    wt = &ctx->waiter;

    if (wt->wait) {
        ngx_http_ocdz_wait_again(wt);
        return NGX_OK;
    }

    wt->topup_id = ctx->topup_id;
    wt->look = ngx_http_ocdz_look;
    wt->data = ctx;
    wt->timer.data = r->connection;
    wt->timer.log = r->connection->log;

    rc = ngx_http_ocdz_wait_hold(ctx->worker->wait, wt, ctx->wait);

    if (rc == NGX_OK) {
        /* a client that goes away frees its slot at once */

        if (!r->discard_body) {
            r->read_event_handler = ngx_http_ocdz_wait_read;
        }

        return NGX_OK;
    }

    if (rc == NGX_BUSY) {
        return NGX_BUSY;
    }

    /* the worker is shutting down: the last look, audited, at once */

    ctx->final_look = 1;
    ctx->query.values[4] = "GET";
    ctx->query.lengths[4] = 3;

    if (ngx_ocdz_pg_send(ctx->worker->pg, &ctx->query) != NGX_OK) {
        return NGX_BUSY;
    }

    ctx->waiting = 1;

    return NGX_OK;
}


/* A held request looks again (see ngx_http_ocdz_look_pt). */

static ngx_int_t
ngx_http_ocdz_look(ngx_http_ocdz_waiter_t *wt, ngx_uint_t final)
{
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_ocdz_ctx_t  *ctx;

    ctx = wt->data;
    r = ctx->request;

    ctx->final_look = final ? 1 : 0;
    ctx->query.values[4] = final ? "GET" : "WAIT";
    ctx->query.lengths[4] = final ? 3 : 4;

    rc = ngx_ocdz_pg_send(ctx->worker->pg, &ctx->query);

    if (rc == NGX_OK) {
        ctx->waiting = 1;
        return NGX_OK;
    }

    if (rc == NGX_DECLINED && !final) {
        return NGX_DECLINED;
    }

    /* the last look cannot be made */

    c = r->connection;

    ngx_http_ocdz_wait_leave(wt);
    ngx_http_finalize_request(r,
        ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_UNAVAILABLE, NULL));
    ngx_http_run_posted_requests(c);

    return NGX_DONE;
}


/* While held: the client closing is noticed at once (as upstream does). */

static void
ngx_http_ocdz_wait_read(ngx_http_request_t *r)
{
    int                   n;
    char                  buf[1];
    ngx_err_t             err;
    ngx_event_t          *rev;
    ngx_connection_t     *c;
    ngx_http_ocdz_ctx_t  *ctx;

    c = r->connection;
    rev = c->read;

    /* an HTTP/2 stream reset sets it on the stream's connection */

    if (c->error) {
        goto gone;
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;
    }
#endif

#if (NGX_HAVE_EPOLLRDHUP)

    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {
        if (!rev->pending_eof) {
            return;
        }

        rev->eof = 1;
        c->error = 1;
        goto gone;
    }

#endif

    n = recv(c->fd, buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
        /* a pipelined request, or nothing: wait on */

        if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
            (void) ngx_del_event(rev, NGX_READ_EVENT, 0);
        }

        return;
    }

    rev->eof = 1;
    c->error = 1;

gone:

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "ocdz: the client closed the connection while waiting "
                  "for its card");

    ctx = ngx_http_get_module_ctx(r, ngx_http_ocdz_module);

    if (ctx) {
        ngx_http_ocdz_wait_leave(&ctx->waiter);
    }

    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}


/*
 * Opens the card and writes the JSON. NGX_DONE: it failed and the
 * failure's audit row is on its way; NGX_ERROR: it failed, and the
 * failure could not even be recorded.
 */

static ngx_int_t
ngx_http_ocdz_open_card(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    PGresult *res)
{
    int                         orc;
    u_char                     *card;
    size_t                      len;
    ngx_int_t                   rc;
    ngx_str_t                   detail, stamp;
    const char                 *reason;
    ocdz_open_info_t            info;
    ngx_http_ocdz_loc_conf_t   *olcf;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ngx_http_get_module_main_conf(r, ngx_http_ocdz_module);
    olcf = ngx_http_get_module_loc_conf(r, ngx_http_ocdz_module);

    card = ngx_pnalloc(r->pool, OCDZ_PLAIN_MAX);
    if (card == NULL) {
        return NGX_ERROR;
    }

    /* the request pool's cleanup wipes the plaintext */

    ctx->plain.data = card;
    ctx->plain.len = OCDZ_PLAIN_MAX;

    ngx_memzero(&info, sizeof(ocdz_open_info_t));

    orc = ocdz_open(ctx->worker->cipher, omcf->keyring,
                    (char *) ctx->topup_id.data, ctx->topup_id.len,
                    PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_CARD),
                    PQgetlength(res, ctx->row, NGX_HTTP_OCDZ_COL_CARD),
                    card, OCDZ_PLAIN_MAX, &len, &info);

    if (orc == OCDZ_OK) {

        if (info.format != OCDZ_FORMAT_V1
            && PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_FIRST)[0] == 't')
        {
            ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                          "ocdz: order %V holds a legacy guide-format card "
                          "(opened with key \"%s\"); re-encrypt it with "
                          "\"ocdz-card reencrypt\"", &ctx->topup_id,
                          info.key_id);
        }

        rc = ngx_http_ocdz_card_json(r, ctx, res, card, len);
        ocdz_wipe(card, OCDZ_PLAIN_MAX);

        if (rc == NGX_OK) {
            return NGX_OK;
        }

        /* opened but not sendable (logged): not delivered either */

        ngx_http_ocdz_reset_out(ctx);
        reason = "the card is not UTF-8";

    } else {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ocdz: the card of order %V does not open: %s "
                      "(format %d, key \"%s\")", &ctx->topup_id,
                      ocdz_rc_str(orc), (int) info.format,
                      info.key_id[0] ? info.key_id : "-");

        reason = ocdz_rc_str(orc);
    }

    /* record the failure, then answer */

    detail.data = ngx_pnalloc(r->pool, 128);
    if (detail.data == NULL) {
        return NGX_ERROR;
    }

    detail.len = ngx_snprintf(detail.data, 127, "%s; key %s", reason,
                              info.key_id[0] ? info.key_id : "-")
                 - detail.data;
    detail.data[detail.len] = '\0';

    /* the delivery mark this reveal set, if any, is taken back */

    ngx_str_null(&stamp);

    if (!PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_STAMP)
        && ngx_http_ocdz_copy(r, &stamp,
                              (u_char *) PQgetvalue(res, ctx->row,
                                                    NGX_HTTP_OCDZ_COL_STAMP),
                              PQgetlength(res, ctx->row,
                                          NGX_HTTP_OCDZ_COL_STAMP))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_memzero(&ctx->query, sizeof(ngx_ocdz_pg_query_t));

    ctx->query.stmt = olcf->stmt_failed;
    ctx->query.nparams = 6;
    ctx->query.values[0] = (char *) ctx->topup_id.data;
    ctx->query.lengths[0] = ctx->topup_id.len;
    ctx->query.values[1] = (char *) ctx->user_id.data;
    ctx->query.lengths[1] = ctx->user_id.len;
    ctx->query.values[2] = (char *) ctx->client_ip.data;
    ctx->query.lengths[2] = ctx->client_ip.len;
    ctx->query.values[3] = ctx->user_agent.len
                           ? (char *) ctx->user_agent.data : NULL;
    ctx->query.lengths[3] = ctx->user_agent.len;
    ctx->query.values[4] = (char *) detail.data;
    ctx->query.lengths[4] = detail.len;
    ctx->query.values[5] = (char *) stamp.data;
    ctx->query.lengths[5] = stamp.len;
    ctx->query.background = NGX_OCDZ_PG_FOREGROUND;
    ctx->query.handler = ngx_http_ocdz_failure_recorded;
    ctx->query.data = ctx;
    ctx->query.log = r->connection->log;

    if (ngx_ocdz_pg_send(ctx->worker->pg, &ctx->query) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ocdz: cannot record the failed reveal of order %V%s",
                      &ctx->topup_id,
                      stamp.len ? "; it stays marked delivered" : "");
        return NGX_ERROR;
    }

    ctx->waiting = 1;

    return NGX_DONE;
}


static void
ngx_http_ocdz_failure_recorded(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res)
{
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_ocdz_ctx_t  *ctx;

    ctx = q->data;
    r = ctx->request;
    c = r->connection;

    ctx->waiting = 0;

    if (rc != NGX_OCDZ_PG_OK) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0,
                      "ocdz: cannot record the failed reveal of order %V%s",
                      &ctx->topup_id,
                      ctx->query.values[5] ? "; it stays marked delivered"
                                           : "");
    }

    ngx_http_finalize_request(r,
        ngx_http_ocdz_finish(r, ctx, NGX_HTTP_OCDZ_R_DELIVERY_FAILED, NULL));
    ngx_http_run_posted_requests(c);
}


#define ngx_http_ocdz_gen_str(g, s)                                           \
    yajl_gen_string(g, (const unsigned char *) s, sizeof(s) - 1)

#define ngx_http_ocdz_gen_col(g, res, row, col)                               \
    yajl_gen_string(g, (const unsigned char *) PQgetvalue(res, row, col),     \
                    PQgetlength(res, row, col))


static ngx_int_t
ngx_http_ocdz_card_json(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    PGresult *res, u_char *card, size_t len)
{
    char                       *value;
    int                         type, lang;
    size_t                      i;
    yajl_gen                    g;
    ngx_str_t                   arg;
    ngx_table_elt_t            *al;
    yajl_alloc_funcs            afs;
    ocdz_instruction_t         *in;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ngx_http_get_module_main_conf(r, ngx_http_ocdz_module);

    type = ocdz_card_type_from_str(PQgetvalue(res, ctx->row,
                                              NGX_HTTP_OCDZ_COL_TYPE),
                                   PQgetlength(res, ctx->row,
                                               NGX_HTTP_OCDZ_COL_TYPE));
    if (type < 0) {
        type = OCDZ_TYPE_ADSL;
    }

    lang = -1;

    if (ngx_http_arg(r, (u_char *) "lang", 4, &arg) == NGX_OK) {
        lang = ocdz_lang_from_str((char *) arg.data, arg.len);
    }

    if (lang < 0) {
        al = ngx_http_ocdz_find_header(r, "Accept-Language",
                                       sizeof("Accept-Language") - 1);
        lang = al ? (int) ocdz_lang_pick((char *) al->value.data,
                                         al->value.len)
                  : OCDZ_LANG_EN;
    }

    in = &omcf->instructions.text[type][lang];

    afs = ngx_http_ocdz_yajl_alloc;
    afs.ctx = r->pool;

    g = yajl_gen_alloc(&afs);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_config(g, yajl_gen_print_callback, ngx_http_ocdz_out, ctx);
    yajl_gen_config(g, yajl_gen_validate_utf8, 1);

    yajl_gen_map_open(g);
    ngx_http_ocdz_gen_str(g, "success");
    yajl_gen_bool(g, 1);
    ngx_http_ocdz_gen_str(g, "topupId");
    yajl_gen_string(g, ctx->topup_id.data, ctx->topup_id.len);
    ngx_http_ocdz_gen_str(g, "status");
    ngx_http_ocdz_gen_str(g, "FULFILLED");
    ngx_http_ocdz_gen_str(g, "type");
    ngx_http_ocdz_gen_col(g, res, ctx->row, NGX_HTTP_OCDZ_COL_TYPE);
    ngx_http_ocdz_gen_str(g, "number");
    ngx_http_ocdz_gen_col(g, res, ctx->row, NGX_HTTP_OCDZ_COL_NUMBER);
    ngx_http_ocdz_gen_str(g, "value");
    value = PQgetvalue(res, ctx->row, NGX_HTTP_OCDZ_COL_VALUE);
    yajl_gen_number(g, value, ngx_strlen(value));
    ngx_http_ocdz_gen_str(g, "cardCode");
    yajl_gen_string(g, card, len);
    ngx_http_ocdz_gen_str(g, "transactionNumber");

    if (PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_TRANS)) {
        yajl_gen_null(g);
    } else {
        ngx_http_ocdz_gen_col(g, res, ctx->row, NGX_HTTP_OCDZ_COL_TRANS);
    }

    ngx_http_ocdz_gen_str(g, "processedDate");

    if (PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_DATE)) {
        yajl_gen_null(g);
    } else {
        ngx_http_ocdz_gen_col(g, res, ctx->row, NGX_HTTP_OCDZ_COL_DATE);
    }

    ngx_http_ocdz_gen_str(g, "instructions");
    yajl_gen_map_open(g);
    ngx_http_ocdz_gen_str(g, "language");
    yajl_gen_string(g, (const unsigned char *) ocdz_lang_str(lang),
                    ngx_strlen(ocdz_lang_str(lang)));
    ngx_http_ocdz_gen_str(g, "title");
    yajl_gen_string(g, (const unsigned char *) in->title,
                    ngx_strlen(in->title));
    ngx_http_ocdz_gen_str(g, "steps");
    yajl_gen_array_open(g);

    for (i = 0; i < in->nsteps; i++) {
        yajl_gen_string(g, (const unsigned char *) in->steps[i],
                        ngx_strlen(in->steps[i]));
    }

    yajl_gen_array_close(g);
    ngx_http_ocdz_gen_str(g, "support");
    yajl_gen_string(g, (const unsigned char *) in->support,
                    ngx_strlen(in->support));
    yajl_gen_map_close(g);

    if (yajl_gen_map_close(g) != yajl_gen_status_ok) {
        /* a field was not UTF-8: the database holds something odd */
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ocdz: order %V has a field that is not UTF-8",
                      &ctx->topup_id);
        yajl_gen_free(g);
        return NGX_ERROR;
    }

    yajl_gen_free(g);

    return ctx->out_error ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_ocdz_finish(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    ngx_http_ocdz_result_e result, PGresult *res)
{
    ngx_http_ocdz_outcome_t   *oc;
    ngx_http_ocdz_loc_conf_t  *olcf;

    ctx->result = result;
    oc = &ngx_http_ocdz_outcomes[result];

    switch (result) {

    case NGX_HTTP_OCDZ_R_PREFLIGHT:
        return ngx_http_ocdz_send(r, ctx, oc->status);

    case NGX_HTTP_OCDZ_R_HEAD:
        return ngx_http_ocdz_send(r, ctx, oc->status);

    case NGX_HTTP_OCDZ_R_SESSION_REQUIRED:
        if (ngx_http_ocdz_add_header(r, "WWW-Authenticate",
                                     "Bearer realm=\"ocdz\"")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        break;

    case NGX_HTTP_OCDZ_R_METHOD_NOT_ALLOWED:
        olcf = ngx_http_get_module_loc_conf(r, ngx_http_ocdz_module);

        if (ngx_http_ocdz_add_header(r, "Allow",
                                     olcf->cors_origins ? "GET, HEAD, OPTIONS"
                                                        : "GET, HEAD")
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        break;

    case NGX_HTTP_OCDZ_R_UNAVAILABLE:
        if (ngx_http_ocdz_add_header(r, "Retry-After",
                                     NGX_HTTP_OCDZ_RETRY_AFTER)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
        break;

    default:
        break;
    }

    if (ngx_http_ocdz_error_json(r, ctx, oc, res) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_ocdz_send(r, ctx, oc->status);
}


static ngx_int_t
ngx_http_ocdz_error_json(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    ngx_http_ocdz_outcome_t *oc, PGresult *res)
{
    yajl_gen          g;
    yajl_alloc_funcs  afs;

    afs = ngx_http_ocdz_yajl_alloc;
    afs.ctx = r->pool;

    g = yajl_gen_alloc(&afs);
    if (g == NULL) {
        return NGX_ERROR;
    }

    yajl_gen_config(g, yajl_gen_print_callback, ngx_http_ocdz_out, ctx);

    yajl_gen_map_open(g);
    ngx_http_ocdz_gen_str(g, "success");
    yajl_gen_bool(g, 0);
    ngx_http_ocdz_gen_str(g, "error");
    yajl_gen_string(g, oc->code.data, oc->code.len);
    ngx_http_ocdz_gen_str(g, "message");
    yajl_gen_string(g, (const unsigned char *) oc->message,
                    ngx_strlen(oc->message));

    if (ctx->result == NGX_HTTP_OCDZ_R_NOT_READY && res) {
        ngx_http_ocdz_gen_str(g, "status");
        ngx_http_ocdz_gen_col(g, res, ctx->row, NGX_HTTP_OCDZ_COL_STATUS);
    }

    if (ctx->result == NGX_HTTP_OCDZ_R_REFUNDED && res) {
        ngx_http_ocdz_gen_str(g, "status");
        ngx_http_ocdz_gen_str(g, "REFUNDED");

        if (!PQgetisnull(res, ctx->row, NGX_HTTP_OCDZ_COL_REFUND)) {
            ngx_http_ocdz_gen_str(g, "refundMessage");

            /* not UTF-8 from the database: leave it out, keep the rest */

            yajl_gen_config(g, yajl_gen_validate_utf8, 1);

            if (ngx_http_ocdz_gen_col(g, res, ctx->row,
                                      NGX_HTTP_OCDZ_COL_REFUND)
                != yajl_gen_status_ok)
            {
                yajl_gen_null(g);
            }
        }
    }

    yajl_gen_map_close(g);
    yajl_gen_free(g);

    return ctx->out_error ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_ocdz_send(ngx_http_request_t *r, ngx_http_ocdz_ctx_t *ctx,
    ngx_uint_t status)
{
    off_t                      len;
    ngx_int_t                  rc;
    ngx_chain_t               *cl;
    ngx_http_ocdz_loc_conf_t  *olcf;

    if (ctx->result == NGX_HTTP_OCDZ_R_NONE) {
        ctx->result = NGX_HTTP_OCDZ_R_REVEALED;
    }

    ngx_ocdz_status_reveal(ngx_http_ocdz_status_zone(r), r,
                           &ngx_http_ocdz_outcomes[ctx->result].code);

    olcf = ngx_http_get_module_loc_conf(r, ngx_http_ocdz_module);

    r->headers_out.status = status;

    if (ngx_http_ocdz_add_header(r, "Cache-Control", "no-store") != NGX_OK
        || ngx_http_ocdz_add_header(r, "Pragma", "no-cache") != NGX_OK
        || ngx_http_ocdz_add_header(r, "X-Content-Type-Options", "nosniff")
           != NGX_OK
        || ngx_http_ocdz_add_header(r, "Vary",
                                    olcf->cors_origins
                                    ? "Accept-Language, Origin"
                                    : "Accept-Language")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (olcf->cors_origins && ctx->result != NGX_HTTP_OCDZ_R_PREFLIGHT
        && ngx_http_ocdz_cors(r, olcf, 0) == NGX_ERROR)
    {
        return NGX_ERROR;
    }

    len = 0;

    for (cl = ctx->out; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    if (ctx->result == NGX_HTTP_OCDZ_R_PREFLIGHT) {
        r->header_only = 1;
        r->headers_out.content_length_n = 0;
        return ngx_http_send_header(r);
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    if (ctx->result == NGX_HTTP_OCDZ_R_HEAD || ctx->out == NULL) {
        if (ctx->out == NULL) {
            r->header_only = 1;
        }
    }

    r->headers_out.content_length_n = len;

    if (r->method == NGX_HTTP_HEAD || r->header_only) {
        if (len == 0) {
            r->headers_out.content_length_n = -1;
        }

        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    cl = ctx->out;

    while (cl->next) {
        cl = cl->next;
    }

    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, ctx->out);
}


static ngx_int_t
ngx_http_ocdz_add_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}


/*
 * CORS only for the listed origins, compared exactly. NGX_DECLINED: the
 * request's origin is not one of them, and it gets no CORS headers.
 */

static ngx_int_t
ngx_http_ocdz_cors(ngx_http_request_t *r, ngx_http_ocdz_loc_conf_t *olcf,
    ngx_uint_t preflight)
{
    u_char           *value;
    ngx_str_t        *origin;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    h = ngx_http_ocdz_find_header(r, "Origin", sizeof("Origin") - 1);
    if (h == NULL) {
        return NGX_DECLINED;
    }

    origin = olcf->cors_origins->elts;

    for (i = 0; i < olcf->cors_origins->nelts; i++) {
        if (origin[i].len == h->value.len
            && ngx_strncasecmp(origin[i].data, h->value.data, h->value.len)
               == 0)
        {
            break;
        }
    }

    if (i == olcf->cors_origins->nelts) {
        return NGX_DECLINED;
    }

    value = ngx_pnalloc(r->pool, origin[i].len + 1);
    if (value == NULL) {
        return NGX_ERROR;
    }

    ngx_cpystrn(value, origin[i].data, origin[i].len + 1);

    if (ngx_http_ocdz_add_header(r, "Access-Control-Allow-Origin",
                                 (char *) value)
        != NGX_OK
        || ngx_http_ocdz_add_header(r, "Access-Control-Allow-Credentials",
                                    "true")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (preflight
        && (ngx_http_ocdz_add_header(r, "Access-Control-Allow-Methods",
                                     "GET, HEAD")
            != NGX_OK
            || ngx_http_ocdz_add_header(r, "Access-Control-Allow-Headers",
                                        "Authorization")
               != NGX_OK
            || ngx_http_ocdz_add_header(r, "Access-Control-Max-Age", "600")
               != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* yajl's print callback: JSON goes straight into the output chain */

static void
ngx_http_ocdz_out(void *data, const char *s, size_t len)
{
    ngx_http_ocdz_ctx_t *ctx = data;

    size_t        n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    while (len) {
        cl = ctx->out_last;

        if (cl == NULL || cl->buf->last == cl->buf->end) {
            b = ngx_create_temp_buf(ctx->request->pool,
                                    NGX_HTTP_OCDZ_OUT_CHUNK);
            cl = ngx_alloc_chain_link(ctx->request->pool);

            if (b == NULL || cl == NULL) {
                ctx->out_error = 1;
                return;
            }

            cl->buf = b;
            cl->next = NULL;

            if (ctx->out_last) {
                ctx->out_last->next = cl;

            } else {
                ctx->out = cl;
            }

            ctx->out_last = cl;
        }

        b = cl->buf;
        n = ngx_min(len, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, s, n);
        s += n;
        len -= n;
    }
}


/* Drops a half-written body, which may hold the card. */

static void
ngx_http_ocdz_reset_out(ngx_http_ocdz_ctx_t *ctx)
{
    ngx_chain_t  *cl;

    /* only what was written: the rest never held anything of ours */

    for (cl = ctx->out; cl; cl = cl->next) {
        ocdz_wipe(cl->buf->start, cl->buf->last - cl->buf->start);
        cl->buf->pos = cl->buf->start;
        cl->buf->last = cl->buf->start;
    }

    ctx->out = NULL;
    ctx->out_last = NULL;
    ctx->out_error = 0;
}


static void
ngx_http_ocdz_cleanup(void *data)
{
    ngx_http_ocdz_ctx_t *ctx = data;

    ngx_http_ocdz_wait_leave(&ctx->waiter);

    if (ctx->waiting) {
        ngx_ocdz_pg_abandon(&ctx->query);
        ctx->waiting = 0;
    }

    /* the response may have held a card: wipe it, sent or not */

    ngx_http_ocdz_reset_out(ctx);

    if (ctx->plain.data) {
        ocdz_wipe(ctx->plain.data, ctx->plain.len);
    }
}


/*
 * yajl allocates from the request's pool (ctx): nothing per request
 * outside it. Each block keeps its size in front, to be moved or wiped.
 */

static void *
ngx_http_ocdz_yajl_malloc(void *ctx, size_t size)
{
    size_t  *p;

    p = ngx_palloc(ctx, sizeof(size_t) + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return p + 1;
}


static void *
ngx_http_ocdz_yajl_realloc(void *ctx, void *p, size_t size)
{
    void    *n;
    size_t   old;

    n = ngx_http_ocdz_yajl_malloc(ctx, size);
    if (n == NULL) {
        return NULL;
    }

    if (p) {
        old = ((size_t *) p)[-1];
        ngx_memcpy(n, p, ngx_min(old, size));
        ocdz_wipe(p, old);
    }

    return n;
}


static void
ngx_http_ocdz_yajl_free(void *ctx, void *p)
{
    /* the pool frees it with the request */

    if (p) {
        ocdz_wipe(p, ((size_t *) p)[-1]);
    }
}


static ngx_int_t
ngx_http_ocdz_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t            *s;
    ngx_http_ocdz_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_ocdz_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == (uintptr_t) -1) {
        s = &ngx_http_ocdz_outcomes[ctx->result].code;

    } else {
        s = (ngx_str_t *) ((u_char *) ctx + data);
    }

    if (s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = s->data;
    v->len = s->len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
