#include <stdlib.h>
#include <string.h>

#include <zdict.h>
#include <zstd.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/pack.h"

/*
 * Layout (docs/repository-format.md has the full description):
 *   header  "MKPACK" major minor flags reserved[7] salt[32]
 *   blobs   one after another, each sealed with the pack key
 *   index   count, then one PACK_ENTRY_LEN record per blob; sealed
 *   footer  index offset (u64) index length (u64) "MKPKTAIL"
 * Integers are big-endian.  The nonce of a sealed region is 4 zero bytes
 * and its offset in the pack (u64): offsets only grow inside a pack, and
 * a sealed region is at least a tag long, so no nonce repeats under a
 * pack key, and a blob is readable from its (offset, length) alone.
 */
#define PACK_MAGIC "MKPACK"
#define PACK_MAGIC_LEN 6
#define PACK_FOOTER_MAGIC "MKPKTAIL"
#define PACK_FLAG_ENCRYPTED 0x01
#define PACK_SALT_OFFSET 16
#define PACK_SALT_LEN 32
#define PACK_ENTRY_LEN 82
#define PACK_KEY_INFO "mailkeep pack v1"
#define PACK_AAD_LEN (MK_PACK_ID_LEN + 2)
/* An unencrypted index ends with SHA-256(header || index) instead. */
#define PACK_INDEX_HASH_LEN MK_CRYPTO_HASH_LEN

struct mk_pack_dict {
	uint8_t id[MK_PACK_ID_LEN];
	ZSTD_CDict *cdict;
	ZSTD_DDict *ddict;
};

struct mk_pack_writer {
	bool encrypted;
	uint8_t data_key[MK_CRYPTO_KEY_LEN];
	size_t size_limit;
	int level;
	ZSTD_CCtx *cctx;
	/* The pack being written; buf == NULL before its first blob. */
	uint8_t *buf;
	size_t len;
	size_t cap;
	struct mk_crypto_aead *aead;
	struct mk_pack_entry *entries;
	size_t count;
	size_t entries_cap;
	/* A stored pack's memory, for the next pack (no new page faults). */
	uint8_t *spare;
	size_t spare_cap;
};

/* Blobs at least this large use their own zstd context. */
#define PACK_LARGE_BLOB (128u << 10)

/*
 * One zstd context for small blobs and one for large ones: a context
 * that sees both keeps reallocating its tables (fresh memory is costly).
 */
struct mk_pack_compressor {
	int level;
	ZSTD_CCtx *small;
	ZSTD_CCtx *large;
	const struct mk_pack_dict *header_dict;
	const struct mk_pack_dict *body_dict;
	size_t dict_max;
};

struct mk_pack_reader {
	bool encrypted;
	uint8_t header[MK_PACK_HEADER_LEN];
	struct mk_crypto_aead *aead;
	struct mk_crypto_hash *id_hash;
	ZSTD_DCtx *dctx;
	struct mk_pack_entry *entries;
	size_t count;
};

static void
pack_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
pack_put_u64(uint8_t *p, uint64_t v)
{
	pack_put_u32(p, (uint32_t)(v >> 32));
	pack_put_u32(p + 4, (uint32_t)v);
}

static uint32_t
pack_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t
pack_get_u64(const uint8_t *p)
{
	return (uint64_t)pack_get_u32(p) << 32 | pack_get_u32(p + 4);
}

static void
pack_nonce(uint64_t offset, uint8_t nonce[MK_CRYPTO_NONCE_LEN])
{
	memset(nonce, 0, 4);
	pack_put_u64(nonce + 4, offset);
}

static void
pack_blob_aad(const struct mk_pack_entry *e, uint8_t aad[PACK_AAD_LEN])
{
	memcpy(aad, e->id, MK_PACK_ID_LEN);
	aad[MK_PACK_ID_LEN] = e->type;
	aad[MK_PACK_ID_LEN + 1] = e->compression;
}

/* The start of a blob id in hex, for messages. */
static const char *
pack_short_id(const uint8_t *id, char buf[17])
{
	mk_crypto_hex(id, 8, buf);
	return buf;
}

/* The pack key: HKDF-SHA-256(data key, salt, "mailkeep pack v1"). */
static int
pack_aead_new(const uint8_t data_key[MK_CRYPTO_KEY_LEN], const uint8_t *salt,
    struct mk_crypto_aead **aead_r, struct mk_err *err)
{
	uint8_t key[MK_CRYPTO_KEY_LEN];
	int rc;

	if (mk_crypto_hkdf_sha256(data_key, MK_CRYPTO_KEY_LEN, salt,
		PACK_SALT_LEN, PACK_KEY_INFO, strlen(PACK_KEY_INFO), key,
		sizeof(key), err) < 0)
		return -1;
	rc = mk_crypto_aead_new(key, aead_r, err);
	mk_crypto_wipe(key, sizeof(key));
	return rc;
}

