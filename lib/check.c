#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/backup.h"
#include "mailkeep/check.h"
#include "mailkeep/crypto.h"
#include "mailkeep/hmap.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/snapshot.h"
#include "mailkeep/str.h"

/* A pack, as the catalog and the repository each see it. */
struct ck_pack {
	char id[MK_PACK_NAME_LEN + 1];
	bool in_repo;
	bool in_catalog;
	uint64_t size; /* in the repository */
	uint64_t catalog_size;
	bool sampled; /* read whole */
	bool loaded;
	bool damaged; /* missing, or its header or index is bad */
	struct mk_pack_entry *entries; /* while loaded */
	size_t nentries;
	struct mk_hmap *by_id; /* entries by blob id */
	struct mk_hmap *bad; /* ids of blobs that failed to decode */
};

struct ck {
	struct mk_repo *repo;
	struct mk_catalog *cat;
	const struct mk_check_cbs *cbs;
	struct mk_check_stats *stats;
	struct mk_hmap *packs; /* by id */
	struct ck_pack **pv;
	size_t npv;
	size_t pcap;
	struct ck_pack *current; /* the loaded pack of the blob walk */
	uint8_t (*damaged)[MK_PACK_ID_LEN];
	size_t ndamaged;
	size_t dcap;
	struct mk_hmap *damaged_set;
};

static bool
ck_pack_match(const void *value, const void *ctx)
{
	return strcmp(((const struct ck_pack *)value)->id, ctx) == 0;
}

static void ck_problem(struct ck *ck, const char *kind, const char *object,
    const char *fmt, ...) MK_PRINTF(4, 5);

static void
ck_problem(
    struct ck *ck, const char *kind, const char *object, const char *fmt, ...)
{
	struct mk_check_problem p;
	char detail[MK_ERR_MSG_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	p.kind = kind;
	p.object = object;
	p.detail = detail;
	ck->stats->problems++;
	if (ck->cbs->problem_cb != NULL)
		ck->cbs->problem_cb(&p, ck->cbs->arg);
}

static bool
ck_is_damaged(const struct ck *ck, const uint8_t id[MK_PACK_ID_LEN])
{
	return mk_hmap_get(ck->damaged_set, mk_pack_id_key(id),
		   mk_pack_id_match, id) != NULL;
}

static void
ck_damaged(struct ck *ck, const uint8_t id[MK_PACK_ID_LEN])
{
	if (ck_is_damaged(ck, id))
		return;
	mk_xgrow(&ck->damaged, &ck->dcap, ck->ndamaged + 1, MK_PACK_ID_LEN);
	memcpy(ck->damaged[ck->ndamaged++], id, MK_PACK_ID_LEN);
	ck->stats->damaged_blobs++;
}

/* The damaged set, rebuilt after the array grew (it holds pointers). */
static void
ck_damaged_index(struct ck *ck)
{
	size_t i;

	mk_hmap_free(&ck->damaged_set);
	ck->damaged_set = mk_hmap_new();
	for (i = 0; i < ck->ndamaged; i++)
		mk_hmap_put(ck->damaged_set, mk_pack_id_key(ck->damaged[i]),
		    ck->damaged[i]);
}

static struct ck_pack *
ck_pack_get(struct ck *ck, const char *id)
{
	uint64_t h = mk_hmap_hash(id, strlen(id));
	struct ck_pack *p;

	if ((p = mk_hmap_get(ck->packs, h, ck_pack_match, id)) != NULL)
		return p;
	p = mk_xcalloc(1, sizeof(*p));
	mk_strlcpy(p->id, id, sizeof(p->id));
	mk_hmap_put(ck->packs, h, p);
	mk_xgrow(&ck->pv, &ck->pcap, ck->npv + 1, sizeof(*ck->pv));
	ck->pv[ck->npv++] = p;
	return p;
}

static void
ck_catalog_pack_cb(const char *name, uint64_t size, bool tombstoned, void *arg)
{
	struct ck *ck = arg;
	struct ck_pack *p = ck_pack_get(ck, name);

	(void)tombstoned;
	p->in_catalog = true;
	p->catalog_size = size;
	ck->stats->catalog_packs++;
}

static void
ck_repo_pack_cb(const char *id, uint64_t size, void *arg)
{
	struct ck *ck = arg;
	struct ck_pack *p = ck_pack_get(ck, id);

	p->in_repo = true;
	p->size = size;
	ck->stats->packs++;
}

static void
ck_pack_unload(struct ck_pack *p)
{
	uint8_t *id;
	size_t pos = 0;

	free(p->entries);
	p->entries = NULL;
	p->nentries = 0;
	mk_hmap_free(&p->by_id);
	if (p->bad != NULL)
		while ((id = mk_hmap_next(p->bad, &pos)) != NULL)
			free(id);
	mk_hmap_free(&p->bad);
}

/* Read a whole pack and decode every blob. */
static int
ck_pack_read(struct ck *ck, struct ck_pack *p, const char *name,
    struct mk_pack_reader **r_r, struct mk_err *err)
{
	const struct mk_pack_entry *e;
	struct mk_err berr;
	uint8_t *data = NULL, *plain, hash[MK_CRYPTO_HASH_LEN];
	char id[MK_PACK_NAME_LEN + 1];
	size_t len = 0, plen, i, n;
	int rc = -1;

