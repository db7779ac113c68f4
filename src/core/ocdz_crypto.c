/*
 * Card encryption at rest: AES-256-GCM through OpenSSL EVP, the record
 * formats described in ocdz_crypto.h, strict decoders for them.
 *
 * Nothing here prints or logs: callers get a return code and, where
 * useful, a short reason that never contains key or card bytes.
 */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <yajl/yajl_parse.h>

#include "ocdz_crypto.h"


#define OCDZ_PREFIX_LEN      (sizeof(OCDZ_RECORD_PREFIX) - 1)
#define OCDZ_IV_GUIDE_LEN    16
#define OCDZ_IV_MAX          16

/* "ocdz1" NUL <key id> NUL <top-up id> */
#define OCDZ_AAD_MAX         (OCDZ_PREFIX_LEN + 1 + OCDZ_KEY_ID_MAX + 1     \
                              + OCDZ_TOPUP_ID_MAX)

/* the largest v1 payload: nonce, a longest plaintext, tag */
#define OCDZ_SEALED_MAX      (OCDZ_NONCE_LEN + OCDZ_PLAIN_MAX + OCDZ_TAG_LEN)

/* caps on the legacy JSON: a real record has three keys and no nesting */
#define OCDZ_JSON_DEPTH_MAX  16
#define OCDZ_JSON_KEYS_MAX   32


struct ocdz_cipher_s {
    EVP_CIPHER_CTX       *ctx;
    EVP_CIPHER           *aes;
};


/* a record taken apart, before any key is tried */
typedef struct {
    ocdz_format_e         format;
    const char           *key_id;      /* v1 only, points into the record */
    size_t                key_id_len;
    const unsigned char  *iv;
    size_t                iv_len;
    const unsigned char  *ct;
    size_t                ct_len;
    const unsigned char  *tag;
    unsigned char         buf[OCDZ_RECORD_MAX];
} ocdz_parsed_t;


/* the top-level fields of the legacy JSON we know */
enum {
    OCDZ_FIELD_IV = 0,
    OCDZ_FIELD_NONCE,
    OCDZ_FIELD_DATA,
    OCDZ_FIELD_TAG,
    OCDZ_FIELD_N,
    OCDZ_FIELD_OTHER = OCDZ_FIELD_N,
    OCDZ_FIELD_NONE
};


typedef struct {
    size_t                off;
    size_t                len;
} ocdz_span_t;


/* the legacy JSON parser's state: strings are copied into one arena,
 * which cannot overflow since decoded JSON never grows */
typedef struct {
    unsigned              depth;
    unsigned              top;
    unsigned              seen;        /* bit per OCDZ_FIELD_* */
    int                   pending;     /* field whose value comes next */
    size_t                nkeys;
    ocdz_span_t           keys[OCDZ_JSON_KEYS_MAX];
    ocdz_span_t           fields[OCDZ_FIELD_N];
    size_t                used;
    unsigned char         arena[OCDZ_RECORD_MAX];
} ocdz_json_t;


static void ocdz_set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static int ocdz_hex_value(int ch);
static int ocdz_hex_decode(const char *in, size_t len, unsigned char *out,
    size_t cap, size_t *out_len);
static int ocdz_b64_value(int ch, int url);
static int ocdz_b64_decode(const char *in, size_t len, int url,
    unsigned char *out, size_t cap, size_t *out_len);
static size_t ocdz_b64url_encode(const unsigned char *in, size_t len,
    char *out);
static size_t ocdz_aad(unsigned char *aad, const char *key_id,
    size_t key_id_len, const char *topup_id, size_t topup_id_len);
static int ocdz_gcm(ocdz_cipher_t *c, int enc, const unsigned char *key,
    const unsigned char *iv, size_t iv_len, const unsigned char *aad,
    size_t aad_len, const unsigned char *in, size_t in_len,
    unsigned char *out, unsigned char *tag);
static int ocdz_parse(const char *record, size_t len, ocdz_parsed_t *p);
static int ocdz_parse_v1(const char *record, size_t len, ocdz_parsed_t *p);
static int ocdz_parse_guide(const char *record, size_t len,
    ocdz_parsed_t *p);
static int ocdz_json_parse(const char *record, size_t len, ocdz_json_t *j);
static int ocdz_json_store(ocdz_json_t *j, const unsigned char *s,
    size_t len, ocdz_span_t *span);
static int ocdz_json_scalar(ocdz_json_t *j, int is_string,
    const unsigned char *s, size_t len);
