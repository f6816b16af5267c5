#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/crypto.h"

static void
assert_hex_equal(const uint8_t *bin, size_t len, const char *want)
{
	char hex[1024];

	assert_true(2 * len < sizeof(hex));
	mk_crypto_hex(bin, len, hex);
	assert_string_equal(hex, want);
}

/* A byte repeated, or counting from a start value, as the RFCs write. */
static size_t
fill(uint8_t *buf, size_t len, int start, int step)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (uint8_t)(start + step * (int)i);
	return len;
}

static void
test_crypto_sha256_known_answers(void **state)
{
	static const struct {
		const char *in;
		const char *out;
	} cases[] = {
		{ "",
		    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78"
		    "52"
		    "b855" },
		{ "abc",
		    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61"
		    "f20015ad" },
	};
	uint8_t out[MK_CRYPTO_HASH_LEN];
	struct mk_crypto_hash *h = NULL;
	struct mk_err err;
	size_t i;

	(void)state;
	assert_int_equal(mk_crypto_hash_new(NULL, &h, &err), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(mk_crypto_sha256(cases[i].in,
				     strlen(cases[i].in), out, &err),
		    0);
		assert_hex_equal(out, sizeof(out), cases[i].out);
		memset(out, 0, sizeof(out));
		assert_int_equal(mk_crypto_hash_digest(h, cases[i].in,
				     strlen(cases[i].in), out, &err),
		    0);
		assert_hex_equal(out, sizeof(out), cases[i].out);
	}
	mk_crypto_hash_free(&h);
	assert_null(h);
}

/* RFC 4231 test cases 1-4, 6 and 7 (5 truncates the output). */
static void
test_crypto_hmac_rfc4231(void **state)
{
	static const char tc6[] =
	    "Test Using Larger Than Block-Size Key - Hash Key First";
	static const char tc7[] =
	    "This is a test using a larger than block-size key and a larger "
	    "than block-size data. The key needs to be hashed before being "
	    "used by the HMAC algorithm.";
	uint8_t key[200], data[200], out[MK_CRYPTO_HASH_LEN];
	struct mk_crypto_hash *h = NULL;
	struct mk_err err;
	size_t klen, dlen;
	int tc;

	(void)state;
	for (tc = 1; tc <= 7; tc++) {
		const char *want;

		switch (tc) {
		case 1:
			klen = fill(key, 20, 0x0b, 0);
			memcpy(data, "Hi There", dlen = 8);
			want =
			    "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da7"
			    "26e9376c2e32cff7";
			break;
		case 2:
			memcpy(key, "Jefe", klen = 4);
			memcpy(data, "what do ya want for nothing?", dlen = 28);
			want =
			    "5bdcc146bf60754e6a042426089575c75a003f089d273983"
			    "9dec58b964ec3843";
			break;
		case 3:
			klen = fill(key, 20, 0xaa, 0);
			dlen = fill(data, 50, 0xdd, 0);
			want =
			    "773ea91e36800e46854db8ebd09181a72959098b3ef8c122"
			    "d9635514ced565fe";
			break;
		case 4:
			klen = fill(key, 25, 0x01, 1);
			dlen = fill(data, 50, 0xcd, 0);
			want =
			    "82558a389a443c0ea4cc819899f2083a85f0faa3e578f807"
			    "7a2e3ff46729665b";
			break;
		case 6:
			klen = fill(key, 131, 0xaa, 0);
			memcpy(data, tc6, dlen = strlen(tc6));
			want =
			    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c514"
			    "0546040f0ee37f54";
			break;
		case 7:
			klen = fill(key, 131, 0xaa, 0);
			dlen = strlen(tc7);
			assert_true(dlen <= sizeof(data));
			memcpy(data, tc7, dlen);
			want =
			    "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f071393"
			    "8a7f51535c3a35e2";
			break;
		default:
			continue;
		}
		assert_int_equal(
		    mk_crypto_hmac_sha256(key, klen, data, dlen, out, &err), 0);
		assert_hex_equal(out, sizeof(out), want);
	}
	/* The reusable hash object gives the same for a 32-byte key. */
	fill(key, 32, 0x42, 0);
	assert_int_equal(mk_crypto_hash_new(key, &h, &err), 0);
	assert_int_equal(mk_crypto_hash_digest(h, "abc", 3, data, &err), 0);
	assert_int_equal(
	    mk_crypto_hmac_sha256(key, 32, "abc", 3, out, &err), 0);
	assert_memory_equal(data, out, MK_CRYPTO_HASH_LEN);
	mk_crypto_hash_free(&h);
}