int
mk_pack_id_hash_new(const struct mk_crypto_keys *keys,
    struct mk_crypto_hash **hash_r, struct mk_err *err)
{
	return mk_crypto_hash_new(
	    keys->encrypted ? keys->id : NULL, hash_r, err);
}

int
mk_pack_dict_new(const uint8_t id[MK_PACK_ID_LEN], const void *data, size_t len,
    int level, struct mk_pack_dict **dict_r, struct mk_err *err)
{
	struct mk_pack_dict *dict = mk_xcalloc(1, sizeof(*dict));
	int rc = -1;

	*dict_r = NULL;
	if (level < 1 || level > ZSTD_maxCLevel()) {
		mk_err_set(
		    err, "dictionary: zstd level %d out of range", level);
		goto out;
	}
	memcpy(dict->id, id, MK_PACK_ID_LEN);
	if ((dict->cdict = ZSTD_createCDict(data, len, level)) == NULL ||
	    (dict->ddict = ZSTD_createDDict(data, len)) == NULL) {
		mk_err_set(err, "dictionary: zstd refused it");
		goto out;
	}
	*dict_r = dict;
	dict = NULL;
	rc = 0;
out:
	mk_pack_dict_free(&dict);
	return rc;
}

const uint8_t *
mk_pack_dict_id(const struct mk_pack_dict *dict)
{
	return dict->id;
}

int
mk_pack_dict_train(const void *samples, const size_t *sizes, size_t n,
    size_t capacity, uint8_t **dict_r, size_t *len_r, struct mk_err *err)
{
	uint8_t *buf;
	size_t len;

	*dict_r = NULL;
	*len_r = 0;
	if (n == 0 || n > UINT32_MAX || capacity == 0)
		return mk_err_set(err, "dictionary: nothing to train on");
	buf = mk_xmalloc(capacity);
	len = ZDICT_trainFromBuffer(buf, capacity, samples, sizes, (unsigned)n);
	if (ZDICT_isError(len)) {
		free(buf);
		return mk_err_set(err, "dictionary: zstd training: %s",
		    ZDICT_getErrorName(len));
	}
	*dict_r = buf;
	*len_r = len;
	return 0;
}

void
mk_pack_dict_free(struct mk_pack_dict **dictp)
{
	struct mk_pack_dict *dict = *dictp;

	if (dict == NULL)
		return;
	ZSTD_freeCDict(dict->cdict);
	ZSTD_freeDDict(dict->ddict);
	free(dict);
	*dictp = NULL;
}

void
mk_pack_free(struct mk_pack **packp)
{
	struct mk_pack *pack = *packp;

	if (pack == NULL)
		return;
	free(pack->data);
	free(pack->entries);
	free(pack);
	*packp = NULL;
}

int
mk_pack_writer_new(const struct mk_crypto_keys *keys,
    const struct mk_pack_opts *opts, struct mk_pack_writer **writer_r,
    struct mk_err *err)
{
	struct mk_pack_opts def = { MK_PACK_SIZE_DEFAULT,
		MK_PACK_LEVEL_DEFAULT };
	struct mk_pack_writer *w;

	*writer_r = NULL;
	if (opts == NULL)
		opts = &def;
	if (opts->size_limit > MK_PACK_SIZE_MAX)
		return mk_err_set(err, "pack size limit %zu above %u",
		    opts->size_limit, MK_PACK_SIZE_MAX);
	if (opts->level < 0 || opts->level > ZSTD_maxCLevel())
		return mk_err_set(err, "zstd level %d out of range 0-%d",
		    opts->level, ZSTD_maxCLevel());
	w = mk_xcalloc(1, sizeof(*w));
	w->encrypted = keys->encrypted;
	memcpy(w->data_key, keys->data, sizeof(w->data_key));
	w->size_limit =
	    opts->size_limit == 0 ? MK_PACK_SIZE_DEFAULT : opts->size_limit;
	w->level = opts->level;
	if ((w->cctx = ZSTD_createCCtx()) == NULL)
		mk_fatal("pack", "ZSTD_createCCtx: out of memory");
	*writer_r = w;
	return 0;
}

/* Forget the pack being written. */
static void
pack_writer_reset(struct mk_pack_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
	free(w->entries);
	w->entries = NULL;
	w->count = w->entries_cap = 0;
	mk_crypto_aead_free(&w->aead);
}

