#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/policy.h"

#define MIB (1024ULL * 1024)

/* The request Postfix 3.7 sent in the observed run, attribute for
 * attribute. */
static const char observed[] = "request=smtpd_access_policy\n"
			       "protocol_state=RCPT\n"
			       "protocol_name=ESMTP\n"
			       "client_address=127.0.0.1\n"
			       "client_name=unknown\n"
			       "client_port=43514\n"
			       "reverse_client_name=unknown\n"
			       "server_address=127.0.0.1\n"
			       "server_port=2525\n"
			       "helo_name=mailenv.test\n"
			       "sender=alice@example.net\n"
			       "recipient=hercules.ikarus@hosteurope.de\n"
			       "recipient_count=0\n"
			       "instance=2c59.6b0822f0.ef3d2.0\n"
			       "size=0\n"
			       "encryption_keysize=0\n"
			       "\n";

/* Feed all of text in chunks of at most chunk bytes (0: at once);
 * returns the status of the first request and how much it used. */
static enum mk_policy_status
feed(struct mk_policy_parser *p, const char *text, size_t len, size_t chunk,
    size_t *used_r, struct mk_err *err)
{
	enum mk_policy_status st = MK_POLICY_MORE;
	size_t off = 0, used;

	if (chunk == 0)
		chunk = len;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk;

		st = mk_policy_parser_feed(p, text + off, n, &used, err);
		off += used;
		if (st != MK_POLICY_MORE)
			break;
		assert_int_equal(used, n);
	}
	*used_r = off;
	return st;
}

static void
test_policy_parse_observed_request(void **state)
{
	struct mk_policy_parser *p = mk_policy_parser_new();
	const struct mk_policy_request *req;
	struct mk_err err;
	size_t used;

	(void)state;
	assert_null(mk_policy_parser_request(p));
	assert_int_equal(feed(p, observed, strlen(observed), 0, &used, &err),
	    MK_POLICY_DONE);
	assert_int_equal(used, strlen(observed));
	req = mk_policy_parser_request(p);
	assert_non_null(req);
	assert_string_equal(req->request, "smtpd_access_policy");
	assert_string_equal(req->protocol_state, "RCPT");
	assert_string_equal(req->protocol_name, "ESMTP");
	assert_string_equal(req->recipient, "hercules.ikarus@hosteurope.de");
	assert_string_equal(req->sender, "alice@example.net");
	assert_string_equal(req->instance, "2c59.6b0822f0.ef3d2.0");
	assert_string_equal(req->client_address, "127.0.0.1");
	assert_true(req->size == 0);
	assert_true(req->recipient_count == 0);
	assert_int_equal(req->nattrs, 16);
	/* Done stays done until reset. */
	assert_int_equal(
	    mk_policy_parser_feed(p, "x", 1, &used, &err), MK_POLICY_DONE);
	assert_int_equal(used, 0);
	mk_policy_parser_reset(p);
	assert_null(mk_policy_parser_request(p));
	mk_policy_parser_free(&p);
	assert_null(p);
}

/* Any split of the bytes gives the same request. */
static void
test_policy_parse_in_pieces(void **state)
{
	size_t chunk;

	(void)state;
	for (chunk = 1; chunk < 40; chunk++) {
		struct mk_policy_parser *p = mk_policy_parser_new();
		const struct mk_policy_request *req;
		struct mk_err err;
		size_t used;

		assert_int_equal(
		    feed(p, observed, strlen(observed), chunk, &used, &err),
		    MK_POLICY_DONE);
		req = mk_policy_parser_request(p);
		assert_string_equal(
		    req->recipient, "hercules.ikarus@hosteurope.de");
		assert_string_equal(req->instance, "2c59.6b0822f0.ef3d2.0");
		mk_policy_parser_free(&p);
	}
}

/* Two requests in one read: the first uses only its own bytes. */
static void
test_policy_parse_pipelined(void **state)
{
	static const char two[] = "request=smtpd_access_policy\n"
				  "recipient=a@x\n"
				  "size=10\n"
				  "\n"
				  "request=smtpd_access_policy\r\n"
				  "recipient=b@x\r\n"
				  "size=\r\n"
				  "\r\n";
	struct mk_policy_parser *p = mk_policy_parser_new();
	const struct mk_policy_request *req;
	struct mk_err err;
	size_t used, first;

	(void)state;
	assert_int_equal(
	    mk_policy_parser_feed(p, two, strlen(two), &used, &err),
	    MK_POLICY_DONE);
	first = used;
	req = mk_policy_parser_request(p);
	assert_string_equal(req->recipient, "a@x");
	assert_true(req->size == 10);
	assert_null(req->protocol_state);
	mk_policy_parser_reset(p);
	assert_int_equal(mk_policy_parser_feed(
			     p, two + first, strlen(two) - first, &used, &err),
	    MK_POLICY_DONE);
	assert_int_equal(first + used, strlen(two));
	req = mk_policy_parser_request(p);
	assert_string_equal(req->recipient, "b@x");
	assert_true(req->size == 0);
	mk_policy_parser_free(&p);
}

