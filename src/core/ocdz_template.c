/*
 * Message templates: the parser (two passes over the text, the first
 * checks and counts, the second fills one block), the renderer, and the
 * built-in texts in English, French and Arabic.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ocdz_template.h"


#define OCDZ_BIT(v)         (1u << (v))

#define OCDZ_VARS_CARD                                                       \
    (OCDZ_BIT(OCDZ_VAR_TYPE) | OCDZ_BIT(OCDZ_VAR_NUMBER)                     \
     | OCDZ_BIT(OCDZ_VAR_VALUE) | OCDZ_BIT(OCDZ_VAR_CARD_CODE)               \
     | OCDZ_BIT(OCDZ_VAR_NUM_TRANS) | OCDZ_BIT(OCDZ_VAR_DATE)                \
     | OCDZ_BIT(OCDZ_VAR_TOPUP_ID) | OCDZ_BIT(OCDZ_VAR_SHOP)                 \
     | OCDZ_BIT(OCDZ_VAR_NOTICE) | OCDZ_BIT(OCDZ_VAR_INSTR_TITLE)            \
     | OCDZ_BIT(OCDZ_VAR_INSTR_STEPS) | OCDZ_BIT(OCDZ_VAR_SUPPORT))

#define OCDZ_VARS_GATEWAY                                                    \
    (OCDZ_BIT(OCDZ_VAR_TO) | OCDZ_BIT(OCDZ_VAR_MESSAGE)                      \
     | OCDZ_BIT(OCDZ_VAR_SENDER) | OCDZ_BIT(OCDZ_VAR_IDEMPOTENCY_KEY)        \
     | OCDZ_BIT(OCDZ_VAR_UNICODE) | OCDZ_BIT(OCDZ_VAR_TOPUP_ID))

#define OCDZ_LITERAL        OCDZ_VAR_N


typedef struct {
    uint32_t                 var;      /* OCDZ_LITERAL: text[off..len) */
    uint32_t                 off;
    uint32_t                 len;
} ocdz_tpl_seg_t;


struct ocdz_tpl_s {
    ocdz_tpl_kind_e          kind;
    uint32_t                 uses;     /* bit per ocdz_var_e */
    size_t                   nsegs;
    ocdz_tpl_seg_t          *segs;
    unsigned char           *text;
};


typedef struct {
    const char              *name;
    ocdz_esc_e               esc;
    uint32_t                 allowed;
    uint32_t                 required;
    unsigned                 trim:1;      /* trailing line breaks dropped */
    unsigned                 one_line:1;
    unsigned                 json:1;
    unsigned                 form:1;
} ocdz_tpl_kind_t;


/* One pass over a template's text; tpl is NULL on the counting pass. */
typedef struct {
    const ocdz_tpl_kind_t   *kind;
    const unsigned char     *p;
    const unsigned char     *end;
    unsigned                 line;
    unsigned                 col;
    ocdz_tpl_t              *tpl;
    size_t                   nsegs;
    size_t                   text_len;
    int                      in_literal;
    uint32_t                 uses;
    char                    *err;
    size_t                   errlen;
} ocdz_tpl_scan_t;


/* The words of the built-in texts in one language. */
typedef struct {
    const char              *tag;
    const char              *dir;
    const char              *colon;
    const char              *subject;
    const char              *heading;
    const char              *line;
    const char              *value;
    const char              *currency;
    const char              *code;
    const char              *trans;
    const char              *date;
    const char              *order;
    const char              *sms;
} ocdz_tpl_lang_t;


static int ocdz_tpl_scan(ocdz_tpl_scan_t *s);
static int ocdz_tpl_placeholder(ocdz_tpl_scan_t *s);
static void ocdz_tpl_literal(ocdz_tpl_scan_t *s, const unsigned char *p,
    size_t n);
