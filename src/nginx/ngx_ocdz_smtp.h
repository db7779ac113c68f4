/*
 * An SMTP client on nginx events: one message per connection, as nginx's
 * mail proxy speaks SMTP. libcurl's SMTP reads the reply to the end of
 * the data blocking (7.88), which would hold a worker for as long as a
 * server stays silent; here every step is an event.
 *
 * The session: greeting, EHLO (HELO when EHLO is not recognized),
 * STARTTLS for smtp:// (required: without it nothing but EHLO is sent)
 * or TLS from the start for smtps://, the certificate checked against
 * the CA and the host name, EHLO again, AUTH PLAIN or LOGIN when
 * credentials are given and the server offers AUTH, MAIL, RCPT, DATA,
 * the message dot-stuffed, the end of the data, QUIT. One timer bounds
 * the whole send.
 *
 * Nothing of the message, the credentials or the commands is logged.
 */

#ifndef _NGX_OCDZ_SMTP_H_INCLUDED_
#define _NGX_OCDZ_SMTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_http_ocdz_module.h"


#if !(NGX_SSL)
#error ngx_http_ocdz_module needs nginx built with OpenSSL
#endif


#define NGX_OCDZ_SMTP_ERR_MAX      128     /* an error text, with NUL */


struct ngx_ocdz_smtp_conf_s {
    ngx_str_t                  host;      /* NUL-terminated, no [] */
    in_port_t                  port;
    ngx_str_t                  literal;   /* the host as an address
                                             ("127.0.0.1", "[::1]"), or
                                             empty: a name */
    ngx_str_t                  helo;      /* EHLO's argument */
    ngx_str_t                  user;      /* empty: no AUTH */
    ngx_str_t                  password;
    ngx_msec_t                 timeout;   /* the whole send */
    ngx_ssl_t                 *ssl;
    unsigned                   implicit_tls:1;  /* smtps:// */
};


typedef struct ngx_ocdz_smtp_s  ngx_ocdz_smtp_t;

/*
 * The outcome: NGX_OK when the server accepted the message (250 to the
 * end of the data); otherwise code is the server's error reply (4xx or
 * 5xx, 0 for none: no connection, TLS, a timeout, the connection lost)
 * and err says where, without the server's text, an address or a
 * credential.
 */
typedef void (*ngx_ocdz_smtp_done_pt)(void *data, ngx_int_t rc,
    ngx_uint_t code, const char *err);


/*
 * Configuration: url is smtp://host[:port][/helo] or smtps://...; the
 * EHLO name is the path, else helo. ca_pem (empty: the system's CAs)
 * makes the TLS context, cleaned with the cycle's pool.
 */
char *ngx_ocdz_smtp_conf(ngx_conf_t *cf, ngx_ocdz_smtp_conf_t *scf,
    ngx_str_t *url, ngx_str_t *ca_pem, ngx_str_t *helo);

/*
 * Sends one message to the first of addrs ("a,b", IPv6 in brackets)
 * that connects: from and rcpt are "<addr>", body the message with CRLF
 * line ends, kept by the caller until done. done is called once, never
 * from inside ngx_ocdz_smtp_send(); NULL is returned (and done not
 * called) when the send cannot start, with err set.
 */
ngx_ocdz_smtp_t *ngx_ocdz_smtp_send(ngx_ocdz_smtp_conf_t *scf,
    ngx_str_t *addrs, const char *from, const char *rcpt, ngx_str_t *body,
    ngx_log_t *log, ngx_ocdz_smtp_done_pt done, void *data, char *err);

/* Stops a send without calling done: the connection closed at once. */
void ngx_ocdz_smtp_abort(ngx_ocdz_smtp_t *s);


#endif /* _NGX_OCDZ_SMTP_H_INCLUDED_ */
