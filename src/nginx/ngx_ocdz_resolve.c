
/*
 * ngx_http_ocdz_module: the host names of libcurl's transfers (see
 * ngx_ocdz_resolve.h).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_ocdz_resolve.h"
#include "ocdz_alarm.h"


#define NGX_OCDZ_RESOLVE_MIN       1000    /* ms between two lookups */
#define NGX_OCDZ_RESOLVE_DEFAULT   30000   /* ms, when nginx says nothing */
#define NGX_OCDZ_RESOLVE_ENTRY     (NGX_SOCKADDR_STRLEN + 3)


/*
 * One name in a worker. It is its timer's ev->data: nginx's debug
 * logging reads ev->data as a connection (ngx_event_ident() prints its
 * fd), so it starts with three pointers and an "fd" of -1.
 */

typedef struct {
    ngx_ocdz_resolve_t        *rs;
    ngx_ocdz_resolve_name_t   *conf;
    ngx_resolver_ctx_t        *ctx;       /* a lookup in flight */
    ngx_socket_t               ident;     /* -1: see above */

    ngx_event_t                timer;     /* the next lookup */
    char                      *entry;     /* "host:port:a,b", or NULL */
    ocdz_alarm_t               alarm;     /* lookups failing */
    unsigned                   answered:1;  /* a lookup has ended */
} ngx_ocdz_resolve_rt_t;


struct ngx_ocdz_resolve_s {
    ngx_ocdz_resolve_conf_t   *conf;
    ngx_log_t                 *log;
    ngx_ocdz_resolve_rt_t      names[NGX_OCDZ_RESOLVE_NAMES];

    struct curl_slist         *list;      /* for transfers starting now */
    struct curl_slist         *old;       /* a transfer just started may
                                             still read it */
    ngx_uint_t                 generation;
};


typedef char  ngx_ocdz_resolve_ident_check[
    offsetof(ngx_ocdz_resolve_rt_t, ident) == offsetof(ngx_connection_t, fd)
    ? 1 : -1];


static ngx_int_t ngx_ocdz_resolve_add(ngx_conf_t *cf,
    ngx_ocdz_resolve_conf_t *rcf, ngx_str_t *url, in_port_t default_port,
    const char *what, ngx_int_t *index);
static ngx_int_t ngx_ocdz_resolve_entry(ngx_pool_t *pool, ngx_str_t *entry,
    ngx_ocdz_resolve_name_t *name, struct sockaddr **sa, socklen_t *len,
    ngx_uint_t n);
static int ngx_libc_cdecl ngx_ocdz_resolve_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_ocdz_resolve_build(ngx_ocdz_resolve_t *rs);
static void ngx_ocdz_resolve_start(ngx_ocdz_resolve_rt_t *rt);
static void ngx_ocdz_resolve_handler(ngx_resolver_ctx_t *ctx);
static void ngx_ocdz_resolve_timer(ngx_event_t *ev);
static void ngx_ocdz_resolve_failed(ngx_ocdz_resolve_rt_t *rt,
    const char *why);


/* configuration */


