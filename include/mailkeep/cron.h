/*
 * cron: schedule expressions as Vixie cron reads them, and the next time
 * one fires.
 *
 * Five fields: minute (0-59), hour (0-23), day of month (1-31), month
 * (1-12 or jan-dec), day of week (0-7 or sun-sat, 0 and 7 both Sunday).
 * Each field is "*", a number, a range "a-b", any of those with a step
 * "/n" ("*" and ranges only), or a comma list of them.  Names are case
 * insensitive.  @hourly, @daily (@midnight), @weekly, @monthly, @yearly
 * (@annually) stand for their usual five fields.  The day rule is Vixie
 * cron's: when neither day field starts with "*", a day matches if
 * EITHER the day of month OR the day of week matches; otherwise both
 * must.
 *
 * Times are local wall-clock times (TZ).  Daylight saving time: a wall
 * time that does not exist (the hour skipped in spring) fires at the
 * same distance after the jump (02:30 becomes 03:30), once; a wall time
 * that happens twice (the hour repeated in autumn) fires once, at its
 * first occurrence.
 *
 * Pure computation; any thread.
 */
#ifndef MAILKEEP_CRON_H
#define MAILKEEP_CRON_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "mailkeep/err.h"

#define MK_CRON_EXPR_MAX 256

struct mk_cron {
	uint64_t minutes; /* bit m: minute m */
	uint32_t hours;
	uint32_t mdays; /* bit d: day d, 1-31 */
	uint16_t months; /* bit m: month m, 1-12 */
	uint8_t wdays; /* bit w: 0 Sunday .. 6 Saturday */
	bool mday_star; /* the day-of-month field starts with '*' */
	bool wday_star;
};

/* Parse expr; the error names the field and what is wrong with it. */
int mk_cron_parse(const char *expr, struct mk_cron *cron, struct mk_err *err);

/*
 * The first time strictly after `after` (seconds since the epoch) when
 * cron fires, in *next_r: 1 found, 0 when it never fires within 28 years
 * (say "0 0 31 2 *").
 */
int mk_cron_next(const struct mk_cron *cron, time_t after, time_t *next_r);

#endif
