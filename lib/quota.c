#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailkeep/hmap.h"
#include "mailkeep/mem.h"
#include "mailkeep/quota.h"
#include "mailkeep/str.h"

#define QUOTA_TOKEN_MAX 256 /* one key=value of a rule, one folder mask */
#define QUOTA_IMPORT_LINE_MAX 65536

/* An amount of extra room or grace: a number, or a percentage of a limit. */
struct quota_amount {
	uint64_t value;
	bool percent;
};

struct quota_rule {
	char *mask; /* "INBOX" whatever case it was written in */
	bool ignore;
	struct quota_amount bytes; /* extra room while saving into it */
	struct quota_amount messages;
};

struct mk_quota_rules {
	struct quota_rule *rules; /* first match wins */
	size_t nrules;
	size_t cap;
	struct quota_amount grace;
};

static const struct quota_amount quota_default_grace = { 10, true };

static uint64_t
quota_add(uint64_t a, uint64_t b)
{
	uint64_t r;

	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* a of base, rounded down; a percentage of a huge base saturates. */
static uint64_t
quota_amount_of(const struct quota_amount *a, uint64_t base)
{
	uint64_t whole;

	if (!a->percent)
		return a->value;
	/* base = 100q + r, so base * v / 100 = q * v + r * v / 100. */
	if (__builtin_mul_overflow(base / 100, a->value, &whole))
		return UINT64_MAX;
	return quota_add(whole, (base % 100) * a->value / 100);
}

const char *
mk_quota_source_name(enum mk_quota_source source)
{
	switch (source) {
	case MK_QUOTA_SOURCE_NONE:
		return "none";
	case MK_QUOTA_SOURCE_CONFIG:
		return "config";
	case MK_QUOTA_SOURCE_DOMAIN:
		return "domain";
	case MK_QUOTA_SOURCE_IMPORT:
		return "import";
	case MK_QUOTA_SOURCE_MAILBOX:
		return "mailbox";
	case MK_QUOTA_SOURCE_CATALOG:
		return "catalog";
	}
	return "unknown";
}

const char *
mk_quota_basis_name(enum mk_quota_basis basis)
{
	return basis == MK_QUOTA_BASIS_VIRTUAL ? "virtual" : "physical";
}

int
mk_quota_basis_parse(
    const char *s, enum mk_quota_basis *basis_r, struct mk_err *err)
{
	if (strcmp(s, "physical") == 0)
		*basis_r = MK_QUOTA_BASIS_PHYSICAL;
	else if (strcmp(s, "virtual") == 0)
		*basis_r = MK_QUOTA_BASIS_VIRTUAL;
	else
		return mk_err_set(
		    err, "size basis '%s': use physical or virtual", s);
	return 0;
}

/*
 * Parse a number with Dovecot's units: B, K, M, G, T (either case, K to T
 * optionally followed by "B" or "iB") or '%'.  bare is the unit of a
 * number without one (1024 for storage=).
 */
static int
quota_parse_amount(const char *s, uint64_t bare, bool allow_percent,
    struct quota_amount *a_r, struct mk_err *err)
{
	static const char units[] = "BKMGT";
	const char *p = s, *u;
	uint64_t v = 0, mult = bare;

	if (*p < '0' || *p > '9')
		return mk_err_set(err, "'%s': not a number", s);
	for (; *p >= '0' && *p <= '9'; p++)
		if (__builtin_mul_overflow(v, 10, &v) ||
		    __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v))
			return mk_err_set(err, "'%s': number too large", s);
	a_r->percent = false;
	if (*p == '%') {
		if (!allow_percent)
			return mk_err_set(
			    err, "'%s': a limit cannot be a percentage", s);
		if (p[1] != '\0' || v >= UINT32_MAX)
			return mk_err_set(err, "'%s': bad percentage", s);
		a_r->value = v;
		a_r->percent = true;
		return 0;
	}
	if (*p != '\0') {
		if ((u = strchr(units, toupper((unsigned char)*p))) == NULL)
			return mk_err_set(err,
			    "'%s': unknown unit (use B, K, M, G, T or %%)", s);
		mult = 1ULL << (10 * (u - units));
		p++;
		if (mult > 1 &&
		    (strcasecmp(p, "B") == 0 || strcasecmp(p, "iB") == 0))
			p += strlen(p);
		if (*p != '\0')
			return mk_err_set(err,
			    "'%s': unknown unit (use B, K, M, G, T or %%)", s);
	}
	if (__builtin_mul_overflow(v, mult, &a_r->value))
		return mk_err_set(err, "'%s': number too large", s);
	return 0;
}

