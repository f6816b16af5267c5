/*
 * client: one HTTP/1.1 request to mailkeepd over a UNIX socket, blocking,
 * for the command line.
 */
#ifndef MAILKEEP_CLIENT_H
#define MAILKEEP_CLIENT_H

#include <stdbool.h>

#include "mailkeep/err.h"

struct mk_client_reply {
	int status; /* HTTP status code */
	char *body; /* NUL ended; the caller frees it */
};

/*
 * Send method and path (and body, or NULL) to the daemon at sock and read
 * the whole answer.  Returns 0, or -1 with err set when the daemon cannot
 * be reached or answers something that is not HTTP.
 */
int mk_client_request(const char *sock, const char *method, const char *path,
    const char *body, struct mk_client_reply *reply, struct mk_err *err);

/* Did mk_client_request fail because no daemon listens on the socket? */
bool mk_client_down(const struct mk_err *err);

/* s with every byte but A-Z a-z 0-9 - . _ ~ @ percent-encoded, for a
 * path or query; free() the result. */
char *mk_client_escape(const char *s);

#endif
