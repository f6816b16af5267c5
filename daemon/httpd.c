#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/limits.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/sock.h"
#include "mailkeep/str.h"

#include "accept.h"
#include "enforce.h"
#include "httpconn.h"
#include "httpd.h"
#include "jobs.h"
#include "live.h"
#include "pool.h"
#include "postfix.h"
#include "worker.h"

#define HTTPD_MAX_HEADERS 8192
#define HTTPD_MAX_BODY 65536
#define HTTPD_PAGE_MAX 1000
#define HTTPD_HISTORY_DAYS 90
#define HTTPD_TOP_DOMAINS 10

enum httpd_role {
	HTTPD_STATUS, /* read-only */
	HTTPD_CONTROL, /* read-write, for administrators */
	HTTPD_METRICS, /* /metrics only, maybe with a bearer token */
};

struct httpd_server {
	struct mk_httpd *httpd;
	enum httpd_role role;
	struct evhttp *http;
	char *path; /* a UNIX socket to unlink at stop */
	struct mk_accept_guard *guard;
};

struct mk_httpd {
	struct mk_daemon *d;
	struct httpd_server servers[3];
	size_t nservers;
	struct mk_httpconn *conns; /* of every server, with their deadlines */
	gid_t admin_gid;
	bool have_admin_gid;
	char *token;
};

/* Answers */

static void
httpd_send(struct httpd_server *srv, struct evhttp_request *req, int code,
    const char *reason, const char *type, struct evbuffer *body)
{
	evhttp_add_header(
	    evhttp_request_get_output_headers(req), "Content-Type", type);
	if (code >= 400)
		srv->httpd->d->stats.http_errors++;
	evhttp_send_reply(req, code, reason, body);
}

static void
httpd_send_json(struct httpd_server *srv, struct evhttp_request *req, int code,
    const char *reason, json_t *doc)
{
	struct evbuffer *body = evbuffer_new();
	char *s = doc != NULL
	    ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER)
	    : NULL;

	if (body == NULL)
		mk_fatal("httpd", "out of memory");
	if (s == NULL) {
		/* Only a bug can get here: say so rather than die. */
		code = 500;
		reason = "Internal Server Error";
		s = mk_xstrdup("{\"error\":\"cannot encode the answer\"}");
	}
	evbuffer_add(body, s, strlen(s));
	evbuffer_add(body, "\n", 1);
	httpd_send(srv, req, code, reason, "application/json", body);
	evbuffer_free(body);
	free(s);
	json_decref(doc);
}

/* A JSON string of text that may not be UTF-8 (names from the disk, error
 * messages quoting a file): bytes that do not fit become '?'. */
static json_t *
httpd_str(const char *text)
{
	json_t *j = json_string(text);
	char *copy;
	size_t i;

	if (j != NULL)
		return j;
	copy = mk_xstrdup(text);
	for (i = 0; copy[i] != '\0'; i++)
		if ((unsigned char)copy[i] >= 0x80)
			copy[i] = '?';
	j = json_string(copy);
	free(copy);
	return j != NULL ? j : json_string("?");
}

static void
httpd_error(struct httpd_server *srv, struct evhttp_request *req, int code,
    const char *reason, const char *msg)
{
	httpd_send_json(srv, req, code, reason,
	    json_pack("{s:o}", "error", httpd_str(msg)));
}

static json_t *
httpd_usage_json(const struct mk_usage *u)
{
	return json_pack("{s:I, s:I, s:I}", "bytes", (json_int_t)u->bytes,
	    "vbytes", (json_int_t)u->vbytes, "messages",
	    (json_int_t)u->messages);
}

json_t *
mk_httpd_time_json(int64_t ns)
{
	time_t t = (time_t)(ns / 1000000000);
	struct tm tm;
	char buf[32];

	if (ns <= 0 || gmtime_r(&t, &tm) == NULL)
		return json_null();
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_string(buf);
}

/* A limit, or null for unlimited. */
static json_t *
httpd_limit_json(uint64_t v, enum mk_quota_source from)
{
	return from == MK_QUOTA_SOURCE_NONE || v == 0
	    ? json_null()
	    : json_integer((json_int_t)v);
}

/* Limits, counted usage, percent and warning state of a mailbox. */
static json_t *
httpd_quota_json(const struct mk_daemon *d, const struct mk_live_mailbox *mb)
{
	struct mk_enforce_view v;
	char state[MK_WARN_STATE_MAX];
	json_t *q;

	mk_enforce_view(d->enforce, mb, &v);
	mk_warn_state_format(&v.warn, state, sizeof(state));
	q = json_pack("{s:o, s:s, s:o, s:s, s:I, s:I, s:i, s:I, s:s}",
	    "storage", httpd_limit_json(v.limits.bytes, v.limits.bytes_from),
	    "storage_from", mk_quota_source_name(v.limits.bytes_from),
	    "messages",
	    httpd_limit_json(v.limits.messages, v.limits.messages_from),
	    "messages_from", mk_quota_source_name(v.limits.messages_from),
	    "counted_bytes", (json_int_t)v.bytes, "counted_messages",
	    (json_int_t)v.messages, "percent", (int)v.percent, "reserved_bytes",
	    (json_int_t)v.resv_bytes, "warnings", state);
	return q;
}

/* The mailbox object, the same as `mailkeep --json scan` prints, and more. */
static json_t *
httpd_mailbox_json(
    const struct mk_daemon *d, const struct mk_live_mailbox *mb, bool detail)
{
	json_t *obj = httpd_usage_json(&mb->total), *folders = json_array();
	size_t i;

	json_object_set_new(obj, "address", httpd_str(mb->address));
	for (i = 0; i < mb->nfolders; i++) {
		json_t *f = httpd_usage_json(&mb->folders[i]->usage);

		json_object_set_new(f, "name", httpd_str(mb->folders[i]->name));
		json_array_append_new(folders, f);
	}
	json_object_set_new(obj, "folders", folders);
	json_object_set_new(obj, "stale", json_boolean(mb->stale));
	json_object_set_new(obj, "polled", json_boolean(mb->polled));
	json_object_set_new(
	    obj, "scanned_at", mk_httpd_time_json(mb->scanned_ns));
	json_object_set_new(obj, "quota", httpd_quota_json(d, mb));
	if (detail) {
		json_object_set_new(obj, "path", httpd_str(mb->relpath));
		json_object_set_new(obj, "last_backup",
		    mk_httpd_time_json(
			mk_jobs_last_backup(d->jobs, mb->address)));
	}
	return obj;
}

/* Handlers */

