/*
 * One asynchronous PostgreSQL connection per worker that LISTENs.
 *
 * Kept out of the query pool: notifications arrive only on the
 * connection that listens and only outside a transaction. It connects
 * with the pool's conninfo (PQconnectStartParams, PQconnectPoll under
 * the pool's connect timeout), sends its SQL (the LISTEN and a query
 * whose one boolean says whether notifications are sent at all), then
 * reads notifications on read events (PQconsumeInput, PQnotifies).
 * Lost, it connects again after 1 s, doubling up to 30 s, on a
 * cancelable timer. Nothing here blocks.
 */

#ifndef _NGX_OCDZ_PG_LISTEN_H_INCLUDED_
#define _NGX_OCDZ_PG_LISTEN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include "ngx_ocdz_pg.h"


typedef struct ngx_ocdz_pg_listen_s  ngx_ocdz_pg_listen_t;


#define NGX_OCDZ_PG_LISTEN_NOTIFY   0   /* payload: the notification's */
#define NGX_OCDZ_PG_LISTEN_UP       1   /* listening; payload NULL */
#define NGX_OCDZ_PG_LISTEN_DOWN     2   /* not any more; payload NULL */


/*
 * event: NGX_OCDZ_PG_LISTEN_*; notified: with UP, the boolean of the
 * SQL (notifications are sent). Never called from inside create.
 */
typedef void (*ngx_ocdz_pg_listen_pt)(void *data, ngx_uint_t event,
    ngx_str_t *payload, ngx_uint_t notified);


/*
 * sql: NUL-terminated, static; sent as is (simple query protocol) on
 * every connection made; its last result must be one boolean. Returns
 * NULL on failure (logged). The first connection is made from a timer.
 */
ngx_ocdz_pg_listen_t *ngx_ocdz_pg_listen_create(ngx_cycle_t *cycle,
    ngx_ocdz_pg_conf_t *pgcf, const char *sql,
    ngx_ocdz_pg_listen_pt handler, void *data);

/* Closes the connection and its timer; the handler is not called. */
void ngx_ocdz_pg_listen_destroy(ngx_ocdz_pg_listen_t *l);

/* Listening now (UP was told and no DOWN since). */
ngx_uint_t ngx_ocdz_pg_listen_up(ngx_ocdz_pg_listen_t *l);


#endif /* _NGX_OCDZ_PG_LISTEN_H_INCLUDED_ */
