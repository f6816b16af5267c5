#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/backup.h"
#include "mailkeep/check.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"

static char *dir;
static struct mk_repo *repo;
static struct mk_catalog *cat;
static int rootfd = -1;

#define ADDRESS "a@example.org"
#define VICTIM "1700000001.M1P1.host"

/* A mailbox with a few messages in INBOX and Sent, backed up once. */
static void
backup_once(struct mk_repo *into, struct mk_catalog *c)
{
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	struct mk_backup_stats s;
	struct mk_backup *bk = NULL;
	struct mk_err err;
	int64_t run;

	if (mk_backup_run_begin(into, c, &run, id, &err) < 0 ||
	    mk_backup_new(into, c, run, &bk, &err) < 0 ||
	    mk_backup_mailbox(bk, rootfd, "a/Maildir", ADDRESS, &s, &err) < 0 ||
	    mk_backup_run_end(into, c, run, &err) < 0)
		fail_msg("%s", err.msg);
	mk_backup_free(&bk);
}

static int
ck_setup(void **state)
{
	struct mk_err err;

	(void)state;
	dir = fx_tmpdir();
	repo = fx_repo_new(dir, "repo");
	if (mk_catalog_open(fx_path(dir, "catalog.db"), &cat, &err) < 0)
		fail_msg("%s", err.msg);
	fx_maildir(dir, "store/a/Maildir");
	fx_maildir(dir, "store/a/Maildir/.Sent");
	fx_write(dir, "store/a/Maildir/cur/" VICTIM ",S=40:2,S",
	    "Subject: one\n\nthe body of the victim\n");
	fx_write(dir, "store/a/Maildir/cur/1700000002.M2P1.host:2,",
	    "Subject: two\n\nanother body\n");
	fx_write(dir, "store/a/Maildir/.Sent/new/1700000003.M3P1.host",
	    "Subject: three\n\nsent body\n");
	rootfd = open(fx_path(dir, "store"), O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	backup_once(repo, cat);
	return 0;
}

static int
ck_teardown(void **state)
{
	(void)state;
	close(rootfd);
	mk_catalog_close(&cat);
	mk_repo_close(&repo);
	fx_rmrf(dir);
	free(dir);
	return 0;
}

/* What a check reported. */
struct report {
	unsigned problems;
	char kinds[512];
	bool victim; /* the victim message was named */
	unsigned affected;
};

static void
problem_cb(const struct mk_check_problem *p, void *arg)
{
	struct report *r = arg;

	r->problems++;
	strncat(r->kinds, p->kind, sizeof(r->kinds) - strlen(r->kinds) - 2);
	strcat(r->kinds, " ");
}

static void
affected_cb(const struct mk_catalog_damage *d, void *arg)
{
	struct report *r = arg;

	r->affected++;
	if (d->base != NULL && strcmp(d->base, VICTIM) == 0 &&
	    strcmp(d->address, ADDRESS) == 0 && strcmp(d->dir, "") == 0)
		r->victim = true;
}

static struct mk_check_stats
run_check(unsigned sample, struct report *r)
{
	struct mk_check_opts opts = { sample };
	struct mk_check_cbs cbs = { problem_cb, affected_cb, r };
	struct mk_check_stats st;
	struct mk_err err;

	memset(r, 0, sizeof(*r));
	if (mk_check_run(repo, cat, &opts, &cbs, &st, &err) < 0)
		fail_msg("%s", err.msg);
	return st;
}

static void
victim_cb(const struct mk_catalog_version *v, void *arg)
{
	uint8_t *body = arg;

	if (strcmp(v->base, VICTIM) == 0)
		memcpy(body, v->blobs[v->nblobs - 1], MK_PACK_ID_LEN);
}

/*
 * The pack file of repository name (cataloged in c) that holds the
 * victim's body, and the body's entry.  The caller frees the path.
 */
static char *
victim_pack_of(struct mk_catalog *c, const char *name, struct mk_pack_entry *e)
{
	char pack[MK_PACK_NAME_LEN + 1];
	uint8_t body[MK_PACK_ID_LEN];
	struct mk_err err;

	memset(body, 0, sizeof(body));
	if (mk_catalog_versions_at(
		c, ADDRESS, MK_CATALOG_NOW, victim_cb, body, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(mk_catalog_blob_get(c, body, pack, e, &err), 1);
	return mk_xasprintf("%s/%s/packs/%.2s/%s", dir, name, pack, pack);
}

static const char *
victim_pack(struct mk_pack_entry *e)
{
	static char path[4096];
	char *p = victim_pack_of(cat, "repo", e);

	snprintf(path, sizeof(path), "%s", p);
	free(p);
	return path;
}

static void
patch(const char *path, off_t at, uint8_t xor)
{
	uint8_t b;
	int fd;

	chmod(path, 0600);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= xor;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void
test_check_clean_repository(void **state)
{
	struct mk_check_stats st;
	struct report r;

	(void)state;
	st = run_check(100, &r);
	assert_int_equal(st.problems, 0);
	assert_int_equal(r.problems, 0);
	assert_true(st.packs > 0);
	assert_int_equal(st.packs_read, st.packs);
	assert_int_equal(st.blobs_read, st.blobs);
	assert_int_equal(st.runs, 1);
	assert_int_equal(st.snapshots, 1);
	st = run_check(0, &r);
	assert_int_equal(st.problems, 0);
	assert_int_equal(st.packs_read, 0);
}

static void
test_check_flipped_bit_in_a_blob(void **state)
{
	struct mk_pack_entry e;
	const char *path = victim_pack(&e);
	struct mk_check_stats st;
	struct report r;

	(void)state;
	patch(path, (off_t)(e.offset + e.length / 2), 0x04);
	/* The structure alone does not read blob data... */
	st = run_check(0, &r);
	assert_int_equal(st.problems, 0);
	/* ...the sample does, and names the message. */
	st = run_check(100, &r);
	assert_true(st.problems >= 1);
	assert_non_null(strstr(r.kinds, "blob-damaged"));
	assert_int_equal(st.damaged_blobs, 1);
	assert_true(r.victim);
	assert_int_equal(r.affected, 1);
}

static void
test_check_truncated_pack(void **state)
{
	struct mk_pack_entry e;
	const char *path = victim_pack(&e);
	struct mk_check_stats st;
	struct report r;
	struct stat sb;

	(void)state;
	assert_int_equal(stat(path, &sb), 0);
	chmod(path, 0600);
	assert_int_equal(truncate(path, sb.st_size - 1), 0);
	st = run_check(0, &r);
	assert_non_null(strstr(r.kinds, "pack-damaged"));
	assert_true(r.victim);
	assert_true(st.damaged_blobs >= 1);
}

static void
test_check_flipped_bit_in_the_index(void **state)
{
	struct mk_pack_entry e;
	const char *path = victim_pack(&e);
	struct report r;
	struct stat sb;

	(void)state;
	assert_int_equal(stat(path, &sb), 0);
	patch(path, sb.st_size - MK_PACK_FOOTER_LEN - 20, 0x80);
	run_check(0, &r);
	assert_non_null(strstr(r.kinds, "pack-damaged"));
	assert_true(r.victim);
}

/* A pack sealed under another repository's key, under the same name. */
static void
test_check_pack_under_a_wrong_key(void **state)
{
	struct mk_repo *other = fx_repo_new(dir, "other");
	struct mk_catalog *ocat = NULL;
	struct mk_pack_entry e, oe;
	char *mine, *theirs, cmd[8192];
	struct mk_err err;
	struct report r;

	(void)state;
	if (mk_catalog_open(fx_path(dir, "other.db"), &ocat, &err) < 0)
		fail_msg("%s", err.msg);
	backup_once(other, ocat);
	mine = victim_pack_of(cat, "repo", &e);
	theirs = victim_pack_of(ocat, "other", &oe);
	snprintf(cmd, sizeof(cmd), "cp -f '%s' '%s'", theirs, mine);
	chmod(mine, 0600);
	assert_int_equal(system(cmd), 0);
	run_check(0, &r);
	assert_non_null(strstr(r.kinds, "pack-damaged"));
	assert_true(r.victim);
	free(mine);
	free(theirs);
	mk_catalog_close(&ocat);
	mk_repo_close(&other);
}

static void
test_check_missing_pack_and_unknown_pack(void **state)
{
	struct mk_pack_entry e;
	const char *path = victim_pack(&e);
	char *aside = mk_xasprintf("%s.aside", path);
	struct mk_check_stats st;
	struct report r;

	(void)state;
	assert_int_equal(rename(path, aside), 0);
	st = run_check(0, &r);
	assert_non_null(strstr(r.kinds, "pack-missing"));
	assert_true(r.victim);
	assert_int_equal(rename(aside, path), 0);
	free(aside);
	st = run_check(0, &r);
	assert_int_equal(st.problems, 0);
	assert_int_equal(st.unknown_packs, 0);
}

/* The catalog rebuilt from the repository checks clean and the same. */
static void
test_check_after_rebuild_and_pack_reindex(void **state)
{
	struct mk_reindex_stats rs;
	struct mk_check_stats st;
	struct mk_err err;
	struct report r;

	(void)state;
	mk_catalog_close(&cat);
	unlink(fx_path(dir, "catalog.db"));
	unlink(fx_path(dir, "catalog.db-wal"));
	unlink(fx_path(dir, "catalog.db-shm"));
	if (mk_catalog_open(fx_path(dir, "catalog.db"), &cat, &err) < 0)
		fail_msg("%s", err.msg);
	/* Unknown packs first: all of them, before anything else. */
	assert_int_equal(mk_reindex_packs(repo, cat, &rs, &err), 0);
	assert_true(rs.packs > 0);
	assert_int_equal(rs.skipped, 0);
	st = run_check(0, &r);
	assert_int_equal(st.unknown_packs, 0);
	/* The whole catalog: runs, snapshots, versions. */
	assert_int_equal(mk_reindex_catalog(repo, cat, &rs, &err), 0);
	assert_int_equal(rs.runs, 1);
	assert_int_equal(rs.snapshots, 1);
	assert_int_equal(rs.messages, 3);
	assert_int_equal(rs.versions, 3);
	assert_int_equal(rs.skipped, 0);
	st = run_check(100, &r);
	assert_int_equal(st.problems, 0);
	assert_int_equal(st.snapshots, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_check_clean_repository, ck_setup, ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_flipped_bit_in_a_blob, ck_setup, ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_truncated_pack, ck_setup, ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_flipped_bit_in_the_index, ck_setup, ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_pack_under_a_wrong_key, ck_setup, ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_missing_pack_and_unknown_pack, ck_setup,
		    ck_teardown),
		cmocka_unit_test_setup_teardown(
		    test_check_after_rebuild_and_pack_reindex, ck_setup,
		    ck_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
