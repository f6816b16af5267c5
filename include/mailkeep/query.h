/*
 * query: the --search language of `mailkeep ls`.
 *
 * A query is terms separated by spaces, all of which must match.  A term
 * is KEY:VALUE or a plain word; VALUE (or the word) may be in double
 * quotes to hold spaces.  Keys:
 *   from:, to: (To and Cc), subject:   substring, ASCII case ignored
 *   message-id: (or msgid:)            the whole id, <> optional
 *   since:TIME, before:TIME            the INTERNALDATE (mk_when_parse)
 *   larger:SIZE, smaller:SIZE          the size in bytes (500K, 2M)
 * A plain word matches From, To or Subject.
 *
 * Pure: callable from any thread; a struct mk_query is read-only once
 * parsed.
 */
#ifndef MAILKEEP_QUERY_H
#define MAILKEEP_QUERY_H

#include <stdbool.h>
#include <stdint.h>

#include "mailkeep/err.h"

#define MK_QUERY_TERMS_MAX 32
#define MK_QUERY_VALUE_MAX 256

struct mk_query;

/* What a message offers to a query; NULL strings match nothing. */
struct mk_query_msg {
	const char *message_id;
	const char *from;
	const char *to;
	const char *subject;
	int64_t time_ns; /* INTERNALDATE */
	uint64_t size;
};

/* Parse s, with TIMEs relative to now_ns.  -1 with err on bad syntax. */
int mk_query_parse(
    const char *s, int64_t now_ns, struct mk_query **q_r, struct mk_err *err);
void mk_query_free(struct mk_query **qp);

/* Does m match every term of q? */
bool mk_query_match(const struct mk_query *q, const struct mk_query_msg *m);

#endif
