/*
 * The daemon's one shared object: every module of mailkeepd gets a
 * struct mk_daemon, and only the event loop thread touches it.
 */
#ifndef MAILKEEPD_DAEMON_H
#define MAILKEEPD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "mailkeep/conf.h"
#include "mailkeep/store.h"

#include "httpconn.h"

struct mk_enforce;
struct mk_httpd;
struct mk_jobs;
struct mk_postfix;
struct mk_live;
struct mk_pool;
struct mk_watch;

/* Counters exported in /v1/status and /metrics. */
struct mk_stats {
	uint64_t events; /* inotify events handled */
	uint64_t overflows; /* inotify queue overflows */
	uint64_t scans; /* mailbox scans finished */
	uint64_t rescans; /* scans caused by events or faults */
	uint64_t scan_errors;
	uint64_t audits; /* audit passes finished */
	uint64_t audit_drift_bytes; /* |live - scanned| of the last pass */
	uint64_t audit_drift_mailboxes;
	uint64_t http_requests;
	uint64_t http_errors; /* answered 4xx or 5xx */
	struct mk_httpconn_counts http; /* connections closed by the daemon */
	uint64_t persist_errors;
	uint64_t policy_requests;
	uint64_t policy_refused;
	uint64_t policy_errors; /* bad requests: connection closed */
	uint64_t policy_reasons[16]; /* by enum mk_policy_reason */
	uint64_t policy_latency[8]; /* histogram, see postfix.c */
	uint64_t policy_latency_sum_ns;
};

struct mk_daemon {
	struct event_base *base;
	struct mk_conf *conf;
	/* The configuration of the last reload (SIGHUP), whose quota and
	 * policy settings are in force; NULL: conf's. */
	struct mk_conf *reloaded;
	/* Configurations replaced by later reloads: a worker may still read
	 * one, so they are freed at exit (a few KiB each). */
	struct mk_conf **retired;
	size_t nretired;
	uint64_t reloads; /* submitted */
	uint64_t reload_applied; /* the newest taken */
	struct mk_store *store;
	int rootfd; /* the store root, O_DIRECTORY */
	struct mk_pool *pool;
	struct mk_live *live;
	struct mk_watch *watch;
	struct mk_httpd *httpd;
	struct mk_enforce *enforce;
	struct mk_postfix *postfix;
	struct mk_jobs *jobs;
	struct mk_stats stats;
	int64_t started_ns;
	bool ready; /* the first reconcile is done */
	bool stopping;
};

/* Wall clock in ns since the epoch. */
int64_t mk_daemon_now_ns(void);

/* Tell systemd (no-op outside systemd): "STATUS=..." lines. */
void mk_daemon_notify_status(struct mk_daemon *d);

/*
 * Re-read the configuration (SIGHUP, POST /v1/reload): read and checked
 * on a worker, taken on the loop, then done(arg, rc, err) there (rc -1:
 * the running configuration stays).  done is also called when the
 * daemon stops first, with d->stopping set.
 */
typedef void mk_daemon_reload_cb(void *arg, int rc, const struct mk_err *err);
void mk_daemon_reload(
    struct mk_daemon *d, mk_daemon_reload_cb *done, void *arg);

#endif
