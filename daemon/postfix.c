#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/sock.h"
#include "mailkeep/policy.h"
#include "mailkeep/str.h"

#include "accept.h"
#include "enforce.h"
#include "postfix.h"

/* Postfix keeps a policy connection for max_idle (300 s) at most. */
#define POSTFIX_IDLE_TIMEOUT 330
#define POSTFIX_CONNECTIONS_MAX 20000
/* Bytes read at once; the answers to one read always fit postfix_out. */
#define POSTFIX_READ_MAX 16384
/* The shortest request, "request=smtpd_access_policy\n\n", is 29 bytes. */
#define POSTFIX_OUT_MAX ((POSTFIX_READ_MAX / 29 + 1) * MK_POLICY_REPLY_MAX)

const unsigned mk_postfix_latency_us[MK_POSTFIX_LATENCY_BUCKETS] = { 10, 25, 50,
	100, 250, 1000, 10000, 0 };

/*
 * A connection reads and writes its socket itself, without a bufferevent:
 * one read() takes whatever requests have arrived, each is answered into
 * one buffer, and one write() sends the answers.  Write interest is asked
 * for only when the socket buffer is full; reading stops until the rest
 * is out, so a client that does not read cannot make us buffer more than
 * the answers to one read.
 */
struct postfix_conn {
	struct mk_postfix *pf;
	int fd;
	struct event *rev, *wev;
	struct mk_policy_parser *parser;
	char *pending; /* answers not written yet, or NULL */
	size_t npending, pendoff;
	struct postfix_conn *next, *prev;
};

struct mk_postfix {
	struct mk_daemon *d;
	struct evconnlistener *listeners[2];
	struct mk_accept_guard *guards[2];
	size_t nlisteners;
	char *path;
	struct postfix_conn *conns;
	size_t nconns;
	const struct timeval *idle; /* a libevent common timeout */
	struct timeval idle_tv;
	char in[POSTFIX_READ_MAX];
	char out[POSTFIX_OUT_MAX];
};

static void
postfix_close(struct postfix_conn *c)
{
	struct mk_postfix *pf = c->pf;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		pf->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	pf->nconns--;
	event_free(c->rev);
	event_free(c->wev);
	close(c->fd);
	mk_policy_parser_free(&c->parser);
	free(c->pending);
	free(c);
}

static int64_t
postfix_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Answer one complete request into buf; returns the length. */
static size_t
postfix_answer(struct postfix_conn *c, int64_t start, char *buf)
{
	struct mk_daemon *d = c->pf->d;
	const struct mk_policy_request *req;
	struct mk_policy_decision dec;
	struct mk_err err;
	size_t len, i;
	int64_t took;

	req = mk_policy_parser_request(c->parser);
	if (mk_policy_decide(mk_enforce_policy_config(d->enforce), req,
		mk_enforce_aliases(d->enforce), mk_enforce_resv(d->enforce),
		mk_enforce_lookup, d->enforce, &dec, &err) < 0)
		mk_log_warn("policy", "%s: %s",
		    req->recipient != NULL ? req->recipient : "-", err.msg);
	if (!dec.refuse)
		mk_policy_reserve(&dec, mk_enforce_resv(d->enforce),
		    mk_daemon_now_ns() / 1000000000);
	else
		mk_log_info("policy", "refused %s (%s) from %s: %s",
		    req->recipient != NULL ? req->recipient : "-",
		    req->protocol_state != NULL ? req->protocol_state : "-",
		    req->sender != NULL && req->sender[0] != '\0' ? req->sender
								  : "<>",
		    mk_policy_reason_name(dec.reason));
	len = mk_policy_format_reply(mk_enforce_policy_config(d->enforce), &dec,
	    buf, MK_POLICY_REPLY_MAX);
	d->stats.policy_requests++;
	d->stats.policy_refused += dec.refuse;
	if ((size_t)dec.reason < sizeof(d->stats.policy_reasons) /
		sizeof(d->stats.policy_reasons[0]))
		d->stats.policy_reasons[dec.reason]++;
	mk_policy_decision_clear(&dec);
	took = postfix_mono_ns() - start;
	d->stats.policy_latency_sum_ns += (uint64_t)took;
	for (i = 0; i < MK_POSTFIX_LATENCY_BUCKETS - 1 &&
	     took > (int64_t)mk_postfix_latency_us[i] * 1000;
	     i++)
		;
	d->stats.policy_latency[i]++;
	return len;
}

