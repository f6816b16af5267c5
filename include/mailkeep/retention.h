/*
 * retention: which snapshots a policy keeps, with the semantics of
 * restic's forget policy (docs/backup.md, "Retention").
 *
 * The snapshots of one group (one mailbox of one host) are taken newest
 * first.  Each rule with a count n > 0 has a bucket function: last (every
 * snapshot is its own bucket), hourly (year, month, day, hour), daily
 * (year, month, day), weekly (ISO 8601 year and week), monthly (year,
 * month), yearly (year), all in UTC.  A rule keeps a snapshot whose bucket
 * differs from the bucket of the last snapshot that rule kept, until it
 * has kept n; so each rule keeps the newest snapshot of each of its n
 * newest buckets, independently of the other rules, and a snapshot is
 * kept when any rule keeps it.  A policy with every count 0 keeps all.
 *
 * Pure functions: callable from any thread.
 */
#ifndef MAILKEEP_RETENTION_H
#define MAILKEEP_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mk_retention_rule {
	MK_RETENTION_LAST,
	MK_RETENTION_HOURLY,
	MK_RETENTION_DAILY,
	MK_RETENTION_WEEKLY,
	MK_RETENTION_MONTHLY,
	MK_RETENTION_YEARLY,
	MK_RETENTION_RULES,
};

struct mk_retention {
	uint64_t keep[MK_RETENTION_RULES]; /* by enum mk_retention_rule */
};

/* Whether no rule has a count (the policy keeps everything). */
bool mk_retention_empty(const struct mk_retention *policy);

/* "last", "hourly", ... */
const char *mk_retention_rule_name(enum mk_retention_rule rule);

/*
 * Select among n snapshots with times times_ns[] (ns since the epoch, in
 * any order).  reasons_r[i] gets a bit (1 << rule) for each rule that
 * keeps snapshot i; 0 means forget it.  With an empty policy every
 * reason is 1 << MK_RETENTION_RULES ("no policy").
 */
void mk_retention_select(const struct mk_retention *policy,
    const int64_t *times_ns, size_t n, unsigned *reasons_r);

#endif
