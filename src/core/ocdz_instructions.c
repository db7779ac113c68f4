/*
 * Card usage instructions: the built-in texts, an overlay loaded from a
 * JSON file, and the choice of a language from Accept-Language.
 *
 * The overlay is all or nothing: a file with one mistake changes
 * nothing, and the reason names the path of the mistake.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ocdz_instructions.h"


#define OCDZ_INSTR_PATH_MAX    64
#define OCDZ_LANG_SCAN_MAX     1024     /* bytes of Accept-Language read */
#define OCDZ_LANG_RANGES_MAX   32       /* language ranges weighed */


/* Strings of one successful load, freed together. */
typedef struct ocdz_instr_block_s  ocdz_instr_block_t;

struct ocdz_instr_block_s {
    ocdz_instr_block_t  *next;
    size_t               used;
    size_t               size;
    char                 data[];
};


typedef enum {
    OCDZ_INSTR_F_NONE = 0,
    OCDZ_INSTR_F_TITLE,
    OCDZ_INSTR_F_STEPS,
    OCDZ_INSTR_F_SUPPORT
} ocdz_instr_field_e;


typedef struct {
    ocdz_instructions_t   set;        /* the result, committed on success */
    ocdz_instr_block_t   *block;

    char                 *err;
    size_t                errlen;
    int                   failed;

    unsigned              depth;      /* 1 top, 2 type, 3 lang, 4 steps */
    int                   type;
    int                   lang;
    ocdz_instr_field_e    field;
    unsigned              seen_types;
    unsigned              seen_langs;
    unsigned              seen_fields;
    char                  type_name[8];
} ocdz_instr_ctx_t;


static const char  *ocdz_type_names[OCDZ_TYPE_N] = { "ADSL", "4G" };
static const char  *ocdz_lang_names[OCDZ_LANG_N] = { "en", "fr", "ar" };
static const char  *ocdz_field_names[] = { "", "title", "steps", "support" };


/*
 * The OneClickDz guide's instructions. "*600#" and "3003" are what the
 * customer dials: they stay literal in every language.
 */
