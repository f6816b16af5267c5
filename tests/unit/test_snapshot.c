#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/mem.h"
#include "mailkeep/snapshot.h"

/* A blob id made from a number, so that tests can tell them apart. */
static void
fake_id(uint8_t id[MK_PACK_ID_LEN], unsigned n)
{
	memset(id, 0, MK_PACK_ID_LEN);
	id[0] = (uint8_t)(n >> 24);
	id[1] = (uint8_t)(n >> 16);
	id[2] = (uint8_t)(n >> 8);
	id[3] = (uint8_t)n;
	id[31] = 0xa5;
}

/* n messages with Dovecot-like names, sorted, two blobs each. */
static struct mk_snapshot_message *
make_messages(size_t n)
{
	struct mk_snapshot_message *msgs = mk_xcalloc(n, sizeof(*msgs));
	char base[64];
	size_t i;

	for (i = 0; i < n; i++) {
		struct mk_snapshot_message *m = &msgs[i];

		snprintf(base, sizeof(base), "17%08zu.M%zuP%zu.mail-be01",
		    i * 37, i * 7919 % 1000000, 4000 + i % 1000);
		m->base = mk_xstrdup(base);
		m->suffix =
		    mk_xasprintf(",S=%zu,W=%zu:2,S", 5000 + i, 5100 + i);
		m->cur = i % 5 != 0;
		m->file.present = true;
		m->file.mtime_ns = 1700000000000000000LL + (int64_t)i * 1000;
		m->file.size = 5000 + i;
		m->file.nblobs = 2;
		m->file.blobs = mk_xcalloc(2, MK_PACK_ID_LEN);
		fake_id(m->file.blobs[0], (unsigned)(2 * i));
		fake_id(m->file.blobs[1], (unsigned)(2 * i + 1));
	}
	return msgs;
}

static void
assert_message_equal(
    const struct mk_snapshot_message *a, const struct mk_snapshot_message *b)
{
	assert_string_equal(a->base, b->base);
	assert_string_equal(a->suffix, b->suffix);
	assert_int_equal(a->cur, b->cur);
	assert_int_equal(a->file.opaque, b->file.opaque);
	assert_true(a->file.mtime_ns == b->file.mtime_ns);
	assert_true(a->file.size == b->file.size);
	assert_int_equal(a->file.nblobs, b->file.nblobs);
	if (a->file.nblobs > 0)
		assert_memory_equal(a->file.blobs, b->file.blobs,
		    (size_t)a->file.nblobs * MK_PACK_ID_LEN);
}

