#include <string.h>
#include <time.h>

#include "fixture.h"
#include "mailkeep/retention.h"

#define L (1u << MK_RETENTION_LAST)
#define H (1u << MK_RETENTION_HOURLY)
#define D (1u << MK_RETENTION_DAILY)
#define W (1u << MK_RETENTION_WEEKLY)
#define M (1u << MK_RETENTION_MONTHLY)
#define Y (1u << MK_RETENTION_YEARLY)
#define NOPOLICY (1u << MK_RETENTION_RULES)

/* keep: last, hourly, daily, weekly, monthly, yearly.  Times in UTC, in
 * the order given to the selection (not necessarily sorted). */
struct retention_case {
	const char *name;
	uint64_t keep[MK_RETENTION_RULES];
	const char *times[10];
	unsigned want[10];
};

static const struct retention_case retention_cases[] = {
	{ "no snapshot", { 3, 0, 0, 0, 0, 0 }, { NULL }, { 0 } },
	{ "empty policy keeps all", { 0, 0, 0, 0, 0, 0 },
	    { "2026-01-01 10:00", "2026-01-02 10:00", NULL },
	    { NOPOLICY, NOPOLICY } },
	{ "last 3 of 5", { 3, 0, 0, 0, 0, 0 },
	    { "2026-01-01 10:00", "2026-01-01 11:00", "2026-01-01 12:00",
		"2026-01-01 13:00", "2026-01-01 14:00", NULL },
	    { 0, 0, L, L, L } },
	{ "last 1 of 1", { 1, 0, 0, 0, 0, 0 }, { "2026-01-01 10:00", NULL },
	    { L } },
	{ "last more than there are", { 10, 0, 0, 0, 0, 0 },
	    { "2026-01-01 10:00", "2026-01-01 11:00", NULL }, { L, L } },
	{ "unsorted input", { 2, 0, 0, 0, 0, 0 },
	    { "2026-01-01 14:00", "2026-01-01 10:00", "2026-01-01 12:00",
		NULL },
	    { L, 0, L } },
	{ "daily keeps the newest of each day", { 0, 0, 2, 0, 0, 0 },
	    { "2026-03-01 10:00", "2026-03-01 20:00", "2026-03-02 09:00",
		"2026-03-02 18:00", "2026-03-03 01:00", NULL },
	    { 0, 0, 0, D, D } },
	{ "daily counts days with snapshots, not calendar days",
	    { 0, 0, 2, 0, 0, 0 },
	    { "2026-03-01 10:00", "2026-03-10 10:00", "2026-03-20 10:00",
		NULL },
	    { 0, D, D } },
	{ "hourly, midnight boundary", { 0, 3, 0, 0, 0, 0 },
	    { "2026-03-01 22:10", "2026-03-01 22:50", "2026-03-01 23:59",
		"2026-03-02 00:00", "2026-03-02 00:30", NULL },
	    { 0, H, H, 0, H } },
	{ "weekly uses ISO weeks across the new year", { 0, 0, 0, 2, 0, 0 },
	    /* 2026-12-28 Mon .. 2027-01-03 Sun are 2026-W53. */
	    { "2026-12-21 12:00", "2026-12-28 12:00", "2026-12-31 12:00",
		"2027-01-01 12:00", "2027-01-04 12:00", NULL },
	    { 0, 0, 0, W, W } },
	{ "weekly, Sunday and Monday are different weeks", { 0, 0, 0, 2, 0, 0 },
	    { "2026-03-01 12:00", "2026-03-02 12:00", NULL }, { W, W } },
	{ "monthly and yearly", { 0, 0, 0, 0, 2, 2 },
	    { "2024-06-01 00:00", "2025-11-30 00:00", "2025-12-01 00:00",
		"2025-12-31 23:59", "2026-01-15 00:00", NULL },
	    { 0, 0, 0, M | Y, M | Y } },
	{ "rules count on their own: last 1 and daily 2", { 1, 0, 2, 0, 0, 0 },
	    { "2026-03-01 10:00", "2026-03-02 09:00", "2026-03-02 18:00",
		NULL },
	    { D, 0, L | D } },
	{ "equal times: the later given counts as newer", { 0, 0, 1, 0, 0, 0 },
	    { "2026-03-01 10:00", "2026-03-01 10:00", NULL }, { 0, D } },
	{ "a full GFS policy", { 2, 0, 3, 2, 2, 1 },
	    { "2025-12-31 23:00", "2026-01-31 23:00", "2026-02-20 08:00",
		"2026-02-24 08:00", "2026-02-25 08:00", "2026-02-26 08:00",
		"2026-02-26 09:00", NULL },
	    { 0, M, W, D, D, L, L | D | W | M | Y } },
	/* Epoch boundary: 0 and the last second of 1969 (negative time). */
	{ "yearly around the epoch", { 0, 0, 0, 0, 0, 2 },
	    { "1969-12-31 23:59", "1970-01-01 00:00", NULL }, { Y, Y } },
};

static int64_t
retention_time(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	assert_non_null(strptime(s, "%Y-%m-%d %H:%M", &tm));
	return (int64_t)timegm(&tm) * 1000000000;
}

static void
test_retention_select_table(void **state)
{
	size_t c, i, n;

	(void)state;
	for (c = 0; c < sizeof(retention_cases) / sizeof(retention_cases[0]);
	     c++) {
		const struct retention_case *t = &retention_cases[c];
		struct mk_retention policy;
		int64_t times[10];
		unsigned got[10];

		memcpy(policy.keep, t->keep, sizeof(policy.keep));
		for (n = 0; t->times[n] != NULL; n++)
			times[n] = retention_time(t->times[n]);
		memset(got, 0xff, sizeof(got));
		mk_retention_select(&policy, times, n, got);
		for (i = 0; i < n; i++)
			if (got[i] != t->want[i])
				fail_msg("%s: snapshot %zu (%s): reasons %#x, "
					 "want %#x",
				    t->name, i, t->times[i], got[i],
				    t->want[i]);
	}
}

static void
test_retention_empty_and_names(void **state)
{
	struct mk_retention p;

	(void)state;
	memset(&p, 0, sizeof(p));
	assert_true(mk_retention_empty(&p));
	p.keep[MK_RETENTION_YEARLY] = 1;
	assert_false(mk_retention_empty(&p));
	assert_string_equal(
	    mk_retention_rule_name(MK_RETENTION_WEEKLY), "weekly");
	assert_string_equal(mk_retention_rule_name(MK_RETENTION_RULES), "none");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retention_select_table),
		cmocka_unit_test(test_retention_empty_and_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
