/* test_jwk.c: JWKS parsing: JSON-level errors (28-31), per-key statuses (33-65), weak and malformed keys
 * refused at load (security.md rows 10-13), skipped keys not taking valid ones down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "jwt_testutil.h"
#include "jwtgate/jwk.h"

static struct {
	EVP_PKEY *rsa, *ec;
	char *rsa_m, *ec_m;
	char *ec_x, *ec_y;
} fx;

static int setup(void **state)
{
	BIGNUM *x = NULL, *y = NULL;

	(void)state;
	fx.rsa = tu_keygen("RSA", "2048");
	fx.ec = tu_keygen("EC", "P-256");
	fx.rsa_m = tu_jwk_members(fx.rsa);
	fx.ec_m = tu_jwk_members(fx.ec);
	TU_CHECK(EVP_PKEY_get_bn_param(fx.ec, OSSL_PKEY_PARAM_EC_PUB_X, &x) == 1);
	TU_CHECK(EVP_PKEY_get_bn_param(fx.ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1);
	fx.ec_x = tu_bn_b64(x, 32);
	fx.ec_y = tu_bn_b64(y, 32);
	BN_free(x);
	BN_free(y);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec);
	free(fx.rsa_m);
	free(fx.ec_m);
	free(fx.ec_x);
	free(fx.ec_y);
	return 0;
}

/* Status of jwk_from_json on one JWK text. */
static enum jwt_status one(const char *text)
{
	json_t *j = json_loads(text, 0, NULL);
	struct jwk k;
	enum jwt_status st;

	assert_non_null(j);
	st = jwk_from_json(j, &k, NULL, 0);
	if (st == JWT_STATUS_OK)
		assert_true(k.kty != 0);
	jwk_clear(&k);
	json_decref(j);
	return st;
}

/* one() on a JWK text built with printf (a macro so the format is checked). */
static enum jwt_status one_owned(char *text)
{
	enum jwt_status st = one(text);

	free(text);
	return st;
}
#define one_fmt(...) one_owned(tu_fmt(__VA_ARGS__))

/* jwk_from_json on one JWK text that must be refused with status `want`: asserts that the reason is
 * exactly `reason` (issue 10 section 4: each refusal says what is wrong with this key). */
static void refused_owned(char *text, enum jwt_status want, const char *reason)
{
	json_t *j = json_loads(text, 0, NULL);
	struct jwk k;
	char why[JWK_WHY_MAX];

	if (j == NULL)
		fail_msg("not JSON: %s", text);
	memset(why, 'x', sizeof(why));
	assert_int_equal(jwk_from_json(j, &k, why, sizeof(why)), want);
	if (strcmp(why, reason) != 0)
		fail_msg("reason for %.80s...\n  want: %s\n  got:  %s", text, reason, why);
	/* Without a buffer the status is the same. */
	assert_int_equal(jwk_from_json(j, &k, NULL, 0), want);
	json_decref(j);
	free(text);
}
#define refused(want, reason, ...) refused_owned(tu_fmt(__VA_ARGS__), want, reason)

static enum jwt_status parse(const char *text, struct jwks **out)
{
	return jwks_parse(text, strlen(text), "test", out);
}

