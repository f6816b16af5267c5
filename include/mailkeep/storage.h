/*
 * storage: where repository objects live.  An object is an immutable byte
 * string under a name such as "config", "keys/<id>" or
 * "packs/ab/<pack id>".  Backends implement a small table of operations;
 * a location string picks the backend:
 *
 *   /absolute/path                     a local directory (storage_local.c)
 *   s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]
 *                                      recognised, refused for now
 *
 * Names are 1-1024 bytes of [A-Za-z0-9._/-] in '/'-separated components
 * of 1-200 bytes each that do not start with '.' (so no "." or "..", no
 * hidden or temporary names); no leading, trailing or double '/'.  Every
 * operation refuses other names.
 *
 * Semantics every backend keeps (an S3 PUT has them too):
 * - put() returns only when the object is durable, and a reader sees the
 *   old object, or none, or the whole new one, never a part.  Putting an
 *   existing name replaces it; names are content hashes or random ids, so
 *   a replacement holds the same bytes.
 * - A missing object makes get() and get_range() fail with
 *   err->sys_errno == ENOENT; stat() returns 0.  Deleting a missing object
 *   succeeds.
 * - list() reports objects whose name starts with prefix, in no
 *   particular order, never a temporary object of an unfinished put().
 *
 * Thread safety: a struct mk_storage may be used by several threads at
 * once, except that two concurrent put() calls of the same name from one
 * process may fail (EEXIST) on the local backend.
 */
#ifndef MAILKEEP_STORAGE_H
#define MAILKEEP_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

#define MK_STORAGE_NAME_MAX 1024
#define MK_STORAGE_COMPONENT_MAX 200

struct mk_storage;

struct mk_storage_stat {
	uint64_t size;
	int64_t mtime; /* seconds since the epoch */
};

/*
 * Called once per object by list(); return 0 to go on, or -1 with err set
 * to stop the listing (list() then returns -1 with that err).
 */
typedef int (*mk_storage_list_cb)(void *arg, const char *name,
    const struct mk_storage_stat *st, struct mk_err *err);

/*
 * A backend's operations.  Names reach them already validated.  get()
 * allocates *data_r (free() it); get_range() fills the caller's buffer
 * and fails if the object holds fewer than offset + len bytes.  stat()
 * returns 1 found, 0 absent, -1 error.  close() frees the backend.
 */
struct mk_storage_ops {
	const char *scheme; /* "local", "s3" */
	int (*put)(struct mk_storage *st, const char *name, const void *data,
	    size_t len, struct mk_err *err);
	int (*get)(struct mk_storage *st, const char *name, uint8_t **data_r,
	    size_t *len_r, struct mk_err *err);
	int (*get_range)(struct mk_storage *st, const char *name,
	    uint64_t offset, void *buf, size_t len, struct mk_err *err);
	int (*list)(struct mk_storage *st, const char *prefix,
	    mk_storage_list_cb cb, void *arg, struct mk_err *err);
	int (*del)(struct mk_storage *st, const char *name, struct mk_err *err);
	int (*stat)(struct mk_storage *st, const char *name,
	    struct mk_storage_stat *stat_r, struct mk_err *err);
	void (*close)(struct mk_storage *st);
};

/* Every backend's object starts with this (its first member). */
struct mk_storage {
	const struct mk_storage_ops *ops;
	char *location; /* as given to mk_storage_open() */
};

/*
 * Open the storage at location.  With create, a local directory is made
 * (with its parents, mode 0700) if missing; without it, it must exist.
 * Returns -1 with err set for an unknown or malformed location, and for a
 * backend not supported yet.
 */
int mk_storage_open(const char *location, bool create, struct mk_storage **st_r,
    struct mk_err *err);

/* The local directory backend; path must be absolute. */
int mk_storage_local_open(const char *path, bool create,
    struct mk_storage **st_r, struct mk_err *err);

void mk_storage_close(struct mk_storage **stp);

/* Whether name is a valid object name (see above); err says why not. */
bool mk_storage_name_valid(const char *name, struct mk_err *err);

/* The operations, with name checks; see struct mk_storage_ops. */
int mk_storage_put(struct mk_storage *st, const char *name, const void *data,
    size_t len, struct mk_err *err);
int mk_storage_get(struct mk_storage *st, const char *name, uint8_t **data_r,
    size_t *len_r, struct mk_err *err);
int mk_storage_get_range(struct mk_storage *st, const char *name,
    uint64_t offset, void *buf, size_t len, struct mk_err *err);
/* prefix "" lists everything; otherwise it is a name or a name's start. */
int mk_storage_list(struct mk_storage *st, const char *prefix,
    mk_storage_list_cb cb, void *arg, struct mk_err *err);
int mk_storage_delete(
    struct mk_storage *st, const char *name, struct mk_err *err);
int mk_storage_stat(struct mk_storage *st, const char *name,
    struct mk_storage_stat *stat_r, struct mk_err *err);

#endif
