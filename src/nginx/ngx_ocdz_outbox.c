
/*
 * ngx_http_ocdz_module: the delivery outbox sender.
 *
 * One event per worker, on a cancelable timer: it leases due rows of
 * ocdz.outbox (at most as many as it has free slots) in one statement,
 * sends each on the curl glue, and writes each outcome in a statement
 * naming the lease token, so that a worker whose lease expired and was
 * taken over writes nothing. The lease counts the attempt, so a row
 * whose sends never finish (a worker killed each time) still reaches
 * the limit and fails.
 *
 * Nothing here sees a card code: the webhook body has no field for it.
 * Errors written to the outbox are curl's code text or an HTTP status,
 * never a URL (it may carry credentials) or a reply body.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/rand.h>

#include "ngx_ocdz_outbox.h"
#include "ngx_ocdz_curl.h"
#include "ocdz_crypto.h"


#define NGX_OCDZ_OUTBOX_LEASE_BYTES  16     /* random, sent as hex */
#define NGX_OCDZ_OUTBOX_FIELD_MAX    256    /* a column kept from a row */
#define NGX_OCDZ_OUTBOX_ERR_MAX      200    /* last_error written */
#define NGX_OCDZ_OUTBOX_INTERVAL_MIN 100
#define NGX_OCDZ_OUTBOX_REPLY_MAX    65536  /* a receiver's reply read */


enum {
    NGX_OCDZ_OB_LEASE = 0,
    NGX_OCDZ_OB_OUTCOME,
    NGX_OCDZ_OB_COUNT
};

typedef char  ngx_ocdz_outbox_stmts_check[
    NGX_OCDZ_OB_COUNT == NGX_HTTP_OCDZ_OUTBOX_STMTS ? 1 : -1];


/* the lease's columns, in its RETURNING order */
enum {
    NGX_OCDZ_OB_C_ID = 0,
    NGX_OCDZ_OB_C_TOPUP,
    NGX_OCDZ_OB_C_CHANNEL,
    NGX_OCDZ_OB_C_EVENT,
    NGX_OCDZ_OB_C_SUBJECT,
    NGX_OCDZ_OB_C_ATTEMPTS,
    NGX_OCDZ_OB_C_CREATED,
    NGX_OCDZ_OB_C_REF,
    NGX_OCDZ_OB_C_NUM_TRANS,
    NGX_OCDZ_OB_C_SUBJECT_MSGID,
    NGX_OCDZ_OB_C_SUBJECT_ERROR,
    NGX_OCDZ_OB_C_COUNT
};


static const char *ngx_ocdz_outbox_sql[NGX_OCDZ_OB_COUNT] = {

    /*
     * lease: $1 how many, $2 lease token, $3 lease (ms), $4 owner. A row
     * still "sending" whose lease expired was cut short (the worker
     * died): it is leased again, as the same event.
     */
    "UPDATE ocdz.outbox o SET "
        "state = 'sending', lease_token = $2, lease_owner = $4, "
        "lease_until = now() + $3::bigint * interval '1 millisecond', "
        "attempts = o.attempts + 1, updated_at = now() "
    "FROM ocdz.orders r "
    "WHERE o.id = ANY (ARRAY ("
        "SELECT id FROM ocdz.outbox "
        "WHERE state IN ('pending', 'sending') "
        "AND next_attempt_at <= now() "
        "AND (lease_until IS NULL OR lease_until < now()) "
        "ORDER BY next_attempt_at "
        "LIMIT $1::integer "
        "FOR UPDATE SKIP LOCKED)) "
    "AND r.topup_id = o.topup_id "
    "RETURNING o.id, o.topup_id, o.channel, o.event, o.subject, "
        "o.attempts, extract(epoch FROM o.created_at)::bigint, "
        "r.ref, r.num_trans, "
        "(SELECT s.message_id FROM ocdz.outbox s "
         "WHERE s.topup_id = o.topup_id AND s.channel = o.subject "
         "AND s.event = 'card'), "
        "(SELECT s.last_error FROM ocdz.outbox s "
         "WHERE s.topup_id = o.topup_id AND s.channel = o.subject "
         "AND s.event = 'card')",

    /*
     * outcome: $1 id, $2 lease token, $3 state, $4 next attempt in ms
     * (NULL: unchanged), $5 last_error, $6 the provider's message id
     */
    "UPDATE ocdz.outbox SET "
        "state = $3::text, "
        "next_attempt_at = CASE WHEN $4::bigint IS NULL "
            "THEN next_attempt_at "
            "ELSE now() + $4::bigint * interval '1 millisecond' END, "
        "last_error = $5::text, "
        "message_id = coalesce($6::text, message_id), "
        "sent_at = CASE WHEN $3::text = 'sent' THEN now() ELSE sent_at END, "
        "lease_token = NULL, lease_owner = NULL, lease_until = NULL, "
        "updated_at = now() "
    "WHERE id = $1::bigint AND lease_token = $2::text "
    "RETURNING id"
};

static int  ngx_ocdz_outbox_nparams[NGX_OCDZ_OB_COUNT] = { 4, 6 };


