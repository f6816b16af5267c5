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
#include "mailkeep/crypto.h"
#include "mailkeep/header.h"
#include "mailkeep/mem.h"

enum catalog_stmt {
	STMT_MAILBOX_UPSERT,
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
	STMT_BK_MAILBOX_ADD,
	STMT_BK_MAILBOX_ID,
	STMT_DIR_ADD,
	STMT_DIR_ID,
	STMT_PACK_ADD,
	STMT_BLOB_ADD,
	STMT_BLOB_GET,
	STMT_BLOB_GET_REUSABLE,
	STMT_BLOB_REF,
	STMT_PACK_ID,
	STMT_PACK_TOMBSTONE,
	STMT_PACK_REVIVE,
	STMT_PACK_BLOBS_DROP,
	STMT_PACK_DROP,
	STMT_KEEP_ADD,
	STMT_RUN_ADD,
	STMT_RUN_END,
	STMT_RUNS_OPEN,
	STMT_SNAPSHOT_ADD,
	STMT_SNAPSHOT_GET,
	STMT_SNAPSHOTS_ALL,
	STMT_SNAPSHOTS_MAILBOX,
	STMT_SNAPSHOTS_RUN,
	STMT_MESSAGE_ADD,
	STMT_CHUNK_ADD,
	STMT_CHUNKS_GET,
	STMT_VERSION_ADD,
	STMT_VERSION_VANISH,
	STMT_VERSIONS_AT,
	STMT_HEADER_PUT,
	STMT_LIST_AT,
	STMT_STAMPS_GET,
	STMT_STAMP_PUT,
	STMT_STAMP_DROP,
	STMT_COUNT,
};

/* The versions of mailbox ?3 alive at snapshot ?2, as v: two index
 * ranges (alive now, and vanished after the snapshot), so "now" costs
 * the live versions, not the whole history. */
#define CATALOG_ALIVE_AT                                                       \
	"(SELECT id FROM message_version WHERE mailbox = ?3 AND vanished IS "  \
	"NULL AND appeared <= ?2 UNION ALL SELECT id FROM message_version "    \
	"WHERE mailbox = ?3 AND vanished > ?2 AND appeared <= ?2) a JOIN "     \
	"message_version v ON v.id = a.id"

/* The columns of struct mk_catalog_snapshot, for the statements below. */
#define CATALOG_SNAPSHOT_SELECT                                                \
	"SELECT s.id, s.run, m.address, s.time_ns, s.messages, s.bytes, b.id " \
	"FROM snapshot s JOIN backup_mailbox m ON m.id = s.mailbox JOIN blob " \
	"b ON b.ref = s.object "

