/*
 * restore: give back what a snapshot held, as a Maildir++ tree, into the
 * live mailbox or as an export.
 *
 * One entry point, mk_restore_run(), for the CLI and for a daemon worker:
 * a request says which mailbox, which snapshot (a catalog id), what part
 * of it (everything, one folder with its subfolders, one message), where
 * to (a new folder or the original folders of the live mailbox, or a
 * directory) and in what format (Maildir++, mbox, one .eml per message).
 *
 * What comes back is read from the repository: the snapshot object, its
 * folders' message lists, every message's blobs, each blob checked
 * against its id as it is read.  The catalog says which object a
 * snapshot is and where each blob lies.
 *
 * Targets:
 * - MK_RESTORE_TO_DIR: a fresh tree in dir, which must be empty or not
 *   exist yet (its parent must).  A whole mailbox in Maildir format keeps
 *   dovecot-uidlist, dovecot-keywords, maildirfolder and subscriptions,
 *   so Dovecot keeps its UIDs and UIDVALIDITY.  mbox: one file per folder
 *   ("INBOX.mbox", "Archive.2024.mbox", mboxrd quoting); eml: one
 *   directory per folder ("INBOX/", "Archive.2024/") with one
 *   "<base name>.eml" per message, its mtime the INTERNALDATE.
 * - MK_RESTORE_TO_NEW_FOLDER: into the live mailbox under a new folder
 *   "<prefix>/<original tree>" (prefix like "Restored-2026-11-26"; a
 *   suffix "-2", "-3" is added when it exists).  Nothing existing
 *   changes.
 * - MK_RESTORE_TO_ORIGINAL: into the live mailbox's original folders,
 *   only the messages missing there: a message whose base name is
 *   anywhere in the mailbox, or whose bytes equal a message of its
 *   folder, is skipped (counted in stats->skipped).  Nothing is
 *   overwritten.
 * Into the live mailbox the messages are first written into a private
 * temporary Maildir beneath the mailbox's tmp/ (flags in the names,
 * keywords file, mtime = INTERNALDATE), which `doveadm import` then
 * moves in when req->doveadm is set, so that Dovecot's indexes and
 * quota see them; without doveadm they are renamed straight into the
 * Maildir.  The temporary Maildir is removed afterwards.
 *
 * Every file is written atomically: a temporary file, fsync, futimens,
 * rename that never replaces (RENAME_NOREPLACE), fsync of the directory.
 * Directories are made with mkdirat and opened without following a
 * symbolic link; names from the repository and the request are accepted
 * only as single path components.  Files in the live mailbox get the
 * owner and group of its Maildir (fchown on the open fd), mode 0600;
 * directories 0700.
 *
 * A message whose blobs cannot be read (a damaged or missing pack) is
 * skipped and counted in stats->failed; so is a folder's message list
 * (stats->failed_lists: the messages it lists are not restored) and a
 * metadata file (stats->failed_files).  Each is told to req->failed_cb
 * and the first kept in stats->problems; the rest goes on, and the run
 * then fails with an error saying how much could not be restored.
 * Nothing of a failed part is written: no partial file is left.
 *
 * Blocking I/O, no global state: call from a worker thread (with its own
 * struct mk_catalog and struct mk_repo) or a command-line tool.
 */
#ifndef MAILKEEP_RESTORE_H
#define MAILKEEP_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "mailkeep/catalog.h"
#include "mailkeep/err.h"
#include "mailkeep/repo.h"

enum mk_restore_target {
	MK_RESTORE_TO_NEW_FOLDER,
	MK_RESTORE_TO_ORIGINAL,
	MK_RESTORE_TO_DIR,
};

enum mk_restore_format {
	MK_RESTORE_MAILDIR,
	MK_RESTORE_MBOX,
	MK_RESTORE_EML,
};

/* Longest folder prefix accepted for MK_RESTORE_TO_NEW_FOLDER. */
#define MK_RESTORE_PREFIX_MAX 64

/*
 * A part of the snapshot that could not be read (a damaged or missing
 * pack): a message, a folder's message list or a metadata file.  The
 * strings live for the call only.
 */
