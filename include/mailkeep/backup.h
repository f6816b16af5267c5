/*
 * backup: incremental backups of Maildir++ mailboxes into a repository,
 * indexed by the catalog.  docs/backup.md tells the whole story.
 *
 * A run: mk_backup_run_begin(), then sessions (struct mk_backup) back up
 * mailboxes one at a time with mk_backup_mailbox(), then
 * mk_backup_run_end() writes the run object that lists the run's
 * mailbox snapshots.  Every mailbox snapshot is a full point in time,
 * but only new message files are read: a base name the catalog knows is
 * never read again, so a flag change or a move is a catalog row.
 *
 * Order of writes, so that a crash at any instant leaves a consistent
 * repository and catalog: packs are stored durably before their blobs
 * are recorded; a mailbox's snapshot objects are stored before its
 * catalog rows (versions, vanished marks, the snapshot) are committed in
 * one transaction; the run object is written last, and a run that a
 * crash left open is published by the next mk_backup_run_begin().
 *
 * Thread safety: blocking I/O, never on an event loop.  A session
 * belongs to one thread and uses its own catalog connection; sessions
 * of one run may back up different mailboxes at once (the repository is
 * shared).  One run at a time per catalog.  A session starts one worker
 * thread per processor (at most 8) that hashes and compresses new
 * content; the session's thread reads files with the idle I/O class,
 * dedups, encrypts into packs and writes the catalog.
 */
#ifndef MAILKEEP_BACKUP_H
#define MAILKEEP_BACKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"
#include "mailkeep/snapshot.h"

/* A message whose header does not end within this many bytes is
 * stored whole, as opaque data. */
#define MK_BACKUP_HEADER_MAX (1u << 20)
/* dovecot-uidlist, dovecot-keywords, subscriptions: larger is an error. */
#define MK_BACKUP_META_MAX (64u << 20)
/* Message files of one mailbox. */
#define MK_BACKUP_MESSAGES_MAX 4000000u

enum mk_backup_kind {
	MK_BACKUP_SPLIT, /* a header blob, then the body */
	MK_BACKUP_OPAQUE, /* compressed or encrypted: stored as it is */
};

/*
 * How to store a message file, from its first len bytes (all of it when
 * eof): opaque when it starts with a gzip, bzip2, xz, zstd, Dovecot LZ4
 * or Dovecot mail_crypt magic, or when no header end is found within
 * MK_BACKUP_HEADER_MAX bytes; else split, the header running to the end
 * of the first "\n\n" or "\n\r\n" (a file that starts with an empty line
 * has an empty header section: the header is that line; a file with
 * neither is all header).  *header_len_r is set for MK_BACKUP_SPLIT.
 */
enum mk_backup_kind mk_backup_split(
    const void *data, size_t len, bool eof, size_t *header_len_r);

/* What backing up one mailbox did. */
struct mk_backup_stats {
	int64_t snapshot; /* the catalog id of the new snapshot */
	int64_t time_ns; /* when its listing started */
	uint64_t folders;
	uint64_t messages; /* in the snapshot */
	uint64_t bytes; /* their size */
	uint64_t read_messages; /* message files read (new content) */
	uint64_t read_bytes; /* their bytes */
	uint64_t meta_bytes; /* uidlists, keywords, subscriptions read */
	uint64_t new_blobs;
	uint64_t stored_bytes; /* written to packs: compressed, encrypted */
	uint64_t packs;
	uint64_t new_versions; /* new messages, flag changes and moves */
	uint64_t vanished; /* versions that ended */
	int64_t duration_ns;
	bool listed_ahead; /* by mk_backup_prefetch()'s thread */
	struct mk_warnings skipped; /* entries not backed up, and why */
};

/*
 * Start a run: first publish any run a crash left open, then record a
 * new one.  *run_r is its catalog id, id_r its id in the repository.
 */
int mk_backup_run_begin(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t *run_r, char id_r[MK_SNAPSHOT_RUN_ID_LEN + 1], struct mk_err *err);

/*
 * End a run: store its list of mailbox snapshots and its run object,
 * mark it ended, checkpoint the catalog's WAL.
 */
int mk_backup_run_end(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    struct mk_err *err);

/*
 * Store metadata chunks (a run's or a mailbox's lists) in packs of their
 * own, each recorded in the catalog once durable; locs[i] gets chunk i's
 * pack and entry.  With reuse, a chunk the catalog holds in a reusable
 * pack is not stored again (prune, which may be about to repack that
 * pack, stores every chunk anew).  *written_r, when not NULL, grows by
 * the bytes of the packs stored.
 */
