#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "mailkeep/when.h"

#define NS 1000000000LL
/* 2026-11-26 16:30:00 UTC, a Thursday. */
#define NOW (1795710600LL * NS)

struct when_case {
	const char *s;
	int rc;
	int64_t secs; /* expected, in TZ=UTC */
};

static const struct when_case when_cases[] = {
	{ "2026-11-24 14:00", 0, 1795528800 },
	{ "2026-11-24 14:00:30", 0, 1795528830 },
	{ "2026-11-24", 0, 1795478400 },
	{ "2026-11-24T14:00:00Z", 0, 1795528800 },
	{ "2026-11-24T14:00:00.250Z", 0, 1795528800 },
	{ "2026-11-24T15:00+01:00", 0, 1795528800 },
	{ "2026-11-24T09:00:00-0500", 0, 1795528800 },
	{ "1970-01-01", 0, 0 },
	{ "now", 0, 1795710600 },
	{ "today", 0, 1795651200 },
	{ "yesterday", 0, 1795564800 },
	{ "Yesterday", 0, 1795564800 },
	{ "3 days ago", 0, 1795710600 - 3 * 86400 },
	{ "1 day ago", 0, 1795710600 - 86400 },
	{ "2 hours ago", 0, 1795710600 - 7200 },
	{ "90 minutes ago", 0, 1795710600 - 5400 },
	{ "1 week ago", 0, 1795710600 - 604800 },
	{ "0 days ago", 0, 1795710600 },
	{ "", -1, 0 },
	{ "tomorrow", -1, 0 },
	{ "3 days", -1, 0 },
	{ "days ago", -1, 0 },
	{ "-3 days ago", -1, 0 },
	{ "3 fortnights ago", -1, 0 },
	{ "3 days ago please", -1, 0 },
	{ "999999999 days ago", -1, 0 },
	{ "2026-02-31", -1, 0 },
	{ "2026-13-01", -1, 0 },
	{ "2026-11-24 25:00", -1, 0 },
	{ "2026-11-24 14:60", -1, 0 },
	{ "2026-11-24 14", -1, 0 },
	{ "2026-11-24x", -1, 0 },
	{ "26-11-24", -1, 0 },
	{ "1969-12-31", -1, 0 },
	{ "2026-11-24T14:00+25:00", -1, 0 },
};

static void
test_when_parse_table(void **state)
{
	struct mk_err err;
	int64_t ns;
	size_t i;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	for (i = 0; i < sizeof(when_cases) / sizeof(when_cases[0]); i++) {
		const struct when_case *c = &when_cases[i];
		int rc;

		ns = 12345;
		rc = mk_when_parse(c->s, NOW, &ns, &err);
		if (rc != c->rc)
			fail_msg("'%s': rc %d, want %d", c->s, rc, c->rc);
		if (rc == 0 && ns != c->secs * NS)
			fail_msg("'%s': %lld, want %lld", c->s,
			    (long long)(ns / NS), (long long)c->secs);
		if (rc < 0)
			assert_non_null(strstr(err.msg, "not a time"));
	}
}

/* Without a zone the local time counts; with one, it does not. */
static void
test_when_parse_local_zone(void **state)
{
	struct mk_err err;
	int64_t ns;

	(void)state;
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	assert_int_equal(mk_when_parse("2026-11-24 14:00", NOW, &ns, &err), 0);
	assert_int_equal(ns, (1795528800LL - 3600) * NS);
	assert_int_equal(
	    mk_when_parse("2026-11-24T14:00:00Z", NOW, &ns, &err), 0);
	assert_int_equal(ns, 1795528800LL * NS);
	/* Summer time. */
	assert_int_equal(mk_when_parse("2026-07-01 12:00", NOW, &ns, &err), 0);
	assert_int_equal(ns, (1782907200LL - 7200) * NS);
	assert_int_equal(mk_when_parse("yesterday", NOW, &ns, &err), 0);
	assert_int_equal(ns, (1795564800LL - 3600) * NS);
	setenv("TZ", "UTC", 1);
	tzset();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_when_parse_table),
		cmocka_unit_test(test_when_parse_local_zone),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
