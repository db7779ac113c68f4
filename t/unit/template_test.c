/*
 * Unit tests of ocdz_template: the built-in texts, parse errors and
 * their positions, escaping per format with hostile values, the
 * placeholders' rules.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_template.h"


#define S(x)  ((ocdz_str_t) { sizeof(x) - 1, (const unsigned char *) (x) })


static char        err[1024];
static ocdz_buf_t  out;


/* Parses text as kind; returns the template or NULL (err set). */

static ocdz_tpl_t *
parse(ocdz_tpl_kind_e kind, const char *text, size_t len)
{
    ocdz_tpl_t  *tpl;

    err[0] = '\0';

    if (ocdz_tpl_parse(&ocdz_alloc_std, kind, text, len, &tpl, err,
                       sizeof(err))
        != OCDZ_MSG_OK)
    {
        return NULL;
    }

    return tpl;
}


static ocdz_tpl_t *
parse_str(ocdz_tpl_kind_e kind, const char *text)
{
    return parse(kind, text, strlen(text));
}


/* 1 if parsing text fails with an error containing what */

static int
refused(ocdz_tpl_kind_e kind, const char *text, const char *what)
{
    ocdz_tpl_t  *tpl;

    tpl = parse_str(kind, text);

    if (tpl != NULL) {
        ocdz_tpl_free(&ocdz_alloc_std, tpl);
        printf("#   parsed: %s\n", text);
        return 0;
    }

    if (strstr(err, what) == NULL) {
        printf("#   error: %s\n#   wanted: %s\n", err, what);
        return 0;
    }

    return 1;
}


/* Renders tpl with vars into out (reset first); NULL on failure. */

static const char *
render(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars)
{
    ocdz_buf_reset(&out);
    err[0] = '\0';

    if (ocdz_tpl_render(tpl, vars, &out, err, sizeof(err)) != OCDZ_MSG_OK)
    {
        return NULL;
    }

    return out.data ? (const char *) out.data : "";
}


static const char *
render_once(ocdz_tpl_kind_e kind, const char *text,
    const ocdz_tpl_vars_t *vars)
{
    const char  *s;
    ocdz_tpl_t  *tpl;

    tpl = parse_str(kind, text);
    if (tpl == NULL) {
        printf("#   parse: %s\n", err);
        return NULL;
    }

    s = render(tpl, vars);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    return s;
}


static void
card_vars(ocdz_tpl_vars_t *vars, ocdz_card_type_e type, ocdz_lang_e lang)
{
    ocdz_tpl_vars_init(vars, NULL, type, lang);

    vars->v[OCDZ_VAR_CARD_CODE] = S("123456789012");
    vars->v[OCDZ_VAR_NUMBER] = S("036362608");
    vars->v[OCDZ_VAR_VALUE] = S("1000");
    vars->v[OCDZ_VAR_NUM_TRANS] = S("AT-2025-12345");
    vars->v[OCDZ_VAR_DATE] = S("2025-10-29T01:05:30.000Z");
    vars->v[OCDZ_VAR_TOPUP_ID] = S("690161a3e9e88196b4eb6545");
    vars->v[OCDZ_VAR_SHOP] = S("Shop");
}


