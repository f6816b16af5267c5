#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/scan.h"

/*
 * getdents64() and fstatat() are wrapped (-Wl,--wrap) so that a test can
 * act in the middle of a scan, as Dovecot does: hook_readdir sees each
 * name of a directory listing just after the kernel returned it.
 */
ssize_t __real_getdents64(int fd, void *buf, size_t size);
int __real_fstatat(int fd, const char *name, struct stat *st, int flags);
ssize_t __wrap_getdents64(int fd, void *buf, size_t size);
int __wrap_fstatat(int fd, const char *name, struct stat *st, int flags);

static void (*hook_readdir)(const char *name);
static const char *hook_stat_name;
static void (*hook_stat)(int fd, const char *name);

ssize_t
__wrap_getdents64(int fd, void *buf, size_t size)
{
	ssize_t n = __real_getdents64(fd, buf, size);
	size_t pos;

	for (pos = 0; n > 0 && pos < (size_t)n && hook_readdir != NULL;) {
		const struct dirent64 *de =
		    (const struct dirent64 *)(const void *)((char *)buf + pos);

		hook_readdir(de->d_name);
		pos += de->d_reclen;
	}
	return n;
}

int
__wrap_fstatat(int fd, const char *name, struct stat *st, int flags)
{
	if (hook_stat != NULL && hook_stat_name != NULL &&
	    strcmp(name, hook_stat_name) == 0) {
		hook_stat(fd, name);
		hook_stat = NULL;
	}
	return __real_fstatat(fd, name, st, flags);
}

static char *root;

static int
scan_setup(void **state)
{
	(void)state;
	root = fx_tmpdir();
	return 0;
}

static int
scan_teardown(void **state)
{
	(void)state;
	hook_readdir = NULL;
	hook_stat = NULL;
	fx_rmrf(root);
	free(root);
	return 0;
}