/* Parse text; returns the status and leaves the message in err. */
static enum mk_policy_status
parse_text(const char *text, size_t len, struct mk_err *err)
{
	struct mk_policy_parser *p = mk_policy_parser_new();
	enum mk_policy_status st;
	size_t used;

	st = mk_policy_parser_feed(p, text, len, &used, err);
	mk_policy_parser_free(&p);
	return st;
}

/*
 * Every printable byte at every place of a name of 1 to 20 bytes: only
 * letters, digits, '_' and '-' pass (the parser tests names eight bytes
 * at a time; this holds it to the rule byte by byte).
 */
static void
test_policy_parse_name_bytes(void **state)
{
	char text[128], name[21];
	struct mk_err err;
	size_t nlen, at, len;
	int c;

	(void)state;
	for (nlen = 1; nlen <= 20; nlen++)
		for (at = 0; at < nlen; at++)
			for (c = 0x20; c < 0x7f; c++) {
				bool ok = isalnum(c) || c == '_' || c == '-';
				enum mk_policy_status st;

				memset(name, 'n', nlen);
				name[nlen] = '\0';
				name[at] = (char)c;
				len = (size_t)snprintf(text, sizeof(text),
				    "request=smtpd_access_policy\n%s=v\n\n",
				    name);
				st = parse_text(text, len, &err);
				/* '=' after the first byte ends the name. */
				if (c == '=' && at > 0)
					ok = true;
				if (ok != (st == MK_POLICY_DONE))
					fail_msg("name '%s': %s", name,
					    ok ? err.msg : "accepted");
				if (!ok)
					assert_non_null(strstr(err.msg,
					    c == '=' ? "expected name=value"
						     : "bad attribute name"));
			}
}

/*
 * A request of n lines "aN=<fill>" after request=, each of width bytes
 * without its LF (the first extra bytes more), then the empty line.
 */
static char *
make_request(size_t n, size_t width, size_t extra, size_t *len_r)
{
	static const char head[] = "request=smtpd_access_policy\n";
	size_t cap = sizeof(head) + n * (width + 1) + extra + 2, len, i;
	char *s = malloc(cap);

	assert_non_null(s);
	memcpy(s, head, sizeof(head) - 1);
	len = sizeof(head) - 1;
	for (i = 0; i < n; i++) {
		size_t w = width + (i == 0 ? extra : 0);
		int k = snprintf(s + len, cap - len, "a%zu=", i);

		memset(s + len + k, 'v', w - (size_t)k);
		len += w;
		s[len++] = '\n';
	}
	s[len++] = '\n';
	s[len] = '\0';
	*len_r = len;
	return s;
}

static void
test_policy_parse_bounds(void **state)
{
	struct mk_err err;
	size_t len;
	char *s;

	(void)state;
	/* The longest line, and one byte more. */
	s = make_request(1, MK_POLICY_LINE_MAX, 0, &len);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_DONE);
	free(s);
	s = make_request(1, MK_POLICY_LINE_MAX, 1, &len);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_ERROR);
	assert_string_equal(err.msg, "policy request, line 2: line too long");
	free(s);
	/* The most attributes (request= is one of them), and one more. */
	s = make_request(MK_POLICY_ATTRS_MAX - 1, 10, 0, &len);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_DONE);
	free(s);
	s = make_request(MK_POLICY_ATTRS_MAX, 10, 0, &len);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_ERROR);
	assert_string_equal(
	    err.msg, "policy request, line 65: too many attributes");
	free(s);
	/* The longest request, 28 + 21 * (1558 + 1) + 1 bytes; one more. */
	s = make_request(21, 1558, 0, &len);
	assert_int_equal(len, MK_POLICY_REQUEST_MAX);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_DONE);
	free(s);
	s = make_request(21, 1558, 1, &len);
	assert_int_equal(parse_text(s, len, &err), MK_POLICY_ERROR);
	assert_string_equal(
	    err.msg, "policy request, line 23: request too long");
	free(s);
}

struct bad_case {
	const char *text;
	size_t len; /* 0: strlen */
	const char *want;
};

