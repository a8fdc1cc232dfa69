/* test_wycheproof.c: Project Wycheproof signature vectors (tests/data/wycheproof/, Apache-2.0)
 * through the same primitive the verifier uses (jwk_verify), with keys built by the JWK loader from each
 * group's JWK. valid -> accepted, invalid -> rejected, acceptable -> the choice recorded in
 * wycheproof_acceptable below. Every case of a file is counted against its numberOfTests, so no case can
 * be skipped silently. */
#include <setjmp.h>
#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jwt_testutil.h"
#include "jwtgate/jwk.h"

/* "acceptable" cases and what jwtgate does with them. */
static const struct {
	const char *file;
	long tc_id;
	bool is_accepted;
	const char *why;
} wycheproof_acceptable[] = {
        /* PKCS#1 v1.5 DigestInfo without the NULL parameters: rejected. RFC 7518 section 3.3 names
         * RSASSA-PKCS1-v1_5 with the DigestInfo of RFC 8017 section 9.2, which carries NULL; OpenSSL 3
         * re-encodes and compares, so it refuses the variant, and so do we (stricter is safe). */
        {"rsa_signature_2048_sha256_test.json", 8, false, "MissingNull"},
};

struct wycheproof_file {
	const char *name;
	enum jwt_alg alg;
	const char *jwk_member; /* group member holding the JWK */
};

static void run_file(const struct wycheproof_file *wf)
{
	char *rel = tu_fmt("wycheproof/%s", wf->name);
	size_t len, gi, ti, run = 0, n_valid = 0, n_invalid = 0, n_acceptable = 0;
	char *text = tu_read_data(rel, &len);
	json_error_t err;
	json_t *root = json_loadb(text, len, 0, &err);
	json_t *groups;

	assert_non_null(root);
	groups = json_object_get(root, "testGroups");
	assert_true(json_array_size(groups) > 0);
	for (gi = 0; gi < json_array_size(groups); gi++) {
		json_t *g = json_array_get(groups, gi), *tests = json_object_get(g, "tests");
		json_t *jwk = json_object_get(g, wf->jwk_member);
		struct jwk key;
		enum jwt_status kst;

		json_t *built = NULL;

		if (jwk == NULL) {
			/* Some EC groups carry no JWK (their coordinates have leading zeros stripped in the
			 * source); build one from wx / wy, fixed to the curve size as RFC 7518
			 * section 6.2.1.2 asks. */
			json_t *pk = json_object_get(g, "publicKey");
			const char *curve = json_string_value(json_object_get(pk, "curve"));
			size_t clen = strcmp(curve, "secp256r1") == 0 ? 32 : 48, xl, yl;
			uint8_t *x = tu_unhex(json_string_value(json_object_get(pk, "wx")), &xl);
			uint8_t *y = tu_unhex(json_string_value(json_object_get(pk, "wy")), &yl);
			uint8_t xf[48] = {0}, yf[48] = {0};
			char *xb, *yb, *txt;

			/* wx / wy are unsigned big-endian hex, possibly with a 00 sign byte. */
			assert_true(xl <= clen + 1 && yl <= clen + 1);
			memcpy(xf + clen - (xl > clen ? clen : xl), x + (xl > clen ? 1 : 0),
			       xl > clen ? clen : xl);
			memcpy(yf + clen - (yl > clen ? clen : yl), y + (yl > clen ? 1 : 0),
			       yl > clen ? clen : yl);
			xb = tu_b64(xf, clen);
			yb = tu_b64(yf, clen);
			txt = tu_fmt("{\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
			             clen == 32 ? "P-256" : "P-384", xb, yb);
			built = json_loads(txt, 0, NULL);
			jwk = built;
			free(txt);
			free(xb);
			free(yb);
			free(x);
			free(y);
		}
		assert_non_null(jwk);
		kst = jwk_from_json(jwk, &key, NULL, 0);
		json_decref(built);
		for (ti = 0; ti < json_array_size(tests); ti++) {
			json_t *t = json_array_get(tests, ti);
			const char *result = json_string_value(json_object_get(t, "result"));
			long id = (long)json_integer_value(json_object_get(t, "tcId"));
			size_t msg_len, sig_len, k;
			uint8_t *msg = tu_unhex(json_string_value(json_object_get(t, "msg")), &msg_len);
			uint8_t *sig = tu_unhex(json_string_value(json_object_get(t, "sig")), &sig_len);
			bool is_accepted = kst == JWT_STATUS_OK && jwk_verify(&key, wf->alg, msg, msg_len,
			                                                      sig, sig_len) == JWT_STATUS_OK;
			bool want;

			if (strcmp(result, "valid") == 0) {
				want = true;
				n_valid++;
			} else if (strcmp(result, "invalid") == 0) {
				want = false;
				n_invalid++;
			} else {
				bool found = false;

				assert_string_equal(result, "acceptable");
				want = false;
				for (k = 0; k < JG_ARRAY_SIZE(wycheproof_acceptable); k++) {
					if (strcmp(wycheproof_acceptable[k].file, wf->name) == 0 &&
					    wycheproof_acceptable[k].tc_id == id) {
						want = wycheproof_acceptable[k].is_accepted;
						found = true;
					}
				}
				if (!found)
					fail_msg("%s tcId %ld: acceptable case without a recorded choice",
					         wf->name, id);
				n_acceptable++;
			}
			if (is_accepted != want)
				fail_msg("%s tcId %ld (%s, %s): %s", wf->name, id, result,
				         json_string_value(json_object_get(t, "comment")),
				         is_accepted ? "accepted" : "rejected");
			run++;
			free(msg);
			free(sig);
		}
		if (kst == JWT_STATUS_OK)
			jwk_clear(&key);
	}
	assert_int_equal(run, (size_t)json_integer_value(json_object_get(root, "numberOfTests")));
	print_message("%s: %zu cases (%zu valid, %zu invalid, %zu acceptable)\n", wf->name, run, n_valid,
	              n_invalid, n_acceptable);
	assert_true(n_valid > 0 && n_invalid > 0);
	json_decref(root);
	free(text);
	free(rel);
}

