#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "mailkeep/conf.h"
#include "mailkeep/mem.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#define CONF_LINE_MAX 4096

enum conf_type {
	CONF_STRING, /* any non-empty text */
	CONF_PATH, /* an absolute path */
	CONF_CHAR, /* one character out of allowed */
	CONF_UINT, /* a number from min to max */
	CONF_DURATION, /* seconds, with s m h d, from min to max */
	CONF_SIZE, /* bytes, with K M G T, from min to max */
	CONF_ENUM, /* one word of allowed ("a|b|c"), stored as its index */
	CONF_BOOL, /* yes/no, true/false, on/off, 1/0 */
};

/* Sections whose keys are names (domains, addresses), not settings. */
static const char *const conf_free_sections[] = { "quota.domain", "quota.pool",
	"quota.mailbox" };

struct conf_key {
	const char *section;
	const char *name;
	enum conf_type type;
	size_t offset;
	const char *def; /* NULL: no default, derived or unset */
	const char *allowed; /* CONF_CHAR and CONF_ENUM: what is allowed */
	uint64_t min, max; /* CONF_UINT, CONF_DURATION and CONF_SIZE */
};

#define CONF_AT(m) offsetof(struct mk_conf, m)

static const struct conf_key conf_keys[] = {
	{ "store", "root", CONF_PATH, CONF_AT(store_root), "/var/vmail", NULL },
	{ "store", "template", CONF_STRING, CONF_AT(store_template),
	    "%d/%n/Maildir", NULL },
	{ "store", "hierarchy_separator", CONF_CHAR,
	    CONF_AT(hierarchy_separator), "/", "/." },
	{ "general", "state_dir", CONF_PATH, CONF_AT(state_dir),
	    MK_LOCALSTATEDIR "/lib/mailkeep", NULL },
	{ "general", "catalog", CONF_PATH, CONF_AT(catalog), NULL, NULL },
	{ "general", "log_level", CONF_ENUM, CONF_AT(log_level), "info",
	    "error|warning|info|debug" },
	{ "daemon", "status_socket", CONF_PATH, CONF_AT(status_socket), NULL,
	    NULL },
	{ "daemon", "control_socket", CONF_PATH, CONF_AT(control_socket), NULL,
	    NULL },
	{ "daemon", "admin_group", CONF_STRING, CONF_AT(admin_group), NULL,
	    NULL },
	{ "daemon", "metrics_listen", CONF_STRING, CONF_AT(metrics_listen),
	    NULL, NULL },
	{ "daemon", "metrics_token_file", CONF_PATH,
	    CONF_AT(metrics_token_file), NULL, NULL },
	{ "daemon", "workers", CONF_UINT, CONF_AT(workers), "2", NULL, 1, 64 },
	{ "daemon", "audit_interval", CONF_DURATION, CONF_AT(audit_interval),
	    "6h", NULL, 60, 30 * 86400 },
	{ "daemon", "poll_interval", CONF_DURATION, CONF_AT(poll_interval),
	    "60s", NULL, 1, 86400 },
	{ "daemon", "request_timeout", CONF_DURATION, CONF_AT(request_timeout),
	    "10s", NULL, 1, 3600 },
	{ "quota", "default", CONF_STRING, CONF_AT(quota_default), NULL, NULL },
	{ "quota", "grace", CONF_STRING, CONF_AT(quota_grace), "10%", NULL },
	{ "quota", "basis", CONF_ENUM, CONF_AT(quota_basis), "physical",
	    "physical|virtual" },
	{ "quota", "folder_rules", CONF_STRING, CONF_AT(quota_folder_rules),
	    NULL, NULL },
	{ "quota", "import_passwd_file", CONF_PATH, CONF_AT(quota_import), NULL,
	    NULL },
	{ "quota", "maildirsize", CONF_BOOL, CONF_AT(quota_maildirsize), "yes",
	    NULL },
	{ "quota", "warn_thresholds", CONF_STRING, CONF_AT(warn_thresholds),
	    "80 90 100", NULL },
	{ "quota", "warn_repeat", CONF_DURATION, CONF_AT(warn_repeat), "24h",
	    NULL, 0, 365 * 86400 },
	{ "quota", "warn_template", CONF_PATH, CONF_AT(warn_template), NULL,
	    NULL },
	{ "quota", "warn_from", CONF_STRING, CONF_AT(warn_from), NULL, NULL },
	{ "quota", "warn_hook", CONF_PATH, CONF_AT(warn_hook), NULL, NULL },
	{ "quota", "digest_to", CONF_STRING, CONF_AT(digest_to), NULL, NULL },
	{ "quota", "digest_time", CONF_STRING, CONF_AT(digest_time), "07:00",
	    NULL },
	{ "quota", "digest_top", CONF_UINT, CONF_AT(digest_top), "20", NULL, 1,
	    1000 },
	{ "quota", "digest_sendmail", CONF_STRING, CONF_AT(digest_sendmail),
	    NULL, NULL },
	{ "quota", "doveconf", CONF_STRING, CONF_AT(doveconf), NULL, NULL },
	{ "policy", "socket", CONF_PATH, CONF_AT(policy_socket), NULL, NULL },
	{ "policy", "listen", CONF_STRING, CONF_AT(policy_listen), NULL, NULL },
	{ "policy", "refusal", CONF_ENUM, CONF_AT(policy_refusal), "permanent",
	    "permanent|temporary" },
	{ "policy", "text", CONF_STRING, CONF_AT(policy_text),
	    "Mailbox is full", NULL },
	{ "policy", "aliases", CONF_PATH, CONF_AT(policy_aliases), NULL, NULL },
	{ "policy", "recipient_delimiter", CONF_STRING,
	    CONF_AT(policy_delimiter), "+", NULL },
	{ "policy", "alias_policy", CONF_ENUM, CONF_AT(policy_alias_policy),
	    "all", "all|any" },
	{ "policy", "reservation_ttl", CONF_DURATION, CONF_AT(policy_resv_ttl),
	    "15m", NULL, 10, 86400 },
	{ "policy", "reservations_max", CONF_UINT, CONF_AT(policy_resv_max),
	    "100", NULL, 1, 1000000 },
	{ "repository", "location", CONF_STRING, CONF_AT(repo_location), NULL,
	    NULL },
	{ "repository", "key_file", CONF_PATH, CONF_AT(repo_key_file), NULL,
	    NULL },
	{ "repository", "compression_level", CONF_UINT,
	    CONF_AT(repo_compression_level), "3", NULL, 1, 19 },
	{ "repository", "region", CONF_STRING, CONF_AT(repo_region),
	    "us-east-1", NULL },
	{ "repository", "url_style", CONF_ENUM, CONF_AT(repo_url_style), "path",
	    "path|virtual" },
	{ "repository", "credentials_file", CONF_PATH,
	    CONF_AT(repo_credentials_file), NULL, NULL },
	{ "repository", "ca_file", CONF_PATH, CONF_AT(repo_ca_file), NULL,
	    NULL },
	{ "repository", "bandwidth_limit", CONF_SIZE,
	    CONF_AT(repo_bandwidth_limit), "0", NULL, 0, UINT64_C(1) << 40 },
	{ "repository", "connections", CONF_UINT, CONF_AT(repo_connections),
	    "4", NULL, 1, 64 },
	{ "repository", "retries", CONF_UINT, CONF_AT(repo_retries), "8", NULL,
	    0, 30 },
	{ "repository", "timeout", CONF_DURATION, CONF_AT(repo_timeout), "30s",
	    NULL, 1, 3600 },
	{ "repository", "multipart_threshold", CONF_SIZE,
	    CONF_AT(repo_multipart_threshold), "16M", NULL, 5u << 20,
	    UINT64_C(5) << 30 },
	{ "repository", "part_size", CONF_SIZE, CONF_AT(repo_part_size), "8M",
	    NULL, 5u << 20, UINT64_C(5) << 30 },
	{ "backup", "schedule", CONF_STRING, CONF_AT(backup_schedule), NULL,
	    NULL },
	{ "backup", "concurrency", CONF_UINT, CONF_AT(backup_concurrency), "1",
	    NULL, 1, 64 },
	{ "backup", "bandwidth", CONF_SIZE, CONF_AT(backup_bandwidth), "0",
	    NULL, 0, UINT64_MAX },
	{ "backup", "jitter", CONF_DURATION, CONF_AT(backup_jitter), "0", NULL,
	    0, 86400 },
	{ "backup", "run_at_start", CONF_BOOL, CONF_AT(backup_run_at_start),
	    "no", NULL },
	{ "backup", "dictionary", CONF_ENUM, CONF_AT(backup_dictionary), "auto",
	    "off|auto" },
	{ "backup", "lock_wait", CONF_DURATION, CONF_AT(backup_lock_wait), "1h",
	    NULL, 0, 604800 },
	{ "verify", "check_schedule", CONF_STRING,
	    CONF_AT(verify_check_schedule), NULL, NULL },
	{ "verify", "check_sample", CONF_UINT, CONF_AT(verify_check_sample),
	    "1", NULL, 0, 100 },
	{ "verify", "restore_schedule", CONF_STRING,
	    CONF_AT(verify_restore_schedule), NULL, NULL },
	{ "restore", "doveadm", CONF_PATH, CONF_AT(restore_doveadm), NULL,
	    NULL },
	{ "restore", "doveadm_config", CONF_PATH,
	    CONF_AT(restore_doveadm_config), NULL, NULL },
	{ "restore", "root", CONF_PATH, CONF_AT(restore_root), NULL, NULL },
	{ "retention", "keep_last", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_LAST]), "0", NULL, 0, 1000000 },
	{ "retention", "keep_hourly", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_HOURLY]), "0", NULL, 0,
	    1000000 },
	{ "retention", "keep_daily", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_DAILY]), "0", NULL, 0,
	    1000000 },
	{ "retention", "keep_weekly", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_WEEKLY]), "0", NULL, 0,
	    1000000 },
	{ "retention", "keep_monthly", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_MONTHLY]), "0", NULL, 0,
	    1000000 },
	{ "retention", "keep_yearly", CONF_UINT,
	    CONF_AT(retention.keep[MK_RETENTION_YEARLY]), "0", NULL, 0,
	    1000000 },
	{ "retention", "deleted_retention", CONF_DURATION,
	    CONF_AT(deleted_retention), "30d", NULL, 0, 100ull * 365 * 86400 },
	{ "retention", "gc_grace", CONF_DURATION, CONF_AT(gc_grace), "24h",
	    NULL, 0, 365ull * 86400 },
	{ "retention", "repack_threshold", CONF_UINT, CONF_AT(repack_threshold),
	    "50", NULL, 0, 100 },
};