static void
test_builtin(void)
{
    int               k, l, all;
    char              name[128];
    ocdz_buf_t        text;
    ocdz_tpl_t       *tpl;
    const char       *s;
    ocdz_tpl_vars_t   vars;

    ocdz_buf_init(&text, &ocdz_alloc_std, 0);

    for (l = 0; l < OCDZ_LANG_N; l++) {
        all = 1;

        for (k = OCDZ_TPL_MAIL_SUBJECT; k <= OCDZ_TPL_SMS_TEXT; k++) {
            ocdz_buf_reset(&text);

            if (ocdz_tpl_builtin(k, l, &text) != OCDZ_MSG_OK) {
                all = 0;
                continue;
            }

            tpl = parse(k, (const char *) text.data, text.len);
            if (tpl == NULL) {
                printf("#   %s %s: %s\n", ocdz_lang_str(l),
                       ocdz_tpl_kind_name(k), err);
                all = 0;
                continue;
            }

            card_vars(&vars, OCDZ_TYPE_ADSL, l);
            s = render(tpl, &vars);

            if (s == NULL
                || (k != OCDZ_TPL_MAIL_SUBJECT
                    && strstr(s, "123456789012") == NULL)
                || strstr(s, "ADSL") == NULL)
            {
                printf("#   %s %s renders: %s\n", ocdz_lang_str(l),
                       ocdz_tpl_kind_name(k), s ? s : err);
                all = 0;
            }

            if (k == OCDZ_TPL_MAIL_TEXT || k == OCDZ_TPL_MAIL_HTML) {
                if (s == NULL || strstr(s, ocdz_tpl_notice(l)) == NULL
                    || strstr(s, "3003") == NULL || strstr(s, "*600#") == NULL
                    || strstr(s, "AT-2025-12345") == NULL
                    || strstr(s, "036362608") == NULL)
                {
                    printf("#   %s %s lacks the notice, instructions or "
                           "fields\n", ocdz_lang_str(l),
                           ocdz_tpl_kind_name(k));
                    all = 0;
                }
            }

            if (k == OCDZ_TPL_MAIL_SUBJECT && s != NULL
                && strstr(s, "123456789012") != NULL)
            {
                all = 0;
            }

            ocdz_tpl_free(&ocdz_alloc_std, tpl);
        }

        snprintf(name, sizeof(name), "built-in %s templates parse and "
                 "render with the card, notice and instructions",
                 ocdz_lang_str(l));
        ok(all, name);
    }

    ocdz_buf_reset(&text);
    ocdz_tpl_builtin(OCDZ_TPL_MAIL_HTML, OCDZ_LANG_AR, &text);
    ok(strstr((char *) text.data, "<html lang=\"ar\" dir=\"rtl\">") != NULL,
       "the Arabic HTML is laid out right to left");
    ok(strstr((char *) text.data, "dir=\"ltr\">{card_code}") == NULL
       && strstr((char *) text.data, "{card_code}") != NULL
       && strstr((char *) text.data, "<td dir=\"ltr\" style") != NULL,
       "the card code cell is left to right in it");

    ocdz_buf_reset(&text);
    ocdz_tpl_builtin(OCDZ_TPL_MAIL_HTML, OCDZ_LANG_FR, &text);
    ok(strstr((char *) text.data, "<html lang=\"fr\" dir=\"ltr\">") != NULL,
       "the French HTML is left to right, lang fr");

    ocdz_buf_reset(&text);
    ocdz_tpl_builtin(OCDZ_TPL_SMS_TEXT, OCDZ_LANG_EN, &text);
    is_str((char *) text.data,
           "Your {type} card: {card_code} Trans: {num_trans}. Dial *600#",
           "the English SMS template");

    ocdz_buf_reset(&text);
    is_int(ocdz_tpl_builtin(OCDZ_TPL_SMS_JSON, OCDZ_LANG_EN, &text),
           OCDZ_MSG_ERR_INPUT, "no built-in gateway body");

    card_vars(&vars, OCDZ_TYPE_4G, OCDZ_LANG_AR);
    s = render_once(OCDZ_TPL_SMS_TEXT, "{type} {card_code}", &vars);
    is_str(s, "4G 123456789012", "{type} of a 4G card");

    ocdz_buf_free(&text);
}