int mk_backup_store_meta(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_snapshot_chunks *chunks, struct mk_snapshot_loc *locs,
    bool reuse, uint64_t *written_r, struct mk_err *err);

struct mk_backup;

/* A session of run; repo and cat are borrowed until the free. */
int mk_backup_new(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    struct mk_backup **bk_r, struct mk_err *err);
void mk_backup_free(struct mk_backup **bkp);

/*
 * Called after each read from a message file with the bytes just read,
 * on the session's thread: it may sleep (a bandwidth limit) and count
 * (progress).  Returning -1 with err set stops mk_backup_mailbox(), which
 * then fails with that error and records nothing of the mailbox (a
 * cancel).  NULL: no callback.
 */
typedef int mk_backup_read_cb(uint64_t bytes, void *arg, struct mk_err *err);
void mk_backup_set_read_cb(
    struct mk_backup *bk, mk_backup_read_cb *cb, void *arg);

/*
 * Give the session's snapshots the time time_ns (ns since the epoch)
 * instead of the time each mailbox's listing starts, as restic's
 * `backup --time` does: for a backup of a copy made earlier, and for
 * tests that simulate days.  0 goes back to now.
 */
void mk_backup_set_time(struct mk_backup *bk, int64_t time_ns);

/*
 * Back up the Maildir at relpath beneath rootfd (no symbolic link on the
 * way) as address.  On success the snapshot is committed and *stats_r
 * tells what it cost; on failure nothing of this mailbox is recorded
 * (packs already stored stay, recorded, for the next try to reuse).
 */
int mk_backup_mailbox(struct mk_backup *bk, int rootfd, const char *relpath,
    const char *address, struct mk_backup_stats *stats_r, struct mk_err *err);

/*
 * Name the mailbox that the call to mk_backup_mailbox() after the next
 * will back up: the next call reads what the catalog has of it and has a
 * thread of the session list its folders meanwhile, so that the two take
 * both processors.  A hint: a listing that is not used, or that failed,
 * is dropped, and mk_backup_mailbox() lists the mailbox itself.
 */
void mk_backup_prefetch(
    struct mk_backup *bk, int rootfd, const char *relpath, const char *address);

/*
 * How a mailbox backed up with shared packs ended: err is NULL when its
 * snapshot is committed (stats->snapshot is set), else why it was not.
 */
typedef void mk_backup_done_cb(const char *address,
    const struct mk_backup_stats *stats, const struct mk_err *err, void *arg);

/*
 * Share packs between the mailboxes of the session: a mailbox no longer
 * ends its own pack.  A mailbox whose new blobs are all recorded is
 * committed before mk_backup_mailbox() returns; one with blobs in the
 * open pack waits until that pack is stored (full, or at
 * mk_backup_flush(), or early when many mailboxes wait), so packs stay
 * durable before catalog rows point at them.  Either way, cb tells how
 * it ended; mk_backup_mailbox() then returns 0 once the mailbox is
 * captured, with *stats_r as captured (snapshot 0 while it waits), and
 * -1 (cb not called) when the capture failed.
 */
void mk_backup_share_packs(
    struct mk_backup *bk, mk_backup_done_cb *cb, void *arg);

/*
 * Store the open pack and commit the mailboxes waiting for it (each
 * reported to the callback).  Call it before mk_backup_run_end().
 * Returns -1 when the pack could not be stored: the waiting mailboxes
 * are then reported failed.
 */
int mk_backup_flush(struct mk_backup *bk, struct mk_err *err);

/*
 * The runs in the repository, read from their run objects (no catalog
 * needed), oldest first.  A damaged run object is logged and skipped.
 */
typedef void mk_backup_run_cb(const struct mk_snapshot_run *run, void *arg);
int mk_backup_runs(
    struct mk_repo *repo, mk_backup_run_cb *cb, void *arg, struct mk_err *err);

/*
 * Read run id (its full hex id) and its mailbox snapshots from the
 * repository.  The caller frees both (mk_snapshot_run_free,
 * mk_snapshot_entries_free).
 */
int mk_backup_run_read(struct mk_repo *repo, const char *id,
    struct mk_snapshot_run **run_r, struct mk_snapshot_entry **entries_r,
    size_t *count_r, struct mk_err *err);

#endif