static void test_jwks_level_errors(void **state)
{
	struct jwks *ks = (struct jwks *)1;
	char *big;

	(void)state;
	assert_int_equal(parse("not json", &ks), JWT_STATUS_JWKS_PARSE_ERROR);
	assert_null(ks);
	assert_int_equal(parse("[]", &ks), JWT_STATUS_JWKS_PARSE_ERROR);
	assert_int_equal(parse("{\"keys\":[]} trailing", &ks), JWT_STATUS_JWKS_PARSE_ERROR);
	assert_int_equal(parse("{\"keys\":[],\"keys\":[]}", &ks), JWT_STATUS_JWKS_PARSE_ERROR);
	assert_int_equal(parse("{}", &ks), JWT_STATUS_JWKS_NO_KEYS);
	assert_int_equal(parse("{\"keys\":{}}", &ks), JWT_STATUS_JWKS_BAD_KEYS);
	assert_int_equal(parse("{\"keys\":\"x\"}", &ks), JWT_STATUS_JWKS_BAD_KEYS);
	assert_int_equal(parse("{\"keys\":[]}", &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	assert_int_equal(parse("{\"keys\":[1,\"a\",null,{}]}", &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	assert_null(ks);
	/* Size bound: refused before parsing. */
	big = malloc(JWKS_MAX_TEXT_LEN + 2);
	memset(big, ' ', JWKS_MAX_TEXT_LEN + 1);
	memcpy(big, "{\"keys\":[]}", 11);
	big[JWKS_MAX_TEXT_LEN + 1] = '\0';
	assert_int_equal(parse(big, &ks), JWT_STATUS_JWKS_PARSE_ERROR);
	free(big);
}

static void test_too_many_keys(void **state)
{
	size_t n = JWKS_MAX_KEYS + 1, i;
	char *text = malloc(n * (strlen(fx.ec_m) + 4) + 32), *p;
	struct jwks *ks = NULL;

	(void)state;
	p = text + sprintf(text, "{\"keys\":[");
	for (i = 0; i < n; i++)
		p += sprintf(p, "%s{%s}", i ? "," : "", fx.ec_m);
	strcpy(p, "]}");
	assert_int_equal(parse(text, &ks), JWT_STATUS_JWKS_BAD_KEYS);
	/* Exactly the limit is fine. */
	p = strrchr(text, '{');
	strcpy(p - 1, "]}");
	assert_int_equal(parse(text, &ks), JWT_STATUS_OK);
	assert_int_equal(ks->n_keys, JWKS_MAX_KEYS);
	jwks_unref(ks);
	free(text);
}

static void test_kty_errors(void **state)
{
	(void)state;
	assert_int_equal(one("{\"n\":\"AQAB\"}"), JWT_STATUS_JWKS_MISSING_KTY);
	assert_int_equal(one("{\"kty\":1}"), JWT_STATUS_JWKS_BAD_KTY);
	assert_int_equal(one("{\"kty\":\"rsa\"}"), JWT_STATUS_JWKS_NOT_IMPLEMENTED_KTY);
	assert_int_equal(one("{\"kty\":\"X448\"}"), JWT_STATUS_JWKS_NOT_IMPLEMENTED_KTY);
}

static void test_rsa_errors(void **state)
{
	(void)state;
	assert_int_equal(one_fmt("{%s}", fx.rsa_m), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{%s,\"alg\":\"ES256\"}", fx.rsa_m), JWT_STATUS_JWKS_RSA_KEY_BAD_ALG);
	assert_int_equal(one_fmt("{%s,\"alg\":\"RS1\"}", fx.rsa_m), JWT_STATUS_JWKS_RSA_KEY_BAD_ALG);
	assert_int_equal(one("{\"kty\":\"RSA\",\"e\":\"AQAB\"}"), JWT_STATUS_JWKS_RSA_KEY_MISSING_N);
	assert_int_equal(one("{\"kty\":\"RSA\",\"n\":5,\"e\":\"AQAB\"}"), JWT_STATUS_JWKS_RSA_KEY_BAD_N);
	assert_int_equal(one("{\"kty\":\"RSA\",\"n\":\"AQAB\"}"), JWT_STATUS_JWKS_RSA_KEY_MISSING_E);
	assert_int_equal(one("{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":[]}"), JWT_STATUS_JWKS_RSA_KEY_BAD_E);
	assert_int_equal(one("{\"kty\":\"RSA\",\"n\":\"AQ==\",\"e\":\"AQAB\"}"),
	                 JWT_STATUS_JWKS_RSA_PARSE_ERROR);
	/* RSA with EC parameters (row 10). */
	assert_int_equal(one_fmt("{\"kty\":\"RSA\",\"crv\":\"P-256\",\"x\":\"%s\"}", fx.ec_x),
	                 JWT_STATUS_JWKS_RSA_KEY_MISSING_N);
}

/* Row 11: 1024-bit modulus, e = 1, even e. */
static void test_rsa_weak_keys(void **state)
{
	EVP_PKEY *small = tu_keygen("RSA", "1024");
	char *m = tu_jwk_members(small), *n_start, *t;
	struct jwks *ks = NULL;

	(void)state;
	assert_int_equal(one_fmt("{%s}", m), JWT_STATUS_JWKS_RSA_PARSE_ERROR);
	t = tu_fmt("{\"keys\":[{%s}]}", m);
	assert_int_equal(parse(t, &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	free(t);
	/* The 2048-bit modulus with e = 1 ("AQ"), e = 2 ("Ag") and e = 65536 ("AQAA"). */
	n_start = strstr(fx.rsa_m, "\"n\":");
	t = tu_fmt("{\"kty\":\"RSA\",%.*s,\"e\":\"AQ\"}", (int)(strstr(n_start, ",\"e\"") - n_start),
	           n_start);
	assert_int_equal(one(t), JWT_STATUS_JWKS_RSA_PARSE_ERROR);
	free(t);
	t = tu_fmt("{\"kty\":\"RSA\",%.*s,\"e\":\"Ag\"}", (int)(strstr(n_start, ",\"e\"") - n_start),
	           n_start);
	assert_int_equal(one(t), JWT_STATUS_JWKS_RSA_PARSE_ERROR);
	free(t);
	t = tu_fmt("{\"kty\":\"RSA\",%.*s,\"e\":\"AQAA\"}", (int)(strstr(n_start, ",\"e\"") - n_start),
	           n_start);
	assert_int_equal(one(t), JWT_STATUS_JWKS_RSA_PARSE_ERROR);
	free(t);
	t = tu_fmt("{\"kty\":\"RSA\",%.*s,\"e\":\"Aw\"}", (int)(strstr(n_start, ",\"e\"") - n_start),
	           n_start);
	assert_int_equal(one(t), JWT_STATUS_OK); /* e = 3 is allowed */
	free(t);
	free(m);
	EVP_PKEY_free(small);
}

static void test_ec_errors(void **state)
{
	char *t;

	(void)state;
	assert_int_equal(one_fmt("{%s}", fx.ec_m), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{%s,\"alg\":\"ES256\"}", fx.ec_m), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{%s,\"alg\":\"RS256\"}", fx.ec_m), JWT_STATUS_JWKS_EC_KEY_BAD_ALG);
	assert_int_equal(one_fmt("{%s,\"alg\":\"ES256K\"}", fx.ec_m),
	                 JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED);
	/* crv / alg mismatch (row 10). */
	assert_int_equal(one_fmt("{%s,\"alg\":\"ES384\"}", fx.ec_m),
	                 JWT_STATUS_JWKS_EC_KEY_ALG_NOT_COMPATIBLE_WITH_CRV);
	t = tu_fmt("{\"kty\":\"EC\",\"crv\":7,\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, fx.ec_y);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_KEY_BAD_CRV);
	free(t);
	t = tu_fmt("{\"kty\":\"EC\",\"crv\":\"secp256k1\",\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, fx.ec_y);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED);
	free(t);
	/* Neither crv nor alg: P-256. */
	t = tu_fmt("{\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, fx.ec_y);
	assert_int_equal(one(t), JWT_STATUS_OK);
	free(t);
	/* alg ES384 only: P-384, and our P-256 point does not fit it. */
	t = tu_fmt("{\"kty\":\"EC\",\"alg\":\"ES384\",\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, fx.ec_y);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_PARSE_ERROR);
	free(t);
	assert_int_equal(one_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"y\":\"%s\"}", fx.ec_y),
	                 JWT_STATUS_JWKS_EC_KEY_MISSING_X);
	assert_int_equal(one_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":1,\"y\":\"%s\"}", fx.ec_y),
	                 JWT_STATUS_JWKS_EC_KEY_BAD_X);
	assert_int_equal(one_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\"}", fx.ec_x),
	                 JWT_STATUS_JWKS_EC_KEY_MISSING_Y);
	assert_int_equal(one_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":{}}", fx.ec_x),
	                 JWT_STATUS_JWKS_EC_KEY_BAD_Y);
	assert_int_equal(one_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"a+b/\"}", fx.ec_x),
	                 JWT_STATUS_JWKS_EC_XOR_Y_BAD_BASE64);
}

/* Row 10: a point off the curve (y + 1) and coordinates too long for the curve. */
static void test_ec_off_curve(void **state)
{
	BIGNUM *y = NULL;
	char *yb, *t;
	struct jwks *ks = NULL;
	uint8_t big[40] = {1};

	(void)state;
	TU_CHECK(EVP_PKEY_get_bn_param(fx.ec, OSSL_PKEY_PARAM_EC_PUB_Y, &y) == 1);
	BN_add_word(y, 1);
	yb = tu_bn_b64(y, 32);
	t = tu_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, yb);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_PARSE_ERROR);
	free(t);
	t = tu_fmt("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", fx.ec_x, yb);
	assert_int_equal(parse(t, &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	free(t);
	free(yb);
	yb = tu_b64(big, sizeof(big));
	t = tu_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", fx.ec_x, yb);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_PARSE_ERROR);
	free(t);
	free(yb);
	/* The point at infinity / all zero. */
	yb = tu_b64((const uint8_t *)"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 32);
	t = tu_fmt("{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}", yb, yb);
	assert_int_equal(one(t), JWT_STATUS_JWKS_EC_PARSE_ERROR);
	free(t);
	free(yb);
	BN_free(y);
}

static void test_okp_errors(void **state)
{
	static const char *x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"; /* RFC 8037 A.2 */

	(void)state;
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", x), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"EdDSA\",\"x\":\"%s\"}", x),
	                 JWT_STATUS_OK);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":\"ES256\",\"x\":\"%s\"}", x),
	                 JWT_STATUS_JWKS_OKP_KEY_BAD_ALG);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"x\":\"%s\"}", x), JWT_STATUS_JWKS_OKP_KEY_MISSING_CRV);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":1,\"x\":\"%s\"}", x),
	                 JWT_STATUS_JWKS_OKP_KEY_BAD_CRV);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"%s\"}", x),
	                 JWT_STATUS_JWKS_OKP_KEY_CRV_UNSUPPORTED);
	assert_int_equal(one_fmt("{\"kty\":\"OKP\",\"crv\":\"Ed448\",\"x\":\"%s\"}", x),
	                 JWT_STATUS_JWKS_OKP_KEY_CRV_UNSUPPORTED);
	assert_int_equal(one("{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}"), JWT_STATUS_JWKS_OKP_KEY_MISSING_X);
	assert_int_equal(one("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":[]}"),
	                 JWT_STATUS_JWKS_OKP_KEY_BAD_X);
	assert_int_equal(one("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"a=\"}"),
	                 JWT_STATUS_JWKS_OKP_X_BAD_BASE64);
	assert_int_equal(one("{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}"),
	                 JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH);
}

