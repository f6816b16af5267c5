/*
 * pack: the pack file format, in memory.  A pack holds many blobs, each
 * compressed (zstd, optionally with a dictionary, or raw when that does
 * not help) and then encrypted with AES-256-GCM under a key used for this
 * pack only, followed by an encrypted index and a fixed-size footer.
 * docs/repository-format.md describes every byte.  This module does no
 * I/O: repo.c moves packs to and from storage.
 *
 * A blob is named by its id: HMAC-SHA-256(id key, plaintext), or
 * SHA-256(plaintext) in a repository without encryption
 * (mk_pack_id_hash_new()).  Readers recompute the id of every blob they
 * return and refuse a mismatch, so a damaged or swapped blob is never
 * handed out.
 *
 * Thread safety: a writer or a reader is used by one thread at a time; a
 * struct mk_pack_dict is read-only and may be shared by all threads.
 */
#ifndef MAILKEEP_PACK_H
#define MAILKEEP_PACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/crypto.h"
#include "mailkeep/err.h"

#define MK_PACK_VERSION_MAJOR 1
#define MK_PACK_VERSION_MINOR 0

#define MK_PACK_ID_LEN 32 /* a blob id */
#define MK_PACK_NAME_LEN 64 /* a pack id: hex SHA-256 of the pack */
#define MK_PACK_HEADER_LEN 48
#define MK_PACK_FOOTER_LEN 24

#define MK_PACK_BLOB_MAX (16u << 20) /* larger data must be chunked */
#define MK_PACK_SIZE_DEFAULT (32u << 20)
#define MK_PACK_SIZE_MAX (1u << 30)
#define MK_PACK_LEVEL_DEFAULT 3

enum mk_pack_type {
	MK_PACK_TYPE_HEADER = 1, /* a message's header */
	MK_PACK_TYPE_BODY = 2, /* a message's body, whole */
	MK_PACK_TYPE_CHUNK = 3, /* a piece of a large body */
	MK_PACK_TYPE_META = 4, /* snapshot metadata, uidlists, keywords */
	MK_PACK_TYPE_DICT = 5, /* a zstd dictionary */
};

enum mk_pack_compression {
	MK_PACK_RAW = 0,
	MK_PACK_ZSTD = 1,
	MK_PACK_ZSTD_DICT = 2,
};

/*
 * Where a blob is and how to decode it: what the catalog records for
 * blob -> (pack, entry).  Everything a reader needs to fetch and check
 * one blob with a single ranged read of [offset, offset + length).
 */
struct mk_pack_entry {
	uint8_t id[MK_PACK_ID_LEN];
	uint8_t dict_id[MK_PACK_ID_LEN]; /* zero unless MK_PACK_ZSTD_DICT */
	uint8_t type; /* enum mk_pack_type */
	uint8_t compression; /* enum mk_pack_compression */
	uint64_t offset; /* of the stored bytes in the pack */
	uint32_t length; /* stored bytes, the GCM tag included */
	uint32_t raw_length; /* of the plaintext */
};

/*
 * A zstd dictionary, with the blob id under which it is stored (as a
 * MK_PACK_TYPE_DICT blob).  Read-only once made: share it between
 * threads and writers freely.
 */
struct mk_pack_dict;

/* Prepare dictionary data (copied) for compression at level and back. */
int mk_pack_dict_new(const uint8_t id[MK_PACK_ID_LEN], const void *data,
    size_t len, int level, struct mk_pack_dict **dict_r, struct mk_err *err);
void mk_pack_dict_free(struct mk_pack_dict **dictp);

/* The blob id the dictionary is stored under. */
const uint8_t *mk_pack_dict_id(const struct mk_pack_dict *dict);

/*
 * Train a zstd dictionary of at most capacity bytes on n samples laid
 * end to end in samples (sizes[i] bytes each).  *dict_r is the caller's
 * to free().  Fails when the samples are too few or too alike to train
 * on (zstd's reason in err).
 */
int mk_pack_dict_train(const void *samples, const size_t *sizes, size_t n,
    size_t capacity, uint8_t **dict_r, size_t *len_r, struct mk_err *err);

/*
 * The blob id function of a repository: HMAC-SHA-256 under keys->id when
 * keys->encrypted, SHA-256 otherwise.  Free with mk_crypto_hash_free().
 */