static void
test_parse_errors(void)
{
    ocdz_tpl_t  *tpl;
    char        *big;

    ok(refused(OCDZ_TPL_MAIL_TEXT, "Hello {cardcode}",
               "mail text template, line 1, column 7: unknown placeholder "
               "{cardcode}"), "unknown placeholder, with its position");
    ok(strstr(err, "{card_code}") != NULL && strstr(err, "{support}"),
       "... and the known ones listed");

    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code}\nab {type",
               "line 2, column 4: placeholder {type is not closed"),
       "unclosed placeholder on line 2");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code} x } y",
               "line 1, column 15: unbalanced \"}\""), "unbalanced }");
    ok(refused(OCDZ_TPL_MAIL_HTML, "<p>{card_code}</p><style>p { x }",
               "line 1, column 28: unbalanced \"{\" (write \"{{\""),
       "unbalanced { (CSS braces must be doubled)");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "\xc3\xa9\xc3\xa9 {bad} {card_code}",
               "line 1, column 4: unknown placeholder {bad}"),
       "columns count characters, not bytes");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code} ab\xff",
               "line 1, column 15: invalid UTF-8 (byte 0xff)"),
       "invalid UTF-8");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code} \xed\xa0\x80",
               "invalid UTF-8"), "a surrogate is invalid UTF-8");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code}\x07",
               "column 12: control character 0x07"), "control character");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code}\xc2\x85",
               "control character U+0085"), "C1 control character");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "{card_code}\rx",
               "carriage return without line feed"), "lone CR");
    ok(refused(OCDZ_TPL_MAIL_SUBJECT, "Your code {card_code}",
               "no placeholder {card_code} (a mail subject knows"),
       "no card code in a subject");
    ok(refused(OCDZ_TPL_MAIL_SUBJECT, "{instructions_steps}",
               "no placeholder {instructions_steps}"),
       "no multi-line steps in a subject");
    ok(refused(OCDZ_TPL_MAIL_SUBJECT, "Your card\nBcc: x@y",
               "line 1, column 10: a mail subject is one line"),
       "a subject is one line");
    ok(refused(OCDZ_TPL_MAIL_SUBJECT, "a\tb", "control character 0x09"),
       "no tab in a subject");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "Hello {type}",
               "the mail text template has no {card_code}"),
       "a mail text needs {card_code}");
    ok(refused(OCDZ_TPL_MAIL_HTML, "<p>{number}</p>",
               "the mail HTML template has no {card_code}"),
       "a mail HTML needs {card_code}");
    ok(refused(OCDZ_TPL_SMS_TEXT, "Card {number}",
               "the SMS text template has no {card_code}"),
       "an SMS needs {card_code}");
    ok(refused(OCDZ_TPL_SMS_TEXT, "{card_code} {to}",
               "no placeholder {to}"), "gateway fields not in an SMS text");
    ok(refused(OCDZ_TPL_SMS_FORM, "to={to}", "has no {message}"),
       "a gateway body needs {message}");
    ok(refused(OCDZ_TPL_SMS_FORM, "to={to}&m={message}&c={card_code}",
               "no placeholder {card_code}"),
       "the card only reaches a gateway body inside {message}");
    ok(refused(OCDZ_TPL_SMS_FORM, "to={to}&m={message}&x=a b",
               "a form body's text has no spaces"), "space in a form body");
    ok(refused(OCDZ_TPL_SMS_FORM, "to={to}&m={message}&x=\xc3\xa9",
               "must be ASCII"), "non-ASCII in a form body");
    ok(refused(OCDZ_TPL_SMS_JSON, "{\"to\":{to},\"text\":\"{message}\"}",
               "does not render to valid JSON (is each placeholder inside "
               "a JSON string?)"), "JSON body with a bare placeholder");
    ok(refused(OCDZ_TPL_SMS_JSON, "to={to} {message}", "valid JSON"),
       "a JSON body that is not JSON");
    ok(refused(OCDZ_TPL_SMS_JSON, "{\"to\":\"{to}\",\"m\":\"{message}\"}"
               "{}", "valid JSON"), "trailing garbage after the JSON");
    ok(refused(OCDZ_TPL_MAIL_TEXT, "", "template is empty"), "empty");
    ok(refused(OCDZ_TPL_SMS_TEXT, "\n\n", "template is empty"),
       "only line breaks");
    ok(refused(OCDZ_TPL_MAIL_TEXT,
               "{card_code} {aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}",
               "placeholder name longer than 32"), "overlong name");

    big = malloc(OCDZ_TPL_TEXT_MAX + 2);
    memset(big, 'a', OCDZ_TPL_TEXT_MAX + 1);
    memcpy(big, "{card_code}", 11);
    big[OCDZ_TPL_TEXT_MAX + 1] = '\0';
    ok(refused(OCDZ_TPL_MAIL_TEXT, big, "longer than 65536 bytes"),
       "a template over 64 KiB");
    big[OCDZ_TPL_TEXT_MAX] = '\0';
    tpl = parse_str(OCDZ_TPL_MAIL_TEXT, big);
    ok(tpl != NULL, "a template of exactly 64 KiB");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
    free(big);

    tpl = parse_str(OCDZ_TPL_SMS_JSON, "{\"to\":\"{to}\",\"text\":"
                    "\"{message}\",\"unicode\":{unicode},\"n\":{\"a\":[1]}}");
    ok(tpl != NULL, "JSON body: literal braces, {unicode} as a number");
    if (tpl == NULL) {
        printf("#   %s\n", err);
    }
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
}