static const ocdz_instruction_t  ocdz_instr_builtin[OCDZ_TYPE_N][OCDZ_LANG_N]
    = {
    {
        {
            "How to recharge your ADSL line",
            {
                "Pick up your landline phone.",
                "Dial *600#.",
                "Choose \"Recharge\".",
                "Enter the card code.",
                "Press # to confirm.",
                "The credit is added to your line immediately."
            },
            6,
            "Need help? Call 3003 from your ADSL line."
        },
        {
            "Comment recharger votre ligne ADSL",
            {
                "D\xc3\xa9" "crochez votre t\xc3\xa9l\xc3\xa9phone fixe.",
                "Composez le *600#.",
                "Choisissez \xc2\xab Recharge \xc2\xbb.",
                "Saisissez le code de la carte.",
                "Appuyez sur # pour confirmer.",
                "Le cr\xc3\xa9" "dit est ajout\xc3\xa9 \xc3\xa0 votre ligne "
                "imm\xc3\xa9" "diatement."
            },
            6,
            "Besoin d'aide ? Appelez le 3003 depuis votre ligne ADSL."
        },
        {
            /* كيفية تعبئة رصيد خط ADSL */
            "\xd9\x83\xd9\x8a\xd9\x81\xd9\x8a\xd8\xa9 "
            "\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9 "
            "\xd8\xb1\xd8\xb5\xd9\x8a\xd8\xaf "
            "\xd8\xae\xd8\xb7 ADSL",
            {
                /* ارفع سماعة الهاتف الثابت. */
                "\xd8\xa7\xd8\xb1\xd9\x81\xd8\xb9 "
                "\xd8\xb3\xd9\x85\xd8\xa7\xd8\xb9\xd8\xa9 "
                "\xd8\xa7\xd9\x84\xd9\x87\xd8\xa7\xd8\xaa\xd9\x81 "
                "\xd8\xa7\xd9\x84\xd8\xab\xd8\xa7\xd8\xa8\xd8\xaa.",
                /* اطلب *600#. */
                "\xd8\xa7\xd8\xb7\xd9\x84\xd8\xa8 *600#.",
                /* اختر «Recharge» (تعبئة). */
                "\xd8\xa7\xd8\xae\xd8\xaa\xd8\xb1 "
                "\xc2\xab" "Recharge" "\xc2\xbb "
                "(\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9).",
                /* أدخل رمز البطاقة. */
                "\xd8\xa3\xd8\xaf\xd8\xae\xd9\x84 "
                "\xd8\xb1\xd9\x85\xd8\xb2 "
                "\xd8\xa7\xd9\x84\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9.",
                /* اضغط على # للتأكيد. */
                "\xd8\xa7\xd8\xb6\xd8\xba\xd8\xb7 "
                "\xd8\xb9\xd9\x84\xd9\x89 # "
                "\xd9\x84\xd9\x84\xd8\xaa\xd8\xa3\xd9\x83\xd9\x8a\xd8\xaf.",
                /* يضاف الرصيد إلى خطك فورا. */
                "\xd9\x8a\xd8\xb6\xd8\xa7\xd9\x81 "
                "\xd8\xa7\xd9\x84\xd8\xb1\xd8\xb5\xd9\x8a\xd8\xaf "
                "\xd8\xa5\xd9\x84\xd9\x89 "
                "\xd8\xae\xd8\xb7\xd9\x83 "
                "\xd9\x81\xd9\x88\xd8\xb1\xd8\xa7."
            },
            6,
            /* تحتاج مساعدة؟ اتصل بالرقم 3003 من خط ADSL. */
            "\xd8\xaa\xd8\xad\xd8\xaa\xd8\xa7\xd8\xac "
            "\xd9\x85\xd8\xb3\xd8\xa7\xd8\xb9\xd8\xaf\xd8\xa9\xd8\x9f "
            "\xd8\xa7\xd8\xaa\xd8\xb5\xd9\x84 "
            "\xd8\xa8\xd8\xa7\xd9\x84\xd8\xb1\xd9\x82\xd9\x85 3003 "
            "\xd9\x85\xd9\x86 "
            "\xd8\xae\xd8\xb7 ADSL."
        }
    },
    {
        {
            "How to recharge your 4G internet",
            {
                "Make sure the 4G SIM card is active.",
                "Dial *600# from your 4G device.",
                "Choose \"Recharge Internet\".",
                "Enter the card code.",
                "Press # to confirm.",
                "Your data is activated within a few minutes."
            },
            6,
            "Need help? Call 3003 from your mobile."
        },
        {
            "Comment recharger votre internet 4G",
            {
                "Assurez-vous que la carte SIM 4G est active.",
                "Composez le *600# depuis votre appareil 4G.",
                "Choisissez \xc2\xab Recharge Internet \xc2\xbb.",
                "Saisissez le code de la carte.",
                "Appuyez sur # pour confirmer.",
                "Vos donn\xc3\xa9" "es sont activ\xc3\xa9" "es en quelques "
                "minutes."
            },
            6,
            "Besoin d'aide ? Appelez le 3003 depuis votre mobile."
        },
        {
            /* كيفية تعبئة رصيد إنترنت 4G */
            "\xd9\x83\xd9\x8a\xd9\x81\xd9\x8a\xd8\xa9 "
            "\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9 "
            "\xd8\xb1\xd8\xb5\xd9\x8a\xd8\xaf "
            "\xd8\xa5\xd9\x86\xd8\xaa\xd8\xb1\xd9\x86\xd8\xaa 4G",
            {
                /* تأكد من أن شريحة 4G مفعلة. */
                "\xd8\xaa\xd8\xa3\xd9\x83\xd8\xaf "
                "\xd9\x85\xd9\x86 "
                "\xd8\xa3\xd9\x86 "
                "\xd8\xb4\xd8\xb1\xd9\x8a\xd8\xad\xd8\xa9 4G "
                "\xd9\x85\xd9\x81\xd8\xb9\xd9\x84\xd8\xa9.",
                /* اطلب *600# من جهاز 4G. */
                "\xd8\xa7\xd8\xb7\xd9\x84\xd8\xa8 *600# "
                "\xd9\x85\xd9\x86 "
                "\xd8\xac\xd9\x87\xd8\xa7\xd8\xb2 4G.",
                /* اختر «Recharge Internet» (تعبئة الإنترنت). */
                "\xd8\xa7\xd8\xae\xd8\xaa\xd8\xb1 "
                "\xc2\xab" "Recharge Internet" "\xc2\xbb "
                "(\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9 "
                "\xd8\xa7\xd9\x84\xd8\xa5\xd9\x86\xd8\xaa\xd8\xb1\xd9\x86"
                "\xd8\xaa).",
                /* أدخل رمز البطاقة. */
                "\xd8\xa3\xd8\xaf\xd8\xae\xd9\x84 "
                "\xd8\xb1\xd9\x85\xd8\xb2 "
                "\xd8\xa7\xd9\x84\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9.",
                /* اضغط على # للتأكيد. */
                "\xd8\xa7\xd8\xb6\xd8\xba\xd8\xb7 "
                "\xd8\xb9\xd9\x84\xd9\x89 # "
                "\xd9\x84\xd9\x84\xd8\xaa\xd8\xa3\xd9\x83\xd9\x8a\xd8\xaf.",
                /* تفعل البيانات خلال دقائق. */
                "\xd8\xaa\xd9\x81\xd8\xb9\xd9\x84 "
                "\xd8\xa7\xd9\x84\xd8\xa8\xd9\x8a\xd8\xa7\xd9\x86\xd8\xa7"
                "\xd8\xaa "
                "\xd8\xae\xd9\x84\xd8\xa7\xd9\x84 "
                "\xd8\xaf\xd9\x82\xd8\xa7\xd8\xa6\xd9\x82."
            },
            6,
            /* تحتاج مساعدة؟ اتصل بالرقم 3003 من هاتفك المحمول. */
            "\xd8\xaa\xd8\xad\xd8\xaa\xd8\xa7\xd8\xac "
            "\xd9\x85\xd8\xb3\xd8\xa7\xd8\xb9\xd8\xaf\xd8\xa9\xd8\x9f "
            "\xd8\xa7\xd8\xaa\xd8\xb5\xd9\x84 "
            "\xd8\xa8\xd8\xa7\xd9\x84\xd8\xb1\xd9\x82\xd9\x85 3003 "
            "\xd9\x85\xd9\x86 "
            "\xd9\x87\xd8\xa7\xd8\xaa\xd9\x81\xd9\x83 "
            "\xd8\xa7\xd9\x84\xd9\x85\xd8\xad\xd9\x85\xd9\x88\xd9\x84."
        }
    }
};


