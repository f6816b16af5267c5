#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/maildirsize.h"

static struct mk_maildirsize
ms_parse_ok(const char *text)
{
	struct mk_maildirsize ms;
	struct mk_err err;

	if (mk_maildirsize_parse(text, strlen(text), &ms, &err) < 0)
		fail_msg("'%s': %s", text, err.msg);
	return ms;
}

/* The file Dovecot 2.3 kept during the observed run: deliveries, a MOVE. */
static void
test_maildirsize_parse_observed_dovecot_log(void **state)
{
	struct mk_maildirsize ms;

	(void)state;
	ms = ms_parse_ok("10485760S\n"
			 "0 0\n"
			 "6575 1\n"
			 "27434 1\n"
			 "13561 1\n"
			 "27434 1\n"
			 "-27434 -1\n");
	assert_true(ms.bytes_limit == 10485760);
	assert_true(ms.count_limit == 0);
	assert_true(ms.bytes == 6575 + 27434 + 13561);
	assert_true(ms.count == 3);
	assert_int_equal(ms.lines, 6);
	assert_false(ms.partial);
	/* After the rebuild: one line of totals, over the limit. */
	ms = ms_parse_ok("10485760S\n10496850 30\n");
	assert_true(ms.bytes == 10496850 && ms.count == 30);
	assert_int_equal(ms.lines, 1);
}

struct limit_case {
	const char *text;
	int rc;
	uint64_t bytes_limit, count_limit;
};

static const struct limit_case limit_cases[] = {
	{ "10000000S,1000C\n0 0\n", 0, 10000000, 1000 },
	{ "1000C,10000000S\n0 0\n", 0, 10000000, 1000 },
	{ "1000C\n0 0\n", 0, 0, 1000 },
	{ "0S\n0 0\n", 0, 0, 0 },
	{ "\n0 0\n", 0, 0, 0 },
	{ "18446744073709551615S\n0 0\n", 0, UINT64_MAX, 0 },
	{ "10485760S", 0, 10485760, 0 },
	{ "18446744073709551616S\n0 0\n", -1, 0, 0 },
	{ "S\n0 0\n", -1, 0, 0 },
	{ "10\n0 0\n", -1, 0, 0 },
	{ "10X\n0 0\n", -1, 0, 0 },
	{ "10s\n0 0\n", -1, 0, 0 },
	{ "10S,\n0 0\n", -1, 0, 0 },
	{ ",10S\n0 0\n", -1, 0, 0 },
	{ "10S,20S\n0 0\n", -1, 0, 0 },
	{ "10S 5C\n0 0\n", -1, 0, 0 },
	{ "-5S\n0 0\n", -1, 0, 0 },
	{ " 10S\n0 0\n", -1, 0, 0 },
};

static void
test_maildirsize_parse_limit_line(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *c = &limit_cases[i];
		struct mk_maildirsize ms;
		struct mk_err err;

		print_message("'%s'\n", c->text);
		assert_int_equal(
		    mk_maildirsize_parse(c->text, strlen(c->text), &ms, &err),
		    c->rc);
		if (c->rc < 0) {
			assert_non_null(strstr(err.msg, "line 1"));
			continue;
		}
		assert_true(ms.bytes_limit == c->bytes_limit);
		assert_true(ms.count_limit == c->count_limit);
	}
}

struct data_case {
	const char *text;
	int rc;
	int64_t bytes, count;
	size_t lines;
	bool partial;
};

