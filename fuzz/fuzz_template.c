/*
 * libFuzzer target: ocdz_tpl_parse() on arbitrary template text of any
 * kind, then ocdz_tpl_render() with arbitrary field values.
 *
 * Input: one byte (kind, language, card type), the template, then the
 * field values, NUL-separated.
 *
 * Invariants: a refusal has a printable reason that quotes nothing but
 * ASCII; a rendering is valid UTF-8; in HTML no field brings a raw
 * < > " ' or & (the rendering has exactly as many of each as with
 * harmless values); a JSON body parses as JSON; a form body is printable
 * ASCII without spaces; a subject has no line break; rendering twice
 * gives the same bytes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "ocdz_template.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)

#define FIELDS_MAX   8


static const ocdz_var_e  card_fields[FIELDS_MAX] = {
    OCDZ_VAR_CARD_CODE, OCDZ_VAR_NUMBER, OCDZ_VAR_VALUE, OCDZ_VAR_NUM_TRANS,
    OCDZ_VAR_DATE, OCDZ_VAR_TOPUP_ID, OCDZ_VAR_SHOP, OCDZ_VAR_INSTR_TITLE
};

static const ocdz_var_e  gateway_fields[FIELDS_MAX] = {
    OCDZ_VAR_MESSAGE, OCDZ_VAR_TO, OCDZ_VAR_SENDER,
    OCDZ_VAR_IDEMPOTENCY_KEY, OCDZ_VAR_TOPUP_ID, OCDZ_VAR_MESSAGE,
    OCDZ_VAR_TO, OCDZ_VAR_SENDER
};


static size_t
count_byte(const ocdz_buf_t *b, unsigned char c)
{
    size_t  i, n;

    for (i = 0, n = 0; i < b->len; i++) {
        n += b->data[i] == c;
    }

    return n;
}


static void
render(const ocdz_tpl_t *tpl, const ocdz_tpl_vars_t *vars, ocdz_buf_t *out,
    int *rc)
{
    char  err[256];

    ocdz_buf_reset(out);
    err[0] = '\0';
    *rc = ocdz_tpl_render(tpl, vars, out, err, sizeof(err));
    check(*rc == OCDZ_MSG_OK || err[0] != '\0');
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc, rc2, i, n;
    char               err[1024];
    size_t             k, len;
    yajl_handle        h;
    ocdz_buf_t         out, out2;
    ocdz_tpl_t        *tpl;
    const uint8_t     *p, *end, *nul;
    ocdz_tpl_kind_e    kind;
    ocdz_tpl_vars_t    vars, plain;
    const ocdz_var_e  *fields;
    const char        *steps[2];

    static const char   harmless[] = "x";
    static const char  *plain_steps[2] = { "x", "x" };

    if (size < 1) {
        return 0;
    }

    kind = data[0] % OCDZ_TPL_KIND_N;
    p = data + 1;
    end = data + size;

    nul = memchr(p, '\0', end - p);
    len = nul ? (size_t) (nul - p) : (size_t) (end - p);

    err[0] = '\0';
    rc = ocdz_tpl_parse(&ocdz_alloc_std, kind, (const char *) p, len, &tpl,
                        err, sizeof(err));

    if (rc != OCDZ_MSG_OK) {
        check(rc == OCDZ_MSG_ERR_INPUT || rc == OCDZ_MSG_ERR_TOO_LONG);
        check(tpl == NULL && err[0] != '\0');

        for (k = 0; err[k]; k++) {
            check((unsigned char) err[k] >= 0x20
                  && (unsigned char) err[k] < 0x7f);
        }

        return 0;
    }

    /* the values */

    ocdz_tpl_vars_init(&vars, NULL, (data[0] / OCDZ_TPL_KIND_N) & 1,
                       (data[0] / OCDZ_TPL_KIND_N / 2) % OCDZ_LANG_N);
    plain = vars;

    fields = kind >= OCDZ_TPL_SMS_FORM ? gateway_fields : card_fields;
    p = nul ? nul + 1 : end;

    for (i = 0; i < FIELDS_MAX && p < end; i++) {
        nul = memchr(p, '\0', end - p);
        len = nul ? (size_t) (nul - p) : (size_t) (end - p);

        vars.v[fields[i]].data = p;
        vars.v[fields[i]].len = len;
        plain.v[fields[i]].data = (const unsigned char *) harmless;
        plain.v[fields[i]].len = 1;

        p = nul ? nul + 1 : end;
    }

    /* a fuzzed step, and one that needs escaping */
    if (vars.v[OCDZ_VAR_INSTR_TITLE].len > 0) {
        n = vars.v[OCDZ_VAR_INSTR_TITLE].len < 200
            ? (int) vars.v[OCDZ_VAR_INSTR_TITLE].len : 200;
        steps[0] = strndup((const char *) vars.v[OCDZ_VAR_INSTR_TITLE].data,
                           n);
        steps[1] = "<b>\"&'</b>";
        vars.steps = steps;
        vars.nsteps = strlen(steps[0]) > 0 ? 2 : 0;
        plain.steps = plain_steps;
        plain.nsteps = vars.nsteps;

    } else {
        steps[0] = NULL;
    }

    vars.v[OCDZ_VAR_UNICODE].data = (const unsigned char *) "1";
    vars.v[OCDZ_VAR_UNICODE].len = 1;
    plain.v[OCDZ_VAR_UNICODE] = vars.v[OCDZ_VAR_UNICODE];

    for (i = 0; i < OCDZ_VAR_N; i++) {
        if (plain.v[i].len == 0 && vars.v[i].len == 0
            && (i == OCDZ_VAR_CARD_CODE || i == OCDZ_VAR_TO
                || i == OCDZ_VAR_MESSAGE))
        {
            plain.v[i].data = (const unsigned char *) harmless;
            plain.v[i].len = 1;
        }
    }

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);
    ocdz_buf_init(&out2, &ocdz_alloc_std, 0);

    render(tpl, &vars, &out, &rc);

    if (rc == OCDZ_MSG_OK) {
        check(ocdz_utf8_valid(out.data, out.len, NULL) || out.len == 0);

        /* deterministic */
        render(tpl, &vars, &out2, &rc2);
        check(rc2 == OCDZ_MSG_OK && out2.len == out.len
              && (out.len == 0 || memcmp(out.data, out2.data, out.len) == 0));

        switch (kind) {

        case OCDZ_TPL_MAIL_HTML:
            render(tpl, &plain, &out2, &rc2);
            check(rc2 == OCDZ_MSG_OK);
            check(count_byte(&out, '<') == count_byte(&out2, '<'));
            check(count_byte(&out, '>') == count_byte(&out2, '>'));
            check(count_byte(&out, '"') == count_byte(&out2, '"'));
            check(count_byte(&out, '\'') == count_byte(&out2, '\''));
            check(count_byte(&out, '&') >= count_byte(&out2, '&'));
            break;

        case OCDZ_TPL_SMS_JSON:
            h = yajl_alloc(NULL, NULL, NULL);
            check(h != NULL);
            check(yajl_parse(h, out.data, out.len) == yajl_status_ok
                  && yajl_complete_parse(h) == yajl_status_ok);
            yajl_free(h);
            break;

        case OCDZ_TPL_SMS_FORM:
            for (k = 0; k < out.len; k++) {
                check(out.data[k] > 0x20 && out.data[k] < 0x7f);
            }
            break;

        case OCDZ_TPL_MAIL_SUBJECT:
            for (k = 0; k < out.len; k++) {
                check(out.data[k] >= 0x20 && out.data[k] != 0x7f);
            }
            break;

        default:
            break;
        }

    } else {
        check(rc == OCDZ_MSG_ERR_INPUT || rc == OCDZ_MSG_ERR_TOO_LONG);
    }

    ocdz_buf_free(&out);
    ocdz_buf_free(&out2);
    ocdz_tpl_free(&ocdz_alloc_std, tpl);
    free((void *) steps[0]);

    return 0;
}
