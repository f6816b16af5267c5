/*
 * repo: a backup repository.  It ties a storage location to the
 * repository's config object, its key slots and its master key, and
 * gives the layers above (backup, restore, check, prune) what they build
 * on: blob ids, pack writers and readers keyed for this repository, and
 * durable pack storage.  docs/repository-format.md describes the objects.
 *
 * Objects: "config" (clear JSON, no secrets), "keys/<slot id>" (JSON, the
 * master key wrapped under a key file or a passphrase), "packs/<2 hex>/
 * <pack id>".  Snapshots, indexes and locks are the callers' objects,
 * written through mk_repo_storage().
 *
 * Losing every key slot (and every copy of the key files and
 * passphrases they need) loses every backup.
 *
 * Thread safety: after mk_repo_init() or mk_repo_open() returns, every
 * function may be called from several threads at once, except
 * mk_repo_close().  The calls do blocking I/O: not on an event loop.
 */
#ifndef MAILKEEP_REPO_H
#define MAILKEEP_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/chunker.h"
#include "mailkeep/crypto.h"
#include "mailkeep/err.h"
#include "mailkeep/pack.h"
#include "mailkeep/storage.h"

#define MK_REPO_VERSION_MAJOR 1
#define MK_REPO_VERSION_MINOR 0
#define MK_REPO_ID_LEN 64 /* hex */
#define MK_REPO_SLOT_ID_LEN 32 /* hex */
#define MK_REPO_PASSPHRASE_ENV "MAILKEEP_PASSPHRASE"
#define MK_REPO_PASSPHRASE_MAX 1024
/* "packs/ab/" and a pack id. */
#define MK_REPO_PACK_OBJECT_LEN (9 + MK_PACK_NAME_LEN)

enum mk_repo_key_kind {
	MK_REPO_KEY_NONE, /* for a repository without encryption */
	MK_REPO_KEY_FILE, /* 32 random bytes in a file, as 64 hex digits */
	MK_REPO_KEY_PASSPHRASE, /* through scrypt */
};

/*
 * Where a key comes from.  Borrowed for the duration of a call; a NULL
 * struct mk_repo_key pointer means MK_REPO_KEY_NONE.  scrypt
 * sets the cost of a passphrase slot being created (NULL: the defaults);
 * slots being opened use the cost stored in them.
 */
struct mk_repo_key {
	enum mk_repo_key_kind kind;
	const char *key_file;
	const char *passphrase; /* NUL-terminated */
	const struct mk_crypto_scrypt_params *scrypt;
};

struct mk_repo_init_opts {
	bool no_encryption; /* blobs in clear, SHA-256 ids: benchmarks */
	int level; /* zstd level 1-19; 0: MK_PACK_LEVEL_DEFAULT */
	uint32_t pack_size; /* 0: MK_PACK_SIZE_DEFAULT */
	struct mk_chunker_params chunker; /* all zero: the defaults */
};

struct mk_repo_info {
	const char *location; /* borrowed from the repository */
	char id[MK_REPO_ID_LEN + 1];
	unsigned version_major;
	unsigned version_minor;
	char created[32]; /* ISO 8601, UTC */
	bool encrypted;
	char slot_id[MK_REPO_SLOT_ID_LEN + 1]; /* the slot opened, or "" */
	size_t slots;
	uint64_t packs;
	uint64_t pack_bytes;
	int level;
	uint32_t pack_size;
	struct mk_chunker_params chunker;
};

struct mk_repo_slot {
	char id[MK_REPO_SLOT_ID_LEN + 1];
	enum mk_repo_key_kind kind;
	char created[32];
	char host[256];
};

struct mk_repo;

/*
 * Create a key file at path holding 32 random bytes as 64 hex digits and
 * a newline, mode 0600, durable before returning.  An existing file is
 * left alone: *created_r tells which happened.
 */
int mk_repo_key_file_create(
    const char *path, bool *created_r, struct mk_err *err);

/*
 * Read a passphrase from the first line of a file (at most
 * MK_REPO_PASSPHRASE_MAX bytes, line end removed, not empty).  Free it
 * with mk_repo_passphrase_free(), which wipes it.
 */
int mk_repo_passphrase_read(
    const char *path, char **passphrase_r, struct mk_err *err);
void mk_repo_passphrase_free(char **passphrasep);

/*
 * Create a repository at location (see storage.h) with a first key slot
 * for key (MK_REPO_KEY_NONE with opts->no_encryption, only).  Refuses a
 * location that already holds a config or key slots.  The key slot is
 * written before the config, so an interrupted init leaves no config and
 * can be told apart.  Returns the open repository.
 */
