/* test_auth.c: the JWT stage (auth_check) on requests built by hand, against configs loaded with
 * config_load: the answers of reference/jwt-behaviour.md (status, gRPC status, message,
 * invalid_token), extraction, optional / failOpen, several providers and several tokens
 * (security.md section 2 row 24), claim headers (row 25 included), forwarding, the verified-token
 * cache (exp re-checked on a hit, key rotation), remote JWKS without keys, WWW-Authenticate.
 * Tokens are minted here with OpenSSL (jwt_testutil.h); the seed files come from tests/data. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth_fixture.h"
#include "jwt_testutil.h"
#include "core/arena.h"
#include "jwt/auth.h"
#include "config/config.h"
#include "jwt/jwk.h"
#include "core/log.h"
#include "core/request.h"

#define NOW 1700000000

#define MSG_MISSING    "Jwt is missing"
#define MSG_BAD_FORMAT "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
#define MSG_AUDIENCE   "Audiences in Jwt are not allowed"
#define MSG_EXPIRED    "Jwt is expired"
#define MSG_VERIFY     "Jwt verification fails"
#define MSG_KID        "Jwks doesn't have key to match kid or alg from Jwt"
#define MSG_MULTIPLE   "Found multiple Jwt tokens"
#define MSG_FETCH      "Jwks remote fetch is failed"

/* Config head: one listener, one backend, routes r0..r5; tests append securityPolicies. The JWKS
 * files sit next to the config (k1.json: RSA kid k1; k2.json: EC P-256 kid k2; seed.json: the
 * task's jwks.json). */
