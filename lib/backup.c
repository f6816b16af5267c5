#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mailkeep/backup.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/prune.h"
#include "mailkeep/str.h"

/* Listings of a folder whose dovecot-uidlist keeps changing. */
#define BACKUP_TRIES 3
/* Rounds of reading, when files vanish under us (Dovecot moves them). */
#define BACKUP_ROUNDS 4
#define BACKUP_UIDLIST "dovecot-uidlist"
#define BACKUP_KEYWORDS "dovecot-keywords"
#define BACKUP_SUBSCRIPTIONS "subscriptions"
#define BACKUP_MAILDIRFOLDER "maildirfolder"
/* A small file unchanged for this long gets a stamp in the catalog. */
#define BACKUP_STAMP_SETTLED_NS 1000000000LL
/* Blob bytes handed to the workers and not yet in a pack. */
#define BACKUP_INFLIGHT_MAX (8u << 20)
#define BACKUP_INFLIGHT_JOBS 64
/* Jobs with buffers larger than this are large; few of them are kept. */
#define BACKUP_JOB_LARGE (64u << 10)
#define BACKUP_JOB_LARGE_KEEP 4
#define BACKUP_THREADS_MAX 8
/* Room for getdents64(): about 300 Dovecot names per system call. */
#define BACKUP_DIRBUF (32u << 10)
/*
 * A mailbox with at most this many files to read, of at most this many
 * bytes, has them hashed and compressed by the reading thread: a trip
 * through the workers costs more than the work when the machine is busy.
 */
#define BACKUP_INLINE_FILES 8
#define BACKUP_INLINE_BYTES (1u << 20)
/* Mailboxes waiting for the open pack: store it early beyond these. */
#define BACKUP_DEFER_MAILBOXES 256
#define BACKUP_DEFER_MESSAGES 200000
/* ioprio_set(2): the idle class, for the calling thread. */
#define BACKUP_IOPRIO_WHO_PROCESS 1
#define BACKUP_IOPRIO_CLASS_IDLE 3
#define BACKUP_IOPRIO_CLASS_SHIFT 13

/* Files that Dovecot stores compressed or encrypted start with these. */
static const struct {
	const char *magic;
	size_t len;
} backup_magics[] = {
	{ "\x1f\x8b", 2 }, /* gzip */
	{ "BZh", 3 }, /* bzip2 */
	{ "\xfd"
	  "7zXZ\0",
	    6 }, /* xz */
	{ "\x28\xb5\x2f\xfd", 4 }, /* zstd */
	{ "Dovecot-LZ4\x0d\x2a\x9b\xc5", 15 }, /* Dovecot's lz4 */
	{ "CRYPTED\x03\x07", 9 }, /* Dovecot's mail_crypt */
};

struct bk_content;
struct bk_mailbox;

/*
 * A blob of a message for the workers: they compute its id and
 * compress it; the session's thread dedups it and adds it to the pack.
 */
struct bk_job {
	struct bk_job *next;
	struct bk_content *content; /* whose blob idx this is */
	uint32_t idx;
	enum mk_pack_type type;
	uint8_t *data;
	size_t len;
	size_t dcap;
	uint8_t *out; /* compressed */
	size_t ocap;
	uint8_t id[MK_PACK_ID_LEN];
	struct mk_pack_blob blob;
	int rc;
	struct mk_err err;
};

struct bk_queue {
	struct bk_job *head;
	struct bk_job **tail;
};

/* The worker threads of a session. */
struct bk_pool {
	pthread_mutex_t lock;
	pthread_cond_t work; /* a job queued, or stop */
	pthread_cond_t done; /* a result queued */
	struct bk_queue todo;
	struct bk_queue results;
	/* Done jobs, buffers kept (fresh memory is costly): small and
	 * large ones.  The session's thread only. */
	struct bk_job *spare;
	struct bk_job *spare_large;
	size_t nspare_large;
	size_t inflight; /* jobs handed out, results not taken yet */
	size_t inflight_bytes;
	bool stop;
	struct mk_repo *repo;
	struct bk_worker {
		struct bk_pool *pool;
		pthread_t thread;
		struct mk_pack_compressor *comp;
	} * workers;
	size_t nworkers;
};

struct mk_backup {
	struct mk_repo *repo;
	struct mk_catalog *cat;
	int64_t run;
	struct mk_chunker *chunker;
	size_t chunk_max;
	uint8_t *buf; /* the read window of bk_reader */
	size_t bufcap;
	char *dirbuf; /* BACKUP_DIRBUF, for listings */
	struct bk_pool pool;
	struct mk_pack_compressor *comp; /* the reading thread's own */
	/* The open pack, shared by the mailboxes of the session. */
	struct mk_pack_writer *writer;
	struct mk_hmap *pending; /* blob ids in the open pack */
	uint8_t **pending_ids; /* the ids it points to */
	size_t npending;
	size_t pcap;
	bool open_used; /* the mailbox at work needs the open pack */
	struct bk_mailbox *current;
	/* Mailboxes waiting for the open pack to be stored (sharing). */
	bool share;
	mk_backup_done_cb *done_cb;
	void *done_arg;
	struct bk_mailbox **deferred;
	size_t ndeferred;
	size_t dcap;
	uint64_t deferred_messages;
	mk_backup_read_cb *read_cb;
	void *read_arg;
	int64_t time_ns; /* the snapshots' time, 0: now */
	/* The next mailbox, listed by a thread of its own meanwhile
	 * (mk_backup_prefetch). */
	struct {
		/* Named by mk_backup_prefetch(), not started yet. */
		char *next;
		char *next_relpath;
		int next_rootfd;
		/* The listing in the thread, which owns relpath. */
		bool running;
		pthread_t thread;
		struct bk_mailbox *mb;
		int rootfd;
		char *relpath;
		int rc;
		char *dirbuf;
		bool off; /* no thread could be had */
	} ahead;
};

/*
 * What identifies a version of a file: Dovecot replaces dovecot-uidlist
 * and dovecot-keywords by renaming a new file over them (a new inode),
 * and a write in place changes the ctime.
 */
struct bk_stamp {
	bool present;
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
	int64_t ctime_ns;
};

/*
 * A small file read with a folder's listing, or (reused) found with the
 * stamp the catalog has for it: then blob is its content, unread.
 */
struct bk_meta {
	bool present;
	uint8_t *data;
	size_t len;
	int64_t mtime_ns;
	struct bk_stamp stamp; /* of the file read or reused */
	bool stampable; /* unchanged for a while when read: worth a stamp */
	bool reused;
	bool has_blob; /* stored as one blob (or reused): blob is it */
	uint8_t blob[MK_PACK_ID_LEN];
};

/* A stamp the catalog has for a small file of the mailbox. */
struct bk_known_stamp {
	char *dir;
	char *name;
	struct bk_stamp stamp;
	bool has_blob;
	uint8_t blob[MK_PACK_ID_LEN];
	bool kept; /* reused or replaced by this backup */
};

/*
 * What a message holds: its blobs.  From the catalog (version != 0:
 * the version alive now, and where it was) or read in this backup.
 */
struct bk_content {
	char *base;
	uint64_t size;
	bool opaque;
	uint32_t nblobs;
	size_t cap;
	uint8_t (*blobs)[MK_PACK_ID_LEN];
	int64_t version;
	int64_t message;
	char *dir;
	char *suffix;
	bool cur;
	int64_t mtime_ns;
	bool claimed;
};

/* A message file found by a listing. */
struct bk_entry {
	char *name;
	char *base; /* the name up to base_len */
	size_t base_len;
	bool cur;
	int64_t mtime_ns;
	uint64_t size;
	uint64_t seq; /* listing order in the mailbox: the last one wins */
	bool winner;
	struct bk_content *content;
};

struct bk_folder {
	char *dir; /* "" for INBOX */
	bool gone; /* removed while we were at it */
	bool stale; /* a file vanished while being read: list again */
	struct bk_meta uidlist;
	struct bk_meta keywords;
	struct bk_meta maildirfolder;
	int64_t new_mtime_ns;
	int64_t cur_mtime_ns;
	struct bk_entry *entries;
	size_t nentries;
	size_t cap;
};

/* One mailbox being backed up. */
struct bk_mailbox {
	struct mk_backup *bk;
	const char *address;
	int mfd;
	char *dirbuf; /* BACKUP_DIRBUF, of the thread listing it */
	struct mk_backup_stats *stats;
	struct bk_folder *folders;
	size_t nfolders;
	struct bk_meta subscriptions;
	uint64_t seq;
	uint64_t nentries;
	struct mk_hmap *known; /* base -> struct bk_content, one per version
				  alive in the catalog */
	struct mk_hmap *fresh; /* base -> struct bk_content (read now) */
	struct mk_hmap *stamps; /* name -> struct bk_known_stamp */
	struct bk_known_stamp **kstamps; /* all of them, to free */
	size_t nkstamps;
	size_t kscap;
	struct bk_content **contents; /* all of them, to free */
	size_t ncontents;
	size_t ccap;
	struct mk_backup_stats own_stats; /* when the commit is deferred */
	char *own_address;
	uint8_t object[MK_PACK_ID_LEN]; /* the mailbox snapshot blob */
	bool inline_jobs; /* few files to read: no workers (bk_submit) */
	bool job_failed; /* a worker's error, in job_err */
	struct mk_err job_err;
};

static int64_t
backup_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
backup_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t
backup_stat_mtime(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static bool
backup_entry_match(const void *value, const void *ctx)
{
	return strcmp(((const struct bk_entry *)value)->base, ctx) == 0;
}

/*
 * What a content is looked up by.  One base name may have several
 * versions alive in a mailbox: an IMAP COPY keeps the name and
 * hardlinks the file into another folder.
 */
struct bk_key {
	const char *base;
	const char *dir; /* the folder, or NULL: any */
	bool cur;
	const char *suffix; /* the rest of the name, or NULL: any */
	uint64_t size;
};

/* Exactly this file name, as the catalog has it. */
static bool
backup_content_named(const void *value, const void *ctx)
{
	const struct bk_content *c = value;
	const struct bk_key *k = ctx;

	return c->version != 0 && c->cur == k->cur &&
	    strcmp(c->base, k->base) == 0 && strcmp(c->dir, k->dir) == 0 &&
	    strcmp(c->suffix, k->suffix) == 0;
}

/* This base name and size; in this folder and not yet claimed, if
 * k->dir is set. */
static bool
backup_content_sized(const void *value, const void *ctx)
{
	const struct bk_content *c = value;
	const struct bk_key *k = ctx;

	if (c->size != k->size || strcmp(c->base, k->base) != 0)
		return false;
	return k->dir == NULL ||
	    (c->version != 0 && !c->claimed && strcmp(c->dir, k->dir) == 0);
}

enum mk_backup_kind
mk_backup_split(const void *data, size_t len, bool eof, size_t *header_len_r)
{
	const uint8_t *p = data;
	size_t i, limit;

	*header_len_r = 0;
	for (i = 0; i < sizeof(backup_magics) / sizeof(backup_magics[0]); i++)
		if (len >= backup_magics[i].len &&
		    memcmp(p, backup_magics[i].magic, backup_magics[i].len) ==
			0)
			return MK_BACKUP_OPAQUE;
	/* An empty line first: the header section is empty. */
	if (len > 0 && p[0] == '\n') {
		*header_len_r = 1;
		return MK_BACKUP_SPLIT;
	}
	if (len > 1 && p[0] == '\r' && p[1] == '\n') {
		*header_len_r = 2;
		return MK_BACKUP_SPLIT;
	}
	limit = len < MK_BACKUP_HEADER_MAX ? len : MK_BACKUP_HEADER_MAX;
	for (i = 0; i + 1 < limit; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n') {
			*header_len_r = i + 2;
			return MK_BACKUP_SPLIT;
		}
		if (i + 2 < limit && p[i + 1] == '\r' && p[i + 2] == '\n') {
			*header_len_r = i + 3;
			return MK_BACKUP_SPLIT;
		}
	}
	if (eof && len <= MK_BACKUP_HEADER_MAX) {
		*header_len_r = len;
		return MK_BACKUP_SPLIT;
	}
	return MK_BACKUP_OPAQUE;
}

