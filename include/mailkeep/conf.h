/*
 * conf: the configuration file, "key = value" lines in [sections].
 *
 * Every key is declared once in a table (lib/conf.c) with its type,
 * default and bounds; docs/config.md lists them.  Errors read
 * "FILE:LINE: message".  Lines starting with '#' or ';' are comments, as
 * is anything after " #" on a line.  A key may appear once.
 */
#ifndef MAILKEEP_CONF_H
#define MAILKEEP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/retention.h"

#define MK_CONF_DEFAULT_PATH MK_SYSCONFDIR "/mailkeep/mailkeep.conf"

/* A key of a section whose keys are names (a domain, an address). */
struct mk_conf_entry {
	char *section;
	char *key; /* lower case */
	char *value;
	char *where; /* "FILE:LINE", for errors found later */
};

struct mk_conf {
	/* [store] */
	char *store_root;
	char *store_template;
	char hierarchy_separator;

	/* [general] */
	char *state_dir;
	char *catalog; /* default: <state_dir>/catalog.db */
	int log_level; /* enum mk_log_level */

	/* [daemon]; sockets default to <state_dir> without a config file,
	 * else to /run/mailkeep */
	char *status_socket;
	char *control_socket;
	char *admin_group; /* may use the control socket besides root */
	char *metrics_listen; /* "127.0.0.1:PORT": /metrics over TCP */
	char *metrics_token_file; /* bearer token for the TCP listener */
	uint64_t workers;
	uint64_t audit_interval; /* seconds */
	uint64_t poll_interval; /* seconds */
	uint64_t request_timeout; /* seconds, per HTTP request */

	/* [quota] */
	char *quota_default; /* limits for every mailbox */
	char *quota_grace;
	int quota_basis; /* enum mk_quota_basis */
	char *quota_folder_rules; /* "Junk:ignore; Trash:+10%" */
	char *quota_import; /* a Dovecot passwd-file with quota rules */
	bool quota_maildirsize; /* keep maildirsize in limited mailboxes */
	char *warn_thresholds; /* "80 90 100" */
	uint64_t warn_repeat; /* seconds */
	char *warn_template;
	char *warn_from;
	char *warn_hook;
	char *digest_to; /* the administrator's address; NULL: no digest */
	char *digest_time; /* "HH:MM", local time */
	uint64_t digest_top;
	char *digest_sendmail; /* "/usr/sbin/sendmail -i --" */
	char *doveconf; /* "doveconf" or "doveconf -c FILE"; NULL: look */

	/* [policy] */
	char *policy_socket;
	char *policy_listen;
	int policy_refusal; /* enum mk_policy_refusal */
	char *policy_text;
	char *policy_aliases;
	char *policy_delimiter;
	int policy_alias_policy; /* enum mk_aliases_policy */
	uint64_t policy_resv_ttl; /* seconds */
	uint64_t policy_resv_max; /* pending reservations per mailbox */

	/* [quota.domain], [quota.pool], [quota.mailbox]: names as keys */
	struct mk_conf_entry *entries;
	size_t nentries, entcap;

	/* [repository] */
	char *repo_location; /* default: <state_dir>/repository */
	char *repo_key_file; /* default: <state_dir>/repo.key */
	uint64_t repo_compression_level; /* zstd level of a new repository */
	/* s3: locations only (struct mk_storage_opts) */
	char *repo_region;
	int repo_url_style; /* enum mk_storage_url_style */
	char *repo_credentials_file;
	char *repo_ca_file;
	uint64_t repo_bandwidth_limit; /* bytes per second, 0: none */
	uint64_t repo_connections;
	uint64_t repo_retries;
	uint64_t repo_timeout; /* seconds */
	uint64_t repo_multipart_threshold; /* bytes */
	uint64_t repo_part_size; /* bytes */

	/* [backup]: runs in mailkeepd */
	char *backup_schedule; /* a cron expression, or NULL: none */
	uint64_t backup_concurrency; /* mailboxes backed up at once */
	uint64_t backup_bandwidth; /* bytes read per second; 0: no limit */
	uint64_t backup_jitter; /* seconds: a scheduled start is delayed by
				   up to this, at random */
	bool backup_run_at_start; /* one run when the daemon starts */
	int backup_dictionary; /* enum mk_dict_mode: off, auto */
	uint64_t backup_lock_wait; /* seconds a job waits for the repository
				      lock; 0: fails at once */
	char *verify_check_schedule; /* cron: check --sample, or NULL */
	uint64_t verify_check_sample; /* percent of packs read whole */
	char *verify_restore_schedule; /* cron: a test restore, or NULL */

	/* [restore] */
	char *restore_doveadm; /* restores into live mailboxes go through it */
	char *restore_doveadm_config; /* its -c; default: Dovecot's own */
	char *restore_root; /* mailkeepd restores to directories only here */

	/* [retention] */
	struct mk_retention retention; /* keep_last ... keep_yearly */
	uint64_t deleted_retention; /* seconds a gone mailbox is kept */
	uint64_t gc_grace; /* seconds from tombstone to deletion */
	uint64_t repack_threshold; /* percent live below which to repack */
};

/* A configuration holding every default. */
struct mk_conf *mk_conf_new(void);
void mk_conf_free(struct mk_conf **confp);

/* Read path over conf.  On error conf may be partly changed: load into a
 * fresh mk_conf_new() and swap on success (as a reload does). */
int mk_conf_load(struct mk_conf *conf, const char *path, struct mk_err *err);

/*
 * Where the programs' options say the settings come from: -c FILE, or
 * --store and --state with embedded defaults and no file, or the default
 * file.  Options given override the file.  Fills derived paths.
 */
struct mk_conf_args {
	const char *config; /* -c */
	const char *store; /* --store */
	const char *state; /* --state */
};
int mk_conf_setup(const struct mk_conf_args *args, struct mk_conf **conf_r,
    struct mk_err *err);

#endif
