#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/restore.h"
#include "mailkeep/snapshot.h"
#include "mailkeep/str.h"

/* How many "-N" suffixes a new folder's prefix may get. */
#define RESTORE_PREFIX_TRIES 100
/* Bytes of doveadm's stderr kept for the error message. */
#define RESTORE_DOVEADM_ERR 300

struct rs_ctx {
	struct mk_repo *repo;
	struct mk_catalog *cat;
	const struct mk_restore_req *req;
	mk_restore_progress_cb *progress_cb;
	void *arg;
	struct mk_restore_stats *stats;
	struct mk_restore_progress prog;
	unsigned long tmpseq;
	bool whole; /* the whole mailbox as Maildir into a directory */
	bool direct; /* into the live Maildir itself, no doveadm */
	bool fix_owner; /* fchown what is written to owner:group */
	uid_t owner;
	gid_t group;
	int livefd; /* the live Maildir, or -1 */
	int rootfd; /* where the tree is written */
	char prefix_dir[MK_RESTORE_PREFIX_MAX + 24]; /* ".Restored-..." */
	char staging[64]; /* name of the staging Maildir in livefd/tmp */
	struct mk_hmap *live_bases; /* TO_ORIGINAL: base names there */
	char **bases; /* owned by live_bases' values */
	size_t nbases, basecap;
};

/* The snapshot row, as the catalog has it. */
struct rs_snapshot {
	bool found;
	char address[MK_SNAPSHOT_ADDRESS_MAX + 1];
	uint8_t object[MK_PACK_ID_LEN];
};

static void
rs_snapshot_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct rs_snapshot *rs = arg;

	rs->found = true;
	mk_strlcpy(rs->address, s->address, sizeof(rs->address));
	memcpy(rs->object, s->object, MK_PACK_ID_LEN);
}

/* Read one blob, located through the catalog and checked by its id. */
static int
rs_blob(struct rs_ctx *ctx, const uint8_t id[MK_PACK_ID_LEN], uint8_t **data_r,
    size_t *len_r, struct mk_err *err)
{
	char pack[MK_PACK_NAME_LEN + 1], hex[17];
	struct mk_pack_entry entry;
	int r;

	if ((r = mk_catalog_blob_get(ctx->cat, id, pack, &entry, err)) < 0)
		return -1;
	if (r == 0) {
		mk_crypto_hex(id, 8, hex);
		return mk_err_set(err, "blob %s is not in the catalog", hex);
	}
	return mk_repo_read_blob(
	    ctx->repo, pack, &entry, NULL, data_r, len_r, err);
}

/* A part of the snapshot that could not be read: counted and told. */
static void
rs_failed(struct rs_ctx *ctx, enum mk_restore_failure_kind kind,
    const char *dir, const char *name, const char *reason)
{
	char folder[MK_SNAPSHOT_NAME_MAX + 8];
	struct mk_restore_failure f;

	mk_maildir_folder_name(
	    dir, ctx->req->separator, folder, sizeof(folder));
	mk_warnings_add(&ctx->stats->problems, "%s/%s: %s", folder,
	    name != NULL ? name : "(message list)", reason);
	if (kind == MK_RESTORE_FAILED_MESSAGE)
		ctx->stats->failed++;
	else if (kind == MK_RESTORE_FAILED_LIST)
		ctx->stats->failed_lists++;
	else
		ctx->stats->failed_files++;
	if (ctx->req->failed_cb == NULL)
		return;
	f.kind = kind;
	f.folder = folder;
	f.name = name;
	f.reason = reason;
	ctx->req->failed_cb(&f, ctx->req->failed_arg);
}

/* A whole file of the snapshot in memory, checked against its size. */
static int
rs_read_file(struct rs_ctx *ctx, const char *name,
    const struct mk_snapshot_file *f, uint8_t **data_r, size_t *len_r,
    struct mk_err *err)
{
	uint8_t *data = NULL, *buf = NULL;
	size_t len = 0, total = 0;
	uint32_t i;

	if (f->size > SIZE_MAX - 1)
		return mk_err_set(err, "%s: too large", name);
	buf = mk_xmalloc((size_t)f->size + 1);
	for (i = 0; i < f->nblobs; i++) {
		if (rs_blob(ctx, f->blobs[i], &data, &len, err) < 0)
			goto fail;
		if (len > f->size - total) {
			free(data);
			mk_err_set(
			    err, "%s: more bytes than the snapshot says", name);
			goto fail;
		}
		memcpy(buf + total, data, len);
		total += len;
		free(data);
	}
	if (total != f->size) {
		mk_err_set(err,
		    "%s: %zu bytes restored, the snapshot says %llu", name,
		    total, (unsigned long long)f->size);
		goto fail;
	}
	*data_r = buf;
	*len_r = total;
	return 0;
fail:
	free(buf);
	return -1;
}

