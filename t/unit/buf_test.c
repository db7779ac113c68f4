/*
 * Unit tests of ocdz_buf: the wiping buffer (an allocator that checks
 * every block it gets back is all zeros), strict UTF-8, the escaping of
 * each output format.
 */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "ocdz_buf.h"


#define BLOCKS_MAX  64


typedef struct {
    void    *p[BLOCKS_MAX];
    size_t   size[BLOCKS_MAX];
    int      n;
    int      dirty;        /* blocks handed back not wiped */
    int      freed;
    int      fail_after;   /* allocations left before failing; -1 never */
} spy_t;


static void *
spy_alloc(void *data, size_t size)
{
    spy_t  *s = data;

    if (s->fail_after == 0 || s->n == BLOCKS_MAX) {
        return NULL;
    }

    if (s->fail_after > 0) {
        s->fail_after--;
    }

    s->p[s->n] = malloc(size);
    s->size[s->n] = size;

    return s->p[s->n++];
}


static void
spy_free(void *data, void *p)
{
    int             i;
    size_t          j;
    spy_t          *s = data;
    unsigned char  *b = p;

    for (i = 0; i < s->n; i++) {
        if (s->p[i] == p) {
            for (j = 0; j < s->size[i]; j++) {
                if (b[j] != 0) {
                    s->dirty++;
                    break;
                }
            }

            s->p[i] = NULL;
            s->freed++;
            free(p);
            return;
        }
    }

    abort();
}


static const char *
escaped(ocdz_esc_e esc, const char *s)
{
    static ocdz_buf_t  b;

    if (b.alloc == NULL) {
        ocdz_buf_init(&b, &ocdz_alloc_std, 0);
    }

    ocdz_buf_reset(&b);
    ocdz_buf_add_escaped(&b, esc, (const unsigned char *) s, strlen(s));

    return (const char *) b.data;
}


static int
valid(const char *s, size_t n)
{
    return ocdz_utf8_valid((const unsigned char *) s, n, NULL);
}


