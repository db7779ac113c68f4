/*
 * One failure that stops checks or reveals, logged once: pure C, no
 * nginx. The caller keeps one ocdz_alarm_t per failure kind (per worker)
 * and asks it, on every occurrence, whether to log and what:
 *
 *   ocdz_alarm_raise()   OCDZ_ALARM_LOG_START the first time, then
 *                        OCDZ_ALARM_LOG_REPEAT at most once a minute
 *                        (the repeats counted since the last line), else
 *                        OCDZ_ALARM_LOG_NONE;
 *   ocdz_alarm_refused() counts what was refused because of it;
 *   ocdz_alarm_clear()   OCDZ_ALARM_LOG_END once, with how long it
 *                        lasted, how often it recurred and what was
 *                        refused meanwhile (ocdz_alarm_t's fields).
 *
 * Times are milliseconds of any monotonic clock.
 */

#ifndef _OCDZ_ALARM_H_INCLUDED_
#define _OCDZ_ALARM_H_INCLUDED_


#include <stdint.h>


#define OCDZ_ALARM_REPEAT_MS    60000   /* between two repeat lines */
#define OCDZ_ALARM_DETAIL_MAX   200     /* bytes of detail kept */


/* what fails; ocdz_alarm_kind_str() names them for logs */
typedef enum {
    OCDZ_ALARM_NONE = 0,
    OCDZ_ALARM_DB_DOWN,         /* the database cannot be reached */
    OCDZ_ALARM_DB_SCHEMA,       /* the schema is older than needed */
    OCDZ_ALARM_API_TLS,         /* TLS handshake or verification */
    OCDZ_ALARM_API_DNS,         /* the API (or proxy) host unresolved */
    OCDZ_ALARM_API_REFUSED,     /* connection refused or unreachable */
    OCDZ_ALARM_API_TIMEOUT,     /* no answer in time */
    OCDZ_ALARM_API_AUTH,        /* HTTP 401 (no token left) or 403 */
    OCDZ_ALARM_RESOLVER,        /* nginx's resolver failed a lookup */
    OCDZ_ALARM_COUNT
} ocdz_alarm_kind_e;


typedef enum {
    OCDZ_ALARM_LOG_NONE = 0,
    OCDZ_ALARM_LOG_START,
    OCDZ_ALARM_LOG_REPEAT,
    OCDZ_ALARM_LOG_END
} ocdz_alarm_log_e;


typedef struct {
    unsigned          active;
    uint64_t          since;          /* it started */
    uint64_t          logged;         /* the last start or repeat line */
    uint64_t          duration;       /* at the end: how long it lasted */
    uint64_t          count;          /* occurrences, the first included */
    uint64_t          repeats;        /* since the last line */
    uint64_t          reported;       /* at a repeat line: the repeats
                                         it reports */
    uint64_t          refused;        /* refused because of it */
    char              detail[OCDZ_ALARM_DETAIL_MAX + 1];  /* the latest */
} ocdz_alarm_t;


ocdz_alarm_log_e ocdz_alarm_raise(ocdz_alarm_t *a, uint64_t now,
    const char *detail);
void ocdz_alarm_refused(ocdz_alarm_t *a, uint64_t n);
ocdz_alarm_log_e ocdz_alarm_clear(ocdz_alarm_t *a, uint64_t now);

/* "database down", "TLS verification"...; "" for NONE */
const char *ocdz_alarm_kind_str(ocdz_alarm_kind_e kind);

/*
 * The kind of a libcurl failure (CURLcode as an int, no libcurl header
 * here), OCDZ_ALARM_NONE for failures of one call only.
 */
ocdz_alarm_kind_e ocdz_alarm_curl_kind(int code);

/* "9s", "2m5s", "1h2m" into buf (NUL-terminated, cut to size) */
char *ocdz_alarm_duration_str(char *buf, size_t size, uint64_t ms);


#endif /* _OCDZ_ALARM_H_INCLUDED_ */
