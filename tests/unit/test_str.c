#include <string.h>

#include "fixture.h"
#include "mailkeep/str.h"

struct size_case {
	const char *s;
	int rc;
	uint64_t v;
};

static const struct size_case size_cases[] = {
	{ "0", 0, 0 },
	{ "1", 0, 1 },
	{ "500M", 0, 500ULL << 20 },
	{ "2G", 0, 2ULL << 30 },
	{ "2g", 0, 2ULL << 30 },
	{ "10KiB", 0, 10ULL << 10 },
	{ "10MB", 0, 10ULL << 20 },
	{ "1T", 0, 1ULL << 40 },
	{ "18446744073709551615", 0, UINT64_MAX },
	{ "18446744073709551616", -1, 0 },
	{ "16777216T", -1, 0 },
	{ "", -1, 0 },
	{ "M", -1, 0 },
	{ "-1", -1, 0 },
	{ "1.5G", -1, 0 },
	{ "5X", -1, 0 },
	{ "5 M", -1, 0 },
	{ "5Mx", -1, 0 },
};

static void
test_str_parse_size_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(size_cases) / sizeof(size_cases[0]); i++) {
		uint64_t v = 12345;
		struct mk_err err;

		print_message("'%s'\n", size_cases[i].s);
		assert_int_equal(mk_str_parse_size(size_cases[i].s, &v, &err),
		    size_cases[i].rc);
		if (size_cases[i].rc == 0)
			assert_true(v == size_cases[i].v);
		else
			assert_non_null(strstr(err.msg, size_cases[i].s));
	}
}

static void
test_str_parse_duration(void **state)
{
	uint64_t v;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_str_parse_duration("15m", &v, &err), 0);
	assert_true(v == 900);
	assert_int_equal(mk_str_parse_duration("24h", &v, &err), 0);
	assert_true(v == 86400);
	assert_int_equal(mk_str_parse_duration("2", &v, &err), 0);
	assert_true(v == 2);
	assert_int_equal(mk_str_parse_duration("1w", &v, &err), -1);
	assert_int_equal(mk_str_parse_duration("1hh", &v, &err), -1);
	assert_int_equal(
	    mk_str_parse_duration("999999999999999999d", &v, &err), -1);
}

static void
test_str_parse_u64_needs_whole_string(void **state)
{
	uint64_t v;
	struct mk_err err;

	(void)state;
	assert_int_equal(mk_str_parse_u64("42", &v, &err), 0);
	assert_true(v == 42);
	assert_int_equal(mk_str_parse_u64("42 ", &v, &err), -1);
	assert_int_equal(mk_str_parse_u64("", &v, &err), -1);
}

static void
test_str_lcpy_truncates_and_reports(void **state)
{
	char buf[4];

	(void)state;
	assert_int_equal(mk_strlcpy(buf, "abcdef", sizeof(buf)), 6);
	assert_string_equal(buf, "abc");
	assert_int_equal(mk_strlcpy(buf, "ab", sizeof(buf)), 2);
	assert_string_equal(buf, "ab");
}

static void
test_str_format_size(void **state)
{
	char buf[32];

	(void)state;
	mk_str_format_size(0, buf, sizeof(buf));
	assert_string_equal(buf, "0 B");
	mk_str_format_size(1023, buf, sizeof(buf));
	assert_string_equal(buf, "1023 B");
	mk_str_format_size(360448, buf, sizeof(buf));
	assert_string_equal(buf, "352.0 KiB");
	mk_str_format_size(UINT64_MAX, buf, sizeof(buf));
	assert_string_equal(buf, "16.0 EiB");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_str_parse_size_table),
		cmocka_unit_test(test_str_parse_duration),
		cmocka_unit_test(test_str_parse_u64_needs_whole_string),
		cmocka_unit_test(test_str_lcpy_truncates_and_reports),
		cmocka_unit_test(test_str_format_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
