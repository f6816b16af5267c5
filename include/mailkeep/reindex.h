/*
 * reindex: the catalog's backup tables from the repository alone.  The
 * repository holds everything needed: pack indexes say where each blob
 * is, run objects list the run list chunks, which list the mailbox
 * snapshots, which list their folders' message list chunks.
 *
 * - mk_reindex_packs() records the packs the catalog does not know
 *   (written by another host sharing the repository, or stored by a run
 *   killed before it recorded them), so that their blobs are reused and
 *   not stored again.  A backup run calls it first.
 * - mk_reindex_catalog() replaces every backup table with what the
 *   repository says, in one transaction: a crash leaves the old catalog.
 *   Message versions are rebuilt run by run, as the backups made them,
 *   so the next incremental run reads only new files again.
 *
 * Blocking I/O: never on an event loop.  cat is used by this thread only.
 */
#ifndef MAILKEEP_REINDEX_H
#define MAILKEEP_REINDEX_H

#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"
#include "mailkeep/snapshot.h"

/* What a reindex found.  Skipped objects are logged one line each. */
struct mk_reindex_stats {
	uint64_t packs; /* recorded */
	uint64_t blobs;
	uint64_t runs;
	uint64_t snapshots;
	uint64_t messages;
	uint64_t versions;
	uint64_t skipped; /* damaged packs, runs, snapshots, messages */
};

/* Record the packs of the repository the catalog does not have. */
int mk_reindex_packs(struct mk_repo *repo, struct mk_catalog *cat,
    struct mk_reindex_stats *stats_r, struct mk_err *err);

/*
 * Rebuild every backup table from the repository.  Refuses while the
 * catalog has a run open (its snapshots are not in the repository yet:
 * the next backup run publishes it).
 */
int mk_reindex_catalog(struct mk_repo *repo, struct mk_catalog *cat,
    struct mk_reindex_stats *stats_r, struct mk_err *err);

/*
 * Read a blob the catalog records: 0, or -1 when it is not recorded or
 * cannot be read (checked against its id).  *data_r is the caller's.
 */
int mk_reindex_blob(struct mk_repo *repo, struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], uint8_t **data_r, size_t *len_r,
    struct mk_err *err);

/* A mailbox snapshot read back: its object and every folder's messages. */
struct mk_reindex_listing {
	struct mk_snapshot_mailbox *mailbox;
	struct mk_snapshot_message *msgs; /* folder by folder, in order */
	const char **dirs; /* msgs[i]'s folder, borrowed from mailbox */
	size_t n;
	size_t cap;
};

/*
 * Read mailbox snapshot object and its message list chunks through the
 * catalog.  The error names the folder whose list cannot be read.  Free
 * with mk_reindex_listing_free(), also after a failure.
 */
int mk_reindex_listing_read(struct mk_repo *repo, struct mk_catalog *cat,
    const uint8_t object[MK_PACK_ID_LEN], struct mk_reindex_listing *l,
    struct mk_err *err);
void mk_reindex_listing_free(struct mk_reindex_listing *l);

#endif