/* Row 3: oct keys: empty or short secrets refused; alg raises the minimum. */
static void test_oct_errors(void **state)
{
	char *k31 = tu_b64s("0123456789abcdef0123456789abcde");
	char *k32 = tu_b64s("0123456789abcdef0123456789abcdef");

	(void)state;
	assert_int_equal(one_fmt("{\"kty\":\"oct\",\"k\":\"%s\"}", k32), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{\"kty\":\"oct\",\"k\":\"%s\",\"alg\":\"HS256\"}", k32), JWT_STATUS_OK);
	assert_int_equal(one_fmt("{\"kty\":\"oct\",\"k\":\"%s\",\"alg\":\"HS384\"}", k32),
	                 JWT_STATUS_JWKS_HMAC_KEY_BAD_K);
	assert_int_equal(one_fmt("{\"kty\":\"oct\",\"k\":\"%s\"}", k31), JWT_STATUS_JWKS_HMAC_KEY_BAD_K);
	assert_int_equal(one("{\"kty\":\"oct\",\"k\":\"\"}"), JWT_STATUS_JWKS_HMAC_KEY_BAD_K);
	assert_int_equal(one_fmt("{\"kty\":\"oct\",\"k\":\"%s\",\"alg\":\"RS256\"}", k32),
	                 JWT_STATUS_JWKS_HMAC_KEY_BAD_ALG);
	assert_int_equal(one("{\"kty\":\"oct\"}"), JWT_STATUS_JWKS_HMAC_KEY_MISSING_K);
	assert_int_equal(one("{\"kty\":\"oct\",\"k\":null}"), JWT_STATUS_JWKS_HMAC_KEY_BAD_K);
	assert_int_equal(one("{\"kty\":\"oct\",\"k\":\"MDEy/zQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\"}"),
	                 JWT_STATUS_JWKS_OCT_BAD_BASE64);
	free(k31);
	free(k32);
}

