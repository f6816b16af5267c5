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

#include <stdint.h>

#include "mailkeep/err.h"

#define MK_CONF_DEFAULT_PATH MK_SYSCONFDIR "/mailkeep/mailkeep.conf"

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
