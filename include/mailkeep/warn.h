/*
 * warn: when a mailbox should be warned that it is filling up, the
 * warning mail itself, and a "full in N days" estimate.
 *
 * The state machine works on one resource (the daemon keeps one state
 * for storage, and one for messages where that is limited).  Thresholds
 * are percentages of the limit.  A threshold is crossed when usage >=
 * limit * threshold / 100.  Crossing warns once, for the highest
 * threshold crossed (a jump from 70% to 95% warns about 90, and marks 80
 * as well, silently).  A crossed threshold re-arms only when usage drops
 * below threshold - margin percent, so that usage wobbling around a
 * threshold does not warn again and again.  While usage stays at or
 * above the highest crossed threshold, that warning repeats every repeat
 * seconds (0: never).  An unlimited resource has no warnings and clears
 * the state.  Time is always passed in; nothing here reads a clock.
 *
 * The state is a small set of thresholds, each with the time its warning
 * was sent; mk_warn_state_format and mk_warn_state_parse turn it into a
 * short text for the catalog ("80@1764160000 90@1764163600").  Marks for
 * thresholds no longer configured are dropped at the next update.
 *
 * Warning mail: a template (UTF-8 text; an optional first line
 * "Subject: ..." then an empty line, then the body) with the placeholders
 * %{address}, %{percent}, %{usage}, %{limit} and %{threshold} (others are
 * left as they are) becomes a complete RFC 5322 message with LF line
 * endings: Date, From, To, Subject (RFC 2047-encoded when not ASCII),
 * Message-ID, MIME-Version, Content-Type text/plain; charset=utf-8,
 * Content-Transfer-Encoding (7bit or 8bit), Auto-Submitted:
 * auto-generated.
 *
 * Pure functions, any thread, except mk_warn_template_load (blocking I/O).
 */
#ifndef MAILKEEP_WARN_H
#define MAILKEEP_WARN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

#define MK_WARN_THRESHOLDS_MAX 8
#define MK_WARN_THRESHOLD_MAX 1000 /* percent; above 100 for grace */
#define MK_WARN_STATE_MAX 256 /* bytes of a formatted state */
#define MK_WARN_TEMPLATE_MAX 65536 /* bytes of a template */
#define MK_WARN_ESTIMATE_SAMPLES 14 /* the most recent samples used */
#define MK_WARN_ESTIMATE_DAYS_MAX 3650 /* further away is "no estimate" */

struct mk_warn_config {
	unsigned thresholds[MK_WARN_THRESHOLDS_MAX]; /* ascending, percent */
	size_t nthresholds;
	unsigned margin; /* percentage points; below every threshold */
	int64_t repeat; /* seconds; 0: never repeat */
};

struct mk_warn_mark {
	unsigned threshold;
	int64_t warned_at; /* when its warning was sent */
};

struct mk_warn_state {
	struct mk_warn_mark marks[MK_WARN_THRESHOLDS_MAX]; /* ascending */
	size_t nmarks;
};

/* 80, 90 and 100 percent, a margin of 5 points, repeats after 24 hours. */
void mk_warn_config_init(struct mk_warn_config *conf);

/*
 * Set the thresholds from "80,90,100" (commas or blanks): 1 to
 * MK_WARN_THRESHOLDS_MAX numbers, strictly ascending, each from 1 to
 * MK_WARN_THRESHOLD_MAX and above the margin.
 */
int mk_warn_config_set_thresholds(
    struct mk_warn_config *conf, const char *list, struct mk_err *err);

/* Set the margin; it must stay below the lowest threshold. */
int mk_warn_config_set_margin(
    struct mk_warn_config *conf, unsigned margin, struct mk_err *err);

/*
 * Update state for usage against limit (0: unlimited) at time now.
 * Returns true when a warning is due, with the threshold to warn about
 * in *threshold_r; the state then records it as sent at now.
 */
bool mk_warn_update(const struct mk_warn_config *conf,
    struct mk_warn_state *state, uint64_t usage, uint64_t limit, int64_t now,
    unsigned *threshold_r);

/* The state as text into buf (MK_WARN_STATE_MAX is enough); "" when
 * empty.  Returns the length, as snprintf. */
size_t mk_warn_state_format(
    const struct mk_warn_state *state, char *buf, size_t size);

/* Parse what mk_warn_state_format wrote. */
int mk_warn_state_parse(
    const char *text, struct mk_warn_state *state_r, struct mk_err *err);

/* The whole percent of limit that usage is (floor, at most 99999). */
unsigned mk_warn_percent(uint64_t usage, uint64_t limit);

/* What goes into one warning mail. */
struct mk_warn_message {
	const char *from; /* "Mail system <postmaster@example.org>", ASCII */
	const char *to; /* the mailbox address */
	const char *hostname; /* right-hand side of the Message-ID */
	const char *unique; /* a unique token for the Message-ID (random) */
	int64_t date; /* seconds since the epoch */
	uint64_t usage;
	uint64_t limit;
	unsigned threshold;
};

/*
 * Render the template (len bytes) for m into a message, *msg_r (NUL-
 * ended, owned by the caller, free()) of *len_r bytes.  Fails on a
 * template or a value that is not UTF-8, holds control characters (other
 * than TAB and line ends) or would make a line longer than 998 bytes,
 * and on a header value with a line break.
 */
int mk_warn_render(const char *tmpl, size_t len,
    const struct mk_warn_message *m, char **msg_r, size_t *len_r,
    struct mk_err *err);

/* One line of the daily digest: the resource nearest its limit. */
struct mk_warn_digest_entry {
	const char *address;
	uint64_t usage;
	uint64_t limit;
	unsigned percent; /* mk_warn_percent(usage, limit) */
};

/*
 * The daily digest for the administrator (m->to): the top fullest of the
 * n limited mailboxes (entries are sorted here: percent, then usage,
 * descending, then address), with a subject that counts the full ones.
 * m->usage, limit and threshold are not used.  *msg_r as mk_warn_render.
 */
int mk_warn_digest_render(struct mk_warn_digest_entry *entries, size_t n,
    size_t top, const struct mk_warn_message *m, char **msg_r, size_t *len_r,
    struct mk_err *err);

/* Read a template file (at most MK_WARN_TEMPLATE_MAX bytes) into *tmpl_r
 * (NUL-ended, free()).  Blocking I/O. */
int mk_warn_template_load(
    const char *path, char **tmpl_r, size_t *len_r, struct mk_err *err);

/* One daily usage sample. */
struct mk_warn_sample {
	int64_t day; /* days since the epoch; strictly ascending */
	uint64_t usage;
};

/*
 * In how many days usage reaches limit at the current rate: the least
 * squares slope over the last MK_WARN_ESTIMATE_SAMPLES samples, from the
 * last sample's usage.  Returns 1 with *days_r set (0 when already at
 * the limit), or 0 for no estimate: unlimited, fewer than two samples,
 * days out of order, usage flat or shrinking, or more than
 * MK_WARN_ESTIMATE_DAYS_MAX days away.
 */
int mk_warn_estimate(const struct mk_warn_sample *samples, size_t n,
    uint64_t limit, uint64_t *days_r);

#endif