/* RFC 5869 test cases 1-3 (SHA-256). */
static void
test_crypto_hkdf_rfc5869(void **state)
{
	static const struct {
		size_t ikm_len;
		int ikm_start, ikm_step;
		size_t salt_len;
		int salt_start;
		size_t info_len;
		int info_start;
		size_t len;
		const char *okm;
	} cases[] = {
		{ 22, 0x0b, 0, 13, 0x00, 10, 0xf0, 42,
		    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ec"
		    "c4"
		    "c5bf34007208d5b887185865" },
		{ 80, 0x00, 1, 80, 0x60, 80, 0xb0, 82,
		    "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19"
		    "af"
		    "a97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793"
		    "a9"
		    "aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87" },
		{ 22, 0x0b, 0, 0, 0, 0, 0, 42,
		    "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c"
		    "73"
		    "8d2d9d201395faa4b61a96c8" },
	};
	uint8_t ikm[80], salt[80], info[80], out[82];
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fill(ikm, cases[i].ikm_len, cases[i].ikm_start,
		    cases[i].ikm_step);
		fill(salt, cases[i].salt_len, cases[i].salt_start, 1);
		fill(info, cases[i].info_len, cases[i].info_start, 1);
		assert_int_equal(
		    mk_crypto_hkdf_sha256(ikm, cases[i].ikm_len,
			cases[i].salt_len > 0 ? salt : NULL, cases[i].salt_len,
			info, cases[i].info_len, out, cases[i].len, &err),
		    0);
		assert_hex_equal(out, cases[i].len, cases[i].okm);
	}
	/* Output lengths: 0 and beyond 255 blocks are refused. */
	assert_int_equal(
	    mk_crypto_hkdf_sha256(ikm, 22, NULL, 0, "", 0, out, 0, &err), -1);
	assert_int_equal(mk_crypto_hkdf_sha256(
			     ikm, 22, NULL, 0, "", 0, out, 255 * 32 + 1, &err),
	    -1);
}

/* RFC 7914 section 12, the second vector, and the bounds. */
static void
test_crypto_scrypt_rfc7914_and_bounds(void **state)
{
	static const struct {
		uint64_t n;
		uint32_t r, p;
		int ok;
	} bounds[] = {
		{ 0, 8, 1, 0 },
		{ 1, 8, 1, 0 },
		{ 3, 8, 1, 0 },
		{ 2, 8, 1, 1 },
		{ MK_CRYPTO_SCRYPT_N_MAX * 2, 1, 1, 0 },
		{ 16, 0, 1, 0 },
		{ 16, MK_CRYPTO_SCRYPT_R_MAX + 1, 1, 0 },
		{ 16, 1, 0, 0 },
		{ 16, 1, MK_CRYPTO_SCRYPT_P_MAX + 1, 0 },
		{ MK_CRYPTO_SCRYPT_N_MAX, MK_CRYPTO_SCRYPT_R_MAX, 1, 0 },
	};
	struct mk_crypto_scrypt_params sp = { 1024, 8, 16 };
	uint8_t out[64];
	struct mk_err err;
	size_t i;

	(void)state;
	assert_int_equal(mk_crypto_scrypt("password", 8, "NaCl", 4, &sp, out,
			     sizeof(out), &err),
	    0);
	assert_hex_equal(out, sizeof(out),
	    "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
	    "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640");
	for (i = 0; i < sizeof(bounds) / sizeof(bounds[0]); i++) {
		sp.n = bounds[i].n;
		sp.r = bounds[i].r;
		sp.p = bounds[i].p;
		assert_int_equal(
		    mk_crypto_scrypt("pw", 2, "salt", 4, &sp, out, 32, &err),
		    bounds[i].ok ? 0 : -1);
	}
}

/* NIST GCM test cases 13 and 14 (AES-256, zero key and nonce). */
static void
test_crypto_aead_known_answers(void **state)
{
	uint8_t key[32] = { 0 }, nonce[12] = { 0 }, pt[16] = { 0 }, ct[16];
	uint8_t tag[16];
	struct mk_crypto_aead *a = NULL;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_crypto_aead_new(key, &a, &err), 0);
	assert_int_equal(
	    mk_crypto_aead_seal(a, nonce, NULL, 0, pt, 0, ct, tag, &err), 0);
	assert_hex_equal(tag, 16, "530f8afbc74536b9a963b4f1c4cb738b");
	assert_int_equal(
	    mk_crypto_aead_seal(a, nonce, NULL, 0, pt, 16, ct, tag, &err), 0);
	assert_hex_equal(ct, 16, "cea7403d4d606b6e074ec5d3baf39d18");
	assert_hex_equal(tag, 16, "d0d1c8a799996bf0265b98b5d48ab919");
	assert_int_equal(
	    mk_crypto_aead_open(a, nonce, NULL, 0, ct, 16, ct, tag, &err), 0);
	assert_memory_equal(ct, pt, 16);
	mk_crypto_aead_free(&a);
	assert_null(a);
}

