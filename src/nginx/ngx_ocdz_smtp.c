
/*
 * ngx_http_ocdz_module: an SMTP client on nginx events (see
 * ngx_ocdz_smtp.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ngx_ocdz_smtp.h"


#define NGX_OCDZ_SMTP_REPLY_MAX    4096    /* a reply line, buffered */
#define NGX_OCDZ_SMTP_LINE_MAX     1024    /* a command we send */
#define NGX_OCDZ_SMTP_ADDRS        16
#define NGX_OCDZ_SMTP_CRED_MAX     512     /* user and password */


typedef enum {
    NGX_OCDZ_SMTP_CONNECT = 0,
    NGX_OCDZ_SMTP_GREETING,
    NGX_OCDZ_SMTP_EHLO,
    NGX_OCDZ_SMTP_HELO,
    NGX_OCDZ_SMTP_STARTTLS,
    NGX_OCDZ_SMTP_TLS,
    NGX_OCDZ_SMTP_AUTH,             /* AUTH PLAIN, or LOGIN's user asked */
    NGX_OCDZ_SMTP_AUTH_USER,        /* LOGIN's user sent */
    NGX_OCDZ_SMTP_AUTH_PASS,        /* the credentials sent */
    NGX_OCDZ_SMTP_MAIL,
    NGX_OCDZ_SMTP_RCPT,
    NGX_OCDZ_SMTP_DATA,
    NGX_OCDZ_SMTP_BODY              /* the message, then its reply */
} ngx_ocdz_smtp_state_e;


/* where a send was, for its error */
static const char  *ngx_ocdz_smtp_steps[] = {
    "connecting", "the greeting", "EHLO", "HELO", "STARTTLS",
    "the TLS handshake", "AUTH", "AUTH", "AUTH", "MAIL", "RCPT", "DATA",
    "the end of the data"
};


struct ngx_ocdz_smtp_s {
    ngx_ocdz_smtp_conf_t      *conf;
    ngx_pool_t                *pool;
    ngx_log_t                 *log;
    ngx_peer_connection_t      peer;
    ngx_ocdz_smtp_state_e      state;
    ngx_msec_t                 deadline;

    ngx_addr_t                 addrs[NGX_OCDZ_SMTP_ADDRS];
    ngx_uint_t                 naddrs;
    ngx_uint_t                 next_addr;

    char                      *from;
    char                      *rcpt;
    u_char                    *body;
    size_t                     body_len;
    size_t                     body_sent;

    u_char                     in[NGX_OCDZ_SMTP_REPLY_MAX];
    size_t                     in_len;
    u_char                     out[NGX_OCDZ_SMTP_LINE_MAX];
    size_t                     out_len;
    size_t                     out_sent;

    ngx_ocdz_smtp_done_pt      done;
    void                      *data;

    unsigned                   tls:1;
    unsigned                   starttls:1;      /* EHLO offers it */
    unsigned                   auth_plain:1;
    unsigned                   auth_login:1;
    unsigned                   line_start:1;    /* of the body */
    unsigned                   dot_sent:1;      /* its stuffing dot */
    unsigned                   eod_queued:1;
    unsigned                   out_secret:1;    /* wipe once sent */
};


static ngx_int_t ngx_ocdz_smtp_load_ca(ngx_conf_t *cf, ngx_ssl_t *ssl,
    ngx_str_t *pem);
static ngx_int_t ngx_ocdz_smtp_addrs(ngx_ocdz_smtp_t *s, ngx_str_t *addrs);
static ngx_int_t ngx_ocdz_smtp_connect(ngx_ocdz_smtp_t *s);
static void ngx_ocdz_smtp_connected(ngx_ocdz_smtp_t *s);
static void ngx_ocdz_smtp_read_handler(ngx_event_t *rev);
static void ngx_ocdz_smtp_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_ocdz_smtp_replies(ngx_ocdz_smtp_t *s);
static void ngx_ocdz_smtp_extension(ngx_ocdz_smtp_t *s, u_char *p,
    u_char *last);
static ngx_int_t ngx_ocdz_smtp_reply(ngx_ocdz_smtp_t *s, ngx_uint_t code);
static ngx_int_t ngx_ocdz_smtp_after_ehlo(ngx_ocdz_smtp_t *s);
static ngx_int_t ngx_ocdz_smtp_auth(ngx_ocdz_smtp_t *s);
static ngx_int_t ngx_ocdz_smtp_secret(ngx_ocdz_smtp_t *s,
    ngx_ocdz_smtp_state_e state, const char *verb, ngx_str_t *one,
    ngx_str_t *two);
