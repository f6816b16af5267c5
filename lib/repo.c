#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/repo.h"
#include "mailkeep/str.h"

#define REPO_CONFIG "config"
#define REPO_KEYS "keys/"
#define REPO_PACKS "packs/"
#define REPO_DICTS "dicts/"
#define REPO_DICT_MAGIC "MKDICT"
#define REPO_DICT_MAGIC_LEN 6
#define REPO_DICT_VERSION_MAJOR 1
#define REPO_DICT_VERSION_MINOR 0
#define REPO_DICT_HEADER_LEN 32
/* A dictionary object is a pack of one blob; refuse anything far larger. */
#define REPO_DICT_OBJECT_MAX (4u << 20)
#define REPO_MAGIC "mailkeep repository"
#define REPO_SLOT_MAGIC "mailkeep key slot"
#define REPO_SLOT_VERSION 1
/* HKDF info of key-file slots, and the start of every slot's aad. */
#define REPO_SLOT_INFO "mailkeep key slot v1"
#define REPO_CHUNKER_INFO "mailkeep chunker key v1"
#define REPO_SALT_LEN 32
#define REPO_SLOT_RAW_LEN 16
#define REPO_KEYFILE_LEN 32
/* Config and key slots are small; refuse anything much larger. */
#define REPO_JSON_MAX 65536

static const struct mk_repo_key repo_no_key = { MK_REPO_KEY_NONE, NULL, NULL,
	NULL };

struct mk_repo {
	struct mk_storage *storage;
	char id[MK_REPO_ID_LEN + 1];
	char created[32];
	unsigned minor;
	struct mk_crypto_keys keys;
	uint8_t config_hash[MK_CRYPTO_HASH_LEN];
	struct mk_crypto_hash *id_hash;
	char slot_id[MK_REPO_SLOT_ID_LEN + 1];
	int level;
	uint32_t pack_size;
	struct mk_chunker_params chunker;

	/* The header of the pack read last: a restore reads many blobs of
	 * one pack, and on S3 each read of it is a request. */
	pthread_mutex_t header_lock;
	char header_pack[MK_REPO_PACK_OBJECT_LEN + 1];
	uint8_t header[MK_PACK_HEADER_LEN];

	/* Dictionaries loaded so far, each allocated on its own and never
	 * freed before close (so that compressors and readers may borrow
	 * them without the lock), and the newest of each kind when new
	 * blobs use them. */
	pthread_mutex_t dict_lock;
	struct repo_dict **dicts;
	size_t ndicts;
	size_t dicts_cap;
	bool dicts_use;
	const struct repo_dict *current[MK_REPO_DICT_KINDS];
};

struct repo_dict {
	struct mk_repo_dict_info info;
	struct mk_pack_dict *dict;
};

/* The current time as ISO 8601 UTC. */
static void
repo_now(char buf[32])
{
	struct tm tm;
	time_t t = time(NULL);

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		mk_strlcpy(buf, "unknown", 32);
}

int
mk_repo_key_file_create(const char *path, bool *created_r, struct mk_err *err)
{
	uint8_t key[REPO_KEYFILE_LEN];
	char text[2 * REPO_KEYFILE_LEN + 2], dir[4096];
	int fd = -1, dirfd = -1, rc = -1;
	size_t done = 0, len;

	*created_r = false;
	if (mk_strlcpy(dir, path, sizeof(dir)) >= sizeof(dir))
		return mk_err_set(err, "%s: path too long", path);
	fd = open(
	    path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return 0;
		return mk_err_sys(err, "create(%s)", path);
	}
	*created_r = true;
	if (mk_crypto_random(key, sizeof(key), err) < 0)
		goto out;
	mk_crypto_hex(key, sizeof(key), text);
	len = strlen(text);
	text[len++] = '\n';
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			mk_err_sys(err, "write(%s)", path);
			goto out;
		}
		done += (size_t)n;
	}
	/* The key must survive a crash before any slot depends on it. */
	if (fsync(fd) < 0) {
		mk_err_sys(err, "fsync(%s)", path);
		goto out;
	}
	if ((dirfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
		0 ||
	    fsync(dirfd) < 0) {
		mk_err_sys(err, "fsync(directory of %s)", path);
		goto out;
	}
	rc = 0;
out:
	mk_crypto_wipe(key, sizeof(key));
	mk_crypto_wipe(text, sizeof(text));
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	if (rc < 0)
		unlink(path);
	return rc;
}

/* Read the 32-byte key of a key file: 64 hex digits, a newline or not. */
static int
repo_key_file_read(
    const char *path, uint8_t key[REPO_KEYFILE_LEN], struct mk_err *err)
{
	char *text = NULL;
	size_t len = 0;
	int rc = -1;

	if (mk_fs_read_file(path, 256, &text, &len, err) < 0)
		return mk_err_prefix(err, "key file");
	if (len > 0 && text[len - 1] == '\n')
		text[--len] = '\0';
	if (len > 0 && text[len - 1] == '\r')
		text[--len] = '\0';
	if (len != 2 * REPO_KEYFILE_LEN ||
	    mk_crypto_unhex(text, key, REPO_KEYFILE_LEN, NULL) < 0) {
		mk_err_set(err, "key file %s: expected %d hex digits", path,
		    2 * REPO_KEYFILE_LEN);
		goto out;
	}
	rc = 0;
out:
	mk_crypto_wipe(text, len);
	free(text);
	return rc;
}

int
mk_repo_passphrase_read(
    const char *path, char **passphrase_r, struct mk_err *err)
{
	char *text = NULL;
	size_t len = 0, n;
	int rc = -1;

	*passphrase_r = NULL;
	if (mk_fs_read_file(
		path, MK_REPO_PASSPHRASE_MAX + 2, &text, &len, err) < 0)
		return mk_err_prefix(err, "passphrase file");
	n = strcspn(text, "\n");
	if (n > 0 && text[n - 1] == '\r')
		n--;
	if (memchr(text, '\0', len) != NULL || n == 0 ||
	    n > MK_REPO_PASSPHRASE_MAX) {
		mk_err_set(err,
		    "passphrase file %s: the first line must hold 1 to %d "
		    "bytes",
		    path, MK_REPO_PASSPHRASE_MAX);
		goto out;
	}
	*passphrase_r = mk_xstrndup(text, n);
	rc = 0;
out:
	mk_crypto_wipe(text, len);
	free(text);
	return rc;
}

void
mk_repo_passphrase_free(char **passphrasep)
{
	if (*passphrasep == NULL)
		return;
	mk_crypto_wipe(*passphrasep, strlen(*passphrasep));
	free(*passphrasep);
	*passphrasep = NULL;
}

/* Store hex of bin under key in obj. */
static void
repo_json_set_hex(json_t *obj, const char *key, const void *bin, size_t len)
{
	char hex[2 * 256 + 1];

	mk_crypto_hex(bin, len, hex);
	json_object_set_new(obj, key, json_string(hex));
}

/* Read exactly len bytes of hex from the string member key of obj. */
static int
repo_json_get_hex(const json_t *obj, const char *key, void *bin, size_t len,
    struct mk_err *err)
{
	const char *s = json_string_value(json_object_get(obj, key));

	if (s == NULL || mk_crypto_unhex(s, bin, len, NULL) < 0)
		return mk_err_set(
		    err, "'%s' is not %zu bytes of hex", key, len);
	return 0;
}

/* Serialize obj to text ending in a newline; the caller frees it. */
static char *
repo_json_text(const json_t *obj, size_t *len_r)
{
	char *s = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	char *text;

	if (s == NULL)
		mk_fatal("repo", "json_dumps: out of memory");
	text = mk_xasprintf("%s\n", s);
	free(s);
	*len_r = strlen(text);
	return text;
}

/* Parse a small JSON object fetched from storage. */
static json_t *
repo_json_parse(
    const uint8_t *data, size_t len, const char *what, struct mk_err *err)
{
	json_error_t jerr;
	json_t *obj;

	if (len > REPO_JSON_MAX) {
		mk_err_set(
		    err, "%s: larger than %d bytes", what, REPO_JSON_MAX);
		return NULL;
	}
	obj =
	    json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (obj == NULL) {
		mk_err_set(err, "%s: not JSON: %s (line %d)", what, jerr.text,
		    jerr.line);
		return NULL;
	}
	if (!json_is_object(obj)) {
		json_decref(obj);
		mk_err_set(err, "%s: not a JSON object", what);
		return NULL;
	}
	return obj;
}

