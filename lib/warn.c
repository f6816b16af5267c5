#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mailkeep/fsutil.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"
#include "mailkeep/warn.h"

#define WARN_PERCENT_MAX 99999
#define WARN_LINE_MAX 998 /* RFC 5322, without the line end */
#define WARN_HEADER_WIDTH 78 /* fold a header line beyond this */
#define WARN_WORD_BYTES 42 /* UTF-8 bytes per RFC 2047 encoded word */
#define WARN_DEFAULT_SUBJECT "Your mailbox is %{percent}% full"

void
mk_warn_config_init(struct mk_warn_config *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->thresholds[0] = 80;
	conf->thresholds[1] = 90;
	conf->thresholds[2] = 100;
	conf->nthresholds = 3;
	conf->margin = 5;
	conf->repeat = 86400;
}

int
mk_warn_config_set_thresholds(
    struct mk_warn_config *conf, const char *list, struct mk_err *err)
{
	unsigned t[MK_WARN_THRESHOLDS_MAX];
	const char *p = list;
	size_t n = 0;

	for (;;) {
		char *end;
		unsigned long v;

		p += strspn(p, " \t,");
		if (*p == '\0')
			break;
		if (*p < '0' || *p > '9')
			return mk_err_set(
			    err, "thresholds '%s': not a number", list);
		v = strtoul(p, &end, 10);
		if (*end != '\0' && strchr(" \t,", *end) == NULL)
			return mk_err_set(
			    err, "thresholds '%s': not a number", list);
		if (v < 1 || v > MK_WARN_THRESHOLD_MAX)
			return mk_err_set(err,
			    "thresholds '%s': each from 1 to %d percent", list,
			    MK_WARN_THRESHOLD_MAX);
		if (n == MK_WARN_THRESHOLDS_MAX)
			return mk_err_set(err, "thresholds '%s': at most %d",
			    list, MK_WARN_THRESHOLDS_MAX);
		if (n > 0 && v <= t[n - 1])
			return mk_err_set(
			    err, "thresholds '%s': must be ascending", list);
		t[n++] = (unsigned)v;
		p = end;
	}
	if (n == 0)
		return mk_err_set(err, "thresholds: none given");
	if (t[0] <= conf->margin)
		return mk_err_set(err,
		    "thresholds '%s': %u is not above the margin (%u)", list,
		    t[0], conf->margin);
	memcpy(conf->thresholds, t, n * sizeof(t[0]));
	conf->nthresholds = n;
	return 0;
}

int
mk_warn_config_set_margin(
    struct mk_warn_config *conf, unsigned margin, struct mk_err *err)
{
	if (conf->nthresholds > 0 && margin >= conf->thresholds[0])
		return mk_err_set(err,
		    "margin %u: must be below the lowest threshold (%u)",
		    margin, conf->thresholds[0]);
	conf->margin = margin;
	return 0;
}

/*
 * Has usage reached pct percent of limit, i.e. usage * 100 >= limit *
 * pct?  Computed as usage >= ceil(limit * pct / 100) without overflow: a
 * level beyond 64 bits is never reached.
 */
static bool
warn_reached(uint64_t usage, uint64_t limit, unsigned pct)
{
	uint64_t level;

	if (__builtin_mul_overflow(limit / 100, (uint64_t)pct, &level) ||
	    __builtin_add_overflow(
		level, ((limit % 100) * pct + 99) / 100, &level))
		return false;
	return usage >= level;
}

