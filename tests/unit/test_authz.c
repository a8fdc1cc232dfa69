/* test_authz.c: SecurityPolicy authorization (issue 12 section 1) through auth_check, the function a
 * worker calls: the seed's test.jwt (name, admin), tokens minted here with nested objects, arrays,
 * scopes in both claims and both forms, numbers and booleans; Allow/Deny ordering and defaultAction;
 * a rule naming another provider; headers, methods; CIDR edges (IPv4, IPv6, IPv4-mapped); the answer
 * of a cached token equal to the first one. Matching semantics are Envoy Gateway's (authz.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "auth_fixture.h"
#include "jwt_testutil.h"
#include "core/arena.h"
#include "jwt/auth.h"
#include "jwt/authz.h"
#include "config/config.h"
#include "core/log.h"
#include "core/request.h"
#include "jwt/token_cache.h"

#define NOW 1700000000

#define CFG_HEAD                                                                                             \
	"listeners: [{name: http, address: \"127.0.0.1:18080\"}]\n"                                          \
	"backends: [{name: be, endpoints: [{ip: {address: 127.0.0.1, port: 3000}}]}]\n"                      \
	"httpRoutes: [{name: r0, rules: [{backendRefs: [{name: be}]}]}]\n"                                   \
	"securityPolicies:\n"                                                                                \
	"  - name: p\n"                                                                                      \
	"    targetRef: {kind: HTTPRoute, name: r0}\n"

/* provider "seed" verifies the task's test.jwt, "k1" tokens minted here, "k2" an EC key */
#define PROVIDERS                                                                                            \
	"    jwt:\n"                                                                                         \
	"      optional: true\n"                                                                             \
	"      providers:\n"                                                                                 \
	"        - {name: seed, localJWKS: {type: File, file: seed.json}}\n"                                 \
	"        - {name: k1, localJWKS: {type: File, file: k1.json}}\n"                                     \
	"        - {name: k2, localJWKS: {type: File, file: k2.json}}\n"

/* Loads CFG_HEAD + the policy body (jwt and/or authorization). */
static void load(const char *body)
{
	afx_load(CFG_HEAD, body);
}

static void set_peer(const char *ip)
{
	memset(&t.peer, 0, sizeof(t.peer));
	if (strchr(ip, ':') != NULL) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&t.peer;

		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&t.peer;

		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	}
}

/* A new request `method /` from 192.0.2.10 unless set_peer says otherwise afterwards. */
static void req_m(const char *method)
{
	arena_reset(&t.arena);
	request_init(&t.req, &t.arena);
	t.req.method = arena_strndup(&t.arena, method, strlen(method));
	t.req.method_len = strlen(method);
	t.req.target = arena_strndup(&t.arena, "/", 1);
	t.req.target_len = 1;
	t.req.authority = arena_strndup(&t.arena, "www.example.com", 15);
	t.req.authority_len = 15;
	assert_int_equal(request_header_add(&t.req, "host", 4, "www.example.com", 15), 0);
	set_peer("192.0.2.10");
	t.req.peer = (const struct sockaddr *)&t.peer;
	t.req.peer_len = sizeof(t.peer);
}

static void req(void)
{
	req_m("GET");
}

static void hdr(const char *name, const char *value)
{
	assert_int_equal(request_header_add(&t.req, name, strlen(name), value, strlen(value)), 0);
}

static void bearer(const char *token)
{
	char *v = tu_fmt("Bearer %s", token);

	hdr("authorization", v);
	free(v);
}

static const struct auth_decision *check(void)
{
	assert_int_equal(request_finish_head(&t.req), 0);
	auth_check(t.worker, &t.cfg->policies[0], &t.req, NOW, &t.d);
	return &t.d;
}

/* A token for provider k1 (RSA) or k2 (EC) with the given claims object. */
static char *mint(bool ec, const char *claims)
{
	return ec ? tu_mint(fx.ec, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"k2\"}", claims)
	          : tu_mint(fx.rsa, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"k1\"}", claims);
}