	if (mk_storage_get(mk_repo_storage(ck->repo), name, &data, &len, err) <
		0 ||
	    mk_crypto_sha256(data, len, hash, err) < 0)
		goto out;
	/* A pack is named by its hash: any changed byte shows. */
	mk_crypto_hex(hash, sizeof(hash), id);
	if (strcmp(id, p->id) != 0)
		ck_problem(ck, "pack-damaged", name,
		    "its content hashes to %.16s, not to its name", id);
	if (mk_pack_reader_open_mem(
		mk_repo_keys(ck->repo), data, len, r_r, err) < 0)
		goto out;
	ck->stats->packs_read++;
	n = mk_pack_reader_count(*r_r);
	e = mk_pack_reader_entries(*r_r);
	for (i = 0; i < n; i++) {
		const struct mk_pack_dict *dict = NULL;

		/* A missing dictionary is reported by ck_pack_dicts(). */
		if (e[i].compression == MK_PACK_ZSTD_DICT &&
		    mk_repo_dict_get(ck->repo, e[i].dict_id, &dict, &berr) < 0)
			continue;
		if (mk_pack_reader_get_mem(*r_r, data, len, &e[i], dict, &plain,
			&plen, &berr) < 0) {
			ck_problem(ck, "blob-damaged", name, "%s", berr.msg);
			mk_hmap_put(p->bad, mk_pack_id_key(e[i].id),
			    memcpy(mk_xmalloc(MK_PACK_ID_LEN), e[i].id,
				MK_PACK_ID_LEN));
			continue;
		}
		free(plain);
		ck->stats->blobs_read++;
	}
	rc = 0;
out:
	free(data);
	return rc;
}

/*
 * Every blob of a pack made with a dictionary needs it: a dictionary
 * that is missing or does not load damages those blobs (once per pack
 * and dictionary in the problems, every blob in the damage).
 */
static void
ck_pack_dicts(struct ck *ck, struct ck_pack *p, const char *name)
{
	const struct mk_pack_entry *e;
	const struct mk_pack_dict *dict;
	const uint8_t *last = NULL;
	struct mk_err derr;
	char bhex[17];
	size_t i;

	for (i = 0; i < p->nentries; i++) {
		e = &p->entries[i];
		if (e->compression != MK_PACK_ZSTD_DICT ||
		    mk_repo_dict_get(ck->repo, e->dict_id, &dict, &derr) == 0)
			continue;
		if (last == NULL ||
		    memcmp(last, e->dict_id, MK_PACK_ID_LEN) != 0) {
			mk_crypto_hex(e->id, 8, bhex);
			ck_problem(ck, "dictionary", name,
			    "blob %s and others need %s", bhex, derr.msg);
		}
		last = e->dict_id;
		if (mk_hmap_get(p->bad, mk_pack_id_key(e->id), mk_pack_id_match,
			e->id) == NULL)
			mk_hmap_put(p->bad, mk_pack_id_key(e->id),
			    memcpy(mk_xmalloc(MK_PACK_ID_LEN), e->id,
				MK_PACK_ID_LEN));
	}
}

/* Every dictionary object: it authenticates and decodes. */
static int
ck_dict_cb(const struct mk_repo_dict_info *info, bool current,
    const struct mk_err *damage, void *arg)
{
	struct ck *ck = arg;
	char name[MK_REPO_DICT_OBJECT_LEN + 1];

	(void)current;
	ck->stats->dicts++;
	snprintf(name, sizeof(name), "dicts/%s", info->hex);
	if (damage != NULL)
		ck_problem(ck, "dictionary", name, "%s", damage->msg);
	return 0;
}

/* Load a pack's index (and, when sampled, every blob); damage is noted. */
static void
ck_pack_load(struct ck *ck, struct ck_pack *p)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];
	struct mk_pack_reader *r = NULL;
	struct mk_err err;
	size_t i;
	int rc;

	if (p->loaded)
		return;
	p->loaded = true;
	p->by_id = mk_hmap_new();
	p->bad = mk_hmap_new();
	if (mk_repo_pack_object(p->id, name, &err) < 0) {
		p->damaged = true;
		ck_problem(ck, "pack-damaged", p->id, "%s", err.msg);
		return;
	}
	if (!p->in_repo) {
		p->damaged = true;
		ck_problem(ck, "pack-missing", name,
		    "recorded in the catalog, not in the repository");
		return;
	}
	if (p->in_catalog && p->catalog_size != p->size)
		ck_problem(ck, "pack-size", name,
		    "%llu bytes, the catalog says %llu",
		    (unsigned long long)p->size,
		    (unsigned long long)p->catalog_size);
	if (p->sampled)
		rc = ck_pack_read(ck, p, name, &r, &err);
	else
		rc = mk_repo_load_pack(ck->repo, p->id, &r, &err);
	if (rc < 0) {
		p->damaged = true;
		ck_problem(ck, "pack-damaged", name, "%s", err.msg);
		mk_pack_reader_free(&r);
		return;
	}
	p->nentries = mk_pack_reader_count(r);
	p->entries = mk_xreallocarray(
	    NULL, p->nentries > 0 ? p->nentries : 1, sizeof(*p->entries));
	memcpy(p->entries, mk_pack_reader_entries(r),
	    p->nentries * sizeof(*p->entries));
	for (i = 0; i < p->nentries; i++)
		mk_hmap_put(
		    p->by_id, mk_pack_id_key(p->entries[i].id), &p->entries[i]);
	mk_pack_reader_free(&r);
	ck_pack_dicts(ck, p, name);
}

