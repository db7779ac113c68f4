
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
 * The webhook body has no field for a card code. An SMS opens the
 * stored card with the worker's cipher context only to render the
 * message, wipes the plaintext at once, and wipes the rendered body and
 * the gateway's reply when the transfer ends. Errors written to the
 * outbox are curl's code text, an HTTP status or a core's reason, never
 * a URL (it may carry credentials), a value or a reply body.
 *
 * The configuration is checked by the master in ngx_ocdz_outbox_conf.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/rand.h>

#include "ngx_ocdz_outbox.h"
#include "ngx_ocdz_curl.h"
#include "ngx_ocdz_resolve.h"
#include "ngx_ocdz_smtp.h"
#include "ngx_ocdz_status.h"
#include "ocdz_crypto.h"
#include "ocdz_sms.h"
#include "ocdz_mail.h"


#define NGX_OCDZ_OUTBOX_LEASE_BYTES  16     /* random, sent as hex */
#define NGX_OCDZ_OUTBOX_FIELD_MAX    256    /* a column kept from a row */
#define NGX_OCDZ_OUTBOX_ERR_MAX      200    /* last_error written */
#define NGX_OCDZ_OUTBOX_REPLY_MAX    65536  /* a receiver's reply read */
#define NGX_OCDZ_OUTBOX_GATHER       20     /* ms an outcome may wait for
                                               others */


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
    NGX_OCDZ_OB_C_CARD,
    NGX_OCDZ_OB_C_TYPE,
    NGX_OCDZ_OB_C_NUMBER,
    NGX_OCDZ_OB_C_VALUE,
    NGX_OCDZ_OB_C_DATE,
    NGX_OCDZ_OB_C_PHONE,
    NGX_OCDZ_OB_C_LANG,
    NGX_OCDZ_OB_C_EMAIL,
    NGX_OCDZ_OB_C_NO_CHANNELS,     /* the order's channels are NULL */
    NGX_OCDZ_OB_C_COUNT
};


static const char *ngx_ocdz_outbox_sql[NGX_OCDZ_OB_COUNT] = {

    /*
     * lease: $1 how many, $2 lease token, $3 lease (ms), $4 owner, $5
     * synchronous_commit. A row still "sending" whose lease expired was
     * cut short (the worker died): it is leased again, as the same event.
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
        "AND " NGX_OCDZ_PG_ASYNC_COMMIT("$5::text") " "
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
         "AND s.event = 'card'), "
        "r.card_enc, r.type, r.number, r.value::text, r.date_traitement, "
        "r.phone, r.lang, r.email, r.channels IS NULL",

    /*
     * outcome, in its array form (ngx_ocdz_pg_add_batch): element i of
     * each array for one slot, $1 id, $2 lease token, $3 state, $4 next
     * attempt in ms (NULL: unchanged), $5 last_error, $6 the provider's
     * message id, $7 synchronous_commit (the same in every element); one
     * row per element, in order: its id, or NULL when the lease was lost
     */
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[], "
        "$3::text[], $4::bigint[], $5::text[], $6::text[]) "
        "WITH ORDINALITY AS v(id, lease, state, next_ms, error, msgid, n)), "
    "u AS (UPDATE ocdz.outbox o SET "
        "state = v.state, "
        "next_attempt_at = CASE WHEN v.next_ms IS NULL "
            "THEN o.next_attempt_at "
            "ELSE now() + v.next_ms * interval '1 millisecond' END, "
        "last_error = v.error, "
        "message_id = coalesce(v.msgid, o.message_id), "
        "sent_at = CASE WHEN v.state = 'sent' THEN now() ELSE o.sent_at END, "
        "lease_token = NULL, lease_owner = NULL, lease_until = NULL, "
        "updated_at = now() "
        "FROM v WHERE o.id = v.id AND o.lease_token = v.lease "
        "AND " NGX_OCDZ_PG_ASYNC_COMMIT("($7::text[])[1]") " "
        "RETURNING o.id) "
    "SELECT u.id FROM v LEFT JOIN u ON u.id = v.id ORDER BY v.n"
};

static int  ngx_ocdz_outbox_nparams[NGX_OCDZ_OB_COUNT] = { 5, 7 };


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
    char                        card[OCDZ_RECORD_MAX + 1];  /* sealed */
    char                        type[8];
    char                        number[64];
    char                        value[16];
    char                        date[64];
    char                        phone[32];
    char                        lang[4];
    char                        email[OCDZ_MAIL_ADDR_MAX + 1];
    char                        no_channels[8];     /* "t": NULL, the
                                                       default channels */
    unsigned                    has_email:1;
    unsigned                    mail:1;         /* the send is an email */
    unsigned                    has_card:1;
    unsigned                    has_date:1;
    unsigned                    has_phone:1;
    unsigned                    has_lang:1;
    unsigned                    sms:1;          /* the send is an SMS */
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
    u_char                     *reply;          /* an SMS gateway's, up
                                                   to OCDZ_SMS_REPLY_MAX */
    char                        msgid[OCDZ_MAIL_MSGID_SIZE
                                      + OCDZ_SMS_ID_MAX];
    ngx_ocdz_smtp_t            *smtp;           /* an email's send */
    ngx_uint_t                  resolved;       /* the addresses'
                                                   generation it used */
    time_t                      retry_after;    /* seconds, or -1 */
    char                        curl_error[CURL_ERROR_SIZE];

    /* the outcome */
    ngx_msec_t                  started;        /* the transfer, 0: none */
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
    ngx_event_t                 hold;       /* not cancelable: a graceful
                                               shutdown waits for the
                                               sends in flight */
    ngx_ocdz_curl_t            *curl;
    ngx_uint_t                 *stmt;
    ocdz_cipher_t              *cipher;
    struct curl_slist          *sms_headers;    /* the token in one */
    ngx_ocdz_resolve_t         *resolve;        /* the URLs' hosts, or
                                                   NULL */

    ngx_ocdz_outbox_slot_t     *slots;
    ngx_uint_t                  nslots;

    ngx_ocdz_pg_query_t         lease_q;
    char                        p_limit[NGX_INT_T_LEN + 1];
    char                        p_lease_ms[NGX_INT_T_LEN + 1];
    char                        lease[2 * NGX_OCDZ_OUTBOX_LEASE_BYTES + 1];
    char                        owner[NGX_MAXHOSTNAMELEN + NGX_INT_T_LEN
                                      + 2];
    const char                 *sync_commit;    /* "off", or NULL: the
                                                   connection's own */
    ngx_msec_t                  leased_at;

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
static ngx_int_t ngx_ocdz_outbox_sms(ngx_ocdz_outbox_slot_t *slot);
static ngx_int_t ngx_ocdz_outbox_mail(ngx_ocdz_outbox_slot_t *slot);