/* issue 10 section 4: a short HMAC secret, a small RSA modulus, an even or too small RSA exponent and an
 * alg that is not a JWA name each get their own reason (the statuses, which tokens see, are unchanged:
 * before, all the RSA ones read "Jwks RSA [n] or [e] field is missing or has a parse error"). */
static void test_refusal_reasons(void **state)
{
	EVP_PKEY *small = tu_keygen("RSA", "1024");
	char *m = tu_jwk_members(small), *n_start = strstr(fx.rsa_m, "\"n\":");
	int n_len = (int)(strstr(n_start, ",\"e\"") - n_start);
	char *k16 = tu_b64s("0123456789abcdef"), *k32 = tu_b64s("0123456789abcdef0123456789abcdef");
	char *k48 = tu_b64s("0123456789abcdef0123456789abcdef0123456789abcdef");

	(void)state;
	/* HMAC secrets shorter than the hash (RFC 7518 section 3.2) */
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
	        "HMAC secret is 16 bytes; at least 32 are required (HS256's hash size, RFC 7518 section 3.2)",
	        "{\"kty\":\"oct\",\"k\":\"%s\"}", k16);
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
	        "HMAC secret is 16 bytes; HS256 requires at least 32 (its hash size, RFC 7518 section 3.2)",
	        "{\"kty\":\"oct\",\"alg\":\"HS256\",\"k\":\"%s\"}", k16);
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
	        "HMAC secret is 32 bytes; HS384 requires at least 48 (its hash size, RFC 7518 section 3.2)",
	        "{\"kty\":\"oct\",\"alg\":\"HS384\",\"k\":\"%s\"}", k32);
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
	        "HMAC secret is 48 bytes; HS512 requires at least 64 (its hash size, RFC 7518 section 3.2)",
	        "{\"kty\":\"oct\",\"alg\":\"HS512\",\"k\":\"%s\"}", k48);
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
	        "HMAC secret is 0 bytes; at least 32 are required (HS256's hash size, RFC 7518 section 3.2)",
	        "{\"kty\":\"oct\",\"k\":\"\"}");
	/* RSA modulus under 2048 bits */
	refused(JWT_STATUS_JWKS_RSA_PARSE_ERROR, "RSA modulus is 1024 bits; at least 2048 are required",
	        "{%s}", m);
	/* RSA exponent even, or below 3 */
	refused(JWT_STATUS_JWKS_RSA_PARSE_ERROR, "RSA exponent 65536 is even; it must be odd and at least 3",
	        "{\"kty\":\"RSA\",%.*s,\"e\":\"AQAA\"}", n_len, n_start);
	refused(JWT_STATUS_JWKS_RSA_PARSE_ERROR, "RSA exponent 2 is even; it must be odd and at least 3",
	        "{\"kty\":\"RSA\",%.*s,\"e\":\"Ag\"}", n_len, n_start);
	refused(JWT_STATUS_JWKS_RSA_PARSE_ERROR, "RSA exponent 1 is below 3; it must be odd and at least 3",
	        "{\"kty\":\"RSA\",%.*s,\"e\":\"AQ\"}", n_len, n_start);
	refused(JWT_STATUS_JWKS_RSA_PARSE_ERROR, "RSA exponent 0 is even; it must be odd and at least 3",
	        "{\"kty\":\"RSA\",%.*s,\"e\":\"AA\"}", n_len, n_start);
	/* alg that is not a JWA name: a typo for ES512 (P-521), on each key type; the EC status stays
	 * jwt_verify_lib's "[crv] or [alg] field is not supported" for an ES-prefixed name */
	refused(JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED,
	        "alg \"ES521\" is not a JWA algorithm name (RFC 7518 section 3.1; EC key: ES256, ES384, "
	        "ES512)",
	        "{%s,\"alg\":\"ES521\"}", fx.ec_m);
	refused(JWT_STATUS_JWKS_RSA_KEY_BAD_ALG,
	        "alg \"ES521\" is not a JWA algorithm name (RFC 7518 section 3.1; RSA key: RS256..RS512, "
	        "PS256..PS512)",
	        "{%s,\"alg\":\"ES521\"}", fx.rsa_m);
	refused(JWT_STATUS_JWKS_HMAC_KEY_BAD_ALG,
	        "alg \"HS1024\" is not a JWA algorithm name (RFC 7518 section 3.1; oct key: HS256, HS384, "
	        "HS512)",
	        "{\"kty\":\"oct\",\"alg\":\"HS1024\",\"k\":\"%s\"}", k32);
	/* ... told apart from a JWA name of another key type, a registered one not verified with, an
	 * encryption one, and a non-string */
	refused(JWT_STATUS_JWKS_RSA_KEY_BAD_ALG,
	        "alg \"ES256\" does not fit an RSA key (RS256..RS512, PS256..PS512)",
	        "{%s,\"alg\":\"ES256\"}", fx.rsa_m);
	refused(JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED,
	        "alg \"ES256K\" is not supported for verification (EC key: ES256, ES384, ES512)",
	        "{%s,\"alg\":\"ES256K\"}", fx.ec_m);
	refused(JWT_STATUS_JWKS_RSA_KEY_BAD_ALG,
	        "alg \"RSA-OAEP\" is an encryption algorithm, not a signature one (RSA key: RS256..RS512, "
	        "PS256..PS512)",
	        "{%s,\"alg\":\"RSA-OAEP\"}", fx.rsa_m);
	refused(JWT_STATUS_JWKS_OKP_KEY_BAD_ALG, "\"alg\" is not a string",
	        "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"alg\":5,\"x\":\"AAAA\"}");
	refused(JWT_STATUS_JWKS_EC_KEY_ALG_NOT_COMPATIBLE_WITH_CRV,
	        "alg \"ES384\" does not fit curve P-256 (ES256)", "{%s,\"alg\":\"ES384\"}", fx.ec_m);
	/* peer text is cut and made printable (a remote JWKS writes into our log) */
	refused(JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED,
	        "alg \"ES?521?\" is not a JWA algorithm name (RFC 7518 section 3.1; EC key: ES256, ES384, "
	        "ES512)",
	        "{%s,\"alg\":\"ES\\n521\\\"\"}", fx.ec_m);
	/* a refusal that the status already explains keeps the status message */
	refused(JWT_STATUS_JWKS_RSA_KEY_MISSING_E, "[e] field is missing for a RSA key",
	        "{\"kty\":\"RSA\",%.*s}", n_len, n_start);
	refused(JWT_STATUS_JWKS_PARSE_ERROR, "\"kid\" is not a string", "{%s,\"kid\":7}", fx.ec_m);
	free(k16);
	free(k32);
	free(k48);
	free(m);
	EVP_PKEY_free(small);
}

