/* jwt.c: compact JWS parsing, claim checks and key selection (see jwt.h for the rules and choices). */
#include "jwtgate/jwt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jwtgate/b64url.h"
#include "jwtgate/common.h"
#include "jwtgate/jsonscan.h"

static const char *const jwt_status_messages[JWT_STATUS_COUNT] = {
        [JWT_STATUS_OK] = "OK",
        [JWT_STATUS_MISSED] = "Jwt is missing",
        [JWT_STATUS_NOT_YET_VALID] = "Jwt not yet valid",
        [JWT_STATUS_EXPIRED] = "Jwt is expired",
        [JWT_STATUS_BAD_FORMAT] =
                "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        [JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64] = "Jwt header is an invalid Base64url encoded",
        [JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON] = "Jwt header is an invalid JSON",
        [JWT_STATUS_HEADER_BAD_ALG] = "Jwt header [alg] field is required and must be a string",
        [JWT_STATUS_HEADER_NOT_IMPLEMENTED_ALG] = "Jwt header [alg] is not supported",
        [JWT_STATUS_HEADER_BAD_KID] = "Jwt header [kid] field is not a string",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_BASE64] = "Jwt payload is an invalid Base64url encoded",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON] = "Jwt payload is an invalid JSON",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_ISS_NOT_STRING] = "Jwt payload [iss] field is not a string",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_SUB_NOT_STRING] = "Jwt payload [sub] field is not a string",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_NOT_INTEGER] = "Jwt payload [iat] field is not an integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_OUT_OF_RANGE] =
                "Jwt payload [iat] field is not a positive 64 bit integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_NOT_INTEGER] = "Jwt payload [nbf] field is not an integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_OUT_OF_RANGE] =
                "Jwt payload [nbf] field is not a positive 64 bit integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER] = "Jwt payload [exp] field is not an integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE] =
                "Jwt payload [exp] field is not a positive 64 bit integer",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_JTI_NOT_STRING] = "Jwt payload [jti] field is not a string",
        [JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING] =
                "Jwt payload [aud] field is not a string or string list",
        [JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64] = "Jwt signature is an invalid Base64url encoded",
        [JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH] = "Jwt ED25519 signature is wrong length",
        [JWT_STATUS_UNKNOWN_ISSUER] = "Jwt issuer is not configured",
        [JWT_STATUS_AUDIENCE_NOT_ALLOWED] = "Audiences in Jwt are not allowed",
        [JWT_STATUS_VERIFICATION_FAIL] = "Jwt verification fails",
        [JWT_STATUS_MULTIPLE_TOKENS] = "Found multiple Jwt tokens",
        [JWT_STATUS_JWKS_PARSE_ERROR] = "Jwks is an invalid JSON",
        [JWT_STATUS_JWKS_NO_KEYS] = "Jwks does not have [keys] field",
        [JWT_STATUS_JWKS_BAD_KEYS] = "[keys] in Jwks is not an array",
        [JWT_STATUS_JWKS_NO_VALID_KEYS] = "Jwks doesn't have any valid public key",
        [JWT_STATUS_JWKS_KID_ALG_MISMATCH] = "Jwks doesn't have key to match kid or alg from Jwt",
        [JWT_STATUS_JWKS_RSA_PARSE_ERROR] = "Jwks RSA [n] or [e] field is missing or has a parse error",
        [JWT_STATUS_JWKS_EC_CREATE_KEY_FAIL] = "Jwks EC create key fail",
        [JWT_STATUS_JWKS_EC_XOR_Y_BAD_BASE64] = "Jwks EC [x] or [y] field is an invalid Base64.",
        [JWT_STATUS_JWKS_EC_PARSE_ERROR] = "Jwks EC [x] and [y] fields have a parse error.",
        [JWT_STATUS_JWKS_OCT_BAD_BASE64] = "Jwks Oct key is an invalid Base64",
        [JWT_STATUS_JWKS_OKP_X_BAD_BASE64] = "Jwks OKP [x] field is an invalid Base64.",
        [JWT_STATUS_JWKS_OKP_X_WRONG_LENGTH] = "Jwks OKP [x] field is wrong length.",
        [JWT_STATUS_JWKS_FETCH_FAIL] = "Jwks remote fetch is failed",
        [JWT_STATUS_JWKS_MISSING_KTY] = "[kty] is missing in [keys]",
        [JWT_STATUS_JWKS_BAD_KTY] = "[kty] is bad in [keys]",
        [JWT_STATUS_JWKS_NOT_IMPLEMENTED_KTY] = "[kty] is not supported in [keys]",
        [JWT_STATUS_JWKS_RSA_KEY_BAD_ALG] = "[alg] is not started with [RS] or [PS] for an RSA key",
        [JWT_STATUS_JWKS_RSA_KEY_MISSING_N] = "[n] field is missing for a RSA key",
        [JWT_STATUS_JWKS_RSA_KEY_BAD_N] = "[n] field is not string for a RSA key",
        [JWT_STATUS_JWKS_RSA_KEY_MISSING_E] = "[e] field is missing for a RSA key",
        [JWT_STATUS_JWKS_RSA_KEY_BAD_E] = "[e] field is not string for a RSA key",
        [JWT_STATUS_JWKS_EC_KEY_BAD_ALG] = "[alg] is not started with [ES] for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_BAD_CRV] = "[crv] field is not string for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_ALG_OR_CRV_UNSUPPORTED] =
                "[crv] or [alg] field is not supported for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_ALG_NOT_COMPATIBLE_WITH_CRV] =
                "[crv] field specified is not compatible with [alg] for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_MISSING_X] = "[x] field is missing for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_BAD_X] = "[x] field is not string for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_MISSING_Y] = "[y] field is missing for an EC key",
        [JWT_STATUS_JWKS_EC_KEY_BAD_Y] = "[y] field is not string for an EC key",
        [JWT_STATUS_JWKS_HMAC_KEY_BAD_ALG] = "[alg] does not start with [HS] for an HMAC key",
        [JWT_STATUS_JWKS_HMAC_KEY_MISSING_K] = "[k] field is missing for an HMAC key",
        [JWT_STATUS_JWKS_HMAC_KEY_BAD_K] = "[k] field is not string for an HMAC key",
        [JWT_STATUS_JWKS_OKP_KEY_BAD_ALG] = "[alg] is not [EdDSA] for an OKP key",
        [JWT_STATUS_JWKS_OKP_KEY_MISSING_CRV] = "[crv] field is missing for an OKP key",
        [JWT_STATUS_JWKS_OKP_KEY_BAD_CRV] = "[crv] field is not string for an OKP key",
        [JWT_STATUS_JWKS_OKP_KEY_CRV_UNSUPPORTED] = "[crv] field is not supported for an OKP key",
        [JWT_STATUS_JWKS_OKP_KEY_MISSING_X] = "[x] field is missing for an OKP key",
        [JWT_STATUS_JWKS_OKP_KEY_BAD_X] = "[x] field is not string for an OKP key",
        [JWT_STATUS_JWKS_X509_BIO_WRITE_ERROR] = "X509 parse pubkey internal fails: memory allocation",
        [JWT_STATUS_JWKS_X509_PARSE_ERROR] = "X509 parse pubkey fails",
        [JWT_STATUS_JWKS_X509_GET_PUBKEY_ERROR] = "X509 parse pubkey internal fails: get pubkey",
        [JWT_STATUS_JWKS_PEM_NOT_IMPLEMENTED_KTY] = "PEM Key type is not supported",
        [JWT_STATUS_JWKS_PEM_BAD_BASE64] = "PEM pubkey parse fails",
        [JWT_STATUS_JWKS_PEM_GET_RAW_ED25519_ERROR] = "PEM failed to get raw ED25519 key",
        [JWT_STATUS_JWKS_BIO_ALLOC_ERROR] = "Failed to create BIO due to memory allocation failure",
};

