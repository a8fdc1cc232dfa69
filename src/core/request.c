/* request.c: the protocol-neutral request: header list, target split, host normalisation. */
#include "core/request.h"

#include <stdint.h>
#include <string.h>

#include "core/common.h"

void request_init(struct request *req, struct arena *arena)
{
	memset(req, 0, sizeof(*req));
	req->arena = arena;
	req->scheme = "http";
	req->http_major = 1;
	req->http_minor = 1;
}

/* Appends to a header array kept in an arena (shared by requests and responses). The array doubles
 * when full, up to REQUEST_MAX_HEADERS_HARD entries. */
static int header_list_add(struct arena *arena, struct request_header **headers, size_t *n, size_t *cap,
                           const char *name, size_t name_len, const char *value, size_t value_len)
{
	struct request_header *h;

	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 32;

		if (ncap > REQUEST_MAX_HEADERS_HARD)
			ncap = REQUEST_MAX_HEADERS_HARD;
		if (ncap <= *n)
			return JG_ERR_LIMIT;
		h = arena_alloc(arena, ncap * sizeof(*h));
		if (h == NULL)
			return JG_ERR_NOMEM;
		if (*n)
			memcpy(h, *headers, *n * sizeof(*h));
		*headers = h;
		*cap = ncap;
	}
	h = &(*headers)[*n];
	/* One block for both strings: name\0value\0. */
	if (name_len + value_len + 2 < name_len)
		return JG_ERR_LIMIT;
	h->name = arena_alloc(arena, name_len + value_len + 2);
	if (h->name == NULL)
		return JG_ERR_NOMEM;
	h->value = h->name + name_len + 1;
	memcpy(h->value, value, value_len);
	h->value[value_len] = '\0';
	jg_lower_copy(h->name, name, name_len);
	h->name[name_len] = '\0';
	h->name_len = name_len;
	h->value_len = value_len;
	h->removed = false;
	(*n)++;
	return 0;
}

int request_header_add(struct request *req, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
	return header_list_add(req->arena, &req->headers, &req->n_headers, &req->cap_headers, name, name_len,
	                       value, value_len);
}

void response_init(struct response *resp, struct arena *arena)
{
	memset(resp, 0, sizeof(*resp));
	resp->arena = arena;
	resp->content_length = -1;
}

int response_header_add(struct response *resp, const char *name, size_t name_len, const char *value,
                        size_t value_len)
{
	return header_list_add(resp->arena, &resp->headers, &resp->n_headers, &resp->cap_headers, name,
	                       name_len, value, value_len);
}

/* RFC 9110 section 5.6.2 token characters: ALPHA DIGIT and !#$%&'*+-.^_`|~ */
static const bool field_tchar[256] = {
        ['!'] = true,         ['#'] = true,         ['$'] = true,         ['%'] = true, ['&'] = true,
        ['\''] = true,        ['*'] = true,         ['+'] = true,         ['-'] = true, ['.'] = true,
        ['^'] = true,         ['_'] = true,         ['`'] = true,         ['|'] = true, ['~'] = true,
        ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true,
};

/* Control bytes other than HTAB, and DEL: not allowed in field values or reason phrases. */
static const bool field_value_bad[256] = {
        [0 ... 0x08] = true,
        [0x0a ... 0x1f] = true,
        [0x7f] = true,
};

bool request_field_name_ok(const char *name, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (!field_tchar[(unsigned char)name[i]])
			return false;
	return true;
}

/* A byte below 0x20 or equal to 0x7f among the eight in x (0x80 bits set where one is; a tab counts). */
static inline uint64_t field_ctl8(uint64_t x)
{
	uint64_t lo = (x - 0x2020202020202020ull) & ~x & 0x8080808080808080ull;
	uint64_t d = x ^ 0x7f7f7f7f7f7f7f7full;

	return lo | ((d - 0x0101010101010101ull) & ~d & 0x8080808080808080ull);
}