/* Build the config object of repo. */
static json_t *
repo_config_json(const struct mk_repo *repo)
{
	bool enc = repo->keys.encrypted;

	return json_pack("{s:s, s:i, s:i, s:s, s:s, s:s, s:s, "
			 "s:{s:s, s:i}, s:I, s:{s:s, s:I, s:I, s:I}}",
	    "magic", REPO_MAGIC, "version", MK_REPO_VERSION_MAJOR, "minor",
	    MK_REPO_VERSION_MINOR, "id", repo->id, "created", repo->created,
	    "encryption", enc ? "aes-256-gcm" : "none", "blob_id",
	    enc ? "hmac-sha256" : "sha256", "compression", "algorithm", "zstd",
	    "level", repo->level, "pack_size", (json_int_t)repo->pack_size,
	    "chunker", "algorithm", "fastcdc", "min",
	    (json_int_t)repo->chunker.min, "avg", (json_int_t)repo->chunker.avg,
	    "max", (json_int_t)repo->chunker.max);
}

/*
 * Without encryption the chunker key only needs to be the same for every
 * client of the repository: derive it from the repository id.
 */
static int
repo_plain_chunker_key(struct mk_repo *repo, struct mk_err *err)
{
	uint8_t id[MK_REPO_ID_LEN / 2];

	if (mk_crypto_unhex(repo->id, id, sizeof(id), err) < 0)
		return -1;
	return mk_crypto_hkdf_sha256(id, sizeof(id), NULL, 0, REPO_CHUNKER_INFO,
	    strlen(REPO_CHUNKER_INFO), repo->keys.chunker,
	    sizeof(repo->keys.chunker), err);
}

/* Check and take the settings of a config object. */
static int
repo_config_parse(
    struct mk_repo *repo, const uint8_t *data, size_t len, struct mk_err *err)
{
	const char *magic, *id, *created, *enc, *blob_id, *calg, *chalg;
	json_int_t version, minor, level, pack_size, cmin, cavg, cmax;
	json_error_t jerr;
	json_t *obj;
	int rc = -1;

	if ((obj = repo_json_parse(data, len, "config", err)) == NULL)
		return -1;
	if (json_unpack_ex(obj, &jerr, 0, "{s:s, s:I}", "magic", &magic,
		"version", &version) < 0 ||
	    strcmp(magic, REPO_MAGIC) != 0) {
		mk_err_set(err, "config: not a mailkeep repository");
		goto out;
	}
	/* Refuse a newer format before trusting any other field. */
	if (version != MK_REPO_VERSION_MAJOR) {
		mk_err_set(err,
		    "config: unsupported repository version %lld (this build "
		    "reads %d.x)",
		    (long long)version, MK_REPO_VERSION_MAJOR);
		goto out;
	}
	if (json_unpack_ex(obj, &jerr, 0,
		"{s:I, s:s, s:s, s:s, s:s, s:{s:s, s:I}, s:I, "
		"s:{s:s, s:I, s:I, s:I}}",
		"minor", &minor, "id", &id, "created", &created, "encryption",
		&enc, "blob_id", &blob_id, "compression", "algorithm", &calg,
		"level", &level, "pack_size", &pack_size, "chunker",
		"algorithm", &chalg, "min", &cmin, "avg", &cavg, "max",
		&cmax) < 0) {
		mk_err_set(err, "config: %s", jerr.text);
		goto out;
	}
	if (strlen(id) != MK_REPO_ID_LEN || minor < 0 || minor > 255) {
		mk_err_set(err, "config: bad id or minor version");
		goto out;
	}
	if (strcmp(enc, "aes-256-gcm") == 0 &&
	    strcmp(blob_id, "hmac-sha256") == 0)
		repo->keys.encrypted = true;
	else if (strcmp(enc, "none") == 0 && strcmp(blob_id, "sha256") == 0)
		repo->keys.encrypted = false;
	else {
		mk_err_set(err, "config: unknown encryption '%s' / '%s'", enc,
		    blob_id);
		goto out;
	}
	if (strcmp(calg, "zstd") != 0 || level < 1 || level > 19 ||
	    pack_size < 1 || pack_size > MK_PACK_SIZE_MAX) {
		mk_err_set(err, "config: bad compression or pack size");
		goto out;
	}
	if (strcmp(chalg, "fastcdc") != 0 || cmin < 0 || cmin > UINT32_MAX ||
	    cavg < 0 || cavg > UINT32_MAX || cmax < 0 || cmax > UINT32_MAX) {
		mk_err_set(err, "config: bad chunker");
		goto out;
	}
	repo->chunker.min = (uint32_t)cmin;
	repo->chunker.avg = (uint32_t)cavg;
	repo->chunker.max = (uint32_t)cmax;
	if (mk_chunker_params_check(&repo->chunker, err) < 0) {
		mk_err_prefix(err, "config");
		goto out;
	}
	memcpy(repo->id, id, sizeof(repo->id));
	mk_strlcpy(repo->created, created, sizeof(repo->created));
	repo->minor = (unsigned)minor;
	repo->level = (int)level;
	repo->pack_size = (uint32_t)pack_size;
	rc = 0;
out:
	json_decref(obj);
	return rc;
}

/* The aad of a key slot: info, NUL, slot id, config hash. */
static size_t
repo_slot_aad(const char *slot_id, const uint8_t config_hash[32],
    uint8_t aad[64 + MK_REPO_SLOT_ID_LEN])
{
	size_t n = strlen(REPO_SLOT_INFO) + 1;

	memcpy(aad, REPO_SLOT_INFO, n);
	memcpy(aad + n, slot_id, MK_REPO_SLOT_ID_LEN);
	n += MK_REPO_SLOT_ID_LEN;
	memcpy(aad + n, config_hash, MK_CRYPTO_HASH_LEN);
	return n + MK_CRYPTO_HASH_LEN;
}

/* The key-encryption key of a slot from key, salt and scrypt cost. */
static int
repo_kek(const struct mk_repo_key *key, const uint8_t salt[REPO_SALT_LEN],
    const struct mk_crypto_scrypt_params *sp, uint8_t kek[MK_CRYPTO_KEY_LEN],
    struct mk_err *err)
{
	uint8_t file_key[REPO_KEYFILE_LEN];
	int rc;

	if (key->kind == MK_REPO_KEY_PASSPHRASE)
		return mk_crypto_scrypt(key->passphrase,
		    strlen(key->passphrase), salt, REPO_SALT_LEN, sp, kek,
		    MK_CRYPTO_KEY_LEN, err);
	if (repo_key_file_read(key->key_file, file_key, err) < 0)
		return -1;
	rc = mk_crypto_hkdf_sha256(file_key, sizeof(file_key), salt,
	    REPO_SALT_LEN, REPO_SLOT_INFO, strlen(REPO_SLOT_INFO), kek,
	    MK_CRYPTO_KEY_LEN, err);
	mk_crypto_wipe(file_key, sizeof(file_key));
	return rc;
}

/*
 * Check that key can make or open a slot; a key file is read once here so
 * that a missing or malformed one is reported as such.
 */
static int
repo_key_check(const struct mk_repo_key *key, struct mk_err *err)
{
	uint8_t file_key[REPO_KEYFILE_LEN];
	int rc;

	if (key->kind == MK_REPO_KEY_FILE && key->key_file != NULL) {
		rc = repo_key_file_read(key->key_file, file_key, err);
		mk_crypto_wipe(file_key, sizeof(file_key));
		return rc;
	}
	if (key->kind == MK_REPO_KEY_PASSPHRASE && key->passphrase != NULL) {
		if (key->passphrase[0] == '\0')
			return mk_err_set(err, "empty passphrase");
		return 0;
	}
	return mk_err_set(err, "a key file or a passphrase is needed");
}

