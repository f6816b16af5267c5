#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/maildirsize.h"

#define MS_NAME "maildirsize"
#define MS_TMP_TRIES 5

enum ms_line {
	MS_LINE_BAD = -1,
	MS_LINE_PREFIX, /* could still become a line */
	MS_LINE_OK,
};

/* Parse the first line: "<n>S", "<n>C", both with a comma, or nothing. */
static int
ms_parse_limits(const char *p, const char *end, struct mk_maildirsize *ms,
    struct mk_err *err)
{
	bool seen_s = false, seen_c = false;

	if (p == end)
		return 0;
	for (;;) {
		uint64_t v = 0;
		const char *start = p;

		for (; p < end && *p >= '0' && *p <= '9'; p++)
			if (__builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
				return mk_err_set(err, "limit too large");
		if (p == start || p == end)
			return mk_err_set(
			    err, "bad limit line (expected <bytes>S,<count>C)");
		if (*p == 'S' && !seen_s) {
			ms->bytes_limit = v;
			seen_s = true;
		} else if (*p == 'C' && !seen_c) {
			ms->count_limit = v;
			seen_c = true;
		} else
			return mk_err_set(
			    err, "bad limit line (expected <bytes>S,<count>C)");
		if (++p == end)
			return 0;
		if (*p++ != ',')
			return mk_err_set(
			    err, "bad limit line (expected <bytes>S,<count>C)");
	}
}

/* One signed number at *pp; MS_LINE_PREFIX when the digits are missing. */
static enum ms_line
ms_parse_int(const char **pp, const char *end, int64_t *v_r)
{
	const char *p = *pp;
	bool neg = false;
	uint64_t v = 0, max = INT64_MAX;

	if (p < end && *p == '-') {
		neg = true;
		max = (uint64_t)INT64_MAX + 1;
		p++;
	}
	if (p == end)
		return MS_LINE_PREFIX;
	if (*p < '0' || *p > '9')
		return MS_LINE_BAD;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (max - (uint64_t)(*p - '0')) / 10)
			return MS_LINE_BAD;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (!neg)
		*v_r = (int64_t)v;
	else
		*v_r = v > INT64_MAX ? INT64_MIN : -(int64_t)v;
	*pp = p;
	return MS_LINE_OK;
}

