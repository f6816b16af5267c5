#include <stdio.h>
#include <string.h>

#include "mailkeep/maildir.h"
#include "mailkeep/str.h"

enum mk_maildir_entry
mk_maildir_classify(const char *name)
{
	return name[0] == '.' ? MK_MAILDIR_HIDDEN : MK_MAILDIR_MESSAGE;
}

/* Parse the digits of a ,S= or ,W= field running up to ',' ':' or NUL. */
static int
maildir_parse_field_size(const char *p, size_t len, uint64_t *value_r)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned d;

		if (p[i] < '0' || p[i] > '9')
			return -1;
		d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*value_r = v;
	return 0;
}

int
mk_maildir_name_parse(
    const char *name, struct mk_maildir_name *r, struct mk_err *err)
{
	const char *p, *info;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	r->base_len = strcspn(name, ",:");
	if (r->base_len == 0)
		rc = mk_err_set(err, "'%s': empty unique part", name);
	info = strchr(name, ':');
	p = name + r->base_len;
	while (*p == ',') {
		size_t flen = strcspn(p + 1, ",:");
		const char *f = p + 1;

		if (flen >= 2 && f[1] == '=' && (f[0] == 'S' || f[0] == 'W')) {
			uint64_t v;

			if (maildir_parse_field_size(f + 2, flen - 2, &v) < 0)
				rc = mk_err_set(
				    err, "'%s': bad ,%c= size", name, f[0]);
			else if (f[0] == 'S' && !r->has_size) {
				r->size = v;
				r->has_size = true;
			} else if (f[0] == 'W' && !r->has_vsize) {
				r->vsize = v;
				r->has_vsize = true;
			}
		}
		p = f + flen;
	}
	if (info == NULL)
		return rc;
	if (strncmp(info, ":2,", 3) != 0)
		return mk_err_set(err, "'%s': unknown info '%s'", name, info);
	r->has_info = true;
	info += 3;
	if (strlen(info) > MK_MAILDIR_FLAGS_MAX)
		return mk_err_set(err, "'%s': too many flags", name);
	for (p = info; *p != '\0'; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
			return mk_err_set(
			    err, "'%s': flag '%c' is not a letter", name, *p);
	mk_strlcpy(r->flags, info, sizeof(r->flags));
	return rc;
}

bool
mk_maildir_is_folder_dir(const char *name)
{
	size_t len = strlen(name);

	if (len < 2 || name[0] != '.' || name[1] == '.')
		return false;
	if (name[len - 1] == '.' || strstr(name, "..") != NULL)
		return false;
	return true;
}

/* Append one byte, keeping room for the NUL; returns -1 when full. */
static int
maildir_put(char *buf, size_t size, size_t *pos, char c)
{
	if (*pos + 1 >= size)
		return -1;
	buf[(*pos)++] = c;
	return 0;
}

/* Append a code point as UTF-8. */
static int
maildir_put_utf8(char *buf, size_t size, size_t *pos, unsigned cp)
{
	char tmp[4];
	size_t n, i;

	n = mk_str_utf8_encode(cp, tmp);
	for (i = 0; i < n; i++)
		if (maildir_put(buf, size, pos, tmp[i]) < 0)
			return -1;
	return 0;
}

/*
 * Decode one modified UTF-7 run "&...-" starting after the '&' at *pp;
 * leaves *pp after the '-'.
 */
static int
maildir_decode_b64(const char **pp, char *buf, size_t size, size_t *pos)
{
	const char *p = *pp;
	unsigned bits = 0, nbits = 0, high = 0;
	int v;

	for (; *p != '-'; p++) {
		if ((v = mk_str_b64_value(*p, ',')) < 0)
			return -1;
		bits = (bits << 6) | (unsigned)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		unsigned unit = (bits >> nbits) & 0xffff;

		if (high != 0) {
			if (unit < 0xdc00 || unit > 0xdfff)
				return -1;
			unit =
			    0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
			high = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
			continue;
		} else if (unit >= 0xdc00 && unit <= 0xdfff)
			return -1;
		/* Printable ASCII must not be encoded. */
		if (unit >= 0x20 && unit <= 0x7e)
			return -1;
		if (maildir_put_utf8(buf, size, pos, unit) < 0)
			return -1;
	}
	/* Leftover bits must be zero padding, and no dangling surrogate. */
	if (high != 0 || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0)
		return -1;
	*pp = p + 1;
	return 0;
}

/* Decode the mUTF-7 of dir (without the leading '.') into buf. */
static int
maildir_decode_name(const char *dir, char sep, char *buf, size_t size)
{
	const char *p = dir;
	size_t pos = 0;

	while (*p != '\0') {
		unsigned char c = (unsigned char)*p;

		if (c == '.') {
			if (maildir_put(buf, size, &pos, sep) < 0)
				return -1;
			p++;
		} else if (c == '&' && p[1] == '-') {
			if (maildir_put(buf, size, &pos, '&') < 0)
				return -1;
			p += 2;
		} else if (c == '&') {
			p++;
			if (*p == '-' ||
			    maildir_decode_b64(&p, buf, size, &pos) < 0)
				return -1;
		} else if (c >= 0x20 && c <= 0x7e) {
			if (maildir_put(buf, size, &pos, (char)c) < 0)
				return -1;
			p++;
		} else
			return -1;
	}
	buf[pos] = '\0';
	return 0;
}

int
mk_maildir_folder_name(const char *dir, char sep, char *buf, size_t size)
{
	size_t i;

	if (size == 0)
		return -1;
	if (dir[0] == '\0') {
		mk_strlcpy(buf, "INBOX", size);
		return 0;
	}
	if (maildir_decode_name(dir + 1, sep, buf, size) == 0)
		return 0;
	mk_strlcpy(buf, dir + 1, size);
	for (i = 0; buf[i] != '\0'; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c == '.')
			buf[i] = sep;
		else if (c < 0x20 || c > 0x7e)
			buf[i] = '?';
	}
	return -1;
}

