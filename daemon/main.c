#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "mailkeep/catalog.h"
#include "mailkeep/doveconf.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "daemon.h"
#include "enforce.h"
#include "httpd.h"
#include "jobs.h"
#include "live.h"
#include "pool.h"
#include "postfix.h"
#include "watch.h"
#include "worker.h"

/* The options, kept for reloads. */
static struct mk_conf_args main_args;

int64_t
mk_daemon_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void
mk_daemon_notify_status(struct mk_daemon *d)
{
	struct mk_live_counts c;

	mk_live_counts(d->live, &c);
	sd_notifyf(0,
	    "STATUS=%s%zu mailboxes, %zu being counted, %zu watches%s",
	    d->ready ? "" : "starting: ", c.mailboxes, c.stale, c.watches,
	    c.polled > 0 ? ", some polled" : "");
}

struct main_reload {
	struct mk_job job; /* first */
	struct mk_daemon *d;
	uint64_t seq;
	struct mk_conf *conf;
	struct mk_enforce_prepared *enforce;
	mk_daemon_reload_cb *done;
	void *arg;
	int rc;
	struct mk_err err;
};

static void
main_reload_run(struct mk_job *job, void *ctx)
{
	struct main_reload *j = (struct main_reload *)job;
	struct mk_worker *w = ctx;

	j->rc = -1;
	if (mk_conf_setup(&main_args, &j->conf, &j->err) < 0 ||
	    mk_jobs_check_conf(j->conf, &j->err) < 0 ||
	    (j->enforce = mk_enforce_prepare(j->conf, w->catalog, &j->err)) ==
		NULL)
		return;
	j->rc = 0;
}

static void
main_reload_done(struct mk_job *job)
{
	struct main_reload *j = (struct main_reload *)job;
	struct mk_daemon *d = j->d;
	struct mk_conf *conf = j->conf, *old = d->conf;

	if (d->stopping || j->rc < 0 || j->seq < d->reload_applied)
		goto out;
	if (strcmp(conf->store_root, old->store_root) != 0 ||
	    strcmp(conf->store_template, old->store_template) != 0 ||
	    strcmp(conf->state_dir, old->state_dir) != 0 ||
	    strcmp(conf->status_socket, old->status_socket) != 0 ||
	    strcmp(conf->control_socket, old->control_socket) != 0 ||
	    conf->request_timeout != old->request_timeout ||
	    conf->workers != old->workers)
		mk_log_warn("main",
		    "reload: store, state, socket and worker settings take "
		    "effect at the next restart");
	mk_enforce_apply(d->enforce, conf, &j->enforce);
	/* What can change while running. */
	mk_jobs_reload(d->jobs, conf);
	old->log_level = conf->log_level;
	mk_log_init("mailkeepd", (enum mk_log_level)conf->log_level);
	/* Kept: enforce reloads from it when its files change. */
	if (d->reloaded != NULL) {
		d->retired = mk_xreallocarray(
		    d->retired, d->nretired + 1, sizeof(*d->retired));
		d->retired[d->nretired++] = d->reloaded;
	}
	d->reloaded = conf;
	conf = NULL;
	d->reload_applied = j->seq;
	mk_live_refresh_store(d->live);
	mk_log_info("main", "configuration reloaded");
out:
	if (j->rc < 0 && !d->stopping)
		mk_log_error("main",
		    "reload: %s; keeping the running configuration",
		    j->err.msg);
	if (d->stopping && j->rc == 0)
		j->rc = mk_err_set(&j->err, "the daemon is stopping");
	mk_conf_free(&conf);
	mk_enforce_prepared_free(&j->enforce);
	j->done(j->arg, j->rc, &j->err);
	free(j);
}

void
mk_daemon_reload(struct mk_daemon *d, mk_daemon_reload_cb *done, void *arg)
{
	struct main_reload *j = mk_xcalloc(1, sizeof(*j));

	j->job.run = main_reload_run;
	j->job.done = main_reload_done;
	j->d = d;
	j->seq = ++d->reloads;
	j->done = done;
	j->arg = arg;
	mk_pool_submit_urgent(d->pool, &j->job);
}

static void
main_reloaded_cb(void *arg, int rc, const struct mk_err *err)
{
	const struct mk_daemon *d = arg;

	(void)rc;
	(void)err;
	if (!d->stopping)
		sd_notify(0, "READY=1");
}