static const char *const catalog_sql[STMT_COUNT] = {
	[STMT_MAILBOX_UPSERT] =
	    "INSERT INTO mailbox (address, relpath, bytes, vbytes, messages, "
	    "scanned_ns, removed_ns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL) ON "
	    "CONFLICT (address) DO UPDATE SET relpath = ?2, bytes = ?3, vbytes "
	    "= ?4, messages = ?5, scanned_ns = ?6, removed_ns = NULL RETURNING "
	    "id",
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
	[STMT_BK_MAILBOX_ADD] = "INSERT INTO backup_mailbox (address) VALUES "
				"(?1) ON CONFLICT (address) DO NOTHING",
	[STMT_BK_MAILBOX_ID] =
	    "SELECT id FROM backup_mailbox WHERE address = ?1",
	[STMT_DIR_ADD] = "INSERT INTO dir_name (name) VALUES (?1) ON CONFLICT "
			 "(name) DO NOTHING",
	[STMT_DIR_ID] = "SELECT id FROM dir_name WHERE name = ?1",
	[STMT_PACK_ADD] = "INSERT INTO pack (name, size, created_ns) VALUES "
			  "(?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
	/* A blob keeps its first place, unless that pack is tombstoned
	 * (repacked or unused): then the new copy is where it is. */
	[STMT_BLOB_ADD] =
	    "INSERT INTO blob (id, pack, offset, length, raw_length, type, "
	    "compression, dict) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON "
	    "CONFLICT (id) DO UPDATE SET pack = excluded.pack, offset = "
	    "excluded.offset, length = excluded.length, raw_length = "
	    "excluded.raw_length, compression = excluded.compression, dict = "
	    "excluded.dict WHERE blob.pack IN (SELECT id "
	    "FROM pack WHERE tombstoned_ns IS NOT NULL) AND excluded.pack IN "
	    "(SELECT id FROM pack WHERE tombstoned_ns IS NULL)",
	[STMT_BLOB_GET] =
	    "SELECT p.name, b.offset, b.length, b.raw_length, b.type, "
	    "b.compression, b.dict FROM blob b JOIN pack p ON p.id = b.pack "
	    "WHERE b.id = ?1",
	[STMT_BLOB_GET_REUSABLE] =
	    "SELECT p.name, b.offset, b.length, b.raw_length, b.type, "
	    "b.compression, b.dict FROM blob b JOIN pack p ON p.id = b.pack "
	    "WHERE b.id = ?1 AND p.tombstoned_ns IS NULL",
	[STMT_BLOB_REF] = "SELECT ref FROM blob WHERE id = ?1",
	[STMT_PACK_ID] = "SELECT id FROM pack WHERE name = ?1",
	[STMT_PACK_TOMBSTONE] = "UPDATE pack SET tombstoned_ns = ?2 WHERE name "
				"= ?1 AND tombstoned_ns IS NULL",
	[STMT_PACK_REVIVE] =
	    "UPDATE pack SET tombstoned_ns = NULL WHERE name = ?1",
	/* The blobs of a deleted pack that nothing refers to any more. */
	[STMT_PACK_BLOBS_DROP] =
	    "DELETE FROM blob WHERE pack = ?1 AND NOT EXISTS (SELECT 1 FROM "
	    "message WHERE header = blob.ref) AND NOT EXISTS (SELECT 1 FROM "
	    "message WHERE body = blob.ref) AND NOT EXISTS (SELECT 1 FROM "
	    "message_chunk WHERE blob = blob.ref) AND NOT EXISTS (SELECT 1 "
	    "FROM snapshot WHERE object = blob.ref)",
	[STMT_PACK_DROP] = "DELETE FROM pack WHERE id = ?1 AND NOT EXISTS "
			   "(SELECT 1 FROM blob WHERE pack = ?1)",
	[STMT_KEEP_ADD] = "INSERT OR IGNORE INTO temp.prune_keep (run, "
			  "address) VALUES (?1, ?2)",
	[STMT_RUN_ADD] = "INSERT INTO run (name, started_ns) VALUES (?1, ?2)",
	[STMT_RUN_END] = "UPDATE run SET ended_ns = ?2 WHERE id = ?1",
	[STMT_RUNS_OPEN] = "SELECT id, name, started_ns FROM run WHERE "
			   "ended_ns IS NULL ORDER BY id",
	[STMT_SNAPSHOT_ADD] =
	    "INSERT INTO snapshot (run, mailbox, time_ns, messages, bytes, "
	    "object) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[STMT_SNAPSHOT_GET] = CATALOG_SNAPSHOT_SELECT "WHERE s.id = ?1",
	[STMT_SNAPSHOTS_ALL] = CATALOG_SNAPSHOT_SELECT "ORDER BY s.id",
	[STMT_SNAPSHOTS_MAILBOX] =
	    CATALOG_SNAPSHOT_SELECT "WHERE m.address = ?1 ORDER BY s.id",
	[STMT_SNAPSHOTS_RUN] =
	    CATALOG_SNAPSHOT_SELECT "WHERE s.run = ?1 ORDER BY m.address, s.id",
	[STMT_MESSAGE_ADD] = "INSERT INTO message (base, size, header, body) "
			     "VALUES (?1, ?2, ?3, ?4)",
	[STMT_CHUNK_ADD] = "INSERT INTO message_chunk (message, seq, blob) "
			   "VALUES (?1, ?2, ?3)",
	[STMT_CHUNKS_GET] =
	    "SELECT b.id FROM message_chunk c JOIN blob b ON "
	    "b.ref = c.blob WHERE c.message = ?1 ORDER BY c.seq",
	[STMT_VERSION_ADD] =
	    "INSERT INTO message_version (mailbox, message, dir, suffix, cur, "
	    "mtime_ns, appeared) SELECT mailbox, ?2, ?3, ?4, ?5, ?6, id FROM "
	    "snapshot WHERE id = ?1",
	[STMT_VERSION_VANISH] = "UPDATE message_version SET vanished = ?2 "
				"WHERE id = ?1 AND vanished IS NULL",
	/* Two index ranges: alive now, and vanished after the snapshot;
	 * so "now" costs the live versions, not the whole history. */
	[STMT_VERSIONS_AT] =
	    "SELECT v.id, v.message, d.name, m.base, v.suffix, v.cur, "
	    "v.mtime_ns, m.size, hb.id, bb.id, m.body IS NULL, v.appeared, "
	    "v.vanished FROM " CATALOG_ALIVE_AT " JOIN "
	    "message m ON m.id = v.message JOIN dir_name d ON d.id = v.dir "
	    "LEFT JOIN blob hb ON hb.ref = m.header LEFT JOIN blob bb ON "
	    "bb.ref = m.body",
	[STMT_HEADER_PUT] =
	    "INSERT INTO message_header (header, message_id, sender, "
	    "recipients, subject, date) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON "
	    "CONFLICT (header) DO NOTHING",
	[STMT_LIST_AT] =
	    "SELECT d.name, m.base, v.suffix, v.cur, v.mtime_ns, m.size, "
	    "h.header IS NOT NULL, h.message_id, h.sender, h.recipients, "
	    "h.subject, h.date FROM " CATALOG_ALIVE_AT " JOIN message m ON "
	    "m.id = v.message JOIN dir_name d ON d.id = v.dir LEFT JOIN blob "
	    "hb ON hb.ref = m.header LEFT JOIN message_header h ON h.header = "
	    "hb.id ORDER BY d.name, v.mtime_ns, m.base",
	/* Only stamps whose blob a backup may still reuse. */
	[STMT_STAMPS_GET] =
	    "SELECT s.dir, s.name, s.dev, s.ino, s.size, s.mtime_ns, "
	    "s.ctime_ns, s.blob FROM backup_stamp s JOIN backup_mailbox m ON "
	    "m.id = s.mailbox WHERE m.address = ?1 AND (s.blob IS NULL OR "
	    "EXISTS (SELECT 1 FROM blob b JOIN pack p ON p.id = b.pack WHERE "
	    "b.id = s.blob AND p.tombstoned_ns IS NULL))",
	[STMT_STAMP_PUT] =
	    "INSERT OR REPLACE INTO backup_stamp (mailbox, dir, name, dev, "
	    "ino, size, mtime_ns, ctime_ns, blob) VALUES ((SELECT id FROM "
	    "backup_mailbox WHERE address = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
	    "?9)",
	[STMT_STAMP_DROP] =
	    "DELETE FROM backup_stamp WHERE mailbox = (SELECT id FROM "
	    "backup_mailbox WHERE address = ?1) AND dir = ?2 AND name = ?3",
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
	/*
	 * 3: backups.  Packs and where each blob is; runs and mailbox
	 * snapshots; messages (a base name and its blobs, which never
	 * change) and their versions (where, under which name, from which
	 * snapshot until which).  Snapshot ids only grow (AUTOINCREMENT), so
	 * "alive at S" is appeared <= S and (vanished IS NULL or vanished >
	 * S).  Names and blob ids are integer references.
	 */
	"CREATE TABLE backup_mailbox ("
	"  id INTEGER PRIMARY KEY,"
	"  address TEXT NOT NULL UNIQUE);"
	"CREATE TABLE dir_name ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE);"
	"CREATE TABLE pack ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  size INTEGER NOT NULL,"
	"  created_ns INTEGER NOT NULL);"
	"CREATE TABLE blob ("
	"  ref INTEGER PRIMARY KEY,"
	"  id BLOB NOT NULL UNIQUE CHECK (length(id) = 32),"
	"  pack INTEGER NOT NULL REFERENCES pack (id),"
	"  offset INTEGER NOT NULL,"
	"  length INTEGER NOT NULL,"
	"  raw_length INTEGER NOT NULL,"
	"  type INTEGER NOT NULL,"
	"  compression INTEGER NOT NULL);"
	"CREATE TABLE run ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  started_ns INTEGER NOT NULL,"
	"  ended_ns INTEGER);"
	"CREATE TABLE snapshot ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  run INTEGER NOT NULL REFERENCES run (id),"
	"  mailbox INTEGER NOT NULL REFERENCES backup_mailbox (id),"
	"  time_ns INTEGER NOT NULL,"
	"  messages INTEGER NOT NULL,"
	"  bytes INTEGER NOT NULL,"
	"  object INTEGER NOT NULL REFERENCES blob (ref));"
	"CREATE INDEX snapshot_mailbox ON snapshot (mailbox, id);"
	"CREATE INDEX snapshot_run ON snapshot (run);"
	"CREATE TABLE message ("
	"  id INTEGER PRIMARY KEY,"
	"  base TEXT NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  header INTEGER REFERENCES blob (ref),"
	"  body INTEGER REFERENCES blob (ref));"
	"CREATE TABLE message_chunk ("
	"  message INTEGER NOT NULL REFERENCES message (id),"
	"  seq INTEGER NOT NULL,"
	"  blob INTEGER NOT NULL REFERENCES blob (ref),"
	"  PRIMARY KEY (message, seq)) WITHOUT ROWID;"
	"CREATE TABLE message_version ("
	"  id INTEGER PRIMARY KEY,"
	"  mailbox INTEGER NOT NULL REFERENCES backup_mailbox (id),"
	"  message INTEGER NOT NULL REFERENCES message (id),"
	"  dir INTEGER NOT NULL REFERENCES dir_name (id),"
	"  suffix TEXT NOT NULL,"
	"  cur INTEGER NOT NULL,"
	"  mtime_ns INTEGER NOT NULL,"
	"  appeared INTEGER NOT NULL REFERENCES snapshot (id),"
	"  vanished INTEGER REFERENCES snapshot (id));"
	"CREATE INDEX message_version_alive ON message_version"
	"  (mailbox, vanished, appeared);",
	/*
	 * 4: the header fields people search by, per header blob (so per
	 * message content, recorded once however many mailboxes hold it),
	 * filled when a backup reads a message.  Keyed by the blob's id,
	 * not its ref, because the row is written before the pack that
	 * holds the blob is recorded.  Messages backed up before have no
	 * row.
	 */
	"CREATE TABLE message_header ("
	"  header BLOB PRIMARY KEY CHECK (length(header) = 32),"
	"  message_id TEXT NOT NULL,"
	"  sender TEXT NOT NULL,"
	"  recipients TEXT NOT NULL,"
	"  subject TEXT NOT NULL,"
	"  date INTEGER NOT NULL) WITHOUT ROWID;",
	/*
	 * 5: prune.  A pack with a tombstone (repacked, or no live blob) is
	 * never reused by a backup; the indexes let prune drop snapshots,
	 * versions, messages and blobs without scanning every table once
	 * per row.
	 */
	"ALTER TABLE pack ADD COLUMN tombstoned_ns INTEGER;"
	"CREATE INDEX message_version_message ON message_version (message);"
	"CREATE INDEX message_by_header ON message (header);"
	"CREATE INDEX message_body ON message (body);"
	"CREATE INDEX message_chunk_blob ON message_chunk (blob);"
	"CREATE INDEX snapshot_object ON snapshot (object);",
	/*
	 * 6: dictionaries.  The id of the dictionary a blob was compressed
	 * with (compression 2), NULL otherwise.
	 */
	("ALTER TABLE blob ADD COLUMN dict BLOB CHECK (dict IS NULL OR "
	 "length(dict) = 32);"),
	/*
	 * 7: what a backup last stored of a folder's small files
	 * (dovecot-uidlist, dovecot-keywords, maildirfolder, the
	 * mailbox's subscriptions): the file's stamp and the id of the one
	 * blob that holds it (NULL for an empty file).  An unchanged stamp
	 * lets the next backup reuse the blob without reading the file.
	 * Keyed by the blob's id, not its ref: prune may drop the blob, and
	 * a stamp whose blob is gone or not reusable is ignored.
	 */
	"CREATE TABLE backup_stamp ("
	"  mailbox INTEGER NOT NULL REFERENCES backup_mailbox (id)"
	"    ON DELETE CASCADE,"
	"  dir TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  dev INTEGER NOT NULL,"
	"  ino INTEGER NOT NULL,"
	"  size INTEGER NOT NULL,"
	"  mtime_ns INTEGER NOT NULL,"
	"  ctime_ns INTEGER NOT NULL,"
	"  blob BLOB CHECK (blob IS NULL OR length(blob) = 32),"
	"  PRIMARY KEY (mailbox, dir, name)) WITHOUT ROWID;",
};

