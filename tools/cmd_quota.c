#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/limits.h"
#include "mailkeep/log.h"
#include "mailkeep/str.h"

#include "client.h"
#include "cmd.h"

/* GET or POST path on the daemon; the JSON answer, or NULL (logged). */
static json_t *
quota_call(
    const char *sock, const char *method, const char *path, int *status_r)
{
	struct mk_client_reply reply;
	json_error_t jerr;
	struct mk_err err;
	json_t *doc;

	if (mk_client_request(sock, method, path, NULL, &reply, &err) < 0) {
		mk_log_error("quota", "%s", err.msg);
		*status_r = 0;
		return NULL;
	}
	*status_r = reply.status;
	doc = json_loads(reply.body, 0, &jerr);
	if (doc == NULL)
		mk_log_error("quota", "mailkeepd answered %d: %.200s",
		    reply.status, reply.body);
	else if (reply.status != 200)
		mk_log_error("quota", "%s",
		    json_string_value(json_object_get(doc, "error")));
	free(reply.body);
	if (doc != NULL && reply.status != 200) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static void
quota_format_limit(json_t *v, bool size, char *buf, size_t len)
{
	if (!json_is_integer(v))
		snprintf(buf, len, "unlimited");
	else if (size)
		mk_str_format_size((uint64_t)json_integer_value(v), buf, len);
	else
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
}

static void
quota_print_row(json_t *mb, bool header)
{
	json_t *q = json_object_get(mb, "quota");
	char used[32], limit[32], mlimit[32];

	if (header)
		printf("%-40s %12s %12s %9s %9s %5s\n", "MAILBOX", "USED",
		    "LIMIT", "MESSAGES", "LIMIT", "%");
	mk_str_format_size(
	    (uint64_t)json_integer_value(json_object_get(q, "counted_bytes")),
	    used, sizeof(used));
	quota_format_limit(
	    json_object_get(q, "storage"), true, limit, sizeof(limit));
	quota_format_limit(
	    json_object_get(q, "messages"), false, mlimit, sizeof(mlimit));
	printf("%-40s %12s %12s %9lld %9s %4lld%%\n",
	    json_string_value(json_object_get(mb, "address")), used, limit,
	    (long long)json_integer_value(
		json_object_get(q, "counted_messages")),
	    mlimit,
	    (long long)json_integer_value(json_object_get(q, "percent")));
}

static int
quota_get(struct cmd_ctx *ctx, struct mk_conf *conf, const char *address)
{
	char *enc = NULL, path[1024];
	json_t *doc, *q;
	int status;

	enc = mk_client_escape(address);
	mk_str_lower(enc);
	snprintf(path, sizeof(path), "/v1/mailboxes/%s", enc);
	free(enc);
	if ((doc = quota_call(conf->status_socket, "GET", path, &status)) ==
	    NULL)
		return CMD_FAIL;
	q = json_object_get(doc, "quota");
	if (ctx->json) {
		json_t *out = json_pack("{s:O, s:O}", "address",
		    json_object_get(doc, "address"), "quota", q);

		json_dumpf(out, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(out);
	} else {
		quota_print_row(doc, true);
		printf("storage limit from %s, message limit from %s; "
		       "warnings: %s\n",
		    json_string_value(json_object_get(q, "storage_from")),
		    json_string_value(json_object_get(q, "messages_from")),
		    json_string_value(json_object_get(q, "warnings"))[0]
			? json_string_value(json_object_get(q, "warnings"))
			: "none");
	}
	json_decref(doc);
	return CMD_OK;
}

static int
quota_list(struct cmd_ctx *ctx, struct mk_conf *conf, uint64_t over)
{
	json_t *all = json_array();
	size_t offset = 0, total = 0, i;
	int status;

	do {
		char path[256];
		json_t *doc, *list;

		snprintf(path, sizeof(path),
		    "/v1/mailboxes?sort=percent&"
		    "limit=1000&offset=%zu&over=%llu",
		    offset, (unsigned long long)over);
		if ((doc = quota_call(
			 conf->status_socket, "GET", path, &status)) == NULL) {
			json_decref(all);
			return CMD_FAIL;
		}
		total =
		    (size_t)json_integer_value(json_object_get(doc, "total"));
		list = json_object_get(doc, "mailboxes");
		json_array_extend(all, list);
		offset += json_array_size(list);
		json_decref(doc);
		if (json_array_size(list) == 0)
			break;
	} while (offset < total);
	if (ctx->json) {
		json_t *out = json_array();

		for (i = 0; i < json_array_size(all); i++) {
			json_t *mb = json_array_get(all, i);

			json_array_append_new(out,
			    json_pack("{s:O, s:O}", "address",
				json_object_get(mb, "address"), "quota",
				json_object_get(mb, "quota")));
		}
		json_t *doc = json_pack("{s:o}", "mailboxes", out);

		json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		putchar('\n');
		json_decref(doc);
	} else
		for (i = 0; i < json_array_size(all); i++)
			quota_print_row(json_array_get(all, i), i == 0);
	json_decref(all);
	return CMD_OK;
}

/* Set a limit through the daemon, or straight into the catalog when the
 * daemon is down (it applies at its next start). */
static int
quota_set(struct cmd_ctx *ctx, struct mk_conf *conf, const char *target,
    int argc, char **argv)
{
	struct mk_client_reply reply;
	struct mk_quota_limits l;
	struct mk_catalog *cat = NULL;
	char path[1024], t[330], *enc;
	struct mk_err err;
	int i, rc;

	if (mk_strlcpy(t, target, sizeof(t)) >= sizeof(t)) {
		mk_log_error("quota", "'%s': too long", target);
		return CMD_USAGE;
	}
	mk_str_lower(t);
	if (mk_limits_parse_set(argc, argv, &l, &err) < 0) {
		mk_log_error("quota", "%s", err.msg);
		return CMD_USAGE;
	}
	enc = mk_client_escape(t);
	snprintf(path, sizeof(path), "/v1/quota?target=%s", enc);
	free(enc);
	for (i = 0; i < argc; i++)
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "&%s", argv[i]);
	if (mk_client_request(
		conf->control_socket, "POST", path, NULL, &reply, &err) == 0) {
		rc = reply.status == 200 ? CMD_OK : CMD_FAIL;
		if (rc != CMD_OK)
			mk_log_error("quota", "mailkeepd answered %d: %.300s",
			    reply.status, reply.body);
		else if (ctx->json)
			fputs(reply.body, stdout);
		free(reply.body);
		return rc;
	}
	mk_log_warn(
	    "quota", "%s; writing the catalog for its next start", err.msg);
	if (strcmp(t, "default") != 0 &&
	    (strchr(t, '@') == NULL || t[1] == '\0')) {
		mk_log_error("quota",
		    "'%s': give an address, @DOMAIN or "
		    "default",
		    t);
		return CMD_USAGE;
	}
	if (mk_catalog_open(conf->catalog, &cat, &err) < 0 ||
	    mk_catalog_limit_put(cat, t, &l, &err) < 0) {
		mk_log_error("quota", "%s", err.msg);
		mk_catalog_close(&cat);
		return CMD_FAIL;
	}
	mk_catalog_close(&cat);
	return CMD_OK;
}

int
cmd_quota(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_conf *conf = NULL;
	uint64_t over = 0;
	struct mk_err err;
	int rc = CMD_USAGE;

	if (argc < 2)
		return cmd_usage(ctx);
	if (cmd_conf(ctx, &conf) < 0)
		return CMD_FAIL;
	if (strcmp(argv[1], "get") == 0 && argc == 3)
		rc = quota_get(ctx, conf, argv[2]);
	else if (strcmp(argv[1], "list") == 0 &&
	    (argc == 2 || (argc == 4 && strcmp(argv[2], "--over") == 0))) {
		if (argc == 4 && mk_str_parse_u64(argv[3], &over, &err) < 0) {
			mk_log_error("quota", "--over: %s", err.msg);
			rc = CMD_USAGE;
		} else
			rc = quota_list(ctx, conf, over);
	} else if (strcmp(argv[1], "set") == 0 && argc >= 4)
		rc = quota_set(ctx, conf, argv[2], argc - 3, argv + 3);
	else if (strcmp(argv[1], "recalc") == 0) {
		struct mk_client_reply reply;
		char path[512];
		int i;

		rc = CMD_OK;
		for (i = argc == 2 ? 1 : 2; i < argc && rc == CMD_OK; i++) {
			char *enc = mk_client_escape(argc == 2 ? "" : argv[i]);

			snprintf(path, sizeof(path), "/v1/rescan%s%s",
			    argc == 2 ? "" : "?mailbox=", enc);
			free(enc);
			if (mk_client_request(conf->control_socket, "POST",
				path, NULL, &reply, &err) < 0) {
				mk_log_error("quota", "%s", err.msg);
				rc = CMD_FAIL;
				continue;
			}
			if (reply.status != 202) {
				mk_log_error("quota",
				    "%s: mailkeepd answered "
				    "%d: %.200s",
				    argc == 2 ? "all" : argv[i], reply.status,
				    reply.body);
				rc = CMD_FAIL;
			}
			free(reply.body);
		}
	} else
		rc = cmd_usage(ctx);
	mk_conf_free(&conf);
	return rc;
}