static void expect_allow(void)
{
	if (t.d.verdict != AUTH_ALLOW)
		fail_msg("expected ALLOW, got %d \"%s\"", t.d.http_status, t.d.message ? t.d.message : "");
}

/* Envoy's RBAC denial: 403, PERMISSION_DENIED, its body, no challenge. */
static void expect_rbac_deny(void)
{
	if (t.d.verdict != AUTH_DENY)
		fail_msg("expected the RBAC denial, got ALLOW (rule %d)", t.d.authz_rule);
	assert_int_equal(t.d.http_status, 403);
	assert_int_equal(t.d.grpc_status, 7);
	assert_string_equal(t.d.message, "RBAC: access denied");
	assert_true(t.d.authz_denied);
	assert_false(t.d.invalid_token);
}

/* The decision for `token` (NULL: none), twice: the second run answers from the token cache and
 * must say the same. Returns the deciding rule (-1 default); *allow the verdict. */
static int decide(const char *token, bool *allow)
{
	int rule, i;

	for (i = 0; i < 2; i++) {
		req();
		if (token != NULL)
			bearer(token);
		check();
		if (t.d.verdict == AUTH_DENY && !t.d.authz_denied)
			fail_msg("authentication failed: %s", t.d.message);
		if (i == 0) {
			rule = t.d.authz_rule;
			*allow = t.d.verdict == AUTH_ALLOW;
		} else {
			assert_int_equal(t.d.authz_rule, rule);
			assert_int_equal(t.d.verdict == AUTH_ALLOW, *allow);
		}
	}
	return rule;
}

/* The rule that decides for a token of claims `claims` minted for k1. */
static int rule_for(const char *claims)
{
	char *tok = mint(false, claims);
	bool allow;
	int rule = decide(tok, &allow);

	free(tok);
	return rule;
}

/* ---- tests ---- */

/* The seed's test.jwt carries name "John Doe" and admin true (a boolean). */
static void test_seed_token_claims(void **state)
{
	bool allow;

	JG_UNUSED(state);
	load(PROVIDERS
	     "    authorization:\n"
	     "      rules:\n"
	     "        - {name: admin-bool, action: Allow, principal: {jwt: {provider: seed, claims: "
	     "[{name: admin, values: [\"true\"]}]}}}\n"
	     "        - {name: john, action: Allow, principal: {jwt: {provider: seed, claims: "
	     "[{name: name, values: [Alice, John Doe]}]}}}\n");
	/* admin: true is a boolean: Envoy's string matcher never matches it, so rule 1 decides */
	assert_int_equal(decide(fx.seed_jwt, &allow), 1);
	assert_true(allow);
	/* with-different-claim.jwt: name "Tom": no rule, defaultAction Deny */
	assert_int_equal(decide(fx.seed_claim_jwt, &allow), -1);
	assert_false(allow);
	expect_rbac_deny();
	/* no token (optional): the jwt principals cannot match */
	assert_int_equal(decide(NULL, &allow), -1);
	assert_false(allow);
	expect_rbac_deny();
	assert_int_equal(t.d.reason, AUTH_REASON_MISSING);
}