unsigned
mk_warn_percent(uint64_t usage, uint64_t limit)
{
	unsigned lo = 0, hi = WARN_PERCENT_MAX;

	if (limit == 0)
		return 0;
	/* The largest percentage reached. */
	while (lo < hi) {
		unsigned mid = lo + (hi - lo + 1) / 2;

		if (warn_reached(usage, limit, mid))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static bool
warn_configured(const struct mk_warn_config *conf, unsigned t)
{
	size_t i;

	for (i = 0; i < conf->nthresholds; i++)
		if (conf->thresholds[i] == t)
			return true;
	return false;
}

static struct mk_warn_mark *
warn_mark_find(struct mk_warn_state *s, unsigned t)
{
	size_t i;

	for (i = 0; i < s->nmarks; i++)
		if (s->marks[i].threshold == t)
			return &s->marks[i];
	return NULL;
}

/* Add a mark for t at now, keeping the marks in ascending order. */
static void
warn_mark_add(struct mk_warn_state *s, unsigned t, int64_t now)
{
	size_t i = s->nmarks;

	while (i > 0 && s->marks[i - 1].threshold > t) {
		s->marks[i] = s->marks[i - 1];
		i--;
	}
	s->marks[i].threshold = t;
	s->marks[i].warned_at = now;
	s->nmarks++;
}

bool
mk_warn_update(const struct mk_warn_config *conf, struct mk_warn_state *state,
    uint64_t usage, uint64_t limit, int64_t now, unsigned *threshold_r)
{
	struct mk_warn_state next;
	struct mk_warn_mark *top_mark;
	unsigned top = 0;
	size_t i;

	memset(&next, 0, sizeof(next));
	*threshold_r = 0;
	if (limit == 0) {
		*state = next;
		return false;
	}
	/* Keep the marks still configured that have not re-armed. */
	for (i = 0; i < state->nmarks && i < MK_WARN_THRESHOLDS_MAX; i++) {
		unsigned t = state->marks[i].threshold;

		if (!warn_configured(conf, t) || warn_mark_find(&next, t) ||
		    !warn_reached(
			usage, limit, t > conf->margin ? t - conf->margin : 0))
			continue;
		warn_mark_add(&next, t, state->marks[i].warned_at);
	}
	for (i = 0; i < conf->nthresholds; i++)
		if (warn_reached(usage, limit, conf->thresholds[i]))
			top = conf->thresholds[i];
	if (top == 0) {
		*state = next;
		return false;
	}
	/*
	 * Thresholds below the top are marked quietly, so that falling back
	 * to one of them later does not warn about it.
	 */
	for (i = 0; i < conf->nthresholds && conf->thresholds[i] < top; i++)
		if (warn_mark_find(&next, conf->thresholds[i]) == NULL)
			warn_mark_add(&next, conf->thresholds[i], now);
	if ((top_mark = warn_mark_find(&next, top)) == NULL)
		warn_mark_add(&next, top, now);
	else if (conf->repeat > 0 && now >= top_mark->warned_at &&
	    (uint64_t)now - (uint64_t)top_mark->warned_at >=
		(uint64_t)conf->repeat)
		top_mark->warned_at = now;
	else
		top = 0;
	*state = next;
	*threshold_r = top;
	return top != 0;
}

size_t
mk_warn_state_format(const struct mk_warn_state *state, char *buf, size_t size)
{
	size_t i, len = 0;

	if (size > 0)
		buf[0] = '\0';
	for (i = 0; i < state->nmarks; i++) {
		int n = snprintf(len < size ? buf + len : NULL,
		    len < size ? size - len : 0, "%s%u@%" PRId64,
		    i > 0 ? " " : "", state->marks[i].threshold,
		    state->marks[i].warned_at);

		if (n > 0)
			len += (size_t)n;
	}
	return len;
}

int
mk_warn_state_parse(
    const char *text, struct mk_warn_state *state_r, struct mk_err *err)
{
	struct mk_warn_state s;
	const char *p = text;

	memset(&s, 0, sizeof(s));
	for (;;) {
		unsigned long t;
		long long at;
		char *end;

		p += strspn(p, " ");
		if (*p == '\0')
			break;
		if (*p < '0' || *p > '9')
			return mk_err_set(err, "warning state '%s': bad", text);
		t = strtoul(p, &end, 10);
		if (*end != '@' || t < 1 || t > MK_WARN_THRESHOLD_MAX ||
		    (s.nmarks > 0 && t <= s.marks[s.nmarks - 1].threshold) ||
		    s.nmarks == MK_WARN_THRESHOLDS_MAX)
			return mk_err_set(err, "warning state '%s': bad", text);
		p = end + 1;
		if ((*p < '0' || *p > '9') && *p != '-')
			return mk_err_set(err, "warning state '%s': bad", text);
		errno = 0;
		at = strtoll(p, &end, 10);
		if (errno != 0 || (*end != ' ' && *end != '\0'))
			return mk_err_set(err, "warning state '%s': bad", text);
		s.marks[s.nmarks].threshold = (unsigned)t;
		s.marks[s.nmarks].warned_at = (int64_t)at;
		s.nmarks++;
		p = end;
	}
	*state_r = s;
	return 0;
}

/* A growing string. */
struct warn_buf {
	char *s;
	size_t len;
	size_t cap;
};

static void
warn_put(struct warn_buf *b, const char *s, size_t n)
{
	mk_xgrow(&b->s, &b->cap, b->len + n + 1, 1);
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
warn_puts(struct warn_buf *b, const char *s)
{
	warn_put(b, s, strlen(s));
}

/*
 * Are s[0..len) UTF-8 without control characters other than TAB, and,
 * when lines is true, LF and a CR before an LF?
 */
static bool
warn_text_valid(const char *s, size_t len, bool lines)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if ((n = mk_str_utf8_decode(u + i, len - i, &cp)) == 0 ||
		    cp == 0x7f ||
		    (cp < 0x20 && cp != '\t' && !(lines && cp == '\n') &&
			!(lines && cp == '\r' && i + 1 < len &&
			    u[i + 1] == '\n')))
			return false;
		i += n;
	}
	return true;
}

static bool
warn_text_ascii(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;
	return true;
}

/* Append s[0..len) with its placeholders replaced. */
static void
warn_expand(struct warn_buf *b, const char *s, size_t len,
    const struct mk_warn_message *m)
{
	const char *end = s + len;

	while (s < end) {
		const char *ph = memmem(s, (size_t)(end - s), "%{", 2), *close;
		char value[64];
		size_t nlen;

		if (ph == NULL) {
			warn_put(b, s, (size_t)(end - s));
			return;
		}
		warn_put(b, s, (size_t)(ph - s));
		close = memchr(ph, '}', (size_t)(end - ph));
		if (close == NULL) {
			warn_put(b, ph, (size_t)(end - ph));
			return;
		}
		nlen = (size_t)(close - ph - 2);
		value[0] = '\0';
		if (nlen == 7 && memcmp(ph + 2, "address", 7) == 0)
			warn_puts(b, m->to);
		else if (nlen == 7 && memcmp(ph + 2, "percent", 7) == 0)
			snprintf(value, sizeof(value), "%u",
			    mk_warn_percent(m->usage, m->limit));
		else if (nlen == 5 && memcmp(ph + 2, "usage", 5) == 0)
			mk_str_format_size(m->usage, value, sizeof(value));
		else if (nlen == 5 && memcmp(ph + 2, "limit", 5) == 0)
			mk_str_format_size(m->limit, value, sizeof(value));
		else if (nlen == 9 && memcmp(ph + 2, "threshold", 9) == 0)
			snprintf(value, sizeof(value), "%u", m->threshold);
		else
			warn_put(b, ph, nlen + 3);
		warn_puts(b, value);
		s = close + 1;
	}
}

/* Append s[0..n) in base64 (RFC 4648), padded. */
static void
warn_base64(struct warn_buf *b, const unsigned char *s, size_t n)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				  "abcdefghijklmnopqrstuvwxyz0123456789+/";
	char out[4];
	size_t i;

	for (i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)s[i + 1] << 8;
		if (i + 2 < n)
			v |= s[i + 2];
		out[0] = abc[v >> 18];
		out[1] = abc[(v >> 12) & 63];
		out[2] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
		out[3] = i + 2 < n ? abc[v & 63] : '=';
		warn_put(b, out, 4);
	}
}

