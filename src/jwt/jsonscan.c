/* jsonscan.c: the plain-JSON reader of jsonscan.h. Conservative by construction: every branch that
 * meets something outside the subset returns false, and jansson takes over. */
#include "jwt/jsonscan.h"

#include <string.h>

struct jsonscan_cursor {
	const char *p;
	const char *end;
};

static void jsonscan_skip_ws(struct jsonscan_cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

/* A plain string at c->p (which is a double quote): sets *s and *len to its bytes, moves past the end. */
static bool jsonscan_string(struct jsonscan_cursor *c, const char **s, size_t *len)
{
	const char *q;

	if (c->p >= c->end || *c->p != '"')
		return false;
	q = ++c->p;
	while (q < c->end && *q != '"') {
		unsigned char ch = (unsigned char)*q;

		/* Control characters, '\', DEL and every non-ASCII byte leave the plain subset. */
		if (ch < 0x20 || ch > 0x7e || ch == '\\')
			return false;
		q++;
	}
	if (q >= c->end)
		return false;
	*s = c->p;
	*len = (size_t)(q - c->p);
	c->p = q + 1;
	return true;
}

/* A plain integer: -?(0|[1-9][0-9]{0,17}), not followed by a digit, '.', 'e' or 'E'. */
static bool jsonscan_integer(struct jsonscan_cursor *c, int64_t *v)
{
	bool negative = false;
	int64_t acc = 0;
	size_t digits = 0;

	if (c->p < c->end && *c->p == '-') {
		negative = true;
		c->p++;
	}
	if (c->p >= c->end || *c->p < '0' || *c->p > '9')
		return false;
	if (*c->p == '0') {
		c->p++;
	} else {
		while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
			if (++digits > JSONSCAN_MAX_DIGITS)
				return false;
			acc = acc * 10 + (*c->p - '0');
			c->p++;
		}
	}
	if (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' || *c->p == 'E'))
		return false;
	*v = negative ? -acc : acc;
	return true;
}

/* A literal (true, false, null) spelled exactly, then a byte that cannot continue a word. */
static bool jsonscan_literal(struct jsonscan_cursor *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return c->p == c->end || !((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z'));
}

/* An array of plain strings; m->text/len cover it from '[' to ']'. */
static bool jsonscan_array(struct jsonscan_cursor *c, struct jsonscan_member *m)
{
	const char *start = c->p, *s;
	size_t len;

	c->p++; /* '[' */
	m->n_items = 0;
	jsonscan_skip_ws(c);
	if (c->p < c->end && *c->p == ']') {
		c->p++;
	} else {
		for (;;) {
			if (!jsonscan_string(c, &s, &len))
				return false;
			m->n_items++;
			jsonscan_skip_ws(c);
			if (c->p >= c->end)
				return false;
			if (*c->p == ']') {
				c->p++;
				break;
			}
			if (*c->p != ',')
				return false;
			c->p++;
			jsonscan_skip_ws(c);
		}
	}
	m->text = start;
	m->len = (size_t)(c->p - start);
	return true;
}

static bool jsonscan_value(struct jsonscan_cursor *c, struct jsonscan_member *m)
{
	if (c->p >= c->end)
		return false;
	switch (*c->p) {
	case '"':
		m->type = JSONSCAN_STRING;
		return jsonscan_string(c, &m->text, &m->len);
	case '[':
		m->type = JSONSCAN_ARRAY;
		return jsonscan_array(c, m);
	case 't':
		m->type = JSONSCAN_TRUE;
		return jsonscan_literal(c, "true");
	case 'f':
		m->type = JSONSCAN_FALSE;
		return jsonscan_literal(c, "false");
	case 'n':
		m->type = JSONSCAN_NULL;
		return jsonscan_literal(c, "null");
	default:
		m->type = JSONSCAN_INTEGER;
		m->text = c->p;
		if (!jsonscan_integer(c, &m->integer))
			return false;
		m->len = (size_t)(c->p - m->text);
		return true;
	}
}

/* See jsonscan.h. */
bool jsonscan_object(const char *text, size_t len, struct jsonscan_object *out)
{
	struct jsonscan_cursor c = {text, text + len};
	size_t i;

	out->n = 0;
	jsonscan_skip_ws(&c);
	if (c.p >= c.end || *c.p != '{')
		return false;
	c.p++;
	jsonscan_skip_ws(&c);
	if (c.p < c.end && *c.p == '}') {
		c.p++;
	} else {
		for (;;) {
			struct jsonscan_member *m;

			if (out->n == JSONSCAN_MAX_MEMBERS)
				return false;
			m = &out->m[out->n];
			memset(m, 0, sizeof(*m));
			if (!jsonscan_string(&c, &m->name, &m->name_len))
				return false;
			/* Plain names have no escapes, so equal bytes are equal names (RFC 7515 section 4:
			 * a duplicate member makes the token invalid; jansson refuses it too). */
			for (i = 0; i < out->n; i++) {
				if (out->m[i].name_len == m->name_len &&
				    memcmp(out->m[i].name, m->name, m->name_len) == 0)
					return false;
			}
			jsonscan_skip_ws(&c);
			if (c.p >= c.end || *c.p != ':')
				return false;
			c.p++;
			jsonscan_skip_ws(&c);
			if (!jsonscan_value(&c, m))
				return false;
			out->n++;
			jsonscan_skip_ws(&c);
			if (c.p >= c.end)
				return false;
			if (*c.p == '}') {
				c.p++;
				break;
			}
			if (*c.p != ',')
				return false;
			c.p++;
			jsonscan_skip_ws(&c);
		}
	}
	jsonscan_skip_ws(&c);
	return c.p == c.end;
}

/* See jsonscan.h. */
const struct jsonscan_member *jsonscan_get(const struct jsonscan_object *obj, const char *name)
{
	size_t len = strlen(name), i;

	for (i = 0; i < obj->n; i++) {
		if (obj->m[i].name_len == len && memcmp(obj->m[i].name, name, len) == 0)
			return &obj->m[i];
	}
	return NULL;
}

/* See jsonscan.h. The array was validated by jsonscan_array: items are '"'-delimited without escapes. */
bool jsonscan_array_next(const struct jsonscan_member *m, size_t *pos, const char **s, size_t *len)
{
	const char *p = m->text + *pos, *end = m->text + m->len, *q;

	if (m->type != JSONSCAN_ARRAY)
		return false;
	p = memchr(p, '"', (size_t)(end - p));
	if (p == NULL)
		return false;
	q = memchr(p + 1, '"', (size_t)(end - p - 1));
	if (q == NULL)
		return false;
	*s = p + 1;
	*len = (size_t)(q - p - 1);
	*pos = (size_t)(q + 1 - m->text);
	return true;
}
