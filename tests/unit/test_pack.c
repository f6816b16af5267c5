#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/pack.h"

static struct mk_crypto_keys keys_enc, keys_plain;

static uint64_t rng_state;

static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Mail-like text (compresses) or random bytes (does not). */
static uint8_t *
make_blob(size_t len, bool text)
{
	static const char *words[] = { "Received: from mx.example.org ",
		"by mail.example.com (Postfix) ", "with ESMTPS id ",
		"Subject: ", "the quarterly report ",
		"Content-Type: text/plain\n", "Hello ", "regards, ", "\n",
		"attachment ", "meeting tomorrow ", "Bob " };
	uint8_t *p = malloc(len + 1);
	size_t i = 0;

	assert_non_null(p);
	while (i < len) {
		if (text) {
			const char *w = words[rng() % 12];
			size_t n = strlen(w);

			if (n > len - i)
				n = len - i;
			memcpy(p + i, w, n);
			i += n;
		} else
			p[i++] = (uint8_t)rng();
	}
	return p;
}

static void
blob_id(const struct mk_crypto_keys *keys, const void *data, size_t len,
    uint8_t id[MK_PACK_ID_LEN])
{
	struct mk_crypto_hash *h = NULL;
	struct mk_err err;

	assert_int_equal(mk_pack_id_hash_new(keys, &h, &err), 0);
	assert_int_equal(mk_crypto_hash_digest(h, data, len, id, &err), 0);
	mk_crypto_hash_free(&h);
}

static int
pack_setup(void **state)
{
	struct mk_err err;

	(void)state;
	rng_state = 88172645463325252ULL;
	assert_int_equal(mk_crypto_keys_generate(&keys_enc, &err), 0);
	memset(&keys_plain, 0, sizeof(keys_plain));
	return 0;
}

struct blobset {
	uint8_t *data[600];
	size_t len[600];
	uint8_t id[600][MK_PACK_ID_LEN];
	size_t n;
};

static void
blobset_free(struct blobset *bs)
{
	size_t i;

	for (i = 0; i < bs->n; i++)
		free(bs->data[i]);
	bs->n = 0;
}

/* Write a blob set into one pack. */
static struct mk_pack *
write_pack(const struct mk_crypto_keys *keys, struct blobset *bs, int level)
{
	struct mk_pack_opts opts = { MK_PACK_SIZE_MAX, level };
	struct mk_pack_writer *w = NULL;
	struct mk_pack *pack = NULL;
	struct mk_err err;
	size_t i;

	assert_int_equal(mk_pack_writer_new(keys, &opts, &w, &err), 0);
	for (i = 0; i < bs->n; i++)
		if (mk_pack_writer_add(w, MK_PACK_TYPE_BODY + (int)(i % 3),
			bs->id[i], bs->data[i], bs->len[i], NULL, NULL,
			&err) < 0)
			fail_msg("add %zu: %s", i, err.msg);
	assert_int_equal(mk_pack_writer_count(w), bs->n);
	if (mk_pack_writer_finish(w, &pack, &err) < 0)
		fail_msg("finish: %s", err.msg);
	assert_int_equal(mk_pack_writer_size(w), 0);
	mk_pack_writer_free(&w);
	assert_null(w);
	return pack;
}

/* A few blobs: text, random, empty. */
static void
small_set(const struct mk_crypto_keys *keys, struct blobset *bs)
{
	static const size_t lens[] = { 300, 40, 0 };
	size_t i;

	bs->n = 3;
	for (i = 0; i < bs->n; i++) {
		bs->len[i] = lens[i];
		bs->data[i] = make_blob(lens[i], i != 1);
		blob_id(keys, bs->data[i], bs->len[i], bs->id[i]);
	}
}

/* Open pack in memory and read back every blob; -1 at the first error. */
static int
read_all(const struct mk_crypto_keys *keys, const uint8_t *data, size_t len,
    const struct blobset *bs, struct mk_err *err)
{
	struct mk_pack_reader *r = NULL;
	const struct mk_pack_entry *e;
	uint8_t *out;
	size_t i, olen;
	int rc = -1;

	if (mk_pack_reader_open_mem(keys, data, len, &r, err) < 0)
		return -1;
	e = mk_pack_reader_entries(r);
	if (bs != NULL && mk_pack_reader_count(r) != bs->n) {
		mk_err_set(err, "count");
		goto out;
	}
	for (i = 0; i < mk_pack_reader_count(r); i++) {
		if (mk_pack_reader_get_mem(
			r, data, len, &e[i], NULL, &out, &olen, err) < 0)
			goto out;
		if (bs != NULL &&
		    (olen != bs->len[i] ||
			memcmp(out, bs->data[i], olen) != 0)) {
			free(out);
			mk_err_set(err, "content");
			goto out;
		}
		free(out);
	}
	rc = 0;
out:
	mk_pack_reader_free(&r);
	return rc;
}

