#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/backup.h"
#include "mailkeep/crypto.h"
#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/prune.h"
#include "mailkeep/snapshot.h"
#include "mailkeep/str.h"

#define PRUNE_TOMBSTONE_MAGIC "mailkeep tombstone"
#define PRUNE_TOMBSTONES "tombstones/"

/* A pack of the repository as prune sees it. */
struct prune_pack {
	struct mk_prune_pack out;
	struct mk_pack_entry *entries;
	size_t count;
	bool *live;
	bool tombstoned; /* a tombstone object existed when prune began */
	int64_t tombstone_ns;
};

/* Where a blob is; copies of one id are chained from the first. */
struct prune_loc {
	uint8_t id[MK_PACK_ID_LEN]; /* first: the hmap match compares it */
	size_t pack;
	size_t entry;
	struct prune_loc *next;
	struct prune_loc *chosen; /* on the first: the copy that counts */
	bool marked; /* on the first: walked already */
};

/* A run of the repository. */
struct prune_run {
	struct mk_snapshot_run *run;
	struct mk_snapshot_entry *entries;
	size_t n;
	size_t first; /* its first snapshot in the result */
	bool changed; /* snapshots forgotten */
	bool moved; /* a list chunk repacked */
};

struct prune {
	struct mk_repo *repo;
	struct mk_catalog *cat;
	const struct mk_prune_opts *opts;
	struct mk_prune_result *res;
	char host[MK_SNAPSHOT_HOST_MAX + 1];
	int64_t now_ns;
	struct prune_run *runs;
	size_t nruns, rcap;
	struct prune_pack *packs;
	size_t npacks, pcap;
	struct mk_hmap *tombs; /* pack id -> struct prune_tomb */
	struct prune_tomb {
		char pack[MK_PACK_NAME_LEN + 1];
		int64_t ns;
	} * tomb;
	size_t ntomb, tcap;
	struct mk_hmap *locs; /* blob id -> struct prune_loc */
	struct prune_loc **alllocs;
	size_t nlocs, lcap;
	struct mk_hmap *seen; /* metadata blobs read: id -> id copy */
	uint8_t **seenids;
	size_t nseen, scap;
};

static int64_t
prune_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static bool
prune_name_match(const void *value, const void *ctx)
{
	return strcmp(value, ctx) == 0;
}

const char *
mk_prune_action_name(enum mk_prune_action action)
{
	static const char *const names[] = { "keep", "repack", "tombstone",
		"wait", "delete", "revive" };

	return action <= MK_PRUNE_REVIVE ? names[action] : "unknown";
}

void
mk_prune_result_free(struct mk_prune_result *res)
{
	size_t i;

	for (i = 0; i < res->nsnapshots; i++)
		free(res->snapshots[i].address);
	free(res->snapshots);
	free(res->packs);
	memset(res, 0, sizeof(*res));
}

/* Names under a prefix, from a listing. */
struct prune_names {
	char **v;
	uint64_t *sizes;
	size_t n, cap, scap;
};

static int
prune_names_cb(void *arg, const char *name, const struct mk_storage_stat *st,
    struct mk_err *err)
{
	struct prune_names *names = arg;

	(void)err;
	mk_xgrow(&names->v, &names->cap, names->n + 1, sizeof(*names->v));
	mk_xgrow(
	    &names->sizes, &names->scap, names->n + 1, sizeof(*names->sizes));
	names->sizes[names->n] = st->size;
	names->v[names->n++] = mk_xstrdup(name);
	return 0;
}

static void
prune_names_free(struct prune_names *names)
{
	size_t i;

	for (i = 0; i < names->n; i++)
		free(names->v[i]);
	free(names->v);
	free(names->sizes);
	memset(names, 0, sizeof(*names));
}

/* The pack id at the end of "packs/xy/<id>" or "tombstones/<id>". */
static const char *
prune_pack_id(const char *name, const char *prefix)
{
	const char *id = strrchr(name, '/');

	if (!mk_str_has_prefix(name, prefix) || id == NULL ||
	    strlen(id + 1) != MK_PACK_NAME_LEN ||
	    strspn(id + 1, "0123456789abcdef") != MK_PACK_NAME_LEN)
		return NULL;
	return id + 1;
}

static int
prune_tombstone_decode(const uint8_t *data, size_t len, const char *pack,
    int64_t *ns_r, struct mk_err *err)
{
	const char *magic, *id;
	json_int_t version, ns;
	json_error_t jerr;
	json_t *obj;
	int rc = -1;

	if (len > MK_PRUNE_TOMBSTONE_MAX ||
	    (obj = json_loadb((const char *)data, len, 0, &jerr)) == NULL)
		return mk_err_set(err, "tombstone of %.16s: not JSON", pack);
	if (json_unpack_ex(obj, &jerr, 0, "{s:s, s:I, s:s, s:I}", "magic",
		&magic, "version", &version, "pack", &id, "time_ns", &ns) < 0 ||
	    strcmp(magic, PRUNE_TOMBSTONE_MAGIC) != 0 || version != 1 ||
	    strcmp(id, pack) != 0)
		mk_err_set(err,
		    "tombstone of %.16s: not a version 1 tombstone "
		    "of this pack",
		    pack);
	else {
		*ns_r = ns;
		rc = 0;
	}
	json_decref(obj);
	return rc;
}

static int
prune_tombstone_put(
    struct prune *p, const char *pack, const char *reason, struct mk_err *err)
{
	char name[sizeof(PRUNE_TOMBSTONES) + MK_PACK_NAME_LEN];
	char *text;
	json_t *obj;
	int rc;

