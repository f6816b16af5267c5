#include <endian.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailkeep/mem.h"
#include "mailkeep/policy.h"
#include "mailkeep/str.h"

#define POLICY_DEFAULT_TEXT "Mailbox is full"

/* The attributes kept; each may appear once. */
static const struct policy_attr {
	const char *name;
	size_t len; /* strlen(name) */
	size_t offset; /* in struct mk_policy_request */
	bool number; /* a uint64_t, else a string */
} policy_attrs[] = {
#define POLICY_ATTR(name, field, number)                                       \
	{                                                                      \
		name, sizeof(name) - 1,                                        \
		    offsetof(struct mk_policy_request, field), number          \
	}
	POLICY_ATTR("request", request, false),
	POLICY_ATTR("protocol_state", protocol_state, false),
	POLICY_ATTR("protocol_name", protocol_name, false),
	POLICY_ATTR("recipient", recipient, false),
	POLICY_ATTR("sender", sender, false),
	POLICY_ATTR("instance", instance, false),
	POLICY_ATTR("client_address", client_address, false),
	POLICY_ATTR("size", size, true),
	POLICY_ATTR("recipient_count", recipient_count, true),
#undef POLICY_ATTR
};

#define POLICY_NATTRS (sizeof(policy_attrs) / sizeof(policy_attrs[0]))

struct mk_policy_parser {
	struct mk_policy_request req;
	bool done;
	bool failed;
	bool seen[POLICY_NATTRS];
	size_t total; /* bytes of this request so far */
	unsigned lineno; /* of the line being read, from 1 */
	size_t len; /* bytes of a line split between two feeds */
	char line[MK_POLICY_LINE_MAX];
	size_t vlen; /* bytes used in values */
	/* The kept values; never fuller than the request itself. */
	char values[MK_POLICY_REQUEST_MAX];
};

struct mk_policy_parser *
mk_policy_parser_new(void)
{
	struct mk_policy_parser *p = mk_xmalloc(sizeof(*p));

	p->failed = false;
	mk_policy_parser_reset(p);
	return p;
}

void
mk_policy_parser_free(struct mk_policy_parser **parserp)
{
	free(*parserp);
	*parserp = NULL;
}

void
mk_policy_parser_reset(struct mk_policy_parser *p)
{
	memset(&p->req, 0, sizeof(p->req));
	memset(p->seen, 0, sizeof(p->seen));
	p->done = false;
	p->total = 0;
	p->lineno = 1;
	p->len = 0;
	p->vlen = 0;
}

/*
 * Are s[0..len) only printable ASCII (0x20 to 0x7e)?  Nearly every line
 * Postfix sends is; a word at a time: a byte below 0x20 borrows, a byte
 * at or above 0x7f carries or has its top bit set.  A false alarm only
 * sends the line to the exact check.  The bytes after the last whole
 * word are checked as the word that ends the line.
 */
static bool
policy_printable(const char *s, size_t len)
{
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	size_t i = 0;
	uint64_t w;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, s + i, sizeof(w));
		if ((((w - 0x20 * ones) | (w + ones) | w) & high) != 0)
			return false;
	}
	if (i == len)
		return true;
	if (len >= 8) {
		memcpy(&w, s + len - 8, sizeof(w));
		return (((w - 0x20 * ones) | (w + ones) | w) & high) == 0;
	}
	for (; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
			return false;
	return true;
}

/*
 * Are s[0..len) well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF) without control bytes other than TAB?
 */
static bool
policy_text_valid(const unsigned char *s, size_t len)
{
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if ((n = mk_str_utf8_decode(s + i, len - i, &cp)) == 0 ||
		    (cp < 0x20 && cp != '\t') || cp == 0x7f)
			return false;
		i += n;
	}
	return true;
}

/* Fail the parser with a message about the current line; it stays failed. */
static enum mk_policy_status policy_fail(struct mk_policy_parser *p,
    struct mk_err *err, const char *fmt, ...) MK_PRINTF(3, 4);