static void
httpd_history_cb(int64_t day, const struct mk_usage *u, void *arg)
{
	json_t *h = httpd_usage_json(u);

	json_object_set_new(
	    h, "date", mk_httpd_time_json(day * 86400 * 1000000000LL));
	json_array_append_new(arg, h);
}

/*
 * "full_in_days" from the daily samples (newest first in history): the
 * trend of the storage basis against the storage limit, or null.
 */
static void
httpd_estimate(const struct mk_daemon *d, const struct mk_live_mailbox *mb,
    json_t *history, json_t *quota)
{
	struct mk_warn_sample samples[MK_WARN_ESTIMATE_SAMPLES];
	struct mk_enforce_view v;
	size_t n = json_array_size(history), i, k = 0;
	uint64_t days;

	mk_enforce_view(d->enforce, mb, &v);
	if (n > MK_WARN_ESTIMATE_SAMPLES)
		n = MK_WARN_ESTIMATE_SAMPLES;
	/* Oldest first, as the estimate wants them. */
	for (i = n; i-- > 0;) {
		json_t *h = json_array_get(history, i);
		const char *date =
		    json_string_value(json_object_get(h, "date"));
		struct tm tm;

		memset(&tm, 0, sizeof(tm));
		if (date == NULL ||
		    strptime(date, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
			continue;
		samples[k].day = (int64_t)timegm(&tm) / 86400;
		samples[k++].usage =
		    (uint64_t)json_integer_value(json_object_get(h,
			v.basis == MK_QUOTA_BASIS_VIRTUAL ? "vbytes"
							  : "bytes"));
	}
	json_object_set_new(quota, "full_in_days",
	    mk_warn_estimate(samples, k, v.limits.bytes, &days) == 1
		? json_integer((json_int_t)days)
		: json_null());
}

/* GET /v1/mailboxes/<address>: the history is read by a worker (the
 * catalog is on disk), the answer made on the loop from the live state. */
/* A request answered later, when a worker's task is done. */
struct httpd_held {
	struct mk_daemon *d;
	struct httpd_server *srv; /* gone once d->stopping */
	struct mk_httpconn_hold *hold;
};

static void
httpd_hold(
    struct httpd_held *h, struct httpd_server *srv, struct evhttp_request *req)
{
	h->d = srv->httpd->d;
	h->srv = srv;
	h->hold = mk_httpconn_hold(srv->httpd->conns, req);
}

/* The request to answer now, or NULL: its connection is gone, or the
 * daemon stops (its servers are freed; a request left to us is freed). */
static struct evhttp_request *
httpd_held_take(struct httpd_held *h)
{
	struct evhttp_request *req = mk_httpconn_release(&h->hold);

	if (req != NULL && h->d->stopping) {
		evhttp_request_free(req);
		return NULL;
	}
	return req;
}

struct httpd_mailbox_job {
	struct mk_job job; /* first */
	struct httpd_held held;
	char *address;
	struct {
		int64_t day;
		struct mk_usage u;
	} days[HTTPD_HISTORY_DAYS];
	size_t ndays;
	int rc;
	struct mk_err err;
};

static void
httpd_mailbox_day_cb(int64_t day, const struct mk_usage *u, void *arg)
{
	struct httpd_mailbox_job *j = arg;

	if (j->ndays < HTTPD_HISTORY_DAYS) {
		j->days[j->ndays].day = day;
		j->days[j->ndays++].u = *u;
	}
}

static void
httpd_mailbox_run(struct mk_job *job, void *ctx)
{
	struct httpd_mailbox_job *j = (struct httpd_mailbox_job *)job;
	struct mk_worker *w = ctx;

	if (w->catalog == NULL)
		j->rc = mk_err_set(&j->err, "no catalog connection");
	else
		j->rc = mk_catalog_get_history(w->catalog, j->address,
		    HTTPD_HISTORY_DAYS, httpd_mailbox_day_cb, j, &j->err);
}

static void
httpd_mailbox_done(struct mk_job *job)
{
	struct httpd_mailbox_job *j = (struct httpd_mailbox_job *)job;
	struct evhttp_request *req = httpd_held_take(&j->held);
	struct mk_daemon *d = j->held.d;
	const struct mk_live_mailbox *mb;
	json_t *obj, *history;
	size_t i;

	if (req != NULL && (mb = mk_live_find(d->live, j->address)) == NULL)
		httpd_error(
		    j->held.srv, req, 404, "Not Found", "no such mailbox");
	else if (req != NULL) {
		if (j->rc < 0)
			mk_log_warn("httpd", "%s: no usage history: %s",
			    j->address, j->err.msg);
		obj = httpd_mailbox_json(d, mb, true);
		history = json_array();
		for (i = 0; i < j->ndays; i++)
			httpd_history_cb(
			    j->days[i].day, &j->days[i].u, history);
		json_object_set_new(obj, "history", history);
		httpd_estimate(d, mb, history, json_object_get(obj, "quota"));
		httpd_send_json(j->held.srv, req, 200, "OK", obj);
	}
	free(j->address);
	free(j);
}

static void
httpd_get_mailbox(
    struct httpd_server *srv, struct evhttp_request *req, const char *encoded)
{
	struct mk_httpd *httpd = srv->httpd;
	char *address = evhttp_uridecode(encoded, 0, NULL);
	struct httpd_mailbox_job *j;

	if (address == NULL || strlen(address) > 320 || address[0] == '\0') {
		free(address);
		httpd_error(
		    srv, req, 400, "Bad Request", "bad mailbox address");
		return;
	}
	mk_str_lower(address);
	if (mk_live_find(httpd->d->live, address) == NULL) {
		httpd_error(srv, req, 404, "Not Found", "no such mailbox");
		free(address);
		return;
	}
	j = mk_xcalloc(1, sizeof(*j));
	j->job.run = httpd_mailbox_run;
	j->job.done = httpd_mailbox_done;
	j->address = address;
	httpd_hold(&j->held, srv, req);
	mk_pool_submit_urgent(httpd->d->pool, &j->job);
}

/* A mailbox with what it is sorted by. */
struct httpd_row {
	const struct mk_live_mailbox *mb;
	unsigned percent;
};

static int
httpd_cmp_address(const void *a, const void *b)
{
	const struct httpd_row *x = a, *y = b;

	return strcmp(x->mb->address, y->mb->address);
}

static int
httpd_cmp_bytes(const void *a, const void *b)
{
	const struct httpd_row *x = a, *y = b;

	if (x->mb->total.bytes != y->mb->total.bytes)
		return x->mb->total.bytes > y->mb->total.bytes ? -1 : 1;
	return httpd_cmp_address(a, b);
}

static int
httpd_cmp_messages(const void *a, const void *b)
{
	const struct httpd_row *x = a, *y = b;

	if (x->mb->total.messages != y->mb->total.messages)
		return x->mb->total.messages > y->mb->total.messages ? -1 : 1;
	return httpd_cmp_address(a, b);
}

static int
httpd_cmp_percent(const void *a, const void *b)
{
	const struct httpd_row *x = a, *y = b;

	if (x->percent != y->percent)
		return x->percent > y->percent ? -1 : 1;
	return httpd_cmp_bytes(a, b);
}

/* Read an unsigned query parameter; -1 when malformed. */
static int
httpd_query_u64(
    const struct evkeyvalq *q, const char *key, uint64_t def, uint64_t *value_r)
{
	const char *v = evhttp_find_header(q, key);
	struct mk_err err;

	*value_r = def;
	if (v == NULL)
		return 0;
	return mk_str_parse_u64(v, value_r, &err);
}

static void
httpd_get_mailboxes(struct httpd_server *srv, struct evhttp_request *req,
    const struct evkeyvalq *q)
{
	static const struct {
		const char *name;
		int (*cmp)(const void *, const void *);
	} sorts[] = {
		{ "address", httpd_cmp_address },
		{ "bytes", httpd_cmp_bytes },
		{ "usage", httpd_cmp_bytes },
		{ "messages", httpd_cmp_messages },
		{ "percent", httpd_cmp_percent },
	};
	struct mk_daemon *d = srv->httpd->d;
	const char *sort = evhttp_find_header(q, "sort");
	int (*cmp)(const void *, const void *) = NULL;
	const struct mk_live_mailbox **all;
	uint64_t offset, limit, over;
	struct httpd_row *rows;
	json_t *doc, *list;
	size_t n, i, nrows = 0;

	if (sort == NULL)
		sort = "address";
	for (i = 0; i < sizeof(sorts) / sizeof(sorts[0]); i++)
		if (strcmp(sort, sorts[i].name) == 0)
			cmp = sorts[i].cmp;
	if (cmp == NULL || httpd_query_u64(q, "offset", 0, &offset) < 0 ||
	    httpd_query_u64(q, "limit", 100, &limit) < 0 || limit == 0 ||
	    limit > HTTPD_PAGE_MAX ||
	    httpd_query_u64(q, "over", 0, &over) < 0) {
		httpd_error(srv, req, 400, "Bad Request",
		    "use sort=address|bytes|messages|percent, offset=N, "
		    "limit=1..1000, over=PERCENT");
		return;
	}
	all = mk_live_all(d->live, &n);
	rows = mk_xcalloc(n + 1, sizeof(*rows));
	for (i = 0; i < n; i++) {
		struct mk_enforce_view v;

		mk_enforce_view(d->enforce, all[i], &v);
		if (over > 0 &&
		    (v.percent < over ||
			(v.limits.bytes == 0 && v.limits.messages == 0)))
			continue;
		rows[nrows].mb = all[i];
		rows[nrows++].percent = v.percent;
	}
	qsort(rows, nrows, sizeof(*rows), cmp);
	list = json_array();
	for (i = offset; i < nrows && i < offset + limit; i++)
		json_array_append_new(
		    list, httpd_mailbox_json(d, rows[i].mb, false));
	free(rows);
	free(all);
	doc = json_pack("{s:I, s:I, s:I, s:o}", "total", (json_int_t)nrows,
	    "offset", (json_int_t)offset, "limit", (json_int_t)limit,
	    "mailboxes", list);
	httpd_send_json(srv, req, 200, "OK", doc);
}

static void
httpd_get_status(struct httpd_server *srv, struct evhttp_request *req)
{
	struct mk_daemon *d = srv->httpd->d;
	const struct mk_stats *s = &d->stats;
	struct mk_live_counts c;
	json_t *doc;

	mk_live_counts(d->live, &c);
	doc = json_pack("{s:s, s:I, s:o, s:I, s:b, s:{s:s, s:s}}", "version",
	    MK_VERSION, "pid", (json_int_t)getpid(), "started",
	    mk_httpd_time_json(d->started_ns), "uptime_seconds",
	    (json_int_t)((mk_daemon_now_ns() - d->started_ns) / 1000000000),
	    "ready", d->ready, "store", "root", d->conf->store_root, "template",
	    d->conf->store_template);
	json_object_set_new(doc, "usage",
	    json_pack("{s:I, s:I, s:I, s:I, s:I}", "mailboxes",
		(json_int_t)c.mailboxes, "stale", (json_int_t)c.stale, "polled",
		(json_int_t)c.polled, "bytes", (json_int_t)c.bytes, "messages",
		(json_int_t)c.messages));
	json_object_set_new(doc, "watch",
	    json_pack("{s:s, s:I, s:I, s:I}", "mode",
		c.polled > 0 ? "inotify+poll" : "inotify", "watches",
		(json_int_t)c.watches, "events", (json_int_t)s->events,
		"overflows", (json_int_t)s->overflows));
	json_object_set_new(doc, "scans",
	    json_pack("{s:I, s:I, s:I, s:I, s:I}", "queued",
		(json_int_t)c.queued, "running", (json_int_t)c.scanning, "done",
		(json_int_t)s->scans, "rescans", (json_int_t)s->rescans,
		"errors", (json_int_t)s->scan_errors));
	json_object_set_new(doc, "audit",
	    json_pack("{s:I, s:I, s:I}", "passes", (json_int_t)s->audits,
		"drift_bytes", (json_int_t)s->audit_drift_bytes,
		"drift_mailboxes", (json_int_t)s->audit_drift_mailboxes));
	json_object_set_new(doc, "backup", mk_jobs_status_json(d->jobs));
	json_object_set_new(doc, "repository", mk_jobs_repo_json(d->jobs));
	httpd_send_json(srv, req, 200, "OK", doc);
}

void
mk_httpd_metric(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t value)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name,
	    help, name, type, name, (unsigned long long)value);
}