static const struct data_case data_cases[] = {
	/* Courier pads to 12 columns; tabs and trailing blanks pass. */
	{ "1S\n        1234            5\n", 0, 1234, 5, 1, false },
	{ "1S\n7\t2 \n-3 -1\t\n", 0, 4, 1, 2, false },
	{ "1S\n", 0, 0, 0, 0, false },
	/* A last line without a newline counts when it is complete. */
	{ "1S\n5 1\n7 1", 0, 12, 2, 2, false },
	{ "1S\n5 1\n7 1  ", 0, 12, 2, 2, false },
	/* The start of a line still being appended is left out. */
	{ "1S\n5 1\n7", 0, 5, 1, 1, true },
	{ "1S\n5 1\n-", 0, 5, 1, 1, true },
	{ "1S\n5 1\n7 ", 0, 5, 1, 1, true },
	{ "1S\n5 1\n7 -", 0, 5, 1, 1, true },
	{ "1S\n5 1\n ", 0, 5, 1, 1, true },
	{ "1S\n9223372036854775807 1\n", 0, INT64_MAX, 1, 1, false },
	/* Garbage. */
	{ "1S\n5 1\nx", -1, 0, 0, 0, false },
	{ "1S\n5\n", -1, 0, 0, 0, false },
	{ "1S\n5 \n", -1, 0, 0, 0, false },
	{ "1S\n5 -\n", -1, 0, 0, 0, false },
	{ "1S\n1 2 3\n", -1, 0, 0, 0, false },
	{ "1S\n1 2x\n", -1, 0, 0, 0, false },
	{ "1S\n--1 1\n", -1, 0, 0, 0, false },
	{ "1S\n1-1 1\n", -1, 0, 0, 0, false },
	{ "1S\n1,1\n", -1, 0, 0, 0, false },
	{ "1S\n\n5 1\n", -1, 0, 0, 0, false },
	{ "1S\n5 1\r\n", -1, 0, 0, 0, false },
	{ "1S\nabc\n", -1, 0, 0, 0, false },
	{ "", -1, 0, 0, 0, false },
	/* Sums that overflow, or end below zero. */
	{ "1S\n9223372036854775808 1\n", -1, 0, 0, 0, false },
	{ "1S\n9223372036854775807 1\n1 0\n", -1, 0, 0, 0, false },
	{ "1S\n-9223372036854775808 -1\n-1 0\n", -1, 0, 0, 0, false },
	{ "1S\n5 1\n-6 -1\n", -1, 0, 0, 0, false },
	{ "1S\n5 1\n-5 -2\n", -1, 0, 0, 0, false },
};

static void
test_maildirsize_parse_data_lines(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		struct mk_maildirsize ms;
		struct mk_err err;

		print_message("'%s'\n", c->text);
		assert_int_equal(
		    mk_maildirsize_parse(c->text, strlen(c->text), &ms, &err),
		    c->rc);
		if (c->rc < 0) {
			assert_non_null(strstr(err.msg, "maildirsize: "));
			continue;
		}
		assert_true(ms.bytes == c->bytes);
		assert_true(ms.count == c->count);
		assert_int_equal(ms.lines, c->lines);
		assert_int_equal(ms.partial, c->partial);
		assert_int_equal(ms.size, strlen(c->text));
	}
}

static void
test_maildirsize_parse_rejects_nul(void **state)
{
	static const char text[] = "1S\n5\0 1\n";
	struct mk_maildirsize ms;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_maildirsize_parse(text, sizeof(text) - 1, &ms, &err), -1);
	assert_non_null(strstr(err.msg, "NUL"));
}

static struct mk_maildirsize
ms_file(uint64_t bytes_limit, int64_t bytes, size_t lines, size_t size,
    int64_t mtime)
{
	struct mk_maildirsize ms;

	memset(&ms, 0, sizeof(ms));
	ms.bytes_limit = bytes_limit;
	ms.bytes = bytes;
	ms.lines = lines;
	ms.size = size;
	ms.mtime = mtime;
	return ms;
}

