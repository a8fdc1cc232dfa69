/* test_jwt.c: the verifier against reference/security.md section 2 (one test per attack, exact status)
 * and the conformance tokens of Envoy Gateway's JWT task. Tokens are minted here with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jwt_testutil.h"
#include "jwtgate/jwt.h"

#define NOW       1700000000
#define HS_SECRET "0123456789abcdef0123456789abcdef" /* 32 bytes */

static struct {
	EVP_PKEY *rsa, *ec256, *ec384, *ec521, *ed, *attacker_ec;
	struct jwks
	        *keys; /* kid "rsa" (no alg), "rsa256" (alg RS256), "ec256", "ec384", "ec521", "ed", "hs" */
	char *rsa_members;
} fx;

static struct jwt_verify_params params_default(void)
{
	struct jwt_verify_params p = {0};

	p.clock_skew_s = 60;
	return p;
}

/* Asserts that two parses of the same token agree on everything the checks read. */
static void assert_same_reading(const struct jwt *a, const struct jwt *b)
{
	size_t i;

	assert_int_equal(a->alg, b->alg);
	assert_int_equal(a->kid != NULL, b->kid != NULL);
	if (a->kid != NULL) {
		assert_int_equal(a->kid_len, b->kid_len);
		assert_memory_equal(a->kid, b->kid, a->kid_len);
	}
	assert_int_equal(a->iss != NULL, b->iss != NULL);
	if (a->iss != NULL) {
		assert_int_equal(a->iss_len, b->iss_len);
		assert_memory_equal(a->iss, b->iss, a->iss_len);
	}
	assert_int_equal(a->n_aud, b->n_aud);
	for (i = 0; i < a->n_aud; i++) {
		assert_int_equal(a->aud[i].len, b->aud[i].len);
		assert_memory_equal(a->aud[i].s, b->aud[i].s, a->aud[i].len);
	}
	assert_int_equal(a->has_iat, b->has_iat);
	assert_int_equal(a->has_nbf, b->has_nbf);
	assert_int_equal(a->has_exp, b->has_exp);
	if (a->has_iat)
		assert_int_equal(a->iat, b->iat);
	if (a->has_nbf)
		assert_int_equal(a->nbf, b->nbf);
	if (a->has_exp)
		assert_int_equal(a->exp, b->exp);
	assert_int_equal(a->sig_len, b->sig_len);
}

/* Parses and verifies with fx.keys and the given params at NOW; returns the status. Every token of this
 * suite is also read by jansson alone (JWT_PARSE_JSON_ONLY), the reference for the in-place reading of
 * plain JSON (jsonscan.h): status and fields must agree. */
static enum jwt_status check_p(const struct jwt_verify_params *p, const struct jwks *keys, const char *token)
{
	struct jwt tok, ref;
	enum jwt_status st = jwt_check(p, keys, token, strlen(token), NOW, &tok);
	enum jwt_status ref_st = jwt_parse(&ref, token, strlen(token), p->max_token_len, JWT_PARSE_JSON_ONLY);

	if (ref_st == JWT_STATUS_OK)
		ref_st = jwt_verify(p, keys, &ref, NOW);
	assert_int_equal(st, ref_st);
	if (st == JWT_STATUS_OK)
		assert_same_reading(&tok, &ref);
	jwt_release(&ref);
	jwt_release(&tok);
	return st;
}

static enum jwt_status check(const char *token)
{
	struct jwt_verify_params p = params_default();

	return check_p(&p, fx.keys, token);
}

/* Mints with key and alg, with header {"alg":alg,"kid":kid}, and checks; frees the token. */
static enum jwt_status mint_check(EVP_PKEY *key, enum jwt_alg alg, const char *kid, const char *payload)
{
	char *h = kid ? tu_fmt("{\"alg\":\"%s\",\"kid\":\"%s\"}", jwt_alg_name(alg), kid)
	              : tu_fmt("{\"alg\":\"%s\"}", jwt_alg_name(alg));
	char *t = tu_mint(key, alg, h, payload);
	enum jwt_status st = check(t);

	free(h);
	free(t);
	return st;
}

static int setup(void **state)
{
	char *m[6], *text;

	(void)state;
	fx.rsa = tu_keygen("RSA", "2048");
	fx.ec256 = tu_keygen("EC", "P-256");
	fx.ec384 = tu_keygen("EC", "P-384");
	fx.ec521 = tu_keygen("EC", "P-521");
	fx.ed = tu_keygen("ED25519", NULL);
	fx.attacker_ec = tu_keygen("EC", "P-256");
	m[0] = tu_jwk_members(fx.rsa);
	m[1] = tu_jwk_members(fx.ec256);
	m[2] = tu_jwk_members(fx.ec384);
	m[3] = tu_jwk_members(fx.ec521);
	m[4] = tu_jwk_members(fx.ed);
	m[5] = tu_b64s(HS_SECRET);
	text = tu_fmt(
	        "{\"keys\":[{%s,\"kid\":\"rsa\"},{%s,\"kid\":\"rsa256\",\"alg\":\"RS256\"},"
	        "{%s,\"kid\":\"ec256\"},{%s,\"kid\":\"ec384\"},{%s,\"kid\":\"ec521\"},{%s,\"kid\":\"ed\"},"
	        "{\"kty\":\"oct\",\"k\":\"%s\",\"kid\":\"hs\"}]}",
	        m[0], m[0], m[1], m[2], m[3], m[4], m[5]);
	fx.keys = tu_jwks(text);
	assert_int_equal(fx.keys->n_keys, 7);
	fx.rsa_members = m[0];
	free(text);
	for (int i = 1; i < 6; i++)
		free(m[i]);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	jwks_unref(fx.keys);
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec256);
	EVP_PKEY_free(fx.ec384);
	EVP_PKEY_free(fx.ec521);
	EVP_PKEY_free(fx.ed);
	EVP_PKEY_free(fx.attacker_ec);
	free(fx.rsa_members);
	return 0;
}

