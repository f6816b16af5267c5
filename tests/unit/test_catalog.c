#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fixture.h"
#include "mailkeep/catalog.h"
#include "mailkeep/mem.h"

static char *dir;

static int
cat_setup(void **state)
{
	(void)state;
	dir = fx_tmpdir();
	return 0;
}

static int
cat_teardown(void **state)
{
	(void)state;
	fx_rmrf(dir);
	free(dir);
	return 0;
}

static struct mk_mailbox_usage *
usage(const char *address, uint64_t inbox, uint64_t sent)
{
	struct mk_mailbox_usage *mu = mk_xcalloc(1, sizeof(*mu));

	mu->address = mk_xstrdup(address);
	mu->relpath = mk_xstrdup("d/u/Maildir");
	mu->nfolders = sent > 0 ? 2 : 1;
	mu->folders = mk_xcalloc(2, sizeof(*mu->folders));
	mu->folders[0].name = mk_xstrdup("INBOX");
	mu->folders[0].dir = mk_xstrdup("");
	mu->folders[0].usage.bytes = inbox;
	mu->folders[0].usage.messages = 1;
	mu->folders[0].new_mtime_ns = 11;
	if (sent > 0) {
		mu->folders[1].name = mk_xstrdup("Sent");
		mu->folders[1].dir = mk_xstrdup(".Sent");
		mu->folders[1].usage.bytes = sent;
		mu->folders[1].usage.messages = 1;
	}
	mu->total.bytes = inbox + sent;
	mu->total.vbytes = UINT64_MAX >> 1;
	mu->total.messages = mu->nfolders;
	return mu;
}