	obj = json_pack("{s:s, s:i, s:s, s:I, s:s, s:s}", "magic",
	    PRUNE_TOMBSTONE_MAGIC, "version", 1, "pack", pack, "time_ns",
	    (json_int_t)prune_now_ns(), "host", p->host, "reason", reason);
	if (obj == NULL ||
	    (text = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER)) ==
		NULL)
		mk_fatal("json", "out of memory");
	json_decref(obj);
	snprintf(name, sizeof(name), "%s%s", PRUNE_TOMBSTONES, pack);
	rc = mk_storage_put(
	    mk_repo_storage(p->repo), name, text, strlen(text), err);
	free(text);
	return rc;
}

/* The tombstones there are now: pack id -> time. */
static int
prune_load_tombstones(struct prune *p, struct mk_err *err)
{
	struct mk_storage *st = mk_repo_storage(p->repo);
	struct prune_names names;
	struct mk_err terr;
	const char *pack;
	uint8_t *data;
	size_t len, i;
	int64_t ns = 0;
	int rc = -1;

	memset(&names, 0, sizeof(names));
	if (mk_storage_list(st, PRUNE_TOMBSTONES, prune_names_cb, &names, err) <
	    0)
		goto out;
	p->tomb = mk_xcalloc(names.n + 1, sizeof(*p->tomb));
	for (i = 0; i < names.n; i++) {
		if ((pack = prune_pack_id(names.v[i], PRUNE_TOMBSTONES)) ==
		    NULL)
			continue;
		if (mk_storage_get(st, names.v[i], &data, &len, err) < 0)
			goto out;
		/* A tombstone we cannot read counts as written now: its
		 * pack waits a full grace period more. */
		if (prune_tombstone_decode(data, len, pack, &ns, &terr) < 0) {
			mk_log_warn("prune", "%s", terr.msg);
			ns = p->now_ns;
		}
		free(data);
		mk_strlcpy(p->tomb[p->ntomb].pack, pack, MK_PACK_NAME_LEN + 1);
		p->tomb[p->ntomb].ns = ns;
		mk_hmap_put(p->tombs, mk_hmap_hash(pack, MK_PACK_NAME_LEN),
		    &p->tomb[p->ntomb]);
		p->ntomb++;
	}
	rc = 0;
out:
	prune_names_free(&names);
	return rc;
}

static struct prune_tomb *
prune_tomb_get(struct prune *p, const char *pack)
{
	return mk_hmap_get(p->tombs, mk_hmap_hash(pack, MK_PACK_NAME_LEN),
	    prune_name_match, pack);
}

/* Every run object and its mailbox snapshots; any damage is an error. */
static int
prune_load_runs(struct prune *p, struct mk_err *err)
{
	struct prune_names names;
	struct prune_run *r;
	const char *id;
	size_t i;
	int rc = -1;

	memset(&names, 0, sizeof(names));
	if (mk_storage_list(mk_repo_storage(p->repo), "snapshots/",
		prune_names_cb, &names, err) < 0)
		goto out;
	for (i = 0; i < names.n; i++) {
		id = names.v[i] + strlen("snapshots/");
		if (strlen(id) != MK_SNAPSHOT_RUN_ID_LEN ||
		    strspn(id, "0123456789abcdef") != MK_SNAPSHOT_RUN_ID_LEN)
			continue;
		mk_xgrow(&p->runs, &p->rcap, p->nruns + 1, sizeof(*p->runs));
		r = &p->runs[p->nruns];
		memset(r, 0, sizeof(*r));
		if (mk_backup_run_read(
			p->repo, id, &r->run, &r->entries, &r->n, err) < 0) {
			mk_err_prefix(err, "prune refuses to go on");
			goto out;
		}
		p->nruns++;
	}
	rc = 0;
out:
	prune_names_free(&names);
	return rc;
}

/* Snapshots of one group (host and mailbox), for retention. */
static int
prune_group_cmp(const void *a, const void *b, void *arg)
{
	const struct mk_prune_snapshot *s = arg;
	const struct mk_prune_snapshot *x = &s[*(const size_t *)a];
	const struct mk_prune_snapshot *y = &s[*(const size_t *)b];
	int c;

	if ((c = strcmp(x->host, y->host)) != 0 ||
	    (c = strcmp(x->address, y->address)) != 0)
		return c;
	return x->time_ns < y->time_ns ? -1 : x->time_ns > y->time_ns;
}