static void
test_render(void)
{
    int               i;
    char             *long_value;
    ocdz_tpl_t       *tpl;
    const char       *s;
    const char       *steps[2];
    ocdz_tpl_vars_t   vars;

    card_vars(&vars, OCDZ_TYPE_ADSL, OCDZ_LANG_EN);

    s = render_once(OCDZ_TPL_MAIL_TEXT, "{{type}} is {type}: {card_code}}}",
                    &vars);
    is_str(s, "{type} is ADSL: 123456789012}", "{{ and }} are literal");

    s = render_once(OCDZ_TPL_MAIL_TEXT, "\xef\xbb\xbf" "a\r\nb {card_code}"
                    "\r\n", &vars);
    is_str(s, "a\nb 123456789012\n", "BOM dropped, CRLF read as LF");

    s = render_once(OCDZ_TPL_MAIL_SUBJECT, "Card {type}\r\n\n", &vars);
    is_str(s, "Card ADSL", "a subject file's final newline is dropped");

    /* hostile values */

    vars.v[OCDZ_VAR_NUMBER] = S("<script>alert(\"x\")</script>");
    vars.v[OCDZ_VAR_NUM_TRANS] = S("a&b'c\"d");
    vars.v[OCDZ_VAR_SHOP] = S("<img src=x onerror=alert(1)>");

    s = render_once(OCDZ_TPL_MAIL_HTML, "<p title=\"{shop}\">{number} "
                    "{num_trans} {card_code}</p>", &vars);
    is_str(s, "<p title=\"&lt;img src=x onerror=alert(1)&gt;\">"
           "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; "
           "a&amp;b&#39;c&quot;d 123456789012</p>",
           "HTML: fields escaped, in text and in attributes");
    ok(s != NULL && strchr(s + 3, '<') == strstr(s, "</p>"),
       "no raw < from a field in HTML");

    s = render_once(OCDZ_TPL_MAIL_TEXT, "{number} {num_trans} {card_code}",
                    &vars);
    is_str(s, "<script>alert(\"x\")</script> a&b'c\"d 123456789012",
           "text: fields as they are");

    vars.v[OCDZ_VAR_NUMBER] = S("12\r\nBcc: evil@example.com\x01\x7f");
    s = render_once(OCDZ_TPL_MAIL_SUBJECT, "Line {number}", &vars);
    is_str(s, "Line 12  Bcc: evil@example.com  ",
           "control characters in a value become spaces (no new line)");

    vars.v[OCDZ_VAR_NUMBER] = S("12\xc2\x85" "34");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "{number} {card_code}", &vars);
    is_str(s, "12 34 123456789012", "... C1 controls too");

    vars.v[OCDZ_VAR_NUMBER] = S("036362608");

    /* card code rules */

    vars.v[OCDZ_VAR_CARD_CODE] = S("SECRET987\n1");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "{card_code}", &vars);
    ok(s == NULL && strstr(err, "{card_code} holds a control character"),
       "a card code with a control character is refused");
    ok(strstr(err, "SECRET987") == NULL, "... and not quoted");
    ok(out.len == 0, "... before anything is written");

    vars.v[OCDZ_VAR_CARD_CODE] = S("");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "{card_code}", &vars);
    ok(s == NULL && strstr(err, "{card_code} is empty"),
       "an empty card code is refused");

    vars.v[OCDZ_VAR_CARD_CODE] = S("SECRET\xff");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "{card_code}", &vars);
    ok(s == NULL && strstr(err, "{card_code} is not valid UTF-8")
       && strstr(err, "SECRET") == NULL,
       "a card code that is not UTF-8 is refused, unquoted");

    vars.v[OCDZ_VAR_CARD_CODE] = S("1234 5678-90");
    vars.v[OCDZ_VAR_DATE] = S("\xc3");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "{card_code} {date}", &vars);
    ok(s == NULL && strstr(err, "{date} is not valid UTF-8 (at byte 0)"),
       "any field that is not UTF-8 is refused");

    s = render_once(OCDZ_TPL_MAIL_TEXT, "{card_code}", &vars);
    is_str(s, "1234 5678-90", "an unused bad field does not matter");

    vars.v[OCDZ_VAR_DATE] = S("");
    s = render_once(OCDZ_TPL_MAIL_TEXT, "[{date}] {card_code}", &vars);
    is_str(s, "[] 1234 5678-90", "an empty field renders empty");

    long_value = malloc(OCDZ_TPL_VALUE_MAX + 1);
    memset(long_value, '9', OCDZ_TPL_VALUE_MAX + 1);
    vars.v[OCDZ_VAR_NUM_TRANS].data = (unsigned char *) long_value;
    vars.v[OCDZ_VAR_NUM_TRANS].len = OCDZ_TPL_VALUE_MAX + 1;
    tpl = parse_str(OCDZ_TPL_MAIL_TEXT, "{num_trans} {card_code}");
    ocdz_buf_reset(&out);
    is_int(ocdz_tpl_render(tpl, &vars, &out, err, sizeof(err)),
           OCDZ_MSG_ERR_TOO_LONG, "a value over 8 KiB is refused");
    vars.v[OCDZ_VAR_NUM_TRANS].len = OCDZ_TPL_VALUE_MAX;
    ok(render(tpl, &vars) != NULL && out.len == OCDZ_TPL_VALUE_MAX + 13,
       "a value of exactly 8 KiB renders");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
    free(long_value);

    /* steps */

    card_vars(&vars, OCDZ_TYPE_ADSL, OCDZ_LANG_EN);
    steps[0] = "Dial <*600#> & wait";
    steps[1] = "Enter\tthe code";
    vars.steps = steps;
    vars.nsteps = 2;

    s = render_once(OCDZ_TPL_MAIL_TEXT, "{instructions_steps}|{card_code}",
                    &vars);
    is_str(s, "1. Dial <*600#> & wait\n2. Enter the code|123456789012",
           "steps in text: numbered lines");
    s = render_once(OCDZ_TPL_MAIL_HTML, "<ol>{instructions_steps}</ol>"
                    "{card_code}", &vars);
    is_str(s, "<ol><li>Dial &lt;*600#&gt; &amp; wait</li>\n"
           "<li>Enter the code</li></ol>123456789012",
           "steps in HTML: escaped <li> lines");

    /* parse once, render many: the same output each time */

    tpl = parse_str(OCDZ_TPL_MAIL_HTML, "<b>{card_code}</b> {number}");
    s = render(tpl, &vars);
    ok(s != NULL && strcmp(s, "<b>123456789012</b> 036362608") == 0,
       "first render");

    for (i = 0; i < 100; i++) {
        vars.v[OCDZ_VAR_CARD_CODE] = (i & 1) ? S("1") : S("22");
        s = render(tpl, &vars);
    }

    is_str(s, "<b>1</b> 036362608", "100 renders of one parsed template");
    ok(ocdz_tpl_uses(tpl, OCDZ_VAR_NUMBER)
       && !ocdz_tpl_uses(tpl, OCDZ_VAR_DATE), "ocdz_tpl_uses");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
}


