#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/header.h"

static void
parse(const char *s, struct mk_header *h)
{
	mk_header_parse(s, strlen(s), h);
}

static void
test_header_plain_fields(void **state)
{
	struct mk_header h;

	(void)state;
	parse("Return-Path: <x@y>\r\n"
	      "From: Otto Friedrich <Otto.Friedrich@HostEurope.DE>\r\n"
	      "To: a@Example.org\r\n"
	      "Cc: \"B\" <B@example.org>\r\n"
	      "Subject: Angebot Tischlerei\r\n"
	      "Date: Tue, 24 Nov 2026 14:00:00 +0100\r\n"
	      "Message-ID: <abc.123@host.example>\r\n"
	      "\r\n"
	      "Subject: not a header\r\n",
	    &h);
	assert_string_equal(
	    h.from, "Otto Friedrich <otto.friedrich@hosteurope.de>");
	assert_string_equal(h.to, "a@example.org, \"B\" <b@example.org>");
	assert_string_equal(h.subject, "Angebot Tischlerei");
	assert_string_equal(h.message_id, "<abc.123@host.example>");
	assert_int_equal(h.date, 1795528800 - 3600);
}

static void
test_header_unfolds_and_decodes(void **state)
{
	struct mk_header h;

	(void)state;
	parse("subject: =?UTF-8?B?R3LDvMOfZQ==?=\n"
	      "  =?iso-8859-1?Q?aus_K=F6ln?= und\n\tmehr\n"
	      "FROM: =?utf-8?q?J=C3=BCrgen?= <JUERGEN@x.de>\n"
	      "Message-Id:\n <folded@id>\n",
	    &h);
	/* Space between two encoded-words goes; a folded tab becomes a space. */
	assert_string_equal(h.subject, "Grüßeaus Köln und mehr");
	assert_string_equal(h.from, "Jürgen <juergen@x.de>");
	assert_string_equal(h.message_id, "<folded@id>");
}

static void
test_header_first_field_counts(void **state)
{
	struct mk_header h;

	(void)state;
	parse("Subject: one\nSubject: two\nDate: garbage\n", &h);
	assert_string_equal(h.subject, "one");
	assert_int_equal(h.date, 0);
}

static void
test_header_unknown_charset_kept(void **state)
{
	struct mk_header h;

	(void)state;
	parse("Subject: =?koi8-r?B?8NLJ18XU?= x\n", &h);
	assert_string_equal(h.subject, "=?koi8-r?B?8NLJ18XU?= x");
}

static void
test_header_date_forms(void **state)
{
	(void)state;
	assert_int_equal(mk_header_date("24 Nov 2026 14:00 GMT"), 1795528800);
	assert_int_equal(
	    mk_header_date("Tue, 24 Nov 2026 09:00:00 EST"), 1795528800);
	assert_int_equal(
	    mk_header_date("Tue, 24 Nov 26 14:00:00 +0000"), 1795528800);
	assert_int_equal(mk_header_date("Tue, 24 Nov 2026 14:00:00 -0130"),
	    1795528800 + 5400);
	assert_int_equal(mk_header_date("32 Nov 2026 14:00"), 0);
	assert_int_equal(mk_header_date("24 Foo 2026 14:00"), 0);
	assert_int_equal(mk_header_date(""), 0);
	assert_int_equal(mk_header_date("24 Nov 2026"), 0);
}

/* Hostile input: no crash, bounded output, valid UTF-8, no controls. */
static void
test_header_hostile_input(void **state)
{
	static const char *const cases[] = {
		"Subject: =?utf-8?B?",
		"Subject: =?utf-8?Q?=",
		"Subject: =?utf-8?Q?=F?=",
		"Subject: =?utf-8?B?!!!!?=",
		"Subject: =??B?QUJD?=",
		"Subject: =?utf-8?X?abc?=",
		"Subject: =?utf-8*en?Q?a?=",
		"Subject: \x01\x02\x7f\xff\xfe\xc3",
		"Subject: =?utf-8?B?wA==?=",
		":::\n: x\nSubject",
		"\n\nSubject: after the end",
		"From: <<<<>>>>",
		"Date: 99999999999 Nov 2026 14:00",
		"Date: , 24 Nov 2026 99:99:99 +9999",
	};
	struct mk_header h;
	size_t i, j, n = 64 * 1024;
	char *big;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		parse(cases[i], &h);
		for (j = 0; h.subject[j] != '\0'; j++)
			assert_true((unsigned char)h.subject[j] >= 0x20 &&
			    h.subject[j] != 0x7f);
	}
	parse("Subject: =?utf-8?B?wA==?=", &h);
	assert_string_equal(h.subject, "?");
	parse("\n\nSubject: after the end", &h);
	assert_string_equal(h.subject, "");
	/* A field far longer than its buffer, folded many times. */
	big = malloc(n + 1);
	memcpy(big, "Subject: ", 9);
	for (j = 9; j < n; j++)
		big[j] = j % 70 == 0 ? '\n' : (j % 70 == 1 ? ' ' : 'x');
	big[n] = '\0';
	parse(big, &h);
	assert_int_equal(strlen(h.subject), sizeof(h.subject) - 1);
	/* Multibyte characters are never cut in the middle. */
	for (j = 0; j + 2 < n; j += 2) {
		big[j] = (char)0xc3;
		big[j + 1] = (char)0xa4;
	}
	memcpy(big, "To: <", 5);
	big[5] = 'x';
	parse(big, &h);
	for (j = strlen(h.to);
	     j > 0 && ((unsigned char)h.to[j - 1] & 0xc0) == 0x80; j--)
		;
	assert_true(j > 0);
	assert_true(
	    strlen(h.to) - (j - 1) == 2 || (unsigned char)h.to[j - 1] < 0x80);
	free(big);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_plain_fields),
		cmocka_unit_test(test_header_unfolds_and_decodes),
		cmocka_unit_test(test_header_first_field_counts),
		cmocka_unit_test(test_header_unknown_charset_kept),
		cmocka_unit_test(test_header_date_forms),
		cmocka_unit_test(test_header_hostile_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
