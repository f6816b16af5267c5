#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/scan.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#include "cmd.h"

/* Rows of mailboxes recorded in one catalog transaction. */
#define SCAN_BATCH 256
/* Mailboxes scanned ahead of the one printed: bounds the memory. */
#define SCAN_WINDOW 64
#define SCAN_THREADS_MAX 8

/* The result of one mailbox (a slot of the window). */
struct scan_slot {
	bool ready;
	int rc;
	struct mk_mailbox_usage *mu;
	struct mk_err err;
};

/*
 * Mailboxes are listed by worker threads, which take the next job in
 * order but never more than SCAN_WINDOW ahead of the one the main thread
 * waits for; the main thread prints and writes the catalog in order.
 */
struct scan_pool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct mk_store_mailbox *jobs;
	size_t count;
	size_t next; /* the next job a worker takes */
	size_t consumed; /* jobs the main thread is done with */
	struct scan_slot slots[SCAN_WINDOW];
	int rootfd;
	char sep;
};

struct scan_run {
	struct cmd_ctx *ctx;
	struct mk_conf *conf;
	struct mk_catalog *cat;
	int rootfd;
	bool folders; /* show folders in the table */
	size_t printed;
	size_t in_batch;
	int status;
};

static int64_t
scan_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static json_t *
scan_usage_json(const struct mk_usage *u)
{
	return json_pack("{s:I, s:I, s:I}", "bytes", (json_int_t)u->bytes,
	    "vbytes", (json_int_t)u->vbytes, "messages",
	    (json_int_t)u->messages);
}

static void
scan_print_json(struct scan_run *run, const struct mk_mailbox_usage *mu)
{
	json_t *obj, *folders;
	size_t i;
	char *s;

	folders = json_array();
	for (i = 0; i < mu->nfolders; i++) {
		json_t *f = scan_usage_json(&mu->folders[i].usage);

		json_object_set_new(
		    f, "name", json_string(mu->folders[i].name));
		json_array_append_new(folders, f);
	}
	obj = scan_usage_json(&mu->total);
	json_object_set_new(obj, "address", json_string(mu->address));
	json_object_set_new(obj, "folders", folders);
	json_object_set_new(
	    obj, "malformed", json_integer((json_int_t)mu->malformed.count));
	json_object_set_new(
	    obj, "skipped", json_integer((json_int_t)mu->skipped.count));
	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	printf("%s%s", run->printed > 0 ? "," : "", s);
	free(s);
	json_decref(obj);
}

static void
scan_print_table(struct scan_run *run, const struct mk_mailbox_usage *mu)
{
	char size[32];
	size_t i;

	if (run->printed == 0)
		printf("%-40s %10s %12s\n", "MAILBOX", "MESSAGES", "SIZE");
	mk_str_format_size(mu->total.bytes, size, sizeof(size));
	printf("%-40s %10llu %12s\n", mu->address,
	    (unsigned long long)mu->total.messages, size);
	if (!run->folders)
		return;
	for (i = 0; i < mu->nfolders; i++) {
		mk_str_format_size(
		    mu->folders[i].usage.bytes, size, sizeof(size));
		printf("  %-38s %10llu %12s\n", mu->folders[i].name,
		    (unsigned long long)mu->folders[i].usage.messages, size);
	}
}