/* Write the header of a new pack, with a fresh salt and pack key. */
static int
pack_writer_begin(struct mk_pack_writer *w, struct mk_err *err)
{
	uint8_t *h;

	if (w->spare != NULL) {
		w->buf = w->spare;
		w->cap = w->spare_cap;
		w->spare = NULL;
	} else {
		w->cap = MK_PACK_HEADER_LEN + 65536;
		w->buf = mk_xmalloc(w->cap);
	}
	h = w->buf;
	memset(h, 0, MK_PACK_HEADER_LEN);
	memcpy(h, PACK_MAGIC, PACK_MAGIC_LEN);
	h[6] = MK_PACK_VERSION_MAJOR;
	h[7] = MK_PACK_VERSION_MINOR;
	if (w->encrypted) {
		h[8] = PACK_FLAG_ENCRYPTED;
		if (mk_crypto_random(h + PACK_SALT_OFFSET, PACK_SALT_LEN, err) <
			0 ||
		    pack_aead_new(
			w->data_key, h + PACK_SALT_OFFSET, &w->aead, err) < 0) {
			pack_writer_reset(w);
			return -1;
		}
	}
	w->len = MK_PACK_HEADER_LEN;
	return 0;
}

/* Make room for need more bytes at the end of the pack. */
static void
pack_writer_reserve(struct mk_pack_writer *w, size_t need)
{
	if (need > SIZE_MAX - w->len)
		mk_fatal("pack", "pack buffer overflow");
	mk_xgrow(&w->buf, &w->cap, w->len + need, 1);
}

/*
 * Compress src into dst (capacity cap) at level or with dict.  *n_r is
 * the compressed size, or 0 when the blob is better stored raw.
 */
static int
pack_compress(ZSTD_CCtx *cctx, int level, const struct mk_pack_dict *dict,
    void *dst, size_t cap, const void *src, size_t len, size_t *n_r,
    struct mk_err *err)
{
	size_t n;

	*n_r = 0;
	if (len == 0 || (dict == NULL && level == 0))
		return 0;
	if (dict != NULL)
		n = ZSTD_compress_usingCDict(
		    cctx, dst, cap, src, len, dict->cdict);
	else
		n = ZSTD_compressCCtx(cctx, dst, cap, src, len, level);
	if (ZSTD_isError(n))
		return mk_err_set(
		    err, "zstd compress: %s", ZSTD_getErrorName(n));
	*n_r = n < len ? n : 0;
	return 0;
}

/* Check a blob's type and size; start a pack if none is open. */
static int
pack_writer_prepare(struct mk_pack_writer *w, enum mk_pack_type type,
    size_t len, struct mk_err *err)
{
	if (type < MK_PACK_TYPE_HEADER || type > MK_PACK_TYPE_DICT)
		return mk_err_set(err, "pack: unknown blob type %d", (int)type);
	if (len > MK_PACK_BLOB_MAX)
		return mk_err_set(err,
		    "pack: blob of %zu bytes above the %u "
		    "limit (chunk it)",
		    len, MK_PACK_BLOB_MAX);
	if (w->buf == NULL && pack_writer_begin(w, err) < 0)
		return -1;
	return 0;
}

/*
 * Seal the e->length stored bytes at the end of the pack (e->offset) and
 * append the entry.
 */
static int
pack_writer_seal(struct mk_pack_writer *w, struct mk_pack_entry *e,
    struct mk_pack_entry *entry_r, struct mk_err *err)
{
	uint8_t nonce[MK_CRYPTO_NONCE_LEN], aad[PACK_AAD_LEN];
	uint8_t *dst = w->buf + e->offset;
	size_t stored = e->length;

	if (w->encrypted) {
		pack_nonce(e->offset, nonce);
		pack_blob_aad(e, aad);
		if (mk_crypto_aead_seal(w->aead, nonce, aad, sizeof(aad), dst,
			stored, dst, dst + stored, err) < 0)
			return mk_err_prefix(err, "pack: seal blob");
		stored += MK_CRYPTO_TAG_LEN;
	}
	e->length = (uint32_t)stored;
	w->len += stored;
	mk_xgrow(&w->entries, &w->entries_cap, w->count + 1, sizeof(*e));
	w->entries[w->count++] = *e;
	if (entry_r != NULL)
		*entry_r = *e;
	return 0;
}

int
mk_pack_writer_add(struct mk_pack_writer *w, enum mk_pack_type type,
    const uint8_t id[MK_PACK_ID_LEN], const void *data, size_t len,
    const struct mk_pack_dict *dict, struct mk_pack_entry *entry_r,
    struct mk_err *err)
{
	struct mk_pack_entry e;
	size_t bound, stored;
	uint8_t *dst;

	if (pack_writer_prepare(w, type, len, err) < 0)
		return -1;
	bound = ZSTD_compressBound(len);
	pack_writer_reserve(w, (bound > len ? bound : len) + MK_CRYPTO_TAG_LEN);
	memset(&e, 0, sizeof(e));
	memcpy(e.id, id, MK_PACK_ID_LEN);
	e.type = (uint8_t)type;
	e.offset = w->len;
	e.raw_length = (uint32_t)len;
	dst = w->buf + w->len;
	if (pack_compress(w->cctx, w->level, dict, dst, bound, data, len,
		&stored, err) < 0)
		return -1;
	if (stored > 0) {
		e.compression = dict != NULL ? MK_PACK_ZSTD_DICT : MK_PACK_ZSTD;
		if (dict != NULL)
			memcpy(e.dict_id, dict->id, MK_PACK_ID_LEN);
	} else {
		e.compression = MK_PACK_RAW;
		if (len > 0)
			memcpy(dst, data, len);
		stored = len;
	}
	e.length = (uint32_t)stored;
	return pack_writer_seal(w, &e, entry_r, err);
}

