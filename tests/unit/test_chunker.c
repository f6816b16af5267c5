#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/chunker.h"

#define CUTS_MAX 4096

struct cuts {
	size_t len[CUTS_MAX];
	size_t n;
};

static uint8_t key1[MK_CRYPTO_KEY_LEN], key2[MK_CRYPTO_KEY_LEN];

static int
chunker_setup(void **state)
{
	(void)state;
	memset(key1, 0x11, sizeof(key1));
	memset(key2, 0x22, sizeof(key2));
	return 0;
}

static uint8_t *
random_bytes(size_t len, uint64_t seed)
{
	uint8_t *p = malloc(len);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		p[i] = (uint8_t)(seed >> 24);
	}
	return p;
}

/*
 * Cut data as a streaming caller would: never more than max bytes ahead,
 * unless at the end.  Checks the bounds and that the pieces add up.
 */
static void
cut(const struct mk_chunker *c, const uint8_t *data, size_t len,
    struct cuts *cuts)
{
	const struct mk_chunker_params *p = mk_chunker_params(c);
	size_t off = 0, total = 0;

	cuts->n = 0;
	while (off < len) {
		size_t avail = len - off < p->max ? len - off : p->max;
		size_t n = mk_chunker_next(c, data + off, avail);

		assert_true(n >= 1 && n <= p->max && n <= avail);
		if (off + n < len)
			assert_true(n >= p->min);
		assert_true(cuts->n < CUTS_MAX);
		cuts->len[cuts->n++] = n;
		off += n;
		total += n;
	}
	assert_int_equal(total, len);
	assert_int_equal(mk_chunker_next(c, data, 0), 0);
}

static void
test_chunker_params_checked(void **state)
{
	static const struct {
		struct mk_chunker_params p;
		int ok;
	} cases[] = {
		{ { MK_CHUNKER_MIN_DEFAULT, MK_CHUNKER_AVG_DEFAULT,
		      MK_CHUNKER_MAX_DEFAULT },
		    1 },
		{ { 64, 256, 256 }, 1 },
		{ { 256, 256, 256 }, 1 },
		{ { 63, 256, 1024 }, 0 },
		{ { 64, 255, 1024 }, 0 },
		{ { 64, 128, 1024 }, 0 },
		{ { 64, 3000, 8192 }, 0 },
		{ { 512, 256, 1024 }, 0 },
		{ { 64, 1024, 512 }, 0 },
		{ { 64, 1024, MK_CHUNKER_MAX_LIMIT }, 1 },
		{ { 64, 1024, MK_CHUNKER_MAX_LIMIT + 1 }, 0 },
		{ { 0, 0, 0 }, 0 },
		{ { UINT32_MAX, UINT32_MAX, UINT32_MAX }, 0 },
	};
	struct mk_chunker *c = NULL;
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(mk_chunker_params_check(&cases[i].p, &err),
		    cases[i].ok ? 0 : -1);
		assert_int_equal(mk_chunker_new(key1, &cases[i].p, &c, &err),
		    cases[i].ok ? 0 : -1);
		assert_true((c != NULL) == cases[i].ok);
		mk_chunker_free(&c);
		assert_null(c);
	}
	assert_int_equal(mk_chunker_new(key1, NULL, &c, &err), 0);
	assert_int_equal(mk_chunker_params(c)->avg, MK_CHUNKER_AVG_DEFAULT);
	mk_chunker_free(&c);
}

/* Defaults on 24 MiB: bounds, sum, and an average near 1 MiB. */
static void
test_chunker_default_sizes_within_bounds(void **state)
{
	size_t len = 24u << 20, i, sum = 0;
	uint8_t *data = random_bytes(len, 42);
	struct mk_chunker *c = NULL;
	static struct cuts cuts;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_chunker_new(key1, NULL, &c, &err), 0);
	cut(c, data, len, &cuts);
	for (i = 0; i < cuts.n; i++)
		sum += cuts.len[i];
	assert_int_equal(sum, len);
	/* Normalized chunking keeps the mean close to avg. */
	assert_true(cuts.n >= 12 && cuts.n <= 40);
	/* Short inputs: one chunk, whatever their content. */
	assert_int_equal(mk_chunker_next(c, data, 1), 1);
	assert_int_equal(mk_chunker_next(c, data, MK_CHUNKER_MIN_DEFAULT),
	    MK_CHUNKER_MIN_DEFAULT);
	/* A constant input is cut at min or at max, always the same way. */
	memset(data, 0, len);
	cut(c, data, len, &cuts);
	for (i = 0; i + 1 < cuts.n; i++)
		assert_int_equal(cuts.len[i], cuts.len[0]);
	mk_chunker_free(&c);
	free(data);
}

