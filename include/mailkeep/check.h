/*
 * check: verify the repository and the catalog against each other, and
 * say what any damage breaks, in mailboxes, folders and messages.
 *
 * Always (the structure):
 * - every pack's header and index are read and authenticated;
 * - the packs the catalog records against those the repository holds
 *   (missing ones are damage; unknown ones are another host's or an
 *   interrupted run's, and only counted);
 * - every blob the catalog records is in its pack's index, at the place
 *   and with the sizes, type and compression the catalog says;
 * - every run object, its run list chunks, every mailbox snapshot the
 *   catalog names and their message list chunks are read (decrypted,
 *   decompressed, ids recomputed) and compared with the catalog: the
 *   runs and their snapshots, and the message versions alive at each
 *   snapshot.
 * With a sample of P percent, that share of the packs, chosen at random,
 * is also read whole: every blob decrypted, decompressed and its id
 * recomputed (restic's --read-data-subset).  100 reads everything.
 *
 * Damaged or missing blobs are then traced through the catalog: blob ->
 * message -> versions -> mailbox, folder, file name and the snapshots
 * they belong to; a damaged mailbox snapshot object names its snapshot.
 *
 * Reads only: the catalog gets a temporary table on this connection.
 * Blocking I/O, never on an event loop.
 */
#ifndef MAILKEEP_CHECK_H
#define MAILKEEP_CHECK_H

#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"

struct mk_check_opts {
	unsigned sample; /* percent of the packs read whole, 0 to 100 */
};

/*
 * A problem found.  kind is one of: "pack-missing", "pack-damaged",
 * "pack-size", "blob-missing", "blob-misplaced", "blob-damaged",
 * "run-missing", "run-damaged", "run-mismatch", "snapshot-damaged",
 * "snapshot-mismatch".  object names what is wrong ("packs/ab/<id>",
 * "snapshots/<run id>", "snapshot 12 of a@example.org"); detail says
 * how.  Borrowed for the callback.
 */
struct mk_check_problem {
	const char *kind;
	const char *object;
	const char *detail;
};

struct mk_check_cbs {
	void (*problem_cb)(const struct mk_check_problem *p, void *arg);
	/* What the damage breaks, one message version or snapshot each. */
	void (*affected_cb)(const struct mk_catalog_damage *d, void *arg);
	void *arg;
};

struct mk_check_stats {
	uint64_t packs; /* in the repository */
	uint64_t catalog_packs;
	uint64_t unknown_packs; /* in the repository, not in the catalog */
	uint64_t packs_read; /* read whole (the sample) */
	uint64_t blobs; /* recorded in the catalog */
	uint64_t blobs_read; /* decoded and their ids checked */
	uint64_t runs; /* run objects in the repository */
	uint64_t dicts; /* dictionary objects, each loaded */
	uint64_t snapshots; /* in the catalog */
	uint64_t problems;
	uint64_t damaged_blobs;
	uint64_t affected; /* versions and snapshots the damage breaks */
};

/*
 * Check.  Returns 0 when the check ran to its end (stats_r->problems
 * says whether anything is wrong), -1 when it could not (the catalog
 * or the storage failed).
 */
int mk_check_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_check_opts *opts, const struct mk_check_cbs *cbs,
    struct mk_check_stats *stats_r, struct mk_err *err);

#endif
