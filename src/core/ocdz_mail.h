/*
 * The card delivered by email: a complete RFC 5322 message with MIME
 * (RFC 2045-2047), ready for libcurl's SMTP upload.
 *
 * Pure C, no nginx.
 *
 * The message:
 *
 *     Date: Wed, 29 Oct 2025 01:05:30 +0000
 *     From: "Shop" <noreply@shop.example>    (display name optional)
 *     Reply-To: support@shop.example         (optional)
 *     To: customer@example.com
 *     Subject: =?UTF-8?B?...?=               (raw when short ASCII)
 *     Message-ID: <ocdz.<topup id>.<channel>@<domain>>
 *     MIME-Version: 1.0
 *     Content-Type: multipart/alternative;
 *      boundary="=_ocdz_<24 hex>"
 *     Content-Language: en | fr | ar
 *     Auto-Submitted: auto-generated
 *
 *     --=_ocdz_...   text/plain; charset=UTF-8
 *     --=_ocdz_...   text/html; charset=UTF-8
 *     --=_ocdz_...--
 *
 * Lines end in CRLF; none is longer than 78 characters but header lines
 * carrying a very long address or domain (998 at most in any case).
 * Each part is quoted-printable, or base64 where that is shorter
 * (Arabic); both keep lines within 76 characters and are decoded back
 * to the rendered text with CRLF line breaks. The boundary contains
 * "=_", which neither encoding can produce, so it never occurs in the
 * content. The subject and a non-ASCII display name are RFC 2047
 * encoded words ("B" encoding, at most 39 bytes of text each, folded,
 * never splitting a UTF-8 sequence).
 *
 * Header injection: addresses are checked (below) and carry no CR, LF
 * or space; the display name is checked at configuration time; the
 * subject is rendered from one-line templates, control characters in
 * its values becoming spaces; ids are tokens. No field can add a
 * header line.
 *
 * The Message-ID depends only on the order, the channel and the
 * configured domain: a message sent again after a crash carries the
 * same id, and receivers that drop duplicates drop it. A deliberate
 * resend wanting a new id passes another channel name ("email-2").
 *
 * Addresses (a reasonable subset of RFC 5321/5322, ASCII only): at most
 * 254 bytes, one "@", a local part of 1-64 bytes of RFC 5322 atext
 * with single dots between atoms (no quoted local parts), a domain of
 * dot-separated labels of 1-63 letters, digits and hyphens (no hyphen
 * first or last), 253 bytes at most, a single label allowed. No
 * address literal, no SMTPUTF8 address.
 *
 * How the outbox sender uses it:
 *   configuration: ocdz_mail_conf_check() on the From / Reply-To /
 *     display name / Message-ID domain directives; the templates parsed
 *     with ocdz_tpl_parse() (see ocdz_template.h); the envelope sender
 *     for CURLOPT_MAIL_FROM with ocdz_mail_envelope().
 *   send time: ocdz_mail_addr_valid() on the customer's address (a
 *     refusal is a permanent failure: record the delivery as skipped
 *     with the reason); ocdz_mail_envelope() for CURLOPT_MAIL_RCPT;
 *     ocdz_tpl_vars_init() and the order's fields with the decrypted
 *     card; ocdz_mail_build() into a buffer over the delivery's pool;
 *     wipe the decrypted card; hand out.data/out.len to libcurl's
 *     CURLOPT_READFUNCTION (with CURLOPT_UPLOAD, CURLOPT_INFILESIZE_LARGE);
 *     when the transfer is done, ocdz_buf_free(&out) wipes the message.
 */

#ifndef _OCDZ_MAIL_H_INCLUDED_
#define _OCDZ_MAIL_H_INCLUDED_


#include <stddef.h>
#include <time.h>

#include "ocdz_template.h"
#include "ocdz_buf.h"


#define OCDZ_MAIL_ADDR_MAX       254
#define OCDZ_MAIL_LOCAL_MAX      64
#define OCDZ_MAIL_DOMAIN_MAX     253
#define OCDZ_MAIL_NAME_MAX       128     /* display name, bytes */
#define OCDZ_MAIL_ID_MAX         64      /* top-up id, channel */