struct httpd_domain {
	const char *name;
	size_t len;
	uint64_t bytes;
};

static int
httpd_cmp_domain(const void *a, const void *b)
{
	const struct httpd_domain *x = a, *y = b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return 0;
}

static bool
httpd_domain_match(const void *value, const void *ctx)
{
	const struct httpd_domain *dm = value;
	const char *name = ctx;

	return strlen(name) == dm->len && memcmp(dm->name, name, dm->len) == 0;
}

/* Usage of the largest domains (no per-mailbox series). */
static void
httpd_metrics_domains(struct mk_httpd *httpd, struct evbuffer *b)
{
	struct httpd_domain *doms = NULL, *dm;
	struct mk_hmap *index = mk_hmap_new();
	const struct mk_live_mailbox **all;
	size_t n, i, ndoms = 0;

	all = mk_live_all(httpd->d->live, &n);
	doms = mk_xcalloc(n + 1, sizeof(*doms));
	for (i = 0; i < n; i++) {
		const char *at = strrchr(all[i]->address, '@');
		const char *name = at != NULL ? at + 1 : "";
		uint64_t key = mk_hmap_hash(name, strlen(name));

		if ((dm = mk_hmap_get(index, key, httpd_domain_match, name)) ==
		    NULL) {
			dm = &doms[ndoms++];
			dm->name = name;
			dm->len = strlen(name);
			mk_hmap_put(index, key, dm);
		}
		dm->bytes += all[i]->total.bytes;
	}
	mk_hmap_free(&index);
	qsort(doms, ndoms, sizeof(*doms), httpd_cmp_domain);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_domain_usage_bytes Usage of the %d largest "
	    "domains.\n# TYPE mailkeep_domain_usage_bytes gauge\n",
	    HTTPD_TOP_DOMAINS);
	for (i = 0; i < ndoms && i < HTTPD_TOP_DOMAINS; i++)
		evbuffer_add_printf(b,
		    "mailkeep_domain_usage_bytes{domain=\"%.*s\"} %llu\n",
		    (int)doms[i].len, doms[i].name,
		    (unsigned long long)doms[i].bytes);
	free(doms);
	free(all);
}

