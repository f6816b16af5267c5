#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mailkeep/mem.h"
#include "mailkeep/restore.h"
#include "mailkeep/str.h"
#include "mailkeep/verify.h"

/* The newest snapshot of a mailbox. */
static void
verify_newest_cb(const struct mk_catalog_snapshot *s, void *arg)
{
	int64_t *newest = arg;

	if (s->id > *newest)
		*newest = s->id;
}

/* The catalog's side: each message's path and size. */
struct verify_want {
	struct verify_file {
		char *path; /* "<dir>/cur/<base><suffix>", dir "" for INBOX */
		uint64_t size;
	} * v;
	size_t n, cap;
};

static void
verify_want_cb(const struct mk_catalog_version *v, void *arg)
{
	struct verify_want *w = arg;

	mk_xgrow(&w->v, &w->cap, w->n + 1, sizeof(*w->v));
	w->v[w->n].path =
	    mk_xasprintf("%s%s%s/%s%s", v->dir, v->dir[0] != '\0' ? "/" : "",
		v->cur ? "cur" : "new", v->base, v->suffix);
	w->v[w->n++].size = v->size;
}

static int
verify_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)f;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

int
mk_verify_restore(struct mk_repo *repo, struct mk_catalog *cat,
    const char *address, const char *scratch, struct mk_verify_stats *stats_r,
    struct mk_err *err)
{
	struct mk_restore_stats rs;
	struct verify_want want;
	char *top = NULL, *dir = NULL;
	struct stat st;
	int dirfd = -1, rc = -1;
	size_t i;

	memset(stats_r, 0, sizeof(*stats_r));
	memset(&want, 0, sizeof(want));
	memset(&rs, 0, sizeof(rs));
	if (mk_catalog_snapshots(
		cat, address, verify_newest_cb, &stats_r->snapshot, err) < 0)
		return -1;
	if (stats_r->snapshot == 0)
		return mk_err_set(err, "%s: no snapshot to restore", address);
	if (mk_catalog_versions_at(cat, address, stats_r->snapshot,
		verify_want_cb, &want, err) < 0)
		goto out;
	stats_r->expected = want.n;
	top = mk_xasprintf("%s/test-restore-XXXXXX", scratch);
	if (mkdtemp(top) == NULL) {
		mk_err_sys(err, "mkdtemp(%s)", top);
		free(top);
		top = NULL;
		goto out;
	}
	dir = mk_xasprintf("%s/mailbox", top);
	if (mk_restore_mailbox(
		repo, cat, stats_r->snapshot, address, dir, &rs, err) < 0)
		goto out;
	stats_r->messages = rs.messages;
	stats_r->bytes = rs.bytes;
	if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		mk_err_sys(err, "open(%s)", dir);
		goto out;
	}
	for (i = 0; i < want.n; i++) {
		if (fstatat(dirfd, want.v[i].path, &st, AT_SYMLINK_NOFOLLOW) <
			0 ||
		    !S_ISREG(st.st_mode)) {
			if (stats_r->missing++ == 0)
				mk_err_set(err, "%s: %s is not restored",
				    address, want.v[i].path);
		} else if ((uint64_t)st.st_size != want.v[i].size &&
		    stats_r->differ++ == 0 && stats_r->missing == 0)
			mk_err_set(err,
			    "%s: %s is restored with %lld bytes, the catalog "
			    "says %llu",
			    address, want.v[i].path, (long long)st.st_size,
			    (unsigned long long)want.v[i].size);
	}
	if (stats_r->missing == 0 && stats_r->differ == 0 &&
	    stats_r->messages != stats_r->expected)
		mk_err_set(err,
		    "%s: %llu messages restored, the catalog has %llu", address,
		    (unsigned long long)stats_r->messages,
		    (unsigned long long)stats_r->expected);
	else if (stats_r->missing == 0 && stats_r->differ == 0)
		rc = 0;
out:
	if (rc < 0 && stats_r->snapshot != 0)
		mk_err_prefix(err, "test restore of snapshot %lld",
		    (long long)stats_r->snapshot);
	if (dirfd >= 0)
		close(dirfd);
	if (top != NULL)
		(void)nftw(top, verify_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	for (i = 0; i < want.n; i++)
		free(want.v[i].path);
	free(want.v);
	free(dir);
	free(top);
	return rc;
}
