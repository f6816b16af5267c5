#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/backup.h"
#include "mailkeep/dict.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"

/* A message file is read this far: a header and a small body fit. */
#define DICT_READ_MAX (256u << 10)
#define DICT_DIRBUF (32u << 10)
/* Each mailbox gives at least this many messages (while any are left). */
#define DICT_PER_MAILBOX_MIN 8

/* The samples of one kind, end to end, as ZDICT wants them. */
struct dict_samples {
	uint8_t *buf;
	size_t len;
	size_t cap;
	size_t *sizes;
	size_t n;
	size_t scap;
};

struct dict_sampler {
	struct dict_samples kinds[MK_REPO_DICT_KINDS];
	size_t messages;
	size_t quota; /* messages per mailbox */
	size_t taken; /* from the mailbox at work */
	uint8_t *file;
	char *dirbuf;
};

static void
dict_samples_add(struct dict_samples *s, const uint8_t *p, size_t len)
{
	if (len == 0 || s->len + len > MK_DICT_SAMPLE_BYTES)
		return;
	mk_xgrow(&s->buf, &s->cap, s->len + len, 1);
	memcpy(s->buf + s->len, p, len);
	s->len += len;
	mk_xgrow(&s->sizes, &s->scap, s->n + 1, sizeof(*s->sizes));
	s->sizes[s->n++] = len;
}

/*
 * Sample one message file: its header section, and its body when the
 * backup would compress it whole with a dictionary.  A file that cannot
 * be read is passed over: sampling needs no particular message.
 */
