/*
 * httpconn: the connections of the daemon's evhttp servers, each with a
 * deadline for its current request.
 *
 * libevent 2.1's own timeout (evhttp_set_timeout) restarts at every byte
 * read or written, so a client sending one byte every few seconds keeps
 * its connection, and a descriptor, as long as it likes.  Here a request
 * must be read and answered within the deadline, counted from the moment
 * the connection can carry it (its accept, or the previous answer sent
 * in full); otherwise the connection is closed without an answer, as
 * nginx closes one whose client_header_timeout passed.  When descriptors
 * run out, mk_httpconn_shed() closes the connection whose request is the
 * oldest, so that a new one can be accepted.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_HTTPCONN_H
#define MAILKEEPD_HTTPCONN_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

struct mk_httpconn;

/* Counters the connections add to (the daemon's statistics). */
struct mk_httpconn_counts {
	uint64_t timeouts; /* closed at the deadline */
	uint64_t shed; /* closed to accept another when descriptors ran out */
};

/* Connections with a deadline of deadline_s seconds per request; counts
 * is borrowed and must outlive the set. */
struct mk_httpconn *mk_httpconn_new(struct event_base *base,
    uint64_t deadline_s, struct mk_httpconn_counts *counts);

/* Every connection http accepts from now on is tracked. */
void mk_httpconn_attach(struct mk_httpconn *hc, struct evhttp *http);

/* Call first thing in the request callback: once req's answer is sent,
 * the deadline starts again for the next request on the connection. */
void mk_httpconn_request(struct mk_httpconn *hc, struct evhttp_request *req);

/*
 * A request answered later, when a worker's task is done.  Its
 * connection may end meanwhile (deadline, shed, peer gone, stop):
 * mk_httpconn_release() then gives NULL, or the request alone when
 * evhttp left it to us, which answering frees.
 */
struct mk_httpconn_hold;
struct mk_httpconn_hold *mk_httpconn_hold(
    struct mk_httpconn *hc, struct evhttp_request *req);
struct evhttp_request *mk_httpconn_release(struct mk_httpconn_hold **holdp);

/* Close the connection whose request is the oldest; false when there is
 * none.  arg is the struct mk_httpconn (an accept guard's shed callback). */
bool mk_httpconn_shed(void *arg);

/* The connections open. */
size_t mk_httpconn_count(const struct mk_httpconn *hc);

/* Free after every attached evhttp was freed. */
void mk_httpconn_free(struct mk_httpconn **hcp);

#endif
