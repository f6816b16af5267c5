/*
 * prune: retention, forgetting snapshots and garbage collection of a
 * repository (docs/backup.md, "Retention and prune").
 *
 * Phase 1 (every prune): the catalog's open runs are published; the
 * retention policy picks the snapshots to forget among all runs in the
 * repository, per host and mailbox; run objects that lose snapshots are
 * rewritten (new run list chunks in a new pack, then the run object
 * replaced; a run left empty is deleted) and the catalog forgets the
 * same snapshots.  Then the live blobs are computed from every run
 * object left (run lists, mailbox snapshots, message lists, messages);
 * packs whose live share is below the threshold are repacked (the live
 * blobs into new packs, stored durably, the catalog repointed, run
 * objects that pointed into them rewritten, then a tombstone object
 * "tombstones/<pack id>" for the old pack), and packs with no live blob
 * get a tombstone.  Phase 2 (the same call, for tombstones that existed
 * before it started): a tombstoned pack is deleted when its tombstone is
 * older than gc_grace and no snapshot refers to it any more; one that a
 * snapshot refers to again loses its tombstone.
 *
 * The caller holds an exclusive repository lock (mk_lock_acquire) and
 * the catalog's run lock.  Blocking I/O, one thread.
 */
#ifndef MAILKEEP_PRUNE_H
#define MAILKEEP_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/lock.h"
#include "mailkeep/repo.h"
#include "mailkeep/retention.h"
#include "mailkeep/snapshot.h"

#define MK_PRUNE_TOMBSTONE_MAX 4096 /* bytes of a tombstone object */

struct mk_prune_opts {
	struct mk_retention policy;
	int64_t deleted_retention_ns; /* a mailbox gone from the store */
	int64_t gc_grace_ns; /* from tombstone to deletion */
	unsigned repack_threshold; /* percent of live bytes */
	bool dry_run; /* decide and report, write nothing */
	bool gc; /* repack, tombstone and delete packs (prune) */
	/* The mailboxes of this host's store, sorted (strcmp); NULL when
	 * not known: then deleted_retention is not applied. */
	char *const *present;
	size_t npresent;
	const char *only; /* only this mailbox's snapshots (forget) */
	bool purge; /* forget every snapshot of only */
	struct mk_lock *lock; /* checked before deleting; may be NULL */
};

/* A snapshot of the repository and what retention decided. */
struct mk_prune_snapshot {
	char run[MK_SNAPSHOT_RUN_ID_LEN + 1];
	char host[MK_SNAPSHOT_HOST_MAX + 1];
	char *address;
	int64_t time_ns;
	uint64_t messages;
	uint64_t bytes;
	unsigned reasons; /* 1 << rule; 0: forgotten (mk_retention_select) */
	bool purged; /* forgotten: purge or deleted_retention */
};

enum mk_prune_action {
	MK_PRUNE_KEEP,
	MK_PRUNE_REPACK, /* live blobs copied, then tombstoned */
	MK_PRUNE_TOMBSTONE, /* no live blob */
	MK_PRUNE_WAIT, /* tombstoned, grace not over */
	MK_PRUNE_DELETE, /* tombstoned long enough, still unused */
	MK_PRUNE_REVIVE, /* tombstoned, but referenced again */
};

struct mk_prune_pack {
	char id[MK_PACK_NAME_LEN + 1];
	uint64_t size;
	uint64_t live_bytes; /* stored bytes of its live blobs */
	enum mk_prune_action action;
};

struct mk_prune_result {
	struct mk_prune_snapshot *snapshots; /* every snapshot, by run */
	size_t nsnapshots;
	size_t forgotten;
	size_t runs_rewritten;
	size_t runs_deleted;
	int64_t catalog_forgotten; /* snapshot rows */
	struct mk_prune_pack *packs; /* every pack */
	size_t npacks;
	uint64_t repacked_bytes; /* of the old packs */
	uint64_t written_bytes; /* new packs */
	uint64_t deleted_bytes;
	uint64_t missing_blobs; /* referenced but in no pack */
};

void mk_prune_result_free(struct mk_prune_result *res);

int mk_prune_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_prune_opts *opts, struct mk_prune_result *res,
    struct mk_err *err);

/*
 * Mark in the catalog every pack that has a tombstone in the repository
 * or is gone from it, so that a backup does not reuse its blobs.  Called
 * when a backup run begins.
 */
int mk_prune_sync(
    struct mk_repo *repo, struct mk_catalog *cat, struct mk_err *err);

const char *mk_prune_action_name(enum mk_prune_action action);

#endif