/* Header rows put outside a transaction wait for the next one. */
#define CATALOG_HEADERS_QUEUED 128

struct mk_catalog {
	sqlite3 *db;
	char *path;
	sqlite3_stmt *stmts[STMT_COUNT];
	struct catalog_header_row {
		uint8_t id[MK_PACK_ID_LEN];
		struct mk_header h;
	} * headers; /* CATALOG_HEADERS_QUEUED, allocated when first used */
	size_t nheaders;
};

static void catalog_headers_flush(struct mk_catalog *cat);

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
	int64_t version = 0;
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
	struct stat st;
	int64_t dummy;
	int fd, i;

	*cat_r = NULL;
	/*
	 * Create the file ourselves so that it is never world-readable.  An
	 * existing one is not opened here: closing a descriptor of it would
	 * drop the fcntl locks that this process's other connections hold,
	 * and another process could then delete the WAL under them.
	 */
	fd = open(
	    path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	else if (errno != EEXIST)
		return mk_err_sys(err, "open(%s)", path);
	else if (lstat(path, &st) < 0)
		return mk_err_sys(err, "lstat(%s)", path);
	else if (S_ISLNK(st.st_mode))
		return mk_err_set(err, "%s: a symbolic link", path);
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
	    catalog_migrate(cat, err) < 0 ||
	    catalog_exec(cat,
		"CREATE TEMP TABLE prune_keep (run TEXT NOT NULL, address "
		"TEXT NOT NULL, PRIMARY KEY (run, address)) WITHOUT ROWID;"
		"CREATE TEMP TABLE prune_forget (id INTEGER PRIMARY KEY)",
		err) < 0)
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
	if (cat->nheaders > 0 &&
	    sqlite3_exec(cat->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) ==
		SQLITE_OK) {
		catalog_headers_flush(cat);
		if (sqlite3_exec(cat->db, "COMMIT", NULL, NULL, NULL) !=
		    SQLITE_OK)
			mk_catalog_rollback(cat);
	}
	for (i = 0; i < STMT_COUNT; i++)
		sqlite3_finalize(cat->stmts[i]);
	sqlite3_close(cat->db);
	free(cat->headers);
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
	catalog_headers_flush(cat);
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
	if (sqlite3_step(st) != SQLITE_ROW) {
		catalog_error(cat, err, "mailbox upsert");
		sqlite3_reset(st);
		sqlite3_clear_bindings(st);
		return -1;
	}
	id = sqlite3_column_int64(st, 0);
	if (catalog_step_done(cat, st, err) < 0)
		return -1;
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

/*
 * A bind that failed (a string over SQLite's limit, say) is an error
 * like any other: rc is the bitwise or of the sqlite3_bind_*() results.
 */
static int
catalog_bound(
    struct mk_catalog *cat, sqlite3_stmt *st, int rc, struct mk_err *err)
{
	if (rc == SQLITE_OK)
		return 0;
	catalog_error(cat, err, "bind");
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return -1;
}

/* A blob id from a column; -1 when the column does not hold one. */
static int
catalog_column_id(sqlite3_stmt *st, int col, uint8_t id[MK_PACK_ID_LEN])
{
	const void *p = sqlite3_column_blob(st, col);

	if (p == NULL || sqlite3_column_bytes(st, col) != MK_PACK_ID_LEN)
		return -1;
	memcpy(id, p, MK_PACK_ID_LEN);
	return 0;
}

/*
 * The dictionary id column of a blob into e: NULL unless e is
 * compressed with a dictionary; -1 when they disagree.
 */
static int
catalog_column_dict(sqlite3_stmt *st, int col, struct mk_pack_entry *e)
{
	memset(e->dict_id, 0, MK_PACK_ID_LEN);
	if (e->compression != MK_PACK_ZSTD_DICT)
		return sqlite3_column_type(st, col) == SQLITE_NULL ? 0 : -1;
	return catalog_column_id(st, col, e->dict_id);
}

/* Run a single-row lookup bound by the caller: 1 row, 0 none, -1 error. */
static int
catalog_lookup_int(struct mk_catalog *cat, sqlite3_stmt *st, int64_t *value_r,
    struct mk_err *err)
{
	int r = sqlite3_step(st);

	if (r == SQLITE_ROW)
		*value_r = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	return catalog_error(cat, err, sqlite3_sql(st));
}

/* The id of a name in an interning table, added when missing. */
static int
catalog_intern(struct mk_catalog *cat, enum catalog_stmt add,
    enum catalog_stmt get, const char *name, int64_t *id_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[add];

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC), err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	st = cat->stmts[get];
	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC), err) < 0)
		return -1;
	switch (catalog_lookup_int(cat, st, id_r, err)) {
	case 1:
		return 0;
	case 0:
		return mk_err_set(
		    err, "catalog %s: '%s' vanished", cat->path, name);
	default:
		return -1;
	}
}

/* The row of a recorded blob; a blob not recorded is an error. */
static int
catalog_blob_ref(struct mk_catalog *cat, const uint8_t id[MK_PACK_ID_LEN],
    int64_t *ref_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_BLOB_REF];
	char hex[17];
	int r;

	if (catalog_bound(cat, st,
		sqlite3_bind_blob(st, 1, id, MK_PACK_ID_LEN, SQLITE_STATIC),
		err) < 0)
		return -1;
	if ((r = catalog_lookup_int(cat, st, ref_r, err)) == 1)
		return 0;
	if (r == 0) {
		mk_crypto_hex(id, 8, hex);
		mk_err_set(
		    err, "catalog %s: blob %s is not recorded", cat->path, hex);
	}
	return -1;
}

