#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "mailkeep/sock.h"
#include "mailkeep/str.h"

#define SOCK_BACKLOG 512

int
mk_sock_unix_listen(const char *path, mode_t mode, struct mk_err *err)
{
	struct sockaddr_un sun;
	mode_t old;
	int fd, probe;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (mk_strlcpy(sun.sun_path, path, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return mk_err_set(err, "%s: socket path too long", path);
	probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (probe >= 0 &&
	    connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		close(probe);
		return mk_err_set(
		    err, "%s: another daemon answers there", path);
	}
	if (probe >= 0)
		close(probe);
	if (unlink(path) < 0 && errno != ENOENT)
		return mk_err_sys(err, "unlink(%s)", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return mk_err_sys(err, "socket(%s)", path);
	old = umask(~mode & 0777);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fd, SOCK_BACKLOG) < 0) {
		umask(old);
		mk_err_sys(err, "bind(%s)", path);
		close(fd);
		return -1;
	}
	umask(old);
	return fd;
}
