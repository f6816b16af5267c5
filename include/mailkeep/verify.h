/*
 * verify: a test restore, the proof that backups come back.
 *
 * mk_verify_restore() restores the newest snapshot of one mailbox into a
 * fresh directory beneath a scratch directory (every blob checked
 * against its id as restore reads it), then compares what came back
 * with the catalog: every message version alive at that snapshot must
 * be there, under its folder, new/ or cur/ and file name, with its size,
 * and nothing else.  The directory is removed afterwards, also on
 * failure.
 *
 * Blocking I/O, no global state: call from a worker thread with its own
 * catalog connection, or a command-line tool.
 */
#ifndef MAILKEEP_VERIFY_H
#define MAILKEEP_VERIFY_H

#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"

struct mk_verify_stats {
	int64_t snapshot; /* the snapshot restored, 0: none */
	uint64_t expected; /* message versions in the catalog */
	uint64_t messages; /* restored */
	uint64_t bytes; /* restored */
	uint64_t missing; /* in the catalog, not restored */
	uint64_t differ; /* restored with another size */
};

/*
 * Test-restore address's newest snapshot beneath scratch (a directory
 * that exists).  0 when everything came back as the catalog says; -1
 * with err naming the first difference (or why it could not run), and
 * *stats_r saying how far it got.
 */
int mk_verify_restore(struct mk_repo *repo, struct mk_catalog *cat,
    const char *address, const char *scratch, struct mk_verify_stats *stats_r,
    struct mk_err *err);

#endif
