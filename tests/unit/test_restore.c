#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/backup.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/restore.h"

#define ADDR "a@example.org"

static char *dir;
static struct mk_repo *repo;
static struct mk_catalog *cat;
static int64_t snap;

/* A store with INBOX (two messages) and Archive (one), backed up once. */
static int
rs_setup(void **state)
{
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	struct mk_backup_stats s;
	struct mk_backup *bk = NULL;
	struct mk_err err;
	int64_t run = 0;
	int rootfd;

	(void)state;
	dir = fx_tmpdir();
	repo = fx_repo_new(dir, "repo");
	if (mk_catalog_open(fx_path(dir, "catalog.db"), &cat, &err) < 0)
		fail_msg("%s", err.msg);
	fx_maildir(dir, "store/mb");
	fx_maildir(dir, "store/mb/.Archive");
	fx_write(dir, "store/mb/cur/100.M1P1.h:2,Sa",
	    "From: =?utf-8?q?J=C3=BCrgen?= <J@X.DE>\nSubject: one\n"
	    "Message-ID: <one@x>\n\nFrom here\nbody\n");
	fx_write(dir, "store/mb/dovecot-keywords", "0 Junk\n");
	fx_write(dir, "store/mb/new/101.M2P1.h", "Subject: two\n\nhi\n");
	fx_write(dir, "store/mb/.Archive/cur/102.M3P1.h:2,RS",
	    "Subject: three\n\nold\n");
	rootfd = open(fx_path(dir, "store"), O_RDONLY | O_DIRECTORY);
	assert_true(rootfd >= 0);
	memset(&s, 0, sizeof(s));
	if (mk_backup_run_begin(repo, cat, &run, id, &err) < 0 ||
	    mk_backup_new(repo, cat, run, &bk, &err) < 0 ||
	    mk_backup_mailbox(bk, rootfd, "mb", ADDR, &s, &err) < 0 ||
	    mk_backup_run_end(repo, cat, run, &err) < 0)
		fail_msg("%s", err.msg);
	mk_backup_free(&bk);
	close(rootfd);
	snap = s.snapshot;
	return 0;
}

static int
rs_teardown(void **state)
{
	(void)state;
	mk_catalog_close(&cat);
	mk_repo_close(&repo);
	fx_rmrf(dir);
	free(dir);
	return 0;
}

struct listed {
	char from[64], subject[64], message_id[64];
	size_t n, with_header;
};

static void
listed_cb(const struct mk_catalog_listing *l, void *arg)
{
	struct listed *x = arg;

	x->n++;
	x->with_header += l->has_header;
	if (strcmp(l->base, "100.M1P1.h") == 0) {
		snprintf(x->from, sizeof(x->from), "%s", l->from);
		snprintf(x->subject, sizeof(x->subject), "%s", l->subject);
		snprintf(
		    x->message_id, sizeof(x->message_id), "%s", l->message_id);
	}
}

/* The backup filled the header index as it read the messages. */
static void
test_restore_backup_fills_header_index(void **state)
{
	struct listed x;
	struct mk_err err;

	(void)state;
	memset(&x, 0, sizeof(x));
	assert_int_equal(
	    mk_catalog_list_at(cat, ADDR, snap, listed_cb, &x, &err), 0);
	assert_int_equal(x.n, 3);
	assert_int_equal(x.with_header, 3);
	assert_string_equal(x.from, "Jürgen <j@x.de>");
	assert_string_equal(x.subject, "one");
	assert_string_equal(x.message_id, "<one@x>");
	memset(&x, 0, sizeof(x));
	assert_int_equal(
	    mk_catalog_list_at(cat, "nobody@x", snap, listed_cb, &x, &err), 0);
	assert_int_equal(x.n, 0);
}

static void
req_init(struct mk_restore_req *req, enum mk_restore_target target)
{
	memset(req, 0, sizeof(*req));
	req->address = ADDR;
	req->snapshot = snap;
	req->separator = '/';
	req->target = target;
	req->prefix = "Restored-x";
	static char maildir[4096];

	snprintf(maildir, sizeof(maildir), "%s/store/mb", dir);
	req->maildir = maildir;
	req->room_bytes = req->room_messages = UINT64_MAX;
}

static bool
cancel_cb(const struct mk_restore_progress *p, void *arg)
{
	int *calls = arg;

	assert_true(p->messages <= p->messages_total);
	return ++*calls < 1;
}

static bool
count_cb(const struct mk_restore_progress *p, void *arg)
{
	struct mk_restore_progress *last = arg;

	*last = *p;
	return true;
}

static bool
exists(const char *rel)
{
	struct stat st;

	return lstat(fx_path(dir, rel), &st) == 0;
}

/* Straight into the Maildir (no doveadm): a new folder tree, then only
 * what is missing in the original folders. */