bool request_field_value_ok(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	uint64_t x;
	size_t i = 0;

	/* Eight bytes at a time while none is a control byte or DEL (plain printable text), the last
	 * eight overlapping what was checked; byte by byte from the first block that has one (a tab, or a
	 * bad byte). */
	if (len >= 8) {
		for (; i + 8 <= len; i += 8) {
			memcpy(&x, p + i, 8);
			if (field_ctl8(x))
				break;
		}
		if (i + 8 > len) {
			if (i == len)
				return true;
			memcpy(&x, p + len - 8, 8);
			if (!field_ctl8(x))
				return true;
		}
	}
	for (; i < len; i++)
		if (field_value_bad[p[i]])
			return false;
	return true;
}

bool request_header_is_hop_by_hop(const char *name, size_t name_len)
{
	/* By length first: most header names have none of these lengths. */
	switch (name_len) {
	case 2:
		return memcmp(name, "te", 2) == 0;
	case 7:
		return memcmp(name, "trailer", 7) == 0 || memcmp(name, "upgrade", 7) == 0;
	case 10:
		return memcmp(name, "connection", 10) == 0 || memcmp(name, "keep-alive", 10) == 0;
	case 16:
		return memcmp(name, "proxy-connection", 16) == 0;
	case 17:
		return memcmp(name, "transfer-encoding", 17) == 0;
	default:
		return false;
	}
}

bool request_header_listed_in_connection(const struct request_header *headers, size_t n, const char *name,
                                         size_t name_len)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const char *v = headers[i].value, *end;

		if (headers[i].name_len != 10 || memcmp(headers[i].name, "connection", 10) != 0)
			continue;
		end = v + headers[i].value_len;
		while (v < end) {
			const char *tok;

			while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
				v++;
			tok = v;
			while (v < end && *v != ',' && *v != ' ' && *v != '\t')
				v++;
			if (v > tok && jg_case_eq(tok, (size_t)(v - tok), name, name_len))
				return true;
		}
	}
	return false;
}

struct request_header *request_header_next(const struct request *req, const char *name, size_t name_len,
                                           size_t *pos)
{
	size_t i;

	for (i = *pos; i < req->n_headers; i++) {
		struct request_header *h = &req->headers[i];

		if (!h->removed && h->name_len == name_len && memcmp(h->name, name, name_len) == 0) {
			*pos = i;
			return h;
		}
	}
	*pos = req->n_headers;
	return NULL;
}

struct request_header *request_header_get(const struct request *req, const char *name, size_t name_len)
{
	size_t pos = 0;

	return request_header_next(req, name, name_len, &pos);
}

size_t request_header_remove(struct request *req, const char *name, size_t name_len)
{
	size_t pos = 0, n = 0;
	struct request_header *h;

	while ((h = request_header_next(req, name, name_len, &pos)) != NULL) {
		h->removed = true;
		n++;
		pos++;
	}
	return n;
}

/* Host from authority: lower-cased, without ":port"; IPv6 literals keep their brackets. Rejects
 * authorities with userinfo, whitespace or control bytes (RFC 9110 section 7.2, 4.2.4). */
/* Bytes refused in an authority: controls, space, non-ASCII, userinfo and path delimiters, and
 * what RFC 3986 section 3.2.2 does not allow in uri-host anyway ('"' would also break the quoted
 * realm of WWW-Authenticate). */
static const bool host_byte_bad[256] = {
        [0 ... 0x20] = true, [0x7f ... 0xff] = true, ['@'] = true, ['/'] = true, ['\\'] = true,
        ['"'] = true,        ['<'] = true,           ['>'] = true, ['{'] = true, ['}'] = true,
        ['|'] = true,        ['^'] = true,           ['`'] = true,
};

