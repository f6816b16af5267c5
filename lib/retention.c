#include <stdlib.h>
#include <time.h>

#include "mailkeep/mem.h"
#include "mailkeep/retention.h"

static const char *const retention_names[MK_RETENTION_RULES] = {
	"last",
	"hourly",
	"daily",
	"weekly",
	"monthly",
	"yearly",
};

bool
mk_retention_empty(const struct mk_retention *policy)
{
	int i;

	for (i = 0; i < MK_RETENTION_RULES; i++)
		if (policy->keep[i] > 0)
			return false;
	return true;
}

const char *
mk_retention_rule_name(enum mk_retention_rule rule)
{
	return rule < MK_RETENTION_RULES ? retention_names[rule] : "none";
}

/* The ISO 8601 year and week of a UTC date, as year * 100 + week. */
static int64_t
retention_iso_week(const struct tm *tm)
{
	/* The Thursday of this week decides its year (ISO 8601). */
	int wday = (tm->tm_wday + 6) % 7; /* Monday 0 */
	int yday = tm->tm_yday - wday + 3; /* of that Thursday */
	int64_t year = tm->tm_year + 1900;
	int len;

	if (yday < 0) {
		year--;
		len = (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
		    ? 366
		    : 365;
		yday += len;
	} else {
		len = (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
		    ? 366
		    : 365;
		if (yday >= len) {
			yday -= len;
			year++;
		}
	}
	return year * 100 + yday / 7 + 1;
}

/* The bucket of a time for a rule; "last" uses the position. */
static int64_t
retention_bucket(enum mk_retention_rule rule, int64_t ns, size_t pos)
{
	time_t t = (time_t)(ns / 1000000000);
	int64_t y, ymd;
	struct tm tm;

	if (rule == MK_RETENTION_LAST || gmtime_r(&t, &tm) == NULL)
		return (int64_t)pos;
	y = tm.tm_year + 1900;
	ymd = (y * 100 + tm.tm_mon + 1) * 100 + tm.tm_mday;
	switch (rule) {
	case MK_RETENTION_HOURLY:
		return ymd * 100 + tm.tm_hour;
	case MK_RETENTION_DAILY:
		return ymd;
	case MK_RETENTION_WEEKLY:
		return retention_iso_week(&tm);
	case MK_RETENTION_MONTHLY:
		return y * 100 + tm.tm_mon + 1;
	default:
		return y;
	}
}

struct retention_item {
	int64_t ns;
	size_t index;
};

static int
retention_newest_first(const void *a, const void *b)
{
	const struct retention_item *x = a, *y = b;

	if (x->ns != y->ns)
		return x->ns > y->ns ? -1 : 1;
	/* Equal times: the later one given counts as newer. */
	return x->index > y->index ? -1 : x->index < y->index;
}

void
mk_retention_select(const struct mk_retention *policy, const int64_t *times_ns,
    size_t n, unsigned *reasons_r)
{
	struct retention_item *items;
	uint64_t left[MK_RETENTION_RULES];
	int64_t last[MK_RETENTION_RULES], b;
	bool any[MK_RETENTION_RULES] = { false };
	size_t i;
	int r;

	if (n == 0)
		return;
	if (mk_retention_empty(policy)) {
		for (i = 0; i < n; i++)
			reasons_r[i] = 1u << MK_RETENTION_RULES;
		return;
	}
	items = mk_xcalloc(n, sizeof(*items));
	for (i = 0; i < n; i++) {
		items[i].ns = times_ns[i];
		items[i].index = i;
	}
	qsort(items, n, sizeof(*items), retention_newest_first);
	for (r = 0; r < MK_RETENTION_RULES; r++)
		left[r] = policy->keep[r];
	for (i = 0; i < n; i++) {
		unsigned reasons = 0;

		for (r = 0; r < MK_RETENTION_RULES; r++) {
			if (left[r] == 0)
				continue;
			b = retention_bucket(
			    (enum mk_retention_rule)r, items[i].ns, i);
			if (any[r] && b == last[r])
				continue;
			any[r] = true;
			last[r] = b;
			left[r]--;
			reasons |= 1u << r;
		}
		reasons_r[items[i].index] = reasons;
	}
	free(items);
}
