/*
 * aliases: a Postfix virtual(5) alias map, and where a recipient address
 * ends up once it is expanded, as Postfix's cleanup(8) expands it.
 *
 * File format (virtual(5)): "pattern result, result, ..."; results are
 * separated by commas and/or blanks; '#' starts a comment line; empty
 * lines are skipped; a line that starts with a blank continues the
 * previous entry.  Patterns are "user@domain" or "@domain" (a catch-all);
 * a pattern without '@' (a bare user, or "example.com anything", which
 * declares a virtual alias domain) is counted in skipped and not used:
 * Postfix applies those only to its own local domains.  Keys and results
 * are compared in lower case.  A key given twice keeps its first entry,
 * as postmap does (counted in skipped).  Quoted local parts with blanks
 * are not supported.
 *
 * Lookup order for user+ext@domain: user+ext@domain, then user@domain
 * (the unmatched "+ext" is appended to each result, as Postfix's
 * propagate_unmatched_extensions does), then @domain.  Every character
 * of the recipient delimiter string is a delimiter; the extension starts
 * at the first one in the local part.  As in Postfix, a local part that
 * starts with a delimiter, postmaster, MAILER-DAEMON and double-bounce
 * are never split, nor (when '-' is a delimiter) owner-* and *-request.
 *
 * Expansion recurses into each result up to MK_ALIASES_DEPTH_MAX levels.
 * A result equal to the address it came from ("a@x a@x, b@x") is final,
 * as in Postfix.  A cycle (a -> b -> a), a deeper nesting, or more than
 * MK_ALIASES_TARGETS_MAX addresses is an error: Postfix itself refuses
 * such mail, and the policy service answers DUNNO.  A final address is
 * local when the callback knows it (tried with the extension, then
 * without), otherwise remote.
 *
 * Threads: a map is immutable once loaded and may be shared by threads;
 * to reload, load a new map and swap the pointer (the daemon frees the
 * old one when nothing uses it).  mk_aliases_load does blocking I/O;
 * the rest is pure.
 */
#ifndef MAILKEEP_ALIASES_H
#define MAILKEEP_ALIASES_H

#include <stdbool.h>
#include <stddef.h>

#include "mailkeep/err.h"

#define MK_ALIASES_DEPTH_MAX 10 /* nested lookups below the recipient */
#define MK_ALIASES_TARGETS_MAX 1000 /* addresses met in one expansion */
#define MK_ALIASES_FILE_MAX (256 * 1024 * 1024) /* bytes of a map file */
#define MK_ALIASES_ADDRESS_MAX 1024 /* bytes of one address */

/* When an expansion with several local targets is refused. */
enum mk_aliases_policy {
	MK_ALIASES_ALL, /* every target is full (the default) */
	MK_ALIASES_ANY, /* any local target is full */
};

struct mk_aliases;

struct mk_aliases_expansion {
	char **targets; /* final local addresses, lower case, each once */
	size_t ntargets;
	bool remote; /* some final address is not local */
};

/*
 * Is address a local mailbox?  Returns 1 yes, 0 no.  Called during
 * mk_aliases_expand, on its thread.
 */
typedef int mk_aliases_local_cb(void *arg, const char *address);

/*
 * Parse a map from text (len bytes; NUL bytes are refused).  name is for
 * errors, which read "NAME:LINE: message".  Patterns not used and
 * duplicate keys are counted in skipped (may be NULL).
 */
int mk_aliases_parse(const char *name, const char *text, size_t len,
    struct mk_aliases **map_r, struct mk_warnings *skipped, struct mk_err *err);

/* Read and parse the map file at path (at most MK_ALIASES_FILE_MAX). */
int mk_aliases_load(const char *path, struct mk_aliases **map_r,
    struct mk_warnings *skipped, struct mk_err *err);

void mk_aliases_free(struct mk_aliases **mapp);

/* The number of entries used. */
size_t mk_aliases_count(const struct mk_aliases *map);

/*
 * Expand address (any case, optionally in <>) through map (NULL: no
 * aliases) with the recipient delimiters delims ("" for none).  Returns
 * 0 with *exp_r filled (free it with mk_aliases_expansion_clear), or -1
 * with err set and *exp_r empty.
 */
int mk_aliases_expand(const struct mk_aliases *map, const char *address,
    const char *delims, mk_aliases_local_cb *local_cb, void *arg,
    struct mk_aliases_expansion *exp_r, struct mk_err *err);

void mk_aliases_expansion_clear(struct mk_aliases_expansion *exp);

/*
 * Whether a recipient is refused, given its expansion: ntargets local
 * targets of which nfull are refused by the quota verdict, and whether a
 * target is remote.  ALL refuses when every target is full; a remote
 * target counts as one that is not (mailkeep cannot know), so the mail
 * still goes somewhere.  ANY refuses when any local target is full.
 * Nothing is refused without a local target.
 */
bool mk_aliases_refuse(
    enum mk_aliases_policy policy, size_t ntargets, size_t nfull, bool remote);

/* "all" or "any". */
const char *mk_aliases_policy_name(enum mk_aliases_policy policy);
int mk_aliases_policy_parse(
    const char *s, enum mk_aliases_policy *policy_r, struct mk_err *err);

#endif