static int ocdz_instr_fail(ocdz_instr_ctx_t *ctx, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void ocdz_instr_path(ocdz_instr_ctx_t *ctx, char *buf, size_t size);
static void ocdz_instr_quote(char *buf, size_t size, const unsigned char *s,
    size_t len);
static int ocdz_instr_wrong(ocdz_instr_ctx_t *ctx, const char *what);
static const char *ocdz_instr_expected(ocdz_instr_ctx_t *ctx);
static int ocdz_ascii_eq(const char *a, size_t alen, const char *b);
static int ocdz_lang_q(const char *p, const char *end, int *q);
static const char *ocdz_lang_ows(const char *p, const char *end);

static int ocdz_instr_null(void *data);
static int ocdz_instr_boolean(void *data, int val);
static int ocdz_instr_number(void *data, const char *s, size_t len);
static int ocdz_instr_string(void *data, const unsigned char *s,
    size_t len);
static int ocdz_instr_start_map(void *data);
static int ocdz_instr_map_key(void *data, const unsigned char *key,
    size_t len);
static int ocdz_instr_end_map(void *data);
static int ocdz_instr_start_array(void *data);
static int ocdz_instr_end_array(void *data);


static const yajl_callbacks  ocdz_instr_callbacks = {
    ocdz_instr_null,
    ocdz_instr_boolean,
    NULL,
    NULL,
    ocdz_instr_number,
    ocdz_instr_string,
    ocdz_instr_start_map,
    ocdz_instr_map_key,
    ocdz_instr_end_map,
    ocdz_instr_start_array,
    ocdz_instr_end_array
};


void
ocdz_instructions_default(ocdz_instructions_t *set)
{
    memcpy(set->text, ocdz_instr_builtin, sizeof(set->text));
    set->owned = NULL;
}


int
ocdz_instructions_load(ocdz_instructions_t *set, const char *json,
    size_t len, char *err, size_t errlen)
{
    size_t              at;
    yajl_handle         h;
    yajl_status         st;
    unsigned char      *msg;
    ocdz_instr_ctx_t    ctx;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }

    memset(&ctx, 0, sizeof(ocdz_instr_ctx_t));
    ctx.err = err;
    ctx.errlen = errlen;

    if (len > OCDZ_INSTR_FILE_MAX) {
        ocdz_instr_fail(&ctx, "file larger than %d bytes",
                        OCDZ_INSTR_FILE_MAX);
        return -1;
    }

    if (json == NULL || len == 0) {
        ocdz_instr_fail(&ctx, "empty file");
        return -1;
    }

    /*
     * Decoded strings are never longer than their JSON form, and each
     * needs one NUL, which takes the place of at least its quotes.
     */
    ctx.block = malloc(sizeof(ocdz_instr_block_t) + len + 1);
    if (ctx.block == NULL) {
        ocdz_instr_fail(&ctx, "out of memory");
        return -1;
    }

    ctx.block->next = NULL;
    ctx.block->used = 0;
    ctx.block->size = len + 1;

    ctx.set = *set;

    h = yajl_alloc(&ocdz_instr_callbacks, NULL, &ctx);
    if (h == NULL) {
        free(ctx.block);
        ocdz_instr_fail(&ctx, "out of memory");
        return -1;
    }

    st = yajl_parse(h, (const unsigned char *) json, len);
    if (st == yajl_status_ok) {
        at = len;
        st = yajl_complete_parse(h);

    } else {
        at = yajl_get_bytes_consumed(h);
    }

    if (st == yajl_status_error && !ctx.failed) {
        msg = yajl_get_error(h, 0, (const unsigned char *) json, len);

        if (msg != NULL) {
            /* "lexical error: ...\n"; the verbose form quotes the file */
            msg[strcspn((char *) msg, "\r\n")] = '\0';
            ocdz_instr_fail(&ctx, "invalid JSON near byte %zu: %s", at,
                            (char *) msg);
            yajl_free_error(h, msg);

        } else {
            ocdz_instr_fail(&ctx, "invalid JSON near byte %zu", at);
        }
    }

    yajl_free(h);

    if (st != yajl_status_ok || ctx.failed) {
        free(ctx.block);
        return -1;
    }

    memcpy(set->text, ctx.set.text, sizeof(set->text));

    ctx.block->next = set->owned;
    set->owned = ctx.block;

    return 0;
}