int mk_pack_id_hash_new(const struct mk_crypto_keys *keys,
    struct mk_crypto_hash **hash_r, struct mk_err *err);

/*
 * Blob ids in a struct mk_hmap: the key is the id's first 8 bytes (ids
 * are uniform already), the match compares whole ids (value and ctx
 * both point to MK_PACK_ID_LEN bytes).
 */
uint64_t mk_pack_id_key(const uint8_t id[MK_PACK_ID_LEN]);
bool mk_pack_id_match(const void *value, const void *ctx);

/* A finished pack: its bytes, its id and its index.  Owned by the caller. */
struct mk_pack {
	char id[MK_PACK_NAME_LEN + 1]; /* lower-case hex SHA-256 of data */
	uint8_t *data;
	size_t len;
	size_t cap; /* of data, for mk_pack_writer_recycle() */
	struct mk_pack_entry *entries; /* in pack order */
	size_t count;
};

void mk_pack_free(struct mk_pack **packp);

/* For struct mk_hmap tables keyed by blob id: the key (the id's first 8
 * bytes, already uniform) and a match callback for values that start
 * with the id. */
uint64_t mk_pack_id_key(const uint8_t id[MK_PACK_ID_LEN]);
bool mk_pack_id_match(const void *value, const void *ctx);

struct mk_pack_opts {
	size_t size_limit; /* 0: MK_PACK_SIZE_DEFAULT; at most _MAX */
	int level; /* zstd level 1-19; 0: store every blob raw */
};

/*
 * A pack writer streams blobs into one pack after another.  Add blobs;
 * when mk_pack_writer_full() says so (or at the end of a run), finish the
 * pack, store it durably, and only then record its entries.  The writer
 * starts the next pack, with a new salt and key, on the next add.
 */
struct mk_pack_writer;

/* keys and opts are copied (opts NULL: defaults). */
int mk_pack_writer_new(const struct mk_crypto_keys *keys,
    const struct mk_pack_opts *opts, struct mk_pack_writer **writer_r,
    struct mk_err *err);

/*
 * Add a blob of type with its id (computed by the caller with
 * mk_pack_id_hash_new()'s hash; the writer does not recompute it) and
 * len bytes of data (at most MK_PACK_BLOB_MAX), compressed with dict when
 * not NULL.  entry_r, when not NULL, receives the blob's entry.  The data
 * is copied.  Adding the same id twice stores it twice: deduplication is
 * the caller's job.
 */
int mk_pack_writer_add(struct mk_pack_writer *writer, enum mk_pack_type type,
    const uint8_t id[MK_PACK_ID_LEN], const void *data, size_t len,
    const struct mk_pack_dict *dict, struct mk_pack_entry *entry_r,
    struct mk_err *err);

/*
 * A blob compressed ahead of time, possibly in another thread, by
 * mk_pack_compress(): the stored bytes before encryption.
 */
struct mk_pack_blob {
	uint8_t compression; /* enum mk_pack_compression */
	uint8_t dict_id[MK_PACK_ID_LEN]; /* with MK_PACK_ZSTD_DICT */
	uint32_t raw_length;
	const uint8_t *data; /* len bytes: the caller's dst, or the input */
	size_t len;
};

/* A zstd context at a level (0: raw); one thread at a time. */
struct mk_pack_compressor;

int mk_pack_compressor_new(
    int level, struct mk_pack_compressor **comp_r, struct mk_err *err);
void mk_pack_compressor_free(struct mk_pack_compressor **compp);

/*
 * Compress headers with header_dict and whole bodies with body_dict (either
 * may be NULL), when the blob is at most dict_max bytes; everything else
 * without a dictionary.  The dictionaries are borrowed: they must outlive
 * the compressor.
 */
void mk_pack_compressor_use_dicts(struct mk_pack_compressor *comp,
    const struct mk_pack_dict *header_dict,
    const struct mk_pack_dict *body_dict, size_t dict_max);

/* The room mk_pack_compress() needs for len bytes. */
size_t mk_pack_compress_bound(size_t len);

/*
 * Compress len bytes of data (at most MK_PACK_BLOB_MAX), a blob of type,
 * into dst (cap bytes, at least mk_pack_compress_bound(len)), with the
 * dictionary for type and size if there is one.  *blob_r points at dst,
 * or at data itself when compression does not help.
 */