/*
 * Store a finished pack and record it.  The pack is durable before any
 * row names it.  Does nothing for an empty writer.
 */
static int
backup_pack_store(struct mk_repo *repo, struct mk_catalog *cat,
    struct mk_pack_writer *writer, struct mk_pack **pack_r, struct mk_err *err)
{
	struct mk_pack *pack = NULL;
	int rc = -1;

	*pack_r = NULL;
	if (mk_pack_writer_count(writer) == 0)
		return 0;
	if (mk_pack_writer_finish(writer, &pack, err) < 0 ||
	    mk_repo_put_pack(repo, pack, err) < 0 ||
	    mk_catalog_begin(cat, err) < 0)
		goto out;
	if (mk_catalog_pack_add(cat, pack, backup_now_ns(), err) < 0 ||
	    mk_catalog_commit(cat, err) < 0) {
		mk_catalog_rollback(cat);
		goto out;
	}
	*pack_r = pack;
	pack = NULL;
	rc = 0;
out:
	mk_pack_free(&pack);
	return rc;
}

/* Forget the blobs of the open pack: recorded now, or dropped. */
static void
bk_pending_clear(struct mk_backup *bk)
{
	size_t i;

	for (i = 0; i < bk->npending; i++)
		free(bk->pending_ids[i]);
	bk->npending = 0;
	mk_hmap_free(&bk->pending);
	bk->pending = mk_hmap_new();
}

static int bk_commit(struct bk_mailbox *mb, struct mk_err *err);
static void bk_mailbox_drop(struct bk_mailbox *mb);

/* Tell the owner how a deferred mailbox ended, and free it. */
static void
bk_deferred_done(
    struct mk_backup *bk, struct bk_mailbox *mb, const struct mk_err *err)
{
	if (bk->done_cb != NULL)
		bk->done_cb(mb->address, mb->stats, err, bk->done_arg);
	bk_mailbox_drop(mb);
}

/*
 * Store the open pack and record its blobs; then commit the mailboxes
 * that waited for it.  A failed store fails them all (their blobs may
 * be in it); a failed commit fails that mailbox only.
 */
static int
bk_flush(struct mk_backup *bk, struct mk_err *err)
{
	struct mk_pack *pack = NULL;
	struct mk_err cerr;
	size_t i, n = bk->ndeferred;
	int rc;

	rc = backup_pack_store(bk->repo, bk->cat, bk->writer, &pack, err);
	if (rc == 0 && pack != NULL) {
		if (n > 0)
			bk->deferred[n - 1]->stats->packs++;
		else if (bk->current != NULL)
			bk->current->stats->packs++;
	}
	mk_pack_writer_recycle(bk->writer, &pack);
	bk_pending_clear(bk);
	bk->open_used = false;
	bk->ndeferred = 0;
	bk->deferred_messages = 0;
	for (i = 0; i < n; i++) {
		struct bk_mailbox *mb = bk->deferred[i];

		if (rc < 0) {
			bk_deferred_done(bk, mb, err);
			continue;
		}
		if (bk_commit(mb, &cerr) < 0) {
			mk_err_prefix(&cerr, "backup of %s", mb->address);
			bk_deferred_done(bk, mb, &cerr);
			continue;
		}
		bk_deferred_done(bk, mb, NULL);
	}
	return rc;
}

/* Add a blob to the open pack (the caller checked it is new). */
static int
bk_pack_add(struct mk_backup *bk, struct bk_mailbox *mb, enum mk_pack_type type,
    const uint8_t id[MK_PACK_ID_LEN], const void *data, size_t len,
    const struct mk_pack_blob *blob, struct mk_err *err)
{
	struct mk_pack_entry entry;
	uint8_t *copy;

	if ((blob != NULL ? mk_pack_writer_add_blob(
				bk->writer, type, id, blob, &entry, err)
			  : mk_pack_writer_add(bk->writer, type, id, data, len,
				NULL, &entry, err)) < 0)
		return -1;
	copy = mk_xmalloc(MK_PACK_ID_LEN);
	memcpy(copy, id, MK_PACK_ID_LEN);
	mk_xgrow(&bk->pending_ids, &bk->pcap, bk->npending + 1,
	    sizeof(*bk->pending_ids));
	bk->pending_ids[bk->npending++] = copy;
	mk_hmap_put(bk->pending, mk_pack_id_key(copy), copy);
	bk->open_used = true;
	mb->stats->new_blobs++;
	mb->stats->stored_bytes += entry.length;
	if (mk_pack_writer_full(bk->writer))
		return bk_flush(bk, err);
	return 0;
}

/*
 * Whether the repository has a blob: 1 recorded in the catalog or in
 * the open pack, 0 no, -1 error.
 */
static int
bk_blob_known(
    struct mk_backup *bk, const uint8_t id[MK_PACK_ID_LEN], struct mk_err *err)
{
	if (mk_hmap_get(bk->pending, mk_pack_id_key(id), mk_pack_id_match,
		id) != NULL) {
		bk->open_used = true;
		return 1;
	}
	return mk_catalog_blob_reusable(bk->cat, id, NULL, NULL, err);
}

/*
 * Store one blob now unless the repository has it.  Its id goes to
 * id_r.  Message content goes through the workers instead (bk_take).
 */
static int
bk_blob(struct bk_mailbox *mb, enum mk_pack_type type, const void *data,
    size_t len, uint8_t id_r[MK_PACK_ID_LEN], struct mk_err *err)
{
	int r;

	if (mk_repo_blob_id(mb->bk->repo, data, len, id_r, err) < 0 ||
	    (r = bk_blob_known(mb->bk, id_r, err)) < 0)
		return -1;
	if (r == 1)
		return 0;
	return bk_pack_add(mb->bk, mb, type, id_r, data, len, NULL, err);
}

static void
bk_queue_init(struct bk_queue *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static void
bk_queue_push(struct bk_queue *q, struct bk_job *job)
{
	job->next = NULL;
	*q->tail = job;
	q->tail = &job->next;
}

static void
bk_jobs_free(struct bk_job *job)
{
	struct bk_job *next;

	for (; job != NULL; job = next) {
		next = job->next;
		free(job->data);
		free(job->out);
		free(job);
	}
}

/* Hash and compress a job. */
static void
bk_job_run(
    struct mk_repo *repo, struct mk_pack_compressor *comp, struct bk_job *job)
{
	job->rc = 0;
	mk_xgrow(&job->out, &job->ocap, mk_pack_compress_bound(job->len), 1);
	if (mk_repo_blob_id(repo, job->data, job->len, job->id, &job->err) <
		0 ||
	    mk_pack_compress(comp, job->type, job->data, job->len, job->out,
		job->ocap, &job->blob, &job->err) < 0)
		job->rc = -1;
}

/* A worker: hash and compress jobs until told to stop. */
static void *
bk_worker_main(void *arg)
{
	struct bk_worker *w = arg;
	struct bk_pool *pool = w->pool;
	struct bk_job *job;

	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (pool->todo.head == NULL && !pool->stop)
			pthread_cond_wait(&pool->work, &pool->lock);
		if (pool->todo.head == NULL)
			break;
		job = pool->todo.head;
		if ((pool->todo.head = job->next) == NULL)
			pool->todo.tail = &pool->todo.head;
		pthread_mutex_unlock(&pool->lock);
		bk_job_run(pool->repo, w->comp, job);
		pthread_mutex_lock(&pool->lock);
		bk_queue_push(&pool->results, job);
		pthread_cond_signal(&pool->done);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void
bk_pool_stop(struct bk_pool *pool)
{
	size_t i;

	if (pool->workers == NULL)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stop = true;
	pthread_cond_broadcast(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	for (i = 0; i < pool->nworkers; i++) {
		pthread_join(pool->workers[i].thread, NULL);
		mk_pack_compressor_free(&pool->workers[i].comp);
	}
	bk_jobs_free(pool->results.head);
	bk_jobs_free(pool->spare);
	bk_jobs_free(pool->spare_large);
	free(pool->workers);
	pool->workers = NULL;
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->work);
	pthread_cond_destroy(&pool->done);
}

/* One worker per processor, at least one, at most BACKUP_THREADS_MAX. */
static int
bk_pool_start(struct bk_pool *pool, struct mk_repo *repo, struct mk_err *err)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	size_t i;
	int r;

	memset(pool, 0, sizeof(*pool));
	pool->repo = repo;
	bk_queue_init(&pool->todo);
	bk_queue_init(&pool->results);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->work, NULL);
	pthread_cond_init(&pool->done, NULL);
	n = n < 1 ? 1 : n > BACKUP_THREADS_MAX ? BACKUP_THREADS_MAX : n;
	pool->workers = mk_xcalloc((size_t)n, sizeof(*pool->workers));
	for (i = 0; i < (size_t)n; i++) {
		struct bk_worker *w = &pool->workers[i];

		w->pool = pool;
		if (mk_repo_compressor_new(repo, &w->comp, err) < 0)
			goto fail;
		if ((r = pthread_create(&w->thread, NULL, bk_worker_main, w)) !=
		    0) {
			mk_pack_compressor_free(&w->comp);
			errno = r;
			mk_err_sys(err, "pthread_create");
			goto fail;
		}
		pool->nworkers++;
	}
	return 0;
fail:
	bk_pool_stop(pool);
	return -1;
}

/*
 * A worker's result: the blob id goes to its content, the blob into the
 * open pack unless the repository has it.  After a failure in the
 * mailbox, results are only dropped.
 */
static void
bk_result(struct bk_mailbox *mb, struct bk_job *job)
{
	struct mk_backup *bk = mb->bk;
	int r;

	if (mb->job_failed)
		return;
	if (job->rc < 0) {
		mb->job_err = job->err;
		mb->job_failed = true;
		return;
	}
	memcpy(job->content->blobs[job->idx], job->id, MK_PACK_ID_LEN);
	if ((r = bk_blob_known(bk, job->id, &mb->job_err)) == 0) {
		/* A new header: index the fields people search by. */
		if (job->type == MK_PACK_TYPE_HEADER)
			mk_catalog_header_put(
			    bk->cat, job->id, job->data, job->len);
		r = bk_pack_add(bk, mb, job->type, job->id, NULL, 0, &job->blob,
		    &mb->job_err);
	}
	if (r < 0)
		mb->job_failed = true;
}

/* Keep a done job's buffers for the next one, or free them. */
static void
bk_job_recycle(struct bk_pool *pool, struct bk_job *job)
{
	if (job->dcap <= BACKUP_JOB_LARGE) {
		job->next = pool->spare;
		pool->spare = job;
	} else if (pool->nspare_large < BACKUP_JOB_LARGE_KEEP) {
		job->next = pool->spare_large;
		pool->spare_large = job;
		pool->nspare_large++;
	} else {
		job->next = NULL;
		bk_jobs_free(job);
	}
}

/* Take the results ready (wait for one when wait and any is due). */
static void
bk_collect(struct bk_mailbox *mb, bool wait)
{
	struct bk_pool *pool = &mb->bk->pool;
	struct bk_job *job, *next;

	pthread_mutex_lock(&pool->lock);
	while (wait && pool->results.head == NULL && pool->inflight > 0)
		pthread_cond_wait(&pool->done, &pool->lock);
	job = pool->results.head;
	bk_queue_init(&pool->results);
	pthread_mutex_unlock(&pool->lock);
	for (; job != NULL; job = next) {
		next = job->next;
		bk_result(mb, job);
		pthread_mutex_lock(&pool->lock);
		pool->inflight--;
		pool->inflight_bytes -= job->len;
		pthread_mutex_unlock(&pool->lock);
		bk_job_recycle(pool, job);
	}
}