void
ocdz_instructions_free(ocdz_instructions_t *set)
{
    ocdz_instr_block_t  *b, *next;

    for (b = set->owned; b != NULL; b = next) {
        next = b->next;
        free(b);
    }

    /* no pointer into what was just freed may survive */
    ocdz_instructions_default(set);
}


int
ocdz_card_type_from_str(const char *s, size_t len)
{
    if (s == NULL) {
        return -1;
    }

    if (ocdz_ascii_eq(s, len, "ADSL")) {
        return OCDZ_TYPE_ADSL;
    }

    if (ocdz_ascii_eq(s, len, "4G") || ocdz_ascii_eq(s, len, "4GLTE")) {
        return OCDZ_TYPE_4G;
    }

    return -1;
}


int
ocdz_lang_from_str(const char *s, size_t len)
{
    int  i;

    if (s == NULL) {
        return -1;
    }

    for (i = 0; i < OCDZ_LANG_N; i++) {
        if (ocdz_ascii_eq(s, len, ocdz_lang_names[i])) {
            return i;
        }
    }

    return -1;
}


/*
 * Accept-Language (RFC 9110 12.5.4): "fr-DZ;q=0.8, ar, *;q=0.1".
 * A range counts by its primary subtag; "*" stands for every language
 * the header does not name; q=0 means "not this one"; between equal
 * weights the earlier range wins. Malformed ranges are skipped.
 */

