/* jwt_stage.c: the cost of jwtgate's JWT stage per request, next to the raw RSA verification it cannot
 * avoid, measured in one process on one core (bench/run.sh --jwt runs it; not a test).
 *
 *   jwt_stage CONFIG POLICY TOKENS PUBKEY_PEM [ROUNDS]
 *
 * CONFIG is a jwtgate configuration (bench/run.sh's), POLICY the name of its securityPolicy, TOKENS a
 * file of distinct RS256 tokens (one a line, all valid for that policy), PUBKEY_PEM the RSA public key.
 * Each round, on the thread's CPU clock:
 *   raw   EVP_PKEY_verify of a SHA-256 digest with one context set up beforehand: exactly the operation
 *         `openssl speed rsa2048` counts as a verify;
 *   miss  auth_check (the function a worker calls) with each token once on a fresh worker: extraction,
 *         cache lookup, parse, claims, key selection, SHA-256, RSA verify, cache insert;
 *   hit   the same tokens again on that worker: the verified-token cache path.
 * Rounds interleave the three so a noisy neighbour hits them alike; medians are printed, then one
 * machine-readable line: JGSTAGE raw_us=.. miss_us=.. hit_us=.. miss_over_raw=..
 *
 * Then the authorization case (issue 12 section 1): a policy of 10 rules (claims, scopes, clientCIDRs,
 * headers, methods; written by this program) decided for a cached token, i.e. authz_decide over the
 * rule bits the cache entry holds, where only the 10th rule matches so every rule is examined:
 * JGAUTHZ rules=10 ns_op=.. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "core/arena.h"
#include "jwt/auth.h"
#include "jwt/authz.h"
#include "config/config.h"
#include "jwt/jwt.h"
#include "core/log.h"
#include "core/request.h"

#define STAGE_MAX_TOKENS 100000
#define STAGE_MAX_ROUNDS 99

static double stage_cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int stage_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double stage_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), stage_cmp);
	return v[(n - 1) / 2];
}

/* One request carrying "Authorization: Bearer <token>" through the policy; exits on anything but ALLOW
 * (a bench whose tokens fail measures the wrong path). */
static void stage_request(struct auth_worker *w, const struct config_policy *pol, struct arena *arena,
                          const char *bearer, size_t bearer_len, int64_t now)
{
	struct request req;
	struct auth_decision d;

	arena_reset(arena);
	request_init(&req, arena);
	req.method = "GET";
	req.method_len = 3;
	req.target = "/foo";
	req.target_len = 4;
	req.authority = "www.example.com";
	req.authority_len = 15;
	if (request_header_add(&req, "host", 4, "www.example.com", 15) != 0 ||
	    request_header_add(&req, "authorization", 13, bearer, bearer_len) != 0 ||
	    request_finish_head(&req) != 0) {
		fprintf(stderr, "jwt_stage: cannot build the request\n");
		exit(1);
	}
	auth_check(w, pol, &req, now, &d);
	if (d.verdict != AUTH_ALLOW) {
		fprintf(stderr, "jwt_stage: token refused: %d %s\n", d.http_status, d.message);
		exit(1);
	}
}

/* The 10-rule policy of the authorization case. */
static const char stage_authz_yaml[] =
        "listeners: [{name: l, address: 127.0.0.1:1}]\n"
        "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 2}}]}]\n"
        "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
        "securityPolicies:\n"
        "  - name: p\n"
        "    targetRef: {kind: HTTPRoute, name: r}\n"
        "    jwt: {providers: [{name: e, localJWKS: {type: Inline, inline: '{\"keys\":[{\"kty\":\"oct\","
        "\"k\":\"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA\",\"alg\":\"HS256\"}]}'}}]}\n"
        "    authorization:\n"
        "      rules:\n"
        "        - {action: Deny, principal: {jwt: {provider: e, claims: [{name: sub, values: [mallory, "
        "eve]}]}}}\n"
        "        - {action: Allow, principal: {jwt: {provider: e, claims: [{name: user.roles, valueType: "
        "StringArray, values: [admin]}]}}}\n"
        "        - {action: Allow, principal: {jwt: {provider: e, scopes: [admin]}}}\n"
        "        - {action: Allow, principal: {clientCIDRs: [10.0.0.0/8, 172.16.0.0/12, "
        "\"2001:db8::/32\"]}}\n"
        "        - {action: Allow, principal: {headers: [{name: x-team, values: [red, blue]}]}}\n"
        "        - {action: Allow, principal: {jwt: {provider: e, scopes: [read]}}, operation: {methods: "
        "[DELETE]}}\n"
        "        - {action: Deny, principal: {clientCIDRs: [192.168.0.0/16]}}\n"
        "        - {action: Allow, principal: {jwt: {provider: e, claims: [{name: org.name, values: "
        "[x]}]}}}\n"
        "        - {action: Allow, principal: {headers: [{name: x-env, values: [prod]}], clientCIDRs: "
        "[127.0.0.0/8]}}\n"
        "        - {name: readers, action: Allow, principal: {jwt: {provider: e, scopes: [read]}}, "
        "operation: {methods: [GET, HEAD]}}\n";

