#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/repo.h"

static char *root;
static char location[4096], keyfile[4096];
/* Cheap scrypt for tests; the stored cost is what opening uses. */
static const struct mk_crypto_scrypt_params cheap = { 1024, 8, 1 };

static int
repo_setup(void **state)
{
	struct mk_err err;
	bool created;

	(void)state;
	root = fx_tmpdir();
	snprintf(location, sizeof(location), "%s/repo", root);
	snprintf(keyfile, sizeof(keyfile), "%s/repo.key", root);
	assert_int_equal(mk_repo_key_file_create(keyfile, &created, &err), 0);
	assert_true(created);
	return 0;
}

static int
repo_teardown(void **state)
{
	(void)state;
	fx_rmrf(root);
	free(root);
	return 0;
}

static struct mk_repo_key
file_key(const char *path)
{
	struct mk_repo_key k = { MK_REPO_KEY_FILE, path, NULL, NULL };

	return k;
}

static struct mk_repo_key
pass_key(const char *pass)
{
	struct mk_repo_key k = { MK_REPO_KEY_PASSPHRASE, NULL, pass, &cheap };

	return k;
}

static struct mk_repo *
init_repo(const struct mk_repo_key *key, bool plain)
{
	struct mk_repo_init_opts opts = { .no_encryption = plain };
	struct mk_repo *repo = NULL;
	struct mk_err err;

	if (mk_repo_init(location, key, &opts, &repo, &err) < 0)
		fail_msg("init: %s", err.msg);
	return repo;
}

static char *
read_object(const char *rel)
{
	char *data = NULL;
	struct mk_err err;

	if (mk_fs_read_file(
		fx_path(location, rel), 1 << 20, &data, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return data;
}

static void
test_repo_init_open_info(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	struct mk_repo *repo = init_repo(&key, false), *again = NULL;
	struct mk_repo_info info, info2;
	struct mk_err err;
	char *config;

	(void)state;
	assert_int_equal(mk_repo_info(repo, &info, &err), 0);
	assert_string_equal(info.location, location);
	assert_int_equal(strlen(info.id), MK_REPO_ID_LEN);
	assert_int_equal(info.version_major, 1);
	assert_int_equal(info.version_minor, 0);
	assert_true(info.encrypted);
	assert_int_equal(info.slots, 1);
	assert_int_equal(strlen(info.slot_id), MK_REPO_SLOT_ID_LEN);
	assert_int_equal(info.packs, 0);
	assert_int_equal(info.pack_bytes, 0);
	assert_int_equal(info.level, MK_PACK_LEVEL_DEFAULT);
	assert_int_equal(info.pack_size, MK_PACK_SIZE_DEFAULT);
	assert_int_equal(info.chunker.avg, MK_CHUNKER_AVG_DEFAULT);
	/* The config is readable JSON without secrets. */
	config = read_object("config");
	assert_non_null(strstr(config, "\"magic\": \"mailkeep repository\""));
	assert_non_null(strstr(config, "\"encryption\": \"aes-256-gcm\""));
	assert_non_null(strstr(config, info.id));
	free(config);
	assert_int_equal(mk_repo_open(location, &key, &again, &err), 0);
	assert_int_equal(mk_repo_info(again, &info2, &err), 0);
	assert_string_equal(info2.id, info.id);
	assert_string_equal(info2.slot_id, info.slot_id);
	assert_string_equal(info2.created, info.created);
	assert_memory_equal(mk_repo_keys(again), mk_repo_keys(repo),
	    sizeof(struct mk_crypto_keys));
	mk_repo_close(&again);
	mk_repo_close(&repo);
	assert_null(repo);
}

static void
test_repo_init_twice_refused(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	struct mk_repo *repo = init_repo(&key, false), *other = NULL;
	struct mk_err err;

	(void)state;
	mk_repo_close(&repo);
	assert_int_equal(mk_repo_init(location, &key, NULL, &other, &err), -1);
	assert_non_null(strstr(err.msg, "exists already"));
	assert_int_equal(
	    mk_repo_init(location, NULL,
		&(struct mk_repo_init_opts){ .no_encryption = true }, &other,
		&err),
	    -1);
	assert_null(other);
	/* An interrupted init: key slots, no config. */
	assert_int_equal(unlink(fx_path(location, "config")), 0);
	assert_int_equal(mk_repo_init(location, &key, NULL, &other, &err), -1);
	assert_non_null(strstr(err.msg, "interrupted init"));
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "no repository here"));
}