static void
main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct mk_daemon *d = arg;

	(void)what;
	if (sig == SIGHUP) {
		sd_notify(0, "RELOADING=1");
		mk_daemon_reload(d, main_reloaded_cb, d);
		return;
	}
	mk_log_info("main", "signal %d: stopping", (int)sig);
	sd_notify(0, "STOPPING=1");
	d->stopping = true;
	event_base_loopexit(d->base, NULL);
}

static void
main_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_daemon *d = arg;

	(void)fd;
	(void)what;
	sd_notify(0, "WATCHDOG=1");
	mk_daemon_notify_status(d);
}

/* One daemon per state directory: a lock held for the process's life. */
static int
main_lock(const char *state_dir, struct mk_err *err)
{
	char path[4096], pid[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/mailkeepd.lock", state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int saved = errno;

		n = (int)read(fd, pid, sizeof(pid) - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (saved == EWOULDBLOCK)
			return mk_err_set(err,
			    "another mailkeepd (pid %s) uses %s",
			    pid[0] != '\0' ? pid : "?", state_dir);
		errno = saved;
		return mk_err_sys(err, "flock(%s)", path);
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		close(fd);
		return mk_err_sys(err, "write(%s)", path);
	}
	return fd;
}

/* Make the directory that holds a socket. */
static int
main_socket_dir(const char *sock, struct mk_err *err)
{
	char dir[4096];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", sock);
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		return 0;
	*slash = '\0';
	return mk_fs_mkdir_p(dir, 0755, err);
}

static int
main_run(struct mk_daemon *d, bool foreground)
{
	struct event *sigs[4] = { NULL }, *watchdog = NULL;
	static const int signums[4] = { SIGTERM, SIGINT, SIGHUP, 0 };
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = d->conf;
	uint64_t wd_usec = 0;
	struct mk_err err;
	int lockfd = -1, rc = 1, i;

	if (mk_fs_mkdir_p(conf->state_dir, 0700, &err) < 0 ||
	    (lockfd = main_lock(conf->state_dir, &err)) < 0 ||
	    main_socket_dir(conf->status_socket, &err) < 0 ||
	    main_socket_dir(conf->control_socket, &err) < 0 ||
	    main_socket_dir(conf->policy_socket, &err) < 0 ||
	    mk_store_new(
		conf->store_root, conf->store_template, &d->store, &err) < 0 ||
	    (d->rootfd = mk_store_open_root(d->store, &err)) < 0 ||
	    mk_catalog_open(conf->catalog, &cat, &err) < 0) {
		mk_log_error("main", "%s", err.msg);
		goto out;
	}
	if (!foreground && getenv("NOTIFY_SOCKET") == NULL &&
	    daemon(0, 0) < 0) {
		mk_log_error("main", "daemon: %s", strerror(errno));
		goto out;
	}
	/* Keys and mail stay out of core dumps and ptrace. */
	(void)prctl(PR_SET_DUMPABLE, 0);
	signal(SIGPIPE, SIG_IGN);
	if ((d->base = event_base_new()) == NULL) {
		mk_log_error("main", "event_base_new failed");
		goto out;
	}
	d->started_ns = mk_daemon_now_ns();
	d->live = mk_live_new(d);
	if (mk_live_load(d->live, cat, &err) < 0)
		mk_log_warn(
		    "main", "%s: starting without recorded usage", err.msg);
	if (mk_watch_start(d, &d->watch, &err) < 0 ||
	    mk_pool_new(d->base, conf->workers, mk_worker_new, mk_worker_free,
		conf->catalog, &d->pool, &err) < 0 ||
	    mk_enforce_new(d, cat, &d->enforce, &err) < 0 ||
	    mk_jobs_start(d, &d->jobs, &err) < 0 ||
	    mk_httpd_start(d, &d->httpd, &err) < 0 ||
	    mk_postfix_start(d, &d->postfix, &err) < 0) {
		mk_log_error("main", "%s", err.msg);
		goto out;
	}
	for (i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(d->base, signums[i], main_signal_cb, d);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) < 0) {
			mk_log_error(
			    "main", "cannot handle signal %d", signums[i]);
			goto out;
		}
	}
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
		struct timeval tv = { (time_t)(wd_usec / 2000000),
			(suseconds_t)(wd_usec / 2 % 1000000) };

		watchdog =
		    event_new(d->base, -1, EV_PERSIST, main_watchdog_cb, d);
		if (watchdog == NULL || evtimer_add(watchdog, &tv) < 0) {
			mk_log_error("main", "cannot start the watchdog timer");
			goto out;
		}
	}
	mk_live_refresh_store(d->live);
	mk_log_info("main",
	    "mailkeepd %s: store %s, %zu mailboxes known, status on %s, "
	    "control on %s",
	    MK_VERSION, conf->store_root, mk_live_count(d->live),
	    conf->status_socket, conf->control_socket);
	sd_notify(0, "READY=1");
	mk_daemon_notify_status(d);
	if (event_base_dispatch(d->base) < 0)
		mk_log_error("main", "event loop failed");
	rc = 0;