typedef enum {
    NGX_OCDZ_OB_FREE = 0,
    NGX_OCDZ_OB_SENDING,           /* the transfer runs */
    NGX_OCDZ_OB_DECIDED,           /* its outcome waits for the pool */
    NGX_OCDZ_OB_WRITING            /* its outcome is in the pool */
} ngx_ocdz_outbox_state_e;


typedef struct {
    ngx_ocdz_outbox_t          *ob;
    ngx_ocdz_outbox_state_e     state;

    /* the row, as leased */
    char                        id[NGX_INT64_LEN + 1];
    char                        topup_id[NGX_OCDZ_OUTBOX_FIELD_MAX + 1];
    char                        channel[16];
    char                        event[32];
    char                        subject[16];
    char                        ref[NGX_OCDZ_OUTBOX_FIELD_MAX + 1];
    char                        num_trans[NGX_OCDZ_OUTBOX_FIELD_MAX + 1];
    char                        s_msgid[NGX_OCDZ_OUTBOX_FIELD_MAX + 1];
    char                        s_error[NGX_OCDZ_OUTBOX_FIELD_MAX + 1];
    unsigned                    has_ref:1;
    unsigned                    has_num_trans:1;
    unsigned                    has_s_msgid:1;
    unsigned                    has_s_error:1;
    ngx_int_t                   attempts;
    time_t                      created;
    char                        lease[2 * NGX_OCDZ_OUTBOX_LEASE_BYTES + 1];

    /* the send */
    CURL                       *easy;
    struct curl_slist          *headers;
    ocdz_buf_t                  body;
    size_t                      reply_len;
    time_t                      retry_after;    /* seconds, or -1 */
    char                        curl_error[CURL_ERROR_SIZE];

    /* the outcome */
    const char                 *out_state;
    char                        p_next[NGX_INT64_LEN + 1];
    char                        p_error[NGX_OCDZ_OUTBOX_ERR_MAX + 1];
    ngx_ocdz_pg_query_t         q;
} ngx_ocdz_outbox_slot_t;


/*
 * The sender is its event's ev->data: like the poller, it starts with
 * three pointers and an "fd" of -1 for nginx's debug log.
 */

struct ngx_ocdz_outbox_s {
    ngx_http_ocdz_main_conf_t  *omcf;
    ngx_log_t                  *log;
    ngx_ocdz_pg_pool_t         *pg;
    ngx_socket_t                ident;

    ngx_event_t                 event;
    ngx_ocdz_curl_t            *curl;
    ngx_uint_t                 *stmt;

    ngx_ocdz_outbox_slot_t     *slots;
    ngx_uint_t                  nslots;

    ngx_ocdz_pg_query_t         lease_q;
    char                        p_limit[NGX_INT_T_LEN + 1];
    char                        p_lease_ms[NGX_INT_T_LEN + 1];
    char                        lease[2 * NGX_OCDZ_OUTBOX_LEASE_BYTES + 1];
    char                        owner[NGX_MAXHOSTNAMELEN + NGX_INT_T_LEN
                                      + 2];

    unsigned                    leasing:1;
    unsigned                    exiting:1;
    unsigned                    db_failing:1;
};


static void ngx_ocdz_outbox_handler(ngx_event_t *ev);
static void ngx_ocdz_outbox_lease(ngx_ocdz_outbox_t *ob);
static void ngx_ocdz_outbox_leased(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res);
static ngx_int_t ngx_ocdz_outbox_take(ngx_ocdz_outbox_slot_t *slot,
    PGresult *res, int row);
