/* token_main.c: the jwtgate-token command. It mints compact JWS tokens (JWTs) for tests, benchmarks and
 * users: the "generate a token" step of the JWT Authentication task.
 *
 * Keys come from a JWK (private RSA, EC, OKP Ed25519/Ed448 or oct key; also a JWKS, picking the key by
 * --kid) or a PEM private key. libjwt 1.10 signs the algorithms it knows (HS*, RS*, ES*); OpenSSL signs
 * the rest (PS*, EdDSA) and any token whose "alg" or "typ" header the user overrides, because libjwt
 * rewrites those two members. The verification path of jwtgate never uses libjwt (DESIGN.md, "libjwt");
 * minting is where it is safe: we choose the algorithm, we hold the key.
 *
 * Exit status: 0 tokens written, 1 signing failed, 2 bad usage or bad key.
 *
 * `inspect` and `verify` (token_verify.c) decode and verify tokens with the proxy's own code.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "core/common.h"
#include "tools/token_verify.h"

#define TOKEN_EXIT_OK    0
#define TOKEN_EXIT_FAIL  1
#define TOKEN_EXIT_USAGE 2

#define TOKEN_KEY_FILE_MAX   (1024 * 1024) /* a key file larger than this is refused, not read */
#define TOKEN_DEFAULT_EXP_IN 3600          /* seconds: tokens are valid for one hour unless told otherwise */
#define TOKEN_COUNT_MAX      10000000UL    /* --count bound: ten million tokens is already hours of RSA */
#define TOKEN_JTI_BYTES      16            /* random bytes in a jti: distinct tokens for cache-miss runs */

enum token_key_kind {
	TOKEN_KEY_RSA = 0,
	TOKEN_KEY_EC,
	TOKEN_KEY_OKP, /* Ed25519 or Ed448 (EdDSA, RFC 8037) */
	TOKEN_KEY_OCT, /* HMAC secret */
};

/* One JWS algorithm (RFC 7518 section 3.1, RFC 8037 section 3.1) and how we sign it. */
struct token_alg {
	const char *name;
	enum token_key_kind kind;
	const char *md;       /* digest name; NULL for EdDSA (the signature hashes by itself) */
	const char *ec_group; /* ES*: the one curve the algorithm allows (RFC 7518 section 3.4) */
	size_t ec_width;      /* ES*: bytes of R and of S in the raw signature */
	bool is_pss;          /* PS*: RSASSA-PSS, MGF1 with the same hash, salt length = hash length */
	jwt_alg_t libjwt_alg; /* JWT_ALG_NONE when libjwt 1.10 cannot sign it */
};

static const struct token_alg token_algs[] = {
        {"HS256", TOKEN_KEY_OCT, "SHA256", NULL, 0, false, JWT_ALG_HS256},
        {"HS384", TOKEN_KEY_OCT, "SHA384", NULL, 0, false, JWT_ALG_HS384},
        {"HS512", TOKEN_KEY_OCT, "SHA512", NULL, 0, false, JWT_ALG_HS512},
        {"RS256", TOKEN_KEY_RSA, "SHA256", NULL, 0, false, JWT_ALG_RS256},
        {"RS384", TOKEN_KEY_RSA, "SHA384", NULL, 0, false, JWT_ALG_RS384},
        {"RS512", TOKEN_KEY_RSA, "SHA512", NULL, 0, false, JWT_ALG_RS512},
        {"PS256", TOKEN_KEY_RSA, "SHA256", NULL, 0, true, JWT_ALG_NONE},
        {"PS384", TOKEN_KEY_RSA, "SHA384", NULL, 0, true, JWT_ALG_NONE},
        {"PS512", TOKEN_KEY_RSA, "SHA512", NULL, 0, true, JWT_ALG_NONE},
        {"ES256", TOKEN_KEY_EC, "SHA256", "prime256v1", 32, false, JWT_ALG_ES256},
        {"ES384", TOKEN_KEY_EC, "SHA384", "secp384r1", 48, false, JWT_ALG_ES384},
        {"ES512", TOKEN_KEY_EC, "SHA512", "secp521r1", 66, false, JWT_ALG_ES512},
        {"EdDSA", TOKEN_KEY_OKP, NULL, NULL, 0, false, JWT_ALG_NONE},
};

/* A loaded private key. */
struct token_key {
	enum token_key_kind kind;
	EVP_PKEY *pkey;        /* RSA, EC, OKP */
	unsigned char *secret; /* oct: the HMAC key */
	size_t secret_len;
	char *pem; /* RSA, EC: PKCS#8 PEM text for libjwt (it reads keys only as PEM) */
	size_t pem_len;
	char *kid;            /* the JWK's kid, or NULL */
	const char *ec_group; /* EC: OpenSSL group name */
};

struct token_options {
	const char *key_file;
	const char *alg_name;
	const char *kid; /* --kid; NULL: the JWK's kid */
	bool has_exp;
	int64_t exp_in;
	bool has_nbf;
	int64_t nbf_in;
	bool has_iat; /* --iat SECONDS; otherwise the current time */
	int64_t iat;
	unsigned long count;
	bool force_openssl; /* --sign-with openssl: sign everything with OpenSSL (cross-checks libjwt) */
	json_t *claims;     /* claims given on the command line, laid over the generated ones */
	json_t *aud;        /* --aud values in order */
	json_t *headers;    /* --header members, laid over the generated header */
};

static const char *token_progname = "jwtgate-token";

