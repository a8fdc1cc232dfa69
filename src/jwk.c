/* jwk.c: JWKS parsing into OpenSSL keys, and the one signature primitive (see jwk.h for the rules). */
#include "jwtgate/jwk.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "jwtgate/b64url.h"
#include "jwtgate/common.h"
#include "jwtgate/jwt.h"
#include "jwtgate/log.h"

static void jwk_build_verify_templates(struct jwk *key);

#define JWK_EC_COORD_MAX  66   /* P-521 */
#define JWK_RSA_E_MAX     8    /* bytes of public exponent accepted (64 bits, OpenSSL's own bound) */
#define JWK_B64_FIELD_MAX 4096 /* encoded bytes of any key member we decode (n of 8192 bits: 1366) */
#define JWK_NAME_LOG_MAX  64   /* characters of a kid copied into a log line */

struct jwk_curve {
	const char *crv;
	const char *group;
	int nid;
	size_t coord_len;
	enum jwt_alg alg;
};

static const struct jwk_curve jwk_curves[] = {
        {"P-256", "prime256v1", NID_X9_62_prime256v1, 32, JWT_ALG_ES256},
        {"P-384", "secp384r1", NID_secp384r1, 48, JWT_ALG_ES384},
        {"P-521", "secp521r1", NID_secp521r1, 66, JWT_ALG_ES512},
};

/* Why a key was refused, in words naming this key's defect ("RSA modulus is 1024 bits; at least 2048 are
 * required"), for the log line of a skipped key and config errors; the jwt_verify_lib status alone
 * ("... missing or has a parse error") does not tell a user what to fix. buf may be NULL (not wanted). */
struct jwk_why {
	char *buf;
	size_t cap;
};