static void
test_snapshot_messages_round_trip(void **state)
{
	struct mk_snapshot_message *msgs = make_messages(4), *got = NULL;
	struct mk_snapshot_chunks chunks;
	struct mk_err err;
	size_t n, i;

	(void)state;
	/* Edge values: opaque with no blob, an empty suffix, new/, a time
	 * before the epoch, the largest size. */
	msgs[1].file.opaque = true;
	msgs[1].file.nblobs = 0;
	free(msgs[2].suffix);
	msgs[2].suffix = mk_xstrdup("");
	msgs[2].cur = false;
	msgs[3].file.mtime_ns = -1500000000;
	msgs[3].file.size = UINT64_MAX;
	if (mk_snapshot_messages_encode(msgs, 4, &chunks, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(chunks.count, 1);
	if (mk_snapshot_messages_decode(chunks.chunks[0].data,
		chunks.chunks[0].len, &got, &n, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(n, 4);
	for (i = 0; i < 4; i++)
		assert_message_equal(&msgs[i], &got[i]);
	mk_snapshot_messages_free(&got, n);
	mk_snapshot_chunks_free(&chunks);
	/* An empty folder is no chunk at all. */
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs, 0, &chunks, &err), 0);
	assert_int_equal(chunks.count, 0);
	mk_snapshot_messages_free(&msgs, 4);
}

/* How many chunks of b are not among a's (by content). */
static size_t
chunks_changed(
    const struct mk_snapshot_chunks *a, const struct mk_snapshot_chunks *b)
{
	size_t i, j, changed = 0;

	for (i = 0; i < b->count; i++) {
		for (j = 0; j < a->count; j++)
			if (a->chunks[j].len == b->chunks[i].len &&
			    memcmp(a->chunks[j].data, b->chunks[i].data,
				a->chunks[j].len) == 0)
				break;
		changed += j == a->count;
	}
	return changed;
}

static void
test_snapshot_flag_change_rewrites_one_chunk(void **state)
{
	enum { N = 20000 };
	struct mk_snapshot_message *msgs = make_messages(N), *got;
	struct mk_snapshot_chunks before, after, fewer;
	size_t i, n, total = 0, decoded = 0;
	struct mk_err err;

	(void)state;
	if (mk_snapshot_messages_encode(msgs, N, &before, &err) < 0)
		fail_msg("%s", err.msg);
	/* About 64 KiB each, never over the limit, all of them decoding. */
	assert_true(before.count > 10);
	for (i = 0; i < before.count; i++) {
		assert_true(before.chunks[i].len <= MK_SNAPSHOT_CHUNK_MAX);
		total += before.chunks[i].len;
		assert_int_equal(
		    mk_snapshot_messages_decode(before.chunks[i].data,
			before.chunks[i].len, &got, &n, &err),
		    0);
		assert_string_equal(got[0].base, msgs[decoded].base);
		decoded += n;
		mk_snapshot_messages_free(&got, n);
	}
	assert_int_equal(decoded, N);
	assert_true(total / before.count > 32 * 1024);
	assert_true(total / before.count < 128 * 1024);
	/* A flag change (a longer name) in the middle: one chunk differs. */
	free(msgs[N / 2].suffix);
	msgs[N / 2].suffix = mk_xstrdup(",S=15000,W=15100:2,RSa");
	if (mk_snapshot_messages_encode(msgs, N, &after, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(after.count, before.count);
	assert_int_equal(chunks_changed(&before, &after), 1);
	/* So does a move from new/ to cur/ at the start. */
	mk_snapshot_chunks_free(&after);
	msgs[0].cur = true;
	if (mk_snapshot_messages_encode(msgs, N, &after, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(chunks_changed(&before, &after), 2);
	/* An expunge changes the chunks around it, not the rest. */
	if (mk_snapshot_messages_encode(msgs + 1, N - 1, &fewer, &err) < 0)
		fail_msg("%s", err.msg);
	assert_true(chunks_changed(&after, &fewer) <= 2);
	mk_snapshot_chunks_free(&before);
	mk_snapshot_chunks_free(&after);
	mk_snapshot_chunks_free(&fewer);
	mk_snapshot_messages_free(&msgs, N);
}

/* docs/repository-format.md's cut rule, written out again from the text. */
static bool
format_cut_after(const char *base)
{
	uint64_t h = 14695981039346656037ULL;
	const char *p;

	for (p = base; *p != '\0'; p++) {
		h ^= (unsigned char)*p;
		h *= 1099511628211ULL;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h % 384 == 0;
}

/*
 * Chunks end where the format says, so that every run and every writer
 * cuts an unchanged list the same way: after a record whose base hashes
 * to a cut, once 64 records are in (these chunks stay far below 4096
 * records and 1 MiB).
 */
static void
test_snapshot_cuts_follow_the_format(void **state)
{
	enum { N = 20000 };
	struct mk_snapshot_message *msgs = make_messages(N), *got;
	struct mk_snapshot_chunks chunks;
	size_t i, n, at = 0, cuts = 0;
	struct mk_err err;

	(void)state;
	if (mk_snapshot_messages_encode(msgs, N, &chunks, &err) < 0)
		fail_msg("%s", err.msg);
	for (i = 0; i < chunks.count; i++) {
		size_t k, want = 0;

		assert_int_equal(
		    mk_snapshot_messages_decode(chunks.chunks[i].data,
			chunks.chunks[i].len, &got, &n, &err),
		    0);
		/* Where the rule ends a chunk that starts at record at. */
		for (k = at; k < N && want == 0; k++)
			if (k - at + 1 >= 64 && format_cut_after(msgs[k].base))
				want = k - at + 1;
		if (want == 0)
			want = N - at;
		assert_int_equal(n, want);
		at += n;
		cuts += i + 1 < chunks.count;
		mk_snapshot_messages_free(&got, n);
	}
	assert_int_equal(at, N);
	assert_true(cuts > 10);
	mk_snapshot_chunks_free(&chunks);
	mk_snapshot_messages_free(&msgs, N);
}

static void
test_snapshot_messages_refused(void **state)
{
	struct mk_snapshot_message *msgs = make_messages(2), *got = NULL;
	static const char *const bad_bases[] = { "", ".hidden", "a/b", "../x" };
	struct mk_snapshot_chunks chunks;
	char longname[300];
	struct mk_err err;
	size_t i, n;

	(void)state;
	/* Not sorted, or a base twice. */
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs + 1, 1, &chunks, &err), 0);
	mk_snapshot_chunks_free(&chunks);
	free(msgs[1].base);
	msgs[1].base = mk_xstrdup(msgs[0].base);
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs, 2, &chunks, &err), -1);
	/* Names that are no single file name. */
	for (i = 0; i < sizeof(bad_bases) / sizeof(bad_bases[0]); i++) {
		free(msgs[0].base);
		msgs[0].base = mk_xstrdup(bad_bases[i]);
		assert_int_equal(
		    mk_snapshot_messages_encode(msgs, 1, &chunks, &err), -1);
	}
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	free(msgs[0].base);
	msgs[0].base = mk_xstrdup(longname);
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs, 1, &chunks, &err), -1);
	/* A decoder never takes a slash the encoder would have refused. */
	free(msgs[0].base);
	msgs[0].base = mk_xstrdup("aXb");
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs, 1, &chunks, &err), 0);
	((char *)memmem(
	    chunks.chunks[0].data, chunks.chunks[0].len, "aXb", 3))[1] = '/';
	assert_int_equal(mk_snapshot_messages_decode(chunks.chunks[0].data,
			     chunks.chunks[0].len, &got, &n, &err),
	    -1);
	assert_null(got);
	mk_snapshot_chunks_free(&chunks);
	mk_snapshot_messages_free(&msgs, 2);
}