static int request_set_host(struct request *req)
{
	const char *a = req->authority;
	size_t len = req->authority_len, end = len, i;

	if (a == NULL || len == 0) {
		req->host = arena_strndup(req->arena, "", 0);
		req->host_len = 0;
		return req->host ? 0 : JG_ERR_NOMEM;
	}
	for (i = 0; i < len; i++)
		if (host_byte_bad[(unsigned char)a[i]])
			return JG_ERR_INVAL;
	if (a[0] == '[') {
		const char *close = memchr(a, ']', len);

		if (close == NULL)
			return JG_ERR_INVAL;
		end = (size_t)(close - a) + 1;
		if (end < len && a[end] != ':')
			return JG_ERR_INVAL;
	} else {
		const char *colon = memchr(a, ':', len);

		if (colon != NULL)
			end = (size_t)(colon - a);
	}
	if (end < len) { /* port: digits only */
		for (i = end + 1; i < len; i++)
			if (a[i] < '0' || a[i] > '9')
				return JG_ERR_INVAL;
	}
	/* A trailing dot names the same host (RFC 1034 absolute name). */
	if (end > 1 && a[end - 1] == '.')
		end--;
	req->host = arena_alloc(req->arena, end + 1);
	if (req->host == NULL)
		return JG_ERR_NOMEM;
	jg_lower_copy(req->host, a, end);
	req->host[end] = '\0';
	req->host_len = end;
	return 0;
}

int request_finish_head(struct request *req)
{
	const char *q;

	if (req->target == NULL || req->target_len == 0)
		return JG_ERR_INVAL;
	q = memchr(req->target, '?', req->target_len);
	if (q != NULL) {
		size_t plen = (size_t)(q - req->target);

		req->path = arena_strndup(req->arena, req->target, plen);
		req->query = req->target + plen + 1;
		req->query_len = req->target_len - plen - 1;
	} else {
		req->path = req->target;
		req->query = NULL;
		req->query_len = 0;
	}
	if (req->path == NULL)
		return JG_ERR_NOMEM;
	req->path_len = q != NULL ? (size_t)(q - req->target) : req->target_len;
	return request_set_host(req);
}

int request_query_next(const struct request *req, const char *name, size_t name_len, const char **value,
                       size_t *value_len, size_t *pos)
{
	const char *q = req->query;
	size_t len = req->query_len, i = *pos;

	if (q == NULL)
		return 0;
	while (i < len) {
		size_t start = i, end, eq;
		const char *amp = memchr(q + i, '&', len - i);

		end = amp != NULL ? (size_t)(amp - q) : len;
		i = end + 1;
		eq = start;
		while (eq < end && q[eq] != '=')
			eq++;
		if (eq - start == name_len && memcmp(q + start, name, name_len) == 0) {
			*value = eq < end ? q + eq + 1 : q + end;
			*value_len = eq < end ? end - eq - 1 : 0;
			*pos = i;
			return 1;
		}
	}
	*pos = len;
	return 0;
}

struct request_header *request_header_next_underscore(const struct request *req, size_t *pos)
{
	size_t i;

	for (i = *pos; i < req->n_headers; i++) {
		struct request_header *h = &req->headers[i];

		if (!h->removed && memchr(h->name, '_', h->name_len) != NULL) {
			*pos = i;
			return h;
		}
	}
	*pos = req->n_headers;
	return NULL;
}

/* ---- path normalisation (issue 10: the policy is decided on the path the upstream will see) ---- */

/* Byte classes for the fast scan of a path: PATH_SLASH may begin "//" or a dot segment, PATH_SLOW
 * always takes the slow path ('%', '\\', and the bytes refused there: controls, space, DEL). */
enum path_byte_class {
	PATH_PLAIN = 0,
	PATH_SLASH,
	PATH_SLOW,
};

static const unsigned char path_class[256] = {
        [0 ... 0x20] = PATH_SLOW, ['%'] = PATH_SLOW, ['\\'] = PATH_SLOW,
        [0x7f] = PATH_SLOW,       ['#'] = PATH_SLOW, ['/'] = PATH_SLASH,
};

/* RFC 3986 section 2.3: an escape of one of these is the character itself, so it is decoded. */
static const bool path_unreserved[256] = {
        ['0' ... '9'] = true, ['A' ... 'Z'] = true, ['a' ... 'z'] = true, ['-'] = true,
        ['.'] = true,         ['_'] = true,         ['~'] = true,
};