static void ngx_ocdz_outbox_send(ngx_ocdz_outbox_slot_t *slot);
static ngx_int_t ngx_ocdz_outbox_webhook(ngx_ocdz_outbox_slot_t *slot);
static size_t ngx_ocdz_outbox_reply(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t ngx_ocdz_outbox_header(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_ocdz_outbox_sent(CURL *easy, CURLcode rc, void *data);
static void ngx_ocdz_outbox_retry(ngx_ocdz_outbox_slot_t *slot,
    const char *error, time_t retry_after);
static void ngx_ocdz_outbox_decide(ngx_ocdz_outbox_slot_t *slot,
    const char *state, const char *error);
static void ngx_ocdz_outbox_write(ngx_ocdz_outbox_slot_t *slot);
static void ngx_ocdz_outbox_written(ngx_ocdz_pg_query_t *q, ngx_int_t rc,
    PGresult *res);
static void ngx_ocdz_outbox_free_send(ngx_ocdz_outbox_slot_t *slot);
static void ngx_ocdz_outbox_db_error(ngx_ocdz_outbox_t *ob, const char *what,
    ngx_int_t rc, PGresult *res);


char *
ngx_ocdz_outbox_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    ngx_int_t   stmt;
    ngx_uint_t  i;

    if (!omcf->outbox) {
        if (omcf->webhook_url.len || omcf->webhook_secret.len) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "ocdz_webhook_url and "
                               "ocdz_webhook_secret_file are used only "
                               "with \"ocdz_outbox on\"");
        }

        return NGX_CONF_OK;
    }

    if (omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_outbox on\" needs \"ocdz_db\": "
                           "deliveries are leased and recorded in "
                           "PostgreSQL");
        return NGX_CONF_ERROR;
    }

    if (omcf->pg->background_max == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_outbox on\" needs at least one "
                           "database connection "
                           "(\"ocdz_poller_db_connections\")");
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_concurrency == 0
        || omcf->outbox_concurrency > NGX_OCDZ_PG_MAX_BATCH)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_concurrency must be from 1 to %d",
                           NGX_OCDZ_PG_MAX_BATCH);
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_attempts == 0 || omcf->outbox_attempts > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_attempts must be from 1 to 1000");
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_interval < NGX_OCDZ_OUTBOX_INTERVAL_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_interval is too short: at least "
                           "%dms", NGX_OCDZ_OUTBOX_INTERVAL_MIN);
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_backoff == 0
        || omcf->outbox_max_backoff < omcf->outbox_backoff)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_backoff must be more than 0 and "
                           "at most ocdz_outbox_max_backoff");
        return NGX_CONF_ERROR;
    }

    if (omcf->webhook_timeout == 0
        || omcf->outbox_lease <= omcf->webhook_timeout)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_lease must be longer than "
                           "ocdz_webhook_timeout (and that more than 0): "
                           "a send must end before another worker may "
                           "take its delivery over");
        return NGX_CONF_ERROR;
    }

    if (omcf->webhook_url.len) {

        if (!((omcf->webhook_url.len > 7
               && ngx_strncasecmp(omcf->webhook_url.data,
                                  (u_char *) "http://", 7) == 0)
              || (omcf->webhook_url.len > 8
                  && ngx_strncasecmp(omcf->webhook_url.data,
                                     (u_char *) "https://", 8) == 0))
            || ngx_strlchr(omcf->webhook_url.data,
                           omcf->webhook_url.data + omcf->webhook_url.len,
                           ' ')
            || ngx_strlchr(omcf->webhook_url.data,
                           omcf->webhook_url.data + omcf->webhook_url.len,
                           '\0'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_webhook_url must be an http:// or "
                               "https:// URL without spaces");
            return NGX_CONF_ERROR;
        }

        if (omcf->webhook_secret.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_webhook_url needs "
                               "\"ocdz_webhook_secret_file\": every "
                               "webhook is signed");
            return NGX_CONF_ERROR;
        }
    }

    for (i = 0; i < NGX_OCDZ_OB_COUNT; i++) {
        stmt = ngx_ocdz_pg_add_stmt(cf, omcf->pg, ngx_ocdz_outbox_sql[i],
                                    ngx_ocdz_outbox_nparams[i]);
        if (stmt == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        omcf->outbox_stmts[i] = stmt;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_ocdz_outbox_init_process(ngx_http_ocdz_worker_t *w)
{
    u_char                     *p;
    ngx_uint_t                  i;
    ngx_ocdz_outbox_t          *ob;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = w->omcf;

    ob = ngx_pcalloc(w->cycle->pool, sizeof(ngx_ocdz_outbox_t));
    if (ob == NULL) {
        return NGX_ERROR;
    }

    ob->omcf = omcf;
    ob->log = w->log;
    ob->pg = w->pg;
    ob->ident = (ngx_socket_t) -1;
    ob->curl = w->curl;
    ob->stmt = omcf->outbox_stmts;
    ob->nslots = omcf->outbox_concurrency;

    ob->slots = ngx_pcalloc(w->cycle->pool,
                            ob->nslots * sizeof(ngx_ocdz_outbox_slot_t));
    if (ob->slots == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ob->nslots; i++) {
        ob->slots[i].ob = ob;
        ocdz_buf_init(&ob->slots[i].body, &ocdz_alloc_std, 0);
    }

    /* for the sysadmin: which host and process holds a lease */

    p = ngx_snprintf((u_char *) ob->owner, sizeof(ob->owner) - 1, "%s:%P",
                     ngx_cycle->hostname.data ? ngx_cycle->hostname.data
                                              : (u_char *) "",
                     ngx_pid);
    *p = '\0';

    ngx_sprintf((u_char *) ob->p_lease_ms, "%M%Z", omcf->outbox_lease);

    ob->event.handler = ngx_ocdz_outbox_handler;
    ob->event.data = ob;
    ob->event.log = ob->log;
    ob->event.cancelable = 1;

    w->outbox = ob;

    /* workers started together do not lease together */

    ngx_add_timer(&ob->event, 100 + (ngx_msec_t) ngx_random()
                              % omcf->outbox_interval);

    return NGX_OK;
}


void
ngx_ocdz_outbox_shutdown(ngx_http_ocdz_worker_t *w)
{
    ngx_ocdz_outbox_t  *ob;

    ob = w->outbox;

    if (ob == NULL || ob->exiting) {
        return;
    }

    ob->exiting = 1;

    if (ob->event.timer_set) {
        ngx_del_timer(&ob->event);
    }

    /* a lease on its way is answered and its rows sent, or it expires */
}


void
ngx_ocdz_outbox_exit_process(ngx_http_ocdz_worker_t *w)
{
    ngx_uint_t               i;
    ngx_ocdz_outbox_t       *ob;
    ngx_ocdz_outbox_slot_t  *slot;

    ob = w->outbox;

    if (ob == NULL) {
        return;
    }

    w->outbox = NULL;
    ob->exiting = 1;

    if (ob->event.timer_set) {
        ngx_del_timer(&ob->event);
    }

    if (ob->event.posted) {
        ngx_delete_posted_event(&ob->event);
    }

    ngx_ocdz_pg_abandon(&ob->lease_q);

    /* leases still held expire: those rows are sent again */

    for (i = 0; i < ob->nslots; i++) {
        slot = &ob->slots[i];

        ngx_ocdz_pg_abandon(&slot->q);
        ngx_ocdz_outbox_free_send(slot);
        ocdz_buf_free(&slot->body);
    }

    ocdz_wipe(ob->lease, sizeof(ob->lease));
}


/* the timer: outcomes the pool declined, then a new lease */

static void
ngx_ocdz_outbox_handler(ngx_event_t *ev)
{
    ngx_uint_t               i;
    ngx_ocdz_outbox_t       *ob;
    ngx_ocdz_outbox_slot_t  *slot;

    ob = ev->data;

    for (i = 0; i < ob->nslots; i++) {
        slot = &ob->slots[i];

        if (slot->state == NGX_OCDZ_OB_DECIDED) {
            ngx_ocdz_outbox_write(slot);
        }
    }

    if (ob->exiting) {
        return;
    }

    if (!ob->leasing) {
        ngx_ocdz_outbox_lease(ob);
    }

    if (!ob->event.timer_set) {
        ngx_add_timer(&ob->event, ob->omcf->outbox_interval);
    }
}


static void
ngx_ocdz_outbox_lease(ngx_ocdz_outbox_t *ob)
{
    u_char                rnd[NGX_OCDZ_OUTBOX_LEASE_BYTES];
    ngx_uint_t            i, nfree;
    ngx_int_t             rc;
    ngx_ocdz_pg_query_t  *q;

    nfree = 0;

    for (i = 0; i < ob->nslots; i++) {
        if (ob->slots[i].state == NGX_OCDZ_OB_FREE) {
            nfree++;
        }
    }

    if (nfree == 0) {
        return;
    }

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                      "ocdz outbox: RAND_bytes() failed");
        return;
    }

    *ngx_hex_dump((u_char *) ob->lease, rnd, sizeof(rnd)) = '\0';
    ngx_sprintf((u_char *) ob->p_limit, "%ui%Z", nfree);

    q = &ob->lease_q;

    q->stmt = ob->stmt[NGX_OCDZ_OB_LEASE];
    q->nparams = 4;
    q->values[0] = ob->p_limit;
    q->values[1] = ob->lease;
    q->values[2] = ob->p_lease_ms;
    q->values[3] = ob->owner;
    q->background = NGX_OCDZ_PG_BACKGROUND;
    q->handler = ngx_ocdz_outbox_leased;
    q->data = ob;
    q->log = ob->log;

    rc = ngx_ocdz_pg_send(ob->pg, q);

    if (rc == NGX_OK) {
        ob->leasing = 1;
    }
}