static ngx_int_t ngx_ocdz_smtp_command(ngx_ocdz_smtp_t *s,
    ngx_ocdz_smtp_state_e state, const char *fmt, ...);
static ngx_int_t ngx_ocdz_smtp_flush(ngx_ocdz_smtp_t *s);
static ngx_int_t ngx_ocdz_smtp_tls(ngx_ocdz_smtp_t *s);
static void ngx_ocdz_smtp_tls_done(ngx_connection_t *c);
static void ngx_ocdz_smtp_finish(ngx_ocdz_smtp_t *s, ngx_int_t rc,
    ngx_uint_t code, const char *err);
static void ngx_ocdz_smtp_close(ngx_ocdz_smtp_t *s);


/* configuration */


char *
ngx_ocdz_smtp_conf(ngx_conf_t *cf, ngx_ocdz_smtp_conf_t *scf,
    ngx_str_t *url, ngx_str_t *ca_pem, ngx_str_t *helo)
{
    u_char              *p, *last, *host, *host_end, *colon;
    ngx_int_t            port;
    ngx_uint_t           skip;
    ngx_addr_t           addr;
    ngx_pool_cleanup_t  *cln;

    if (url->len > 8
        && ngx_strncasecmp(url->data, (u_char *) "smtps://", 8) == 0)
    {
        skip = 8;
        scf->implicit_tls = 1;
        scf->port = 465;

    } else {
        skip = 7;
        scf->implicit_tls = 0;
        scf->port = 25;
    }

    p = url->data + skip;
    last = url->data + url->len;

    /* the authority, then an optional path: the EHLO name */

    host = p;

    if (p < last && *p == '[') {
        host_end = ngx_strlchr(p, last, ']');
        if (host_end == NULL) {
            goto invalid;
        }

        host_end++;
        p = host_end;

    } else {
        while (p < last && *p != ':' && *p != '/') {
            p++;
        }

        host_end = p;
    }

    if (host_end == host) {
        goto invalid;
    }

    if (p < last && *p == ':') {
        colon = ++p;

        while (p < last && *p != '/') {
            p++;
        }

        port = ngx_atoi(colon, p - colon);
        if (port < 1 || port > 65535) {
            goto invalid;
        }

        scf->port = (in_port_t) port;
    }

    if (p < last && *p == '/') {
        p++;
    }

    if (p < last) {
        scf->helo.data = p;
        scf->helo.len = last - p;

        for ( /* void */ ; p < last; p++) {
            if (*p <= ' ' || *p >= 0x7f || *p == '/') {
                goto invalid;
            }
        }

    } else {
        scf->helo = *helo;
    }

    if (scf->helo.len == 0) {
        ngx_str_set(&scf->helo, "localhost");
    }

    /* the host: NUL-terminated, without brackets */

    if (*host == '[') {
        scf->host.len = host_end - host - 2;
        scf->host.data = ngx_pnalloc(cf->pool, scf->host.len + 1);
        if (scf->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(scf->host.data, host + 1, scf->host.len);

    } else {
        scf->host.len = host_end - host;
        scf->host.data = ngx_pnalloc(cf->pool, scf->host.len + 1);
        if (scf->host.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memcpy(scf->host.data, host, scf->host.len);
    }

    scf->host.data[scf->host.len] = '\0';

    if (ngx_parse_addr(cf->pool, &addr, scf->host.data, scf->host.len)
        == NGX_OK)
    {
        scf->literal.data = host;
        scf->literal.len = host_end - host;

    } else {
        ngx_str_null(&scf->literal);
    }

    if (scf->user.len + scf->password.len > NGX_OCDZ_SMTP_CRED_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_smtp_credentials_file: the user and "
                           "password are longer than %d bytes",
                           NGX_OCDZ_SMTP_CRED_MAX);
        return NGX_CONF_ERROR;
    }

    scf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (scf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    scf->ssl->log = cf->log;

    if (ngx_ssl_create(scf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(scf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = scf->ssl;

    if (ngx_ocdz_smtp_load_ca(cf, scf->ssl, ca_pem) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid ocdz_smtp_url \"%V\": smtp://host[:port]"
                       "[/ehlo-name] or smtps://...", url);
    return NGX_CONF_ERROR;
}


/* ocdz_smtp_ca_file's certificates, or the system's */

static ngx_int_t
ngx_ocdz_smtp_load_ca(ngx_conf_t *cf, ngx_ssl_t *ssl, ngx_str_t *pem)
{
    BIO         *bio;
    X509        *x509;
    ngx_uint_t   n;
    X509_STORE  *store;

    if (pem->len == 0) {
        if (SSL_CTX_set_default_verify_paths(ssl->ctx) != 1) {
            ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                          "ocdz_smtp_url: the system's CA certificates "
                          "cannot be loaded (ocdz_smtp_ca_file)");
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    bio = BIO_new_mem_buf(pem->data, (int) pem->len);
    if (bio == NULL) {
        return NGX_ERROR;
    }

    store = SSL_CTX_get_cert_store(ssl->ctx);
    n = 0;

    for ( ;; ) {
        x509 = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x509 == NULL) {
            break;
        }

        if (X509_STORE_add_cert(store, x509) == 1) {
            n++;
        }

        X509_free(x509);
    }

    ERR_clear_error();
    BIO_free(bio);

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_smtp_ca_file holds no certificate "
                           "OpenSSL can read");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* a send */


ngx_ocdz_smtp_t *
ngx_ocdz_smtp_send(ngx_ocdz_smtp_conf_t *scf, ngx_str_t *addrs,
    const char *from, const char *rcpt, ngx_str_t *body, ngx_log_t *log,
    ngx_ocdz_smtp_done_pt done, void *data, char *err)
{
    size_t            len;
    ngx_pool_t       *pool;
    ngx_ocdz_smtp_t  *s;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, log);
    if (pool == NULL) {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory",
                    NGX_OCDZ_SMTP_ERR_MAX);
        return NULL;
    }

    s = ngx_pcalloc(pool, sizeof(ngx_ocdz_smtp_t));
    if (s == NULL) {
        goto nomem;
    }

    s->conf = scf;
    s->pool = pool;
    s->log = log;
    s->done = done;
    s->data = data;
    s->body = body->data;
    s->body_len = body->len;
    s->line_start = 1;
    s->deadline = ngx_current_msec + scf->timeout;

    len = ngx_strlen(from) + 1;
    s->from = ngx_pnalloc(pool, len);
    if (s->from == NULL) {
        goto nomem;
    }

    ngx_memcpy(s->from, from, len);

    len = ngx_strlen(rcpt) + 1;
    s->rcpt = ngx_pnalloc(pool, len);
    if (s->rcpt == NULL) {
        goto nomem;
    }

    ngx_memcpy(s->rcpt, rcpt, len);

    if (ngx_ocdz_smtp_addrs(s, addrs) != NGX_OK) {
        ngx_cpystrn((u_char *) err, (u_char *) "the server's address "
                    "cannot be used", NGX_OCDZ_SMTP_ERR_MAX);
        ngx_destroy_pool(pool);
        return NULL;
    }

    if (ngx_ocdz_smtp_connect(s) != NGX_OK) {
        ngx_cpystrn((u_char *) err, (u_char *) "cannot connect to the "
                    "server", NGX_OCDZ_SMTP_ERR_MAX);
        ngx_destroy_pool(pool);
        return NULL;
    }

    return s;

nomem:

    ngx_cpystrn((u_char *) err, (u_char *) "out of memory",
                NGX_OCDZ_SMTP_ERR_MAX);
    ngx_destroy_pool(pool);
    return NULL;
}


void
ngx_ocdz_smtp_abort(ngx_ocdz_smtp_t *s)
{
    ngx_ocdz_smtp_close(s);
}


/* "a,b" (IPv6 in brackets) with the URL's port */

static ngx_int_t
ngx_ocdz_smtp_addrs(ngx_ocdz_smtp_t *s, ngx_str_t *addrs)
{
    u_char      *p, *last, *comma, *name;
    size_t       len;
    ngx_addr_t  *a;

    p = addrs->data;
    last = addrs->data + addrs->len;

    while (p < last && s->naddrs < NGX_OCDZ_SMTP_ADDRS) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        a = &s->addrs[s->naddrs];

        if (ngx_parse_addr_port(s->pool, a, p, comma - p) == NGX_OK) {
            ngx_inet_set_port(a->sockaddr, s->conf->port);

            name = ngx_pnalloc(s->pool, NGX_SOCKADDR_STRLEN);
            if (name == NULL) {
                return NGX_ERROR;
            }

            len = ngx_sock_ntop(a->sockaddr, a->socklen, name,
                                NGX_SOCKADDR_STRLEN, 1);

            a->name.data = name;
            a->name.len = len;
            s->naddrs++;
        }

        p = comma + 1;
    }

    return s->naddrs ? NGX_OK : NGX_ERROR;
}


/* the next address that takes a connection */

static ngx_int_t
ngx_ocdz_smtp_connect(ngx_ocdz_smtp_t *s)
{
    ngx_int_t          rc;
    ngx_msec_t         left;
    ngx_addr_t        *a;
    ngx_connection_t  *c;

    while (s->next_addr < s->naddrs) {
        a = &s->addrs[s->next_addr++];

        ngx_memzero(&s->peer, sizeof(ngx_peer_connection_t));

        s->peer.sockaddr = a->sockaddr;
        s->peer.socklen = a->socklen;
        s->peer.name = &a->name;
        s->peer.get = ngx_event_get_peer;
        s->peer.log = s->log;
        s->peer.log_error = NGX_ERROR_ERR;
        s->peer.tries = 1;

        rc = ngx_event_connect_peer(&s->peer);

        if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
            s->peer.connection = NULL;
            continue;
        }

        c = s->peer.connection;
        c->data = s;
        c->pool = s->pool;
        c->read->handler = ngx_ocdz_smtp_read_handler;
        c->write->handler = ngx_ocdz_smtp_write_handler;

        s->state = NGX_OCDZ_SMTP_CONNECT;

        /* one timer, on the read event, for the whole send */

        left = (ngx_msec_int_t) (s->deadline - ngx_current_msec) > 0
               ? s->deadline - ngx_current_msec : 1;

        ngx_add_timer(c->read, left);

        if (rc == NGX_OK) {
            /* connected at once: go on from the event loop */
            ngx_post_event(c->write, &ngx_posted_events);
        }

        return NGX_OK;
    }

    return NGX_ERROR;
}


static void
ngx_ocdz_smtp_connected(ngx_ocdz_smtp_t *s)
{
    int                err;
    socklen_t          len;
    ngx_connection_t  *c;

    c = s->peer.connection;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, s->log, err,
                      "ocdz outbox: connect() to the SMTP server %V failed",
                      s->peer.name);

        ngx_close_connection(c);
        s->peer.connection = NULL;

        if (ngx_ocdz_smtp_connect(s) != NGX_OK) {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "cannot connect to the server");
        }

        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, s->log, 0,
                   "ocdz smtp: connected to %V", s->peer.name);

    if (s->conf->implicit_tls) {
        (void) ngx_ocdz_smtp_tls(s);
        return;
    }

    s->state = NGX_OCDZ_SMTP_GREETING;

    if (c->read->ready) {
        ngx_ocdz_smtp_read_handler(c->read);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, "cannot read from the server");
    }
}


