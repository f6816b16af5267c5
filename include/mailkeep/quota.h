/*
 * quota: limits, per-folder rules, the verdict for one message, and the
 * reservations of messages the policy service has let through but that
 * have not landed yet.
 *
 * Limits.  A mailbox has a storage limit in bytes and a message limit;
 * 0 means unlimited.  Each resource remembers where its value came from.
 * Layers of limits combine with mk_quota_limits_apply: a resource set by
 * a layer replaces the current one unless the current one came from a
 * source that ranks higher, in this order (lowest first): the config
 * default, a domain default, an import from Dovecot's userdb, a
 * per-mailbox override in the config, the catalog (set through the CLI
 * or the control socket).  "storage=0" set by a layer is an explicit
 * "unlimited" that hides lower layers.
 *
 * Rule syntax (Dovecot 2.3's quota_rule grammar, so that an imported
 * userdb_quota_rule means the same here as in Dovecot):
 *   limits        storage=1G messages=10000   (or ':' between them, or a
 *                 leading "*:" or "?:" as in Dovecot's default rule)
 *   folder rules  Junk:ignore   Trash:+10%   Trash:storage=+100M:messages=+50
 * Numbers take a unit B, K, M, G or T (powers of 1024, either case, an
 * optional "B" or "iB" after K/M/G/T).  Without a unit, storage= counts
 * KiB and bytes= and messages= count units, exactly as in Dovecot, so
 * "storage=1024" is 1 MiB.  A folder rule's "+" is optional (Dovecot's
 * older form); a negative value is refused.  Folder masks match IMAP
 * folder names with '*' and '?' wildcards; "INBOX" matches in any case;
 * the first rule whose mask matches wins; a second rule for the same mask
 * updates the first.
 *
 * Folder rules follow Dovecot.  An ignored folder does not count towards
 * the usage, and saving into it is never refused.  Extra room (Trash:+10%)
 * does not set aside space for Trash: while a message is saved into a
 * matching folder, the limit is the mailbox's limit plus the extra (a
 * percentage is of the mailbox's limit), and the usage it is compared
 * with is still the whole mailbox, Trash included.  So a full mailbox
 * can still move mail to Trash until it is 10% over, and nothing can be
 * delivered to INBOX meanwhile.  Extra room applies only to a limited
 * resource: an unlimited mailbox stays unlimited.
 *
 * Grace (Dovecot 2.3 quota_grace, default 10%): an absolute size, or a
 * percentage of the mailbox's storage limit (of the pool's limit for the
 * domain pool).  It lets in the one message that crosses the limit.
 *
 * Verdict, per resource, exactly as Dovecot's LDA/LMTP and quota-status:
 * current = usage + pending reservations; refused when current >= limit
 * (already over: even size 0 is refused), otherwise when
 * current + max(size, 1) > limit + grace.  The message count works the
 * same way without grace (one message needs room for one).  All
 * arithmetic saturates, nothing wraps.  A domain pool (the live usage of
 * every mailbox of a domain against one limit) is checked after the
 * mailbox with the same rule; each mailbox's own limit is its cap in the
 * pool.  Only the policy service applies the pool: Dovecot does not know
 * it, so it is enforced at SMTP time only.
 *
 * Threads: parsing and verdict functions are pure and may be called from
 * any thread.  A struct mk_quota_rules is read-only once set up and may be
 * shared.  A struct mk_quota_resv is not thread-safe: the loop thread owns
 * it.  mk_quota_import_passwd_file does blocking file I/O (a worker or
 * the CLI).
 */
#ifndef MAILKEEP_QUOTA_H
#define MAILKEEP_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/err.h"
#include "mailkeep/scan.h"

/* Where a limit came from; later values rank higher. */
enum mk_quota_source {
	MK_QUOTA_SOURCE_NONE, /* never set: unlimited */
	MK_QUOTA_SOURCE_CONFIG, /* the global default */
	MK_QUOTA_SOURCE_DOMAIN, /* a per-domain default */
	MK_QUOTA_SOURCE_IMPORT, /* Dovecot userdb (passwd-file) */
	MK_QUOTA_SOURCE_MAILBOX, /* a per-mailbox override in the config */
	MK_QUOTA_SOURCE_CATALOG, /* set at run time (CLI, control socket) */
};

/* Which sizes count: ,S= (Dovecot's maildir driver) or ,W= (count). */
enum mk_quota_basis {
	MK_QUOTA_BASIS_PHYSICAL,
	MK_QUOTA_BASIS_VIRTUAL,
};