static void
ngx_ocdz_outbox_leased(ngx_ocdz_pg_query_t *q, ngx_int_t rc, PGresult *res)
{
    int                      n, i;
    ngx_uint_t               s;
    ngx_ocdz_outbox_t       *ob;
    ngx_ocdz_outbox_slot_t  *slot;

    ob = q->data;
    ob->leasing = 0;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        ngx_ocdz_outbox_db_error(ob, "lease", rc, res);
        return;
    }

    if (ob->db_failing) {
        ob->db_failing = 0;
        ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                      "ocdz outbox: the database answers again");
    }

    n = PQntuples(res);

    if (PQnfields(res) != NGX_OCDZ_OB_C_COUNT) {
        n = 0;
    }

    s = 0;

    for (i = 0; i < n; i++) {

        while (s < ob->nslots && ob->slots[s].state != NGX_OCDZ_OB_FREE) {
            s++;
        }

        if (s == ob->nslots) {
            /* cannot happen: we lease at most the free slots */
            break;
        }

        slot = &ob->slots[s];

        if (ngx_ocdz_outbox_take(slot, res, i) != NGX_OK) {
            continue;
        }

        ngx_ocdz_outbox_send(slot);
    }
}


/* copies one leased row into a slot */

static ngx_int_t
ngx_ocdz_outbox_take(ngx_ocdz_outbox_slot_t *slot, PGresult *res, int row)
{
    int           c;
    char         *v;
    size_t        len;
    ngx_int_t     n;
    unsigned      isnull;

    static const struct {
        size_t   off;
        size_t   size;
        ngx_uint_t  optional;
    } cols[NGX_OCDZ_OB_C_COUNT] = {
        { offsetof(ngx_ocdz_outbox_slot_t, id), NGX_INT64_LEN + 1, 0 },
        { offsetof(ngx_ocdz_outbox_slot_t, topup_id),
          NGX_OCDZ_OUTBOX_FIELD_MAX + 1, 0 },
        { offsetof(ngx_ocdz_outbox_slot_t, channel), 16, 0 },
        { offsetof(ngx_ocdz_outbox_slot_t, event), 32, 0 },
        { offsetof(ngx_ocdz_outbox_slot_t, subject), 16, 0 },
        { 0, 0, 0 },
        { 0, 0, 0 },
        { offsetof(ngx_ocdz_outbox_slot_t, ref),
          NGX_OCDZ_OUTBOX_FIELD_MAX + 1, 1 },
        { offsetof(ngx_ocdz_outbox_slot_t, num_trans),
          NGX_OCDZ_OUTBOX_FIELD_MAX + 1, 1 },
        { offsetof(ngx_ocdz_outbox_slot_t, s_msgid),
          NGX_OCDZ_OUTBOX_FIELD_MAX + 1, 1 },
        { offsetof(ngx_ocdz_outbox_slot_t, s_error),
          NGX_OCDZ_OUTBOX_FIELD_MAX + 1, 1 }
    };

    ngx_memcpy(slot->lease, slot->ob->lease, sizeof(slot->lease));

    for (c = 0; c < NGX_OCDZ_OB_C_COUNT; c++) {

        isnull = PQgetisnull(res, row, c);
        v = PQgetvalue(res, row, c);
        len = PQgetlength(res, row, c);

        if (c == NGX_OCDZ_OB_C_ATTEMPTS || c == NGX_OCDZ_OB_C_CREATED) {
            n = isnull ? NGX_ERROR : ngx_atoi((u_char *) v, len);
            if (n == NGX_ERROR) {
                goto bad;
            }

            if (c == NGX_OCDZ_OB_C_ATTEMPTS) {
                slot->attempts = n;

            } else {
                slot->created = (time_t) n;
            }

            continue;
        }

        if (isnull && !cols[c].optional) {
            goto bad;
        }

        /* a longer text is cut: the webhook core refuses it whole */

        len = ngx_min(len, cols[c].size - 1);
        ngx_memcpy((char *) slot + cols[c].off, v, len);
        ((char *) slot + cols[c].off)[len] = '\0';

        switch (c) {
        case NGX_OCDZ_OB_C_REF:
            slot->has_ref = !isnull;
            break;
        case NGX_OCDZ_OB_C_NUM_TRANS:
            slot->has_num_trans = !isnull;
            break;
        case NGX_OCDZ_OB_C_SUBJECT_MSGID:
            slot->has_s_msgid = !isnull;
            break;
        case NGX_OCDZ_OB_C_SUBJECT_ERROR:
            slot->has_s_error = !isnull;
            break;
        default:
            break;
        }
    }

    return NGX_OK;

bad:

    /* the lease expires; the row is leased again and reaches the limit */

    ngx_log_error(NGX_LOG_ERR, slot->ob->log, 0,
                  "ocdz outbox: a leased row is malformed (column %d)", c);

    return NGX_ERROR;
}


