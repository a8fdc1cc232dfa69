/* token_verify.c: `jwtgate-token inspect` and `jwtgate-token verify` (issue 12 section 3).
 *
 * inspect decodes a token without verifying it: header and claims pretty-printed, iat / nbf / exp in UTC
 * and relative to now, and a "NOT VERIFIED" line. A token the proxy would not parse is answered with
 * the proxy's parse message (jwt_parse) and exit 1.
 *
 * verify answers a token exactly as a jwtgate provider would: the proxy's parser, claim checks, key
 * selection and signature code (jwt_check with struct jwt_verify_params, keys from jwks_parse), the same
 * clockSkew default (CONFIG_CLOCK_SKEW_DEFAULT_S), and the denial the auth stage renders
 * (auth_decision_deny: the 401 / 403 body text). Nothing here re-implements a check, so the tool cannot
 * drift from the proxy. A JWKS URL is fetched once with the proxy's HTTP client (httpc.h) on a small
 * libevent loop: bounded by JWKS_MAX_TEXT_LEN bytes and --timeout, TLS verified against --ca or the
 * system store, never downgraded. A URL that cannot be fetched leaves the key set absent, as a remote
 * provider without keys: tokens then get "Jwks remote fetch is failed" after the claim checks, as from
 * the proxy.
 */
#include "tools/token_verify.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "config/config.h"
#include "core/common.h"
#include "core/log.h"
#include "jwt/auth.h"
#include "jwt/b64url.h"
#include "jwt/jwk.h"
#include "jwt/jwks_fetch.h"
#include "jwt/jwt.h"
#include "upstream/httpc.h"

#define TV_EXIT_OK    0
#define TV_EXIT_FAIL  1
#define TV_EXIT_USAGE 2

/* Bytes of one input line kept: one more than the largest token any provider accepts, so a line cut
 * here still reaches jwt_check as over-long and is answered as the proxy answers it (buffers hold one
 * more byte for the NUL). */
#define TV_LINE_MAX (JWT_MAX_TOKEN_LEN_LIMIT + 1)

#define TV_FETCH_TIMEOUT_DEFAULT_S 10 /* remoteJWKS requestTimeout's default */
#define TV_FETCH_TIMEOUT_MAX_S     300

static const char *const tv_progname = "jwtgate-token";

/* ---- small helpers ---- */

/* Prints s[0..len) with bytes that could drive a terminal (controls, DEL) shown as '?': claims are
 * peer text. is_multiline: keep '\n' (jansson's indentation; it escapes controls inside strings). */
static void tv_print_safe(FILE *out, const char *s, size_t len, bool is_multiline)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		fputc((c < 0x20 && !(c == '\n' && is_multiline)) || c == 0x7f ? '?' : c, out);
	}
}

/* Parses DURATION: N or a sequence of N<unit> with unit s, m, h, d ("90", "5m", "1h30m"). */
static int tv_parse_duration(const char *s, uint64_t *out)
{
	uint64_t total = 0, v, mul;
	char *end;

	if (*s == '\0')
		return -1;
	while (*s != '\0') {
		if (*s < '0' || *s > '9')
			return -1;
		errno = 0;
		v = strtoull(s, &end, 10);
		if (errno != 0)
			return -1;
		switch (*end) {
		case '\0':
		case 's':
			mul = 1;
			break;
		case 'm':
			mul = 60;
			break;
		case 'h':
			mul = 3600;
			break;
		case 'd':
			mul = 86400;
			break;
		default:
			return -1;
		}
		if (v > (UINT64_MAX / 4 - total) / mul)
			return -1;
		total += v * mul;
		s = *end == '\0' ? end : end + 1;
	}
	*out = total;
	return 0;
}

