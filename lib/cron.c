#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailkeep/cron.h"
#include "mailkeep/str.h"

/* Day by day for this long: every calendar repeats within 28 years. */
#define CRON_SEARCH_DAYS (28 * 366)

struct cron_field {
	const char *name;
	unsigned min, max;
	const char *const *names; /* names[i] stands for min + i */
};

static const char *const cron_months[] = { "jan", "feb", "mar", "apr", "may",
	"jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const cron_wdays[] = { "sun", "mon", "tue", "wed", "thu",
	"fri", "sat", NULL };

static const struct cron_field cron_fields[5] = {
	{ "minute", 0, 59, NULL },
	{ "hour", 0, 23, NULL },
	{ "day of month", 1, 31, NULL },
	{ "month", 1, 12, cron_months },
	{ "day of week", 0, 7, cron_wdays },
};

static const struct {
	const char *name;
	const char *expr;
} cron_macros[] = {
	{ "@hourly", "0 * * * *" },
	{ "@daily", "0 0 * * *" },
	{ "@midnight", "0 0 * * *" },
	{ "@weekly", "0 0 * * 0" },
	{ "@monthly", "0 0 1 * *" },
	{ "@yearly", "0 0 1 1 *" },
	{ "@annually", "0 0 1 1 *" },
};

/* A number or a name of field f at *p; advances *p. */
static int
cron_value(const struct cron_field *f, const char **p, unsigned *v_r,
    struct mk_err *err)
{
	const char *s = *p;
	unsigned long v = 0;
	size_t i, n = 0;

	if (isdigit((unsigned char)*s)) {
		while (isdigit((unsigned char)s[n]) && n < 3)
			v = v * 10 + (unsigned long)(s[n++] - '0');
		if (isdigit((unsigned char)s[n]) || v < f->min || v > f->max)
			return mk_err_set(err,
			    "%s: '%.*s' is out of range (%u-%u)", f->name,
			    (int)strcspn(s, ",-/"), s, f->min, f->max);
		*v_r = (unsigned)v;
		*p = s + n;
		return 0;
	}
	for (i = 0; f->names != NULL && f->names[i] != NULL; i++)
		if (strncasecmp(s, f->names[i], 3) == 0 &&
		    !isalpha((unsigned char)s[3])) {
			*v_r = f->min + (unsigned)i;
			*p = s + 3;
			return 0;
		}
	return mk_err_set(err, "%s: '%.*s' is not a number%s", f->name,
	    (int)strcspn(s, ","), s, f->names != NULL ? " or a name" : "");
}

/* One field's text (NUL-terminated) into a bit set. */
static int
cron_field_parse(const struct cron_field *f, const char *text, uint64_t *bits_r,
    struct mk_err *err)
{
	const char *p = text;
	uint64_t bits = 0;

	for (;;) {
		unsigned lo, hi, step = 1, v;
		bool star = false;

		if (*p == '*') {
			lo = f->min;
			hi = f->max;
			star = true;
			p++;
		} else {
			if (cron_value(f, &p, &lo, err) < 0)
				return -1;
			hi = lo;
			if (*p == '-') {
				p++;
				if (cron_value(f, &p, &hi, err) < 0)
					return -1;
				if (hi < lo)
					return mk_err_set(err,
					    "%s: range '%s' runs backwards",
					    f->name, text);
				star = true;
			}
		}
		if (*p == '/') {
			unsigned long s = 0;
			size_t n = 0;

			p++;
			while (isdigit((unsigned char)p[n]) && n < 3)
				s = s * 10 + (unsigned long)(p[n++] - '0');
			if (!star)
				return mk_err_set(err,
				    "%s: a step needs '*' or a range: '%s'",
				    f->name, text);
			if (n == 0 || isdigit((unsigned char)p[n]) || s == 0 ||
			    s > f->max)
				return mk_err_set(
				    err, "%s: bad step in '%s'", f->name, text);
			step = (unsigned)s;
			p += n;
		}
		for (v = lo; v <= hi; v += step)
			bits |= 1ULL << v;
		if (*p == '\0')
			break;
		if (*p != ',' || p[1] == '\0')
			return mk_err_set(
			    err, "%s: cannot read '%s'", f->name, text);
		p++;
	}
	*bits_r = bits;
	return 0;
}

