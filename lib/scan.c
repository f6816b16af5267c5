#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/scan.h"

#define SCAN_TRIES 3

/*
 * The base names seen in new/ are kept as hashes, so that a message that
 * moves from new/ to cur/ while the folder is listed counts once.  new/
 * holds only unseen mail, so this stays small.
 */
static const char scan_seen_mark;

static bool
scan_seen_has(const struct mk_hmap *seen, uint64_t h)
{
	return mk_hmap_get(seen, h, NULL, NULL) != NULL;
}

void
mk_usage_add(struct mk_usage *a, const struct mk_usage *b)
{
	a->bytes += b->bytes;
	a->vbytes += b->vbytes;
	a->messages += b->messages;
}

void
mk_usage_sub(struct mk_usage *a, const struct mk_usage *b)
{
	a->bytes = a->bytes > b->bytes ? a->bytes - b->bytes : 0;
	a->vbytes = a->vbytes > b->vbytes ? a->vbytes - b->vbytes : 0;
	a->messages = a->messages > b->messages ? a->messages - b->messages : 0;
}

/* A message whose name lacks a size, kept until the listing is final. */
struct scan_unsized {
	char *name;
	bool in_cur;
	uint64_t size;
	uint64_t vsize;
};

/* What one folder listing writes to. */
struct scan_ctx {
	struct mk_folder_usage *f;
	struct mk_hmap *seen;
	struct mk_warnings mal;
	struct mk_warnings skip;
	struct scan_unsized *unsized; /* only when a hook wants them */
	size_t nunsized;
	size_t cap;
	bool keep_unsized;
};

/* Forget what a listing found, before listing again or at the end. */
static void
scan_ctx_reset(struct scan_ctx *sc)
{
	size_t i;

	for (i = 0; i < sc->nunsized; i++)
		free(sc->unsized[i].name);
	sc->nunsized = 0;
	mk_hmap_free(&sc->seen);
	sc->seen = mk_hmap_new();
	memset(&sc->mal, 0, sizeof(sc->mal));
	memset(&sc->skip, 0, sizeof(sc->skip));
	memset(&sc->f->usage, 0, sizeof(sc->f->usage));
	sc->f->unsized = 0;
}

static void
scan_warnings_merge(struct mk_warnings *to, const struct mk_warnings *from)
{
	if (from->count == 0)
		return;
	if (to->count == 0)
		memcpy(to->first, from->first, sizeof(to->first));
	to->count += from->count;
}

int
mk_scan_read_vsize(int dirfd, const char *name, uint64_t *vsize_r)
{
	char buf[65536];
	bool prev_cr = false;
	uint64_t vsize = 0;
	ssize_t n;
	int fd;

	fd = openat(dirfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 1 : -1;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			return -1;
		}
		vsize += mk_maildir_vsize_add(buf, (size_t)n, &prev_cr);
	}
	/* A scan must not evict the IMAP server's working set. */
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
	*vsize_r = vsize;
	return 0;
}

/*
 * Count the messages of one new/ or cur/ directory into the folder.  Base
 * names are added to the seen set for new/ and looked up in it for cur/.
 */
static int
scan_subdir(
    int folderfd, const char *sub, struct scan_ctx *sc, struct mk_err *err)
{
	bool is_new = strcmp(sub, "new") == 0;
	struct mk_warnings *malformed = &sc->mal, *skipped = &sc->skip;
	struct mk_hmap *seen = sc->seen;
	struct mk_usage *u = &sc->f->usage;
	struct mk_maildir_name mn;
	struct dirent *de;
	struct mk_err nerr;
	DIR *dir;
	int fd;

	fd = mk_fs_openat_dir(folderfd, sub);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		if (errno == ELOOP || errno == ENOTDIR) {
			mk_warnings_add(skipped,
			    "%s: not a directory or a symbolic link, not "
			    "followed",
			    sub);
			return 0;
		}
		return mk_err_sys(err, "open(%s)", sub);
	}
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return mk_err_sys(err, "fdopendir(%s)", sub);
	}
	while ((errno = 0, de = readdir(dir)) != NULL) {
		const char *name = de->d_name;
		uint64_t size, vsize;
		struct stat st;

		if (mk_maildir_classify(name) != MK_MAILDIR_MESSAGE)
			continue;
		if (de->d_type == DT_LNK || de->d_type == DT_DIR) {
			mk_warnings_add(skipped, "%s/%s: %s skipped", sub, name,
			    de->d_type == DT_LNK ? "symbolic link"
						 : "directory");
			continue;
		}
		if (mk_maildir_name_parse(name, &mn, &nerr) < 0)
			mk_warnings_add(malformed, "%s/%s", sub, nerr.msg);
		if (!is_new &&
		    scan_seen_has(seen, mk_hmap_hash(name, mn.base_len)))
			continue;
		size = mn.size;
		if (!mn.has_size || de->d_type == DT_UNKNOWN) {
			if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				if (errno == ENOENT)
					continue;
				mk_warnings_add(skipped, "%s/%s: stat: %s", sub,
				    name, strerror(errno));
				continue;
			}
			if (!S_ISREG(st.st_mode)) {
				mk_warnings_add(skipped,
				    "%s/%s: not a regular file, skipped", sub,
				    name);
				continue;
			}
			if (!mn.has_size)
				size = (uint64_t)st.st_size;
		}
		vsize = mn.vsize;
		if (!mn.has_vsize) {
			int r = mk_scan_read_vsize(fd, name, &vsize);

			if (r == 1)
				continue;
			if (r < 0) {
				mk_warnings_add(skipped, "%s/%s: read: %s", sub,
				    name, strerror(errno));
				continue;
			}
		}
		if (is_new)
			mk_hmap_put(seen, mk_hmap_hash(name, mn.base_len),
			    (void *)&scan_seen_mark);
		if (!mn.has_size || !mn.has_vsize) {
			sc->f->unsized++;
			if (sc->keep_unsized) {
				struct scan_unsized *us;

				mk_xgrow(&sc->unsized, &sc->cap,
				    sc->nunsized + 1, sizeof(*sc->unsized));
				us = &sc->unsized[sc->nunsized++];
				us->name = mk_xstrdup(name);
				us->in_cur = !is_new;
				us->size = size;
				us->vsize = vsize;
			}
		}
		u->bytes += size;
		u->vbytes += vsize;
		u->messages++;
	}
	if (errno != 0) {
		mk_err_sys(err, "readdir(%s)", sub);
		closedir(dir);
		return -1;
	}
	closedir(dir);
	return 0;
}