char *
ngx_ocdz_resolve_conf(ngx_conf_t *cf, ngx_ocdz_resolve_conf_t *rcf,
    ngx_str_t *api_base, ngx_str_t *api_proxy)
{
    u_char                    *p;
    ngx_str_t                  rest, scheme;
    in_port_t                  port;
    ngx_int_t                  index;
    ngx_uint_t                 local;

    ngx_ocdz_resolve_conf_init(cf, rcf);

    /*
     * Through an HTTP proxy, or a SOCKS one that resolves (socks4a,
     * socks5h), the proxy resolves the API host: libcurl resolves only
     * the proxy's. Through socks4 and socks5 libcurl resolves both.
     */

    local = 1;

    if (api_proxy->len) {
        p = ngx_strlcasestrn(api_proxy->data,
                             api_proxy->data + api_proxy->len,
                             (u_char *) "://", 3 - 1);
        if (p == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid ocdz_api_proxy \"%V\"", api_proxy);
            return NGX_CONF_ERROR;
        }

        scheme.data = api_proxy->data;
        scheme.len = p - api_proxy->data;

        rest.data = p + 3;
        rest.len = api_proxy->data + api_proxy->len - rest.data;

        port = (scheme.len == 5
                && ngx_strncasecmp(scheme.data, (u_char *) "https", 5) == 0)
               ? 443 : 1080;

        local = (scheme.len == 6
                 && (ngx_strncasecmp(scheme.data, (u_char *) "socks4", 6)
                     == 0
                     || ngx_strncasecmp(scheme.data, (u_char *) "socks5", 6)
                        == 0));

        if (ngx_ocdz_resolve_add(cf, rcf, &rest, port, "ocdz_api_proxy",
                                 &index)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (local) {
        rest.data = api_base->data + sizeof("https://") - 1;
        rest.len = api_base->len - (sizeof("https://") - 1);

        if (ngx_ocdz_resolve_add(cf, rcf, &rest, 443, "ocdz_api_base",
                                 &index)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


void
ngx_ocdz_resolve_conf_init(ngx_conf_t *cf, ngx_ocdz_resolve_conf_t *rcf)
{
    ngx_http_core_loc_conf_t  *clcf;

    /*
     * nginx's "resolver" at http level; when none is written, nginx
     * gives the http level one without servers (or none yet)
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver != NULL && clcf->resolver != NGX_CONF_UNSET_PTR
        && clcf->resolver->connections.nelts > 0)
    {
        rcf->resolver = clcf->resolver;
        rcf->resolver_timeout = (clcf->resolver_timeout
                                 == NGX_CONF_UNSET_MSEC)
                                ? 30000 : clcf->resolver_timeout;
    }
}


/* scheme://[user@]host[:port][/?#...]: the host, its port by scheme */

ngx_int_t
ngx_ocdz_resolve_add_url(ngx_conf_t *cf, ngx_ocdz_resolve_conf_t *rcf,
    ngx_str_t *url, const char *what, ngx_int_t *index)
{
    u_char      *p, *end, *at;
    ngx_str_t    rest;
    ngx_uint_t   i;

    static struct {
        ngx_str_t   scheme;
        in_port_t   port;
    }  ports[] = {
        { ngx_string("http://"), 80 },
        { ngx_string("https://"), 443 },
        { ngx_string("smtp://"), 25 },
        { ngx_string("smtps://"), 465 }
    };

    for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
        if (url->len > ports[i].scheme.len
            && ngx_strncasecmp(url->data, ports[i].scheme.data,
                               ports[i].scheme.len) == 0)
        {
            break;
        }
    }

    if (i == sizeof(ports) / sizeof(ports[0])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\" has no scheme this module sends to",
                           what, url);
        return NGX_ERROR;
    }

    /* the authority only: no credentials, path, query or fragment */

    rest.data = url->data + ports[i].scheme.len;
    end = url->data + url->len;

    for (p = rest.data; p < end; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    end = p;

    at = NULL;

    for (p = rest.data; p < end; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (at) {
        rest.data = at + 1;
    }

    rest.len = end - rest.data;

    return ngx_ocdz_resolve_add(cf, rcf, &rest, ports[i].port, what, index);
}


/* host[:port][/...]: a name is kept, and resolved unless "resolver" */

static ngx_int_t
ngx_ocdz_resolve_add(ngx_conf_t *cf, ngx_ocdz_resolve_conf_t *rcf,
    ngx_str_t *url, in_port_t default_port, const char *what,
    ngx_int_t *index)
{
    ngx_uint_t                i;
    ngx_url_t                 u;
    ngx_str_t                 host;
    ngx_addr_t                addr;
    socklen_t                 lens[NGX_OCDZ_RESOLVE_ADDRS];
    struct sockaddr          *sas[NGX_OCDZ_RESOLVE_ADDRS];
    ngx_ocdz_resolve_name_t  *name;

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = *url;
    u.default_port = default_port;
    u.no_resolve = 1;
    u.uri_part = 1;

    if (u.url.len && u.url.data[u.url.len - 1] == '/') {
        u.url.len--;
    }

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\" is malformed%s%s",
                           what, url, u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_ERROR;
    }

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    *index = -1;

    /* an address is its own: libcurl does not resolve it */

    if (ngx_parse_addr(cf->pool, &addr, host.data, host.len) == NGX_OK) {
        return NGX_OK;
    }

    /* one name, one lookup: two URLs of a host and port share it */

    for (i = 0; i < rcf->nnames; i++) {
        name = &rcf->names[i];

        if (name->port == u.port && name->host.len == host.len
            && ngx_strncasecmp(name->host.data, host.data, host.len) == 0)
        {
            *index = i;
            return NGX_OK;
        }
    }

    if (rcf->nnames == NGX_OCDZ_RESOLVE_NAMES) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: too many host names to resolve", what);
        return NGX_ERROR;
    }

    *index = rcf->nnames;
    name = &rcf->names[rcf->nnames++];

    name->host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (name->host.data == NULL) {
        return NGX_ERROR;
    }

    *ngx_cpymem(name->host.data, host.data, host.len) = '\0';
    name->host.len = host.len;
    name->port = u.port;
    name->what = what;

    if (rcf->resolver) {
        /* the workers' resolver does it: nothing here asks the system */
        return NGX_OK;
    }

    /* as nginx resolves "server name;" while reading its configuration */

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.host = name->host;
    u.port = name->port;

    if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s host \"%V\" not found%s%s", what,
                           &name->host, u.err ? ": " : "",
                           u.err ? u.err : "");
        return NGX_ERROR;
    }

    for (i = 0; i < u.naddrs && i < NGX_OCDZ_RESOLVE_ADDRS; i++) {
        sas[i] = u.addrs[i].sockaddr;
        lens[i] = u.addrs[i].socklen;
    }

    if (ngx_ocdz_resolve_entry(cf->pool, &name->entry, name, sas, lens, i)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, cf->log, 0,
                  "ocdz: %s host resolved: %V", what, &name->entry);

    return NGX_OK;
}


/* "host:port:a,b" with its addresses sorted (and IPv6 ones in []) */

static ngx_int_t
ngx_ocdz_resolve_entry(ngx_pool_t *pool, ngx_str_t *entry,
    ngx_ocdz_resolve_name_t *name, struct sockaddr **sa, socklen_t *len,
    ngx_uint_t n)
{
    u_char      *p, *last;
    size_t       size, l;
    ngx_uint_t   i, k;
    u_char       text[NGX_OCDZ_RESOLVE_ADDRS][NGX_OCDZ_RESOLVE_ENTRY];

    k = 0;

    for (i = 0; i < n && k < NGX_OCDZ_RESOLVE_ADDRS; i++) {
        p = text[k];

        if (sa[i]->sa_family == AF_INET6) {
            *p++ = '[';
        }

        l = ngx_sock_ntop(sa[i], len[i], p, NGX_SOCKADDR_STRLEN, 0);
        if (l == 0) {
            continue;
        }

        p += l;

        if (sa[i]->sa_family == AF_INET6) {
            *p++ = ']';
        }

        *p = '\0';
        k++;
    }

    if (k == 0) {
        return NGX_DECLINED;
    }

    ngx_qsort(text, k, NGX_OCDZ_RESOLVE_ENTRY, ngx_ocdz_resolve_cmp);

    size = name->host.len + sizeof(":65535:") + k * NGX_OCDZ_RESOLVE_ENTRY;

    entry->data = pool ? ngx_pnalloc(pool, size)
                       : ngx_alloc(size, ngx_cycle->log);
    if (entry->data == NULL) {
        return NGX_ERROR;
    }

    last = entry->data + size - 1;
    p = ngx_slprintf(entry->data, last, "%V:%d:", &name->host,
                     (int) name->port);

    for (i = 0; i < k; i++) {
        p = ngx_slprintf(p, last, "%s%s", i ? "," : "", text[i]);
    }

    *p = '\0';
    entry->len = p - entry->data;

    return NGX_OK;
}


static int ngx_libc_cdecl
ngx_ocdz_resolve_cmp(const void *one, const void *two)
{
    return ngx_strcmp(one, two);
}


/* a worker */


ngx_ocdz_resolve_t *
ngx_ocdz_resolve_create(ngx_ocdz_resolve_conf_t *rcf, ngx_log_t *log)
{
    ngx_uint_t              i;
    ngx_ocdz_resolve_t     *rs;
    ngx_ocdz_resolve_rt_t  *rt;

    rs = ngx_calloc(sizeof(ngx_ocdz_resolve_t), log);
    if (rs == NULL) {
        return NULL;
    }

    rs->conf = rcf;
    rs->log = log;

    for (i = 0; i < rcf->nnames; i++) {
        rt = &rs->names[i];
        rt->rs = rs;
        rt->conf = &rcf->names[i];
        rt->ident = (ngx_socket_t) -1;

        rt->timer.handler = ngx_ocdz_resolve_timer;
        rt->timer.data = rt;
        rt->timer.log = log;
        rt->timer.cancelable = 1;

        if (rt->conf->entry.len) {
            rt->entry = ngx_alloc(rt->conf->entry.len + 1, log);
            if (rt->entry == NULL) {
                ngx_ocdz_resolve_destroy(rs);
                return NULL;
            }

            ngx_memcpy(rt->entry, rt->conf->entry.data,
                       rt->conf->entry.len + 1);
        }
    }

    if (ngx_ocdz_resolve_build(rs) != NGX_OK) {
        ngx_ocdz_resolve_destroy(rs);
        return NULL;
    }

    if (rcf->resolver) {
        for (i = 0; i < rcf->nnames; i++) {
            ngx_ocdz_resolve_start(&rs->names[i]);
        }
    }

    return rs;
}


void
ngx_ocdz_resolve_destroy(ngx_ocdz_resolve_t *rs)
{
    ngx_uint_t              i;
    ngx_resolver_ctx_t     *ctx;
    ngx_ocdz_resolve_rt_t  *rt;

    for (i = 0; i < rs->conf->nnames; i++) {
        rt = &rs->names[i];

        if (rt->timer.timer_set) {
            ngx_del_timer(&rt->timer);
        }

        if (rt->ctx) {
            ctx = rt->ctx;
            rt->ctx = NULL;
            ngx_resolve_name_done(ctx);
        }

        if (rt->entry) {
            ngx_free(rt->entry);
            rt->entry = NULL;
        }
    }

    if (rs->list) {
        curl_slist_free_all(rs->list);
    }

    if (rs->old) {
        curl_slist_free_all(rs->old);
    }

    ngx_free(rs);
}


struct curl_slist *
ngx_ocdz_resolve_list(ngx_ocdz_resolve_t *rs, ngx_uint_t *generation)
{
    *generation = rs->generation;

    return rs->list;
}


ngx_uint_t
ngx_ocdz_resolve_ready(ngx_ocdz_resolve_t *rs)
{
    ngx_uint_t  i;

    for (i = 0; i < rs->conf->nnames; i++) {
        if (rs->names[i].entry == NULL) {
            return 0;
        }
    }

    return 1;
}


ngx_uint_t
ngx_ocdz_resolve_name_ready(ngx_ocdz_resolve_t *rs, ngx_int_t index)
{
    if (index < 0 || (ngx_uint_t) index >= rs->conf->nnames) {
        return 1;
    }

    return rs->names[index].entry != NULL;
}


ngx_int_t
ngx_ocdz_resolve_name_addrs(ngx_ocdz_resolve_t *rs, ngx_int_t index,
    ngx_str_t *addrs)
{
    u_char  *p, *last;

    if (index < 0 || (ngx_uint_t) index >= rs->conf->nnames
        || rs->names[index].entry == NULL)
    {
        return NGX_DECLINED;
    }

    /* "host:port:a,b": the host is a name, without a colon */

    p = (u_char *) rs->names[index].entry;
    last = p + ngx_strlen(p);

    p = ngx_strlchr(p, last, ':');
    if (p) {
        p = ngx_strlchr(p + 1, last, ':');
    }

    if (p == NULL || p + 1 == last) {
        return NGX_DECLINED;
    }

    addrs->data = p + 1;
    addrs->len = last - p - 1;

    return NGX_OK;
}


ngx_uint_t
ngx_ocdz_resolve_answered(ngx_ocdz_resolve_t *rs)
{
    ngx_uint_t  i;

    for (i = 0; i < rs->conf->nnames; i++) {
        if (rs->names[i].entry == NULL && !rs->names[i].answered) {
            return 0;
        }
    }

    return 1;
}


/* the list of every name's entry; the one before stays one more change */

static ngx_int_t
ngx_ocdz_resolve_build(ngx_ocdz_resolve_t *rs)
{
    ngx_uint_t          i;
    struct curl_slist  *list, *next;

    list = NULL;

    for (i = 0; i < rs->conf->nnames; i++) {
        if (rs->names[i].entry == NULL) {
            continue;
        }

        next = curl_slist_append(list, rs->names[i].entry);
        if (next == NULL) {
            if (list) {
                curl_slist_free_all(list);
            }

            return NGX_ERROR;
        }

        list = next;
    }

    if (rs->old) {
        curl_slist_free_all(rs->old);
    }

    rs->old = rs->list;
    rs->list = list;
    rs->generation++;

    return NGX_OK;
}


static void
ngx_ocdz_resolve_start(ngx_ocdz_resolve_rt_t *rt)
{
    ngx_resolver_ctx_t       *ctx;
    ngx_ocdz_resolve_conf_t  *rcf;

    rcf = rt->rs->conf;

    ctx = ngx_resolve_start(rcf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_ocdz_resolve_failed(rt, "could not start a lookup");
        return;
    }

    ctx->name = rt->conf->host;
    ctx->handler = ngx_ocdz_resolve_handler;
    ctx->data = rt;
    ctx->timeout = rcf->resolver_timeout;
    ctx->cancelable = 1;

    rt->ctx = ctx;

    /* the handler may run at once, from a cached answer */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        /* ngx_resolve_name() has freed ctx */
        rt->ctx = NULL;
        ngx_ocdz_resolve_failed(rt, "could not start a lookup");
    }
}


