#include <stdlib.h>
#include <string.h>

#include "mailkeep/chunker.h"
#include "mailkeep/mem.h"

#define CHUNKER_GEAR_INFO "mailkeep chunker gear v1"
/* Normalization level: the mask is this many bits stricter before avg. */
#define CHUNKER_NORMAL_LEVEL 2

struct mk_chunker {
	struct mk_chunker_params params;
	uint64_t mask_small; /* before avg: harder to cut */
	uint64_t mask_large; /* after avg: easier to cut */
	uint64_t gear[256];
};

int
mk_chunker_params_check(const struct mk_chunker_params *p, struct mk_err *err)
{
	if (p->avg < 256 || (p->avg & (p->avg - 1)) != 0)
		return mk_err_set(err,
		    "chunker: average size %u is not a power of two >= 256",
		    p->avg);
	if (p->min < MK_CHUNKER_MIN_LIMIT || p->min > p->avg ||
	    p->avg > p->max || p->max > MK_CHUNKER_MAX_LIMIT)
		return mk_err_set(err,
		    "chunker: sizes %u/%u/%u are not %u <= min <= avg <= "
		    "max <= %u",
		    p->min, p->avg, p->max, MK_CHUNKER_MIN_LIMIT,
		    MK_CHUNKER_MAX_LIMIT);
	return 0;
}

/*
 * A mask of n one bits at the top of the word.  The gear hash shifts left
 * once per byte, so bit k depends on the last k + 1 bytes: the top bits
 * see a window of up to 64 bytes.
 */
static uint64_t
chunker_mask(unsigned n)
{
	return ~0ULL << (64 - n);
}

int
mk_chunker_new(const uint8_t key[MK_CRYPTO_KEY_LEN],
    const struct mk_chunker_params *params, struct mk_chunker **chunker_r,
    struct mk_err *err)
{
	static const struct mk_chunker_params def = { MK_CHUNKER_MIN_DEFAULT,
		MK_CHUNKER_AVG_DEFAULT, MK_CHUNKER_MAX_DEFAULT };
	uint8_t bytes[256 * 8];
	struct mk_chunker *c;
	unsigned bits = 0;
	size_t i;

	*chunker_r = NULL;
	if (params == NULL)
		params = &def;
	if (mk_chunker_params_check(params, err) < 0)
		return -1;
	if (mk_crypto_hkdf_sha256(key, MK_CRYPTO_KEY_LEN, NULL, 0,
		CHUNKER_GEAR_INFO, strlen(CHUNKER_GEAR_INFO), bytes,
		sizeof(bytes), err) < 0)
		return mk_err_prefix(err, "chunker: gear table");
	c = mk_xcalloc(1, sizeof(*c));
	c->params = *params;
	for (i = 0; i < 256; i++) {
		uint64_t v = 0;
		size_t j;

		for (j = 0; j < 8; j++)
			v = v << 8 | bytes[8 * i + j];
		c->gear[i] = v;
	}
	mk_crypto_wipe(bytes, sizeof(bytes));
	while ((1u << bits) < params->avg)
		bits++;
	c->mask_small = chunker_mask(bits + CHUNKER_NORMAL_LEVEL);
	c->mask_large = chunker_mask(bits - CHUNKER_NORMAL_LEVEL);
	*chunker_r = c;
	return 0;
}

/*
 * FastCDC: skip the first min bytes (no cut can fall there), look for a
 * cut with the strict mask up to avg, then with the loose one up to max.
 */
size_t
mk_chunker_next(const struct mk_chunker *c, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i, normal, end;
	uint64_t fp = 0;

	if (len <= c->params.min)
		return len;
	end = len < c->params.max ? len : c->params.max;
	normal = end < c->params.avg ? end : c->params.avg;
	for (i = c->params.min; i < normal; i++) {
		fp = (fp << 1) + c->gear[p[i]];
		if ((fp & c->mask_small) == 0)
			return i + 1;
	}
	for (; i < end; i++) {
		fp = (fp << 1) + c->gear[p[i]];
		if ((fp & c->mask_large) == 0)
			return i + 1;
	}
	return end;
}

const struct mk_chunker_params *
mk_chunker_params(const struct mk_chunker *c)
{
	return &c->params;
}

void
mk_chunker_free(struct mk_chunker **chunkerp)
{
	struct mk_chunker *c = *chunkerp;

	if (c == NULL)
		return;
	mk_crypto_wipe(c->gear, sizeof(c->gear));
	free(c);
	*chunkerp = NULL;
}