static const struct bad_case bad_cases[] = {
	{ "\n", 0, "line 1: end of request without request=" },
	{ "recipient=a@x\n\n", 0, "line 2: end of request without request=" },
	{ "request=junk\n\n", 0, "line 2: not request=smtpd_access_policy" },
	{ "request=smtpd_access_policy\nrecipient\n\n", 0,
	    "line 2: expected name=value" },
	{ "request=smtpd_access_policy\n=x\n\n", 0,
	    "line 2: expected name=value" },
	{ "request=smtpd_access_policy\nre cipient=x\n\n", 0,
	    "line 2: bad attribute name" },
	{ "request=smtpd_access_policy\nrecipient=a\0b\n\n", 43,
	    "line 2: NUL byte" },
	{ "request=smtpd_access_policy\nsender=a\x01"
	  "b\n\n",
	    0, "line 2: control bytes" },
	{ "request=smtpd_access_policy\nsender=a\rb\n\n", 0,
	    "line 2: control bytes" },
	/* Inside a word of eight, for the word-at-a-time check. */
	{ "request=smtpd_access_policy\nsender=abcdefghijklmno\x7fpqrs\n\n", 0,
	    "line 2: control bytes" },
	{ "request=smtpd_access_policy\nsender=abcdefghij\x1fklmnopqr\n\n", 0,
	    "line 2: control bytes" },
	{ "request=smtpd_access_policy\nsender=abcdefghijklmnopqrstuv\0w\n\n",
	    61, "line 2: NUL byte" },
	{ "request=smtpd_access_policy\nsender=\xff\n\n", 0,
	    "line 2: control bytes or bytes that are not UTF-8" },
	{ "request=smtpd_access_policy\nsender=\xe2\x82\n\n", 0, "not UTF-8" },
	{ "request=smtpd_access_policy\nsender=\xf4\x90\x80\x80\n\n", 0,
	    "not UTF-8" },
	{ "request=smtpd_access_policy\nrecipient=a@x\nrecipient=b@x\n\n", 0,
	    "line 3: recipient given twice" },
	{ "request=smtpd_access_policy\nrequest=smtpd_access_policy\n\n", 0,
	    "line 2: request given twice" },
	{ "request=smtpd_access_policy\nsize=12a\n\n", 0,
	    "line 2: size: not a number" },
	{ "request=smtpd_access_policy\nsize=-1\n\n", 0,
	    "line 2: size: not a number" },
	{ "request=smtpd_access_policy\nrecipient_count="
	  "18446744073709551616\n\n",
	    0, "line 2: recipient_count: not a number" },
};

static void
test_policy_parse_errors(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
		const struct bad_case *c = &bad_cases[i];
		struct mk_err err;

		assert_int_equal(
		    parse_text(
			c->text, c->len != 0 ? c->len : strlen(c->text), &err),
		    MK_POLICY_ERROR);
		print_message("%s\n", err.msg);
		assert_non_null(strstr(err.msg, c->want));
	}
}

static void
test_policy_parse_accepts(void **state)
{
	static const char text[] = "request=smtpd_access_policy\n"
				   "x_new=1\n"
				   "x_new=2\n"
				   "sender=j\xc3\xbcrgen@b\xc3\xbc"
				   "cher.example\n"
				   "helo_name=tab\there\n"
				   "size=18446744073709551615\n"
				   "recipient_count=\n"
				   "recipient=\n"
				   "\n";
	struct mk_policy_parser *p = mk_policy_parser_new();
	const struct mk_policy_request *req;
	struct mk_err err;
	size_t used;

	(void)state;
	assert_int_equal(
	    mk_policy_parser_feed(p, text, strlen(text), &used, &err),
	    MK_POLICY_DONE);
	req = mk_policy_parser_request(p);
	assert_string_equal(req->sender,
	    "j\xc3\xbcrgen@b\xc3\xbc"
	    "cher.example");
	assert_true(req->size == UINT64_MAX);
	assert_true(req->recipient_count == 0);
	assert_string_equal(req->recipient, "");
	assert_int_equal(req->nattrs, 8);
	mk_policy_parser_free(&p);
}

/* After an error the parser is failed for good: close the connection. */
static void
test_policy_parse_error_is_final(void **state)
{
	struct mk_policy_parser *p = mk_policy_parser_new();
	struct mk_err err;
	size_t used;

	(void)state;
	assert_int_equal(
	    mk_policy_parser_feed(p, "bad line\nmore", 13, &used, &err),
	    MK_POLICY_ERROR);
	assert_int_equal(used, 9);
	mk_policy_parser_reset(p);
	assert_int_equal(
	    mk_policy_parser_feed(p, observed, strlen(observed), &used, &err),
	    MK_POLICY_ERROR);
	assert_int_equal(used, 0);
	assert_null(mk_policy_parser_request(p));
	mk_policy_parser_free(&p);
}

/*
 * Every seed of the fuzz corpus: ok-* files hold complete requests,
 * more-* end inside one, bad-* fail.  Fed whole, byte by byte and in
 * odd pieces, each gives the same statuses.  Files with other names
 * (added by the fuzzer) just must not crash.
 */
