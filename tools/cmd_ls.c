#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/log.h"
#include "mailkeep/maildir.h"
#include "mailkeep/query.h"
#include "mailkeep/str.h"

#include "cmd.h"

struct ls_run {
	struct cmd_ctx *ctx;
	char sep;
	const char *fdir; /* --folder as a directory, or NULL */
	struct mk_query *query;
	json_t *json;
	size_t count, unindexed;
};

/* The flags of a file name's suffix (after ":2,"), or "". */
const char *
cmd_flags(const char *suffix)
{
	const char *info = strstr(suffix, ":2,");

	return info != NULL ? info + 3 : "";
}

/* Is dir the folder fdir or one of its subfolders? */
bool
cmd_folder_within(const char *dir, const char *fdir)
{
	size_t n = strlen(fdir);

	if (fdir[0] == '\0')
		return dir[0] == '\0';
	return strncmp(dir, fdir, n) == 0 && (dir[n] == '\0' || dir[n] == '.');
}

/* Print s cut to width columns of bytes, padded. */
static void
ls_col(const char *s, int width)
{
	printf("%-*.*s", width, width, s);
}

static void
ls_cb(const struct mk_catalog_listing *l, void *arg)
{
	struct ls_run *run = arg;
	char folder[512], date[32], size[32];
	struct mk_query_msg qm;

	if (run->fdir != NULL && !cmd_folder_within(l->dir, run->fdir))
		return;
	memset(&qm, 0, sizeof(qm));
	if (l->has_header) {
		qm.message_id = l->message_id;
		qm.from = l->from;
		qm.to = l->to;
		qm.subject = l->subject;
	}
	qm.time_ns = l->mtime_ns;
	qm.size = l->size;
	if (run->query != NULL && !mk_query_match(run->query, &qm))
		return;
	if (!l->has_header)
		run->unindexed++;
	mk_maildir_folder_name(l->dir, run->sep, folder, sizeof(folder));
	cmd_backup_time(l->mtime_ns, date);
	if (run->ctx->json) {
		json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:I}", "id",
		    l->base, "folder", folder, "flags", cmd_flags(l->suffix),
		    "date", date, "size", (json_int_t)l->size);

		if (l->has_header) {
			json_object_set_new(
			    m, "message_id", json_string(l->message_id));
			json_object_set_new(m, "from", json_string(l->from));
			json_object_set_new(m, "to", json_string(l->to));
			json_object_set_new(
			    m, "subject", json_string(l->subject));
		}
		json_array_append_new(run->json, m);
		run->count++;
		return;
	}
	if (run->count++ == 0)
		printf("%-44s %-16s %-20s %9s %-6s %-28s %s\n", "ID", "FOLDER",
		    "DATE", "SIZE", "FLAGS", "FROM", "SUBJECT");
	mk_str_format_size(l->size, size, sizeof(size));
	printf("%-44s ", l->base);
	ls_col(folder, 16);
	printf(" %-20s %9s %-6s ", date, size, cmd_flags(l->suffix));
	ls_col(l->has_header ? l->from : "-", 28);
	printf(" %.60s\n", l->has_header ? l->subject : "-");
}

int
cmd_ls(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "folder", required_argument, NULL, 'f' },
		{ "search", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 },
	};
	const char *at = NULL, *snap = NULL, *folder = NULL, *search = NULL;
	char fdir[512], when[32];
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = NULL;
	struct ls_run run;
	struct mk_err err;
	int64_t id, time_ns;
	int ch, status = CMD_FAIL;
	char *address;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			at = optarg;
			break;
		case 's':
			snap = optarg;
			break;
		case 'f':
			folder = optarg;
			break;
		case 'q':
			search = optarg;
			break;
		default:
			return cmd_usage(ctx);
		}
	}
	if (argc - optind != 1)
		return cmd_usage(ctx);
	address = argv[optind];
	mk_str_lower(address);
	memset(&run, 0, sizeof(run));
	run.ctx = ctx;
	run.json = json_array();
	if (cmd_conf(ctx, &conf) < 0)
		goto out;
	run.sep = conf->hierarchy_separator;
	if (folder != NULL) {
		if (mk_maildir_folder_dir(
			folder, run.sep, fdir, sizeof(fdir), &err) < 0) {
			mk_log_error("ls", "--folder %s: %s", folder, err.msg);
			status = CMD_USAGE;
			goto out;
		}
		run.fdir = fdir;
	}
	if (search != NULL &&
	    mk_query_parse(search, cmd_now_ns(), &run.query, &err) < 0) {
		mk_log_error("ls", "--search: %s", err.msg);
		status = CMD_USAGE;
		goto out;
	}
	if (cmd_catalog_open(ctx, conf, &cat) < 0)
		goto out;
	if ((status = cmd_snapshot_pick(
		 ctx, cat, address, snap, at, &id, &time_ns)) != CMD_OK)
		goto out;
	status = CMD_FAIL;
	if (mk_catalog_list_at(cat, address, id, ls_cb, &run, &err) < 0) {
		mk_log_error("ls", "%s", err.msg);
		goto out;
	}
	cmd_backup_time(time_ns, when);
	if (ctx->json)
		cmd_backup_print(json_pack("{s:s, s:I, s:s, s:O}", "mailbox",
		    address, "snapshot", (json_int_t)id, "time", when,
		    "messages", run.json));
	else
		printf("%zu message%s in snapshot %lld of %s (%s)%s\n",
		    run.count, run.count == 1 ? "" : "s", (long long)id,
		    address, when,
		    run.unindexed > 0 && run.query != NULL
			? "; messages backed up before the header index "
			  "match only on dates and sizes"
			: "");
	status = CMD_OK;
out:
	mk_query_free(&run.query);
	json_decref(run.json);
	mk_catalog_close(&cat);
	mk_conf_free(&conf);
	return status;
}
