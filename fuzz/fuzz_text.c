/*
 * libFuzzer target for ocdz_text: any bytes as UTF-8 text.
 *
 * Each answer is compared with a reference written differently: the
 * code point is decoded with shifts and masks, then judged by its value
 * (the shortest form, no surrogate, at most U+10FFFF). Sanitizing must
 * give text of the same length that keeps every valid sequence; a
 * prefix must never end inside a sequence.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_text.h"


#define check(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_text: check failed: %s (line %d)\n",       \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static size_t
ref_len(const uint8_t *p, size_t n)
{
    size_t    len, i;
    uint32_t  cp, min;

    if (p[0] < 0x80) {
        return 1;
    }

    if ((p[0] & 0xe0) == 0xc0) {
        len = 2; cp = p[0] & 0x1f; min = 0x80;

    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3; cp = p[0] & 0x0f; min = 0x800;

    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4; cp = p[0] & 0x07; min = 0x10000;

    } else {
        return 0;
    }

    if (n < len) {
        return 0;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }

        cp = (cp << 6) | (p[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }

    return len;
}


static int
ref_control(uint8_t ch, unsigned flags)
{
    if ((flags & OCDZ_TEXT_LINES) && (ch == 9 || ch == 10)) {
        return 0;
    }

    return ch <= 31 || ch == 127;
}


static int
ref_valid(const uint8_t *p, size_t n, unsigned flags)
{
    size_t  i, l;

    for (i = 0; i < n; i += l) {
        l = ref_len(p + i, n - i);

        if (l == 0 || ref_control(p[i], flags)) {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t    i, l, max, cut;
    unsigned  flags;
    uint8_t  *copy;

    for (i = 0; i < size; i++) {
        check(ocdz_utf8_len(data + i, size - i) == ref_len(data + i,
                                                            size - i));
    }

    for (flags = 0; flags <= OCDZ_TEXT_LINES; flags++) {
        check(ocdz_text_valid(data, size, flags)
              == ref_valid(data, size, flags));
    }

    copy = malloc(size + 1);
    check(copy != NULL);
    memcpy(copy, data, size);

    ocdz_text_sanitize(copy, size);
    check(ocdz_text_valid(copy, size, 0));

    /* a sequence that was text stays as it was */

    for (i = 0; i < size; i += l) {
        l = ref_len(data + i, size - i);

        if (l == 0 || ref_control(data[i], 0)) {
            check(copy[i] == '?');
            l = 1;

        } else {
            check(memcmp(copy + i, data + i, l) == 0);
        }
    }

    /* on text, a prefix ends between sequences */

    max = size ? data[0] % (size + 1) : 0;
    cut = ocdz_text_prefix(copy, size, max);
    check(cut <= max && cut <= size);
    check(ocdz_text_valid(copy, cut, 0));
    check(cut == size || cut + 4 > max);

    free(copy);

    (void) ocdz_topup_id_valid((const char *) data, size);
    check(!ocdz_topup_id_stored((const char *) data, size)
          || ocdz_topup_id_valid((const char *) data, size));

    return 0;
}
