#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "mailkeep/catalog.h"
#include "mailkeep/dict.h"
#include "mailkeep/fsutil.h"
#include "mailkeep/log.h"
#include "mailkeep/mem.h"
#include "mailkeep/reindex.h"
#include "mailkeep/repo.h"
#include "mailkeep/store.h"
#include "mailkeep/str.h"

#include "cmd.h"

/* The options of "repo init" and "repo info". */
struct repo_args {
	const char *location; /* --repository */
	const char *key_file; /* --key-file */
	const char *pass_file; /* --passphrase-file */
	const char *new_key_file; /* --new-key-file (key add) */
	const char *new_pass_file; /* --new-passphrase-file (key add) */
	bool no_encryption; /* --no-encryption (init) */
};

/* What the options and the configuration resolve to. */
struct repo_cli {
	struct cmd_ctx *ctx;
	struct mk_conf *conf;
	char *location;
	const char *key_file;
	bool key_file_given;
	bool no_encryption;
	char *passphrase; /* from the environment or a file; wiped */
	const char *new_key_file;
	char *new_passphrase; /* key add: the new slot's; wiped */
	char **args; /* the positional arguments */
	int nargs;
};

static void
repo_cli_free(struct repo_cli *cli)
{
	free(cli->location);
	mk_repo_passphrase_free(&cli->passphrase);
	mk_repo_passphrase_free(&cli->new_passphrase);
	mk_conf_free(&cli->conf);
}

/* A location option made absolute, unless it names a scheme. */
static char *
repo_absolute(const char *location)
{
	char cwd[4096];

	if (location[0] == '/' || strchr(location, ':') != NULL ||
	    getcwd(cwd, sizeof(cwd)) == NULL)
		return mk_xstrdup(location);
	return mk_xasprintf("%s/%s", cwd, location);
}

/* The environment variable with the passphrase of a slot being added. */
#define REPO_NEW_PASSPHRASE_ENV "MAILKEEP_NEW_PASSPHRASE"

/* What a subcommand accepts beyond the common options. */
enum repo_mode {
	REPO_PLAIN, /* info, rebuild-catalog, key list, key verify */
	REPO_INIT, /* --no-encryption */
	REPO_KEY_ADD, /* --new-key-file, --new-passphrase-file */
	REPO_KEY_REMOVE, /* one slot id */
};

/* The new slot's passphrase, from a file or the environment. */
static int
repo_new_passphrase(const struct repo_args *a, struct repo_cli *cli)
{
	const char *env = getenv(REPO_NEW_PASSPHRASE_ENV);
	struct mk_err err;

	if (a->new_pass_file != NULL) {
		if (mk_repo_passphrase_read(
			a->new_pass_file, &cli->new_passphrase, &err) < 0) {
			mk_log_error("repo", "%s", err.msg);
			return CMD_FAIL;
		}
	} else if (env != NULL && env[0] != '\0')
		cli->new_passphrase = mk_xstrdup(env);
	if ((cli->new_passphrase != NULL) == (a->new_key_file != NULL)) {
		mk_log_error("repo",
		    "key add needs the new key: --new-key-file FILE, or a "
		    "passphrase from --new-passphrase-file FILE or %s (one of "
		    "them)",
		    REPO_NEW_PASSPHRASE_ENV);
		return CMD_USAGE;
	}
	cli->new_key_file = a->new_key_file;
	return CMD_OK;
}

/*
 * Parse the subcommand's options and settle the location, key file and
 * passphrase.  Returns CMD_OK, CMD_USAGE or CMD_FAIL (logged).
 */