/* Every prefix of an object is refused, every byte flip is survived. */
static void
check_damage(const uint8_t *data, size_t len,
    int (*decode)(const uint8_t *, size_t, struct mk_err *))
{
	uint8_t *copy = mk_xmalloc(len);
	struct mk_err err;
	size_t i;

	for (i = 0; i < len; i++)
		assert_int_equal(decode(data, i, &err), -1);
	for (i = 0; i < len; i++) {
		memcpy(copy, data, len);
		copy[i] ^= 0x80;
		(void)decode(copy, len, &err);
	}
	free(copy);
}

static int
decode_messages(const uint8_t *data, size_t len, struct mk_err *err)
{
	struct mk_snapshot_message *m = NULL;
	size_t n = 0;
	int rc = mk_snapshot_messages_decode(data, len, &m, &n, err);

	mk_snapshot_messages_free(&m, n);
	return rc;
}

static int
decode_mailbox(const uint8_t *data, size_t len, struct mk_err *err)
{
	struct mk_snapshot_mailbox *mb = NULL;
	int rc = mk_snapshot_mailbox_decode(data, len, &mb, err);

	mk_snapshot_mailbox_free(&mb);
	return rc;
}

static int
decode_entries(const uint8_t *data, size_t len, struct mk_err *err)
{
	struct mk_snapshot_entry *e = NULL;
	size_t n = 0;
	int rc = mk_snapshot_entries_decode(data, len, &e, &n, err);

	mk_snapshot_entries_free(&e, n);
	return rc;
}

