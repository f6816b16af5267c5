#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "mailkeep/crypto.h"
#include "mailkeep/mem.h"

struct mk_crypto_hash {
	EVP_MAC *mac; /* NULL for plain SHA-256 */
	EVP_MD *md;
	uint8_t key[MK_CRYPTO_KEY_LEN];
};

struct mk_crypto_aead {
	EVP_CIPHER_CTX *enc;
	EVP_CIPHER_CTX *dec;
};

/*
 * Fail with what OpenSSL said last, and empty its error queue so that a
 * later message is not blamed on an old error.
 */
static int
crypto_error(struct mk_err *err, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256];

	if (e == 0) {
		ERR_clear_error();
		return mk_err_set(err, "%s: failed", what);
	}
	ERR_error_string_n(e, reason, sizeof(reason));
	ERR_clear_error();
	return mk_err_set(err, "%s: %s", what, reason);
}

int
mk_crypto_random(void *buf, size_t len, struct mk_err *err)
{
	if (len > INT_MAX)
		return mk_err_set(
		    err, "RAND_bytes: %zu bytes is too many", len);
	if (RAND_bytes(buf, (int)len) != 1)
		return crypto_error(err, "RAND_bytes");
	return 0;
}

void
mk_crypto_wipe(void *buf, size_t len)
{
	if (buf != NULL)
		OPENSSL_cleanse(buf, len);
}

int
mk_crypto_keys_generate(struct mk_crypto_keys *keys, struct mk_err *err)
{
	keys->encrypted = true;
	if (mk_crypto_random(keys->data, sizeof(keys->data), err) < 0 ||
	    mk_crypto_random(keys->id, sizeof(keys->id), err) < 0 ||
	    mk_crypto_random(keys->chunker, sizeof(keys->chunker), err) < 0) {
		mk_crypto_keys_wipe(keys);
		return -1;
	}
	return 0;
}

void
mk_crypto_keys_wipe(struct mk_crypto_keys *keys)
{
	mk_crypto_wipe(keys, sizeof(*keys));
}

int
mk_crypto_sha256(const void *data, size_t len, uint8_t out[MK_CRYPTO_HASH_LEN],
    struct mk_err *err)
{
	unsigned int outlen = 0;

	if (EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL) != 1)
		return crypto_error(err, "EVP_Digest(SHA-256)");
	if (outlen != MK_CRYPTO_HASH_LEN)
		return mk_err_set(err, "EVP_Digest(SHA-256): %u bytes", outlen);
	return 0;
}

int
mk_crypto_md5_base64(const void *data, size_t len,
    char out[MK_CRYPTO_MD5_B64_LEN + 1], struct mk_err *err)
{
	unsigned char md[16];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_md5(), NULL) != 1 ||
	    mdlen != sizeof(md))
		return crypto_error(err, "EVP_Digest(MD5)");
	if (EVP_EncodeBlock((unsigned char *)out, md, sizeof(md)) !=
	    MK_CRYPTO_MD5_B64_LEN)
		return crypto_error(err, "EVP_EncodeBlock");
	return 0;
}

