#include <errno.h>
#include <stdlib.h>
#include <sys/random.h>

#include <xxhash.h>

#include "mailkeep/hmap.h"
#include "mailkeep/mem.h"

/* A slot is empty (value NULL), used, or a tombstone (value TOMB). */
#define HMAP_TOMB ((void *)&hmap_tomb)

static const char hmap_tomb;

struct hmap_slot {
	uint64_t key;
	void *value;
};

struct mk_hmap {
	struct hmap_slot *slots;
	size_t cap; /* a power of two */
	size_t count; /* values */
	size_t used; /* values and tombstones */
};

static uint64_t
hmap_mix(uint64_t key)
{
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdULL;
	key ^= key >> 33;
	return key;
}

struct mk_hmap *
mk_hmap_new(void)
{
	struct mk_hmap *map = mk_xcalloc(1, sizeof(*map));

	map->cap = 16;
	map->slots = mk_xcalloc(map->cap, sizeof(*map->slots));
	return map;
}

void
mk_hmap_free(struct mk_hmap **mapp)
{
	if (*mapp == NULL)
		return;
	free((*mapp)->slots);
	free(*mapp);
	*mapp = NULL;
}

size_t
mk_hmap_count(const struct mk_hmap *map)
{
	return map->count;
}

/* Rebuild into cap slots, dropping tombstones. */
static void
hmap_resize(struct mk_hmap *map, size_t cap)
{
	struct hmap_slot *old = map->slots;
	size_t oldcap = map->cap, i;

	map->slots = mk_xcalloc(cap, sizeof(*map->slots));
	map->cap = cap;
	map->count = map->used = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i].value != NULL && old[i].value != HMAP_TOMB)
			mk_hmap_put(map, old[i].key, old[i].value);
	free(old);
}

void
mk_hmap_put(struct mk_hmap *map, uint64_t key, void *value)
{
	size_t i;

	if ((map->used + 1) * 4 > map->cap * 3)
		hmap_resize(map,
		    map->count * 2 >= map->cap / 2 ? map->cap * 2 : map->cap);
	for (i = hmap_mix(key) & (map->cap - 1); map->slots[i].value != NULL;
	     i = (i + 1) & (map->cap - 1))
		;
	map->slots[i].key = key;
	map->slots[i].value = value;
	map->count++;
	map->used++;
}

void *
mk_hmap_get(const struct mk_hmap *map, uint64_t key, mk_hmap_match_cb *match,
    const void *ctx)
{
	size_t i;

	for (i = hmap_mix(key) & (map->cap - 1); map->slots[i].value != NULL;
	     i = (i + 1) & (map->cap - 1)) {
		const struct hmap_slot *s = &map->slots[i];

		if (s->value != HMAP_TOMB && s->key == key &&
		    (match == NULL || match(s->value, ctx)))
			return s->value;
	}
	return NULL;
}

bool
mk_hmap_remove(struct mk_hmap *map, uint64_t key, const void *value)
{
	size_t i;

	for (i = hmap_mix(key) & (map->cap - 1); map->slots[i].value != NULL;
	     i = (i + 1) & (map->cap - 1)) {
		struct hmap_slot *s = &map->slots[i];

		if (s->key == key && s->value == value) {
			s->value = HMAP_TOMB;
			map->count--;
			return true;
		}
	}
	return false;
}

void *
mk_hmap_next(const struct mk_hmap *map, size_t *pos)
{
	for (; *pos < map->cap; (*pos)++) {
		void *v = map->slots[*pos].value;

		if (v != NULL && v != HMAP_TOMB) {
			(*pos)++;
			return v;
		}
	}
	return NULL;
}

/*
 * The hash is XXH3 keyed with a secret drawn once per process: map keys
 * such as addresses come from SMTP clients, and with a known function
 * anyone could send names that all land in one probe chain (hash
 * flooding).  Random bytes are a secret of the quality XXH3 asks for.
 */
static unsigned char hmap_secret[192];

/* Runs before main, so the secret never changes under a live map. */
static void __attribute__((constructor)) hmap_secret_init(void)
{
	size_t got = 0;
	ssize_t n;

	while (got < sizeof(hmap_secret)) {
		n = getrandom(hmap_secret + got, sizeof(hmap_secret) - got, 0);
		if (n < 0 && errno != EINTR)
			abort(); /* ENOSYS: Linux before 3.17 */
		if (n > 0)
			got += (size_t)n;
	}
}

uint64_t
mk_hmap_hash(const char *s, size_t len)
{
	return XXH3_64bits_withSecret(s, len, hmap_secret, sizeof(hmap_secret));
}
