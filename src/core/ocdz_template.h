/*
 * Message templates: text with placeholders, parsed once (configuration
 * time) and rendered many times (send time), each placeholder's value
 * escaped for the template's output format.
 *
 * Pure C, no nginx.
 *
 * Syntax. A placeholder is "{name}", name being one of those below. In
 * every kind but the JSON body, "{{" and "}}" stand for a literal "{"
 * and "}", and any other brace is an error ("unbalanced"). In a JSON
 * body, braces are JSON's own: "{" followed by a letter starts a
 * placeholder, any other brace is literal text.
 *
 * Kinds, their format and placeholders:
 *
 *   kind           format  placeholders                 required
 *   mail subject   text    card fields but {card_code}  -
 *                          and {instructions_steps}
 *   mail text      text    card fields                  {card_code}
 *   mail HTML      HTML    card fields                  {card_code}
 *   SMS text       text    card fields                  {card_code}
 *   SMS body form  form    gateway fields               {to} {message}
 *   SMS body JSON  JSON    gateway fields               {to} {message}
 *
 * Card fields:
 *   {type}                "ADSL" or "4G"
 *   {number}              the line or 4G number topped up
 *   {value}               face value in DA
 *   {card_code}           the recharge code (secret)
 *   {num_trans}           Algerie Telecom's transaction number
 *   {date}                the processing date (date_traitement)
 *   {topup_id}            the OneClickDz order id
 *   {shop}                the storefront's name (configuration)
 *   {notice}              "keep this code secret", in the language
 *   {instructions_title}  the usage instructions for the type, in the
 *   {instructions_steps}  language (ocdz_instructions): the steps come
 *   {support}             numbered, one per line ("1. ...") in text,
 *                         JSON and form, as "<li>...</li>" lines in
 *                         HTML (the template writes the <ol>)
 * Gateway fields:
 *   {to}                  the recipient's phone number
 *   {message}             the rendered SMS text
 *   {sender}              the sender id (configuration)
 *   {idempotency_key}     stable per order and channel
 *   {unicode}             "1" when the text needs UCS-2, else "0"
 *   {topup_id}
 *
 * Escaping of values: text as is; HTML & < > " ' as entities; JSON as
 * the inside of a string ("\"", "\\", "\n", "\u00XX"); form as
 * application/x-www-form-urlencoded (space "+", all but [A-Za-z0-9*-._]
 * as %XX). Values must be valid UTF-8 (else the render fails). Control
 * characters in a value are replaced by a space, but for the line
 * breaks and tabs of {message}; a {card_code} with a control character,
 * or an empty {card_code}, {to} or {message} where the template uses
 * it, fails the render.
 *
 * Template text. Valid UTF-8 without control characters but line
 * breaks and tabs; a leading byte order mark is dropped; CRLF is read
 * as LF (a lone CR is an error). The subject, SMS text and form body
 * are read without trailing line breaks (a file's last newline); the
 * subject and the form body must then be one line. A form body's
 * literal text must be printable ASCII without spaces. A JSON body must
 * render to valid JSON (checked with sample values, so a placeholder
 * outside a JSON string is caught at parse time).
 *
 * Errors name the line and column (in characters, from 1), never
 * quoting more than the offending placeholder's name.
 *
 * How the outbox sender uses it:
 *   configuration: for each kind and language, text = the file's
 *     contents or ocdz_tpl_builtin(); ocdz_tpl_parse() with the pool's
 *     allocator; an error fails "nginx -t" with err. For SMS also
 *     ocdz_sms_check() (ocdz_sms.h), and for the gateway body
 *     ocdz_tpl_parse(OCDZ_TPL_SMS_FORM or _JSON).
 *   send time: ocdz_tpl_vars_init() for the order's type and language,
 *     then the order's fields into vars.v[] (the decrypted card into
 *     v[OCDZ_VAR_CARD_CODE]), then ocdz_mail_build() or ocdz_sms_build()
 *     which render the templates. vars only points at the caller's
 *     strings; wipe the card where it lives once the send is over.
 */

#ifndef _OCDZ_TEMPLATE_H_INCLUDED_
#define _OCDZ_TEMPLATE_H_INCLUDED_


#include <stddef.h>

#include "ocdz_instructions.h"
#include "ocdz_buf.h"


#define OCDZ_TPL_TEXT_MAX      65536   /* bytes of a template */
#define OCDZ_TPL_VALUE_MAX     8192    /* bytes of one placeholder value */
#define OCDZ_TPL_NAME_MAX      32      /* of a placeholder name */


