#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/store.h"

struct tmpl_case {
	const char *tmpl;
	int rc;
};

static const struct tmpl_case tmpl_cases[] = {
	{ "%d/%n/Maildir", 0 },
	{ "%d/%n", 0 },
	{ "%u/Maildir", 0 },
	{ "%Ld/%Ln/Maildir", 0 },
	{ "mail/%d/user-%n.box/Maildir", 0 },
	{ "%d/Maildir", -1 }, /* no local part */
	{ "%n/Maildir", -1 }, /* no domain */
	{ "%d/%n/%d", -1 }, /* twice */
	{ "%d/%n%d", -1 }, /* two in one component */
	{ "%d/%x/Maildir", -1 },
	{ "%d/%n/%", -1 },
	{ "/abs/%d/%n", -1 },
	{ "", -1 },
	{ "%d/../%n", -1 },
	{ "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/%u", -1 },
};

static void
test_store_template_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tmpl_cases) / sizeof(tmpl_cases[0]); i++) {
		struct mk_store *store = NULL;
		struct mk_err err;

		print_message("%s\n", tmpl_cases[i].tmpl);
		assert_int_equal(mk_store_new("/var/vmail", tmpl_cases[i].tmpl,
				     &store, &err),
		    tmpl_cases[i].rc);
		assert_true((store != NULL) == (tmpl_cases[i].rc == 0));
		mk_store_free(&store);
	}
}

struct path_case {
	const char *tmpl;
	const char *address;
	const char *path; /* NULL: refused */
};

static const struct path_case path_cases[] = {
	{ "%d/%n/Maildir", "Otto.Friedrich@HostEurope.de",
	    "hosteurope.de/otto.friedrich/Maildir" },
	{ "%u/Maildir", "a@b.c", "a@b.c/Maildir" },
	{ "x/%d/u-%n.m", "a@b.c", "x/b.c/u-a.m" },
	{ "%d/%n/Maildir", "plain", NULL },
	{ "%d/%n/Maildir", "@b.c", NULL },
	{ "%d/%n/Maildir", "a@", NULL },
	{ "%d/%n/Maildir", "a/b@c.d", NULL },
	{ "%d/%n/Maildir", "..@c.d", NULL },
	{ "%d/%n/Maildir", "a@..", NULL },
	{ "%d/%n/Maildir", ".hidden@c.d", NULL },
	{ "%u/Maildir", "..", NULL },
};

static void
test_store_mailbox_path_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		struct mk_store *store = NULL;
		struct mk_err err;
		char buf[256];
		int rc;

		print_message("%s %s\n", c->tmpl, c->address);
		assert_int_equal(mk_store_new("/r", c->tmpl, &store, &err), 0);
		rc = mk_store_mailbox_path(
		    store, c->address, buf, sizeof(buf), &err);
		if (c->path == NULL)
			assert_int_equal(rc, -1);
		else {
			assert_int_equal(rc, 0);
			assert_string_equal(buf, c->path);
		}
		mk_store_free(&store);
	}
}

static void
test_store_list_walks_template_and_skips_symlinks(void **state)
{
	struct mk_store_list *list = NULL;
	struct mk_store *store = NULL;
	struct mk_err err;
	char *root = fx_tmpdir();

	(void)state;
	fx_maildir(root, "b.de/zed/Maildir");
	fx_maildir(root, "a.de/Otto/Maildir");
	fx_maildir(root, "a.de/anna/Maildir");
	/* A user directory without a Maildir is no mailbox. */
	fx_mkdirs(root, "a.de/nomail");
	/* Hidden directories and plain files are passed over. */
	fx_maildir(root, ".snapshot/x/Maildir");
	fx_write(root, "a.de/file", "x");
	/* A symlinked user and a symlinked Maildir are not followed. */
	fx_maildir(root, "outside/Maildir");
	assert_int_equal(
	    symlink(fx_path(root, "outside"), fx_path(root, "a.de/evil")), 0);
	fx_mkdirs(root, "b.de/link");
	assert_int_equal(symlink(fx_path(root, "outside/Maildir"),
			     fx_path(root, "b.de/link/Maildir")),
	    0);

	assert_int_equal(mk_store_new(root, "%d/%n/Maildir", &store, &err), 0);
	assert_int_equal(mk_store_list(store, &list, &err), 0);
	assert_int_equal(list->count, 3);
	assert_string_equal(list->mailboxes[0].address, "anna@a.de");
	assert_string_equal(list->mailboxes[1].address, "otto@a.de");
	assert_string_equal(list->mailboxes[1].relpath, "a.de/Otto/Maildir");
	assert_string_equal(list->mailboxes[2].address, "zed@b.de");
	assert_int_equal(list->warnings.count, 2);
	assert_non_null(strstr(list->warnings.first, "symbolic link"));
	mk_store_list_free(&list);
	mk_store_free(&store);
	fx_rmrf(root);
	free(root);
}

static void
test_store_list_same_address_twice_is_reported(void **state)
{
	struct mk_store_list *list = NULL;
	struct mk_store *store = NULL;
	struct mk_err err;
	char *root = fx_tmpdir();

	(void)state;
	fx_maildir(root, "a.de/otto/Maildir");
	fx_maildir(root, "a.de/OTTO/Maildir");
	assert_int_equal(mk_store_new(root, "%d/%n/Maildir", &store, &err), 0);
	assert_int_equal(mk_store_list(store, &list, &err), 0);
	assert_int_equal(list->count, 1);
	assert_int_equal(list->warnings.count, 1);
	assert_non_null(strstr(list->warnings.first, "same address"));
	mk_store_list_free(&list);
	mk_store_free(&store);
	fx_rmrf(root);
	free(root);
}

static void
test_store_missing_root_is_an_error(void **state)
{
	struct mk_store_list *list = NULL;
	struct mk_store *store = NULL;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_store_new("/nonexistent/mk", "%u", &store, &err), 0);
	assert_int_equal(mk_store_list(store, &list, &err), -1);
	assert_null(list);
	assert_non_null(strstr(err.msg, "/nonexistent/mk"));
	mk_store_free(&store);
	assert_int_equal(mk_store_new("relative", "%u", &store, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_template_table),
		cmocka_unit_test(test_store_mailbox_path_table),
		cmocka_unit_test(
		    test_store_list_walks_template_and_skips_symlinks),
		cmocka_unit_test(
		    test_store_list_same_address_twice_is_reported),
		cmocka_unit_test(test_store_missing_root_is_an_error),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
