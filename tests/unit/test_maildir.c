#include <string.h>

#include "fixture.h"
#include "mailkeep/maildir.h"

struct name_case {
	const char *name;
	int rc;
	size_t base_len;
	int has_size;
	uint64_t size;
	int has_vsize;
	uint64_t vsize;
	const char *flags;
};

static const struct name_case name_cases[] = {
	/* Dovecot's usual names. */
	{ "1795695336.M904051P10843.vm,S=6575,W=6661", 0, 27, 1, 6575, 1, 6661,
	    "" },
	{ "1795695337.M84471P10843.vm,S=27434,W=27769:2,FSab", 0, 26, 1, 27434,
	    1, 27769, "FSab" },
	{ "1.M1P1.h,S=0,W=0:2,", 0, 8, 1, 0, 1, 0, "" },
	{ "1.M1P1.h,S=1:2,S", 0, 8, 1, 1, 0, 0, "S" },
	/* Courier, without sizes. */
	{ "1204680122.27c448a6.host:2,S", 0, 24, 0, 0, 0, 0, "S" },
	{ "1204680122.27c448a6.host", 0, 24, 0, 0, 0, 0, "" },
	/* The largest size, and one past it. */
	{ "a,S=18446744073709551615", 0, 1, 1, UINT64_MAX, 0, 0, "" },
	{ "a,S=18446744073709551616", -1, 1, 0, 0, 0, 0, "" },
	{ "a,S=99999999999999999999999", -1, 1, 0, 0, 0, 0, "" },
	/* Unknown fields are skipped; W before S is fine. */
	{ "a,X=1,W=10,S=9:2,S", 0, 1, 1, 9, 1, 10, "S" },
	/* Malformed: empty base, empty or non-digit sizes, bad info. */
	{ ",S=10", -1, 0, 1, 10, 0, 0, "" },
	{ ":2,S", -1, 0, 0, 0, 0, 0, "S" },
	{ "a,S=", -1, 1, 0, 0, 0, 0, "" },
	{ "a,S=12x,W=20", -1, 1, 0, 0, 1, 20, "" },
	{ "a,S=-1", -1, 1, 0, 0, 0, 0, "" },
	{ "a:1,S", -1, 1, 0, 0, 0, 0, "" },
	{ "a:2,S1", -1, 1, 0, 0, 0, 0, "" },
	{ "a:2,abcdefghijklmnopqrstuvwxyzABCDEFG", -1, 1, 0, 0, 0, 0, "" },
	{ "", -1, 0, 0, 0, 0, 0, "" },
};

static void
test_maildir_name_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		const struct name_case *c = &name_cases[i];
		struct mk_maildir_name mn;
		struct mk_err err;
		int rc;

		rc = mk_maildir_name_parse(c->name, &mn, &err);
		print_message("%s\n", c->name);
		assert_int_equal(rc, c->rc);
		assert_int_equal(mn.base_len, c->base_len);
		assert_int_equal(mn.has_size, c->has_size);
		if (c->has_size)
			assert_true(mn.size == c->size);
		assert_int_equal(mn.has_vsize, c->has_vsize);
		if (c->has_vsize)
			assert_true(mn.vsize == c->vsize);
		if (rc == 0)
			assert_string_equal(mn.flags, c->flags);
		else
			assert_true(strlen(err.msg) > 0);
	}
}

static void
test_maildir_hidden_names_are_not_messages(void **state)
{
	(void)state;
	assert_int_equal(mk_maildir_classify(".nfs0001"), MK_MAILDIR_HIDDEN);
	assert_int_equal(mk_maildir_classify("."), MK_MAILDIR_HIDDEN);
	assert_int_equal(mk_maildir_classify("1.M2.h,S=3"), MK_MAILDIR_MESSAGE);
}

static void
test_maildir_folder_dirs(void **state)
{
	(void)state;
	assert_true(mk_maildir_is_folder_dir(".Sent"));
	assert_true(mk_maildir_is_folder_dir(".Archive.2024"));
	assert_false(mk_maildir_is_folder_dir("."));
	assert_false(mk_maildir_is_folder_dir(".."));
	assert_false(mk_maildir_is_folder_dir("..DOVECOT-TRASHED"));
	assert_false(mk_maildir_is_folder_dir(".A..B"));
	assert_false(mk_maildir_is_folder_dir(".A."));
	assert_false(mk_maildir_is_folder_dir("cur"));
	assert_false(mk_maildir_is_folder_dir("dovecot-uidlist"));
}