/* Writes a span of seconds as at most two units ("3h", "1h30m", "2d4h", "45s") into buf. */
static void tv_span(uint64_t s, char *buf, size_t cap)
{
	static const struct {
		uint64_t secs;
		char unit;
	} units[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
	size_t i, shown = 0, len = 0;

	buf[0] = '\0';
	for (i = 0; i < JG_ARRAY_SIZE(units) && shown < 2; i++) {
		uint64_t n = s / units[i].secs;

		if (n == 0 && shown == 0)
			continue;
		s -= n * units[i].secs;
		if (n != 0 && len < cap)
			len += (size_t)snprintf(buf + len, cap - len, "%" PRIu64 "%c", n, units[i].unit);
		shown++;
	}
	if (len == 0)
		snprintf(buf, cap, "0s");
}

/* Formats t (seconds since the epoch) as 2026-12-06T21:00:00Z. */
static void tv_utc(int64_t t, char *buf, size_t cap)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (t < 0 || gmtime_r(&tt, &tm) == NULL || strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, cap, "%" PRId64 " (out of the calendar)", t);
}

/* One time claim: "  exp  2026-12-06T21:00:00Z (expired 3h ago)". past / future: the words before
 * the span when the time is behind or ahead of now ("expired", "expires in"); "ago" follows a past
 * span. */
static void tv_print_time(FILE *out, const char *name, int64_t t, int64_t now, const char *past,
                          const char *future)
{
	char when[64], span[32];
	uint64_t d = t <= now ? (uint64_t)now - (uint64_t)t : (uint64_t)t - (uint64_t)now;

	tv_utc(t, when, sizeof(when));
	tv_span(d, span, sizeof(span));
	if (t <= now)
		fprintf(out, "  %-4s %s (%s%s%s ago)\n", name, when, past, past[0] ? " " : "", span);
	else
		fprintf(out, "  %-4s %s (%s%s%s)\n", name, when, future, future[0] ? " " : "", span);
}

/* The time claims of a parsed token, relative to now. */
static void tv_print_times(FILE *out, const struct jwt *tok, int64_t now)
{
	if (tok->has_iat)
		tv_print_time(out, "iat", tok->iat, now, "issued", "issued in");
	if (tok->has_nbf)
		tv_print_time(out, "nbf", tok->nbf, now, "valid since", "valid in");
	if (tok->has_exp)
		tv_print_time(out, "exp", tok->exp, now, "expired", "expires in");
	else
		fprintf(out, "  exp  none (never expires unless a provider requires expiration)\n");
}

/* Trims blanks and CR / LF around a token and one "Bearer " prefix (the scheme matched
 * case-insensitively, as the proxy's default extraction does, RFC 9110 section 11.1), in place. */
static void tv_trim_token(const char **s, size_t *len)
{
	while (*len > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t' || (*s)[*len - 1] == '\r' ||
	                    (*s)[*len - 1] == '\n'))
		(*len)--;
	if (*len > 7 && strncasecmp(*s, "Bearer ", 7) == 0) {
		*s += 7;
		*len -= 7;
		while (*len > 0 && (*s)[0] == ' ') {
			(*s)++;
			(*len)--;
		}
	}
}

/* Reads one line of in into buf (capacity cap, NUL-terminated) and its length into *len; the rest of a
 * longer line is read and dropped (callers size cap so that a cut line is still over every token
 * cap). Returns 1 with a line, 0 at end of input, -1 on a read error. */
static int tv_read_line(FILE *in, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	bool is_long = false;
	int c;

	while ((c = getc(in)) != EOF && c != '\n') {
		if (n + 1 < cap)
			buf[n++] = (char)c;
		else
			is_long = true;
	}
	buf[n] = '\0';
	if (ferror(in))
		return -1;
	if (c == EOF && n == 0 && !is_long)
		return 0;
	*len = n;
	return 1;
}

/* ---- inspect ---- */

