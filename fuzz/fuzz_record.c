/*
 * libFuzzer target for ocdz_crypto: a stored record as an attacker with
 * write access to the card column could shape it, opened with a fixed
 * ring of two keys for a fixed order; the same bytes as a key file and
 * a key id.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc/core \
 *       fuzz/fuzz_record.c src/core/ocdz_crypto.c -o fuzz_record \
 *       $(pkg-config --libs libcrypto yajl)
 *   ./fuzz_record -max_total_time=60 fuzz/corpus/record
 *
 * Besides crashes it checks the contract: a failed open leaves no
 * plaintext and no length, the format probe agrees with open, whatever
 * opens reseals and reopens to the same bytes.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocdz_crypto.h"
#include "ocdz_test.h"


/* the keys of t/unit/crypto_test.c, so its vectors make good seeds */
#define FUZZ_K1      OCDZ_TEST_K1_HEX
#define FUZZ_K2      OCDZ_TEST_K2_HEX
#define FUZZ_TOPUP   OCDZ_TEST_TOPUP


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static ocdz_cipher_t   *cipher;
static ocdz_keyring_t   ring;


#define check(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "fuzz_record: check failed: %s (line %d)\n",     \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)


static void
fuzz_init(void)
{
    unsigned char  key[OCDZ_KEY_LEN];

    cipher = ocdz_cipher_new();
    check(cipher != NULL);

    check(ocdz_key_decode(FUZZ_K1, 64, key, NULL, 0) == OCDZ_OK);
    check(ocdz_keyring_add(&ring, "k2026", 5, key, 1, NULL, 0) == OCDZ_OK);
    check(ocdz_key_decode(FUZZ_K2, 64, key, NULL, 0) == OCDZ_OK);
    check(ocdz_keyring_add(&ring, "phpkey", 6, key, 0, NULL, 0) == OCDZ_OK);
    ocdz_wipe(key, sizeof(key));
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc, rc2;
    char              err[256];
    char              rec[OCDZ_RECORD_MAX + 1];
    size_t            n, n2, rec_len;
    ocdz_format_e     fmt;
    ocdz_keyring_t    scratch;
    ocdz_open_info_t  info;
    unsigned char     key[OCDZ_KEY_LEN];
    unsigned char     plain[OCDZ_PLAIN_MAX], again[OCDZ_PLAIN_MAX];

    if (cipher == NULL) {
        fuzz_init();
    }

    /* as a stored record */
    fmt = ocdz_record_format((const char *) data, size);

    memset(plain, 0xa5, sizeof(plain));
    n = 12345;

    rc = ocdz_open(cipher, &ring, FUZZ_TOPUP, sizeof(FUZZ_TOPUP) - 1,
                   (const char *) data, size, plain, sizeof(plain), &n,
                   &info);

    check(rc >= OCDZ_OK && rc <= OCDZ_ERR_CRYPTO);
    check(ocdz_rc_str(rc) != NULL);
    check(memchr(info.key_id, '\0', sizeof(info.key_id)) != NULL);

    if (rc == OCDZ_OK) {
        check(fmt != OCDZ_FORMAT_NONE && info.format == fmt);
        check(n <= OCDZ_PLAIN_MAX);
        check(info.key_id[0] != '\0');

        rc2 = ocdz_seal(cipher, &ring, FUZZ_TOPUP, sizeof(FUZZ_TOPUP) - 1,
                        plain, n, rec, sizeof(rec), &rec_len);
        check(rc2 == OCDZ_OK);
        check(rec_len == ocdz_seal_len(5, n) && rec_len == strlen(rec));
        check(ocdz_record_format(rec, rec_len) == OCDZ_FORMAT_V1);

        rc2 = ocdz_open(cipher, &ring, FUZZ_TOPUP, sizeof(FUZZ_TOPUP) - 1,
                        rec, rec_len, again, sizeof(again), &n2, NULL);
        check(rc2 == OCDZ_OK && n2 == n && memcmp(again, plain, n) == 0);

        ocdz_wipe(again, sizeof(again));

    } else {
        check(n == 0);
        check(ocdz_test_is_zero(plain, sizeof(plain)));

        if (fmt == OCDZ_FORMAT_NONE) {
            check(rc == OCDZ_ERR_FORMAT || rc == OCDZ_ERR_TOO_LONG);
        }
    }

    ocdz_wipe(plain, sizeof(plain));

    /* as a key file */
    err[0] = '\0';
    rc = ocdz_key_decode((const char *) data, size, key, err, sizeof(err));
    check(rc == OCDZ_OK || (rc == OCDZ_ERR_FORMAT && err[0] != '\0'));

    if (rc != OCDZ_OK) {
        check(ocdz_test_is_zero(key, sizeof(key)));
    }

    /* as a key id */
    memset(&scratch, 0, sizeof(scratch));
    rc = ocdz_keyring_add(&scratch, (const char *) data, size, key, 1, err,
                          sizeof(err));
    check((rc == OCDZ_OK) == ocdz_key_id_valid((const char *) data, size));

    if (rc == OCDZ_OK) {
        check(scratch.nkeys == 1 && strlen(scratch.keys[0].id) == size);
    }

    ocdz_keyring_wipe(&scratch);
    ocdz_wipe(key, sizeof(key));

    return 0;
}