/* The policy service and the quota thresholds. */
static void
httpd_metrics_policy(struct mk_daemon *d, struct evbuffer *b)
{
	const struct mk_stats *s = &d->stats;
	unsigned thresholds[MK_WARN_THRESHOLDS_MAX];
	size_t counts[MK_WARN_THRESHOLDS_MAX], n, i;
	uint64_t cum = 0;

	mk_httpd_metric(b, "mailkeep_policy_requests_total", "counter",
	    "Policy requests answered.", s->policy_requests);
	mk_httpd_metric(b, "mailkeep_policy_refused_total", "counter",
	    "Policy requests answered with a refusal.", s->policy_refused);
	mk_httpd_metric(b, "mailkeep_policy_bad_requests_total", "counter",
	    "Malformed policy requests (the connection was closed).",
	    s->policy_errors);
	mk_httpd_metric(b, "mailkeep_policy_connections", "gauge",
	    "Policy connections open.",
	    d->postfix != NULL ? mk_postfix_connections(d->postfix) : 0);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_policy_answers_total Policy "
	    "answers by reason.\n# TYPE mailkeep_policy_answers_total "
	    "counter\n");
	for (i = 0; i <= MK_POLICY_TOO_LARGE; i++)
		evbuffer_add_printf(b,
		    "mailkeep_policy_answers_total{reason="
		    "\"%s\"} %llu\n",
		    mk_policy_reason_name((enum mk_policy_reason)i),
		    (unsigned long long)s->policy_reasons[i]);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_policy_latency_seconds Time "
	    "from a complete request to its answer.\n# TYPE "
	    "mailkeep_policy_latency_seconds histogram\n");
	for (i = 0; i < MK_POSTFIX_LATENCY_BUCKETS; i++) {
		cum += s->policy_latency[i];
		if (mk_postfix_latency_us[i] != 0)
			evbuffer_add_printf(b,
			    "mailkeep_policy_latency_seconds_"
			    "bucket{le=\"%g\"} %llu\n",
			    mk_postfix_latency_us[i] / 1e6,
			    (unsigned long long)cum);
		else
			evbuffer_add_printf(b,
			    "mailkeep_policy_latency_seconds_"
			    "bucket{le=\"+Inf\"} %llu\n",
			    (unsigned long long)cum);
	}
	evbuffer_add_printf(b,
	    "mailkeep_policy_latency_seconds_sum %.9f\n"
	    "mailkeep_policy_latency_seconds_count %llu\n",
	    s->policy_latency_sum_ns / 1e9, (unsigned long long)cum);
	mk_enforce_metrics_resv(d->enforce, b);
	n = mk_enforce_thresholds(d->enforce, thresholds, counts);
	evbuffer_add_printf(b,
	    "# HELP mailkeep_quota_mailboxes_over Limited "
	    "mailboxes at or over each warning threshold (percent).\n# TYPE "
	    "mailkeep_quota_mailboxes_over gauge\n");
	for (i = 0; i < n; i++)
		evbuffer_add_printf(b,
		    "mailkeep_quota_mailboxes_over{percent="
		    "\"%u\"} %zu\n",
		    thresholds[i], counts[i]);
}

