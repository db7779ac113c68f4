/*
 * Unit tests of ocdz_sms: part counting at the exact boundaries (GSM
 * 7-bit, its extension table, UCS-2, characters outside the BMP), the
 * text with a limit on parts, the configuration-time worst case, the
 * gateway bodies, the gateway's message id.
 */

#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "tap.h"
#include "ocdz_sms.h"


#define S(x)  ((ocdz_str_t) { sizeof(x) - 1, (const unsigned char *) (x) })

#define ARABIC_BA   "\xd8\xa8"            /* U+0628, 2 bytes, 1 unit */
#define EMOJI       "\xf0\x9f\x98\x80"    /* U+1F600, 4 bytes, 2 units */
#define EURO        "\xe2\x82\xac"        /* U+20AC, GSM extension */


static char  err[1024];
static char  text[8192];


/* text = n copies of unit, then tail */

static const char *
rep(const char *unit, size_t n, const char *tail)
{
    size_t  i, k;

    k = strlen(unit);
    text[0] = '\0';

    for (i = 0; i < n; i++) {
        memcpy(text + i * k, unit, k);
    }

    strcpy(text + n * k, tail);

    return text;
}


static ocdz_sms_count_t
count(const char *s)
{
    ocdz_sms_count_t  c;

    if (ocdz_sms_count((const unsigned char *) s, strlen(s), &c)
        != OCDZ_MSG_OK)
    {
        c.parts = 0;
    }

    return c;
}


#define is_count(s, enc, nunits, nparts, name)                               \
    do {                                                                     \
        ocdz_sms_count_t  c_ = count(s);                                     \
        if (!ok(c_.encoding == (enc) && c_.units == (nunits)                 \
                && c_.parts == (nparts), name))                              \
        {                                                                    \
            printf("#   got %s %zu units %zu parts\n",                       \
                   c_.encoding == OCDZ_SMS_GSM7 ? "GSM-7" : "UCS-2",         \
                   c_.units, c_.parts);                                      \
        }                                                                    \
    } while (0)


static ocdz_tpl_t *
parse(ocdz_tpl_kind_e kind, const char *s)
{
    ocdz_tpl_t  *tpl;

    if (ocdz_tpl_parse(&ocdz_alloc_std, kind, s, strlen(s), &tpl, err,
                       sizeof(err))
        != OCDZ_MSG_OK)
    {
        printf("#   %s\n", err);
        return NULL;
    }

    return tpl;
}


static ocdz_tpl_t *
builtin(ocdz_lang_e lang)
{
    ocdz_tpl_t  *tpl;
    ocdz_buf_t   b;

    ocdz_buf_init(&b, &ocdz_alloc_std, 0);
    ocdz_tpl_builtin(OCDZ_TPL_SMS_TEXT, lang, &b);
    tpl = parse(OCDZ_TPL_SMS_TEXT, (const char *) b.data);
    ocdz_buf_free(&b);

    return tpl;
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
}


