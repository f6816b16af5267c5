#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/backup.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/restore.h"

static char *dir;
static struct mk_repo *repo;
static struct mk_catalog *cat;
static int rootfd = -1;

static int
bk_setup(void **state)
{
	struct mk_err err;

	(void)state;
	dir = fx_tmpdir();
	repo = fx_repo_new(dir, "repo");
	if (mk_catalog_open(fx_path(dir, "catalog.db"), &cat, &err) < 0)
		fail_msg("%s", err.msg);
	fx_mkdirs(dir, "store");
	rootfd = open(fx_path(dir, "store"), O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	return 0;
}

static int
bk_teardown(void **state)
{
	(void)state;
	close(rootfd);
	mk_catalog_close(&cat);
	mk_repo_close(&repo);
	fx_rmrf(dir);
	free(dir);
	return 0;
}

static void
test_backup_split_table(void **state)
{
	static const struct {
		const char *what;
		const char *data;
		size_t len;
		bool eof;
		enum mk_backup_kind kind;
		size_t header;
	} cases[] = {
		{ "empty file", "", 0, true, MK_BACKUP_SPLIT, 0 },
		{ "no blank line", "Subject: x\nFrom: y\n", 19, true,
		    MK_BACKUP_SPLIT, 19 },
		{ "no newline at all", "Subject: x", 10, true, MK_BACKUP_SPLIT,
		    10 },
		{ "LF", "A: b\n\nbody\n", 11, true, MK_BACKUP_SPLIT, 6 },
		{ "CRLF", "A: b\r\n\r\nbody\r\n", 14, true, MK_BACKUP_SPLIT,
		    8 },
		{ "CRLF header, LF blank line", "A: b\r\n\nbody", 11, true,
		    MK_BACKUP_SPLIT, 7 },
		{ "blank line first", "\nbody\n\nmore", 11, true,
		    MK_BACKUP_SPLIT, 1 },
		{ "CRLF blank line first", "\r\nbody", 6, true, MK_BACKUP_SPLIT,
		    2 },
		{ "only a blank line", "\n", 1, true, MK_BACKUP_SPLIT, 1 },
		{ "the first of two blank lines", "A\n\n\nB", 5, true,
		    MK_BACKUP_SPLIT, 3 },
		{ "CR alone is no line end", "A\r\rB\n", 5, true,
		    MK_BACKUP_SPLIT, 5 },
		{ "gzip", "\x1f\x8b\x08\x00", 4, false, MK_BACKUP_OPAQUE, 0 },
		{ "bzip2", "BZh91AY&SY", 10, false, MK_BACKUP_OPAQUE, 0 },
		{ "xz",
		    "\xfd"
		    "7zXZ\0\0\x04",
		    8, false, MK_BACKUP_OPAQUE, 0 },
		{ "zstd", "\x28\xb5\x2f\xfd\x04", 5, false, MK_BACKUP_OPAQUE,
		    0 },
		{ "Dovecot lz4", "Dovecot-LZ4\x0d\x2a\x9b\xc5\x00", 16, false,
		    MK_BACKUP_OPAQUE, 0 },
		{ "mail_crypt", "CRYPTED\x03\x07\x02", 10, false,
		    MK_BACKUP_OPAQUE, 0 },
		{ "a magic cut short is text", "BZ", 2, true, MK_BACKUP_SPLIT,
		    2 },
		{ "a magic later is text", "A\n\n\x1f\x8b", 5, true,
		    MK_BACKUP_SPLIT, 3 },
	};
	size_t i, hlen;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum mk_backup_kind kind = mk_backup_split(
		    cases[i].data, cases[i].len, cases[i].eof, &hlen);

		if (kind != cases[i].kind ||
		    (kind == MK_BACKUP_SPLIT && hlen != cases[i].header))
			fail_msg("%s: kind %d header %zu, want %d %zu",
			    cases[i].what, kind, hlen, cases[i].kind,
			    cases[i].header);
	}
}

/* Headers at and around the limit. */
static void
test_backup_split_limits(void **state)
{
	size_t max = MK_BACKUP_HEADER_MAX, hlen;
	char *buf = mk_xmalloc(max + 2);

	(void)state;
	memset(buf, 'x', max + 2);
	/* No blank line: all header up to the limit, opaque beyond it or
	 * when more is to come. */
	assert_int_equal(
	    mk_backup_split(buf, max, true, &hlen), MK_BACKUP_SPLIT);
	assert_int_equal(hlen, max);
	assert_int_equal(
	    mk_backup_split(buf, max + 1, true, &hlen), MK_BACKUP_OPAQUE);
	assert_int_equal(
	    mk_backup_split(buf, max, false, &hlen), MK_BACKUP_OPAQUE);
	/* A blank line ending exactly at the limit counts, one byte later
	 * does not. */
	buf[max - 2] = buf[max - 1] = '\n';
	assert_int_equal(
	    mk_backup_split(buf, max + 2, false, &hlen), MK_BACKUP_SPLIT);
	assert_int_equal(hlen, max);
	buf[max - 2] = 'x';
	buf[max] = '\n';
	assert_int_equal(
	    mk_backup_split(buf, max + 2, false, &hlen), MK_BACKUP_OPAQUE);
	free(buf);
}

/* Blob ids that exist only as catalog rows, for the temporal test. */
static void
fake_id(uint8_t id[MK_PACK_ID_LEN], unsigned n)
{
	memset(id, 0x5a, MK_PACK_ID_LEN);
	id[0] = (uint8_t)n;
}

/* Versions alive at a snapshot, sorted by "<dir or =>/<sub>/<name>". */
struct alive {
	struct alive_row {
		char name[64];
		size_t nblobs;
		bool opaque;
	} v[16];
	size_t n;
};