static int path_hex_value(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch |= 0x20;
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* True when the path needs no work, byte by byte (see path_is_normal()). */
static bool path_is_normal_bytes(const char *p, size_t len, bool merge_slashes)
{
	size_t i;

	for (i = 0; i < len; i++) {
		const char *s = p + i + 1;
		size_t rest = len - i - 1;

		switch (path_class[(unsigned char)p[i]]) {
		case PATH_PLAIN:
			break;
		case PATH_SLOW:
			return false;
		case PATH_SLASH:
			if (rest == 0)
				break;
			if (s[0] == '/' && merge_slashes)
				return false;
			if (s[0] == '.' &&
			    (rest == 1 || s[1] == '/' || (s[1] == '.' && (rest == 2 || s[2] == '/'))))
				return false;
			break;
		}
	}
	return true;
}

#define PATH_ONES  0x0101010101010101ull
#define PATH_HIGHS 0x8080808080808080ull

/* 0x80 in the bytes of x equal to c. Exact up to the first such byte; above it a byte may be flagged
 * that is not (a borrow), never missed: callers only ask "any?", or AND two masks and then check
 * the bytes exactly. */
static inline uint64_t path_eq8(uint64_t x, unsigned char c)
{
	uint64_t z = x ^ (PATH_ONES * c);

	return (z - PATH_ONES) & ~z & PATH_HIGHS;
}

/* True when the path needs no work: no byte of class PATH_SLOW, no "." or ".." segment, and no "//"
 * when slashes are merged. What every ordinary request costs, so eight bytes at a time: a block
 * with nothing of the kind (x), judged with the block one byte further (y) for what follows a '/',
 * is skipped; from the first block with a candidate, the bytes are looked at one by one. */
static bool path_is_normal(const char *p, size_t len, bool merge_slashes)
{
	size_t i = 0;

	for (; i + 9 <= len; i += 8) {
		uint64_t x, y, m, after_slash;

		memcpy(&x, p + i, 8);
		memcpy(&y, p + i + 1, 8);
		/* bytes below 0x21 (controls, space), '%', '\\', DEL */
		m = ((x - PATH_ONES * 0x21) & ~x & PATH_HIGHS) | path_eq8(x, '%') | path_eq8(x, '\\') |
		    path_eq8(x, 0x7f) | path_eq8(x, '#');
		after_slash = path_eq8(y, '.') | (merge_slashes ? path_eq8(y, '/') : 0);
		m |= path_eq8(x, '/') & after_slash;
		if (m != 0)
			break;
	}
	return path_is_normal_bytes(p + i, len - i, merge_slashes);
}

/* Copies in[0..len) to out (at least len bytes) decoding percent-encoding as
 * request_normalise_path() says; a raw backslash becomes '/'. Sets *out_len and, when an escaped
 * slash was decoded, *slash_unescaped. Returns 0 or JG_ERR_INVAL. The output is never longer than
 * the input: an escape becomes one byte or stays three. */
static int path_decode(const char *in, size_t len, char *out, size_t *out_len,
                       enum request_escaped_slashes slashes, bool *slash_unescaped)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		int hi, lo, v;

		if (ch != '%') {
			if (ch <= 0x20 || ch == 0x7f || ch == '#')
				return JG_ERR_INVAL; /* RFC 3986 has no raw space or control byte in a path;
				                      * '#' starts a fragment, which no request target has */
			out[o++] = ch == '\\' ? '/' : (char)ch;
			continue;
		}
		if (len - i < 3 || (hi = path_hex_value((unsigned char)in[i + 1])) < 0 ||
		    (lo = path_hex_value((unsigned char)in[i + 2])) < 0)
			return JG_ERR_INVAL; /* "%", "%4", "%zz": not percent-encoding (RFC 3986 2.1) */
		v = hi << 4 | lo;
		i += 2;
		if (v == 0)
			return JG_ERR_INVAL; /* %00 ends a C string in many origins */
		if (path_unreserved[v]) {
			out[o++] = (char)v;
			continue;
		}
		if (v == '/' || v == '\\') {
			if (slashes == REQUEST_SLASHES_REJECT)
				return JG_ERR_INVAL;
			if (slashes == REQUEST_SLASHES_UNESCAPE) {
				out[o++] = '/';
				*slash_unescaped = true;
				continue;
			}
		}
		out[o++] = '%';
		out[o++] = hex[v >> 4];
		out[o++] = hex[v & 0xf];
	}
	*out_len = o;
	return 0;
}

