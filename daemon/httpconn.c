#include <stdlib.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "httpconn.h"

/* Deadline closures are logged at most this often (seconds). */
#define HTTPCONN_LOG_EVERY 60

/*
 * How this works on libevent 2.1.12, which has neither
 * evhttp_set_newreqcb (2.2) nor a public evhttp_get_request:
 * evhttp_set_bevcb lets us make each accepted connection's bufferevent
 * before evhttp wraps it in an evhttp_connection and sets itself as the
 * bufferevent's callbacks with the connection as their argument.  The
 * timer made active there runs before any byte is read (active events
 * run before the loop polls again) and "adopts" the connection: it finds
 * the evhttp_connection as that argument, sets a close callback on it,
 * which evhttp_connection_free() calls on every way a connection ends,
 * and turns into the deadline.  Our reference on the bufferevent keeps
 * it readable until then, even if evhttp gave up on the connection.
 *
 * The other ways, and why not: evhttp_set_timeout() and
 * evhttp_connection_set_timeout() only set the bufferevent's read and
 * write timeouts, which restart at every byte; a filtering bufferevent
 * around evhttp's cannot work on 2.1, because evhttp gives the accepted
 * socket to bufferevent_setfd(), which a filter ignores, so no request
 * was ever read; accepting ourselves and handing evhttp one end of a
 * socketpair would copy every byte and take two descriptors a client,
 * the wrong way round when descriptors run out.
 */
struct httpconn {
	struct mk_httpconn *hc;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until adopted */
	struct event *timer; /* adopts, then is the deadline */
	struct mk_httpconn_hold *hold; /* its request, answered later */
	TAILQ_ENTRY(httpconn) entry; /* oldest request first */
};

struct mk_httpconn_hold {
	struct evhttp_request *req; /* NULL: freed with its connection */
	struct httpconn *c; /* NULL: the connection is gone */
};

TAILQ_HEAD(httpconn_list, httpconn);

struct mk_httpconn {
	struct event_base *base;
	struct timeval deadline;
	struct httpconn_list conns;
	size_t count;
	struct mk_hmap *byevcon; /* adopted connections */
	struct mk_httpconn_counts *counts;
	uint64_t logged_timeouts; /* counts->timeouts when last logged */
	time_t logged_at;
};

static uint64_t
httpconn_key(const struct evhttp_connection *evcon)
{
	return mk_hmap_hash((const char *)&evcon, sizeof(evcon));
}

static bool
httpconn_match(const void *value, const void *ctx)
{
	const struct httpconn *c = value;

	return c->evcon == ctx;
}

/* Forget c; the connection itself is evhttp's. */
static void
httpconn_drop(struct httpconn *c)
{
	struct mk_httpconn *hc = c->hc;

	TAILQ_REMOVE(&hc->conns, c, entry);
	hc->count--;
	if (c->hold != NULL) {
		/* evhttp_connection_free() frees the requests still on the
		 * connection; one it detached (the peer went away before
		 * the answer) is left to whoever answers it. */
		if (evhttp_request_get_connection(c->hold->req) != NULL)
			c->hold->req = NULL;
		c->hold->c = NULL;
	}
	if (c->evcon != NULL)
		mk_hmap_remove(hc->byevcon, httpconn_key(c->evcon), c);
	event_free(c->timer);
	free(c);
}

/* evhttp frees the connection (answered and closed, peer gone, error). */
static void
httpconn_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	struct httpconn *c = arg;

	(void)evcon;
	httpconn_drop(c);
}

/* Close c's connection now, without an answer. */
static void
httpconn_close(struct httpconn *c)
{
	struct evhttp_connection *evcon = c->evcon;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	httpconn_drop(c);
	evhttp_connection_free(evcon);
}

static void
httpconn_log_timeouts(struct mk_httpconn *hc)
{
	struct timeval now;
	uint64_t n = hc->counts->timeouts - hc->logged_timeouts;

	event_base_gettimeofday_cached(hc->base, &now);
	if (n == 0 ||
	    (hc->logged_at != 0 &&
		now.tv_sec - hc->logged_at < HTTPCONN_LOG_EVERY))
		return;
	mk_log_info("httpd",
	    "closed %llu connection%s whose request was not done within "
	    "%lld s",
	    (unsigned long long)n, n == 1 ? "" : "s",
	    (long long)hc->deadline.tv_sec);
	hc->logged_timeouts = hc->counts->timeouts;
	hc->logged_at = now.tv_sec;
}

/* Find the evhttp_connection evhttp made around c's bufferevent. */
static void
httpconn_adopt(struct httpconn *c)
{
	struct mk_httpconn *hc = c->hc;
	bufferevent_event_cb eventcb;
	void *cbarg;

	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &cbarg);
	if (eventcb == NULL || cbarg == NULL ||
	    evhttp_connection_get_bufferevent(cbarg) != c->bev) {
		/* evhttp failed to set the connection up and freed it. */
		bufferevent_decref(c->bev);
		httpconn_drop(c);
		return;
	}
	bufferevent_decref(c->bev);
	c->evcon = cbarg;
	evhttp_connection_set_closecb(c->evcon, httpconn_closed_cb, c);
	mk_hmap_put(hc->byevcon, httpconn_key(c->evcon), c);
	evtimer_add(c->timer, &hc->deadline);
}