static const char maildir_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

/* Read one UTF-8 code point at *pp; -1 on invalid UTF-8. */
static int
maildir_get_utf8(const unsigned char **pp, unsigned *cp_r)
{
	uint32_t cp;
	size_t n = mk_str_utf8_decode(*pp, strnlen((const char *)*pp, 4), &cp);

	if (n == 0)
		return -1;
	*cp_r = cp;
	*pp += n;
	return 0;
}

/* Encode a run of non-ASCII code points as "&...-". */
static int
maildir_encode_run(
    const unsigned char **pp, char *buf, size_t size, size_t *pos)
{
	unsigned bits = 0, nbits = 0, cp;

	if (maildir_put(buf, size, pos, '&') < 0)
		return -1;
	while (**pp >= 0x80) {
		unsigned units[2];
		int n = 1, i;

		if (maildir_get_utf8(pp, &cp) < 0)
			return -1;
		if (cp >= 0x10000) {
			units[0] = 0xd800 + ((cp - 0x10000) >> 10);
			units[1] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
			n = 2;
		} else
			units[0] = cp;
		for (i = 0; i < n; i++) {
			bits = (bits << 16) | units[i];
			nbits += 16;
			while (nbits >= 6) {
				nbits -= 6;
				if (maildir_put(buf, size, pos,
					maildir_b64_chars[(bits >> nbits) &
					    63]) < 0)
					return -1;
			}
		}
	}
	if (nbits > 0 &&
	    maildir_put(buf, size, pos,
		maildir_b64_chars[(bits << (6 - nbits)) & 63]) < 0)
		return -1;
	return maildir_put(buf, size, pos, '-');
}

int
mk_maildir_folder_dir(
    const char *name, char sep, char *buf, size_t size, struct mk_err *err)
{
	const unsigned char *p = (const unsigned char *)name;
	size_t pos = 0, part = 0;

	if (strcmp(name, "INBOX") == 0) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	if (maildir_put(buf, size, &pos, '.') < 0)
		return mk_err_set(err, "folder '%s': name too long", name);
	for (; *p != '\0';) {
		if (*p == (unsigned char)sep) {
			if (part == 0)
				return mk_err_set(
				    err, "folder '%s': empty name part", name);
			if (maildir_put(buf, size, &pos, '.') < 0)
				goto toolong;
			part = 0;
			p++;
			continue;
		}
		if (*p == '.' || *p == '/' || *p < 0x20 || *p == 0x7f)
			return mk_err_set(err,
			    "folder '%s': '%c' cannot be in a Maildir++ name",
			    name, *p < 0x20 || *p == 0x7f ? '?' : *p);
		if (*p >= 0x80) {
			if (maildir_encode_run(&p, buf, size, &pos) < 0)
				return mk_err_set(err,
				    "folder '%s': invalid UTF-8 or too long",
				    name);
		} else if (*p == '&') {
			if (maildir_put(buf, size, &pos, '&') < 0 ||
			    maildir_put(buf, size, &pos, '-') < 0)
				goto toolong;
			p++;
		} else {
			if (maildir_put(buf, size, &pos, (char)*p) < 0)
				goto toolong;
			p++;
		}
		part++;
	}
	if (part == 0)
		return mk_err_set(err, "folder '%s': empty name part", name);
	if (pos > 255)
		goto toolong;
	buf[pos] = '\0';
	return 0;
toolong:
	return mk_err_set(err, "folder '%s': name too long", name);
}

uint64_t
mk_maildir_vsize_add(const char *buf, size_t len, bool *prev_cr)
{
	uint64_t extra = 0;
	const char *p = buf, *end = buf + len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		bool cr = nl > p ? nl[-1] == '\r' : *prev_cr;

		if (!cr)
			extra++;
		p = nl + 1;
	}
	if (len > 0)
		*prev_cr = buf[len - 1] == '\r';
	return len + extra;
}