static int
decode_run(const uint8_t *data, size_t len, struct mk_err *err)
{
	struct mk_snapshot_run *run = NULL;
	int rc = mk_snapshot_run_decode(data, len, &run, err);

	mk_snapshot_run_free(&run);
	return rc;
}

static void
test_snapshot_damaged_lists_refused(void **state)
{
	struct mk_snapshot_message *msgs = make_messages(5);
	struct mk_snapshot_chunks chunks;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_snapshot_messages_encode(msgs, 5, &chunks, &err), 0);
	check_damage(
	    chunks.chunks[0].data, chunks.chunks[0].len, decode_messages);
	/* An unknown major version is refused. */
	chunks.chunks[0].data[6] = 2;
	assert_int_equal(
	    decode_messages(chunks.chunks[0].data, chunks.chunks[0].len, &err),
	    -1);
	assert_non_null(strstr(err.msg, "version 2"));
	mk_snapshot_chunks_free(&chunks);
	mk_snapshot_messages_free(&msgs, 5);
}

static struct mk_snapshot_mailbox *
make_mailbox(void)
{
	struct mk_snapshot_mailbox *mb = mk_xcalloc(1, sizeof(*mb));
	static const char *const dirs[] = { "", ".Archive.2024", ".Sent" };
	size_t i;

	mb->address = mk_xstrdup("otto.friedrich@hosteurope.de");
	mb->messages = 12;
	mb->bytes = 123456;
	mb->subscriptions.present = true;
	mb->subscriptions.opaque = true;
	mb->subscriptions.mtime_ns = 1700000000123456789LL;
	mb->subscriptions.size = 40;
	mb->subscriptions.nblobs = 1;
	mb->subscriptions.blobs = mk_xcalloc(1, MK_PACK_ID_LEN);
	fake_id(mb->subscriptions.blobs[0], 99);
	mb->nfolders = 3;
	mb->folders = mk_xcalloc(3, sizeof(*mb->folders));
	for (i = 0; i < 3; i++) {
		struct mk_snapshot_folder *f = &mb->folders[i];

		f->dir = mk_xstrdup(dirs[i]);
		f->maildirfolder.present = i > 0;
		f->maildirfolder.mtime_ns = 77;
		f->messages = 4;
		f->bytes = 41152;
		f->uidlist.present = i != 1;
		f->uidlist.opaque = true;
		f->uidlist.size = 300;
		f->uidlist.mtime_ns = 5;
		f->uidlist.nblobs = f->uidlist.present ? 1 : 0;
		f->uidlist.blobs = mk_xcalloc(1, MK_PACK_ID_LEN);
		fake_id(f->uidlist.blobs[0], 100 + (unsigned)i);
		f->keywords.present = i == 0;
		f->nchunks = (uint32_t)i;
		f->chunks = mk_xcalloc(3, MK_PACK_ID_LEN);
		fake_id(f->chunks[0], 200);
		fake_id(f->chunks[1], 201);
	}
	return mb;
}

static void
assert_file_equal(
    const struct mk_snapshot_file *a, const struct mk_snapshot_file *b)
{
	assert_int_equal(a->present, b->present);
	if (!a->present)
		return;
	assert_int_equal(a->opaque, b->opaque);
	assert_true(a->mtime_ns == b->mtime_ns);
	assert_true(a->size == b->size);
	assert_int_equal(a->nblobs, b->nblobs);
	if (a->nblobs > 0)
		assert_memory_equal(
		    a->blobs, b->blobs, (size_t)a->nblobs * MK_PACK_ID_LEN);
}

