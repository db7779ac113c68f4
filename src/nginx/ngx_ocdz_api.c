
/*
 * ngx_http_ocdz_module: the OneClickDz API call (see ngx_ocdz_api.h).
 *
 * Each call keeps its easy handle, made once with every fixed option,
 * so that a connection to the API is reused; only the URL and the
 * token's header list change between checks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_ocdz_api.h"
#include "ngx_ocdz_resolve.h"


#define NGX_OCDZ_API_PATH         "/v3/internet/check-id/"
#define NGX_OCDZ_API_USER_AGENT   "ngx_http_ocdz_module"


struct ngx_ocdz_api_s {
    ngx_ocdz_curl_t            *curl;
    ngx_log_t                  *log;
    ngx_msec_t                  timeout;
    ngx_msec_t                  connect_timeout;

    char                       *url;        /* base + path + id + NUL */
    size_t                      url_prefix;
    u_char                     *ca_pem;     /* ocdz_api_ca_file, read by
                                               the master */
    size_t                      ca_pem_len;
    char                       *proxy;
    struct curl_slist          *headers[2]; /* primary, secondary */
    ngx_ocdz_resolve_t         *resolve;    /* the hosts' addresses */

    unsigned                    easy_failed:1;  /* logged once */
};


static CURL *ngx_ocdz_api_easy(ngx_ocdz_api_call_t *call);
static size_t ngx_ocdz_api_body(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t ngx_ocdz_api_header(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static void ngx_ocdz_api_done(CURL *easy, CURLcode rc, void *data);


ngx_ocdz_api_t *
ngx_ocdz_api_create(ngx_http_ocdz_worker_t *w)
{
    u_char                     *buf;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_ocdz_api_t             *api;
    struct curl_slist          *list, *next;
    ngx_http_ocdz_main_conf_t  *omcf;

    omcf = w->omcf;

    api = ngx_pcalloc(w->cycle->pool, sizeof(ngx_ocdz_api_t));
    if (api == NULL) {
        return NULL;
    }

    api->curl = w->curl;
    api->log = w->log;
    api->timeout = omcf->api_timeout;
    api->connect_timeout = omcf->api_connect_timeout;

    /* the URL: base, path, then the id written in place per check */

    api->url_prefix = omcf->api_base.len + sizeof(NGX_OCDZ_API_PATH) - 1;

    api->url = ngx_alloc(api->url_prefix + OCDZ_TOPUP_ID_LEN + 1, w->log);
    if (api->url == NULL) {
        goto failed;
    }

    ngx_memcpy(ngx_cpymem(api->url, omcf->api_base.data,
                          omcf->api_base.len),
               NGX_OCDZ_API_PATH, sizeof(NGX_OCDZ_API_PATH) - 1);
    api->url[api->url_prefix] = '\0';

    if (omcf->api_ca_pem.len) {
        api->ca_pem = ngx_alloc(omcf->api_ca_pem.len, w->log);
        if (api->ca_pem == NULL) {
            goto failed;
        }

        ngx_memcpy(api->ca_pem, omcf->api_ca_pem.data, omcf->api_ca_pem.len);
        api->ca_pem_len = omcf->api_ca_pem.len;
    }

    if (omcf->api_proxy.len) {
        api->proxy = ngx_alloc(omcf->api_proxy.len + 1, w->log);
        if (api->proxy == NULL) {
            goto failed;
        }

        *ngx_cpymem(api->proxy, omcf->api_proxy.data, omcf->api_proxy.len) =
                                                                        '\0';
    }

    /* libcurl resolves no name: the addresses come from here */

    if (omcf->resolve) {
        api->resolve = ngx_ocdz_resolve_create(omcf->resolve, w->log);
        if (api->resolve == NULL) {
            goto failed;
        }
    }

    /* one header list per token, shared by every transfer */

    for (i = 0; i < 2; i++) {
        if (omcf->api_token[i].len == 0) {
            continue;
        }

        len = sizeof("X-Access-Token: ") - 1 + omcf->api_token[i].len + 1;

        buf = ngx_alloc(len, w->log);
        if (buf == NULL) {
            goto failed;
        }

        *ngx_sprintf(buf, "X-Access-Token: %V", &omcf->api_token[i]) = '\0';

        list = curl_slist_append(NULL, "Accept: application/json");
        next = list ? curl_slist_append(list, (char *) buf) : NULL;

        ocdz_wipe(buf, len);
        ngx_free(buf);

        if (next == NULL) {
            if (list) {
                curl_slist_free_all(list);
            }

            goto failed;
        }

        api->headers[i] = list;
    }

    return api;

failed:

    ngx_log_error(NGX_LOG_EMERG, w->log, 0,
                  "ocdz: cannot set up the OneClickDz API calls");

    ngx_ocdz_api_destroy(api);

    return NULL;
}


void
ngx_ocdz_api_destroy(ngx_ocdz_api_t *api)
{
    ngx_uint_t          i;
    struct curl_slist  *h;

    for (i = 0; i < 2; i++) {
        for (h = api->headers[i]; h; h = h->next) {
            ocdz_wipe(h->data, ngx_strlen(h->data));
        }

        if (api->headers[i]) {
            curl_slist_free_all(api->headers[i]);
            api->headers[i] = NULL;
        }
    }

    if (api->url) {
        ngx_free(api->url);
        api->url = NULL;
    }

    if (api->ca_pem) {
        ngx_free(api->ca_pem);
        api->ca_pem = NULL;
    }

    if (api->proxy) {
        ngx_free(api->proxy);
        api->proxy = NULL;
    }

    if (api->resolve) {
        ngx_ocdz_resolve_destroy(api->resolve);
        api->resolve = NULL;
    }
}


ngx_uint_t
ngx_ocdz_api_ready(ngx_ocdz_api_t *api)
{
    return api->resolve == NULL || ngx_ocdz_resolve_ready(api->resolve);
}


ngx_int_t
ngx_ocdz_api_check(ngx_ocdz_api_t *api, ngx_ocdz_api_call_t *call,
    const char *topup_id, ngx_uint_t token)
{
    CURL                   *easy;
    size_t                  len;
    CURLcode                rc;
    ngx_uint_t              gen;
    ngx_ocdz_api_result_t  *r;

    call->api = api;

    len = ngx_strlen(topup_id);

    if (len != OCDZ_TOPUP_ID_LEN || (token && api->headers[1] == NULL)) {
        return NGX_ERROR;
    }

    easy = ngx_ocdz_api_easy(call);
    if (easy == NULL) {
        return NGX_ERROR;
    }

    r = &call->result;

    r->call = OCDZ_CALL_FAILED;
    r->rc = CURLE_OK;
    r->http = 0;
    r->body_len = 0;
    r->retry_after = -1;
    r->retry_at = -1;
    r->error[0] = '\0';

    call->oversized = 0;

    ngx_memcpy(api->url + api->url_prefix, topup_id, len + 1);

    /* the URL is copied by curl; the header list is shared */

    rc = curl_easy_setopt(easy, CURLOPT_URL, api->url);

    if (rc == CURLE_OK) {
        rc = curl_easy_setopt(easy, CURLOPT_HTTPHEADER, api->headers[token]);
    }

    /*
     * the hosts' addresses, as they are now; after they changed, a new
     * connection goes to the new ones
     */

    if (rc == CURLE_OK && api->resolve) {
        if (!ngx_ocdz_resolve_ready(api->resolve)) {
            return NGX_ERROR;
        }

        rc = curl_easy_setopt(easy, CURLOPT_RESOLVE,
                              ngx_ocdz_resolve_list(api->resolve, &gen));

        if (rc == CURLE_OK) {
            rc = curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT,
                                  (long) (call->resolved != gen));
            call->resolved = gen;
        }
    }

    if (rc != CURLE_OK
        || ngx_ocdz_curl_start(api->curl, easy, ngx_ocdz_api_done, call)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    call->running = 1;

    return NGX_OK;
}


void
ngx_ocdz_api_stop(ngx_ocdz_api_call_t *call)
{
    if (call->running) {
        ngx_ocdz_curl_stop(call->api->curl, call->easy);
        call->running = 0;
    }

    ngx_ocdz_api_wipe(call);
}


void
ngx_ocdz_api_wipe(ngx_ocdz_api_call_t *call)
{
    if (call->result.body) {
        ocdz_wipe(call->result.body, call->result.body_len);
    }

    call->result.body_len = 0;
}


void
ngx_ocdz_api_free(ngx_ocdz_api_call_t *call)
{
    ngx_ocdz_api_stop(call);

    if (call->easy) {
        curl_easy_cleanup(call->easy);
        call->easy = NULL;
    }

    if (call->result.body) {
        ocdz_wipe(call->result.body, OCDZ_UPSTREAM_BODY_MAX);
        ngx_free(call->result.body);
        call->result.body = NULL;
    }
}


/* the call's easy handle, made once with every fixed option */

static CURL *
ngx_ocdz_api_easy(ngx_ocdz_api_call_t *call)
{
    CURL              *easy;
    CURLcode           rc;
    ngx_ocdz_api_t    *api;
    struct curl_blob   ca;

    if (call->easy) {
        return call->easy;
    }

    api = call->api;

    if (call->result.body == NULL) {
        call->result.body = ngx_alloc(OCDZ_UPSTREAM_BODY_MAX, api->log);
        if (call->result.body == NULL) {
            return NULL;
        }
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ERR, api->log, 0,
                      "ocdz: curl_easy_init() failed");
        return NULL;
    }

    rc = curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);

#define ngx_ocdz_setopt(opt, val)                                            \
    if (rc == CURLE_OK) {                                                    \
        rc = curl_easy_setopt(easy, opt, val);                               \
    }

    ngx_ocdz_setopt(CURLOPT_HTTPGET, 1L);
    ngx_ocdz_setopt(CURLOPT_CONNECTTIMEOUT_MS, (long) api->connect_timeout);
    ngx_ocdz_setopt(CURLOPT_TIMEOUT_MS, (long) api->timeout);

#if (LIBCURL_VERSION_NUM >= 0x075500)
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS_STR, "https");
    ngx_ocdz_setopt(CURLOPT_REDIR_PROTOCOLS_STR, "https");