/*
 * The Subject header: folded before a blank when ASCII, else RFC 2047
 * encoded words of whole characters, one per line.
 */
static void
warn_subject(struct warn_buf *b, const char *subject)
{
	size_t len = strlen(subject), i, col = 8;
	const char *p = subject;

	warn_puts(b, "Subject:");
	if (warn_text_ascii(subject, len)) {
		if (*p != ' ' && *p != '\t') {
			warn_puts(b, " ");
			col++;
		}
		while (*p != '\0') {
			size_t blanks = strspn(p, " \t");
			size_t word = strcspn(p + blanks, " \t");

			/* The blanks then start the continuation line. */
			if (blanks > 0 && col > 9 &&
			    col + blanks + word > WARN_HEADER_WIDTH) {
				warn_puts(b, "\n");
				col = 0;
			}
			warn_put(b, p, blanks + word);
			col += blanks + word;
			p += blanks + word;
		}
		warn_puts(b, "\n");
		return;
	}
	for (i = 0; i < len;) {
		size_t n =
		    len - i < WARN_WORD_BYTES ? len - i : WARN_WORD_BYTES;

		/* Do not cut a character: back up to its first byte. */
		while (i + n < len &&
		    ((unsigned char)subject[i + n] & 0xc0) == 0x80)
			n--;
		warn_puts(b, i == 0 ? " =?UTF-8?B?" : "\n =?UTF-8?B?");
		warn_base64(b, (const unsigned char *)subject + i, n);
		warn_puts(b, "?=");
		i += n;
	}
	warn_puts(b, "\n");
}

