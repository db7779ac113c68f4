/*
 * Text the module hands to PostgreSQL and to JSON, and the identifiers
 * it accepts. Pure C, no nginx: the card endpoint, the poller and the
 * card tool use the same rules.
 *
 * "Text" is well-formed UTF-8 as RFC 3629 defines it (no overlong
 * forms, no surrogates, nothing above U+10FFFF): what PostgreSQL takes
 * in a UTF8 database and what yajl's generator validates. One byte
 * outside it makes PostgreSQL refuse the whole statement.
 */

#ifndef _OCDZ_TEXT_H_INCLUDED_
#define _OCDZ_TEXT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define OCDZ_TOPUP_ID_LEN    24        /* hex digits */

/* ocdz_text_valid(): also accept tab and line feed */
#define OCDZ_TEXT_LINES      0x01


/*
 * The length of the well-formed UTF-8 sequence at p, of at most n bytes
 * (n > 0), or 0 when p does not start one.
 */
size_t ocdz_utf8_len(const unsigned char *p, size_t n);

/*
 * The character at p, end excluded: its length (1-4) and its code point
 * in *cp; 0 where ocdz_utf8_len() gives 0.
 */
size_t ocdz_utf8_next(const unsigned char *p, const unsigned char *end,
    uint32_t *cp);

/* 1 if s[0..n) is well-formed UTF-8; else 0 and *bad (may be NULL) gets
 * the offset of the first byte that is not. Control characters pass. */
int ocdz_utf8_valid(const unsigned char *s, size_t n, size_t *bad);

/*
 * 1 when s[0..len) is well-formed UTF-8 without control characters
 * (C0, DEL; tab and line feed too, unless OCDZ_TEXT_LINES), else 0.
 * NUL is a control character.
 */
int ocdz_text_valid(const unsigned char *s, size_t len, unsigned flags);

/*
 * Makes s[0..len) text in place: each byte that does not belong to a
 * well-formed sequence, and each control character, becomes '?'.
 */
void ocdz_text_sanitize(unsigned char *s, size_t len);

/*
 * The longest prefix of s[0..len) that does not cut a UTF-8 sequence,
 * for a cap of max bytes (s itself is not checked).
 */
size_t ocdz_text_prefix(const unsigned char *s, size_t len, size_t max);

/* 1 when s is exactly 24 hex digits, in either case, else 0. */
int ocdz_topup_id_valid(const char *s, size_t len);

/* 1 when s is a top-up id as the schema stores it: 24 lower-case hex. */
int ocdz_topup_id_stored(const char *s, size_t len);


#endif /* _OCDZ_TEXT_H_INCLUDED_ */