#define CFG_HEAD                                                                                             \
	"listeners: [{name: http, address: \"127.0.0.1:18080\"}]\n"                                          \
	"backends: [{name: be, endpoints: [{ip: {address: 127.0.0.1, port: 3000}}]}]\n"                      \
	"httpRoutes:\n"                                                                                      \
	"  - {name: r0, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"  - {name: r1, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"  - {name: r2, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"  - {name: r3, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"  - {name: r4, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"  - {name: r5, rules: [{backendRefs: [{name: be}]}]}\n"                                             \
	"securityPolicies:\n"

#define K1 "localJWKS: {type: File, file: k1.json}"
#define K2 "localJWKS: {type: File, file: k2.json}"

/* Loads CFG_HEAD + policies, builds the key sets and a worker with the config's cache size. */
static void load(const char *policies)
{
	afx_load(CFG_HEAD, policies);
}

static const struct config_policy *policy(const char *name)
{
	size_t i;

	for (i = 0; i < t.cfg->n_policies; i++)
		if (strcmp(t.cfg->policies[i].name, name) == 0)
			return &t.cfg->policies[i];
	fail_msg("no policy %s", name);
	return NULL;
}

/* Starts a new request GET target with Host www.example.com (the arena is reset). */
static void req(const char *target)
{
	arena_reset(&t.arena);
	request_init(&t.req, &t.arena);
	t.req.method = arena_strndup(&t.arena, "GET", 3);
	t.req.method_len = 3;
	t.req.target = arena_strndup(&t.arena, target, strlen(target));
	t.req.target_len = strlen(target);
	t.req.authority = arena_strndup(&t.arena, "www.example.com", 15);
	t.req.authority_len = 15;
	assert_int_equal(request_header_add(&t.req, "host", 4, "www.example.com", 15), 0);
}

static void hdr(const char *name, const char *value)
{
	assert_int_equal(request_header_add(&t.req, name, strlen(name), value, strlen(value)), 0);
}

static void bearer(const char *token)
{
	char *v = tu_fmt("Bearer %s", token);

	hdr("Authorization", v);
	free(v);
}

/* Finishes the head and runs the named policy at `now`. */
static const struct auth_decision *check_at(const char *pol, int64_t now)
{
	assert_int_equal(request_finish_head(&t.req), 0);
	auth_check(t.worker, policy(pol), &t.req, now, &t.d);
	return &t.d;
}

static const struct auth_decision *check(const char *pol)
{
	return check_at(pol, NOW);
}

/* Number of live (not removed) headers named `name`; *value gets the first one. */
static size_t live(const char *name, const char **value)
{
	size_t i, n = 0;

	if (value != NULL)
		*value = NULL;
	for (i = 0; i < t.req.n_headers; i++) {
		const struct request_header *h = &t.req.headers[i];

		if (h->removed || strcasecmp(h->name, name) != 0)
			continue;
		if (n++ == 0 && value != NULL)
			*value = h->value;
	}
	return n;
}

static void assert_header(const char *name, const char *want)
{
	const char *v;

	if (live(name, &v) != 1)
		fail_msg("expected exactly one %s header, found %zu", name, live(name, NULL));
	assert_string_equal(v, want);
}

static void assert_allow(const struct auth_decision *d)
{
	if (d->verdict != AUTH_ALLOW)
		fail_msg("expected ALLOW, got DENY %d \"%s\"", d->http_status,
		         d->message ? d->message : "(null)");
}

/* A denial with everything the client sees. */
static void assert_deny(const struct auth_decision *d, int http, int grpc, const char *msg,
                        bool invalid_token)
{
	if (d->verdict != AUTH_DENY)
		fail_msg("expected DENY \"%s\", got ALLOW", msg);
	assert_int_equal(d->http_status, http);
	assert_int_equal(d->grpc_status, grpc);
	assert_non_null(d->message);
	assert_string_equal(d->message, msg);
	assert_int_equal(d->invalid_token, invalid_token);
}

/* Tokens: RSA kid k1 (RS256) and EC kid k2 (ES256). Payloads are JSON texts. */
static char *tok1(const char *payload)
{
	return tu_mint(fx.rsa, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k1\"}", payload);
}

static char *tok2(const char *payload)
{
	return tu_mint(fx.ec, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"k2\"}", payload);
}

#define PAYLOAD_OK "{\"sub\":\"alice\",\"iat\":1699990000,\"exp\":1700003600}"

/* ---- the seed scenario and the basic answers ---- */

static const char *seed_policy =
        "  - name: p\n"
        "    targetRef: {kind: HTTPRoute, name: r0}\n"
        "    jwt: {providers: [{name: example, localJWKS: {type: File, file: seed.json}}]}\n";

static void test_missing_token_401(void **state)
{
	JG_UNUSED(state);
	load(seed_policy);
	req("/foo");
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	assert_int_equal(t.d.jwt_status, 1);
	/* an Authorization header with another scheme carries no bearer token */
	req("/foo");
	hdr("Authorization", "Basic dXNlcjpwYXNz");
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
}

static void test_seed_tokens_allowed(void **state)
{
	JG_UNUSED(state);
	load(seed_policy);
	req("/foo");
	bearer(fx.seed_jwt);
	assert_allow(check("p"));
	req("/foo");
	bearer(fx.seed_claim_jwt);
	assert_allow(check("p"));
	/* the token is forwarded by default */
	assert_int_equal(live("authorization", NULL), 1);
}

static void test_garbage_token_bad_format(void **state)
{
	JG_UNUSED(state);
	load(seed_policy);
	req("/foo");
	bearer("garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	assert_int_equal(t.d.jwt_status, 4);
}

static void test_seed_token_tampered_fails(void **state)
{
	char *bad = tu_fmt("%s", fx.seed_jwt);
	char *sig = strrchr(bad, '.') + 1;

	JG_UNUSED(state);
	sig[3] = sig[3] == 'A' ? 'B' : 'A';
	load(seed_policy);
	req("/foo");
	bearer(bad);
	assert_deny(check("p"), 401, 16, MSG_VERIFY, true);
	free(bad);
}

static void test_audience_mismatch_403(void **state)
{
	char *tk = tok1("{\"sub\":\"a\",\"aud\":\"other.example.com\",\"exp\":1700003600}");
	char *ok = tok1("{\"sub\":\"a\",\"aud\":[\"x\",\"https://api.example.com/\"],\"exp\":1700003600}");

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, audiences: [api.example.com], " K1 "}]}\n");
	req("/foo");
	bearer(tk);
	assert_deny(check("p"), 403, 7, MSG_AUDIENCE, true);
	assert_int_equal(t.d.jwt_status, 25);
	req("/foo");
	bearer(ok);
	assert_allow(check("p"));
	free(tk);
	free(ok);
}

static void test_expired_token(void **state)
{
	char *tk = tok1("{\"sub\":\"a\",\"exp\":1699990000}");

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	req("/foo");
	bearer(tk);
	assert_deny(check("p"), 401, 16, MSG_EXPIRED, true);
	free(tk);
}

/* ---- optional and failOpen ---- */

