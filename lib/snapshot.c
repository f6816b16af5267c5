#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/crypto.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/snapshot.h"

#define SNAP_MAGIC_LEN 6
#define SNAP_MAGIC_MESSAGES "MKMSGS"
#define SNAP_MAGIC_MAILBOX "MKMBOX"
#define SNAP_MAGIC_ENTRIES "MKRUNL"
#define SNAP_MAGIC_RUN "MKSNAP"
/* Magic, major, minor, count. */
#define SNAP_CHUNK_HEADER_LEN 12
#define SNAP_RUN_ID_RAW 16
#define SNAP_LOC_LEN (MK_PACK_NAME_LEN + 82)
/* The smallest records: they bound the counts a decoder believes. */
#define SNAP_MESSAGE_MIN 30
#define SNAP_ENTRY_MIN 62
#define SNAP_FOLDER_MIN 27

/*
 * Where lists are cut: after at least SNAP_CUT_MIN entries, after an
 * entry whose key hashes to 0 modulo SNAP_CUT_EVERY (with entries of
 * about 150 bytes: chunks of about 64 KiB), and at the latest after
 * SNAP_CUT_MAX entries or MK_SNAPSHOT_CHUNK_MAX bytes.  The counts do
 * not depend on the entries' sizes, so a flag change (a longer or
 * shorter name) moves no boundary.
 */
#define SNAP_CUT_MIN 64
#define SNAP_CUT_EVERY 384
#define SNAP_CUT_MAX 4096

/* Flags of a message entry and of an optional file. */
#define SNAP_MSG_CUR 0x01
#define SNAP_MSG_OPAQUE 0x02
#define SNAP_FILE_PRESENT 0x01
#define SNAP_FILE_OPAQUE 0x02

struct snap_buf {
	uint8_t *data;
	size_t len;
	size_t cap;
};

