/*
 * Host names of libcurl's transfers, resolved the nginx way: libcurl
 * never resolves a name (no resolver thread, no blocking lookup in a
 * worker). Each user keeps a set of names of its own: the API's (its
 * host, the proxy's), the outbox's (the hosts of ocdz_webhook_url,
 * ocdz_sms_gateway_url and ocdz_smtp_url).
 *
 * Without nginx's "resolver" directive at http level, the master
 * resolves each name of a set while it reads the
 * configuration, as nginx resolves "server name;" (ngx_inet_resolve_host):
 * at start, at "nginx -t" (a name that does not resolve fails it) and at
 * each reload. With it, each worker resolves them with nginx's
 * asynchronous resolver, again as its TTL or "valid=" says (at most once
 * a second), and keeps the last addresses when a lookup fails.
 *
 * Either way the addresses reach libcurl as CURLOPT_RESOLVE entries
 * ("host:port:addr1,addr2"), set on every transfer.
 */

#ifndef _NGX_OCDZ_RESOLVE_H_INCLUDED_
#define _NGX_OCDZ_RESOLVE_H_INCLUDED_


#include "ngx_http_ocdz_module.h"

#include <curl/curl.h>


#define NGX_OCDZ_RESOLVE_NAMES     4       /* names in one set: the API
                                              host and the proxy's; the
                                              outbox's three URLs' */
#define NGX_OCDZ_RESOLVE_ADDRS     16      /* addresses kept per name */


typedef struct {
    ngx_str_t                  host;      /* NUL-terminated, no [] */
    in_port_t                  port;
    ngx_str_t                  entry;     /* the master's lookup:
                                             "host:port:a,b", or empty */
    const char                *what;      /* for messages */
} ngx_ocdz_resolve_name_t;


struct ngx_ocdz_resolve_conf_s {
    ngx_ocdz_resolve_name_t    names[NGX_OCDZ_RESOLVE_NAMES];
    ngx_uint_t                 nnames;
    ngx_resolver_t            *resolver;  /* nginx's, or NULL */
    ngx_msec_t                 resolver_timeout;
};


typedef struct ngx_ocdz_resolve_s  ngx_ocdz_resolve_t;


/* Configuration (the master): the names, resolved unless "resolver". */
char *ngx_ocdz_resolve_conf(ngx_conf_t *cf, ngx_ocdz_resolve_conf_t *rcf,
    ngx_str_t *api_base, ngx_str_t *api_proxy);

/*
 * Configuration of another set: init takes nginx's "resolver" (if any),
 * then each URL's host is added, and resolved now unless "resolver"
 * ("[emerg] <what> host ... not found" when it does not). Its port is
 * the URL's, or its scheme's (http 80, https 443, smtp 25, smtps 465).
 * *index is the name's in the set, the same for a host and port added
 * twice; -1 for an address in the URL (nothing to resolve).
 */
void ngx_ocdz_resolve_conf_init(ngx_conf_t *cf,
    ngx_ocdz_resolve_conf_t *rcf);
ngx_int_t ngx_ocdz_resolve_add_url(ngx_conf_t *cf,
    ngx_ocdz_resolve_conf_t *rcf, ngx_str_t *url, const char *what,
    ngx_int_t *index);

/* A worker: the entries, and the lookups when there is a "resolver". */
ngx_ocdz_resolve_t *ngx_ocdz_resolve_create(ngx_ocdz_resolve_conf_t *rcf,
    ngx_log_t *log);
void ngx_ocdz_resolve_destroy(ngx_ocdz_resolve_t *rs);

/*
 * The CURLOPT_RESOLVE list to set on a transfer that starts now (NULL:
 * none needed) and its generation, which changes with the addresses.
 * Not ready: a name has no address yet (nginx's resolver has not
 * answered): no transfer may start, or libcurl would resolve it.
 */
struct curl_slist *ngx_ocdz_resolve_list(ngx_ocdz_resolve_t *rs,
    ngx_uint_t *generation);
ngx_uint_t ngx_ocdz_resolve_ready(ngx_ocdz_resolve_t *rs);

/*
 * The same for one name of the set (an index of add_url; -1 is always
 * ready): a transfer to its host may start.
 */
ngx_uint_t ngx_ocdz_resolve_name_ready(ngx_ocdz_resolve_t *rs,
    ngx_int_t index);

/*
 * The addresses of one name now, as its entry has them ("a,b", IPv6 in
 * brackets), for a user that connects by itself (the SMTP client).
 * Valid until the next return to the event loop; NGX_DECLINED while the
 * name has none.
 */
ngx_int_t ngx_ocdz_resolve_name_addrs(ngx_ocdz_resolve_t *rs,
    ngx_int_t index, ngx_str_t *addrs);

/*
 * Every name has had an answer (addresses, or a failed lookup): until
 * then a user may wait rather than fail its transfers at start-up.
 */
ngx_uint_t ngx_ocdz_resolve_answered(ngx_ocdz_resolve_t *rs);


#endif /* _NGX_OCDZ_RESOLVE_H_INCLUDED_ */
