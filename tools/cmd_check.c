#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mailkeep/check.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/repo.h"
#include "mailkeep/str.h"

#include "cmd.h"

struct check_out {
	struct cmd_ctx *ctx;
	char sep; /* the hierarchy separator, for folder names */
	json_t *problems;
	json_t *affected;
	json_t *mailboxes; /* object used as a set */
};

static void
check_problem_cb(const struct mk_check_problem *p, void *arg)
{
	struct check_out *out = arg;

	mk_log_error("check", "%s: %s: %s", p->kind, p->object, p->detail);
	json_array_append_new(out->problems,
	    json_pack("{s:s, s:s, s:s}", "kind", p->kind, "object", p->object,
		"detail", p->detail));
}

/* "3 to 7", "3 to now": the snapshots a version belongs to. */
static void
check_range(int64_t appeared, int64_t vanished, char *buf, size_t size)
{
	if (vanished == 0)
		snprintf(buf, size, "%lld to now", (long long)appeared);
	else
		snprintf(buf, size, "%lld to %lld", (long long)appeared,
		    (long long)vanished - 1);
}

/* A JSON string of bytes that may not be UTF-8 ('?' for the others). */
static json_t *
check_json_str(const char *s)
{
	json_t *j = json_string(s);
	char *copy;
	size_t i;

	if (j != NULL)
		return j;
	copy = mk_xstrdup(s);
	for (i = 0; copy[i] != '\0'; i++)
		if ((unsigned char)copy[i] < 0x20 ||
		    (unsigned char)copy[i] > 0x7e)
			copy[i] = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static void
check_affected_cb(const struct mk_catalog_damage *d, void *arg)
{
	struct check_out *out = arg;
	char folder[1024], range[64], *name;

	json_object_set_new(out->mailboxes, d->address, json_true());
	if (d->snapshot != 0) {
		mk_log_error("check",
		    "damaged: %s: snapshot %lld (its mailbox snapshot object)",
		    d->address, (long long)d->snapshot);
		json_array_append_new(out->affected,
		    json_pack("{s:o, s:I}", "mailbox",
			check_json_str(d->address), "snapshot",
			(json_int_t)d->snapshot));
		return;
	}
	(void)mk_maildir_folder_name(d->dir, out->sep, folder, sizeof(folder));
	check_range(d->appeared, d->vanished, range, sizeof(range));
	name = mk_xasprintf("%s%s", d->base, d->suffix);
	mk_log_error("check",
	    "damaged: %s: folder %s: message %s (snapshots %s)", d->address,
	    folder, name, range);
	json_array_append_new(out->affected,
	    json_pack("{s:o, s:o, s:o, s:o, s:I, s:o}", "mailbox",
		check_json_str(d->address), "folder", check_json_str(folder),
		"dir", check_json_str(d->dir), "message", check_json_str(name),
		"appeared", (json_int_t)d->appeared, "vanished",
		d->vanished != 0 ? json_integer(d->vanished) : json_null()));
	free(name);
}

static json_t *
check_stats_json(const struct mk_check_stats *st, unsigned sample)
{
	return json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
			 "s:I, s:I}",
	    "sample", (int)sample, "packs", (json_int_t)st->packs,
	    "catalog_packs", (json_int_t)st->catalog_packs, "unknown_packs",
	    (json_int_t)st->unknown_packs, "packs_read",
	    (json_int_t)st->packs_read, "blobs", (json_int_t)st->blobs,
	    "blobs_read", (json_int_t)st->blobs_read, "runs",
	    (json_int_t)st->runs, "dictionaries", (json_int_t)st->dicts,
	    "snapshots", (json_int_t)st->snapshots, "damaged_blobs",
	    (json_int_t)st->damaged_blobs, "affected",
	    (json_int_t)st->affected);
}

static void
check_print(const struct check_out *out, const struct mk_check_stats *st,
    unsigned sample)
{
	const char *address;
	json_t *v, *names;
	bool first = true;

	printf("%llu packs (%llu read whole, a %u%% sample), %llu blobs, "
	       "%llu dictionaries, %llu runs, %llu snapshots checked\n",
	    (unsigned long long)st->packs, (unsigned long long)st->packs_read,
	    sample, (unsigned long long)st->blobs,
	    (unsigned long long)st->dicts, (unsigned long long)st->runs,
	    (unsigned long long)st->snapshots);
	if (st->unknown_packs > 0)
		printf("%llu packs are not in the catalog: another host's, or "
		       "left by an interrupted run (the next backup run "
		       "indexes them)\n",
		    (unsigned long long)st->unknown_packs);
	if (st->problems == 0) {
		printf("no problems found\n");
		return;
	}
	printf("%llu problems, %llu damaged blobs",
	    (unsigned long long)st->problems,
	    (unsigned long long)st->damaged_blobs);
	names = out->mailboxes;
	json_object_foreach(names, address, v)
	{
		printf(
		    "%s%s", first ? "; mailboxes affected: " : ", ", address);
		first = false;
	}
	printf("\n");
}

int
cmd_check(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sample", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct mk_check_opts opts = { 0 };
	struct mk_check_cbs cbs;
	struct mk_check_stats st;
	struct mk_catalog *cat = NULL;
	struct mk_repo *repo = NULL;
	struct mk_conf *conf = NULL;
	struct check_out out;
	struct mk_err err;
	const char *address;
	json_t *v, *list;
	char *end;
	long pct;
	int ch, status = CMD_FAIL;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			pct = strtol(optarg, &end, 10);
			if (end == optarg || *end != '\0' || pct < 0 ||
			    pct > 100) {
				mk_log_error("check",
				    "--sample takes a percentage from 0 to "
				    "100, not '%s'",
				    optarg);
				return CMD_USAGE;
			}
			opts.sample = (unsigned)pct;
			break;
		case 'j':
			ctx->json = true;
			break;
		default:
			return cmd_usage(ctx);
		}
	}
	if (optind != argc)
		return cmd_usage(ctx);
	memset(&out, 0, sizeof(out));
	out.ctx = ctx;
	out.problems = json_array();
	out.affected = json_array();
	out.mailboxes = json_object();
	if (cmd_conf(ctx, &conf) < 0)
		goto out;
	out.sep = conf->hierarchy_separator;
	if (cmd_backup_repo_open(ctx, conf, &repo) < 0)
		goto out;
	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(conf->catalog, &cat, &err) < 0) {
		mk_log_error("check", "%s", err.msg);
		goto out;
	}
	memset(&cbs, 0, sizeof(cbs));
	cbs.problem_cb = check_problem_cb;
	cbs.affected_cb = check_affected_cb;
	cbs.arg = &out;
	if (mk_check_run(repo, cat, &opts, &cbs, &st, &err) < 0) {
		mk_log_error("check", "%s", err.msg);
		goto out;
	}
	if (ctx->json) {
		list = json_array();
		json_object_foreach(out.mailboxes, address, v)
		    json_array_append_new(list, json_string(address));
		cmd_backup_print(json_pack("{s:b, s:o, s:O, s:O, s:o}", "ok",
		    st.problems == 0, "checked",
		    check_stats_json(&st, opts.sample), "problems",
		    out.problems, "affected", out.affected, "mailboxes", list));
	} else
		check_print(&out, &st, opts.sample);
	status = st.problems == 0 ? CMD_OK : CMD_FAIL;
out:
	json_decref(out.problems);
	json_decref(out.affected);
	json_decref(out.mailboxes);
	mk_catalog_close(&cat);
	mk_repo_close(&repo);
	mk_conf_free(&conf);
	return status;
}