/* Step an insert or update that must change exactly one row. */
static int
catalog_step_one(struct mk_catalog *cat, sqlite3_stmt *st, const char *what,
    struct mk_err *err)
{
	if (catalog_step_done(cat, st, err) < 0)
		return -1;
	if (sqlite3_changes(cat->db) != 1)
		return mk_err_set(err, "catalog %s: %s", cat->path, what);
	return 0;
}

int
mk_catalog_pack_add(struct mk_catalog *cat, const struct mk_pack *pack,
    int64_t created_ns, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_PACK_ADD];
	int64_t ref;
	size_t i;

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, pack->id, -1, SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 2, (int64_t)pack->len) |
		    sqlite3_bind_int64(st, 3, created_ns),
		err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	/* Recorded before (prune records a repacked pack twice). */
	st = cat->stmts[STMT_PACK_ID];
	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, pack->id, -1, SQLITE_STATIC),
		err) < 0 ||
	    catalog_lookup_int(cat, st, &ref, err) != 1)
		return mk_err_set(err, "catalog %s: pack %.16s vanished",
		    cat->path, pack->id);
	st = cat->stmts[STMT_BLOB_ADD];
	for (i = 0; i < pack->count; i++) {
		const struct mk_pack_entry *e = &pack->entries[i];

		bool dict = e->compression == MK_PACK_ZSTD_DICT;

		if (catalog_bound(cat, st,
			sqlite3_bind_blob(
			    st, 1, e->id, MK_PACK_ID_LEN, SQLITE_STATIC) |
			    sqlite3_bind_int64(st, 2, ref) |
			    sqlite3_bind_int64(st, 3, (int64_t)e->offset) |
			    sqlite3_bind_int64(st, 4, e->length) |
			    sqlite3_bind_int64(st, 5, e->raw_length) |
			    sqlite3_bind_int(st, 6, e->type) |
			    sqlite3_bind_int(st, 7, e->compression) |
			    (dict ? sqlite3_bind_blob(st, 8, e->dict_id,
					MK_PACK_ID_LEN, SQLITE_STATIC)
				  : sqlite3_bind_null(st, 8)),
			err) < 0 ||
		    catalog_step_done(cat, st, err) < 0)
			return -1;
	}
	return 0;
}

/* Where a blob is, with the statement given (any pack, or reusable). */
static int
catalog_blob_where(struct mk_catalog *cat, sqlite3_stmt *st,
    const uint8_t id[MK_PACK_ID_LEN], char pack_r[MK_PACK_NAME_LEN + 1],
    struct mk_pack_entry *entry_r, struct mk_err *err)
{
	uint8_t key[MK_PACK_ID_LEN];
	const unsigned char *pack;
	int r, rc = -1;

	/* id may be entry_r->id, which is cleared below. */
	memcpy(key, id, MK_PACK_ID_LEN);
	id = key;
	if (catalog_bound(cat, st,
		sqlite3_bind_blob(st, 1, id, MK_PACK_ID_LEN, SQLITE_STATIC),
		err) < 0)
		return -1;
	r = sqlite3_step(st);
	if (r == SQLITE_DONE) {
		rc = 0;
		goto out;
	}
	if (r != SQLITE_ROW) {
		catalog_error(cat, err, "blob get");
		goto out;
	}
	pack = sqlite3_column_text(st, 0);
	if (pack == NULL || strlen((const char *)pack) != MK_PACK_NAME_LEN) {
		mk_err_set(err, "catalog %s: a blob's pack name is damaged",
		    cat->path);
		goto out;
	}
	if (pack_r != NULL)
		memcpy(pack_r, pack, MK_PACK_NAME_LEN + 1);
	if (entry_r != NULL) {
		memset(entry_r, 0, sizeof(*entry_r));
		memcpy(entry_r->id, id, MK_PACK_ID_LEN);
		entry_r->offset = (uint64_t)sqlite3_column_int64(st, 1);
		entry_r->length = (uint32_t)sqlite3_column_int64(st, 2);
		entry_r->raw_length = (uint32_t)sqlite3_column_int64(st, 3);
		entry_r->type = (uint8_t)sqlite3_column_int(st, 4);
		entry_r->compression = (uint8_t)sqlite3_column_int(st, 5);
		if (catalog_column_dict(st, 6, entry_r) < 0) {
			mk_err_set(err,
			    "catalog %s: a blob's dictionary id is damaged",
			    cat->path);
			goto out;
		}
	}
	rc = 1;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int
mk_catalog_blob_get(struct mk_catalog *cat, const uint8_t id[MK_PACK_ID_LEN],
    char pack_r[MK_PACK_NAME_LEN + 1], struct mk_pack_entry *entry_r,
    struct mk_err *err)
{
	return catalog_blob_where(
	    cat, cat->stmts[STMT_BLOB_GET], id, pack_r, entry_r, err);
}

int
mk_catalog_blob_reusable(struct mk_catalog *cat,
    const uint8_t id[MK_PACK_ID_LEN], char pack_r[MK_PACK_NAME_LEN + 1],
    struct mk_pack_entry *entry_r, struct mk_err *err)
{
	return catalog_blob_where(
	    cat, cat->stmts[STMT_BLOB_GET_REUSABLE], id, pack_r, entry_r, err);
}

/* A statement bound to a pack name (and a time), stepped once. */
static int
catalog_pack_step(struct mk_catalog *cat, enum catalog_stmt which,
    const char *name, int64_t ns, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[which];
	int rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);

	if (which == STMT_PACK_TOMBSTONE)
		rc |= sqlite3_bind_int64(st, 2, ns);
	if (catalog_bound(cat, st, rc, err) < 0)
		return -1;
	return catalog_step_done(cat, st, err);
}

int
mk_catalog_pack_tombstone(
    struct mk_catalog *cat, const char *name, int64_t ns, struct mk_err *err)
{
	return catalog_pack_step(cat, STMT_PACK_TOMBSTONE, name, ns, err);
}

int
mk_catalog_pack_revive(
    struct mk_catalog *cat, const char *name, struct mk_err *err)
{
	return catalog_pack_step(cat, STMT_PACK_REVIVE, name, 0, err);
}

