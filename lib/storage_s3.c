#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "mailkeep/crypto.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/sigv4.h"
#include "mailkeep/storage.h"
#include "mailkeep/str.h"

/*
 * The S3 backend: one object is one S3 object named PREFIX + name in the
 * bucket.  Every request is signed with AWS Signature V4 and carries the
 * SHA-256 of its payload; uploads also carry Content-MD5, so the store
 * refuses a body damaged on the way.  Failed tries (a lost connection, a
 * timeout, 5xx, 429) are retried with exponential backoff and jitter.
 * At most opts.connections requests run at once, each on an easy handle
 * that keeps its connection for the next request.  Credentials live only
 * in this struct, are wiped on close and never appear in a message.
 */

#define S3_ERRBODY_MAX 4096
#define S3_BACKOFF_FIRST_MS 250
#define S3_BACKOFF_MAX_MS 16000
#define S3_PARTS_MAX 10000

struct storage_s3 {
	struct mk_storage base;
	struct mk_storage_s3_where where;
	struct mk_storage_opts opts; /* the strings below, not the caller's */
	char *region;
	char *ca_file;
	char *access_key;
	char *secret_key;
	char *token; /* a session token, or NULL */

	pthread_mutex_t lock; /* the handles below */
	pthread_cond_t idle_cond;
	CURL **idle;
	size_t nidle, nopen;

	CURLSH *share; /* DNS cache and TLS sessions */
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];
};

/* One request and what came back. */
struct s3_req {
	const char *method;
	const char *name; /* object name below the prefix, NULL: the bucket */
	const char *query; /* canonical query string, "" for none */
	const uint8_t *body;
	size_t body_len;
	bool content_md5; /* send Content-MD5 of the body */
	char range[64]; /* "bytes=A-B" or "" */

	/* The answer of the last try. */
	long status;
	uint8_t *out; /* the body of a 2xx answer */
	size_t out_len, out_cap;
	bool out_fixed; /* out is the caller's buffer of out_cap bytes */
	bool overflow;
	char errbody[S3_ERRBODY_MAX + 1];
	size_t errlen;
	char etag[128];
	curl_off_t length;
	curl_off_t mtime;
	size_t sent; /* upload position */
};

static pthread_once_t s3_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc;

static void
s3_global_init(void)
{
	s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static struct storage_s3 *
s3_of(struct mk_storage *st)
{
	return (struct storage_s3 *)st;
}

static void
s3_share_lock_cb(
    CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct storage_s3 *s = arg;

	pthread_mutex_lock(&s->share_lock[data]);
}

static void
s3_share_unlock_cb(CURL *h, curl_lock_data data, void *arg)
{
	struct storage_s3 *s = arg;

	pthread_mutex_unlock(&s->share_lock[data]);
}

/* An easy handle; waits while opts.connections are in use. */
static CURL *
s3_handle_get(struct storage_s3 *s)
{
	CURL *h;

	pthread_mutex_lock(&s->lock);
	while (s->nidle == 0 && s->nopen >= s->opts.connections)
		pthread_cond_wait(&s->idle_cond, &s->lock);
	if (s->nidle > 0) {
		h = s->idle[--s->nidle];
	} else {
		if ((h = curl_easy_init()) == NULL)
			mk_fatal("s3", "curl_easy_init: out of memory");
		s->nopen++;
	}
	pthread_mutex_unlock(&s->lock);
	return h;
}

static void
s3_handle_put(struct storage_s3 *s, CURL *h)
{
	pthread_mutex_lock(&s->lock);
	s->idle[s->nidle++] = h;
	pthread_cond_signal(&s->idle_cond);
	pthread_mutex_unlock(&s->lock);
}

static size_t
s3_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nmemb;

	if (r->status == 0 || r->status >= 300) {
		size_t room = S3_ERRBODY_MAX - r->errlen;

		if (n < room)
			room = n;
		memcpy(r->errbody + r->errlen, ptr, room);
		r->errlen += room;
		r->errbody[r->errlen] = '\0';
		return n;
	}
	if (r->out_fixed) {
		if (n > r->out_cap - r->out_len) {
			r->overflow = true;
			return 0;
		}
	} else if (n > r->out_cap - r->out_len) {
		mk_xgrow(&r->out, &r->out_cap, r->out_len + n, 1);
	}
	memcpy(r->out + r->out_len, ptr, n);
	r->out_len += n;
	return n;
}

/* Learns the status before the body arrives, and the ETag. */
static size_t
s3_header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nitems, len;
	const char *v;

	if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
		v = memchr(buf, ' ', n);
		r->status = v != NULL ? strtol(v + 1, NULL, 10) : 0;
		return n;
	}
	if (n > 5 && strncasecmp(buf, "etag:", 5) == 0) {
		v = buf + 5;
		while (v < buf + n && (*v == ' ' || *v == '\t'))
			v++;
		len = (size_t)(buf + n - v);
		while (len > 0 &&
		    (v[len - 1] == '\r' || v[len - 1] == '\n' ||
			v[len - 1] == ' '))
			len--;
		if (len < sizeof(r->etag)) {
			memcpy(r->etag, v, len);
			r->etag[len] = '\0';
		}
	}
	return n;
}