static void
ngx_ocdz_smtp_read_handler(ngx_event_t *rev)
{
    char               err[NGX_OCDZ_SMTP_ERR_MAX];
    ssize_t            n;
    ngx_connection_t  *c;
    ngx_ocdz_smtp_t   *s;

    c = rev->data;
    s = c->data;

    if (rev->timedout) {
        ngx_snprintf((u_char *) err, sizeof(err) - 1, "timed out at %s%Z",
                     ngx_ocdz_smtp_steps[s->state]);
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
        return;
    }

    if (s->state == NGX_OCDZ_SMTP_CONNECT) {
        ngx_ocdz_smtp_connected(s);
        return;
    }

    for ( ;; ) {
        if (s->in_len == sizeof(s->in)) {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "the server's reply is too long");
            return;
        }

        n = c->recv(c, s->in + s->in_len, sizeof(s->in) - s->in_len);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                     "cannot read from the server");
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_snprintf((u_char *) err, sizeof(err) - 1,
                         "the server closed the connection at %s%Z",
                         ngx_ocdz_smtp_steps[s->state]);
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
            return;
        }

        s->in_len += n;

        if (ngx_ocdz_smtp_replies(s) != NGX_OK) {
            /* ended, or the TLS handshake has the connection */
            return;
        }
    }
}