static void
httpd_get_metrics(struct httpd_server *srv, struct evhttp_request *req)
{
	struct mk_daemon *d = srv->httpd->d;
	const struct mk_stats *s = &d->stats;
	struct evbuffer *b = evbuffer_new();
	struct mk_live_counts c;

	if (b == NULL)
		mk_fatal("httpd", "out of memory");
	mk_live_counts(d->live, &c);
	mk_httpd_metric(b, "mailkeep_up", "gauge", "The daemon answers.", 1);
	mk_httpd_metric(b, "mailkeep_ready", "gauge",
	    "1 once the startup reconcile is done.", d->ready);
	mk_httpd_metric(b, "mailkeep_mailboxes", "gauge", "Mailboxes watched.",
	    c.mailboxes);
	mk_httpd_metric(b, "mailkeep_mailboxes_stale", "gauge",
	    "Mailboxes whose usage is being recounted.", c.stale);
	mk_httpd_metric(b, "mailkeep_mailboxes_polled", "gauge",
	    "Mailboxes polled because the inotify watch limit was hit.",
	    c.polled);
	mk_httpd_metric(
	    b, "mailkeep_watches", "gauge", "inotify watches held.", c.watches);
	mk_httpd_metric(b, "mailkeep_usage_bytes", "gauge",
	    "Physical size of all mail.", c.bytes);
	mk_httpd_metric(b, "mailkeep_usage_messages", "gauge",
	    "Messages in all mailboxes.", c.messages);
	mk_httpd_metric(b, "mailkeep_events_total", "counter",
	    "inotify events handled.", s->events);
	mk_httpd_metric(b, "mailkeep_watch_overflows_total", "counter",
	    "inotify queue overflows (each causes a full rescan).",
	    s->overflows);
	mk_httpd_metric(b, "mailkeep_scans_total", "counter",
	    "Mailbox scans finished.", s->scans);
	mk_httpd_metric(b, "mailkeep_rescans_total", "counter",
	    "Scans caused by changes during a scan or by faults.", s->rescans);
	mk_httpd_metric(b, "mailkeep_scan_errors_total", "counter",
	    "Scans that failed.", s->scan_errors);
	mk_httpd_metric(b, "mailkeep_scans_queued", "gauge",
	    "Scans waiting for a worker.", c.queued);
	mk_httpd_metric(b, "mailkeep_audits_total", "counter",
	    "Audit passes finished.", s->audits);
	mk_httpd_metric(b, "mailkeep_audit_drift_bytes", "gauge",
	    "Bytes by which live usage differed from a fresh scan in the last "
	    "audit.",
	    s->audit_drift_bytes);
	mk_httpd_metric(b, "mailkeep_audit_drift_mailboxes", "gauge",
	    "Mailboxes whose live usage differed in the last audit.",
	    s->audit_drift_mailboxes);
	mk_httpd_metric(b, "mailkeep_http_requests_total", "counter",
	    "HTTP requests answered.", s->http_requests);
	mk_httpd_metric(b, "mailkeep_http_connections", "gauge",
	    "HTTP connections open (status, control and metrics).",
	    mk_httpconn_count(srv->httpd->conns));
	mk_httpd_metric(b, "mailkeep_http_timeouts_total", "counter",
	    "HTTP connections closed because a request was not done within "
	    "request_timeout.",
	    s->http.timeouts);
	mk_httpd_metric(b, "mailkeep_http_shed_total", "counter",
	    "HTTP connections closed to accept new ones when file descriptors "
	    "ran out.",
	    s->http.shed);
	mk_httpd_metric(b, "mailkeep_catalog_errors_total", "counter",
	    "Failed catalog writes.", s->persist_errors);
	httpd_metrics_policy(d, b);
	mk_jobs_metrics(d->jobs, b);
	if (srv->role != HTTPD_METRICS || srv->httpd->token != NULL)
		httpd_metrics_domains(srv->httpd, b);
	httpd_send(srv, req, 200, "OK", "text/plain; version=0.0.4", b);
	evbuffer_free(b);
}

/* A POST /v1/quota waiting for its row to be saved. */
struct httpd_quota_set {
	struct httpd_held held;
	char *target;
	struct mk_quota_limits l;
};

static void
httpd_quota_set_done(void *arg, int rc, const struct mk_err *err)
{
	struct httpd_quota_set *qs = arg;
	struct evhttp_request *req = httpd_held_take(&qs->held);

	if (req != NULL && rc < 0)
		httpd_error(
		    qs->held.srv, req, 500, "Internal Server Error", err->msg);
	else if (req != NULL)
		httpd_send_json(qs->held.srv, req, 200, "OK",
		    json_pack("{s:o, s:o, s:o}", "target",
			httpd_str(qs->target), "storage",
			httpd_limit_json(qs->l.bytes, qs->l.bytes_from),
			"messages",
			httpd_limit_json(qs->l.messages, qs->l.messages_from)));
	free(qs->target);
	free(qs);
}

/* POST /v1/quota?target=T&storage=SIZE&messages=N: answered once the
 * catalog has the limit (a worker writes it). */
static void
httpd_post_quota(struct httpd_server *srv, struct evhttp_request *req,
    const struct evkeyvalq *q)
{
	const char *target = evhttp_find_header(q, "target");
	const char *storage = evhttp_find_header(q, "storage");
	const char *messages = evhttp_find_header(q, "messages");
	struct httpd_quota_set *qs;
	char args[2][128], *argv[2];
	struct mk_err err;
	int argc = 0;

	if (storage != NULL) {
		snprintf(args[argc], sizeof(args[argc]), "storage=%s", storage);
		argv[argc] = args[argc];
		argc++;
	}
	if (messages != NULL) {
		snprintf(
		    args[argc], sizeof(args[argc]), "messages=%s", messages);
		argv[argc] = args[argc];
		argc++;
	}
	if (target == NULL || strlen(target) > 320) {
		httpd_error(srv, req, 400, "Bad Request", "give target=");
		return;
	}
	qs = mk_xcalloc(1, sizeof(*qs));
	qs->target = mk_xstrdup(target);
	mk_str_lower(qs->target);
	httpd_hold(&qs->held, srv, req);
	if (mk_limits_parse_set(argc, argv, &qs->l, &err) < 0 ||
	    mk_enforce_set_limit(qs->held.d->enforce, qs->target, &qs->l,
		httpd_quota_set_done, qs, &err) < 0) {
		httpd_error(srv, mk_httpconn_release(&qs->held.hold), 400,
		    "Bad Request", err.msg);
		free(qs->target);
		free(qs);
	}
}

/* A POST /v1/reload waiting for the new configuration to be taken. */
struct httpd_reload {
	struct httpd_held held;
};

static void
httpd_reload_done(void *arg, int rc, const struct mk_err *err)
{
	struct httpd_reload *r = arg;
	struct evhttp_request *req = httpd_held_take(&r->held);

	if (req != NULL && rc < 0)
		httpd_error(r->held.srv, req, 400, "Bad Request", err->msg);
	else if (req != NULL)
		httpd_send_json(r->held.srv, req, 200, "OK",
		    json_pack("{s:s}", "reload", "done"));
	free(r);
}

/* POST /v1/reload: answered once the configuration is taken. */
static void
httpd_post_reload(struct httpd_server *srv, struct evhttp_request *req)
{
	struct httpd_reload *r = mk_xcalloc(1, sizeof(*r));

	httpd_hold(&r->held, srv, req);
	mk_daemon_reload(r->held.d, httpd_reload_done, r);
}

/* A job id in a path: digits only, no leading zero. */
static int
httpd_job_id(const char *s, size_t len, uint64_t *id_r)
{
	char buf[21];
	struct mk_err err;

	if (len == 0 || len >= sizeof(buf) || s[0] == '0' ||
	    strspn(s, "0123456789") < len)
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	return mk_str_parse_u64(buf, id_r, &err);
}

