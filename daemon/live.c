#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"

#include "enforce.h"
#include "live.h"
#include "pool.h"
#include "watch.h"
#include "wdtab.h"
#include "worker.h"

/* What a watch descriptor stands for. */
enum live_wd_kind {
	WD_STORE, /* the store root or a directory above a Maildir */
	WD_ROOT, /* a Maildir: folders come and go here */
	WD_DIR, /* a folder still missing new/ or cur/ */
	WD_NEW,
	WD_CUR,
};

/*
 * What a watch descriptor stands for, decoded from the wd table: the
 * table keeps the folder (WD_DIR, WD_NEW, WD_CUR), the mailbox (WD_ROOT)
 * or live_store_mark (WD_STORE) with the kind, 8 bytes a watch.
 */
struct live_wd {
	int wd;
	enum live_wd_kind kind;
	struct mk_live_mailbox *mb; /* NULL for WD_STORE */
	struct mk_live_folder *f; /* WD_DIR, WD_NEW, WD_CUR */
};

static const uint64_t live_store_mark;

/* A folder name or directory shared by every folder that has it. */
struct live_str {
	size_t refs;
	char s[];
};

/* A name without ,S= or ,W=, with the sizes it was counted with. */
struct live_sized {
	const struct mk_live_folder *f; /* the folder it is in */
	char *name;
	bool in_cur;
	uint64_t size;
	uint64_t vsize;
	uint64_t gen; /* matches the vsize job in flight */
	bool skipped; /* not a regular file: counted as nothing */
};

/* A folder moved away from its name, deleted unless it reappears. */
struct live_detached {
	char *address;
	uint64_t ino;
};

struct mk_live {
	struct mk_daemon *d;
	struct mk_hmap *mailboxes; /* hash(address) -> mailbox */
	struct mk_wdtab *wds; /* wd -> what it watches */
	struct mk_hmap *strings; /* hash -> struct live_str */
	char **queue; /* addresses waiting for a scan */
	bool *queue_audit;
	size_t qhead, qlen, qcap;
	size_t scanning; /* scan jobs in flight */
	uint64_t unknown_events; /* events for wds not known yet */
	uint64_t gen;
	struct live_detached *detached;
	size_t ndetached, detcap;
	struct event *kick; /* start queued scans */
	struct event *settle; /* resolve detached folders */
	struct event *store_timer; /* a store refresh, debounced */
	struct event *persist_timer;
	struct event *audit_timer;
	struct event *poll_timer;
	bool store_listing; /* a store job is in flight */
	bool store_again; /* and another is wanted after it */
	size_t audit_left; /* audit scans of this pass */
	uint64_t audit_drift_bytes, audit_drift_mailboxes;
	bool persisting;
};

#define LIVE_MASK_SUB                                                          \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |                 \
	    IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_ONLYDIR |      \
	    IN_EXCL_UNLINK)
#define LIVE_MASK_DIR                                                          \
	(IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |                 \
	    IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_ONLYDIR |      \
	    IN_EXCL_UNLINK)

/* How long folder renames and store changes settle before acting. */
static const struct timeval live_settle_tv = { 0, 100000 };
static const struct timeval live_store_tv = { 0, 200000 };
static const struct timeval live_persist_tv = { 30, 0 };

static void live_queue_scan(
    struct mk_live *live, struct mk_live_mailbox *mb, bool audit);

/* Mailboxes, folders and sized names */

static bool
live_mailbox_match(const void *value, const void *ctx)
{
	return strcmp(((const struct mk_live_mailbox *)value)->address, ctx) ==
	    0;
}

static uint64_t
live_key(const char *s)
{
	return mk_hmap_hash(s, strlen(s));
}

static struct mk_live_mailbox *
live_mailbox(const struct mk_live *live, const char *address)
{
	return mk_hmap_get(
	    live->mailboxes, live_key(address), live_mailbox_match, address);
}

struct live_sized_key {
	const struct mk_live_folder *f;
	const char *name;
	bool in_cur;
};

/* Sized names are kept per mailbox, keyed by folder and name. */
static uint64_t
live_sized_key(const struct mk_live_folder *f, const char *name)
{
	return live_key(name) + (uint64_t)(uintptr_t)f;
}

static bool
live_sized_match(const void *value, const void *ctx)
{
	const struct live_sized *s = value;
	const struct live_sized_key *k = ctx;

	return s->f == k->f && s->in_cur == k->in_cur &&
	    strcmp(s->name, k->name) == 0;
}

static struct live_sized *
live_sized_get(struct mk_live_folder *f, const char *name, bool in_cur)
{
	struct live_sized_key k = { f, name, in_cur };

	if (f->mb->sized == NULL)
		return NULL;
	return mk_hmap_get(
	    f->mb->sized, live_sized_key(f, name), live_sized_match, &k);
}

static void
live_sized_remove(struct mk_live_folder *f, struct live_sized *s)
{
	mk_hmap_remove(f->mb->sized, live_sized_key(f, s->name), s);
	free(s->name);
	free(s);
	if (mk_hmap_count(f->mb->sized) == 0)
		mk_hmap_free(&f->mb->sized);
}

static struct live_sized *
live_sized_add(struct mk_live_folder *f, const char *name, bool in_cur,
    uint64_t size, uint64_t vsize)
{
	struct live_sized *s = mk_xcalloc(1, sizeof(*s));

	if (f->mb->sized == NULL)
		f->mb->sized = mk_hmap_new();
	s->f = f;
	s->name = mk_xstrdup(name);
	s->in_cur = in_cur;
	s->size = size;
	s->vsize = vsize;
	mk_hmap_put(f->mb->sized, live_sized_key(f, name), s);
	return s;
}

/* How many sized names folder f holds. */
static size_t
live_sized_count(const struct mk_live_folder *f)
{
	const struct live_sized *s;
	size_t pos = 0, n = 0;

	if (f->mb->sized == NULL)
		return 0;
	while ((s = mk_hmap_next(f->mb->sized, &pos)) != NULL)
		n += s->f == f;
	return n;
}

/* Forget the sized names of folder f, or of every folder of mb (NULL). */
static void
live_sized_drop(struct mk_live_mailbox *mb, const struct mk_live_folder *f)
{
	struct live_sized *s, **gone;
	size_t pos = 0, n = 0, i;

	if (mb->sized == NULL)
		return;
	gone = mk_xcalloc(mk_hmap_count(mb->sized), sizeof(*gone));
	while ((s = mk_hmap_next(mb->sized, &pos)) != NULL)
		if (f == NULL || s->f == f)
			gone[n++] = s;
	for (i = 0; i < n; i++) {
		if (f != NULL)
			mk_hmap_remove(mb->sized,
			    live_sized_key(f, gone[i]->name), gone[i]);
		free(gone[i]->name);
		free(gone[i]);
	}
	free(gone);
	if (f == NULL || mk_hmap_count(mb->sized) == 0)
		mk_hmap_free(&mb->sized);
}

static bool
live_wd_get(const struct mk_live *live, int wd, struct live_wd *w)
{
	unsigned kind;
	void *ptr;

	if (!mk_wdtab_get(live->wds, wd, &ptr, &kind))
		return false;
	w->wd = wd;
	w->kind = (enum live_wd_kind)kind;
	w->f = NULL;
	w->mb = NULL;
	if (kind == WD_ROOT)
		w->mb = ptr;
	else if (kind != WD_STORE) {
		w->f = ptr;
		w->mb = w->f->mb;
	}
	return true;
}

