#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/aliases.h"

/* The local mailboxes of these tests; NULL ends the list. */
struct local_set {
	const char *const *names;
	char calls[16][64]; /* the first addresses asked about */
	size_t ncalls;
};

static int
local_cb(void *arg, const char *address)
{
	struct local_set *set = arg;
	const char *const *p;

	if (set->ncalls < 16)
		snprintf(set->calls[set->ncalls++], 64, "%s", address);
	for (p = set->names; *p != NULL; p++)
		if (strcmp(*p, address) == 0)
			return 1;
	return 0;
}

static struct mk_aliases *
aliases_from(const char *text)
{
	struct mk_aliases *map = NULL;
	struct mk_err err;

	if (mk_aliases_parse("virtual", text, strlen(text), &map, NULL, &err) <
	    0)
		fail_msg("%s", err.msg);
	return map;
}

/* Expand and return the targets joined by ' ', with "+remote" if any. */
static const char *
expand(const struct mk_aliases *map, const char *address, const char *delims,
    struct local_set *set)
{
	static char out[1024];
	struct mk_aliases_expansion exp;
	struct mk_err err;
	size_t i, len = 0;

	set->ncalls = 0;
	if (mk_aliases_expand(map, address, delims, local_cb, set, &exp, &err) <
	    0) {
		snprintf(out, sizeof(out), "error: %s", err.msg);
		assert_int_equal(exp.ntargets, 0);
		assert_null(exp.targets);
		return out;
	}
	out[0] = '\0';
	for (i = 0; i < exp.ntargets; i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s",
		    i > 0 ? " " : "", exp.targets[i]);
	if (exp.remote)
		snprintf(out + len, sizeof(out) - len, "%s+remote",
		    len > 0 ? " " : "");
	mk_aliases_expansion_clear(&exp);
	assert_null(exp.targets);
	return out;
}

static void
test_aliases_parse_file_format(void **state)
{
	static const char *const locals[] = { "a@example.org", "b@example.org",
		"c@example.org", "d@example.org", "e@example.org", NULL };
	struct local_set set = { locals };
	struct mk_warnings skipped = { 0 };
	struct mk_aliases *map = NULL;
	struct mk_err err;
	const char *text = "# virtual(5) map\n"
			   "\n"
			   "Sales@Example.ORG   a@example.org, B@example.org\n"
			   "   # a comment inside an entry\n"
			   "\tc@example.org,d@example.org\n"
			   "   e@example.org\r\n"
			   "team@example.org\ta@example.org\n"
			   "example.org  virtual-alias-domain\n"
			   "root  admin@example.org\n"
			   "team@example.org  b@example.org\n"
			   "last@example.org e@example.org";

	(void)state;
	assert_int_equal(mk_aliases_parse("virtual", text, strlen(text), &map,
			     &skipped, &err),
	    0);
	assert_int_equal(mk_aliases_count(map), 3);
	assert_true(skipped.count == 3);
	assert_non_null(strstr(skipped.first, "virtual:8: 'example.org'"));
	assert_string_equal(expand(map, "sales@example.org", "+", &set),
	    "a@example.org b@example.org c@example.org d@example.org "
	    "e@example.org");
	/* The first of two entries for a key is kept. */
	assert_string_equal(
	    expand(map, "team@example.org", "+", &set), "a@example.org");
	assert_string_equal(
	    expand(map, "last@example.org", "+", &set), "e@example.org");
	mk_aliases_free(&map);
	assert_null(map);
}

static void
test_aliases_parse_errors_name_the_line(void **state)
{
	static const char nul[] = "a@x b@x\nc@x d\0@x\n";
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
		{ "  a@x b@x\n", "virtual:1: nothing to continue" },
		{ "a@x b@x\n\nlonely@x\n",
		    "virtual:3: 'lonely@x' has no result" },
	};
	struct mk_aliases *map = NULL;
	char longkey[1200];
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(mk_aliases_parse("virtual", cases[i].text,
				     strlen(cases[i].text), &map, NULL, &err),
		    -1);
		assert_null(map);
		print_message("%s\n", err.msg);
		assert_non_null(strstr(err.msg, cases[i].want));
	}
	assert_int_equal(
	    mk_aliases_parse("virtual", nul, sizeof(nul) - 1, &map, NULL, &err),
	    -1);
	assert_string_equal(err.msg, "virtual:2: NUL byte");
	memset(longkey, 'k', sizeof(longkey));
	memcpy(longkey + 1100, "@x b@x\n", 8);
	assert_int_equal(mk_aliases_parse("virtual", longkey, strlen(longkey),
			     &map, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "virtual:1: pattern longer"));
	memcpy(longkey, "a@x ", 4);
	assert_int_equal(mk_aliases_parse("virtual", longkey, strlen(longkey),
			     &map, NULL, &err),
	    -1);
	assert_non_null(strstr(err.msg, "virtual:1: result longer"));
	/* An empty file is an empty map. */
	assert_int_equal(
	    mk_aliases_parse("virtual", "", 0, &map, NULL, &err), 0);
	assert_int_equal(mk_aliases_count(map), 0);
	mk_aliases_free(&map);
}