/* The request's body as a JSON object, or NULL (none, or not one). */
static json_t *
httpd_json_body(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *doc;

	if (len == 0 ||
	    (doc = json_loadb((const char *)evbuffer_pullup(in, -1), len,
		 JSON_REJECT_DUPLICATES, &jerr)) == NULL)
		return NULL;
	if (!json_is_object(doc)) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* Answer a job the queue refused. */
static void
httpd_refused(struct httpd_server *srv, struct evhttp_request *req,
    enum mk_jobs_refusal why, const char *msg)
{
	if (why == MK_JOBS_NOT_FOUND)
		httpd_error(srv, req, 404, "Not Found", msg);
	else if (why == MK_JOBS_BUSY)
		httpd_error(srv, req, 503, "Service Unavailable", msg);
	else
		httpd_error(srv, req, 400, "Bad Request", msg);
}

/* POST /v1/backup with {"mailboxes":[...]} or nothing: every mailbox. */
static void
httpd_post_backup(struct httpd_server *srv, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in), n = 0, i;
	struct mk_jobs *jobs = srv->httpd->d->jobs;
	json_t *doc = NULL, *list = NULL, *v;
	enum mk_jobs_refusal why;
	char **names = NULL;
	const char *key;
	struct mk_err err;
	uint64_t id;

	if (len > 0) {
		if ((doc = httpd_json_body(req)) == NULL) {
			httpd_error(srv, req, 400, "Bad Request",
			    "the body must be a JSON object like "
			    "{\"mailboxes\":[\"a@example.org\"]}");
			goto out;
		}
		json_object_foreach(doc, key, v)
		{
			if (strcmp(key, "mailboxes") != 0 ||
			    !json_is_array(v)) {
				httpd_error(srv, req, 400, "Bad Request",
				    "only \"mailboxes\", an array of "
				    "addresses, is understood");
				goto out;
			}
			list = v;
		}
	}
	n = json_array_size(list);
	names = mk_xcalloc(n + 1, sizeof(*names));
	for (i = 0; i < n; i++) {
		const char *a = json_string_value(json_array_get(list, i));

		if (a == NULL || a[0] == '\0' || strlen(a) > 320) {
			httpd_error(srv, req, 400, "Bad Request",
			    "each mailbox must be an address (a string of 1 to "
			    "320 bytes)");
			goto out;
		}
		names[i] = mk_xstrdup(a);
		mk_str_lower(names[i]);
	}
	if (mk_jobs_submit_backup(jobs, names, n, &id, &why, &err) < 0) {
		httpd_refused(srv, req, why, err.msg);
		goto out;
	}
	httpd_send_json(srv, req, 202, "Accepted", mk_jobs_job_json(jobs, id));
out:
	for (i = 0; names != NULL && i < n; i++)
		free(names[i]);
	free(names);
	json_decref(doc);
}

/*
 * POST /v1/check with nothing or {"sample":P}; POST /v1/test-restore with
 * nothing (a backed-up mailbox at random) or {"mailbox":...}.
 */
static void
httpd_post_verify(
    struct httpd_server *srv, struct evhttp_request *req, bool check)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct mk_jobs *jobs = srv->httpd->d->jobs;
	const char *want = check ? "sample" : "mailbox";
	char *address = NULL;
	enum mk_jobs_refusal why;
	json_t *doc = NULL, *v;
	const char *key;
	struct mk_err err;
	int sample = -1;
	uint64_t id;

	if (evbuffer_get_length(in) > 0) {
		if ((doc = httpd_json_body(req)) == NULL)
			goto bad;
		json_object_foreach(doc, key, v)
		{
			if (strcmp(key, want) != 0)
				goto bad;
			if (check && json_is_integer(v) &&
			    json_integer_value(v) >= 0 &&
			    json_integer_value(v) <= 100)
				sample = (int)json_integer_value(v);
			else if (!check && json_is_string(v) &&
			    json_string_length(v) > 0 &&
			    json_string_length(v) <= 320) {
				address = mk_xstrdup(json_string_value(v));
				mk_str_lower(address);
			} else
				goto bad;
		}
	}
	if (mk_jobs_submit_verify(
		jobs, check, sample, address, &id, &why, &err) < 0)
		httpd_refused(srv, req, why, err.msg);
	else
		httpd_send_json(
		    srv, req, 202, "Accepted", mk_jobs_job_json(jobs, id));
	goto out;
bad:
	httpd_error(srv, req, 400, "Bad Request",
	    check ? "the body must be empty or {\"sample\":P}, P a percent "
		    "from 0 to 100"
		  : "the body must be empty or {\"mailbox\":\"address\"}");
out:
	free(address);
	json_decref(doc);
}

/*
 * POST /v1/restore with {"mailbox":..., "snapshot":N, "folder":...,
 * "message":..., "to":..., "format":..., "force":bool}.
 */
static void
httpd_post_restore(struct httpd_server *srv, struct evhttp_request *req)
{
	static const char *const strings[] = { "mailbox", "folder", "message",
		"to", "format" };
	struct mk_jobs *jobs = srv->httpd->d->jobs;
	struct mk_jobs_restore_req r;
	size_t i;
	const char *str[5] = { NULL };
	enum mk_jobs_refusal why;
	char *address = NULL;
	const char *key;
	struct mk_err err;
	json_t *doc, *v;
	uint64_t id;

	memset(&r, 0, sizeof(r));
	if ((doc = httpd_json_body(req)) == NULL) {
		httpd_error(srv, req, 400, "Bad Request",
		    "the body must be a JSON object like "
		    "{\"mailbox\":\"a@example.org\",\"snapshot\":7}");
		goto out;
	}
	json_object_foreach(doc, key, v)
	{
		for (i = 0; i < 5 && strcmp(key, strings[i]) != 0; i++)
			;
		if (i < 5 && json_is_string(v) &&
		    json_string_length(v) <= 4096 &&
		    strlen(json_string_value(v)) == json_string_length(v))
			str[i] = json_string_value(v);
		else if (strcmp(key, "snapshot") == 0 && json_is_integer(v))
			r.snapshot = (int64_t)json_integer_value(v);
		else if (strcmp(key, "force") == 0 && json_is_boolean(v))
			r.force = json_is_true(v);
		else {
			httpd_error(srv, req, 400, "Bad Request",
			    "understood: mailbox, snapshot (a number), "
			    "folder, message, to, format (strings without "
			    "NUL, up to 4096 bytes), force (true or false)");
			goto out;
		}
	}
	if (str[0] == NULL || str[0][0] == '\0' || strlen(str[0]) > 320) {
		httpd_error(srv, req, 400, "Bad Request", "give the mailbox");
		goto out;
	}
	address = mk_xstrdup(str[0]);
	mk_str_lower(address);
	r.address = address;
	r.folder = str[1];
	r.message = str[2];
	r.to = str[3];
	r.format = str[4];
	if (mk_jobs_submit_restore(jobs, &r, &id, &why, &err) < 0)
		httpd_refused(srv, req, why, err.msg);
	else
		httpd_send_json(
		    srv, req, 202, "Accepted", mk_jobs_job_json(jobs, id));
out:
	free(address);
	json_decref(doc);
}