/* Writes the reason (when wanted) and returns st, so a refusal is one statement. */
static enum jwt_status jwk_refuse(const struct jwk_why *why, enum jwt_status st, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static enum jwt_status jwk_refuse(const struct jwk_why *why, enum jwt_status st, const char *fmt, ...)
{
	va_list ap;

	if (why->buf == NULL || why->cap == 0)
		return st;
	va_start(ap, fmt);
	vsnprintf(why->buf, why->cap, fmt, ap);
	va_end(ap);
	return st;
}

/* Copies s[0..n) into out (capacity cap > 4) for a log line or message: a JWKS may be peer data, so
 * non-printable bytes and '"' become '?' (no log injection) and more than JWK_NAME_LOG_MAX characters
 * end in "...". */
static void jwk_safe_copy(const char *s, size_t n, char *out, size_t cap)
{
	size_t j, o = 0;

	for (j = 0; j < n && j < JWK_NAME_LOG_MAX && o + 4 < cap; j++)
		out[o++] = (s[j] >= 0x20 && s[j] < 0x7f && s[j] != '"') ? s[j] : '?';
	if (j < n && o + 4 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* Returns the member when it is a string, else NULL; *is_present tells absent from present-but-not-string. */
static const json_t *jwk_member_string(const json_t *obj, const char *name, bool *is_present)
{
	const json_t *v = json_object_get(obj, name);

	*is_present = v != NULL;
	return json_is_string(v) ? v : NULL;
}

/* Decodes a base64url member into buf (capacity cap). Returns 0 or a negative JG_ERR_*. */
static int jwk_decode_member(const json_t *s, uint8_t *buf, size_t cap, size_t *out_len)
{
	size_t len = json_string_length(s);

	if (len > JWK_B64_FIELD_MAX)
		return JG_ERR_LIMIT;
	return b64url_decode(json_string_value(s), len, buf, cap, out_len);
}

/* Registered JOSE "alg" names (IANA JSON Web Signature and Encryption Algorithms; RFC 7518 sections 3.1,
 * 4.1; RFC 8812; RFC 9864) that jwtgate does not verify with: a key naming one is refused as unsupported
 * rather than as a misspelt name. The JWE ones name encryption keys. */
static const char *const jwk_alg_registered_jws[] = {"none", "ES256K", "Ed25519", "Ed448"};
static const char *const jwk_alg_registered_jwe[] = {"RSA1_5",
                                                     "RSA-OAEP",
                                                     "RSA-OAEP-256",
                                                     "RSA-OAEP-384",
                                                     "RSA-OAEP-512",
                                                     "A128KW",
                                                     "A192KW",
                                                     "A256KW",
                                                     "dir",
                                                     "ECDH-ES",
                                                     "ECDH-ES+A128KW",
                                                     "ECDH-ES+A192KW",
                                                     "ECDH-ES+A256KW",
                                                     "A128GCMKW",
                                                     "A192GCMKW",
                                                     "A256GCMKW",
                                                     "PBES2-HS256+A128KW",
                                                     "PBES2-HS384+A192KW",
                                                     "PBES2-HS512+A256KW"};

static bool jwk_name_in(const char *name, const char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(name, list[i]) == 0)
			return true;
	}
	return false;
}

/* Reads the optional "alg" of a key of type `kty` ("RSA"...), which may name only lo..hi (`allowed` says
 * which in words). Sets key->alg (JWT_ALG_UNSET when absent) and returns JWT_STATUS_OK, or returns `bad`
 * with the reason: not a string, not a JWA name at all (a typo such as "ES521"), a registered name
 * jwtgate does not verify with, or a name of another key type. */
static enum jwt_status jwk_read_alg(const json_t *obj, struct jwk *key, const char *kty, enum jwt_alg lo,
                                    enum jwt_alg hi, const char *allowed, enum jwt_status bad,
                                    const struct jwk_why *why)
{
	const json_t *v = json_object_get(obj, "alg");
	const char *name;
	char shown[JWK_NAME_LOG_MAX + 4];
	bool is_plain;

	key->alg = JWT_ALG_UNSET;
	if (v == NULL)
		return JWT_STATUS_OK;
	if (!json_is_string(v))
		return jwk_refuse(why, bad, "\"alg\" is not a string");
	name = json_string_value(v);
	is_plain = strlen(name) == json_string_length(v); /* no NUL inside */
	jwk_safe_copy(name, json_string_length(v), shown, sizeof(shown));
	key->alg = jwt_alg_from_name(name, json_string_length(v));
	if (key->alg == JWT_ALG_UNSET) {
		if (is_plain &&
		    jwk_name_in(name, jwk_alg_registered_jws, JG_ARRAY_SIZE(jwk_alg_registered_jws)))
			return jwk_refuse(why, bad,
			                  "alg \"%s\" is not supported for verification (%s key: %s)", shown,
			                  kty, allowed);
		if (is_plain &&
		    jwk_name_in(name, jwk_alg_registered_jwe, JG_ARRAY_SIZE(jwk_alg_registered_jwe)))
			return jwk_refuse(
			        why, bad,
			        "alg \"%s\" is an encryption algorithm, not a signature one (%s key: %s)",
			        shown, kty, allowed);
		return jwk_refuse(why, bad,
		                  "alg \"%s\" is not a JWA algorithm name (RFC 7518 section 3.1; %s key: %s)",
		                  shown, kty, allowed);
	}
	if (key->alg < lo || key->alg > hi)
		return jwk_refuse(why, bad, "alg \"%s\" does not fit an %s key (%s)", shown, kty, allowed);
	return JWT_STATUS_OK;
}

/* RSA key from n and e (RFC 7518 section 6.3.1). */
static enum jwt_status jwk_build_rsa(const json_t *obj, struct jwk *key, const struct jwk_why *why)
{
	uint8_t nbuf[JWK_RSA_MAX_BITS / 8 + 8], ebuf[JWK_RSA_E_MAX];
	size_t nlen, elen;
	const json_t *n, *e;
	bool has_n, has_e;
	BIGNUM *bn_n = NULL, *bn_e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	enum jwt_status st;
	char *e_dec = NULL;
	int bits, rc;

	st = jwk_read_alg(obj, key, "RSA", JWT_ALG_RS256, JWT_ALG_PS512, "RS256..RS512, PS256..PS512",
	                  JWT_STATUS_JWKS_RSA_KEY_BAD_ALG, why);
	if (st != JWT_STATUS_OK)
		return st;
	st = JWT_STATUS_JWKS_RSA_PARSE_ERROR;
	n = jwk_member_string(obj, "n", &has_n);
	if (!has_n)
		return JWT_STATUS_JWKS_RSA_KEY_MISSING_N;
	if (n == NULL)
		return JWT_STATUS_JWKS_RSA_KEY_BAD_N;
	e = jwk_member_string(obj, "e", &has_e);
	if (!has_e)
		return JWT_STATUS_JWKS_RSA_KEY_MISSING_E;
	if (e == NULL)
		return JWT_STATUS_JWKS_RSA_KEY_BAD_E;
	rc = jwk_decode_member(n, nbuf, sizeof(nbuf), &nlen);
	if (rc == JG_ERR_PARSE)
		return jwk_refuse(why, st, "RSA \"n\" is not base64url");
	if (rc != 0)
		return jwk_refuse(why, st, "RSA modulus is longer than %d bits", JWK_RSA_MAX_BITS);
	rc = jwk_decode_member(e, ebuf, sizeof(ebuf), &elen);
	if (rc == JG_ERR_PARSE)
		return jwk_refuse(why, st, "RSA \"e\" is not base64url");
	if (rc != 0)
		return jwk_refuse(why, st, "RSA exponent is longer than %d bytes", JWK_RSA_E_MAX);
	if (nlen == 0 || elen == 0)
		return jwk_refuse(why, st, "RSA \"%s\" is empty", nlen == 0 ? "n" : "e");
	bn_n = BN_bin2bn(nbuf, (int)nlen, NULL);
	bn_e = BN_bin2bn(ebuf, (int)elen, NULL);
	if (bn_n == NULL || bn_e == NULL)
		goto cleanup;
	bits = BN_num_bits(bn_n);
	/* Weak keys (security.md row 11): small moduli, and e = 1 or even e, which make "RSA" the identity
	 * or not a permutation. Each is refused with its own reason and numbers. */
	if (bits < JWK_RSA_MIN_BITS) {
		jwk_refuse(why, st, "RSA modulus is %d bits; at least %d are required", bits,
		           JWK_RSA_MIN_BITS);
		goto cleanup;
	}
	if (bits > JWK_RSA_MAX_BITS) {
		jwk_refuse(why, st, "RSA modulus is %d bits; at most %d are accepted", bits,
		           JWK_RSA_MAX_BITS);
		goto cleanup;
	}
	if (!BN_is_odd(bn_e) || BN_is_one(bn_e)) {
		e_dec = BN_bn2dec(bn_e); /* at most JWK_RSA_E_MAX bytes: 20 digits */
		jwk_refuse(why, st, "RSA exponent %s is %s; it must be odd and at least 3",
		           e_dec != NULL ? e_dec : "?", BN_is_odd(bn_e) ? "below 3" : "even");
		goto cleanup;
	}
	if (!BN_is_odd(bn_n)) {
		jwk_refuse(why, st, "RSA modulus is even (not a product of two odd primes)");
		goto cleanup;
	}
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
		goto cleanup;
	params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &key->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		jwk_refuse(why, st, "OpenSSL could not build the RSA key");
		goto cleanup;
	}
	key->kty = JWK_KTY_RSA;
	key->rsa_len = (size_t)(bits + 7) / 8;
	st = JWT_STATUS_OK;
cleanup:
	OPENSSL_free(e_dec);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn_e);
	BN_free(bn_n);
	return st;
}