static bool
prune_present(const struct mk_prune_opts *o, const char *address)
{
	size_t lo = 0, hi = o->npresent, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((c = strcmp(o->present[mid], address)) == 0)
			return true;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* Apply retention to one group: snapshots idx[0..n), oldest first. */
static void
prune_group(struct prune *p, const size_t *idx, size_t n)
{
	struct mk_prune_snapshot *s = p->res->snapshots;
	const struct mk_prune_opts *o = p->opts;
	const struct mk_prune_snapshot *newest = &s[idx[n - 1]];
	bool all = false, mine = strcmp(newest->host, p->host) == 0;
	int64_t *times;
	unsigned *reasons;
	size_t i;

	if (o->only != NULL && strcmp(newest->address, o->only) != 0) {
		for (i = 0; i < n; i++)
			s[idx[i]].reasons = 1u << MK_RETENTION_RULES;
		return;
	}
	if (o->only != NULL && o->purge)
		all = true;
	/* A mailbox gone from this host's store, long enough. */
	if (mine && o->present != NULL && !prune_present(o, newest->address) &&
	    p->now_ns - newest->time_ns > o->deleted_retention_ns)
		all = true;
	times = mk_xcalloc(n, sizeof(*times));
	reasons = mk_xcalloc(n, sizeof(*reasons));
	for (i = 0; i < n; i++)
		times[i] = s[idx[i]].time_ns;
	mk_retention_select(&o->policy, times, n, reasons);
	for (i = 0; i < n; i++) {
		s[idx[i]].reasons = all ? 0 : reasons[i];
		s[idx[i]].purged = all;
	}
	/* The newest stays unless all go: the catalog's versions need it. */
	if (!all)
		s[idx[n - 1]].reasons |=
		    reasons[n - 1] != 0 ? 0 : 1u << MK_RETENTION_LAST;
	free(times);
	free(reasons);
}

static void
prune_retention(struct prune *p)
{
	struct mk_prune_result *res = p->res;
	size_t i, j, k, n = 0, *idx;

	for (i = 0; i < p->nruns; i++)
		n += p->runs[i].n;
	res->snapshots = mk_xcalloc(n + 1, sizeof(*res->snapshots));
	for (i = 0; i < p->nruns; i++) {
		struct prune_run *r = &p->runs[i];

		r->first = res->nsnapshots;
		for (j = 0; j < r->n; j++) {
			struct mk_prune_snapshot *s =
			    &res->snapshots[res->nsnapshots++];

			mk_strlcpy(s->run, r->run->id, sizeof(s->run));
			mk_strlcpy(s->host, r->run->host, sizeof(s->host));
			s->address = mk_xstrdup(r->entries[j].address);
			s->time_ns = r->entries[j].time_ns;
			s->messages = r->entries[j].messages;
			s->bytes = r->entries[j].bytes;
		}
	}
	idx = mk_xcalloc(n + 1, sizeof(*idx));
	for (i = 0; i < n; i++)
		idx[i] = i;
	qsort_r(idx, n, sizeof(*idx), prune_group_cmp, res->snapshots);
	for (i = 0; i < n; i = j) {
		for (j = i + 1; j < n &&
		     strcmp(res->snapshots[idx[j]].host,
			 res->snapshots[idx[i]].host) == 0 &&
		     strcmp(res->snapshots[idx[j]].address,
			 res->snapshots[idx[i]].address) == 0;
		     j++)
			;
		prune_group(p, &idx[i], j - i);
	}
	free(idx);
	for (i = 0; i < p->nruns; i++)
		for (k = 0; k < p->runs[i].n; k++)
			if (res->snapshots[p->runs[i].first + k].reasons == 0) {
				p->runs[i].changed = true;
				res->forgotten++;
			}
}

/*
 * Write run r again: its snapshots that are kept, in new list chunks,
 * then the run object over the old one (one atomic put); a run left
 * with none is deleted.
 */
static int
prune_run_rewrite(struct prune *p, struct prune_run *r, struct mk_err *err)
{
	char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];
	struct mk_snapshot_entry *kept = NULL;
	struct mk_snapshot_chunks chunks;
	struct mk_snapshot_run obj;
	uint8_t *data = NULL;
	size_t len, i, n = 0;
	int rc = -1;

	memset(&chunks, 0, sizeof(chunks));
	obj = *r->run;
	obj.chunks = NULL;
	if (mk_snapshot_run_object(r->run->id, name, err) < 0)
		return -1;
	kept = mk_xcalloc(r->n + 1, sizeof(*kept));
	obj.mailboxes = obj.messages = obj.bytes = 0;
	for (i = 0; i < r->n; i++) {
		if (p->res->snapshots[r->first + i].reasons == 0)
			continue;
		kept[n++] = r->entries[i];
		obj.mailboxes++;
		obj.messages += r->entries[i].messages;
		obj.bytes += r->entries[i].bytes;
	}
	if (n == 0) {
		if (mk_storage_delete(mk_repo_storage(p->repo), name, err) < 0)
			goto out;
		p->res->runs_deleted++;
		r->run->nchunks = 0;
		rc = 0;
		goto out;
	}
	if (!r->changed) {
		/* Same snapshots: the list chunks stay, their places moved. */
		obj.chunks = r->run->chunks;
		obj.nchunks = r->run->nchunks;
	} else {
		if (mk_snapshot_entries_encode(kept, n, &chunks, err) < 0)
			goto out;
		obj.chunks = mk_xcalloc(chunks.count + 1, sizeof(*obj.chunks));
		obj.nchunks = chunks.count;
		if (mk_backup_store_meta(p->repo, p->cat, &chunks, obj.chunks,
			false, &p->res->written_bytes, err) < 0)
			goto out;
	}
	if (mk_snapshot_run_encode(&obj, &data, &len, err) < 0 ||
	    mk_storage_put(mk_repo_storage(p->repo), name, data, len, err) < 0)
		goto out;
	p->res->runs_rewritten++;
	/* From now on the run's lists are the new ones. */
	if (obj.chunks != r->run->chunks) {
		free(r->run->chunks);
		r->run->chunks = obj.chunks;
		r->run->nchunks = obj.nchunks;
		obj.chunks = NULL;
	}
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "rewriting run %s", r->run->id);
	free(data);
	if (obj.chunks != r->run->chunks)
		free(obj.chunks);
	mk_snapshot_chunks_free(&chunks);
	free(kept);
	return rc;
}