/* the channels: an outbox row's channel, its URL directive, its sender */

typedef struct {
    const char                 *name;
    size_t                      url;         /* offset in the main conf */
    const char                 *unconfigured;
    ngx_int_t                 (*send)(ngx_ocdz_outbox_slot_t *slot);
} ngx_ocdz_outbox_channel_t;


static ngx_ocdz_outbox_channel_t  ngx_ocdz_outbox_channels[] = {
    { "webhook", offsetof(ngx_http_ocdz_main_conf_t, webhook_url),
      "no ocdz_webhook_url configured", ngx_ocdz_outbox_webhook },
    { "sms", offsetof(ngx_http_ocdz_main_conf_t, sms_url),
      "no sms channel configured", ngx_ocdz_outbox_sms },
    { "email", offsetof(ngx_http_ocdz_main_conf_t, smtp_url),
      "no email channel configured", ngx_ocdz_outbox_mail },
    { NULL, 0, NULL, NULL }
};
static ngx_int_t ngx_ocdz_outbox_open(ngx_ocdz_outbox_slot_t *slot,
    u_char *plain, size_t *plain_len, ocdz_tpl_vars_t *vars);
static ngx_int_t ngx_ocdz_outbox_post(ngx_ocdz_outbox_slot_t *slot,
    ngx_str_t *url, ngx_msec_t timeout, struct curl_slist *headers);
static void ngx_ocdz_outbox_bad_message(ngx_ocdz_outbox_slot_t *slot,
    int rc, const char *err);
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
static void ngx_ocdz_outbox_sms_id(ngx_ocdz_outbox_slot_t *slot);
static void ngx_ocdz_outbox_mailed(void *data, ngx_int_t rc,
    ngx_uint_t code, const char *err);
static ngx_int_t ngx_ocdz_outbox_sms_headers(ngx_ocdz_outbox_t *ob);
static void ngx_ocdz_outbox_wipe_headers(struct curl_slist *h);
static void ngx_ocdz_outbox_hold(ngx_ocdz_outbox_t *ob);
static void ngx_ocdz_outbox_hold_handler(ngx_event_t *ev);
static void ngx_ocdz_outbox_db_error(ngx_ocdz_outbox_t *ob, const char *what,
    ngx_int_t rc, PGresult *res);
static ngx_int_t ngx_ocdz_outbox_resolve(ngx_ocdz_outbox_slot_t *slot,
    CURL *easy, ngx_str_t *url);
static ngx_int_t ngx_ocdz_outbox_smtp_addrs(ngx_ocdz_outbox_slot_t *slot,
    ngx_str_t *addrs);


/*
 * The statements' SQL stays here, next to the lease's column enum and
 * the outcome's parameters it must match.
 */

ngx_int_t
ngx_ocdz_outbox_add_stmts(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    ngx_int_t              stmt;
    ngx_uint_t             i;
    ngx_ocdz_pg_gather_t   gather;

    /*
     * Outcomes that end while another foreground statement of this
     * worker runs (the reveals') wait up to NGX_OCDZ_OUTBOX_GATHER ms
     * for the others: one statement and one commit for them all.
     */

    gather.max = omcf->outbox_concurrency;
    gather.enough = omcf->outbox_concurrency;
    gather.wait = NGX_OCDZ_OUTBOX_GATHER;
    gather.nagle = 1;

    for (i = 0; i < NGX_OCDZ_OB_COUNT; i++) {
        stmt = (i == NGX_OCDZ_OB_OUTCOME)
               ? ngx_ocdz_pg_add_batch(cf, omcf->pg, ngx_ocdz_outbox_sql[i],
                                       ngx_ocdz_outbox_nparams[i], &gather)
               : ngx_ocdz_pg_add_stmt(cf, omcf->pg, ngx_ocdz_outbox_sql[i],
                                      ngx_ocdz_outbox_nparams[i]);
        if (stmt == NGX_ERROR) {
            return NGX_ERROR;
        }

        omcf->outbox_stmts[i] = stmt;
    }

    return NGX_OK;
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
    ob->cipher = w->cipher;
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

    /*
     * For the sysadmin: which host and process holds a lease. The cycle's
     * host name is not NUL-terminated.
     */

    p = ngx_snprintf((u_char *) ob->owner, sizeof(ob->owner) - 1, "%V:%P",
                     &w->cycle->hostname, ngx_pid);
    *p = '\0';

    ngx_sprintf((u_char *) ob->p_lease_ms, "%M%Z", omcf->outbox_lease);
    ob->sync_commit = omcf->outbox_sync_commit ? NULL : "off";

    ob->event.handler = ngx_ocdz_outbox_handler;
    ob->event.data = ob;
    ob->event.log = ob->log;
    ob->event.cancelable = 1;

    ob->hold.handler = ngx_ocdz_outbox_hold_handler;
    ob->hold.data = ob;
    ob->hold.log = ob->log;

    w->outbox = ob;

    /* libcurl resolves no name: the URLs' addresses come from here */

    if (omcf->outbox_resolve) {
        ob->resolve = ngx_ocdz_resolve_create(omcf->outbox_resolve, ob->log);
        if (ob->resolve == NULL) {
            return NGX_ERROR;
        }
    }

    if (omcf->sms_url.len) {
        if (ngx_ocdz_outbox_sms_headers(ob) != NGX_OK) {
            return NGX_ERROR;
        }
    }

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

    /*
     * Sends in flight finish and their outcomes are written: the worker
     * waits for them (curl's own timer is cancelable). A lease on its
     * way is answered and its rows sent the same way.
     */

    ngx_ocdz_outbox_hold(ob);
}