static void
test_restore_direct_new_folder_and_original(void **state)
{
	struct mk_restore_progress last;
	struct mk_restore_stats st;
	struct mk_restore_req req;
	struct mk_err err;

	(void)state;
	req_init(&req, MK_RESTORE_TO_NEW_FOLDER);
	memset(&last, 0, sizeof(last));
	if (mk_restore_run(repo, cat, &req, count_cb, &last, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(st.folder, "Restored-x");
	assert_int_equal(st.messages, 3);
	assert_int_equal(last.messages, 3);
	assert_int_equal(last.messages_total, 3);
	/* Copies get base names of their own, "<ID>.<folder>". */
	assert_true(exists(
	    "store/mb/.Restored-x.INBOX/cur/100.M1P1.h.Restored-x:2,Sa"));
	assert_false(exists("store/mb/.Restored-x.INBOX/cur/100.M1P1.h:2,Sa"));
	assert_true(exists("store/mb/.Restored-x.INBOX/dovecot-keywords"));
	assert_true(exists(
	    "store/mb/.Restored-x.Archive/cur/102.M3P1.h.Restored-x:2,RS"));
	assert_true(exists("store/mb/.Restored-x.Archive/maildirfolder"));
	/* Again the same day: a "-2" tree. */
	if (mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(st.folder, "Restored-x-2");
	assert_true(exists(
	    "store/mb/.Restored-x-2.INBOX/cur/100.M1P1.h.Restored-x-2:2,Sa"));

	/* The Archive message is lost, INBOX's first is renamed (same
	 * content, another base) and its keywords file changed. */
	unlink(fx_path(dir, "store/mb/.Archive/cur/102.M3P1.h:2,RS"));
	rename(fx_path(dir, "store/mb/cur/100.M1P1.h:2,Sa"),
	    fx_path(dir, "store/mb/cur/200.M9P9.h:2,S"));
	fx_write(dir, "store/mb/dovecot-keywords", "0 Other\n");
	unlink(fx_path(dir, "store/mb/new/101.M2P1.h"));
	req_init(&req, MK_RESTORE_TO_ORIGINAL);
	if (mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(st.messages, 2);
	assert_int_equal(st.skipped, 1); /* by content */
	assert_true(exists("store/mb/.Archive/cur/102.M3P1.h:2,RS"));
	assert_true(exists("store/mb/new/101.M2P1.h"));
	assert_false(exists("store/mb/cur/100.M1P1.h:2,Sa"));
	if (mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(st.messages, 0);
	assert_int_equal(st.skipped, 3);
}

/* A cancel stops the run; quota room and bad names are refused first. */
static void
test_restore_cancel_room_and_refusals(void **state)
{
	struct mk_restore_stats st;
	struct mk_restore_req req;
	struct mk_err err;
	int calls = 0;

	(void)state;
	req_init(&req, MK_RESTORE_TO_DIR);
	req.dir = fx_path(dir, "out-cancel");
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, cancel_cb, &calls, &st, &err), -1);
	assert_non_null(strstr(err.msg, "cancelled"));
	assert_int_equal(calls, 1);

	req_init(&req, MK_RESTORE_TO_NEW_FOLDER);
	req.room_bytes = 10;
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, "--force"));
	req.room_bytes = UINT64_MAX;
	req.room_messages = 2;
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err), -1);
	assert_non_null(strstr(err.msg, "room for 2"));

	req_init(&req, MK_RESTORE_TO_NEW_FOLDER);
	req.prefix = "../x";
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err), -1);
	req_init(&req, MK_RESTORE_TO_DIR);
	req.dir = fx_path(dir, "out-bad");
	req.message = "../../x";
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err), -1);
	req.message = NULL;
	req.folder = "A/../../x";
	assert_int_equal(
	    mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err), -1);
	assert_false(exists("out-bad"));
}

/* One message in mbox form: From_ line and mboxrd quoting. */
static void
test_restore_mbox_quotes_from_lines(void **state)
{
	struct mk_restore_stats st;
	struct mk_restore_req req;
	struct mk_err err;
	char *data = NULL;
	size_t len;

	(void)state;
	req_init(&req, MK_RESTORE_TO_DIR);
	req.format = MK_RESTORE_MBOX;
	req.message = "100.M1P1.h";
	req.dir = fx_path(dir, "out-mbox");
	if (mk_restore_run(repo, cat, &req, NULL, NULL, &st, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(mk_fs_read_file(fx_path(dir, "out-mbox/INBOX.mbox"),
			     4096, &data, &len, &err),
	    0);
	assert_true(strncmp(data, "From MAILER-DAEMON ", 19) == 0);
	assert_non_null(strstr(data, "\n\n>From here\nbody\n\n"));
	assert_false(exists("out-mbox/Archive.mbox"));
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_restore_backup_fills_header_index),
		cmocka_unit_test(test_restore_mbox_quotes_from_lines),
		cmocka_unit_test(test_restore_cancel_room_and_refusals),
		cmocka_unit_test(test_restore_direct_new_folder_and_original),
	};

	return cmocka_run_group_tests(tests, rs_setup, rs_teardown);
}
