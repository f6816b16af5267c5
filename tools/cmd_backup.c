#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/backup.h"
#include "mailkeep/dict.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/lock.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"
#include "mailkeep/when.h"

#include "client.h"
#include "cmd.h"

#define BACKUP_POLL_NS 500000000L

void
cmd_backup_time(int64_t ns, char buf[32])
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		mk_strlcpy(buf, "unknown", 32);
}

void
cmd_backup_print(struct json_t *obj)
{
	char *s;

	if (obj == NULL ||
	    (s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		mk_fatal("json", "out of memory");
	printf("%s\n", s);
	free(s);
	json_decref(obj);
}

int
cmd_backup_repo_open(
    struct cmd_ctx *ctx, const struct mk_conf *conf, struct mk_repo **repo_r)
{
	struct mk_repo_key key = { MK_REPO_KEY_NONE, NULL, NULL, NULL };
	const char *pass = getenv(MK_REPO_PASSPHRASE_ENV);
	struct mk_storage_opts sopts;
	struct mk_storage *st = NULL;
	struct mk_storage_stat sst;
	struct mk_err err;
	int found;

	/* Say plainly what to do about the commonest mistake. */
	mk_storage_opts_from_conf(conf, &sopts);
	if (mk_storage_open_opts(
		conf->repo_location, &sopts, false, &st, &err) < 0)
		found = err.sys_errno == ENOENT ? 0 : -1;
	else
		found = mk_storage_stat(st, "config", &sst, &err);
	if (found == 0) {
		mk_storage_close(&st);
		mk_log_error(ctx->name,
		    "no backup repository at %s: create it with 'mailkeep "
		    "repo init'",
		    conf->repo_location);
		return -1;
	}
	if (found < 0) {
		mk_storage_close(&st);
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	/* A passphrase if one is given, else the host's key file. */
	if (pass != NULL && pass[0] != '\0') {
		key.kind = MK_REPO_KEY_PASSPHRASE;
		key.passphrase = pass;
	} else if (access(conf->repo_key_file, F_OK) == 0) {
		key.kind = MK_REPO_KEY_FILE;
		key.key_file = conf->repo_key_file;
	}
	if (mk_repo_open_storage(st, &key, repo_r, &err) < 0) {
		mk_log_error(ctx->name, "%s", err.msg);
		return -1;
	}
	return 0;
}

/* What "backup run" works with. */
struct backup_cli {
	struct cmd_ctx *ctx;
	struct mk_conf *conf;
	struct mk_store *store;
	struct mk_catalog *cat;
	struct mk_repo *repo;
	struct mk_backup *bk;
	struct cmd_locks locks;
	int rootfd;
	size_t printed;
	uint64_t read_messages;
	uint64_t read_bytes;
	uint64_t stored_bytes;
	size_t failed;
};

static void
backup_cli_free(struct backup_cli *cli)
{
	mk_backup_free(&cli->bk);
	cmd_lock_release(&cli->locks);
	mk_repo_close(&cli->repo);
	mk_catalog_close(&cli->cat);
	if (cli->rootfd >= 0)
		close(cli->rootfd);
	mk_store_free(&cli->store);
	mk_conf_free(&cli->conf);
}

/* Settings, store, catalog and repository; logs on failure. */
static int
backup_cli_open(struct cmd_ctx *ctx, struct backup_cli *cli)
{
	struct mk_err err;

	memset(cli, 0, sizeof(*cli));
	cli->ctx = ctx;
	cli->rootfd = -1;
	cli->locks.runfd = -1;
	if (cmd_conf(ctx, &cli->conf) < 0)
		return -1;
	if (mk_store_new(cli->conf->store_root, cli->conf->store_template,
		&cli->store, &err) < 0 ||
	    (cli->rootfd = mk_store_open_root(cli->store, &err)) < 0 ||
	    mk_fs_mkdir_p(cli->conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(cli->conf->catalog, &cli->cat, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		return -1;
	}
	return 0;
}

static double
backup_seconds(int64_t ns)
{
	return (double)ns / 1e9;
}

static void
backup_print(struct backup_cli *cli, const char *address,
    const struct mk_backup_stats *s, const char *error)
{
	char read[32], stored[32];
	json_t *obj;
	char *text;

	if (cli->ctx->json) {
		if (error != NULL)
			obj = json_pack(
			    "{s:s, s:s}", "address", address, "error", error);
		else
			obj = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, "
					"s:I, s:I, s:I, s:I, s:I, s:I, s:f, "
					"s:I}",
			    "address", address, "snapshot",
			    (json_int_t)s->snapshot, "folders",
			    (json_int_t)s->folders, "messages",
			    (json_int_t)s->messages, "bytes",
			    (json_int_t)s->bytes, "read_messages",
			    (json_int_t)s->read_messages, "read_bytes",
			    (json_int_t)s->read_bytes, "meta_bytes",
			    (json_int_t)s->meta_bytes, "new_blobs",
			    (json_int_t)s->new_blobs, "stored_bytes",
			    (json_int_t)s->stored_bytes, "packs",
			    (json_int_t)s->packs, "new_versions",
			    (json_int_t)s->new_versions, "vanished",
			    (json_int_t)s->vanished, "duration",
			    backup_seconds(s->duration_ns), "skipped",
			    (json_int_t)s->skipped.count);
		if (obj == NULL ||
		    (text = json_dumps(
			 obj, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
			mk_fatal("json", "out of memory");
		printf("%s%s", cli->printed > 0 ? "," : "", text);
		free(text);
		json_decref(obj);
	} else if (error == NULL) {
		if (cli->printed == 0)
			printf("%-36s %8s %9s %6s %10s %10s %7s\n", "MAILBOX",
			    "SNAPSHOT", "MESSAGES", "READ", "READ BYTES",
			    "STORED", "TIME");
		mk_str_format_size(s->read_bytes, read, sizeof(read));
		mk_str_format_size(s->stored_bytes, stored, sizeof(stored));
		printf("%-36s %8lld %9llu %6llu %10s %10s %6.1fs\n", address,
		    (long long)s->snapshot, (unsigned long long)s->messages,
		    (unsigned long long)s->read_messages, read, stored,
		    backup_seconds(s->duration_ns));
	}
	cli->printed++;
}

/* A mailbox committed, or failed, maybe after later ones (shared packs). */
static void
backup_done(const char *address, const struct mk_backup_stats *s,
    const struct mk_err *err, void *arg)
{
	struct backup_cli *cli = arg;

	if (err != NULL) {
		mk_log_error("backup", "%s", err->msg);
		cli->failed++;
		backup_print(cli, address, NULL, err->msg);
		return;
	}
	if (s->skipped.count > 0)
		mk_log_warn("backup", "%s: %llu entries skipped, first: %s",
		    address, s->skipped.count, s->skipped.first);
	cli->read_messages += s->read_messages;
	cli->read_bytes += s->read_bytes;
	cli->stored_bytes += s->stored_bytes;
	backup_print(cli, address, s, NULL);
}

static void
backup_one(struct backup_cli *cli, const char *address, const char *relpath)
{
	struct mk_backup_stats s;
	struct mk_err err;

	/* Success is reported by backup_done(), now or after the pack. */
	if (mk_backup_mailbox(
		cli->bk, cli->rootfd, relpath, address, &s, &err) < 0)
		backup_done(address, NULL, &err, cli);
}

bool
cmd_daemon_running(const struct mk_conf *conf)
{
	char path[4096];
	bool running;
	int fd;

	snprintf(path, sizeof(path), "%s/mailkeepd.lock", conf->state_dir);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return false;
	running = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
	close(fd);
	return running;
}

/* An integer member of the "mailboxes" member of a job. */
static json_int_t
backup_job_count(json_t *job, const char *key)
{
	return json_integer_value(
	    json_object_get(json_object_get(job, "mailboxes"), key));
}

static bool
backup_job_finished(json_t *job)
{
	const char *state = json_string_value(json_object_get(job, "state"));

	/* "waiting": for the repository lock. */
	return state != NULL && strcmp(state, "queued") != 0 &&
	    strcmp(state, "running") != 0 && strcmp(state, "waiting") != 0;
}

/* One line saying where a job is: the progress line, then the result. */
static void
backup_job_line(json_t *job, char *buf, size_t size)
{
	json_t *progress = json_object_get(job, "progress");
	const char *folder = json_string_value(
	    json_object_get(json_object_get(job, "result"), "folder"));
	json_t *lock = json_object_get(job, "lock_wait");
	json_t *holder = json_is_true(json_object_get(lock, "waiting"))
	    ? json_object_get(lock, "holder")
	    : NULL;
	char read[32], stored[32];

	mk_str_format_size(
	    (uint64_t)json_integer_value(json_object_get(job, "bytes_read")),
	    read, sizeof(read));
	mk_str_format_size(
	    (uint64_t)json_integer_value(json_object_get(job, "bytes_stored")),
	    stored, sizeof(stored));
	if (holder != NULL) {
		snprintf(buf, size,
		    "job %lld %s waiting for the repository lock %s of host "
		    "%s pid %lld",
		    (long long)json_integer_value(json_object_get(job, "id")),
		    json_string_value(json_object_get(job, "kind")),
		    json_string_value(json_object_get(holder, "lock")),
		    json_string_value(json_object_get(holder, "host")) != NULL
			? json_string_value(json_object_get(holder, "host"))
			: "?",
		    (long long)json_integer_value(
			json_object_get(holder, "pid")));
		return;
	}
	if (progress != NULL) {
		snprintf(buf, size,
		    "job %lld %s %s: %lld of %lld messages, %s restored%s%s",
		    (long long)json_integer_value(json_object_get(job, "id")),
		    json_string_value(json_object_get(job, "kind")),
		    json_string_value(json_object_get(job, "state")),
		    (long long)json_integer_value(
			json_object_get(progress, "messages")),
		    (long long)json_integer_value(
			json_object_get(progress, "messages_total")),
		    read, folder != NULL ? " into folder " : "",
		    folder != NULL ? folder : "");
		return;
	}
	snprintf(buf, size,
	    "job %lld %s: %lld of %lld mailboxes backed up, %lld failed, %s "
	    "read, %s stored",
	    (long long)json_integer_value(json_object_get(job, "id")),
	    json_string_value(json_object_get(job, "state")),
	    (long long)backup_job_count(job, "done"),
	    (long long)backup_job_count(job, "total"),
	    (long long)backup_job_count(job, "failed"), read, stored);
}

/*
 * Follow a job of the daemon until it finishes (a progress line on a
 * terminal), then say how it went; the exit status is its outcome.
 */
int
cmd_job_wait(struct cmd_ctx *ctx, const struct mk_conf *conf, json_t *job)
{
	bool tty = isatty(STDERR_FILENO) && !ctx->json;
	struct timespec pause = { 0, BACKUP_POLL_NS };
	json_int_t id = json_integer_value(json_object_get(job, "id"));
	struct mk_client_reply reply;
	const char *state;
	json_error_t jerr;
	struct mk_err err;
	char path[64], line[256];
	size_t i;
	json_t *e;
	int rc;

	json_incref(job);
	snprintf(path, sizeof(path), "/v1/jobs/%lld", (long long)id);
	while (!backup_job_finished(job)) {
		if (tty) {
			backup_job_line(job, line, sizeof(line));
			fprintf(stderr, "\r%s\033[K", line);
		}
		nanosleep(&pause, NULL);
		if (mk_client_request(conf->control_socket, "GET", path, NULL,
			&reply, &err) < 0) {
			mk_log_error(ctx->name, "while job %lld ran: %s",
			    (long long)id, err.msg);
			json_decref(job);
			return CMD_FAIL;
		}
		json_decref(job);
		job = reply.status == 200 ? json_loads(reply.body, 0, &jerr)
					  : NULL;
		if (job == NULL) {
			mk_log_error(ctx->name,
			    "job %lld: mailkeepd answered "
			    "%d: %.200s",
			    (long long)id, reply.status, reply.body);
			free(reply.body);
			return CMD_FAIL;
		}
		free(reply.body);
	}
	if (tty)
		fprintf(stderr, "\r\033[K");
	json_array_foreach(json_object_get(job, "errors"), i, e)
	{
		const char *mb =
		    json_string_value(json_object_get(e, "mailbox"));

		mk_log_error(ctx->name, "%s%s%s", mb != NULL ? mb : "",
		    mb != NULL ? ": " : "",
		    json_string_value(json_object_get(e, "error")));
	}
	state = json_string_value(json_object_get(job, "state"));
	rc = strcmp(state, "done") == 0 ? CMD_OK : CMD_FAIL;
	if (ctx->json)
		cmd_backup_print(json_incref(job));
	else {
		backup_job_line(job, line, sizeof(line));
		printf("%s\n", line);
	}
	json_decref(job);
	return rc;
}

int
cmd_job_submit(struct cmd_ctx *ctx, const struct mk_conf *conf,
    const char *path, json_t *req)
{
	struct mk_client_reply reply;
	json_t *job = NULL;
	json_error_t jerr;
	struct mk_err err;
	char *body = NULL;
	int rc = CMD_FAIL;

	if (req != NULL && (body = json_dumps(req, JSON_COMPACT)) == NULL) {
		mk_log_error(ctx->name, "cannot encode the request");
		return CMD_FAIL;
	}
	if (mk_client_request(conf->control_socket, "POST", path,
		req != NULL ? body : NULL, &reply, &err) < 0) {
		if (mk_client_down(&err))
			rc = -1;
		else
			mk_log_error(ctx->name, "%s", err.msg);
		goto out;
	}
	if (reply.status != 202 ||
	    (job = json_loads(reply.body, 0, &jerr)) == NULL) {
		mk_log_error(ctx->name, "mailkeepd answered %d: %.300s",
		    reply.status, reply.body);
		free(reply.body);
		goto out;
	}
	free(reply.body);
	rc = cmd_job_wait(ctx, conf, job);
out:
	json_decref(job);
	free(body);
	return rc;
}

/*
 * Submit "backup run" to the daemon and wait: 0 or 1 as the job ends,
 * 2 on bad usage, -1 when no daemon runs (the caller backs up itself).
 */
static int
backup_run_daemon(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_conf *conf = NULL;
	json_t *names = json_array(), *req = NULL;
	int i, rc = CMD_FAIL;

	if (cmd_conf(ctx, &conf) < 0)
		goto out;
	for (i = 0; i < argc; i++) {
		json_t *name = json_string(argv[i]);

		if (name == NULL) {
			mk_log_error(ctx->name, "'%s' is not UTF-8", argv[i]);
			rc = CMD_USAGE;
			goto out;
		}
		json_array_append_new(names, name);
	}
	if (argc > 0)
		req = json_pack("{s:O}", "mailboxes", names);
	rc = cmd_job_submit(ctx, conf, "/v1/backup", req);
out:
	json_decref(req);
	json_decref(names);
	mk_conf_free(&conf);
	return rc;
}

/*
 * Load the repository's dictionaries; with `dictionary = auto`, train
 * the missing ones on the mailboxes of this run.
 */
static int
backup_dicts(struct backup_cli *cli, const struct mk_store_list *list, int argc,
    char **argv)
{
	char relpath[4096], **relpaths;
	size_t n = 0, k;
	struct mk_err err;
	int i, rc;

	relpaths =
	    mk_xcalloc((list != NULL ? list->count : 0) + (size_t)argc + 1,
		sizeof(*relpaths));
	for (k = 0; list != NULL && k < list->count; k++)
		relpaths[n++] = mk_xstrdup(list->mailboxes[k].relpath);
	for (i = 0; i < argc; i++)
		if (mk_store_mailbox_path(cli->store, argv[i], relpath,
			sizeof(relpath), &err) == 0)
			relpaths[n++] = mk_xstrdup(relpath);
	rc = mk_dict_prepare(cli->repo, cli->conf->backup_dictionary,
	    cli->rootfd, relpaths, n, &err);
	if (rc < 0)
		mk_log_error("backup", "%s", err.msg);
	for (k = 0; k < n; k++)
		free(relpaths[k]);
	free(relpaths);
	return rc;
}

static int
backup_run(struct cmd_ctx *ctx, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "offline", no_argument, NULL, 'o' },
		{ "time", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1], relpath[4096];
	struct mk_store_list *list = NULL;
	char read[32], stored[32];
	struct backup_cli cli;
	struct mk_err err;
	int64_t run = 0, start, at_ns = 0;
	int i, j, ch, status = CMD_FAIL;
	bool offline = ctx->offline;
	size_t k;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		if (ch == 'o')
			offline = true;
		else if (ch == 't' &&
		    mk_when_parse(optarg, cmd_now_ns(), &at_ns, &err) < 0) {
			mk_log_error(ctx->name, "--time: %s", err.msg);
			return CMD_USAGE;
		} else if (ch != 't')
			return cmd_usage(ctx);
	}
	/* The daemon's runs take their own time. */
	if (at_ns != 0 && !offline) {
		mk_log_error(ctx->name, "--time needs --offline");
		return CMD_USAGE;
	}
	if (!offline &&
	    (status = backup_run_daemon(ctx, argc - optind, argv + optind)) >=
		0)
		return status;
	status = CMD_FAIL;
	memset(&cli, 0, sizeof(cli));
	cli.rootfd = -1;
	if (backup_cli_open(ctx, &cli) < 0)
		goto out;
	if (offline && cmd_daemon_running(cli.conf)) {
		mk_log_error(ctx->name,
		    "mailkeepd is running on %s: leave out --offline, it "
		    "runs the backup",
		    cli.conf->state_dir);
		goto out;
	}
	/* One run per catalog; shared with other hosts, not with prune. */
	if (cmd_backup_repo_open(ctx, cli.conf, &cli.repo) < 0 ||
	    cmd_lock_take(
		ctx, cli.conf, cli.repo, MK_LOCK_SHARED, 0, &cli.locks) < 0)
		goto out;
	if (optind == argc && mk_store_list(cli.store, &list, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		goto out;
	}
	if (list != NULL && list->warnings.count > 0)
		mk_log_warn("backup", "%s: %llu entries skipped, first: %s",
		    cli.conf->store_root, list->warnings.count,
		    list->warnings.first);
	start = (int64_t)time(NULL);
	if (backup_dicts(&cli, list, argc - optind, argv + optind) < 0)
		goto out;
	if (mk_backup_run_begin(cli.repo, cli.cat, &run, id, &err) < 0 ||
	    mk_backup_new(cli.repo, cli.cat, run, &cli.bk, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		goto out;
	}
	mk_backup_share_packs(cli.bk, backup_done, &cli);
	mk_backup_set_time(cli.bk, at_ns);
	if (ctx->json)
		printf("{\"run\":\"%s\",\"mailboxes\":[", id);
	for (k = 0; list != NULL && k < list->count; k++) {
		/* The next mailbox is listed while this one is read. */
		if (k + 1 < list->count)
			mk_backup_prefetch(cli.bk, cli.rootfd,
			    list->mailboxes[k + 1].relpath,
			    list->mailboxes[k + 1].address);
		backup_one(&cli, list->mailboxes[k].address,
		    list->mailboxes[k].relpath);
	}
	for (i = optind; i < argc; i++) {
		mk_str_lower(argv[i]);
		/* A mailbox named twice is backed up once. */
		for (j = optind; j < i && strcmp(argv[j], argv[i]) != 0; j++)
			;
		if (j < i)
			continue;
		if (mk_store_mailbox_path(cli.store, argv[i], relpath,
			sizeof(relpath), &err) < 0) {
			mk_log_error("backup", "%s", err.msg);
			cli.failed++;
			backup_print(&cli, argv[i], NULL, err.msg);
			continue;
		}
		backup_one(&cli, argv[i], relpath);
	}
	/* The last pack, and the mailboxes waiting for it. */
	if (mk_backup_flush(cli.bk, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		cli.failed++;
	}
	if (mk_backup_run_end(cli.repo, cli.cat, run, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		cli.failed++;
	}
	if (ctx->json)
		printf("],\"failed\":%zu}\n", cli.failed);
	else {
		mk_str_format_size(cli.read_bytes, read, sizeof(read));
		mk_str_format_size(cli.stored_bytes, stored, sizeof(stored));
		printf("run %s: %zu mailboxes, %llu messages read (%s), %s "
		       "stored, %lld s%s\n",
		    id, cli.printed, (unsigned long long)cli.read_messages,
		    read, stored, (long long)(time(NULL) - start),
		    cli.failed > 0 ? ", with failures" : "");
	}
	status = cli.failed > 0 ? CMD_FAIL : CMD_OK;
out:
	mk_store_list_free(&list);
	backup_cli_free(&cli);
	return status;
}

/* The runs listed so far. */
struct backup_runs {
	struct cmd_ctx *ctx;
	json_t *json;
	size_t count;
};

static void
backup_list_cb(const struct mk_snapshot_run *run, void *arg)
{
	struct backup_runs *runs = arg;
	char started[32], ended[32], size[32];

	cmd_backup_time(run->started_ns, started);
	cmd_backup_time(run->ended_ns, ended);
	if (runs->count++ == 0 && !runs->ctx->json)
		printf("%-32s %-20s %7s %-12s %9s %9s %10s\n", "RUN", "STARTED",
		    "TIME", "HOST", "MAILBOXES", "MESSAGES", "SIZE");
	if (runs->ctx->json) {
		json_array_append_new(runs->json,
		    json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id",
			run->id, "started", started, "ended", ended, "host",
			run->host, "mailboxes", (json_int_t)run->mailboxes,
			"messages", (json_int_t)run->messages, "bytes",
			(json_int_t)run->bytes));
		return;
	}
	mk_str_format_size(run->bytes, size, sizeof(size));
	printf("%-32s %-20s %6llds %-12.12s %9llu %9llu %10s\n", run->id,
	    started,
	    (long long)((run->ended_ns - run->started_ns) / 1000000000),
	    run->host, (unsigned long long)run->mailboxes,
	    (unsigned long long)run->messages, size);
}

/* The runs whose id starts with a prefix; exactly one must. */
struct backup_find {
	const char *prefix;
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1];
	size_t matches;
};

static void
backup_find_cb(const struct mk_snapshot_run *run, void *arg)
{
	struct backup_find *find = arg;

	if (mk_str_has_prefix(run->id, find->prefix)) {
		mk_strlcpy(find->id, run->id, sizeof(find->id));
		find->matches++;
	}
}

/* "backup list RUN": the mailbox snapshots of one run. */
static int
backup_list_run(struct cmd_ctx *ctx, struct mk_repo *repo, const char *prefix)
{
	struct mk_snapshot_entry *entries = NULL;
	struct mk_snapshot_run *run = NULL;
	struct backup_find find;
	char time[32], size[32];
	size_t n = 0, i;
	struct mk_err err;
	json_t *arr;
	int status = CMD_FAIL;

	if (strlen(prefix) < 8 || strlen(prefix) > MK_SNAPSHOT_RUN_ID_LEN ||
	    strspn(prefix, "0123456789abcdef") != strlen(prefix)) {
		mk_log_error("backup",
		    "'%s' is not a run id (8 to 32 hex "
		    "digits)",
		    prefix);
		return CMD_USAGE;
	}
	memset(&find, 0, sizeof(find));
	find.prefix = prefix;
	if (mk_backup_runs(repo, backup_find_cb, &find, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		return CMD_FAIL;
	}
	if (find.matches != 1) {
		mk_log_error("backup", "%s run starts with %s",
		    find.matches == 0 ? "no" : "more than one", prefix);
		return CMD_FAIL;
	}
	if (mk_backup_run_read(repo, find.id, &run, &entries, &n, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		goto out;
	}
	arr = json_array();
	for (i = 0; i < n; i++) {
		const struct mk_snapshot_entry *e = &entries[i];
		char hex[2 * MK_PACK_ID_LEN + 1];

		cmd_backup_time(e->time_ns, time);
		if (ctx->json) {
			mk_crypto_hex(e->snapshot, MK_PACK_ID_LEN, hex);
			json_array_append_new(arr,
			    json_pack("{s:s, s:s, s:I, s:I, s:s}", "mailbox",
				e->address, "time", time, "messages",
				(json_int_t)e->messages, "bytes",
				(json_int_t)e->bytes, "object", hex));
			continue;
		}
		if (i == 0)
			printf("%-40s %-20s %9s %10s\n", "MAILBOX", "TIME",
			    "MESSAGES", "SIZE");
		mk_str_format_size(e->bytes, size, sizeof(size));
		printf("%-40s %-20s %9llu %10s\n", e->address, time,
		    (unsigned long long)e->messages, size);
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:s, s:s, s:o}", "run", run->id,
		    "host", run->host, "snapshots", arr));
	else
		json_decref(arr);
	status = CMD_OK;
out:
	mk_snapshot_entries_free(&entries, n);
	mk_snapshot_run_free(&run);
	return status;
}

static int
backup_list(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo *repo = NULL;
	struct mk_conf *conf = NULL;
	struct backup_runs runs;
	struct mk_err err;
	int status = CMD_FAIL;

	optind = 0;
	if (getopt(argc, argv, "+") != -1 || argc - optind > 1)
		return cmd_usage(ctx);
	memset(&runs, 0, sizeof(runs));
	runs.ctx = ctx;
	runs.json = json_array();
	if (cmd_conf(ctx, &conf) < 0 ||
	    cmd_backup_repo_open(ctx, conf, &repo) < 0)
		goto out;
	if (optind < argc) {
		status = backup_list_run(ctx, repo, argv[optind]);
		goto out;
	}
	if (mk_backup_runs(repo, backup_list_cb, &runs, &err) < 0) {
		mk_log_error("backup", "%s", err.msg);
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:O}", "runs", runs.json));
	else if (runs.count == 0)
		printf("no runs in the repository\n");
	status = CMD_OK;
out:
	json_decref(runs.json);
	mk_repo_close(&repo);
	mk_conf_free(&conf);
	return status;
}

int
cmd_backup(struct cmd_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cmd_usage(ctx);
	if (strcmp(argv[1], "run") == 0)
		return backup_run(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0)
		return backup_list(ctx, argc - 1, argv + 1);
	return cmd_usage(ctx);
}
