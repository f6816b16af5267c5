#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture.h"
#include "mailkeep/query.h"

#define NS 1000000000LL
#define NOW (1795710600LL * NS) /* 2026-11-26 16:30 UTC */

static const struct mk_query_msg msg = {
	.message_id = "<abc.123@host.example>",
	.from = "Otto Friedrich <otto.friedrich@hosteurope.de>",
	.to = "johanna@tischlerei-koch.de, b@example.org",
	.subject = "Angebot Küche, 2. Entwurf",
	.time_ns = 1795528800LL * NS, /* 2026-11-24 14:00 */
	.size = 20000,
};

struct query_case {
	const char *q;
	int rc; /* parse */
	bool match;
};

static const struct query_case query_cases[] = {
	{ "from:otto", 0, true },
	{ "from:OTTO", 0, true },
	{ "from:johanna", 0, false },
	{ "to:johanna", 0, true },
	{ "to:example.org", 0, true },
	{ "subject:angebot", 0, true },
	{ "subject:\"Küche, 2\"", 0, true },
	{ "subject:\"Küche 2\"", 0, false },
	{ "message-id:abc.123@host.example", 0, true },
	{ "message-id:<abc.123@host.example>", 0, true },
	{ "msgid:abc.123", 0, false },
	{ "since:2026-11-24", 0, true },
	{ "since:2026-11-25", 0, false },
	{ "before:2026-11-25", 0, true },
	{ "before:\"2026-11-24 14:00\"", 0, false },
	{ "since:\"3 days ago\"", 0, true },
	{ "since:yesterday", 0, false },
	{ "larger:19K", 0, true },
	{ "larger:20000", 0, false },
	{ "smaller:20001", 0, true },
	{ "smaller:20000", 0, false },
	{ "otto", 0, true },
	{ "tischlerei", 0, true },
	{ "entwurf", 0, true },
	{ "nothing", 0, false },
	{ "otto angebot", 0, true },
	{ "otto nothing", 0, false },
	{ "  from:otto   larger:1K  ", 0, true },
	{ "\"Angebot Küche\"", 0, true },
	{ "", -1, false },
	{ "   ", -1, false },
	{ "body:x", -1, false },
	{ "from:", -1, false },
	{ "from:\"otto", -1, false },
	{ "since:someday", -1, false },
	{ "larger:big", -1, false },
	{ "a b c d e f g h i j k l m n o p q r s t u v w x y z 1 2 3 4 5 6 7",
	    -1, false },
};

static void
test_query_table(void **state)
{
	struct mk_query *q;
	struct mk_err err;
	size_t i;

	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	for (i = 0; i < sizeof(query_cases) / sizeof(query_cases[0]); i++) {
		const struct query_case *c = &query_cases[i];
		int rc = mk_query_parse(c->q, NOW, &q, &err);

		if (rc != c->rc)
			fail_msg("'%s': rc %d, want %d (%s)", c->q, rc, c->rc,
			    rc < 0 ? err.msg : "");
		if (rc < 0) {
			assert_null(q);
			continue;
		}
		if (mk_query_match(q, &msg) != c->match)
			fail_msg("'%s': match %d, want %d", c->q, !c->match,
			    c->match);
		mk_query_free(&q);
		assert_null(q);
	}
}

/* A message without a header row matches only on time and size. */
static void
test_query_without_header(void **state)
{
	struct mk_query_msg m = { .time_ns = 5 * NS, .size = 10 };
	struct mk_query *q;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_query_parse("from:x", NOW, &q, &err), 0);
	assert_false(mk_query_match(q, &m));
	mk_query_free(&q);
	assert_int_equal(mk_query_parse("smaller:11", NOW, &q, &err), 0);
	assert_true(mk_query_match(q, &m));
	mk_query_free(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_query_table),
		cmocka_unit_test(test_query_without_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