/* See jwt.h. */
const char *jwt_status_message(enum jwt_status st)
{
	if ((unsigned)st >= JWT_STATUS_COUNT || jwt_status_messages[st] == NULL)
		return "Unknown status";
	return jwt_status_messages[st];
}

static const char *const jwt_alg_names[] = {
        [JWT_ALG_UNSET] = "",      [JWT_ALG_RS256] = "RS256", [JWT_ALG_RS384] = "RS384",
        [JWT_ALG_RS512] = "RS512", [JWT_ALG_PS256] = "PS256", [JWT_ALG_PS384] = "PS384",
        [JWT_ALG_PS512] = "PS512", [JWT_ALG_ES256] = "ES256", [JWT_ALG_ES384] = "ES384",
        [JWT_ALG_ES512] = "ES512", [JWT_ALG_EDDSA] = "EdDSA", [JWT_ALG_HS256] = "HS256",
        [JWT_ALG_HS384] = "HS384", [JWT_ALG_HS512] = "HS512",
};

/* See jwt.h. Exact, case-sensitive match (RFC 7515 section 4.1.1: alg is case-sensitive). */
enum jwt_alg jwt_alg_from_name(const char *name, size_t len)
{
	size_t i;

	for (i = 1; i < JG_ARRAY_SIZE(jwt_alg_names); i++) {
		if (strlen(jwt_alg_names[i]) == len && memcmp(jwt_alg_names[i], name, len) == 0)
			return (enum jwt_alg)i;
	}
	return JWT_ALG_UNSET;
}