/* Wrap the master key of repo for key in a new slot object. */
static int
repo_slot_write(struct mk_repo *repo, const struct mk_repo_key *key,
    char slot_id_r[MK_REPO_SLOT_ID_LEN + 1], struct mk_err *err)
{
	struct mk_crypto_scrypt_params sp = { MK_CRYPTO_SCRYPT_N,
		MK_CRYPTO_SCRYPT_R, MK_CRYPTO_SCRYPT_P };
	uint8_t raw_id[REPO_SLOT_RAW_LEN], salt[REPO_SALT_LEN];
	uint8_t nonce[MK_CRYPTO_NONCE_LEN], kek[MK_CRYPTO_KEY_LEN];
	uint8_t plain[MK_CRYPTO_MASTER_LEN];
	uint8_t sealed[MK_CRYPTO_MASTER_LEN + MK_CRYPTO_TAG_LEN];
	uint8_t aad[64 + MK_REPO_SLOT_ID_LEN];
	char slot_id[MK_REPO_SLOT_ID_LEN + 1], name[64], created[32];
	char host[256] = "unknown";
	struct mk_crypto_aead *aead = NULL;
	json_t *obj = NULL, *kdf;
	char *text = NULL;
	size_t aadlen, len = 0;
	int rc = -1;

	if (repo_key_check(key, err) < 0)
		return -1;
	if (key->kind == MK_REPO_KEY_PASSPHRASE && key->scrypt != NULL)
		sp = *key->scrypt;
	if (mk_crypto_random(raw_id, sizeof(raw_id), err) < 0 ||
	    mk_crypto_random(salt, sizeof(salt), err) < 0 ||
	    mk_crypto_random(nonce, sizeof(nonce), err) < 0)
		goto out;
	mk_crypto_hex(raw_id, sizeof(raw_id), slot_id);
	if (repo_kek(key, salt, &sp, kek, err) < 0 ||
	    mk_crypto_aead_new(kek, &aead, err) < 0)
		goto out;
	memcpy(plain, repo->keys.data, MK_CRYPTO_KEY_LEN);
	memcpy(plain + MK_CRYPTO_KEY_LEN, repo->keys.id, MK_CRYPTO_KEY_LEN);
	memcpy(plain + 2 * MK_CRYPTO_KEY_LEN, repo->keys.chunker,
	    MK_CRYPTO_KEY_LEN);
	aadlen = repo_slot_aad(slot_id, repo->config_hash, aad);
	if (mk_crypto_aead_seal(aead, nonce, aad, aadlen, plain, sizeof(plain),
		sealed, sealed + MK_CRYPTO_MASTER_LEN, err) < 0)
		goto out;
	if (key->kind == MK_REPO_KEY_PASSPHRASE)
		kdf = json_pack("{s:s, s:I, s:I, s:I}", "algorithm", "scrypt",
		    "n", (json_int_t)sp.n, "r", (json_int_t)sp.r, "p",
		    (json_int_t)sp.p);
	else
		kdf = json_pack("{s:s}", "algorithm", "hkdf-sha256");
	repo_json_set_hex(kdf, "salt", salt, sizeof(salt));
	(void)gethostname(host, sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	repo_now(created);
	obj = json_pack("{s:s, s:i, s:s, s:s, s:s, s:o}", "magic",
	    REPO_SLOT_MAGIC, "version", REPO_SLOT_VERSION, "kind",
	    key->kind == MK_REPO_KEY_PASSPHRASE ? "passphrase" : "key-file",
	    "created", created, "host", host, "kdf", kdf);
	repo_json_set_hex(
	    obj, "config_sha256", repo->config_hash, sizeof(repo->config_hash));
	repo_json_set_hex(obj, "nonce", nonce, sizeof(nonce));
	repo_json_set_hex(obj, "wrapped", sealed, sizeof(sealed));
	text = repo_json_text(obj, &len);
	snprintf(name, sizeof(name), "%s%s", REPO_KEYS, slot_id);
	if (mk_storage_put(repo->storage, name, text, len, err) < 0)
		goto out;
	memcpy(slot_id_r, slot_id, sizeof(slot_id));
	rc = 0;
out:
	mk_crypto_wipe(kek, sizeof(kek));
	mk_crypto_wipe(plain, sizeof(plain));
	mk_crypto_aead_free(&aead);
	json_decref(obj);
	free(text);
	return rc;
}

/*
 * Try to open the slot object (slot_id, data) with key.  Returns 1 and
 * fills keys, 0 when the slot is for another kind of key or the key does
 * not open it, -1 when the slot is damaged or made for another config.
 */
static int
repo_slot_open(const struct mk_repo *repo, const char *slot_id,
    const uint8_t *data, size_t len, const struct mk_repo_key *key,
    struct mk_crypto_keys *keys, struct mk_err *err)
{
	uint8_t salt[REPO_SALT_LEN], nonce[MK_CRYPTO_NONCE_LEN];
	uint8_t sealed[MK_CRYPTO_MASTER_LEN + MK_CRYPTO_TAG_LEN];
	uint8_t plain[MK_CRYPTO_MASTER_LEN], kek[MK_CRYPTO_KEY_LEN];
	uint8_t config_hash[MK_CRYPTO_HASH_LEN];
	uint8_t aad[64 + MK_REPO_SLOT_ID_LEN];
	struct mk_crypto_scrypt_params sp = { 0, 0, 0 };
	struct mk_crypto_aead *aead = NULL;
	const char *magic, *kind, *alg;
	json_int_t version, n = 0, r = 0, p = 0;
	json_t *obj, *kdf;
	json_error_t jerr;
	size_t aadlen;
	int rc = -1;
	bool pass;

	if ((obj = repo_json_parse(data, len, slot_id, err)) == NULL)
		return -1;
	if (json_unpack_ex(obj, &jerr, 0, "{s:s, s:I, s:s, s:o}", "magic",
		&magic, "version", &version, "kind", &kind, "kdf", &kdf) < 0 ||
	    strcmp(magic, REPO_SLOT_MAGIC) != 0) {
		mk_err_set(err, "%s: not a key slot", slot_id);
		goto out;
	}
	if (version != REPO_SLOT_VERSION) {
		mk_err_set(err, "%s: unsupported key slot version %lld",
		    slot_id, (long long)version);
		goto out;
	}
	if (repo_json_get_hex(obj, "config_sha256", config_hash,
		sizeof(config_hash), err) < 0 ||
	    repo_json_get_hex(obj, "nonce", nonce, sizeof(nonce), err) < 0 ||
	    repo_json_get_hex(obj, "wrapped", sealed, sizeof(sealed), err) <
		0 ||
	    repo_json_get_hex(kdf, "salt", salt, sizeof(salt), err) < 0) {
		mk_err_prefix(err, "%s", slot_id);
		goto out;
	}
	if (memcmp(config_hash, repo->config_hash, sizeof(config_hash)) != 0) {
		mk_err_set(err, "%s: made for another config object", slot_id);
		goto out;
	}
	pass = strcmp(kind, "passphrase") == 0;
	if (!pass && strcmp(kind, "key-file") != 0) {
		mk_err_set(err, "%s: unknown kind '%s'", slot_id, kind);
		goto out;
	}
	if (pass != (key->kind == MK_REPO_KEY_PASSPHRASE)) {
		rc = 0;
		goto out;
	}
	if (json_unpack_ex(kdf, &jerr, 0, "{s:s}", "algorithm", &alg) < 0 ||
	    strcmp(alg, pass ? "scrypt" : "hkdf-sha256") != 0 ||
	    (pass &&
		(json_unpack_ex(kdf, &jerr, 0, "{s:I, s:I, s:I}", "n", &n, "r",
		     &r, "p", &p) < 0 ||
		    n < 0 || r < 0 || r > UINT32_MAX || p < 0 ||
		    p > UINT32_MAX))) {
		mk_err_set(err, "%s: bad kdf", slot_id);
		goto out;
	}
	sp.n = (uint64_t)n;
	sp.r = (uint32_t)r;
	sp.p = (uint32_t)p;
	if (repo_kek(key, salt, &sp, kek, err) < 0) {
		mk_err_prefix(err, "%s", slot_id);
		goto out;
	}
	if (mk_crypto_aead_new(kek, &aead, err) < 0)
		goto out;
	aadlen = repo_slot_aad(slot_id, repo->config_hash, aad);
	if (mk_crypto_aead_open(aead, nonce, aad, aadlen, sealed,
		MK_CRYPTO_MASTER_LEN, plain, sealed + MK_CRYPTO_MASTER_LEN,
		err) < 0) {
		rc = 0;
		goto out;
	}
	keys->encrypted = true;
	memcpy(keys->data, plain, MK_CRYPTO_KEY_LEN);
	memcpy(keys->id, plain + MK_CRYPTO_KEY_LEN, MK_CRYPTO_KEY_LEN);
	memcpy(keys->chunker, plain + 2 * MK_CRYPTO_KEY_LEN, MK_CRYPTO_KEY_LEN);
	rc = 1;
out:
	mk_crypto_wipe(kek, sizeof(kek));
	mk_crypto_wipe(plain, sizeof(plain));
	mk_crypto_aead_free(&aead);
	json_decref(obj);
	return rc;
}

struct repo_names {
	char **names;
	size_t count;
	size_t cap;
	uint64_t bytes;
};

static int
repo_names_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	struct repo_names *rn = arg;

	(void)err;
	mk_xgrow(&rn->names, &rn->cap, rn->count + 1, sizeof(*rn->names));
	rn->names[rn->count++] = mk_xstrdup(name);
	rn->bytes += st->size;
	return 0;
}