static void
ngx_ocdz_smtp_write_handler(ngx_event_t *wev)
{
    char               err[NGX_OCDZ_SMTP_ERR_MAX];
    ngx_connection_t  *c;
    ngx_ocdz_smtp_t   *s;

    c = wev->data;
    s = c->data;

    if (s->state == NGX_OCDZ_SMTP_CONNECT) {
        ngx_ocdz_smtp_connected(s);
        return;
    }

    if (ngx_ocdz_smtp_flush(s) == NGX_ERROR) {
        ngx_snprintf((u_char *) err, sizeof(err) - 1,
                     "the connection was lost at %s%Z",
                     ngx_ocdz_smtp_steps[s->state]);
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
    }
}


/*
 * The complete lines read: "NNN-text" goes on, "NNN text" (or "NNN")
 * ends a reply. NGX_OK: read on; NGX_DONE: the send ended or the
 * connection is in the TLS handshake.
 */

static ngx_int_t
ngx_ocdz_smtp_replies(ngx_ocdz_smtp_t *s)
{
    u_char      *p, *nl, *end;
    ngx_int_t    rc;
    ngx_uint_t   code, last;

    for ( ;; ) {
        nl = ngx_strlchr(s->in, s->in + s->in_len, LF);
        if (nl == NULL) {
            return NGX_OK;
        }

        p = s->in;
        end = (nl > p && nl[-1] == CR) ? nl - 1 : nl;

        if (end - p < 3
            || p[0] < '2' || p[0] > '5'
            || p[1] < '0' || p[1] > '9'
            || p[2] < '0' || p[2] > '9'
            || (end - p > 3 && p[3] != ' ' && p[3] != '-'))
        {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "the server's reply is not SMTP");
            return NGX_DONE;
        }

        code = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        last = (end - p == 3 || p[3] == ' ');

        if (s->state == NGX_OCDZ_SMTP_EHLO && code == 250 && end - p > 4) {
            ngx_ocdz_smtp_extension(s, p + 4, end);
        }

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, s->log, 0,
                       "ocdz smtp: reply %ui", code);

        s->in_len -= nl + 1 - s->in;
        ngx_memmove(s->in, nl + 1, s->in_len);

        if (!last) {
            continue;
        }

        rc = ngx_ocdz_smtp_reply(s, code);

        if (rc != NGX_OK) {
            return NGX_DONE;
        }
    }
}