/* See jwt.h. */
const char *jwt_alg_name(enum jwt_alg alg)
{
	if ((unsigned)alg >= JG_ARRAY_SIZE(jwt_alg_names))
		return "";
	return jwt_alg_names[alg];
}

/* See jwt.h. */
void jwt_init(struct jwt *tok)
{
	/* The signature buffer is written before it is read; clear only the fields before it. */
	memset(tok, 0, offsetof(struct jwt, sig));
}

/* See jwt.h. */
void jwt_release(struct jwt *tok)
{
	json_decref(tok->header);
	json_decref(tok->payload);
	free(tok->aud_heap);
	free(tok->json_heap);
	jwt_init(tok);
}

/* A JOSE header or claims set: read in place by jsonscan when it is plain, else parsed by jansson.
 * Exactly one of scan / json is set. */
struct jwt_obj {
	const struct jsonscan_object *scan;
	const json_t *json;
};

/* What a member is, in the terms the claim checks need, whichever reader produced it. */
enum jwt_kind {
	JWT_KIND_ABSENT,
	JWT_KIND_STRING,
	JWT_KIND_INTEGER,
	JWT_KIND_REAL,
	JWT_KIND_STRING_ARRAY,
	JWT_KIND_OTHER,
};

struct jwt_val {
	enum jwt_kind kind;
	struct jwt_str str; /* STRING */
	int64_t integer;    /* INTEGER */
	double real;        /* REAL */
	size_t n_items;     /* STRING_ARRAY */
	const struct jsonscan_member *scan;
	const json_t *json;
};

static void jwt_obj_get(const struct jwt_obj *o, const char *name, struct jwt_val *v)
{
	memset(v, 0, sizeof(*v));
	if (o->scan != NULL) {
		const struct jsonscan_member *m = jsonscan_get(o->scan, name);

		v->scan = m;
		if (m == NULL)
			return;
		switch (m->type) {
		case JSONSCAN_STRING:
			v->kind = JWT_KIND_STRING;
			v->str.s = m->text;
			v->str.len = m->len;
			break;
		case JSONSCAN_INTEGER:
			v->kind = JWT_KIND_INTEGER;
			v->integer = m->integer;
			break;
		case JSONSCAN_ARRAY:
			v->kind = JWT_KIND_STRING_ARRAY;
			v->n_items = m->n_items;
			break;
		default:
			v->kind = JWT_KIND_OTHER;
		}
		return;
	}
	v->json = json_object_get(o->json, name);
	if (v->json == NULL)
		return;
	if (json_is_string(v->json)) {
		v->kind = JWT_KIND_STRING;
		v->str.s = json_string_value(v->json);
		v->str.len = json_string_length(v->json);
	} else if (json_is_integer(v->json)) {
		v->kind = JWT_KIND_INTEGER;
		v->integer = json_integer_value(v->json);
	} else if (json_is_real(v->json)) {
		v->kind = JWT_KIND_REAL;
		v->real = json_real_value(v->json);
	} else if (json_is_array(v->json)) {
		size_t i, n = json_array_size(v->json);

		v->kind = JWT_KIND_STRING_ARRAY;
		v->n_items = n;
		for (i = 0; i < n; i++) {
			if (!json_is_string(json_array_get(v->json, i)))
				v->kind = JWT_KIND_OTHER;
		}
	} else {
		v->kind = JWT_KIND_OTHER;
	}
}

