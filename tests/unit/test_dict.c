#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/dict.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/repo.h"

static char *root;
static char location[4096], keyfile[4096], store[4096];

static const char *const names[] = { "Anna Becker", "Jonas Weber", "Mia Schulz",
	"Lukas Wagner", "Emma Hoffmann", "Paul Koch" };
static const char *const words[] = { "Rechnung", "invoice", "meeting",
	"Sicherung", "quota", "report", "Termin", "project", "update" };

/* A header section like the store's: the same fields, other values. */
static size_t
make_header(unsigned i, char *buf, size_t cap)
{
	return (size_t)snprintf(buf, cap,
	    "Return-Path: <%s@example.net>\n"
	    "Delivered-To: user%u@example.org\n"
	    "Received: from mx%u.example.net (mx%u.example.net "
	    "[192.0.2.%u])\n\tby mail.example.org (Postfix) with ESMTPS id "
	    "%08X\n\tfor <user%u@example.org>; Thu, 26 Nov 2026 10:%02u:00 "
	    "+0000\n"
	    "From: %s <sender%u@example.net>\nTo: user%u@example.org\n"
	    "Subject: %s %s %u\nMessage-ID: <%08x.%u@example.net>\n"
	    "Date: Thu, 26 Nov 2026 10:%02u:00 +0000\nMIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 8bit\n\n",
	    names[i % 6], i % 7, i % 5, i % 5, i % 250, i * 2654435761u, i % 7,
	    i % 60, names[(i * 7) % 6], i, i % 7, words[i % 9],
	    words[(i / 9) % 9], i, i * 40503u, i, i % 60);
}

static size_t
make_body(unsigned i, char *buf, size_t cap)
{
	size_t len = 0, k;

	for (k = 0; k < 40 && len + 64 < cap; k++)
		len += (size_t)snprintf(buf + len, cap - len, "%s %s %u, ",
		    words[(i + k) % 9], names[(i * k) % 6], i + (unsigned)k);
	len += (size_t)snprintf(
	    buf + len, cap - len, "\n-- \nMit freundlichen Gruessen\n");
	return len;
}

static int
dict_setup(void **state)
{
	struct mk_err err;
	bool created;

	(void)state;
	root = fx_tmpdir();
	snprintf(location, sizeof(location), "%s/repo", root);
	snprintf(keyfile, sizeof(keyfile), "%s/repo.key", root);
	snprintf(store, sizeof(store), "%s/store", root);
	assert_int_equal(mk_repo_key_file_create(keyfile, &created, &err), 0);
	assert_int_equal(mkdir(store, 0700), 0);
	return 0;
}

static int
dict_teardown(void **state)
{
	(void)state;
	fx_rmrf(root);
	free(root);
	return 0;
}

static struct mk_repo *
open_repo(bool init)
{
	struct mk_repo_key key = { MK_REPO_KEY_FILE, keyfile, NULL, NULL };
	struct mk_repo *repo = NULL;
	struct mk_err err;

	if ((init ? mk_repo_init(location, &key, NULL, &repo, &err)
		  : mk_repo_open(location, &key, &repo, &err)) < 0)
		fail_msg("repo: %s", err.msg);
	return repo;
}

/* A store of one mailbox with n messages in cur/. */
static void
make_store(unsigned n)
{
	char name[64], *msg = malloc(16384);
	size_t len;
	unsigned i;

	assert_non_null(msg);
	fx_maildir(store, "example.org/alice/Maildir");
	for (i = 0; i < n; i++) {
		len = make_header(i, msg, 8192);
		len += make_body(i, msg + len, 8192);
		snprintf(name, sizeof(name),
		    "example.org/alice/Maildir/cur/%u.M%uP1.host:2,S",
		    1794000000 + i, i);
		fx_write(store, name, msg);
		(void)len;
	}
	free(msg);
}

