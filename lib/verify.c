#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/fsutil.h"
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

/* The results file */

#define VERIFY_RESULTS_MAGIC "mailkeep verify results"

static const char *const verify_kind_names[MK_VERIFY_KINDS] = { "check",
	"test-restore" };

const char *
mk_verify_kind_name(enum mk_verify_kind kind)
{
	return verify_kind_names[kind];
}

void
mk_verify_results_clear(struct mk_verify_results *r)
{
	size_t k;

	for (k = 0; k < MK_VERIFY_KINDS; k++) {
		free(r->kind[k].error);
		free(r->kind[k].mailbox);
	}
	memset(r, 0, sizeof(*r));
}

static json_t *
verify_string_or_null(const char *s)
{
	json_t *j = s != NULL ? json_string(s) : json_null();

	/* An error may quote a file name that is not UTF-8. */
	return j != NULL ? j : json_string("(not UTF-8)");
}

int
mk_verify_results_encode(
    const struct mk_verify_results *r, char **json_r, struct mk_err *err)
{
	json_t *obj, *kinds;
	size_t k;

	*json_r = NULL;
	kinds = json_object();
	for (k = 0; k < MK_VERIFY_KINDS; k++) {
		const struct mk_verify_last *l = &r->kind[k];

		json_object_set_new(kinds, verify_kind_names[k],
		    json_pack("{s:I, s:I, s:I, s:o, s:I, s:b, s:I, s:o}",
			"success_ns", (json_int_t)l->success_ns, "failure_ns",
			(json_int_t)l->failure_ns, "failures",
			(json_int_t)l->failures, "error",
			verify_string_or_null(l->error), "ended_ns",
			(json_int_t)l->ended_ns, "ok", (int)l->ok, "problems",
			(json_int_t)l->problems, "mailbox",
			verify_string_or_null(l->mailbox)));
	}
	obj = json_pack("{s:s, s:i, s:o}", "magic", VERIFY_RESULTS_MAGIC,
	    "version", 1, "kinds", kinds);
	if (obj == NULL)
		return mk_err_set(err, "verify results: cannot encode");
	*json_r = json_dumps(obj, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(obj);
	if (*json_r == NULL)
		return mk_err_set(err, "verify results: cannot encode");
	return 0;
}

/* One kind's member; strings copied into l. */
static int
verify_last_decode(
    json_t *o, const char *name, struct mk_verify_last *l, struct mk_err *err)
{
	json_int_t success, failure, failures, ended, problems;
	json_t *error, *mailbox;
	json_error_t jerr;
	int ok;

	if (json_unpack_ex(o, &jerr, JSON_STRICT,
		"{s:I, s:I, s:I, s:o, s:I, s:b, s:I, s:o}", "success_ns",
		&success, "failure_ns", &failure, "failures", &failures,
		"error", &error, "ended_ns", &ended, "ok", &ok, "problems",
		&problems, "mailbox", &mailbox) < 0)
		return mk_err_set(err, "%s: %s", name, jerr.text);
	if (success < 0 || failure < 0 || failures < 0 || ended < 0 ||
	    problems < 0)
		return mk_err_set(err, "%s: a negative number", name);
	if ((!json_is_null(error) && !json_is_string(error)) ||
	    (!json_is_null(mailbox) && !json_is_string(mailbox)))
		return mk_err_set(
		    err, "%s: error and mailbox are strings or null", name);
	l->success_ns = success;
	l->failure_ns = failure;
	l->failures = (uint64_t)failures;
	l->ended_ns = ended;
	l->ok = ok != 0;
	l->problems = (uint64_t)problems;
	l->error =
	    json_is_string(error) ? mk_xstrdup(json_string_value(error)) : NULL;
	l->mailbox = json_is_string(mailbox)
	    ? mk_xstrdup(json_string_value(mailbox))
	    : NULL;
	return 0;
}

int
mk_verify_results_decode(const char *data, size_t len,
    struct mk_verify_results *r, struct mk_err *err)
{
	const char *magic;
	json_int_t version;
	json_error_t jerr;
	json_t *obj, *kinds;
	int rc = -1;
	size_t k;

	memset(r, 0, sizeof(*r));
	if (len > MK_VERIFY_RESULTS_MAX)
		return mk_err_set(err, "verify results of %zu bytes", len);
	if ((obj = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL)
		return mk_err_set(
		    err, "verify results: %s (line %d)", jerr.text, jerr.line);
	if (json_unpack_ex(obj, &jerr, JSON_STRICT, "{s:s, s:I, s:o}", "magic",
		&magic, "version", &version, "kinds", &kinds) < 0) {
		mk_err_set(err, "verify results: %s", jerr.text);
		goto out;
	}
	if (strcmp(magic, VERIFY_RESULTS_MAGIC) != 0 || version != 1) {
		mk_err_set(err, "verify results: not version 1 of the format");
		goto out;
	}
	if (!json_is_object(kinds) ||
	    json_object_size(kinds) != MK_VERIFY_KINDS) {
		mk_err_set(err, "verify results: kinds: check, test-restore");
		goto out;
	}
	for (k = 0; k < MK_VERIFY_KINDS; k++)
		if (verify_last_decode(
			json_object_get(kinds, verify_kind_names[k]),
			verify_kind_names[k], &r->kind[k], err) < 0) {
			mk_err_prefix(err, "verify results");
			goto out;
		}
	rc = 0;
out:
	if (rc < 0)
		mk_verify_results_clear(r);
	json_decref(obj);
	return rc;
}

int
mk_verify_results_load(
    const char *dir, struct mk_verify_results *r, struct mk_err *err)
{
	char *path, *data = NULL;
	size_t len;
	int rc = -1;

	memset(r, 0, sizeof(*r));
	path = mk_xasprintf("%s/%s", dir, MK_VERIFY_RESULTS_FILE);
	if (mk_fs_read_file(path, MK_VERIFY_RESULTS_MAX, &data, &len, err) <
	    0) {
		if (err->sys_errno == ENOENT)
			rc = 0;
		goto out;
	}
	if (mk_verify_results_decode(data, len, r, err) < 0) {
		mk_err_prefix(err, "%s", path);
		goto out;
	}
	rc = 1;
out:
	free(data);
	free(path);
	return rc;
}

int
mk_verify_results_save(
    const char *dir, const struct mk_verify_results *r, struct mk_err *err)
{
	char *json = NULL;
	int dirfd, rc = -1;

	if (mk_verify_results_encode(r, &json, err) < 0)
		return -1;
	if ((dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		mk_err_sys(err, "open(%s)", dir);
		goto out;
	}
	rc = mk_fs_write_atomic(
	    dirfd, MK_VERIFY_RESULTS_FILE, json, strlen(json), 0600, err);
	close(dirfd);
out:
	free(json);
	return rc;
}