static void test_optional(void **state)
{
	char *tk = tok1(PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {optional: true, providers: [{name: a, " K1
	     ", claimToHeaders: [{header: x-sub, claim: sub}]}]}\n");
	req("/foo");
	assert_allow(check("p"));
	assert_int_equal(live("x-sub", NULL), 0);
	req("/foo");
	bearer("bm90.e30.c2ln"); /* header "not" */
	assert_deny(check("p"), 401, 16, "Jwt header is an invalid JSON", true);
	req("/foo");
	bearer(tk);
	assert_allow(check("p"));
	assert_header("x-sub", "alice");
	free(tk);
}

static void test_fail_open(void **state)
{
	char *tk = tok1(PAYLOAD_OK);
	char *expired = tok1("{\"sub\":\"bob\",\"exp\":1699990000}");

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {failOpen: true, providers: [{name: a, " K1
	     ", claimToHeaders: [{header: x-sub, claim: sub}]}]}\n");
	req("/foo");
	assert_allow(check("p"));
	req("/foo");
	bearer("garbage");
	assert_allow(check("p"));
	/* an invalid token passes, but its claims are never used */
	req("/foo");
	bearer(expired);
	assert_allow(check("p"));
	assert_int_equal(live("x-sub", NULL), 0);
	/* a valid token is still verified and its claims used */
	req("/foo");
	bearer(tk);
	assert_allow(check("p"));
	assert_header("x-sub", "alice");
	free(tk);
	free(expired);
}

/* ---- several providers ---- */

static void test_second_provider_accepts(void **state)
{
	char *t1 = tok1(PAYLOAD_OK), *t2 = tok2("{\"sub\":\"carol\",\"exp\":1700003600}");
	char *t3 = tu_mint(fx.ec, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"nope\"}", PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      providers:\n"
	     "        - {name: one, " K1 ", claimToHeaders: [{header: x-one, claim: sub}]}\n"
	     "        - {name: two, " K2 ", claimToHeaders: [{header: x-two, claim: sub}]}\n");
	req("/foo");
	bearer(t2);
	assert_allow(check("p"));
	/* only the provider that accepted adds its claim headers */
	assert_header("x-two", "carol");
	assert_int_equal(live("x-one", NULL), 0);
	req("/foo");
	bearer(t1);
	assert_allow(check("p"));
	assert_header("x-one", "alice");
	assert_int_equal(live("x-two", NULL), 0);
	/* neither accepts: a failure, not "missing" */
	req("/foo");
	bearer(t3);
	assert_deny(check("p"), 401, 16, MSG_KID, true);
	free(t1);
	free(t2);
	free(t3);
}

/* The first provider finds no token in its place; the second finds one and rejects it: the
 * answer is the second provider's failure, not "missing". */
static void test_provider_failure_beats_missing(void **state)
{
	char *expired = tok2("{\"sub\":\"x\",\"exp\":1699990000}");

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      providers:\n"
	     "        - {name: one, " K1 ", extractFrom: {headers: [{name: x-one-token}]}}\n"
	     "        - {name: two, " K2 "}\n");
	req("/foo");
	bearer(expired);
	assert_deny(check("p"), 401, 16, MSG_EXPIRED, true);
	req("/foo");
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	free(expired);
}

/* ---- security.md section 2 row 24: several tokens, all must be valid ---- */

static void test_two_authorization_headers_one_bad(void **state)
{
	char *good = tok1(PAYLOAD_OK), *good2 = tok1("{\"sub\":\"dave\",\"exp\":1700003600}");

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	req("/foo");
	bearer(good);
	bearer("garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	/* the same in the other order (the bad one is not hidden by the good one being cached) */
	req("/foo");
	bearer("garbage");
	bearer(good);
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	req("/foo");
	bearer(good);
	bearer(good2);
	assert_allow(check("p"));
	free(good);
	free(good2);
}

static void test_header_plus_query_param(void **state)
{
	char *good = tok1(PAYLOAD_OK), *expired = tok1("{\"sub\":\"x\",\"exp\":1699990000}");
	char *target;

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	/* valid header, invalid parameter */
	target = tu_fmt("/foo?x=1&access_token=%s", expired);
	req(target);
	bearer(good);
	assert_deny(check("p"), 401, 16, MSG_EXPIRED, true);
	free(target);
	/* invalid header, valid parameter */
	target = tu_fmt("/foo?access_token=%s", good);
	req(target);
	bearer("garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	/* the parameter alone is the default extraction's second place */
	req(target);
	assert_allow(check("p"));
	free(target);
	/* both valid */
	target = tu_fmt("/foo?access_token=%s", good);
	req(target);
	bearer(good);
	assert_allow(check("p"));
	free(target);
	free(good);
	free(expired);
}

static void test_more_than_eight_tokens(void **state)
{
	char *good = tok1(PAYLOAD_OK);
	int i;

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	req("/foo");
	for (i = 0; i < 8; i++)
		bearer(good);
	assert_allow(check("p"));
	req("/foo");
	for (i = 0; i < 9; i++)
		bearer(good);
	assert_deny(check("p"), 401, 16, MSG_MULTIPLE, true);
	assert_int_equal(t.d.jwt_status, 27);
	free(good);
}

/* ---- security.md section 2 row 25: claim values that are not header values ---- */

static void test_claim_crlf_not_copied(void **state)
{
	char *crlf = tok1(
	        "{\"sub\":\"a\\r\\nX-Admin: 1\",\"org\":\"x\\ny\",\"nul\":\"a\\u0000b\",\"exp\":1700003600}");
	size_t i;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      providers:\n"
	     "        - name: a\n"
	     "          " K1 "\n"
	     "          claimToHeaders: [{header: x-sub, claim: sub}, {header: x-org, claim: org}, "
	     "{header: x-nul, claim: nul}]\n");
	req("/foo");
	bearer(crlf);
	check("p");
	/* either the request is refused or the value is not copied; never a header with CR/LF/NUL */
	if (t.d.verdict == AUTH_ALLOW) {
		assert_int_equal(live("x-sub", NULL), 0);
		assert_int_equal(live("x-org", NULL), 0);
		assert_int_equal(live("x-nul", NULL), 0);
	}
	assert_int_equal(live("x-admin", NULL), 0);
	for (i = 0; i < t.req.n_headers; i++) {
		const struct request_header *h = &t.req.headers[i];

		assert_int_equal(strlen(h->value), h->value_len);
		assert_null(memchr(h->value, '\r', h->value_len));
		assert_null(memchr(h->value, '\n', h->value_len));
		assert_null(strpbrk(h->name, "\r\n: "));
	}
	free(crlf);
}

/* ---- extraction ---- */

static void test_extract_header_with_prefix(void **state)
{
	char *good = tok1(PAYLOAD_OK), *v;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1
	     ", extractFrom: {headers: [{name: X-Token, valuePrefix: \"Token \"}]}}]}\n");
	req("/foo");
	v = tu_fmt("Token %s", good);
	hdr("x-token", v);
	free(v);
	assert_allow(check("p"));
	/* the default places are not used once extractFrom is given */
	req("/foo");
	bearer(good);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	v = tu_fmt("/foo?access_token=%s", good);
	req(v);
	free(v);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	/* without the prefix the header holds no token */
	req("/foo");
	hdr("X-Token", good);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	free(good);
}

static void test_extract_header_without_prefix(void **state)
{
	char *good = tok1(PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1 ", extractFrom: {headers: [{name: x-jwt}]}}]}\n");
	req("/foo");
	hdr("X-JWT", good);
	assert_allow(check("p"));
	free(good);
}

static void test_extract_cookie(void **state)
{
	char *good = tok1(PAYLOAD_OK), *v;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1 ", extractFrom: {cookies: [session_token]}}]}\n");
	req("/foo");
	v = tu_fmt("theme=dark; session_token=%s; lang=en", good);
	hdr("Cookie", v);
	free(v);
	assert_allow(check("p"));
	/* a cookie whose name only ends like the configured one is not it */
	req("/foo");
	v = tu_fmt("xsession_token=%s", good);
	hdr("Cookie", v);
	free(v);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	/* HTTP/2 sends each cookie in its own header: the token may be in any of them */
	req("/foo");
	hdr("Cookie", "theme=dark");
	v = tu_fmt("session_token=\"%s\"", good);
	hdr("Cookie", v);
	free(v);
	assert_allow(check("p"));
	/* a bad token in the cookie is rejected */
	req("/foo");
	hdr("Cookie", "session_token=garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	free(good);
}

static void test_extract_param(void **state)
{
	char *good = tok1(PAYLOAD_OK), *v;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1 ", extractFrom: {params: [tok]}}]}\n");
	v = tu_fmt("/foo?a=1&tok=%s&b=2", good);
	req(v);
	free(v);
	assert_allow(check("p"));
	v = tu_fmt("/foo?xtok=%s", good);
	req(v);
	free(v);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	req("/foo?tok=garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	free(good);
}

static void test_bearer_case_insensitive(void **state)
{
	char *good = tok1(PAYLOAD_OK), *v;
	const char *schemes[] = {"bearer", "BEARER", "BeArEr"};
	size_t i;

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	for (i = 0; i < 3; i++) {
		req("/foo");
		v = tu_fmt("%s %s", schemes[i], good);
		hdr("authorization", v);
		free(v);
		assert_allow(check("p"));
	}
	free(good);
}

/* ---- claim headers ---- */

static void test_client_claim_headers_removed(void **state)
{
	char *good = tok1(PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      optional: true\n"
	     "      providers:\n"
	     "        - {name: a, " K1 ", claimToHeaders: [{header: x-sub, claim: sub}, "
	     "{header: x-role, claim: role}], forwardPayloadHeader: x-jwt-payload}\n"
	     "  - name: strict\n"
	     "    targetRef: {kind: HTTPRoute, name: r1}\n"
	     "    jwt: {providers: [{name: b, " K1 ", claimToHeaders: [{header: x-sub, claim: sub}]}]}\n");
	/* no token on an optional policy: the request passes without the client's claim headers */
	req("/foo");
	hdr("X-Sub", "admin");
	hdr("x-sub", "root");
	hdr("X-Role", "admin");
	hdr("X-Jwt-Payload", "eyJzdWIiOiJhZG1pbiJ9");
	hdr("X-Other", "kept");
	assert_allow(check("p"));
	assert_int_equal(live("x-sub", NULL), 0);
	assert_int_equal(live("x-role", NULL), 0);
	assert_int_equal(live("x-jwt-payload", NULL), 0);
	assert_header("x-other", "kept");
	/* with a valid token: only the token's value; the token has no role claim, so no x-role */
	req("/foo");
	hdr("X-Sub", "admin");
	hdr("X-Role", "admin");
	bearer(good);
	assert_allow(check("p"));
	assert_header("x-sub", "alice");
	assert_int_equal(live("x-role", NULL), 0);
	/* denied requests lose them too (nothing of the client's claim survives the stage) */
	req("/foo");
	hdr("X-Sub", "admin");
	assert_deny(check("strict"), 401, 16, MSG_MISSING, false);
	assert_int_equal(live("x-sub", NULL), 0);
	free(good);
}

static void test_claim_to_headers_types(void **state)
{
	char *good = tok1(
	        "{\"sub\":\"alice\",\"exp\":1700003600,\"org\":{\"name\":\"acme\",\"dept\":{\"id\":7}},"
	        "\"n\":42,\"neg\":-3,\"ratio\":1.5,\"admin\":true,\"guest\":false,\"roles\":[\"a\",\"b\"],"
	        "\"obj\":{\"k\":\"v\",\"i\":1},\"nothing\":null,\"dotted.name\":\"flat\"}");
	char *roles = tu_b64s("[\"a\",\"b\"]"), *obj = tu_b64s("{\"k\":\"v\",\"i\":1}");

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      providers:\n"
	     "        - name: a\n"
	     "          " K1 "\n"
	     "          claimToHeaders:\n"
	     "            - {header: x-sub, claim: sub}\n"
	     "            - {header: x-org, claim: org.name}\n"
	     "            - {header: x-dept, claim: org.dept.id}\n"
	     "            - {header: x-n, claim: n}\n"
	     "            - {header: x-neg, claim: neg}\n"
	     "            - {header: x-ratio, claim: ratio}\n"
	     "            - {header: x-admin, claim: admin}\n"
	     "            - {header: x-guest, claim: guest}\n"
	     "            - {header: x-roles, claim: roles}\n"
	     "            - {header: x-obj, claim: obj}\n"
	     "            - {header: x-missing, claim: org.nope}\n"
	     "            - {header: x-deep, claim: sub.more}\n"
	     "            - {header: x-null, claim: nothing}\n");
	req("/foo");
	bearer(good);
	assert_allow(check("p"));
	assert_header("x-sub", "alice");
	assert_header("x-org", "acme");
	assert_header("x-dept", "7");
	assert_header("x-n", "42");
	assert_header("x-neg", "-3");
	assert_header("x-ratio", "1.5");
	assert_header("x-admin", "true");
	assert_header("x-guest", "false");
	assert_header("x-roles", roles);
	assert_header("x-obj", obj);
	assert_int_equal(live("x-missing", NULL), 0);
	assert_int_equal(live("x-deep", NULL), 0);
	assert_int_equal(live("x-null", NULL), 0);
	/* a second request with the same token (a cache hit) gets the same headers */
	req("/foo");
	bearer(good);
	assert_allow(check("p"));
	assert_header("x-org", "acme");
	assert_header("x-roles", roles);
	free(good);
	free(roles);
	free(obj);
}

static void test_forward_payload_header(void **state)
{
	char *good = tok1(PAYLOAD_OK);
	char *seg, *dot;

	JG_UNUSED(state);
	seg = tu_fmt("%s", strchr(good, '.') + 1);
	dot = strchr(seg, '.');
	*dot = '\0';
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1 ", forwardPayloadHeader: X-Jwt-Payload}]}\n");
	req("/foo");
	bearer(good);
	assert_allow(check("p"));
	assert_header("x-jwt-payload", seg);
	/* from the cache as well */
	req("/foo");
	bearer(good);
	assert_allow(check("p"));
	assert_header("x-jwt-payload", seg);
	free(seg);
	free(good);
}

static void test_forward_false_removes_token_header(void **state)
{
	char *good = tok1(PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: keep\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: a, " K1 "}]}\n"
	     "  - name: drop\n"
	     "    targetRef: {kind: HTTPRoute, name: r1}\n"
	     "    jwt: {providers: [{name: b, " K1
	     ", forward: false, extractFrom: {headers: [{name: Authorization, "
	     "valuePrefix: \"Bearer \"}, {name: x-tok}]}}]}\n");
	req("/foo");
	bearer(good);
	hdr("X-Other", "1");
	assert_allow(check("keep"));
	assert_int_equal(live("authorization", NULL), 1);
	req("/foo");
	bearer(good);
	hdr("x-tok", good);
	hdr("X-Other", "1");
	assert_allow(check("drop"));
	assert_int_equal(live("authorization", NULL), 0);
	assert_int_equal(live("x-tok", NULL), 0);
	assert_header("x-other", "1");
	free(good);
}

