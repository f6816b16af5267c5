#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/hmap.h"
#include "mailkeep/limits.h"
#include "mailkeep/log.h"
#include "mailkeep/maildirsize.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

#include "enforce.h"
#include "httpd.h"
#include "live.h"
#include "pool.h"
#include "worker.h"

extern char **environ;

/* How long a mailbox must be quiet before its maildirsize is checked. */
#define ENFORCE_QUIET_NS 2000000000LL
#define ENFORCE_HOOK_TIMEOUT 30
#define ENFORCE_COUNTS_NS 10000000000LL

static const char enforce_default_template[] =
    "Subject: Your mailbox is %{percent}% full\n"
    "\n"
    "Your mailbox %{address} holds %{usage} of %{limit} bytes\n"
    "(%{percent}%). It passed %{threshold}% of its quota.\n"
    "\n"
    "When it is full, new mail to you is refused. Please delete mail you\n"
    "no longer need, and empty the Trash folder.\n";

/* How often the domain pool sums are rebuilt from scratch, as an audit. */
#define ENFORCE_POOLS_AUDIT_NS 10000000000LL

/*
 * A domain pool's usage, kept as a running sum: each mailbox's counted
 * usage is remembered (struct enforce_share) and its change applied to
 * the sum of its domain when live reports it.  The sums are rebuilt
 * from every mailbox when the limits change, when the number of
 * mailboxes changes (live drops a mailbox that left the store without
 * telling), and every ENFORCE_POOLS_AUDIT_NS.
 */
struct enforce_pool {
	char *domain; /* "@example.org" */
	uint64_t bytes, messages;
};

struct enforce_share {
	char *address;
	struct enforce_pool *pool;
	uint64_t bytes, messages;
};

/*
 * The userdb import file and the alias map are reloaded when they change
 * on disk: each tick compares their stat() with what was loaded, and a
 * change that has held still for a tick (a writer may not be done yet)
 * reloads everything as SIGHUP does.  A reload that fails keeps what was
 * loaded and says why; the file is tried again when it changes again.
 */
enum { ENFORCE_FILE_IMPORT, ENFORCE_FILE_ALIASES, ENFORCE_FILES };

struct enforce_sig {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns, ctime_ns;
};

/* What enforce remembers of a limited mailbox. */
struct enforce_mb {
	char *address;
	struct mk_warn_state warn;
	int64_t changed_ns;
	bool pending; /* in the pending list */
	bool warn_due; /* thresholds to check at the next tick */
	bool mds_due; /* maildirsize to check after quiet */
	bool check_running;
	bool warn_unsaved;
};

struct mk_enforce {
	struct mk_daemon *d;
	struct mk_limits *limits;
	struct mk_aliases *aliases;
	struct mk_policy_config pconf;
	char *ptext;
	char *pdelims;
	struct mk_warn_config wconf;
	char *tmpl;
	size_t tmpl_len;
	char *warn_from;
	char *warn_hook;
	bool maildirsize;
	struct mk_quota_resv *resv;
	struct mk_hmap *mbs; /* address -> struct enforce_mb */
	char **pending; /* addresses with a check due */
	size_t npending, pcap;
	struct event *tick;
	bool saving;
	/* Mailboxes over each threshold: a walk of every mailbox, so
	 * computed at most every ENFORCE_COUNTS_NS. */
	size_t over[MK_WARN_THRESHOLDS_MAX];
	int64_t over_at;
	/* Domain pools: "@domain" -> enforce_pool, address -> share. */
	struct mk_hmap *pools, *shares;
	bool pools_valid;
	int64_t pools_at;
	size_t pools_mailboxes; /* live's count when they were built */
	struct enforce_sig loaded[ENFORCE_FILES], seen[ENFORCE_FILES];
	bool reloading[ENFORCE_FILES]; /* a file's reload is on a worker */
	uint64_t gen; /* configurations applied */
	/* The daily digest: to whom, how, when next (0: none). */
	char *digest_to;
	char *digest_sendmail;
	size_t digest_top;
	int digest_secs; /* of the day, local time */
	int64_t digest_due;
};

static const struct timeval enforce_tick_tv = { 1, 0 };

static bool
enforce_match(const void *value, const void *ctx)
{
	return strcmp(((const struct enforce_mb *)value)->address, ctx) == 0;
}

static uint64_t
enforce_key(const char *s)
{
	return mk_hmap_hash(s, strlen(s));
}

static struct enforce_mb *
enforce_mb_get(const struct mk_enforce *e, const char *address)
{
	return mk_hmap_get(
	    e->mbs, enforce_key(address), enforce_match, address);
}

static struct enforce_mb *
enforce_mb_make(struct mk_enforce *e, const char *address)
{
	struct enforce_mb *em = enforce_mb_get(e, address);

	if (em == NULL) {
		em = mk_xcalloc(1, sizeof(*em));
		em->address = mk_xstrdup(address);
		mk_hmap_put(e->mbs, enforce_key(address), em);
	}
	return em;
}

static bool
enforce_pool_match(const void *value, const void *ctx)
{
	return strcmp(((const struct enforce_pool *)value)->domain, ctx) == 0;
}

static bool
enforce_share_match(const void *value, const void *ctx)
{
	return strcmp(((const struct enforce_share *)value)->address, ctx) == 0;
}

static void
enforce_pools_clear(struct mk_enforce *e)
{
	struct enforce_pool *p;
	struct enforce_share *sh;
	size_t pos = 0;

	while ((sh = mk_hmap_next(e->shares, &pos)) != NULL) {
		free(sh->address);
		free(sh);
	}
	pos = 0;
	while ((p = mk_hmap_next(e->pools, &pos)) != NULL) {
		free(p->domain);
		free(p);
	}
	mk_hmap_free(&e->shares);
	mk_hmap_free(&e->pools);
	e->shares = mk_hmap_new();
	e->pools = mk_hmap_new();
	e->pools_valid = false;
}

static int64_t
enforce_now_s(void)
{
	return (int64_t)time(NULL);
}

/* The usage that counts: the basis, without ignored folders. */
static void
enforce_count(const struct mk_enforce *e, const struct mk_live_mailbox *mb,
    enum mk_quota_basis basis, uint64_t *bytes_r, uint64_t *messages_r)
{
	const struct mk_quota_rules *rules = mk_limits_rules(e->limits);
	size_t i;

	*bytes_r = *messages_r = 0;
	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_live_folder *f = mb->folders[i];

		if (mk_quota_rules_ignored(rules, f->name))
			continue;
		*bytes_r += basis == MK_QUOTA_BASIS_VIRTUAL ? f->usage.vbytes
							    : f->usage.bytes;
		*messages_r += f->usage.messages;
	}
}

