/* fuzz_jwks.c: libFuzzer target: parse arbitrary bytes as a JWKS, and exercise every loaded key with a
 * fixed message and signature (all must fail, none may crash). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "jwt/jwk.h"
#include "core/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t msg[] = "eyJhbGciOiJFUzI1NiJ9.e30";
	static uint8_t sig[512];
	static bool is_init;
	struct jwks *ks = NULL;
	enum jwt_status st;
	size_t i;
	int a;

	if (!is_init) {
		log_set_level(LOG_LEVEL_ERROR);
		is_init = true;
	}
	st = jwks_parse((const char *)data, size, "fuzz", &ks);
	if ((st == JWT_STATUS_OK) != (ks != NULL))
		abort();
	if (ks == NULL)
		return 0;
	if (ks->n_keys == 0 || ks->n_keys > JWKS_MAX_KEYS)
		abort();
	for (i = 0; i < ks->n_keys; i++) {
		for (a = JWT_ALG_RS256; a <= JWT_ALG_HS512; a++) {
			size_t len = ks->keys[i].kty == JWK_KTY_RSA  ? ks->keys[i].rsa_len
			             : ks->keys[i].kty == JWK_KTY_EC ? 2 * ks->keys[i].ec_coord_len
			                                             : 64;
			if (len > sizeof(sig))
				len = sizeof(sig);
			if (jwk_verify(&ks->keys[i], (enum jwt_alg)a, msg, sizeof(msg) - 1, sig, len) ==
			    JWT_STATUS_OK)
				abort(); /* an all-zero signature never verifies */
		}
	}
	jwks_unref(jwks_ref(ks));
	jwks_unref(ks);
	return 0;
}