/* mtime of a subdirectory in ns, 0 if it does not exist. */
static int64_t
scan_mtime(int folderfd, const char *sub)
{
	struct stat st;

	if (fstatat(folderfd, sub, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* Can the folder be taken from the usage known from before? */
static bool
scan_reuse(
    const struct mk_scan_hooks *hooks, int dirfd, struct mk_folder_usage *f)
{
	const struct mk_mailbox_usage *prev;
	size_t i;

	if (hooks == NULL || (prev = hooks->prev) == NULL)
		return false;
	for (i = 0; i < prev->nfolders; i++) {
		const struct mk_folder_usage *p = &prev->folders[i];

		if (strcmp(p->dir, f->dir) != 0)
			continue;
		if (p->ino != f->ino || p->unsized != 0 ||
		    p->new_mtime_ns != scan_mtime(dirfd, "new") ||
		    p->cur_mtime_ns != scan_mtime(dirfd, "cur") ||
		    p->new_mtime_ns > hooks->prev_ns - 2000000000LL ||
		    p->cur_mtime_ns > hooks->prev_ns - 2000000000LL)
			return false;
		f->new_mtime_ns = p->new_mtime_ns;
		f->cur_mtime_ns = p->cur_mtime_ns;
		f->usage = p->usage;
		return true;
	}
	return false;
}

/*
 * Scan one folder directory (the Maildir itself for INBOX) into *f.
 * Returns 0, or -1 when new/ or cur/ cannot be read for a reason other
 * than not existing.
 */
static int
scan_folder(int dirfd, struct mk_folder_usage *f,
    const struct mk_scan_hooks *hooks, struct mk_warnings *malformed,
    struct mk_warnings *skipped, struct mk_err *err)
{
	struct scan_ctx sc;
	struct stat st;
	int try, rc = 0;
	size_t i;

	if (fstat(dirfd, &st) < 0)
		return mk_err_sys(err, "fstat(%s)", f->name);
	f->ino = (uint64_t)st.st_ino;
	if (hooks != NULL && hooks->folder_cb != NULL)
		hooks->folder_cb(dirfd, f->dir, hooks->arg);
	if (scan_reuse(hooks, dirfd, f))
		return 0;
	memset(&sc, 0, sizeof(sc));
	sc.f = f;
	sc.keep_unsized = hooks != NULL && hooks->unsized_cb != NULL;
	for (try = 0; try < SCAN_TRIES; try++) {
		scan_ctx_reset(&sc);
		f->new_mtime_ns = scan_mtime(dirfd, "new");
		f->cur_mtime_ns = scan_mtime(dirfd, "cur");
		if (scan_subdir(dirfd, "new", &sc, err) < 0 ||
		    scan_subdir(dirfd, "cur", &sc, err) < 0) {
			rc = mk_err_prefix(err, "folder %s", f->name);
			break;
		}
		if (f->new_mtime_ns == scan_mtime(dirfd, "new") &&
		    f->cur_mtime_ns == scan_mtime(dirfd, "cur"))
			break;
	}
	for (i = 0; rc == 0 && i < sc.nunsized; i++)
		hooks->unsized_cb(f->dir, sc.unsized[i].in_cur,
		    sc.unsized[i].name, sc.unsized[i].size, sc.unsized[i].vsize,
		    hooks->arg);
	scan_warnings_merge(malformed, &sc.mal);
	scan_warnings_merge(skipped, &sc.skip);
	for (i = 0; i < sc.nunsized; i++)
		free(sc.unsized[i].name);
	free(sc.unsized);
	mk_hmap_free(&sc.seen);
	return rc;
}

static int
scan_folder_cmp(const void *a, const void *b)
{
	const struct mk_folder_usage *x = a, *y = b;

	if (x->dir[0] == '\0' || y->dir[0] == '\0')
		return x->dir[0] == '\0' ? (y->dir[0] == '\0' ? 0 : -1) : 1;
	return strcmp(x->name, y->name);
}

/* Append a folder entry for dir and scan it. */
static int
scan_add_folder(struct mk_mailbox_usage *mu, size_t *cap, int folderfd,
    const char *dir, char sep, const struct mk_scan_hooks *hooks,
    struct mk_err *err)
{
	char name[1024];
	struct mk_folder_usage *f;

	if (mk_maildir_folder_name(dir, sep, name, sizeof(name)) < 0)
		mk_warnings_add(
		    &mu->malformed, "folder %s: not valid modified UTF-7", dir);
	mk_xgrow(&mu->folders, cap, mu->nfolders + 1, sizeof(*mu->folders));
	f = &mu->folders[mu->nfolders++];
	memset(f, 0, sizeof(*f));
	f->name = mk_xstrdup(name);
	f->dir = mk_xstrdup(dir);
	if (scan_folder(folderfd, f, hooks, &mu->malformed, &mu->skipped, err) <
	    0)
		return -1;
	mk_usage_add(&mu->total, &f->usage);
	return 0;
}

int
mk_scan_mailbox(int rootfd, const char *relpath, const char *address, char sep,
    const struct mk_scan_hooks *hooks, struct mk_mailbox_usage **usage_r,
    struct mk_err *err)
{
	struct mk_mailbox_usage *mu;
	struct dirent *de;
	DIR *dir = NULL;
	size_t cap = 0;
	int fd, rc = -1;

	*usage_r = NULL;
	if ((fd = mk_fs_open_dir_beneath(rootfd, relpath, err)) < 0)
		return mk_err_prefix(err, "mailbox %s", address);
	mu = mk_xcalloc(1, sizeof(*mu));
	mu->address = mk_xstrdup(address);
	mu->relpath = mk_xstrdup(relpath);
	if (scan_add_folder(mu, &cap, fd, "", sep, hooks, err) < 0)
		goto out;
	if ((dir = fdopendir(fd)) == NULL) {
		mk_err_sys(err, "mailbox %s: fdopendir", address);
		goto out;
	}
	fd = -1;
	while ((errno = 0, de = readdir(dir)) != NULL) {
		int ffd;

		if (!mk_maildir_is_folder_dir(de->d_name))
			continue;
		if (de->d_type == DT_LNK) {
			mk_warnings_add(&mu->skipped,
			    "%s: symbolic link not followed", de->d_name);
			continue;
		}
		if (de->d_type != DT_DIR && de->d_type != DT_UNKNOWN)
			continue;
		ffd = mk_fs_openat_dir(dirfd(dir), de->d_name);
		if (ffd < 0) {
			if (errno == ELOOP)
				mk_warnings_add(&mu->skipped,
				    "%s: symbolic link not followed",
				    de->d_name);
			else if (errno != ENOENT && errno != ENOTDIR)
				mk_warnings_add(&mu->skipped, "%s: %s",
				    de->d_name, strerror(errno));
			continue;
		}
		rc =
		    scan_add_folder(mu, &cap, ffd, de->d_name, sep, hooks, err);
		close(ffd);
		if (rc < 0) {
			mk_err_prefix(err, "mailbox %s", address);
			goto out;
		}
		rc = -1;
	}
	if (errno != 0) {
		mk_err_sys(err, "mailbox %s: readdir", address);
		goto out;
	}
	qsort(mu->folders, mu->nfolders, sizeof(*mu->folders), scan_folder_cmp);
	*usage_r = mu;
	mu = NULL;
	rc = 0;
out:
	if (dir != NULL)
		closedir(dir);
	if (fd >= 0)
		close(fd);
	mk_mailbox_usage_free(&mu);
	return rc;
}

void
mk_mailbox_usage_free(struct mk_mailbox_usage **usagep)
{
	struct mk_mailbox_usage *mu = *usagep;
	size_t i;

	if (mu == NULL)
		return;
	for (i = 0; i < mu->nfolders; i++) {
		free(mu->folders[i].name);
		free(mu->folders[i].dir);
	}
	free(mu->folders);
	free(mu->address);
	free(mu->relpath);
	free(mu);
	*usagep = NULL;
}
