#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/warn.h"

#define DAY 86400

static void
test_warn_config_thresholds(void **state)
{
	static const char *const bad[] = { "", " , ", "90,80", "80,80", "0",
		"1001", "1,2,3,4,5,6,7,8,9", "80,x", "80.5", "-5", "5", NULL };
	struct mk_warn_config conf;
	const char *const *p;
	struct mk_err err;

	(void)state;
	mk_warn_config_init(&conf);
	assert_int_equal(conf.nthresholds, 3);
	assert_int_equal(conf.thresholds[2], 100);
	assert_int_equal(conf.margin, 5);
	assert_true(conf.repeat == DAY);
	assert_int_equal(
	    mk_warn_config_set_thresholds(&conf, "50 75,\t95", &err), 0);
	assert_int_equal(conf.nthresholds, 3);
	assert_int_equal(conf.thresholds[1], 75);
	assert_int_equal(mk_warn_config_set_thresholds(
			     &conf, "6,20,30,40,50,60,70,1000", &err),
	    0);
	for (p = bad; *p != NULL; p++) {
		print_message("'%s'\n", *p);
		assert_int_equal(
		    mk_warn_config_set_thresholds(&conf, *p, &err), -1);
		assert_non_null(strstr(err.msg, "thresholds"));
	}
	/* A failed call changes nothing. */
	assert_int_equal(conf.nthresholds, 8);
	assert_int_equal(mk_warn_config_set_margin(&conf, 6, &err), -1);
	assert_int_equal(mk_warn_config_set_margin(&conf, 0, &err), 0);
	assert_int_equal(mk_warn_config_set_thresholds(&conf, "1", &err), 0);
}

/* One update; returns the threshold warned about, or 0. */
static unsigned
step(const struct mk_warn_config *conf, struct mk_warn_state *s, uint64_t usage,
    uint64_t limit, int64_t now)
{
	unsigned t = 99;
	bool due = mk_warn_update(conf, s, usage, limit, now, &t);

	assert_int_equal(due, t != 0);
	return t;
}

static void
test_warn_crossing_hysteresis_and_repeat(void **state)
{
	struct mk_warn_config conf;
	struct mk_warn_state s = { 0 };

	(void)state;
	mk_warn_config_init(&conf);
	assert_int_equal(step(&conf, &s, 0, 1000, 0), 0);
	assert_int_equal(step(&conf, &s, 799, 1000, 10), 0);
	assert_int_equal(step(&conf, &s, 800, 1000, 20), 80);
	assert_int_equal(step(&conf, &s, 850, 1000, 30), 0);
	assert_int_equal(step(&conf, &s, 899, 1000, 40), 0);
	assert_int_equal(step(&conf, &s, 900, 1000, 50), 90);
	/* Wobbling around 90% does not warn again... */
	assert_int_equal(step(&conf, &s, 899, 1000, 60), 0);
	assert_int_equal(step(&conf, &s, 850, 1000, 70), 0);
	assert_int_equal(step(&conf, &s, 900, 1000, 80), 0);
	/* ...dropping below 85% re-arms 90. */
	assert_int_equal(step(&conf, &s, 849, 1000, 90), 0);
	assert_int_equal(s.nmarks, 1);
	assert_int_equal(step(&conf, &s, 900, 1000, 100), 90);
	/* The highest crossed threshold repeats after a day. */
	assert_int_equal(step(&conf, &s, 950, 1000, 100 + DAY - 1), 0);
	assert_int_equal(step(&conf, &s, 950, 1000, 100 + DAY), 90);
	assert_int_equal(step(&conf, &s, 950, 1000, 100 + DAY + 1), 0);
	/* A clock going back repeats nothing. */
	assert_int_equal(step(&conf, &s, 950, 1000, -5 * DAY), 0);
	/* Down below 75%: everything re-armed. */
	assert_int_equal(step(&conf, &s, 749, 1000, 200 + DAY), 0);
	assert_int_equal(s.nmarks, 0);
}

