/*
 * One OneClickDz API reply (GET /v3/internet/check-id/{id}) parsed into
 * a fixed struct with yajl's event parser.
 *
 * Pure C, no nginx. Caps on size and depth; duplicate keys inside one
 * object and NUL (\u0000) inside strings are refused; every field is
 * optional at parse time, the caller decides what it needs. The card
 * code lives only in this struct, which the caller wipes with
 * ocdz_upstream_reply_wipe(); yajl is given allocation functions that
 * wipe what they free.
 */

#ifndef _OCDZ_UPSTREAM_H_INCLUDED_
#define _OCDZ_UPSTREAM_H_INCLUDED_


#include <stddef.h>

#include "ocdz_text.h"         /* ocdz_topup_id_valid() */


#define OCDZ_UPSTREAM_BODY_MAX     65536   /* bytes of a reply we parse */
#define OCDZ_UPSTREAM_DEPTH_MAX    16

#define OCDZ_UP_ID_MAX             64
#define OCDZ_UP_SHORT_MAX          64      /* status, type, codes, dates */
#define OCDZ_UP_CARD_MAX           128
#define OCDZ_UP_TEXT_MAX           1024    /* messages, refund_message */


typedef enum {
    OCDZ_UP_OK = 0,
    OCDZ_UP_ERR_SYNTAX,        /* not JSON, or truncated */
    OCDZ_UP_ERR_TOO_BIG,       /* over the body, depth or field caps */
    OCDZ_UP_ERR_DUPLICATE,     /* a key twice in one object */
    OCDZ_UP_ERR_NUL,           /* \u0000 inside a string */
    OCDZ_UP_ERR_SHAPE          /* top level is not an object, or a known
                                  field has the wrong JSON type */
} ocdz_up_rc_e;


typedef enum {
    OCDZ_ST_NONE = 0,          /* no status field */
    OCDZ_ST_OTHER,             /* a status we do not know */
    OCDZ_ST_PENDING,
    OCDZ_ST_HANDLING,
    OCDZ_ST_QUEUED,
    OCDZ_ST_UNKNOWN_ERROR,
    OCDZ_ST_FULFILLED,
    OCDZ_ST_REFUNDED
} ocdz_status_e;


typedef struct {
    /* envelope */
    int            success;         /* -1 absent, 0 false, 1 true */
    int            has_data;        /* "data" is an object */
    int            has_error;       /* "error" is an object (envelope) */
    char           error_code[OCDZ_UP_SHORT_MAX + 1];  /* error.code, or a
                                                          string "error" */
    char           error_message[OCDZ_UP_TEXT_MAX + 1];
    int            status_code;     /* bare framework body "statusCode",
                                       0 when absent */

    /* data: the order */
    char           id[OCDZ_UP_ID_MAX + 1];           /* data._id */
    char           ref[OCDZ_UP_ID_MAX + 1];
    char           status_str[OCDZ_UP_SHORT_MAX + 1];
    ocdz_status_e  status;
    char           type[OCDZ_UP_SHORT_MAX + 1];
    char           number[OCDZ_UP_SHORT_MAX + 1];
    long long      topup_amount;    /* -1 absent */
    char           card_code[OCDZ_UP_CARD_MAX + 1];  /* secret */
    size_t         card_code_len;
    int            has_card_code;   /* a non-empty card_code string */
    char           num_trans[OCDZ_UP_SHORT_MAX + 1];
    char           date_traitement[OCDZ_UP_SHORT_MAX + 1];
    char           created_at[OCDZ_UP_SHORT_MAX + 1];
    char           refund_message[OCDZ_UP_TEXT_MAX + 1];
} ocdz_upstream_reply_t;


/*
 * Parses body into reply (zeroed first). err gets a short reason on
 * failure; it never quotes the body.
 */
int ocdz_upstream_parse(const unsigned char *body, size_t len,
    ocdz_upstream_reply_t *reply, char *err, size_t errlen);

void ocdz_upstream_reply_wipe(ocdz_upstream_reply_t *reply);

ocdz_status_e ocdz_status_from_str(const char *s, size_t len);
const char *ocdz_status_str(ocdz_status_e st);


#endif /* _OCDZ_UPSTREAM_H_INCLUDED_ */