static void
test_count(void)
{
    int   all;
    char  one[8];

    is_count("", OCDZ_SMS_GSM7, 0, 1, "empty: one part");
    is_count(rep("a", 160, ""), OCDZ_SMS_GSM7, 160, 1, "160 GSM: 1 part");
    is_count(rep("a", 161, ""), OCDZ_SMS_GSM7, 161, 2, "161 GSM: 2 parts");
    is_count(rep("a", 306, ""), OCDZ_SMS_GSM7, 306, 2, "306 GSM: 2 parts");
    is_count(rep("a", 307, ""), OCDZ_SMS_GSM7, 307, 3, "307 GSM: 3 parts");
    is_count(rep("a", 459, ""), OCDZ_SMS_GSM7, 459, 3, "459 GSM: 3 parts");
    is_count(rep("a", 460, ""), OCDZ_SMS_GSM7, 460, 4, "460 GSM: 4 parts");

    is_count(rep("a", 159, "{"), OCDZ_SMS_GSM7, 161, 2,
             "159 + { (2 septets) = 161: 2 parts");
    is_count(rep("a", 158, "{"), OCDZ_SMS_GSM7, 160, 1,
             "158 + { = 160: 1 part");
    is_count(rep(EURO, 80, ""), OCDZ_SMS_GSM7, 160, 1,
             "80 euro signs = 160 septets: 1 part");
    is_count(rep(EURO, 81, ""), OCDZ_SMS_GSM7, 162, 2,
             "81 euro signs = 162 septets: 2 parts");
    {
        char  buf[1024];

        strcpy(buf, rep("a", 152, "["));
        strcat(buf, rep("a", 152, ""));
        is_count(buf, OCDZ_SMS_GSM7, 306, 3,
                 "an escape pair is never split: 306 septets, 3 parts");

        strcpy(buf, rep("a", 151, "["));
        strcat(buf, rep("a", 153, ""));
        is_count(buf, OCDZ_SMS_GSM7, 306, 2,
                 "... while one septet earlier it fits: 2 parts");
    }

    is_count("^{}\\[~]|" EURO "\f", OCDZ_SMS_GSM7, 20, 1,
             "every extension character and form feed: 2 septets");

    all = 1;
    for (one[1] = '\0', one[0] = ' '; one[0] < 0x7f; one[0]++) {
        ocdz_sms_count_t  c = count(one);

        if ((one[0] == '`') != (c.encoding == OCDZ_SMS_UCS2)) {
            printf("#   %c\n", one[0]);
            all = 0;
        }
    }
    ok(all, "printable ASCII is GSM 7-bit but for the backquote");

    is_count("@\xc2\xa3$\xc2\xa5\xc3\xa8\xc3\xa9\xc3\xb9\xc3\xac\xc3\xb2"
             "\xc3\x87\n\xc3\x98\xc3\xb8\r\xc3\x85\xc3\xa5\xce\x94_\xce\xa6"
             "\xce\x93\xce\x9b\xce\xa9\xce\xa0\xce\xa8\xce\xa3\xce\x98\xce\x9e"
             "\xc3\x86\xc3\xa6\xc3\x9f\xc3\x89\xc2\xa4\xc2\xa1\xc3\x84\xc3\x96"
             "\xc3\x91\xc3\x9c\xc2\xa7\xc2\xbf\xc3\xa4\xc3\xb6\xc3\xb1\xc3\xbc"
             "\xc3\xa0", OCDZ_SMS_GSM7, 44, 1,
             "the default alphabet beyond ASCII: 1 septet each");
    is_count("Re\xc3\xa7u", OCDZ_SMS_UCS2, 4, 1,
             "c cedilla (lower case) is not GSM: UCS-2");
    is_count("\xce\xb1", OCDZ_SMS_UCS2, 1, 1, "Greek small alpha: UCS-2");
    is_count("a`", OCDZ_SMS_UCS2, 2, 1, "a backquote: UCS-2");
    is_count("a\t", OCDZ_SMS_UCS2, 2, 1, "a tab: UCS-2");

    is_count(rep(ARABIC_BA, 70, ""), OCDZ_SMS_UCS2, 70, 1,
             "70 UCS-2: 1 part");
    is_count(rep(ARABIC_BA, 71, ""), OCDZ_SMS_UCS2, 71, 2,
             "71 UCS-2: 2 parts");
    is_count(rep(ARABIC_BA, 134, ""), OCDZ_SMS_UCS2, 134, 2,
             "134 UCS-2: 2 parts");
    is_count(rep(ARABIC_BA, 135, ""), OCDZ_SMS_UCS2, 135, 3,
             "135 UCS-2: 3 parts");
    is_count(rep("a", 160, ARABIC_BA), OCDZ_SMS_UCS2, 161, 3,
             "160 ASCII + one Arabic letter: UCS-2, 161 units, 3 parts");

    is_count(rep(EMOJI, 35, ""), OCDZ_SMS_UCS2, 70, 1,
             "35 emoji = 70 units: 1 part");
    is_count(rep(EMOJI, 36, ""), OCDZ_SMS_UCS2, 72, 2,
             "36 emoji = 72 units: 2 parts");
    is_count(rep(ARABIC_BA, 69, EMOJI), OCDZ_SMS_UCS2, 71, 2,
             "69 + an emoji = 71 units: 2 parts");

    {
        char  buf[1024];

        strcpy(buf, rep(ARABIC_BA, 66, EMOJI));
        strcat(buf, rep(ARABIC_BA, 66, ""));
        is_count(buf, OCDZ_SMS_UCS2, 134, 3,
                 "a surrogate pair is never split: 134 units, 3 parts");

        strcpy(buf, rep(ARABIC_BA, 65, EMOJI));
        strcat(buf, rep(ARABIC_BA, 67, ""));
        is_count(buf, OCDZ_SMS_UCS2, 134, 2,
                 "... while one unit earlier it fits: 2 parts");
    }

    ok(count("ab\xff").parts == 0, "invalid UTF-8 refused");
    ok(count("\xed\xa0\xbd\xed\xb8\x80").parts == 0,
       "CESU-8 surrogates refused");
    is_int(count("a" ARABIC_BA EMOJI).chars, 3, "characters counted");
}


