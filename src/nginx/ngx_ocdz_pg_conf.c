
/*
 * ngx_http_ocdz_module: the PostgreSQL pool's configuration, read by
 * the master: the conninfo (host names resolved here, never in a
 * worker), the final connection keywords, and the statements.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_ocdz_pg.h"


#define NGX_OCDZ_PG_MAX_ADDRS      8      /* addresses kept per host name */
#define NGX_OCDZ_PG_APP_NAME       "ngx_http_ocdz_module"


static ngx_int_t ngx_ocdz_pg_conf_hosts(ngx_conf_t *cf, const char *host,
    const char *hostaddr, const char *port);
static ngx_int_t ngx_ocdz_pg_resolve(ngx_conf_t *cf, ngx_array_t *hosts,
    ngx_array_t *addrs, ngx_array_t *ports, const char *host,
    const char *port);
static ngx_int_t ngx_ocdz_pg_add_host(ngx_array_t *hosts,
    ngx_array_t *addrs, ngx_array_t *ports, char *host, char *addr,
    char *port);
static ngx_int_t ngx_ocdz_pg_split(ngx_conf_t *cf, ngx_array_t *a,
    const char *s);
static char *ngx_ocdz_pg_join(ngx_conf_t *cf, ngx_array_t *a);
static char *ngx_ocdz_pg_single_sql(ngx_conf_t *cf, const char *sql);