static int ocdz_json_open(ocdz_json_t *j);
static int ocdz_json_null(void *ctx);
static int ocdz_json_boolean(void *ctx, int val);
static int ocdz_json_number(void *ctx, const char *s, size_t len);
static int ocdz_json_string(void *ctx, const unsigned char *s, size_t len);
static int ocdz_json_start_map(void *ctx);
static int ocdz_json_map_key(void *ctx, const unsigned char *s, size_t len);
static int ocdz_json_end(void *ctx);
static int ocdz_json_start_array(void *ctx);
static const ocdz_key_t *ocdz_keyring_find(const ocdz_keyring_t *ring,
    const char *id, size_t len);


static const char  ocdz_b64url_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static const char  *ocdz_field_names[OCDZ_FIELD_N] = {
    "iv", "nonce", "encryptedData", "authTag"
};

static const yajl_callbacks  ocdz_json_callbacks = {
    ocdz_json_null,
    ocdz_json_boolean,
    NULL,                       /* integers and doubles come as numbers */
    NULL,
    ocdz_json_number,
    ocdz_json_string,
    ocdz_json_start_map,
    ocdz_json_map_key,
    ocdz_json_end,
    ocdz_json_start_array,
    ocdz_json_end
};


void
ocdz_wipe(void *p, size_t n)
{
    if (p != NULL && n != 0) {
        OPENSSL_cleanse(p, n);
    }
}


int
ocdz_key_id_valid(const char *id, size_t len)
{
    size_t  i;
    int     ch;

    if (id == NULL || len == 0 || len > OCDZ_KEY_ID_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) id[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
        {
            return 0;
        }
    }

    return 1;
}


int
ocdz_key_decode(const char *text, size_t len,
    unsigned char key[OCDZ_KEY_LEN], char *err, size_t errlen)
{
    size_t          i, n;
    unsigned char   tmp[OCDZ_KEY_LEN];

    ocdz_wipe(key, OCDZ_KEY_LEN);

    if (text == NULL) {
        ocdz_set_err(err, errlen, "no key");
        return OCDZ_ERR_FORMAT;
    }

    while (len > 0 && (text[0] == ' ' || text[0] == '\t'
                       || text[0] == '\r' || text[0] == '\n'))
    {
        text++;
        len--;
    }

    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'
                       || text[len - 1] == '\r' || text[len - 1] == '\n'))
    {
        len--;
    }

    if (len != 2 * OCDZ_KEY_LEN) {
        ocdz_set_err(err, errlen,
                     "a key is %d hex digits, found %zu characters",
                     2 * OCDZ_KEY_LEN, len);
        return OCDZ_ERR_FORMAT;
    }

    /* find the offending offset first, so no key byte is decoded twice */
    for (i = 0; i < len; i++) {
        if (ocdz_hex_value((unsigned char) text[i]) < 0) {
            ocdz_set_err(err, errlen,
                         "a key is %d hex digits, found a non-hex "
                         "character at offset %zu", 2 * OCDZ_KEY_LEN, i);
            return OCDZ_ERR_FORMAT;
        }
    }

    if (ocdz_hex_decode(text, len, tmp, sizeof(tmp), &n) != OCDZ_OK
        || n != OCDZ_KEY_LEN)
    {
        ocdz_wipe(tmp, sizeof(tmp));
        ocdz_set_err(err, errlen, "invalid key");
        return OCDZ_ERR_FORMAT;
    }

    memcpy(key, tmp, OCDZ_KEY_LEN);
    ocdz_wipe(tmp, sizeof(tmp));

    return OCDZ_OK;
}


int
ocdz_keyring_add(ocdz_keyring_t *ring, const char *id, size_t id_len,
    const unsigned char key[OCDZ_KEY_LEN], int current, char *err,
    size_t errlen)
{
    ocdz_key_t  *k;

    if (ring == NULL || key == NULL) {
        ocdz_set_err(err, errlen, "no key ring or key");
        return OCDZ_ERR_FORMAT;
    }

    if (!ocdz_key_id_valid(id, id_len)) {
        ocdz_set_err(err, errlen, "invalid key id: 1 to %d characters of "
                     "A-Z a-z 0-9 _ -", OCDZ_KEY_ID_MAX);
        return OCDZ_ERR_FORMAT;
    }

    if (ocdz_keyring_find(ring, id, id_len) != NULL) {
        ocdz_set_err(err, errlen, "duplicate key id \"%.*s\"",
                     (int) id_len, id);
        return OCDZ_ERR_FORMAT;
    }

    if (ring->nkeys >= OCDZ_KEYS_MAX) {
        ocdz_set_err(err, errlen, "too many keys: at most %d",
                     OCDZ_KEYS_MAX);
        return OCDZ_ERR_TOO_LONG;
    }

    k = &ring->keys[ring->nkeys];
    memcpy(k->id, id, id_len);
    k->id[id_len] = '\0';
    memcpy(k->key, key, OCDZ_KEY_LEN);

    if (current || ring->nkeys == 0) {
        ring->current = ring->nkeys;
    }

    ring->nkeys++;

    return OCDZ_OK;
}