static int
open_root(void)
{
	int fd = open(store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

struct stored {
	char pack[MK_PACK_NAME_LEN + 1];
	struct mk_pack_entry entries[3];
	uint8_t *data[3];
	size_t len[3];
};

/*
 * Compress a header, a small body and a body above the threshold as the
 * backup's workers do, and store them in one pack.
 */
static void
store_blobs(struct mk_repo *repo, struct stored *s)
{
	static const enum mk_pack_type types[3] = { MK_PACK_TYPE_HEADER,
		MK_PACK_TYPE_BODY, MK_PACK_TYPE_BODY };
	struct mk_pack_compressor *comp = NULL;
	struct mk_pack_writer *w = NULL;
	struct mk_pack *pack = NULL;
	struct mk_pack_blob blob;
	uint8_t id[MK_PACK_ID_LEN], *dst;
	struct mk_err err;
	size_t i, k;

	s->len[0] =
	    make_header(9999, (char *)(s->data[0] = malloc(8192)), 8192);
	s->len[1] = make_body(9999, (char *)(s->data[1] = malloc(8192)), 8192);
	s->len[2] = MK_REPO_DICT_BLOB_MAX + 1000;
	s->data[2] = malloc(s->len[2]);
	for (k = 0; k < s->len[2]; k++)
		s->data[2][k] = (uint8_t) "quota backup mail "[k % 18];
	assert_int_equal(mk_repo_compressor_new(repo, &comp, &err), 0);
	assert_int_equal(mk_repo_pack_writer_new(repo, &w, &err), 0);
	for (i = 0; i < 3; i++) {
		dst = malloc(mk_pack_compress_bound(s->len[i]));
		assert_int_equal(
		    mk_repo_blob_id(repo, s->data[i], s->len[i], id, &err), 0);
		assert_int_equal(
		    mk_pack_compress(comp, types[i], s->data[i], s->len[i], dst,
			mk_pack_compress_bound(s->len[i]), &blob, &err),
		    0);
		assert_int_equal(mk_pack_writer_add_blob(w, types[i], id, &blob,
				     &s->entries[i], &err),
		    0);
		free(dst);
	}
	assert_int_equal(mk_pack_writer_finish(w, &pack, &err), 0);
	assert_int_equal(mk_repo_put_pack(repo, pack, &err), 0);
	memcpy(s->pack, pack->id, sizeof(s->pack));
	mk_pack_free(&pack);
	mk_pack_writer_free(&w);
	mk_pack_compressor_free(&comp);
}

static void
stored_free(struct stored *s)
{
	for (size_t i = 0; i < 3; i++)
		free(s->data[i]);
}

/* Read every stored blob back and compare; -1 with err at the first. */
static int
read_back(struct mk_repo *repo, const struct stored *s, struct mk_err *err)
{
	uint8_t *data;
	size_t len, i;

	for (i = 0; i < 3; i++) {
		if (mk_repo_read_blob(repo, s->pack, &s->entries[i], NULL,
			&data, &len, err) < 0)
			return -1;
		assert_int_equal(len, s->len[i]);
		assert_memory_equal(data, s->data[i], len);
		free(data);
	}
	return 0;
}

/*
 * Training on a store, then a round trip: headers and small bodies are
 * made with the dictionaries, a large body without; a reopened
 * repository finds the dictionaries on its own.  With dictionaries off,
 * nothing uses one, and the old blobs still read.
 */
static void
test_dict_train_round_trip(void **state)
{
	struct mk_repo_dict_info hinfo, binfo;
	struct mk_dict_result res;
	struct mk_repo *repo;
	struct stored s, plain;
	struct mk_err err;
	char *relpath = "example.org/alice/Maildir";
	size_t n;
	int rootfd;

	(void)state;
	make_store(400);
	rootfd = open_root();
	repo = open_repo(true);
	assert_int_equal(
	    mk_dict_prepare(repo, MK_DICT_AUTO, rootfd, &relpath, 1, &err), 0);
	assert_true(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, &hinfo));
	assert_true(mk_repo_dict_current(repo, MK_REPO_DICT_BODIES, &binfo));
	assert_int_equal(hinfo.samples, 400);
	assert_true(hinfo.size > 0 && hinfo.size <= MK_DICT_CAPACITY);
	memset(&s, 0, sizeof(s));
	store_blobs(repo, &s);
	assert_int_equal(s.entries[0].compression, MK_PACK_ZSTD_DICT);
	assert_memory_equal(s.entries[0].dict_id, hinfo.id, MK_PACK_ID_LEN);
	assert_int_equal(s.entries[1].compression, MK_PACK_ZSTD_DICT);
	assert_memory_equal(s.entries[1].dict_id, binfo.id, MK_PACK_ID_LEN);
	assert_int_equal(s.entries[2].compression, MK_PACK_ZSTD);
	assert_int_equal(read_back(repo, &s, &err), 0);
	/* A second prepare trains nothing new. */
	assert_int_equal(
	    mk_dict_prepare(repo, MK_DICT_AUTO, rootfd, &relpath, 1, &err), 0);
	assert_true(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, &hinfo));
	assert_memory_equal(hinfo.id, s.entries[0].dict_id, MK_PACK_ID_LEN);
	mk_repo_close(&repo);

	/* Reopened: the reader loads what the entries name. */
	repo = open_repo(false);
	assert_int_equal(read_back(repo, &s, &err), 0);
	/* Off: new blobs use no dictionary, old ones still read. */
	assert_int_equal(
	    mk_dict_prepare(repo, MK_DICT_OFF, rootfd, &relpath, 1, &err), 0);
	assert_false(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, NULL));
	memset(&plain, 0, sizeof(plain));
	store_blobs(repo, &plain);
	assert_int_equal(plain.entries[0].compression, MK_PACK_ZSTD);
	assert_int_equal(plain.entries[1].compression, MK_PACK_ZSTD);
	assert_int_equal(read_back(repo, &plain, &err), 0);
	/* Retraining adds new current ones; the old ones stay. */
	assert_int_equal(mk_repo_dicts_load(repo, true, &n, &err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(
	    mk_dict_train(repo, rootfd, &relpath, 1, false, &res, &err), 0);
	assert_true(res.trained[MK_REPO_DICT_HEADERS]);
	assert_int_equal(mk_repo_dicts_load(repo, true, &n, &err), 0);
	assert_int_equal(n, 4);
	assert_true(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, &hinfo));
	assert_memory_equal(
	    hinfo.id, res.info[MK_REPO_DICT_HEADERS].id, MK_PACK_ID_LEN);
	assert_int_equal(read_back(repo, &s, &err), 0);
	mk_repo_close(&repo);
	stored_free(&s);
	stored_free(&plain);
	close(rootfd);
}

