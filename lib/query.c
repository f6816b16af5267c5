#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mailkeep/mem.h"
#include "mailkeep/query.h"
#include "mailkeep/str.h"
#include "mailkeep/when.h"

enum query_key {
	QUERY_WORD,
	QUERY_FROM,
	QUERY_TO,
	QUERY_SUBJECT,
	QUERY_MESSAGE_ID,
	QUERY_SINCE,
	QUERY_BEFORE,
	QUERY_LARGER,
	QUERY_SMALLER,
};

static const struct {
	const char *name;
	enum query_key key;
} query_keys[] = {
	{ "from", QUERY_FROM },
	{ "to", QUERY_TO },
	{ "subject", QUERY_SUBJECT },
	{ "message-id", QUERY_MESSAGE_ID },
	{ "msgid", QUERY_MESSAGE_ID },
	{ "since", QUERY_SINCE },
	{ "before", QUERY_BEFORE },
	{ "larger", QUERY_LARGER },
	{ "smaller", QUERY_SMALLER },
};

struct query_term {
	enum query_key key;
	char value[MK_QUERY_VALUE_MAX + 1];
	int64_t n; /* a time in ns or a size in bytes */
};

struct mk_query {
	struct query_term terms[MK_QUERY_TERMS_MAX];
	size_t count;
};

/* Copy the next value (quoted or not) at *p into buf. */
static int
query_value(const char **p, char *buf, size_t size, struct mk_err *err)
{
	const char *s = *p;
	size_t n = 0;
	bool quoted = *s == '"';

	if (quoted)
		s++;
	while (*s != '\0' && (quoted ? *s != '"' : *s != ' ')) {
		if (n + 1 >= size)
			return mk_err_set(err,
			    "a search term is longer than %zu "
			    "bytes",
			    size - 1);
		buf[n++] = *s++;
	}
	if (quoted && *s++ != '"')
		return mk_err_set(err, "a quote is not closed");
	buf[n] = '\0';
	*p = s;
	return 0;
}

/* Turn a term's value into its number, for the keys that have one. */
static int
query_number(struct query_term *t, int64_t now_ns, struct mk_err *err)
{
	uint64_t size;

	switch (t->key) {
	case QUERY_SINCE:
	case QUERY_BEFORE:
		return mk_when_parse(t->value, now_ns, &t->n, err);
	case QUERY_LARGER:
	case QUERY_SMALLER:
		if (mk_str_parse_size(t->value, &size, err) < 0 ||
		    size > INT64_MAX)
			return mk_err_set(
			    err, "'%s' is not a size (500K, 2M)", t->value);
		t->n = (int64_t)size;
		return 0;
	default:
		if (t->value[0] == '\0')
			return mk_err_set(err, "an empty search term");
		return 0;
	}
}

int
mk_query_parse(
    const char *s, int64_t now_ns, struct mk_query **q_r, struct mk_err *err)
{
	struct mk_query *q = mk_xcalloc(1, sizeof(*q));
	struct query_term *t;
	const char *colon;
	size_t i, n;

	*q_r = NULL;
	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == '\0')
			break;
		if (q->count == MK_QUERY_TERMS_MAX) {
			mk_err_set(err, "more than %d search terms",
			    MK_QUERY_TERMS_MAX);
			goto fail;
		}
		t = &q->terms[q->count++];
		t->key = QUERY_WORD;
		colon = strchr(s, ':');
		n = colon != NULL ? (size_t)(colon - s) : 0;
		if (*s != '"' && colon != NULL && n > 0 &&
		    strcspn(s, " \"") > n) {
			for (i = 0;
			     i < sizeof(query_keys) / sizeof(query_keys[0]);
			     i++)
				if (strlen(query_keys[i].name) == n &&
				    strncasecmp(s, query_keys[i].name, n) == 0)
					break;
			if (i == sizeof(query_keys) / sizeof(query_keys[0])) {
				mk_err_set(err,
				    "unknown search key '%.*s' (from, to, "
				    "subject, message-id, since, before, "
				    "larger, smaller)",
				    (int)n, s);
				goto fail;
			}
			t->key = query_keys[i].key;
			s = colon + 1;
		}
		if (query_value(&s, t->value, sizeof(t->value), err) < 0 ||
		    query_number(t, now_ns, err) < 0)
			goto fail;
	}
	if (q->count == 0) {
		mk_err_set(err, "an empty search");
		goto fail;
	}
	*q_r = q;
	return 0;
fail:
	free(q);
	return -1;
}

void
mk_query_free(struct mk_query **qp)
{
	free(*qp);
	*qp = NULL;
}

static bool
query_has(const char *hay, const char *needle)
{
	return hay != NULL && strcasestr(hay, needle) != NULL;
}

/* Message-IDs compare whole, with or without their angle brackets. */
static bool
query_id(const char *id, const char *want)
{
	size_t a, b;

	if (id == NULL)
		return false;
	if (*id == '<')
		id++;
	if (*want == '<')
		want++;
	a = strcspn(id, ">");
	b = strcspn(want, ">");
	return a == b && strncmp(id, want, a) == 0;
}

static bool
query_term_match(const struct query_term *t, const struct mk_query_msg *m)
{
	switch (t->key) {
	case QUERY_WORD:
		return query_has(m->from, t->value) ||
		    query_has(m->to, t->value) ||
		    query_has(m->subject, t->value);
	case QUERY_FROM:
		return query_has(m->from, t->value);
	case QUERY_TO:
		return query_has(m->to, t->value);
	case QUERY_SUBJECT:
		return query_has(m->subject, t->value);
	case QUERY_MESSAGE_ID:
		return query_id(m->message_id, t->value);
	case QUERY_SINCE:
		return m->time_ns >= t->n;
	case QUERY_BEFORE:
		return m->time_ns < t->n;
	case QUERY_LARGER:
		return m->size > (uint64_t)t->n;
	case QUERY_SMALLER:
		return m->size < (uint64_t)t->n;
	}
	return false;
}

bool
mk_query_match(const struct mk_query *q, const struct mk_query_msg *m)
{
	size_t i;

	for (i = 0; i < q->count; i++)
		if (!query_term_match(&q->terms[i], m))
			return false;
	return true;
}