int
mk_catalog_pack_drop(
    struct mk_catalog *cat, const char *name, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_PACK_ID];
	int64_t ref;
	int r;

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC), err) < 0 ||
	    (r = catalog_lookup_int(cat, st, &ref, err)) < 0)
		return -1;
	if (r == 0)
		return 0;
	st = cat->stmts[STMT_PACK_BLOBS_DROP];
	if (catalog_bound(cat, st, sqlite3_bind_int64(st, 1, ref), err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	st = cat->stmts[STMT_PACK_DROP];
	if (catalog_bound(cat, st, sqlite3_bind_int64(st, 1, ref), err) < 0)
		return -1;
	return catalog_step_done(cat, st, err);
}

/*
 * Forgetting snapshots, in the caller's transaction.  A version's
 * appeared and vanished move to the next snapshot kept, which keeps
 * "alive at S" true for every S kept; versions alive at no snapshot
 * kept go, then messages without versions.
 */
static const char catalog_forget_sql[] =
    "DELETE FROM temp.prune_forget;"
    "INSERT INTO temp.prune_forget SELECT s.id FROM snapshot s JOIN run r "
    "ON r.id = s.run JOIN backup_mailbox m ON m.id = s.mailbox WHERE "
    "r.ended_ns IS NOT NULL AND NOT EXISTS (SELECT 1 FROM temp.prune_keep "
    "k WHERE k.run = r.name AND k.address = m.address);"
    "DELETE FROM message_version WHERE mailbox IN (SELECT mailbox FROM "
    "snapshot WHERE id IN temp.prune_forget) AND NOT EXISTS (SELECT 1 FROM "
    "snapshot s WHERE s.mailbox = message_version.mailbox AND s.id >= "
    "message_version.appeared AND (message_version.vanished IS NULL OR "
    "s.id < message_version.vanished) AND s.id NOT IN temp.prune_forget);"
    "UPDATE message_version SET appeared = (SELECT MIN(s.id) FROM snapshot "
    "s WHERE s.mailbox = message_version.mailbox AND s.id > "
    "message_version.appeared AND s.id NOT IN temp.prune_forget) WHERE "
    "appeared IN temp.prune_forget;"
    "UPDATE message_version SET vanished = (SELECT MIN(s.id) FROM snapshot "
    "s WHERE s.mailbox = message_version.mailbox AND s.id > "
    "message_version.vanished AND s.id NOT IN temp.prune_forget) WHERE "
    "vanished IN temp.prune_forget;"
    "DELETE FROM snapshot WHERE id IN temp.prune_forget;"
    "DELETE FROM run WHERE ended_ns IS NOT NULL AND NOT EXISTS (SELECT 1 "
    "FROM snapshot WHERE snapshot.run = run.id);"
    "DELETE FROM message_chunk WHERE message IN (SELECT id FROM message "
    "WHERE NOT EXISTS (SELECT 1 FROM message_version v WHERE v.message = "
    "message.id));"
    "DELETE FROM message WHERE NOT EXISTS (SELECT 1 FROM message_version v "
    "WHERE v.message = message.id);"
    "DELETE FROM temp.prune_keep;";

int
mk_catalog_forget(struct mk_catalog *cat, const struct mk_catalog_keep *keep,
    size_t count, int64_t *forgotten_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_KEEP_ADD];
	size_t i;

	if (catalog_exec(cat, "DELETE FROM temp.prune_keep", err) < 0)
		return -1;
	for (i = 0; i < count; i++)
		if (catalog_bound(cat, st,
			sqlite3_bind_text(
			    st, 1, keep[i].run, -1, SQLITE_STATIC) |
			    sqlite3_bind_text(
				st, 2, keep[i].address, -1, SQLITE_STATIC),
			err) < 0 ||
		    catalog_step_done(cat, st, err) < 0)
			return -1;
	if (catalog_exec(cat, catalog_forget_sql, err) < 0 ||
	    catalog_query_int(cat, "SELECT count(*) FROM temp.prune_forget",
		forgotten_r, err) < 0)
		return -1;
	return 0;
}

int
mk_catalog_run_add(struct mk_catalog *cat, const char *name, int64_t started_ns,
    int64_t *run_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_RUN_ADD];

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 2, started_ns),
		err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	*run_r = sqlite3_last_insert_rowid(cat->db);
	return 0;
}

int
mk_catalog_run_end(
    struct mk_catalog *cat, int64_t run, int64_t ended_ns, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_RUN_END];

	if (catalog_bound(cat, st,
		sqlite3_bind_int64(st, 1, run) |
		    sqlite3_bind_int64(st, 2, ended_ns),
		err) < 0)
		return -1;
	return catalog_step_one(cat, st, "no such run", err);
}

int
mk_catalog_runs_open(struct mk_catalog *cat, mk_catalog_run_cb *cb, void *arg,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_RUNS_OPEN];
	struct catalog_run {
		int64_t id;
		char *name;
		int64_t started_ns;
	} *runs = NULL;
	size_t n = 0, cap = 0, i;
	int r, rc = -1;

	/* Collect first: cb may write to the catalog. */
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		mk_xgrow(&runs, &cap, n + 1, sizeof(*runs));
		runs[n].id = sqlite3_column_int64(st, 0);
		runs[n].name =
		    mk_xstrdup((const char *)sqlite3_column_text(st, 1));
		runs[n++].started_ns = sqlite3_column_int64(st, 2);
	}
	sqlite3_reset(st);
	if (r != SQLITE_DONE) {
		catalog_error(cat, err, "open runs");
		goto out;
	}
	for (i = 0; i < n; i++)
		cb(runs[i].id, runs[i].name, runs[i].started_ns, arg);
	rc = 0;
out:
	for (i = 0; i < n; i++)
		free(runs[i].name);
	free(runs);
	return rc;
}

int
mk_catalog_snapshot_add(struct mk_catalog *cat,
    const struct mk_catalog_snapshot *s, int64_t *id_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_SNAPSHOT_ADD];
	int64_t mailbox, object;

	if (catalog_intern(cat, STMT_BK_MAILBOX_ADD, STMT_BK_MAILBOX_ID,
		s->address, &mailbox, err) < 0 ||
	    catalog_blob_ref(cat, s->object, &object, err) < 0)
		return -1;
	if (catalog_bound(cat, st,
		sqlite3_bind_int64(st, 1, s->run) |
		    sqlite3_bind_int64(st, 2, mailbox) |
		    sqlite3_bind_int64(st, 3, s->time_ns) |
		    sqlite3_bind_int64(st, 4, (int64_t)s->messages) |
		    sqlite3_bind_int64(st, 5, (int64_t)s->bytes) |
		    sqlite3_bind_int64(st, 6, object),
		err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	*id_r = sqlite3_last_insert_rowid(cat->db);
	return 0;
}

/* Call cb for each row of a bound snapshot statement; returns the rows. */
static int64_t
catalog_snapshots_each(struct mk_catalog *cat, sqlite3_stmt *st,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err)
{
	struct mk_catalog_snapshot s;
	int64_t rows = 0;
	int r;

	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&s, 0, sizeof(s));
		s.id = sqlite3_column_int64(st, 0);
		s.run = sqlite3_column_int64(st, 1);
		s.address = (const char *)sqlite3_column_text(st, 2);
		s.time_ns = sqlite3_column_int64(st, 3);
		s.messages = (uint64_t)sqlite3_column_int64(st, 4);
		s.bytes = (uint64_t)sqlite3_column_int64(st, 5);
		if (s.address == NULL ||
		    catalog_column_id(st, 6, s.object) < 0) {
			r = SQLITE_CORRUPT;
			break;
		}
		cb(&s, arg);
		rows++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r == SQLITE_CORRUPT)
		return mk_err_set(err, "catalog %s: snapshot %lld is damaged",
		    cat->path, (long long)s.id);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "snapshots");
	return rows;
}

int
mk_catalog_snapshot_get(struct mk_catalog *cat, int64_t id,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_SNAPSHOT_GET];
	int64_t rows;

	if (catalog_bound(cat, st, sqlite3_bind_int64(st, 1, id), err) < 0 ||
	    (rows = catalog_snapshots_each(cat, st, cb, arg, err)) < 0)
		return -1;
	return rows > 0;
}

int
mk_catalog_snapshots(struct mk_catalog *cat, const char *address,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_SNAPSHOTS_ALL];

	if (address != NULL) {
		st = cat->stmts[STMT_SNAPSHOTS_MAILBOX];
		if (catalog_bound(cat, st,
			sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC),
			err) < 0)
			return -1;
	}
	return catalog_snapshots_each(cat, st, cb, arg, err) < 0 ? -1 : 0;
}

