#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/aliases.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

struct aliases_entry {
	char *key; /* lower case */
	char **results; /* lower case, in file order */
	size_t nresults;
	unsigned long line;
};

struct mk_aliases {
	struct aliases_entry *entries; /* sorted by key, keys unique */
	size_t count;
};

/* The state of one parse. */
struct aliases_parse {
	const char *name;
	struct mk_aliases *map;
	size_t cap;
	char *logical; /* the entry being read, continuation lines joined */
	size_t len;
	size_t lcap;
	unsigned long line; /* where it started */
	struct mk_warnings *skipped;
};

static void
aliases_entry_clear(struct aliases_entry *e)
{
	size_t i;

	for (i = 0; i < e->nresults; i++)
		free(e->results[i]);
	free(e->results);
	free(e->key);
}

void
mk_aliases_free(struct mk_aliases **mapp)
{
	struct mk_aliases *map = *mapp;
	size_t i;

	if (map == NULL)
		return;
	for (i = 0; i < map->count; i++)
		aliases_entry_clear(&map->entries[i]);
	free(map->entries);
	free(map);
	*mapp = NULL;
}

size_t
mk_aliases_count(const struct mk_aliases *map)
{
	return map->count;
}

/* A lower-case copy of s[0..len). */
static char *
aliases_lower_dup(const char *s, size_t len)
{
	char *p = mk_xstrndup(s, len);

	mk_str_lower(p);
	return p;
}

/* Turn the logical line held in ps into an entry. */
static int
aliases_entry_add(struct aliases_parse *ps, struct mk_err *err)
{
	static const char seps[] = " \t,";
	const char *p = ps->logical;
	struct aliases_entry e;
	size_t cap = 0, n;

	memset(&e, 0, sizeof(e));
	e.line = ps->line;
	n = strcspn(p, " \t");
	if (n > MK_ALIASES_ADDRESS_MAX)
		return mk_err_set(err, "%s:%lu: pattern longer than %d bytes",
		    ps->name, ps->line, MK_ALIASES_ADDRESS_MAX);
	e.key = aliases_lower_dup(p, n);
	for (p += n; *(p += strspn(p, seps)) != '\0'; p += n) {
		n = strcspn(p, seps);
		if (n > MK_ALIASES_ADDRESS_MAX) {
			aliases_entry_clear(&e);
			return mk_err_set(err,
			    "%s:%lu: result longer than %d bytes", ps->name,
			    ps->line, MK_ALIASES_ADDRESS_MAX);
		}
		mk_xgrow(&e.results, &cap, e.nresults + 1, sizeof(*e.results));
		e.results[e.nresults++] = aliases_lower_dup(p, n);
	}
	if (e.nresults == 0) {
		mk_err_set(err, "%s:%lu: '%s' has no result", ps->name,
		    ps->line, e.key);
		aliases_entry_clear(&e);
		return -1;
	}
	if (strchr(e.key, '@') == NULL) {
		if (ps->skipped != NULL)
			mk_warnings_add(ps->skipped,
			    "%s:%lu: '%s' not used (no '@')", ps->name,
			    ps->line, e.key);
		aliases_entry_clear(&e);
		return 0;
	}
	mk_xgrow(&ps->map->entries, &ps->cap, ps->map->count + 1,
	    sizeof(*ps->map->entries));
	ps->map->entries[ps->map->count++] = e;
	return 0;
}

/* Append one physical line to the logical line (a blank between). */
static void
aliases_append(struct aliases_parse *ps, const char *s, size_t n)
{
	mk_xgrow(&ps->logical, &ps->lcap, ps->len + n + 2, 1);
	if (ps->len > 0)
		ps->logical[ps->len++] = ' ';
	memcpy(ps->logical + ps->len, s, n);
	ps->len += n;
	ps->logical[ps->len] = '\0';
}

/* Finish the logical line being read, if there is one. */
static int
aliases_flush(struct aliases_parse *ps, struct mk_err *err)
{
	int rc;

	if (ps->len == 0)
		return 0;
	rc = aliases_entry_add(ps, err);
	ps->len = 0;
	return rc;
}