/* an EHLO line: the extensions used */

static void
ngx_ocdz_smtp_extension(ngx_ocdz_smtp_t *s, u_char *p, u_char *last)
{
    u_char  *w;

    if (last - p >= 8 && ngx_strncasecmp(p, (u_char *) "STARTTLS", 8) == 0
        && (last - p == 8 || p[8] == ' '))
    {
        s->starttls = 1;
        return;
    }

    if (last - p < 5
        || ngx_strncasecmp(p, (u_char *) "AUTH", 4) != 0
        || (p[4] != ' ' && p[4] != '='))
    {
        return;
    }

    for (p += 5; p < last; p = w + 1) {
        w = ngx_strlchr(p, last, ' ');
        if (w == NULL) {
            w = last;
        }

        if (w - p == 5 && ngx_strncasecmp(p, (u_char *) "PLAIN", 5) == 0) {
            s->auth_plain = 1;
        }

        if (w - p == 5 && ngx_strncasecmp(p, (u_char *) "LOGIN", 5) == 0) {
            s->auth_login = 1;
        }
    }
}


/* a whole reply, in the state that waited for it */

static ngx_int_t
ngx_ocdz_smtp_reply(ngx_ocdz_smtp_t *s, ngx_uint_t code)
{
    char  err[NGX_OCDZ_SMTP_ERR_MAX];

    switch (s->state) {

    case NGX_OCDZ_SMTP_GREETING:
        if (code != 220) {
            break;
        }

        s->starttls = 0;
        s->auth_plain = 0;
        s->auth_login = 0;

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_EHLO, "EHLO %V\r\n",
                                     &s->conf->helo);

    case NGX_OCDZ_SMTP_EHLO:
        if (code == 250) {
            return ngx_ocdz_smtp_after_ehlo(s);
        }

        if (code == 500 || code == 502) {
            /* EHLO not known */
            return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_HELO,
                                         "HELO %V\r\n", &s->conf->helo);
        }

        break;

    case NGX_OCDZ_SMTP_HELO:
        if (code != 250) {
            break;
        }

        if (!s->tls) {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "STARTTLS not offered (the server does "
                                 "not know EHLO): TLS is required");
            return NGX_DONE;
        }

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_MAIL,
                                     "MAIL FROM:%s\r\n", s->from);

    case NGX_OCDZ_SMTP_STARTTLS:
        if (code != 220) {
            break;
        }

        /* nothing read in clear may be taken as coming over TLS */
        s->in_len = 0;

        return ngx_ocdz_smtp_tls(s);

    case NGX_OCDZ_SMTP_AUTH:
        if (code == 334 && s->auth_login && !s->auth_plain) {
            return ngx_ocdz_smtp_secret(s, NGX_OCDZ_SMTP_AUTH_USER, "",
                                        &s->conf->user, NULL);
        }

        if (code == 334) {
            /* PLAIN's initial response not taken: sent again */
            return ngx_ocdz_smtp_secret(s, NGX_OCDZ_SMTP_AUTH_PASS, "",
                                        &s->conf->user, &s->conf->password);
        }

        /* fall through */

    case NGX_OCDZ_SMTP_AUTH_PASS:
        if (code != 235) {
            break;
        }

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_MAIL,
                                     "MAIL FROM:%s\r\n", s->from);

    case NGX_OCDZ_SMTP_AUTH_USER:
        if (code != 334) {
            break;
        }

        return ngx_ocdz_smtp_secret(s, NGX_OCDZ_SMTP_AUTH_PASS, "",
                                    &s->conf->password, NULL);

    case NGX_OCDZ_SMTP_MAIL:
        if (code != 250) {
            break;
        }

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_RCPT,
                                     "RCPT TO:%s\r\n", s->rcpt);

    case NGX_OCDZ_SMTP_RCPT:
        if (code != 250 && code != 251) {
            break;
        }

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_DATA, "DATA\r\n");

    case NGX_OCDZ_SMTP_DATA:
        if (code != 354) {
            break;
        }

        s->state = NGX_OCDZ_SMTP_BODY;
        s->out_len = 0;
        s->out_sent = 0;

        if (ngx_ocdz_smtp_flush(s) == NGX_ERROR) {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "the connection was lost at DATA");
            return NGX_DONE;
        }

        return NGX_OK;

    case NGX_OCDZ_SMTP_BODY:
        if (code != 250 || !s->eod_queued || s->out_sent < s->out_len) {
            break;
        }

        ngx_ocdz_smtp_finish(s, NGX_OK, 250, "");
        return NGX_DONE;

    default:
        break;
    }

    if (code >= 400) {
        ngx_snprintf((u_char *) err, sizeof(err) - 1, "SMTP %ui: answered "
                     "to %s%Z", code, ngx_ocdz_smtp_steps[s->state]);
        ngx_ocdz_smtp_finish(s, NGX_ERROR, code, err);

    } else {
        ngx_snprintf((u_char *) err, sizeof(err) - 1, "an unexpected reply "
                     "%ui to %s%Z", code, ngx_ocdz_smtp_steps[s->state]);
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
    }

    return NGX_DONE;
}


