#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/limits.h"
#include "mailkeep/log.h"
#include "mailkeep/restore.h"
#include "mailkeep/scan.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#include "cmd.h"

/* The progress line on a terminal, redrawn at most every 100 ms. */
struct restore_tty {
	bool on;
	int64_t last_ns;
	bool drawn;
};

static bool
restore_progress_cb(const struct mk_restore_progress *p, void *arg)
{
	struct restore_tty *tty = arg;
	char done[32], total[32];
	int64_t now = cmd_now_ns();

	if (!tty->on ||
	    (now - tty->last_ns < 100000000 &&
		p->messages != p->messages_total))
		return true;
	tty->last_ns = now;
	tty->drawn = true;
	mk_str_format_size(p->bytes, done, sizeof(done));
	mk_str_format_size(p->bytes_total, total, sizeof(total));
	fprintf(stderr, "\rrestoring: %llu/%llu messages, %s/%s (%d%%)\033[K",
	    (unsigned long long)p->messages,
	    (unsigned long long)p->messages_total, done, total,
	    p->bytes_total > 0 ? (int)(p->bytes * 100 / p->bytes_total) : 100);
	return true;
}

static void
restore_limit_cb(const char *target, const struct mk_quota_limits *l, void *arg)
{
	struct mk_err err;

	(void)mk_limits_set(arg, target, l, &err);
}

/* What the quota leaves for address: limits from the configuration and
 * the catalog, usage as last recorded. */
static int
restore_room(struct cmd_ctx *ctx, const struct mk_conf *conf,
    struct mk_catalog *cat, const char *address, struct mk_restore_req *req)
{
	struct mk_mailbox_usage *mu = NULL;
	struct mk_limits *limits = NULL;
	struct mk_quota_limits l;
	struct mk_err err;
	int r;

	req->room_bytes = req->room_messages = UINT64_MAX;
	if (mk_limits_new(conf, &limits, NULL, &err) < 0 ||
	    mk_catalog_limits_load(cat, restore_limit_cb, limits, &err) < 0 ||
	    (r = mk_catalog_get_usage(cat, address, &mu, &err)) < 0) {
		mk_log_error(ctx->name, "quota: %s", err.msg);
		mk_limits_free(&limits);
		return -1;
	}
	mk_limits_lookup(limits, address, &l);
	if (r == 1 && l.bytes != 0)
		req->room_bytes =
		    l.bytes > mu->total.bytes ? l.bytes - mu->total.bytes : 0;
	if (r == 1 && l.messages != 0)
		req->room_messages = l.messages > mu->total.messages
		    ? l.messages - mu->total.messages
		    : 0;
	mk_mailbox_usage_free(&mu);
	mk_limits_free(&limits);
	return 0;
}

/* The live Maildir of address, from the store template. */
static int
restore_maildir(struct cmd_ctx *ctx, const struct mk_conf *conf,
    const char *address, char *buf, size_t size)
{
	struct mk_store *store = NULL;
	char rel[1024];
	struct mk_err err;
	int rc = -1;

	if (mk_store_new(conf->store_root, conf->store_template, &store, &err) <
		0 ||
	    mk_store_mailbox_path(store, address, rel, sizeof(rel), &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		goto out;
	}
	snprintf(buf, size, "%s/%s", conf->store_root, rel);
	rc = 0;
out:
	mk_store_free(&store);
	return rc;
}

static void
restore_report(struct cmd_ctx *ctx, const struct mk_restore_req *req,
    const struct mk_restore_stats *st, const char *to, const char *when,
    bool ok, const char *error)
{
	static const char *const formats[] = { "maildir", "mbox", "eml" };
	char size[32];
	json_t *o;

	if (ctx->json) {
		o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I, s:I, s:I, s:I, "
			      "s:I, s:I}",
		    "mailbox", req->address, "snapshot",
		    (json_int_t)req->snapshot, "time", when, "to", to, "format",
		    formats[req->format], "folders", (json_int_t)st->folders,
		    "messages", (json_int_t)st->messages, "bytes",
		    (json_int_t)st->bytes, "files", (json_int_t)st->files,
		    "skipped", (json_int_t)st->skipped, "failed",
		    (json_int_t)st->failed);
		if (st->folder[0] != '\0')
			json_object_set_new(
			    o, "folder", json_string(st->folder));
		if (!ok)
			json_object_set_new(o, "error", json_string(error));
		cmd_backup_print(o);
		return;
	}
	if (!ok && st->messages == 0)
		return;
	mk_str_format_size(st->bytes, size, sizeof(size));
	printf("%s %s as of snapshot %lld (%s) into %s%s: %llu folders, "
	       "%llu messages (%s)",
	    ok ? "restored" : "partly restored", req->address,
	    (long long)req->snapshot, when,
	    st->folder[0] != '\0' ? "folder " : "",
	    st->folder[0] != '\0' ? st->folder : to,
	    (unsigned long long)st->folders, (unsigned long long)st->messages,
	    size);
	if (req->target == MK_RESTORE_TO_ORIGINAL)
		printf(", %llu already there", (unsigned long long)st->skipped);
	if (st->failed > 0)
		printf(
		    ", %llu could not be read", (unsigned long long)st->failed);
	printf("\n");
}

/*
 * Does mailkeepd do this restore?  Into the live mailbox, yes; into a
 * directory only beneath [restore] root (else it is written here, as
 * the user who runs the command).
 */
static bool
restore_by_daemon(const struct mk_conf *conf, const struct mk_restore_req *req)
{
	return req->target != MK_RESTORE_TO_DIR ||
	    (conf->restore_root != NULL &&
		mk_fs_path_beneath(req->dir, conf->restore_root));
}