/* The Date header value for t, in UTC. */
static int
warn_date(int64_t t, char *buf, size_t size, struct mk_err *err)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu",
		"Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May",
		"Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year + 1900 > 9999 ||
	    tm.tm_year + 1900 < 1900)
		return mk_err_set(err, "date %" PRId64 ": out of range", t);
	snprintf(buf, size, "%s, %02d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec);
	return 0;
}

/* Is s non-empty and made only of bytes in allowed (NULL: printable)? */
static bool
warn_token_valid(const char *s, const char *allowed)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (allowed != NULL ? strchr(allowed, c) == NULL
				    : c < 0x20 || c > 0x7e)
			return false;
	}
	return true;
}

/* Check the values that go into headers. */
static int
warn_check_message(const struct mk_warn_message *m, struct mk_err *err)
{
	static const char id_chars[] = "abcdefghijklmnopqrstuvwxyz"
				       "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789.-_";

	if (!warn_token_valid(m->from, NULL))
		return mk_err_set(err, "warning From: not printable ASCII");
	if (m->to == NULL || m->to[0] == '\0' ||
	    !warn_text_valid(m->to, strlen(m->to), false))
		return mk_err_set(err, "warning To: empty or not printable");
	if (!warn_token_valid(m->hostname, id_chars) ||
	    !warn_token_valid(m->unique, id_chars))
		return mk_err_set(
		    err, "warning Message-ID: bad host name or unique part");
	return 0;
}

/* Append the body: lines of at most WARN_LINE_MAX bytes, ending in LF. */
static int
warn_body(struct warn_buf *b, const char *body, size_t len, struct mk_err *err)
{
	const char *p = body, *end = body + len;
	unsigned line = 1;

	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		size_t n = (eol != NULL ? eol : end) - p;

		if (n > WARN_LINE_MAX)
			return mk_err_set(err,
			    "warning body line %u: longer than %d bytes", line,
			    WARN_LINE_MAX);
		warn_put(b, p, n);
		warn_puts(b, "\n");
		p += n + 1;
		line++;
	}
	return 0;
}