/* Copy the token s[0..len) into buf, which has QUOTA_TOKEN_MAX bytes. */
static int
quota_token(const char *s, size_t len, char *buf, struct mk_err *err)
{
	if (len >= QUOTA_TOKEN_MAX)
		return mk_err_set(err, "'%.40s...': too long", s);
	memcpy(buf, s, len);
	buf[len] = '\0';
	return 0;
}

/*
 * One "key=value" of a rule: which resource, and the amount.  relative
 * allows a '+' and a percentage (folder rules).
 */
static int
quota_parse_item(const char *item, bool relative, enum mk_quota_resource *res_r,
    struct quota_amount *a_r, struct mk_err *err)
{
	const char *eq = strchr(item, '='), *value;
	uint64_t bare;

	if (eq == NULL)
		return mk_err_set(err, "'%s': expected KEY=VALUE", item);
	value = eq + 1;
	if (strncmp(item, "storage=", 8) == 0) {
		*res_r = MK_QUOTA_STORAGE;
		bare = 1024;
	} else if (strncmp(item, "bytes=", 6) == 0) {
		*res_r = MK_QUOTA_STORAGE;
		bare = 1;
	} else if (strncmp(item, "messages=", 9) == 0) {
		*res_r = MK_QUOTA_MESSAGES;
		bare = 1;
	} else
		return mk_err_set(
		    err, "'%s': use storage=, bytes= or messages=", item);
	if (*value == '+') {
		if (!relative)
			return mk_err_set(
			    err, "'%s': a limit cannot be relative", item);
		value++;
	}
	if (*value == '-')
		return mk_err_set(
		    err, "'%s': negative values are not supported", item);
	if (quota_parse_amount(value, bare, relative, a_r, err) < 0)
		return -1;
	return 0;
}

int
mk_quota_limits_parse(const char *s, enum mk_quota_source source,
    struct mk_quota_limits *lim_r, struct mk_err *err)
{
	char item[QUOTA_TOKEN_MAX];
	const char *p = s;
	bool any = false;

	memset(lim_r, 0, sizeof(*lim_r));
	if ((p[0] == '*' || p[0] == '?') && p[1] == ':')
		p += 2;
	for (;;) {
		enum mk_quota_resource res;
		struct quota_amount a;
		size_t len;

		p += strspn(p, " \t:");
		if (*p == '\0')
			break;
		len = strcspn(p, " \t:");
		if (quota_token(p, len, item, err) < 0 ||
		    quota_parse_item(item, false, &res, &a, err) < 0)
			return -1;
		p += len;
		if (res == MK_QUOTA_STORAGE) {
			if (lim_r->bytes_from != MK_QUOTA_SOURCE_NONE)
				return mk_err_set(
				    err, "'%s': storage given twice", s);
			lim_r->bytes = a.value;
			lim_r->bytes_from = source;
		} else {
			if (lim_r->messages_from != MK_QUOTA_SOURCE_NONE)
				return mk_err_set(
				    err, "'%s': messages given twice", s);
			lim_r->messages = a.value;
			lim_r->messages_from = source;
		}
		any = true;
	}
	if (!any)
		return mk_err_set(err, "'%s': no limit given", s);
	return 0;
}

void
mk_quota_limits_apply(
    struct mk_quota_limits *lim, const struct mk_quota_limits *layer)
{
	if (layer->bytes_from != MK_QUOTA_SOURCE_NONE &&
	    layer->bytes_from >= lim->bytes_from) {
		lim->bytes = layer->bytes;
		lim->bytes_from = layer->bytes_from;
	}
	if (layer->messages_from != MK_QUOTA_SOURCE_NONE &&
	    layer->messages_from >= lim->messages_from) {
		lim->messages = layer->messages;
		lim->messages_from = layer->messages_from;
	}
}

struct mk_quota_rules *
mk_quota_rules_new(void)
{
	struct mk_quota_rules *rules = mk_xcalloc(1, sizeof(*rules));

	rules->grace = quota_default_grace;
	return rules;
}

void
mk_quota_rules_free(struct mk_quota_rules **rulesp)
{
	struct mk_quota_rules *rules = *rulesp;
	size_t i;

	if (rules == NULL)
		return;
	for (i = 0; i < rules->nrules; i++)
		free(rules->rules[i].mask);
	free(rules->rules);
	free(rules);
	*rulesp = NULL;
}

