/*
 * Unit tests of ocdz_instructions: the built-in texts, overlays loaded
 * from JSON and their refusals, and the choice of a language.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_instructions.h"


static char  err[256];


/* A valid UTF-8 string, without control characters. */

static int
utf8_ok(const char *s)
{
    const unsigned char  *p = (const unsigned char *) s;
    int                   n;

    while (*p) {
        if (*p < 0x20 || *p == 0x7f) {
            return 0;
        }

        if (*p < 0x80) {
            p++;
            continue;
        }

        if ((*p & 0xe0) == 0xc0 && *p >= 0xc2) {
            n = 1;

        } else if ((*p & 0xf0) == 0xe0) {
            n = 2;

        } else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4) {
            n = 3;

        } else {
            return 0;
        }

        for (p++; n > 0; n--, p++) {
            if ((*p & 0xc0) != 0x80) {
                return 0;
            }
        }
    }

    return 1;
}


/* Some Arabic letter (U+0600-U+06FF) in s. */

static int
has_arabic(const char *s)
{
    const unsigned char  *p = (const unsigned char *) s;

    for ( /* void */ ; *p; p++) {
        if ((p[0] == 0xd8 || p[0] == 0xd9 || p[0] == 0xda || p[0] == 0xdb)
            && (p[1] & 0xc0) == 0x80)
        {
            return 1;
        }
    }

    return 0;
}


static int
any_step_has(const ocdz_instruction_t *in, const char *what)
{
    size_t  i;

    for (i = 0; i < in->nsteps; i++) {
        if (strstr(in->steps[i], what) != NULL) {
            return 1;
        }
    }

    return 0;
}


static const char *
label(int t, int l, const char *what)
{
    static char  buf[128];

    snprintf(buf, sizeof(buf), "%s/%s: %s", t ? "4G" : "ADSL",
             ocdz_lang_str((ocdz_lang_e) l), what);

    return buf;
}


static void
test_defaults(void)
{
    int                  t, l;
    size_t               i;
    ocdz_instructions_t  set;
    ocdz_instruction_t  *in;

    ocdz_instructions_default(&set);
    ok(set.owned == NULL, "defaults own nothing");

    for (t = 0; t < OCDZ_TYPE_N; t++) {
        for (l = 0; l < OCDZ_LANG_N; l++) {
            in = &set.text[t][l];

            ok(in->title != NULL && in->title[0] && utf8_ok(in->title),
               label(t, l, "title"));
            ok(in->nsteps >= 4 && in->nsteps <= OCDZ_INSTR_STEPS_MAX,
               label(t, l, "steps count"));

            for (i = 0; i < in->nsteps; i++) {
                if (!ok(in->steps[i] != NULL && in->steps[i][0]
                        && utf8_ok(in->steps[i]),
                        label(t, l, "step is valid UTF-8")))
                {
                    printf("#   step %zu\n", i);
                }
            }

            ok(in->support != NULL && utf8_ok(in->support),
               label(t, l, "support"));
            ok(any_step_has(in, "*600#"), label(t, l, "*600# kept"));
            ok(strstr(in->support, "3003") != NULL,
               label(t, l, "3003 in support"));
            ok(any_step_has(in, t == OCDZ_TYPE_ADSL ? "Recharge"
                                                    : "Recharge Internet"),
               label(t, l, "menu entry named as on the phone"));
            ok(strstr(in->title, t == OCDZ_TYPE_ADSL ? "ADSL" : "4G")
               != NULL, label(t, l, "title names the type"));

            if (l == OCDZ_LANG_AR) {
                ok(has_arabic(in->title) && has_arabic(in->steps[0])
                   && has_arabic(in->support),
                   label(t, l, "Arabic text is Arabic"));

            } else {
                ok(!has_arabic(in->title), label(t, l, "not Arabic"));
            }
        }
    }

    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].title,
           "How to recharge your ADSL line", "ADSL en title");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_FR].title,
           "Comment recharger votre ligne ADSL", "ADSL fr title");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].steps[1], "Dial *600#.",
           "ADSL en dial step");
    ok(any_step_has(&set.text[OCDZ_TYPE_4G][OCDZ_LANG_EN], "4G SIM"),
       "4G en: SIM step");
    ok(strstr(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].support, "ADSL line")
       != NULL, "ADSL support from the ADSL line");
    ok(strstr(set.text[OCDZ_TYPE_4G][OCDZ_LANG_EN].support, "mobile")
       != NULL, "4G support from the mobile");
    ok(strcmp(set.text[OCDZ_TYPE_4G][OCDZ_LANG_AR].title,
              set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_AR].title) != 0,
       "Arabic titles differ per type");

    ocdz_instructions_free(&set);
    ok(set.owned == NULL, "free of defaults is fine");
}


