/*
 * maildirsize: the Maildir++ quota file that Courier, maildrop and
 * Dovecot's maildir quota driver keep in the root of a Maildir.
 *
 * Format: the first line holds the limits, "<bytes>S", "<count>C" or both
 * joined by a comma in either order ("0S" or an empty line: no limit);
 * every further line holds two integers, bytes and messages, separated
 * by blanks: the first is a total, later ones are deltas (negative for
 * removals, e.g. "-27434 -1").  Usage is the sum of those lines.  Courier
 * pads the numbers with spaces; leading blanks are allowed.
 *
 * Who writes what: the process that makes a change appends its own delta.
 * mailkeep appends only for messages it writes itself (a warning, a
 * restore) and otherwise rewrites the whole file: when it is missing,
 * when the rules below call for it, or when the daemon finds its sum
 * differing from the live usage.
 *
 * Parsing and the rebuild decision are pure.  mk_maildirsize_read,
 * mk_maildirsize_write and mk_maildirsize_append do blocking I/O on the
 * Maildir and never follow a symbolic link named maildirsize: call them
 * from a worker (or the CLI), not from the event loop.
 */
#ifndef MAILKEEP_MAILDIRSIZE_H
#define MAILKEEP_MAILDIRSIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

/* A file this large or larger is rebuilt (the spec's 5120-byte rule). */
#define MK_MAILDIRSIZE_MAX 5120
/* A file over quota and this old (seconds) is rebuilt. */
#define MK_MAILDIRSIZE_STALE 900
/* Room for a file made by mk_maildirsize_format. */
#define MK_MAILDIRSIZE_FORMAT_MAX 128

struct mk_maildirsize {
	uint64_t bytes_limit; /* 0: none */
	uint64_t count_limit; /* 0: none */
	int64_t bytes; /* sum of the lines */
	int64_t count;
	size_t lines; /* lines after the first */
	bool partial; /* an unfinished last line (an append in progress) */
	size_t size; /* of the file, in bytes */
	int64_t mtime; /* of the file, seconds; set by mk_maildirsize_read */
};

enum mk_maildirsize_rebuild {
	MK_MAILDIRSIZE_KEEP,
	MK_MAILDIRSIZE_MISSING,
	MK_MAILDIRSIZE_OVERSIZED, /* MK_MAILDIRSIZE_MAX bytes or more */
	MK_MAILDIRSIZE_CORRUPT, /* cannot be parsed, or a negative sum */
	MK_MAILDIRSIZE_LIMIT_CHANGED, /* the first line is not the limit */
	MK_MAILDIRSIZE_OVER_QUOTA, /* over, and more than a line or stale */
};

/*
 * Parse the contents of a maildirsize file.  A last line without a
 * newline is counted when it is complete; when it is the beginning of a
 * line still being appended ("123", "-5 ") it is left out and partial is
 * set.  Returns -1 with err set for anything else that is not the format:
 * a NUL byte, a bad limit line, a line that is not two integers, a sum
 * that overflows or is negative.
 */
int mk_maildirsize_parse(const char *buf, size_t len,
    struct mk_maildirsize *ms_r, struct mk_err *err);

/*
 * Whether, and why, the file must be rebuilt for the configured limits
 * (0: none), at time now (seconds, same clock as mtime).  ms is NULL when
 * the file is missing; corrupt when it could not be parsed.  The rules of
 * the Maildir++ spec, and Dovecot's: missing; MK_MAILDIRSIZE_MAX bytes or
 * more; corrupt; a limit line other than the configured limits; or a sum
 * over a limit (strictly greater) while the file has more than one line
 * after the limits or is MK_MAILDIRSIZE_STALE seconds old.
 */
enum mk_maildirsize_rebuild mk_maildirsize_rebuild_due(
    const struct mk_maildirsize *ms, bool corrupt, uint64_t bytes_limit,
    uint64_t count_limit, int64_t now);

/* "keep", "missing", "oversized", "corrupt", "limit", "over-quota". */
const char *mk_maildirsize_rebuild_name(enum mk_maildirsize_rebuild why);

/*
 * The contents of a rebuilt file into buf (MK_MAILDIRSIZE_FORMAT_MAX
 * bytes is enough): the limit line (as Dovecot: "0S" when there is none)
 * and one line of totals.  Returns the length.
 */
size_t mk_maildirsize_format(uint64_t bytes_limit, uint64_t count_limit,
    uint64_t bytes, uint64_t count, char *buf, size_t size);

/*
 * Read and parse maildirfd/maildirsize.  Returns 1 with *ms_r filled, 0
 * when there is no such file, or -1 with err set.  A file of
 * MK_MAILDIRSIZE_MAX bytes or more is not parsed (size tells).  A file
 * that does not parse sets *corrupt_r and err, and returns 1.
 */
int mk_maildirsize_read(int maildirfd, struct mk_maildirsize *ms_r,
    bool *corrupt_r, struct mk_err *err);

/*
 * Replace maildirfd/maildirsize with data, atomically: a new file in the
 * Maildir's tmp/ (beside maildirsize when there is no tmp/) created with
 * O_EXCL, owned by the owner and group of the Maildir directory, with the
 * Maildir's permissions without execute bits (0700 gives 0600), written,
 * fsync'ed, renamed over maildirsize, and the directory fsync'ed.  The
 * temporary file is removed on failure.
 */
int mk_maildirsize_write(
    int maildirfd, const char *data, size_t len, struct mk_err *err);

/*
 * Append the delta "<bytes> <count>\n" to an existing maildirfd/
 * maildirsize with O_APPEND, in one write(2), for a message mailkeep
 * wrote itself.  Returns 1 when appended, 0 when there is no file (the
 * next rebuild counts the message), or -1 with err set.
 */
int mk_maildirsize_append(
    int maildirfd, int64_t bytes, int64_t count, struct mk_err *err);

#endif