/* Set mb's share of its domain's pool to its counted usage now. */
static void
enforce_share_update(struct mk_enforce *e, const struct mk_live_mailbox *mb)
{
	const char *at = strrchr(mb->address, '@');
	struct mk_quota_limits l;
	struct enforce_share *sh;
	struct enforce_pool *p;
	uint64_t b, m;

	if (at == NULL || mk_limits_pool(e->limits, mb->address, &l) != 1)
		return;
	sh = mk_hmap_get(e->shares, enforce_key(mb->address),
	    enforce_share_match, mb->address);
	if (sh == NULL) {
		p = mk_hmap_get(
		    e->pools, enforce_key(at), enforce_pool_match, at);
		if (p == NULL) {
			p = mk_xcalloc(1, sizeof(*p));
			p->domain = mk_xstrdup(at);
			mk_hmap_put(e->pools, enforce_key(at), p);
		}
		sh = mk_xcalloc(1, sizeof(*sh));
		sh->address = mk_xstrdup(mb->address);
		sh->pool = p;
		mk_hmap_put(e->shares, enforce_key(mb->address), sh);
	}
	enforce_count(e, mb, mk_limits_basis(e->limits), &b, &m);
	sh->pool->bytes = sh->pool->bytes - sh->bytes + b;
	sh->pool->messages = sh->pool->messages - sh->messages + m;
	sh->bytes = b;
	sh->messages = m;
}

/* The pool sums from every mailbox. */
static void
enforce_pools_build(struct mk_enforce *e)
{
	const struct mk_live_mailbox **all;
	size_t n, i;

	enforce_pools_clear(e);
	all = mk_live_all(e->d->live, &n);
	for (i = 0; i < n && mk_limits_has_pools(e->limits); i++)
		enforce_share_update(e, all[i]);
	free(all);
	e->pools_valid = true;
	e->pools_at = mk_daemon_now_ns();
	e->pools_mailboxes = n;
}

static bool
enforce_limited(const struct mk_quota_limits *l)
{
	return l->bytes != 0 || l->messages != 0;
}

/* The usage and limit of the resource nearest to its limit. */
static void
enforce_fullest(const struct mk_quota_limits *l, uint64_t bytes,
    uint64_t messages, uint64_t *usage_r, uint64_t *limit_r)
{
	unsigned pb = mk_warn_percent(bytes, l->bytes);
	unsigned pm = mk_warn_percent(messages, l->messages);

	if (l->messages != 0 && (l->bytes == 0 || pm > pb)) {
		*usage_r = messages;
		*limit_r = l->messages;
	} else {
		*usage_r = bytes;
		*limit_r = l->bytes;
	}
}

/* Warning mails, written in the pool */

struct enforce_warn_job {
	struct mk_job job;
	struct mk_enforce *e;
	char *address;
	char *relpath;
	int rootfd;
	char *msg;
	size_t len;
	char *hook;
	unsigned threshold;
	uint64_t usage, limit;
	bool append;
	int rc;
	struct mk_err err;
};

/* Write the message into new/ the Maildir way: tmp/, fsync, rename. */
static int
enforce_deliver(int mdfd, const char *msg, size_t len, struct mk_err *err)
{
	char name[256], tmpname[300];
	struct timespec ts;
	char host[128];
	int tmpfd = -1, newfd = -1, fd = -1, rc = -1;
	struct stat st;
	size_t done = 0;
	uint64_t lf = 0;
	size_t i;

	for (i = 0; i < len; i++)
		lf += msg[i] == '\n';
	clock_gettime(CLOCK_REALTIME, &ts);
	if (gethostname(host, sizeof(host)) < 0)
		mk_strlcpy(host, "localhost", sizeof(host));
	host[strcspn(host, "/:,")] = '\0';
	snprintf(name, sizeof(name), "%lld.M%ldP%ldQmailkeep.%s,S=%zu,W=%llu",
	    (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), host, len,
	    (unsigned long long)(len + lf));
	snprintf(tmpname, sizeof(tmpname), "%s", name);
	if (fstat(mdfd, &st) < 0)
		return mk_err_sys(err, "fstat(Maildir)");
	if ((tmpfd = mk_fs_openat_dir(mdfd, "tmp")) < 0 ||
	    (newfd = mk_fs_openat_dir(mdfd, "new")) < 0) {
		mk_err_sys(err, "open(tmp/ or new/)");
		goto out;
	}
	fd = openat(tmpfd, tmpname,
	    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		mk_err_sys(err, "open(tmp/%s)", tmpname);
		goto out;
	}
	while (done < len) {
		ssize_t n = write(fd, msg + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			mk_err_sys(err, "write(tmp/%s)", tmpname);
			goto fail;
		}
		done += (size_t)n;
	}
	if ((fchown(fd, st.st_uid, st.st_gid) < 0 && errno != EPERM) ||
	    fsync(fd) < 0) {
		mk_err_sys(err, "fchown/fsync(tmp/%s)", tmpname);
		goto fail;
	}
	if (renameat(tmpfd, tmpname, newfd, name) < 0) {
		mk_err_sys(err, "rename(tmp/%s, new/)", tmpname);
		goto fail;
	}
	if (fsync(newfd) < 0) {
		mk_err_sys(err, "fsync(new/)");
		goto out;
	}
	rc = 0;
	goto out;
fail:
	unlinkat(tmpfd, tmpname, 0);
out:
	if (fd >= 0)
		close(fd);
	if (tmpfd >= 0)
		close(tmpfd);
	if (newfd >= 0)
		close(newfd);
	return rc;
}

/* Run the hook with the mailbox, threshold, usage and limit; bounded. */
static void
enforce_run_hook(struct enforce_warn_job *j)
{
	char thr[16], usage[32], limit[32];
	char *argv[] = { j->hook, j->address, thr, usage, limit, NULL };
	int status, i;
	pid_t pid;

	snprintf(thr, sizeof(thr), "%u", j->threshold);
	snprintf(usage, sizeof(usage), "%llu", (unsigned long long)j->usage);
	snprintf(limit, sizeof(limit), "%llu", (unsigned long long)j->limit);
	if ((errno = posix_spawn(&pid, j->hook, NULL, NULL, argv, environ)) !=
	    0) {
		mk_log_error(
		    "enforce", "warn_hook %s: %s", j->hook, strerror(errno));
		return;
	}
	for (i = 0; i < ENFORCE_HOOK_TIMEOUT * 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
				mk_log_warn("enforce",
				    "warn_hook %s for %s "
				    "failed (status %d)",
				    j->hook, j->address, status);
			return;
		}
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	mk_log_warn("enforce", "warn_hook %s for %s killed after %d s", j->hook,
	    j->address, ENFORCE_HOOK_TIMEOUT);
}

/*
 * Write msg into the INBOX of the Maildir at relpath (beneath rootfd),
 * with a maildirsize delta of its own when append.  Pool thread.
 */
static int
enforce_write_inbox(int rootfd, const char *relpath, const char *address,
    const char *msg, size_t len, bool append, struct mk_err *err)
{
	struct mk_err derr;
	int fd, rc;

	if ((fd = mk_fs_open_dir_beneath(rootfd, relpath, err)) < 0)
		return -1;
	rc = enforce_deliver(fd, msg, len, err);
	/* We wrote it: our own delta, as Maildir++ asks. */
	if (rc == 0 && append &&
	    mk_maildirsize_append(fd, (int64_t)len, 1, &derr) < 0)
		mk_log_warn("enforce", "%s: %s", address, derr.msg);
	close(fd);
	return rc;
}