/* Decodes a base64url segment and prints it as indented JSON, or says why it cannot. */
static void tv_print_segment(FILE *out, const char *title, const char *seg, size_t len)
{
	size_t cap = B64URL_DECODED_LEN(len) + 1, n = 0;
	uint8_t *buf = jg_xmalloc(cap);
	json_error_t jerr;
	json_t *j;
	char *text;

	fprintf(out, "%s:\n", title);
	if (b64url_decode(seg, len, buf, cap, &n) != 0) {
		fprintf(out, "  (not canonical base64url)\n");
		free(buf);
		return;
	}
	j = json_loadb((const char *)buf, n, JSON_DECODE_ANY, &jerr);
	if (j == NULL) {
		fprintf(out, "  (not JSON: %s at byte %d)\n", jerr.text, jerr.position);
		free(buf);
		return;
	}
	text = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (text != NULL) {
		tv_print_safe(out, text, strlen(text), true);
		fputc('\n', out);
	}
	free(text);
	json_decref(j);
	free(buf);
}

static void tv_inspect_usage(FILE *out)
{
	fprintf(out,
	        "Usage: %s inspect [TOKEN|-]\n"
	        "Decode a JWT without verifying it: header and claims as JSON, iat/nbf/exp in UTC and\n"
	        "relative to now. The token is read from stdin when TOKEN is - or absent.\n"
	        "Exit status: 0 decoded, 1 the proxy would not parse it (the message says why), 2 bad "
	        "usage.\n",
	        tv_progname);
}

/* Reads the one token of inspect from the argument or from the first line of stdin into *buf (owned
 * by the caller). Returns 0 or -1 (message printed). */
static int tv_token_arg(const char *arg, char **buf, const char **tok, size_t *len)
{
	int rc;

	if (arg != NULL && strcmp(arg, "-") != 0) {
		*tok = arg;
		*len = strlen(arg);
		return 0;
	}
	*buf = jg_xmalloc(TV_LINE_MAX + 1);
	rc = tv_read_line(stdin, *buf, TV_LINE_MAX + 1, len);
	if (rc <= 0) {
		fprintf(stderr, "%s: %s\n", tv_progname, rc == 0 ? "no token on stdin" : strerror(errno));
		return -1;
	}
	*tok = *buf;
	return 0;
}

/* See token_verify.h. */
int token_inspect_main(int argc, char **argv)
{
	static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
	char *buf = NULL;
	const char *t, *dot1, *dot2;
	size_t len;
	struct jwt tok;
	enum jwt_status st;
	int64_t now = (int64_t)time(NULL);
	char nowbuf[64];
	int c, status = TV_EXIT_USAGE;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'h') {
			tv_inspect_usage(stdout);
			return TV_EXIT_OK;
		}
		fprintf(stderr, "%s inspect: unknown option %s\n", tv_progname, argv[optind - 1]);
		tv_inspect_usage(stderr);
		return TV_EXIT_USAGE;
	}
	if (argc - optind > 1) {
		fprintf(stderr, "%s inspect: one token at a time\n", tv_progname);
		return TV_EXIT_USAGE;
	}
	if (tv_token_arg(optind < argc ? argv[optind] : NULL, &buf, &t, &len) != 0)
		goto out;
	tv_trim_token(&t, &len);

	printf("NOT VERIFIED: decoded only; `%s verify --jwks ...` checks the signature and claims\n",
	       tv_progname);
	/* Show what decodes even when the proxy would refuse the token: that is when one needs to look. */
	dot1 = memchr(t, '.', len);
	dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - t)) : NULL;
	if (dot1 != NULL && len <= JWT_MAX_TOKEN_LEN_LIMIT) {
		tv_print_segment(stdout, "Header", t, (size_t)(dot1 - t));
		tv_print_segment(stdout, "Claims", dot1 + 1,
		                 dot2 != NULL ? (size_t)(dot2 - dot1 - 1) : len - (size_t)(dot1 + 1 - t));
	}
	/* The proxy's parser, with the largest token length a provider can accept. */
	st = jwt_parse(&tok, t, len, JWT_MAX_TOKEN_LEN_LIMIT, 0);
	if (st != JWT_STATUS_OK) {
		jwt_release(&tok);
		fflush(stdout);
		fprintf(stderr, "%s inspect: %s\n", tv_progname, jwt_status_message(st));
		status = TV_EXIT_FAIL;
		goto out;
	}
	tv_utc(now, nowbuf, sizeof(nowbuf));
	printf("Times (UTC; now %s):\n", nowbuf);
	tv_print_times(stdout, &tok, now);
	printf("Signature: %s, %zu bytes\n", jwt_alg_name(tok.alg), tok.sig_len);
	if (len > JWT_MAX_TOKEN_LEN_DEFAULT)
		printf("Note: %zu bytes; providers accept %d unless configured otherwise\n", len,
		       JWT_MAX_TOKEN_LEN_DEFAULT);
	jwt_release(&tok);
	status = fflush(stdout) == 0 ? TV_EXIT_OK : TV_EXIT_FAIL;
