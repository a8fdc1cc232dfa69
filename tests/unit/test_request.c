/* test_request.c: the protocol-neutral request: header list, hop-by-hop rules, host and target. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "jwtgate/common.h"
#include "jwtgate/request.h"

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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
