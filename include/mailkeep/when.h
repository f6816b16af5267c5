/*
 * when: the TIME an operator types, as a point in time.
 *
 * Accepted, in the local time zone unless a zone is given:
 *   "2026-11-24 14:00", "2026-11-24 14:00:30", "2026-11-24" (its 00:00),
 *   ISO 8601 "2026-11-24T14:00:00Z", "2026-11-24T14:00+01:00",
 *   "now", "today", "yesterday" (00:00 of that day),
 *   "N minutes|hours|days|weeks ago" (also the singular and "min", "h",
 *   "d", "w").
 *
 * Pure: callable from any thread (it reads the TZ database).
 */
#ifndef MAILKEEP_WHEN_H
#define MAILKEEP_WHEN_H

#include <stdint.h>

#include "mailkeep/err.h"

/*
 * Parse s relative to now_ns (ns since the epoch) into *ns_r.  Returns 0,
 * or -1 with err saying what is accepted.
 */
int mk_when_parse(
    const char *s, int64_t now_ns, int64_t *ns_r, struct mk_err *err);

#endif
