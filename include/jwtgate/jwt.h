/* jwt.h: compact JWS / JWT parsing and verification (RFC 7515, RFC 7519), without libjwt.
 *
 * Why not libjwt: reference/security.md section 1 (alg chosen by the token, none accepted with an empty
 * key, crash on huge tokens). Here the token length is capped first, base64url is strict, JSON members
 * may not repeat, and the signature primitive is chosen by the key type (jwk.h).
 *
 * Use from the auth stage (one call per token, on a worker):
 *
 *	struct jwt tok;
 *	enum jwt_status st = jwt_check(&params, keys, token, token_len, now, &tok);
 *	if (st == JWT_STATUS_OK) { ... tok.iss, tok.aud, tok.has_exp / tok.exp (cache lifetime) ... }
 *	jwt_release(&tok);   // always, whatever st is
 *
 * Checks run in the order of reference/jwt-behaviour.md "Order of checks"; the first failure wins:
 * parse -> issuer -> time (nbf, exp, then the extensions require_expiration and max_lifetime) ->
 * audience -> key set present -> signature.
 *
 * Documented choices (jwtgate goes further than jwt_verify_lib):
 * - token longer than the cap (default JWT_MAX_TOKEN_LEN_DEFAULT, at most JWT_MAX_TOKEN_LEN_LIMIT):
 *   JWT_STATUS_BAD_FORMAT, before any decoding.
 * - "crit" header present (any value): JWT_STATUS_VERIFICATION_FAIL at parse time; we implement no
 *   extension, and RFC 7515 section 4.1.11 says an unknown critical extension makes the JWS invalid.
 * - "jwk", "jku", "x5u", "x5c", "x5t" headers are ignored: keys come only from the configured JWKS.
 * - iat / nbf / exp must be JSON integers in [0, 2^63): a string or a fraction such as 1.5 or 1e9 is
 *   "not an integer"; a negative number, or a real that is negative or beyond 2^63 (1e300), is "out of
 *   range"; an integer too large for jansson makes the payload invalid JSON. exp = 0 is an expiry in 1970
 *   (jwt_verify_lib would treat it as absent).
 * - require_expiration and no exp: JWT_STATUS_EXPIRED. max_lifetime_s set and exp - (iat, or now when
 *   there is no iat) > max_lifetime_s, or no exp at all: JWT_STATUS_EXPIRED.
 * - an empty signature segment parses (as jwt_verify_lib) and fails the signature step.
 * - audiences configured and the token has no aud: JWT_STATUS_AUDIENCE_NOT_ALLOWED (403).
 */
#ifndef JWTGATE_JWT_H
#define JWTGATE_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jwtgate/jwk.h"
#include "jwtgate/jwt-t.h"

#define JWT_MAX_TOKEN_LEN_DEFAULT 8192
#define JWT_MAX_TOKEN_LEN_LIMIT   (64 * 1024)

/* Per-provider verification settings; borrowed strings, owned by the config. */
struct jwt_verify_params {
	const char *issuer;     /* NULL or "" = iss not checked */
	char *const *audiences; /* any match passes; n_audiences == 0 = aud not checked */
	size_t n_audiences;
	uint64_t clock_skew_s;   /* applied to nbf and exp (default 60 in the config) */
	bool require_expiration; /* extension: a token without exp is refused */
	uint64_t max_lifetime_s; /* extension: 0 = unlimited */
	size_t max_token_len;    /* 0 = JWT_MAX_TOKEN_LEN_DEFAULT; clamped to JWT_MAX_TOKEN_LEN_LIMIT */
	bool payload_json;       /* jwt_check builds tok->payload (claimToHeaders needs the claims) */
};

/* jwt_parse flags. */
#define JWT_PARSE_PAYLOAD_JSON 1 /* always build tok->payload with jansson */
#define JWT_PARSE_JSON_ONLY                                                                                  \
	2 /* read header and payload with jansson only: the reference that tests                             \
	     and fuzz_jwt compare the in-place reading with */

/* A string inside the token's decoded JSON (or inside jansson's copy of it); not NUL-terminated. */
struct jwt_str {
	const char *s;
	size_t len;
};

#define JWT_AUD_INLINE  4    /* aud values held without allocation */
#define JWT_JSON_INLINE 1536 /* decoded header + payload held without allocation; larger ones: heap */

/* A parsed token. Pointers marked "borrowed" point into the caller's token bytes (which must outlive the
 * struct) or into header / payload (which the struct owns). Fields are read-only for callers. */