/* The reason reaches the log line of the skipped key, which names the key by index and kid. */
static void test_refusal_logged(void **state)
{
	EVP_PKEY *small = tu_keygen("RSA", "1024");
	char *m = tu_jwk_members(small), *t, *log = NULL;
	struct jwks *ks = NULL;
	FILE *f = tmpfile();
	int saved = dup(STDERR_FILENO);
	long n;

	(void)state;
	assert_non_null(f);
	assert_true(saved >= 0);
	t = tu_fmt("{\"keys\":[{%s,\"kid\":\"old\"},{%s}]}", m, fx.ec_m);
	fflush(stderr);
	assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
	assert_int_equal(parse(t, &ks), JWT_STATUS_OK);
	fflush(stderr);
	assert_true(dup2(saved, STDERR_FILENO) >= 0);
	close(saved);
	assert_int_equal(ks->n_keys, 1);
	n = ftell(f);
	assert_true(n > 0);
	log = calloc(1, (size_t)n + 1);
	rewind(f);
	assert_int_equal(fread(log, 1, (size_t)n, f), (size_t)n);
	if (strstr(log, "test: key #0 kid \"old\" skipped: RSA modulus is 1024 bits; at least 2048 are "
	                "required") == NULL)
		fail_msg("log:\n%s", log);
	free(log);
	fclose(f);
	jwks_unref(ks);
	free(t);
	free(m);
	EVP_PKEY_free(small);
}