static enum mk_policy_status
policy_fail(
    struct mk_policy_parser *p, struct mk_err *err, const char *fmt, ...)
{
	char what[MK_ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	p->failed = true;
	mk_err_set(err, "policy request, line %u: %s", p->lineno, what);
	return MK_POLICY_ERROR;
}

/* Keep the value of a known attribute. */
static enum mk_policy_status
policy_keep(struct mk_policy_parser *p, size_t a, const char *value,
    size_t vlen, struct mk_err *err)
{
	const struct policy_attr *pa = &policy_attrs[a];
	char *field = (char *)&p->req + pa->offset;
	char *copy;

	if (p->seen[a])
		return policy_fail(p, err, "%s given twice", pa->name);
	p->seen[a] = true;
	if (pa->number) {
		uint64_t v = 0;
		size_t i;

		/* Empty means "not available", as in Postfix. */
		for (i = 0; i < vlen; i++)
			if (value[i] < '0' || value[i] > '9' ||
			    __builtin_mul_overflow(v, 10, &v) ||
			    __builtin_add_overflow(
				v, (uint64_t)(value[i] - '0'), &v))
				return policy_fail(
				    p, err, "%s: not a number", pa->name);
		memcpy(field, &v, sizeof(v));
		return MK_POLICY_MORE;
	}
	copy = p->values + p->vlen;
	memcpy(copy, value, vlen);
	copy[vlen] = '\0';
	p->vlen += vlen + 1;
	memcpy(field, &copy, sizeof(copy));
	return MK_POLICY_MORE;
}

/* May c be in an attribute name? */
static inline bool
policy_name_char(unsigned char c)
{
	return (unsigned)((c | 0x20) - 'a') < 26 || (unsigned)(c - '0') < 10 ||
	    c == '_' || c == '-';
}

/*
 * The length of the run of name bytes that starts s[0..len), which is
 * printable ASCII: eight bytes at a time, where x + (0x80 - c) has its
 * top bit set when x >= c, without carrying for bytes from 0x20 to 0x7f.
 * Letters are tested in lower case (x | 0x20).
 */
static size_t
policy_name_len(const char *s, size_t len)
{
#define POLICY_GE(x, c) ((x) + (0x80 - (uint64_t)(c)) * ones)
#define POLICY_IN(x, lo, hi) (POLICY_GE(x, lo) & ~POLICY_GE(x, (hi) + 1))
	const uint64_t ones = 0x0101010101010101ULL;
	const uint64_t high = 0x8080808080808080ULL;
	uint64_t w, lower, ok, bad;
	size_t i = 0;

	for (; i + 8 <= len; i += 8) {
		memcpy(&w, s + i, sizeof(w));
		w = le64toh(w); /* s[i] in the low byte */
		lower = w | 0x20 * ones;
		ok = POLICY_IN(lower, 'a', 'z') | POLICY_IN(w, '0', '9') |
		    POLICY_IN(w, '_', '_') | POLICY_IN(w, '-', '-');
		if ((bad = ~ok & high) != 0)
			return i + (size_t)__builtin_ctzll(bad) / 8;
	}
#undef POLICY_IN
#undef POLICY_GE
	for (; i < len && policy_name_char((unsigned char)s[i]); i++)
		;
	return i;
}

/* One complete line of len bytes without its LF; printable: only
 * printable ASCII, known already. */
static enum mk_policy_status
policy_line(struct mk_policy_parser *p, const char *line, size_t len,
    bool printable, struct mk_err *err)
{
	const char *eq;
	size_t i, nlen;

	if (!printable) {
		if (len > 0 && line[len - 1] == '\r')
			len--;
		if (!policy_text_valid((const unsigned char *)line, len))
			return policy_fail(p, err,
			    "control bytes or bytes that are not UTF-8");
	}
	if (printable)
		nlen = policy_name_len(line, len);
	else
		for (nlen = 0;
		     nlen < len && policy_name_char((unsigned char)line[nlen]);
		     nlen++)
			;
	if (nlen == 0 || nlen == len || line[nlen] != '=') {
		/* Say what a reader looking for the first '=' would say. */
		if ((eq = memchr(line, '=', len)) == NULL || eq == line)
			return policy_fail(p, err, "expected name=value");
		return policy_fail(p, err, "bad attribute name");
	}
	eq = line + nlen;
	if (++p->req.nattrs > MK_POLICY_ATTRS_MAX)
		return policy_fail(p, err, "too many attributes");
	for (i = 0; i < POLICY_NATTRS; i++)
		if (policy_attrs[i].len == nlen &&
		    policy_attrs[i].name[0] == line[0] &&
		    memcmp(policy_attrs[i].name, line, nlen) == 0)
			return policy_keep(p, i, eq + 1, len - nlen - 1, err);
	return MK_POLICY_MORE;
}

/* The empty line: is the request complete and one we answer? */
static enum mk_policy_status
policy_end(struct mk_policy_parser *p, struct mk_err *err)
{
	if (p->req.request == NULL)
		return policy_fail(p, err, "end of request without request=");
	if (strcmp(p->req.request, "smtpd_access_policy") != 0)
		return policy_fail(p, err, "not request=smtpd_access_policy");
	p->done = true;
	return MK_POLICY_DONE;
}

/*
 * Lines are found with memchr and parsed where they lie in buf; only a
 * line split between two feeds is copied, into p->line.  The bounds are
 * checked per piece of a line, and an error names the byte at which a
 * byte-wise reader would have stopped (the request's bound first, then a
 * NUL, then the line's bound).
 */
enum mk_policy_status
mk_policy_parser_feed(struct mk_policy_parser *p, const void *buf, size_t len,
    size_t *used_r, struct mk_err *err)
{
	const char *s = buf;
	size_t off = 0;

	*used_r = 0;
	if (p->failed) {
		mk_err_set(err, "policy request after an error");
		return MK_POLICY_ERROR;
	}
	if (p->done)
		return MK_POLICY_DONE;
	while (off < len) {
		const char *start = s + off, *nl, *nul;
		size_t seg, take, bad = SIZE_MAX, llen;
		const char *why = NULL, *line;
		bool printable;

		nl = memchr(start, '\n', len - off);
		seg = nl != NULL ? (size_t)(nl - start) : len - off;
		take = seg + (nl != NULL);
		printable = policy_printable(start, seg);
		if (take > MK_POLICY_REQUEST_MAX - p->total) {
			bad = MK_POLICY_REQUEST_MAX - p->total;
			why = "request too long";
		}
		if (!printable && (nul = memchr(start, '\0', seg)) != NULL &&
		    (size_t)(nul - start) < bad) {
			bad = (size_t)(nul - start);
			why = "NUL byte";
		}
		if (seg > MK_POLICY_LINE_MAX - p->len &&
		    MK_POLICY_LINE_MAX - p->len < bad) {
			bad = MK_POLICY_LINE_MAX - p->len;
			why = "line too long";
		}
		if (why != NULL) {
			*used_r = off + bad + 1;
			return policy_fail(p, err, "%s", why);
		}
		p->total += take;
		off += take;
		*used_r = off;
		if (nl == NULL) {
			memcpy(p->line + p->len, start, seg);
			p->len += seg;
			break;
		}
		if (p->len == 0) {
			line = start;
			llen = seg;
		} else {
			memcpy(p->line + p->len, start, seg);
			line = p->line;
			llen = p->len + seg;
			printable = policy_printable(line, llen);
		}
		if (llen == 0 || (llen == 1 && line[0] == '\r'))
			return policy_end(p, err);
		if (policy_line(p, line, llen, printable, err) ==
		    MK_POLICY_ERROR)
			return MK_POLICY_ERROR;
		p->len = 0;
		p->lineno++;
	}
	return MK_POLICY_MORE;
}

const struct mk_policy_request *
mk_policy_parser_request(const struct mk_policy_parser *p)
{
	return p->done ? &p->req : NULL;
}

void
mk_policy_config_init(struct mk_policy_config *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->refusal = MK_POLICY_REFUSE_PERMANENT;
	conf->text = POLICY_DEFAULT_TEXT;
	conf->text_too_large = NULL;
	conf->delimiters = "+";
	conf->alias_policy = MK_ALIASES_ALL;
	conf->rules = NULL;
}

int
mk_policy_check_text(const char *text, struct mk_err *err)
{
	size_t len = strlen(text);

	if (len == 0 || len > MK_POLICY_TEXT_MAX)
		return mk_err_set(
		    err, "reply text: 1 to %d bytes", MK_POLICY_TEXT_MAX);
	if (!policy_text_valid((const unsigned char *)text, len) ||
	    strchr(text, '\t') != NULL)
		return mk_err_set(
		    err, "reply text: control characters or not UTF-8");
	return 0;
}

/* The context of one decision, for the alias expansion's callback. */
struct policy_ctx {
	mk_policy_lookup_cb *lookup;
	void *arg;
	struct mk_err lookup_err;
	bool failed;
};

/* Is address a local mailbox?  Remembers the first lookup failure. */
static int
policy_local_cb(void *arg, const char *address)
{
	struct policy_ctx *ctx = arg;
	struct mk_err err;
	int r;

	if (ctx->failed)
		return 0;
	r = ctx->lookup(ctx->arg, address, NULL, &err);
	if (r < 0) {
		ctx->failed = true;
		ctx->lookup_err = err;
		return 0;
	}
	return r;
}

static const char *
policy_domain_of(const char *address)
{
	const char *at = strrchr(address, '@');

	return at != NULL ? at + 1 : "";
}

/* What this recipient itself reserved on the targets of one domain. */
struct policy_own {
	const char *domain; /* NULL: not computed yet */
	uint64_t bytes;
	uint64_t messages;
};

/*
 * Fill the reservations of target t from resv: those of others on the
 * mailbox and on its domain, leaving out what this recipient reserved
 * on every target of that domain (kept in *own, computed once per
 * domain).
 */
static void
policy_reservations(const struct mk_quota_resv *resv,
    const struct mk_policy_decision *d, size_t t, struct policy_own *own,
    struct mk_policy_mailbox *mb)
{
	const char *domain = policy_domain_of(d->targets[t].address);
	uint64_t bytes, messages, mine;
	size_t i;

