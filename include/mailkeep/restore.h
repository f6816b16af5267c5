/*
 * restore: write a mailbox snapshot back as a Maildir++ tree.
 *
 * For now one form: a whole mailbox as of one snapshot into an empty
 * directory (created if missing; its parent must exist).  The folders
 * come back with their on-disk names, the messages with their original
 * file names (flags included) in new/ or cur/ as they were and their
 * mtimes, and dovecot-uidlist, dovecot-keywords, maildirfolder and
 * subscriptions as they were captured, so that Dovecot keeps its UIDs.  Every file is
 * written atomically (a temporary file in DIR/tmp, fsync, rename that
 * never replaces) and directories are made and opened without following
 * a symbolic link.  Every blob is checked against its id as it is read.
 * The snapshot objects come from the repository; the catalog says
 * which object a snapshot is and where each blob lies.
 *
 * Blocking I/O: call from a worker thread or a command-line tool.
 */
#ifndef MAILKEEP_RESTORE_H
#define MAILKEEP_RESTORE_H

#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"

struct mk_restore_stats {
	uint64_t folders;
	uint64_t messages;
	uint64_t bytes; /* of the messages */
	uint64_t files; /* every file written, the metadata files too */
};

/*
 * Restore snapshot (a catalog id) of mailbox address into dir.  Refuses a
 * snapshot of another mailbox, and a dir that is not empty, is a
 * symbolic link or is not a directory.  On failure what was written
 * stays in dir, for the operator to inspect or remove.
 */
int mk_restore_mailbox(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t snapshot, const char *address, const char *dir,
    struct mk_restore_stats *stats_r, struct mk_err *err);

#endif
