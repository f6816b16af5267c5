/*
 * header: the fields people search mail by, read from a message's header
 * section (RFC 5322): Message-ID, From, To (with Cc), Subject and Date.
 *
 * Folded lines are unfolded; RFC 2047 encoded-words in UTF-8, US-ASCII
 * and ISO-8859-1/-15 (B and Q) are decoded into UTF-8, others are kept
 * as written; control characters become spaces and invalid UTF-8 '?';
 * what is inside <...> in From and To (or the whole field without one)
 * is lower-cased.  The first occurrence of a field counts.  Every field
 * is cut at its buffer's size; input of any length and content is
 * accepted (only the first MK_HEADER_SCAN_MAX bytes are read).
 *
 * Pure: callable from any thread.
 */
#ifndef MAILKEEP_HEADER_H
#define MAILKEEP_HEADER_H

#include <stddef.h>
#include <stdint.h>

#define MK_HEADER_SCAN_MAX (256u * 1024)

struct mk_header {
	char message_id[256];
	char from[512];
	char to[1024]; /* To, then Cc, separated by ", " */
	char subject[512];
	int64_t date; /* the Date field in seconds since the epoch, or 0 */
};

/* Fill h from the header section in data (len bytes). */
void mk_header_parse(const void *data, size_t len, struct mk_header *h);

/*
 * An RFC 5322 date-time ("Tue, 24 Nov 2026 14:00:00 +0100"; the day name
 * and seconds optional, obsolete zones UT, GMT, EST... accepted) in
 * seconds since the epoch, or 0 when it is not one.
 */
int64_t mk_header_date(const char *s);

#endif