static void
dict_sample_file(struct dict_sampler *sp, int dirfd, const char *name)
{
	size_t len = 0, hlen;
	struct stat st;
	ssize_t n;
	int fd;

	fd = openat(dirfd, name,
	    O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto out;
	while (len < DICT_READ_MAX &&
	    (n = read(fd, sp->file + len, DICT_READ_MAX - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		len += (size_t)n;
	}
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	sp->messages++;
	sp->taken++;
	if (mk_backup_split(sp->file, len, len < DICT_READ_MAX, &hlen) !=
		MK_BACKUP_SPLIT ||
	    hlen > MK_REPO_DICT_BLOB_MAX)
		goto out;
	dict_samples_add(&sp->kinds[MK_REPO_DICT_HEADERS], sp->file, hlen);
	if (len < DICT_READ_MAX && len - hlen <= MK_REPO_DICT_BLOB_MAX)
		dict_samples_add(&sp->kinds[MK_REPO_DICT_BODIES],
		    sp->file + hlen, len - hlen);
out:
	close(fd);
}

/* Whether the sampler wants more from the mailbox at work. */
static bool
dict_sampler_hungry(const struct dict_sampler *sp)
{
	return sp->taken < sp->quota && sp->messages < MK_DICT_SAMPLE_MESSAGES;
}

/* Sample the messages of sub ("cur" or "new") of a folder. */
static void
dict_sample_sub(struct dict_sampler *sp, int folderfd, const char *sub)
{
	struct mk_fs_dirent de;
	struct mk_fs_dir d;
	int fd;

	if ((fd = mk_fs_openat_dir(folderfd, sub)) < 0)
		return;
	mk_fs_dir_start(&d, fd, sp->dirbuf, DICT_DIRBUF);
	while (dict_sampler_hungry(sp) && mk_fs_dir_next(&d, &de) == 1)
		if (de.name[0] != '.' &&
		    (de.type == DT_REG || de.type == DT_UNKNOWN))
			dict_sample_file(sp, fd, de.name);
	close(fd);
}

/* Sample a Maildir++ mailbox: INBOX, then its folders. */
static void
dict_sample_mailbox(struct dict_sampler *sp, int rootfd, const char *relpath)
{
	char *names = NULL, *dirbuf = mk_xmalloc(DICT_DIRBUF);
	size_t nlen = 0, ncap = 0, i;
	struct mk_fs_dirent de;
	struct mk_fs_dir d;
	struct mk_err err;
	int mfd, ffd;

	sp->taken = 0;
	if ((mfd = mk_fs_open_dir_beneath(rootfd, relpath, &err)) < 0)
		goto out;
	dict_sample_sub(sp, mfd, "cur");
	dict_sample_sub(sp, mfd, "new");
	/* Folder names first: sampling reuses the listing buffer. */
	mk_fs_dir_start(&d, mfd, dirbuf, DICT_DIRBUF);
	while (mk_fs_dir_next(&d, &de) == 1)
		if (de.name[0] == '.' && strcmp(de.name, ".") != 0 &&
		    strcmp(de.name, "..") != 0 &&
		    (de.type == DT_DIR || de.type == DT_UNKNOWN)) {
			size_t len = strlen(de.name) + 1;

			mk_xgrow(&names, &ncap, nlen + len, 1);
			memcpy(names + nlen, de.name, len);
			nlen += len;
		}
	for (i = 0; i < nlen && dict_sampler_hungry(sp);
	     i += strlen(names + i) + 1) {
		if ((ffd = mk_fs_openat_dir(mfd, names + i)) < 0)
			continue;
		dict_sample_sub(sp, ffd, "cur");
		dict_sample_sub(sp, ffd, "new");
		close(ffd);
	}
	close(mfd);
out:
	free(names);
	free(dirbuf);
}

static void
dict_sampler_free(struct dict_sampler *sp)
{
	size_t k;

	for (k = 0; k < MK_REPO_DICT_KINDS; k++) {
		free(sp->kinds[k].buf);
		free(sp->kinds[k].sizes);
	}
	free(sp->file);
	free(sp->dirbuf);
}

/* Train and store the dictionary of kind from its samples. */
static int
dict_train_kind(struct mk_repo *repo, const struct dict_samples *s, int kind,
    struct mk_dict_result *res, struct mk_err *err)
{
	size_t capacity = s->len / 8, len = 0;
	uint8_t *zdict = NULL;
	struct mk_err terr;
	int rc = -1;

	res->samples[kind] = s->n;
	if (capacity > MK_DICT_CAPACITY)
		capacity = MK_DICT_CAPACITY;
	if (s->n < MK_DICT_SAMPLES_MIN || capacity < 1024) {
		snprintf(res->why[kind], sizeof(res->why[kind]),
		    "too little mail to train on (%zu samples, %zu bytes)",
		    s->n, s->len);
		return 0;
	}
	if (mk_pack_dict_train(
		s->buf, s->sizes, s->n, capacity, &zdict, &len, &terr) < 0) {
		memcpy(res->why[kind], terr.msg, sizeof(res->why[kind]));
		return 0;
	}
	if (mk_repo_dict_put(repo, kind, zdict, len, (uint32_t)s->n,
		&res->info[kind], err) < 0)
		goto out;
	res->trained[kind] = true;
	rc = 0;
out:
	free(zdict);
	return rc;
}

int
mk_dict_train(struct mk_repo *repo, int rootfd, char *const *relpaths, size_t n,
    bool only_missing, struct mk_dict_result *res, struct mk_err *err)
{
	struct dict_sampler sp;
	int kind, rc = -1;
	size_t i, stride;

	memset(res, 0, sizeof(*res));
	memset(&sp, 0, sizeof(sp));
	sp.file = mk_xmalloc(DICT_READ_MAX);
	sp.dirbuf = mk_xmalloc(DICT_DIRBUF);
	/* Spread over the store: every stride-th mailbox, a fair share each. */
	stride = n / (MK_DICT_SAMPLE_MESSAGES / DICT_PER_MAILBOX_MIN) + 1;
	sp.quota = MK_DICT_SAMPLE_MESSAGES / (n / stride + 1);
	if (sp.quota < DICT_PER_MAILBOX_MIN)
		sp.quota = DICT_PER_MAILBOX_MIN;
	for (i = 0; i < n && sp.messages < MK_DICT_SAMPLE_MESSAGES; i += stride)
		dict_sample_mailbox(&sp, rootfd, relpaths[i]);
	res->messages = sp.messages;
	for (kind = MK_REPO_DICT_HEADERS; kind <= MK_REPO_DICT_BODIES; kind++) {
		if (only_missing && mk_repo_dict_current(repo, kind, NULL))
			continue;
		if (dict_train_kind(repo, &sp.kinds[kind], kind, res, err) < 0)
			goto out;
	}
	rc = 0;
out:
	dict_sampler_free(&sp);
	return rc;
}

int
mk_dict_prepare(struct mk_repo *repo, enum mk_dict_mode mode, int rootfd,
    char *const *relpaths, size_t n, struct mk_err *err)
{
	struct mk_dict_result res;
	struct mk_err terr;
	size_t count;
	int kind;

	if (mk_repo_dicts_load(repo, mode == MK_DICT_AUTO, &count, err) < 0)
		return -1;
	if (mode != MK_DICT_AUTO ||
	    (mk_repo_dict_current(repo, MK_REPO_DICT_HEADERS, NULL) &&
		mk_repo_dict_current(repo, MK_REPO_DICT_BODIES, NULL)))
		return 0;
	if (mk_dict_train(repo, rootfd, relpaths, n, true, &res, &terr) < 0) {
		mk_log_warn("dict", "no dictionary trained: %s", terr.msg);
		return 0;
	}
	for (kind = MK_REPO_DICT_HEADERS; kind <= MK_REPO_DICT_BODIES; kind++)
		if (res.trained[kind])
			mk_log_info("dict",
			    "trained the %s dictionary %.16s: %zu bytes from "
			    "%zu samples",
			    kind == MK_REPO_DICT_HEADERS ? "header" : "body",
			    res.info[kind].hex, res.info[kind].size,
			    res.samples[kind]);
		else if (res.why[kind][0] != '\0')
			mk_log_info("dict", "no %s dictionary yet: %s",
			    kind == MK_REPO_DICT_HEADERS ? "header" : "body",
			    res.why[kind]);
	return 0;
}
