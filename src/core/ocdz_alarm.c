/*
 * One failure, logged once: see ocdz_alarm.h.
 */

#include <stdio.h>
#include <string.h>

#include "ocdz_alarm.h"


static void ocdz_alarm_detail(ocdz_alarm_t *a, const char *detail);


ocdz_alarm_log_e
ocdz_alarm_raise(ocdz_alarm_t *a, uint64_t now, const char *detail)
{
    if (!a->active) {
        a->active = 1;
        a->since = now;
        a->logged = now;
        a->duration = 0;
        a->count = 1;
        a->repeats = 0;
        a->reported = 0;
        a->refused = 0;
        ocdz_alarm_detail(a, detail);

        return OCDZ_ALARM_LOG_START;
    }

    a->count++;
    a->repeats++;
    ocdz_alarm_detail(a, detail);

    /* a clock that went back logs no burst */

    if (now < a->logged || now - a->logged < OCDZ_ALARM_REPEAT_MS) {
        return OCDZ_ALARM_LOG_NONE;
    }

    a->logged = now;
    a->reported = a->repeats;
    a->repeats = 0;

    return OCDZ_ALARM_LOG_REPEAT;
}


void
ocdz_alarm_refused(ocdz_alarm_t *a, uint64_t n)
{
    if (a->active) {
        a->refused += n;
    }
}


ocdz_alarm_log_e
ocdz_alarm_clear(ocdz_alarm_t *a, uint64_t now)
{
    if (!a->active) {
        return OCDZ_ALARM_LOG_NONE;
    }

    a->active = 0;
    a->duration = (now > a->since) ? now - a->since : 0;

    return OCDZ_ALARM_LOG_END;
}


const char *
ocdz_alarm_kind_str(ocdz_alarm_kind_e kind)
{
    static const char  *names[OCDZ_ALARM_COUNT] = {
        "",
        "database unavailable",
        "database schema too old",
        "API unreachable (TLS)",
        "API unreachable (name resolution)",
        "API unreachable (connection refused)",
        "API unreachable (timeout)",
        "API access refused",
        "API host lookup failed"
    };

    if ((unsigned) kind >= OCDZ_ALARM_COUNT) {
        return "";
    }

    return names[kind];
}


ocdz_alarm_kind_e
ocdz_alarm_curl_kind(int code)
{
    switch (code) {

    case 5:         /* CURLE_COULDNT_RESOLVE_PROXY */
    case 6:         /* CURLE_COULDNT_RESOLVE_HOST */
        return OCDZ_ALARM_API_DNS;

    case 7:         /* CURLE_COULDNT_CONNECT */
    case 97:        /* CURLE_PROXY */
        return OCDZ_ALARM_API_REFUSED;

    case 28:        /* CURLE_OPERATION_TIMEDOUT */
        return OCDZ_ALARM_API_TIMEOUT;

    case 35:        /* CURLE_SSL_CONNECT_ERROR */
    case 51:        /* CURLE_PEER_FAILED_VERIFICATION (old) */
    case 53:        /* CURLE_SSL_ENGINE_NOTFOUND */
    case 58:        /* CURLE_SSL_CERTPROBLEM */
    case 59:        /* CURLE_SSL_CIPHER */
    case 60:        /* CURLE_PEER_FAILED_VERIFICATION */
    case 77:        /* CURLE_SSL_CACERT_BADFILE */
    case 80:        /* CURLE_SSL_SHUTDOWN_FAILED */
    case 82:        /* CURLE_SSL_CRL_BADFILE */
    case 83:        /* CURLE_SSL_ISSUER_ERROR */
    case 90:        /* CURLE_SSL_PINNEDPUBKEYNOTMATCH */
    case 91:        /* CURLE_SSL_INVALIDCERTSTATUS */
        return OCDZ_ALARM_API_TLS;

    default:
        return OCDZ_ALARM_NONE;
    }
}


char *
ocdz_alarm_duration_str(char *buf, size_t size, uint64_t ms)
{
    unsigned long long  s;

    if (size == 0) {
        return buf;
    }

    s = (unsigned long long) ((ms + 500) / 1000);

    if (ms < 1000) {
        snprintf(buf, size, "%llums", (unsigned long long) ms);

    } else if (s < 60) {
        snprintf(buf, size, "%llus", s);

    } else if (s < 3600) {
        snprintf(buf, size, "%llum%llus", s / 60, s % 60);

    } else {
        snprintf(buf, size, "%lluh%llum", s / 3600, (s % 3600) / 60);
    }

    return buf;
}


/* the latest detail, cut at a character boundary of UTF-8 */

static void
ocdz_alarm_detail(ocdz_alarm_t *a, const char *detail)
{
    size_t  len;

    if (detail == NULL) {
        return;
    }

    len = strlen(detail);

    if (len > OCDZ_ALARM_DETAIL_MAX) {
        len = OCDZ_ALARM_DETAIL_MAX;

        while (len > 0 && ((unsigned char) detail[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    memcpy(a->detail, detail, len);
    a->detail[len] = '\0';
}
