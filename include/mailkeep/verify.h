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

#include <stdbool.h>
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

/*
 * The last results of the scheduled verifications, kept by mailkeepd in
 * a small JSON file of its state directory so that a restart does not
 * reset them (docs/backup.md, "Scheduled verification").
 */
#define MK_VERIFY_RESULTS_FILE "verify-results.json"
#define MK_VERIFY_RESULTS_MAX 65536 /* bytes of the file */

enum mk_verify_kind {
	MK_VERIFY_CHECK,
	MK_VERIFY_TEST_RESTORE,
	MK_VERIFY_KINDS,
};

/* What one kind did last; times in ns since the epoch, 0: never. */
struct mk_verify_last {
	int64_t success_ns; /* the last pass */
	int64_t failure_ns; /* the last failure */
	uint64_t failures; /* failures ever counted */
	char *error; /* the last failure's error, or NULL */
	int64_t ended_ns; /* the last result, pass or failure */
	bool ok; /* it passed */
	uint64_t problems; /* a check's problems; a test restore's missing
			      and differing messages */
	char *mailbox; /* the mailbox a test restore restored, or NULL */
};

struct mk_verify_results {
	struct mk_verify_last kind[MK_VERIFY_KINDS];
};

/* The name of a kind in the file and the metrics: "check", "test-restore". */
const char *mk_verify_kind_name(enum mk_verify_kind kind);

/* Encode as JSON (*json_r malloc'ed) and decode; decoding checks every
 * member and its type, and leaves *r empty on failure. */
int mk_verify_results_encode(
    const struct mk_verify_results *r, char **json_r, struct mk_err *err);
int mk_verify_results_decode(const char *data, size_t len,
    struct mk_verify_results *r, struct mk_err *err);

/*
 * Load dir/MK_VERIFY_RESULTS_FILE: 1 loaded, 0 there is none (*r empty),
 * -1 unreadable or damaged (*r empty, err says why).
 */
int mk_verify_results_load(
    const char *dir, struct mk_verify_results *r, struct mk_err *err);

/* Write dir/MK_VERIFY_RESULTS_FILE atomically (tmp, fsync, rename). */
int mk_verify_results_save(
    const char *dir, const struct mk_verify_results *r, struct mk_err *err);

/* Free the strings of r and zero it. */
void mk_verify_results_clear(struct mk_verify_results *r);

#endif