/* A blob the catalog records: in its pack, where the catalog says. */
static void
ck_blob_cb(const char *pack, const struct mk_pack_entry *e, void *arg)
{
	struct ck *ck = arg;
	struct ck_pack *p = ck_pack_get(ck, pack);
	const struct mk_pack_entry *x;
	char name[MK_REPO_PACK_OBJECT_LEN + 1], hex[17];

	ck->stats->blobs++;
	if (ck->current != p) {
		if (ck->current != NULL)
			ck_pack_unload(ck->current);
		ck->current = p;
		ck_pack_load(ck, p);
	}
	if (p->damaged) {
		ck_damaged(ck, e->id);
		return;
	}
	mk_crypto_hex(e->id, 8, hex);
	(void)mk_repo_pack_object(p->id, name, NULL);
	x = mk_hmap_get(
	    p->by_id, mk_pack_id_key(e->id), mk_pack_id_match, e->id);
	if (x == NULL) {
		ck_problem(ck, "blob-missing", name,
		    "blob %s is not in the pack's index", hex);
		ck_damaged(ck, e->id);
	} else if (x->offset != e->offset || x->length != e->length ||
	    x->raw_length != e->raw_length || x->type != e->type ||
	    x->compression != e->compression ||
	    memcmp(x->dict_id, e->dict_id, MK_PACK_ID_LEN) != 0) {
		ck_problem(ck, "blob-misplaced", name,
		    "blob %s: the catalog says offset %llu length %u, the "
		    "index offset %llu length %u",
		    hex, (unsigned long long)e->offset, e->length,
		    (unsigned long long)x->offset, x->length);
		ck_damaged(ck, e->id);
	} else if (mk_hmap_get(p->bad, mk_pack_id_key(e->id), mk_pack_id_match,
		       e->id) != NULL)
		ck_damaged(ck, e->id);
}