/* The whole message for m: headers, subject, body (LF line ends). */
static int
warn_compose(const struct mk_warn_message *m, const char *subject,
    const char *body, size_t body_len, char **msg_r, size_t *len_r,
    struct mk_err *err)
{
	struct warn_buf msg = { NULL, 0, 0 };
	const char *p, *start;
	char date[64], *header;
	int rc = -1;

	if (warn_date(m->date, date, sizeof(date), err) < 0)
		return -1;
	header =
	    mk_xasprintf("Date: %s\nFrom: %s\nTo: %s\n", date, m->from, m->to);
	warn_puts(&msg, header);
	free(header);
	warn_subject(&msg, subject);
	header = mk_xasprintf("Message-ID: <mailkeep.%" PRId64 ".%s@%s>\n"
			      "MIME-Version: 1.0\n"
			      "Content-Type: text/plain; charset=utf-8\n"
			      "Content-Transfer-Encoding: %s\n"
			      "Auto-Submitted: auto-generated\n"
			      "\n",
	    m->date, m->unique, m->hostname,
	    warn_text_ascii(body, body_len) ? "7bit" : "8bit");
	warn_puts(&msg, header);
	free(header);
	if (warn_body(&msg, body, body_len, err) < 0)
		goto out;
	for (p = msg.s; (start = strchr(p, '\n')) != NULL; p = start + 1)
		if ((size_t)(start - p) > WARN_LINE_MAX) {
			mk_err_set(err, "warning header longer than %d bytes",
			    WARN_LINE_MAX);
			goto out;
		}
	*msg_r = msg.s;
	*len_r = msg.len;
	msg.s = NULL;
	rc = 0;
out:
	free(msg.s);
	return rc;
}

int
mk_warn_render(const char *tmpl, size_t len, const struct mk_warn_message *m,
    char **msg_r, size_t *len_r, struct mk_err *err)
{
	struct warn_buf text = { NULL, 0, 0 }, subject = { NULL, 0, 0 };
	struct warn_buf body = { NULL, 0, 0 };
	const char *p, *start, *end;
	int rc;
	size_t i;

	*msg_r = NULL;
	if (warn_check_message(m, err) < 0)
		return -1;
	if (!warn_text_valid(tmpl, len, true))
		return mk_err_set(
		    err, "warning template: not plain UTF-8 text");
	/* The template with CRLF as LF. */
	for (i = 0; i < len; i++)
		if (tmpl[i] != '\r')
			warn_put(&text, &tmpl[i], 1);
	warn_put(&text, "", 0);
	start = text.s;
	end = text.s + text.len;
	if (text.len >= 8 && strncasecmp(text.s, "Subject:", 8) == 0) {
		const char *eol = memchr(text.s, '\n', text.len);

		p = text.s + 8;
		p += strspn(p, " \t");
		warn_expand(&subject, p, (size_t)((eol ? eol : end) - p), m);
		start = eol != NULL ? eol + 1 : end;
		if (start < end && *start == '\n')
			start++;
	} else
		warn_expand(&subject, WARN_DEFAULT_SUBJECT,
		    strlen(WARN_DEFAULT_SUBJECT), m);
	warn_put(&subject, "", 0);
	warn_expand(&body, start, (size_t)(end - start), m);
	warn_put(&body, "", 0);
	rc = warn_compose(m, subject.s, body.s, body.len, msg_r, len_r, err);
	free(text.s);
	free(subject.s);
	free(body.s);
	return rc;
}

static int
warn_digest_cmp(const void *a, const void *b)
{
	const struct mk_warn_digest_entry *x = a, *y = b;

	if (x->percent != y->percent)
		return x->percent > y->percent ? -1 : 1;
	if (x->usage != y->usage)
		return x->usage > y->usage ? -1 : 1;
	return strcmp(x->address, y->address);
}

