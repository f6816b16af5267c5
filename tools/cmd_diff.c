#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/hmap.h"
#include "mailkeep/log.h"
#include "mailkeep/maildir.h"
#include "mailkeep/mem.h"
#include "mailkeep/str.h"

#include "cmd.h"

/* A message of one side, copied out of the catalog's callback. */
struct diff_msg {
	char *dir;
	char *base;
	char *flags;
	char *subject;
	bool matched;
};

struct diff_side {
	struct diff_msg *v;
	size_t n, cap;
};

/* A change, for sorting by folder. */
struct diff_change {
	const char *dir;
	char kind; /* '+', '-', '~' */
	const struct diff_msg *before, *after;
};

static void
diff_cb(const struct mk_catalog_listing *l, void *arg)
{
	struct diff_side *side = arg;
	struct diff_msg *m;

	mk_xgrow(&side->v, &side->cap, side->n + 1, sizeof(*side->v));
	m = &side->v[side->n++];
	m->dir = mk_xstrdup(l->dir);
	m->base = mk_xstrdup(l->base);
	m->flags = mk_xstrdup(cmd_flags(l->suffix));
	m->subject = mk_xstrdup(l->has_header ? l->subject : "");
	m->matched = false;
}

static void
diff_side_free(struct diff_side *side)
{
	size_t i;

	for (i = 0; i < side->n; i++) {
		free(side->v[i].dir);
		free(side->v[i].base);
		free(side->v[i].flags);
		free(side->v[i].subject);
	}
	free(side->v);
}

static bool
diff_match(const void *value, const void *key)
{
	const struct diff_msg *a = value, *b = key;

	return strcmp(a->base, b->base) == 0 && strcmp(a->dir, b->dir) == 0;
}

static int
diff_change_cmp(const void *a, const void *b)
{
	const struct diff_change *x = a, *y = b;
	const struct diff_msg *mx = x->after != NULL ? x->after : x->before;
	const struct diff_msg *my = y->after != NULL ? y->after : y->before;
	int r;

	if ((r = strcmp(x->dir, y->dir)) != 0)
		return r;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return strcmp(mx->base, my->base);
}

/* Print the changes, grouped by folder. */
static void
diff_print(struct cmd_ctx *ctx, char sep, const char *address, int64_t s1,
    int64_t s2, const struct diff_change *c, size_t n)
{
	json_t *folders = json_array(), *f = NULL;
	char folder[512];
	size_t i, j, counts[3];

	for (i = 0; i < n; i = j) {
		memset(counts, 0, sizeof(counts));
		for (j = i; j < n && strcmp(c[j].dir, c[i].dir) == 0; j++)
			counts[c[j].kind == '+'    ? 0
				: c[j].kind == '-' ? 1
						   : 2]++;
		mk_maildir_folder_name(c[i].dir, sep, folder, sizeof(folder));
		if (ctx->json) {
			f = json_pack("{s:s, s:[], s:[], s:[]}", "folder",
			    folder, "added", "removed", "flags");
			json_array_append_new(folders, f);
		} else
			printf("%s: %zu added, %zu removed, %zu flags "
			       "changed\n",
			    folder, counts[0], counts[1], counts[2]);
		for (j = i; j < n && strcmp(c[j].dir, c[i].dir) == 0; j++) {
			const struct diff_msg *m =
			    c[j].after != NULL ? c[j].after : c[j].before;

			if (ctx->json && c[j].kind == '~')
				json_array_append_new(
				    json_object_get(f, "flags"),
				    json_pack("{s:s, s:s, s:s}", "id", m->base,
					"before", c[j].before->flags, "after",
					c[j].after->flags));
			else if (ctx->json)
				json_array_append_new(
				    json_object_get(f,
					c[j].kind == '+' ? "added" : "removed"),
				    json_string(m->base));
			else if (c[j].kind == '~')
				printf("  ~ %s  flags %s -> %s  %.50s\n",
				    m->base,
				    c[j].before->flags[0] ? c[j].before->flags
							  : "(none)",
				    c[j].after->flags[0] ? c[j].after->flags
							 : "(none)",
				    m->subject);
			else
				printf("  %c %s  %.60s\n", c[j].kind, m->base,
				    m->subject);
		}
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:s, s:I, s:I, s:o}", "mailbox",
		    address, "from", (json_int_t)s1, "to", (json_int_t)s2,
		    "folders", folders));
	else {
		if (n == 0)
			printf("no differences between snapshots %lld and "
			       "%lld of %s\n",
			    (long long)s1, (long long)s2, address);
		json_decref(folders);
	}
}

int
cmd_diff(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct diff_side a = { 0 }, b = { 0 };
	struct diff_change *changes = NULL;
	struct mk_catalog *cat = NULL;
	struct mk_conf *conf = NULL;
	struct mk_hmap *map = NULL;
	size_t nchanges = 0, cap = 0, i;
	int64_t s1, s2;
	struct mk_err err;
	int status = CMD_FAIL;
	char *address;

	optind = 0;
	if (getopt(argc, argv, "+") != -1 || argc - optind != 3)
		return cmd_usage(ctx);
	address = argv[optind];
	mk_str_lower(address);
	if (cmd_conf(ctx, &conf) < 0 || cmd_catalog_open(ctx, conf, &cat) < 0)
		goto out;
	if ((status = cmd_snapshot_pick(ctx, cat, address, argv[optind + 1],
		 NULL, &s1, NULL)) != CMD_OK ||
	    (status = cmd_snapshot_pick(ctx, cat, address, argv[optind + 2],
		 NULL, &s2, NULL)) != CMD_OK)
		goto out;
	status = CMD_FAIL;
	if (mk_catalog_list_at(cat, address, s1, diff_cb, &a, &err) < 0 ||
	    mk_catalog_list_at(cat, address, s2, diff_cb, &b, &err) < 0) {
		mk_log_error("diff", "%s", err.msg);
		goto out;
	}
	map = mk_hmap_new();
	for (i = 0; i < a.n; i++)
		mk_hmap_put(map, mk_hmap_hash(a.v[i].base, strlen(a.v[i].base)),
		    &a.v[i]);
	for (i = 0; i < b.n; i++) {
		struct diff_msg *old = mk_hmap_get(map,
		    mk_hmap_hash(b.v[i].base, strlen(b.v[i].base)), diff_match,
		    &b.v[i]);

		mk_xgrow(&changes, &cap, nchanges + 1, sizeof(*changes));
		if (old == NULL)
			changes[nchanges++] = (struct diff_change){ b.v[i].dir,
				'+', NULL, &b.v[i] };
		else {
			old->matched = true;
			if (strcmp(old->flags, b.v[i].flags) != 0)
				changes[nchanges++] =
				    (struct diff_change){ b.v[i].dir, '~', old,
					    &b.v[i] };
		}
	}
	for (i = 0; i < a.n; i++)
		if (!a.v[i].matched) {
			mk_xgrow(
			    &changes, &cap, nchanges + 1, sizeof(*changes));
			changes[nchanges++] = (struct diff_change){ a.v[i].dir,
				'-', &a.v[i], NULL };
		}
	qsort(changes, nchanges, sizeof(*changes), diff_change_cmp);
	diff_print(
	    ctx, conf->hierarchy_separator, address, s1, s2, changes, nchanges);
	status = CMD_OK;
out:
	free(changes);
	mk_hmap_free(&map);
	diff_side_free(&a);
	diff_side_free(&b);
	mk_catalog_close(&cat);
	mk_conf_free(&conf);
	return status;
}
