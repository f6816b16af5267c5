/*
 * sock: listening sockets the daemon serves on.
 */
#ifndef MAILKEEP_SOCK_H
#define MAILKEEP_SOCK_H

#include <sys/types.h>

#include "mailkeep/err.h"

/*
 * A non-blocking listening UNIX socket at path with permissions mode
 * (set through the umask around bind(), never by a later chmod).  A
 * stale socket file is replaced; one where another process still
 * answers is refused.  Returns the fd, or -1 with err set.
 */
int mk_sock_unix_listen(const char *path, mode_t mode, struct mk_err *err);

#endif