#define CONF_NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static void *
conf_field(struct mk_conf *conf, const struct conf_key *k)
{
	return (char *)conf + k->offset;
}

/* Store value into the field of k, checking its type. */
/* Store the index of value among the words of k->allowed. */
static int
conf_set_enum(struct mk_conf *conf, const struct conf_key *k, const char *value,
    struct mk_err *err)
{
	const char *p = k->allowed;
	size_t len = strlen(value);
	int i;

	for (i = 0; *p != '\0'; i++) {
		size_t wlen = strcspn(p, "|");

		if (wlen == len && strncmp(p, value, len) == 0) {
			*(int *)conf_field(conf, k) = i;
			return 0;
		}
		p += wlen;
		if (*p == '|')
			p++;
	}
	return mk_err_set(
	    err, "%s: '%s' is not one of %s", k->name, value, k->allowed);
}

static int
conf_set(struct mk_conf *conf, const struct conf_key *k, const char *value,
    struct mk_err *err)
{
	uint64_t v;
	char **sp;

	switch (k->type) {
	case CONF_PATH:
		if (value[0] != '/')
			return mk_err_set(err,
			    "%s: '%s' is not an absolute path", k->name, value);
		/* FALLTHROUGH */
	case CONF_STRING:
		if (value[0] == '\0')
			return mk_err_set(err, "%s: empty value", k->name);
		sp = conf_field(conf, k);
		free(*sp);
		*sp = mk_xstrdup(value);
		return 0;
	case CONF_CHAR:
		if (strlen(value) != 1 || strchr(k->allowed, value[0]) == NULL)
			return mk_err_set(err, "%s: '%s' is not one of \"%s\"",
			    k->name, value, k->allowed);
		*(char *)conf_field(conf, k) = value[0];
		return 0;
	case CONF_UINT:
	case CONF_DURATION:
	case CONF_SIZE:
		if ((k->type == CONF_UINT ? mk_str_parse_u64(value, &v, err)
			    : k->type == CONF_SIZE
			    ? mk_str_parse_size(value, &v, err)
			    : mk_str_parse_duration(value, &v, err)) < 0)
			return mk_err_prefix(err, "%s", k->name);
		if (v < k->min || v > k->max)
			return mk_err_set(err,
			    "%s: '%s' is out of range (%llu to %llu%s)",
			    k->name, value, (unsigned long long)k->min,
			    (unsigned long long)k->max,
			    k->type == CONF_DURATION ? " seconds" : "");
		*(uint64_t *)conf_field(conf, k) = v;
		return 0;
	case CONF_ENUM:
		return conf_set_enum(conf, k, value, err);
	case CONF_BOOL:
		if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
		    strcmp(value, "on") == 0 || strcmp(value, "1") == 0)
			*(bool *)conf_field(conf, k) = true;
		else if (strcmp(value, "no") == 0 ||
		    strcmp(value, "false") == 0 || strcmp(value, "off") == 0 ||
		    strcmp(value, "0") == 0)
			*(bool *)conf_field(conf, k) = false;
		else
			return mk_err_set(
			    err, "%s: '%s' is not yes or no", k->name, value);
		return 0;
	}
	return mk_err_set(err, "%s: unknown type", k->name);
}