/* a leased row: its send, or its outcome at once */

static void
ngx_ocdz_outbox_send(ngx_ocdz_outbox_slot_t *slot)
{
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

    if (slot->attempts > (ngx_int_t) omcf->outbox_attempts) {
        ngx_ocdz_outbox_decide(slot, "failed",
                               "gave up: the last attempt did not finish "
                               "(the worker stopped)");
        return;
    }

    if (ngx_strcmp(slot->channel, "webhook") == 0) {

        if (omcf->webhook_url.len == 0) {
            ngx_ocdz_outbox_decide(slot, "skipped",
                                   "no ocdz_webhook_url configured");
            return;
        }

        if (ngx_ocdz_outbox_webhook(slot) == NGX_OK) {
            slot->state = NGX_OCDZ_OB_SENDING;
        }

        return;
    }

    /* email and sms: not sent by this version of the module */

    ngx_ocdz_outbox_decide(slot, "skipped",
                           ngx_strcmp(slot->channel, "email") == 0
                           ? "no email channel configured"
                           : "no sms channel configured");
}


static ngx_int_t
ngx_ocdz_outbox_webhook(ngx_ocdz_outbox_slot_t *slot)
{
    char                        err[128];
    char                        id[OCDZ_WH_ID_LEN + 1];
    char                        sig[OCDZ_WH_SIGNATURE_SIZE];
    char                        hdr[OCDZ_WH_SIGNATURE_SIZE + 64];
    CURL                       *easy;
    CURLcode                    rc;
    ngx_int_t                   e;
    struct curl_slist          *h, *l;
    ocdz_webhook_event_t        ev;
    ngx_http_ocdz_main_conf_t  *omcf;

    static const char  *events[OCDZ_WH_EVENT_N] = {
        "order.fulfilled", "order.refunded", "order.error",
        "delivery.sent", "delivery.failed"
    };

    omcf = slot->ob->omcf;

    ngx_memzero(&ev, sizeof(ocdz_webhook_event_t));

    for (e = 0; e < OCDZ_WH_EVENT_N; e++) {
        if (ngx_strcmp(slot->event, events[e]) == 0) {
            break;
        }
    }

    if (e == OCDZ_WH_EVENT_N) {
        ngx_ocdz_outbox_decide(slot, "failed", "unknown webhook event");
        return NGX_DECLINED;
    }

    ev.event = (ocdz_wh_event_e) e;
    ev.topup_id.data = (u_char *) slot->topup_id;
    ev.topup_id.len = ngx_strlen(slot->topup_id);
    ev.time = slot->created;

    if (slot->has_ref) {
        ev.ref.data = (u_char *) slot->ref;
        ev.ref.len = ngx_strlen(slot->ref);
    }

    if (slot->has_num_trans) {
        ev.num_trans.data = (u_char *) slot->num_trans;
        ev.num_trans.len = ngx_strlen(slot->num_trans);
    }

    if (ev.event == OCDZ_WH_DELIVERY_SENT
        || ev.event == OCDZ_WH_DELIVERY_FAILED)
    {
        ev.channel.data = (u_char *) slot->subject;
        ev.channel.len = ngx_strlen(slot->subject);

        if (slot->has_s_msgid) {
            ev.message_id.data = (u_char *) slot->s_msgid;
            ev.message_id.len = ngx_strlen(slot->s_msgid);
        }

        if (slot->has_s_error && ev.event == OCDZ_WH_DELIVERY_FAILED) {
            ev.error.data = (u_char *) slot->s_error;
            ev.error.len = ngx_strlen(slot->s_error);
        }
    }

    err[0] = '\0';

    if (ocdz_webhook_event_id(&ev, id, sizeof(id)) != OCDZ_MSG_OK
        || ocdz_webhook_body(&ev, &slot->body, err, sizeof(err))
           != OCDZ_MSG_OK)
    {
        if (slot->body.error == OCDZ_MSG_ERR_NOMEM) {
            ngx_ocdz_outbox_retry(slot, "out of memory", -1);
            return NGX_DECLINED;
        }

        ngx_ocdz_outbox_decide(slot, "failed",
                               err[0] ? err : "the event is malformed");
        return NGX_DECLINED;
    }

    if (ocdz_webhook_sign(omcf->webhook_secret.data,
                          omcf->webhook_secret.len, ngx_time(),
                          slot->body.data, slot->body.len, sig, sizeof(sig))
        != OCDZ_WH_OK)
    {
        ngx_ocdz_outbox_decide(slot, "failed", "cannot sign the webhook");
        return NGX_DECLINED;
    }

    /* the headers: type, signature, the event id for the receiver */

    h = curl_slist_append(NULL, "Content-Type: application/json");
    l = h;

    ngx_sprintf((u_char *) hdr, OCDZ_WH_SIGNATURE_HEADER ": %s%Z", sig);
    l = l ? curl_slist_append(l, hdr) : NULL;
    ngx_sprintf((u_char *) hdr, OCDZ_WH_ID_HEADER ": %s%Z", id);
    l = l ? curl_slist_append(l, hdr) : NULL;
    l = l ? curl_slist_append(l, "Expect:") : NULL;

    if (l == NULL) {
        curl_slist_free_all(h);
        ngx_ocdz_outbox_retry(slot, "out of memory", -1);
        return NGX_DECLINED;
    }

    slot->headers = h;

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "curl_easy_init() failed", -1);
        return NGX_DECLINED;
    }

    slot->easy = easy;
    slot->reply_len = 0;
    slot->retry_after = -1;
    slot->curl_error[0] = '\0';

    rc = curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

