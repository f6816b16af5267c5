/*
 * catalog: the daemon's and the CLI's persistent state in SQLite (WAL):
 * mailboxes, their folders with the directory mtimes seen at the last
 * listing, usage and its daily history.  The only module that includes
 * sqlite3.h.  Migrations are keyed by PRAGMA user_version, so later
 * schema versions (snapshots, message versions) are added, not rewritten.
 *
 * One struct mk_catalog per thread; it is not thread-safe.
 */
#ifndef MAILKEEP_CATALOG_H
#define MAILKEEP_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/pack.h"
#include "mailkeep/quota.h"
#include "mailkeep/scan.h"

struct mk_catalog;

/* The schema version this build writes. */
#define MK_CATALOG_VERSION 7

/*
 * Open (creating with mode 0600) and migrate the catalog at path.
 * Refuses a catalog written by a newer version.
 */
int mk_catalog_open(
    const char *path, struct mk_catalog **cat_r, struct mk_err *err);
void mk_catalog_close(struct mk_catalog **catp);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. */
int mk_catalog_begin(struct mk_catalog *cat, struct mk_err *err);
int mk_catalog_commit(struct mk_catalog *cat, struct mk_err *err);
void mk_catalog_rollback(struct mk_catalog *cat);

/*
 * Record the usage of a mailbox, listed at scanned_ns and current at now_ns
 * (ns since the epoch): the mailbox row, one row per folder (folders no
 * longer there are dropped), and the history sample of now's day.
 */
int mk_catalog_put_usage(struct mk_catalog *cat,
    const struct mk_mailbox_usage *mu, int64_t scanned_ns, int64_t now_ns,
    struct mk_err *err);

/*
 * After a scan of the whole store that started at start_ns: mark every
 * mailbox not recorded since as removed from the store (its row and
 * history stay).  Returns the number marked, or -1.
 */
int64_t mk_catalog_mark_removed(
    struct mk_catalog *cat, int64_t start_ns, struct mk_err *err);

/* Read back one mailbox's usage; 1 found, 0 unknown, -1 error. */
int mk_catalog_get_usage(struct mk_catalog *cat, const char *address,
    struct mk_mailbox_usage **usage_r, struct mk_err *err);

/*
 * Call cb for every mailbox still in the store, in address order, with
 * its usage (which cb takes over and must free) and when it was recorded
 * (ns since the epoch).
 */
typedef void mk_catalog_usage_cb(
    struct mk_mailbox_usage *mu, int64_t scanned_ns, void *arg);
int mk_catalog_load_all(struct mk_catalog *cat, mk_catalog_usage_cb *cb,
    void *arg, struct mk_err *err);

/*
 * Call cb with the daily usage samples of a mailbox, newest first, at
 * most max_days of them; day is days since the epoch (UTC).
 */
typedef void mk_catalog_history_cb(
    int64_t day, const struct mk_usage *u, void *arg);
int mk_catalog_get_history(struct mk_catalog *cat, const char *address,
    unsigned max_days, mk_catalog_history_cb *cb, void *arg,
    struct mk_err *err);

/*
 * Limits set at run time ("quota set"), by target: an address, "@domain"
 * or "default".  Limits with no resource set delete the target's row.
 */
int mk_catalog_limit_put(struct mk_catalog *cat, const char *target,
    const struct mk_quota_limits *l, struct mk_err *err);
typedef void mk_catalog_limit_cb(
    const char *target, const struct mk_quota_limits *l, void *arg);
int mk_catalog_limits_load(struct mk_catalog *cat, mk_catalog_limit_cb *cb,
    void *arg, struct mk_err *err);

/* Warning states (mk_warn_state_format text) by address. */
int mk_catalog_warn_put(struct mk_catalog *cat, const char *address,
    const char *state, struct mk_err *err);
typedef void mk_catalog_warn_cb(
    const char *address, const char *state, void *arg);
int mk_catalog_warns_load(struct mk_catalog *cat, mk_catalog_warn_cb *cb,
    void *arg, struct mk_err *err);

