/* fuzz_jwt.c: libFuzzer target: parse and verify arbitrary bytes as a token against a fixed small JWKS
 * (one key of each type), with audiences and an issuer configured so every check runs. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt/b64url.h"
#include "jwt/jwt.h"
#include "core/log.h"

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

/* Aborts unless both readings agree on what the checks read (the reference is jansson alone). */
static void fuzz_same_reading(const struct jwt *a, const struct jwt *b)
{
	size_t i;

	if (a->alg != b->alg || (a->kid == NULL) != (b->kid == NULL) || a->kid_len != b->kid_len ||
	    (a->kid != NULL && memcmp(a->kid, b->kid, a->kid_len) != 0) ||
	    (a->iss == NULL) != (b->iss == NULL) || a->iss_len != b->iss_len ||
	    (a->iss != NULL && memcmp(a->iss, b->iss, a->iss_len) != 0) || a->n_aud != b->n_aud ||
	    a->has_iat != b->has_iat || a->has_nbf != b->has_nbf || a->has_exp != b->has_exp ||
	    (a->has_iat && a->iat != b->iat) || (a->has_nbf && a->nbf != b->nbf) ||
	    (a->has_exp && a->exp != b->exp) || a->sig_len != b->sig_len)
		abort();
	for (i = 0; i < a->n_aud; i++) {
		if (a->aud[i].len != b->aud[i].len || memcmp(a->aud[i].s, b->aud[i].s, a->aud[i].len) != 0)
			abort();
	}
}

/* Parses and verifies token[0..len) twice, in place (jsonscan) and with jansson alone, and aborts on any
 * difference in status or in the fields read. */
static void fuzz_check_token(const char *token, size_t len)
{
	static char *auds[] = {"api.example.com", "https://other.example/"};
	struct jwt_verify_params p = {
	        .issuer = "joe", .audiences = auds, .n_audiences = 2, .clock_skew_s = 60};
	struct jwt tok, ref;
	enum jwt_status st = jwt_parse(&tok, token, len, 0, 0);
	enum jwt_status ref_st = jwt_parse(&ref, token, len, 0, JWT_PARSE_JSON_ONLY);

	if ((unsigned)st >= JWT_STATUS_COUNT || st != ref_st)
		abort();
	if (st == JWT_STATUS_OK) {
		fuzz_same_reading(&tok, &ref);
		st = jwt_verify(&p, fuzz_keys, &tok, 1300819380);
		if (st != jwt_verify(&p, fuzz_keys, &ref, 1300819380))
			abort();
		/* Claims-only path with no audience / issuer, as a cache hit would run it. */
		{
			struct jwt_verify_params q = {.clock_skew_s = 0};

			(void)jwt_verify_claims(&q, &tok, 0);
			(void)jwt_verify_signature(fuzz_keys, &tok);
		}
	}
	jwt_release(&ref);
	jwt_release(&tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char built[16384];
	const uint8_t *nl;

	if (fuzz_keys == NULL) {
		log_set_level(LOG_LEVEL_ERROR);
		if (jwks_parse(fuzz_jwks_text, strlen(fuzz_jwks_text), "fuzz", &fuzz_keys) != JWT_STATUS_OK ||
		    fuzz_keys->n_keys != 4)
			abort();
	}
	/* The input as a token. */
	fuzz_check_token((const char *)data, size);
	/* The input as "<header JSON>\n<payload JSON>", encoded into a token with a dummy signature: this
	 * reaches the JSON readers with any JSON the fuzzer makes, not only with what survives base64url. */
	nl = memchr(data, '\n', size);
	if (nl != NULL && size <= 4096) {
		size_t hlen = (size_t)(nl - data), plen = size - hlen - 1, o = 0, n = 0;

		if (b64url_encode(data, hlen, built, sizeof(built), &n) != 0)
			return 0;
		o = n;
		built[o++] = '.';
		if (b64url_encode(nl + 1, plen, built + o, sizeof(built) - o, &n) != 0)
			return 0;
		o += n;
		memcpy(built + o, ".AAAA", 5);
		fuzz_check_token(built, o + 5);
	}
	return 0;
}