#define ngx_ocdz_setopt(opt, val)                                            \
    if (rc == CURLE_OK) {                                                    \
        rc = curl_easy_setopt(easy, opt, val);                               \
    }

    ngx_ocdz_setopt(CURLOPT_URL, (char *) omcf->webhook_url.data);
    ngx_ocdz_setopt(CURLOPT_POST, 1L);
    ngx_ocdz_setopt(CURLOPT_POSTFIELDS, (char *) slot->body.data);
    ngx_ocdz_setopt(CURLOPT_POSTFIELDSIZE, (long) slot->body.len);
    ngx_ocdz_setopt(CURLOPT_HTTPHEADER, slot->headers);
    ngx_ocdz_setopt(CURLOPT_TIMEOUT_MS, (long) omcf->webhook_timeout);
    ngx_ocdz_setopt(CURLOPT_CONNECTTIMEOUT_MS, (long) omcf->webhook_timeout);

#if (LIBCURL_VERSION_NUM >= 0x075500)
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS_STR, "http,https");
#else
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS,
                    (long) (CURLPROTO_HTTP|CURLPROTO_HTTPS));
#endif

    /* a redirect is an answer that is not 2xx: retried, never followed */
    ngx_ocdz_setopt(CURLOPT_FOLLOWLOCATION, 0L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYPEER, 1L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYHOST, 2L);
    ngx_ocdz_setopt(CURLOPT_PROXY, "");
    ngx_ocdz_setopt(CURLOPT_USERAGENT, "ngx_http_ocdz_module/"
                                       NGX_HTTP_OCDZ_VERSION);
    ngx_ocdz_setopt(CURLOPT_WRITEFUNCTION, ngx_ocdz_outbox_reply);
    ngx_ocdz_setopt(CURLOPT_WRITEDATA, slot);
    ngx_ocdz_setopt(CURLOPT_HEADERFUNCTION, ngx_ocdz_outbox_header);
    ngx_ocdz_setopt(CURLOPT_HEADERDATA, slot);
    ngx_ocdz_setopt(CURLOPT_ERRORBUFFER, slot->curl_error);