/* ---- the verified-token cache ---- */

static void test_cache_hit_rechecks_exp(void **state)
{
	char *tk = tok1("{\"sub\":\"a\",\"iat\":1700000000,\"exp\":1700003600}");
	char *nbf = tok1("{\"sub\":\"a\",\"nbf\":1700000600,\"exp\":1700007200}");

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	req("/foo");
	bearer(tk);
	assert_allow(check_at("p", NOW));
	req("/foo");
	bearer(tk);
	assert_allow(check_at("p", NOW + 1800));
	req("/foo");
	bearer(tk);
	assert_deny(check_at("p", NOW + 7200), 401, 16, MSG_EXPIRED, true);
	/* the skew still applies on a hit: exp + 60 s is the last valid second */
	req("/foo");
	bearer(tk);
	assert_allow(check_at("p", NOW + 3600 + 60));
	req("/foo");
	bearer(tk);
	assert_deny(check_at("p", NOW + 3600 + 61), 401, 16, MSG_EXPIRED, true);
	/* nbf: valid later, cached, and a hit at an earlier time is refused */
	req("/foo");
	bearer(nbf);
	assert_allow(check_at("p", NOW + 1000));
	req("/foo");
	bearer(nbf);
	assert_deny(check_at("p", NOW), 401, 16, "Jwt not yet valid", true);
	free(tk);
	free(nbf);
}