out:
	free(buf);
	return status;
}

/* ---- verify: the key set ---- */

struct tv_fetch {
	bool is_done;
	enum httpc_failure failure;
	int status;
	char *body; /* owned */
	size_t body_len;
	char detail[HTTPC_DETAIL_MAX];
};

static void tv_fetch_on_done(void *arg, const struct httpc_result *res)
{
	struct tv_fetch *f = arg;

	f->is_done = true;
	f->failure = res->failure;
	f->status = res->status;
	snprintf(f->detail, sizeof(f->detail), "%s", res->detail);
	if (res->failure == HTTPC_OK) {
		f->body = jg_xmalloc(res->body_len + 1);
		memcpy(f->body, res->body, res->body_len);
		f->body[res->body_len] = '\0';
		f->body_len = res->body_len;
	}
}

/* Fetches a JWKS URL as a remote provider does (GET, status 200, body at most JWKS_MAX_TEXT_LEN bytes,
 * TLS for https:// against ca_file or the system store) and parses it. Returns the key set, or NULL
 * (reason on stderr) when it cannot be had: the proxy's provider would then have no keys either. */
static struct jwks *tv_fetch_jwks(const char *url, const char *ca_file, uint64_t timeout_s)
{
	static const struct httpc_header accept = {"accept", "application/json"};
	struct config_backend be;
	char *ca_files[1];
	struct httpc_uri u;
	struct addrinfo hints, *ai = NULL, *a;
	struct event_base *base = NULL;
	SSL_CTX *ssl_ctx = NULL;
	struct tv_fetch f;
	struct jwks *ks = NULL;
	char detail[HTTPC_DETAIL_MAX], port[8], who[HTTPC_URI_TARGET_MAX + 16];
	uint64_t deadline;
	enum jwt_status st;
	int rc;