char *
ngx_ocdz_pg_conf_conninfo(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    ngx_str_t *conninfo)
{
    char               *err, *host, *hostaddr, *port;
    u_char             *s;
    ngx_uint_t          n, i, has_gss, has_app;
    ngx_array_t         hosts, addrs, ports;
    const char        **kw, **val;
    PQconninfoOption   *opts, *o;

    if (conninfo->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "empty PostgreSQL connection string");
        return NGX_CONF_ERROR;
    }

    s = ngx_pnalloc(cf->pool, conninfo->len + 1);
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(s, conninfo->data, conninfo->len);
    s[conninfo->len] = '\0';

    if (ngx_strlen(s) != conninfo->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "PostgreSQL connection string contains a NUL");
        return NGX_CONF_ERROR;
    }

    /* libpq would take it as "all defaults", from the environment */

    for (i = 0; i < conninfo->len; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n'
            && s[i] != '\f' && s[i] != '\v')
        {
            break;
        }
    }

    if (i == conninfo->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_db\" takes a libpq connection string, "
                           "not a blank one");
        return NGX_CONF_ERROR;
    }

    err = NULL;
    opts = PQconninfoParse((char *) s, &err);

    if (opts == NULL) {

        if (err == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PQconninfoParse() failed: out of memory");
            return NGX_CONF_ERROR;
        }

        /* libpq quotes pieces of the string: they could be a password */

        if (ngx_strcasestrn(s, "password", sizeof("password") - 2) != NULL
            || ((ngx_strncasecmp(s, (u_char *) "postgres://", 11) == 0
                 || ngx_strncasecmp(s, (u_char *) "postgresql://", 13) == 0)
                && ngx_strlchr(s, s + conninfo->len, '@') != NULL))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid PostgreSQL connection string "
                               "(libpq's message is not shown: it may "
                               "quote a password)");

        } else {
            u_char  buf[NGX_OCDZ_PG_ERRLEN];

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid PostgreSQL connection string: %s",
                               ngx_ocdz_pg_errmsg(buf, sizeof(buf), err));
        }

        PQfreemem(err);
        return NGX_CONF_ERROR;
    }

    n = 0;
    host = NULL;
    hostaddr = NULL;
    port = NULL;
    has_gss = 0;
    has_app = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        if (ngx_strcmp(o->keyword, "password") == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the PostgreSQL connection string must not "
                               "contain a password: put the password in "
                               "ocdz_db_password_file or libpq's passfile, "
                               "not in nginx.conf");
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(o->keyword, "service") == 0) {
            /* libpq would read the service file in each worker, at
             * connect time, and resolve its host names there */
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ocdz_db\" does not take \"service\": "
                               "write the service's settings (host, port, "
                               "dbname, user...) in ocdz_db");
            PQconninfoFree(opts);
            return NGX_CONF_ERROR;
        }

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = o->val;

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = o->val;

        } else if (ngx_strcmp(o->keyword, "gssencmode") == 0) {
            has_gss = 1;

        } else if (ngx_strcmp(o->keyword, "application_name") == 0) {
            has_app = 1;
        }

        n++;
    }

    if (ngx_ocdz_pg_conf_hosts(cf, host, hostaddr, port) != NGX_OK) {
        goto failed;
    }

    /* room for gssencmode, application_name, hostaddr, and NULL */

    kw = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));
    val = ngx_pcalloc(cf->pool, (n + 4) * sizeof(char *));
    if (kw == NULL || val == NULL) {
        goto failed;
    }

    if (ngx_array_init(&hosts, cf->pool, 4, sizeof(char *)) != NGX_OK
        || ngx_array_init(&addrs, cf->pool, 4, sizeof(char *)) != NGX_OK
        || ngx_array_init(&ports, cf->pool, 4, sizeof(char *)) != NGX_OK)
    {
        goto failed;
    }

    /*
     * A host name would make every connection attempt call getaddrinfo()
     * in the worker, which blocks: resolve it now into hostaddr and keep
     * host for TLS verification and messages.
     */

    if (host != NULL && host[0] != '\0'
        && (hostaddr == NULL || hostaddr[0] == '\0'))
    {
        if (ngx_ocdz_pg_resolve(cf, &hosts, &addrs, &ports, host, port)
            != NGX_OK)
        {
            goto failed;
        }
    }

    i = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        /* copies: opts are freed below */

        kw[i] = (char *) ngx_pnalloc(cf->pool, ngx_strlen(o->keyword) + 1);
        val[i] = (char *) ngx_pnalloc(cf->pool, ngx_strlen(o->val) + 1);
        if (kw[i] == NULL || val[i] == NULL) {
            goto failed;
        }

        ngx_cpystrn((u_char *) kw[i], (u_char *) o->keyword,
                    ngx_strlen(o->keyword) + 1);
        ngx_cpystrn((u_char *) val[i], (u_char *) o->val,
                    ngx_strlen(o->val) + 1);

        if (hosts.nelts) {
            if (ngx_strcmp(o->keyword, "host") == 0) {
                val[i] = ngx_ocdz_pg_join(cf, &hosts);

            } else if (ngx_strcmp(o->keyword, "port") == 0
                       && ports.nelts > 1)
            {
                val[i] = ngx_ocdz_pg_join(cf, &ports);
            }

            if (val[i] == NULL) {
                goto failed;
            }
        }

        i++;
    }

    if (hosts.nelts) {
        kw[i] = "hostaddr";
        val[i] = ngx_ocdz_pg_join(cf, &addrs);
        if (val[i] == NULL) {
            goto failed;
        }
        i++;
    }

    /* Debian's libpq has GSSAPI: avoid a GSS round trip per connection */

    if (!has_gss) {
        kw[i] = "gssencmode";
        val[i] = "disable";
        i++;
    }

    if (!has_app) {
        kw[i] = "application_name";
        val[i] = NGX_OCDZ_PG_APP_NAME;
        i++;
    }

    kw[i] = NULL;
    val[i] = NULL;

    PQconninfoFree(opts);

    pgcf->conninfo.len = conninfo->len;
    pgcf->conninfo.data = s;
    pgcf->keywords = kw;
    pgcf->values = val;

    return NGX_CONF_OK;

failed:

    PQconninfoFree(opts);
    return NGX_CONF_ERROR;
}


/*
 * What libpq would refuse only when a worker connects: a hostaddr that
 * is not a numeric address (an empty one in a list makes libpq resolve
 * the host, blocking the worker), a port not in 1-65535, and lists of
 * hosts, hostaddrs and ports that do not pair up.
 */