static void
test_maildirsize_rebuild_rules(void **state)
{
	struct mk_maildirsize ms;

	(void)state;
	assert_int_equal(mk_maildirsize_rebuild_due(NULL, false, 10, 0, 0),
	    MK_MAILDIRSIZE_MISSING);
	ms = ms_file(10, 5, 1, 5120, 0);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 0),
	    MK_MAILDIRSIZE_OVERSIZED);
	ms = ms_file(10, 5, 1, 5119, 0);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 0),
	    MK_MAILDIRSIZE_KEEP);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, true, 10, 0, 0),
	    MK_MAILDIRSIZE_CORRUPT);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 11, 0, 0),
	    MK_MAILDIRSIZE_LIMIT_CHANGED);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 3, 0),
	    MK_MAILDIRSIZE_LIMIT_CHANGED);
	/* At the limit is not over it. */
	ms = ms_file(10, 10, 5, 100, 0);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 9999),
	    MK_MAILDIRSIZE_KEEP);
	/* Over, with deltas: rebuild now. */
	ms = ms_file(10, 11, 2, 100, 1000);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 1000),
	    MK_MAILDIRSIZE_OVER_QUOTA);
	/* Over, one line: only once it is 15 minutes old. */
	ms = ms_file(10, 11, 1, 100, 1000);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 1899),
	    MK_MAILDIRSIZE_KEEP);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 1900),
	    MK_MAILDIRSIZE_OVER_QUOTA);
	/* A file from the future is not stale; extreme clocks do not wrap. */
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 10, 0, 999),
	    MK_MAILDIRSIZE_KEEP);
	ms.mtime = INT64_MIN;
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 10, 0, INT64_MAX),
	    MK_MAILDIRSIZE_OVER_QUOTA);
	ms.mtime = INT64_MAX;
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 10, 0, INT64_MIN),
	    MK_MAILDIRSIZE_KEEP);
	/* Over the message count. */
	ms = ms_file(0, 0, 2, 100, 0);
	ms.count_limit = 3;
	ms.count = 4;
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 0, 3, 0),
	    MK_MAILDIRSIZE_OVER_QUOTA);
	/* No limit: never over. */
	ms = ms_file(0, INT64_MAX, 40, 1000, 0);
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 0, 0, INT64_MAX),
	    MK_MAILDIRSIZE_KEEP);
	assert_string_equal(
	    mk_maildirsize_rebuild_name(MK_MAILDIRSIZE_OVER_QUOTA),
	    "over-quota");
	assert_string_equal(
	    mk_maildirsize_rebuild_name(MK_MAILDIRSIZE_LIMIT_CHANGED), "limit");
}

/* The observed file after the 11th message: over, but fresh and short. */
static void
test_maildirsize_rebuild_observed(void **state)
{
	struct mk_maildirsize ms = ms_parse_ok("10485760S\n10496850 30\n");

	(void)state;
	ms.mtime = 5000;
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 10485760, 0, 5000),
	    MK_MAILDIRSIZE_KEEP);
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 10485760, 0, 5900),
	    MK_MAILDIRSIZE_OVER_QUOTA);
	/* A Dovecot rule of 20 MiB that the file's header does not show. */
	assert_int_equal(
	    mk_maildirsize_rebuild_due(&ms, false, 20971520, 0, 5000),
	    MK_MAILDIRSIZE_LIMIT_CHANGED);
}

static void
test_maildirsize_format(void **state)
{
	char buf[MK_MAILDIRSIZE_FORMAT_MAX];
	struct mk_maildirsize ms;
	struct mk_err err;
	size_t n;

	(void)state;
	n = mk_maildirsize_format(10485760, 0, 10496850, 30, buf, sizeof(buf));
	assert_string_equal(buf, "10485760S\n10496850 30\n");
	assert_int_equal(n, strlen(buf));
	mk_maildirsize_format(0, 0, 0, 0, buf, sizeof(buf));
	assert_string_equal(buf, "0S\n0 0\n");
	mk_maildirsize_format(10, 5, 1, 2, buf, sizeof(buf));
	assert_string_equal(buf, "10S,5C\n1 2\n");
	mk_maildirsize_format(0, 5, 1, 2, buf, sizeof(buf));
	assert_string_equal(buf, "5C\n1 2\n");
	n = mk_maildirsize_format(
	    UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf,
	    "18446744073709551615S,18446744073709551615C\n"
	    "9223372036854775807 9223372036854775807\n");
	assert_true(n < MK_MAILDIRSIZE_FORMAT_MAX);
	/* What we write, we read back. */
	assert_int_equal(mk_maildirsize_parse(buf, n, &ms, &err), 0);
	assert_true(
	    ms.bytes_limit == UINT64_MAX && ms.count_limit == UINT64_MAX);
	assert_true(ms.bytes == INT64_MAX && ms.count == INT64_MAX);
	/* Too small a buffer: truncated, and the length tells. */
	n = mk_maildirsize_format(10485760, 0, 10496850, 30, buf, 8);
	assert_int_equal(n, strlen("10485760S\n10496850 30\n"));
	assert_int_equal(strlen(buf), 7);
}

static char *ms_dir;
static int ms_fd = -1;

static int
ms_setup(void **state)
{
	(void)state;
	ms_dir = fx_tmpdir();
	fx_maildir(ms_dir, "Maildir");
	ms_fd = open(fx_path(ms_dir, "Maildir"), O_RDONLY | O_DIRECTORY);
	assert_true(ms_fd >= 0);
	return 0;
}