/* HMAC-SHA-256 with an already fetched EVP_MAC. */
static int
crypto_hmac(EVP_MAC *mac, const void *key, size_t keylen, const void *data,
    size_t len, uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err)
{
	OSSL_PARAM params[2];
	EVP_MAC_CTX *ctx = NULL;
	size_t outlen = 0;
	int rc = -1;

	params[0] = OSSL_PARAM_construct_utf8_string(
	    OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((ctx = EVP_MAC_CTX_new(mac)) == NULL) {
		crypto_error(err, "EVP_MAC_CTX_new(HMAC)");
		goto out;
	}
	if (EVP_MAC_init(ctx, key, keylen, params) != 1) {
		crypto_error(err, "EVP_MAC_init(HMAC)");
		goto out;
	}
	if (EVP_MAC_update(ctx, data, len) != 1) {
		crypto_error(err, "EVP_MAC_update(HMAC)");
		goto out;
	}
	if (EVP_MAC_final(ctx, out, &outlen, MK_CRYPTO_HASH_LEN) != 1) {
		crypto_error(err, "EVP_MAC_final(HMAC)");
		goto out;
	}
	if (outlen != MK_CRYPTO_HASH_LEN) {
		mk_err_set(err, "EVP_MAC_final(HMAC): %zu bytes", outlen);
		goto out;
	}
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	return rc;
}

int
mk_crypto_hmac_sha256(const void *key, size_t keylen, const void *data,
    size_t len, uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err)
{
	EVP_MAC *mac;
	int rc;

	if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
		return crypto_error(err, "EVP_MAC_fetch(HMAC)");
	rc = crypto_hmac(mac, key, keylen, data, len, out, err);
	EVP_MAC_free(mac);
	return rc;
}

/* Run the EVP_KDF named name with params into outlen bytes at out. */
static int
crypto_kdf(const char *name, const OSSL_PARAM *params, void *out, size_t outlen,
    struct mk_err *err)
{
	EVP_KDF_CTX *ctx = NULL;
	EVP_KDF *kdf;
	int rc = -1;

	if ((kdf = EVP_KDF_fetch(NULL, name, NULL)) == NULL)
		return crypto_error(err, name);
	if ((ctx = EVP_KDF_CTX_new(kdf)) == NULL) {
		crypto_error(err, "EVP_KDF_CTX_new");
		goto out;
	}
	if (EVP_KDF_derive(ctx, out, outlen, params) != 1) {
		mk_crypto_wipe(out, outlen);
		crypto_error(err, name);
		goto out;
	}
	rc = 0;
out:
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

int
mk_crypto_hkdf_sha256(const void *key, size_t keylen, const void *salt,
    size_t saltlen, const void *info, size_t infolen, void *out, size_t outlen,
    struct mk_err *err)
{
	OSSL_PARAM params[5], *p = params;

	if (outlen == 0 || outlen > 255 * MK_CRYPTO_HASH_LEN)
		return mk_err_set(
		    err, "HKDF: output of %zu bytes not allowed", outlen);
	*p++ = OSSL_PARAM_construct_utf8_string(
	    OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_KEY, (void *)key, keylen);
	if (saltlen > 0)
		*p++ = OSSL_PARAM_construct_octet_string(
		    OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
	*p++ = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_INFO, (void *)info, infolen);
	*p = OSSL_PARAM_construct_end();
	return crypto_kdf("HKDF", params, out, outlen, err);
}

int
mk_crypto_scrypt(const char *pass, size_t passlen, const void *salt,
    size_t saltlen, const struct mk_crypto_scrypt_params *sp, void *out,
    size_t outlen, struct mk_err *err)
{
	OSSL_PARAM params[7], *p = params;
	uint64_t n = sp->n, r = sp->r, pp = sp->p, maxmem;

	if (n < 2 || n > MK_CRYPTO_SCRYPT_N_MAX || (n & (n - 1)) != 0)
		return mk_err_set(err,
		    "scrypt: N=%llu is not a power of two in 2..%llu",
		    (unsigned long long)n,
		    (unsigned long long)MK_CRYPTO_SCRYPT_N_MAX);
	if (r < 1 || r > MK_CRYPTO_SCRYPT_R_MAX || pp < 1 ||
	    pp > MK_CRYPTO_SCRYPT_P_MAX)
		return mk_err_set(err, "scrypt: r=%llu p=%llu out of range",
		    (unsigned long long)r, (unsigned long long)pp);
	if (128 * r * n > MK_CRYPTO_SCRYPT_MEM_MAX)
		return mk_err_set(err,
		    "scrypt: N=%llu r=%llu needs too much "
		    "memory",
		    (unsigned long long)n, (unsigned long long)r);
	/* OpenSSL's own default ceiling (32 MiB) is below our default cost. */
	maxmem = 128 * r * n + 128 * r * pp + (1 << 20);
	*p++ = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_PASSWORD, (void *)pass, passlen);
	*p++ = OSSL_PARAM_construct_octet_string(
	    OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
	*p++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
	*p++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_R, &r);
	*p++ = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_P, &pp);
	*p++ =
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
	*p = OSSL_PARAM_construct_end();
	return crypto_kdf("SCRYPT", params, out, outlen, err);
}