/* Pick the sample: ceil(n * percent / 100) packs of the repository. */
static int
ck_sample(struct ck *ck, unsigned percent, struct mk_err *err)
{
	struct ck_pack **in = NULL, *t;
	size_t n = 0, want, i, j;
	uint64_t rnd;

	in = mk_xcalloc(ck->npv > 0 ? ck->npv : 1, sizeof(*in));
	for (i = 0; i < ck->npv; i++)
		if (ck->pv[i]->in_repo)
			in[n++] = ck->pv[i];
	want = (n * percent + 99) / 100;
	/* A partial Fisher-Yates shuffle picks want packs at random. */
	for (i = 0; i < want; i++) {
		if (want < n) {
			if (mk_crypto_random(&rnd, sizeof(rnd), err) < 0) {
				free(in);
				return -1;
			}
			j = i + (size_t)(rnd % (n - i));
			t = in[i];
			in[i] = in[j];
			in[j] = t;
		}
		in[i]->sampled = true;
	}
	free(in);
	return 0;
}

/* Run names of the repository, and runs of the catalog. */
struct ck_names {
	char **v;
	size_t n;
	size_t cap;
};

static int
ck_run_name_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	struct ck_names *names = arg;
	char check[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];

	(void)st;
	/* Only names that a run id gives back exactly. */
	if (strlen(name) != MK_SNAPSHOT_RUN_OBJECT_LEN ||
	    mk_snapshot_run_object(name + strlen("snapshots/"), check, err) <
		0 ||
	    strcmp(check, name) != 0 ||
	    strspn(name + strlen("snapshots/"), "0123456789abcdef") !=
		MK_SNAPSHOT_RUN_ID_LEN) {
		mk_err_clear(err);
		return 0;
	}
	mk_xgrow(&names->v, &names->cap, names->n + 1, sizeof(*names->v));
	names->v[names->n++] = mk_xstrdup(name + strlen("snapshots/"));
	return 0;
}

struct ck_run {
	int64_t id;
	char name[MK_SNAPSHOT_RUN_ID_LEN + 1];
	bool ended;
	bool seen; /* its object is in the repository */
};

struct ck_runs {
	struct ck_run *v;
	size_t n;
	size_t cap;
};

static void
ck_catalog_run_cb(int64_t run, const char *name, int64_t started_ns,
    int64_t ended_ns, void *arg)
{
	struct ck_runs *runs = arg;

	(void)started_ns;
	mk_xgrow(&runs->v, &runs->cap, runs->n + 1, sizeof(*runs->v));
	memset(&runs->v[runs->n], 0, sizeof(runs->v[0]));
	runs->v[runs->n].id = run;
	mk_strlcpy(runs->v[runs->n].name, name, sizeof(runs->v[0].name));
	runs->v[runs->n++].ended = ended_ns != 0;
}

/* Snapshots of the catalog (the callbacks may not use the catalog). */
struct ck_snap {
	int64_t id;
	int64_t run;
	char *address;
	uint8_t object[MK_PACK_ID_LEN];
};

struct ck_snaps {
	struct ck_snap *v;
	size_t n;
	size_t cap;
};

static void
ck_snap_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct ck_snaps *ss = arg;
	struct ck_snap *x;

	mk_xgrow(&ss->v, &ss->cap, ss->n + 1, sizeof(*ss->v));
	x = &ss->v[ss->n++];
	x->id = s->id;
	x->run = s->run;
	x->address = mk_xstrdup(s->address);
	memcpy(x->object, s->object, MK_PACK_ID_LEN);
}

static void
ck_snaps_free(struct ck_snaps *ss)
{
	size_t i;

	for (i = 0; i < ss->n; i++)
		free(ss->v[i].address);
	free(ss->v);
	memset(ss, 0, sizeof(*ss));
}

/*
 * A run of the repository against the catalog's: the same mailbox
 * snapshots (the last one of a mailbox, when a run backed it up twice).
 */
static int
ck_run_compare(struct ck *ck, const char *name, const struct ck_run *run,
    const struct mk_snapshot_entry *entries, size_t n, struct mk_err *err)
{
	struct ck_snaps ss;
	size_t i, m = 0, differ = 0;

	memset(&ss, 0, sizeof(ss));
	if (mk_catalog_run_snapshots(ck->cat, run->id, ck_snap_cb, &ss, err) <
	    0)
		return -1;
	/* By address, then id: keep the last of each address. */
	for (i = 0; i < ss.n; i++) {
		if (i + 1 < ss.n &&
		    strcmp(ss.v[i].address, ss.v[i + 1].address) == 0)
			continue;
		if (m >= n ||
		    strcmp(ss.v[i].address, entries[m].address) != 0 ||
		    memcmp(ss.v[i].object, entries[m].snapshot,
			MK_PACK_ID_LEN) != 0)
			differ++;
		m++;
	}
	if (differ > 0 || m != n)
		ck_problem(ck, "run-mismatch", name,
		    "the run lists %zu mailbox snapshots, the catalog %zu, "
		    "%zu differ",
		    n, m, differ);
	ck_snaps_free(&ss);
	return 0;
}

