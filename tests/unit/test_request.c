/* test_request.c: the protocol-neutral request: header list, hop-by-hop rules, host and target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "core/request.h"

struct t_req {
	struct arena arena;
	struct request req;
};

static int setup(void **state)
{
	static struct t_req t;

	arena_init(&t.arena, 512, 1 << 20);
	request_init(&t.req, &t.arena);
	*state = &t;
	return 0;
}

static int teardown(void **state)
{
	struct t_req *t = *state;

	arena_free(&t->arena);
	return 0;
}

static void add(struct request *req, const char *n, const char *v)
{
	assert_int_equal(request_header_add(req, n, strlen(n), v, strlen(v)), 0);
}

static void test_names_lower_cased_and_found(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	struct request_header *h;
	size_t pos = 0;

	add(req, "X-Foo", "1");
	add(req, "x-bar", "2");
	add(req, "X-FOO", "3");
	h = request_header_get(req, "x-foo", 5);
	assert_non_null(h);
	assert_string_equal(h->name, "x-foo");
	assert_string_equal(h->value, "1");
	/* every value of a repeated header, in order */
	h = request_header_next(req, "x-foo", 5, &pos);
	assert_string_equal(h->value, "1");
	pos++;
	h = request_header_next(req, "x-foo", 5, &pos);
	assert_string_equal(h->value, "3");
	pos++;
	assert_null(request_header_next(req, "x-foo", 5, &pos));
	assert_null(request_header_get(req, "X-Foo", 5)); /* lookups take lower-case names */
}

static void test_remove_marks_all_and_skips(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;

	add(req, "a", "1");
	add(req, "b", "2");
	add(req, "A", "3");
	assert_int_equal(request_header_remove(req, "a", 1), 2);
	assert_null(request_header_get(req, "a", 1));
	assert_non_null(request_header_get(req, "b", 1));
	assert_int_equal(request_header_remove(req, "a", 1), 0);
}

static void test_header_count_is_bounded(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	char name[16];
	int i, rc = 0;

	for (i = 0; i < REQUEST_MAX_HEADERS_HARD + 10 && rc == 0; i++) {
		snprintf(name, sizeof(name), "h%d", i);
		rc = request_header_add(req, name, strlen(name), "v", 1);
	}
	assert_int_equal(rc, JG_ERR_LIMIT);
	assert_int_equal(req->n_headers, REQUEST_MAX_HEADERS_HARD);
}

static void test_arena_limit_fails_cleanly(void **state)
{
	struct arena a;
	struct request req;
	char big[4096];
	int i, rc = 0;

	(void)state;
	memset(big, 'x', sizeof(big));
	arena_init(&a, 1024, 16 * 1024);
	request_init(&req, &a);
	for (i = 0; i < 100 && rc == 0; i++)
		rc = request_header_add(&req, "x", 1, big, sizeof(big));
	assert_int_equal(rc, JG_ERR_NOMEM);
	assert_true(a.total <= 16 * 1024);
	arena_free(&a);
}

static void test_hop_by_hop(void **state)
{
	(void)state;
	assert_true(request_header_is_hop_by_hop("connection", 10));
	assert_true(request_header_is_hop_by_hop("keep-alive", 10));
	assert_true(request_header_is_hop_by_hop("proxy-connection", 16));
	assert_true(request_header_is_hop_by_hop("te", 2));
	assert_true(request_header_is_hop_by_hop("trailer", 7));
	assert_true(request_header_is_hop_by_hop("transfer-encoding", 17));
	assert_true(request_header_is_hop_by_hop("upgrade", 7));
	assert_false(request_header_is_hop_by_hop("content-length", 14));
	assert_false(request_header_is_hop_by_hop("authorization", 13));
	assert_false(request_header_is_hop_by_hop("tee", 3));
}

