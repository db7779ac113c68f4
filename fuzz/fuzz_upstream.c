/*
 * libFuzzer target: ocdz_upstream_parse() on arbitrary bytes, then the
 * invariants callers rely on.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_upstream.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)


static void
check_str(const char *s, size_t size)
{
    check(memchr(s, '\0', size) != NULL);
}


static int
all_zero(const void *p, size_t n)
{
    const unsigned char  *c = p;

    while (n--) {
        if (*c++ != 0) {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                     rc;
    char                    err[128];
    size_t                  i;
    ocdz_upstream_reply_t   r;

    memset(err, 'X', sizeof(err));

    rc = ocdz_upstream_parse(data, size, &r, err, sizeof(err));

    check(rc >= OCDZ_UP_OK && rc <= OCDZ_UP_ERR_SHAPE);
    check_str(err, sizeof(err));

    /* reasons are ours: short ASCII, never bytes of the body */
    for (i = 0; err[i]; i++) {
        check(err[i] >= 0x20 && err[i] < 0x7f);
    }

    if (rc != OCDZ_UP_OK) {
        check(err[0] != '\0');
        check(all_zero(r.card_code, sizeof(r.card_code)));
        check(r.card_code_len == 0 && !r.has_card_code);
        check(r.success == -1 && r.topup_amount == -1);
        return 0;
    }

    check(err[0] == '\0');
    check(size <= OCDZ_UPSTREAM_BODY_MAX);

    check_str(r.error_code, sizeof(r.error_code));
    check_str(r.error_message, sizeof(r.error_message));
    check_str(r.id, sizeof(r.id));
    check_str(r.ref, sizeof(r.ref));
    check_str(r.status_str, sizeof(r.status_str));
    check_str(r.type, sizeof(r.type));
    check_str(r.number, sizeof(r.number));
    check_str(r.card_code, sizeof(r.card_code));
    check_str(r.num_trans, sizeof(r.num_trans));
    check_str(r.date_traitement, sizeof(r.date_traitement));
    check_str(r.created_at, sizeof(r.created_at));
    check_str(r.refund_message, sizeof(r.refund_message));

    check(r.card_code_len == strlen(r.card_code));
    check(r.has_card_code == (r.card_code_len > 0));
    check(r.success >= -1 && r.success <= 1);
    check(r.has_data == 0 || r.has_data == 1);
    check(r.has_error == 0 || r.has_error == 1);
    check(r.topup_amount >= -1);
    check(r.status_code >= 0 && r.status_code <= 999);
    check(r.status == (r.status_str[0]
                       ? ocdz_status_from_str(r.status_str,
                                              strlen(r.status_str))
                       : OCDZ_ST_NONE));
    check(ocdz_status_str(r.status) != NULL);

    (void) ocdz_topup_id_valid(r.id, strlen(r.id));

    ocdz_upstream_reply_wipe(&r);
    check(all_zero(&r, sizeof(r)));

    return 0;
}