static void
snap_put(struct snap_buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	mk_xgrow(&b->data, &b->cap, b->len + n, 1);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void
snap_put_u8(struct snap_buf *b, uint8_t v)
{
	snap_put(b, &v, 1);
}

static void
snap_put_u16(struct snap_buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	snap_put(b, p, sizeof(p));
}

static void
snap_put_u32(struct snap_buf *b, uint32_t v)
{
	uint8_t p[4];
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
	snap_put(b, p, sizeof(p));
}

static void
snap_put_u64(struct snap_buf *b, uint64_t v)
{
	uint8_t p[8];
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
	snap_put(b, p, sizeof(p));
}

static void
snap_set_u32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* A cursor over bytes to decode; any overrun sets bad and sticks. */
struct snap_reader {
	const uint8_t *p;
	size_t len;
	size_t pos;
	bool bad;
};

static const uint8_t *
snap_get(struct snap_reader *r, size_t n)
{
	const uint8_t *q;

	if (r->bad || n > r->len - r->pos) {
		r->bad = true;
		return NULL;
	}
	q = r->p + r->pos;
	r->pos += n;
	return q;
}

static uint64_t
snap_get_uint(struct snap_reader *r, size_t n)
{
	const uint8_t *q = snap_get(r, n);
	uint64_t v = 0;
	size_t i;

	if (q == NULL)
		return 0;
	for (i = 0; i < n; i++)
		v = v << 8 | q[i];
	return v;
}

static size_t
snap_left(const struct snap_reader *r)
{
	return r->bad ? 0 : r->len - r->pos;
}

/* Is a file name part or a host name clean: no NUL and no '/'? */
static bool
snap_component_ok(const uint8_t *p, size_t len)
{
	return memchr(p, '\0', len) == NULL && memchr(p, '/', len) == NULL;
}

static bool
snap_dir_ok(const char *dir)
{
	return dir[0] == '\0' ||
	    (strlen(dir) <= MK_SNAPSHOT_NAME_MAX && strchr(dir, '/') == NULL &&
		mk_maildir_is_folder_dir(dir));
}

/* Read a length-prefixed string into a new NUL-ended copy. */
static char *
snap_get_string(struct snap_reader *r, size_t lenbytes, size_t max)
{
	size_t len = (size_t)snap_get_uint(r, lenbytes);
	const uint8_t *p;

	if (len > max || (p = snap_get(r, len)) == NULL) {
		r->bad = true;
		return NULL;
	}
	if (memchr(p, '\0', len) != NULL) {
		r->bad = true;
		return NULL;
	}
	return mk_xstrndup((const char *)p, len);
}

/* Check the magic and the major version; returns the minor. */
static int
snap_header(struct snap_reader *r, const char *magic, const char *what,
    unsigned *minor_r, struct mk_err *err)
{
	const uint8_t *m = snap_get(r, SNAP_MAGIC_LEN);
	unsigned major;

	if (m == NULL || memcmp(m, magic, SNAP_MAGIC_LEN) != 0)
		return mk_err_set(err, "%s: bad magic", what);
	major = (unsigned)snap_get_uint(r, 1);
	*minor_r = (unsigned)snap_get_uint(r, 1);
	if (r->bad)
		return mk_err_set(err, "%s: truncated", what);
	if (major != MK_SNAPSHOT_VERSION_MAJOR)
		return mk_err_set(
		    err, "%s: format version %u is not supported", what, major);
	return 0;
}

/*
 * The end of a record or object: exactly at end for minor 0; a later
 * minor may append fields, which are skipped.
 */
static void
snap_skip_to(struct snap_reader *r, size_t end, unsigned minor)
{
	if (r->bad || r->pos > end || (minor == 0 && r->pos != end)) {
		r->bad = true;
		return;
	}
	r->pos = end;
}

static void
snap_file_free(struct mk_snapshot_file *f)
{
	free(f->blobs);
	memset(f, 0, sizeof(*f));
}

static int
snap_file_check(const struct mk_snapshot_file *f, struct mk_err *err)
{
	if (f->nblobs > MK_SNAPSHOT_BLOBS_MAX)
		return mk_err_set(err, "%u blobs in one file (at most %u)",
		    f->nblobs, MK_SNAPSHOT_BLOBS_MAX);
	return 0;
}

/* mtime, size, blob count and ids. */
static void
snap_put_file(struct snap_buf *b, const struct mk_snapshot_file *f)
{
	snap_put_u64(b, (uint64_t)f->mtime_ns);
	snap_put_u64(b, f->size);
	snap_put_u32(b, f->nblobs);
	snap_put(b, f->blobs, (size_t)f->nblobs * MK_PACK_ID_LEN);
}

static void
snap_get_file(struct snap_reader *r, struct mk_snapshot_file *f)
{
	const uint8_t *ids;
	size_t n;

	f->mtime_ns = (int64_t)snap_get_uint(r, 8);
	f->size = snap_get_uint(r, 8);
	n = (size_t)snap_get_uint(r, 4);
	if (n > MK_SNAPSHOT_BLOBS_MAX || n > snap_left(r) / MK_PACK_ID_LEN) {
		r->bad = true;
		return;
	}
	f->nblobs = (uint32_t)n;
	if ((ids = snap_get(r, n * MK_PACK_ID_LEN)) == NULL || n == 0)
		return;
	f->blobs = mk_xreallocarray(NULL, n, MK_PACK_ID_LEN);
	memcpy(f->blobs, ids, n * MK_PACK_ID_LEN);
}

/* An optional file: flags, then the file when present. */
static void
snap_put_optional(struct snap_buf *b, const struct mk_snapshot_file *f)
{
	snap_put_u8(b,
	    (f->present ? SNAP_FILE_PRESENT : 0) |
		(f->opaque ? SNAP_FILE_OPAQUE : 0));
	if (f->present)
		snap_put_file(b, f);
}

static void
snap_get_optional(struct snap_reader *r, struct mk_snapshot_file *f)
{
	unsigned flags = (unsigned)snap_get_uint(r, 1);

	if ((flags & ~(unsigned)(SNAP_FILE_PRESENT | SNAP_FILE_OPAQUE)) != 0) {
		r->bad = true;
		return;
	}
	f->present = (flags & SNAP_FILE_PRESENT) != 0;
	f->opaque = (flags & SNAP_FILE_OPAQUE) != 0;
	if (f->present)
		snap_get_file(r, f);
}

void
mk_snapshot_chunks_free(struct mk_snapshot_chunks *chunks)
{
	size_t i;

	for (i = 0; i < chunks->count; i++)
		free(chunks->chunks[i].data);
	free(chunks->chunks);
	chunks->chunks = NULL;
	chunks->count = 0;
}

/*
 * Should a list be cut after the entry with this key?  The rule is part
 * of the repository format (docs/repository-format.md): every writer,
 * every run, must cut at the same keys, so it is FNV-1a-64 and not a
 * keyed hash such as mk_hmap_hash.
 */
static bool
snap_cut_key(const char *key)
{
	uint64_t h = 14695981039346656037ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)key; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	/* FNV-1a's low bits are weak: mix them (MurmurHash3's finalizer). */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h % SNAP_CUT_EVERY == 0;
}

