#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "fixture.h"
#include "mailkeep/hmap.h"

static bool
str_match(const void *value, const void *ctx)
{
	return strcmp(value, ctx) == 0;
}

static void
test_hmap_put_get_remove_many(void **state)
{
	struct mk_hmap *map = mk_hmap_new();
	static char names[5000][16];
	size_t i, pos = 0, seen = 0;

	(void)state;
	for (i = 0; i < 5000; i++) {
		snprintf(names[i], sizeof(names[i]), "n%zu", i);
		mk_hmap_put(
		    map, mk_hmap_hash(names[i], strlen(names[i])), names[i]);
	}
	assert_int_equal(mk_hmap_count(map), 5000);
	for (i = 0; i < 5000; i += 2)
		assert_true(mk_hmap_remove(
		    map, mk_hmap_hash(names[i], strlen(names[i])), names[i]));
	assert_int_equal(mk_hmap_count(map), 2500);
	for (i = 0; i < 5000; i++) {
		void *v =
		    mk_hmap_get(map, mk_hmap_hash(names[i], strlen(names[i])),
			str_match, names[i]);

		assert_true((v != NULL) == (i % 2 == 1));
	}
	while (mk_hmap_next(map, &pos) != NULL)
		seen++;
	assert_int_equal(seen, 2500);
	assert_false(mk_hmap_remove(map, 1, names[0]));
	mk_hmap_free(&map);
	assert_null(map);
}

static void
test_hmap_same_key_picks_by_match(void **state)
{
	struct mk_hmap *map = mk_hmap_new();
	char a[] = "a", b[] = "b";

	(void)state;
	/* Two values under one key, as two strings with the same hash. */
	mk_hmap_put(map, 7, a);
	mk_hmap_put(map, 7, b);
	assert_ptr_equal(mk_hmap_get(map, 7, str_match, "b"), b);
	assert_ptr_equal(mk_hmap_get(map, 7, str_match, "a"), a);
	assert_null(mk_hmap_get(map, 7, str_match, "c"));
	assert_true(mk_hmap_remove(map, 7, a));
	assert_null(mk_hmap_get(map, 7, str_match, "a"));
	assert_ptr_equal(mk_hmap_get(map, 7, NULL, NULL), b);
	/* Key 0 is an ordinary key. */
	mk_hmap_put(map, 0, a);
	assert_ptr_equal(mk_hmap_get(map, 0, NULL, NULL), a);
	mk_hmap_free(&map);
}

static void
test_hmap_churn_does_not_fill_with_tombstones(void **state)
{
	struct mk_hmap *map = mk_hmap_new();
	char v[] = "v";
	size_t i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		mk_hmap_put(map, i, v);
		assert_true(mk_hmap_remove(map, i, v));
	}
	assert_int_equal(mk_hmap_count(map), 0);
	assert_null(mk_hmap_get(map, 5, NULL, NULL));
	mk_hmap_free(&map);
}

/*
 * The hash is keyed: not XXH3's published one, so that clients cannot
 * compute collisions.  Every byte and the length count, and similar
 * names spread over the low bits the table uses.
 */
static void
test_hmap_hash_is_keyed_and_spreads(void **state)
{
	static unsigned buckets[1024];
	char name[32];
	unsigned most = 0;
	size_t i, len;

	(void)state;
	assert_true(mk_hmap_hash("user@example.org", 16) !=
	    XXH3_64bits("user@example.org", 16));
	assert_true(mk_hmap_hash("", 0) != XXH3_64bits("", 0));
	assert_true(mk_hmap_hash("a", 1) != mk_hmap_hash("a\0", 2));
	assert_true(mk_hmap_hash("user@example.org", 16) !=
	    mk_hmap_hash("user@example.orh", 16));
	assert_int_equal(mk_hmap_hash("user@example.org", 16),
	    mk_hmap_hash("user@example.org", 16));
	for (i = 0; i < 16384; i++) {
		len = (size_t)snprintf(name, sizeof(name), "u%zu@x", i);
		buckets[mk_hmap_hash(name, len) & 1023]++;
	}
	for (i = 0; i < 1024; i++)
		if (buckets[i] > most)
			most = buckets[i];
	/* 16 a bucket on average; a byte-sum hash would put hundreds in one. */
	assert_true(most < 48);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hmap_put_get_remove_many),
		cmocka_unit_test(test_hmap_same_key_picks_by_match),
		cmocka_unit_test(test_hmap_churn_does_not_fill_with_tombstones),
		cmocka_unit_test(test_hmap_hash_is_keyed_and_spreads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
