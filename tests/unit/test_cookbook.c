/* test_cookbook.c: RFC 7520 ("JOSE cookbook") section 4 compact JWS examples with algorithms jwtgate
 * supports, from tests/data/jose-cookbook/jws/. Keys come from each example's JWK through the
 * JWKS loader (private members are ignored); signatures are checked through jwt_parse's segment split
 * and the verifier's primitive. The cookbook payloads are plain text, not JWT claim sets, so the full
 * jwt_check refuses them with "Jwt payload is an invalid JSON"; that is asserted too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jwt_testutil.h"
#include "jwtgate/jwt.h"

struct cookbook_case {
	json_t *root;
	struct jwks *keys;
	const char *compact;
	enum jwt_alg alg;
};

static void load_case(const char *file, struct cookbook_case *c)
{
	char *rel = tu_fmt("jose-cookbook/jws/%s", file);
	size_t len;
	char *text = tu_read_data(rel, &len);
	json_t *input, *wrapper;
	char *keys_text;
	const char *alg_name;

	c->root = json_loadb(text, len, 0, NULL);
	assert_non_null(c->root);
	input = json_object_get(c->root, "input");
	alg_name = json_string_value(json_object_get(input, "alg"));
	c->alg = jwt_alg_from_name(alg_name, strlen(alg_name));
	assert_int_not_equal(c->alg, JWT_ALG_UNSET);
	wrapper = json_pack("{s:[O]}", "keys", json_object_get(input, "key"));
	keys_text = json_dumps(wrapper, JSON_COMPACT);
	c->keys = tu_jwks(keys_text);
	assert_int_equal(c->keys->n_keys, 1);
	c->compact = json_string_value(json_object_get(json_object_get(c->root, "output"), "compact"));
	assert_non_null(c->compact);
	free(keys_text);
	json_decref(wrapper);
	free(text);
	free(rel);
}

static void free_case(struct cookbook_case *c)
{
	jwks_unref(c->keys);
	json_decref(c->root);
}

/* Verifies a compact JWS's signature with the case key: header and signature through the same segment
 * rules as jwt_parse (strict base64url), signature through jwk_verify. */
static enum jwt_status verify_compact(const struct cookbook_case *c, const char *compact)
{
	const char *d2 = strrchr(compact, '.');
	uint8_t sig[JWK_SIG_MAX];
	size_t sig_len;

	if (d2 == NULL || b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig), &sig_len) != 0)
		return JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64;
	return jwk_verify(&c->keys->keys[0], c->alg, (const uint8_t *)compact, (size_t)(d2 - compact), sig,
	                  sig_len);
}

static void run_attached(const char *file, enum jwt_alg want_alg)
{
	struct cookbook_case c;
	struct jwt tok;
	struct jwt_verify_params p = {.clock_skew_s = 60};
	char *tampered;
	const char *kid;

	load_case(file, &c);
	assert_int_equal(c.alg, want_alg);
	assert_int_equal(verify_compact(&c, c.compact), JWT_STATUS_OK);
	/* Header parsing agrees with the example: alg and kid. */
	assert_int_equal(jwt_parse(&tok, c.compact, strlen(c.compact), 0, 0),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	assert_int_equal(tok.alg, want_alg);
	kid = json_string_value(
	        json_object_get(json_object_get(json_object_get(c.root, "input"), "key"), "kid"));
	assert_int_equal(tok.kid_len, strlen(kid));
	assert_memory_equal(tok.kid, kid, tok.kid_len);
	jwt_release(&tok);
	assert_int_equal(jwt_check(&p, c.keys, c.compact, strlen(c.compact), 0, &tok),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	jwt_release(&tok);
	/* One payload character changed: the signature no longer verifies. */
	tampered = strdup(c.compact);
	{
		char *p1 = strchr(tampered, '.') + 1;
		*p1 = *p1 == 'S' ? 'T' : 'S';
	}
	assert_int_equal(verify_compact(&c, tampered), JWT_STATUS_VERIFICATION_FAIL);
	free(tampered);
	free_case(&c);
}

static void test_4_1_rs256(void **state)
{
	(void)state;
	run_attached("4_1.rsa_v15_signature.json", JWT_ALG_RS256);
}

static void test_4_2_ps384(void **state)
{
	(void)state;
	run_attached("4_2.rsa-pss_signature.json", JWT_ALG_PS384);
}

static void test_4_3_es512(void **state)
{
	(void)state;
	run_attached("4_3.ecdsa_signature.json", JWT_ALG_ES512);
}

static void test_4_4_hs256(void **state)
{
	(void)state;
	run_attached("4_4.hmac-sha2_integrity_protection.json", JWT_ALG_HS256);
}

/* 4.5: detached content. The compact form "header..sig" must be refused; the same signature verifies
 * only once the payload is attached, which proves the refusal is about the form, not the key. */
static void test_4_5_detached_rejected(void **state)
{
	struct cookbook_case c;
	struct jwt tok;
	struct jwt_verify_params p = {.clock_skew_s = 60};
	const char *payload;
	char *pb, *attached, *d1;

	(void)state;
	load_case("4_5.signature_with_detached_content.json", &c);
	assert_non_null(strstr(c.compact, ".."));
	assert_int_equal(jwt_check(&p, c.keys, c.compact, strlen(c.compact), 0, &tok),
	                 JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON);
	jwt_release(&tok);
	assert_int_equal(verify_compact(&c, c.compact), JWT_STATUS_VERIFICATION_FAIL);
	payload = json_string_value(json_object_get(json_object_get(c.root, "input"), "payload"));
	pb = tu_b64s(payload);
	d1 = strchr(c.compact, '.');
	attached = tu_fmt("%.*s.%s%s", (int)(d1 - c.compact), c.compact, pb, d1 + 1);
	assert_int_equal(verify_compact(&c, attached), JWT_STATUS_OK);
	free(attached);
	free(pb);
	free_case(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_4_1_rs256),
	        cmocka_unit_test(test_4_2_ps384),
	        cmocka_unit_test(test_4_3_es512),
	        cmocka_unit_test(test_4_4_hs256),
	        cmocka_unit_test(test_4_5_detached_rejected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
