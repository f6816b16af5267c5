/*
 * str: bounded string helpers and the value syntaxes shared by the config
 * file and the command line (sizes such as 500M, durations such as 15m).
 */
#ifndef MAILKEEP_STR_H
#define MAILKEEP_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"

/* Copy with truncation; returns strlen(src) so truncation can be seen. */
size_t mk_strlcpy(char *dst, const char *src, size_t size);

/* Lower-case ASCII letters in place. */
void mk_str_lower(char *s);

bool mk_str_has_prefix(const char *s, const char *prefix);

/*
 * Parse an unsigned decimal number that must fill the whole string.
 * Returns 0, or -1 with err set (empty, not a number, overflow).
 */
int mk_str_parse_u64(const char *s, uint64_t *value_r, struct mk_err *err);

/*
 * Parse a size: a number with an optional suffix K, M, G, T (powers of
 * 1024, optionally followed by "B" or "iB"), e.g. "500M", "2G", "0".
 */
int mk_str_parse_size(const char *s, uint64_t *value_r, struct mk_err *err);

/* Parse a duration: a number with a suffix s, m, h, d (seconds if none). */
int mk_str_parse_duration(
    const char *s, uint64_t *seconds_r, struct mk_err *err);

/*
 * Decode one UTF-8 character at s (len bytes available): returns its
 * length (1 to 4) with the code point in *cp_r, or 0 when it is not
 * well-formed (overlong, a surrogate, above U+10FFFF, cut short).
 */
size_t mk_str_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_r);

/* The value of a base64 digit c, with c63 as the 63rd digit ('/' in
 * base64, ',' in IMAP's modified UTF-7), or -1. */
int mk_str_b64_value(int c, int c63);

/* Encode code point cp (at most U+10FFFF) as UTF-8 into out; returns
 * its length, 1 to 4. */
size_t mk_str_utf8_encode(uint32_t cp, char out[4]);

/* Format bytes for people ("352.1 KiB") into buf. */
void mk_str_format_size(uint64_t bytes, char *buf, size_t size);

#endif