/* Decodes an EC coordinate into out (exactly coord_len bytes, left-padded). */
static int jwk_ec_coord(const json_t *s, uint8_t *out, size_t coord_len)
{
	uint8_t buf[JWK_EC_COORD_MAX];
	size_t len;
	int rc = jwk_decode_member(s, buf, sizeof(buf), &len);

	if (rc != 0)
		return rc;
	if (len == 0 || len > coord_len)
		return JG_ERR_LIMIT;
	memset(out, 0, coord_len - len);
	memcpy(out + coord_len - len, buf, len);
	return 0;
}

/* EC public key from crv, x, y (RFC 7518 section 6.2.1). */
static enum jwt_status jwk_build_ec(const json_t *obj, struct jwk *key, const struct jwk_why *why)
{
	const struct jwk_curve *curve = NULL;
	const json_t *crv, *x, *y;
	bool has_crv, has_x, has_y;
	uint8_t pub[1 + 2 * JWK_EC_COORD_MAX];
	size_t i;
	int rc;
	OSSL_PARAM params[3];
	EVP_PKEY_CTX *ctx = NULL, *check = NULL;
	EC_GROUP *group = NULL;
	enum jwt_status st;
	const json_t *a = json_object_get(obj, "alg");
	char shown[JWK_NAME_LOG_MAX + 4];

