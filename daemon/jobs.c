#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "mailkeep/backup.h"
#include "mailkeep/check.h"
#include "mailkeep/cron.h"
#include "mailkeep/dict.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/lock.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/repo.h"
#include "mailkeep/restore.h"
#include "mailkeep/storage.h"
#include "mailkeep/store.h"
#include "mailkeep/verify.h"

#include "enforce.h"
#include "httpd.h"
#include "jobs.h"
#include "live.h"
#include "pool.h"
#include "worker.h"

#define JOBS_QUEUE_MAX 32 /* queued jobs */
#define JOBS_KEEP 50 /* finished jobs kept for /v1/jobs */
#define JOBS_ERRORS_MAX 20 /* errors kept per job (all are counted) */
#define JOBS_MAILBOXES_MAX 100000 /* named in one request */

enum jobs_state {
	JOBS_QUEUED,
	JOBS_RUNNING,
	JOBS_DONE,
	JOBS_FAILED,
	JOBS_CANCELLED,
};

static const char *const jobs_state_names[] = { "queued", "running", "done",
	"failed", "cancelled" };

/* Why a mailbox or a job failed, for /metrics. */
enum jobs_reason {
	JOBS_R_CANCELLED,
	JOBS_R_NO_SPACE,
	JOBS_R_PERMISSION,
	JOBS_R_VANISHED,
	JOBS_R_IO,
	JOBS_R_REPOSITORY,
	JOBS_R_OTHER,
	JOBS_R_COUNT,
};

static const char *const jobs_reason_names[JOBS_R_COUNT] = { "cancelled",
	"no_space", "permission", "vanished", "io", "repository", "other" };

/* Upper bounds of the run duration histogram, seconds (then +Inf). */
static const unsigned jobs_duration_le[] = { 10, 60, 300, 1800, 3600, 14400,
	43200 };
#define JOBS_DURATION_BUCKETS                                                  \
	(sizeof(jobs_duration_le) / sizeof(jobs_duration_le[0]) + 1)
/* Upper bounds of the last-backup age histogram, seconds (then +Inf). */
static const unsigned jobs_age_le[] = { 3600, 21600, 86400, 172800, 604800,
	2592000 };
#define JOBS_AGE_BUCKETS (sizeof(jobs_age_le) / sizeof(jobs_age_le[0]) + 1)

struct jobs_job;
struct jobs_kind;

#define JOBS_KINDS 4 /* entries of jobs_kinds[] */
#define JOBS_PROBLEMS_MAX 20 /* a check's problems kept in its job */

/* What one mailbox of a job gives back. */
struct jobs_result {
	uint64_t stored; /* bytes added to the repository */
	int64_t time_ns; /* the snapshot's time (backups) */
	struct mk_restore_stats restored; /* restores */
	struct mk_check_stats check; /* checks */
	json_t *problems; /* a check's first problems */
	struct mk_verify_stats verify; /* test restores */
	int key_slots; /* counted when the repository opened; -1: not */
	bool encrypted;
};

/* A job's worker functions; a kind is one table entry. */
typedef int jobs_phase_cb(
    struct jobs_job *job, struct mk_worker *w, struct mk_err *err);
typedef int jobs_item_cb(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err);

struct jobs_kind {
	const char *name;
	jobs_phase_cb *begin; /* after the repository opens; NULL: none */
	jobs_item_cb *item; /* one mailbox */
	jobs_phase_cb *end; /* after the last mailbox, also after a cancel */
	bool last_backup; /* a success is a mailbox's last backup */
	bool progress; /* the item reports messages and bytes of a total */
	bool lock; /* holds a shared repository lock while it runs */
	int group; /* one job of a group runs at a time */
};

/* The [repository] settings a job opens the repository with, owned. */
struct jobs_repo_conf {
	char *location, *key_file, *region, *credentials_file, *ca_file;
	struct mk_storage_opts sopts;
};

/* A restore job's request, owned by the job. */
struct jobs_restore {
	struct mk_restore_req req; /* its strings point at the members */
	char *address, *folder, *message, *dir, *maildir, *doveadm,
	    *doveadm_config;
	char prefix[MK_RESTORE_PREFIX_MAX];
};

struct jobs_job {
	TAILQ_ENTRY(jobs_job) entry;
	struct mk_jobs *jobs;
	const struct jobs_kind *kind;
	uint64_t id;
	enum jobs_state state;
	const char *trigger; /* "request", "schedule", "start" */
	bool all; /* every mailbox, listed when the job starts */
	char **addresses;
	char **relpaths;
	size_t total, next, running, done, failed;
	int64_t created_ns, started_ns, ended_ns;
	uint64_t bytes_stored;
	uint64_t nerrors;
	json_t *errors; /* [{"mailbox":..., "error":...}], bounded */
	char *error; /* why the job itself failed */
	unsigned concurrency;

	/* Read by workers: set before the first task, or atomic. */
	int rootfd;
	int dict_mode; /* enum mk_dict_mode */
	struct mk_repo *repo;
	struct mk_lock *lock; /* the shared repository lock, kind->lock */
	struct jobs_repo_conf rconf;
	unsigned sample; /* a check's percent of packs read whole */
	char *scratch; /* where a test restore goes */
	uint64_t bandwidth; /* bytes a second, 0: no limit */
	int64_t run; /* the backup run in the catalog */
	char run_id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	atomic_bool cancel;
	atomic_uint_fast64_t bytes_read;
	atomic_uint_fast64_t units, units_total, bytes_total; /* progress */
	struct jobs_restore *restore; /* a restore's request */
	json_t *result; /* what the job gave, for a restore */
	pthread_mutex_t bucket_lock; /* the bandwidth token bucket */
	double tokens;
	struct timespec refilled;

	/* Waiting for the repository lock (the loop's; see jobs_lock_wait) */
	uint64_t lock_wait; /* seconds it may wait, 0: none */
	bool lock_waiting;
	unsigned lock_attempts; /* tries that met the lock */
	int64_t lock_since_ns, lock_until_ns, lock_next_ns;
	struct mk_lock_info holder; /* the lock in the way */
	struct event *lock_timer;
};

TAILQ_HEAD(jobs_list, jobs_job);

/* A mailbox's last backup. */
struct jobs_last {
	char *address;
	int64_t ns;
};

/* A cron schedule of one job kind. */
struct jobs_sched {
	bool have;
	struct mk_cron cron;
	char *expr;
	time_t next_fire; /* the schedule's next time */
	time_t due; /* next_fire plus jitter */
};

struct mk_jobs {
	struct mk_daemon *d;
	struct jobs_list list; /* by id: finished, running, queued */
	size_t nqueued, nfinished;
	uint64_t next_id;
	struct event *tick;

	/* [backup], [verify]: a schedule per kind (restores have none) */
	struct jobs_sched sched[JOBS_KINDS];
	unsigned concurrency;
	uint64_t bandwidth;
	uint64_t jitter;
	unsigned check_sample;
	bool start_pending; /* run_at_start, until the store is counted */
	uint64_t lock_wait; /* [backup] lock_wait, seconds */
	struct mk_verify_results verify; /* kept in the state directory */
	bool verify_saving, verify_dirty; /* one save at a time */
	int key_slots; /* -1: not known yet */
	bool encrypted;

	struct mk_hmap *last; /* address -> struct jobs_last */
	bool last_loaded;

	/* Metrics. */
	uint64_t read_total, stored_total;
	uint64_t mailboxes_ok, reasons[JOBS_R_COUNT];
	uint64_t runs[JOBS_KINDS][JOBS_CANCELLED + 1]; /* by kind, state */
	uint64_t duration_buckets[JOBS_DURATION_BUCKETS];
	double duration_sum;
	int64_t last_run_ended_ns;
	uint64_t lock_waits, lock_waits_expired;
};

/* A pool task: one phase of a job; at start, the load of the last
 * backups and the count of the key slots. */
enum jobs_phase {
	JOBS_BEGIN,
	JOBS_ITEM,
	JOBS_END,
	JOBS_LOAD,
	JOBS_KEYS,
	JOBS_SAVE,
};

struct jobs_task {
	struct mk_job base; /* first */
	struct mk_jobs *jobs;
	struct jobs_job *job;
	enum jobs_phase phase;
	size_t index;
	int rc;
	struct mk_err err;
	struct jobs_result res;
	struct mk_hmap *loadmap; /* JOBS_LOAD: address -> jobs_last */
	struct jobs_repo_conf rconf; /* JOBS_KEYS: the repository */
	struct mk_lock_info holder; /* JOBS_BEGIN: the lock in the way */
	char *dir; /* JOBS_SAVE: the state directory */
	struct mk_verify_results verify; /* JOBS_SAVE: what to write */
};

static void jobs_pump(struct mk_jobs *jobs);
static void jobs_dispatch(struct jobs_job *job);
static void jobs_verify_record(struct jobs_job *job, enum jobs_state state);

/* Backups */

static int
jobs_backup_begin(struct jobs_job *job, struct mk_worker *w, struct mk_err *err)
{
	if (mk_dict_prepare(job->repo, job->dict_mode, job->rootfd,
		job->relpaths, job->total, err) < 0)
		return -1;
	return mk_backup_run_begin(
	    job->repo, w->catalog, &job->run, job->run_id, err);
}

static int jobs_backup_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err);

static int
jobs_backup_end(struct jobs_job *job, struct mk_worker *w, struct mk_err *err)
{
	return mk_backup_run_end(job->repo, w->catalog, job->run, err);
}

static int jobs_restore_item(struct jobs_job *job, size_t i,
    struct mk_worker *w, struct jobs_result *res, struct mk_err *err);

static int jobs_check_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err);
static int jobs_test_restore_item(struct jobs_job *job, size_t i,
    struct mk_worker *w, struct jobs_result *res, struct mk_err *err);

/*
 * Backups, checks and test restores hold a shared repository lock from
 * before they begin until the repository closes, as `backup run
 * --offline` does, so that a prune on any host waits or refuses while
 * they run; while a prune holds its exclusive lock they wait for it, up
 * to [backup] lock_wait (jobs_lock_wait).  Restores take no lock, as
 * `mailkeep restore` takes none.  They share a group: a check never sees
 * a run half written by this host.
 */
