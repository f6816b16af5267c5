#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#define STORE_COMPONENTS_MAX 16

enum store_var {
	STORE_LITERAL,
	STORE_DOMAIN,
	STORE_LOCAL,
	STORE_USER,
};

struct store_component {
	enum store_var var;
	char *prefix; /* the literal, or the text before the variable */
	char *suffix; /* the text after the variable */
};

struct mk_store {
	char *root;
	char *tmpl;
	struct store_component comps[STORE_COMPONENTS_MAX];
	size_t ncomps;
};

/* Values captured while walking, one per variable. */
struct store_walk {
	const struct mk_store *store;
	mk_store_dir_cb *dir_cb;
	void *arg;
	char values[4][NAME_MAX + 1];
	struct mk_store_list *list;
	size_t cap;
};

static int
store_parse_component(const char *tmpl, const char *s, size_t len,
    struct store_component *c, unsigned *seen, struct mk_err *err)
{
	const char *pct = memchr(s, '%', len);
	const char *v;

	if ((len == 1 && s[0] == '.') || (len == 2 && memcmp(s, "..", 2) == 0))
		return mk_err_set(
		    err, "template '%s': '.' and '..' are not allowed", tmpl);
	if (pct == NULL) {
		c->var = STORE_LITERAL;
		c->prefix = mk_xstrndup(s, len);
		c->suffix = mk_xstrdup("");
		return 0;
	}
	v = pct + 1;
	if (v < s + len && *v == 'L')
		v++;
	if (v >= s + len)
		return mk_err_set(
		    err, "template '%s': '%%' at the end of a component", tmpl);
	switch (*v) {
	case 'd':
		c->var = STORE_DOMAIN;
		break;
	case 'n':
		c->var = STORE_LOCAL;
		break;
	case 'u':
		c->var = STORE_USER;
		break;
	default:
		return mk_err_set(err,
		    "template '%s': unsupported variable '%%%c' (use %%d, %%n "
		    "or %%u)",
		    tmpl, *v);
	}
	if (*seen & (1u << c->var))
		return mk_err_set(
		    err, "template '%s': variable '%%%c' used twice", tmpl, *v);
	*seen |= 1u << c->var;
	if (memchr(v + 1, '%', (size_t)(s + len - (v + 1))) != NULL)
		return mk_err_set(err,
		    "template '%s': only one variable per path component",
		    tmpl);
	c->prefix = mk_xstrndup(s, (size_t)(pct - s));
	c->suffix = mk_xstrndup(v + 1, (size_t)(s + len - (v + 1)));
	return 0;
}

int
mk_store_new(const char *root, const char *tmpl, struct mk_store **store_r,
    struct mk_err *err)
{
	struct mk_store *store;
	const char *p = tmpl;
	unsigned seen = 0;

	*store_r = NULL;
	if (root[0] != '/')
		return mk_err_set(
		    err, "store root '%s': not an absolute path", root);
	if (tmpl[0] == '/' || tmpl[0] == '\0')
		return mk_err_set(err,
		    "template '%s': must be a relative path such as "
		    "%%d/%%n/Maildir",
		    tmpl);
	store = mk_xcalloc(1, sizeof(*store));
	store->root = mk_xstrdup(root);
	store->tmpl = mk_xstrdup(tmpl);
	while (*p != '\0') {
		size_t len = strcspn(p, "/");

		if (len == 0) {
			p++;
			continue;
		}
		if (store->ncomps == STORE_COMPONENTS_MAX) {
			mk_err_set(
			    err, "template '%s': too many components", tmpl);
			goto fail;
		}
		if (store_parse_component(tmpl, p, len,
			&store->comps[store->ncomps], &seen, err) < 0)
			goto fail;
		store->ncomps++;
		p += len;
	}
	if (!(seen & (1u << STORE_USER)) &&
	    (seen & ((1u << STORE_DOMAIN) | (1u << STORE_LOCAL))) !=
		((1u << STORE_DOMAIN) | (1u << STORE_LOCAL))) {
		mk_err_set(
		    err, "template '%s': needs %%u, or both %%d and %%n", tmpl);
		goto fail;
	}
	*store_r = store;
	return 0;
fail:
	mk_store_free(&store);
	return -1;
}

