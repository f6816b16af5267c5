#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/log.h"
#include "mailkeep/str.h"

#include "client.h"
#include "cmd.h"

/* An integer member of a member, or 0. */
static json_int_t
status_int(json_t *doc, const char *obj, const char *key)
{
	return json_integer_value(
	    json_object_get(json_object_get(doc, obj), key));
}

static void
status_print(json_t *doc)
{
	json_int_t up =
	    json_integer_value(json_object_get(doc, "uptime_seconds"));
	char size[32];

	mk_str_format_size(
	    (uint64_t)status_int(doc, "usage", "bytes"), size, sizeof(size));
	printf("mailkeepd %s, pid %lld, up %lldd %02lld:%02lld, %s\n",
	    json_string_value(json_object_get(doc, "version")),
	    (long long)json_integer_value(json_object_get(doc, "pid")),
	    (long long)(up / 86400), (long long)(up % 86400 / 3600),
	    (long long)(up % 3600 / 60),
	    json_is_true(json_object_get(doc, "ready")) ? "ready"
							: "counting usage");
	printf("store      %s (%s)\n",
	    json_string_value(
		json_object_get(json_object_get(doc, "store"), "root")),
	    json_string_value(
		json_object_get(json_object_get(doc, "store"), "template")));
	printf("mailboxes  %lld (%lld being counted, %lld polled), %lld "
	       "messages, %s\n",
	    (long long)status_int(doc, "usage", "mailboxes"),
	    (long long)status_int(doc, "usage", "stale"),
	    (long long)status_int(doc, "usage", "polled"),
	    (long long)status_int(doc, "usage", "messages"), size);
	printf("watches    %lld (%s), %lld events, %lld overflows\n",
	    (long long)status_int(doc, "watch", "watches"),
	    json_string_value(
		json_object_get(json_object_get(doc, "watch"), "mode")),
	    (long long)status_int(doc, "watch", "events"),
	    (long long)status_int(doc, "watch", "overflows"));
	printf("scans      %lld done, %lld queued, %lld running, %lld "
	       "rescans, %lld errors\n",
	    (long long)status_int(doc, "scans", "done"),
	    (long long)status_int(doc, "scans", "queued"),
	    (long long)status_int(doc, "scans", "running"),
	    (long long)status_int(doc, "scans", "rescans"),
	    (long long)status_int(doc, "scans", "errors"));
	printf("audit      %lld passes, last drift %lld bytes in %lld "
	       "mailboxes\n",
	    (long long)status_int(doc, "audit", "passes"),
	    (long long)status_int(doc, "audit", "drift_bytes"),
	    (long long)status_int(doc, "audit", "drift_mailboxes"));
}

/* A string member of a member, or "-". */
static const char *
status_str(json_t *doc, const char *obj, const char *key)
{
	const char *s =
	    json_string_value(json_object_get(json_object_get(doc, obj), key));

	return s != NULL ? s : "-";
}

#define STATUS_JOBS_SHOWN 5

/* The schedule, the last backups, and the latest jobs. */
static void
status_print_jobs(json_t *doc, json_t *jobs)
{
	size_t n = json_array_size(jobs), i;
	char read[32], stored[32];

	printf("backups    schedule %s, next %s; %lld mailboxes backed up, "
	       "%lld never, oldest last success %s\n",
	    status_str(doc, "backup", "schedule"),
	    status_str(doc, "backup", "next"),
	    (long long)status_int(doc, "backup", "mailboxes_backed_up"),
	    (long long)status_int(doc, "backup", "mailboxes_never"),
	    status_str(doc, "backup", "oldest_last_success"));
	for (i = n > STATUS_JOBS_SHOWN ? n - STATUS_JOBS_SHOWN : 0; i < n;
	     i++) {
		json_t *j = json_array_get(jobs, i);

		mk_str_format_size((uint64_t)json_integer_value(
				       json_object_get(j, "bytes_read")),
		    read, sizeof(read));
		mk_str_format_size((uint64_t)json_integer_value(
				       json_object_get(j, "bytes_stored")),
		    stored, sizeof(stored));
		printf("job %-6lld %s %s (%s): %lld of %lld mailboxes, %lld "
		       "failed, %s read, %s stored, started %s\n",
		    (long long)json_integer_value(json_object_get(j, "id")),
		    json_string_value(json_object_get(j, "kind")),
		    json_string_value(json_object_get(j, "state")),
		    json_string_value(json_object_get(j, "trigger")),
		    (long long)status_int(j, "mailboxes", "done"),
		    (long long)status_int(j, "mailboxes", "total"),
		    (long long)status_int(j, "mailboxes", "failed"), read,
		    stored,
		    json_is_string(json_object_get(j, "started"))
			? json_string_value(json_object_get(j, "started"))
			: "not yet");
	}
}

