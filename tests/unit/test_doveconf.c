#include <stdio.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/conf.h"
#include "mailkeep/doveconf.h"

/* Dovecot 2.3's doveconf -n, cut down. */
static const char dovecot23[] =
    "# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\n"
    "mail_home = /var/vmail/%d/%n\n"
    "mail_location = maildir:~/Maildir:LAYOUT=fs\n"
    "namespace inbox {\n"
    "  mailbox Trash {\n"
    "    special_use = \\Trash\n"
    "  }\n"
    "  quota = not-this-one\n"
    "}\n"
    "plugin {\n"
    "  quota = count:User quota\n"
    "  quota_grace = 10%%\n"
    "  quota_rule = *:storage=1G\n"
    "}\n";

/* Dovecot 2.4: a quota section, count by default. */
static const char dovecot24[] = "mail_driver = maildir\n"
				"quota_storage_grace = 10M\n"
				"quota \"User quota\" {\n"
				"  warning warn-95 {\n"
				"    quota_storage_percentage = 95\n"
				"  }\n"
				"}\n";

struct findings {
	size_t ok, warnings;
	char last[512];
};

static void
collect_cb(void *arg, bool warning, const char *msg)
{
	struct findings *f = arg;

	if (warning)
		f->warnings++;
	else
		f->ok++;
	snprintf(f->last, sizeof(f->last), "%s", msg);
}

static void
test_doveconf_parse_23(void **state)
{
	struct mk_doveconf dc;
	struct mk_conf *conf = mk_conf_new();
	struct findings f = { 0, 0, "" };
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_doveconf_parse(dovecot23, strlen(dovecot23), &dc, &err), 0);
	assert_string_equal(dc.mail_location, "maildir:~/Maildir:LAYOUT=fs");
	assert_string_equal(dc.mail_home, "/var/vmail/%d/%n");
	assert_string_equal(dc.quota, "count:User quota");
	assert_string_equal(dc.quota_rule, "*:storage=1G");
	assert_string_equal(dc.quota_grace, "10%%");
	assert_false(dc.quota_section);
	/* The defaults: /var/vmail, %d/%n/Maildir, physical, maildirsize,
	 * 10%, no default limit: ~ is the home, so the location agrees;
	 * count wants virtual and ignores maildirsize; the rule has no
	 * counterpart. */
	assert_int_equal(mk_doveconf_check(&dc, conf, collect_cb, &f), 3);
	assert_int_equal(f.ok, 2);
	mk_doveconf_clear(&dc);
	mk_conf_free(&conf);
}

static void
test_doveconf_parse_24(void **state)
{
	struct mk_doveconf dc;
	struct mk_conf *conf = mk_conf_new();
	struct findings f = { 0, 0, "" };
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_doveconf_parse(dovecot24, strlen(dovecot24), &dc, &err), 0);
	assert_true(dc.quota_section);
	assert_null(dc.quota);
	assert_null(dc.mail_location);
	assert_string_equal(dc.quota_grace, "10M");
	/* No mail_location; count (the default) against physical and
	 * maildirsize; 10M against 10%. */
	assert_int_equal(mk_doveconf_check(&dc, conf, collect_cb, &f), 4);
	assert_non_null(strstr(f.last, "grace is 10M"));
	mk_doveconf_clear(&dc);
	mk_conf_free(&conf);
}

static void
test_doveconf_parse_unbalanced(void **state)
{
	static const char *const bad[] = { "plugin {\n  quota = maildir\n",
		"}\n", "a {\nb {\n}\n" };
	struct mk_doveconf dc;
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    mk_doveconf_parse(bad[i], strlen(bad[i]), &dc, &err), -1);
		assert_non_null(strstr(err.msg, "sections do not balance"));
		assert_null(dc.quota);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doveconf_parse_23),
		cmocka_unit_test(test_doveconf_parse_24),
		cmocka_unit_test(test_doveconf_parse_unbalanced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