struct jwt {
	enum jwt_alg alg;
	json_t *header; /* owned; NULL unless the header is not plain JSON (jsonscan.h) and jansson read it */
	json_t *payload; /* owned; the claims object, built when asked (JWT_PARSE_PAYLOAD_JSON) or when the
	                    payload is not plain JSON; otherwise NULL */
	const char *kid; /* borrowed from the decoded header; NULL when absent */
	size_t kid_len;
	const char *iss; /* borrowed from the decoded payload; NULL when absent; not NUL-terminated */
	size_t iss_len;
	const struct jwt_str *aud; /* n_aud values (a string aud is one value); NULL when there is no aud */
	size_t n_aud;
	bool has_iat, has_nbf, has_exp;
	int64_t iat, nbf, exp;     /* valid when has_*; exp is what a verified-token cache keys on */
	const char *signing_input; /* borrowed: "<header>.<payload>" as received */
	size_t signing_input_len;
	const char *payload_b64; /* borrowed: the payload segment (forwardPayloadHeader) */
	size_t payload_b64_len;
	struct jwt_str aud_inline[JWT_AUD_INLINE];
	struct jwt_str *aud_heap; /* owned: more than JWT_AUD_INLINE aud values */
	char *json_heap;          /* owned: decoded header + payload larger than json_inline */
	size_t sig_len;           /* decoded length; > JWK_SIG_MAX means too long for any key */
	uint8_t sig[JWK_SIG_MAX]; /* decoded signature (only sig_len <= JWK_SIG_MAX bytes are stored) */
	char json_inline[JWT_JSON_INLINE]; /* decoded header, then decoded payload */
};

/* Static English message of a status (the table of jwt-behaviour.md); "Unknown status" out of range. */
const char *jwt_status_message(enum jwt_status st);

/* Algorithm by its exact, case-sensitive JWS name; JWT_ALG_UNSET for anything else ("none" included). */
enum jwt_alg jwt_alg_from_name(const char *name, size_t len);
/* JWS name of an algorithm ("RS256"...), "" for JWT_ALG_UNSET. */
const char *jwt_alg_name(enum jwt_alg alg);

/* Zeroes tok so jwt_release is always safe. */
void jwt_init(struct jwt *tok);
/* Frees what tok owns (header, payload) and re-initialises it. */
void jwt_release(struct jwt *tok);

/* Parses token[0..len) into tok (which is initialised first). max_len: 0 = default; flags:
 * JWT_PARSE_*. Returns JWT_STATUS_OK or a parse status (4-22, or VERIFICATION_FAIL for crit). On failure
 * tok may still hold what was parsed so far; jwt_release it in every case. A plain header and payload
 * (jsonscan.h: what tokens nearly always are) are read in place without allocating; anything else goes
 * through jansson with duplicate members refused. */
enum jwt_status jwt_parse(struct jwt *tok, const char *token, size_t len, size_t max_len, unsigned flags);

/* Steps 3-7 on a parsed token: issuer, time, audience, keys (NULL = no key set yet ->
 * JWT_STATUS_JWKS_FETCH_FAIL), signature. now: wall-clock seconds. Pure; does not modify tok. */
enum jwt_status jwt_verify(const struct jwt_verify_params *p, const struct jwks *keys, const struct jwt *tok,
                           int64_t now);

/* Steps 3-5 only (issuer, time, audience): what a verified-token cache hit must re-check. */
enum jwt_status jwt_verify_claims(const struct jwt_verify_params *p, const struct jwt *tok, int64_t now);
/* Step 7 only: key selection and signature (jwt-behaviour.md "Key selection"). */
enum jwt_status jwt_verify_signature(const struct jwks *keys, const struct jwt *tok);

/* Whether the token carries a kid that no key of keys carries (false without a kid or a key set). Key
 * selection tries the keys without a kid too, so a token signed with a key rotated in after the set was
 * fetched fails with "Jwt verification fails" rather than JwksKidAlgMismatch when the set has a kid-less
 * key; this tells that case apart for the refetch decision without changing the token's answer. */
bool jwt_kid_unknown(const struct jwks *keys, const struct jwt *tok);

/* jwt_parse with p->max_token_len, then jwt_verify. The one entry point for the auth stage. */
enum jwt_status jwt_check(const struct jwt_verify_params *p, const struct jwks *keys, const char *token,
                          size_t len, int64_t now, struct jwt *tok);

/* Audience compare of jwt-behaviour.md: strips "http://" or "https://" and one trailing '/' from both. */
bool jwt_audience_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