void
ocdz_keyring_wipe(ocdz_keyring_t *ring)
{
    if (ring != NULL) {
        OPENSSL_cleanse(ring, sizeof(ocdz_keyring_t));
    }
}


ocdz_cipher_t *
ocdz_cipher_new(void)
{
    ocdz_cipher_t  *c;

    c = OPENSSL_zalloc(sizeof(ocdz_cipher_t));
    if (c == NULL) {
        return NULL;
    }

    c->ctx = EVP_CIPHER_CTX_new();
    c->aes = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);

    /*
     * Set the cipher once; every later call only sets the iv length,
     * key, iv and direction, which keeps the provider context.
     */
    if (c->ctx == NULL || c->aes == NULL
        || EVP_CipherInit_ex2(c->ctx, c->aes, NULL, NULL, 1, NULL) != 1)
    {
        ocdz_cipher_free(c);
        return NULL;
    }

    return c;
}


void
ocdz_cipher_free(ocdz_cipher_t *c)
{
    if (c == NULL) {
        return;
    }

    /* freeing the context cleanses the key schedule in it */
    EVP_CIPHER_CTX_free(c->ctx);
    EVP_CIPHER_free(c->aes);
    OPENSSL_free(c);
}


size_t
ocdz_seal_len(size_t key_id_len, size_t plain_len)
{
    size_t  n;

    n = OCDZ_NONCE_LEN + plain_len + OCDZ_TAG_LEN;

    return OCDZ_PREFIX_LEN + 1 + key_id_len + 1 + (n / 3) * 4
           + (n % 3 ? n % 3 + 1 : 0);
}


int
ocdz_seal(ocdz_cipher_t *c, const ocdz_keyring_t *ring,
    const char *topup_id, size_t topup_id_len,
    const unsigned char *plain, size_t plain_len,
    char *out, size_t out_size, size_t *out_len)
{
    int                rc;
    char              *p;
    size_t             aad_len, need;
    const ocdz_key_t  *k;
    unsigned char      aad[OCDZ_AAD_MAX];
    unsigned char      sealed[OCDZ_SEALED_MAX];

    if (out_len != NULL) {
        *out_len = 0;
    }

    if (c == NULL || out == NULL || (plain == NULL && plain_len != 0)) {
        return OCDZ_ERR_CRYPTO;
    }

    if (out_size > 0) {
        out[0] = '\0';
    }

    if (ring == NULL || ring->nkeys == 0 || ring->current >= ring->nkeys) {
        return OCDZ_ERR_KEY;
    }

    if (topup_id == NULL || topup_id_len == 0) {
        return OCDZ_ERR_FORMAT;
    }

    if (topup_id_len > OCDZ_TOPUP_ID_MAX || plain_len > OCDZ_PLAIN_MAX) {
        return OCDZ_ERR_TOO_LONG;
    }

    k = &ring->keys[ring->current];

    need = ocdz_seal_len(strlen(k->id), plain_len);
    if (out_size < need + 1) {
        return OCDZ_ERR_TOO_LONG;
    }

    if (RAND_bytes(sealed, OCDZ_NONCE_LEN) != 1) {
        return OCDZ_ERR_CRYPTO;
    }

    aad_len = ocdz_aad(aad, k->id, strlen(k->id), topup_id, topup_id_len);

    rc = ocdz_gcm(c, 1, k->key, sealed, OCDZ_NONCE_LEN, aad, aad_len,
                  plain, plain_len, sealed + OCDZ_NONCE_LEN,
                  sealed + OCDZ_NONCE_LEN + plain_len);
    if (rc != OCDZ_OK) {
        return rc;
    }

    p = out;
    memcpy(p, OCDZ_RECORD_PREFIX, OCDZ_PREFIX_LEN);
    p += OCDZ_PREFIX_LEN;
    *p++ = '.';
    memcpy(p, k->id, strlen(k->id));
    p += strlen(k->id);
    *p++ = '.';
    p += ocdz_b64url_encode(sealed,
                            OCDZ_NONCE_LEN + plain_len + OCDZ_TAG_LEN, p);
    *p = '\0';

    if (out_len != NULL) {
        *out_len = (size_t) (p - out);
    }

    return OCDZ_OK;
}


