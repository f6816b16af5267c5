#include <stdbool.h>

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fsutil_path_beneath_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
