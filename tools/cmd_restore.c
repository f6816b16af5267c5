#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/backup.h"
#include "mailkeep/limits.h"
#include "mailkeep/lock.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/restore.h"
#include "mailkeep/scan.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#include "cmd.h"

/* The progress line on a terminal, redrawn at most every 100 ms, and
 * the parts that could not be restored. */
struct restore_tty {
	bool on;
	int64_t last_ns;
	bool drawn;
	json_t *failures;
};

/*
 * Each part that could not be read: one line on stderr (after the
 * progress line), and into the JSON report's "failures".
 */
static void
restore_failed_cb(const struct mk_restore_failure *f, void *arg)
{
	static const char *const kinds[] = { "message", "list", "file" };
	struct restore_tty *tty = arg;

	if (tty->drawn)
		fprintf(stderr, "\r\033[K");
	if (f->kind == MK_RESTORE_FAILED_LIST)
		mk_log_error("restore",
		    "not restored: messages of folder %s whose list could "
		    "not be read: %s",
		    f->folder, f->reason);
	else
		mk_log_error("restore", "not restored: %s/%s: %s", f->folder,
		    f->name, f->reason);
	json_array_append_new(tty->failures,
	    json_pack("{s:s, s:s, s:s?, s:s}", "kind", kinds[f->kind], "folder",
		f->folder, "name", f->name, "reason", f->reason));
}

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

/*
 * Where a restore finds its snapshot: the state directory's catalog, or,
 * when the mailbox has no snapshot there (a fresh machine, a lost or
 * damaged catalog, a mailbox of another host), a catalog rebuilt from
 * the repository.  An empty catalog nobody uses is rebuilt in place, so
 * that snapshots, ls and the next restores work from it; one that holds
 * other mailboxes' snapshots, cannot be opened or is in use (mailkeepd,
 * a backup run) is left alone and a private temporary catalog is
 * rebuilt, then removed.
 */
struct restore_catalog {
	struct mk_catalog *state; /* conf->catalog; NULL when unusable */
	struct mk_catalog *cat; /* what the restore reads */
	char tmpdir[PATH_MAX]; /* the temporary catalog's directory, or "" */
	bool rebuilt;
};

static void
restore_count_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	(void)s;
	(*(size_t *)arg)++;
}

static void
restore_catalog_close(struct restore_catalog *rcat)
{
	static const char *const files[] = { "catalog.db", "catalog.db-wal",
		"catalog.db-shm", "catalog.db-journal" };
	char path[PATH_MAX + 32];
	size_t i;

	if (rcat->cat != rcat->state)
		mk_catalog_close(&rcat->cat);
	mk_catalog_close(&rcat->state);
	rcat->cat = NULL;
	if (rcat->tmpdir[0] == '\0')
		return;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", rcat->tmpdir, files[i]);
		(void)unlink(path);
	}
	(void)rmdir(rcat->tmpdir);
	rcat->tmpdir[0] = '\0';
}

/* A private temporary catalog, in $TMPDIR (mode 0700). */
static int
restore_catalog_tmp(struct restore_catalog *rcat, struct mk_err *err)
{
	const char *tmp = getenv("TMPDIR");
	char path[PATH_MAX + 16];

	snprintf(rcat->tmpdir, sizeof(rcat->tmpdir),
	    "%s/mailkeep-catalog.XXXXXX",
	    tmp != NULL && tmp[0] == '/' ? tmp : "/tmp");
	if (mkdtemp(rcat->tmpdir) == NULL) {
		mk_err_sys(err, "mkdtemp(%s)", rcat->tmpdir);
		rcat->tmpdir[0] = '\0';
		return -1;
	}
	snprintf(path, sizeof(path), "%s/catalog.db", rcat->tmpdir);
	return mk_catalog_open(path, &rcat->cat, err);
}

/* The run ids of the repository, oldest first. */
struct restore_runs {
	char (*id)[MK_SNAPSHOT_RUN_ID_LEN + 1];
	size_t n, cap;
};