enum mk_quota_resource {
	MK_QUOTA_STORAGE,
	MK_QUOTA_MESSAGES,
};

struct mk_quota_limits {
	uint64_t bytes; /* 0: unlimited */
	uint64_t messages; /* 0: unlimited */
	enum mk_quota_source bytes_from;
	enum mk_quota_source messages_from;
};

/* One quota root (a mailbox or a domain pool) at the time of a check. */
struct mk_quota_state {
	struct mk_quota_limits limits;
	uint64_t bytes; /* counted usage: basis applied, ignored folders out */
	uint64_t messages;
	uint64_t resv_bytes; /* pending reservations */
	uint64_t resv_messages;
};

enum mk_quota_result {
	MK_QUOTA_OK,
	MK_QUOTA_OVER, /* usage already at or over the limit */
	MK_QUOTA_NO_ROOM, /* under the limit, this message passes limit+grace */
	MK_QUOTA_TOO_LARGE, /* refused, and larger than the whole limit */
};

struct mk_quota_verdict {
	enum mk_quota_result result;
	enum mk_quota_resource resource; /* what refused; STORAGE when OK */
	bool pool; /* the domain pool refused, not the mailbox */
	uint64_t limit; /* the limit that refused (folder extra included) */
};

struct mk_quota_rules;

/* "none", "config", "domain", "import", "mailbox", "catalog". */
const char *mk_quota_source_name(enum mk_quota_source source);

/* "physical" or "virtual". */
const char *mk_quota_basis_name(enum mk_quota_basis basis);
int mk_quota_basis_parse(
    const char *s, enum mk_quota_basis *basis_r, struct mk_err *err);

/*
 * Parse limits ("storage=1G messages=10000") into *lim_r.  Resources the
 * text sets come from source; the others are left unset (source NONE,
 * value 0).  A percentage is refused: a limit is never relative.
 */
int mk_quota_limits_parse(const char *s, enum mk_quota_source source,
    struct mk_quota_limits *lim_r, struct mk_err *err);

/* Lay layer over lim, honouring the ranking of sources (see above). */
void mk_quota_limits_apply(
    struct mk_quota_limits *lim, const struct mk_quota_limits *layer);

/* Rules with the default grace (10%) and no folder rules. */
struct mk_quota_rules *mk_quota_rules_new(void);
void mk_quota_rules_free(struct mk_quota_rules **rulesp);

/* Add a folder rule ("Junk:ignore", "Trash:+10%"). */
int mk_quota_rules_add(
    struct mk_quota_rules *rules, const char *rule, struct mk_err *err);

/*
 * Add a list of folder rules separated by ';' or line ends (folder names
 * may hold blanks): "Junk:ignore; Deleted Items:+10%".  Empty items are
 * skipped.  On error, the rules before the bad one stay added.
 */
int mk_quota_rules_add_list(
    struct mk_quota_rules *rules, const char *list, struct mk_err *err);

/* Set the grace: "10%", "10M", "0" (a bare number counts bytes). */
int mk_quota_rules_set_grace(
    struct mk_quota_rules *rules, const char *value, struct mk_err *err);

/* Is folder (an IMAP name, "INBOX", "Junk") left out of the usage? */
bool mk_quota_rules_ignored(
    const struct mk_quota_rules *rules, const char *folder);

/*
 * The counted usage of a mailbox from its scanned folders: the sizes of
 * basis, summed over the folders that are not ignored.  rules may be
 * NULL (no folder rules).
 */
void mk_quota_rules_count(const struct mk_quota_rules *rules,
    enum mk_quota_basis basis, const struct mk_folder_usage *folders,
    size_t nfolders, uint64_t *bytes_r, uint64_t *messages_r);

/*
 * The verdict for one resource: usage (reservations included) against
 * limit (0: unlimited) with grace, for a message of size (0 counts as 1).
 */
enum mk_quota_result mk_quota_test(
    uint64_t usage, uint64_t limit, uint64_t grace, uint64_t size);

/*
 * The verdict for saving a message of size bytes into folder (NULL:
 * INBOX) of a mailbox, then of its domain pool (NULL: no pool).  rules
 * may be NULL (default grace, no folder rules).
 */