static bool
live_wd_known(const struct mk_live *live, int wd)
{
	struct live_wd w;

	return live_wd_get(live, wd, &w);
}

static void
live_forget_wd(struct mk_live *live, int wd, bool rm)
{
	if (wd < 0)
		return;
	mk_wdtab_remove(live->wds, wd);
	if (rm)
		mk_watch_rm(live->d->watch, wd);
}

static void
live_set_wd(struct mk_live *live, int wd, enum live_wd_kind kind,
    struct mk_live_mailbox *mb, struct mk_live_folder *f)
{
	void *ptr = f != NULL ? (void *)f
	    : mb != NULL      ? (void *)mb
			      : (void *)&live_store_mark;

	if (wd < 0)
		return;
	mk_wdtab_put(live->wds, wd, ptr, kind);
}

/* A folder's IMAP name and its directory, as live_intern stores them. */
struct live_pair {
	const char *name;
	const char *dir;
};

static uint64_t
live_pair_key(const struct live_pair *p)
{
	return live_key(p->name) * 31 + live_key(p->dir);
}

static bool
live_str_match(const void *value, const void *ctx)
{
	const char *s = ((const struct live_str *)value)->s;
	const struct live_pair *p = ctx;

	return strcmp(s, p->name) == 0 &&
	    strcmp(s + strlen(s) + 1, p->dir) == 0;
}

/*
 * The shared copy of a folder's IMAP name followed by its directory
 * ("INBOX\0\0", "Archive/2024\0.Archive.2024\0"): one pointer per folder
 * holds both.  Give it back with live_unintern.
 */
static const char *
live_intern(struct mk_live *live, const char *name, const char *dir)
{
	struct live_pair p = { name, dir };
	uint64_t h = live_pair_key(&p);
	struct live_str *str =
	    mk_hmap_get(live->strings, h, live_str_match, &p);

	if (str == NULL) {
		size_t nlen = strlen(name) + 1, dlen = strlen(dir) + 1;

		str = mk_xmalloc(sizeof(*str) + nlen + dlen);
		str->refs = 0;
		memcpy(str->s, name, nlen);
		memcpy(str->s + nlen, dir, dlen);
		mk_hmap_put(live->strings, h, str);
	}
	str->refs++;
	return str->s;
}

static void
live_unintern(struct mk_live *live, const char *name)
{
	struct live_pair p = { name, NULL };
	struct live_str *str;

	if (name == NULL)
		return;
	str = (struct live_str *)(void *)((char *)(uintptr_t)name -
	    offsetof(struct live_str, s));
	if (--str->refs == 0) {
		p.dir = name + strlen(name) + 1;
		mk_hmap_remove(live->strings, live_pair_key(&p), str);
		free(str);
	}
}

/* The folder's directory in its Maildir: "" for INBOX, ".Archive.2024". */
static const char *
live_folder_dir(const struct mk_live_folder *f)
{
	return f->name + strlen(f->name) + 1;
}

/* Free what f holds; its sized names are the caller's to drop. */
static void
live_folder_free(struct mk_live *live, struct mk_live_folder *f)
{
	live_unintern(live, f->name);
	/* f itself lives in its mailbox's folder block. */
}

static void
live_folder_init(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, const struct mk_folder_usage *fu)
{
	f->mb = mb;
	f->name = live_intern(live, fu->name, fu->dir);
	f->ino = fu->ino;
	f->new_mtime_ns = fu->new_mtime_ns;
	f->cur_mtime_ns = fu->cur_mtime_ns;
	f->usage = fu->usage;
	f->wd_new = f->wd_cur = f->wd_dir = -1;
}

/* Drop every folder of mb; rm says whether to remove the watches too. */
static void
live_folders_clear(struct mk_live *live, struct mk_live_mailbox *mb, bool rm)
{
	size_t i;

	live_sized_drop(mb, NULL);
	for (i = 0; i < mb->nfolders; i++) {
		struct mk_live_folder *f = mb->folders[i];

		live_forget_wd(live, f->wd_new, rm);
		live_forget_wd(live, f->wd_cur, rm);
		live_forget_wd(live, f->wd_dir, rm);
		live_folder_free(live, f);
	}
	free(mb->folders);
	mb->folders = NULL;
	mb->nfolders = 0;
}

static void
live_folder_delete(
    struct mk_live *live, struct mk_live_mailbox *mb, struct mk_live_folder *f)
{
	size_t i;

	for (i = 0; i < mb->nfolders && mb->folders[i] != f; i++)
		;
	if (i == mb->nfolders)
		return;
	mk_log_debug("live", "%s: folder %s deleted", mb->address, f->name);
	mk_usage_sub(&mb->total, &f->usage);
	mb->unsaved = true;
	live_forget_wd(live, f->wd_new, true);
	live_forget_wd(live, f->wd_cur, true);
	live_forget_wd(live, f->wd_dir, true);
	live_sized_drop(mb, f);
	live_folder_free(live, f);
	memmove(&mb->folders[i], &mb->folders[i + 1],
	    (mb->nfolders - i - 1) * sizeof(*mb->folders));
	mb->nfolders--;
}

/* Change mb's path (NULL before freeing mb). */
static void
live_relpath_set(struct mk_live_mailbox *mb, const char *relpath)
{
	if (mb->relpath != mb->address + strlen(mb->address) + 1)
		free(mb->relpath);
	mb->relpath = relpath != NULL ? mk_xstrdup(relpath) : NULL;
}

static struct mk_live_mailbox *
live_mailbox_add(struct mk_live *live, const char *address, const char *relpath)
{
	size_t alen = strlen(address) + 1, rlen = strlen(relpath) + 1;
	struct mk_live_mailbox *mb = mk_xcalloc(1, sizeof(*mb) + alen + rlen);

	/* The address is never changed: it lives after the mailbox, and so
	 * does the path until it changes. */
	mb->address = memcpy((char *)(mb + 1), address, alen);
	mb->relpath = memcpy(mb->address + alen, relpath, rlen);
	mb->wd_root = -1;
	mb->stale = true;
	mk_hmap_put(live->mailboxes, live_key(address), mb);
	return mb;
}

static void
live_mailbox_free(struct mk_live *live, struct mk_live_mailbox *mb, bool rm)
{
	live_folders_clear(live, mb, rm);
	live_forget_wd(live, mb->wd_root, rm);
	mk_mailbox_usage_free(&mb->prev);
	live_relpath_set(mb, NULL);
	free(mb);
}

static void
live_mailbox_remove(struct mk_live *live, struct mk_live_mailbox *mb)
{
	mk_log_info("live", "%s: mailbox left the store", mb->address);
	mk_hmap_remove(live->mailboxes, live_key(mb->address), mb);
	live_mailbox_free(live, mb, true);
}

