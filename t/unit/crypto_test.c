/*
 * Unit tests of ocdz_crypto: key decoding, the key ring, the v1 record
 * (round trip, binding to the order and key id, tampering, rotation),
 * the guide's legacy records (vectors computed with Node.js's crypto,
 * an implementation independent of ours) and malformed input.
 */

#include <stdlib.h>
#include <string.h>

#include "ocdz_crypto.h"
#include "ocdz_test.h"
#include "tap.h"


#define TOPUP      OCDZ_TEST_TOPUP
#define TOPUP2     "0123456789abcdef01234568"

#define K1_HEX     OCDZ_TEST_K1_HEX
#define K2_HEX     OCDZ_TEST_K2_HEX
#define K3_HEX     "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff0f1f2f3f4f5f6f7f8f" \
                   "9fafbfcfdfeff0"


/*
 * Fixed vectors, computed once with Node.js 20 (OpenSSL inside Node, not
 * this code) by the guide's recipes:
 *
 *   c = crypto.createCipheriv('aes-256-gcm', key, iv);
 *   ct = Buffer.concat([c.update(code, 'utf8'), c.final()]);
 *   tag = c.getAuthTag();
 *
 * NODE: key K1, iv cafebabefacedbaddecaf888deadbeef, "123456789012",
 *   hex as the Node.js recipe stores it.
 * PHP16: key K2, iv 0f0e...00 (16 bytes), "000011112222"; PHP's
 *   openssl_encrypt(..., OPENSSL_RAW_DATA, $iv, $tag) + bin2hex stores
 *   the same shape as Node.
 * PHP12: key K2, iv a0a1...ab (12 bytes, openssl_cipher_iv_length),
 *   "555566667777".
 * PY: key K1, nonce cafebabefacedbaddecaf888, "987654321098", the Python
 *   recipe's base64 nonce and base64(ct || tag).
 * PY2: key K2, nonce 00..01, "ADSL-4G card 0123456789 ABCDEFGHIJ".
 * V1: our own format built by Node: key K1 as "k2026", nonce
 *   101112131415161718191a1b, AAD "ocdz1\0k2026\0" TOPUP, "123456789012".
 * NODE4: NODE with authTagLength 4: a truncated tag, refused.
 */
#define NODE_REC   "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","        \
                   "\"encryptedData\":\"7badff37b09a6985e5f5d91f\","      \
                   "\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}"
#define PHP16_REC  "{\"iv\":\"0f0e0d0c0b0a09080706050403020100\","        \
                   "\"encryptedData\":\"8be0a2313c3e640aee57c68a\","      \
                   "\"authTag\":\"a89c6e2d148a4b2a1d21b762cbf932e1\"}"
#define PHP12_REC  "{\"iv\":\"a0a1a2a3a4a5a6a7a8a9aaab\","                \
                   "\"encryptedData\":\"d32d491873fd34895552b0e4\","      \
                   "\"authTag\":\"ad7dd20e729ed27da18d0ede8317e1db\"}"
#define PY_REC     "{\"nonce\":\"yv66vvrO263eyviI\","                     \
                   "\"encryptedData\":"                                   \
                   "\"nh/fRtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqQ==\"}"
#define PY2_REC    "{\"nonce\":\"AAAAAAAAAAAAAAAB\",\"encryptedData\":"   \
                   "\"VJLssGnAdz5tTyNdzJYLxSarKWJTim2kMkJAnWN2NBZz3MJ61YA8" \
                   "Urkk136dFdm5V/k=\"}"
#define V1_REC     "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7w" \
                   "KtNv9B4IUXw"
#define NODE4_REC  "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","        \
                   "\"encryptedData\":\"7badff37b09a6985e5f5d91f\","      \
                   "\"authTag\":\"9c297171\"}"


static ocdz_cipher_t  *cipher;


static void
key_from_hex(const char *hex, unsigned char key[OCDZ_KEY_LEN])
{
    if (ocdz_key_decode(hex, strlen(hex), key, NULL, 0) != OCDZ_OK) {
        printf("Bail out! test key %s does not decode\n", hex);
        exit(255);
    }
}


static void
ring_add(ocdz_keyring_t *ring, const char *id, const char *hex, int current)
{
    unsigned char  key[OCDZ_KEY_LEN];
    char           err[128];

    key_from_hex(hex, key);

    if (ocdz_keyring_add(ring, id, strlen(id), key, current, err,
                         sizeof(err)) != OCDZ_OK)
    {
        printf("Bail out! cannot add test key %s: %s\n", id, err);
        exit(255);
    }

    ocdz_wipe(key, sizeof(key));
}


/* opens rec with ring and TOPUP; returns the rc, plaintext in out */
static int
open_str(const ocdz_keyring_t *ring, const char *topup, const char *rec,
    size_t rec_len, char *out, size_t out_size, ocdz_open_info_t *info)
{
    int            rc;
    size_t         n;
    unsigned char  plain[OCDZ_PLAIN_MAX + 1];

    memset(plain, 0xa5, sizeof(plain));

    rc = ocdz_open(cipher, ring, topup, strlen(topup), rec, rec_len,
                   plain, OCDZ_PLAIN_MAX, &n, info);

    if (rc == OCDZ_OK) {
        if (n >= out_size) {
            return -1;
        }

        memcpy(out, plain, n);
        out[n] = '\0';

    } else {
        out[0] = '\0';

        if (n != 0 || !ocdz_test_is_zero(plain, OCDZ_PLAIN_MAX)) {
            return -2;              /* failure left plaintext behind */
        }
    }

    return rc;
}


static int
open_rec(const ocdz_keyring_t *ring, const char *rec, char *out,
    size_t out_size)
{
    return open_str(ring, TOPUP, rec, strlen(rec), out, out_size, NULL);
}