	if (resv == NULL)
		return;
	mk_quota_resv_get(resv, d->targets[t].address, d->txn, d->rcpt,
	    &mb->mailbox.resv_bytes, &mb->mailbox.resv_messages, NULL);
	if (!mb->has_pool)
		return;
	mk_quota_resv_get_domain(
	    resv, domain, &mb->pool.resv_bytes, &mb->pool.resv_messages);
	if (own->domain == NULL || strcmp(own->domain, domain) != 0) {
		own->domain = domain;
		own->bytes = own->messages = 0;
		for (i = 0; d->txn != NULL && i < d->ntargets; i++) {
			if (strcmp(policy_domain_of(d->targets[i].address),
				domain) != 0)
				continue;
			mk_quota_resv_get(resv, d->targets[i].address, d->txn,
			    d->rcpt, &bytes, &messages, &mine);
			if (mine == 0)
				continue;
			if (__builtin_add_overflow(
				own->bytes, mine, &own->bytes))
				own->bytes = UINT64_MAX;
			own->messages++;
		}
	}
	mb->pool.resv_bytes = mb->pool.resv_bytes > own->bytes
	    ? mb->pool.resv_bytes - own->bytes
	    : 0;
	mb->pool.resv_messages = mb->pool.resv_messages > own->messages
	    ? mb->pool.resv_messages - own->messages
	    : 0;
}

/* Check every target; returns -1 when a lookup failed. */
static int
policy_check_targets(const struct mk_policy_config *conf,
    const struct mk_quota_resv *resv, struct policy_ctx *ctx,
    struct mk_policy_decision *d, size_t *nfull_r, size_t *nknown_r,
    bool *all_too_large_r, struct mk_err *err)
{
	struct policy_own own = { NULL, 0, 0 };
	size_t t;

	*nfull_r = *nknown_r = 0;
	*all_too_large_r = true;
	for (t = 0; t < d->ntargets; t++) {
		struct mk_policy_target *pt = &d->targets[t];
		struct mk_policy_mailbox mb;
		int r;

		memset(&mb, 0, sizeof(mb));
		r = ctx->lookup(ctx->arg, pt->address, &mb, err);
		if (r < 0)
			return -1;
		pt->verdict.result = MK_QUOTA_OK;
		pt->usage_known = r == 1 && mb.usage_known;
		if (pt->usage_known) {
			(*nknown_r)++;
			policy_reservations(resv, d, t, &own, &mb);
			mk_quota_check(conf->rules, NULL, &mb.mailbox,
			    mb.has_pool ? &mb.pool : NULL, d->size,
			    &pt->verdict);
		}
		if (pt->verdict.result == MK_QUOTA_OK) {
			/* r is 0 when the mailbox went away meanwhile. */
			pt->reserve = r == 1 && d->txn != NULL;
			continue;
		}
		(*nfull_r)++;
		if (pt->verdict.result != MK_QUOTA_TOO_LARGE)
			*all_too_large_r = false;
	}
	return 0;
}

/* Copy the recipient and the reservation key into d; false: none. */
static bool
policy_recipient(
    const struct mk_policy_request *req, struct mk_policy_decision *d)
{
	const char *rcpt = req->recipient;
	size_t len;

	if (rcpt == NULL || (len = strlen(rcpt)) == 0 ||
	    (len == 2 && strcmp(rcpt, "<>") == 0))
		return false;
	if (len >= 2 && rcpt[0] == '<' && rcpt[len - 1] == '>')
		d->rcpt = mk_xstrndup(rcpt + 1, len - 2);
	else
		d->rcpt = mk_xstrdup(rcpt);
	mk_str_lower(d->rcpt);
	if (req->instance != NULL && req->instance[0] != '\0')
		d->txn = mk_xstrdup(req->instance);
	return true;
}

int
mk_policy_decide(const struct mk_policy_config *conf,
    const struct mk_policy_request *req, const struct mk_aliases *aliases,
    const struct mk_quota_resv *resv, mk_policy_lookup_cb *lookup, void *arg,
    struct mk_policy_decision *d_r, struct mk_err *err)
{
	struct policy_ctx ctx = { lookup, arg, { 0, "" }, false };
	struct mk_aliases_expansion exp;
	const char *state = req->protocol_state;
	size_t i, nfull, nknown;
	bool all_too_large;

