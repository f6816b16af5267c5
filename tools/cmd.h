/*
 * The mailkeep command line: a table of commands (tools/main.c), one
 * cmd_<name>.c each.  A command returns its exit status: 0 success, 1
 * failure (one clear line on stderr), 2 bad usage.
 */
#ifndef MAILKEEP_CMD_H
#define MAILKEEP_CMD_H

#include <stdbool.h>

#include "mailkeep/conf.h"

#define CMD_OK 0
#define CMD_FAIL 1
#define CMD_USAGE 2

struct cmd_ctx {
	struct mk_conf_args args; /* the global options */
	bool json; /* --json */
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

#endif