void
mk_pack_writer_recycle(struct mk_pack_writer *w, struct mk_pack **packp)
{
	struct mk_pack *pack = *packp;

	if (pack == NULL)
		return;
	if (w->spare == NULL && pack->cap > 0) {
		w->spare = pack->data;
		w->spare_cap = pack->cap;
		pack->data = NULL;
	}
	mk_pack_free(packp);
}

int
mk_pack_writer_add_blob(struct mk_pack_writer *w, enum mk_pack_type type,
    const uint8_t id[MK_PACK_ID_LEN], const struct mk_pack_blob *blob,
    struct mk_pack_entry *entry_r, struct mk_err *err)
{
	struct mk_pack_entry e;

	if (pack_writer_prepare(w, type, blob->raw_length, err) < 0)
		return -1;
	if ((blob->compression == MK_PACK_RAW &&
		blob->len != blob->raw_length) ||
	    blob->compression > MK_PACK_ZSTD_DICT ||
	    blob->len > blob->raw_length)
		return mk_err_set(err, "pack: prepared blob is inconsistent");
	pack_writer_reserve(w, blob->len + MK_CRYPTO_TAG_LEN);
	memset(&e, 0, sizeof(e));
	memcpy(e.id, id, MK_PACK_ID_LEN);
	e.type = (uint8_t)type;
	e.compression = blob->compression;
	if (blob->compression == MK_PACK_ZSTD_DICT)
		memcpy(e.dict_id, blob->dict_id, MK_PACK_ID_LEN);
	e.offset = w->len;
	e.raw_length = blob->raw_length;
	e.length = (uint32_t)blob->len;
	if (blob->len > 0)
		memcpy(w->buf + w->len, blob->data, blob->len);
	return pack_writer_seal(w, &e, entry_r, err);
}

int
mk_pack_compressor_new(
    int level, struct mk_pack_compressor **comp_r, struct mk_err *err)
{
	struct mk_pack_compressor *c;

	*comp_r = NULL;
	if (level < 0 || level > ZSTD_maxCLevel())
		return mk_err_set(err, "zstd level %d out of range 0-%d", level,
		    ZSTD_maxCLevel());
	c = mk_xcalloc(1, sizeof(*c));
	c->level = level;
	if ((c->small = ZSTD_createCCtx()) == NULL ||
	    (c->large = ZSTD_createCCtx()) == NULL)
		mk_fatal("pack", "ZSTD_createCCtx: out of memory");
	*comp_r = c;
	return 0;
}

void
mk_pack_compressor_use_dicts(struct mk_pack_compressor *c,
    const struct mk_pack_dict *header_dict,
    const struct mk_pack_dict *body_dict, size_t dict_max)
{
	c->header_dict = header_dict;
	c->body_dict = body_dict;
	c->dict_max = dict_max;
}

size_t
mk_pack_compress_bound(size_t len)
{
	return ZSTD_compressBound(len);
}

int
mk_pack_compress(struct mk_pack_compressor *c, enum mk_pack_type type,
    const void *data, size_t len, void *dst, size_t cap,
    struct mk_pack_blob *blob_r, struct mk_err *err)
{
	const struct mk_pack_dict *dict = NULL;
	size_t n;

	memset(blob_r, 0, sizeof(*blob_r));
	if (len > MK_PACK_BLOB_MAX)
		return mk_err_set(err,
		    "pack: blob of %zu bytes above the %u "
		    "limit (chunk it)",
		    len, MK_PACK_BLOB_MAX);
	if (cap < ZSTD_compressBound(len))
		return mk_err_set(err, "pack: compression buffer too small");
	if (c->level > 0 && len <= c->dict_max)
		dict = type == MK_PACK_TYPE_HEADER ? c->header_dict
		    : type == MK_PACK_TYPE_BODY    ? c->body_dict
						   : NULL;
	if (pack_compress(len >= PACK_LARGE_BLOB ? c->large : c->small,
		c->level, dict, dst, cap, data, len, &n, err) < 0)
		return -1;
	blob_r->raw_length = (uint32_t)len;
	if (n > 0) {
		blob_r->compression =
		    dict != NULL ? MK_PACK_ZSTD_DICT : MK_PACK_ZSTD;
		if (dict != NULL)
			memcpy(blob_r->dict_id, dict->id, MK_PACK_ID_LEN);
		blob_r->data = dst;
		blob_r->len = n;
	} else {
		blob_r->compression = MK_PACK_RAW;
		blob_r->data = data;
		blob_r->len = len;
	}
	return 0;
}