static int
repo_setup(struct cmd_ctx *ctx, int argc, char **argv, enum repo_mode mode,
    struct repo_cli *cli)
{
	static const struct option longopts[] = {
		{ "repository", required_argument, NULL, 'r' },
		{ "key-file", required_argument, NULL, 'k' },
		{ "passphrase-file", required_argument, NULL, 'p' },
		{ "new-key-file", required_argument, NULL, 'K' },
		{ "new-passphrase-file", required_argument, NULL, 'P' },
		{ "no-encryption", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct repo_args a = { NULL, NULL, NULL, NULL, NULL, false };
	bool init = mode == REPO_INIT;
	int rc;
	const char *env;
	struct mk_err err;
	int ch;

	memset(cli, 0, sizeof(*cli));
	cli->ctx = ctx;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "+", longopts, NULL)) != -1) {
		switch (ch) {
		case 'r':
			a.location = optarg;
			break;
		case 'k':
			a.key_file = optarg;
			break;
		case 'p':
			a.pass_file = optarg;
			break;
		case 'K':
		case 'P':
			if (mode != REPO_KEY_ADD)
				return cmd_usage(ctx);
			if (ch == 'K')
				a.new_key_file = optarg;
			else
				a.new_pass_file = optarg;
			break;
		case 'n':
			if (!init)
				return cmd_usage(ctx);
			a.no_encryption = true;
			break;
		case 'j':
			ctx->json = true;
			break;
		default:
			return cmd_usage(ctx);
		}
	}
	env = getenv(MK_REPO_PASSPHRASE_ENV);
	if (argc - optind != (mode == REPO_KEY_REMOVE ? 1 : 0))
		return cmd_usage(ctx);
	cli->args = argv + optind;
	cli->nargs = argc - optind;
	if (mode == REPO_KEY_ADD &&
	    (rc = repo_new_passphrase(&a, cli)) != CMD_OK)
		return rc;
	if (a.no_encryption &&
	    (a.key_file != NULL || a.pass_file != NULL || env != NULL)) {
		mk_log_error("repo",
		    "--no-encryption takes no key file and no passphrase "
		    "(%s is %s)",
		    MK_REPO_PASSPHRASE_ENV, env != NULL ? "set" : "unset");
		return CMD_USAGE;
	}
	cli->no_encryption = a.no_encryption;
	if (cmd_conf(ctx, &cli->conf) < 0)
		return CMD_FAIL;
	cli->location = repo_absolute(
	    a.location != NULL ? a.location : cli->conf->repo_location);
	cli->key_file_given = a.key_file != NULL;
	cli->key_file =
	    a.key_file != NULL ? a.key_file : cli->conf->repo_key_file;
	if (a.pass_file != NULL) {
		if (mk_repo_passphrase_read(
			a.pass_file, &cli->passphrase, &err) < 0) {
			mk_log_error("repo", "%s", err.msg);
			return CMD_FAIL;
		}
	} else if (env != NULL) {
		if (env[0] == '\0') {
			mk_log_error(
			    "repo", "%s is empty", MK_REPO_PASSPHRASE_ENV);
			return CMD_FAIL;
		}
		cli->passphrase = mk_xstrdup(env);
	}
	return CMD_OK;
}

/*
 * Make the key file (and its directory) unless it exists; *created_r says
 * whether this run made it.
 */
static int
repo_key_file_ensure(const char *path, bool *created_r, struct mk_err *err)
{
	char dir[4096];

	*created_r = false;
	if (mk_strlcpy(dir, path, sizeof(dir)) >= sizeof(dir))
		return mk_err_set(err, "%s: path too long", path);
	if (mk_fs_mkdir_p(dirname(dir), 0700, err) < 0)
		return -1;
	return mk_repo_key_file_create(path, created_r, err);
}