static int
ms_teardown(void **state)
{
	(void)state;
	close(ms_fd);
	fx_rmrf(ms_dir);
	free(ms_dir);
	return 0;
}

/* The number of entries in dir/rel other than "." and "..". */
static int
ms_count_entries(const char *rel)
{
	DIR *d = opendir(fx_path(ms_dir, rel));
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
ms_read_text(const char *rel, char *buf, size_t size)
{
	FILE *fp = fopen(fx_path(ms_dir, rel), "r");
	size_t n;

	assert_non_null(fp);
	n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

static void
test_maildirsize_write_read_append(void **state)
{
	char buf[MK_MAILDIRSIZE_FORMAT_MAX], text[256];
	struct mk_maildirsize ms;
	bool corrupt;
	struct mk_err err;
	struct stat st;
	size_t n;

	(void)state;
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), 0);
	assert_int_equal(mk_maildirsize_append(ms_fd, 5, 1, &err), 0);
	n = mk_maildirsize_format(10485760, 0, 1000, 2, buf, sizeof(buf));
	if (mk_maildirsize_write(ms_fd, buf, n, &err) < 0)
		fail_msg("%s", err.msg);
	ms_read_text("Maildir/maildirsize", text, sizeof(text));
	assert_string_equal(text, "10485760S\n1000 2\n");
	assert_int_equal(ms_count_entries("Maildir/tmp"), 0);
	assert_int_equal(mk_maildirsize_append(ms_fd, 6575, 1, &err), 1);
	assert_int_equal(mk_maildirsize_append(ms_fd, -1000, -1, &err), 1);
	ms_read_text("Maildir/maildirsize", text, sizeof(text));
	assert_string_equal(text, "10485760S\n1000 2\n6575 1\n-1000 -1\n");
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), 1);
	assert_false(corrupt);
	assert_true(ms.bytes == 6575 && ms.count == 2 && ms.lines == 3);
	assert_int_equal(ms.size, strlen(text));
	assert_int_equal(stat(fx_path(ms_dir, "Maildir/maildirsize"), &st), 0);
	assert_true(ms.mtime == (int64_t)st.st_mtim.tv_sec);
	/* A rewrite replaces the whole file. */
	n = mk_maildirsize_format(10485760, 0, 6575, 2, buf, sizeof(buf));
	assert_int_equal(mk_maildirsize_write(ms_fd, buf, n, &err), 0);
	ms_read_text("Maildir/maildirsize", text, sizeof(text));
	assert_string_equal(text, "10485760S\n6575 2\n");
}

