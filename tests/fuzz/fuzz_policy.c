/*
 * libFuzzer harness for the policy service: the parser is fed the input
 * in pieces whose size the first byte picks, and every complete request
 * goes through the decision (aliases, reservations, pools) and the reply,
 * whose shape is checked.
 *
 *   cmake -S . -B build-fuzz -DMK_FUZZ=ON -DCMAKE_C_COMPILER=clang \
 *       -DMK_SANITIZE=address,undefined
 *   cmake --build build-fuzz --target fuzz_policy
 *   build-fuzz/tests/fuzz_policy -max_len=40000 tests/fuzz/corpus/policy
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_aliases[] =
    "team@hosteurope.de otto.friedrich@hosteurope.de, hercules@hosteurope.de\n"
    "fwd@hosteurope.de otto.friedrich@hosteurope.de, someone@example.com\n"
    "loop@hosteurope.de loop2@hosteurope.de\n"
    "loop2@hosteurope.de loop@hosteurope.de\n"
    "@catch.example hercules@hosteurope.de\n";

/*
 * Mailboxes made up from the address: names starting with 'x' do not
 * exist, 'e' fail, 'u' have no usage yet; the rest are filled by length.
 */
static int
fuzz_lookup(void *arg, const char *address, struct mk_policy_mailbox *mb_r,
    struct mk_err *err)
{
	size_t len = strlen(address);

	(void)arg;
	if (len == 0 || address[0] == 'x')
		return 0;
	if (address[0] == 'e')
		return mk_err_set(err, "lookup failed");
	if (mb_r == NULL)
		return 1;
	memset(mb_r, 0, sizeof(*mb_r));
	mb_r->usage_known = address[0] != 'u';
	mb_r->mailbox.bytes = (uint64_t)len * 1000;
	mb_r->mailbox.limits.bytes = len % 3 == 0 ? 0 : 30000;
	mb_r->mailbox.messages = len;
	mb_r->mailbox.limits.messages = len % 5 == 0 ? 20 : 0;
	mb_r->has_pool = len % 2 == 1;
	mb_r->pool.bytes = (uint64_t)len * 5000;
	mb_r->pool.limits.bytes = 100000;
	return 1;
}

/* A reply must be one action line and an empty line, and never OK. */
static void
fuzz_check_reply(const char *reply, size_t len)
{
	if (len < 10 || len >= MK_POLICY_REPLY_MAX ||
	    strncmp(reply, "action=", 7) != 0 ||
	    strcmp(reply + len - 2, "\n\n") != 0 ||
	    memchr(reply, '\n', len) != reply + len - 2 ||
	    strncmp(reply, "action=OK", 9) == 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mk_policy_parser *p = mk_policy_parser_new();
	struct mk_quota_resv *resv = mk_quota_resv_new();
	struct mk_aliases *aliases = NULL;
	struct mk_policy_config conf;
	size_t off = 0, chunk = size > 0 ? (size_t)data[0] % 64 + 1 : 1;
	struct mk_err err;

	if (mk_aliases_parse("fuzz", fuzz_aliases, sizeof(fuzz_aliases) - 1,
		&aliases, NULL, &err) < 0)
		abort();
	mk_policy_config_init(&conf);
	if (size > 0 && data[0] & 0x80)
		conf.alias_policy = MK_ALIASES_ANY;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk, used;
		const struct mk_policy_request *req;
		struct mk_policy_decision d;
		char reply[MK_POLICY_REPLY_MAX];
		enum mk_policy_status st;

		st = mk_policy_parser_feed(p, data + off, n, &used, &err);
		if (used > n)
			abort();
		off += used;
		if (st == MK_POLICY_ERROR)
			break;
		if (st == MK_POLICY_MORE)
			continue;
		if ((req = mk_policy_parser_request(p)) == NULL)
			abort();
		mk_policy_decide(
		    &conf, req, aliases, resv, fuzz_lookup, NULL, &d, &err);
		fuzz_check_reply(reply,
		    mk_policy_format_reply(&conf, &d, reply, sizeof(reply)));
		mk_policy_reserve(&d, resv, (int64_t)off);
		mk_policy_decision_clear(&d);
		mk_policy_parser_reset(p);
		if (off % 7 == 0)
			mk_quota_resv_release(
			    resv, "otto.friedrich@hosteurope.de");
	}
	mk_quota_resv_expire(resv, (int64_t)size / 2);
	mk_quota_resv_free(&resv);
	mk_aliases_free(&aliases);
	mk_policy_parser_free(&p);
	return 0;
}