static void
test_snapshot_mailbox_round_trip(void **state)
{
	struct mk_snapshot_mailbox *mb = make_mailbox(), *got = NULL;
	uint8_t *data = NULL, *longer;
	struct mk_err err;
	size_t len = 0, i;

	(void)state;
	if (mk_snapshot_mailbox_encode(mb, &data, &len, &err) < 0)
		fail_msg("%s", err.msg);
	if (mk_snapshot_mailbox_decode(data, len, &got, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(got->address, mb->address);
	assert_true(got->messages == 12 && got->bytes == 123456);
	assert_file_equal(&mb->subscriptions, &got->subscriptions);
	assert_int_equal(got->nfolders, 3);
	for (i = 0; i < 3; i++) {
		const struct mk_snapshot_folder *a = &mb->folders[i];
		const struct mk_snapshot_folder *b = &got->folders[i];

		assert_string_equal(a->dir, b->dir);
		assert_file_equal(&a->maildirfolder, &b->maildirfolder);
		assert_true(a->messages == b->messages);
		assert_true(a->bytes == b->bytes);
		assert_file_equal(&a->uidlist, &b->uidlist);
		assert_file_equal(&a->keywords, &b->keywords);
		assert_int_equal(a->nchunks, b->nchunks);
		if (a->nchunks > 0)
			assert_memory_equal(a->chunks, b->chunks,
			    (size_t)a->nchunks * MK_PACK_ID_LEN);
	}
	mk_snapshot_mailbox_free(&got);
	check_damage(data, len, decode_mailbox);
	/* Bytes appended by a later minor version are skipped; in 1.0
	 * they are damage. */
	longer = mk_xmalloc(len + 3);
	memcpy(longer, data, len);
	memset(longer + len, 0xee, 3);
	assert_int_equal(decode_mailbox(longer, len + 3, &err), -1);
	longer[7] = 1;
	assert_int_equal(decode_mailbox(longer, len + 3, &err), 0);
	free(longer);
	free(data);
	/* A folder that is not one path component is refused. */
	free(mb->folders[2].dir);
	mb->folders[2].dir = mk_xstrdup(".Sent/../..");
	assert_int_equal(mk_snapshot_mailbox_encode(mb, &data, &len, &err), -1);
	free(mb->folders[2].dir);
	mb->folders[2].dir = mk_xstrdup(".SentX");
	assert_int_equal(mk_snapshot_mailbox_encode(mb, &data, &len, &err), 0);
	((char *)memmem(data, len, ".SentX", 6))[5] = '/';
	assert_int_equal(decode_mailbox(data, len, &err), -1);
	free(data);
	/* Folders out of order (INBOX not first) are refused. */
	free(mb->folders[0].dir);
	mb->folders[0].dir = mk_xstrdup(".Zzz");
	assert_int_equal(mk_snapshot_mailbox_encode(mb, &data, &len, &err), -1);
	mk_snapshot_mailbox_free(&mb);
}

static void
test_snapshot_run_round_trip(void **state)
{
	struct mk_snapshot_entry entries[3], *got = NULL;
	struct mk_snapshot_chunks chunks;
	struct mk_snapshot_run run, *rgot = NULL;
	char name[MK_SNAPSHOT_RUN_OBJECT_LEN + 1];
	static const char *const addrs[] = { "a@example.org", "b@example.org",
		"otto@hosteurope.de" };
	uint8_t *data = NULL;
	size_t len = 0, n, i;
	struct mk_err err;

	(void)state;
	memset(entries, 0, sizeof(entries));
	for (i = 0; i < 3; i++) {
		entries[i].address = (char *)addrs[i];
		fake_id(entries[i].snapshot, 300 + (unsigned)i);
		entries[i].time_ns = 1764036003000000000LL + (int64_t)i;
		entries[i].messages = i;
		entries[i].bytes = UINT64_MAX - i;
	}
	if (mk_snapshot_entries_encode(entries, 3, &chunks, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(chunks.count, 1);
	assert_int_equal(mk_snapshot_entries_decode(chunks.chunks[0].data,
			     chunks.chunks[0].len, &got, &n, &err),
	    0);
	assert_int_equal(n, 3);
	for (i = 0; i < 3; i++) {
		assert_string_equal(got[i].address, addrs[i]);
		assert_memory_equal(
		    got[i].snapshot, entries[i].snapshot, MK_PACK_ID_LEN);
		assert_true(got[i].time_ns == entries[i].time_ns);
		assert_true(got[i].bytes == entries[i].bytes);
	}
	mk_snapshot_entries_free(&got, n);
	check_damage(
	    chunks.chunks[0].data, chunks.chunks[0].len, decode_entries);
	mk_snapshot_chunks_free(&chunks);
	/* An address twice is refused. */
	entries[1].address = (char *)addrs[0];
	assert_int_equal(
	    mk_snapshot_entries_encode(entries, 3, &chunks, &err), -1);

	memset(&run, 0, sizeof(run));
	memcpy(run.id, "0123456789abcdef0123456789abcdef", 33);
	run.started_ns = 1;
	run.ended_ns = 2;
	snprintf(run.host, sizeof(run.host), "mx1.example.org");
	run.mailboxes = 3;
	run.messages = 4;
	run.bytes = 5;
	run.nchunks = 2;
	run.chunks = mk_xcalloc(2, sizeof(*run.chunks));
	for (i = 0; i < 2; i++) {
		memset(run.chunks[i].pack, 'a' + (int)i, MK_PACK_NAME_LEN);
		fake_id(run.chunks[i].entry.id, 400 + (unsigned)i);
		run.chunks[i].entry.type = MK_PACK_TYPE_META;
		run.chunks[i].entry.compression = MK_PACK_ZSTD;
		run.chunks[i].entry.offset = 48 + i;
		run.chunks[i].entry.length = 1000;
		run.chunks[i].entry.raw_length = 3000;
	}
	if (mk_snapshot_run_encode(&run, &data, &len, &err) < 0)
		fail_msg("%s", err.msg);
	if (mk_snapshot_run_decode(data, len, &rgot, &err) < 0)
		fail_msg("%s", err.msg);
	assert_string_equal(rgot->id, run.id);
	assert_string_equal(rgot->host, run.host);
	assert_true(rgot->started_ns == 1 && rgot->ended_ns == 2);
	assert_true(
	    rgot->mailboxes == 3 && rgot->messages == 4 && rgot->bytes == 5);
	assert_int_equal(rgot->nchunks, 2);
	for (i = 0; i < 2; i++) {
		assert_string_equal(rgot->chunks[i].pack, run.chunks[i].pack);
		assert_memory_equal(&rgot->chunks[i].entry,
		    &run.chunks[i].entry, sizeof(struct mk_pack_entry));
	}
	mk_snapshot_run_free(&rgot);
	/* The checksum catches any change. */
	check_damage(data, len, decode_run);
	data[20] ^= 1;
	assert_int_equal(decode_run(data, len, &err), -1);
	assert_non_null(strstr(err.msg, "checksum"));
	free(data);
	free(run.chunks);
	assert_int_equal(mk_snapshot_run_object(run.id, name, &err), 0);
	assert_string_equal(name, "snapshots/0123456789abcdef0123456789abcdef");
	assert_int_equal(mk_snapshot_run_object("../x", name, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_snapshot_messages_round_trip),
		cmocka_unit_test(test_snapshot_flag_change_rewrites_one_chunk),
		cmocka_unit_test(test_snapshot_cuts_follow_the_format),
		cmocka_unit_test(test_snapshot_messages_refused),
		cmocka_unit_test(test_snapshot_damaged_lists_refused),
		cmocka_unit_test(test_snapshot_mailbox_round_trip),
		cmocka_unit_test(test_snapshot_run_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
