/*
 * crypto: the primitives of the backup repository, over OpenSSL 3 libcrypto.
 * With pack.c, the only module that includes OpenSSL headers.
 *
 * SHA-256, HMAC-SHA-256, HKDF-SHA-256 (RFC 5869), scrypt (RFC 7914),
 * AES-256-GCM with caller-chosen nonces, random bytes and key wiping.
 * Every OpenSSL failure becomes -1 with err set; nothing aborts on bad
 * input (a wrong key is an authentication failure, not a crash).
 *
 * Thread safety: the one-shot functions are safe from any thread.  A
 * struct mk_crypto_hash is read-only after creation and may be shared by
 * threads.  A struct mk_crypto_aead holds cipher state: one per thread.
 */
#ifndef MAILKEEP_CRYPTO_H
#define MAILKEEP_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

#define MK_CRYPTO_KEY_LEN 32 /* AES-256, HMAC and chunker keys */
#define MK_CRYPTO_HASH_LEN 32 /* SHA-256 and HMAC-SHA-256 output */
#define MK_CRYPTO_NONCE_LEN 12 /* AES-GCM nonce */
#define MK_CRYPTO_TAG_LEN 16 /* AES-GCM tag */

/*
 * The repository's master key: three independent random keys.  Key slots
 * wrap data || id || chunker (MK_CRYPTO_MASTER_LEN bytes, in that order).
 * For a repository without encryption, encrypted is false, data and id are
 * zero and chunker is derived from the repository id (it only hides chunk
 * boundaries, and there is nothing to hide).  Wipe with
 * mk_crypto_keys_wipe() when done.
 */
struct mk_crypto_keys {
	bool encrypted;
	uint8_t data[MK_CRYPTO_KEY_LEN]; /* pack keys derive from it */
	uint8_t id[MK_CRYPTO_KEY_LEN]; /* HMAC key of blob ids */
	uint8_t chunker[MK_CRYPTO_KEY_LEN]; /* gear table of the chunker */
};

#define MK_CRYPTO_MASTER_LEN (3 * MK_CRYPTO_KEY_LEN)

/* scrypt cost: N (a power of two), r, p, as in RFC 7914. */
struct mk_crypto_scrypt_params {
	uint64_t n;
	uint32_t r;
	uint32_t p;
};

/* The defaults for passphrase slots (32 MiB of memory, ~0.1 s). */
#define MK_CRYPTO_SCRYPT_N 32768
#define MK_CRYPTO_SCRYPT_R 8
#define MK_CRYPTO_SCRYPT_P 1
/* Upper bounds accepted when reading parameters from a key slot. */
#define MK_CRYPTO_SCRYPT_N_MAX (1ULL << 20)
#define MK_CRYPTO_SCRYPT_R_MAX 32
#define MK_CRYPTO_SCRYPT_P_MAX 16
#define MK_CRYPTO_SCRYPT_MEM_MAX (1ULL << 30)

/* Fill buf with len bytes from the OpenSSL CSPRNG. */
int mk_crypto_random(void *buf, size_t len, struct mk_err *err);

/* Overwrite len bytes at buf with zeros in a way the compiler keeps. */
void mk_crypto_wipe(void *buf, size_t len);

/* A new random master key (encrypted = true). */
int mk_crypto_keys_generate(struct mk_crypto_keys *keys, struct mk_err *err);

/* Wipe every key in keys. */
void mk_crypto_keys_wipe(struct mk_crypto_keys *keys);

/* SHA-256 of data into out. */
int mk_crypto_sha256(const void *data, size_t len,
    uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err);

/* HMAC-SHA-256 (RFC 2104) of data under key into out. */
int mk_crypto_hmac_sha256(const void *key, size_t keylen, const void *data,
    size_t len, uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err);

/*
 * HKDF-SHA-256 (RFC 5869, extract then expand) of key with salt and info
 * into outlen bytes at out (at most 255 * 32).  salt may be NULL with
 * saltlen 0.
 */
int mk_crypto_hkdf_sha256(const void *key, size_t keylen, const void *salt,
    size_t saltlen, const void *info, size_t infolen, void *out, size_t outlen,
    struct mk_err *err);

/*
 * scrypt of a passphrase with salt into outlen bytes at out.  Parameters
 * outside the bounds above are refused before any memory is used.
 */
int mk_crypto_scrypt(const char *pass, size_t passlen, const void *salt,
    size_t saltlen, const struct mk_crypto_scrypt_params *params, void *out,
    size_t outlen, struct mk_err *err);

/*
 * A hash with its algorithm fetched once: HMAC-SHA-256 under a key, or
 * plain SHA-256 when created with key NULL.  Read-only after creation:
 * mk_crypto_hash_digest() may run in several threads at once.  The key
 * is copied and wiped on free.
 */
struct mk_crypto_hash;

int mk_crypto_hash_new(
    const uint8_t *key, struct mk_crypto_hash **hash_r, struct mk_err *err);
int mk_crypto_hash_digest(const struct mk_crypto_hash *hash, const void *data,
    size_t len, uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err);
void mk_crypto_hash_free(struct mk_crypto_hash **hashp);

/*
 * AES-256-GCM under one key, keyed once and used for many messages.  The
 * caller picks the nonces and must never reuse one under the same key.
 * Not thread-safe: one per thread.  The key schedule is wiped on free.
 */
struct mk_crypto_aead;

int mk_crypto_aead_new(const uint8_t key[MK_CRYPTO_KEY_LEN],
    struct mk_crypto_aead **aead_r, struct mk_err *err);

/*
 * Encrypt len bytes from in to out (out may equal in) and write the tag.
 * aad (may be NULL with aadlen 0) is authenticated, not encrypted.
 */
int mk_crypto_aead_seal(struct mk_crypto_aead *aead,
    const uint8_t nonce[MK_CRYPTO_NONCE_LEN], const void *aad, size_t aadlen,
    const void *in, size_t len, void *out, uint8_t tag[MK_CRYPTO_TAG_LEN],
    struct mk_err *err);

/*
 * Decrypt len bytes from in to out (out may equal in) and check the tag.
 * On an authentication failure (wrong key, changed bytes, wrong aad)
 * returns -1 with err "authentication failed" and out is wiped.
 */
int mk_crypto_aead_open(struct mk_crypto_aead *aead,
    const uint8_t nonce[MK_CRYPTO_NONCE_LEN], const void *aad, size_t aadlen,
    const void *in, size_t len, void *out, const uint8_t tag[MK_CRYPTO_TAG_LEN],
    struct mk_err *err);

void mk_crypto_aead_free(struct mk_crypto_aead **aeadp);

/* The MD5 of data in base64 (24 characters), as S3's Content-MD5 wants;
 * for transfer integrity only, never for security. */
#define MK_CRYPTO_MD5_B64_LEN 24
int mk_crypto_md5_base64(const void *data, size_t len,
    char out[MK_CRYPTO_MD5_B64_LEN + 1], struct mk_err *err);

/* Lower-case hex of len bytes into hex, which holds 2 * len + 1. */
void mk_crypto_hex(const void *bin, size_t len, char *hex);

/* Parse exactly 2 * len hex digits (either case) into bin. */
int mk_crypto_unhex(const char *hex, void *bin, size_t len, struct mk_err *err);

#endif