/* after EHLO: STARTTLS when it is still clear text, then AUTH or MAIL */

static ngx_int_t
ngx_ocdz_smtp_after_ehlo(ngx_ocdz_smtp_t *s)
{
    if (!s->tls) {
        if (!s->starttls) {
            ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                                 "STARTTLS not offered: TLS is required");
            return NGX_DONE;
        }

        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_STARTTLS,
                                     "STARTTLS\r\n");
    }

    return ngx_ocdz_smtp_auth(s);
}


/* as curl: no AUTH when the server offers none, MAIL says if it wants it */

static ngx_int_t
ngx_ocdz_smtp_auth(ngx_ocdz_smtp_t *s)
{
    if (s->conf->user.len == 0 || !(s->auth_plain || s->auth_login)) {
        return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_MAIL,
                                     "MAIL FROM:%s\r\n", s->from);
    }

    if (s->auth_plain) {
        return ngx_ocdz_smtp_secret(s, NGX_OCDZ_SMTP_AUTH, "AUTH PLAIN ",
                                    &s->conf->user, &s->conf->password);
    }

    return ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_AUTH, "AUTH LOGIN\r\n");
}


/*
 * A line with credentials in base64: two is NULL for one value (LOGIN),
 * or PLAIN's "\0user\0password". Wiped from memory once sent.
 */

