#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <syslog.h>
#include <unistd.h>

#include "mailkeep/log.h"

static const char *log_progname = "mailkeep";
static enum mk_log_level log_max = MK_LOG_INFO;
static enum mk_log_target log_target = MK_LOG_STDERR;

void
mk_log_init(const char *progname, enum mk_log_level max_level)
{
	log_progname = progname;
	log_max = max_level;
}

void
mk_log_set_target(enum mk_log_target target)
{
	log_target = target;
	if (target == MK_LOG_SYSLOG)
		openlog(log_progname, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static void MK_PRINTF(3, 0) log_vwrite(
    enum mk_log_level level, const char *module, const char *fmt, va_list ap)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { 3, 4, 6, 7 };
	char line[2048];
	int n, m;

	if (level > log_max)
		return;
	if (log_target == MK_LOG_SYSLOG) {
		char msg[2048];

		vsnprintf(msg, sizeof(msg), fmt, ap);
		syslog(prio[level], "%s: %s", module, msg);
		return;
	}
	if (log_target == MK_LOG_JOURNAL)
		n = snprintf(
		    line, sizeof(line), "<%d>%s: ", prio[level], module);
	else
		n = snprintf(line, sizeof(line), "%s: %s: %s: ", log_progname,
		    names[level], module);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (m < 0)
		return;
	n += m;
	if ((size_t)n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

void
mk_log(enum mk_log_level level, const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, module, fmt, ap);
	va_end(ap);
}

void
mk_fatal(const char *module, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(MK_LOG_ERROR, module, fmt, ap);
	va_end(ap);
	exit(1);
}