/* user+ext@domain, then user@domain (extension carried), then @domain. */
static void
test_aliases_lookup_order(void **state)
{
	static const char *const locals[] = { "ext@m", "plain@m", "catch@m",
		"special@m", "normal@m", "real@d", NULL };
	struct local_set set = { locals };
	struct mk_aliases *map = aliases_from("a+x@d ext@m\n"
					      "a@d plain@m\n"
					      "@d catch@m\n"
					      "b@d fwd@d\n"
					      "fwd+x@d special@m\n"
					      "fwd@d normal@m\n");

	(void)state;
	assert_string_equal(expand(map, "a+x@d", "+", &set), "ext@m");
	assert_string_equal(expand(map, "a@d", "+", &set), "plain@m");
	/* plain+y@m is not a mailbox; plain@m is. */
	assert_string_equal(expand(map, "a+y@d", "+", &set), "plain@m");
	assert_string_equal(set.calls[0], "plain+y@m");
	assert_string_equal(set.calls[1], "plain@m");
	/* The catch-all takes even names that are mailboxes. */
	assert_string_equal(expand(map, "real@d", "+", &set), "catch@m");
	/* No extension is carried from a catch-all match. */
	assert_string_equal(expand(map, "z+q@d", "+", &set), "catch@m");
	assert_string_equal(set.calls[0], "catch@m");
	/* A local part that starts with a delimiter is not split. */
	assert_string_equal(expand(map, "+q@d", "+", &set), "catch@m");
	assert_string_equal(set.calls[0], "catch@m");
	/* The carried extension selects the next entry. */
	assert_string_equal(expand(map, "b+x@d", "+", &set), "special@m");
	assert_string_equal(expand(map, "b+y@d", "+", &set), "normal@m");
	assert_string_equal(set.calls[0], "normal+y@m");
	assert_string_equal(expand(map, "b@d", "+", &set), "normal@m");
	/* Without delimiters nothing is stripped. */
	assert_string_equal(expand(map, "a+y@d", "", &set), "catch@m");
	/* Another domain: not aliased, not local. */
	assert_string_equal(expand(map, "a+x@e", "+", &set), "+remote");
	mk_aliases_free(&map);
}

static void
test_aliases_delimiters(void **state)
{
	static const char *const locals[] = { "u@d", "owner-list@d",
		"list-request@d", "+x@d", "a@d", NULL };
	struct local_set set = { locals };
	struct mk_aliases *map = aliases_from("a@d u@d\n");

	(void)state;
	/* Each character is a delimiter; the first one found splits. */
	assert_string_equal(expand(map, "a-x@d", "+-", &set), "u@d");
	assert_string_equal(expand(map, "a+b-c@d", "+-", &set), "u@d");
	assert_string_equal(expand(map, "a-b+c@d", "+-", &set), "u@d");
	assert_string_equal(expand(map, "a-x@d", "+", &set), "+remote");
	/* Postfix never splits these. */
	assert_string_equal(
	    expand(map, "owner-list@d", "+-", &set), "owner-list@d");
	assert_string_equal(
	    expand(map, "list-request@d", "+-", &set), "list-request@d");
	assert_string_equal(expand(map, "+x@d", "+", &set), "+x@d");
	/* A local mailbox reached with an extension. */
	assert_string_equal(expand(map, "u+tag@d", "+", &set), "u@d");
	assert_string_equal(expand(map, "A+Tag@D", "+", &set), "u@d");
	assert_string_equal(expand(map, "<a@d>", "+", &set), "u@d");
	mk_aliases_free(&map);
}