int mk_pack_compress(struct mk_pack_compressor *comp, enum mk_pack_type type,
    const void *data, size_t len, void *dst, size_t cap,
    struct mk_pack_blob *blob_r, struct mk_err *err);

/*
 * mk_pack_writer_add() of a blob compressed by mk_pack_compress(): the
 * writer only encrypts it.  The blob is copied.
 */
int mk_pack_writer_add_blob(struct mk_pack_writer *writer,
    enum mk_pack_type type, const uint8_t id[MK_PACK_ID_LEN],
    const struct mk_pack_blob *blob, struct mk_pack_entry *entry_r,
    struct mk_err *err);

/* Bytes and blobs in the pack being written (0 before the first add). */
size_t mk_pack_writer_size(const struct mk_pack_writer *writer);
size_t mk_pack_writer_count(const struct mk_pack_writer *writer);

/* Whether the pack reached the size limit and should be finished. */
bool mk_pack_writer_full(const struct mk_pack_writer *writer);

/*
 * Seal the pack being written (it must hold a blob) and hand it over.
 * On failure the pack's blobs are dropped.
 */
int mk_pack_writer_finish(
    struct mk_pack_writer *writer, struct mk_pack **pack_r, struct mk_err *err);

/*
 * Free a pack once stored, keeping its memory for the writer's next
 * pack (large buffers fault in again on every new allocation).
 */
void mk_pack_writer_recycle(
    struct mk_pack_writer *writer, struct mk_pack **packp);

/* Free the writer, dropping an unfinished pack and wiping keys. */
void mk_pack_writer_free(struct mk_pack_writer **writerp);

/*
 * A pack reader checks one pack's header and, when loaded, its index, and
 * returns blobs.  It works on byte ranges so that a blob can be read
 * without the rest of the pack: the header (first MK_PACK_HEADER_LEN
 * bytes) is always needed; the footer and index only to list the pack.
 * Every length and offset is checked against the buffers given; damage,
 * truncation, a wrong key or an unknown major version is an error.
 */
struct mk_pack_reader;

/*
 * Start reading a pack from its header.  keys must match the pack's
 * encryption: an unencrypted pack in an encrypted repository is refused.
 */
int mk_pack_reader_new(const struct mk_crypto_keys *keys, const void *header,
    size_t len, struct mk_pack_reader **reader_r, struct mk_err *err);

/*
 * Parse the footer (the last MK_PACK_FOOTER_LEN bytes of a pack of
 * pack_size bytes): where the index is and how long it is.
 */
int mk_pack_footer_parse(const void *footer, size_t len, uint64_t pack_size,
    uint64_t *index_offset_r, size_t *index_length_r, struct mk_err *err);

/* Check and decode the index bytes found at index_offset. */
int mk_pack_reader_load_index(struct mk_pack_reader *reader,
    uint64_t index_offset, const void *index, size_t len, struct mk_err *err);

/* Entries of a loaded index, in pack order; valid until the free. */
size_t mk_pack_reader_count(const struct mk_pack_reader *reader);
const struct mk_pack_entry *mk_pack_reader_entries(
    const struct mk_pack_reader *reader);

/*
 * Decode one blob: stored holds the len bytes at entry->offset (entry
 * from this pack's index or from the catalog).  dict is needed for
 * MK_PACK_ZSTD_DICT blobs and must carry entry->dict_id.  Returns the
 * plaintext in *data_r (free() it) after checking it against entry->id.
 */
int mk_pack_reader_get(struct mk_pack_reader *reader,
    const struct mk_pack_entry *entry, const void *stored, size_t len,
    const struct mk_pack_dict *dict, uint8_t **data_r, size_t *len_r,
    struct mk_err *err);

/* Open a whole pack held in memory: header, footer and index. */
int mk_pack_reader_open_mem(const struct mk_crypto_keys *keys, const void *pack,
    size_t len, struct mk_pack_reader **reader_r, struct mk_err *err);

/* mk_pack_reader_get() of the blob at entry inside a pack in memory. */
int mk_pack_reader_get_mem(struct mk_pack_reader *reader, const void *pack,
    size_t pack_len, const struct mk_pack_entry *entry,
    const struct mk_pack_dict *dict, uint8_t **data_r, size_t *len_r,
    struct mk_err *err);

void mk_pack_reader_free(struct mk_pack_reader **readerp);

#endif
