/*
 * store: where the mailboxes are.  A store is a root directory and a
 * template like Dovecot's mail_location, "%d/%n/Maildir": %d is the domain,
 * %n the local part, %u the whole address (the L modifier, as in %Ln, is
 * accepted: addresses are always lower-cased).  Each path component of the
 * template is a literal or one variable with an optional literal prefix and
 * suffix.
 *
 * Not thread-affine; a struct mk_store is read-only after mk_store_new and
 * may be shared between threads.
 */
#ifndef MAILKEEP_STORE_H
#define MAILKEEP_STORE_H

#include <stddef.h>

#include "mailkeep/err.h"

struct mk_store;

struct mk_store_mailbox {
	char *address; /* lower case */
	char *relpath; /* the Maildir, relative to the store root */
};

struct mk_store_list {
	struct mk_store_mailbox *mailboxes; /* sorted by address */
	size_t count;
	struct mk_warnings warnings; /* entries skipped, and why */
};

/* Check the template and keep root and template.  Returns 0 or -1. */
int mk_store_new(const char *root, const char *tmpl, struct mk_store **store_r,
    struct mk_err *err);
void mk_store_free(struct mk_store **storep);

const char *mk_store_root(const struct mk_store *store);

/* Open the store root directory (O_DIRECTORY); returns the fd or -1. */
int mk_store_open_root(const struct mk_store *store, struct mk_err *err);

/*
 * The Maildir path of address relative to the root, into buf.  The
 * address is lower-cased first.  Returns -1 with err set when the address
 * cannot be a mailbox of this template (no '@' for %d/%n, an empty part,
 * '/', or a component "." or "..").
 */
int mk_store_mailbox_path(const struct mk_store *store, const char *address,
    char *buf, size_t size, struct mk_err *err);

/*
 * Find every mailbox under the root by walking the template, never
 * following symbolic links (they are skipped and counted in warnings).
 * On success *list_r belongs to the caller (mk_store_list_free).
 */
int mk_store_list(const struct mk_store *store, struct mk_store_list **list_r,
    struct mk_err *err);
void mk_store_list_free(struct mk_store_list **listp);

/*
 * mk_store_list, calling dir_cb with the path (relative to the root) of
 * every directory the walk enters above the Maildir level, mailbox or
 * not: a watcher watches them to see mailboxes appear.
 */
typedef void mk_store_dir_cb(const char *relpath, void *arg);
int mk_store_walk(const struct mk_store *store, mk_store_dir_cb *dir_cb,
    void *arg, struct mk_store_list **list_r, struct mk_err *err);

#endif