/* Wait for every job of the mailbox; a worker's error is returned. */
static int
bk_drain(struct bk_mailbox *mb, struct mk_err *err)
{
	struct bk_pool *pool = &mb->bk->pool;
	size_t left;

	for (;;) {
		pthread_mutex_lock(&pool->lock);
		left = pool->inflight;
		pthread_mutex_unlock(&pool->lock);
		if (left == 0)
			break;
		bk_collect(mb, true);
	}
	if (mb->job_failed) {
		*err = mb->job_err;
		return -1;
	}
	return 0;
}

/*
 * Hand len bytes of data to the workers as blob idx of c; wait for
 * results while too many bytes are out.  With inline_jobs, do the
 * work here instead.
 */
static int
bk_submit(struct bk_mailbox *mb, struct bk_content *c, uint32_t idx,
    enum mk_pack_type type, const void *data, size_t len, struct mk_err *err)
{
	struct bk_pool *pool = &mb->bk->pool;
	struct bk_job *job;
	bool full;

	if (len > BACKUP_JOB_LARGE && pool->spare_large != NULL) {
		job = pool->spare_large;
		pool->spare_large = job->next;
		pool->nspare_large--;
	} else if (len <= BACKUP_JOB_LARGE && pool->spare != NULL) {
		job = pool->spare;
		pool->spare = job->next;
	} else
		job = mk_xcalloc(1, sizeof(*job));
	job->content = c;
	job->idx = idx;
	job->type = type;
	job->len = len;
	mk_xgrow(&job->data, &job->dcap, len > 0 ? len : 1, 1);
	if (len > 0)
		memcpy(job->data, data, len);
	if (mb->inline_jobs) {
		if (mb->bk->comp == NULL &&
		    mk_repo_compressor_new(mb->bk->repo, &mb->bk->comp, err) <
			0) {
			bk_job_recycle(pool, job);
			return -1;
		}
		bk_job_run(mb->bk->repo, mb->bk->comp, job);
		bk_result(mb, job);
		bk_job_recycle(pool, job);
		goto out;
	}
	pthread_mutex_lock(&pool->lock);
	bk_queue_push(&pool->todo, job);
	pool->inflight++;
	pool->inflight_bytes += len;
	full = pool->inflight_bytes > BACKUP_INFLIGHT_MAX ||
	    pool->inflight > BACKUP_INFLIGHT_JOBS;
	pthread_cond_signal(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	bk_collect(mb, false);
	while (full) {
		bk_collect(mb, true);
		pthread_mutex_lock(&pool->lock);
		full = pool->inflight_bytes > BACKUP_INFLIGHT_MAX ||
		    pool->inflight > BACKUP_INFLIGHT_JOBS;
		pthread_mutex_unlock(&pool->lock);
	}
out:
	if (mb->job_failed) {
		*err = mb->job_err;
		return -1;
	}
	return 0;
}

static void
bk_content_add_id(struct bk_content *c, const uint8_t id[MK_PACK_ID_LEN])
{
	mk_xgrow(&c->blobs, &c->cap, (size_t)c->nblobs + 1, MK_PACK_ID_LEN);
	memcpy(c->blobs[c->nblobs++], id, MK_PACK_ID_LEN);
}

/* A source of bytes to store: a file, or memory. */
struct bk_reader {
	int fd; /* -1: mem */
	const uint8_t *mem;
	size_t memlen;
	size_t mempos;
	uint8_t *buf;
	size_t cap;
	size_t start; /* bytes before start are stored */
	size_t end;
	bool eof;
	uint64_t total;
	const char *what; /* for errors */
	struct mk_backup *bk; /* its read_cb sees every read of a file */
};

/* Have at least need bytes (at most the window) after start, or all. */
static int
bk_fill(struct bk_reader *r, size_t need, struct mk_err *err)
{
	if (need > r->cap)
		need = r->cap;
	while (!r->eof && r->end - r->start < need) {
		size_t want;
		ssize_t n;

		if (r->end == r->cap) {
			memmove(r->buf, r->buf + r->start, r->end - r->start);
			r->end -= r->start;
			r->start = 0;
		}
		want = r->cap - r->end;
		if (r->fd < 0) {
			n = (ssize_t)(r->memlen - r->mempos < want
				? r->memlen - r->mempos
				: want);
			memcpy(r->buf + r->end, r->mem + r->mempos, (size_t)n);
			r->mempos += (size_t)n;
		} else if ((n = read(r->fd, r->buf + r->end, want)) < 0) {
			if (errno == EINTR)
				continue;
			return mk_err_sys(err, "read(%s)", r->what);
		}
		if (n == 0)
			r->eof = true;
		r->end += (size_t)n;
		r->total += (uint64_t)n;
		if (n > 0 && r->bk != NULL && r->bk->read_cb != NULL &&
		    r->bk->read_cb((uint64_t)n, r->bk->read_arg, err) < 0)
			return mk_err_prefix(err, "%s", r->what);
	}
	return 0;
}

/*
 * Store the next n bytes of the window as one blob of c: metadata now,
 * message content through the workers (its id is filled in later).
 */
static int
bk_take(struct bk_mailbox *mb, struct bk_reader *r, enum mk_pack_type type,
    size_t n, struct bk_content *c, struct mk_err *err)
{
	static const uint8_t none[MK_PACK_ID_LEN];
	uint8_t id[MK_PACK_ID_LEN];

	if (c->nblobs >= MK_SNAPSHOT_BLOBS_MAX)
		return mk_err_set(err, "%s: too large (more than %u pieces)",
		    r->what, MK_SNAPSHOT_BLOBS_MAX);
	if (type == MK_PACK_TYPE_META) {
		if (bk_blob(mb, type, r->buf + r->start, n, id, err) < 0)
			return -1;
		bk_content_add_id(c, id);
	} else {
		bk_content_add_id(c, none);
		if (bk_submit(mb, c, c->nblobs - 1, type, r->buf + r->start, n,
			err) < 0)
			return -1;
	}
	r->start += n;
	return 0;
}

/*
 * Store a file from r into c: a message split into header and body (or
 * opaque), or a metadata file.  Bodies and opaque data over
 * MK_CHUNKER_THRESHOLD are cut with the repository's chunker.
 */
static int
bk_store(struct bk_mailbox *mb, struct bk_reader *r, bool message,
    struct bk_content *c, struct mk_err *err)
{
	enum mk_pack_type single = MK_PACK_TYPE_META, piece = MK_PACK_TYPE_META;
	size_t hlen = 0, n;

	if (bk_fill(r, MK_BACKUP_HEADER_MAX + 1, err) < 0)
		return -1;
	c->opaque = true;
	if (message) {
		single = MK_PACK_TYPE_BODY;
		piece = MK_PACK_TYPE_CHUNK;
		c->opaque =
		    mk_backup_split(r->buf + r->start, r->end - r->start,
			r->eof, &hlen) == MK_BACKUP_OPAQUE;
		if (!c->opaque &&
		    bk_take(mb, r, MK_PACK_TYPE_HEADER, hlen, c, err) < 0)
			return -1;
	}
	if (bk_fill(r, MK_CHUNKER_THRESHOLD + 1, err) < 0)
		return -1;
	if (r->eof && r->end - r->start <= MK_CHUNKER_THRESHOLD) {
		if (r->end > r->start &&
		    bk_take(mb, r, single, r->end - r->start, c, err) < 0)
			return -1;
	} else {
		for (;;) {
			if (bk_fill(r, mb->bk->chunk_max, err) < 0)
				return -1;
			if (r->end == r->start)
				break;
			n = mk_chunker_next(mb->bk->chunker, r->buf + r->start,
			    r->end - r->start);
			if (bk_take(mb, r, piece, n, c, err) < 0)
				return -1;
		}
	}
	c->size = r->total;
	return 0;
}

static struct bk_content *
bk_content_new(struct bk_mailbox *mb, const char *base)
{
	struct bk_content *c = mk_xcalloc(1, sizeof(*c));

	c->base = mk_xstrdup(base);
	mk_xgrow(
	    &mb->contents, &mb->ccap, mb->ncontents + 1, sizeof(*mb->contents));
	mb->contents[mb->ncontents++] = c;
	return c;
}

/*
 * Store a metadata file read with a listing (its data is freed then),
 * or take the blob reused for it.
 */
static int
bk_store_meta(struct bk_mailbox *mb, struct bk_meta *m, const char *what,
    struct mk_snapshot_file *file, struct mk_err *err)
{
	struct bk_reader r;
	struct bk_content c;

	memset(file, 0, sizeof(*file));
	if (!m->present)
		return 0;
	if (m->reused) {
		file->present = true;
		file->opaque = true;
		file->mtime_ns = m->mtime_ns;
		file->size = m->len;
		if (m->has_blob) {
			file->blobs = mk_xmalloc(MK_PACK_ID_LEN);
			memcpy(file->blobs[0], m->blob, MK_PACK_ID_LEN);
			file->nblobs = 1;
		}
		return 0;
	}
	memset(&c, 0, sizeof(c));
	memset(&r, 0, sizeof(r));
	r.fd = -1;
	r.mem = m->data;
	r.memlen = m->len;
	r.buf = mb->bk->buf;
	r.cap = mb->bk->bufcap;
	r.what = what;
	if (bk_store(mb, &r, false, &c, err) < 0) {
		free(c.blobs);
		return -1;
	}
	file->present = true;
	file->opaque = true;
	file->mtime_ns = m->mtime_ns;
	file->size = c.size;
	file->nblobs = c.nblobs;
	file->blobs = c.blobs;
	if ((m->has_blob = c.nblobs == 1))
		memcpy(m->blob, c.blobs[0], MK_PACK_ID_LEN);
	free(m->data);
	m->data = NULL;
	return 0;
}

/*
 * Read and store a message file of a listing: 0 done, 1 the file is
 * gone (or is no longer a regular file), -1 error.
 */
static int
bk_store_message(struct bk_mailbox *mb, int subfd, const struct bk_folder *f,
    struct bk_entry *e, struct mk_err *err)
{
	struct bk_content *c = NULL;
	struct bk_reader r;
	char what[PATH_MAX];
	struct stat st;
	int fd, rc = -1;

