/*
 * libFuzzer target: ocdz_sms_count() against a reference written
 * another way (UTF-8 by the RFC 3629 byte table, the GSM alphabet as
 * UTF-8 text, parts cut from the actual septet or UTF-16 stream), then
 * ocdz_sms_build() with the input as card code, and
 * ocdz_sms_reply_id() on the input as a gateway reply.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_sms.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)

#define ESC          0x1b
#define HIGH         0xd800


/* GSM 03.38: the default alphabet and the extension table, as UTF-8 */
static const char  gsm_basic[] =
    "@\xc2\xa3$\xc2\xa5\xc3\xa8\xc3\xa9\xc3\xb9\xc3\xac\xc3\xb2\xc3\x87\n"
    "\xc3\x98\xc3\xb8\r\xc3\x85\xc3\xa5\xce\x94_\xce\xa6\xce\x93\xce\x9b"
    "\xce\xa9\xce\xa0\xce\xa8\xce\xa3\xce\x98\xce\x9e\xc3\x86\xc3\xa6"
    "\xc3\x9f\xc3\x89 !\"#\xc2\xa4%&'()*+,-./0123456789:;<=>?\xc2\xa1"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ\xc3\x84\xc3\x96\xc3\x91\xc3\x9c\xc2\xa7"
    "\xc2\xbf" "abcdefghijklmnopqrstuvwxyz\xc3\xa4\xc3\xb6\xc3\xb1\xc3\xbc"
    "\xc3\xa0";
static const char  gsm_ext[] = "\f^{}\\[~]|\xe2\x82\xac";


/* RFC 3629 section 4: the well-formed sequences, byte by byte */

static size_t
ref_utf8(const uint8_t *p, size_t n)
{
    uint8_t  lo, hi;
    size_t   k, i;

    if (p[0] <= 0x7f) {
        return 1;
    }

    lo = 0x80;
    hi = 0xbf;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        k = 2;

    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        k = 3;
        lo = p[0] == 0xe0 ? 0xa0 : 0x80;
        hi = p[0] == 0xed ? 0x9f : 0xbf;

    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        k = 4;
        lo = p[0] == 0xf0 ? 0x90 : 0x80;
        hi = p[0] == 0xf4 ? 0x8f : 0xbf;

    } else {
        return 0;
    }

    if (n < k || p[1] < lo || p[1] > hi) {
        return 0;
    }

    for (i = 2; i < k; i++) {
        if (p[i] < 0x80 || p[i] > 0xbf) {
            return 0;
        }
    }

    return k;
}


/* 1 if the character c[0..k) is one of the characters of set */

static int
in_set(const char *set, const uint8_t *c, size_t k)
{
    size_t       m;
    const char  *s;

    for (s = set; *s; s += m) {
        m = ref_utf8((const uint8_t *) s, strlen(s));

        if (m == k && memcmp(s, c, k) == 0) {
            return 1;
        }
    }

    return 0;
}