/* Set mb's folders from a scan or the catalog. */
static void
live_folders_set(struct mk_live *live, struct mk_live_mailbox *mb,
    const struct mk_mailbox_usage *mu)
{
	struct mk_live_folder *block;
	size_t i, n = mu->nfolders;

	/* One allocation: the pointers, then the folders themselves. */
	mb->folders =
	    mk_xcalloc(1, n * (sizeof(*mb->folders) + sizeof(*block)));
	block = (struct mk_live_folder *)(void *)(mb->folders + n);
	for (i = 0; i < n; i++) {
		mb->folders[i] = &block[i];
		live_folder_init(live, mb, &block[i], &mu->folders[i]);
	}
	mb->nfolders = (uint32_t)n;
	mb->total = mu->total;
}

static struct mk_live_folder *
live_folder_by_dir(struct mk_live_mailbox *mb, const char *dir)
{
	size_t i;

	for (i = 0; i < mb->nfolders; i++)
		if (strcmp(live_folder_dir(mb->folders[i]), dir) == 0)
			return mb->folders[i];
	return NULL;
}

static struct mk_live_folder *
live_folder_by_ino(struct mk_live_mailbox *mb, uint64_t ino)
{
	size_t i;

	for (i = 0; i < mb->nfolders; i++)
		if (mb->folders[i]->ino == ino)
			return mb->folders[i];
	return NULL;
}

/* Scans */

struct live_scan_wd {
	char *dir;
	int wd_new, wd_cur, wd_dir;
};

struct live_scan_sized {
	char *dir;
	bool in_cur;
	char *name;
	uint64_t size, vsize;
};

struct live_scan_job {
	struct mk_job job;
	struct mk_live *live;
	char *address;
	char *relpath;
	char sep;
	int rootfd;
	int ifd;
	bool audit;
	uint64_t unknown_at_submit;
	struct mk_mailbox_usage *prev;
	int64_t prev_ns;
	/* results */
	int64_t started_ns;
	int rc;
	struct mk_err err;
	struct mk_mailbox_usage *mu;
	int wd_root;
	bool polled;
	struct live_scan_wd *wds;
	size_t nwds, wdcap;
	struct live_scan_sized *sized;
	size_t nsized, sizedcap;
};

/* Add a watch from a worker; ENOSPC means the limit of watches is hit. */
static int
live_add_watch(
    struct live_scan_job *j, int dirfd, const char *sub, uint32_t mask)
{
	char path[64];
	int wd;

	/* "/." so that IN_DONT_FOLLOW applies to the directory, not to the
	 * /proc link. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd,
	    sub[0] != '\0' ? sub : ".");
	wd = inotify_add_watch(j->ifd, path, mask);
	if (wd < 0 && (errno == ENOSPC || errno == ENOMEM))
		j->polled = true;
	return wd;
}

static void
live_scan_folder_cb(int folderfd, const char *dir, void *arg)
{
	struct live_scan_job *j = arg;
	struct live_scan_wd *w;

	mk_xgrow(&j->wds, &j->wdcap, j->nwds + 1, sizeof(*j->wds));
	w = &j->wds[j->nwds++];
	w->dir = mk_xstrdup(dir);
	w->wd_dir = -1;
	if (dir[0] == '\0')
		j->wd_root = live_add_watch(j, folderfd, "", LIVE_MASK_DIR);
	w->wd_new = live_add_watch(j, folderfd, "new", LIVE_MASK_SUB);
	w->wd_cur = live_add_watch(j, folderfd, "cur", LIVE_MASK_SUB);
	/*
	 * A folder just made may not have new/ and cur/ yet: watch the
	 * folder for them, then try once more, so that one made between
	 * the first try and the folder's watch is not missed.
	 */
	if (dir[0] != '\0' && (w->wd_new < 0 || w->wd_cur < 0)) {
		w->wd_dir = live_add_watch(j, folderfd, "", LIVE_MASK_DIR);
		if (w->wd_new < 0)
			w->wd_new =
			    live_add_watch(j, folderfd, "new", LIVE_MASK_SUB);
		if (w->wd_cur < 0)
			w->wd_cur =
			    live_add_watch(j, folderfd, "cur", LIVE_MASK_SUB);
	}
}

static void
live_scan_sized_cb(const char *dir, bool in_cur, const char *name,
    uint64_t size, uint64_t vsize, void *arg)
{
	struct live_scan_job *j = arg;
	struct live_scan_sized *s;

	mk_xgrow(&j->sized, &j->sizedcap, j->nsized + 1, sizeof(*j->sized));
	s = &j->sized[j->nsized++];
	s->dir = mk_xstrdup(dir);
	s->in_cur = in_cur;
	s->name = mk_xstrdup(name);
	s->size = size;
	s->vsize = vsize;
}

static void
live_scan_run(struct mk_job *job, void *ctx)
{
	struct live_scan_job *j = (struct live_scan_job *)job;
	struct mk_scan_hooks hooks = { live_scan_folder_cb, live_scan_sized_cb,
		j->prev, j->prev_ns, j };

	(void)ctx;
	j->started_ns = mk_daemon_now_ns();
	j->rc = mk_scan_mailbox(
	    j->rootfd, j->relpath, j->address, j->sep, &hooks, &j->mu, &j->err);
}

static void
live_scan_job_free(struct live_scan_job *j)
{
	size_t i;

	for (i = 0; i < j->nwds; i++)
		free(j->wds[i].dir);
	for (i = 0; i < j->nsized; i++) {
		free(j->sized[i].dir);
		free(j->sized[i].name);
	}
	free(j->wds);
	free(j->sized);
	mk_mailbox_usage_free(&j->mu);
	mk_mailbox_usage_free(&j->prev);
	free(j->address);
	free(j->relpath);
	free(j);
}

/* Watches a scan set for a mailbox that is gone meanwhile. */
static void
live_scan_drop_watches(struct mk_live *live, struct live_scan_job *j)
{
	size_t i;

	if (j->wd_root >= 0 && !live_wd_known(live, j->wd_root))
		mk_watch_rm(live->d->watch, j->wd_root);
	for (i = 0; i < j->nwds; i++) {
		int wds[3] = { j->wds[i].wd_new, j->wds[i].wd_cur,
			j->wds[i].wd_dir };
		int k;

		for (k = 0; k < 3; k++)
			if (wds[k] >= 0 && !live_wd_known(live, wds[k]))
				mk_watch_rm(live->d->watch, wds[k]);
	}
}

/* Put a finished scan in place of the mailbox's usage. */
static void
live_scan_apply(
    struct mk_live *live, struct mk_live_mailbox *mb, struct live_scan_job *j)
{
	struct mk_usage before = mb->total;
	size_t i;