static void
repo_names_free(struct repo_names *rn)
{
	size_t i;

	for (i = 0; i < rn->count; i++)
		free(rn->names[i]);
	free(rn->names);
	memset(rn, 0, sizeof(*rn));
}

/* The names of the key slots, or of the packs. */
static int
repo_list(struct mk_repo *repo, const char *prefix, struct repo_names *rn,
    struct mk_err *err)
{
	memset(rn, 0, sizeof(*rn));
	if (mk_storage_list(repo->storage, prefix, repo_names_cb, rn, err) <
	    0) {
		repo_names_free(rn);
		return -1;
	}
	return 0;
}

/*
 * Find a slot that key opens and put the master key in keys.  Returns 1
 * with slot_id_r set, 0 when no slot opens, -1 on an I/O error.  Damaged
 * slots are skipped; the first such problem is kept for the message.
 */
static int
repo_slots_try(struct mk_repo *repo, const struct mk_repo_key *key,
    struct mk_crypto_keys *keys, char slot_id_r[MK_REPO_SLOT_ID_LEN + 1],
    struct mk_err *err)
{
	struct mk_err damage = { 0, "" };
	struct repo_names rn;
	size_t i, bad = 0;
	int rc = 0;

	if (repo_list(repo, REPO_KEYS, &rn, err) < 0)
		return -1;
	for (i = 0; i < rn.count && rc == 0; i++) {
		const char *slot_id = rn.names[i] + strlen(REPO_KEYS);
		struct mk_err serr;
		uint8_t *data = NULL;
		size_t len;

		if (strlen(slot_id) != MK_REPO_SLOT_ID_LEN)
			continue;
		if (mk_storage_get(
			repo->storage, rn.names[i], &data, &len, err) < 0) {
			rc = -1;
			break;
		}
		rc = repo_slot_open(repo, slot_id, data, len, key, keys, &serr);
		free(data);
		if (rc == 1)
			memcpy(slot_id_r, slot_id, MK_REPO_SLOT_ID_LEN + 1);
		if (rc < 0) {
			if (bad++ == 0)
				damage = serr;
			rc = 0;
		}
	}
	if (rc == 0 && bad > 0)
		mk_err_set(err,
		    "no key slot opens with this key; %zu slot(s) unusable, "
		    "first: %s",
		    bad, damage.msg);
	else if (rc == 0)
		mk_err_set(err, "no key slot opens with this key");
	repo_names_free(&rn);
	return rc;
}

/* A new repository object around storage (which it takes). */
static struct mk_repo *
repo_new(struct mk_storage *storage)
{
	struct mk_repo *repo = mk_xcalloc(1, sizeof(*repo));

	repo->storage = storage;
	pthread_mutex_init(&repo->header_lock, NULL);
	pthread_mutex_init(&repo->dict_lock, NULL);
	return repo;
}

/* Set up what the master key makes: the blob id hash. */
static int
repo_keys_ready(struct mk_repo *repo, struct mk_err *err)
{
	return mk_pack_id_hash_new(&repo->keys, &repo->id_hash, err);
}

int
mk_repo_init(const char *location, const struct mk_repo_key *key,
    const struct mk_repo_init_opts *opts, struct mk_repo **repo_r,
    struct mk_err *err)
{
	struct mk_storage *storage = NULL;

	*repo_r = NULL;
	if (mk_storage_open(location, true, &storage, err) < 0)
		return -1;
	return mk_repo_init_storage(storage, key, opts, repo_r, err);
}

int
mk_repo_init_storage(struct mk_storage *storage, const struct mk_repo_key *key,
    const struct mk_repo_init_opts *opts, struct mk_repo **repo_r,
    struct mk_err *err)
{
	static const struct mk_repo_init_opts defaults;
	static const struct mk_chunker_params def_chunker = {
		MK_CHUNKER_MIN_DEFAULT, MK_CHUNKER_AVG_DEFAULT,
		MK_CHUNKER_MAX_DEFAULT
	};
	const char *location = storage->location;
	struct mk_repo *repo = repo_new(storage);
	struct mk_storage_stat sst;
	uint8_t raw_id[MK_REPO_ID_LEN / 2];
	struct repo_names rn;
	json_t *obj = NULL;
	char *text = NULL;
	size_t len = 0;
	int rc = -1, found;

	*repo_r = NULL;
	if (opts == NULL)
		opts = &defaults;
	if (key == NULL)
		key = &repo_no_key;
	if (opts->no_encryption && key->kind != MK_REPO_KEY_NONE) {
		mk_err_set(err,
		    "a key was given for a repository "
		    "without encryption");
		goto out;
	}
	if (!opts->no_encryption && repo_key_check(key, err) < 0)
		goto out;
	if (opts->level < 0 || opts->level > 19 ||
	    opts->pack_size > MK_PACK_SIZE_MAX) {
		mk_err_set(err, "bad compression level or pack size");
		goto out;
	}
	repo->level = opts->level == 0 ? MK_PACK_LEVEL_DEFAULT : opts->level;
	repo->pack_size =
	    opts->pack_size == 0 ? MK_PACK_SIZE_DEFAULT : opts->pack_size;
	repo->chunker = opts->chunker.avg == 0 ? def_chunker : opts->chunker;
	if (mk_chunker_params_check(&repo->chunker, err) < 0)
		goto out;
	if ((found = mk_storage_stat(storage, REPO_CONFIG, &sst, err)) != 0) {
		if (found > 0)
			mk_err_set(
			    err, "%s: a repository exists already", location);
		goto out;
	}
	if (repo_list(repo, REPO_KEYS, &rn, err) < 0)
		goto out;
	found = rn.count > 0;
	repo_names_free(&rn);
	if (found) {
		mk_err_set(err,
		    "%s: key slots but no config (an interrupted init?): "
		    "remove keys/ first",
		    location);
		goto out;
	}
	if (mk_crypto_random(raw_id, sizeof(raw_id), err) < 0)
		goto out;
	mk_crypto_hex(raw_id, sizeof(raw_id), repo->id);
	repo_now(repo->created);
	repo->minor = MK_REPO_VERSION_MINOR;
	if (opts->no_encryption) {
		if (repo_plain_chunker_key(repo, err) < 0)
			goto out;
	} else if (mk_crypto_keys_generate(&repo->keys, err) < 0)
		goto out;
	if ((obj = repo_config_json(repo)) == NULL) {
		mk_err_set(err, "config: cannot build JSON");
		goto out;
	}
	text = repo_json_text(obj, &len);
	if (mk_crypto_sha256(text, len, repo->config_hash, err) < 0 ||
	    repo_keys_ready(repo, err) < 0)
		goto out;
	/* The slot first: a config must never exist without a way in. */
	if (!opts->no_encryption &&
	    repo_slot_write(repo, key, repo->slot_id, err) < 0)
		goto out;
	if (mk_storage_put(storage, REPO_CONFIG, text, len, err) < 0)
		goto out;
	*repo_r = repo;
	repo = NULL;
	rc = 0;
out:
	json_decref(obj);
	free(text);
	mk_repo_close(&repo);
	return rc;
}

int
mk_repo_open(const char *location, const struct mk_repo_key *key,
    struct mk_repo **repo_r, struct mk_err *err)
{
	struct mk_storage *storage = NULL;

	*repo_r = NULL;
	if (mk_storage_open(location, false, &storage, err) < 0)
		return -1;
	return mk_repo_open_storage(storage, key, repo_r, err);
}

int
mk_repo_open_storage(struct mk_storage *storage, const struct mk_repo_key *key,
    struct mk_repo **repo_r, struct mk_err *err)
{
	const char *location = storage->location;
	struct mk_repo *repo = repo_new(storage);
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = -1;

