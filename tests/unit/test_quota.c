#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/quota.h"

#define KIB 1024ULL
#define MIB (1024ULL * 1024)
#define GIB (1024ULL * 1024 * 1024)

struct test_case {
	uint64_t usage, limit, grace, size;
	enum mk_quota_result want;
};

/* Limit 1000 with grace 100: the boundaries on both sides. */
static const struct test_case test_cases[] = {
	{ 0, 1000, 100, 0, MK_QUOTA_OK },
	{ 0, 1000, 100, 1, MK_QUOTA_OK },
	{ 0, 1000, 100, 999, MK_QUOTA_OK },
	{ 0, 1000, 100, 1000, MK_QUOTA_OK },
	{ 0, 1000, 100, 1100, MK_QUOTA_OK },
	{ 0, 1000, 100, 1101, MK_QUOTA_TOO_LARGE },
	{ 0, 1000, 100, UINT64_MAX, MK_QUOTA_TOO_LARGE },
	{ 1, 1000, 100, 1099, MK_QUOTA_OK },
	{ 1, 1000, 100, 1100, MK_QUOTA_TOO_LARGE },
	{ 999, 1000, 100, 0, MK_QUOTA_OK },
	{ 999, 1000, 100, 1, MK_QUOTA_OK },
	{ 999, 1000, 100, 101, MK_QUOTA_OK },
	{ 999, 1000, 100, 102, MK_QUOTA_NO_ROOM },
	{ 999, 1000, 0, 1, MK_QUOTA_OK },
	{ 999, 1000, 0, 2, MK_QUOTA_NO_ROOM },
	{ 1000, 1000, 100, 0, MK_QUOTA_OVER },
	{ 1000, 1000, 100, 1, MK_QUOTA_OVER },
	{ 1000, 1000, 100, 1000, MK_QUOTA_OVER },
	{ 1000, 1000, 100, 1001, MK_QUOTA_TOO_LARGE },
	{ 999, 1000, 0, 1000, MK_QUOTA_NO_ROOM },
	{ 1100, 1000, 100, 0, MK_QUOTA_OVER },
	{ 1101, 1000, 100, 0, MK_QUOTA_OVER },
	{ UINT64_MAX, 1000, 100, 0, MK_QUOTA_OVER },
	{ UINT64_MAX, 1000, 100, UINT64_MAX, MK_QUOTA_TOO_LARGE },
	/* Unlimited. */
	{ 0, 0, 0, 0, MK_QUOTA_OK },
	{ UINT64_MAX, 0, 0, UINT64_MAX, MK_QUOTA_OK },
	/* A limit of one byte. */
	{ 0, 1, 0, 0, MK_QUOTA_OK },
	{ 0, 1, 0, 1, MK_QUOTA_OK },
	{ 0, 1, 0, 2, MK_QUOTA_TOO_LARGE },
	{ 1, 1, 0, 0, MK_QUOTA_OVER },
	/* Near the top: the ceiling saturates instead of wrapping. */
	{ UINT64_MAX - 1, UINT64_MAX, UINT64_MAX, UINT64_MAX, MK_QUOTA_OK },
	{ UINT64_MAX - 1, UINT64_MAX, 0, 1, MK_QUOTA_OK },
	{ UINT64_MAX - 1, UINT64_MAX, 0, 2, MK_QUOTA_NO_ROOM },
	{ UINT64_MAX, UINT64_MAX, UINT64_MAX, 0, MK_QUOTA_OVER },
	{ 0, UINT64_MAX, UINT64_MAX, UINT64_MAX, MK_QUOTA_OK },
	{ 5, UINT64_MAX - 10, 20, UINT64_MAX, MK_QUOTA_OK },
	{ 15, UINT64_MAX - 10, 20, UINT64_MAX, MK_QUOTA_TOO_LARGE },
};

static void
test_quota_test_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(test_cases) / sizeof(test_cases[0]); i++) {
		const struct test_case *c = &test_cases[i];

		print_message("usage %llu limit %llu grace %llu size %llu\n",
		    (unsigned long long)c->usage, (unsigned long long)c->limit,
		    (unsigned long long)c->grace, (unsigned long long)c->size);
		assert_int_equal(
		    mk_quota_test(c->usage, c->limit, c->grace, c->size),
		    c->want);
	}
}

static struct mk_quota_state
quota_state(uint64_t bytes, uint64_t blimit, uint64_t messages, uint64_t mlimit)
{
	struct mk_quota_state st;

	memset(&st, 0, sizeof(st));
	st.bytes = bytes;
	st.messages = messages;
	st.limits.bytes = blimit;
	st.limits.messages = mlimit;
	st.limits.bytes_from = MK_QUOTA_SOURCE_CONFIG;
	st.limits.messages_from = MK_QUOTA_SOURCE_CONFIG;
	return st;
}

/*
 * The run observed with Dovecot 2.3 (10 MiB, grace 10%): the message
 * that crossed the limit at 9261 KiB went in, then even size 0 is
 * refused.
 */
