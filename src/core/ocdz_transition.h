/*
 * What one check of an order upstream means for the order: the
 * poller's policy (README.md, "The poller"), pure C, no nginx, no
 * libcurl. The poller hands it the check (how the call ended, the HTTP
 * status, the reply parsed by ocdz_upstream) and the order as claimed;
 * it answers the write-back: which statement, the columns, the delay to
 * the next check, and whether every check pauses, and why.
 *
 * Texts it returns are what the module writes to PostgreSQL (last_error,
 * pause_reason, refund_message, num_trans, date_traitement): valid UTF-8
 * (ocdz_text), never a reply body, a token or a card code.
 */

#ifndef _OCDZ_TRANSITION_H_INCLUDED_
#define _OCDZ_TRANSITION_H_INCLUDED_


#include <stdint.h>

#include "ocdz_upstream.h"
#include "ocdz_alarm.h"


#define OCDZ_TR_ERR_MAX      200     /* last_error, pause_reason */
#define OCDZ_TR_CODE_MAX     48      /* upstream error codes shown */


/* the poller's numbers, from its directives; times in milliseconds */
typedef struct {
    uint64_t          interval;           /* ocdz_poller_interval */
    uint64_t          queued_interval;
    uint64_t          max_backoff;
    uint64_t          pause;              /* ocdz_poller_pause */
    uint64_t          retry_after_max;
    uint64_t          backoff_after;      /* checks */
    uint64_t          not_found_retries;
} ocdz_tr_conf_t;


/* how the call ended */
typedef enum {
    OCDZ_CALL_ANSWERED = 0,   /* an HTTP answer, whatever its status */
    OCDZ_CALL_TIMEOUT,
    OCDZ_CALL_OVERSIZED,      /* the reply was over OCDZ_UPSTREAM_BODY_MAX */
    OCDZ_CALL_FAILED          /* connection, TLS, protocol: code, text */
} ocdz_call_e;


typedef struct {
    /* the order, as claimed */
    const char                   *topup_id;
    int64_t                       attempts;       /* this check included */
    int64_t                       not_found;      /* not_found_count */

    /* the token the check used: 0 the primary, 1 the secondary */
    unsigned                      token;
    unsigned                      has_secondary;

    /* the call */
    ocdz_call_e                   call;
    int                           call_code;      /* libcurl's */
    const char                   *call_text;      /* libcurl's message */
    long                          http;           /* 0: no answer */
    int64_t                       retry_after;    /* Retry-After in
                                                     seconds, -1: none */
    int64_t                       retry_at;       /* ... as a date (Unix
                                                     time), -1: none */
    int64_t                       now;            /* Unix time */

    /* the body, parsed */
    int                           parsed;         /* ocdz_upstream_parse() */
    const char                   *parse_err;
    const ocdz_upstream_reply_t  *reply;
} ocdz_check_t;


/* the write-backs, one statement each */
typedef enum {
    OCDZ_WRITE_PROGRESS = 0,  /* still on its way: status, next check */
    OCDZ_WRITE_FAULT,         /* the check failed, not the order:
                                 last_error, next check, status kept */
    OCDZ_WRITE_REFUNDED,      /* final: refund_message */
    OCDZ_WRITE_FULFILLED,     /* final: the card, num_trans, date */
    OCDZ_WRITE_NOT_FOUND,     /* not_found_count + 1, ERROR at the end */
    OCDZ_WRITE_RELEASE,       /* not the order's fault: the lease back,
                                 the attempt not counted; maybe a pause */
    OCDZ_WRITE_COUNT
} ocdz_write_e;


/* what becomes of the poller's access token */
typedef enum {
    OCDZ_TOKEN_KEEP = 0,
    OCDZ_TOKEN_SECONDARY,     /* the primary was refused: the secondary */
    OCDZ_TOKEN_PRIMARY        /* the one in use was refused: back to the
                                 primary for the next try */
} ocdz_token_e;


typedef struct {
    ocdz_write_e      write;
    ocdz_status_e     status;     /* PROGRESS: the new status */
    int               to_error;   /* NOT_FOUND: the last one allowed, the
                                     order goes to ERROR for a person */
    uint64_t          delay;      /* ms to the next check: PROGRESS,
                                     FAULT, NOT_FOUND */
    uint64_t          pause;      /* RELEASE: ms every check pauses, 0:
                                     none */
    ocdz_token_e      token;
    ocdz_alarm_kind_e alarm;      /* a failure every check meets (the
                                     API unreachable, access refused):
                                     logged once by the caller; NONE */

    char              error[OCDZ_TR_ERR_MAX + 1];     /* last_error, ""
                                                         for NULL */
    char              reason[OCDZ_TR_ERR_MAX + 1];    /* RELEASE: why */
    char              code[OCDZ_TR_CODE_MAX + 1];     /* the API's error
                                                         code, if it looks
                                                         like one */
    char              refund_message[OCDZ_UP_TEXT_MAX + 1];
    char              num_trans[OCDZ_UP_SHORT_MAX + 1];
    char              date[OCDZ_UP_SHORT_MAX + 1];
} ocdz_transition_t;


/* Maps one check to its write-back; out is filled whole. */
void ocdz_transition(const ocdz_tr_conf_t *conf, const ocdz_check_t *in,
    ocdz_transition_t *out);

/*
 * A FAULT decided by the caller (the check could not start, the card
 * could not be sealed): last_error from fmt, the next check with
 * backoff.
 */
void ocdz_transition_fault(const ocdz_tr_conf_t *conf,
    const ocdz_check_t *in, ocdz_transition_t *out, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/*
 * An order claimed ahead while every check pauses is not checked: its
 * lease goes back, the attempt not counted, last_error "checks paused".
 */
void ocdz_transition_paused(ocdz_transition_t *out);

/*
 * The delay before the next check: base until backoff_after checks,
 * then doubling with each check, capped at max_backoff (or base, if
 * that is longer).
 */
uint64_t ocdz_backoff(const ocdz_tr_conf_t *conf, int64_t attempts,
    uint64_t base);

/* "progress", "fault"..., for logs */
const char *ocdz_write_str(ocdz_write_e write);


#endif /* _OCDZ_TRANSITION_H_INCLUDED_ */