static int ocdz_tpl_fail(ocdz_tpl_scan_t *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void ocdz_tpl_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int ocdz_tpl_check_json(const ocdz_alloc_t *alloc,
    const ocdz_tpl_t *tpl, char *err, size_t errlen);
static int ocdz_tpl_check_value(const ocdz_tpl_vars_t *vars, ocdz_var_e var,
    char *err, size_t errlen);
static void ocdz_tpl_put_value(ocdz_buf_t *out, ocdz_esc_e esc,
    const unsigned char *s, size_t n, int multiline);
static void ocdz_tpl_put_steps(ocdz_buf_t *out, ocdz_esc_e esc,
    const ocdz_tpl_vars_t *vars);
static void ocdz_tpl_builtin_text(ocdz_buf_t *out, const ocdz_tpl_lang_t *l);
static void ocdz_tpl_builtin_html(ocdz_buf_t *out, const ocdz_tpl_lang_t *l);
static void ocdz_tpl_builtin_row(ocdz_buf_t *out, const char *label,
    const char *value, const char *suffix, const char *attrs);


static const char  *ocdz_var_names[OCDZ_VAR_N] = {
    "type", "number", "value", "card_code", "num_trans", "date",
    "topup_id", "shop", "notice", "instructions_title",
    "instructions_steps", "support", "to", "message", "sender",
    "idempotency_key", "unicode"
};


static const ocdz_tpl_kind_t  ocdz_tpl_kinds[OCDZ_TPL_KIND_N] = {
    { "mail subject", OCDZ_ESC_TEXT,
      OCDZ_VARS_CARD & ~(OCDZ_BIT(OCDZ_VAR_CARD_CODE)
                         | OCDZ_BIT(OCDZ_VAR_INSTR_STEPS)),
      0, 1, 1, 0, 0 },
    { "mail text", OCDZ_ESC_TEXT, OCDZ_VARS_CARD,
      OCDZ_BIT(OCDZ_VAR_CARD_CODE), 0, 0, 0, 0 },
    { "mail HTML", OCDZ_ESC_HTML, OCDZ_VARS_CARD,
      OCDZ_BIT(OCDZ_VAR_CARD_CODE), 0, 0, 0, 0 },
    { "SMS text", OCDZ_ESC_TEXT, OCDZ_VARS_CARD,
      OCDZ_BIT(OCDZ_VAR_CARD_CODE), 1, 0, 0, 0 },
    { "SMS body (form)", OCDZ_ESC_FORM, OCDZ_VARS_GATEWAY,
      OCDZ_BIT(OCDZ_VAR_TO) | OCDZ_BIT(OCDZ_VAR_MESSAGE), 1, 1, 0, 1 },
    { "SMS body (JSON)", OCDZ_ESC_JSON, OCDZ_VARS_GATEWAY,
      OCDZ_BIT(OCDZ_VAR_TO) | OCDZ_BIT(OCDZ_VAR_MESSAGE), 1, 0, 1, 0 }
};


static const char  *ocdz_notices[OCDZ_LANG_N] = {
    "Keep this code secret: anyone who has it can use the credit. "
    "We will never ask you for it.",

    "Gardez ce code secret : toute personne qui le conna\xc3\xaet peut "
    "utiliser le cr\xc3\xa9" "dit. Nous ne vous le demanderons jamais.",

    /* احتفظ بهذا الرمز سرا: يمكن لأي شخص يعرفه استخدام الرصيد.
     * لن نطلبه منك أبدا. */
    "\xd8\xa7\xd8\xad\xd8\xaa\xd9\x81\xd8\xb8 "
    "\xd8\xa8\xd9\x87\xd8\xb0\xd8\xa7 "
    "\xd8\xa7\xd9\x84\xd8\xb1\xd9\x85\xd8\xb2 "
    "\xd8\xb3\xd8\xb1\xd8\xa7: "
    "\xd9\x8a\xd9\x85\xd9\x83\xd9\x86 "
    "\xd9\x84\xd8\xa3\xd9\x8a "
    "\xd8\xb4\xd8\xae\xd8\xb5 "
    "\xd9\x8a\xd8\xb9\xd8\xb1\xd9\x81\xd9\x87 "
    "\xd8\xa7\xd8\xb3\xd8\xaa\xd8\xae\xd8\xaf\xd8\xa7\xd9\x85 "
    "\xd8\xa7\xd9\x84\xd8\xb1\xd8\xb5\xd9\x8a\xd8\xaf. "
    "\xd9\x84\xd9\x86 "
    "\xd9\x86\xd8\xb7\xd9\x84\xd8\xa8\xd9\x87 "
    "\xd9\x85\xd9\x86\xd9\x83 "
    "\xd8\xa3\xd8\xa8\xd8\xaf\xd8\xa7."
};


static const ocdz_tpl_lang_t  ocdz_tpl_langs[OCDZ_LANG_N] = {
    {
        "en", "ltr", ": ",
        "Your {type} recharge card ({value} DA)",
        "Your {type} recharge card",
        "Line", "Value", "DA", "Card code", "Transaction number", "Date",
        "Order",
        "Your {type} card: {card_code} Trans: {num_trans}. Dial *600#"
    },
    {
        "fr", "ltr", " : ",
        "Votre carte de recharge {type} ({value} DA)",
        "Votre carte de recharge {type}",
        "Ligne", "Valeur", "DA", "Code de la carte",
        "Num\xc3\xa9ro de transaction", "Date", "Commande",
        "Votre carte {type} : {card_code} Trans : {num_trans}. "
        "Composez *600#"
    },
    {
        "ar", "rtl", ": ",
        /* بطاقة تعبئة {type} الخاصة بك ({value} دج) */
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 "
        "\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9 {type} "
        "\xd8\xa7\xd9\x84\xd8\xae\xd8\xa7\xd8\xb5\xd8\xa9 \xd8\xa8\xd9\x83 "
        "({value} \xd8\xaf\xd8\xac)",
        /* بطاقة تعبئة {type} الخاصة بك */
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 "
        "\xd8\xaa\xd8\xb9\xd8\xa8\xd8\xa6\xd8\xa9 {type} "
        "\xd8\xa7\xd9\x84\xd8\xae\xd8\xa7\xd8\xb5\xd8\xa9 \xd8\xa8\xd9\x83",
        /* الخط */
        "\xd8\xa7\xd9\x84\xd8\xae\xd8\xb7",
        /* القيمة */
        "\xd8\xa7\xd9\x84\xd9\x82\xd9\x8a\xd9\x85\xd8\xa9",
        /* دج */
        "\xd8\xaf\xd8\xac",
        /* رمز البطاقة */
        "\xd8\xb1\xd9\x85\xd8\xb2 "
        "\xd8\xa7\xd9\x84\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9",
        /* رقم العملية */
        "\xd8\xb1\xd9\x82\xd9\x85 "
        "\xd8\xa7\xd9\x84\xd8\xb9\xd9\x85\xd9\x84\xd9\x8a\xd8\xa9",
        /* التاريخ */
        "\xd8\xa7\xd9\x84\xd8\xaa\xd8\xa7\xd8\xb1\xd9\x8a\xd8\xae",
        /* الطلب */
        "\xd8\xa7\xd9\x84\xd8\xb7\xd9\x84\xd8\xa8",
        /* بطاقة {type}: {card_code} رقم العملية: {num_trans}. اطلب *600# */
        "\xd8\xa8\xd8\xb7\xd8\xa7\xd9\x82\xd8\xa9 {type}: {card_code} "
        "\xd8\xb1\xd9\x82\xd9\x85 "
        "\xd8\xa7\xd9\x84\xd8\xb9\xd9\x85\xd9\x84\xd9\x8a\xd8\xa9: "
        "{num_trans}. \xd8\xa7\xd8\xb7\xd9\x84\xd8\xa8 *600#"
    }
};


int
ocdz_tpl_parse(const ocdz_alloc_t *alloc, ocdz_tpl_kind_e kind,
    const char *text, size_t len, ocdz_tpl_t **tpl, char *err,
    size_t errlen)
{
    int                     i, rc;
    char                    names[512];
    size_t                  n, size;
    uint32_t                missing;
    ocdz_tpl_t             *t;
    ocdz_tpl_scan_t         s;
    const ocdz_tpl_kind_t  *k;

    *tpl = NULL;

    if ((unsigned) kind >= OCDZ_TPL_KIND_N || text == NULL) {
        ocdz_tpl_err(err, errlen, "no such template kind");
        return OCDZ_MSG_ERR_INPUT;
    }

    k = &ocdz_tpl_kinds[kind];

    if (len > OCDZ_TPL_TEXT_MAX) {
        ocdz_tpl_err(err, errlen, "the %s template is longer than %d bytes",
                     k->name, OCDZ_TPL_TEXT_MAX);
        return OCDZ_MSG_ERR_TOO_LONG;
    }

    /* a byte order mark that some editors write */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        text += 3;
        len -= 3;
    }

    if (k->trim) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        {
            len--;
        }
    }

    memset(&s, 0, sizeof(s));
    s.kind = k;
    s.p = (const unsigned char *) text;
    s.end = s.p + len;
    s.err = err;
    s.errlen = errlen;

    if (ocdz_tpl_scan(&s) != 0) {
        return OCDZ_MSG_ERR_INPUT;
    }

    if (s.nsegs == 0) {
        ocdz_tpl_err(err, errlen, "the %s template is empty", k->name);
        return OCDZ_MSG_ERR_INPUT;
    }

    missing = k->required & ~s.uses;

    if (missing) {
        n = 0;
        names[0] = '\0';

        for (i = 0; i < OCDZ_VAR_N && n < sizeof(names); i++) {
            if (missing & OCDZ_BIT(i)) {
                n += snprintf(names + n, sizeof(names) - n, "%s{%s}",
                              n ? " " : "", ocdz_var_names[i]);
            }
        }

        ocdz_tpl_err(err, errlen, "the %s template has no %s", k->name,
                     names);
        return OCDZ_MSG_ERR_INPUT;
    }

    size = sizeof(ocdz_tpl_t) + s.nsegs * sizeof(ocdz_tpl_seg_t)
           + s.text_len + 1;

    t = alloc->alloc(alloc->data, size);
    if (t == NULL) {
        ocdz_tpl_err(err, errlen, "out of memory");
        return OCDZ_MSG_ERR_NOMEM;
    }

    t->kind = kind;
    t->uses = s.uses;
    t->nsegs = 0;
    t->segs = (ocdz_tpl_seg_t *) (t + 1);
    t->text = (unsigned char *) (t->segs + s.nsegs);
    t->text[s.text_len] = '\0';

    /* the second pass cannot fail: the same text, counted already */
    s.p = (const unsigned char *) text;
    s.line = 0;
    s.col = 0;
    s.tpl = t;
    s.nsegs = 0;
    s.text_len = 0;
    s.in_literal = 0;
    s.uses = 0;

    (void) ocdz_tpl_scan(&s);
    t->nsegs = s.nsegs;

    if (k->json) {
        rc = ocdz_tpl_check_json(alloc, t, err, errlen);
        if (rc != OCDZ_MSG_OK) {
            ocdz_tpl_free(alloc, t);
            return rc;
        }
    }

    *tpl = t;

    return OCDZ_MSG_OK;
}