	/* Watches the old folders had and the new ones do not keep. */
	for (i = 0; i < mb->nfolders; i++) {
		struct mk_live_folder *f = mb->folders[i];
		int wds[3] = { f->wd_new, f->wd_cur, f->wd_dir };
		size_t k, n;

		for (k = 0; k < 3; k++) {
			bool kept = false;

			for (n = 0; n < j->nwds && !kept; n++)
				kept = wds[k] >= 0 &&
				    (wds[k] == j->wds[n].wd_new ||
					wds[k] == j->wds[n].wd_cur ||
					wds[k] == j->wds[n].wd_dir);
			if (wds[k] >= 0 && !kept && wds[k] != j->wd_root)
				mk_watch_rm(live->d->watch, wds[k]);
		}
	}
	live_folders_clear(live, mb, false);
	live_folders_set(live, mb, j->mu);
	if (mb->wd_root >= 0 && mb->wd_root != j->wd_root)
		live_forget_wd(live, mb->wd_root, true);
	mb->wd_root = j->wd_root;
	live_set_wd(live, mb->wd_root, WD_ROOT, mb, NULL);
	for (i = 0; i < j->nwds; i++) {
		struct mk_live_folder *f =
		    live_folder_by_dir(mb, j->wds[i].dir);

		if (f == NULL)
			continue;
		f->wd_new = j->wds[i].wd_new;
		f->wd_cur = j->wds[i].wd_cur;
		f->wd_dir = j->wds[i].wd_dir;
		live_set_wd(live, f->wd_new, WD_NEW, mb, f);
		live_set_wd(live, f->wd_cur, WD_CUR, mb, f);
		live_set_wd(live, f->wd_dir, WD_DIR, mb, f);
	}
	for (i = 0; i < j->nsized; i++) {
		struct mk_live_folder *f =
		    live_folder_by_dir(mb, j->sized[i].dir);

		if (f != NULL)
			live_sized_add(f, j->sized[i].name, j->sized[i].in_cur,
			    j->sized[i].size, j->sized[i].vsize);
	}
	mb->scanned_ns = j->started_ns;
	mb->polled = j->polled;
	mb->unsaved = true;
	if (j->audit && !mb->dirty && mb->prev == NULL && !mb->from_catalog) {
		uint64_t diff = before.bytes > mb->total.bytes
		    ? before.bytes - mb->total.bytes
		    : mb->total.bytes - before.bytes;

		live->audit_drift_bytes += diff;
		if (diff > 0 || before.messages != mb->total.messages) {
			live->audit_drift_mailboxes++;
			mk_log_warn("live",
			    "%s: audit found %llu bytes of drift", mb->address,
			    (unsigned long long)diff);
		}
	}
	mk_mailbox_usage_free(&mb->prev);
	mb->from_catalog = false;
}

static void
live_audit_count(struct mk_live *live, struct live_scan_job *j)
{
	if (!j->audit || live->audit_left == 0)
		return;
	if (--live->audit_left > 0)
		return;
	live->d->stats.audits++;
	live->d->stats.audit_drift_bytes = live->audit_drift_bytes;
	live->d->stats.audit_drift_mailboxes = live->audit_drift_mailboxes;
	mk_log_info("live", "audit done: %llu mailboxes drifted by %llu bytes",
	    (unsigned long long)live->audit_drift_mailboxes,
	    (unsigned long long)live->audit_drift_bytes);
}

/* The first count of every mailbox is done: say so, once. */
static void
live_check_ready(struct mk_live *live)
{
	if (live->d->ready || live->qlen > 0 || live->scanning > 0 ||
	    live->store_listing || evtimer_pending(live->store_timer, NULL))
		return;
	live->d->ready = true;
	/* The startup scans' jobs and the catalog's figures are freed
	 * by now: give their pages back instead of keeping them in the
	 * heap for good. */
	malloc_trim(0);
	mk_log_info("live", "usage of %zu mailboxes is current",
	    mk_hmap_count(live->mailboxes));
	mk_daemon_notify_status(live->d);
}

static void
live_scan_done(struct mk_job *job)
{
	struct live_scan_job *j = (struct live_scan_job *)job;
	struct mk_live *live = j->live;
	struct mk_live_mailbox *mb;

	live->scanning--;
	/* Events that came in while listing mark the mailbox dirty. */
	mk_watch_drain(live->d->watch);
	mb = live_mailbox(live, j->address);
	live_audit_count(live, j);
	if (mb == NULL || live->d->stopping) {
		live_scan_drop_watches(live, j);
		goto out;
	}
	mb->scanning = false;
	if (j->rc < 0) {
		live->d->stats.scan_errors++;
		live_scan_drop_watches(live, j);
		if (j->err.sys_errno == ENOENT) {
			mk_log_info("live", "%s: Maildir is gone", mb->address);
			mk_live_refresh_store(live);
		} else
			mk_log_error("live", "%s", j->err.msg);
		goto out;
	}
	live->d->stats.scans++;
	if (live->unknown_events != j->unknown_at_submit)
		mb->dirty = true;
	live_scan_apply(live, mb, j);
	if (j->mu->malformed.count > 0)
		mk_log_warn("live", "%s: %llu names not understood, first: %s",
		    mb->address, j->mu->malformed.count,
		    j->mu->malformed.first);
	if (j->mu->skipped.count > 0)
		mk_log_warn("live", "%s: %llu entries skipped, first: %s",
		    mb->address, j->mu->skipped.count, j->mu->skipped.first);
	if (mb->polled)
		mk_log_warn("live",
		    "%s: watch limit reached, this mailbox is polled every "
		    "%llu s",
		    mb->address,
		    (unsigned long long)live->d->conf->poll_interval);
	mb->stale = mb->dirty;
	/* Counted: limits, maildirsize and warnings look at it now. */
	if (live->d->enforce != NULL)
		mk_enforce_changed(live->d->enforce, mb, false);
	if (mb->dirty) {
		mb->dirty = false;
		live->d->stats.rescans++;
		live_queue_scan(live, mb, false);
	}
out:
	live_scan_job_free(j);
	live_check_ready(live);
	event_active(live->kick, EV_TIMEOUT, 0);
}

/* A copy of the live usage of mb, as the catalog and scans take it. */
static struct mk_mailbox_usage *
live_usage_copy(const struct mk_live_mailbox *mb)
{
	struct mk_mailbox_usage *mu = mk_xcalloc(1, sizeof(*mu));
	size_t i;

	mu->address = mk_xstrdup(mb->address);
	mu->relpath = mk_xstrdup(mb->relpath);
	mu->total = mb->total;
	mu->folders = mk_xcalloc(mb->nfolders, sizeof(*mu->folders));
	mu->nfolders = mb->nfolders;
	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_live_folder *f = mb->folders[i];
		struct mk_folder_usage *fu = &mu->folders[i];

		fu->dir = mk_xstrdup(live_folder_dir(f));
		fu->name = mk_xstrdup(f->name);
		fu->ino = f->ino;
		fu->new_mtime_ns = f->new_mtime_ns;
		fu->cur_mtime_ns = f->cur_mtime_ns;
		fu->usage = f->usage;
		fu->unsized = live_sized_count(f);
	}
	return mu;
}

static void
live_scan_submit(struct mk_live *live, struct mk_live_mailbox *mb, bool audit)
{
	struct live_scan_job *j = mk_xcalloc(1, sizeof(*j));

	j->job.run = live_scan_run;
	j->job.done = live_scan_done;
	j->live = live;
	j->address = mk_xstrdup(mb->address);
	j->relpath = mk_xstrdup(mb->relpath);
	j->sep = live->d->conf->hierarchy_separator;
	j->rootfd = live->d->rootfd;
	j->ifd = mk_watch_fd(live->d->watch);
	j->audit = audit;
	j->wd_root = -1;
	j->unknown_at_submit = live->unknown_events;
	/* Unchanged folders are taken from the catalog, or while polling
	 * from the live usage. */
	if (mb->prev != NULL || mb->from_catalog) {
		j->prev = mb->prev != NULL ? mb->prev : live_usage_copy(mb);
		mb->prev = NULL;
		mb->from_catalog = false;
		j->prev_ns = mb->scanned_ns;
	} else if (mb->polled && !audit) {
		j->prev = live_usage_copy(mb);
		j->prev_ns = mb->scanned_ns;
	}
	mb->scanning = true;
	mb->dirty = false;
	live->scanning++;
	mk_pool_submit(live->d->pool, &j->job);
}

