/*
 * pool: worker threads for everything that may block (scans, hashing,
 * compression, fsync, big SQLite writes), with results handed back to the
 * event loop.
 *
 * A job embeds struct mk_job as its first member.  run() executes on a
 * worker; done() executes afterwards on the loop thread.  The job owns its
 * data from submit to done(), and done() frees the job.  Workers share no
 * mutable state: each has its own context (for example a catalog
 * connection), given to run().
 *
 * Hand-back: a worker appends the finished job to a list under a mutex and
 * writes to an eventfd; the loop swaps the list out and runs done() outside
 * the lock.  Only the loop thread may call mk_pool_submit and
 * mk_pool_free.
 */
#ifndef MAILKEEPD_POOL_H
#define MAILKEEPD_POOL_H

#include <stddef.h>

#include <event2/event.h>

#include "mailkeep/err.h"

struct mk_pool;
struct mk_job;

/* A worker's own context: made when the thread starts, freed at exit. */
typedef void *mk_pool_ctx_new_cb(void *arg);
typedef void mk_pool_ctx_free_cb(void *ctx);

typedef void mk_job_run_cb(struct mk_job *job, void *worker_ctx);
typedef void mk_job_done_cb(struct mk_job *job);

struct mk_job {
	mk_job_run_cb *run;
	mk_job_done_cb *done;
	struct mk_job *next;
};

int mk_pool_new(struct event_base *base, size_t nthreads,
    mk_pool_ctx_new_cb *ctx_new, mk_pool_ctx_free_cb *ctx_free, void *arg,
    struct mk_pool **pool_r, struct mk_err *err);

/* Queue a job; it runs in order of submission on some worker. */
void mk_pool_submit(struct mk_pool *pool, struct mk_job *job);

/*
 * Queue a short job someone waits for (an HTTP answer, a reload) ahead
 * of every job that is not urgent; urgent ones run in order of
 * submission.
 */
void mk_pool_submit_urgent(struct mk_pool *pool, struct mk_job *job);

/* Jobs submitted and not yet done. */
size_t mk_pool_pending(const struct mk_pool *pool);

/*
 * Stop: queued jobs that have not started are still run, workers are
 * joined, and the done() of every finished job runs before this returns.
 */
void mk_pool_free(struct mk_pool **poolp);

#endif