static void
test_load(void)
{
    ocdz_instructions_t  set, before;
    const char          *json;
    ocdz_instruction_t  *in;

    ocdz_instructions_default(&set);

    json = "{\"ADSL\":{\"fr\":{\"title\":\"Recharger l'ADSL\","
           "\"steps\":[\"Un\",\"Deux \\u00e9\",\"Trois\"]}},"
           "\"4G\":{\"ar\":{\"support\":\"\xd8\xa7\xd8\xaa\xd8\xb5\xd9\x84 "
           "3003\"}}}";

    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           0, "overlay loads");
    is_str(err, "", "no error");
    ok(set.owned != NULL, "strings owned");

    in = &set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_FR];
    is_str(in->title, "Recharger l'ADSL", "ADSL fr title replaced");
    is_int(in->nsteps, 3, "ADSL fr steps replaced, all of them");
    is_str(in->steps[1], "Deux \xc3\xa9", "escape decoded");
    is_str(in->support,
           "Besoin d'aide ? Appelez le 3003 depuis votre ligne ADSL.",
           "ADSL fr support kept");

    is_str(set.text[OCDZ_TYPE_4G][OCDZ_LANG_AR].support,
           "\xd8\xa7\xd8\xaa\xd8\xb5\xd9\x84 3003", "4G ar support replaced");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].title,
           "How to recharge your ADSL line", "ADSL en kept");
    is_int(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].nsteps, 6,
           "ADSL en steps kept");

    /* a second load stacks on the first */
    json = "{\"4G\":{\"en\":{\"title\":\"4G!\"}}}";
    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           0, "second overlay loads");
    is_str(set.text[OCDZ_TYPE_4G][OCDZ_LANG_EN].title, "4G!",
           "second overlay applied");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_FR].title, "Recharger l'ADSL",
           "first overlay still there");

    /* a failed load changes nothing */
    before = set;
    json = "{\"4G\":{\"en\":{\"title\":\"changed\"},\"fr\":{\"title\":7}}}";
    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           -1, "bad overlay refused");
    ok(memcmp(&before, &set, sizeof(set)) == 0, "refused overlay: no change");
    is_str(set.text[OCDZ_TYPE_4G][OCDZ_LANG_EN].title, "4G!",
           "title before the mistake not applied");

    json = "{}";
    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           0, "empty object loads");

    /* all twelve steps */
    json = "{\"ADSL\":{\"en\":{\"steps\":[\"1\",\"2\",\"3\",\"4\",\"5\","
           "\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\"]}}}";
    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           0, "12 steps load");
    is_int(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].nsteps, 12, "12 steps");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_EN].steps[11], "12",
           "last step");

    ocdz_instructions_free(&set);
    ok(set.owned == NULL, "freed");
    is_str(set.text[OCDZ_TYPE_ADSL][OCDZ_LANG_FR].title,
           "Comment recharger votre ligne ADSL", "free restores defaults");
}


static void
load_fails(const char *json, const char *reason, const char *name)
{
    ocdz_instructions_t  set;

    ocdz_instructions_default(&set);

    err[0] = '\0';

    is_int(ocdz_instructions_load(&set, json, strlen(json), err,
                                  sizeof(err)),
           -1, name);

    if (!ok(strstr(err, reason) != NULL, "  reason")) {
        printf("#   got '%s', expected '%s' in it\n", err, reason);
    }

    ok(set.owned == NULL, "  nothing owned");

    ocdz_instructions_free(&set);
}