	*repo_r = NULL;
	if (key == NULL)
		key = &repo_no_key;
	if (mk_storage_get(storage, REPO_CONFIG, &data, &len, err) < 0) {
		if (err != NULL && err->sys_errno == ENOENT)
			mk_err_set(err, "%s: no repository here (no config)",
			    location);
		goto out;
	}
	if (repo_config_parse(repo, data, len, err) < 0 ||
	    mk_crypto_sha256(data, len, repo->config_hash, err) < 0)
		goto out;
	if (!repo->keys.encrypted) {
		if (key->kind != MK_REPO_KEY_NONE) {
			mk_err_set(err,
			    "%s: the repository says it is not encrypted, but "
			    "a key was given: refusing (a downgraded config?)",
			    location);
			goto out;
		}
		if (repo_plain_chunker_key(repo, err) < 0)
			goto out;
	} else {
		if (key->kind == MK_REPO_KEY_NONE) {
			mk_err_set(err,
			    "%s: the repository is encrypted: a key file or a "
			    "passphrase is needed",
			    location);
			goto out;
		}
		if (repo_key_check(key, err) < 0)
			goto out;
		if (repo_slots_try(
			repo, key, &repo->keys, repo->slot_id, err) != 1) {
			mk_err_prefix(err, "%s", location);
			goto out;
		}
	}
	if (repo_keys_ready(repo, err) < 0)
		goto out;
	*repo_r = repo;
	repo = NULL;
	rc = 0;
out:
	free(data);
	mk_repo_close(&repo);
	return rc;
}

void
mk_repo_close(struct mk_repo **repop)
{
	struct mk_repo *repo = *repop;

	if (repo == NULL)
		return;
	mk_storage_close(&repo->storage);
	pthread_mutex_destroy(&repo->header_lock);
	pthread_mutex_destroy(&repo->dict_lock);
	for (size_t i = 0; i < repo->ndicts; i++) {
		mk_pack_dict_free(&repo->dicts[i]->dict);
		free(repo->dicts[i]);
	}
	free(repo->dicts);
	mk_crypto_hash_free(&repo->id_hash);
	mk_crypto_keys_wipe(&repo->keys);
	free(repo);
	*repop = NULL;
}

int
mk_repo_info(
    struct mk_repo *repo, struct mk_repo_info *info, struct mk_err *err)
{
	struct repo_names rn;

	memset(info, 0, sizeof(*info));
	info->location = repo->storage->location;
	memcpy(info->id, repo->id, sizeof(info->id));
	info->version_major = MK_REPO_VERSION_MAJOR;
	info->version_minor = repo->minor;
	memcpy(info->created, repo->created, sizeof(info->created));
	info->encrypted = repo->keys.encrypted;
	memcpy(info->slot_id, repo->slot_id, sizeof(info->slot_id));
	info->level = repo->level;
	info->pack_size = repo->pack_size;
	info->chunker = repo->chunker;
	if (repo_list(repo, REPO_KEYS, &rn, err) < 0)
		return -1;
	info->slots = rn.count;
	repo_names_free(&rn);
	if (repo_list(repo, REPO_PACKS, &rn, err) < 0)
		return -1;
	info->packs = rn.count;
	info->pack_bytes = rn.bytes;
	repo_names_free(&rn);
	return 0;
}

int
mk_repo_key_list(struct mk_repo *repo, struct mk_repo_slot **slots_r,
    size_t *count_r, struct mk_err *err)
{
	struct mk_repo_slot *slots = NULL;
	struct repo_names rn;
	size_t i, n = 0;
	int rc = -1;

	*slots_r = NULL;
	*count_r = 0;
	if (repo_list(repo, REPO_KEYS, &rn, err) < 0)
		return -1;
	slots = mk_xcalloc(rn.count, sizeof(*slots));
	for (i = 0; i < rn.count; i++) {
		const char *id = rn.names[i] + strlen(REPO_KEYS);
		struct mk_repo_slot *s = &slots[n];
		const char *kind = "", *created = "", *host = "";
		uint8_t *data = NULL;
		json_t *obj;
		size_t len;

		if (mk_storage_get(
			repo->storage, rn.names[i], &data, &len, err) < 0)
			goto out;
		obj = repo_json_parse(data, len, id, err);
		free(data);
		if (obj == NULL)
			goto out;
		(void)json_unpack(obj, "{s?s, s?s, s?s}", "kind", &kind,
		    "created", &created, "host", &host);
		mk_strlcpy(s->id, id, sizeof(s->id));
		s->kind = strcmp(kind, "passphrase") == 0
		    ? MK_REPO_KEY_PASSPHRASE
		    : MK_REPO_KEY_FILE;
		mk_strlcpy(s->created, created, sizeof(s->created));
		mk_strlcpy(s->host, host, sizeof(s->host));
		json_decref(obj);
		n++;
	}
	*slots_r = slots;
	*count_r = n;
	slots = NULL;
	rc = 0;
out:
	free(slots);
	repo_names_free(&rn);
	return rc;
}

int
mk_repo_key_add(struct mk_repo *repo, const struct mk_repo_key *key,
    char slot_id_r[MK_REPO_SLOT_ID_LEN + 1], struct mk_err *err)
{
	if (!repo->keys.encrypted)
		return mk_err_set(err, "the repository is not encrypted");
	return repo_slot_write(repo, key, slot_id_r, err);
}

int
mk_repo_key_remove(
    struct mk_repo *repo, const char *slot_id, struct mk_err *err)
{
	struct repo_names rn;
	char name[64];
	bool found = false;
	size_t i, count;

	if (strlen(slot_id) != MK_REPO_SLOT_ID_LEN)
		return mk_err_set(err, "'%s' is not a key slot id", slot_id);
	snprintf(name, sizeof(name), "%s%s", REPO_KEYS, slot_id);
	if (repo_list(repo, REPO_KEYS, &rn, err) < 0)
		return -1;
	for (i = 0; i < rn.count; i++)
		if (strcmp(rn.names[i], name) == 0)
			found = true;
	count = rn.count;
	repo_names_free(&rn);
	if (!found)
		return mk_err_set(err, "no key slot %s", slot_id);
	if (count == 1)
		return mk_err_set(err,
		    "%s is the last key slot: removing it would make every "
		    "backup unreadable",
		    slot_id);
	return mk_storage_delete(repo->storage, name, err);
}

int
mk_repo_key_verify(struct mk_repo *repo, const struct mk_repo_key *key,
    char slot_id_r[MK_REPO_SLOT_ID_LEN + 1], struct mk_err *err)
{
	struct mk_crypto_keys keys;
	int rc;

	if (!repo->keys.encrypted)
		return mk_err_set(err, "the repository is not encrypted");
	if (repo_key_check(key, err) < 0)
		return -1;
	memset(&keys, 0, sizeof(keys));
	rc = repo_slots_try(repo, key, &keys, slot_id_r, err);
	/* A slot wrapping some other master key does not count. */
	if (rc == 1 && memcmp(&keys, &repo->keys, sizeof(keys)) != 0) {
		mk_err_set(err, "slot %s holds another master key", slot_id_r);
		rc = 0;
	}
	mk_crypto_keys_wipe(&keys);
	return rc;
}

const struct mk_crypto_keys *
mk_repo_keys(const struct mk_repo *repo)
{
	return &repo->keys;
}

struct mk_storage *
mk_repo_storage(struct mk_repo *repo)
{
	return repo->storage;
}

int
mk_repo_blob_id(const struct mk_repo *repo, const void *data, size_t len,
    uint8_t id_r[MK_PACK_ID_LEN], struct mk_err *err)
{
	return mk_crypto_hash_digest(repo->id_hash, data, len, id_r, err);
}

int
mk_repo_pack_writer_new(const struct mk_repo *repo,
    struct mk_pack_writer **writer_r, struct mk_err *err)
{
	struct mk_pack_opts opts = { repo->pack_size, repo->level };

	return mk_pack_writer_new(&repo->keys, &opts, writer_r, err);
}

int
mk_repo_compressor_new(struct mk_repo *repo, struct mk_pack_compressor **comp_r,
    struct mk_err *err)
{
	const struct repo_dict *h, *b;

	if (mk_pack_compressor_new(repo->level, comp_r, err) < 0)
		return -1;
	pthread_mutex_lock(&repo->dict_lock);
	h = repo->dicts_use ? repo->current[MK_REPO_DICT_HEADERS] : NULL;
	b = repo->dicts_use ? repo->current[MK_REPO_DICT_BODIES] : NULL;
	pthread_mutex_unlock(&repo->dict_lock);
	mk_pack_compressor_use_dicts(*comp_r, h != NULL ? h->dict : NULL,
	    b != NULL ? b->dict : NULL, MK_REPO_DICT_BLOB_MAX);
	return 0;
}