static void
test_repo_wrong_keys_refused(void **state)
{
	struct mk_repo_key key = file_key(keyfile), pk = pass_key("right");
	struct mk_repo *repo = init_repo(&pk, false), *other = NULL;
	char other_key[4096], bad_key[4096], slot[MK_REPO_SLOT_ID_LEN + 1];
	struct mk_repo_key wrong;
	struct mk_err err;
	bool created;

	(void)state;
	assert_int_equal(mk_repo_key_add(repo, &key, slot, &err), 0);
	mk_repo_close(&repo);
	snprintf(other_key, sizeof(other_key), "%s/other.key", root);
	assert_int_equal(mk_repo_key_file_create(other_key, &created, &err), 0);
	snprintf(bad_key, sizeof(bad_key), "%s/bad.key", root);
	fx_write(root, "bad.key", "not hex\n");
	/* Both right keys open. */
	assert_int_equal(mk_repo_open(location, &pk, &repo, &err), 0);
	mk_repo_close(&repo);
	assert_int_equal(mk_repo_open(location, &key, &repo, &err), 0);
	mk_repo_close(&repo);
	/* Wrong passphrase, wrong key file. */
	wrong = pass_key("wrong");
	assert_int_equal(mk_repo_open(location, &wrong, &other, &err), -1);
	assert_non_null(strstr(err.msg, "no key slot opens with this key"));
	assert_null(other);
	wrong = file_key(other_key);
	assert_int_equal(mk_repo_open(location, &wrong, &other, &err), -1);
	assert_non_null(strstr(err.msg, "no key slot opens with this key"));
	/* Unreadable key files. */
	wrong = file_key(bad_key);
	assert_int_equal(mk_repo_open(location, &wrong, &other, &err), -1);
	assert_non_null(strstr(err.msg, "expected 64 hex digits"));
	wrong = file_key(fx_path(root, "missing.key"));
	assert_int_equal(mk_repo_open(location, &wrong, &other, &err), -1);
	assert_non_null(strstr(err.msg, "missing.key"));
	/* No key, an empty passphrase. */
	assert_int_equal(mk_repo_open(location, NULL, &other, &err), -1);
	assert_non_null(strstr(err.msg, "is encrypted"));
	wrong = pass_key("");
	assert_int_equal(mk_repo_open(location, &wrong, &other, &err), -1);
	assert_non_null(strstr(err.msg, "empty passphrase"));
}

static void
test_repo_unencrypted_refuses_a_key(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	struct mk_repo *repo = init_repo(NULL, true), *other = NULL;
	uint8_t id[MK_PACK_ID_LEN], sha[MK_CRYPTO_HASH_LEN];
	struct mk_repo_info info;
	struct mk_err err;
	char *config, slot[MK_REPO_SLOT_ID_LEN + 1];

	(void)state;
	assert_int_equal(mk_repo_info(repo, &info, &err), 0);
	assert_false(info.encrypted);
	assert_int_equal(info.slots, 0);
	assert_string_equal(info.slot_id, "");
	/* Blob ids are plain SHA-256. */
	assert_int_equal(mk_repo_blob_id(repo, "abc", 3, id, &err), 0);
	assert_int_equal(mk_crypto_sha256("abc", 3, sha, &err), 0);
	assert_memory_equal(id, sha, sizeof(sha));
	assert_int_equal(mk_repo_key_add(repo, &key, slot, &err), -1);
	mk_repo_close(&repo);
	config = read_object("config");
	assert_non_null(strstr(config, "\"encryption\": \"none\""));
	free(config);
	assert_int_equal(mk_repo_open(location, NULL, &repo, &err), 0);
	mk_repo_close(&repo);
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "downgraded"));
	/* A key given together with --no-encryption. */
	assert_int_equal(
	    mk_repo_init(fx_path(root, "r2"), &key,
		&(struct mk_repo_init_opts){ .no_encryption = true }, &other,
		&err),
	    -1);
}

