#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/str.h"
#include "mailkeep/when.h"

#include "cmd.h"

struct snapshots_out {
	struct cmd_ctx *ctx;
	json_t *json;
	size_t count;
};

static void
snapshots_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct snapshots_out *out = arg;
	char time[32], size[32];

	cmd_backup_time(s->time_ns, time);
	if (out->ctx->json) {
		json_array_append_new(out->json,
		    json_pack("{s:I, s:s, s:s, s:I, s:I}", "id",
			(json_int_t)s->id, "mailbox", s->address, "time", time,
			"messages", (json_int_t)s->messages, "bytes",
			(json_int_t)s->bytes));
		out->count++;
		return;
	}
	if (out->count++ == 0)
		printf("%8s  %-40s %-20s %9s %10s\n", "ID", "MAILBOX", "TIME",
		    "MESSAGES", "SIZE");
	mk_str_format_size(s->bytes, size, sizeof(size));
	printf("%8lld  %-40s %-20s %9llu %10s\n", (long long)s->id, s->address,
	    time, (unsigned long long)s->messages, size);
}

int
cmd_snapshots(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = NULL;
	struct snapshots_out out;
	const char *address = NULL;
	struct mk_err err;
	int status = CMD_FAIL;

	optind = 0;
	if (getopt(argc, argv, "+") != -1 || argc - optind > 1)
		return cmd_usage(ctx);
	if (optind < argc) {
		mk_str_lower(argv[optind]);
		address = argv[optind];
	}
	memset(&out, 0, sizeof(out));
	out.ctx = ctx;
	out.json = json_array();
	if (cmd_conf(ctx, &conf) < 0)
		goto out;
	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(conf->catalog, &cat, &err) < 0 ||
	    mk_catalog_snapshots(cat, address, snapshots_cb, &out, &err) < 0) {
		mk_log_error("snapshots", "%s", err.msg);
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:O}", "snapshots", out.json));
	else if (out.count == 0)
		printf("no snapshots%s%s\n", address != NULL ? " of " : "",
		    address != NULL ? address : "");
	status = CMD_OK;
out:
	json_decref(out.json);
	mk_catalog_close(&cat);
	mk_conf_free(&conf);
	return status;
}

/* The snapshot that --snapshot or --at names, among a mailbox's. */
struct snapshots_pick {
	int64_t want_id; /* 0: by time */
	int64_t at_ns;
	int64_t id, time_ns;
	size_t seen;
	bool other; /* want_id exists, for another mailbox */
};

static void
snapshots_pick_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	struct snapshots_pick *p = arg;

	p->seen++;
	if (p->want_id != 0 ? s->id == p->want_id : s->time_ns <= p->at_ns) {
		p->id = s->id;
		p->time_ns = s->time_ns;
	}
}

int64_t
cmd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int
cmd_snapshot_pick(struct cmd_ctx *ctx, struct mk_catalog *cat,
    const char *address, const char *id, const char *at, int64_t *snap_r,
    int64_t *time_r)
{
	struct snapshots_pick p;
	struct mk_err err;
	char when[32];
	uint64_t v;

	memset(&p, 0, sizeof(p));
	p.at_ns = INT64_MAX;
	if (id != NULL && at != NULL) {
		mk_log_error(
		    ctx->name, "--snapshot and --at exclude each other");
		return CMD_USAGE;
	}
	if (id != NULL) {
		if (mk_str_parse_u64(id, &v, &err) < 0 || v == 0 ||
		    v > INT64_MAX) {
			mk_log_error(
			    ctx->name, "--snapshot %s: not a snapshot id", id);
			return CMD_USAGE;
		}
		p.want_id = (int64_t)v;
	} else if (at != NULL &&
	    mk_when_parse(at, cmd_now_ns(), &p.at_ns, &err) < 0) {
		mk_log_error(ctx->name, "--at: %s", err.msg);
		return CMD_USAGE;
	}
	if (mk_catalog_snapshots(cat, address, snapshots_pick_cb, &p, &err) <
	    0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return CMD_FAIL;
	}
	if (p.seen == 0) {
		mk_log_error(ctx->name,
		    "no snapshots of %s: not a mailbox that was backed up",
		    address);
		return CMD_FAIL;
	}
	if (p.id == 0 && id != NULL) {
		mk_log_error(ctx->name,
		    "no snapshot %s of %s (mailkeep snapshots %s lists them)",
		    id, address, address);
		return CMD_FAIL;
	}
	if (p.id == 0) {
		cmd_backup_time(p.at_ns, when);
		mk_log_error(ctx->name,
		    "nothing at that time: the first snapshot of %s is later "
		    "than %s",
		    address, when);
		return CMD_FAIL;
	}
	*snap_r = p.id;
	if (time_r != NULL)
		*time_r = p.time_ns;
	return CMD_OK;
}

int
cmd_catalog_open(
    struct cmd_ctx *ctx, const struct mk_conf *conf, struct mk_catalog **cat_r)
{
	struct mk_err err;

	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(conf->catalog, cat_r, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	return 0;
}
