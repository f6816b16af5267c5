/*
 * sigv4: AWS Signature Version 4 for S3 requests (header-based, signed
 * payload).  Pure functions: the caller builds the canonical parts, this
 * module hashes and signs them.  No credentials are kept or logged.
 */
#ifndef MAILKEEP_SIGV4_H
#define MAILKEEP_SIGV4_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "mailkeep/err.h"

#define MK_SIGV4_DATE_LEN 16 /* "20130524T000000Z" */
#define MK_SIGV4_HEX_LEN 64 /* a SHA-256 in hex */
#define MK_SIGV4_AUTH_MAX 1024

/* A header to sign: name in lower case, value trimmed. */
struct mk_sigv4_header {
	const char *name;
	const char *value;
};

/*
 * The request to sign.  path is the canonical URI (each segment already
 * encoded with mk_sigv4_uri_encode()); query is the canonical query
 * string ("" for none: names and values encoded, sorted by name, "k=v"
 * joined with '&'); headers are sorted by name and must include host,
 * x-amz-content-sha256 and x-amz-date.
 */
struct mk_sigv4_request {
	const char *method;
	const char *path;
	const char *query;
	const struct mk_sigv4_header *headers;
	size_t nheaders;
	const char *payload_sha256; /* 64 lower-case hex digits */
};

struct mk_sigv4_key {
	const char *access_key;
	const char *secret_key;
	const char *region; /* "us-east-1" */
	const char *service; /* "s3" */
};

/*
 * The value of the Authorization header for req signed with key at
 * amz_date (as made by mk_sigv4_date()), into auth (at least
 * MK_SIGV4_AUTH_MAX bytes).  Returns 0, or -1 with err set.
 */
int mk_sigv4_authorization(const struct mk_sigv4_request *req,
    const struct mk_sigv4_key *key, const char *amz_date, char *auth,
    size_t size, struct mk_err *err);

/* t as "YYYYMMDDTHHMMSSZ" (UTC). */
void mk_sigv4_date(time_t t, char date[MK_SIGV4_DATE_LEN + 1]);

/*
 * s encoded as SigV4 wants: every byte but A-Z a-z 0-9 - . _ ~ (and '/'
 * when keep_slash) as %XX in upper case.  free() the result.
 */
char *mk_sigv4_uri_encode(const char *s, bool keep_slash);

/* SHA-256 of data in lower-case hex. */
int mk_sigv4_sha256_hex(const void *data, size_t len,
    char hex[MK_SIGV4_HEX_LEN + 1], struct mk_err *err);

#endif