static int
aliases_entry_cmp(const void *a, const void *b)
{
	const struct aliases_entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* Sort the entries and keep the first of each key, as postmap does. */
static void
aliases_sort(struct aliases_parse *ps)
{
	struct mk_aliases *map = ps->map;
	size_t i, kept = 0;

	if (map->count == 0)
		return;
	qsort(
	    map->entries, map->count, sizeof(*map->entries), aliases_entry_cmp);
	for (i = 0; i < map->count; i++) {
		if (kept > 0 &&
		    strcmp(map->entries[kept - 1].key, map->entries[i].key) ==
			0) {
			if (ps->skipped != NULL)
				mk_warnings_add(ps->skipped,
				    "%s:%lu: '%s' again, line %lu kept",
				    ps->name, map->entries[i].line,
				    map->entries[i].key,
				    map->entries[kept - 1].line);
			aliases_entry_clear(&map->entries[i]);
			continue;
		}
		map->entries[kept++] = map->entries[i];
	}
	map->count = kept;
}

int
mk_aliases_parse(const char *name, const char *text, size_t len,
    struct mk_aliases **map_r, struct mk_warnings *skipped, struct mk_err *err)
{
	struct aliases_parse ps;
	const char *p = text, *end = text + len;
	unsigned long lineno = 0;
	int rc = -1;

	*map_r = NULL;
	memset(&ps, 0, sizeof(ps));
	ps.name = name;
	ps.skipped = skipped;
	ps.map = mk_xcalloc(1, sizeof(*ps.map));
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = (eol != NULL ? eol : end) - p, blank;

		lineno++;
		if (memchr(p, '\0', n) != NULL) {
			mk_err_set(err, "%s:%lu: NUL byte", name, lineno);
			goto out;
		}
		if (n > 0 && p[n - 1] == '\r')
			n--;
		for (blank = 0;
		     blank < n && (p[blank] == ' ' || p[blank] == '\t');
		     blank++)
			;
		if (blank == n || p[blank] == '#') {
			/* Empty and comment lines do not end an entry. */
		} else if (blank > 0) {
			if (ps.len == 0) {
				mk_err_set(err, "%s:%lu: nothing to continue",
				    name, lineno);
				goto out;
			}
			aliases_append(&ps, p + blank, n - blank);
		} else {
			if (aliases_flush(&ps, err) < 0)
				goto out;
			ps.line = lineno;
			aliases_append(&ps, p, n);
		}
		p = eol != NULL ? eol + 1 : end;
	}
	if (aliases_flush(&ps, err) < 0)
		goto out;
	aliases_sort(&ps);
	*map_r = ps.map;
	ps.map = NULL;
	rc = 0;
out:
	free(ps.logical);
	mk_aliases_free(&ps.map);
	return rc;
}

int
mk_aliases_load(const char *path, struct mk_aliases **map_r,
    struct mk_warnings *skipped, struct mk_err *err)
{
	char *data = NULL;
	size_t len = 0;
	int rc;

	*map_r = NULL;
	if (mk_fs_read_file(path, MK_ALIASES_FILE_MAX, &data, &len, err) < 0)
		return -1;
	rc = mk_aliases_parse(path, data, len, map_r, skipped, err);
	free(data);
	return rc;
}