/* Baseline: every supported algorithm verifies with the matching key. */
static void test_all_algorithms_verify(void **state)
{
	static const enum jwt_alg rsa_algs[] = {JWT_ALG_RS256, JWT_ALG_RS384, JWT_ALG_RS512,
	                                        JWT_ALG_PS256, JWT_ALG_PS384, JWT_ALG_PS512};
	size_t i;
	char *t;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(rsa_algs); i++)
		assert_int_equal(mint_check(fx.rsa, rsa_algs[i], "rsa", "{}"), JWT_STATUS_OK);
	assert_int_equal(mint_check(fx.ec256, JWT_ALG_ES256, "ec256", "{}"), JWT_STATUS_OK);
	assert_int_equal(mint_check(fx.ec384, JWT_ALG_ES384, "ec384", "{}"), JWT_STATUS_OK);
	assert_int_equal(mint_check(fx.ec521, JWT_ALG_ES512, "ec521", "{}"), JWT_STATUS_OK);
	assert_int_equal(mint_check(fx.ed, JWT_ALG_EDDSA, "ed", "{}"), JWT_STATUS_OK);
	/* No kid: every eligible key is tried in order. */
	assert_int_equal(mint_check(fx.ed, JWT_ALG_EDDSA, NULL, "{}"), JWT_STATUS_OK);
	t = tu_mint_hmac(HS_SECRET, 32, JWT_ALG_HS256, "{\"alg\":\"HS256\",\"kid\":\"hs\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_OK);
	free(t);
}

/* Row 1: alg none in any spelling. */
static void test_alg_none_variants(void **state)
{
	static const char *names[] = {"none", "None", "NONE", "nOnE", "rs256", "HS1", ""};
	size_t i;
	char *h, *t;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(names); i++) {
		h = tu_fmt("{\"alg\":\"%s\"}", names[i]);
		t = tu_token_raw(h, "{\"sub\":\"x\"}", NULL, 0);
		assert_int_equal(check(t), JWT_STATUS_HEADER_NOT_IMPLEMENTED_ALG);
		free(h);
		free(t);
	}
	t = tu_token_raw("{\"typ\":\"JWT\"}", "{}", NULL, 0);
	assert_int_equal(check(t), JWT_STATUS_HEADER_BAD_ALG);
	free(t);
	t = tu_token_raw("{\"alg\":null}", "{}", NULL, 0);
	assert_int_equal(check(t), JWT_STATUS_HEADER_BAD_ALG);
	free(t);
}

/* Row 2: signature stripped (empty third segment) or missing (two segments). */
static void test_signature_stripped(void **state)
{
	char *t = tu_mint(fx.rsa, JWT_ALG_RS256, "{\"alg\":\"RS256\"}", "{}");
	char *dot = strrchr(t, '.');

	(void)state;
	dot[1] = '\0';
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	dot[0] = '\0';
	assert_int_equal(check(t), JWT_STATUS_BAD_FORMAT);
	free(t);
}