static const struct jobs_kind jobs_kinds[] = {
	{ "backup", jobs_backup_begin, jobs_backup_item, jobs_backup_end, true,
	    false, true, 0 },
	{ "restore", NULL, jobs_restore_item, NULL, false, true, false, 1 },
	{ "check", NULL, jobs_check_item, NULL, false, false, true, 0 },
	{ "test-restore", NULL, jobs_test_restore_item, NULL, false, false,
	    true, 0 },
};

_Static_assert(sizeof(jobs_kinds) / sizeof(jobs_kinds[0]) == JOBS_KINDS,
    "JOBS_KINDS counts the kinds");

#define JOBS_BACKUP (&jobs_kinds[0])
#define JOBS_RESTORE (&jobs_kinds[1])
#define JOBS_CHECK (&jobs_kinds[2])
#define JOBS_TEST_RESTORE (&jobs_kinds[3])
#define JOBS_KIND(i) (&jobs_kinds[i])

/* Sleep off what the token bucket owes, in slices that see a cancel. */
static void
jobs_throttle(struct jobs_job *job, uint64_t bytes)
{
	double rate = (double)job->bandwidth, wait;
	struct timespec now;

	pthread_mutex_lock(&job->bucket_lock);
	clock_gettime(CLOCK_MONOTONIC, &now);
	job->tokens += rate *
	    ((double)(now.tv_sec - job->refilled.tv_sec) +
		(double)(now.tv_nsec - job->refilled.tv_nsec) / 1e9);
	if (job->tokens > rate)
		job->tokens = rate;
	job->refilled = now;
	job->tokens -= (double)bytes;
	wait = job->tokens < 0 ? -job->tokens / rate : 0;
	pthread_mutex_unlock(&job->bucket_lock);
	while (wait > 0 && !atomic_load(&job->cancel)) {
		double slice = wait > 0.1 ? 0.1 : wait;
		struct timespec ts = { (time_t)slice,
			(long)((slice - (double)(time_t)slice) * 1e9) };

		nanosleep(&ts, NULL);
		wait -= slice;
	}
}

/* Every read of a message file: progress, bandwidth, cancel. */
static int
jobs_read_cb(uint64_t bytes, void *arg, struct mk_err *err)
{
	struct jobs_job *job = arg;

	atomic_fetch_add(&job->bytes_read, bytes);
	if (job->bandwidth > 0)
		jobs_throttle(job, bytes);
	if (atomic_load(&job->cancel))
		return mk_err_set(err, "cancelled");
	return 0;
}

static int
jobs_backup_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err)
{
	struct mk_backup *bk = NULL;
	struct mk_backup_stats s;
	int rc = -1;

	if (mk_backup_new(job->repo, w->catalog, job->run, &bk, err) < 0)
		return -1;
	mk_backup_set_read_cb(bk, jobs_read_cb, job);
	if (mk_backup_mailbox(bk, job->rootfd, job->relpaths[i],
		job->addresses[i], &s, err) < 0)
		goto out;
	if (s.skipped.count > 0)
		mk_log_warn("jobs", "%s: %llu entries skipped, first: %s",
		    job->addresses[i], s.skipped.count, s.skipped.first);
	res->stored = s.stored_bytes;
	res->time_ns = s.time_ns;
	rc = 0;
out:
	mk_backup_free(&bk);
	return rc;
}

/* Restores */

/* After each message: progress, and false to stop when cancelled. */
static bool
jobs_restore_progress_cb(const struct mk_restore_progress *p, void *arg)
{
	struct jobs_job *job = arg;

	atomic_store(&job->units, p->messages);
	atomic_store(&job->units_total, p->messages_total);
	atomic_store(&job->bytes_read, p->bytes);
	atomic_store(&job->bytes_total, p->bytes_total);
	return !atomic_load(&job->cancel);
}

/* A part the restore could not read: one log line (on the worker). */
static void
jobs_restore_failed_cb(const struct mk_restore_failure *f, void *arg)
{
	const struct jobs_restore *rs = arg;

	if (f->kind == MK_RESTORE_FAILED_LIST)
		mk_log_warn("jobs",
		    "restore of %s: not restored: messages of folder %s "
		    "whose list could not be read: %s",
		    rs->address, f->folder, f->reason);
	else
		mk_log_warn("jobs", "restore of %s: not restored: %s/%s: %s",
		    rs->address, f->folder, f->name, f->reason);
}

static int
jobs_restore_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err)
{
	(void)i;
	return mk_restore_run(job->repo, w->catalog, &job->restore->req,
	    jobs_restore_progress_cb, job, &res->restored, err);
}

static void
jobs_restore_free(struct jobs_restore **rp)
{
	struct jobs_restore *r = *rp;

	if (r == NULL)
		return;
	free(r->address);
	free(r->folder);
	free(r->message);
	free(r->dir);
	free(r->maildir);
	free(r->doveadm);
	free(r->doveadm_config);
	free(r);
	*rp = NULL;
}

/* What a restore gave, as `mailkeep --json restore` prints it. */
static json_t *
jobs_restore_result(
    const struct jobs_restore *r, const struct mk_restore_stats *st)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "folders",
	    (json_int_t)st->folders, "messages", (json_int_t)st->messages,
	    "bytes", (json_int_t)st->bytes, "files", (json_int_t)st->files,
	    "skipped", (json_int_t)st->skipped, "failed",
	    (json_int_t)st->failed);

	(void)r;
	if (o != NULL && st->folder[0] != '\0')
		json_object_set_new(o, "folder", json_string(st->folder));
	return o;
}

/* Checks and test restores */

static void
jobs_check_problem_cb(const struct mk_check_problem *p, void *arg)
{
	struct jobs_result *res = arg;
	json_t *e;

	if (json_array_size(res->problems) >= JOBS_PROBLEMS_MAX)
		return;
	e = json_pack("{s:s, s:s, s:s}", "kind", p->kind, "object", p->object,
	    "detail", p->detail);
	if (e != NULL)
		json_array_append_new(res->problems, e);
}

static int
jobs_check_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err)
{
	struct mk_check_opts o = { job->sample };
	struct mk_check_cbs cbs = { jobs_check_problem_cb, NULL, res };

	(void)i;
	res->problems = json_array();
	if (mk_check_run(job->repo, w->catalog, &o, &cbs, &res->check, err) < 0)
		return -1;
	if (res->check.problems > 0)
		return mk_err_set(err,
		    "check found %llu problems (%llu damaged blobs, %llu "
		    "message versions and snapshots affected)",
		    (unsigned long long)res->check.problems,
		    (unsigned long long)res->check.damaged_blobs,
		    (unsigned long long)res->check.affected);
	return 0;
}

static int
jobs_test_restore_item(struct jobs_job *job, size_t i, struct mk_worker *w,
    struct jobs_result *res, struct mk_err *err)
{
	return mk_verify_restore(job->repo, w->catalog, job->addresses[i],
	    job->scratch, &res->verify, err);
}

static json_t *
jobs_verify_result(const struct jobs_job *job, const struct jobs_result *res)
{
	if (job->kind == JOBS_CHECK)
		return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
				 "s:O}",
		    "sample", (json_int_t)job->sample, "packs",
		    (json_int_t)res->check.packs, "packs_read",
		    (json_int_t)res->check.packs_read, "blobs",
		    (json_int_t)res->check.blobs, "snapshots",
		    (json_int_t)res->check.snapshots, "problems",
		    (json_int_t)res->check.problems, "damaged_blobs",
		    (json_int_t)res->check.damaged_blobs, "affected",
		    (json_int_t)res->check.affected, "first_problems",
		    res->problems != NULL ? res->problems : json_array());
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "mailbox",
	    job->addresses[0], "snapshot", (json_int_t)res->verify.snapshot,
	    "expected", (json_int_t)res->verify.expected, "messages",
	    (json_int_t)res->verify.messages, "bytes",
	    (json_int_t)res->verify.bytes, "missing",
	    (json_int_t)res->verify.missing, "differ",
	    (json_int_t)res->verify.differ);
}

/* Workers */

static void
jobs_repo_conf_copy(struct jobs_repo_conf *rc, const struct mk_conf *conf)
{
	mk_storage_opts_from_conf(conf, &rc->sopts);
	rc->location = mk_xstrdup(conf->repo_location);
	rc->key_file = mk_xstrdup(conf->repo_key_file);
	rc->region =
	    rc->sopts.region != NULL ? mk_xstrdup(rc->sopts.region) : NULL;
	rc->credentials_file = rc->sopts.credentials_file != NULL
	    ? mk_xstrdup(rc->sopts.credentials_file)
	    : NULL;
	rc->ca_file =
	    rc->sopts.ca_file != NULL ? mk_xstrdup(rc->sopts.ca_file) : NULL;
	rc->sopts.region = rc->region;
	rc->sopts.credentials_file = rc->credentials_file;
	rc->sopts.ca_file = rc->ca_file;
}

static void
jobs_repo_conf_free(struct jobs_repo_conf *rc)
{
	free(rc->location);
	free(rc->key_file);
	free(rc->region);
	free(rc->credentials_file);
	free(rc->ca_file);
	memset(rc, 0, sizeof(*rc));
}

/*
 * The repository with the daemon's [repository] settings and key: the
 * key file, else MAILKEEP_PASSPHRASE.  Its key slots are counted on the
 * way, for the status warning about a single one.
 */
static int
jobs_repo_open(const struct jobs_repo_conf *rc, struct mk_repo **repo_r,
    struct jobs_result *res, struct mk_err *err)
{
	struct mk_repo_key key = { MK_REPO_KEY_NONE, NULL, NULL, NULL };
	const char *pass = getenv(MK_REPO_PASSPHRASE_ENV);
	struct mk_storage *st = NULL;
	struct mk_repo_slot *slots = NULL;
	struct mk_err kerr;
	size_t n;