void
ocdz_tpl_free(const ocdz_alloc_t *alloc, ocdz_tpl_t *tpl)
{
    if (tpl != NULL && alloc->free != NULL) {
        alloc->free(alloc->data, tpl);
    }
}


ocdz_tpl_kind_e
ocdz_tpl_kind(const ocdz_tpl_t *tpl)
{
    return tpl->kind;
}


int
ocdz_tpl_uses(const ocdz_tpl_t *tpl, ocdz_var_e var)
{
    return (unsigned) var < OCDZ_VAR_N && (tpl->uses & OCDZ_BIT(var));
}


int
ocdz_tpl_render(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars,
    ocdz_buf_t *out, char *err, size_t errlen)
{
    int                     i, rc;
    size_t                  j;
    ocdz_esc_e              esc;
    const ocdz_str_t       *v;
    const ocdz_tpl_seg_t   *seg;

    /* every value is checked before anything is written */
    for (i = 0; i < OCDZ_VAR_N; i++) {
        if (tpl->uses & OCDZ_BIT(i)) {
            rc = ocdz_tpl_check_value(vars, i, err, errlen);
            if (rc != OCDZ_MSG_OK) {
                return rc;
            }
        }
    }

    esc = ocdz_tpl_kinds[tpl->kind].esc;

    for (j = 0; j < tpl->nsegs; j++) {
        seg = &tpl->segs[j];

        if (seg->var == OCDZ_LITERAL) {
            ocdz_buf_add(out, tpl->text + seg->off, seg->len);
            continue;
        }

        if (seg->var == OCDZ_VAR_INSTR_STEPS) {
            ocdz_tpl_put_steps(out, esc, vars);
            continue;
        }

        v = &vars->v[seg->var];
        ocdz_tpl_put_value(out, esc, v->data, v->len,
                           seg->var == OCDZ_VAR_MESSAGE);
    }

    if (out->error == OCDZ_MSG_ERR_NOMEM) {
        ocdz_tpl_err(err, errlen, "out of memory");

    } else if (out->error != OCDZ_MSG_OK) {
        ocdz_tpl_err(err, errlen, "the rendered %s is longer than %zu bytes",
                     ocdz_tpl_kinds[tpl->kind].name, out->max);
    }

    return out->error;
}


