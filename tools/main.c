#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mailkeep/log.h"

#include "cmd.h"

struct cmd_entry {
	const char *name;
	int (*run)(struct cmd_ctx *, int, char **);
	const char *usage;
	const char *help;
};

static const struct cmd_entry cmd_table[] = {
	{ "scan", cmd_scan, "scan [MAILBOX...]",
	    "Read usage from the store (no daemon needed) and record it in\n"
	    "the catalog.  With mailboxes named, folders are listed too." },
	{ "quota", cmd_quota,
	    "quota get MAILBOX | quota list [--over PERCENT]\n"
	    "       quota set MAILBOX|@DOMAIN|default [storage=SIZE] "
	    "[messages=N]\n"
	    "       quota recalc [MAILBOX...]",
	    "Limits, usage and percent as mailkeepd enforces them.  SIZE is "
	    "like 500M\nor 2G; 0 means unlimited.  set goes through the "
	    "control socket, or\nstraight into the catalog when mailkeepd "
	    "is not running.  recalc\ncounts mailboxes again from the "
	    "store." },
	{ "status", cmd_status, "status",
	    "Ask mailkeepd how it is: mailboxes, watches, scans, audit." },
	{ "repo", cmd_repo, "repo init | info",
	    "Create the backup repository, or describe it.\n"
	    "  repo init [--repository LOC] [--key-file FILE] "
	    "[--passphrase-file FILE]\n"
	    "            [--no-encryption]\n"
	    "  repo info [--repository LOC] [--key-file FILE] "
	    "[--passphrase-file FILE] [--json]\n"
	    "LOC is a directory (default <state_dir>/repository).  init "
	    "creates the key\n"
	    "file (default <state_dir>/repo.key) if it is missing: copy it "
	    "off the machine.\n"
	    "A passphrase comes from $MAILKEEP_PASSPHRASE or "
	    "--passphrase-file, never\n"
	    "from the command line; at init it adds a recovery key slot." },
	{ "backup", cmd_backup, "backup run [MAILBOX...] | backup list [RUN]",
	    "Back up mailboxes into the repository: run backs up the named\n"
	    "mailboxes, or every mailbox of the store, reading only new\n"
	    "message files, and prints what each cost.  list shows the runs\n"
	    "the repository holds; with a RUN id (8 or more hex digits) the\n"
	    "mailbox snapshots of that run.  The repository and its key come\n"
	    "from [repository] location and key_file, or "
	    "MAILKEEP_PASSPHRASE." },
	{ "snapshots", cmd_snapshots, "snapshots [MAILBOX]",
	    "List the snapshots in the catalog, of one mailbox or of all,\n"
	    "with the ids that restore takes." },
	{ "restore", cmd_restore, "restore MAILBOX --snapshot ID --to DIR",
	    "Write MAILBOX as it was at snapshot ID into DIR, an empty (or\n"
	    "new) directory, as a Maildir++ tree: folders, messages under\n"
	    "their original names and mtimes, dovecot-uidlist,\n"
	    "dovecot-keywords and subscriptions.  Only this form exists for\n"
	    "now: restoring into the live mailbox, a folder or a message\n"
	    "alone, by time (--at), and mbox or eml exports are not built\n"
	    "yet." },
	{ "forget", cmd_forget, "forget MAILBOX [--purge] [--dry-run]",
	    "Apply the [retention] policy to MAILBOX's snapshots now, or with\n"
	    "--purge forget all of them (a mailbox gone from the store keeps\n"
	    "its snapshots for deleted_retention otherwise).  The space comes\n"
	    "back with the next prunes.  Takes the exclusive repository "
	    "lock." },
	{ "prune", cmd_prune, "prune [--dry-run] [--lock-wait DURATION]",
	    "Forget the snapshots the [retention] policy does not keep, then\n"
	    "collect garbage: repack packs whose live share is below\n"
	    "repack_threshold, tombstone packs without live blobs, delete\n"
	    "packs tombstoned more than gc_grace ago that nothing refers to.\n"
	    "Takes the exclusive repository lock, waiting up to DURATION\n"
	    "(default 0) for backups to finish.  --dry-run says what would\n"
	    "be forgotten, repacked and deleted, and writes nothing." },
	{ "help", NULL, "help [COMMAND]",
	    "Show the commands, or one in full." },
};

#define CMD_COUNT (sizeof(cmd_table) / sizeof(cmd_table[0]))

static const struct cmd_entry *
cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < CMD_COUNT; i++)
		if (strcmp(cmd_table[i].name, name) == 0)
			return &cmd_table[i];
	return NULL;
}

static void
main_usage(FILE *fp)
{
	size_t i;

	fprintf(fp,
	    "usage: mailkeep [-c FILE | --store DIR --state DIR] [--json] "
	    "COMMAND ...\n\ncommands:\n");
	for (i = 0; i < CMD_COUNT; i++)
		fprintf(fp, "  %s\n", cmd_table[i].usage);
}

int
cmd_usage(struct cmd_ctx *ctx)
{
	const struct cmd_entry *c = cmd_find(ctx->name);

	fprintf(
	    stderr, "usage: mailkeep %s\n", c != NULL ? c->usage : ctx->name);
	return CMD_USAGE;
}

int
cmd_conf(struct cmd_ctx *ctx, struct mk_conf **conf_r)
{
	struct mk_err err;

	if (mk_conf_setup(&ctx->args, conf_r, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	return 0;
}

static int
main_help(int argc, char **argv)
{
	const struct cmd_entry *c;

	if (argc < 2) {
		main_usage(stdout);
		return CMD_OK;
	}
	if ((c = cmd_find(argv[1])) == NULL) {
		fprintf(stderr, "mailkeep: unknown command '%s'\n", argv[1]);
		return CMD_USAGE;
	}
	printf("usage: mailkeep %s\n\n%s\n", c->usage, c->help);
	return CMD_OK;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "store", required_argument, NULL, 'S' },
		{ "state", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct cmd_entry *c;
	struct cmd_ctx ctx;
	int ch;

	mk_log_init("mailkeep", MK_LOG_INFO);
	memset(&ctx, 0, sizeof(ctx));
	while ((ch = getopt_long(argc, argv, "+c:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			ctx.args.config = optarg;
			break;
		case 'S':
			ctx.args.store = optarg;
			break;
		case 'T':
			ctx.args.state = optarg;
			break;
		case 'j':
			ctx.json = true;
			break;
		case 'h':
			main_usage(stdout);
			return CMD_OK;
		default:
			main_usage(stderr);
			return CMD_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		main_usage(stderr);
		return CMD_USAGE;
	}
	if ((c = cmd_find(argv[0])) == NULL) {
		fprintf(stderr, "mailkeep: unknown command '%s'\n", argv[0]);
		main_usage(stderr);
		return CMD_USAGE;
	}
	if (c->run == NULL)
		return main_help(argc, argv);
	ctx.name = c->name;
	optind = 0;
	return c->run(&ctx, argc, argv);
}