static void test_ecdsa_p256(void **state)
{
	static const struct wycheproof_file f = {"ecdsa_secp256r1_sha256_p1363_test.json", JWT_ALG_ES256,
	                                         "publicKeyJwk"};

	(void)state;
	run_file(&f);
}

static void test_ecdsa_p384(void **state)
{
	static const struct wycheproof_file f = {"ecdsa_secp384r1_sha384_p1363_test.json", JWT_ALG_ES384,
	                                         "publicKeyJwk"};

	(void)state;
	run_file(&f);
}

static void test_ed25519(void **state)
{
	static const struct wycheproof_file f = {"ed25519_test.json", JWT_ALG_EDDSA, "publicKeyJwk"};

	(void)state;
	run_file(&f);
}

static void test_rsa_pss(void **state)
{
	static const struct wycheproof_file f = {"rsa_pss_2048_sha256_mgf1_32_test.json", JWT_ALG_PS256,
	                                         "publicKeyJwk"};

	(void)state;
	run_file(&f);
}

static void test_rsa_pkcs1(void **state)
{
	static const struct wycheproof_file f = {"rsa_signature_2048_sha256_test.json", JWT_ALG_RS256,
	                                         "keyJwk"};

	(void)state;
	run_file(&f);
}

/* The folder holds exactly the files above: a new vector file must be wired in here. */
static void test_folder_listing(void **state)
{
	static const char *known[] = {"ecdsa_secp256r1_sha256_p1363_test.json",
	                              "ecdsa_secp384r1_sha384_p1363_test.json", "ed25519_test.json",
	                              "rsa_pss_2048_sha256_mgf1_32_test.json",
	                              "rsa_signature_2048_sha256_test.json"};
	char path[4096];
	DIR *d;
	struct dirent *e;
	size_t n = 0, i;

	(void)state;
	snprintf(path, sizeof(path), "%s/wycheproof", JWTGATE_TEST_DATA);
	d = opendir(path);
	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		size_t l = strlen(e->d_name);
		bool found = false;

		if (l < 10 || strcmp(e->d_name + l - 10, "_test.json") != 0)
			continue;
		for (i = 0; i < JG_ARRAY_SIZE(known); i++)
			found = found || strcmp(known[i], e->d_name) == 0;
		if (!found)
			fail_msg("vector file %s is not run by this test", e->d_name);
		n++;
	}
	closedir(d);
	assert_int_equal(n, JG_ARRAY_SIZE(known));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_folder_listing), cmocka_unit_test(test_ecdsa_p256),
	        cmocka_unit_test(test_ecdsa_p384),     cmocka_unit_test(test_ed25519),
	        cmocka_unit_test(test_rsa_pss),        cmocka_unit_test(test_rsa_pkcs1),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