static void test_connection_listed(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;

	add(req, "Connection", "keep-alive, X-Secret ,x-other");
	add(req, "connection", "\tclose");
	assert_true(request_header_listed_in_connection(req->headers, req->n_headers, "x-secret", 8));
	assert_true(request_header_listed_in_connection(req->headers, req->n_headers, "x-other", 7));
	assert_true(request_header_listed_in_connection(req->headers, req->n_headers, "close", 5));
	assert_false(request_header_listed_in_connection(req->headers, req->n_headers, "x-sec", 5));
	assert_false(request_header_listed_in_connection(req->headers, req->n_headers, "keep", 4));
}

static int finish(struct request *req, const char *authority, const char *target)
{
	req->authority = authority ? (char *)authority : NULL;
	req->authority_len = authority ? strlen(authority) : 0;
	req->target = (char *)target;
	req->target_len = strlen(target);
	return request_finish_head(req);
}

static void test_host_and_target(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;

	assert_int_equal(finish(req, "WWW.Example.COM:8080", "/foo/bar?x=1&y"), 0);
	assert_string_equal(req->host, "www.example.com");
	assert_int_equal(req->path_len, 8);
	assert_memory_equal(req->path, "/foo/bar", 8);
	assert_int_equal(req->query_len, 5);
	assert_memory_equal(req->query, "x=1&y", 5);

	assert_int_equal(finish(req, "[::1]:443", "/"), 0);
	assert_string_equal(req->host, "[::1]");
	assert_null(req->query);

	assert_int_equal(finish(req, "example.com.", "/"), 0); /* absolute name */
	assert_string_equal(req->host, "example.com");
}

