/*
 * log: one line per event on stderr (journald picks it up under systemd),
 * "<level> <module>: <message>".
 *
 * Thread-safe: each line is written with one write(2).
 */
#ifndef MAILKEEP_LOG_H
#define MAILKEEP_LOG_H

#include "mailkeep/err.h"

enum mk_log_level {
	MK_LOG_ERROR,
	MK_LOG_WARN,
	MK_LOG_INFO,
	MK_LOG_DEBUG,
};

/* Set the program name and the most verbose level that is printed. */
void mk_log_init(const char *progname, enum mk_log_level max_level);

/* Where lines go: stderr as "prog: level: module: text" (the default),
 * stderr with <N> priority prefixes for systemd's journal, or syslog. */
enum mk_log_target {
	MK_LOG_STDERR,
	MK_LOG_JOURNAL,
	MK_LOG_SYSLOG,
};
void mk_log_set_target(enum mk_log_target target);

void mk_log(enum mk_log_level level, const char *module, const char *fmt, ...)
    MK_PRINTF(3, 4);

#define mk_log_error(m, ...) mk_log(MK_LOG_ERROR, m, __VA_ARGS__)
#define mk_log_warn(m, ...) mk_log(MK_LOG_WARN, m, __VA_ARGS__)
#define mk_log_info(m, ...) mk_log(MK_LOG_INFO, m, __VA_ARGS__)
#define mk_log_debug(m, ...) mk_log(MK_LOG_DEBUG, m, __VA_ARGS__)

/* Log at error level and exit(1).  Only at startup and for broken
 * invariants. */
void mk_fatal(const char *module, const char *fmt, ...) MK_PRINTF(2, 3)
    __attribute__((noreturn));

#endif