/* Every run object against the catalog's runs. */
static int
ck_runs(struct ck *ck, struct mk_err *err)
{
	struct mk_snapshot_entry *entries = NULL;
	struct mk_snapshot_run *run = NULL;
	char obj[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];
	struct ck_names names;
	struct ck_runs runs;
	struct mk_err rerr;
	size_t i, j, n = 0;
	int rc = -1;

	memset(&names, 0, sizeof(names));
	memset(&runs, 0, sizeof(runs));
	if (mk_storage_list(mk_repo_storage(ck->repo), "snapshots/",
		ck_run_name_cb, &names, err) < 0 ||
	    mk_catalog_runs(ck->cat, ck_catalog_run_cb, &runs, err) < 0)
		goto out;
	ck->stats->runs = names.n;
	for (i = 0; i < names.n; i++) {
		snprintf(obj, sizeof(obj), "snapshots/%s", names.v[i]);
		for (j = 0; j < runs.n && strcmp(runs.v[j].name, names.v[i]);
		     j++)
			;
		if (j < runs.n)
			runs.v[j].seen = true;
		if (mk_backup_run_read(
			ck->repo, names.v[i], &run, &entries, &n, &rerr) < 0) {
			ck_problem(ck, "run-damaged", obj, "%s", rerr.msg);
			continue;
		}
		if (j < runs.n &&
		    ck_run_compare(ck, obj, &runs.v[j], entries, n, err) < 0)
			goto out;
		mk_snapshot_entries_free(&entries, n);
		mk_snapshot_run_free(&run);
	}
	for (j = 0; j < runs.n; j++)
		if (runs.v[j].ended && !runs.v[j].seen) {
			snprintf(
			    obj, sizeof(obj), "snapshots/%s", runs.v[j].name);
			ck_problem(ck, "run-missing", obj,
			    "run %lld ended in the catalog, its run object is "
			    "not in the repository",
			    (long long)runs.v[j].id);
		}
	rc = 0;
out:
	mk_snapshot_entries_free(&entries, n);
	mk_snapshot_run_free(&run);
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	free(runs.v);
	return rc;
}

/* The versions the catalog has alive at a snapshot, by folder and base. */
struct ck_version {
	char *dir;
	char *base;
	char *suffix;
	bool cur;
	int64_t mtime_ns;
	uint64_t size;
	bool opaque;
	uint8_t (*blobs)[MK_PACK_ID_LEN];
	size_t nblobs;
	bool matched;
};

struct ck_versions {
	struct ck_version **v;
	size_t n;
	size_t cap;
	struct mk_hmap *map;
};

static uint64_t
ck_version_key(const char *dir, const char *base)
{
	return mk_hmap_hash(dir, strlen(dir)) * 31 +
	    mk_hmap_hash(base, strlen(base));
}

struct ck_version_key {
	const char *dir;
	const char *base;
};

static bool
ck_version_match(const void *value, const void *ctx)
{
	const struct ck_version *v = value;
	const struct ck_version_key *k = ctx;

	return strcmp(v->dir, k->dir) == 0 && strcmp(v->base, k->base) == 0;
}

static void
ck_version_cb(const struct mk_catalog_version *cv, void *arg)
{
	struct ck_versions *vs = arg;
	struct ck_version *v = mk_xcalloc(1, sizeof(*v));

	v->dir = mk_xstrdup(cv->dir);
	v->base = mk_xstrdup(cv->base);
	v->suffix = mk_xstrdup(cv->suffix);
	v->cur = cv->cur;
	v->mtime_ns = cv->mtime_ns;
	v->size = cv->size;
	v->opaque = cv->opaque;
	v->nblobs = cv->nblobs;
	v->blobs = mk_xreallocarray(
	    NULL, cv->nblobs > 0 ? cv->nblobs : 1, MK_PACK_ID_LEN);
	memcpy(v->blobs, cv->blobs, cv->nblobs * MK_PACK_ID_LEN);
	mk_xgrow(&vs->v, &vs->cap, vs->n + 1, sizeof(*vs->v));
	vs->v[vs->n++] = v;
	mk_hmap_put(vs->map, ck_version_key(v->dir, v->base), v);
}