/*
 * Backups (schema version 3).  The catalog indexes the repository: which
 * pack holds each blob, the runs and mailbox snapshots, and the message
 * versions of every mailbox over time.  Rows that point into the
 * repository are added only after what they point to is durable (a pack
 * after mk_repo_put_pack(), a snapshot after its object's pack).  The
 * functions that add rows run inside the caller's transaction
 * (mk_catalog_begin); lookups run anywhere.
 */

/* The state after the newest snapshot, for mk_catalog_versions_at(). */
#define MK_CATALOG_NOW INT64_MAX

/* Record a stored pack and where each of its blobs is.  A blob already
 * recorded in another pack keeps its first place unless that pack is
 * tombstoned.  Recording a pack again records its blobs again. */
int mk_catalog_pack_add(struct mk_catalog *cat, const struct mk_pack *pack,
    int64_t created_ns, struct mk_err *err);

/*
 * Where blob id is: 1 found (pack_r and entry_r filled when not NULL), 0
 * not recorded, -1 error.
 */
int mk_catalog_blob_get(struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], char pack_r[MK_PACK_NAME_LEN + 1],
    struct mk_pack_entry *entry_r, struct mk_err *err);

/*
 * Like mk_catalog_blob_get(), but only a blob in a pack without a
 * tombstone: what a backup may reuse instead of storing it again.
 */
int mk_catalog_blob_reusable(struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], char pack_r[MK_PACK_NAME_LEN + 1],
    struct mk_pack_entry *entry_r, struct mk_err *err);

/*
 * Prune's marks on packs (schema version 4).  A tombstoned pack is never
 * reused; a blob recorded in one moves to the next pack recorded with a
 * copy of it (mk_catalog_pack_add).  Revive clears the mark; drop
 * forgets a deleted pack and its blobs that no row refers to.
 */
int mk_catalog_pack_tombstone(
    struct mk_catalog *cat, const char *name, int64_t ns, struct mk_err *err);
int mk_catalog_pack_revive(
    struct mk_catalog *cat, const char *name, struct mk_err *err);
int mk_catalog_pack_drop(
    struct mk_catalog *cat, const char *name, struct mk_err *err);

/* A mailbox snapshot the repository still lists: its run and address. */
struct mk_catalog_keep {
	const char *run; /* the run's repository id */
	const char *address;
};

/*
 * Forget the snapshots of ended runs that are not in keep (the
 * repository no longer lists them), in the caller's transaction: their
 * rows, the versions alive at no snapshot left, the messages left
 * without versions, the runs left without snapshots.  Open runs are not
 * touched.  *forgotten_r counts the snapshots forgotten.  The newest
 * snapshot of a mailbox must be kept unless all of its are forgotten.
 */
int mk_catalog_forget(struct mk_catalog *cat,
    const struct mk_catalog_keep *keep, size_t count, int64_t *forgotten_r,
    struct mk_err *err);

/* A run: name is its repository id; it is open until mk_catalog_run_end. */
int mk_catalog_run_add(struct mk_catalog *cat, const char *name,
    int64_t started_ns, int64_t *run_r, struct mk_err *err);
int mk_catalog_run_end(
    struct mk_catalog *cat, int64_t run, int64_t ended_ns, struct mk_err *err);
/* The runs never ended (a crash, a kill), oldest first; cb may write. */
typedef void mk_catalog_run_cb(
    int64_t run, const char *name, int64_t started_ns, void *arg);
int mk_catalog_runs_open(struct mk_catalog *cat, mk_catalog_run_cb *cb,
    void *arg, struct mk_err *err);

/* A mailbox snapshot.  address is borrowed (valid during a callback). */
struct mk_catalog_snapshot {
	int64_t id;
	int64_t run;
	const char *address;
	int64_t time_ns;
	uint64_t messages;
	uint64_t bytes;
	uint8_t object[MK_PACK_ID_LEN]; /* blob id of the snapshot object */
};

/*
 * Add a snapshot (s->id is ignored; the new id, larger than every id
 * before it, goes to *id_r).  Its object must be a recorded blob.
 */
int mk_catalog_snapshot_add(struct mk_catalog *cat,
    const struct mk_catalog_snapshot *s, int64_t *id_r, struct mk_err *err);

/* cb runs while the query does: it must not use the catalog. */
typedef void mk_catalog_snapshot_cb(
    const struct mk_catalog_snapshot *s, void *arg);