static void
test_aliases_recursion_self_and_remote(void **state)
{
	static const char *const locals[] = { "a@d", "b@d", "c@d", "e@d",
		NULL };
	struct local_set set = { locals };
	struct mk_aliases *map =
	    aliases_from("list@d a@d, list@d, friend@example.net, team@d\n"
			 "team@d b@d c@d\n"
			 "keep@d keep@d, b@d\n"
			 "diamond@d x@d y@d\n"
			 "x@d e@d\n"
			 "y@d e@d\n");

	(void)state;
	/* list@d refers to itself: final, and not a mailbox. */
	assert_string_equal(
	    expand(map, "list@d", "+", &set), "a@d b@d c@d +remote");
	assert_string_equal(expand(map, "keep@d", "+", &set), "b@d +remote");
	assert_string_equal(expand(map, "diamond@d", "+", &set), "e@d");
	assert_string_equal(expand(map, "nobody@d", "+", &set), "+remote");
	assert_string_equal(expand(NULL, "a@d", "+", &set), "a@d");
	assert_string_equal(expand(NULL, "root", "+", &set), "+remote");
	assert_string_equal(
	    expand(NULL, "", "+", &set), "error: empty address");
	assert_string_equal(
	    expand(NULL, "<>", "+", &set), "error: empty address");
	mk_aliases_free(&map);
}

static void
test_aliases_loops_are_errors(void **state)
{
	static const char *const locals[] = { NULL };
	struct local_set set = { locals };
	struct mk_aliases *map = aliases_from("a@d b@d\n"
					      "b@d c@d, a@d\n"
					      "@x a@y\n"
					      "@y b@x\n");

	(void)state;
	assert_string_equal(expand(map, "a@d", "+", &set),
	    "error: alias loop: a@d -> b@d -> a@d");
	assert_string_equal(expand(map, "b@d", "+", &set),
	    "error: alias loop: b@d -> a@d -> b@d");
	assert_string_equal(expand(map, "q@x", "+", &set),
	    "error: alias loop: a@y -> b@x -> a@y");
	mk_aliases_free(&map);
}

/* A map with a chain of n lookups: l0@d -> l1@d -> ... -> ln@d. */
static struct mk_aliases *
aliases_chain(int n)
{
	struct mk_aliases *map;
	char *text = malloc(64 * (size_t)(n + 1));
	size_t len = 0;
	int i;

	assert_non_null(text);
	text[0] = '\0';
	for (i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, "l%d@d l%d@d\n", i, i + 1);
	map = aliases_from(text);
	free(text);
	return map;
}

static void
test_aliases_depth_limit(void **state)
{
	static const char *const locals[] = { "l10@d", "l11@d", NULL };
	struct local_set set = { locals };
	struct mk_aliases *map;

	(void)state;
	map = aliases_chain(MK_ALIASES_DEPTH_MAX);
	assert_string_equal(expand(map, "l0@d", "+", &set), "l10@d");
	mk_aliases_free(&map);
	map = aliases_chain(MK_ALIASES_DEPTH_MAX + 1);
	assert_string_equal(expand(map, "l0@d", "+", &set),
	    "error: aliases nested deeper than 10 levels at l10@d");
	assert_string_equal(expand(map, "l1@d", "+", &set), "l11@d");
	mk_aliases_free(&map);
}

/* A map "big@d u0@d, ..." with n results. */
static struct mk_aliases *
aliases_wide(int n)
{
	struct mk_aliases *map;
	char *text = malloc(16 * (size_t)n + 16);
	size_t len;
	int i;

	assert_non_null(text);
	len = (size_t)sprintf(text, "big@d");
	for (i = 0; i < n; i++)
		len += (size_t)sprintf(text + len, " u%d@d", i);
	map = aliases_from(text);
	free(text);
	return map;
}

static void
test_aliases_expansion_size_limit(void **state)
{
	static const char *const locals[] = { "u0@d", NULL };
	struct local_set set = { locals };
	struct mk_aliases *map;

	(void)state;
	map = aliases_wide(MK_ALIASES_TARGETS_MAX - 1);
	assert_string_equal(expand(map, "big@d", "+", &set), "u0@d +remote");
	mk_aliases_free(&map);
	map = aliases_wide(MK_ALIASES_TARGETS_MAX);
	assert_string_equal(expand(map, "big@d", "+", &set),
	    "error: alias expansion of more than 1000 addresses");
	mk_aliases_free(&map);
}

static char *aliases_dir;

static int
aliases_setup(void **state)
{
	(void)state;
	aliases_dir = fx_tmpdir();
	return 0;
}

static int
aliases_teardown(void **state)
{
	(void)state;
	fx_rmrf(aliases_dir);
	free(aliases_dir);
	return 0;
}