static void
test_repo_key_slots_add_list_verify_remove(void **state)
{
	struct mk_repo_key key = file_key(keyfile), pk = pass_key("recovery");
	struct mk_repo_key wrong = pass_key("nope");
	struct mk_repo *repo = init_repo(&key, false), *other = NULL;
	char first[MK_REPO_SLOT_ID_LEN + 1], second[MK_REPO_SLOT_ID_LEN + 1];
	char which[MK_REPO_SLOT_ID_LEN + 1];
	struct mk_repo_slot *slots = NULL;
	struct mk_repo_info info;
	struct mk_err err;
	size_t n, i;

	(void)state;
	assert_int_equal(mk_repo_info(repo, &info, &err), 0);
	memcpy(first, info.slot_id, sizeof(first));
	assert_int_equal(mk_repo_key_add(repo, &pk, second, &err), 0);
	assert_string_not_equal(first, second);
	assert_int_equal(mk_repo_key_list(repo, &slots, &n, &err), 0);
	assert_int_equal(n, 2);
	for (i = 0; i < n; i++) {
		assert_true(strcmp(slots[i].id, first) == 0 ||
		    strcmp(slots[i].id, second) == 0);
		assert_int_equal(slots[i].kind,
		    strcmp(slots[i].id, first) == 0 ? MK_REPO_KEY_FILE
						    : MK_REPO_KEY_PASSPHRASE);
		assert_true(slots[i].created[0] != '\0');
		assert_true(slots[i].host[0] != '\0');
	}
	free(slots);
	assert_int_equal(mk_repo_key_verify(repo, &pk, which, &err), 1);
	assert_string_equal(which, second);
	assert_int_equal(mk_repo_key_verify(repo, &key, which, &err), 1);
	assert_string_equal(which, first);
	assert_int_equal(mk_repo_key_verify(repo, &wrong, which, &err), 0);
	/* Removing: unknown ids, then the key file's slot. */
	assert_int_equal(mk_repo_key_remove(repo, "x", &err), -1);
	assert_int_equal(
	    mk_repo_key_remove(repo, "0123456789abcdef0123456789abcdef", &err),
	    -1);
	assert_non_null(strstr(err.msg, "no key slot"));
	assert_int_equal(mk_repo_key_remove(repo, first, &err), 0);
	assert_int_equal(mk_repo_key_verify(repo, &key, which, &err), 0);
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_int_equal(mk_repo_open(location, &pk, &other, &err), 0);
	mk_repo_close(&other);
	/* The last slot stays. */
	assert_int_equal(mk_repo_key_remove(repo, second, &err), -1);
	assert_non_null(strstr(err.msg, "last key slot"));
	assert_int_equal(mk_repo_info(repo, &info, &err), 0);
	assert_int_equal(info.slots, 1);
	mk_repo_close(&repo);
}

/* Any change to the config makes the slots refuse it. */
static void
test_repo_tampered_config_and_slots(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	struct mk_repo *repo = init_repo(&key, false), *other = NULL;
	struct mk_err err;
	char *config, *p;

	(void)state;
	mk_repo_close(&repo);
	config = read_object("config");
	/* A garbage slot next to the good one is skipped. */
	fx_write(location, "keys/0123456789abcdef0123456789abcdef", "{]");
	assert_int_equal(mk_repo_open(location, &key, &repo, &err), 0);
	mk_repo_close(&repo);
	assert_int_equal(
	    unlink(fx_path(location, "keys/0123456789abcdef0123456789abcdef")),
	    0);
	p = strstr(config, "\"level\": 3");
	assert_non_null(p);
	p[9] = '9';
	fx_write(location, "config", config);
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "another config object"));
	p[9] = '3';
	p = strstr(config, "\"version\": 1");
	assert_non_null(p);
	p[11] = '2';
	fx_write(location, "config", config);
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "unsupported repository version 2"));
	fx_write(location, "config", "[1, 2]");
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "not a JSON object"));
	fx_write(location, "config", "{\"magic\": \"something else\"}");
	assert_int_equal(mk_repo_open(location, &key, &other, &err), -1);
	assert_non_null(strstr(err.msg, "not a mailkeep repository"));
	free(config);
}