/* The same, with the cache disabled (tokenCache size 0): every check verifies. */
static void test_cache_disabled_same_answers(void **state)
{
	char *tk = tok1("{\"sub\":\"a\",\"exp\":1700003600}");

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1 ", "
	     "claimToHeaders: [{header: x-sub, claim: sub}]}]}}\n"
	     "tokenCache: {size: 0}\n");
	assert_int_equal(t.cfg->token_cache_size, 0);
	req("/foo");
	bearer(tk);
	assert_allow(check_at("p", NOW));
	req("/foo");
	bearer(tk);
	assert_allow(check_at("p", NOW));
	assert_header("x-sub", "a");
	req("/foo");
	bearer(tk);
	assert_deny(check_at("p", NOW + 7200), 401, 16, MSG_EXPIRED, true);
	free(tk);
}

/* Rotating the key set invalidates what was verified with the old one. */
static void test_set_keys_invalidates_cache(void **state)
{
	char *tk = tok1(PAYLOAD_OK);
	int idx;

	JG_UNUSED(state);
	load("  - {name: p, targetRef: {kind: HTTPRoute, name: r0}, jwt: {providers: [{name: a, " K1
	     "}]}}\n");
	idx = policy("p")->providers[0].index;
	req("/foo");
	bearer(tk);
	assert_allow(check("p"));
	req("/foo");
	bearer(tk);
	assert_allow(check("p")); /* now cached */
	auth_shared_set_keys(t.shared, idx, tu_jwks(fx.k2_json));
	req("/foo");
	bearer(tk);
	assert_deny(check("p"), 401, 16, MSG_KID, true);
	/* keys withdrawn altogether */
	auth_shared_set_keys(t.shared, idx, NULL);
	req("/foo");
	bearer(tk);
	assert_deny(check("p"), 401, 16, MSG_FETCH, true);
	/* and back */
	auth_shared_set_keys(t.shared, idx, tu_jwks(fx.k1_json));
	req("/foo");
	bearer(tk);
	assert_allow(check("p"));
	free(tk);
}