static void token_usage(FILE *out)
{
	fprintf(out,
	        "Usage: %s [mint] --key FILE [options]\n"
	        "       %s inspect [TOKEN|-]                   (decode, not verified; see inspect --help)\n"
	        "       %s verify --jwks FILE|URL [...] [TOKEN|-]  (verify as jwtgate; see verify --help)\n"
	        "Mint a signed JWT (compact JWS) and print it on stdout.\n"
	        "\n"
	        "  --key FILE             private key: JWK (RSA, EC, OKP Ed25519/Ed448, oct), JWKS (pick "
	        "with --kid)\n"
	        "                         or PEM (RSA, EC, Ed25519, Ed448)\n"
	        "  --alg ALG              HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384\n"
	        "                         ES512 EdDSA (default from the key: RSA RS256, P-256 ES256, P-384 "
	        "ES384,\n"
	        "                         P-521 ES512, Ed25519/Ed448 EdDSA, oct HS256; or the JWK's "
	        "\"alg\")\n"
	        "  --kid KID              \"kid\" header (default: the JWK's kid; none for PEM)\n"
	        "  --iss S, --sub S       \"iss\", \"sub\" claims\n"
	        "  --aud S                \"aud\" claim; repeat for an array\n"
	        "  --exp-in DURATION      \"exp\" = iat + DURATION (default 1h); may be negative: --exp-in "
	        "-5m\n"
	        "  --no-exp               no \"exp\" claim\n"
	        "  --nbf-in DURATION      \"nbf\" = iat + DURATION\n"
	        "  --iat NOW|SECONDS      \"iat\" and the base of exp/nbf (default NOW)\n"
	        "  --claim NAME=VALUE     string claim (repeatable; overrides generated claims)\n"
	        "  --claim-json NAME=JSON claim with any JSON value, e.g. --claim-json "
	        "'org={\"name\":\"x\"}'\n"
	        "  --header NAME=JSON     header member with any JSON value, e.g. --header 'cty=\"JWT\"'\n"
	        "  --count N              print N tokens, one a line, each with its own random \"jti\"\n"
	        "  --sign-with openssl    sign with OpenSSL even where libjwt could (for cross-checks)\n"
	        "  --help                 this text\n"
	        "\n"
	        "DURATION: [-]N with unit s, m, h or d, combinable (90, 90s, 5m, 1h30m, 2d); bare N is "
	        "seconds.\n"
	        "Every token has \"iat\" and a random \"jti\" unless a --claim replaces them.\n"
	        "Exit status: 0 done, 1 signing failed, 2 bad usage or bad key.\n",
	        token_progname, token_progname, token_progname);
}

static void token_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Prints "jwtgate-token: message" and a hint, and exits 2. Start-up tier: nothing to clean. */
static void token_die_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", token_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try %s --help)\n", token_progname);
	exit(TOKEN_EXIT_USAGE);
}

/* Prints the message and the OpenSSL error queue to stderr. */
static void token_print_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void token_print_error(const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	char buf[256];

	fprintf(stderr, "%s: ", token_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		fprintf(stderr, "  %s\n", buf);
	}
}

static void *token_xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);

	if (p == NULL) {
		fprintf(stderr, "%s: out of memory\n", token_progname);
		exit(TOKEN_EXIT_FAIL);
	}
	return p;
}

static const struct token_alg *token_alg_find(const char *name)
{
	size_t i;

	for (i = 0; i < JG_ARRAY_SIZE(token_algs); i++) {
		if (strcmp(token_algs[i].name, name) == 0)
			return &token_algs[i];
	}
	return NULL;
}

/* ---- durations and numbers ---- */

/* Parses "[-]N[unit]..." (units s, m, h, d; bare number = seconds) into seconds.
 * Returns 0, or JG_ERR_INVAL for anything else (empty, overflow, unknown unit). */
static int token_parse_duration(const char *s, int64_t *out)
{
	bool is_negative = false;
	int64_t total = 0;
	const char *p = s;

	if (*p == '-' || *p == '+') {
		is_negative = *p == '-';
		p++;
	}
	if (*p == '\0')
		return JG_ERR_INVAL;
	while (*p != '\0') {
		int64_t n = 0, unit;

		if (!isdigit((unsigned char)*p))
			return JG_ERR_INVAL;
		while (isdigit((unsigned char)*p)) {
			if (n > (INT64_MAX - 9) / 10)
				return JG_ERR_INVAL;
			n = n * 10 + (*p - '0');
			p++;
		}
		switch (*p) {
		case '\0':
			unit = 1;
			break;
		case 's':
			unit = 1;
			p++;
			break;
		case 'm':
			unit = 60;
			p++;
			break;
		case 'h':
			unit = 3600;
			p++;
			break;
		case 'd':
			unit = 86400;
			p++;
			break;
		default:
			return JG_ERR_INVAL;
		}
		/* Bound: 100 years in seconds keeps exp far inside JSON's exact integer range. */
		if (n > 3153600000LL / unit || total + n * unit > 3153600000LL)
			return JG_ERR_INVAL;
		total += n * unit;
	}
	*out = is_negative ? -total : total;
	return 0;
}

/* Parses a non-negative decimal integer no larger than max. Returns 0 or JG_ERR_INVAL. */
static int token_parse_uint(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)s[0]))
		return JG_ERR_INVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return JG_ERR_INVAL;
	*out = v;
	return 0;
}

/* ---- base64url (RFC 4648 section 5, no padding: RFC 7515 section 2) ---- */

static const char token_b64url_alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encodes n bytes; returns a malloc'ed NUL-terminated string (caller frees). */
static char *token_b64url_encode(const unsigned char *in, size_t n)
{
	char *out = token_xmalloc((n + 2) / 3 * 4 + 1);
	size_t i, o = 0;

	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = token_b64url_alphabet[v >> 18];
		out[o++] = token_b64url_alphabet[(v >> 12) & 63];
		out[o++] = token_b64url_alphabet[(v >> 6) & 63];
		out[o++] = token_b64url_alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = token_b64url_alphabet[v >> 18];
		out[o++] = token_b64url_alphabet[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = token_b64url_alphabet[v >> 18];
		out[o++] = token_b64url_alphabet[(v >> 12) & 63];
		out[o++] = token_b64url_alphabet[(v >> 6) & 63];
	}
	out[o] = '\0';
	return out;
}

static int token_b64url_value(char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(token_b64url_alphabet, c);
	return p == NULL ? -1 : (int)(p - token_b64url_alphabet);
}

/* Decodes a JWK member (base64url; trailing '=' padding tolerated since some tools write it).
 * Returns 0 with a malloc'ed buffer in *out (caller frees), or JG_ERR_PARSE. */