struct mk_conf *
mk_conf_new(void)
{
	struct mk_conf *conf = mk_xcalloc(1, sizeof(*conf));
	size_t i;

	for (i = 0; i < CONF_NKEYS; i++) {
		if (conf_keys[i].def == NULL)
			continue;
		if (conf_set(conf, &conf_keys[i], conf_keys[i].def, NULL) < 0)
			abort();
	}
	return conf;
}

void
mk_conf_free(struct mk_conf **confp)
{
	struct mk_conf *conf = *confp;
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < CONF_NKEYS; i++)
		if (conf_keys[i].type == CONF_STRING ||
		    conf_keys[i].type == CONF_PATH)
			free(*(char **)conf_field(conf, &conf_keys[i]));
	for (i = 0; i < conf->nentries; i++) {
		free(conf->entries[i].section);
		free(conf->entries[i].key);
		free(conf->entries[i].value);
		free(conf->entries[i].where);
	}
	free(conf->entries);
	free(conf);
	*confp = NULL;
}

static char *
conf_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s &&
	    (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static const struct conf_key *
conf_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < CONF_NKEYS; i++)
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

static bool
conf_section_free(const char *section)
{
	size_t i;

	for (i = 0; i < sizeof(conf_free_sections) / sizeof(char *); i++)
		if (strcmp(conf_free_sections[i], section) == 0)
			return true;
	return false;
}