	st = jwk_read_alg(obj, key, "EC", JWT_ALG_ES256, JWT_ALG_ES512, "ES256, ES384, ES512",
	                  JWT_STATUS_JWKS_EC_KEY_BAD_ALG, why);
	if (st != JWT_STATUS_OK) {
		/* jwt_verify_lib: an ES-prefixed name it does not know is "unsupported"; anything else a bad
		 * alg. The reason says which (a typo such as ES521 is not a JWA name at all). */
		if (key->alg == JWT_ALG_UNSET && json_is_string(a) &&
		    strncmp(json_string_value(a), "ES", 2) == 0)
			return JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED;
		return st;
	}
	st = JWT_STATUS_JWKS_EC_PARSE_ERROR;
	crv = jwk_member_string(obj, "crv", &has_crv);
	if (has_crv && crv == NULL)
		return jwk_refuse(why, JWT_STATUS_JWKS_EC_KEY_BAD_CRV, "EC \"crv\" is not a string");
	if (crv != NULL) {
		for (i = 0; i < JG_ARRAY_SIZE(jwk_curves); i++) {
			if (strcmp(json_string_value(crv), jwk_curves[i].crv) == 0)
				curve = &jwk_curves[i];
		}
		if (curve == NULL) {
			jwk_safe_copy(json_string_value(crv), json_string_length(crv), shown, sizeof(shown));
			return jwk_refuse(why, JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED,
			                  "EC curve \"%s\" is not supported (P-256, P-384, P-521)", shown);
		}
		if (key->alg != JWT_ALG_UNSET && key->alg != curve->alg)
			return jwk_refuse(why, JWT_STATUS_JWKS_EC_KEY_ALG_NOT_COMPATIBLE_WITH_CRV,
			                  "alg \"%s\" does not fit curve %s (%s)", jwt_alg_name(key->alg),
			                  curve->crv, jwt_alg_name(curve->alg));
	} else {
		/* No crv: the alg names the curve; neither: P-256 (jwt_verify_lib's default). */
		curve = &jwk_curves[0];
		for (i = 0; i < JG_ARRAY_SIZE(jwk_curves); i++) {
			if (jwk_curves[i].alg == key->alg)
				curve = &jwk_curves[i];
		}
	}
	x = jwk_member_string(obj, "x", &has_x);
	if (!has_x)
		return JWT_STATUS_JWKS_EC_KEY_MISSING_X;
	if (x == NULL)
		return JWT_STATUS_JWKS_EC_KEY_BAD_X;
	y = jwk_member_string(obj, "y", &has_y);
	if (!has_y)
		return JWT_STATUS_JWKS_EC_KEY_MISSING_Y;
	if (y == NULL)
		return JWT_STATUS_JWKS_EC_KEY_BAD_Y;
	pub[0] = 0x04; /* uncompressed point, SEC 1 section 2.3.3 */
	rc = jwk_ec_coord(x, pub + 1, curve->coord_len);
	if (rc == 0)
		rc = jwk_ec_coord(y, pub + 1 + curve->coord_len, curve->coord_len);
	if (rc == JG_ERR_PARSE)
		return jwk_refuse(why, JWT_STATUS_JWKS_EC_XOR_Y_BAD_BASE64,
		                  "EC \"x\" or \"y\" is not base64url");
	if (rc != 0)
		return jwk_refuse(why, st, "EC \"x\" or \"y\" is empty or longer than %s's %zu bytes",
		                  curve->crv, curve->coord_len);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)curve->group, 0);
	params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * curve->coord_len);
	params[2] = OSSL_PARAM_construct_end();
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
		st = JWT_STATUS_JWKS_EC_CREATE_KEY_FAIL;
		goto cleanup;
	}
	/* fromdata decodes the point; the explicit check also refuses the point at infinity and points
	 * outside the group (security.md row 10). */
	if (EVP_PKEY_fromdata(ctx, &key->pkey, EVP_PKEY_PUBLIC_KEY, params) != 1 ||
	    (check = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(check) != 1) {
		jwk_refuse(why, st, "EC point (x, y) is not on curve %s", curve->crv);
		goto cleanup;
	}
	group = EC_GROUP_new_by_curve_name(curve->nid);
	key->ec_order = BN_new();
	if (group == NULL || key->ec_order == NULL || EC_GROUP_get_order(group, key->ec_order, NULL) != 1) {
		st = JWT_STATUS_JWKS_EC_CREATE_KEY_FAIL;
		goto cleanup;
	}
	key->kty = JWK_KTY_EC;
	key->ec_alg = curve->alg;
	key->ec_coord_len = curve->coord_len;
	st = JWT_STATUS_OK;
cleanup:
	EC_GROUP_free(group);
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	return st;
}

/* Ed25519 public key (RFC 8037 section 2). */
static enum jwt_status jwk_build_okp(const json_t *obj, struct jwk *key, const struct jwk_why *why)
{
	const json_t *crv, *x;
	bool has_crv, has_x;
	uint8_t raw[64];
	size_t len;
	int rc;
	enum jwt_status st;
	char shown[JWK_NAME_LOG_MAX + 4];

	st = jwk_read_alg(obj, key, "OKP", JWT_ALG_EDDSA, JWT_ALG_EDDSA, "EdDSA",
	                  JWT_STATUS_JWKS_OKP_KEY_BAD_ALG, why);
	if (st != JWT_STATUS_OK)
		return st;
	crv = jwk_member_string(obj, "crv", &has_crv);
	if (!has_crv)
		return JWT_STATUS_JWKS_OKP_KEY_MISSING_CRV;
	if (crv == NULL)
		return JWT_STATUS_JWKS_OKP_KEY_BAD_CRV;
	if (strcmp(json_string_value(crv), "Ed25519") != 0) {
		jwk_safe_copy(json_string_value(crv), json_string_length(crv), shown, sizeof(shown));
		return jwk_refuse(why, JWT_STATUS_JWKS_OKP_KEY_CRV_UNSUPPORTED,
		                  "OKP curve \"%s\" is not supported (Ed25519 only)", shown);
	}
	x = jwk_member_string(obj, "x", &has_x);
	if (!has_x)
		return JWT_STATUS_JWKS_OKP_KEY_MISSING_X;
	if (x == NULL)
		return JWT_STATUS_JWKS_OKP_KEY_BAD_X;
	rc = jwk_decode_member(x, raw, sizeof(raw), &len);
	if (rc == JG_ERR_PARSE)
		return jwk_refuse(why, JWT_STATUS_JWKS_OKP_X_BAD_BASE64, "OKP \"x\" is not base64url");
	if (rc != 0)
		return jwk_refuse(why, JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH,
		                  "OKP \"x\" is longer than %zu bytes; an Ed25519 public key is 32",
		                  sizeof(raw));
	if (len != 32)
		return jwk_refuse(why, JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH,
		                  "OKP \"x\" is %zu bytes; an Ed25519 public key is 32", len);
	key->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, len);
	if (key->pkey == NULL)
		return JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH;
	key->kty = JWK_KTY_OKP;
	return JWT_STATUS_OK;
}

