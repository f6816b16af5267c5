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

int
cmd_status(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_client_reply reply;
	struct mk_conf *conf = NULL;
	json_error_t jerr;
	struct mk_err err;
	json_t *doc = NULL;
	int rc = CMD_FAIL;

	if (getopt(argc, argv, "+") != -1 || optind != argc)
		return cmd_usage(ctx);
	if (cmd_conf(ctx, &conf) < 0)
		return CMD_FAIL;
	if (mk_client_request(conf->status_socket, "GET", "/v1/status", NULL,
		&reply, &err) < 0) {
		mk_log_error("status", "%s", err.msg);
		goto out;
	}
	if (reply.status != 200 ||
	    (doc = json_loads(reply.body, 0, &jerr)) == NULL) {
		mk_log_error("status", "mailkeepd answered %d: %.200s",
		    reply.status, reply.body);
		goto out;
	}
	if (ctx->json)
		fputs(reply.body, stdout);
	else
		status_print(doc);
	rc = CMD_OK;
out:
	json_decref(doc);
	free(reply.body);
	mk_conf_free(&conf);
	return rc;
}