int
mk_repo_chunker_new(const struct mk_repo *repo, struct mk_chunker **chunker_r,
    struct mk_err *err)
{
	return mk_chunker_new(
	    repo->keys.chunker, &repo->chunker, chunker_r, err);
}

int
mk_repo_pack_object(const char *pack_id, char name[MK_REPO_PACK_OBJECT_LEN + 1],
    struct mk_err *err)
{
	if (strlen(pack_id) != MK_PACK_NAME_LEN ||
	    strspn(pack_id, "0123456789abcdef") != MK_PACK_NAME_LEN)
		return mk_err_set(err, "'%.80s' is not a pack id", pack_id);
	snprintf(name, MK_REPO_PACK_OBJECT_LEN + 1, "%s%.2s/%s", REPO_PACKS,
	    pack_id, pack_id);
	return 0;
}

int
mk_repo_put_pack(
    struct mk_repo *repo, const struct mk_pack *pack, struct mk_err *err)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];

	if (mk_repo_pack_object(pack->id, name, err) < 0)
		return -1;
	return mk_storage_put(repo->storage, name, pack->data, pack->len, err);
}

/* The header of pack object name, from the one-pack cache or storage. */
static int
repo_pack_header(struct mk_repo *repo, const char *name,
    uint8_t header[MK_PACK_HEADER_LEN], struct mk_err *err)
{
	bool hit;

	pthread_mutex_lock(&repo->header_lock);
	hit = strcmp(repo->header_pack, name) == 0;
	if (hit)
		memcpy(header, repo->header, MK_PACK_HEADER_LEN);
	pthread_mutex_unlock(&repo->header_lock);
	if (hit)
		return 0;
	if (mk_storage_get_range(
		repo->storage, name, 0, header, MK_PACK_HEADER_LEN, err) < 0)
		return -1;
	pthread_mutex_lock(&repo->header_lock);
	mk_strlcpy(repo->header_pack, name, sizeof(repo->header_pack));
	memcpy(repo->header, header, MK_PACK_HEADER_LEN);
	pthread_mutex_unlock(&repo->header_lock);
	return 0;
}

int
mk_repo_read_blob(struct mk_repo *repo, const char *pack_id,
    const struct mk_pack_entry *entry, const struct mk_pack_dict *dict,
    uint8_t **data_r, size_t *len_r, struct mk_err *err)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];
	uint8_t header[MK_PACK_HEADER_LEN], *stored = NULL;
	struct mk_pack_reader *r = NULL;
	int rc = -1;

	*data_r = NULL;
	*len_r = 0;
	if (mk_repo_pack_object(pack_id, name, err) < 0)
		return -1;
	if (repo_pack_header(repo, name, header, err) < 0 ||
	    mk_pack_reader_new(&repo->keys, header, sizeof(header), &r, err) <
		0)
		goto out;
	if (dict == NULL && entry->compression == MK_PACK_ZSTD_DICT &&
	    mk_repo_dict_get(repo, entry->dict_id, &dict, err) < 0)
		goto out;
	stored = mk_xmalloc(entry->length);
	if (mk_storage_get_range(repo->storage, name, entry->offset, stored,
		entry->length, err) < 0 ||
	    mk_pack_reader_get(
		r, entry, stored, entry->length, dict, data_r, len_r, err) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "pack %.16s", pack_id);
	free(stored);
	mk_pack_reader_free(&r);
	return rc;
}

/* Neighbours in a pack closer than this are read with one range. */
#define REPO_RANGE_GAP (64u << 10)

/* A run of blobs of one pack read with one ranged read. */
struct repo_range {
	struct mk_repo_blob_read **reads; /* sorted by offset */
	size_t n;
};

struct repo_ranges {
	struct mk_repo *repo;
	struct repo_range *ranges;
	size_t n;
	size_t next; /* the next range to take, under lock */
	pthread_mutex_t lock;
};

static int
repo_read_cmp(const void *a, const void *b)
{
	const struct mk_repo_blob_read *x =
	    *(const struct mk_repo_blob_read *const *)a;
	const struct mk_repo_blob_read *y =
	    *(const struct mk_repo_blob_read *const *)b;
	int c = strcmp(x->pack, y->pack);

	if (c != 0)
		return c;
	return x->entry.offset < y->entry.offset ? -1
	    : x->entry.offset > y->entry.offset  ? 1
						 : 0;
}

/* Fetch one range and decode its blobs; a failure is each blob's. */
static void
repo_range_read(struct mk_repo *repo, const struct repo_range *rg)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];
	uint8_t header[MK_PACK_HEADER_LEN], *buf = NULL;
	struct mk_repo_blob_read *first = rg->reads[0],
				 *last = rg->reads[rg->n - 1];
	uint64_t start = first->entry.offset;
	size_t span = (size_t)(last->entry.offset + last->entry.length - start);
	struct mk_pack_reader *r = NULL;
	struct mk_err err;
	size_t i;

	if (mk_repo_pack_object(first->pack, name, &err) < 0 ||
	    repo_pack_header(repo, name, header, &err) < 0 ||
	    mk_pack_reader_new(&repo->keys, header, sizeof(header), &r, &err) <
		0)
		goto fail;
	buf = mk_xmalloc(span);
	if (mk_storage_get_range(repo->storage, name, start, buf, span, &err) <
	    0)
		goto fail;
	for (i = 0; i < rg->n; i++) {
		struct mk_repo_blob_read *b = rg->reads[i];
		const struct mk_pack_dict *dict = NULL;

		if ((b->entry.compression == MK_PACK_ZSTD_DICT &&
			mk_repo_dict_get(
			    repo, b->entry.dict_id, &dict, &b->err) < 0) ||
		    mk_pack_reader_get(r, &b->entry,
			buf + (b->entry.offset - start), b->entry.length, dict,
			&b->data, &b->len, &b->err) < 0)
			mk_err_prefix(&b->err, "pack %.16s", b->pack);
	}
	goto out;
fail:
	mk_err_prefix(&err, "pack %.16s", first->pack);
	for (i = 0; i < rg->n; i++)
		rg->reads[i]->err = err;
out:
	free(buf);
	mk_pack_reader_free(&r);
}

static void *
repo_ranges_worker(void *arg)
{
	struct repo_ranges *rs = arg;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&rs->lock);
		i = rs->next++;
		pthread_mutex_unlock(&rs->lock);
		if (i >= rs->n)
			return NULL;
		repo_range_read(rs->repo, &rs->ranges[i]);
	}
}

void
mk_repo_read_blobs(struct mk_repo *repo, struct mk_repo_blob_read *reads,
    size_t n, unsigned threads)
{
	struct mk_repo_blob_read **sorted;
	struct repo_ranges rs;
	pthread_t tids[8];
	unsigned t, started = 0;
	size_t i;

	if (n == 0)
		return;
	sorted = mk_xcalloc(n, sizeof(*sorted));
	for (i = 0; i < n; i++) {
		reads[i].data = NULL;
		reads[i].len = 0;
		mk_err_set(&reads[i].err, "not read");
		sorted[i] = &reads[i];
	}
	qsort(sorted, n, sizeof(*sorted), repo_read_cmp);
	memset(&rs, 0, sizeof(rs));
	rs.repo = repo;
	rs.ranges = mk_xcalloc(n, sizeof(*rs.ranges));
	for (i = 0; i < n; i++) {
		struct repo_range *rg = rs.n > 0 ? &rs.ranges[rs.n - 1] : NULL;
		const struct mk_repo_blob_read *b = sorted[i], *prev;
		uint64_t end;

		if (rg != NULL) {
			prev = rg->reads[rg->n - 1];
			end = prev->entry.offset + prev->entry.length;
			if (strcmp(prev->pack, b->pack) == 0 &&
			    b->entry.offset >= end &&
			    b->entry.offset - end <= REPO_RANGE_GAP &&
			    b->entry.offset + b->entry.length -
				    rg->reads[0]->entry.offset <=
				MK_REPO_RANGE_MAX) {
				rg->n++;
				continue;
			}
		}
		rs.ranges[rs.n].reads = &sorted[i];
		rs.ranges[rs.n++].n = 1;
	}
	if (threads > sizeof(tids) / sizeof(tids[0]))
		threads = sizeof(tids) / sizeof(tids[0]);
	if (threads > rs.n)
		threads = (unsigned)rs.n;
	pthread_mutex_init(&rs.lock, NULL);
	for (t = 1; t < threads; t++)
		if (pthread_create(
			&tids[started], NULL, repo_ranges_worker, &rs) == 0)
			started++;
	repo_ranges_worker(&rs);
	for (t = 0; t < started; t++)
		pthread_join(tids[t], NULL);
	pthread_mutex_destroy(&rs.lock);
	free(rs.ranges);
	free(sorted);
}