static void
test_load_errors(void)
{
    char                 *big;
    size_t                n;
    ocdz_instructions_t   set;

    load_fails("", "empty", "empty file");
    load_fails("[]", "(file): not an object", "top-level array");
    load_fails("\"x\"", "(file): not an object", "top-level string");
    load_fails("{\"ADSL\":{}", "invalid JSON", "truncated");
    load_fails("{\"ADSL\":{}} x", "invalid JSON", "trailing garbage");
    load_fails("{\"ADSL\":{\"en\":{\"title\":\"\xc3\x28\"}}}",
               "invalid JSON", "invalid UTF-8");
    load_fails("{\"ADSL\":{\"en\":{\"title\":\"a\"}},}", "invalid JSON",
               "trailing comma");

    load_fails("{\"FIBRE\":{}}", "\"FIBRE\": unknown card type",
               "unknown type");
    load_fails("{\"ADSL\":{},\"ADSL\":{}}", "ADSL: given twice",
               "type twice");
    load_fails("{\"ADSL\":[]}", "ADSL: not an object", "type not an object");
    load_fails("{\"4G\":\"x\"}", "4G: not an object", "type a string");
    load_fails("{\"ADSL\":{\"de\":{}}}", "ADSL: \"de\": unknown language",
               "unknown language");
    load_fails("{\"ADSL\":{\"en\":{},\"en\":{}}}", "ADSL.en: given twice",
               "language twice");
    load_fails("{\"ADSL\":{\"fr\":null}}", "ADSL.fr: not an object",
               "language null");
    load_fails("{\"ADSL\":{\"fr\":{\"colour\":\"x\"}}}",
               "ADSL.fr: \"colour\": unknown key", "unknown key");
    load_fails("{\"ADSL\":{\"fr\":{\"title\":\"a\",\"title\":\"b\"}}}",
               "ADSL.fr.title: given twice", "key twice");
    load_fails("{\"ADSL\":{\"fr\":{\"title\":7}}}",
               "ADSL.fr.title: not a string", "title a number");
    load_fails("{\"ADSL\":{\"fr\":{\"title\":\"\"}}}",
               "ADSL.fr.title: empty string", "title empty");
    load_fails("{\"ADSL\":{\"fr\":{\"support\":{}}}}",
               "ADSL.fr.support: not a string", "support an object");
    load_fails("{\"ADSL\":{\"fr\":{\"title\":\"a\\nb\"}}}",
               "ADSL.fr.title: control character", "newline in title");
    load_fails("{\"ADSL\":{\"fr\":{\"title\":\"a\\u0000b\"}}}",
               "ADSL.fr.title: control character", "NUL in title");
    load_fails("{\"ADSL\":{\"fr\":{\"steps\":\"one\"}}}",
               "ADSL.fr.steps: not an array of strings", "steps a string");
    load_fails("{\"ADSL\":{\"fr\":{\"steps\":[]}}}",
               "ADSL.fr.steps: no steps", "steps empty");
    load_fails("{\"ADSL\":{\"fr\":{\"steps\":[\"a\",\"b\",\"c\",4]}}}",
               "ADSL.fr.steps[3]: not a string", "step a number");
    load_fails("{\"4G\":{\"ar\":{\"steps\":[\"a\",[\"b\"]]}}}",
               "4G.ar.steps[1]: not a string", "step an array");
    load_fails("{\"4G\":{\"ar\":{\"steps\":[{}]}}}",
               "4G.ar.steps[0]: not a string", "step an object");
    load_fails("{\"4G\":{\"ar\":{\"steps\":[\"a\",\"\"]}}}",
               "4G.ar.steps[1]: empty string", "step empty");
    load_fails("{\"ADSL\":{\"en\":{\"steps\":[\"1\",\"2\",\"3\",\"4\","
               "\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\","
               "\"13\"]}}}",
               "ADSL.en.steps[12]: too many steps", "13 steps");
    load_fails("{\"\x01\xff\":{}}", "invalid JSON", "control bytes in a key");
    load_fails("{\"a\\u0001b\":{}}", "\"a?b\": unknown card type",
               "escaped control in a key shown safely");

    big = malloc(OCDZ_INSTR_FILE_MAX + 64);

    if (big != NULL) {
        n = snprintf(big, 64, "{\"ADSL\":{\"en\":{\"title\":\"");
        memset(big + n, 'x', OCDZ_INSTR_TEXT_MAX + 1);
        n += OCDZ_INSTR_TEXT_MAX + 1;
        memcpy(big + n, "\"}}}", 5);
        load_fails(big, "ADSL.en.title: string too long", "long title");

        memset(big, ' ', OCDZ_INSTR_FILE_MAX + 1);
        memcpy(big, "{}", 2);
        big[OCDZ_INSTR_FILE_MAX + 1] = '\0';
        load_fails(big, "larger than", "file over the cap");

        big[OCDZ_INSTR_FILE_MAX] = '\0';
        ocdz_instructions_default(&set);
        is_int(ocdz_instructions_load(&set, big, OCDZ_INSTR_FILE_MAX, err,
                                      sizeof(err)),
               0, "file at the cap loads");
        ocdz_instructions_free(&set);

        free(big);
    }

    ocdz_instructions_default(&set);
    is_int(ocdz_instructions_load(&set, "[", 1, NULL, 0), -1,
           "NULL err buffer");
    ocdz_instructions_free(&set);
}