static int token_b64url_decode(const char *in, unsigned char **out, size_t *out_len)
{
	size_t n = strlen(in), i, o = 0;
	uint32_t acc = 0;
	int bits = 0;
	unsigned char *buf;

	while (n > 0 && in[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return JG_ERR_PARSE;
	buf = token_xmalloc(n * 3 / 4 + 1);
	for (i = 0; i < n; i++) {
		int v = token_b64url_value(in[i]);

		if (v < 0) {
			free(buf);
			return JG_ERR_PARSE;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
		}
	}
	*out = buf;
	*out_len = o;
	return 0;
}

/* ---- keys ---- */

static void token_key_clear(struct token_key *key)
{
	EVP_PKEY_free(key->pkey);
	key->pkey = NULL;
	if (key->secret != NULL)
		OPENSSL_cleanse(key->secret, key->secret_len);
	free(key->secret);
	key->secret = NULL;
	if (key->pem != NULL)
		OPENSSL_cleanse(key->pem, key->pem_len);
	free(key->pem);
	key->pem = NULL;
	free(key->kid);
	key->kid = NULL;
}

/* Reads the whole file (at most TOKEN_KEY_FILE_MAX bytes) into a NUL-terminated buffer. */
static int token_read_file(const char *path, char **out, size_t *out_len)
{
	FILE *f;
	char *buf = NULL;
	size_t n;
	int ret = JG_ERR_IO;

	f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "%s: %s: %s\n", token_progname, path, strerror(errno));
		return JG_ERR_IO;
	}
	buf = token_xmalloc(TOKEN_KEY_FILE_MAX + 1);
	n = fread(buf, 1, TOKEN_KEY_FILE_MAX + 1, f);
	if (ferror(f)) {
		fprintf(stderr, "%s: %s: read error\n", token_progname, path);
		goto cleanup;
	}
	if (n > TOKEN_KEY_FILE_MAX) {
		fprintf(stderr, "%s: %s: larger than %d bytes, not a key\n", token_progname, path,
		        TOKEN_KEY_FILE_MAX);
		ret = JG_ERR_LIMIT;
		goto cleanup;
	}
	buf[n] = '\0';
	*out = buf;
	*out_len = n;
	buf = NULL;
	ret = 0;
cleanup:
	free(buf);
	fclose(f);
	return ret;
}

/* Decodes the base64url member `name` of a JWK into a BIGNUM (big-endian unsigned). NULL when absent
 * or malformed; *is_present tells which. */
static BIGNUM *token_jwk_bn(json_t *jwk, const char *name, bool *is_present)
{
	const char *s = json_string_value(json_object_get(jwk, name));
	unsigned char *raw = NULL;
	size_t raw_len;
	BIGNUM *bn;

	*is_present = s != NULL;
	if (s == NULL || token_b64url_decode(s, &raw, &raw_len) != 0 || raw_len == 0) {
		free(raw);
		return NULL;
	}
	bn = BN_bin2bn(raw, (int)raw_len, NULL);
	OPENSSL_cleanse(raw, raw_len);
	free(raw);
	return bn;
}

/* Builds an RSA private key from n, e, d and, when all present, p, q, dp, dq, qi (RFC 7518 6.3.2). */
static int token_jwk_rsa(json_t *jwk, struct token_key *key)
{
	static const char *const names[] = {"n", "e", "d", "p", "q", "dp", "dq", "qi"};
	static const char *const params[] = {
	        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,
	        OSSL_PKEY_PARAM_RSA_D,         OSSL_PKEY_PARAM_RSA_FACTOR1,
	        OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
	        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[8] = {NULL};
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *ossl_params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	size_t i, n_crt = 0, n_use;
	int ret = JG_ERR_INVAL;

	for (i = 0; i < JG_ARRAY_SIZE(names); i++) {
		bool is_present;

		bn[i] = token_jwk_bn(jwk, names[i], &is_present);
		if (is_present && bn[i] == NULL) {
			fprintf(stderr, "%s: RSA JWK member \"%s\" is not base64url\n", token_progname,
			        names[i]);
			goto cleanup;
		}
		if (i < 3 && bn[i] == NULL) {
			fprintf(stderr, "%s: RSA JWK lacks \"%s\"%s\n", token_progname, names[i],
			        i == 2 ? " (a public key cannot sign)" : "");
			goto cleanup;
		}
		if (i >= 3 && bn[i] != NULL)
			n_crt++;
	}
	/* The CRT members are an optimisation; use them only as a complete set. */
	n_use = n_crt == 5 ? 8 : 3;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL)
		goto cleanup;
	for (i = 0; i < n_use; i++) {
		if (!OSSL_PARAM_BLD_push_BN(bld, params[i], bn[i]))
			goto cleanup;
	}
	ossl_params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (ossl_params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &key->pkey, EVP_PKEY_KEYPAIR, ossl_params) <= 0) {
		token_print_error("RSA JWK: OpenSSL refused the key");
		goto cleanup;
	}
	key->kind = TOKEN_KEY_RSA;
	ret = 0;
cleanup:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(ossl_params);
	OSSL_PARAM_BLD_free(bld);
	for (i = 0; i < JG_ARRAY_SIZE(bn); i++)
		BN_clear_free(bn[i]);
	return ret;
}