ocdz_lang_e
ocdz_lang_pick(const char *accept, size_t len)
{
    int          i, lang, q, nranges, best, wild_q, wild_pos;
    int          lq[OCDZ_LANG_N], lpos[OCDZ_LANG_N], named[OCDZ_LANG_N];
    size_t       n;
    const char  *p, *end, *tag, *tag_end, *sub;

    if (accept == NULL || len == 0) {
        return OCDZ_LANG_EN;
    }

    /* a long header is cut at its last complete range within the cap */
    if (len > OCDZ_LANG_SCAN_MAX) {
        len = OCDZ_LANG_SCAN_MAX;

        while (len > 0 && accept[len] != ',') {
            len--;
        }
    }

    for (i = 0; i < OCDZ_LANG_N; i++) {
        lq[i] = -1;
        lpos[i] = 0;
        named[i] = 0;
    }

    wild_q = -1;
    wild_pos = 0;

    p = accept;
    end = accept + len;

    for (nranges = 0; p < end && nranges < OCDZ_LANG_RANGES_MAX; nranges++)
    {
        p = ocdz_lang_ows(p, end);

        tag = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' '
               && *p != '\t')
        {
            p++;
        }
        tag_end = p;

        q = 1000;
        p = ocdz_lang_ows(p, end);

        /* parameters: only q matters */
        while (p < end && *p == ';') {
            p = ocdz_lang_ows(p + 1, end);

            sub = p;
            while (p < end && *p != ',' && *p != ';') {
                p++;
            }

            n = p - sub;
            while (n > 0 && (sub[n - 1] == ' ' || sub[n - 1] == '\t')) {
                n--;
            }

            if (n >= 2 && (sub[0] == 'q' || sub[0] == 'Q') && sub[1] == '=')
            {
                if (ocdz_lang_q(sub + 2, sub + n, &q) != 0) {
                    q = -1;    /* a broken weight: skip the range */
                }
            }
        }

        while (p < end && *p != ',') {
            p++;                /* junk after the range */
            q = -1;
        }

        if (p < end) {
            p++;
        }

        if (q < 0 || tag == tag_end) {
            continue;
        }

        if (tag_end - tag == 1 && *tag == '*') {
            if (q > wild_q) {
                wild_q = q;
                wild_pos = nranges;
            }

            continue;
        }

        /* primary subtag: 1-8 letters; the rest is not checked further */
        sub = tag;
        while (sub < tag_end && *sub != '-') {
            sub++;
        }

        lang = ocdz_lang_from_str(tag, sub - tag);
        if (lang < 0) {
            continue;
        }

        named[lang] = 1;

        if (q > lq[lang]) {
            lq[lang] = q;
            lpos[lang] = nranges;
        }
    }

    for (i = 0; i < OCDZ_LANG_N; i++) {
        if (!named[i] && wild_q >= 0) {
            lq[i] = wild_q;
            lpos[i] = wild_pos;
        }
    }

    best = -1;

    for (i = 0; i < OCDZ_LANG_N; i++) {
        if (lq[i] <= 0) {
            continue;
        }

        if (best < 0 || lq[i] > lq[best]
            || (lq[i] == lq[best] && lpos[i] < lpos[best]))
        {
            best = i;
        }
    }

    return best < 0 ? OCDZ_LANG_EN : (ocdz_lang_e) best;
}