void mk_quota_check(const struct mk_quota_rules *rules, const char *folder,
    const struct mk_quota_state *mailbox, const struct mk_quota_state *pool,
    uint64_t size, struct mk_quota_verdict *verdict_r);

/*
 * Read a Dovecot passwd-file (user:password:uid:gid:gecos:home:shell:
 * extra fields) and report the limits of each user that has some:
 * extra fields quota_rule, quota_rule2, ... with the "*" or "?" mailbox
 * (Dovecot 2.3), quota_storage_size and quota_message_count (2.4), each
 * with or without the "userdb_" prefix.  Rules for other folders are
 * skipped and counted in warnings (may be NULL): folder rules come from
 * mailkeep's configuration.  The address is the user field in lower case.
 * cb returns 0 to go on or -1 (with err set) to stop.  Errors read
 * "FILE:LINE: message".  Blocking I/O.
 */
typedef int mk_quota_import_cb(void *arg, const char *address,
    const struct mk_quota_limits *limits, struct mk_err *err);
int mk_quota_import_passwd_file(const char *path, mk_quota_import_cb *cb,
    void *arg, struct mk_warnings *warnings, struct mk_err *err);

/*
 * Reservations.  The policy service reserves room for a message it let
 * through at RCPT, keyed by the Postfix transaction (its "instance"
 * attribute) and the recipient as sent, on each mailbox the recipient
 * expands to: max(size, 1) bytes and one message.  A second reservation
 * with the same key on the same mailbox replaces the first (END-OF-MESSAGE
 * corrects the size declared at RCPT).  A reservation ends when a message
 * lands in the mailbox (the oldest one is released), when it expires,
 * or when the mailbox has too many: a new one then pushes out the
 * mailbox's oldest, so that mail that never arrives (refused later, a
 * client gone) cannot make the table grow without bound.  Times are
 * whatever clock the caller uses, in seconds.
 */
#define MK_QUOTA_RESV_TTL 900 /* default seconds a reservation lasts */
#define MK_QUOTA_RESV_MAX 100 /* default pending on one mailbox */

struct mk_quota_resv;

/* How reservations ended, since the table was made. */
struct mk_quota_resv_stats {
	uint64_t released; /* a message landed */
	uint64_t expired;
	uint64_t capped; /* pushed out by a newer one on a full mailbox */
};

/* A table with MK_QUOTA_RESV_TTL and MK_QUOTA_RESV_MAX. */
struct mk_quota_resv *mk_quota_resv_new(void);
void mk_quota_resv_free(struct mk_quota_resv **resvp);

/*
 * Set how long a new reservation lasts (seconds, at least 1) and how many
 * one mailbox may hold (at least 1).  Reservations made before keep their
 * expiry; a mailbox over a lowered cap sheds its oldest at its next add.
 */
void mk_quota_resv_configure(
    struct mk_quota_resv *resv, int64_t ttl, size_t max_per_mailbox);

/* How long a reservation made now lasts. */
int64_t mk_quota_resv_ttl(const struct mk_quota_resv *resv);

void mk_quota_resv_stats(
    const struct mk_quota_resv *resv, struct mk_quota_resv_stats *st_r);

/* Reserve bytes on mailbox for (txn, rcpt) until expires. */
void mk_quota_resv_add(struct mk_quota_resv *resv, const char *txn,
    const char *rcpt, const char *mailbox, uint64_t bytes, int64_t expires);

/* A message landed in mailbox: drop its oldest reservation, if any. */
bool mk_quota_resv_release(struct mk_quota_resv *resv, const char *mailbox);

/* Drop the reservations that expire at or before now; returns how many. */
size_t mk_quota_resv_expire(struct mk_quota_resv *resv, int64_t now);

/*
 * What is reserved on mailbox, leaving out the reservation of (txn, rcpt)
 * (both NULL: leave out nothing), whose bytes go to *own_bytes_r (may be
 * NULL; 0 when there is none).
 */
void mk_quota_resv_get(const struct mk_quota_resv *resv, const char *mailbox,
    const char *txn, const char *rcpt, uint64_t *bytes_r, uint64_t *messages_r,
    uint64_t *own_bytes_r);

/* What is reserved on all mailboxes of domain (the part after '@'). */
void mk_quota_resv_get_domain(const struct mk_quota_resv *resv,
    const char *domain, uint64_t *bytes_r, uint64_t *messages_r);

/* The number of pending reservations. */
size_t mk_quota_resv_count(const struct mk_quota_resv *resv);

#endif
