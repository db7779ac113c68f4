/*
 * Unit tests of ocdz_text: RFC 3629 UTF-8 (the boundaries of every
 * sequence length, overlong forms, surrogates, code points above
 * U+10FFFF, truncation), control characters, sanitizing, prefixes and
 * top-up ids.
 */

#include <string.h>

#include "ocdz_text.h"
#include "tap.h"


#define U(s)  ((const unsigned char *) (s))


static size_t
len_of(const char *s)
{
    return ocdz_utf8_len(U(s), strlen(s));
}


static int
valid(const char *s, unsigned flags)
{
    return ocdz_text_valid(U(s), strlen(s), flags);
}


static void
test_utf8_len(void)
{
    is_int(len_of("a"), 1, "utf8: ASCII is one byte");
    is_int(len_of("\x7f"), 1, "utf8: DEL is a sequence (a control, though)");
    is_int(ocdz_utf8_len(U(""), 0), 0, "utf8: nothing is no sequence");

    /* two bytes: U+0080 to U+07FF */
    is_int(len_of("\xc2\x80"), 2, "utf8: U+0080");
    is_int(len_of("\xdf\xbf"), 2, "utf8: U+07FF");
    is_int(len_of("\xc0\x80"), 0, "utf8: overlong C0 80 (NUL) refused");
    is_int(len_of("\xc1\xbf"), 0, "utf8: overlong C1 BF refused");
    is_int(len_of("\xc2\x41"), 0, "utf8: a lead byte without continuation");
    is_int(len_of("\xc2"), 0, "utf8: two-byte sequence cut short");

    /* three bytes: U+0800 to U+FFFF without surrogates */
    is_int(len_of("\xe0\xa0\x80"), 3, "utf8: U+0800");
    is_int(len_of("\xe0\x9f\xbf"), 0, "utf8: overlong E0 9F BF refused");
    is_int(len_of("\xed\x9f\xbf"), 3, "utf8: U+D7FF");
    is_int(len_of("\xed\xa0\x80"), 0, "utf8: surrogate U+D800 refused");
    is_int(len_of("\xed\xbf\xbf"), 0, "utf8: surrogate U+DFFF refused");
    is_int(len_of("\xee\x80\x80"), 3, "utf8: U+E000");
    is_int(len_of("\xef\xbf\xbf"), 3, "utf8: U+FFFF");
    is_int(len_of("\xe2\x82"), 0, "utf8: three-byte sequence cut short");
    is_int(len_of("\xe2\x28\xa1"), 0, "utf8: bad second byte");
    is_int(len_of("\xe2\x82\x28"), 0, "utf8: bad third byte");

    /* four bytes: U+10000 to U+10FFFF */
    is_int(len_of("\xf0\x90\x80\x80"), 4, "utf8: U+10000");
    is_int(len_of("\xf0\x8f\xbf\xbf"), 0, "utf8: overlong F0 8F refused");
    is_int(len_of("\xf4\x8f\xbf\xbf"), 4, "utf8: U+10FFFF");
    is_int(len_of("\xf4\x90\x80\x80"), 0, "utf8: U+110000 refused");
    is_int(len_of("\xf5\x80\x80\x80"), 0, "utf8: F5 lead byte refused");
    is_int(len_of("\xff"), 0, "utf8: FF refused");
    is_int(len_of("\x80"), 0, "utf8: a continuation byte alone");
    is_int(len_of("\xf0\x9f\x92"), 0, "utf8: four-byte sequence cut short");

    /* the given length counts, not the NUL */
    is_int(ocdz_utf8_len(U("\xc3\xa9"), 1), 0, "utf8: n cuts the sequence");
}