/* The scheduled checks and test restores. */
static void
status_print_verify(json_t *verify)
{
	static const char *const kinds[] = { "check", "test_restore" };
	size_t i;

	for (i = 0; i < 2; i++)
		printf("%-10s schedule %s, next %s; last success %s, %lld "
		       "failures\n",
		    i == 0 ? "check" : "restore",
		    status_str(verify, kinds[i], "schedule"),
		    status_str(verify, kinds[i], "next"),
		    status_str(verify, kinds[i], "last_success"),
		    (long long)status_int(verify, kinds[i], "failures"));
}

/* Where the repository is, its key slots, and the warning of a single
 * one (on stderr too, where it is seen). */
static void
status_print_repo(json_t *doc)
{
	json_t *slots =
	    json_object_get(json_object_get(doc, "repository"), "key_slots");
	const char *warning = json_string_value(
	    json_object_get(json_object_get(doc, "repository"), "warning"));

	if (json_is_integer(slots))
		printf("repository %s, %lld key slots\n",
		    status_str(doc, "repository", "location"),
		    (long long)json_integer_value(slots));
	else
		printf("repository %s, key slots not known yet (not opened)\n",
		    status_str(doc, "repository", "location"));
	if (warning != NULL) {
		printf("WARNING    %s\n", warning);
		mk_log_warn("status", "%s", warning);
	}
}

/* GET path from the status socket as JSON; logs on failure. */
static json_t *
status_get(const struct mk_conf *conf, const char *path)
{
	struct mk_client_reply reply;
	json_error_t jerr;
	struct mk_err err;
	json_t *doc = NULL;

	if (mk_client_request(
		conf->status_socket, "GET", path, NULL, &reply, &err) < 0) {
		mk_log_error("status", "%s", err.msg);
		return NULL;
	}
	if (reply.status != 200 ||
	    (doc = json_loads(reply.body, 0, &jerr)) == NULL)
		mk_log_error("status", "%s: mailkeepd answered %d: %.200s",
		    path, reply.status, reply.body);
	free(reply.body);
	return doc;
}

int
cmd_status(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_conf *conf = NULL;
	json_t *doc = NULL, *jobs = NULL;
	int rc = CMD_FAIL;

	if (getopt(argc, argv, "+") != -1 || optind != argc)
		return cmd_usage(ctx);
	if (cmd_conf(ctx, &conf) < 0)
		return CMD_FAIL;
	if ((doc = status_get(conf, "/v1/status")) == NULL ||
	    (jobs = status_get(conf, "/v1/jobs")) == NULL)
		goto out;
	if (ctx->json) {
		json_object_set(doc, "jobs", json_object_get(jobs, "jobs"));
		cmd_backup_print(json_incref(doc));
	} else {
		status_print(doc);
		status_print_jobs(doc, json_object_get(jobs, "jobs"));
		status_print_verify(json_object_get(jobs, "verify"));
		status_print_repo(doc);
	}
	rc = CMD_OK;
out:
	json_decref(doc);
	json_decref(jobs);
	mk_conf_free(&conf);
	return rc;
}