/* POST /v1/jobs/<id>/cancel */
static void
httpd_post_cancel(
    struct httpd_server *srv, struct evhttp_request *req, const char *rest)
{
	struct mk_jobs *jobs = srv->httpd->d->jobs;
	const char *slash = strchr(rest, '/');
	uint64_t id;
	int r;

	if (slash == NULL || strcmp(slash, "/cancel") != 0 ||
	    httpd_job_id(rest, (size_t)(slash - rest), &id) < 0) {
		httpd_error(srv, req, 404, "Not Found", "no such endpoint");
		return;
	}
	if ((r = mk_jobs_cancel(jobs, id)) == 0)
		httpd_error(srv, req, 404, "Not Found", "no such job");
	else if (r < 0)
		httpd_error(srv, req, 409, "Conflict", "the job has finished");
	else
		httpd_send_json(
		    srv, req, 200, "OK", mk_jobs_job_json(jobs, id));
}

static void
httpd_get_job(
    struct httpd_server *srv, struct evhttp_request *req, const char *rest)
{
	uint64_t id;
	json_t *doc;

	if (httpd_job_id(rest, strlen(rest), &id) < 0 ||
	    (doc = mk_jobs_job_json(srv->httpd->d->jobs, id)) == NULL)
		httpd_error(srv, req, 404, "Not Found", "no such job");
	else
		httpd_send_json(srv, req, 200, "OK", doc);
}

static void
httpd_post(struct httpd_server *srv, struct evhttp_request *req,
    const char *path, const struct evkeyvalq *q)
{
	struct mk_daemon *d = srv->httpd->d;

	if (strcmp(path, "/v1/rescan") == 0) {
		const char *mailbox = evhttp_find_header(q, "mailbox");
		char *address = mailbox != NULL ? mk_xstrdup(mailbox) : NULL;

		if (address != NULL)
			mk_str_lower(address);
		if (mk_live_rescan(d->live, address) == 0)
			httpd_error(
			    srv, req, 404, "Not Found", "no such mailbox");
		else
			httpd_send_json(srv, req, 202, "Accepted",
			    json_pack("{s:o}", "rescan",
				httpd_str(address != NULL ? address : "all")));
		free(address);
		return;
	}
	if (strcmp(path, "/v1/quota") == 0) {
		httpd_post_quota(srv, req, q);
		return;
	}
	if (strcmp(path, "/v1/backup") == 0) {
		httpd_post_backup(srv, req);
		return;
	}
	if (strcmp(path, "/v1/restore") == 0) {
		httpd_post_restore(srv, req);
		return;
	}
	if (strcmp(path, "/v1/check") == 0 ||
	    strcmp(path, "/v1/test-restore") == 0) {
		httpd_post_verify(srv, req, strcmp(path, "/v1/check") == 0);
		return;
	}
	if (strncmp(path, "/v1/jobs/", 9) == 0) {
		httpd_post_cancel(srv, req, path + 9);
		return;
	}
	if (strcmp(path, "/v1/reload") == 0) {
		httpd_post_reload(srv, req);
		return;
	}
	httpd_error(srv, req, 404, "Not Found", "no such endpoint");
}

/* Is the peer root, the daemon's user, or in the admin group? */
static bool
httpd_peer_is_admin(struct mk_httpd *httpd, struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	gid_t groups[256];
	int fd, i, n;

	if (conn == NULL ||
	    (bev = evhttp_connection_get_bufferevent(conn)) == NULL ||
	    (fd = bufferevent_getfd(bev)) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	if (!httpd->have_admin_gid)
		return false;
	if (cred.gid == httpd->admin_gid)
		return true;
	len = sizeof(groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) < 0)
		return false;
	n = (int)(len / sizeof(gid_t));
	for (i = 0; i < n; i++)
		if (groups[i] == httpd->admin_gid)
			return true;
	return false;
}

/* Does the request carry the bearer token? */
static bool
httpd_token_ok(struct mk_httpd *httpd, struct evhttp_request *req)
{
	const char *auth = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");

	return auth != NULL && strncmp(auth, "Bearer ", 7) == 0 &&
	    strcmp(auth + 7, httpd->token) == 0;
}

static void
httpd_request_cb(struct evhttp_request *req, void *arg)
{
	struct httpd_server *srv = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq query;
	const char *path;

	mk_httpconn_request(srv->httpd->conns, req);
	srv->httpd->d->stats.http_requests++;
	TAILQ_INIT(&query);
	path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL ||
	    (evhttp_uri_get_query(uri) != NULL &&
		evhttp_parse_query_str(evhttp_uri_get_query(uri), &query) <
		    0)) {
		httpd_error(srv, req, 400, "Bad Request", "bad request target");
		goto out;
	}
	if (srv->role == HTTPD_CONTROL &&
	    !httpd_peer_is_admin(srv->httpd, req)) {
		httpd_error(srv, req, 403, "Forbidden",
		    "the control socket is for administrators");
		goto out;
	}
	if (srv->role == HTTPD_METRICS) {
		if (srv->httpd->token != NULL &&
		    !httpd_token_ok(srv->httpd, req))
			httpd_error(srv, req, 401, "Unauthorized",
			    "bearer token required");
		else if (cmd == EVHTTP_REQ_GET && strcmp(path, "/metrics") == 0)
			httpd_get_metrics(srv, req);
		else
			httpd_error(srv, req, 404, "Not Found",
			    "only /metrics is served here");
		goto out;
	}
	if (cmd == EVHTTP_REQ_POST) {
		if (srv->role != HTTPD_CONTROL)
			httpd_error(srv, req, 405, "Method Not Allowed",
			    "use the control socket");
		else
			httpd_post(srv, req, path, &query);
		goto out;
	}
	if (strcmp(path, "/v1/status") == 0)
		httpd_get_status(srv, req);
	else if (strcmp(path, "/v1/mailboxes") == 0)
		httpd_get_mailboxes(srv, req, &query);
	else if (strncmp(path, "/v1/mailboxes/", 14) == 0)
		httpd_get_mailbox(srv, req, path + 14);
	else if (strcmp(path, "/v1/jobs") == 0)
		httpd_send_json(srv, req, 200, "OK",
		    mk_jobs_list_json(srv->httpd->d->jobs));
	else if (strncmp(path, "/v1/jobs/", 9) == 0)
		httpd_get_job(srv, req, path + 9);
	else if (strcmp(path, "/metrics") == 0)
		httpd_get_metrics(srv, req);
	else
		httpd_error(srv, req, 404, "Not Found", "no such endpoint");
out:
	evhttp_clear_headers(&query);
}

/* Listening sockets */