enum mk_restore_failure_kind {
	MK_RESTORE_FAILED_MESSAGE, /* name: its base name */
	MK_RESTORE_FAILED_LIST, /* name: NULL; the folder's messages
				   listed in that part are missing */
	MK_RESTORE_FAILED_FILE, /* name: dovecot-uidlist, subscriptions... */
};

struct mk_restore_failure {
	enum mk_restore_failure_kind kind;
	const char *folder; /* IMAP name, "INBOX", "Archive/2024" */
	const char *name;
	const char *reason;
};

/* Called for each failure, on the calling thread, before the run goes
 * on with the rest. */
typedef void mk_restore_failed_cb(
    const struct mk_restore_failure *f, void *arg);

/* What to restore and where.  Strings are borrowed for the call. */
struct mk_restore_req {
	const char *address; /* the mailbox, lower case */
	int64_t snapshot; /* a catalog snapshot id of that mailbox */
	/* An IMAP folder name with its subfolders ("Archive" gives Archive
	 * and Archive/2024), or NULL for every folder. */
	const char *folder;
	char separator; /* the IMAP hierarchy separator, '/' or '.' */
	/* One message by its base name (what `mailkeep ls` shows as ID),
	 * or NULL for all of the selected folders. */
	const char *message;
	enum mk_restore_target target;
	enum mk_restore_format format; /* MAILDIR only into the live mailbox */
	const char *dir; /* MK_RESTORE_TO_DIR */
	/* The live mailbox's Maildir, for the other targets. */
	const char *maildir;
	const char *prefix; /* MK_RESTORE_TO_NEW_FOLDER: "Restored-<date>" */
	/* doveadm binary, its config file (NULL: its default) and user
	 * (NULL: the address); doveadm NULL writes straight into the
	 * Maildir. */
	const char *doveadm;
	const char *doveadm_config;
	const char *doveadm_user;
	/* Into the live mailbox: what its quota still allows (limit minus
	 * usage); a restore of more is refused before anything is written.
	 * UINT64_MAX: no limit, or --force. */
	uint64_t room_bytes;
	uint64_t room_messages;
	/* Told about each part that could not be read; may be NULL. */
	mk_restore_failed_cb *failed_cb;
	void *failed_arg;
};

/* How far a restore is; totals are known from the start. */
struct mk_restore_progress {
	uint64_t messages;
	uint64_t messages_total;
	uint64_t bytes;
	uint64_t bytes_total;
};

/*
 * Called after each message and at the end; return false to cancel (the
 * run stops, removes its temporary files and fails with "cancelled";
 * files already renamed into a directory target stay).  Runs on the
 * calling thread.
 */
typedef bool mk_restore_progress_cb(
    const struct mk_restore_progress *p, void *arg);

struct mk_restore_stats {
	uint64_t folders;
	uint64_t messages; /* restored */
	uint64_t bytes; /* of the messages restored */
	uint64_t files; /* every file written, the metadata files too */
	uint64_t skipped; /* TO_ORIGINAL: already there */
	uint64_t failed; /* messages that could not be read */
	uint64_t failed_lists; /* folder message lists that could not be */
	uint64_t failed_files; /* metadata files that could not be */
	struct mk_warnings problems; /* the first failure */
	char folder[MK_RESTORE_PREFIX_MAX + 16]; /* TO_NEW_FOLDER: used */
};

/*
 * Run one restore.  Returns 0 when everything selected was restored (or
 * skipped as already there), -1 with err set otherwise: bad request, an
 * unknown snapshot or one of another mailbox, nothing matching the
 * folder or message, a target that exists or is a symbolic link, more
 * than the quota room, a cancel, doveadm failing, or messages that could not be read (stats
 * then says what was restored).  progress_cb may be NULL.
 */
int mk_restore_run(struct mk_repo *repo, struct mk_catalog *cat,
    const struct mk_restore_req *req, mk_restore_progress_cb *progress_cb,
    void *arg, struct mk_restore_stats *stats_r, struct mk_err *err);

/* The whole mailbox as Maildir into dir: mk_restore_run's simplest form. */
int mk_restore_mailbox(struct mk_repo *repo, struct mk_catalog *cat,
    int64_t snapshot, const char *address, const char *dir,
    struct mk_restore_stats *stats_r, struct mk_err *err);

#endif
