#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/repo.h"

char *
fx_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (base == NULL)
		base = "/tmp";
	if (asprintf(&path, "%s/mk-test.XXXXXX", base) < 0)
		abort();
	assert_non_null(mkdtemp(path));
	return path;
}

static int
fx_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void
fx_rmrf(const char *path)
{
	nftw(path, fx_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

const char *
fx_path(const char *dir, const char *rel)
{
	static char bufs[4][PATH_MAX];
	static unsigned next;
	char *buf = bufs[next++ % 4];

	snprintf(buf, PATH_MAX, "%s/%s", dir, rel);
	return buf;
}

void
fx_mkdirs(const char *dir, const char *rel)
{
	char buf[PATH_MAX];
	char *p;

	snprintf(buf, sizeof(buf), "%s/%s", dir, rel);
	for (p = buf + strlen(dir) + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(buf, 0700);
		*p = '/';
	}
	mkdir(buf, 0700);
}

static void
fx_parent(const char *dir, const char *rel)
{
	char buf[PATH_MAX];
	char *slash;

	snprintf(buf, sizeof(buf), "%s", rel);
	if ((slash = strrchr(buf, '/')) != NULL) {
		*slash = '\0';
		fx_mkdirs(dir, buf);
	}
}

void
fx_write(const char *dir, const char *rel, const char *content)
{
	FILE *fp;

	fx_parent(dir, rel);
	fp = fopen(fx_path(dir, rel), "w");
	assert_non_null(fp);
	assert_int_equal(
	    fwrite(content, 1, strlen(content), fp), strlen(content));
	assert_int_equal(fclose(fp), 0);
}

void
fx_write_size(const char *dir, const char *rel, size_t size)
{
	char *buf = malloc(size + 1);

	assert_non_null(buf);
	memset(buf, 'x', size);
	buf[size] = '\0';
	fx_write(dir, rel, buf);
	free(buf);
}

void
fx_maildir(const char *dir, const char *rel)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s/cur", rel);
	fx_mkdirs(dir, buf);
	snprintf(buf, sizeof(buf), "%s/new", rel);
	fx_mkdirs(dir, buf);
	snprintf(buf, sizeof(buf), "%s/tmp", rel);
	fx_mkdirs(dir, buf);
}

struct mk_repo *
fx_repo_new(const char *dir, const char *name)
{
	char keyfile[PATH_MAX], location[PATH_MAX];
	struct mk_repo_key key = { MK_REPO_KEY_FILE, keyfile, NULL, NULL };
	struct mk_repo_init_opts opts;
	struct mk_repo *r = NULL;
	struct mk_err err;
	bool created;

	snprintf(keyfile, sizeof(keyfile), "%s/%s.key", dir, name);
	snprintf(location, sizeof(location), "%s/%s", dir, name);
	memset(&opts, 0, sizeof(opts));
	if (mk_repo_key_file_create(keyfile, &created, &err) < 0 ||
	    mk_repo_init(location, &key, &opts, &r, &err) < 0)
		fail_msg("%s", err.msg);
	return r;
}
