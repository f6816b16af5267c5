/*
 * snapshot: the repository objects that describe backups, encoded and
 * decoded in memory.  No I/O: backup.c writes them, restore.c and the
 * CLI read them.  docs/repository-format.md describes every byte.
 *
 * - A folder's message list (base name, rest of the file name, new/ or
 *   cur/, mtime, size, blob ids), sorted by base name and cut into chunks
 *   of about 64 KiB at boundaries chosen by the base names alone, so
 *   that a flag change rewrites one chunk and unchanged folders give the
 *   same chunks again.  Each chunk is a META blob.
 * - A mailbox snapshot: the address, and per folder its chunk ids and
 *   the blobs of dovecot-uidlist, dovecot-keywords and maildirfolder;
 *   the blobs of subscriptions.  A META blob; it holds no time, so an unchanged
 *   mailbox gives the same blob and costs nothing.
 * - A run's list of mailbox snapshots (address, snapshot blob id, time,
 *   counts), cut the same way by address.  META blobs.
 * - A run object, "snapshots/<run id>": in clear, the run's times, host
 *   and totals, and where its list chunks are (pack id and index entry),
 *   so that a run can be read without the catalog.
 *
 * Decoders treat their input as hostile: every count and length is
 * checked against the bytes given and against the limits below, names
 * are checked to be single path components, and an unknown major
 * version is refused.
 *
 * Pure functions: callable from any thread.
 */
#ifndef MAILKEEP_SNAPSHOT_H
#define MAILKEEP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/pack.h"

#define MK_SNAPSHOT_VERSION_MAJOR 1
#define MK_SNAPSHOT_VERSION_MINOR 0

#define MK_SNAPSHOT_NAME_MAX 255 /* a file name, a folder directory */
#define MK_SNAPSHOT_ADDRESS_MAX 1024
#define MK_SNAPSHOT_HOST_MAX 255
#define MK_SNAPSHOT_BLOBS_MAX 65536u /* blobs of one file */
#define MK_SNAPSHOT_FOLDERS_MAX 65536u
/* A list chunk ends before an entry that would take it past this size
 * (a single entry may be larger). */
#define MK_SNAPSHOT_CHUNK_MAX (1u << 20)
#define MK_SNAPSHOT_RUN_ID_LEN 32 /* hex */
/* "snapshots/" and a run id. */
#define MK_SNAPSHOT_RUN_OBJECT_LEN (10 + MK_SNAPSHOT_RUN_ID_LEN)

/*
 * A file as stored: blobs whose concatenation is its bytes.  A message
 * that is not opaque is a header blob followed by zero or more body
 * blobs; an opaque file (compressed or encrypted mail, uidlists) is just
 * pieces.  present is false for an optional file that did not exist.
 */
struct mk_snapshot_file {
	bool present;
	bool opaque;
	int64_t mtime_ns;
	uint64_t size;
	uint32_t nblobs;
	uint8_t (*blobs)[MK_PACK_ID_LEN];
};

/* A message of a folder: its file name is base followed by suffix. */
struct mk_snapshot_message {
	char *base; /* the unique part, up to the first ',' or ':' */
	char *suffix; /* ",S=5120,W=5230:2,RS", or "" */
	bool cur; /* in cur/, else new/ */
	struct mk_snapshot_file file;
};

/* Byte strings: what a list was cut into. */
struct mk_snapshot_chunk {
	uint8_t *data;
	size_t len;
};

struct mk_snapshot_chunks {
	struct mk_snapshot_chunk *chunks;
	size_t count;
};

void mk_snapshot_chunks_free(struct mk_snapshot_chunks *chunks);

/*
 * Encode a folder's messages, sorted by base name (bytewise) with no
 * base twice, into list chunks.  *chunks_r is the caller's
 * (mk_snapshot_chunks_free).  An empty folder gives no chunk.
 */
int mk_snapshot_messages_encode(const struct mk_snapshot_message *msgs,
    size_t count, struct mk_snapshot_chunks *chunks_r, struct mk_err *err);

/*
 * Decode one list chunk.  The messages come back in order; free them
 * with mk_snapshot_messages_free().
 */
int mk_snapshot_messages_decode(const void *data, size_t len,
    struct mk_snapshot_message **msgs_r, size_t *count_r, struct mk_err *err);
void mk_snapshot_messages_free(
    struct mk_snapshot_message **msgsp, size_t count);

/* A folder of a mailbox snapshot. */
struct mk_snapshot_folder {
	char *dir; /* "" for INBOX, ".Archive.2024" */
	uint64_t messages;
	uint64_t bytes;
	struct mk_snapshot_file uidlist; /* dovecot-uidlist */
	struct mk_snapshot_file keywords; /* dovecot-keywords */
	struct mk_snapshot_file maildirfolder; /* Maildir++'s marker */
	uint32_t nchunks;
	uint8_t (*chunks)[MK_PACK_ID_LEN]; /* its message list */
};

struct mk_snapshot_mailbox {
	char *address;
	uint64_t messages;
	uint64_t bytes;
	struct mk_snapshot_file subscriptions;
	struct mk_snapshot_folder *folders; /* sorted by dir, INBOX first */
	size_t nfolders;
};

int mk_snapshot_mailbox_encode(const struct mk_snapshot_mailbox *mb,
    uint8_t **data_r, size_t *len_r, struct mk_err *err);
int mk_snapshot_mailbox_decode(const void *data, size_t len,
    struct mk_snapshot_mailbox **mb_r, struct mk_err *err);
void mk_snapshot_mailbox_free(struct mk_snapshot_mailbox **mbp);

/* One mailbox snapshot of a run. */
struct mk_snapshot_entry {
	char *address;
	uint8_t snapshot[MK_PACK_ID_LEN]; /* blob id of the mailbox snapshot */
	int64_t time_ns;
	uint64_t messages;
	uint64_t bytes;
};

/* Encode a run's entries, sorted by address with none twice. */
int mk_snapshot_entries_encode(const struct mk_snapshot_entry *entries,
    size_t count, struct mk_snapshot_chunks *chunks_r, struct mk_err *err);
int mk_snapshot_entries_decode(const void *data, size_t len,
    struct mk_snapshot_entry **entries_r, size_t *count_r, struct mk_err *err);
void mk_snapshot_entries_free(
    struct mk_snapshot_entry **entriesp, size_t count);

/* Where a blob is: a pack and the blob's entry in the pack's index. */
struct mk_snapshot_loc {
	char pack[MK_PACK_NAME_LEN + 1];
	struct mk_pack_entry entry;
};

/* A run object. */
struct mk_snapshot_run {
	char id[MK_SNAPSHOT_RUN_ID_LEN + 1]; /* lower-case hex */
	int64_t started_ns;
	int64_t ended_ns;
	char host[MK_SNAPSHOT_HOST_MAX + 1];
	uint64_t mailboxes;
	uint64_t messages;
	uint64_t bytes;
	struct mk_snapshot_loc *chunks; /* its entries' list chunks */
	size_t nchunks;
};

int mk_snapshot_run_encode(const struct mk_snapshot_run *run, uint8_t **data_r,
    size_t *len_r, struct mk_err *err);
int mk_snapshot_run_decode(const void *data, size_t len,
    struct mk_snapshot_run **run_r, struct mk_err *err);
void mk_snapshot_run_free(struct mk_snapshot_run **runp);

/* The object name of a run: "snapshots/<run id>". */
int mk_snapshot_run_object(const char *id,
    char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1], struct mk_err *err);

#endif
