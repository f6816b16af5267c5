/*
 * jobs: work that mailkeepd runs on request or on a schedule, queued,
 * one job of a kind at a time, each mailbox of a job on the worker pool,
 * with progress, cancel and a history of finished jobs for /v1/jobs.
 *
 * A job is a kind (a table entry in jobs.c: the worker functions that
 * open, do one mailbox, and close) and a list of mailboxes.  The loop
 * thread owns every job; workers get a job's read-only parts and update
 * its progress counters atomically.  A backup job opens the repository,
 * begins a run, backs up at most [backup] concurrency mailboxes at once
 * (each a session on its worker's own catalog connection), reads at most
 * [backup] bandwidth bytes a second between them, and ends the run, also
 * after a cancel, so that what was committed is published.
 *
 * The kinds: backup, restore, check (mk_check_run with a sample) and
 * test-restore (mk_verify_restore of one mailbox into a scratch
 * directory).  Backups, checks and test restores hold a shared repository
 * lock while they run and run one at a time among themselves; a restore
 * may run beside them.  A job that meets a prune's exclusive lock waits,
 * up to [backup] lock_wait, on a timer of the loop (state "waiting" in
 * /v1/jobs, cancellable).  The last check and test restore results are
 * kept in the state directory (mk_verify_results_save) and read at start.  Each job that opens the repository counts its
 * key slots, for the single-slot warning of /v1/status.
 *
 * The schedules ([backup] schedule, jitter, run_at_start; [verify]
 * check_schedule, restore_schedule) are checked once a second on the
 * loop.  Only the loop thread calls these functions.
 */
#ifndef MAILKEEPD_JOBS_H
#define MAILKEEPD_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "mailkeep/conf.h"
#include "mailkeep/err.h"

#include "daemon.h"

struct mk_jobs;

/* Why a submit was refused, for the HTTP status. */
enum mk_jobs_refusal {
	MK_JOBS_BAD_REQUEST, /* 400 */
	MK_JOBS_NOT_FOUND, /* 404: an unknown mailbox */
	MK_JOBS_BUSY, /* 503: the queue is full */
};

/* Check the [backup] settings (mailkeepd -n, and before a reload). */
int mk_jobs_check_conf(const struct mk_conf *conf, struct mk_err *err);

/* Start the schedule and load each mailbox's last backup (in the pool). */
int mk_jobs_start(
    struct mk_daemon *d, struct mk_jobs **jobs_r, struct mk_err *err);

/* Take new [backup] settings, checked by mk_jobs_check_conf(). */
void mk_jobs_reload(struct mk_jobs *jobs, const struct mk_conf *conf);

/* Ask every running job to stop (before the pool stops). */
void mk_jobs_cancel_all(struct mk_jobs *jobs);

/* Free everything; after the pool has stopped. */
void mk_jobs_free(struct mk_jobs **jobsp);

/*
 * Queue a backup of the named mailboxes (addresses, lower case), or of
 * every mailbox when n is 0.  *id_r is the new job's id.  On refusal
 * *why_r says which kind and err what.
 */
int mk_jobs_submit_backup(struct mk_jobs *jobs, char **addresses, size_t n,
    uint64_t *id_r, enum mk_jobs_refusal *why_r, struct mk_err *err);

/* What POST /v1/restore asks; strings borrowed for the call. */
struct mk_jobs_restore_req {
	const char *address; /* lower case */
	int64_t snapshot; /* a catalog id of that mailbox's snapshots */
	const char *folder; /* with its subfolders, or NULL: all */
	const char *message; /* a base name, or NULL: all */
	const char *to; /* "new-folder", "original", or a directory beneath
			   [restore] root */
	const char *format; /* "maildir" (NULL), "mbox", "eml" */
	bool force; /* past the quota */
};

/*
 * Queue a restore of one mailbox (mk_restore_run() on a worker), with
 * progress in messages and bytes.  Refused: an unknown mailbox, a bad
 * target or format, a directory not beneath [restore] root.
 */
int mk_jobs_submit_restore(struct mk_jobs *jobs,
    const struct mk_jobs_restore_req *r, uint64_t *id_r,
    enum mk_jobs_refusal *why_r, struct mk_err *err);

/* Cancel a job: 1 done (or asked, if running), 0 no such job, -1 it has
 * already finished. */
int mk_jobs_cancel(struct mk_jobs *jobs, uint64_t id);

/* A job as JSON, or NULL when unknown. */
json_t *mk_jobs_job_json(struct mk_jobs *jobs, uint64_t id);

/* {"jobs":[...]} (queued, running, and the recent finished ones) and the
 * schedule, for /v1/jobs. */
json_t *mk_jobs_list_json(struct mk_jobs *jobs);

/* The backup part of /v1/status. */
json_t *mk_jobs_status_json(struct mk_jobs *jobs);

/*
 * Queue a check of the repository (check true; sample a percent, -1:
 * [verify] check_sample) or a test restore of address's newest snapshot
 * (NULL: a backed-up mailbox at random) into a scratch directory beneath
 * the state directory, compared with the catalog.
 */
int mk_jobs_submit_verify(struct mk_jobs *jobs, bool check, int sample,
    const char *address, uint64_t *id_r, enum mk_jobs_refusal *why_r,
    struct mk_err *err);

/* The scheduled checks and test restores, for /v1/jobs. */
json_t *mk_jobs_verify_json(struct mk_jobs *jobs);

/* The repository part of /v1/status: location, key slots, warning. */
json_t *mk_jobs_repo_json(struct mk_jobs *jobs);

/* The single key slot warning, or NULL. */
const char *mk_jobs_key_warning(struct mk_jobs *jobs);

/* When the mailbox was last backed up (ns since the epoch), or 0. */
int64_t mk_jobs_last_backup(struct mk_jobs *jobs, const char *address);

/* The backup metrics (no per-mailbox series). */
void mk_jobs_metrics(struct mk_jobs *jobs, struct evbuffer *b);

#endif
