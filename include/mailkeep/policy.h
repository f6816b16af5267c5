/*
 * policy: the Postfix SMTPD access policy delegation protocol, and the
 * quota decision behind each answer.
 *
 * Wire format (Postfix SMTPD_POLICY_README): a request is "name=value"
 * lines ending in LF, closed by an empty line; the reply is one
 * "action=..." line and an empty line.  The connection stays open for
 * more requests.
 *
 * The parser is fed bytes as they arrive and never blocks.  Its bounds:
 *   MK_POLICY_LINE_MAX     bytes of one line without its LF.  Postfix's
 *                          SMTP server reads commands of at most
 *                          line_length_limit (2048) bytes, so HELO names,
 *                          senders and recipients are shorter; TLS names
 *                          are cut at 256 bytes.
 *   MK_POLICY_ATTRS_MAX    attributes in one request (Postfix 3.8 sends
 *                          about 30).
 *   MK_POLICY_REQUEST_MAX  bytes of one request with its LFs.
 * A line is "name=value"; a CR just before the LF is dropped (for tests
 * by hand); NUL, other control bytes except TAB, and bytes that are not
 * UTF-8 are errors.  Names are letters, digits, '_' and '-'.  Unknown
 * attributes are ignored.  The attributes kept (see struct
 * mk_policy_request) may each appear once: Postfix never repeats one, so
 * a repeated one is an error rather than a guess.  The request must say
 * request=smtpd_access_policy.  After an error the parser stays failed
 * and sends nothing: the server must log it and close the connection
 * without a reply, as SMTPD_POLICY_README asks; Postfix then uses its
 * default_action (docs/quota.md sets DUNNO).
 *
 * Decision: RCPT (or no protocol_state, as Dovecot's quota-status) is
 * checked with the size from the request (SIZE= from MAIL FROM, 0 when
 * absent); END-OF-MESSAGE is checked with the real size when Postfix
 * accepted exactly one recipient; every other state gets DUNNO.  The
 * recipient is expanded through the aliases; unknown and non-local
 * recipients, mailboxes whose usage is not known yet, and failures get
 * DUNNO: the service fails open, Dovecot still enforces at delivery.  The
 * refusal is "552 5.2.2 <text>" or "452 4.2.2 <text>"; the answer is
 * never OK, so later restrictions still run.
 *
 * Reservations: a recipient that is let through with a Postfix
 * "instance" reserves room on each local target it was checked against
 * (key: instance and recipient), so that concurrent messages to a nearly
 * full mailbox are not all let in; END-OF-MESSAGE replaces it with the
 * real size, and checks without counting it twice.
 *
 * Threads: everything here is for the loop thread; nothing blocks.  A
 * parser belongs to one connection.
 */
#ifndef MAILKEEP_POLICY_H
#define MAILKEEP_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mailkeep/aliases.h"
#include "mailkeep/err.h"
#include "mailkeep/quota.h"

#define MK_POLICY_LINE_MAX 4096
#define MK_POLICY_ATTRS_MAX 64
#define MK_POLICY_REQUEST_MAX 32768
#define MK_POLICY_TEXT_MAX 256 /* bytes of a reply text */
#define MK_POLICY_REPLY_MAX (MK_POLICY_TEXT_MAX + 32) /* a whole reply */

enum mk_policy_status {
	MK_POLICY_ERROR = -1, /* close the connection, send nothing */
	MK_POLICY_MORE, /* everything was used; feed more */
	MK_POLICY_DONE, /* a request is complete */
};

/*
 * A parsed request.  The strings are NULL when the attribute was absent
 * and point into the parser: they live until mk_policy_parser_reset or
 * mk_policy_parser_free.
 */
struct mk_policy_request {
	const char *request;
	const char *protocol_state;
	const char *protocol_name;
	const char *recipient;
	const char *sender;
	const char *instance;
	const char *client_address;
	uint64_t size; /* 0 when absent or empty */
	uint64_t recipient_count; /* 0 when absent or empty */
	size_t nattrs; /* attributes in the request, kept or not */
};

struct mk_policy_parser;

struct mk_policy_parser *mk_policy_parser_new(void);
void mk_policy_parser_free(struct mk_policy_parser **parserp);

/*
 * Feed len bytes.  *used_r says how many were consumed: all of them for
 * MORE; for DONE those up to the end of the request (the rest belongs to
 * the next one: reset, then feed it again).  ERROR sets err and is
 * final.  Once DONE, feeding again uses nothing and says DONE until the
 * parser is reset.
 */
enum mk_policy_status mk_policy_parser_feed(struct mk_policy_parser *parser,
    const void *buf, size_t len, size_t *used_r, struct mk_err *err);

/* The request, once feed said DONE (NULL before). */
const struct mk_policy_request *mk_policy_parser_request(
    const struct mk_policy_parser *parser);

