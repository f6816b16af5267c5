#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/hmap.h"
#include "mailkeep/limits.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

/* A named set of limits: an address, "@domain" or "default". */
struct limits_entry {
	char *name;
	struct mk_quota_limits l;
};

struct mk_limits {
	struct mk_quota_rules *rules;
	enum mk_quota_basis basis;
	struct mk_quota_limits config_default;
	struct mk_hmap *domains; /* "@domain" from the config */
	struct mk_hmap *pools; /* "@domain" */
	struct mk_hmap *imported; /* address */
	struct mk_hmap *mailboxes; /* address, from the config */
	struct mk_hmap *set; /* run time: default, @domain, address */
	uint64_t default_key; /* of "default" */
};

static bool
limits_match(const void *value, const void *ctx)
{
	return strcmp(((const struct limits_entry *)value)->name, ctx) == 0;
}

static uint64_t
limits_key(const char *name)
{
	return mk_hmap_hash(name, strlen(name));
}

/* The entry of name, whose key is key, in map; an empty map costs
 * nothing. */
static struct limits_entry *
limits_find_key(const struct mk_hmap *map, const char *name, uint64_t key)
{
	if (mk_hmap_count(map) == 0)
		return NULL;
	return mk_hmap_get(map, key, limits_match, name);
}

static struct limits_entry *
limits_find(const struct mk_hmap *map, const char *name)
{
	return mk_hmap_count(map) == 0
	    ? NULL
	    : mk_hmap_get(map, limits_key(name), limits_match, name);
}

/* Add or replace name's limits in map. */
static void
limits_put(
    struct mk_hmap *map, const char *name, const struct mk_quota_limits *l)
{
	struct limits_entry *e = limits_find(map, name);

	if (e == NULL) {
		e = mk_xcalloc(1, sizeof(*e));
		e->name = mk_xstrdup(name);
		mk_str_lower(e->name);
		mk_hmap_put(map, limits_key(e->name), e);
	}
	e->l = *l;
}

static void
limits_map_free(struct mk_hmap **mapp)
{
	struct limits_entry *e;
	size_t pos = 0;

	if (*mapp == NULL)
		return;
	while ((e = mk_hmap_next(*mapp, &pos)) != NULL) {
		free(e->name);
		free(e);
	}
	mk_hmap_free(mapp);
}

static int
limits_import_cb(void *arg, const char *address,
    const struct mk_quota_limits *l, struct mk_err *err)
{
	(void)err;
	limits_put(arg, address, l);
	return 0;
}

/* Parse the entries of one free section into map, names prefixed. */
static int
limits_section(const struct mk_conf *conf, const char *section,
    enum mk_quota_source source, bool domain, struct mk_hmap *map,
    struct mk_err *err)
{
	struct mk_quota_limits l;
	char name[512];
	size_t i;

	for (i = 0; i < conf->nentries; i++) {
		const struct mk_conf_entry *e = &conf->entries[i];

		if (strcmp(e->section, section) != 0)
			continue;
		if (domain ? strchr(e->key, '@') != NULL
			   : strchr(e->key, '@') == NULL)
			return mk_err_set(err, "%s: '%s' is not %s", e->where,
			    e->key, domain ? "a domain" : "an address");
		if (mk_quota_limits_parse(e->value, source, &l, err) < 0)
			return mk_err_prefix(err, "%s", e->where);
		snprintf(name, sizeof(name), "%s%s", domain ? "@" : "", e->key);
		limits_put(map, name, &l);
	}
	return 0;
}

int
mk_limits_new(const struct mk_conf *conf, struct mk_limits **limits_r,
    struct mk_warnings *warnings, struct mk_err *err)
{
	struct mk_limits *limits = mk_xcalloc(1, sizeof(*limits));

	*limits_r = NULL;
	limits->rules = mk_quota_rules_new();
	limits->basis = (enum mk_quota_basis)conf->quota_basis;
	limits->domains = mk_hmap_new();
	limits->pools = mk_hmap_new();
	limits->imported = mk_hmap_new();
	limits->mailboxes = mk_hmap_new();
	limits->set = mk_hmap_new();
	limits->default_key = limits_key("default");
	if (conf->quota_default != NULL &&
	    mk_quota_limits_parse(conf->quota_default, MK_QUOTA_SOURCE_CONFIG,
		&limits->config_default, err) < 0) {
		mk_err_prefix(err, "[quota] default");
		goto fail;
	}
	if (mk_quota_rules_set_grace(limits->rules, conf->quota_grace, err) <
	    0) {
		mk_err_prefix(err, "[quota] grace");
		goto fail;
	}
	if (conf->quota_folder_rules != NULL &&
	    mk_quota_rules_add_list(
		limits->rules, conf->quota_folder_rules, err) < 0) {
		mk_err_prefix(err, "[quota] folder_rules");
		goto fail;
	}
	if (limits_section(conf, "quota.domain", MK_QUOTA_SOURCE_DOMAIN, true,
		limits->domains, err) < 0 ||
	    limits_section(conf, "quota.pool", MK_QUOTA_SOURCE_DOMAIN, true,
		limits->pools, err) < 0 ||
	    limits_section(conf, "quota.mailbox", MK_QUOTA_SOURCE_MAILBOX,
		false, limits->mailboxes, err) < 0)
		goto fail;
	if (conf->quota_import != NULL &&
	    mk_quota_import_passwd_file(conf->quota_import, limits_import_cb,
		limits->imported, warnings, err) < 0)
		goto fail;
	*limits_r = limits;
	return 0;
fail:
	mk_limits_free(&limits);
	return -1;
}

