#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/lock.h"
#include "mailkeep/storage.h"

static int64_t
now_ns(void)
{
	return (int64_t)time(NULL) * 1000000000;
}

/* Count the objects under locks/. */
static int
count_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	(void)name;
	(void)st;
	(void)err;
	(*(int *)arg)++;
	return 0;
}

static int
lock_count(struct mk_storage *st)
{
	struct mk_err err;
	int n = 0;

	assert_int_equal(mk_storage_list(st, "locks/", count_cb, &n, &err), 0);
	return n;
}

/* Write a lock object as another program would. */
static void
put_lock(struct mk_storage *st, const char *name, enum mk_lock_kind kind,
    const char *host, int64_t pid, int64_t time_ns)
{
	struct mk_lock_info info;
	struct mk_err err;
	char *json;

	memset(&info, 0, sizeof(info));
	info.kind = kind;
	snprintf(info.host, sizeof(info.host), "%s", host);
	info.pid = pid;
	info.time_ns = time_ns;
	assert_int_equal(mk_lock_encode(&info, &json, &err), 0);
	assert_int_equal(mk_storage_put(st, name, json, strlen(json), &err), 0);
	free(json);
}

static void
test_lock_encode_decode_round_trip(void **state)
{
	struct mk_lock_info in, out;
	struct mk_err err;
	char *json;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.kind = MK_LOCK_EXCLUSIVE;
	strcpy(in.host, "mx1");
	in.pid = 4242;
	in.time_ns = 1794000000123456789LL;
	assert_int_equal(mk_lock_encode(&in, &json, &err), 0);
	assert_int_equal(mk_lock_decode(json, strlen(json), &out, &err), 0);
	assert_int_equal(out.kind, MK_LOCK_EXCLUSIVE);
	assert_string_equal(out.host, "mx1");
	assert_int_equal(out.pid, 4242);
	assert_int_equal(out.time_ns, in.time_ns);
	free(json);
	assert_int_equal(
	    mk_lock_decode("{\"magic\":\"x\"}", 13, &out, &err), -1);
	assert_int_equal(mk_lock_decode("not json", 8, &out, &err), -1);
}

static void
test_lock_stale_by_age_and_dead_pid(void **state)
{
	struct mk_lock_info info;
	int64_t now = now_ns();

	(void)state;
	memset(&info, 0, sizeof(info));
	strcpy(info.host, "elsewhere");
	info.pid = 1;
	info.time_ns = now - (int64_t)(MK_LOCK_STALE - 1) * 1000000000;
	assert_false(mk_lock_stale(&info, "here", now));
	info.time_ns = now - (int64_t)(MK_LOCK_STALE + 1) * 1000000000;
	assert_true(mk_lock_stale(&info, "here", now));
	/* This host, a process that is gone: stale at once. */
	info.time_ns = now;
	strcpy(info.host, "here");
	info.pid = 0x7ffffff0;
	assert_true(mk_lock_stale(&info, "here", now));
	info.pid = getpid();
	assert_false(mk_lock_stale(&info, "here", now));
}

static void
test_lock_shared_and_exclusive(void **state)
{
	struct mk_lock *a = NULL, *b = NULL, *x = NULL;
	struct mk_storage *st;
	struct mk_err err;
	char *dir = fx_tmpdir();

	(void)state;
	assert_int_equal(mk_storage_local_open(dir, true, &st, &err), 0);
	assert_int_equal(mk_lock_acquire(st, MK_LOCK_SHARED, 0, &a, &err), 0);
	assert_int_equal(mk_lock_acquire(st, MK_LOCK_SHARED, 0, &b, &err), 0);
	assert_int_equal(lock_count(st), 2);
	assert_int_equal(mk_lock_check(a, &err), 0);
	/* Exclusive refused while shared locks live, and leaves nothing. */
	assert_int_equal(
	    mk_lock_acquire(st, MK_LOCK_EXCLUSIVE, 0, &x, &err), -1);
	assert_non_null(strstr(err.msg, "locked by a shared lock"));
	assert_int_equal(lock_count(st), 2);
	mk_lock_release(&a);
	mk_lock_release(&b);
	assert_null(a);
	assert_int_equal(lock_count(st), 0);
	assert_int_equal(
	    mk_lock_acquire(st, MK_LOCK_EXCLUSIVE, 0, &x, &err), 0);
	assert_int_equal(mk_lock_acquire(st, MK_LOCK_SHARED, 0, &a, &err), -1);
	assert_non_null(strstr(err.msg, "exclusive"));
	mk_lock_release(&x);
	mk_storage_close(&st);
	fx_rmrf(dir);
	free(dir);
}