int mk_repo_init(const char *location, const struct mk_repo_key *key,
    const struct mk_repo_init_opts *opts, struct mk_repo **repo_r,
    struct mk_err *err);

/*
 * Open the repository at location with key.  Errors: no repository
 * there; a config this build does not understand; "no key slot opens
 * with this key"; a key given for a repository without encryption (which
 * could be a downgrade by whoever can write the storage) or none for an
 * encrypted one.
 */
int mk_repo_open(const char *location, const struct mk_repo_key *key,
    struct mk_repo **repo_r, struct mk_err *err);

/*
 * mk_repo_init() and mk_repo_open() on a storage already open (an S3
 * bucket with its settings).  They take storage, also on failure.
 */
int mk_repo_init_storage(struct mk_storage *storage,
    const struct mk_repo_key *key, const struct mk_repo_init_opts *opts,
    struct mk_repo **repo_r, struct mk_err *err);
int mk_repo_open_storage(struct mk_storage *storage,
    const struct mk_repo_key *key, struct mk_repo **repo_r, struct mk_err *err);

/* Close and wipe the master key.  NULL is allowed. */
void mk_repo_close(struct mk_repo **repop);

/* Facts about the repository; counts key slots and packs (lists them). */
int mk_repo_info(
    struct mk_repo *repo, struct mk_repo_info *info_r, struct mk_err *err);

/* The key slots (not the secrets); *slots_r is the caller's to free(). */
int mk_repo_key_list(struct mk_repo *repo, struct mk_repo_slot **slots_r,
    size_t *count_r, struct mk_err *err);

/* Wrap this repository's master key in a new slot for key. */
int mk_repo_key_add(struct mk_repo *repo, const struct mk_repo_key *key,
    char slot_id_r[MK_REPO_SLOT_ID_LEN + 1], struct mk_err *err);

/* Remove a key slot; the last slot is never removed. */
int mk_repo_key_remove(
    struct mk_repo *repo, const char *slot_id, struct mk_err *err);

/*
 * Whether key opens a slot of this repository with its master key:
 * 1 (slot_id_r says which), 0 no slot opens, -1 error.
 */
int mk_repo_key_verify(struct mk_repo *repo, const struct mk_repo_key *key,
    char slot_id_r[MK_REPO_SLOT_ID_LEN + 1], struct mk_err *err);

/* The master key; valid until close.  Never log it. */
const struct mk_crypto_keys *mk_repo_keys(const struct mk_repo *repo);

/* The storage, for the callers' own objects; valid until close. */
struct mk_storage *mk_repo_storage(struct mk_repo *repo);

/* The id of a blob of data in this repository. */
int mk_repo_blob_id(const struct mk_repo *repo, const void *data, size_t len,
    uint8_t id_r[MK_PACK_ID_LEN], struct mk_err *err);

/* A pack writer with this repository's keys, level and pack size. */
int mk_repo_pack_writer_new(const struct mk_repo *repo,
    struct mk_pack_writer **writer_r, struct mk_err *err);

/*
 * A compressor at this repository's zstd level (mk_pack_compress()),
 * with the current dictionaries when mk_repo_dicts_load() enabled them.
 */
int mk_repo_compressor_new(struct mk_repo *repo,
    struct mk_pack_compressor **comp_r, struct mk_err *err);

/* A chunker with this repository's key and parameters. */
int mk_repo_chunker_new(const struct mk_repo *repo,
    struct mk_chunker **chunker_r, struct mk_err *err);

/* The object name of a pack: "packs/<first 2 hex>/<pack id>". */
int mk_repo_pack_object(const char *pack_id,
    char name[MK_REPO_PACK_OBJECT_LEN + 1], struct mk_err *err);

/*
 * Store a finished pack.  Returns once it is durable: only then may its
 * entries be recorded anywhere.
 */
int mk_repo_put_pack(
    struct mk_repo *repo, const struct mk_pack *pack, struct mk_err *err);

/*
 * Read one blob with two ranged reads (the pack header and the blob),
 * from an entry recorded when the pack was written.  A blob made with a
 * dictionary is decoded with dict, or, when dict is NULL, with the
 * repository's dictionary of that id (mk_repo_dict_get()).
 */
int mk_repo_read_blob(struct mk_repo *repo, const char *pack_id,
    const struct mk_pack_entry *entry, const struct mk_pack_dict *dict,
    uint8_t **data_r, size_t *len_r, struct mk_err *err);

