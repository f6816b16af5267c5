/*
 * hmap: a hash table from 64-bit keys to pointers, with open addressing.
 *
 * Several values may share a key (a string's hash, say): lookups walk the
 * candidates and let a match callback pick the right one.  Values are
 * borrowed: the table never frees them.  Not thread-safe.
 */
#ifndef MAILKEEP_HMAP_H
#define MAILKEEP_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mk_hmap;

/* Is value the one looked for?  NULL as a callback matches any value. */
typedef bool mk_hmap_match_cb(const void *value, const void *ctx);

struct mk_hmap *mk_hmap_new(void);
void mk_hmap_free(struct mk_hmap **mapp);

size_t mk_hmap_count(const struct mk_hmap *map);

/* Add value (not NULL) under key; duplicates are allowed. */
void mk_hmap_put(struct mk_hmap *map, uint64_t key, void *value);

/* The value under key that match accepts, or NULL. */
void *mk_hmap_get(const struct mk_hmap *map, uint64_t key,
    mk_hmap_match_cb *match, const void *ctx);

/* Remove exactly this value stored under key; returns whether it was. */
bool mk_hmap_remove(struct mk_hmap *map, uint64_t key, const void *value);

/*
 * Walk every value: *pos starts at 0; returns NULL at the end.  The table
 * must not change during a walk.
 */
void *mk_hmap_next(const struct mk_hmap *map, size_t *pos);

/*
 * The hash of len bytes at s: XXH3 (64 bits) with a secret drawn at
 * process start, so it differs from run to run: never store it.
 */
uint64_t mk_hmap_hash(const char *s, size_t len);

#endif