/* The file gets the Maildir's owner, and its mode without execute bits. */
static void
test_maildirsize_write_takes_owner_and_mode(void **state)
{
	struct mk_err err;
	struct stat st;

	(void)state;
	if (geteuid() != 0)
		skip();
	assert_int_equal(chown(fx_path(ms_dir, "Maildir"), 5000, 5001), 0);
	assert_int_equal(chmod(fx_path(ms_dir, "Maildir"), 0770), 0);
	assert_int_equal(mk_maildirsize_write(ms_fd, "0S\n0 0\n", 7, &err), 0);
	assert_int_equal(stat(fx_path(ms_dir, "Maildir/maildirsize"), &st), 0);
	assert_int_equal(st.st_uid, 5000);
	assert_int_equal(st.st_gid, 5001);
	assert_int_equal(st.st_mode & 07777, 0660);
	assert_int_equal(chmod(fx_path(ms_dir, "Maildir"), 0700), 0);
	assert_int_equal(mk_maildirsize_write(ms_fd, "0S\n0 0\n", 7, &err), 0);
	assert_int_equal(stat(fx_path(ms_dir, "Maildir/maildirsize"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
}

/* Without tmp/ the temporary file goes beside maildirsize. */
static void
test_maildirsize_write_without_tmp(void **state)
{
	char text[64];
	struct mk_err err;

	(void)state;
	assert_int_equal(rmdir(fx_path(ms_dir, "Maildir/tmp")), 0);
	assert_int_equal(mk_maildirsize_write(ms_fd, "5C\n1 1\n", 7, &err), 0);
	ms_read_text("Maildir/maildirsize", text, sizeof(text));
	assert_string_equal(text, "5C\n1 1\n");
	/* cur, new, maildirsize. */
	assert_int_equal(ms_count_entries("Maildir"), 3);
}

/* A failed rename leaves no temporary file behind. */
static void
test_maildirsize_write_failure_cleans_up(void **state)
{
	struct mk_err err;

	(void)state;
	fx_mkdirs(ms_dir, "Maildir/maildirsize/x");
	assert_int_equal(mk_maildirsize_write(ms_fd, "0S\n0 0\n", 7, &err), -1);
	assert_non_null(strstr(err.msg, "rename"));
	assert_int_equal(ms_count_entries("Maildir/tmp"), 0);
	/* A directory is not a maildirsize to read or append to. */
	{
		struct mk_maildirsize ms;
		bool corrupt;

		assert_int_equal(
		    mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), -1);
		assert_int_equal(mk_maildirsize_append(ms_fd, 1, 1, &err), -1);
	}
}

/* A symbolic link is neither read nor appended to, only replaced. */
static void
test_maildirsize_symlink_is_not_followed(void **state)
{
	struct mk_maildirsize ms;
	char text[64];
	bool corrupt;
	struct mk_err err;
	struct stat st;

	(void)state;
	fx_write(ms_dir, "target", "1S\n0 0\n");
	assert_int_equal(symlink(fx_path(ms_dir, "target"),
			     fx_path(ms_dir, "Maildir/maildirsize")),
	    0);
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_int_equal(mk_maildirsize_append(ms_fd, 1, 1, &err), -1);
	assert_int_equal(mk_maildirsize_write(ms_fd, "2S\n0 0\n", 7, &err), 0);
	ms_read_text("target", text, sizeof(text));
	assert_string_equal(text, "1S\n0 0\n");
	assert_int_equal(lstat(fx_path(ms_dir, "Maildir/maildirsize"), &st), 0);
	assert_true(S_ISREG(st.st_mode));
}

static void
test_maildirsize_read_oversized_and_corrupt(void **state)
{
	struct mk_maildirsize ms;
	bool corrupt;
	struct mk_err err;
	char *big;
	size_t i;

	(void)state;
	/* 1000 lines of "1 1\n" after the limit: 4004 bytes, still read. */
	big = malloc(8192);
	assert_non_null(big);
	strcpy(big, "1000S\n");
	for (i = 0; i < 1000; i++)
		strcat(big, "1 1\n");
	fx_write(ms_dir, "Maildir/maildirsize", big);
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), 1);
	assert_false(corrupt);
	assert_true(ms.bytes == 1000 && ms.count == 1000);
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 1000, 0, 0),
	    MK_MAILDIRSIZE_KEEP);
	/* 1500 lines: 6006 bytes, not parsed, rebuilt. */
	for (i = 0; i < 500; i++)
		strcat(big, "1 1\n");
	fx_write(ms_dir, "Maildir/maildirsize", big);
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), 1);
	assert_false(corrupt);
	assert_int_equal(ms.size, strlen(big));
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, false, 1000, 0, 0),
	    MK_MAILDIRSIZE_OVERSIZED);
	free(big);
	fx_write(ms_dir, "Maildir/maildirsize", "10S\nnot numbers\n");
	assert_int_equal(mk_maildirsize_read(ms_fd, &ms, &corrupt, &err), 1);
	assert_true(corrupt);
	assert_non_null(strstr(err.msg, "line 2"));
	assert_int_equal(mk_maildirsize_rebuild_due(&ms, corrupt, 10, 0, 0),
	    MK_MAILDIRSIZE_CORRUPT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maildirsize_parse_observed_dovecot_log),
		cmocka_unit_test(test_maildirsize_parse_limit_line),
		cmocka_unit_test(test_maildirsize_parse_data_lines),
		cmocka_unit_test(test_maildirsize_parse_rejects_nul),
		cmocka_unit_test(test_maildirsize_rebuild_rules),
		cmocka_unit_test(test_maildirsize_rebuild_observed),
		cmocka_unit_test(test_maildirsize_format),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_write_read_append, ms_setup, ms_teardown),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_write_takes_owner_and_mode, ms_setup,
		    ms_teardown),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_write_without_tmp, ms_setup, ms_teardown),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_write_failure_cleans_up, ms_setup,
		    ms_teardown),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_symlink_is_not_followed, ms_setup,
		    ms_teardown),
		cmocka_unit_test_setup_teardown(
		    test_maildirsize_read_oversized_and_corrupt, ms_setup,
		    ms_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