static struct mk_mailbox_usage *
scan(const char *relpath)
{
	struct mk_mailbox_usage *mu = NULL;
	struct mk_err err;
	int fd = open(root, O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	if (mk_scan_mailbox(fd, relpath, "u@d", '/', NULL, &mu, &err) < 0)
		fail_msg("scan: %s", err.msg);
	close(fd);
	return mu;
}

static const struct mk_folder_usage *
folder(const struct mk_mailbox_usage *mu, const char *name)
{
	size_t i;

	for (i = 0; i < mu->nfolders; i++)
		if (strcmp(mu->folders[i].name, name) == 0)
			return &mu->folders[i];
	fail_msg("no folder %s", name);
	return NULL;
}

static void
test_scan_sizes_from_names_and_stat(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_maildir(root, "M");
	/* Sizes from the name; the file's own size is not read. */
	fx_write_size(root, "M/new/1.M1P1.h,S=100,W=102", 100);
	fx_write_size(root, "M/cur/2.M1P1.h,S=5000,W=5100:2,S", 10);
	/* Without ,S= and ,W=: stat() and a read for the CRLF size. */
	fx_write(root, "M/cur/3.courier.h:2,S", "a\nb\n");
	/* Only ,S=: the virtual size is read (CRLF already counts once). */
	fx_write(root, "M/cur/4.M1P1.h,S=4:2,", "a\r\nb");
	/* Not messages: tmp/, hidden names, Dovecot's files. */
	fx_write_size(root, "M/tmp/5.M1P1.h,S=7", 7);
	fx_write(root, "M/cur/.hidden", "x");
	fx_write(root, "M/dovecot-uidlist", "3 V1 N1\n");
	fx_write(root, "M/maildirsize", "100S\n");
	fx_write(root, "M/subscriptions", "V\t2\n\nSent\n");
	mu = scan("M");
	assert_int_equal(mu->nfolders, 1);
	assert_string_equal(mu->folders[0].name, "INBOX");
	assert_int_equal(mu->total.messages, 4);
	assert_int_equal(mu->total.bytes, 100 + 5000 + 4 + 4);
	assert_int_equal(mu->total.vbytes, 102 + 5100 + 6 + 4);
	assert_int_equal(mu->malformed.count, 0);
	assert_int_equal(mu->skipped.count, 0);
	mk_mailbox_usage_free(&mu);
	assert_null(mu);
}

static void
test_scan_folders_in_imap_names(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_maildir(root, "M");
	fx_maildir(root, "M/.Sent");
	fx_maildir(root, "M/.Archive.2024");
	fx_maildir(root, "M/.Entw&APw-rfe");
	fx_write(root, "M/.Archive.2024/maildirfolder", "");
	fx_write_size(root, "M/.Sent/cur/1.a.h,S=10,W=11:2,S", 10);
	fx_write_size(root, "M/.Archive.2024/cur/2.a.h,S=20,W=21:2,S", 20);
	fx_write_size(root, "M/.Archive.2024/new/3.a.h,S=30,W=31", 30);
	/* A folder Dovecot is deleting, and an invalid folder name. */
	fx_maildir(root, "M/..DOVECOT-TRASHED");
	fx_write_size(root, "M/..DOVECOT-TRASHED/cur/4.a.h,S=40", 40);
	mu = scan("M");
	assert_int_equal(mu->nfolders, 4);
	assert_string_equal(mu->folders[0].name, "INBOX");
	assert_string_equal(mu->folders[1].name, "Archive/2024");
	assert_string_equal(mu->folders[2].name, "Entw\xc3\xbcrfe");
	assert_string_equal(mu->folders[3].name, "Sent");
	assert_string_equal(mu->folders[1].dir, ".Archive.2024");
	assert_int_equal(folder(mu, "Archive/2024")->usage.messages, 2);
	assert_int_equal(folder(mu, "Archive/2024")->usage.bytes, 50);
	assert_int_equal(folder(mu, "Sent")->usage.vbytes, 11);
	assert_int_equal(mu->total.messages, 3);
	assert_int_equal(mu->total.bytes, 60);
	mk_mailbox_usage_free(&mu);
}

static void
test_scan_symlinks_are_not_followed(void **state)
{
	struct mk_mailbox_usage *mu;
	struct mk_err err;
	int fd;

	(void)state;
	fx_maildir(root, "M");
	fx_maildir(root, "outside");
	fx_write_size(root, "outside/cur/9.a.h,S=999", 999);
	fx_write_size(root, "M/cur/1.a.h,S=10", 10);
	/* A message, a folder and a new/ that are symbolic links. */
	assert_int_equal(symlink(fx_path(root, "outside/cur/9.a.h,S=999"),
			     fx_path(root, "M/cur/2.a.h,S=5")),
	    0);
	assert_int_equal(
	    symlink(fx_path(root, "outside"), fx_path(root, "M/.Evil")), 0);
	fx_mkdirs(root, "M/.Sub/cur");
	assert_int_equal(
	    symlink(fx_path(root, "outside/cur"), fx_path(root, "M/.Sub/new")),
	    0);
	mu = scan("M");
	assert_int_equal(mu->total.messages, 1);
	assert_int_equal(mu->total.bytes, 10);
	assert_int_equal(mu->skipped.count, 3);
	mk_mailbox_usage_free(&mu);

	/* A Maildir that is itself a symbolic link is refused. */
	assert_int_equal(
	    symlink(fx_path(root, "outside"), fx_path(root, "L")), 0);
	fd = open(root, O_RDONLY | O_DIRECTORY);
	assert_int_equal(
	    mk_scan_mailbox(fd, "L", "u@d", '/', NULL, &mu, &err), -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_null(mu);
	close(fd);
}

static void
test_scan_malformed_names_are_counted_and_sized_by_stat(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_maildir(root, "M");
	fx_write_size(root, "M/cur/1.a.h,S=abc:2,S", 7);
	fx_write_size(root, "M/cur/2.a.h,S=99999999999999999999999", 3);
	fx_write_size(root, "M/cur/3.a.h:2,S%", 2);
	mu = scan("M");
	assert_int_equal(mu->total.messages, 3);
	assert_int_equal(mu->total.bytes, 12);
	assert_int_equal(mu->malformed.count, 3);
	mk_mailbox_usage_free(&mu);
}

static void
unlink_cb(int fd, const char *name)
{
	assert_int_equal(unlinkat(fd, name, 0), 0);
}

static void
test_scan_file_deleted_during_scan_is_not_counted(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_maildir(root, "M");
	fx_write(root, "M/cur/1.gone.h:2,S", "abc");
	fx_write(root, "M/cur/2.stays.h:2,S", "abcd");
	hook_stat_name = "1.gone.h:2,S";
	hook_stat = unlink_cb;
	mu = scan("M");
	assert_null(hook_stat); /* the hook did run */
	assert_int_equal(mu->total.messages, 1);
	assert_int_equal(mu->total.bytes, 4);
	assert_int_equal(mu->skipped.count, 0);
	mk_mailbox_usage_free(&mu);
}

static void
move_to_cur_cb(const char *name)
{
	char from[4096], to[4096];

	if (strcmp(name, "1.moving.h,S=10") != 0)
		return;
	snprintf(from, sizeof(from), "%s/M/new/%s", root, name);
	snprintf(to, sizeof(to), "%s/M/cur/%s:2,S", root, name);
	assert_int_equal(rename(from, to), 0);
	hook_readdir = NULL;
}

static void
test_scan_message_moved_to_cur_during_scan_counts_once(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_maildir(root, "M");
	fx_write_size(root, "M/new/1.moving.h,S=10", 10);
	fx_write_size(root, "M/cur/2.old.h,S=20:2,S", 20);
	hook_readdir = move_to_cur_cb;
	mu = scan("M");
	assert_null(hook_readdir); /* the move did happen mid-scan */
	assert_int_equal(mu->total.messages, 2);
	assert_int_equal(mu->total.bytes, 30);
	mk_mailbox_usage_free(&mu);
}

static void
test_scan_missing_subdirs_are_empty(void **state)
{
	struct mk_mailbox_usage *mu;

	(void)state;
	fx_mkdirs(root, "M/cur");
	fx_mkdirs(root, "M/.Empty");
	fx_write_size(root, "M/cur/1.a.h,S=0,W=0", 0);
	mu = scan("M");
	assert_int_equal(mu->nfolders, 2);
	assert_int_equal(mu->total.messages, 1);
	assert_int_equal(mu->total.bytes, 0);
	mk_mailbox_usage_free(&mu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_scan_sizes_from_names_and_stat, scan_setup,
		    scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_folders_in_imap_names, scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_symlinks_are_not_followed, scan_setup,
		    scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_malformed_names_are_counted_and_sized_by_stat,
		    scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_file_deleted_during_scan_is_not_counted,
		    scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_message_moved_to_cur_during_scan_counts_once,
		    scan_setup, scan_teardown),
		cmocka_unit_test_setup_teardown(
		    test_scan_missing_subdirs_are_empty, scan_setup,
		    scan_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
