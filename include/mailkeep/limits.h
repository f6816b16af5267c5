/*
 * limits: every mailbox's limits, from all their sources, and the rules
 * that go with them.
 *
 * Layers, lowest first (see mk_quota_limits_apply for the ranking): the
 * config default ([quota] default) or the one set at run time with
 * "mailkeep quota set default"; a domain default ([quota.domain] or
 * "quota set @DOMAIN"); Dovecot's userdb ([quota] import_passwd_file);
 * a per-mailbox override in the config ([quota.mailbox]); a per-mailbox
 * limit set at run time.  Run-time limits live in the catalog.  Domain
 * pools come from [quota.pool].
 *
 * Built on a worker or the command line (the import reads a file); once
 * built, lookups are pure and a struct mk_limits is owned by the loop
 * thread, which alone calls mk_limits_set.
 */
#ifndef MAILKEEP_LIMITS_H
#define MAILKEEP_LIMITS_H

#include <stdbool.h>

#include "mailkeep/conf.h"
#include "mailkeep/err.h"
#include "mailkeep/quota.h"

struct mk_limits;

/*
 * Build from the configuration: parses every rule (errors name the file
 * and line) and reads the import file.  Lines of the import that cannot
 * be used are counted in warnings (may be NULL).
 */
int mk_limits_new(const struct mk_conf *conf, struct mk_limits **limits_r,
    struct mk_warnings *warnings, struct mk_err *err);
void mk_limits_free(struct mk_limits **limitsp);

/* Whether target names what a run-time limit can be set for: -1 if not. */
int mk_limits_target_check(const char *target, struct mk_err *err);

/*
 * A limit set at run time for target: "default", "@domain" or an
 * address (lower case).  Resources not set in l (source NONE) are
 * removed from that target.  Returns -1 for a malformed target.
 */
int mk_limits_set(struct mk_limits *limits, const char *target,
    const struct mk_quota_limits *l, struct mk_err *err);

/* The run-time limit of target, if any (1), or 0. */
int mk_limits_get_set(const struct mk_limits *limits, const char *target,
    struct mk_quota_limits *l_r);

/* The effective limits of address. */
void mk_limits_lookup(const struct mk_limits *limits, const char *address,
    struct mk_quota_limits *l_r);

/* Has any domain a pool? */
bool mk_limits_has_pools(const struct mk_limits *limits);

/* The pool of the domain of address: 1 with *l_r, or 0 when none. */
int mk_limits_pool(const struct mk_limits *limits, const char *address,
    struct mk_quota_limits *l_r);

const struct mk_quota_rules *mk_limits_rules(const struct mk_limits *limits);
enum mk_quota_basis mk_limits_basis(const struct mk_limits *limits);

/* Parse "storage=1G messages=N" as given to "quota set" (SIZE as 500M,
 * 2G; 0 = unlimited) into a run-time limit. */
int mk_limits_parse_set(
    int argc, char **argv, struct mk_quota_limits *l_r, struct mk_err *err);

#endif