static void
replay(const char *data, size_t len, size_t chunk, char *log, size_t size)
{
	struct mk_policy_parser *p = mk_policy_parser_new();
	size_t off = 0, n = 0;

	log[0] = '\0';
	while (off < len) {
		struct mk_err err;
		enum mk_policy_status st;
		size_t used;

		st = feed(p, data + off, len - off, chunk, &used, &err);
		off += used;
		n += (size_t)snprintf(log + n, size - n, "%c",
		    st == MK_POLICY_DONE ? 'D'
					 : (st == MK_POLICY_MORE ? 'M' : 'E'));
		if (st != MK_POLICY_DONE)
			break;
		assert_non_null(mk_policy_parser_request(p));
		mk_policy_parser_reset(p);
	}
	mk_policy_parser_free(&p);
}

static void
test_policy_corpus_replay(void **state)
{
	static const size_t chunks[] = { 0, 1, 7, 4096 };
	const char *dir = MK_FUZZ_CORPUS_DIR "/policy";
	size_t nok = 0, nmore = 0, nbad = 0;
	struct dirent *de;
	DIR *d;

	(void)state;
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[4096], log0[64], log[64], *data;
		const char *name = de->d_name;
		struct mk_err err;
		size_t len, i;

		if (name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, name);
		if (mk_fs_read_file(path, 1 << 20, &data, &len, &err) < 0)
			fail_msg("%s", err.msg);
		replay(data, len, chunks[0], log0, sizeof(log0));
		print_message("%s: %s\n", name, log0);
		for (i = 1; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
			replay(data, len, chunks[i], log, sizeof(log));
			assert_string_equal(log, log0);
		}
		free(data);
		if (strncmp(name, "ok-", 3) == 0) {
			assert_true(strspn(log0, "D") == strlen(log0));
			nok++;
		} else if (strncmp(name, "more-", 5) == 0) {
			assert_string_equal(log0 + strspn(log0, "D"), "M");
			nmore++;
		} else if (strncmp(name, "bad-", 4) == 0) {
			assert_string_equal(log0 + strspn(log0, "D"), "E");
			nbad++;
		}
	}
	closedir(d);
	assert_true(nok >= 10 && nmore >= 2 && nbad >= 10);
}

/* The mailboxes the tests know. */
struct fake_mailbox {
	const char *address;
	bool usage_known;
	uint64_t bytes, limit;
	uint64_t messages, mlimit;
	uint64_t pool_bytes, pool_limit; /* pool_limit 0: no pool */
};

static const struct fake_mailbox fake_mailboxes[] = {
	/* As in the observed run: 10 MiB, one over after the grace. */
	{ "otto.friedrich@hosteurope.de", true, 10496850, 10 * MIB, 30, 0, 0,
	    0 },
	{ "hercules.ikarus@hosteurope.de", true, 352 * 1024, 10 * MIB, 20, 0, 0,
	    0 },
	{ "scanning@hosteurope.de", false, 0, 0, 0, 0, 0, 0 },
	{ "counted@hosteurope.de", true, 0, 0, 100, 100, 0, 0 },
	{ "a@pool.example", true, 100, 10000, 0, 0, 900, 1000 },
	{ "b@pool.example", true, 100, 10000, 0, 0, 900, 1000 },
	{ "c@pool2.example", true, 100, 10000, 0, 0, 900, 1000 },
	{ "nearly@x.example", true, 990, 1000, 0, 0, 0, 0 },
	{ "broken@x.example", true, 0, 0, 0, 0, 0, 0 },
};

static const struct fake_mailbox *
fake_find(const char *address)
{
	size_t i;

	for (i = 0; i < sizeof(fake_mailboxes) / sizeof(fake_mailboxes[0]); i++)
		if (strcmp(fake_mailboxes[i].address, address) == 0)
			return &fake_mailboxes[i];
	return NULL;
}

static int
fake_lookup(void *arg, const char *address, struct mk_policy_mailbox *mb_r,
    struct mk_err *err)
{
	const struct fake_mailbox *f = fake_find(address);
	unsigned *calls = arg;

	(*calls)++;
	if (f == NULL)
		return 0;
	if (strcmp(address, "broken@x.example") == 0)
		return mk_err_set(err, "catalog unavailable");
	if (mb_r == NULL)
		return 1;
	memset(mb_r, 0, sizeof(*mb_r));
	mb_r->usage_known = f->usage_known;
	mb_r->mailbox.bytes = f->bytes;
	mb_r->mailbox.limits.bytes = f->limit;
	mb_r->mailbox.messages = f->messages;
	mb_r->mailbox.limits.messages = f->mlimit;
	mb_r->has_pool = f->pool_limit != 0;
	mb_r->pool.bytes = f->pool_bytes;
	mb_r->pool.limits.bytes = f->pool_limit;
	return 1;
}