static int
repo_init(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo_init_opts opts;
	struct mk_storage_opts sopts;
	struct mk_storage *st = NULL;
	struct mk_repo_key key = { MK_REPO_KEY_FILE, NULL, NULL, NULL };
	struct mk_repo_key pass = { MK_REPO_KEY_PASSPHRASE, NULL, NULL, NULL };
	char pass_slot[MK_REPO_SLOT_ID_LEN + 1] = "";
	struct mk_repo *repo = NULL;
	struct mk_repo_info info;
	struct repo_cli cli;
	struct mk_err err;
	bool created = false;
	int rc, status = CMD_FAIL;

	if ((rc = repo_setup(ctx, argc, argv, REPO_INIT, &cli)) != CMD_OK) {
		repo_cli_free(&cli);
		return rc;
	}
	memset(&opts, 0, sizeof(opts));
	opts.no_encryption = cli.no_encryption;
	opts.level = (int)cli.conf->repo_compression_level;
	key.key_file = cli.key_file;
	if (!opts.no_encryption &&
	    repo_key_file_ensure(cli.key_file, &created, &err) < 0)
		goto fail;
	mk_storage_opts_from_conf(cli.conf, &sopts);
	if (mk_storage_open_opts(cli.location, &sopts, true, &st, &err) < 0 ||
	    mk_repo_init_storage(
		st, opts.no_encryption ? NULL : &key, &opts, &repo, &err) < 0) {
		/* A key made for a repository that was not made is noise. */
		if (created)
			unlink(cli.key_file);
		goto fail;
	}
	if (created)
		fprintf(stderr,
		    "\n"
		    "  WARNING: a new repository key was written to\n"
		    "      %s\n"
		    "  Copy this file off this machine now (a password "
		    "manager, a safe).\n"
		    "  If the machine is lost with the only copy, every "
		    "backup is lost.\n"
		    "\n",
		    cli.key_file);
	/* A passphrase, when there is one, becomes a recovery slot. */
	if (cli.passphrase != NULL) {
		pass.passphrase = cli.passphrase;
		if (mk_repo_key_add(repo, &pass, pass_slot, &err) < 0)
			goto fail;
	}
	if (mk_repo_info(repo, &info, &err) < 0)
		goto fail;
	if (ctx->json) {
		json_t *obj = json_pack("{s:s, s:s, s:b, s:I}", "location",
		    info.location, "id", info.id, "encrypted", info.encrypted,
		    "slots", (json_int_t)info.slots);
		char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);

		printf("%s\n", s);
		free(s);
		json_decref(obj);
	} else {
		printf(
		    "created repository %s\n  at %s\n", info.id, info.location);
		if (info.encrypted)
			printf("  key file slot %s: %s\n", info.slot_id,
			    cli.key_file);
		else
			printf("  without encryption (blobs are stored in "
			       "clear)\n");
		if (pass_slot[0] != '\0')
			printf("  passphrase slot %s\n", pass_slot);
	}
	if (info.encrypted && info.slots == 1)
		mk_log_warn("repo",
		    "only one key slot: keep a copy of %s off this machine "
		    "(with %s set, init also adds a passphrase slot)",
		    cli.key_file, MK_REPO_PASSPHRASE_ENV);
	status = CMD_OK;
	goto out;
fail:
	mk_log_error("repo", "%s", err.msg);
out:
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return status;
}

static void
repo_print_info(const struct mk_repo_info *info, const struct mk_conf *conf)
{
	struct mk_storage_s3_where w;
	char a[32], b[32], c[32];

	printf("location:     %s\n", info->location);
	if (mk_storage_s3_parse(info->location, &w, NULL) == 0) {
		printf("endpoint:     %s://%s (%s, %s-style URLs)\n", w.scheme,
		    w.host, conf->repo_region,
		    conf->repo_url_style == MK_STORAGE_URL_VIRTUAL ? "virtual"
								   : "path");
		printf("bucket:       %s\n", w.bucket);
		printf(
		    "prefix:       %s\n", w.prefix[0] != '\0' ? w.prefix : "-");
	}
	printf("id:           %s\n", info->id);
	printf(
	    "version:      %u.%u\n", info->version_major, info->version_minor);
	printf("created:      %s\n", info->created);
	if (info->encrypted) {
		printf("encryption:   AES-256-GCM, blob ids HMAC-SHA-256\n");
		printf("key slots:    %zu (opened with %s)\n", info->slots,
		    info->slot_id);
	} else {
		printf("encryption:   none, blob ids SHA-256\n");
		printf("key slots:    %zu\n", info->slots);
	}
	mk_str_format_size(info->pack_bytes, a, sizeof(a));
	printf("packs:        %llu (%s)\n", (unsigned long long)info->packs, a);
	mk_str_format_size(info->pack_size, a, sizeof(a));
	printf("compression:  zstd level %d, packs of %s\n", info->level, a);
	mk_str_format_size(info->chunker.min, a, sizeof(a));
	mk_str_format_size(info->chunker.avg, b, sizeof(b));
	mk_str_format_size(info->chunker.max, c, sizeof(c));
	printf("chunking:     FastCDC %s / %s / %s\n", a, b, c);
}