static void
live_queue_scan(struct mk_live *live, struct mk_live_mailbox *mb, bool audit)
{
	size_t tail;

	if (mb->queued)
		return;
	mb->queued = true;
	mb->stale = true;
	if (live->qlen == live->qcap) {
		size_t ncap = live->qcap == 0 ? 64 : live->qcap * 2, i;
		char **q = mk_xcalloc(ncap, sizeof(*q));
		bool *qa = mk_xcalloc(ncap, sizeof(*qa));

		for (i = 0; i < live->qlen; i++) {
			q[i] = live->queue[(live->qhead + i) % live->qcap];
			qa[i] =
			    live->queue_audit[(live->qhead + i) % live->qcap];
		}
		free(live->queue);
		free(live->queue_audit);
		live->queue = q;
		live->queue_audit = qa;
		live->qcap = ncap;
		live->qhead = 0;
	}
	tail = (live->qhead + live->qlen++) % live->qcap;
	live->queue[tail] = mk_xstrdup(mb->address);
	live->queue_audit[tail] = audit;
	event_active(live->kick, EV_TIMEOUT, 0);
}

/* Start queued scans, at most two per worker at a time. */
static void
live_kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	size_t limit = live->d->conf->workers * 2;

	(void)fd;
	(void)what;
	while (live->qlen > 0 && live->scanning < limit && !live->d->stopping) {
		char *address = live->queue[live->qhead];
		bool audit = live->queue_audit[live->qhead];
		struct mk_live_mailbox *mb;

		live->qhead = (live->qhead + 1) % live->qcap;
		live->qlen--;
		mb = live_mailbox(live, address);
		free(address);
		if (mb == NULL)
			continue;
		mb->queued = false;
		if (mb->scanning) {
			/* The scan in flight will see it dirty. */
			mb->dirty = true;
			continue;
		}
		live_scan_submit(live, mb, audit);
	}
}

int
mk_live_rescan(struct mk_live *live, const char *address)
{
	struct mk_live_mailbox *mb;
	size_t pos = 0;

	if (address != NULL) {
		if ((mb = live_mailbox(live, address)) == NULL)
			return 0;
		live_queue_scan(live, mb, false);
		return 1;
	}
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL)
		live_queue_scan(live, mb, false);
	return 1;
}

/* vsize of names without ,W=, read in the pool */

struct live_vsize_job {
	struct mk_job job;
	struct mk_live *live;
	char *address;
	char *dir;
	char *subpath; /* relpath/dir/sub beneath the store root */
	char *name;
	bool in_cur;
	uint64_t gen;
	int rootfd;
	int rc;
	uint64_t vsize;
};

static void
live_vsize_run(struct mk_job *job, void *ctx)
{
	struct live_vsize_job *j = (struct live_vsize_job *)job;
	struct mk_err err;
	int fd;

	(void)ctx;
	j->rc = -1;
	fd = mk_fs_open_dir_beneath(j->rootfd, j->subpath, &err);
	if (fd < 0)
		return;
	j->rc = mk_scan_read_vsize(fd, j->name, &j->vsize);
	close(fd);
}

static void
live_vsize_done(struct mk_job *job)
{
	struct live_vsize_job *j = (struct live_vsize_job *)job;
	struct mk_live_mailbox *mb = live_mailbox(j->live, j->address);
	struct mk_live_folder *f;
	struct live_sized *s;

	if (j->rc == 0 && mb != NULL && !mb->scanning &&
	    (f = live_folder_by_dir(mb, j->dir)) != NULL &&
	    (s = live_sized_get(f, j->name, j->in_cur)) != NULL &&
	    s->gen == j->gen) {
		f->usage.vbytes = f->usage.vbytes - s->vsize + j->vsize;
		mb->total.vbytes = mb->total.vbytes - s->vsize + j->vsize;
		s->vsize = j->vsize;
		mb->unsaved = true;
	}
	free(j->address);
	free(j->dir);
	free(j->subpath);
	free(j->name);
	free(j);
}

static void
live_vsize_submit(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, struct live_sized *s)
{
	struct live_vsize_job *j = mk_xcalloc(1, sizeof(*j));

	j->job.run = live_vsize_run;
	j->job.done = live_vsize_done;
	j->live = live;
	j->address = mk_xstrdup(mb->address);
	j->dir = mk_xstrdup(live_folder_dir(f));
	j->subpath = mk_xasprintf("%s/%s%s%s", mb->relpath, j->dir,
	    j->dir[0] != '\0' ? "/" : "", s->in_cur ? "cur" : "new");
	j->name = mk_xstrdup(s->name);
	j->in_cur = s->in_cur;
	j->gen = s->gen = ++live->gen;
	j->rootfd = live->d->rootfd;
	mk_pool_submit(live->d->pool, &j->job);
}

/* Events */

static void
live_usage_change(struct mk_live_mailbox *mb, struct mk_live_folder *f,
    uint64_t size, uint64_t vsize, bool add)
{
	struct mk_usage u = { size, vsize, 1 };

	if (add) {
		mk_usage_add(&f->usage, &u);
		mk_usage_add(&mb->total, &u);
	} else {
		mk_usage_sub(&f->usage, &u);
		mk_usage_sub(&mb->total, &u);
	}
	mb->unsaved = true;
}

/* stat() a message beneath the store root. */
static int
live_stat(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, bool in_cur, const char *name, struct stat *st)
{
	const char *dir = live_folder_dir(f);
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s%s%s/%s", mb->relpath,
		dir, dir[0] != '\0' ? "/" : "", in_cur ? "cur" : "new",
		name) >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return mk_fs_stat_beneath(live->d->rootfd, path, st);
}

/* The arriving half: a name appears in new/ or cur/. */
static void
live_arrive(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, bool in_cur, const char *name)
{
	struct mk_maildir_name mn;
	struct live_sized *s;
	struct mk_err err;
	struct stat st;
	uint64_t size;
	bool gone = false;

	(void)mk_maildir_name_parse(name, &mn, &err);
	/* One stat: links and directories are never messages (as in a
	 * scan), and a name without ,S= takes its size from it. */
	errno = 0;
	if (live_stat(live, mb, f, in_cur, name, &st) < 0 ||
	    !S_ISREG(st.st_mode)) {
		if (errno == ENOENT) {
			/* Gone on already (to cur/, another folder, an
			 * expunge): its leaving event follows and must find
			 * it counted as this arrival counts it. */
			gone = true;
		} else if (errno == ELOOP || errno == 0) {
			/* Remembered, so that its leaving subtracts nothing. */
			if (live_sized_get(f, name, in_cur) == NULL)
				live_sized_add(f, name, in_cur, 0, 0)->skipped =
				    true;
			return;
		} else {
			live_queue_scan(live, mb, false);
			return;
		}
	}
	if (mn.has_size && mn.has_vsize) {
		live_usage_change(mb, f, mn.size, mn.vsize, true);
		return;
	}
	/* A name arriving over an existing one replaces it. */
	if ((s = live_sized_get(f, name, in_cur)) != NULL) {
		if (!s->skipped)
			live_usage_change(mb, f, s->size, s->vsize, false);
		live_sized_remove(f, s);
	}
	if (gone) {
		/* No size to take: counted as nothing, in and out. */
		live_sized_add(f, name, in_cur, 0, 0)->skipped = true;
		return;
	}
	size = mn.has_size ? mn.size : (uint64_t)st.st_size;
	s = live_sized_add(
	    f, name, in_cur, size, mn.has_vsize ? mn.vsize : size);
	live_usage_change(mb, f, s->size, s->vsize, true);
	if (!mn.has_vsize)
		live_vsize_submit(live, mb, f, s);
}