static void
ngx_ocdz_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    char                   d[32];
    time_t                 valid;
    ngx_str_t              entry;
    ngx_int_t              rc;
    ngx_uint_t             i, n;
    ngx_msec_t             delay;
    socklen_t              lens[NGX_OCDZ_RESOLVE_ADDRS];
    struct sockaddr       *sas[NGX_OCDZ_RESOLVE_ADDRS];
    ngx_ocdz_resolve_rt_t *rt;
    u_char                 why[NGX_MAX_ERROR_STR], *p;

    rt = ctx->data;
    rt->answered = 1;

    if (ctx->state != NGX_OK || ctx->naddrs == 0) {
        p = ngx_snprintf(why, sizeof(why) - 1, "%s (%i)",
                         ctx->state ? ngx_resolver_strerror(ctx->state)
                                    : "no address",
                         ctx->state);
        *p = '\0';

        rt->ctx = NULL;
        ngx_resolve_name_done(ctx);

        ngx_ocdz_resolve_failed(rt, (char *) why);
        return;
    }

    n = ctx->naddrs < NGX_OCDZ_RESOLVE_ADDRS ? ctx->naddrs
                                             : NGX_OCDZ_RESOLVE_ADDRS;

    for (i = 0; i < n; i++) {
        sas[i] = ctx->addrs[i].sockaddr;
        lens[i] = ctx->addrs[i].socklen;
    }

    rc = ngx_ocdz_resolve_entry(NULL, &entry, rt->conf, sas, lens, n);

    valid = ctx->valid;

    rt->ctx = NULL;
    ngx_resolve_name_done(ctx);

    if (rc != NGX_OK) {
        ngx_ocdz_resolve_failed(rt, "no usable address");
        return;
    }

    if (rt->entry == NULL || ngx_strcmp(rt->entry, entry.data) != 0) {
        ngx_log_error(NGX_LOG_INFO, rt->rs->log, 0,
                      "ocdz: %s host resolved: %s", rt->conf->what,
                      entry.data);

        if (rt->entry) {
            ngx_free(rt->entry);
        }

        rt->entry = (char *) entry.data;

        if (ngx_ocdz_resolve_build(rt->rs) != NGX_OK) {
            ngx_log_error(NGX_LOG_ALERT, rt->rs->log, 0,
                          "ocdz: cannot keep the %s host's addresses",
                          rt->conf->what);
        }

    } else {
        ngx_free(entry.data);
    }

    if (ocdz_alarm_clear(&rt->alarm, ngx_current_msec)
        == OCDZ_ALARM_LOG_END)
    {
        ngx_log_error(NGX_LOG_ERR, rt->rs->log, 0,
                      "ocdz: %s host \"%V\" resolves again after %s: %uL "
                      "lookups failed meanwhile", rt->conf->what,
                      &rt->conf->host,
                      ocdz_alarm_duration_str(d, sizeof(d),
                                              rt->alarm.duration),
                      rt->alarm.count);
    }

    /* again when nginx's cache expires (its TTL or valid=) */

    delay = NGX_OCDZ_RESOLVE_DEFAULT;

    if (valid) {
        delay = (valid > ngx_time())
                ? (ngx_msec_t) (valid - ngx_time()) * 1000 : 0;
    }

    if (delay < NGX_OCDZ_RESOLVE_MIN) {
        delay = NGX_OCDZ_RESOLVE_MIN;
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&rt->timer, delay);
    }
}