	res->key_slots = -1;
	if (access(rc->key_file, F_OK) == 0) {
		key.kind = MK_REPO_KEY_FILE;
		key.key_file = rc->key_file;
	} else if (pass != NULL && pass[0] != '\0') {
		key.kind = MK_REPO_KEY_PASSPHRASE;
		key.passphrase = pass;
	}
	if (mk_storage_open_opts(rc->location, &rc->sopts, false, &st, err) <
		0 ||
	    mk_repo_open_storage(st, &key, repo_r, err) < 0)
		return -1;
	if (mk_repo_key_list(*repo_r, &slots, &n, &kerr) == 0) {
		res->key_slots = (int)n;
		res->encrypted = mk_repo_keys(*repo_r)->encrypted;
	} else
		mk_log_warn("jobs", "counting key slots: %s", kerr.msg);
	free(slots);
	return 0;
}

static void jobs_last_collect_cb(
    const struct mk_catalog_snapshot *s, void *arg);

static void
jobs_task_run(struct mk_job *base, void *ctx)
{
	struct jobs_task *t = (struct jobs_task *)base;
	struct jobs_job *job = t->job;
	struct mk_worker *w = ctx;

	t->rc = -1;
	if (w->catalog == NULL && t->phase != JOBS_SAVE) {
		mk_err_set(&t->err, "the worker has no catalog connection");
		return;
	}
	switch (t->phase) {
	case JOBS_SAVE:
		t->rc = mk_verify_results_save(t->dir, &t->verify, &t->err);
		return;
	case JOBS_LOAD:
		t->rc = mk_catalog_snapshots(
		    w->catalog, NULL, jobs_last_collect_cb, t, &t->err);
		return;
	case JOBS_KEYS: {
		struct mk_repo *repo = NULL;

		/* No repository yet is not worth more than a line. */
		if ((t->rc = jobs_repo_open(
			 &t->rconf, &repo, &t->res, &t->err)) < 0)
			mk_log_info("jobs", "repository: %s", t->err.msg);
		mk_repo_close(&repo);
		return;
	}
	case JOBS_BEGIN:
		/* Tried again after a wait for the lock: still open. */
		t->res.key_slots = -1;
		if (job->repo == NULL &&
		    jobs_repo_open(&job->rconf, &job->repo, &t->res, &t->err) <
			0)
			return;
		if (job->kind->lock &&
		    (t->rc = mk_lock_try(mk_repo_storage(job->repo),
			 MK_LOCK_SHARED, &job->lock, &t->holder, &t->err)) != 0)
			return;
		t->rc = job->kind->begin != NULL
		    ? job->kind->begin(job, w, &t->err)
		    : 0;
		return;
	case JOBS_ITEM:
		if (atomic_load(&job->cancel)) {
			mk_err_set(&t->err, "cancelled");
			return;
		}
		t->rc = job->kind->item(job, t->index, w, &t->res, &t->err);
		return;
	case JOBS_END:
		t->rc = job->kind->end != NULL && job->run != 0
		    ? job->kind->end(job, w, &t->err)
		    : 0;
		mk_lock_release(&job->lock);
		mk_repo_close(&job->repo);
		return;
	}
}

static void jobs_task_done(struct mk_job *base);

static void
jobs_submit_task(struct jobs_job *job, enum jobs_phase phase, size_t index)
{
	struct jobs_task *t;

	/* The pool is going away: the job stays where it is. */
	if (job->jobs->d->stopping)
		return;
	t = mk_xcalloc(1, sizeof(*t));
	t->base.run = jobs_task_run;
	t->base.done = jobs_task_done;
	t->jobs = job->jobs;
	t->job = job;
	t->phase = phase;
	t->index = index;
	mk_pool_submit(job->jobs->d->pool, &t->base);
}

/* Last backups */

static bool
jobs_last_match(const void *value, const void *ctx)
{
	return strcmp(((const struct jobs_last *)value)->address, ctx) == 0;
}

/* Keep the later time of address in map. */
static void
jobs_last_put(struct mk_hmap *map, const char *address, int64_t ns)
{
	uint64_t key = mk_hmap_hash(address, strlen(address));
	struct jobs_last *l = mk_hmap_get(map, key, jobs_last_match, address);

	if (l == NULL) {
		l = mk_xcalloc(1, sizeof(*l));
		l->address = mk_xstrdup(address);
		mk_hmap_put(map, key, l);
	}
	if (ns > l->ns)
		l->ns = ns;
}

static void
jobs_last_collect_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct jobs_task *t = arg;

	jobs_last_put(t->loadmap, s->address, s->time_ns);
}

static void
jobs_last_free(struct mk_hmap **mapp)
{
	struct jobs_last *l;
	size_t pos = 0;

	if (*mapp == NULL)
		return;
	while ((l = mk_hmap_next(*mapp, &pos)) != NULL) {
		free(l->address);
		free(l);
	}
	mk_hmap_free(mapp);
}

static void
jobs_load_done(struct jobs_task *t)
{
	struct mk_jobs *jobs = t->jobs;
	struct jobs_last *l;
	size_t pos = 0;

	if (t->rc < 0)
		mk_log_warn("jobs", "last backups: %s", t->err.msg);

	while ((l = mk_hmap_next(t->loadmap, &pos)) != NULL)
		jobs_last_put(jobs->last, l->address, l->ns);
	jobs->last_loaded = true;
	jobs_last_free(&t->loadmap);
}

/* The loop side of a job */

static enum jobs_reason
jobs_reason(const struct jobs_job *job, const struct mk_err *err)
{
	if (atomic_load(&job->cancel))
		return JOBS_R_CANCELLED;
	switch (err->sys_errno) {
	case 0:
		return JOBS_R_OTHER;
	case ENOSPC:
	case EDQUOT:
		return JOBS_R_NO_SPACE;
	case EACCES:
	case EPERM:
		return JOBS_R_PERMISSION;
	case ENOENT:
	case ENOTDIR:
		return JOBS_R_VANISHED;
	default:
		return JOBS_R_IO;
	}
}

/* The backup metrics count the failures of backups only. */
static void
jobs_count_error(struct jobs_job *job, enum jobs_reason r)
{
	if (job->kind == JOBS_BACKUP)
		job->jobs->reasons[r]++;
}

static void
jobs_add_error(struct jobs_job *job, const char *mailbox, const char *msg)
{
	json_t *e, *text;

	if (job->nerrors++ >= JOBS_ERRORS_MAX)
		return;
	e = json_object();
	if (mailbox != NULL)
		json_object_set_new(e, "mailbox", json_string(mailbox));
	/* Messages may quote file names that are not UTF-8. */
	if ((text = json_string(msg)) == NULL)
		text = json_string("(not UTF-8)");
	json_object_set_new(e, "error", text);
	json_array_append_new(job->errors, e);
}

static void
jobs_job_free(struct jobs_job *job)
{
	size_t i;

	for (i = 0; i < job->total; i++) {
		free(job->addresses[i]);
		free(job->relpaths[i]);
	}
	free(job->addresses);
	free(job->relpaths);
	json_decref(job->errors);
	json_decref(job->result);
	jobs_restore_free(&job->restore);
	free(job->error);
	jobs_repo_conf_free(&job->rconf);
	free(job->scratch);
	mk_lock_release(&job->lock);
	mk_repo_close(&job->repo);
	if (job->lock_timer != NULL)
		event_free(job->lock_timer);
	pthread_mutex_destroy(&job->bucket_lock);
	free(job);
}

/* Drop the oldest finished jobs beyond JOBS_KEEP. */
static void
jobs_trim(struct mk_jobs *jobs)
{
	struct jobs_job *job, *next;

	for (job = TAILQ_FIRST(&jobs->list);
	     job != NULL && jobs->nfinished > JOBS_KEEP; job = next) {
		next = TAILQ_NEXT(job, entry);
		if (job->state < JOBS_DONE)
			continue;
		TAILQ_REMOVE(&jobs->list, job, entry);
		jobs->nfinished--;
		jobs_job_free(job);
	}
}

static void
jobs_finish(struct jobs_job *job, enum jobs_state state)
{
	struct mk_jobs *jobs = job->jobs;
	double secs;
	size_t b;

	job->state = state;
	job->ended_ns = mk_daemon_now_ns();
	jobs->nfinished++;
	if (job->kind == JOBS_CHECK || job->kind == JOBS_TEST_RESTORE)
		jobs_verify_record(job, state);
	jobs->runs[job->kind - jobs_kinds][state]++;
	if (job->started_ns != 0) {
		secs = (double)(job->ended_ns - job->started_ns) / 1e9;
		for (b = 0; b + 1 < JOBS_DURATION_BUCKETS &&
		     secs > jobs_duration_le[b];
		     b++)
			;
		jobs->duration_buckets[b]++;
		jobs->duration_sum += secs;
		jobs->last_run_ended_ns = job->ended_ns;
	}
	mk_log_info("jobs",
	    "job %llu (%s) %s: %zu of %zu mailboxes, %zu failed, %llu bytes "
	    "read, %llu stored",
	    (unsigned long long)job->id, job->kind->name,
	    jobs_state_names[state], job->done, job->total, job->failed,
	    (unsigned long long)atomic_load(&job->bytes_read),
	    (unsigned long long)job->bytes_stored);
	jobs_trim(jobs);
	jobs_pump(jobs);
}

/* No mailbox running and none left to start: end the job. */
static void
jobs_maybe_end(struct jobs_job *job)
{
	if (job->running > 0 ||
	    (job->next < job->total && !atomic_load(&job->cancel)))
		return;
	jobs_submit_task(job, JOBS_END, 0);
}

/* Pauses between attempts at the lock: 1 s doubling up to 60 s. */
#define JOBS_LOCK_PAUSE_MIN_MS 1000
#define JOBS_LOCK_PAUSE_MAX_MS 60000

static void
jobs_lock_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct jobs_job *job = arg;

	(void)fd;
	(void)what;
	jobs_submit_task(job, JOBS_BEGIN, 0);
}