static void test_remote_jwks_without_keys(void **state)
{
	char *tk = tok1(PAYLOAD_OK);
	int idx;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: remote, remoteJWKS: {uri: "
	     "\"https://keys.example.com/jwks.json\"}}]}\n");
	idx = policy("p")->providers[0].index;
	req("/foo");
	bearer(tk);
	assert_deny(check("p"), 401, 16, MSG_FETCH, true);
	assert_int_equal(t.d.jwt_status, 40);
	/* a missing token is still "missing" */
	req("/foo");
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	/* once keys arrive the same token passes */
	auth_shared_set_keys(t.shared, idx, tu_jwks(fx.k1_json));
	req("/foo");
	bearer(tk);
	assert_allow(check("p"));
	free(tk);
}

static int refetch_calls[8];

static void count_refetch(void *arg, int provider)
{
	JG_UNUSED(arg);
	assert_true(provider >= 0 && provider < 8);
	refetch_calls[provider]++;
}

/* A key set like the seed's jwks.json: its first key (RSA, no kid), then the key of `kid` (RSA, RS256). */
static struct jwks *kidless_plus(EVP_PKEY *key, const char *kid)
{
	char *seed = tu_read_data("envoy-gateway-jwt/jwks.json", NULL), *m = tu_jwk_members(key), *text;
	char *first_text;
	json_t *root = json_loads(seed, 0, NULL), *first;
	struct jwks *ks;