int
ocdz_open(ocdz_cipher_t *c, const ocdz_keyring_t *ring,
    const char *topup_id, size_t topup_id_len,
    const char *record, size_t record_len,
    unsigned char *plain, size_t plain_size, size_t *plain_len,
    ocdz_open_info_t *info)
{
    int                rc;
    size_t             i, n, aad_len;
    const ocdz_key_t  *k;
    ocdz_parsed_t      p;
    unsigned char      aad[OCDZ_AAD_MAX];

    if (plain_len != NULL) {
        *plain_len = 0;
    }

    if (info != NULL) {
        memset(info, 0, sizeof(ocdz_open_info_t));
    }

    if (plain == NULL) {
        return OCDZ_ERR_CRYPTO;
    }

    if (c == NULL) {
        rc = OCDZ_ERR_CRYPTO;
        goto failed;
    }

    if (record == NULL) {
        rc = OCDZ_ERR_FORMAT;
        goto failed;
    }

    rc = ocdz_parse(record, record_len, &p);
    if (rc != OCDZ_OK) {
        goto failed;
    }

    if (info != NULL) {
        info->format = p.format;

        if (p.format == OCDZ_FORMAT_V1) {
            memcpy(info->key_id, p.key_id, p.key_id_len);
            info->key_id[p.key_id_len] = '\0';
        }
    }

    if (p.ct_len > plain_size) {
        rc = OCDZ_ERR_TOO_LONG;
        goto failed;
    }

    if (ring == NULL || ring->nkeys == 0 || ring->current >= ring->nkeys) {
        rc = OCDZ_ERR_KEY;
        goto failed;
    }

    if (p.format == OCDZ_FORMAT_V1) {

        if (topup_id == NULL || topup_id_len == 0) {
            rc = OCDZ_ERR_FORMAT;
            goto failed;
        }

        if (topup_id_len > OCDZ_TOPUP_ID_MAX) {
            rc = OCDZ_ERR_TOO_LONG;
            goto failed;
        }

        k = ocdz_keyring_find(ring, p.key_id, p.key_id_len);
        if (k == NULL) {
            rc = OCDZ_ERR_KEY;
            goto failed;
        }

        aad_len = ocdz_aad(aad, p.key_id, p.key_id_len, topup_id,
                           topup_id_len);

        rc = ocdz_gcm(c, 0, k->key, p.iv, p.iv_len, aad, aad_len,
                      p.ct, p.ct_len, plain, (unsigned char *) p.tag);
        if (rc != OCDZ_OK) {
            goto failed;
        }

    } else {

        /* no key id in the guide's records: current key first */
        rc = OCDZ_ERR_AUTH;
        k = NULL;

        for (n = 0; n < ring->nkeys; n++) {
            i = (n == 0) ? ring->current
                         : (n <= ring->current ? n - 1 : n);
            k = &ring->keys[i];

            rc = ocdz_gcm(c, 0, k->key, p.iv, p.iv_len, NULL, 0,
                          p.ct, p.ct_len, plain, (unsigned char *) p.tag);
            if (rc != OCDZ_ERR_AUTH) {
                break;
            }
        }

        if (rc != OCDZ_OK) {
            goto failed;
        }

        if (info != NULL) {
            memcpy(info->key_id, k->id, sizeof(k->id));
        }
    }

    if (plain_len != NULL) {
        *plain_len = p.ct_len;
    }

    return OCDZ_OK;

failed:

    /* GCM writes plaintext before the tag is checked */
    ocdz_wipe(plain, plain_size);

    return rc;
}


ocdz_format_e
ocdz_record_format(const char *record, size_t len)
{
    ocdz_parsed_t  p;

    if (record == NULL || ocdz_parse(record, len, &p) != OCDZ_OK) {
        return OCDZ_FORMAT_NONE;
    }

    return p.format;
}


const char *
ocdz_rc_str(int rc)
{
    switch (rc) {

    case OCDZ_OK:
        return "ok";

    case OCDZ_ERR_FORMAT:
        return "malformed or unknown record";

    case OCDZ_ERR_KEY:
        return "key id not in the key ring";

    case OCDZ_ERR_AUTH:
        return "authentication failed (tampered, moved or wrong key)";

    case OCDZ_ERR_TOO_LONG:
        return "too long";

    case OCDZ_ERR_CRYPTO:
        return "crypto library failure";

    default:
        return "unknown error";
    }
}


static void
ocdz_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    (void) vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


static const ocdz_key_t *
ocdz_keyring_find(const ocdz_keyring_t *ring, const char *id, size_t len)
{
    size_t  i;

    for (i = 0; i < ring->nkeys && i < OCDZ_KEYS_MAX; i++) {
        if (strlen(ring->keys[i].id) == len
            && memcmp(ring->keys[i].id, id, len) == 0)
        {
            return &ring->keys[i];
        }
    }

    return NULL;
}