/* The catalog forgets what the repository no longer lists. */
static int
prune_catalog_forget(struct prune *p, struct mk_err *err)
{
	struct mk_catalog_keep *keep;
	size_t i, j, n = 0;
	int rc = -1;

	keep = mk_xcalloc(p->res->nsnapshots + 1, sizeof(*keep));
	for (i = 0; i < p->nruns; i++)
		for (j = 0; j < p->runs[i].n; j++) {
			if (p->res->snapshots[p->runs[i].first + j].reasons ==
			    0)
				continue;
			keep[n].run = p->runs[i].run->id;
			keep[n++].address = p->runs[i].entries[j].address;
		}
	if (mk_catalog_begin(p->cat, err) < 0)
		goto out;
	if (mk_catalog_forget(
		p->cat, keep, n, &p->res->catalog_forgotten, err) < 0 ||
	    mk_catalog_commit(p->cat, err) < 0) {
		mk_catalog_rollback(p->cat);
		goto out;
	}
	rc = 0;
out:
	free(keep);
	return rc;
}

/* Every pack and its index; where each blob is. */
static int
prune_load_packs(struct prune *p, struct mk_err *err)
{
	struct mk_pack_reader *reader = NULL;
	const struct mk_pack_entry *entries;
	struct prune_names names;
	struct prune_pack *pk;
	struct prune_loc *loc, *head;
	struct prune_tomb *t;
	struct mk_err lerr;
	const char *id;
	size_t i, j;
	int rc = -1;

	memset(&names, 0, sizeof(names));
	if (mk_storage_list(mk_repo_storage(p->repo), "packs/", prune_names_cb,
		&names, err) < 0)
		goto out;
	for (i = 0; i < names.n; i++) {
		if ((id = prune_pack_id(names.v[i], "packs/")) == NULL)
			continue;
		mk_xgrow(&p->packs, &p->pcap, p->npacks + 1, sizeof(*p->packs));
		pk = &p->packs[p->npacks];
		memset(pk, 0, sizeof(*pk));
		mk_strlcpy(pk->out.id, id, sizeof(pk->out.id));
		pk->out.size = names.sizes[i];
		if ((t = prune_tomb_get(p, id)) != NULL) {
			pk->tombstoned = true;
			pk->tombstone_ns = t->ns;
		}
		if (mk_repo_load_pack(p->repo, id, &reader, &lerr) < 0) {
			/* Its blobs are unknown: never judge it unused. */
			mk_log_warn(
			    "prune", "pack %s is left alone: %s", id, lerr.msg);
			pk->out.action = MK_PRUNE_KEEP;
			pk->out.live_bytes = pk->out.size;
			pk->count = 0;
			p->npacks++;
			continue;
		}
		pk->count = mk_pack_reader_count(reader);
		entries = mk_pack_reader_entries(reader);
		pk->entries = mk_xcalloc(pk->count + 1, sizeof(*pk->entries));
		memcpy(pk->entries, entries, pk->count * sizeof(*entries));
		pk->live = mk_xcalloc(pk->count + 1, sizeof(*pk->live));
		mk_pack_reader_free(&reader);
		pk->out.action = MK_PRUNE_WAIT; /* decided later */
		p->npacks++;
	}
	/* Now that the array stands still, the index. */
	for (i = 0; i < p->npacks; i++)
		for (j = 0; j < p->packs[i].count; j++) {
			loc = mk_xcalloc(1, sizeof(*loc));
			memcpy(
			    loc->id, p->packs[i].entries[j].id, MK_PACK_ID_LEN);
			loc->pack = i;
			loc->entry = j;
			mk_xgrow(&p->alllocs, &p->lcap, p->nlocs + 1,
			    sizeof(*p->alllocs));
			p->alllocs[p->nlocs++] = loc;
			head = mk_hmap_get(p->locs, mk_pack_id_key(loc->id),
			    mk_pack_id_match, loc->id);
			if (head == NULL) {
				mk_hmap_put(
				    p->locs, mk_pack_id_key(loc->id), loc);
				continue;
			}
			loc->next = head->next;
			head->next = loc;
		}
	rc = 0;
out:
	mk_pack_reader_free(&reader);
	prune_names_free(&names);
	return rc;
}

/*
 * A live blob: pick the copy that counts (the catalog's, else one in a
 * pack without a tombstone) and mark it.  NULL: in no pack.
 */
static struct prune_loc *
prune_mark(struct prune *p, const uint8_t id[MK_PACK_ID_LEN])
{
	char where[MK_PACK_NAME_LEN + 1];
	struct prune_loc *head, *l;
	struct mk_err err;

	head = mk_hmap_get(p->locs, mk_pack_id_key(id), mk_pack_id_match, id);
	if (head == NULL) {
		p->res->missing_blobs++;
		return NULL;
	}
	if (head->marked)
		return head->chosen;
	head->marked = true;
	head->chosen = head;
	if (head->next != NULL) {
		where[0] = '\0';
		if (mk_catalog_blob_reusable(p->cat, id, where, NULL, &err) < 0)
			mk_log_warn("prune", "%s", err.msg);
		for (l = head; l != NULL; l = l->next)
			if (strcmp(p->packs[l->pack].out.id, where) == 0)
				break;
		if (l == NULL)
			for (l = head;
			     l != NULL && p->packs[l->pack].tombstoned;
			     l = l->next)
				;
		head->chosen = l != NULL ? l : head;
	}
	p->packs[head->chosen->pack].live[head->chosen->entry] = true;
	return head->chosen;
}