typedef enum {
    OCDZ_TPL_MAIL_SUBJECT = 0,
    OCDZ_TPL_MAIL_TEXT,
    OCDZ_TPL_MAIL_HTML,
    OCDZ_TPL_SMS_TEXT,
    OCDZ_TPL_SMS_FORM,
    OCDZ_TPL_SMS_JSON,
    OCDZ_TPL_KIND_N
} ocdz_tpl_kind_e;


typedef enum {
    OCDZ_VAR_TYPE = 0,
    OCDZ_VAR_NUMBER,
    OCDZ_VAR_VALUE,
    OCDZ_VAR_CARD_CODE,
    OCDZ_VAR_NUM_TRANS,
    OCDZ_VAR_DATE,
    OCDZ_VAR_TOPUP_ID,
    OCDZ_VAR_SHOP,
    OCDZ_VAR_NOTICE,
    OCDZ_VAR_INSTR_TITLE,
    OCDZ_VAR_INSTR_STEPS,      /* from steps/nsteps below, not v[] */
    OCDZ_VAR_SUPPORT,
    OCDZ_VAR_TO,
    OCDZ_VAR_MESSAGE,
    OCDZ_VAR_SENDER,
    OCDZ_VAR_IDEMPOTENCY_KEY,
    OCDZ_VAR_UNICODE,
    OCDZ_VAR_N
} ocdz_var_e;


/* What a render fills the placeholders with: all borrowed. */
typedef struct {
    ocdz_str_t            v[OCDZ_VAR_N];     /* len 0: renders empty */
    const char * const   *steps;             /* {instructions_steps} */
    size_t                nsteps;
    ocdz_lang_e           lang;              /* of the message */
} ocdz_tpl_vars_t;


typedef struct ocdz_tpl_s  ocdz_tpl_t;


/*
 * Parses text[0..len) as a template of this kind into *tpl, allocated
 * with alloc (one block; the text is copied). Returns OCDZ_MSG_OK, or
 * OCDZ_MSG_ERR_INPUT / _TOO_LONG with the reason in err, or
 * OCDZ_MSG_ERR_NOMEM.
 */
int ocdz_tpl_parse(const ocdz_alloc_t *alloc, ocdz_tpl_kind_e kind,
    const char *text, size_t len, ocdz_tpl_t **tpl, char *err,
    size_t errlen);

/* Releases a template with the allocator that parsed it (NULL is ok). */
void ocdz_tpl_free(const ocdz_alloc_t *alloc, ocdz_tpl_t *tpl);

ocdz_tpl_kind_e ocdz_tpl_kind(const ocdz_tpl_t *tpl);

/* 1 if the template has the placeholder var. */
int ocdz_tpl_uses(const ocdz_tpl_t *tpl, ocdz_var_e var);

/*
 * Appends the template rendered with vars to out. Returns OCDZ_MSG_OK,
 * OCDZ_MSG_ERR_INPUT (a value refused: err names the placeholder, never
 * the value), OCDZ_MSG_ERR_TOO_LONG or OCDZ_MSG_ERR_NOMEM. On failure
 * out may hold part of the rendering: the caller wipes it with
 * ocdz_buf_free() or ocdz_buf_reset().
 */
int ocdz_tpl_render(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars,
    ocdz_buf_t *out, char *err, size_t errlen);

/*
 * Zeroes vars, then sets lang, {type}, {notice} and the instructions
 * of type in lang from set (NULL: the built-in texts). type and lang
 * out of range fall back to ADSL and English.
 */
void ocdz_tpl_vars_init(ocdz_tpl_vars_t *vars,
    const ocdz_instructions_t *set, ocdz_card_type_e type,
    ocdz_lang_e lang);

/*
 * Appends the built-in template text of kind in lang to out (what a
 * sysadmin starts from to write a replacement). There are built-in
 * texts for the mail and SMS text kinds only: for the gateway bodies
 * this returns OCDZ_MSG_ERR_INPUT.
 */
int ocdz_tpl_builtin(ocdz_tpl_kind_e kind, ocdz_lang_e lang,
    ocdz_buf_t *out);

/* "mail subject", "SMS body (JSON)", ... for messages */
const char *ocdz_tpl_kind_name(ocdz_tpl_kind_e kind);

/* "card_code", ... (without braces) */
const char *ocdz_tpl_var_name(ocdz_var_e var);

/* The "keep this code secret" notice in lang. */
const char *ocdz_tpl_notice(ocdz_lang_e lang);

/* "ADSL", "4G" */
const char *ocdz_tpl_type_name(ocdz_card_type_e type);


#endif /* _OCDZ_TEMPLATE_H_INCLUDED_ */
