/*
 * storage: where repository objects live.  An object is an immutable byte
 * string under a name such as "config", "keys/<id>" or
 * "packs/ab/<pack id>".  Backends implement a small table of operations;
 * a location string picks the backend:
 *
 *   /absolute/path                     a local directory (storage_local.c)
 *   s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]
 *                                      an S3 bucket (storage_s3.c), with
 *                                      the settings of struct mk_storage_opts
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

enum mk_storage_url_style {
	MK_STORAGE_URL_PATH, /* https://HOST/BUCKET/KEY */
	MK_STORAGE_URL_VIRTUAL, /* https://BUCKET.HOST/KEY */
};

/*
 * The settings of an s3: location ([repository] in the configuration;
 * docs/s3.md).  mk_storage_opts_default() fills the defaults.
 */
struct mk_storage_opts {
	const char *region; /* signing region, "us-east-1" */
	int url_style; /* enum mk_storage_url_style */
	const char *credentials_file; /* NULL: AWS_* environment variables */
	const char *ca_file; /* NULL: the system's CA certificates */
	uint64_t bandwidth_limit; /* bytes per second per transfer, 0: none */
	unsigned connections; /* requests in flight at most, >= 1 */
	unsigned retries; /* after a timeout, 5xx or lost connection */
	uint64_t timeout; /* seconds without progress that fail a try */
	uint64_t multipart_threshold; /* objects this large go in parts */
	uint64_t part_size; /* >= 5 MiB, S3's smallest part */
};

void mk_storage_opts_default(struct mk_storage_opts *opts);

struct mk_conf;
/* The settings of conf's [repository] section (borrowed strings). */
void mk_storage_opts_from_conf(
    const struct mk_conf *conf, struct mk_storage_opts *opts);

/*
 * Open the storage at location with opts (NULL: the defaults).  With
 * create, a local directory is made (with its parents, mode 0700) if
 * missing; without it, it must exist.  An S3 bucket must exist either
 * way; opening one sends no request.  Returns -1 with err set for an
 * unknown or malformed location or unusable settings (credentials
 * missing, a credentials file others may read).
 */
int mk_storage_open_opts(const char *location,
    const struct mk_storage_opts *opts, bool create, struct mk_storage **st_r,
    struct mk_err *err);
int mk_storage_open(const char *location, bool create, struct mk_storage **st_r,
    struct mk_err *err);

/* Where an s3: location points. */
struct mk_storage_s3_where {
	char scheme[8]; /* "http" or "https" */
	char host[256]; /* "HOST" or "HOST:PORT" as written */
	char bucket[64];
	char prefix[MK_STORAGE_NAME_MAX + 2]; /* "" or "PREFIX/" */
};

/* Parse s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]; -1 with err if bad. */
int mk_storage_s3_parse(const char *location,
    struct mk_storage_s3_where *where_r, struct mk_err *err);

/*
 * Where a request for the object name (NULL: the bucket itself) with the
 * canonical query string query ("" for none) goes in url_style (enum
 * mk_storage_url_style): *url_r is the URL to send it to, *host_r the
 * Host header as signed ("BUCKET.HOST[:PORT]" for virtual-host style),
 * *path_r the canonical URI (the prefix and name, URI-encoded; with the
 * bucket first in path style).  The caller frees all three.
 */
void mk_storage_s3_url(const struct mk_storage_s3_where *where, int url_style,
    const char *name, const char *query, char **url_r, char **host_r,
    char **path_r);

/* The S3 backend (storage_s3.c); see mk_storage_open_opts(). */
int mk_storage_s3_open(const char *location, const struct mk_storage_opts *opts,
    struct mk_storage **st_r, struct mk_err *err);

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