/* Digest size of an HS* alg, 0 for other algs. */
static size_t jwk_hmac_len(enum jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_HS256:
		return 32;
	case JWT_ALG_HS384:
		return 48;
	case JWT_ALG_HS512:
		return 64;
	default:
		return 0;
	}
}

/* HMAC secret (RFC 7518 section 6.4). */
static enum jwt_status jwk_build_oct(const json_t *obj, struct jwk *key, const struct jwk_why *why)
{
	const json_t *k;
	bool has_k;
	uint8_t buf[JWK_HMAC_MAX_LEN];
	size_t len, min = JWK_HMAC_MIN_LEN;
	int rc;
	enum jwt_status st;

	st = jwk_read_alg(obj, key, "oct", JWT_ALG_HS256, JWT_ALG_HS512, "HS256, HS384, HS512",
	                  JWT_STATUS_JWKS_HMAC_KEY_BAD_ALG, why);
	if (st != JWT_STATUS_OK)
		return st;
	k = jwk_member_string(obj, "k", &has_k);
	if (!has_k)
		return JWT_STATUS_JWKS_HMAC_KEY_MISSING_K;
	if (k == NULL)
		return JWT_STATUS_JWKS_HMAC_KEY_BAD_K;
	rc = jwk_decode_member(k, buf, sizeof(buf), &len);
	if (rc == JG_ERR_PARSE)
		return jwk_refuse(why, JWT_STATUS_JWKS_OCT_BAD_BASE64, "HMAC \"k\" is not base64url");
	if (rc != 0) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return jwk_refuse(why, JWT_STATUS_JWKS_HMAC_KEY_BAD_K, "HMAC secret is longer than %d bytes",
		                  JWK_HMAC_MAX_LEN);
	}
	if (key->alg != JWT_ALG_UNSET)
		min = jwk_hmac_len(key->alg);
	/* Security.md row 3: an empty or short secret is refused at load time. RFC 7518 section 3.2: a key
	 * of the same size as the hash output or larger. */
	if (len < min) {
		OPENSSL_cleanse(buf, sizeof(buf));
		if (key->alg != JWT_ALG_UNSET)
			return jwk_refuse(
			        why, JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
			        "HMAC secret is %zu bytes; %s requires at least %zu (its hash size, RFC "
			        "7518 section 3.2)",
			        len, jwt_alg_name(key->alg), min);
		return jwk_refuse(
		        why, JWT_STATUS_JWKS_HMAC_KEY_BAD_K,
		        "HMAC secret is %zu bytes; at least %zu are required (HS256's hash size, RFC 7518 "
		        "section 3.2)",
		        len, min);
	}
	key->secret = malloc(len);
	if (key->secret == NULL) {
		OPENSSL_cleanse(buf, sizeof(buf));
		return jwk_refuse(why, JWT_STATUS_JWKS_HMAC_KEY_BAD_K, "out of memory");
	}
	memcpy(key->secret, buf, len);
	key->secret_len = len;
	OPENSSL_cleanse(buf, sizeof(buf));
	key->kty = JWK_KTY_OCT;
	return JWT_STATUS_OK;
}

/* See jwk.h. */
void jwk_clear(struct jwk *key)
{
	size_t i;

	for (i = 0; i < sizeof(key->verify_tmpl) / sizeof(key->verify_tmpl[0]); i++)
		EVP_PKEY_CTX_free(key->verify_tmpl[i]);
	free(key->kid);
	EVP_PKEY_free(key->pkey);
	BN_free(key->ec_order);
	if (key->secret != NULL)
		OPENSSL_cleanse(key->secret, key->secret_len);
	free(key->secret);
	memset(key, 0, sizeof(*key));
}

/* See jwk.h. */
enum jwt_status jwk_from_json(const json_t *obj, struct jwk *key, char *why, size_t why_cap)
{
	const struct jwk_why w = {why, why_cap};
	const json_t *kty, *kid;
	const char *t;
	char shown[JWK_NAME_LOG_MAX + 4];
	enum jwt_status st;