	snprintf(what, sizeof(what), "%s/%s/%s/%s", mb->address,
	    f->dir[0] != '\0' ? f->dir : ".", e->cur ? "cur" : "new", e->name);
	fd = openat(subfd, e->name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ELOOP)
			return 1;
		return mk_err_sys(err, "open(%s)", what);
	}
	if (fstat(fd, &st) < 0) {
		mk_err_sys(err, "fstat(%s)", what);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = 1;
		goto out;
	}
	c = bk_content_new(mb, e->base);
	memset(&r, 0, sizeof(r));
	r.fd = fd;
	r.bk = mb->bk;
	r.buf = mb->bk->buf;
	r.cap = mb->bk->bufcap;
	r.what = what;
	if (bk_store(mb, &r, true, c, err) < 0)
		goto out;
	/* A backup must not evict the IMAP server's working set. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	mb->stats->read_messages++;
	mb->stats->read_bytes += c->size;
	mk_hmap_put(mb->fresh, mk_hmap_hash(c->base, strlen(c->base)), c);
	e->content = c;
	rc = 0;
out:
	close(fd);
	return rc;
}

/* Open a folder directory of the mailbox ("" is the Maildir itself). */
static int
bk_folder_open(struct bk_mailbox *mb, const struct bk_folder *f)
{
	if (f->dir[0] == '\0')
		return openat(mb->mfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return mk_fs_openat_dir(mb->mfd, f->dir);
}

static void
bk_meta_free(struct bk_meta *m)
{
	free(m->data);
	memset(m, 0, sizeof(*m));
}

static void
bk_stamp_of(const struct stat *st, struct bk_stamp *s)
{
	memset(s, 0, sizeof(*s));
	s->present = true;
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtime_ns = backup_stat_mtime(st);
	s->ctime_ns =
	    (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

static void
bk_stamp(int dirfd, const char *name, struct bk_stamp *s)
{
	struct stat st;

	memset(s, 0, sizeof(*s));
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	bk_stamp_of(&st, s);
}

static bool
bk_stamp_same(const struct bk_stamp *a, const struct bk_stamp *b)
{
	return a->present == b->present && a->dev == b->dev &&
	    a->ino == b->ino && a->size == b->size &&
	    a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

static uint64_t
bk_stamp_hash(const char *dir, const char *name)
{
	return mk_hmap_hash(dir, strlen(dir)) * 31 +
	    mk_hmap_hash(name, strlen(name));
}

static bool
bk_stamp_match(const void *value, const void *ctx)
{
	const struct bk_known_stamp *a = value, *b = ctx;

	return strcmp(a->dir, b->dir) == 0 && strcmp(a->name, b->name) == 0;
}

/* The stamp the catalog has for a small file of the mailbox, or NULL. */
static struct bk_known_stamp *
bk_stamp_find(const struct bk_mailbox *mb, const char *dir, const char *name)
{
	struct bk_known_stamp k;

	k.dir = (char *)dir;
	k.name = (char *)name;
	return mk_hmap_get(
	    mb->stamps, bk_stamp_hash(dir, name), bk_stamp_match, &k);
}

/* A stamp of the catalog. */
static void
bk_stamp_cb(const struct mk_catalog_stamp *s, void *arg)
{
	struct bk_mailbox *mb = arg;
	struct bk_known_stamp *ks = mk_xcalloc(1, sizeof(*ks));

	ks->dir = mk_xstrdup(s->dir);
	ks->name = mk_xstrdup(s->name);
	ks->stamp.present = true;
	ks->stamp.dev = (dev_t)s->dev;
	ks->stamp.ino = (ino_t)s->ino;
	ks->stamp.size = (off_t)s->size;
	ks->stamp.mtime_ns = s->mtime_ns;
	ks->stamp.ctime_ns = s->ctime_ns;
	ks->has_blob = s->has_blob;
	memcpy(ks->blob, s->blob, MK_PACK_ID_LEN);
	mk_xgrow(
	    &mb->kstamps, &mb->kscap, mb->nkstamps + 1, sizeof(*mb->kstamps));
	mb->kstamps[mb->nkstamps++] = ks;
	mk_hmap_put(mb->stamps, bk_stamp_hash(ks->dir, ks->name), ks);
}

/*
 * Read a metadata file of dirfd; absent is fine.  dir is the folder
 * ("" or "." for the Maildir itself).  A file whose stamp is the one
 * the catalog has is not read: its blob is reused.
 */
static int
bk_meta_read(struct bk_mailbox *mb, int dirfd, const char *dir,
    const char *name, struct bk_meta *m, struct mk_err *err)
{
	const char *kdir = strcmp(dir, ".") == 0 ? "" : dir;
	struct bk_known_stamp *ks;
	struct stat st;
	size_t len = 0, cap;
	int fd, rc = -1;

	bk_meta_free(m);
	if ((ks = bk_stamp_find(mb, kdir, name)) != NULL) {
		bk_stamp(dirfd, name, &m->stamp);
		if (bk_stamp_same(&m->stamp, &ks->stamp)) {
			m->present = true;
			m->reused = true;
			m->len = (size_t)m->stamp.size;
			m->mtime_ns = m->stamp.mtime_ns;
			m->has_blob = ks->has_blob;
			memcpy(m->blob, ks->blob, MK_PACK_ID_LEN);
			return 0;
		}
		memset(&m->stamp, 0, sizeof(m->stamp));
	}
	fd = openat(dirfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP) {
			mk_warnings_add(&mb->stats->skipped,
			    "%s/%s: symbolic link not followed", dir, name);
			return 0;
		}
		return mk_err_sys(err, "open(%s/%s)", dir, name);
	}
	if (fstat(fd, &st) < 0) {
		mk_err_sys(err, "fstat(%s/%s)", dir, name);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		mk_warnings_add(&mb->stats->skipped,
		    "%s/%s: not a regular file, skipped", dir, name);
		rc = 0;
		goto out;
	}
	/* Sized from fstat, grown if the file grows while read. */
	cap = (size_t)st.st_size < MK_BACKUP_META_MAX
	    ? (size_t)st.st_size + 4096
	    : MK_BACKUP_META_MAX + 1;
	m->data = mk_xmalloc(cap);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap > MK_BACKUP_META_MAX) {
				mk_err_set(err, "%s/%s: larger than %u bytes",
				    dir, name, MK_BACKUP_META_MAX);
				goto out;
			}
			cap = cap * 2 < MK_BACKUP_META_MAX + 1
			    ? cap * 2
			    : MK_BACKUP_META_MAX + 1;
			m->data = mk_xreallocarray(m->data, cap, 1);
		}
		n = read(fd, m->data + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			mk_err_sys(err, "read(%s/%s)", dir, name);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	m->len = len;
	m->present = true;
	m->mtime_ns = backup_stat_mtime(&st);
	/* A file changed just now could change again within the same
	 * timestamp tick, unseen by its stamp. */
	bk_stamp_of(&st, &m->stamp);
	m->stampable =
	    m->stamp.ctime_ns < backup_now_ns() - BACKUP_STAMP_SETTLED_NS;
	mb->stats->meta_bytes += len;
	rc = 0;
out:
	if (rc < 0)
		bk_meta_free(m);
	close(fd);
	return rc;
}

static void
bk_folder_reset(struct bk_folder *f)
{
	size_t i;

	for (i = 0; i < f->nentries; i++) {
		free(f->entries[i].name);
		free(f->entries[i].base);
	}
	f->nentries = 0;
	bk_meta_free(&f->uidlist);
	bk_meta_free(&f->keywords);
	bk_meta_free(&f->maildirfolder);
}

/*
 * The version alive in the catalog under exactly this name (folder,
 * new/ or cur/, base and the rest), or NULL.  Its file is not stat'ed:
 * Maildir files never change content, and Dovecot never touches their
 * mtime after delivery.
 */
static const struct bk_content *
bk_known_same(const struct bk_mailbox *mb, const struct bk_folder *f, bool cur,
    const char *name, size_t base_len)
{
	char base[NAME_MAX + 1];
	struct bk_key k;

	if (base_len > NAME_MAX)
		return NULL;
	memcpy(base, name, base_len);
	base[base_len] = '\0';
	k.base = base;
	k.dir = f->dir;
	k.cur = cur;
	k.suffix = name + base_len;
	return mk_hmap_get(
	    mb->known, mk_hmap_hash(base, base_len), backup_content_named, &k);
}

/* The message files of new/ or cur/ of a folder. */
static int
bk_list_sub(struct bk_mailbox *mb, int folderfd, struct bk_folder *f, bool cur,
    struct mk_err *err)
{
	const char *sub = cur ? "cur" : "new";
	const struct bk_content *known;
	struct mk_maildir_name mn;
	struct mk_fs_dirent de;
	struct mk_fs_dir dir;
	size_t base_len;
	struct mk_err nerr;
	int fd, r, rc = -1;

	fd = mk_fs_openat_dir(folderfd, sub);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP || errno == ENOTDIR) {
			mk_warnings_add(&mb->stats->skipped,
			    "%s/%s: not a directory or a symbolic link, not "
			    "followed",
			    f->dir, sub);
			return 0;
		}
		return mk_err_sys(err, "open(%s/%s)", f->dir, sub);
	}
	mk_fs_dir_start(&dir, fd, mb->dirbuf, BACKUP_DIRBUF);
	while ((r = mk_fs_dir_next(&dir, &de)) == 1) {
		const char *name = de.name;
		struct bk_entry *e;
		struct stat st;

		if (mk_maildir_classify(name) != MK_MAILDIR_MESSAGE)
			continue;
		/* A malformed name still has a base; an empty one (",x")
		 * makes the whole name the base. */
		(void)mk_maildir_name_parse(name, &mn, &nerr);
		base_len = mn.base_len > 0 ? mn.base_len : strlen(name);
		if (de.type == DT_REG &&
		    (known = bk_known_same(mb, f, cur, name, base_len)) !=
			NULL) {
			/* The version the catalog has: no stat. */
			st.st_size = (off_t)known->size;
			st.st_mtim.tv_sec = known->mtime_ns / 1000000000;
			st.st_mtim.tv_nsec = known->mtime_ns % 1000000000;
		} else if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				mk_warnings_add(&mb->stats->skipped,
				    "%s/%s/%s: stat: %s", f->dir, sub, name,
				    strerror(errno));
			continue;
		} else if (!S_ISREG(st.st_mode)) {
			mk_warnings_add(&mb->stats->skipped,
			    "%s/%s/%s: not a regular file, skipped", f->dir,
			    sub, name);
			continue;
		}
		if (++mb->nentries > MK_BACKUP_MESSAGES_MAX) {
			mk_err_set(err, "more than %u message files",
			    MK_BACKUP_MESSAGES_MAX);
			goto out;
		}
		mk_xgrow(
		    &f->entries, &f->cap, f->nentries + 1, sizeof(*f->entries));
		e = &f->entries[f->nentries++];
		memset(e, 0, sizeof(*e));
		e->name = mk_xstrdup(name);
		e->base_len = base_len;
		e->base = mk_xstrndup(name, e->base_len);
		e->cur = cur;
		e->mtime_ns = backup_stat_mtime(&st);
		e->size = (uint64_t)st.st_size;
		e->seq = ++mb->seq;
	}
	if (r < 0) {
		mk_err_sys(err, "getdents(%s/%s)", f->dir, sub);
		goto out;
	}
	rc = 0;
out:
	close(fd);
	return rc;
}

