#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mailkeep/backup.h"
#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/snapshot.h"
#include "mailkeep/str.h"

static int64_t
reindex_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Pack ids and sizes, from a listing. */
struct reindex_packs {
	struct reindex_pack {
		char id[MK_PACK_NAME_LEN + 1];
		uint64_t size;
	} * v;
	size_t n;
	size_t cap;
	struct mk_hmap *known; /* ids the catalog has, when wanted */
};

static void
reindex_pack_cb(const char *id, uint64_t size, void *arg)
{
	struct reindex_packs *rp = arg;

	mk_xgrow(&rp->v, &rp->cap, rp->n + 1, sizeof(*rp->v));
	memcpy(rp->v[rp->n].id, id, MK_PACK_NAME_LEN + 1);
	rp->v[rp->n++].size = size;
}

static bool
reindex_name_match(const void *value, const void *ctx)
{
	return strcmp(value, ctx) == 0;
}

static void
reindex_known_cb(const char *name, uint64_t size, bool tombstoned, void *arg)
{
	struct mk_hmap *known = arg;

	(void)tombstoned;
	(void)size;
	mk_hmap_put(known, mk_hmap_hash(name, strlen(name)), mk_xstrdup(name));
}

static void
reindex_known_free(struct mk_hmap **knownp)
{
	size_t pos = 0;
	char *name;

	if (*knownp == NULL)
		return;
	while ((name = mk_hmap_next(*knownp, &pos)) != NULL)
		free(name);
	mk_hmap_free(knownp);
}

/*
 * Load one pack's index and record the pack and its blobs, in the
 * caller's transaction.  A pack that cannot be read is the caller's to
 * skip.
 */
static int
reindex_pack_add(struct mk_repo *repo, struct mk_catalog *cat,
    const struct reindex_pack *p, struct mk_reindex_stats *stats,
    struct mk_err *err)
{
	struct mk_pack_reader *r = NULL;
	struct mk_pack pack;
	int rc;

	if (mk_repo_load_pack(repo, p->id, &r, err) < 0)
		return -1;
	memset(&pack, 0, sizeof(pack));
	memcpy(pack.id, p->id, sizeof(pack.id));
	pack.len = p->size;
	pack.count = mk_pack_reader_count(r);
	pack.entries = mk_xreallocarray(
	    NULL, pack.count > 0 ? pack.count : 1, sizeof(*pack.entries));
	memcpy(pack.entries, mk_pack_reader_entries(r),
	    pack.count * sizeof(*pack.entries));
	rc = mk_catalog_pack_add(cat, &pack, reindex_now_ns(), err);
	if (rc == 0) {
		stats->packs++;
		stats->blobs += pack.count;
	}
	free(pack.entries);
	mk_pack_reader_free(&r);
	return rc;
}

int
mk_reindex_packs(struct mk_repo *repo, struct mk_catalog *cat,
    struct mk_reindex_stats *stats_r, struct mk_err *err)
{
	struct reindex_packs rp;
	struct mk_err perr;
	size_t i;
	int rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&rp, 0, sizeof(rp));
	rp.known = mk_hmap_new();
	if (mk_catalog_packs(cat, reindex_known_cb, rp.known, err) < 0 ||
	    mk_repo_packs(repo, reindex_pack_cb, &rp, err) < 0)
		goto out;
	for (i = 0; i < rp.n; i++) {
		const struct reindex_pack *p = &rp.v[i];

		if (mk_hmap_get(rp.known, mk_hmap_hash(p->id, strlen(p->id)),
			reindex_name_match, p->id) != NULL)
			continue;
		/* One short transaction per pack, as a backup records it. */
		if (mk_catalog_begin(cat, err) < 0)
			goto out;
		if (reindex_pack_add(repo, cat, p, stats_r, &perr) < 0) {
			mk_catalog_rollback(cat);
			mk_log_warn("reindex", "%s: not indexed", perr.msg);
			stats_r->skipped++;
			continue;
		}
		if (mk_catalog_commit(cat, err) < 0) {
			mk_catalog_rollback(cat);
			goto out;
		}
	}
	if (stats_r->packs > 0)
		mk_log_info("reindex",
		    "%llu packs the catalog did not know indexed (%llu blobs)",
		    (unsigned long long)stats_r->packs,
		    (unsigned long long)stats_r->blobs);
	rc = 0;
out:
	free(rp.v);
	reindex_known_free(&rp.known);
	return rc;
}

