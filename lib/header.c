#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mailkeep/header.h"
#include "mailkeep/str.h"

/* An unfolded field before decoding. */
#define HEADER_RAW_MAX 4096

/* A growing output string, cut at its size. */
struct hd_out {
	char *buf;
	size_t size, len;
};

static void
hd_putc(struct hd_out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len++] = c;
	o->buf[o->len] = '\0';
}

/* Append a Unicode code point as UTF-8, whole or not at all. */
static void
hd_put_cp(struct hd_out *o, uint32_t cp)
{
	char u[4];
	size_t n, i;

	if (cp < 0x20 || cp == 0x7f)
		cp = ' ';
	n = mk_str_utf8_encode(cp, u);
	if (o->len + n >= o->size)
		return;
	for (i = 0; i < n; i++)
		o->buf[o->len++] = u[i];
	o->buf[o->len] = '\0';
}

/* Append bytes that should be UTF-8 (or Latin-1 when latin1). */
static void
hd_put_text(struct hd_out *o, const unsigned char *s, size_t len, bool latin1)
{
	uint32_t cp;
	size_t i = 0, n;

	while (i < len) {
		if (latin1) {
			hd_put_cp(o, s[i++]);
			continue;
		}
		n = mk_str_utf8_decode(s + i, len - i, &cp);
		if (n == 0) {
			hd_put_cp(o, '?');
			i++;
			continue;
		}
		hd_put_cp(o, cp);
		i += n;
	}
}

