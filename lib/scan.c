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
 * holds only unseen mail, so this stays small, and it is not made at all
 * while new/ is empty.
 */
static const char scan_seen_mark;

/* Room for getdents64(): about 300 Dovecot names per system call. */
#define SCAN_DIRBUF (32 * 1024)

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
	char *dirbuf; /* SCAN_DIRBUF bytes, the mailbox's */
	bool again; /* listing the folder again: rewind new/ and cur/ */
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
 * Open new/ or cur/ of a folder: the fd, -1 when it does not exist or is
 * not a directory (a warning then), or -2 with err set.
 */
static int
scan_open_subdir(int folderfd, const char *sub, struct mk_warnings *skipped,
    struct mk_err *err)
{
	int fd = mk_fs_openat_dir(folderfd, sub);

	if (fd >= 0 || errno == ENOENT)
		return fd;
	if (errno == ELOOP || errno == ENOTDIR) {
		mk_warnings_add(skipped,
		    "%s: not a directory or a symbolic link, not followed",
		    sub);
		return -1;
	}
	mk_err_sys(err, "open(%s)", sub);
	return -2;
}

/* mtime of an open directory in ns, 0 for none (fd -1); -1 on error. */
static int
scan_mtime(int fd, int64_t *mtime_r)
{
	struct stat st;

	*mtime_r = 0;
	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0)
		return -1;
	*mtime_r = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	return 0;
}

/*
 * Count the messages of one open new/ or cur/ directory (fd -1: none)
 * into the folder.  Base names are added to the seen set for new/ and
 * looked up in it for cur/.
 */
static int
scan_subdir(int fd, const char *sub, struct scan_ctx *sc, struct mk_err *err)
{
	bool is_new = sub[0] == 'n';
	struct mk_warnings *malformed = &sc->mal, *skipped = &sc->skip;
	struct mk_usage *u = &sc->f->usage;
	struct mk_maildir_name mn;
	struct mk_fs_dirent de;
	struct mk_fs_dir dir;
	struct mk_err nerr;
	int r;

	if (fd < 0)
		return 0;
	mk_fs_dir_start(&dir, fd, sc->dirbuf, SCAN_DIRBUF);
	if (sc->again && mk_fs_dir_rewind(&dir) < 0)
		return mk_err_sys(err, "lseek(%s)", sub);
	while ((r = mk_fs_dir_next(&dir, &de)) == 1) {
		const char *name = de.name;
		uint64_t size, vsize;
		struct stat st;

		if (mk_maildir_classify(name) != MK_MAILDIR_MESSAGE)
			continue;
		if (de.type == DT_LNK || de.type == DT_DIR) {
			mk_warnings_add(skipped, "%s/%s: %s skipped", sub, name,
			    de.type == DT_LNK ? "symbolic link" : "directory");
			continue;
		}
		if (mk_maildir_name_parse(name, &mn, &nerr) < 0)
			mk_warnings_add(malformed, "%s/%s", sub, nerr.msg);
		if (!is_new && sc->seen != NULL &&
		    mk_hmap_get(sc->seen, mk_hmap_hash(name, mn.base_len), NULL,
			NULL) != NULL)
			continue;
		size = mn.size;
		if (!mn.has_size || de.type == DT_UNKNOWN) {
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
			int vr = mk_scan_read_vsize(fd, name, &vsize);

			if (vr == 1)
				continue;
			if (vr < 0) {
				mk_warnings_add(skipped, "%s/%s: read: %s", sub,
				    name, strerror(errno));
				continue;
			}
		}
		if (is_new) {
			if (sc->seen == NULL)
				sc->seen = mk_hmap_new();
			mk_hmap_put(sc->seen, mk_hmap_hash(name, mn.base_len),
			    (void *)&scan_seen_mark);
		}
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
	if (r < 0)
		return mk_err_sys(err, "getdents(%s)", sub);
	return 0;
}

/* Can the folder be taken from the usage known from before? */
static bool
scan_reuse(const struct mk_scan_hooks *hooks, struct mk_folder_usage *f)
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
		    p->new_mtime_ns != f->new_mtime_ns ||
		    p->cur_mtime_ns != f->cur_mtime_ns ||
		    p->new_mtime_ns > hooks->prev_ns - 2000000000LL ||
		    p->cur_mtime_ns > hooks->prev_ns - 2000000000LL)
			return false;
		f->usage = p->usage;
		return true;
	}
	return false;
}

/*
 * Scan one folder directory (the Maildir itself for INBOX) into *f.
 * new/ and cur/ are opened once; their mtimes before the listing come
 * from fstat() of those fds and are compared after it, so that a folder
 * that changed while it was listed is listed again.  Returns 0, or -1
 * when new/ or cur/ cannot be read for a reason other than not existing.
 */
static int
scan_folder(int dirfd, struct mk_folder_usage *f,
    const struct mk_scan_hooks *hooks, char *dirbuf,
    struct mk_warnings *malformed, struct mk_warnings *skipped,
    struct mk_err *err)
{
	int newfd = -1, curfd = -1, try, rc = -1;
	int64_t new_after, cur_after;
	struct scan_ctx sc;
	struct stat st;
	size_t i;

