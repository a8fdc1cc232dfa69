/* jwk.h: JSON Web Keys (RFC 7517) for signature verification.
 *
 * A JWKS text is parsed once (start-up or remote fetch, on the control thread) into an immutable,
 * reference-counted struct jwks of ready OpenSSL keys; workers only read it, so a verify never parses
 * JSON or PEM. Rules (reference/jwt-behaviour.md "Algorithms and keys", security.md section 2):
 * - kty RSA: n, e; 2048 <= bits <= 8192; e odd and >= 3 (so e = 1 is refused); alg RS* or PS*.
 * - kty EC: crv P-256 / P-384 / P-521, alg ES256 / ES384 / ES512 matching crv, P-256 when neither is
 *   given; x and y at most the coordinate size (shorter values are left-padded); the point is built with
 *   EVP_PKEY_fromdata and checked with EVP_PKEY_public_check, so an off-curve point is refused.
 * - kty OKP: crv Ed25519 only, x exactly 32 bytes, alg EdDSA if given.
 * - kty oct: k of at least 32 bytes (RFC 7518 section 3.2 asks for a key as large as the hash; 32 bytes is
 *   the HS256 size), and at least the hash size of the key's alg when alg is given (48 for HS384, 64 for
 *   HS512). An empty or shorter k is refused with JWT_STATUS_JWKS_HMAC_KEY_BAD_K. At verify time the key
 *   must also be at least as long as the token alg's hash.
 * - "use" other than "sig", or "key_ops" without "verify": the key is skipped (not an error).
 * - kid, when present, must be a string (else the key is skipped).
 * - An invalid key is skipped with a log line naming it (kid or index) and why (jwk_from_json); the JWKS
 *   is an error only when it is not JSON, has no "keys" array, or no key is valid.
 * - Duplicate kid: both keys are kept, in document order; a token with that kid tries both in order.
 */
#ifndef JWTGATE_JWK_H
#define JWTGATE_JWK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/types.h>

#include "jwtgate/jwt-t.h"

#define JWKS_MAX_TEXT_LEN (1024 * 1024) /* bytes of JWKS JSON accepted (remote bodies are peer-sized) */
#define JWKS_MAX_KEYS     256           /* entries of "keys"; more is a JWKS error */
#define JWK_RSA_MIN_BITS  2048
#define JWK_RSA_MAX_BITS  8192
#define JWK_HMAC_MIN_LEN  32
#define JWK_HMAC_MAX_LEN  1024
#define JWK_SIG_MAX       1024 /* largest signature any accepted key can make (RSA 8192 bits) */
#define JWK_WHY_MAX       192  /* bytes of a refused key's reason (jwk_from_json), NUL included */

enum jwk_kty { JWK_KTY_RSA = 1, JWK_KTY_EC, JWK_KTY_OKP, JWK_KTY_OCT };

struct jwk {
	char *kid; /* NUL-terminated copy, NULL when absent */
	size_t kid_len;
	enum jwk_kty kty;
	enum jwt_alg alg;    /* the key's "alg", JWT_ALG_UNSET when absent */
	enum jwt_alg ec_alg; /* EC: the only alg the curve allows */
	EVP_PKEY *pkey;      /* RSA, EC, OKP; owned */
	BIGNUM *ec_order;    /* EC: group order n, for the r, s < n check; owned */
	size_t ec_coord_len; /* EC: bytes per coordinate (32, 48, 66) */
	size_t rsa_len;      /* RSA: modulus bytes = signature length */
	uint8_t *secret;     /* oct: owned, cleansed on free */
	size_t secret_len;
	/* RSA, EC: a verify context per algorithm the key may serve, set up once at load (padding, digest);
	 * a verification duplicates it instead of fetching algorithms from OpenSSL's provider store,
	 * which costs as much as a third of an RSA-2048 verify. NULL where not applicable. Owned. */
	EVP_PKEY_CTX *verify_tmpl[JWT_ALG_HS512 + 1];
};

struct jwks {
	unsigned long refs; /* atomic; see jwks_ref / jwks_unref */
	size_t n_keys;
	struct jwk *keys; /* n_keys valid keys in document order */
};

/* Parses text[0..len) (need not be NUL-terminated; len <= JWKS_MAX_TEXT_LEN) into a new key set with one
 * reference, stored in *out. origin names the source in log lines ("inline", a path, a URI).
 * Returns JWT_STATUS_OK, or JWT_STATUS_JWKS_PARSE_ERROR (bad JSON, duplicate member, too long),
 * JWKS_NO_KEYS, JWKS_BAD_KEYS (not an array, or more than JWKS_MAX_KEYS) or JWKS_NO_VALID_KEYS; *out is
 * NULL on failure. Start-up / control-thread tier (allocates). */
enum jwt_status jwks_parse(const char *text, size_t len, const char *origin, struct jwks **out);

/* Takes one more reference (any thread). Returns ks. */
struct jwks *jwks_ref(struct jwks *ks);
/* Drops one reference; the last one frees the keys. NULL is ignored. */
void jwks_unref(struct jwks *ks);

/* Builds one key from a JWK object. Returns JWT_STATUS_OK and fills *key (release with jwk_clear), or the
 * jwt_verify_lib status saying why the key is invalid (statuses 33-65, JWKS_RSA_PARSE_ERROR for weak RSA,
 * JWKS_HMAC_KEY_BAD_K for a short secret) with *key cleared. Does not look at "use" / "key_ops".
 * On failure, when why is not NULL, why[0..why_cap) gets the reason in words that name this key's
 * defect, with its numbers ("RSA modulus is 1024 bits; at least 2048 are required", "HMAC secret is 16
 * bytes; HS256 requires at least 32 ...", "RSA exponent 65536 is even; ...", "alg \"ES521\" is not a JWA
 * algorithm name ..."), or the status message where that says it all; JWK_WHY_MAX bytes are enough.
 * Peer text in it (alg, crv, kty) is cut and has non-printable bytes replaced. The status, which is
 * what tokens are answered with, is the same with or without why. */
enum jwt_status jwk_from_json(const json_t *obj, struct jwk *key, char *why, size_t why_cap);
/* Frees what a key owns and zeroes it. */
void jwk_clear(struct jwk *key);
/* Whether a JWK object may be used for signatures ("use" absent or "sig"; "key_ops" absent or containing
 * "verify"). */
bool jwk_json_is_for_verify(const json_t *obj);

/* True when the key's type (and curve) can verify alg: RSA -> RS* / PS*, EC -> the ES alg of its curve,
 * OKP -> EdDSA, oct -> HS* with a long enough secret. The token header never chooses the primitive. */
bool jwk_alg_fits(const struct jwk *key, enum jwt_alg alg);

/* The one signature primitive: checks sig over data with key for alg. Returns JWT_STATUS_OK,
 * JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH (EdDSA with a signature that is not 64 bytes) or
 * JWT_STATUS_VERIFICATION_FAIL (anything else, including an alg that does not fit the key, a signature of
 * the wrong size, ECDSA r or s equal to 0 or >= n). ECDSA takes raw R || S of exactly 2 x coordinate
 * bytes (RFC 7518 section 3.4); RSA a signature of exactly the modulus size; PS* uses MGF1 with the same
 * hash and a salt as long as the hash (RFC 7518 section 3.5); HMAC is compared in constant time. */
enum jwt_status jwk_verify(const struct jwk *key, enum jwt_alg alg, const uint8_t *data, size_t len,
                           const uint8_t *sig, size_t sig_len);

#endif