/*
 * Round trips in place and out of place, then every way of getting it
 * wrong: key, nonce, aad, a bit of the ciphertext, a bit of the tag.
 */
static void
test_crypto_aead_round_trip_and_tampering(void **state)
{
	enum {
		WRONG_NONE,
		WRONG_KEY,
		WRONG_NONCE,
		WRONG_AAD,
		WRONG_CT,
		WRONG_TAG
	};
	static const size_t sizes[] = { 0, 1, 15, 16, 17, 4096, 100000 };
	uint8_t key[32], key2[32], nonce[12], tag[16];
	struct mk_crypto_aead *a = NULL, *b = NULL;
	struct mk_err err;
	size_t i;
	int how;

	(void)state;
	assert_int_equal(mk_crypto_random(key, sizeof(key), &err), 0);
	memcpy(key2, key, sizeof(key2));
	key2[31] ^= 1;
	assert_int_equal(mk_crypto_aead_new(key, &a, &err), 0);
	assert_int_equal(mk_crypto_aead_new(key2, &b, &err), 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		uint8_t *pt = malloc(len + 1), *ct = malloc(len + 1);
		uint8_t *back = malloc(len + 1);

		assert_int_equal(mk_crypto_random(pt, len + 1, &err), 0);
		for (how = WRONG_NONE; how <= WRONG_TAG; how++) {
			uint8_t n2[12];
			int rc;

			if (how == WRONG_CT && len == 0)
				continue;
			fill(nonce, sizeof(nonce), (int)i, 1);
			assert_int_equal(mk_crypto_aead_seal(a, nonce, "aad", 3,
					     pt, len, ct, tag, &err),
			    0);
			memcpy(n2, nonce, sizeof(n2));
			if (how == WRONG_NONCE)
				n2[11] ^= 0x80;
			if (how == WRONG_CT)
				ct[len / 2] ^= 4;
			if (how == WRONG_TAG)
				tag[15] ^= 1;
			rc = mk_crypto_aead_open(how == WRONG_KEY ? b : a, n2,
			    how == WRONG_AAD ? "aaD" : "aad", 3, ct, len, back,
			    tag, &err);
			if (how == WRONG_NONE) {
				assert_int_equal(rc, 0);
				assert_memory_equal(back, pt, len);
			} else {
				assert_int_equal(rc, -1);
				assert_string_equal(
				    err.msg, "authentication failed");
			}
		}
		/* In place. */
		memcpy(back, pt, len);
		assert_int_equal(mk_crypto_aead_seal(a, nonce, NULL, 0, back,
				     len, back, tag, &err),
		    0);
		assert_int_equal(mk_crypto_aead_open(a, nonce, NULL, 0, back,
				     len, back, tag, &err),
		    0);
		assert_memory_equal(back, pt, len);
		free(pt);
		free(ct);
		free(back);
	}
	mk_crypto_aead_free(&a);
	mk_crypto_aead_free(&b);
}

static void
test_crypto_hex_round_trip_and_refusals(void **state)
{
	static const struct {
		const char *hex;
		size_t len;
		int ok;
	} cases[] = {
		{ "", 0, 1 },
		{ "00ff", 2, 1 },
		{ "00FF", 2, 1 },
		{ "00f", 2, 0 },
		{ "00fff", 2, 0 },
		{ "0g", 1, 0 },
		{ " 0", 1, 0 },
	};
	uint8_t bin[8];
	char hex[17];
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(
		    mk_crypto_unhex(cases[i].hex, bin, cases[i].len, &err),
		    cases[i].ok ? 0 : -1);
	fill(bin, 8, 0xf8, 1);
	mk_crypto_hex(bin, 8, hex);
	assert_string_equal(hex, "f8f9fafbfcfdfeff");
}

static void
test_crypto_keys_generate_differ_and_wipe(void **state)
{
	struct mk_crypto_keys k1, k2, zero;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_crypto_keys_generate(&k1, &err), 0);
	assert_int_equal(mk_crypto_keys_generate(&k2, &err), 0);
	assert_true(k1.encrypted);
	assert_memory_not_equal(k1.data, k1.id, 32);
	assert_memory_not_equal(k1.data, k2.data, 32);
	mk_crypto_keys_wipe(&k1);
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&k1, &zero, sizeof(zero));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crypto_sha256_known_answers),
		cmocka_unit_test(test_crypto_hmac_rfc4231),
		cmocka_unit_test(test_crypto_hkdf_rfc5869),
		cmocka_unit_test(test_crypto_scrypt_rfc7914_and_bounds),
		cmocka_unit_test(test_crypto_aead_known_answers),
		cmocka_unit_test(test_crypto_aead_round_trip_and_tampering),
		cmocka_unit_test(test_crypto_hex_round_trip_and_refusals),
		cmocka_unit_test(test_crypto_keys_generate_differ_and_wipe),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