static void
ngx_ocdz_resolve_timer(ngx_event_t *ev)
{
    ngx_ocdz_resolve_rt_t  *rt;

    rt = ev->data;

    if (ngx_exiting || ngx_quit || ngx_terminate || rt->ctx) {
        return;
    }

    ngx_ocdz_resolve_start(rt);
}


/* the last addresses are kept; [error] once while lookups fail */

static void
ngx_ocdz_resolve_failed(ngx_ocdz_resolve_rt_t *rt, const char *why)
{
    ocdz_alarm_t  *a;

    a = &rt->alarm;
    rt->answered = 1;

    switch (ocdz_alarm_raise(a, ngx_current_msec, why)) {

    case OCDZ_ALARM_LOG_START:
        ngx_log_error(NGX_LOG_ERR, rt->rs->log, 0,
                      "ocdz: %s host \"%V\" could not be resolved: %s; %s",
                      rt->conf->what, &rt->conf->host, why,
                      rt->entry ? "its last addresses are used"
                                : "nothing is sent to it until it "
                                  "resolves");
        break;

    case OCDZ_ALARM_LOG_REPEAT:
        ngx_log_error(NGX_LOG_ERR, rt->rs->log, 0,
                      "ocdz: %s host \"%V\" still does not resolve: %uL "
                      "more failed lookups in the last minute; the latest: "
                      "%s", rt->conf->what, &rt->conf->host, a->reported,
                      why);
        break;

    default:
        ngx_log_error(NGX_LOG_INFO, rt->rs->log, 0,
                      "ocdz: %s host \"%V\" could not be resolved: %s",
                      rt->conf->what, &rt->conf->host, why);
        break;
    }

    if (!ngx_exiting && !ngx_quit && !ngx_terminate) {
        ngx_add_timer(&rt->timer, NGX_OCDZ_RESOLVE_MIN);
    }
}