/* Builds an EC private key from crv, x, y, d (RFC 7518 section 6.2.2). */
static int token_jwk_ec(json_t *jwk, struct token_key *key)
{
	static const struct {
		const char *crv, *group;
		size_t width;
	} curves[] = {
	        {"P-256", "prime256v1", 32},
	        {"P-384", "secp384r1", 48},
	        {"P-521", "secp521r1", 66},
	};
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	const char *group = NULL;
	size_t width = 0, i, xy_len[2] = {0, 0};
	unsigned char *xy[2] = {NULL, NULL};
	unsigned char *point = NULL;
	BIGNUM *d = NULL;
	bool is_present;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *ossl_params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int ret = JG_ERR_INVAL;

	for (i = 0; crv != NULL && i < JG_ARRAY_SIZE(curves); i++) {
		if (strcmp(crv, curves[i].crv) == 0) {
			group = curves[i].group;
			width = curves[i].width;
		}
	}
	if (group == NULL) {
		fprintf(stderr, "%s: EC JWK: \"crv\" must be P-256, P-384 or P-521\n", token_progname);
		goto cleanup;
	}
	d = token_jwk_bn(jwk, "d", &is_present);
	if (d == NULL) {
		fprintf(stderr, "%s: EC JWK: %s\n", token_progname,
		        is_present ? "\"d\" is not base64url" : "no \"d\" (a public key cannot sign)");
		goto cleanup;
	}
	for (i = 0; i < 2; i++) {
		const char *s = json_string_value(json_object_get(jwk, i == 0 ? "x" : "y"));

		if (s == NULL || token_b64url_decode(s, &xy[i], &xy_len[i]) != 0 || xy_len[i] != width) {
			fprintf(stderr, "%s: EC JWK: \"%s\" must be %zu bytes of base64url\n", token_progname,
			        i == 0 ? "x" : "y", width);
			goto cleanup;
		}
	}
	/* Uncompressed point, SEC 1 section 2.3.3: 0x04 || X || Y. */
	point = token_xmalloc(1 + 2 * width);
	point[0] = 0x04;
	memcpy(point + 1, xy[0], width);
	memcpy(point + 1 + width, xy[1], width);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL || !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, 1 + 2 * width) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d))
		goto cleanup;
	ossl_params = OSSL_PARAM_BLD_to_param(bld);
	ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (ossl_params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &key->pkey, EVP_PKEY_KEYPAIR, ossl_params) <= 0) {
		token_print_error("EC JWK: OpenSSL refused the key");
		goto cleanup;
	}
	key->kind = TOKEN_KEY_EC;
	key->ec_group = group;
	ret = 0;
cleanup:
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(ossl_params);
	OSSL_PARAM_BLD_free(bld);
	free(point);
	free(xy[0]);
	free(xy[1]);
	BN_clear_free(d);
	return ret;
}

/* Builds an Ed25519/Ed448 private key from crv and d (RFC 8037 section 2). */
static int token_jwk_okp(json_t *jwk, struct token_key *key)
{
	const char *crv = json_string_value(json_object_get(jwk, "crv"));
	const char *d = json_string_value(json_object_get(jwk, "d"));
	unsigned char *raw = NULL;
	size_t raw_len = 0;
	int type, ret = JG_ERR_INVAL;

	if (crv != NULL && strcmp(crv, "Ed25519") == 0) {
		type = EVP_PKEY_ED25519;
	} else if (crv != NULL && strcmp(crv, "Ed448") == 0) {
		type = EVP_PKEY_ED448;
	} else {
		fprintf(stderr, "%s: OKP JWK: \"crv\" must be Ed25519 or Ed448\n", token_progname);
		return JG_ERR_INVAL;
	}
	if (d == NULL || token_b64url_decode(d, &raw, &raw_len) != 0) {
		fprintf(stderr, "%s: OKP JWK: %s\n", token_progname,
		        d == NULL ? "no \"d\" (a public key cannot sign)" : "\"d\" is not base64url");
		goto cleanup;
	}
	key->pkey = EVP_PKEY_new_raw_private_key(type, NULL, raw, raw_len);
	if (key->pkey == NULL) {
		token_print_error("OKP JWK: \"d\" is not a %s private key (%zu bytes)", crv, raw_len);
		goto cleanup;
	}
	key->kind = TOKEN_KEY_OKP;
	ret = 0;
cleanup:
	if (raw != NULL)
		OPENSSL_cleanse(raw, raw_len);
	free(raw);
	return ret;
}

/* Loads one JWK object into key (kid included). */
static int token_jwk_load(json_t *jwk, struct token_key *key)
{
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *kid = json_string_value(json_object_get(jwk, "kid"));
	int ret;

	if (kty == NULL) {
		fprintf(stderr, "%s: JWK has no \"kty\"\n", token_progname);
		return JG_ERR_INVAL;
	}
	if (strcmp(kty, "RSA") == 0) {
		ret = token_jwk_rsa(jwk, key);
	} else if (strcmp(kty, "EC") == 0) {
		ret = token_jwk_ec(jwk, key);
	} else if (strcmp(kty, "OKP") == 0) {
		ret = token_jwk_okp(jwk, key);
	} else if (strcmp(kty, "oct") == 0) {
		const char *k = json_string_value(json_object_get(jwk, "k"));

		if (k == NULL || token_b64url_decode(k, &key->secret, &key->secret_len) != 0 ||
		    key->secret_len == 0) {
			fprintf(stderr, "%s: oct JWK: \"k\" must be a non-empty base64url string\n",
			        token_progname);
			return JG_ERR_INVAL;
		}
		key->kind = TOKEN_KEY_OCT;
		ret = 0;
	} else {
		fprintf(stderr, "%s: JWK \"kty\" \"%s\" is not RSA, EC, OKP or oct\n", token_progname, kty);
		return JG_ERR_INVAL;
	}
	if (ret == 0 && kid != NULL)
		key->kid = jg_xstrdup(kid);
	return ret;
}

/* The JWK's "alg" member, when it names an algorithm we sign; otherwise NULL. */
static const char *token_jwk_alg(json_t *jwk)
{
	const char *alg = json_string_value(json_object_get(jwk, "alg"));

	return alg != NULL && token_alg_find(alg) != NULL ? alg : NULL;
}

/* Parses JSON text holding a JWK or a JWKS. From a JWKS it takes the key whose kid equals want_kid,
 * or the only private key when want_kid is NULL. *jwk_alg receives the JWK's "alg" (static lifetime
 * is not guaranteed: it is copied). */