/* One attempt: the holder of a conflicting lock comes back whole. */
static void
test_lock_try_names_the_holder(void **state)
{
	static const char name[] = "locks/00112233445566778899aabbccddeeff";
	struct mk_lock *a = NULL;
	struct mk_lock_info holder;
	struct mk_storage *st;
	struct mk_err err;
	char *dir = fx_tmpdir();
	int64_t t = now_ns();

	(void)state;
	assert_int_equal(mk_storage_local_open(dir, true, &st, &err), 0);
	put_lock(st, name, MK_LOCK_EXCLUSIVE, "prune-host", 4242, t);
	assert_int_equal(mk_lock_try(st, MK_LOCK_SHARED, &a, &holder, &err), 1);
	assert_null(a);
	assert_string_equal(holder.name, name);
	assert_int_equal(holder.kind, MK_LOCK_EXCLUSIVE);
	assert_string_equal(holder.host, "prune-host");
	assert_int_equal(holder.pid, 4242);
	assert_int_equal(holder.time_ns, t);
	assert_non_null(strstr(err.msg, "host prune-host, pid 4242"));
	/* Ours was taken back: only the holder's is left. */
	assert_int_equal(lock_count(st), 1);
	/* A lock that does not decode: its name only. */
	assert_int_equal(mk_storage_put(st, name, "{}", 2, &err), 0);
	assert_int_equal(mk_lock_try(st, MK_LOCK_SHARED, &a, &holder, &err), 1);
	assert_string_equal(holder.name, name);
	assert_string_equal(holder.host, "");
	assert_non_null(strstr(err.msg, "remove it by hand"));
	assert_int_equal(mk_storage_delete(st, name, &err), 0);
	assert_int_equal(mk_lock_try(st, MK_LOCK_SHARED, &a, &holder, &err), 0);
	assert_non_null(a);
	assert_int_equal(mk_lock_check(a, &err), 0);
	assert_int_equal(lock_count(st), 1);
	mk_lock_release(&a);
	assert_int_equal(lock_count(st), 0);
	mk_storage_close(&st);
	fx_rmrf(dir);
	free(dir);
}

static void
test_lock_stale_lock_is_removed(void **state)
{
	struct mk_lock *x = NULL;
	struct mk_storage *st;
	struct mk_err err;
	char *dir = fx_tmpdir();

	(void)state;
	assert_int_equal(mk_storage_local_open(dir, true, &st, &err), 0);
	put_lock(st, "locks/0123456789abcdef0123456789abcdef", MK_LOCK_SHARED,
	    "dead-host", 77, now_ns() - 7200LL * 1000000000);
	put_lock(st, "locks/fedcba9876543210fedcba9876543210", MK_LOCK_SHARED,
	    "live-host", 78, now_ns());
	/* The live one still stops an exclusive lock. */
	assert_int_equal(
	    mk_lock_acquire(st, MK_LOCK_EXCLUSIVE, 0, &x, &err), -1);
	assert_non_null(strstr(err.msg, "live-host"));
	assert_int_equal(mk_storage_delete(st,
			     "locks/fedcba9876543210fedcba9876543210", &err),
	    0);
	assert_int_equal(
	    mk_lock_acquire(st, MK_LOCK_EXCLUSIVE, 0, &x, &err), 0);
	/* The stale one is gone; only ours is left. */
	assert_int_equal(lock_count(st), 1);
	mk_lock_release(&x);
	mk_storage_close(&st);
	fx_rmrf(dir);
	free(dir);
}

static void
test_lock_run_lock_refuses_a_second_holder(void **state)
{
	char *dir = fx_tmpdir();
	const char *path = fx_path(dir, "catalog.db.lock");
	struct mk_err err;
	int fd, fd2;
	long holder;
	pid_t pid;
	int status;

	(void)state;
	assert_int_equal(mk_lock_run(path, &fd, &holder, &err), 0);
	/* flock is per open file: a child process sees it held. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(mk_lock_run(path, &fd2, &holder, &err) == 1 &&
			    holder == (long)getppid()
			? 0
			: 1);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fd);
	assert_int_equal(mk_lock_run(path, &fd2, &holder, &err), 0);
	close(fd2);
	fx_rmrf(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lock_encode_decode_round_trip),
		cmocka_unit_test(test_lock_stale_by_age_and_dead_pid),
		cmocka_unit_test(test_lock_shared_and_exclusive),
		cmocka_unit_test(test_lock_try_names_the_holder),
		cmocka_unit_test(test_lock_stale_lock_is_removed),
		cmocka_unit_test(test_lock_run_lock_refuses_a_second_holder),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