/* One snapshot: 1 found (cb called once), 0 no such id, -1 error. */
int mk_catalog_snapshot_get(struct mk_catalog *cat, int64_t id,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err);
/* The snapshots of a mailbox (NULL: of all), by id. */
int mk_catalog_snapshots(struct mk_catalog *cat, const char *address,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err);
/* The snapshots of a run, by address. */
int mk_catalog_run_snapshots(struct mk_catalog *cat, int64_t run,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err);

/*
 * A message version.  A message is a base name whose content never
 * changes: a header blob and body blobs, or, when opaque, just pieces.
 * A version says where it was (folder directory, new/ or cur/, the rest
 * of its name, which holds the flags, and its mtime) from the snapshot
 * it appeared in until the one it vanished in.  Strings and blobs are
 * borrowed (valid during a callback).
 */
struct mk_catalog_version {
	int64_t id;
	int64_t message;
	const char *dir; /* "" for INBOX, ".Sent" */
	const char *base;
	const char *suffix;
	bool cur;
	int64_t mtime_ns;
	uint64_t size;
	bool opaque;
	const uint8_t (*blobs)[MK_PACK_ID_LEN];
	size_t nblobs;
	int64_t appeared;
	int64_t vanished; /* 0 while alive */
};

/*
 * Call cb for each version of a mailbox alive at snapshot (appeared at
 * or before it and not vanished by it); MK_CATALOG_NOW gives the
 * versions alive now.  In no particular order.  cb runs while the
 * query does: it must not use the catalog.
 */
typedef void mk_catalog_version_cb(
    const struct mk_catalog_version *v, void *arg);
int mk_catalog_versions_at(struct mk_catalog *cat, const char *address,
    int64_t snapshot, mk_catalog_version_cb *cb, void *arg, struct mk_err *err);

/*
 * Add a message from v's base, size, opaque and blobs (all recorded
 * blobs; a message that is not opaque has a header blob first).
 */
int mk_catalog_message_add(struct mk_catalog *cat,
    const struct mk_catalog_version *v, int64_t *message_r, struct mk_err *err);

/*
 * Add a version of v->message from v's dir, suffix, cur and mtime_ns,
 * appearing in snapshot (of the snapshot's mailbox).
 */
int mk_catalog_version_add(struct mk_catalog *cat, int64_t snapshot,
    const struct mk_catalog_version *v, struct mk_err *err);

/* The id of the row the last insert on this connection added (the
 * version of mk_catalog_version_add, say). */
int64_t mk_catalog_last_id(struct mk_catalog *cat);

/* Mark a version alive until now as vanished in snapshot. */
int mk_catalog_version_vanish(struct mk_catalog *cat, int64_t version,
    int64_t snapshot, struct mk_err *err);

/*
 * Repository-level views of the backup tables, for check and for
 * rebuilding the catalog (lib/check.c, lib/reindex.c).  Callbacks run
 * while the query does: they must not use the catalog.
 */

/* Every recorded pack: its name (pack id), size, and tombstone. */
typedef void mk_catalog_pack_cb(
    const char *name, uint64_t size, bool tombstoned, void *arg);
int mk_catalog_packs(struct mk_catalog *cat, mk_catalog_pack_cb *cb, void *arg,
    struct mk_err *err);

/* Every recorded blob with its pack, by pack then offset. */
typedef void mk_catalog_blob_cb(
    const char *pack, const struct mk_pack_entry *entry, void *arg);
int mk_catalog_blobs(struct mk_catalog *cat, mk_catalog_blob_cb *cb, void *arg,
    struct mk_err *err);

/* Every run: ended_ns is 0 while the run is open. */
typedef void mk_catalog_runs_cb(int64_t run, const char *name,
    int64_t started_ns, int64_t ended_ns, void *arg);
int mk_catalog_runs(struct mk_catalog *cat, mk_catalog_runs_cb *cb, void *arg,
    struct mk_err *err);

/*
 * Empty every backup table (packs, blobs, runs, snapshots, messages,
 * versions), inside the caller's transaction; usage, limits and warning
 * states stay.  For rebuilding the backup tables from the repository.
 */
int mk_catalog_backup_clear(struct mk_catalog *cat, struct mk_err *err);

