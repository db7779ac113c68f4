/*
 * The delivery outbox sender: each worker leases due rows of
 * ocdz.outbox in PostgreSQL (FOR UPDATE SKIP LOCKED, a lease token named
 * on every write), sends each on the curl glue and writes its outcome:
 * sent, retried later with backoff (Retry-After honoured), failed at the
 * attempt limit, or skipped with the reason.
 *
 * At least once: a row is never sent again after its success is
 * committed; a worker that dies between the send and the commit leaves
 * a lease that expires, and the row is sent again with the same event
 * id (the webhook's Ocdz-Event-Id), for the receiver to drop.
 *
 * Channels: the signed webhook (ocdz_webhook_url), SMS through an HTTP
 * gateway (ocdz_sms_gateway_url) and email over SMTP (ocdz_smtp_url).
 * Rows of a channel not configured are recorded as skipped with the
 * reason.
 */

#ifndef _NGX_OCDZ_OUTBOX_H_INCLUDED_
#define _NGX_OCDZ_OUTBOX_H_INCLUDED_


#include "ngx_http_ocdz_module.h"
#include "ocdz_webhook.h"


typedef struct ngx_ocdz_outbox_s  ngx_ocdz_outbox_t;


/*
 * Configuration (ngx_ocdz_outbox_conf.c): checks the settings, parses
 * the templates, registers the URLs' host names, then the statements
 * (ngx_ocdz_outbox_add_stmts()).
 */
char *ngx_ocdz_outbox_prepare(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);

/*
 * Configuration, for ngx_ocdz_outbox_prepare() once every check has
 * passed: registers the lease and outcome statements in omcf->pg (their
 * SQL stays in ngx_ocdz_outbox.c, with the run time that reads their
 * columns) and keeps their indexes in omcf->outbox_stmts. Returns NGX_OK
 * or NGX_ERROR (logged by the pool).
 */
ngx_int_t ngx_ocdz_outbox_add_stmts(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);

/* Worker: w->outbox, started; NGX_ERROR on failure (logged). */
ngx_int_t ngx_ocdz_outbox_init_process(ngx_http_ocdz_worker_t *w);

/*
 * A graceful shutdown begins: no more leases. The worker waits (a timer
 * that is not cancelable) for the sends in flight to finish and for
 * their outcomes to be written; one cut short is sent again after its
 * lease.
 */
void ngx_ocdz_outbox_shutdown(ngx_http_ocdz_worker_t *w);

/* Worker exit: stops everything; leases still held simply expire. */
void ngx_ocdz_outbox_exit_process(ngx_http_ocdz_worker_t *w);

/* The sends in flight of this worker (the status gauge). */
ngx_uint_t ngx_ocdz_outbox_sending(ngx_ocdz_outbox_t *ob);


#endif /* _NGX_OCDZ_OUTBOX_H_INCLUDED_ */
