/*
 * libFuzzer target: ocdz_webhook_body() with arbitrary fields, signed
 * and verified, and ocdz_webhook_verify() on an arbitrary header and
 * body.
 *
 * Input: one byte (event, times), then NUL-separated: top-up id, ref,
 * channel, transaction number, message id, error, a signature header,
 * a body.
 *
 * Invariants: a body is JSON with exactly the ten documented keys, the
 * id of ocdz_webhook_event_id(); its signature verifies at once, fails
 * with another secret, a changed body or after the window; verifying
 * arbitrary input answers one of the documented codes.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "ocdz_webhook.h"


#define check(cond)  do { if (!(cond)) abort(); } while (0)

#define SECRET      "fuzz-secret-0123456789"
#define SECRET_LEN  (sizeof(SECRET) - 1)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    i, rc;
    char                   err[256], sig[OCDZ_WH_SIGNATURE_SIZE];
    char                   id[OCDZ_WH_ID_LEN + 1], *json;
    size_t                 len[8];
    time_t                 t;
    yajl_val               doc, v;
    ocdz_buf_t             out;
    const uint8_t         *f[8], *p, *end, *nul;
    ocdz_webhook_event_t   ev;

    static const char     *keys[] = {
        "id", "type", "topup_id", "ref", "status", "channel", "num_trans",
        "message_id", "error", "time"
    };
    static const char     *id_path[] = { "id", NULL };

    if (size < 1) {
        return 0;
    }

    end = data + size;
    p = data + 1;

    for (i = 0; i < 8; i++) {
        nul = memchr(p, '\0', end - p);
        f[i] = p;
        len[i] = nul ? (size_t) (nul - p) : (size_t) (end - p);
        p = nul ? nul + 1 : end;
    }

    /* arbitrary verification */

    rc = ocdz_webhook_verify((const unsigned char *) SECRET, SECRET_LEN,
                             (const char *) f[6], len[6], f[7], len[7],
                             1761700000 + (data[0] & 0x3f), 300);
    check(rc == OCDZ_WH_OK || rc == OCDZ_WH_ERR_HEADER
          || rc == OCDZ_WH_ERR_SIGNATURE || rc == OCDZ_WH_ERR_STALE);

    /* a body */

    memset(&ev, 0, sizeof(ev));
    ev.event = data[0] % (OCDZ_WH_EVENT_N + 1);
    ev.topup_id.data = f[0];
    ev.topup_id.len = len[0];
    ev.ref.data = f[1];
    ev.ref.len = len[1];
    ev.channel.data = f[2];
    ev.channel.len = len[2];
    ev.num_trans.data = f[3];
    ev.num_trans.len = len[3];
    ev.message_id.data = f[4];
    ev.message_id.len = len[4];
    ev.error.data = f[5];
    ev.error.len = len[5];
    ev.time = (time_t) (data[0] & 0x80 ? -1 : 1761700000);

    ocdz_buf_init(&out, &ocdz_alloc_std, 0);
    err[0] = '\0';

    rc = ocdz_webhook_body(&ev, &out, err, sizeof(err));

    if (rc != OCDZ_MSG_OK) {
        check(rc == OCDZ_MSG_ERR_INPUT && out.data == NULL && err[0]);
        return 0;
    }

    json = strndup((const char *) out.data, out.len);
    check(json != NULL && strlen(json) == out.len);
    doc = yajl_tree_parse(json, err, sizeof(err));
    check(doc != NULL && YAJL_IS_OBJECT(doc) && doc->u.object.len == 10);

    for (i = 0; i < 10; i++) {
        check(strcmp(doc->u.object.keys[i], keys[i]) == 0);
    }

    check(ocdz_webhook_event_id(&ev, id, sizeof(id)) == OCDZ_MSG_OK);
    v = yajl_tree_get(doc, id_path, yajl_t_string);
    check(v != NULL && strcmp(v->u.string, id) == 0);

    yajl_tree_free(doc);
    free(json);

    /* signed, verified */

    t = 1761700000;
    check(ocdz_webhook_sign((const unsigned char *) SECRET, SECRET_LEN, t,
                            out.data, out.len, sig, sizeof(sig))
          == OCDZ_WH_OK);
    check(ocdz_webhook_verify((const unsigned char *) SECRET, SECRET_LEN, sig,
                              strlen(sig), out.data, out.len, t + 300, 300)
          == OCDZ_WH_OK);
    check(ocdz_webhook_verify((const unsigned char *) SECRET, SECRET_LEN, sig,
                              strlen(sig), out.data, out.len, t + 301, 300)
          == OCDZ_WH_ERR_STALE);
    check(ocdz_webhook_verify((const unsigned char *) SECRET "x",
                              SECRET_LEN + 1, sig, strlen(sig), out.data,
                              out.len, t, 300) == OCDZ_WH_ERR_SIGNATURE);
    check(ocdz_webhook_verify((const unsigned char *) SECRET, SECRET_LEN, sig,
                              strlen(sig), out.data, out.len - 1, t, 300)
          == OCDZ_WH_ERR_SIGNATURE);

    ocdz_buf_free(&out);

    return 0;
}
