#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "mailkeep/catalog.h"
#include "mailkeep/mem.h"

enum catalog_stmt {
	STMT_MAILBOX_UPSERT,
	STMT_MAILBOX_ID,
	STMT_FOLDER_UPSERT,
	STMT_FOLDER_PRUNE,
	STMT_HISTORY_PUT,
	STMT_MARK_REMOVED,
	STMT_MAILBOX_GET,
	STMT_FOLDERS_GET,
	STMT_MAILBOXES_ALL,
	STMT_HISTORY_GET,
	STMT_LIMIT_PUT,
	STMT_LIMIT_DELETE,
	STMT_LIMITS_ALL,
	STMT_WARN_PUT,
	STMT_WARNS_ALL,
	STMT_COUNT,
};

static const char *const catalog_sql[STMT_COUNT] = {
	[STMT_MAILBOX_UPSERT] =
	    "INSERT INTO mailbox (address, relpath, bytes, vbytes, messages, "
	    "scanned_ns, removed_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL) ON "
	    "CONFLICT (address) DO UPDATE SET relpath = ?2, bytes = ?3, vbytes "
	    "= ?4, messages = ?5, scanned_ns = ?6, removed_ns = NULL",
	[STMT_MAILBOX_ID] = "SELECT id FROM mailbox WHERE address = ?1",
	[STMT_FOLDER_UPSERT] =
	    "INSERT INTO folder (mailbox_id, dir, name, ino, new_mtime_ns, "
	    "cur_mtime_ns, bytes, vbytes, messages, seen_ns, unsized) VALUES "
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT "
	    "(mailbox_id, dir) DO UPDATE SET name = ?3, ino = ?4, new_mtime_ns "
	    "= ?5, cur_mtime_ns = ?6, bytes = ?7, vbytes = ?8, messages = ?9, "
	    "seen_ns = ?10, unsized = ?11",
	[STMT_FOLDER_PRUNE] =
	    "DELETE FROM folder WHERE mailbox_id = ?1 AND seen_ns < ?2",
	[STMT_HISTORY_PUT] =
	    "INSERT OR REPLACE INTO usage_history (mailbox_id, day, bytes, "
	    "vbytes, messages) VALUES (?1, ?2, ?3, ?4, ?5)",
	[STMT_MARK_REMOVED] = "UPDATE mailbox SET removed_ns = ?2 WHERE "
			      "removed_ns IS NULL AND scanned_ns < ?1",
	[STMT_MAILBOX_GET] =
	    "SELECT id, relpath, bytes, vbytes, messages FROM mailbox WHERE "
	    "address = ?1 AND removed_ns IS NULL",
	[STMT_FOLDERS_GET] =
	    "SELECT dir, name, ino, new_mtime_ns, cur_mtime_ns, bytes, vbytes, "
	    "messages, unsized FROM folder WHERE mailbox_id = ?1 ORDER BY dir "
	    "= '' DESC, name",
	[STMT_MAILBOXES_ALL] = "SELECT address, scanned_ns FROM mailbox WHERE "
			       "removed_ns IS NULL ORDER BY address",
	[STMT_HISTORY_GET] =
	    "SELECT h.day, h.bytes, h.vbytes, h.messages FROM usage_history h "
	    "JOIN mailbox m ON m.id = h.mailbox_id WHERE m.address = ?1 ORDER "
	    "BY h.day DESC LIMIT ?2",
	[STMT_LIMIT_PUT] =
	    "INSERT OR REPLACE INTO quota_limit (target, bytes, messages, "
	    "bytes_set, messages_set) VALUES (?1, ?2, ?3, ?4, ?5)",
	[STMT_LIMIT_DELETE] = "DELETE FROM quota_limit WHERE target = ?1",
	[STMT_LIMITS_ALL] = "SELECT target, bytes, messages, bytes_set, "
			    "messages_set FROM quota_limit",
	[STMT_WARN_PUT] = "INSERT OR REPLACE INTO warn_state (address, state) "
			  "VALUES (?1, ?2)",
	[STMT_WARNS_ALL] = "SELECT address, state FROM warn_state",
};