	memset(&sc, 0, sizeof(sc));
	if (fstat(dirfd, &st) < 0)
		return mk_err_sys(err, "fstat(%s)", f->name);
	f->ino = (uint64_t)st.st_ino;
	if (hooks != NULL && hooks->folder_cb != NULL)
		hooks->folder_cb(dirfd, f->dir, hooks->arg);
	if ((newfd = scan_open_subdir(dirfd, "new", skipped, err)) == -2 ||
	    (curfd = scan_open_subdir(dirfd, "cur", skipped, err)) == -2)
		goto fail;
	if (scan_mtime(newfd, &f->new_mtime_ns) < 0 ||
	    scan_mtime(curfd, &f->cur_mtime_ns) < 0) {
		mk_err_sys(err, "fstat");
		goto fail;
	}
	if (scan_reuse(hooks, f)) {
		rc = 0;
		goto out;
	}
	sc.f = f;
	sc.dirbuf = dirbuf;
	sc.keep_unsized = hooks != NULL && hooks->unsized_cb != NULL;
	for (try = 0; try < SCAN_TRIES; try++) {
		scan_ctx_reset(&sc);
		sc.again = try > 0;
		if (sc.again &&
		    (scan_mtime(newfd, &f->new_mtime_ns) < 0 ||
			scan_mtime(curfd, &f->cur_mtime_ns) < 0)) {
			mk_err_sys(err, "fstat");
			goto fail;
		}
		if (scan_subdir(newfd, "new", &sc, err) < 0 ||
		    scan_subdir(curfd, "cur", &sc, err) < 0)
			goto fail;
		if (scan_mtime(newfd, &new_after) < 0 ||
		    scan_mtime(curfd, &cur_after) < 0) {
			mk_err_sys(err, "fstat");
			goto fail;
		}
		if (f->new_mtime_ns == new_after &&
		    f->cur_mtime_ns == cur_after)
			break;
	}
	for (i = 0; i < sc.nunsized; i++)
		hooks->unsized_cb(f->dir, sc.unsized[i].in_cur,
		    sc.unsized[i].name, sc.unsized[i].size, sc.unsized[i].vsize,
		    hooks->arg);
	scan_warnings_merge(malformed, &sc.mal);
	scan_warnings_merge(skipped, &sc.skip);
	rc = 0;
	goto out;
fail:
	mk_err_prefix(err, "folder %s", f->name);
out:
	for (i = 0; i < sc.nunsized; i++)
		free(sc.unsized[i].name);
	free(sc.unsized);
	mk_hmap_free(&sc.seen);
	if (newfd >= 0)
		close(newfd);
	if (curfd >= 0)
		close(curfd);
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
    const char *dir, char sep, const struct mk_scan_hooks *hooks, char *dirbuf,
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
	if (scan_folder(folderfd, f, hooks, dirbuf, &mu->malformed,
		&mu->skipped, err) < 0)
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
	struct mk_fs_dirent de;
	struct mk_fs_dir dir;
	char *dirbuf = NULL;
	size_t cap = 0;
	int fd, r, rc = -1;

	*usage_r = NULL;
	if ((fd = mk_fs_open_dir_beneath(rootfd, relpath, err)) < 0)
		return mk_err_prefix(err, "mailbox %s", address);
	dirbuf = mk_xmalloc(2 * SCAN_DIRBUF);
	mu = mk_xcalloc(1, sizeof(*mu));
	mu->address = mk_xstrdup(address);
	mu->relpath = mk_xstrdup(relpath);
	if (scan_add_folder(mu, &cap, fd, "", sep, hooks, dirbuf, err) < 0) {
		mk_err_prefix(err, "mailbox %s", address);
		goto out;
	}
	/* The folder names come from the second half of dirbuf: the
	 * first is scan_folder's. */
	mk_fs_dir_start(&dir, fd, dirbuf + SCAN_DIRBUF, SCAN_DIRBUF);
	while ((r = mk_fs_dir_next(&dir, &de)) == 1) {
		int ffd;

		if (!mk_maildir_is_folder_dir(de.name))
			continue;
		if (de.type == DT_LNK) {
			mk_warnings_add(&mu->skipped,
			    "%s: symbolic link not followed", de.name);
			continue;
		}
		if (de.type != DT_DIR && de.type != DT_UNKNOWN)
			continue;
		ffd = mk_fs_openat_dir(fd, de.name);
		if (ffd < 0) {
			if (errno == ELOOP)
				mk_warnings_add(&mu->skipped,
				    "%s: symbolic link not followed", de.name);
			else if (errno != ENOENT && errno != ENOTDIR)
				mk_warnings_add(&mu->skipped, "%s: %s", de.name,
				    strerror(errno));
			continue;
		}
		r = scan_add_folder(
		    mu, &cap, ffd, de.name, sep, hooks, dirbuf, err);
		close(ffd);
		if (r < 0) {
			mk_err_prefix(err, "mailbox %s", address);
			goto out;
		}
	}
	if (r < 0) {
		mk_err_sys(err, "mailbox %s: getdents", address);
		goto out;
	}
	qsort(mu->folders, mu->nfolders, sizeof(*mu->folders), scan_folder_cmp);
	*usage_r = mu;
	mu = NULL;
	rc = 0;
out:
	free(dirbuf);
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