static int token_key_load_json(const char *text, const char *want_kid, struct token_key *key, char **jwk_alg)
{
	json_error_t jerr;
	json_t *root, *jwk = NULL, *keys;
	const char *alg;
	int ret = JG_ERR_INVAL;

	root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL || !json_is_object(root)) {
		fprintf(stderr, "%s: key file is not a JSON object (line %d: %s)\n", token_progname,
		        root == NULL ? jerr.line : 1, root == NULL ? jerr.text : "not an object");
		goto cleanup;
	}
	keys = json_object_get(root, "keys");
	if (keys == NULL) {
		jwk = root;
	} else if (json_is_array(keys)) {
		size_t i, n_match = 0;
		json_t *k;

		json_array_foreach(keys, i, k)
		{
			const char *kid = json_string_value(json_object_get(k, "kid"));
			bool is_private = json_object_get(k, "d") != NULL || json_object_get(k, "k") != NULL;

			if (want_kid != NULL ? (kid != NULL && strcmp(kid, want_kid) == 0) : is_private) {
				jwk = k;
				n_match++;
			}
		}
		if (n_match != 1) {
			fprintf(stderr, "%s: JWKS: %s\n", token_progname,
			        n_match == 0
			                ? (want_kid != NULL ? "no key with that --kid" : "no private key")
			                : "several keys match: choose one with --kid");
			goto cleanup;
		}
	} else {
		fprintf(stderr, "%s: JWKS \"keys\" is not an array\n", token_progname);
		goto cleanup;
	}
	if (!json_is_object(jwk)) {
		fprintf(stderr, "%s: JWK is not an object\n", token_progname);
		goto cleanup;
	}
	ret = token_jwk_load(jwk, key);
	alg = token_jwk_alg(jwk);
	if (ret == 0 && alg != NULL)
		*jwk_alg = jg_xstrdup(alg);
cleanup:
	json_decref(root);
	return ret;
}

/* Never prompt for a passphrase: an encrypted PEM is an error. */
static int token_pem_password_cb(char *buf, int size, int rwflag, void *u)
{
	JG_UNUSED(buf);
	JG_UNUSED(size);
	JG_UNUSED(rwflag);
	JG_UNUSED(u);
	return -1;
}

static int token_key_load_pem(const char *text, size_t len, struct token_key *key)
{
	BIO *bio = BIO_new_mem_buf(text, (int)len);
	char group[64];
	size_t group_len;

	if (bio == NULL)
		return JG_ERR_NOMEM;
	key->pkey = PEM_read_bio_PrivateKey(bio, NULL, token_pem_password_cb, NULL);
	BIO_free(bio);
	if (key->pkey == NULL) {
		token_print_error("PEM: no unencrypted private key found");
		return JG_ERR_INVAL;
	}
	switch (EVP_PKEY_get_base_id(key->pkey)) {
	case EVP_PKEY_RSA:
		key->kind = TOKEN_KEY_RSA;
		return 0;
	case EVP_PKEY_EC:
		key->kind = TOKEN_KEY_EC;
		if (!EVP_PKEY_get_utf8_string_param(key->pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
		                                    sizeof(group), &group_len))
			break;
		if (strcmp(group, "prime256v1") == 0)
			key->ec_group = "prime256v1";
		else if (strcmp(group, "secp384r1") == 0)
			key->ec_group = "secp384r1";
		else if (strcmp(group, "secp521r1") == 0)
			key->ec_group = "secp521r1";
		else
			break;
		return 0;
	case EVP_PKEY_ED25519:
	case EVP_PKEY_ED448:
		key->kind = TOKEN_KEY_OKP;
		return 0;
	default:
		break;
	}
	fprintf(stderr, "%s: PEM key type is not RSA, EC (P-256, P-384, P-521), Ed25519 or Ed448\n",
	        token_progname);
	return JG_ERR_UNSUPPORTED;
}

/* Loads the key file (JWK, JWKS or PEM). *jwk_alg receives the JWK's "alg" if any (caller frees). */
static int token_key_load(const char *path, const char *want_kid, struct token_key *key, char **jwk_alg)
{
	char *text = NULL;
	size_t len = 0;
	const char *p;
	int ret;

	ret = token_read_file(path, &text, &len);
	if (ret != 0)
		return ret;
	for (p = text; isspace((unsigned char)*p); p++)
		;
	if (*p == '{') {
		ret = token_key_load_json(p, want_kid, key, jwk_alg);
	} else if (strstr(text, "-----BEGIN") != NULL) {
		ret = token_key_load_pem(text, len, key);
	} else {
		fprintf(stderr, "%s: %s: neither a JWK (JSON) nor a PEM private key\n", token_progname, path);
		ret = JG_ERR_INVAL;
	}
	OPENSSL_cleanse(text, len);
	free(text);
	return ret;
}

/* The algorithm a key signs with when --alg is not given. */
static const char *token_key_default_alg(const struct token_key *key)
{
	switch (key->kind) {
	case TOKEN_KEY_RSA:
		return "RS256";
	case TOKEN_KEY_EC:
		if (strcmp(key->ec_group, "secp384r1") == 0)
			return "ES384";
		if (strcmp(key->ec_group, "secp521r1") == 0)
			return "ES512";
		return "ES256";
	case TOKEN_KEY_OKP:
		return "EdDSA";
	case TOKEN_KEY_OCT:
		return "HS256";
	}
	return NULL;
}

/* Writes the key as PKCS#8 PEM for libjwt, once (it re-reads the PEM on every encode). */
static int token_key_make_pem(struct token_key *key)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long n;
	int ret = JG_ERR_INVAL;

	if (bio == NULL || !PEM_write_bio_PrivateKey(bio, key->pkey, NULL, NULL, 0, NULL, NULL)) {
		token_print_error("cannot write the key as PEM");
		goto cleanup;
	}
	n = BIO_get_mem_data(bio, &data);
	if (n <= 0)
		goto cleanup;
	key->pem = token_xmalloc((size_t)n + 1);
	memcpy(key->pem, data, (size_t)n);
	key->pem[n] = '\0';
	key->pem_len = (size_t)n;
	ret = 0;
cleanup:
	BIO_free(bio);
	return ret;
}

/* ---- signing ---- */