/* valueType String / StringArray on nested objects, arrays, numbers, booleans, null. */
static void test_claim_value_types(void **state)
{
	JG_UNUSED(state);
	load(PROVIDERS
	     "    authorization:\n"
	     "      rules:\n"
	     "        - {action: Allow, principal: {jwt: {provider: k1, claims: [{name: user.roles, "
	     "valueType: StringArray, values: [ops, admin]}]}}}\n"
	     "        - {action: Allow, principal: {jwt: {provider: k1, claims: [{name: org.dept.name, "
	     "values: [eng]}]}}}\n"
	     "        - {action: Allow, principal: {jwt: {provider: k1, claims: [{name: level, "
	     "values: [\"5\"]}, {name: sub, values: [x]}]}}}\n"
	     "        - {action: Allow, principal: {jwt: {provider: k1, claims: [{name: flags, "
	     "valueType: StringArray, values: [\"true\", \"1\"]}]}}}\n");
	assert_int_equal(rule_for("{\"user\":{\"roles\":[\"dev\",\"admin\"]}}"), 0);
	assert_int_equal(rule_for("{\"user\":{\"roles\":[\"dev\",7,true,\"ops\"]}}"), 0);
	/* a string claim never matches StringArray, an array claim never matches String */
	assert_int_equal(rule_for("{\"user\":{\"roles\":\"admin\"}}"), -1);
	assert_int_equal(rule_for("{\"org\":{\"dept\":{\"name\":[\"eng\"]}}}"), -1);
	assert_int_equal(rule_for("{\"org\":{\"dept\":{\"name\":\"eng\"}}}"), 1);
	/* exact and case-sensitive; a path through a non-object, a missing one */
	assert_int_equal(rule_for("{\"org\":{\"dept\":{\"name\":\"Eng\"}}}"), -1);
	assert_int_equal(rule_for("{\"org\":{\"dept\":\"eng\"}}"), -1);
	assert_int_equal(rule_for("{\"org.dept.name\":\"eng\"}"), -1);
	/* numbers and booleans never match string values (Envoy's metadata StringMatcher) */
	assert_int_equal(rule_for("{\"level\":5,\"sub\":\"x\"}"), -1);
	assert_int_equal(rule_for("{\"level\":\"5\",\"sub\":\"x\"}"), 2);
	assert_int_equal(rule_for("{\"level\":\"5\",\"sub\":\"y\"}"), -1); /* claims are AND-ed */
	assert_int_equal(rule_for("{\"flags\":[true,1,null]}"), -1);
	assert_int_equal(rule_for("{\"flags\":[\"1\"]}"), 3);
	assert_int_equal(rule_for("{\"level\":null,\"flags\":{\"a\":\"true\"}}"), -1);
}

/* scope (space-separated or array) and scp (string or array); every listed scope must be granted. */
static void test_scopes(void **state)
{
	JG_UNUSED(state);
	load(PROVIDERS "    authorization:\n"
	               "      rules:\n"
	               "        - {action: Allow, principal: {jwt: {provider: k1, scopes: [read, write]}}}\n"
	               "        - {action: Allow, principal: {jwt: {provider: k1, scopes: [read]}}}\n");
	assert_int_equal(rule_for("{\"scope\":\"openid write  read\"}"), 0);
	assert_int_equal(rule_for("{\"scope\":\"read\"}"), 1);
	assert_int_equal(rule_for("{\"scope\":\"reader writer\"}"), -1);
	assert_int_equal(rule_for("{\"scope\":[\"read\",\"write\"]}"), 0);
	assert_int_equal(rule_for("{\"scp\":[\"write\",\"read\"]}"), 0);
	assert_int_equal(rule_for("{\"scp\":\"read write\"}"), 0);
	assert_int_equal(rule_for("{\"scp\":\"read\"}"), 1);
	assert_int_equal(rule_for("{\"scope\":\"write\",\"scp\":[\"read\"]}"), 0);
	assert_int_equal(rule_for("{\"scope\":5,\"scp\":true}"), -1);
	assert_int_equal(rule_for("{\"scopes\":\"read\"}"), -1);
}

/* The first matching rule decides, whatever rules follow; none: defaultAction. */
static void test_order_and_default(void **state)
{
	bool allow;
	char *banned = mint(false, "{\"sub\":\"mallory\",\"scope\":\"read\"}");
	char *reader = mint(false, "{\"sub\":\"alice\",\"scope\":\"read\"}");
	char *other = mint(false, "{\"sub\":\"bob\"}");

	JG_UNUSED(state);
	load(PROVIDERS
	     "    authorization:\n"
	     "      defaultAction: Allow\n"
	     "      rules:\n"
	     "        - {name: ban, action: Deny, principal: {jwt: {provider: k1, claims: [{name: sub, "
	     "values: [mallory]}]}}}\n"
	     "        - {name: readers, action: Allow, principal: {jwt: {provider: k1, scopes: "
	     "[read]}}}\n"
	     "        - {name: rest, action: Deny, principal: {jwt: {provider: k1, claims: [{name: sub, "
	     "values: [alice, bob, mallory]}]}}}\n");
	assert_int_equal(decide(banned, &allow), 0);
	assert_false(allow);
	expect_rbac_deny();
	assert_int_equal(decide(reader, &allow), 1);
	assert_true(allow);
	assert_int_equal(decide(other, &allow), 2);
	assert_false(allow);
	assert_int_equal(decide(NULL, &allow), -1);
	assert_true(allow); /* defaultAction Allow */
	free(banned);
	free(reader);
	free(other);
}

