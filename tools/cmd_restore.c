#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/restore.h"
#include "mailkeep/str.h"

#include "cmd.h"

int
cmd_restore(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "snapshot", required_argument, NULL, 's' },
		{ "to", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	struct mk_restore_stats stats;
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = NULL;
	struct mk_repo *repo = NULL;
	const char *snap = NULL, *to = NULL;
	char *address = NULL, size[32];
	uint64_t id = 0;
	struct mk_err err;
	int ch, status = CMD_FAIL;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			snap = optarg;
			break;
		case 't':
			to = optarg;
			break;
		default:
			return cmd_usage(ctx);
		}
	}
	if (argc - optind != 1 || snap == NULL || to == NULL || to[0] == '\0')
		return cmd_usage(ctx);
	if (mk_str_parse_u64(snap, &id, &err) < 0 || id == 0 ||
	    id > INT64_MAX) {
		mk_log_error(
		    "restore", "--snapshot %s: not a snapshot id", snap);
		return CMD_USAGE;
	}
	address = argv[optind];
	mk_str_lower(address);
	if (cmd_conf(ctx, &conf) < 0)
		goto out;
	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(conf->catalog, &cat, &err) < 0) {
		mk_log_error("restore", "%s", err.msg);
		goto out;
	}
	if (cmd_backup_repo_open(ctx, conf, &repo) < 0)
		goto out;
	if (mk_restore_mailbox(
		repo, cat, (int64_t)id, address, to, &stats, &err) < 0) {
		mk_log_error("restore", "%s", err.msg);
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack(
		    "{s:s, s:I, s:s, s:I, s:I, s:I, s:I}", "mailbox", address,
		    "snapshot", (json_int_t)id, "to", to, "folders",
		    (json_int_t)stats.folders, "messages",
		    (json_int_t)stats.messages, "bytes",
		    (json_int_t)stats.bytes, "files", (json_int_t)stats.files));
	else {
		mk_str_format_size(stats.bytes, size, sizeof(size));
		printf("restored %s as of snapshot %llu into %s: %llu folders, "
		       "%llu messages (%s)\n",
		    address, (unsigned long long)id, to,
		    (unsigned long long)stats.folders,
		    (unsigned long long)stats.messages, size);
	}
	status = CMD_OK;
out:
	mk_repo_close(&repo);
	mk_catalog_close(&cat);
	mk_conf_free(&conf);
	return status;
}