/* Signs input with OpenSSL; writes the JWS signature (raw R||S for ES*, RFC 7518 section 3.4) into a
 * malloc'ed buffer. Returns 0 or JG_ERR_INVAL (message printed). */
static int token_sign_openssl(const struct token_alg *alg, const struct token_key *key, const char *input,
                              unsigned char **sig_out, size_t *sig_len_out)
{
	EVP_MD_CTX *mctx = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = NULL;
	unsigned char *der = NULL, *sig = NULL;
	const unsigned char *der_p;
	size_t der_len = 0, input_len = strlen(input);
	ECDSA_SIG *ec_sig = NULL;
	int ret = JG_ERR_INVAL;

	if (alg->md != NULL) {
		md = EVP_get_digestbyname(alg->md);
		if (md == NULL)
			goto fail;
	}
	if (alg->kind == TOKEN_KEY_OCT) {
		unsigned int mac_len = 0;

		sig = token_xmalloc(EVP_MAX_MD_SIZE);
		if (HMAC(md, key->secret, (int)key->secret_len, (const unsigned char *)input, input_len, sig,
		         &mac_len) == NULL)
			goto fail;
		*sig_out = sig;
		*sig_len_out = mac_len;
		return 0;
	}
	mctx = EVP_MD_CTX_new();
	if (mctx == NULL || EVP_DigestSignInit(mctx, &pctx, md, NULL, key->pkey) <= 0)
		goto fail;
	if (alg->is_pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
	                    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
	                    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) <= 0))
		goto fail;
	if (EVP_DigestSign(mctx, NULL, &der_len, (const unsigned char *)input, input_len) <= 0)
		goto fail;
	der = token_xmalloc(der_len);
	if (EVP_DigestSign(mctx, der, &der_len, (const unsigned char *)input, input_len) <= 0)
		goto fail;
	if (alg->kind == TOKEN_KEY_EC) {
		const BIGNUM *r, *s;

		der_p = der;
		ec_sig = d2i_ECDSA_SIG(NULL, &der_p, (long)der_len);
		if (ec_sig == NULL)
			goto fail;
		ECDSA_SIG_get0(ec_sig, &r, &s);
		sig = token_xmalloc(2 * alg->ec_width);
		if (BN_bn2binpad(r, sig, (int)alg->ec_width) < 0 ||
		    BN_bn2binpad(s, sig + alg->ec_width, (int)alg->ec_width) < 0)
			goto fail;
		*sig_out = sig;
		*sig_len_out = 2 * alg->ec_width;
		sig = NULL;
	} else {
		*sig_out = der;
		*sig_len_out = der_len;
		der = NULL;
	}
	ret = 0;
	goto cleanup;
fail:
	token_print_error("%s: signing failed", alg->name);
cleanup:
	ECDSA_SIG_free(ec_sig);
	free(der);
	free(sig);
	EVP_MD_CTX_free(mctx);
	return ret;
}

/* Mints one token with OpenSSL from the header and payload objects. Returns a malloc'ed string or NULL. */
static char *token_encode_openssl(const struct token_alg *alg, const struct token_key *key, json_t *header,
                                  json_t *payload)
{
	char *header_json = NULL, *payload_json = NULL, *h64 = NULL, *p64 = NULL, *s64 = NULL;
	char *input = NULL, *token = NULL;
	unsigned char *sig = NULL;
	size_t sig_len = 0, input_len;

	header_json = json_dumps(header, JSON_COMPACT | JSON_SORT_KEYS);
	payload_json = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
	if (header_json == NULL || payload_json == NULL)
		goto cleanup;
	h64 = token_b64url_encode((const unsigned char *)header_json, strlen(header_json));
	p64 = token_b64url_encode((const unsigned char *)payload_json, strlen(payload_json));
	input_len = strlen(h64) + 1 + strlen(p64);
	input = token_xmalloc(input_len + 1);
	snprintf(input, input_len + 1, "%s.%s", h64, p64);
	if (token_sign_openssl(alg, key, input, &sig, &sig_len) != 0)
		goto cleanup;
	s64 = token_b64url_encode(sig, sig_len);
	token = token_xmalloc(input_len + 1 + strlen(s64) + 1);
	snprintf(token, input_len + 1 + strlen(s64) + 1, "%s.%s", input, s64);
cleanup:
	free(sig);
	free(s64);
	free(input);
	free(p64);
	free(h64);
	free(payload_json);
	free(header_json);
	return token;
}

/* Mints one token with libjwt. `header` holds the extra members (no alg, no typ: libjwt writes those).
 * Returns a malloc'ed string or NULL. */
static char *token_encode_libjwt(const struct token_alg *alg, const struct token_key *key, json_t *header,
                                 json_t *payload)
{
	jwt_t *jwt = NULL;
	char *header_json = NULL, *payload_json = NULL, *token = NULL;
	const unsigned char *k;
	int k_len, err;

	if (key->kind == TOKEN_KEY_OCT) {
		k = key->secret;
		k_len = (int)key->secret_len;
	} else {
		k = (const unsigned char *)key->pem;
		k_len = (int)key->pem_len;
	}
	err = jwt_new(&jwt);
	if (err != 0)
		goto fail;
	err = jwt_set_alg(jwt, alg->libjwt_alg, k, k_len);
	if (err != 0)
		goto fail;
	if (json_object_size(header) > 0) {
		header_json = json_dumps(header, JSON_COMPACT);
		if (header_json == NULL || (err = jwt_add_headers_json(jwt, header_json)) != 0)
			goto fail;
	}
	payload_json = json_dumps(payload, JSON_COMPACT);
	if (payload_json == NULL || (err = jwt_add_grants_json(jwt, payload_json)) != 0)
		goto fail;
	token = jwt_encode_str(jwt);
	if (token == NULL) {
		err = errno;
		goto fail;
	}
	goto cleanup;
fail:
	fprintf(stderr, "%s: libjwt could not sign %s: %s\n", token_progname, alg->name,
	        strerror(err != 0 ? err : EINVAL));
	ERR_clear_error();
cleanup:
	free(payload_json);
	free(header_json);
	jwt_free(jwt);
	return token;
}