static void
test_valid(void)
{
    unsigned char  nul[] = { 'a', 0, 'b' };

    ok(valid("", 0), "text: empty is text");
    ok(ocdz_text_valid(NULL, 0, 0), "text: NULL of length 0 is text");
    ok(!ocdz_text_valid(NULL, 1, 0), "text: NULL of length 1 is not");
    ok(valid("R\xc3\xa9sultat \xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a", 0),
       "text: French and Arabic");
    ok(valid("card \xf0\x9f\x92\xb3", 0), "text: an emoji");
    ok(!valid("a\tb", 0), "text: tab is a control");
    ok(!valid("a\nb", 0), "text: line feed is a control");
    ok(valid("a\tb\nc", OCDZ_TEXT_LINES), "text: LINES takes tab and LF");
    ok(!valid("a\rb", OCDZ_TEXT_LINES), "text: LINES refuses CR");
    ok(!valid("a\x1b[31m", OCDZ_TEXT_LINES), "text: escape refused");
    ok(!valid("a\x7f", OCDZ_TEXT_LINES), "text: DEL refused");
    ok(!ocdz_text_valid(nul, sizeof(nul), OCDZ_TEXT_LINES),
       "text: NUL refused");
    ok(!valid("R\xe9sultat", 0), "text: Latin-1 refused");
    ok(!valid("x\xed\xa0\x80y", OCDZ_TEXT_LINES),
       "text: an encoded surrogate refused (PostgreSQL would)");
    ok(!valid("\xc0\xaf", 0), "text: overlong '/' refused");
}


static void
test_sanitize(void)
{
    unsigned char  buf[64];

    strcpy((char *) buf, "curl/8.0 \xe9t\xc3\xa9\x01\x7f\t\xed\xa0\x80!");
    ocdz_text_sanitize(buf, strlen((char *) buf));
    is_str((char *) buf, "curl/8.0 ?t\xc3\xa9" "??????" "!",
           "sanitize: bad bytes and controls become '?'");
    ok(valid((char *) buf, 0), "sanitize: the result is text");

    strcpy((char *) buf, "\xf0\x9f\x92");
    ocdz_text_sanitize(buf, 3);
    is_str((char *) buf, "?" "?" "?", "sanitize: a cut sequence, byte by byte");

    strcpy((char *) buf, "Mozilla/5.0 \xd8\xb9");
    ocdz_text_sanitize(buf, strlen((char *) buf));
    is_str((char *) buf, "Mozilla/5.0 \xd8\xb9", "sanitize: text unchanged");
}


static void
test_prefix(void)
{
    const unsigned char  *s = U("ab\xc3\xa9\xe2\x82\xac");     /* abé€ */

    is_int(ocdz_text_prefix(s, 7, 10), 7, "prefix: short text whole");
    is_int(ocdz_text_prefix(s, 7, 7), 7, "prefix: exactly the cap");
    is_int(ocdz_text_prefix(s, 7, 6), 4, "prefix: never cuts the euro sign");
    is_int(ocdz_text_prefix(s, 7, 5), 4, "prefix: nor in its middle");
    is_int(ocdz_text_prefix(s, 7, 4), 4, "prefix: after the e-acute");
    is_int(ocdz_text_prefix(s, 7, 3), 2, "prefix: never cuts the e-acute");
    is_int(ocdz_text_prefix(s, 7, 0), 0, "prefix: a cap of 0");
}


static void
test_topup_id(void)
{
    ok(ocdz_topup_id_valid("690161a3e9e88196b4eb6545", 24), "id: hex");
    ok(ocdz_topup_id_valid("690161A3E9E88196B4EB6545", 24),
       "id: upper case is an id");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb654", 23), "id: 23");
    ok(!ocdz_topup_id_valid("690161a3e9e88196b4eb654g", 24), "id: g");
    ok(!ocdz_topup_id_valid(NULL, 24), "id: NULL");

    ok(ocdz_topup_id_stored("690161a3e9e88196b4eb6545", 24),
       "stored id: lower case");
    ok(!ocdz_topup_id_stored("690161A3E9E88196B4EB6545", 24),
       "stored id: the schema refuses upper case");
    ok(!ocdz_topup_id_stored("690161a3e9e88196b4eb6545 ", 25),
       "stored id: 25 characters");
}


int
main(void)
{
    test_utf8_len();
    test_valid();
    test_sanitize();
    test_prefix();
    test_topup_id();

    return done_testing();
}