static size_t
ref_parts(const uint16_t *u, size_t n, size_t single, size_t per,
    uint16_t no_cut_after)
{
    size_t  i, take, parts;

    if (n <= single) {
        return 1;
    }

    for (i = 0, parts = 0; i < n; i += take, parts++) {
        take = n - i < per ? n - i : per;

        if (take == per && u[i + per - 1] == no_cut_after) {
            take--;
        }
    }

    return parts;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 rc, gsm, max;
    char                id[OCDZ_SMS_ID_MAX + 1], err[256];
    size_t              i, k, chars, ns, nu, j;
    uint16_t           *sept, *utf16;
    uint32_t            cp;
    ocdz_buf_t          out;
    ocdz_sms_count_t    c, c2;
    ocdz_tpl_vars_t     vars;

    static ocdz_tpl_t  *tpl;
    static const char  *paths[] = {
        "id", "data.id", "messages.0.message-id", "0", "a.b.c.d.e.f.g.h"
    };

    if (tpl == NULL
        && ocdz_tpl_parse(&ocdz_alloc_std, OCDZ_TPL_SMS_TEXT, "{card_code}",
                          11, &tpl, err, sizeof(err)) != OCDZ_MSG_OK)
    {
        abort();
    }

    rc = ocdz_sms_count(data, size, &c);

    /* the reference */

    sept = malloc((2 * size + 1) * sizeof(uint16_t));
    utf16 = malloc((2 * size + 1) * sizeof(uint16_t));
    check(sept != NULL && utf16 != NULL);

    gsm = 1;
    chars = 0;
    ns = 0;
    nu = 0;

    for (i = 0; i < size; i += k) {
        k = ref_utf8(data + i, size - i);
        if (k == 0) {
            break;
        }

        chars++;

        if (in_set(gsm_basic, data + i, k)) {
            sept[ns++] = 1;

        } else if (in_set(gsm_ext, data + i, k)) {
            sept[ns++] = ESC;
            sept[ns++] = 1;

        } else {
            gsm = 0;
        }

        if (k == 4) {
            utf16[nu++] = HIGH;
            utf16[nu++] = 1;

        } else {
            utf16[nu++] = 1;
        }
    }

    if (i < size) {
        check(rc == OCDZ_MSG_ERR_INPUT);
        free(sept);
        free(utf16);
        goto reply;
    }

    check(rc == OCDZ_MSG_OK);
    check(c.chars == chars);
    check(c.encoding == (gsm ? OCDZ_SMS_GSM7 : OCDZ_SMS_UCS2));

    if (gsm) {
        check(c.units == ns);
        check(c.parts == ref_parts(sept, ns, 160, 153, ESC));

    } else {
        check(c.units == nu);
        check(c.parts == ref_parts(utf16, nu, 70, 67, HIGH));
    }

    /* a part wastes one unit at most */
    if (c.parts > 1) {
        j = gsm ? 153 : 67;
        check(c.parts >= (c.units + j - 1) / j);
        check(c.parts <= (c.units + j - 2) / (j - 1));
    }

    free(sept);
    free(utf16);

    /* the input as the card code */

    max = size ? 1 + data[0] % OCDZ_SMS_PARTS_MAX : 1;
    ocdz_tpl_vars_init(&vars, NULL, OCDZ_TYPE_ADSL, OCDZ_LANG_EN);
    vars.v[OCDZ_VAR_CARD_CODE].data = data;
    vars.v[OCDZ_VAR_CARD_CODE].len = size;

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);
    rc = ocdz_sms_build(tpl, &vars, max, &out, &c2, err, sizeof(err));

    if (rc == OCDZ_MSG_OK) {
        check(out.len == size && memcmp(out.data, data, size) == 0);
        check(c2.parts <= (size_t) max && c2.parts == c.parts);

    } else if (rc == OCDZ_MSG_ERR_TOO_LONG) {
        check(out.data == NULL
              && (c2.parts > (size_t) max || size > OCDZ_TPL_VALUE_MAX));

    } else {
        /* empty, a control character, or over the value cap */
        check(rc == OCDZ_MSG_ERR_INPUT && out.data == NULL);

        for (i = 0, j = 0; i < size; i += k) {
            k = ocdz_utf8_next(data + i, data + size, &cp);
            j += ocdz_is_control(cp);
        }

        check(size == 0 || j > 0 || size > OCDZ_TPL_VALUE_MAX);
    }

    ocdz_buf_free(&out);

reply:

    rc = ocdz_sms_reply_id(data, size, paths[size % 5], id, sizeof(id), err,
                           sizeof(err));

    if (rc == OCDZ_MSG_OK) {
        k = strlen(id);
        check(k >= 1 && k <= OCDZ_SMS_ID_MAX);

        for (i = 0; i < k; i++) {
            check(id[i] > 0x20 && id[i] < 0x7f);
        }

    } else {
        check(id[0] == '\0' && err[0] != '\0');
    }

    return 0;
}
