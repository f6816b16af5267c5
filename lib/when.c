#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mailkeep/when.h"

#define WHEN_NS 1000000000LL
#define WHEN_HELP                                                              \
	"use \"2026-11-24 14:00\", \"2026-11-24\", ISO 8601, \"yesterday\" "   \
	"or \"3 days ago\""

/* Read exactly n digits. */
static bool
when_digits(const char **p, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return false;
		*v = *v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	return true;
}

/* 00:00 local of the day of t, moved by days. */
static int64_t
when_day_start(time_t t, int days)
{
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_mday += days;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * WHEN_NS;
}

/* "N unit ago". */
static int
when_ago(const char *s, int64_t now_ns, int64_t *ns_r)
{
	static const struct {
		const char *name;
		int64_t secs;
	} units[] = {
		{ "min", 60 },
		{ "mins", 60 },
		{ "minute", 60 },
		{ "minutes", 60 },
		{ "h", 3600 },
		{ "hour", 3600 },
		{ "hours", 3600 },
		{ "d", 86400 },
		{ "day", 86400 },
		{ "days", 86400 },
		{ "w", 604800 },
		{ "week", 604800 },
		{ "weeks", 604800 },
	};
	char unit[16], ago[8], extra;
	unsigned long n;
	size_t i;

	if (!isdigit((unsigned char)s[0]) ||
	    sscanf(s, "%lu %15s %7s %c", &n, unit, ago, &extra) != 3 ||
	    strcmp(ago, "ago") != 0 || n > 100000)
		return -1;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcasecmp(unit, units[i].name) == 0) {
			*ns_r = now_ns - (int64_t)n * units[i].secs * WHEN_NS;
			return 0;
		}
	return -1;
}

/* "YYYY-MM-DD[( |T)HH:MM[:SS[.frac]]][Z|(+|-)HH[:]MM]". */
static int
when_date(const char *s, int64_t *ns_r)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, oh, om, sign;
	bool zone = false;
	int64_t off = 0;
	const char *p = s;
	struct tm tm;
	time_t t;

	if (!when_digits(&p, 4, &y) || *p++ != '-' ||
	    !when_digits(&p, 2, &mo) || *p++ != '-' || !when_digits(&p, 2, &d))
		return -1;
	if (*p == ' ' || *p == 'T' || *p == 't') {
		p++;
		if (!when_digits(&p, 2, &h) || *p++ != ':' ||
		    !when_digits(&p, 2, &mi))
			return -1;
		if (*p == ':') {
			p++;
			if (!when_digits(&p, 2, &sec))
				return -1;
			if (*p == '.')
				for (p++; isdigit((unsigned char)*p); p++)
					;
		}
	}
	if (*p == 'Z' || *p == 'z') {
		zone = true;
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (!when_digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (!when_digits(&p, 2, &om) || oh > 23 || om > 59)
			return -1;
		zone = true;
		off = sign * (oh * 3600 + om * 60);
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
	    mi > 59 || sec > 60 || y < 1970)
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	tm.tm_isdst = -1;
	t = zone ? timegm(&tm) - off : mktime(&tm);
	/* mktime normalises 2026-02-31 into March: refuse it. */
	if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return -1;
	*ns_r = (int64_t)t * WHEN_NS;
	return 0;
}

int
mk_when_parse(const char *s, int64_t now_ns, int64_t *ns_r, struct mk_err *err)
{
	time_t now = (time_t)(now_ns / WHEN_NS);

	while (*s == ' ')
		s++;
	if (strcasecmp(s, "now") == 0)
		*ns_r = now_ns;
	else if (strcasecmp(s, "today") == 0)
		*ns_r = when_day_start(now, 0);
	else if (strcasecmp(s, "yesterday") == 0)
		*ns_r = when_day_start(now, -1);
	else if (when_ago(s, now_ns, ns_r) < 0 && when_date(s, ns_r) < 0)
		return mk_err_set(err, "'%s' is not a time: " WHEN_HELP, s);
	return 0;
}