static struct mk_aliases *test_aliases;

static int
policy_setup(void **state)
{
	static const char text[] =
	    "team@hosteurope.de otto.friedrich@hosteurope.de, "
	    "hercules.ikarus@hosteurope.de\n"
	    "fwd@hosteurope.de otto.friedrich@hosteurope.de, "
	    "someone@example.com\n"
	    "full@hosteurope.de otto.friedrich@hosteurope.de\n"
	    "loop@hosteurope.de loop2@hosteurope.de\n"
	    "loop2@hosteurope.de loop@hosteurope.de\n"
	    "both@pool.example a@pool.example b@pool.example\n"
	    "split@pool.example a@pool.example b@pool.example "
	    "c@pool2.example\n"
	    "oops@hosteurope.de broken@x.example\n";
	struct mk_err err;

	(void)state;
	if (mk_aliases_parse(
		"virtual", text, strlen(text), &test_aliases, NULL, &err) < 0)
		fail_msg("%s", err.msg);
	return 0;
}

static int
policy_teardown(void **state)
{
	(void)state;
	mk_aliases_free(&test_aliases);
	return 0;
}

/* A request for the decision tests. */
static struct mk_policy_request
request(const char *proto_state, const char *rcpt, uint64_t size,
    uint64_t rcpt_count, const char *instance)
{
	struct mk_policy_request req;

	memset(&req, 0, sizeof(req));
	req.request = "smtpd_access_policy";
	req.protocol_state = proto_state;
	req.recipient = rcpt;
	req.size = size;
	req.recipient_count = rcpt_count;
	req.instance = instance;
	return req;
}

/* Decide and format; returns the reply, the reason in *reason_r. */
static const char *
decide(const struct mk_policy_config *conf, const struct mk_policy_request *req,
    const struct mk_quota_resv *resv, enum mk_policy_reason *reason_r,
    int *rc_r)
{
	static char reply[MK_POLICY_REPLY_MAX];
	struct mk_policy_decision d;
	unsigned calls = 0;
	struct mk_err err;
	int rc;

	rc = mk_policy_decide(
	    conf, req, test_aliases, resv, fake_lookup, &calls, &d, &err);
	if (rc_r != NULL)
		*rc_r = rc;
	*reason_r = d.reason;
	mk_policy_format_reply(conf, &d, reply, sizeof(reply));
	mk_policy_decision_clear(&d);
	return reply;
}

struct decide_case {
	const char *state;
	const char *rcpt;
	uint64_t size, rcpt_count;
	enum mk_aliases_policy alias_policy;
	const char *reply;
	enum mk_policy_reason reason;
	int rc;
};

#define REFUSED "action=552 5.2.2 Mailbox is full\n\n"
#define DUNNO "action=DUNNO\n\n"

