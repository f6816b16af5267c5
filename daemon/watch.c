#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "live.h"
#include "watch.h"

struct mk_watch {
	struct mk_daemon *d;
	int fd;
	struct event *ev;
};

static void
watch_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	mk_watch_drain(arg);
}

void
mk_watch_drain(struct mk_watch *watch)
{
	char buf[64 * 1024]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	for (;;) {
		char *p;

		n = read(watch->fd, buf, sizeof(buf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				mk_log_error("watch", "read(inotify): %s",
				    strerror(errno));
			return;
		}
		for (p = buf; p < buf + n;) {
			struct inotify_event *ie = (struct inotify_event *)p;

			/* The kernel writes whole events only; guard anyway. */
			if (p + sizeof(*ie) > buf + n ||
			    p + sizeof(*ie) + ie->len > buf + n) {
				mk_log_error("watch", "short inotify event");
				break;
			}
			if (ie->mask & IN_Q_OVERFLOW)
				mk_live_overflow(watch->d->live);
			else
				mk_live_event(watch->d->live, ie->wd, ie->mask,
				    ie->cookie, ie->len > 0 ? ie->name : "");
			p += sizeof(*ie) + ie->len;
		}
	}
}

int
mk_watch_start(
    struct mk_daemon *d, struct mk_watch **watch_r, struct mk_err *err)
{
	struct mk_watch *watch = mk_xcalloc(1, sizeof(*watch));

	*watch_r = NULL;
	watch->d = d;
	watch->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (watch->fd < 0) {
		free(watch);
		return mk_err_sys(err, "inotify_init1");
	}
	watch->ev = event_new(
	    d->base, watch->fd, EV_READ | EV_PERSIST, watch_read_cb, watch);
	if (watch->ev == NULL || event_add(watch->ev, NULL) < 0) {
		mk_watch_stop(&watch);
		return mk_err_set(err, "watch: cannot add inotify to the loop");
	}
	*watch_r = watch;
	return 0;
}

void
mk_watch_stop(struct mk_watch **watchp)
{
	struct mk_watch *watch = *watchp;

	if (watch == NULL)
		return;
	if (watch->ev != NULL)
		event_free(watch->ev);
	close(watch->fd);
	free(watch);
	*watchp = NULL;
}

int
mk_watch_fd(const struct mk_watch *watch)
{
	return watch->fd;
}

void
mk_watch_rm(struct mk_watch *watch, int wd)
{
	if (inotify_rm_watch(watch->fd, wd) < 0 && errno != EINVAL)
		mk_log_warn(
		    "watch", "inotify_rm_watch(%d): %s", wd, strerror(errno));
}