/* Dovecot's wildcard_match(): '*' any run of bytes, '?' one byte. */
static bool
quota_wildcard_match(const char *s, const char *mask)
{
	const char *star = NULL, *resume = NULL;

	while (*s != '\0') {
		if (*mask == '*') {
			star = ++mask;
			resume = s;
		} else if (*mask == '?' || *mask == *s) {
			mask++;
			s++;
		} else if (star != NULL) {
			mask = star;
			s = ++resume;
		} else
			return false;
	}
	while (*mask == '*')
		mask++;
	return *mask == '\0';
}

/* INBOX is the one folder name that is not case-sensitive. */
static const char *
quota_folder_name(const char *name)
{
	return strcasecmp(name, "INBOX") == 0 ? "INBOX" : name;
}

/* The first rule whose mask matches folder, or NULL. */
static const struct quota_rule *
quota_rules_find(const struct mk_quota_rules *rules, const char *folder)
{
	size_t i;

	if (rules == NULL)
		return NULL;
	folder = quota_folder_name(folder);
	for (i = 0; i < rules->nrules; i++)
		if (quota_wildcard_match(folder, rules->rules[i].mask))
			return &rules->rules[i];
	return NULL;
}

/* Parse the part of a folder rule after "mask:" into r. */
static int
quota_parse_folder_limits(
    const char *rest, struct quota_rule *r, struct mk_err *err)
{
	char item[QUOTA_TOKEN_MAX];
	const char *p = rest;

	if (strcmp(rest, "ignore") == 0) {
		r->ignore = true;
		return 0;
	}
	if (*p == '+' || (*p >= '0' && *p <= '9')) {
		/* The short form "Trash:+10%" means storage=+10%. */
		if (*p == '+')
			p++;
		return quota_parse_amount(p, 1024, true, &r->bytes, err);
	}
	for (;;) {
		enum mk_quota_resource res;
		struct quota_amount a;
		size_t len;

		p += strspn(p, " \t:");
		if (*p == '\0')
			break;
		len = strcspn(p, " \t:");
		if (quota_token(p, len, item, err) < 0 ||
		    quota_parse_item(item, true, &res, &a, err) < 0)
			return -1;
		p += len;
		if (res == MK_QUOTA_STORAGE)
			r->bytes = a;
		else
			r->messages = a;
	}
	return 0;
}

int
mk_quota_rules_add(
    struct mk_quota_rules *rules, const char *rule, struct mk_err *err)
{
	struct quota_rule parsed, *r = NULL;
	const char *colon = strchr(rule, ':');
	char mask[QUOTA_TOKEN_MAX];
	size_t i;

	memset(&parsed, 0, sizeof(parsed));
	if (colon == NULL || colon == rule || colon[1] == '\0')
		return mk_err_set(err,
		    "folder rule '%s': use FOLDER:ignore or FOLDER:+N", rule);
	if (quota_token(rule, (size_t)(colon - rule), mask, err) < 0)
		return mk_err_prefix(err, "folder rule");
	if (strcmp(mask, "*") == 0 || strcmp(mask, "?") == 0)
		return mk_err_set(
		    err, "folder rule '%s': '*' is the limit itself", rule);
	for (i = 0; i < rules->nrules; i++)
		if (strcmp(rules->rules[i].mask, quota_folder_name(mask)) ==
		    0) {
			r = &rules->rules[i];
			parsed = *r;
			break;
		}
	if (quota_parse_folder_limits(colon + 1, &parsed, err) < 0)
		return mk_err_prefix(err, "folder rule '%s'", rule);
	if (r == NULL) {
		mk_xgrow(&rules->rules, &rules->cap, rules->nrules + 1,
		    sizeof(*rules->rules));
		r = &rules->rules[rules->nrules++];
		parsed.mask = mk_xstrdup(quota_folder_name(mask));
	}
	*r = parsed;
	return 0;
}

int
mk_quota_rules_add_list(
    struct mk_quota_rules *rules, const char *list, struct mk_err *err)
{
	char rule[QUOTA_TOKEN_MAX * 2];
	const char *p = list;