static void
test_lookup(void)
{
    is_int(ocdz_card_type_from_str("ADSL", 4), OCDZ_TYPE_ADSL, "ADSL");
    is_int(ocdz_card_type_from_str("adsl", 4), OCDZ_TYPE_ADSL, "adsl");
    is_int(ocdz_card_type_from_str("4G", 2), OCDZ_TYPE_4G, "4G");
    is_int(ocdz_card_type_from_str("4GLTE", 5), OCDZ_TYPE_4G, "4GLTE");
    is_int(ocdz_card_type_from_str("4GLTEX", 5), OCDZ_TYPE_4G,
           "len honoured");
    is_int(ocdz_card_type_from_str("4GL", 3), -1, "4GL");
    is_int(ocdz_card_type_from_str("", 0), -1, "empty type");
    is_int(ocdz_card_type_from_str("FIBRE", 5), -1, "FIBRE");
    is_int(ocdz_card_type_from_str(NULL, 0), -1, "NULL type");

    is_int(ocdz_lang_from_str("en", 2), OCDZ_LANG_EN, "en");
    is_int(ocdz_lang_from_str("FR", 2), OCDZ_LANG_FR, "FR");
    is_int(ocdz_lang_from_str("Ar", 2), OCDZ_LANG_AR, "Ar");
    is_int(ocdz_lang_from_str("de", 2), -1, "de");
    is_int(ocdz_lang_from_str("fr-DZ", 5), -1, "fr-DZ is not a language");
    is_int(ocdz_lang_from_str("e", 1), -1, "e");
    is_int(ocdz_lang_from_str(NULL, 0), -1, "NULL lang");

    is_str(ocdz_lang_str(OCDZ_LANG_EN), "en", "lang_str en");
    is_str(ocdz_lang_str(OCDZ_LANG_FR), "fr", "lang_str fr");
    is_str(ocdz_lang_str(OCDZ_LANG_AR), "ar", "lang_str ar");
    is_str(ocdz_lang_str((ocdz_lang_e) 7), "en", "lang_str out of range");
}