static void
test_build(void)
{
    int                rc;
    ocdz_buf_t         out;
    ocdz_tpl_t        *tpl;
    ocdz_sms_count_t   c;
    ocdz_tpl_vars_t    vars;

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);

    tpl = builtin(OCDZ_LANG_EN);
    card_vars(&vars, OCDZ_TYPE_ADSL, OCDZ_LANG_EN);
    is_int(ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err)),
           OCDZ_MSG_OK, "English SMS");
    is_str((char *) out.data, "Your ADSL card: 123456789012 Trans: "
           "AT-2025-12345. Dial *600#", "... its text");
    ok(c.encoding == OCDZ_SMS_GSM7 && c.parts == 1 && c.units == 61,
       "... GSM 7-bit, one part");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = builtin(OCDZ_LANG_FR);
    card_vars(&vars, OCDZ_TYPE_4G, OCDZ_LANG_FR);
    ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err));
    is_str((char *) out.data, "Votre carte 4G : 123456789012 Trans : "
           "AT-2025-12345. Composez *600#", "French SMS");
    ok(c.encoding == OCDZ_SMS_GSM7 && c.parts == 1, "... GSM 7-bit");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = builtin(OCDZ_LANG_AR);
    card_vars(&vars, OCDZ_TYPE_ADSL, OCDZ_LANG_AR);
    ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err));
    ok(out.data && strstr((char *) out.data, "123456789012")
       && strstr((char *) out.data, "*600#"), "Arabic SMS");
    ok(c.encoding == OCDZ_SMS_UCS2 && c.parts == 1 && c.units == 63,
       "... UCS-2, one part");
    ocdz_buf_free(&out);

    /* too long: refused whole, never cut */

    vars.v[OCDZ_VAR_NUM_TRANS] = S("AT-2025-12345-0123456789-0123456789");
    rc = ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err));
    ok(rc == OCDZ_MSG_ERR_TOO_LONG && out.data == NULL,
       "over the parts allowed: refused, the buffer released");
    is_str(err, "the SMS needs 2 parts (85 UTF-16 units, UCS-2), more than "
           "the 1 allowed", "... the reason");
    ok(c.parts == 2, "... the count given");
    is_int(ocdz_sms_build(tpl, &vars, 2, &out, &c, err, sizeof(err)),
           OCDZ_MSG_OK, "two parts allowed: sent");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = parse(OCDZ_TPL_SMS_TEXT, "{card_code}");
    vars.v[OCDZ_VAR_CARD_CODE] = S("SECRET-{[1]}-CODE");
    ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err));
    ok(c.units == 21 && c.encoding == OCDZ_SMS_GSM7,
       "extension characters in a field count 2");
    ocdz_buf_free(&out);

    vars.v[OCDZ_VAR_CARD_CODE].data = (const unsigned char *)
                                      rep("7", 161, "");
    vars.v[OCDZ_VAR_CARD_CODE].len = 161;
    ok(ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err))
       == OCDZ_MSG_ERR_TOO_LONG && strstr(err, "7777") == NULL,
       "a refused SMS is not quoted in the reason");

    ok(ocdz_sms_build(tpl, &vars, 0, &out, &c, err, sizeof(err))
       == OCDZ_MSG_ERR_INPUT
       && ocdz_sms_build(tpl, &vars, OCDZ_SMS_PARTS_MAX + 1, &out, &c, err,
                         sizeof(err)) == OCDZ_MSG_ERR_INPUT,
       "the most parts must be 1 to 10");

    vars.v[OCDZ_VAR_CARD_CODE] = S("");
    ok(ocdz_sms_build(tpl, &vars, 1, &out, &c, err, sizeof(err))
       == OCDZ_MSG_ERR_INPUT, "no SMS without a card code");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
}


