#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mailkeep/str.h"

size_t
mk_strlcpy(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;

		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

void
mk_str_lower(char *s)
{
	for (; *s != '\0'; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

bool
mk_str_has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Parse leading digits; *end_r points after them. */
static int
str_parse_digits(
    const char *s, uint64_t *value_r, const char **end_r, struct mk_err *err)
{
	uint64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return mk_err_set(err, "'%s': not a number", s);
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return mk_err_set(err, "'%s': number too large", s);
		v = v * 10 + d;
	}
	*value_r = v;
	*end_r = p;
	return 0;
}

int
mk_str_parse_u64(const char *s, uint64_t *value_r, struct mk_err *err)
{
	const char *end;

	if (str_parse_digits(s, value_r, &end, err) < 0)
		return -1;
	if (*end != '\0')
		return mk_err_set(err, "'%s': not a number", s);
	return 0;
}

/* Multiply with an overflow check. */
static int
str_scale(const char *s, uint64_t v, uint64_t mult, uint64_t *value_r,
    struct mk_err *err)
{
	if (mult != 0 && v > UINT64_MAX / mult)
		return mk_err_set(err, "'%s': number too large", s);
	*value_r = v * mult;
	return 0;
}

int
mk_str_parse_size(const char *s, uint64_t *value_r, struct mk_err *err)
{
	const char *end;
	uint64_t v, mult = 1;

	if (str_parse_digits(s, &v, &end, err) < 0)
		return -1;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		return str_scale(s, v, 1, value_r, err);
	case 'B':
		break;
	case 'K':
		mult = 1ULL << 10;
		break;
	case 'M':
		mult = 1ULL << 20;
		break;
	case 'G':
		mult = 1ULL << 30;
		break;
	case 'T':
		mult = 1ULL << 40;
		break;
	default:
		return mk_err_set(err,
		    "'%s': not a size (use a number with K, M, G or T)", s);
	}
	end++;
	if (mult != 1 &&
	    (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0))
		end += strlen(end);
	if (*end != '\0')
		return mk_err_set(err,
		    "'%s': not a size (use a number with K, M, G or T)", s);
	return str_scale(s, v, mult, value_r, err);
}

int
mk_str_parse_duration(const char *s, uint64_t *seconds_r, struct mk_err *err)
{
	const char *end;
	uint64_t v, mult;

	if (str_parse_digits(s, &v, &end, err) < 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		return mk_err_set(err,
		    "'%s': not a duration (use a number with s, m, h or d)", s);
	}
	if (*end != '\0' && end[1] != '\0')
		return mk_err_set(err,
		    "'%s': not a duration (use a number with s, m, h or d)", s);
	return str_scale(s, v, mult, seconds_r, err);
}

void
mk_str_format_size(uint64_t bytes, char *buf, size_t size)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB",
		"EiB" };
	double v = (double)bytes;
	size_t u = 0;

	while (v >= 1024 && u < sizeof(units) / sizeof(units[0]) - 1) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, size, "%llu B", (unsigned long long)bytes);
	else
		snprintf(buf, size, "%.1f %s", v, units[u]);
}

int
mk_str_b64_value(int c, int c63)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == c63)
		return 63;
	return -1;
}

size_t
mk_str_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

size_t
mk_str_utf8_decode(const unsigned char *s, size_t len, uint32_t *cp_r)
{
	uint32_t cp;
	size_t n, k;

	if (len == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp_r = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 1;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 2;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 3;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len <= n)
		return 0;
	for (k = 1; k <= n; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[k] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	*cp_r = cp;
	return n + 1;
}
