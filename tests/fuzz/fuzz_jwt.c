/* fuzz_jwt.c: libFuzzer target: parse and verify arbitrary bytes as a token against a fixed small JWKS
 * (one key of each type), with audiences and an issuer configured so every check runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwtgate/jwt.h"
#include "jwtgate/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* EC P-256 and Ed25519 keys of RFC 7515 A.3 / RFC 8037 A.2, an RSA key from RFC 7515 A.2, an HMAC key. */
static const char fuzz_jwks_text[] =
        "{\"keys\":["
        "{\"kty\":\"EC\",\"kid\":\"ec\",\"crv\":\"P-256\",\"x\":"
        "\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
        "{\"kty\":\"OKP\",\"kid\":\"ed\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_"
        "7TyWQHOg7hcvPapiMlrwIaaPcHURo\"},"
        "{\"kty\":\"RSA\",\"kid\":\"rsa\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_"
        "wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_"
        "YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-"
        "UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_"
        "h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ\",\"e\":\"AQAB\"},"
        "{\"kty\":\"oct\",\"kid\":\"hs\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-"
        "1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow\"}"
        "]}";

static struct jwks *fuzz_keys;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *auds[] = {"api.example.com", "https://other.example/"};
	struct jwt_verify_params p = {
	        .issuer = "joe", .audiences = auds, .n_audiences = 2, .clock_skew_s = 60};
	struct jwt tok, ref;
	enum jwt_status st, ref_st;

	if (fuzz_keys == NULL) {
		log_set_level(LOG_LEVEL_ERROR);
		if (jwks_parse(fuzz_jwks_text, strlen(fuzz_jwks_text), "fuzz", &fuzz_keys) != JWT_STATUS_OK ||
		    fuzz_keys->n_keys != 4)
			abort();
	}
	st = jwt_check(&p, fuzz_keys, (const char *)data, size, 1300819380, &tok);
	if ((unsigned)st >= JWT_STATUS_COUNT)
		abort();
	/* Differential: jansson alone (the reference) must come to the same verdict as the in-place reading
	 * of plain JSON (jsonscan.h), on the same claims. */
	ref_st = jwt_parse(&ref, (const char *)data, size, 0, JWT_PARSE_JSON_ONLY);
	if (ref_st == JWT_STATUS_OK)
		ref_st = jwt_verify(&p, fuzz_keys, &ref, 1300819380);
	if (ref_st != st || (st == JWT_STATUS_OK && (ref.has_exp != tok.has_exp || ref.exp != tok.exp ||
	                                             ref.n_aud != tok.n_aud || ref.iss_len != tok.iss_len)))
		abort();
	jwt_release(&ref);
	/* Claims-only path with no audience / issuer, as a cache hit would run it. */
	if (tok.payload_b64 != NULL) {
		struct jwt_verify_params q = {.clock_skew_s = 0};
		(void)jwt_verify_claims(&q, &tok, 0);
		(void)jwt_verify_signature(fuzz_keys, &tok);
	}
	jwt_release(&tok);
	return 0;
}
