#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/str.h"

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