#undef ngx_ocdz_setopt

    if (rc != CURLE_OK
        || ngx_ocdz_curl_start(slot->ob->curl, easy, ngx_ocdz_outbox_sent,
                               slot)
           != NGX_OK)
    {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "cannot start the transfer", -1);
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, slot->ob->log, 0,
                   "ocdz outbox: webhook %s %s for %s started",
                   slot->event, id, slot->topup_id);

    return NGX_OK;
}


/* the receiver's reply is read and dropped, up to a cap */

static size_t
ngx_ocdz_outbox_reply(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t                   n;
    ngx_ocdz_outbox_slot_t  *slot;

    slot = userdata;
    n = size * nmemb;

    if (n > NGX_OCDZ_OUTBOX_REPLY_MAX - slot->reply_len) {
        return 0;
    }

    slot->reply_len += n;

    return n;
}


/* Retry-After in seconds (a date is taken as the backoff's own) */

static size_t
ngx_ocdz_outbox_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    u_char                  *p, *last;
    size_t                   n;
    time_t                   t;
    ngx_int_t                s;
    ngx_ocdz_outbox_slot_t  *slot;

    slot = userdata;
    n = size * nmemb;

    p = (u_char *) ptr;
    last = p + n;

    if (n >= 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        slot->retry_after = -1;
        return n;
    }

    if (n <= sizeof("Retry-After:") - 1
        || ngx_strncasecmp(p, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1) != 0)
    {
        return n;
    }

    p += sizeof("Retry-After:") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' ' || last[-1] == '\t'))
    {
        last--;
    }

    if (p == last) {
        return n;
    }

    s = ngx_atoi(p, last - p);

    if (s != NGX_ERROR) {
        slot->retry_after = s;
        return n;
    }

    t = ngx_parse_http_time(p, last - p);

    if (t != NGX_ERROR) {
        slot->retry_after = (t > ngx_time()) ? t - ngx_time() : 0;
    }

    return n;
}


static void
ngx_ocdz_outbox_sent(CURL *easy, CURLcode rc, void *data)
{
    long                     http;
    char                     err[64];
    ngx_ocdz_outbox_slot_t  *slot;

    slot = data;

    http = 0;
    (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);

    slot->state = NGX_OCDZ_OB_FREE;

    if (rc == CURLE_OK && http >= 200 && http < 300) {
        ngx_log_error(NGX_LOG_INFO, slot->ob->log, 0,
                      "ocdz outbox: webhook %s for %s sent (HTTP %l)",
                      slot->event, slot->topup_id, http);
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_decide(slot, "sent", NULL);
        return;
    }

    /* curl's code text, not its message: that may name the URL */

    if (rc == CURLE_OK) {
        ngx_sprintf((u_char *) err, "HTTP %l%Z", http);

    } else {
        ngx_cpystrn((u_char *) err, (u_char *) curl_easy_strerror(rc),
                    sizeof(err));
    }

    ngx_ocdz_outbox_free_send(slot);
    ngx_ocdz_outbox_retry(slot, err,
                          (rc == CURLE_OK) ? slot->retry_after : -1);
}


/* a failed attempt: again after the backoff, or failed at the limit */

static void
ngx_ocdz_outbox_retry(ngx_ocdz_outbox_slot_t *slot, const char *error,
    time_t retry_after)
{
    ngx_msec_t                  delay;
    ngx_uint_t                  i;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

    if (slot->attempts >= (ngx_int_t) omcf->outbox_attempts) {
        ngx_log_error(NGX_LOG_WARN, slot->ob->log, 0,
                      "ocdz outbox: %s %s for %s failed after %i "
                      "attempts: %s", slot->channel, slot->event,
                      slot->topup_id, slot->attempts, error);
        ngx_ocdz_outbox_decide(slot, "failed", error);
        return;
    }

    delay = omcf->outbox_backoff;

    for (i = 1; i < (ngx_uint_t) slot->attempts
                && delay < omcf->outbox_max_backoff; i++)
    {
        delay *= 2;
    }

    if (retry_after >= 0) {
        delay = (retry_after > (time_t) (omcf->outbox_max_backoff / 1000))
                ? omcf->outbox_max_backoff
                : (ngx_msec_t) retry_after * 1000;
    }

    delay = ngx_min(delay, omcf->outbox_max_backoff);

    ngx_log_error(NGX_LOG_NOTICE, slot->ob->log, 0,
                  "ocdz outbox: %s %s for %s: attempt %i failed (%s), "
                  "again in %Mms", slot->channel, slot->event,
                  slot->topup_id, slot->attempts, error, delay);

    ngx_sprintf((u_char *) slot->p_next, "%M%Z", delay);
    ngx_ocdz_outbox_decide(slot, "pending", error);
}