int
mk_cron_parse(const char *expr, struct mk_cron *cron, struct mk_err *err)
{
	char buf[MK_CRON_EXPR_MAX], *fields[6], *save = NULL, *tok;
	uint64_t bits[5];
	size_t i, n = 0;

	memset(cron, 0, sizeof(*cron));
	if (mk_strlcpy(buf, expr, sizeof(buf)) >= sizeof(buf))
		return mk_err_set(err, "schedule too long");
	if (buf[0] == '@') {
		for (i = 0; i < sizeof(cron_macros) / sizeof(cron_macros[0]);
		     i++)
			if (strcasecmp(buf, cron_macros[i].name) == 0)
				return mk_cron_parse(
				    cron_macros[i].expr, cron, err);
		return mk_err_set(err,
		    "'%s': use five fields or @hourly, @daily, @weekly, "
		    "@monthly, @yearly",
		    expr);
	}
	for (tok = strtok_r(buf, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (n == 5)
			return mk_err_set(
			    err, "'%s': more than five fields", expr);
		fields[n++] = tok;
	}
	if (n != 5)
		return mk_err_set(
		    err, "'%s': five fields wanted, %zu given", expr, n);
	for (i = 0; i < 5; i++)
		if (cron_field_parse(
			&cron_fields[i], fields[i], &bits[i], err) < 0)
			return mk_err_prefix(err, "schedule '%s'", expr);
	cron->minutes = bits[0];
	cron->hours = (uint32_t)bits[1];
	cron->mdays = (uint32_t)bits[2];
	cron->months = (uint16_t)bits[3];
	/* 7 is Sunday too. */
	cron->wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
	cron->mday_star = fields[2][0] == '*';
	cron->wday_star = fields[4][0] == '*';
	return 0;
}

/* Does the calendar day of tm match (Vixie's day-of-month/week rule)? */
static bool
cron_day(const struct mk_cron *cron, const struct tm *tm)
{
	bool mday = (cron->mdays >> tm->tm_mday) & 1;
	bool wday = (cron->wdays >> tm->tm_wday) & 1;

	if (!((cron->months >> (tm->tm_mon + 1)) & 1))
		return false;
	if (cron->mday_star || cron->wday_star)
		return mday && wday;
	return mday || wday;
}

/*
 * The first instant after `after` with wall time h:m on day (a noon of
 * it): 1, or 0 when that instant is not after `after`.  A wall time that
 * happens twice is taken at its first occurrence still to come; one that
 * does not exist (a DST gap) is what mktime() makes of it, the same
 * distance after the jump.
 */
static int
cron_instant(const struct tm *day, int h, int m, time_t after, time_t *when_r)
{
	static const int isdst[3] = { 1, 0, -1 };
	time_t best = 0, when;
	bool found = false;
	int i;

	for (i = 0; i < 3; i++) {
		struct tm t = *day, back;

		t.tm_hour = h;
		t.tm_min = m;
		t.tm_sec = 0;
		t.tm_isdst = isdst[i];
		if ((when = mktime(&t)) == (time_t)-1 || when <= after)
			continue;
		/* With a fixed isdst only a real wall time counts. */
		if (isdst[i] >= 0 &&
		    (localtime_r(&when, &back) == NULL || back.tm_hour != h ||
			back.tm_min != m))
			continue;
		if (!found || when < best)
			best = when;
		found = true;
		if (i == 1)
			break;
	}
	if (found)
		*when_r = best;
	return found;
}

/*
 * Walk wall-clock days from after's local date; in each matching day,
 * the matching hours and minutes later than after's wall time (on the
 * first day) become instants through cron_instant().
 */
int
mk_cron_next(const struct mk_cron *cron, time_t after, time_t *next_r)
{
	struct tm now;
	int d, h, m;

	if (localtime_r(&after, &now) == NULL)
		return 0;
	for (d = 0; d < CRON_SEARCH_DAYS; d++) {
		struct tm day;

		/* Noon of day d never falls in a DST change. */
		memset(&day, 0, sizeof(day));
		day.tm_year = now.tm_year;
		day.tm_mon = now.tm_mon;
		day.tm_mday = now.tm_mday + d;
		day.tm_hour = 12;
		day.tm_isdst = -1;
		if (mktime(&day) == (time_t)-1)
			return 0;
		if (!cron_day(cron, &day))
			continue;
		for (h = 0; h < 24; h++) {
			if (!((cron->hours >> h) & 1) ||
			    (d == 0 && h < now.tm_hour))
				continue;
			for (m = 0; m < 60; m++) {
				if (!((cron->minutes >> m) & 1) ||
				    (d == 0 && h == now.tm_hour &&
					m <= now.tm_min))
					continue;
				if (cron_instant(&day, h, m, after, next_r))
					return 1;
			}
		}
	}
	return 0;
}