/*
 * A job met a live lock that conflicts with its shared one (a prune's
 * exclusive lock, on any host): try again later, on a timer, so that
 * neither the loop nor a worker is held while it waits.  The pause
 * doubles from a second up to a minute, each drawn at random between its
 * half and its whole so that the daemons sharing a repository do not
 * come back together; the last attempt is at [backup] lock_wait.  false
 * when the job may wait no longer: t->err then says so.
 */
static bool
jobs_lock_wait(struct jobs_job *job, struct jobs_task *t)
{
	struct mk_jobs *jobs = job->jobs;
	int64_t now = mk_daemon_now_ns(), pause_ms;
	struct timeval tv;
	unsigned shift;

	job->holder = t->holder;
	job->lock_attempts++;
	if (job->lock_since_ns == 0) {
		if (job->lock_wait == 0)
			return false;
		job->lock_since_ns = now;
		job->lock_until_ns = now + (int64_t)job->lock_wait * 1000000000;
		jobs->lock_waits++;
		mk_log_warn("jobs",
		    "job %llu (%s): waiting up to %llu s for the repository "
		    "lock: %s",
		    (unsigned long long)job->id, job->kind->name,
		    (unsigned long long)job->lock_wait, t->err.msg);
	}
	if (now >= job->lock_until_ns) {
		jobs->lock_waits_expired++;
		mk_err_prefix(&t->err,
		    "gave up after waiting %lld s for the repository lock",
		    (long long)((now - job->lock_since_ns) / 1000000000));
		return false;
	}
	job->lock_waiting = true;
	shift = job->lock_attempts < 7 ? job->lock_attempts - 1 : 6;
	pause_ms = (int64_t)JOBS_LOCK_PAUSE_MIN_MS << shift;
	if (pause_ms > JOBS_LOCK_PAUSE_MAX_MS)
		pause_ms = JOBS_LOCK_PAUSE_MAX_MS;
	pause_ms = pause_ms / 2 +
	    (int64_t)arc4random_uniform((uint32_t)(pause_ms / 2) + 1);
	if (now + pause_ms * 1000000 > job->lock_until_ns)
		pause_ms = (job->lock_until_ns - now) / 1000000;
	job->lock_next_ns = now + pause_ms * 1000000;
	if (job->lock_timer == NULL &&
	    (job->lock_timer = evtimer_new(
		 jobs->d->base, jobs_lock_timer_cb, job)) == NULL)
		mk_fatal("jobs", "cannot make a timer");
	tv.tv_sec = (time_t)(pause_ms / 1000);
	tv.tv_usec = (suseconds_t)(pause_ms % 1000) * 1000;
	if (evtimer_add(job->lock_timer, &tv) < 0)
		mk_fatal("jobs", "cannot add a timer");
	return true;
}

/* Verification results */

static enum mk_verify_kind
jobs_verify_kind(const struct jobs_kind *kind)
{
	return kind == JOBS_CHECK ? MK_VERIFY_CHECK : MK_VERIFY_TEST_RESTORE;
}

static char *
jobs_xstrdup_null(const char *s)
{
	return s != NULL ? mk_xstrdup(s) : NULL;
}

/*
 * Write the results to the state directory: on a worker, one write at a
 * time (a result that comes meanwhile is written after it); on the way
 * out, when the pool is stopping, right here.
 */
static void
jobs_verify_save(struct mk_jobs *jobs)
{
	const char *dir = jobs->d->conf->state_dir;
	struct jobs_task *t;
	struct mk_err err;
	size_t k;

	if (jobs->verify_saving) {
		jobs->verify_dirty = true;
		return;
	}
	jobs->verify_dirty = false;
	if (jobs->d->stopping) {
		if (mk_verify_results_save(dir, &jobs->verify, &err) < 0)
			mk_log_warn(
			    "jobs", "saving the verify results: %s", err.msg);
		return;
	}
	t = mk_xcalloc(1, sizeof(*t));
	t->base.run = jobs_task_run;
	t->base.done = jobs_task_done;
	t->jobs = jobs;
	t->phase = JOBS_SAVE;
	t->dir = mk_xstrdup(dir);
	t->verify = jobs->verify;
	for (k = 0; k < MK_VERIFY_KINDS; k++) {
		t->verify.kind[k].error =
		    jobs_xstrdup_null(jobs->verify.kind[k].error);
		t->verify.kind[k].mailbox =
		    jobs_xstrdup_null(jobs->verify.kind[k].mailbox);
	}
	jobs->verify_saving = true;
	mk_pool_submit(jobs->d->pool, &t->base);
}

static void
jobs_verify_saved(struct jobs_task *t)
{
	struct mk_jobs *jobs = t->jobs;

	if (t->rc < 0)
		mk_log_warn(
		    "jobs", "saving the verify results: %s", t->err.msg);
	mk_verify_results_clear(&t->verify);
	free(t->dir);
	jobs->verify_saving = false;
	if (jobs->verify_dirty)
		jobs_verify_save(jobs);
}

/* A check or a test restore ended: what it found, kept across restarts. */
static void
jobs_verify_record(struct jobs_job *job, enum jobs_state state)
{
	struct mk_verify_last *l =
	    &job->jobs->verify.kind[jobs_verify_kind(job->kind)];
	json_t *r = job->result;
	const char *error;

	if (state != JOBS_DONE && state != JOBS_FAILED)
		return;
	l->ended_ns = job->ended_ns;
	l->ok = state == JOBS_DONE;
	l->problems = job->kind == JOBS_CHECK
	    ? (uint64_t)json_integer_value(json_object_get(r, "problems"))
	    : (uint64_t)json_integer_value(json_object_get(r, "missing")) +
		(uint64_t)json_integer_value(json_object_get(r, "differ"));
	free(l->mailbox);
	l->mailbox = job->kind == JOBS_TEST_RESTORE
	    ? jobs_xstrdup_null(job->addresses[0])
	    : NULL;
	if (state == JOBS_DONE)
		l->success_ns = job->ended_ns;
	else {
		l->failures++;
		l->failure_ns = job->ended_ns;
		error = json_string_value(
		    json_object_get(json_array_get(job->errors, 0), "error"));
		free(l->error);
		l->error = mk_xstrdup(error != NULL ? error : "failed");
	}
	jobs_verify_save(job->jobs);
}

static void
jobs_task_done(struct mk_job *base)
{
	struct jobs_task *t = (struct jobs_task *)base;
	struct jobs_job *job = t->job;
	struct mk_jobs *jobs = t->jobs;

	if (t->phase == JOBS_LOAD) {
		jobs_load_done(t);
		free(t);
		return;
	}
	if (t->phase == JOBS_SAVE) {
		jobs_verify_saved(t);
		free(t);
		return;
	}
	switch (t->phase) {
	case JOBS_KEYS:
		jobs_repo_conf_free(&t->rconf);
		if (t->res.key_slots >= 0) {
			jobs->key_slots = t->res.key_slots;
			jobs->encrypted = t->res.encrypted;
		}
		break;
	case JOBS_BEGIN:
		if (t->res.key_slots >= 0) {
			jobs->key_slots = t->res.key_slots;
			jobs->encrypted = t->res.encrypted;
		}
		/* Waiting again only if jobs_lock_wait() says so. */
		job->lock_waiting = false;
		if (t->rc == 1 && atomic_load(&job->cancel)) {
			jobs_submit_task(job, JOBS_END, 0);
			break;
		}
		if (t->rc == 1 && jobs_lock_wait(job, t))
			break;
		if (t->rc != 0) {
			mk_log_error("jobs", "job %llu: %s",
			    (unsigned long long)job->id, t->err.msg);
			free(job->error);
			job->error = mk_xstrdup(t->err.msg);
			jobs_add_error(job, NULL, t->err.msg);
			jobs_count_error(job, JOBS_R_REPOSITORY);
			jobs_submit_task(job, JOBS_END, 0);
			break;
		}
		if (job->lock_since_ns != 0)
			mk_log_info("jobs",
			    "job %llu: took the repository lock after %lld s",
			    (unsigned long long)job->id,
			    (long long)((mk_daemon_now_ns() -
					    job->lock_since_ns) /
				1000000000));
		jobs_dispatch(job);
		break;
	case JOBS_ITEM:
		job->running--;
		if (t->rc < 0) {
			enum jobs_reason r = jobs_reason(job, &t->err);

			job->failed++;
			jobs_count_error(job, r);
			if (r != JOBS_R_CANCELLED)
				mk_log_error("jobs", "job %llu: %s: %s",
				    (unsigned long long)job->id,
				    job->addresses[t->index] != NULL
					? job->addresses[t->index]
					: job->kind->name,
				    t->err.msg);
			jobs_add_error(
			    job, job->addresses[t->index], t->err.msg);
			if (job->kind == JOBS_CHECK ||
			    job->kind == JOBS_TEST_RESTORE) {
				json_decref(job->result);
				job->result = jobs_verify_result(job, &t->res);
			}
			if (job->kind == JOBS_RESTORE) {
				json_decref(job->result);
				job->result = jobs_restore_result(
				    job->restore, &t->res.restored);
			}
		} else if (job->kind == JOBS_CHECK ||
		    job->kind == JOBS_TEST_RESTORE) {
			job->done++;
			json_decref(job->result);
			job->result = jobs_verify_result(job, &t->res);
		} else if (job->kind == JOBS_RESTORE) {
			job->done++;
			json_decref(job->result);
			job->result =
			    jobs_restore_result(job->restore, &t->res.restored);
		} else {
			job->done++;
			job->bytes_stored += t->res.stored;
			jobs->stored_total += t->res.stored;
			jobs->mailboxes_ok++;
			if (job->kind->last_backup)
				jobs_last_put(jobs->last,
				    job->addresses[t->index], t->res.time_ns);
		}
		if (!jobs->d->stopping)
			jobs_dispatch(job);
		break;
	case JOBS_END:
		if (job->kind == JOBS_BACKUP)
			jobs->read_total += atomic_load(&job->bytes_read);
		if (t->rc < 0) {
			mk_log_error("jobs", "job %llu: %s",
			    (unsigned long long)job->id, t->err.msg);
			jobs_add_error(job, NULL, t->err.msg);
			jobs_count_error(job, JOBS_R_REPOSITORY);
		}
		jobs_finish(job,
		    atomic_load(&job->cancel) ? JOBS_CANCELLED
			: job->error != NULL || t->rc < 0 || job->failed > 0
			? JOBS_FAILED
			: JOBS_DONE);
		break;
	case JOBS_LOAD:
	case JOBS_SAVE:
		break;
	}
	json_decref(t->res.problems);
	free(t);
}