static void
test_pack_round_trip_many_blobs(void **state)
{
	const struct mk_crypto_keys *keysets[] = { &keys_enc, &keys_plain };
	struct blobset bs = { .n = 0 };
	size_t k, i, raw = 0, zstd = 0;

	(void)state;
	for (k = 0; k < 2; k++) {
		const struct mk_crypto_keys *keys = keysets[k];
		uint8_t sha[MK_CRYPTO_HASH_LEN];
		struct mk_pack_reader *r = NULL;
		struct mk_pack *pack;
		struct mk_err err;
		char hex[65];

		bs.n = 500;
		for (i = 0; i < bs.n; i++) {
			bs.len[i] = i % 50 == 0 ? 0 : (size_t)(rng() % 20000);
			bs.data[i] = make_blob(bs.len[i], i % 7 != 0);
			blob_id(keys, bs.data[i], bs.len[i], bs.id[i]);
		}
		pack = write_pack(keys, &bs, 3);
		assert_int_equal(pack->count, bs.n);
		assert_int_equal(
		    read_all(keys, pack->data, pack->len, &bs, &err), 0);
		assert_int_equal(
		    mk_crypto_sha256(pack->data, pack->len, sha, &err), 0);
		mk_crypto_hex(sha, sizeof(sha), hex);
		assert_string_equal(pack->id, hex);
		/* The writer's entries are the index's, and ranges suffice. */
		assert_int_equal(mk_pack_reader_open_mem(
				     keys, pack->data, pack->len, &r, &err),
		    0);
		assert_memory_equal(mk_pack_reader_entries(r), pack->entries,
		    bs.n * sizeof(pack->entries[0]));
		mk_pack_reader_free(&r);
		assert_int_equal(mk_pack_reader_new(keys, pack->data,
				     MK_PACK_HEADER_LEN, &r, &err),
		    0);
		for (i = 0; i < bs.n; i++) {
			const struct mk_pack_entry *e = &pack->entries[i];
			uint8_t *out;
			size_t olen;

			assert_int_equal(
			    mk_pack_reader_get(r, e, pack->data + e->offset,
				e->length, NULL, &out, &olen, &err),
			    0);
			assert_int_equal(olen, bs.len[i]);
			assert_memory_equal(out, bs.data[i], olen);
			free(out);
			assert_int_equal(e->type, MK_PACK_TYPE_BODY + i % 3);
			if (e->compression == MK_PACK_RAW)
				raw++;
			else
				zstd++;
			/* Random data and empty blobs are stored raw. */
			if (i % 7 == 0 || bs.len[i] == 0)
				assert_int_equal(e->compression, MK_PACK_RAW);
		}
		mk_pack_reader_free(&r);
		mk_pack_free(&pack);
		assert_null(pack);
		blobset_free(&bs);
	}
	assert_true(raw > 0 && zstd > 0);
}

static void
test_pack_writer_flushes_at_the_size_limit(void **state)
{
	struct mk_pack_opts opts = { 65536, 3 };
	struct mk_pack_writer *w = NULL;
	struct mk_pack *packs[64];
	uint8_t id[MK_PACK_ID_LEN];
	struct mk_err err;
	size_t npacks = 0, i, total = 0;
	uint8_t *data = make_blob(10000, false);

	(void)state;
	assert_int_equal(mk_pack_writer_new(&keys_enc, &opts, &w, &err), 0);
	assert_false(mk_pack_writer_full(w));
	for (i = 0; i < 40; i++) {
		data[0] = (uint8_t)i;
		blob_id(&keys_enc, data, 10000, id);
		assert_int_equal(mk_pack_writer_add(w, MK_PACK_TYPE_CHUNK, id,
				     data, 10000, NULL, NULL, &err),
		    0);
		if (mk_pack_writer_full(w)) {
			assert_true(mk_pack_writer_size(w) >= 65536);
			assert_int_equal(
			    mk_pack_writer_finish(w, &packs[npacks++], &err),
			    0);
			assert_int_equal(mk_pack_writer_count(w), 0);
		}
	}
	assert_int_equal(mk_pack_writer_finish(w, &packs[npacks++], &err), 0);
	/* Nothing left: finishing an empty pack is refused. */
	assert_int_equal(mk_pack_writer_finish(w, &packs[npacks], &err), -1);
	mk_pack_writer_free(&w);
	/* 48 + 7 * 10016 bytes reach the limit: 5 full packs, 5 left. */
	assert_int_equal(npacks, 6);
	for (i = 0; i < npacks; i++) {
		/* Each pack stops at the first blob that reaches the limit. */
		if (i + 1 < npacks)
			assert_true(packs[i]->len < 65536 + 10100 + 1000);
		total += packs[i]->count;
		assert_int_equal(read_all(&keys_enc, packs[i]->data,
				     packs[i]->len, NULL, &err),
		    0);
		/* A fresh salt per pack. */
		if (i > 0)
			assert_memory_not_equal(
			    packs[i]->data + 16, packs[i - 1]->data + 16, 32);
	}
	assert_int_equal(total, 40);
	for (i = 0; i < npacks; i++)
		mk_pack_free(&packs[i]);
	free(data);
}

