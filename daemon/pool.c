#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "pool.h"

struct mk_pool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct mk_job *queue_head, *queue_tail; /* waiting to run */
	struct mk_job *urgent_tail; /* the last urgent one queued, or NULL */
	struct mk_job *done_head, *done_tail; /* waiting for done() */
	bool stopping;
	pthread_t *threads;
	size_t nthreads;
	size_t pending; /* loop thread only */
	int efd;
	struct event *ev;
	mk_pool_ctx_new_cb *ctx_new;
	mk_pool_ctx_free_cb *ctx_free;
	void *ctx_arg;
};

static void
pool_append(struct mk_job **head, struct mk_job **tail, struct mk_job *job)
{
	job->next = NULL;
	if (*tail != NULL)
		(*tail)->next = job;
	else
		*head = job;
	*tail = job;
}

static void *
pool_worker(void *arg)
{
	struct mk_pool *pool = arg;
	void *ctx = pool->ctx_new != NULL ? pool->ctx_new(pool->ctx_arg) : NULL;
	uint64_t one = 1;

	for (;;) {
		struct mk_job *job;

		pthread_mutex_lock(&pool->lock);
		while (pool->queue_head == NULL && !pool->stopping)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if ((job = pool->queue_head) == NULL) {
			pthread_mutex_unlock(&pool->lock);
			break;
		}
		pool->queue_head = job->next;
		if (pool->queue_head == NULL)
			pool->queue_tail = NULL;
		if (pool->urgent_tail == job)
			pool->urgent_tail = NULL;
		pthread_mutex_unlock(&pool->lock);

		job->run(job, ctx);

		pthread_mutex_lock(&pool->lock);
		pool_append(&pool->done_head, &pool->done_tail, job);
		pthread_mutex_unlock(&pool->lock);
		if (write(pool->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			mk_log_error(
			    "pool", "write(eventfd): %s", strerror(errno));
	}
	if (pool->ctx_free != NULL)
		pool->ctx_free(ctx);
	return NULL;
}

/* Run done() of every finished job, outside the lock. */
static void
pool_drain(struct mk_pool *pool)
{
	struct mk_job *job, *next;

	pthread_mutex_lock(&pool->lock);
	job = pool->done_head;
	pool->done_head = pool->done_tail = NULL;
	pthread_mutex_unlock(&pool->lock);
	for (; job != NULL; job = next) {
		next = job->next;
		pool->pending--;
		job->done(job);
	}
}

static void
pool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_pool *pool = arg;
	uint64_t n;

	(void)what;
	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		mk_log_error("pool", "read(eventfd): %s", strerror(errno));
	pool_drain(pool);
}

int
mk_pool_new(struct event_base *base, size_t nthreads,
    mk_pool_ctx_new_cb *ctx_new, mk_pool_ctx_free_cb *ctx_free, void *arg,
    struct mk_pool **pool_r, struct mk_err *err)
{
	struct mk_pool *pool = mk_xcalloc(1, sizeof(*pool));
	size_t i;
	int r;

	*pool_r = NULL;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pool->ctx_new = ctx_new;
	pool->ctx_free = ctx_free;
	pool->ctx_arg = arg;
	pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool->efd < 0) {
		mk_err_sys(err, "eventfd");
		goto fail;
	}
	pool->ev = event_new(
	    base, pool->efd, EV_READ | EV_PERSIST, pool_done_cb, pool);
	if (pool->ev == NULL || event_add(pool->ev, NULL) < 0) {
		mk_err_set(err, "pool: cannot add the eventfd to the loop");
		goto fail;
	}
	pool->threads = mk_xcalloc(nthreads, sizeof(*pool->threads));
	for (i = 0; i < nthreads; i++) {
		if ((r = pthread_create(
			 &pool->threads[i], NULL, pool_worker, pool)) != 0) {
			errno = r;
			mk_err_sys(err, "pthread_create");
			goto fail;
		}
		pool->nthreads++;
	}
	*pool_r = pool;
	return 0;
fail:
	mk_pool_free(&pool);
	return -1;
}

void
mk_pool_submit(struct mk_pool *pool, struct mk_job *job)
{
	pthread_mutex_lock(&pool->lock);
	pool_append(&pool->queue_head, &pool->queue_tail, job);
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	pool->pending++;
}

void
mk_pool_submit_urgent(struct mk_pool *pool, struct mk_job *job)
{
	struct mk_job **at;

	pthread_mutex_lock(&pool->lock);
	at = pool->urgent_tail != NULL ? &pool->urgent_tail->next
				       : &pool->queue_head;
	job->next = *at;
	*at = job;
	if (job->next == NULL)
		pool->queue_tail = job;
	pool->urgent_tail = job;
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	pool->pending++;
}

size_t
mk_pool_pending(const struct mk_pool *pool)
{
	return pool->pending;
}

void
mk_pool_free(struct mk_pool **poolp)
{
	struct mk_pool *pool = *poolp;
	size_t i;

	if (pool == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pool_drain(pool);
	if (pool->ev != NULL)
		event_free(pool->ev);
	if (pool->efd >= 0)
		close(pool->efd);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
	*poolp = NULL;
}