/* Start mailboxes up to the job's concurrency; end when all are done. */
static void
jobs_dispatch(struct jobs_job *job)
{
	if (job->jobs->d->stopping)
		return;
	while (!atomic_load(&job->cancel) && job->next < job->total &&
	    job->running < job->concurrency) {
		job->running++;
		jobs_submit_task(job, JOBS_ITEM, job->next++);
	}
	jobs_maybe_end(job);
}

/* Every mailbox the daemon knows, for a job of all. */
static void
jobs_list_all(struct jobs_job *job)
{
	const struct mk_live_mailbox **all;
	size_t n, i;

	all = mk_live_all(job->jobs->d->live, &n);
	/* A request of every mailbox came with empty lists. */
	free(job->addresses);
	free(job->relpaths);
	job->addresses = mk_xcalloc(n + 1, sizeof(char *));
	job->relpaths = mk_xcalloc(n + 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		job->addresses[i] = mk_xstrdup(all[i]->address);
		job->relpaths[i] = mk_xstrdup(all[i]->relpath);
	}
	job->total = n;
	free(all);
}

/* A test restore of no named mailbox: one backed up, at random. */
static void
jobs_pick_mailbox(struct jobs_job *job)
{
	const struct mk_live_mailbox **all;
	size_t n, i, k = 0;

	all = mk_live_all(job->jobs->d->live, &n);
	for (i = 0; i < n; i++)
		if (mk_jobs_last_backup(job->jobs, all[i]->address) != 0)
			all[k++] = all[i];
	if (k == 0) {
		job->error = mk_xstrdup("no mailbox has been backed up yet");
		jobs_add_error(job, NULL, job->error);
	} else {
		i = arc4random_uniform((uint32_t)k);
		job->addresses[0] = mk_xstrdup(all[i]->address);
		job->relpaths[0] = mk_xstrdup(all[i]->relpath);
		job->total = 1;
	}
	free(all);
}

static void
jobs_begin(struct jobs_job *job)
{
	struct mk_jobs *jobs = job->jobs;
	const struct mk_conf *conf = jobs->d->conf;

	jobs->nqueued--;
	job->state = JOBS_RUNNING;
	job->started_ns = mk_daemon_now_ns();
	if (job->all)
		jobs_list_all(job);
	job->concurrency = jobs->concurrency;
	job->bandwidth = jobs->bandwidth;
	job->tokens = (double)jobs->bandwidth;
	clock_gettime(CLOCK_MONOTONIC, &job->refilled);
	job->rootfd = jobs->d->rootfd;
	jobs_repo_conf_copy(&job->rconf, conf);
	job->scratch = mk_xstrdup(conf->state_dir);
	if (job->kind == JOBS_TEST_RESTORE && job->total == 0)
		jobs_pick_mailbox(job);
	job->dict_mode = conf->backup_dictionary;
	job->lock_wait = jobs->lock_wait;
	mk_log_info("jobs",
	    "job %llu (%s, %s): %zu mailboxes, %u at once, %llu bytes/s "
	    "(0: no limit)",
	    (unsigned long long)job->id, job->kind->name, job->trigger,
	    job->total, job->concurrency, (unsigned long long)job->bandwidth);
	jobs_submit_task(job, JOBS_BEGIN, 0);
}

/* Start the queued jobs whose kind has none running. */
static void
jobs_pump(struct mk_jobs *jobs)
{
	struct jobs_job *job, *other;

	if (jobs->d->stopping || !jobs->d->ready)
		return;
	TAILQ_FOREACH(job, &jobs->list, entry)
	{
		bool busy = false;

		if (job->state != JOBS_QUEUED)
			continue;
		TAILQ_FOREACH(other, &jobs->list, entry)
		if (other->state == JOBS_RUNNING &&
		    other->kind->group == job->kind->group)
			busy = true;
		if (!busy)
			jobs_begin(job);
	}
}

static struct jobs_job *
jobs_job_new(
    struct mk_jobs *jobs, const struct jobs_kind *kind, const char *trigger)
{
	struct jobs_job *job = mk_xcalloc(1, sizeof(*job));

	job->jobs = jobs;
	job->kind = kind;
	job->id = ++jobs->next_id;
	job->state = JOBS_QUEUED;
	job->trigger = trigger;
	job->created_ns = mk_daemon_now_ns();
	job->errors = json_array();
	job->rootfd = -1;
	atomic_init(&job->cancel, false);
	atomic_init(&job->bytes_read, 0);
	atomic_init(&job->units, 0);
	atomic_init(&job->units_total, 0);
	atomic_init(&job->bytes_total, 0);
	pthread_mutex_init(&job->bucket_lock, NULL);
	TAILQ_INSERT_TAIL(&jobs->list, job, entry);
	jobs->nqueued++;
	return job;
}

static struct jobs_job *
jobs_find(struct mk_jobs *jobs, uint64_t id)
{
	struct jobs_job *job;

	TAILQ_FOREACH(job, &jobs->list, entry)
	if (job->id == id)
		return job;
	return NULL;
}

/* A backup job of everything, from the schedule or the start. */
static void
jobs_submit_all(struct mk_jobs *jobs, const char *trigger)
{
	struct jobs_job *job;

	TAILQ_FOREACH(job, &jobs->list, entry)
	if (job->kind == JOBS_BACKUP && job->all && job->state == JOBS_QUEUED) {
		mk_log_warn("jobs",
		    "%s backup skipped: job %llu, a backup of every "
		    "mailbox, is still queued",
		    trigger, (unsigned long long)job->id);
		return;
	}
	job = jobs_job_new(jobs, JOBS_BACKUP, trigger);
	job->all = true;
	jobs_pump(jobs);
}

int
mk_jobs_submit_backup(struct mk_jobs *jobs, char **addresses, size_t n,
    uint64_t *id_r, enum mk_jobs_refusal *why_r, struct mk_err *err)
{
	struct jobs_job *job;
	char relpath[4096];
	size_t i, j, k = 0;

	if (jobs->nqueued >= JOBS_QUEUE_MAX) {
		*why_r = MK_JOBS_BUSY;
		return mk_err_set(err, "%d jobs are queued already; try later",
		    JOBS_QUEUE_MAX);
	}
	if (n > JOBS_MAILBOXES_MAX) {
		*why_r = MK_JOBS_BAD_REQUEST;
		return mk_err_set(err, "more than %d mailboxes in one request",
		    JOBS_MAILBOXES_MAX);
	}
	for (i = 0; i < n; i++) {
		if (mk_live_find(jobs->d->live, addresses[i]) == NULL) {
			*why_r = MK_JOBS_NOT_FOUND;
			return mk_err_set(
			    err, "no such mailbox: %s", addresses[i]);
		}
		if (mk_store_mailbox_path(jobs->d->store, addresses[i], relpath,
			sizeof(relpath), err) < 0) {
			*why_r = MK_JOBS_BAD_REQUEST;
			return -1;
		}
	}
	job = jobs_job_new(jobs, JOBS_BACKUP, "request");
	job->all = n == 0;
	job->addresses = mk_xcalloc(n + 1, sizeof(char *));
	job->relpaths = mk_xcalloc(n + 1, sizeof(char *));
	for (i = 0; i < n; i++) {
		/* A mailbox named twice is backed up once. */
		for (j = 0; j < i && strcmp(addresses[j], addresses[i]) != 0;
		     j++)
			;
		if (j < i)
			continue;
		(void)mk_store_mailbox_path(jobs->d->store, addresses[i],
		    relpath, sizeof(relpath), err);
		job->addresses[k] = mk_xstrdup(addresses[i]);
		job->relpaths[k++] = mk_xstrdup(relpath);
	}
	job->total = k;
	*id_r = job->id;
	jobs_pump(jobs);
	return 0;
}

int
mk_jobs_submit_restore(struct mk_jobs *jobs,
    const struct mk_jobs_restore_req *r, uint64_t *id_r,
    enum mk_jobs_refusal *why_r, struct mk_err *err)
{
	const struct mk_conf *conf = jobs->d->conf;
	const struct mk_live_mailbox *mb;
	struct jobs_restore *rs;
	struct mk_enforce_view v;
	struct jobs_job *job;
	char relpath[4096];
	struct tm tm;
	time_t now;

