/*
 * Usage instructions for a card, per type (ADSL, 4G) and language
 * (en, fr, ar), as the OneClickDz guide gives them, replaceable from a
 * JSON file:
 *
 *     {"ADSL": {"en": {"title": "...", "steps": ["...", ...],
 *                      "support": "..."}, "fr": {...}, "ar": {...}},
 *      "4G":   {...}}
 *
 * A file may give any subset; what it leaves out keeps the built-in
 * text. Pure C, no nginx.
 */

#ifndef _OCDZ_INSTRUCTIONS_H_INCLUDED_
#define _OCDZ_INSTRUCTIONS_H_INCLUDED_


#include <stddef.h>


#define OCDZ_INSTR_STEPS_MAX   12
#define OCDZ_INSTR_FILE_MAX    65536
#define OCDZ_INSTR_TEXT_MAX    1024    /* bytes of one title, step or
                                          support line from a file */


typedef enum {
    OCDZ_TYPE_ADSL = 0,
    OCDZ_TYPE_4G,
    OCDZ_TYPE_N
} ocdz_card_type_e;

typedef enum {
    OCDZ_LANG_EN = 0,
    OCDZ_LANG_FR,
    OCDZ_LANG_AR,
    OCDZ_LANG_N
} ocdz_lang_e;


typedef struct {
    const char   *title;
    const char   *steps[OCDZ_INSTR_STEPS_MAX];
    size_t        nsteps;
    const char   *support;
} ocdz_instruction_t;


typedef struct {
    ocdz_instruction_t   text[OCDZ_TYPE_N][OCDZ_LANG_N];
    void                *owned;      /* strings loaded from a file */
} ocdz_instructions_t;


/* Fills the set with the built-in texts. */
void ocdz_instructions_default(ocdz_instructions_t *set);

/*
 * Overlays the set with a JSON document (see above). Unknown types,
 * languages or keys, wrong JSON types, empty strings and more than
 * OCDZ_INSTR_STEPS_MAX steps are refused with a reason in err. Strings
 * are malloc()ed; ocdz_instructions_free() releases them.
 */
int ocdz_instructions_load(ocdz_instructions_t *set, const char *json,
    size_t len, char *err, size_t errlen);

void ocdz_instructions_free(ocdz_instructions_t *set);

/* "ADSL" -> OCDZ_TYPE_ADSL, "4G" or "4GLTE" -> OCDZ_TYPE_4G, else -1. */
int ocdz_card_type_from_str(const char *s, size_t len);

/* "en", "fr", "ar" (case-insensitive) -> the language, else -1. */
int ocdz_lang_from_str(const char *s, size_t len);

/*
 * Picks a language from an Accept-Language header value, honouring
 * q-values and region subtags ("fr-DZ;q=0.8"); English when none fits.
 */
ocdz_lang_e ocdz_lang_pick(const char *accept, size_t len);

const char *ocdz_lang_str(ocdz_lang_e lang);


#endif /* _OCDZ_INSTRUCTIONS_H_INCLUDED_ */