int
mk_catalog_run_snapshots(struct mk_catalog *cat, int64_t run,
    mk_catalog_snapshot_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_SNAPSHOTS_RUN];

	if (catalog_bound(cat, st, sqlite3_bind_int64(st, 1, run), err) < 0)
		return -1;
	return catalog_snapshots_each(cat, st, cb, arg, err) < 0 ? -1 : 0;
}

/* Append the chunk blob ids of a message whose body is in pieces. */
static int
catalog_chunks_get(struct mk_catalog *cat, int64_t message,
    uint8_t (**blobs)[MK_PACK_ID_LEN], size_t *n, size_t *cap,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_CHUNKS_GET];
	int r;

	if (catalog_bound(cat, st, sqlite3_bind_int64(st, 1, message), err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		mk_xgrow(blobs, cap, *n + 1, MK_PACK_ID_LEN);
		if (catalog_column_id(st, 0, (*blobs)[*n]) < 0) {
			r = SQLITE_CORRUPT;
			break;
		}
		(*n)++;
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r == SQLITE_CORRUPT)
		return mk_err_set(err, "catalog %s: message %lld is damaged",
		    cat->path, (long long)message);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "message chunks");
	return 0;
}

/*
 * Bind a statement over CATALOG_ALIVE_AT to the versions of address
 * alive at snapshot: 1 bound (in *st_r), 0 unknown mailbox, -1 error.
 */
static int
catalog_alive_bind(struct mk_catalog *cat, enum catalog_stmt which,
    const char *address, int64_t snapshot, sqlite3_stmt **st_r,
    struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_BK_MAILBOX_ID];
	int64_t mailbox;
	int r;

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC),
		err) < 0 ||
	    (r = catalog_lookup_int(cat, st, &mailbox, err)) < 0)
		return -1;
	if (r == 0)
		return 0;
	st = cat->stmts[which];
	if (catalog_bound(cat, st,
		sqlite3_bind_int64(st, 2, snapshot) |
		    sqlite3_bind_int64(st, 3, mailbox),
		err) < 0)
		return -1;
	*st_r = st;
	return 1;
}

int
mk_catalog_versions_at(struct mk_catalog *cat, const char *address,
    int64_t snapshot, mk_catalog_version_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st;
	uint8_t(*blobs)[MK_PACK_ID_LEN] = NULL;
	struct mk_catalog_version v;
	size_t cap = 0;
	int r, rc = -1;

	if ((r = catalog_alive_bind(
		 cat, STMT_VERSIONS_AT, address, snapshot, &st, err)) <= 0)
		return r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&v, 0, sizeof(v));
		v.id = sqlite3_column_int64(st, 0);
		v.message = sqlite3_column_int64(st, 1);
		v.dir = (const char *)sqlite3_column_text(st, 2);
		v.base = (const char *)sqlite3_column_text(st, 3);
		v.suffix = (const char *)sqlite3_column_text(st, 4);
		v.cur = sqlite3_column_int(st, 5) != 0;
		v.mtime_ns = sqlite3_column_int64(st, 6);
		v.size = (uint64_t)sqlite3_column_int64(st, 7);
		v.appeared = sqlite3_column_int64(st, 11);
		v.vanished = sqlite3_column_int64(st, 12);
		v.opaque = sqlite3_column_type(st, 8) == SQLITE_NULL;
		if (v.dir == NULL || v.base == NULL || v.suffix == NULL)
			goto damaged;
		mk_xgrow(&blobs, &cap, 2, MK_PACK_ID_LEN);
		if (!v.opaque &&
		    catalog_column_id(st, 8, blobs[v.nblobs++]) < 0)
			goto damaged;
		if (sqlite3_column_int(st, 10) == 0) {
			if (catalog_column_id(st, 9, blobs[v.nblobs++]) < 0)
				goto damaged;
		} else if (catalog_chunks_get(cat, v.message, &blobs, &v.nblobs,
			       &cap, err) < 0)
			goto out;
		v.blobs = (const uint8_t(*)[MK_PACK_ID_LEN])blobs;
		cb(&v, arg);
	}
	if (r != SQLITE_DONE) {
		catalog_error(cat, err, "versions");
		goto out;
	}
	rc = 0;
	goto out;
damaged:
	mk_err_set(err, "catalog %s: message version %lld is damaged",
	    cat->path, (long long)v.id);
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	free(blobs);
	return rc;
}

int
mk_catalog_message_add(struct mk_catalog *cat,
    const struct mk_catalog_version *v, int64_t *message_r, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_MESSAGE_ADD];
	int64_t header = 0, body = 0, ref, message;
	size_t first = 0, i;

	if (!v->opaque) {
		if (v->nblobs == 0)
			return mk_err_set(err,
			    "catalog %s: message %s has no header blob",
			    cat->path, v->base);
		if (catalog_blob_ref(cat, v->blobs[0], &header, err) < 0)
			return -1;
		first = 1;
	}
	/* One body blob goes in the row; none or many in message_chunk. */
	if (v->nblobs - first == 1 &&
	    catalog_blob_ref(cat, v->blobs[first], &body, err) < 0)
		return -1;
	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, v->base, -1, SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 2, (int64_t)v->size) |
		    (header != 0 ? sqlite3_bind_int64(st, 3, header)
				 : sqlite3_bind_null(st, 3)) |
		    (body != 0 ? sqlite3_bind_int64(st, 4, body)
			       : sqlite3_bind_null(st, 4)),
		err) < 0 ||
	    catalog_step_done(cat, st, err) < 0)
		return -1;
	message = sqlite3_last_insert_rowid(cat->db);
	st = cat->stmts[STMT_CHUNK_ADD];
	for (i = first; body == 0 && i < v->nblobs; i++) {
		if (catalog_blob_ref(cat, v->blobs[i], &ref, err) < 0 ||
		    catalog_bound(cat, st,
			sqlite3_bind_int64(st, 1, message) |
			    sqlite3_bind_int64(st, 2, (int64_t)(i - first)) |
			    sqlite3_bind_int64(st, 3, ref),
			err) < 0 ||
		    catalog_step_done(cat, st, err) < 0)
			return -1;
	}
	*message_r = message;
	return 0;
}

int
mk_catalog_version_add(struct mk_catalog *cat, int64_t snapshot,
    const struct mk_catalog_version *v, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_VERSION_ADD];
	int64_t dir;

	if (catalog_intern(cat, STMT_DIR_ADD, STMT_DIR_ID, v->dir, &dir, err) <
		0 ||
	    catalog_bound(cat, st,
		sqlite3_bind_int64(st, 1, snapshot) |
		    sqlite3_bind_int64(st, 2, v->message) |
		    sqlite3_bind_int64(st, 3, dir) |
		    sqlite3_bind_text(st, 4, v->suffix, -1, SQLITE_STATIC) |
		    sqlite3_bind_int(st, 5, v->cur) |
		    sqlite3_bind_int64(st, 6, v->mtime_ns),
		err) < 0)
		return -1;
	return catalog_step_one(cat, st, "version of an unknown snapshot", err);
}

int
mk_catalog_version_vanish(struct mk_catalog *cat, int64_t version,
    int64_t snapshot, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_VERSION_VANISH];

	if (catalog_bound(cat, st,
		sqlite3_bind_int64(st, 1, version) |
		    sqlite3_bind_int64(st, 2, snapshot),
		err) < 0)
		return -1;
	return catalog_step_one(cat, st, "vanished version is not alive", err);
}