static void
restore_run_cb(const struct mk_snapshot_run *run, void *arg)
{
	struct restore_runs *rr = arg;

	mk_xgrow(&rr->id, &rr->cap, rr->n + 1, sizeof(*rr->id));
	memcpy(rr->id[rr->n++], run->id, sizeof(run->id));
}

/*
 * Does a run of the repository list a snapshot of address?  Read from
 * the newest run back, so that a typo does not cost a whole rebuild.
 * 1 yes, or some run could not be read (perhaps it does); 0 no; -1
 * error.
 */
static int
restore_repo_has(struct mk_repo *repo, const char *address, struct mk_err *err)
{
	struct mk_snapshot_entry *entries;
	struct mk_snapshot_run *run;
	struct restore_runs rr;
	struct mk_err rerr;
	size_t i, k, n;
	int found = 0;

	memset(&rr, 0, sizeof(rr));
	if (mk_backup_runs(repo, restore_run_cb, &rr, err) < 0) {
		free(rr.id);
		return -1;
	}
	for (i = rr.n; found == 0 && i > 0; i--) {
		if (mk_backup_run_read(
			repo, rr.id[i - 1], &run, &entries, &n, &rerr) < 0) {
			found = 1;
			break;
		}
		for (k = 0; k < n; k++)
			if (strcmp(entries[k].address, address) == 0)
				found = 1;
		mk_snapshot_entries_free(&entries, n);
		mk_snapshot_run_free(&run);
	}
	free(rr.id);
	return found;
}

/*
 * Open the catalog that knows address's snapshots, rebuilding one from
 * the repository (opened into *repo_r) when the state directory's does
 * not.  Says on stderr what it rebuilt and where.
 */
static int
restore_catalog_open(struct cmd_ctx *ctx, const struct mk_conf *conf,
    const char *address, const char *snap, struct restore_catalog *rcat,
    struct mk_repo **repo_r)
{
	struct mk_reindex_stats st;
	size_t mine = 0, all = 0;
	char lockpath[PATH_MAX + 8];
	struct mk_err err;
	int runfd = -1, r, rc = -1;
	long holder;

	memset(rcat, 0, sizeof(*rcat));
	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(conf->catalog, &rcat->state, &err) < 0 ||
	    mk_catalog_snapshots(
		rcat->state, address, restore_count_cb, &mine, &err) < 0 ||
	    (mine == 0 &&
		mk_catalog_snapshots(
		    rcat->state, NULL, restore_count_cb, &all, &err) < 0)) {
		mk_log_warn(ctx->name, "the catalog %s cannot be used: %s",
		    conf->catalog, err.msg);
		mk_catalog_close(&rcat->state);
	}
	if (rcat->state != NULL && mine > 0) {
		rcat->cat = rcat->state;
		return 0;
	}
	if (cmd_backup_repo_open(ctx, conf, repo_r) < 0)
		return -1;
	snprintf(lockpath, sizeof(lockpath), "%s.lock", conf->catalog);
	if (rcat->state != NULL && all == 0 && !cmd_daemon_running(conf) &&
	    mk_lock_run(lockpath, &runfd, &holder, &err) == 0) {
		mk_log_info(ctx->name,
		    "the catalog %s has no snapshot: rebuilding it from the "
		    "repository %s",
		    conf->catalog, conf->repo_location);
		rcat->cat = rcat->state;
	} else {
		if ((r = restore_repo_has(*repo_r, address, &err)) < 0) {
			mk_log_error(ctx->name, "%s", err.msg);
			goto out;
		}
		if (r == 0) {
			mk_log_error(ctx->name,
			    "no snapshots of %s in the catalog or the "
			    "repository: not a mailbox that was backed up",
			    address);
			goto out;
		}
		/* Ids would be a catalog's that nobody has seen. */
		if (snap != NULL) {
			mk_log_error(ctx->name,
			    "--snapshot %s: %s has no snapshot in the catalog "
			    "%s, so no snapshot id is known for it: use --at "
			    "TIME (or 'mailkeep repo rebuild-catalog', then "
			    "'mailkeep snapshots')",
			    snap, address, conf->catalog);
			goto out;
		}
		if (restore_catalog_tmp(rcat, &err) < 0) {
			mk_log_error(
			    ctx->name, "temporary catalog: %s", err.msg);
			goto out;
		}
		mk_log_info(ctx->name,
		    "%s has no snapshot in the catalog %s: rebuilding a "
		    "temporary catalog from the repository %s in %s (removed "
		    "afterwards; the catalog %s is left as it is)",
		    address, conf->catalog, conf->repo_location, rcat->tmpdir,
		    conf->catalog);
	}
	if (mk_reindex_catalog(*repo_r, rcat->cat, &st, &err) < 0) {
		mk_log_error(ctx->name, "rebuilding the catalog: %s", err.msg);
		goto out;
	}
	mk_log_info(ctx->name,
	    "catalog rebuilt from the repository: %llu runs, %llu snapshots, "
	    "%llu messages%s",
	    (unsigned long long)st.runs, (unsigned long long)st.snapshots,
	    (unsigned long long)st.messages,
	    st.skipped > 0 ? "; damaged objects left out (see above)" : "");
	rcat->rebuilt = true;
	rc = 0;