int
main(void)
{
    int           i;
    char          big[1000];
    size_t        bad;
    uint32_t      cp;
    spy_t         spy;
    ocdz_buf_t    b;
    ocdz_alloc_t  a;

    memset(&spy, 0, sizeof(spy));
    spy.fail_after = -1;
    a.alloc = spy_alloc;
    a.free = spy_free;
    a.data = &spy;

    /* growth: every old block wiped before it goes */

    ocdz_buf_init(&b, &a, 0);
    memset(big, 'C', sizeof(big));

    for (i = 0; i < 20; i++) {
        ocdz_buf_add(&b, big, sizeof(big));
    }

    is_int(b.error, OCDZ_MSG_OK, "20000 bytes appended");
    is_int(b.len, 20000, "length counted");
    ok(b.data[b.len] == '\0', "NUL after the data");
    ok(spy.n > 1, "the buffer grew through several blocks");
    is_int(spy.freed, spy.n - 1, "every outgrown block released");
    is_int(spy.dirty, 0, "every outgrown block wiped first");

    ocdz_buf_free(&b);
    is_int(spy.freed, spy.n, "ocdz_buf_free releases the last block");
    is_int(spy.dirty, 0, "... wiped");
    ok(b.data == NULL && b.len == 0, "the buffer is empty again");

    /* reset wipes the used bytes and keeps the block */

    ocdz_buf_init(&b, &a, 0);
    ocdz_buf_add_str(&b, "123456789012");
    ocdz_buf_reset(&b);
    ok(b.len == 0 && b.data != NULL
       && memchr(b.data, '1', 13) == NULL, "reset wipes the content");
    ocdz_buf_add_str(&b, "x");
    is_str((char *) b.data, "x", "the buffer is usable after reset");
    ocdz_buf_free(&b);

    /* a pool allocator: no free, but wiped all the same */

    a.free = NULL;
    ocdz_buf_init(&b, &a, 0);
    ocdz_buf_add_str(&b, "123456789012");
    {
        unsigned char  *keep = b.data;
        size_t          k, n = b.size;
        int             zero = 1;

        ocdz_buf_free(&b);

        for (k = 0; k < n; k++) {
            zero &= keep[k] == 0;
        }

        ok(zero, "with no free function the block is still wiped");
        free(keep);
        spy.p[spy.n - 1] = NULL;
    }
    a.free = spy_free;

    /* caps and failures are sticky */

    ocdz_buf_init(&b, &a, 10);
    is_int(ocdz_buf_add_str(&b, "0123456789"), OCDZ_MSG_OK, "10 bytes fit");
    is_int(ocdz_buf_add_str(&b, "a"), OCDZ_MSG_ERR_TOO_LONG,
           "the 11th byte is over the cap");
    is_int(ocdz_buf_add_str(&b, ""), OCDZ_MSG_ERR_TOO_LONG,
           "the failure is sticky");
    ocdz_buf_free(&b);

    spy.fail_after = 0;
    ocdz_buf_init(&b, &a, 0);
    is_int(ocdz_buf_add_str(&b, "x"), OCDZ_MSG_ERR_NOMEM,
           "an allocation failure is reported");
    ocdz_buf_free(&b);
    spy.fail_after = -1;

    is_int(spy.dirty, 0, "no block was ever released unwiped");

    /* base64, hex */

    ocdz_buf_init(&b, &ocdz_alloc_std, 0);
    ocdz_buf_add_base64(&b, (const unsigned char *) "any carnal pleas", 16);
    is_str((char *) b.data, "YW55IGNhcm5hbCBwbGVhcw==", "base64, 2 pads");
    ocdz_buf_reset(&b);
    ocdz_buf_add_base64(&b, (const unsigned char *) "any carnal pleasu", 17);
    is_str((char *) b.data, "YW55IGNhcm5hbCBwbGVhc3U=", "base64, 1 pad");
    ocdz_buf_reset(&b);
    ocdz_buf_add_base64(&b, (const unsigned char *) "\xff\xfe\x00", 3);
    is_str((char *) b.data, "//4A", "base64, no pad, high bytes");
    ocdz_buf_reset(&b);
    ocdz_buf_add_hex(&b, (const unsigned char *) "\x00\xab\x7f", 3);
    is_str((char *) b.data, "00ab7f", "hex");
    ocdz_buf_free(&b);

    /* UTF-8 */

    ok(valid("", 0), "empty is valid UTF-8");
    ok(valid("abc \xc3\xa9 \xd8\xa8 \xe2\x82\xac \xf0\x9f\x98\x80", 18),
       "2, 3, 4-byte sequences");
    ok(!valid("\xc0\xaf", 2), "overlong 2-byte refused");
    ok(!valid("\xe0\x80\xaf", 3), "overlong 3-byte refused");
    ok(!valid("\xf0\x80\x80\xaf", 4), "overlong 4-byte refused");
    ok(!valid("\xed\xa0\x80", 3), "surrogate U+D800 refused");
    ok(!valid("\xf4\x90\x80\x80", 4), "U+110000 refused");
    ok(!valid("\xd8", 1), "cut sequence refused");
    ok(!valid("\x80", 1), "lone continuation byte refused");
    ok(!valid("\xff", 1), "0xFF refused");
    ok(valid("\xf4\x8f\xbf\xbf", 4), "U+10FFFF accepted");
    ok(!ocdz_utf8_valid((const unsigned char *) "ab\xc3(", 4, &bad)
       && bad == 2, "the offset of the first bad byte");
    is_int(ocdz_utf8_next((const unsigned char *) "\xe2\x82\xac",
                          (const unsigned char *) "\xe2\x82\xac" + 3, &cp),
           3, "euro sign is 3 bytes");
    is_int(cp, 0x20ac, "... U+20AC");

    ok(ocdz_is_control(0) && ocdz_is_control('\n') && ocdz_is_control(0x7f)
       && ocdz_is_control(0x85) && !ocdz_is_control(' ')
       && !ocdz_is_control(0xa0), "controls: C0, DEL, C1; not space, NBSP");

    /* escaping */

    is_str(escaped(OCDZ_ESC_TEXT, "<a & 'b'>"), "<a & 'b'>", "text as is");
    is_str(escaped(OCDZ_ESC_HTML, "<script>alert(\"x\" & 'y')</script>"),
           "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)"
           "&lt;/script&gt;", "HTML: & < > \" '");
    is_str(escaped(OCDZ_ESC_HTML, "\xd8\xa8\xc3\xa9"), "\xd8\xa8\xc3\xa9",
           "HTML keeps UTF-8");
    is_str(escaped(OCDZ_ESC_JSON, "a\"b\\c\nd\re\tf\x01g\x7f/"),
           "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007F/", "JSON string");
    is_str(escaped(OCDZ_ESC_JSON, "x\xe2\x80\xa8y\xe2\x80\xa9z"),
           "x\\u2028y\\u2029z", "JSON: U+2028, U+2029 escaped");
    is_str(escaped(OCDZ_ESC_JSON, "\xd8\xa8\xf0\x9f\x98\x80"),
           "\xd8\xa8\xf0\x9f\x98\x80", "JSON keeps other UTF-8");
    is_str(escaped(OCDZ_ESC_FORM, "a b&c=d+e%f*-._~"),
           "a+b%26c%3Dd%2Be%25f*-._%7E", "form: space, & = + % ~");
    is_str(escaped(OCDZ_ESC_FORM, "\xc3\xa9\n"), "%C3%A9%0A",
           "form: UTF-8 bytes and line feed");

    ok(ocdz_token_valid((const unsigned char *) "abc_DEF-09", 10, 64),
       "token");
    ok(!ocdz_token_valid((const unsigned char *) "a.b", 3, 64),
       "token refuses a dot");
    ok(!ocdz_token_valid((const unsigned char *) "", 0, 64),
       "token refuses empty");
    ok(!ocdz_token_valid((const unsigned char *) "abc", 3, 2),
       "token refuses too long");

    escaped(OCDZ_ESC_TEXT, "");

    return done_testing();
}