int
mk_catalog_checkpoint(struct mk_catalog *cat, struct mk_err *err)
{
	if (sqlite3_wal_checkpoint_v2(cat->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
		NULL, NULL) != SQLITE_OK)
		return catalog_error(cat, err, "checkpoint");
	return 0;
}

/* Prepare a statement used once; logs nothing, fills err. */
static int
catalog_prepare(struct mk_catalog *cat, const char *sql, sqlite3_stmt **st_r,
    struct mk_err *err)
{
	if (sqlite3_prepare_v2(cat->db, sql, -1, st_r, NULL) != SQLITE_OK)
		return catalog_error(cat, err, sql);
	return 0;
}

/* Finish a walk over a statement's rows: r is the last step's result. */
static int
catalog_walk_end(
    struct mk_catalog *cat, sqlite3_stmt *st, int r, struct mk_err *err)
{
	int rc = 0;

	if (r == SQLITE_CORRUPT)
		rc = mk_err_set(err, "catalog %s: a row is damaged (%s)",
		    cat->path, sqlite3_sql(st));
	else if (r != SQLITE_DONE)
		rc = catalog_error(cat, err, sqlite3_sql(st));
	sqlite3_finalize(st);
	return rc;
}

int
mk_catalog_packs(struct mk_catalog *cat, mk_catalog_pack_cb *cb, void *arg,
    struct mk_err *err)
{
	sqlite3_stmt *st;
	const char *name;
	int r;

	if (catalog_prepare(cat,
		"SELECT name, size, tombstoned_ns IS NOT NULL FROM pack "
		"ORDER BY name",
		&st, err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		name = (const char *)sqlite3_column_text(st, 0);
		if (name == NULL) {
			r = SQLITE_CORRUPT;
			break;
		}
		cb(name, (uint64_t)sqlite3_column_int64(st, 1),
		    sqlite3_column_int(st, 2) != 0, arg);
	}
	return catalog_walk_end(cat, st, r, err);
}

int
mk_catalog_blobs(struct mk_catalog *cat, mk_catalog_blob_cb *cb, void *arg,
    struct mk_err *err)
{
	struct mk_pack_entry e;
	sqlite3_stmt *st;
	const char *pack;
	int r;

	if (catalog_prepare(cat,
		"SELECT p.name, b.id, b.offset, b.length, b.raw_length, "
		"b.type, b.compression, b.dict FROM blob b JOIN pack p ON "
		"p.id = b.pack ORDER BY p.name, b.offset",
		&st, err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&e, 0, sizeof(e));
		pack = (const char *)sqlite3_column_text(st, 0);
		if (pack == NULL || catalog_column_id(st, 1, e.id) < 0) {
			r = SQLITE_CORRUPT;
			break;
		}
		e.offset = (uint64_t)sqlite3_column_int64(st, 2);
		e.length = (uint32_t)sqlite3_column_int64(st, 3);
		e.raw_length = (uint32_t)sqlite3_column_int64(st, 4);
		e.type = (uint8_t)sqlite3_column_int(st, 5);
		e.compression = (uint8_t)sqlite3_column_int(st, 6);
		if (catalog_column_dict(st, 7, &e) < 0) {
			r = SQLITE_CORRUPT;
			break;
		}
		cb(pack, &e, arg);
	}
	return catalog_walk_end(cat, st, r, err);
}

int
mk_catalog_runs(struct mk_catalog *cat, mk_catalog_runs_cb *cb, void *arg,
    struct mk_err *err)
{
	sqlite3_stmt *st;
	const char *name;
	int r;

	if (catalog_prepare(cat,
		"SELECT id, name, started_ns, ended_ns FROM run ORDER BY id",
		&st, err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		name = (const char *)sqlite3_column_text(st, 1);
		if (name == NULL) {
			r = SQLITE_CORRUPT;
			break;
		}
		cb(sqlite3_column_int64(st, 0), name,
		    sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3),
		    arg);
	}
	return catalog_walk_end(cat, st, r, err);
}

int
mk_catalog_backup_clear(struct mk_catalog *cat, struct mk_err *err)
{
	/* Children before parents, for the foreign keys. */
	return catalog_exec(cat,
	    "DELETE FROM backup_stamp; DELETE FROM message_version; "
	    "DELETE FROM message_chunk; "
	    "DELETE FROM message; DELETE FROM snapshot; DELETE FROM run; "
	    "DELETE FROM blob; DELETE FROM pack; DELETE FROM dir_name; "
	    "DELETE FROM backup_mailbox;",
	    err);
}

int
mk_catalog_damage_add(struct mk_catalog *cat, const uint8_t id[MK_PACK_ID_LEN],
    struct mk_err *err)
{
	sqlite3_stmt *st = NULL;
	int rc = -1;

