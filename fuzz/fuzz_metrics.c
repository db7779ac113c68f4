/*
 * libFuzzer target for ocdz_metrics: any bytes as a snapshot and as the
 * version strings (also looked up as an outbox channel and outcome).
 *
 * Both renderings must give the length they announce, NUL-terminated,
 * and a cut buffer must stay inside its size, NUL-terminated, and be a
 * prefix of the whole text. The Prometheus text keeps one sample or
 * comment a line whatever the version strings hold (escaped), and every
 * label value stays quoted.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_metrics.h"


#define check(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_metrics: check failed: %s (line %d)\n",    \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


typedef size_t (*render_pt)(const ocdz_metrics_t *m,
    const ocdz_metrics_build_t *b, char *buf, size_t size);


static void
lines_ok(const char *p)
{
    int          quoted;
    const char  *s;

    /* a sample line: name{labels} value, every quote closed */

    for (s = p; *s; s++) {
        if (*s == '#') {
            s = strchr(s, '\n');
            check(s != NULL);
            continue;
        }

        quoted = 0;

        for ( /* void */ ; *s != '\n'; s++) {
            check(*s != '\0');

            if (*s == '\\' && quoted) {
                s++;
                check(*s == '\\' || *s == '"' || *s == 'n');
                continue;
            }

            if (*s == '"') {
                quoted = !quoted;
            }
        }

        check(!quoted);
    }
}


static void
render(render_pt fn, const ocdz_metrics_t *m, const ocdz_metrics_build_t *b,
    size_t cut, int prom)
{
    char    *p, *q;
    size_t   n, n2;

    n = fn(m, b, NULL, 0);
    p = malloc(n + 1);
    check(p != NULL);

    n2 = fn(m, b, p, n + 1);
    check(n2 == n);
    check(strlen(p) == n);

    if (prom) {
        lines_ok(p);
    }

    cut %= n + 2;
    q = malloc(cut + 1);
    check(q != NULL);
    q[cut] = 'x';

    n2 = fn(m, b, cut ? q : NULL, cut);
    check(n2 == n);
    check(q[cut] == 'x');

    if (cut) {
        check(strlen(q) == (cut <= n ? cut - 1 : n));
        check(memcmp(q, p, strlen(q)) == 0);
    }

    free(q);
    free(p);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                  ver[64], server[64];
    size_t                n, i, j, cut;
    ocdz_metrics_t        m;
    ocdz_metrics_build_t  b;

    memset(&m, 0, sizeof(m));
    n = size < sizeof(m) ? size : sizeof(m);
    memcpy(&m, data, n);
    data += n;
    size -= n;

    /* the rest: two strings (no NUL inside), then a cut length */

    for (i = 0, j = 0; i < size && j < sizeof(ver) - 1 && data[i]; i++) {
        ver[j++] = (char) data[i];
    }
    ver[j] = '\0';

    i += (i < size);

    for (j = 0; i < size && j < sizeof(server) - 1 && data[i]; i++) {
        server[j++] = (char) data[i];
    }
    server[j] = '\0';

    cut = (i < size) ? data[size - 1] * 37u : 0;

    b.version = ver;
    b.server = server;
    b.schema_version = (unsigned) m.reveals[0];

    render(ocdz_metrics_prometheus, &m, &b, cut, 1);
    render(ocdz_metrics_json, &m, &b, cut, 0);

    check(ocdz_metrics_bucket(ocdz_metrics_reveal_bounds,
                              OCDZ_M_REVEAL_BUCKETS, m.reveal_sum_us)
          <= OCDZ_M_REVEAL_BUCKETS);
    check(ocdz_metrics_bucket(ocdz_metrics_send_bounds,
                              OCDZ_M_SEND_BUCKETS, m.send_sum_us[0])
          <= OCDZ_M_SEND_BUCKETS);

    /* the outbox's names: a table's index or -1, whatever the bytes */
    check(ocdz_metrics_channel(ver) >= -1
          && ocdz_metrics_channel(ver) < OCDZ_M_CHANNELS);
    check(ocdz_metrics_send_outcome(server) >= -1
          && ocdz_metrics_send_outcome(server) < OCDZ_M_SEND_OUTCOMES);

    return 0;
}
