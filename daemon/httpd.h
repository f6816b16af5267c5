/*
 * httpd: HTTP/1.1 on the status socket (GET, for monitoring), the control
 * socket (GET and POST, for uid 0, the daemon's own user and members of
 * the admin group, checked from the peer's credentials), and optionally a
 * loopback TCP listener that serves /metrics only.  JSON through jansson.
 * Requests are bounded (headers, body, time, methods) and each gets
 * exactly one answer.
 *
 * Loop thread only.
 */
#ifndef MAILKEEPD_HTTPD_H
#define MAILKEEPD_HTTPD_H

#include "mailkeep/err.h"

#include "daemon.h"

int mk_httpd_start(
    struct mk_daemon *d, struct mk_httpd **httpd_r, struct mk_err *err);
void mk_httpd_stop(struct mk_httpd **httpdp);

#endif