	while (*p != '\0') {
		size_t len = strcspn(p, ";\n"), start, end;

		for (start = 0; start < len && strchr(" \t\r", p[start]);
		     start++)
			;
		for (end = len; end > start && strchr(" \t\r", p[end - 1]);
		     end--)
			;
		if (end - start >= sizeof(rule))
			return mk_err_set(
			    err, "folder rule '%.40s...': too long", p + start);
		if (end > start) {
			memcpy(rule, p + start, end - start);
			rule[end - start] = '\0';
			if (mk_quota_rules_add(rules, rule, err) < 0)
				return -1;
		}
		p += len + (p[len] != '\0');
	}
	return 0;
}

int
mk_quota_rules_set_grace(
    struct mk_quota_rules *rules, const char *value, struct mk_err *err)
{
	struct quota_amount a;

	if (quota_parse_amount(value, 1, true, &a, err) < 0)
		return mk_err_prefix(err, "grace");
	rules->grace = a;
	return 0;
}

bool
mk_quota_rules_ignored(const struct mk_quota_rules *rules, const char *folder)
{
	const struct quota_rule *r = quota_rules_find(rules, folder);

	return r != NULL && r->ignore;
}

void
mk_quota_rules_count(const struct mk_quota_rules *rules,
    enum mk_quota_basis basis, const struct mk_folder_usage *folders,
    size_t nfolders, uint64_t *bytes_r, uint64_t *messages_r)
{
	uint64_t bytes = 0, messages = 0;
	size_t i;

	for (i = 0; i < nfolders; i++) {
		const struct mk_usage *u = &folders[i].usage;

		if (mk_quota_rules_ignored(rules, folders[i].name))
			continue;
		bytes = quota_add(bytes,
		    basis == MK_QUOTA_BASIS_VIRTUAL ? u->vbytes : u->bytes);
		messages = quota_add(messages, u->messages);
	}
	*bytes_r = bytes;
	*messages_r = messages;
}

enum mk_quota_result
mk_quota_test(uint64_t usage, uint64_t limit, uint64_t grace, uint64_t size)
{
	uint64_t need = size == 0 ? 1 : size;

	if (limit == 0)
		return MK_QUOTA_OK;
	/*
	 * As Dovecot: the room left plus the grace, computed without
	 * adding to the usage, so that a saturated ceiling is still above
	 * any size.
	 */
	if (usage < limit && need <= quota_add(limit - usage, grace))
		return MK_QUOTA_OK;
	if (size > limit)
		return MK_QUOTA_TOO_LARGE;
	return usage >= limit ? MK_QUOTA_OVER : MK_QUOTA_NO_ROOM;
}

/* Check one quota root; true (and *v filled) when it refuses. */
static bool
quota_check_root(const struct mk_quota_rules *rules,
    const struct quota_rule *rule, const struct mk_quota_state *st,
    uint64_t size, struct mk_quota_verdict *v)
{
	const struct quota_amount *grace =
	    rules != NULL ? &rules->grace : &quota_default_grace;
	uint64_t blimit = st->limits.bytes, mlimit = st->limits.messages;
	enum mk_quota_result rb, rm;

	if (rule != NULL && blimit != 0)
		blimit = quota_add(
		    blimit, quota_amount_of(&rule->bytes, st->limits.bytes));
	if (rule != NULL && mlimit != 0)
		mlimit = quota_add(mlimit,
		    quota_amount_of(&rule->messages, st->limits.messages));
	rb = mk_quota_test(quota_add(st->bytes, st->resv_bytes), blimit,
	    quota_amount_of(grace, st->limits.bytes), size);
	rm = mk_quota_test(
	    quota_add(st->messages, st->resv_messages), mlimit, 0, 1);
	if (rb == MK_QUOTA_OK && rm == MK_QUOTA_OK)
		return false;
	if (rb != MK_QUOTA_OK || (blimit != 0 && size > blimit)) {
		/* Dovecot calls any refusal "too large" past the limit. */
		v->result =
		    blimit != 0 && size > blimit ? MK_QUOTA_TOO_LARGE : rb;
		v->resource = MK_QUOTA_STORAGE;
		v->limit = blimit;
	} else {
		v->result = rm;
		v->resource = MK_QUOTA_MESSAGES;
		v->limit = mlimit;
	}
	return true;
}

