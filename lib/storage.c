#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/conf.h"
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

void
mk_storage_opts_default(struct mk_storage_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->region = "us-east-1";
	opts->url_style = MK_STORAGE_URL_PATH;
	opts->connections = 4;
	opts->retries = 8;
	opts->timeout = 30;
	opts->multipart_threshold = 16u << 20;
	opts->part_size = 8u << 20;
}

void
mk_storage_opts_from_conf(
    const struct mk_conf *conf, struct mk_storage_opts *opts)
{
	mk_storage_opts_default(opts);
	opts->region = conf->repo_region;
	opts->url_style = conf->repo_url_style;
	opts->credentials_file = conf->repo_credentials_file;
	opts->ca_file = conf->repo_ca_file;
	opts->bandwidth_limit = conf->repo_bandwidth_limit;
	opts->connections = (unsigned)conf->repo_connections;
	opts->retries = (unsigned)conf->repo_retries;
	opts->timeout = conf->repo_timeout;
	opts->multipart_threshold = conf->repo_multipart_threshold;
	opts->part_size = conf->repo_part_size;
}

/* Copy n bytes of src into dst (size bytes) as a string; false if long. */
static bool
storage_copy(char *dst, size_t size, const char *src, size_t n)
{
	if (n >= size)
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

int
mk_storage_s3_parse(const char *location, struct mk_storage_s3_where *where_r,
    struct mk_err *err)
{
	struct mk_storage_s3_where *w = where_r;
	const char *p = location + 3, *host;
	size_t n;

	memset(w, 0, sizeof(*w));
	if (!mk_str_has_prefix(location, "s3:"))
		goto bad;
	if (mk_str_has_prefix(p, "https://")) {
		mk_strlcpy(w->scheme, "https", sizeof(w->scheme));
		p += 8;
	} else if (mk_str_has_prefix(p, "http://")) {
		mk_strlcpy(w->scheme, "http", sizeof(w->scheme));
		p += 7;
	} else
		goto bad;
	host = p;
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
	if (!storage_copy(w->host, sizeof(w->host), host, (size_t)(p - host)))
		goto bad;
	if (*p++ != '/')
		goto bad;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789.-");
	if (n < 3 || n > 63 ||
	    !storage_copy(w->bucket, sizeof(w->bucket), p, n))
		goto bad;
	p += n;
	if (*p == '/' && p[1] != '\0') {
		if (!mk_storage_name_valid(p + 1, err))
			return mk_err_prefix(err, "%s: bad prefix", location);
		snprintf(w->prefix, sizeof(w->prefix), "%s/", p + 1);
		return 0;
	}
	if (*p != '\0' && strcmp(p, "/") != 0)
		goto bad;
	return 0;
bad:
	return mk_err_set(err,
	    "%s: malformed location "
	    "(expected s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX])",
	    location);
}

int
mk_storage_open_opts(const char *location, const struct mk_storage_opts *opts,
    bool create, struct mk_storage **st_r, struct mk_err *err)
{
	struct mk_storage_opts defaults;

	*st_r = NULL;
	if (opts == NULL) {
		mk_storage_opts_default(&defaults);
		opts = &defaults;
	}
	if (location[0] == '/')
		return mk_storage_local_open(location, create, st_r, err);
	if (mk_str_has_prefix(location, "s3:"))
		return mk_storage_s3_open(location, opts, st_r, err);
	return mk_err_set(err,
	    "%s: unknown repository location "
	    "(expected an absolute path or s3:...)",
	    location);
}

int
mk_storage_open(const char *location, bool create, struct mk_storage **st_r,
    struct mk_err *err)
{
	return mk_storage_open_opts(location, NULL, create, st_r, err);
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