/* Forget the completed request, for the next one.  A failed parser
 * stays failed. */
void mk_policy_parser_reset(struct mk_policy_parser *parser);

enum mk_policy_refusal {
	MK_POLICY_REFUSE_PERMANENT, /* 552 5.2.2 */
	MK_POLICY_REFUSE_TEMPORARY, /* 452 4.2.2 */
};

struct mk_policy_config {
	enum mk_policy_refusal refusal;
	const char *text; /* "Mailbox is full" */
	const char *text_too_large; /* NULL: text */
	const char *delimiters; /* Postfix recipient_delimiter, "+" */
	enum mk_aliases_policy alias_policy;
	const struct mk_quota_rules *rules; /* grace; NULL: defaults */
};

/* The defaults above. */
void mk_policy_config_init(struct mk_policy_config *conf);

/* Is text usable in a reply (1 to MK_POLICY_TEXT_MAX bytes of printable
 * UTF-8)?  For checking the configuration. */
int mk_policy_check_text(const char *text, struct mk_err *err);

/*
 * What the daemon knows of a local mailbox.  usage_known is false while
 * its usage is being found (the first scan, a rescan).  The limits and
 * counted usage come from the daemon; the reservations are filled in by
 * mk_policy_decide.  The pool is that of the part after '@'.
 */
struct mk_policy_mailbox {
	bool usage_known;
	struct mk_quota_state mailbox;
	bool has_pool;
	struct mk_quota_state pool;
};

/*
 * Look up address (lower case, no extension unless the mailbox's name
 * has one).  Returns 1 for a local mailbox with *mb_r filled, 0 when it
 * is not one, -1 with err set on failure.  mb_r NULL asks only whether
 * the address is a local mailbox (the alias expansion).  Must not block.
 */
typedef int mk_policy_lookup_cb(void *arg, const char *address,
    struct mk_policy_mailbox *mb_r, struct mk_err *err);

enum mk_policy_reason {
	MK_POLICY_STATE, /* a protocol state, or recipient count, not checked */
	MK_POLICY_NO_RECIPIENT,
	MK_POLICY_ALIAS_ERROR, /* loop, too deep, too many, bad address */
	MK_POLICY_LOOKUP_ERROR,
	MK_POLICY_NOT_LOCAL, /* no local target */
	MK_POLICY_USAGE_UNKNOWN, /* no local target with a known usage */
	MK_POLICY_FITS,
	MK_POLICY_SOME_FULL, /* let through: not every target is full */
	MK_POLICY_FULL, /* refused */
	MK_POLICY_TOO_LARGE, /* refused: larger than each full target's limit */
};

struct mk_policy_target {
	char *address;
	bool usage_known;
	struct mk_quota_verdict verdict; /* OK when the usage is unknown */
	bool reserve; /* reserve here when the answer is DUNNO */
};

struct mk_policy_decision {
	bool refuse;
	enum mk_policy_reason reason;
	uint64_t size; /* the size checked (0 counts as 1) */
	struct mk_policy_target *targets; /* the local targets */
	size_t ntargets;
	bool remote; /* the recipient also expands to non-local addresses */
	char *txn; /* reservation key: Postfix instance, or NULL: none */
	char *rcpt; /* and the recipient, lower case */
};

/*
 * Decide on req.  aliases may be NULL (no aliases); resv holds the
 * pending reservations (may be NULL).  Returns 0, or -1 with err set when
 * the answer is DUNNO because something failed (an alias loop, a lookup):
 * for the log.  Either way *d_r is a decision to answer with; clear it
 * with mk_policy_decision_clear.
 */
int mk_policy_decide(const struct mk_policy_config *conf,
    const struct mk_policy_request *req, const struct mk_aliases *aliases,
    const struct mk_quota_resv *resv, mk_policy_lookup_cb *lookup, void *arg,
    struct mk_policy_decision *d_r, struct mk_err *err);

void mk_policy_decision_clear(struct mk_policy_decision *d);

/* Make the reservations of a decision that let the message through,
 * lasting the table's time to live (mk_quota_resv_configure) from now. */
void mk_policy_reserve(const struct mk_policy_decision *d,
    struct mk_quota_resv *resv, int64_t now);

/*
 * The reply for d into buf: "action=DUNNO\n\n" or "action=552 5.2.2
 * <text>\n\n" (control bytes in the text become blanks).
 * MK_POLICY_REPLY_MAX bytes are enough.  Returns the length, as snprintf.
 */
size_t mk_policy_format_reply(const struct mk_policy_config *conf,
    const struct mk_policy_decision *d, char *buf, size_t size);

/* "state", "no-recipient", ..., "some-full", "full", "too-large". */
const char *mk_policy_reason_name(enum mk_policy_reason reason);

#endif
