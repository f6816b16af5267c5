#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#include "mailkeep/doveconf.h"
#include "mailkeep/mem.h"
#include "mailkeep/quota.h"
#include "mailkeep/str.h"

#define DOVECONF_DEPTH_MAX 16

void
mk_doveconf_clear(struct mk_doveconf *dc)
{
	free(dc->mail_location);
	free(dc->mail_home);
	free(dc->quota);
	free(dc->quota_driver);
	free(dc->quota_rule);
	free(dc->quota_grace);
	memset(dc, 0, sizeof(*dc));
}

static void
doveconf_keep(char **field, const char *value, size_t len)
{
	free(*field);
	*field = mk_xstrndup(value, len);
}

/* One "key = value" line inside the sections named in stack[0..depth). */
static void
doveconf_setting(struct mk_doveconf *dc, char stack[][64], size_t depth,
    const char *key, size_t klen, const char *value, size_t vlen)
{
#define KEY_IS(s) (klen == sizeof(s) - 1 && memcmp(key, s, klen) == 0)
	if (depth == 0) {
		if (KEY_IS("mail_location"))
			doveconf_keep(&dc->mail_location, value, vlen);
		else if (KEY_IS("mail_home"))
			doveconf_keep(&dc->mail_home, value, vlen);
		else if (KEY_IS("quota_storage_grace"))
			doveconf_keep(&dc->quota_grace, value, vlen);
		else if (KEY_IS("quota_driver"))
			doveconf_keep(&dc->quota_driver, value, vlen);
	} else if (depth == 1 && strcmp(stack[0], "plugin") == 0) {
		if (KEY_IS("quota"))
			doveconf_keep(&dc->quota, value, vlen);
		else if (KEY_IS("quota_rule"))
			doveconf_keep(&dc->quota_rule, value, vlen);
		else if (KEY_IS("quota_grace"))
			doveconf_keep(&dc->quota_grace, value, vlen);
	} else if (depth == 1 && strncmp(stack[0], "quota ", 6) == 0 &&
	    KEY_IS("driver"))
		doveconf_keep(&dc->quota_driver, value, vlen);
#undef KEY_IS
}

int
mk_doveconf_parse(
    const char *text, size_t len, struct mk_doveconf *dc, struct mk_err *err)
{
	char stack[DOVECONF_DEPTH_MAX][64];
	const char *p = text, *end = text + len;
	size_t depth = 0;
	unsigned lineno = 0;

	memset(dc, 0, sizeof(*dc));
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		const char *s = p, *e = eol != NULL ? eol : end, *eq;

		p = eol != NULL ? eol + 1 : end;
		lineno++;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (
		    e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			e--;
		if (s == e || *s == '#')
			continue;
		if (e[-1] == '{') {
			size_t n = (size_t)(e - 1 - s);

			while (n > 0 && s[n - 1] == ' ')
				n--;
			if (depth == DOVECONF_DEPTH_MAX)
				goto fail;
			snprintf(stack[depth++], sizeof(stack[0]), "%.*s",
			    (int)n, s);
			if (depth == 1 && strncmp(stack[0], "quota ", 6) == 0)
				dc->quota_section = true;
			continue;
		}
		if (e - s == 1 && *s == '}') {
			if (depth == 0)
				goto fail;
			depth--;
			continue;
		}
		if ((eq = memchr(s, '=', (size_t)(e - s))) == NULL)
			continue;
		{
			const char *k = s, *ke = eq, *v = eq + 1;

			while (ke > k && ke[-1] == ' ')
				ke--;
			while (v < e && *v == ' ')
				v++;
			doveconf_setting(dc, stack, depth, k, (size_t)(ke - k),
			    v, (size_t)(e - v));
		}
	}
	if (depth == 0)
		return 0;
fail:
	mk_doveconf_clear(dc);
	return mk_err_set(
	    err, "doveconf output, line %u: sections do not balance", lineno);
}