static void
repo_print_info_json(const struct mk_repo_info *info,
    const struct mk_conf *conf, const char *warning)
{
	struct mk_storage_s3_where w;
	json_t *obj;
	char *s;

	obj = json_pack("{s:s, s:s, s:i, s:i, s:s, s:b, s:I, s:s?, s:I, s:I, "
			"s:i, s:I, s:{s:I, s:I, s:I}, s:s?}",
	    "location", info->location, "id", info->id, "version_major",
	    (int)info->version_major, "version_minor", (int)info->version_minor,
	    "created", info->created, "encrypted", info->encrypted, "slots",
	    (json_int_t)info->slots, "slot",
	    info->encrypted ? info->slot_id : NULL, "packs",
	    (json_int_t)info->packs, "pack_bytes", (json_int_t)info->pack_bytes,
	    "compression_level", info->level, "pack_size",
	    (json_int_t)info->pack_size, "chunker", "min",
	    (json_int_t)info->chunker.min, "avg", (json_int_t)info->chunker.avg,
	    "max", (json_int_t)info->chunker.max, "warning", warning);
	if (mk_storage_s3_parse(info->location, &w, NULL) == 0) {
		char *endpoint = mk_xasprintf("%s://%s", w.scheme, w.host);

		json_object_set_new(obj, "s3",
		    json_pack("{s:s, s:s, s:s, s:s, s:s}", "endpoint", endpoint,
			"bucket", w.bucket, "prefix", w.prefix, "region",
			conf->repo_region, "url_style",
			conf->repo_url_style == MK_STORAGE_URL_VIRTUAL
			    ? "virtual"
			    : "path"));
		free(endpoint);
	}
	s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	printf("%s\n", s);
	free(s);
	json_decref(obj);
}

/*
 * Set up a subcommand and open the repository with a passphrase if one
 * is given, else the key file if there is one.  Returns CMD_OK with
 * *repo_r open, or CMD_USAGE or CMD_FAIL (logged); cli is set up either
 * way (repo_cli_free it).
 */
static int
repo_setup_open(struct cmd_ctx *ctx, int argc, char **argv, enum repo_mode mode,
    struct repo_cli *cli, struct mk_repo **repo_r)
{
	struct mk_repo_key key = { MK_REPO_KEY_NONE, NULL, NULL, NULL };
	struct mk_storage_opts sopts;
	struct mk_storage *st = NULL;
	struct mk_err err;
	int rc;