static void
test_check(void)
{
    int                l;
    ocdz_tpl_t        *tpl;
    ocdz_sms_count_t   c;
    ocdz_sms_worst_t   worst;

    for (l = 0; l < OCDZ_LANG_N; l++) {
        tpl = builtin(l);

        if (l == OCDZ_LANG_AR) {
            ok(ocdz_sms_check(tpl, l, NULL, NULL, 1, &c, err, sizeof(err))
               == OCDZ_MSG_ERR_TOO_LONG, "Arabic: one part is too few "
               "with the longest fields");
            is_str(err, "the SMS text (ar) can need 2 parts (94 UTF-16 "
                   "units, UCS-2, ADSL card, fields at their longest), more "
                   "than the 1 allowed", "... the reason");
            ok(ocdz_sms_check(tpl, l, NULL, NULL, 2, &c, err, sizeof(err))
               == OCDZ_MSG_OK && c.parts == 2 && c.units == 94,
               "Arabic: two parts are enough");

        } else {
            ok(ocdz_sms_check(tpl, l, NULL, NULL, 1, &c, err, sizeof(err))
               == OCDZ_MSG_OK && c.parts == 1
               && c.encoding == OCDZ_SMS_GSM7,
               l == OCDZ_LANG_EN ? "English: one GSM part at worst"
                                 : "French: one GSM part at worst");
        }

        ocdz_tpl_free(&ocdz_alloc_std, tpl);
    }

    tpl = builtin(OCDZ_LANG_EN);
    ocdz_sms_worst_default(&worst);
    worst.len[OCDZ_VAR_CARD_CODE] = 120;
    ok(ocdz_sms_check(tpl, OCDZ_LANG_EN, NULL, &worst, 1, &c, err,
                      sizeof(err)) == OCDZ_MSG_ERR_TOO_LONG,
       "a longer worst-case card code: refused");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = parse(OCDZ_TPL_SMS_TEXT, "{card_code} {instructions_title}: "
                "{instructions_steps}");
    ok(ocdz_sms_check(tpl, OCDZ_LANG_EN, NULL, NULL, 1, &c, err,
                      sizeof(err)) == OCDZ_MSG_ERR_TOO_LONG
       && ocdz_sms_check(tpl, OCDZ_LANG_EN, NULL, NULL, 3, &c, err,
                         sizeof(err)) == OCDZ_MSG_OK,
       "instructions counted for both card types");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = parse(OCDZ_TPL_SMS_JSON, "{\"to\":\"{to}\",\"m\":\"{message}\"}");
    ok(ocdz_sms_check(tpl, OCDZ_LANG_EN, NULL, NULL, 1, &c, err,
                      sizeof(err)) == OCDZ_MSG_ERR_INPUT,
       "only SMS text templates are checked");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
}


