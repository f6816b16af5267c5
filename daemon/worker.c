#include <stdlib.h>

#include "mailkeep/log.h"
#include "mailkeep/mem.h"

#include "worker.h"

void *
mk_worker_new(void *arg)
{
	struct mk_worker *w = mk_xcalloc(1, sizeof(*w));
	struct mk_err err;

	if (mk_catalog_open(arg, &w->catalog, &err) < 0)
		mk_log_error("worker", "%s", err.msg);
	return w;
}

void
mk_worker_free(void *ctx)
{
	struct mk_worker *w = ctx;

	mk_catalog_close(&w->catalog);
	free(w);
}