/* Item i (in order) of a STRING_ARRAY value; *pos is the scan cursor, starting at 0. */
static void jwt_val_item(const struct jwt_val *v, size_t i, size_t *pos, struct jwt_str *out)
{
	if (v->scan != NULL) {
		if (!jsonscan_array_next(v->scan, pos, &out->s, &out->len)) {
			out->s = "";
			out->len = 0;
		}
		return;
	}
	out->s = json_string_value(json_array_get(v->json, i));
	out->len = json_string_length(json_array_get(v->json, i));
}

/* Decodes a base64url segment into buf and reads it as a JSON object: in place when it is plain
 * (*scan filled, *json NULL), else with jansson, duplicate members refused (*json set). force_json:
 * build *json even for plain text; json_only: do not scan (*json is then always the result). Returns 0,
 * JG_ERR_PARSE for bad base64url, JG_ERR_INVAL for bad JSON or not an object, JG_ERR_NOMEM. */
static int jwt_decode_json(const char *seg, size_t len, char *buf, size_t cap, size_t *used,
                           struct jsonscan_object *scan, bool force_json, bool json_only, json_t **json)
{
	size_t n;
	json_error_t err;
	int rc;

	*json = NULL;
	rc = b64url_decode(seg, len, (uint8_t *)buf, cap, &n);
	if (rc != 0)
		return rc == JG_ERR_PARSE ? JG_ERR_PARSE : JG_ERR_NOMEM;
	*used = n;
	if (!json_only && jsonscan_object(buf, n, scan) && !force_json)
		return 0;
	*json = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &err);
	if (*json == NULL || !json_is_object(*json)) {
		json_decref(*json);
		*json = NULL;
		return JG_ERR_INVAL;
	}
	return 0;
}

/* Reads a NumericDate claim (RFC 7519 section 2) into *v. Returns 0 when absent (*has false), 0 when
 * valid, 1 for "not an integer", 2 for "out of range" (see jwt.h for the rule). */
static int jwt_read_time(const struct jwt_obj *o, const char *name, bool *has, int64_t *v)
{
	struct jwt_val j;

	*has = false;
	jwt_obj_get(o, name, &j);
	switch (j.kind) {
	case JWT_KIND_ABSENT:
		return 0;
	case JWT_KIND_INTEGER:
		if (j.integer < 0)
			return 2;
		*v = j.integer;
		*has = true;
		return 0;
	case JWT_KIND_REAL:
		if (!isfinite(j.real) || j.real < 0 || j.real >= 9223372036854775808.0)
			return 2;
		return 1;
	default:
		return 1;
	}
}

/* Claim type checks of jwt_verify_lib (statuses 12-21), with iss, aud and the time claims stored in
 * tok (borrowing from the decoded payload or from jansson's objects, both owned by tok). */
static enum jwt_status jwt_parse_claims(struct jwt *tok, const struct jwt_obj *o)
{
	struct jwt_val v;
	struct jwt_str *aud;
	size_t i, pos = 0;

