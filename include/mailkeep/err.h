/*
 * err: the error detail that fallible functions hand back to their caller.
 *
 * A fallible function returns 0 on success and -1 on failure (lookups: 1
 * found, 0 absent, -1 error) and fills a caller-owned struct mk_err with a
 * message of the form "call(args): reason".  Nothing is allocated on the
 * error path.  The layer that decides what to do about an error logs it,
 * once.
 */
#ifndef MAILKEEP_ERR_H
#define MAILKEEP_ERR_H

#include <stddef.h>

#define MK_ERR_MSG_MAX 512

struct mk_err {
	int sys_errno; /* errno when the error came from the system, or 0 */
	char msg[MK_ERR_MSG_MAX];
};

#define MK_PRINTF(f, a) __attribute__((format(printf, f, a)))

/*
 * Problems that do not stop an operation (a symbolic link skipped, a name
 * not understood): counted, with the first one kept for the log line.
 */
struct mk_warnings {
	unsigned long long count;
	char first[256];
};

/* Clear an error.  NULL is allowed. */
void mk_err_clear(struct mk_err *err);

/* Set the message; returns -1 so that "return mk_err_set(...)" reads well. */
int mk_err_set(struct mk_err *err, const char *fmt, ...) MK_PRINTF(2, 3);

/* Like mk_err_set, appending ": strerror(errno)" and saving errno. */
int mk_err_sys(struct mk_err *err, const char *fmt, ...) MK_PRINTF(2, 3);

/* Prefix the message already in err with "prefix: ". */
int mk_err_prefix(struct mk_err *err, const char *fmt, ...) MK_PRINTF(2, 3);

/* Count a problem; the first one's text is kept. */
void mk_warnings_add(struct mk_warnings *w, const char *fmt, ...)
    MK_PRINTF(2, 3);

#endif
