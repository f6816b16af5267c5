#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "accept.h"

/* Running out of descriptors is logged at most this often (seconds). */
#define ACCEPT_LOG_EVERY 10

struct mk_accept_guard {
	struct evconnlistener *lev;
	struct event_base *base;
	struct event *resume;
	char *name;
	mk_accept_shed_cb *shed;
	void *shed_arg;
	uint64_t shed_count, pauses; /* since the last log line */
	time_t logged_at;
	struct mk_accept_guard *next;
};

/*
 * libevent hands the error callback the listener's accept argument, which
 * belongs to whoever accepts (evhttp), so guards are found by listener in
 * this list: one entry per listening socket.
 */
static struct mk_accept_guard *accept_guards;

static const struct timeval accept_pause_tv = { 1, 0 };

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mk_accept_guard *g = arg;

	(void)fd;
	(void)what;
	evconnlistener_enable(g->lev);
}

/* Say what running out did since the last line, unless that was just
 * now. */
static void
accept_log(struct mk_accept_guard *g, int e)
{
	struct timeval now;

	event_base_gettimeofday_cached(g->base, &now);
	if (g->logged_at != 0 && now.tv_sec - g->logged_at < ACCEPT_LOG_EVERY)
		return;
	if (g->shed_count > 0)
		mk_log_warn("accept",
		    "%s: %s: closed %llu waiting connection%s to accept new "
		    "ones",
		    g->name, strerror(e), (unsigned long long)g->shed_count,
		    g->shed_count == 1 ? "" : "s");
	if (g->pauses > 0)
		mk_log_warn("accept", "%s: %s: not accepting for a second%s",
		    g->name, strerror(e), g->pauses > 1 ? " (repeatedly)" : "");
	g->shed_count = g->pauses = 0;
	g->logged_at = now.tv_sec;
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct mk_accept_guard *g;
	int e = EVUTIL_SOCKET_ERROR();

	(void)arg;
	for (g = accept_guards; g != NULL && g->lev != lev; g = g->next)
		;
	if (g == NULL)
		return;
	if ((e == EMFILE || e == ENFILE) && g->shed != NULL &&
	    g->shed(g->shed_arg)) {
		/* A descriptor is free: the listener stays on and the next
		 * turn of the loop accepts. */
		g->shed_count++;
		accept_log(g, e);
		return;
	}
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		g->pauses++;
		accept_log(g, e);
		evconnlistener_disable(lev);
		evtimer_add(g->resume, &accept_pause_tv);
		return;
	}
	mk_log_warn("accept", "%s: %s", g->name, strerror(e));
}

struct mk_accept_guard *
mk_accept_guard_new(
    struct event_base *base, struct evconnlistener *lev, const char *name)
{
	struct mk_accept_guard *g = mk_xcalloc(1, sizeof(*g));

	g->lev = lev;
	g->base = base;
	g->name = mk_xstrdup(name);
	g->resume = evtimer_new(base, accept_resume_cb, g);
	if (g->resume == NULL)
		mk_fatal("accept", "cannot create a timer");
	evconnlistener_set_error_cb(lev, accept_error_cb);
	g->next = accept_guards;
	accept_guards = g;
	return g;
}

void
mk_accept_guard_set_shed(
    struct mk_accept_guard *guard, mk_accept_shed_cb *shed, void *arg)
{
	guard->shed = shed;
	guard->shed_arg = arg;
}

void
mk_accept_guard_free(struct mk_accept_guard **guardp)
{
	struct mk_accept_guard *g = *guardp, **gp;

	if (g == NULL)
		return;
	for (gp = &accept_guards; *gp != NULL; gp = &(*gp)->next)
		if (*gp == g) {
			*gp = g->next;
			break;
		}
	event_free(g->resume);
	free(g->name);
	free(g);
	*guardp = NULL;
}