static void
test_key_decode(void)
{
    char           err[256], buf[200];
    unsigned char  key[OCDZ_KEY_LEN], expect[OCDZ_KEY_LEN];
    size_t         i;

    for (i = 0; i < OCDZ_KEY_LEN; i++) {
        expect[i] = (unsigned char) i;
    }

    is_int(ocdz_key_decode(K2_HEX, 64, key, err, sizeof(err)), OCDZ_OK,
           "key: 64 hex digits decode");
    ok(memcmp(key, expect, OCDZ_KEY_LEN) == 0, "key: bytes are right");

    is_int(ocdz_key_decode(K2_HEX "\n", 65, key, err, sizeof(err)),
           OCDZ_OK, "key: trailing newline is fine");
    ok(memcmp(key, expect, OCDZ_KEY_LEN) == 0, "key: bytes with newline");

    is_int(ocdz_key_decode("  " K2_HEX "\r\n", 68, key, err, sizeof(err)),
           OCDZ_OK, "key: surrounding white space and CRLF are fine");

    strcpy(buf, K2_HEX);
    for (i = 0; buf[i]; i++) {
        if (buf[i] >= 'a' && buf[i] <= 'f') {
            buf[i] = (char) (buf[i] - 'a' + 'A');
        }
    }
    is_int(ocdz_key_decode(buf, 64, key, err, sizeof(err)), OCDZ_OK,
           "key: upper-case hex is fine");
    ok(memcmp(key, expect, OCDZ_KEY_LEN) == 0, "key: upper-case bytes");

    err[0] = '\0';
    is_int(ocdz_key_decode(K2_HEX, 63, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: 63 digits refused");
    ok(err[0] != '\0', "key: 63 digits has a reason");
    ok(ocdz_test_is_zero(key, OCDZ_KEY_LEN), "key: output wiped on error");

    strcpy(buf, K2_HEX "0");
    is_int(ocdz_key_decode(buf, 65, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: 65 digits refused");

    strcpy(buf, K2_HEX "0\n");
    is_int(ocdz_key_decode(buf, 66, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: 65 digits and newline refused");

    strcpy(buf, K2_HEX);
    buf[10] = 'g';
    err[0] = '\0';
    is_int(ocdz_key_decode(buf, 64, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: non-hex character refused");
    ok(strstr(err, "offset 10") != NULL, "key: reason gives the offset");
    ok(strstr(err, "0405") == NULL && strstr(err, "0a0b") == NULL,
       "key: reason has no key material");

    strcpy(buf, K2_HEX);
    buf[32] = ' ';
    is_int(ocdz_key_decode(buf, 64, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: inner space refused");

    memcpy(buf, K2_HEX, 64);
    buf[20] = '\0';
    is_int(ocdz_key_decode(buf, 64, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: inner NUL refused");

    is_int(ocdz_key_decode("", 0, key, err, sizeof(err)), OCDZ_ERR_FORMAT,
           "key: empty refused");
    is_int(ocdz_key_decode("\n", 1, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: just a newline refused");
    is_int(ocdz_key_decode(NULL, 0, key, NULL, 0), OCDZ_ERR_FORMAT,
           "key: NULL refused, no err buffer is fine");

    /* a base64 key of the right size is not hex */
    is_int(ocdz_key_decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                           44, key, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "key: base64 key refused");
}


static void
test_keyring(void)
{
    int             rc;
    char            err[256], id[64];
    size_t          i;
    unsigned char   key[OCDZ_KEY_LEN];
    ocdz_keyring_t  ring;

    ok(ocdz_key_id_valid("k2026", 5), "key id: plain id valid");
    ok(ocdz_key_id_valid("A-z_09", 6), "key id: all classes valid");
    ok(!ocdz_key_id_valid("", 0), "key id: empty invalid");
    ok(!ocdz_key_id_valid("a.b", 3), "key id: dot invalid");
    ok(!ocdz_key_id_valid("a b", 3), "key id: space invalid");
    ok(!ocdz_key_id_valid("a\0b", 3), "key id: NUL invalid");
    ok(!ocdz_key_id_valid("\xc3\xa9", 2), "key id: non-ASCII invalid");
    ok(ocdz_key_id_valid("0123456789abcdef0123456789abcdef", 32),
       "key id: 32 characters valid");
    ok(!ocdz_key_id_valid("0123456789abcdef0123456789abcdef0", 33),
       "key id: 33 characters invalid");

    key_from_hex(K1_HEX, key);

    memset(&ring, 0, sizeof(ring));
    is_int(ocdz_keyring_add(&ring, "a", 1, key, 0, err, sizeof(err)),
           OCDZ_OK, "ring: first key added");
    is_int(ring.current, 0, "ring: first key is current by default");
    is_int(ocdz_keyring_add(&ring, "b", 1, key, 1, err, sizeof(err)),
           OCDZ_OK, "ring: second key marked current");
    is_int(ring.current, 1, "ring: marked key is current");

    err[0] = '\0';
    is_int(ocdz_keyring_add(&ring, "a", 1, key, 0, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "ring: duplicate id refused");
    ok(strstr(err, "duplicate") != NULL, "ring: duplicate reason");

    is_int(ocdz_keyring_add(&ring, "c", 1, key, 0, err, sizeof(err)),
           OCDZ_OK, "ring: third key, not current");
    is_int(ring.current, 1, "ring: current unchanged");
    is_int(ocdz_keyring_add(&ring, "d", 1, key, 1, err, sizeof(err)),
           OCDZ_OK, "ring: fourth key, current");
    is_int(ring.current, 3, "ring: the last key added as current wins");

    is_int(ocdz_keyring_add(&ring, "bad id", 6, key, 0, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "ring: invalid id refused");
    is_int(ocdz_keyring_add(&ring, "", 0, key, 0, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "ring: empty id refused");
    is_int(ocdz_keyring_add(&ring, "x.y", 3, key, 0, err, sizeof(err)),
           OCDZ_ERR_FORMAT, "ring: id with the record separator refused");
    is_int(ring.nkeys, 4, "ring: refused keys not added");

    ocdz_keyring_wipe(&ring);
    ok(ocdz_test_is_zero((unsigned char *) &ring, sizeof(ring)), "ring: wipe zeroes");

    memset(&ring, 0, sizeof(ring));
    for (i = 0; i < OCDZ_KEYS_MAX; i++) {
        sprintf(id, "key%zu", i);
        rc = ocdz_keyring_add(&ring, id, strlen(id), key, 0, err,
                              sizeof(err));
        if (rc != OCDZ_OK) {
            break;
        }
    }
    is_int(ring.nkeys, OCDZ_KEYS_MAX, "ring: holds OCDZ_KEYS_MAX keys");
    is_int(ocdz_keyring_add(&ring, "more", 4, key, 0, err, sizeof(err)),
           OCDZ_ERR_TOO_LONG, "ring: one key too many refused");
    ocdz_keyring_wipe(&ring);

    ocdz_wipe(key, sizeof(key));
}


static void
test_round_trip(void)
{
    int               rc;
    char              rec[OCDZ_RECORD_MAX], rec2[OCDZ_RECORD_MAX];
    char              out[OCDZ_PLAIN_MAX + 1];
    size_t            n, n2, i;
    ocdz_keyring_t    ring, other;
    ocdz_open_info_t  info;
    unsigned char     big[OCDZ_PLAIN_MAX + 1];

    memset(&ring, 0, sizeof(ring));
    ring_add(&ring, "k2026", K1_HEX, 1);

    rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                   (const unsigned char *) "123456789012", 12,
                   rec, sizeof(rec), &n);
    is_int(rc, OCDZ_OK, "seal: ok");
    is_int(n, strlen(rec), "seal: length is the string's");
    is_int(n, ocdz_seal_len(5, 12), "seal: length is ocdz_seal_len()");
    ok(strncmp(rec, "ocdz1.k2026.", 12) == 0, "seal: prefix and key id");
    ok(strspn(rec + 12, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789-_") == n - 12,
       "seal: payload is base64url without padding");
    is_int(ocdz_record_format(rec, n), OCDZ_FORMAT_V1, "seal: format v1");

    rc = open_str(&ring, TOPUP, rec, n, out, sizeof(out), &info);
    is_int(rc, OCDZ_OK, "open: ok");
    is_str(out, "123456789012", "open: plaintext back");
    is_int(info.format, OCDZ_FORMAT_V1, "open: info format v1");
    is_str(info.key_id, "k2026", "open: info key id");

    rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                   (const unsigned char *) "123456789012", 12,
                   rec2, sizeof(rec2), &n2);
    ok(rc == OCDZ_OK && strcmp(rec, rec2) != 0,
       "seal: a fresh nonce each time");

    /* bound to its order */
    rc = open_str(&ring, TOPUP2, rec, n, out, sizeof(out), &info);
    is_int(rc, OCDZ_ERR_AUTH, "open: another order's top-up id fails");
    is_str(info.key_id, "k2026", "open: info names the record's key");
    rc = open_str(&ring, TOPUP "0", rec, n, out, sizeof(out), NULL);
    is_int(rc, OCDZ_ERR_AUTH, "open: longer top-up id fails");
    rc = open_str(&ring, "x", rec, n, out, sizeof(out), NULL);
    is_int(rc, OCDZ_ERR_AUTH, "open: short top-up id fails");
    is_int(ocdz_open(cipher, &ring, TOPUP, 0, rec, n, big, OCDZ_PLAIN_MAX,
                     &n2, NULL),
           OCDZ_ERR_FORMAT, "open: empty top-up id refused");

    /* wrong key under the same id */
    memset(&other, 0, sizeof(other));
    ring_add(&other, "k2026", K2_HEX, 1);
    rc = open_str(&other, TOPUP, rec, n, out, sizeof(out), NULL);
    is_int(rc, OCDZ_ERR_AUTH, "open: wrong key fails");
    ocdz_keyring_wipe(&other);

    /* relabelled to another key id of the ring holding the same key */
    memset(&other, 0, sizeof(other));
    ring_add(&other, "k2026", K1_HEX, 1);
    ring_add(&other, "k2027", K1_HEX, 0);
    strcpy(rec2, rec);
    memcpy(rec2 + 6, "k2027", 5);
    rc = open_str(&other, TOPUP, rec2, n, out, sizeof(out), NULL);
    is_int(rc, OCDZ_ERR_AUTH, "open: relabelled key id fails (same key)");
    ocdz_keyring_wipe(&other);

    /* relabelled to a key id nobody has */
    rc = open_str(&ring, TOPUP, rec2, n, out, sizeof(out), &info);
    is_int(rc, OCDZ_ERR_KEY, "open: unknown key id is OCDZ_ERR_KEY");
    is_str(info.key_id, "k2027", "open: info names the unknown key id");

    /* the longest code seals and opens; one more is refused */
    memset(big, '7', sizeof(big));
    rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP), big, OCDZ_PLAIN_MAX,
                   rec2, sizeof(rec2), &n2);
    is_int(rc, OCDZ_OK, "seal: OCDZ_PLAIN_MAX bytes");
    ok(n2 <= OCDZ_RECORD_MAX, "seal: longest record fits OCDZ_RECORD_MAX");
    rc = open_str(&ring, TOPUP, rec2, n2, out, sizeof(out), NULL);
    ok(rc == OCDZ_OK && strlen(out) == OCDZ_PLAIN_MAX
       && strspn(out, "7") == OCDZ_PLAIN_MAX, "open: longest code back");

    is_int(ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP), big,
                     OCDZ_PLAIN_MAX + 1, rec2, sizeof(rec2), &n2),
           OCDZ_ERR_TOO_LONG, "seal: OCDZ_PLAIN_MAX + 1 refused");

    /* an empty plaintext is the caller's business, but must work */
    rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP), NULL, 0,
                   rec2, sizeof(rec2), &n2);
    is_int(rc, OCDZ_OK, "seal: empty plaintext");
    rc = open_str(&ring, TOPUP, rec2, n2, out, sizeof(out), NULL);
    ok(rc == OCDZ_OK && out[0] == '\0', "open: empty plaintext back");

    /* output buffers */
    is_int(ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                     (const unsigned char *) "1234", 4, rec2,
                     ocdz_seal_len(5, 4), &n2),
           OCDZ_ERR_TOO_LONG, "seal: no room for the NUL refused");
    is_int(ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                     (const unsigned char *) "1234", 4, rec2,
                     ocdz_seal_len(5, 4) + 1, &n2),
           OCDZ_OK, "seal: exactly ocdz_seal_len() + 1 is enough");
    is_int(n2, ocdz_seal_len(5, 4), "seal: short code length");

    for (i = 0; i <= 40; i++) {
        rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP), big, i,
                       rec2, sizeof(rec2), &n2);
        if (rc != OCDZ_OK || n2 != ocdz_seal_len(5, i)
            || open_str(&ring, TOPUP, rec2, n2, out, sizeof(out), NULL)
               != OCDZ_OK
            || strlen(out) != i)
        {
            break;
        }
    }
    is_int(i, 41, "seal/open: every length 0-40 (base64 tails)");

    memset(big, 0, sizeof(big));
    n2 = 99;
    is_int(ocdz_open(cipher, &ring, TOPUP, strlen(TOPUP), rec, n, big, 11,
                     &n2, NULL),
           OCDZ_ERR_TOO_LONG, "open: plaintext buffer too small refused");
    is_int(n2, 0, "open: length 0 on failure");

    is_int(ocdz_seal(cipher, &ring, "", 0, big, 4, rec2, sizeof(rec2), &n2),
           OCDZ_ERR_FORMAT, "seal: empty top-up id refused");
    memset(rec2, 'a', OCDZ_TOPUP_ID_MAX + 1);
    is_int(ocdz_seal(cipher, &ring, rec2, OCDZ_TOPUP_ID_MAX + 1, big, 4,
                     out, sizeof(out), &n2),
           OCDZ_ERR_TOO_LONG, "seal: over-long top-up id refused");
    is_int(ocdz_seal(cipher, &ring, rec2, OCDZ_TOPUP_ID_MAX, big, 4,
                     out, sizeof(out), &n2),
           OCDZ_OK, "seal: OCDZ_TOPUP_ID_MAX top-up id");

    memset(&other, 0, sizeof(other));
    is_int(ocdz_seal(cipher, &other, TOPUP, strlen(TOPUP), big, 4, rec2,
                     sizeof(rec2), &n2),
           OCDZ_ERR_KEY, "seal: empty ring is OCDZ_ERR_KEY");
    is_int(open_rec(&other, rec, out, sizeof(out)), OCDZ_ERR_KEY,
           "open: empty ring is OCDZ_ERR_KEY");
    is_int(ocdz_seal(NULL, &ring, TOPUP, strlen(TOPUP), big, 4, rec2,
                     sizeof(rec2), &n2),
           OCDZ_ERR_CRYPTO, "seal: no cipher refused");

    ocdz_keyring_wipe(&ring);
}


static void
test_tamper(void)
{
    int             rc, bad_auth, bad_other;
    char            rec[OCDZ_RECORD_MAX], t[OCDZ_RECORD_MAX];
    char            out[OCDZ_PLAIN_MAX + 1];
    size_t          n, i, last;
    ocdz_keyring_t  ring;

    memset(&ring, 0, sizeof(ring));
    ring_add(&ring, "k2026", K1_HEX, 1);

    rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                   (const unsigned char *) "123456789012", 12,
                   rec, sizeof(rec), &n);
    is_int(rc, OCDZ_OK, "tamper: sealed");

    /*
     * Change every payload character in turn: nonce (first 16
     * characters), ciphertext, tag. All but the last character change
     * decoded bits; the last one's low bits are unused, and a change of
     * those is refused as non-canonical.
     */
    bad_auth = 0;
    bad_other = 0;
    last = n - 1;

    for (i = 12; i < n; i++) {
        strcpy(t, rec);
        t[i] = (t[i] == 'A') ? 'B' : 'A';

        rc = open_str(&ring, TOPUP, t, n, out, sizeof(out), NULL);

        if (rc == OCDZ_ERR_AUTH) {
            bad_auth++;

        } else if (!(i == last && rc == OCDZ_ERR_FORMAT)) {
            bad_other++;
            printf("# position %zu: rc %d\n", i, rc);
        }
    }

    is_int(bad_other, 0, "tamper: no changed character opens");
    ok(bad_auth >= (int) (n - 13), "tamper: changes fail authentication");

    strcpy(t, rec);
    t[12] = (t[12] == 'A') ? 'B' : 'A';
    is_int(open_rec(&ring, t, out, sizeof(out)), OCDZ_ERR_AUTH,
           "tamper: nonce byte fails");
    strcpy(t, rec);
    t[12 + 17] = (t[12 + 17] == 'A') ? 'B' : 'A';
    is_int(open_rec(&ring, t, out, sizeof(out)), OCDZ_ERR_AUTH,
           "tamper: ciphertext byte fails");
    strcpy(t, rec);
    t[n - 3] = (t[n - 3] == 'A') ? 'B' : 'A';
    is_int(open_rec(&ring, t, out, sizeof(out)), OCDZ_ERR_AUTH,
           "tamper: tag byte fails");

    /* cut off or extended */
    strcpy(t, rec);
    t[n - 4] = '\0';
    rc = open_rec(&ring, t, out, sizeof(out));
    ok(rc == OCDZ_ERR_AUTH || rc == OCDZ_ERR_FORMAT,
       "tamper: truncated record fails");
    strcpy(t, rec);
    strcat(t, "AAAA");
    is_int(open_rec(&ring, t, out, sizeof(out)), OCDZ_ERR_AUTH,
           "tamper: extended record fails");

    /* the prefix is authenticated too: a different version is unknown */
    strcpy(t, rec);
    t[4] = '2';
    is_int(open_rec(&ring, t, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "tamper: other version prefix is not ours");

    ocdz_keyring_wipe(&ring);
}


static void
test_rotation(void)
{
    int               rc;
    char              rec_old[OCDZ_RECORD_MAX], rec_new[OCDZ_RECORD_MAX];
    char              out[OCDZ_PLAIN_MAX + 1];
    size_t            n;
    ocdz_keyring_t    ring1, ring2, ring3;
    ocdz_open_info_t  info;

    memset(&ring1, 0, sizeof(ring1));
    ring_add(&ring1, "old", K1_HEX, 0);

    rc = ocdz_seal(cipher, &ring1, TOPUP, strlen(TOPUP),
                   (const unsigned char *) "111122223333", 12,
                   rec_old, sizeof(rec_old), &n);
    ok(rc == OCDZ_OK && strncmp(rec_old, "ocdz1.old.", 10) == 0,
       "rotation: sealed under the old key");

    /* the new key becomes current; the old one stays for reading */
    memset(&ring2, 0, sizeof(ring2));
    ring_add(&ring2, "old", K1_HEX, 0);
    ring_add(&ring2, "new", K2_HEX, 1);

    rc = ocdz_seal(cipher, &ring2, TOPUP, strlen(TOPUP),
                   (const unsigned char *) "444455556666", 12,
                   rec_new, sizeof(rec_new), &n);
    ok(rc == OCDZ_OK && strncmp(rec_new, "ocdz1.new.", 10) == 0,
       "rotation: new seals use the current key");

    rc = open_str(&ring2, TOPUP, rec_old, strlen(rec_old), out, sizeof(out),
                  &info);
    is_int(rc, OCDZ_OK, "rotation: old record opens");
    is_str(out, "111122223333", "rotation: old record plaintext");
    is_str(info.key_id, "old", "rotation: opened with the old key");

    rc = open_str(&ring2, TOPUP, rec_new, strlen(rec_new), out, sizeof(out),
                  &info);
    is_int(rc, OCDZ_OK, "rotation: new record opens");
    is_str(out, "444455556666", "rotation: new record plaintext");
    is_str(info.key_id, "new", "rotation: opened with the new key");

    /* the old key retired */
    memset(&ring3, 0, sizeof(ring3));
    ring_add(&ring3, "new", K2_HEX, 0);
    is_int(open_rec(&ring3, rec_old, out, sizeof(out)), OCDZ_ERR_KEY,
           "rotation: old record without the old key is OCDZ_ERR_KEY");
    is_int(open_rec(&ring3, rec_new, out, sizeof(out)), OCDZ_OK,
           "rotation: new record with only the new key");

    /* old ring cannot read new records */
    is_int(open_rec(&ring1, rec_new, out, sizeof(out)), OCDZ_ERR_KEY,
           "rotation: new record is unknown to the old ring");

    ocdz_keyring_wipe(&ring1);
    ocdz_keyring_wipe(&ring2);
    ocdz_keyring_wipe(&ring3);
}


static void
test_vectors(void)
{
    char              out[OCDZ_PLAIN_MAX + 1];
    ocdz_keyring_t    ring, k1only, k3only;
    ocdz_open_info_t  info;
    const char       *rec;

    /* K1 is not current, so legacy records need the fall-back */
    memset(&ring, 0, sizeof(ring));
    ring_add(&ring, "k2026", K1_HEX, 0);
    ring_add(&ring, "phpkey", K2_HEX, 0);
    ring_add(&ring, "cur", K3_HEX, 1);

    is_int(ocdz_record_format(NODE_REC, strlen(NODE_REC)),
           OCDZ_FORMAT_GUIDE_HEX, "node: format guide hex");
    is_int(open_str(&ring, TOPUP, NODE_REC, strlen(NODE_REC), out,
                    sizeof(out), &info),
           OCDZ_OK, "node: Node.js recipe vector opens");
    is_str(out, "123456789012", "node: plaintext");
    is_int(info.format, OCDZ_FORMAT_GUIDE_HEX, "node: info format");
    is_str(info.key_id, "k2026", "node: info names the key that opened it");

    /* no associated data: the top-up id does not matter */
    is_int(open_str(&ring, TOPUP2, NODE_REC, strlen(NODE_REC), out,
                    sizeof(out), NULL),
           OCDZ_OK, "node: legacy records are not bound to the order");

    is_int(open_rec(&ring, PHP16_REC, out, sizeof(out)), OCDZ_OK,
           "php: PHP recipe vector (same shape as Node) opens");
    is_str(out, "000011112222", "php: plaintext");
    is_int(open_rec(&ring, PHP12_REC, out, sizeof(out)), OCDZ_OK,
           "php: 12-byte iv vector opens");
    is_str(out, "555566667777", "php: 12-byte iv plaintext");

    is_int(ocdz_record_format(PY_REC, strlen(PY_REC)),
           OCDZ_FORMAT_GUIDE_B64, "python: format guide base64");
    is_int(open_str(&ring, TOPUP, PY_REC, strlen(PY_REC), out, sizeof(out),
                    &info),
           OCDZ_OK, "python: Python recipe vector opens");
    is_str(out, "987654321098", "python: plaintext");
    is_int(info.format, OCDZ_FORMAT_GUIDE_B64, "python: info format");
    is_int(open_rec(&ring, PY2_REC, out, sizeof(out)), OCDZ_OK,
           "python: second vector opens");
    is_str(out, "ADSL-4G card 0123456789 ABCDEFGHIJ", "python: plaintext 2");

    is_int(open_rec(&ring, V1_REC, out, sizeof(out)), OCDZ_OK,
           "v1: record built by Node.js opens");
    is_str(out, "123456789012", "v1: Node.js-built plaintext");
    is_int(open_str(&ring, TOPUP2, V1_REC, strlen(V1_REC), out, sizeof(out),
                    NULL),
           OCDZ_ERR_AUTH, "v1: Node.js-built record bound to its order");

    /* truncated tags */
    is_int(open_rec(&ring, NODE4_REC, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "node: 4-byte tag (8 hex digits) refused");
    is_int(ocdz_record_format(NODE4_REC, strlen(NODE4_REC)),
           OCDZ_FORMAT_NONE, "node: 4-byte tag is no format");
    /* Python: ciphertext and a 4-byte tag, 12 + 4 < 16 bytes ... */
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"AAAAAAAA\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "python: 6 bytes (shorter than a tag) refused");
    /* an 11-byte code with a 4-byte tag */
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":"
          "\"e63/N7CaaYXl9dmcKXFx\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "python: 15 bytes refused");
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "python: empty encryptedData refused");
    /* ... and a 12-byte code with a 4-byte tag is 16 bytes: read as an
     * empty code with a 16-byte tag, it does not authenticate */
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":"
          "\"e63/N7CaaYXl9dkfnClxcQ==\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "python: 12-byte code with a 4-byte tag fails");

    /* reordered keys, white space, unknown keys, PHP's escaped slash */
    rec = "{ \"authTag\" : \"9c297171e1872cc7d8648f87df084254\",\n"
          "  \"encryptedData\": \"7badff37b09a6985e5f5d91f\",\n"
          "  \"v\": 1, \"meta\": {\"a\": [1, 2, {\"b\": null}]},\n"
          "  \"iv\": \"CAFEBABEFACEDBADDECAF888DEADBEEF\" }\n";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_OK,
           "node: reordered keys, unknown keys, upper-case hex open");
    is_str(out, "123456789012", "node: reordered plaintext");

    rec = "{\"encryptedData\":\"nh\\/fRtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqQ==\","
          "\"nonce\":\"yv66vvrO263eyviI\",\"algo\":\"aes-256-gcm\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_OK,
           "python: escaped slash (PHP json_encode) and extra key open");
    is_str(out, "987654321098", "python: escaped plaintext");

    rec = "{\"iv\":\"\\u0063afebabefacedbaddecaf888deadbeef\","
          "\"encryptedData\":\"7badff37b09a6985e5f5d91f\","
          "\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}";
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_OK,
           "node: \\u escape decoded");

    /* a ring without the key */
    memset(&k3only, 0, sizeof(k3only));
    ring_add(&k3only, "cur", K3_HEX, 0);
    is_int(open_rec(&k3only, NODE_REC, out, sizeof(out)), OCDZ_ERR_AUTH,
           "node: wrong key fails");
    is_int(open_rec(&k3only, PY_REC, out, sizeof(out)), OCDZ_ERR_AUTH,
           "python: wrong key fails");

    /* tampered legacy records */
    memset(&k1only, 0, sizeof(k1only));
    ring_add(&k1only, "k1", K1_HEX, 0);
    rec = "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","
          "\"encryptedData\":\"7badff37b09a6985e5f5d91e\","
          "\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "node: tampered ciphertext fails");
    rec = "{\"iv\":\"cafebabefacedbaddecaf888deadbeee\","
          "\"encryptedData\":\"7badff37b09a6985e5f5d91f\","
          "\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "node: tampered iv fails");
    rec = "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","
          "\"encryptedData\":\"7badff37b09a6985e5f5d91f\","
          "\"authTag\":\"9c297171e1872cc7d8648f87df084255\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "node: tampered tag fails");
    rec = "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","
          "\"encryptedData\":\"7badff37b09a6985e5f5d9\","
          "\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "node: truncated ciphertext fails");
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":"
          "\"nh/fRtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqR==\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "python: non-canonical base64 refused");
    rec = "{\"nonce\":\"yv66vvrO263eyviA\",\"encryptedData\":"
          "\"nh/fRtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqQ==\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "python: tampered nonce fails");
    rec = "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":"
          "\"nh/fRtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqA==\"}";
    is_int(open_rec(&k1only, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "python: tampered tag fails");

    ocdz_keyring_wipe(&ring);
    ocdz_keyring_wipe(&k1only);
    ocdz_keyring_wipe(&k3only);
}


static void
test_malformed(void)
{
    int              rc, bad;
    char             out[OCDZ_PLAIN_MAX + 1], rec[4096];
    size_t           i, j, n;
    unsigned char    raw[1024];
    ocdz_keyring_t   ring;
    unsigned int     seed;

    static const struct {
        const char  *rec;
        int          rc;
        const char  *name;
    } cases[] = {
        { "", OCDZ_ERR_FORMAT, "empty" },
        { "x", OCDZ_ERR_FORMAT, "one character" },
        { "garbage", OCDZ_ERR_FORMAT, "garbage" },
        { "ocdz1", OCDZ_ERR_FORMAT, "prefix alone" },
        { "ocdz1.", OCDZ_ERR_FORMAT, "prefix and dot" },
        { "ocdz1.k2026", OCDZ_ERR_FORMAT, "no payload separator" },
        { "ocdz1.k2026.", OCDZ_ERR_FORMAT, "empty payload" },
        { "ocdz1..EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IUXw",
          OCDZ_ERR_FORMAT, "empty key id" },
        { "ocdz1.k 2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4"
          "IUXw", OCDZ_ERR_FORMAT, "bad key id" },
        { "ocdz1.0123456789abcdef0123456789abcdefX.EBESExQVFhcYGRobugw6m3c"
          "e7qKFXOMfhZZ6CzRlg7wKtNv9B4IUXw", OCDZ_ERR_FORMAT,
          "key id too long" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "X", OCDZ_ERR_FORMAT, "truncated base64 (1 mod 4)" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "Xw==", OCDZ_ERR_FORMAT, "padding in base64url" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "Xx", OCDZ_ERR_FORMAT, "non-canonical last character" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "Xw\n", OCDZ_ERR_FORMAT, "trailing newline" },
        { " ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4I"
          "UXw", OCDZ_ERR_FORMAT, "leading space" },
        { "ocdz1.k2026.EBESExQVFhcYGRob+gw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "Xw", OCDZ_ERR_FORMAT, "standard alphabet in base64url" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKF.OMfhZZ6CzRlg7wKtNv9B4IU"
          "Xw", OCDZ_ERR_FORMAT, "dot in payload" },
        { "ocdz1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6",
          OCDZ_ERR_FORMAT, "payload shorter than nonce and tag" },
        { "OCDZ1.k2026.EBESExQVFhcYGRobugw6m3ce7qKFXOMfhZZ6CzRlg7wKtNv9B4IU"
          "Xw", OCDZ_ERR_FORMAT, "upper-case prefix" },
        { "{", OCDZ_ERR_FORMAT, "open brace" },
        { "{}", OCDZ_ERR_FORMAT, "empty object" },
        { "[]", OCDZ_ERR_FORMAT, "array" },
        { "null", OCDZ_ERR_FORMAT, "null" },
        { "\"iv\"", OCDZ_ERR_FORMAT, "string" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\"}", OCDZ_ERR_FORMAT,
          "iv alone" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\"}", OCDZ_ERR_FORMAT,
          "no authTag" },
        { "{\"authTag\":\"9c297171e1872cc7d8648f87df084254\",\"encryptedData"
          "\":\"7badff37b09a6985e5f5d91f\"}", OCDZ_ERR_FORMAT, "no iv" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"authTag\":\"9c2971"
          "71e1872cc7d8648f87df084254\"}", OCDZ_ERR_FORMAT,
          "no encryptedData" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",\"nonce\":\"yv66vvrO263eyviI\"}", OCDZ_ERR_FORMAT,
          "both shapes at once" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",\"iv\":\"cafebabefacedbaddecaf888deadbeef\"}",
          OCDZ_ERR_FORMAT, "duplicate iv" },
        { "{\"x\":1,\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedD"
          "ata\":\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7"
          "d8648f87df084254\",\"x\":2}", OCDZ_ERR_FORMAT,
          "duplicate unknown key" },
        { "{\"iv\":\"cafebabefacedbaddecaf888\",\"encryptedData\":\"7badff37"
          "b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f87df08425"
          "4\"}", OCDZ_ERR_AUTH, "12-byte iv accepted, wrong one fails" },
        { "{\"iv\":\"cafebabefacedbad\",\"encryptedData\":\"7badff37b09a6985"
          "e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}",
          OCDZ_ERR_FORMAT, "8-byte iv" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef00\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\"}", OCDZ_ERR_FORMAT, "17-byte iv" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91\",\"authTag\":\"9c297171e1872cc7d8648f8"
          "7df084254\"}", OCDZ_ERR_FORMAT, "odd hex length" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91g\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\"}", OCDZ_ERR_FORMAT, "non-hex ciphertext" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df08425\"}", OCDZ_ERR_FORMAT, "31 hex digits of tag" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df08425400\"}", OCDZ_ERR_FORMAT, "17-byte tag" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"\"}", OCDZ_ERR_FORMAT,
          "empty tag" },
        { "{\"iv\":null,\"encryptedData\":\"7badff37b09a6985e5f5d91f\",\"aut"
          "hTag\":\"9c297171e1872cc7d8648f87df084254\"}", OCDZ_ERR_FORMAT,
          "null iv" },
        { "{\"iv\":[\"cafebabefacedbaddecaf888deadbeef\"],\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\"}", OCDZ_ERR_FORMAT, "iv in an array" },
        { "{\"iv\":{},\"encryptedData\":\"7badff37b09a6985e5f5d91f\",\"authT"
          "ag\":\"9c297171e1872cc7d8648f87df084254\"}", OCDZ_ERR_FORMAT,
          "iv an object" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "1234,\"authTag\":\"9c297171e1872cc7d8648f87df084254\"}",
          OCDZ_ERR_FORMAT, "number as ciphertext" },
        { NODE_REC "x", OCDZ_ERR_FORMAT, "trailing garbage" },
        { NODE_REC NODE_REC, OCDZ_ERR_FORMAT, "two objects" },
        { "/* c */" NODE_REC, OCDZ_ERR_FORMAT, "comment" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",}", OCDZ_ERR_FORMAT, "trailing comma" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",\"x\":\"\xff\"}", OCDZ_ERR_FORMAT, "invalid UTF-8" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]"
          "]]]]]]]]]]]]]]]}", OCDZ_ERR_FORMAT, "deep nesting" },
        { "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\",\"encryptedData\":"
          "\"7badff37b09a6985e5f5d91f\",\"authTag\":\"9c297171e1872cc7d8648f"
          "87df084254\",\"x\":[[[{\"y\":[true,false,null,1.5e3]}]]]}",
          OCDZ_OK, "shallow nesting in an unknown key is fine" },
        { "{\"nonce\":\"yv66vvrO263eyviI\"}", OCDZ_ERR_FORMAT,
          "nonce alone" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNtqQ==\",\"authTag\":\"9c297171e1872cc7d86"
          "48f87df084254\"}", OCDZ_ERR_FORMAT, "nonce with authTag" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNtqQ\"}", OCDZ_ERR_FORMAT,
          "base64 without padding" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh_fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNtqQ==\"}", OCDZ_ERR_FORMAT,
          "base64url alphabet in standard base64" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNt\nqQ==\"}", OCDZ_ERR_FORMAT,
          "raw newline in a string" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNt\\nqQ==\"}", OCDZ_ERR_FORMAT,
          "newline inside base64" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNtq===\"}", OCDZ_ERR_FORMAT,
          "three padding characters" },
        { "{\"nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemz=HOhKTkCNtqQ==\"}", OCDZ_ERR_FORMAT,
          "padding inside base64" },
        { "{\"nonce\":\"yv66vvrO263eyviIAAAA\",\"encryptedData\":\"nh/fRtpy"
          "4kmnrkNDeMOVkzSemzlHOhKTkCNtqQ==\"}", OCDZ_ERR_FORMAT,
          "15-byte nonce" },
        { "{\"nonce\":\"yv66vvrO263eyviI3q2+7w==\",\"encryptedData\":\"nh/f"
          "Rtpy4kmnrkNDeMOVkzSemzlHOhKTkCNtqQ==\"}", OCDZ_ERR_FORMAT,
          "16-byte nonce" },
        { "{\"nonce\":\"\",\"encryptedData\":\"nh/fRtpy4kmnrkNDeMOVkzSemzlHO"
          "hKTkCNtqQ==\"}", OCDZ_ERR_FORMAT, "empty nonce" },
        { "{\"Nonce\":\"yv66vvrO263eyviI\",\"encryptedData\":\"nh/fRtpy4kmn"
          "rkNDeMOVkzSemzlHOhKTkCNtqQ==\"}", OCDZ_ERR_FORMAT,
          "key names are case-sensitive" },
    };

    memset(&ring, 0, sizeof(ring));
    ring_add(&ring, "k2026", K1_HEX, 1);

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char  name[160];

        snprintf(name, sizeof(name), "malformed: %s", cases[i].name);
        rc = open_str(&ring, TOPUP, cases[i].rec, strlen(cases[i].rec), out,
                      sizeof(out), NULL);
        is_int(rc, cases[i].rc, name);

        if (cases[i].rc == OCDZ_ERR_FORMAT) {
            snprintf(name, sizeof(name), "malformed: %s: no format",
                     cases[i].name);
            is_int(ocdz_record_format(cases[i].rec, strlen(cases[i].rec)),
                   OCDZ_FORMAT_NONE, name);
        }
    }

    /* NUL bytes, which a C string could not show */
    memcpy(rec, V1_REC, sizeof(V1_REC));
    rec[20] = '\0';
    is_int(open_str(&ring, TOPUP, rec, sizeof(V1_REC) - 1, out, sizeof(out),
                    NULL), OCDZ_ERR_FORMAT, "malformed: NUL in v1 payload");
    memcpy(rec, NODE_REC, sizeof(NODE_REC));
    rec[sizeof(NODE_REC) - 1] = '\0';
    is_int(open_str(&ring, TOPUP, rec, sizeof(NODE_REC), out, sizeof(out),
                    NULL), OCDZ_ERR_FORMAT, "malformed: NUL after JSON");
    is_int(open_str(&ring, TOPUP, V1_REC, sizeof(V1_REC), out, sizeof(out),
                    NULL), OCDZ_ERR_FORMAT, "malformed: NUL after v1");
    is_int(ocdz_open(cipher, &ring, TOPUP, strlen(TOPUP), NULL, 0,
                     (unsigned char *) out, OCDZ_PLAIN_MAX, &n, NULL),
           OCDZ_ERR_FORMAT, "malformed: NULL record");
    is_int(ocdz_record_format(NULL, 0), OCDZ_FORMAT_NONE,
           "malformed: NULL record has no format");

    /* huge */
    memset(rec, 'A', sizeof(rec));
    memcpy(rec, "ocdz1.k2026.", 12);
    is_int(open_str(&ring, TOPUP, rec, sizeof(rec), out, sizeof(out), NULL),
           OCDZ_ERR_TOO_LONG, "malformed: huge v1 record");
    is_int(open_str(&ring, TOPUP, rec, OCDZ_RECORD_MAX + 1, out,
                    sizeof(out), NULL),
           OCDZ_ERR_TOO_LONG, "malformed: OCDZ_RECORD_MAX + 1");
    is_int(ocdz_record_format(rec, OCDZ_RECORD_MAX + 1), OCDZ_FORMAT_NONE,
           "malformed: huge record has no format");

    n = (size_t) sprintf(rec, "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","
                         "\"authTag\":\"9c297171e1872cc7d8648f87df084254\","
                         "\"encryptedData\":\"");
    memset(rec + n, 'a', 2000);
    strcpy(rec + n + 2000, "\"}");
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_TOO_LONG,
           "malformed: huge JSON record");

    /* ciphertext just over OCDZ_PLAIN_MAX, within OCDZ_RECORD_MAX */
    memset(raw, 0x5a, sizeof(raw));
    ocdz_test_v1_record("k2026", raw,
                        OCDZ_NONCE_LEN + OCDZ_PLAIN_MAX + 1 + OCDZ_TAG_LEN,
                        rec);
    ok(strlen(rec) <= OCDZ_RECORD_MAX, "malformed: long v1 fits the cap");
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_TOO_LONG,
           "malformed: v1 ciphertext over OCDZ_PLAIN_MAX");
    ocdz_test_v1_record("k2026", raw,
                        OCDZ_NONCE_LEN + OCDZ_PLAIN_MAX + OCDZ_TAG_LEN, rec);
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "malformed: v1 of OCDZ_PLAIN_MAX random bytes fails auth");
    ocdz_test_v1_record("k2026", raw, OCDZ_NONCE_LEN + OCDZ_TAG_LEN, rec);
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_AUTH,
           "malformed: v1 nonce and tag only fails auth");
    ocdz_test_v1_record("k2026", raw, OCDZ_NONCE_LEN + OCDZ_TAG_LEN - 1, rec);
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "malformed: v1 one byte short of nonce and tag");

    n = (size_t) sprintf(rec, "{\"iv\":\"cafebabefacedbaddecaf888deadbeef\","
                         "\"authTag\":\"9c297171e1872cc7d8648f87df084254\","
                         "\"encryptedData\":\"");
    memset(rec + n, 'a', 2 * (OCDZ_PLAIN_MAX + 1));
    strcpy(rec + n + 2 * (OCDZ_PLAIN_MAX + 1), "\"}");
    ok(strlen(rec) <= OCDZ_RECORD_MAX, "malformed: long JSON fits the cap");
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_TOO_LONG,
           "malformed: hex ciphertext over OCDZ_PLAIN_MAX");

    /* many keys in the JSON */
    n = (size_t) sprintf(rec, "{");
    for (i = 0; i < 40; i++) {
        n += (size_t) sprintf(rec + n, "\"k%zu\":0,", i);
    }
    strcpy(rec + n, &NODE_REC[1]);
    is_int(open_rec(&ring, rec, out, sizeof(out)), OCDZ_ERR_FORMAT,
           "malformed: too many keys in the JSON");

    /* random bytes, and random mutations of valid records: never open,
     * never crash, never leave plaintext behind */
    seed = 12345;
    bad = 0;

    for (i = 0; i < 20000; i++) {
        const char  *base;

        base = (i % 3 == 0) ? V1_REC : (i % 3 == 1) ? NODE_REC : PY_REC;
        n = strlen(base);
        memcpy(rec, base, n);

        for (j = 0; j < 1 + i % 4; j++) {
            seed = seed * 1103515245 + 12345;
            rec[(seed >> 8) % n] = (char) (seed >> 20);
        }

        if (i % 5 == 0) {
            seed = seed * 1103515245 + 12345;
            n = (seed >> 8) % n;
        }

        rc = open_str(&ring, TOPUP, rec, n, out, sizeof(out), NULL);
        if (rc == OCDZ_OK && ocdz_record_format(rec, n) == OCDZ_FORMAT_NONE) {
            bad++;
        }

        if (rc < 0) {
            bad++;
        }
    }
    is_int(bad, 0, "malformed: 20000 mutations handled");

    ocdz_keyring_wipe(&ring);
}