/* "<" address ">" NUL */
#define OCDZ_MAIL_ENVELOPE_SIZE  (OCDZ_MAIL_ADDR_MAX + 3)

/* "<ocdz." id "." channel "@" domain ">" NUL */
#define OCDZ_MAIL_MSGID_SIZE                                                 \
    (7 + OCDZ_MAIL_ID_MAX + 1 + OCDZ_MAIL_ID_MAX + 1 + OCDZ_MAIL_DOMAIN_MAX  \
     + 2)

#define OCDZ_MAIL_BOUNDARY_PREFIX  "=_ocdz_"


typedef struct ocdz_mail_conf_s {
    ocdz_str_t               from;        /* address, required */
    ocdz_str_t               from_name;   /* display name, UTF-8, may be
                                             empty */
    ocdz_str_t               reply_to;    /* address, may be empty */
    ocdz_str_t               domain;      /* of the Message-ID, required */
} ocdz_mail_conf_t;


typedef struct {
    const ocdz_tpl_t        *subject;     /* OCDZ_TPL_MAIL_SUBJECT */
    const ocdz_tpl_t        *text;        /* OCDZ_TPL_MAIL_TEXT */
    const ocdz_tpl_t        *html;        /* OCDZ_TPL_MAIL_HTML */
    const ocdz_tpl_vars_t   *vars;        /* with the card; lang of the
                                             message */
    ocdz_str_t               to;          /* the customer's address */
    ocdz_str_t               topup_id;    /* 1-64 of [A-Za-z0-9_-] */
    ocdz_str_t               channel;     /* 1-64 of [A-Za-z0-9_-] */
    time_t                   date;        /* the Date: header */
} ocdz_mail_t;


/*
 * Checks the configured From, Reply-To, display name (1-128 bytes of
 * UTF-8 without control characters, or empty) and Message-ID domain.
 * OCDZ_MSG_OK, or OCDZ_MSG_ERR_INPUT with the reason in err.
 */
int ocdz_mail_conf_check(const ocdz_mail_conf_t *conf, char *err,
    size_t errlen);

/* An address as described above: 1 if valid, else 0 and a reason in
 * err (which never quotes the address). */
int ocdz_mail_addr_valid(const unsigned char *addr, size_t len, char *err,
    size_t errlen);

/* A host name as described above (the domain part of an address). */
int ocdz_mail_domain_valid(const unsigned char *s, size_t len);

/*
 * "<addr>" for CURLOPT_MAIL_FROM / CURLOPT_MAIL_RCPT, NUL-terminated,
 * into out (size at least OCDZ_MAIL_ENVELOPE_SIZE). OCDZ_MSG_OK, or
 * OCDZ_MSG_ERR_INPUT for an invalid address.
 */
int ocdz_mail_envelope(const unsigned char *addr, size_t len, char *out,
    size_t size);

/* The Message-ID with its angle brackets, NUL-terminated (size at least
 * OCDZ_MAIL_MSGID_SIZE). OCDZ_MSG_OK or OCDZ_MSG_ERR_INPUT. */
int ocdz_mail_message_id(const ocdz_str_t *domain,
    const ocdz_str_t *topup_id, const ocdz_str_t *channel, char *out,
    size_t size);

/*
 * Builds the message into out (initialised by the caller with the
 * allocator scratch buffers also come from; it should be empty).
 * Returns OCDZ_MSG_OK, OCDZ_MSG_ERR_INPUT (recipient, ids, a value the
 * templates refuse: permanent), OCDZ_MSG_ERR_TOO_LONG (permanent) or
 * OCDZ_MSG_ERR_NOMEM, with a reason in err that never holds the card.
 * On failure out is wiped and released. Scratch buffers are wiped.
 */
int ocdz_mail_build(const ocdz_mail_conf_t *conf, const ocdz_mail_t *m,
    ocdz_buf_t *out, char *err, size_t errlen);


#endif /* _OCDZ_MAIL_H_INCLUDED_ */