	memset(&f, 0, sizeof(f));
	if (httpc_uri_parse(url, &u, detail, sizeof(detail)) < 0) {
		fprintf(stderr, "%s verify: --jwks %s: %s\n", tv_progname, url, detail);
		return NULL;
	}
	snprintf(who, sizeof(who), "jwks %s", url);
	if (u.is_https) {
		/* The proxy's TLS client context: TLS 1.2+, peer verified; --ca plays caCertificateRefs. */
		memset(&be, 0, sizeof(be));
		if (ca_file != NULL) {
			ca_files[0] = (char *)ca_file;
			be.tls.enabled = true;
			be.tls.ca_files = ca_files;
			be.tls.n_ca_files = 1;
		}
		ssl_ctx = httpc_tls_ctx_new(who, ca_file != NULL ? &be : NULL, NULL, NULL);
		if (ssl_ctx == NULL)
			goto out;
	} else {
		fprintf(stderr, "%s verify: warning: %s is plain HTTP: nothing authenticates the key set\n",
		        tv_progname, url);
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%u", (unsigned)u.port);
	rc = getaddrinfo(u.host, port, &hints, &ai);
	if (rc != 0) {
		fprintf(stderr, "%s verify: %s: cannot resolve %s: %s\n", tv_progname, url, u.host,
		        gai_strerror(rc));
		goto out;
	}
	base = event_base_new();
	if (base == NULL)
		goto out;
	deadline = jg_now_ms() + timeout_s * 1000;
	/* Each address in turn while the connect fails, within one overall deadline. */
	for (a = ai; a != NULL; a = a->ai_next) {
		struct httpc_request req;
		uint64_t now = jg_now_ms();

		if (now >= deadline)
			break;
		memset(&req, 0, sizeof(req));
		req.addr = a->ai_addr;
		req.addr_len = a->ai_addrlen;
		req.ssl_ctx = ssl_ctx;
		req.tls_name = u.host;
		req.method = "GET";
		req.authority = u.authority;
		req.target = u.target;
		req.headers = &accept;
		req.n_headers = 1;
		req.connect_timeout_ms = JWKS_FETCH_CONNECT_TIMEOUT_MS < deadline - now
		                                 ? JWKS_FETCH_CONNECT_TIMEOUT_MS
		                                 : deadline - now;
		req.timeout_ms = deadline - now;
		req.body_max = JWKS_MAX_TEXT_LEN;
		req.want_status = 200;
		memset(&f, 0, sizeof(f));
		if (httpc_start(base, &req, tv_fetch_on_done, &f) == NULL)
			goto out;
		event_base_dispatch(base); /* httpc bounds the request: it ends by its own deadline */
		if (!f.is_done || f.failure != HTTPC_FAIL_CONNECT)
			break;
	}
	if (!f.is_done || f.failure != HTTPC_OK) {
		fprintf(stderr, "%s verify: %s: fetch failed: %s%s%s\n", tv_progname, url,
		        f.is_done ? httpc_failure_str(f.failure) : "timeout", f.detail[0] ? ": " : "",
		        f.detail);
		goto out;
	}
	st = jwks_parse(f.body, f.body_len, url, &ks);
	if (st != JWT_STATUS_OK)
		fprintf(stderr, "%s verify: %s: %s\n", tv_progname, url, jwt_status_message(st));
out:
	free(f.body);
	if (base != NULL)
		event_base_free(base);
	if (ai != NULL)
		freeaddrinfo(ai);
	SSL_CTX_free(ssl_ctx);
	httpc_uri_clear(&u);
	return ks;
}

/* Reads and parses a JWKS file (at most JWKS_MAX_TEXT_LEN bytes) as a localJWKS of type File. Returns
 * JWT_STATUS_OK with *out set, or the jwks_parse status (message printed); -1 when it cannot be read. */
static int tv_load_jwks_file(const char *path, struct jwks **out)
{
	FILE *fp = fopen(path, "rb");
	char *text;
	size_t n;
	enum jwt_status st;

	*out = NULL;
	if (fp == NULL) {
		fprintf(stderr, "%s verify: --jwks %s: %s\n", tv_progname, path, strerror(errno));
		return -1;
	}
	text = jg_xmalloc(JWKS_MAX_TEXT_LEN + 1);
	n = fread(text, 1, JWKS_MAX_TEXT_LEN + 1, fp);
	if (ferror(fp) || n > JWKS_MAX_TEXT_LEN) {
		fprintf(stderr, "%s verify: --jwks %s: %s\n", tv_progname, path,
		        ferror(fp) ? "read error" : "larger than a JWKS may be (1 MiB)");
		fclose(fp);
		free(text);
		return -1;
	}
	fclose(fp);
	st = jwks_parse(text, n, path, out);
	free(text);
	if (st != JWT_STATUS_OK)
		fprintf(stderr, "%s verify: --jwks %s: %s\n", tv_progname, path, jwt_status_message(st));
	return (int)st;
}

/* ---- verify: one token ---- */

static const char *tv_kty_name(enum jwk_kty kty)
{
	switch (kty) {
	case JWK_KTY_RSA:
		return "RSA";
	case JWK_KTY_EC:
		return "EC";
	case JWK_KTY_OKP:
		return "OKP";
	case JWK_KTY_OCT:
		return "oct";
	}
	return "?";
}

/* The key that verified tok: key selection run on each key alone, in order, with the proxy's
 * jwt_verify_signature, so the first that verifies is the one the whole set's walk stopped at.
 * Returns its index, or -1. */
static long tv_verifying_key(const struct jwks *keys, const struct jwt *tok)
{
	size_t i;

	for (i = 0; i < keys->n_keys; i++) {
		struct jwks one = {.refs = 1, .n_keys = 1, .keys = &keys->keys[i]};

		if (jwt_verify_signature(&one, tok) == JWT_STATUS_OK)
			return (long)i;
	}
	return -1;
}

/* The claims a verified token is usually asked about. */
static void tv_print_summary(const struct jwt *tok, int64_t now)
{
	size_t i;

	if (tok->iss != NULL) {
		printf("  iss  ");
		tv_print_safe(stdout, tok->iss, tok->iss_len, false);
		putchar('\n');
	}
	if (tok->sub != NULL) {
		printf("  sub  ");
		tv_print_safe(stdout, tok->sub, tok->sub_len, false);
		putchar('\n');
	}
	if (tok->n_aud > 0) {
		printf("  aud  ");
		for (i = 0; i < tok->n_aud; i++) {
			if (i > 0)
				printf(", ");
			tv_print_safe(stdout, tok->aud[i].s, tok->aud[i].len, false);
		}
		putchar('\n');
	}
	tv_print_times(stdout, tok, now);
}

/* Verifies one token and prints its result line (prefix: "N: " in batches, else ""), and in single
 * mode the claims of a verified token. Returns true when verified. */
static bool tv_verify_one(const struct jwt_verify_params *vp, const struct jwks *keys, const char *t,
                          size_t len, const char *prefix, bool is_single)
{
	int64_t now = (int64_t)time(NULL);
	struct auth_decision d;
	struct jwt tok;
	enum jwt_status st;
	long ki;

	tv_trim_token(&t, &len);
	/* An empty token is what the stage calls a missing one. */
	st = len == 0 ? JWT_STATUS_MISSED : jwt_check(vp, keys, t, len, now, &tok);
	if (st != JWT_STATUS_OK) {
		if (len != 0)
			jwt_release(&tok);
		auth_decision_deny(&d, (int)st);
		printf("%sDENIED (%d): %s\n", prefix, d.http_status, d.message);
		return false;
	}
	ki = tv_verifying_key(keys, &tok);
	printf("%sOK: verified by key ", prefix);
	if (ki >= 0 && keys->keys[ki].kid != NULL) {
		printf("kid=");
		tv_print_safe(stdout, keys->keys[ki].kid, keys->keys[ki].kid_len, false);
	} else {
		/* Counted among the valid keys: the ones jwks_parse kept, in document order. */
		printf("without kid, valid key %ld of %zu", ki + 1, keys->n_keys);
	}
	printf(" (%s, %s)\n", ki >= 0 ? tv_kty_name(keys->keys[ki].kty) : "?", jwt_alg_name(tok.alg));
	if (is_single)
		tv_print_summary(&tok, now);
	jwt_release(&tok);
	return true;
}

/* ---- verify: options ---- */

enum {
	TV_OPT_JWKS = 256,
	TV_OPT_ISSUER,
	TV_OPT_AUDIENCE,
	TV_OPT_CLOCK_SKEW,
	TV_OPT_REQUIRE_EXP,
	TV_OPT_MAX_LIFETIME,
	TV_OPT_CA,
	TV_OPT_TIMEOUT,
	TV_OPT_HELP,
};

static const struct option tv_verify_options[] = {
        {"jwks", required_argument, NULL, TV_OPT_JWKS},
        {"issuer", required_argument, NULL, TV_OPT_ISSUER},
        {"audience", required_argument, NULL, TV_OPT_AUDIENCE},
        {"clock-skew", required_argument, NULL, TV_OPT_CLOCK_SKEW},
        {"require-exp", no_argument, NULL, TV_OPT_REQUIRE_EXP},
        {"max-lifetime", required_argument, NULL, TV_OPT_MAX_LIFETIME},
        {"ca", required_argument, NULL, TV_OPT_CA},
        {"timeout", required_argument, NULL, TV_OPT_TIMEOUT},
        {"help", no_argument, NULL, TV_OPT_HELP},
        {NULL, 0, NULL, 0},
};

static void tv_verify_usage(FILE *out)
{
	fprintf(out,
	        "Usage: %s verify --jwks FILE|URL [options] [TOKEN|-]\n"
	        "Verify JWTs with jwtgate's own code, as a provider with these settings would.\n"
	        "\n"
	        "  --jwks FILE|URL     key set: a JWKS file (localJWKS) or an http(s):// URL (remoteJWKS)\n"
	        "  --issuer S          provider issuer (default: iss not checked)\n"
	        "  --audience S        provider audience; repeat for several (default: aud not checked)\n"
	        "  --clock-skew DUR    clockSkew for nbf and exp (default %ds)\n"
	        "  --require-exp       requireExpiration: a token without exp is refused\n"
	        "  --max-lifetime DUR  maxLifetime: exp - iat may not exceed DUR\n"
	        "  --ca FILE           CA bundle (PEM) for an https URL (default: the system store)\n"
	        "  --timeout DUR       bound of the URL fetch (default %ds)\n"
	        "\n"
	        "TOKEN, or one token per line on stdin (TOKEN - or absent): each line gets a result line\n"
	        "prefixed with its line number; blank lines are skipped. A \"Bearer \" prefix is ignored.\n"
	        "Result: \"OK: verified by key kid=K (KTY, ALG)\", or \"DENIED (401|403): MESSAGE\" where\n"
	        "MESSAGE is the body jwtgate answers. DUR: N or N with unit s, m, h, d (1h30m).\n"
	        "Exit status: 0 all verified, 1 a token was denied, 2 bad usage or unusable JWKS file.\n",
	        tv_progname, CONFIG_CLOCK_SKEW_DEFAULT_S, TV_FETCH_TIMEOUT_DEFAULT_S);
}

static int tv_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints "jwtgate-token verify: message" and a hint; returns the usage exit status. */
static int tv_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s verify: ", tv_progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n(try %s verify --help)\n", tv_progname);
	return TV_EXIT_USAGE;
}