void
mk_store_free(struct mk_store **storep)
{
	struct mk_store *store = *storep;
	size_t i;

	if (store == NULL)
		return;
	for (i = 0; i < STORE_COMPONENTS_MAX; i++) {
		free(store->comps[i].prefix);
		free(store->comps[i].suffix);
	}
	free(store->root);
	free(store->tmpl);
	free(store);
	*storep = NULL;
}

const char *
mk_store_root(const struct mk_store *store)
{
	return store->root;
}

int
mk_store_open_root(const struct mk_store *store, struct mk_err *err)
{
	int fd = open(store->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return mk_err_sys(err, "open(%s)", store->root);
	return fd;
}

/* Is value usable as (part of) one path component? */
static bool
store_value_ok(const char *v)
{
	return v[0] != '\0' && strchr(v, '/') == NULL && strcmp(v, ".") != 0 &&
	    strcmp(v, "..") != 0 && v[0] != '.';
}

int
mk_store_mailbox_path(const struct mk_store *store, const char *address,
    char *buf, size_t size, struct mk_err *err)
{
	char values[4][NAME_MAX + 1];
	const char *at;
	size_t i, pos = 0;

	if (mk_strlcpy(values[STORE_USER], address, NAME_MAX + 1) > NAME_MAX)
		return mk_err_set(
		    err, "mailbox '%s': address too long", address);
	mk_str_lower(values[STORE_USER]);
	at = strrchr(values[STORE_USER], '@');
	if (at != NULL) {
		size_t llen = (size_t)(at - values[STORE_USER]);

		memcpy(values[STORE_LOCAL], values[STORE_USER], llen);
		values[STORE_LOCAL][llen] = '\0';
		mk_strlcpy(values[STORE_DOMAIN], at + 1, NAME_MAX + 1);
	} else {
		mk_strlcpy(
		    values[STORE_LOCAL], values[STORE_USER], NAME_MAX + 1);
		values[STORE_DOMAIN][0] = '\0';
	}
	for (i = 0; i < store->ncomps; i++) {
		const struct store_component *c = &store->comps[i];
		const char *v = c->var == STORE_LITERAL ? "" : values[c->var];
		int n;

		if (c->var != STORE_LITERAL && !store_value_ok(v))
			return mk_err_set(err,
			    "mailbox '%s': not an address of this store "
			    "(user@domain)",
			    address);
		n = snprintf(buf + pos, size - pos, "%s%s%s%s",
		    i > 0 ? "/" : "", c->prefix, v, c->suffix);
		if (n < 0 || (size_t)n >= size - pos)
			return mk_err_set(
			    err, "mailbox '%s': path too long", address);
		pos += (size_t)n;
	}
	return 0;
}

static int
store_address_cmp(const void *a, const void *b)
{
	const struct mk_store_mailbox *x = a, *y = b;

	return strcmp(x->address, y->address);
}

/* Add the mailbox found with the captured values. */
static void
store_walk_found(struct store_walk *w, const char *relpath)
{
	struct mk_store_list *list = w->list;
	struct mk_store_mailbox *m;
	char *address;

	if (w->values[STORE_USER][0] != '\0')
		address = mk_xstrdup(w->values[STORE_USER]);
	else
		address = mk_xasprintf(
		    "%s@%s", w->values[STORE_LOCAL], w->values[STORE_DOMAIN]);
	mk_str_lower(address);
	mk_xgrow(&list->mailboxes, &w->cap, list->count + 1,
	    sizeof(*list->mailboxes));
	m = &list->mailboxes[list->count++];
	m->address = address;
	m->relpath = mk_xstrdup(relpath);
}

static int store_walk_level(struct store_walk *w, int dirfd, size_t level,
    char *relpath, size_t rellen, struct mk_err *err);

/* Descend into name, a directory entry of dirfd matching component level. */
static int
store_walk_enter(struct store_walk *w, int dirfd, size_t level,
    const char *name, char *relpath, size_t rellen, struct mk_err *err)
{
	int fd, rc;
	size_t n;

	n = (size_t)snprintf(relpath + rellen, PATH_MAX - rellen, "%s%s",
	    rellen > 0 ? "/" : "", name);
	if (n >= PATH_MAX - rellen) {
		mk_warnings_add(
		    &w->list->warnings, "%s/%s: path too long", relpath, name);
		return 0;
	}
	fd = mk_fs_openat_dir(dirfd, name);
	if (fd < 0) {
		if (errno == ELOOP)
			mk_warnings_add(&w->list->warnings,
			    "%s: symbolic link not followed", relpath);
		else if (errno != ENOENT && errno != ENOTDIR)
			mk_warnings_add(&w->list->warnings, "%s: %s", relpath,
			    strerror(errno));
		relpath[rellen] = '\0';
		return 0;
	}
	if (level + 1 == w->store->ncomps) {
		store_walk_found(w, relpath);
		rc = 0;
	} else {
		if (w->dir_cb != NULL)
			w->dir_cb(relpath, w->arg);
		rc = store_walk_level(
		    w, fd, level + 1, relpath, rellen + n, err);
	}
	close(fd);
	relpath[rellen] = '\0';
	return rc;
}

static int
store_walk_level(struct store_walk *w, int dirfd, size_t level, char *relpath,
    size_t rellen, struct mk_err *err)
{
	const struct store_component *c = &w->store->comps[level];
	struct dirent *de;
	DIR *dir;
	int fd, rc = 0;

	if (c->var == STORE_LITERAL)
		return store_walk_enter(
		    w, dirfd, level, c->prefix, relpath, rellen, err);
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (dir = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		mk_warnings_add(&w->list->warnings, "%s: %s",
		    rellen > 0 ? relpath : ".", strerror(errno));
		return 0;
	}
	while ((de = readdir(dir)) != NULL) {
		size_t len = strlen(de->d_name);
		size_t plen = strlen(c->prefix), slen = strlen(c->suffix);

		if (de->d_name[0] == '.' || len <= plen + slen ||
		    strncmp(de->d_name, c->prefix, plen) != 0 ||
		    strcmp(de->d_name + len - slen, c->suffix) != 0)
			continue;
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) {
			if (de->d_type == DT_LNK)
				mk_warnings_add(&w->list->warnings,
				    "%s%s%s: symbolic link not followed",
				    relpath, rellen > 0 ? "/" : "", de->d_name);
			continue;
		}
		memcpy(w->values[c->var], de->d_name + plen, len - plen - slen);
		w->values[c->var][len - plen - slen] = '\0';
		if ((rc = store_walk_enter(w, dirfd, level, de->d_name, relpath,
			 rellen, err)) < 0)
			break;
	}
	w->values[c->var][0] = '\0';
	closedir(dir);
	return rc;
}