/* Mark a blob live in the one pack that a run object names. */
static void
prune_mark_at(struct prune *p, const struct mk_snapshot_loc *at)
{
	struct prune_loc *l;

	l = mk_hmap_get(p->locs, mk_pack_id_key(at->entry.id), mk_pack_id_match,
	    at->entry.id);
	for (; l != NULL; l = l->next)
		if (strcmp(p->packs[l->pack].out.id, at->pack) == 0) {
			p->packs[l->pack].live[l->entry] = true;
			return;
		}
	p->res->missing_blobs++;
}

static int
prune_read(struct prune *p, const struct prune_loc *l, uint8_t **data_r,
    size_t *len_r, struct mk_err *err)
{
	const struct prune_pack *pk = &p->packs[l->pack];

	return mk_repo_read_blob(p->repo, pk->out.id, &pk->entries[l->entry],
	    NULL, data_r, len_r, err);
}

static void
prune_mark_file(struct prune *p, const struct mk_snapshot_file *f)
{
	uint32_t i;

	for (i = 0; f->present && i < f->nblobs; i++)
		prune_mark(p, f->blobs[i]);
}

/* Whether a metadata blob was walked already; notes it if not. */
static bool
prune_seen(struct prune *p, const uint8_t id[MK_PACK_ID_LEN])
{
	if (mk_hmap_get(p->seen, mk_pack_id_key(id), mk_pack_id_match, id) !=
	    NULL)
		return true;
	mk_xgrow(&p->seenids, &p->scap, p->nseen + 1, sizeof(*p->seenids));
	p->seenids[p->nseen] = mk_xmalloc(MK_PACK_ID_LEN);
	memcpy(p->seenids[p->nseen], id, MK_PACK_ID_LEN);
	mk_hmap_put(p->seen, mk_pack_id_key(id), p->seenids[p->nseen]);
	p->nseen++;
	return false;
}

/* Mark everything a message list chunk refers to. */
static int
prune_walk_chunk(
    struct prune *p, const uint8_t id[MK_PACK_ID_LEN], struct mk_err *err)
{
	struct mk_snapshot_message *msgs = NULL;
	struct prune_loc *l;
	uint8_t *data = NULL;
	size_t len, n = 0, i;
	int rc = -1;

	if ((l = prune_mark(p, id)) == NULL || prune_seen(p, id))
		return 0;
	if (prune_read(p, l, &data, &len, err) < 0 ||
	    mk_snapshot_messages_decode(data, len, &msgs, &n, err) < 0)
		goto out;
	for (i = 0; i < n; i++)
		prune_mark_file(p, &msgs[i].file);
	rc = 0;
out:
	free(data);
	mk_snapshot_messages_free(&msgs, n);
	return rc;
}

/* Mark everything a mailbox snapshot refers to. */
static int
prune_walk_mailbox(
    struct prune *p, const uint8_t id[MK_PACK_ID_LEN], struct mk_err *err)
{
	struct mk_snapshot_mailbox *mb = NULL;
	struct prune_loc *l;
	uint8_t *data = NULL;
	size_t len, i;
	uint32_t j;
	int rc = -1;

	if ((l = prune_mark(p, id)) == NULL || prune_seen(p, id))
		return 0;
	if (prune_read(p, l, &data, &len, err) < 0 ||
	    mk_snapshot_mailbox_decode(data, len, &mb, err) < 0)
		goto out;
	prune_mark_file(p, &mb->subscriptions);
	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_snapshot_folder *f = &mb->folders[i];

		prune_mark_file(p, &f->uidlist);
		prune_mark_file(p, &f->keywords);
		prune_mark_file(p, &f->maildirfolder);
		for (j = 0; j < f->nchunks; j++)
			if (prune_walk_chunk(p, f->chunks[j], err) < 0)
				goto out;
	}
	rc = 0;
out:
	free(data);
	mk_snapshot_mailbox_free(&mb);
	return rc;
}

/* The live blobs: everything the snapshots kept refer to. */
static int
prune_walk(struct prune *p, struct mk_err *err)
{
	size_t i, j;

	for (i = 0; i < p->nruns; i++) {
		struct prune_run *r = &p->runs[i];

		for (j = 0; j < r->run->nchunks; j++)
			prune_mark_at(p, &r->run->chunks[j]);
		for (j = 0; j < r->n; j++) {
			if (p->res->snapshots[r->first + j].reasons == 0)
				continue;
			if (prune_walk_mailbox(p, r->entries[j].snapshot, err) <
			    0) {
				mk_err_prefix(err, "run %s, %s", r->run->id,
				    r->entries[j].address);
				return -1;
			}
		}
	}
	return 0;
}

/* What to do with each pack. */
static void
prune_decide(struct prune *p)
{
	const struct mk_prune_opts *o = p->opts;
	size_t i, j;

	for (i = 0; i < p->npacks; i++) {
		struct prune_pack *pk = &p->packs[i];

		if (pk->out.action == MK_PRUNE_KEEP)
			continue; /* unreadable index */
		pk->out.live_bytes = 0;
		for (j = 0; j < pk->count; j++)
			if (pk->live[j])
				pk->out.live_bytes += pk->entries[j].length;
		if (pk->tombstoned) {
			if (pk->out.live_bytes > 0)
				pk->out.action = MK_PRUNE_REVIVE;
			else if (p->now_ns - pk->tombstone_ns >= o->gc_grace_ns)
				pk->out.action = MK_PRUNE_DELETE;
			else
				pk->out.action = MK_PRUNE_WAIT;
		} else if (pk->out.live_bytes == 0)
			pk->out.action = MK_PRUNE_TOMBSTONE;
		else if (pk->out.live_bytes * 100 <
		    (uint64_t)o->repack_threshold * pk->out.size)
			pk->out.action = MK_PRUNE_REPACK;
		else
			pk->out.action = MK_PRUNE_KEEP;
	}
}