static void
put(struct mk_catalog *cat, struct mk_mailbox_usage *mu, int64_t now)
{
	struct mk_err err;

	assert_int_equal(mk_catalog_begin(cat, &err), 0);
	if (mk_catalog_put_usage(cat, mu, now, now, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(mk_catalog_commit(cat, &err), 0);
}

static void
test_catalog_usage_round_trip_and_folder_removal(void **state)
{
	struct mk_mailbox_usage *mu = usage("a@b.c", 100, 50), *got = NULL;
	struct mk_catalog *cat = NULL;
	struct mk_err err;
	struct stat st;

	(void)state;
	assert_int_equal(mk_catalog_open(fx_path(dir, "c.db"), &cat, &err), 0);
	assert_int_equal(stat(fx_path(dir, "c.db"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	put(cat, mu, 1000);
	assert_int_equal(mk_catalog_get_usage(cat, "a@b.c", &got, &err), 1);
	assert_int_equal(got->total.bytes, 150);
	assert_true(got->total.vbytes == UINT64_MAX >> 1);
	assert_int_equal(got->nfolders, 2);
	assert_string_equal(got->folders[0].name, "INBOX");
	assert_int_equal(got->folders[0].new_mtime_ns, 11);
	assert_string_equal(got->folders[1].dir, ".Sent");
	mk_mailbox_usage_free(&got);
	mk_mailbox_usage_free(&mu);

	/* Sent was deleted: the next record drops its row. */
	mu = usage("a@b.c", 70, 0);
	put(cat, mu, 2000);
	assert_int_equal(mk_catalog_get_usage(cat, "a@b.c", &got, &err), 1);
	assert_int_equal(got->nfolders, 1);
	assert_int_equal(got->total.bytes, 70);
	mk_mailbox_usage_free(&got);
	mk_mailbox_usage_free(&mu);
	assert_int_equal(mk_catalog_get_usage(cat, "x@y.z", &got, &err), 0);
	assert_null(got);
	mk_catalog_close(&cat);
	assert_null(cat);
}

static void
test_catalog_mark_removed_after_full_scan(void **state)
{
	struct mk_mailbox_usage *a = usage("a@b.c", 1, 0);
	struct mk_mailbox_usage *b = usage("b@b.c", 2, 0);
	struct mk_mailbox_usage *got = NULL;
	struct mk_catalog *cat = NULL;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_catalog_open(fx_path(dir, "c.db"), &cat, &err), 0);
	put(cat, a, 1000);
	put(cat, b, 1000);
	/* A full scan that starts at 2000 and sees only a. */
	put(cat, a, 2001);
	assert_int_equal(mk_catalog_mark_removed(cat, 2000, &err), 1);
	assert_int_equal(mk_catalog_get_usage(cat, "b@b.c", &got, &err), 0);
	/* b comes back. */
	put(cat, b, 3000);
	assert_int_equal(mk_catalog_get_usage(cat, "b@b.c", &got, &err), 1);
	mk_mailbox_usage_free(&got);
	mk_mailbox_usage_free(&a);
	mk_mailbox_usage_free(&b);
	mk_catalog_close(&cat);
}

static void
test_catalog_refuses_newer_schema_and_garbage(void **state)
{
	struct mk_catalog *cat = NULL;
	struct mk_err err;
	sqlite3 *db;

	(void)state;
	assert_int_equal(sqlite3_open(fx_path(dir, "new.db"), &db), SQLITE_OK);
	assert_int_equal(
	    sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL),
	    SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(
	    mk_catalog_open(fx_path(dir, "new.db"), &cat, &err), -1);
	assert_non_null(strstr(err.msg, "newer"));
	assert_null(cat);

	fx_write(dir, "garbage.db",
	    "this is not a database, not at all....."
	    "...........................................................");
	assert_int_equal(
	    mk_catalog_open(fx_path(dir, "garbage.db"), &cat, &err), -1);
	assert_non_null(strstr(err.msg, "garbage.db"));
}

static void
test_catalog_reopen_keeps_data(void **state)
{
	struct mk_mailbox_usage *mu = usage("a@b.c", 5, 0), *got = NULL;
	struct mk_catalog *cat = NULL;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_catalog_open(fx_path(dir, "c.db"), &cat, &err), 0);
	put(cat, mu, 1);
	mk_catalog_close(&cat);
	assert_int_equal(mk_catalog_open(fx_path(dir, "c.db"), &cat, &err), 0);
	assert_int_equal(mk_catalog_get_usage(cat, "a@b.c", &got, &err), 1);
	assert_int_equal(got->total.bytes, 5);
	mk_mailbox_usage_free(&got);
	mk_mailbox_usage_free(&mu);
	mk_catalog_close(&cat);
}

/*
 * The backup's own call passes the entry's id as the key and the entry
 * as the result: the id must survive (a run object once got a zero id).
 */
static void
test_catalog_blob_get_into_its_own_key(void **state)
{
	struct mk_pack_entry e[2], got;
	char name[MK_PACK_NAME_LEN + 1];
	struct mk_catalog *cat = NULL;
	struct mk_pack pack;
	struct mk_err err;

	(void)state;
	memset(e, 0, sizeof(e));
	memset(e[0].id, 0xab, MK_PACK_ID_LEN);
	memset(e[1].id, 0xcd, MK_PACK_ID_LEN);
	e[0].offset = 48;
	e[0].length = e[0].raw_length = 10;
	e[1].offset = 58;
	e[1].length = e[1].raw_length = 7;
	e[1].type = MK_PACK_TYPE_META;
	memset(&pack, 0, sizeof(pack));
	memset(pack.id, 'f', MK_PACK_NAME_LEN);
	pack.len = 200;
	pack.entries = e;
	pack.count = 2;
	assert_int_equal(mk_catalog_open(fx_path(dir, "c.db"), &cat, &err), 0);
	assert_int_equal(mk_catalog_begin(cat, &err), 0);
	assert_int_equal(mk_catalog_pack_add(cat, &pack, 1, &err), 0);
	assert_int_equal(mk_catalog_commit(cat, &err), 0);
	got = e[1];
	memset(&got.offset, 0, sizeof(got.offset));
	assert_int_equal(mk_catalog_blob_get(cat, got.id, name, &got, &err), 1);
	assert_memory_equal(got.id, e[1].id, MK_PACK_ID_LEN);
	assert_int_equal(got.offset, 58);
	assert_int_equal(got.type, MK_PACK_TYPE_META);
	assert_string_equal(name, pack.id);
	mk_catalog_close(&cat);
}

/*
 * A second connection opened in a process must not drop the locks of
 * the first (closing any descriptor of a file drops the process's fcntl
 * locks on it): else another process closing what it thinks is the last
 * connection deletes the WAL under the first, whose next query fails
 * with a disk I/O error.  Another process must still see a lock.
 */
static void
test_catalog_second_open_keeps_locks(void **state)
{
	struct mk_mailbox_usage *mu = usage("a@b.c", 5, 0), *got = NULL;
	struct mk_catalog *a = NULL, *b = NULL;
	struct mk_err err;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(mk_catalog_open(fx_path(dir, "l.db"), &a, &err), 0);
	put(a, mu, 1);
	assert_int_equal(mk_catalog_get_usage(a, "a@b.c", &got, &err), 1);
	mk_mailbox_usage_free(&got);
	assert_int_equal(mk_catalog_open(fx_path(dir, "l.db"), &b, &err), 0);
	mk_catalog_close(&b);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(fx_path(dir, "l.db"), O_RDONLY);

		if (fd < 0 || fcntl(fd, F_GETLK, &fl) < 0)
			_exit(2);
		_exit(fl.l_type == F_UNLCK);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	put(a, mu, 2);
	if (mk_catalog_get_usage(a, "a@b.c", &got, &err) != 1)
		fail_msg("%s", err.msg);
	mk_mailbox_usage_free(&got);
	mk_mailbox_usage_free(&mu);
	mk_catalog_close(&a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_catalog_usage_round_trip_and_folder_removal, cat_setup,
		    cat_teardown),
		cmocka_unit_test_setup_teardown(
		    test_catalog_mark_removed_after_full_scan, cat_setup,
		    cat_teardown),
		cmocka_unit_test_setup_teardown(
		    test_catalog_refuses_newer_schema_and_garbage, cat_setup,
		    cat_teardown),
		cmocka_unit_test_setup_teardown(
		    test_catalog_reopen_keeps_data, cat_setup, cat_teardown),
		cmocka_unit_test_setup_teardown(
		    test_catalog_blob_get_into_its_own_key, cat_setup,
		    cat_teardown),
		cmocka_unit_test_setup_teardown(
		    test_catalog_second_open_keeps_locks, cat_setup,
		    cat_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