/*
 * Write what is in buf; keep what the socket does not take and wait for
 * it to drain.  Returns -1 when the connection is gone (closed here).
 */
static int
postfix_send(struct postfix_conn *c, const char *buf, size_t len)
{
	ssize_t n;

	do
		n = send(c->fd, buf, len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
		postfix_close(c);
		return -1;
	}
	if (n < 0)
		n = 0;
	if ((size_t)n == len)
		return 0;
	c->npending = len - (size_t)n;
	c->pendoff = 0;
	c->pending = mk_xmalloc(c->npending);
	memcpy(c->pending, buf + n, c->npending);
	event_del(c->rev);
	event_add(c->wev, c->pf->idle);
	return 0;
}

static void
postfix_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct postfix_conn *c = arg;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		postfix_close(c);
		return;
	}
	n = send(fd, c->pending + c->pendoff, c->npending - c->pendoff,
	    MSG_NOSIGNAL);
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n < 0) {
		postfix_close(c);
		return;
	}
	c->pendoff += (size_t)n;
	if (c->pendoff < c->npending)
		return;
	free(c->pending);
	c->pending = NULL;
	event_del(c->wev);
	event_add(c->rev, c->pf->idle);
}

static void
postfix_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct postfix_conn *c = arg;
	struct mk_postfix *pf = c->pf;
	size_t off = 0, outlen = 0, used;
	struct mk_err err;
	int64_t start;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		postfix_close(c);
		return;
	}
	do
		n = read(fd, pf->in, sizeof(pf->in));
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		postfix_close(c);
		return;
	}
	start = postfix_mono_ns();
	while (off < (size_t)n) {
		enum mk_policy_status st;

		st = mk_policy_parser_feed(
		    c->parser, pf->in + off, (size_t)n - off, &used, &err);
		off += used;
		if (st == MK_POLICY_ERROR) {
			pf->d->stats.policy_errors++;
			mk_log_warn(
			    "policy", "bad request, closing: %s", err.msg);
			/* The answers before it are owed. */
			if (outlen > 0)
				(void)send(fd, pf->out, outlen, MSG_NOSIGNAL);
			postfix_close(c);
			return;
		}
		if (st == MK_POLICY_MORE)
			break;
		outlen += postfix_answer(c, start, pf->out + outlen);
		mk_policy_parser_reset(c->parser);
	}
	if (outlen > 0)
		postfix_send(c, pf->out, outlen);
}

static void
postfix_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
	struct mk_postfix *pf = arg;
	struct postfix_conn *c;

	(void)lev;
	(void)sa;
	(void)socklen;
	if (pf->nconns >= POSTFIX_CONNECTIONS_MAX) {
		mk_log_warn("policy", "%d connections: refusing more",
		    POSTFIX_CONNECTIONS_MAX);
		evutil_closesocket(fd);
		return;
	}
	c = mk_xcalloc(1, sizeof(*c));
	c->pf = pf;
	c->fd = fd;
	c->rev = event_new(
	    pf->d->base, fd, EV_READ | EV_PERSIST, postfix_read_cb, c);
	c->wev = event_new(
	    pf->d->base, fd, EV_WRITE | EV_PERSIST, postfix_write_cb, c);
	if (c->rev == NULL || c->wev == NULL ||
	    event_add(c->rev, pf->idle) < 0) {
		mk_log_warn("policy", "cannot watch a new connection");
		if (c->rev != NULL)
			event_free(c->rev);
		if (c->wev != NULL)
			event_free(c->wev);
		evutil_closesocket(fd);
		free(c);
		return;
	}
	c->parser = mk_policy_parser_new();
	c->next = pf->conns;
	if (pf->conns != NULL)
		pf->conns->prev = c;
	pf->conns = c;
	pf->nconns++;
}