static size_t
ocdz_aad(unsigned char *aad, const char *key_id, size_t key_id_len,
    const char *topup_id, size_t topup_id_len)
{
    unsigned char  *p;

    p = aad;
    memcpy(p, OCDZ_RECORD_PREFIX, OCDZ_PREFIX_LEN);
    p += OCDZ_PREFIX_LEN;
    *p++ = '\0';
    memcpy(p, key_id, key_id_len);
    p += key_id_len;
    *p++ = '\0';
    memcpy(p, topup_id, topup_id_len);
    p += topup_id_len;

    return (size_t) (p - aad);
}


/*
 * One AES-256-GCM operation on the reused context. Decrypting, tag is
 * the expected tag and a mismatch is OCDZ_ERR_AUTH; encrypting, tag
 * receives the 16-byte tag.
 */
static int
ocdz_gcm(ocdz_cipher_t *c, int enc, const unsigned char *key,
    const unsigned char *iv, size_t iv_len, const unsigned char *aad,
    size_t aad_len, const unsigned char *in, size_t in_len,
    unsigned char *out, unsigned char *tag)
{
    int            n;
    unsigned char  fin[EVP_MAX_BLOCK_LENGTH];

    /* the iv length stays from the last call: always set it */
    if (EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_SET_IVLEN, (int) iv_len,
                            NULL) != 1
        || EVP_CipherInit_ex2(c->ctx, NULL, key, iv, enc, NULL) != 1)
    {
        return OCDZ_ERR_CRYPTO;
    }

    if (aad_len > 0
        && EVP_CipherUpdate(c->ctx, NULL, &n, aad, (int) aad_len) != 1)
    {
        return OCDZ_ERR_CRYPTO;
    }

    if (in_len > 0
        && EVP_CipherUpdate(c->ctx, out, &n, in, (int) in_len) != 1)
    {
        return OCDZ_ERR_CRYPTO;
    }

    if (!enc) {
        if (EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_SET_TAG, OCDZ_TAG_LEN,
                                tag) != 1)
        {
            return OCDZ_ERR_CRYPTO;
        }

        if (EVP_CipherFinal_ex(c->ctx, fin, &n) != 1) {
            return OCDZ_ERR_AUTH;
        }

        return OCDZ_OK;
    }

    if (EVP_CipherFinal_ex(c->ctx, fin, &n) != 1
        || EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_GCM_GET_TAG, OCDZ_TAG_LEN,
                               tag) != 1)
    {
        return OCDZ_ERR_CRYPTO;
    }

    return OCDZ_OK;
}


static int
ocdz_parse(const char *record, size_t len, ocdz_parsed_t *p)
{
    p->format = OCDZ_FORMAT_NONE;
    p->key_id = NULL;
    p->key_id_len = 0;

    if (len == 0) {
        return OCDZ_ERR_FORMAT;
    }

    if (len > OCDZ_RECORD_MAX) {
        return OCDZ_ERR_TOO_LONG;
    }

    if (len > OCDZ_PREFIX_LEN
        && memcmp(record, OCDZ_RECORD_PREFIX, OCDZ_PREFIX_LEN) == 0
        && record[OCDZ_PREFIX_LEN] == '.')
    {
        return ocdz_parse_v1(record, len, p);
    }

    return ocdz_parse_guide(record, len, p);
}


/* ocdz1.<key id>.<base64url(nonce || ct || tag)> */
static int
ocdz_parse_v1(const char *record, size_t len, ocdz_parsed_t *p)
{
    size_t       n;
    const char  *id, *dot, *end;

    end = record + len;
    id = record + OCDZ_PREFIX_LEN + 1;

    dot = memchr(id, '.', (size_t) (end - id));
    if (dot == NULL || !ocdz_key_id_valid(id, (size_t) (dot - id))) {
        return OCDZ_ERR_FORMAT;
    }

    if (ocdz_b64_decode(dot + 1, (size_t) (end - dot - 1), 1, p->buf,
                        sizeof(p->buf), &n) != OCDZ_OK
        || n < OCDZ_NONCE_LEN + OCDZ_TAG_LEN)
    {
        return OCDZ_ERR_FORMAT;
    }

    if (n - OCDZ_NONCE_LEN - OCDZ_TAG_LEN > OCDZ_PLAIN_MAX) {
        return OCDZ_ERR_TOO_LONG;
    }

    p->format = OCDZ_FORMAT_V1;
    p->key_id = id;
    p->key_id_len = (size_t) (dot - id);
    p->iv = p->buf;
    p->iv_len = OCDZ_NONCE_LEN;
    p->ct = p->buf + OCDZ_NONCE_LEN;
    p->ct_len = n - OCDZ_NONCE_LEN - OCDZ_TAG_LEN;
    p->tag = p->buf + n - OCDZ_TAG_LEN;

    return OCDZ_OK;
}