/*
 * Damage: mark blobs as damaged (a blob not recorded is ignored), then
 * ask what they break.  The marks live in a temporary table of this
 * connection until mk_catalog_damage_reset().
 */
int mk_catalog_damage_add(struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], struct mk_err *err);
void mk_catalog_damage_reset(struct mk_catalog *cat);

/*
 * What a damaged blob breaks: a message version (dir, base and suffix
 * set, from snapshot appeared until vanished, 0 while alive), or a
 * snapshot whose object is damaged (snapshot set, dir NULL).  Strings
 * are borrowed for the callback.
 */
struct mk_catalog_damage {
	const char *address;
	const uint8_t *blob; /* the damaged blob */
	int64_t snapshot; /* a snapshot whose object is damaged, or 0 */
	const char *dir; /* "" for INBOX, ".Sent"; NULL for a snapshot */
	const char *base;
	const char *suffix;
	int64_t appeared;
	int64_t vanished;
};
typedef void mk_catalog_damage_cb(const struct mk_catalog_damage *d, void *arg);
int mk_catalog_damage_each(struct mk_catalog *cat, mk_catalog_damage_cb *cb,
    void *arg, struct mk_err *err);

/*
 * The header index (schema version 4).  Parse the header section data
 * of the header blob id (mk_header_parse) and record its fields, once
 * per id.  Never fails: a row that cannot be written is left out (the
 * search then misses that message).  In a transaction the row is
 * written there; out of one it is queued and written with the next
 * commit on this connection (in a transaction of its own after 128
 * rows, or at close).
 */
void mk_catalog_header_put(struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], const void *data, size_t len);

/*
 * A small file of a mailbox as a backup last stored it: dir is the
 * folder ("" for INBOX and the Maildir's own files), name the file; the
 * stamp of the file read (device, inode, size, mtime, ctime) and the
 * one blob that holds it (has_blob false: the file was empty).
 * Strings are borrowed.
 */
struct mk_catalog_stamp {
	const char *dir;
	const char *name;
	uint64_t dev;
	uint64_t ino;
	uint64_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
	bool has_blob;
	uint8_t blob[MK_PACK_ID_LEN];
};

/*
 * Call cb for each stamp of a mailbox whose blob is still reusable (in
 * a pack without a tombstone).  cb must not use the catalog.
 */
typedef void mk_catalog_stamp_cb(const struct mk_catalog_stamp *s, void *arg);
int mk_catalog_stamps_get(struct mk_catalog *cat, const char *address,
    mk_catalog_stamp_cb *cb, void *arg, struct mk_err *err);
/* Record (or replace) a stamp; the mailbox must have a snapshot row. */
int mk_catalog_stamp_put(struct mk_catalog *cat, const char *address,
    const struct mk_catalog_stamp *s, struct mk_err *err);
int mk_catalog_stamp_drop(struct mk_catalog *cat, const char *address,
    const char *dir, const char *name, struct mk_err *err);

/* A message of a mailbox at a snapshot, for listing and searching.
 * Strings are borrowed (valid during a callback), "" when unknown. */
struct mk_catalog_listing {
	const char *dir; /* "" for INBOX, ".Sent" */
	const char *base;
	const char *suffix;
	bool cur;
	int64_t mtime_ns; /* the INTERNALDATE */
	uint64_t size;
	bool has_header; /* false: backed up before the header index */
	const char *message_id;
	const char *from;
	const char *to; /* To and Cc */
	const char *subject;
	int64_t date; /* Date field, seconds since the epoch, 0 unknown */
};

/*
 * Call cb for each message of a mailbox alive at snapshot, ordered by
 * folder directory, mtime and base name.  An unknown mailbox lists
 * nothing.  cb runs while the query does: it must not use the catalog.
 */
typedef void mk_catalog_listing_cb(
    const struct mk_catalog_listing *l, void *arg);
int mk_catalog_list_at(struct mk_catalog *cat, const char *address,
    int64_t snapshot, mk_catalog_listing_cb *cb, void *arg, struct mk_err *err);

/* Fold the WAL into the database and truncate it (after a run). */
int mk_catalog_checkpoint(struct mk_catalog *cat, struct mk_err *err);

#endif