/* A server with its bounds; the caller binds it. */
static struct httpd_server *
httpd_server_new(
    struct mk_httpd *httpd, enum httpd_role role, struct mk_err *err)
{
	struct httpd_server *srv = &httpd->servers[httpd->nservers];

	srv->httpd = httpd;
	srv->role = role;
	srv->http = evhttp_new(httpd->d->base);
	if (srv->http == NULL) {
		mk_err_set(err, "evhttp_new failed");
		return NULL;
	}
	httpd->nservers++;
	evhttp_set_max_headers_size(srv->http, HTTPD_MAX_HEADERS);
	evhttp_set_max_body_size(srv->http, HTTPD_MAX_BODY);
	/* Per read and write; the deadline of a whole request is conns'. */
	evhttp_set_timeout(srv->http, (int)httpd->d->conf->request_timeout);
	mk_httpconn_attach(httpd->conns, srv->http);
	/* POST reaches the callback everywhere, to be told where it belongs. */
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_gencb(srv->http, httpd_request_cb, srv);
	return srv;
}

static int
httpd_add_unix(struct mk_httpd *httpd, enum httpd_role role, const char *path,
    mode_t mode, struct mk_err *err)
{
	struct httpd_server *srv;
	struct evconnlistener *lev;
	int fd;

	if ((srv = httpd_server_new(httpd, role, err)) == NULL)
		return -1;
	if ((fd = mk_sock_unix_listen(path, mode, err)) < 0)
		return -1;
	srv->path = mk_xstrdup(path);
	lev = evconnlistener_new(httpd->d->base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (lev == NULL) {
		close(fd);
		return mk_err_set(err, "%s: evconnlistener_new failed", path);
	}
	if (evhttp_bind_listener(srv->http, lev) == NULL) {
		evconnlistener_free(lev);
		return mk_err_set(err, "%s: evhttp_bind_listener failed", path);
	}
	srv->guard = mk_accept_guard_new(httpd->d->base, lev, path);
	mk_accept_guard_set_shed(srv->guard, mk_httpconn_shed, httpd->conns);
	return 0;
}

/* The TCP listener for /metrics: "127.0.0.1:PORT" (or any address with a
 * bearer token). */
static int
httpd_add_metrics(struct mk_httpd *httpd, struct mk_err *err)
{
	const char *listen = httpd->d->conf->metrics_listen;
	const char *colon = strrchr(listen, ':');
	struct evhttp_bound_socket *bs;
	struct httpd_server *srv;
	char host[64];
	uint64_t port;

	if (colon == NULL || colon == listen ||
	    (size_t)(colon - listen) >= sizeof(host) ||
	    mk_str_parse_u64(colon + 1, &port, err) < 0 || port == 0 ||
	    port > 65535)
		return mk_err_set(
		    err, "metrics_listen '%s': use ADDRESS:PORT", listen);
	/* "[::1]:PORT": the brackets are not part of the address. */
	if (listen[0] == '[' && colon[-1] == ']') {
		memcpy(host, listen + 1, (size_t)(colon - listen - 2));
		host[colon - listen - 2] = '\0';
	} else {
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
	}
	if (strcmp(host, "127.0.0.1") != 0 && strcmp(host, "::1") != 0 &&
	    httpd->token == NULL)
		return mk_err_set(err,
		    "metrics_listen '%s': an address other than 127.0.0.1 or "
		    "::1 needs metrics_token_file",
		    listen);
	if ((srv = httpd_server_new(httpd, HTTPD_METRICS, err)) == NULL)
		return -1;
	bs = evhttp_bind_socket_with_handle(srv->http, host, (ev_uint16_t)port);
	if (bs == NULL)
		return mk_err_sys(err, "bind(%s)", listen);
	srv->guard = mk_accept_guard_new(
	    httpd->d->base, evhttp_bound_socket_get_listener(bs), listen);
	mk_accept_guard_set_shed(srv->guard, mk_httpconn_shed, httpd->conns);
	return 0;
}

/* Read the bearer token: one line, at least 16 characters. */
static int
httpd_read_token(struct mk_httpd *httpd, const char *path, struct mk_err *err)
{
	size_t len;
	char *data;

	if (mk_fs_read_file(path, 4096, &data, &len, err) < 0)
		return -1;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		data[--len] = '\0';
	if (len < 16 || strchr(data, '\n') != NULL) {
		free(data);
		return mk_err_set(err,
		    "%s: the token must be one line of at least 16 characters",
		    path);
	}
	httpd->token = data;
	return 0;
}

int
mk_httpd_start(
    struct mk_daemon *d, struct mk_httpd **httpd_r, struct mk_err *err)
{
	struct mk_httpd *httpd = mk_xcalloc(1, sizeof(*httpd));
	const struct mk_conf *conf = d->conf;

	*httpd_r = NULL;
	httpd->d = d;
	httpd->conns =
	    mk_httpconn_new(d->base, conf->request_timeout, &d->stats.http);
	if (conf->admin_group != NULL) {
		struct group *gr = getgrnam(conf->admin_group);

		if (gr == NULL) {
			mk_err_set(err, "admin_group '%s': no such group",
			    conf->admin_group);
			goto fail;
		}
		httpd->admin_gid = gr->gr_gid;
		httpd->have_admin_gid = true;
	}
	if (conf->metrics_token_file != NULL &&
	    httpd_read_token(httpd, conf->metrics_token_file, err) < 0)
		goto fail;
	if (httpd_add_unix(
		httpd, HTTPD_STATUS, conf->status_socket, 0660, err) < 0 ||
	    httpd_add_unix(
		httpd, HTTPD_CONTROL, conf->control_socket, 0666, err) < 0 ||
	    (conf->metrics_listen != NULL && httpd_add_metrics(httpd, err) < 0))
		goto fail;
	*httpd_r = httpd;
	return 0;
fail:
	mk_httpd_stop(&httpd);
	return -1;
}

void
mk_httpd_stop(struct mk_httpd **httpdp)
{
	struct mk_httpd *httpd = *httpdp;
	size_t i;

	if (httpd == NULL)
		return;
	for (i = 0; i < httpd->nservers; i++) {
		struct httpd_server *srv = &httpd->servers[i];

		mk_accept_guard_free(&srv->guard);
		evhttp_free(srv->http);
		if (srv->path != NULL) {
			unlink(srv->path);
			free(srv->path);
		}
	}
	mk_httpconn_free(&httpd->conns);
	if (httpd->token != NULL) {
		explicit_bzero(httpd->token, strlen(httpd->token));
		free(httpd->token);
	}
	free(httpd);
	*httpdp = NULL;
}