	jwt_obj_get(o, "iss", &v);
	if (v.kind != JWT_KIND_ABSENT && v.kind != JWT_KIND_STRING)
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_ISS_NOT_STRING;
	tok->iss = v.str.s;
	tok->iss_len = v.str.len;
	jwt_obj_get(o, "sub", &v);
	if (v.kind != JWT_KIND_ABSENT && v.kind != JWT_KIND_STRING)
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_SUB_NOT_STRING;
	switch (jwt_read_time(o, "iat", &tok->has_iat, &tok->iat)) {
	case 1:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_NOT_INTEGER;
	case 2:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_IAT_OUT_OF_RANGE;
	}
	switch (jwt_read_time(o, "nbf", &tok->has_nbf, &tok->nbf)) {
	case 1:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_NOT_INTEGER;
	case 2:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_NBF_OUT_OF_RANGE;
	}
	switch (jwt_read_time(o, "exp", &tok->has_exp, &tok->exp)) {
	case 1:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_NOT_INTEGER;
	case 2:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_EXP_OUT_OF_RANGE;
	}
	jwt_obj_get(o, "jti", &v);
	if (v.kind != JWT_KIND_ABSENT && v.kind != JWT_KIND_STRING)
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_JTI_NOT_STRING;
	jwt_obj_get(o, "aud", &v);
	switch (v.kind) {
	case JWT_KIND_ABSENT:
		return JWT_STATUS_OK;
	case JWT_KIND_STRING:
		tok->aud_inline[0] = v.str;
		tok->aud = tok->aud_inline;
		tok->n_aud = 1;
		return JWT_STATUS_OK;
	case JWT_KIND_STRING_ARRAY:
		break;
	default:
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_AUD_NOT_STRING;
	}
	aud = tok->aud_inline;
	if (v.n_items > JWT_AUD_INLINE) {
		tok->aud_heap = calloc(v.n_items, sizeof(*tok->aud_heap));
		if (tok->aud_heap == NULL)
			return JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON; /* out of memory: fail closed */
		aud = tok->aud_heap;
	}
	for (i = 0; i < v.n_items; i++)
		jwt_val_item(&v, i, &pos, &aud[i]);
	tok->aud = aud;
	tok->n_aud = v.n_items;
	return JWT_STATUS_OK;
}

/* See jwt.h. */
enum jwt_status jwt_parse(struct jwt *tok, const char *token, size_t len, size_t max_len, unsigned flags)
{
	struct jsonscan_object hscan, pscan;
	struct jwt_obj obj;
	struct jwt_val v;
	const char *dot1, *dot2, *sig;
	size_t hlen, plen, slen, need, used = 0;
	char *buf = tok->json_inline;
	enum jwt_status st;
	int rc;

	jwt_init(tok);
	if (max_len == 0)
		max_len = JWT_MAX_TOKEN_LEN_DEFAULT;
	if (max_len > JWT_MAX_TOKEN_LEN_LIMIT)
		max_len = JWT_MAX_TOKEN_LEN_LIMIT;
	/* Length cap first (security.md row 16): nothing is decoded for an oversized token. */
	if (token == NULL || len > max_len)
		return JWT_STATUS_BAD_FORMAT;
	/* Exactly two dots: JWE (5 segments), JSON serialization and 2-segment tokens all end here. */
	dot1 = memchr(token, '.', len);
	if (dot1 == NULL)
		return JWT_STATUS_BAD_FORMAT;
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
		return JWT_STATUS_BAD_FORMAT;
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	sig = dot2 + 1;
	slen = len - (size_t)(sig - token);

	/* Decoded header and payload stay in tok: plain members are read in place. The token is capped
	 * (at most JWT_MAX_TOKEN_LEN_LIMIT), so is this buffer. */
	need = B64URL_DECODED_LEN(hlen) + B64URL_DECODED_LEN(plen);
	if (need > sizeof(tok->json_inline)) {
		tok->json_heap = malloc(need);
		if (tok->json_heap == NULL)
			return JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64; /* out of memory: fail closed */
		buf = tok->json_heap;
	}

	rc = jwt_decode_json(token, hlen, buf, need, &used, &hscan, false, (flags & JWT_PARSE_JSON_ONLY) != 0,
	                     &tok->header);
	if (rc == JG_ERR_PARSE || rc == JG_ERR_NOMEM)
		return JWT_STATUS_HEADER_PARSE_ERROR_BAD_BASE64;
	if (rc != 0)
		return JWT_STATUS_HEADER_PARSE_ERROR_BAD_JSON;
	obj.scan = tok->header == NULL ? &hscan : NULL;
	obj.json = tok->header;
	jwt_obj_get(&obj, "alg", &v);
	if (v.kind != JWT_KIND_STRING)
		return JWT_STATUS_HEADER_BAD_ALG;
	tok->alg = jwt_alg_from_name(v.str.s, v.str.len);
	if (tok->alg == JWT_ALG_UNSET)
		return JWT_STATUS_HEADER_NOT_IMPLEMENTED_ALG;
	jwt_obj_get(&obj, "kid", &v);
	if (v.kind != JWT_KIND_ABSENT) {
		if (v.kind != JWT_KIND_STRING)
			return JWT_STATUS_HEADER_BAD_KID;
		tok->kid = v.str.s;
		tok->kid_len = v.str.len;
	}
	/* RFC 7515 section 4.1.11: we understand no extension, so any "crit" makes the token invalid. */
	jwt_obj_get(&obj, "crit", &v);
	if (v.kind != JWT_KIND_ABSENT)
		return JWT_STATUS_VERIFICATION_FAIL;