/* Schema steps; step i brings user_version from i to i + 1. */
static const char *const catalog_migrations[MK_CATALOG_VERSION] = {
	"CREATE TABLE mailbox (  id INTEGER PRIMARY KEY,  address TEXT NOT "
	"NULL UNIQUE,  relpath TEXT NOT NULL,  bytes INTEGER NOT NULL,  vbytes "
	"INTEGER NOT NULL,  messages INTEGER NOT NULL,  scanned_ns INTEGER NOT "
	"NULL,  removed_ns INTEGER);CREATE TABLE folder (  id INTEGER PRIMARY "
	"KEY,  mailbox_id INTEGER NOT NULL REFERENCES mailbox (id)     ON "
	"DELETE CASCADE,  dir TEXT NOT NULL,  name TEXT NOT NULL,  ino INTEGER "
	"NOT NULL,  new_mtime_ns INTEGER NOT NULL,  cur_mtime_ns INTEGER NOT "
	"NULL,  bytes INTEGER NOT NULL,  vbytes INTEGER NOT NULL,  messages "
	"INTEGER NOT NULL,  seen_ns INTEGER NOT NULL,  unsized INTEGER NOT "
	"NULL,  UNIQUE (mailbox_id, dir));CREATE TABLE usage_history (  "
	"mailbox_id INTEGER NOT NULL REFERENCES mailbox (id)     ON DELETE "
	"CASCADE,  day INTEGER NOT NULL,  bytes INTEGER NOT NULL,  vbytes "
	"INTEGER NOT NULL,  messages INTEGER NOT NULL,  PRIMARY KEY "
	"(mailbox_id, day)) WITHOUT ROWID;",
	/* 2: limits set at run time, warning states */
	"CREATE TABLE quota_limit ("
	"  target TEXT PRIMARY KEY,"
	"  bytes INTEGER NOT NULL,"
	"  messages INTEGER NOT NULL,"
	"  bytes_set INTEGER NOT NULL,"
	"  messages_set INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE warn_state ("
	"  address TEXT PRIMARY KEY,"
	"  state TEXT NOT NULL) WITHOUT ROWID;",
};

struct mk_catalog {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmts[STMT_COUNT];
};

static int
catalog_error(struct mk_catalog *cat, struct mk_err *err, const char *what)
{
	return mk_err_set(err, "catalog %s: %s: %s", cat->path, what,
	    sqlite3_errmsg(cat->db));
}