static void
test_chunker_deterministic_and_keyed(void **state)
{
	struct mk_chunker_params p = { 2048, 8192, 32768 };
	struct mk_chunker *a = NULL, *b = NULL, *other = NULL;
	static struct cuts ca, cb, co;
	size_t len = 2u << 20;
	uint8_t *data = random_bytes(len, 7);
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_chunker_new(key1, &p, &a, &err), 0);
	assert_int_equal(mk_chunker_new(key1, &p, &b, &err), 0);
	assert_int_equal(mk_chunker_new(key2, &p, &other, &err), 0);
	cut(a, data, len, &ca);
	cut(b, data, len, &cb);
	cut(other, data, len, &co);
	assert_int_equal(ca.n, cb.n);
	assert_memory_equal(ca.len, cb.len, ca.n * sizeof(ca.len[0]));
	/* Another key puts the boundaries elsewhere. */
	assert_true(ca.n != co.n ||
	    memcmp(ca.len, co.len, ca.n * sizeof(ca.len[0])) != 0);
	mk_chunker_free(&a);
	mk_chunker_free(&b);
	mk_chunker_free(&other);
	free(data);
}

/*
 * Inserting bytes in the middle changes the chunks around the insertion
 * only: the same chunks before it, and after a resynchronisation, the
 * same chunks to the end.
 */
static void
test_chunker_insertion_changes_only_nearby_chunks(void **state)
{
	static const size_t inserts[] = { 1, 100, 5000, 40000 };
	struct mk_chunker_params p = { 2048, 8192, 32768 };
	struct mk_chunker *c = NULL;
	static struct cuts before, after;
	size_t len = 2u << 20, k;
	uint8_t *data = random_bytes(len, 99);
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_chunker_new(key1, &p, &c, &err), 0);
	cut(c, data, len, &before);
	for (k = 0; k < sizeof(inserts) / sizeof(inserts[0]); k++) {
		size_t ins = inserts[k], at = len / 2, head = 0, tail = 0, i;
		size_t head_bytes = 0, tail_bytes = 0;
		uint8_t *mod = malloc(len + ins);
		uint8_t *extra = random_bytes(ins, 1000 + k);

		memcpy(mod, data, at);
		memcpy(mod + at, extra, ins);
		memcpy(mod + at + ins, data + at, len - at);
		cut(c, mod, len + ins, &after);
		while (head < before.n && head < after.n &&
		    before.len[head] == after.len[head])
			head++;
		while (tail < before.n - head && tail < after.n - head &&
		    before.len[before.n - 1 - tail] ==
			after.len[after.n - 1 - tail])
			tail++;
		/* Chunks that differ: those the insertion touches, and the
		 * one or two after it before the cut points agree again. */
		assert_true(before.n - head - tail <= 2 + ins / p.min);
		assert_true(after.n - head - tail <= 3 + ins / p.min);
		/* The same chunks up to near the insertion, and from soon
		 * after it. */
		for (i = 0; i < head; i++)
			head_bytes += before.len[i];
		for (i = 0; i < tail; i++)
			tail_bytes += before.len[before.n - 1 - i];
		assert_true(head_bytes + 2 * p.max >= at);
		assert_true(tail_bytes + 3 * p.max >= len - at);
		free(mod);
		free(extra);
	}
	mk_chunker_free(&c);
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(
		    test_chunker_params_checked, chunker_setup),
		cmocka_unit_test_setup(
		    test_chunker_default_sizes_within_bounds, chunker_setup),
		cmocka_unit_test_setup(
		    test_chunker_deterministic_and_keyed, chunker_setup),
		cmocka_unit_test_setup(
		    test_chunker_insertion_changes_only_nearby_chunks,
		    chunker_setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