	rc = jwt_decode_json(dot1 + 1, plen, buf + used, need - used, &used, &pscan,
	                     (flags & JWT_PARSE_PAYLOAD_JSON) != 0, (flags & JWT_PARSE_JSON_ONLY) != 0,
	                     &tok->payload);
	if (rc == JG_ERR_PARSE || rc == JG_ERR_NOMEM)
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_BASE64;
	if (rc != 0)
		return JWT_STATUS_PAYLOAD_PARSE_ERROR_BAD_JSON;
	obj.scan = tok->payload == NULL ? &pscan : NULL;
	obj.json = tok->payload;
	st = jwt_parse_claims(tok, &obj);
	if (st != JWT_STATUS_OK)
		return st;

	tok->sig_len = B64URL_DECODED_LEN(slen);
	/* A signature larger than any key's is kept as a length only; it can never verify. */
	if (tok->sig_len > sizeof(tok->sig)) {
		if (!b64url_is_valid(sig, slen))
			return JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64;
	} else if (b64url_decode(sig, slen, tok->sig, sizeof(tok->sig), &tok->sig_len) != 0) {
		return JWT_STATUS_SIGNATURE_PARSE_ERROR_BAD_BASE64;
	}
	tok->signing_input = token;
	tok->signing_input_len = (size_t)(dot2 - token);
	tok->payload_b64 = dot1 + 1;
	tok->payload_b64_len = plen;
	return JWT_STATUS_OK;
}

/* Strips one "http://" or "https://" prefix and one trailing '/'. */
static void jwt_audience_trim(const char **s, size_t *len)
{
	if (*len >= 7 && memcmp(*s, "http://", 7) == 0) {
		*s += 7;
		*len -= 7;
	} else if (*len >= 8 && memcmp(*s, "https://", 8) == 0) {
		*s += 8;
		*len -= 8;
	}
	if (*len > 0 && (*s)[*len - 1] == '/')
		(*len)--;
}

/* See jwt.h. */
bool jwt_audience_equal(const char *a, size_t alen, const char *b, size_t blen)
{
	jwt_audience_trim(&a, &alen);
	jwt_audience_trim(&b, &blen);
	return alen == blen && memcmp(a, b, alen) == 0;
}

/* True when any aud value of the token matches any configured audience. */
static bool jwt_audience_allowed(const struct jwt_verify_params *p, const struct jwt *tok)
{
	size_t i, j;

	for (i = 0; i < tok->n_aud; i++) {
		for (j = 0; j < p->n_audiences; j++) {
			if (p->audiences[j] != NULL &&
			    jwt_audience_equal(tok->aud[i].s, tok->aud[i].len, p->audiences[j],
			                       strlen(p->audiences[j])))
				return true;
		}
	}
	return false;
}

/* Clamps a skew to what int64 arithmetic can hold. */
static int64_t jwt_skew(const struct jwt_verify_params *p)
{
	return p->clock_skew_s > (uint64_t)INT64_MAX / 4 ? INT64_MAX / 4 : (int64_t)p->clock_skew_s;
}

/* See jwt.h. */
enum jwt_status jwt_verify_claims(const struct jwt_verify_params *p, const struct jwt *tok, int64_t now)
{
	int64_t skew = jwt_skew(p), t, start;