/* The leaving half: a name goes away from new/ or cur/. */
static void
live_leave(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, bool in_cur, const char *name)
{
	struct mk_maildir_name mn;
	struct live_sized *s;
	struct mk_err err;

	if ((s = live_sized_get(f, name, in_cur)) != NULL) {
		if (!s->skipped)
			live_usage_change(mb, f, s->size, s->vsize, false);
		live_sized_remove(f, s);
		return;
	}
	(void)mk_maildir_name_parse(name, &mn, &err);
	if (mn.has_size && mn.has_vsize)
		live_usage_change(mb, f, mn.size, mn.vsize, false);
	else
		/* Its size was never known to us: count again. */
		live_queue_scan(live, mb, false);
}

/* A file written in place (cp): take the size of a name without ,S=. */
static void
live_rewrite(struct mk_live *live, struct mk_live_mailbox *mb,
    struct mk_live_folder *f, bool in_cur, const char *name)
{
	struct live_sized *s = live_sized_get(f, name, in_cur);
	struct mk_maildir_name mn;
	struct mk_err err;
	struct stat st;

	if (s == NULL || s->skipped)
		return;
	(void)mk_maildir_name_parse(name, &mn, &err);
	if (mn.has_size)
		return;
	if (live_stat(live, mb, f, in_cur, name, &st) < 0)
		return;
	live_usage_change(mb, f, s->size, s->vsize, false);
	s->size = (uint64_t)st.st_size;
	s->vsize = mn.has_vsize ? mn.vsize : s->size;
	live_usage_change(mb, f, s->size, s->vsize, true);
	if (!mn.has_vsize)
		live_vsize_submit(live, mb, f, s);
}

static void
live_message_event(
    struct mk_live *live, struct live_wd *w, uint32_t mask, const char *name)
{
	bool in_cur = w->kind == WD_CUR;
	bool arrived = !in_cur && (mask & (IN_MOVED_TO | IN_CREATE));

	if (mask & (IN_IGNORED | IN_MOVE_SELF)) {
		/* new/ or cur/ went away under a folder we still count. */
		struct mk_live_mailbox *mb = w->mb;

		if (mask & IN_IGNORED) {
			if (w->f->wd_new == w->wd)
				w->f->wd_new = -1;
			if (w->f->wd_cur == w->wd)
				w->f->wd_cur = -1;
			live_forget_wd(live, w->wd, false);
		}
		live_queue_scan(live, mb, false);
		return;
	}
	if (name[0] == '\0' || (mask & IN_ISDIR) ||
	    mk_maildir_classify(name) != MK_MAILDIR_MESSAGE)
		return;
	if (mask & (IN_MOVED_FROM | IN_DELETE))
		live_leave(live, w->mb, w->f, in_cur, name);
	if (mask & (IN_MOVED_TO | IN_CREATE))
		live_arrive(live, w->mb, w->f, in_cur, name);
	if (mask & IN_CLOSE_WRITE)
		live_rewrite(live, w->mb, w->f, in_cur, name);
	/* A message landing in new/ is a delivery. */
	if (live->d->enforce != NULL)
		mk_enforce_changed(live->d->enforce, w->mb, arrived);
}

static void
live_settle_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < live->ndetached; i++) {
		struct live_detached *dt = &live->detached[i];
		struct mk_live_mailbox *mb = live_mailbox(live, dt->address);
		struct mk_live_folder *f;

		if (mb != NULL && !mb->scanning &&
		    (f = live_folder_by_ino(mb, dt->ino)) != NULL &&
		    f->detached != 0)
			live_folder_delete(live, mb, f);
		free(dt->address);
	}
	live->ndetached = 0;
}

/* A directory event in a Maildir: folders made, renamed, deleted. */
static void
live_root_event(struct mk_live *live, struct live_wd *w, uint32_t mask,
    uint32_t cookie, const char *name)
{
	struct mk_live_mailbox *mb = w->mb;
	struct mk_live_folder *f;
	char path[4096];
	struct stat st;

	if (mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
		if (mask & IN_IGNORED)
			live_forget_wd(live, w->wd, false);
		mk_live_refresh_store(live);
		return;
	}
	if (!(mask & IN_ISDIR))
		return;
	if (strcmp(name, "new") == 0 || strcmp(name, "cur") == 0) {
		live_queue_scan(live, mb, false);
		return;
	}
	if (mask & (IN_MOVED_FROM | IN_DELETE)) {
		if ((f = live_folder_by_dir(mb, name)) == NULL)
			return;
		if (mask & IN_DELETE) {
			live_folder_delete(live, mb, f);
			return;
		}
		/* Renamed, or moved away: the settle timer decides. */
		f->detached = cookie != 0 ? cookie : 1;
		mk_xgrow(&live->detached, &live->detcap, live->ndetached + 1,
		    sizeof(*live->detached));
		live->detached[live->ndetached].address =
		    mk_xstrdup(mb->address);
		live->detached[live->ndetached++].ino = f->ino;
		event_add(live->settle, &live_settle_tv);
		return;
	}
	/* IN_CREATE or IN_MOVED_TO: known by inode, or new. */
	snprintf(path, sizeof(path), "%s/%s", mb->relpath, name);
	if (mk_fs_stat_beneath(live->d->rootfd, path, &st) < 0)
		return;
	f = live_folder_by_ino(mb, (uint64_t)st.st_ino);
	if (!mk_maildir_is_folder_dir(name)) {
		/* Moved to ..DOVECOT-TRASHED, or otherwise out of the
		 * folder namespace: one folder deletion. */
		if (f != NULL)
			live_folder_delete(live, mb, f);
		return;
	}
	if (f != NULL) {
		char imap[1024];

		(void)mk_maildir_folder_name(name,
		    live->d->conf->hierarchy_separator, imap, sizeof(imap));
		mk_log_debug("live", "%s: folder %s renamed to %s", mb->address,
		    f->name, imap);
		live_unintern(live, f->name);
		f->name = live_intern(live, imap, name);
		f->detached = 0;
		mb->unsaved = true;
		return;
	}
	live_queue_scan(live, mb, false);
}

