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

#include <stdint.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "mailkeep/err.h"

#include "daemon.h"

int mk_httpd_start(
    struct mk_daemon *d, struct mk_httpd **httpd_r, struct mk_err *err);
void mk_httpd_stop(struct mk_httpd **httpdp);

/* ns since the epoch as "2026-11-24T02:00:03Z", or null when 0. */
json_t *mk_httpd_time_json(int64_t ns);

/* One Prometheus metric with its HELP and TYPE lines. */
void mk_httpd_metric(struct evbuffer *b, const char *name, const char *type,
    const char *help, uint64_t value);

#endif