static void
test_pack_truncated_at_every_offset(void **state)
{
	const struct mk_crypto_keys *keysets[] = { &keys_enc, &keys_plain };
	struct blobset bs = { .n = 0 };
	struct mk_err err;
	size_t k, n;

	(void)state;
	for (k = 0; k < 2; k++) {
		struct mk_pack *pack;
		uint8_t *copy;

		small_set(keysets[k], &bs);
		pack = write_pack(keysets[k], &bs, 3);
		for (n = 0; n < pack->len; n++) {
			/* An exact-size copy, so a sanitizer sees overreads. */
			copy = malloc(n == 0 ? 1 : n);
			memcpy(copy, pack->data, n);
			err.msg[0] = '\0';
			assert_int_equal(
			    read_all(keysets[k], copy, n, &bs, &err), -1);
			assert_true(err.msg[0] != '\0');
			free(copy);
		}
		assert_int_equal(
		    read_all(keysets[k], pack->data, pack->len, &bs, &err), 0);
		mk_pack_free(&pack);
		blobset_free(&bs);
	}
}

/* Which region of a pack byte i is in, for the failure message. */
static const char *
region(const struct mk_pack *pack, size_t i)
{
	if (i < MK_PACK_HEADER_LEN)
		return "header";
	if (i >= pack->len - MK_PACK_FOOTER_LEN)
		return "footer";
	if (i >= pack->entries[pack->count - 1].offset +
		pack->entries[pack->count - 1].length)
		return "index";
	return "blob";
}

static void
test_pack_every_flipped_bit_is_detected(void **state)
{
	const struct mk_crypto_keys *keysets[] = { &keys_enc, &keys_plain };
	struct blobset bs = { .n = 0 };
	struct mk_err err;
	size_t k, i, ignored = 0;
	int bit;

	(void)state;
	for (k = 0; k < 2; k++) {
		struct mk_pack *pack;
		uint8_t *copy;

		small_set(keysets[k], &bs);
		pack = write_pack(keysets[k], &bs, 3);
		copy = malloc(pack->len);
		for (i = 0; i < pack->len; i++) {
			for (bit = 0; bit < 8; bit++) {
				memcpy(copy, pack->data, pack->len);
				copy[i] ^= (uint8_t)(1 << bit);
				if (read_all(keysets[k], copy, pack->len, &bs,
					&err) < 0)
					continue;
				/*
				 * Without encryption a blob is only checked
				 * through its id: a flip that zstd ignores
				 * (an unused frame header bit) gives the
				 * same content back, which read_all checked.
				 */
				if (k == 1 &&
				    strcmp(region(pack, i), "blob") == 0) {
					ignored++;
					continue;
				}
				fail_msg("%s: flip of bit %d at %zu "
					 "(%s) not detected",
				    k == 0 ? "encrypted" : "plain", bit, i,
				    region(pack, i));
			}
		}
		free(copy);
		mk_pack_free(&pack);
		blobset_free(&bs);
	}
	/* A handful of zstd header bits at most, never wrong content. */
	assert_true(ignored < 16);
}