/* Binary search of the sorted keys. */
static const struct aliases_entry *
aliases_find(const struct mk_aliases *map, const char *key)
{
	size_t lo = 0, hi = map != NULL ? map->count : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, map->entries[mid].key);

		if (c == 0)
			return &map->entries[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/*
 * Where the extension of a local part starts (at its delimiter), or len
 * when it has none.  The exceptions are Postfix's split_addr().
 */
static size_t
aliases_ext_start(const char *local, size_t len, const char *delims)
{
	size_t n;

	if (delims[0] == '\0' || memchr(local, '@', len) != NULL)
		return len;
	if ((len == 10 && strncmp(local, "postmaster", 10) == 0) ||
	    (len == 13 && strncmp(local, "mailer-daemon", 13) == 0) ||
	    (len == 13 && strncmp(local, "double-bounce", 13) == 0))
		return len;
	if (strchr(delims, '-') != NULL &&
	    ((len >= 6 && strncmp(local, "owner-", 6) == 0) ||
		(len > 8 && strncmp(local + len - 8, "-request", 8) == 0)))
		return len;
	/* local ends at the '@' (or the NUL): strcspn stays inside addr. */
	if ((n = strcspn(local, delims)) > len)
		n = len;
	return n == 0 ? len : n;
}

/*
 * addr without its extension into buf; false when it has none.  The
 * extension (with its delimiter) goes to ext when that is not NULL.
 */
static bool
aliases_strip(const char *addr, const char *delims, char *buf, size_t size,
    char *ext, size_t extsize)
{
	const char *at = strrchr(addr, '@');
	size_t len = at != NULL ? (size_t)(at - addr) : strlen(addr);
	size_t e = aliases_ext_start(addr, len, delims);

	if (e == len)
		return false;
	snprintf(buf, size, "%.*s%s", (int)e, addr, addr + len);
	if (ext != NULL)
		snprintf(ext, extsize, "%.*s", (int)(len - e), addr + e);
	return true;
}

/*
 * The entry for addr in virtual(5) order.  *ext gets the extension to
 * propagate to the results ("" when the match kept it).
 */
static const struct aliases_entry *
aliases_lookup(const struct mk_aliases *map, const char *addr,
    const char *delims, char *ext, size_t extsize)
{
	char bare[MK_ALIASES_ADDRESS_MAX + 1];
	const struct aliases_entry *e;
	const char *at;

	ext[0] = '\0';
	if (map == NULL || map->count == 0)
		return NULL;
	if ((e = aliases_find(map, addr)) != NULL)
		return e;
	if (aliases_strip(addr, delims, bare, sizeof(bare), ext, extsize) &&
	    (e = aliases_find(map, bare)) != NULL)
		return e;
	ext[0] = '\0';
	if ((at = strrchr(addr, '@')) != NULL)
		return aliases_find(map, at);
	return NULL;
}

/* The state of one expansion. */
struct aliases_walk {
	const struct mk_aliases *map;
	const char *delims;
	mk_aliases_local_cb *local_cb;
	void *arg;
	struct mk_aliases_expansion *exp;
	size_t cap;
	const char *path[MK_ALIASES_DEPTH_MAX]; /* the addresses above */
	size_t depth;
	size_t seen;
	struct mk_err *err;
};

static void
aliases_add_target(struct aliases_walk *w, const char *addr)
{
	struct mk_aliases_expansion *exp = w->exp;
	size_t i;

	for (i = 0; i < exp->ntargets; i++)
		if (strcmp(exp->targets[i], addr) == 0)
			return;
	mk_xgrow(
	    &exp->targets, &w->cap, exp->ntargets + 1, sizeof(*exp->targets));
	exp->targets[exp->ntargets++] = mk_xstrdup(addr);
}

/* A final address: a local target (with or without extension) or remote. */
static void
aliases_final(struct aliases_walk *w, const char *addr)
{
	char bare[MK_ALIASES_ADDRESS_MAX + 1];

	if (w->local_cb(w->arg, addr) == 1)
		aliases_add_target(w, addr);
	else if (aliases_strip(addr, w->delims, bare, sizeof(bare), NULL, 0) &&
	    w->local_cb(w->arg, bare) == 1)
		aliases_add_target(w, bare);
	else
		w->exp->remote = true;
}

/* Describe the cycle that comes back to addr, for the error. */
static int
aliases_loop_error(struct aliases_walk *w, size_t from, const char *addr)
{
	char buf[MK_ERR_MSG_MAX] = "";
	size_t i, len = 0;

	for (i = from; i < w->depth && len < sizeof(buf); i++)
		len += (size_t)snprintf(
		    buf + len, sizeof(buf) - len, "%s -> ", w->path[i]);
	if (len < sizeof(buf))
		snprintf(buf + len, sizeof(buf) - len, "%s", addr);
	return mk_err_set(w->err, "alias loop: %s", buf);
}

/*
 * Expand addr depth first: a result that is addr itself is final, one
 * with an entry is expanded again, any other is final.
 */
static int
aliases_walk(struct aliases_walk *w, const char *addr)
{
	char ext[MK_ALIASES_ADDRESS_MAX + 1];
	const struct aliases_entry *e;
	size_t i;

	if (++w->seen > MK_ALIASES_TARGETS_MAX)
		return mk_err_set(w->err,
		    "alias expansion of more than %d addresses",
		    MK_ALIASES_TARGETS_MAX);
	e = aliases_lookup(w->map, addr, w->delims, ext, sizeof(ext));
	if (e == NULL) {
		aliases_final(w, addr);
		return 0;
	}
	for (i = 0; i < w->depth; i++)
		if (strcmp(w->path[i], addr) == 0)
			return aliases_loop_error(w, i, addr);
	if (w->depth == MK_ALIASES_DEPTH_MAX)
		return mk_err_set(w->err,
		    "aliases nested deeper than %d levels at %s",
		    MK_ALIASES_DEPTH_MAX, addr);
	w->path[w->depth++] = addr;
	for (i = 0; i < e->nresults; i++) {
		char next[MK_ALIASES_ADDRESS_MAX + 1];
		const char *r = e->results[i], *at = strrchr(r, '@');
		size_t local = at != NULL ? (size_t)(at - r) : strlen(r);

		/* Propagate the unmatched extension into the local part. */
		if ((size_t)snprintf(next, sizeof(next), "%.*s%s%s", (int)local,
			r, ext, r + local) >= sizeof(next))
			return mk_err_set(
			    w->err, "alias result too long: %s", r);
		if (strcmp(next, addr) == 0)
			aliases_final(w, addr);
		else if (aliases_walk(w, next) < 0)
			return -1;
	}
	w->depth--;
	return 0;
}

int
mk_aliases_expand(const struct mk_aliases *map, const char *address,
    const char *delims, mk_aliases_local_cb *local_cb, void *arg,
    struct mk_aliases_expansion *exp_r, struct mk_err *err)
{
	char addr[MK_ALIASES_ADDRESS_MAX + 1];
	size_t len = strlen(address);
	struct aliases_walk w;

	memset(exp_r, 0, sizeof(*exp_r));
	if (len >= 2 && address[0] == '<' && address[len - 1] == '>') {
		address++;
		len -= 2;
	}
	if (len == 0)
		return mk_err_set(err, "empty address");
	if (len > MK_ALIASES_ADDRESS_MAX)
		return mk_err_set(err, "address longer than %d bytes",
		    MK_ALIASES_ADDRESS_MAX);
	memcpy(addr, address, len);
	addr[len] = '\0';
	mk_str_lower(addr);
	memset(&w, 0, sizeof(w));
	w.map = map;
	w.delims = delims;
	w.local_cb = local_cb;
	w.arg = arg;
	w.exp = exp_r;
	w.err = err;
	if (aliases_walk(&w, addr) < 0) {
		mk_aliases_expansion_clear(exp_r);
		return -1;
	}
	return 0;
}

void
mk_aliases_expansion_clear(struct mk_aliases_expansion *exp)
{
	size_t i;

	for (i = 0; i < exp->ntargets; i++)
		free(exp->targets[i]);
	free(exp->targets);
	memset(exp, 0, sizeof(*exp));
}

bool
mk_aliases_refuse(
    enum mk_aliases_policy policy, size_t ntargets, size_t nfull, bool remote)
{
	if (ntargets == 0 || nfull == 0)
		return false;
	if (policy == MK_ALIASES_ANY)
		return true;
	return nfull >= ntargets && !remote;
}

const char *
mk_aliases_policy_name(enum mk_aliases_policy policy)
{
	return policy == MK_ALIASES_ANY ? "any" : "all";
}

int
mk_aliases_policy_parse(
    const char *s, enum mk_aliases_policy *policy_r, struct mk_err *err)
{
	if (strcmp(s, "all") == 0)
		*policy_r = MK_ALIASES_ALL;
	else if (strcmp(s, "any") == 0)
		*policy_r = MK_ALIASES_ANY;
	else
		return mk_err_set(err, "alias policy '%s': use all or any", s);
	return 0;
}