struct folder_case {
	const char *dir;
	char sep;
	const char *name;
	int rc;
};

static const struct folder_case folder_cases[] = {
	{ "", '/', "INBOX", 0 },
	{ ".Sent", '/', "Sent", 0 },
	{ ".Archive.2024", '/', "Archive/2024", 0 },
	{ ".Archive.2024", '.', "Archive.2024", 0 },
	{ ".Entw&APw-rfe", '/', "Entw\xc3\xbcrfe", 0 },
	{ ".&-", '/', "&", 0 },
	{ ".Tom &- Jerry", '/', "Tom & Jerry", 0 },
	/* U+1F600 as a surrogate pair. */
	{ ".&2D3eAA-", '/', "\xf0\x9f\x98\x80", 0 },
	/* Japanese, from RFC 3501. */
	{ ".&ZeVnLIqe-", '/', "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 0 },
	/* Invalid: unterminated, encoded ASCII, lone surrogate, raw 8 bit. */
	{ ".Bad&APw", '/', "Bad&APw", -1 },
	{ ".&AGE-", '/', "&AGE-", -1 },
	{ ".&2D0-", '/', "&2D0-", -1 },
	{ ".Caf\xc3\xa9", '/', "Caf??", -1 },
};

static void
test_maildir_folder_name_table(void **state)
{
	char buf[256], dir[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(folder_cases) / sizeof(folder_cases[0]); i++) {
		const struct folder_case *c = &folder_cases[i];
		struct mk_err err;

		print_message("%s\n", c->dir);
		assert_int_equal(
		    mk_maildir_folder_name(c->dir, c->sep, buf, sizeof(buf)),
		    c->rc);
		assert_string_equal(buf, c->name);
		if (c->rc < 0 || c->sep == '.')
			continue;
		/* The reverse gives the directory back. */
		assert_int_equal(mk_maildir_folder_dir(
				     c->name, c->sep, dir, sizeof(dir), &err),
		    0);
		assert_string_equal(dir, c->dir);
	}
}

static void
test_maildir_folder_dir_refuses_unsafe_names(void **state)
{
	static const char *bad[] = { "", "/", "a//b", "a/", "../x", "a.b",
		"x\ny", "\xff\xfe" };
	char buf[256];
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i]);
		assert_int_equal(
		    mk_maildir_folder_dir(bad[i], '/', buf, sizeof(buf), &err),
		    -1);
	}
	/* A name longer than one path component. */
	memset(buf, 'a', 255);
	buf[255] = '\0';
	{
		char out[512];

		assert_int_equal(
		    mk_maildir_folder_dir(buf, '/', out, sizeof(out), &err),
		    -1);
	}
}

static void
test_maildir_vsize_counts_bare_lf_twice(void **state)
{
	bool cr = false;

	(void)state;
	assert_true(mk_maildir_vsize_add("", 0, &cr) == 0);
	assert_true(mk_maildir_vsize_add("a\nb\n", 4, &cr) == 6);
	cr = false;
	assert_true(mk_maildir_vsize_add("a\r\nb\n", 5, &cr) == 6);
	/* A CR at the end of one chunk and the LF at the start of the next. */
	cr = false;
	assert_true(mk_maildir_vsize_add("a\r", 2, &cr) == 2);
	assert_true(cr);
	assert_true(mk_maildir_vsize_add("\nb", 2, &cr) == 2);
	cr = false;
	assert_true(mk_maildir_vsize_add("\n", 1, &cr) == 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maildir_name_table),
		cmocka_unit_test(test_maildir_hidden_names_are_not_messages),
		cmocka_unit_test(test_maildir_folder_dirs),
		cmocka_unit_test(test_maildir_folder_name_table),
		cmocka_unit_test(test_maildir_folder_dir_refuses_unsafe_names),
		cmocka_unit_test(test_maildir_vsize_counts_bare_lf_twice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