/*
 * While exiting: hold the worker as long as a send or its outcome runs,
 * no longer (the outcome is background work, whose timers nginx does not
 * wait for).
 */

static void
ngx_ocdz_outbox_hold(ngx_ocdz_outbox_t *ob)
{
    ngx_uint_t                  i, sending;
    ngx_msec_t                  t;
    ngx_http_ocdz_main_conf_t  *omcf;

    if (!ob->exiting) {
        return;
    }

    sending = 0;

    for (i = 0; i < ob->nslots; i++) {
        if (ob->slots[i].state == NGX_OCDZ_OB_SENDING
            || ob->slots[i].state == NGX_OCDZ_OB_WRITING)
        {
            sending++;
        }
    }

    if (sending == 0) {
        if (ob->hold.timer_set) {
            ngx_del_timer(&ob->hold);
        }

        return;
    }

    if (ob->hold.timer_set) {
        return;
    }

    /* the longest a send may take, and a second for its curl timer */

    omcf = ob->omcf;
    t = ngx_max(omcf->webhook_timeout,
                ngx_max(omcf->sms_timeout, omcf->smtp_timeout));

    ngx_add_timer(&ob->hold, t + 1000);
}


static void
ngx_ocdz_outbox_hold_handler(ngx_event_t *ev)
{
    ngx_ocdz_outbox_t  *ob;

    ob = ev->data;

    ngx_log_error(NGX_LOG_WARN, ob->log, 0,
                  "ocdz outbox: sends still running at exit; they are "
                  "sent again after their lease");
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

    if (ob->hold.timer_set) {
        ngx_del_timer(&ob->hold);
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

        if (slot->reply) {
            ngx_free(slot->reply);
            slot->reply = NULL;
        }
    }

    if (ob->sms_headers) {
        ngx_ocdz_outbox_wipe_headers(ob->sms_headers);
        ob->sms_headers = NULL;
    }

    if (ob->resolve) {
        ngx_ocdz_resolve_destroy(ob->resolve);
        ob->resolve = NULL;
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

    /* a worker just started: nginx's resolver answers first */

    if (!ob->leasing
        && (ob->resolve == NULL || ngx_ocdz_resolve_answered(ob->resolve)))
    {
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
    ngx_msec_t            elapsed;
    ngx_ocdz_pg_query_t  *q;
    ngx_ocdz_pg_counts_t  counts;

    nfree = 0;

    for (i = 0; i < ob->nslots; i++) {
        if (ob->slots[i].state == NGX_OCDZ_OB_FREE) {
            nfree++;
        }
    }

    if (nfree == 0) {
        return;
    }

    /*
     * Reveals come first: while they use the database in this worker,
     * leases are ocdz_outbox_yield apart, as nginx's cache loader sleeps
     * between its iterations; each takes every free slot.
     */

    if (ob->omcf->outbox_yield && !ob->exiting) {
        ngx_ocdz_pg_counts(ob->pg, &counts);

        elapsed = ngx_current_msec - ob->leased_at;

        if ((counts.busy_fg || counts.queued_fg)
            && elapsed < ob->omcf->outbox_yield)
        {
            if (ob->event.timer_set) {
                ngx_del_timer(&ob->event);
            }

            ngx_add_timer(&ob->event, ob->omcf->outbox_yield - elapsed);
            return;
        }
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
    q->nparams = 5;
    q->values[0] = ob->p_limit;
    q->values[1] = ob->lease;
    q->values[2] = ob->p_lease_ms;
    q->values[3] = ob->owner;
    q->values[4] = ob->sync_commit;
    q->background = NGX_OCDZ_PG_BACKGROUND;
    q->handler = ngx_ocdz_outbox_leased;
    q->data = ob;
    q->log = ob->log;

    rc = ngx_ocdz_pg_send(ob->pg, q);

    if (rc == NGX_OK) {
        ob->leasing = 1;
        ob->leased_at = ngx_current_msec;
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

    ngx_ocdz_outbox_hold(ob);
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

#define ngx_ocdz_col(field, optional)                                         \
    { offsetof(ngx_ocdz_outbox_slot_t, field),                               \
      sizeof(((ngx_ocdz_outbox_slot_t *) 0)->field), optional }

    static const struct {
        size_t      off;
        size_t      size;
        ngx_uint_t  optional;
    } cols[NGX_OCDZ_OB_C_COUNT] = {
        ngx_ocdz_col(id, 0),
        ngx_ocdz_col(topup_id, 0),
        ngx_ocdz_col(channel, 0),
        ngx_ocdz_col(event, 0),
        ngx_ocdz_col(subject, 0),
        { 0, 0, 0 },
        { 0, 0, 0 },
        ngx_ocdz_col(ref, 1),
        ngx_ocdz_col(num_trans, 1),
        ngx_ocdz_col(s_msgid, 1),
        ngx_ocdz_col(s_error, 1),
        ngx_ocdz_col(card, 1),
        ngx_ocdz_col(type, 0),
        ngx_ocdz_col(number, 0),
        ngx_ocdz_col(value, 0),
        ngx_ocdz_col(date, 1),
        ngx_ocdz_col(phone, 1),
        ngx_ocdz_col(lang, 1),
        ngx_ocdz_col(email, 1),
        ngx_ocdz_col(no_channels, 0)
    };

#undef ngx_ocdz_col

    slot->msgid[0] = '\0';

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
        case NGX_OCDZ_OB_C_CARD:
            slot->has_card = !isnull;
            break;
        case NGX_OCDZ_OB_C_DATE:
            slot->has_date = !isnull;
            break;
        case NGX_OCDZ_OB_C_PHONE:
            slot->has_phone = !isnull;
            break;
        case NGX_OCDZ_OB_C_LANG:
            slot->has_lang = !isnull;
            break;
        case NGX_OCDZ_OB_C_EMAIL:
            slot->has_email = !isnull;
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
    ngx_str_t                   *url;
    ngx_ocdz_outbox_channel_t   *ch;
    ngx_http_ocdz_main_conf_t   *omcf;

    omcf = slot->ob->omcf;
    slot->started = 0;

    if (slot->attempts > (ngx_int_t) omcf->outbox_attempts) {
        ngx_ocdz_outbox_decide(slot, "failed",
                               "gave up: the last attempt did not finish "
                               "(the worker stopped)");
        return;
    }

    /*
     * An order without channels wants ocdz_delivery_channels': the queue
     * trigger made a row for every channel, the sender skips the others.
     */

    if (slot->no_channels[0] == 't' && ngx_strcmp(slot->event, "card") == 0
        && ((ngx_strcmp(slot->channel, "email") == 0
             && !(omcf->delivery_channels & NGX_HTTP_OCDZ_CH_EMAIL))
            || (ngx_strcmp(slot->channel, "sms") == 0
                && !(omcf->delivery_channels & NGX_HTTP_OCDZ_CH_SMS))))
    {
        ngx_ocdz_outbox_decide(slot, "skipped",
                               "not among the default channels "
                               "(ocdz_delivery_channels)");
        return;
    }

    for (ch = ngx_ocdz_outbox_channels; ch->name; ch++) {

        if (ngx_strcmp(slot->channel, ch->name) != 0) {
            continue;
        }

        url = (ngx_str_t *) ((u_char *) omcf + ch->url);

        if (url->len == 0) {
            ngx_ocdz_outbox_decide(slot, "skipped", ch->unconfigured);
            return;
        }

        if (ch->send(slot) == NGX_OK) {
            slot->state = NGX_OCDZ_OB_SENDING;
            slot->started = ngx_current_msec;
        }

        return;
    }

    ngx_ocdz_outbox_decide(slot, "failed", "unknown channel");
}


static ngx_int_t
ngx_ocdz_outbox_webhook(ngx_ocdz_outbox_slot_t *slot)
{
    char                        err[128];
    char                        id[OCDZ_WH_ID_LEN + 1];
    char                        sig[OCDZ_WH_SIGNATURE_SIZE];
    char                        hdr[OCDZ_WH_SIGNATURE_SIZE + 64];
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
    slot->sms = 0;
    slot->mail = 0;

    if (ngx_ocdz_outbox_post(slot, &omcf->webhook_url, omcf->webhook_timeout,
                             slot->headers)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, slot->ob->log, 0,
                   "ocdz outbox: webhook %s %s for %s started",
                   slot->event, id, slot->topup_id);

    return NGX_OK;
}


/*
 * The card by SMS: the card opened, the text rendered and counted, the
 * plaintext wiped, the gateway's body rendered, the text wiped; the
 * body is wiped when the transfer ends.
 */

static ngx_int_t
ngx_ocdz_outbox_sms(ngx_ocdz_outbox_slot_t *slot)
{
    int                         rc;
    char                        err[256], key[OCDZ_TOPUP_ID_MAX + 8];
    u_char                      plain[OCDZ_PLAIN_MAX];
    size_t                      plain_len, n;
    ocdz_buf_t                  text;
    ocdz_tpl_vars_t             vars;
    ocdz_sms_count_t            count;
    ocdz_sms_gateway_t          g;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

    n = ngx_strlen(slot->phone);

    if (!slot->has_phone || n == 0) {
        ngx_ocdz_outbox_decide(slot, "skipped",
                               "the order has no phone number");
        return NGX_DECLINED;
    }

    if (!ocdz_sms_phone_valid((u_char *) slot->phone, n)) {
        ngx_ocdz_outbox_decide(slot, "skipped",
                               "the order's phone number is not valid");
        return NGX_DECLINED;
    }

    if (ngx_ocdz_outbox_open(slot, plain, &plain_len, &vars) != NGX_OK) {
        return NGX_DECLINED;
    }

    ocdz_buf_init(&text, &ocdz_alloc_std, 0);
    err[0] = '\0';

    rc = ocdz_sms_build(omcf->sms_text_tpl[vars.lang], &vars,
                        omcf->sms_max_parts,
                        &text, &count, err, sizeof(err));

    ocdz_wipe(plain, sizeof(plain));
    ocdz_wipe(&vars, sizeof(ocdz_tpl_vars_t));

    if (rc != OCDZ_MSG_OK) {
        ngx_ocdz_outbox_bad_message(slot, rc, err);
        return NGX_DECLINED;
    }

    ngx_snprintf((u_char *) key, sizeof(key), "%s-sms%Z", slot->topup_id);

    ngx_memzero(&g, sizeof(ocdz_sms_gateway_t));

    g.to.data = (u_char *) slot->phone;
    g.to.len = n;
    g.message.data = text.data;
    g.message.len = text.len;
    g.count = &count;
    g.sender.data = omcf->sms_sender.data;
    g.sender.len = omcf->sms_sender.len;
    g.idempotency_key.data = (u_char *) key;
    g.idempotency_key.len = ngx_strlen(key);
    g.topup_id.data = (u_char *) slot->topup_id;
    g.topup_id.len = ngx_strlen(slot->topup_id);

    rc = ocdz_sms_gateway_body(omcf->sms_body_tpl, &g, &slot->body, err,
                               sizeof(err));

    ocdz_buf_free(&text);

    if (rc != OCDZ_MSG_OK) {
        ngx_ocdz_outbox_bad_message(slot, rc, err);
        return NGX_DECLINED;
    }

    if (slot->reply == NULL) {
        slot->reply = ngx_alloc(OCDZ_SMS_REPLY_MAX, slot->ob->log);
        if (slot->reply == NULL) {
            ocdz_buf_reset(&slot->body);
            ngx_ocdz_outbox_retry(slot, "out of memory", -1);
            return NGX_DECLINED;
        }
    }

    slot->sms = 1;
    slot->mail = 0;

    if (ngx_ocdz_outbox_post(slot, &omcf->sms_url, omcf->sms_timeout,
                             slot->ob->sms_headers)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, slot->ob->log, 0,
                   "ocdz outbox: sms for %s started (%uz parts)",
                   slot->topup_id, count.parts);

    return NGX_OK;
}


/*
 * Opens the order's card into plain (OCDZ_PLAIN_MAX bytes) and fills
 * vars for its type and language; on failure the outcome is decided.
 * The caller wipes plain and vars as soon as the message is rendered.
 */

static ngx_int_t
ngx_ocdz_outbox_open(ngx_ocdz_outbox_slot_t *slot, u_char *plain,
    size_t *plain_len, ocdz_tpl_vars_t *vars)
{
    int                         rc;
    ocdz_lang_e                 lang;
    ocdz_card_type_e            type;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

    if (!slot->has_card) {
        ngx_ocdz_outbox_decide(slot, "failed",
                               "the order has no stored card");
        return NGX_DECLINED;
    }

    lang = OCDZ_LANG_EN;

    if (slot->has_lang && ngx_strcmp(slot->lang, "fr") == 0) {
        lang = OCDZ_LANG_FR;

    } else if (slot->has_lang && ngx_strcmp(slot->lang, "ar") == 0) {
        lang = OCDZ_LANG_AR;
    }

    type = (ngx_strcmp(slot->type, "4G") == 0) ? OCDZ_TYPE_4G
                                               : OCDZ_TYPE_ADSL;

    rc = ocdz_open(slot->ob->cipher, omcf->keyring, slot->topup_id,
                   ngx_strlen(slot->topup_id), slot->card,
                   ngx_strlen(slot->card), plain, OCDZ_PLAIN_MAX, plain_len,
                   NULL);

    if (rc != OCDZ_OK) {
        ngx_log_error(NGX_LOG_ERR, slot->ob->log, 0,
                      "ocdz outbox: the card of order %s does not open: %s",
                      slot->topup_id, ocdz_rc_str(rc));
        ngx_ocdz_outbox_decide(slot, "failed", "the card does not open");
        return NGX_DECLINED;
    }

    ocdz_tpl_vars_init(vars, &omcf->instructions, type, lang);

#define ngx_ocdz_var(var, str)                                               \
    vars->v[var].data = (u_char *) (str);                                    \
    vars->v[var].len = ngx_strlen(str)

    ngx_ocdz_var(OCDZ_VAR_NUMBER, slot->number);
    ngx_ocdz_var(OCDZ_VAR_VALUE, slot->value);
    ngx_ocdz_var(OCDZ_VAR_TOPUP_ID, slot->topup_id);

    if (slot->has_num_trans) {
        ngx_ocdz_var(OCDZ_VAR_NUM_TRANS, slot->num_trans);
    }

    if (slot->has_date) {
        ngx_ocdz_var(OCDZ_VAR_DATE, slot->date);
    }

#undef ngx_ocdz_var

    vars->v[OCDZ_VAR_CARD_CODE].data = plain;
    vars->v[OCDZ_VAR_CARD_CODE].len = *plain_len;

    return NGX_OK;
}


/*
 * The card by email: the card opened, the message built (MIME, the
 * Message-ID of the order and channel), the plaintext wiped; the
 * message is uploaded to the SMTP server (STARTTLS required with
 * smtp://) and wiped when the transfer ends.
 */

static ngx_int_t
ngx_ocdz_outbox_mail(ngx_ocdz_outbox_slot_t *slot)
{
    int                         rc;
    char                        err[256], rcpt[OCDZ_MAIL_ENVELOPE_SIZE];
    char                        from[OCDZ_MAIL_ENVELOPE_SIZE];
    u_char                      plain[OCDZ_PLAIN_MAX];
    size_t                      plain_len, n;
    ngx_str_t                   addrs, body;
    ocdz_mail_t                 m;
    ocdz_tpl_vars_t             vars;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

    n = ngx_strlen(slot->email);

    if (!slot->has_email || n == 0) {
        ngx_ocdz_outbox_decide(slot, "skipped",
                               "the order has no email address");
        return NGX_DECLINED;
    }

    err[0] = '\0';

    if (!ocdz_mail_addr_valid((u_char *) slot->email, n, err, sizeof(err))
        || ocdz_mail_envelope((u_char *) slot->email, n, rcpt, sizeof(rcpt))
           != OCDZ_MSG_OK
        || ocdz_mail_envelope(omcf->mail_from.data, omcf->mail_from.len,
                              from, sizeof(from))
           != OCDZ_MSG_OK)
    {
        ngx_ocdz_outbox_decide(slot, "skipped",
                               "the order's email address is not valid");
        return NGX_DECLINED;
    }

    ngx_memzero(&m, sizeof(ocdz_mail_t));

    m.to.data = (u_char *) slot->email;
    m.to.len = n;
    m.topup_id.data = (u_char *) slot->topup_id;
    m.topup_id.len = ngx_strlen(slot->topup_id);
    m.channel.data = (u_char *) "email";
    m.channel.len = sizeof("email") - 1;
    m.date = ngx_time();

    if (ocdz_mail_message_id(&omcf->mail_conf->domain, &m.topup_id, &m.channel,
                             slot->msgid, sizeof(slot->msgid))
        != OCDZ_MSG_OK)
    {
        slot->msgid[0] = '\0';
        ngx_ocdz_outbox_decide(slot, "failed", "no Message-ID for it");
        return NGX_DECLINED;
    }

    if (ngx_ocdz_outbox_open(slot, plain, &plain_len, &vars) != NGX_OK) {
        return NGX_DECLINED;
    }

    m.subject = omcf->mail_tpl[vars.lang][0];
    m.text = omcf->mail_tpl[vars.lang][1];
    m.html = omcf->mail_tpl[vars.lang][2];
    m.vars = &vars;

    rc = ocdz_mail_build(omcf->mail_conf, &m, &slot->body, err, sizeof(err));

    ocdz_wipe(plain, sizeof(plain));
    ocdz_wipe(&vars, sizeof(ocdz_tpl_vars_t));

    if (rc != OCDZ_MSG_OK) {
        ngx_ocdz_outbox_bad_message(slot, rc, err);
        return NGX_DECLINED;
    }

    if (ngx_ocdz_outbox_smtp_addrs(slot, &addrs) != NGX_OK) {
        return NGX_DECLINED;
    }

    slot->sms = 0;
    slot->mail = 1;
    slot->reply_len = 0;
    slot->retry_after = -1;

    body.data = slot->body.data;
    body.len = slot->body.len;

    slot->smtp = ngx_ocdz_smtp_send(omcf->smtp, &addrs, from, rcpt, &body,
                                    slot->ob->log, ngx_ocdz_outbox_mailed,
                                    slot, err);
    if (slot->smtp == NULL) {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, err, -1);
        return NGX_DECLINED;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, slot->ob->log, 0,
                   "ocdz outbox: email for %s started", slot->topup_id);

    return NGX_OK;
}


/* the SMTP server's addresses: the URL's, or its name's now */

static ngx_int_t
ngx_ocdz_outbox_smtp_addrs(ngx_ocdz_outbox_slot_t *slot, ngx_str_t *addrs)
{
    ngx_int_t                   index;
    ngx_ocdz_outbox_t          *ob;
    ngx_http_ocdz_main_conf_t  *omcf;

    ob = slot->ob;
    omcf = ob->omcf;

    if (omcf->smtp->literal.len) {
        *addrs = omcf->smtp->literal;
        return NGX_OK;
    }

    index = omcf->outbox_hosts[2];

    if (ob->resolve == NULL
        || ngx_ocdz_resolve_name_addrs(ob->resolve, index, addrs) != NGX_OK)
    {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "its host name has no address yet", -1);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* a message that cannot be built: permanent, but for memory */

static void
ngx_ocdz_outbox_bad_message(ngx_ocdz_outbox_slot_t *slot, int rc,
    const char *err)
{
    ocdz_buf_reset(&slot->body);

    if (rc == OCDZ_MSG_ERR_NOMEM) {
        ngx_ocdz_outbox_retry(slot, "out of memory", -1);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, slot->ob->log, 0,
                  "ocdz outbox: %s for %s cannot be built: %s",
                  slot->channel, slot->topup_id,
                  err[0] ? err : "refused");

    ngx_ocdz_outbox_decide(slot, "failed",
                           err[0] ? err : "the message cannot be built");
}


/* the SMS gateway's headers, one list per worker */

static ngx_int_t
ngx_ocdz_outbox_sms_headers(ngx_ocdz_outbox_t *ob)
{
    u_char                     *p;
    size_t                      len;
    struct curl_slist          *l, *h;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = ob->omcf;

    h = curl_slist_append(NULL, omcf->sms_body_json
                          ? "Content-Type: application/json"
                          : "Content-Type: "
                            "application/x-www-form-urlencoded");
    l = h ? curl_slist_append(h, "Expect:") : NULL;

    if (l && omcf->sms_token.len) {
        len = sizeof("Authorization: Bearer ") + omcf->sms_token.len;

        p = ngx_alloc(len, ob->log);
        if (p == NULL) {
            l = NULL;

        } else {
            ngx_sprintf(p, "Authorization: Bearer %V%Z", &omcf->sms_token);
            l = curl_slist_append(h, (char *) p);
            ocdz_wipe(p, len);
            ngx_free(p);
        }
    }

    if (l == NULL) {
        ngx_ocdz_outbox_wipe_headers(h);
        return NGX_ERROR;
    }

    ob->sms_headers = h;

    return NGX_OK;
}


/* a header list that may hold a token: wiped, then freed */

static void
ngx_ocdz_outbox_wipe_headers(struct curl_slist *h)
{
    struct curl_slist  *l;

    for (l = h; l; l = l->next) {
        ocdz_wipe(l->data, ngx_strlen(l->data));
    }

    curl_slist_free_all(h);
}


/* a POST of slot->body on the curl glue; on failure the outcome is
 * decided (retry) and NGX_DECLINED returned */

static ngx_int_t
ngx_ocdz_outbox_post(ngx_ocdz_outbox_slot_t *slot, ngx_str_t *url,
    ngx_msec_t timeout, struct curl_slist *headers)
{
    CURL                       *easy;
    CURLcode                    rc;
    struct curl_blob            ca;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = slot->ob->omcf;

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

    ngx_ocdz_setopt(CURLOPT_URL, (char *) url->data);
    ngx_ocdz_setopt(CURLOPT_POST, 1L);
    ngx_ocdz_setopt(CURLOPT_POSTFIELDS, (char *) slot->body.data);
    ngx_ocdz_setopt(CURLOPT_POSTFIELDSIZE, (long) slot->body.len);
    ngx_ocdz_setopt(CURLOPT_HTTPHEADER, headers);
    ngx_ocdz_setopt(CURLOPT_TIMEOUT_MS, (long) timeout);
    ngx_ocdz_setopt(CURLOPT_CONNECTTIMEOUT_MS, (long) timeout);

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

    if (omcf->outbox_ca_pem.len) {
        ca.data = omcf->outbox_ca_pem.data;
        ca.len = omcf->outbox_ca_pem.len;
        ca.flags = CURL_BLOB_NOCOPY;
        ngx_ocdz_setopt(CURLOPT_CAINFO_BLOB, &ca);
    }

    ngx_ocdz_setopt(CURLOPT_PROXY, "");
    ngx_ocdz_setopt(CURLOPT_USERAGENT, "ngx_http_ocdz_module/"
                                       NGX_HTTP_OCDZ_VERSION);
    ngx_ocdz_setopt(CURLOPT_WRITEFUNCTION, ngx_ocdz_outbox_reply);
    ngx_ocdz_setopt(CURLOPT_WRITEDATA, slot);
    ngx_ocdz_setopt(CURLOPT_HEADERFUNCTION, ngx_ocdz_outbox_header);
    ngx_ocdz_setopt(CURLOPT_HEADERDATA, slot);
    ngx_ocdz_setopt(CURLOPT_ERRORBUFFER, slot->curl_error);

#undef ngx_ocdz_setopt

    if (rc == CURLE_OK
        && ngx_ocdz_outbox_resolve(slot, easy, url) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    if (rc != CURLE_OK
        || ngx_ocdz_curl_start(slot->ob->curl, easy, ngx_ocdz_outbox_sent,
                               slot)
           != NGX_OK)
    {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "cannot start the transfer", -1);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The addresses of the URL's host as CURLOPT_RESOLVE: libcurl never
 * resolves it. After they changed, a new connection goes to the new
 * ones. On failure the outcome is decided (retry) and NGX_DECLINED
 * returned.
 */

static ngx_int_t
ngx_ocdz_outbox_resolve(ngx_ocdz_outbox_slot_t *slot, CURL *easy,
    ngx_str_t *url)
{
    CURLcode                    rc;
    ngx_int_t                   index;
    ngx_uint_t                  gen;
    ngx_ocdz_outbox_t          *ob;
    ngx_http_ocdz_main_conf_t  *omcf;

    ob = slot->ob;
    omcf = ob->omcf;

    if (ob->resolve == NULL) {
        return NGX_OK;
    }

    index = (url == &omcf->webhook_url) ? omcf->outbox_hosts[0]
            : (url == &omcf->sms_url) ? omcf->outbox_hosts[1]
            : omcf->outbox_hosts[2];

    if (index < 0) {
        /* an address in the URL */
        return NGX_OK;
    }

    if (!ngx_ocdz_resolve_name_ready(ob->resolve, index)) {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "its host name has no address yet", -1);
        return NGX_DECLINED;
    }

    rc = curl_easy_setopt(easy, CURLOPT_RESOLVE,
                          ngx_ocdz_resolve_list(ob->resolve, &gen));

    if (rc == CURLE_OK) {
        rc = curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT,
                              (long) (slot->resolved != gen));
        slot->resolved = gen;
    }

    if (rc != CURLE_OK) {
        ngx_ocdz_outbox_free_send(slot);
        ngx_ocdz_outbox_retry(slot, "cannot start the transfer", -1);
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* the receiver's reply: an SMS gateway's is kept for its message id */

static size_t
ngx_ocdz_outbox_reply(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t                   n;
    ngx_ocdz_outbox_slot_t  *slot;

    slot = userdata;
    n = size * nmemb;

    /*
     * A reply too long is not a failed send (failing it would send the
     * message again): the rest is dropped, and an SMS gateway's id may
     * then not be found.
     */

    if (slot->sms && slot->reply
        && slot->reply_len < OCDZ_SMS_REPLY_MAX)
    {
        ngx_memcpy(slot->reply + slot->reply_len, ptr,
                   ngx_min(n, OCDZ_SMS_REPLY_MAX - slot->reply_len));
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

        if (slot->sms && slot->ob->omcf->sms_reply_id.len) {
            ngx_ocdz_outbox_sms_id(slot);
        }

        ngx_log_error(NGX_LOG_INFO, slot->ob->log, 0,
                      "ocdz outbox: %s %s for %s sent (HTTP %l)",
                      slot->channel, slot->event, slot->topup_id, http);
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


/*
 * An email's outcome (ngx_ocdz_smtp.c): accepted by the 250 to the end
 * of the data; a 5xx reply at any step (greeting, EHLO, STARTTLS, AUTH,
 * MAIL, RCPT, DATA, the end of the data) is permanent, but 530
 * ("authentication required": the server wants AUTH it did not offer
 * yet); anything else (4xx, no connection, TLS, a timeout) is tried
 * again.
 */

static void
ngx_ocdz_outbox_mailed(void *data, ngx_int_t rc, ngx_uint_t code,
    const char *err)
{
    ngx_ocdz_outbox_slot_t  *slot;

    slot = data;

    slot->smtp = NULL;
    slot->state = NGX_OCDZ_OB_FREE;

    ngx_ocdz_outbox_free_send(slot);

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, slot->ob->log, 0,
                      "ocdz outbox: email for %s sent as %s",
                      slot->topup_id, slot->msgid);
        ngx_ocdz_outbox_decide(slot, "sent", NULL);
        return;
    }

    if (code >= 500 && code < 600 && code != 530) {
        ngx_log_error(NGX_LOG_WARN, slot->ob->log, 0,
                      "ocdz outbox: email for %s refused for good: %s",
                      slot->topup_id, err);
        ngx_ocdz_outbox_decide(slot, "failed", err);
        return;
    }

    ngx_ocdz_outbox_retry(slot, err, -1);
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
    ngx_ocdz_status_outbox(slot->ob->omcf->status, slot->channel, state,
                           slot->started);

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

    /* an exiting worker now waits for the outcome, or no longer */

    ngx_ocdz_outbox_hold(slot->ob);
}


/*
 * The outcome, on the background share of the pool like the lease, so
 * that a busy sender never takes the reveals' connections; a graceful
 * shutdown waits for it (ngx_ocdz_outbox_hold), so that a confirmed
 * send is recorded and never sent again.
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
    q->nparams = 7;
    q->values[0] = slot->id;
    q->values[1] = slot->lease;
    q->values[2] = slot->out_state;
    q->values[3] = slot->p_next[0] ? slot->p_next : NULL;
    q->values[4] = slot->p_error[0] ? slot->p_error : NULL;
    q->values[5] = slot->msgid[0] ? slot->msgid : NULL;
    q->values[6] = ob->sync_commit;
    q->background = NGX_OCDZ_PG_BACKGROUND;
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
        ngx_ocdz_outbox_hold(ob);
        return;
    }

    if (q->row >= PQntuples(res) || PQgetisnull(res, q->row, 0)) {
        ngx_log_error(NGX_LOG_NOTICE, ob->log, 0,
                      "ocdz outbox: %s %s for %s: the lease had expired "
                      "and was taken over; outcome not written",
                      slot->channel, slot->event, slot->topup_id);
    }

    slot->state = NGX_OCDZ_OB_FREE;
    ngx_ocdz_outbox_hold(ob);

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

    if (slot->smtp) {
        ngx_ocdz_smtp_abort(slot->smtp);
        slot->smtp = NULL;
    }

    if (slot->reply && slot->reply_len) {
        ocdz_wipe(slot->reply, ngx_min(slot->reply_len, OCDZ_SMS_REPLY_MAX));
    }

    slot->reply_len = 0;

    ocdz_buf_reset(&slot->body);
}


/* the gateway's message id, from its JSON reply */

static void
ngx_ocdz_outbox_sms_id(ngx_ocdz_outbox_slot_t *slot)
{
    char        err[128];
    ngx_str_t  *path;

    path = &slot->ob->omcf->sms_reply_id;
    err[0] = '\0';

    if (slot->reply_len > OCDZ_SMS_REPLY_MAX
        || ocdz_sms_reply_id(slot->reply, slot->reply_len,
                             (char *) path->data, slot->msgid,
                             sizeof(slot->msgid), err, sizeof(err))
           != OCDZ_MSG_OK)
    {
        slot->msgid[0] = '\0';

        ngx_log_error(NGX_LOG_NOTICE, slot->ob->log, 0,
                      "ocdz outbox: sms for %s sent, but no message id "
                      "at \"%V\" in the gateway's reply: %s",
                      slot->topup_id, path,
                      slot->reply_len > OCDZ_SMS_REPLY_MAX
                      ? "the reply is too long" : err);
    }
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


ngx_uint_t
ngx_ocdz_outbox_sending(ngx_ocdz_outbox_t *ob)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < ob->nslots; i++) {
        if (ob->slots[i].state == NGX_OCDZ_OB_SENDING) {
            n++;
        }
    }

    return n;
}
