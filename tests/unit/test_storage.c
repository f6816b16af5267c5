#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "mailkeep/storage.h"

static char *root;
static struct mk_storage *st;

static int
storage_setup(void **state)
{
	struct mk_err err;

	(void)state;
	root = fx_tmpdir();
	if (mk_storage_open(fx_path(root, "repo"), true, &st, &err) < 0)
		fail_msg("open: %s", err.msg);
	return 0;
}

static int
storage_teardown(void **state)
{
	(void)state;
	mk_storage_close(&st);
	assert_null(st);
	fx_rmrf(root);
	free(root);
	return 0;
}

static void
put(const char *name, const char *content)
{
	struct mk_err err;

	if (mk_storage_put(st, name, content, strlen(content), &err) < 0)
		fail_msg("put(%s): %s", name, err.msg);
}

/* The content of an object as a string ("" when missing). */
static char *
get(const char *name)
{
	struct mk_err err;
	uint8_t *data;
	size_t len;
	char *s;

	if (mk_storage_get(st, name, &data, &len, &err) < 0)
		return strdup("");
	s = malloc(len + 1);
	memcpy(s, data, len);
	s[len] = '\0';
	free(data);
	return s;
}

/* Entries of a directory starting with '.', other than . and .. */
static int
count_dot_files(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static void
test_storage_put_get_range_stat_delete(void **state)
{
	static const size_t sizes[] = { 0, 1, 4095, 4096, 1 << 20 };
	struct mk_storage_stat sst;
	struct mk_err err;
	uint8_t *data, buf[16];
	size_t i, len;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *in = malloc(sizes[i] + 1);
		size_t j;

		for (j = 0; j < sizes[i]; j++)
			in[j] = (uint8_t)(j * 7 + i);
		assert_int_equal(
		    mk_storage_put(st, "packs/ab/abcd", in, sizes[i], &err), 0);
		assert_int_equal(
		    mk_storage_get(st, "packs/ab/abcd", &data, &len, &err), 0);
		assert_int_equal(len, sizes[i]);
		assert_memory_equal(data, in, len);
		free(data);
		assert_int_equal(
		    mk_storage_stat(st, "packs/ab/abcd", &sst, &err), 1);
		assert_int_equal(sst.size, sizes[i]);
		assert_true(sst.mtime > 0);
		free(in);
	}
	/* Ranges: inside, at the end, past the end. */
	put("config", "0123456789");
	assert_int_equal(
	    mk_storage_get_range(st, "config", 2, buf, 3, &err), 0);
	assert_memory_equal(buf, "234", 3);
	assert_int_equal(
	    mk_storage_get_range(st, "config", 7, buf, 3, &err), 0);
	assert_int_equal(
	    mk_storage_get_range(st, "config", 10, buf, 0, &err), 0);
	assert_int_equal(
	    mk_storage_get_range(st, "config", 8, buf, 3, &err), -1);
	assert_non_null(strstr(err.msg, "the object has 10"));
	assert_int_equal(
	    mk_storage_get_range(st, "config", UINT64_MAX, buf, 3, &err), -1);
	/* Replacing an object. */
	put("config", "new");
	s = get("config");
	assert_string_equal(s, "new");
	free(s);
	/* Missing objects: ENOENT for get, 0 for stat, delete succeeds. */
	assert_int_equal(mk_storage_get(st, "nope", &data, &len, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_int_equal(
	    mk_storage_get(st, "no/such/dir", &data, &len, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_int_equal(mk_storage_get_range(st, "nope", 0, buf, 1, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_int_equal(mk_storage_stat(st, "nope", &sst, &err), 0);
	assert_int_equal(mk_storage_stat(st, "no/such/dir", &sst, &err), 0);
	assert_int_equal(mk_storage_delete(st, "nope", &err), 0);
	assert_int_equal(mk_storage_delete(st, "no/such/dir", &err), 0);
	assert_int_equal(mk_storage_delete(st, "config", &err), 0);
	assert_int_equal(mk_storage_stat(st, "config", &sst, &err), 0);
	/* Objects are private to the repository's owner. */
	{
		struct stat sb;

		assert_int_equal(
		    stat(fx_path(root, "repo/packs/ab/abcd"), &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0600);
		assert_int_equal(stat(fx_path(root, "repo/packs/ab"), &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0700);
	}
}

struct seen {
	char names[16][64];
	size_t n;
	size_t stop_after;
};

static int
list_cb(void *arg, const char *name, const struct mk_storage_stat *sst,
    struct mk_err *err)
{
	struct seen *seen = arg;

	if (seen->stop_after > 0 && seen->n == seen->stop_after)
		return mk_err_set(err, "stopped");
	assert_true(seen->n < 16);
	snprintf(seen->names[seen->n++], 64, "%s=%llu", name,
	    (unsigned long long)sst->size);
	return 0;
}

static int
cmp_names(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* The sorted names listed under prefix, joined by spaces. */
static const char *
list(const char *prefix)
{
	static char out[1024];
	struct seen seen = { .n = 0 };
	struct mk_err err;
	size_t i, len;

	if (mk_storage_list(st, prefix, list_cb, &seen, &err) < 0)
		fail_msg("list(%s): %s", prefix, err.msg);
	qsort(seen.names, seen.n, sizeof(seen.names[0]), cmp_names);
	out[0] = '\0';
	for (i = 0, len = 0; i < seen.n && len < sizeof(out); i++)
		len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s",
		    i > 0 ? " " : "", seen.names[i]);
	return out;
}

static void
test_storage_list_by_prefix(void **state)
{
	static const struct {
		const char *prefix;
		const char *want;
	} cases[] = {
		{ "",
		    "config=1 keys/k1=2 keys/k2=3 packs/ab/ab01=4 "
		    "packs/cd/cd02=5 "
		    "snapshots/2026/s1=6" },
		{ "keys/", "keys/k1=2 keys/k2=3" },
		{ "keys", "keys/k1=2 keys/k2=3" },
		{ "keys/k1", "keys/k1=2" },
		{ "packs/", "packs/ab/ab01=4 packs/cd/cd02=5" },
		{ "packs/a", "packs/ab/ab01=4" },
		{ "packs/cd/cd0", "packs/cd/cd02=5" },
		{ "snapshots/", "snapshots/2026/s1=6" },
		{ "config", "config=1" },
		{ "conf", "config=1" },
		{ "locks/", "" },
		{ "packs/zz/", "" },
	};
	struct seen seen = { .n = 0, .stop_after = 2 };
	struct mk_err err;
	size_t i;

	(void)state;
	put("config", "1");
	put("keys/k1", "22");
	put("keys/k2", "333");
	put("packs/ab/ab01", "4444");
	put("packs/cd/cd02", "55555");
	put("snapshots/2026/s1", "666666");
	/* Left by a crash in the middle of a put, and foreign entries. */
	fx_write(root, "repo/keys/.k3.tmp.123", "x");
	fx_write(root, "repo/packs/ab/bad name", "x");
	assert_int_equal(symlink(fx_path(root, "repo/config"),
			     fx_path(root, "repo/keys/k4")),
	    0);
	assert_int_equal(
	    symlink(fx_path(root, "repo/keys"), fx_path(root, "repo/packs/ef")),
	    0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(list(cases[i].prefix), cases[i].want);
	/* A callback error stops the listing and is returned. */
	assert_int_equal(mk_storage_list(st, "", list_cb, &seen, &err), -1);
	assert_string_equal(err.msg, "stopped");
	assert_int_equal(seen.n, 2);
	/* Prefixes are checked like names. */
	assert_int_equal(mk_storage_list(st, "../", list_cb, &seen, &err), -1);
	assert_int_equal(mk_storage_list(st, "/", list_cb, &seen, &err), -1);
}

static void
test_storage_names_refused(void **state)
{
	static const struct {
		const char *name;
		int ok;
	} cases[] = {
		{ "config", 1 },
		{ "keys/0123abcd", 1 },
		{ "packs/ab/x.y_z-1", 1 },
		{ "a.", 1 },
		{ "", 0 },
		{ "/etc/passwd", 0 },
		{ "..", 0 },
		{ ".", 0 },
		{ "a/../b", 0 },
		{ "a/./b", 0 },
		{ "../a", 0 },
		{ "a//b", 0 },
		{ "a/", 0 },
		{ ".hidden", 0 },
		{ "keys/.k.tmp.1", 0 },
		{ "a b", 0 },
		{ "a\\b", 0 },
		{ "a\nb", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "a:b", 0 },
	};
	char long_comp[MK_STORAGE_COMPONENT_MAX + 2];
	char long_name[MK_STORAGE_NAME_MAX + 2];
	struct mk_storage_stat sst;
	struct mk_err err;
	uint8_t *data, buf[1];
	size_t i, len;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = cases[i].name;
		int want = cases[i].ok ? 0 : -1;

		assert_int_equal(
		    mk_storage_name_valid(name, &err), cases[i].ok);
		assert_int_equal(mk_storage_put(st, name, "x", 1, &err), want);
		assert_int_equal(
		    mk_storage_get(st, name, &data, &len, &err), want);
		if (want == 0)
			free(data);
		assert_int_equal(
		    mk_storage_get_range(st, name, 0, buf, 1, &err), want);
		assert_int_equal(mk_storage_stat(st, name, &sst, &err),
		    cases[i].ok ? 1 : -1);
		assert_int_equal(mk_storage_delete(st, name, &err), want);
	}
	/* Component and name lengths: limit passes, limit + 1 does not. */
	memset(long_comp, 'c', MK_STORAGE_COMPONENT_MAX);
	long_comp[MK_STORAGE_COMPONENT_MAX] = '\0';
	assert_true(mk_storage_name_valid(long_comp, &err));
	assert_int_equal(mk_storage_put(st, long_comp, "x", 1, &err), 0);
	long_comp[MK_STORAGE_COMPONENT_MAX] = 'c';
	long_comp[MK_STORAGE_COMPONENT_MAX + 1] = '\0';
	assert_false(mk_storage_name_valid(long_comp, &err));
	for (i = 0; i < MK_STORAGE_NAME_MAX + 1; i++)
		long_name[i] = i % 100 == 99 ? '/' : 'n';
	long_name[MK_STORAGE_NAME_MAX] = '\0';
	assert_true(mk_storage_name_valid(long_name, &err));
	long_name[MK_STORAGE_NAME_MAX] = 'n';
	long_name[MK_STORAGE_NAME_MAX + 1] = '\0';
	assert_false(mk_storage_name_valid(long_name, &err));
	/* Nothing was written outside the repository. */
	assert_int_equal(access(fx_path(root, "b"), F_OK), -1);
}

static void
test_storage_failed_put_leaves_no_temporary_file(void **state)
{
	struct mk_err err;
	char *s;

	(void)state;
	/* The target is a directory: rename() fails after the write. */
	fx_mkdirs(root, "repo/keys/k1/sub");
	assert_int_equal(mk_storage_put(st, "keys/k1", "data", 4, &err), -1);
	assert_int_equal(count_dot_files(fx_path(root, "repo/keys")), 0);
	/* A parent is a regular file. */
	put("plain", "p");
	assert_int_equal(mk_storage_put(st, "plain/x", "data", 4, &err), -1);
	assert_int_equal(count_dot_files(fx_path(root, "repo")), 0);
	/* A failed replacement leaves the old object whole. */
	put("keys/k2", "old");
	assert_int_equal(chmod(fx_path(root, "repo/keys"), 0500), 0);
	if (geteuid() != 0) {
		assert_int_equal(
		    mk_storage_put(st, "keys/k2", "new", 3, &err), -1);
		s = get("keys/k2");
		assert_string_equal(s, "old");
		free(s);
	}
	assert_int_equal(chmod(fx_path(root, "repo/keys"), 0700), 0);
	assert_int_equal(count_dot_files(fx_path(root, "repo/keys")), 0);
}

static void
test_storage_symlinks_are_not_followed(void **state)
{
	struct mk_storage_stat sst;
	struct mk_err err;
	uint8_t *data;
	size_t len;

	(void)state;
	fx_write(root, "outside/secret", "s");
	fx_mkdirs(root, "repo/keys");
	assert_int_equal(symlink(fx_path(root, "outside/secret"),
			     fx_path(root, "repo/keys/link")),
	    0);
	assert_int_equal(
	    symlink(fx_path(root, "outside"), fx_path(root, "repo/packs")), 0);
	assert_int_equal(
	    mk_storage_get(st, "keys/link", &data, &len, &err), -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_int_equal(mk_storage_stat(st, "keys/link", &sst, &err), -1);
	assert_int_equal(
	    mk_storage_get(st, "packs/secret", &data, &len, &err), -1);
	assert_non_null(strstr(err.msg, "symbolic link"));
	assert_int_equal(mk_storage_put(st, "packs/new", "x", 1, &err), -1);
	assert_int_equal(access(fx_path(root, "outside/new"), F_OK), -1);
	assert_int_equal(mk_storage_delete(st, "packs/secret", &err), -1);
	assert_int_equal(access(fx_path(root, "outside/secret"), F_OK), 0);
	assert_string_equal(list(""), "");
}

static void
test_storage_locations(void **state)
{
	static const struct {
		const char *location;
		const char *error; /* NULL: opens */
	} cases[] = {
		{ "s3:https://s3.example.com/bucket", "no S3 credentials" },
		{ "s3:http://127.0.0.1:9000/my-bucket/host1/repo",
		    "no S3 credentials" },
		{ "s3:https://h:65535/bucket/", "no S3 credentials" },
		{ "s3:ftp://h/bucket", "malformed" },
		{ "s3:https://h:0/bucket", "malformed" },
		{ "s3:https://h:65536/bucket", "malformed" },
		{ "s3:https:///bucket", "malformed" },
		{ "s3:https://h/bu", "malformed" },
		{ "s3:https://h/Bucket", "malformed" },
		{ "s3:https://h", "malformed" },
		{ "s3:https://h/bucket/../x", "bad prefix" },
		{ "relative/dir", "unknown repository location" },
		{ "", "unknown repository location" },
		{ "file:/x", "unknown repository location" },
	};
	struct mk_storage *other = NULL;
	struct mk_err err;
	size_t i;

	(void)state;
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
		    mk_storage_open(cases[i].location, true, &other, &err), -1);
		assert_null(other);
		if (strstr(err.msg, cases[i].error) == NULL)
			fail_msg("%s: '%s'", cases[i].location, err.msg);
	}
	/* Without create, the directory must exist. */
	assert_int_equal(
	    mk_storage_open(fx_path(root, "none"), false, &other, &err), -1);
	assert_int_equal(err.sys_errno, ENOENT);
	assert_int_equal(
	    mk_storage_open(fx_path(root, "a/b/c"), true, &other, &err), 0);
	assert_string_equal(other->ops->scheme, "local");
	assert_string_equal(other->location, fx_path(root, "a/b/c"));
	mk_storage_close(&other);
	assert_int_equal(
	    mk_storage_open(fx_path(root, "a/b/c"), false, &other, &err), 0);
	mk_storage_close(&other);
}

static void
test_storage_s3_where_and_credentials(void **state)
{
	struct mk_storage_s3_where w;
	struct mk_storage_opts opts;
	struct mk_storage *other = NULL;
	struct mk_err err;
	const char *creds;

	(void)state;
	assert_int_equal(
	    mk_storage_s3_parse(
		"s3:http://127.0.0.1:7480/my-bucket/host1/repo", &w, &err),
	    0);
	assert_string_equal(w.scheme, "http");
	assert_string_equal(w.host, "127.0.0.1:7480");
	assert_string_equal(w.bucket, "my-bucket");
	assert_string_equal(w.prefix, "host1/repo/");
	assert_int_equal(
	    mk_storage_s3_parse("s3:https://s3.example.com/b-1/", &w, &err), 0);
	assert_string_equal(w.scheme, "https");
	assert_string_equal(w.prefix, "");

	/* A credentials file others may read is refused, and says so. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	mk_storage_opts_default(&opts);
	fx_write(root, "creds",
	    "# for the backup bucket\n[other]\naws_access_key_id = NOPE\n"
	    "[default]\naws_access_key_id = AKID\n"
	    "aws_secret_access_key = s3cr3t\n");
	creds = fx_path(root, "creds");
	assert_int_equal(chmod(creds, 0644), 0);
	opts.credentials_file = creds;
	assert_int_equal(mk_storage_open_opts(
			     "s3:https://h/bucket", &opts, false, &other, &err),
	    -1);
	assert_non_null(strstr(err.msg, "chmod 600"));
	assert_null(strstr(err.msg, "s3cr3t"));
	assert_int_equal(chmod(fx_path(root, "creds"), 0600), 0);
	opts.credentials_file = fx_path(root, "creds");
	assert_int_equal(mk_storage_open_opts(
			     "s3:https://h/bucket", &opts, false, &other, &err),
	    0);
	assert_string_equal(other->ops->scheme, "s3");
	mk_storage_close(&other);
	/* One without a secret is refused; so is a part under 5 MiB. */
	fx_write(root, "creds2", "aws_access_key_id = AKID\n");
	assert_int_equal(chmod(fx_path(root, "creds2"), 0600), 0);
	opts.credentials_file = fx_path(root, "creds2");
	assert_int_equal(mk_storage_open_opts(
			     "s3:https://h/bucket", &opts, false, &other, &err),
	    -1);
	assert_non_null(strstr(err.msg, "aws_secret_access_key"));
	opts.credentials_file = NULL;
	setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t", 1);
	opts.part_size = 1 << 20;
	assert_int_equal(mk_storage_open_opts(
			     "s3:https://h/bucket", &opts, false, &other, &err),
	    -1);
	opts.part_size = 8 << 20;
	assert_int_equal(mk_storage_open_opts(
			     "s3:https://h/bucket", &opts, false, &other, &err),
	    0);
	mk_storage_close(&other);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
}

/* Check one request's URL, signed Host and canonical URI. */
static void
s3_url_is(const struct mk_storage_s3_where *w, int style, const char *name,
    const char *query, const char *url, const char *host, const char *path)
{
	char *u, *h, *p;

	mk_storage_s3_url(w, style, name, query, &u, &h, &p);
	assert_string_equal(u, url);
	assert_string_equal(h, host);
	assert_string_equal(p, path);
	free(u);
	free(h);
	free(p);
}

static void
test_storage_s3_url_styles(void **state)
{
	struct mk_storage_s3_where w;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_storage_s3_parse(
		"s3:https://rgw.example.net:8443/mail-bk/mx1/repo", &w, &err),
	    0);
	/* Path style: the bucket is the first path segment. */
	s3_url_is(&w, MK_STORAGE_URL_PATH, "packs/ab/c0ffee", "",
	    "https://rgw.example.net:8443/mail-bk/mx1/repo/packs/ab/c0ffee",
	    "rgw.example.net:8443", "/mail-bk/mx1/repo/packs/ab/c0ffee");
	/* Virtual-host style: the bucket is in the host name only. */
	s3_url_is(&w, MK_STORAGE_URL_VIRTUAL, "packs/ab/c0ffee", "",
	    "https://mail-bk.rgw.example.net:8443/mx1/repo/packs/ab/c0ffee",
	    "mail-bk.rgw.example.net:8443", "/mx1/repo/packs/ab/c0ffee");
	/* The bucket itself, with a query (a listing). */
	s3_url_is(&w, MK_STORAGE_URL_PATH, NULL,
	    "list-type=2&prefix=mx1%2Frepo",
	    "https://rgw.example.net:8443/"
	    "mail-bk?list-type=2&prefix=mx1%2Frepo",
	    "rgw.example.net:8443", "/mail-bk");
	s3_url_is(&w, MK_STORAGE_URL_VIRTUAL, NULL,
	    "list-type=2&prefix=mx1%2Frepo",
	    "https://mail-bk.rgw.example.net:8443/"
	    "?list-type=2&prefix=mx1%2Frepo",
	    "mail-bk.rgw.example.net:8443", "/");
	/* A name with bytes outside SigV4's unreserved set is encoded the
	 * same in the URL and in what is signed; '/' stays. */
	s3_url_is(&w, MK_STORAGE_URL_VIRTUAL, "a b/c+d=~e",
	    "partNumber=1&uploadId=x%2By",
	    "https://mail-bk.rgw.example.net:8443/mx1/repo/a%20b/"
	    "c%2Bd%3D~e?partNumber=1&uploadId=x%2By",
	    "mail-bk.rgw.example.net:8443", "/mx1/repo/a%20b/c%2Bd%3D~e");
	s3_url_is(&w, MK_STORAGE_URL_PATH, "a b/c+d=~e", "",
	    "https://rgw.example.net:8443/mail-bk/mx1/repo/a%20b/c%2Bd%3D~e",
	    "rgw.example.net:8443", "/mail-bk/mx1/repo/a%20b/c%2Bd%3D~e");
	/* No prefix, no port, plain http. */
	assert_int_equal(
	    mk_storage_s3_parse("s3:http://localhost/bkt", &w, &err), 0);
	s3_url_is(&w, MK_STORAGE_URL_VIRTUAL, "config", "",
	    "http://bkt.localhost/config", "bkt.localhost", "/config");
	s3_url_is(&w, MK_STORAGE_URL_PATH, "config", "",
	    "http://localhost/bkt/config", "localhost", "/bkt/config");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_storage_s3_where_and_credentials, storage_setup,
		    storage_teardown),
		cmocka_unit_test(test_storage_s3_url_styles),
		cmocka_unit_test_setup_teardown(
		    test_storage_put_get_range_stat_delete, storage_setup,
		    storage_teardown),
		cmocka_unit_test_setup_teardown(test_storage_list_by_prefix,
		    storage_setup, storage_teardown),
		cmocka_unit_test_setup_teardown(test_storage_names_refused,
		    storage_setup, storage_teardown),
		cmocka_unit_test_setup_teardown(
		    test_storage_failed_put_leaves_no_temporary_file,
		    storage_setup, storage_teardown),
		cmocka_unit_test_setup_teardown(
		    test_storage_symlinks_are_not_followed, storage_setup,
		    storage_teardown),
		cmocka_unit_test_setup_teardown(
		    test_storage_locations, storage_setup, storage_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