/* mtime of new/ or cur/ in ns, 0 if it does not exist. */
static int64_t
bk_sub_mtime(int folderfd, const char *sub)
{
	struct stat st;

	if (fstatat(folderfd, sub, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return backup_stat_mtime(&st);
}

/*
 * List a folder consistently with Dovecot: stat dovecot-uidlist, read it
 * and dovecot-keywords, list new/ and cur/, stat the uidlist again; if
 * it changed, list again (BACKUP_TRIES listings in all, then the last
 * one is kept).  A folder that is gone is marked so.
 */
static int
bk_folder_list(struct bk_mailbox *mb, struct bk_folder *f, struct mk_err *err)
{
	struct bk_stamp before, after;
	int fd, try, rc = -1;

	bk_folder_reset(f);
	if ((fd = bk_folder_open(mb, f)) < 0) {
		if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) {
			f->gone = true;
			return 0;
		}
		return mk_err_sys(err, "open(%s)", f->dir);
	}
	for (try = 0; try < BACKUP_TRIES; try++) {
		bk_folder_reset(f);
		bk_stamp(fd, BACKUP_UIDLIST, &before);
		f->new_mtime_ns = bk_sub_mtime(fd, "new");
		f->cur_mtime_ns = bk_sub_mtime(fd, "cur");
		if (bk_meta_read(
			mb, fd, f->dir, BACKUP_UIDLIST, &f->uidlist, err) < 0 ||
		    bk_meta_read(mb, fd, f->dir, BACKUP_KEYWORDS, &f->keywords,
			err) < 0 ||
		    bk_list_sub(mb, fd, f, false, err) < 0 ||
		    bk_list_sub(mb, fd, f, true, err) < 0)
			goto out;
		bk_stamp(fd, BACKUP_UIDLIST, &after);
		if (bk_stamp_same(&before, &after))
			break;
	}
	if (try == BACKUP_TRIES)
		mk_warnings_add(&mb->stats->skipped,
		    "%s: dovecot-uidlist changed during %d listings; the last "
		    "one is kept",
		    f->dir[0] != '\0' ? f->dir : "INBOX", BACKUP_TRIES);
	if (bk_meta_read(mb, fd, f->dir, BACKUP_MAILDIRFOLDER,
		&f->maildirfolder, err) < 0)
		goto out;
	f->stale = false;
	rc = 0;
out:
	close(fd);
	return rc;
}

static int
bk_folder_cmp(const void *a, const void *b)
{
	return strcmp(((const struct bk_folder *)a)->dir,
	    ((const struct bk_folder *)b)->dir);
}

/* Find the folders: INBOX, and every ".Name" directory of the Maildir. */
static int
bk_folders_find(struct bk_mailbox *mb, struct mk_err *err)
{
	struct dirent *de;
	size_t cap = 0;
	DIR *dir;
	int fd;

	mk_xgrow(&mb->folders, &cap, 1, sizeof(*mb->folders));
	memset(&mb->folders[0], 0, sizeof(mb->folders[0]));
	mb->folders[0].dir = mk_xstrdup("");
	mb->nfolders = 1;
	if ((fd = openat(mb->mfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return mk_err_sys(err, "open(%s)", mb->address);
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return mk_err_sys(err, "fdopendir(%s)", mb->address);
	}
	while ((errno = 0, de = readdir(dir)) != NULL) {
		struct stat st;

		if (!mk_maildir_is_folder_dir(de->d_name) ||
		    strlen(de->d_name) > MK_SNAPSHOT_NAME_MAX)
			continue;
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) <
		    0)
			continue;
		if (S_ISLNK(st.st_mode)) {
			mk_warnings_add(&mb->stats->skipped,
			    "%s: symbolic link not followed", de->d_name);
			continue;
		}
		if (!S_ISDIR(st.st_mode))
			continue;
		if (mb->nfolders >= MK_SNAPSHOT_FOLDERS_MAX) {
			closedir(dir);
			return mk_err_set(err, "more than %u folders",
			    MK_SNAPSHOT_FOLDERS_MAX);
		}
		mk_xgrow(
		    &mb->folders, &cap, mb->nfolders + 1, sizeof(*mb->folders));
		memset(&mb->folders[mb->nfolders], 0, sizeof(*mb->folders));
		mb->folders[mb->nfolders++].dir = mk_xstrdup(de->d_name);
	}
	if (errno != 0) {
		mk_err_sys(err, "readdir(%s)", mb->address);
		closedir(dir);
		return -1;
	}
	closedir(dir);
	qsort(mb->folders, mb->nfolders, sizeof(*mb->folders), bk_folder_cmp);
	return 0;
}

/*
 * List every folder; then list again, once, each folder whose new/ or
 * cur/ changed meanwhile, so that a message moved from a folder not yet
 * listed into one already listed is not missed.
 */
static int
bk_list_all(struct bk_mailbox *mb, struct mk_err *err)
{
	size_t i;
	int fd;

	for (i = 0; i < mb->nfolders; i++)
		if (bk_folder_list(mb, &mb->folders[i], err) < 0)
			return -1;
	for (i = 0; i < mb->nfolders; i++) {
		struct bk_folder *f = &mb->folders[i];
		bool changed;

		if (f->gone || (fd = bk_folder_open(mb, f)) < 0)
			continue;
		changed = bk_sub_mtime(fd, "new") != f->new_mtime_ns ||
		    bk_sub_mtime(fd, "cur") != f->cur_mtime_ns;
		close(fd);
		if (changed && bk_folder_list(mb, f, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * Pick, for each base name of a folder, the entry listed last: a
 * message renamed from new/ to cur/ during the listing is listed twice.
 * The same base name in two folders is two messages (an IMAP COPY);
 * a move between folders during the pass is caught by bk_list_all()
 * listing the changed folder again.
 */
static void
bk_resolve(struct bk_mailbox *mb)
{
	struct mk_hmap *winners;
	size_t i, j;

	for (i = 0; i < mb->nfolders; i++) {
		struct bk_folder *f = &mb->folders[i];

		if (f->gone)
			continue;
		winners = mk_hmap_new();
		for (j = 0; j < f->nentries; j++) {
			struct bk_entry *e = &f->entries[j], *w;
			uint64_t h = mk_hmap_hash(e->base, e->base_len);

			e->winner = false;
			e->content = NULL;
			w = mk_hmap_get(
			    winners, h, backup_entry_match, e->base);
			if (w != NULL && w->seq > e->seq)
				continue;
			if (w != NULL) {
				mk_hmap_remove(winners, h, w);
				w->winner = false;
			}
			mk_hmap_put(winners, h, e);
			e->winner = true;
		}
		mk_hmap_free(&winners);
	}
}

/* The content of an entry known already, with the same size, or NULL. */
static struct bk_content *
bk_content_find(struct mk_hmap *map, const struct bk_entry *e)
{
	struct bk_key k;

	memset(&k, 0, sizeof(k));
	k.base = e->base;
	k.size = e->size;
	return mk_hmap_get(
	    map, mk_hmap_hash(e->base, e->base_len), backup_content_sized, &k);
}

/*
 * Read the winners of a folder that bk_match() left without content.
 * *missing counts the files that vanished before they could be read;
 * the folder is then marked stale.
 */
static int
bk_read_folder(struct bk_mailbox *mb, struct bk_folder *f, size_t *missing,
    struct mk_err *err)
{
	int fd = -1, subfd[2] = { -1, -1 }, r, rc = -1;
	size_t i;

	for (i = 0; !f->gone && i < f->nentries; i++) {
		struct bk_entry *e = &f->entries[i];

		/* Read already in this round: a copy in another folder. */
		if (!e->winner || e->content != NULL ||
		    (e->content = bk_content_find(mb->fresh, e)) != NULL)
			continue;
		if (fd < 0 && (fd = bk_folder_open(mb, f)) < 0) {
			/* Renamed or removed: the next listing tells. */
			f->stale = true;
			(*missing)++;
			break;
		}
		if (subfd[e->cur] < 0 &&
		    (subfd[e->cur] =
			    mk_fs_openat_dir(fd, e->cur ? "cur" : "new")) < 0) {
			f->stale = true;
			(*missing)++;
			continue;
		}
		if ((r = bk_store_message(mb, subfd[e->cur], f, e, err)) < 0)
			goto out;
		if (r == 1) {
			f->stale = true;
			(*missing)++;
		}
	}
	rc = 0;
out:
	if (subfd[0] >= 0)
		close(subfd[0]);
	if (subfd[1] >= 0)
		close(subfd[1]);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * Give every winner the content known already (from the catalog or an
 * earlier round); say whether the files left to read are few and small.
 */
static bool
bk_match(struct bk_mailbox *mb)
{
	uint64_t files = 0, bytes = 0;
	size_t i, j;

	for (i = 0; i < mb->nfolders; i++) {
		struct bk_folder *f = &mb->folders[i];

		for (j = 0; !f->gone && j < f->nentries; j++) {
			struct bk_entry *e = &f->entries[j];

			if (!e->winner)
				continue;
			if ((e->content = bk_content_find(mb->known, e)) !=
				NULL ||
			    (e->content = bk_content_find(mb->fresh, e)) !=
				NULL)
				continue;
			files++;
			bytes += e->size;
		}
	}
	return files <= BACKUP_INLINE_FILES && bytes <= BACKUP_INLINE_BYTES;
}

/* Read new content until no file vanishes under us, or give up. */
static int
bk_read_all(struct bk_mailbox *mb, struct mk_err *err)
{
	size_t missing, i;
	int round;

	for (round = 1;; round++) {
		bk_resolve(mb);
		mb->inline_jobs = bk_match(mb);
		missing = 0;
		for (i = 0; i < mb->nfolders; i++)
			if (bk_read_folder(mb, &mb->folders[i], &missing, err) <
			    0)
				return -1;
		if (missing == 0)
			return 0;
		if (round == BACKUP_ROUNDS)
			break;
		for (i = 0; i < mb->nfolders; i++)
			if (mb->folders[i].stale &&
			    bk_folder_list(mb, &mb->folders[i], err) < 0)
				return -1;
	}
	mk_warnings_add(&mb->stats->skipped,
	    "%zu message files kept vanishing while being read; they are "
	    "left for the next backup",
	    missing);
	return 0;
}

/* A version alive in the catalog: its content, and where it was. */
static void
bk_known_cb(const struct mk_catalog_version *v, void *arg)
{
	struct bk_mailbox *mb = arg;
	struct bk_content *c = bk_content_new(mb, v->base);

	c->size = v->size;
	c->opaque = v->opaque;
	c->nblobs = (uint32_t)v->nblobs;
	c->cap = v->nblobs;
	if (v->nblobs > 0) {
		c->blobs = mk_xreallocarray(NULL, v->nblobs, MK_PACK_ID_LEN);
		memcpy(c->blobs, v->blobs, v->nblobs * MK_PACK_ID_LEN);
	}
	c->version = v->id;
	c->message = v->message;
	c->dir = mk_xstrdup(v->dir);
	c->suffix = mk_xstrdup(v->suffix);
	c->cur = v->cur;
	c->mtime_ns = v->mtime_ns;
	mk_hmap_put(mb->known, mk_hmap_hash(c->base, strlen(c->base)), c);
}

static int
bk_message_cmp(const void *a, const void *b)
{
	return strcmp(((const struct mk_snapshot_message *)a)->base,
	    ((const struct mk_snapshot_message *)b)->base);
}

/* Store the chunks of a folder's message list; fill f's chunk ids. */
static int
bk_store_list(struct bk_mailbox *mb, const struct bk_folder *f,
    struct mk_snapshot_folder *sf, struct mk_err *err)
{
	struct mk_snapshot_message *msgs;
	struct mk_snapshot_chunks chunks;
	size_t i, n = 0;
	int rc = -1;

	memset(&chunks, 0, sizeof(chunks));
	msgs = mk_xcalloc(f->nentries > 0 ? f->nentries : 1, sizeof(*msgs));
	for (i = 0; i < f->nentries; i++) {
		const struct bk_entry *e = &f->entries[i];
		struct mk_snapshot_message *m;

		if (!e->winner || e->content == NULL)
			continue;
		m = &msgs[n++];
		m->base = e->base;
		m->suffix = e->name + e->base_len;
		m->cur = e->cur;
		m->file.present = true;
		m->file.opaque = e->content->opaque;
		m->file.mtime_ns = e->mtime_ns;
		m->file.size = e->content->size;
		m->file.nblobs = e->content->nblobs;
		m->file.blobs = e->content->blobs;
		sf->messages++;
		sf->bytes += e->content->size;
	}
	qsort(msgs, n, sizeof(*msgs), bk_message_cmp);
	if (mk_snapshot_messages_encode(msgs, n, &chunks, err) < 0)
		goto out;
	sf->chunks =
	    mk_xcalloc(chunks.count > 0 ? chunks.count : 1, MK_PACK_ID_LEN);
	for (i = 0; i < chunks.count; i++) {
		if (bk_blob(mb, MK_PACK_TYPE_META, chunks.chunks[i].data,
			chunks.chunks[i].len, sf->chunks[i], err) < 0)
			goto out;
		sf->nchunks++;
	}
	rc = 0;
out:
	mk_snapshot_chunks_free(&chunks);
	free(msgs);
	return rc;
}

static void
bk_snapshot_folder_free(struct mk_snapshot_folder *sf)
{
	free(sf->dir);
	free(sf->uidlist.blobs);
	free(sf->keywords.blobs);
	free(sf->maildirfolder.blobs);
	free(sf->chunks);
}

/*
 * Store the snapshot objects: uidlists, keywords, folder lists, the
 * subscriptions and the mailbox snapshot itself, whose id goes to
 * object_r.
 */
static int
bk_store_snapshot(
    struct bk_mailbox *mb, uint8_t object_r[MK_PACK_ID_LEN], struct mk_err *err)
{
	struct mk_snapshot_mailbox snap;
	uint8_t *data = NULL;
	size_t len = 0, i;
	int rc = -1;

	memset(&snap, 0, sizeof(snap));
	snap.address = (char *)mb->address;
	snap.folders = mk_xcalloc(mb->nfolders, sizeof(*snap.folders));
	if (bk_store_meta(mb, &mb->subscriptions, BACKUP_SUBSCRIPTIONS,
		&snap.subscriptions, err) < 0)
		goto out;
	for (i = 0; i < mb->nfolders; i++) {
		struct bk_folder *f = &mb->folders[i];
		struct mk_snapshot_folder *sf = &snap.folders[snap.nfolders];

		if (f->gone)
			continue;
		snap.nfolders++;
		sf->dir = mk_xstrdup(f->dir);
		if (bk_store_meta(mb, &f->uidlist, BACKUP_UIDLIST, &sf->uidlist,
			err) < 0 ||
		    bk_store_meta(mb, &f->keywords, BACKUP_KEYWORDS,
			&sf->keywords, err) < 0 ||
		    bk_store_meta(mb, &f->maildirfolder, BACKUP_MAILDIRFOLDER,
			&sf->maildirfolder, err) < 0 ||
		    bk_store_list(mb, f, sf, err) < 0)
			goto out;
		snap.messages += sf->messages;
		snap.bytes += sf->bytes;
	}
	if (mk_snapshot_mailbox_encode(&snap, &data, &len, err) < 0 ||
	    bk_blob(mb, MK_PACK_TYPE_META, data, len, object_r, err) < 0)
		goto out;
	mb->stats->folders = snap.nfolders;
	mb->stats->messages = snap.messages;
	mb->stats->bytes = snap.bytes;
	rc = 0;
out:
	free(data);
	for (i = 0; i < snap.nfolders; i++)
		bk_snapshot_folder_free(&snap.folders[i]);
	free(snap.folders);
	free(snap.subscriptions.blobs);
	return rc;
}

/*
 * Record the stamp of a small file this backup stored; one it reused
 * is kept as it is.  A file without a stamp worth keeping (absent,
 * changed just now, stored as several blobs) leaves its old stamp
 * unkept.
 */
static int
bk_stamp_keep(struct bk_mailbox *mb, const char *dir, const char *name,
    const struct bk_meta *m, struct mk_err *err)
{
	struct bk_known_stamp *ks = bk_stamp_find(mb, dir, name);
	struct mk_catalog_stamp s;

	if (m->reused) {
		if (ks != NULL)
			ks->kept = true;
		return 0;
	}
	if (!m->present || !m->stampable || (m->len > 0 && !m->has_blob))
		return 0;
	memset(&s, 0, sizeof(s));
	s.dir = dir;
	s.name = name;
	s.dev = (uint64_t)m->stamp.dev;
	s.ino = (uint64_t)m->stamp.ino;
	s.size = (uint64_t)m->stamp.size;
	s.mtime_ns = m->stamp.mtime_ns;
	s.ctime_ns = m->stamp.ctime_ns;
	s.has_blob = m->has_blob;
	memcpy(s.blob, m->blob, MK_PACK_ID_LEN);
	if (ks != NULL)
		ks->kept = true;
	return mk_catalog_stamp_put(mb->bk->cat, mb->address, &s, err);
}

/* Record the stamps of the snapshot's small files; drop the others. */
static int
bk_stamps_commit(struct bk_mailbox *mb, struct mk_err *err)
{
	size_t i;

	for (i = 0; i < mb->nfolders; i++) {
		const struct bk_folder *f = &mb->folders[i];

		if (f->gone)
			continue;
		if (bk_stamp_keep(
			mb, f->dir, BACKUP_UIDLIST, &f->uidlist, err) < 0 ||
		    bk_stamp_keep(
			mb, f->dir, BACKUP_KEYWORDS, &f->keywords, err) < 0 ||
		    bk_stamp_keep(mb, f->dir, BACKUP_MAILDIRFOLDER,
			&f->maildirfolder, err) < 0)
			return -1;
	}
	if (bk_stamp_keep(
		mb, "", BACKUP_SUBSCRIPTIONS, &mb->subscriptions, err) < 0)
		return -1;
	for (i = 0; i < mb->nkstamps; i++) {
		const struct bk_known_stamp *ks = mb->kstamps[i];

		if (!ks->kept &&
		    mk_catalog_stamp_drop(
			mb->bk->cat, mb->address, ks->dir, ks->name, err) < 0)
			return -1;
	}
	return 0;
}

/*
 * Record the snapshot in one transaction: the snapshot row, the
 * versions that ended, the new messages and versions, the stamps of
 * the small files.
 */
static int
bk_commit(struct bk_mailbox *mb, struct mk_err *err)
{
	struct mk_catalog *cat = mb->bk->cat;
	struct mk_catalog_snapshot s;
	struct mk_catalog_version v;
	struct bk_content *old;
	struct bk_key k;
	int64_t snap;
	size_t i, j;

	memset(&s, 0, sizeof(s));
	s.run = mb->bk->run;
	s.address = mb->address;
	s.time_ns = mb->stats->time_ns;
	s.messages = mb->stats->messages;
	s.bytes = mb->stats->bytes;
	memcpy(s.object, mb->object, MK_PACK_ID_LEN);
	if (mk_catalog_begin(cat, err) < 0)
		return -1;
	if (mk_catalog_snapshot_add(cat, &s, &snap, err) < 0)
		goto fail;
	for (i = 0; i < mb->nfolders; i++) {
		const struct bk_folder *f = &mb->folders[i];

		for (j = 0; !f->gone && j < f->nentries; j++) {
			const struct bk_entry *e = &f->entries[j];
			struct bk_content *c = e->content;

			if (!e->winner || c == NULL)
				continue;
			/* The version this folder had under the name. */
			memset(&k, 0, sizeof(k));
			k.base = e->base;
			k.dir = f->dir;
			k.size = c->size;
			old = mk_hmap_get(mb->known,
			    mk_hmap_hash(e->base, e->base_len),
			    backup_content_sized, &k);
			if (old != NULL) {
				old->claimed = true;
				if (strcmp(old->suffix,
					e->name + e->base_len) == 0 &&
				    old->cur == e->cur &&
				    old->mtime_ns == e->mtime_ns)
					continue;
				/* A flag change, a touch: the content
				 * stays, the version changes. */
				if (mk_catalog_version_vanish(
					cat, old->version, snap, err) < 0)
					goto fail;
				mb->stats->vanished++;
			}
			/* A move or a copy from another folder adds a
			 * version of the same message; what is no longer
			 * anywhere vanishes below. */
			memset(&v, 0, sizeof(v));
			v.message = c->message;
			v.dir = f->dir;
			v.base = c->base;
			v.suffix = e->name + e->base_len;
			v.cur = e->cur;
			v.mtime_ns = e->mtime_ns;
			v.size = c->size;
			v.opaque = c->opaque;
			v.blobs = (const uint8_t(*)[MK_PACK_ID_LEN])c->blobs;
			v.nblobs = c->nblobs;
			if (c->message == 0 &&
			    mk_catalog_message_add(cat, &v, &c->message, err) <
				0)
				goto fail;
			v.message = c->message;
			if (mk_catalog_version_add(cat, snap, &v, err) < 0)
				goto fail;
			mb->stats->new_versions++;
		}
	}
	for (i = 0; i < mb->ncontents; i++) {
		struct bk_content *c = mb->contents[i];

		if (c->version == 0 || c->claimed)
			continue;
		if (mk_catalog_version_vanish(cat, c->version, snap, err) < 0)
			goto fail;
		mb->stats->vanished++;
	}
	if (bk_stamps_commit(mb, err) < 0)
		goto fail;
	if (mk_catalog_commit(cat, err) < 0)
		goto fail;
	mb->stats->snapshot = snap;
	return 0;
fail:
	mk_catalog_rollback(cat);
	return -1;
}

static void
bk_mailbox_free(struct bk_mailbox *mb)
{
	size_t i;

	for (i = 0; i < mb->nfolders; i++) {
		bk_folder_reset(&mb->folders[i]);
		free(mb->folders[i].entries);
		free(mb->folders[i].dir);
	}
	free(mb->folders);
	for (i = 0; i < mb->ncontents; i++) {
		struct bk_content *c = mb->contents[i];

		free(c->base);
		free(c->blobs);
		free(c->dir);
		free(c->suffix);
		free(c);
	}
	free(mb->contents);
	for (i = 0; i < mb->nkstamps; i++) {
		free(mb->kstamps[i]->dir);
		free(mb->kstamps[i]->name);
		free(mb->kstamps[i]);
	}
	free(mb->kstamps);
	mk_hmap_free(&mb->stamps);
	bk_meta_free(&mb->subscriptions);
	mk_hmap_free(&mb->known);
	mk_hmap_free(&mb->fresh);
	free(mb->own_address);
	if (mb->mfd >= 0)
		close(mb->mfd);
}

/*
 * Read the calling thread's I/O priority and set the idle class, so
 * that the run's reads wait for Dovecot's.  Returns the old priority,
 * or -1 when it could not be set (not fatal: a run is only less polite).
 */
static int
bk_ioprio_idle(void)
{
	long old = syscall(SYS_ioprio_get, BACKUP_IOPRIO_WHO_PROCESS, 0);

	if (old < 0 ||
	    syscall(SYS_ioprio_set, BACKUP_IOPRIO_WHO_PROCESS, 0,
		BACKUP_IOPRIO_CLASS_IDLE << BACKUP_IOPRIO_CLASS_SHIFT) < 0)
		return -1;
	return (int)old;
}

static void
bk_ioprio_restore(int old)
{
	if (old >= 0)
		(void)syscall(
		    SYS_ioprio_set, BACKUP_IOPRIO_WHO_PROCESS, 0, old);
}

/* Whether a mailbox of this address waits for the open pack. */
static bool
bk_deferred_has(const struct mk_backup *bk, const char *address)
{
	size_t i;

	for (i = 0; i < bk->ndeferred; i++)
		if (strcmp(bk->deferred[i]->address, address) == 0)
			return true;
	return false;
}

/*
 * Commit a captured mailbox, or (sharing packs) queue it until the open
 * pack holding some of its blobs is stored.  Returns 1 when queued.
 */
static int
bk_finish(struct bk_mailbox *mb, struct mk_err *err)
{
	struct mk_backup *bk = mb->bk;

	if (!bk->share) {
		if (bk_flush(bk, err) < 0 || bk_commit(mb, err) < 0)
			return -1;
		return 0;
	}
	if (!bk->open_used)
		return bk_commit(mb, err);
	mk_xgrow(
	    &bk->deferred, &bk->dcap, bk->ndeferred + 1, sizeof(*bk->deferred));
	bk->deferred[bk->ndeferred++] = mb;
	bk->deferred_messages += mb->nentries;
	return 1;
}

static struct bk_mailbox *
bk_mailbox_new(struct mk_backup *bk, const char *address, char *dirbuf)
{
	struct bk_mailbox *mb = mk_xcalloc(1, sizeof(*mb));

	mb->bk = bk;
	mb->mfd = -1;
	mb->dirbuf = dirbuf;
	mb->own_address = mk_xstrdup(address);
	mb->address = mb->own_address;
	mb->stats = &mb->own_stats;
	mb->known = mk_hmap_new();
	mb->fresh = mk_hmap_new();
	mb->stamps = mk_hmap_new();
	mb->stats->time_ns = bk->time_ns != 0 ? bk->time_ns : backup_now_ns();
	return mb;
}

/* What the catalog has of the mailbox: stamps and versions alive. */
static int
bk_mailbox_known(struct bk_mailbox *mb, struct mk_err *err)
{
	struct mk_catalog *cat = mb->bk->cat;

	if (mk_catalog_stamps_get(cat, mb->address, bk_stamp_cb, mb, err) < 0 ||
	    mk_catalog_versions_at(
		cat, mb->address, MK_CATALOG_NOW, bk_known_cb, mb, err) < 0)
		return -1;
	return 0;
}

/*
 * The folders and their listings, after bk_mailbox_known().  Reads
 * files only and touches nothing of the session, so that another
 * thread can do it.
 */
static int
bk_mailbox_list(
    struct bk_mailbox *mb, int rootfd, const char *relpath, struct mk_err *err)
{
	if ((mb->mfd = mk_fs_open_dir_beneath(rootfd, relpath, err)) < 0 ||
	    bk_folders_find(mb, err) < 0 ||
	    bk_meta_read(mb, mb->mfd, ".", BACKUP_SUBSCRIPTIONS,
		&mb->subscriptions, err) < 0 ||
	    bk_list_all(mb, err) < 0)
		return -1;
	return 0;
}

static void
bk_mailbox_drop(struct bk_mailbox *mb)
{
	bk_mailbox_free(mb);
	free(mb);
}

static void *
bk_ahead_main(void *arg)
{
	struct mk_backup *bk = arg;
	struct mk_err err;

	(void)bk_ioprio_idle();
	bk->ahead.rc = bk_mailbox_list(
	    bk->ahead.mb, bk->ahead.rootfd, bk->ahead.relpath, &err);
	return NULL;
}

/* The mailbox listed ahead, once its thread is done; NULL if none. */
static struct bk_mailbox *
bk_ahead_join(struct mk_backup *bk, int *rc_r)
{
	struct bk_mailbox *mb = bk->ahead.mb;

	if (!bk->ahead.running)
		return NULL;
	pthread_join(bk->ahead.thread, NULL);
	bk->ahead.running = false;
	bk->ahead.mb = NULL;
	free(bk->ahead.relpath);
	bk->ahead.relpath = NULL;
	*rc_r = bk->ahead.rc;
	return mb;
}

/*
 * The listing made ahead, if it is address's and it went well; NULL
 * otherwise, and the caller lists the mailbox now (a failure again, with
 * its error).  A listing of another mailbox, or a stale one (the session
 * had the mailbox waiting for the open pack, so the catalog may have
 * changed under it), is dropped.
 */
static struct bk_mailbox *
bk_ahead_take(struct mk_backup *bk, const char *address, bool stale)
{
	struct bk_mailbox *mb;
	int rc;

	if ((mb = bk_ahead_join(bk, &rc)) == NULL)
		return NULL;
	if (rc < 0 || stale || strcmp(mb->address, address) != 0) {
		bk_mailbox_drop(mb);
		return NULL;
	}
	mb->dirbuf = bk->dirbuf;
	mb->stats->listed_ahead = true;
	return mb;
}

/*
 * Start listing the mailbox named by mk_backup_prefetch(), unless it is
 * current (its versions change with this backup) or waiting for the
 * open pack (its versions are not in the catalog yet).  What the catalog
 * has of it is read here, on the session's connection; the folders are
 * listed by a thread.  Without a thread the session goes on without.
 */
static void
bk_ahead_start(struct mk_backup *bk, const char *current)
{
	char *address = bk->ahead.next, *relpath = bk->ahead.next_relpath;
	struct mk_err err;
	int rc;

	bk->ahead.next = bk->ahead.next_relpath = NULL;
	if (address == NULL || bk->ahead.off || strcmp(address, current) == 0 ||
	    bk_deferred_has(bk, address))
		goto out;
	/* Made the first time: sessions of the daemon never list ahead. */
	if (bk->ahead.dirbuf == NULL)
		bk->ahead.dirbuf = mk_xmalloc(BACKUP_DIRBUF);
	bk->ahead.mb = bk_mailbox_new(bk, address, bk->ahead.dirbuf);
	if (bk_mailbox_known(bk->ahead.mb, &err) < 0) {
		/* Listed again at its turn, and failing then. */
		bk_mailbox_drop(bk->ahead.mb);
		bk->ahead.mb = NULL;
		goto out;
	}
	bk->ahead.rootfd = bk->ahead.next_rootfd;
	bk->ahead.relpath = relpath;
	relpath = NULL;
	if ((rc = pthread_create(&bk->ahead.thread, NULL, bk_ahead_main, bk)) !=
	    0) {
		mk_log_warn("backup", "no listing ahead: pthread_create: %s",
		    strerror(rc));
		bk->ahead.off = true;
		bk_mailbox_drop(bk->ahead.mb);
		bk->ahead.mb = NULL;
		free(bk->ahead.relpath);
		bk->ahead.relpath = NULL;
		goto out;
	}
	bk->ahead.running = true;
out:
	free(address);
	free(relpath);
}

void
mk_backup_prefetch(
    struct mk_backup *bk, int rootfd, const char *relpath, const char *address)
{
	free(bk->ahead.next);
	free(bk->ahead.next_relpath);
	bk->ahead.next = mk_xstrdup(address);
	bk->ahead.next_relpath = mk_xstrdup(relpath);
	bk->ahead.next_rootfd = rootfd;
}

int
mk_backup_mailbox(struct mk_backup *bk, int rootfd, const char *relpath,
    const char *address, struct mk_backup_stats *stats_r, struct mk_err *err)
{
	struct bk_mailbox *mb = NULL;
	int64_t start = backup_mono_ns();
	int ioprio = bk_ioprio_idle(), r = -1, rc = -1;
	struct mk_err derr;
	bool again = bk_deferred_has(bk, address);

	memset(stats_r, 0, sizeof(*stats_r));
	/* Backed up twice in a session: the first must be committed. */
	if (again && bk_flush(bk, err) < 0)
		goto out;
	mb = bk_ahead_take(bk, address, again);
	bk_ahead_start(bk, address);
	if (mb == NULL) {
		mb = bk_mailbox_new(bk, address, bk->dirbuf);
		if (bk_mailbox_known(mb, err) < 0 ||
		    bk_mailbox_list(mb, rootfd, relpath, err) < 0)
			goto fail;
	}
	bk->current = mb;
	bk->open_used = false;
	if (bk_read_all(mb, err) < 0 || bk_drain(mb, err) < 0 ||
	    bk_store_snapshot(mb, mb->object, err) < 0) {
		(void)bk_drain(mb, &derr);
		goto fail;
	}
	mb->stats->duration_ns = backup_mono_ns() - start;
	if ((r = bk_finish(mb, err)) < 0)
		goto fail;
	*stats_r = *mb->stats;
	rc = 0;
	if (r == 0 && bk->share && bk->done_cb != NULL)
		bk->done_cb(mb->address, mb->stats, NULL, bk->done_arg);
	if (r == 1 &&
	    (bk->ndeferred >= BACKUP_DEFER_MAILBOXES ||
		bk->deferred_messages >= BACKUP_DEFER_MESSAGES) &&
	    bk_flush(bk, &derr) < 0)
		mk_log_warn("backup", "%s", derr.msg);
	goto out;
fail:
	mk_err_prefix(err, "backup of %s", address);
out:
	bk->current = NULL;
	if (r != 1 && mb != NULL)
		bk_mailbox_drop(mb);
	bk_ioprio_restore(ioprio);
	return rc;
}

void
mk_backup_share_packs(struct mk_backup *bk, mk_backup_done_cb *cb, void *arg)
{
	bk->share = true;
	bk->done_cb = cb;
	bk->done_arg = arg;
}

int
mk_backup_flush(struct mk_backup *bk, struct mk_err *err)
{
	return bk_flush(bk, err);
}

int
mk_backup_new(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    struct mk_backup **bk_r, struct mk_err *err)
{
	struct mk_backup *bk;
	size_t cap;

	*bk_r = NULL;
	bk = mk_xcalloc(1, sizeof(*bk));
	bk->repo = repo;
	bk->cat = cat;
	bk->run = run;
	bk->pending = mk_hmap_new();
	if (mk_repo_chunker_new(repo, &bk->chunker, err) < 0 ||
	    mk_repo_pack_writer_new(repo, &bk->writer, err) < 0 ||
	    bk_pool_start(&bk->pool, repo, err) < 0) {
		mk_backup_free(&bk);
		return -1;
	}
	bk->chunk_max = mk_chunker_params(bk->chunker)->max;
	/* Room for a header's search, a body's threshold or a chunk. */
	cap = MK_BACKUP_HEADER_MAX > MK_CHUNKER_THRESHOLD
	    ? MK_BACKUP_HEADER_MAX
	    : MK_CHUNKER_THRESHOLD;
	if (bk->chunk_max > cap)
		cap = bk->chunk_max;
	bk->bufcap = cap + 1;
	bk->buf = mk_xmalloc(bk->bufcap);
	bk->dirbuf = mk_xmalloc(BACKUP_DIRBUF);
	*bk_r = bk;
	return 0;
}

void
mk_backup_set_read_cb(struct mk_backup *bk, mk_backup_read_cb *cb, void *arg)
{
	bk->read_cb = cb;
	bk->read_arg = arg;
}

void
mk_backup_set_time(struct mk_backup *bk, int64_t time_ns)
{
	bk->time_ns = time_ns;
}

void
mk_backup_free(struct mk_backup **bkp)
{
	struct mk_backup *bk = *bkp;
	struct bk_mailbox *mb;
	struct mk_err err;
	size_t i;
	int rc;

	if (bk == NULL)
		return;
	if ((mb = bk_ahead_join(bk, &rc)) != NULL)
		bk_mailbox_drop(mb);
	free(bk->ahead.dirbuf);
	free(bk->ahead.next);
	free(bk->ahead.next_relpath);
	/* Mailboxes still waiting are not committed: say so. */
	mk_err_set(&err, "not committed: the backup session ended first");
	for (i = 0; i < bk->ndeferred; i++)
		bk_deferred_done(bk, bk->deferred[i], &err);
	free(bk->deferred);
	bk_pool_stop(&bk->pool);
	mk_pack_compressor_free(&bk->comp);
	bk_pending_clear(bk);
	mk_hmap_free(&bk->pending);
	free(bk->pending_ids);
	mk_pack_writer_free(&bk->writer);
	mk_chunker_free(&bk->chunker);
	free(bk->buf);
	free(bk->dirbuf);
	free(bk);
	*bkp = NULL;
}

/* The snapshots of a run, collected for its run object. */
struct backup_entries {
	struct mk_snapshot_entry *v;
	size_t n;
	size_t cap;
};

static void
backup_entries_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct backup_entries *es = arg;
	struct mk_snapshot_entry *e;

	/* Backed up twice in one run: the later snapshot stands. */
	if (es->n > 0 && strcmp(es->v[es->n - 1].address, s->address) == 0) {
		e = &es->v[es->n - 1];
		free(e->address);
	} else {
		mk_xgrow(&es->v, &es->cap, es->n + 1, sizeof(*es->v));
		e = &es->v[es->n++];
	}
	e->address = mk_xstrdup(s->address);
	memcpy(e->snapshot, s->object, MK_PACK_ID_LEN);
	e->time_ns = s->time_ns;
	e->messages = s->messages;
	e->bytes = s->bytes;
}

int
mk_backup_store_meta(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_snapshot_chunks *chunks, struct mk_snapshot_loc *locs,
    bool reuse, uint64_t *written_r, struct mk_err *err)
{
	struct mk_pack_writer *writer = NULL;
	struct mk_pack *pack = NULL;
	size_t i, j, first = 0;
	int r = 0, rc = -1;

	if (mk_repo_pack_writer_new(repo, &writer, err) < 0)
		return -1;
	for (i = 0; i < chunks->count; i++) {
		struct mk_snapshot_loc *loc = &locs[i];

		memset(loc, 0, sizeof(*loc));
		if (mk_repo_blob_id(repo, chunks->chunks[i].data,
			chunks->chunks[i].len, loc->entry.id, err) < 0 ||
		    (reuse &&
			(r = mk_catalog_blob_reusable(cat, loc->entry.id,
			     loc->pack, &loc->entry, err)) < 0))
			goto out;
		if (r == 0 &&
		    mk_pack_writer_add(writer, MK_PACK_TYPE_META, loc->entry.id,
			chunks->chunks[i].data, chunks->chunks[i].len, NULL,
			&loc->entry, err) < 0)
			goto out;
		if (i + 1 < chunks->count && !mk_pack_writer_full(writer))
			continue;
		if (backup_pack_store(repo, cat, writer, &pack, err) < 0)
			goto out;
		/* The chunks added since the last pack are in this one. */
		for (j = first; pack != NULL && j <= i; j++)
			if (locs[j].pack[0] == '\0')
				memcpy(locs[j].pack, pack->id,
				    MK_PACK_NAME_LEN + 1);
		if (pack != NULL && written_r != NULL)
			*written_r += pack->len;
		mk_pack_free(&pack);
		first = i + 1;
	}
	rc = 0;
out:
	mk_pack_free(&pack);
	mk_pack_writer_free(&writer);
	return rc;
}

/*
 * Publish a run: its list of mailbox snapshots and its run object, then
 * mark it ended in the catalog.
 */
static int
backup_run_publish(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    const char *id, int64_t started_ns, struct mk_err *err)
{
	char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];
	struct mk_snapshot_chunks chunks;
	struct backup_entries es;
	struct mk_snapshot_run obj;
	uint8_t *data = NULL;
	size_t len = 0, i;
	int rc = -1;

	memset(&es, 0, sizeof(es));
	memset(&chunks, 0, sizeof(chunks));
	memset(&obj, 0, sizeof(obj));
	if (mk_snapshot_run_object(id, name, err) < 0 ||
	    mk_catalog_run_snapshots(cat, run, backup_entries_cb, &es, err) <
		0 ||
	    mk_snapshot_entries_encode(es.v, es.n, &chunks, err) < 0)
		goto out;
	mk_strlcpy(obj.id, id, sizeof(obj.id));
	obj.started_ns = started_ns;
	obj.ended_ns = backup_now_ns();
	if (gethostname(obj.host, sizeof(obj.host) - 1) < 0)
		obj.host[0] = '\0';
	obj.host[strcspn(obj.host, "/")] = '\0';
	obj.mailboxes = es.n;
	for (i = 0; i < es.n; i++) {
		obj.messages += es.v[i].messages;
		obj.bytes += es.v[i].bytes;
	}
	obj.chunks = mk_xcalloc(
	    chunks.count > 0 ? chunks.count : 1, sizeof(*obj.chunks));
	obj.nchunks = chunks.count;
	if (mk_backup_store_meta(
		repo, cat, &chunks, obj.chunks, true, NULL, err) < 0 ||
	    mk_snapshot_run_encode(&obj, &data, &len, err) < 0 ||
	    mk_storage_put(mk_repo_storage(repo), name, data, len, err) < 0 ||
	    mk_catalog_begin(cat, err) < 0)
		goto out;
	if (mk_catalog_run_end(cat, run, obj.ended_ns, err) < 0 ||
	    mk_catalog_commit(cat, err) < 0) {
		mk_catalog_rollback(cat);
		goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "run %s", id);
	free(data);
	free(obj.chunks);
	mk_snapshot_chunks_free(&chunks);
	mk_snapshot_entries_free(&es.v, es.n);
	return rc;
}

/* Runs open in the catalog. */
struct backup_open_runs {
	struct backup_open_run {
		int64_t run;
		char *name;
		int64_t started_ns;
	} * v;
	size_t n;
	size_t cap;
};

static void
backup_open_cb(int64_t run, const char *name, int64_t started_ns, void *arg)
{
	struct backup_open_runs *o = arg;

	mk_xgrow(&o->v, &o->cap, o->n + 1, sizeof(*o->v));
	o->v[o->n].run = run;
	o->v[o->n].name = mk_xstrdup(name);
	o->v[o->n++].started_ns = started_ns;
}

static void
backup_open_free(struct backup_open_runs *o)
{
	size_t i;

	for (i = 0; i < o->n; i++)
		free(o->v[i].name);
	free(o->v);
}

int
mk_backup_run_begin(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t *run_r, char id_r[MK_SNAPSHOT_RUN_ID_LEN + 1], struct mk_err *err)
{
	uint8_t raw[MK_SNAPSHOT_RUN_ID_LEN / 2];
	struct backup_open_runs open;
	struct mk_reindex_stats rs;
	size_t i;
	int rc = -1;

	memset(&open, 0, sizeof(open));
	/* Packs another host stored (or a killed run): reuse their blobs.
	 * Then blobs in packs that prune tombstoned or deleted are not
	 * reused. */
	if (mk_reindex_packs(repo, cat, &rs, err) < 0 ||
	    mk_prune_sync(repo, cat, err) < 0 ||
	    mk_catalog_runs_open(cat, backup_open_cb, &open, err) < 0)
		goto out;
	for (i = 0; i < open.n; i++) {
		if (backup_run_publish(repo, cat, open.v[i].run, open.v[i].name,
			open.v[i].started_ns, err) < 0)
			goto out;
		mk_log_warn("backup",
		    "run %s had not ended (interrupted): its snapshots are "
		    "published now",
		    open.v[i].name);
	}
	if (mk_crypto_random(raw, sizeof(raw), err) < 0)
		goto out;
	mk_crypto_hex(raw, sizeof(raw), id_r);
	if (mk_catalog_begin(cat, err) < 0)
		goto out;
	if (mk_catalog_run_add(cat, id_r, backup_now_ns(), run_r, err) < 0 ||
	    mk_catalog_commit(cat, err) < 0) {
		mk_catalog_rollback(cat);
		goto out;
	}
	rc = 0;
out:
	backup_open_free(&open);
	return rc;
}

int
mk_backup_run_end(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    struct mk_err *err)
{
	struct backup_open_runs open;
	struct mk_err cerr;
	size_t i;
	int rc = -1;

	memset(&open, 0, sizeof(open));
	if (mk_catalog_runs_open(cat, backup_open_cb, &open, err) < 0)
		goto out;
	for (i = 0; i < open.n && open.v[i].run != run; i++)
		;
	if (i == open.n) {
		mk_err_set(err, "run %lld is not open", (long long)run);
		goto out;
	}
	if (backup_run_publish(
		repo, cat, run, open.v[i].name, open.v[i].started_ns, err) < 0)
		goto out;
	/* A WAL that is not truncated only costs disk space for now. */
	if (mk_catalog_checkpoint(cat, &cerr) < 0)
		mk_log_warn("backup", "%s", cerr.msg);
	rc = 0;
out:
	backup_open_free(&open);
	return rc;
}

/* Run object names, collected from a listing. */
struct backup_names {
	char **v;
	size_t n;
	size_t cap;
};

static int
backup_names_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	struct backup_names *names = arg;

	if (strlen(name) != MK_SNAPSHOT_RUN_OBJECT_LEN ||
	    !mk_str_has_prefix(name, "snapshots/") ||
	    strspn(name + strlen("snapshots/"), "0123456789abcdef") !=
		MK_SNAPSHOT_RUN_ID_LEN)
		return 0;
	mk_xgrow(&names->v, &names->cap, names->n + 1, sizeof(*names->v));
	names->v[names->n++] = mk_xstrdup(name);
	return 0;
}

static int
backup_run_cmp(const void *a, const void *b)
{
	const struct mk_snapshot_run *x = *(struct mk_snapshot_run *const *)a;
	const struct mk_snapshot_run *y = *(struct mk_snapshot_run *const *)b;

	if (x->started_ns != y->started_ns)
		return x->started_ns < y->started_ns ? -1 : 1;
	return strcmp(x->id, y->id);
}

/* Get and decode one run object. */
static int
backup_run_get(struct mk_repo *repo, const char *name,
    struct mk_snapshot_run **run_r, struct mk_err *err)
{
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (mk_storage_get(mk_repo_storage(repo), name, &data, &len, err) < 0)
		return -1;
	rc = mk_snapshot_run_decode(data, len, run_r, err);
	free(data);
	if (rc < 0)
		mk_err_prefix(err, "%s", name);
	return rc;
}

int
mk_backup_runs(
    struct mk_repo *repo, mk_backup_run_cb *cb, void *arg, struct mk_err *err)
{
	struct mk_snapshot_run **runs = NULL;
	struct backup_names names;
	size_t i, n = 0;
	int rc = -1;

	memset(&names, 0, sizeof(names));
	if (mk_storage_list(mk_repo_storage(repo), "snapshots/",
		backup_names_cb, &names, err) < 0)
		goto out;
	runs = mk_xcalloc(names.n > 0 ? names.n : 1, sizeof(*runs));
	for (i = 0; i < names.n; i++) {
		struct mk_err rerr;

		if (backup_run_get(repo, names.v[i], &runs[n], &rerr) < 0) {
			mk_log_warn("backup", "%s", rerr.msg);
			continue;
		}
		n++;
	}
	qsort(runs, n, sizeof(*runs), backup_run_cmp);
	for (i = 0; i < n; i++)
		cb(runs[i], arg);
	rc = 0;
out:
	for (i = 0; i < n; i++)
		mk_snapshot_run_free(&runs[i]);
	free(runs);
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	return rc;
}

int
mk_backup_run_read(struct mk_repo *repo, const char *id,
    struct mk_snapshot_run **run_r, struct mk_snapshot_entry **entries_r,
    size_t *count_r, struct mk_err *err)
{
	char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];
	struct mk_snapshot_entry *all = NULL, *some = NULL;
	struct mk_snapshot_run *run = NULL;
	size_t n = 0, cap = 0, m = 0, i, j;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = -1;

	*run_r = NULL;
	*entries_r = NULL;
	*count_r = 0;
	if (mk_snapshot_run_object(id, name, err) < 0 ||
	    backup_run_get(repo, name, &run, err) < 0)
		return -1;
	for (i = 0; i < run->nchunks; i++) {
		const struct mk_snapshot_loc *loc = &run->chunks[i];

		if (loc->entry.type != MK_PACK_TYPE_META) {
			mk_err_set(
			    err, "%s: chunk %zu is not metadata", name, i);
			goto out;
		}
		if (mk_repo_read_blob(repo, loc->pack, &loc->entry, NULL, &data,
			&len, err) < 0 ||
		    mk_snapshot_entries_decode(data, len, &some, &m, err) < 0) {
			mk_err_prefix(err, "%s", name);
			goto out;
		}
		free(data);
		data = NULL;
		mk_xgrow(&all, &cap, n + m, sizeof(*all));
		for (j = 0; j < m; j++)
			all[n++] = some[j];
		free(some);
		some = NULL;
	}
	*run_r = run;
	*entries_r = all;
	*count_r = n;
	run = NULL;
	all = NULL;
	rc = 0;
out:
	free(data);
	mk_snapshot_entries_free(&all, n);
	mk_snapshot_run_free(&run);
	return rc;
}
