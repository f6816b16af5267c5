/*
 * mem: allocation that cannot fail.  Running out of memory is fatal: a
 * daemon that half-applies an event is worse than one that restarts.
 */
#ifndef MAILKEEP_MEM_H
#define MAILKEEP_MEM_H

#include <stddef.h>

#include "mailkeep/err.h"

void *mk_xmalloc(size_t size);
void *mk_xcalloc(size_t nmemb, size_t size);
/* Resize an array of nmemb elements of size bytes; overflow is fatal. */
void *mk_xreallocarray(void *ptr, size_t nmemb, size_t size);
char *mk_xstrdup(const char *s);
char *mk_xstrndup(const char *s, size_t n);
char *mk_xasprintf(const char *fmt, ...) MK_PRINTF(1, 2);

/*
 * Grow *array so that it holds at least need elements of size bytes;
 * *cap is the current capacity and is updated.
 */
void mk_xgrow(void *array, size_t *cap, size_t need, size_t size);

#endif
