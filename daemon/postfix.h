/*
 * postfix: the Postfix policy service (check_policy_service) on a UNIX
 * socket and optionally on a loopback TCP port.  Persistent connections,
 * many at once; each request is answered from memory (lib/policy.c's
 * decision over live usage and limits), or, when it is malformed, the
 * connection is closed without an answer as the protocol asks.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_POSTFIX_H
#define MAILKEEPD_POSTFIX_H

#include "mailkeep/err.h"

#include "daemon.h"

/* Upper bounds of the latency histogram buckets, in microseconds. */
#define MK_POSTFIX_LATENCY_BUCKETS 8
extern const unsigned mk_postfix_latency_us[MK_POSTFIX_LATENCY_BUCKETS];

int mk_postfix_start(
    struct mk_daemon *d, struct mk_postfix **pf_r, struct mk_err *err);
void mk_postfix_stop(struct mk_postfix **pfp);

/* Connections open now. */
size_t mk_postfix_connections(const struct mk_postfix *pf);

#endif
