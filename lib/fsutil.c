#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

int
mk_fs_openat_dir(int dirfd, const char *name)
{
	struct stat st;
	int fd, saved;

	fd = openat(
	    dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || (errno != ENOTDIR && errno != ELOOP))
		return fd;
	/* With O_DIRECTORY, Linux says ENOTDIR for a symbolic link. */
	saved = errno;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode))
		errno = ELOOP;
	else
		errno = saved;
	return -1;
}

/*
 * relpath beneath dirfd in one openat2() that refuses symbolic links and
 * "..": -1 on any failure, and the walk below then says which component
 * was wrong (or does the work on a kernel without openat2).
 */
static int
fs_openat2_dir_beneath(int dirfd, const char *relpath)
{
	struct open_how how;

	if (relpath[0] == '\0' || strstr(relpath, "..") != NULL)
		return -1;
	memset(&how, 0, sizeof(how));
	how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
	return (int)syscall(SYS_openat2, dirfd, relpath, &how, sizeof(how));
}

int
mk_fs_open_dir_beneath(int dirfd, const char *relpath, struct mk_err *err)
{
	char comp[NAME_MAX + 1];
	const char *p = relpath;
	int fd, next;

	if ((fd = fs_openat2_dir_beneath(dirfd, relpath)) >= 0)
		return fd;
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", relpath);
	while (*p != '\0') {
		size_t len = strcspn(p, "/");

		if (len == 0) {
			p++;
			continue;
		}
		if (len > NAME_MAX) {
			close(fd);
			return mk_err_set(
			    err, "open(%s): name too long", relpath);
		}
		memcpy(comp, p, len);
		comp[len] = '\0';
		p += len;
		if (strcmp(comp, ".") == 0)
			continue;
		if (strcmp(comp, "..") == 0) {
			close(fd);
			return mk_err_set(
			    err, "open(%s): '..' not allowed", relpath);
		}
		next = mk_fs_openat_dir(fd, comp);
		if (next < 0) {
			int saved = errno;

			close(fd);
			errno = saved;
			if (errno == ELOOP)
				return mk_err_set(err,
				    "open(%s): '%s' is a symbolic link",
				    relpath, comp);
			return mk_err_sys(err, "open(%s)", relpath);
		}
		close(fd);
		fd = next;
	}
	return fd;
}

void
mk_fs_dir_start(struct mk_fs_dir *d, int fd, char *buf, size_t size)
{
	d->fd = fd;
	d->buf = buf;
	d->size = size;
	d->pos = 0;
	d->len = 0;
}

int
mk_fs_dir_rewind(struct mk_fs_dir *d)
{
	d->pos = 0;
	d->len = 0;
	return lseek(d->fd, 0, SEEK_SET) < 0 ? -1 : 0;
}

int
mk_fs_dir_next(struct mk_fs_dir *d, struct mk_fs_dirent *de_r)
{
	const struct dirent64 *de;

	if (d->pos >= d->len) {
		ssize_t n;

		while ((n = getdents64(d->fd, d->buf, d->size)) < 0 &&
		    errno == EINTR)
			;
		if (n < 0)
			return -1;
		if (n == 0)
			return 0;
		d->pos = 0;
		d->len = (size_t)n;
	}
	de = (const struct dirent64 *)(const void *)(d->buf + d->pos);
	d->pos += de->d_reclen;
	de_r->name = de->d_name;
	de_r->ino = (uint64_t)de->d_ino;
	de_r->type = de->d_type;
	return 1;
}

int
mk_fs_stat_beneath(int dirfd, const char *relpath, struct stat *st)
{
	struct open_how how;
	int fd, r, saved;

	memset(&how, 0, sizeof(how));
	how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS;
	fd = (int)syscall(SYS_openat2, dirfd, relpath, &how, sizeof(how));
	if (fd < 0)
		return -1;
	r = fstat(fd, st);
	saved = errno;
	close(fd);
	errno = saved;
	if (r == 0 && S_ISLNK(st->st_mode)) {
		errno = ELOOP;
		return -1;
	}
	return r;
}

int
mk_fs_write_atomic(int dirfd, const char *name, const void *data, size_t len,
    mode_t mode, struct mk_err *err)
{
	char tmp[NAME_MAX + 1];
	const char *p = data;
	int fd = -1, rc = -1;
	size_t done = 0;

	if ((size_t)snprintf(tmp, sizeof(tmp), ".%s.tmp.%ld", name,
		(long)getpid()) >= sizeof(tmp))
		return mk_err_set(err, "write(%s): name too long", name);
	fd = openat(dirfd, tmp,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", tmp);
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			mk_err_sys(err, "write(%s)", tmp);
			goto out;
		}
		done += (size_t)n;
	}
	if (fchmod(fd, mode) < 0) {
		mk_err_sys(err, "fchmod(%s)", tmp);
		goto out;
	}
	if (fsync(fd) < 0) {
		mk_err_sys(err, "fsync(%s)", tmp);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		mk_err_sys(err, "close(%s)", tmp);
		goto out;
	}
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		mk_err_sys(err, "rename(%s, %s)", tmp, name);
		goto out;
	}
	if (fsync(dirfd) < 0) {
		mk_err_sys(err, "fsync(directory of %s)", name);
		return -1;
	}
	return 0;
out:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}

int
mk_fs_mkdir_p(const char *path, mode_t mode, struct mk_err *err)
{
	char buf[PATH_MAX];
	char *p;

	if (mk_strlcpy(buf, path, sizeof(buf)) >= sizeof(buf))
		return mk_err_set(err, "mkdir(%s): path too long", path);
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return mk_err_sys(err, "mkdir(%s)", buf);
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return mk_err_sys(err, "mkdir(%s)", buf);
	return 0;
}

int
mk_fs_read_file(const char *path, size_t max, char **data_r, size_t *len_r,
    struct mk_err *err)
{
	char *buf = NULL;
	size_t len = 0;
	int fd, rc = -1;
	struct stat st;

	*data_r = NULL;
	/* O_NONBLOCK: a FIFO put where a file belongs must not hang us. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", path);
	if (fstat(fd, &st) < 0) {
		mk_err_sys(err, "fstat(%s)", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		mk_err_set(err, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		mk_err_set(err, "%s: larger than %zu bytes", path, max);
		goto out;
	}
	buf = mk_xmalloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			mk_err_sys(err, "read(%s)", path);
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	*data_r = buf;
	buf = NULL;
	if (len_r != NULL)
		*len_r = len;
	rc = 0;
out:
	free(buf);
	close(fd);
	return rc;
}

bool
mk_fs_path_beneath(const char *path, const char *root)
{
	size_t len = strlen(root);
	const char *p;

	while (len > 1 && root[len - 1] == '/')
		len--;
	if (root[0] != '/' || strncmp(path, root, len) != 0 ||
	    (len > 1 && path[len] != '/') || path[len + (len > 1)] == '\0')
		return false;
	for (p = path + len - (len == 1); *p != '\0'; p++)
		if (p[0] == '/' &&
		    (p[1] == '/' || p[1] == '\0' || strncmp(p, "/./", 3) == 0 ||
			strcmp(p, "/.") == 0 || strncmp(p, "/../", 4) == 0 ||
			strcmp(p, "/..") == 0))
			return false;
	return true;
}