void
mk_pack_compressor_free(struct mk_pack_compressor **compp)
{
	struct mk_pack_compressor *c = *compp;

	if (c == NULL)
		return;
	ZSTD_freeCCtx(c->small);
	ZSTD_freeCCtx(c->large);
	free(c);
	*compp = NULL;
}

size_t
mk_pack_writer_size(const struct mk_pack_writer *w)
{
	return w->len;
}

size_t
mk_pack_writer_count(const struct mk_pack_writer *w)
{
	return w->count;
}

bool
mk_pack_writer_full(const struct mk_pack_writer *w)
{
	return w->len >= w->size_limit;
}

static void
pack_entry_encode(const struct mk_pack_entry *e, uint8_t *p)
{
	memcpy(p, e->id, MK_PACK_ID_LEN);
	p[32] = e->type;
	p[33] = e->compression;
	memcpy(p + 34, e->dict_id, MK_PACK_ID_LEN);
	pack_put_u64(p + 66, e->offset);
	pack_put_u32(p + 74, e->length);
	pack_put_u32(p + 78, e->raw_length);
}

/* SHA-256(header || index) that ends an unencrypted index. */
static int
pack_index_hash(const uint8_t *header, const uint8_t *index, size_t len,
    uint8_t out[PACK_INDEX_HASH_LEN], struct mk_err *err)
{
	uint8_t *tmp = mk_xmalloc(MK_PACK_HEADER_LEN + len);
	int rc;

	memcpy(tmp, header, MK_PACK_HEADER_LEN);
	memcpy(tmp + MK_PACK_HEADER_LEN, index, len);
	rc = mk_crypto_sha256(tmp, MK_PACK_HEADER_LEN + len, out, err);
	free(tmp);
	return rc;
}

int
mk_pack_writer_finish(
    struct mk_pack_writer *w, struct mk_pack **pack_r, struct mk_err *err)
{
	uint8_t nonce[MK_CRYPTO_NONCE_LEN], hash[MK_CRYPTO_HASH_LEN];
	size_t index_off = w->len, plain_len, sealed_len, i;
	struct mk_pack *pack = NULL;
	uint8_t *p;
	int rc = -1;

	*pack_r = NULL;
	if (w->count == 0)
		return mk_err_set(err, "pack: no blobs to finish");
	if (w->count > UINT32_MAX) {
		mk_err_set(err, "pack: too many blobs");
		goto out;
	}
	plain_len = 4 + w->count * PACK_ENTRY_LEN;
	sealed_len = plain_len +
	    (w->encrypted ? MK_CRYPTO_TAG_LEN : PACK_INDEX_HASH_LEN);
	pack_writer_reserve(w, sealed_len + MK_PACK_FOOTER_LEN);
	p = w->buf + index_off;
	pack_put_u32(p, (uint32_t)w->count);
	for (i = 0; i < w->count; i++)
		pack_entry_encode(&w->entries[i], p + 4 + i * PACK_ENTRY_LEN);
	if (w->encrypted) {
		/* The header is the index's aad, so it is authenticated. */
		pack_nonce(index_off, nonce);
		if (mk_crypto_aead_seal(w->aead, nonce, w->buf,
			MK_PACK_HEADER_LEN, p, plain_len, p, p + plain_len,
			err) < 0) {
			mk_err_prefix(err, "pack: seal index");
			goto out;
		}
	} else {
		if (pack_index_hash(w->buf, p, plain_len, hash, err) < 0)
			goto out;
		memcpy(p + plain_len, hash, sizeof(hash));
	}
	p += sealed_len;
	pack_put_u64(p, index_off);
	pack_put_u64(p + 8, sealed_len);
	memcpy(p + 16, PACK_FOOTER_MAGIC, 8);
	w->len = index_off + sealed_len + MK_PACK_FOOTER_LEN;
	if (mk_crypto_sha256(w->buf, w->len, hash, err) < 0)
		goto out;
	pack = mk_xcalloc(1, sizeof(*pack));
	mk_crypto_hex(hash, sizeof(hash), pack->id);
	pack->data = w->buf;
	pack->len = w->len;
	pack->cap = w->cap;
	pack->entries = w->entries;
	pack->count = w->count;
	w->buf = NULL;
	w->entries = NULL;
	*pack_r = pack;
	rc = 0;
out:
	pack_writer_reset(w);
	return rc;
}

void
mk_pack_writer_free(struct mk_pack_writer **writerp)
{
	struct mk_pack_writer *w = *writerp;

	if (w == NULL)
		return;
	pack_writer_reset(w);
	free(w->spare);
	ZSTD_freeCCtx(w->cctx);
	mk_crypto_wipe(w->data_key, sizeof(w->data_key));
	free(w);
	*writerp = NULL;
}