static void
enforce_warn_run(struct mk_job *job, void *ctx)
{
	struct enforce_warn_job *j = (struct enforce_warn_job *)job;

	(void)ctx;
	j->rc = enforce_write_inbox(j->rootfd, j->relpath, j->address, j->msg,
	    j->len, j->append, &j->err);
	if (j->hook != NULL)
		enforce_run_hook(j);
}

static void
enforce_warn_done(struct mk_job *job)
{
	struct enforce_warn_job *j = (struct enforce_warn_job *)job;

	if (j->rc < 0)
		mk_log_error(
		    "enforce", "%s: warning mail: %s", j->address, j->err.msg);
	else
		mk_log_info(
		    "enforce", "%s: warned at %u%%", j->address, j->threshold);
	free(j->address);
	free(j->relpath);
	free(j->msg);
	free(j->hook);
	free(j);
}

static void
enforce_warn(struct mk_enforce *e, const struct mk_live_mailbox *mb,
    unsigned threshold, uint64_t usage, uint64_t limit, bool append)
{
	struct enforce_warn_job *j;
	struct mk_warn_message m;
	char host[128], unique[64], from[256];
	struct timespec ts;
	struct mk_err err;
	char *msg;
	size_t len;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (gethostname(host, sizeof(host)) < 0)
		mk_strlcpy(host, "localhost", sizeof(host));
	snprintf(unique, sizeof(unique), "%lld.%ld.%u", (long long)ts.tv_sec,
	    ts.tv_nsec, threshold);
	snprintf(from, sizeof(from), "%s",
	    e->warn_from != NULL ? e->warn_from : "Mail system <postmaster>");
	memset(&m, 0, sizeof(m));
	m.from = from;
	m.to = mb->address;
	m.hostname = host;
	m.unique = unique;
	m.date = ts.tv_sec;
	m.usage = usage;
	m.limit = limit;
	m.threshold = threshold;
	if (mk_warn_render(e->tmpl != NULL ? e->tmpl : enforce_default_template,
		e->tmpl != NULL ? e->tmpl_len
				: strlen(enforce_default_template),
		&m, &msg, &len, &err) < 0) {
		mk_log_error("enforce", "%s: warning template: %s", mb->address,
		    err.msg);
		return;
	}
	j = mk_xcalloc(1, sizeof(*j));
	j->job.run = enforce_warn_run;
	j->job.done = enforce_warn_done;
	j->e = e;
	j->address = mk_xstrdup(mb->address);
	j->relpath = mk_xstrdup(mb->relpath);
	j->rootfd = e->d->rootfd;
	j->msg = msg;
	j->len = len;
	j->hook = e->warn_hook != NULL ? mk_xstrdup(e->warn_hook) : NULL;
	j->threshold = threshold;
	j->usage = usage;
	j->limit = limit;
	j->append = append;
	mk_pool_submit(e->d->pool, &j->job);
}

/* The daily digest, sent from the pool */

#define ENFORCE_SENDMAIL_TIMEOUT 60

struct enforce_digest_job {
	struct mk_job job;
	char *to;
	char *relpath; /* the administrator's Maildir, or NULL */
	int rootfd;
	char *sendmail; /* else this command */
	char *msg;
	size_t len;
	bool append;
	int rc;
	struct mk_err err;
};

/*
 * Hand msg to the sendmail command: "/bin/sh -c 'COMMAND "$1"' sh TO",
 * the message on its standard input; it must exit 0 within
 * ENFORCE_SENDMAIL_TIMEOUT seconds.
 */