void
mk_quota_check(const struct mk_quota_rules *rules, const char *folder,
    const struct mk_quota_state *mailbox, const struct mk_quota_state *pool,
    uint64_t size, struct mk_quota_verdict *verdict_r)
{
	const struct quota_rule *rule =
	    quota_rules_find(rules, folder != NULL ? folder : "INBOX");

	memset(verdict_r, 0, sizeof(*verdict_r));
	verdict_r->result = MK_QUOTA_OK;
	verdict_r->resource = MK_QUOTA_STORAGE;
	if (rule != NULL && rule->ignore)
		return;
	if (quota_check_root(rules, rule, mailbox, size, verdict_r))
		return;
	if (pool != NULL &&
	    quota_check_root(rules, NULL, pool, size, verdict_r))
		verdict_r->pool = true;
}

/* Merge the limits of one Dovecot rule into lim, or say it was skipped. */
static int
quota_import_rule(const char *value, struct mk_quota_limits *lim,
    bool *skipped_r, struct mk_err *err)
{
	struct mk_quota_limits parsed;
	const char *colon = strchr(value, ':');

	*skipped_r = false;
	if (colon == NULL)
		return mk_err_set(
		    err, "quota rule '%s': expected MAILBOX:LIMITS", value);
	if ((colon - value != 1 || (value[0] != '*' && value[0] != '?')) ||
	    strcmp(colon + 1, "ignore") == 0 ||
	    strncmp(colon + 1, "backend=", 8) == 0) {
		*skipped_r = true;
		return 0;
	}
	if (mk_quota_limits_parse(
		colon + 1, MK_QUOTA_SOURCE_IMPORT, &parsed, err) < 0)
		return mk_err_prefix(err, "quota rule '%s'", value);
	mk_quota_limits_apply(lim, &parsed);
	return 0;
}

/* A Dovecot 2.4 size or count: "unlimited", or a number with a unit. */
static int
quota_import_size(
    const char *key, const char *value, uint64_t *value_r, struct mk_err *err)
{
	struct quota_amount a;

	if (strcmp(value, "unlimited") == 0) {
		*value_r = 0;
		return 0;
	}
	if (quota_parse_amount(value, 1, false, &a, err) < 0)
		return mk_err_prefix(err, "%s", key);
	*value_r = a.value;
	return 0;
}

/* Is key quota_rule, quota_rule2, ...? */
static bool
quota_is_rule_key(const char *key)
{
	if (strncmp(key, "quota_rule", 10) != 0)
		return false;
	return key[10 + strspn(key + 10, "0123456789")] == '\0';
}

/* Parse the extra fields of one passwd-file line into lim. */
static int
quota_import_fields(char *fields, const char *user, struct mk_quota_limits *lim,
    struct mk_warnings *warnings, struct mk_err *err)
{
	char *save = NULL, *tok;

	for (tok = strtok_r(fields, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		char *eq = strchr(tok, '='), *key = tok;
		bool skipped;

		if (eq == NULL)
			continue;
		*eq = '\0';
		if (strncmp(key, "userdb_", 7) == 0)
			key += 7;
		if (quota_is_rule_key(key)) {
			if (quota_import_rule(eq + 1, lim, &skipped, err) < 0)
				return -1;
			if (skipped && warnings != NULL)
				mk_warnings_add(warnings,
				    "%s: %s=%s skipped: not a limit", user, key,
				    eq + 1);
		} else if (strcmp(key, "quota_storage_size") == 0) {
			if (quota_import_size(key, eq + 1, &lim->bytes, err) <
			    0)
				return -1;
			lim->bytes_from = MK_QUOTA_SOURCE_IMPORT;
		} else if (strcmp(key, "quota_message_count") == 0) {
			if (quota_import_size(
				key, eq + 1, &lim->messages, err) < 0)
				return -1;
			lim->messages_from = MK_QUOTA_SOURCE_IMPORT;
		}
	}
	return 0;
}

/* One line of a passwd-file: report its user's limits, if any. */
static int
quota_import_line(char *line, mk_quota_import_cb *cb, void *arg,
    struct mk_warnings *warnings, struct mk_err *err)
{
	struct mk_quota_limits lim;
	char *p = line, *user;
	int field;