static size_t
s3_read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct s3_req *r = arg;
	size_t n = size * nitems;

	if (n > r->body_len - r->sent)
		n = r->body_len - r->sent;
	memcpy(buf, r->body + r->sent, n);
	r->sent += n;
	return n;
}

/* Rewinds the upload for a redirect or an auth retry inside curl. */
static int
s3_seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct s3_req *r = arg;

	if (origin != SEEK_SET || offset < 0 || (size_t)offset > r->body_len)
		return CURL_SEEKFUNC_FAIL;
	r->sent = (size_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* Decode the XML entity at p (before end) into *c; its length, or 0. */
static size_t
s3_xml_entity(const char *p, const char *end, char *c)
{
	static const struct {
		const char *ent;
		char c;
	} ents[] = { { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
		{ "&quot;", '"' }, { "&apos;", '\'' } };
	size_t i, len;

	for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
		len = strlen(ents[i].ent);
		if ((size_t)(end - p) >= len &&
		    memcmp(p, ents[i].ent, len) == 0) {
			*c = ents[i].c;
			return len;
		}
	}
	return 0;
}

/*
 * The text of the first <tag>...</tag> in [p, end), entities decoded,
 * into buf; *after_r (if not NULL) points past it.  False when there is
 * none or it does not fit.
 */
static bool
s3_xml_text(const char *p, const char *end, const char *tag, char *buf,
    size_t size, const char **after_r)
{
	char open[64], close[64];
	const char *a, *b;
	size_t o = 0, n;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	if ((a = memmem(p, (size_t)(end - p), open, strlen(open))) == NULL)
		return false;
	a += strlen(open);
	if ((b = memmem(a, (size_t)(end - a), close, strlen(close))) == NULL)
		return false;
	while (a < b) {
		if (o + 1 >= size)
			return false;
		if (*a == '&' && (n = s3_xml_entity(a, b, &buf[o])) > 0) {
			o++;
			a += n;
		} else
			buf[o++] = *a++;
	}
	buf[o] = '\0';
	if (after_r != NULL)
		*after_r = b + strlen(close);
	return true;
}

/* What the store's error code means for an operator. */
static const char *
s3_error_hint(const char *code, long status)
{
	static const struct {
		const char *code;
		const char *hint;
	} hints[] = {
		{ "SignatureDoesNotMatch",
		    "the secret key is wrong for this access key" },
		{ "InvalidAccessKeyId",
		    "the access key is not known to the store" },
		{ "AccessDenied",
		    "access denied: check the key's permissions and the bucket "
		    "policy" },
		{ "NoSuchBucket", "the bucket does not exist" },
		{ "RequestTimeTooSkewed",
		    "this host's clock is too far from the store's" },
		{ "AuthorizationHeaderMalformed",
		    "the region does not match the bucket's" },
		{ "InvalidDigest", "the upload was damaged on the way" },
		{ "BadDigest", "the upload was damaged on the way" },
	};
	size_t i;

	for (i = 0; i < sizeof(hints) / sizeof(hints[0]); i++)
		if (strcmp(code, hints[i].code) == 0)
			return hints[i].hint;
	if (status == 403)
		return "access denied: check the access key and secret";
	if (status == 404)
		return "no such object";
	return NULL;
}

/* Set err for an answer that is not 2xx. */
static int
s3_http_error(
    const struct storage_s3 *s, const struct s3_req *r, struct mk_err *err)
{
	const char *end = r->errbody + r->errlen, *hint;
	char code[128] = "", msg[256] = "";

	s3_xml_text(r->errbody, end, "Code", code, sizeof(code), NULL);
	s3_xml_text(r->errbody, end, "Message", msg, sizeof(msg), NULL);
	hint = s3_error_hint(code, r->status);
	if (strcmp(code, "NoSuchBucket") == 0 &&
	    s->opts.url_style == MK_STORAGE_URL_VIRTUAL)
		hint = "the bucket does not exist, or the store does not take "
		       "the bucket from the host name (url_style = virtual; "
		       "Ceph RGW needs rgw_dns_name)";
	mk_err_set(err, "s3 %s %s: HTTP %ld%s%s%s%s", r->method,
	    r->name != NULL ? r->name : "(bucket)", r->status,
	    code[0] != '\0' ? " " : "", code, hint != NULL ? ": " : "",
	    hint != NULL ? hint : msg);
	err->sys_errno = r->status == 404 ? ENOENT
	    : r->status == 403            ? EACCES
					  : EIO;
	return -1;
}

/* Whether a failed try is worth another. */
static bool
s3_retryable(CURLcode rc, long status)
{
	switch (rc) {
	case CURLE_OK:
		return status >= 500 || status == 429 || status == 408;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_WRITE_ERROR:
	case CURLE_OUT_OF_MEMORY:
		return false;
	default:
		return true;
	}
}

/* Milliseconds to wait before try number attempt (1, 2, ...). */
static long
s3_backoff_ms(unsigned attempt)
{
	long cap = S3_BACKOFF_FIRST_MS;
	uint32_t rnd = 0;

	while (--attempt > 0 && cap < S3_BACKOFF_MAX_MS)
		cap *= 2;
	if (cap > S3_BACKOFF_MAX_MS)
		cap = S3_BACKOFF_MAX_MS;
	/* Half fixed, half random: spread, but never a busy retry. */
	if (mk_crypto_random(&rnd, sizeof(rnd), NULL) < 0)
		rnd = (uint32_t)time(NULL);
	return cap / 2 + (long)(rnd % (uint32_t)(cap / 2 + 1));
}

void
mk_storage_s3_url(const struct mk_storage_s3_where *where, int url_style,
    const char *name, const char *query, char **url_r, char **host_r,
    char **path_r)
{
	char *raw;

	if (url_style == MK_STORAGE_URL_VIRTUAL) {
		raw = mk_xasprintf("/%s%s", name != NULL ? where->prefix : "",
		    name != NULL ? name : "");
		*host_r = mk_xasprintf("%s.%s", where->bucket, where->host);
	} else {
		if (name != NULL)
			raw = mk_xasprintf(
			    "/%s/%s%s", where->bucket, where->prefix, name);
		else
			raw = mk_xasprintf("/%s", where->bucket);
		*host_r = mk_xstrdup(where->host);
	}
	*path_r = mk_sigv4_uri_encode(raw, true);
	free(raw);
	*url_r = mk_xasprintf("%s://%s%s%s%s", where->scheme, *host_r, *path_r,
	    query[0] != '\0' ? "?" : "", query);
}

/*
 * One try of r on h: 0 with the curl code in *rc_r (and r->status), or
 * -1 with err set when the request could not even be made.
 */
static int
s3_try(struct storage_s3 *s, CURL *h, struct s3_req *r, char *cerr,
    CURLcode *rc_r, struct mk_err *err)
{
	char date[MK_SIGV4_DATE_LEN + 1], payload[MK_SIGV4_HEX_LEN + 1];
	char md5[MK_CRYPTO_MD5_B64_LEN + 1], auth[MK_SIGV4_AUTH_MAX];
	char *path = NULL, *url = NULL, *host = NULL, *line;
	struct mk_sigv4_header hdr[8];
	struct curl_slist *list = NULL, *tmp;
	struct mk_sigv4_key key;
	size_t nh = 0, i;
	int ret = -1;

	r->status = 0;
	r->out_len = 0;
	r->overflow = false;
	r->errlen = 0;
	r->errbody[0] = '\0';
	r->etag[0] = '\0';
	r->sent = 0;
	r->length = -1;
	r->mtime = -1;
	if (mk_sigv4_sha256_hex(r->body, r->body_len, payload, err) < 0 ||
	    (r->content_md5 &&
		mk_crypto_md5_base64(r->body, r->body_len, md5, err) < 0))
		return -1;
	mk_sigv4_date(time(NULL), date);
	mk_storage_s3_url(&s->where, s->opts.url_style, r->name, r->query, &url,
	    &host, &path);
	/* In the order of their names, as SigV4 wants. */
	if (r->content_md5)
		hdr[nh++] = (struct mk_sigv4_header){ "content-md5", md5 };
	hdr[nh++] = (struct mk_sigv4_header){ "host", host };
	if (r->range[0] != '\0')
		hdr[nh++] = (struct mk_sigv4_header){ "range", r->range };
	hdr[nh++] = (struct mk_sigv4_header){ "x-amz-content-sha256", payload };
	hdr[nh++] = (struct mk_sigv4_header){ "x-amz-date", date };
	if (s->token != NULL)
		hdr[nh++] = (struct mk_sigv4_header){ "x-amz-security-token",
			s->token };
	{
		struct mk_sigv4_request sreq = { r->method, path, r->query, hdr,
			nh, payload };

		key = (struct mk_sigv4_key){ s->access_key, s->secret_key,
			s->region, "s3" };
		if (mk_sigv4_authorization(
			&sreq, &key, date, auth, sizeof(auth), err) < 0)
			goto out;
	}
	for (i = 0; i < nh; i++) {
		line = mk_xasprintf("%s: %s", hdr[i].name, hdr[i].value);
		tmp = curl_slist_append(list, line);
		free(line);
		if (tmp == NULL)
			mk_fatal("s3", "curl_slist_append: out of memory");
		list = tmp;
	}
	line = mk_xasprintf("authorization: %s", auth);
	tmp = curl_slist_append(list, line);
	mk_crypto_wipe(line, strlen(line));
	free(line);
	if (tmp == NULL ||
	    (list = tmp, tmp = curl_slist_append(list, "Expect:")) == NULL ||
	    (list = tmp, tmp = curl_slist_append(list, "Content-Type:")) ==
		NULL)
		mk_fatal("s3", "curl_slist_append: out of memory");
	list = tmp;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
	curl_easy_setopt(h, CURLOPT_SHARE, s->share);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (s->ca_file != NULL) {
		/* Only the operator's CAs, not the system's as well. */
		curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_file);
		curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT,
	    (long)(s->opts.timeout < 10 ? s->opts.timeout : 10));
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)s->opts.timeout);
	if (s->opts.bandwidth_limit > 0) {
		curl_easy_setopt(h, CURLOPT_MAX_SEND_SPEED_LARGE,
		    (curl_off_t)s->opts.bandwidth_limit);
		curl_easy_setopt(h, CURLOPT_MAX_RECV_SPEED_LARGE,
		    (curl_off_t)s->opts.bandwidth_limit);
	}
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
	if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, s3_read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, s3_seek_cb);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
		curl_easy_setopt(
		    h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS,
		    r->body != NULL ? (const char *)r->body : "");
		curl_easy_setopt(
		    h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	cerr[0] = '\0';
	*rc_r = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->length);
	curl_easy_getinfo(h, CURLINFO_FILETIME_T, &r->mtime);
	/* Forget the headers (the signature) before the handle idles. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	ret = 0;
out:
	for (tmp = list; tmp != NULL; tmp = tmp->next)
		mk_crypto_wipe(tmp->data, strlen(tmp->data));
	curl_slist_free_all(list);
	mk_crypto_wipe(auth, sizeof(auth));
	free(path);
	free(url);
	free(host);
	return ret;
}

/*
 * What to do about a request that failed in TLS (curl's code rc and
 * message cerr), into buf; "" when rc is not about TLS.
 */