	if (catalog_exec(cat,
		"CREATE TEMP TABLE IF NOT EXISTS damaged (ref INTEGER "
		"PRIMARY KEY)",
		err) < 0 ||
	    catalog_prepare(cat,
		"INSERT OR IGNORE INTO damaged (ref) SELECT ref FROM blob "
		"WHERE id = ?1",
		&st, err) < 0)
		goto out;
	if (catalog_bound(cat, st,
		sqlite3_bind_blob(st, 1, id, MK_PACK_ID_LEN, SQLITE_STATIC),
		err) < 0)
		goto out;
	if (sqlite3_step(st) != SQLITE_DONE) {
		catalog_error(cat, err, "damaged blob");
		goto out;
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	return rc;
}

void
mk_catalog_damage_reset(struct mk_catalog *cat)
{
	sqlite3_exec(
	    cat->db, "DROP TABLE IF EXISTS temp.damaged", NULL, NULL, NULL);
}

int
mk_catalog_damage_each(struct mk_catalog *cat, mk_catalog_damage_cb *cb,
    void *arg, struct mk_err *err)
{
	struct mk_catalog_damage d;
	sqlite3_stmt *st;
	int r;

	if (catalog_exec(cat,
		"CREATE TEMP TABLE IF NOT EXISTS damaged (ref INTEGER "
		"PRIMARY KEY)",
		err) < 0)
		return -1;
	/* One pass over the messages, whatever the number of blobs. */
	if (catalog_prepare(cat,
		"WITH hit (message, ref) AS ("
		" SELECT id, header FROM message WHERE header IN damaged"
		" UNION SELECT id, body FROM message WHERE body IN damaged"
		" UNION SELECT message, blob FROM message_chunk WHERE blob IN "
		"damaged) "
		"SELECT bm.address, b.id, 0, d.name, m.base, v.suffix, "
		"v.appeared, v.vanished FROM hit JOIN message m ON m.id = "
		"hit.message JOIN blob b ON b.ref = hit.ref JOIN "
		"message_version v ON v.message = m.id JOIN backup_mailbox bm "
		"ON bm.id = v.mailbox JOIN dir_name d ON d.id = v.dir "
		"UNION ALL SELECT bm.address, b.id, s.id, NULL, NULL, NULL, 0, "
		"0 FROM snapshot s JOIN backup_mailbox bm ON bm.id = s.mailbox "
		"JOIN blob b ON b.ref = s.object WHERE s.object IN damaged "
		"ORDER BY 1, 4, 5, 7",
		&st, err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&d, 0, sizeof(d));
		d.address = (const char *)sqlite3_column_text(st, 0);
		d.blob = sqlite3_column_blob(st, 1);
		d.snapshot = sqlite3_column_int64(st, 2);
		d.dir = (const char *)sqlite3_column_text(st, 3);
		d.base = (const char *)sqlite3_column_text(st, 4);
		d.suffix = (const char *)sqlite3_column_text(st, 5);
		d.appeared = sqlite3_column_int64(st, 6);
		d.vanished = sqlite3_column_int64(st, 7);
		if (d.address == NULL || d.blob == NULL ||
		    sqlite3_column_bytes(st, 1) != MK_PACK_ID_LEN ||
		    (d.snapshot == 0 &&
			(d.dir == NULL || d.base == NULL ||
			    d.suffix == NULL))) {
			r = SQLITE_CORRUPT;
			break;
		}
		cb(&d, arg);
	}
	return catalog_walk_end(cat, st, r, err);
}

int64_t
mk_catalog_last_id(struct mk_catalog *cat)
{
	return sqlite3_last_insert_rowid(cat->db);
}

/* Write one header row (in the transaction open, if any). */
static void
catalog_header_write(struct mk_catalog *cat, const uint8_t id[MK_PACK_ID_LEN],
    const struct mk_header *h)
{
	sqlite3_stmt *st = cat->stmts[STMT_HEADER_PUT];

	if (sqlite3_bind_blob(st, 1, id, MK_PACK_ID_LEN, SQLITE_STATIC) |
	    sqlite3_bind_text(st, 2, h->message_id, -1, SQLITE_STATIC) |
	    sqlite3_bind_text(st, 3, h->from, -1, SQLITE_STATIC) |
	    sqlite3_bind_text(st, 4, h->to, -1, SQLITE_STATIC) |
	    sqlite3_bind_text(st, 5, h->subject, -1, SQLITE_STATIC) |
	    sqlite3_bind_int64(st, 6, h->date))
		goto out;
	/* A row that cannot be written is simply not there: the search
	 * misses it, the backup goes on. */
	(void)sqlite3_step(st);
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* Write the queued header rows into the transaction open. */
static void
catalog_headers_flush(struct mk_catalog *cat)
{
	size_t i;

	for (i = 0; i < cat->nheaders; i++)
		catalog_header_write(
		    cat, cat->headers[i].id, &cat->headers[i].h);
	cat->nheaders = 0;
}

/*
 * Outside a transaction the row is queued and written with the next
 * commit (or in a transaction of its own once CATALOG_HEADERS_QUEUED
 * wait, or at close): one transaction per message row cost more than
 * the row.
 */
void
mk_catalog_header_put(struct mk_catalog *cat, const uint8_t id[MK_PACK_ID_LEN],
    const void *data, size_t len)
{
	struct catalog_header_row *row;
	struct mk_header h;

	if (!sqlite3_get_autocommit(cat->db)) {
		mk_header_parse(data, len, &h);
		catalog_header_write(cat, id, &h);
		return;
	}
	if (cat->headers == NULL)
		cat->headers =
		    mk_xcalloc(CATALOG_HEADERS_QUEUED, sizeof(*cat->headers));
	row = &cat->headers[cat->nheaders++];
	memcpy(row->id, id, MK_PACK_ID_LEN);
	mk_header_parse(data, len, &row->h);
	if (cat->nheaders < CATALOG_HEADERS_QUEUED)
		return;
	if (sqlite3_exec(cat->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK) {
		cat->nheaders = 0;
		return;
	}
	catalog_headers_flush(cat);
	if (sqlite3_exec(cat->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		mk_catalog_rollback(cat);
}

/* A text column, "" when NULL. */
static const char *
catalog_text(sqlite3_stmt *st, int col)
{
	const char *s = (const char *)sqlite3_column_text(st, col);

	return s != NULL ? s : "";
}

int
mk_catalog_list_at(struct mk_catalog *cat, const char *address,
    int64_t snapshot, mk_catalog_listing_cb *cb, void *arg, struct mk_err *err)
{
	struct mk_catalog_listing l;
	sqlite3_stmt *st;
	int r;

	if ((r = catalog_alive_bind(
		 cat, STMT_LIST_AT, address, snapshot, &st, err)) <= 0)
		return r;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&l, 0, sizeof(l));
		l.dir = catalog_text(st, 0);
		l.base = catalog_text(st, 1);
		l.suffix = catalog_text(st, 2);
		l.cur = sqlite3_column_int(st, 3) != 0;
		l.mtime_ns = sqlite3_column_int64(st, 4);
		l.size = (uint64_t)sqlite3_column_int64(st, 5);
		l.has_header = sqlite3_column_int(st, 6) != 0;
		l.message_id = catalog_text(st, 7);
		l.from = catalog_text(st, 8);
		l.to = catalog_text(st, 9);
		l.subject = catalog_text(st, 10);
		l.date = sqlite3_column_int64(st, 11);
		cb(&l, arg);
	}
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r != SQLITE_DONE)
		return catalog_error(cat, err, "list");
	return 0;
}

int
mk_catalog_stamps_get(struct mk_catalog *cat, const char *address,
    mk_catalog_stamp_cb *cb, void *arg, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_STAMPS_GET];
	struct mk_catalog_stamp s;
	int r, rc = -1;

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC), err) < 0)
		return -1;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		memset(&s, 0, sizeof(s));
		s.dir = (const char *)sqlite3_column_text(st, 0);
		s.name = (const char *)sqlite3_column_text(st, 1);
		s.dev = (uint64_t)sqlite3_column_int64(st, 2);
		s.ino = (uint64_t)sqlite3_column_int64(st, 3);
		s.size = (uint64_t)sqlite3_column_int64(st, 4);
		s.mtime_ns = sqlite3_column_int64(st, 5);
		s.ctime_ns = sqlite3_column_int64(st, 6);
		s.has_blob = sqlite3_column_type(st, 7) != SQLITE_NULL;
		if (s.dir == NULL || s.name == NULL ||
		    (s.has_blob && catalog_column_id(st, 7, s.blob) < 0)) {
			mk_err_set(err, "catalog %s: a stamp of %s is damaged",
			    cat->path, address);
			goto out;
		}
		cb(&s, arg);
	}
	if (r != SQLITE_DONE) {
		catalog_error(cat, err, "stamps");
		goto out;
	}
	rc = 0;
out:
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc;
}

int
mk_catalog_stamp_put(struct mk_catalog *cat, const char *address,
    const struct mk_catalog_stamp *s, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_STAMP_PUT];

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 2, s->dir, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 3, s->name, -1, SQLITE_STATIC) |
		    sqlite3_bind_int64(st, 4, (int64_t)s->dev) |
		    sqlite3_bind_int64(st, 5, (int64_t)s->ino) |
		    sqlite3_bind_int64(st, 6, (int64_t)s->size) |
		    sqlite3_bind_int64(st, 7, s->mtime_ns) |
		    sqlite3_bind_int64(st, 8, s->ctime_ns) |
		    (s->has_blob ? sqlite3_bind_blob(st, 9, s->blob,
				       MK_PACK_ID_LEN, SQLITE_STATIC)
				 : sqlite3_bind_null(st, 9)),
		err) < 0)
		return -1;
	return catalog_step_done(cat, st, err);
}

int
mk_catalog_stamp_drop(struct mk_catalog *cat, const char *address,
    const char *dir, const char *name, struct mk_err *err)
{
	sqlite3_stmt *st = cat->stmts[STMT_STAMP_DROP];

	if (catalog_bound(cat, st,
		sqlite3_bind_text(st, 1, address, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 2, dir, -1, SQLITE_STATIC) |
		    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC),
		err) < 0)
		return -1;
	return catalog_step_done(cat, st, err);
}