/* ns per decision of the 10-rule policy for a request whose cached token matches only rule 10. */
static double stage_authz(struct arena *arena, int rounds)
{
	char path[] = "/tmp/jg-stage-authz-XXXXXX";
	double per[STAGE_MAX_ROUNDS];
	const struct config_authz *a;
	struct config *cfg = NULL;
	struct sockaddr_in peer;
	struct request req;
	uint64_t bits[AUTHZ_WORDS];
	json_t *claims;
	volatile int sink = 0;
	int fd = mkstemp(path), r, i;
	const int n = 200000;
	bool allow = false;

	if (fd < 0 || write(fd, stage_authz_yaml, sizeof(stage_authz_yaml) - 1) < 0)
		exit(1);
	close(fd);
	if (config_load(path, stderr, &cfg) != 0)
		exit(1);
	unlink(path);
	a = &cfg->policies[0].authz;
	/* what a cache entry holds after verification: the claims read once into the rule bits */
	claims = json_loads("{\"sub\":\"alice\",\"scope\":\"openid read\",\"user\":{\"roles\":[\"dev\"]}}", 0,
	                    NULL);
	authz_match_claims(a, cfg->policies[0].providers[0].index, claims, bits);
	json_decref(claims);
	arena_reset(arena);
	request_init(&req, arena);
	req.method = "GET";
	req.method_len = 3;
	req.target = "/";
	req.target_len = 1;
	req.authority = "www.example.com";
	req.authority_len = 15;
	memset(&peer, 0, sizeof(peer));
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(0xc6336407); /* 198.51.100.7: in no range */
	req.peer = (const struct sockaddr *)&peer;
	if (request_header_add(&req, "host", 4, "www.example.com", 15) != 0 ||
	    request_header_add(&req, "x-team", 6, "green", 5) != 0 ||
	    request_header_add(&req, "x-env", 5, "dev", 3) != 0 || request_finish_head(&req) != 0 ||
	    authz_decide(a, bits, &req, &allow) != 9 || !allow) {
		fprintf(stderr, "jwt_stage: the authorization case does not decide by rule 10\n");
		exit(1);
	}
	for (r = 0; r < rounds; r++) {
		double t0 = stage_cpu_now();

		for (i = 0; i < n; i++)
			sink += authz_decide(a, bits, &req, &allow);
		per[r] = (stage_cpu_now() - t0) * 1e9 / n;
	}
	config_free(cfg);
	return stage_median(per, rounds);
}

