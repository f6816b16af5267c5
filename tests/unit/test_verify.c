#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/verify.h"

static void
fill(struct mk_verify_results *r)
{
	struct mk_verify_last *c = &r->kind[MK_VERIFY_CHECK];
	struct mk_verify_last *t = &r->kind[MK_VERIFY_TEST_RESTORE];

	memset(r, 0, sizeof(*r));
	c->success_ns = 1794000000123456789LL;
	c->failure_ns = 1793000000000000001LL;
	c->failures = 3;
	c->error = strdup("check found 2 problems");
	c->ended_ns = c->success_ns;
	c->ok = true;
	t->failures = UINT32_MAX + 5ULL;
	t->failure_ns = 1795000000000000000LL;
	t->ended_ns = t->failure_ns;
	t->problems = 7;
	t->mailbox = strdup("a@example.org");
	t->error = strdup("a@example.org: cur/x is not restored");
}

static void
test_verify_results_round_trip_through_the_file(void **state)
{
	struct mk_verify_results in, out;
	char *dir = fx_tmpdir();
	struct mk_err err;
	size_t k;

	(void)state;
	fill(&in);
	assert_int_equal(mk_verify_results_save(dir, &in, &err), 0);
	assert_int_equal(mk_verify_results_load(dir, &out, &err), 1);
	for (k = 0; k < MK_VERIFY_KINDS; k++) {
		const struct mk_verify_last *a = &in.kind[k], *b = &out.kind[k];

		assert_int_equal(a->success_ns, b->success_ns);
		assert_int_equal(a->failure_ns, b->failure_ns);
		assert_int_equal(a->failures, b->failures);
		assert_int_equal(a->ended_ns, b->ended_ns);
		assert_int_equal(a->ok, b->ok);
		assert_int_equal(a->problems, b->problems);
		assert_string_equal(a->error, b->error);
		if (a->mailbox == NULL)
			assert_null(b->mailbox);
		else
			assert_string_equal(a->mailbox, b->mailbox);
	}
	mk_verify_results_clear(&out);
	mk_verify_results_clear(&in);
	assert_null(in.kind[0].error);
	fx_rmrf(dir);
	free(dir);
}

static void
test_verify_results_no_file_is_not_an_error(void **state)
{
	struct mk_verify_results r;
	char *dir = fx_tmpdir();
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_verify_results_load(dir, &r, &err), 0);
	assert_int_equal(r.kind[MK_VERIFY_CHECK].success_ns, 0);
	fx_rmrf(dir);
	free(dir);
}

/* Damaged files: each refused with a reason, nothing half loaded. */
static void
test_verify_results_damage_is_refused(void **state)
{
	static const struct {
		const char *text, *expect;
	} cases[] = {
		{ "", "verify results" },
		{ "{\"magic\": \"mailkeep verify results\", \"version\": 1, "
		  "\"kinds\": {\"check\": ",
		    "verify results" },
		{ "[]", "verify results" },
		{ "{\"magic\":\"x\",\"version\":1,\"kinds\":{}}", "version 1" },
		{ "{\"magic\":\"mailkeep verify results\",\"version\":2,"
		  "\"kinds\":{}}",
		    "version 1" },
		{ "{\"magic\":\"mailkeep verify results\",\"version\":1,"
		  "\"kinds\":{}}",
		    "kinds" },
		{ "{\"magic\":\"mailkeep verify results\",\"version\":1,"
		  "\"kinds\":{\"check\":{},\"test-restore\":{}}}",
		    "check" },
		{ "{\"magic\":\"mailkeep verify results\",\"version\":1,"
		  "\"kinds\":{\"check\":{\"success_ns\":-1,\"failure_ns\":0,"
		  "\"failures\":0,\"error\":null,\"ended_ns\":0,\"ok\":false,"
		  "\"problems\":0,\"mailbox\":null},\"test-restore\":{}}}",
		    "negative" },
		{ "{\"magic\":\"mailkeep verify results\",\"version\":1,"
		  "\"kinds\":{\"check\":{\"success_ns\":0,\"failure_ns\":0,"
		  "\"failures\":0,\"error\":5,\"ended_ns\":0,\"ok\":false,"
		  "\"problems\":0,\"mailbox\":null},\"test-restore\":{}}}",
		    "strings or null" },
	};
	struct mk_verify_results r;
	char *dir = fx_tmpdir();
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("%s\n", cases[i].text);
		fx_write(dir, MK_VERIFY_RESULTS_FILE, cases[i].text);
		assert_int_equal(mk_verify_results_load(dir, &r, &err), -1);
		assert_non_null(strstr(err.msg, MK_VERIFY_RESULTS_FILE));
		assert_non_null(strstr(err.msg, cases[i].expect));
		assert_null(r.kind[MK_VERIFY_CHECK].error);
		assert_int_equal(r.kind[MK_VERIFY_CHECK].failures, 0);
	}
	/* Larger than a results file can be. */
	fx_write_size(dir, MK_VERIFY_RESULTS_FILE, MK_VERIFY_RESULTS_MAX + 1);
	assert_int_equal(mk_verify_results_load(dir, &r, &err), -1);
	assert_non_null(strstr(err.msg, "larger than"));
	fx_rmrf(dir);
	free(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
		    test_verify_results_round_trip_through_the_file),
		cmocka_unit_test(test_verify_results_no_file_is_not_an_error),
		cmocka_unit_test(test_verify_results_damage_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