void
ocdz_tpl_vars_init(ocdz_tpl_vars_t *vars, const ocdz_instructions_t *set,
    ocdz_card_type_e type, ocdz_lang_e lang)
{
    const char                 *s;
    const ocdz_instruction_t   *in;

    static int                  builtin_ready;
    static ocdz_instructions_t  builtin;

    if (set == NULL) {
        if (!builtin_ready) {
            ocdz_instructions_default(&builtin);
            builtin_ready = 1;
        }

        set = &builtin;
    }

    if ((unsigned) type >= OCDZ_TYPE_N) {
        type = OCDZ_TYPE_ADSL;
    }

    if ((unsigned) lang >= OCDZ_LANG_N) {
        lang = OCDZ_LANG_EN;
    }

    memset(vars, 0, sizeof(ocdz_tpl_vars_t));

    vars->lang = lang;

    s = ocdz_tpl_type_name(type);
    vars->v[OCDZ_VAR_TYPE].data = (const unsigned char *) s;
    vars->v[OCDZ_VAR_TYPE].len = strlen(s);

    s = ocdz_notices[lang];
    vars->v[OCDZ_VAR_NOTICE].data = (const unsigned char *) s;
    vars->v[OCDZ_VAR_NOTICE].len = strlen(s);

    in = &set->text[type][lang];

    vars->v[OCDZ_VAR_INSTR_TITLE].data = (const unsigned char *) in->title;
    vars->v[OCDZ_VAR_INSTR_TITLE].len = strlen(in->title);
    vars->v[OCDZ_VAR_SUPPORT].data = (const unsigned char *) in->support;
    vars->v[OCDZ_VAR_SUPPORT].len = strlen(in->support);
    vars->steps = in->steps;
    vars->nsteps = in->nsteps;
}


int
ocdz_tpl_builtin(ocdz_tpl_kind_e kind, ocdz_lang_e lang, ocdz_buf_t *out)
{
    const ocdz_tpl_lang_t  *l;

    if ((unsigned) lang >= OCDZ_LANG_N) {
        return OCDZ_MSG_ERR_INPUT;
    }

    l = &ocdz_tpl_langs[lang];

    switch (kind) {

    case OCDZ_TPL_MAIL_SUBJECT:
        ocdz_buf_add_str(out, l->subject);
        break;

    case OCDZ_TPL_MAIL_TEXT:
        ocdz_tpl_builtin_text(out, l);
        break;

    case OCDZ_TPL_MAIL_HTML:
        ocdz_tpl_builtin_html(out, l);
        break;

    case OCDZ_TPL_SMS_TEXT:
        ocdz_buf_add_str(out, l->sms);
        break;

    default:
        return OCDZ_MSG_ERR_INPUT;
    }

    return out->error;
}


