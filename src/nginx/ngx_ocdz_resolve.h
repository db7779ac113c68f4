/*
 * The API's host names, resolved the nginx way: libcurl never resolves
 * a name (no resolver thread, no blocking lookup in a worker).
 *
 * Without nginx's "resolver" directive at http level, the master
 * resolves the API host (and the proxy's) while it reads the
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


#define NGX_OCDZ_RESOLVE_NAMES     2       /* the API host, the proxy's */
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


#endif /* _NGX_OCDZ_RESOLVE_H_INCLUDED_ */