void
mk_live_event(struct mk_live *live, int wd, uint32_t mask, uint32_t cookie,
    const char *name)
{
	struct live_wd wv, *w = &wv;

	live->d->stats.events++;
	if (!live_wd_get(live, wd, w)) {
		/* A watch a scan in flight has set: that scan goes again. */
		live->unknown_events++;
		return;
	}
	if (w->kind == WD_STORE) {
		if (mask & IN_IGNORED)
			live_forget_wd(live, wd, false);
		if (mask &
		    (IN_ISDIR | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
			mk_live_refresh_store(live);
		return;
	}
	if (w->mb->scanning) {
		w->mb->dirty = true;
		if (mask & IN_IGNORED)
			live_forget_wd(live, wd, false);
		return;
	}
	switch (w->kind) {
	case WD_ROOT:
		live_root_event(live, w, mask, cookie, name);
		break;
	case WD_DIR:
		if (mask & IN_IGNORED)
			live_forget_wd(live, wd, false);
		else if ((mask & IN_ISDIR) &&
		    (strcmp(name, "new") == 0 || strcmp(name, "cur") == 0))
			live_queue_scan(live, w->mb, false);
		break;
	case WD_NEW:
	case WD_CUR:
		live_message_event(live, w, mask, name);
		break;
	case WD_STORE:
		break;
	}
}

void
mk_live_overflow(struct mk_live *live)
{
	live->d->stats.overflows++;
	mk_log_warn("live", "inotify queue overflow: rescanning every mailbox");
	mk_live_rescan(live, NULL);
	mk_live_refresh_store(live);
}

/* The store: mailboxes come and go */

struct live_store_job {
	struct mk_job job;
	struct mk_live *live;
	const struct mk_store *store;
	int ifd;
	char *root;
	int rc;
	struct mk_err err;
	struct mk_store_list *list;
	int *wds;
	size_t nwds, wdcap;
	bool limited;
};

/* Watch the root or a directory above the Maildir level. */
static void
live_store_watch(struct live_store_job *j, const char *relpath, size_t len)
{
	char path[4096];
	int wd;

	snprintf(path, sizeof(path), "%s%s%.*s", j->root, len > 0 ? "/" : "",
	    (int)len, relpath);
	wd = inotify_add_watch(j->ifd, path, LIVE_MASK_DIR);
	if (wd < 0) {
		if (errno == ENOSPC)
			j->limited = true;
		return;
	}
	mk_xgrow(&j->wds, &j->wdcap, j->nwds + 1, sizeof(*j->wds));
	j->wds[j->nwds++] = wd;
}

static void
live_store_dir_cb(const char *relpath, void *arg)
{
	live_store_watch(arg, relpath, strlen(relpath));
}

static void
live_store_run(struct mk_job *job, void *ctx)
{
	struct live_store_job *j = (struct live_store_job *)job;

	(void)ctx;
	live_store_watch(j, "", 0);
	j->rc =
	    mk_store_walk(j->store, live_store_dir_cb, j, &j->list, &j->err);
}

static bool
live_listed_match(const void *value, const void *ctx)
{
	return strcmp(((const struct mk_store_mailbox *)value)->address, ctx) ==
	    0;
}

static void
live_store_done(struct mk_job *job)
{
	struct live_store_job *j = (struct live_store_job *)job;
	struct mk_live *live = j->live;
	struct mk_live_mailbox *mb;
	struct mk_hmap *listed;
	size_t i, pos = 0, n = 0, gcap = 0;
	struct mk_live_mailbox **gone = NULL;

	live->store_listing = false;
	if (live->d->stopping)
		goto out;
	for (i = 0; i < j->nwds; i++)
		live_set_wd(live, j->wds[i], WD_STORE, NULL, NULL);
	if (j->rc < 0) {
		mk_log_error("live", "%s", j->err.msg);
		goto out;
	}
	if (j->list->warnings.count > 0)
		mk_log_warn("live", "store: %llu entries skipped, first: %s",
		    j->list->warnings.count, j->list->warnings.first);
	if (j->limited)
		mk_log_warn("live",
		    "watch limit reached on store directories: new mailboxes "
		    "are found by the audit");
	listed = mk_hmap_new();
	for (i = 0; i < j->list->count; i++) {
		const struct mk_store_mailbox *sm = &j->list->mailboxes[i];

		mk_hmap_put(listed, live_key(sm->address), (void *)sm);
		if ((mb = live_mailbox(live, sm->address)) == NULL) {
			mb = live_mailbox_add(live, sm->address, sm->relpath);
			if (live->d->ready)
				mk_log_info(
				    "live", "%s: new mailbox", sm->address);
		} else if (strcmp(mb->relpath, sm->relpath) != 0) {
			live_relpath_set(mb, sm->relpath);
		}
		if (mb->wd_root < 0 && !mb->scanning)
			live_queue_scan(live, mb, false);
	}
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL) {
		if (mk_hmap_get(listed, live_key(mb->address),
			live_listed_match, mb->address) == NULL) {
			mk_xgrow(&gone, &gcap, n + 1, sizeof(*gone));
			gone[n++] = mb;
		}
	}
	for (i = 0; i < n; i++)
		if (!gone[i]->scanning)
			live_mailbox_remove(live, gone[i]);
	free(gone);
	mk_hmap_free(&listed);
out:
	mk_store_list_free(&j->list);
	free(j->wds);
	free(j->root);
	free(j);
	if (live->store_again && !live->d->stopping) {
		live->store_again = false;
		mk_live_refresh_store(live);
	}
	live_check_ready(live);
	event_active(live->kick, EV_TIMEOUT, 0);
}

static void
live_store_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	struct live_store_job *j;

	(void)fd;
	(void)what;
	if (live->store_listing) {
		live->store_again = true;
		return;
	}
	j = mk_xcalloc(1, sizeof(*j));
	j->job.run = live_store_run;
	j->job.done = live_store_done;
	j->live = live;
	j->store = live->d->store;
	j->ifd = mk_watch_fd(live->d->watch);
	j->root = mk_xstrdup(mk_store_root(live->d->store));
	live->store_listing = true;
	mk_pool_submit(live->d->pool, &j->job);
}

void
mk_live_refresh_store(struct mk_live *live)
{
	if (!evtimer_pending(live->store_timer, NULL))
		evtimer_add(live->store_timer, &live_store_tv);
}

/* Persisting to the catalog */

struct live_persist_job {
	struct mk_job job;
	struct mk_live *live;
	struct mk_mailbox_usage **usages;
	int64_t *scanned;
	size_t n;
	int rc;
	struct mk_err err;
};

/* Write usages into cat in one transaction. */
static int
live_persist_write(struct mk_catalog *cat, struct mk_mailbox_usage **usages,
    const int64_t *scanned, size_t n, struct mk_err *err)
{
	int64_t now = mk_daemon_now_ns();
	size_t i;

	if (mk_catalog_begin(cat, err) < 0)
		return -1;
	for (i = 0; i < n; i++)
		if (mk_catalog_put_usage(cat, usages[i], scanned[i], now, err) <
		    0) {
			mk_catalog_rollback(cat);
			return -1;
		}
	return mk_catalog_commit(cat, err);
}

static void
live_persist_run(struct mk_job *job, void *ctx)
{
	struct live_persist_job *j = (struct live_persist_job *)job;
	struct mk_worker *w = ctx;

	if (w->catalog == NULL) {
		j->rc = mk_err_set(&j->err, "no catalog connection");
		return;
	}
	j->rc = live_persist_write(
	    w->catalog, j->usages, j->scanned, j->n, &j->err);
}

static void
live_persist_free(struct live_persist_job *j)
{
	size_t i;

	for (i = 0; i < j->n; i++)
		mk_mailbox_usage_free(&j->usages[i]);
	free(j->usages);
	free(j->scanned);
	free(j);
}