const char *
ocdz_tpl_kind_name(ocdz_tpl_kind_e kind)
{
    return (unsigned) kind < OCDZ_TPL_KIND_N ? ocdz_tpl_kinds[kind].name
                                             : "unknown";
}


const char *
ocdz_tpl_var_name(ocdz_var_e var)
{
    return (unsigned) var < OCDZ_VAR_N ? ocdz_var_names[var] : "unknown";
}


const char *
ocdz_tpl_notice(ocdz_lang_e lang)
{
    return ocdz_notices[(unsigned) lang < OCDZ_LANG_N ? lang : 0];
}


const char *
ocdz_tpl_type_name(ocdz_card_type_e type)
{
    return type == OCDZ_TYPE_4G ? "4G" : "ADSL";
}


static int
ocdz_tpl_scan(ocdz_tpl_scan_t *s)
{
    size_t                  n;
    uint32_t                cp;
    unsigned char           c;
    const ocdz_tpl_kind_t  *k = s->kind;

    s->line = 1;
    s->col = 1;

    while (s->p < s->end) {
        c = *s->p;

        if (c == '\r') {
            if (s->p + 1 == s->end || s->p[1] != '\n') {
                return ocdz_tpl_fail(s, "carriage return without line feed");
            }

            s->p++;
            continue;
        }

        if (c == '\n') {
            if (k->one_line) {
                return ocdz_tpl_fail(s, "a %s is one line", k->name);
            }

            ocdz_tpl_literal(s, s->p, 1);
            s->p++;
            s->line++;
            s->col = 1;
            continue;
        }

        if (c == '\t' && !k->one_line) {
            ocdz_tpl_literal(s, s->p, 1);
            s->p++;
            s->col++;
            continue;
        }

        if (c < 0x20 || c == 0x7f) {
            return ocdz_tpl_fail(s, "control character 0x%02x", c);
        }

        if (c >= 0x80) {
            n = ocdz_utf8_next(s->p, s->end, &cp);

            if (n == 0) {
                return ocdz_tpl_fail(s, "invalid UTF-8 (byte 0x%02x)", c);
            }

            if (ocdz_is_control(cp)) {
                return ocdz_tpl_fail(s, "control character U+%04X",
                                     (unsigned) cp);
            }

            if (k->form) {
                return ocdz_tpl_fail(s, "a form body's text must be ASCII "
                                     "(percent-encode it)");
            }

            ocdz_tpl_literal(s, s->p, n);
            s->p += n;
            s->col++;
            continue;
        }

        if (c == ' ' && k->form) {
            return ocdz_tpl_fail(s, "a form body's text has no spaces "
                                 "(write + or %%20)");
        }

        if (c == '{') {
            n = s->end - s->p;

            if (n > 1 && ((s->p[1] >= 'a' && s->p[1] <= 'z')
                          || (s->p[1] >= 'A' && s->p[1] <= 'Z')))
            {
                if (ocdz_tpl_placeholder(s) != 0) {
                    return -1;
                }

                continue;
            }

            if (!k->json) {
                if (n == 1 || s->p[1] != '{') {
                    return ocdz_tpl_fail(s, "unbalanced \"{\" (write \"{{\" "
                                         "for a literal brace)");
                }

                s->p++;
            }

            ocdz_tpl_literal(s, s->p, 1);
            s->p++;
            s->col++;
            continue;
        }

        if (c == '}' && !k->json) {
            if (s->p + 1 == s->end || s->p[1] != '}') {
                return ocdz_tpl_fail(s, "unbalanced \"}\" (write \"}}\" "
                                     "for a literal brace)");
            }

            ocdz_tpl_literal(s, s->p, 1);
            s->p += 2;
            s->col++;
            continue;
        }

        ocdz_tpl_literal(s, s->p, 1);
        s->p++;
        s->col++;
    }

    return 0;
}


/* "{name}" at s->p */