/* Commit the open batch, if any. */
static int
scan_flush(struct scan_run *run)
{
	struct mk_err err;

	if (run->in_batch == 0)
		return 0;
	run->in_batch = 0;
	if (mk_catalog_commit(run->cat, &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		mk_catalog_rollback(run->cat);
		return -1;
	}
	return 0;
}

/* Report and record one mailbox's scan result (main thread). */
static void
scan_done(struct scan_run *run, const char *address, const char *relpath,
    struct mk_mailbox_usage *mu, const struct mk_err *scan_err)
{
	struct mk_err err;

	if (mu == NULL) {
		if (scan_err->sys_errno == ENOENT)
			mk_log_error("scan", "%s: no such mailbox (%s/%s)",
			    address, run->conf->store_root, relpath);
		else
			mk_log_error("scan", "%s", scan_err->msg);
		run->status = CMD_FAIL;
		return;
	}
	if (mu->malformed.count > 0)
		mk_log_warn("scan", "%s: %llu names not understood, first: %s",
		    address, mu->malformed.count, mu->malformed.first);
	if (mu->skipped.count > 0)
		mk_log_warn("scan", "%s: %llu entries skipped, first: %s",
		    address, mu->skipped.count, mu->skipped.first);
	if (run->ctx->json)
		scan_print_json(run, mu);
	else
		scan_print_table(run, mu);
	run->printed++;
	if (run->in_batch == 0 && mk_catalog_begin(run->cat, &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		run->status = CMD_FAIL;
	} else if (mk_catalog_put_usage(
		       run->cat, mu, scan_now_ns(), scan_now_ns(), &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		mk_catalog_rollback(run->cat);
		run->in_batch = 0;
		run->status = CMD_FAIL;
	} else if (++run->in_batch == SCAN_BATCH && scan_flush(run) < 0)
		run->status = CMD_FAIL;
	mk_mailbox_usage_free(&mu);
}

static void *
scan_worker(void *arg)
{
	struct scan_pool *pool = arg;
	struct mk_mailbox_usage *mu;
	struct scan_slot *slot;
	struct mk_err err;
	size_t i;
	int rc;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->next < pool->count &&
		    pool->next >= pool->consumed + SCAN_WINDOW)
			pthread_cond_wait(&pool->cond, &pool->lock);
		if (pool->next >= pool->count)
			break;
		i = pool->next++;
		pthread_mutex_unlock(&pool->lock);
		mu = NULL;
		memset(&err, 0, sizeof(err));
		rc = mk_scan_mailbox(pool->rootfd, pool->jobs[i].relpath,
		    pool->jobs[i].address, pool->sep, NULL, &mu, &err);
		pthread_mutex_lock(&pool->lock);
		slot = &pool->slots[i % SCAN_WINDOW];
		slot->rc = rc;
		slot->mu = mu;
		slot->err = err;
		slot->ready = true;
		pthread_cond_broadcast(&pool->cond);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* How many threads list mailboxes: one per CPU, within bounds. */
static size_t
scan_threads(size_t count)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > SCAN_THREADS_MAX)
		n = SCAN_THREADS_MAX;
	return count < (size_t)n ? count : (size_t)n;
}

/* Scan the jobs in parallel and hand each result to scan_done in order. */
static void
scan_all(
    struct scan_run *run, const struct mk_store_mailbox *jobs, size_t count)
{
	pthread_t threads[SCAN_THREADS_MAX];
	struct scan_pool pool;
	size_t i, nthreads = 0, want = scan_threads(count);

	memset(&pool, 0, sizeof(pool));
	pthread_mutex_init(&pool.lock, NULL);
	pthread_cond_init(&pool.cond, NULL);
	pool.jobs = jobs;
	pool.count = count;
	pool.rootfd = run->rootfd;
	pool.sep = run->conf->hierarchy_separator;
	for (i = 0; i < want; i++) {
		if (pthread_create(
			&threads[nthreads], NULL, scan_worker, &pool) != 0) {
			mk_log_warn(
			    "scan", "pthread_create: %s", strerror(errno));
			break;
		}
		nthreads++;
	}
	if (nthreads == 0 && count > 0) {
		/* No thread at all: list in this one. */
		pool.count = 0;
		for (i = 0; i < count; i++) {
			struct mk_mailbox_usage *mu = NULL;
			struct mk_err err;

			if (mk_scan_mailbox(run->rootfd, jobs[i].relpath,
				jobs[i].address, pool.sep, NULL, &mu, &err) < 0)
				mu = NULL;
			scan_done(
			    run, jobs[i].address, jobs[i].relpath, mu, &err);
		}
	}
	for (i = 0; i < pool.count; i++) {
		struct scan_slot *slot = &pool.slots[i % SCAN_WINDOW];
		struct scan_slot got;

		pthread_mutex_lock(&pool.lock);
		while (!slot->ready)
			pthread_cond_wait(&pool.cond, &pool.lock);
		got = *slot;
		slot->ready = false;
		pool.consumed = i + 1;
		pthread_cond_broadcast(&pool.cond);
		pthread_mutex_unlock(&pool.lock);
		scan_done(run, jobs[i].address, jobs[i].relpath,
		    got.rc == 0 ? got.mu : NULL, &got.err);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	pthread_cond_destroy(&pool.cond);
	pthread_mutex_destroy(&pool.lock);
}

int
cmd_scan(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_store_list *list = NULL;
	struct mk_store *store = NULL;
	struct scan_run run;
	struct mk_err err;
	int64_t start = scan_now_ns();
	char relpath[4096];
	bool all;
	size_t i;

	memset(&run, 0, sizeof(run));
	run.ctx = ctx;
	run.rootfd = -1;
	run.status = CMD_OK;
	if (getopt(argc, argv, "+") != -1)
		return cmd_usage(ctx);
	if (cmd_conf(ctx, &run.conf) < 0)
		return CMD_FAIL;
	if (mk_store_new(run.conf->store_root, run.conf->store_template, &store,
		&err) < 0 ||
	    (run.rootfd = mk_store_open_root(store, &err)) < 0 ||
	    mk_fs_mkdir_p(run.conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(run.conf->catalog, &run.cat, &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		run.status = CMD_FAIL;
		goto out;
	}
	all = optind == argc;
	if (all && mk_store_list(store, &list, &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		run.status = CMD_FAIL;
		goto out;
	}
	if (all && list->warnings.count > 0)
		mk_log_warn("scan", "%s: %llu entries skipped, first: %s",
		    run.conf->store_root, list->warnings.count,
		    list->warnings.first);
	run.folders = optind < argc;
	if (list == NULL) {
		/* The mailboxes named on the command line, in that order. */
		list = mk_xcalloc(1, sizeof(*list));
		list->mailboxes = mk_xcalloc(
		    (size_t)(argc - optind), sizeof(*list->mailboxes));
	}
	for (i = (size_t)optind; i < (size_t)argc; i++) {
		struct mk_store_mailbox *m = &list->mailboxes[list->count];

		if (mk_store_mailbox_path(
			store, argv[i], relpath, sizeof(relpath), &err) < 0) {
			mk_log_error("scan", "%s", err.msg);
			run.status = CMD_FAIL;
			continue;
		}
		m->address = mk_xstrdup(argv[i]);
		mk_str_lower(m->address);
		m->relpath = mk_xstrdup(relpath);
		list->count++;
	}
	if (ctx->json)
		printf("{\"mailboxes\":[");
	scan_all(&run, list->mailboxes, list->count);
	if (ctx->json)
		printf("]}\n");
	if (scan_flush(&run) < 0)
		run.status = CMD_FAIL;
	if (all && run.status == CMD_OK &&
	    mk_catalog_mark_removed(run.cat, start, &err) < 0) {
		mk_log_error("scan", "%s", err.msg);
		run.status = CMD_FAIL;
	}
out:
	if (run.rootfd >= 0)
		close(run.rootfd);
	mk_catalog_close(&run.cat);
	mk_store_list_free(&list);
	mk_store_free(&store);
	mk_conf_free(&run.conf);
	return run.status;
}
