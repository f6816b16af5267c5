#include <stdlib.h>
#include <string.h>

#include "mailkeep/storage.h"
#include "mailkeep/str.h"

/* Whether c may appear in an object name. */
static bool
storage_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
	    c == '/';
}

bool
mk_storage_name_valid(const char *name, struct mk_err *err)
{
	size_t len = strnlen(name, MK_STORAGE_NAME_MAX + 1), comp = 0, i;

	if (len == 0 || len > MK_STORAGE_NAME_MAX) {
		mk_err_set(err, "object name of %zu bytes not allowed", len);
		return false;
	}
	for (i = 0; i < len; i++) {
		char c = name[i];

		if (!storage_name_char(c)) {
			mk_err_set(err,
			    "object name '%.64s': byte 0x%02x not allowed",
			    name, (unsigned char)c);
			return false;
		}
		if (c == '/') {
			if (comp == 0) {
				mk_err_set(err,
				    "object name '%.64s': empty component",
				    name);
				return false;
			}
			comp = 0;
			continue;
		}
		if (comp == 0 && c == '.') {
			mk_err_set(err,
			    "object name '%.64s': a component starts with '.'",
			    name);
			return false;
		}
		if (++comp > MK_STORAGE_COMPONENT_MAX) {
			mk_err_set(err,
			    "object name '%.64s': component longer than %d",
			    name, MK_STORAGE_COMPONENT_MAX);
			return false;
		}
	}
	if (comp == 0) {
		mk_err_set(err, "object name '%.64s': ends with '/'", name);
		return false;
	}
	return true;
}

/*
 * Check an s3: location's syntax, s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX],
 * so that a typo is reported as such rather than as "not supported".
 */
static int
storage_s3_check(const char *location, struct mk_err *err)
{
	const char *p = location + 3;
	size_t n;

	if (mk_str_has_prefix(p, "https://"))
		p += 8;
	else if (mk_str_has_prefix(p, "http://"))
		p += 7;
	else
		goto bad;
	n = strspn(p,
	    "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
	if (n == 0)
		goto bad;
	p += n;
	if (*p == ':') {
		unsigned long port = 0;

		n = strspn(++p, "0123456789");
		if (n == 0 || n > 5)
			goto bad;
		port = strtoul(p, NULL, 10);
		if (port == 0 || port > 65535)
			goto bad;
		p += n;
	}
	if (*p++ != '/')
		goto bad;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-");
	if (n < 3 || n > 63)
		goto bad;
	p += n;
	if (*p == '/' && p[1] != '\0' && !mk_storage_name_valid(p + 1, err))
		return mk_err_prefix(err, "%s: bad prefix", location);
	if (*p != '\0' && *p != '/')
		goto bad;
	return 0;
bad:
	return mk_err_set(err,
	    "%s: malformed location "
	    "(expected s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX])",
	    location);
}

int
mk_storage_open(const char *location, bool create, struct mk_storage **st_r,
    struct mk_err *err)
{
	*st_r = NULL;
	if (location[0] == '/')
		return mk_storage_local_open(location, create, st_r, err);
	if (mk_str_has_prefix(location, "s3:")) {
		if (storage_s3_check(location, err) < 0)
			return -1;
		return mk_err_set(err,
		    "%s: S3 storage is not supported yet "
		    "(use a local directory)",
		    location);
	}
	return mk_err_set(err,
	    "%s: unknown repository location "
	    "(expected an absolute path or s3:...)",
	    location);
}

void
mk_storage_close(struct mk_storage **stp)
{
	struct mk_storage *st = *stp;

	if (st == NULL)
		return;
	st->ops->close(st);
	*stp = NULL;
}

int
mk_storage_put(struct mk_storage *st, const char *name, const void *data,
    size_t len, struct mk_err *err)
{
	if (!mk_storage_name_valid(name, err))
		return -1;
	return st->ops->put(st, name, data, len, err);
}

int
mk_storage_get(struct mk_storage *st, const char *name, uint8_t **data_r,
    size_t *len_r, struct mk_err *err)
{
	*data_r = NULL;
	*len_r = 0;
	if (!mk_storage_name_valid(name, err))
		return -1;
	return st->ops->get(st, name, data_r, len_r, err);
}

int
mk_storage_get_range(struct mk_storage *st, const char *name, uint64_t offset,
    void *buf, size_t len, struct mk_err *err)
{
	if (!mk_storage_name_valid(name, err))
		return -1;
	if (offset > UINT64_MAX - len)
		return mk_err_set(err, "get(%s): range overflows", name);
	return st->ops->get_range(st, name, offset, buf, len, err);
}

int
mk_storage_list(struct mk_storage *st, const char *prefix,
    mk_storage_list_cb cb, void *arg, struct mk_err *err)
{
	char buf[MK_STORAGE_NAME_MAX + 1];
	size_t len = strlen(prefix);

	/* "packs/" is a valid prefix though not a valid name. */
	if (len > 0) {
		if (len > MK_STORAGE_NAME_MAX)
			return mk_err_set(err, "list: prefix too long");
		memcpy(buf, prefix, len + 1);
		if (buf[len - 1] == '/')
			buf[len - 1] = '\0';
		if (!mk_storage_name_valid(buf, err))
			return mk_err_prefix(err, "list");
	}
	return st->ops->list(st, prefix, cb, arg, err);
}

int
mk_storage_delete(struct mk_storage *st, const char *name, struct mk_err *err)
{
	if (!mk_storage_name_valid(name, err))
		return -1;
	return st->ops->del(st, name, err);
}

int
mk_storage_stat(struct mk_storage *st, const char *name,
    struct mk_storage_stat *stat_r, struct mk_err *err)
{
	if (!mk_storage_name_valid(name, err))
		return -1;
	return st->ops->stat(st, name, stat_r, err);
}