int
mk_pack_reader_new(const struct mk_crypto_keys *keys, const void *header,
    size_t len, struct mk_pack_reader **reader_r, struct mk_err *err)
{
	struct mk_pack_reader *r = NULL;
	const uint8_t *h = header;
	int rc = -1;

	*reader_r = NULL;
	if (len < MK_PACK_HEADER_LEN)
		return mk_err_set(
		    err, "pack: truncated header (%zu bytes)", len);
	if (memcmp(h, PACK_MAGIC, PACK_MAGIC_LEN) != 0)
		return mk_err_set(err, "pack: bad magic (not a pack)");
	if (h[6] != MK_PACK_VERSION_MAJOR)
		return mk_err_set(err,
		    "pack: unsupported version %u.%u (this build reads %d.x)",
		    h[6], h[7], MK_PACK_VERSION_MAJOR);
	if (((h[8] & PACK_FLAG_ENCRYPTED) != 0) != keys->encrypted)
		return mk_err_set(err,
		    keys->encrypted
			? "pack: not encrypted, but the repository is"
			: "pack: encrypted, but the repository is "
			  "not");
	r = mk_xcalloc(1, sizeof(*r));
	r->encrypted = keys->encrypted;
	memcpy(r->header, h, MK_PACK_HEADER_LEN);
	if (r->encrypted &&
	    pack_aead_new(keys->data, h + PACK_SALT_OFFSET, &r->aead, err) < 0)
		goto out;
	if (mk_pack_id_hash_new(keys, &r->id_hash, err) < 0)
		goto out;
	if ((r->dctx = ZSTD_createDCtx()) == NULL)
		mk_fatal("pack", "ZSTD_createDCtx: out of memory");
	*reader_r = r;
	r = NULL;
	rc = 0;
out:
	mk_pack_reader_free(&r);
	return rc;
}

int
mk_pack_footer_parse(const void *footer, size_t len, uint64_t pack_size,
    uint64_t *index_offset_r, size_t *index_length_r, struct mk_err *err)
{
	const uint8_t *f = footer;
	uint64_t off, ilen;

	if (len != MK_PACK_FOOTER_LEN ||
	    pack_size < MK_PACK_HEADER_LEN + MK_PACK_FOOTER_LEN)
		return mk_err_set(err, "pack: truncated (%llu bytes)",
		    (unsigned long long)pack_size);
	if (memcmp(f + 16, PACK_FOOTER_MAGIC, 8) != 0)
		return mk_err_set(err, "pack: bad footer (truncated pack?)");
	off = pack_get_u64(f);
	ilen = pack_get_u64(f + 8);
	/* The index lies between the blobs and the footer, exactly. */
	if (off < MK_PACK_HEADER_LEN || ilen > MK_PACK_SIZE_MAX ||
	    off > pack_size - MK_PACK_FOOTER_LEN ||
	    ilen != pack_size - MK_PACK_FOOTER_LEN - off)
		return mk_err_set(err,
		    "pack: index at %llu+%llu does not fit a pack of %llu "
		    "bytes",
		    (unsigned long long)off, (unsigned long long)ilen,
		    (unsigned long long)pack_size);
	*index_offset_r = off;
	*index_length_r = (size_t)ilen;
	return 0;
}

/*
 * Decode and check one index record; *next is where the blob must start
 * (blobs tile the space between the header and the index).
 */
static int
pack_entry_decode(const struct mk_pack_reader *r, const uint8_t *p, size_t i,
    uint64_t *next, struct mk_pack_entry *e, struct mk_err *err)
{
	static const uint8_t zero[MK_PACK_ID_LEN];
	uint64_t overhead = r->encrypted ? MK_CRYPTO_TAG_LEN : 0;

	memcpy(e->id, p, MK_PACK_ID_LEN);
	e->type = p[32];
	e->compression = p[33];
	memcpy(e->dict_id, p + 34, MK_PACK_ID_LEN);
	e->offset = pack_get_u64(p + 66);
	e->length = pack_get_u32(p + 74);
	e->raw_length = pack_get_u32(p + 78);
	/* Compressed bytes are kept only when smaller than the raw ones. */
	if (e->offset != *next || e->length < overhead ||
	    e->raw_length > MK_PACK_BLOB_MAX ||
	    e->length > e->raw_length + overhead || e->type == 0)
		return mk_err_set(
		    err, "pack: index entry %zu is inconsistent", i);
	if (e->compression == MK_PACK_RAW &&
	    e->length != e->raw_length + overhead)
		return mk_err_set(
		    err, "pack: index entry %zu: raw length mismatch", i);
	if (e->compression != MK_PACK_ZSTD_DICT &&
	    memcmp(e->dict_id, zero, MK_PACK_ID_LEN) != 0)
		return mk_err_set(
		    err, "pack: index entry %zu: stray dictionary id", i);
	*next = e->offset + e->length;
	return 0;
}