#else
    ngx_ocdz_setopt(CURLOPT_PROTOCOLS, (long) CURLPROTO_HTTPS);
    ngx_ocdz_setopt(CURLOPT_REDIR_PROTOCOLS, (long) CURLPROTO_HTTPS);
#endif

    /* a redirect would carry the access token elsewhere: never followed */
    ngx_ocdz_setopt(CURLOPT_FOLLOWLOCATION, 0L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYPEER, 1L);
    ngx_ocdz_setopt(CURLOPT_SSL_VERIFYHOST, 2L);
    ngx_ocdz_setopt(CURLOPT_SSLVERSION, (long) CURL_SSLVERSION_TLSv1_2);

    if (api->ca_pem) {
        ca.data = api->ca_pem;
        ca.len = api->ca_pem_len;
        ca.flags = CURL_BLOB_NOCOPY;
        ngx_ocdz_setopt(CURLOPT_CAINFO_BLOB, &ca);
    }

    /* "": no proxy from the environment, only ocdz_api_proxy */
    ngx_ocdz_setopt(CURLOPT_PROXY, api->proxy ? api->proxy : "");

    ngx_ocdz_setopt(CURLOPT_USERAGENT, NGX_OCDZ_API_USER_AGENT);
    ngx_ocdz_setopt(CURLOPT_WRITEFUNCTION, ngx_ocdz_api_body);
    ngx_ocdz_setopt(CURLOPT_WRITEDATA, call);
    ngx_ocdz_setopt(CURLOPT_HEADERFUNCTION, ngx_ocdz_api_header);
    ngx_ocdz_setopt(CURLOPT_HEADERDATA, call);
    ngx_ocdz_setopt(CURLOPT_ERRORBUFFER, call->result.error);
    ngx_ocdz_setopt(CURLOPT_PRIVATE, call);