static void
alive_cb(const struct mk_catalog_version *v, void *arg)
{
	struct alive *a = arg;
	struct alive_row *row;

	assert_true(a->n < 16);
	row = &a->v[a->n++];
	row->nblobs = v->nblobs;
	row->opaque = v->opaque;
	snprintf(row->name, sizeof(row->name), "%s/%s/%s%s",
	    v->dir[0] ? v->dir : "=", v->cur ? "cur" : "new", v->base,
	    v->suffix);
}

static int
alive_cmp(const void *a, const void *b)
{
	return strcmp(((const struct alive_row *)a)->name,
	    ((const struct alive_row *)b)->name);
}

/* The versions of address alive at snapshot, as sorted names. */
static struct alive
alive_at(const char *address, int64_t snapshot)
{
	struct alive a;
	struct mk_err err;

	memset(&a, 0, sizeof(a));
	if (mk_catalog_versions_at(cat, address, snapshot, alive_cb, &a, &err) <
	    0)
		fail_msg("%s", err.msg);
	qsort(a.v, a.n, sizeof(a.v[0]), alive_cmp);
	return a;
}

static int64_t
snapshot_add(int64_t run, const char *address, unsigned object)
{
	struct mk_catalog_snapshot s;
	struct mk_err err;
	int64_t id;

	memset(&s, 0, sizeof(s));
	s.run = run;
	s.address = address;
	fake_id(s.object, object);
	if (mk_catalog_snapshot_add(cat, &s, &id, &err) < 0)
		fail_msg("%s", err.msg);
	return id;
}

static int64_t
message_add(const char *base, unsigned first, size_t nblobs, bool opaque)
{
	uint8_t blobs[4][MK_PACK_ID_LEN];
	struct mk_catalog_version v;
	struct mk_err err;
	int64_t id;
	size_t i;

	for (i = 0; i < nblobs; i++)
		fake_id(blobs[i], first + (unsigned)i);
	memset(&v, 0, sizeof(v));
	v.base = base;
	v.size = 100;
	v.opaque = opaque;
	v.blobs = (const uint8_t(*)[MK_PACK_ID_LEN])blobs;
	v.nblobs = nblobs;
	if (mk_catalog_message_add(cat, &v, &id, &err) < 0)
		fail_msg("%s", err.msg);
	return id;
}

static void
version_add(
    int64_t snap, int64_t message, const char *folder, const char *suffix)
{
	struct mk_catalog_version v;
	struct mk_err err;

	memset(&v, 0, sizeof(v));
	v.message = message;
	v.dir = folder;
	v.suffix = suffix;
	v.cur = true;
	if (mk_catalog_version_add(cat, snap, &v, &err) < 0)
		fail_msg("%s", err.msg);
}

/* The version alive now whose suffix is the one looked for. */
struct version_find {
	const char *suffix;
	int64_t id;
};

static void
version_find_cb(const struct mk_catalog_version *v, void *arg)
{
	struct version_find *f = arg;

	if (strcmp(v->suffix, f->suffix) == 0)
		f->id = v->id;
}

static int64_t
version_id(const char *address, const char *suffix)
{
	struct version_find f = { suffix, 0 };
	struct mk_err err;

	if (mk_catalog_versions_at(
		cat, address, MK_CATALOG_NOW, version_find_cb, &f, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(f.id != 0);
	return f.id;
}

static void
test_backup_catalog_versions_alive_at(void **state)
{
	struct mk_pack_entry entries[12];
	struct mk_pack pack;
	struct mk_err err;
	int64_t run = 0, s1, s2, s3, o1, m1, m2, m3, m4, v;
	struct alive a;
	size_t i;

	(void)state;
	memset(&pack, 0, sizeof(pack));
	memset(entries, 0, sizeof(entries));
	memset(pack.id, 'c', MK_PACK_NAME_LEN);
	pack.len = 4096;
	pack.entries = entries;
	pack.count = 12;
	for (i = 0; i < 12; i++) {
		fake_id(entries[i].id, (unsigned)i + 1);
		entries[i].type = MK_PACK_TYPE_BODY;
		entries[i].offset = 48 + 100 * i;
		entries[i].length = 100;
		entries[i].raw_length = 90;
	}
	assert_int_equal(mk_catalog_begin(cat, &err), 0);
	if (mk_catalog_pack_add(cat, &pack, 1, &err) < 0 ||
	    mk_catalog_run_add(cat, "r1", 1, &run, &err) < 0)
		fail_msg("%s", err.msg);
	/* S1: a (header and body), b (opaque, in pieces); another mailbox
	 * gets a snapshot in between, so that ids interleave. */
	s1 = snapshot_add(run, "x@example.org", 12);
	m1 = message_add("a", 1, 2, false);
	m2 = message_add("b", 3, 3, true);
	version_add(s1, m1, "", ":2,");
	version_add(s1, m2, ".Sent", ":2,S");
	o1 = snapshot_add(run, "other@example.org", 12);
	m4 = message_add("z", 9, 1, false);
	version_add(o1, m4, "", ":2,");
	/* S2: a gets a flag, b is expunged. */
	s2 = snapshot_add(run, "x@example.org", 12);
	v = version_id("x@example.org", ":2,");
	if (mk_catalog_version_vanish(cat, v, s2, &err) < 0)
		fail_msg("%s", err.msg);
	version_add(s2, m1, "", ":2,F");
	if (mk_catalog_version_vanish(
		cat, version_id("x@example.org", ":2,S"), s2, &err) < 0)
		fail_msg("%s", err.msg);
	/* A version vanishes once. */
	assert_int_equal(mk_catalog_version_vanish(cat, v, s2, &err), -1);
	/* S3: c arrives, with an empty body (a header only). */
	s3 = snapshot_add(run, "x@example.org", 12);
	m3 = message_add("c", 6, 1, false);
	version_add(s3, m3, "", ",S=5");
	assert_int_equal(mk_catalog_commit(cat, &err), 0);
	assert_true(s1 < o1 && o1 < s2 && s2 < s3);

	a = alive_at("x@example.org", s1);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[0].name, ".Sent/cur/b:2,S");
	assert_string_equal(a.v[1].name, "=/cur/a:2,");
	a = alive_at("x@example.org", o1);
	assert_int_equal(a.n, 2);
	a = alive_at("x@example.org", s2);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.v[0].name, "=/cur/a:2,F");
	a = alive_at("x@example.org", s3);
	assert_int_equal(a.n, 2);
	assert_string_equal(a.v[1].name, "=/cur/c,S=5");
	a = alive_at("x@example.org", MK_CATALOG_NOW);
	assert_int_equal(a.n, 2);
	a = alive_at("x@example.org", s1 - 1);
	assert_int_equal(a.n, 0);
	a = alive_at("other@example.org", MK_CATALOG_NOW);
	assert_int_equal(a.n, 1);
	assert_int_equal(a.v[0].nblobs, 1);
	a = alive_at("nobody@example.org", MK_CATALOG_NOW);
	assert_int_equal(a.n, 0);
	/* Blob lists come back whole: opaque pieces, header only. */
	a = alive_at("x@example.org", s1);
	assert_true(a.v[0].opaque && a.v[0].nblobs == 3);
	assert_true(!a.v[1].opaque && a.v[1].nblobs == 2);
	a = alive_at("x@example.org", s3);
	assert_true(!a.v[1].opaque && a.v[1].nblobs == 1);

	/* Rows never point at what is not recorded. */
	assert_int_equal(mk_catalog_begin(cat, &err), 0);
	{
		struct mk_catalog_version bad;
		uint8_t id[1][MK_PACK_ID_LEN];
		int64_t m;

		fake_id(id[0], 200);
		memset(&bad, 0, sizeof(bad));
		bad.base = "d";
		bad.blobs = (const uint8_t(*)[MK_PACK_ID_LEN])id;
		bad.nblobs = 1;
		assert_int_equal(
		    mk_catalog_message_add(cat, &bad, &m, &err), -1);
		assert_non_null(strstr(err.msg, "not recorded"));
		bad.message = m1;
		bad.dir = "";
		bad.suffix = "";
		assert_int_equal(
		    mk_catalog_version_add(cat, s3 + 100, &bad, &err), -1);
	}
	mk_catalog_rollback(cat);
}