static void
s3_tls_hint(const struct storage_s3 *s, CURLcode rc, const char *cerr,
    char *buf, size_t size)
{
	char *url, *host, *path, *colon;
	bool name;

	buf[0] = '\0';
	switch (rc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		/*
		 * The chain and the name fail with the same code; curl's
		 * messages for the name end in "target host name 'X'".
		 */
		name = strstr(cerr, "host name") != NULL;
		if (!name && s->ca_file != NULL) {
			snprintf(buf, size,
			    "the endpoint's certificate does not check out "
			    "against the CAs in ca_file %s",
			    s->ca_file);
			break;
		}
		if (!name) {
			snprintf(buf, size,
			    "the endpoint's certificate is not signed by a CA "
			    "this system trusts; for a private CA, set "
			    "[repository] ca_file to its PEM file");
			break;
		}
		mk_storage_s3_url(
		    &s->where, s->opts.url_style, NULL, "", &url, &host, &path);
		if ((colon = strrchr(host, ':')) != NULL)
			*colon = '\0';
		snprintf(buf, size,
		    "the endpoint's certificate is not for %s: put a name "
		    "from its subjectAltName in location%s",
		    host,
		    s->opts.url_style == MK_STORAGE_URL_VIRTUAL
			? " (with url_style = virtual it must name "
			  "BUCKET.HOST)"
			: "");
		free(url);
		free(host);
		free(path);
		break;
	case CURLE_SSL_CACERT_BADFILE:
		if (s->ca_file != NULL)
			snprintf(buf, size,
			    "ca_file %s is not a PEM file of CA certificates",
			    s->ca_file);
		else
			snprintf(buf, size,
			    "the system's CA certificates cannot be read: "
			    "install ca-certificates, or set [repository] "
			    "ca_file");
		break;
	case CURLE_SSL_CONNECT_ERROR:
		snprintf(buf, size,
		    "no TLS handshake: is the port in location one "
		    "that speaks https?");
		break;
	default:
		break;
	}
}