static int
ocdz_tpl_placeholder(ocdz_tpl_scan_t *s)
{
    int                     i, var;
    char                    names[512];
    size_t                  n, len;
    const unsigned char    *name, *q;
    const ocdz_tpl_kind_t  *k = s->kind;

    name = s->p + 1;

    for (q = name; q < s->end; q++) {
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')
              || (*q >= '0' && *q <= '9') || *q == '_'))
        {
            break;
        }
    }

    len = q - name;

    if (len > OCDZ_TPL_NAME_MAX) {
        return ocdz_tpl_fail(s, "placeholder name longer than %d "
                             "characters", OCDZ_TPL_NAME_MAX);
    }

    if (q == s->end || *q != '}') {
        return ocdz_tpl_fail(s, "placeholder {%.*s is not closed by \"}\"%s",
                             (int) len, name,
                             k->json ? "" : " (write \"{{\" for a literal "
                                            "brace)");
    }

    var = -1;

    for (i = 0; i < OCDZ_VAR_N; i++) {
        if (strlen(ocdz_var_names[i]) == len
            && memcmp(ocdz_var_names[i], name, len) == 0)
        {
            var = i;
            break;
        }
    }

    if (var < 0 || !(k->allowed & OCDZ_BIT(var))) {
        n = 0;
        names[0] = '\0';

        for (i = 0; i < OCDZ_VAR_N && n < sizeof(names); i++) {
            if (k->allowed & OCDZ_BIT(i)) {
                n += snprintf(names + n, sizeof(names) - n, "%s{%s}",
                              n ? " " : "", ocdz_var_names[i]);
            }
        }

        return ocdz_tpl_fail(s, "%s placeholder {%.*s} (a %s knows %s)",
                             var < 0 ? "unknown" : "no", (int) len, name,
                             k->name, names);
    }

    s->uses |= OCDZ_BIT(var);

    if (s->tpl != NULL) {
        s->tpl->segs[s->nsegs].var = var;
        s->tpl->segs[s->nsegs].off = 0;
        s->tpl->segs[s->nsegs].len = 0;
    }

    s->nsegs++;
    s->in_literal = 0;
    s->col += len + 2;
    s->p = q + 1;

    return 0;
}


static void
ocdz_tpl_literal(ocdz_tpl_scan_t *s, const unsigned char *p, size_t n)
{
    ocdz_tpl_seg_t  *seg;

    if (!s->in_literal) {
        if (s->tpl != NULL) {
            seg = &s->tpl->segs[s->nsegs];
            seg->var = OCDZ_LITERAL;
            seg->off = s->text_len;
            seg->len = 0;
        }

        s->nsegs++;
        s->in_literal = 1;
    }

    if (s->tpl != NULL) {
        memcpy(s->tpl->text + s->text_len, p, n);
        s->tpl->segs[s->nsegs - 1].len += n;
    }

    s->text_len += n;
}


static int
ocdz_tpl_fail(ocdz_tpl_scan_t *s, const char *fmt, ...)
{
    int      n;
    va_list  args;

    if (s->err == NULL || s->errlen == 0) {
        return -1;
    }

    n = snprintf(s->err, s->errlen, "%s template, line %u, column %u: ",
                 s->kind->name, s->line, s->col);

    if (n > 0 && (size_t) n < s->errlen) {
        va_start(args, fmt);
        vsnprintf(s->err + n, s->errlen - n, fmt, args);
        va_end(args);
    }

    return -1;
}


static void
ocdz_tpl_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err != NULL && errlen > 0) {
        va_start(args, fmt);
        vsnprintf(err, errlen, fmt, args);
        va_end(args);
    }
}


/*
 * A JSON body rendered with values that need every escape must parse:
 * this catches a placeholder outside a string, and a template that is
 * not JSON at all.
 */

static int
ocdz_tpl_check_json(const ocdz_alloc_t *alloc, const ocdz_tpl_t *tpl,
    char *err, size_t errlen)
{
    int               i, rc;
    char              msg[128];
    size_t            n;
    ocdz_buf_t        out;
    yajl_handle       h;
    yajl_status       st;
    unsigned char    *yerr;
    ocdz_tpl_vars_t   vars;

    static const char  sample[] = "a\"b\\c</d>\n\x01\xd8\xa8";

    memset(&vars, 0, sizeof(vars));

    for (i = 0; i < OCDZ_VAR_N; i++) {
        vars.v[i].data = (const unsigned char *) sample;
        vars.v[i].len = sizeof(sample) - 1;
    }

    vars.v[OCDZ_VAR_UNICODE].data = (const unsigned char *) "1";
    vars.v[OCDZ_VAR_UNICODE].len = 1;

    ocdz_buf_init(&out, alloc, 0);

    rc = ocdz_tpl_render(tpl, &vars, &out, err, errlen);
    if (rc != OCDZ_MSG_OK) {
        ocdz_buf_free(&out);
        return rc;
    }

    h = yajl_alloc(NULL, NULL, NULL);
    if (h == NULL) {
        ocdz_buf_free(&out);
        ocdz_tpl_err(err, errlen, "out of memory");
        return OCDZ_MSG_ERR_NOMEM;
    }

    st = yajl_parse(h, out.data, out.len);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    rc = OCDZ_MSG_OK;

    if (st != yajl_status_ok) {
        msg[0] = '\0';
        yerr = yajl_get_error(h, 0, out.data, out.len);

        if (yerr != NULL) {
            n = strcspn((char *) yerr, "\r\n");
            snprintf(msg, sizeof(msg), ": %.*s", (int) n, (char *) yerr);
            yajl_free_error(h, yerr);
        }

        ocdz_tpl_err(err, errlen, "the %s template does not render to "
                     "valid JSON (is each placeholder inside a JSON "
                     "string?)%s", ocdz_tpl_kinds[tpl->kind].name, msg);
        rc = OCDZ_MSG_ERR_INPUT;
    }

    yajl_free(h);
    ocdz_buf_free(&out);

    return rc;
}