int
mk_repo_load_pack(struct mk_repo *repo, const char *pack_id,
    struct mk_pack_reader **reader_r, struct mk_err *err)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];
	uint8_t header[MK_PACK_HEADER_LEN], footer[MK_PACK_FOOTER_LEN];
	struct mk_pack_reader *r = NULL;
	struct mk_storage_stat sst;
	uint8_t *index = NULL;
	uint64_t index_off;
	size_t index_len;
	int rc = -1, found;

	*reader_r = NULL;
	if (mk_repo_pack_object(pack_id, name, err) < 0)
		return -1;
	if ((found = mk_storage_stat(repo->storage, name, &sst, err)) <= 0) {
		if (found == 0)
			mk_err_set(err, "no such pack");
		goto out;
	}
	if (sst.size < MK_PACK_HEADER_LEN + MK_PACK_FOOTER_LEN) {
		mk_err_set(err, "truncated (%llu bytes)",
		    (unsigned long long)sst.size);
		goto out;
	}
	if (mk_storage_get_range(
		repo->storage, name, 0, header, sizeof(header), err) < 0 ||
	    mk_pack_reader_new(&repo->keys, header, sizeof(header), &r, err) <
		0 ||
	    mk_storage_get_range(repo->storage, name,
		sst.size - MK_PACK_FOOTER_LEN, footer, sizeof(footer),
		err) < 0 ||
	    mk_pack_footer_parse(footer, sizeof(footer), sst.size, &index_off,
		&index_len, err) < 0)
		goto out;
	index = mk_xmalloc(index_len);
	if (mk_storage_get_range(
		repo->storage, name, index_off, index, index_len, err) < 0 ||
	    mk_pack_reader_load_index(r, index_off, index, index_len, err) < 0)
		goto out;
	*reader_r = r;
	r = NULL;
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "pack %.16s", pack_id);
	free(index);
	mk_pack_reader_free(&r);
	return rc;
}

struct repo_packs {
	mk_repo_pack_cb *cb;
	void *arg;
};

static int
repo_packs_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	struct repo_packs *rp = arg;
	const char *id = name + strlen(REPO_PACKS) + 3;

	(void)err;
	/* "packs/ab/<64 hex>" whose directory is the id's first two. */
	if (strlen(name) != MK_REPO_PACK_OBJECT_LEN ||
	    name[strlen(REPO_PACKS) + 2] != '/' ||
	    strspn(id, "0123456789abcdef") != MK_PACK_NAME_LEN ||
	    memcmp(id, name + strlen(REPO_PACKS), 2) != 0)
		return 0;
	rp->cb(id, st->size, rp->arg);
	return 0;
}

int
mk_repo_packs(
    struct mk_repo *repo, mk_repo_pack_cb *cb, void *arg, struct mk_err *err)
{
	struct repo_packs rp = { cb, arg };

	return mk_storage_list(
	    repo->storage, REPO_PACKS, repo_packs_cb, &rp, err);
}

static int64_t
repo_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Dictionaries: "dicts/<blob id>", each a pack of one MK_PACK_TYPE_DICT
 * blob (docs/repository-format.md, "Dictionaries"). */

static void
repo_dict_object(
    const uint8_t id[MK_PACK_ID_LEN], char name[MK_REPO_DICT_OBJECT_LEN + 1])
{
	char hex[2 * MK_PACK_ID_LEN + 1];

	mk_crypto_hex(id, MK_PACK_ID_LEN, hex);
	snprintf(name, MK_REPO_DICT_OBJECT_LEN + 1, "%s%s", REPO_DICTS, hex);
}

/* A loaded dictionary by id, or NULL; under dict_lock. */
static const struct repo_dict *
repo_dict_find(const struct mk_repo *repo, const uint8_t id[MK_PACK_ID_LEN])
{
	size_t i;

	for (i = 0; i < repo->ndicts; i++)
		if (memcmp(repo->dicts[i]->info.id, id, MK_PACK_ID_LEN) == 0)
			return repo->dicts[i];
	return NULL;
}

/*
 * Keep a dictionary (taking dict) unless another thread loaded it
 * first; the newest of each kind becomes current.
 */
static const struct repo_dict *
repo_dict_keep(struct mk_repo *repo, const struct mk_repo_dict_info *info,
    struct mk_pack_dict **dictp)
{
	const struct repo_dict *rd;
	struct repo_dict *slot;

	pthread_mutex_lock(&repo->dict_lock);
	if ((rd = repo_dict_find(repo, info->id)) == NULL) {
		mk_xgrow(&repo->dicts, &repo->dicts_cap, repo->ndicts + 1,
		    sizeof(*repo->dicts));
		slot = mk_xcalloc(1, sizeof(*slot));
		repo->dicts[repo->ndicts++] = slot;
		slot->info = *info;
		slot->dict = *dictp;
		*dictp = NULL;
		rd = slot;
		if (repo->current[info->kind] == NULL ||
		    repo->current[info->kind]->info.created_ns <
			info->created_ns)
			repo->current[info->kind] = rd;
	}
	pthread_mutex_unlock(&repo->dict_lock);
	mk_pack_dict_free(dictp);
	return rd;
}

/* Encode the plaintext of a dictionary blob. */
static uint8_t *
repo_dict_encode(const struct mk_repo_dict_info *info, const void *zdict,
    size_t len, size_t *len_r)
{
	uint8_t *p = mk_xcalloc(1, REPO_DICT_HEADER_LEN + len);
	uint64_t t = (uint64_t)info->created_ns;
	int i;

	memcpy(p, REPO_DICT_MAGIC, REPO_DICT_MAGIC_LEN);
	p[6] = REPO_DICT_VERSION_MAJOR;
	p[7] = REPO_DICT_VERSION_MINOR;
	p[8] = (uint8_t)info->kind;
	for (i = 0; i < 8; i++)
		p[16 + i] = (uint8_t)(t >> (56 - 8 * i));
	for (i = 0; i < 4; i++)
		p[24 + i] = (uint8_t)(info->samples >> (24 - 8 * i));
	memcpy(p + REPO_DICT_HEADER_LEN, zdict, len);
	*len_r = REPO_DICT_HEADER_LEN + len;
	return p;
}

/* Check and decode the plaintext of a dictionary blob. */
static int
repo_dict_decode(const uint8_t *p, size_t len, struct mk_repo_dict_info *info,
    struct mk_err *err)
{
	static const uint8_t zero[7];
	uint64_t t = 0;
	int i;

	if (len <= REPO_DICT_HEADER_LEN ||
	    memcmp(p, REPO_DICT_MAGIC, REPO_DICT_MAGIC_LEN) != 0)
		return mk_err_set(err, "not a dictionary");
	if (p[6] != REPO_DICT_VERSION_MAJOR)
		return mk_err_set(err,
		    "unsupported dictionary version %u.%u (this build reads "
		    "%d.x)",
		    p[6], p[7], REPO_DICT_VERSION_MAJOR);
	if ((p[8] != MK_REPO_DICT_HEADERS && p[8] != MK_REPO_DICT_BODIES) ||
	    (p[7] == 0 && memcmp(p + 9, zero, sizeof(zero)) != 0))
		return mk_err_set(err, "unknown dictionary kind %u", p[8]);
	for (i = 0; i < 8; i++)
		t = t << 8 | p[16 + i];
	info->kind = p[8];
	info->created_ns = (int64_t)t;
	info->samples = (uint32_t)p[24] << 24 | (uint32_t)p[25] << 16 |
	    (uint32_t)p[26] << 8 | p[27];
	info->size = len - REPO_DICT_HEADER_LEN;
	return 0;
}