/* Row 12: use enc / key_ops without verify: skipped; a valid key next to invalid ones is kept. */
static void test_use_and_key_ops(void **state)
{
	struct jwks *ks = NULL;
	char *t;

	(void)state;
	t = tu_fmt("{\"keys\":[{%s,\"use\":\"enc\"}]}", fx.ec_m);
	assert_int_equal(parse(t, &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	free(t);
	t = tu_fmt("{\"keys\":[{%s,\"key_ops\":[\"sign\",\"encrypt\"]}]}", fx.ec_m);
	assert_int_equal(parse(t, &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	free(t);
	t = tu_fmt(
	        "{\"keys\":[{%s,\"kid\":\"a\",\"use\":\"enc\"},{\"kty\":\"RSA\",\"kid\":\"bad\"},"
	        "{%s,\"kid\":\"b\",\"use\":\"sig\",\"key_ops\":[\"verify\"]},{%s,\"kid\":\"c\",\"kid2\":1}]}",
	        fx.ec_m, fx.ec_m, fx.rsa_m);
	assert_int_equal(parse(t, &ks), JWT_STATUS_OK);
	assert_int_equal(ks->n_keys, 2);
	assert_string_equal(ks->keys[0].kid, "b");
	assert_int_equal(ks->keys[0].kty, JWK_KTY_EC);
	assert_string_equal(ks->keys[1].kid, "c");
	assert_int_equal(ks->keys[1].kty, JWK_KTY_RSA);
	jwks_unref(ks);
	free(t);
	/* A non-string kid makes the key invalid (it would otherwise match any token kid). */
	t = tu_fmt("{\"keys\":[{%s,\"kid\":5}]}", fx.ec_m);
	assert_int_equal(parse(t, &ks), JWT_STATUS_JWKS_NO_VALID_KEYS);
	free(t);
}

/* Reference counting: the set lives until the last reference is dropped (checked under ASan). */
static void test_refcount(void **state)
{
	struct jwks *ks = NULL;
	char *t = tu_fmt("{\"keys\":[{%s}]}", fx.ec_m);

	(void)state;
	assert_int_equal(parse(t, &ks), JWT_STATUS_OK);
	assert_ptr_equal(jwks_ref(ks), ks);
	assert_int_equal(ks->refs, 2);
	jwks_unref(ks);
	assert_int_equal(ks->refs, 1);
	assert_int_equal(ks->keys[0].kty, JWK_KTY_EC);
	jwks_unref(ks);
	jwks_unref(NULL);
	free(t);
}

/* The seed's jwks.json loads both keys, the first without kid. */
static void test_seed_jwks(void **state)
{
	size_t len;
	char *text = tu_read_data("envoy-gateway-jwt/jwks.json", &len);
	struct jwks *ks = NULL;

	(void)state;
	assert_int_equal(jwks_parse(text, len, "jwks.json", &ks), JWT_STATUS_OK);
	assert_int_equal(ks->n_keys, 2);
	assert_null(ks->keys[0].kid);
	assert_string_equal(ks->keys[1].kid, "b520b3c2c4bd75a10e9cebc9576933dc");
	assert_int_equal(ks->keys[1].alg, JWT_ALG_RS256);
	assert_int_equal(ks->keys[1].rsa_len, 384);
	jwks_unref(ks);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_jwks_level_errors), cmocka_unit_test(test_too_many_keys),
	        cmocka_unit_test(test_kty_errors),        cmocka_unit_test(test_rsa_errors),
	        cmocka_unit_test(test_rsa_weak_keys),     cmocka_unit_test(test_ec_errors),
	        cmocka_unit_test(test_ec_off_curve),      cmocka_unit_test(test_okp_errors),
	        cmocka_unit_test(test_oct_errors),        cmocka_unit_test(test_use_and_key_ops),
	        cmocka_unit_test(test_refusal_reasons),   cmocka_unit_test(test_refusal_logged),
	        cmocka_unit_test(test_refcount),          cmocka_unit_test(test_seed_jwks),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