static int
hd_hex(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decode the encoded-word at s (len bytes, "=?cs?e?text?="); returns its
 * length when decoded (into o unless NULL), 0 when it is not one this
 * module decodes.
 */
static size_t
hd_word(struct hd_out *o, const char *s, size_t len)
{
	unsigned char dec[HEADER_RAW_MAX];
	const char *cs, *q1, *q2, *end;
	size_t dlen = 0, i, cslen;
	unsigned acc = 0;
	bool latin1;
	int bits = 0, v, hi, lo;
	char enc;

	if (len < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	cs = s + 2;
	if ((q1 = memchr(cs, '?', len - 2)) == NULL ||
	    (size_t)(q1 - s) + 3 > len || q1[2] != '?')
		return 0;
	enc = (char)toupper((unsigned char)q1[1]);
	q2 = q1 + 3;
	for (end = q2; (size_t)(end - s) + 1 < len; end++)
		if (end[0] == '?' && end[1] == '=')
			break;
	if ((size_t)(end - s) + 1 >= len)
		return 0;
	cslen = (size_t)(q1 - cs);
	/* RFC 2231 language: "utf-8*en". */
	if (memchr(cs, '*', cslen) != NULL)
		cslen = (size_t)((const char *)memchr(cs, '*', cslen) - cs);
	if ((cslen == 5 && strncasecmp(cs, "utf-8", 5) == 0) ||
	    (cslen == 8 && strncasecmp(cs, "us-ascii", 8) == 0))
		latin1 = false;
	else if ((cslen == 10 && (strncasecmp(cs, "iso-8859-1", 10) == 0)) ||
	    (cslen == 11 && strncasecmp(cs, "iso-8859-15", 11) == 0))
		latin1 = true;
	else
		return 0;
	for (i = 0; q2 + i < end && dlen < sizeof(dec); i++) {
		int c = (unsigned char)q2[i];

		if (enc == 'B') {
			if (c == '=')
				break;
			if ((v = mk_str_b64_value(c, '/')) < 0)
				return 0;
			acc = (acc << 6) | (unsigned)v;
			if ((bits += 6) >= 8) {
				bits -= 8;
				dec[dlen++] = (unsigned char)(acc >> bits);
			}
		} else if (enc == 'Q') {
			if (c == '_')
				dec[dlen++] = ' ';
			else if (c == '=' && q2 + i + 2 < end &&
			    (hi = hd_hex(q2[i + 1])) >= 0 &&
			    (lo = hd_hex(q2[i + 2])) >= 0) {
				dec[dlen++] = (unsigned char)(hi * 16 + lo);
				i += 2;
			} else
				dec[dlen++] = (unsigned char)c;
		} else
			return 0;
	}
	if (o != NULL)
		hd_put_text(o, dec, dlen, latin1);
	return (size_t)(end - s) + 2;
}

/* Decode a raw unfolded field into o. */
static void
hd_decode(struct hd_out *o, const char *raw, size_t len)
{
	size_t i = 0, n, j;

	while (i < len && (raw[i] == ' ' || raw[i] == '\t'))
		i++;
	while (i < len) {
		if ((n = hd_word(o, raw + i, len - i)) > 0) {
			i += n;
			/* Space between two encoded-words is dropped. */
			for (j = i;
			     j < len && (raw[j] == ' ' || raw[j] == '\t'); j++)
				;
			if (j > i && hd_word(NULL, raw + j, len - j) > 0)
				i = j;
			continue;
		}
		/* Plain text up to the next "=?" after this byte. */
		for (n = 1; i + n < len; n++)
			if (raw[i + n] == '=' && i + n + 1 < len &&
			    raw[i + n + 1] == '?')
				break;
		hd_put_text(o, (const unsigned char *)raw + i, n, false);
		i += n;
	}
	while (o->len > 0 && o->buf[o->len - 1] == ' ')
		o->buf[--o->len] = '\0';
}

/* Lower-case what is inside <...>, or everything when there is none. */
static void
hd_lower_addresses(char *s)
{
	bool inside = strchr(s, '<') == NULL;

	for (; *s != '\0'; s++) {
		if (*s == '<')
			inside = true;
		else if (*s == '>')
			inside = false;
		else if (inside && *s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

static int
hd_month(const char *s)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	int i;

	for (i = 0; i < 12; i++)
		if (strncasecmp(s, months + 3 * i, 3) == 0)
			return i;
	return -1;
}

int64_t
mk_header_date(const char *s)
{
	static const struct {
		const char *name;
		int hours;
	} zones[] = { { "UT", 0 }, { "GMT", 0 }, { "Z", 0 }, { "EST", -5 },
		{ "EDT", -4 }, { "CST", -6 }, { "CDT", -5 }, { "MST", -7 },
		{ "MDT", -6 }, { "PST", -8 }, { "PDT", -7 } };
	char mon[4], zone[8] = "";
	int d, y, h, mi, sec = 0, n = 0, m, z;
	int64_t off = 0;
	struct tm tm;
	const char *p;
	size_t i;

	while (*s == ' ' || *s == '\t')
		s++;
	/* The day name is optional and says nothing new. */
	if ((p = strchr(s, ',')) != NULL && p - s <= 9)
		s = p + 1;
	if (sscanf(s, " %d %3s %d %d:%d%n", &d, mon, &y, &h, &mi, &n) != 5)
		return 0;
	p = s + n;
	if (*p == ':') {
		if (sscanf(p, ":%d%n", &sec, &n) != 1)
			return 0;
		p += n;
	}
	if (sscanf(p, " %7s", zone) == 1) {
		if ((zone[0] == '+' || zone[0] == '-') &&
		    strspn(zone + 1, "0123456789") == 4 && zone[5] == '\0') {
			z = atoi(zone + 1);
			off = (int64_t)(z / 100 * 3600 + z % 100 * 60);
			if (zone[0] == '-')
				off = -off;
		} else
			for (i = 0; i < sizeof(zones) / sizeof(zones[0]); i++)
				if (strcasecmp(zone, zones[i].name) == 0)
					off = zones[i].hours * 3600;
	}
	if (y < 100)
		y += y < 50 ? 2000 : 1900;
	if ((m = hd_month(mon)) < 0 || d < 1 || d > 31 || y < 1970 ||
	    y > 9999 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
	    sec > 60)
		return 0;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = m;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	return (int64_t)timegm(&tm) - off;
}

enum hd_field {
	HD_MESSAGE_ID,
	HD_FROM,
	HD_TO,
	HD_CC,
	HD_SUBJECT,
	HD_DATE,
	HD_NONE
};

static enum hd_field
hd_field(const char *name, size_t len)
{
	static const char *const names[] = { "message-id", "from", "to", "cc",
		"subject", "date" };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len &&
		    strncasecmp(name, names[i], len) == 0)
			return (enum hd_field)i;
	return HD_NONE;
}

/* Store a field's unfolded raw value, if it is one of ours and the first. */
static void
hd_store(struct mk_header *h, enum hd_field f, const char *raw, size_t len,
    bool seen[HD_NONE])
{
	char date[128];
	struct hd_out o;
	size_t n;

	if (f == HD_NONE || seen[f])
		return;
	seen[f] = true;
	memset(&o, 0, sizeof(o));
	switch (f) {
	case HD_MESSAGE_ID:
		o.buf = h->message_id;
		o.size = sizeof(h->message_id);
		break;
	case HD_FROM:
		o.buf = h->from;
		o.size = sizeof(h->from);
		break;
	case HD_TO:
	case HD_CC:
		o.buf = h->to;
		o.size = sizeof(h->to);
		o.len = strlen(h->to);
		if (o.len > 0) {
			hd_putc(&o, ',');
			hd_putc(&o, ' ');
		}
		break;
	case HD_SUBJECT:
		o.buf = h->subject;
		o.size = sizeof(h->subject);
		break;
	case HD_DATE:
		n = len < sizeof(date) - 1 ? len : sizeof(date) - 1;
		memcpy(date, raw, n);
		date[n] = '\0';
		h->date = mk_header_date(date);
		return;
	case HD_NONE:
		return;
	}
	if (f == HD_MESSAGE_ID) {
		/* No decoding, no spaces. */
		for (n = 0; n < len; n++)
			if (raw[n] > ' ' && raw[n] < 0x7f)
				hd_putc(&o, raw[n]);
		return;
	}
	hd_decode(&o, raw, len);
	if (f != HD_SUBJECT)
		hd_lower_addresses(o.buf);
}

void
mk_header_parse(const void *data, size_t len, struct mk_header *h)
{
	const char *p = data, *end, *nl, *colon;
	char raw[HEADER_RAW_MAX];
	enum hd_field f = HD_NONE;
	bool seen[HD_NONE];
	size_t rawlen = 0, n;

	memset(h, 0, sizeof(*h));
	memset(seen, 0, sizeof(seen));
	if (len > MK_HEADER_SCAN_MAX)
		len = MK_HEADER_SCAN_MAX;
	end = p + len;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = (size_t)((nl != NULL ? nl : end) - p);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the end of the header section */
		if (p[0] == ' ' || p[0] == '\t') {
			/* A continuation: unfolding keeps the white space. */
			if (f != HD_NONE && rawlen + n < sizeof(raw)) {
				memcpy(raw + rawlen, p, n);
				rawlen += n;
			}
		} else {
			hd_store(h, f, raw, rawlen, seen);
			f = HD_NONE;
			rawlen = 0;
			if ((colon = memchr(p, ':', n)) != NULL) {
				f = hd_field(p, (size_t)(colon - p));
				n -= (size_t)(colon + 1 - p);
				if (f != HD_NONE) {
					if (n >= sizeof(raw))
						n = sizeof(raw) - 1;
					memcpy(raw, colon + 1, n);
					rawlen = n;
				}
			}
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	hd_store(h, f, raw, rawlen, seen);
}