/* the guide's JSON: hex iv/encryptedData/authTag, or base64 nonce and
 * encryptedData with the tag appended */
static int
ocdz_parse_guide(const char *record, size_t len, ocdz_parsed_t *p)
{
    int                  rc;
    size_t               n, iv_len;
    unsigned             seen;
    const char          *s;
    unsigned char       *b;
    const ocdz_span_t   *f;
    ocdz_json_t          j;

    rc = ocdz_json_parse(record, len, &j);
    if (rc != OCDZ_OK) {
        return rc;
    }

    seen = j.seen;
    f = j.fields;
    b = p->buf;

    if (seen & ((1u << OCDZ_FIELD_IV) | (1u << OCDZ_FIELD_TAG))) {

        if (seen != ((1u << OCDZ_FIELD_IV) | (1u << OCDZ_FIELD_TAG)
                     | (1u << OCDZ_FIELD_DATA)))
        {
            return OCDZ_ERR_FORMAT;
        }

        s = (const char *) j.arena;

        /* 16 bytes in the guide's recipes; 12 from some PHP code */
        if ((f[OCDZ_FIELD_IV].len != 2 * OCDZ_IV_GUIDE_LEN
             && f[OCDZ_FIELD_IV].len != 2 * OCDZ_NONCE_LEN)
            || ocdz_hex_decode(s + f[OCDZ_FIELD_IV].off,
                               f[OCDZ_FIELD_IV].len, b, OCDZ_IV_MAX,
                               &iv_len) != OCDZ_OK)
        {
            return OCDZ_ERR_FORMAT;
        }

        if (f[OCDZ_FIELD_TAG].len != 2 * OCDZ_TAG_LEN
            || ocdz_hex_decode(s + f[OCDZ_FIELD_TAG].off,
                               f[OCDZ_FIELD_TAG].len, b + OCDZ_IV_MAX,
                               OCDZ_TAG_LEN, &n) != OCDZ_OK)
        {
            return OCDZ_ERR_FORMAT;
        }

        if (f[OCDZ_FIELD_DATA].len > 2 * OCDZ_PLAIN_MAX) {
            return OCDZ_ERR_TOO_LONG;
        }

        if (ocdz_hex_decode(s + f[OCDZ_FIELD_DATA].off,
                            f[OCDZ_FIELD_DATA].len,
                            b + OCDZ_IV_MAX + OCDZ_TAG_LEN, OCDZ_PLAIN_MAX,
                            &n) != OCDZ_OK)
        {
            return OCDZ_ERR_FORMAT;
        }

        p->format = OCDZ_FORMAT_GUIDE_HEX;
        p->iv = b;
        p->iv_len = iv_len;
        p->tag = b + OCDZ_IV_MAX;
        p->ct = b + OCDZ_IV_MAX + OCDZ_TAG_LEN;
        p->ct_len = n;

        return OCDZ_OK;
    }

    if (seen != ((1u << OCDZ_FIELD_NONCE) | (1u << OCDZ_FIELD_DATA))) {
        return OCDZ_ERR_FORMAT;
    }

    s = (const char *) j.arena;

    if (ocdz_b64_decode(s + f[OCDZ_FIELD_NONCE].off, f[OCDZ_FIELD_NONCE].len,
                        0, b, OCDZ_IV_MAX, &iv_len) != OCDZ_OK
        || iv_len != OCDZ_NONCE_LEN)
    {
        return OCDZ_ERR_FORMAT;
    }

    if (ocdz_b64_decode(s + f[OCDZ_FIELD_DATA].off, f[OCDZ_FIELD_DATA].len,
                        0, b + OCDZ_IV_MAX, sizeof(p->buf) - OCDZ_IV_MAX,
                        &n) != OCDZ_OK
        || n < OCDZ_TAG_LEN)
    {
        /* shorter than a tag: a truncated tag, which we never accept */
        return OCDZ_ERR_FORMAT;
    }

    if (n - OCDZ_TAG_LEN > OCDZ_PLAIN_MAX) {
        return OCDZ_ERR_TOO_LONG;
    }

    p->format = OCDZ_FORMAT_GUIDE_B64;
    p->iv = b;
    p->iv_len = OCDZ_NONCE_LEN;
    p->ct = b + OCDZ_IV_MAX;
    p->ct_len = n - OCDZ_TAG_LEN;
    p->tag = b + OCDZ_IV_MAX + n - OCDZ_TAG_LEN;

    return OCDZ_OK;
}


