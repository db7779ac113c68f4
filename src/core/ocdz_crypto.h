/*
 * Card encryption at rest: AES-256-GCM through OpenSSL EVP.
 *
 * Pure C, no nginx: shared by the module, the command-line tool, the
 * unit tests and the fuzzers.
 *
 * The module's own record ("v1"), stored as text:
 *
 *     ocdz1.<key id>.<base64url(nonce[12] || ciphertext || tag[16])>
 *
 * with associated data "ocdz1" NUL <key id> NUL <top-up id>, so a record
 * copied onto another order, or relabelled with another key id, fails
 * to authenticate.
 *
 * Legacy records written by the OneClickDz guide's recipes (no
 * associated data, tried against every key of the ring, current first):
 *
 *     {"iv":"<hex 16 bytes>","encryptedData":"<hex>","authTag":"<hex 16>"}
 *     {"nonce":"<base64 12 bytes>","encryptedData":"<base64 ct||tag16>"}
 *
 * Keys may come in any order, unknown keys are ignored, duplicate keys
 * refused. The hex shape also accepts a 12-byte iv: PHP code that sizes
 * the iv with openssl_cipher_iv_length("aes-256-gcm") writes one.
 * Tags are always exactly 16 bytes.
 */

#ifndef _OCDZ_CRYPTO_H_INCLUDED_
#define _OCDZ_CRYPTO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define OCDZ_KEY_LEN          32
#define OCDZ_NONCE_LEN        12
#define OCDZ_TAG_LEN          16
#define OCDZ_KEY_ID_MAX       32      /* [A-Za-z0-9_-]{1,32} */
#define OCDZ_KEYS_MAX         16
#define OCDZ_PLAIN_MAX        256     /* longest card code we seal or open */
#define OCDZ_RECORD_MAX       1024    /* longest stored record we accept */
#define OCDZ_TOPUP_ID_MAX     64

#define OCDZ_RECORD_PREFIX    "ocdz1"


typedef enum {
    OCDZ_OK = 0,
    OCDZ_ERR_FORMAT,        /* not a record we know, or malformed */
    OCDZ_ERR_KEY,           /* key id not in the ring */
    OCDZ_ERR_AUTH,          /* tag check failed: tampered, swapped, key */
    OCDZ_ERR_TOO_LONG,      /* input or output over the caps above */
    OCDZ_ERR_CRYPTO         /* OpenSSL itself failed */
} ocdz_rc_e;


typedef enum {
    OCDZ_FORMAT_NONE = 0,
    OCDZ_FORMAT_V1,         /* ours, bound to the order */
    OCDZ_FORMAT_GUIDE_HEX,  /* Node.js / PHP recipe: iv, encryptedData,
                               authTag as hex */
    OCDZ_FORMAT_GUIDE_B64   /* Python recipe: nonce, encryptedData as
                               base64, tag appended */
} ocdz_format_e;


typedef struct {
    char                  id[OCDZ_KEY_ID_MAX + 1];
    unsigned char         key[OCDZ_KEY_LEN];
} ocdz_key_t;


/*
 * Zero-initialise, then fill with ocdz_keyring_add(). Until a key is
 * added as current, the first key added is current.
 */
typedef struct {
    ocdz_key_t            keys[OCDZ_KEYS_MAX];
    size_t                nkeys;
    size_t                current;     /* index into keys */
} ocdz_keyring_t;


/* Reusable cipher context: one per worker (or per tool run). */
typedef struct ocdz_cipher_s  ocdz_cipher_t;


typedef struct {
    ocdz_format_e         format;
    char                  key_id[OCDZ_KEY_ID_MAX + 1];  /* key that
                                                           opened it, or
                                                           the record's */
} ocdz_open_info_t;


/* Overwrites memory in a way the compiler cannot drop. */
void ocdz_wipe(void *p, size_t n);

/* Key ids: 1-32 of [A-Za-z0-9_-]. */
int ocdz_key_id_valid(const char *id, size_t len);

/*
 * Decodes a key file's contents: exactly 64 hex digits, optionally
 * surrounded by white space (a trailing newline). Returns OCDZ_OK or
 * OCDZ_ERR_FORMAT with a reason in err (never containing key bytes).
 */
int ocdz_key_decode(const char *text, size_t len,
    unsigned char key[OCDZ_KEY_LEN], char *err, size_t errlen);

/*
 * Adds a key to the ring; refuses an invalid or duplicate id and more
 * than OCDZ_KEYS_MAX keys (reason in err). "current" makes it the key
 * new records are sealed with (the last one added so wins: callers that
 * want "exactly one current" check that themselves).
 */
int ocdz_keyring_add(ocdz_keyring_t *ring, const char *id, size_t id_len,
    const unsigned char key[OCDZ_KEY_LEN], int current, char *err,
    size_t errlen);

void ocdz_keyring_wipe(ocdz_keyring_t *ring);

ocdz_cipher_t *ocdz_cipher_new(void);
void ocdz_cipher_free(ocdz_cipher_t *c);

/* Length of the record ocdz_seal() writes for this key id and plaintext,
 * without the terminating NUL. */
size_t ocdz_seal_len(size_t key_id_len, size_t plain_len);

/*
 * Seals plain under the ring's current key, bound to topup_id, into out
 * (NUL-terminated); *out_len gets the length without the NUL.
 * out_size must be at least ocdz_seal_len() + 1.
 */
int ocdz_seal(ocdz_cipher_t *c, const ocdz_keyring_t *ring,
    const char *topup_id, size_t topup_id_len,
    const unsigned char *plain, size_t plain_len,
    char *out, size_t out_size, size_t *out_len);

/*
 * Opens a stored record of any format above into plain (capacity
 * plain_size, at least OCDZ_PLAIN_MAX); *plain_len gets its length.
 * On failure plain is wiped. info (may be NULL) tells the format and
 * key id, for logs.
 */
int ocdz_open(ocdz_cipher_t *c, const ocdz_keyring_t *ring,
    const char *topup_id, size_t topup_id_len,
    const char *record, size_t record_len,
    unsigned char *plain, size_t plain_size, size_t *plain_len,
    ocdz_open_info_t *info);

/*
 * Reports the format of a record without opening it: OCDZ_FORMAT_NONE
 * for anything ocdz_open() would refuse as malformed or too long.
 */
ocdz_format_e ocdz_record_format(const char *record, size_t len);

const char *ocdz_rc_str(int rc);


#endif /* _OCDZ_CRYPTO_H_INCLUDED_ */