/* the context is reused across calls with iv lengths 12 and 16 and both
 * directions: interleave them */
static void
test_cipher_reuse(void)
{
    int             rc, bad;
    char            rec[OCDZ_RECORD_MAX], out[OCDZ_PLAIN_MAX + 1];
    size_t          i, n;
    ocdz_keyring_t  ring;

    memset(&ring, 0, sizeof(ring));
    ring_add(&ring, "k2026", K1_HEX, 1);
    ring_add(&ring, "phpkey", K2_HEX, 0);

    bad = 0;

    for (i = 0; i < 200; i++) {
        rc = ocdz_seal(cipher, &ring, TOPUP, strlen(TOPUP),
                       (const unsigned char *) "123456789012", 12,
                       rec, sizeof(rec), &n);
        bad += rc != OCDZ_OK;

        bad += open_rec(&ring, NODE_REC, out, sizeof(out)) != OCDZ_OK
               || strcmp(out, "123456789012") != 0;
        bad += open_rec(&ring, rec, out, sizeof(out)) != OCDZ_OK
               || strcmp(out, "123456789012") != 0;
        bad += open_rec(&ring, PHP12_REC, out, sizeof(out)) != OCDZ_OK;
        bad += open_rec(&ring, PHP16_REC, out, sizeof(out)) != OCDZ_OK;
        bad += open_rec(&ring, PY_REC, out, sizeof(out)) != OCDZ_OK;
        bad += open_str(&ring, TOPUP2, rec, n, out, sizeof(out), NULL)
               != OCDZ_ERR_AUTH;
        bad += open_rec(&ring, V1_REC, out, sizeof(out)) != OCDZ_OK;
    }

    is_int(bad, 0, "reuse: 200 rounds of mixed operations on one context");

    ocdz_keyring_wipe(&ring);
}