static void
test_lang_pick(void)
{
    static const struct {
        const char   *accept;
        ocdz_lang_e   lang;
    } cases[] = {
        { "", OCDZ_LANG_EN },
        { "fr", OCDZ_LANG_FR },
        { "ar", OCDZ_LANG_AR },
        { "AR", OCDZ_LANG_AR },
        { "fr-DZ", OCDZ_LANG_FR },
        { "ar-DZ,fr;q=0.8,en;q=0.5", OCDZ_LANG_AR },
        { "fr-DZ;q=0.8, ar;q=0.9", OCDZ_LANG_AR },
        { "de-DE,de;q=0.9,fr;q=0.3", OCDZ_LANG_FR },
        { "de", OCDZ_LANG_EN },
        { "*", OCDZ_LANG_EN },
        { "de, *;q=0.5", OCDZ_LANG_EN },
        { "en;q=0, *", OCDZ_LANG_FR },
        { "en;q=0, fr;q=0, *", OCDZ_LANG_AR },
        { "fr;q=0", OCDZ_LANG_EN },
        { "ar;q=0, fr;q=0.001", OCDZ_LANG_FR },
        { "fr;q=0.5, ar;q=0.5", OCDZ_LANG_FR },
        { "ar;q=0.5, fr;q=0.5", OCDZ_LANG_AR },
        { "ar, fr", OCDZ_LANG_AR },
        { "fr, ar;q=1.000", OCDZ_LANG_FR },
        { "fr;q=0.5, ar;q=1.5", OCDZ_LANG_FR },
        { "fr;q=0.5, ar;q=0.5555", OCDZ_LANG_FR },
        { "fr;q=0.5, ar;q=abc", OCDZ_LANG_FR },
        { "fr;q=0.5, ar;Q=0.6", OCDZ_LANG_AR },
        { "fr;level=1;q=0.4, ar;q=0.3", OCDZ_LANG_FR },
        { "  ar  ;  q=0.9  ,  fr ; q=0.1 ", OCDZ_LANG_AR },
        { "fr-CA;q=0.2, fr-FR;q=0.9, ar;q=0.8", OCDZ_LANG_FR },
        { "fra", OCDZ_LANG_EN },
        { "french", OCDZ_LANG_EN },
        { "x-ar", OCDZ_LANG_EN },
        { ",,,;;;===", OCDZ_LANG_EN },
        { "\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a", OCDZ_LANG_EN },
        { "ar junk, fr;q=0.1", OCDZ_LANG_FR },
        { "ar;q=, fr;q=0.1", OCDZ_LANG_FR },
        { "fr;q=0.", OCDZ_LANG_EN },
        { "fr;q=1.", OCDZ_LANG_FR },
        { "ar\t;q=0.7,fr;q=0.6", OCDZ_LANG_AR }
    };

    char    name[128], *big;
    size_t  i, n;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(name, sizeof(name), "Accept-Language '%s'",
                 cases[i].accept);
        is_int(ocdz_lang_pick(cases[i].accept, strlen(cases[i].accept)),
               cases[i].lang, name);
    }

    is_int(ocdz_lang_pick(NULL, 0), OCDZ_LANG_EN, "NULL header");
    is_int(ocdz_lang_pick("ar,fr", 2), OCDZ_LANG_AR, "len honoured");
    is_int(ocdz_lang_pick("fr\0ar", 5), OCDZ_LANG_EN, "NUL byte: junk");

    /* a long header: only its first ranges are weighed */
    big = malloc(100000);

    if (big != NULL) {
        n = 0;

        while (n < 99000) {
            memcpy(big + n, "de;q=0.9,", 9);
            n += 9;
        }

        memcpy(big + n, "ar", 2);
        n += 2;

        is_int(ocdz_lang_pick(big, n), OCDZ_LANG_EN,
               "a range far down a long header is not looked at");

        memcpy(big, "fr;q=0.1,", 9);
        is_int(ocdz_lang_pick(big, n), OCDZ_LANG_FR,
               "the first ranges of a long header count");

        memset(big, 'a', 99999);
        is_int(ocdz_lang_pick(big, 99999), OCDZ_LANG_EN,
               "one huge token");

        free(big);
    }
}


int
main(void)
{
    test_defaults();
    test_load();
    test_load_errors();
    test_lookup();
    test_lang_pick();

    return done_testing();
}