static void
test_gateway(void)
{
    ocdz_buf_t           out;
    ocdz_tpl_t          *tpl;
    yajl_val             doc, v;
    ocdz_sms_count_t     c;
    ocdz_sms_gateway_t   g;

    static const char   *text_path[] = { "text", NULL };
    static const char   *uni_path[] = { "unicode", NULL };

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);
    memset(&g, 0, sizeof(g));
    g.to = S("+213550123456");
    g.message = S(ARABIC_BA " \"12\" & 34\n\\ 100% =");
    ocdz_sms_count(g.message.data, g.message.len, &c);
    g.count = &c;
    g.sender = S("Shop DZ");
    g.idempotency_key = S("evt_0123");

    tpl = parse(OCDZ_TPL_SMS_FORM, "to={to}&text={message}&from={sender}"
                "&unicode={unicode}&ref={idempotency_key}");
    is_int(ocdz_sms_gateway_body(tpl, &g, &out, err, sizeof(err)),
           OCDZ_MSG_OK, "form body");
    is_str((char *) out.data, "to=%2B213550123456&text=%D8%A8+%2212%22+%26"
           "+34%0A%5C+100%25+%3D&from=Shop+DZ&unicode=1&ref=evt_0123",
           "... form-urlencoded, unicode=1 for UCS-2");
    ocdz_buf_free(&out);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    tpl = parse(OCDZ_TPL_SMS_JSON, "{\"to\": \"{to}\", \"text\": "
                "\"{message}\", \"unicode\": {unicode}}\n");
    is_int(ocdz_sms_gateway_body(tpl, &g, &out, err, sizeof(err)),
           OCDZ_MSG_OK, "JSON body");
    doc = yajl_tree_parse((char *) out.data, err, sizeof(err));
    v = doc ? yajl_tree_get(doc, text_path, yajl_t_string) : NULL;
    ok(v != NULL && v->u.string != NULL
       && strcmp(v->u.string, (const char *) g.message.data) == 0,
       "... parsed back, the message is exactly the text");
    v = doc ? yajl_tree_get(doc, uni_path, yajl_t_number) : NULL;
    ok(v != NULL && YAJL_GET_INTEGER(v) == 1, "... unicode 1");
    yajl_tree_free(doc);
    ocdz_buf_free(&out);

    g.to = S("0550 123");
    ok(ocdz_sms_gateway_body(tpl, &g, &out, err, sizeof(err))
       == OCDZ_MSG_ERR_INPUT && out.data == NULL
       && strstr(err, "recipient: not a phone number"),
       "a recipient that is not a number refused");
    ocdz_tpl_free(&ocdz_alloc_std, tpl);

    ok(ocdz_sms_phone_valid((const unsigned char *) "+213550123456", 13)
       && ocdz_sms_phone_valid((const unsigned char *) "0550123456", 10)
       && ocdz_sms_phone_valid((const unsigned char *) "123456", 6)
       && ocdz_sms_phone_valid((const unsigned char *) "123456789012345",
                               15), "phone numbers accepted");
    ok(!ocdz_sms_phone_valid((const unsigned char *) "12345", 5)
       && !ocdz_sms_phone_valid((const unsigned char *) "1234567890123456",
                                16)
       && !ocdz_sms_phone_valid((const unsigned char *) "+", 1)
       && !ocdz_sms_phone_valid((const unsigned char *) "++2135501", 9)
       && !ocdz_sms_phone_valid((const unsigned char *) "0550123456\r\n", 12)
       && !ocdz_sms_phone_valid((const unsigned char *) "055-0123456", 11),
       "too short, too long, signs, CRLF, dashes refused");
}


static int
reply_id(const char *json, const char *path, char *id)
{
    return ocdz_sms_reply_id((const unsigned char *) json, strlen(json),
                             path, id, OCDZ_SMS_ID_MAX + 1, err,
                             sizeof(err));
}