/* ---- command line ---- */

enum token_opt {
	TOKEN_OPT_KEY = 256,
	TOKEN_OPT_ALG,
	TOKEN_OPT_KID,
	TOKEN_OPT_ISS,
	TOKEN_OPT_SUB,
	TOKEN_OPT_AUD,
	TOKEN_OPT_EXP_IN,
	TOKEN_OPT_NO_EXP,
	TOKEN_OPT_NBF_IN,
	TOKEN_OPT_IAT,
	TOKEN_OPT_CLAIM,
	TOKEN_OPT_CLAIM_JSON,
	TOKEN_OPT_HEADER,
	TOKEN_OPT_COUNT,
	TOKEN_OPT_SIGN_WITH,
	TOKEN_OPT_HELP,
};

static const struct option token_long_options[] = {
        {"key", required_argument, NULL, TOKEN_OPT_KEY},
        {"alg", required_argument, NULL, TOKEN_OPT_ALG},
        {"kid", required_argument, NULL, TOKEN_OPT_KID},
        {"iss", required_argument, NULL, TOKEN_OPT_ISS},
        {"sub", required_argument, NULL, TOKEN_OPT_SUB},
        {"aud", required_argument, NULL, TOKEN_OPT_AUD},
        {"exp-in", required_argument, NULL, TOKEN_OPT_EXP_IN},
        {"no-exp", no_argument, NULL, TOKEN_OPT_NO_EXP},
        {"nbf-in", required_argument, NULL, TOKEN_OPT_NBF_IN},
        {"iat", required_argument, NULL, TOKEN_OPT_IAT},
        {"claim", required_argument, NULL, TOKEN_OPT_CLAIM},
        {"claim-json", required_argument, NULL, TOKEN_OPT_CLAIM_JSON},
        {"header", required_argument, NULL, TOKEN_OPT_HEADER},
        {"count", required_argument, NULL, TOKEN_OPT_COUNT},
        {"sign-with", required_argument, NULL, TOKEN_OPT_SIGN_WITH},
        {"help", no_argument, NULL, TOKEN_OPT_HELP},
        {NULL, 0, NULL, 0},
};

/* Splits "name=value" at the first '='; the name must not be empty. Returns a malloc'ed name. */
static char *token_split_assignment(const char *opt, const char *arg, const char **value)
{
	const char *eq = strchr(arg, '=');

	if (eq == NULL || eq == arg)
		token_die_usage("--%s wants NAME=VALUE, got \"%s\"", opt, arg);
	*value = eq + 1;
	return jg_xstrndup(arg, (size_t)(eq - arg));
}

/* Parses "name=JSON" into obj[name]; any JSON value (decoded with JSON_DECODE_ANY). */
static void token_set_json_member(json_t *obj, const char *opt, const char *arg)
{
	const char *value;
	char *name = token_split_assignment(opt, arg, &value);
	json_error_t jerr;
	json_t *v = json_loads(value, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);

	if (v == NULL)
		token_die_usage("--%s %s: value is not JSON (%s)", opt, name, jerr.text);
	json_object_set_new(obj, name, v);
	free(name);
}