/* Builds the chunks of a list, one record at a time. */
struct snap_cutter {
	const char *magic;
	struct mk_snapshot_chunks *out;
	size_t cap;
	struct snap_buf cur;
	uint32_t count;
};

static void
snap_cutter_end(struct snap_cutter *c)
{
	struct mk_snapshot_chunk *chunk;

	if (c->count == 0)
		return;
	snap_set_u32(c->cur.data + 8, c->count);
	mk_xgrow(&c->out->chunks, &c->cap, c->out->count + 1,
	    sizeof(*c->out->chunks));
	chunk = &c->out->chunks[c->out->count++];
	chunk->data = c->cur.data;
	chunk->len = c->cur.len;
	memset(&c->cur, 0, sizeof(c->cur));
	c->count = 0;
}

static void
snap_cutter_add(
    struct snap_cutter *c, const char *key, const struct snap_buf *record)
{
	if (c->count > 0 &&
	    (c->count >= SNAP_CUT_MAX ||
		c->cur.len + 4 + record->len > MK_SNAPSHOT_CHUNK_MAX))
		snap_cutter_end(c);
	if (c->count == 0) {
		snap_put(&c->cur, c->magic, SNAP_MAGIC_LEN);
		snap_put_u8(&c->cur, MK_SNAPSHOT_VERSION_MAJOR);
		snap_put_u8(&c->cur, MK_SNAPSHOT_VERSION_MINOR);
		snap_put_u32(&c->cur, 0);
	}
	snap_put_u32(&c->cur, (uint32_t)record->len);
	snap_put(&c->cur, record->data, record->len);
	c->count++;
	if (c->count >= SNAP_CUT_MIN && snap_cut_key(key))
		snap_cutter_end(c);
}

/* Check a message's names, as a writer and as a reader. */
static int
snap_message_check(const struct mk_snapshot_message *m, struct mk_err *err)
{
	size_t blen = strlen(m->base), slen = strlen(m->suffix);

	if (blen == 0 || m->base[0] == '.' ||
	    blen + slen > MK_SNAPSHOT_NAME_MAX ||
	    !snap_component_ok((const uint8_t *)m->base, blen) ||
	    !snap_component_ok((const uint8_t *)m->suffix, slen))
		return mk_err_set(err, "message '%.64s%.64s': not a file name",
		    m->base, m->suffix);
	return snap_file_check(&m->file, err);
}

int
mk_snapshot_messages_encode(const struct mk_snapshot_message *msgs,
    size_t count, struct mk_snapshot_chunks *chunks_r, struct mk_err *err)
{
	struct snap_cutter c;
	struct snap_buf rec;
	size_t i;
	int rc = -1;

	memset(chunks_r, 0, sizeof(*chunks_r));
	memset(&c, 0, sizeof(c));
	memset(&rec, 0, sizeof(rec));
	c.magic = SNAP_MAGIC_MESSAGES;
	c.out = chunks_r;
	for (i = 0; i < count; i++) {
		const struct mk_snapshot_message *m = &msgs[i];

		if (snap_message_check(m, err) < 0)
			goto out;
		if (i > 0 && strcmp(msgs[i - 1].base, m->base) >= 0) {
			mk_err_set(
			    err, "message list not sorted at '%.64s'", m->base);
			goto out;
		}
		rec.len = 0;
		snap_put_u16(&rec, (uint16_t)strlen(m->base));
		snap_put(&rec, m->base, strlen(m->base));
		snap_put_u16(&rec, (uint16_t)strlen(m->suffix));
		snap_put(&rec, m->suffix, strlen(m->suffix));
		snap_put_u8(&rec,
		    (m->cur ? SNAP_MSG_CUR : 0) |
			(m->file.opaque ? SNAP_MSG_OPAQUE : 0));
		snap_put_file(&rec, &m->file);
		snap_cutter_add(&c, m->base, &rec);
	}
	snap_cutter_end(&c);
	rc = 0;
out:
	if (rc < 0)
		mk_snapshot_chunks_free(chunks_r);
	free(c.cur.data);
	free(rec.data);
	return rc;
}