	if (p->issuer != NULL && p->issuer[0] != '\0' &&
	    (tok->iss == NULL || tok->iss_len != strlen(p->issuer) ||
	     memcmp(tok->iss, p->issuer, tok->iss_len) != 0))
		return JWT_STATUS_UNKNOWN_ISSUER;
	/* now + skew < nbf, without overflow. */
	if (tok->has_nbf && (__builtin_add_overflow(now, skew, &t) ? false : t < tok->nbf))
		return JWT_STATUS_NOT_YET_VALID;
	/* now > exp + skew; exp + skew overflowing means "never". */
	if (tok->has_exp && !__builtin_add_overflow(tok->exp, skew, &t) && now > t)
		return JWT_STATUS_EXPIRED;
	if (p->require_expiration && !tok->has_exp)
		return JWT_STATUS_EXPIRED;
	/* Extension: a lifetime cap needs an exp; lifetime runs from iat, or from now without iat. */
	if (p->max_lifetime_s != 0) {
		start = tok->has_iat ? tok->iat : now;
		if (!tok->has_exp ||
		    (__builtin_sub_overflow(tok->exp, start, &t) ? true
		                                                 : t > 0 && (uint64_t)t > p->max_lifetime_s))
			return JWT_STATUS_EXPIRED;
	}
	if (p->n_audiences > 0 && !jwt_audience_allowed(p, tok))
		return JWT_STATUS_AUDIENCE_NOT_ALLOWED;
	return JWT_STATUS_OK;
}

/* See jwt.h. */
enum jwt_status jwt_verify_signature(const struct jwks *keys, const struct jwt *tok)
{
	bool any_eligible = false;
	enum jwt_status st, last = JWT_STATUS_VERIFICATION_FAIL;
	size_t i;

	if (keys == NULL)
		return JWT_STATUS_JWKS_FETCH_FAIL;
	for (i = 0; i < keys->n_keys; i++) {
		const struct jwk *k = &keys->keys[i];

		/* Skip only when both kids exist and differ, or the key names another alg. */
		if (tok->kid != NULL && k->kid != NULL &&
		    (tok->kid_len != k->kid_len || memcmp(tok->kid, k->kid, k->kid_len) != 0))
			continue;
		if (k->alg != JWT_ALG_UNSET && k->alg != tok->alg)
			continue;
		any_eligible = true;
		if (tok->sig_len > sizeof(tok->sig)) {
			if (tok->alg == JWT_ALG_EDDSA)
				last = JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH;
			continue;
		}
		st = jwk_verify(k, tok->alg, (const uint8_t *)tok->signing_input, tok->signing_input_len,
		                tok->sig, tok->sig_len);
		if (st == JWT_STATUS_OK)
			return JWT_STATUS_OK;
		if (st == JWT_STATUS_ED25519_SIGNATURE_WRONG_LENGTH)
			last = st;
	}
	return any_eligible ? last : JWT_STATUS_JWKS_KID_ALG_MISMATCH;
}

/* See jwt.h. */
bool jwt_kid_unknown(const struct jwks *keys, const struct jwt *tok)
{
	size_t i;

	if (keys == NULL || tok->kid == NULL)
		return false;
	for (i = 0; i < keys->n_keys; i++) {
		const struct jwk *k = &keys->keys[i];

		if (k->kid != NULL && k->kid_len == tok->kid_len && memcmp(k->kid, tok->kid, k->kid_len) == 0)
			return false;
	}
	return true;
}

/* See jwt.h. */
enum jwt_status jwt_verify(const struct jwt_verify_params *p, const struct jwks *keys, const struct jwt *tok,
                           int64_t now)
{
	enum jwt_status st = jwt_verify_claims(p, tok, now);

	if (st != JWT_STATUS_OK)
		return st;
	return jwt_verify_signature(keys, tok);
}

/* See jwt.h. */
enum jwt_status jwt_check(const struct jwt_verify_params *p, const struct jwks *keys, const char *token,
                          size_t len, int64_t now, struct jwt *tok)
{
	enum jwt_status st =
	        jwt_parse(tok, token, len, p->max_token_len, p->payload_json ? JWT_PARSE_PAYLOAD_JSON : 0);

	if (st != JWT_STATUS_OK)
		return st;
	return jwt_verify(p, keys, tok, now);
}
