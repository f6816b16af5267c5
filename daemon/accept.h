/*
 * accept: keeps a listening socket from spinning when accept() fails for
 * want of file descriptors (EMFILE, ENFILE): accepting pauses for a second
 * and the failure is logged once per pause, as OpenSMTPD and tmux do.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_ACCEPT_H
#define MAILKEEPD_ACCEPT_H

#include <event2/event.h>
#include <event2/listener.h>

struct mk_accept_guard;

/* Guard lev; name is for the log.  Free the guard before the listener. */
struct mk_accept_guard *mk_accept_guard_new(
    struct event_base *base, struct evconnlistener *lev, const char *name);
void mk_accept_guard_free(struct mk_accept_guard **guardp);

#endif
