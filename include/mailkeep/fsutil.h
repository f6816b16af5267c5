/*
 * fsutil: file system helpers that never follow a symbolic link inside the
 * mail store and never leave a half-written file behind.
 */
#ifndef MAILKEEP_FSUTIL_H
#define MAILKEEP_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "mailkeep/err.h"

/*
 * Open the directory name in dirfd without following a symbolic link.
 * Returns the fd, or -1 with errno ELOOP when name is a symbolic link,
 * ENOTDIR when it is something else, ENOENT when it is gone.
 */
int mk_fs_openat_dir(int dirfd, const char *name);

/*
 * Open the directory relpath beneath dirfd, one component at a time with
 * O_NOFOLLOW, so that no symbolic link and no ".." is ever followed.
 * relpath "" or "." opens dirfd itself again.  Returns the new fd, or -1
 * with err set (ELOOP / ENOTDIR when a component is a symbolic link).
 */
int mk_fs_open_dir_beneath(int dirfd, const char *relpath, struct mk_err *err);

/*
 * A directory listed with getdents64(2) straight into a caller's buffer:
 * no fdopendir() (which fstat()s and fcntl()s the fd again) and one
 * system call per buffer of entries.  The fd stays the caller's.
 */
struct mk_fs_dir {
	int fd;
	char *buf;
	size_t size; /* of buf; 32 KiB lists a folder of ~300 names at once */
	size_t pos;
	size_t len;
};

struct mk_fs_dirent {
	const char *name; /* valid until the next mk_fs_dir_next */
	uint64_t ino;
	unsigned char type; /* DT_REG, DT_DIR, DT_LNK, DT_UNKNOWN, ... */
};

/* Start listing fd from its current offset into buf. */
void mk_fs_dir_start(struct mk_fs_dir *d, int fd, char *buf, size_t size);

/* Go back to the first entry (lseek to 0).  Returns 0 or -1 with errno. */
int mk_fs_dir_rewind(struct mk_fs_dir *d);

/*
 * The next entry, "." and ".." included.  Returns 1 with *de_r filled, 0
 * at the end, or -1 with errno set.
 */
int mk_fs_dir_next(struct mk_fs_dir *d, struct mk_fs_dirent *de_r);

/*
 * stat() relpath beneath dirfd without following any symbolic link on
 * the way (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS).
 * Returns 0 or -1 with errno set (ENOENT when it is gone, ELOOP for a
 * link).
 */
int mk_fs_stat_beneath(int dirfd, const char *relpath, struct stat *st);

/*
 * Write data to dirfd/name atomically: a temporary file created with
 * O_EXCL beside it, written, fsync'ed, renamed over name, and the
 * directory fsync'ed.  The temporary file is removed on failure.
 */
int mk_fs_write_atomic(int dirfd, const char *name, const void *data,
    size_t len, mode_t mode, struct mk_err *err);

/* Create path and its missing parents with mode (like mkdir -p). */
int mk_fs_mkdir_p(const char *path, mode_t mode, struct mk_err *err);

/* Is path an absolute path strictly beneath the directory root, with no
 * empty, "." or ".." component (the text only; nothing is resolved)? */
bool mk_fs_path_beneath(const char *path, const char *root);

/* Read a whole small file (at most max bytes) into a NUL-ended buffer. */
int mk_fs_read_file(const char *path, size_t max, char **data_r, size_t *len_r,
    struct mk_err *err);

#endif