	p += strspn(p, " \t");
	if (*p == '\0' || *p == '#')
		return 0;
	user = p;
	for (field = 0; field < 7 && p != NULL; field++) {
		p = strchr(p, ':');
		if (p != NULL)
			*p++ = '\0';
	}
	if (user[0] == '\0')
		return mk_err_set(err, "empty user name");
	if (p == NULL)
		return 0;
	memset(&lim, 0, sizeof(lim));
	mk_str_lower(user);
	if (quota_import_fields(p, user, &lim, warnings, err) < 0)
		return mk_err_prefix(err, "%s", user);
	if (lim.bytes_from == MK_QUOTA_SOURCE_NONE &&
	    lim.messages_from == MK_QUOTA_SOURCE_NONE)
		return 0;
	return cb(arg, user, &lim, err);
}

int
mk_quota_import_passwd_file(const char *path, mk_quota_import_cb *cb, void *arg,
    struct mk_warnings *warnings, struct mk_err *err)
{
	unsigned long lineno = 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = -1;
	FILE *fp;

	if ((fp = fopen(path, "re")) == NULL)
		return mk_err_sys(err, "open(%s)", path);
	while ((errno = 0, len = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		if (len > QUOTA_IMPORT_LINE_MAX) {
			mk_err_set(err, "%s:%lu: line longer than %d bytes",
			    path, lineno, QUOTA_IMPORT_LINE_MAX);
			goto out;
		}
		if ((size_t)len != strlen(line)) {
			mk_err_set(err, "%s:%lu: NUL byte", path, lineno);
			goto out;
		}
		while (
		    len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (quota_import_line(line, cb, arg, warnings, err) < 0) {
			mk_err_prefix(err, "%s:%lu", path, lineno);
			goto out;
		}
	}
	if (ferror(fp)) {
		mk_err_sys(err, "read(%s)", path);
		goto out;
	}
	rc = 0;
out:
	free(line);
	fclose(fp);
	return rc;
}

/*
 * The reservation table.  Every lookup is O(1): each entry is found by
 * its key (mailbox, txn, rcpt) in one hash map; mailboxes and domains
 * keep running totals (in 128 bits, so that removing an entry is exact
 * even when a sum passes UINT64_MAX; read back saturated).  A mailbox
 * lists its entries oldest first, for release; the table lists all of
 * them by expiry, for expire.
 */
struct quota_box;

struct quota_resv_entry {
	char *txn;
	char *rcpt;
	struct quota_box *box;
	uint64_t hash;
	uint64_t bytes;
	int64_t expires;
	struct quota_resv_entry *bprev, *bnext; /* in the box, oldest first */
	struct quota_resv_entry *eprev, *enext; /* in the table, by expiry */
};

struct quota_domain {
	char *domain;
	size_t nentries;
	unsigned __int128 bytes;
};

struct quota_box {
	char *mailbox;
	struct quota_domain *domain;
	struct quota_resv_entry *head, *tail;
	size_t nentries;
	unsigned __int128 bytes;
};

struct mk_quota_resv {
	struct mk_hmap *boxes;
	struct mk_hmap *domains;
	struct mk_hmap *entries;
	struct quota_resv_entry *ehead, *etail;
	size_t count;
	int64_t ttl;
	size_t max; /* per mailbox */
	struct mk_quota_resv_stats stats;
};

/* The key of an entry, for matching. */
struct quota_resv_key {
	const char *mailbox;
	const char *txn;
	const char *rcpt;
};

static uint64_t
quota_hash(const char *s)
{
	return mk_hmap_hash(s, strlen(s));
}

static uint64_t
quota_saturate(unsigned __int128 v)
{
	return v > UINT64_MAX ? UINT64_MAX : (uint64_t)v;
}

static bool
quota_box_match(const void *value, const void *ctx)
{
	return strcmp(((const struct quota_box *)value)->mailbox, ctx) == 0;
}

static bool
quota_domain_match(const void *value, const void *ctx)
{
	return strcmp(((const struct quota_domain *)value)->domain, ctx) == 0;
}

static bool
quota_entry_match(const void *value, const void *ctx)
{
	const struct quota_resv_entry *e = value;
	const struct quota_resv_key *k = ctx;

	return strcmp(e->txn, k->txn) == 0 && strcmp(e->rcpt, k->rcpt) == 0 &&
	    strcmp(e->box->mailbox, k->mailbox) == 0;
}

static uint64_t
quota_entry_hash(const struct quota_resv_key *k)
{
	uint64_t h = quota_hash(k->mailbox);

	h = (h ^ quota_hash(k->txn)) * 0x9e3779b97f4a7c15ULL;
	return (h ^ quota_hash(k->rcpt)) * 0xbf58476d1ce4e5b9ULL;
}

static struct quota_box *
quota_box_find(const struct mk_quota_resv *r, const char *mailbox)
{
	return mk_hmap_get(
	    r->boxes, quota_hash(mailbox), quota_box_match, mailbox);
}

static struct quota_resv_entry *
quota_entry_find(const struct mk_quota_resv *r, const struct quota_resv_key *k,
    uint64_t hash)
{
	return mk_hmap_get(r->entries, hash, quota_entry_match, k);
}

struct mk_quota_resv *
mk_quota_resv_new(void)
{
	struct mk_quota_resv *r = mk_xcalloc(1, sizeof(*r));

	r->boxes = mk_hmap_new();
	r->domains = mk_hmap_new();
	r->entries = mk_hmap_new();
	r->ttl = MK_QUOTA_RESV_TTL;
	r->max = MK_QUOTA_RESV_MAX;
	return r;
}

void
mk_quota_resv_configure(
    struct mk_quota_resv *resv, int64_t ttl, size_t max_per_mailbox)
{
	resv->ttl = ttl > 0 ? ttl : 1;
	resv->max = max_per_mailbox > 0 ? max_per_mailbox : 1;
}

int64_t
mk_quota_resv_ttl(const struct mk_quota_resv *resv)
{
	return resv->ttl;
}

void
mk_quota_resv_stats(
    const struct mk_quota_resv *resv, struct mk_quota_resv_stats *st_r)
{
	*st_r = resv->stats;
}

static const char *
quota_domain_of(const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');

	return at != NULL ? at + 1 : "";
}

/* A new box for mailbox, with its domain made when it does not exist. */
static struct quota_box *
quota_box_make(struct mk_quota_resv *r, const char *mailbox)
{
	const char *domain = quota_domain_of(mailbox);
	struct quota_domain *d;
	struct quota_box *box;

	d = mk_hmap_get(
	    r->domains, quota_hash(domain), quota_domain_match, domain);
	if (d == NULL) {
		d = mk_xcalloc(1, sizeof(*d));
		d->domain = mk_xstrdup(domain);
		mk_hmap_put(r->domains, quota_hash(domain), d);
	}
	box = mk_xcalloc(1, sizeof(*box));
	box->mailbox = mk_xstrdup(mailbox);
	box->domain = d;
	mk_hmap_put(r->boxes, quota_hash(mailbox), box);
	return box;
}

/* Put e into the expiry list: from the tail, where a new one belongs. */
static void
quota_expiry_insert(struct mk_quota_resv *r, struct quota_resv_entry *e)
{
	struct quota_resv_entry *after = r->etail;

	while (after != NULL && after->expires > e->expires)
		after = after->eprev;
	e->eprev = after;
	e->enext = after != NULL ? after->enext : r->ehead;
	if (e->enext != NULL)
		e->enext->eprev = e;
	else
		r->etail = e;
	if (after != NULL)
		after->enext = e;
	else
		r->ehead = e;
}

static void
quota_expiry_unlink(struct mk_quota_resv *r, struct quota_resv_entry *e)
{
	if (e->eprev != NULL)
		e->eprev->enext = e->enext;
	else
		r->ehead = e->enext;
	if (e->enext != NULL)
		e->enext->eprev = e->eprev;
	else
		r->etail = e->eprev;
}

/* Remove e; its box (and the box's domain) go with their last entry. */
static void
quota_entry_drop(struct mk_quota_resv *r, struct quota_resv_entry *e)
{
	struct quota_box *box = e->box;
	struct quota_domain *d = box->domain;

	mk_hmap_remove(r->entries, e->hash, e);
	quota_expiry_unlink(r, e);
	if (e->bprev != NULL)
		e->bprev->bnext = e->bnext;
	else
		box->head = e->bnext;
	if (e->bnext != NULL)
		e->bnext->bprev = e->bprev;
	else
		box->tail = e->bprev;
	box->nentries--;
	box->bytes -= e->bytes;
	d->nentries--;
	d->bytes -= e->bytes;
	r->count--;
	free(e->txn);
	free(e->rcpt);
	free(e);
	if (box->nentries == 0) {
		mk_hmap_remove(r->boxes, quota_hash(box->mailbox), box);
		free(box->mailbox);
		free(box);
	}
	if (d->nentries == 0) {
		mk_hmap_remove(r->domains, quota_hash(d->domain), d);
		free(d->domain);
		free(d);
	}
}

void
mk_quota_resv_add(struct mk_quota_resv *resv, const char *txn, const char *rcpt,
    const char *mailbox, uint64_t bytes, int64_t expires)
{
	struct quota_resv_key k = { mailbox, txn, rcpt };
	uint64_t hash = quota_entry_hash(&k);
	struct quota_resv_entry *e = quota_entry_find(resv, &k, hash);
	struct quota_box *box;

	if (bytes == 0)
		bytes = 1;
	if (e != NULL) {
		/* Same key: a new size and expiry, the same age. */
		e->box->bytes += bytes - (unsigned __int128)e->bytes;
		e->box->domain->bytes += bytes - (unsigned __int128)e->bytes;
		e->bytes = bytes;
		e->expires = expires;
		quota_expiry_unlink(resv, e);
		quota_expiry_insert(resv, e);
		return;
	}
	/* Make room: the oldest go first (the box goes with its last). */
	box = quota_box_find(resv, mailbox);
	while (box != NULL && box->nentries >= resv->max) {
		bool last = box->nentries == 1;

		quota_entry_drop(resv, box->head);
		resv->stats.capped++;
		if (last)
			box = NULL;
	}
	if (box == NULL)
		box = quota_box_make(resv, mailbox);
	e = mk_xcalloc(1, sizeof(*e));
	e->txn = mk_xstrdup(txn);
	e->rcpt = mk_xstrdup(rcpt);
	e->box = box;
	e->hash = hash;
	e->bytes = bytes;
	e->expires = expires;
	e->bprev = box->tail;
	if (box->tail != NULL)
		box->tail->bnext = e;
	else
		box->head = e;
	box->tail = e;
	box->nentries++;
	box->bytes += bytes;
	box->domain->nentries++;
	box->domain->bytes += bytes;
	mk_hmap_put(resv->entries, hash, e);
	quota_expiry_insert(resv, e);
	resv->count++;
}

bool
mk_quota_resv_release(struct mk_quota_resv *resv, const char *mailbox)
{
	struct quota_box *box = quota_box_find(resv, mailbox);

	if (box == NULL)
		return false;
	quota_entry_drop(resv, box->head);
	resv->stats.released++;
	return true;
}

size_t
mk_quota_resv_expire(struct mk_quota_resv *resv, int64_t now)
{
	size_t before = resv->count;

	while (resv->ehead != NULL && resv->ehead->expires <= now)
		quota_entry_drop(resv, resv->ehead);
	resv->stats.expired += before - resv->count;
	return before - resv->count;
}

void
mk_quota_resv_free(struct mk_quota_resv **resvp)
{
	struct mk_quota_resv *r = *resvp;

	if (r == NULL)
		return;
	while (r->ehead != NULL)
		quota_entry_drop(r, r->ehead);
	mk_hmap_free(&r->boxes);
	mk_hmap_free(&r->domains);
	mk_hmap_free(&r->entries);
	free(r);
	*resvp = NULL;
}

void
mk_quota_resv_get(const struct mk_quota_resv *resv, const char *mailbox,
    const char *txn, const char *rcpt, uint64_t *bytes_r, uint64_t *messages_r,
    uint64_t *own_bytes_r)
{
	const struct quota_box *box = quota_box_find(resv, mailbox);
	const struct quota_resv_entry *own = NULL;
	unsigned __int128 bytes = 0;
	size_t messages = 0;

	if (box != NULL) {
		bytes = box->bytes;
		messages = box->nentries;
		if (txn != NULL && rcpt != NULL) {
			struct quota_resv_key k = { mailbox, txn, rcpt };

			own = quota_entry_find(resv, &k, quota_entry_hash(&k));
		}
		if (own != NULL) {
			bytes -= own->bytes;
			messages--;
		}
	}
	*bytes_r = quota_saturate(bytes);
	*messages_r = messages;
	if (own_bytes_r != NULL)
		*own_bytes_r = own != NULL ? own->bytes : 0;
}

void
mk_quota_resv_get_domain(const struct mk_quota_resv *resv, const char *domain,
    uint64_t *bytes_r, uint64_t *messages_r)
{
	const struct quota_domain *d;

	d = mk_hmap_get(
	    resv->domains, quota_hash(domain), quota_domain_match, domain);
	*bytes_r = d != NULL ? quota_saturate(d->bytes) : 0;
	*messages_r = d != NULL ? d->nentries : 0;
}

size_t
mk_quota_resv_count(const struct mk_quota_resv *resv)
{
	return resv->count;
}
