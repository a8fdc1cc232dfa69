/* auth_fixture.h: the fixture of the JWT-stage suites (test_auth.c, test_authz.c), which call
 * auth_check as a worker does. A temporary folder holds the key sets a config names by file
 * (k1.json: RSA-2048 kid k1 RS256; k2.json: EC P-256 kid k2 ES256; seed.json: the task's jwks.json),
 * fx has the keys and the task's two tokens, and t is one test's world: the config loaded from a
 * suite's head plus the test's text, its key sets, a worker, an arena and a request.
 * Test-only and static, like jwt_testutil.h: include it once, in the suite's translation unit. */
#ifndef JWTGATE_TESTS_AUTH_FIXTURE_H
#define JWTGATE_TESTS_AUTH_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "jwt_testutil.h"
#include "config/config.h"
#include "core/arena.h"
#include "core/log.h"
#include "core/request.h"
#include "jwt/auth.h"

static struct {
	char dir[64];
	EVP_PKEY *rsa, *ec;
	char *k1_json, *k2_json;
	char *seed_jwt, *seed_claim_jwt; /* test.jwt, with-different-claim.jwt */
} fx;

static struct {
	struct config *cfg;
	struct auth_shared *shared;
	struct auth_worker *worker;
	struct arena arena;
	struct request req;
	struct auth_decision d;
	struct sockaddr_storage peer;
} t;

/* Writes text to fx.dir/rel. */
static void write_file(const char *rel, const char *text)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", fx.dir, rel);
	f = fopen(p, "wb");
	TU_CHECK(f != NULL);
	TU_CHECK(fwrite(text, 1, strlen(text), f) == strlen(text));
	fclose(f);
}

/* The token files end with a newline. */
static char *afx_trim(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
		s[--n] = '\0';
	return s;
}

static int group_setup(void **state)
{
	char *m, *seed;

	(void)state;
	log_set_level(LOG_LEVEL_ERROR);
	strcpy(fx.dir, "/tmp/jg-test-auth-XXXXXX");
	TU_CHECK(mkdtemp(fx.dir) != NULL);
	fx.rsa = tu_keygen("RSA", "2048");
	fx.ec = tu_keygen("EC", "P-256");
	m = tu_jwk_members(fx.rsa);
	fx.k1_json = tu_fmt("{\"keys\":[{%s,\"kid\":\"k1\",\"alg\":\"RS256\"}]}", m);
	free(m);
	m = tu_jwk_members(fx.ec);
	fx.k2_json = tu_fmt("{\"keys\":[{%s,\"kid\":\"k2\",\"alg\":\"ES256\"}]}", m);
	free(m);
	write_file("k1.json", fx.k1_json);
	write_file("k2.json", fx.k2_json);
	seed = tu_read_data("envoy-gateway-jwt/jwks.json", NULL);
	write_file("seed.json", seed);
	free(seed);
	fx.seed_jwt = afx_trim(tu_read_data("envoy-gateway-jwt/test.jwt", NULL));
	fx.seed_claim_jwt = afx_trim(tu_read_data("envoy-gateway-jwt/with-different-claim.jwt", NULL));
	return 0;
}

static int group_teardown(void **state)
{
	const char *files[] = {"k1.json", "k2.json", "seed.json", "c.yaml"};
	char p[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", fx.dir, files[i]);
		unlink(p);
	}
	rmdir(fx.dir);
	EVP_PKEY_free(fx.rsa);
	EVP_PKEY_free(fx.ec);
	free(fx.k1_json);
	free(fx.k2_json);
	free(fx.seed_jwt);
	free(fx.seed_claim_jwt);
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	memset(&t, 0, sizeof(t));
	arena_init(&t.arena, 4096, 1 << 20);
	return 0;
}

static int test_teardown(void **state)
{
	(void)state;
	auth_worker_free(t.worker);
	auth_shared_free(t.shared);
	config_free(t.cfg);
	arena_free(&t.arena);
	return 0;
}

/* Loads head + body as fx.dir/c.yaml, builds the key sets and a worker with the config's cache
 * size; a config the loader refuses fails the test with the loader's errors. */
static void afx_load(const char *head, const char *body)
{
	char *text = tu_fmt("%s%s", head, body), *errbuf = NULL, path[256];
	size_t errlen = 0;
	FILE *err = open_memstream(&errbuf, &errlen);
	int rc;

	assert_non_null(err);
	write_file("c.yaml", text);
	snprintf(path, sizeof(path), "%s/c.yaml", fx.dir);
	rc = config_load(path, err, &t.cfg);
	fflush(err);
	if (rc != 0)
		fail_msg("config_load failed (%d):\n%s\n%s", rc, errbuf, text);
	t.shared = auth_shared_new(t.cfg, err);
	fflush(err);
	if (t.shared == NULL)
		fail_msg("auth_shared_new failed:\n%s", errbuf);
	t.worker = auth_worker_new(t.shared, t.cfg->token_cache_size);
	assert_non_null(t.worker);
	fclose(err);
	free(errbuf);
	free(text);
}

#endif