int
mk_doveconf_read(
    const char *command, struct mk_doveconf *dc, struct mk_err *err)
{
	char *buf = mk_xmalloc(MK_DOVECONF_OUTPUT_MAX);
	size_t len = 0, n;
	int status, rc = -1;
	FILE *fp;

	memset(dc, 0, sizeof(*dc));
	if ((fp = popen(command, "r")) == NULL) {
		mk_err_sys(err, "run '%s'", command);
		goto out;
	}
	while (len < MK_DOVECONF_OUTPUT_MAX &&
	    (n = fread(buf + len, 1, MK_DOVECONF_OUTPUT_MAX - len, fp)) > 0)
		len += n;
	status = pclose(fp);
	if (len == MK_DOVECONF_OUTPUT_MAX) {
		mk_err_set(err, "'%s': more than %d bytes of output", command,
		    MK_DOVECONF_OUTPUT_MAX);
		goto out;
	}
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		mk_err_set(err, "'%s' failed (status %d)", command, status);
		goto out;
	}
	rc = mk_doveconf_parse(buf, len, dc, err);
out:
	free(buf);
	return rc;
}

/* Dovecot's variables in the spellings that mean mailkeep's %d, %n, %u. */
static char *
doveconf_normalize_path(const char *path, const char *home)
{
	static const char *const map[][2] = {
		{ "%Ld", "%d" },
		{ "%Ln", "%n" },
		{ "%Lu", "%u" },
		{ "%{domain}", "%d" },
		{ "%{username}", "%n" },
		{ "%{user}", "%u" },
		{ "%{user | domain}", "%d" },
		{ "%{user | username}", "%n" },
	};
	char *out, *tmp;
	size_t i;

	if (path[0] == '~' && (path[1] == '/' || path[1] == '\0') &&
	    home != NULL)
		out = mk_xasprintf("%s%s", home, path + 1);
	else
		out = mk_xstrdup(path);
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		char *at;

		while ((at = strstr(out, map[i][0])) != NULL) {
			*at = '\0';
			tmp = mk_xasprintf(
			    "%s%s%s", out, map[i][1], at + strlen(map[i][0]));
			free(out);
			out = tmp;
		}
	}
	return out;
}

/* Report a formatted finding; counts warnings. */
struct doveconf_report {
	mk_doveconf_report_cb *cb;
	void *arg;
	size_t warnings;
};

static void doveconf_say(struct doveconf_report *r, bool warning,
    const char *fmt, ...) MK_PRINTF(3, 4);

static void
doveconf_say(struct doveconf_report *r, bool warning, const char *fmt, ...)
{
	char *msg;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		abort();
	va_end(ap);
	r->cb(r->arg, warning, msg);
	r->warnings += warning;
	free(msg);
}

static void
doveconf_check_location(const struct mk_doveconf *dc,
    const struct mk_conf *conf, struct doveconf_report *r)
{
	char *want, *path, *home, *opt;

	if (dc->mail_location == NULL) {
		doveconf_say(r, true,
		    "mail_location is not set: Dovecot finds mail where its "
		    "userdb says; make sure that is %s/%s",
		    conf->store_root, conf->store_template);
		return;
	}
	if (strncmp(dc->mail_location, "maildir:", 8) != 0) {
		doveconf_say(r, true,
		    "mail_location = %s is not maildir: mailkeep "
		    "watches Maildir++ stores only",
		    dc->mail_location);
		return;
	}
	want = mk_xasprintf("%s/%s", conf->store_root, conf->store_template);
	home = dc->mail_home != NULL
	    ? doveconf_normalize_path(dc->mail_home, NULL)
	    : NULL;
	path = mk_xstrdup(dc->mail_location + 8);
	if ((opt = strchr(path, ':')) != NULL)
		*opt = '\0';
	opt = path;
	path = doveconf_normalize_path(opt, home);
	free(opt);
	if (path[0] == '~')
		doveconf_say(r, true,
		    "mail_location = %s is under the home directory, "
		    "which the userdb gives: make sure it is %s",
		    dc->mail_location, want);
	else if (strcmp(path, want) != 0)
		doveconf_say(r, true,
		    "mail_location = %s, but mailkeep's store is %s "
		    "([store] root and template): mailkeepd counts other "
		    "directories than Dovecot delivers to",
		    dc->mail_location, want);
	else
		doveconf_say(r, false,
		    "mail_location = %s matches [store] root and template",
		    dc->mail_location);
	free(want);
	free(path);
	free(home);
}

static void
doveconf_check_driver(const struct mk_doveconf *dc, const struct mk_conf *conf,
    struct doveconf_report *r)
{
	const char *driver = NULL;
	size_t n = 0;
	bool virtual = conf->quota_basis == MK_QUOTA_BASIS_VIRTUAL;