static void
ck_versions_free(struct ck_versions *vs)
{
	size_t i;

	for (i = 0; i < vs->n; i++) {
		free(vs->v[i]->dir);
		free(vs->v[i]->base);
		free(vs->v[i]->suffix);
		free(vs->v[i]->blobs);
		free(vs->v[i]);
	}
	free(vs->v);
	mk_hmap_free(&vs->map);
}

/* Why a listed message and the catalog's version differ, or NULL. */
static const char *
ck_version_differs(
    const struct ck_version *v, const struct mk_snapshot_message *m)
{
	if (strcmp(v->suffix, m->suffix) != 0 || v->cur != m->cur)
		return "file name";
	if (v->mtime_ns != m->file.mtime_ns)
		return "mtime";
	if (v->size != m->file.size || v->opaque != m->file.opaque ||
	    v->nblobs != m->file.nblobs ||
	    (v->nblobs > 0 &&
		memcmp(v->blobs, m->file.blobs, v->nblobs * MK_PACK_ID_LEN) !=
		    0))
		return "content";
	return NULL;
}

/* Metadata files of a snapshot: their blobs recorded and undamaged. */
static void
ck_meta(struct ck *ck, const char *object, const char *dir, const char *what,
    const struct mk_snapshot_file *f)
{
	struct mk_err err;
	uint32_t i;
	int r;

	for (i = 0; f->present && i < f->nblobs; i++) {
		r = mk_catalog_blob_get(ck->cat, f->blobs[i], NULL, NULL, &err);
		if (r == 1 && !ck_is_damaged(ck, f->blobs[i]))
			continue;
		ck_problem(ck, "snapshot-damaged", object, "folder %s: %s: %s",
		    dir[0] != '\0' ? dir : "INBOX", what,
		    r < 0        ? err.msg
			: r == 0 ? "a blob is not in the catalog"
				 : "a blob is damaged");
		return;
	}
}

/* One catalog snapshot against its objects in the repository. */
static int
ck_snapshot(struct ck *ck, const struct ck_snap *s, struct mk_err *err)
{
	struct mk_reindex_listing l;
	struct ck_version_key key;
	struct ck_versions vs;
	struct ck_version *v;
	struct mk_err rerr;
	const char *why, *first = NULL;
	char object[MK_SNAPSHOT_ADDRESS_MAX + 64], where[600];
	size_t i, differ = 0, extra = 0, missing = 0;
	int rc = -1;

	memset(&vs, 0, sizeof(vs));
	vs.map = mk_hmap_new();
	snprintf(object, sizeof(object), "snapshot %lld of %s",
	    (long long)s->id, s->address);
	/* A damaged object is traced to its snapshot later. */
	if (ck_is_damaged(ck, s->object)) {
		rc = 0;
		goto out_free;
	}
	if (mk_reindex_listing_read(ck->repo, ck->cat, s->object, &l, &rerr) <
	    0) {
		ck_problem(ck, "snapshot-damaged", object, "%s", rerr.msg);
		rc = 0;
		goto out;
	}
	if (strcmp(l.mailbox->address, s->address) != 0) {
		ck_problem(ck, "snapshot-mismatch", object,
		    "its object is of %s", l.mailbox->address);
		rc = 0;
		goto out;
	}
	ck_meta(ck, object, "", "subscriptions", &l.mailbox->subscriptions);
	for (i = 0; i < l.mailbox->nfolders; i++) {
		const struct mk_snapshot_folder *f = &l.mailbox->folders[i];

		ck_meta(ck, object, f->dir, "dovecot-uidlist", &f->uidlist);
		ck_meta(ck, object, f->dir, "dovecot-keywords", &f->keywords);
		ck_meta(ck, object, f->dir, "maildirfolder", &f->maildirfolder);
	}
	if (mk_catalog_versions_at(
		ck->cat, s->address, s->id, ck_version_cb, &vs, err) < 0)
		goto out;
	for (i = 0; i < l.n; i++) {
		key.dir = l.dirs[i];
		key.base = l.msgs[i].base;
		v = mk_hmap_get(vs.map, ck_version_key(key.dir, key.base),
		    ck_version_match, &key);
		why = v == NULL ? "not in the catalog"
				: ck_version_differs(v, &l.msgs[i]);
		if (v != NULL)
			v->matched = true;
		if (why == NULL)
			continue;
		if (v == NULL)
			extra++;
		else
			differ++;
		if (first == NULL) {
			snprintf(where, sizeof(where), "%s/%s: %s",
			    key.dir[0] != '\0' ? key.dir : "INBOX", key.base,
			    why);
			first = where;
		}
	}
	for (i = 0; i < vs.n; i++)
		if (!vs.v[i]->matched)
			missing++;
	if (differ + extra + missing > 0)
		ck_problem(ck, "snapshot-mismatch", object,
		    "%zu messages differ from the catalog, %zu are only in "
		    "the repository, %zu only in the catalog%s%s",
		    differ, extra, missing, first != NULL ? "; first: " : "",
		    first != NULL ? first : "");
	rc = 0;
out:
	mk_reindex_listing_free(&l);
out_free:
	ck_versions_free(&vs);
	return rc;
}

