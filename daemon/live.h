/*
 * live: every mailbox's usage, kept exact from inotify events.
 *
 * Each directory event is applied as two independent halves: a name
 * leaving new/ or cur/ subtracts the size from its name (or, for a name
 * without ,S= or ,W=, from the folder's sparse size map), and a name
 * arriving adds the size from its own name (or from stat()).  No half
 * waits for its partner.  Folders are known by directory inode, so a
 * folder rename only renames.  Anything that cannot be applied exactly
 * (a queue overflow, a lost watch, events during a scan) causes a rescan
 * of what it touched; scans run in the worker pool and set their own
 * watches before listing, so nothing falls between a scan and the events.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_LIVE_H
#define MAILKEEPD_LIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/scan.h"

#include "daemon.h"

struct mk_live_folder {
	struct mk_live_mailbox *mb; /* the mailbox it belongs to */
	/* IMAP name, UTF-8, then (after its NUL) the directory: "" for
	 * INBOX, ".Archive.2024"; interned. */
	const char *name;
	uint64_t ino;
	int64_t new_mtime_ns; /* at the last listing */
	int64_t cur_mtime_ns;
	struct mk_usage usage;
	int wd_new, wd_cur, wd_dir; /* -1 when not watched */
	uint32_t detached; /* cookie of a pending rename, or 0 */
};

struct mk_live_mailbox {
	char *address;
	char *relpath; /* after the address, or its own allocation once
			* changed */
	struct mk_usage total;
	struct mk_live_folder **folders;
	uint32_t nfolders;
	int wd_root;
	int64_t scanned_ns; /* when the usage was last listed */
	bool stale; /* from the catalog, or being rescanned */
	bool polled; /* not every directory could be watched */
	bool scanning;
	bool dirty; /* changed while being scanned */
	bool queued;
	bool unsaved; /* changed since written to the catalog */
	bool from_catalog; /* folders as the catalog had them, not scanned */
	struct mk_hmap *sized; /* (folder, name) -> sizes, for names without
				* ,S=; NULL when there are none */
	struct mk_mailbox_usage *prev; /* catalog usage until the 1st scan,
					* kept only when it counts names
					* without sizes */
};

struct mk_live *mk_live_new(struct mk_daemon *d);
void mk_live_free(struct mk_live **livep);

/* Take the usage recorded in the catalog (stale until rescanned). */
int mk_live_load(
    struct mk_live *live, struct mk_catalog *cat, struct mk_err *err);

/* List the store: new mailboxes are scanned, vanished ones dropped. */
void mk_live_refresh_store(struct mk_live *live);

/* Rescan a mailbox (1 found, 0 unknown), or every mailbox (NULL). */
int mk_live_rescan(struct mk_live *live, const char *address);

/* An inotify event, and the queue overflowing. */
void mk_live_event(struct mk_live *live, int wd, uint32_t mask, uint32_t cookie,
    const char *name);
void mk_live_overflow(struct mk_live *live);

/* Lookups for the status socket and the policy service. */
const struct mk_live_mailbox *mk_live_find(
    const struct mk_live *live, const char *address);
size_t mk_live_count(const struct mk_live *live);
/* Every mailbox, in no order; the caller frees the array only. */
const struct mk_live_mailbox **mk_live_all(
    const struct mk_live *live, size_t *count_r);

/* Counts for status: stale and polled mailboxes, watches, scans queued. */
struct mk_live_counts {
	size_t mailboxes, stale, polled, watches, queued, scanning;
	uint64_t bytes, messages;
};
void mk_live_counts(const struct mk_live *live, struct mk_live_counts *c);

/* Write changed usage to the catalog now, on this thread (shutdown). */
void mk_live_persist_sync(struct mk_live *live, struct mk_catalog *cat);

#endif
