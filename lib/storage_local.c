#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/storage.h"

/*
 * The local directory backend.  An object "a/b/c" is the file a/b/c under
 * the root; directories are created on demand and never removed.  Every
 * path below the root is opened one component at a time without
 * following symbolic links; the root itself may be one.
 */
struct storage_local {
	struct mk_storage base;
	int rootfd;
};

static struct storage_local *
local_of(struct mk_storage *st)
{
	return (struct storage_local *)st;
}

/*
 * Split name at its last '/': dir gets the directory part ("" for none),
 * *base_r points at the last component inside name.
 */
static void
local_split(
    const char *name, char dir[MK_STORAGE_NAME_MAX + 1], const char **base_r)
{
	const char *slash = strrchr(name, '/');
	size_t n = slash == NULL ? 0 : (size_t)(slash - name);

	memcpy(dir, name, n);
	dir[n] = '\0';
	*base_r = slash == NULL ? name : slash + 1;
}

/*
 * Open the directory dir under the root, creating missing components.
 * Each parent is fsync'ed once its child exists, so that an object put
 * into a new directory cannot vanish with the directory in a crash.
 */
static int
local_mkdirs(struct storage_local *l, const char *dir, struct mk_err *err)
{
	char comp[MK_STORAGE_COMPONENT_MAX + 1];
	const char *p = dir;
	int fd, next;

	if ((fd = dup(l->rootfd)) < 0)
		return mk_err_sys(err, "dup");
	while (*p != '\0') {
		size_t n = strcspn(p, "/");

		memcpy(comp, p, n);
		comp[n] = '\0';
		p += n + (p[n] == '/');
		if (mkdirat(fd, comp, 0700) < 0 && errno != EEXIST) {
			mk_err_sys(err, "mkdir(%s)", comp);
			close(fd);
			return -1;
		}
		/*
		 * Also when it existed: another thread may have made it and
		 * not yet synced it.  A clean directory syncs at no cost.
		 */
		if (fsync(fd) < 0) {
			mk_err_sys(err, "fsync(parent of %s)", comp);
			close(fd);
			return -1;
		}
		next = mk_fs_openat_dir(fd, comp);
		if (next < 0) {
			if (errno == ELOOP)
				mk_err_set(
				    err, "open(%s): symbolic link", comp);
			else
				mk_err_sys(err, "open(%s)", comp);
			close(fd);
			return -1;
		}
		close(fd);
		fd = next;
	}
	return fd;
}

/*
 * Open the directory dir under the root without creating it.  Returns
 * the fd, -2 when a component does not exist, or -1 with err set.
 */
static int
local_open_dir(struct storage_local *l, const char *dir, struct mk_err *err)
{
	struct mk_err derr;
	int fd;

	if ((fd = mk_fs_open_dir_beneath(l->rootfd, dir, &derr)) >= 0)
		return fd;
	if (derr.sys_errno == ENOENT)
		return -2;
	if (err != NULL)
		*err = derr;
	return -1;
}

static int
local_put(struct mk_storage *st, const char *name, const void *data, size_t len,
    struct mk_err *err)
{
	char dir[MK_STORAGE_NAME_MAX + 1];
	const char *base;
	int dirfd, rc;

	local_split(name, dir, &base);
	if ((dirfd = local_mkdirs(local_of(st), dir, err)) < 0)
		return mk_err_prefix(err, "put(%s)", name);
	rc = mk_fs_write_atomic(dirfd, base, data, len, 0600, err);
	close(dirfd);
	if (rc < 0)
		return mk_err_prefix(err, "put(%s)", name);
	return 0;
}

/*
 * Open the regular file name for reading, without following a symbolic
 * link anywhere below the root.  Fills *st_r.
 */
static int
local_open_file(struct storage_local *l, const char *name, struct stat *st_r,
    struct mk_err *err)
{
	char dir[MK_STORAGE_NAME_MAX + 1];
	const char *base;
	int dirfd, fd;