/* A key of a free section: a name and its value, once each. */
static int
conf_add_entry(struct mk_conf *conf, const char *section, const char *key,
    const char *value, const char *where, struct mk_err *err)
{
	struct mk_conf_entry *e;
	size_t i;

	if (key[0] == '\0' || value[0] == '\0')
		return mk_err_set(err, "empty name or value in [%s]", section);
	for (i = 0; i < conf->nentries; i++)
		if (strcmp(conf->entries[i].section, section) == 0 &&
		    strcasecmp(conf->entries[i].key, key) == 0)
			return mk_err_set(
			    err, "'%s' in [%s] given twice", key, section);
	mk_xgrow(&conf->entries, &conf->entcap, conf->nentries + 1,
	    sizeof(*conf->entries));
	e = &conf->entries[conf->nentries++];
	e->section = mk_xstrdup(section);
	e->key = mk_xstrdup(key);
	mk_str_lower(e->key);
	e->value = mk_xstrdup(value);
	e->where = mk_xstrdup(where);
	return 0;
}

static bool
conf_section_known(const char *section)
{
	size_t i;

	if (conf_section_free(section))
		return true;
	for (i = 0; i < CONF_NKEYS; i++)
		if (strcmp(conf_keys[i].section, section) == 0)
			return true;
	return false;
}

/* Parse one line; section holds the current section. */
static int
conf_line(struct mk_conf *conf, char *line, char *section, size_t ssize,
    bool *seen, const char *where, struct mk_err *err)
{
	const struct conf_key *k;
	char *s = conf_trim(line), *eq, *key, *value, *hash;

	if (*s == '\0' || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		char *end = strchr(s, ']');

		if (end == NULL || end[1] != '\0')
			return mk_err_set(err, "bad section line '%s'", s);
		*end = '\0';
		s = conf_trim(s + 1);
		if (!conf_section_known(s))
			return mk_err_set(err, "unknown section [%s]", s);
		mk_strlcpy(section, s, ssize);
		return 0;
	}
	if ((eq = strchr(s, '=')) == NULL)
		return mk_err_set(err, "expected 'key = value', got '%s'", s);
	*eq = '\0';
	key = conf_trim(s);
	value = eq + 1;
	for (hash = value; (hash = strchr(hash, '#')) != NULL; hash++)
		if (hash > value && (hash[-1] == ' ' || hash[-1] == '\t')) {
			*hash = '\0';
			break;
		}
	value = conf_trim(value);
	if (section[0] == '\0')
		return mk_err_set(err, "'%s' outside a [section]", key);
	if (conf_section_free(section))
		return conf_add_entry(conf, section, key, value, where, err);
	if ((k = conf_find(section, key)) == NULL)
		return mk_err_set(
		    err, "unknown key '%s' in [%s]", key, section);
	if (seen[k - conf_keys])
		return mk_err_set(
		    err, "'%s' in [%s] given twice", key, section);
	seen[k - conf_keys] = true;
	return conf_set(conf, k, value, err);
}