static int
catalog_exec(struct mk_catalog *cat, const char *sql, struct mk_err *err)
{
	char *msg = NULL;

	if (sqlite3_exec(cat->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		mk_err_set(err, "catalog %s: %s", cat->path,
		    msg != NULL ? msg : sqlite3_errmsg(cat->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Read one integer from a single-row query. */
static int
catalog_query_int(struct mk_catalog *cat, const char *sql, int64_t *value_r,
    struct mk_err *err)
{
	sqlite3_stmt *st;
	int rc = -1;

	if (sqlite3_prepare_v2(cat->db, sql, -1, &st, NULL) != SQLITE_OK)
		return catalog_error(cat, err, sql);
	if (sqlite3_step(st) != SQLITE_ROW) {
		catalog_error(cat, err, sql);
		goto out;
	}
	*value_r = sqlite3_column_int64(st, 0);
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

static int
catalog_migrate(struct mk_catalog *cat, struct mk_err *err)
{
	int64_t version;
	char sql[64];

	if (catalog_exec(cat, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	if (catalog_query_int(cat, "PRAGMA user_version", &version, err) < 0)
		goto fail;
	if (version > MK_CATALOG_VERSION) {
		mk_err_set(err,
		    "catalog %s: schema version %lld is newer than this "
		    "program's %d",
		    cat->path, (long long)version, MK_CATALOG_VERSION);
		goto fail;
	}
	for (; version < MK_CATALOG_VERSION; version++)
		if (catalog_exec(cat, catalog_migrations[version], err) < 0)
			goto fail;
	snprintf(
	    sql, sizeof(sql), "PRAGMA user_version = %d", MK_CATALOG_VERSION);
	if (catalog_exec(cat, sql, err) < 0)
		goto fail;
	return catalog_exec(cat, "COMMIT", err);
fail:
	mk_catalog_rollback(cat);
	return -1;
}

int
mk_catalog_open(const char *path, struct mk_catalog **cat_r, struct mk_err *err)
{
	struct mk_catalog *cat;
	int64_t dummy;
	int fd, i;

	*cat_r = NULL;
	/* Create the file ourselves so that it is never world-readable. */
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return mk_err_sys(err, "open(%s)", path);
	close(fd);
	cat = mk_xcalloc(1, sizeof(*cat));
	cat->path = mk_xstrdup(path);
	if (sqlite3_open_v2(path, &cat->db,
		SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
		NULL) != SQLITE_OK) {
		catalog_error(cat, err, "open");
		goto fail;
	}
	sqlite3_busy_timeout(cat->db, 5000);
	if (catalog_query_int(cat, "PRAGMA journal_mode = WAL", &dummy, err) <
		0 ||
	    catalog_exec(cat,
		"PRAGMA synchronous = NORMAL;PRAGMA foreign_keys = ON",
		err) < 0 ||
	    catalog_migrate(cat, err) < 0)
		goto fail;
	for (i = 0; i < STMT_COUNT; i++)
		if (sqlite3_prepare_v3(cat->db, catalog_sql[i], -1,
			SQLITE_PREPARE_PERSISTENT, &cat->stmts[i],
			NULL) != SQLITE_OK) {
			catalog_error(cat, err, "prepare");
			goto fail;
		}
	*cat_r = cat;
	return 0;
fail:
	mk_catalog_close(&cat);
	return -1;
}

void
mk_catalog_close(struct mk_catalog **catp)
{
	struct mk_catalog *cat = *catp;
	int i;

	if (cat == NULL)
		return;
	for (i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(cat->stmts[i]);
	sqlite3_close(cat->db);
	free(cat->path);
	free(cat);
	*catp = NULL;
}

int
mk_catalog_begin(struct mk_catalog *cat, struct mk_err *err)
{
	return catalog_exec(cat, "BEGIN IMMEDIATE", err);
}

int
mk_catalog_commit(struct mk_catalog *cat, struct mk_err *err)
{
	return catalog_exec(cat, "COMMIT", err);
}

void
mk_catalog_rollback(struct mk_catalog *cat)
{
	if (!sqlite3_get_autocommit(cat->db))
		sqlite3_exec(cat->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Step a statement that returns no row, then reset it. */
static int
catalog_step_done(struct mk_catalog *cat, sqlite3_stmt *st, struct mk_err *err)
{
	int r = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, sqlite3_sql(st));
	return 0;
}

/* The id of a mailbox; 1 found, 0 absent, -1 error. */
static int
catalog_mailbox_id(struct mk_catalog *cat, const char *address, int64_t *id_r,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_MAILBOX_ID];
	int r;

	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		*id_r = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	return catalog_error(cat, err, "mailbox id");
}

int
mk_catalog_put_usage(struct mk_catalog *cat, const struct mk_mailbox_usage *mu,
    int64_t scanned_ns, int64_t now_ns, struct mk_err *err)
{
	sqlite3_stmt *st;
	int64_t id = 0;
	size_t i;

	st = cat->stmts[STMT_MAILBOX_UPSERT];
	sqlite3_bind_text(st, 1, mu->address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, mu->relpath, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, (int64_t)mu->total.bytes);
	sqlite3_bind_int64(st, 4, (int64_t)mu->total.vbytes);
	sqlite3_bind_int64(st, 5, (int64_t)mu->total.messages);
	sqlite3_bind_int64(st, 6, scanned_ns);
	if (catalog_step_done(cat, st, err) < 0)
		return -1;
	if (catalog_mailbox_id(cat, mu->address, &id, err) != 1)
		return mk_err_set(err, "catalog %s: mailbox %s vanished",
		    cat->path, mu->address);
	st = cat->stmts[STMT_FOLDER_UPSERT];
	for (i = 0; i < mu->nfolders; i++) {
		const struct mk_folder_usage *f = &mu->folders[i];

		sqlite3_bind_int64(st, 1, id);
		sqlite3_bind_text(st, 2, f->dir, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, f->name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, (int64_t)f->ino);
		sqlite3_bind_int64(st, 5, f->new_mtime_ns);
		sqlite3_bind_int64(st, 6, f->cur_mtime_ns);
		sqlite3_bind_int64(st, 7, (int64_t)f->usage.bytes);
		sqlite3_bind_int64(st, 8, (int64_t)f->usage.vbytes);
		sqlite3_bind_int64(st, 9, (int64_t)f->usage.messages);
		sqlite3_bind_int64(st, 10, now_ns);
		sqlite3_bind_int64(st, 11, (int64_t)f->unsized);
		if (catalog_step_done(cat, st, err) < 0)
			return -1;
	}
	st = cat->stmts[STMT_FOLDER_PRUNE];
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ns);
	if (catalog_step_done(cat, st, err) < 0)
		return -1;
	st = cat->stmts[STMT_HISTORY_PUT];
	sqlite3_bind_int64(st, 1, id);
	sqlite3_bind_int64(st, 2, now_ns / 1000000000 / 86400);
	sqlite3_bind_int64(st, 3, (int64_t)mu->total.bytes);
	sqlite3_bind_int64(st, 4, (int64_t)mu->total.vbytes);
	sqlite3_bind_int64(st, 5, (int64_t)mu->total.messages);
	return catalog_step_done(cat, st, err);
}

int64_t
mk_catalog_mark_removed(
    struct mk_catalog *cat, int64_t start_ns, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_MARK_REMOVED];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	sqlite3_bind_int64(st, 1, start_ns);
	sqlite3_bind_int64(st, 2, (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
	if (catalog_step_done(cat, st, err) < 0)
		return -1;
	return sqlite3_changes64(cat->db);
}

int
mk_catalog_get_usage(struct mk_catalog *cat, const char *address,
    struct mk_mailbox_usage **usage_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_MAILBOX_GET];
	struct mk_mailbox_usage *mu = NULL;
	size_t cap = 0;
	int64_t id = 0;
	int r, rc = -1;

	*usage_r = NULL;
	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	r = sqlite3_step(st);
	if (r == SQLITE_DONE) {
		rc = 0;
		goto out;
	}
	if (r != SQLITE_ROW) {
		catalog_error(cat, err, "mailbox get");
		goto out;
	}
	mu = mk_xcalloc(1, sizeof(*mu));
	id = sqlite3_column_int64(st, 0);
	mu->address = mk_xstrdup(address);
	mu->relpath = mk_xstrdup((const char *)sqlite3_column_text(st, 1));
	mu->total.bytes = (uint64_t)sqlite3_column_int64(st, 2);
	mu->total.vbytes = (uint64_t)sqlite3_column_int64(st, 3);
	mu->total.messages = (uint64_t)sqlite3_column_int64(st, 4);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	st = cat->stmts[STMT_FOLDERS_GET];
	sqlite3_bind_int64(st, 1, id);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct mk_folder_usage *f;

		mk_xgrow(
		    &mu->folders, &cap, mu->nfolders + 1, sizeof(*mu->folders));
		f = &mu->folders[mu->nfolders++];
		f->dir = mk_xstrdup((const char *)sqlite3_column_text(st, 0));
		f->name = mk_xstrdup((const char *)sqlite3_column_text(st, 1));
		f->ino = (uint64_t)sqlite3_column_int64(st, 2);
		f->new_mtime_ns = sqlite3_column_int64(st, 3);
		f->cur_mtime_ns = sqlite3_column_int64(st, 4);
		f->usage.bytes = (uint64_t)sqlite3_column_int64(st, 5);
		f->usage.vbytes = (uint64_t)sqlite3_column_int64(st, 6);
		f->usage.messages = (uint64_t)sqlite3_column_int64(st, 7);
		f->unsized = (uint64_t)sqlite3_column_int64(st, 8);
	}
	if (r != SQLITE_DONE) {
		catalog_error(cat, err, "folders get");
		goto out;
	}
	*usage_r = mu;
	mu = NULL;
	rc = 1;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	mk_mailbox_usage_free(&mu);
	return rc;
}

int
mk_catalog_load_all(struct mk_catalog *cat, mk_catalog_usage_cb *cb, void *arg,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_MAILBOXES_ALL];
	struct mk_mailbox_usage *mu = NULL;
	char **addresses = NULL;
	int64_t *times = NULL;
	size_t n = 0, cap = 0, tcap = 0, i;
	int r, rc = -1;

	/* Collect the addresses first: the statement cannot stay open
	 * while the per-mailbox statements run. */
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		mk_xgrow(&addresses, &cap, n + 1, sizeof(*addresses));
		mk_xgrow(&times, &tcap, n + 1, sizeof(*times));
		addresses[n] =
		    mk_xstrdup((const char *)sqlite3_column_text(st, 0));
		times[n++] = sqlite3_column_int64(st, 1);
	}
	sqlite3_reset(st);
	if (r != SQLITE_DONE) {
		catalog_error(cat, err, "mailboxes");
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = mk_catalog_get_usage(cat, addresses[i], &mu, err);
		if (r < 0)
			goto out;
		if (r == 1)
			cb(mu, times[i], arg);
	}
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(addresses[i]);
	free(addresses);
	free(times);
	return rc;
}

int
mk_catalog_get_history(struct mk_catalog *cat, const char *address,
    unsigned max_days, mk_catalog_history_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_HISTORY_GET];
	int r;

	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, max_days);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct mk_usage u;

		u.bytes = (uint64_t)sqlite3_column_int64(st, 1);
		u.vbytes = (uint64_t)sqlite3_column_int64(st, 2);
		u.messages = (uint64_t)sqlite3_column_int64(st, 3);
		cb(sqlite3_column_int64(st, 0), &u, arg);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "history");
	return 0;
}

int
mk_catalog_limit_put(struct mk_catalog *cat, const char *target,
    const struct mk_quota_limits *l, struct mk_err *err)
{
	sqlite3_stmt *st;

	if (l->bytes_from == MK_QUOTA_SOURCE_NONE &&
	    l->messages_from == MK_QUOTA_SOURCE_NONE) {
		st = cat->stmts[STMT_LIMIT_DELETE];
		sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
		return catalog_step_done(cat, st, err);
	}
	st = cat->stmts[STMT_LIMIT_PUT];
	sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (int64_t)l->bytes);
	sqlite3_bind_int64(st, 3, (int64_t)l->messages);
	sqlite3_bind_int(st, 4, l->bytes_from != MK_QUOTA_SOURCE_NONE);
	sqlite3_bind_int(st, 5, l->messages_from != MK_QUOTA_SOURCE_NONE);
	return catalog_step_done(cat, st, err);
}

int
mk_catalog_limits_load(struct mk_catalog *cat, mk_catalog_limit_cb *cb,
    void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_LIMITS_ALL];
	int r;

	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct mk_quota_limits l;

		memset(&l, 0, sizeof(l));
		l.bytes = (uint64_t)sqlite3_column_int64(st, 1);
		l.messages = (uint64_t)sqlite3_column_int64(st, 2);
		if (sqlite3_column_int(st, 3))
			l.bytes_from = MK_QUOTA_SOURCE_CATALOG;
		if (sqlite3_column_int(st, 4))
			l.messages_from = MK_QUOTA_SOURCE_CATALOG;
		cb((const char *)sqlite3_column_text(st, 0), &l, arg);
	}
	sqlite3_reset(st);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "limits");
	return 0;
}

int
mk_catalog_warn_put(struct mk_catalog *cat, const char *address,
    const char *state, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_WARN_PUT];

	sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
	return catalog_step_done(cat, st, err);
}

int
mk_catalog_warns_load(struct mk_catalog *cat, mk_catalog_warn_cb *cb, void *arg,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_WARNS_ALL];
	int r;

	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		cb((const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 1), arg);
	sqlite3_reset(st);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "warning states");
	return 0;
}
