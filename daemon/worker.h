/*
 * worker: what each pool thread owns for its jobs, made when the thread
 * starts and freed when it stops.
 */
#ifndef MAILKEEPD_WORKER_H
#define MAILKEEPD_WORKER_H

#include "mailkeep/catalog.h"

struct mk_worker {
	struct mk_catalog *catalog; /* this thread's connection, or NULL */
};

/* Pool callbacks; arg is the catalog path. */
void *mk_worker_new(void *arg);
void mk_worker_free(void *ctx);

#endif