/* One blob for mk_repo_read_blobs(): where it is, and what came of it. */
struct mk_repo_blob_read {
	char pack[MK_PACK_NAME_LEN + 1];
	struct mk_pack_entry entry;
	uint8_t *data; /* the plain blob (free() it), NULL when it failed */
	size_t len;
	struct mk_err err; /* why it failed */
};

/*
 * Read many blobs at once.  Blobs of one pack that lie close together
 * are fetched with one ranged read of up to MK_REPO_RANGE_MAX bytes, and
 * up to threads ranges are fetched and decoded at the same time.  Each
 * blob gets its data or its own error: a damaged range fails only the
 * blobs in it.  The order of reads is kept.
 */
#define MK_REPO_RANGE_MAX (8u << 20)
void mk_repo_read_blobs(struct mk_repo *repo, struct mk_repo_blob_read *reads,
    size_t n, unsigned threads);

/* Open a stored pack's header and index (three ranged reads). */
int mk_repo_load_pack(struct mk_repo *repo, const char *pack_id,
    struct mk_pack_reader **reader_r, struct mk_err *err);

/*
 * Call cb for every pack stored in the repository, with its id and size,
 * in no particular order.  Objects under packs/ whose names are not pack
 * names are skipped.
 */
typedef void mk_repo_pack_cb(const char *pack_id, uint64_t size, void *arg);
int mk_repo_packs(
    struct mk_repo *repo, mk_repo_pack_cb *cb, void *arg, struct mk_err *err);

/*
 * Dictionaries: zstd dictionaries trained on the store's own mail, one
 * kind for header blobs and one for whole bodies of at most
 * MK_REPO_DICT_BLOB_MAX bytes.  Each is an immutable object
 * "dicts/<blob id>" (a pack of one encrypted MK_PACK_TYPE_DICT blob).
 * Once loaded, a dictionary stays in memory until mk_repo_close(), so
 * the pointers handed out stay valid until then.  Nothing deletes one:
 * every blob made with it names it.
 */
enum mk_repo_dict_kind {
	MK_REPO_DICT_HEADERS = 1,
	MK_REPO_DICT_BODIES = 2,
};
#define MK_REPO_DICT_KINDS 3 /* array size, indexed by kind */
#define MK_REPO_DICT_BLOB_MAX (64u << 10)
/* "dicts/" and a blob id in hex. */
#define MK_REPO_DICT_OBJECT_LEN (6 + 2 * MK_PACK_ID_LEN)

struct mk_repo_dict_info {
	uint8_t id[MK_PACK_ID_LEN]; /* its blob id, named by the blobs */
	char hex[2 * MK_PACK_ID_LEN + 1];
	int kind; /* enum mk_repo_dict_kind; 0 when damaged */
	int64_t created_ns; /* the newest of a kind is the current one */
	uint32_t samples; /* how many blobs it was trained on */
	size_t size; /* of the zstd dictionary */
};

/*
 * Store a dictionary (zstd dictionary bytes) of kind, trained on samples
 * blobs, durably; it becomes the current one of its kind.
 */
int mk_repo_dict_put(struct mk_repo *repo, enum mk_repo_dict_kind kind,
    const void *zdict, size_t len, uint32_t samples,
    struct mk_repo_dict_info *info_r, struct mk_err *err);

/*
 * The dictionary of blob id id, loaded and authenticated on first use.
 * Errors name the dictionary: "dictionary <id>: missing from the
 * repository (dicts/<id>)", or why it does not authenticate or decode.
 */
int mk_repo_dict_get(struct mk_repo *repo, const uint8_t id[MK_PACK_ID_LEN],
    const struct mk_pack_dict **dict_r, struct mk_err *err);

/*
 * Every object under dicts/, loaded: cb gets its facts and whether it is
 * current, or damage (info holds only the id) when it does not load.
 * cb returns 0 to go on, -1 to stop (then -1 is returned).
 */
typedef int mk_repo_dict_cb(const struct mk_repo_dict_info *info, bool current,
    const struct mk_err *damage, void *arg);
int mk_repo_dicts(
    struct mk_repo *repo, mk_repo_dict_cb *cb, void *arg, struct mk_err *err);

/*
 * With use, load every dictionary (a damaged one is logged and left
 * out) and let compressors made afterwards use the newest of each kind;
 * *count_r is how many loaded.  Without, compressors use none.
 */
int mk_repo_dicts_load(
    struct mk_repo *repo, bool use, size_t *count_r, struct mk_err *err);

/* Whether new blobs of kind use a dictionary, and which (info_r). */
bool mk_repo_dict_current(struct mk_repo *repo, enum mk_repo_dict_kind kind,
    struct mk_repo_dict_info *info_r);

#endif