static ngx_int_t
ngx_ocdz_pg_conf_hosts(ngx_conf_t *cf, const char *host,
    const char *hostaddr, const char *port)
{
    char             **e;
    ngx_int_t          n;
    ngx_addr_t         addr;
    ngx_uint_t         i, nhosts;
    ngx_array_t        hosts, addrs, ports;

    if (ngx_array_init(&hosts, cf->pool, 4, sizeof(char *)) != NGX_OK
        || ngx_array_init(&addrs, cf->pool, 4, sizeof(char *)) != NGX_OK
        || ngx_array_init(&ports, cf->pool, 4, sizeof(char *)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    nhosts = 1;

    if (host != NULL && host[0] != '\0') {
        if (ngx_ocdz_pg_split(cf, &hosts, host) != NGX_OK) {
            return NGX_ERROR;
        }

        nhosts = hosts.nelts;
    }

    if (hostaddr != NULL && hostaddr[0] != '\0') {
        if (ngx_ocdz_pg_split(cf, &addrs, hostaddr) != NGX_OK) {
            return NGX_ERROR;
        }

        if (hosts.nelts && addrs.nelts != hosts.nelts) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ocdz_db\" has %ui hostaddr values for %ui "
                               "host name(s): give one per host name",
                               addrs.nelts, hosts.nelts);
            return NGX_ERROR;
        }

        e = addrs.elts;

        /* nginx's own numeric parser: nothing is resolved */

        for (i = 0; i < addrs.nelts; i++) {
            if (e[i][0] == '\0'
                || ngx_parse_addr(cf->pool, &addr, (u_char *) e[i],
                                  ngx_strlen(e[i]))
                   != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"ocdz_db\" has an invalid hostaddr "
                                   "\"%s\": it must be a numeric IPv4 or "
                                   "IPv6 address (a name goes in \"host\")",
                                   e[i]);
                return NGX_ERROR;
            }
        }

        nhosts = addrs.nelts;
    }

    if (port == NULL || port[0] == '\0') {
        return NGX_OK;
    }

    if (ngx_ocdz_pg_split(cf, &ports, port) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ports.nelts != 1 && ports.nelts != nhosts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_db\" has %ui ports for %ui host(s): "
                           "give one port, or one per host",
                           ports.nelts, nhosts);
        return NGX_ERROR;
    }

    e = ports.elts;

    for (i = 0; i < ports.nelts; i++) {

        /* an empty one is libpq's default port */

        if (e[i][0] == '\0') {
            continue;
        }

        n = ngx_atoi((u_char *) e[i], ngx_strlen(e[i]));

        if (n < 1 || n > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ocdz_db\" has an invalid port \"%s\": use "
                               "1 to 65535", e[i]);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ocdz_pg_resolve(ngx_conf_t *cf, ngx_array_t *hosts, ngx_array_t *addrs,
    ngx_array_t *ports, const char *host, const char *port)
{
    char         *h, *a, *pt, **p;
    size_t        len;
    u_char        text[NGX_SOCKADDR_STRLEN + 1];
    ngx_url_t     u;
    ngx_uint_t    i, j, k, n, first;
    ngx_addr_t    addr;
    ngx_array_t   names, portlist;

    if (ngx_array_init(&names, cf->pool, 4, sizeof(char *)) != NGX_OK
        || ngx_array_init(&portlist, cf->pool, 4, sizeof(char *)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_ocdz_pg_split(cf, &names, host) != NGX_OK) {
        return NGX_ERROR;
    }

    if (port != NULL && port[0] != '\0'
        && ngx_ocdz_pg_split(cf, &portlist, port) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (portlist.nelts > 1 && portlist.nelts != names.nelts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the PostgreSQL connection string has %ui ports "
                           "for %ui hosts", portlist.nelts, names.nelts);
        return NGX_ERROR;
    }

    for (i = 0; i < names.nelts; i++) {
        h = ((char **) names.elts)[i];
        pt = portlist.nelts > 1 ? ((char **) portlist.elts)[i] : NULL;
        len = ngx_strlen(h);

        /*
         * A socket directory, an abstract socket or the default need no
         * address; a numeric one is its own. Names are resolved the way
         * nginx resolves "server name;" while reading its configuration
         * (ngx_inet_resolve_host): here, never in a worker.
         */

        if (h[0] == '\0' || h[0] == '/' || h[0] == '@') {
            if (ngx_ocdz_pg_add_host(hosts, addrs, ports, h, "", pt)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_parse_addr(cf->pool, &addr, (u_char *) h, len) == NGX_OK) {
            if (ngx_ocdz_pg_add_host(hosts, addrs, ports, h, h, pt)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        ngx_memzero(&u, sizeof(ngx_url_t));
        u.host.data = (u_char *) h;
        u.host.len = len;

        if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL host \"%s\" not found%s%s", h,
                               u.err ? ": " : "", u.err ? u.err : "");
            return NGX_ERROR;
        }

        first = addrs->nelts;
        n = 0;

        for (k = 0; k < u.naddrs && n < NGX_OCDZ_PG_MAX_ADDRS; k++) {

            /* no port: the address alone, as hostaddr wants it */

            len = ngx_sock_ntop(u.addrs[k].sockaddr, u.addrs[k].socklen,
                                text, NGX_SOCKADDR_STRLEN, 0);
            if (len == 0) {
                continue;
            }

            text[len] = '\0';

            /* a name may list an address twice */

            p = addrs->elts;

            for (j = first; j < addrs->nelts; j++) {
                if (ngx_strcmp(p[j], text) == 0) {
                    break;
                }
            }

            if (j < addrs->nelts) {
                continue;
            }

            a = (char *) ngx_pnalloc(cf->pool, len + 1);
            if (a == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(a, text, len + 1);

            if (ngx_ocdz_pg_add_host(hosts, addrs, ports, h, a, pt)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            n++;
        }

        if (n == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "PostgreSQL host \"%s\" has no IPv4 or IPv6 "
                               "address", h);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_ocdz_pg_add_host(ngx_array_t *hosts, ngx_array_t *addrs,
    ngx_array_t *ports, char *host, char *addr, char *port)
{
    char  **h, **a, **p;

    h = ngx_array_push(hosts);
    a = ngx_array_push(addrs);
    p = port ? ngx_array_push(ports) : NULL;

    if (h == NULL || a == NULL || (port && p == NULL)) {
        return NGX_ERROR;
    }

    *h = host;
    *a = addr;

    if (p) {
        *p = port;
    }

    return NGX_OK;
}


/* splits a libpq comma-separated list into NUL-terminated copies */

static ngx_int_t
ngx_ocdz_pg_split(ngx_conf_t *cf, ngx_array_t *a, const char *s)
{
    char         **e, *v;
    size_t         len;
    const char    *p;

    for ( ;; ) {
        p = s;
        while (*p && *p != ',') {
            p++;
        }

        len = p - s;

        v = (char *) ngx_pnalloc(cf->pool, len + 1);
        e = ngx_array_push(a);
        if (v == NULL || e == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(v, s, len);
        v[len] = '\0';
        *e = v;

        if (*p == '\0') {
            return NGX_OK;
        }

        s = p + 1;
    }
}


static char *
ngx_ocdz_pg_join(ngx_conf_t *cf, ngx_array_t *a)
{
    char        **e;
    u_char       *s, *p;
    size_t        len;
    ngx_uint_t    i;

    e = a->elts;
    len = 0;

    for (i = 0; i < a->nelts; i++) {
        len += ngx_strlen(e[i]) + 1;
    }

    s = ngx_pnalloc(cf->pool, len + 1);
    if (s == NULL) {
        return NULL;
    }

    p = s;

    for (i = 0; i < a->nelts; i++) {
        if (i) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, e[i], ngx_strlen(e[i]));
    }

    *p = '\0';

    return (char *) s;
}


ngx_int_t
ngx_ocdz_pg_add_stmt(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, int nparams)
{
    size_t               len;
    ngx_uint_t           i;
    ngx_ocdz_pg_stmt_t  *st;

    len = ngx_strlen(sql);

    if (len == 0 || nparams < 0 || nparams > NGX_OCDZ_PG_MAX_PARAMS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid statement: %uz bytes, %d parameters "
                           "(at most %d)", len, nparams,
                           NGX_OCDZ_PG_MAX_PARAMS);
        return NGX_ERROR;
    }

    /* locations often share statements */

    for (i = 0; i < pgcf->nstmts; i++) {
        st = &pgcf->stmts[i];

        if (st->nparams == nparams && st->sql.len == len
            && ngx_strcmp(st->sql.data, sql) == 0)
        {
            return i;
        }
    }

    if (pgcf->nstmts == NGX_OCDZ_PG_MAX_STMTS) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "too many PostgreSQL statements (at most %d)",
                           NGX_OCDZ_PG_MAX_STMTS);
        return NGX_ERROR;
    }

    st = &pgcf->stmts[pgcf->nstmts];

    st->sql.data = ngx_pnalloc(cf->pool, len + 1);
    if (st->sql.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(st->sql.data, sql, len + 1);
    st->sql.len = len;
    st->nparams = nparams;
    st->batch = NGX_ERROR;

    *ngx_snprintf((u_char *) st->name, sizeof(st->name) - 1, "ocdz_s%ui",
                  pgcf->nstmts) = '\0';

    return pgcf->nstmts++;
}


/*
 * The password and statement_timeout are set by directives that may
 * follow ocdz_db: they join the keywords once everything is read.
 */

char *
ngx_ocdz_pg_conf_done(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf)
{
    u_char        *p;
    size_t         len;
    ngx_uint_t     n, i, has_options;
    ngx_msec_t     st;
    const char   **kw, **val;

    if (pgcf->keywords == NULL) {
        return NGX_CONF_OK;
    }

    for (n = 0; pgcf->keywords[n]; n++) { /* void */ }

    kw = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    val = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    if (kw == NULL || val == NULL) {
        return NGX_CONF_ERROR;
    }

    st = pgcf->statement_timeout;
    has_options = 0;

    for (i = 0; i < n; i++) {
        kw[i] = pgcf->keywords[i];
        val[i] = pgcf->values[i];

        if (st && ngx_strcmp(kw[i], "options") == 0) {
            len = ngx_strlen(val[i]);

            p = ngx_pnalloc(cf->pool,
                            len + sizeof(" -c statement_timeout=")
                            + NGX_INT_T_LEN);
            if (p == NULL) {
                return NGX_CONF_ERROR;
            }

            val[i] = (char *) p;
            *ngx_sprintf(p, "%s -c statement_timeout=%M", pgcf->values[i], st)
                = '\0';

            has_options = 1;
        }
    }

    if (st && !has_options) {
        p = ngx_pnalloc(cf->pool,
                        sizeof("-c statement_timeout=") + NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        *ngx_sprintf(p, "-c statement_timeout=%M", st) = '\0';

        kw[n] = "options";
        val[n] = (char *) p;
        n++;
    }

    /* the password file's copy, wiped when the configuration goes */

    if (pgcf->password.len) {
        kw[n] = "password";
        val[n] = (char *) pgcf->password.data;
        n++;
    }

    kw[n] = NULL;
    val[n] = NULL;

    pgcf->keywords = kw;
    pgcf->values = val;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_ocdz_pg_add_batch(ngx_conf_t *cf, ngx_ocdz_pg_conf_t *pgcf,
    const char *sql, int nparams, ngx_ocdz_pg_gather_t *gather)
{
    char                *single;
    ngx_int_t            s, b;
    ngx_ocdz_pg_stmt_t  *st;

    single = ngx_ocdz_pg_single_sql(cf, sql);
    if (single == NULL) {
        return NGX_ERROR;
    }

    s = ngx_ocdz_pg_add_stmt(cf, pgcf, single, nparams);
    if (s == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (gather == NULL || gather->max < 2) {
        return s;
    }

    b = ngx_ocdz_pg_add_stmt(cf, pgcf, sql, nparams);
    if (b == NGX_ERROR) {
        return NGX_ERROR;
    }

    st = &pgcf->stmts[s];

    st->batch = b;
    st->gather = *gather;

    if (st->gather.max > NGX_OCDZ_PG_MAX_BATCH) {
        st->gather.max = NGX_OCDZ_PG_MAX_BATCH;
    }

    if (st->gather.enough == 0 || st->gather.enough > st->gather.max) {
        st->gather.enough = st->gather.max;
    }

    return s;
}


/*
 * The form of an array statement for one query: each $n::type[] becomes
 * ARRAY[$n::type], a one-element array. Other parameters stay as they
 * are.
 */

static char *
ngx_ocdz_pg_single_sql(ngx_conf_t *cf, const char *sql)
{
    u_char      *s, *d;
    size_t       len, n;
    const char  *p, *q, *t;

    len = ngx_strlen(sql);

    /* "$n::t[]" becomes "ARRAY[$n::t]": 5 bytes more, at most */

    n = 0;

    for (p = sql; *p; p++) {
        if (*p == '$') {
            n++;
        }
    }

    s = ngx_pnalloc(cf->pool, len + 5 * n + 1);
    if (s == NULL) {
        return NULL;
    }

    d = s;
    p = sql;

    while (*p) {

        if (*p != '$' || p[1] < '0' || p[1] > '9') {
            *d++ = *p++;
            continue;
        }

        /* $digits::type[] */

        for (q = p + 1; *q >= '0' && *q <= '9'; q++) { /* void */ }

        if (q[0] != ':' || q[1] != ':') {
            d = ngx_cpymem(d, p, q - p);
            p = q;
            continue;
        }

        for (t = q + 2;
             (*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z')
             || (*t >= '0' && *t <= '9') || *t == '_';
             t++)
        { /* void */ }

        if (t == q + 2 || t[0] != '[' || t[1] != ']') {
            d = ngx_cpymem(d, p, t - p);
            p = t;
            continue;
        }

        d = ngx_cpymem(d, "ARRAY[", 6);
        d = ngx_cpymem(d, p, t - p);
        *d++ = ']';
        p = t + 2;
    }

    *d = '\0';

    return (char *) s;
}


/*
 * One line from a libpq message: ERROR (a statement's error may quote
 * values: those are logged from the result), DETAIL, HINT, CONTEXT and
 * statement lines are dropped, the rest joined with "; ".
 */

u_char *
ngx_ocdz_pg_errmsg(u_char *buf, size_t size, const char *msg)
{
    u_char       *p, *last;
    size_t        len;
    const char   *line, *end;

    p = buf;
    last = buf + size - 1;

    for (line = msg; *line; line = *end ? end + 1 : end) {

        end = line;
        while (*end && *end != '\n') {
            end++;
        }

        len = end - line;

        while (len && (line[len - 1] == ' ' || line[len - 1] == '\r')) {
            len--;
        }

        if (len == 0
            || line[0] == ' ' || line[0] == '\t'
            || ngx_strncmp(line, "ERROR:", 6) == 0
            || ngx_strncmp(line, "DETAIL:", 7) == 0
            || ngx_strncmp(line, "HINT:", 5) == 0
            || ngx_strncmp(line, "CONTEXT:", 8) == 0
            || ngx_strncmp(line, "QUERY:", 6) == 0
            || ngx_strncmp(line, "STATEMENT:", 10) == 0
            || ngx_strncmp(line, "LINE ", 5) == 0)
        {
            continue;
        }

        if (p != buf && p < last) {
            p = ngx_cpymem(p, "; ", ngx_min(2, (size_t) (last - p)));
        }

        p = ngx_cpymem(p, line, ngx_min(len, (size_t) (last - p)));
    }

    *p = '\0';

    return buf;
}