	assert_non_null(root);
	first = json_array_get(json_object_get(root, "keys"), 0);
	assert_non_null(first);
	assert_null(json_object_get(first, "kid"));
	first_text = json_dumps(first, JSON_COMPACT);
	text = tu_fmt("{\"keys\":[%s,{%s,\"kid\":\"%s\",\"alg\":\"RS256\"}]}", first_text, m, kid);
	ks = tu_jwks(text);
	assert_int_equal(ks->n_keys, 2);
	free(first_text);
	free(text);
	json_decref(root);
	free(m);
	free(seed);
	return ks;
}

/* issue 10 section 4: a token whose kid names no key of a remote set asks for a refetch even when the set
 * also has a key without a kid (tried, and failed): that key makes the answer "Jwt verification fails"
 * rather than JwksKidAlgMismatch, which alone used to trigger the refetch, so a rotated key was picked up
 * only at cacheDuration. The token's answer does not change; tokens that give no sign of a newer key
 * (no kid, or a kid the set has) never ask. */
static void test_refetch_on_unknown_kid_with_kidless_keys(void **state)
{
	EVP_PKEY *rotated = tu_keygen("RSA", "2048");
	char *t_k1 = tok1(PAYLOAD_OK);
	char *t_new = tu_mint(rotated, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"k3\"}", PAYLOAD_OK);
	char *t_k1_forged = tu_mint(rotated, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"k1\"}", PAYLOAD_OK);
	char *t_nokid = tu_mint(rotated, JWT_ALG_RS256, "{\"alg\":\"RS256\"}", PAYLOAD_OK);
	int idx, idx_local;

	JG_UNUSED(state);
	memset(refetch_calls, 0, sizeof(refetch_calls));
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: remote, remoteJWKS: {uri: "
	     "\"https://keys.example.com/jwks.json\"}}]}\n"
	     "  - {name: q, targetRef: {kind: HTTPRoute, name: r1}, jwt: {providers: [{name: l, "
	     "localJWKS: {type: File, file: seed.json}}]}}\n");
	idx = policy("p")->providers[0].index;
	idx_local = policy("q")->providers[0].index;
	auth_shared_set_refetch_hook(t.shared, count_refetch, NULL);
	auth_shared_set_keys(t.shared, idx, kidless_plus(fx.rsa, "k1"));

	/* kid k3 is in no key: same answer as before (the kid-less key was tried), and one refetch asked */
	req("/foo");
	bearer(t_new);
	assert_deny(check("p"), 401, 16, MSG_VERIFY, true);
	assert_int_equal(refetch_calls[idx], 1);
	/* no sign of a newer key: a known kid with a bad signature, no kid at all, a valid token */
	req("/foo");
	bearer(t_k1_forged);
	assert_deny(check("p"), 401, 16, MSG_VERIFY, true);
	req("/foo");
	bearer(t_nokid);
	assert_deny(check("p"), 401, 16, MSG_VERIFY, true);
	req("/foo");
	bearer(t_k1);
	assert_allow(check("p"));
	assert_int_equal(refetch_calls[idx], 1);
	/* a local JWKS has nothing to refetch */
	req("/foo");
	bearer(t_new);
	assert_deny(check("q"), 401, 16, MSG_VERIFY, true);
	assert_int_equal(refetch_calls[idx_local], 0);
	/* the refetch brings the rotated key: the same token passes */
	auth_shared_set_keys(t.shared, idx, kidless_plus(rotated, "k3"));
	req("/foo");
	bearer(t_new);
	assert_allow(check("p"));
	assert_int_equal(refetch_calls[idx], 1);
	auth_shared_set_refetch_hook(t.shared, NULL, NULL);
	EVP_PKEY_free(rotated);
	free(t_k1);
	free(t_new);
	free(t_k1_forged);
	free(t_nokid);
}

/* security.md section 2 row 24, second half: several tokens while the provider has no keys (Envoy
 * CVE-2025-64527 crashed here): a clean denial for every token count. */