/* Read the chunk header; returns the count of records, or -1. */
static int64_t
snap_chunk_header(struct snap_reader *r, const char *magic, const char *what,
    size_t min_record, unsigned *minor_r, struct mk_err *err)
{
	uint64_t count;

	if (snap_header(r, magic, what, minor_r, err) < 0)
		return -1;
	count = snap_get_uint(r, 4);
	if (r->bad || count > snap_left(r) / (4 + min_record))
		return mk_err_set(
		    err, "%s: bad count %llu", what, (unsigned long long)count);
	return (int64_t)count;
}

/* The end of the next record: its length field read and checked. */
static size_t
snap_record(struct snap_reader *r)
{
	size_t len = (size_t)snap_get_uint(r, 4);

	if (len > snap_left(r)) {
		r->bad = true;
		return r->pos;
	}
	return r->pos + len;
}

int
mk_snapshot_messages_decode(const void *data, size_t len,
    struct mk_snapshot_message **msgs_r, size_t *count_r, struct mk_err *err)
{
	struct snap_reader r = { data, len, 0, false };
	struct mk_snapshot_message *msgs = NULL;
	int64_t count;
	size_t i, n = 0;
	unsigned minor;
	int rc = -1;

	*msgs_r = NULL;
	*count_r = 0;
	count = snap_chunk_header(&r, SNAP_MAGIC_MESSAGES, "message list",
	    SNAP_MESSAGE_MIN, &minor, err);
	if (count < 0)
		return -1;
	msgs = mk_xcalloc(count > 0 ? (size_t)count : 1, sizeof(*msgs));
	for (i = 0; i < (size_t)count; i++) {
		struct mk_snapshot_message *m = &msgs[n];
		size_t end = snap_record(&r);
		unsigned flags;

		m->base = snap_get_string(&r, 2, MK_SNAPSHOT_NAME_MAX);
		m->suffix = snap_get_string(&r, 2, MK_SNAPSHOT_NAME_MAX);
		n++;
		flags = (unsigned)snap_get_uint(&r, 1);
		if ((flags & ~(unsigned)(SNAP_MSG_CUR | SNAP_MSG_OPAQUE)) != 0)
			r.bad = true;
		m->cur = (flags & SNAP_MSG_CUR) != 0;
		m->file.present = true;
		m->file.opaque = (flags & SNAP_MSG_OPAQUE) != 0;
		snap_get_file(&r, &m->file);
		snap_skip_to(&r, end, minor);
		if (r.bad)
			break;
		if (snap_message_check(m, err) < 0 ||
		    (i > 0 && strcmp(msgs[i - 1].base, m->base) >= 0)) {
			mk_err_set(err,
			    "message list: entry %zu: bad name or "
			    "order",
			    i);
			goto out;
		}
	}
	snap_skip_to(&r, len, minor);
	if (r.bad) {
		mk_err_set(err, "message list: truncated or malformed");
		goto out;
	}
	*msgs_r = msgs;
	*count_r = n;
	msgs = NULL;
	rc = 0;
out:
	mk_snapshot_messages_free(&msgs, n);
	return rc;
}

void
mk_snapshot_messages_free(struct mk_snapshot_message **msgsp, size_t count)
{
	struct mk_snapshot_message *msgs = *msgsp;
	size_t i;

	if (msgs == NULL)
		return;
	for (i = 0; i < count; i++) {
		free(msgs[i].base);
		free(msgs[i].suffix);
		snap_file_free(&msgs[i].file);
	}
	free(msgs);
	*msgsp = NULL;
}