/* A version alive in the mailbox being rebuilt. */
struct reindex_version {
	struct mk_snapshot_message msg; /* owns its strings and blobs */
	char *dir;
	int64_t message;
	int64_t version;
	bool used; /* seen again in the snapshot being applied */
};

/* A mailbox being rebuilt: its versions alive after its last snapshot. */
struct reindex_mailbox {
	char *address;
	uint8_t object[MK_PACK_ID_LEN]; /* of its last snapshot */
	struct reindex_version **alive;
	size_t nalive;
	struct mk_hmap *by_base; /* base -> struct reindex_version */
};

static void
reindex_version_free(struct reindex_version *v)
{
	free(v->msg.base);
	free(v->msg.suffix);
	free(v->msg.file.blobs);
	free(v->dir);
	free(v);
}

static void
reindex_alive_free(struct reindex_version **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		reindex_version_free(v[i]);
	free(v);
}

static void
reindex_mailbox_free(struct reindex_mailbox *mb)
{
	free(mb->address);
	reindex_alive_free(mb->alive, mb->nalive);
	mk_hmap_free(&mb->by_base);
	free(mb);
}

static bool
reindex_address_match(const void *value, const void *ctx)
{
	return strcmp(((const struct reindex_mailbox *)value)->address, ctx) ==
	    0;
}

int
mk_reindex_blob(struct mk_repo *repo, struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], uint8_t **data_r, size_t *len_r,
    struct mk_err *err)
{
	char pack[MK_PACK_NAME_LEN + 1], hex[17];
	struct mk_pack_entry entry;
	int r;

	if ((r = mk_catalog_blob_get(cat, id, pack, &entry, err)) < 0)
		return -1;
	if (r == 0) {
		mk_crypto_hex(id, 8, hex);
		return mk_err_set(err, "blob %s is in no readable pack", hex);
	}
	return mk_repo_read_blob(repo, pack, &entry, NULL, data_r, len_r, err);
}

void
mk_reindex_listing_free(struct mk_reindex_listing *l)
{
	mk_snapshot_messages_free(&l->msgs, l->n);
	free(l->dirs);
	mk_snapshot_mailbox_free(&l->mailbox);
	memset(l, 0, sizeof(*l));
}

int
mk_reindex_listing_read(struct mk_repo *repo, struct mk_catalog *cat,
    const uint8_t object[MK_PACK_ID_LEN], struct mk_reindex_listing *l,
    struct mk_err *err)
{
	struct mk_snapshot_message *some = NULL;
	uint8_t *data = NULL;
	size_t len = 0, m = 0, i, j, k;
	int rc = -1;

	memset(l, 0, sizeof(*l));
	if (mk_reindex_blob(repo, cat, object, &data, &len, err) < 0 ||
	    mk_snapshot_mailbox_decode(data, len, &l->mailbox, err) < 0) {
		mk_err_prefix(err, "mailbox snapshot");
		goto out;
	}
	for (i = 0; i < l->mailbox->nfolders; i++) {
		const struct mk_snapshot_folder *f = &l->mailbox->folders[i];

		for (j = 0; j < f->nchunks; j++) {
			free(data);
			data = NULL;
			if (mk_reindex_blob(repo, cat, f->chunks[j], &data,
				&len, err) < 0 ||
			    mk_snapshot_messages_decode(
				data, len, &some, &m, err) < 0) {
				mk_err_prefix(err, "folder %s: message list",
				    f->dir[0] != '\0' ? f->dir : "INBOX");
				goto out;
			}
			mk_xgrow(&l->msgs, &l->cap, l->n + m, sizeof(*l->msgs));
			l->dirs =
			    mk_xreallocarray(l->dirs, l->cap, sizeof(*l->dirs));
			for (k = 0; k < m; k++) {
				l->dirs[l->n] = f->dir;
				l->msgs[l->n++] = some[k];
			}
			free(some);
			some = NULL;
			m = 0;
		}
	}
	rc = 0;
out:
	mk_snapshot_messages_free(&some, m);
	free(data);
	return rc;
}

static bool
reindex_same_content(
    const struct mk_snapshot_file *a, const struct mk_snapshot_file *b)
{
	return a->size == b->size && a->opaque == b->opaque &&
	    a->nblobs == b->nblobs &&
	    (a->nblobs == 0 ||
		memcmp(a->blobs, b->blobs, a->nblobs * MK_PACK_ID_LEN) == 0);
}

/*
 * A version by base name and folder (a base name may be in several
 * folders: an IMAP COPY keeps it), or by base name and content.
 */