int
mk_store_list(const struct mk_store *store, struct mk_store_list **list_r,
    struct mk_err *err)
{
	return mk_store_walk(store, NULL, NULL, list_r, err);
}

int
mk_store_walk(const struct mk_store *store, mk_store_dir_cb *dir_cb, void *arg,
    struct mk_store_list **list_r, struct mk_err *err)
{
	struct store_walk w;
	char relpath[PATH_MAX];
	size_t i, out;
	int fd;

	*list_r = NULL;
	memset(&w, 0, sizeof(w));
	w.store = store;
	w.dir_cb = dir_cb;
	w.arg = arg;
	w.list = mk_xcalloc(1, sizeof(*w.list));
	relpath[0] = '\0';
	if ((fd = mk_store_open_root(store, err)) < 0) {
		mk_store_list_free(&w.list);
		return -1;
	}
	if (store_walk_level(&w, fd, 0, relpath, 0, err) < 0) {
		close(fd);
		mk_store_list_free(&w.list);
		return -1;
	}
	close(fd);
	if (w.list->count > 1)
		qsort(w.list->mailboxes, w.list->count,
		    sizeof(*w.list->mailboxes), store_address_cmp);
	/* Two directories that differ only in case are one address. */
	for (i = 0, out = 0; i < w.list->count; i++) {
		struct mk_store_mailbox *m = &w.list->mailboxes[i];

		if (out > 0 &&
		    strcmp(w.list->mailboxes[out - 1].address, m->address) ==
			0) {
			mk_warnings_add(&w.list->warnings,
			    "%s: same address as %s, skipped", m->relpath,
			    w.list->mailboxes[out - 1].relpath);
			free(m->address);
			free(m->relpath);
			continue;
		}
		w.list->mailboxes[out++] = *m;
	}
	w.list->count = out;
	*list_r = w.list;
	return 0;
}

void
mk_store_list_free(struct mk_store_list **listp)
{
	struct mk_store_list *list = *listp;
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; i < list->count; i++) {
		free(list->mailboxes[i].address);
		free(list->mailboxes[i].relpath);
	}
	free(list->mailboxes);
	free(list);
	*listp = NULL;
}
