/*
 * maildir: the Maildir++ naming rules, as Dovecot and Courier write them.
 *
 * A message file name is <base>[,S=<size>][,W=<vsize>][,X=...][:2,<flags>].
 * The base is the unique part; ,S= is the physical (LF) size, ,W= the
 * virtual (CRLF) size that IMAP reports.  Flags are the system flags
 * D F P R S T and Dovecot's keyword letters a-z.  A folder is a directory
 * ".Name" or ".Parent.Child" beside cur/ new/ tmp/ of INBOX; its on-disk
 * name is modified UTF-7 (RFC 3501).
 *
 * Pure functions: no I/O, callable from any thread.
 */
#ifndef MAILKEEP_MAILDIR_H
#define MAILKEEP_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

/* Dovecot keyword letters a-z plus the system flags. */
#define MK_MAILDIR_FLAGS_MAX 32

struct mk_maildir_name {
	size_t base_len; /* bytes of the unique part */
	bool has_size; /* ,S= present and valid */
	bool has_vsize; /* ,W= present and valid */
	bool has_info; /* ":2," present */
	uint64_t size;
	uint64_t vsize;
	char flags[MK_MAILDIR_FLAGS_MAX + 1]; /* as in the name, NUL ended */
};

enum mk_maildir_entry {
	MK_MAILDIR_MESSAGE, /* a message name (maybe malformed) */
	MK_MAILDIR_HIDDEN, /* starts with '.': not a message */
};

/* What a directory entry inside new/ or cur/ is, by its name alone. */
enum mk_maildir_entry mk_maildir_classify(const char *name);

/*
 * Parse a message file name.  Returns 0 when the name is well formed, -1
 * when it is not (empty base, bad or overflowing ,S= or ,W=, unknown info
 * version, flags that are not letters, too many flags).  On -1 the fields
 * that could be read are still filled, has_size and has_vsize are false
 * for a bad size, and err says what is wrong; the file is still a message,
 * sized by stat().
 */
int mk_maildir_name_parse(
    const char *name, struct mk_maildir_name *r, struct mk_err *err);

/*
 * Is this entry of a Maildir root a Maildir++ folder directory name?
 * ".Sent", ".Archive.2024": yes.  ".", "..", "..DOVECOT-TRASHED",
 * ".Foo..Bar", ".Foo.": no (deleted, or not a valid folder name).
 */
bool mk_maildir_is_folder_dir(const char *name);

/*
 * The IMAP name of a folder directory, UTF-8, with sep as the hierarchy
 * separator: "" (the Maildir root) gives "INBOX", ".Archive.2024" gives
 * "Archive/2024", ".Entw&APw-rfe" gives "Entwürfe".  Returns 0, or -1 when
 * the modified UTF-7 is invalid; then buf holds the raw name with bytes
 * outside printable ASCII replaced by '?', still safe to show.
 */
int mk_maildir_folder_name(const char *dir, char sep, char *buf, size_t size);

/*
 * The on-disk directory of an IMAP folder name (the reverse of
 * mk_maildir_folder_name): "INBOX" gives "", "Archive/2024" gives
 * ".Archive.2024".  Returns -1 with err set for names that cannot be a
 * single path component (empty parts, '.' inside a part, control
 * characters, too long).
 */
int mk_maildir_folder_dir(
    const char *name, char sep, char *buf, size_t size, struct mk_err *err);

/*
 * The virtual (CRLF) size of a message whose physical bytes are buf:
 * every LF not preceded by CR counts twice.  *prev_cr carries the state
 * between chunks; start it false.
 */
uint64_t mk_maildir_vsize_add(const char *buf, size_t len, bool *prev_cr);

#endif