/* New packs made by repacking, with where their blobs are. */
struct prune_made {
	struct mk_pack **v;
	size_t n, cap;
};

/* Store and record the repack writer's pack, if it holds anything. */
static int
prune_flush(struct prune *p, struct mk_pack_writer **writerp,
    struct prune_made *made, struct mk_err *err)
{
	struct mk_pack *pack = NULL;

	if (*writerp == NULL || mk_pack_writer_count(*writerp) == 0)
		return 0;
	if (mk_pack_writer_finish(*writerp, &pack, err) < 0 ||
	    mk_repo_put_pack(p->repo, pack, err) < 0 ||
	    mk_catalog_begin(p->cat, err) < 0)
		goto fail;
	if (mk_catalog_pack_add(p->cat, pack, p->now_ns, err) < 0 ||
	    mk_catalog_commit(p->cat, err) < 0) {
		mk_catalog_rollback(p->cat);
		goto fail;
	}
	p->res->written_bytes += pack->len;
	free(pack->data); /* only the entries are needed from now on */
	pack->data = NULL;
	mk_xgrow(&made->v, &made->cap, made->n + 1, sizeof(*made->v));
	made->v[made->n++] = pack;
	mk_pack_writer_free(writerp);
	return 0;
fail:
	mk_pack_free(&pack);
	return -1;
}

/* Copy the live blobs of one pack into the writer. */
static int
prune_repack_one(struct prune *p, struct prune_pack *pk,
    struct mk_pack_writer **writerp, struct prune_made *made,
    struct mk_err *err)
{
	char name[MK_REPO_PACK_OBJECT_LEN + 1];
	struct mk_pack_reader *reader = NULL;
	struct mk_pack_entry entry;
	uint8_t *data = NULL, *blob = NULL;
	size_t len, blen, i;
	int rc = -1;

	if (mk_repo_pack_object(pk->out.id, name, err) < 0 ||
	    mk_storage_get(mk_repo_storage(p->repo), name, &data, &len, err) <
		0 ||
	    mk_pack_reader_open_mem(
		mk_repo_keys(p->repo), data, len, &reader, err) < 0)
		goto out;
	for (i = 0; i < pk->count; i++) {
		const struct mk_pack_dict *dict = NULL;

		if (!pk->live[i])
			continue;
		if (*writerp == NULL &&
		    mk_repo_pack_writer_new(p->repo, writerp, err) < 0)
			goto out;
		/* A blob keeps its dictionary: the copy names it too. */
		if ((pk->entries[i].compression == MK_PACK_ZSTD_DICT &&
			mk_repo_dict_get(
			    p->repo, pk->entries[i].dict_id, &dict, err) < 0) ||
		    mk_pack_reader_get_mem(reader, data, len, &pk->entries[i],
			dict, &blob, &blen, err) < 0 ||
		    mk_pack_writer_add(*writerp, pk->entries[i].type,
			pk->entries[i].id, blob, blen, dict, &entry, err) < 0)
			goto out;
		free(blob);
		blob = NULL;
		if (mk_pack_writer_full(*writerp) &&
		    prune_flush(p, writerp, made, err) < 0)
			goto out;
	}
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(err, "repacking %.16s", pk->out.id);
	free(blob);
	free(data);
	mk_pack_reader_free(&reader);
	return rc;
}

/* Where a repacked blob is now. */
static bool
prune_made_find(const struct prune_made *made, const uint8_t *id,
    struct mk_snapshot_loc *loc)
{
	size_t i, j;

	for (i = 0; i < made->n; i++)
		for (j = 0; j < made->v[i]->count; j++)
			if (memcmp(made->v[i]->entries[j].id, id,
				MK_PACK_ID_LEN) == 0) {
				memcpy(loc->pack, made->v[i]->id,
				    MK_PACK_NAME_LEN + 1);
				loc->entry = made->v[i]->entries[j];
				return true;
			}
	return false;
}

static bool
prune_is(const struct prune *p, const char *pack, enum mk_prune_action a)
{
	size_t i;

	for (i = 0; i < p->npacks; i++)
		if (strcmp(p->packs[i].out.id, pack) == 0)
			return p->packs[i].out.action == a;
	return false;
}

/*
 * Repack, in this order: the live blobs into new packs (durable,
 * recorded); run objects whose lists were in the old packs, rewritten;
 * the catalog repointed (old packs marked, new ones recorded again);
 * then the tombstones of the old packs.
 */
