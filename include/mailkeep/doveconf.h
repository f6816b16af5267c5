/*
 * doveconf: the Dovecot settings mailkeep relies on, read from the output
 * of `doveconf -n`, and compared with mailkeep's configuration for
 * `mailkeepd -n`.
 *
 * Read: mail_location and mail_home (top level); in plugin { }: quota,
 * quota_rule, quota_grace (Dovecot 2.3); quota_storage_grace and the
 * driver of a quota "NAME" { } section (Dovecot 2.4, where count is the
 * default driver).  Everything else is ignored.
 *
 * Checked: mail_location against [store] root and template; the quota
 * driver against [quota] maildirsize and basis (maildir reads maildirsize
 * and counts file sizes; count reads its index and counts virtual sizes);
 * a default quota_rule against [quota] default; the grace against
 * [quota] grace.
 *
 * Blocking I/O (mk_doveconf_read runs a command); for the command line.
 */
#ifndef MAILKEEP_DOVECONF_H
#define MAILKEEP_DOVECONF_H

#include <stdbool.h>
#include <stddef.h>

#include "mailkeep/conf.h"
#include "mailkeep/err.h"

#define MK_DOVECONF_OUTPUT_MAX (4 << 20) /* bytes of doveconf's output */

struct mk_doveconf {
	char *mail_location; /* NULL when absent */
	char *mail_home;
	char *quota; /* plugin quota, "maildir:User quota" */
	char *quota_driver; /* 2.4: driver of a quota section */
	bool quota_section; /* 2.4: a quota "NAME" { } section */
	char *quota_rule;
	char *quota_grace; /* as written: "10%%" */
};

/* Parse the text of `doveconf -n`.  Fails on an unbalanced section. */
int mk_doveconf_parse(
    const char *text, size_t len, struct mk_doveconf *dc, struct mk_err *err);
void mk_doveconf_clear(struct mk_doveconf *dc);

/* Run command with /bin/sh -c and parse its output; it must exit 0. */
int mk_doveconf_read(
    const char *command, struct mk_doveconf *dc, struct mk_err *err);

/* One finding: a warning (a mismatch) or a note that a setting agrees. */
typedef void mk_doveconf_report_cb(void *arg, bool warning, const char *msg);

/* Compare dc with conf; returns the number of warnings. */
size_t mk_doveconf_check(const struct mk_doveconf *dc,
    const struct mk_conf *conf, mk_doveconf_report_cb *cb, void *arg);

#endif