void
mk_limits_free(struct mk_limits **limitsp)
{
	struct mk_limits *limits = *limitsp;

	if (limits == NULL)
		return;
	mk_quota_rules_free(&limits->rules);
	limits_map_free(&limits->domains);
	limits_map_free(&limits->pools);
	limits_map_free(&limits->imported);
	limits_map_free(&limits->mailboxes);
	limits_map_free(&limits->set);
	free(limits);
	*limitsp = NULL;
}

int
mk_limits_target_check(const char *target, struct mk_err *err)
{
	if (target[0] == '\0' || strchr(target, '/') != NULL ||
	    (target[0] == '@' && target[1] == '\0') ||
	    (strcmp(target, "default") != 0 && strchr(target, '@') == NULL))
		return mk_err_set(err,
		    "'%s': give an address, @DOMAIN or "
		    "default",
		    target);
	return 0;
}

int
mk_limits_set(struct mk_limits *limits, const char *target,
    const struct mk_quota_limits *l, struct mk_err *err)
{
	struct limits_entry *e;

	if (mk_limits_target_check(target, err) < 0)
		return -1;
	if (l->bytes_from == MK_QUOTA_SOURCE_NONE &&
	    l->messages_from == MK_QUOTA_SOURCE_NONE) {
		if ((e = limits_find(limits->set, target)) != NULL) {
			mk_hmap_remove(limits->set, limits_key(e->name), e);
			free(e->name);
			free(e);
		}
		return 0;
	}
	limits_put(limits->set, target, l);
	return 0;
}

int
mk_limits_get_set(const struct mk_limits *limits, const char *target,
    struct mk_quota_limits *l_r)
{
	const struct limits_entry *e = limits_find(limits->set, target);

	if (e == NULL)
		return 0;
	*l_r = e->l;
	return 1;
}

/*
 * Lay a run-time limit at the rank of the layer it stands for: a default
 * or domain set at run time replaces the config's default or domain, and
 * a mailbox set at run time ranks above everything.
 */
static void
limits_apply_set(struct mk_quota_limits *l, const struct limits_entry *e,
    enum mk_quota_source rank)
{
	struct mk_quota_limits layer = e->l;

	if (layer.bytes_from != MK_QUOTA_SOURCE_NONE)
		layer.bytes_from = rank;
	if (layer.messages_from != MK_QUOTA_SOURCE_NONE)
		layer.messages_from = rank;
	mk_quota_limits_apply(l, &layer);
}

void
mk_limits_lookup(const struct mk_limits *limits, const char *address,
    struct mk_quota_limits *l_r)
{
	const char *at = strrchr(address, '@');
	size_t nset = mk_hmap_count(limits->set);
	const struct limits_entry *e;
	uint64_t key;

	/* Each name is hashed once, and only when a map may hold it: this
	 * runs for every policy request. */
	*l_r = limits->config_default;
	if ((e = limits_find_key(
		 limits->set, "default", limits->default_key)) != NULL)
		limits_apply_set(l_r, e, MK_QUOTA_SOURCE_CONFIG);
	if (at != NULL && nset + mk_hmap_count(limits->domains) > 0) {
		key = limits_key(at);
		if ((e = limits_find_key(limits->domains, at, key)) != NULL)
			mk_quota_limits_apply(l_r, &e->l);
		if ((e = limits_find_key(limits->set, at, key)) != NULL)
			limits_apply_set(l_r, e, MK_QUOTA_SOURCE_DOMAIN);
	}
	if (nset + mk_hmap_count(limits->imported) +
		mk_hmap_count(limits->mailboxes) ==
	    0)
		return;
	key = limits_key(address);
	if ((e = limits_find_key(limits->imported, address, key)) != NULL)
		mk_quota_limits_apply(l_r, &e->l);
	if ((e = limits_find_key(limits->mailboxes, address, key)) != NULL)
		mk_quota_limits_apply(l_r, &e->l);
	if ((e = limits_find_key(limits->set, address, key)) != NULL)
		limits_apply_set(l_r, e, MK_QUOTA_SOURCE_CATALOG);
}

bool
mk_limits_has_pools(const struct mk_limits *limits)
{
	return mk_hmap_count(limits->pools) > 0;
}

int
mk_limits_pool(const struct mk_limits *limits, const char *address,
    struct mk_quota_limits *l_r)
{
	const char *at = strrchr(address, '@');
	const struct limits_entry *e;

	if (at == NULL || (e = limits_find(limits->pools, at)) == NULL)
		return 0;
	*l_r = e->l;
	return 1;
}

const struct mk_quota_rules *
mk_limits_rules(const struct mk_limits *limits)
{
	return limits->rules;
}

enum mk_quota_basis
mk_limits_basis(const struct mk_limits *limits)
{
	return limits->basis;
}

int
mk_limits_parse_set(
    int argc, char **argv, struct mk_quota_limits *l_r, struct mk_err *err)
{
	uint64_t v;
	int i;

	memset(l_r, 0, sizeof(*l_r));
	if (argc == 0)
		return mk_err_set(err, "give storage=SIZE and/or messages=N");
	for (i = 0; i < argc; i++) {
		if (strncmp(argv[i], "storage=", 8) == 0) {
			if (mk_str_parse_size(argv[i] + 8, &v, err) < 0)
				return mk_err_prefix(err, "storage");
			l_r->bytes = v;
			l_r->bytes_from = MK_QUOTA_SOURCE_CATALOG;
		} else if (strncmp(argv[i], "messages=", 9) == 0) {
			if (mk_str_parse_u64(argv[i] + 9, &v, err) < 0)
				return mk_err_prefix(err, "messages");
			l_r->messages = v;
			l_r->messages_from = MK_QUOTA_SOURCE_CATALOG;
		} else
			return mk_err_set(err,
			    "'%s': give storage=SIZE or "
			    "messages=N",
			    argv[i]);
	}
	return 0;
}