static void test_bad_authorities_refused(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	static const char *const bad[] = {
	        "user@host", "host:80x", "a b", "host/x", "[::1", "[::1]x", "a\"b", "a\r\nb", "h:8\x7f",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(finish(req, bad[i], "/"), JG_ERR_INVAL);
	assert_int_equal(finish(req, "ok", ""), JG_ERR_INVAL);
}

/* The byte table against the rule it encodes, for every byte in the middle of a host name. */
static void test_every_authority_byte(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	unsigned c;

	for (c = 0; c < 256; c++) {
		char auth[8] = {'a', (char)c, 'b', '\0'};
		bool bad = c <= 0x20 || c >= 0x7f || c == '@' || c == '/' || c == '\\' || c == '"' ||
		           c == '<' || c == '>' || c == '{' || c == '}' || c == '|' || c == '^' || c == '`';
		int rc;

		req->authority = auth;
		req->authority_len = 3;
		req->target = "/";
		req->target_len = 1;
		rc = request_finish_head(req);
		if (c == ':' || c == '[' || c == ']' || c == '.')
			continue; /* port separator and IPv6 brackets: their own rules */
		assert_int_equal(rc, bad ? JG_ERR_INVAL : 0);
	}
}

/* jg_lower_copy against the one-byte rule: every byte value at every position of an 8-byte block
 * and of the tail, for lengths 0 to 19, between bytes that are upper-case letters and bytes >= 0x80
 * (so a carry or borrow between bytes would show). */
static void test_lower_copy_every_byte(void **state)
{
	static const unsigned char fill[] = {'Z', 0x80, 'A', 0xff, '@', '[', 'a', 0xc1};
	char src[24], dst[24], want[24];
	size_t n, pos, f, i;
	unsigned c;

	(void)state;
	for (n = 0; n < 20; n++)
		for (pos = 0; pos < n; pos++)
			for (f = 0; f < sizeof(fill); f++)
				for (c = 0; c < 256; c++) {
					for (i = 0; i < n; i++)
						src[i] = (char)fill[(f + i) % sizeof(fill)];
					src[pos] = (char)c;
					for (i = 0; i < n; i++) {
						unsigned char b = (unsigned char)src[i];

						want[i] = (char)(b >= 'A' && b <= 'Z' ? b + 32 : b);
					}
					memset(dst, 0x55, sizeof(dst));
					jg_lower_copy(dst, src, n);
					assert_memory_equal(dst, want, n);
					assert_int_equal((unsigned char)dst[n], 0x55); /* nothing past n */
				}
}

/* The field checks against their one-byte rules: every byte value at every position of values of
 * length 1 to 40 (the value check's eight-byte blocks and its tail), and in names. */
static void test_field_syntax_every_byte(void **state)
{
	char buf[48];
	size_t len, pos;
	unsigned c;

	(void)state;
	for (c = 0; c < 256; c++) {
		bool value_bad = (c < 0x20 && c != '\t') || c == 0x7f;
		bool tchar = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		             (c != 0 && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);

		for (len = 1; len <= 40; len++)
			for (pos = 0; pos < len; pos++) {
				memset(buf, 'v', len);
				buf[pos] = (char)c;
				assert_int_equal(request_field_value_ok(buf, len), !value_bad);
				assert_int_equal(request_field_name_ok(buf, len), tchar);
			}
	}
	assert_false(request_field_name_ok("", 0));
	assert_true(request_field_value_ok("", 0));
}

static void test_query_params(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	const char *v;
	size_t len, pos = 0;

	assert_int_equal(
	        finish(req, "h", "/p?access_token=a.b.c&x=1&access_token=&access_token2=z&access_token"), 0);
	assert_int_equal(request_query_next(req, "access_token", 12, &v, &len, &pos), 1);
	assert_int_equal(len, 5);
	assert_memory_equal(v, "a.b.c", 5);
	assert_int_equal(request_query_next(req, "access_token", 12, &v, &len, &pos), 1);
	assert_int_equal(len, 0); /* "access_token=" */
	assert_int_equal(request_query_next(req, "access_token", 12, &v, &len, &pos), 1);
	assert_int_equal(len, 0); /* bare "access_token" */
	assert_int_equal(request_query_next(req, "access_token", 12, &v, &len, &pos), 0);
}

static void test_response_headers(void **state)
{
	struct t_req *t = *state;
	struct response resp;

	response_init(&resp, &t->arena);
	assert_int_equal(resp.content_length, -1);
	assert_int_equal(response_header_add(&resp, "Content-Type", 12, "text/plain", 10), 0);
	assert_int_equal(resp.n_headers, 1);
	assert_string_equal(resp.headers[0].name, "content-type");
}

/* ---- path normalisation (issue 10 section 2) ---- */

#define K   REQUEST_SLASHES_KEEP
#define R   REQUEST_SLASHES_REJECT
#define U   REQUEST_SLASHES_UNESCAPE
#define CH  REQUEST_PATH_CHANGED
#define SU  REQUEST_PATH_SLASH_UNESCAPED
#define BAD JG_ERR_INVAL

struct path_case {
	const char *in;
	enum request_escaped_slashes slashes;
	bool merge;
	int rc;          /* flags, 0 (unchanged) or BAD */
	const char *out; /* target after; NULL when rc is 0 or BAD (target unchanged) */
};

static const struct path_case path_cases[] = {
        /* the four bypasses of the issue: all end on /foo, never under the open /bar */
        {"/bar/../foo", U, true, CH, "/foo"},
        {"/bar/%2e%2e/foo", U, true, CH, "/foo"},
        {"/bar/..%2ffoo", U, true, CH | SU, "/foo"},
        {"/bar//../../foo", U, true, CH, "/foo"},
        {"/bar//../../foo", U, false, CH, "/foo"},
        /* escaped slashes per action */
        {"/bar/..%2ffoo", K, true, CH, "/bar/..%2Ffoo"},
        {"/bar/..%2Ffoo", K, true, 0, NULL},
        {"/bar/..%2ffoo", R, true, BAD, NULL},
        {"/bar/..%2Ffoo", R, false, BAD, NULL},
        {"/bar/..%5cfoo", U, true, CH | SU, "/foo"},
        {"/bar/..%5Cfoo", K, true, 0, NULL},
        {"/bar/..%5cfoo", R, true, BAD, NULL},
        {"/a%2F%2fb", U, true, CH | SU, "/a/b"},
        {"/a%2F%2fb", U, false, CH | SU, "/a//b"},
        {"/a/b", R, true, 0, NULL},
        /* raw backslash is a separator */
        {"/bar\\..\\foo", K, true, CH, "/foo"},
        {"/a\\b", U, true, CH, "/a/b"},
        /* dot segments, decoded or not, in any case */
        {"/a/%2e/b", U, true, CH, "/a/b"},
        {"/a/%2E%2E/b", U, true, CH, "/b"},
        {"/a/.%2e/b", U, true, CH, "/b"},
        {"/a/%2E./b", K, true, CH, "/b"},
        {"/a/b/..", U, true, CH, "/a/"},
        {"/a/b/%2e%2e", U, true, CH, "/a/"},
        {"/a/.", U, true, CH, "/a/"},
        {"/.", U, true, CH, "/"},
        {"/..", U, true, CH, "/"},
        {"/../../a", U, true, CH, "/a"},
        {"/a/./b/./", U, true, CH, "/a/b/"},
        {"/a/b/../../../c/", U, true, CH, "/c/"},
        /* not dot segments: left alone without work */
        {"/.well-known/jwks.json", U, true, 0, NULL},
        {"/a/..b/c.", U, true, 0, NULL},
        {"/a/.../b", U, true, 0, NULL},
        {"/yages.Echo/Ping", U, true, 0, NULL},
        {"/", U, true, 0, NULL},
        {"/a/", U, true, 0, NULL},
        /* empty segments: merged or kept, and counted by ".." as RFC 3986 5.2.4 does */
        {"/a//b", U, true, CH, "/a/b"},
        {"/a//b", U, false, 0, NULL},
        {"//", U, true, CH, "/"},
        {"/a///", U, true, CH, "/a/"},
        {"/a//..", U, true, CH, "/a/"},
        {"/a//..", U, false, CH, "/a/"},
        {"/a//./b", U, false, CH, "/a//b"},
        /* invalid or dangerous percent-encoding */
        {"/a%00b", U, true, BAD, NULL},
        {"/a%00b", K, false, BAD, NULL},
        {"/a%zz", U, true, BAD, NULL},
        {"/a%4", U, true, BAD, NULL},
        {"/a%4g/b", U, true, BAD, NULL},
        {"/a%", U, true, BAD, NULL},
        {"/a%%41", U, true, BAD, NULL},
        /* raw bytes RFC 3986 has no place for */
        {"/a b", U, true, BAD, NULL},
        {"/a\tb", U, true, BAD, NULL},
        {"/a\x7f", U, true, BAD, NULL},
        /* a fragment is no part of a request target (RFC 9112 section 3.2) */
        {"/admin#x", U, true, BAD, NULL},
        {"/admin#", K, false, BAD, NULL},
        {"/a/b?q#x", U, true, BAD, NULL},
        {"/a/../b?q#x", U, true, BAD, NULL},
        {"/a%23b", U, true, 0, NULL},
        /* reserved characters stay encoded (hex upper-cased); unreserved ones are decoded */
        {"/a%3F%23%25", U, true, 0, NULL},
        {"/a%3f%23%25", U, true, CH, "/a%3F%23%25"},
        {"/a%20b%2B", U, true, 0, NULL},
        {"/%41%7E%7e%2D%5f%30%2e", U, true, CH, "/A~~-_0."},
        {"/%61dmin", U, true, CH, "/admin"},
        {"/%252e%252e/x", U, true, 0, NULL}, /* decoded once only: %25 stays %25 */
        {"/%c3%a9", U, true, CH, "/%C3%A9"},
        /* the query is never changed */
        {"/bar/../foo?x=/../%2e&y=%zz", U, true, CH, "/foo?x=/../%2e&y=%zz"},
        {"/bar/..%2ffoo?a=%2f", U, true, CH | SU, "/foo?a=%2f"},
        {"/a/b/%2e%2e?", U, true, CH, "/a/?"},
        {"/x?/../..", U, true, 0, NULL},
        {"/x%zz?ok", U, true, BAD, NULL},
};

static void test_path_normalisation_table(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(path_cases); i++) {
		const struct path_case *pc = &path_cases[i];
		struct arena arena;
		struct request req;
		const char *q, *path_before;
		size_t plen;
		int rc;

		arena_init(&arena, 256, 1 << 16);
		request_init(&req, &arena);
		assert_int_equal(finish(&req, "h", pc->in), 0);
		path_before = req.path;
		rc = request_normalise_path(&req, pc->slashes, pc->merge);
		if (rc != pc->rc)
			fail_msg("case %zu \"%s\" (slashes %d, merge %d): rc %d, expected %d", i, pc->in,
			         (int)pc->slashes, (int)pc->merge, rc, pc->rc);
		if (pc->out != NULL) {
			if (strcmp(req.target, pc->out) != 0)
				fail_msg("case %zu \"%s\": target \"%s\", expected \"%s\"", i, pc->in,
				         req.target, pc->out);
			assert_int_equal(req.target_len, strlen(pc->out));
		} else {
			/* unchanged or refused: the request still holds what was sent, no copy made */
			assert_string_equal(req.target, pc->in);
			assert_ptr_equal(req.path, path_before);
		}
		/* path and query stay consistent with the target, NUL-terminated */
		q = strchr(req.target, '?');
		plen = q != NULL ? (size_t)(q - req.target) : strlen(req.target);
		assert_int_equal(req.path_len, plen);
		assert_memory_equal(req.path, req.target, plen);
		assert_int_equal(req.path[plen], '\0');
		if (q != NULL) {
			assert_ptr_equal(req.query, q + 1);
			assert_int_equal(req.query_len, strlen(q + 1));
		} else {
			assert_null(req.query);
		}
		/* normalising twice changes nothing more */
		if (rc >= 0)
			assert_int_equal(request_normalise_path(&req, pc->slashes, pc->merge), 0);
		arena_free(&arena);
	}
}