#undef ngx_ocdz_setopt

    if (rc != CURLE_OK) {
        if (!api->easy_failed) {
            ngx_log_error(NGX_LOG_ERR, api->log, 0,
                          "ocdz: curl_easy_setopt() failed: %s",
                          curl_easy_strerror(rc));
            api->easy_failed = 1;
        }

        curl_easy_cleanup(easy);
        return NULL;
    }

    call->easy = easy;

    return easy;
}


/* the body, up to the parser's cap; more ends the transfer */

static size_t
ngx_ocdz_api_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    size_t                  n;
    ngx_ocdz_api_call_t    *call;
    ngx_ocdz_api_result_t  *r;

    call = userdata;
    r = &call->result;
    n = size * nmemb;

    if (n > OCDZ_UPSTREAM_BODY_MAX - r->body_len) {
        call->oversized = 1;
        return 0;
    }

    ngx_memcpy(r->body + r->body_len, ptr, n);
    r->body_len += n;

    return n;
}


/* headers: only Retry-After is read (seconds or an HTTP date) */

static size_t
ngx_ocdz_api_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    u_char                 *p, *last;
    size_t                  n;
    time_t                  t;
    ngx_int_t               s;
    ngx_ocdz_api_call_t    *call;
    ngx_ocdz_api_result_t  *r;

    call = userdata;
    r = &call->result;
    n = size * nmemb;

    p = (u_char *) ptr;
    last = p + n;

    /* a new response (after a proxy's CONNECT, or a 1xx) */

    if (n >= 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        r->retry_after = -1;
        r->retry_at = -1;
        return n;
    }

    if (n <= sizeof("Retry-After:") - 1
        || ngx_strncasecmp(p, (u_char *) "Retry-After:",
                           sizeof("Retry-After:") - 1)
           != 0)
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
        r->retry_after = s;
        r->retry_at = -1;
        return n;
    }

    t = ngx_parse_http_time(p, last - p);

    if (t != NGX_ERROR) {
        r->retry_after = -1;
        r->retry_at = t;
    }

    return n;
}


/* the transfer ended (called by the curl glue, outside any curl call) */

static void
ngx_ocdz_api_done(CURL *easy, CURLcode rc, void *data)
{
    ngx_ocdz_api_call_t    *call;
    ngx_ocdz_api_result_t  *r;

    call = data;
    r = &call->result;

    call->running = 0;

    r->rc = rc;
    r->http = 0;
    (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->http);

    if (rc == CURLE_OK) {
        r->call = OCDZ_CALL_ANSWERED;

    } else if (call->oversized) {
        r->call = OCDZ_CALL_OVERSIZED;

    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        r->call = OCDZ_CALL_TIMEOUT;

    } else {
        r->call = OCDZ_CALL_FAILED;
    }

    /* curl's message when it has one, its code's text when not */

    if (rc != CURLE_OK && r->error[0] == '\0') {
        ngx_cpystrn((u_char *) r->error, (u_char *) curl_easy_strerror(rc),
                    sizeof(r->error));
    }

    call->done(call);
}
