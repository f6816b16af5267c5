#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/crypto.h"
#include "mailkeep/lock.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

#define LOCK_MAGIC "mailkeep lock"
#define LOCK_NS 1000000000LL

struct mk_lock {
	struct mk_storage *st;
	struct mk_lock_info info;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	bool stop;
	bool running;
	int64_t refreshed_ns; /* last successful write */
};

static int64_t
lock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * LOCK_NS + ts.tv_nsec;
}

static void
lock_hostname(char host[256])
{
	if (gethostname(host, 255) < 0)
		host[0] = '\0';
	host[255] = '\0';
}

const char *
mk_lock_kind_name(enum mk_lock_kind kind)
{
	return kind == MK_LOCK_EXCLUSIVE ? "exclusive" : "shared";
}

int
mk_lock_encode(
    const struct mk_lock_info *info, char **json_r, struct mk_err *err)
{
	time_t t = (time_t)(info->time_ns / LOCK_NS);
	char when[32];
	struct tm tm;
	json_t *obj;

	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		mk_strlcpy(when, "", sizeof(when));
	obj = json_pack("{s:s, s:i, s:s, s:s, s:I, s:s, s:I}", "magic",
	    LOCK_MAGIC, "version", 1, "kind", mk_lock_kind_name(info->kind),
	    "host", info->host, "pid", (json_int_t)info->pid, "time", when,
	    "time_ns", (json_int_t)info->time_ns);
	if (obj == NULL)
		return mk_err_set(err, "lock: cannot encode");
	*json_r = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (*json_r == NULL)
		return mk_err_set(err, "lock: cannot encode");
	return 0;
}

int
mk_lock_decode(const void *data, size_t len, struct mk_lock_info *info_r,
    struct mk_err *err)
{
	const char *magic, *kind, *host;
	json_int_t version, pid, time_ns;
	json_error_t jerr;
	json_t *obj;
	int rc = -1;

	memset(info_r, 0, sizeof(*info_r));
	if (len > MK_LOCK_OBJECT_MAX)
		return mk_err_set(err, "lock object of %zu bytes", len);
	if ((obj = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL)
		return mk_err_set(err, "lock object: %s", jerr.text);
	if (json_unpack_ex(obj, &jerr, 0, "{s:s, s:I, s:s, s:s, s:I, s:I}",
		"magic", &magic, "version", &version, "kind", &kind, "host",
		&host, "pid", &pid, "time_ns", &time_ns) < 0) {
		mk_err_set(err, "lock object: %s", jerr.text);
		goto out;
	}
	if (strcmp(magic, LOCK_MAGIC) != 0 || version != 1) {
		mk_err_set(err, "lock object: not a version 1 mailkeep lock");
		goto out;
	}
	if (strcmp(kind, "shared") == 0)
		info_r->kind = MK_LOCK_SHARED;
	else if (strcmp(kind, "exclusive") == 0)
		info_r->kind = MK_LOCK_EXCLUSIVE;
	else {
		mk_err_set(err, "lock object: unknown kind '%s'", kind);
		goto out;
	}
	mk_strlcpy(info_r->host, host, sizeof(info_r->host));
	info_r->pid = pid;
	info_r->time_ns = time_ns;
	rc = 0;
out:
	json_decref(obj);
	return rc;
}

bool
mk_lock_stale(const struct mk_lock_info *info, const char *host, int64_t now_ns)
{
	if (now_ns - info->time_ns > (int64_t)MK_LOCK_STALE * LOCK_NS)
		return true;
	/* A lock of this host whose process is gone. */
	if (strcmp(info->host, host) == 0 && info->pid > 0 &&
	    info->pid <= INT32_MAX && kill((pid_t)info->pid, 0) < 0 &&
	    errno == ESRCH)
		return true;
	return false;
}

/* Write info under a new random name (info->name is set). */
static int
lock_write(struct mk_storage *st, struct mk_lock_info *info, struct mk_err *err)
{
	uint8_t raw[MK_LOCK_ID_LEN / 2];
	char hex[MK_LOCK_ID_LEN + 1];
	char *json = NULL;
	int rc;

	if (mk_crypto_random(raw, sizeof(raw), err) < 0)
		return -1;
	mk_crypto_hex(raw, sizeof(raw), hex);
	snprintf(info->name, sizeof(info->name), "locks/%s", hex);
	info->time_ns = lock_now_ns();
	if (mk_lock_encode(info, &json, err) < 0)
		return -1;
	rc = mk_storage_put(st, info->name, json, strlen(json), err);
	free(json);
	return rc;
}

/* The other locks, collected from a listing. */
struct lock_names {
	char **v;
	size_t n, cap;
	const char *self;
};

static int
lock_names_cb(void *arg, const char *name, const struct mk_storage_stat *sst,
    struct mk_err *err)
{
	struct lock_names *names = arg;

