/*
 * lock: who may write a repository, and one run at a time per catalog.
 *
 * Repository locks are objects "locks/<32 hex>" written through the
 * storage interface (so they work on any backend), in clear JSON: kind,
 * host, pid and time.  Backups and checks take shared locks, prune and
 * forget an exclusive one.  A holder refreshes its lock (a new object,
 * then the old one deleted) every MK_LOCK_REFRESH seconds from a thread
 * of its own; a lock not refreshed for MK_LOCK_STALE seconds, or one of
 * this host whose process is gone, is stale: whoever finds it removes it
 * and says so in the log.  Taking a lock: write ours, list the others,
 * and if one that is not stale conflicts (exclusive against anything),
 * delete ours and wait or refuse.  docs/repository-format.md, "Locks".
 *
 * The run lock is a local flock(2) on a file beside the catalog: a
 * second "backup run" (or prune) with the same catalog is refused
 * instead of publishing the first one's open run early.
 *
 * Thread safety: a struct mk_lock belongs to the thread that took it;
 * its refresher is internal.  Blocking I/O: not on an event loop.
 */
#ifndef MAILKEEP_LOCK_H
#define MAILKEEP_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/storage.h"

#define MK_LOCK_STALE 1800 /* seconds without refresh: stale */
#define MK_LOCK_REFRESH 300 /* seconds between refreshes */
#define MK_LOCK_ID_LEN 32 /* hex */
#define MK_LOCK_OBJECT_MAX 4096 /* bytes of a lock object */

enum mk_lock_kind {
	MK_LOCK_SHARED,
	MK_LOCK_EXCLUSIVE,
};

/* A lock object, decoded. */
struct mk_lock_info {
	char name[6 + MK_LOCK_ID_LEN + 1]; /* "locks/<id>" */
	enum mk_lock_kind kind;
	char host[256];
	int64_t pid;
	int64_t time_ns; /* written or last refreshed */
};

struct mk_lock;

/*
 * Take a lock of kind on the repository in st (borrowed until release).
 * While a conflicting lock lives, retry every second for wait_s seconds,
 * then fail with an error that names the holder.  Stale locks found on
 * the way are removed (logged as warnings).
 */
int mk_lock_acquire(struct mk_storage *st, enum mk_lock_kind kind,
    unsigned wait_s, struct mk_lock **lock_r, struct mk_err *err);

/*
 * One attempt, for a caller that waits on its own terms (mailkeepd's
 * jobs, which must not hold a worker while they wait): 0 taken; 1 a live
 * lock conflicts, err says which and *holder_r is that lock (only its
 * name when it does not decode); -1 error.
 */
int mk_lock_try(struct mk_storage *st, enum mk_lock_kind kind,
    struct mk_lock **lock_r, struct mk_lock_info *holder_r, struct mk_err *err);

/* The name of a lock kind: "shared", "exclusive". */
const char *mk_lock_kind_name(enum mk_lock_kind kind);

/*
 * 0 while the lock is held; -1 with err set once refreshing it has
 * failed for so long that others may take it as stale.  Check before a
 * step that relies on the lock (prune, before deleting).
 */
int mk_lock_check(struct mk_lock *lock, struct mk_err *err);

/* Stop refreshing and delete the lock object.  NULL is allowed. */
void mk_lock_release(struct mk_lock **lockp);

/* Encode and decode a lock object (JSON, see the format document). */
int mk_lock_encode(
    const struct mk_lock_info *info, char **json_r, struct mk_err *err);
int mk_lock_decode(const void *data, size_t len, struct mk_lock_info *info_r,
    struct mk_err *err);

/* Whether a lock is stale at now_ns, seen from host (this host's name). */
bool mk_lock_stale(
    const struct mk_lock_info *info, const char *host, int64_t now_ns);

/*
 * Take the run lock at path (created 0600, holding our pid): 0 taken,
 * *fd_r to be closed to release it; 1 held by another process (whose pid
 * goes to *holder_r, 0 when unknown); -1 error.
 */
int mk_lock_run(
    const char *path, int *fd_r, long *holder_r, struct mk_err *err);

#endif