/* A file of the store with a fixed mtime. */
static void
put_file(const char *rel, const char *data, size_t len, time_t mtime)
{
	struct timespec ts[2] = { { mtime, 123 }, { mtime, 456789 } };
	char path[4096];
	FILE *fp;

	snprintf(path, sizeof(path), "store/%s", rel);
	fx_write(dir, path, "");
	fp = fopen(fx_path(dir, path), "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(utimensat(AT_FDCWD, fx_path(dir, path), ts, 0), 0);
}

static void
put_text(const char *rel, const char *text)
{
	put_file(rel, text, strlen(text), 1700000000);
}

static void
move_file(const char *from, const char *to)
{
	char a[4096], b[4096];

	snprintf(a, sizeof(a), "%s/store/%s", dir, from);
	snprintf(b, sizeof(b), "%s/store/%s", dir, to);
	assert_int_equal(rename(a, b), 0);
}

/* One run backing up one mailbox. */
static struct mk_backup_stats
backup(const char *address, const char *relpath)
{
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	struct mk_backup_stats s;
	struct mk_backup *bk = NULL;
	struct mk_err err;
	int64_t run = 0;

	memset(&s, 0, sizeof(s));
	if (mk_backup_run_begin(repo, cat, &run, id, &err) < 0 ||
	    mk_backup_new(repo, cat, run, &bk, &err) < 0 ||
	    mk_backup_mailbox(bk, rootfd, relpath, address, &s, &err) < 0 ||
	    mk_backup_run_end(repo, cat, run, &err) < 0)
		fail_msg("%s", err.msg);
	mk_backup_free(&bk);
	return s;
}

static uint8_t *
slurp(const char *path, size_t *len_r)
{
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0, n;
	FILE *fp = fopen(path, "rb");

	if (fp == NULL)
		return NULL;
	do {
		mk_xgrow(&buf, &cap, len + 65536, 1);
		n = fread(buf + len, 1, 65536, fp);
		len += n;
	} while (n > 0);
	fclose(fp);
	*len_r = len;
	return buf;
}

/* rel is the same file in the store and in restored tree to. */
static void
assert_restored(const char *to, const char *rel)
{
	char a[4096], b[4096];
	uint8_t *x, *y;
	size_t xl = 0, yl = 0;
	struct stat sa, sb;

	/* "a/Maildir/cur/x" in the store is "cur/x" in the restored tree. */
	snprintf(a, sizeof(a), "%s/store/%s", dir, rel);
	snprintf(b, sizeof(b), "%s/%s/%s", dir, to,
	    strchr(strchr(rel, '/') + 1, '/') + 1);
	x = slurp(a, &xl);
	y = slurp(b, &yl);
	if (x == NULL || y == NULL)
		fail_msg("%s: missing (store %p, restored %p)", rel, (void *)x,
		    (void *)y);
	assert_int_equal(xl, yl);
	assert_memory_equal(x, y, xl);
	assert_int_equal(stat(a, &sa), 0);
	assert_int_equal(stat(b, &sb), 0);
	assert_true(sa.st_mtim.tv_sec == sb.st_mtim.tv_sec &&
	    sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec);
	free(x);
	free(y);
}

static void
assert_absent(const char *to, const char *rel)
{
	char b[4096];
	struct stat st;

	snprintf(b, sizeof(b), "%s/%s/%s", dir, to, rel);
	assert_int_equal(lstat(b, &st), -1);
}

static void
restore(int64_t snapshot, const char *address, const char *to)
{
	struct mk_restore_stats rs;
	struct mk_err err;

	if (mk_restore_mailbox(
		repo, cat, snapshot, address, fx_path(dir, to), &rs, &err) < 0)
		fail_msg("%s", err.msg);
}

static void
test_backup_flag_change_and_move_read_nothing(void **state)
{
	struct mk_backup_stats s1, s2, s3, s4;
	const char *a = "a@example.org";

	(void)state;
	fx_maildir(dir, "store/a/Maildir");
	fx_maildir(dir, "store/a/Maildir/.Sent");
	put_text("a/Maildir/.Sent/maildirfolder", "");
	put_text("a/Maildir/dovecot-uidlist", "3 V1 N4\n1 :1.M1P1.h\n");
	put_text("a/Maildir/subscriptions", "V\t2\n\nSent\n");
	put_text("a/Maildir/cur/1.M1P1.h,S=20:2,S", "Subject: 1\n\nbody one\n");
	put_text("a/Maildir/new/2.M2P2.h,S=20", "Subject: 2\n\nbody two\n");
	put_text("a/Maildir/.Sent/cur/3.M3P3.h:2,S", "Subject: 3\n\nsent\n");
	s1 = backup(a, "a/Maildir");
	assert_int_equal(s1.messages, 3);
	assert_int_equal(s1.read_messages, 3);
	assert_int_equal(s1.folders, 2);
	assert_true(s1.stored_bytes > 0 && s1.packs == 1);
	restore(s1.snapshot, a, "r1");

	/* Nothing changed: nothing read, nothing stored. */
	s2 = backup(a, "a/Maildir");
	assert_true(s2.snapshot > s1.snapshot);
	assert_int_equal(s2.read_messages, 0);
	assert_int_equal(s2.read_bytes, 0);
	assert_int_equal(s2.new_blobs, 0);
	assert_int_equal(s2.stored_bytes, 0);
	assert_int_equal(s2.new_versions + s2.vanished, 0);

	/* A flag, new/ to cur/, a move to another folder: rows only. */
	move_file("a/Maildir/cur/1.M1P1.h,S=20:2,S",
	    "a/Maildir/cur/1.M1P1.h,S=20:2,RS");
	move_file(
	    "a/Maildir/new/2.M2P2.h,S=20", "a/Maildir/cur/2.M2P2.h,S=20:2,");
	move_file(
	    "a/Maildir/.Sent/cur/3.M3P3.h:2,S", "a/Maildir/cur/3.M3P3.h:2,S");
	s3 = backup(a, "a/Maildir");
	assert_int_equal(s3.read_messages, 0);
	assert_int_equal(s3.messages, 3);
	assert_int_equal(s3.new_versions, 3);
	assert_int_equal(s3.vanished, 3);
	restore(s3.snapshot, a, "r3");

	/* Each snapshot restores as the store was. */
	assert_restored("r3", "a/Maildir/cur/1.M1P1.h,S=20:2,RS");
	assert_restored("r3", "a/Maildir/cur/2.M2P2.h,S=20:2,");
	assert_restored("r3", "a/Maildir/cur/3.M3P3.h:2,S");
	assert_restored("r3", "a/Maildir/.Sent/maildirfolder");
	assert_restored("r3", "a/Maildir/dovecot-uidlist");
	assert_restored("r3", "a/Maildir/subscriptions");
	assert_absent("r3", "new/2.M2P2.h,S=20");
	assert_absent("r3", ".Sent/cur/3.M3P3.h:2,S");
	assert_absent("r1", "cur/1.M1P1.h,S=20:2,RS");
	assert_absent("r1", "cur/3.M3P3.h:2,S");
	assert_absent("r1", "dovecot-keywords");

	/* An expunge ends a version and adds none. */
	assert_int_equal(
	    unlink(fx_path(dir, "store/a/Maildir/cur/3.M3P3.h:2,S")), 0);
	s4 = backup(a, "a/Maildir");
	assert_int_equal(s4.messages, 2);
	assert_int_equal(s4.vanished, 1);
	assert_int_equal(s4.new_versions, 0);
	restore(s4.snapshot, a, "r4");
	assert_absent("r4", "cur/3.M3P3.h:2,S");
	assert_restored("r4", "a/Maildir/cur/2.M2P2.h,S=20:2,");
}

/* Past the settling time of a stamp (the catalog keeps none before). */
static void
settle(void)
{
	struct timespec ts = { 1, 200000000 };

	nanosleep(&ts, NULL);
}

static void
test_backup_unchanged_small_files_not_read(void **state)
{
	static const char uid1[] = "3 V1 N4\n1 :1.M1P1.h\n";
	static const char uid2[] = "3 V1 N5\n1 :1.M1P1.h\n";
	static const char kw1[] = "0 Junk\n1 NonJunk\n";
	static const char kw2[] = "0 Work\n1 Family\n";
	struct mk_backup_stats s1, s2, s3, s4, s5, s6;
	const char *a = "a@example.org";
	char tmp[4096], pack[MK_PACK_NAME_LEN + 1];
	uint8_t id[MK_PACK_ID_LEN];
	struct mk_err err;
	struct stat st;

	(void)state;
	fx_maildir(dir, "store/a/Maildir");
	fx_maildir(dir, "store/a/Maildir/.Sent");
	put_text("a/Maildir/.Sent/maildirfolder", "");
	put_text("a/Maildir/dovecot-uidlist", uid1);
	put_text("a/Maildir/dovecot-keywords", kw1);
	put_text("a/Maildir/.Sent/dovecot-uidlist", "3 V2 N1\n");
	put_text("a/Maildir/subscriptions", "V\t2\n\nSent\n");
	put_text("a/Maildir/cur/1.M1P1.h,S=20:2,S", "Subject: 1\n\nbody one\n");
	settle();
	s1 = backup(a, "a/Maildir");
	assert_int_equal(s1.meta_bytes,
	    strlen(uid1) + strlen(kw1) + strlen("3 V2 N1\n") +
		strlen("V\t2\n\nSent\n"));

	/* Unchanged: not read again, and restored all the same. */
	s2 = backup(a, "a/Maildir");
	assert_int_equal(s2.meta_bytes, 0);
	assert_int_equal(s2.new_blobs, 0);
	restore(s2.snapshot, a, "r2");
	assert_restored("r2", "a/Maildir/dovecot-uidlist");
	assert_restored("r2", "a/Maildir/dovecot-keywords");
	assert_restored("r2", "a/Maildir/.Sent/dovecot-uidlist");
	assert_restored("r2", "a/Maildir/.Sent/maildirfolder");
	assert_restored("r2", "a/Maildir/subscriptions");

	/* Their pack tombstoned by a prune: the stamps are not used. */
	assert_int_equal(
	    mk_repo_blob_id(repo, uid1, strlen(uid1), id, &err), 0);
	assert_int_equal(mk_catalog_blob_get(cat, id, pack, NULL, &err), 1);
	assert_int_equal(mk_catalog_pack_tombstone(cat, pack, 1, &err), 0);
	s2 = backup(a, "a/Maildir");
	assert_int_equal(s2.meta_bytes, s1.meta_bytes);
	assert_true(s2.new_blobs > 0);
	s2 = backup(a, "a/Maildir");
	assert_int_equal(s2.meta_bytes, 0);
	restore(s2.snapshot, a, "r2b");
	assert_restored("r2b", "a/Maildir/dovecot-uidlist");

	/* Rewritten in place with a new mtime, same size: read again. */
	put_file("a/Maildir/dovecot-uidlist", uid2, strlen(uid2), 1700000100);
	/* Replaced by a rename, same size, the old mtime: read again. */
	put_file("a/Maildir/kw.tmp", kw2, strlen(kw2), 1700000000);
	move_file("a/Maildir/kw.tmp", "a/Maildir/dovecot-keywords");
	s3 = backup(a, "a/Maildir");
	assert_int_equal(s3.meta_bytes, strlen(uid2) + strlen(kw2));
	restore(s3.snapshot, a, "r3");
	assert_restored("r3", "a/Maildir/dovecot-uidlist");
	assert_restored("r3", "a/Maildir/dovecot-keywords");
	assert_restored("r3", "a/Maildir/subscriptions");

	/* Once settled, the new versions get their stamps. */
	settle();
	s4 = backup(a, "a/Maildir");
	assert_true(s4.meta_bytes <= strlen(uid2) + strlen(kw2));
	s5 = backup(a, "a/Maildir");
	assert_int_equal(s5.meta_bytes, 0);

	/* Gone: gone from the snapshot too, and its stamp with it. */
	snprintf(tmp, sizeof(tmp), "%s/store/a/Maildir/dovecot-keywords", dir);
	assert_int_equal(unlink(tmp), 0);
	s6 = backup(a, "a/Maildir");
	assert_int_equal(s6.meta_bytes, 0);
	restore(s6.snapshot, a, "r6");
	assert_absent("r6", "dovecot-keywords");
	assert_restored("r6", "a/Maildir/dovecot-uidlist");
	snprintf(tmp, sizeof(tmp), "%s/r6/dovecot-uidlist", dir);
	assert_int_equal(stat(tmp, &st), 0);
	assert_int_equal(st.st_size, strlen(uid2));
}

/* Bytes that zstd cannot shrink much, from a fixed seed. */
static void
fill_random(uint8_t *p, size_t len, uint64_t seed)
{
	uint64_t x = seed | 1;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)x;
	}
}