static void test_several_tokens_while_jwks_fetch_failing(void **state)
{
	char *tk = tok1(PAYLOAD_OK), *target;
	int i;

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt: {providers: [{name: remote, remoteJWKS: {uri: "
	     "\"https://keys.example.com/jwks.json\"}, "
	     "claimToHeaders: [{header: x-sub, claim: sub}]}]}\n");
	target = tu_fmt("/foo?access_token=%s&access_token=garbage", tk);
	for (i = 0; i < 3; i++) {
		req(target);
		bearer(tk);
		bearer(tk);
		assert_deny(check("p"), 401, 16, MSG_FETCH, true);
		assert_int_equal(live("x-sub", NULL), 0);
	}
	req("/foo");
	for (i = 0; i < 9; i++)
		bearer(tk);
	assert_deny(check("p"), 401, 16, MSG_MULTIPLE, true);
	free(target);
	free(tk);
}

/* recomputeRoute is reported only when the provider that accepted asks for it. */
static void test_recompute_route_flag(void **state)
{
	char *t1 = tok1(PAYLOAD_OK), *t2 = tok2(PAYLOAD_OK);

	JG_UNUSED(state);
	load("  - name: p\n"
	     "    targetRef: {kind: HTTPRoute, name: r0}\n"
	     "    jwt:\n"
	     "      providers:\n"
	     "        - {name: one, " K1
	     ", claimToHeaders: [{header: x-sub, claim: sub}], recomputeRoute: true}\n"
	     "        - {name: two, " K2 ", claimToHeaders: [{header: x-sub, claim: sub}]}\n");
	req("/foo");
	bearer(t1);
	assert_allow(check("p"));
	assert_true(t.d.recompute_route);
	req("/foo");
	bearer(t2);
	assert_allow(check("p"));
	assert_false(t.d.recompute_route);
	free(t1);
	free(t2);
}

/* ---- WWW-Authenticate ---- */

static void test_www_authenticate(void **state)
{
	char buf[1024], want[1024], longpath[301];
	size_t n;

	JG_UNUSED(state);
	load(seed_policy);
	req("/foo?x=1");
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	n = auth_www_authenticate(&t.req, &t.d, buf, sizeof(buf));
	assert_string_equal(buf, "Bearer realm=\"http://www.example.com/foo?x=1\"");
	assert_int_equal(n, strlen(buf));
	req("/foo");
	bearer("garbage");
	assert_deny(check("p"), 401, 16, MSG_BAD_FORMAT, true);
	n = auth_www_authenticate(&t.req, &t.d, buf, sizeof(buf));
	assert_string_equal(buf, "Bearer realm=\"http://www.example.com/foo\", error=\"invalid_token\"");
	assert_int_equal(n, strlen(buf));
	/* the path is cut at 256 characters */
	longpath[0] = '/';
	memset(longpath + 1, 'p', 299);
	longpath[300] = '\0';
	req(longpath);
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	auth_www_authenticate(&t.req, &t.d, buf, sizeof(buf));
	snprintf(want, sizeof(want), "Bearer realm=\"http://www.example.com%.256s\"", longpath);
	assert_string_equal(buf, want);
	/* truncated at the buffer's size, always NUL-terminated */
	memset(buf, 'Z', sizeof(buf));
	n = auth_www_authenticate(&t.req, &t.d, buf, 16);
	assert_int_equal(n, 15);
	assert_int_equal(buf[15], '\0');
	assert_memory_equal(buf, "Bearer realm=\"h", 15);
	/* https scheme */
	req("/x");
	t.req.scheme = "https";
	assert_deny(check("p"), 401, 16, MSG_MISSING, false);
	auth_www_authenticate(&t.req, &t.d, buf, sizeof(buf));
	assert_string_equal(buf, "Bearer realm=\"https://www.example.com/x\"");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_missing_token_401, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_seed_tokens_allowed, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_garbage_token_bad_format, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_seed_token_tampered_fails, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_audience_mismatch_403, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_expired_token, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_optional, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_fail_open, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_second_provider_accepts, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_provider_failure_beats_missing, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_two_authorization_headers_one_bad, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_header_plus_query_param, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_more_than_eight_tokens, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_claim_crlf_not_copied, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_extract_header_with_prefix, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_extract_header_without_prefix, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_extract_cookie, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_extract_param, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_bearer_case_insensitive, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_client_claim_headers_removed, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_claim_to_headers_types, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_forward_payload_header, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_forward_false_removes_token_header, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_hit_rechecks_exp, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_cache_disabled_same_answers, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_set_keys_invalidates_cache, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_remote_jwks_without_keys, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_refetch_on_unknown_kid_with_kidless_keys, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_several_tokens_while_jwks_fetch_failing, test_setup,
	                                        test_teardown),
	        cmocka_unit_test_setup_teardown(test_recompute_route_flag, test_setup, test_teardown),
	        cmocka_unit_test_setup_teardown(test_www_authenticate, test_setup, test_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
