#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/conf.h"

static char *conf_dir;

static int
conf_setup(void **state)
{
	(void)state;
	conf_dir = fx_tmpdir();
	return 0;
}

static int
conf_teardown(void **state)
{
	(void)state;
	fx_rmrf(conf_dir);
	free(conf_dir);
	return 0;
}

static void
test_conf_defaults(void **state)
{
	struct mk_conf *conf = mk_conf_new();

	(void)state;
	assert_string_equal(conf->store_root, "/var/vmail");
	assert_string_equal(conf->store_template, "%d/%n/Maildir");
	assert_int_equal(conf->hierarchy_separator, '/');
	assert_null(conf->catalog);
	mk_conf_free(&conf);
	assert_null(conf);
}

static void
test_conf_file_is_read(void **state)
{
	struct mk_conf_args args = { 0 };
	struct mk_conf *conf = NULL;
	struct mk_err err;

	(void)state;
	fx_write(conf_dir, "ok.conf",
	    "# a comment\n"
	    "; another\n"
	    "\n"
	    "[store]\n"
	    "root = /srv/mail   # trailing comment\n"
	    "template=%d/%n\n"
	    "hierarchy_separator = .\n"
	    "[general]\n"
	    "  state_dir = /srv/state\r\n");
	args.config = fx_path(conf_dir, "ok.conf");
	if (mk_conf_setup(&args, &conf, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(conf->store_root, "/srv/mail");
	assert_string_equal(conf->store_template, "%d/%n");
	assert_int_equal(conf->hierarchy_separator, '.');
	assert_string_equal(conf->state_dir, "/srv/state");
	assert_string_equal(conf->catalog, "/srv/state/catalog.db");
	mk_conf_free(&conf);
}

static void
test_conf_options_override_and_embedded_mode(void **state)
{
	struct mk_conf_args args = { 0 };
	struct mk_conf *conf = NULL;
	struct mk_err err;

	(void)state;
	args.store = "/data/store";
	args.state = "relative/state";
	assert_int_equal(mk_conf_setup(&args, &conf, &err), 0);
	assert_string_equal(conf->store_root, "/data/store");
	/* A relative option is made absolute. */
	assert_true(conf->state_dir[0] == '/');
	assert_non_null(strstr(conf->state_dir, "/relative/state"));
	mk_conf_free(&conf);
}

struct bad_case {
	const char *text;
	const char *expect; /* in the message, after "FILE:LINE: " */
	int line;
};

static const struct bad_case bad_cases[] = {
	{ "root = /x\n", "outside a [section]", 1 },
	{ "[store]\nroot /x\n", "expected 'key = value'", 2 },
	{ "[nope]\n", "unknown section [nope]", 1 },
	{ "[store\n", "bad section line", 1 },
	{ "[store]\nfoo = 1\n", "unknown key 'foo' in [store]", 2 },
	{ "[store]\nroot = relative\n", "not an absolute path", 2 },
	{ "[store]\nroot =\n", "not an absolute path", 2 },
	{ "[store]\ntemplate =\n", "empty value", 2 },
	{ "[store]\nroot = /a\nroot = /b\n", "given twice", 3 },
	{ "[store]\nhierarchy_separator = ::\n", "is not one of", 2 },
	{ "[store]\nhierarchy_separator = x\n", "is not one of", 2 },
};

static void
test_conf_bad_files_say_file_and_line(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct mk_conf *conf = mk_conf_new();
		char where[512];
		struct mk_err err;

		print_message("%s", bad_cases[i].text);
		fx_write(conf_dir, "bad.conf", bad_cases[i].text);
		assert_int_equal(
		    mk_conf_load(conf, fx_path(conf_dir, "bad.conf"), &err),
		    -1);
		snprintf(where, sizeof(where),
		    "%s:%d: ", fx_path(conf_dir, "bad.conf"),
		    bad_cases[i].line);
		assert_true(strncmp(err.msg, where, strlen(where)) == 0);
		assert_non_null(strstr(err.msg, bad_cases[i].expect));
		mk_conf_free(&conf);
	}
}

static void
test_conf_bad_template_is_refused(void **state)
{
	struct mk_conf_args args = { 0 };
	struct mk_conf *conf = NULL;
	struct mk_err err;

	(void)state;
	fx_write(conf_dir, "tmpl.conf", "[store]\ntemplate = %d/%x\n");
	args.config = fx_path(conf_dir, "tmpl.conf");
	assert_int_equal(mk_conf_setup(&args, &conf, &err), -1);
	assert_non_null(strstr(err.msg, "unsupported variable '%x'"));
	assert_null(conf);
}

static void
test_conf_overlong_line_and_missing_file(void **state)
{
	struct mk_conf *conf = mk_conf_new();
	struct mk_err err;
	char *big = malloc(10000);

	(void)state;
	memset(big, 'a', 9999);
	big[9999] = '\0';
	fx_write(conf_dir, "long.conf", big);
	assert_int_equal(
	    mk_conf_load(conf, fx_path(conf_dir, "long.conf"), &err), -1);
	assert_non_null(strstr(err.msg, "longer than"));
	assert_int_equal(
	    mk_conf_load(conf, fx_path(conf_dir, "none.conf"), &err), -1);
	assert_non_null(strstr(err.msg, "No such file"));
	free(big);
	mk_conf_free(&conf);
}

/* [backup] lock_wait: a duration from 0 (fail at once) to 7 days. */
static void
test_conf_backup_lock_wait(void **state)
{
	static const struct {
		const char *value;
		int rc;
		uint64_t seconds;
	} cases[] = {
		{ "0", 0, 0 },
		{ "1", 0, 1 },
		{ "90m", 0, 5400 },
		{ "7d", 0, 604800 },
		{ "604801", -1, 0 },
		{ "8d", -1, 0 },
		{ "soon", -1, 0 },
		{ "-1s", -1, 0 },
	};
	struct mk_conf *conf = mk_conf_new();
	struct mk_err err;
	char text[128];
	size_t i;

	(void)state;
	assert_int_equal(conf->backup_lock_wait, 3600);
	mk_conf_free(&conf);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		conf = mk_conf_new();
		snprintf(text, sizeof(text), "[backup]\nlock_wait = %s\n",
		    cases[i].value);
		fx_write(conf_dir, "wait.conf", text);
		print_message("lock_wait = %s\n", cases[i].value);
		assert_int_equal(
		    mk_conf_load(conf, fx_path(conf_dir, "wait.conf"), &err),
		    cases[i].rc);
		if (cases[i].rc == 0)
			assert_int_equal(
			    conf->backup_lock_wait, cases[i].seconds);
		else
			assert_non_null(strstr(err.msg, "lock_wait"));
		mk_conf_free(&conf);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conf_defaults),
		cmocka_unit_test(test_conf_file_is_read),
		cmocka_unit_test(test_conf_options_override_and_embedded_mode),
		cmocka_unit_test(test_conf_bad_files_say_file_and_line),
		cmocka_unit_test(test_conf_bad_template_is_refused),
		cmocka_unit_test(test_conf_overlong_line_and_missing_file),
		cmocka_unit_test(test_conf_backup_lock_wait),
	};

	return cmocka_run_group_tests(tests, conf_setup, conf_teardown);
}
