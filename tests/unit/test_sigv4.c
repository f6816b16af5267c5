#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "mailkeep/crypto.h"
#include "mailkeep/sigv4.h"
#include "mailkeep/storage.h"

/* The example of AWS's "Signature Calculations for the Authorization
 * Header" page: bucket examplebucket, 24 May 2013, us-east-1. */
static const struct mk_sigv4_key aws_key = { "AKIAIOSFODNN7EXAMPLE",
	"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3" };
#define AWS_DATE "20130524T000000Z"
#define AWS_HOST "examplebucket.s3.amazonaws.com"
#define EMPTY_SHA256                                                           \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define AWS_SCOPE                                                              \
	"Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"               \
	"aws4_request, "

static void
sign(const char *method, const char *path, const char *query,
    const struct mk_sigv4_header *h, size_t n, const char *payload,
    const char *want)
{
	struct mk_sigv4_request req = { method, path, query, h, n, payload };
	char auth[MK_SIGV4_AUTH_MAX];
	struct mk_err err;

	if (mk_sigv4_authorization(
		&req, &aws_key, AWS_DATE, auth, sizeof(auth), &err) < 0)
		fail_msg("sign: %s", err.msg);
	assert_string_equal(auth, want);
}

static void
test_sigv4_aws_get_object_with_range(void **state)
{
	const struct mk_sigv4_header h[] = { { "host", AWS_HOST },
		{ "range", "bytes=0-9" },
		{ "x-amz-content-sha256", EMPTY_SHA256 },
		{ "x-amz-date", AWS_DATE } };

	(void)state;
	sign("GET", "/test.txt", "", h, 4, EMPTY_SHA256,
	    "AWS4-HMAC-SHA256 " AWS_SCOPE
	    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	    "Signature="
	    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

/*
 * The same request as mailkeep builds it for s3:https://s3.amazonaws.com/
 * examplebucket with url_style = virtual: AWS's published signature,
 * so the Host and the path that are signed are the ones S3 expects.  In
 * path style the bucket moves from the Host into the path, and the
 * signature changes with it.
 */
static void
test_sigv4_s3_url_styles_sign_their_host(void **state)
{
	struct mk_sigv4_header h[] = { { "host", NULL },
		{ "range", "bytes=0-9" },
		{ "x-amz-content-sha256", EMPTY_SHA256 },
		{ "x-amz-date", AWS_DATE } };
	struct mk_storage_s3_where w;
	char *url, *host, *path;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_storage_s3_parse(
		"s3:https://s3.amazonaws.com/examplebucket", &w, &err),
	    0);
	mk_storage_s3_url(
	    &w, MK_STORAGE_URL_VIRTUAL, "test.txt", "", &url, &host, &path);
	assert_string_equal(url, "https://" AWS_HOST "/test.txt");
	h[0].value = host;
	sign("GET", path, "", h, 4, EMPTY_SHA256,
	    "AWS4-HMAC-SHA256 " AWS_SCOPE
	    "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	    "Signature="
	    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	free(url);
	free(host);
	free(path);
	mk_storage_s3_url(
	    &w, MK_STORAGE_URL_PATH, "test.txt", "", &url, &host, &path);
	assert_string_equal(
	    url, "https://s3.amazonaws.com/examplebucket/test.txt");
	assert_string_equal(host, "s3.amazonaws.com");
	assert_string_equal(path, "/examplebucket/test.txt");
	{
		struct mk_sigv4_request req = { "GET", path, "", h, 4,
			EMPTY_SHA256 };
		char auth[MK_SIGV4_AUTH_MAX];

		h[0].value = host;
		assert_int_equal(mk_sigv4_authorization(&req, &aws_key,
				     AWS_DATE, auth, sizeof(auth), &err),
		    0);
		assert_null(strstr(auth,
		    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c60"
		    "36bdb41"));
	}
	free(url);
	free(host);
	free(path);
}

static void
test_sigv4_aws_put_object(void **state)
{
	const char *body = "Welcome to Amazon S3.";
	char payload[MK_SIGV4_HEX_LEN + 1], *path;
	struct mk_err err;

	(void)state;
	assert_int_equal(
	    mk_sigv4_sha256_hex(body, strlen(body), payload, &err), 0);
	assert_string_equal(payload,
	    "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
	{
		const struct mk_sigv4_header h[] = {
			{ "date", "Fri, 24 May 2013 00:00:00 GMT" },
			{ "host", AWS_HOST },
			{ "x-amz-content-sha256", payload },
			{ "x-amz-date", AWS_DATE },
			{ "x-amz-storage-class", "REDUCED_REDUNDANCY" }
		};

		path = mk_sigv4_uri_encode("/test$file.text", true);
		assert_string_equal(path, "/test%24file.text");
		sign("PUT", path, "", h, 5, payload,
		    "AWS4-HMAC-SHA256 " AWS_SCOPE
		    "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;"
		    "x-amz-storage-class, Signature="
		    "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ec"
		    "e108bd");
		free(path);
	}
}

static void
test_sigv4_aws_get_bucket_lifecycle_and_list(void **state)
{
	const struct mk_sigv4_header h[] = { { "host", AWS_HOST },
		{ "x-amz-content-sha256", EMPTY_SHA256 },
		{ "x-amz-date", AWS_DATE } };

	(void)state;
	sign("GET", "/", "lifecycle=", h, 3, EMPTY_SHA256,
	    "AWS4-HMAC-SHA256 " AWS_SCOPE
	    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
	    "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
	sign("GET", "/", "max-keys=2&prefix=J", h, 3, EMPTY_SHA256,
	    "AWS4-HMAC-SHA256 " AWS_SCOPE
	    "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
	    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void
test_sigv4_wrong_secret_changes_the_signature(void **state)
{
	const struct mk_sigv4_header h[] = { { "host", AWS_HOST },
		{ "x-amz-content-sha256", EMPTY_SHA256 },
		{ "x-amz-date", AWS_DATE } };
	struct mk_sigv4_key key = aws_key;
	struct mk_sigv4_request req = { "GET", "/", "lifecycle=", h, 3,
		EMPTY_SHA256 };
	char auth[MK_SIGV4_AUTH_MAX];
	struct mk_err err;

	(void)state;
	key.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
	assert_int_equal(mk_sigv4_authorization(
			     &req, &key, AWS_DATE, auth, sizeof(auth), &err),
	    0);
	assert_null(strstr(auth, "fea454ca298b7da1"));
	/* A bad date and a buffer too small are errors, not truncation. */
	assert_int_equal(mk_sigv4_authorization(
			     &req, &key, "2013", auth, sizeof(auth), &err),
	    -1);
	assert_int_equal(
	    mk_sigv4_authorization(&req, &key, AWS_DATE, auth, 40, &err), -1);
}

static void
test_sigv4_uri_encode_and_date(void **state)
{
	char date[MK_SIGV4_DATE_LEN + 1], *s;

	(void)state;
	s = mk_sigv4_uri_encode("a b/c+d=e~f_g.h-i%", false);
	assert_string_equal(s, "a%20b%2Fc%2Bd%3De~f_g.h-i%25");
	free(s);
	s = mk_sigv4_uri_encode("packs/ab/0123", true);
	assert_string_equal(s, "packs/ab/0123");
	free(s);
	s = mk_sigv4_uri_encode("\xc3\xa9", true);
	assert_string_equal(s, "%C3%A9");
	free(s);
	mk_sigv4_date(1369353600, date);
	assert_string_equal(date, AWS_DATE);
}

static void
test_sigv4_content_md5(void **state)
{
	char b64[MK_CRYPTO_MD5_B64_LEN + 1];
	struct mk_err err;

	(void)state;
	/* The MD5 of "" and of "abc", in base64. */
	assert_int_equal(mk_crypto_md5_base64("", 0, b64, &err), 0);
	assert_string_equal(b64, "1B2M2Y8AsgTpgAmY7PhCfg==");
	assert_int_equal(mk_crypto_md5_base64("abc", 3, b64, &err), 0);
	assert_string_equal(b64, "kAFQmDzST7DWlj99KOF/cg==");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigv4_aws_get_object_with_range),
		cmocka_unit_test(test_sigv4_aws_put_object),
		cmocka_unit_test(test_sigv4_s3_url_styles_sign_their_host),
		cmocka_unit_test(test_sigv4_aws_get_bucket_lifecycle_and_list),
		cmocka_unit_test(test_sigv4_wrong_secret_changes_the_signature),
		cmocka_unit_test(test_sigv4_uri_encode_and_date),
		cmocka_unit_test(test_sigv4_content_md5),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
