#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/lock.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/prune.h"
#include "mailkeep/repo.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#include "cmd.h"

int
cmd_lock_take(struct cmd_ctx *ctx, const struct mk_conf *conf,
    struct mk_repo *repo, int kind, unsigned wait_s, struct cmd_locks *locks)
{
	char path[4200];
	unsigned waited = 0;
	struct mk_err err;
	long holder;
	int r;

	locks->runfd = -1;
	locks->repo = NULL;
	snprintf(path, sizeof(path), "%s.lock", conf->catalog);
	while ((r = mk_lock_run(path, &locks->runfd, &holder, &err)) == 1 &&
	    waited < wait_s) {
		sleep(1);
		waited++;
	}
	if (r < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	if (r == 1) {
		mk_log_error(ctx->name,
		    "another backup run or prune (pid %ld) is using the "
		    "catalog %s: try again when it has finished",
		    holder, conf->catalog);
		return -1;
	}
	if (mk_lock_acquire(mk_repo_storage(repo), (enum mk_lock_kind)kind,
		wait_s - waited, &locks->repo, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		cmd_lock_release(locks);
		return -1;
	}
	return 0;
}

void
cmd_lock_release(struct cmd_locks *locks)
{
	mk_lock_release(&locks->repo);
	if (locks->runfd >= 0)
		close(locks->runfd);
	locks->runfd = -1;
}

/* What prune and forget work with. */
struct prune_cli {
	struct mk_conf *conf;
	struct mk_catalog *cat;
	struct mk_repo *repo;
	struct cmd_locks locks;
	struct mk_store_list *list;
	char **present;
};

static void
prune_cli_free(struct prune_cli *cli)
{
	cmd_lock_release(&cli->locks);
	mk_repo_close(&cli->repo);
	mk_catalog_close(&cli->cat);
	free(cli->present);
	mk_store_list_free(&cli->list);
	mk_conf_free(&cli->conf);
}

static int
prune_cli_open(struct cmd_ctx *ctx, struct prune_cli *cli, unsigned wait_s)
{
	struct mk_err err;

	memset(cli, 0, sizeof(*cli));
	cli->locks.runfd = -1;
	if (cmd_conf(ctx, &cli->conf) < 0)
		return -1;
	if (mk_fs_mkdir_p(cli->conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(cli->conf->catalog, &cli->cat, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	if (cmd_backup_repo_open(ctx, cli->conf, &cli->repo) < 0)
		return -1;
	return cmd_lock_take(
	    ctx, cli->conf, cli->repo, MK_LOCK_EXCLUSIVE, wait_s, &cli->locks);
}

/* The mailboxes of the store, for deleted_retention; NULL if unknown. */
static void
prune_cli_present(struct prune_cli *cli, struct mk_prune_opts *o)
{
	struct mk_store *store = NULL;
	struct mk_err err;
	size_t i;

	if (mk_store_new(cli->conf->store_root, cli->conf->store_template,
		&store, &err) < 0 ||
	    mk_store_list(store, &cli->list, &err) < 0) {
		mk_log_warn("prune",
		    "%s: deleted_retention is not applied this time", err.msg);
		mk_store_free(&store);
		return;
	}
	mk_store_free(&store);
	cli->present = mk_xcalloc(cli->list->count + 1, sizeof(char *));
	for (i = 0; i < cli->list->count; i++)
		cli->present[i] = cli->list->mailboxes[i].address;
	o->present = cli->present;
	o->npresent = cli->list->count;
}

static json_t *
prune_reasons_json(unsigned reasons)
{
	json_t *arr = json_array();
	int r;

	for (r = 0; r < MK_RETENTION_RULES; r++)
		if (reasons & (1u << r))
			json_array_append_new(arr,
			    json_string(mk_retention_rule_name(
				(enum mk_retention_rule)r)));
	if (reasons & (1u << MK_RETENTION_RULES))
		json_array_append_new(arr, json_string("no policy"));
	return arr;
}

static void
prune_print(struct cmd_ctx *ctx, const struct mk_prune_opts *o,
    const struct mk_prune_result *res)
{
	uint64_t n[MK_PRUNE_REVIVE + 1] = { 0 }, b[MK_PRUNE_REVIVE + 1] = { 0 };
	uint64_t total = 0, live = 0;
	char when[32], s1[32], s2[32];
	const char *verb = o->dry_run ? "would " : "";
	json_t *snaps, *packs;
	size_t i;

	for (i = 0; i < res->npacks; i++) {
		n[res->packs[i].action]++;
		b[res->packs[i].action] += res->packs[i].size;
		total += res->packs[i].size;
		live += res->packs[i].live_bytes;
	}
	if (ctx->json) {
		snaps = json_array();
		for (i = 0; i < res->nsnapshots; i++) {
			const struct mk_prune_snapshot *s = &res->snapshots[i];

			cmd_backup_time(s->time_ns, when);
			json_array_append_new(snaps,
			    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b, "
				      "s:o, s:b}",
				"run", s->run, "host", s->host, "mailbox",
				s->address, "time", when, "messages",
				(json_int_t)s->messages, "bytes",
				(json_int_t)s->bytes, "keep", s->reasons != 0,
				"reasons", prune_reasons_json(s->reasons),
				"purged", s->purged));
		}
		packs = json_array();
		for (i = 0; i < res->npacks; i++)
			json_array_append_new(packs,
			    json_pack("{s:s, s:I, s:I, s:s}", "id",
				res->packs[i].id, "size",
				(json_int_t)res->packs[i].size, "live",
				(json_int_t)res->packs[i].live_bytes, "action",
				mk_prune_action_name(res->packs[i].action)));
		cmd_backup_print(json_pack("{s:b, s:o, s:I, s:I, s:I, s:I, "
					   "s:o, s:I, s:I, s:I, s:I, s:I}",
		    "dry_run", o->dry_run, "snapshots", snaps, "forgotten",
		    (json_int_t)res->forgotten, "runs_rewritten",
		    (json_int_t)res->runs_rewritten, "runs_deleted",
		    (json_int_t)res->runs_deleted, "catalog_forgotten",
		    (json_int_t)res->catalog_forgotten, "packs", packs,
		    "repacked_bytes", (json_int_t)res->repacked_bytes,
		    "written_bytes", (json_int_t)res->written_bytes,
		    "deleted_bytes", (json_int_t)res->deleted_bytes,
		    "pack_bytes", (json_int_t)total, "missing_blobs",
		    (json_int_t)res->missing_blobs));
		return;
	}
	for (i = 0; i < res->nsnapshots; i++) {
		const struct mk_prune_snapshot *s = &res->snapshots[i];

		if (s->reasons != 0)
			continue;
		cmd_backup_time(s->time_ns, when);
		printf("%sforget %-36s %s run %.8s%s\n", verb, s->address, when,
		    s->run, s->purged ? " (purged)" : "");
	}
	printf("%zu of %zu snapshots %sforgotten\n", res->forgotten,
	    res->nsnapshots, o->dry_run ? "would be " : "");
	if (!o->gc)
		return;
	mk_str_format_size(total, s1, sizeof(s1));
	mk_str_format_size(live, s2, sizeof(s2));
	printf("packs: %zu, %s, %s of it live\n", res->npacks, s1, s2);
	for (i = MK_PRUNE_REPACK; i <= MK_PRUNE_REVIVE; i++) {
		if (n[i] == 0)
			continue;
		mk_str_format_size(b[i], s1, sizeof(s1));
		printf("  %s%s %llu packs (%s)\n", verb,
		    mk_prune_action_name((enum mk_prune_action)i),
		    (unsigned long long)n[i], s1);
	}
	if (!o->dry_run) {
		mk_str_format_size(res->written_bytes, s1, sizeof(s1));
		mk_str_format_size(res->deleted_bytes, s2, sizeof(s2));
		printf("written %s in new packs, deleted %s\n", s1, s2);
	}
	if (res->missing_blobs > 0)
		printf("warning: %llu referenced blobs are in no pack (run "
		       "mailkeep check)\n",
		    (unsigned long long)res->missing_blobs);
}

static int
prune_go(struct cmd_ctx *ctx, struct prune_cli *cli, struct mk_prune_opts *o)
{
	struct mk_prune_result res;
	struct mk_err err;
	int status = CMD_FAIL;

	o->policy = cli->conf->retention;
	o->deleted_retention_ns =
	    (int64_t)cli->conf->deleted_retention * 1000000000;
	o->gc_grace_ns = (int64_t)cli->conf->gc_grace * 1000000000;
	o->repack_threshold = (unsigned)cli->conf->repack_threshold;
	o->lock = cli->locks.repo;
	prune_cli_present(cli, o);
	if (mk_prune_run(cli->repo, cli->cat, o, &res, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		goto out;
	}
	prune_print(ctx, o, &res);
	status = CMD_OK;
out:
	mk_prune_result_free(&res);
	return status;
}

int
cmd_prune(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "lock-wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	struct mk_prune_opts o;
	struct prune_cli cli;
	struct mk_err err;
	uint64_t wait = 0;
	int c, status = CMD_FAIL;

	memset(&o, 0, sizeof(o));
	o.gc = true;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'n')
			o.dry_run = true;
		else if (c == 'w' &&
		    mk_str_parse_duration(optarg, &wait, &err) == 0 &&
		    wait <= 86400)
			continue;
		else
			return cmd_usage(ctx);
	}
	if (optind != argc)
		return cmd_usage(ctx);
	if (prune_cli_open(ctx, &cli, (unsigned)wait) == 0)
		status = prune_go(ctx, &cli, &o);
	prune_cli_free(&cli);
	return status;
}

int
cmd_forget(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "purge", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct mk_prune_opts o;
	struct prune_cli cli;
	int c, status = CMD_FAIL;

	memset(&o, 0, sizeof(o));
	optind = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'n')
			o.dry_run = true;
		else if (c == 'p')
			o.purge = true;
		else
			return cmd_usage(ctx);
	}
	if (optind + 1 != argc)
		return cmd_usage(ctx);
	mk_str_lower(argv[optind]);
	o.only = argv[optind];
	if (prune_cli_open(ctx, &cli, 0) == 0)
		status = prune_go(ctx, &cli, &o);
	prune_cli_free(&cli);
	return status;
}
