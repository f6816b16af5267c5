#include <getopt.h>
#include <malloc.h>
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
	{ "repo", cmd_repo,
	    "repo init | info | rebuild-catalog | key list|add|remove|verify | "
	    "dict list|train",
	    "Create the backup repository, describe it, rebuild the catalog "
	    "from\n"
	    "it, or manage its key slots.\n"
	    "  repo init [--repository LOC] [--key-file FILE] "
	    "[--passphrase-file FILE]\n"
	    "            [--no-encryption]\n"
	    "  repo info [--json]\n"
	    "  repo rebuild-catalog [--json]\n"
	    "  repo key list [--json]\n"
	    "  repo key add --new-key-file FILE | --new-passphrase-file FILE\n"
	    "  repo key remove SLOT\n"
	    "  repo key verify\n"
	    "  repo dict list [--json]\n"
	    "  repo dict train\n"
	    "Every subcommand takes --repository LOC, --key-file FILE and\n"
	    "--passphrase-file FILE.  LOC is a directory (default "
	    "<state_dir>/repository).\n"
	    "init creates the key file (default <state_dir>/repo.key) if it "
	    "is missing:\n"
	    "copy it off the machine.  A passphrase comes from "
	    "$MAILKEEP_PASSPHRASE or\n"
	    "--passphrase-file, never from the command line; at init it adds "
	    "a recovery\n"
	    "key slot.  key add wraps the master key for a new key file "
	    "(created if\n"
	    "missing) or a new passphrase ($MAILKEEP_NEW_PASSPHRASE or "
	    "--new-passphrase-file);\n"
	    "key remove never removes the last slot; key verify says which "
	    "slot the key\n"
	    "given opens.  rebuild-catalog replaces the catalog's backup "
	    "tables with what\n"
	    "the repository holds, in one transaction.  dict train samples "
	    "the store and\n"
	    "stores new compression dictionaries (headers, small bodies) "
	    "that later\n"
	    "backups use; dict list shows them." },
	{ "backup", cmd_backup,
	    "backup run [--offline [--time TIME]] [MAILBOX...] | backup list "
	    "[RUN]",
	    "Back up mailboxes into the repository: run backs up the named\n"
	    "mailboxes, or every mailbox of the store, reading only new\n"
	    "message files.  When mailkeepd runs, the run is a job of the\n"
	    "daemon: this command submits it, shows its progress on a\n"
	    "terminal and waits for it.  Otherwise, or with --offline, it\n"
	    "runs in this process and prints what each mailbox cost;\n"
	    "--time TIME gives its snapshots that time instead of now (as\n"
	    "restic's backup --time: for a copy of the store made earlier).\n"
	    "list shows the runs\n"
	    "the repository holds; with a RUN id (8 or more hex digits) the\n"
	    "mailbox snapshots of that run.  The repository and its key come\n"
	    "from [repository] location and key_file, or "
	    "MAILKEEP_PASSPHRASE." },
	{ "snapshots", cmd_snapshots, "snapshots [MAILBOX]",
	    "List the snapshots in the catalog, of one mailbox or of all,\n"
	    "with the ids that restore takes." },
	{ "ls", cmd_ls,
	    "ls MAILBOX [--at TIME | --snapshot ID] [--folder F] "
	    "[--search QUERY]",
	    "List the messages of a snapshot (the newest by default; --at\n"
	    "picks the last one at or before TIME), of one folder with its\n"
	    "subfolders, or those QUERY matches.  ID is the message's base\n"
	    "name, which restore --message takes.\n"
	    "TIME: \"2026-11-24 14:00\", \"2026-11-24\", ISO 8601, "
	    "\"yesterday\", \"3 days ago\".\n"
	    "QUERY: terms that must all match: from:X to:X subject:X\n"
	    "message-id:X since:TIME before:TIME larger:SIZE smaller:SIZE\n"
	    "or plain words (From, To or Subject); quote values with spaces:\n"
	    "  --search 'from:otto subject:\"Angebot Küche\" "
	    "since:yesterday'" },
	{ "diff", cmd_diff, "diff MAILBOX SNAP1 SNAP2",
	    "What changed between two snapshots of a mailbox, per folder:\n"
	    "messages added, removed (a move shows as both) and flags "
	    "changed." },
	{ "restore", cmd_restore,
	    "restore MAILBOX [--at TIME | --snapshot ID] [--folder F] "
	    "[--message ID]\n"
	    "               [--to new-folder|original|DIR] "
	    "[--format maildir|mbox|eml] [--force]\n"
	    "               [--offline]",
	    "Give back what a snapshot held (the newest by default): the\n"
	    "whole mailbox, a folder with its subfolders (--folder), or one\n"
	    "message (--message, the ID that ls shows).\n"
	    "  --to new-folder  (default) into the live mailbox under\n"
	    "                   Restored-<date>/<original folders>; nothing\n"
	    "                   existing changes\n"
	    "  --to original    only what is missing, back where it was; "
	    "never\n"
	    "                   overwrites or duplicates (by name and "
	    "content)\n"
	    "  --to DIR         a fresh directory (empty or new): a Maildir++\n"
	    "                   tree (a whole mailbox keeps Dovecot's UIDs),\n"
	    "                   or an export with --format mbox (a file per\n"
	    "                   folder) or eml (a directory per folder)\n"
	    "Into the live mailbox it goes through doveadm import when\n"
	    "[restore] doveadm is set.  A restore the quota has no room for\n"
	    "is refused unless --force.  Exit 1 names what could not be\n"
	    "restored.  When mailkeepd runs, it does the restore as a job\n"
	    "(progress on a terminal, cancel with POST\n"
	    "/v1/jobs/<id>/cancel): into the live mailbox, or into a DIR\n"
	    "beneath [restore] root; other directories, and --offline, are\n"
	    "written by this process.  When the catalog has no snapshot of\n"
	    "MAILBOX (a fresh machine, a lost catalog), a catalog is rebuilt\n"
	    "from the repository first: in the state directory when it is\n"
	    "empty, else a temporary one; snapshot ids are then its own, so\n"
	    "give --at TIME." },
	{ "check", cmd_check, "check [--sample PERCENT] [--json]",
	    "Verify the repository and the catalog against each other: every\n"
	    "pack's header and index, every blob the catalog records at its\n"
	    "place, every run and mailbox snapshot with its lists against the\n"
	    "catalog's message versions.  --sample PERCENT (default 0) also\n"
	    "reads that share of the packs whole, decrypting every blob and\n"
	    "checking its id; 100 reads everything.  Damage is reported as "
	    "the\n"
	    "mailboxes, folders and messages it affects, one line each on\n"
	    "stderr.  Exit 0 when nothing is wrong, 1 otherwise." },
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
	    "[--offline] COMMAND ...\n\ncommands:\n");
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

/*
 * A command is a short process that reads and writes many blobs of up
 * to a few MiB: keep freed memory for the next one instead of giving it
 * back to the kernel and faulting it in again.  glibc would serve each
 * block over 128 KiB with its own mmap() and trim the heap above
 * 128 KiB free; both cost a page fault per page touched again.  The
 * peak stays the same (docs/benchmarks.md, "Restore": a 1 GiB mailbox
 * restored with 29,000 page faults instead of 59,000 to 77,000).
 */
static void
main_malloc_keep(void)
{
	(void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
	(void)mallopt(M_TRIM_THRESHOLD, 256 << 20);
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
		{ "offline", no_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct cmd_entry *c;
	struct cmd_ctx ctx;
	int ch;

	mk_log_init("mailkeep", MK_LOG_INFO);
	main_malloc_keep();
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
		case 'o':
			ctx.offline = true;
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