	*why_r = MK_JOBS_BAD_REQUEST;
	if (jobs->nqueued >= JOBS_QUEUE_MAX) {
		*why_r = MK_JOBS_BUSY;
		return mk_err_set(err, "%d jobs are queued already; try later",
		    JOBS_QUEUE_MAX);
	}
	if ((mb = mk_live_find(jobs->d->live, r->address)) == NULL) {
		*why_r = MK_JOBS_NOT_FOUND;
		return mk_err_set(err, "no such mailbox: %s", r->address);
	}
	if (r->snapshot <= 0)
		return mk_err_set(err, "give the snapshot, a catalog id");
	if (mk_store_mailbox_path(
		jobs->d->store, r->address, relpath, sizeof(relpath), err) < 0)
		return -1;
	rs = mk_xcalloc(1, sizeof(*rs));
	rs->req.format = MK_RESTORE_MAILDIR;
	if (r->format != NULL && strcmp(r->format, "mbox") == 0)
		rs->req.format = MK_RESTORE_MBOX;
	else if (r->format != NULL && strcmp(r->format, "eml") == 0)
		rs->req.format = MK_RESTORE_EML;
	else if (r->format != NULL && strcmp(r->format, "maildir") != 0) {
		jobs_restore_free(&rs);
		return mk_err_set(err, "format: maildir, mbox or eml");
	}
	if (r->to == NULL || strcmp(r->to, "new-folder") == 0)
		rs->req.target = MK_RESTORE_TO_NEW_FOLDER;
	else if (strcmp(r->to, "original") == 0)
		rs->req.target = MK_RESTORE_TO_ORIGINAL;
	else if (conf->restore_root == NULL ||
	    !mk_fs_path_beneath(r->to, conf->restore_root)) {
		jobs_restore_free(&rs);
		return mk_err_set(err,
		    "to: new-folder, original, or a directory beneath "
		    "[restore] root (%s)",
		    conf->restore_root != NULL ? conf->restore_root
					       : "not set");
	} else {
		rs->req.target = MK_RESTORE_TO_DIR;
		rs->dir = mk_xstrdup(r->to);
	}
	if (rs->req.format != MK_RESTORE_MAILDIR &&
	    rs->req.target != MK_RESTORE_TO_DIR) {
		jobs_restore_free(&rs);
		return mk_err_set(
		    err, "an mbox or eml export needs a directory");
	}
	rs->address = mk_xstrdup(r->address);
	rs->folder = r->folder != NULL ? mk_xstrdup(r->folder) : NULL;
	rs->message = r->message != NULL ? mk_xstrdup(r->message) : NULL;
	rs->maildir = mk_xasprintf("%s/%s", conf->store_root, relpath);
	rs->doveadm = conf->restore_doveadm != NULL
	    ? mk_xstrdup(conf->restore_doveadm)
	    : NULL;
	rs->doveadm_config = conf->restore_doveadm_config != NULL
	    ? mk_xstrdup(conf->restore_doveadm_config)
	    : NULL;
	now = time(NULL);
	localtime_r(&now, &tm);
	strftime(rs->prefix, sizeof(rs->prefix), "Restored-%Y-%m-%d", &tm);
	rs->req.address = rs->address;
	rs->req.snapshot = r->snapshot;
	rs->req.folder = rs->folder;
	rs->req.message = rs->message;
	rs->req.separator = conf->hierarchy_separator;
	rs->req.dir = rs->dir;
	rs->req.maildir = rs->maildir;
	rs->req.prefix = rs->prefix;
	rs->req.doveadm = rs->doveadm;
	rs->req.doveadm_config = rs->doveadm_config;
	rs->req.failed_cb = jobs_restore_failed_cb;
	rs->req.failed_arg = rs;
	/* The room the quota leaves, from the live usage. */
	rs->req.room_bytes = rs->req.room_messages = UINT64_MAX;
	mk_enforce_view(jobs->d->enforce, mb, &v);
	if (!r->force && rs->req.target != MK_RESTORE_TO_DIR) {
		if (v.limits.bytes != 0)
			rs->req.room_bytes = v.limits.bytes > v.bytes
			    ? v.limits.bytes - v.bytes
			    : 0;
		if (v.limits.messages != 0)
			rs->req.room_messages = v.limits.messages > v.messages
			    ? v.limits.messages - v.messages
			    : 0;
	}
	job = jobs_job_new(jobs, JOBS_RESTORE, "request");
	job->restore = rs;
	job->addresses = mk_xcalloc(2, sizeof(char *));
	job->relpaths = mk_xcalloc(2, sizeof(char *));
	job->addresses[0] = mk_xstrdup(r->address);
	job->relpaths[0] = mk_xstrdup(relpath);
	job->total = 1;
	*id_r = job->id;
	jobs_pump(jobs);
	return 0;
}

int
mk_jobs_cancel(struct mk_jobs *jobs, uint64_t id)
{
	struct jobs_job *job = jobs_find(jobs, id);

	if (job == NULL)
		return 0;
	if (job->state >= JOBS_DONE)
		return -1;
	atomic_store(&job->cancel, true);
	mk_log_info("jobs", "job %llu: cancel", (unsigned long long)id);
	if (job->state == JOBS_QUEUED) {
		jobs->nqueued--;
		jobs_finish(job, JOBS_CANCELLED);
	} else if (job->lock_timer != NULL &&
	    evtimer_pending(job->lock_timer, NULL)) {
		/* Waiting for the lock between two attempts: end it now. */
		evtimer_del(job->lock_timer);
		job->lock_waiting = false;
		jobs_submit_task(job, JOBS_END, 0);
	}
	return 1;
}

void
mk_jobs_cancel_all(struct mk_jobs *jobs)
{
	struct jobs_job *job;

	if (jobs == NULL)
		return;
	TAILQ_FOREACH(job, &jobs->list, entry)
	if (job->state == JOBS_RUNNING)
		atomic_store(&job->cancel, true);
}

/* The schedule */

/* The next time of a schedule after now, with jitter seconds at most. */
static void
jobs_plan(struct jobs_sched *sc, time_t now, uint64_t jitter)
{
	if (!sc->have || mk_cron_next(&sc->cron, now, &sc->next_fire) != 1) {
		sc->next_fire = sc->due = 0;
		return;
	}
	sc->due = sc->next_fire;
	if (jitter > 0)
		sc->due += (time_t)arc4random_uniform((uint32_t)jitter + 1);
}

/* A check or a test restore from the schedule, unless one is queued. */
static void
jobs_submit_verify(struct mk_jobs *jobs, const struct jobs_kind *kind,
    const char *trigger, unsigned sample, const char *address)
{
	struct jobs_job *job;

	TAILQ_FOREACH(job, &jobs->list, entry)
	if (job->kind == kind && job->state == JOBS_QUEUED &&
	    strcmp(trigger, "schedule") == 0) {
		mk_log_warn("jobs", "scheduled %s skipped: job %llu is queued",
		    kind->name, (unsigned long long)job->id);
		return;
	}
	job = jobs_job_new(jobs, kind, trigger);
	job->sample = sample;
	job->addresses = mk_xcalloc(2, sizeof(char *));
	job->relpaths = mk_xcalloc(2, sizeof(char *));
	job->total = kind == JOBS_CHECK ? 1 : 0;
	if (address != NULL) {
		char relpath[4096];

		(void)mk_store_mailbox_path(
		    jobs->d->store, address, relpath, sizeof(relpath), NULL);
		job->addresses[0] = mk_xstrdup(address);
		job->relpaths[0] = mk_xstrdup(relpath);
		job->total = 1;
	}
	jobs_pump(jobs);
}

static void
jobs_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_jobs *jobs = arg;
	time_t now = time(NULL);
	struct jobs_sched *sc;

	(void)fd;
	(void)what;
	if (!jobs->d->ready)
		return;
	if (jobs->start_pending) {
		jobs->start_pending = false;
		jobs_submit_all(jobs, "start");
	}
	sc = &jobs->sched[JOBS_BACKUP - jobs_kinds];
	if (sc->due != 0 && now >= sc->due) {
		jobs_submit_all(jobs, "schedule");
		jobs_plan(sc, now, jobs->jitter);
	}
	sc = &jobs->sched[JOBS_CHECK - jobs_kinds];
	if (sc->due != 0 && now >= sc->due) {
		jobs_submit_verify(
		    jobs, JOBS_CHECK, "schedule", jobs->check_sample, NULL);
		jobs_plan(sc, now, 0);
	}
	sc = &jobs->sched[JOBS_TEST_RESTORE - jobs_kinds];
	if (sc->due != 0 && now >= sc->due) {
		jobs_submit_verify(
		    jobs, JOBS_TEST_RESTORE, "schedule", 0, NULL);
		jobs_plan(sc, now, 0);
	}
	jobs_pump(jobs);
}

/* The schedule of each kind in conf ([backup] and [verify]), or NULL. */
static const char *
jobs_conf_schedule(const struct mk_conf *conf, size_t kind, const char **key_r)
{
	static const char *const keys[JOBS_KINDS] = { "[backup] schedule", NULL,
		"[verify] check_schedule", "[verify] restore_schedule" };
	const char *const exprs[JOBS_KINDS] = { conf->backup_schedule, NULL,
		conf->verify_check_schedule, conf->verify_restore_schedule };

	*key_r = keys[kind];
	return exprs[kind];
}

int
mk_jobs_check_conf(const struct mk_conf *conf, struct mk_err *err)
{
	struct mk_cron cron;
	const char *expr, *key;
	time_t next;
	size_t k;

	for (k = 0; k < JOBS_KINDS; k++) {
		if ((expr = jobs_conf_schedule(conf, k, &key)) == NULL)
			continue;
		if (mk_cron_parse(expr, &cron, err) < 0)
			return mk_err_prefix(err, "%s", key);
		if (mk_cron_next(&cron, time(NULL), &next) != 1)
			return mk_err_set(
			    err, "%s '%s' never fires", key, expr);
	}
	return 0;
}

void
mk_jobs_reload(struct mk_jobs *jobs, const struct mk_conf *conf)
{
	const char *expr, *key;
	struct jobs_sched *sc;
	size_t k;

	jobs->concurrency = (unsigned)conf->backup_concurrency;
	jobs->bandwidth = conf->backup_bandwidth;
	jobs->jitter = conf->backup_jitter;
	jobs->check_sample = (unsigned)conf->verify_check_sample;
	jobs->lock_wait = conf->backup_lock_wait;
	for (k = 0; k < JOBS_KINDS; k++) {
		sc = &jobs->sched[k];
		free(sc->expr);
		expr = jobs_conf_schedule(conf, k, &key);
		sc->expr = expr != NULL ? mk_xstrdup(expr) : NULL;
		sc->have = sc->expr != NULL &&
		    mk_cron_parse(sc->expr, &sc->cron, NULL) == 0;
		jobs_plan(sc, time(NULL),
		    JOBS_KIND(k) == JOBS_BACKUP ? jobs->jitter : 0);
		if (sc->have)
			mk_log_info("jobs", "%s '%s': next at %lld", key,
			    sc->expr, (long long)sc->due);
	}
}