int
mk_pack_reader_load_index(struct mk_pack_reader *r, uint64_t index_offset,
    const void *index, size_t len, struct mk_err *err)
{
	uint8_t nonce[MK_CRYPTO_NONCE_LEN], hash[MK_CRYPTO_HASH_LEN];
	size_t trailer = r->encrypted ? MK_CRYPTO_TAG_LEN : PACK_INDEX_HASH_LEN;
	struct mk_pack_entry *entries = NULL;
	uint8_t *plain = NULL;
	uint64_t next = MK_PACK_HEADER_LEN;
	size_t plain_len, count, i;
	int rc = -1;

	if (len < 4 + trailer)
		return mk_err_set(
		    err, "pack: index too short (%zu bytes)", len);
	plain_len = len - trailer;
	plain = mk_xmalloc(plain_len);
	if (r->encrypted) {
		pack_nonce(index_offset, nonce);
		if (mk_crypto_aead_open(r->aead, nonce, r->header,
			MK_PACK_HEADER_LEN, index, plain_len, plain,
			(const uint8_t *)index + plain_len, err) < 0) {
			mk_err_set(err,
			    "pack: index does not authenticate "
			    "(wrong key or damaged pack)");
			goto out;
		}
	} else {
		memcpy(plain, index, plain_len);
		if (pack_index_hash(r->header, plain, plain_len, hash, err) < 0)
			goto out;
		if (memcmp(hash, (const uint8_t *)index + plain_len,
			sizeof(hash)) != 0) {
			mk_err_set(err,
			    "pack: index checksum mismatch "
			    "(damaged pack)");
			goto out;
		}
	}
	count = pack_get_u32(plain);
	if ((plain_len - 4) / PACK_ENTRY_LEN != count ||
	    (plain_len - 4) % PACK_ENTRY_LEN != 0) {
		mk_err_set(err,
		    "pack: index of %zu bytes cannot hold %zu "
		    "entries",
		    plain_len, count);
		goto out;
	}
	entries = mk_xcalloc(count, sizeof(*entries));
	for (i = 0; i < count; i++)
		if (pack_entry_decode(r, plain + 4 + i * PACK_ENTRY_LEN, i,
			&next, &entries[i], err) < 0)
			goto out;
	if (next != index_offset) {
		mk_err_set(err, "pack: blobs end at %llu, index starts at %llu",
		    (unsigned long long)next, (unsigned long long)index_offset);
		goto out;
	}
	free(r->entries);
	r->entries = entries;
	r->count = count;
	entries = NULL;
	rc = 0;
out:
	free(entries);
	free(plain);
	return rc;
}

size_t
mk_pack_reader_count(const struct mk_pack_reader *r)
{
	return r->count;
}

const struct mk_pack_entry *
mk_pack_reader_entries(const struct mk_pack_reader *r)
{
	return r->entries;
}

/* Decompress plain (len bytes) into a new buffer of raw_length bytes. */
static int
pack_decompress(struct mk_pack_reader *r, const struct mk_pack_entry *e,
    const uint8_t *plain, size_t len, const struct mk_pack_dict *dict,
    uint8_t **out_r, struct mk_err *err)
{
	uint8_t *out = mk_xmalloc(e->raw_length);
	char idbuf[17];
	size_t n;

	*out_r = NULL;
	switch (e->compression) {
	case MK_PACK_RAW:
		if (len != e->raw_length) {
			free(out);
			return mk_err_set(err, "blob %s: raw length mismatch",
			    pack_short_id(e->id, idbuf));
		}
		memcpy(out, plain, len);
		*out_r = out;
		return 0;
	case MK_PACK_ZSTD:
		n = ZSTD_decompressDCtx(
		    r->dctx, out, e->raw_length, plain, len);
		break;
	case MK_PACK_ZSTD_DICT:
		if (dict == NULL ||
		    memcmp(dict->id, e->dict_id, MK_PACK_ID_LEN) != 0) {
			char dictbuf[17];

			free(out);
			return mk_err_set(err, "blob %s needs dictionary %s",
			    pack_short_id(e->id, idbuf),
			    pack_short_id(e->dict_id, dictbuf));
		}
		n = ZSTD_decompress_usingDDict(
		    r->dctx, out, e->raw_length, plain, len, dict->ddict);
		break;
	default:
		free(out);
		return mk_err_set(err, "blob %s: unknown compression %u",
		    pack_short_id(e->id, idbuf), e->compression);
	}
	if (ZSTD_isError(n) || n != e->raw_length) {
		free(out);
		return mk_err_set(err, "blob %s: zstd: %s",
		    pack_short_id(e->id, idbuf),
		    ZSTD_isError(n) ? ZSTD_getErrorName(n) : "length mismatch");
	}
	*out_r = out;
	return 0;
}