int
mk_snapshot_mailbox_encode(const struct mk_snapshot_mailbox *mb,
    uint8_t **data_r, size_t *len_r, struct mk_err *err)
{
	struct snap_buf b, rec;
	size_t i, alen = strlen(mb->address);
	int rc = -1;

	*data_r = NULL;
	*len_r = 0;
	memset(&b, 0, sizeof(b));
	memset(&rec, 0, sizeof(rec));
	if (alen == 0 || alen > MK_SNAPSHOT_ADDRESS_MAX)
		return mk_err_set(err, "mailbox snapshot: bad address");
	if (mb->nfolders > MK_SNAPSHOT_FOLDERS_MAX)
		return mk_err_set(
		    err, "mailbox snapshot: %zu folders", mb->nfolders);
	if (snap_file_check(&mb->subscriptions, err) < 0)
		return -1;
	snap_put(&b, SNAP_MAGIC_MAILBOX, SNAP_MAGIC_LEN);
	snap_put_u8(&b, MK_SNAPSHOT_VERSION_MAJOR);
	snap_put_u8(&b, MK_SNAPSHOT_VERSION_MINOR);
	snap_put_u16(&b, (uint16_t)alen);
	snap_put(&b, mb->address, alen);
	snap_put_u64(&b, mb->messages);
	snap_put_u64(&b, mb->bytes);
	snap_put_optional(&b, &mb->subscriptions);
	snap_put_u32(&b, (uint32_t)mb->nfolders);
	for (i = 0; i < mb->nfolders; i++) {
		const struct mk_snapshot_folder *f = &mb->folders[i];

		if (!snap_dir_ok(f->dir) ||
		    (i > 0 && strcmp(mb->folders[i - 1].dir, f->dir) >= 0)) {
			mk_err_set(err,
			    "mailbox snapshot: folder '%.64s': bad name or "
			    "order",
			    f->dir);
			goto out;
		}
		if (snap_file_check(&f->uidlist, err) < 0 ||
		    snap_file_check(&f->keywords, err) < 0 ||
		    snap_file_check(&f->maildirfolder, err) < 0)
			goto out;
		rec.len = 0;
		snap_put_u16(&rec, (uint16_t)strlen(f->dir));
		snap_put(&rec, f->dir, strlen(f->dir));
		snap_put_u64(&rec, f->messages);
		snap_put_u64(&rec, f->bytes);
		snap_put_optional(&rec, &f->uidlist);
		snap_put_optional(&rec, &f->keywords);
		snap_put_optional(&rec, &f->maildirfolder);
		snap_put_u32(&rec, f->nchunks);
		snap_put(&rec, f->chunks, (size_t)f->nchunks * MK_PACK_ID_LEN);
		snap_put_u32(&b, (uint32_t)rec.len);
		snap_put(&b, rec.data, rec.len);
	}
	if (b.len > MK_PACK_BLOB_MAX) {
		mk_err_set(
		    err, "mailbox snapshot: %zu bytes is too large", b.len);
		goto out;
	}
	*data_r = b.data;
	*len_r = b.len;
	b.data = NULL;
	rc = 0;
out:
	free(b.data);
	free(rec.data);
	return rc;
}

int
mk_snapshot_mailbox_decode(const void *data, size_t len,
    struct mk_snapshot_mailbox **mb_r, struct mk_err *err)
{
	struct snap_reader r = { data, len, 0, false };
	struct mk_snapshot_mailbox *mb = NULL;
	uint64_t count;
	unsigned minor;
	size_t i;
	int rc = -1;

	*mb_r = NULL;
	if (snap_header(
		&r, SNAP_MAGIC_MAILBOX, "mailbox snapshot", &minor, err) < 0)
		return -1;
	mb = mk_xcalloc(1, sizeof(*mb));
	mb->address = snap_get_string(&r, 2, MK_SNAPSHOT_ADDRESS_MAX);
	mb->messages = snap_get_uint(&r, 8);
	mb->bytes = snap_get_uint(&r, 8);
	snap_get_optional(&r, &mb->subscriptions);
	count = snap_get_uint(&r, 4);
	if (r.bad || mb->address[0] == '\0' ||
	    count > MK_SNAPSHOT_FOLDERS_MAX ||
	    count > snap_left(&r) / (4 + SNAP_FOLDER_MIN)) {
		mk_err_set(err, "mailbox snapshot: malformed header");
		goto out;
	}
	mb->folders = mk_xcalloc(count > 0 ? count : 1, sizeof(*mb->folders));
	for (i = 0; i < count; i++) {
		struct mk_snapshot_folder *f = &mb->folders[i];
		size_t end = snap_record(&r), n;
		const uint8_t *ids;

		f->dir = snap_get_string(&r, 2, MK_SNAPSHOT_NAME_MAX);
		mb->nfolders++;
		f->messages = snap_get_uint(&r, 8);
		f->bytes = snap_get_uint(&r, 8);
		snap_get_optional(&r, &f->uidlist);
		snap_get_optional(&r, &f->keywords);
		snap_get_optional(&r, &f->maildirfolder);
		n = (size_t)snap_get_uint(&r, 4);
		if (n > snap_left(&r) / MK_PACK_ID_LEN ||
		    (ids = snap_get(&r, n * MK_PACK_ID_LEN)) == NULL) {
			r.bad = true;
			break;
		}
		f->nchunks = (uint32_t)n;
		if (n > 0) {
			f->chunks = mk_xreallocarray(NULL, n, MK_PACK_ID_LEN);
			memcpy(f->chunks, ids, n * MK_PACK_ID_LEN);
		}
		snap_skip_to(&r, end, minor);
		if (r.bad)
			break;
		if (!snap_dir_ok(f->dir) ||
		    (i > 0 && strcmp(mb->folders[i - 1].dir, f->dir) >= 0)) {
			mk_err_set(err,
			    "mailbox snapshot: folder %zu: bad name or order",
			    i);
			goto out;
		}
	}
	snap_skip_to(&r, len, minor);
	if (r.bad) {
		mk_err_set(err, "mailbox snapshot: truncated or malformed");
		goto out;
	}
	*mb_r = mb;
	mb = NULL;
	rc = 0;
out:
	mk_snapshot_mailbox_free(&mb);
	return rc;
}