	memset(key, 0, sizeof(*key));
	if (why != NULL && why_cap > 0)
		why[0] = '\0';
	if (!json_is_object(obj)) {
		st = jwk_refuse(&w, JWT_STATUS_JWKS_BAD_KTY, "not a JSON object");
		goto fail;
	}
	kty = json_object_get(obj, "kty");
	if (kty == NULL) {
		st = JWT_STATUS_JWKS_MISSING_KTY;
		goto fail;
	}
	if (!json_is_string(kty)) {
		st = jwk_refuse(&w, JWT_STATUS_JWKS_BAD_KTY, "\"kty\" is not a string");
		goto fail;
	}
	t = json_string_value(kty);
	if (strcmp(t, "RSA") == 0) {
		st = jwk_build_rsa(obj, key, &w);
	} else if (strcmp(t, "EC") == 0) {
		st = jwk_build_ec(obj, key, &w);
	} else if (strcmp(t, "OKP") == 0) {
		st = jwk_build_okp(obj, key, &w);
	} else if (strcmp(t, "oct") == 0) {
		st = jwk_build_oct(obj, key, &w);
	} else {
		jwk_safe_copy(t, json_string_length(kty), shown, sizeof(shown));
		st = jwk_refuse(&w, JWT_STATUS_JWKS_NOT_IMPLEMENTED_KTY,
		                "kty \"%s\" is not supported (RSA, EC, OKP, oct)", shown);
	}
	if (st != JWT_STATUS_OK)
		goto fail;
	kid = json_object_get(obj, "kid");
	if (kid != NULL) {
		if (!json_is_string(kid)) {
			st = jwk_refuse(&w, JWT_STATUS_JWKS_PARSE_ERROR, "\"kid\" is not a string");
			goto fail;
		}
		key->kid_len = json_string_length(kid);
		key->kid = malloc(key->kid_len + 1);
		if (key->kid == NULL) {
			st = jwk_refuse(&w, JWT_STATUS_JWKS_BIO_ALLOC_ERROR, "out of memory");
			goto fail;
		}
		memcpy(key->kid, json_string_value(kid), key->kid_len + 1);
	}
	jwk_build_verify_templates(key);
	return JWT_STATUS_OK;
fail:
	/* A refusal without its own words reports the status message. */
	if (why != NULL && why_cap > 0 && why[0] == '\0')
		snprintf(why, why_cap, "%s", jwt_status_message(st));
	jwk_clear(key);
	return st;
}