static int
enforce_sendmail(const char *command, const char *to, const char *msg,
    size_t len, struct mk_err *err)
{
	posix_spawn_file_actions_t fa;
	char *script = mk_xasprintf("%s \"$1\"", command);
	char *argv[] = { "/bin/sh", "-c", script, "sh", (char *)to, NULL };
	int fds[2] = { -1, -1 }, status, rc = -1, i;
	size_t done = 0;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		mk_err_sys(err, "pipe");
		free(script);
		return -1;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
	errno = posix_spawn(&pid, "/bin/sh", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	free(script);
	close(fds[0]);
	if (errno != 0) {
		mk_err_sys(err, "digest_sendmail: spawn");
		close(fds[1]);
		return -1;
	}
	while (done < len) {
		ssize_t n = write(fds[1], msg + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break; /* the exit status tells */
		done += (size_t)n;
	}
	close(fds[1]);
	for (i = 0; i < ENFORCE_SENDMAIL_TIMEOUT * 10; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid) {
			if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
			    done == len)
				rc = 0;
			else
				mk_err_set(err,
				    "digest_sendmail '%s' failed "
				    "(status %d)",
				    command, status);
			return rc;
		}
		usleep(100000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return mk_err_set(err, "digest_sendmail '%s' killed after %d s",
	    command, ENFORCE_SENDMAIL_TIMEOUT);
}

static void
enforce_digest_run(struct mk_job *job, void *ctx)
{
	struct enforce_digest_job *j = (struct enforce_digest_job *)job;

	(void)ctx;
	if (j->relpath == NULL)
		j->rc = enforce_sendmail(
		    j->sendmail, j->to, j->msg, j->len, &j->err);
	else
		j->rc = enforce_write_inbox(j->rootfd, j->relpath, j->to,
		    j->msg, j->len, j->append, &j->err);
}

static void
enforce_digest_done(struct mk_job *job)
{
	struct enforce_digest_job *j = (struct enforce_digest_job *)job;

	if (j->rc < 0)
		mk_log_error("enforce", "digest to %s: %s", j->to, j->err.msg);
	else
		mk_log_info("enforce", "digest sent to %s (%s)", j->to,
		    j->relpath != NULL ? "into its Maildir" : "by sendmail");
	free(j->to);
	free(j->relpath);
	free(j->sendmail);
	free(j->msg);
	free(j);
}

/* The next digest time after now (local time), in seconds. */
static int64_t
enforce_digest_next(int secs, int64_t now)
{
	time_t t = (time_t)now, due;
	struct tm tm;
	int day;

	localtime_r(&t, &tm);
	for (day = 0; day < 3; day++) {
		struct tm d = tm;

		d.tm_mday += day;
		d.tm_hour = secs / 3600;
		d.tm_min = secs / 60 % 60;
		d.tm_sec = secs % 60;
		d.tm_isdst = -1;
		if ((due = mktime(&d)) != (time_t)-1 && due > t)
			return (int64_t)due;
	}
	return now + 86400;
}

/* "HH:MM" or "HH:MM:SS" as seconds of the day. */
static int
enforce_digest_time(const char *s, int *secs_r, struct mk_err *err)
{
	unsigned v[3] = { 0, 0, 0 };
	size_t n = 0, digits = 0;
	const char *p;

	for (p = s;; p++) {
		if (*p >= '0' && *p <= '9' && digits < 2) {
			v[n] = v[n] * 10 + (unsigned)(*p - '0');
			digits++;
			continue;
		}
		if (digits != 2 || (*p != '\0' && (*p != ':' || ++n > 2)))
			return mk_err_set(err,
			    "digest_time: '%s': use HH:MM or HH:MM:SS "
			    "(local time)",
			    s);
		if (*p == '\0')
			break;
		digits = 0;
	}
	if (n < 1 || v[0] > 23 || v[1] > 59 || v[2] > 59)
		return mk_err_set(err,
		    "digest_time: '%s': use HH:MM or HH:MM:SS (local time)", s);
	*secs_r = (int)(v[0] * 3600 + v[1] * 60 + v[2]);
	return 0;
}

/* Write the digest of the fullest mailboxes and send it (pool). */
static void
enforce_digest(struct mk_enforce *e)
{
	const struct mk_live_mailbox **all, *admin;
	struct mk_warn_digest_entry *entries;
	struct enforce_digest_job *j;
	struct mk_warn_message m;
	char host[128], unique[64], from[256], *to, *msg;
	struct mk_quota_limits l;
	struct timespec ts;
	struct mk_err err;
	size_t n, i, k = 0, len;

	all = mk_live_all(e->d->live, &n);
	entries = mk_xcalloc(n + 1, sizeof(*entries));
	for (i = 0; i < n; i++) {
		struct mk_enforce_view v;
		uint64_t usage, limit;

		mk_enforce_view(e, all[i], &v);
		if (!enforce_limited(&v.limits))
			continue;
		enforce_fullest(&v.limits, v.bytes, v.messages, &usage, &limit);
		entries[k].address = all[i]->address;
		entries[k].usage = usage;
		entries[k].limit = limit;
		entries[k++].percent = v.percent;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	if (gethostname(host, sizeof(host)) < 0)
		mk_strlcpy(host, "localhost", sizeof(host));
	snprintf(unique, sizeof(unique), "%lld.%ld.digest",
	    (long long)ts.tv_sec, ts.tv_nsec);
	snprintf(from, sizeof(from), "%s",
	    e->warn_from != NULL ? e->warn_from : "Mail system <postmaster>");
	memset(&m, 0, sizeof(m));
	m.from = from;
	m.to = e->digest_to;
	m.hostname = host;
	m.unique = unique;
	m.date = ts.tv_sec;
	if (mk_warn_digest_render(
		entries, k, e->digest_top, &m, &msg, &len, &err) < 0) {
		mk_log_error("enforce", "digest: %s", err.msg);
		goto out;
	}
	to = mk_xstrdup(e->digest_to);
	mk_str_lower(to);
	admin = mk_live_find(e->d->live, to);
	if (admin == NULL && e->digest_sendmail == NULL) {
		mk_log_error("enforce",
		    "digest: %s is not a mailbox here and "
		    "digest_sendmail is not set",
		    to);
		free(to);
		free(msg);
		goto out;
	}
	j = mk_xcalloc(1, sizeof(*j));
	j->job.run = enforce_digest_run;
	j->job.done = enforce_digest_done;
	j->to = to;
	j->rootfd = e->d->rootfd;
	j->msg = msg;
	j->len = len;
	if (admin != NULL) {
		j->relpath = mk_xstrdup(admin->relpath);
		mk_limits_lookup(e->limits, admin->address, &l);
		j->append = e->maildirsize && l.bytes != 0;
	} else
		j->sendmail = mk_xstrdup(e->digest_sendmail);
	mk_pool_submit(e->d->pool, &j->job);
out:
	free(entries);
	free(all);
}

/* maildirsize, checked in the pool */

struct enforce_mds_job {
	struct mk_job job;
	struct mk_enforce *e;
	char *address;
	char *relpath;
	int rootfd;
	uint64_t bytes_limit, count_limit;
	uint64_t bytes, messages;
	enum mk_maildirsize_rebuild why;
	bool differs;
	int rc;
	struct mk_err err;
};

static void
enforce_mds_run(struct mk_job *job, void *ctx)
{
	struct enforce_mds_job *j = (struct enforce_mds_job *)job;
	char buf[MK_MAILDIRSIZE_FORMAT_MAX];
	struct mk_maildirsize ms;
	bool corrupt = false;
	int fd, r;
	size_t len;

	(void)ctx;
	j->rc = -1;
	if ((fd = mk_fs_open_dir_beneath(j->rootfd, j->relpath, &j->err)) < 0)
		return;
	r = mk_maildirsize_read(fd, &ms, &corrupt, &j->err);
	if (r < 0)
		goto out;
	j->why = mk_maildirsize_rebuild_due(r == 1 ? &ms : NULL, corrupt,
	    j->bytes_limit, j->count_limit, enforce_now_s());
	j->differs = r == 1 && !corrupt && !ms.partial &&
	    (ms.bytes != (int64_t)j->bytes || ms.count != (int64_t)j->messages);
	if (j->why != MK_MAILDIRSIZE_KEEP || j->differs) {
		len = mk_maildirsize_format(j->bytes_limit, j->count_limit,
		    j->bytes, j->messages, buf, sizeof(buf));
		if (mk_maildirsize_write(fd, buf, len, &j->err) < 0)
			goto out;
	}
	j->rc = 0;
out:
	close(fd);
}

static void
enforce_mds_done(struct mk_job *job)
{
	struct enforce_mds_job *j = (struct enforce_mds_job *)job;
	struct enforce_mb *em = enforce_mb_get(j->e, j->address);

	if (em != NULL)
		em->check_running = false;
	if (j->rc < 0)
		mk_log_error(
		    "enforce", "%s: maildirsize: %s", j->address, j->err.msg);
	else if (j->why != MK_MAILDIRSIZE_KEEP || j->differs)
		mk_log_info("enforce", "%s: maildirsize rewritten (%s)",
		    j->address,
		    j->differs && j->why == MK_MAILDIRSIZE_KEEP
			? "sum differs from the live usage"
			: mk_maildirsize_rebuild_name(j->why));
	free(j->address);
	free(j->relpath);
	free(j);
}

static void
enforce_mds_submit(struct mk_enforce *e, const struct mk_live_mailbox *mb,
    struct enforce_mb *em, const struct mk_quota_limits *l)
{
	struct enforce_mds_job *j = mk_xcalloc(1, sizeof(*j));

	j->job.run = enforce_mds_run;
	j->job.done = enforce_mds_done;
	j->e = e;
	j->address = mk_xstrdup(mb->address);
	j->relpath = mk_xstrdup(mb->relpath);
	j->rootfd = e->d->rootfd;
	j->bytes_limit = l->bytes;
	j->count_limit = l->messages;
	/* maildirsize counts file sizes, as Dovecot's maildir backend. */
	enforce_count(e, mb, MK_QUOTA_BASIS_PHYSICAL, &j->bytes, &j->messages);
	em->check_running = true;
	mk_pool_submit(e->d->pool, &j->job);
}

static void
enforce_pending_add(struct mk_enforce *e, struct enforce_mb *em)
{
	if (em->pending)
		return;
	em->pending = true;
	mk_xgrow(&e->pending, &e->pcap, e->npending + 1, sizeof(*e->pending));
	e->pending[e->npending++] = mk_xstrdup(em->address);
}

/* Warning states, saved in the pool */

struct enforce_save_job {
	struct mk_job job;
	struct mk_enforce *e;
	char **addresses;
	char **states;
	size_t n;
	int rc;
	struct mk_err err;
};

static void
enforce_save_run(struct mk_job *job, void *ctx)
{
	struct enforce_save_job *j = (struct enforce_save_job *)job;
	struct mk_worker *w = ctx;
	size_t i;

	j->rc = -1;
	if (w->catalog == NULL) {
		mk_err_set(&j->err, "no catalog connection");
		return;
	}
	if (mk_catalog_begin(w->catalog, &j->err) < 0)
		return;
	for (i = 0; i < j->n; i++)
		if (mk_catalog_warn_put(w->catalog, j->addresses[i],
			j->states[i], &j->err) < 0) {
			mk_catalog_rollback(w->catalog);
			return;
		}
	j->rc = mk_catalog_commit(w->catalog, &j->err);
}

static void
enforce_save_done(struct mk_job *job)
{
	struct enforce_save_job *j = (struct enforce_save_job *)job;
	size_t i;

	j->e->saving = false;
	if (j->rc < 0)
		mk_log_error(
		    "enforce", "saving warning states: %s", j->err.msg);
	for (i = 0; i < j->n; i++) {
		free(j->addresses[i]);
		free(j->states[i]);
	}
	free(j->addresses);
	free(j->states);
	free(j);
}

static void
enforce_save(struct mk_enforce *e)
{
	struct enforce_save_job *j;
	struct enforce_mb *em;
	size_t pos = 0, cap = 0, scap = 0;
	char buf[MK_WARN_STATE_MAX];

	if (e->saving)
		return;
	j = mk_xcalloc(1, sizeof(*j));
	while ((em = mk_hmap_next(e->mbs, &pos)) != NULL) {
		if (!em->warn_unsaved)
			continue;
		em->warn_unsaved = false;
		mk_warn_state_format(&em->warn, buf, sizeof(buf));
		mk_xgrow(&j->addresses, &cap, j->n + 1, sizeof(char *));
		mk_xgrow(&j->states, &scap, j->n + 1, sizeof(char *));
		j->addresses[j->n] = mk_xstrdup(em->address);
		j->states[j->n++] = mk_xstrdup(buf);
	}
	if (j->n == 0) {
		free(j);
		return;
	}
	j->job.run = enforce_save_run;
	j->job.done = enforce_save_done;
	j->e = e;
	e->saving = true;
	mk_pool_submit(e->d->pool, &j->job);
}

/* Check the warning thresholds of a limited mailbox. */
static void
enforce_warn_check(struct mk_enforce *e, const struct mk_live_mailbox *mb,
    struct enforce_mb *em, const struct mk_quota_limits *l)
{
	uint64_t bytes, messages, usage, limit;
	unsigned threshold;

	enforce_count(e, mb, mk_limits_basis(e->limits), &bytes, &messages);
	enforce_fullest(l, bytes, messages, &usage, &limit);
	if (mk_warn_update(&e->wconf, &em->warn, usage, limit, enforce_now_s(),
		&threshold))
		enforce_warn(e, mb, threshold, usage, limit,
		    e->maildirsize && l->bytes != 0);
	em->warn_unsaved = true;
}

static const char *
enforce_file_path(const struct mk_conf *conf, int i)
{
	return i == ENFORCE_FILE_IMPORT ? conf->quota_import
					: conf->policy_aliases;
}

static void
enforce_sig_get(const char *path, struct enforce_sig *sig)
{
	struct stat st;

	memset(sig, 0, sizeof(*sig));
	if (path == NULL || stat(path, &st) < 0)
		return;
	sig->exists = true;
	sig->dev = st.st_dev;
	sig->ino = st.st_ino;
	sig->size = st.st_size;
	sig->mtime_ns =
	    (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	sig->ctime_ns =
	    (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

static bool
enforce_sig_equal(const struct enforce_sig *a, const struct enforce_sig *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size && a->mtime_ns == b->mtime_ns &&
	    a->ctime_ns == b->ctime_ns;
}

static void enforce_reload_file(
    struct mk_enforce *e, const struct mk_conf *conf, int i);

/* Reload when the import file or the alias map changed and held still. */
static void
enforce_files_check(struct mk_enforce *e)
{
	const struct mk_conf *conf =
	    e->d->reloaded != NULL ? e->d->reloaded : e->d->conf;
	struct enforce_sig now;
	const char *path;
	int i;

	for (i = 0; i < ENFORCE_FILES; i++) {
		if ((path = enforce_file_path(conf, i)) == NULL ||
		    e->reloading[i])
			continue;
		enforce_sig_get(path, &now);
		if (enforce_sig_equal(&now, &e->loaded[i]))
			continue;
		if (!enforce_sig_equal(&now, &e->seen[i])) {
			e->seen[i] = now;
			continue;
		}
		e->loaded[i] = e->seen[i] = now;
		enforce_reload_file(e, conf, i);
	}
}

/*
 * Once a second: expire reservations; check warnings of mailboxes that
 * changed (not on each event: a rename's two halves would pass through a
 * lower usage and re-arm), and their maildirsize after 2 s of quiet; save
 * warning states.
 */
static void
enforce_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_enforce *e = arg;
	int64_t now = mk_daemon_now_ns();
	size_t i, out = 0;

	(void)fd;
	(void)what;
	mk_quota_resv_expire(e->resv, now / 1000000000);
	if (e->pools_valid &&
	    (mk_live_count(e->d->live) != e->pools_mailboxes ||
		now - e->pools_at > ENFORCE_POOLS_AUDIT_NS))
		e->pools_valid = false;
	for (i = 0; i < e->npending; i++) {
		char *address = e->pending[i];
		struct enforce_mb *em = enforce_mb_get(e, address);
		const struct mk_live_mailbox *mb =
		    mk_live_find(e->d->live, address);
		struct mk_quota_limits l;
		bool keep = false;

		if (em == NULL || mb == NULL) {
			free(address);
			continue;
		}
		mk_limits_lookup(e->limits, mb->address, &l);
		if (em->warn_due && enforce_limited(&l)) {
			if (mb->scanning || mb->stale)
				keep = true;
			else {
				em->warn_due = false;
				enforce_warn_check(e, mb, em, &l);
			}
		}
		if (em->mds_due && e->maildirsize && enforce_limited(&l)) {
			if (em->check_running || mb->scanning ||
			    now - em->changed_ns < ENFORCE_QUIET_NS)
				keep = true;
			else {
				em->mds_due = false;
				enforce_mds_submit(e, mb, em, &l);
			}
		}
		if (keep) {
			e->pending[out++] = address;
			continue;
		}
		em->pending = false;
		em->warn_due = em->mds_due = false;
		free(address);
	}
	e->npending = out;
	enforce_save(e);
	enforce_files_check(e);
	if (e->digest_due != 0 && now / 1000000000 >= e->digest_due) {
		enforce_digest(e);
		e->digest_due =
		    enforce_digest_next(e->digest_secs, now / 1000000000);
	}
}

void
mk_enforce_changed(
    struct mk_enforce *e, struct mk_live_mailbox *mb, bool arrived)
{
	struct mk_quota_limits l;
	struct enforce_mb *em;

	if (arrived)
		mk_quota_resv_release(e->resv, mb->address);
	if (e->pools_valid)
		enforce_share_update(e, mb);
	mk_limits_lookup(e->limits, mb->address, &l);
	if (!enforce_limited(&l))
		return;
	em = enforce_mb_make(e, mb->address);
	em->changed_ns = mk_daemon_now_ns();
	em->warn_due = em->mds_due = true;
	enforce_pending_add(e, em);
}

void
mk_enforce_view(const struct mk_enforce *e, const struct mk_live_mailbox *mb,
    struct mk_enforce_view *v)
{
	const struct enforce_mb *em = enforce_mb_get(e, mb->address);
	uint64_t usage, limit, msgs;

	memset(v, 0, sizeof(*v));
	mk_limits_lookup(e->limits, mb->address, &v->limits);
	v->basis = mk_limits_basis(e->limits);
	enforce_count(
	    e, mb, mk_limits_basis(e->limits), &v->bytes, &v->messages);
	enforce_fullest(&v->limits, v->bytes, v->messages, &usage, &limit);
	v->percent = mk_warn_percent(usage, limit);
	if (em != NULL)
		v->warn = em->warn;
	mk_quota_resv_get(
	    e->resv, mb->address, NULL, NULL, &v->resv_bytes, &msgs, NULL);
}

int
mk_enforce_lookup(void *arg, const char *address,
    struct mk_policy_mailbox *mb_r, struct mk_err *err)
{
	struct mk_enforce *e = arg;
	const struct mk_live_mailbox *mb = mk_live_find(e->d->live, address);
	const struct enforce_pool *p;
	const char *at;

	(void)err;
	if (mb_r == NULL)
		return mb != NULL;
	memset(mb_r, 0, sizeof(*mb_r));
	if (mb == NULL)
		return 0;
	mb_r->usage_known = mb->scanned_ns != 0;
	mk_limits_lookup(e->limits, address, &mb_r->mailbox.limits);
	enforce_count(e, mb, mk_limits_basis(e->limits), &mb_r->mailbox.bytes,
	    &mb_r->mailbox.messages);
	if (mk_limits_pool(e->limits, address, &mb_r->pool.limits) == 1) {
		if (!e->pools_valid)
			enforce_pools_build(e);
		at = strrchr(address, '@');
		mb_r->has_pool = true;
		p = mk_hmap_get(
		    e->pools, enforce_key(at), enforce_pool_match, at);
		if (p != NULL) {
			mb_r->pool.bytes = p->bytes;
			mb_r->pool.messages = p->messages;
		}
	}
	return 1;
}

/* A run-time limit being saved: the row is written on a worker (the
 * catalog may be busy with a backup's commit), applied on the loop. */
struct enforce_limit_job {
	struct mk_job job; /* first */
	struct mk_enforce *e;
	char *target;
	struct mk_quota_limits l;
	mk_enforce_limit_done_cb *done;
	void *arg;
	int rc;
	struct mk_err err;
};

static void
enforce_limit_run(struct mk_job *job, void *ctx)
{
	struct enforce_limit_job *j = (struct enforce_limit_job *)job;
	struct mk_worker *w = ctx;

	if (w->catalog == NULL)
		j->rc = mk_err_set(&j->err, "no catalog connection");
	else
		j->rc =
		    mk_catalog_limit_put(w->catalog, j->target, &j->l, &j->err);
}

/* Limits changed: counts and pools are made again, and every
 * mailbox's maildirsize limit line and thresholds are checked again. */
static void
enforce_limits_changed(struct mk_enforce *e)
{
	const struct mk_live_mailbox **all;
	size_t n, i;

	e->over_at = 0;
	e->pools_valid = false;
	all = mk_live_all(e->d->live, &n);
	for (i = 0; i < n; i++)
		mk_enforce_changed(e, (struct mk_live_mailbox *)all[i], false);
	free(all);
}

static void
enforce_limit_done(struct mk_job *job)
{
	struct enforce_limit_job *j = (struct enforce_limit_job *)job;
	struct mk_enforce *e = j->e;

	if (j->rc == 0 && !e->d->stopping &&
	    (j->rc = mk_limits_set(e->limits, j->target, &j->l, &j->err)) == 0)
		enforce_limits_changed(e);
	if (j->rc < 0)
		mk_log_error("enforce", "setting the limit of %s: %s",
		    j->target, j->err.msg);
	j->done(j->arg, j->rc, &j->err);
	free(j->target);
	free(j);
}

int
mk_enforce_set_limit(struct mk_enforce *e, const char *target,
    const struct mk_quota_limits *l, mk_enforce_limit_done_cb *done, void *arg,
    struct mk_err *err)
{
	struct enforce_limit_job *j;

	if (mk_limits_target_check(target, err) < 0)
		return -1;
	j = mk_xcalloc(1, sizeof(*j));
	j->job.run = enforce_limit_run;
	j->job.done = enforce_limit_done;
	j->e = e;
	j->target = mk_xstrdup(target);
	j->l = *l;
	j->done = done;
	j->arg = arg;
	mk_pool_submit_urgent(e->d->pool, &j->job);
	return 0;
}

int
mk_enforce_get_set(
    const struct mk_enforce *e, const char *target, struct mk_quota_limits *l_r)
{
	return mk_limits_get_set(e->limits, target, l_r);
}

const struct mk_policy_config *
mk_enforce_policy_config(const struct mk_enforce *e)
{
	return &e->pconf;
}

const struct mk_aliases *
mk_enforce_aliases(const struct mk_enforce *e)
{
	return e->aliases;
}

struct mk_quota_resv *
mk_enforce_resv(struct mk_enforce *e)
{
	return e->resv;
}

void
mk_enforce_metrics_resv(const struct mk_enforce *e, struct evbuffer *b)
{
	struct mk_quota_resv_stats st;

	mk_quota_resv_stats(e->resv, &st);
	mk_httpd_metric(b, "mailkeep_policy_reservations", "gauge",
	    "Reservations pending (recipients let through, not delivered yet).",
	    mk_quota_resv_count(e->resv));
	evbuffer_add_printf(b,
	    "# HELP mailkeep_policy_reservations_ended_total Reservations "
	    "ended, by why.\n# TYPE mailkeep_policy_reservations_ended_total "
	    "counter\n"
	    "mailkeep_policy_reservations_ended_total{reason=\"delivered\"} "
	    "%llu\n"
	    "mailkeep_policy_reservations_ended_total{reason=\"expired\"} "
	    "%llu\n"
	    "mailkeep_policy_reservations_ended_total{reason=\"cap\"} %llu\n",
	    (unsigned long long)st.released, (unsigned long long)st.expired,
	    (unsigned long long)st.capped);
}

size_t
mk_enforce_thresholds(struct mk_enforce *e,
    unsigned thresholds_r[MK_WARN_THRESHOLDS_MAX],
    size_t counts_r[MK_WARN_THRESHOLDS_MAX])
{
	const struct mk_live_mailbox **all;
	int64_t now = mk_daemon_now_ns();
	size_t n, i, k;

	if (e->over_at == 0 || now - e->over_at > ENFORCE_COUNTS_NS) {
		memset(e->over, 0, sizeof(e->over));
		all = mk_live_all(e->d->live, &n);
		for (i = 0; i < n; i++) {
			struct mk_enforce_view v;

			mk_enforce_view(e, all[i], &v);
			if (!enforce_limited(&v.limits))
				continue;
			for (k = 0; k < e->wconf.nthresholds; k++)
				if (v.percent >= e->wconf.thresholds[k])
					e->over[k]++;
		}
		free(all);
		e->over_at = now;
	}
	for (k = 0; k < e->wconf.nthresholds; k++) {
		thresholds_r[k] = e->wconf.thresholds[k];
		counts_r[k] = e->over[k];
	}
	return e->wconf.nthresholds;
}

static void
enforce_limit_load_cb(
    const char *target, const struct mk_quota_limits *l, void *arg)
{
	struct mk_err err;

	if (mk_limits_set(arg, target, l, &err) < 0)
		mk_log_warn("enforce", "catalog limit: %s", err.msg);
}

static void
enforce_warn_load_cb(const char *address, const char *state, void *arg)
{
	struct mk_enforce *e = arg;
	struct enforce_mb *em = enforce_mb_make(e, address);
	struct mk_err err;

	if (mk_warn_state_parse(state, &em->warn, &err) < 0)
		mk_log_warn(
		    "enforce", "%s: warning state: %s", address, err.msg);
}

/* Settings built from a configuration, before they are taken. */
struct enforce_settings {
	int digest_secs;
	struct mk_limits *limits;
	struct mk_aliases *aliases;
	struct mk_warn_config wconf;
	char *tmpl;
	size_t tmpl_len;
};

static void
enforce_settings_clear(struct enforce_settings *s)
{
	mk_limits_free(&s->limits);
	mk_aliases_free(&s->aliases);
	free(s->tmpl);
	s->tmpl = NULL;
}

/* Build and check everything conf says about quota. */
static int
enforce_prepare(
    const struct mk_conf *conf, struct enforce_settings *s, struct mk_err *err)
{
	struct mk_warnings warnings;
	int secs = 0;

	memset(s, 0, sizeof(*s));
	if (enforce_digest_time(conf->digest_time, &secs, err) < 0)
		return -1;
	s->digest_secs = secs;
	memset(&warnings, 0, sizeof(warnings));
	mk_warn_config_init(&s->wconf);
	s->wconf.repeat = (int64_t)conf->warn_repeat;
	if (mk_limits_new(conf, &s->limits, &warnings, err) < 0 ||
	    mk_warn_config_set_thresholds(
		&s->wconf, conf->warn_thresholds, err) < 0 ||
	    mk_policy_check_text(conf->policy_text, err) < 0 ||
	    (conf->policy_aliases != NULL &&
		mk_aliases_load(
		    conf->policy_aliases, &s->aliases, &warnings, err) < 0) ||
	    (conf->warn_template != NULL &&
		mk_warn_template_load(
		    conf->warn_template, &s->tmpl, &s->tmpl_len, err) < 0)) {
		enforce_settings_clear(s);
		return -1;
	}
	if (warnings.count > 0)
		mk_log_warn("enforce",
		    "%llu quota or alias lines skipped, "
		    "first: %s",
		    warnings.count, warnings.first);
	return 0;
}

int
mk_enforce_check_conf(const struct mk_conf *conf, struct mk_err *err)
{
	struct enforce_settings s;

	if (enforce_prepare(conf, &s, err) < 0)
		return -1;
	enforce_settings_clear(&s);
	return 0;
}

struct mk_enforce_prepared {
	struct enforce_sig sigs[ENFORCE_FILES];
	struct enforce_settings s;
};

struct mk_enforce_prepared *
mk_enforce_prepare(
    const struct mk_conf *conf, struct mk_catalog *cat, struct mk_err *err)
{
	struct mk_enforce_prepared *p = mk_xcalloc(1, sizeof(*p));
	int i;

	/* Before reading them: a change while they are read is seen. */
	for (i = 0; i < ENFORCE_FILES; i++)
		enforce_sig_get(enforce_file_path(conf, i), &p->sigs[i]);
	if (enforce_prepare(conf, &p->s, err) < 0) {
		free(p);
		return NULL;
	}
	/* Limits set at run time come back from the catalog. */
	if (cat == NULL) {
		mk_err_set(err, "no catalog connection");
		mk_enforce_prepared_free(&p);
	} else if (mk_catalog_limits_load(
		       cat, enforce_limit_load_cb, p->s.limits, err) < 0)
		mk_enforce_prepared_free(&p);
	return p;
}

void
mk_enforce_prepared_free(struct mk_enforce_prepared **preparedp)
{
	struct mk_enforce_prepared *p = *preparedp;

	if (p == NULL)
		return;
	enforce_settings_clear(&p->s);
	free(p);
	*preparedp = NULL;
}

void
mk_enforce_apply(struct mk_enforce *e, const struct mk_conf *conf,
    struct mk_enforce_prepared **preparedp)
{
	struct mk_enforce_prepared *p = *preparedp;
	struct enforce_settings *s = &p->s;
	int i;

	/* A file reload prepared from the configuration before is void. */
	e->gen++;
	mk_limits_free(&e->limits);
	e->limits = s->limits;
	s->limits = NULL;
	mk_aliases_free(&e->aliases);
	e->aliases = s->aliases;
	s->aliases = NULL;
	free(e->tmpl);
	e->tmpl = s->tmpl;
	e->tmpl_len = s->tmpl_len;
	s->tmpl = NULL;
	e->wconf = s->wconf;
	for (i = 0; i < ENFORCE_FILES; i++)
		e->loaded[i] = e->seen[i] = p->sigs[i];
	e->maildirsize = conf->quota_maildirsize;
	free(e->warn_from);
	e->warn_from =
	    conf->warn_from != NULL ? mk_xstrdup(conf->warn_from) : NULL;
	free(e->warn_hook);
	e->warn_hook =
	    conf->warn_hook != NULL ? mk_xstrdup(conf->warn_hook) : NULL;
	free(e->digest_to);
	e->digest_to =
	    conf->digest_to != NULL ? mk_xstrdup(conf->digest_to) : NULL;
	free(e->digest_sendmail);
	e->digest_sendmail = conf->digest_sendmail != NULL
	    ? mk_xstrdup(conf->digest_sendmail)
	    : NULL;
	e->digest_top = (size_t)conf->digest_top;
	e->digest_secs = s->digest_secs;
	e->digest_due = e->digest_to != NULL
	    ? enforce_digest_next(
		  e->digest_secs, mk_daemon_now_ns() / 1000000000)
	    : 0;
	free(e->ptext);
	e->ptext = mk_xstrdup(conf->policy_text);
	free(e->pdelims);
	e->pdelims = mk_xstrdup(conf->policy_delimiter);
	mk_policy_config_init(&e->pconf);
	e->pconf.refusal = (enum mk_policy_refusal)conf->policy_refusal;
	e->pconf.text = e->ptext;
	e->pconf.delimiters = e->pdelims;
	e->pconf.alias_policy =
	    (enum mk_aliases_policy)conf->policy_alias_policy;
	e->pconf.rules = mk_limits_rules(e->limits);
	mk_quota_resv_configure(e->resv, (int64_t)conf->policy_resv_ttl,
	    (size_t)conf->policy_resv_max);
	/* A reload: limits may have changed.  (At start nothing is counted
	 * or made yet; each mailbox is checked once it is counted.) */
	if (e->d->ready)
		enforce_limits_changed(e);
	mk_enforce_prepared_free(preparedp);
}

/* At start, on the loop: no worker is running yet. */
static int
enforce_load(struct mk_enforce *e, struct mk_catalog *cat, struct mk_err *err)
{
	struct mk_enforce_prepared *p;

	if ((p = mk_enforce_prepare(e->d->conf, cat, err)) == NULL)
		return -1;
	mk_enforce_apply(e, e->d->conf, &p);
	return 0;
}

/*
 * Reload one file (ENFORCE_FILE_*) of conf, keeping the rest: read on a
 * worker, taken on the loop unless a whole configuration was applied
 * meanwhile (it read the file too).
 */
struct enforce_file_job {
	struct mk_job job; /* first */
	struct mk_enforce *e;
	const struct mk_conf *conf; /* kept until exit by main.c */
	int i;
	uint64_t gen;
	struct mk_aliases *aliases;
	struct mk_limits *limits;
	struct mk_warnings warnings;
	int rc;
	struct mk_err err;
};

static void
enforce_file_run(struct mk_job *job, void *ctx)
{
	struct enforce_file_job *j = (struct enforce_file_job *)job;
	struct mk_worker *w = ctx;

	if (j->i == ENFORCE_FILE_ALIASES)
		j->rc = mk_aliases_load(j->conf->policy_aliases, &j->aliases,
		    &j->warnings, &j->err);
	else if (w->catalog == NULL)
		j->rc = mk_err_set(&j->err, "no catalog connection");
	else if ((j->rc = mk_limits_new(
		      j->conf, &j->limits, &j->warnings, &j->err)) == 0)
		j->rc = mk_catalog_limits_load(
		    w->catalog, enforce_limit_load_cb, j->limits, &j->err);
}

static void
enforce_file_done(struct mk_job *job)
{
	struct enforce_file_job *j = (struct enforce_file_job *)job;
	struct mk_enforce *e = j->e;
	const char *path = enforce_file_path(j->conf, j->i);

	e->reloading[j->i] = false;
	if (e->d->stopping || j->gen != e->gen)
		goto out;
	if (j->rc < 0) {
		mk_log_error("enforce",
		    "%s changed; keeping the %s loaded before: %s", path,
		    j->i == ENFORCE_FILE_IMPORT ? "limits" : "aliases",
		    j->err.msg);
		goto out;
	}
	if (j->i == ENFORCE_FILE_ALIASES) {
		mk_aliases_free(&e->aliases);
		e->aliases = j->aliases;
		j->aliases = NULL;
	} else {
		mk_limits_free(&e->limits);
		e->limits = j->limits;
		j->limits = NULL;
		e->pconf.rules = mk_limits_rules(e->limits);
		enforce_limits_changed(e);
	}
	if (j->warnings.count > 0)
		mk_log_warn("enforce", "%llu lines skipped, first: %s",
		    j->warnings.count, j->warnings.first);
	mk_log_info("enforce", "%s changed: reloaded", path);
out:
	mk_limits_free(&j->limits);
	mk_aliases_free(&j->aliases);
	free(j);
}

static void
enforce_reload_file(struct mk_enforce *e, const struct mk_conf *conf, int i)
{
	struct enforce_file_job *j = mk_xcalloc(1, sizeof(*j));

	j->job.run = enforce_file_run;
	j->job.done = enforce_file_done;
	j->e = e;
	j->conf = conf;
	j->i = i;
	j->gen = e->gen;
	e->reloading[i] = true;
	mk_pool_submit_urgent(e->d->pool, &j->job);
}

int
mk_enforce_new(struct mk_daemon *d, struct mk_catalog *cat,
    struct mk_enforce **enforce_r, struct mk_err *err)
{
	struct mk_enforce *e = mk_xcalloc(1, sizeof(*e));

	*enforce_r = NULL;
	e->d = d;
	e->mbs = mk_hmap_new();
	e->resv = mk_quota_resv_new();
	e->pools = mk_hmap_new();
	e->shares = mk_hmap_new();
	if (enforce_load(e, cat, err) < 0 ||
	    mk_catalog_warns_load(cat, enforce_warn_load_cb, e, err) < 0) {
		mk_enforce_free(&e);
		return -1;
	}
	e->tick = event_new(d->base, -1, EV_PERSIST, enforce_tick_cb, e);
	if (e->tick == NULL || evtimer_add(e->tick, &enforce_tick_tv) < 0)
		mk_fatal("enforce", "cannot start the timer");
	*enforce_r = e;
	return 0;
}

void
mk_enforce_free(struct mk_enforce **enforcep)
{
	struct mk_enforce *e = *enforcep;
	struct enforce_mb *em;
	size_t pos = 0, i;

	if (e == NULL)
		return;
	while ((em = mk_hmap_next(e->mbs, &pos)) != NULL) {
		free(em->address);
		free(em);
	}
	mk_hmap_free(&e->mbs);
	if (e->pools != NULL) {
		enforce_pools_clear(e);
		mk_hmap_free(&e->shares);
		mk_hmap_free(&e->pools);
	}
	for (i = 0; i < e->npending; i++)
		free(e->pending[i]);
	free(e->pending);
	if (e->tick != NULL)
		event_free(e->tick);
	mk_quota_resv_free(&e->resv);
	mk_limits_free(&e->limits);
	mk_aliases_free(&e->aliases);
	free(e->tmpl);
	free(e->warn_from);
	free(e->warn_hook);
	free(e->digest_to);
	free(e->digest_sendmail);
	free(e->ptext);
	free(e->pdelims);
	free(e);
	*enforcep = NULL;
}