	(void)sst;
	(void)err;
	if (strcmp(name, names->self) == 0)
		return 0;
	mk_xgrow(&names->v, &names->cap, names->n + 1, sizeof(*names->v));
	names->v[names->n++] = mk_xstrdup(name);
	return 0;
}

/*
 * Look at every other lock: remove the stale ones, and say in err and
 * *holder_r which live one conflicts with kind (only the name of one that
 * does not decode).  1 conflict, 0 none, -1 error.
 */
static int
lock_conflicts(struct mk_storage *st, const char *self, enum mk_lock_kind kind,
    struct mk_lock_info *holder_r, struct mk_err *err)
{
	struct lock_names names;
	struct mk_lock_info other;
	char host[256], when[32];
	struct mk_err gerr;
	uint8_t *data;
	size_t len, i;
	int64_t now = lock_now_ns();
	int rc = -1, found = 0;

	lock_hostname(host);
	memset(&names, 0, sizeof(names));
	names.self = self;
	if (mk_storage_list(st, "locks/", lock_names_cb, &names, err) < 0)
		goto out;
	for (i = 0; i < names.n && !found; i++) {
		data = NULL;
		if (mk_storage_get(st, names.v[i], &data, &len, &gerr) < 0) {
			if (gerr.sys_errno == ENOENT)
				continue; /* released meanwhile */
			mk_err_set(err, "%s", gerr.msg);
			goto out;
		}
		if (mk_lock_decode(data, len, &other, &gerr) < 0) {
			free(data);
			/* Not ours to judge: a writer we do not understand. */
			memset(holder_r, 0, sizeof(*holder_r));
			mk_strlcpy(
			    holder_r->name, names.v[i], sizeof(holder_r->name));
			mk_err_set(err,
			    "%s: %s; remove it by hand if no "
			    "program holds it",
			    names.v[i], gerr.msg);
			found = 1;
			break;
		}
		free(data);
		mk_strlcpy(other.name, names.v[i], sizeof(other.name));
		if (mk_lock_stale(&other, host, now)) {
			snprintf(when, sizeof(when), "%lld s ago",
			    (long long)((now - other.time_ns) / LOCK_NS));
			mk_log_warn("lock",
			    "removing stale %s lock %s of %s pid %lld, last "
			    "refreshed %s",
			    mk_lock_kind_name(other.kind), other.name,
			    other.host, (long long)other.pid, when);
			if (mk_storage_delete(st, other.name, &gerr) < 0)
				mk_log_warn("lock", "%s", gerr.msg);
			continue;
		}
		if (kind == MK_LOCK_EXCLUSIVE ||
		    other.kind == MK_LOCK_EXCLUSIVE) {
			mk_err_set(err,
			    "the repository is locked by %s %s lock (%s, host "
			    "%s, pid %lld, refreshed %lld s ago)",
			    other.kind == MK_LOCK_EXCLUSIVE ? "an" : "a",
			    mk_lock_kind_name(other.kind), other.name,
			    other.host, (long long)other.pid,
			    (long long)((now - other.time_ns) / LOCK_NS));
			*holder_r = other;
			found = 1;
		}
	}
	rc = found;
out:
	for (i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	return rc;
}

/* Refresh: a new object, then the old one deleted. */
static void *
lock_refresh_main(void *arg)
{
	struct mk_lock *lock = arg;
	struct mk_lock_info next;
	struct timespec until;
	struct mk_err err;
	int64_t wait_ns;

	pthread_mutex_lock(&lock->mu);
	while (!lock->stop) {
		wait_ns = (int64_t)MK_LOCK_REFRESH * LOCK_NS;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait_ns / LOCK_NS;
		pthread_cond_timedwait(&lock->cond, &lock->mu, &until);
		if (lock->stop)
			break;
		next = lock->info;
		pthread_mutex_unlock(&lock->mu);
		if (lock_write(lock->st, &next, &err) < 0) {
			mk_log_error("lock", "refreshing %s: %s",
			    lock->info.name, err.msg);
			pthread_mutex_lock(&lock->mu);
			continue;
		}
		if (mk_storage_delete(lock->st, lock->info.name, &err) < 0)
			mk_log_warn("lock", "%s", err.msg);
		pthread_mutex_lock(&lock->mu);
		lock->info = next;
		lock->refreshed_ns = next.time_ns;
	}
	pthread_mutex_unlock(&lock->mu);
	return NULL;
}

/* Start refreshing a lock just written and found alone. */
static int
lock_start(struct mk_lock *lock, struct mk_err *err)
{
	struct mk_err derr;
	int r;

	lock->refreshed_ns = lock->info.time_ns;
	if (pthread_mutex_init(&lock->mu, NULL) != 0 ||
	    pthread_cond_init(&lock->cond, NULL) != 0)
		mk_fatal("lock", "cannot make a mutex");
	if ((r = pthread_create(
		 &lock->thread, NULL, lock_refresh_main, lock)) != 0) {
		errno = r;
		mk_err_sys(err, "pthread_create");
		if (mk_storage_delete(lock->st, lock->info.name, &derr) < 0)
			mk_log_warn("lock", "%s", derr.msg);
		pthread_cond_destroy(&lock->cond);
		pthread_mutex_destroy(&lock->mu);
		return -1;
	}
	lock->running = true;
	return 0;
}

/* One round: write ours, look at the others; 0, 1 conflict, -1. */
static int
lock_attempt(
    struct mk_lock *lock, struct mk_lock_info *holder_r, struct mk_err *err)
{
	struct mk_err derr;
	int r;