static void
test_warn_jumps_and_limits(void **state)
{
	struct mk_warn_config conf;
	struct mk_warn_state s = { 0 };
	char buf[MK_WARN_STATE_MAX];

	(void)state;
	mk_warn_config_init(&conf);
	/* 70% to 95%: one warning, about 90; 80 is marked too. */
	assert_int_equal(step(&conf, &s, 700, 1000, 0), 0);
	assert_int_equal(step(&conf, &s, 950, 1000, 5), 90);
	mk_warn_state_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "80@5 90@5");
	assert_int_equal(step(&conf, &s, 1000, 1000, 6), 100);
	/* 80% of 1001 is 800.8. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(step(&conf, &s, 800, 1001, 0), 0);
	assert_int_equal(step(&conf, &s, 801, 1001, 0), 80);
	/* Unlimited: no warnings, and the state is cleared. */
	assert_int_equal(step(&conf, &s, UINT64_MAX, 0, 1), 0);
	assert_int_equal(s.nmarks, 0);
	/* The top of the range does not overflow. */
	assert_int_equal(step(&conf, &s, UINT64_MAX, UINT64_MAX, 2), 100);
	memset(&s, 0, sizeof(s));
	assert_int_equal(step(&conf, &s, UINT64_MAX - 1, UINT64_MAX, 2), 90);
	assert_int_equal(
	    mk_warn_config_set_thresholds(&conf, "80,90,100,110", NULL), 0);
	assert_int_equal(step(&conf, &s, UINT64_MAX, UINT64_MAX, 3), 100);
	assert_int_equal(step(&conf, &s, UINT64_MAX, UINT64_MAX / 2, 4), 110);
}

/* Restored marks of thresholds no longer configured are dropped. */
static void
test_warn_state_restore_and_config_change(void **state)
{
	struct mk_warn_config conf;
	struct mk_warn_state s;
	struct mk_err err;
	char buf[MK_WARN_STATE_MAX];

	(void)state;
	mk_warn_config_init(&conf);
	conf.repeat = 0;
	assert_int_equal(mk_warn_state_parse("85@100 90@100", &s, &err), 0);
	assert_int_equal(step(&conf, &s, 920, 1000, 200), 0);
	mk_warn_state_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "80@200 90@100");
	/* Without repeats, only a new crossing warns. */
	assert_int_equal(step(&conf, &s, 920, 1000, 200 + 400 * DAY), 0);
	assert_int_equal(step(&conf, &s, 1000, 1000, 200 + 400 * DAY), 100);
}