/*
 * Send r, retrying as opts say.  Returns 0 for a 2xx answer; -1 with err
 * set otherwise (sys_errno ENOENT for 404, EACCES for 403).
 */
static int
s3_perform(struct storage_s3 *s, struct s3_req *r, struct mk_err *err)
{
	char cerr[CURL_ERROR_SIZE], hint[512];
	unsigned attempt;
	CURLcode rc = CURLE_OK;
	CURL *h;

	h = s3_handle_get(s);
	for (attempt = 0;; attempt++) {
		if (attempt > 0) {
			long ms = s3_backoff_ms(attempt);
			struct timespec ts = { ms / 1000,
				(ms % 1000) * 1000000 };

			mk_log_debug("s3", "%s %s: try %u of %u in %ld ms",
			    r->method, r->name != NULL ? r->name : "(bucket)",
			    attempt + 1, s->opts.retries + 1, ms);
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		if (s3_try(s, h, r, cerr, &rc, err) < 0) {
			s3_handle_put(s, h);
			return -1;
		}
		if (!s3_retryable(rc, r->status) || attempt >= s->opts.retries)
			break;
	}
	s3_handle_put(s, h);
	if (r->overflow)
		return mk_err_set(err,
		    "s3 %s %s: the answer is longer than asked", r->method,
		    r->name != NULL ? r->name : "(bucket)");
	if (rc != CURLE_OK) {
		s3_tls_hint(s, rc, cerr, hint, sizeof(hint));
		return mk_err_set(err, "s3 %s %s: %s (%u %s)%s%s", r->method,
		    r->name != NULL ? r->name : "(bucket)",
		    cerr[0] != '\0' ? cerr : curl_easy_strerror(rc),
		    attempt + 1, attempt == 0 ? "try" : "tries",
		    hint[0] != '\0' ? ": " : "", hint);
	}
	if (r->status < 200 || r->status >= 300)
		return s3_http_error(s, r, err);
	return 0;
}

static void
s3_req_init(
    struct s3_req *r, const char *method, const char *name, const char *query)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->name = name;
	r->query = query;
}