static void
httpconn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct httpconn *c = arg;
	struct mk_httpconn *hc = c->hc;

	(void)fd;
	(void)what;
	if (c->evcon == NULL) {
		httpconn_adopt(c);
		return;
	}
	hc->counts->timeouts++;
	httpconn_close(c);
	httpconn_log_timeouts(hc);
}

/* evhttp's bufferevent callback: a connection was accepted. */
static struct bufferevent *
httpconn_bev_cb(struct event_base *base, void *arg)
{
	struct mk_httpconn *hc = arg;
	struct bufferevent *bev;
	struct httpconn *c;

	/* What evhttp makes when there is no callback. */
	if ((bev = bufferevent_socket_new(base, -1, 0)) == NULL)
		return NULL;
	c = mk_xcalloc(1, sizeof(*c));
	c->hc = hc;
	c->bev = bev;
	if ((c->timer = evtimer_new(base, httpconn_timer_cb, c)) == NULL)
		mk_fatal("httpd", "cannot create a timer");
	bufferevent_incref(bev);
	TAILQ_INSERT_TAIL(&hc->conns, c, entry);
	hc->count++;
	event_active(c->timer, EV_TIMEOUT, 1);
	return bev;
}

/* The answer is sent: the next request has its own deadline. */
static void
httpconn_complete_cb(struct evhttp_request *req, void *arg)
{
	struct httpconn *c = arg;
	struct mk_httpconn *hc = c->hc;

	(void)req;
	evtimer_add(c->timer, &hc->deadline);
	TAILQ_REMOVE(&hc->conns, c, entry);
	TAILQ_INSERT_TAIL(&hc->conns, c, entry);
}

struct mk_httpconn *
mk_httpconn_new(struct event_base *base, uint64_t deadline_s,
    struct mk_httpconn_counts *counts)
{
	struct mk_httpconn *hc = mk_xcalloc(1, sizeof(*hc));

	hc->base = base;
	hc->deadline.tv_sec = (time_t)deadline_s;
	TAILQ_INIT(&hc->conns);
	hc->byevcon = mk_hmap_new();
	hc->counts = counts;
	return hc;
}

void
mk_httpconn_attach(struct mk_httpconn *hc, struct evhttp *http)
{
	evhttp_set_bevcb(http, httpconn_bev_cb, hc);
}

void
mk_httpconn_request(struct mk_httpconn *hc, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct httpconn *c;

	if (evcon == NULL ||
	    (c = mk_hmap_get(hc->byevcon, httpconn_key(evcon), httpconn_match,
		 evcon)) == NULL)
		return;
	evhttp_request_set_on_complete_cb(req, httpconn_complete_cb, c);
}

struct mk_httpconn_hold *
mk_httpconn_hold(struct mk_httpconn *hc, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct mk_httpconn_hold *hold = mk_xcalloc(1, sizeof(*hold));

	hold->req = req;
	if (evcon != NULL &&
	    (hold->c = mk_hmap_get(hc->byevcon, httpconn_key(evcon),
		 httpconn_match, evcon)) != NULL)
		hold->c->hold = hold;
	return hold;
}

struct evhttp_request *
mk_httpconn_release(struct mk_httpconn_hold **holdp)
{
	struct mk_httpconn_hold *hold = *holdp;
	struct evhttp_request *req;

	if (hold == NULL)
		return NULL;
	*holdp = NULL;
	if (hold->c != NULL)
		hold->c->hold = NULL;
	req = hold->req;
	free(hold);
	return req;
}

bool
mk_httpconn_shed(void *arg)
{
	struct mk_httpconn *hc = arg;
	struct httpconn *c;

	while ((c = TAILQ_FIRST(&hc->conns)) != NULL) {
		/* Accepted in this same turn of the loop: evhttp is done with
		 * it, it can be adopted now. */
		if (c->evcon == NULL) {
			httpconn_adopt(c);
			continue;
		}
		hc->counts->shed++;
		httpconn_close(c);
		return true;
	}
	return false;
}

size_t
mk_httpconn_count(const struct mk_httpconn *hc)
{
	return hc->count;
}

void
mk_httpconn_free(struct mk_httpconn **hcp)
{
	struct mk_httpconn *hc = *hcp;
	struct httpconn *c;

	if (hc == NULL)
		return;
	/* Left: connections evhttp_free() freed before they were adopted. */
	while ((c = TAILQ_FIRST(&hc->conns)) != NULL) {
		if (c->evcon == NULL)
			bufferevent_decref(c->bev);
		httpconn_drop(c);
	}
	mk_hmap_free(&hc->byevcon);
	free(hc);
	*hcp = NULL;
}
