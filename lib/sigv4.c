#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/crypto.h"
#include "mailkeep/mem.h"
#include "mailkeep/sigv4.h"

/* The bytes of the canonical request that sign and hash; see the header. */
static char *
sigv4_canonical(const struct mk_sigv4_request *req, char **signed_r)
{
	size_t i, len = 0, slen = 0, cap = 256, scap = 64;
	char *canon, *names;

	for (i = 0; i < req->nheaders; i++) {
		cap += strlen(req->headers[i].name) +
		    strlen(req->headers[i].value) + 2;
		scap += strlen(req->headers[i].name) + 1;
	}
	cap += strlen(req->method) + strlen(req->path) + strlen(req->query) +
	    scap + MK_SIGV4_HEX_LEN;
	canon = mk_xmalloc(cap);
	names = mk_xmalloc(scap);
	names[0] = '\0';
	len = (size_t)snprintf(
	    canon, cap, "%s\n%s\n%s\n", req->method, req->path, req->query);
	for (i = 0; i < req->nheaders; i++) {
		len += (size_t)snprintf(canon + len, cap - len, "%s:%s\n",
		    req->headers[i].name, req->headers[i].value);
		slen += (size_t)snprintf(names + slen, scap - slen, "%s%s",
		    i > 0 ? ";" : "", req->headers[i].name);
	}
	snprintf(
	    canon + len, cap - len, "\n%s\n%s", names, req->payload_sha256);
	*signed_r = names;
	return canon;
}

int
mk_sigv4_authorization(const struct mk_sigv4_request *req,
    const struct mk_sigv4_key *key, const char *amz_date, char *auth,
    size_t size, struct mk_err *err)
{
	uint8_t k[MK_CRYPTO_HASH_LEN], sig[MK_CRYPTO_HASH_LEN];
	char day[9], scope[128], hash[MK_SIGV4_HEX_LEN + 1];
	char sigx[2 * MK_CRYPTO_HASH_LEN + 1], sts[512];
	char *canon = NULL, *names = NULL, *secret = NULL;
	const char *parts[4];
	int rc = -1, n;
	size_t i;

	if (strlen(amz_date) != MK_SIGV4_DATE_LEN)
		return mk_err_set(err, "sigv4: bad date '%s'", amz_date);
	memcpy(day, amz_date, 8);
	day[8] = '\0';
	n = snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", day,
	    key->region, key->service);
	if (n < 0 || (size_t)n >= sizeof(scope))
		return mk_err_set(err, "sigv4: region name too long");
	canon = sigv4_canonical(req, &names);
	if (mk_sigv4_sha256_hex(canon, strlen(canon), hash, err) < 0)
		goto out;
	snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date,
	    scope, hash);
	/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, day), region),
	 * service), "aws4_request"). */
	secret = mk_xasprintf("AWS4%s", key->secret_key);
	parts[0] = day;
	parts[1] = key->region;
	parts[2] = key->service;
	parts[3] = "aws4_request";
	if (mk_crypto_hmac_sha256(
		secret, strlen(secret), parts[0], strlen(parts[0]), k, err) < 0)
		goto out;
	for (i = 1; i < 4; i++)
		if (mk_crypto_hmac_sha256(
			k, sizeof(k), parts[i], strlen(parts[i]), k, err) < 0)
			goto out;
	if (mk_crypto_hmac_sha256(k, sizeof(k), sts, strlen(sts), sig, err) < 0)
		goto out;
	mk_crypto_hex(sig, sizeof(sig), sigx);
	n = snprintf(auth, size,
	    "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
	    "Signature=%s",
	    key->access_key, scope, names, sigx);
	if (n < 0 || (size_t)n >= size) {
		mk_err_set(err, "sigv4: authorization header too long");
		goto out;
	}
	rc = 0;
out:
	mk_crypto_wipe(k, sizeof(k));
	if (secret != NULL) {
		mk_crypto_wipe(secret, strlen(secret));
		free(secret);
	}
	free(canon);
	free(names);
	return rc;
}

void
mk_sigv4_date(time_t t, char date[MK_SIGV4_DATE_LEN + 1])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(date, MK_SIGV4_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm);
}

char *
mk_sigv4_uri_encode(const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t len = strlen(s), o = 0;
	char *out = mk_xmalloc(3 * len + 1);

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_' || c == '~' || (c == '/' && keep_slash)) {
			out[o++] = (char)c;
			continue;
		}
		out[o++] = '%';
		out[o++] = hex[c >> 4];
		out[o++] = hex[c & 15];
	}
	out[o] = '\0';
	return out;
}

int
mk_sigv4_sha256_hex(const void *data, size_t len,
    char hex[MK_SIGV4_HEX_LEN + 1], struct mk_err *err)
{
	uint8_t h[MK_CRYPTO_HASH_LEN];

	if (mk_crypto_sha256(data, len, h, err) < 0)
		return -1;
	mk_crypto_hex(h, sizeof(h), hex);
	return 0;
}
