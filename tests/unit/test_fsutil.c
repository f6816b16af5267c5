#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "mailkeep/fsutil.h"

struct beneath_case {
	const char *path;
	const char *root;
	bool beneath;
};

static const struct beneath_case beneath_cases[] = {
	{ "/srv/r/x", "/srv/r", true },
	{ "/srv/r/x/y.mbox", "/srv/r/", true },
	{ "/x", "/", true },
	{ "/srv/r", "/srv/r", false },
	{ "/srv/r/", "/srv/r", false },
	{ "/srv/rx", "/srv/r", false },
	{ "/srv/x", "/srv/r", false },
	{ "srv/r/x", "/srv/r", false },
	{ "/srv/r/x", "srv/r", false },
	{ "/srv/r/../x", "/srv/r", false },
	{ "/srv/r/x/..", "/srv/r", false },
	{ "/srv/r/./x", "/srv/r", false },
	{ "/srv/r/x/.", "/srv/r", false },
	{ "/srv/r//x", "/srv/r", false },
	{ "/srv/r/x/", "/srv/r", false },
	{ "/srv/r/..x", "/srv/r", true },
	{ "/", "/", false },
};

static void
test_fsutil_path_beneath_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(beneath_cases) / sizeof(beneath_cases[0]); i++) {
		print_message("'%s' beneath '%s'\n", beneath_cases[i].path,
		    beneath_cases[i].root);
		assert_int_equal(mk_fs_path_beneath(beneath_cases[i].path,
				     beneath_cases[i].root),
		    beneath_cases[i].beneath);
	}
}

/* A file read whole; a FIFO or a directory in its place is refused at
 * once (a FIFO with no writer would block a plain open()). */
static void
test_fsutil_read_file(void **state)
{
	char *dir = fx_tmpdir(), *data = NULL;
	struct mk_err err;
	size_t len = 0;

	(void)state;
	fx_write(dir, "aliases", "a@x b@x\n");
	assert_int_equal(
	    mk_fs_read_file(fx_path(dir, "aliases"), 100, &data, &len, &err),
	    0);
	assert_int_equal(len, 8);
	assert_memory_equal(data, "a@x b@x\n", 8);
	free(data);
	assert_int_equal(
	    mk_fs_read_file(fx_path(dir, "aliases"), 7, &data, &len, &err), -1);
	assert_non_null(strstr(err.msg, "larger than 7 bytes"));
	assert_int_equal(mkfifo(fx_path(dir, "fifo"), 0600), 0);
	assert_int_equal(
	    mk_fs_read_file(fx_path(dir, "fifo"), 100, &data, &len, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_int_equal(mk_fs_read_file(dir, 100, &data, &len, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file"));
	assert_null(data);
	fx_rmrf(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fsutil_path_beneath_table),
		cmocka_unit_test(test_fsutil_read_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
