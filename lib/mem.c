#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

void *
mk_xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		mk_fatal("mem", "malloc(%zu): out of memory", size);
	return p;
}

void *
mk_xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);

	if (p == NULL)
		mk_fatal("mem", "calloc(%zu, %zu): out of memory", nmemb, size);
	return p;
}

void *
mk_xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		mk_fatal(
		    "mem", "reallocarray(%zu, %zu): overflow", nmemb, size);
	p = realloc(ptr, nmemb * size == 0 ? 1 : nmemb * size);
	if (p == NULL)
		mk_fatal("mem", "realloc(%zu): out of memory", nmemb * size);
	return p;
}

char *
mk_xstrdup(const char *s)
{
	return mk_xstrndup(s, strlen(s));
}

char *
mk_xstrndup(const char *s, size_t n)
{
	char *p;

	n = strnlen(s, n);
	p = mk_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
mk_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		mk_fatal("mem", "vasprintf: out of memory");
	return p;
}

void
mk_xgrow(void *array, size_t *cap, size_t need, size_t size)
{
	void **ap = array;
	size_t ncap = *cap;

	if (need <= ncap)
		return;
	if (ncap < 8)
		ncap = 8;
	while (ncap < need) {
		if (ncap > SIZE_MAX / 2)
			mk_fatal("mem", "grow(%zu): overflow", need);
		ncap *= 2;
	}
	*ap = mk_xreallocarray(*ap, ncap, size);
	*cap = ncap;
}