static void
test_quota_check_matches_observed_dovecot(void **state)
{
	struct mk_quota_state st = quota_state(9261 * KIB, 10 * MIB, 29, 0);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(NULL, NULL, &st, NULL, 990 * KIB, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	st.bytes = 10496850;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(v.resource, MK_QUOTA_STORAGE);
	assert_false(v.pool);
	assert_true(v.limit == 10 * MIB);
	/* Larger than the whole limit is "too large", as in Dovecot. */
	st.bytes = 0;
	mk_quota_check(NULL, NULL, &st, NULL, 20000000, &v);
	assert_int_equal(v.result, MK_QUOTA_TOO_LARGE);
}

static void
test_quota_check_counts_reservations(void **state)
{
	struct mk_quota_state st = quota_state(990, 1000, 0, 0);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	st.resv_bytes = 10;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	st.resv_bytes = UINT64_MAX;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	st.bytes = UINT64_MAX;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
}

static void
test_quota_check_messages_have_no_grace(void **state)
{
	struct mk_quota_state st = quota_state(0, 0, 9, 10);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(NULL, NULL, &st, NULL, 5000, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	st.resv_messages = 1;
	mk_quota_check(NULL, NULL, &st, NULL, 5000, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(v.resource, MK_QUOTA_MESSAGES);
	assert_true(v.limit == 10);
	st.resv_messages = 0;
	st.messages = UINT64_MAX;
	mk_quota_check(NULL, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(v.resource, MK_QUOTA_MESSAGES);
}

static struct mk_quota_rules *
quota_rules(const char *grace, const char *const *list)
{
	struct mk_quota_rules *rules = mk_quota_rules_new();
	struct mk_err err;

	if (grace != NULL && mk_quota_rules_set_grace(rules, grace, &err) < 0)
		fail_msg("%s", err.msg);
	for (; list != NULL && *list != NULL; list++)
		if (mk_quota_rules_add(rules, *list, &err) < 0)
			fail_msg("%s: %s", *list, err.msg);
	return rules;
}

/*
 * Trash's extra room raises the limit while saving into Trash only; the
 * usage compared is the whole mailbox.  Junk is not counted and never
 * refused.
 */
static void
test_quota_check_folder_rules(void **state)
{
	static const char *const list[] = { "Trash:+10%", "Junk:ignore", NULL };
	struct mk_quota_rules *rules = quota_rules("0", list);
	struct mk_quota_state st = quota_state(1000, 1000, 0, 0);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(rules, "INBOX", &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	mk_quota_check(rules, "Trash", &st, NULL, 100, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "Trash", &st, NULL, 101, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	assert_true(v.limit == 1100);
	st.bytes = 1100;
	mk_quota_check(rules, "Trash", &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	mk_quota_check(rules, "Junk", &st, NULL, UINT64_MAX, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	/* Folder names are case-sensitive, except INBOX. */
	mk_quota_check(rules, "trash", &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_true(mk_quota_rules_ignored(rules, "Junk"));
	assert_false(mk_quota_rules_ignored(rules, "junk"));
	assert_false(mk_quota_rules_ignored(rules, "INBOX"));
	mk_quota_rules_free(&rules);
	assert_null(rules);
}

/* The grace is a share of the mailbox's limit, not of Trash's. */
static void
test_quota_check_grace_uses_the_mailbox_limit(void **state)
{
	static const char *const list[] = { "Trash:storage=+10%", NULL };
	struct mk_quota_rules *rules = quota_rules(NULL, list);
	struct mk_quota_state st = quota_state(999, 1000, 0, 0);
	struct mk_quota_verdict v;

	(void)state;
	/* INBOX: 1 left + 100 grace. */
	mk_quota_check(rules, NULL, &st, NULL, 101, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, NULL, &st, NULL, 102, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	/* Trash: 101 left + 100 grace. */
	mk_quota_check(rules, "Trash", &st, NULL, 201, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "Trash", &st, NULL, 202, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	mk_quota_rules_free(&rules);
}

static void
test_quota_rules_forms_and_wildcards(void **state)
{
	static const char *const list[] = { "Trash:storage=+100M",
		"Trash:messages=+5", "Archive*:ignore", "?pam:ignore",
		"inbox:bytes=+50", "Sent:100", NULL };
	struct mk_quota_rules *rules = quota_rules("0", list);
	struct mk_quota_state st = quota_state(GIB, GIB, 10, 10);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(rules, "Trash", &st, NULL, 100 * MIB, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "Trash", &st, NULL, 100 * MIB + 1, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	st.messages = 15;
	mk_quota_check(rules, "Trash", &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(v.resource, MK_QUOTA_MESSAGES);
	assert_true(v.limit == 15);
	st.messages = 0;
	assert_true(mk_quota_rules_ignored(rules, "Archive"));
	assert_true(mk_quota_rules_ignored(rules, "Archive/2024"));
	assert_true(mk_quota_rules_ignored(rules, "Spam"));
	assert_false(mk_quota_rules_ignored(rules, "Spams"));
	/* "inbox" names INBOX; "Sent:100" is the old form of +100 KiB. */
	mk_quota_check(rules, "INBOX", &st, NULL, 50, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "inbox", &st, NULL, 51, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	mk_quota_check(rules, "Sent", &st, NULL, 100 * KIB, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "Sent", &st, NULL, 100 * KIB + 1, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	mk_quota_rules_free(&rules);
}

/* Extra room applies to a limit; an unlimited mailbox stays unlimited. */
static void
test_quota_check_extra_room_keeps_unlimited(void **state)
{
	static const char *const list[] = { "Trash:+100M", NULL };
	struct mk_quota_rules *rules = quota_rules(NULL, list);
	struct mk_quota_state st = quota_state(UINT64_MAX, 0, UINT64_MAX, 0);
	struct mk_quota_verdict v;

	(void)state;
	mk_quota_check(rules, "Trash", &st, NULL, UINT64_MAX, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	/* Extra room on a huge limit saturates. */
	st = quota_state(UINT64_MAX - 1, UINT64_MAX - 1, 0, 0);
	mk_quota_check(rules, "Trash", &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_rules_free(&rules);
}

static void
test_quota_check_domain_pool(void **state)
{
	static const char *const list[] = { "Junk:ignore", NULL };
	struct mk_quota_rules *rules = quota_rules(NULL, list);
	struct mk_quota_state mb = quota_state(100, 1000, 0, 0);
	struct mk_quota_state pool = quota_state(9000, 10000, 0, 0);
	struct mk_quota_verdict v;

	(void)state;
	/* The pool's grace is 10% of the pool's limit: 1000 + 1000. */
	mk_quota_check(rules, NULL, &mb, &pool, 900, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	pool.resv_bytes = 1000;
	mk_quota_check(rules, NULL, &mb, &pool, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_true(v.pool);
	assert_true(v.limit == 10000);
	/* The mailbox's own cap refuses first. */
	mb.bytes = 1000;
	mk_quota_check(rules, NULL, &mb, &pool, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_false(v.pool);
	/* An ignored folder is refused by neither. */
	mk_quota_check(rules, "Junk", &mb, &pool, 5, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	/* A pool of message counts. */
	mb.bytes = 0;
	pool = quota_state(0, 0, 50, 50);
	mk_quota_check(rules, NULL, &mb, &pool, 5, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(v.resource, MK_QUOTA_MESSAGES);
	assert_true(v.pool);
	mk_quota_rules_free(&rules);
}

struct limits_case {
	const char *s;
	int rc;
	uint64_t bytes, messages;
	bool has_bytes, has_messages;
};

static const struct limits_case limits_cases[] = {
	{ "storage=1G messages=10000", 0, GIB, 10000, true, true },
	{ "storage=1024", 0, MIB, 0, true, false },
	{ "storage=100b", 0, 100, 0, true, false },
	{ "storage=1GB", 0, GIB, 0, true, false },
	{ "storage=1GiB", 0, GIB, 0, true, false },
	{ "storage=1g", 0, GIB, 0, true, false },
	{ "storage=2T", 0, 2ULL << 40, 0, true, false },
	{ "bytes=100", 0, 100, 0, true, false },
	{ "bytes=1k", 0, KIB, 0, true, false },
	{ "messages=1k", 0, 0, 1024, false, true },
	{ "*:storage=1G", 0, GIB, 0, true, false },
	{ "?:bytes=5", 0, 5, 0, true, false },
	{ "*:storage=1G:messages=5", 0, GIB, 5, true, true },
	{ "  storage=0\t", 0, 0, 0, true, false },
	{ "bytes=18446744073709551615", 0, UINT64_MAX, 0, true, false },
	{ "storage=18014398509481984", -1, 0, 0, false, false },
	{ "bytes=18446744073709551616", -1, 0, 0, false, false },
	{ "bytes=16777216T", -1, 0, 0, false, false },
	{ "", -1, 0, 0, false, false },
	{ "*:", -1, 0, 0, false, false },
	{ "storage=", -1, 0, 0, false, false },
	{ "storage", -1, 0, 0, false, false },
	{ "STORAGE=1G", -1, 0, 0, false, false },
	{ "quota=1G", -1, 0, 0, false, false },
	{ "storage=10%", -1, 0, 0, false, false },
	{ "storage=+1G", -1, 0, 0, false, false },
	{ "storage=-1", -1, 0, 0, false, false },
	{ "storage=1X", -1, 0, 0, false, false },
	{ "storage=1Gx", -1, 0, 0, false, false },
	{ "storage=1BB", -1, 0, 0, false, false },
	{ "storage=1.5G", -1, 0, 0, false, false },
	{ "storage=1G bytes=2", -1, 0, 0, false, false },
	{ "messages=1 messages=2", -1, 0, 0, false, false },
};

static void
test_quota_limits_parse_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(limits_cases) / sizeof(limits_cases[0]); i++) {
		const struct limits_case *c = &limits_cases[i];
		struct mk_quota_limits lim;
		struct mk_err err;

		print_message("'%s'\n", c->s);
		assert_int_equal(mk_quota_limits_parse(
				     c->s, MK_QUOTA_SOURCE_DOMAIN, &lim, &err),
		    c->rc);
		if (c->rc < 0) {
			assert_true(err.msg[0] != '\0');
			continue;
		}
		assert_true(lim.bytes == c->bytes);
		assert_true(lim.messages == c->messages);
		assert_int_equal(lim.bytes_from,
		    c->has_bytes ? MK_QUOTA_SOURCE_DOMAIN
				 : MK_QUOTA_SOURCE_NONE);
		assert_int_equal(lim.messages_from,
		    c->has_messages ? MK_QUOTA_SOURCE_DOMAIN
				    : MK_QUOTA_SOURCE_NONE);
	}
}

static struct mk_quota_limits
quota_limits(const char *s, enum mk_quota_source source)
{
	struct mk_quota_limits lim;
	struct mk_err err;

	if (mk_quota_limits_parse(s, source, &lim, &err) < 0)
		fail_msg("%s", err.msg);
	return lim;
}

/* The order layers are applied in does not matter, only their rank. */
static void
test_quota_limits_apply_ranks_sources(void **state)
{
	struct mk_quota_limits layers[4], lim;
	size_t order[2][4] = { { 0, 1, 2, 3 }, { 3, 2, 1, 0 } };
	size_t i, j;

	(void)state;
	layers[0] =
	    quota_limits("storage=1G messages=100", MK_QUOTA_SOURCE_CONFIG);
	layers[1] = quota_limits("storage=2G", MK_QUOTA_SOURCE_DOMAIN);
	layers[2] = quota_limits("storage=3G", MK_QUOTA_SOURCE_MAILBOX);
	layers[3] = quota_limits("storage=4G", MK_QUOTA_SOURCE_IMPORT);
	for (i = 0; i < 2; i++) {
		memset(&lim, 0, sizeof(lim));
		for (j = 0; j < 4; j++)
			mk_quota_limits_apply(&lim, &layers[order[i][j]]);
		assert_true(lim.bytes == 3 * GIB);
		assert_int_equal(lim.bytes_from, MK_QUOTA_SOURCE_MAILBOX);
		assert_true(lim.messages == 100);
		assert_int_equal(lim.messages_from, MK_QUOTA_SOURCE_CONFIG);
	}
	/* Of two layers of the same rank, the later wins. */
	layers[0] = quota_limits("messages=5", MK_QUOTA_SOURCE_CONFIG);
	mk_quota_limits_apply(&lim, &layers[0]);
	assert_true(lim.messages == 5);
	layers[0] = quota_limits("storage=6G", MK_QUOTA_SOURCE_MAILBOX);
	mk_quota_limits_apply(&lim, &layers[0]);
	assert_true(lim.bytes == 6 * GIB);
	/* An explicit 0 from the catalog means unlimited, and wins. */
	layers[0] = quota_limits("storage=0", MK_QUOTA_SOURCE_CATALOG);
	mk_quota_limits_apply(&lim, &layers[0]);
	assert_true(lim.bytes == 0);
	assert_string_equal(mk_quota_source_name(lim.bytes_from), "catalog");
	assert_string_equal(mk_quota_source_name(MK_QUOTA_SOURCE_NONE), "none");
	assert_string_equal(
	    mk_quota_source_name(MK_QUOTA_SOURCE_IMPORT), "import");
}

static void
test_quota_rules_reject_bad_rules(void **state)
{
	static const char *const bad[] = { "Trash", ":ignore",
		"Trash:", "*:storage=1G", "?:ignore", "Trash:storage=-10%",
		"Trash:-10%", "Trash:foo=1", "Trash:+10x", "Trash:storage=10%%",
		"Trash:ignored", NULL };
	struct mk_quota_rules *rules = mk_quota_rules_new();
	const char *const *p;
	struct mk_err err;
	char longmask[400];

	(void)state;
	for (p = bad; *p != NULL; p++) {
		print_message("'%s'\n", *p);
		assert_int_equal(mk_quota_rules_add(rules, *p, &err), -1);
		assert_non_null(strstr(err.msg, "rule"));
	}
	memset(longmask, 'a', sizeof(longmask));
	memcpy(longmask + sizeof(longmask) - 8, ":ignore", 8);
	assert_int_equal(mk_quota_rules_add(rules, longmask, &err), -1);
	assert_false(mk_quota_rules_ignored(rules, "Trash"));
	mk_quota_rules_free(&rules);
}

static void
test_quota_rules_add_list(void **state)
{
	struct mk_quota_rules *rules = mk_quota_rules_new();
	struct mk_quota_state st = quota_state(1000, 1000, 0, 0);
	struct mk_quota_verdict v;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_quota_rules_add_list(rules,
			     " Junk:ignore ;Deleted Items:+10%;;\n"
			     "\tTrash:storage=+100:messages=+5 \n",
			     &err),
	    0);
	assert_true(mk_quota_rules_ignored(rules, "Junk"));
	mk_quota_rules_set_grace(rules, "0", &err);
	mk_quota_check(rules, "Deleted Items", &st, NULL, 100, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, "Deleted Items", &st, NULL, 101, &v);
	assert_int_equal(v.result, MK_QUOTA_NO_ROOM);
	mk_quota_check(rules, "Trash", &st, NULL, 102400, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	assert_int_equal(mk_quota_rules_add_list(rules, "", &err), 0);
	assert_int_equal(
	    mk_quota_rules_add_list(rules, "Spam:ignore; Sent", &err), -1);
	assert_non_null(strstr(err.msg, "'Sent'"));
	assert_true(mk_quota_rules_ignored(rules, "Spam"));
	mk_quota_rules_free(&rules);
}

static void
test_quota_grace_forms(void **state)
{
	struct mk_quota_rules *rules = mk_quota_rules_new();
	struct mk_quota_state st = quota_state(0, 10 * MIB, 0, 0);
	struct mk_quota_verdict v;
	struct mk_err err;

	(void)state;
	/* Default 10%. */
	mk_quota_check(rules, NULL, &st, NULL, 11 * MIB, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, NULL, &st, NULL, 11 * MIB + 1, &v);
	assert_int_equal(v.result, MK_QUOTA_TOO_LARGE);
	assert_int_equal(mk_quota_rules_set_grace(rules, "1M", &err), 0);
	mk_quota_check(rules, NULL, &st, NULL, 11 * MIB, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	assert_int_equal(mk_quota_rules_set_grace(rules, "1024", &err), 0);
	mk_quota_check(rules, NULL, &st, NULL, 10 * MIB + 1024, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, NULL, &st, NULL, 10 * MIB + 1025, &v);
	assert_int_equal(v.result, MK_QUOTA_TOO_LARGE);
	assert_int_equal(mk_quota_rules_set_grace(rules, "0", &err), 0);
	mk_quota_check(rules, NULL, &st, NULL, 10 * MIB + 1, &v);
	assert_int_equal(v.result, MK_QUOTA_TOO_LARGE);
	st = quota_state(UINT64_MAX - 2, UINT64_MAX - 1, 0, 0);
	mk_quota_check(rules, NULL, &st, NULL, 1, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	mk_quota_check(rules, NULL, &st, NULL, UINT64_MAX, &v);
	assert_int_equal(v.result, MK_QUOTA_TOO_LARGE);
	/* A percentage of a limit near the top saturates. */
	assert_int_equal(mk_quota_rules_set_grace(rules, "1000%", &err), 0);
	mk_quota_check(rules, NULL, &st, NULL, UINT64_MAX, &v);
	assert_int_equal(v.result, MK_QUOTA_OK);
	st.bytes = UINT64_MAX - 1;
	mk_quota_check(rules, NULL, &st, NULL, 0, &v);
	assert_int_equal(v.result, MK_QUOTA_OVER);
	assert_int_equal(mk_quota_rules_set_grace(rules, "x", &err), -1);
	assert_non_null(strstr(err.msg, "grace"));
	assert_int_equal(mk_quota_rules_set_grace(rules, "5%%", &err), -1);
	assert_int_equal(
	    mk_quota_rules_set_grace(rules, "4294967295%", &err), -1);
	mk_quota_rules_free(&rules);
}

static void
test_quota_rules_count_applies_basis_and_ignore(void **state)
{
	static const char *const list[] = { "Junk:ignore", NULL };
	struct mk_quota_rules *rules = quota_rules(NULL, list);
	char inbox[] = "INBOX", junk[] = "Junk", trash[] = "Trash";
	struct mk_folder_usage f[3];
	uint64_t bytes, messages;

	(void)state;
	memset(f, 0, sizeof(f));
	f[0].name = inbox;
	f[0].usage = (struct mk_usage){ 100, 110, 2 };
	f[1].name = junk;
	f[1].usage = (struct mk_usage){ 1000, 1100, 5 };
	f[2].name = trash;
	f[2].usage = (struct mk_usage){ 10, 11, 1 };
	mk_quota_rules_count(
	    rules, MK_QUOTA_BASIS_PHYSICAL, f, 3, &bytes, &messages);
	assert_true(bytes == 110 && messages == 3);
	mk_quota_rules_count(
	    rules, MK_QUOTA_BASIS_VIRTUAL, f, 3, &bytes, &messages);
	assert_true(bytes == 121 && messages == 3);
	mk_quota_rules_count(
	    NULL, MK_QUOTA_BASIS_PHYSICAL, f, 3, &bytes, &messages);
	assert_true(bytes == 1110 && messages == 8);
	f[2].usage = (struct mk_usage){ UINT64_MAX, UINT64_MAX, UINT64_MAX };
	mk_quota_rules_count(
	    rules, MK_QUOTA_BASIS_PHYSICAL, f, 3, &bytes, &messages);
	assert_true(bytes == UINT64_MAX && messages == UINT64_MAX);
	mk_quota_rules_free(&rules);
}

static void
test_quota_basis_names(void **state)
{
	enum mk_quota_basis b;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_quota_basis_parse("virtual", &b, &err), 0);
	assert_int_equal(b, MK_QUOTA_BASIS_VIRTUAL);
	assert_string_equal(mk_quota_basis_name(b), "virtual");
	assert_int_equal(mk_quota_basis_parse("physical", &b, &err), 0);
	assert_string_equal(mk_quota_basis_name(b), "physical");
	assert_int_equal(mk_quota_basis_parse("Physical", &b, &err), -1);
}

struct import_seen {
	char addresses[8][64];
	struct mk_quota_limits limits[8];
	size_t n;
	int fail_at; /* make the callback fail on this call (1-based) */
};

static int
import_cb(void *arg, const char *address, const struct mk_quota_limits *lim,
    struct mk_err *err)
{
	struct import_seen *seen = arg;

	if ((int)seen->n + 1 == seen->fail_at)
		return mk_err_set(err, "catalog is read-only");
	assert_true(seen->n < 8);
	snprintf(seen->addresses[seen->n], 64, "%s", address);
	seen->limits[seen->n++] = *lim;
	return 0;
}

static char *quota_dir;

static int
quota_setup(void **state)
{
	(void)state;
	quota_dir = fx_tmpdir();
	return 0;
}

static int
quota_teardown(void **state)
{
	(void)state;
	fx_rmrf(quota_dir);
	free(quota_dir);
	return 0;
}

static void
test_quota_import_passwd_file(void **state)
{
	struct import_seen seen = { .fail_at = 0 };
	struct mk_warnings warnings = { 0 };
	struct mk_err err;

	(void)state;
	fx_write(quota_dir, "users",
	    "# mailkeep test users\n"
	    "\n"
	    "otto.friedrich@hosteurope.de:{PLAIN}x:5000:5000::/home/o::"
	    "userdb_quota_rule=*:storage=10M\n"
	    "Hercules.Ikarus@hosteurope.de:{PLAIN}x:5000:5000::/h::"
	    "userdb_quota_rule=*:bytes=100M "
	    "userdb_quota_rule2=Trash:storage=+10%% "
	    "userdb_quota_rule3=*:messages=1000 userdb_mail=maildir:~/M\n"
	    "noquota@x:{PLAIN}x:5000:5000::/home/n::userdb_mail=maildir:~/M\n"
	    "short@x:{PLAIN}x\n"
	    "   # indented comment\n"
	    "v24@x:::::::quota_storage_size=1G "
	    "quota_message_count=unlimited\r\n"
	    "plain@x:x:1:1::/h::quota_rule=?:storage=5M quota_rule=*:ignore\n");
	if (mk_quota_import_passwd_file(fx_path(quota_dir, "users"), import_cb,
		&seen, &warnings, &err) < 0)
		fail_msg("%s", err.msg);
	assert_int_equal(seen.n, 4);
	assert_string_equal(seen.addresses[0], "otto.friedrich@hosteurope.de");
	assert_true(seen.limits[0].bytes == 10 * MIB);
	assert_int_equal(seen.limits[0].bytes_from, MK_QUOTA_SOURCE_IMPORT);
	assert_int_equal(seen.limits[0].messages_from, MK_QUOTA_SOURCE_NONE);
	assert_string_equal(seen.addresses[1], "hercules.ikarus@hosteurope.de");
	assert_true(seen.limits[1].bytes == 100 * MIB);
	assert_true(seen.limits[1].messages == 1000);
	assert_int_equal(seen.limits[1].messages_from, MK_QUOTA_SOURCE_IMPORT);
	assert_string_equal(seen.addresses[2], "v24@x");
	assert_true(seen.limits[2].bytes == GIB);
	assert_true(seen.limits[2].messages == 0);
	assert_int_equal(seen.limits[2].messages_from, MK_QUOTA_SOURCE_IMPORT);
	assert_string_equal(seen.addresses[3], "plain@x");
	assert_true(seen.limits[3].bytes == 5 * MIB);
	assert_true(warnings.count == 2);
	assert_non_null(strstr(warnings.first, "Trash"));
}

/* Errors name the file and the line. */
static void
test_quota_import_errors_name_file_and_line(void **state)
{
	static const char *const bad[] = {
		"a@x:x:1:1::/h::quota_rule=*:storage=10%\n",
		"a@x:x:1:1::/h::quota_rule=storage=1G\n",
		"a@x:x:1:1::/h::quota_rule=*:storage=1Q\n",
		"a@x:x:1:1::/h::quota_storage_size=lots\n",
		":x:1:1::/h::quota_rule=*:storage=1G\n",
	};
	struct import_seen seen = { .fail_at = 0 };
	struct mk_err err;
	char want[512];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char content[256];

		snprintf(content, sizeof(content),
		    "# header\nok@x:x:1:1::/h::quota_rule=*:storage=1G\n%s",
		    bad[i]);
		fx_write(quota_dir, "bad", content);
		seen.n = 0;
		assert_int_equal(
		    mk_quota_import_passwd_file(fx_path(quota_dir, "bad"),
			import_cb, &seen, NULL, &err),
		    -1);
		snprintf(
		    want, sizeof(want), "%s:3: ", fx_path(quota_dir, "bad"));
		print_message("%s\n", err.msg);
		assert_true(strncmp(err.msg, want, strlen(want)) == 0);
		assert_int_equal(seen.n, 1);
	}
	/* The callback's own error, with the line that caused it. */
	fx_write(quota_dir, "cb",
	    "a@x:x:1:1::/h::quota_rule=*:storage=1G\n"
	    "b@x:x:1:1::/h::quota_rule=*:storage=1G\n");
	seen.n = 0;
	seen.fail_at = 2;
	assert_int_equal(mk_quota_import_passwd_file(fx_path(quota_dir, "cb"),
			     import_cb, &seen, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "cb:2: catalog is read-only"));
	/* A NUL byte, and a file that is not there. */
	fx_write(quota_dir, "nul", "a@x:x:1:1::/h::quota_rule=*:storage=1G\n");
	{
		FILE *fp = fopen(fx_path(quota_dir, "nul"), "a");

		assert_non_null(fp);
		assert_int_equal(fwrite("b\0c\n", 1, 4, fp), 4);
		assert_int_equal(fclose(fp), 0);
	}
	seen.fail_at = 0;
	assert_int_equal(mk_quota_import_passwd_file(fx_path(quota_dir, "nul"),
			     import_cb, &seen, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "nul:2: NUL byte"));
	assert_int_equal(
	    mk_quota_import_passwd_file(
		fx_path(quota_dir, "missing"), import_cb, &seen, NULL, &err),
	    -1);
	assert_int_equal(err.sys_errno, ENOENT);
}

static void
test_quota_resv_add_replace_get(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();
	uint64_t bytes, messages, own;

	(void)state;
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 100, 1000);
	mk_quota_resv_add(r, "i2", "a@x", "a@x", 0, 1000);
	mk_quota_resv_add(r, "i1", "list@x", "a@x", 50, 1000);
	mk_quota_resv_add(r, "i1", "list@x", "b@x", 50, 1000);
	mk_quota_resv_add(r, "i3", "c@y", "c@y", 7, 1000);
	assert_int_equal(mk_quota_resv_count(r), 5);
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, &own);
	assert_true(bytes == 151 && messages == 3 && own == 0);
	/* Leave out the caller's own reservation. */
	mk_quota_resv_get(r, "a@x", "i1", "a@x", &bytes, &messages, &own);
	assert_true(bytes == 51 && messages == 2 && own == 100);
	/* The same key again replaces (END-OF-MESSAGE's real size). */
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 5000, 2000);
	assert_int_equal(mk_quota_resv_count(r), 5);
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 5051 && messages == 3);
	mk_quota_resv_get_domain(r, "x", &bytes, &messages);
	assert_true(bytes == 5101 && messages == 4);
	mk_quota_resv_get_domain(r, "y", &bytes, &messages);
	assert_true(bytes == 7 && messages == 1);
	mk_quota_resv_get(r, "nobody@x", NULL, NULL, &bytes, &messages, &own);
	assert_true(bytes == 0 && messages == 0 && own == 0);
	mk_quota_resv_get_domain(r, "z", &bytes, &messages);
	assert_true(bytes == 0 && messages == 0);
	mk_quota_resv_free(&r);
	assert_null(r);
}

/* A landed message releases the oldest reservation of its mailbox. */
static void
test_quota_resv_release_oldest(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();
	uint64_t bytes, messages;

	(void)state;
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 1, 100);
	mk_quota_resv_add(r, "i2", "a@x", "a@x", 20, 100);
	mk_quota_resv_add(r, "i3", "a@x", "a@x", 300, 100);
	/* Replacing keeps the place in the queue. */
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 1000, 100);
	assert_true(mk_quota_resv_release(r, "a@x"));
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 320 && messages == 2);
	assert_true(mk_quota_resv_release(r, "a@x"));
	assert_true(mk_quota_resv_release(r, "a@x"));
	assert_false(mk_quota_resv_release(r, "a@x"));
	assert_false(mk_quota_resv_release(r, "b@x"));
	assert_int_equal(mk_quota_resv_count(r), 0);
	mk_quota_resv_get_domain(r, "x", &bytes, &messages);
	assert_true(bytes == 0 && messages == 0);
	/* The mailbox and its domain can come back. */
	mk_quota_resv_add(r, "i4", "a@x", "a@x", 9, 100);
	mk_quota_resv_get_domain(r, "x", &bytes, &messages);
	assert_true(bytes == 9 && messages == 1);
	mk_quota_resv_free(&r);
}

static void
test_quota_resv_expire_many(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();
	uint64_t bytes, messages, want = 0;
	char mailbox[64], txn[32];
	int i;

	(void)state;
	/* Mailbox u<k>@d<k%7> gets four reservations, all odd or all even. */
	for (i = 0; i < 2000; i++) {
		snprintf(
		    mailbox, sizeof(mailbox), "u%d@d%d", i % 500, i % 500 % 7);
		snprintf(txn, sizeof(txn), "t%d", i);
		mk_quota_resv_add(
		    r, txn, mailbox, mailbox, 10, i % 2 ? 50 : 100);
	}
	assert_int_equal(mk_quota_resv_count(r), 2000);
	assert_int_equal(mk_quota_resv_expire(r, 49), 0);
	assert_int_equal(mk_quota_resv_expire(r, 50), 1000);
	assert_int_equal(mk_quota_resv_count(r), 1000);
	mk_quota_resv_get(r, "u0@d0", NULL, NULL, &bytes, &messages, NULL);
	assert_true(messages == 4 && bytes == 40);
	mk_quota_resv_get(r, "u1@d1", NULL, NULL, &bytes, &messages, NULL);
	assert_true(messages == 0 && bytes == 0);
	for (i = 0; i < 500; i += 14)
		want += 4;
	mk_quota_resv_get_domain(r, "d0", &bytes, &messages);
	assert_true(messages == want && bytes == want * 10);
	assert_int_equal(mk_quota_resv_expire(r, INT64_MAX), 1000);
	assert_int_equal(mk_quota_resv_count(r), 0);
	mk_quota_resv_get_domain(r, "d0", &bytes, &messages);
	assert_true(messages == 0);
	mk_quota_resv_free(&r);
}

static void
test_quota_resv_sums_saturate(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();
	uint64_t bytes, messages;

	(void)state;
	mk_quota_resv_add(r, "i1", "a", "a@x", UINT64_MAX, 1);
	mk_quota_resv_add(r, "i2", "a", "a@x", UINT64_MAX, 1);
	mk_quota_resv_add(r, "i3", "b", "b@x", 5, 1);
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == UINT64_MAX && messages == 2);
	mk_quota_resv_get_domain(r, "x", &bytes, &messages);
	assert_true(bytes == UINT64_MAX && messages == 3);
	/* A mailbox without a domain part has the domain "". */
	mk_quota_resv_add(r, "i4", "root", "root", 5, 1);
	mk_quota_resv_get_domain(r, "", &bytes, &messages);
	assert_true(bytes == 5 && messages == 1);
	mk_quota_resv_free(&r);
	mk_quota_resv_free(&r);
}

/*
 * A mailbox holds at most the configured number of reservations: a new
 * one pushes out the oldest, and the sums follow.
 */
static void
test_quota_resv_cap_drops_oldest(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();
	struct mk_quota_resv_stats st;
	uint64_t bytes, messages;

	(void)state;
	mk_quota_resv_configure(r, 900, 3);
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 1, 100);
	mk_quota_resv_add(r, "i2", "a@x", "a@x", 20, 100);
	mk_quota_resv_add(r, "i3", "a@x", "a@x", 300, 100);
	mk_quota_resv_add(r, "i1", "b@x", "b@x", 5, 100);
	/* The same key again replaces: nothing is pushed out. */
	mk_quota_resv_add(r, "i3", "a@x", "a@x", 400, 100);
	assert_int_equal(mk_quota_resv_count(r), 4);
	mk_quota_resv_add(r, "i4", "a@x", "a@x", 4000, 100);
	assert_int_equal(mk_quota_resv_count(r), 4);
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 4420 && messages == 3);
	mk_quota_resv_get_domain(r, "x", &bytes, &messages);
	assert_true(bytes == 4425 && messages == 4);
	/* i1 on a@x is gone, b@x kept its own. */
	mk_quota_resv_get(r, "a@x", "i1", "a@x", &bytes, &messages, NULL);
	assert_true(bytes == 4420 && messages == 3);
	mk_quota_resv_get(r, "b@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 5 && messages == 1);
	/* The oldest left is i2: releasing drops 20. */
	assert_true(mk_quota_resv_release(r, "a@x"));
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 4400 && messages == 2);
	/* A cap of one: the box and its domain go and come back. */
	mk_quota_resv_configure(r, 900, 1);
	mk_quota_resv_add(r, "j1", "c@y", "c@y", 7, 100);
	mk_quota_resv_add(r, "j2", "c@y", "c@y", 8, 100);
	mk_quota_resv_get(r, "c@y", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 8 && messages == 1);
	mk_quota_resv_get_domain(r, "y", &bytes, &messages);
	assert_true(bytes == 8 && messages == 1);
	/* A lowered cap: a@x sheds both of its older ones at its next add. */
	mk_quota_resv_add(r, "i5", "a@x", "a@x", 9, 100);
	mk_quota_resv_get(r, "a@x", NULL, NULL, &bytes, &messages, NULL);
	assert_true(bytes == 9 && messages == 1);
	mk_quota_resv_stats(r, &st);
	assert_true(st.capped == 4 && st.released == 1 && st.expired == 0);
	assert_int_equal(mk_quota_resv_expire(r, 100), 3);
	mk_quota_resv_stats(r, &st);
	assert_int_equal(st.expired, 3);
	assert_int_equal(mk_quota_resv_count(r), 0);
	mk_quota_resv_free(&r);
}

/* Reservations expire after the configured time; 0 is taken as 1. */
static void
test_quota_resv_configure(void **state)
{
	struct mk_quota_resv *r = mk_quota_resv_new();

	(void)state;
	assert_int_equal(mk_quota_resv_ttl(r), MK_QUOTA_RESV_TTL);
	mk_quota_resv_configure(r, 600, 10);
	assert_int_equal(mk_quota_resv_ttl(r), 600);
	mk_quota_resv_configure(r, 0, 0);
	assert_int_equal(mk_quota_resv_ttl(r), 1);
	mk_quota_resv_add(r, "i1", "a@x", "a@x", 1, 10);
	mk_quota_resv_add(r, "i2", "a@x", "a@x", 1, 10);
	assert_int_equal(mk_quota_resv_count(r), 1);
	mk_quota_resv_free(&r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quota_test_table),
		cmocka_unit_test(test_quota_check_matches_observed_dovecot),
		cmocka_unit_test(test_quota_check_counts_reservations),
		cmocka_unit_test(test_quota_check_messages_have_no_grace),
		cmocka_unit_test(test_quota_check_folder_rules),
		cmocka_unit_test(test_quota_check_grace_uses_the_mailbox_limit),
		cmocka_unit_test(test_quota_rules_forms_and_wildcards),
		cmocka_unit_test(test_quota_check_extra_room_keeps_unlimited),
		cmocka_unit_test(test_quota_check_domain_pool),
		cmocka_unit_test(test_quota_limits_parse_table),
		cmocka_unit_test(test_quota_limits_apply_ranks_sources),
		cmocka_unit_test(test_quota_rules_reject_bad_rules),
		cmocka_unit_test(test_quota_rules_add_list),
		cmocka_unit_test(test_quota_grace_forms),
		cmocka_unit_test(
		    test_quota_rules_count_applies_basis_and_ignore),
		cmocka_unit_test(test_quota_basis_names),
		cmocka_unit_test_setup_teardown(
		    test_quota_import_passwd_file, quota_setup, quota_teardown),
		cmocka_unit_test_setup_teardown(
		    test_quota_import_errors_name_file_and_line, quota_setup,
		    quota_teardown),
		cmocka_unit_test(test_quota_resv_add_replace_get),
		cmocka_unit_test(test_quota_resv_release_oldest),
		cmocka_unit_test(test_quota_resv_expire_many),
		cmocka_unit_test(test_quota_resv_sums_saturate),
		cmocka_unit_test(test_quota_resv_cap_drops_oldest),
		cmocka_unit_test(test_quota_resv_configure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