static void
test_pack_wrong_key_and_wrong_mode(void **state)
{
	struct mk_crypto_keys other = keys_enc;
	struct blobset bs = { .n = 0 };
	struct mk_pack *pack, *plain;
	struct mk_err err;

	(void)state;
	small_set(&keys_enc, &bs);
	pack = write_pack(&keys_enc, &bs, 3);
	other.data[0] ^= 1;
	assert_int_equal(
	    read_all(&other, pack->data, pack->len, &bs, &err), -1);
	assert_non_null(strstr(err.msg, "does not authenticate"));
	/* Right data key, wrong id key: ids no longer match. */
	other = keys_enc;
	other.id[5] ^= 0x10;
	assert_int_equal(
	    read_all(&other, pack->data, pack->len, &bs, &err), -1);
	assert_non_null(strstr(err.msg, "does not match its id"));
	/* An unencrypted pack in an encrypted repository, and back. */
	blobset_free(&bs);
	small_set(&keys_plain, &bs);
	plain = write_pack(&keys_plain, &bs, 3);
	assert_int_equal(
	    read_all(&keys_enc, plain->data, plain->len, &bs, &err), -1);
	assert_non_null(strstr(err.msg, "not encrypted, but"));
	assert_int_equal(
	    read_all(&keys_plain, pack->data, pack->len, &bs, &err), -1);
	assert_non_null(
	    strstr(err.msg, "encrypted, but the repository is not"));
	mk_pack_free(&pack);
	mk_pack_free(&plain);
	blobset_free(&bs);
}

static void
test_pack_unknown_major_version_refused(void **state)
{
	static const struct {
		uint8_t major, minor;
		const char *error;
	} cases[] = {
		{ 0, 0, "unsupported version 0.0" },
		{ 2, 0, "unsupported version 2.0" },
		{ 255, 7, "unsupported version 255.7" },
	};
	struct blobset bs = { .n = 0 };
	struct mk_pack *pack;
	struct mk_err err;
	size_t i;

	(void)state;
	small_set(&keys_enc, &bs);
	pack = write_pack(&keys_enc, &bs, 3);
	assert_int_equal(pack->data[6], MK_PACK_VERSION_MAJOR);
	assert_int_equal(pack->data[7], MK_PACK_VERSION_MINOR);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pack->data[6] = cases[i].major;
		pack->data[7] = cases[i].minor;
		assert_int_equal(
		    read_all(&keys_enc, pack->data, pack->len, &bs, &err), -1);
		assert_non_null(strstr(err.msg, cases[i].error));
	}
	memcpy(pack->data, "NOTPAK", 6);
	assert_int_equal(
	    read_all(&keys_enc, pack->data, pack->len, &bs, &err), -1);
	assert_non_null(strstr(err.msg, "bad magic"));
	mk_pack_free(&pack);
	blobset_free(&bs);
}

/* A blob's bytes under another blob's entry, or another type: refused. */
static void
test_pack_swapped_blobs_refused(void **state)
{
	struct mk_pack_reader *r = NULL;
	struct blobset bs = { .n = 0 };
	struct mk_pack_entry e;
	struct mk_pack *pack;
	struct mk_err err;
	uint8_t *out;
	size_t olen;

	(void)state;
	small_set(&keys_enc, &bs);
	pack = write_pack(&keys_enc, &bs, 3);
	assert_int_equal(
	    mk_pack_reader_open_mem(&keys_enc, pack->data, pack->len, &r, &err),
	    0);
	e = pack->entries[0];
	e.type = MK_PACK_TYPE_META;
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	e = pack->entries[0];
	memcpy(e.id, pack->entries[1].id, MK_PACK_ID_LEN);
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	/* Entries pointing outside the pack or below the header. */
	e = pack->entries[0];
	e.offset = pack->len;
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	e.offset = 0;
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	e = pack->entries[0];
	e.length = UINT32_MAX;
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	e = pack->entries[0];
	assert_int_equal(mk_pack_reader_get(r, &e, pack->data + e.offset,
			     e.length - 1, NULL, &out, &olen, &err),
	    -1);
	mk_pack_reader_free(&r);
	mk_pack_free(&pack);
	blobset_free(&bs);
}