static int
s3_put_single(struct storage_s3 *s, const char *name, const void *data,
    size_t len, struct mk_err *err)
{
	struct s3_req r;
	int rc;

	s3_req_init(&r, "PUT", name, "");
	r.body = data;
	r.body_len = len;
	r.content_md5 = true;
	rc = s3_perform(s, &r, err);
	free(r.out);
	return rc;
}

/* Whether name exists with len bytes (a completion whose answer got lost). */
static bool
s3_exists_with_size(struct storage_s3 *s, const char *name, size_t len)
{
	struct mk_storage_stat sst;

	return s->base.ops->stat(&s->base, name, &sst, NULL) == 1 &&
	    sst.size == len;
}

/*
 * A multipart upload: the object appears whole at the completion, or
 * never; on failure the upload is aborted so its parts do not linger.
 */
static int
s3_put_multipart(struct storage_s3 *s, const char *name, const void *data,
    size_t len, struct mk_err *err)
{
	size_t part = (size_t)s->opts.part_size, nparts, i, xlen = 0, xcap;
	char id[512], *eid = NULL, *query = NULL, *xml = NULL;
	char(*etags)[128] = NULL;
	struct mk_err aerr;
	struct s3_req r;
	int rc = -1;

	nparts = (len + part - 1) / part;
	if (nparts > S3_PARTS_MAX)
		return mk_err_set(err,
		    "s3 PUT %s: %zu bytes need more than %d parts of %zu "
		    "(raise part_size)",
		    name, len, S3_PARTS_MAX, part);
	s3_req_init(&r, "POST", name, "uploads=");
	if (s3_perform(s, &r, err) < 0) {
		free(r.out);
		return -1;
	}
	if (!s3_xml_text((char *)r.out, (char *)r.out + r.out_len, "UploadId",
		id, sizeof(id), NULL) ||
	    id[0] == '\0') {
		free(r.out);
		return mk_err_set(
		    err, "s3 POST %s?uploads: no UploadId in the answer", name);
	}
	free(r.out);
	eid = mk_sigv4_uri_encode(id, false);
	etags = mk_xcalloc(nparts, sizeof(*etags));
	for (i = 0; i < nparts; i++) {
		size_t off = i * part;

		free(query);
		query = mk_xasprintf("partNumber=%zu&uploadId=%s", i + 1, eid);
		s3_req_init(&r, "PUT", name, query);
		r.body = (const uint8_t *)data + off;
		r.body_len = len - off < part ? len - off : part;
		r.content_md5 = true;
		if (s3_perform(s, &r, err) < 0) {
			free(r.out);
			goto out;
		}
		free(r.out);
		if (r.etag[0] == '\0') {
			mk_err_set(
			    err, "s3 PUT %s part %zu: no ETag", name, i + 1);
			goto out;
		}
		memcpy(etags[i], r.etag, sizeof(etags[i]));
	}
	xcap = 128 + nparts * 200;
	xml = mk_xmalloc(xcap);
	xlen = (size_t)snprintf(xml, xcap, "<CompleteMultipartUpload>");
	for (i = 0; i < nparts; i++)
		xlen += (size_t)snprintf(xml + xlen, xcap - xlen,
		    "<Part><PartNumber>%zu</PartNumber><ETag>%s</ETag></Part>",
		    i + 1, etags[i]);
	xlen += (size_t)snprintf(
	    xml + xlen, xcap - xlen, "</CompleteMultipartUpload>");
	free(query);
	query = mk_xasprintf("uploadId=%s", eid);
	s3_req_init(&r, "POST", name, query);
	r.body = (const uint8_t *)xml;
	r.body_len = xlen;
	rc = s3_perform(s, &r, err);
	/* A 200 answer may still carry an error (S3 sends it late). */
	if (rc == 0 && r.out_len > 0 &&
	    memmem(r.out, r.out_len, "<Error>", 7) != NULL) {
		memcpy(r.errbody, r.out,
		    r.out_len < S3_ERRBODY_MAX ? r.out_len : S3_ERRBODY_MAX);
		r.errlen =
		    r.out_len < S3_ERRBODY_MAX ? r.out_len : S3_ERRBODY_MAX;
		r.errbody[r.errlen] = '\0';
		r.status = 500;
		rc = s3_http_error(s, &r, err);
	}
	free(r.out);
	if (rc < 0 && err->sys_errno == ENOENT &&
	    s3_exists_with_size(s, name, len))
		rc = 0;
out:
	if (rc < 0) {
		s3_req_init(&r, "DELETE", name, query);
		if (s3_perform(s, &r, &aerr) < 0 && aerr.sys_errno != ENOENT)
			mk_log_warn("s3",
			    "abort of the unfinished upload of %s: %s (a "
			    "lifecycle rule removes its parts)",
			    name, aerr.msg);
		free(r.out);
	}
	free(xml);
	free(etags);
	free(query);
	free(eid);
	return rc;
}

