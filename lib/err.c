#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mailkeep/err.h"

void
mk_err_clear(struct mk_err *err)
{
	if (err == NULL)
		return;
	err->sys_errno = 0;
	err->msg[0] = '\0';
}

int
mk_err_set(struct mk_err *err, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	err->sys_errno = 0;
	return -1;
}

int
mk_err_sys(struct mk_err *err, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t len;

	if (err == NULL) {
		errno = saved;
		return -1;
	}
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	len = strlen(err->msg);
	snprintf(
	    err->msg + len, sizeof(err->msg) - len, ": %s", strerror(saved));
	err->sys_errno = saved;
	errno = saved;
	return -1;
}

int
mk_err_prefix(struct mk_err *err, const char *fmt, ...)
{
	char prefix[MK_ERR_MSG_MAX], joined[2 * MK_ERR_MSG_MAX + 2];
	va_list ap;

	if (err == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s: %s", prefix, err->msg);
	memcpy(err->msg, joined, sizeof(err->msg) - 1);
	err->msg[sizeof(err->msg) - 1] = '\0';
	return -1;
}

void
mk_warnings_add(struct mk_warnings *w, const char *fmt, ...)
{
	va_list ap;

	if (w->count++ > 0)
		return;
	va_start(ap, fmt);
	vsnprintf(w->first, sizeof(w->first), fmt, ap);
	va_end(ap);
}
