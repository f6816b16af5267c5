#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/restore.h"
#include "mailkeep/snapshot.h"
#include "mailkeep/str.h"

struct rs_ctx {
	struct mk_repo *repo;
	struct mk_catalog *cat;
	int rootfd;
	int tmpfd; /* DIR/tmp: where every file is written first */
	unsigned long tmpseq;
	struct mk_restore_stats *stats;
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

static int
rs_write_all(int fd, const uint8_t *p, size_t len)
{
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

/*
 * Write file f as dirfd/name: into a new file in DIR/tmp, checked
 * against its size, its mtime set, fsync'ed, then renamed into place
 * without replacing anything.
 */
static int
rs_write_file(struct rs_ctx *ctx, int dirfd, const char *name,
    const struct mk_snapshot_file *f, struct mk_err *err)
{
	char tmp[64];
	struct timespec ts[2];
	uint8_t *data = NULL;
	uint64_t total = 0;
	size_t len = 0;
	uint32_t i;
	int fd, rc = -1;

	snprintf(
	    tmp, sizeof(tmp), "restore.%ld.%lu", (long)getpid(), ++ctx->tmpseq);
	fd = openat(ctx->tmpfd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return mk_err_sys(err, "open(tmp/%s)", tmp);
	for (i = 0; i < f->nblobs; i++) {
		if (rs_blob(ctx, f->blobs[i], &data, &len, err) < 0)
			goto out;
		if (rs_write_all(fd, data, len) < 0) {
			mk_err_sys(err, "write(tmp/%s)", tmp);
			goto out;
		}
		total += len;
		free(data);
		data = NULL;
	}
	if (total != f->size) {
		mk_err_set(err,
		    "%s: %llu bytes restored, the snapshot says %llu", name,
		    (unsigned long long)total, (unsigned long long)f->size);
		goto out;
	}
	ts[0].tv_sec = ts[1].tv_sec = (time_t)(f->mtime_ns / 1000000000);
	ts[0].tv_nsec = ts[1].tv_nsec = (long)(f->mtime_ns % 1000000000);
	if (ts[1].tv_nsec < 0) {
		ts[0].tv_sec = --ts[1].tv_sec;
		ts[0].tv_nsec = ts[1].tv_nsec += 1000000000;
	}
	if (futimens(fd, ts) < 0) {
		mk_err_sys(err, "futimens(tmp/%s)", tmp);
		goto out;
	}
	if (fsync(fd) < 0) {
		mk_err_sys(err, "fsync(tmp/%s)", tmp);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		mk_err_sys(err, "close(tmp/%s)", tmp);
		goto out;
	}
	fd = -1;
	if (renameat2(ctx->tmpfd, tmp, dirfd, name, RENAME_NOREPLACE) < 0) {
		mk_err_sys(err, "rename(tmp/%s, %s)", tmp, name);
		goto out;
	}
	ctx->stats->files++;
	rc = 0;
out:
	free(data);
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlinkat(ctx->tmpfd, tmp, 0);
	return rc;
}

/* Make the directory name in parentfd and open it, following nothing. */
static int
rs_mkdir(int parentfd, const char *name, int *fd_r, struct mk_err *err)
{
	if (mkdirat(parentfd, name, 0700) < 0)
		return mk_err_sys(err, "mkdir(%s)", name);
	if ((*fd_r = mk_fs_openat_dir(parentfd, name)) < 0)
		return mk_err_sys(err, "open(%s)", name);
	return 0;
}

/* An optional metadata file of the snapshot, if it was there. */
static int
rs_meta(struct rs_ctx *ctx, int dirfd, const char *name,
    const struct mk_snapshot_file *f, struct mk_err *err)
{
	if (!f->present)
		return 0;
	return rs_write_file(ctx, dirfd, name, f, err);
}

/* The messages of one list chunk, into new/ (subfd[0]) and cur/. */
static int
rs_chunk(struct rs_ctx *ctx, const uint8_t id[MK_PACK_ID_LEN],
    const int subfd[2], struct mk_err *err)
{
	struct mk_snapshot_message *msgs = NULL;
	char name[MK_SNAPSHOT_NAME_MAX + 1];
	uint8_t *data = NULL;
	size_t len = 0, n = 0, i;
	int rc = -1;

	if (rs_blob(ctx, id, &data, &len, err) < 0 ||
	    mk_snapshot_messages_decode(data, len, &msgs, &n, err) < 0)
		goto out;
	for (i = 0; i < n; i++) {
		const struct mk_snapshot_message *m = &msgs[i];

		snprintf(name, sizeof(name), "%s%s", m->base, m->suffix);
		if (rs_write_file(ctx, subfd[m->cur], name, &m->file, err) <
		    0) {
			/* Say which message could not be restored. */
			mk_err_prefix(err, "message %s", name);
			goto out;
		}
		ctx->stats->messages++;
		ctx->stats->bytes += m->file.size;
	}
	rc = 0;
out:
	mk_snapshot_messages_free(&msgs, n);
	free(data);
	return rc;
}

/* One folder: its directories, metadata files and messages. */
static int
rs_folder(
    struct rs_ctx *ctx, const struct mk_snapshot_folder *f, struct mk_err *err)
{
	int fd = -1, subfd[2] = { -1, -1 }, tmpfd = -1, rc = -1;
	uint32_t i;

	if (f->dir[0] == '\0') {
		if ((fd = dup(ctx->rootfd)) < 0) {
			mk_err_sys(err, "dup");
			goto out;
		}
		tmpfd = dup(ctx->tmpfd);
	} else if (rs_mkdir(ctx->rootfd, f->dir, &fd, err) < 0 ||
	    rs_mkdir(fd, "tmp", &tmpfd, err) < 0)
		goto out;
	if (tmpfd < 0 || rs_mkdir(fd, "new", &subfd[0], err) < 0 ||
	    rs_mkdir(fd, "cur", &subfd[1], err) < 0) {
		if (tmpfd < 0)
			mk_err_sys(err, "dup");
		goto out;
	}
	if (rs_meta(ctx, fd, "dovecot-uidlist", &f->uidlist, err) < 0 ||
	    rs_meta(ctx, fd, "dovecot-keywords", &f->keywords, err) < 0 ||
	    rs_meta(ctx, fd, "maildirfolder", &f->maildirfolder, err) < 0)
		goto out;
	for (i = 0; i < f->nchunks; i++)
		if (rs_chunk(ctx, f->chunks[i], subfd, err) < 0)
			goto out;
	if (fsync(subfd[0]) < 0 || fsync(subfd[1]) < 0 || fsync(fd) < 0) {
		mk_err_sys(err, "fsync");
		goto out;
	}
	ctx->stats->folders++;
	rc = 0;
out:
	if (rc < 0)
		mk_err_prefix(
		    err, "folder %s", f->dir[0] != '\0' ? f->dir : "INBOX");
	if (subfd[0] >= 0)
		close(subfd[0]);
	if (subfd[1] >= 0)
		close(subfd[1]);
	if (tmpfd >= 0)
		close(tmpfd);
	if (fd >= 0)
		close(fd);
	return rc;
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

int
mk_restore_mailbox(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t snapshot, const char *address, const char *dir,
    struct mk_restore_stats *stats_r, struct mk_err *err)
{
	struct mk_snapshot_mailbox *mb = NULL;
	struct rs_snapshot rs;
	struct rs_ctx ctx;
	uint8_t *data = NULL;
	size_t len = 0, i;
	int r, rc = -1;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&ctx, 0, sizeof(ctx));
	memset(&rs, 0, sizeof(rs));
	ctx.repo = repo;
	ctx.cat = cat;
	ctx.rootfd = ctx.tmpfd = -1;
	ctx.stats = stats_r;
	if ((r = mk_catalog_snapshot_get(
		 cat, snapshot, rs_snapshot_cb, &rs, err)) < 0)
		return -1;
	if (r == 0)
		return mk_err_set(err, "no snapshot %lld", (long long)snapshot);
	if (strcmp(rs.address, address) != 0)
		return mk_err_set(err, "snapshot %lld is of %s, not of %s",
		    (long long)snapshot, rs.address, address);
	if (rs_blob(&ctx, rs.object, &data, &len, err) < 0 ||
	    mk_snapshot_mailbox_decode(data, len, &mb, err) < 0) {
		mk_err_prefix(err, "snapshot %lld", (long long)snapshot);
		goto out;
	}
	if (strcmp(mb->address, address) != 0) {
		mk_err_set(err, "snapshot %lld: its object is of %s",
		    (long long)snapshot, mb->address);
		goto out;
	}
	if ((ctx.rootfd = rs_target(dir, err)) < 0 ||
	    rs_mkdir(ctx.rootfd, "tmp", &ctx.tmpfd, err) < 0)
		goto out;
	for (i = 0; i < mb->nfolders; i++)
		if (rs_folder(&ctx, &mb->folders[i], err) < 0)
			goto out;
	if (rs_meta(
		&ctx, ctx.rootfd, "subscriptions", &mb->subscriptions, err) < 0)
		goto out;
	if (fsync(ctx.tmpfd) < 0 || fsync(ctx.rootfd) < 0) {
		mk_err_sys(err, "fsync(%s)", dir);
		goto out;
	}
	rc = 0;
out:
	if (ctx.tmpfd >= 0)
		close(ctx.tmpfd);
	if (ctx.rootfd >= 0)
		close(ctx.rootfd);
	mk_snapshot_mailbox_free(&mb);
	free(data);
	return rc;
}
