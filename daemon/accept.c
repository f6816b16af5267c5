#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "accept.h"

struct mk_accept_guard {
	struct evconnlistener *lev;
	struct event *resume;
	char *name;
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
	if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
		mk_log_warn("accept", "%s: %s: not accepting for a second",
		    g->name, strerror(e));
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
