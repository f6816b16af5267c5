/* The daemon's worker pool: order of runs, urgent jobs first. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fixture.h"
#include "pool.h"

struct test_job {
	struct mk_job base; /* first */
	char name;
	int started_fd; /* written when run() starts, or -1 */
	int release_fd; /* read before run() returns, or -1 */
};

static char order[16];
static size_t ndone;

static void
test_run(struct mk_job *job, void *ctx)
{
	struct test_job *j = (struct test_job *)job;
	char c = 'x';

	(void)ctx;
	if (j->started_fd >= 0)
		assert_int_equal(write(j->started_fd, &c, 1), 1);
	if (j->release_fd >= 0)
		assert_int_equal(read(j->release_fd, &c, 1), 1);
}

static void
test_done(struct mk_job *job)
{
	struct test_job *j = (struct test_job *)job;

	order[ndone++] = j->name;
	free(j);
}

static struct test_job *
job_new(char name)
{
	struct test_job *j = calloc(1, sizeof(*j));

	assert_non_null(j);
	j->base.run = test_run;
	j->base.done = test_done;
	j->name = name;
	j->started_fd = j->release_fd = -1;
	return j;
}

/*
 * One worker, busy with a job that waits for the test: urgent jobs
 * queued after plain ones run before them, in their own order.
 */
static void
test_pool_urgent_jobs_first(void **state)
{
	struct event_base *base = event_base_new();
	struct mk_pool *pool = NULL;
	struct test_job *blocker;
	struct mk_err err;
	int started[2], release[2];
	char c;

	(void)state;
	assert_non_null(base);
	assert_int_equal(pipe(started), 0);
	assert_int_equal(pipe(release), 0);
	assert_int_equal(
	    mk_pool_new(base, 1, NULL, NULL, NULL, &pool, &err), 0);
	blocker = job_new('b');
	blocker->started_fd = started[1];
	blocker->release_fd = release[0];
	mk_pool_submit(pool, &blocker->base);
	assert_int_equal(read(started[0], &c, 1), 1);
	mk_pool_submit(pool, &job_new('1')->base);
	mk_pool_submit(pool, &job_new('2')->base);
	mk_pool_submit_urgent(pool, &job_new('u')->base);
	mk_pool_submit(pool, &job_new('3')->base);
	mk_pool_submit_urgent(pool, &job_new('v')->base);
	assert_int_equal(mk_pool_pending(pool), 6);
	assert_int_equal(write(release[1], "x", 1), 1);
	while (ndone < 6)
		assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
	assert_string_equal(order, "buv123");
	assert_int_equal(mk_pool_pending(pool), 0);

	/* Urgent into an empty queue, then plain after it. */
	ndone = 0;
	memset(order, 0, sizeof(order));
	mk_pool_submit_urgent(pool, &job_new('w')->base);
	mk_pool_submit(pool, &job_new('4')->base);
	while (ndone < 2)
		assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0);
	assert_string_equal(order, "w4");
	mk_pool_free(&pool);
	event_base_free(base);
	close(started[0]);
	close(started[1]);
	close(release[0]);
	close(release[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool_urgent_jobs_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