const char *
ocdz_lang_str(ocdz_lang_e lang)
{
    if ((unsigned) lang >= OCDZ_LANG_N) {
        return "en";
    }

    return ocdz_lang_names[lang];
}


static int
ocdz_ascii_eq(const char *a, size_t alen, const char *b)
{
    size_t  i;
    char    c;

    if (alen != strlen(b)) {
        return 0;
    }

    for (i = 0; i < alen; i++) {
        c = a[i];

        if (c >= 'A' && c <= 'Z') {
            c = c - 'A' + 'a';
        }

        if (c != ((b[i] >= 'A' && b[i] <= 'Z') ? b[i] - 'A' + 'a' : b[i])) {
            return 0;
        }
    }

    return 1;
}


/* qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ) */

static int
ocdz_lang_q(const char *p, const char *end, int *q)
{
    int  v, scale;

    if (p == end || (*p != '0' && *p != '1')) {
        return -1;
    }

    v = (*p++ - '0') * 1000;

    if (p == end) {
        *q = v;
        return 0;
    }

    if (*p++ != '.') {
        return -1;
    }

    for (scale = 100; p < end; scale /= 10) {
        if (scale == 0 || *p < '0' || *p > '9') {
            return -1;
        }

        v += (*p++ - '0') * scale;
    }

    if (v > 1000) {
        return -1;
    }

    *q = v;

    return 0;
}


static const char *
ocdz_lang_ows(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p;
}


/* Records the first failure, with the path it happened at. */

static int
ocdz_instr_fail(ocdz_instr_ctx_t *ctx, const char *fmt, ...)
{
    va_list  args;

    if (ctx->failed) {
        return 0;
    }

    ctx->failed = 1;

    if (ctx->err != NULL && ctx->errlen > 0) {
        va_start(args, fmt);
        vsnprintf(ctx->err, ctx->errlen, fmt, args);
        va_end(args);
    }

    return 0;
}


/* "ADSL.fr.steps[3]" for where the parser is now; "(top level)" at 1. */

static void
ocdz_instr_path(ocdz_instr_ctx_t *ctx, char *buf, size_t size)
{
    int  n;

    if (ctx->depth == 0) {
        snprintf(buf, size, "(file)");
        return;
    }

    if (ctx->depth == 1 && ctx->type < 0) {
        snprintf(buf, size, "(top level)");
        return;
    }

    n = snprintf(buf, size, "%s", ctx->type_name);

    if (ctx->depth >= 2 && ctx->lang >= 0 && n > 0 && (size_t) n < size) {
        n += snprintf(buf + n, size - n, ".%s", ocdz_lang_names[ctx->lang]);
    }

    if (ctx->depth >= 3 && ctx->field != OCDZ_INSTR_F_NONE && n > 0
        && (size_t) n < size)
    {
        n += snprintf(buf + n, size - n, ".%s",
                      ocdz_field_names[ctx->field]);
    }

    if (ctx->depth == 4 && n > 0 && (size_t) n < size) {
        snprintf(buf + n, size - n, "[%zu]",
                 ctx->set.text[ctx->type][ctx->lang].nsteps);
    }
}


/* A key from the file, shown safely: printable ASCII, 24 bytes at most. */