static const struct decide_case decide_cases[] = {
	/* What Dovecot's quota-status answered in the observed run. */
	{ "RCPT", "otto.friedrich@hosteurope.de", 0, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "RCPT", "hercules.ikarus@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_FITS, 0 },
	{ "RCPT", "hercules.ikarus@hosteurope.de", 20000000, 0, MK_ALIASES_ALL,
	    REFUSED, MK_POLICY_TOO_LARGE, 0 },
	{ "RCPT", "nobody@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_NOT_LOCAL, 0 },
	/* States. */
	{ NULL, "otto.friedrich@hosteurope.de", 0, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "rcpt", "otto.friedrich@hosteurope.de", 0, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "DATA", "otto.friedrich@hosteurope.de", 0, 1, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_STATE, 0 },
	{ "MAIL", NULL, 0, 0, MK_ALIASES_ALL, DUNNO, MK_POLICY_STATE, 0 },
	{ "END-OF-MESSAGE", "hercules.ikarus@hosteurope.de", 11 * MIB, 1,
	    MK_ALIASES_ALL, REFUSED, MK_POLICY_TOO_LARGE, 0 },
	{ "END-OF-MESSAGE", "hercules.ikarus@hosteurope.de", 6398, 1,
	    MK_ALIASES_ALL, DUNNO, MK_POLICY_FITS, 0 },
	{ "END-OF-MESSAGE", "", 11 * MIB, 3, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_STATE, 0 },
	{ "END-OF-MESSAGE", "", 11 * MIB, 1, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_NO_RECIPIENT, 0 },
	{ "RCPT", "", 0, 0, MK_ALIASES_ALL, DUNNO, MK_POLICY_NO_RECIPIENT, 0 },
	{ "RCPT", "<>", 0, 0, MK_ALIASES_ALL, DUNNO, MK_POLICY_NO_RECIPIENT,
	    0 },
	{ "RCPT", NULL, 0, 0, MK_ALIASES_ALL, DUNNO, MK_POLICY_NO_RECIPIENT,
	    0 },
	/* Address forms. */
	{ "RCPT", "otto.friedrich+lists@hosteurope.de", 0, 0, MK_ALIASES_ALL,
	    REFUSED, MK_POLICY_FULL, 0 },
	{ "RCPT", "<Otto.Friedrich@HostEurope.DE>", 0, 0, MK_ALIASES_ALL,
	    REFUSED, MK_POLICY_FULL, 0 },
	/* Usage not known, message count, lookup failures: fail open. */
	{ "RCPT", "scanning@hosteurope.de", UINT64_MAX, 0, MK_ALIASES_ALL,
	    DUNNO, MK_POLICY_USAGE_UNKNOWN, 0 },
	{ "RCPT", "counted@hosteurope.de", 1, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "RCPT", "broken@x.example", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_LOOKUP_ERROR, -1 },
	{ "RCPT", "oops@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_LOOKUP_ERROR, -1 },
	/* Aliases: one full target among fine ones, and remote targets. */
	{ "RCPT", "full@hosteurope.de", 0, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "RCPT", "team@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_SOME_FULL, 0 },
	{ "RCPT", "team@hosteurope.de", 0, 0, MK_ALIASES_ANY, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "RCPT", "fwd@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_SOME_FULL, 0 },
	{ "RCPT", "fwd@hosteurope.de", 0, 0, MK_ALIASES_ANY, REFUSED,
	    MK_POLICY_FULL, 0 },
	{ "RCPT", "loop@hosteurope.de", 0, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_ALIAS_ERROR, -1 },
	/* The domain pool: each mailbox far below its own cap. */
	{ "RCPT", "a@pool.example", 100, 0, MK_ALIASES_ALL, DUNNO,
	    MK_POLICY_FITS, 0 },
	{ "RCPT", "a@pool.example", 201, 0, MK_ALIASES_ALL, REFUSED,
	    MK_POLICY_FULL, 0 },
};

static void
test_policy_decide_table(void **state)
{
	struct mk_policy_config conf;
	size_t i;

	(void)state;
	mk_policy_config_init(&conf);
	for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
		const struct decide_case *c = &decide_cases[i];
		struct mk_policy_request req =
		    request(c->state, c->rcpt, c->size, c->rcpt_count, "i.1");
		enum mk_policy_reason reason;
		int rc;

		print_message("%s %s size %llu\n", c->state ? c->state : "-",
		    c->rcpt ? c->rcpt : "-", (unsigned long long)c->size);
		conf.alias_policy = c->alias_policy;
		assert_string_equal(
		    decide(&conf, &req, NULL, &reason, &rc), c->reply);
		assert_string_equal(mk_policy_reason_name(reason),
		    mk_policy_reason_name(c->reason));
		assert_int_equal(rc, c->rc);
	}
}

/* Out of state, no lookup happens at all. */
static void
test_policy_decide_other_states_look_nothing_up(void **state)
{
	static const char *const states[] = { "CONNECT", "EHLO", "HELO", "MAIL",
		"DATA", "VRFY", "ETRN", NULL };
	struct mk_policy_config conf;
	const char *const *s;

	(void)state;
	mk_policy_config_init(&conf);
	for (s = states; *s != NULL; s++) {
		struct mk_policy_request req =
		    request(*s, "otto.friedrich@hosteurope.de", 0, 1, NULL);
		struct mk_policy_decision d;
		unsigned calls = 0;
		struct mk_err err;

		assert_int_equal(mk_policy_decide(&conf, &req, test_aliases,
				     NULL, fake_lookup, &calls, &d, &err),
		    0);
		assert_false(d.refuse);
		assert_int_equal(calls, 0);
		mk_policy_decision_clear(&d);
	}
}

static void
test_policy_reply_variants(void **state)
{
	struct mk_policy_request req =
	    request("RCPT", "hercules.ikarus@hosteurope.de", 20000000, 0, NULL);
	struct mk_policy_decision d;
	struct mk_policy_config conf;
	enum mk_policy_reason reason;
	char buf[MK_POLICY_REPLY_MAX];

	(void)state;
	mk_policy_config_init(&conf);
	conf.refusal = MK_POLICY_REFUSE_TEMPORARY;
	assert_string_equal(decide(&conf, &req, NULL, &reason, NULL),
	    "action=452 4.2.2 Mailbox is full\n\n");
	conf.text_too_large = "Message is larger than the mailbox";
	assert_string_equal(decide(&conf, &req, NULL, &reason, NULL),
	    "action=452 4.2.2 Message is larger than the mailbox\n\n");
	req.recipient = "otto.friedrich@hosteurope.de";
	req.size = 0;
	conf.refusal = MK_POLICY_REFUSE_PERMANENT;
	conf.text = "Quota\r\nexceeded";
	assert_string_equal(decide(&conf, &req, NULL, &reason, NULL),
	    "action=552 5.2.2 Quota  exceeded\n\n");
	/* A short buffer: truncated, and the length says so. */
	memset(&d, 0, sizeof(d));
	assert_int_equal(mk_policy_format_reply(&conf, &d, buf, 5), 14);
	assert_string_equal(buf, "acti");
	d.refuse = true;
	d.reason = MK_POLICY_FULL;
	assert_int_equal(
	    mk_policy_format_reply(&conf, &d, buf, sizeof(buf)), 34);
}

static void
test_policy_check_text(void **state)
{
	char longtext[MK_POLICY_TEXT_MAX + 2];
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_policy_check_text("Mailbox is full", &err), 0);
	assert_int_equal(mk_policy_check_text("Postfach voll \xe2\x80\x93 "
					      "bitte aufr\xc3\xa4umen",
			     &err),
	    0);
	assert_int_equal(mk_policy_check_text("", &err), -1);
	assert_int_equal(mk_policy_check_text("a\nb", &err), -1);
	assert_int_equal(mk_policy_check_text("a\tb", &err), -1);
	assert_int_equal(mk_policy_check_text("\xc3", &err), -1);
	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	assert_int_equal(mk_policy_check_text(longtext, &err), -1);
	longtext[MK_POLICY_TEXT_MAX] = '\0';
	assert_int_equal(mk_policy_check_text(longtext, &err), 0);
}

/* Decide, reserve when let through, and say whether it was refused. */
static bool
deliver(const struct mk_policy_config *conf, struct mk_quota_resv *resv,
    const char *proto_state, const char *rcpt, uint64_t size,
    const char *instance, int64_t now)
{
	struct mk_policy_request req = request(proto_state, rcpt, size,
	    strcmp(proto_state, "RCPT") == 0 ? 0 : 1, instance);
	struct mk_policy_decision d;
	unsigned calls = 0;
	struct mk_err err;
	bool refused;

	assert_int_equal(mk_policy_decide(conf, &req, test_aliases, resv,
			     fake_lookup, &calls, &d, &err),
	    0);
	refused = d.refuse;
	mk_policy_reserve(&d, resv, now);
	mk_policy_decision_clear(&d);
	return refused;
}

/* A 99% full mailbox does not take many messages at once. */
static void
test_policy_reservations_limit_concurrent_messages(void **state)
{
	struct mk_quota_resv *resv = mk_quota_resv_new();
	struct mk_policy_config conf;

	(void)state;
	mk_policy_config_init(&conf);
	/* 990 of 1000 with 100 of grace. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i1", 0));
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i2", 0));
	assert_true(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i3", 0));
	assert_int_equal(mk_quota_resv_count(resv), 2);
	/* The same RCPT again replaces its own reservation. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i2", 0));
	assert_int_equal(mk_quota_resv_count(resv), 2);
	/* END-OF-MESSAGE does not count its own RCPT reservation... */
	assert_false(deliver(
	    &conf, resv, "END-OF-MESSAGE", "nearly@x.example", 50, "i1", 0));
	assert_int_equal(mk_quota_resv_count(resv), 2);
	/* ...and corrects it to the real size: 990 + 50 + 5. */
	assert_true(deliver(
	    &conf, resv, "END-OF-MESSAGE", "nearly@x.example", 60, "i2", 0));
	/* Deliveries seen release the reservations. */
	assert_true(mk_quota_resv_release(resv, "nearly@x.example"));
	assert_true(mk_quota_resv_release(resv, "nearly@x.example"));
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i4", 0));
	/* Or they expire. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i5", 0));
	assert_true(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i6", 10));
	assert_int_equal(mk_quota_resv_expire(resv, MK_QUOTA_RESV_TTL - 1), 0);
	assert_int_equal(mk_quota_resv_expire(resv, MK_QUOTA_RESV_TTL), 2);
	assert_false(deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i6",
	    MK_QUOTA_RESV_TTL));
	/* Without an instance nothing is reserved. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, NULL, 0));
	assert_int_equal(mk_quota_resv_count(resv), 1);
	/* A refusal reserves nothing. */
	assert_true(deliver(
	    &conf, resv, "RCPT", "otto.friedrich@hosteurope.de", 5, "i7", 0));
	assert_int_equal(mk_quota_resv_count(resv), 1);
	mk_quota_resv_free(&resv);
}

/* The configured time to live, not the default, sets the expiry. */
static void
test_policy_reservations_configured_ttl(void **state)
{
	struct mk_quota_resv *resv = mk_quota_resv_new();
	struct mk_quota_resv_stats st;
	struct mk_policy_config conf;

	(void)state;
	mk_policy_config_init(&conf);
	mk_quota_resv_configure(resv, 60, 100);
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i1", 1000));
	assert_false(
	    deliver(&conf, resv, "RCPT", "nearly@x.example", 5, "i2", 1030));
	assert_int_equal(mk_quota_resv_count(resv), 2);
	assert_int_equal(mk_quota_resv_expire(resv, 1059), 0);
	assert_int_equal(mk_quota_resv_expire(resv, 1060), 1);
	assert_int_equal(mk_quota_resv_expire(resv, 1089), 0);
	assert_int_equal(mk_quota_resv_expire(resv, 1090), 1);
	mk_quota_resv_stats(resv, &st);
	assert_true(st.expired == 2 && st.released == 0 && st.capped == 0);
	mk_quota_resv_free(&resv);
}

/*
 * An alias to two mailboxes of a pool reserves on both; END-OF-MESSAGE
 * leaves both of its own reservations out of the pool.
 */
static void
test_policy_reservations_pool_alias(void **state)
{
	struct mk_quota_resv *resv = mk_quota_resv_new();
	struct mk_quota_rules *rules = mk_quota_rules_new();
	struct mk_policy_config conf;
	uint64_t bytes, messages;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_quota_rules_set_grace(rules, "0", &err), 0);
	mk_policy_config_init(&conf);
	conf.rules = rules;
	/* The pool holds 900 of 1000. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "both@pool.example", 40, "i1", 0));
	mk_quota_resv_get_domain(resv, "pool.example", &bytes, &messages);
	assert_true(bytes == 80 && messages == 2);
	assert_false(deliver(
	    &conf, resv, "END-OF-MESSAGE", "both@pool.example", 45, "i1", 0));
	mk_quota_resv_get_domain(resv, "pool.example", &bytes, &messages);
	assert_true(bytes == 90 && messages == 2);
	/* Another message for the pool now finds 990 taken. */
	assert_false(
	    deliver(&conf, resv, "RCPT", "a@pool.example", 10, "i2", 0));
	assert_true(deliver(&conf, resv, "RCPT", "b@pool.example", 1, "i3", 0));
	mk_quota_rules_free(&rules);
	mk_quota_resv_free(&resv);
}

/* Each pool leaves out only what the recipient reserved in it. */
static void
test_policy_reservations_two_pools(void **state)
{
	struct mk_quota_resv *resv = mk_quota_resv_new();
	struct mk_quota_rules *rules = mk_quota_rules_new();
	struct mk_policy_config conf;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_quota_rules_set_grace(rules, "0", &err), 0);
	mk_policy_config_init(&conf);
	conf.rules = rules;
	conf.alias_policy = MK_ALIASES_ANY;
	/* pool2 holds 900 of 1000, and 60 more are on their way. */
	mk_quota_resv_add(
	    resv, "other", "c@pool2.example", "c@pool2.example", 60, 1000);
	assert_false(
	    deliver(&conf, resv, "RCPT", "split@pool.example", 40, "i1", 0));
	assert_int_equal(mk_quota_resv_count(resv), 4);
	/* Own: 80 in pool.example, 40 in pool2: 900 + 60 + 40 fits. */
	assert_false(deliver(
	    &conf, resv, "END-OF-MESSAGE", "split@pool.example", 40, "i1", 0));
	assert_true(deliver(
	    &conf, resv, "END-OF-MESSAGE", "split@pool.example", 41, "i1", 0));
	mk_quota_rules_free(&rules);
	mk_quota_resv_free(&resv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_parse_observed_request),
		cmocka_unit_test(test_policy_parse_in_pieces),
		cmocka_unit_test(test_policy_parse_pipelined),
		cmocka_unit_test(test_policy_parse_bounds),
		cmocka_unit_test(test_policy_parse_errors),
		cmocka_unit_test(test_policy_parse_accepts),
		cmocka_unit_test(test_policy_parse_error_is_final),
		cmocka_unit_test(test_policy_corpus_replay),
		cmocka_unit_test(test_policy_decide_table),
		cmocka_unit_test(
		    test_policy_decide_other_states_look_nothing_up),
		cmocka_unit_test(test_policy_reply_variants),
		cmocka_unit_test(test_policy_check_text),
		cmocka_unit_test(
		    test_policy_reservations_limit_concurrent_messages),
		cmocka_unit_test(test_policy_reservations_configured_ttl),
		cmocka_unit_test(test_policy_parse_name_bytes),
		cmocka_unit_test(test_policy_reservations_pool_alias),
		cmocka_unit_test(test_policy_reservations_two_pools),
	};

	return cmocka_run_group_tests_name(
	    "policy", tests, policy_setup, policy_teardown);
}
