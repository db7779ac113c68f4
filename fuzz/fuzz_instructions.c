/*
 * libFuzzer target: ocdz_instructions_load() on arbitrary bytes (the
 * result must stay complete and usable, failure or not), and
 * ocdz_lang_pick() on the same bytes as an Accept-Language value.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_instructions.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)


static void
check_text(const char *s)
{
    size_t  i, n;

    check(s != NULL);

    n = strlen(s);
    check(n > 0);

    for (i = 0; i < n; i++) {
        check((unsigned char) s[i] >= 0x20 && s[i] != 0x7f);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                  rc, t, l, lang;
    char                 err[160];
    size_t               i;
    ocdz_instructions_t  set, before;

    ocdz_instructions_default(&set);

    /* twice: the second load stacks on the first (or on the defaults) */
    rc = ocdz_instructions_load(&set, (const char *) data, size, err,
                                sizeof(err));
    check(rc == 0 || rc == -1);
    check(memchr(err, '\0', sizeof(err)) != NULL);
    check(rc == 0 || err[0] != '\0');

    before = set;
    rc = ocdz_instructions_load(&set, (const char *) data, size, err,
                                sizeof(err));

    if (rc != 0) {
        check(memcmp(&before, &set, sizeof(set)) == 0);
    }

    for (i = 0; err[i]; i++) {
        check((unsigned char) err[i] >= 0x20 && err[i] != 0x7f);
    }

    for (t = 0; t < OCDZ_TYPE_N; t++) {
        for (l = 0; l < OCDZ_LANG_N; l++) {
            check_text(set.text[t][l].title);
            check_text(set.text[t][l].support);
            check(set.text[t][l].nsteps >= 1
                  && set.text[t][l].nsteps <= OCDZ_INSTR_STEPS_MAX);

            for (i = 0; i < set.text[t][l].nsteps; i++) {
                check_text(set.text[t][l].steps[i]);
            }
        }
    }

    ocdz_instructions_free(&set);
    check(set.owned == NULL);

    lang = ocdz_lang_pick((const char *) data, size);
    check(lang >= 0 && lang < OCDZ_LANG_N);
    check(ocdz_lang_from_str(ocdz_lang_str(lang), 2) == lang);

    lang = ocdz_lang_from_str((const char *) data, size);
    check(lang >= -1 && lang < OCDZ_LANG_N);

    t = ocdz_card_type_from_str((const char *) data, size);
    check(t >= -1 && t < OCDZ_TYPE_N);

    return 0;
}