/* RFC 3986 section 5.2.4 (remove_dot_segments) in place on a path that starts with '/'. Empty
 * segments count as segments, as there ("/a//.." is "/a/"); merging slashes comes after, as in
 * Envoy. Returns the new length, at least 1. Each input segment "/seg" writes at most as many bytes
 * as it reads, so the output never overtakes the input. */
static size_t path_remove_dot_segments(char *p, size_t len)
{
	size_t i = 0, o = 0;

	while (i < len) {
		size_t s = i + 1, e = s;
		bool is_last;

		while (e < len && p[e] != '/')
			e++;
		is_last = e == len;
		if (e - s == 1 && p[s] == '.') {
			if (is_last)
				p[o++] = '/'; /* "/a/." is "/a/" */
		} else if (e - s == 2 && p[s] == '.' && p[s + 1] == '.') {
			while (o > 0 && p[o - 1] != '/') /* drop the last output segment, not past the root */
				o--;
			if (o > 0)
				o--;
			if (is_last)
				p[o++] = '/'; /* "/a/b/.." is "/a/" */
		} else {
			p[o++] = '/';
			memmove(p + o, p + s, e - s);
			o += e - s;
		}
		i = e;
	}
	if (o == 0)
		p[o++] = '/';
	return o;
}

/* Runs of '/' become one, in place. Returns the new length. */
static size_t path_merge_slashes(char *p, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++)
		if (p[i] != '/' || o == 0 || p[o - 1] != '/')
			p[o++] = p[i];
	return o;
}

int request_normalise_path(struct request *req, enum request_escaped_slashes slashes, bool merge_slashes)
{
	bool slash_unescaped = false;
	size_t n;
	char *buf;
	int rc;

	if (req->path == NULL || req->path_len == 0 || req->path[0] != '/')
		return JG_ERR_INVAL;
	/* A request target has no fragment (RFC 9112 section 3.2, RFC 9113 section 8.3.1): "/admin#x"
	 * would match an open catch-all route here and reach an origin that drops "#x" and serves
	 * /admin. The path's '#' is found by the scans below; the query's here. */
	if (req->query != NULL && memchr(req->query, '#', req->query_len) != NULL)
		return JG_ERR_INVAL;
	if (path_is_normal(req->path, req->path_len, merge_slashes))
		return 0;
	/* The path, then (when there is a query) the new target "path?query": one allocation. */
	n = req->path_len + 1 + (req->query != NULL ? req->path_len + 1 + req->query_len + 1 : 0);
	buf = arena_alloc(req->arena, n);
	if (buf == NULL)
		return JG_ERR_NOMEM;
	rc = path_decode(req->path, req->path_len, buf, &n, slashes, &slash_unescaped);
	if (rc < 0)
		return rc;
	n = path_remove_dot_segments(buf, n);
	if (merge_slashes)
		n = path_merge_slashes(buf, n);
	if (n == req->path_len && memcmp(buf, req->path, n) == 0)
		return 0; /* escapes already in normal form, e.g. "%3F" */
	buf[n] = '\0';
	if (req->query != NULL) {
		char *t = buf + n + 1;

		memcpy(t, buf, n);
		t[n] = '?';
		memcpy(t + n + 1, req->query, req->query_len);
		t[n + 1 + req->query_len] = '\0';
		req->target = t;
		req->target_len = n + 1 + req->query_len;
		req->query = t + n + 1;
	} else {
		req->target = buf;
		req->target_len = n;
	}
	req->path = buf;
	req->path_len = n;
	return REQUEST_PATH_CHANGED | (slash_unescaped ? REQUEST_PATH_SLASH_UNESCAPED : 0);
}

int64_t request_content_length_parse(const char *v, size_t len)
{
	int64_t n = 0;
	size_t i;

	if (len == 0 || len > 18 || (len > 1 && v[0] == '0'))
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	return n;
}