static void
test_pack_dictionary_is_recorded_and_required(void **state)
{
	struct mk_pack_dict *dict = NULL, *other = NULL;
	struct mk_pack_writer *w = NULL;
	struct mk_pack_reader *r = NULL;
	uint8_t dict_id[MK_PACK_ID_LEN], other_id[MK_PACK_ID_LEN];
	uint8_t id[MK_PACK_ID_LEN], *out;
	struct mk_pack_entry e;
	struct mk_pack *pack;
	uint8_t *sample = make_blob(8192, true);
	uint8_t *blob = make_blob(2000, true);
	struct mk_err err;
	size_t olen;

	(void)state;
	blob_id(&keys_enc, sample, 8192, dict_id);
	memset(other_id, 7, sizeof(other_id));
	assert_int_equal(
	    mk_pack_dict_new(dict_id, sample, 8192, 3, &dict, &err), 0);
	assert_int_equal(
	    mk_pack_dict_new(other_id, sample, 8192, 0, &other, &err), -1);
	assert_null(other);
	assert_int_equal(
	    mk_pack_dict_new(other_id, "other dictionary", 16, 3, &other, &err),
	    0);
	blob_id(&keys_enc, blob, 2000, id);
	assert_int_equal(mk_pack_writer_new(&keys_enc, NULL, &w, &err), 0);
	assert_int_equal(mk_pack_writer_add(w, MK_PACK_TYPE_HEADER, id, blob,
			     2000, dict, &e, &err),
	    0);
	assert_int_equal(e.compression, MK_PACK_ZSTD_DICT);
	assert_memory_equal(e.dict_id, dict_id, MK_PACK_ID_LEN);
	assert_int_equal(mk_pack_writer_finish(w, &pack, &err), 0);
	mk_pack_writer_free(&w);
	assert_int_equal(
	    mk_pack_reader_open_mem(&keys_enc, pack->data, pack->len, &r, &err),
	    0);
	assert_memory_equal(mk_pack_reader_entries(r), &e, sizeof(e));
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     NULL, &out, &olen, &err),
	    -1);
	assert_non_null(strstr(err.msg, "needs dictionary"));
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     other, &out, &olen, &err),
	    -1);
	assert_int_equal(mk_pack_reader_get_mem(r, pack->data, pack->len, &e,
			     dict, &out, &olen, &err),
	    0);
	assert_int_equal(olen, 2000);
	assert_memory_equal(out, blob, 2000);
	free(out);
	mk_pack_reader_free(&r);
	mk_pack_free(&pack);
	mk_pack_dict_free(&dict);
	mk_pack_dict_free(&other);
	assert_null(dict);
	free(sample);
	free(blob);
}

static void
test_pack_writer_limits(void **state)
{
	static const struct {
		size_t limit;
		int level;
		int ok;
	} opts_cases[] = {
		{ 0, 0, 1 },
		{ 1, 19, 1 },
		{ MK_PACK_SIZE_MAX, 3, 1 },
		{ (size_t)MK_PACK_SIZE_MAX + 1, 3, 0 },
		{ 0, -1, 0 },
		{ 0, 23, 0 },
	};
	struct mk_pack_writer *w = NULL;
	uint8_t id[MK_PACK_ID_LEN] = { 0 }, *big;
	struct mk_pack_entry e;
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(opts_cases) / sizeof(opts_cases[0]); i++) {
		struct mk_pack_opts o = { opts_cases[i].limit,
			opts_cases[i].level };

		assert_int_equal(mk_pack_writer_new(&keys_enc, &o, &w, &err),
		    opts_cases[i].ok ? 0 : -1);
		mk_pack_writer_free(&w);
	}
	assert_int_equal(mk_pack_writer_new(&keys_enc, NULL, &w, &err), 0);
	big = calloc(1, (size_t)MK_PACK_BLOB_MAX + 1);
	assert_int_equal(mk_pack_writer_add(w, MK_PACK_TYPE_CHUNK, id, big,
			     (size_t)MK_PACK_BLOB_MAX + 1, NULL, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "chunk it"));
	assert_int_equal(mk_pack_writer_add(w, MK_PACK_TYPE_CHUNK, id, big,
			     MK_PACK_BLOB_MAX, NULL, &e, &err),
	    0);
	assert_int_equal(e.raw_length, MK_PACK_BLOB_MAX);
	assert_int_equal(e.compression, MK_PACK_ZSTD);
	assert_int_equal(
	    mk_pack_writer_add(w, 0, id, "x", 1, NULL, NULL, &err), -1);
	assert_int_equal(
	    mk_pack_writer_add(w, 6, id, "x", 1, NULL, NULL, &err), -1);
	free(big);
	mk_pack_writer_free(&w);
}