struct reindex_key {
	const char *base;
	const char *dir;
	const struct mk_snapshot_file *file;
};

static bool
reindex_slot_match(const void *value, const void *ctx)
{
	const struct reindex_version *v = value;
	const struct reindex_key *k = ctx;

	return strcmp(v->msg.base, k->base) == 0 && strcmp(v->dir, k->dir) == 0;
}

static bool
reindex_kin_match(const void *value, const void *ctx)
{
	const struct reindex_version *v = value;
	const struct reindex_key *k = ctx;

	return strcmp(v->msg.base, k->base) == 0 &&
	    reindex_same_content(&v->msg.file, k->file);
}

/* Whether every blob of a file is recorded. */
static int
reindex_blobs_known(struct mk_catalog *cat, const struct mk_snapshot_file *f,
    struct mk_err *err)
{
	uint32_t i;
	int r;

	for (i = 0; i < f->nblobs; i++)
		if ((r = mk_catalog_blob_get(
			 cat, f->blobs[i], NULL, NULL, err)) <= 0)
			return r;
	return 1;
}

/*
 * Apply one snapshot's listing to a mailbox, as a backup commits it:
 * versions that stayed stay, changed ones vanish and come again, new
 * messages are added, versions no longer listed vanish.
 */
static int
reindex_apply(struct mk_catalog *cat, struct reindex_mailbox *mb, int64_t snap,
    struct mk_reindex_listing *l, struct mk_reindex_stats *stats,
    struct mk_err *err)
{
	struct reindex_version **alive = NULL, *old, *nv, *kin;
	struct mk_hmap *by_base = mk_hmap_new();
	struct mk_catalog_version v;
	struct reindex_key k;
	size_t i, n = 0;
	uint64_t h;
	int r, rc = -1;

	alive = mk_xcalloc(l->n > 0 ? l->n : 1, sizeof(*alive));
	for (i = 0; i < l->n; i++) {
		struct mk_snapshot_message *m = &l->msgs[i];

		h = mk_hmap_hash(m->base, strlen(m->base));
		k.base = m->base;
		k.dir = l->dirs[i];
		k.file = &m->file;
		if (mk_hmap_get(by_base, h, reindex_slot_match, &k) != NULL) {
			mk_log_warn("reindex",
			    "%s: message %s listed twice in folder \"%s\" of "
			    "snapshot %lld: the first kept",
			    mb->address, m->base, k.dir, (long long)snap);
			stats->skipped++;
			continue;
		}
		old = mk_hmap_get(mb->by_base, h, reindex_slot_match, &k);
		/* The same message in another folder, as a backup finds a
		 * copy or a move: this snapshot's or the last one's. */
		if ((kin = mk_hmap_get(by_base, h, reindex_kin_match, &k)) ==
		    NULL)
			kin =
			    mk_hmap_get(mb->by_base, h, reindex_kin_match, &k);
		nv = mk_xcalloc(1, sizeof(*nv));
		nv->msg = *m;
		memset(m, 0, sizeof(*m)); /* nv owns it now */
		nv->dir = mk_xstrdup(l->dirs[i]);
		if (kin != NULL)
			nv->message = kin->message;
		if (old != NULL &&
		    reindex_same_content(&old->msg.file, &nv->msg.file)) {
			old->used = true;
			nv->message = old->message;
			if (strcmp(old->msg.suffix, nv->msg.suffix) == 0 &&
			    old->msg.cur == nv->msg.cur &&
			    old->msg.file.mtime_ns == nv->msg.file.mtime_ns) {
				nv->version = old->version;
				goto keep;
			}
		}
		if (old != NULL) {
			old->used = true;
			if (mk_catalog_version_vanish(
				cat, old->version, snap, err) < 0)
				goto fail_nv;
		}
		memset(&v, 0, sizeof(v));
		v.message = nv->message;
		v.dir = nv->dir;
		v.base = nv->msg.base;
		v.suffix = nv->msg.suffix;
		v.cur = nv->msg.cur;
		v.mtime_ns = nv->msg.file.mtime_ns;
		v.size = nv->msg.file.size;
		v.opaque = nv->msg.file.opaque;
		v.blobs = (const uint8_t(*)[MK_PACK_ID_LEN])nv->msg.file.blobs;
		v.nblobs = nv->msg.file.nblobs;
		if (nv->message == 0) {
			if ((r = reindex_blobs_known(cat, &nv->msg.file, err)) <
			    0)
				goto fail_nv;
			if (r == 0) {
				mk_log_warn("reindex",
				    "%s: message %s of snapshot %lld has a "
				    "blob in no readable pack: left out",
				    mb->address, nv->msg.base, (long long)snap);
				stats->skipped++;
				reindex_version_free(nv);
				continue;
			}
			if (mk_catalog_message_add(cat, &v, &nv->message, err) <
			    0)
				goto fail_nv;
			stats->messages++;
			v.message = nv->message;
		}
		if (mk_catalog_version_add(cat, snap, &v, err) < 0)
			goto fail_nv;
		nv->version = mk_catalog_last_id(cat);
		stats->versions++;
	keep:
		mk_hmap_put(by_base, h, nv);
		alive[n++] = nv;
		continue;
	fail_nv:
		mk_err_prefix(err, "%s: message %s", mb->address, nv->msg.base);
		reindex_version_free(nv);
		goto out;
	}
	for (i = 0; i < mb->nalive; i++)
		if (!mb->alive[i]->used &&
		    mk_catalog_version_vanish(
			cat, mb->alive[i]->version, snap, err) < 0)
			goto out;
	reindex_alive_free(mb->alive, mb->nalive);
	mk_hmap_free(&mb->by_base);
	mb->alive = alive;
	mb->nalive = n;
	mb->by_base = by_base;
	alive = NULL;
	by_base = NULL;
	rc = 0;
out:
	if (alive != NULL)
		reindex_alive_free(alive, n);
	mk_hmap_free(&by_base);
	return rc;
}

