/*
 * catalog: the daemon's and the CLI's persistent state in SQLite (WAL):
 * mailboxes, their folders with the directory mtimes seen at the last
 * listing, usage and its daily history.  The only module that includes
 * sqlite3.h.  Migrations are keyed by PRAGMA user_version, so later
 * schema versions (snapshots, message versions) are added, not rewritten.
 *
 * One struct mk_catalog per thread; it is not thread-safe.
 */
#ifndef MAILKEEP_CATALOG_H
#define MAILKEEP_CATALOG_H

#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/quota.h"
#include "mailkeep/scan.h"

struct mk_catalog;

/* The schema version this build writes. */
#define MK_CATALOG_VERSION 2

/*
 * Open (creating with mode 0600) and migrate the catalog at path.
 * Refuses a catalog written by a newer version.
 */
int mk_catalog_open(
    const char *path, struct mk_catalog **cat_r, struct mk_err *err);
void mk_catalog_close(struct mk_catalog **catp);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK. */
int mk_catalog_begin(struct mk_catalog *cat, struct mk_err *err);
int mk_catalog_commit(struct mk_catalog *cat, struct mk_err *err);
void mk_catalog_rollback(struct mk_catalog *cat);

/*
 * Record the usage of a mailbox, listed at scanned_ns and current at now_ns
 * (ns since the epoch): the mailbox row, one row per folder (folders no
 * longer there are dropped), and the history sample of now's day.
 */
int mk_catalog_put_usage(struct mk_catalog *cat,
    const struct mk_mailbox_usage *mu, int64_t scanned_ns, int64_t now_ns,
    struct mk_err *err);

/*
 * After a scan of the whole store that started at start_ns: mark every
 * mailbox not recorded since as removed from the store (its row and
 * history stay).  Returns the number marked, or -1.
 */
int64_t mk_catalog_mark_removed(
    struct mk_catalog *cat, int64_t start_ns, struct mk_err *err);

/* Read back one mailbox's usage; 1 found, 0 unknown, -1 error. */
int mk_catalog_get_usage(struct mk_catalog *cat, const char *address,
    struct mk_mailbox_usage **usage_r, struct mk_err *err);

/*
 * Call cb for every mailbox still in the store, in address order, with
 * its usage (which cb takes over and must free) and when it was recorded
 * (ns since the epoch).
 */
typedef void mk_catalog_usage_cb(
    struct mk_mailbox_usage *mu, int64_t scanned_ns, void *arg);
int mk_catalog_load_all(struct mk_catalog *cat, mk_catalog_usage_cb *cb,
    void *arg, struct mk_err *err);

/*
 * Call cb with the daily usage samples of a mailbox, newest first, at
 * most max_days of them; day is days since the epoch (UTC).
 */
typedef void mk_catalog_history_cb(
    int64_t day, const struct mk_usage *u, void *arg);
int mk_catalog_get_history(struct mk_catalog *cat, const char *address,
    unsigned max_days, mk_catalog_history_cb *cb, void *arg,
    struct mk_err *err);

/*
 * Limits set at run time ("quota set"), by target: an address, "@domain"
 * or "default".  Limits with no resource set delete the target's row.
 */
int mk_catalog_limit_put(struct mk_catalog *cat, const char *target,
    const struct mk_quota_limits *l, struct mk_err *err);
typedef void mk_catalog_limit_cb(
    const char *target, const struct mk_quota_limits *l, void *arg);
int mk_catalog_limits_load(struct mk_catalog *cat, mk_catalog_limit_cb *cb,
    void *arg, struct mk_err *err);

/* Warning states (mk_warn_state_format text) by address. */
int mk_catalog_warn_put(struct mk_catalog *cat, const char *address,
    const char *state, struct mk_err *err);
typedef void mk_catalog_warn_cb(
    const char *address, const char *state, void *arg);
int mk_catalog_warns_load(struct mk_catalog *cat, mk_catalog_warn_cb *cb,
    void *arg, struct mk_err *err);

#endif