out:
	d->stopping = true;
	mk_postfix_stop(&d->postfix);
	mk_httpd_stop(&d->httpd);
	/* Running jobs stop at their next read; a backup run left open is
	 * published by the next one. */
	mk_jobs_cancel_all(d->jobs);
	mk_pool_free(&d->pool);
	mk_jobs_free(&d->jobs);
	mk_enforce_free(&d->enforce);
	if (d->live != NULL && cat != NULL)
		mk_live_persist_sync(d->live, cat);
	mk_watch_stop(&d->watch);
	mk_live_free(&d->live);
	for (i = 0; i < 4; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (watchdog != NULL)
		event_free(watchdog);
	if (d->base != NULL)
		event_base_free(d->base);
	mk_catalog_close(&cat);
	mk_store_free(&d->store);
	if (d->rootfd >= 0)
		close(d->rootfd);
	if (lockfd >= 0)
		close(lockfd);
	return rc;
}

static void
usage(FILE *fp)
{
	fprintf(fp,
	    "usage: mailkeepd [-c FILE] [-f] [-n] [--store DIR] [--state "
	    "DIR]\n");
}

static void
main_dovecot_report_cb(void *arg, bool warning, const char *msg)
{
	(void)arg;
	printf("dovecot: %s: %s\n", warning ? "warning" : "ok", msg);
}

/*
 * mailkeepd -n: what Dovecot's configuration says of the settings
 * mailkeep relies on ([quota] doveconf, or doveconf -n when doveconf is
 * on PATH).  Findings only: they do not make the check fail.
 */
static void
main_check_dovecot(const struct mk_conf *conf)
{
	const char *command = conf->doveconf;
	struct mk_doveconf dc;
	struct mk_err err;
	size_t warnings;

	if (command == NULL) {
		if (system("command -v doveconf >/dev/null 2>&1") != 0) {
			printf("dovecot: doveconf not found and [quota] "
			       "doveconf not set: Dovecot's settings not "
			       "checked\n");
			return;
		}
		command = "doveconf -n";
	}
	if (mk_doveconf_read(command, &dc, &err) < 0) {
		printf("dovecot: warning: settings not checked: %s\n", err.msg);
		return;
	}
	warnings = mk_doveconf_check(&dc, conf, main_dovecot_report_cb, NULL);
	printf("dovecot: %zu warning%s (%s)\n", warnings,
	    warnings == 1 ? "" : "s", command);
	mk_doveconf_clear(&dc);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "store", required_argument, NULL, 'S' },
		{ "state", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct mk_daemon d;
	struct mk_err err;
	bool check = false, foreground = false;
	int ch, rc;

	mk_log_init("mailkeepd", MK_LOG_INFO);
	memset(&d, 0, sizeof(d));
	d.rootfd = -1;
	while ((ch = getopt_long(argc, argv, "c:fnh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			main_args.config = optarg;
			break;
		case 'n':
			check = true;
			break;
		case 'f':
			foreground = true;
			break;
		case 'S':
			main_args.store = optarg;
			break;
		case 'T':
			main_args.state = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (mk_conf_setup(&main_args, &d.conf, &err) < 0) {
		mk_log_error("conf", "%s", err.msg);
		return 1;
	}
	if (check) {
		if (mk_enforce_check_conf(d.conf, &err) < 0 ||
		    mk_jobs_check_conf(d.conf, &err) < 0) {
			mk_log_error("conf", "%s", err.msg);
			mk_conf_free(&d.conf);
			return 1;
		}
		printf("configuration OK\n");
		main_check_dovecot(d.conf);
		mk_conf_free(&d.conf);
		return 0;
	}
	mk_log_init("mailkeepd", (enum mk_log_level)d.conf->log_level);
	if (getenv("JOURNAL_STREAM") != NULL)
		mk_log_set_target(MK_LOG_JOURNAL);
	else if (!foreground && getenv("NOTIFY_SOCKET") == NULL)
		mk_log_set_target(MK_LOG_SYSLOG);
	rc = main_run(&d, foreground);
	mk_conf_free(&d.reloaded);
	while (d.nretired > 0)
		mk_conf_free(&d.retired[--d.nretired]);
	free(d.retired);
	mk_conf_free(&d.conf);
	return rc;
}