/* Level 0 stores every blob raw; the blobs still read back. */
static void
test_pack_level_zero_stores_raw(void **state)
{
	struct blobset bs = { .n = 0 };
	struct mk_pack *pack;
	struct mk_err err;
	size_t i;

	(void)state;
	small_set(&keys_enc, &bs);
	pack = write_pack(&keys_enc, &bs, 0);
	for (i = 0; i < pack->count; i++) {
		assert_int_equal(pack->entries[i].compression, MK_PACK_RAW);
		assert_int_equal(pack->entries[i].length,
		    pack->entries[i].raw_length + MK_CRYPTO_TAG_LEN);
	}
	assert_int_equal(
	    read_all(&keys_enc, pack->data, pack->len, &bs, &err), 0);
	mk_pack_free(&pack);
	blobset_free(&bs);
}

/*
 * Blobs compressed ahead (as the backup's workers do) and added with
 * mk_pack_writer_add_blob() read back like mk_pack_writer_add()'s; a
 * recycled pack buffer makes a second, equally readable pack.
 */
static void
test_pack_prepared_blobs_and_recycled_buffer(void **state)
{
	struct mk_pack_opts opts = { MK_PACK_SIZE_MAX, 3 };
	struct mk_pack_compressor *comp = NULL;
	struct mk_pack_writer *w = NULL;
	struct mk_pack *pack = NULL;
	struct blobset bs = { .n = 0 };
	struct mk_pack_blob blob;
	uint8_t *dst = NULL;
	struct mk_err err;
	size_t i, round, ncompressed = 0;

	(void)state;
	for (i = 0; i < 40; i++) {
		bs.len[i] = i == 0 ? 0 : (size_t)(rng() % 300000);
		bs.data[i] = make_blob(bs.len[i], i % 2 == 0);
		blob_id(&keys_enc, bs.data[i], bs.len[i], bs.id[i]);
		bs.n++;
	}
	assert_int_equal(mk_pack_compressor_new(3, &comp, &err), 0);
	assert_int_equal(mk_pack_writer_new(&keys_enc, &opts, &w, &err), 0);
	for (round = 0; round < 2; round++) {
		for (i = 0; i < bs.n; i++) {
			size_t cap = mk_pack_compress_bound(bs.len[i]);

			dst = realloc(dst, cap > 0 ? cap : 1);
			assert_non_null(dst);
			assert_int_equal(
			    mk_pack_compress(comp, MK_PACK_TYPE_BODY,
				bs.data[i], bs.len[i], dst, cap, &blob, &err),
			    0);
			assert_int_equal(blob.raw_length, bs.len[i]);
			ncompressed += blob.compression == MK_PACK_ZSTD;
			if (mk_pack_writer_add_blob(w, MK_PACK_TYPE_BODY,
				bs.id[i], &blob, NULL, &err) < 0)
				fail_msg("add %zu: %s", i, err.msg);
		}
		assert_int_equal(mk_pack_writer_finish(w, &pack, &err), 0);
		assert_int_equal(
		    read_all(&keys_enc, pack->data, pack->len, &bs, &err), 0);
		mk_pack_writer_recycle(w, &pack);
		assert_null(pack);
	}
	/* Text compresses, random bytes are stored raw. */
	assert_true(ncompressed > 0 && ncompressed < 2 * bs.n);
	/* A buffer too small and a blob too large are refused. */
	assert_int_equal(mk_pack_compress(comp, MK_PACK_TYPE_BODY, bs.data[1],
			     bs.len[1], dst, 1, &blob, &err),
	    -1);
	assert_int_equal(mk_pack_compress(comp, MK_PACK_TYPE_BODY, bs.data[1],
			     MK_PACK_BLOB_MAX + 1, dst, SIZE_MAX, &blob, &err),
	    -1);
	blob.compression = 7;
	blob.raw_length = 10;
	blob.len = 10;
	blob.data = bs.data[1];
	assert_int_equal(mk_pack_writer_add_blob(
			     w, MK_PACK_TYPE_BODY, bs.id[1], &blob, NULL, &err),
	    -1);
	free(dst);
	mk_pack_writer_free(&w);
	mk_pack_compressor_free(&comp);
	blobset_free(&bs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(
		    test_pack_round_trip_many_blobs, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_writer_flushes_at_the_size_limit, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_truncated_at_every_offset, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_every_flipped_bit_is_detected, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_wrong_key_and_wrong_mode, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_unknown_major_version_refused, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_swapped_blobs_refused, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_dictionary_is_recorded_and_required, pack_setup),
		cmocka_unit_test_setup(test_pack_writer_limits, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_level_zero_stores_raw, pack_setup),
		cmocka_unit_test_setup(
		    test_pack_prepared_blobs_and_recycled_buffer, pack_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
