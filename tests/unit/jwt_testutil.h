/* jwt_testutil.h: helpers for the JWT / JWK tests: mint tokens with OpenSSL (independently of the
 * verifier), export public keys as JWK text, read files from tests/data. Test-only; static. */
#ifndef JWTGATE_TESTS_JWT_TESTUTIL_H
#define JWTGATE_TESTS_JWT_TESTUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "jwtgate/b64url.h"
#include "jwtgate/common.h"
#include "jwtgate/jwt.h"

#define TU_CHECK(x)                                                                                          \
	do {                                                                                                 \
		if (!(x)) {                                                                                  \
			fprintf(stderr, "%s:%d: test helper failed: %s\n", __FILE__, __LINE__, #x);          \
			abort();                                                                             \
		}                                                                                            \
	} while (0)

/* malloc'd base64url of data. */
static inline char *tu_b64(const void *data, size_t len)
{
	size_t cap = B64URL_ENCODED_LEN(len) + 1, n;
	char *s = malloc(cap);

	TU_CHECK(s != NULL && b64url_encode(data, len, s, cap, &n) == 0);
	return s;
}

static inline char *tu_b64s(const char *s)
{
	return tu_b64(s, strlen(s));
}

/* malloc'd printf. */
static inline __attribute__((format(printf, 1, 2))) char *tu_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, fmt);
	TU_CHECK(vasprintf(&s, fmt, ap) >= 0);
	va_end(ap);
	return s;
}

/* malloc'd hex decode; *len set. */
static inline uint8_t *tu_unhex(const char *hex, size_t *len)
{
	size_t n = strlen(hex) / 2, i;
	uint8_t *b = malloc(n + 1);
	unsigned v;

	TU_CHECK(b != NULL && strlen(hex) % 2 == 0);
	for (i = 0; i < n; i++) {
		TU_CHECK(sscanf(hex + 2 * i, "%2x", &v) == 1);
		b[i] = (uint8_t)v;
	}
	*len = n;
	return b;
}

static inline const EVP_MD *tu_md(enum jwt_alg alg)
{
	switch (alg) {
	case JWT_ALG_RS256:
	case JWT_ALG_PS256:
	case JWT_ALG_ES256:
	case JWT_ALG_HS256:
		return EVP_sha256();
	case JWT_ALG_RS384:
	case JWT_ALG_PS384:
	case JWT_ALG_ES384:
	case JWT_ALG_HS384:
		return EVP_sha384();
	case JWT_ALG_RS512:
	case JWT_ALG_PS512:
	case JWT_ALG_ES512:
	case JWT_ALG_HS512:
		return EVP_sha512();
	default:
		return NULL;
	}
}

/* Signs data with key the way alg asks (for EC: raw R||S of 2 x clen). Returns malloc'd sig. */
static inline uint8_t *tu_sign(EVP_PKEY *key, enum jwt_alg alg, const void *data, size_t len, size_t *sig_len)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t *sig;
	size_t n = 0;

	TU_CHECK(ctx != NULL);
	TU_CHECK(EVP_DigestSignInit(ctx, &pctx, alg == JWT_ALG_EDDSA ? NULL : tu_md(alg), NULL, key) == 1);
	if (alg >= JWT_ALG_PS256 && alg <= JWT_ALG_PS512) {
		TU_CHECK(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1);
		TU_CHECK(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1);
	}
	TU_CHECK(EVP_DigestSign(ctx, NULL, &n, data, len) == 1);
	sig = malloc(n);
	TU_CHECK(sig != NULL && EVP_DigestSign(ctx, sig, &n, data, len) == 1);
	EVP_MD_CTX_free(ctx);
	if (alg >= JWT_ALG_ES256 && alg <= JWT_ALG_ES512) {
		size_t clen = alg == JWT_ALG_ES256 ? 32 : alg == JWT_ALG_ES384 ? 48 : 66;
		const unsigned char *p = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
		uint8_t *raw = calloc(1, 2 * clen);

		TU_CHECK(es != NULL && raw != NULL);
		TU_CHECK(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, (int)clen) == (int)clen);
		TU_CHECK(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + clen, (int)clen) == (int)clen);
		ECDSA_SIG_free(es);
		free(sig);
		sig = raw;
		n = 2 * clen;
	}
	*sig_len = n;
	return sig;
}

/* "<b64 header>.<b64 payload>.<b64 sig>" from JSON texts and raw signature bytes. */
static inline char *tu_token_raw(const char *header, const char *payload, const uint8_t *sig, size_t sig_len)
{
	char *h = tu_b64s(header), *p = tu_b64s(payload), *s = tu_b64(sig, sig_len);
	char *t = tu_fmt("%s.%s.%s", h, p, s);

	free(h);
	free(p);
	free(s);
	return t;
}