static int
rs_write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A new temporary file in tmpdirfd; its name (hidden) goes to tmp. */
static int
rs_tmp_open(struct rs_ctx *ctx, int tmpdirfd, char tmp[64], struct mk_err *err)
{
	int fd;

	snprintf(tmp, 64, ".mailkeep-restore.%ld.%lu", (long)getpid(),
	    ++ctx->tmpseq);
	fd = openat(tmpdirfd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", tmp);
	return fd;
}

/*
 * Finish a temporary file: its mtime (when mtime_ns is not 0), owner,
 * fsync, then rename to dirfd/name without replacing anything.  fd is
 * closed and, on failure, the temporary file removed.
 */
static int
rs_tmp_commit(struct rs_ctx *ctx, int fd, int tmpdirfd, const char *tmp,
    int dirfd, const char *name, int64_t mtime_ns, struct mk_err *err)
{
	struct timespec ts[2];
	int rc = -1;

	if (mtime_ns != 0) {
		ts[0].tv_sec = ts[1].tv_sec = (time_t)(mtime_ns / 1000000000);
		ts[0].tv_nsec = ts[1].tv_nsec = (long)(mtime_ns % 1000000000);
		if (ts[1].tv_nsec < 0) {
			ts[0].tv_sec = --ts[1].tv_sec;
			ts[0].tv_nsec = ts[1].tv_nsec += 1000000000;
		}
		if (futimens(fd, ts) < 0) {
			mk_err_sys(err, "futimens(%s)", name);
			goto out;
		}
	}
	if (ctx->fix_owner && fchown(fd, ctx->owner, ctx->group) < 0) {
		mk_err_sys(err, "fchown(%s)", name);
		goto out;
	}
	if (fsync(fd) < 0) {
		mk_err_sys(err, "fsync(%s)", name);
		goto out;
	}
	rc = 0;
out:
	if (close(fd) < 0 && rc == 0)
		rc = mk_err_sys(err, "close(%s)", name);
	if (rc == 0 &&
	    renameat2(tmpdirfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0) {
		if (errno == EEXIST)
			rc = mk_err_set(
			    err, "%s exists already; not replaced", name);
		else
			rc = mk_err_sys(err, "rename(%s)", name);
	}
	if (rc < 0)
		unlinkat(tmpdirfd, tmp, 0);
	else
		ctx->stats->files++;
	return rc;
}

/* Write data as dirfd/name atomically, through tmpdirfd. */
static int
rs_put(struct rs_ctx *ctx, int tmpdirfd, int dirfd, const char *name,
    const void *data, size_t len, int64_t mtime_ns, struct mk_err *err)
{
	char tmp[64];
	int fd;

	if ((fd = rs_tmp_open(ctx, tmpdirfd, tmp, err)) < 0)
		return -1;
	if (rs_write_all(fd, data, len) < 0) {
		mk_err_sys(err, "write(%s)", name);
		close(fd);
		unlinkat(tmpdirfd, tmp, 0);
		return -1;
	}
	return rs_tmp_commit(
	    ctx, fd, tmpdirfd, tmp, dirfd, name, mtime_ns, err);
}

/* Make (if missing) and open the directory name in parentfd. */
static int
rs_mkdir(struct rs_ctx *ctx, int parentfd, const char *name, int *fd_r,
    struct mk_err *err)
{
	if (mkdirat(parentfd, name, 0700) < 0 && errno != EEXIST)
		return mk_err_sys(err, "mkdir(%s)", name);
	if ((*fd_r = mk_fs_openat_dir(parentfd, name)) < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return mk_err_set(err,
			    "%s: a symbolic link or not a directory", name);
		return mk_err_sys(err, "open(%s)", name);
	}
	if (ctx->fix_owner && fchown(*fd_r, ctx->owner, ctx->group) < 0) {
		close(*fd_r);
		*fd_r = -1;
		return mk_err_sys(err, "fchown(%s)", name);
	}
	return 0;
}

/* Open dir, making it if it does not exist; it must be empty. */
static int
rs_target(const char *dir, struct mk_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, dfd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mkdir(dir, 0700) < 0)
			return mk_err_sys(err, "mkdir(%s)", dir);
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno == ELOOP || errno == ENOTDIR)
			return mk_err_set(err,
			    "%s: not a directory, or a symbolic link", dir);
		return mk_err_sys(err, "open(%s)", dir);
	}
	if ((dfd = dup(fd)) < 0 || (d = fdopendir(dfd)) == NULL) {
		mk_err_sys(err, "opendir(%s)", dir);
		if (dfd >= 0)
			close(dfd);
		close(fd);
		return -1;
	}
	while ((errno = 0, de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			break;
	if (de != NULL || errno != 0) {
		if (de != NULL)
			mk_err_set(err,
			    "%s is not empty: restore writes only "
			    "into an empty directory",
			    dir);
		else
			mk_err_sys(err, "readdir(%s)", dir);
		closedir(d);
		close(fd);
		return -1;
	}
	closedir(d);
	return fd;
}

/* Remove name in parentfd and everything beneath it, following nothing. */
static void
rs_rmtree(int parentfd, const char *name, int depth)
{
	struct dirent *de;
	DIR *d;
	int fd;

	if (unlinkat(parentfd, name, 0) == 0 || errno == ENOENT)
		return;
	if (depth > 8 || (fd = mk_fs_openat_dir(parentfd, name)) < 0)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			rs_rmtree(dirfd(d), de->d_name, depth + 1);
	closedir(d);
	unlinkat(parentfd, name, AT_REMOVEDIR);
}

static bool
rs_progress(struct rs_ctx *ctx)
{
	if (ctx->progress_cb == NULL)
		return true;
	return ctx->progress_cb(&ctx->prog, ctx->arg);
}

/* Is the snapshot folder dir selected by the request's folder dir? */
static bool
rs_folder_selected(const char *dir, const char *want)
{
	size_t n;

	if (want == NULL)
		return true;
	if (want[0] == '\0')
		return dir[0] == '\0';
	n = strlen(want);
	return strncmp(dir, want, n) == 0 && (dir[n] == '\0' || dir[n] == '.');
}

/* The name of a folder's file or directory in an export. */
static void
rs_export_name(const char *dir, const char *ext, char *buf, size_t size)
{
	snprintf(buf, size, "%s%s", dir[0] != '\0' ? dir + 1 : "INBOX", ext);
}

/* The directory of a snapshot folder in the tree being written. */
static void
rs_tree_dir(struct rs_ctx *ctx, const char *dir, char *buf, size_t size)
{
	if (ctx->direct && ctx->req->target == MK_RESTORE_TO_NEW_FOLDER)
		snprintf(buf, size, "%s%s", ctx->prefix_dir,
		    dir[0] != '\0' ? dir : ".INBOX");
	else
		mk_strlcpy(buf, dir, size);
}

/* One folder being written: where, and its export file when mbox. */
struct rs_folder {
	const struct mk_snapshot_folder *sf;
	int fd; /* the folder (Maildir) or the export directory */
	int subfd[2]; /* new/ and cur/ */
	int tmpfd; /* where temporary files go */
	int mboxfd; /* the mbox being written, a temporary file */
	char mboxtmp[64];
	/* TO_ORIGINAL: the live folder's files, for the content check. */
	struct rs_live *live;
	size_t nlive, livecap;
	int livesub[2]; /* the live folder's new/ and cur/, or -1 */
	bool strip_keywords; /* live keywords differ: keep system flags */
};

struct rs_live {
	char *name;
	bool cur;
	uint64_t size;
};

static void
rs_folder_close(struct rs_folder *rf)
{
	size_t i;

	if (rf->subfd[0] >= 0)
		close(rf->subfd[0]);
	if (rf->subfd[1] >= 0)
		close(rf->subfd[1]);
	if (rf->tmpfd >= 0 && rf->tmpfd != rf->fd)
		close(rf->tmpfd);
	if (rf->mboxfd >= 0) {
		close(rf->mboxfd);
		unlinkat(rf->fd, rf->mboxtmp, 0);
	}
	if (rf->fd >= 0)
		close(rf->fd);
	if (rf->livesub[0] >= 0)
		close(rf->livesub[0]);
	if (rf->livesub[1] >= 0)
		close(rf->livesub[1]);
	for (i = 0; i < rf->nlive; i++)
		free(rf->live[i].name);
	free(rf->live);
	memset(rf, 0, sizeof(*rf));
}

static bool
rs_base_match(const void *value, const void *key)
{
	return strcmp(value, key) == 0;
}

/* The base name of a Maildir file name, into buf. */
static void
rs_base(const char *name, char *buf, size_t size)
{
	struct mk_maildir_name mn;
	struct mk_err nerr;
	size_t n;

	(void)mk_maildir_name_parse(name, &mn, &nerr);
	n = mn.base_len > 0 ? mn.base_len : strlen(name);
	if (n >= size)
		n = size - 1;
	memcpy(buf, name, n);
	buf[n] = '\0';
}

/* Call cb for each message file of new/ and cur/ of folderfd. */
typedef void rs_list_cb(
    struct rs_ctx *ctx, const char *name, bool cur, uint64_t size, void *arg);

static int
rs_list_live(struct rs_ctx *ctx, int folderfd, rs_list_cb *cb, void *arg,
    struct mk_err *err)
{
	struct dirent *de;
	struct stat st;
	int sub, fd;
	DIR *d;

	for (sub = 0; sub < 2; sub++) {
		fd = mk_fs_openat_dir(folderfd, sub ? "cur" : "new");
		if (fd < 0 && errno == ENOENT)
			continue;
		if (fd < 0 || (d = fdopendir(fd)) == NULL) {
			if (fd >= 0)
				close(fd);
			return mk_err_sys(err, "open(%s)", sub ? "cur" : "new");
		}
		while ((de = readdir(d)) != NULL) {
			if (mk_maildir_classify(de->d_name) !=
			    MK_MAILDIR_MESSAGE)
				continue;
			if (fstatat(dirfd(d), de->d_name, &st,
				AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode))
				continue;
			cb(ctx, de->d_name, sub == 1, (uint64_t)st.st_size,
			    arg);
		}
		closedir(d);
	}
	return 0;
}

static void
rs_base_cb(
    struct rs_ctx *ctx, const char *name, bool cur, uint64_t size, void *arg)
{
	char base[MK_SNAPSHOT_NAME_MAX + 1];
	uint64_t h;

	(void)cur;
	(void)size;
	(void)arg;
	rs_base(name, base, sizeof(base));
	h = mk_hmap_hash(base, strlen(base));
	if (mk_hmap_get(ctx->live_bases, h, rs_base_match, base) != NULL)
		return;
	mk_xgrow(
	    &ctx->bases, &ctx->basecap, ctx->nbases + 1, sizeof(*ctx->bases));
	ctx->bases[ctx->nbases] = mk_xstrdup(base);
	mk_hmap_put(ctx->live_bases, h, ctx->bases[ctx->nbases++]);
}

/* TO_ORIGINAL: every base name of the live mailbox, in every folder. */
static int
rs_live_bases(struct rs_ctx *ctx, struct mk_err *err)
{
	struct dirent *de;
	DIR *d;
	int fd, ffd;

	ctx->live_bases = mk_hmap_new();
	if (rs_list_live(ctx, ctx->livefd, rs_base_cb, NULL, err) < 0)
		return -1;
	if ((fd = openat(
		 ctx->livefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return mk_err_sys(err, "opendir(%s)", ctx->req->maildir);
	}
	while ((de = readdir(d)) != NULL) {
		/* What a restore put into a new folder does not count. */
		if (!mk_maildir_is_folder_dir(de->d_name) ||
		    strncmp(de->d_name, ".Restored-", 10) == 0 ||
		    (ffd = mk_fs_openat_dir(dirfd(d), de->d_name)) < 0)
			continue;
		if (rs_list_live(ctx, ffd, rs_base_cb, NULL, err) < 0) {
			close(ffd);
			closedir(d);
			return mk_err_prefix(err, "%s", de->d_name);
		}
		close(ffd);
	}
	closedir(d);
	return 0;
}

static void
rs_live_cb(
    struct rs_ctx *ctx, const char *name, bool cur, uint64_t size, void *arg)
{
	struct rs_folder *rf = arg;

	(void)ctx;
	mk_xgrow(&rf->live, &rf->livecap, rf->nlive + 1, sizeof(*rf->live));
	rf->live[rf->nlive].name = mk_xstrdup(name);
	rf->live[rf->nlive].cur = cur;
	rf->live[rf->nlive++].size = size;
}

/* Does a file of the live folder hold exactly these bytes? */
static bool
rs_live_has(struct rs_folder *rf, const uint8_t *data, size_t len)
{
	uint8_t *buf;
	size_t i;
	bool same = false;

	for (i = 0; !same && i < rf->nlive; i++) {
		struct rs_live *l = &rf->live[i];
		ssize_t n;
		int fd;

		if (l->size != len || rf->livesub[l->cur] < 0)
			continue;
		fd = openat(rf->livesub[l->cur], l->name,
		    O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			continue;
		buf = mk_xmalloc(len + 1);
		n = pread(fd, buf, len + 1, 0);
		same = n == (ssize_t)len && memcmp(buf, data, len) == 0;
		free(buf);
		close(fd);
	}
	return same;
}

/* Are the live folder's keywords the snapshot's? */
static bool
rs_keywords_same(struct rs_ctx *ctx, int folderfd,
    const struct mk_snapshot_file *kw, struct mk_err *err)
{
	uint8_t *data = NULL, *live;
	size_t len = 0;
	ssize_t n;
	bool same;
	int fd;

	fd = openat(
	    folderfd, "dovecot-keywords", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return !kw->present;
	if (!kw->present ||
	    rs_read_file(ctx, "dovecot-keywords", kw, &data, &len, err) < 0) {
		close(fd);
		return false;
	}
	live = mk_xmalloc(len + 1);
	n = pread(fd, live, len + 1, 0);
	same = n == (ssize_t)len && memcmp(live, data, len) == 0;
	free(live);
	free(data);
	close(fd);
	return same;
}

/*
 * An optional metadata file of the snapshot folder dir into dirfd, if it
 * was there.  One that cannot be read is told as a failure, not written.
 */
static int
rs_meta(struct rs_ctx *ctx, const char *dir, int tmpdirfd, int dirfd,
    const char *name, const struct mk_snapshot_file *f, struct mk_err *err)
{
	struct mk_err rerr;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc;

	if (!f->present)
		return 0;
	if (rs_read_file(ctx, name, f, &data, &len, &rerr) < 0) {
		rs_failed(ctx, MK_RESTORE_FAILED_FILE, dir, name, rerr.msg);
		return 0;
	}
	rc = rs_put(ctx, tmpdirfd, dirfd, name, data, len, f->mtime_ns, err);
	free(data);
	return rc;
}

/*
 * TO_ORIGINAL: list the live folder's files (it may not exist) and keep
 * its new/ and cur/ open, for the content check.
 */
static int
rs_live_folder(struct rs_ctx *ctx, struct rs_folder *rf, struct mk_err *err)
{
	const char *dir = rf->sf->dir;
	int fd, rc;

	fd = dir[0] == '\0' ? dup(ctx->livefd)
			    : mk_fs_openat_dir(ctx->livefd, dir);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", dir);
	rf->livesub[0] = mk_fs_openat_dir(fd, "new");
	rf->livesub[1] = mk_fs_openat_dir(fd, "cur");
	rc = rs_list_live(ctx, fd, rs_live_cb, rf, err);
	close(fd);
	return rc;
}

/* Open (making what is missing) where a folder's messages go. */
static int
rs_folder_open(struct rs_ctx *ctx, const struct mk_snapshot_folder *sf,
    struct rs_folder *rf, struct mk_err *err)
{
	char name[MK_SNAPSHOT_NAME_MAX + MK_RESTORE_PREFIX_MAX + 32];
	enum mk_restore_format format = ctx->req->format;
	const char *sub[2] = { "new", "cur" };
	struct stat st;
	int i;

	rf->sf = sf;
	if (format == MK_RESTORE_MBOX) {
		if ((rf->fd = dup(ctx->rootfd)) < 0)
			return mk_err_sys(err, "dup");
		rf->mboxfd = rs_tmp_open(ctx, rf->fd, rf->mboxtmp, err);
		return rf->mboxfd < 0 ? -1 : 0;
	}
	if (format == MK_RESTORE_EML) {
		rs_export_name(sf->dir, "", name, sizeof(name));
		if (rs_mkdir(ctx, ctx->rootfd, name, &rf->fd, err) < 0)
			return -1;
		rf->tmpfd = rf->fd;
		return 0;
	}
	rs_tree_dir(ctx, sf->dir, name, sizeof(name));
	if (name[0] == '\0') {
		if ((rf->fd = dup(ctx->rootfd)) < 0)
			return mk_err_sys(err, "dup");
	} else if (rs_mkdir(ctx, ctx->rootfd, name, &rf->fd, err) < 0)
		return -1;
	if (rs_mkdir(ctx, rf->fd, "tmp", &rf->tmpfd, err) < 0)
		return -1;
	for (i = 0; i < 2; i++)
		if (rs_mkdir(ctx, rf->fd, sub[i], &rf->subfd[i], err) < 0)
			return -1;
	if (ctx->whole) {
		if (rs_meta(ctx, sf->dir, rf->tmpfd, rf->fd, "dovecot-uidlist",
			&sf->uidlist, err) < 0 ||
		    rs_meta(ctx, sf->dir, rf->tmpfd, rf->fd, "maildirfolder",
			&sf->maildirfolder, err) < 0)
			return -1;
	} else if (name[0] != '\0' &&
	    fstatat(rf->fd, "maildirfolder", &st, AT_SYMLINK_NOFOLLOW) < 0 &&
	    rs_put(ctx, rf->tmpfd, rf->fd, "maildirfolder", "", 0, 0, err) < 0)
		return -1;
	if (ctx->req->target == MK_RESTORE_TO_ORIGINAL &&
	    rs_live_folder(ctx, rf, err) < 0)
		return -1;
	if (ctx->direct && ctx->req->target == MK_RESTORE_TO_ORIGINAL) {
		/* Keyword letters mean what the live folder's file says. */
		rf->strip_keywords =
		    !rs_keywords_same(ctx, rf->fd, &sf->keywords, err);
		return 0;
	}
	if (fstatat(rf->fd, "dovecot-keywords", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return rs_meta(ctx, sf->dir, rf->tmpfd, rf->fd,
		    "dovecot-keywords", &sf->keywords, err);
	return 0;
}

/* The mbox From_ line of a message: a date in asctime() form, UTC. */
static int
rs_mbox_from(int fd, int64_t mtime_ns)
{
	time_t t = (time_t)(mtime_ns / 1000000000);
	char line[64], date[32];
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm) == 0)
		mk_strlcpy(date, "Thu Jan  1 00:00:00 1970", sizeof(date));
	snprintf(line, sizeof(line), "From MAILER-DAEMON %s\n", date);
	return rs_write_all(fd, line, strlen(line));
}

/*
 * Append a message to an mbox in mboxrd form: a From_ line, every line
 * that matches ">*From " quoted with one more '>', a newline added when
 * the message lacks one, then an empty line.
 */
static int
rs_mbox_append(int fd, const uint8_t *data, size_t len, int64_t mtime_ns)
{
	size_t i = 0, j, eol;

	if (rs_mbox_from(fd, mtime_ns) < 0)
		return -1;
	while (i < len) {
		const uint8_t *nl = memchr(data + i, '\n', len - i);

		eol = nl != NULL ? (size_t)(nl - data) + 1 : len;
		for (j = i; j < eol && data[j] == '>'; j++)
			;
		if (eol - j >= 5 && memcmp(data + j, "From ", 5) == 0 &&
		    rs_write_all(fd, ">", 1) < 0)
			return -1;
		if (rs_write_all(fd, data + i, eol - i) < 0)
			return -1;
		i = eol;
	}
	if (len > 0 && data[len - 1] != '\n' && rs_write_all(fd, "\n", 1) < 0)
		return -1;
	return rs_write_all(fd, "\n", 1);
}

/*
 * The file name of a restored message, keyword letters dropped if asked.
 * A copy in a new folder gets a base name of its own, "<ID>.<folder>"
 * ("1795421520.M1P10.mail.Restored-2026-11-26"): Dovecot keeps a base
 * name through doveadm import (it is the message's GUID), and a base
 * name in two folders of a mailbox is backed up once, so a copy beside
 * its original under the same name would be missing from the next
 * snapshot.  The folder's name is unique in the mailbox, and so is the
 * new base name.  A name that would grow too long stays as it is.
 */
static void
rs_message_name(const struct rs_ctx *ctx, const struct rs_folder *rf,
    const struct mk_snapshot_message *m, char *buf, size_t size)
{
	char tag[sizeof(ctx->stats->folder)];
	const char *info, *p;
	size_t n = 0;

	for (p = ctx->stats->folder; *p != '\0' && n + 1 < sizeof(tag); p++)
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-')
			tag[n++] = *p;
	tag[n] = '\0';
	if (ctx->req->target != MK_RESTORE_TO_NEW_FOLDER || n == 0 ||
	    strlen(m->base) + 1 + n + strlen(m->suffix) > MK_SNAPSHOT_NAME_MAX)
		snprintf(buf, size, "%s%s", m->base, m->suffix);
	else
		snprintf(buf, size, "%s.%s%s", m->base, tag, m->suffix);
	if (!rf->strip_keywords || (info = strstr(buf, ":2,")) == NULL)
		return;
	for (n = (size_t)(info - buf) + 3; buf[n] != '\0';)
		if (buf[n] >= 'a' && buf[n] <= 'z')
			memmove(buf + n, buf + n + 1, strlen(buf + n));
		else
			n++;
}

/*
 * Restore one message into rf.  Returns 0 done (or skipped), 1 when
 * its content could not be read (counted; the run goes on), -1 error.
 */
static int
rs_message(struct rs_ctx *ctx, struct rs_folder *rf,
    const struct mk_snapshot_message *m, struct mk_err *err)
{
	char name[2 * MK_SNAPSHOT_NAME_MAX + 8];
	enum mk_restore_format format = ctx->req->format;
	struct mk_err rerr;
	uint8_t *data = NULL;
	size_t len = 0;
	int rc = -1;

	snprintf(name, sizeof(name), "%s%s", m->base, m->suffix);
	if (ctx->req->target == MK_RESTORE_TO_ORIGINAL &&
	    mk_hmap_get(ctx->live_bases, mk_hmap_hash(m->base, strlen(m->base)),
		rs_base_match, m->base) != NULL) {
		ctx->stats->skipped++;
		return 0;
	}
	if (rs_read_file(ctx, name, &m->file, &data, &len, &rerr) < 0) {
		rs_failed(ctx, MK_RESTORE_FAILED_MESSAGE, rf->sf->dir, m->base,
		    rerr.msg);
		return 1;
	}
	if (ctx->req->target == MK_RESTORE_TO_ORIGINAL &&
	    rs_live_has(rf, data, len)) {
		ctx->stats->skipped++;
		rc = 0;
		goto out;
	}
	if (format == MK_RESTORE_MBOX) {
		if (rs_mbox_append(rf->mboxfd, data, len, m->file.mtime_ns) <
		    0) {
			mk_err_sys(err, "write(%s)", rf->mboxtmp);
			goto out;
		}
	} else if (format == MK_RESTORE_EML) {
		snprintf(name, sizeof(name), "%s.eml", m->base);
		if (rs_put(ctx, rf->tmpfd, rf->fd, name, data, len,
			m->file.mtime_ns, err) < 0)
			goto out;
	} else {
		rs_message_name(ctx, rf, m, name, sizeof(name));
		if (rs_put(ctx, rf->tmpfd, rf->subfd[m->cur], name, data, len,
			m->file.mtime_ns, err) < 0)
			goto out;
	}
	ctx->stats->messages++;
	ctx->stats->bytes += len;
	rc = 0;
out:
	free(data);
	return rc;
}

/* Refuse a restore into the live mailbox that its quota has no room for. */
static int
rs_room(struct rs_ctx *ctx, struct mk_err *err)
{
	const struct mk_restore_req *req = ctx->req;
	char need[32], room[32];

	if (req->target == MK_RESTORE_TO_DIR)
		return 0;
	if (ctx->prog.bytes_total > req->room_bytes) {
		mk_str_format_size(ctx->prog.bytes_total, need, sizeof(need));
		mk_str_format_size(req->room_bytes, room, sizeof(room));
		return mk_err_set(err,
		    "the restore needs %s, the quota leaves %s (--force "
		    "restores anyway)",
		    need, room);
	}
	if (ctx->prog.messages_total > req->room_messages)
		return mk_err_set(err,
		    "the restore has %llu messages, the quota leaves room for "
		    "%llu (--force restores anyway)",
		    (unsigned long long)ctx->prog.messages_total,
		    (unsigned long long)req->room_messages);
	return 0;
}

/* The messages of one list chunk, those the request selects. */
static int
rs_chunk(struct rs_ctx *ctx, struct rs_folder *rf,
    const uint8_t id[MK_PACK_ID_LEN], struct mk_err *err)
{
	struct mk_snapshot_message *msgs = NULL;
	struct mk_err rerr;
	uint8_t *data = NULL;
	size_t len = 0, n = 0, i;
	int r, rc = -1;

	if (rs_blob(ctx, id, &data, &len, &rerr) < 0 ||
	    mk_snapshot_messages_decode(data, len, &msgs, &n, &rerr) < 0) {
		/* Its messages are unknown; the other lists go on. */
		rs_failed(
		    ctx, MK_RESTORE_FAILED_LIST, rf->sf->dir, NULL, rerr.msg);
		rc = 0;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct mk_snapshot_message *m = &msgs[i];

		if (ctx->req->message != NULL &&
		    strcmp(m->base, ctx->req->message) != 0)
			continue;
		if (rf->fd < 0 && rs_folder_open(ctx, rf->sf, rf, err) < 0)
			goto out;
		if ((r = rs_message(ctx, rf, m, err)) < 0)
			goto out;
		ctx->prog.messages++;
		ctx->prog.bytes += m->file.size;
		if (!rs_progress(ctx)) {
			mk_err_set(err, "cancelled");
			goto out;
		}
	}
	rc = 0;
out:
	mk_snapshot_messages_free(&msgs, n);
	free(data);
	return rc;
}

/* One folder: where it goes, its metadata files and messages. */
static int
rs_folder(
    struct rs_ctx *ctx, const struct mk_snapshot_folder *sf, struct mk_err *err)
{
	char name[MK_SNAPSHOT_NAME_MAX + 8];
	struct rs_folder rf;
	uint32_t i;
	int rc = -1;

	memset(&rf, 0, sizeof(rf));
	rf.fd = rf.subfd[0] = rf.subfd[1] = rf.tmpfd = rf.mboxfd = -1;
	rf.livesub[0] = rf.livesub[1] = -1;
	rf.sf = sf;
	/* A folder comes back even when empty; for one message, only the
	 * folder that holds it. */
	if (ctx->req->message == NULL && rs_folder_open(ctx, sf, &rf, err) < 0)
		goto out;
	for (i = 0; i < sf->nchunks; i++)
		if (rs_chunk(ctx, &rf, sf->chunks[i], err) < 0)
			goto out;
	if (rf.fd < 0) {
		rc = 0;
		goto out;
	}
	if (rf.mboxfd >= 0) {
		int fd = rf.mboxfd;

		rs_export_name(sf->dir, ".mbox", name, sizeof(name));
		rf.mboxfd = -1;
		if (rs_tmp_commit(
			ctx, fd, rf.fd, rf.mboxtmp, rf.fd, name, 0, err) < 0)
			goto out;
	}
	if ((rf.subfd[0] >= 0 && fsync(rf.subfd[0]) < 0) ||
	    (rf.subfd[1] >= 0 && fsync(rf.subfd[1]) < 0) || fsync(rf.fd) < 0) {
		mk_err_sys(err, "fsync");
		goto out;
	}
	ctx->stats->folders++;
	rc = 0;
out:
	if (rc < 0) {
		mk_maildir_folder_name(
		    sf->dir, ctx->req->separator, name, sizeof(name));
		mk_err_prefix(err, "folder %s", name);
	}
	rs_folder_close(&rf);
	return rc;
}

/* Is the folder dir (".Restored-x") or one beneath it in the Maildir? */
static int
rs_folder_used(int livefd, const char *dir, struct mk_err *err)
{
	size_t n = strlen(dir);
	struct dirent *de;
	int fd, used = 0;
	DIR *d;

	if ((fd = openat(livefd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
		0 ||
	    (d = fdopendir(fd)) == NULL) {
		if (fd >= 0)
			close(fd);
		return mk_err_sys(err, "opendir");
	}
	while (used == 0 && (de = readdir(d)) != NULL)
		if (strncmp(de->d_name, dir, n) == 0 &&
		    (de->d_name[n] == '\0' || de->d_name[n] == '.'))
			used = 1;
	closedir(d);
	return used;
}

/* A folder prefix for TO_NEW_FOLDER that no folder of the mailbox uses. */
static int
rs_pick_prefix(struct rs_ctx *ctx, struct mk_err *err)
{
	const char *p = ctx->req->prefix;
	int i, r;

	if (p == NULL || p[0] == '\0' || strlen(p) > MK_RESTORE_PREFIX_MAX ||
	    strpbrk(p, "./\\") != NULL || p[0] == '~')
		return mk_err_set(err, "folder prefix '%s' is not a plain name",
		    p != NULL ? p : "");
	for (i = 1; i <= RESTORE_PREFIX_TRIES; i++) {
		if (i == 1)
			mk_strlcpy(
			    ctx->stats->folder, p, sizeof(ctx->stats->folder));
		else
			snprintf(ctx->stats->folder, sizeof(ctx->stats->folder),
			    "%s-%d", p, i);
		snprintf(ctx->prefix_dir, sizeof(ctx->prefix_dir), ".%s",
		    ctx->stats->folder);
		if ((r = rs_folder_used(ctx->livefd, ctx->prefix_dir, err)) < 0)
			return -1;
		if (r == 0)
			return 0;
	}
	return mk_err_set(err, "folders %s to %s-%d exist already", p, p,
	    RESTORE_PREFIX_TRIES);
}

/*
 * Run doveadm import of the staging Maildir into the live mailbox, under
 * dest ("" for the original folders).  Its stderr is kept for the error.
 */
static int
rs_doveadm(struct rs_ctx *ctx, const char *dest, struct mk_err *err)
{
	const struct mk_restore_req *req = ctx->req;
	char source[PATH_MAX + 64], errbuf[RESTORE_DOVEADM_ERR + 1];
	const char *argv[16];
	int pipefd[2], status, argc = 0;
	size_t errlen = 0;
	ssize_t n;
	pid_t pid;

	snprintf(source, sizeof(source), "maildir:%s/tmp/%s:INDEX=MEMORY",
	    req->maildir, ctx->staging);
	argv[argc++] = req->doveadm;
	if (req->doveadm_config != NULL) {
		argv[argc++] = "-c";
		argv[argc++] = req->doveadm_config;
	}
	argv[argc++] = "import";
	argv[argc++] = "-u";
	argv[argc++] =
	    req->doveadm_user != NULL ? req->doveadm_user : req->address;
	if (dest[0] != '\0')
		argv[argc++] = "-s";
	argv[argc++] = source;
	argv[argc++] = dest;
	argv[argc++] = "all";
	argv[argc] = NULL;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return mk_err_sys(err, "pipe");
	if ((pid = fork()) < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return mk_err_sys(err, "fork");
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDWR);

		if (devnull >= 0) {
			dup2(devnull, STDIN_FILENO);
			dup2(devnull, STDOUT_FILENO);
		}
		dup2(pipefd[1], STDERR_FILENO);
		execv(req->doveadm, (char *const *)argv);
		dprintf(STDERR_FILENO, "exec: %s", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		char buf[512];

		n = read(pipefd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (errlen < RESTORE_DOVEADM_ERR) {
			size_t k = (size_t)n < RESTORE_DOVEADM_ERR - errlen
			    ? (size_t)n
			    : RESTORE_DOVEADM_ERR - errlen;
			memcpy(errbuf + errlen, buf, k);
			errlen += k;
		}
	}
	close(pipefd[0]);
	errbuf[errlen] = '\0';
	errbuf[strcspn(errbuf, "\n")] = '\0';
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return mk_err_sys(err, "waitpid(doveadm)");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return mk_err_set(err, "doveadm import failed (status %d): %s",
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		    errlen > 0 ? errbuf : "no message");
	return 0;
}

/*
 * Find the request's message: the index of its folder among the
 * selected ones into *folder_r, its size into the progress totals.
 * Nothing is written before it is found.
 */
static int
rs_find_message(struct rs_ctx *ctx, const struct mk_snapshot_mailbox *mb,
    const char *fdir, size_t *folder_r, struct mk_err *err)
{
	struct mk_snapshot_message *msgs = NULL;
	uint8_t *data = NULL;
	size_t len = 0, n = 0, i, k;
	uint32_t c;

	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_snapshot_folder *sf = &mb->folders[i];

		if (!rs_folder_selected(sf->dir, fdir))
			continue;
		for (c = 0; c < sf->nchunks; c++) {
			if (rs_blob(ctx, sf->chunks[c], &data, &len, err) < 0 ||
			    mk_snapshot_messages_decode(
				data, len, &msgs, &n, err) < 0) {
				free(data);
				return -1;
			}
			free(data);
			data = NULL;
			for (k = 0; k < n; k++)
				if (strcmp(msgs[k].base, ctx->req->message) ==
				    0)
					break;
			if (k < n) {
				ctx->prog.messages_total = 1;
				ctx->prog.bytes_total = msgs[k].file.size;
			}
			mk_snapshot_messages_free(&msgs, n);
			if (k < n) {
				*folder_r = i;
				return 0;
			}
		}
	}
	return mk_err_set(err, "no message %s in snapshot %lld%s%s",
	    ctx->req->message, (long long)ctx->req->snapshot,
	    ctx->req->folder != NULL ? " in folder " : "",
	    ctx->req->folder != NULL ? ctx->req->folder : "");
}

/* Prepare the target of the request: ctx->rootfd and friends. */
static int
rs_open_target(struct rs_ctx *ctx, struct mk_err *err)
{
	const struct mk_restore_req *req = ctx->req;
	struct stat st;
	int tmpfd;

	if (req->target == MK_RESTORE_TO_DIR) {
		if (req->dir == NULL || req->dir[0] == '\0')
			return mk_err_set(err, "no target directory");
		ctx->rootfd = rs_target(req->dir, err);
		return ctx->rootfd < 0 ? -1 : 0;
	}
	if (req->format != MK_RESTORE_MAILDIR)
		return mk_err_set(
		    err, "mbox and eml are exports: they go to a directory");
	if (req->maildir == NULL)
		return mk_err_set(err, "no Maildir for the live mailbox");
	ctx->livefd =
	    open(req->maildir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (ctx->livefd < 0) {
		if (errno == ENOENT)
			return mk_err_set(err,
			    "%s: the mailbox's Maildir does not exist",
			    req->maildir);
		if (errno == ELOOP || errno == ENOTDIR)
			return mk_err_set(err,
			    "%s: a symbolic link or not a directory",
			    req->maildir);
		return mk_err_sys(err, "open(%s)", req->maildir);
	}
	if (fstat(ctx->livefd, &st) < 0)
		return mk_err_sys(err, "fstat(%s)", req->maildir);
	ctx->owner = st.st_uid;
	ctx->group = st.st_gid;
	ctx->fix_owner = st.st_uid != geteuid() || st.st_gid != getegid();
	if (req->target == MK_RESTORE_TO_NEW_FOLDER &&
	    rs_pick_prefix(ctx, err) < 0)
		return -1;
	if (req->doveadm == NULL) {
		ctx->direct = true;
		if ((ctx->rootfd = dup(ctx->livefd)) < 0)
			return mk_err_sys(err, "dup");
		return 0;
	}
	/* A private staging Maildir beneath the mailbox's tmp/. */
	if (rs_mkdir(ctx, ctx->livefd, "tmp", &tmpfd, err) < 0)
		return -1;
	snprintf(ctx->staging, sizeof(ctx->staging), "mailkeep-restore.%ld.%lx",
	    (long)getpid(), (unsigned long)time(NULL));
	if (mkdirat(tmpfd, ctx->staging, 0700) < 0) {
		ctx->staging[0] = '\0';
		close(tmpfd);
		return mk_err_sys(err, "mkdir(tmp/%s)", ctx->staging);
	}
	if ((ctx->rootfd = mk_fs_openat_dir(tmpfd, ctx->staging)) < 0 ||
	    (ctx->fix_owner &&
		fchown(ctx->rootfd, ctx->owner, ctx->group) < 0)) {
		close(tmpfd);
		return mk_err_sys(err, "open(tmp/%s)", ctx->staging);
	}
	close(tmpfd);
	return 0;
}

/* Check what the request names before anything is written. */
static int
rs_check_req(const struct mk_restore_req *req, char *fdir, size_t size,
    struct mk_err *err)
{
	const char *m = req->message;

	if (req->folder != NULL &&
	    mk_maildir_folder_dir(
		req->folder, req->separator, fdir, size, err) < 0)
		return -1;
	if (m != NULL &&
	    (m[0] == '\0' || m[0] == '.' || strlen(m) > MK_SNAPSHOT_NAME_MAX ||
		strpbrk(m, "/:,\n") != NULL))
		return mk_err_set(err,
		    "'%s' is not a message id (a base name from mailkeep ls)",
		    m);
	return 0;
}

int
mk_restore_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_restore_req *req, mk_restore_progress_cb *progress_cb,
    void *arg, struct mk_restore_stats *stats_r, struct mk_err *err)
{
	char fdir[MK_SNAPSHOT_NAME_MAX + 1];
	struct mk_snapshot_mailbox *mb = NULL;
	struct rs_snapshot rs;
	struct rs_ctx ctx;
	uint8_t *data = NULL;
	size_t len = 0, i, nsel = 0, only = SIZE_MAX;
	int r, rc = -1, tmpfd;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&ctx, 0, sizeof(ctx));
	memset(&rs, 0, sizeof(rs));
	ctx.repo = repo;
	ctx.cat = cat;
	ctx.req = req;
	ctx.progress_cb = progress_cb;
	ctx.arg = arg;
	ctx.rootfd = ctx.livefd = -1;
	ctx.stats = stats_r;
	ctx.whole = req->folder == NULL && req->message == NULL &&
	    req->target == MK_RESTORE_TO_DIR &&
	    req->format == MK_RESTORE_MAILDIR;
	if (rs_check_req(req, fdir, sizeof(fdir), err) < 0)
		return -1;
	if ((r = mk_catalog_snapshot_get(
		 cat, req->snapshot, rs_snapshot_cb, &rs, err)) < 0)
		return -1;
	if (r == 0)
		return mk_err_set(
		    err, "no snapshot %lld", (long long)req->snapshot);
	if (strcmp(rs.address, req->address) != 0)
		return mk_err_set(err, "snapshot %lld is of %s, not of %s",
		    (long long)req->snapshot, rs.address, req->address);
	if (rs_blob(&ctx, rs.object, &data, &len, err) < 0 ||
	    mk_snapshot_mailbox_decode(data, len, &mb, err) < 0) {
		mk_err_prefix(err, "snapshot %lld", (long long)req->snapshot);
		goto out;
	}
	if (strcmp(mb->address, req->address) != 0) {
		mk_err_set(err, "snapshot %lld: its object is of %s",
		    (long long)req->snapshot, mb->address);
		goto out;
	}
	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_snapshot_folder *sf = &mb->folders[i];

		if (!rs_folder_selected(
			sf->dir, req->folder != NULL ? fdir : NULL))
			continue;
		nsel++;
		ctx.prog.messages_total += sf->messages;
		ctx.prog.bytes_total += sf->bytes;
	}
	if (nsel == 0) {
		mk_err_set(err, "snapshot %lld has no folder %s",
		    (long long)req->snapshot, req->folder);
		goto out;
	}
	if (req->message != NULL &&
	    rs_find_message(
		&ctx, mb, req->folder != NULL ? fdir : NULL, &only, err) < 0)
		goto out;
	if (rs_room(&ctx, err) < 0)
		goto out;
	if (rs_open_target(&ctx, err) < 0)
		goto out;
	if (req->target == MK_RESTORE_TO_ORIGINAL &&
	    rs_live_bases(&ctx, err) < 0)
		goto out;
	/* The Maildir++ root, when the tree has folders but not INBOX. */
	if (req->format == MK_RESTORE_MAILDIR && !ctx.direct) {
		const char *sub[3] = { "tmp", "new", "cur" };

		for (i = 0; i < 3; i++) {
			if (rs_mkdir(&ctx, ctx.rootfd, sub[i], &tmpfd, err) < 0)
				goto out;
			close(tmpfd);
		}
	}
	for (i = 0; i < mb->nfolders; i++)
		if ((req->message != NULL
			    ? i == only
			    : rs_folder_selected(mb->folders[i].dir,
				  req->folder != NULL ? fdir : NULL)) &&
		    rs_folder(&ctx, &mb->folders[i], err) < 0)
			goto out;
	if (ctx.whole) {
		if ((tmpfd = mk_fs_openat_dir(ctx.rootfd, "tmp")) < 0) {
			mk_err_sys(err, "open(tmp)");
			goto out;
		}
		r = rs_meta(&ctx, "", tmpfd, ctx.rootfd, "subscriptions",
		    &mb->subscriptions, err);
		close(tmpfd);
		if (r < 0)
			goto out;
	}
	if (fsync(ctx.rootfd) < 0) {
		mk_err_sys(err, "fsync");
		goto out;
	}
	if (ctx.staging[0] != '\0' &&
	    rs_doveadm(&ctx,
		req->target == MK_RESTORE_TO_NEW_FOLDER ? ctx.stats->folder
							: "",
		err) < 0)
		goto out;
	if (stats_r->problems.count > 0) {
		mk_err_set(err,
		    "%llu messages could not be restored (%llu were)%s%s; "
		    "first: %s",
		    (unsigned long long)stats_r->failed,
		    (unsigned long long)stats_r->messages,
		    stats_r->failed_lists > 0 ? ", nor the messages of a "
						"folder list that could not "
						"be read"
					      : "",
		    stats_r->failed_files > 0
			? ", and metadata files could not be"
			: "",
		    stats_r->problems.first);
		goto out;
	}
	rc = 0;
out:
	if (ctx.staging[0] != '\0' &&
	    (tmpfd = mk_fs_openat_dir(ctx.livefd, "tmp")) >= 0) {
		rs_rmtree(tmpfd, ctx.staging, 0);
		close(tmpfd);
	}
	for (i = 0; i < ctx.nbases; i++)
		free(ctx.bases[i]);
	free(ctx.bases);
	mk_hmap_free(&ctx.live_bases);
	if (ctx.rootfd >= 0)
		close(ctx.rootfd);
	if (ctx.livefd >= 0)
		close(ctx.livefd);
	mk_snapshot_mailbox_free(&mb);
	free(data);
	return rc;
}

int
mk_restore_mailbox(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t snapshot, const char *address, const char *dir,
    struct mk_restore_stats *stats_r, struct mk_err *err)
{
	struct mk_restore_req req;

	memset(&req, 0, sizeof(req));
	req.address = address;
	req.snapshot = snapshot;
	req.separator = '/';
	req.target = MK_RESTORE_TO_DIR;
	req.format = MK_RESTORE_MAILDIR;
	req.dir = dir;
	return mk_restore_run(repo, cat, &req, NULL, NULL, stats_r, err);
}