/* Too little mail trains nothing, and that is not an error. */
static void
test_dict_too_little_mail(void **state)
{
	struct mk_dict_result res;
	struct mk_repo *repo;
	struct mk_err err;
	char *relpath = "example.org/alice/Maildir", *missing = "nowhere/x";
	int rootfd;

	(void)state;
	make_store(10);
	rootfd = open_root();
	repo = open_repo(true);
	assert_int_equal(
	    mk_dict_train(repo, rootfd, &relpath, 1, false, &res, &err), 0);
	assert_int_equal(res.messages, 10);
	assert_false(res.trained[MK_REPO_DICT_HEADERS]);
	assert_non_null(strstr(res.why[MK_REPO_DICT_HEADERS], "too little"));
	/* A mailbox that is not there is passed over. */
	assert_int_equal(
	    mk_dict_train(repo, rootfd, &missing, 1, false, &res, &err), 0);
	assert_int_equal(res.messages, 0);
	assert_int_equal(
	    mk_dict_prepare(repo, MK_DICT_AUTO, rootfd, &relpath, 1, &err), 0);
	assert_false(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, NULL));
	/* zstd refuses a bad dictionary before anything is stored. */
	assert_int_equal(mk_repo_dict_put(repo, MK_REPO_DICT_HEADERS,
			     "\x37\xa4\x30\xec junk", 9, 1, NULL, &err),
	    -1);
	assert_int_equal(
	    mk_repo_dict_put(repo, 7, "abcdefgh", 8, 1, NULL, &err), -1);
	mk_repo_close(&repo);
	close(rootfd);
}

/*
 * A dictionary missing from the repository, or damaged: reading a blob
 * that needs it fails with an error that names the dictionary; blobs
 * without one still read.
 */
static void
test_dict_missing_or_damaged(void **state)
{
	char obj[MK_REPO_DICT_OBJECT_LEN + 1], *path, hex[17];
	struct mk_repo_dict_info hinfo;
	struct mk_repo *repo;
	struct stored s;
	struct mk_err err;
	char *relpath = "example.org/alice/Maildir";
	uint8_t *data;
	size_t len;
	int rootfd, fd;

	(void)state;
	make_store(300);
	rootfd = open_root();
	repo = open_repo(true);
	assert_int_equal(
	    mk_dict_prepare(repo, MK_DICT_AUTO, rootfd, &relpath, 1, &err), 0);
	assert_true(mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, &hinfo));
	memset(&s, 0, sizeof(s));
	store_blobs(repo, &s);
	mk_repo_close(&repo);
	snprintf(obj, sizeof(obj), "dicts/%s", hinfo.hex);
	snprintf(hex, sizeof(hex), "%.16s", hinfo.hex);
	path = strdup(fx_path(location, obj));

	/* Damaged: one flipped byte in the object. */
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, obj, 1, 100), 1);
	obj[0] ^= 0x20;
	assert_int_equal(pwrite(fd, obj, 1, 100), 1);
	close(fd);
	repo = open_repo(false);
	assert_int_equal(mk_repo_read_blob(repo, s.pack, &s.entries[0], NULL,
			     &data, &len, &err),
	    -1);
	assert_non_null(strstr(err.msg, hex));
	assert_non_null(strstr(err.msg, "dictionary"));
	/* The large body needs none. */
	assert_int_equal(mk_repo_read_blob(repo, s.pack, &s.entries[2], NULL,
			     &data, &len, &err),
	    0);
	free(data);
	mk_repo_close(&repo);

	/* Missing. */
	assert_int_equal(unlink(path), 0);
	repo = open_repo(false);
	assert_int_equal(mk_repo_read_blob(repo, s.pack, &s.entries[0], NULL,
			     &data, &len, &err),
	    -1);
	assert_non_null(strstr(err.msg, hex));
	assert_non_null(strstr(err.msg, "missing"));
	/* The body dictionary is still there. */
	assert_int_equal(mk_repo_read_blob(repo, s.pack, &s.entries[1], NULL,
			     &data, &len, &err),
	    0);
	free(data);
	mk_repo_close(&repo);
	free(path);
	stored_free(&s);
	close(rootfd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_dict_train_round_trip, dict_setup, dict_teardown),
		cmocka_unit_test_setup_teardown(
		    test_dict_too_little_mail, dict_setup, dict_teardown),
		cmocka_unit_test_setup_teardown(
		    test_dict_missing_or_damaged, dict_setup, dict_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
