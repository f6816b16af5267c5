/*
 * chunker: content-defined chunking (FastCDC with normalized chunking,
 * level 2), so that the same attachment in two messages is cut into the
 * same pieces and stored once.  The backup cuts bodies larger than
 * MK_CHUNKER_THRESHOLD; smaller bodies and all headers stay whole.
 *
 * The gear table comes from the repository's chunker key, so chunk
 * boundaries (and hence chunk sizes seen in storage) do not reveal
 * content that someone could match across repositories.
 *
 * Thread safety: a struct mk_chunker is read-only after creation;
 * mk_chunker_next() may run in many threads at once.
 */
#ifndef MAILKEEP_CHUNKER_H
#define MAILKEEP_CHUNKER_H

#include <stddef.h>
#include <stdint.h>

#include "mailkeep/crypto.h"
#include "mailkeep/err.h"

#define MK_CHUNKER_MIN_DEFAULT (256u << 10)
#define MK_CHUNKER_AVG_DEFAULT (1u << 20)
#define MK_CHUNKER_MAX_DEFAULT (4u << 20)
#define MK_CHUNKER_THRESHOLD (1u << 20)
/* Bounds on the parameters (a chunk is one pack blob at most). */
#define MK_CHUNKER_MIN_LIMIT 64u
#define MK_CHUNKER_MAX_LIMIT (16u << 20)

struct mk_chunker_params {
	uint32_t min; /* no chunk is shorter, except the last */
	uint32_t avg; /* the target; a power of two */
	uint32_t max; /* no chunk is longer */
};

struct mk_chunker;

/* Check min <= avg <= max, avg a power of two >= 256, and the limits. */
int mk_chunker_params_check(
    const struct mk_chunker_params *params, struct mk_err *err);

/* A chunker keyed by key (copied into the gear table); params NULL:
 * the defaults. */
int mk_chunker_new(const uint8_t key[MK_CRYPTO_KEY_LEN],
    const struct mk_chunker_params *params, struct mk_chunker **chunker_r,
    struct mk_err *err);

/*
 * The length of the chunk that starts at data.  data holds len bytes
 * from that point: at least params.max of them, or everything that is
 * left of the input (then the last chunk may be shorter than min).
 * Returns 1..min(len, max), or 0 when len is 0.  Call again at data +
 * the returned length until the input is used up.
 */
size_t mk_chunker_next(
    const struct mk_chunker *chunker, const void *data, size_t len);

/* The parameters in use. */
const struct mk_chunker_params *mk_chunker_params(
    const struct mk_chunker *chunker);

void mk_chunker_free(struct mk_chunker **chunkerp);

#endif