static const char *
ms_skip_blanks(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

/* A line "<bytes> <count>" in [p, end), without its newline. */
static enum ms_line
ms_parse_line(
    const char *p, const char *end, int64_t *bytes_r, int64_t *count_r)
{
	enum ms_line r;
	const char *q;

	p = ms_skip_blanks(p, end);
	if ((r = ms_parse_int(&p, end, bytes_r)) != MS_LINE_OK)
		return r;
	q = ms_skip_blanks(p, end);
	if (q == end)
		return MS_LINE_PREFIX;
	if (q == p)
		return MS_LINE_BAD;
	if ((r = ms_parse_int(&q, end, count_r)) != MS_LINE_OK)
		return r;
	return ms_skip_blanks(q, end) == end ? MS_LINE_OK : MS_LINE_BAD;
}

int
mk_maildirsize_parse(const char *buf, size_t len, struct mk_maildirsize *ms_r,
    struct mk_err *err)
{
	const char *p = buf, *end = buf + len, *eol;
	size_t lineno = 1;

	memset(ms_r, 0, sizeof(*ms_r));
	ms_r->size = len;
	if (len == 0)
		return mk_err_set(err, "maildirsize: empty file");
	if (memchr(buf, '\0', len) != NULL)
		return mk_err_set(err, "maildirsize: NUL byte");
	if ((eol = memchr(p, '\n', len)) == NULL)
		eol = end;
	if (ms_parse_limits(p, eol, ms_r, err) < 0)
		return mk_err_prefix(err, "maildirsize: line 1");
	for (p = eol + (eol < end); p < end; p = eol + 1) {
		int64_t bytes = 0, count = 0;
		enum ms_line r;

		lineno++;
		eol = memchr(p, '\n', (size_t)(end - p));
		r = ms_parse_line(p, eol != NULL ? eol : end, &bytes, &count);
		if (eol == NULL && r == MS_LINE_PREFIX) {
			ms_r->partial = true;
			break;
		}
		if (r != MS_LINE_OK)
			return mk_err_set(err,
			    "maildirsize: line %zu: expected two numbers",
			    lineno);
		if (__builtin_add_overflow(ms_r->bytes, bytes, &ms_r->bytes) ||
		    __builtin_add_overflow(ms_r->count, count, &ms_r->count))
			return mk_err_set(err,
			    "maildirsize: line %zu: sum overflows", lineno);
		ms_r->lines++;
		if (eol == NULL)
			break;
	}
	if (ms_r->bytes < 0 || ms_r->count < 0)
		return mk_err_set(err,
		    "maildirsize: negative total (%" PRId64 " bytes, %" PRId64
		    " messages)",
		    ms_r->bytes, ms_r->count);
	return 0;
}

enum mk_maildirsize_rebuild
mk_maildirsize_rebuild_due(const struct mk_maildirsize *ms, bool corrupt,
    uint64_t bytes_limit, uint64_t count_limit, int64_t now)
{
	bool over, stale;

	if (ms == NULL)
		return MK_MAILDIRSIZE_MISSING;
	if (ms->size >= MK_MAILDIRSIZE_MAX)
		return MK_MAILDIRSIZE_OVERSIZED;
	if (corrupt)
		return MK_MAILDIRSIZE_CORRUPT;
	if (ms->bytes_limit != bytes_limit || ms->count_limit != count_limit)
		return MK_MAILDIRSIZE_LIMIT_CHANGED;
	over = (bytes_limit != 0 && (uint64_t)ms->bytes > bytes_limit) ||
	    (count_limit != 0 && (uint64_t)ms->count > count_limit);
	stale = now >= ms->mtime &&
	    (uint64_t)now - (uint64_t)ms->mtime >= MK_MAILDIRSIZE_STALE;
	if (over && (ms->lines > 1 || stale))
		return MK_MAILDIRSIZE_OVER_QUOTA;
	return MK_MAILDIRSIZE_KEEP;
}

const char *
mk_maildirsize_rebuild_name(enum mk_maildirsize_rebuild why)
{
	switch (why) {
	case MK_MAILDIRSIZE_KEEP:
		return "keep";
	case MK_MAILDIRSIZE_MISSING:
		return "missing";
	case MK_MAILDIRSIZE_OVERSIZED:
		return "oversized";
	case MK_MAILDIRSIZE_CORRUPT:
		return "corrupt";
	case MK_MAILDIRSIZE_LIMIT_CHANGED:
		return "limit";
	case MK_MAILDIRSIZE_OVER_QUOTA:
		return "over-quota";
	}
	return "unknown";
}

size_t
mk_maildirsize_format(uint64_t bytes_limit, uint64_t count_limit,
    uint64_t bytes, uint64_t count, char *buf, size_t size)
{
	char limits[48];
	int n;

	if (bytes_limit != 0 && count_limit != 0)
		snprintf(limits, sizeof(limits), "%" PRIu64 "S,%" PRIu64 "C",
		    bytes_limit, count_limit);
	else if (count_limit != 0)
		snprintf(limits, sizeof(limits), "%" PRIu64 "C", count_limit);
	else
		snprintf(limits, sizeof(limits), "%" PRIu64 "S", bytes_limit);
	/* Readers hold the totals in signed 64 bits. */
	n = snprintf(buf, size, "%s\n%" PRIu64 " %" PRIu64 "\n", limits,
	    bytes > INT64_MAX ? (uint64_t)INT64_MAX : bytes,
	    count > INT64_MAX ? (uint64_t)INT64_MAX : count);
	return n < 0 ? 0 : (size_t)n;
}

/*
 * Open maildirfd/maildirsize, refusing a symbolic link or a non-file.
 * Returns the fd, -2 when there is no such file, or -1 with err set.
 */
static int
ms_open(int maildirfd, int flags, struct stat *st, struct mk_err *err)
{
	int fd;

	fd = openat(maildirfd, MS_NAME,
	    flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return -2;
		if (errno == ELOOP)
			return mk_err_set(
			    err, "open(%s): a symbolic link", MS_NAME);
		return mk_err_sys(err, "open(%s)", MS_NAME);
	}
	if (fstat(fd, st) < 0) {
		mk_err_sys(err, "fstat(%s)", MS_NAME);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		mk_err_set(err, "%s: not a regular file", MS_NAME);
		close(fd);
		return -1;
	}
	return fd;
}

int
mk_maildirsize_read(int maildirfd, struct mk_maildirsize *ms_r, bool *corrupt_r,
    struct mk_err *err)
{
	char buf[MK_MAILDIRSIZE_MAX];
	size_t len = 0;
	struct stat st;
	int fd;

	*corrupt_r = false;
	memset(ms_r, 0, sizeof(*ms_r));
	if ((fd = ms_open(maildirfd, O_RDONLY, &st, err)) < 0)
		return fd == -2 ? 0 : -1;
	while (len < sizeof(buf)) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			mk_err_sys(err, "read(%s)", MS_NAME);
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (len < sizeof(buf) &&
	    mk_maildirsize_parse(buf, len, ms_r, err) < 0) {
		memset(ms_r, 0, sizeof(*ms_r));
		*corrupt_r = true;
	}
	ms_r->size = len;
	if (len == sizeof(buf) && (uint64_t)st.st_size > len)
		ms_r->size = (size_t)st.st_size;
	ms_r->mtime = (int64_t)st.st_mtim.tv_sec;
	return 1;
}

/*
 * Create a temporary file for maildirsize in dirfd, named with random
 * bytes so that neither another writer nor a leftover collides.
 */
static int
ms_create_tmp(
    int dirfd, char *name, size_t size, mode_t mode, struct mk_err *err)
{
	unsigned char rnd[8];
	int tries, fd;

	for (tries = 0; tries < MS_TMP_TRIES; tries++) {
		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
			return mk_err_sys(err, "getrandom");
		snprintf(name, size,
		    ".maildirsize.%ld.%02x%02x%02x%02x%02x%02x%02x%02x",
		    (long)getpid(), rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
		    rnd[5], rnd[6], rnd[7]);
		fd = openat(dirfd, name,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			return mk_err_sys(err, "open(%s)", name);
	}
	return mk_err_set(err, "open(%s): name taken %d times", name, tries);
}

/* Write all of data to fd. */
static int
ms_write_all(
    int fd, const char *data, size_t len, const char *name, struct mk_err *err)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = write(fd, data + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mk_err_sys(err, "write(%s)", name);
		done += (size_t)n;
	}
	return 0;
}

int
mk_maildirsize_write(
    int maildirfd, const char *data, size_t len, struct mk_err *err)
{
	char name[64] = "";
	struct stat dst, st;
	int tmpfd, fd = -1, rc = -1;
	mode_t mode;

	if (fstat(maildirfd, &dst) < 0)
		return mk_err_sys(err, "fstat(Maildir)");
	mode = dst.st_mode & 0666;
	if ((tmpfd = mk_fs_openat_dir(maildirfd, "tmp")) < 0) {
		if (errno != ENOENT && errno != ELOOP && errno != ENOTDIR)
			return mk_err_sys(err, "open(tmp)");
		tmpfd = maildirfd;
	}
	if ((fd = ms_create_tmp(tmpfd, name, sizeof(name), mode, err)) < 0) {
		name[0] = '\0';
		goto out;
	}
	if (ms_write_all(fd, data, len, name, err) < 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		mk_err_sys(err, "fstat(%s)", name);
		goto out;
	}
	if ((st.st_uid != dst.st_uid || st.st_gid != dst.st_gid) &&
	    fchown(fd, dst.st_uid, dst.st_gid) < 0) {
		mk_err_sys(err, "fchown(%s, %ld, %ld)", name, (long)dst.st_uid,
		    (long)dst.st_gid);
		goto out;
	}
	/* After fchown, which may clear set-id bits, and past the umask. */
	if (fchmod(fd, mode) < 0) {
		mk_err_sys(err, "fchmod(%s)", name);
		goto out;
	}
	if (fsync(fd) < 0) {
		mk_err_sys(err, "fsync(%s)", name);
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		mk_err_sys(err, "close(%s)", name);
		goto out;
	}
	fd = -1;
	if (renameat(tmpfd, name, maildirfd, MS_NAME) < 0) {
		mk_err_sys(err, "rename(%s, %s)", name, MS_NAME);
		goto out;
	}
	name[0] = '\0';
	if (fsync(maildirfd) < 0) {
		mk_err_sys(err, "fsync(Maildir)");
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (name[0] != '\0')
		unlinkat(tmpfd, name, 0);
	if (tmpfd != maildirfd)
		close(tmpfd);
	return rc;
}

int
mk_maildirsize_append(
    int maildirfd, int64_t bytes, int64_t count, struct mk_err *err)
{
	char line[48];
	struct stat st;
	ssize_t n;
	int fd, len;

	len = snprintf(
	    line, sizeof(line), "%" PRId64 " %" PRId64 "\n", bytes, count);
	if ((fd = ms_open(maildirfd, O_WRONLY | O_APPEND, &st, err)) < 0)
		return fd == -2 ? 0 : -1;
	/* One write: a concurrent appender never splits our line. */
	while ((n = write(fd, line, (size_t)len)) < 0 && errno == EINTR)
		;
	if (n != len) {
		if (n < 0)
			mk_err_sys(err, "write(%s)", MS_NAME);
		else
			mk_err_set(err, "write(%s): short write", MS_NAME);
		close(fd);
		return -1;
	}
	/* Over NFS a failed write may show only at close. */
	if (close(fd) < 0)
		return mk_err_sys(err, "close(%s)", MS_NAME);
	return 1;
}