static int
ocdz_json_parse(const char *record, size_t len, ocdz_json_t *j)
{
    yajl_handle  h;
    yajl_status  st;

    memset(j, 0, offsetof(ocdz_json_t, arena));
    j->pending = OCDZ_FIELD_NONE;

    /* the default options are the strict ones: no comments, UTF-8
     * checked, one value, no trailing garbage */
    h = yajl_alloc(&ocdz_json_callbacks, NULL, j);
    if (h == NULL) {
        return OCDZ_ERR_CRYPTO;
    }

    st = yajl_parse(h, (const unsigned char *) record, len);
    if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
    }

    yajl_free(h);

    if (st != yajl_status_ok || !j->top || j->depth != 0) {
        return OCDZ_ERR_FORMAT;
    }

    return OCDZ_OK;
}


static int
ocdz_json_store(ocdz_json_t *j, const unsigned char *s, size_t len,
    ocdz_span_t *span)
{
    if (len > sizeof(j->arena) - j->used) {
        return 0;
    }

    if (len > 0) {
        memcpy(j->arena + j->used, s, len);
    }

    span->off = j->used;
    span->len = len;
    j->used += len;

    return 1;
}


static int
ocdz_json_scalar(ocdz_json_t *j, int is_string, const unsigned char *s,
    size_t len)
{
    int  field;

    if (j->depth == 0) {
        return 0;                       /* the record must be an object */
    }

    if (j->depth > 1) {
        return 1;                       /* inside an unknown key's value */
    }

    field = j->pending;
    j->pending = OCDZ_FIELD_NONE;

    if (field >= OCDZ_FIELD_N) {
        return 1;
    }

    if (!is_string) {
        return 0;
    }

    if (!ocdz_json_store(j, s, len, &j->fields[field])) {
        return 0;
    }

    j->seen |= 1u << field;

    return 1;
}


static int
ocdz_json_open(ocdz_json_t *j)
{
    if (j->depth == 1) {
        if (j->pending < OCDZ_FIELD_N) {
            return 0;                   /* our fields are strings */
        }

        j->pending = OCDZ_FIELD_NONE;
    }

    if (++j->depth > OCDZ_JSON_DEPTH_MAX) {
        return 0;
    }

    return 1;
}


static int
ocdz_json_null(void *ctx)
{
    return ocdz_json_scalar(ctx, 0, NULL, 0);
}


static int
ocdz_json_boolean(void *ctx, int val)
{
    return ocdz_json_scalar(ctx, 0, NULL, 0);
}


static int
ocdz_json_number(void *ctx, const char *s, size_t len)
{
    return ocdz_json_scalar(ctx, 0, NULL, 0);
}


static int
ocdz_json_string(void *ctx, const unsigned char *s, size_t len)
{
    return ocdz_json_scalar(ctx, 1, s, len);
}


static int
ocdz_json_start_map(void *ctx)
{
    ocdz_json_t  *j = ctx;

    if (j->depth == 0) {
        j->top = 1;
        j->depth = 1;
        return 1;
    }

    return ocdz_json_open(j);
}


static int
ocdz_json_map_key(void *ctx, const unsigned char *s, size_t len)
{
    size_t        i;
    ocdz_json_t  *j = ctx;
    ocdz_span_t  *k;

    if (j->depth != 1) {
        return 1;
    }

    for (i = 0; i < j->nkeys; i++) {
        if (j->keys[i].len == len
            && memcmp(j->arena + j->keys[i].off, s, len) == 0)
        {
            return 0;                   /* duplicate key */
        }
    }

    if (j->nkeys == OCDZ_JSON_KEYS_MAX) {
        return 0;
    }

    k = &j->keys[j->nkeys];

    if (!ocdz_json_store(j, s, len, k)) {
        return 0;
    }

    j->nkeys++;
    j->pending = OCDZ_FIELD_OTHER;

    for (i = 0; i < OCDZ_FIELD_N; i++) {
        if (strlen(ocdz_field_names[i]) == len
            && memcmp(ocdz_field_names[i], s, len) == 0)
        {
            j->pending = (int) i;
            break;
        }
    }

    return 1;
}


static int
ocdz_json_end(void *ctx)
{
    ocdz_json_t  *j = ctx;

    if (j->depth == 0) {
        return 0;
    }

    j->depth--;

    return 1;
}