/* The runs of the repository, oldest first. */
struct reindex_runs {
	struct reindex_run {
		char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	} * v;
	size_t n;
	size_t cap;
};

static void
reindex_run_cb(const struct mk_snapshot_run *run, void *arg)
{
	struct reindex_runs *rr = arg;

	mk_xgrow(&rr->v, &rr->cap, rr->n + 1, sizeof(*rr->v));
	memcpy(rr->v[rr->n++].id, run->id, sizeof(run->id));
}

static void
reindex_open_cb(int64_t run, const char *name, int64_t started_ns, void *arg)
{
	char *first = arg;

	(void)run;
	(void)started_ns;
	if (first[0] == '\0')
		mk_strlcpy(first, name, MK_SNAPSHOT_RUN_ID_LEN + 1);
}

/* The state of a mailbox, made on first sight. */
static struct reindex_mailbox *
reindex_mailbox_get(struct mk_hmap *mailboxes, const char *address)
{
	uint64_t h = mk_hmap_hash(address, strlen(address));
	struct reindex_mailbox *mb;

	mb = mk_hmap_get(mailboxes, h, reindex_address_match, address);
	if (mb == NULL) {
		mb = mk_xcalloc(1, sizeof(*mb));
		mb->address = mk_xstrdup(address);
		mb->alive = mk_xcalloc(1, sizeof(*mb->alive));
		mb->by_base = mk_hmap_new();
		mk_hmap_put(mailboxes, h, mb);
	}
	return mb;
}

/*
 * One mailbox snapshot of a run: the snapshot row, and its versions.
 * A snapshot whose objects cannot be read is skipped, and the mailbox
 * goes on from its previous snapshot.
 */
static int
reindex_snapshot(struct mk_repo *repo, struct mk_catalog *cat, int64_t run,
    const struct mk_snapshot_entry *e, struct mk_hmap *mailboxes,
    struct mk_reindex_stats *stats, struct mk_err *err)
{
	struct reindex_mailbox *mb = reindex_mailbox_get(mailboxes, e->address);
	struct mk_catalog_snapshot s;
	struct mk_reindex_listing l;
	struct mk_err rerr;
	bool same = mb->nalive > 0 &&
	    memcmp(mb->object, e->snapshot, MK_PACK_ID_LEN) == 0;
	int64_t snap;
	int rc = -1;

