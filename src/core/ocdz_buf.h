/*
 * Text building blocks of the delivery messages (ocdz_template,
 * ocdz_mail, ocdz_sms, ocdz_webhook): the caller's allocator, an output
 * buffer that wipes every byte it lets go of, strict UTF-8, and the
 * escaping of each output format.
 *
 * Pure C, no nginx. The module passes an allocator over an nginx pool
 * (free may then be NULL: the pool releases the memory, the buffer has
 * wiped it already; or ngx_pfree(), which gives large blocks back at
 * once); the tool, the tests and the fuzzers pass ocdz_alloc_std
 * (malloc and free).
 *
 * Wiping happens here and only here: a buffer that grows wipes its old
 * block before releasing it, ocdz_buf_free() wipes the whole block. A
 * buffer that ever held a card code therefore never leaves a copy
 * behind, whoever owns the memory.
 */

#ifndef _OCDZ_BUF_H_INCLUDED_
#define _OCDZ_BUF_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ocdz_text.h"     /* strict UTF-8: ocdz_utf8_next() */


#define OCDZ_BUF_MAX_DEFAULT   (1024 * 1024)   /* longest message built */


typedef enum {
    OCDZ_MSG_OK = 0,
    OCDZ_MSG_ERR_INPUT,        /* a field, address or template refused:
                                  permanent, sending again cannot help */
    OCDZ_MSG_ERR_TOO_LONG,     /* over a cap (SMS parts, a field, the
                                  message): permanent as well */
    OCDZ_MSG_ERR_NOMEM         /* the allocator failed: try again later */
} ocdz_msg_rc_e;


/* A string with its length, laid out as ngx_str_t is (len, data). */
typedef struct {
    size_t                 len;
    const unsigned char   *data;
} ocdz_str_t;


typedef struct {
    void                *(*alloc)(void *data, size_t size);
    void                 (*free)(void *data, void *p);   /* may be NULL */
    void                  *data;
} ocdz_alloc_t;


/* malloc() and free() */
extern const ocdz_alloc_t  ocdz_alloc_std;


/*
 * Append-only output. After any failure (allocation, cap) the buffer is
 * "failed": later appends do nothing, so a builder appends freely and
 * checks once at the end. data is NUL-terminated whenever it is not
 * NULL (the NUL is not counted in len).
 */
typedef struct {
    unsigned char         *data;
    size_t                 len;
    size_t                 size;        /* of the block, NUL included */
    size_t                 max;         /* cap on len */
    const ocdz_alloc_t    *alloc;
    ocdz_msg_rc_e          error;       /* OK, ERR_TOO_LONG or ERR_NOMEM */
} ocdz_buf_t;


/* Output formats of a template placeholder's value. */
typedef enum {
    OCDZ_ESC_TEXT = 0,         /* as is */
    OCDZ_ESC_HTML,             /* & < > " ' as entities */
    OCDZ_ESC_JSON,             /* inside a JSON string, without quotes */
    OCDZ_ESC_FORM              /* application/x-www-form-urlencoded */
} ocdz_esc_e;


/* max 0 means OCDZ_BUF_MAX_DEFAULT. Allocates nothing yet. */
void ocdz_buf_init(ocdz_buf_t *b, const ocdz_alloc_t *alloc, size_t max);

/* Each returns b->error (OCDZ_MSG_OK while the buffer is fine). */
int ocdz_buf_add(ocdz_buf_t *b, const void *p, size_t n);
int ocdz_buf_add_str(ocdz_buf_t *b, const char *s);
int ocdz_buf_add_char(ocdz_buf_t *b, int c);
int ocdz_buf_add_escaped(ocdz_buf_t *b, ocdz_esc_e esc,
    const unsigned char *s, size_t n);
int ocdz_buf_add_base64(ocdz_buf_t *b, const unsigned char *s, size_t n);
int ocdz_buf_add_hex(ocdz_buf_t *b, const unsigned char *s, size_t n);

/* Wipes the used bytes and forgets them; the block stays for reuse. */
void ocdz_buf_reset(ocdz_buf_t *b);

/* Wipes the whole block and releases it; the buffer is empty again. */
void ocdz_buf_free(ocdz_buf_t *b);

/* C0 controls, DEL and the C1 controls U+0080-U+009F. */
int ocdz_is_control(uint32_t cp);

/* 1 if s is 1-max bytes of [A-Za-z0-9_-] (ids, channel names). */
int ocdz_token_valid(const unsigned char *s, size_t n, size_t max);


#endif /* _OCDZ_BUF_H_INCLUDED_ */