static int
s3_put(struct mk_storage *st, const char *name, const void *data, size_t len,
    struct mk_err *err)
{
	struct storage_s3 *s = s3_of(st);

	if (len >= s->opts.multipart_threshold && len > s->opts.part_size)
		return s3_put_multipart(s, name, data, len, err);
	return s3_put_single(s, name, data, len, err);
}

static int
s3_get(struct mk_storage *st, const char *name, uint8_t **data_r, size_t *len_r,
    struct mk_err *err)
{
	struct s3_req r;

	s3_req_init(&r, "GET", name, "");
	if (s3_perform(s3_of(st), &r, err) < 0) {
		free(r.out);
		return -1;
	}
	if (r.length >= 0 && (uint64_t)r.length != r.out_len) {
		free(r.out);
		return mk_err_set(err, "s3 GET %s: %zu bytes of %lld came",
		    name, r.out_len, (long long)r.length);
	}
	*data_r = r.out != NULL ? r.out : mk_xmalloc(1);
	*len_r = r.out_len;
	return 0;
}

static int
s3_stat(struct mk_storage *st, const char *name, struct mk_storage_stat *stat_r,
    struct mk_err *err)
{
	struct storage_s3 *s = s3_of(st);
	struct s3_req r;

	s3_req_init(&r, "HEAD", name, "");
	if (s3_perform(s, &r, err) < 0) {
		free(r.out);
		if (r.status == 404)
			return 0;
		/* A HEAD answer has no body: ask again for the reason. */
		if (r.status >= 400 && r.status < 500 && r.errlen == 0) {
			s3_req_init(&r, "GET", name, "");
			mk_strlcpy(r.range, "bytes=0-0", sizeof(r.range));
			if (s3_perform(s, &r, err) == 0 || r.status == 404)
				mk_err_set(err, "s3 HEAD %s: HTTP %ld", name,
				    r.status);
			free(r.out);
		}
		return -1;
	}
	free(r.out);
	if (r.length < 0)
		return mk_err_set(
		    err, "s3 HEAD %s: no Content-Length in the answer", name);
	stat_r->size = (uint64_t)r.length;
	stat_r->mtime = r.mtime >= 0 ? (int64_t)r.mtime : 0;
	return 1;
}

static int
s3_get_range(struct mk_storage *st, const char *name, uint64_t offset,
    void *buf, size_t len, struct mk_err *err)
{
	struct mk_storage_stat sst;
	struct s3_req r;
	int found;

	if (len == 0) {
		if ((found = s3_stat(st, name, &sst, err)) < 0)
			return -1;
		if (found == 0)
			return mk_err_set(
			    err, "s3 GET %s: no such object", name);
		if (offset > sst.size)
			return mk_err_set(
			    err, "s3 GET %s: object ends early", name);
		return 0;
	}
	s3_req_init(&r, "GET", name, "");
	snprintf(r.range, sizeof(r.range), "bytes=%llu-%llu",
	    (unsigned long long)offset, (unsigned long long)(offset + len - 1));
	r.out = buf;
	r.out_cap = len;
	r.out_fixed = true;
	if (s3_perform(s3_of(st), &r, err) < 0) {
		if (r.status == 416)
			mk_err_set(err,
			    "get(%s): bytes %llu-%llu asked, the object is "
			    "shorter",
			    name, (unsigned long long)offset,
			    (unsigned long long)(offset + len));
		return -1;
	}
	if ((r.status != 206 && offset != 0) || r.out_len != len)
		return mk_err_set(err,
		    "get(%s): bytes %llu-%llu asked, %zu came (HTTP %ld)", name,
		    (unsigned long long)offset,
		    (unsigned long long)(offset + len), r.out_len, r.status);
	return 0;
}

/* "2026-11-26T16:32:10.697Z" as seconds since the epoch, or 0. */
static int64_t
s3_parse_time(const char *s)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
		&tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

/* Report the objects of one ListObjectsV2 page; *token_r for the next. */
static int
s3_list_page(struct storage_s3 *s, const char *body, size_t blen,
    mk_storage_list_cb cb, void *arg, char *token, size_t tsize,
    struct mk_err *err)
{
	const char *p = body, *end = body + blen, *c, *ce;
	char key[MK_STORAGE_NAME_MAX + 300], num[32], when[64];
	size_t plen = strlen(s->where.prefix);
	struct mk_storage_stat ost;
	char trunc[16] = "";