static int
ocdz_json_start_array(void *ctx)
{
    ocdz_json_t  *j = ctx;

    if (j->depth == 0) {
        return 0;                       /* the record must be an object */
    }

    return ocdz_json_open(j);
}


static int
ocdz_hex_value(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }

    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }

    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }

    return -1;
}


static int
ocdz_hex_decode(const char *in, size_t len, unsigned char *out, size_t cap,
    size_t *out_len)
{
    int     hi, lo;
    size_t  i;

    if (len % 2 != 0 || len / 2 > cap) {
        return OCDZ_ERR_FORMAT;
    }

    for (i = 0; i < len; i += 2) {
        hi = ocdz_hex_value((unsigned char) in[i]);
        lo = ocdz_hex_value((unsigned char) in[i + 1]);

        if (hi < 0 || lo < 0) {
            return OCDZ_ERR_FORMAT;
        }

        out[i / 2] = (unsigned char) (hi << 4 | lo);
    }

    *out_len = len / 2;

    return OCDZ_OK;
}


static int
ocdz_b64_value(int ch, int url)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }

    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }

    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }

    if (ch == (url ? '-' : '+')) {
        return 62;
    }

    if (ch == (url ? '_' : '/')) {
        return 63;
    }

    return -1;
}


/*
 * Strict base64: url selects the base64url alphabet without padding,
 * otherwise the standard alphabet with its padding. Characters outside
 * the alphabet, wrong lengths and non-zero unused bits are refused, so
 * each value has exactly one encoding.
 */
static int
ocdz_b64_decode(const char *in, size_t len, int url, unsigned char *out,
    size_t cap, size_t *out_len)
{
    int       v[4];
    size_t    i, k, n, rem;

    if (!url) {
        if (len % 4 != 0) {
            return OCDZ_ERR_FORMAT;
        }

        if (len > 0 && in[len - 1] == '=') {
            len--;

            if (in[len - 1] == '=') {
                len--;
            }
        }
    }

    rem = len % 4;

    if (rem == 1) {
        return OCDZ_ERR_FORMAT;
    }

    n = len / 4 * 3 + (rem ? rem - 1 : 0);
    if (n > cap) {
        return OCDZ_ERR_FORMAT;
    }

    for (i = 0, k = 0; i < len; i += 4) {
        v[0] = ocdz_b64_value((unsigned char) in[i], url);
        v[1] = ocdz_b64_value((unsigned char) in[i + 1], url);
        v[2] = (i + 2 < len) ? ocdz_b64_value((unsigned char) in[i + 2], url)
                             : 0;
        v[3] = (i + 3 < len) ? ocdz_b64_value((unsigned char) in[i + 3], url)
                             : 0;

        if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) {
            return OCDZ_ERR_FORMAT;
        }

        out[k++] = (unsigned char) (v[0] << 2 | v[1] >> 4);

        if (i + 2 < len) {
            out[k++] = (unsigned char) ((v[1] & 0x0f) << 4 | v[2] >> 2);

        } else if (v[1] & 0x0f) {
            return OCDZ_ERR_FORMAT;
        }

        if (i + 3 < len) {
            out[k++] = (unsigned char) ((v[2] & 0x03) << 6 | v[3]);

        } else if (i + 2 < len && (v[2] & 0x03)) {
            return OCDZ_ERR_FORMAT;
        }
    }

    *out_len = k;

    return OCDZ_OK;
}


static size_t
ocdz_b64url_encode(const unsigned char *in, size_t len, char *out)
{
    char          *p;
    size_t         i;
    unsigned long  v;

    p = out;

    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned long) in[i] << 16 | (unsigned long) in[i + 1] << 8
            | in[i + 2];
        *p++ = ocdz_b64url_chars[(v >> 18) & 0x3f];
        *p++ = ocdz_b64url_chars[(v >> 12) & 0x3f];
        *p++ = ocdz_b64url_chars[(v >> 6) & 0x3f];
        *p++ = ocdz_b64url_chars[v & 0x3f];
    }

    if (len - i == 1) {
        v = (unsigned long) in[i] << 16;
        *p++ = ocdz_b64url_chars[(v >> 18) & 0x3f];
        *p++ = ocdz_b64url_chars[(v >> 12) & 0x3f];

    } else if (len - i == 2) {
        v = (unsigned long) in[i] << 16 | (unsigned long) in[i + 1] << 8;
        *p++ = ocdz_b64url_chars[(v >> 18) & 0x3f];
        *p++ = ocdz_b64url_chars[(v >> 12) & 0x3f];
        *p++ = ocdz_b64url_chars[(v >> 6) & 0x3f];
    }

    return (size_t) (p - out);
}