static void token_parse_args(int argc, char **argv, struct token_options *o)
{
	int c;
	const char *value;
	char *name;
	uint64_t u;

	o->has_exp = true;
	o->exp_in = TOKEN_DEFAULT_EXP_IN;
	o->count = 1;
	o->claims = json_object();
	o->aud = json_array();
	o->headers = json_object();
	if (o->claims == NULL || o->aud == NULL || o->headers == NULL) {
		fprintf(stderr, "%s: out of memory\n", token_progname);
		exit(TOKEN_EXIT_FAIL);
	}
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", token_long_options, NULL)) != -1) {
		switch (c) {
		case TOKEN_OPT_KEY:
			o->key_file = optarg;
			break;
		case TOKEN_OPT_ALG:
			if (token_alg_find(optarg) == NULL)
				token_die_usage(
				        "--alg %s: not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 "
				        "PS384 PS512 ES256 ES384 ES512 EdDSA",
				        optarg);
			o->alg_name = optarg;
			break;
		case TOKEN_OPT_KID:
			o->kid = optarg;
			break;
		case TOKEN_OPT_ISS:
			json_object_set_new(o->claims, "iss", json_string(optarg));
			break;
		case TOKEN_OPT_SUB:
			json_object_set_new(o->claims, "sub", json_string(optarg));
			break;
		case TOKEN_OPT_AUD:
			json_array_append_new(o->aud, json_string(optarg));
			break;
		case TOKEN_OPT_EXP_IN:
			if (token_parse_duration(optarg, &o->exp_in) != 0)
				token_die_usage("--exp-in %s: not a duration (e.g. 90s, 5m, 1h30m, -1h)",
				                optarg);
			o->has_exp = true;
			break;
		case TOKEN_OPT_NO_EXP:
			o->has_exp = false;
			break;
		case TOKEN_OPT_NBF_IN:
			if (token_parse_duration(optarg, &o->nbf_in) != 0)
				token_die_usage("--nbf-in %s: not a duration (e.g. 90s, 5m, -1h)", optarg);
			o->has_nbf = true;
			break;
		case TOKEN_OPT_IAT:
			if (strcasecmp(optarg, "now") == 0) {
				o->has_iat = false;
			} else if (token_parse_uint(optarg, 253402300799ULL, &u) == 0) { /* year 9999 */
				o->has_iat = true;
				o->iat = (int64_t)u;
			} else {
				token_die_usage("--iat %s: want NOW or seconds since the epoch", optarg);
			}
			break;
		case TOKEN_OPT_CLAIM:
			name = token_split_assignment("claim", optarg, &value);
			json_object_set_new(o->claims, name, json_string(value));
			free(name);
			break;
		case TOKEN_OPT_CLAIM_JSON:
			token_set_json_member(o->claims, "claim-json", optarg);
			break;
		case TOKEN_OPT_HEADER:
			token_set_json_member(o->headers, "header", optarg);
			break;
		case TOKEN_OPT_COUNT:
			if (token_parse_uint(optarg, TOKEN_COUNT_MAX, &u) != 0 || u == 0)
				token_die_usage("--count %s: want 1 to %lu", optarg, TOKEN_COUNT_MAX);
			o->count = (unsigned long)u;
			break;
		case TOKEN_OPT_SIGN_WITH:
			if (strcmp(optarg, "openssl") == 0)
				o->force_openssl = true;
			else if (strcmp(optarg, "auto") == 0)
				o->force_openssl = false;
			else
				token_die_usage("--sign-with %s: want openssl or auto", optarg);
			break;
		case TOKEN_OPT_HELP:
			token_usage(stdout);
			exit(TOKEN_EXIT_OK);
		case ':':
			token_die_usage("%s needs a value", argv[optind - 1]);
		default:
			token_die_usage("unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		token_die_usage("unexpected argument \"%s\"", argv[optind]);
	if (o->key_file == NULL)
		token_die_usage("--key FILE is required");
}

/* Fills the claims of one token: generated ones (iat, exp, nbf, aud, jti) under the command line's. */
static json_t *token_make_payload(const struct token_options *o, int64_t now)
{
	unsigned char jti_raw[TOKEN_JTI_BYTES];
	char *jti;
	json_t *payload = json_object();

	if (payload == NULL)
		return NULL;
	if (RAND_bytes(jti_raw, sizeof(jti_raw)) != 1) {
		json_decref(payload);
		return NULL;
	}
	jti = token_b64url_encode(jti_raw, sizeof(jti_raw));
	json_object_set_new(payload, "iat", json_integer(now));
	if (o->has_exp)
		json_object_set_new(payload, "exp", json_integer(now + o->exp_in));
	if (o->has_nbf)
		json_object_set_new(payload, "nbf", json_integer(now + o->nbf_in));
	json_object_set_new(payload, "jti", json_string(jti));
	free(jti);
	/* One --aud is a string, several an array (RFC 7519 section 4.1.3 allows both). */
	if (json_array_size(o->aud) == 1)
		json_object_set(payload, "aud", json_array_get(o->aud, 0));
	else if (json_array_size(o->aud) > 1)
		json_object_set(payload, "aud", o->aud);
	json_object_update(payload, o->claims);
	return payload;
}

int main(int argc, char **argv)
{
	struct token_options o = {0};
	struct token_key key = {0};
	const struct token_alg *alg;
	char *jwk_alg = NULL;
	const char *alg_name;
	const char *kid;
	json_t *header_full = NULL, *header_extra = NULL;
	bool use_libjwt;
	int64_t now;
	unsigned long i;
	int status = TOKEN_EXIT_USAGE;

	/* Subcommands; without one (or with "mint") the arguments mint, as they always did. */
	if (argc > 1 && strcmp(argv[1], "inspect") == 0)
		return token_inspect_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "verify") == 0)
		return token_verify_main(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "mint") == 0) {
		argc--;
		argv++;
	}
	token_parse_args(argc, argv, &o);
	if (token_key_load(o.key_file, o.kid, &key, &jwk_alg) != 0) {
		fprintf(stderr, "%s: %s: unusable key\n", token_progname, o.key_file);
		goto cleanup;
	}
	alg_name = o.alg_name != NULL ? o.alg_name : jwk_alg != NULL ? jwk_alg : token_key_default_alg(&key);
	alg = token_alg_find(alg_name);
	if (alg == NULL || alg->kind != key.kind) {
		fprintf(stderr, "%s: --alg %s does not fit a%s key\n", token_progname, alg_name,
		        key.kind == TOKEN_KEY_RSA   ? "n RSA"
		        : key.kind == TOKEN_KEY_EC  ? "n EC"
		        : key.kind == TOKEN_KEY_OKP ? "n OKP"
		                                    : "n oct");
		goto cleanup;
	}
	if (alg->kind == TOKEN_KEY_EC && strcmp(alg->ec_group, key.ec_group) != 0) {
		fprintf(stderr, "%s: %s needs a key on curve %s, this one is on %s\n", token_progname,
		        alg->name, alg->ec_group, key.ec_group);
		goto cleanup;
	}
	kid = o.kid != NULL ? o.kid : key.kid;

	/* libjwt writes "typ" and "alg" itself; a user who overrides either gets OpenSSL signing. */
	use_libjwt = alg->libjwt_alg != JWT_ALG_NONE && !o.force_openssl &&
	             json_object_get(o.headers, "alg") == NULL && json_object_get(o.headers, "typ") == NULL;
	header_extra = json_object();
	header_full = json_object();
	if (header_extra == NULL || header_full == NULL)
		goto fail;
	if (kid != NULL)
		json_object_set_new(header_extra, "kid", json_string(kid));
	json_object_update(header_extra, o.headers);
	json_object_set_new(header_full, "alg", json_string(alg->name));
	json_object_set_new(header_full, "typ", json_string("JWT"));
	json_object_update(header_full, header_extra);
	if (use_libjwt && key.kind != TOKEN_KEY_OCT && token_key_make_pem(&key) != 0)
		goto fail;

	now = o.has_iat ? o.iat : (int64_t)time(NULL);
	for (i = 0; i < o.count; i++) {
		json_t *payload = token_make_payload(&o, now);
		char *token;

		if (payload == NULL)
			goto fail;
		token = use_libjwt ? token_encode_libjwt(alg, &key, header_extra, payload)
		                   : token_encode_openssl(alg, &key, header_full, payload);
		json_decref(payload);
		if (token == NULL)
			goto fail;
		if (puts(token) == EOF) {
			free(token);
			goto fail;
		}
		free(token);
	}
	if (fflush(stdout) != 0)
		goto fail;
	status = TOKEN_EXIT_OK;
	goto cleanup;
fail:
	status = TOKEN_EXIT_FAIL;
cleanup:
	json_decref(header_full);
	json_decref(header_extra);
	json_decref(o.claims);
	json_decref(o.aud);
	json_decref(o.headers);
	free(jwk_alg);
	token_key_clear(&key);
	return status;
}