static int
prune_repack(struct prune *p, struct mk_err *err)
{
	struct mk_pack_writer *writer = NULL;
	struct prune_made made;
	size_t i, j;
	int rc = -1;

	memset(&made, 0, sizeof(made));
	for (i = 0; i < p->npacks; i++)
		if (p->packs[i].out.action == MK_PRUNE_REPACK &&
		    prune_repack_one(p, &p->packs[i], &writer, &made, err) < 0)
			goto out;
	if (prune_flush(p, &writer, &made, err) < 0)
		goto out;
	for (i = 0; i < p->nruns; i++) {
		struct prune_run *r = &p->runs[i];
		bool moved = false;

		for (j = 0; j < r->run->nchunks; j++) {
			struct mk_snapshot_loc *loc = &r->run->chunks[j];

			if (!prune_is(p, loc->pack, MK_PRUNE_REPACK))
				continue;
			if (!prune_made_find(&made, loc->entry.id, loc)) {
				mk_err_set(err,
				    "run %s: a list chunk was not repacked",
				    r->run->id);
				goto out;
			}
			moved = true;
		}
		r->changed = false;
		if (moved && prune_run_rewrite(p, r, err) < 0)
			goto out;
	}
	if (mk_catalog_begin(p->cat, err) < 0)
		goto out;
	for (i = 0; i < p->npacks; i++)
		if (p->packs[i].out.action == MK_PRUNE_REPACK &&
		    mk_catalog_pack_tombstone(
			p->cat, p->packs[i].out.id, p->now_ns, err) < 0)
			goto rollback;
	for (i = 0; i < made.n; i++)
		if (mk_catalog_pack_add(p->cat, made.v[i], p->now_ns, err) < 0)
			goto rollback;
	if (mk_catalog_commit(p->cat, err) < 0)
		goto rollback;
	for (i = 0; i < p->npacks; i++)
		if (p->packs[i].out.action == MK_PRUNE_REPACK) {
			if (prune_tombstone_put(
				p, p->packs[i].out.id, "repacked", err) < 0)
				goto out;
			p->res->repacked_bytes += p->packs[i].out.size;
		}
	rc = 0;
	goto out;
rollback:
	mk_catalog_rollback(p->cat);
out:
	mk_pack_writer_free(&writer);
	for (i = 0; i < made.n; i++)
		mk_pack_free(&made.v[i]);
	free(made.v);
	return rc;
}

/* Tombstones for unused packs, revivals, and deletions after grace. */
static int
prune_apply(struct prune *p, struct mk_err *err)
{
	char name[MK_REPO_PACK_OBJECT_LEN + sizeof(PRUNE_TOMBSTONES)];
	struct mk_storage *st = mk_repo_storage(p->repo);
	size_t i;

	for (i = 0; i < p->npacks; i++) {
		struct prune_pack *pk = &p->packs[i];

		snprintf(
		    name, sizeof(name), "%s%s", PRUNE_TOMBSTONES, pk->out.id);
		switch (pk->out.action) {
		case MK_PRUNE_TOMBSTONE:
			/* The catalog first: no backup reuses it from now. */
			if (mk_catalog_pack_tombstone(
				p->cat, pk->out.id, p->now_ns, err) < 0 ||
			    prune_tombstone_put(p, pk->out.id, "unused", err) <
				0)
				return -1;
			break;
		case MK_PRUNE_REVIVE:
			mk_log_info("prune",
			    "pack %s is referenced again: tombstone removed",
			    pk->out.id);
			if (mk_storage_delete(st, name, err) < 0 ||
			    mk_catalog_pack_revive(p->cat, pk->out.id, err) < 0)
				return -1;
			break;
		case MK_PRUNE_DELETE:
			if (p->opts->lock != NULL &&
			    mk_lock_check(p->opts->lock, err) < 0)
				return -1;
			/* The pack, then its tombstone: a crash between
			 * leaves a tombstone without pack, removed next. */
			if (mk_repo_pack_object(pk->out.id, name, err) < 0 ||
			    mk_storage_delete(st, name, err) < 0)
				return -1;
			snprintf(name, sizeof(name), "%s%s", PRUNE_TOMBSTONES,
			    pk->out.id);
			if (mk_storage_delete(st, name, err) < 0 ||
			    mk_catalog_pack_drop(p->cat, pk->out.id, err) < 0)
				return -1;
			p->res->deleted_bytes += pk->out.size;
			break;
		default:
			break;
		}
	}
	/* Tombstones whose pack is gone (a crash after the delete). */
	for (i = 0; i < p->ntomb; i++) {
		size_t j;

		for (j = 0; j < p->npacks; j++)
			if (strcmp(p->packs[j].out.id, p->tomb[i].pack) == 0)
				break;
		if (j < p->npacks)
			continue;
		snprintf(name, sizeof(name), "%s%s", PRUNE_TOMBSTONES,
		    p->tomb[i].pack);
		if (mk_storage_delete(st, name, err) < 0 ||
		    mk_catalog_pack_drop(p->cat, p->tomb[i].pack, err) < 0)
			return -1;
	}
	return 0;
}

/* Open runs of the catalog, to be published before anything else. */
struct prune_open {
	int64_t *v;
	size_t n, cap;
};

static void
prune_open_cb(int64_t run, const char *name, int64_t started_ns, void *arg)
{
	struct prune_open *o = arg;

	(void)name;
	(void)started_ns;
	mk_xgrow(&o->v, &o->cap, o->n + 1, sizeof(*o->v));
	o->v[o->n++] = run;
}

static int
prune_publish_open(struct prune *p, struct mk_err *err)
{
	struct prune_open open;
	size_t i;
	int rc = -1;

	memset(&open, 0, sizeof(open));
	if (mk_catalog_runs_open(p->cat, prune_open_cb, &open, err) < 0)
		goto out;
	for (i = 0; i < open.n; i++) {
		if (mk_backup_run_end(p->repo, p->cat, open.v[i], err) < 0)
			goto out;
		mk_log_warn("prune", "an interrupted run was published first");
	}
	rc = 0;
out:
	free(open.v);
	return rc;
}

