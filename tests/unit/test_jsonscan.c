/* test_jsonscan.c: the in-place reader of plain JSON (jsonscan.h): what it takes, what it leaves to
 * jansson, and what it reads. That every text it takes reads the same in jansson is fuzz_jsonscan's
 * differential check, replayed on tests/fuzz/corpus/jsonscan. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/common.h"
#include "jwt/jsonscan.h"

static struct jsonscan_object obj;

static bool scan(const char *text)
{
	return jsonscan_object(text, strlen(text), &obj);
}

/* A typical JOSE header and claims set are plain and read in place. */
static void test_typical_token_json(void **state)
{
	const struct jsonscan_member *m;
	const char *s;
	size_t len, pos = 0;

	(void)state;
	assert_true(scan("{\"alg\":\"RS256\",\"kid\":\"bench\",\"typ\":\"JWT\"}"));
	assert_int_equal(obj.n, 3);
	m = jsonscan_get(&obj, "kid");
	assert_non_null(m);
	assert_int_equal(m->type, JSONSCAN_STRING);
	assert_int_equal(m->len, 5);
	assert_memory_equal(m->text, "bench", 5);
	assert_null(jsonscan_get(&obj, "crit"));

	assert_true(scan(" {\"iss\" : \"https://a.example\",\n\"exp\":1795924924, \"nbf\":-5, \"z\":0,"
	                 "\"aud\":[ \"x\" , \"\" ],\"e\":[],\"t\":true,\"f\":false,\"n\":null}\r\n"));
	assert_int_equal(obj.n, 9);
	assert_int_equal(jsonscan_get(&obj, "exp")->integer, 1795924924);
	assert_int_equal(jsonscan_get(&obj, "nbf")->integer, -5);
	assert_int_equal(jsonscan_get(&obj, "z")->integer, 0);
	assert_int_equal(jsonscan_get(&obj, "t")->type, JSONSCAN_TRUE);
	assert_int_equal(jsonscan_get(&obj, "f")->type, JSONSCAN_FALSE);
	assert_int_equal(jsonscan_get(&obj, "n")->type, JSONSCAN_NULL);
	assert_int_equal(jsonscan_get(&obj, "e")->n_items, 0);
	m = jsonscan_get(&obj, "aud");
	assert_int_equal(m->type, JSONSCAN_ARRAY);
	assert_int_equal(m->n_items, 2);
	assert_true(jsonscan_array_next(m, &pos, &s, &len));
	assert_int_equal(len, 1);
	assert_memory_equal(s, "x", 1);
	assert_true(jsonscan_array_next(m, &pos, &s, &len));
	assert_int_equal(len, 0);
	assert_false(jsonscan_array_next(m, &pos, &s, &len));
	assert_true(scan("{}"));
	assert_int_equal(obj.n, 0);
	/* 18 digits is the longest integer read in place. */
	assert_true(scan("{\"a\":999999999999999999}"));
	assert_int_equal(jsonscan_get(&obj, "a")->integer, 999999999999999999LL);
}

/* Everything outside the subset, valid JSON or not, is left to jansson. */
static void test_not_plain(void **state)
{
	static const char *texts[] = {
	        "",                            /* nothing */
	        "[\"a\"]",                     /* not an object */
	        "{\"a\":1,\"a\":2}",           /* duplicate member: jansson refuses it */
	        "{\"a\":\"\\u0061\"}",         /* escape */
	        "{\"\\u0061\":1}",             /* escape in a name */
	        "{\"a\":\"\xc3\xa9\"}",        /* UTF-8 */
	        "{\"a\":\"x\x7f\"}",           /* DEL */
	        "{\"a\":\"tab\tin\"}",         /* control character in a string */
	        "{\"a\":1.5}",                 /* real */
	        "{\"a\":1e3}",                 /* exponent */
	        "{\"a\":01}",                  /* leading zero (invalid) */
	        "{\"a\":1234567890123456789}", /* 19 digits */
	        "{\"a\":-}",                   /* sign alone */
	        "{\"a\":{\"b\":1}}",           /* nested object */
	        "{\"a\":[1,2]}",               /* array of non-strings */
	        "{\"a\":[\"x\",]}",            /* trailing comma in an array */
	        "{\"a\":tru}",                 /* bad literal */
	        "{\"a\":truex}",               /* literal run on */
	        "{\"a\":true1}",               /* literal then a digit */
	        "{\"a\":\"x\"}x",              /* trailing garbage */
	        "{\"a\":\"x\",}",              /* trailing comma */
	        "{,\"a\":1}",                  /* leading comma */
	        "{\"a\" \"b\"}",               /* no colon */
	        "{\"a\":\"x\"",                /* unterminated object */
	        "{\"a\":\"x",                  /* unterminated string */
	        "\xef\xbb\xbf{\"a\":1}",       /* byte order mark */
	};
	size_t i;
	char many[JSONSCAN_MAX_MEMBERS * 12 + 16];
	size_t o = 0;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(texts); i++) {
		if (scan(texts[i]))
			fail_msg("taken as plain: %s", texts[i]);
	}
	/* A NUL byte inside the text. */
	assert_false(jsonscan_object("{\"a\":\"x\"}\0", 10, &obj));
	/* One member too many. */
	many[o++] = '{';
	for (i = 0; i <= JSONSCAN_MAX_MEMBERS; i++)
		o += (size_t)snprintf(many + o, sizeof(many) - o, "%s\"m%zu\":1", i ? "," : "", i);
	many[o++] = '}';
	many[o] = '\0';
	assert_false(scan(many));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_typical_token_json),
	        cmocka_unit_test(test_not_plain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
