/*
 * enforce: quota on live usage.  The limits of every mailbox (lib/limits),
 * the reservations of the policy service, the Postfix alias map, the
 * maildirsize files of limited mailboxes, and the warning mails at
 * thresholds.
 *
 * live calls mk_enforce_changed after each change of a mailbox's usage;
 * maildirsize is checked after 2 s of quiet and rewritten (in the pool)
 * when its sum or limit line disagrees; warnings are written into the
 * mailbox's INBOX (tmp to new, in the pool) with a maildirsize delta of
 * their own.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_ENFORCE_H
#define MAILKEEPD_ENFORCE_H

#include <stdbool.h>

#include "mailkeep/aliases.h"
#include "mailkeep/catalog.h"
#include "mailkeep/policy.h"
#include "mailkeep/quota.h"
#include "mailkeep/warn.h"

#include "daemon.h"

struct mk_enforce;
struct mk_live_mailbox;

/* What status shows of one mailbox's quota. */
struct mk_enforce_view {
	struct mk_quota_limits limits;
	enum mk_quota_basis basis;
	uint64_t bytes; /* counted: basis and folder rules applied */
	uint64_t messages;
	unsigned percent; /* of the tighter limit; 0 when unlimited */
	struct mk_warn_state warn;
	uint64_t resv_bytes;
};

int mk_enforce_new(struct mk_daemon *d, struct mk_catalog *cat,
    struct mk_enforce **enforce_r, struct mk_err *err);
void mk_enforce_free(struct mk_enforce **enforcep);

/* Check what conf says about quota (mailkeepd -n); 0 or -1. */
int mk_enforce_check_conf(const struct mk_conf *conf, struct mk_err *err);

/*
 * A new configuration in two steps: mk_enforce_prepare() reads the files
 * conf names and the run-time limits from cat, on a worker (NULL and
 * err when something is wrong); mk_enforce_apply() takes the result on
 * the loop.  conf must outlive the enforcer (main.c keeps every
 * configuration until exit).
 */
struct mk_enforce_prepared;
struct mk_enforce_prepared *mk_enforce_prepare(
    const struct mk_conf *conf, struct mk_catalog *cat, struct mk_err *err);
void mk_enforce_apply(struct mk_enforce *e, const struct mk_conf *conf,
    struct mk_enforce_prepared **preparedp);
void mk_enforce_prepared_free(struct mk_enforce_prepared **preparedp);

/* The usage of mb changed; arrived says a message landed in it. */
void mk_enforce_changed(
    struct mk_enforce *e, struct mk_live_mailbox *mb, bool arrived);

void mk_enforce_view(const struct mk_enforce *e,
    const struct mk_live_mailbox *mb, struct mk_enforce_view *v);

/*
 * Set a limit at run time: saved in the catalog by a worker, then
 * applied, then done(arg, rc, err) on the loop (rc -1: not saved, not
 * applied).  Returns -1 (and calls nothing) for a malformed target.
 */
typedef void mk_enforce_limit_done_cb(
    void *arg, int rc, const struct mk_err *err);
int mk_enforce_set_limit(struct mk_enforce *e, const char *target,
    const struct mk_quota_limits *l, mk_enforce_limit_done_cb *done, void *arg,
    struct mk_err *err);
int mk_enforce_get_set(const struct mk_enforce *e, const char *target,
    struct mk_quota_limits *l_r);

/* For the policy service. */
const struct mk_policy_config *mk_enforce_policy_config(
    const struct mk_enforce *e);
const struct mk_aliases *mk_enforce_aliases(const struct mk_enforce *e);
struct mk_quota_resv *mk_enforce_resv(struct mk_enforce *e);

struct evbuffer;

/* The reservation metrics (pending, and how they ended), for /metrics. */
void mk_enforce_metrics_resv(const struct mk_enforce *e, struct evbuffer *b);
int mk_enforce_lookup(void *arg, const char *address,
    struct mk_policy_mailbox *mb_r, struct mk_err *err);

/* Limited mailboxes at or over each warning threshold, for /metrics
 * (recounted at most every 10 s). */
size_t mk_enforce_thresholds(struct mk_enforce *e,
    unsigned thresholds_r[MK_WARN_THRESHOLDS_MAX],
    size_t counts_r[MK_WARN_THRESHOLDS_MAX]);

#endif