/* The versions of a mailbox alive now under one base name: the first
 * one's content, and each one's folder. */
struct found {
	const char *base;
	bool opaque;
	size_t nblobs;
	uint64_t size;
	char dirs[4][64];
	size_t n;
};

static void
found_cb(const struct mk_catalog_version *v, void *arg)
{
	struct found *f = arg;

	if (strcmp(v->base, f->base) != 0 || f->n == 4)
		return;
	if (f->n == 0) {
		f->opaque = v->opaque;
		f->nblobs = v->nblobs;
		f->size = v->size;
	}
	snprintf(f->dirs[f->n++], sizeof(f->dirs[0]), "%s", v->dir);
}

static struct found
find_copies(const char *address, const char *base)
{
	struct found f;
	struct mk_err err;

	memset(&f, 0, sizeof(f));
	f.base = base;
	if (mk_catalog_versions_at(
		cat, address, MK_CATALOG_NOW, found_cb, &f, &err) < 0)
		fail_msg("%s", err.msg);
	return f;
}

static struct found
find_version(const char *address, const char *base)
{
	struct found f = find_copies(address, base);

	assert_int_equal(f.n, 1);
	return f;
}

static void
test_backup_large_compressed_and_odd_messages(void **state)
{
	size_t big = 3u << 20, hdr = 40;
	const char *b = "b@example.org";
	struct mk_backup_stats s;
	uint8_t *data = mk_xmalloc(big);
	struct found f;

	(void)state;
	fx_maildir(dir, "store/b/Maildir");
	memcpy(data, "Subject: large\nX-Pad: 0123456789abcd\n\n", hdr - 1);
	fill_random(data + hdr - 1, big - hdr + 1, 7);
	put_file("b/Maildir/cur/big.M1P1.h:2,S", (char *)data, big, 1600000000);
	/* gzip magic: stored whole, not split */
	data[0] = 0x1f;
	data[1] = 0x8b;
	put_file("b/Maildir/cur/gz.M2P2.h:2,", (char *)data, 2000, 1600000001);
	put_text("b/Maildir/cur/crlf.M3P3.h:2,", "A: b\r\n\r\nbody\r\n");
	put_text("b/Maildir/cur/nohdrend.M4P4.h:2,", "Subject: only a header");
	put_text("b/Maildir/cur/empty.M5P5.h:2,", "");
	put_text("b/Maildir/new/malformed", "X: y\n\nz\n");
	s = backup(b, "b/Maildir");
	assert_int_equal(s.messages, 6);
	assert_int_equal(s.read_bytes, big + 2000 + 14 + 22 + 0 + 8);
	f = find_version(b, "big.M1P1.h");
	/* A header, then a body over 1 MiB cut into pieces. */
	assert_false(f.opaque);
	assert_true(f.nblobs >= 3);
	assert_true(f.size == big);
	f = find_version(b, "gz.M2P2.h");
	assert_true(f.opaque && f.nblobs == 1);
	f = find_version(b, "nohdrend.M4P4.h");
	assert_true(!f.opaque && f.nblobs == 1);
	f = find_version(b, "empty.M5P5.h");
	assert_true(!f.opaque && f.nblobs == 1 && f.size == 0);
	f = find_version(b, "malformed");
	assert_true(!f.opaque && f.nblobs == 2);
	/* Random data does not compress: stored is about what was read. */
	assert_true(s.stored_bytes > big);
	restore(s.snapshot, b, "rb");
	assert_restored("rb", "b/Maildir/cur/big.M1P1.h:2,S");
	assert_restored("rb", "b/Maildir/cur/gz.M2P2.h:2,");
	assert_restored("rb", "b/Maildir/cur/crlf.M3P3.h:2,");
	assert_restored("rb", "b/Maildir/cur/nohdrend.M4P4.h:2,");
	assert_restored("rb", "b/Maildir/cur/empty.M5P5.h:2,");
	assert_restored("rb", "b/Maildir/new/malformed");
	free(data);
}