static int
postfix_listen(struct mk_postfix *pf, int fd, struct mk_err *err)
{
	struct evconnlistener *lev;

	lev = evconnlistener_new(pf->d->base, postfix_accept_cb, pf,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (lev == NULL) {
		close(fd);
		return mk_err_set(err, "policy: evconnlistener_new failed");
	}
	pf->guards[pf->nlisteners] =
	    mk_accept_guard_new(pf->d->base, lev, "policy");
	pf->listeners[pf->nlisteners++] = lev;
	return 0;
}

/* The UNIX socket, for Postfix on this host (mode 0666: smtpd runs as
 * postfix). */
static int
postfix_unix(struct mk_postfix *pf, const char *path, struct mk_err *err)
{
	int fd;

	if ((fd = mk_sock_unix_listen(path, 0666, err)) < 0)
		return -1;
	pf->path = mk_xstrdup(path);
	return postfix_listen(pf, fd, err);
}

/* The TCP listener: "127.0.0.1:PORT" or "[::1]:PORT" only. */
static int
postfix_tcp(struct mk_postfix *pf, const char *listen_on, struct mk_err *err)
{
	struct sockaddr_storage ss;
	int sslen = sizeof(ss), fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(
		listen_on, (struct sockaddr *)&ss, &sslen) < 0)
		return mk_err_set(
		    err, "[policy] listen '%s': use ADDRESS:PORT", listen_on);
	if (!((ss.ss_family == AF_INET &&
		  ((struct sockaddr_in *)&ss)->sin_addr.s_addr ==
		      htonl(INADDR_LOOPBACK)) ||
		(ss.ss_family == AF_INET6 &&
		    memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr,
			&in6addr_loopback, sizeof(in6addr_loopback)) == 0)))
		return mk_err_set(err,
		    "[policy] listen '%s': only 127.0.0.1 "
		    "or [::1]: the service answers anyone who connects",
		    listen_on);
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mk_err_sys(err, "socket(%s)", listen_on);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)sslen) < 0 ||
	    listen(fd, 512) < 0) {
		mk_err_sys(err, "bind(%s)", listen_on);
		close(fd);
		return -1;
	}
	return postfix_listen(pf, fd, err);
}

int
mk_postfix_start(
    struct mk_daemon *d, struct mk_postfix **pf_r, struct mk_err *err)
{
	struct mk_postfix *pf = mk_xcalloc(1, sizeof(*pf));

	*pf_r = NULL;
	pf->d = d;
	pf->idle_tv.tv_sec = POSTFIX_IDLE_TIMEOUT;
	/* Every connection has the same timeout: O(1) to re-arm. */
	if ((pf->idle = event_base_init_common_timeout(
		 d->base, &pf->idle_tv)) == NULL)
		pf->idle = &pf->idle_tv;
	if (postfix_unix(pf, d->conf->policy_socket, err) < 0 ||
	    (d->conf->policy_listen != NULL &&
		postfix_tcp(pf, d->conf->policy_listen, err) < 0)) {
		mk_postfix_stop(&pf);
		return -1;
	}
	*pf_r = pf;
	return 0;
}

void
mk_postfix_stop(struct mk_postfix **pfp)
{
	struct mk_postfix *pf = *pfp;
	size_t i;

	if (pf == NULL)
		return;
	while (pf->conns != NULL)
		postfix_close(pf->conns);
	for (i = 0; i < pf->nlisteners; i++) {
		mk_accept_guard_free(&pf->guards[i]);
		evconnlistener_free(pf->listeners[i]);
	}
	if (pf->path != NULL) {
		unlink(pf->path);
		free(pf->path);
	}
	free(pf);
	*pfp = NULL;
}

size_t
mk_postfix_connections(const struct mk_postfix *pf)
{
	return pf->nconns;
}