/* A rule naming a provider matches only a token that provider verified. */
static void test_rule_provider(void **state)
{
	bool allow;
	char *by_k1 = mint(false, "{\"sub\":\"a\"}"), *by_k2 = mint(true, "{\"sub\":\"a\"}");

	JG_UNUSED(state);
	load(PROVIDERS
	     "    authorization:\n"
	     "      rules:\n"
	     "        - {action: Allow, principal: {jwt: {provider: k2, claims: [{name: sub, values: "
	     "[a]}]}}}\n");
	assert_int_equal(decide(by_k1, &allow), -1);
	assert_false(allow);
	assert_int_equal(decide(by_k2, &allow), 0);
	assert_true(allow);
	free(by_k1);
	free(by_k2);
}

/* Authentication answers first: an invalid token is 401, never the RBAC 403. */
static void test_authentication_first(void **state)
{
	char *tok = mint(false, "{\"sub\":\"a\",\"exp\":1}");

	JG_UNUSED(state);
	load(PROVIDERS "    authorization: {defaultAction: Allow}\n");
	req();
	bearer(tok);
	check();
	assert_int_equal(t.d.verdict, AUTH_DENY);
	assert_int_equal(t.d.http_status, 401);
	assert_string_equal(t.d.message, "Jwt is expired");
	assert_false(t.d.authz_denied);
	free(tok);
}

/* headers: all fields of the name joined with ","; methods case-insensitively; all principals AND. */
static void test_headers_methods(void **state)
{
	JG_UNUSED(state);
	load("    authorization:\n"
	     "      rules:\n"
	     "        - {action: Allow, principal: {headers: [{name: X-Team, values: [blue, \"red,green\"]}, "
	     "{name: x-env, values: [prod]}]}, operation: {methods: [GET, DELETE]}}\n");
	req();
	hdr("x-team", "blue");
	hdr("X-Env", "prod");
	check();
	expect_allow();
	assert_int_equal(t.d.authz_rule, 0);
	assert_int_equal(t.d.reason, AUTH_REASON_NONE); /* no jwt block: nothing authenticated */
	req_m("delete");
	hdr("x-team", "red");
	hdr("x-team", "green");
	hdr("x-env", "prod");
	check();
	expect_allow();
	req_m("POST"); /* method not listed */
	hdr("x-team", "blue");
	hdr("x-env", "prod");
	check();
	expect_rbac_deny();
	req(); /* joined "blue,red" is neither value */
	hdr("x-team", "blue");
	hdr("x-team", "red");
	hdr("x-env", "prod");
	check();
	expect_rbac_deny();
	req(); /* values are exact */
	hdr("x-team", "Blue");
	hdr("x-env", "prod");
	check();
	expect_rbac_deny();
	req(); /* a header missing */
	hdr("x-team", "blue");
	check();
	expect_rbac_deny();
}

static bool in(const char *cidr_yaml_ip, unsigned prefix, const char *peer)
{
	struct config_cidr c;
	struct sockaddr_storage ss;

	memset(&c, 0, sizeof(c));
	c.family = strchr(cidr_yaml_ip, ':') ? AF_INET6 : AF_INET;
	c.prefix = prefix;
	assert_int_equal(inet_pton(c.family, cidr_yaml_ip, c.net), 1);
	memcpy(&ss, &t.peer, sizeof(ss));
	set_peer(peer);
	{
		bool r = authz_cidr_contains(&c, (const struct sockaddr *)&t.peer);

		memcpy(&t.peer, &ss, sizeof(ss));
		return r;
	}
}