static void
prune_free(struct prune *p)
{
	size_t i;

	for (i = 0; i < p->nruns; i++) {
		mk_snapshot_run_free(&p->runs[i].run);
		mk_snapshot_entries_free(&p->runs[i].entries, p->runs[i].n);
	}
	free(p->runs);
	for (i = 0; i < p->npacks; i++) {
		free(p->packs[i].entries);
		free(p->packs[i].live);
	}
	free(p->packs);
	for (i = 0; i < p->nlocs; i++)
		free(p->alllocs[i]);
	free(p->alllocs);
	for (i = 0; i < p->nseen; i++)
		free(p->seenids[i]);
	free(p->seenids);
	free(p->tomb);
	mk_hmap_free(&p->tombs);
	mk_hmap_free(&p->locs);
	mk_hmap_free(&p->seen);
}

int
mk_prune_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_prune_opts *opts, struct mk_prune_result *res,
    struct mk_err *err)
{
	struct prune p;
	size_t i;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	memset(&p, 0, sizeof(p));
	p.repo = repo;
	p.cat = cat;
	p.opts = opts;
	p.res = res;
	p.now_ns = prune_now_ns();
	if (gethostname(p.host, sizeof(p.host) - 1) < 0)
		p.host[0] = '\0';
	p.host[strcspn(p.host, "/")] = '\0';
	p.tombs = mk_hmap_new();
	p.locs = mk_hmap_new();
	p.seen = mk_hmap_new();
	if ((!opts->dry_run && prune_publish_open(&p, err) < 0) ||
	    prune_load_tombstones(&p, err) < 0 || prune_load_runs(&p, err) < 0)
		goto out;
	prune_retention(&p);
	if (!opts->dry_run) {
		for (i = 0; i < p.nruns; i++)
			if (p.runs[i].changed &&
			    prune_run_rewrite(&p, &p.runs[i], err) < 0)
				goto out;
		/* Always: it also finishes what a crash left undone. */
		if (prune_catalog_forget(&p, err) < 0)
			goto out;
	}
	if (opts->gc) {
		if (prune_load_packs(&p, err) < 0 || prune_walk(&p, err) < 0)
			goto out;
		prune_decide(&p);
		if (!opts->dry_run &&
		    (prune_repack(&p, err) < 0 || prune_apply(&p, err) < 0))
			goto out;
		res->packs = mk_xcalloc(p.npacks + 1, sizeof(*res->packs));
		for (i = 0; i < p.npacks; i++)
			res->packs[i] = p.packs[i].out;
		res->npacks = p.npacks;
	}
	if (!opts->dry_run) {
		struct mk_err cerr;

		if (mk_catalog_checkpoint(cat, &cerr) < 0)
			mk_log_warn("prune", "%s", cerr.msg);
	}
	rc = 0;
out:
	prune_free(&p);
	return rc;
}

/* Catalog packs gone from the repository or tombstoned in it. */
struct prune_sync {
	char **v;
	size_t n, cap;
};

static void
prune_sync_cb(const char *name, uint64_t size, bool tombstoned, void *arg)
{
	struct prune_sync *s = arg;

	(void)size;
	if (tombstoned)
		return;
	mk_xgrow(&s->v, &s->cap, s->n + 1, sizeof(*s->v));
	s->v[s->n++] = mk_xstrdup(name);
}

int
mk_prune_sync(struct mk_repo *repo, struct mk_catalog *cat, struct mk_err *err)
{
	struct prune_names tombs, packs;
	struct prune_sync s;
	struct mk_hmap *there = mk_hmap_new(), *dead = mk_hmap_new();
	const char *id;
	size_t i;
	int rc = -1;

	memset(&tombs, 0, sizeof(tombs));
	memset(&packs, 0, sizeof(packs));
	memset(&s, 0, sizeof(s));
	if (mk_storage_list(mk_repo_storage(repo), PRUNE_TOMBSTONES,
		prune_names_cb, &tombs, err) < 0 ||
	    mk_storage_list(mk_repo_storage(repo), "packs/", prune_names_cb,
		&packs, err) < 0 ||
	    mk_catalog_packs(cat, prune_sync_cb, &s, err) < 0)
		goto out;
	/* Usable: a pack that is there and has no tombstone. */
	for (i = 0; i < packs.n; i++)
		if ((id = prune_pack_id(packs.v[i], "packs/")) != NULL)
			mk_hmap_put(there, mk_hmap_hash(id, MK_PACK_NAME_LEN),
			    (void *)id);
	for (i = 0; i < tombs.n; i++)
		if ((id = prune_pack_id(tombs.v[i], PRUNE_TOMBSTONES)) != NULL)
			mk_hmap_put(dead, mk_hmap_hash(id, MK_PACK_NAME_LEN),
			    (void *)id);
	if (mk_catalog_begin(cat, err) < 0)
		goto out;
	for (i = 0; i < s.n; i++)
		if ((mk_hmap_get(there, mk_hmap_hash(s.v[i], MK_PACK_NAME_LEN),
			 prune_name_match, s.v[i]) == NULL ||
			mk_hmap_get(dead,
			    mk_hmap_hash(s.v[i], MK_PACK_NAME_LEN),
			    prune_name_match, s.v[i]) != NULL) &&
		    mk_catalog_pack_tombstone(
			cat, s.v[i], prune_now_ns(), err) < 0) {
			mk_catalog_rollback(cat);
			goto out;
		}
	if (mk_catalog_commit(cat, err) < 0) {
		mk_catalog_rollback(cat);
		goto out;
	}
	rc = 0;
out:
	for (i = 0; i < s.n; i++)
		free(s.v[i]);
	free(s.v);
	mk_hmap_free(&there);
	mk_hmap_free(&dead);
	prune_names_free(&tombs);
	prune_names_free(&packs);
	return rc;
}