void
mk_snapshot_mailbox_free(struct mk_snapshot_mailbox **mbp)
{
	struct mk_snapshot_mailbox *mb = *mbp;
	size_t i;

	if (mb == NULL)
		return;
	for (i = 0; i < mb->nfolders; i++) {
		free(mb->folders[i].dir);
		snap_file_free(&mb->folders[i].uidlist);
		snap_file_free(&mb->folders[i].keywords);
		snap_file_free(&mb->folders[i].maildirfolder);
		free(mb->folders[i].chunks);
	}
	free(mb->folders);
	snap_file_free(&mb->subscriptions);
	free(mb->address);
	free(mb);
	*mbp = NULL;
}

int
mk_snapshot_entries_encode(const struct mk_snapshot_entry *entries,
    size_t count, struct mk_snapshot_chunks *chunks_r, struct mk_err *err)
{
	struct snap_cutter c;
	struct snap_buf rec;
	size_t i;
	int rc = -1;

	memset(chunks_r, 0, sizeof(*chunks_r));
	memset(&c, 0, sizeof(c));
	memset(&rec, 0, sizeof(rec));
	c.magic = SNAP_MAGIC_ENTRIES;
	c.out = chunks_r;
	for (i = 0; i < count; i++) {
		const struct mk_snapshot_entry *e = &entries[i];
		size_t alen = strlen(e->address);

		if (alen == 0 || alen > MK_SNAPSHOT_ADDRESS_MAX ||
		    (i > 0 &&
			strcmp(entries[i - 1].address, e->address) >= 0)) {
			mk_err_set(err,
			    "run list: entry '%.64s': bad address "
			    "or order",
			    e->address);
			goto out;
		}
		rec.len = 0;
		snap_put_u16(&rec, (uint16_t)alen);
		snap_put(&rec, e->address, alen);
		snap_put(&rec, e->snapshot, MK_PACK_ID_LEN);
		snap_put_u64(&rec, (uint64_t)e->time_ns);
		snap_put_u64(&rec, e->messages);
		snap_put_u64(&rec, e->bytes);
		snap_cutter_add(&c, e->address, &rec);
	}
	snap_cutter_end(&c);
	rc = 0;
out:
	if (rc < 0)
		mk_snapshot_chunks_free(chunks_r);
	free(c.cur.data);
	free(rec.data);
	return rc;
}

int
mk_snapshot_entries_decode(const void *data, size_t len,
    struct mk_snapshot_entry **entries_r, size_t *count_r, struct mk_err *err)
{
	struct snap_reader r = { data, len, 0, false };
	struct mk_snapshot_entry *entries = NULL;
	int64_t count;
	size_t i, n = 0;
	unsigned minor;
	int rc = -1;