static void
test_misc(void)
{
    int            i;
    unsigned char  buf[32];

    for (i = OCDZ_OK; i <= OCDZ_ERR_CRYPTO; i++) {
        ok(ocdz_rc_str(i) != NULL && ocdz_rc_str(i)[0] != '\0',
           "rc_str: every code has a text");
    }
    ok(ocdz_rc_str(-1) != NULL && ocdz_rc_str(99) != NULL,
       "rc_str: unknown codes have a text");

    memset(buf, 0xff, sizeof(buf));
    ocdz_wipe(buf, sizeof(buf));
    ok(ocdz_test_is_zero(buf, sizeof(buf)), "wipe: zeroes");
    ocdz_wipe(NULL, 10);
    ok(1, "wipe: NULL is fine");

    ocdz_cipher_free(NULL);
    ok(1, "cipher_free: NULL is fine");
    ocdz_keyring_wipe(NULL);
    ok(1, "keyring_wipe: NULL is fine");

    is_int(ocdz_seal_len(5, 12), 6 + 5 + 1 + 54, "seal_len: 40 bytes");
    is_int(ocdz_seal_len(1, 0), 6 + 1 + 1 + 38, "seal_len: 28 bytes");
    is_int(ocdz_seal_len(1, 1), 6 + 1 + 1 + 39, "seal_len: 29 bytes");
    is_int(ocdz_seal_len(1, 2), 6 + 1 + 1 + 40, "seal_len: 30 bytes");
}


int
main(void)
{
    cipher = ocdz_cipher_new();
    if (cipher == NULL) {
        printf("Bail out! ocdz_cipher_new failed\n");
        return 255;
    }

    test_key_decode();
    test_keyring();
    test_round_trip();
    test_tamper();
    test_rotation();
    test_vectors();
    test_malformed();
    test_cipher_reuse();
    test_misc();

    ocdz_cipher_free(cipher);

    return done_testing();
}