	while ((c = memmem(p, (size_t)(end - p), "<Contents>", 10)) != NULL) {
		if ((ce = memmem(c, (size_t)(end - c), "</Contents>", 11)) ==
		    NULL)
			break;
		p = ce + 11;
		if (!s3_xml_text(c, ce, "Key", key, sizeof(key), NULL) ||
		    !s3_xml_text(c, ce, "Size", num, sizeof(num), NULL) ||
		    strncmp(key, s->where.prefix, plen) != 0 ||
		    !mk_storage_name_valid(key + plen, NULL))
			continue;
		if (mk_str_parse_u64(num, &ost.size, NULL) < 0)
			return mk_err_set(
			    err, "s3 list: bad size '%s' of %s", num, key);
		ost.mtime =
		    s3_xml_text(c, ce, "LastModified", when, sizeof(when), NULL)
		    ? s3_parse_time(when)
		    : 0;
		if (cb(arg, key + plen, &ost, err) < 0)
			return -1;
	}
	token[0] = '\0';
	if (s3_xml_text(body, end, "IsTruncated", trunc, sizeof(trunc), NULL) &&
	    strcmp(trunc, "true") == 0 &&
	    (!s3_xml_text(
		 body, end, "NextContinuationToken", token, tsize, NULL) ||
		token[0] == '\0'))
		return mk_err_set(
		    err, "s3 list: truncated without a continuation token");
	return 0;
}

static int
s3_list(struct mk_storage *st, const char *prefix, mk_storage_list_cb cb,
    void *arg, struct mk_err *err)
{
	struct storage_s3 *s = s3_of(st);
	char token[2048] = "", *full, *eprefix, *etoken, *query = NULL;
	struct s3_req r;
	int rc = -1;

	full = mk_xasprintf("%s%s", s->where.prefix, prefix);
	eprefix = mk_sigv4_uri_encode(full, false);
	for (;;) {
		etoken = mk_sigv4_uri_encode(token, false);
		free(query);
		query = token[0] != '\0'
		    ? mk_xasprintf(
			  "continuation-token=%s&list-type=2&prefix=%s", etoken,
			  eprefix)
		    : mk_xasprintf("list-type=2&prefix=%s", eprefix);
		free(etoken);
		s3_req_init(&r, "GET", NULL, query);
		if (s3_perform(s, &r, err) < 0) {
			free(r.out);
			goto out;
		}
		if (s3_list_page(s, (char *)r.out, r.out_len, cb, arg, token,
			sizeof(token), err) < 0) {
			free(r.out);
			goto out;
		}
		free(r.out);
		if (token[0] == '\0')
			break;
	}
	rc = 0;
out:
	free(query);
	free(eprefix);
	free(full);
	return rc;
}

static int
s3_del(struct mk_storage *st, const char *name, struct mk_err *err)
{
	struct s3_req r;
	int rc;

	s3_req_init(&r, "DELETE", name, "");
	rc = s3_perform(s3_of(st), &r, err);
	free(r.out);
	if (rc < 0 && r.status == 404)
		rc = 0;
	return rc;
}

static void
s3_wipe_free(char **sp)
{
	if (*sp == NULL)
		return;
	mk_crypto_wipe(*sp, strlen(*sp));
	free(*sp);
	*sp = NULL;
}

static void
s3_close(struct mk_storage *st)
{
	struct storage_s3 *s = s3_of(st);
	size_t i;

	for (i = 0; i < s->nidle; i++)
		curl_easy_cleanup(s->idle[i]);
	free(s->idle);
	if (s->share != NULL)
		curl_share_cleanup(s->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->share_lock[i]);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->idle_cond);
	s3_wipe_free(&s->access_key);
	s3_wipe_free(&s->secret_key);
	s3_wipe_free(&s->token);
	free(s->region);
	free(s->ca_file);
	free(s->base.location);
	free(s);
}

static const struct mk_storage_ops s3_ops = {
	.scheme = "s3",
	.put = s3_put,
	.get = s3_get,
	.get_range = s3_get_range,
	.list = s3_list,
	.del = s3_del,
	.stat = s3_stat,
	.close = s3_close,
};