static int
ocdz_tpl_check_value(const ocdz_tpl_vars_t *vars, ocdz_var_e var, char *err,
    size_t errlen)
{
    size_t                i, k;
    uint32_t              cp;
    const ocdz_str_t     *v;
    const unsigned char  *p, *end;

    if (var == OCDZ_VAR_INSTR_STEPS) {
        if (vars->nsteps > 0 && vars->steps == NULL) {
            ocdz_tpl_err(err, errlen, "{%s} has no steps",
                         ocdz_var_names[var]);
            return OCDZ_MSG_ERR_INPUT;
        }

        for (i = 0; i < vars->nsteps; i++) {
            k = vars->steps[i] ? strlen(vars->steps[i]) : 0;

            if (k > OCDZ_TPL_VALUE_MAX) {
                ocdz_tpl_err(err, errlen, "{%s}: step %zu is longer than "
                             "%d bytes", ocdz_var_names[var], i + 1,
                             OCDZ_TPL_VALUE_MAX);
                return OCDZ_MSG_ERR_TOO_LONG;
            }

            if (k == 0 || !ocdz_utf8_valid((const unsigned char *)
                                           vars->steps[i], k, NULL))
            {
                ocdz_tpl_err(err, errlen, "{%s}: step %zu is empty or not "
                             "valid UTF-8", ocdz_var_names[var], i + 1);
                return OCDZ_MSG_ERR_INPUT;
            }
        }

        return OCDZ_MSG_OK;
    }

    v = &vars->v[var];

    if (v->len > OCDZ_TPL_VALUE_MAX) {
        ocdz_tpl_err(err, errlen, "{%s} is longer than %d bytes",
                     ocdz_var_names[var], OCDZ_TPL_VALUE_MAX);
        return OCDZ_MSG_ERR_TOO_LONG;
    }

    if (v->len > 0 && v->data == NULL) {
        ocdz_tpl_err(err, errlen, "{%s} has no data", ocdz_var_names[var]);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (v->len == 0
        && (var == OCDZ_VAR_CARD_CODE || var == OCDZ_VAR_TO
            || var == OCDZ_VAR_MESSAGE))
    {
        ocdz_tpl_err(err, errlen, "{%s} is empty", ocdz_var_names[var]);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (!ocdz_utf8_valid(v->data, v->len, &i)) {
        ocdz_tpl_err(err, errlen, "{%s} is not valid UTF-8 (at byte %zu)",
                     ocdz_var_names[var], i);
        return OCDZ_MSG_ERR_INPUT;
    }

    if (var != OCDZ_VAR_CARD_CODE) {
        return OCDZ_MSG_OK;
    }

    /* a code is delivered exactly as stored, or not at all */
    p = v->data;
    end = p + v->len;

    while (p < end) {
        k = ocdz_utf8_next(p, end, &cp);

        if (ocdz_is_control(cp)) {
            ocdz_tpl_err(err, errlen, "{%s} holds a control character",
                         ocdz_var_names[var]);
            return OCDZ_MSG_ERR_INPUT;
        }

        p += k;
    }

    return OCDZ_MSG_OK;
}


/* A checked value, escaped; control characters become spaces. */

static void
ocdz_tpl_put_value(ocdz_buf_t *out, ocdz_esc_e esc, const unsigned char *s,
    size_t n, int multiline)
{
    size_t                k;
    uint32_t              cp;
    const unsigned char  *p, *run, *end;

    if (n == 0) {
        return;
    }

    p = s;
    run = s;
    end = s + n;

    while (p < end) {
        k = ocdz_utf8_next(p, end, &cp);

        if (k == 0) {
            /* checked before: never here, but never loop either */
            break;
        }

        if (ocdz_is_control(cp) && !(multiline && (cp == '\n' || cp == '\t')))
        {
            ocdz_buf_add_escaped(out, esc, run, p - run);
            ocdz_buf_add_escaped(out, esc, (const unsigned char *) " ", 1);
            p += k;
            run = p;
            continue;
        }

        p += k;
    }

    ocdz_buf_add_escaped(out, esc, run, p - run);
}


static void
ocdz_tpl_put_steps(ocdz_buf_t *out, ocdz_esc_e esc,
    const ocdz_tpl_vars_t *vars)
{
    int     n;
    char    num[32];
    size_t  i;

    for (i = 0; i < vars->nsteps; i++) {
        if (esc == OCDZ_ESC_HTML) {
            if (i > 0) {
                ocdz_buf_add_char(out, '\n');
            }

            ocdz_buf_add_str(out, "<li>");

        } else {
            n = snprintf(num, sizeof(num), "%s%zu. ", i > 0 ? "\n" : "",
                         i + 1);
            ocdz_buf_add_escaped(out, esc, (const unsigned char *) num, n);
        }

        ocdz_tpl_put_value(out, esc, (const unsigned char *) vars->steps[i],
                           strlen(vars->steps[i]), 0);

        if (esc == OCDZ_ESC_HTML) {
            ocdz_buf_add_str(out, "</li>");
        }
    }
}


static void
ocdz_tpl_builtin_text(ocdz_buf_t *out, const ocdz_tpl_lang_t *l)
{
    ocdz_buf_add_str(out, l->heading);
    ocdz_buf_add_str(out, "\n\n");

    ocdz_buf_add_str(out, l->line);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{number}\n");

    ocdz_buf_add_str(out, l->value);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{value} ");
    ocdz_buf_add_str(out, l->currency);
    ocdz_buf_add_str(out, "\n");

    ocdz_buf_add_str(out, l->code);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{card_code}\n");

    ocdz_buf_add_str(out, l->trans);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{num_trans}\n");

    ocdz_buf_add_str(out, l->date);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{date}\n");

    ocdz_buf_add_str(out, l->order);
    ocdz_buf_add_str(out, l->colon);
    ocdz_buf_add_str(out, "{topup_id}\n\n"
                          "{notice}\n\n"
                          "{instructions_title}\n"
                          "{instructions_steps}\n\n"
                          "{support}\n");
}


/*
 * Inline styles only: many mail clients drop <style>, and CSS braces
 * would need doubling in a template. Codes and numbers are laid out
 * left to right inside the Arabic right-to-left page.
 */

static void
ocdz_tpl_builtin_html(ocdz_buf_t *out, const ocdz_tpl_lang_t *l)
{
    ocdz_buf_add_str(out, "<!DOCTYPE html>\n<html lang=\"");
    ocdz_buf_add_str(out, l->tag);
    ocdz_buf_add_str(out, "\" dir=\"");
    ocdz_buf_add_str(out, l->dir);
    ocdz_buf_add_str(out, "\">\n<head>\n<meta charset=\"utf-8\">\n"
                     "<meta name=\"viewport\" content=\"width=device-width, "
                     "initial-scale=1\">\n<title>");
    ocdz_buf_add_str(out, l->heading);
    ocdz_buf_add_str(out, "</title>\n</head>\n"
                     "<body style=\"margin: 0; padding: 16px; "
                     "font-family: Arial, Helvetica, sans-serif; "
                     "font-size: 15px; line-height: 1.5; "
                     "color: #222222;\">\n"
                     "<h1 style=\"font-size: 20px; margin: 0 0 16px 0;\">");
    ocdz_buf_add_str(out, l->heading);
    ocdz_buf_add_str(out, "</h1>\n<table role=\"presentation\" "
                     "cellpadding=\"6\" cellspacing=\"0\" "
                     "style=\"border-collapse: collapse;\">\n");

    ocdz_tpl_builtin_row(out, l->line, "{number}", NULL, " dir=\"ltr\"");
    ocdz_tpl_builtin_row(out, l->value, "{value} ", l->currency, "");
    ocdz_tpl_builtin_row(out, l->code, "{card_code}", NULL,
                         " dir=\"ltr\" style=\"font-family: 'Courier New', "
                         "Courier, monospace; font-size: 22px; "
                         "font-weight: bold; letter-spacing: 2px;\"");
    ocdz_tpl_builtin_row(out, l->trans, "{num_trans}", NULL, " dir=\"ltr\"");
    ocdz_tpl_builtin_row(out, l->date, "{date}", NULL, " dir=\"ltr\"");
    ocdz_tpl_builtin_row(out, l->order, "{topup_id}", NULL, " dir=\"ltr\"");

    ocdz_buf_add_str(out, "</table>\n"
                     "<p style=\"margin: 16px 0; padding: 12px; "
                     "border: 1px solid #cc0000; color: #cc0000;\">"
                     "<strong>{notice}</strong></p>\n"
                     "<h2 style=\"font-size: 17px; margin: 16px 0 8px 0;\">"
                     "{instructions_title}</h2>\n"
                     "<ol>\n{instructions_steps}\n</ol>\n"
                     "<p>{support}</p>\n"
                     "</body>\n</html>\n");
}


static void
ocdz_tpl_builtin_row(ocdz_buf_t *out, const char *label, const char *value,
    const char *suffix, const char *attrs)
{
    ocdz_buf_add_str(out, "<tr><td>");
    ocdz_buf_add_str(out, label);
    ocdz_buf_add_str(out, "</td><td");
    ocdz_buf_add_str(out, attrs);
    ocdz_buf_add_str(out, ">");
    ocdz_buf_add_str(out, value);

    if (suffix != NULL) {
        ocdz_buf_add_str(out, suffix);
    }

    ocdz_buf_add_str(out, "</td></tr>\n");
}