static void
test_gateway(void)
{
    const char       *s;
    ocdz_tpl_vars_t   vars;

    memset(&vars, 0, sizeof(vars));
    vars.v[OCDZ_VAR_TO] = S("+213550123456");
    vars.v[OCDZ_VAR_MESSAGE] = S("Your card: 12 & \"34\"\n\\ \xd8\xa8 100%");
    vars.v[OCDZ_VAR_SENDER] = S("Shop");
    vars.v[OCDZ_VAR_UNICODE] = S("1");

    s = render_once(OCDZ_TPL_SMS_FORM,
                    "to={to}&text={message}&from={sender}&u={unicode}\n",
                    &vars);
    is_str(s, "to=%2B213550123456&text=Your+card%3A+12+%26+%2234%22%0A%5C+"
           "%D8%A8+100%25&from=Shop&u=1", "form body escaping");

    s = render_once(OCDZ_TPL_SMS_JSON,
                    "{\"to\": \"{to}\", \"text\": \"{message}\", "
                    "\"unicode\": {unicode}}", &vars);
    is_str(s, "{\"to\": \"+213550123456\", \"text\": \"Your card: 12 & "
           "\\\"34\\\"\\n\\\\ \xd8\xa8 100%\", \"unicode\": 1}",
           "JSON body escaping");

    vars.v[OCDZ_VAR_TO] = S("");
    s = render_once(OCDZ_TPL_SMS_FORM, "to={to}&text={message}", &vars);
    ok(s == NULL && strstr(err, "{to} is empty"), "an empty {to} refused");
}


int
main(void)
{
    ocdz_buf_init(&out, &ocdz_alloc_std, 0);

    test_builtin();
    test_parse_errors();
    test_render();
    test_gateway();

    ocdz_buf_free(&out);

    return done_testing();
}