/* A reload loads a new map; the old one stays valid until freed. */
static void
test_aliases_load_and_reload(void **state)
{
	static const char *const locals[] = { "a@d", "b@d", NULL };
	struct local_set set = { locals };
	struct mk_aliases *old = NULL, *map = NULL;
	struct mk_err err;
	char want[512];

	(void)state;
	fx_write(aliases_dir, "virtual", "x@d a@d\n");
	if (mk_aliases_load(fx_path(aliases_dir, "virtual"), &old, NULL, &err) <
	    0)
		fail_msg("%s", err.msg);
	fx_write(aliases_dir, "virtual", "x@d b@d\n");
	assert_int_equal(
	    mk_aliases_load(fx_path(aliases_dir, "virtual"), &map, NULL, &err),
	    0);
	assert_string_equal(expand(old, "x@d", "+", &set), "a@d");
	assert_string_equal(expand(map, "x@d", "+", &set), "b@d");
	mk_aliases_free(&old);
	mk_aliases_free(&map);
	fx_write(aliases_dir, "virtual", "x@d\n");
	assert_int_equal(
	    mk_aliases_load(fx_path(aliases_dir, "virtual"), &map, NULL, &err),
	    -1);
	snprintf(want, sizeof(want), "%s:1: 'x@d' has no result",
	    fx_path(aliases_dir, "virtual"));
	assert_string_equal(err.msg, want);
	assert_null(map);
	assert_int_equal(
	    mk_aliases_load(fx_path(aliases_dir, "missing"), &map, NULL, &err),
	    -1);
	assert_int_equal(err.sys_errno, ENOENT);
}

struct refuse_case {
	enum mk_aliases_policy policy;
	size_t ntargets, nfull;
	bool remote, want;
};

static const struct refuse_case refuse_cases[] = {
	{ MK_ALIASES_ALL, 0, 0, false, false },
	{ MK_ALIASES_ALL, 0, 0, true, false },
	{ MK_ALIASES_ALL, 1, 0, false, false },
	{ MK_ALIASES_ALL, 1, 1, false, true },
	{ MK_ALIASES_ALL, 1, 1, true, false },
	{ MK_ALIASES_ALL, 3, 2, false, false },
	{ MK_ALIASES_ALL, 3, 3, false, true },
	{ MK_ALIASES_ALL, 3, 3, true, false },
	{ MK_ALIASES_ANY, 0, 0, true, false },
	{ MK_ALIASES_ANY, 1, 0, false, false },
	{ MK_ALIASES_ANY, 1, 1, false, true },
	{ MK_ALIASES_ANY, 1, 1, true, true },
	{ MK_ALIASES_ANY, 3, 1, false, true },
	{ MK_ALIASES_ANY, 3, 0, true, false },
};

static void
test_aliases_refuse_policies(void **state)
{
	enum mk_aliases_policy policy;
	struct mk_err err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(refuse_cases) / sizeof(refuse_cases[0]); i++) {
		const struct refuse_case *c = &refuse_cases[i];

		print_message("%s %zu/%zu%s\n",
		    mk_aliases_policy_name(c->policy), c->nfull, c->ntargets,
		    c->remote ? " remote" : "");
		assert_int_equal(mk_aliases_refuse(c->policy, c->ntargets,
				     c->nfull, c->remote),
		    c->want);
	}
	assert_int_equal(mk_aliases_policy_parse("any", &policy, &err), 0);
	assert_int_equal(policy, MK_ALIASES_ANY);
	assert_int_equal(mk_aliases_policy_parse("all", &policy, &err), 0);
	assert_int_equal(policy, MK_ALIASES_ALL);
	assert_int_equal(mk_aliases_policy_parse("most", &policy, &err), -1);
	assert_non_null(strstr(err.msg, "most"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aliases_parse_file_format),
		cmocka_unit_test(test_aliases_parse_errors_name_the_line),
		cmocka_unit_test(test_aliases_lookup_order),
		cmocka_unit_test(test_aliases_delimiters),
		cmocka_unit_test(test_aliases_recursion_self_and_remote),
		cmocka_unit_test(test_aliases_loops_are_errors),
		cmocka_unit_test(test_aliases_depth_limit),
		cmocka_unit_test(test_aliases_expansion_size_limit),
		cmocka_unit_test_setup_teardown(test_aliases_load_and_reload,
		    aliases_setup, aliases_teardown),
		cmocka_unit_test(test_aliases_refuse_policies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