static void
test_backup_same_body_stored_once(void **state)
{
	size_t body = 300000, hlen;
	struct mk_backup_stats s1, s2;
	char *msg = mk_xmalloc(body + 100);

	(void)state;
	hlen = (size_t)snprintf(msg, 100, "Delivered-To: c@example.org\n\n");
	fill_random((uint8_t *)msg + hlen, body, 11);
	fx_maildir(dir, "store/c/Maildir");
	fx_maildir(dir, "store/d/Maildir");
	put_file("c/Maildir/new/1.M1P1.h", msg, hlen + body, 1700000000);
	hlen = (size_t)snprintf(msg, 100, "Delivered-To: d@example.org\n\n");
	fill_random((uint8_t *)msg + hlen, body, 11);
	put_file("d/Maildir/new/1.M1P1.h", msg, hlen + body, 1700000000);
	s1 = backup("c@example.org", "c/Maildir");
	s2 = backup("d@example.org", "d/Maildir");
	assert_true(s1.stored_bytes > body);
	/* Read again, but only the new header and the lists are stored. */
	assert_int_equal(s2.read_bytes, hlen + body);
	assert_true(s2.stored_bytes < 4096);
	free(msg);
}

/*
 * An IMAP COPY keeps the base name and hardlinks the file into the
 * other folder: two messages, one content, read once.
 */