static void
live_persist_done(struct mk_job *job)
{
	struct live_persist_job *j = (struct live_persist_job *)job;
	size_t i;

	j->live->persisting = false;
	if (j->rc < 0) {
		j->live->d->stats.persist_errors++;
		mk_log_error("live", "persist: %s", j->err.msg);
		/* Try these again next time. */
		for (i = 0; i < j->n; i++) {
			struct mk_live_mailbox *mb =
			    live_mailbox(j->live, j->usages[i]->address);

			if (mb != NULL)
				mb->unsaved = true;
		}
	}
	live_persist_free(j);
}

/* Collect the mailboxes changed since the last write. */
static struct live_persist_job *
live_persist_collect(struct mk_live *live)
{
	struct live_persist_job *j = mk_xcalloc(1, sizeof(*j));
	struct mk_live_mailbox *mb;
	size_t pos = 0, cap = 0, scap = 0;

	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL) {
		if (!mb->unsaved || mb->scanning || mb->prev != NULL ||
		    mb->from_catalog)
			continue;
		mb->unsaved = false;
		mk_xgrow(&j->usages, &cap, j->n + 1, sizeof(*j->usages));
		mk_xgrow(&j->scanned, &scap, j->n + 1, sizeof(*j->scanned));
		j->scanned[j->n] = mb->scanned_ns;
		j->usages[j->n++] = live_usage_copy(mb);
	}
	return j;
}

static void
live_persist_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	struct live_persist_job *j;

	(void)fd;
	(void)what;
	if (live->persisting)
		return;
	j = live_persist_collect(live);
	if (j->n == 0) {
		live_persist_free(j);
		return;
	}
	j->job.run = live_persist_run;
	j->job.done = live_persist_done;
	j->live = live;
	live->persisting = true;
	mk_pool_submit(live->d->pool, &j->job);
}

void
mk_live_persist_sync(struct mk_live *live, struct mk_catalog *cat)
{
	struct live_persist_job *j = live_persist_collect(live);
	struct mk_err err;

	if (j->n > 0 &&
	    live_persist_write(cat, j->usages, j->scanned, j->n, &err) < 0)
		mk_log_error("live", "persist: %s", err.msg);
	live_persist_free(j);
}

/* Audit and polling */

static void
live_audit_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	struct mk_live_mailbox *mb;
	size_t pos = 0;

	(void)fd;
	(void)what;
	if (live->audit_left > 0)
		return;
	live->audit_drift_bytes = live->audit_drift_mailboxes = 0;
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL)
		if (!mb->queued) {
			live_queue_scan(live, mb, true);
			live->audit_left++;
		}
	mk_live_refresh_store(live);
}

static void
live_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_live *live = arg;
	struct mk_live_mailbox *mb;
	size_t pos = 0;

	(void)fd;
	(void)what;
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL)
		if (mb->polled)
			live_queue_scan(live, mb, false);
}

/* Life cycle and lookups */

struct mk_live *
mk_live_new(struct mk_daemon *d)
{
	struct mk_live *live = mk_xcalloc(1, sizeof(*live));
	struct timeval audit = { (time_t)d->conf->audit_interval, 0 };
	struct timeval poll = { (time_t)d->conf->poll_interval, 0 };

	live->d = d;
	live->mailboxes = mk_hmap_new();
	live->wds = mk_wdtab_new();
	live->strings = mk_hmap_new();
	live->kick = event_new(d->base, -1, 0, live_kick_cb, live);
	live->settle = evtimer_new(d->base, live_settle_cb, live);
	live->store_timer = evtimer_new(d->base, live_store_timer_cb, live);
	live->persist_timer =
	    event_new(d->base, -1, EV_PERSIST, live_persist_cb, live);
	live->audit_timer =
	    event_new(d->base, -1, EV_PERSIST, live_audit_cb, live);
	live->poll_timer =
	    event_new(d->base, -1, EV_PERSIST, live_poll_cb, live);
	if (live->kick == NULL || live->settle == NULL ||
	    live->store_timer == NULL || live->persist_timer == NULL ||
	    live->audit_timer == NULL || live->poll_timer == NULL)
		mk_fatal("live", "cannot create timers");
	evtimer_add(live->persist_timer, &live_persist_tv);
	evtimer_add(live->audit_timer, &audit);
	evtimer_add(live->poll_timer, &poll);
	return live;
}

void
mk_live_free(struct mk_live **livep)
{
	struct mk_live *live = *livep;
	struct mk_live_mailbox *mb;
	size_t pos = 0, i;

	if (live == NULL)
		return;
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL)
		live_mailbox_free(live, mb, false);
	mk_hmap_free(&live->mailboxes);
	mk_wdtab_free(&live->wds);
	mk_hmap_free(&live->strings);
	for (i = 0; i < live->qlen; i++)
		free(live->queue[(live->qhead + i) % live->qcap]);
	free(live->queue);
	free(live->queue_audit);
	for (i = 0; i < live->ndetached; i++)
		free(live->detached[i].address);
	free(live->detached);
	event_free(live->kick);
	event_free(live->settle);
	event_free(live->store_timer);
	event_free(live->persist_timer);
	event_free(live->audit_timer);
	event_free(live->poll_timer);
	free(live);
	*livep = NULL;
}

static void
live_load_cb(struct mk_mailbox_usage *mu, int64_t scanned_ns, void *arg)
{
	struct mk_live *live = arg;
	struct mk_live_mailbox *mb;
	size_t i;

	mb = live_mailbox_add(live, mu->address, mu->relpath);
	live_folders_set(live, mb, mu);
	mb->scanned_ns = scanned_ns;
	/* The live folders hold what a scan needs from the catalog, but
	 * for the count of names without sizes: keep those few whole. */
	for (i = 0; i < mu->nfolders && mu->folders[i].unsized == 0; i++)
		;
	if (i < mu->nfolders)
		mb->prev = mu;
	else {
		mb->from_catalog = true;
		mk_mailbox_usage_free(&mu);
	}
}

int
mk_live_load(struct mk_live *live, struct mk_catalog *cat, struct mk_err *err)
{
	return mk_catalog_load_all(cat, live_load_cb, live, err);
}

const struct mk_live_mailbox *
mk_live_find(const struct mk_live *live, const char *address)
{
	return live_mailbox(live, address);
}

size_t
mk_live_count(const struct mk_live *live)
{
	return mk_hmap_count(live->mailboxes);
}

const struct mk_live_mailbox **
mk_live_all(const struct mk_live *live, size_t *count_r)
{
	size_t n = mk_hmap_count(live->mailboxes), pos = 0, i = 0;
	const struct mk_live_mailbox **all = mk_xcalloc(n + 1, sizeof(*all));
	const struct mk_live_mailbox *mb;

	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL)
		all[i++] = mb;
	*count_r = i;
	return all;
}

void
mk_live_counts(const struct mk_live *live, struct mk_live_counts *c)
{
	const struct mk_live_mailbox *mb;
	size_t pos = 0;

	memset(c, 0, sizeof(*c));
	while ((mb = mk_hmap_next(live->mailboxes, &pos)) != NULL) {
		c->mailboxes++;
		c->stale += mb->stale;
		c->polled += mb->polled;
		c->bytes += mb->total.bytes;
		c->messages += mb->total.messages;
	}
	c->watches = mk_wdtab_count(live->wds);
	c->queued = live->qlen;
	c->scanning = live->scanning;
}
