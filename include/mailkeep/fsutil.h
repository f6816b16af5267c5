/*
 * fsutil: file system helpers that never follow a symbolic link inside the
 * mail store and never leave a half-written file behind.
 */
#ifndef MAILKEEP_FSUTIL_H
#define MAILKEEP_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
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