int
mk_warn_digest_render(struct mk_warn_digest_entry *entries, size_t n,
    size_t top, const struct mk_warn_message *m, char **msg_r, size_t *len_r,
    struct mk_err *err)
{
	struct warn_buf body = { NULL, 0, 0 };
	size_t i, over = 0, show;
	char *line, subject[128];
	int rc;

	*msg_r = NULL;
	if (warn_check_message(m, err) < 0)
		return -1;
	qsort(entries, n, sizeof(*entries), warn_digest_cmp);
	for (i = 0; i < n; i++)
		over += entries[i].percent >= 100;
	show = n < top ? n : top;
	snprintf(subject, sizeof(subject),
	    "Quota digest: %zu mailbox%s full, %zu limited", over,
	    over == 1 ? "" : "es", n);
	line = mk_xasprintf("The %zu fullest of the %zu mailboxes with a "
			    "limit, fullest first.\n"
			    "Usage and limit in bytes, or in messages where "
			    "that limit is the nearer.\n\n"
			    "%7s  %20s  %20s  %s\n",
	    show, n, "percent", "usage", "limit", "mailbox");
	warn_puts(&body, line);
	free(line);
	for (i = 0; i < show; i++) {
		const struct mk_warn_digest_entry *e = &entries[i];

		if (!warn_text_valid(e->address, strlen(e->address), false)) {
			free(body.s);
			return mk_err_set(err,
			    "digest: an address that is "
			    "not printable UTF-8");
		}
		line = mk_xasprintf("%6u%%  %20" PRIu64 "  %20" PRIu64 "  %s\n",
		    e->percent, e->usage, e->limit, e->address);
		warn_puts(&body, line);
		free(line);
	}
	if (n == 0)
		warn_puts(&body, "(no mailbox has a limit)\n");
	warn_put(&body, "", 0);
	rc = warn_compose(m, subject, body.s, body.len, msg_r, len_r, err);
	free(body.s);
	return rc;
}

int
mk_warn_template_load(
    const char *path, char **tmpl_r, size_t *len_r, struct mk_err *err)
{
	char *data = NULL;
	size_t len = 0;

	*tmpl_r = NULL;
	if (mk_fs_read_file(path, MK_WARN_TEMPLATE_MAX, &data, &len, err) < 0)
		return -1;
	if (!warn_text_valid(data, len, true)) {
		free(data);
		return mk_err_set(err, "%s: not plain UTF-8 text", path);
	}
	*tmpl_r = data;
	*len_r = len;
	return 0;
}

int
mk_warn_estimate(const struct mk_warn_sample *samples, size_t n, uint64_t limit,
    uint64_t *days_r)
{
	size_t k = n < MK_WARN_ESTIMATE_SAMPLES ? n : MK_WARN_ESTIMATE_SAMPLES;
	const struct mk_warn_sample *s = samples + (n - k);
	double mx = 0, my = 0, sxy = 0, sxx = 0, slope, days;
	uint64_t now;
	size_t i;

	*days_r = 0;
	if (limit == 0 || k < 2)
		return 0;
	for (i = 1; i < k; i++)
		if (s[i].day <= s[i - 1].day)
			return 0;
	now = s[k - 1].usage;
	if (now >= limit)
		return 1;
	/* Days counted from the first sample keep the doubles small. */
	for (i = 0; i < k; i++) {
		mx += (double)(s[i].day - s[0].day);
		my += (double)s[i].usage;
	}
	mx /= (double)k;
	my /= (double)k;
	for (i = 0; i < k; i++) {
		double dx = (double)(s[i].day - s[0].day) - mx;

		sxy += dx * ((double)s[i].usage - my);
		sxx += dx * dx;
	}
	slope = sxy / sxx;
	if (!(slope > 0))
		return 0;
	days = ceil((double)(limit - now) / slope);
	if (days > MK_WARN_ESTIMATE_DAYS_MAX)
		return 0;
	*days_r = (uint64_t)days;
	return 1;
}