	if (lock_write(lock->st, &lock->info, err) < 0)
		return -1;
	if ((r = lock_conflicts(lock->st, lock->info.name, lock->info.kind,
		 holder_r, err)) == 0)
		return 0;
	if (mk_storage_delete(lock->st, lock->info.name, &derr) < 0)
		mk_log_warn("lock", "%s", derr.msg);
	return r;
}

static struct mk_lock *
lock_new(struct mk_storage *st, enum mk_lock_kind kind)
{
	struct mk_lock *lock = mk_xcalloc(1, sizeof(*lock));

	lock->st = st;
	lock->info.kind = kind;
	lock->info.pid = getpid();
	lock_hostname(lock->info.host);
	return lock;
}

int
mk_lock_try(struct mk_storage *st, enum mk_lock_kind kind,
    struct mk_lock **lock_r, struct mk_lock_info *holder_r, struct mk_err *err)
{
	struct mk_lock *lock = lock_new(st, kind);
	int r;

	*lock_r = NULL;
	memset(holder_r, 0, sizeof(*holder_r));
	if ((r = lock_attempt(lock, holder_r, err)) == 0 &&
	    (r = lock_start(lock, err)) == 0) {
		*lock_r = lock;
		return 0;
	}
	free(lock);
	return r;
}

int
mk_lock_acquire(struct mk_storage *st, enum mk_lock_kind kind, unsigned wait_s,
    struct mk_lock **lock_r, struct mk_err *err)
{
	struct mk_lock *lock = lock_new(st, kind);
	struct mk_lock_info holder;
	unsigned waited = 0;
	int r;

	*lock_r = NULL;
	while ((r = lock_attempt(lock, &holder, err)) == 1 && waited < wait_s) {
		/* Two takers that saw each other both back off; a little
		 * randomness lets one of them win the next round. */
		usleep(1000000 + (useconds_t)(lock_now_ns() % 250000));
		waited++;
	}
	if (r != 0 || lock_start(lock, err) < 0) {
		free(lock);
		return -1;
	}
	*lock_r = lock;
	return 0;
}

int
mk_lock_check(struct mk_lock *lock, struct mk_err *err)
{
	int64_t age;

	pthread_mutex_lock(&lock->mu);
	age = lock_now_ns() - lock->refreshed_ns;
	pthread_mutex_unlock(&lock->mu);
	/* A margin of one refresh interval before others may call it stale. */
	if (age > (int64_t)(MK_LOCK_STALE - MK_LOCK_REFRESH) * LOCK_NS)
		return mk_err_set(err,
		    "lock %s not refreshed for %lld s: it may have been "
		    "taken as stale",
		    lock->info.name, (long long)(age / LOCK_NS));
	return 0;
}

void
mk_lock_release(struct mk_lock **lockp)
{
	struct mk_lock *lock = *lockp;
	struct mk_err err;

	if (lock == NULL)
		return;
	if (lock->running) {
		pthread_mutex_lock(&lock->mu);
		lock->stop = true;
		pthread_cond_signal(&lock->cond);
		pthread_mutex_unlock(&lock->mu);
		pthread_join(lock->thread, NULL);
		pthread_cond_destroy(&lock->cond);
		pthread_mutex_destroy(&lock->mu);
	}
	if (mk_storage_delete(lock->st, lock->info.name, &err) < 0)
		mk_log_warn("lock", "%s", err.msg);
	free(lock);
	*lockp = NULL;
}

int
mk_lock_run(const char *path, int *fd_r, long *holder_r, struct mk_err *err)
{
	char buf[32];
	ssize_t n;
	int fd;

	*fd_r = -1;
	*holder_r = 0;
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			mk_err_sys(err, "flock(%s)", path);
			close(fd);
			return -1;
		}
		if ((n = pread(fd, buf, sizeof(buf) - 1, 0)) > 0) {
			buf[n] = '\0';
			*holder_r = strtol(buf, NULL, 10);
		}
		close(fd);
		return 1;
	}
	/* The pid is for the message of whoever is refused. */
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
		mk_err_sys(err, "write(%s)", path);
		close(fd);
		return -1;
	}
	*fd_r = fd;
	return 0;
}