/* Submit the restore to mailkeepd and follow it; -1: it does not run. */
static int
restore_submit(struct cmd_ctx *ctx, const struct mk_conf *conf,
    const struct mk_restore_req *req, const char *to, const char *format,
    bool force)
{
	json_t *body = json_pack("{s:s, s:I, s:s, s:s, s:b}", "mailbox",
	    req->address, "snapshot", (json_int_t)req->snapshot, "to", to,
	    "format", format != NULL ? format : "maildir", "force", force);
	int rc;

	if (body == NULL ||
	    (req->folder != NULL &&
		json_object_set_new(body, "folder", json_string(req->folder)) <
		    0) ||
	    (req->message != NULL &&
		json_object_set_new(
		    body, "message", json_string(req->message)) < 0)) {
		mk_log_error(ctx->name, "names must be UTF-8");
		json_decref(body);
		return CMD_USAGE;
	}
	rc = cmd_job_submit(ctx, conf, "/v1/restore", body);
	json_decref(body);
	return rc;
}

int
cmd_restore(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "at", required_argument, NULL, 'a' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "folder", required_argument, NULL, 'f' },
		{ "message", required_argument, NULL, 'm' },
		{ "to", required_argument, NULL, 't' },
		{ "format", required_argument, NULL, 'F' },
		{ "force", no_argument, NULL, 'x' },
		{ "offline", no_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	const char *snap = NULL, *at = NULL, *to = "new-folder", *format = NULL;
	char maildir[2048], prefix[32], when[32];
	struct mk_restore_stats stats;
	struct mk_restore_req req;
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = NULL;
	struct mk_repo *repo = NULL;
	struct restore_tty tty;
	bool force = false, offline = false;
	struct mk_err err;
	struct tm tm;
	time_t now;
	int ch, r, status = CMD_FAIL;

	memset(&req, 0, sizeof(req));
	memset(&tty, 0, sizeof(tty));
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
			req.folder = optarg;
			break;
		case 'm':
			req.message = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'F':
			format = optarg;
			break;
		case 'x':
			force = true;
			break;
		case 'o':
			offline = true;
			break;
		default:
			return cmd_usage(ctx);
		}
	}
	if (argc - optind != 1 || to[0] == '\0')
		return cmd_usage(ctx);
	if (strcmp(to, "new-folder") == 0)
		req.target = MK_RESTORE_TO_NEW_FOLDER;
	else if (strcmp(to, "original") == 0)
		req.target = MK_RESTORE_TO_ORIGINAL;
	else {
		req.target = MK_RESTORE_TO_DIR;
		req.dir = to;
	}
	if (format == NULL || strcmp(format, "maildir") == 0)
		req.format = MK_RESTORE_MAILDIR;
	else if (strcmp(format, "mbox") == 0)
		req.format = MK_RESTORE_MBOX;
	else if (strcmp(format, "eml") == 0)
		req.format = MK_RESTORE_EML;
	else {
		mk_log_error(
		    "restore", "--format %s: maildir, mbox or eml", format);
		return CMD_USAGE;
	}
	if (req.format != MK_RESTORE_MAILDIR &&
	    req.target != MK_RESTORE_TO_DIR) {
		mk_log_error("restore",
		    "--format %s is an export: give --to DIR", format);
		return CMD_USAGE;
	}
	mk_str_lower(argv[optind]);
	req.address = argv[optind];
	if (cmd_conf(ctx, &conf) < 0 || cmd_catalog_open(ctx, conf, &cat) < 0)
		goto out;
	req.separator = conf->hierarchy_separator;
	if ((status = cmd_snapshot_pick(ctx, cat, req.address, snap, at,
		 &req.snapshot, &tty.last_ns)) != CMD_OK)
		goto out;
	status = CMD_FAIL;
	cmd_backup_time(tty.last_ns, when);
	tty.last_ns = 0;
	if (!offline && restore_by_daemon(conf, &req) &&
	    (status = restore_submit(ctx, conf, &req, to, format, force)) >= 0)
		goto out;
	status = CMD_FAIL;
	if (req.target != MK_RESTORE_TO_DIR) {
		if (restore_maildir(
			ctx, conf, req.address, maildir, sizeof(maildir)) < 0)
			goto out;
		req.maildir = maildir;
		req.doveadm = conf->restore_doveadm;
		req.doveadm_config = conf->restore_doveadm_config;
		now = time(NULL);
		localtime_r(&now, &tm);
		strftime(prefix, sizeof(prefix), "Restored-%Y-%m-%d", &tm);
		req.prefix = prefix;
		if (force)
			req.room_bytes = req.room_messages = UINT64_MAX;
		else if (restore_room(ctx, conf, cat, req.address, &req) < 0)
			goto out;
	}
	if (cmd_backup_repo_open(ctx, conf, &repo) < 0)
		goto out;
	tty.on = !ctx->json && isatty(STDERR_FILENO);
	r = mk_restore_run(
	    repo, cat, &req, restore_progress_cb, &tty, &stats, &err);
	if (tty.drawn)
		fputc('\n', stderr);
	if (r < 0)
		mk_log_error("restore", "%s", err.msg);
	restore_report(ctx, &req, &stats, to, when, r == 0, err.msg);
	status = r == 0 ? CMD_OK : CMD_FAIL;
out:
	mk_repo_close(&repo);
	mk_catalog_close(&cat);
	mk_conf_free(&conf);
	return status;
}