/* Row 3: a token MACed with an empty secret never verifies; the empty key itself is refused at load. */
static void test_empty_hmac_secret(void **state)
{
	struct jwks *ks = NULL;
	char *t = tu_mint_hmac("", 0, JWT_ALG_HS256, "{\"alg\":\"HS256\"}", "{}");
	static const char empty[] = "{\"keys\":[{\"kty\":\"oct\",\"k\":\"\"}]}";

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	assert_int_equal(jwks_parse(empty, strlen(empty), "test", &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	assert_null(ks);
	free(t);
}

/* Row 4: RS -> HS confusion: the RSA public key (PEM and DER) used as an HMAC secret. */
static void test_rs_to_hs_confusion(void **state)
{
	uint8_t *der = NULL;
	int der_len = i2d_PUBKEY(fx.rsa, &der);
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem, *t;
	long pem_len;
	struct jwt_verify_params p = params_default();
	char *text = tu_fmt("{\"keys\":[{%s}]}", fx.rsa_members);
	struct jwks *only_rsa = tu_jwks(text);

	(void)state;
	assert_true(der_len > 0);
	assert_int_equal(PEM_write_bio_PUBKEY(bio, fx.rsa), 1);
	pem_len = BIO_get_mem_data(bio, &pem);
	t = tu_mint_hmac(pem, (size_t)pem_len, JWT_ALG_HS256, "{\"alg\":\"HS256\",\"kid\":\"rsa\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	assert_int_equal(check_p(&p, only_rsa, t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_mint_hmac(der, (size_t)der_len, JWT_ALG_HS256, "{\"alg\":\"HS256\"}", "{}");
	assert_int_equal(check_p(&p, only_rsa, t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	/* The key with alg RS256 is not even eligible for an HS256 token. */
	t = tu_mint_hmac(der, (size_t)der_len, JWT_ALG_HS256, "{\"alg\":\"HS256\",\"kid\":\"rsa256\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	free(t);
	OPENSSL_free(der);
	BIO_free(bio);
	jwks_unref(only_rsa);
	free(text);
}

/* Row 5: downgrade within a family: the key names RS256. */
static void test_downgrade_within_family(void **state)
{
	char *t;

	(void)state;
	assert_int_equal(mint_check(fx.rsa, JWT_ALG_RS512, "rsa256", "{}"), JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	assert_int_equal(mint_check(fx.rsa, JWT_ALG_PS256, "rsa256", "{}"), JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	assert_int_equal(mint_check(fx.rsa, JWT_ALG_RS256, "rsa256", "{}"), JWT_STATUS_OK);
	/* A PKCS#1 v1.5 signature presented as PS256 (and the reverse) fails on a key without alg. */
	t = tu_mint(fx.rsa, JWT_ALG_RS256, "{\"alg\":\"PS256\",\"kid\":\"rsa\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_mint(fx.rsa, JWT_ALG_PS256, "{\"alg\":\"RS256\",\"kid\":\"rsa\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	/* ES256 signature under an ES384 header for the P-256 key: not the curve's alg. */
	t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES384\",\"kid\":\"ec256\"}", "{}");
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
}

/* Row 6: an attacker key embedded in the header, with the kid of a trusted key. */
static void test_embedded_jwk_ignored(void **state)
{
	char *m = tu_jwk_members(fx.attacker_ec);
	char *h = tu_fmt("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"jwk\":{%s}}", m);
	char *t = tu_mint(fx.attacker_ec, JWT_ALG_ES256, h, "{}");

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	free(h);
	free(m);
}

/* Row 7: jku / x5u / x5c never fetched nor used: attacker-signed fails, trusted-signed passes. */
static void test_jku_x5u_ignored(void **state)
{
	static const char *h = "{\"alg\":\"ES256\",\"kid\":\"ec256\",\"jku\":\"http://127.0.0.1:1/jwks\","
	                       "\"x5u\":\"http://127.0.0.1:1/cert\",\"x5c\":[\"MIIB\"]}";
	char *t = tu_mint(fx.attacker_ec, JWT_ALG_ES256, h, "{}");

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_mint(fx.ec256, JWT_ALG_ES256, h, "{}");
	assert_int_equal(check(t), JWT_STATUS_OK);
	free(t);
}

/* Row 8: kid values are opaque strings: no key matches them, nothing else happens. */
static void test_kid_injection_opaque(void **state)
{
	static const char *kids[] = {"../../dev/null", "|sleep 10", "' OR '1'='1' --", "a\\r\\nX-Admin: 1",
	                             "/etc/passwd",    "%00",       "rsa\\u0001"};
	struct jwt_verify_params p = params_default();
	size_t i;
	char *big, *h, *t;

	(void)state;
	for (i = 0; i < JG_ARRAY_SIZE(kids); i++)
		assert_int_equal(mint_check(fx.ec256, JWT_ALG_ES256, kids[i], "{}"),
		                 JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	/* A NUL inside kid is refused by the JSON parser (no truncation to "rsa"). */
	assert_int_equal(mint_check(fx.rsa, JWT_ALG_RS256, "rsa\\u0000x", "{}"),
	                 JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON);
	/* 10 KB kid: over the default cap; with a larger cap, just an unknown kid. */
	big = malloc(10241);
	memset(big, 'k', 10240);
	big[10240] = '\0';
	h = tu_fmt("{\"alg\":\"ES256\",\"kid\":\"%s\"}", big);
	t = tu_mint(fx.ec256, JWT_ALG_ES256, h, "{}");
	assert_int_equal(check(t), JWT_STATUS_BAD_FORMAT);
	p.max_token_len = 32768;
	assert_int_equal(check_p(&p, fx.keys, t), JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	free(t);
	free(h);
	free(big);
}

/* Builds an ES256 token whose raw signature is r || s (32 bytes each, big-endian hex). */
static char *es256_token_rs(const char *r_hex, const char *s_hex)
{
	size_t rl, sl;
	uint8_t *r = tu_unhex(r_hex, &rl), *s = tu_unhex(s_hex, &sl), sig[64];
	char *t;

	assert_int_equal(rl, 32);
	assert_int_equal(sl, 32);
	memcpy(sig, r, 32);
	memcpy(sig + 32, s, 32);
	t = tu_token_raw("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", "{}", sig, 64);
	free(r);
	free(s);
	return t;
}

/* Row 9: psychic signatures (CVE-2022-21449). */
static void test_psychic_signature(void **state)
{
	static const char *zero = "0000000000000000000000000000000000000000000000000000000000000000";
	static const char *n = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
	static const char *one = "0000000000000000000000000000000000000000000000000000000000000001";
	char *t;

	(void)state;
	t = es256_token_rs(zero, zero);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = es256_token_rs(n, n);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = es256_token_rs(n, one);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = es256_token_rs(one, n);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
}

/* Row 14: crit, even on a correctly signed token. */
static void test_crit_rejected(void **state)
{
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256,
	                  "{\"alg\":\"ES256\",\"crit\":[\"x-unknown\"],\"x-unknown\":1}", "{}");

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"crit\":[]}", "{}");
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
}

/* Row 15: JWE (5 segments), nested, JSON serialization. */
static void test_jwe_and_json_serialization(void **state)
{
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", "{}");
	char *five = tu_fmt("%s.AAAA.BBBB", t);

	(void)state;
	assert_int_equal(check(five), JWT_STATUS_BAD_FORMAT);
	assert_int_equal(check("eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d"),
	                 JWT_STATUS_BAD_FORMAT);
	assert_int_equal(check("{\"payload\":\"e30\",\"signatures\":[{\"protected\":\"eyJhbGciOiJFUzI1NiJ9\","
	                       "\"signature\":\"AAAA\"}]}"),
	                 JWT_STATUS_BAD_FORMAT);
	assert_int_equal(check(""), JWT_STATUS_BAD_FORMAT);
	assert_int_equal(check(".."), JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON);
	free(five);
	free(t);
}

/* Row 16: huge token refused before decoding; deep nesting inside the cap is bad JSON, not a crash. */
static void test_huge_token(void **state)
{
	size_t n = 6 * 1024 * 1024, i;
	char *big = malloc(n + 1), *deep, *t;
	struct jwt_verify_params p = params_default();

	(void)state;
	memset(big, 'A', n);
	big[n] = '\0';
	big[100] = '.';
	big[200] = '.';
	assert_int_equal(check(big), JWT_STATUS_BAD_FORMAT);
	p.max_token_len = SIZE_MAX; /* clamped to JWT_MAX_TOKEN_LEN_LIMIT */
	assert_int_equal(check_p(&p, fx.keys, big), JWT_STATUS_BAD_FORMAT);
	free(big);
	deep = malloc(2 * 5000 + 32);
	strcpy(deep, "{\"a\":");
	for (i = 0; i < 5000; i++)
		strcat(deep + 5 + i, "[");
	for (i = 0; i < 5000; i++)
		deep[5 + 5000 + i] = ']';
	strcpy(deep + 10005, "}");
	t = tu_token_raw("{\"alg\":\"ES256\"}", deep, (const uint8_t *)"x", 1);
	p.max_token_len = 65536;
	assert_int_equal(check_p(&p, fx.keys, t), JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	free(t);
	free(deep);
}

/* Row 17: duplicate JSON members in header and payload. */
static void test_duplicate_json_keys(void **state)
{
	char *t = tu_token_raw("{\"alg\":\"none\",\"alg\":\"HS256\"}", "{}", NULL, 0);

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON);
	free(t);
	t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", "{\"sub\":\"a\",\"sub\":\"b\"}");
	assert_int_equal(check(t), JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	free(t);
}

/* Replaces the first occurrence of c in segment seg (0, 1, 2) of a copy of t with the string rep. */
static char *edit_segment(const char *t, int seg, const char *append)
{
	const char *d1 = strchr(t, '.'), *d2 = strchr(d1 + 1, '.');
	const char *end = seg == 0 ? d1 : seg == 1 ? d2 : t + strlen(t);

	return tu_fmt("%.*s%s%s", (int)(end - t), t, append, end);
}

/* Row 18: non-canonical base64url in each segment. */
static void test_noncanonical_base64url(void **state)
{
	char *t =
	        tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"ec256\"}", "{\"sub\":\"x\"}");
	char *e;
	char *h64 = tu_b64s("{\"alg\":\"ES256\"}");
	char *p64 = tu_b64s("{\"a\":\">>>?\"}"); /* contains '-' / '_' when encoded */

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_OK);
	e = edit_segment(t, 0, "=");
	assert_int_equal(check(e), JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64);
	free(e);
	e = edit_segment(t, 0, " ");
	assert_int_equal(check(e), JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64);
	free(e);
	e = edit_segment(t, 1, "==");
	assert_int_equal(check(e), JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_BASE64);
	free(e);
	e = edit_segment(t, 2, "=");
	assert_int_equal(check(e), JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64);
	free(e);
	/* ES256 signature is 64 bytes: 86 chars, last char carries 2 unused bits; "A" -> "B" sets one. */
	e = strdup(t);
	{
		char *last = e + strlen(e) - 1;
		const char *alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
		int v = (int)(strchr(alpha, *last) - alpha);
		*last = alpha[v | 1];
	}
	assert_int_equal(check(e), JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64);
	free(e);
	/* Standard alphabet in the payload. */
	assert_non_null(strpbrk(p64, "-_"));
	for (char *c = p64; *c; c++)
		*c = *c == '-' ? '+' : *c == '_' ? '/' : *c;
	e = tu_fmt("%s.%s.AAAA", h64, p64);
	assert_int_equal(check(e), JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_BASE64);
	free(e);
	free(h64);
	free(p64);
	free(t);
}

/* Mints an ES256 token with payload and checks with the given skew. */
static enum jwt_status time_check(const char *payload, uint64_t skew)
{
	struct jwt_verify_params p = params_default();
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"ec256\"}", payload);
	enum jwt_status st;

	p.clock_skew_s = skew;
	st = check_p(&p, fx.keys, t);
	free(t);
	return st;
}

static enum jwt_status time_check_fmt(uint64_t skew, const char *claim, int64_t v)
{
	char *pl = tu_fmt("{\"%s\":%lld}", claim, (long long)v);
	enum jwt_status st = time_check(pl, skew);

	free(pl);
	return st;
}

/* Row 19: exp edges with and without skew. */
static void test_time_exp_edges(void **state)
{
	(void)state;
	assert_int_equal(time_check_fmt(0, "exp", NOW - 1), JWT_STATUS_EXPIRED);
	assert_int_equal(time_check_fmt(0, "exp", NOW), JWT_STATUS_OK);
	assert_int_equal(time_check_fmt(0, "exp", NOW + 1), JWT_STATUS_OK);
	assert_int_equal(time_check_fmt(60, "exp", NOW - 60), JWT_STATUS_OK);
	assert_int_equal(time_check_fmt(60, "exp", NOW - 61), JWT_STATUS_EXPIRED);
	assert_int_equal(time_check_fmt(60, "exp", 0), JWT_STATUS_EXPIRED);
	assert_int_equal(time_check_fmt(60, "exp", INT64_MAX), JWT_STATUS_OK);
	assert_int_equal(time_check("{}", 0), JWT_STATUS_OK); /* no exp: never expires */
}

/* Row 19: nbf edges. */
static void test_time_nbf_edges(void **state)
{
	(void)state;
	assert_int_equal(time_check_fmt(0, "nbf", NOW + 1), JWT_STATUS_NOT_YET_VALID);
	assert_int_equal(time_check_fmt(0, "nbf", NOW), JWT_STATUS_OK);
	assert_int_equal(time_check_fmt(60, "nbf", NOW + 60), JWT_STATUS_OK);
	assert_int_equal(time_check_fmt(60, "nbf", NOW + 61), JWT_STATUS_NOT_YET_VALID);
	assert_int_equal(time_check_fmt(60, "nbf", INT64_MAX), JWT_STATUS_NOT_YET_VALID);
}

/* Row 19: non-integer time claims. */
static void test_time_claim_types(void **state)
{
	(void)state;
	assert_int_equal(time_check("{\"exp\":\"1700000100\"}", 60),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER);
	assert_int_equal(time_check("{\"exp\":1700000100.5}", 60),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER);
	assert_int_equal(time_check("{\"exp\":1.7e9}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER);
	assert_int_equal(time_check("{\"exp\":-1}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE);
	assert_int_equal(time_check("{\"exp\":1e300}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE);
	assert_int_equal(time_check("{\"exp\":-1e300}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE);
	assert_int_equal(time_check("{\"exp\":true}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER);
	assert_int_equal(time_check("{\"exp\":null}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER);
	assert_int_equal(time_check("{\"nbf\":\"0\"}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_NOT_INTEGER);
	assert_int_equal(time_check("{\"nbf\":-5}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_OUT_OF_RANGE);
	assert_int_equal(time_check("{\"iat\":[1]}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_NOT_INTEGER);
	assert_int_equal(time_check("{\"iat\":-1}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_OUT_OF_RANGE);
	/* Too large for a 64-bit integer: jansson refuses the whole payload. */
	assert_int_equal(time_check("{\"exp\":99999999999999999999}", 60),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	assert_int_equal(time_check("{\"sub\":1}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_SUB_NOT_STRING);
	assert_int_equal(time_check("{\"jti\":{}}", 60), JWT_STATUS_PAYLOAD_PARSE_ERROR_JTI_NOT_STRING);
}

/* Order of checks: an expired token with a bad signature reports "Jwt is expired". */
static void test_check_order(void **state)
{
	char *pl = tu_fmt("{\"exp\":%d,\"iss\":\"other\"}", NOW - 1000);
	char *t = tu_token_raw("{\"alg\":\"ES256\"}", pl, (const uint8_t *)"garbage", 7);
	struct jwt_verify_params p = params_default();

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_EXPIRED);
	p.issuer = "me";
	assert_int_equal(check_p(&p, fx.keys, t), JWT_STATUS_UNKNOWN_ISSUER);
	free(t);
	free(pl);
	/* No key set yet (remote JWKS not fetched): after the claims, before the signature. */
	t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", "{}");
	p = params_default();
	assert_int_equal(check_p(&p, NULL, t), JWT_STATUS_JWKS_FETCH_FAIL);
	free(t);
}

/* Extensions: require_expiration and max_lifetime. */
static void test_require_expiration_and_max_lifetime(void **state)
{
	struct jwt_verify_params p = params_default();
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", "{}");
	char *pl = tu_fmt("{\"iat\":%d,\"exp\":%d}", NOW - 10, NOW + 3590);
	char *t2 = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", pl);

	(void)state;
	p.require_expiration = true;
	assert_int_equal(check_p(&p, fx.keys, t), JWT_STATUS_EXPIRED);
	assert_int_equal(check_p(&p, fx.keys, t2), JWT_STATUS_OK);
	p.require_expiration = false;
	p.max_lifetime_s = 3600;
	assert_int_equal(check_p(&p, fx.keys, t2), JWT_STATUS_OK);
	assert_int_equal(check_p(&p, fx.keys, t), JWT_STATUS_EXPIRED);
	p.max_lifetime_s = 3599;
	assert_int_equal(check_p(&p, fx.keys, t2), JWT_STATUS_EXPIRED);
	free(t);
	free(t2);
	free(pl);
}

static enum jwt_status aud_check(const char *payload, char *const *auds, size_t n)
{
	struct jwt_verify_params p = params_default();
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", payload);
	enum jwt_status st;

	p.audiences = auds;
	p.n_audiences = n;
	st = check_p(&p, fx.keys, t);
	free(t);
	return st;
}

/* Row 20: aud variants. */
static void test_audience_variants(void **state)
{
	char *auds[] = {"api.example.com", "https://other.example.com/"};

	(void)state;
	assert_int_equal(aud_check("{\"aud\":\"api.example.com\"}", auds, 2), JWT_STATUS_OK);
	assert_int_equal(aud_check("{\"aud\":\"https://api.example.com/\"}", auds, 2), JWT_STATUS_OK);
	assert_int_equal(aud_check("{\"aud\":\"http://other.example.com\"}", auds, 2), JWT_STATUS_OK);
	assert_int_equal(aud_check("{\"aud\":[\"x\",\"api.example.com\"]}", auds, 2), JWT_STATUS_OK);
	assert_int_equal(aud_check("{\"aud\":\"API.example.com\"}", auds, 2),
	                 JWT_STATUS_AUDIENCE_NOT_ALLOWED);
	assert_int_equal(aud_check("{\"aud\":\"api.example.com//\"}", auds, 2),
	                 JWT_STATUS_AUDIENCE_NOT_ALLOWED);
	assert_int_equal(aud_check("{\"aud\":[]}", auds, 2), JWT_STATUS_AUDIENCE_NOT_ALLOWED);
	assert_int_equal(aud_check("{}", auds, 2), JWT_STATUS_AUDIENCE_NOT_ALLOWED);
	assert_int_equal(aud_check("{\"aud\":1234}", auds, 2), JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING);
	assert_int_equal(aud_check("{\"aud\":[1,2]}", auds, 2),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING);
	assert_int_equal(aud_check("{\"aud\":[\"api.example.com\",2]}", auds, 2),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING);
	/* Not configured: aud not checked (but still typed). */
	assert_int_equal(aud_check("{\"aud\":\"anything\"}", NULL, 0), JWT_STATUS_OK);
	assert_int_equal(aud_check("{\"aud\":1234}", NULL, 0), JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING);
}

/* Row 21: iss. */
static void test_issuer_variants(void **state)
{
	struct jwt_verify_params p = params_default();
	static const char *payloads[] = {"{\"iss\":\"https://issuer.example\"}",
	                                 "{\"iss\":\"https://evil.example\"}", "{}",
	                                 "{\"iss\":\"https://issuer.example/\"}", "{\"iss\":7}"};
	static const enum jwt_status want[] = {JWT_STATUS_OK, JWT_STATUS_UNKNOWN_ISSUER,
	                                       JWT_STATUS_UNKNOWN_ISSUER, JWT_STATUS_UNKNOWN_ISSUER,
	                                       JWT_STATUS_PAYLOAD_PARSE_ERROR_ISS_NOT_STRING};
	size_t i;
	char *t;

	(void)state;
	p.issuer = "https://issuer.example";
	for (i = 0; i < JG_ARRAY_SIZE(payloads); i++) {
		t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\"}", payloads[i]);
		assert_int_equal(check_p(&p, fx.keys, t), want[i]);
		free(t);
	}
}

/* Row 22: tampering each segment (re-encoded so only the signature check can catch it), truncation,
 * appending. */
static void test_tampering(void **state)
{
	char *good =
	        tu_mint(fx.rsa, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"rsa\"}", "{\"sub\":\"alice\"}");
	const char *sig = strrchr(good, '.') + 1;
	char *h2 = tu_b64s("{\"alg\":\"RS256\",\"kid\":\"rsa\",\"typ\":\"JWT\"}");
	char *p2 = tu_b64s("{\"sub\":\"admin\"}");
	const char *d1 = strchr(good, '.');
	char *t;
	size_t len = strlen(good);

	(void)state;
	assert_int_equal(check(good), JWT_STATUS_OK);
	t = tu_fmt("%s%s", h2, d1); /* header changed */
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_fmt("%.*s.%s.%s", (int)(d1 - good), good, p2, sig); /* payload changed */
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = strdup(good); /* a byte of the signature flipped (first char: full 6 bits) */
	t[sig - good] = t[sig - good] == 'A' ? 'B' : 'A';
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = strndup(good, len - 2); /* truncated to 255 bytes (342 -> 340 chars stays canonical) */
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_fmt("%sAAAA", good); /* appended */
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	t = tu_fmt("%s.", good);
	assert_int_equal(check(t), JWT_STATUS_BAD_FORMAT);
	free(t);
	free(h2);
	free(p2);
	free(good);
}

/* Row 23: ECDSA signature in DER, or not exactly 2 x 32 bytes. */
static void test_ecdsa_size(void **state)
{
	static const char *h = "{\"alg\":\"ES256\",\"kid\":\"ec256\"}";
	char *hb = tu_b64s(h), *pb = tu_b64s("{}"), *input = tu_fmt("%s.%s", hb, pb), *t, *s;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t der[80], *raw;
	size_t der_len = sizeof(der), raw_len;

	(void)state;
	assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, fx.ec256), 1);
	assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const uint8_t *)input, strlen(input)), 1);
	s = tu_b64(der, der_len);
	t = tu_fmt("%s.%s", input, s);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	free(s);
	raw = tu_sign(fx.ec256, JWT_ALG_ES256, input, strlen(input), &raw_len);
	assert_int_equal(raw_len, 64);
	s = tu_b64(raw, 63);
	t = tu_fmt("%s.%s", input, s);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	free(s);
	raw = realloc(raw, 65);
	raw[64] = 0;
	s = tu_b64(raw, 65);
	t = tu_fmt("%s.%s", input, s);
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	free(s);
	s = tu_b64(raw, 64);
	t = tu_fmt("%s.%s", input, s);
	assert_int_equal(check(t), JWT_STATUS_OK);
	free(t);
	free(s);
	free(raw);
	free(input);
	free(hb);
	free(pb);
	EVP_MD_CTX_free(ctx);
}

/* EdDSA signature of the wrong length has its own status. */
static void test_ed25519_wrong_length(void **state)
{
	uint8_t sig[63] = {1};
	char *t = tu_token_raw("{\"alg\":\"EdDSA\",\"kid\":\"ed\"}", "{}", sig, sizeof(sig));

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH);
	free(t);
}

/* HS512 needs a key at least 64 bytes long; our 32-byte key cannot verify it. */
static void test_hmac_key_too_short_for_alg(void **state)
{
	char *t = tu_mint_hmac(HS_SECRET, 32, JWT_ALG_HS512, "{\"alg\":\"HS512\",\"kid\":\"hs\"}", "{}");

	(void)state;
	assert_int_equal(check(t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
}

/* Row 13: duplicate kid: both keys kept, tried in document order. */
static void test_duplicate_kid(void **state)
{
	char *m1 = tu_jwk_members(fx.attacker_ec), *m2 = tu_jwk_members(fx.ec256);
	char *text = tu_fmt("{\"keys\":[{%s,\"kid\":\"same\"},{%s,\"kid\":\"same\"}]}", m1, m2);
	struct jwks *ks = tu_jwks(text);
	struct jwt_verify_params p = params_default();
	char *t1 = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"same\"}", "{}");
	char *t2 = tu_mint(fx.attacker_ec, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"same\"}", "{}");

	(void)state;
	assert_int_equal(ks->n_keys, 2);
	assert_int_equal(check_p(&p, ks, t1), JWT_STATUS_OK);
	assert_int_equal(check_p(&p, ks, t2), JWT_STATUS_OK);
	jwks_unref(ks);
	free(t1);
	free(t2);
	free(text);
	free(m1);
	free(m2);
}

/* Parsed token exposes payload, raw payload segment and exp for the auth stage. */
static void test_parsed_fields(void **state)
{
	char *pl = tu_fmt("{\"sub\":\"alice\",\"exp\":%d,\"nested\":{\"role\":\"admin\"}}", NOW + 100);
	char *t = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"ec256\"}", pl);
	char *pb = tu_b64s(pl);
	struct jwt tok;
	struct jwt_verify_params p = params_default();

	(void)state;
	/* A plain payload without payload_json is read in place: no jansson object. This one has a
	 * nested object (not plain), so jansson reads it anyway. */
	{
		char *plain = tu_fmt("{\"sub\":\"alice\",\"exp\":%d,\"aud\":[\"a\",\"b\"]}", NOW + 100);
		char *tp = tu_mint(fx.ec256, JWT_ALG_ES256, "{\"alg\":\"ES256\",\"kid\":\"ec256\"}", plain);

		assert_int_equal(jwt_check(&p, fx.keys, tp, strlen(tp), NOW, &tok), JWT_STATUS_OK);
		assert_null(tok.payload);
		assert_null(tok.header);
		assert_int_equal(tok.exp, NOW + 100);
		assert_int_equal(tok.n_aud, 2);
		assert_memory_equal(tok.aud[1].s, "b", 1);
		jwt_release(&tok);
		free(tp);
		free(plain);
	}
	assert_int_equal(jwt_check(&p, fx.keys, t, strlen(t), NOW, &tok), JWT_STATUS_OK);
	assert_non_null(tok.payload);
	assert_null(tok.header);
	jwt_release(&tok);
	p.payload_json = true;
	assert_int_equal(jwt_check(&p, fx.keys, t, strlen(t), NOW, &tok), JWT_STATUS_OK);
	assert_true(tok.has_exp);
	assert_int_equal(tok.exp, NOW + 100);
	assert_int_equal(tok.alg, JWT_ALG_ES256);
	assert_int_equal(tok.kid_len, 5);
	assert_memory_equal(tok.kid, "ec256", 5);
	assert_string_equal(
	        json_string_value(json_object_get(json_object_get(tok.payload, "nested"), "role")), "admin");
	assert_int_equal(tok.payload_b64_len, strlen(pb));
	assert_memory_equal(tok.payload_b64, pb, strlen(pb));
	jwt_release(&tok);
	assert_null(tok.payload);
	free(pb);
	free(t);
	free(pl);
}

static void test_status_messages(void **state)
{
	(void)state;
	assert_string_equal(jwt_status_message(JWT_STATUS_MISSED), "Jwt is missing");
	assert_string_equal(jwt_status_message(JWT_STATUS_AUDIENCE_NOT_ALLOWED),
	                    "Audiences in Jwt are not allowed");
	assert_int_equal(JWT_STATUS_VERIFICATION_FAIL, 26);
	assert_int_equal(JWT_STATUS_JWKS_KID_ALG_MISMATCH, 32);
	assert_int_equal(JWT_STATUS_JWKS_BIO_ALLOC_ERROR, 72);
	assert_string_equal(jwt_status_message(JWT_STATUS_JWKS_BIO_ALLOC_ERROR),
	                    "Failed to create BIO due to memory allocation failure");
	assert_string_equal(jwt_status_message((enum jwt_status)73), "Unknown status");
	for (int i = 0; i < JWT_STATUS_COUNT; i++)
		assert_string_not_equal(jwt_status_message((enum jwt_status)i), "Unknown status");
}

/* The seed's tokens verify with the seed's JWKS (first key, no kid) at a fixed time. */
static void test_conformance_seed_tokens(void **state)
{
	size_t len;
	char *jwks_text = tu_read_data("envoy-gateway-jwt/jwks.json", &len);
	char *t1 = tu_read_data("envoy-gateway-jwt/test.jwt", NULL);
	char *t2 = tu_read_data("envoy-gateway-jwt/with-different-claim.jwt", NULL);
	struct jwks *ks = NULL;
	struct jwt_verify_params p = params_default();
	struct jwt tok;

	(void)state;
	p.payload_json = true;
	assert_int_equal(jwks_parse(jwks_text, len, "jwks.json", &ks), JWT_STATUS_OK);
	assert_int_equal(ks->n_keys, 2);
	t1[strcspn(t1, "\r\n")] = '\0';
	t2[strcspn(t2, "\r\n")] = '\0';
	assert_int_equal(jwt_check(&p, ks, t1, strlen(t1), 1516239022 + 100, &tok), JWT_STATUS_OK);
	assert_string_equal(json_string_value(json_object_get(tok.payload, "name")), "John Doe");
	jwt_release(&tok);
	assert_int_equal(jwt_check(&p, ks, t2, strlen(t2), 1516239022 + 100, &tok), JWT_STATUS_OK);
	assert_string_equal(json_string_value(json_object_get(tok.payload, "name")), "Tom");
	jwt_release(&tok);
	/* Tampered: payload of t2 with the signature of t1. */
	{
		char *s1 = strrchr(t1, '.'), *s2 = strrchr(t2, '.');
		char *mixed = tu_fmt("%.*s%s", (int)(s2 - t2), t2, s1);
		assert_int_equal(check_p(&p, ks, mixed), JWT_STATUS_VERIFICATION_FAIL);
		free(mixed);
	}
	jwks_unref(ks);
	free(jwks_text);
	free(t1);
	free(t2);
}

/* Builds the RSA private key of key.json (RFC 7518 section 6.3.2 members). */
static EVP_PKEY *load_private_jwk(const char *text)
{
	static const struct {
		const char *jwk, *param;
	} map[] = {
	        {"n", OSSL_PKEY_PARAM_RSA_N},          {"e", OSSL_PKEY_PARAM_RSA_E},
	        {"d", OSSL_PKEY_PARAM_RSA_D},          {"p", OSSL_PKEY_PARAM_RSA_FACTOR1},
	        {"q", OSSL_PKEY_PARAM_RSA_FACTOR2},    {"dp", OSSL_PKEY_PARAM_RSA_EXPONENT1},
	        {"dq", OSSL_PKEY_PARAM_RSA_EXPONENT2}, {"qi", OSSL_PKEY_PARAM_RSA_COEFFICIENT1},
	};
	json_t *j = json_loads(text, 0, NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *bn[8];
	OSSL_PARAM *params;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *key = NULL;
	size_t i;

	assert_non_null(j);
	for (i = 0; i < JG_ARRAY_SIZE(map); i++) {
		const char *s = json_string_value(json_object_get(j, map[i].jwk));
		uint8_t buf[1024];
		size_t n;

		assert_non_null(s);
		assert_int_equal(b64url_decode(s, strlen(s), buf, sizeof(buf), &n), 0);
		bn[i] = BN_bin2bn(buf, (int)n, NULL);
		assert_int_equal(OSSL_PARAM_BLD_push_BN(bld, map[i].param, bn[i]), 1);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_KEYPAIR, params), 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	for (i = 0; i < JG_ARRAY_SIZE(map); i++)
		BN_free(bn[i]);
	json_decref(j);
	return key;
}

/* key.json (kid b520...) signs a token that verifies with jwks.json; with a wrong kid it does not. */
static void test_conformance_key_json(void **state)
{
	size_t len;
	char *jwks_text = tu_read_data("envoy-gateway-jwt/jwks.json", &len);
	char *key_text = tu_read_data("envoy-gateway-jwt/key.json", NULL);
	EVP_PKEY *key = load_private_jwk(key_text);
	struct jwks *ks = tu_jwks(jwks_text);
	struct jwt_verify_params p = params_default();
	char *t;

	(void)state;
	t = tu_mint(key, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"b520b3c2c4bd75a10e9cebc9576933dc\"}",
	            "{\"sub\":\"1234567890\",\"name\":\"Minted\"}");
	assert_int_equal(check_p(&p, ks, t), JWT_STATUS_OK);
	free(t);
	/* No kid: the first key (no kid) fails, the second succeeds. */
	t = tu_mint(key, JWT_ALG_RS256, "{\"alg\":\"RS256\"}", "{}");
	assert_int_equal(check_p(&p, ks, t), JWT_STATUS_OK);
	free(t);
	/* Another kid: only the kid-less first key is eligible, and it fails. */
	t = tu_mint(key, JWT_ALG_RS256, "{\"alg\":\"RS256\",\"kid\":\"other\"}", "{}");
	assert_int_equal(check_p(&p, ks, t), JWT_STATUS_VERIFICATION_FAIL);
	free(t);
	/* Both keys say RS256: an RS384 token matches none. */
	t = tu_mint(key, JWT_ALG_RS384, "{\"alg\":\"RS384\"}", "{}");
	assert_int_equal(check_p(&p, ks, t), JWT_STATUS_JWKS_KID_ALG_MISMATCH);
	free(t);
	EVP_PKEY_free(key);
	jwks_unref(ks);
	free(jwks_text);
	free(key_text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_all_algorithms_verify),
	        cmocka_unit_test(test_alg_none_variants),
	        cmocka_unit_test(test_signature_stripped),
	        cmocka_unit_test(test_empty_hmac_secret),
	        cmocka_unit_test(test_rs_to_hs_confusion),
	        cmocka_unit_test(test_downgrade_within_family),
	        cmocka_unit_test(test_embedded_jwk_ignored),
	        cmocka_unit_test(test_jku_x5u_ignored),
	        cmocka_unit_test(test_kid_injection_opaque),
	        cmocka_unit_test(test_psychic_signature),
	        cmocka_unit_test(test_crit_rejected),
	        cmocka_unit_test(test_jwe_and_json_serialization),
	        cmocka_unit_test(test_huge_token),
	        cmocka_unit_test(test_duplicate_json_keys),
	        cmocka_unit_test(test_noncanonical_base64url),
	        cmocka_unit_test(test_time_exp_edges),
	        cmocka_unit_test(test_time_nbf_edges),
	        cmocka_unit_test(test_time_claim_types),
	        cmocka_unit_test(test_check_order),
	        cmocka_unit_test(test_require_expiration_and_max_lifetime),
	        cmocka_unit_test(test_audience_variants),
	        cmocka_unit_test(test_issuer_variants),
	        cmocka_unit_test(test_tampering),
	        cmocka_unit_test(test_ecdsa_size),
	        cmocka_unit_test(test_ed25519_wrong_length),
	        cmocka_unit_test(test_hmac_key_too_short_for_alg),
	        cmocka_unit_test(test_duplicate_kid),
	        cmocka_unit_test(test_parsed_fields),
	        cmocka_unit_test(test_status_messages),
	        cmocka_unit_test(test_conformance_seed_tokens),
	        cmocka_unit_test(test_conformance_key_json),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