/* Mints a token signed with an asymmetric key. */
static inline char *tu_mint(EVP_PKEY *key, enum jwt_alg alg, const char *header, const char *payload)
{
	char *h = tu_b64s(header), *p = tu_b64s(payload);
	char *input = tu_fmt("%s.%s", h, p), *s, *t;
	size_t n;
	uint8_t *sig = tu_sign(key, alg, input, strlen(input), &n);

	s = tu_b64(sig, n);
	t = tu_fmt("%s.%s", input, s);
	free(h);
	free(p);
	free(input);
	free(s);
	free(sig);
	return t;
}

/* Mints an HS* token with secret. */
static inline char *tu_mint_hmac(const void *secret, size_t secret_len, enum jwt_alg alg, const char *header,
                                 const char *payload)
{
	char *h = tu_b64s(header), *p = tu_b64s(payload);
	char *input = tu_fmt("%s.%s", h, p), *s, *t;
	uint8_t mac[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	TU_CHECK(HMAC(tu_md(alg), secret_len ? secret : "", (int)secret_len, (const uint8_t *)input,
	              strlen(input), mac, &n) != NULL);
	s = tu_b64(mac, n);
	t = tu_fmt("%s.%s", input, s);
	free(h);
	free(p);
	free(input);
	free(s);
	return t;
}

static inline char *tu_bn_b64(const BIGNUM *bn, int pad)
{
	int n = pad ? pad : BN_num_bytes(bn);
	uint8_t *buf = malloc((size_t)n);
	char *s;

	TU_CHECK(buf != NULL && BN_bn2binpad(bn, buf, n) == n);
	s = tu_b64(buf, (size_t)n);
	free(buf);
	return s;
}

/* Public JWK members (without braces) of a key: "kty":...,"n":...,"e":... etc. */
static inline char *tu_jwk_members(EVP_PKEY *key)
{
	char *a = NULL, *b = NULL, *r;
	BIGNUM *n = NULL, *e = NULL;

	if (EVP_PKEY_is_a(key, "RSA")) {
		TU_CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
		TU_CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
		a = tu_bn_b64(n, 0);
		b = tu_bn_b64(e, 0);
		r = tu_fmt("\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", a, b);
	} else if (EVP_PKEY_is_a(key, "EC")) {
		char group[32];
		size_t glen, clen;
		const char *crv;

		TU_CHECK(EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
		                                        &glen) == 1);
		crv = strcmp(group, "prime256v1") == 0  ? "P-256"
		      : strcmp(group, "secp384r1") == 0 ? "P-384"
		                                        : "P-521";
		clen = crv[2] == '2' ? 32 : crv[2] == '3' ? 48 : 66;
		TU_CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &n) == 1);
		TU_CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &e) == 1);
		a = tu_bn_b64(n, (int)clen);
		b = tu_bn_b64(e, (int)clen);
		r = tu_fmt("\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"", crv, a, b);
	} else {
		uint8_t raw[32];
		size_t len = sizeof(raw);

		TU_CHECK(EVP_PKEY_get_raw_public_key(key, raw, &len) == 1 && len == 32);
		a = tu_b64(raw, len);
		r = tu_fmt("\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"", a);
	}
	BN_free(n);
	BN_free(e);
	free(a);
	free(b);
	return r;
}

static inline EVP_PKEY *tu_keygen(const char *type, const char *param)
{
	EVP_PKEY *k = NULL;

	if (strcmp(type, "RSA") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)atoi(param));
	else if (strcmp(type, "EC") == 0)
		k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", param);
	else
		k = EVP_PKEY_Q_keygen(NULL, NULL, type);
	TU_CHECK(k != NULL);
	return k;
}

/* Parses a JWKS text that must be valid. */
static inline struct jwks *tu_jwks(const char *text)
{
	struct jwks *ks = NULL;

	TU_CHECK(jwks_parse(text, strlen(text), "test", &ks) == JWT_STATUS_OK && ks != NULL);
	return ks;
}

/* tests/data, the repository's own copy of every file a test reads (tests/data/PROVENANCE); the
 * build gives its absolute path, so no test depends on its working directory or on files outside the
 * repository. */
#ifndef JWTGATE_TEST_DATA
#error "JWTGATE_TEST_DATA (tests/data) must be defined by the build"
#endif

/* Reads tests/data/<rel> into a malloc'd NUL-terminated buffer. */
static inline char *tu_read_data(const char *rel, size_t *len)
{
	char path[4096];
	FILE *f;
	long n;
	char *buf;

	snprintf(path, sizeof(path), "%s/%s", JWTGATE_TEST_DATA, rel);
	f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "cannot open %s\n", path);
		abort();
	}
	TU_CHECK(fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0);
	buf = malloc((size_t)n + 1);
	TU_CHECK(buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

#endif