int
mk_jobs_start(struct mk_daemon *d, struct mk_jobs **jobs_r, struct mk_err *err)
{
	struct mk_jobs *jobs = mk_xcalloc(1, sizeof(*jobs));
	struct timeval second = { 1, 0 };
	struct jobs_task *t;
	struct mk_err verr;

	*jobs_r = NULL;
	if (mk_jobs_check_conf(d->conf, err) < 0) {
		free(jobs);
		return -1;
	}
	jobs->d = d;
	jobs->key_slots = -1;
	TAILQ_INIT(&jobs->list);
	jobs->last = mk_hmap_new();
	mk_jobs_reload(jobs, d->conf);
	/* A small file: read before the loop runs. */
	switch (
	    mk_verify_results_load(d->conf->state_dir, &jobs->verify, &verr)) {
	case 1:
		mk_log_info("jobs", "verify results loaded from %s/%s",
		    d->conf->state_dir, MK_VERIFY_RESULTS_FILE);
		break;
	case -1:
		mk_log_warn("jobs",
		    "%s; ignored: the last check and test restore results "
		    "are unknown until they run again (the file is rewritten "
		    "then)",
		    verr.msg);
		break;
	}
	jobs->start_pending = d->conf->backup_run_at_start;
	jobs->tick = event_new(d->base, -1, EV_PERSIST, jobs_tick_cb, jobs);
	if (jobs->tick == NULL || evtimer_add(jobs->tick, &second) < 0) {
		mk_jobs_free(&jobs);
		return mk_err_set(err, "jobs: cannot add the schedule timer");
	}
	t = mk_xcalloc(1, sizeof(*t));
	t->base.run = jobs_task_run;
	t->base.done = jobs_task_done;
	t->jobs = jobs;
	t->phase = JOBS_LOAD;
	t->loadmap = mk_hmap_new();
	mk_pool_submit(d->pool, &t->base);
	t = mk_xcalloc(1, sizeof(*t));
	t->base.run = jobs_task_run;
	t->base.done = jobs_task_done;
	t->jobs = jobs;
	t->phase = JOBS_KEYS;
	jobs_repo_conf_copy(&t->rconf, d->conf);
	mk_pool_submit(d->pool, &t->base);
	*jobs_r = jobs;
	return 0;
}

void
mk_jobs_free(struct mk_jobs **jobsp)
{
	struct mk_jobs *jobs = *jobsp;
	struct jobs_job *job;
	size_t k;

	if (jobs == NULL)
		return;
	if (jobs->tick != NULL)
		event_free(jobs->tick);
	while ((job = TAILQ_FIRST(&jobs->list)) != NULL) {
		TAILQ_REMOVE(&jobs->list, job, entry);
		jobs_job_free(job);
	}
	jobs_last_free(&jobs->last);
	for (k = 0; k < JOBS_KINDS; k++)
		free(jobs->sched[k].expr);
	mk_verify_results_clear(&jobs->verify);
	free(jobs);
	*jobsp = NULL;
}

/* Views */

/* The lock a job waited for, and who holds it (held, as last seen). */
static json_t *
jobs_lock_json(const struct jobs_job *job)
{
	const struct mk_lock_info *h = &job->holder;
	json_t *holder;

	holder = json_pack("{s:s, s:o, s:o, s:o, s:o}", "lock", h->name, "kind",
	    h->host[0] != '\0' ? json_string(mk_lock_kind_name(h->kind))
			       : json_null(),
	    "host", h->host[0] != '\0' ? json_string(h->host) : json_null(),
	    "pid", h->host[0] != '\0' ? json_integer(h->pid) : json_null(),
	    "refreshed", mk_httpd_time_json(h->time_ns));
	/* A host name is not always UTF-8. */
	if (holder == NULL)
		holder = json_pack("{s:s}", "lock", h->name);
	return json_pack("{s:b, s:o, s:o, s:I, s:o, s:o}", "waiting",
	    (int)job->lock_waiting, "since",
	    mk_httpd_time_json(job->lock_since_ns), "until",
	    mk_httpd_time_json(job->lock_until_ns), "attempts",
	    (json_int_t)job->lock_attempts, "next_attempt",
	    mk_httpd_time_json(job->lock_waiting ? job->lock_next_ns : 0),
	    "holder", holder);
}

static json_t *
jobs_json(const struct jobs_job *job)
{
	json_t *obj;

	obj = json_pack("{s:I, s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I}, s:I, "
			"s:I, s:I, s:O, s:o, s:o, s:o, s:b}",
	    "id", (json_int_t)job->id, "kind", job->kind->name, "state",
	    job->lock_waiting ? "waiting" : jobs_state_names[job->state],
	    "trigger", job->trigger, "mailboxes", "total",
	    (json_int_t)job->total, "done", (json_int_t)job->done, "failed",
	    (json_int_t)job->failed, "running", (json_int_t)job->running,
	    "bytes_read", (json_int_t)atomic_load(&job->bytes_read),
	    "bytes_stored", (json_int_t)job->bytes_stored, "error_count",
	    (json_int_t)job->nerrors, "errors", job->errors, "created",
	    mk_httpd_time_json(job->created_ns), "started",
	    mk_httpd_time_json(job->started_ns), "ended",
	    mk_httpd_time_json(job->ended_ns), "cancel_requested",
	    (int)atomic_load(&job->cancel));
	if (obj != NULL && job->run_id[0] != '\0')
		json_object_set_new(obj, "run", json_string(job->run_id));
	if (obj != NULL && job->lock_since_ns != 0)
		json_object_set_new(obj, "lock_wait", jobs_lock_json(job));
	if (obj != NULL && job->kind->progress)
		json_object_set_new(obj, "progress",
		    json_pack("{s:I, s:I, s:I, s:I}", "messages",
			(json_int_t)atomic_load(&job->units), "messages_total",
			(json_int_t)atomic_load(&job->units_total), "bytes",
			(json_int_t)atomic_load(&job->bytes_read),
			"bytes_total",
			(json_int_t)atomic_load(&job->bytes_total)));
	if (obj != NULL && job->restore != NULL)
		json_object_set_new(obj, "request",
		    json_pack("{s:s, s:I, s:o, s:o, s:s, s:s}", "mailbox",
			job->restore->address, "snapshot",
			(json_int_t)job->restore->req.snapshot, "folder",
			job->restore->folder != NULL
			    ? json_string(job->restore->folder)
			    : json_null(),
			"message",
			job->restore->message != NULL
			    ? json_string(job->restore->message)
			    : json_null(),
			"to",
			job->restore->dir != NULL ? job->restore->dir
			    : job->restore->req.target == MK_RESTORE_TO_ORIGINAL
			    ? "original"
			    : "new-folder",
			"format",
			job->restore->req.format == MK_RESTORE_MBOX ? "mbox"
			    : job->restore->req.format == MK_RESTORE_EML
			    ? "eml"
			    : "maildir"));
	if (obj != NULL && job->result != NULL)
		json_object_set(obj, "result", job->result);
	return obj;
}

json_t *
mk_jobs_job_json(struct mk_jobs *jobs, uint64_t id)
{
	struct jobs_job *job = jobs_find(jobs, id);

	return job != NULL ? jobs_json(job) : NULL;
}

/* Backed-up mailboxes by age, the never backed up, the oldest success. */
struct jobs_ages {
	uint64_t buckets[JOBS_AGE_BUCKETS];
	uint64_t count, never;
	double sum;
	int64_t oldest_ns;
};

static void
jobs_ages(struct mk_jobs *jobs, struct jobs_ages *a)
{
	const struct mk_live_mailbox **all;
	int64_t now = mk_daemon_now_ns();
	size_t n, i, b;

	memset(a, 0, sizeof(*a));
	all = mk_live_all(jobs->d->live, &n);
	for (i = 0; i < n; i++) {
		int64_t ns = mk_jobs_last_backup(jobs, all[i]->address);
		double age;

		if (ns == 0) {
			a->never++;
			continue;
		}
		age = ns < now ? (double)(now - ns) / 1e9 : 0;
		for (b = 0; b + 1 < JOBS_AGE_BUCKETS && age > jobs_age_le[b];
		     b++)
			;
		a->buckets[b]++;
		a->count++;
		a->sum += age;
		if (a->oldest_ns == 0 || ns < a->oldest_ns)
			a->oldest_ns = ns;
	}
	free(all);
}

json_t *
mk_jobs_status_json(struct mk_jobs *jobs)
{
	struct jobs_job *job;
	struct jobs_ages a;
	size_t running = 0;

	jobs_ages(jobs, &a);
	TAILQ_FOREACH(job, &jobs->list, entry)
	if (job->state == JOBS_RUNNING)
		running++;
	const struct jobs_sched *sc = &jobs->sched[JOBS_BACKUP - jobs_kinds];

	return json_pack("{s:o, s:o, s:I, s:I, s:I, s:I, s:o, s:b}", "schedule",
	    sc->expr != NULL ? json_string(sc->expr) : json_null(), "next",
	    mk_httpd_time_json((int64_t)sc->due * 1000000000), "jobs_queued",
	    (json_int_t)jobs->nqueued, "jobs_running", (json_int_t)running,
	    "mailboxes_backed_up", (json_int_t)a.count, "mailboxes_never",
	    (json_int_t)a.never, "oldest_last_success",
	    mk_httpd_time_json(a.oldest_ns), "last_backups_loaded",
	    (int)jobs->last_loaded);
}

json_t *
mk_jobs_list_json(struct mk_jobs *jobs)
{
	json_t *list = json_array();
	struct jobs_job *job;

	TAILQ_FOREACH(job, &jobs->list, entry)
	json_array_append_new(list, jobs_json(job));
	return json_pack("{s:o, s:o, s:o}", "jobs", list, "backup",
	    mk_jobs_status_json(jobs), "verify", mk_jobs_verify_json(jobs));
}

/* One scheduled verification, for /v1/jobs. */
static json_t *
jobs_verify_json(struct mk_jobs *jobs, const struct jobs_kind *kind)
{
	const struct jobs_sched *sc = &jobs->sched[kind - jobs_kinds];
	const struct mk_verify_last *v =
	    &jobs->verify.kind[jobs_verify_kind(kind)];
	json_t *last = json_null();

	if (v->ended_ns != 0)
		last = json_pack("{s:o, s:s, s:I, s:o}", "time",
		    mk_httpd_time_json(v->ended_ns), "state",
		    v->ok ? "done" : "failed", "problems",
		    (json_int_t)v->problems, "mailbox",
		    v->mailbox != NULL ? json_string(v->mailbox) : json_null());
	return json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "schedule",
	    sc->expr != NULL ? json_string(sc->expr) : json_null(), "next",
	    mk_httpd_time_json((int64_t)sc->due * 1000000000), "last_success",
	    mk_httpd_time_json(v->success_ns), "last_failure",
	    mk_httpd_time_json(v->failure_ns), "failures",
	    (json_int_t)v->failures, "last_error",
	    v->error != NULL ? json_string(v->error) : json_null(), "last",
	    last);
}

