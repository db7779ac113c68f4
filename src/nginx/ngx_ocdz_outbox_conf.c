
/*
 * ngx_http_ocdz_module: the delivery outbox's configuration, checked by
 * the master (nginx -t): the settings, the URLs, the SMS gateway's body
 * and texts, the SMTP client and the email templates, the URLs' host
 * names, then the statements (see ngx_ocdz_outbox.h). The sender, run
 * by each worker, is in ngx_ocdz_outbox.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_ocdz_outbox.h"
#include "ngx_ocdz_resolve.h"
#include "ngx_ocdz_smtp.h"
#include "ocdz_sms.h"
#include "ocdz_mail.h"


#define NGX_OCDZ_OUTBOX_INTERVAL_MIN 100


static char *ngx_ocdz_outbox_url(ngx_conf_t *cf, ngx_str_t *url,
    const char *name);
static char *ngx_ocdz_outbox_names(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);
static char *ngx_ocdz_outbox_prepare_sms(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);
static char *ngx_ocdz_outbox_prepare_mail(ngx_conf_t *cf,
    ngx_http_ocdz_main_conf_t *omcf);
static void *ngx_ocdz_outbox_palloc(void *data, size_t size);


char *
ngx_ocdz_outbox_prepare(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    ngx_uint_t  i, k, sms_tpl, mail_tpl;

    /* template files nothing will send (nor check against the gateway) */

    sms_tpl = 0;
    mail_tpl = 0;

    for (i = 0; i < 3; i++) {
        sms_tpl |= (omcf->sms_text_file[i].len != 0);

        for (k = 0; k < 3; k++) {
            mail_tpl |= (omcf->mail_tpl_file[i][k].len != 0);
        }
    }

    if (sms_tpl && (!omcf->outbox || omcf->sms_url.len == 0)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "ocdz_sms_template is used only with "
                           "\"ocdz_outbox on\" and "
                           "\"ocdz_sms_gateway_url\"");
    }

    if (mail_tpl && (!omcf->outbox || omcf->smtp_url.len == 0)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "ocdz_mail_template is used only with "
                           "\"ocdz_outbox on\" and \"ocdz_smtp_url\"");
    }

    if (!omcf->outbox) {
        if (omcf->webhook_url.len || omcf->webhook_secret.len) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "ocdz_webhook_url and "
                               "ocdz_webhook_secret_file are used only "
                               "with \"ocdz_outbox on\"");
        }

        return NGX_CONF_OK;
    }

    if (omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_outbox on\" needs \"ocdz_db\": "
                           "deliveries are leased and recorded in "
                           "PostgreSQL");
        return NGX_CONF_ERROR;
    }

    if (omcf->pg->background_max == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ocdz_outbox on\" needs at least one "
                           "database connection "
                           "(\"ocdz_poller_db_connections\")");
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_concurrency == 0
        || omcf->outbox_concurrency > NGX_OCDZ_PG_MAX_BATCH)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_concurrency must be from 1 to %d",
                           NGX_OCDZ_PG_MAX_BATCH);
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_attempts == 0 || omcf->outbox_attempts > 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_attempts must be from 1 to 1000");
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_interval < NGX_OCDZ_OUTBOX_INTERVAL_MIN) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_interval is too short: at least "
                           "%dms", NGX_OCDZ_OUTBOX_INTERVAL_MIN);
        return NGX_CONF_ERROR;
    }

    if (omcf->outbox_backoff == 0
        || omcf->outbox_max_backoff < omcf->outbox_backoff)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_backoff must be more than 0 and "
                           "at most ocdz_outbox_max_backoff");
        return NGX_CONF_ERROR;
    }

    if (omcf->webhook_url.len
        && (omcf->webhook_timeout == 0
            || omcf->outbox_lease <= omcf->webhook_timeout))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_lease must be longer than "
                           "ocdz_webhook_timeout (and that more than 0): "
                           "a send must end before another worker may "
                           "take its delivery over");
        return NGX_CONF_ERROR;
    }

    if (omcf->webhook_url.len) {

        if (ngx_ocdz_outbox_url(cf, &omcf->webhook_url, "ocdz_webhook_url")
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (omcf->webhook_secret.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_webhook_url needs "
                               "\"ocdz_webhook_secret_file\": every "
                               "webhook is signed");
            return NGX_CONF_ERROR;
        }
    }

    if (omcf->sms_url.len
        && ngx_ocdz_outbox_prepare_sms(cf, omcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (omcf->smtp_url.len
        && ngx_ocdz_outbox_prepare_mail(cf, omcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* the URLs' host names, last: the other mistakes are said first */

    if (ngx_ocdz_outbox_names(cf, omcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    /* the statements, their SQL kept with the run time that reads them */

    if (ngx_ocdz_outbox_add_stmts(cf, omcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_ocdz_outbox_url(ngx_conf_t *cf, ngx_str_t *url, const char *name)
{
    if (!((url->len > 7
           && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
          || (url->len > 8
              && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0))
        || ngx_strlchr(url->data, url->data + url->len, ' ')
        || ngx_strlchr(url->data, url->data + url->len, '\0'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s must be an http:// or https:// URL without "
                           "spaces", name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * The hosts of the URLs, resolved as the API's (ngx_ocdz_resolve.c): by
 * the master now (nginx -t fails for one that does not resolve), or by
 * nginx's resolver in each worker. libcurl never resolves them.
 */

static char *
ngx_ocdz_outbox_names(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    ngx_uint_t                i;
    ngx_str_t                *url;
    ngx_ocdz_resolve_conf_t  *rcf;

    static const char  *what[3] = {
        "ocdz_webhook_url", "ocdz_sms_gateway_url", "ocdz_smtp_url"
    };

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_ocdz_resolve_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_ocdz_resolve_conf_init(cf, rcf);

    for (i = 0; i < 3; i++) {
        url = (i == 0) ? &omcf->webhook_url
              : (i == 1) ? &omcf->sms_url : &omcf->smtp_url;

        omcf->outbox_hosts[i] = -1;

        if (url->len == 0) {
            continue;
        }

        if (ngx_ocdz_resolve_add_url(cf, rcf, url, what[i],
                                     &omcf->outbox_hosts[i])
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    omcf->outbox_resolve = rcf->nnames ? rcf : NULL;

    return NGX_CONF_OK;
}


/* the gateway body and the SMS texts, parsed and checked for nginx -t */

static char *
ngx_ocdz_outbox_prepare_sms(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    int            rc;
    char           err[256];
    ngx_uint_t     lang;
    ocdz_buf_t     b;
    ocdz_alloc_t  *alloc;

    static const char  *langs[3] = { "English", "French", "Arabic" };
    static const char  *codes[3] = { "en", "fr", "ar" };

    if (ngx_ocdz_outbox_url(cf, &omcf->sms_url, "ocdz_sms_gateway_url")
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (omcf->sms_body.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_sms_gateway_url needs "
                           "\"ocdz_sms_gateway_body\"");
        return NGX_CONF_ERROR;
    }

    if (omcf->keyring == NULL || omcf->keyring->nkeys == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_sms_gateway_url needs \"ocdz_card_key\": "
                           "the SMS carries the card, opened when sent");
        return NGX_CONF_ERROR;
    }

    if (omcf->sms_max_parts == 0 || omcf->sms_max_parts > OCDZ_SMS_PARTS_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_sms_max_parts must be from 1 to %d",
                           OCDZ_SMS_PARTS_MAX);
        return NGX_CONF_ERROR;
    }

    if (omcf->sms_timeout == 0 || omcf->outbox_lease <= omcf->sms_timeout) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_lease must be longer than "
                           "ocdz_sms_timeout (and that more than 0)");
        return NGX_CONF_ERROR;
    }

    if (omcf->sms_reply_id.len
        && !ocdz_sms_reply_path_valid((char *) omcf->sms_reply_id.data,
                                      omcf->sms_reply_id.len))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ocdz_sms_reply_id path: dot-separated "
                           "keys or indexes, at most %d",
                           OCDZ_SMS_PATH_MAX);
        return NGX_CONF_ERROR;
    }

    /* the templates live as long as the configuration */

    alloc = ngx_pcalloc(cf->pool, sizeof(ocdz_alloc_t));
    if (alloc == NULL) {
        return NGX_CONF_ERROR;
    }

    alloc->alloc = ngx_ocdz_outbox_palloc;
    alloc->data = cf->pool;

    err[0] = '\0';

    rc = ocdz_tpl_parse(alloc, omcf->sms_body_json ? OCDZ_TPL_SMS_JSON
                                                   : OCDZ_TPL_SMS_FORM,
                        (char *) omcf->sms_body.data, omcf->sms_body.len,
                        &omcf->sms_body_tpl, err, sizeof(err));
    if (rc != OCDZ_MSG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_sms_gateway_body: %s",
                           err[0] ? err : "cannot parse it");
        return NGX_CONF_ERROR;
    }

    for (lang = 0; lang < 3; lang++) {
        rc = OCDZ_MSG_OK;

        /* ocdz_sms_template parsed its file already */

        if (omcf->sms_text_tpl[lang] == NULL) {
            ocdz_buf_init(&b, &ocdz_alloc_std, 0);

            rc = ocdz_tpl_builtin(OCDZ_TPL_SMS_TEXT, (ocdz_lang_e) lang, &b);

            if (rc == OCDZ_MSG_OK) {
                rc = ocdz_tpl_parse(alloc, OCDZ_TPL_SMS_TEXT,
                                    (char *) b.data, b.len,
                                    &omcf->sms_text_tpl[lang], err,
                                    sizeof(err));
            }

            ocdz_buf_free(&b);
        }

        if (rc == OCDZ_MSG_OK) {
            rc = ocdz_sms_check(omcf->sms_text_tpl[lang], (ocdz_lang_e) lang,
                                &omcf->instructions, NULL,
                                omcf->sms_max_parts, NULL, err, sizeof(err));
        }

        if (rc != OCDZ_MSG_OK && omcf->sms_text_file[lang].len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "ocdz_sms_template %s file \"%V\" does not "
                               "fit ocdz_sms_max_parts %ui: %s",
                               codes[lang], &omcf->sms_text_file[lang],
                               omcf->sms_max_parts,
                               err[0] ? err : "cannot build it");
            return NGX_CONF_ERROR;
        }

        if (rc != OCDZ_MSG_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "the %s SMS text does not fit "
                               "ocdz_sms_max_parts %ui: %s", langs[lang],
                               omcf->sms_max_parts,
                               err[0] ? err : "cannot build it");
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* the SMTP server, the sender and the templates, for nginx -t */

static char *
ngx_ocdz_outbox_prepare_mail(ngx_conf_t *cf, ngx_http_ocdz_main_conf_t *omcf)
{
    int                rc;
    char               err[256];
    u_char            *at;
    ngx_uint_t         lang, k;
    ocdz_buf_t         b;
    ocdz_alloc_t      *alloc;
    ocdz_mail_conf_t  *mc;

    static const char  *langs[3] = { "English", "French", "Arabic" };
    static const ocdz_tpl_kind_e  kinds[3] = {
        OCDZ_TPL_MAIL_SUBJECT, OCDZ_TPL_MAIL_TEXT, OCDZ_TPL_MAIL_HTML
    };

    if (!((omcf->smtp_url.len > 7
           && ngx_strncasecmp(omcf->smtp_url.data, (u_char *) "smtp://", 7)
              == 0)
          || (omcf->smtp_url.len > 8
              && ngx_strncasecmp(omcf->smtp_url.data, (u_char *) "smtps://",
                                 8) == 0))
        || ngx_strlchr(omcf->smtp_url.data,
                       omcf->smtp_url.data + omcf->smtp_url.len, ' ')
        || ngx_strlchr(omcf->smtp_url.data,
                       omcf->smtp_url.data + omcf->smtp_url.len, '@'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_smtp_url must be an smtp:// (STARTTLS "
                           "required) or smtps:// URL without spaces or "
                           "credentials (ocdz_smtp_credentials_file)");
        return NGX_CONF_ERROR;
    }

    if (omcf->mail_from.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_smtp_url needs \"ocdz_mail_from\"");
        return NGX_CONF_ERROR;
    }

    if (omcf->keyring == NULL || omcf->keyring->nkeys == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_smtp_url needs \"ocdz_card_key\": the "
                           "email carries the card, opened when sent");
        return NGX_CONF_ERROR;
    }

    if (omcf->smtp_timeout == 0 || omcf->outbox_lease <= omcf->smtp_timeout)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_outbox_lease must be longer than "
                           "ocdz_smtp_timeout (and that more than 0)");
        return NGX_CONF_ERROR;
    }

    /* the Message-ID domain: the From address's unless given */

    if (omcf->mail_domain.len == 0) {
        at = ngx_strlchr(omcf->mail_from.data,
                         omcf->mail_from.data + omcf->mail_from.len, '@');
        if (at) {
            omcf->mail_domain.data = at + 1;
            omcf->mail_domain.len = omcf->mail_from.data
                                    + omcf->mail_from.len - at - 1;
        }
    }

    omcf->smtp = ngx_pcalloc(cf->pool, sizeof(ngx_ocdz_smtp_conf_t));
    if (omcf->smtp == NULL) {
        return NGX_CONF_ERROR;
    }

    omcf->smtp->user = omcf->smtp_user;
    omcf->smtp->password = omcf->smtp_password;
    omcf->smtp->timeout = omcf->smtp_timeout;

    if (ngx_ocdz_smtp_conf(cf, omcf->smtp, &omcf->smtp_url,
                           &omcf->smtp_ca_pem, &omcf->mail_domain)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* built once: every email's headers come from it */

    mc = ngx_pcalloc(cf->pool, sizeof(ocdz_mail_conf_t));
    if (mc == NULL) {
        return NGX_CONF_ERROR;
    }

    mc->from.data = omcf->mail_from.data;
    mc->from.len = omcf->mail_from.len;
    mc->from_name.data = omcf->mail_from_name.data;
    mc->from_name.len = omcf->mail_from_name.len;
    mc->reply_to.data = omcf->mail_reply_to.data;
    mc->reply_to.len = omcf->mail_reply_to.len;
    mc->domain.data = omcf->mail_domain.data;
    mc->domain.len = omcf->mail_domain.len;

    omcf->mail_conf = mc;

    err[0] = '\0';

    if (ocdz_mail_conf_check(mc, err, sizeof(err)) != OCDZ_MSG_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "ocdz_mail_from, ocdz_mail_from_name, "
                           "ocdz_mail_reply_to or ocdz_mail_domain: %s",
                           err[0] ? err : "refused");
        return NGX_CONF_ERROR;
    }

    alloc = ngx_pcalloc(cf->pool, sizeof(ocdz_alloc_t));
    if (alloc == NULL) {
        return NGX_CONF_ERROR;
    }

    alloc->alloc = ngx_ocdz_outbox_palloc;
    alloc->data = cf->pool;

    for (lang = 0; lang < 3; lang++) {
        for (k = 0; k < 3; k++) {

            /* ocdz_mail_template parsed its file already */

            if (omcf->mail_tpl[lang][k]) {
                continue;
            }

            ocdz_buf_init(&b, &ocdz_alloc_std, 0);

            rc = ocdz_tpl_builtin(kinds[k], (ocdz_lang_e) lang, &b);

            if (rc == OCDZ_MSG_OK) {
                rc = ocdz_tpl_parse(alloc, kinds[k], (char *) b.data, b.len,
                                    &omcf->mail_tpl[lang][k], err,
                                    sizeof(err));
            }

            ocdz_buf_free(&b);

            if (rc != OCDZ_MSG_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "the %s %s template: %s", langs[lang],
                                   ocdz_tpl_kind_name(kinds[k]),
                                   err[0] ? err : "cannot parse it");
                return NGX_CONF_ERROR;
            }
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_ocdz_outbox_palloc(void *data, size_t size)
{
    return ngx_palloc(data, size);
}