	memset(&l, 0, sizeof(l));
	/* An unchanged mailbox gives the same object: same versions. */
	if (!same) {
		if (mk_reindex_listing_read(repo, cat, e->snapshot, &l, &rerr) <
		    0)
			goto skip;
		if (strcmp(l.mailbox->address, e->address) != 0) {
			mk_err_set(
			    &rerr, "its object is of %s", l.mailbox->address);
			goto skip;
		}
	}
	memset(&s, 0, sizeof(s));
	s.run = run;
	s.address = e->address;
	s.time_ns = e->time_ns;
	s.messages = e->messages;
	s.bytes = e->bytes;
	memcpy(s.object, e->snapshot, MK_PACK_ID_LEN);
	if (mk_catalog_snapshot_add(cat, &s, &snap, err) < 0)
		goto out;
	stats->snapshots++;
	if (!same && reindex_apply(cat, mb, snap, &l, stats, err) < 0)
		goto out;
	memcpy(mb->object, e->snapshot, MK_PACK_ID_LEN);
	/* A mailbox snapshot with no message still counts as seen. */
	if (mb->nalive == 0)
		memset(mb->object, 0, MK_PACK_ID_LEN);
	rc = 0;
	goto out;
skip:
	mk_log_warn("reindex", "%s: a snapshot of run %lld left out: %s",
	    e->address, (long long)run, rerr.msg);
	stats->skipped++;
	rc = 0;
out:
	mk_reindex_listing_free(&l);
	return rc;
}

/* One run of the repository: its row and its mailbox snapshots. */
static int
reindex_run(struct mk_repo *repo, struct mk_catalog *cat, const char *id,
    struct mk_hmap *mailboxes, struct mk_reindex_stats *stats,
    struct mk_err *err)
{
	struct mk_snapshot_entry *entries = NULL;
	struct mk_snapshot_run *run = NULL;
	struct mk_err rerr;
	size_t n = 0, i;
	int64_t row;
	int rc = -1;

	if (mk_backup_run_read(repo, id, &run, &entries, &n, &rerr) < 0) {
		mk_log_warn("reindex", "run %s left out: %s", id, rerr.msg);
		stats->skipped++;
		return 0;
	}
	if (mk_catalog_run_add(cat, run->id, run->started_ns, &row, err) < 0 ||
	    mk_catalog_run_end(cat, row, run->ended_ns, err) < 0)
		goto out;
	stats->runs++;
	for (i = 0; i < n; i++)
		if (reindex_snapshot(
			repo, cat, row, &entries[i], mailboxes, stats, err) < 0)
			goto out;
	rc = 0;
out:
	mk_snapshot_entries_free(&entries, n);
	mk_snapshot_run_free(&run);
	return rc;
}

int
mk_reindex_catalog(struct mk_repo *repo, struct mk_catalog *cat,
    struct mk_reindex_stats *stats_r, struct mk_err *err)
{
	char open_run[MK_SNAPSHOT_RUN_ID_LEN + 1] = "";
	struct mk_hmap *mailboxes = mk_hmap_new();
	struct reindex_mailbox *mb;
	struct reindex_packs rp;
	struct reindex_runs rr;
	struct mk_err perr;
	size_t i, pos = 0;
	int rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&rp, 0, sizeof(rp));
	memset(&rr, 0, sizeof(rr));
	if (mk_catalog_runs_open(cat, reindex_open_cb, open_run, err) < 0)
		goto out;
	if (open_run[0] != '\0') {
		mk_err_set(err,
		    "run %s is still open in the catalog and not in the "
		    "repository yet: finish it first with 'mailkeep backup "
		    "run', which publishes it",
		    open_run);
		goto out;
	}
	if (mk_repo_packs(repo, reindex_pack_cb, &rp, err) < 0 ||
	    mk_backup_runs(repo, reindex_run_cb, &rr, err) < 0)
		goto out;
	/* One transaction: a crash or an error leaves the old catalog. */
	if (mk_catalog_begin(cat, err) < 0)
		goto out;
	if (mk_catalog_backup_clear(cat, err) < 0)
		goto fail;
	for (i = 0; i < rp.n; i++)
		if (reindex_pack_add(repo, cat, &rp.v[i], stats_r, &perr) < 0) {
			mk_log_warn("reindex", "%s: left out", perr.msg);
			stats_r->skipped++;
		}
	for (i = 0; i < rr.n; i++)
		if (reindex_run(
			repo, cat, rr.v[i].id, mailboxes, stats_r, err) < 0)
			goto fail;
	if (mk_catalog_commit(cat, err) < 0)
		goto fail;
	if (mk_catalog_checkpoint(cat, &perr) < 0)
		mk_log_warn("reindex", "%s", perr.msg);
	rc = 0;
	goto out;
fail:
	mk_catalog_rollback(cat);
out:
	while ((mb = mk_hmap_next(mailboxes, &pos)) != NULL)
		reindex_mailbox_free(mb);
	mk_hmap_free(&mailboxes);
	free(rp.v);
	free(rr.v);
	return rc;
}