/* See token_verify.h. */
int token_verify_main(int argc, char **argv)
{
	struct jwt_verify_params vp;
	const char *jwks_arg = NULL, *ca_file = NULL, *token = NULL;
	char **audiences = NULL;
	size_t n_aud = 0;
	uint64_t timeout_s = TV_FETCH_TIMEOUT_DEFAULT_S, u;
	struct jwks *keys = NULL;
	char *line = NULL;
	int c, status = TV_EXIT_USAGE;

	memset(&vp, 0, sizeof(vp));
	vp.clock_skew_s = CONFIG_CLOCK_SKEW_DEFAULT_S;
	audiences = jg_xcalloc((size_t)argc, sizeof(*audiences)); /* at most one per argument */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", tv_verify_options, NULL)) != -1) {
		switch (c) {
		case TV_OPT_JWKS:
			jwks_arg = optarg;
			break;
		case TV_OPT_ISSUER:
			vp.issuer = optarg;
			break;
		case TV_OPT_AUDIENCE:
			if (optarg[0] == '\0') {
				status = tv_usage_error("--audience may not be empty");
				goto out;
			}
			audiences[n_aud++] = optarg;
			break;
		case TV_OPT_CLOCK_SKEW:
			if (tv_parse_duration(optarg, &vp.clock_skew_s) != 0) {
				status = tv_usage_error("--clock-skew %s: not a duration", optarg);
				goto out;
			}
			break;
		case TV_OPT_REQUIRE_EXP:
			vp.require_expiration = true;
			break;
		case TV_OPT_MAX_LIFETIME:
			if (tv_parse_duration(optarg, &vp.max_lifetime_s) != 0 || vp.max_lifetime_s == 0) {
				status = tv_usage_error("--max-lifetime %s: not a positive duration", optarg);
				goto out;
			}
			break;
		case TV_OPT_CA:
			ca_file = optarg;
			break;
		case TV_OPT_TIMEOUT:
			if (tv_parse_duration(optarg, &u) != 0 || u == 0 || u > TV_FETCH_TIMEOUT_MAX_S) {
				status = tv_usage_error("--timeout %s: want 1s to 300s", optarg);
				goto out;
			}
			timeout_s = u;
			break;
		case TV_OPT_HELP:
			tv_verify_usage(stdout);
			status = TV_EXIT_OK;
			goto out;
		case ':':
			status = tv_usage_error("%s needs a value", argv[optind - 1]);
			goto out;
		default:
			status = tv_usage_error("unknown option %s", argv[optind - 1]);
			goto out;
		}
	}
	if (jwks_arg == NULL) {
		status = tv_usage_error("--jwks FILE|URL is required");
		goto out;
	}
	if (argc - optind > 1) {
		status = tv_usage_error("one TOKEN argument at most (more on stdin, one a line)");
		goto out;
	}
	if (optind < argc && strcmp(argv[optind], "-") != 0)
		token = argv[optind];
	vp.audiences = audiences;
	vp.n_audiences = n_aud;
	/* vp.max_token_len stays 0: the providers' default cap, as the config loader leaves it. */

	log_set_level(LOG_LEVEL_WARN); /* skipped keys are worth a line; fetch progress is not */
	if (strncmp(jwks_arg, "https://", 8) == 0 || strncmp(jwks_arg, "http://", 7) == 0) {
		keys = tv_fetch_jwks(jwks_arg, ca_file, timeout_s); /* NULL: as a provider without keys */
	} else {
		if (ca_file != NULL) {
			status = tv_usage_error("--ca is for an https:// --jwks URL");
			goto out;
		}
		if (tv_load_jwks_file(jwks_arg, &keys) != JWT_STATUS_OK) {
			status = TV_EXIT_USAGE; /* the proxy would refuse such a config */
			goto out;
		}
	}

	status = TV_EXIT_OK;
	if (token != NULL) {
		if (!tv_verify_one(&vp, keys, token, strlen(token), "", true))
			status = TV_EXIT_FAIL;
	} else {
		unsigned long lineno = 0, n_tokens = 0;
		char prefix[32];
		size_t len;
		int rc;

		line = jg_xmalloc(TV_LINE_MAX + 1);
		while ((rc = tv_read_line(stdin, line, TV_LINE_MAX + 1, &len)) > 0) {
			const char *t = line;
			size_t tl = len;

			lineno++;
			tv_trim_token(&t, &tl);
			if (tl == 0)
				continue;
			n_tokens++;
			snprintf(prefix, sizeof(prefix), "%lu: ", lineno);
			if (!tv_verify_one(&vp, keys, line, len, prefix, false))
				status = TV_EXIT_FAIL;
		}
		if (rc < 0) {
			fprintf(stderr, "%s verify: reading stdin: %s\n", tv_progname, strerror(errno));
			status = TV_EXIT_FAIL;
		} else if (n_tokens == 0) {
			fprintf(stderr, "%s verify: no token on stdin\n", tv_progname);
			status = TV_EXIT_USAGE;
		}
	}
	if (fflush(stdout) != 0)
		status = TV_EXIT_FAIL;
out:
	free(line);
	jwks_unref(keys);
	free(audiences);
	return status;
}