static void
test_backup_base_in_two_folders_is_two_copies(void **state)
{
	struct mk_backup_stats s1, s2, s3, s4;
	const char *a = "e@example.org";
	struct mk_reindex_stats rs;
	struct mk_err err;
	struct found c;

	(void)state;
	fx_maildir(dir, "store/e/Maildir");
	fx_maildir(dir, "store/e/Maildir/.Archive");
	put_text("e/Maildir/cur/9.M9P9.h:2,S", "X: 1\n\ncopied\n");
	assert_int_equal(
	    link(fx_path(dir, "store/e/Maildir/cur/9.M9P9.h:2,S"),
		fx_path(dir, "store/e/Maildir/.Archive/cur/9.M9P9.h:2,S")),
	    0);
	s1 = backup(a, "e/Maildir");
	assert_int_equal(s1.messages, 2);
	assert_int_equal(s1.read_messages, 1);
	c = find_copies(a, "9.M9P9.h");
	assert_int_equal(c.n, 2);
	assert_string_not_equal(c.dirs[0], c.dirs[1]);
	restore(s1.snapshot, a, "re1");
	assert_restored("re1", "e/Maildir/cur/9.M9P9.h:2,S");
	assert_restored("re1", "e/Maildir/.Archive/cur/9.M9P9.h:2,S");

	/* Nothing changed: both versions stay. */
	s2 = backup(a, "e/Maildir");
	assert_int_equal(s2.new_versions + s2.vanished, 0);
	assert_int_equal(s2.messages, 2);

	/* A flag on one copy changes that version only. */
	move_file("e/Maildir/.Archive/cur/9.M9P9.h:2,S",
	    "e/Maildir/.Archive/cur/9.M9P9.h:2,RS");
	s3 = backup(a, "e/Maildir");
	assert_int_equal(s3.read_messages, 0);
	assert_int_equal(s3.new_versions, 1);
	assert_int_equal(s3.vanished, 1);
	assert_int_equal(find_copies(a, "9.M9P9.h").n, 2);

	/* Expunging one copy leaves the other. */
	assert_int_equal(
	    unlink(fx_path(dir, "store/e/Maildir/cur/9.M9P9.h:2,S")), 0);
	s4 = backup(a, "e/Maildir");
	assert_int_equal(s4.messages, 1);
	assert_int_equal(s4.vanished, 1);
	assert_int_equal(s4.new_versions, 0);
	c = find_copies(a, "9.M9P9.h");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.dirs[0], ".Archive");
	restore(s4.snapshot, a, "re4");
	assert_restored("re4", "e/Maildir/.Archive/cur/9.M9P9.h:2,RS");
	assert_absent("re4", "cur/9.M9P9.h:2,S");
	/* The first snapshot still has both. */
	restore(s1.snapshot, a, "re1b");
	assert_int_equal(
	    access(fx_path(dir, "re1b/cur/9.M9P9.h:2,S"), F_OK), 0);
	assert_int_equal(
	    access(fx_path(dir, "re1b/.Archive/cur/9.M9P9.h:2,S"), F_OK), 0);

	/* The catalog rebuilt from the repository has the same history:
	 * two versions of one message, a flag change, one copy left. */
	memset(&rs, 0, sizeof(rs));
	if (mk_reindex_catalog(repo, cat, &rs, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(rs.skipped, 0);
	assert_int_equal(rs.messages, 1);
	assert_int_equal(rs.versions, 3);
	c = find_copies(a, "9.M9P9.h");
	assert_int_equal(c.n, 1);
	assert_string_equal(c.dirs[0], ".Archive");
}

static void
count_run_cb(const struct mk_snapshot_run *run, void *arg)
{
	uint64_t *mailboxes = arg;

	*mailboxes += run->mailboxes;
	mailboxes[1]++;
}

static void
test_backup_interrupted_run_published_next_time(void **state)
{
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1], id2[MK_SNAPSHOT_RUN_ID_LEN + 1];
	struct mk_snapshot_entry *entries = NULL;
	struct mk_snapshot_run *run = NULL;
	struct mk_backup *bk = NULL;
	uint64_t counts[2] = { 0, 0 };
	struct mk_backup_stats s;
	struct mk_err err;
	int64_t r1, r2;
	size_t n = 0;

	(void)state;
	fx_maildir(dir, "store/f/Maildir");
	put_text("f/Maildir/cur/1.M1P1.h:2,S", "X: 1\n\nf\n");
	/* A run that never ends: killed after its mailbox was done. */
	if (mk_backup_run_begin(repo, cat, &r1, id, &err) < 0 ||
	    mk_backup_new(repo, cat, r1, &bk, &err) < 0 ||
	    mk_backup_mailbox(
		bk, rootfd, "f/Maildir", "f@example.org", &s, &err) < 0)
		fail_msg("%s", err.msg);
	mk_backup_free(&bk);
	assert_int_equal(mk_backup_runs(repo, count_run_cb, counts, &err), 0);
	assert_int_equal(counts[1], 0);
	/* The next run publishes it first. */
	if (mk_backup_run_begin(repo, cat, &r2, id2, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(mk_backup_runs(repo, count_run_cb, counts, &err), 0);
	assert_int_equal(counts[1], 1);
	assert_int_equal(counts[0], 1);
	if (mk_backup_run_read(repo, id, &run, &entries, &n, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 1);
	assert_string_equal(entries[0].address, "f@example.org");
	assert_true(entries[0].messages == 1);
	mk_snapshot_entries_free(&entries, n);
	mk_snapshot_run_free(&run);
	if (mk_backup_run_end(repo, cat, r2, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(mk_backup_run_end(repo, cat, r2, &err), -1);
}

static void
test_backup_restore_refusals(void **state)
{
	struct mk_restore_stats rs;
	struct mk_backup_stats s;
	struct mk_err err;

	(void)state;
	fx_maildir(dir, "store/g/Maildir");
	put_text("g/Maildir/cur/1.M1P1.h:2,S", "X: 1\n\ng\n");
	s = backup("g@example.org", "g/Maildir");
	fx_write(dir, "full/file", "x");
	assert_int_equal(mk_restore_mailbox(repo, cat, s.snapshot,
			     "g@example.org", fx_path(dir, "full"), &rs, &err),
	    -1);
	assert_non_null(strstr(err.msg, "not empty"));
	assert_int_equal(
	    symlink(fx_path(dir, "empty"), fx_path(dir, "link")), 0);
	fx_mkdirs(dir, "empty");
	assert_int_equal(mk_restore_mailbox(repo, cat, s.snapshot,
			     "g@example.org", fx_path(dir, "link"), &rs, &err),
	    -1);
	assert_int_equal(mk_restore_mailbox(repo, cat, s.snapshot,
			     "h@example.org", fx_path(dir, "empty"), &rs, &err),
	    -1);
	assert_non_null(strstr(err.msg, "not of h@example.org"));
	assert_int_equal(mk_restore_mailbox(repo, cat, s.snapshot + 1000,
			     "g@example.org", fx_path(dir, "empty"), &rs, &err),
	    -1);
	assert_int_equal(mk_restore_mailbox(repo, cat, s.snapshot,
			     "g@example.org", fx_path(dir, "empty"), &rs, &err),
	    0);
	assert_int_equal(rs.messages, 1);
	assert_int_equal(rs.folders, 1);
}

static void
count_snapshot_cb(const struct mk_catalog_snapshot *snap, void *arg)
{
	(void)snap;
	(*(size_t *)arg)++;
}

static size_t
count_snapshots(const char *address)
{
	struct mk_err err;
	size_t n = 0;

	if (mk_catalog_snapshots(cat, address, count_snapshot_cb, &n, &err) < 0)
		fail_msg("%s", err.msg);
	return n;
}

/* A read callback that counts, and refuses once past a limit. */
struct read_limit {
	uint64_t seen;
	uint64_t stop_after;
};

static int
read_limit_cb(uint64_t bytes, void *arg, struct mk_err *err)
{
	struct read_limit *rl = arg;

	rl->seen += bytes;
	if (rl->seen > rl->stop_after)
		return mk_err_set(err, "cancelled");
	return 0;
}

static void
test_backup_read_cb_counts_and_stops(void **state)
{
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	struct read_limit rl = { 0, 10 };
	struct mk_backup *bk = NULL;
	struct mk_backup_stats s;
	struct mk_err err;
	int64_t run;

	(void)state;
	fx_maildir(dir, "store/h/Maildir");
	put_text("h/Maildir/cur/1.M1P1.h:2,S", "X: 1\n\nfirst message\n");
	put_text("h/Maildir/new/2.M2P1.h", "X: 2\n\nsecond message\n");
	if (mk_backup_run_begin(repo, cat, &run, id, &err) < 0 ||
	    mk_backup_new(repo, cat, run, &bk, &err) < 0)
		fail_msg("%s", err.msg);
	/* Stopped by the callback: nothing of the mailbox is recorded. */
	mk_backup_set_read_cb(bk, read_limit_cb, &rl);
	assert_int_equal(mk_backup_mailbox(bk, rootfd, "h/Maildir",
			     "h@example.org", &s, &err),
	    -1);
	assert_non_null(strstr(err.msg, "cancelled"));
	assert_int_equal(count_snapshots("h@example.org"), 0);
	/* Let through: it saw every byte of both messages, once. */
	rl.seen = 0;
	rl.stop_after = UINT64_MAX;
	if (mk_backup_mailbox(
		bk, rootfd, "h/Maildir", "h@example.org", &s, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(rl.seen == s.read_bytes);
	assert_true(s.read_bytes ==
	    strlen("X: 1\n\nfirst message\n") +
		strlen("X: 2\n\nsecond message\n"));
	assert_int_equal(count_snapshots("h@example.org"), 1);
	mk_backup_free(&bk);
	if (mk_backup_run_end(repo, cat, run, &err) < 0)
		fail_msg("%s", err.msg);
}

/* A session sharing packs: how each mailbox ended. */
struct shared_done {
	int committed;
	int failed;
};

static void
shared_done_cb(const char *address, const struct mk_backup_stats *stats,
    const struct mk_err *err, void *arg)
{
	struct shared_done *d = arg;

	(void)address;
	(void)stats;
	if (err != NULL)
		d->failed++;
	else
		d->committed++;
}

/*
 * Listing ahead: the next mailbox is listed by another thread while one
 * is backed up.  Each snapshot must hold exactly its mailbox; a listing
 * never asked for is dropped; a mailbox waiting for the open pack is not
 * listed ahead, since the catalog does not have its versions yet.
 */
static void
test_backup_prefetch_lists_ahead(void **state)
{
	static const char *const who[] = { "p0@example.org", "p1@example.org",
		"p2@example.org" };
	static const char *const rel[] = { "p0/Maildir", "p1/Maildir",
		"p2/Maildir" };
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1], name[128], text[64];
	struct mk_backup_stats s[4];
	struct shared_done done = { 0, 0 };
	struct mk_backup *bk = NULL;
	struct mk_err err;
	struct alive a;
	int64_t run = 0;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "store/%s", rel[i]);
		fx_maildir(dir, name);
		fx_maildir(dir, strcat(name, "/.Sent"));
		snprintf(
		    name, sizeof(name), "%s/cur/%zu.M1P1.h:2,S", rel[i], i);
		snprintf(text, sizeof(text), "X: %zu\n\nfirst of %zu\n", i, i);
		put_text(name, text);
		snprintf(name, sizeof(name), "%s/.Sent/cur/%zu.M2P1.h:2,S",
		    rel[i], i);
		put_text(name, text);
	}
	if (mk_backup_run_begin(repo, cat, &run, id, &err) < 0 ||
	    mk_backup_new(repo, cat, run, &bk, &err) < 0)
		fail_msg("%s", err.msg);
	mk_backup_share_packs(bk, shared_done_cb, &done);
	for (i = 0; i < 3; i++) {
		if (i + 1 < 3)
			mk_backup_prefetch(bk, rootfd, rel[i + 1], who[i + 1]);
		if (mk_backup_mailbox(bk, rootfd, rel[i], who[i], &s[i], &err) <
		    0)
			fail_msg("%s", err.msg);
		assert_int_equal(s[i].messages, 2);
		assert_int_equal(s[i].read_messages, 2);
		assert_int_equal(s[i].listed_ahead, i > 0);
	}
	/* p0 waits for the open pack: not listed ahead, listed again after
	 * the pack is stored, and its new message is the only one read.
	 * Named twice: the second name replaces the first. */
	put_text("p0/Maildir/new/7.M7P1.h", "X: 7\n\nlater\n");
	mk_backup_prefetch(bk, rootfd, rel[0], who[0]);
	mk_backup_prefetch(bk, rootfd, rel[0], who[0]);
	if (mk_backup_mailbox(bk, rootfd, rel[0], who[0], &s[3], &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(s[3].messages, 3);
	assert_int_equal(s[3].read_messages, 1);
	assert_false(s[3].listed_ahead);
	/* A listing never asked for goes with the session. */
	mk_backup_prefetch(bk, rootfd, rel[2], who[2]);
	if (mk_backup_mailbox(bk, rootfd, rel[1], who[1], &s[3], &err) < 0 ||
	    mk_backup_flush(bk, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(s[3].read_messages, 0);
	mk_backup_free(&bk);
	if (mk_backup_run_end(repo, cat, run, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(done.committed, 5);
	assert_int_equal(done.failed, 0);
	for (i = 0; i < 3; i++) {
		a = alive_at(who[i], MK_CATALOG_NOW);
		assert_int_equal(a.n, i == 0 ? 3 : 2);
		snprintf(name, sizeof(name), ".Sent/cur/%zu.M2P1.h:2,S", i);
		assert_string_equal(a.v[0].name, name);
		snprintf(name, sizeof(name), "=/cur/%zu.M1P1.h:2,S", i);
		assert_string_equal(a.v[1].name, name);
	}
	assert_string_equal(
	    alive_at(who[0], MK_CATALOG_NOW).v[2].name, "=/new/7.M7P1.h");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backup_split_table),
		cmocka_unit_test(test_backup_split_limits),
		cmocka_unit_test_setup_teardown(
		    test_backup_catalog_versions_alive_at, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_flag_change_and_move_read_nothing, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_unchanged_small_files_not_read, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_large_compressed_and_odd_messages, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_same_body_stored_once, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_base_in_two_folders_is_two_copies, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_interrupted_run_published_next_time, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_restore_refusals, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_read_cb_counts_and_stops, bk_setup,
		    bk_teardown),
		cmocka_unit_test_setup_teardown(
		    test_backup_prefetch_lists_ahead, bk_setup, bk_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