	*repo_r = NULL;
	if ((rc = repo_setup(ctx, argc, argv, mode, cli)) != CMD_OK)
		return rc;
	if (cli->passphrase != NULL) {
		key.kind = MK_REPO_KEY_PASSPHRASE;
		key.passphrase = cli->passphrase;
	} else if (cli->key_file_given || access(cli->key_file, F_OK) == 0) {
		key.kind = MK_REPO_KEY_FILE;
		key.key_file = cli->key_file;
	}
	mk_storage_opts_from_conf(cli->conf, &sopts);
	if (mk_storage_open_opts(cli->location, &sopts, false, &st, &err) < 0 ||
	    mk_repo_open_storage(st, &key, repo_r, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		return CMD_FAIL;
	}
	return CMD_OK;
}

/* The warning that status, info and key list give for a single slot. */
static const char *
repo_slot_warning(const struct mk_repo_info *info)
{
	if (info->encrypted && info->slots == 1)
		return "only one key slot: losing its key loses every backup "
		       "(add another with 'mailkeep repo key add')";
	return NULL;
}

static int
repo_info(struct cmd_ctx *ctx, int argc, char **argv)
{
	const char *warning = NULL;
	struct mk_repo *repo = NULL;
	struct mk_repo_info info;
	struct repo_cli cli;
	struct mk_err err;
	int rc;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	if (mk_repo_info(repo, &info, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		rc = CMD_FAIL;
		goto out;
	}
	warning = repo_slot_warning(&info);
	if (ctx->json)
		repo_print_info_json(&info, cli.conf, warning);
	else
		repo_print_info(&info, cli.conf);
	if (warning != NULL)
		mk_log_warn("repo", "%s", warning);
	rc = CMD_OK;
out:
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

static const char *
repo_kind_name(enum mk_repo_key_kind kind)
{
	return kind == MK_REPO_KEY_PASSPHRASE ? "passphrase" : "key file";
}

/* key list: every slot, the one opened marked. */
static int
repo_key_list(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo_slot *slots = NULL;
	struct mk_repo *repo = NULL;
	struct mk_repo_info info;
	const char *warning;
	struct repo_cli cli;
	struct mk_err err;
	json_t *list;
	size_t n = 0, i;
	int rc;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	if (mk_repo_info(repo, &info, &err) < 0 ||
	    mk_repo_key_list(repo, &slots, &n, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		rc = CMD_FAIL;
		goto out;
	}
	warning = repo_slot_warning(&info);
	if (ctx->json) {
		list = json_array();
		for (i = 0; i < n; i++)
			json_array_append_new(list,
			    json_pack("{s:s, s:s, s:s, s:s, s:b}", "id",
				slots[i].id, "kind",
				slots[i].kind == MK_REPO_KEY_PASSPHRASE
				    ? "passphrase"
				    : "key_file",
				"created", slots[i].created, "host",
				slots[i].host, "opened",
				strcmp(slots[i].id, info.slot_id) == 0));
		cmd_backup_print(json_pack(
		    "{s:o, s:s?}", "slots", list, "warning", warning));
	} else {
		printf("%-32s  %-10s  %-20s  %s\n", "SLOT", "KIND", "CREATED",
		    "HOST");
		for (i = 0; i < n; i++)
			printf("%-32s  %-10s  %-20s  %s%s\n", slots[i].id,
			    repo_kind_name(slots[i].kind), slots[i].created,
			    slots[i].host,
			    strcmp(slots[i].id, info.slot_id) == 0
				? "  (opened now)"
				: "");
	}
	if (warning != NULL)
		mk_log_warn("repo", "%s", warning);
	rc = CMD_OK;
out:
	free(slots);
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

/* key add: a new slot for a new key file or passphrase. */
static int
repo_key_add(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo_key key = { MK_REPO_KEY_FILE, NULL, NULL, NULL };
	char slot[MK_REPO_SLOT_ID_LEN + 1];
	struct mk_repo *repo = NULL;
	struct repo_cli cli;
	struct mk_err err;
	bool created = false;
	int rc;

	if ((rc = repo_setup_open(
		 ctx, argc, argv, REPO_KEY_ADD, &cli, &repo)) != CMD_OK)
		goto out;
	rc = CMD_FAIL;
	if (cli.new_passphrase != NULL) {
		key.kind = MK_REPO_KEY_PASSPHRASE;
		key.passphrase = cli.new_passphrase;
	} else {
		key.key_file = cli.new_key_file;
		if (repo_key_file_ensure(cli.new_key_file, &created, &err) < 0)
			goto fail;
	}
	if (mk_repo_key_add(repo, &key, slot, &err) < 0) {
		if (created)
			unlink(cli.new_key_file);
		goto fail;
	}
	if (ctx->json)
		cmd_backup_print(
		    json_pack("{s:s, s:s, s:s?, s:b}", "slot", slot, "kind",
			key.kind == MK_REPO_KEY_PASSPHRASE ? "passphrase"
							   : "key_file",
			"key_file", key.key_file, "created_key_file", created));
	else if (key.kind == MK_REPO_KEY_PASSPHRASE)
		printf("added passphrase slot %s\n", slot);
	else
		printf("added key file slot %s: %s%s\n", slot, key.key_file,
		    created ? " (a new key: copy it off this machine)" : "");
	rc = CMD_OK;
	goto out;
fail:
	mk_log_error("repo", "%s", err.msg);
out:
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

/* key remove SLOT: never the last one. */
static int
repo_key_remove(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo *repo = NULL;
	struct repo_cli cli;
	struct mk_err err;
	int rc;

	if ((rc = repo_setup_open(
		 ctx, argc, argv, REPO_KEY_REMOVE, &cli, &repo)) != CMD_OK)
		goto out;
	if (mk_repo_key_remove(repo, cli.args[0], &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		rc = CMD_FAIL;
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:s}", "removed", cli.args[0]));
	else
		printf("removed key slot %s\n", cli.args[0]);
	rc = CMD_OK;
out:
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

/*
 * key verify: whether the key given (a passphrase, else the key file)
 * opens a slot holding this repository's master key.  Opening the
 * repository with it already says so; verify asks the slots again, as
 * a script that rotates keys would.
 */
static int
repo_key_verify(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo_key key = { MK_REPO_KEY_FILE, NULL, NULL, NULL };
	char slot[MK_REPO_SLOT_ID_LEN + 1] = "";
	struct mk_repo *repo = NULL;
	struct repo_cli cli;
	struct mk_err err;
	int rc, r;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	rc = CMD_FAIL;
	if (cli.passphrase != NULL) {
		key.kind = MK_REPO_KEY_PASSPHRASE;
		key.passphrase = cli.passphrase;
	} else
		key.key_file = cli.key_file;
	if ((r = mk_repo_key_verify(repo, &key, slot, &err)) < 0) {
		mk_log_error("repo", "%s", err.msg);
		goto out;
	}
	if (r == 0) {
		mk_log_error("repo", "no key slot opens with this key");
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack("{s:s, s:s}", "slot", slot, "kind",
		    key.kind == MK_REPO_KEY_PASSPHRASE ? "passphrase"
						       : "key_file"));
	else
		printf("the %s opens key slot %s\n", repo_kind_name(key.kind),
		    slot);
	rc = CMD_OK;
out:
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

static int
repo_key(struct cmd_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cmd_usage(ctx);
	if (strcmp(argv[1], "list") == 0)
		return repo_key_list(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "add") == 0)
		return repo_key_add(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "remove") == 0)
		return repo_key_remove(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "verify") == 0)
		return repo_key_verify(ctx, argc - 1, argv + 1);
	return cmd_usage(ctx);
}

static const char *
repo_dict_kind_name(int kind)
{
	return kind == MK_REPO_DICT_HEADERS ? "headers"
	    : kind == MK_REPO_DICT_BODIES   ? "bodies"
					    : "?";
}

static int
repo_dict_list_cb(const struct mk_repo_dict_info *info, bool current,
    const struct mk_err *damage, void *arg)
{
	json_t *list = arg;
	char when[32];

	if (list != NULL) {
		json_array_append_new(list,
		    damage != NULL ? json_pack("{s:s, s:s}", "id", info->hex,
					 "error", damage->msg)
				   : json_pack("{s:s, s:s, s:b, s:I, s:I, s:I}",
					 "id", info->hex, "kind",
					 repo_dict_kind_name(info->kind),
					 "current", current, "created_ns",
					 (json_int_t)info->created_ns, "size",
					 (json_int_t)info->size, "samples",
					 (json_int_t)info->samples));
		return 0;
	}
	if (damage != NULL) {
		printf("%.16s  damaged: %s\n", info->hex, damage->msg);
		return 0;
	}
	cmd_backup_time(info->created_ns, when);
	printf("%.16s  %-7s  %s  %7zu bytes  %6u samples%s\n", info->hex,
	    repo_dict_kind_name(info->kind), when, info->size, info->samples,
	    current ? "  current" : "");
	return 0;
}

/* dict list: the dictionaries, newest of each kind marked current. */
static int
repo_dict_list(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_repo *repo = NULL;
	json_t *list = NULL;
	struct repo_cli cli;
	struct mk_err err;
	size_t n;
	int rc;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	rc = CMD_FAIL;
	if (ctx->json)
		list = json_array();
	if (mk_repo_dicts_load(repo, true, &n, &err) < 0 ||
	    mk_repo_dicts(repo, repo_dict_list_cb, list, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		goto out;
	}
	if (list != NULL) {
		cmd_backup_print(json_pack("{s:O}", "dictionaries", list));
	} else if (n == 0)
		printf("no dictionaries (blobs are compressed without)\n");
	rc = CMD_OK;
out:
	json_decref(list);
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

/* dict train: new dictionaries from a sample of the whole store. */
static int
repo_dict_train(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_store_list *list = NULL;
	struct mk_store *store = NULL;
	struct mk_repo *repo = NULL;
	struct mk_dict_result res;
	char **relpaths = NULL;
	struct repo_cli cli;
	struct mk_err err;
	int rc, kind, rootfd = -1;
	size_t i;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	rc = CMD_FAIL;
	if (mk_store_new(cli.conf->store_root, cli.conf->store_template, &store,
		&err) < 0 ||
	    (rootfd = mk_store_open_root(store, &err)) < 0 ||
	    mk_store_list(store, &list, &err) < 0 ||
	    mk_repo_dicts_load(repo, true, &i, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		goto out;
	}
	relpaths = mk_xcalloc(list->count + 1, sizeof(*relpaths));
	for (i = 0; i < list->count; i++)
		relpaths[i] = list->mailboxes[i].relpath;
	if (mk_dict_train(
		repo, rootfd, relpaths, list->count, false, &res, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		goto out;
	}
	rc = CMD_OK;
	for (kind = MK_REPO_DICT_HEADERS; kind <= MK_REPO_DICT_BODIES; kind++) {
		if (res.trained[kind])
			printf("%s: dictionary %.16s, %zu bytes from %zu "
			       "samples of %zu messages; current from now on\n",
			    repo_dict_kind_name(kind), res.info[kind].hex,
			    res.info[kind].size, res.samples[kind],
			    res.messages);
		else {
			mk_log_error("repo", "%s: no dictionary: %s",
			    repo_dict_kind_name(kind), res.why[kind]);
			rc = CMD_FAIL;
		}
	}
out:
	free(relpaths);
	mk_store_list_free(&list);
	if (rootfd >= 0)
		close(rootfd);
	mk_store_free(&store);
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

static int
repo_dict(struct cmd_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cmd_usage(ctx);
	if (strcmp(argv[1], "list") == 0)
		return repo_dict_list(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "train") == 0)
		return repo_dict_train(ctx, argc - 1, argv + 1);
	return cmd_usage(ctx);
}

/* rebuild-catalog: the backup tables from the repository alone. */
static int
repo_rebuild_catalog(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct mk_reindex_stats st;
	struct mk_catalog *cat = NULL;
	struct mk_repo *repo = NULL;
	struct repo_cli cli;
	struct mk_err err;
	int rc;

	if ((rc = repo_setup_open(ctx, argc, argv, REPO_PLAIN, &cli, &repo)) !=
	    CMD_OK)
		goto out;
	rc = CMD_FAIL;
	if (mk_fs_mkdir_p(cli.conf->state_dir, 0700, &err) < 0 ||
	    mk_catalog_open(cli.conf->catalog, &cat, &err) < 0 ||
	    mk_reindex_catalog(repo, cat, &st, &err) < 0) {
		mk_log_error("repo", "%s", err.msg);
		goto out;
	}
	if (ctx->json)
		cmd_backup_print(json_pack(
		    "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "catalog",
		    cli.conf->catalog, "packs", (json_int_t)st.packs, "blobs",
		    (json_int_t)st.blobs, "runs", (json_int_t)st.runs,
		    "snapshots", (json_int_t)st.snapshots, "messages",
		    (json_int_t)st.messages, "versions",
		    (json_int_t)st.versions, "skipped",
		    (json_int_t)st.skipped));
	else
		printf("catalog %s rebuilt from %s: %llu packs (%llu blobs), "
		       "%llu runs, %llu snapshots, %llu messages, %llu "
		       "versions\n",
		    cli.conf->catalog, cli.location,
		    (unsigned long long)st.packs, (unsigned long long)st.blobs,
		    (unsigned long long)st.runs,
		    (unsigned long long)st.snapshots,
		    (unsigned long long)st.messages,
		    (unsigned long long)st.versions);
	if (st.skipped > 0) {
		mk_log_error("repo",
		    "%llu damaged objects were left out (see above); "
		    "'mailkeep check' says what they affect",
		    (unsigned long long)st.skipped);
		goto out;
	}
	rc = CMD_OK;
out:
	mk_catalog_close(&cat);
	mk_repo_close(&repo);
	repo_cli_free(&cli);
	return rc;
}

int
cmd_repo(struct cmd_ctx *ctx, int argc, char **argv)
{
	if (argc < 2)
		return cmd_usage(ctx);
	if (strcmp(argv[1], "init") == 0)
		return repo_init(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "info") == 0)
		return repo_info(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "key") == 0)
		return repo_key(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "dict") == 0)
		return repo_dict(ctx, argc - 1, argv + 1);
	if (strcmp(argv[1], "rebuild-catalog") == 0)
		return repo_rebuild_catalog(ctx, argc - 1, argv + 1);
	return cmd_usage(ctx);
}