	if (dc->quota != NULL) {
		driver = dc->quota;
		n = strcspn(driver, ":");
	} else if (dc->quota_driver != NULL) {
		driver = dc->quota_driver;
		n = strlen(driver);
	} else if (dc->quota_section) {
		driver = "count"; /* 2.4's default */
		n = 5;
	}
	if (driver == NULL) {
		doveconf_say(r, true,
		    "no quota root (plugin quota): Dovecot enforces no limit "
		    "at delivery or IMAP APPEND; only the policy service "
		    "refuses mail");
		return;
	}
	if (n == 7 && strncmp(driver, "maildir", 7) == 0) {
		if (!conf->quota_maildirsize)
			doveconf_say(r, true,
			    "quota driver maildir reads maildirsize, but "
			    "[quota] maildirsize = no: Dovecot's usage "
			    "drifts from mailkeepd's");
		else
			doveconf_say(r, false,
			    "quota driver maildir reads the maildirsize "
			    "mailkeepd keeps");
		if (virtual)
			doveconf_say(r, true,
			    "quota driver maildir counts file sizes, but "
			    "[quota] basis = virtual: set basis = physical");
	} else if (n == 5 && strncmp(driver, "count", 5) == 0) {
		if (conf->quota_maildirsize)
			doveconf_say(r, true,
			    "quota driver count does not read maildirsize: "
			    "[quota] maildirsize = yes serves only Courier "
			    "and maildrop");
		if (!virtual)
			doveconf_say(r, true,
			    "quota driver count counts virtual sizes, but "
			    "[quota] basis = physical: set basis = virtual");
		else
			doveconf_say(r, false,
			    "quota driver count and [quota] basis = virtual "
			    "count the same sizes");
	} else
		doveconf_say(r, true,
		    "quota driver %.*s: mailkeep's limits and usage do not "
		    "reach it",
		    (int)n, driver);
}

static void
doveconf_check_rules(const struct mk_doveconf *dc, const struct mk_conf *conf,
    struct doveconf_report *r)
{
	char *grace, *p;
	bool dflt = dc->quota_rule != NULL &&
	    (strncmp(dc->quota_rule, "*:", 2) == 0 ||
		strncmp(dc->quota_rule, "?:", 2) == 0);

	if (dflt && conf->quota_default == NULL)
		doveconf_say(r, true,
		    "quota_rule = %s is a default limit, but [quota] default "
		    "is not set: mailkeepd sees no limit for mailboxes "
		    "whose userdb entry has none",
		    dc->quota_rule);
	else if (!dflt && conf->quota_default != NULL)
		doveconf_say(r, true,
		    "[quota] default = %s, but Dovecot has no default "
		    "quota_rule: it learns that limit only from maildirsize "
		    "with a '?' rule (2.3), else not at all",
		    conf->quota_default);
	else if (dflt)
		doveconf_say(r, false,
		    "quota_rule = %s and [quota] default = %s: both have a "
		    "default limit (make them the same)",
		    dc->quota_rule, conf->quota_default);
	/* "10%%" in plugin { } is 10%; 2.3's default is 10%. */
	grace = mk_xstrdup(dc->quota_grace != NULL ? dc->quota_grace : "10%");
	while ((p = strstr(grace, "%%")) != NULL)
		memmove(p, p + 1, strlen(p));
	if (strcasecmp(grace, conf->quota_grace) != 0)
		doveconf_say(r, true,
		    "Dovecot's grace is %s%s, but [quota] grace = %s: the "
		    "policy service and Dovecot disagree on the last message",
		    grace, dc->quota_grace == NULL ? " (its default)" : "",
		    conf->quota_grace);
	else
		doveconf_say(r, false, "grace %s on both sides", grace);
	free(grace);
}

size_t
mk_doveconf_check(const struct mk_doveconf *dc, const struct mk_conf *conf,
    mk_doveconf_report_cb *cb, void *arg)
{
	struct doveconf_report r = { cb, arg, 0 };

	doveconf_check_location(dc, conf, &r);
	doveconf_check_driver(dc, conf, &r);
	doveconf_check_rules(dc, conf, &r);
	return r.warnings;
}