static void
test_repo_packs_round_trip(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	int k;

	(void)state;
	for (k = 0; k < 2; k++) {
		bool plain = k == 1;
		struct mk_repo *repo = init_repo(plain ? NULL : &key, plain);
		struct mk_pack_writer *w = NULL;
		struct mk_pack_reader *r = NULL;
		struct mk_chunker *c = NULL;
		struct mk_pack *pack = NULL;
		char name[MK_REPO_PACK_OBJECT_LEN + 1], msg[64];
		uint8_t id[MK_PACK_ID_LEN], *out;
		struct mk_storage_stat sst;
		struct mk_repo_info info;
		struct mk_err err;
		size_t i, olen;

		assert_int_equal(mk_repo_chunker_new(repo, &c, &err), 0);
		mk_chunker_free(&c);
		assert_int_equal(mk_repo_pack_writer_new(repo, &w, &err), 0);
		for (i = 0; i < 50; i++) {
			snprintf(
			    msg, sizeof(msg), "Subject: message %zu\n\n", i);
			assert_int_equal(
			    mk_repo_blob_id(repo, msg, strlen(msg), id, &err),
			    0);
			assert_int_equal(
			    mk_pack_writer_add(w, MK_PACK_TYPE_HEADER, id, msg,
				strlen(msg), NULL, NULL, &err),
			    0);
		}
		assert_int_equal(mk_pack_writer_finish(w, &pack, &err), 0);
		mk_pack_writer_free(&w);
		assert_int_equal(mk_repo_put_pack(repo, pack, &err), 0);
		assert_int_equal(mk_repo_pack_object(pack->id, name, &err), 0);
		assert_int_equal(strncmp(name + 6, pack->id, 2), 0);
		assert_int_equal(
		    mk_storage_stat(mk_repo_storage(repo), name, &sst, &err),
		    1);
		assert_int_equal(sst.size, pack->len);
		assert_int_equal(mk_repo_info(repo, &info, &err), 0);
		assert_int_equal(info.packs, 1);
		assert_int_equal(info.pack_bytes, pack->len);
		for (i = 0; i < pack->count; i++) {
			snprintf(
			    msg, sizeof(msg), "Subject: message %zu\n\n", i);
			assert_int_equal(
			    mk_repo_read_blob(repo, pack->id, &pack->entries[i],
				NULL, &out, &olen, &err),
			    0);
			assert_int_equal(olen, strlen(msg));
			assert_memory_equal(out, msg, olen);
			free(out);
		}
		assert_int_equal(
		    mk_repo_load_pack(repo, pack->id, &r, &err), 0);
		assert_int_equal(mk_pack_reader_count(r), 50);
		assert_memory_equal(mk_pack_reader_entries(r), pack->entries,
		    50 * sizeof(pack->entries[0]));
		mk_pack_reader_free(&r);
		/* Bad pack ids and missing packs. */
		assert_int_equal(mk_repo_load_pack(repo, "../x", &r, &err), -1);
		assert_int_equal(
		    mk_repo_read_blob(repo,
			"0000000000000000000000000000000000000000"
			"000000000000000000000000",
			&pack->entries[0], NULL, &out, &olen, &err),
		    -1);
		assert_int_equal(err.sys_errno, ENOENT);
		mk_pack_free(&pack);
		mk_repo_close(&repo);
		fx_rmrf(location);
	}
}