/* See jwk.h. */
bool jwk_json_is_for_verify(const json_t *obj)
{
	const json_t *use = json_object_get(obj, "use");
	const json_t *ops = json_object_get(obj, "key_ops");
	size_t i;

	if (use != NULL && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
		return false;
	if (ops == NULL)
		return true;
	if (!json_is_array(ops))
		return false;
	for (i = 0; i < json_array_size(ops); i++) {
		const json_t *op = json_array_get(ops, i);
		if (json_is_string(op) && strcmp(json_string_value(op), "verify") == 0)
			return true;
	}
	return false;
}

/* Writes a log-safe name for key i into buf: its kid with non-printable bytes as '?', cut at
 * JWK_NAME_LOG_MAX characters (a remote JWKS is peer data; no log injection), or "#<i>". */
static void jwk_log_name(const json_t *obj, size_t i, char *buf, size_t cap)
{
	const json_t *kid = json_object_get(obj, "kid");
	char shown[JWK_NAME_LOG_MAX + 4];

	if (!json_is_string(kid)) {
		snprintf(buf, cap, "#%zu", i);
		return;
	}
	jwk_safe_copy(json_string_value(kid), json_string_length(kid), shown, sizeof(shown));
	snprintf(buf, cap, "#%zu kid \"%s\"", i, shown);
}

static void jwks_free(struct jwks *ks)
{
	size_t i;

	for (i = 0; i < ks->n_keys; i++)
		jwk_clear(&ks->keys[i]);
	free(ks->keys);
	free(ks);
}

/* See jwk.h. */
enum jwt_status jwks_parse(const char *text, size_t len, const char *origin, struct jwks **out)
{
	json_t *root = NULL, *keys;
	json_error_t err;
	struct jwks *ks = NULL;
	enum jwt_status st;
	size_t i, n;
	char name[JWK_NAME_LOG_MAX + 32], why[JWK_WHY_MAX];

	*out = NULL;
	if (origin == NULL)
		origin = "jwks";
	if (len > JWKS_MAX_TEXT_LEN) {
		log_warn("%s: JWKS of %zu bytes is larger than %d", origin, len, JWKS_MAX_TEXT_LEN);
		return JWT_STATUS_JWKS_PARSE_ERROR;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL || !json_is_object(root)) {
		log_warn("%s: %s: %s", origin, jwt_status_message(JWT_STATUS_JWKS_PARSE_ERROR),
		         root == NULL ? err.text : "not an object");
		st = JWT_STATUS_JWKS_PARSE_ERROR;
		goto cleanup;
	}
	keys = json_object_get(root, "keys");
	if (keys == NULL) {
		st = JWT_STATUS_JWKS_NO_KEYS;
		goto fail_log;
	}
	n = json_array_size(keys);
	if (!json_is_array(keys) || n > JWKS_MAX_KEYS) {
		st = JWT_STATUS_JWKS_BAD_KEYS;
		goto fail_log;
	}
	ks = calloc(1, sizeof(*ks));
	if (ks == NULL || (n > 0 && (ks->keys = calloc(n, sizeof(*ks->keys))) == NULL)) {
		st = JWT_STATUS_JWKS_BIO_ALLOC_ERROR;
		goto fail_log;
	}
	ks->refs = 1;
	for (i = 0; i < n; i++) {
		const json_t *obj = json_array_get(keys, i);

		jwk_log_name(obj, i, name, sizeof(name));
		if (json_is_object(obj) && !jwk_json_is_for_verify(obj)) {
			log_warn("%s: key %s skipped: \"use\" or \"key_ops\" does not allow verify", origin,
			         name);
			continue;
		}
		st = jwk_from_json(obj, &ks->keys[ks->n_keys], why, sizeof(why));
		if (st != JWT_STATUS_OK) {
			log_warn("%s: key %s skipped: %s", origin, name, why);
			continue;
		}
		ks->n_keys++;
	}
	if (ks->n_keys == 0) {
		st = JWT_STATUS_JWKS_NO_VALID_KEYS;
		goto fail_log;
	}
	*out = ks;
	ks = NULL;
	st = JWT_STATUS_OK;
	goto cleanup;
fail_log:
	log_warn("%s: %s", origin, jwt_status_message(st));
cleanup:
	if (ks != NULL)
		jwks_free(ks);
	json_decref(root);
	return st;
}

/* See jwk.h. */
struct jwks *jwks_ref(struct jwks *ks)
{
	__atomic_add_fetch(&ks->refs, 1, __ATOMIC_RELAXED);
	return ks;
}

/* See jwk.h. */
void jwks_unref(struct jwks *ks)
{
	if (ks == NULL)
		return;
	if (__atomic_sub_fetch(&ks->refs, 1, __ATOMIC_ACQ_REL) == 0)
		jwks_free(ks);
}

/* Digests fetched once from the default provider: EVP_sha256() and friends are legacy handles that
 * make every EVP_DigestInit fetch the implementation again (a lock and a hash lookup). */
static pthread_once_t jwk_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *jwk_md_fetched[3];

static void jwk_md_fetch(void)
{
	jwk_md_fetched[0] = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	jwk_md_fetched[1] = EVP_MD_fetch(NULL, "SHA2-384", NULL);
	jwk_md_fetched[2] = EVP_MD_fetch(NULL, "SHA2-512", NULL);
}

/* The (pre-fetched) message digest of an alg; NULL for EdDSA, which hashes internally. */
static const EVP_MD *jwk_alg_md(enum jwt_alg alg)
{
	pthread_once(&jwk_md_once, jwk_md_fetch);
	switch (alg) {
	case JWT_ALG_RS256:
	case JWT_ALG_PS256:
	case JWT_ALG_ES256:
	case JWT_ALG_HS256:
		return jwk_md_fetched[0];
	case JWT_ALG_RS384:
	case JWT_ALG_PS384:
	case JWT_ALG_ES384:
	case JWT_ALG_HS384:
		return jwk_md_fetched[1];
	case JWT_ALG_RS512:
	case JWT_ALG_PS512:
	case JWT_ALG_ES512:
	case JWT_ALG_HS512:
		return jwk_md_fetched[2];
	default:
		return NULL;
	}
}

/* Sets up key->verify_tmpl for each RS/PS/ES algorithm the key may verify (its "alg" only, when it
 * has one). A template that cannot be made stays NULL and jwk_verify takes the general path. */
static void jwk_build_verify_templates(struct jwk *key)
{
	int a;

	if (key->kty != JWK_KTY_RSA && key->kty != JWK_KTY_EC)
		return;
	for (a = JWT_ALG_RS256; a <= JWT_ALG_ES512; a++) {
		enum jwt_alg alg = (enum jwt_alg)a;
		const EVP_MD *md = jwk_alg_md(alg);
		EVP_PKEY_CTX *ctx;
		bool ok;

		if (md == NULL || !jwk_alg_fits(key, alg) || (key->alg != JWT_ALG_UNSET && key->alg != alg))
			continue;
		ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
		ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1;
		if (ok && key->kty == JWK_KTY_RSA) {
			if (alg >= JWT_ALG_PS256)
				ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
				     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
				     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1;
			else
				ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
		}
		ok = ok && EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
		if (!ok) {
			EVP_PKEY_CTX_free(ctx);
			continue;
		}
		key->verify_tmpl[alg] = ctx;
	}
}

/* Verifies a signature over the digest of data with the key's template for alg: one digest with a
 * pre-fetched algorithm and a duplicated context, no provider lookups. Returns 1 (valid), 0 (not
 * valid) or -1 (no template: the caller takes the general path). */
static int jwk_verify_with_template(const struct jwk *key, enum jwt_alg alg, const uint8_t *data, size_t len,
                                    const uint8_t *sig, size_t sig_len)
{
	EVP_PKEY_CTX *ctx;
	unsigned char dgst[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	int ok;

	if (key->verify_tmpl[alg] == NULL)
		return -1;
	if (EVP_Digest(data, len, dgst, &dlen, jwk_alg_md(alg), NULL) != 1)
		return 0;
	/* The template is shared by the workers and only read: each verification works on a copy. */
	ctx = EVP_PKEY_CTX_dup(key->verify_tmpl[alg]);
	if (ctx == NULL)
		return 0;
	ok = EVP_PKEY_verify(ctx, sig, sig_len, dgst, dlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

/* See jwk.h. */
bool jwk_alg_fits(const struct jwk *key, enum jwt_alg alg)
{
	switch (key->kty) {
	case JWK_KTY_RSA:
		return alg >= JWT_ALG_RS256 && alg <= JWT_ALG_PS512;
	case JWK_KTY_EC:
		return alg == key->ec_alg;
	case JWK_KTY_OKP:
		return alg == JWT_ALG_EDDSA;
	case JWK_KTY_OCT:
		return jwk_hmac_len(alg) != 0 && key->secret_len >= jwk_hmac_len(alg);
	}
	return false;
}

/* Converts raw R || S (2 x clen bytes) to a DER ECDSA-Sig-Value in der (capacity cap) after refusing
 * r or s outside [1, n-1] (CVE-2022-21449). Returns the DER length, or 0 on refusal. */
static size_t jwk_ecdsa_raw_to_der(const struct jwk *key, const uint8_t *sig, uint8_t *der, size_t cap)
{
	size_t clen = key->ec_coord_len, der_len = 0;
	BIGNUM *r = BN_bin2bn(sig, (int)clen, NULL);
	BIGNUM *s = BN_bin2bn(sig + clen, (int)clen, NULL);
	ECDSA_SIG *es = NULL;
	unsigned char *p = der;
	int n;

	if (r == NULL || s == NULL || BN_is_zero(r) || BN_is_zero(s) || BN_cmp(r, key->ec_order) >= 0 ||
	    BN_cmp(s, key->ec_order) >= 0)
		goto cleanup;
	es = ECDSA_SIG_new();
	if (es == NULL || ECDSA_SIG_set0(es, r, s) != 1)
		goto cleanup;
	r = NULL; /* owned by es now */
	s = NULL;
	n = i2d_ECDSA_SIG(es, NULL);
	if (n <= 0 || (size_t)n > cap)
		goto cleanup;
	n = i2d_ECDSA_SIG(es, &p);
	if (n > 0)
		der_len = (size_t)n;
cleanup:
	ECDSA_SIG_free(es);
	BN_free(s);
	BN_free(r);
	return der_len;
}

/* See jwk.h. */
enum jwt_status jwk_verify(const struct jwk *key, enum jwt_alg alg, const uint8_t *data, size_t len,
                           const uint8_t *sig, size_t sig_len)
{
	const EVP_MD *md = jwk_alg_md(alg);
	EVP_MD_CTX *mctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t der[2 * JWK_EC_COORD_MAX +
	            16]; /* SEQUENCE { INTEGER r, INTEGER s }, each <= 67 bytes + tags */
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;
	size_t der_len;
	enum jwt_status st = JWT_STATUS_VERIFICATION_FAIL;

	if (!jwk_alg_fits(key, alg))
		return JWT_STATUS_VERIFICATION_FAIL;
	switch (key->kty) {
	case JWK_KTY_OCT:
		if (HMAC(md, key->secret, (int)key->secret_len, data, len, mac, &mac_len) == NULL)
			return JWT_STATUS_VERIFICATION_FAIL;
		if (sig_len != mac_len || CRYPTO_memcmp(mac, sig, mac_len) != 0)
			return JWT_STATUS_VERIFICATION_FAIL;
		return JWT_STATUS_OK;
	case JWK_KTY_OKP:
		if (sig_len != 64)
			return JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH;
		mctx = EVP_MD_CTX_new();
		if (mctx != NULL && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, key->pkey) == 1 &&
		    EVP_DigestVerify(mctx, sig, sig_len, data, len) == 1)
			st = JWT_STATUS_OK;
		goto cleanup;
	case JWK_KTY_EC:
		if (sig_len != 2 * key->ec_coord_len)
			return JWT_STATUS_VERIFICATION_FAIL;
		der_len = jwk_ecdsa_raw_to_der(key, sig, der, sizeof(der));
		if (der_len == 0)
			return JWT_STATUS_VERIFICATION_FAIL;
		switch (jwk_verify_with_template(key, alg, data, len, der, der_len)) {
		case 1:
			return JWT_STATUS_OK;
		case 0:
			return JWT_STATUS_VERIFICATION_FAIL;
		}
		mctx = EVP_MD_CTX_new();
		if (mctx != NULL && EVP_DigestVerifyInit(mctx, NULL, md, NULL, key->pkey) == 1 &&
		    EVP_DigestVerify(mctx, der, der_len, data, len) == 1)
			st = JWT_STATUS_OK;
		goto cleanup;
	case JWK_KTY_RSA:
		if (sig_len != key->rsa_len)
			return JWT_STATUS_VERIFICATION_FAIL;
		switch (jwk_verify_with_template(key, alg, data, len, sig, sig_len)) {
		case 1:
			return JWT_STATUS_OK;
		case 0:
			return JWT_STATUS_VERIFICATION_FAIL;
		}
		mctx = EVP_MD_CTX_new();
		if (mctx == NULL || EVP_DigestVerifyInit(mctx, &pctx, md, NULL, key->pkey) != 1)
			goto cleanup;
		if (alg >= JWT_ALG_PS256 &&
		    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
		     EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1))
			goto cleanup;
		if (EVP_DigestVerify(mctx, sig, sig_len, data, len) == 1)
			st = JWT_STATUS_OK;
		goto cleanup;
	}
cleanup:
	EVP_MD_CTX_free(mctx); /* frees pctx too */
	return st;
}
