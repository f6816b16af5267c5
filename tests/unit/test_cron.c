#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "mailkeep/cron.h"

/* "2026-11-26T16:29:17Z" to seconds. */
static time_t
utc(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	assert_non_null(strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm));
	return timegm(&tm);
}

static void
use_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

struct next_case {
	const char *tz;
	const char *expr;
	const char *after;
	const char *next; /* NULL: never */
};

static const struct next_case next_cases[] = {
	{ "UTC", "* * * * *", "2026-11-26T16:29:17Z", "2026-11-26T16:30:00Z" },
	{ "UTC", "* * * * *", "2026-11-26T16:29:00Z", "2026-11-26T16:30:00Z" },
	{ "UTC", "0 2 * * *", "2026-11-26T16:29:00Z", "2026-11-27T02:00:00Z" },
	{ "UTC", "*/15 * * * *", "2026-11-26T10:15:00Z",
	    "2026-11-26T10:30:00Z" },
	{ "UTC", "5-50/20 * * * *", "2026-11-26T10:45:00Z",
	    "2026-11-26T11:05:00Z" },
	{ "UTC", "0 0 1 * *", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z" },
	/* 2026-11-27 is a Friday. */
	{ "UTC", "0 9 * * mon-fri", "2026-11-27T10:00:00Z",
	    "2026-11-30T09:00:00Z" },
	/* Both day fields restricted: either matches (Vixie). */
	{ "UTC", "0 0 13 * fri", "2026-11-26T00:00:00Z",
	    "2026-11-27T00:00:00Z" },
	{ "UTC", "0 0 13 * *", "2026-11-26T00:00:00Z", "2026-12-13T00:00:00Z" },
	/* One starts with '*': both must match. */
	{ "UTC", "0 0 */10 * fri", "2026-11-26T00:00:00Z",
	    "2026-12-11T00:00:00Z" },
	{ "UTC", "0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00Z" },
	{ "UTC", "0 0 31 2 *", "2026-03-01T00:00:00Z", NULL },
	{ "UTC", "@weekly", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z" },
	{ "UTC", "0 0 * * 7", "2026-11-26T00:00:00Z", "2026-11-29T00:00:00Z" },
	{ "UTC", "@hourly", "2026-11-26T23:00:00Z", "2026-11-27T00:00:00Z" },
	{ "UTC", "@daily", "2026-12-31T00:00:00Z", "2027-01-01T00:00:00Z" },
	{ "UTC", "@monthly", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z" },
	{ "UTC", "@yearly", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z" },
	{ "UTC", "30 4 1,15 JAN,jul *", "2026-11-26T00:00:00Z",
	    "2027-01-01T04:30:00Z" },
	{ "UTC", "59 23 31 12 *", "2026-12-31T23:59:00Z",
	    "2027-12-31T23:59:00Z" },
	/* Berlin: 02:00 CET jumps to 03:00 CEST on 2026-03-29 (01:00Z). */
	{ "Europe/Berlin", "30 2 * * *", "2026-03-28T12:00:00Z",
	    "2026-03-29T01:30:00Z" },
	{ "Europe/Berlin", "0 * * * *", "2026-03-29T00:30:00Z",
	    "2026-03-29T01:00:00Z" },
	{ "Europe/Berlin", "0 * * * *", "2026-03-29T01:00:00Z",
	    "2026-03-29T02:00:00Z" },
	{ "Europe/Berlin", "0 3 * * *", "2026-03-28T12:00:00Z",
	    "2026-03-29T01:00:00Z" },
	/* 03:00 CEST goes back to 02:00 CET on 2026-10-25 (01:00Z): the
	 * repeated wall times fire once, at their first occurrence. */
	{ "Europe/Berlin", "30 2 * * *", "2026-10-24T12:00:00Z",
	    "2026-10-25T00:30:00Z" },
	{ "Europe/Berlin", "30 2 * * *", "2026-10-25T00:30:00Z",
	    "2026-10-26T01:30:00Z" },
	{ "Europe/Berlin", "0 * * * *", "2026-10-25T00:00:00Z",
	    "2026-10-25T02:00:00Z" },
	{ "Europe/Berlin", "0 2 * * *", "2026-11-26T12:00:00Z",
	    "2026-11-27T01:00:00Z" },
};

static void
test_cron_next_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(next_cases) / sizeof(next_cases[0]); i++) {
		const struct next_case *c = &next_cases[i];
		struct mk_cron cron;
		struct mk_err err;
		time_t next = 0;

		print_message("%s '%s' after %s\n", c->tz, c->expr, c->after);
		use_tz(c->tz);
		assert_int_equal(mk_cron_parse(c->expr, &cron, &err), 0);
		assert_int_equal(mk_cron_next(&cron, utc(c->after), &next),
		    c->next != NULL ? 1 : 0);
		if (c->next != NULL)
			assert_int_equal(
			    (long long)next, (long long)utc(c->next));
	}
	use_tz("UTC");
}

struct bad_case {
	const char *expr;
	const char *says;
};

static const struct bad_case bad_cases[] = {
	{ "", "five fields wanted, 0 given" },
	{ "* * * *", "five fields wanted, 4 given" },
	{ "* * * * * *", "more than five fields" },
	{ "60 * * * *", "minute: '60' is out of range (0-59)" },
	{ "* 24 * * *", "hour: '24' is out of range" },
	{ "* * 0 * *", "day of month: '0' is out of range (1-31)" },
	{ "* * 32 * *", "day of month: '32'" },
	{ "* * * 13 *", "month: '13' is out of range (1-12)" },
	{ "* * * 0 *", "month: '0'" },
	{ "* * * * 8", "day of week: '8' is out of range (0-7)" },
	{ "5-1 * * * *", "minute: range '5-1' runs backwards" },
	{ "*/0 * * * *", "minute: bad step" },
	{ "*/ * * * *", "minute: bad step" },
	{ "*/61 * * * *", "minute: bad step" },
	{ "5/2 * * * *", "a step needs '*' or a range" },
	{ "1,,2 * * * *", "minute: '' is not a number" },
	{ "1, * * * *", "minute: cannot read '1,'" },
	{ "x * * * *", "minute: 'x' is not a number" },
	{ "* * * foo *", "month: 'foo' is not a number or a name" },
	{ "* * * * monday", "day of week: 'monday' is not a number or a name" },
	{ "1000 * * * *", "minute: '1000' is out of range" },
	{ "@reboot", "use five fields or @hourly" },
	{ "-1 * * * *", "minute: '-1' is not a number" },
};

static void
test_cron_parse_errors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		struct mk_cron cron;
		struct mk_err err;

		print_message("'%s'\n", bad_cases[i].expr);
		assert_int_equal(
		    mk_cron_parse(bad_cases[i].expr, &cron, &err), -1);
		if (strstr(err.msg, bad_cases[i].says) == NULL)
			fail_msg("'%s': got '%s', want '%s'", bad_cases[i].expr,
			    err.msg, bad_cases[i].says);
	}
}

static void
test_cron_parse_bits(void **state)
{
	struct mk_cron cron;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_cron_parse("0,59 0-23/23 1,31 dec sun,7", &cron, &err), 0);
	assert_true(cron.minutes == (1ULL | 1ULL << 59));
	assert_true(cron.hours == (1u | 1u << 23));
	assert_true(cron.mdays == (1u << 1 | 1u << 31));
	assert_true(cron.months == 1u << 12);
	assert_true(cron.wdays == 1u);
	assert_false(cron.mday_star);
	assert_int_equal(mk_cron_parse("* * * * *", &cron, &err), 0);
	assert_true(cron.minutes == (1ULL << 60) - 1);
	assert_true(cron.wdays == 0x7f);
	assert_true(cron.mday_star && cron.wday_star);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cron_next_table),
		cmocka_unit_test(test_cron_parse_errors),
		cmocka_unit_test(test_cron_parse_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