static void
ck_affected_cb(const struct mk_catalog_damage *d, void *arg)
{
	struct ck *ck = arg;

	ck->stats->affected++;
	if (ck->cbs->affected_cb != NULL)
		ck->cbs->affected_cb(d, ck->cbs->arg);
}

int
mk_check_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_check_opts *opts, const struct mk_check_cbs *cbs,
    struct mk_check_stats *stats_r, struct mk_err *err)
{
	struct ck_snaps ss;
	struct ck ck;
	size_t i;
	int rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&ck, 0, sizeof(ck));
	memset(&ss, 0, sizeof(ss));
	ck.repo = repo;
	ck.cat = cat;
	ck.cbs = cbs;
	ck.stats = stats_r;
	ck.packs = mk_hmap_new();
	ck.damaged_set = mk_hmap_new();
	if (opts->sample > 100) {
		mk_err_set(
		    err, "a sample is 0 to 100 percent, not %u", opts->sample);
		goto out;
	}
	mk_catalog_damage_reset(cat);
	/* 1. Packs: both lists, the sample. */
	if (mk_catalog_packs(cat, ck_catalog_pack_cb, &ck, err) < 0 ||
	    mk_repo_packs(repo, ck_repo_pack_cb, &ck, err) < 0 ||
	    ck_sample(&ck, opts->sample, err) < 0)
		goto out;
	for (i = 0; i < ck.npv; i++)
		if (ck.pv[i]->in_repo && !ck.pv[i]->in_catalog)
			stats_r->unknown_packs++;
	/* Dictionaries, before the blobs that need them. */
	if (mk_repo_dicts(repo, ck_dict_cb, &ck, err) < 0)
		goto out;
	/* 2. Every recorded blob in its pack, pack by pack. */
	if (mk_catalog_blobs(cat, ck_blob_cb, &ck, err) < 0)
		goto out;
	if (ck.current != NULL)
		ck_pack_unload(ck.current);
	/* 3. The packs no recorded blob led to: their structure too. */
	for (i = 0; i < ck.npv; i++) {
		if (ck.pv[i]->loaded)
			continue;
		ck_pack_load(&ck, ck.pv[i]);
		ck_pack_unload(ck.pv[i]);
	}
	ck_damaged_index(&ck);
	/* 4. Runs, then every snapshot with its lists and versions. */
	if (ck_runs(&ck, err) < 0 ||
	    mk_catalog_snapshots(cat, NULL, ck_snap_cb, &ss, err) < 0)
		goto out;
	stats_r->snapshots = ss.n;
	for (i = 0; i < ss.n; i++)
		if (ck_snapshot(&ck, &ss.v[i], err) < 0)
			goto out;
	/* 5. What the damaged blobs break. */
	for (i = 0; i < ck.ndamaged; i++)
		if (mk_catalog_damage_add(cat, ck.damaged[i], err) < 0)
			goto out;
	if (ck.ndamaged > 0 &&
	    mk_catalog_damage_each(cat, ck_affected_cb, &ck, err) < 0)
		goto out;
	rc = 0;
out:
	mk_catalog_damage_reset(cat);
	ck_snaps_free(&ss);
	for (i = 0; i < ck.npv; i++) {
		ck_pack_unload(ck.pv[i]);
		free(ck.pv[i]);
	}
	free(ck.pv);
	mk_hmap_free(&ck.packs);
	mk_hmap_free(&ck.damaged_set);
	free(ck.damaged);
	return rc;
}
