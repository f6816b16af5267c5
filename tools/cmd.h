/*
 * The mailkeep command line: a table of commands (tools/main.c), one
 * cmd_<name>.c each.  A command returns its exit status: 0 success, 1
 * failure (one clear line on stderr), 2 bad usage.
 */
#ifndef MAILKEEP_CMD_H
#define MAILKEEP_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "mailkeep/conf.h"

#define CMD_OK 0
#define CMD_FAIL 1
#define CMD_USAGE 2

struct cmd_ctx {
	struct mk_conf_args args; /* the global options */
	bool json; /* --json */
	bool offline; /* --offline: never through mailkeepd */
	const char *name; /* the command's name */
};

/* Load the settings the global options name; logs and returns -1 on
 * failure. */
int cmd_conf(struct cmd_ctx *ctx, struct mk_conf **conf_r);

/* Print the usage of the running command to stderr; returns CMD_USAGE. */
int cmd_usage(struct cmd_ctx *ctx);

int cmd_scan(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_status(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_quota(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_repo(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_backup(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_snapshots(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_restore(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_check(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_ls(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_diff(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_prune(struct cmd_ctx *ctx, int argc, char **argv);
int cmd_forget(struct cmd_ctx *ctx, int argc, char **argv);

/* Shared by backup, snapshots and restore (tools/cmd_backup.c). */
struct json_t;
struct mk_repo;

/* Open the configured repository with MAILKEEP_PASSPHRASE or the key
 * file; logs and returns -1 on failure. */
int cmd_backup_repo_open(
    struct cmd_ctx *ctx, const struct mk_conf *conf, struct mk_repo **repo_r);
/* ns since the epoch as "2026-11-24T02:00:03Z". */
void cmd_backup_time(int64_t ns, char buf[32]);
/* Print a JSON document on one line and free it. */
void cmd_backup_print(struct json_t *obj);
/* Does a mailkeepd hold the lock of conf's state directory? */
bool cmd_daemon_running(const struct mk_conf *conf);
/*
 * Follow a job that mailkeepd accepted (job: its JSON, borrowed) until
 * it ends, with a progress line on stderr when that is a terminal; print
 * the outcome (--json: the job object) and return CMD_OK when it is
 * "done", else CMD_FAIL.
 */
int cmd_job_wait(
    struct cmd_ctx *ctx, const struct mk_conf *conf, struct json_t *job);
/*
 * POST req (NULL: no body) to path on the control socket and follow the
 * job it starts with cmd_job_wait(); -1 when no daemon runs (nothing
 * logged: the caller does the work itself).
 */
int cmd_job_submit(struct cmd_ctx *ctx, const struct mk_conf *conf,
    const char *path, struct json_t *req);

/* Shared by ls, diff and restore (tools/cmd_snapshots.c). */
struct mk_catalog;

/* The time now in ns since the epoch. */
int64_t cmd_now_ns(void);
/*
 * The snapshot of address that --snapshot ID or --at TIME names (both
 * NULL: the newest), and its time.  Logs why not and returns CMD_FAIL
 * (unknown mailbox, no such snapshot, nothing at that time) or
 * CMD_USAGE (ID or TIME malformed); CMD_OK when found.
 */
int cmd_snapshot_pick(struct cmd_ctx *ctx, struct mk_catalog *cat,
    const char *address, const char *id, const char *at, int64_t *snap_r,
    int64_t *time_r);
/* The flags of a Maildir file name's suffix (after ":2,"), or "". */
const char *cmd_flags(const char *suffix);
/* Is the folder directory dir fdir or one of its subfolders? */
bool cmd_folder_within(const char *dir, const char *fdir);
/* Open the catalog named by the configuration; logs on failure. */
int cmd_catalog_open(
    struct cmd_ctx *ctx, const struct mk_conf *conf, struct mk_catalog **cat_r);

/* The locks of a command that writes the repository (tools/cmd_prune.c):
 * the catalog's run lock and a repository lock. */
struct mk_lock;
struct cmd_locks {
	int runfd;
	struct mk_lock *repo;
};

/* Take both (kind: enum mk_lock_kind, waiting wait_s seconds for the
 * repository's); logs and returns -1 when refused. */
int cmd_lock_take(struct cmd_ctx *ctx, const struct mk_conf *conf,
    struct mk_repo *repo, int kind, unsigned wait_s, struct cmd_locks *locks);
void cmd_lock_release(struct cmd_locks *locks);

#endif