out:
	if (runfd >= 0)
		close(runfd);
	return rc;
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
    bool ok, const char *error, json_t *failures)
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
		json_object_set(o, "failures", failures);
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
	if (st->failed_lists + st->failed_files > 0)
		printf(", %llu lists or files could not be read",
		    (unsigned long long)(st->failed_lists + st->failed_files));
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
	struct restore_catalog rcat;
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
	memset(&rcat, 0, sizeof(rcat));
	offline = ctx->offline;
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
	if (cmd_conf(ctx, &conf) < 0 ||
	    restore_catalog_open(ctx, conf, req.address, snap, &rcat, &repo) <
		0)
		goto out;
	req.separator = conf->hierarchy_separator;
	if (rcat.rebuilt && snap != NULL) {
		/* Ids are the rebuilt catalog's: one given before is a guess. */
		mk_log_error(ctx->name,
		    "--snapshot %s: snapshot ids are numbered by the catalog "
		    "just rebuilt; 'mailkeep snapshots' lists them now, or use "
		    "--at TIME",
		    snap);
		goto out;
	}
	if ((status = cmd_snapshot_pick(ctx, rcat.cat, req.address, snap, at,
		 &req.snapshot, &tty.last_ns)) != CMD_OK)
		goto out;
	status = CMD_FAIL;
	cmd_backup_time(tty.last_ns, when);
	tty.last_ns = 0;
	/* mailkeepd's catalog does not know a rebuilt one's snapshots. */
	if (!offline && !rcat.rebuilt && restore_by_daemon(conf, &req) &&
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
		else if (restore_room(ctx, conf,
			     rcat.state != NULL ? rcat.state : rcat.cat,
			     req.address, &req) < 0)
			goto out;
	}
	if (repo == NULL && cmd_backup_repo_open(ctx, conf, &repo) < 0)
		goto out;
	tty.on = !ctx->json && isatty(STDERR_FILENO);
	tty.failures = json_array();
	req.failed_cb = restore_failed_cb;
	req.failed_arg = &tty;
	r = mk_restore_run(
	    repo, rcat.cat, &req, restore_progress_cb, &tty, &stats, &err);
	if (tty.drawn)
		fputc('\n', stderr);
	if (r < 0)
		mk_log_error("restore", "%s", err.msg);
	restore_report(
	    ctx, &req, &stats, to, when, r == 0, err.msg, tty.failures);
	status = r == 0 ? CMD_OK : CMD_FAIL;
out:
	json_decref(tty.failures);
	mk_repo_close(&repo);
	restore_catalog_close(&rcat);
	mk_conf_free(&conf);
	return status;
}