int
mk_crypto_hash_new(
    const uint8_t *key, struct mk_crypto_hash **hash_r, struct mk_err *err)
{
	struct mk_crypto_hash *hash = mk_xcalloc(1, sizeof(*hash));
	int rc = -1;

	*hash_r = NULL;
	if (key != NULL) {
		if ((hash->mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
			crypto_error(err, "EVP_MAC_fetch(HMAC)");
			goto out;
		}
		memcpy(hash->key, key, sizeof(hash->key));
	} else if ((hash->md = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		crypto_error(err, "EVP_MD_fetch(SHA256)");
		goto out;
	}
	*hash_r = hash;
	hash = NULL;
	rc = 0;
out:
	mk_crypto_hash_free(&hash);
	return rc;
}

int
mk_crypto_hash_digest(const struct mk_crypto_hash *hash, const void *data,
    size_t len, uint8_t out[MK_CRYPTO_HASH_LEN], struct mk_err *err)
{
	unsigned int outlen = 0;

	if (hash->mac != NULL)
		return crypto_hmac(hash->mac, hash->key, sizeof(hash->key),
		    data, len, out, err);
	if (EVP_Digest(data, len, out, &outlen, hash->md, NULL) != 1)
		return crypto_error(err, "EVP_Digest(SHA-256)");
	if (outlen != MK_CRYPTO_HASH_LEN)
		return mk_err_set(err, "EVP_Digest(SHA-256): %u bytes", outlen);
	return 0;
}

void
mk_crypto_hash_free(struct mk_crypto_hash **hashp)
{
	struct mk_crypto_hash *hash = *hashp;

	if (hash == NULL)
		return;
	EVP_MAC_free(hash->mac);
	EVP_MD_free(hash->md);
	mk_crypto_wipe(hash->key, sizeof(hash->key));
	free(hash);
	*hashp = NULL;
}

int
mk_crypto_aead_new(const uint8_t key[MK_CRYPTO_KEY_LEN],
    struct mk_crypto_aead **aead_r, struct mk_err *err)
{
	struct mk_crypto_aead *aead = mk_xcalloc(1, sizeof(*aead));
	int rc = -1;

	*aead_r = NULL;
	if ((aead->enc = EVP_CIPHER_CTX_new()) == NULL ||
	    (aead->dec = EVP_CIPHER_CTX_new()) == NULL) {
		crypto_error(err, "EVP_CIPHER_CTX_new");
		goto out;
	}
	/* Key both directions now; each message then only sets its nonce. */
	if (EVP_EncryptInit_ex2(
		aead->enc, EVP_aes_256_gcm(), key, NULL, NULL) != 1 ||
	    EVP_DecryptInit_ex2(
		aead->dec, EVP_aes_256_gcm(), key, NULL, NULL) != 1) {
		crypto_error(err, "EVP_CipherInit(AES-256-GCM)");
		goto out;
	}
	*aead_r = aead;
	aead = NULL;
	rc = 0;
out:
	mk_crypto_aead_free(&aead);
	return rc;
}

int
mk_crypto_aead_seal(struct mk_crypto_aead *aead,
    const uint8_t nonce[MK_CRYPTO_NONCE_LEN], const void *aad, size_t aadlen,
    const void *in, size_t len, void *out, uint8_t tag[MK_CRYPTO_TAG_LEN],
    struct mk_err *err)
{
	EVP_CIPHER_CTX *ctx = aead->enc;
	int n;

	if (len > INT_MAX || aadlen > INT_MAX)
		return mk_err_set(err, "AES-GCM: message too long");
	if (EVP_EncryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1)
		return crypto_error(err, "EVP_EncryptInit_ex2(nonce)");
	if (aadlen > 0 &&
	    EVP_EncryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
		return crypto_error(err, "EVP_EncryptUpdate(aad)");
	if (len > 0 && EVP_EncryptUpdate(ctx, out, &n, in, (int)len) != 1)
		return crypto_error(err, "EVP_EncryptUpdate");
	if (EVP_EncryptFinal_ex(ctx, (unsigned char *)out + len, &n) != 1)
		return crypto_error(err, "EVP_EncryptFinal_ex");
	if (EVP_CIPHER_CTX_ctrl(
		ctx, EVP_CTRL_GCM_GET_TAG, MK_CRYPTO_TAG_LEN, tag) != 1)
		return crypto_error(err, "EVP_CIPHER_CTX_ctrl(GET_TAG)");
	return 0;
}

int
mk_crypto_aead_open(struct mk_crypto_aead *aead,
    const uint8_t nonce[MK_CRYPTO_NONCE_LEN], const void *aad, size_t aadlen,
    const void *in, size_t len, void *out, const uint8_t tag[MK_CRYPTO_TAG_LEN],
    struct mk_err *err)
{
	EVP_CIPHER_CTX *ctx = aead->dec;
	int n;

	if (len > INT_MAX || aadlen > INT_MAX)
		return mk_err_set(err, "AES-GCM: message too long");
	if (EVP_DecryptInit_ex2(ctx, NULL, NULL, nonce, NULL) != 1)
		return crypto_error(err, "EVP_DecryptInit_ex2(nonce)");
	if (aadlen > 0 &&
	    EVP_DecryptUpdate(ctx, NULL, &n, aad, (int)aadlen) != 1)
		return crypto_error(err, "EVP_DecryptUpdate(aad)");
	if (len > 0 && EVP_DecryptUpdate(ctx, out, &n, in, (int)len) != 1)
		return crypto_error(err, "EVP_DecryptUpdate");
	if (EVP_CIPHER_CTX_ctrl(
		ctx, EVP_CTRL_GCM_SET_TAG, MK_CRYPTO_TAG_LEN, (void *)tag) != 1)
		return crypto_error(err, "EVP_CIPHER_CTX_ctrl(SET_TAG)");
	if (EVP_DecryptFinal_ex(ctx, (unsigned char *)out + len, &n) != 1) {
		/* A tag mismatch leaves nothing on OpenSSL's error queue. */
		ERR_clear_error();
		mk_crypto_wipe(out, len);
		return mk_err_set(err, "authentication failed");
	}
	return 0;
}

void
mk_crypto_aead_free(struct mk_crypto_aead **aeadp)
{
	struct mk_crypto_aead *aead = *aeadp;

	if (aead == NULL)
		return;
	/* EVP_CIPHER_CTX_free cleanses the key schedule. */
	EVP_CIPHER_CTX_free(aead->enc);
	EVP_CIPHER_CTX_free(aead->dec);
	free(aead);
	*aeadp = NULL;
}

void
mk_crypto_hex(const void *bin, size_t len, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	const uint8_t *p = bin;
	size_t i;

	for (i = 0; i < len; i++) {
		hex[2 * i] = digits[p[i] >> 4];
		hex[2 * i + 1] = digits[p[i] & 0xf];
	}
	hex[2 * len] = '\0';
}

/* The value of one hex digit, or -1. */
static int
crypto_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
mk_crypto_unhex(const char *hex, void *bin, size_t len, struct mk_err *err)
{
	uint8_t *p = bin;
	size_t i;

	if (strnlen(hex, 2 * len + 1) != 2 * len)
		return mk_err_set(err, "expected %zu hex digits", 2 * len);
	for (i = 0; i < len; i++) {
		int hi = crypto_hexval(hex[2 * i]);
		int lo = crypto_hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0) {
			/* The text may be a key: do not quote it. */
			mk_crypto_wipe(bin, len);
			return mk_err_set(
			    err, "not a hex digit at position %zu", 2 * i);
		}
		p[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