int
mk_conf_load(struct mk_conf *conf, const char *path, struct mk_err *err)
{
	bool seen[CONF_NKEYS] = { false };
	char where[4200];
	char section[64] = "", *line = NULL;
	unsigned lineno = 0;
	size_t cap = 0;
	ssize_t len;
	int rc = -1;
	FILE *fp;

	if ((fp = fopen(path, "re")) == NULL)
		return mk_err_sys(err, "open(%s)", path);
	while ((len = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		if (len > CONF_LINE_MAX) {
			mk_err_set(err, "%s:%u: line longer than %d bytes",
			    path, lineno, CONF_LINE_MAX);
			goto out;
		}
		if ((size_t)len != strlen(line)) {
			mk_err_set(err, "%s:%u: NUL byte", path, lineno);
			goto out;
		}
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (conf_line(conf, line, section, sizeof(section), seen, where,
			err) < 0) {
			mk_err_prefix(err, "%s:%u", path, lineno);
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

/* An option's path made absolute against the working directory. */
static char *
conf_absolute(const char *path)
{
	char cwd[4096];

	if (path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return mk_xstrdup(path);
	return mk_xasprintf("%s/%s", cwd, path);
}

/* Set key from a command-line option. */
static int
conf_set_option(struct mk_conf *conf, const char *section, const char *name,
    const char *value, struct mk_err *err)
{
	char *abs = conf_absolute(value);
	int rc = conf_set(conf, conf_find(section, name), abs, err);

	free(abs);
	return rc;
}

int
mk_conf_setup(const struct mk_conf_args *args, struct mk_conf **conf_r,
    struct mk_err *err)
{
	struct mk_conf *conf = mk_conf_new();
	const char *path = args->config;
	struct mk_store *store = NULL;
	const char *sockdir;

	*conf_r = NULL;
	if (path == NULL && args->store == NULL && args->state == NULL)
		path = MK_CONF_DEFAULT_PATH;
	if (path != NULL && mk_conf_load(conf, path, err) < 0) {
		if (args->config == NULL && err->sys_errno == ENOENT)
			mk_err_set(err,
			    "no configuration: %s does not exist (give -c "
			    "FILE, or --store DIR --state DIR)",
			    path);
		goto fail;
	}
	if (args->store != NULL &&
	    conf_set_option(conf, "store", "root", args->store, err) < 0)
		goto fail;
	if (args->state != NULL &&
	    conf_set_option(conf, "general", "state_dir", args->state, err) < 0)
		goto fail;
	if (mk_store_new(conf->store_root, conf->store_template, &store, err) <
	    0)
		goto fail;
	mk_store_free(&store);
	if (conf->catalog == NULL)
		conf->catalog = mk_xasprintf("%s/catalog.db", conf->state_dir);
	/* Without a file everything lives in the state directory. */
	sockdir = path == NULL ? conf->state_dir : MK_RUNSTATEDIR "/mailkeep";
	if (conf->status_socket == NULL)
		conf->status_socket = mk_xasprintf("%s/status.sock", sockdir);
	if (conf->control_socket == NULL)
		conf->control_socket = mk_xasprintf("%s/control.sock", sockdir);
	if (conf->policy_socket == NULL)
		conf->policy_socket = mk_xasprintf("%s/policy.sock", sockdir);
	if (conf->repo_location == NULL)
		conf->repo_location =
		    mk_xasprintf("%s/repository", conf->state_dir);
	if (conf->repo_key_file == NULL)
		conf->repo_key_file =
		    mk_xasprintf("%s/repo.key", conf->state_dir);
	*conf_r = conf;
	return 0;
fail:
	mk_conf_free(&conf);
	return -1;
}