/* The fast scan reads eight bytes at a time: whatever needs work is found at every offset of a long
 * path (and a plain "/.a" segment is not mistaken for a dot segment). */
static void test_path_normalisation_every_offset(void **state)
{
	static const struct {
		const char *piece;
		bool is_bad; /* refused, else changed */
	} pieces[] = {
	        {"//", false},  {"/./", false}, {"/../", false}, {"/.", false},  {"/..", false},
	        {"%41", false}, {"\\", false},  {" ", true},     {"\x7f", true}, {"\x01", true},
	        {"%2f", false}, {"%", true},    {"%0", true},    {"#", true},
	};
	size_t k, off, total;

	(void)state;
	for (k = 0; k < JG_ARRAY_SIZE(pieces); k++) {
		size_t plen = strlen(pieces[k].piece);

		for (total = 1 + plen; total <= 40; total++) {
			for (off = 1; off + plen <= total; off++) {
				struct arena arena;
				struct request req;
				char t[48];
				bool at_end = off + plen == total;
				int rc;

				/* "/." and "/.." are dot segments only at the end here ('z' follows them
				 * otherwise); 'z' is no hex digit, so "%" and "%0" stay broken anywhere */
				if (!at_end && (strcmp(pieces[k].piece, "/.") == 0 ||
				                strcmp(pieces[k].piece, "/..") == 0))
					continue;
				memset(t, 'z', total);
				t[0] = '/';
				memcpy(t + off, pieces[k].piece, plen);
				t[total] = '\0';
				arena_init(&arena, 256, 1 << 16);
				request_init(&req, &arena);
				assert_int_equal(finish(&req, "h", t), 0);
				rc = request_normalise_path(&req, REQUEST_SLASHES_UNESCAPE, true);
				if (pieces[k].is_bad ? rc != JG_ERR_INVAL : rc <= 0)
					fail_msg("\"%s\" at %zu of %zu: rc %d", pieces[k].piece, off, total,
					         rc);
				arena_free(&arena);
			}
		}
	}
	for (total = 4; total <= 40; total++) {
		for (off = 0; off + 3 <= total; off++) {
			struct arena arena;
			struct request req;
			char t[48];

			memset(t, 'a', total);
			t[0] = '/';
			memcpy(t + off, "/.a", 3);
			t[total] = '\0';
			arena_init(&arena, 256, 1 << 16);
			request_init(&req, &arena);
			assert_int_equal(finish(&req, "h", t), 0);
			assert_int_equal(request_normalise_path(&req, REQUEST_SLASHES_UNESCAPE, false), 0);
			arena_free(&arena);
		}
	}
}

