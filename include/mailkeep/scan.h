/*
 * scan: the usage of a mailbox, read from its Maildir++ directories.
 *
 * Messages are the regular files in new/ and cur/ of INBOX and of every
 * folder whose name does not start with '.'; tmp/ and Dovecot's own files
 * are not counted.  The physical size is ,S= or stat(); the virtual size
 * is ,W= or the file's CRLF length (read once).  Symbolic links are never
 * followed.  Files that vanish between readdir() and stat() are normal:
 * Dovecot keeps working while we scan.  new/ is listed before cur/, and a
 * base name seen in new/ is not counted again in cur/, so a message moved
 * from new/ to cur/ during the scan counts once; a folder whose new/ or
 * cur/ changed while it was listed is listed again (up to three times).
 *
 * Blocking I/O: call from a worker thread or a command-line tool.
 */
#ifndef MAILKEEP_SCAN_H
#define MAILKEEP_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

struct mk_usage {
	uint64_t bytes; /* physical */
	uint64_t vbytes; /* virtual (CRLF) */
	uint64_t messages;
};

struct mk_folder_usage {
	char *name; /* IMAP name in UTF-8: "INBOX", "Archive/2024" */
	char *dir; /* on disk: "" for INBOX, ".Archive.2024" */
	uint64_t ino; /* inode of the folder directory */
	int64_t new_mtime_ns; /* mtimes of new/ and cur/ before listing */
	int64_t cur_mtime_ns;
	struct mk_usage usage;
	uint64_t unsized; /* messages whose name lacks ,S= or ,W= */
};

struct mk_mailbox_usage {
	char *address;
	char *relpath;
	struct mk_usage total;
	struct mk_folder_usage *folders; /* INBOX first, then by name */
	size_t nfolders;
	struct mk_warnings malformed; /* message names not understood */
	struct mk_warnings skipped; /* symbolic links, unreadable entries */
};

/* Add b into a; subtract b from a (never below zero). */
void mk_usage_add(struct mk_usage *a, const struct mk_usage *b);
void mk_usage_sub(struct mk_usage *a, const struct mk_usage *b);

/*
 * What a live watcher needs from a scan.  Every member may be NULL.
 */
struct mk_scan_hooks {
	/* Called with the open folder directory before it is listed, so
	 * that a watch set here sees every change the listing may miss. */
	void (*folder_cb)(int folderfd, const char *dir, void *arg);
	/* A message whose name lacks ,S= or ,W=, with the sizes found:
	 * a watcher must remember them to subtract them later. */
	void (*unsized_cb)(const char *dir, bool in_cur, const char *name,
	    uint64_t size, uint64_t vsize, void *arg);
	/*
	 * Usage known from before (the catalog) and when it was taken: a
	 * folder whose new/ and cur/ mtimes equal the ones in prev, lie
	 * more than 2 s before prev_ns, and that holds no unsized message,
	 * is taken from prev without listing it again.
	 */
	const struct mk_mailbox_usage *prev;
	int64_t prev_ns;
	void *arg;
};

/*
 * Scan the Maildir at relpath beneath rootfd (no symbolic link on the
 * way), for address.  sep is the hierarchy separator of folder names.
 * hooks may be NULL.  Returns 0 and a result owned by the caller, or -1
 * with err set when the Maildir cannot be opened.
 */
int mk_scan_mailbox(int rootfd, const char *relpath, const char *address,
    char sep, const struct mk_scan_hooks *hooks,
    struct mk_mailbox_usage **usage_r, struct mk_err *err);

/*
 * The virtual size of dirfd/name, read through once (not following a
 * symbolic link).  Returns 0, 1 when the file is gone, or -1 with errno
 * set on a read error.
 */
int mk_scan_read_vsize(int dirfd, const char *name, uint64_t *vsize_r);

void mk_mailbox_usage_free(struct mk_mailbox_usage **usagep);

#endif