static void
ocdz_instr_quote(char *buf, size_t size, const unsigned char *s, size_t len)
{
    size_t  i, n;

    n = 0;

    for (i = 0; i < len && i < 24 && n + 2 < size; i++) {
        buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"') ? s[i] : '?';
    }

    if (len > 24 && n + 4 < size) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }

    buf[n] = '\0';
}


static int
ocdz_instr_wrong(ocdz_instr_ctx_t *ctx, const char *what)
{
    char  path[OCDZ_INSTR_PATH_MAX];

    ocdz_instr_path(ctx, path, sizeof(path));

    return ocdz_instr_fail(ctx, "%s: %s", path, what);
}


/* What the current position expects, for "wrong type" messages. */

static const char *
ocdz_instr_expected(ocdz_instr_ctx_t *ctx)
{
    if (ctx->depth <= 2) {
        return "not an object";
    }

    if (ctx->depth == 3 && ctx->field == OCDZ_INSTR_F_STEPS) {
        return "not an array of strings";
    }

    return "not a string";
}


static int
ocdz_instr_null(void *data)
{
    ocdz_instr_ctx_t  *ctx = data;

    return ocdz_instr_wrong(ctx, ocdz_instr_expected(ctx));
}


static int
ocdz_instr_boolean(void *data, int val)
{
    return ocdz_instr_null(data);
}


static int
ocdz_instr_number(void *data, const char *s, size_t len)
{
    return ocdz_instr_null(data);
}


static int
ocdz_instr_string(void *data, const unsigned char *s, size_t len)
{
    char                *dst;
    size_t               i;
    ocdz_instruction_t  *in;
    ocdz_instr_ctx_t    *ctx = data;

    if (!(ctx->depth == 4
          || (ctx->depth == 3 && ctx->field != OCDZ_INSTR_F_STEPS)))
    {
        return ocdz_instr_wrong(ctx, ocdz_instr_expected(ctx));
    }

    in = &ctx->set.text[ctx->type][ctx->lang];

    if (ctx->depth == 4 && in->nsteps == OCDZ_INSTR_STEPS_MAX) {
        return ocdz_instr_wrong(ctx, "too many steps");
    }

    if (len == 0) {
        return ocdz_instr_wrong(ctx, "empty string");
    }

    if (len > OCDZ_INSTR_TEXT_MAX) {
        return ocdz_instr_wrong(ctx, "string too long");
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f) {
            return ocdz_instr_wrong(ctx, "control character in string");
        }
    }

    if (len + 1 > ctx->block->size - ctx->block->used) {
        /* cannot happen (see ocdz_instructions_load), but never overrun */
        return ocdz_instr_wrong(ctx, "out of memory");
    }

    dst = ctx->block->data + ctx->block->used;
    memcpy(dst, s, len);
    dst[len] = '\0';
    ctx->block->used += len + 1;

    switch (ctx->depth == 4 ? OCDZ_INSTR_F_STEPS : ctx->field) {

    case OCDZ_INSTR_F_TITLE:
        in->title = dst;
        break;

    case OCDZ_INSTR_F_SUPPORT:
        in->support = dst;
        break;

    default:
        in->steps[in->nsteps++] = dst;
        break;
    }

    return 1;
}


static int
ocdz_instr_start_map(void *data)
{
    ocdz_instr_ctx_t  *ctx = data;

    if (ctx->depth >= 3) {
        return ocdz_instr_wrong(ctx, ocdz_instr_expected(ctx));
    }

    ctx->depth++;

    if (ctx->depth == 1) {
        ctx->type = -1;
        ctx->seen_types = 0;

    } else if (ctx->depth == 2) {
        ctx->lang = -1;
        ctx->seen_langs = 0;

    } else {
        ctx->field = OCDZ_INSTR_F_NONE;
        ctx->seen_fields = 0;
    }

    return 1;
}