/* The arena's bound holds for a path being normalised: a failed allocation is an error, not a crash. */
static void test_path_normalisation_out_of_memory(void **state)
{
	struct arena arena;
	struct request req;
	char target[600];

	(void)state;
	memset(target, 'a', sizeof(target) - 1);
	target[0] = '/';
	target[1] = '.';
	target[2] = '/';
	target[sizeof(target) - 1] = '\0';
	arena_init(&arena, 128, 512);
	request_init(&req, &arena);
	assert_int_equal(finish(&req, "h", target), 0);
	assert_int_equal(request_normalise_path(&req, REQUEST_SLASHES_UNESCAPE, true), JG_ERR_NOMEM);
	assert_ptr_equal(req.target, target);
	arena_free(&arena);
}

static void test_header_names_with_underscores(void **state)
{
	struct request *req = &((struct t_req *)*state)->req;
	struct request_header *h;
	size_t pos = 0;

	add(req, "X-Plain", "1");
	add(req, "Transfer_Encoding", "chunked");
	add(req, "x-ok", "2");
	add(req, "X_Forwarded_For", "10.0.0.1");
	add(req, "_", "3");
	h = request_header_next_underscore(req, &pos);
	assert_non_null(h);
	assert_string_equal(h->name, "transfer_encoding");
	h->removed = true;
	pos++;
	h = request_header_next_underscore(req, &pos);
	assert_string_equal(h->name, "x_forwarded_for");
	pos = 0;
	h = request_header_next_underscore(req, &pos); /* removed ones are skipped */
	assert_string_equal(h->name, "x_forwarded_for");
	pos++;
	h = request_header_next_underscore(req, &pos);
	assert_string_equal(h->name, "_");
	pos++;
	assert_null(request_header_next_underscore(req, &pos));
	assert_int_equal(pos, req->n_headers);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_names_lower_cased_and_found, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_remove_marks_all_and_skips, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_header_count_is_bounded, setup, teardown),
	        cmocka_unit_test(test_arena_limit_fails_cleanly),
	        cmocka_unit_test(test_hop_by_hop),
	        cmocka_unit_test_setup_teardown(test_connection_listed, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_host_and_target, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_bad_authorities_refused, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_every_authority_byte, setup, teardown),
	        cmocka_unit_test(test_lower_copy_every_byte),
	        cmocka_unit_test(test_field_syntax_every_byte),
	        cmocka_unit_test_setup_teardown(test_query_params, setup, teardown),
	        cmocka_unit_test_setup_teardown(test_response_headers, setup, teardown),
	        cmocka_unit_test(test_path_normalisation_table),
	        cmocka_unit_test(test_path_normalisation_every_offset),
	        cmocka_unit_test(test_path_normalisation_out_of_memory),
	        cmocka_unit_test_setup_teardown(test_header_names_with_underscores, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