	local_split(name, dir, &base);
	if ((dirfd = mk_fs_open_dir_beneath(l->rootfd, dir, err)) < 0)
		return mk_err_prefix(err, "get(%s)", name);
	fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ELOOP)
			mk_err_set(err, "get(%s): symbolic link", name);
		else
			mk_err_sys(err, "get(%s)", name);
		close(dirfd);
		return -1;
	}
	close(dirfd);
	if (fstat(fd, st_r) < 0) {
		mk_err_sys(err, "fstat(%s)", name);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st_r->st_mode)) {
		mk_err_set(err, "get(%s): not a regular file", name);
		close(fd);
		return -1;
	}
	return fd;
}

/* Read exactly len bytes at offset; a short file is an error. */
static int
local_pread_all(int fd, const char *name, uint64_t offset, void *buf,
    size_t len, struct mk_err *err)
{
	uint8_t *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n =
		    pread(fd, p + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mk_err_sys(err, "read(%s)", name);
		if (n == 0)
			return mk_err_set(
			    err, "read(%s): object ends early", name);
		done += (size_t)n;
	}
	return 0;
}

static int
local_get(struct mk_storage *st, const char *name, uint8_t **data_r,
    size_t *len_r, struct mk_err *err)
{
	uint8_t *buf = NULL;
	struct stat sb;
	int fd, rc = -1;

	if ((fd = local_open_file(local_of(st), name, &sb, err)) < 0)
		return -1;
	if ((uint64_t)sb.st_size > SIZE_MAX / 2) {
		mk_err_set(err, "get(%s): too large", name);
		goto out;
	}
	buf = mk_xmalloc((size_t)sb.st_size);
	if (local_pread_all(fd, name, 0, buf, (size_t)sb.st_size, err) < 0)
		goto out;
	*data_r = buf;
	*len_r = (size_t)sb.st_size;
	buf = NULL;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

static int
local_get_range(struct mk_storage *st, const char *name, uint64_t offset,
    void *buf, size_t len, struct mk_err *err)
{
	struct stat sb;
	int fd, rc = -1;

	if ((fd = local_open_file(local_of(st), name, &sb, err)) < 0)
		return -1;
	if (offset + len > (uint64_t)sb.st_size) {
		mk_err_set(err,
		    "get(%s): bytes %llu-%llu asked, the object has %llu", name,
		    (unsigned long long)offset,
		    (unsigned long long)(offset + len),
		    (unsigned long long)sb.st_size);
		goto out;
	}
	rc = local_pread_all(fd, name, offset, buf, len, err);
out:
	close(fd);
	return rc;
}

struct local_walk {
	mk_storage_list_cb cb;
	void *arg;
	char name[MK_STORAGE_NAME_MAX + 1];
};

/*
 * Report the objects in the directory dirfd, whose name is walk->name
 * (len bytes, "" for the root), recursing into subdirectories.  At the
 * top level only entries starting with start are looked at.
 */
static int
local_walk_dir(struct local_walk *walk, int dirfd, size_t len,
    const char *start, struct mk_err *err)
{
	struct mk_storage_stat ost;
	struct dirent *de;
	int fd, rc = -1;
	DIR *dir;

	if ((fd = dup(dirfd)) < 0)
		return mk_err_sys(err, "dup");
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return mk_err_sys(err, "fdopendir(%s)", walk->name);
	}
	while ((errno = 0, de = readdir(dir)) != NULL) {
		size_t nlen = strlen(de->d_name), sep = len > 0;
		struct stat sb;

		/* Dot names are temporary files of unfinished puts. */
		if (de->d_name[0] == '.' ||
		    strncmp(de->d_name, start, strlen(start)) != 0)
			continue;
		if (len + sep + nlen > MK_STORAGE_NAME_MAX)
			continue;
		if (sep)
			walk->name[len] = '/';
		memcpy(walk->name + len + sep, de->d_name, nlen + 1);
		if (!mk_storage_name_valid(walk->name, NULL))
			goto next;
		if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				goto next;
			mk_err_sys(err, "stat(%s)", walk->name);
			goto out;
		}
		if (S_ISDIR(sb.st_mode)) {
			int sub = mk_fs_openat_dir(dirfd, de->d_name);

			if (sub < 0) {
				if (errno == ENOENT)
					goto next;
				mk_err_sys(err, "open(%s)", walk->name);
				goto out;
			}
			if (local_walk_dir(
				walk, sub, len + sep + nlen, "", err) < 0) {
				close(sub);
				goto out;
			}
			close(sub);
		} else if (S_ISREG(sb.st_mode)) {
			ost.size = (uint64_t)sb.st_size;
			ost.mtime = (int64_t)sb.st_mtime;
			if (walk->cb(walk->arg, walk->name, &ost, err) < 0)
				goto out;
		}
	next:
		walk->name[len] = '\0';
	}
	if (errno != 0) {
		mk_err_sys(err, "readdir(%s)", walk->name);
		goto out;
	}
	rc = 0;