/* Read, authenticate and prepare the dictionary object of id. */
static int
repo_dict_load(struct mk_repo *repo, const uint8_t id[MK_PACK_ID_LEN],
    const struct repo_dict **rd_r, struct mk_err *err)
{
	char name[MK_REPO_DICT_OBJECT_LEN + 1];
	struct mk_pack_reader *r = NULL;
	struct mk_pack_dict *dict = NULL;
	struct mk_repo_dict_info info;
	const struct mk_pack_entry *e;
	uint8_t *data = NULL, *plain = NULL;
	size_t len = 0, plen = 0;
	int rc = -1;

	*rd_r = NULL;
	memset(&info, 0, sizeof(info));
	memcpy(info.id, id, MK_PACK_ID_LEN);
	mk_crypto_hex(id, MK_PACK_ID_LEN, info.hex);
	repo_dict_object(id, name);
	if (mk_storage_get(repo->storage, name, &data, &len, err) < 0) {
		if (err != NULL && err->sys_errno == ENOENT)
			mk_err_set(
			    err, "missing from the repository (%s)", name);
		goto out;
	}
	if (len > REPO_DICT_OBJECT_MAX) {
		mk_err_set(err, "%s: %zu bytes, too large", name, len);
		goto out;
	}
	if (mk_pack_reader_open_mem(&repo->keys, data, len, &r, err) < 0)
		goto out;
	e = mk_pack_reader_entries(r);
	if (mk_pack_reader_count(r) != 1 || e->type != MK_PACK_TYPE_DICT ||
	    e->compression == MK_PACK_ZSTD_DICT ||
	    memcmp(e->id, id, MK_PACK_ID_LEN) != 0) {
		mk_err_set(err, "%s does not hold that dictionary", name);
		goto out;
	}
	if (mk_pack_reader_get_mem(r, data, len, e, NULL, &plain, &plen, err) <
		0 ||
	    repo_dict_decode(plain, plen, &info, err) < 0 ||
	    mk_pack_dict_new(id, plain + REPO_DICT_HEADER_LEN,
		plen - REPO_DICT_HEADER_LEN, repo->level, &dict, err) < 0)
		goto out;
	*rd_r = repo_dict_keep(repo, &info, &dict);
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "dictionary %.16s", info.hex);
	free(plain);
	free(data);
	mk_pack_reader_free(&r);
	return rc;
}

int
mk_repo_dict_get(struct mk_repo *repo, const uint8_t id[MK_PACK_ID_LEN],
    const struct mk_pack_dict **dict_r, struct mk_err *err)
{
	const struct repo_dict *rd;

	*dict_r = NULL;
	pthread_mutex_lock(&repo->dict_lock);
	rd = repo_dict_find(repo, id);
	pthread_mutex_unlock(&repo->dict_lock);
	if (rd == NULL && repo_dict_load(repo, id, &rd, err) < 0)
		return -1;
	*dict_r = rd->dict;
	return 0;
}

int
mk_repo_dict_put(struct mk_repo *repo, enum mk_repo_dict_kind kind,
    const void *zdict, size_t len, uint32_t samples,
    struct mk_repo_dict_info *info_r, struct mk_err *err)
{
	struct mk_pack_opts opts = { MK_PACK_SIZE_DEFAULT, repo->level };
	char name[MK_REPO_DICT_OBJECT_LEN + 1];
	struct mk_pack_writer *w = NULL;
	struct mk_pack_dict *dict = NULL;
	struct mk_repo_dict_info info;
	struct mk_pack *pack = NULL;
	uint8_t *plain = NULL;
	size_t plen = 0;
	int rc = -1;

	if (kind != MK_REPO_DICT_HEADERS && kind != MK_REPO_DICT_BODIES)
		return mk_err_set(err, "dictionary: unknown kind %d", kind);
	memset(&info, 0, sizeof(info));
	info.kind = kind;
	info.created_ns = repo_now_ns();
	info.samples = samples;
	info.size = len;
	plain = repo_dict_encode(&info, zdict, len, &plen);
	if (mk_repo_blob_id(repo, plain, plen, info.id, err) < 0)
		goto out;
	mk_crypto_hex(info.id, MK_PACK_ID_LEN, info.hex);
	/* Refuse what zstd would refuse before anything is stored. */
	if (mk_pack_dict_new(info.id, zdict, len, repo->level, &dict, err) <
		0 ||
	    mk_pack_writer_new(&repo->keys, &opts, &w, err) < 0 ||
	    mk_pack_writer_add(w, MK_PACK_TYPE_DICT, info.id, plain, plen, NULL,
		NULL, err) < 0 ||
	    mk_pack_writer_finish(w, &pack, err) < 0)
		goto out;
	repo_dict_object(info.id, name);
	if (mk_storage_put(repo->storage, name, pack->data, pack->len, err) < 0)
		goto out;
	repo_dict_keep(repo, &info, &dict);
	if (info_r != NULL)
		*info_r = info;
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "store dictionary");
	mk_pack_dict_free(&dict);
	mk_pack_writer_free(&w);
	mk_pack_free(&pack);
	free(plain);
	return rc;
}

int
mk_repo_dicts(
    struct mk_repo *repo, mk_repo_dict_cb *cb, void *arg, struct mk_err *err)
{
	const struct repo_dict *rd;
	struct repo_names rn;
	struct mk_repo_dict_info info;
	const struct mk_pack_dict *dict;
	struct mk_err derr;
	bool current;
	size_t i;
	int rc = 0;

	if (repo_list(repo, REPO_DICTS, &rn, err) < 0)
		return -1;
	for (i = 0; i < rn.count && rc == 0; i++) {
		const char *hex = rn.names[i] + strlen(REPO_DICTS);
		uint8_t id[MK_PACK_ID_LEN];

		/* Anything that is not "dicts/<64 hex>" is not ours. */
		if (strlen(hex) != 2 * MK_PACK_ID_LEN ||
		    strspn(hex, "0123456789abcdef") != 2 * MK_PACK_ID_LEN ||
		    mk_crypto_unhex(hex, id, sizeof(id), NULL) < 0)
			continue;
		memset(&derr, 0, sizeof(derr));
		if (mk_repo_dict_get(repo, id, &dict, &derr) < 0) {
			memset(&info, 0, sizeof(info));
			memcpy(info.id, id, sizeof(id));
			memcpy(info.hex, hex, sizeof(info.hex));
			rc = cb(&info, false, &derr, arg);
			continue;
		}
		pthread_mutex_lock(&repo->dict_lock);
		rd = repo_dict_find(repo, id);
		info = rd->info;
		current = repo->current[info.kind] == rd;
		pthread_mutex_unlock(&repo->dict_lock);
		rc = cb(&info, current, NULL, arg);
	}
	repo_names_free(&rn);
	if (rc < 0)
		mk_err_set(err, "dictionaries: stopped");
	return rc;
}

struct repo_dicts_load {
	size_t count;
	size_t damaged;
	struct mk_err first;
};

static int
repo_dicts_load_cb(const struct mk_repo_dict_info *info, bool current,
    const struct mk_err *damage, void *arg)
{
	struct repo_dicts_load *l = arg;

	(void)info;
	(void)current;
	if (damage != NULL && l->damaged++ == 0)
		l->first = *damage;
	else if (damage == NULL)
		l->count++;
	return 0;
}

int
mk_repo_dicts_load(
    struct mk_repo *repo, bool use, size_t *count_r, struct mk_err *err)
{
	struct repo_dicts_load l;

	memset(&l, 0, sizeof(l));
	*count_r = 0;
	pthread_mutex_lock(&repo->dict_lock);
	repo->dicts_use = use;
	pthread_mutex_unlock(&repo->dict_lock);
	if (!use)
		return 0;
	if (mk_repo_dicts(repo, repo_dicts_load_cb, &l, err) < 0)
		return -1;
	/* A damaged dictionary is check's to report; blobs that need it
	 * fail on their own.  New blobs use the newest good ones. */
	if (l.damaged > 0)
		mk_log_warn("repo", "%zu dictionar%s unusable, first: %s",
		    l.damaged, l.damaged == 1 ? "y" : "ies", l.first.msg);
	*count_r = l.count;
	return 0;
}

bool
mk_repo_dict_current(struct mk_repo *repo, enum mk_repo_dict_kind kind,
    struct mk_repo_dict_info *info_r)
{
	bool found;

	pthread_mutex_lock(&repo->dict_lock);
	found = repo->dicts_use && repo->current[kind] != NULL;
	if (found && info_r != NULL)
		*info_r = repo->current[kind]->info;
	pthread_mutex_unlock(&repo->dict_lock);
	return found;
}