	memset(d_r, 0, sizeof(*d_r));
	d_r->reason = MK_POLICY_STATE;
	d_r->size = req->size;
	if (state != NULL && strcasecmp(state, "RCPT") != 0 &&
	    (strcasecmp(state, "END-OF-MESSAGE") != 0 ||
		req->recipient_count != 1))
		return 0;
	d_r->reason = MK_POLICY_NO_RECIPIENT;
	if (!policy_recipient(req, d_r))
		return 0;
	if (mk_aliases_expand(aliases, d_r->rcpt,
		conf->delimiters != NULL ? conf->delimiters : "",
		policy_local_cb, &ctx, &exp, err) < 0) {
		d_r->reason = MK_POLICY_ALIAS_ERROR;
		return mk_err_prefix(err, "recipient %s", d_r->rcpt);
	}
	d_r->remote = exp.remote;
	d_r->ntargets = exp.ntargets;
	d_r->targets = mk_xcalloc(exp.ntargets, sizeof(*d_r->targets));
	for (i = 0; i < exp.ntargets; i++) {
		d_r->targets[i].address = exp.targets[i];
		exp.targets[i] = NULL;
	}
	mk_aliases_expansion_clear(&exp);
	if (ctx.failed) {
		if (err != NULL)
			*err = ctx.lookup_err;
		d_r->reason = MK_POLICY_LOOKUP_ERROR;
		return mk_err_prefix(err, "recipient %s", d_r->rcpt);
	}
	d_r->reason = MK_POLICY_NOT_LOCAL;
	if (d_r->ntargets == 0)
		return 0;
	if (policy_check_targets(conf, resv, &ctx, d_r, &nfull, &nknown,
		&all_too_large, err) < 0) {
		for (i = 0; i < d_r->ntargets; i++)
			d_r->targets[i].reserve = false;
		d_r->reason = MK_POLICY_LOOKUP_ERROR;
		return mk_err_prefix(err, "recipient %s", d_r->rcpt);
	}
	d_r->refuse = mk_aliases_refuse(
	    conf->alias_policy, d_r->ntargets, nfull, d_r->remote);
	if (d_r->refuse)
		d_r->reason =
		    all_too_large ? MK_POLICY_TOO_LARGE : MK_POLICY_FULL;
	else if (nfull > 0)
		d_r->reason = MK_POLICY_SOME_FULL;
	else
		d_r->reason =
		    nknown == 0 ? MK_POLICY_USAGE_UNKNOWN : MK_POLICY_FITS;
	for (i = 0; d_r->refuse && i < d_r->ntargets; i++)
		d_r->targets[i].reserve = false;
	return 0;
}

void
mk_policy_decision_clear(struct mk_policy_decision *d)
{
	size_t i;

	for (i = 0; i < d->ntargets; i++)
		free(d->targets[i].address);
	free(d->targets);
	free(d->txn);
	free(d->rcpt);
	memset(d, 0, sizeof(*d));
}

void
mk_policy_reserve(
    const struct mk_policy_decision *d, struct mk_quota_resv *resv, int64_t now)
{
	int64_t expires;
	size_t i;

	if (d->refuse || d->txn == NULL)
		return;
	if (__builtin_add_overflow(now, mk_quota_resv_ttl(resv), &expires))
		expires = INT64_MAX;
	for (i = 0; i < d->ntargets; i++)
		if (d->targets[i].reserve)
			mk_quota_resv_add(resv, d->txn, d->rcpt,
			    d->targets[i].address, d->size, expires);
}

size_t
mk_policy_format_reply(const struct mk_policy_config *conf,
    const struct mk_policy_decision *d, char *buf, size_t size)
{
	static const char dunno[] = "action=DUNNO\n\n";
	char text[MK_POLICY_TEXT_MAX + 1];
	const char *src = conf->text;
	size_t i;
	int n;

	/* Nine answers in ten: no snprintf. */
	if (!d->refuse) {
		if (size >= sizeof(dunno))
			memcpy(buf, dunno, sizeof(dunno));
		else if (size > 0)
			mk_strlcpy(buf, dunno, size);
		return sizeof(dunno) - 1;
	}
	if (d->reason == MK_POLICY_TOO_LARGE && conf->text_too_large != NULL)
		src = conf->text_too_large;
	mk_strlcpy(text, src, sizeof(text));
	/* A line break in the text would end the reply early. */
	for (i = 0; text[i] != '\0'; i++)
		if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
			text[i] = ' ';
	n = snprintf(buf, size, "action=%s %s\n\n",
	    conf->refusal == MK_POLICY_REFUSE_TEMPORARY ? "452 4.2.2"
							: "552 5.2.2",
	    text);
	return n < 0 ? 0 : (size_t)n;
}

const char *
mk_policy_reason_name(enum mk_policy_reason reason)
{
	switch (reason) {
	case MK_POLICY_STATE:
		return "state";
	case MK_POLICY_NO_RECIPIENT:
		return "no-recipient";
	case MK_POLICY_ALIAS_ERROR:
		return "alias-error";
	case MK_POLICY_LOOKUP_ERROR:
		return "lookup-error";
	case MK_POLICY_NOT_LOCAL:
		return "not-local";
	case MK_POLICY_USAGE_UNKNOWN:
		return "usage-unknown";
	case MK_POLICY_FITS:
		return "fits";
	case MK_POLICY_SOME_FULL:
		return "some-full";
	case MK_POLICY_FULL:
		return "full";
	case MK_POLICY_TOO_LARGE:
		return "too-large";
	}
	return "unknown";
}
