/*
 * accept: keeps a listening socket from spinning when accept() fails for
 * want of file descriptors (EMFILE, ENFILE).  A guard with a shed
 * callback first asks it to close a connection of its own (the one
 * waiting longest), so that accepting goes on at once and a new client
 * is served; with nothing to shed, accepting pauses for a second, as
 * OpenSMTPD and tmux do.  Either is logged, at most every 10 seconds.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_ACCEPT_H
#define MAILKEEPD_ACCEPT_H

#include <stdbool.h>

#include <event2/event.h>
#include <event2/listener.h>

struct mk_accept_guard;

/* Guard lev; name is for the log.  Free the guard before the listener. */
struct mk_accept_guard *mk_accept_guard_new(
    struct event_base *base, struct evconnlistener *lev, const char *name);
void mk_accept_guard_free(struct mk_accept_guard **guardp);

/* Close one connection to free a descriptor; false when there is none. */
typedef bool mk_accept_shed_cb(void *arg);

/* Out of descriptors, call shed(arg) before pausing. */
void mk_accept_guard_set_shed(
    struct mk_accept_guard *guard, mk_accept_shed_cb *shed, void *arg);

#endif