	*entries_r = NULL;
	*count_r = 0;
	count = snap_chunk_header(
	    &r, SNAP_MAGIC_ENTRIES, "run list", SNAP_ENTRY_MIN, &minor, err);
	if (count < 0)
		return -1;
	entries = mk_xcalloc(count > 0 ? (size_t)count : 1, sizeof(*entries));
	for (i = 0; i < (size_t)count; i++) {
		struct mk_snapshot_entry *e = &entries[n];
		size_t end = snap_record(&r);
		const uint8_t *id;

		e->address = snap_get_string(&r, 2, MK_SNAPSHOT_ADDRESS_MAX);
		n++;
		if ((id = snap_get(&r, MK_PACK_ID_LEN)) != NULL)
			memcpy(e->snapshot, id, MK_PACK_ID_LEN);
		e->time_ns = (int64_t)snap_get_uint(&r, 8);
		e->messages = snap_get_uint(&r, 8);
		e->bytes = snap_get_uint(&r, 8);
		snap_skip_to(&r, end, minor);
		if (r.bad)
			break;
		if (e->address[0] == '\0' ||
		    (i > 0 &&
			strcmp(entries[i - 1].address, e->address) >= 0)) {
			mk_err_set(err, "run list: entry %zu: bad order", i);
			goto out;
		}
	}
	snap_skip_to(&r, len, minor);
	if (r.bad) {
		mk_err_set(err, "run list: truncated or malformed");
		goto out;
	}
	*entries_r = entries;
	*count_r = n;
	entries = NULL;
	rc = 0;
out:
	mk_snapshot_entries_free(&entries, n);
	return rc;
}

void
mk_snapshot_entries_free(struct mk_snapshot_entry **entriesp, size_t count)
{
	struct mk_snapshot_entry *entries = *entriesp;
	size_t i;

	if (entries == NULL)
		return;
	for (i = 0; i < count; i++)
		free(entries[i].address);
	free(entries);
	*entriesp = NULL;
}

/* A pack index entry, laid out as in the pack's own index. */
static void
snap_put_loc(struct snap_buf *b, const struct mk_snapshot_loc *loc)
{
	const struct mk_pack_entry *e = &loc->entry;

	snap_put(b, loc->pack, MK_PACK_NAME_LEN);
	snap_put(b, e->id, MK_PACK_ID_LEN);
	snap_put_u8(b, e->type);
	snap_put_u8(b, e->compression);
	snap_put(b, e->dict_id, MK_PACK_ID_LEN);
	snap_put_u64(b, e->offset);
	snap_put_u32(b, e->length);
	snap_put_u32(b, e->raw_length);
}

static void
snap_get_loc(struct snap_reader *r, struct mk_snapshot_loc *loc)
{
	struct mk_pack_entry *e = &loc->entry;
	const uint8_t *p;

	if ((p = snap_get(r, MK_PACK_NAME_LEN)) == NULL)
		return;
	memcpy(loc->pack, p, MK_PACK_NAME_LEN);
	loc->pack[MK_PACK_NAME_LEN] = '\0';
	if (strspn(loc->pack, "0123456789abcdef") != MK_PACK_NAME_LEN) {
		r->bad = true;
		return;
	}
	if ((p = snap_get(r, MK_PACK_ID_LEN)) != NULL)
		memcpy(e->id, p, MK_PACK_ID_LEN);
	e->type = (uint8_t)snap_get_uint(r, 1);
	e->compression = (uint8_t)snap_get_uint(r, 1);
	if ((p = snap_get(r, MK_PACK_ID_LEN)) != NULL)
		memcpy(e->dict_id, p, MK_PACK_ID_LEN);
	e->offset = snap_get_uint(r, 8);
	e->length = (uint32_t)snap_get_uint(r, 4);
	e->raw_length = (uint32_t)snap_get_uint(r, 4);
}

static bool
snap_host_ok(const char *host)
{
	size_t len = strlen(host);

	return len <= MK_SNAPSHOT_HOST_MAX &&
	    snap_component_ok((const uint8_t *)host, len);
}