json_t *
mk_jobs_verify_json(struct mk_jobs *jobs)
{
	json_t *c = jobs_verify_json(jobs, JOBS_CHECK);

	json_object_set_new(c, "sample", json_integer(jobs->check_sample));
	return json_pack("{s:o, s:o}", "check", c, "test_restore",
	    jobs_verify_json(jobs, JOBS_TEST_RESTORE));
}

const char *
mk_jobs_key_warning(struct mk_jobs *jobs)
{
	if (jobs->encrypted && jobs->key_slots == 1)
		return "only one key slot: losing its key file or passphrase "
		       "loses every backup (add another with 'mailkeep repo "
		       "key add' and keep it off this machine)";
	return NULL;
}

json_t *
mk_jobs_repo_json(struct mk_jobs *jobs)
{
	const char *warning = mk_jobs_key_warning(jobs);

	return json_pack("{s:s, s:o, s:o, s:b, s:o}", "location",
	    jobs->d->conf->repo_location, "key_slots",
	    jobs->key_slots >= 0 ? json_integer(jobs->key_slots) : json_null(),
	    "encrypted",
	    jobs->key_slots >= 0 ? json_boolean(jobs->encrypted) : json_null(),
	    "single_key_slot", warning != NULL, "warning",
	    warning != NULL ? json_string(warning) : json_null());
}

int
mk_jobs_submit_verify(struct mk_jobs *jobs, bool check, int sample,
    const char *address, uint64_t *id_r, enum mk_jobs_refusal *why_r,
    struct mk_err *err)
{
	struct jobs_job *job;

	*why_r = MK_JOBS_BAD_REQUEST;
	if (jobs->nqueued >= JOBS_QUEUE_MAX) {
		*why_r = MK_JOBS_BUSY;
		return mk_err_set(err, "%d jobs are queued already; try later",
		    JOBS_QUEUE_MAX);
	}
	if (check && (sample < -1 || sample > 100))
		return mk_err_set(err, "sample: a percent from 0 to 100");
	if (address != NULL && mk_live_find(jobs->d->live, address) == NULL) {
		*why_r = MK_JOBS_NOT_FOUND;
		return mk_err_set(err, "no such mailbox: %s", address);
	}
	jobs_submit_verify(jobs, check ? JOBS_CHECK : JOBS_TEST_RESTORE,
	    "request", sample >= 0 ? (unsigned)sample : jobs->check_sample,
	    address);
	job = TAILQ_LAST(&jobs->list, jobs_list);
	*id_r = job->id;
	return 0;
}

int64_t
mk_jobs_last_backup(struct mk_jobs *jobs, const char *address)
{
	const struct jobs_last *l = mk_hmap_get(jobs->last,
	    mk_hmap_hash(address, strlen(address)), jobs_last_match, address);

	return l != NULL ? l->ns : 0;
}

/* A Prometheus histogram: n buckets, the last one +Inf. */
static void
jobs_histogram(struct evbuffer *b, const char *name, const char *help,
    const unsigned *le, const uint64_t *buckets, size_t n, double sum)
{
	uint64_t cum = 0;
	size_t i;

	evbuffer_add_printf(
	    b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; i < n; i++) {
		cum += buckets[i];
		if (i + 1 < n)
			evbuffer_add_printf(b, "%s_bucket{le=\"%u\"} %llu\n",
			    name, le[i], (unsigned long long)cum);
		else
			evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n",
			    name, (unsigned long long)cum);
	}
	evbuffer_add_printf(b, "%s_sum %.3f\n%s_count %llu\n", name, sum, name,
	    (unsigned long long)cum);
}

/* What a verification series shows of a kind's results. */
enum jobs_verify_series {
	JOBS_V_SUCCESS,
	JOBS_V_FAILURE,
	JOBS_V_FAILURES,
	JOBS_V_PROBLEMS,
};

/* A series per verification kind. */
static void
jobs_verify_metric(struct mk_jobs *jobs, struct evbuffer *b, const char *name,
    const char *type, const char *help, enum jobs_verify_series what)
{
	const struct mk_verify_last *l;
	uint64_t v = 0;
	size_t k;

	evbuffer_add_printf(
	    b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (k = 0; k < MK_VERIFY_KINDS; k++) {
		l = &jobs->verify.kind[k];
		switch (what) {
		case JOBS_V_SUCCESS:
			v = (uint64_t)(l->success_ns / 1000000000);
			break;
		case JOBS_V_FAILURE:
			v = (uint64_t)(l->failure_ns / 1000000000);
			break;
		case JOBS_V_FAILURES:
			v = l->failures;
			break;
		case JOBS_V_PROBLEMS:
			v = l->problems;
			break;
		}
		evbuffer_add_printf(b, "%s{kind=\"%s\"} %llu\n", name,
		    mk_verify_kind_name((enum mk_verify_kind)k),
		    (unsigned long long)v);
	}
}

void
mk_jobs_metrics(struct mk_jobs *jobs, struct evbuffer *b)
{
	struct jobs_job *job;
	struct jobs_ages a;
	uint64_t read = jobs->read_total, waiting = 0;
	size_t i, k;

	/* Running jobs count what they have read so far. */
	TAILQ_FOREACH(job, &jobs->list, entry)
	{
		if (job->state == JOBS_RUNNING && job->kind == JOBS_BACKUP)
			read += atomic_load(&job->bytes_read);
		waiting += job->lock_waiting;
	}
	mk_httpd_metric(b, "mailkeep_backup_read_bytes_total", "counter",
	    "Bytes of mail read by backups.", read);
	mk_httpd_metric(b, "mailkeep_backup_stored_bytes_total", "counter",
	    "Bytes added to the repository by backups (compressed, "
	    "encrypted).",
	    jobs->stored_total);
	mk_httpd_metric(b, "mailkeep_backup_mailboxes_total", "counter",
	    "Mailboxes backed up successfully.", jobs->mailboxes_ok);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_backup_errors_total Mailboxes or runs that "
	    "failed, by reason.\n# TYPE mailkeep_backup_errors_total "
	    "counter\n");
	for (i = 0; i < JOBS_R_COUNT; i++)
		evbuffer_add_printf(b,
		    "mailkeep_backup_errors_total{reason=\"%s\"} %llu\n",
		    jobs_reason_names[i], (unsigned long long)jobs->reasons[i]);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_jobs_total Jobs finished, by kind and state.\n"
	    "# TYPE mailkeep_jobs_total counter\n");
	for (k = 0; k < JOBS_KINDS; k++)
		for (i = JOBS_DONE; i <= JOBS_CANCELLED; i++)
			evbuffer_add_printf(b,
			    "mailkeep_jobs_total{kind=\"%s\",state=\"%s\"} "
			    "%llu\n",
			    jobs_kinds[k].name, jobs_state_names[i],
			    (unsigned long long)jobs->runs[k][i]);
	jobs_histogram(b, "mailkeep_job_duration_seconds",
	    "How long finished jobs ran.", jobs_duration_le,
	    jobs->duration_buckets, JOBS_DURATION_BUCKETS, jobs->duration_sum);
	jobs_ages(jobs, &a);
	jobs_histogram(b, "mailkeep_backup_age_seconds",
	    "Mailboxes by the age of their last successful backup.",
	    jobs_age_le, a.buckets, JOBS_AGE_BUCKETS, a.sum);
	mk_httpd_metric(b, "mailkeep_backup_never_mailboxes", "gauge",
	    "Mailboxes never backed up.", a.never);
	mk_httpd_metric(b, "mailkeep_backup_oldest_success_timestamp_seconds",
	    "gauge",
	    "When the mailbox backed up longest ago was backed up (0: none "
	    "is).",
	    (uint64_t)(a.oldest_ns / 1000000000));
	mk_httpd_metric(b, "mailkeep_jobs_queued", "gauge",
	    "Jobs waiting to run.", jobs->nqueued);
	jobs_verify_metric(jobs, b,
	    "mailkeep_verify_last_success_timestamp_seconds", "gauge",
	    "When a check or a test restore last passed (0: never).",
	    JOBS_V_SUCCESS);
	jobs_verify_metric(jobs, b,
	    "mailkeep_verify_last_failure_timestamp_seconds", "gauge",
	    "When a check or a test restore last failed (0: never).",
	    JOBS_V_FAILURE);
	jobs_verify_metric(jobs, b, "mailkeep_verify_failures_total", "counter",
	    "Checks and test restores that failed.", JOBS_V_FAILURES);
	jobs_verify_metric(jobs, b, "mailkeep_verify_last_problems", "gauge",
	    "Problems the last check found, messages the last test restore "
	    "missed or restored with another size.",
	    JOBS_V_PROBLEMS);
	mk_httpd_metric(b, "mailkeep_jobs_lock_waits_total", "counter",
	    "Jobs that met a conflicting repository lock and waited for it.",
	    jobs->lock_waits);
	mk_httpd_metric(b, "mailkeep_jobs_lock_wait_expired_total", "counter",
	    "Jobs that failed because the repository lock stayed taken past "
	    "[backup] lock_wait.",
	    jobs->lock_waits_expired);
	mk_httpd_metric(b, "mailkeep_jobs_waiting_for_lock", "gauge",
	    "Jobs waiting for the repository lock now.", waiting);
	if (jobs->key_slots >= 0)
		mk_httpd_metric(b, "mailkeep_repository_key_slots", "gauge",
		    "Key slots of the repository (losing every one loses "
		    "every backup).",
		    (uint64_t)jobs->key_slots);
}