static int
ocdz_instr_map_key(void *data, const unsigned char *key, size_t len)
{
    int                i;
    char               path[OCDZ_INSTR_PATH_MAX], shown[32];
    ocdz_instr_ctx_t  *ctx = data;

    ocdz_instr_quote(shown, sizeof(shown), key, len);

    if (ctx->depth == 1) {
        ctx->type = -1;

        for (i = 0; i < OCDZ_TYPE_N; i++) {
            if (len == strlen(ocdz_type_names[i])
                && memcmp(key, ocdz_type_names[i], len) == 0)
            {
                ctx->type = i;
            }
        }

        if (ctx->type < 0) {
            return ocdz_instr_fail(ctx, "\"%s\": unknown card type "
                                   "(expected \"ADSL\" or \"4G\")", shown);
        }

        if (ctx->seen_types & (1u << ctx->type)) {
            return ocdz_instr_fail(ctx, "%s: given twice", shown);
        }

        ctx->seen_types |= 1u << ctx->type;
        snprintf(ctx->type_name, sizeof(ctx->type_name), "%s",
                 ocdz_type_names[ctx->type]);

        return 1;
    }

    /* the path of the object the key is in */
    ctx->lang = ctx->depth == 2 ? -1 : ctx->lang;
    ctx->field = OCDZ_INSTR_F_NONE;
    ocdz_instr_path(ctx, path, sizeof(path));

    if (ctx->depth == 2) {
        for (i = 0; i < OCDZ_LANG_N; i++) {
            if (len == 2 && memcmp(key, ocdz_lang_names[i], 2) == 0) {
                ctx->lang = i;
            }
        }

        if (ctx->lang < 0) {
            return ocdz_instr_fail(ctx, "%s: \"%s\": unknown language "
                                   "(expected \"en\", \"fr\" or \"ar\")",
                                   path, shown);
        }

        if (ctx->seen_langs & (1u << ctx->lang)) {
            return ocdz_instr_fail(ctx, "%s.%s: given twice", path, shown);
        }

        ctx->seen_langs |= 1u << ctx->lang;

        return 1;
    }

    for (i = OCDZ_INSTR_F_TITLE; i <= OCDZ_INSTR_F_SUPPORT; i++) {
        if (len == strlen(ocdz_field_names[i])
            && memcmp(key, ocdz_field_names[i], len) == 0)
        {
            ctx->field = i;
        }
    }

    if (ctx->field == OCDZ_INSTR_F_NONE) {
        return ocdz_instr_fail(ctx, "%s: \"%s\": unknown key (expected "
                               "\"title\", \"steps\" or \"support\")",
                               path, shown);
    }

    if (ctx->seen_fields & (1u << ctx->field)) {
        return ocdz_instr_fail(ctx, "%s.%s: given twice", path, shown);
    }

    ctx->seen_fields |= 1u << ctx->field;

    return 1;
}


static int
ocdz_instr_end_map(void *data)
{
    ocdz_instr_ctx_t  *ctx = data;

    ctx->depth--;

    /* the parent's key names the position again */
    if (ctx->depth == 2) {
        ctx->field = OCDZ_INSTR_F_NONE;
    }

    return 1;
}


static int
ocdz_instr_start_array(void *data)
{
    ocdz_instr_ctx_t  *ctx = data;

    if (ctx->depth != 3 || ctx->field != OCDZ_INSTR_F_STEPS) {
        return ocdz_instr_wrong(ctx, ocdz_instr_expected(ctx));
    }

    /* the file's steps replace the built-in ones, all of them */
    ctx->set.text[ctx->type][ctx->lang].nsteps = 0;
    ctx->depth++;

    return 1;
}


static int
ocdz_instr_end_array(void *data)
{
    ocdz_instr_ctx_t  *ctx = data;

    ctx->depth--;

    if (ctx->set.text[ctx->type][ctx->lang].nsteps == 0) {
        return ocdz_instr_wrong(ctx, "no steps");
    }

    return 1;
}