static void test_cidr_edges(void **state)
{
	bool allow;

	JG_UNUSED(state);
	assert_true(in("0.0.0.0", 0, "255.255.255.255"));
	assert_false(in("0.0.0.0", 0, "::1"));
	assert_true(in("::", 0, "::1"));
	assert_true(in("::", 0, "::ffff:10.0.0.1")); /* a v6 range sees the mapped address as v6 */
	assert_true(in("10.0.0.1", 32, "10.0.0.1"));
	assert_false(in("10.0.0.1", 32, "10.0.0.2"));
	assert_true(in("10.0.0.128", 25, "10.0.0.255"));
	assert_true(in("10.0.0.128", 25, "10.0.0.128"));
	assert_false(in("10.0.0.128", 25, "10.0.0.127"));
	assert_true(in("192.168.0.0", 15, "192.169.255.255"));
	assert_false(in("192.168.0.0", 15, "192.170.0.0"));
	assert_true(in("10.0.0.0", 8, "::ffff:10.9.9.9")); /* dual-stack listener */
	assert_false(in("10.0.0.0", 8, "::10.9.9.9"));     /* not mapped */
	assert_false(in("10.0.0.0", 8, "fe80::a09:909"));
	assert_true(in("2001:db8::", 32, "2001:db8:ffff::1"));
	assert_false(in("2001:db8::", 32, "2001:db9::"));
	assert_true(in("2001:db8::1", 128, "2001:db8::1"));
	assert_false(in("2001:db8::1", 128, "2001:db8::2"));
	assert_true(in("2001:db8::", 33, "2001:db8:7fff::"));
	assert_false(in("2001:db8::", 33, "2001:db8:8000::"));

	/* through the config: host bits cleared, the first rule that contains the peer decides */
	load("    authorization:\n"
	     "      rules:\n"
	     "        - {name: lan-but-one, action: Deny, principal: {clientCIDRs: [192.0.2.10/32]}}\n"
	     "        - {name: lan, action: Allow, principal: {clientCIDRs: [192.0.2.77/24, "
	     "\"2001:db8::/32\"]}}\n");
	req();
	check();
	expect_rbac_deny();
	assert_int_equal(t.d.authz_rule, 0);
	req();
	set_peer("192.0.2.11");
	check();
	expect_allow();
	assert_int_equal(t.d.authz_rule, 1);
	req();
	set_peer("2001:db8::5");
	check();
	expect_allow();
	req();
	set_peer("192.0.3.1");
	check();
	expect_rbac_deny();
	assert_int_equal(t.d.authz_rule, -1);
	req();
	t.req.peer = NULL; /* no address known: no range contains it */
	check();
	expect_rbac_deny();
	JG_UNUSED(allow);
}

/* The verified token's rule bits live in its cache entry: a hit reads no claim. */
static void test_cached_bits(void **state)
{
	char *tok = mint(false, "{\"sub\":\"a\",\"scope\":\"read\"}");
	const struct token_cache_entry *e;
	struct token_cache *tc;
	bool allow;

	JG_UNUSED(state);
	load(PROVIDERS "    authorization:\n"
	               "      rules:\n"
	               "        - {action: Deny, principal: {jwt: {provider: k1, scopes: [write]}}}\n"
	               "        - {action: Allow, principal: {jwt: {provider: k1, scopes: [read]}}}\n");
	assert_int_equal(decide(tok, &allow), 1);
	/* the worker's cache: struct auth_worker starts {shared, keys, cache} (auth.c) */
	tc = *(struct token_cache **)((char *)t.worker + 2 * sizeof(void *));
	assert_int_equal(token_cache_count(tc), 1);
	e = token_cache_get(tc, t.cfg->policies[0].providers[1].index, 1, tok, strlen(tok));
	assert_non_null(e);
	assert_int_equal(e->n_authz_words, 1);
	assert_int_equal(e->authz_bits[0], 2);
	free(tok);
}

#define T(f) cmocka_unit_test_setup_teardown(f, test_setup, test_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_seed_token_claims), T(test_claim_value_types), T(test_scopes),
	        T(test_order_and_default), T(test_rule_provider),     T(test_authentication_first),
	        T(test_headers_methods),   T(test_cidr_edges),        T(test_cached_bits),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
