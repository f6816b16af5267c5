#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mailkeep/mem.h"
#include "mailkeep/str.h"

#include "client.h"

#define CLIENT_TIMEOUT_MS 30000
#define CLIENT_REPLY_MAX (256 * 1024 * 1024)

static int
client_write_all(int fd, const char *buf, size_t len, struct mk_err *err)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return mk_err_sys(err, "write");
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Read until the daemon closes the connection. */
static int
client_read_all(int fd, char **buf_r, size_t *len_r, struct mk_err *err)
{
	size_t len = 0, cap = 0;
	char *buf = NULL;

	for (;;) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;
		int r;

		if ((r = poll(&pfd, 1, CLIENT_TIMEOUT_MS)) == 0) {
			free(buf);
			return mk_err_set(err, "no answer within %d s",
			    CLIENT_TIMEOUT_MS / 1000);
		}
		if (r < 0 && errno == EINTR)
			continue;
		mk_xgrow(&buf, &cap, len + 65536 + 1, 1);
		n = read(fd, buf + len, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return mk_err_sys(err, "read");
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CLIENT_REPLY_MAX) {
			free(buf);
			return mk_err_set(err, "answer too large");
		}
	}
	mk_xgrow(&buf, &cap, len + 1, 1);
	buf[len] = '\0';
	*buf_r = buf;
	*len_r = len;
	return 0;
}

int
mk_client_request(const char *sock, const char *method, const char *path,
    const char *body, struct mk_client_reply *reply, struct mk_err *err)
{
	struct sockaddr_un sun;
	char *req = NULL, *raw = NULL, *p;
	size_t len;
	int fd, rc = -1;

	memset(reply, 0, sizeof(*reply));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (mk_strlcpy(sun.sun_path, sock, sizeof(sun.sun_path)) >=
	    sizeof(sun.sun_path))
		return mk_err_set(err, "%s: socket path too long", sock);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return mk_err_sys(err, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ENOENT || errno == ECONNREFUSED) {
			int saved = errno;

			mk_err_set(err,
			    "mailkeepd is not running (nothing "
			    "answers on %s)",
			    sock);
			err->sys_errno = saved;
		} else
			mk_err_sys(err, "connect(%s)", sock);
		goto out;
	}
	req = mk_xasprintf("%s %s HTTP/1.1\r\nHost: mailkeepd\r\n"
			   "Connection: close\r\nContent-Length: %zu\r\n\r\n%s",
	    method, path, body != NULL ? strlen(body) : 0,
	    body != NULL ? body : "");
	if (client_write_all(fd, req, strlen(req), err) < 0 ||
	    client_read_all(fd, &raw, &len, err) < 0)
		goto out;
	if (sscanf(raw, "HTTP/1.%*d %d", &reply->status) != 1 ||
	    (p = strstr(raw, "\r\n\r\n")) == NULL) {
		mk_err_set(err, "%s: the answer is not HTTP", sock);
		goto out;
	}
	reply->body = mk_xstrdup(p + 4);
	rc = 0;
out:
	free(req);
	free(raw);
	close(fd);
	return rc;
}

char *
mk_client_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out = mk_xmalloc(strlen(s) * 3 + 1), *p = out;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-._~@", c) != NULL) {
			*p++ = (char)c;
			continue;
		}
		*p++ = '%';
		*p++ = hex[c >> 4];
		*p++ = hex[c & 15];
	}
	*p = '\0';
	return out;
}

bool
mk_client_down(const struct mk_err *err)
{
	return err->sys_errno == ENOENT || err->sys_errno == ECONNREFUSED;
}