static void
test_warn_state_format_parse(void **state)
{
	static const char *const bad[] = { "80", "80@", "x@1", "90@1 80@2",
		"80@1 80@2", "0@1", "1001@1", "80@1x", "80@-", "80@1,90@2",
		"80@99999999999999999999",
		"1@1 2@1 3@1 4@1 5@1 6@1 7@1 8@1 9@1", NULL };
	struct mk_warn_state s, back;
	const char *const *p;
	struct mk_err err;
	char buf[MK_WARN_STATE_MAX];
	size_t n;

	(void)state;
	assert_int_equal(
	    mk_warn_state_parse(
		"80@1764160000 90@-1 100@9223372036854775807", &s, &err),
	    0);
	assert_int_equal(s.nmarks, 3);
	assert_true(s.marks[1].warned_at == -1);
	n = mk_warn_state_format(&s, buf, sizeof(buf));
	assert_string_equal(buf, "80@1764160000 90@-1 100@9223372036854775807");
	assert_int_equal(n, strlen(buf));
	assert_int_equal(mk_warn_state_parse(buf, &back, &err), 0);
	assert_memory_equal(&s, &back, sizeof(s));
	assert_int_equal(mk_warn_state_parse("", &s, &err), 0);
	assert_int_equal(s.nmarks, 0);
	assert_int_equal(mk_warn_state_format(&s, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	for (p = bad; *p != NULL; p++) {
		print_message("'%s'\n", *p);
		assert_int_equal(mk_warn_state_parse(*p, &s, &err), -1);
	}
	/* Eight marks fit, and a short buffer says how long it would be. */
	assert_int_equal(mk_warn_state_parse("1@-9223372036854775807 "
					     "2@1 3@1 4@1 5@1 6@1 7@1 8@1",
			     &s, &err),
	    0);
	n = mk_warn_state_format(&s, buf, 10);
	assert_int_equal(n,
	    strlen("1@-9223372036854775807 2@1 3@1 4@1 5@1 "
		   "6@1 7@1 8@1"));
	assert_int_equal(strlen(buf), 9);
}

static void
test_warn_percent(void **state)
{
	(void)state;
	assert_int_equal(mk_warn_percent(0, 0), 0);
	assert_int_equal(mk_warn_percent(UINT64_MAX, 0), 0);
	assert_int_equal(mk_warn_percent(0, 1000), 0);
	assert_int_equal(mk_warn_percent(999, 1000), 99);
	assert_int_equal(mk_warn_percent(1000, 1000), 100);
	assert_int_equal(mk_warn_percent(5, 7), 71);
	assert_int_equal(mk_warn_percent(10496850, 10485760), 100);
	assert_int_equal(mk_warn_percent(UINT64_MAX, UINT64_MAX), 100);
	assert_int_equal(mk_warn_percent(UINT64_MAX - 1, UINT64_MAX), 99);
	assert_int_equal(mk_warn_percent(UINT64_MAX, 1), 99999);
}

static const char template_text[] =
    "Subject: Mailbox %{address} is %{percent}% full\n"
    "\n"
    "Hello,\n"
    "\n"
    "your mailbox %{address} holds %{usage} of %{limit} (%{percent}%),\n"
    "past the %{threshold}% threshold. %{unknown} and %{ stay, 100%.\n";

static struct mk_warn_message
message(void)
{
	struct mk_warn_message m;

	memset(&m, 0, sizeof(m));
	m.from = "Mail System <postmaster@hosteurope.de>";
	m.to = "otto.friedrich@hosteurope.de";
	m.hostname = "mx.hosteurope.de";
	m.unique = "0123abcd";
	m.date = 1764160000;
	m.usage = 10496850;
	m.limit = 10485760;
	m.threshold = 100;
	return m;
}

static char *
render(const char *tmpl, size_t len, const struct mk_warn_message *m)
{
	struct mk_err err;
	char *msg = NULL;
	size_t n;

	if (mk_warn_render(tmpl, len, m, &msg, &n, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, strlen(msg));
	return msg;
}

static void
test_warn_render_message(void **state)
{
	struct mk_warn_message m = message();
	char *msg;

	(void)state;
	msg = render(template_text, strlen(template_text), &m);
	assert_string_equal(msg,
	    "Date: Wed, 26 Nov 2025 12:26:40 +0000\n"
	    "From: Mail System <postmaster@hosteurope.de>\n"
	    "To: otto.friedrich@hosteurope.de\n"
	    "Subject: Mailbox otto.friedrich@hosteurope.de is 100% full\n"
	    "Message-ID: <mailkeep.1764160000.0123abcd@mx.hosteurope.de>\n"
	    "MIME-Version: 1.0\n"
	    "Content-Type: text/plain; charset=utf-8\n"
	    "Content-Transfer-Encoding: 7bit\n"
	    "Auto-Submitted: auto-generated\n"
	    "\n"
	    "Hello,\n"
	    "\n"
	    "your mailbox otto.friedrich@hosteurope.de holds 10.0 MiB of "
	    "10.0 MiB (100%),\n"
	    "past the 100% threshold. %{unknown} and %{ stay, 100%.\n");
	free(msg);
}

/* No Subject line: the default subject, all of it is body; CRLF -> LF. */
static void
test_warn_render_default_subject_and_crlf(void **state)
{
	static const char tmpl[] = "Dear %{address},\r\n"
				   "\r\n"
				   "you are at %{percent}%.";
	struct mk_warn_message m = message();
	char *msg, *body;

	(void)state;
	m.usage = 9 * 1048576;
	m.threshold = 80;
	msg = render(tmpl, strlen(tmpl), &m);
	assert_non_null(strstr(msg, "\nSubject: Your mailbox is 90% full\n"));
	body = strstr(msg, "\n\n");
	assert_non_null(body);
	assert_string_equal(body + 2,
	    "Dear otto.friedrich@hosteurope.de,\n"
	    "\n"
	    "you are at 90%.\n");
	assert_null(strchr(msg, '\r'));
	free(msg);
	/* An empty template still makes a message. */
	msg = render("", 0, &m);
	assert_non_null(strstr(msg, "Auto-Submitted: auto-generated\n\n"));
	free(msg);
}

static void
test_warn_render_utf8_subject_and_body(void **state)
{
	static const char tmpl[] =
	    "subject:Postfach zu %{percent}% voll \xe2\x80\x93 bitte "
	    "aufr\xc3\xa4umen, Otto Friedrich M\xc3\xbcller-L\xc3\xbc"
	    "denscheidt\n"
	    "\n"
	    "Gr\xc3\xbc\xc3\x9f"
	    "e\n";
	struct mk_warn_message m = message();
	char *msg;

	(void)state;
	msg = render(tmpl, strlen(tmpl), &m);
	assert_non_null(strstr(msg,
	    "\nSubject: "
	    "=?UTF-8?B?"
	    "UG9zdGZhY2ggenUgMTAwJSB2b2xsIOKAkyBiaXR0ZSBhdWZyw6R1bWVu?"
	    "=\n"
	    " =?UTF-8?B?LCBPdHRvIEZyaWVkcmljaCBNw7xsbGVyLUzDvGRlbnNjaGVpZHQ=?="
	    "\n"
	    "Message-ID: "));
	assert_non_null(strstr(msg, "Content-Transfer-Encoding: 8bit\n"));
	assert_non_null(strstr(msg,
	    "\n\nGr\xc3\xbc\xc3\x9f"
	    "e\n"));
	free(msg);
}

/* A long ASCII subject is folded before blanks, lines of <= 78. */
static void
test_warn_render_folds_long_subject(void **state)
{
	char tmpl[400];
	struct mk_warn_message m = message();
	char *msg, *subject, *p;
	int lines = 0;

	(void)state;
	snprintf(tmpl, sizeof(tmpl), "Subject:%s\n\nbody\n",
	    " word word word word word word word word word word word"
	    " word word word word word word word word word word word"
	    " word word word word word word word word word word end");
	msg = render(tmpl, strlen(tmpl), &m);
	subject = strstr(msg, "\nSubject: word") + 1;
	for (p = subject; *p != 'M'; p = strchr(p, '\n') + 1) {
		assert_true(strchr(p, '\n') - p <= 78);
		assert_true(p == subject || *p == ' ');
		lines++;
	}
	assert_int_equal(lines, 3);
	assert_non_null(strstr(subject, "word end\nMessage-ID"));
	free(msg);
}

static void
test_warn_render_errors(void **state)
{
	static const char nul[] = "a\0b";
	struct mk_warn_message m = message();
	char line[1100], *msg = (char *)"unchanged";
	struct mk_err err;
	size_t n;

	(void)state;
	assert_int_equal(mk_warn_render(nul, 3, &m, &msg, &n, &err), -1);
	assert_null(msg);
	assert_int_equal(mk_warn_render("a\x01", 2, &m, &msg, &n, &err), -1);
	assert_int_equal(mk_warn_render("a\rb", 3, &m, &msg, &n, &err), -1);
	assert_int_equal(mk_warn_render("\xc3(", 2, &m, &msg, &n, &err), -1);
	assert_non_null(strstr(err.msg, "template"));
	memset(line, 'x', sizeof(line));
	line[sizeof(line) - 1] = '\0';
	assert_int_equal(
	    mk_warn_render(line, strlen(line), &m, &msg, &n, &err), -1);
	assert_non_null(strstr(err.msg, "line 1: longer than 998"));
	/* A subject whose one word is too long for a header line. */
	memcpy(line, "Subject:", 8);
	assert_int_equal(
	    mk_warn_render(line, strlen(line), &m, &msg, &n, &err), -1);
	assert_non_null(strstr(err.msg, "header longer"));
	m.from = "a\nBcc: x@y";
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	m = message();
	m.from = "M\xc3\xbcller <m@x>";
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	m = message();
	m.to = "a\n@x";
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	m = message();
	m.hostname = "mx host";
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	m = message();
	m.unique = "";
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	m = message();
	m.date = INT64_MAX;
	assert_int_equal(mk_warn_render("x", 1, &m, &msg, &n, &err), -1);
	assert_non_null(strstr(err.msg, "out of range"));
	assert_null(msg);
}

static char *warn_dir;

static int
warn_setup(void **state)
{
	(void)state;
	warn_dir = fx_tmpdir();
	return 0;
}

static int
warn_teardown(void **state)
{
	(void)state;
	fx_rmrf(warn_dir);
	free(warn_dir);
	return 0;
}

static void
test_warn_template_load(void **state)
{
	struct mk_err err;
	char *tmpl;
	size_t len;

	(void)state;
	fx_write(warn_dir, "warn.txt", template_text);
	assert_int_equal(mk_warn_template_load(
			     fx_path(warn_dir, "warn.txt"), &tmpl, &len, &err),
	    0);
	assert_int_equal(len, strlen(template_text));
	assert_string_equal(tmpl, template_text);
	free(tmpl);
	fx_write(warn_dir, "bad.txt", "Subject: \x1b[31mred\n");
	assert_int_equal(mk_warn_template_load(
			     fx_path(warn_dir, "bad.txt"), &tmpl, &len, &err),
	    -1);
	assert_null(tmpl);
	assert_non_null(strstr(err.msg, "bad.txt"));
	fx_write_size(warn_dir, "big.txt", MK_WARN_TEMPLATE_MAX + 1);
	assert_int_equal(mk_warn_template_load(
			     fx_path(warn_dir, "big.txt"), &tmpl, &len, &err),
	    -1);
	assert_int_equal(mk_warn_template_load(
			     fx_path(warn_dir, "none.txt"), &tmpl, &len, &err),
	    -1);
	assert_int_equal(err.sys_errno, ENOENT);
}

static void
test_warn_estimate(void **state)
{
	struct mk_warn_sample s[20];
	uint64_t days = 77;
	int i;

	(void)state;
	/* Six odd days first, then 14 days of +100 a day, ending at 1300. */
	for (i = 0; i < 20; i++) {
		s[i].day = 20000 + i;
		s[i].usage =
		    i < 6 ? 5000 - (uint64_t)i * 700 : (uint64_t)(i - 6) * 100;
	}
	assert_int_equal(mk_warn_estimate(s, 20, 2000, &days), 1);
	assert_true(days == 7);
	assert_int_equal(mk_warn_estimate(s + 6, 14, 2000, &days), 1);
	assert_true(days == 7);
	/* A fraction of a day counts as a day. */
	assert_int_equal(mk_warn_estimate(s, 20, 1301, &days), 1);
	assert_true(days == 1);
	/* Already at the limit. */
	assert_int_equal(mk_warn_estimate(s, 20, 1300, &days), 1);
	assert_true(days == 0);
	/* No estimate: unlimited, too few samples, too far away. */
	assert_int_equal(mk_warn_estimate(s, 20, 0, &days), 0);
	assert_int_equal(mk_warn_estimate(s + 19, 1, 2000, &days), 0);
	assert_int_equal(mk_warn_estimate(s, 0, 2000, &days), 0);
	assert_int_equal(mk_warn_estimate(s, 20, 1300 + 100 * 3650, &days), 1);
	assert_true(days == 3650);
	assert_int_equal(
	    mk_warn_estimate(s, 20, 1300 + 100 * 3650 + 1, &days), 0);
	/* Flat, and shrinking. */
	for (i = 0; i < 20; i++)
		s[i].usage = 500;
	assert_int_equal(mk_warn_estimate(s, 20, 2000, &days), 0);
	for (i = 0; i < 20; i++)
		s[i].usage = 5000 - (uint64_t)i * 10;
	assert_int_equal(mk_warn_estimate(s, 20, 9000, &days), 0);
	/* Days with gaps; days out of order. */
	for (i = 0; i < 3; i++) {
		s[i].day = i * 2;
		s[i].usage = (uint64_t)i * 200;
	}
	assert_int_equal(mk_warn_estimate(s, 3, 1000, &days), 1);
	assert_true(days == 6);
	s[2].day = 2;
	assert_int_equal(mk_warn_estimate(s, 3, 1000, &days), 0);
	/* Huge values do not break the estimate. */
	s[0] = (struct mk_warn_sample){ 0, 0 };
	s[1] = (struct mk_warn_sample){ 1, 1ULL << 62 };
	assert_int_equal(mk_warn_estimate(s, 2, UINT64_MAX, &days), 1);
	assert_true(days == 3);
}

/* The digest: fullest first (percent, then usage, then address), top N,
 * a subject counting the full ones; bad addresses refused. */
static void
test_warn_digest(void **state)
{
	struct mk_warn_digest_entry e[] = {
		{ "b@x", 50, 100, 50 },
		{ "a@x", 120, 100, 120 },
		{ "c@x", 99, 100, 99 },
		{ "d@x", 60, 100, 50 },
		{ "e@x", 100, 100, 100 },
	};
	struct mk_warn_message m = message();
	struct mk_err err;
	const char *p;
	char *msg;
	size_t len;

	(void)state;
	m.to = "admin@x";
	assert_int_equal(
	    mk_warn_digest_render(e, 5, 4, &m, &msg, &len, &err), 0);
	assert_int_equal(strlen(msg), len);
	assert_non_null(strstr(
	    msg, "Subject: Quota digest: 2 mailboxes full, 5 limited\n"));
	assert_non_null(strstr(msg, "The 4 fullest of the 5 mailboxes"));
	p = strstr(msg, "a@x");
	assert_non_null(p);
	assert_non_null(p = strstr(p, "e@x"));
	assert_non_null(p = strstr(p, "c@x"));
	/* 50% both: more usage first. */
	assert_non_null(p = strstr(p, "d@x"));
	assert_null(strstr(msg, "b@x"));
	free(msg);
	assert_int_equal(
	    mk_warn_digest_render(e, 0, 4, &m, &msg, &len, &err), 0);
	assert_non_null(strstr(msg, "0 mailboxes full, 0 limited"));
	assert_non_null(strstr(msg, "(no mailbox has a limit)"));
	free(msg);
	e[0].address = "bad\naddress@x";
	assert_int_equal(
	    mk_warn_digest_render(e, 5, 5, &m, &msg, &len, &err), -1);
	assert_null(msg);
	assert_non_null(strstr(err.msg, "not printable"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_warn_config_thresholds),
		cmocka_unit_test(test_warn_crossing_hysteresis_and_repeat),
		cmocka_unit_test(test_warn_jumps_and_limits),
		cmocka_unit_test(test_warn_state_restore_and_config_change),
		cmocka_unit_test(test_warn_state_format_parse),
		cmocka_unit_test(test_warn_percent),
		cmocka_unit_test(test_warn_render_message),
		cmocka_unit_test(test_warn_render_default_subject_and_crlf),
		cmocka_unit_test(test_warn_render_utf8_subject_and_body),
		cmocka_unit_test(test_warn_render_folds_long_subject),
		cmocka_unit_test(test_warn_render_errors),
		cmocka_unit_test_setup_teardown(
		    test_warn_template_load, warn_setup, warn_teardown),
		cmocka_unit_test(test_warn_estimate),
		cmocka_unit_test(test_warn_digest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