int main(int argc, char **argv)
{
	static char *bearers[STAGE_MAX_TOKENS];
	static size_t bearer_lens[STAGE_MAX_TOKENS];
	double raw[STAGE_MAX_ROUNDS], miss[STAGE_MAX_ROUNDS], hit[STAGE_MAX_ROUNDS], t0;
	struct config *cfg = NULL;
	struct auth_shared *shared;
	const struct config_policy *pol = NULL;
	struct arena arena;
	EVP_PKEY *pkey;
	EVP_PKEY_CTX *vctx;
	unsigned char dgst[32], sig[512];
	size_t n = 0, i, sig_len;
	int rounds = argc > 5 ? atoi(argv[5]) : 7, r;
	char line[16384];
	FILE *f;
	int64_t now = (int64_t)time(NULL);

	if (argc < 5 || rounds < 1 || rounds > STAGE_MAX_ROUNDS) {
		fprintf(stderr, "usage: %s CONFIG POLICY TOKENS PUBKEY_PEM [ROUNDS 1-%d]\n", argv[0],
		        STAGE_MAX_ROUNDS);
		return 2;
	}
	log_set_level(LOG_LEVEL_ERROR);
	if (config_load(argv[1], stderr, &cfg) != 0)
		return 1;
	for (i = 0; i < cfg->n_policies; i++)
		if (strcmp(cfg->policies[i].name, argv[2]) == 0)
			pol = &cfg->policies[i];
	shared = auth_shared_new(cfg, stderr);
	if (pol == NULL || shared == NULL) {
		fprintf(stderr, "jwt_stage: no policy %s, or its keys did not load\n", argv[2]);
		return 1;
	}
	f = fopen(argv[3], "r");
	while (f != NULL && n < STAGE_MAX_TOKENS && fgets(line, sizeof(line), f) != NULL) {
		size_t len = strcspn(line, "\r\n");

		if (len == 0)
			continue;
		bearers[n] = malloc(len + 8);
		if (bearers[n] == NULL)
			return 1;
		bearer_lens[n] = (size_t)snprintf(bearers[n], len + 8, "Bearer %.*s", (int)len, line);
		n++;
	}
	if (f != NULL)
		fclose(f);
	f = fopen(argv[4], "r");
	pkey = f != NULL ? PEM_read_PUBKEY(f, NULL, NULL, NULL) : NULL;
	if (f != NULL)
		fclose(f);
	if (n == 0 || pkey == NULL) {
		fprintf(stderr, "jwt_stage: no tokens in %s or no public key in %s\n", argv[3], argv[4]);
		return 1;
	}
	/* A valid signature for the raw rows: the first token's, over its own signing input. */
	{
		struct jwt tok;
		const char *t = bearers[0] + 7;

		if (jwt_parse(&tok, t, bearer_lens[0] - 7, 0, 0) != JWT_STATUS_OK ||
		    tok.sig_len > sizeof(sig))
			return 1;
		EVP_Digest(tok.signing_input, tok.signing_input_len, dgst, NULL, EVP_sha256(), NULL);
		memcpy(sig, tok.sig, tok.sig_len);
		sig_len = tok.sig_len;
		jwt_release(&tok);
	}
	vctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (vctx == NULL || EVP_PKEY_verify_init(vctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(vctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(vctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_verify(vctx, sig, sig_len, dgst, sizeof(dgst)) != 1) {
		fprintf(stderr, "jwt_stage: the raw verification does not verify\n");
		return 1;
	}
	arena_init(&arena, 4096, 1 << 20);
	for (r = 0; r < rounds; r++) {
		struct auth_worker *w =
		        auth_worker_new(shared, cfg->token_cache_size ? cfg->token_cache_size : 1);

		if (w == NULL)
			return 1;
		t0 = stage_cpu_now();
		for (i = 0; i < n; i++) {
			if (EVP_PKEY_verify(vctx, sig, sig_len, dgst, sizeof(dgst)) != 1)
				return 1;
		}
		raw[r] = (stage_cpu_now() - t0) * 1e6 / (double)n;
		t0 = stage_cpu_now();
		for (i = 0; i < n; i++)
			stage_request(w, pol, &arena, bearers[i], bearer_lens[i], now);
		miss[r] = (stage_cpu_now() - t0) * 1e6 / (double)n;
		t0 = stage_cpu_now();
		for (i = 0; i < n; i++)
			stage_request(w, pol, &arena, bearers[i], bearer_lens[i], now);
		hit[r] = (stage_cpu_now() - t0) * 1e6 / (double)n;
		auth_worker_free(w);
		fprintf(stderr, "  round %d: raw %.2f us, miss %.2f us, hit %.3f us\n", r + 1, raw[r],
		        miss[r], hit[r]);
	}
	{
		double mr = stage_median(raw, rounds), mm = stage_median(miss, rounds),
		       mh = stage_median(hit, rounds);

		printf("JGSTAGE tokens=%zu rounds=%d cache=%u raw_us=%.2f miss_us=%.2f hit_us=%.3f "
		       "miss_over_raw=%.3f\n",
		       n, rounds, cfg->token_cache_size, mr, mm, mh, mm / mr);
	}
	printf("JGAUTHZ rules=10 ns_op=%.1f\n", stage_authz(&arena, rounds));
	EVP_PKEY_CTX_free(vctx);
	EVP_PKEY_free(pkey);
	arena_free(&arena);
	auth_shared_free(shared);
	config_free(cfg);
	for (i = 0; i < n; i++)
		free(bearers[i]);
	return 0;
}