out:
	walk->name[len] = '\0';
	closedir(dir);
	return rc;
}

static int
local_list(struct mk_storage *st, const char *prefix, mk_storage_list_cb cb,
    void *arg, struct mk_err *err)
{
	struct local_walk walk = { cb, arg, "" };
	char dir[MK_STORAGE_NAME_MAX + 1];
	const char *start;
	int dirfd, rc;

	local_split(prefix, dir, &start);
	if ((dirfd = local_open_dir(local_of(st), dir, err)) < 0)
		return dirfd == -2 ? 0 : mk_err_prefix(err, "list(%s)", prefix);
	memcpy(walk.name, dir, strlen(dir) + 1);
	rc = local_walk_dir(&walk, dirfd, strlen(dir), start, err);
	close(dirfd);
	return rc;
}

static int
local_del(struct mk_storage *st, const char *name, struct mk_err *err)
{
	char dir[MK_STORAGE_NAME_MAX + 1];
	const char *base;
	int dirfd, rc = -1;

	local_split(name, dir, &base);
	if ((dirfd = local_open_dir(local_of(st), dir, err)) < 0)
		return dirfd == -2 ? 0 : mk_err_prefix(err, "delete(%s)", name);
	if (unlinkat(dirfd, base, 0) < 0) {
		if (errno == ENOENT)
			rc = 0;
		else
			mk_err_sys(err, "delete(%s)", name);
		goto out;
	}
	if (fsync(dirfd) < 0) {
		mk_err_sys(err, "fsync(directory of %s)", name);
		goto out;
	}
	rc = 0;
out:
	close(dirfd);
	return rc;
}

static int
local_stat(struct mk_storage *st, const char *name,
    struct mk_storage_stat *stat_r, struct mk_err *err)
{
	char dir[MK_STORAGE_NAME_MAX + 1];
	const char *base;
	struct stat sb;
	int dirfd, rc = -1;

	local_split(name, dir, &base);
	if ((dirfd = local_open_dir(local_of(st), dir, err)) < 0)
		return dirfd == -2 ? 0 : mk_err_prefix(err, "stat(%s)", name);
	if (fstatat(dirfd, base, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			rc = 0;
		else
			mk_err_sys(err, "stat(%s)", name);
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		mk_err_set(err, "stat(%s): not a regular file", name);
		goto out;
	}
	stat_r->size = (uint64_t)sb.st_size;
	stat_r->mtime = (int64_t)sb.st_mtime;
	rc = 1;
out:
	close(dirfd);
	return rc;
}

static void
local_close(struct mk_storage *st)
{
	struct storage_local *l = local_of(st);

	close(l->rootfd);
	free(l->base.location);
	free(l);
}

static const struct mk_storage_ops local_ops = {
	.scheme = "local",
	.put = local_put,
	.get = local_get,
	.get_range = local_get_range,
	.list = local_list,
	.del = local_del,
	.stat = local_stat,
	.close = local_close,
};

int
mk_storage_local_open(
    const char *path, bool create, struct mk_storage **st_r, struct mk_err *err)
{
	struct storage_local *l;
	int fd;

	*st_r = NULL;
	if (path[0] != '/')
		return mk_err_set(err, "%s: not an absolute path", path);
	if (create && mk_fs_mkdir_p(path, 0700, err) < 0)
		return -1;
	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return mk_err_sys(err, "open(%s)", path);
	l = mk_xcalloc(1, sizeof(*l));
	l->base.ops = &local_ops;
	l->base.location = mk_xstrdup(path);
	l->rootfd = fd;
	*st_r = &l->base;
	return 0;
}