static void
test_reply(void)
{
    int    i;
    char   id[OCDZ_SMS_ID_MAX + 1], *big;

    ok(reply_id("{\"message_id\":\"abc-123\"}", "message_id", id)
       == OCDZ_MSG_OK && strcmp(id, "abc-123") == 0, "a top-level string");
    ok(reply_id("{\"status\":\"ok\",\"data\":{\"id\":12345}}", "data.id", id)
       == OCDZ_MSG_OK && strcmp(id, "12345") == 0, "a nested number");
    ok(reply_id("{\"messages\":[{\"to\":\"x\",\"message-id\":\"0A01\"}]}",
                "messages.0.message-id", id) == OCDZ_MSG_OK
       && strcmp(id, "0A01") == 0, "through an array");
    ok(reply_id("{\"messages\":[{\"id\":\"a\"},{\"id\":\"b\"}]}",
                "messages.1.id", id) == OCDZ_MSG_OK && strcmp(id, "b") == 0,
       "the second element");
    ok(reply_id("[{\"id\":\"q\"}]", "0.id", id) == OCDZ_MSG_OK
       && strcmp(id, "q") == 0, "a top-level array");
    ok(reply_id("{\"id\":\"x\",\"data\":{\"id\":\"y\"},\"z\":{\"data\":"
                "{\"id\":\"w\"}}}", "data.id", id) == OCDZ_MSG_OK
       && strcmp(id, "y") == 0, "the key at its path only");
    ok(reply_id("{\"a\":[[1,2],{\"b\":[0,{\"c\":\"deep\"}]}]}", "a.1.b.1.c",
                id) == OCDZ_MSG_OK && strcmp(id, "deep") == 0,
       "arrays and objects mixed");

    ok(reply_id("{\"id\":\"x\"}", "data.id", id) == OCDZ_MSG_ERR_INPUT
       && strcmp(err, "no value at the id path") == 0 && id[0] == '\0',
       "no such value");
    ok(reply_id("{\"data\":{\"id\":{\"v\":1}}}", "data.id", id)
       == OCDZ_MSG_ERR_INPUT && strstr(err, "not a string or a number"),
       "an object at the path refused");
    ok(reply_id("{\"id\":null}", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("{\"id\":true}", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("{\"id\":[1]}", "id", id) == OCDZ_MSG_ERR_INPUT,
       "null, boolean, array refused");
    ok(reply_id("{\"id\":\"a\",\"id\":\"b\"}", "id", id)
       == OCDZ_MSG_ERR_INPUT && strstr(err, "matches twice"),
       "a key given twice refused");
    ok(reply_id("{\"id\":\"a b\"}", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("{\"id\":\"a\\nb\"}", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("{\"id\":\"\xc3\xa9\"}", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("{\"id\":\"\"}", "id", id) == OCDZ_MSG_ERR_INPUT,
       "space, control, non-ASCII, empty ids refused");
    ok(strstr(err, "empty") != NULL, "... with the reason");
    ok(reply_id("{\"id\":\"a\"", "id", id) == OCDZ_MSG_ERR_INPUT
       && strcmp(err, "reply is not JSON") == 0
       && reply_id("<html>", "id", id) == OCDZ_MSG_ERR_INPUT
       && reply_id("", "id", id) == OCDZ_MSG_ERR_INPUT,
       "not JSON refused");

    memset(text, 'a', 129);
    text[129] = '\0';
    {
        char  json[256];

        snprintf(json, sizeof(json), "{\"id\":\"%.129s\"}", text);
        ok(reply_id(json, "id", id) == OCDZ_MSG_ERR_INPUT
           && strstr(err, "too long"), "an id over 128 bytes refused");
        json[7 + 128] = '"';
        json[7 + 129] = '}';
        json[7 + 130] = '\0';
        ok(reply_id(json, "id", id) == OCDZ_MSG_OK && strlen(id) == 128,
           "an id of 128 bytes");
    }

    big = malloc(OCDZ_SMS_REPLY_MAX + 2);
    memset(big, ' ', OCDZ_SMS_REPLY_MAX + 1);
    memcpy(big, "{\"id\":\"x\"}", 10);
    big[OCDZ_SMS_REPLY_MAX + 1] = '\0';
    ok(reply_id(big, "id", id) == OCDZ_MSG_ERR_TOO_LONG,
       "a reply over 16 KiB refused");
    big[OCDZ_SMS_REPLY_MAX] = '\0';
    ok(reply_id(big, "id", id) == OCDZ_MSG_OK, "a reply of 16 KiB read");

    for (i = 0; i < 40; i++) {
        big[i] = '[';
    }
    for (i = 40; i < 80; i++) {
        big[i] = ']';
    }
    big[80] = '\0';
    ok(reply_id(big, "0.0", id) == OCDZ_MSG_ERR_INPUT
       && strstr(err, "nested deeper than 32"), "40 levels deep refused");
    free(big);

    ok(ocdz_sms_reply_path_valid("a.b.0", 5)
       && ocdz_sms_reply_path_valid("message-id", 10),
       "paths accepted");
    ok(!ocdz_sms_reply_path_valid("", 0)
       && !ocdz_sms_reply_path_valid(".", 1)
       && !ocdz_sms_reply_path_valid("a..b", 4)
       && !ocdz_sms_reply_path_valid("a.", 2)
       && !ocdz_sms_reply_path_valid("a b", 3)
       && !ocdz_sms_reply_path_valid("a.b.c.d.e.f.g.h.i", 17),
       "empty components, spaces, 9 components refused");
    memset(text, 'k', 65);
    ok(!ocdz_sms_reply_path_valid(text, 65)
       && ocdz_sms_reply_path_valid(text, 64), "a key of 64 bytes at most");
}


int
main(void)
{
    test_count();
    test_build();
    test_check();
    test_gateway();
    test_reply();

    return done_testing();
}