static void
ngx_ocdz_outbox_decide(ngx_ocdz_outbox_slot_t *slot, const char *state,
    const char *error)
{
    slot->out_state = state;

    if (ngx_strcmp(state, "pending") != 0) {
        slot->p_next[0] = '\0';
    }

    if (error) {
        ngx_cpystrn((u_char *) slot->p_error, (u_char *) error,
                    sizeof(slot->p_error));

    } else {
        slot->p_error[0] = '\0';
    }

    if (ngx_strcmp(state, "skipped") == 0) {
        ngx_log_error(NGX_LOG_INFO, slot->ob->log, 0,
                      "ocdz outbox: %s %s for %s skipped: %s",
                      slot->channel, slot->event, slot->topup_id, error);
    }

    slot->state = NGX_OCDZ_OB_DECIDED;

    ngx_ocdz_outbox_write(slot);
}


/*
 * The outcome, foreground: a graceful shutdown waits for it, so that a
 * confirmed send is recorded and never sent again.
 */

static void
ngx_ocdz_outbox_write(ngx_ocdz_outbox_slot_t *slot)
{
    ngx_ocdz_outbox_t    *ob;
    ngx_ocdz_pg_query_t  *q;

    ob = slot->ob;
    q = &slot->q;

    ngx_memzero(q, sizeof(ngx_ocdz_pg_query_t));

    q->stmt = ob->stmt[NGX_OCDZ_OB_OUTCOME];
    q->nparams = 6;
    q->values[0] = slot->id;
    q->values[1] = slot->lease;
    q->values[2] = slot->out_state;
    q->values[3] = slot->p_next[0] ? slot->p_next : NULL;
    q->values[4] = slot->p_error[0] ? slot->p_error : NULL;
    q->values[5] = NULL;
    q->background = NGX_OCDZ_PG_FOREGROUND;
    q->handler = ngx_ocdz_outbox_written;
    q->data = slot;
    q->log = ob->log;

    if (ngx_ocdz_pg_send(ob->pg, q) == NGX_OK) {
        slot->state = NGX_OCDZ_OB_WRITING;
        return;
    }

    /* not now: the timer tries again (it runs while the worker lives) */

    slot->state = NGX_OCDZ_OB_DECIDED;

    if (!ob->event.timer_set) {
        ngx_add_timer(&ob->event, ob->omcf->outbox_interval);
    }
}


static void
ngx_ocdz_outbox_written(ngx_ocdz_pg_query_t *q, ngx_int_t rc, PGresult *res)
{
    ngx_ocdz_outbox_t       *ob;
    ngx_ocdz_outbox_slot_t  *slot;

    slot = q->data;
    ob = slot->ob;

    if (rc != NGX_OCDZ_PG_OK || res == NULL) {
        ngx_ocdz_outbox_db_error(ob, "outcome", rc, res);

        /* the lease expires and the row is sent again: at least once */

        slot->state = NGX_OCDZ_OB_FREE;
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                      "ocdz outbox: %s %s for %s: the lease had expired "
                      "and was taken over; outcome not written",
                      slot->channel, slot->event, slot->topup_id);
    }

    slot->state = NGX_OCDZ_OB_FREE;

    /* a slot is free: lease again soon, not after a whole interval */

    if (!ob->exiting && !ob->leasing && ob->event.timer_set
        && !ob->event.posted)
    {
        ngx_del_timer(&ob->event);
        ngx_add_timer(&ob->event, 1);
    }
}


static void
ngx_ocdz_outbox_free_send(ngx_ocdz_outbox_slot_t *slot)
{
    if (slot->easy) {
        if (slot->state == NGX_OCDZ_OB_SENDING) {
            ngx_ocdz_curl_stop(slot->ob->curl, slot->easy);
        }

        curl_easy_cleanup(slot->easy);
        slot->easy = NULL;
    }

    if (slot->headers) {
        curl_slist_free_all(slot->headers);
        slot->headers = NULL;
    }

    ocdz_buf_reset(&slot->body);
}


static void
ngx_ocdz_outbox_db_error(ngx_ocdz_outbox_t *ob, const char *what,
    ngx_int_t rc, PGresult *res)
{
    if (rc == NGX_OCDZ_PG_QUERY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ob->log, 0,
                      "ocdz outbox: the database refused the %s "
                      "statement (SQLSTATE %s): run sql/ocdz.sql",
                      what, ngx_ocdz_pg_sqlstate(res));
        return;
    }

    if (!ob->db_failing) {
        ob->db_failing = 1;
        ngx_log_error(NGX_LOG_WARN, ob->log, 0,
                      "ocdz outbox: the database is unavailable (%s): "
                      "deliveries wait", what);
    }
}