int
mk_snapshot_run_encode(const struct mk_snapshot_run *run, uint8_t **data_r,
    size_t *len_r, struct mk_err *err)
{
	uint8_t raw[SNAP_RUN_ID_RAW], hash[MK_CRYPTO_HASH_LEN];
	struct snap_buf b;
	size_t i;

	*data_r = NULL;
	*len_r = 0;
	memset(&b, 0, sizeof(b));
	if (strlen(run->id) != MK_SNAPSHOT_RUN_ID_LEN ||
	    strspn(run->id, "0123456789abcdef") != MK_SNAPSHOT_RUN_ID_LEN ||
	    mk_crypto_unhex(run->id, raw, sizeof(raw), err) < 0)
		return mk_err_set(err, "run '%.40s': bad id", run->id);
	if (!snap_host_ok(run->host))
		return mk_err_set(err, "run %s: bad host name", run->id);
	if (run->nchunks > UINT32_MAX)
		return mk_err_set(err, "run %s: too many chunks", run->id);
	snap_put(&b, SNAP_MAGIC_RUN, SNAP_MAGIC_LEN);
	snap_put_u8(&b, MK_SNAPSHOT_VERSION_MAJOR);
	snap_put_u8(&b, MK_SNAPSHOT_VERSION_MINOR);
	snap_put(&b, raw, sizeof(raw));
	snap_put_u64(&b, (uint64_t)run->started_ns);
	snap_put_u64(&b, (uint64_t)run->ended_ns);
	snap_put_u8(&b, (uint8_t)strlen(run->host));
	snap_put(&b, run->host, strlen(run->host));
	snap_put_u64(&b, run->mailboxes);
	snap_put_u64(&b, run->messages);
	snap_put_u64(&b, run->bytes);
	snap_put_u32(&b, (uint32_t)run->nchunks);
	for (i = 0; i < run->nchunks; i++)
		snap_put_loc(&b, &run->chunks[i]);
	if (mk_crypto_sha256(b.data, b.len, hash, err) < 0) {
		free(b.data);
		return -1;
	}
	snap_put(&b, hash, sizeof(hash));
	*data_r = b.data;
	*len_r = b.len;
	return 0;
}

int
mk_snapshot_run_decode(const void *data, size_t len,
    struct mk_snapshot_run **run_r, struct mk_err *err)
{
	struct snap_reader r = { data, len, 0, false };
	uint8_t hash[MK_CRYPTO_HASH_LEN];
	struct mk_snapshot_run *run = NULL;
	const uint8_t *raw, *host;
	unsigned minor;
	size_t i, hlen;
	uint64_t count;
	int rc = -1;

	*run_r = NULL;
	if (len < MK_CRYPTO_HASH_LEN)
		return mk_err_set(err, "run object: truncated");
	r.len = len - MK_CRYPTO_HASH_LEN;
	if (mk_crypto_sha256(data, r.len, hash, err) < 0)
		return -1;
	if (memcmp(hash, (const uint8_t *)data + r.len, sizeof(hash)) != 0)
		return mk_err_set(err, "run object: checksum mismatch");
	if (snap_header(&r, SNAP_MAGIC_RUN, "run object", &minor, err) < 0)
		return -1;
	run = mk_xcalloc(1, sizeof(*run));
	if ((raw = snap_get(&r, SNAP_RUN_ID_RAW)) != NULL)
		mk_crypto_hex(raw, SNAP_RUN_ID_RAW, run->id);
	run->started_ns = (int64_t)snap_get_uint(&r, 8);
	run->ended_ns = (int64_t)snap_get_uint(&r, 8);
	hlen = (size_t)snap_get_uint(&r, 1);
	if ((host = snap_get(&r, hlen)) != NULL)
		memcpy(run->host, host, hlen);
	run->mailboxes = snap_get_uint(&r, 8);
	run->messages = snap_get_uint(&r, 8);
	run->bytes = snap_get_uint(&r, 8);
	count = snap_get_uint(&r, 4);
	if (r.bad || !snap_host_ok(run->host) || strlen(run->host) != hlen ||
	    count > snap_left(&r) / SNAP_LOC_LEN) {
		mk_err_set(err, "run object: malformed header");
		goto out;
	}
	run->chunks = mk_xcalloc(count > 0 ? count : 1, sizeof(*run->chunks));
	run->nchunks = (size_t)count;
	for (i = 0; i < count; i++)
		snap_get_loc(&r, &run->chunks[i]);
	snap_skip_to(&r, r.len, minor);
	if (r.bad) {
		mk_err_set(err, "run object: truncated or malformed");
		goto out;
	}
	*run_r = run;
	run = NULL;
	rc = 0;
out:
	mk_snapshot_run_free(&run);
	return rc;
}

void
mk_snapshot_run_free(struct mk_snapshot_run **runp)
{
	struct mk_snapshot_run *run = *runp;

	if (run == NULL)
		return;
	free(run->chunks);
	free(run);
	*runp = NULL;
}

int
mk_snapshot_run_object(const char *id,
    char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1], struct mk_err *err)
{
	if (strlen(id) != MK_SNAPSHOT_RUN_ID_LEN ||
	    strspn(id, "0123456789abcdef") != MK_SNAPSHOT_RUN_ID_LEN)
		return mk_err_set(err, "'%.40s' is not a run id", id);
	snprintf(name, MK_SNAPSHOT_RUN_OBJECT_LEN + 1, "snapshots/%s", id);
	return 0;
}