/* A value of "key = value" when the line's key is key, else NULL. */
static char *
s3_cred_value(char *line, const char *key)
{
	size_t klen = strlen(key);
	char *v, *e;

	while (*line == ' ' || *line == '\t')
		line++;
	if (strncmp(line, key, klen) != 0)
		return NULL;
	v = line + klen;
	while (*v == ' ' || *v == '\t')
		v++;
	if (*v++ != '=')
		return NULL;
	while (*v == ' ' || *v == '\t')
		v++;
	e = v + strlen(v);
	while (e > v &&
	    (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
		*--e = '\0';
	return v;
}

/*
 * Read the [default] section (or the lines before any section) of an
 * AWS-style credentials file, which nobody but its owner may read.
 */
static int
s3_credentials_file(struct storage_s3 *s, const char *path, struct mk_err *err)
{
	char line[1024], *v;
	bool in = true;
	struct stat sb;
	FILE *fp = NULL;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return mk_err_sys(err, "credentials_file %s", path);
	if (fstat(fd, &sb) < 0) {
		mk_err_sys(err, "fstat(%s)", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0) {
		mk_err_set(err,
		    "credentials_file %s: mode %04o lets others read the S3 "
		    "secret (chmod 600 it); refused",
		    path, (unsigned)(sb.st_mode & 07777));
		close(fd);
		return -1;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		mk_err_sys(err, "fdopen(%s)", path);
		close(fd);
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		if (line[0] == '[') {
			in = strncmp(line, "[default]", 9) == 0;
			continue;
		}
		if (!in)
			continue;
		if ((v = s3_cred_value(line, "aws_access_key_id")) != NULL) {
			s3_wipe_free(&s->access_key);
			s->access_key = mk_xstrdup(v);
		} else if ((v = s3_cred_value(line, "aws_secret_access_key")) !=
		    NULL) {
			s3_wipe_free(&s->secret_key);
			s->secret_key = mk_xstrdup(v);
		} else if ((v = s3_cred_value(line, "aws_session_token")) !=
		    NULL) {
			s3_wipe_free(&s->token);
			s->token = mk_xstrdup(v);
		}
	}
	if (ferror(fp)) {
		mk_err_sys(err, "read(%s)", path);
		goto out;
	}
	if (s->access_key == NULL || s->secret_key == NULL ||
	    s->access_key[0] == '\0' || s->secret_key[0] == '\0') {
		mk_err_set(err,
		    "credentials_file %s: no aws_access_key_id and "
		    "aws_secret_access_key in [default]",
		    path);
		goto out;
	}
	rc = 0;
out:
	mk_crypto_wipe(line, sizeof(line));
	fclose(fp);
	return rc;
}

static int
s3_credentials_env(struct storage_s3 *s, struct mk_err *err)
{
	const char *ak = getenv("AWS_ACCESS_KEY_ID");
	const char *sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *tok = getenv("AWS_SESSION_TOKEN");

	if (ak == NULL || sk == NULL || ak[0] == '\0' || sk[0] == '\0')
		return mk_err_set(err,
		    "no S3 credentials: set credentials_file in [repository], "
		    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
	s->access_key = mk_xstrdup(ak);
	s->secret_key = mk_xstrdup(sk);
	if (tok != NULL && tok[0] != '\0')
		s->token = mk_xstrdup(tok);
	return 0;
}

/*
 * A ca_file that is missing or not a file fails here, with its reason,
 * rather than as curl's "error setting certificate file" at the first
 * request; curl itself finds out whether it holds PEM certificates.
 */
static int
s3_ca_file_check(const char *path, struct mk_err *err)
{
	struct stat sb;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return mk_err_sys(err, "ca_file %s", path);
	if (fstat(fd, &sb) < 0)
		mk_err_sys(err, "ca_file %s", path);
	else if (!S_ISREG(sb.st_mode))
		mk_err_set(err,
		    "ca_file %s: not a file (a PEM file of CA certificates "
		    "is wanted)",
		    path);
	else
		rc = 0;
	close(fd);
	return rc;
}

int
mk_storage_s3_open(const char *location, const struct mk_storage_opts *opts,
    struct mk_storage **st_r, struct mk_err *err)
{
	struct storage_s3 *s;
	size_t i;

	*st_r = NULL;
	if (opts->part_size < (5u << 20) || opts->connections == 0 ||
	    opts->timeout == 0)
		return mk_err_set(err,
		    "%s: part_size under 5 MiB, or no connections, or no "
		    "timeout",
		    location);
	pthread_once(&s3_once, s3_global_init);
	if (s3_global_rc != CURLE_OK)
		return mk_err_set(err, "curl_global_init: %s",
		    curl_easy_strerror(s3_global_rc));
	s = mk_xcalloc(1, sizeof(*s));
	s->base.ops = &s3_ops;
	s->base.location = mk_xstrdup(location);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->idle_cond, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->share_lock[i], NULL);
	if (mk_storage_s3_parse(location, &s->where, err) < 0)
		goto fail;
	s->opts = *opts;
	s->region =
	    mk_xstrdup(opts->region != NULL ? opts->region : "us-east-1");
	if (opts->ca_file != NULL && s3_ca_file_check(opts->ca_file, err) < 0)
		goto fail;
	s->ca_file = opts->ca_file != NULL ? mk_xstrdup(opts->ca_file) : NULL;
	s->opts.region = s->region;
	s->opts.ca_file = s->ca_file;
	s->opts.credentials_file = NULL;
	if (opts->credentials_file != NULL
		? s3_credentials_file(s, opts->credentials_file, err) < 0
		: s3_credentials_env(s, err) < 0)
		goto fail;
	s->idle = mk_xcalloc(opts->connections, sizeof(*s->idle));
	if ((s->share = curl_share_init()) == NULL)
		mk_fatal("s3", "curl_share_init: out of memory");
	curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, s3_share_lock_cb);
	curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, s3_share_unlock_cb);
	curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(
	    s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*st_r = &s->base;
	return 0;
fail:
	s3_close(&s->base);
	return -1;
}