int
mk_pack_reader_get(struct mk_pack_reader *r, const struct mk_pack_entry *e,
    const void *stored, size_t len, const struct mk_pack_dict *dict,
    uint8_t **data_r, size_t *len_r, struct mk_err *err)
{
	uint8_t nonce[MK_CRYPTO_NONCE_LEN], aad[PACK_AAD_LEN];
	uint8_t id[MK_PACK_ID_LEN], *plain = NULL, *out = NULL;
	const uint8_t *body = stored;
	size_t body_len = len;
	char idbuf[17];
	int rc = -1;

	*data_r = NULL;
	*len_r = 0;
	if (len != e->length || e->offset < MK_PACK_HEADER_LEN ||
	    e->raw_length > MK_PACK_BLOB_MAX ||
	    len > (size_t)e->raw_length + MK_CRYPTO_TAG_LEN)
		return mk_err_set(err, "blob %s: bad entry (length %zu)",
		    pack_short_id(e->id, idbuf), len);
	if (r->encrypted) {
		if (len < MK_CRYPTO_TAG_LEN)
			return mk_err_set(err, "blob %s: too short",
			    pack_short_id(e->id, idbuf));
		body_len = len - MK_CRYPTO_TAG_LEN;
		plain = mk_xmalloc(body_len);
		pack_nonce(e->offset, nonce);
		pack_blob_aad(e, aad);
		if (mk_crypto_aead_open(r->aead, nonce, aad, sizeof(aad),
			stored, body_len, plain, body + body_len, err) < 0) {
			mk_err_set(err,
			    "blob %s does not authenticate "
			    "(wrong key or damaged pack)",
			    pack_short_id(e->id, idbuf));
			goto out;
		}
		body = plain;
	}
	if (pack_decompress(r, e, body, body_len, dict, &out, err) < 0)
		goto out;
	if (mk_crypto_hash_digest(r->id_hash, out, e->raw_length, id, err) < 0)
		goto out;
	if (memcmp(id, e->id, MK_PACK_ID_LEN) != 0) {
		mk_err_set(err, "blob %s: content does not match its id",
		    pack_short_id(e->id, idbuf));
		goto out;
	}
	*data_r = out;
	*len_r = e->raw_length;
	out = NULL;
	rc = 0;
out:
	free(out);
	free(plain);
	return rc;
}

int
mk_pack_reader_open_mem(const struct mk_crypto_keys *keys, const void *pack,
    size_t len, struct mk_pack_reader **reader_r, struct mk_err *err)
{
	struct mk_pack_reader *r = NULL;
	const uint8_t *p = pack;
	uint64_t index_off;
	size_t index_len;
	int rc = -1;

	*reader_r = NULL;
	if (mk_pack_reader_new(keys, pack, len, &r, err) < 0)
		return -1;
	if (len < MK_PACK_FOOTER_LEN ||
	    mk_pack_footer_parse(p + len - MK_PACK_FOOTER_LEN,
		MK_PACK_FOOTER_LEN, len, &index_off, &index_len, err) < 0)
		goto out;
	if (mk_pack_reader_load_index(
		r, index_off, p + index_off, index_len, err) < 0)
		goto out;
	*reader_r = r;
	r = NULL;
	rc = 0;
out:
	mk_pack_reader_free(&r);
	return rc;
}

int
mk_pack_reader_get_mem(struct mk_pack_reader *r, const void *pack,
    size_t pack_len, const struct mk_pack_entry *e,
    const struct mk_pack_dict *dict, uint8_t **data_r, size_t *len_r,
    struct mk_err *err)
{
	*data_r = NULL;
	*len_r = 0;
	if (e->offset < MK_PACK_HEADER_LEN || e->offset > pack_len ||
	    e->length > pack_len - e->offset)
		return mk_err_set(err, "pack: blob at %llu+%u outside the pack",
		    (unsigned long long)e->offset, e->length);
	return mk_pack_reader_get(r, e, (const uint8_t *)pack + e->offset,
	    e->length, dict, data_r, len_r, err);
}

void
mk_pack_reader_free(struct mk_pack_reader **readerp)
{
	struct mk_pack_reader *r = *readerp;

	if (r == NULL)
		return;
	mk_crypto_aead_free(&r->aead);
	mk_crypto_hash_free(&r->id_hash);
	ZSTD_freeDCtx(r->dctx);
	free(r->entries);
	free(r);
	*readerp = NULL;
}

uint64_t
mk_pack_id_key(const uint8_t id[MK_PACK_ID_LEN])
{
	uint64_t k;

	memcpy(&k, id, sizeof(k));
	return k;
}

bool
mk_pack_id_match(const void *value, const void *ctx)
{
	return memcmp(value, ctx, MK_PACK_ID_LEN) == 0;
}
