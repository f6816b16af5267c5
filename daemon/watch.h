/*
 * watch: the inotify instance.  Reads events on the loop and hands each to
 * live (mk_live_event); a queue overflow becomes mk_live_overflow.
 * Workers may add watches with inotify_add_watch on mk_watch_fd(), which
 * the kernel allows from any thread.
 *
 * Loop thread only, but for mk_watch_fd.
 */
#ifndef MAILKEEPD_WATCH_H
#define MAILKEEPD_WATCH_H

#include "mailkeep/err.h"

#include "daemon.h"

int mk_watch_start(
    struct mk_daemon *d, struct mk_watch **watch_r, struct mk_err *err);
void mk_watch_stop(struct mk_watch **watchp);

int mk_watch_fd(const struct mk_watch *watch);

/* Remove a watch (its IN_IGNORED event still arrives). */
void mk_watch_rm(struct mk_watch *watch, int wd);

/* Read and handle every event queued now, without waiting. */
void mk_watch_drain(struct mk_watch *watch);

#endif