static ngx_int_t
ngx_ocdz_smtp_secret(ngx_ocdz_smtp_t *s, ngx_ocdz_smtp_state_e state,
    const char *verb, ngx_str_t *one, ngx_str_t *two)
{
    u_char     *p;
    ngx_str_t   src, dst;
    u_char      plain[NGX_OCDZ_SMTP_CRED_MAX + 2];

    if (two) {
        p = plain;
        *p++ = '\0';
        p = ngx_cpymem(p, one->data, one->len);
        *p++ = '\0';
        p = ngx_cpymem(p, two->data, two->len);

        src.data = plain;
        src.len = p - plain;

    } else {
        src = *one;
    }

    p = ngx_cpymem(s->out, verb, ngx_strlen(verb));

    dst.data = p;
    ngx_encode_base64(&dst, &src);
    p += dst.len;

    *p++ = CR;
    *p++ = LF;

    ngx_explicit_memzero(plain, sizeof(plain));

    s->out_len = p - s->out;
    s->out_sent = 0;
    s->out_secret = 1;
    s->state = state;

    if (ngx_ocdz_smtp_flush(s) == NGX_ERROR) {
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                             "the connection was lost at AUTH");
        return NGX_DONE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ocdz_smtp_command(ngx_ocdz_smtp_t *s, ngx_ocdz_smtp_state_e state,
    const char *fmt, ...)
{
    char     err[NGX_OCDZ_SMTP_ERR_MAX];
    u_char  *p;
    va_list  args;

    va_start(args, fmt);
    p = ngx_vslprintf(s->out, s->out + sizeof(s->out), fmt, args);
    va_end(args);

    s->out_len = p - s->out;
    s->out_sent = 0;
    s->state = state;

    if (ngx_ocdz_smtp_flush(s) == NGX_ERROR) {
        ngx_snprintf((u_char *) err, sizeof(err) - 1,
                     "the connection was lost at %s%Z",
                     ngx_ocdz_smtp_steps[state]);
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * What is to send: the command line, or in BODY the message (a "." at
 * the start of a line doubled) and then the end of the data.
 */

static ngx_int_t
ngx_ocdz_smtp_flush(ngx_ocdz_smtp_t *s)
{
    u_char            *p, *last, *nl;
    ssize_t            n;
    ngx_connection_t  *c;

    c = s->peer.connection;

    for ( ;; ) {

        if (s->out_sent < s->out_len) {
            n = c->send(c, s->out + s->out_sent, s->out_len - s->out_sent);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (n == NGX_AGAIN || n == 0) {
                break;
            }

            s->out_sent += n;
            continue;
        }

        if (s->out_secret) {
            ngx_explicit_memzero(s->out, sizeof(s->out));
            s->out_secret = 0;
        }

        if (s->state != NGX_OCDZ_SMTP_BODY || s->eod_queued) {
            return NGX_OK;
        }

        if (s->body_sent == s->body_len) {
            last = (s->body_len >= 2 && s->body[s->body_len - 1] == LF)
                   ? ngx_cpymem(s->out, ".\r\n", 3)
                   : ngx_cpymem(s->out, "\r\n.\r\n", 5);

            s->out_len = last - s->out;
            s->out_sent = 0;
            s->eod_queued = 1;
            continue;
        }

        p = s->body + s->body_sent;
        last = s->body + s->body_len;

        if (s->line_start && *p == '.' && !s->dot_sent) {
            n = c->send(c, (u_char *) ".", 1);

            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }

            if (n == NGX_AGAIN || n == 0) {
                break;
            }

            s->dot_sent = 1;
            continue;
        }

        nl = ngx_strlchr(p, last, LF);

        n = c->send(c, p, (nl ? nl + 1 : last) - p);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN || n == 0) {
            break;
        }

        s->body_sent += n;
        s->dot_sent = 0;
        s->line_start = (s->body[s->body_sent - 1] == LF);
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* TLS: after STARTTLS's 220, or at once for smtps:// */

static ngx_int_t
ngx_ocdz_smtp_tls(ngx_ocdz_smtp_t *s)
{
    ngx_int_t           rc;
    X509_VERIFY_PARAM  *param;
    ngx_connection_t   *c;

    c = s->peer.connection;
    s->state = NGX_OCDZ_SMTP_TLS;

    if (ngx_ssl_create_connection(s->conf->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, "TLS cannot start");
        return NGX_DONE;
    }

    param = SSL_get0_param(c->ssl->connection);

    if (s->conf->literal.len) {
        rc = X509_VERIFY_PARAM_set1_ip_asc(param,
                                           (char *) s->conf->host.data);

    } else {
        rc = SSL_set_tlsext_host_name(c->ssl->connection,
                                      (char *) s->conf->host.data)
             && X509_VERIFY_PARAM_set1_host(param,
                                            (char *) s->conf->host.data,
                                            s->conf->host.len);
    }

    if (rc != 1) {
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, "TLS cannot start");
        return NGX_DONE;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_ocdz_smtp_tls_done;
        return NGX_DONE;
    }

    ngx_ocdz_smtp_tls_done(c);

    return NGX_DONE;
}


static void
ngx_ocdz_smtp_tls_done(ngx_connection_t *c)
{
    long              rc;
    char              err[NGX_OCDZ_SMTP_ERR_MAX];
    ngx_ocdz_smtp_t  *s;

    s = c->data;

    if (!c->ssl->handshaked) {
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0,
                             c->read->timedout
                             ? "timed out at the TLS handshake"
                             : "the TLS handshake failed");
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_log_error(NGX_LOG_ERR, s->log, 0,
                      "ocdz outbox: the certificate of the SMTP server %V "
                      "(%s) is not trusted: %s (ocdz_smtp_ca_file)",
                      s->peer.name, s->conf->host.data,
                      X509_verify_cert_error_string(rc));

        ngx_snprintf((u_char *) err, sizeof(err) - 1,
                     "the server's certificate is not trusted: %s%Z",
                     X509_verify_cert_error_string(rc));
        ngx_ocdz_smtp_finish(s, NGX_ERROR, 0, err);
        return;
    }

    c->read->handler = ngx_ocdz_smtp_read_handler;
    c->write->handler = ngx_ocdz_smtp_write_handler;

    s->tls = 1;

    if (s->conf->implicit_tls) {
        s->state = NGX_OCDZ_SMTP_GREETING;

        if (c->read->ready) {
            ngx_ocdz_smtp_read_handler(c->read);
        }

        return;
    }

    s->starttls = 0;
    s->auth_plain = 0;
    s->auth_login = 0;

    if (ngx_ocdz_smtp_command(s, NGX_OCDZ_SMTP_EHLO, "EHLO %V\r\n",
                              &s->conf->helo)
        == NGX_OK
        && c->read->ready)
    {
        ngx_ocdz_smtp_read_handler(c->read);
    }
}


/* the end of a send: QUIT after a success, the connection closed, done */

static void
ngx_ocdz_smtp_finish(ngx_ocdz_smtp_t *s, ngx_int_t rc, ngx_uint_t code,
    const char *err)
{
    void                   *data;
    ngx_connection_t       *c;
    ngx_ocdz_smtp_done_pt   done;
    u_char                  text[NGX_OCDZ_SMTP_ERR_MAX];

    c = s->peer.connection;

    if (rc == NGX_OK && c) {
        (void) c->send(c, (u_char *) "QUIT\r\n", 6);
    }

    ngx_cpystrn(text, (u_char *) err, sizeof(text));

    done = s->done;
    data = s->data;

    ngx_ocdz_smtp_close(s);

    done(data, rc, code, (char *) text);
}


static void
ngx_ocdz_smtp_close(ngx_ocdz_smtp_t *s)
{
    ngx_connection_t  *c;

    c = s->peer.connection;

    if (c) {
        if (c->ssl) {
            c->ssl->no_wait_shutdown = 1;
            c->ssl->no_send_shutdown = 1;
            (void) ngx_ssl_shutdown(c);
        }

        ngx_close_connection(c);
        s->peer.connection = NULL;
    }

    ngx_explicit_memzero(s->out, sizeof(s->out));
    ngx_explicit_memzero(s->in, sizeof(s->in));

    ngx_destroy_pool(s->pool);
}