static void
test_repo_key_file_and_passphrase_files(void **state)
{
	static const struct {
		const char *content;
		int ok;
	} keyfiles[] = {
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccdd"
		  "eeff"
		  "\n",
		    1 },
		{ "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccdd"
		  "eeff",
		    1 },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccdd"
		  "eeff"
		  "\r\n",
		    1 },
		{ "0112233445566778899aabbccddeeff00112233445566778899aabbccdde"
		  "eff\n",
		    0 },
		{ "00112233445566778899aabbccddeeff00112233445566778899aabbccdd"
		  "eeff"
		  "0\n",
		    0 },
		{ "zz112233445566778899aabbccddeeff00112233445566778899aabbccdd"
		  "eeff"
		  "\n",
		    0 },
		{ "", 0 },
	};
	static const struct {
		const char *content;
		const char *want; /* NULL: refused */
	} passfiles[] = {
		{ "secret\n", "secret" },
		{ "secret", "secret" },
		{ "two words\r\nsecond line\n", "two words" },
		{ "\n", NULL },
		{ "", NULL },
		{ "\r\n", NULL },
	};
	struct mk_repo *repo = NULL;
	struct mk_repo_key key;
	struct stat sb;
	struct mk_err err;
	char *pass = NULL, *text;
	bool created;
	size_t i;

	(void)state;
	/* The key file made in setup: 0600, 64 hex digits and a newline. */
	assert_int_equal(stat(keyfile, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, 65);
	assert_int_equal(mk_fs_read_file(keyfile, 100, &text, NULL, &err), 0);
	assert_int_equal(strspn(text, "0123456789abcdef"), 64);
	assert_string_equal(text + 64, "\n");
	assert_int_equal(mk_repo_key_file_create(keyfile, &created, &err), 0);
	assert_false(created);
	free(text);
	key = file_key(keyfile);
	repo = init_repo(&key, false);
	mk_repo_close(&repo);
	for (i = 0; i < sizeof(keyfiles) / sizeof(keyfiles[0]); i++) {
		fx_write(root, "k", keyfiles[i].content);
		key = file_key(fx_path(root, "k"));
		if (keyfiles[i].ok) {
			/* A readable key that opens no slot. */
			assert_int_equal(
			    mk_repo_open(location, &key, &repo, &err), -1);
			assert_non_null(strstr(err.msg, "no key slot opens"));
		} else {
			assert_int_equal(
			    mk_repo_open(location, &key, &repo, &err), -1);
			assert_non_null(strstr(err.msg, "hex digits"));
		}
	}
	for (i = 0; i < sizeof(passfiles) / sizeof(passfiles[0]); i++) {
		fx_write(root, "p", passfiles[i].content);
		if (passfiles[i].want == NULL) {
			assert_int_equal(mk_repo_passphrase_read(
					     fx_path(root, "p"), &pass, &err),
			    -1);
			assert_null(pass);
			continue;
		}
		assert_int_equal(
		    mk_repo_passphrase_read(fx_path(root, "p"), &pass, &err),
		    0);
		assert_string_equal(pass, passfiles[i].want);
		mk_repo_passphrase_free(&pass);
		assert_null(pass);
	}
	assert_int_equal(
	    mk_repo_passphrase_read(fx_path(root, "none"), &pass, &err), -1);
}

static void
test_repo_locations_refused(void **state)
{
	struct mk_repo_key key = file_key(keyfile);
	struct mk_repo *repo = NULL;
	struct mk_err err;

	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	assert_int_equal(mk_repo_init("s3:https://s3.example.com/backups", &key,
			     NULL, &repo, &err),
	    -1);
	assert_non_null(strstr(err.msg, "no S3 credentials"));
	assert_int_equal(mk_repo_open("s3:https://s3.example.com/backups", &key,
			     &repo, &err),
	    -1);
	assert_non_null(strstr(err.msg, "no S3 credentials"));
	assert_int_equal(mk_repo_open("relative", &key, &repo, &err), -1);
	assert_int_equal(
	    mk_repo_open(fx_path(root, "nothing"), &key, &repo, &err), -1);
	assert_null(repo);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_repo_init_open_info, repo_setup, repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_init_twice_refused, repo_setup, repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_wrong_keys_refused, repo_setup, repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_unencrypted_refuses_a_key, repo_setup,
		    repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_key_slots_add_list_verify_remove, repo_setup,
		    repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_tampered_config_and_slots, repo_setup,
		    repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_packs_round_trip, repo_setup, repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_key_file_and_passphrase_files, repo_setup,
		    repo_teardown),
		cmocka_unit_test_setup_teardown(
		    test_repo_locations_refused, repo_setup, repo_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
