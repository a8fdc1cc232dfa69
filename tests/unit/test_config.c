/* test_config.c: config_load on the documented scenarios (CONFIG.md blocks, the shipped conf/ files),
 * defaults, normalisation, reference resolution, one test per error class with its exact
 * "file:line:column: message" text, and the duration / size / address parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "core/common.h"
#include "config/config.h"
#include "core/log.h"

static char t_dir[64];   /* per-test temporary folder */
static char t_path[128]; /* t_dir/c.yaml */
static char *t_errbuf;   /* err output of the last load */

/* ---- helpers ---- */

static int t_rm(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	JG_UNUSED(sb);
	JG_UNUSED(flag);
	JG_UNUSED(ftw);
	return remove(p);
}

static int t_setup(void **state)
{
	JG_UNUSED(state);
	strcpy(t_dir, "/tmp/jg-test-config-XXXXXX");
	assert_non_null(mkdtemp(t_dir));
	snprintf(t_path, sizeof(t_path), "%s/c.yaml", t_dir);
	t_errbuf = NULL;
	return 0;
}

static int t_teardown(void **state)
{
	JG_UNUSED(state);
	free(t_errbuf);
	t_errbuf = NULL;
	nftw(t_dir, t_rm, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void t_write(const char *rel, const char *text, size_t len)
{
	char p[256];
	FILE *f;

	snprintf(p, sizeof(p), "%s/%s", t_dir, rel);
	if (strchr(rel, '/') != NULL) {
		char d[256];

		snprintf(d, sizeof(d), "%s", p);
		*strrchr(d, '/') = '\0';
		mkdir(d, 0700);
	}
	f = fopen(p, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	fclose(f);
}

/* Reads a whole file into a new NUL-terminated buffer. */
static char *t_read(const char *p, size_t *len)
{
	FILE *f = fopen(p, "rb");
	char *buf;
	long n;

	if (f == NULL)
		fail_msg("cannot open %s", p);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

static const char *t_source_root(void)
{
	const char *r = getenv("JWTGATE_SOURCE_ROOT");

	return r != NULL ? r : ".";
}

/* Loads path; keeps the err output in t_errbuf; returns config_load's result. */
static int t_load_path(const char *path, struct config **out)
{
	size_t len = 0;
	FILE *err;
	int rc;

	free(t_errbuf);
	t_errbuf = NULL;
	err = open_memstream(&t_errbuf, &len);
	assert_non_null(err);
	rc = config_load(path, err, out);
	fclose(err);
	return rc;
}

static int t_load(const char *yaml, struct config **out)
{
	t_write("c.yaml", yaml, strlen(yaml));
	return t_load_path(t_path, out);
}

/* Asserts that the last err output holds "<t_path>:<line>:<col>: <msg>". */
static void t_expect(int line, int col, const char *msg)
{
	char want[1024];

	snprintf(want, sizeof(want), "%s:%d:%d: %s", t_path, line, col, msg);
	if (t_errbuf == NULL || strstr(t_errbuf, want) == NULL)
		fail_msg("expected in errors:\n  %s\ngot:\n%s", want,
		         t_errbuf != NULL ? t_errbuf : "(nothing)");
}

/* Loads yaml expecting exactly n_errors errors, and the one error given. */
static void t_fails(const char *yaml, int n_errors, int line, int col, const char *msg)
{
	struct config *cfg = NULL;
	int rc = t_load(yaml, &cfg);

	assert_null(cfg);
	if (rc != n_errors)
		fail_msg("expected %d errors, got %d:\n%s", n_errors, rc, t_errbuf ? t_errbuf : "");
	t_expect(line, col, msg);
}

/* One of CONFIG.md's ```yaml examples, kept verbatim in tests/data/config-md/ (tests/data/PROVENANCE),
 * as a new string. */
static char *t_config_md_block(const char *name)
{
	char p[512];

	snprintf(p, sizeof(p), "%s/config-md/%s", JWTGATE_TEST_DATA, name);
	return t_read(p, NULL);
}

static void t_copy_jwks(const char *rel)
{
	char p[512];
	size_t len;
	char *j;

	snprintf(p, sizeof(p), "%s/conf/jwks.json", t_source_root());
	j = t_read(p, &len);
	t_write(rel, j, len);
	free(j);
}

static const char *t_ip(const struct sockaddr_storage *ss, char *buf, uint16_t *port)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;

		*port = ntohs(a->sin6_port);
		return inet_ntop(AF_INET6, &a->sin6_addr, buf, 64);
	}
	*port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf, 64);
}

#define MINI_HEAD                                                                                            \
	"listeners: [{name: l, address: 127.0.0.1:8080}]\n"                                                  \
	"backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}]\n"

/* ---- good configurations ---- */

static void test_seed_scenario_from_config_md(void **state)
{
	char *yaml = t_config_md_block("seed-scenario.yaml");
	struct config *cfg = NULL;
	const struct config_policy *pol;
	char ip[64], p[512];
	uint16_t port;
	char *jwks;
	size_t jwks_len;

	JG_UNUSED(state);
	t_copy_jwks("conf/jwks.json"); /* the block says file: conf/jwks.json */
	assert_int_equal(t_load(yaml, &cfg), 0);
	free(yaml);
	assert_non_null(cfg);

	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(cfg->listeners[0].name, "http");
	assert_string_equal(t_ip(&cfg->listeners[0].addr, ip, &port), "0.0.0.0");
	assert_int_equal(port, 8080);
	assert_false(cfg->listeners[0].has_tls);

	assert_int_equal(cfg->n_backends, 2);
	assert_string_equal(cfg->backends[0].name, "backend");
	assert_int_equal(cfg->backends[0].protocol, CONFIG_PROTO_HTTP);
	assert_int_equal(cfg->backends[0].n_endpoints, 1);
	assert_int_equal(cfg->backends[0].endpoints[0].kind, CONFIG_ENDPOINT_IP);
	assert_int_equal(cfg->backends[0].endpoints[0].port, 3000);
	assert_string_equal(t_ip(&cfg->backends[0].endpoints[0].addr, ip, &port), "127.0.0.1");
	assert_int_equal(port, 3000);
	assert_int_equal(cfg->backends[1].protocol, CONFIG_PROTO_H2C);
	assert_int_equal(cfg->backends[1].index, 1);
	/* backend defaults */
	assert_int_equal(cfg->backends[0].connect_timeout_ms, 5000);
	assert_int_equal(cfg->backends[0].request_timeout_ms, 30000);
	assert_int_equal(cfg->backends[0].idle_timeout_ms, 60000);
	assert_int_equal(cfg->backends[0].lb, CONFIG_LB_ROUND_ROBIN);
	assert_int_equal(cfg->backends[0].max_connections, 1024);
	assert_false(cfg->backends[0].tls.enabled);

	/* httpRoutes first, then grpcRoutes */
	assert_int_equal(cfg->n_routes, 3);
	assert_string_equal(cfg->routes[0].name, "foo");
	assert_int_equal(cfg->routes[0].kind, CONFIG_ROUTE_HTTP);
	assert_string_equal(cfg->routes[1].name, "bar");
	assert_string_equal(cfg->routes[2].name, "yages");
	assert_int_equal(cfg->routes[2].kind, CONFIG_ROUTE_GRPC);
	assert_int_equal(cfg->routes[2].index, 2);
	assert_int_equal(cfg->routes[0].n_hostnames, 1);
	assert_string_equal(cfg->routes[0].hostnames[0], "www.example.com");
	assert_int_equal(cfg->routes[0].n_rules, 1);
	assert_ptr_equal(cfg->routes[0].rules[0].route, &cfg->routes[0]);
	assert_int_equal(cfg->routes[0].rules[0].n_matches, 1);
	assert_true(cfg->routes[0].rules[0].matches[0].has_path);
	assert_int_equal(cfg->routes[0].rules[0].matches[0].path.type, CONFIG_MATCH_PATH_PREFIX);
	assert_string_equal(cfg->routes[0].rules[0].matches[0].path.value, "/foo");
	assert_int_equal(cfg->routes[0].rules[0].matches[0].path.value_len, 4);
	assert_ptr_equal(cfg->routes[0].rules[0].backend_refs[0].backend, &cfg->backends[0]);
	assert_int_equal(cfg->routes[0].rules[0].backend_refs[0].weight, 1);
	assert_int_equal(cfg->routes[0].rules[0].total_weight, 1);
	assert_int_equal(cfg->routes[2].rules[0].n_matches, 0);
	assert_ptr_equal(cfg->routes[2].rules[0].backend_refs[0].backend, &cfg->backends[1]);

	/* policy attachment */
	assert_int_equal(cfg->n_policies, 1);
	pol = &cfg->policies[0];
	assert_ptr_equal(config_route_policy(&cfg->routes[0], 0), pol);
	assert_null(config_route_policy(&cfg->routes[1], 0));
	assert_ptr_equal(config_route_policy(&cfg->routes[2], 0), pol);
	assert_int_equal(pol->n_targets, 2);
	assert_int_equal(pol->targets[1].kind, CONFIG_TARGET_GRPCROUTE);
	assert_true(pol->has_jwt);
	assert_false(pol->optional);
	assert_false(pol->fail_open);
	assert_int_equal(cfg->n_providers, 1);
	assert_int_equal(pol->n_providers, 1);
	assert_string_equal(pol->providers[0].name, "example");
	assert_int_equal(pol->providers[0].jwks_source, CONFIG_JWKS_LOCAL);
	snprintf(p, sizeof(p), "%s/conf/jwks.json", t_dir);
	assert_string_equal(pol->providers[0].local_jwks_origin, p);
	jwks = t_read(p, &jwks_len);
	assert_int_equal(pol->providers[0].local_jwks_len, jwks_len);
	assert_memory_equal(pol->providers[0].local_jwks_json, jwks, jwks_len);
	free(jwks);
	/* provider defaults */
	assert_null(pol->providers[0].issuer);
	assert_int_equal(pol->providers[0].clock_skew_s, 60);
	assert_true(pol->providers[0].forward);
	assert_false(pol->providers[0].require_expiration);
	assert_int_equal(pol->providers[0].max_lifetime_s, 0);
	assert_false(pol->providers[0].has_extract_from);
	assert_null(pol->providers[0].forward_payload_header);
	assert_int_equal(pol->providers[0].index, 0);

	/* top-level defaults */
	assert_int_equal(cfg->workers, (int)sysconf(_SC_NPROCESSORS_ONLN));
	assert_false(cfg->has_admin);
	assert_null(cfg->access_log_path);
	assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
	assert_int_equal(cfg->token_cache_size, 4096);
	assert_int_equal(cfg->limits.max_header_bytes, 60 * 1024);
	assert_int_equal(cfg->limits.max_header_count, 100);
	assert_int_equal(cfg->limits.max_request_line, 8192);
	assert_int_equal(cfg->limits.max_body_bytes, 0);
	assert_int_equal(cfg->limits.header_timeout_ms, 10000);
	assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
	assert_int_equal(cfg->limits.drain_timeout_ms, 10000);
	assert_int_equal(cfg->limits.max_connections, 10000);
	assert_int_equal(cfg->limits.h2_max_concurrent_streams, 100);
	assert_string_equal(cfg->path, t_path);
	assert_string_equal(cfg->dir, t_dir);
	config_free(cfg);
}

static void test_remote_scenario_from_config_md(void **state)
{
	char *block = t_config_md_block("remote-jwks.yaml");
	const char *extra = "listeners: [{name: http, address: \"[::1]:8080\"}]\n"
	                    "httpRoutes:\n"
	                    "  - name: foo\n"
	                    "    rules: [{backendRefs: [{name: remote-jwks}]}]\n";
	char *yaml = malloc(strlen(block) + strlen(extra) + 1);
	struct config *cfg = NULL;
	const struct config_provider *pv;
	const struct config_backend *b;
	char p[512], ip[64];
	uint16_t port;

	JG_UNUSED(state);
	strcpy(yaml, block);
	strcat(yaml, extra);
	free(block);
	t_write("conf/remote-jwks-ca.pem", "-----BEGIN CERTIFICATE-----\n", 28);
	if (t_load(yaml, &cfg) != 0)
		fail_msg("%s", t_errbuf);
	free(yaml);

	assert_int_equal(cfg->listeners[0].addr.ss_family, AF_INET6);
	assert_string_equal(t_ip(&cfg->listeners[0].addr, ip, &port), "::1");
	assert_int_equal(port, 8080);
	b = &cfg->backends[0];
	assert_int_equal(b->endpoints[0].kind, CONFIG_ENDPOINT_FQDN);
	assert_string_equal(b->endpoints[0].host, "foo.bar.com");
	assert_int_equal(b->endpoints[0].port, 443);
	assert_true(b->tls.enabled);
	assert_int_equal(b->tls.n_ca_files, 1);
	snprintf(p, sizeof(p), "%s/conf/remote-jwks-ca.pem", t_dir);
	assert_string_equal(b->tls.ca_files[0], p);
	assert_string_equal(b->tls.hostname, "foo.bar.com");
	assert_false(b->tls.well_known_system);

	assert_ptr_equal(config_route_policy(&cfg->routes[0], 0), &cfg->policies[0]);
	pv = &cfg->policies[0].providers[0];
	assert_string_equal(pv->issuer, "https://issuer.example.com");
	assert_int_equal(pv->n_audiences, 1);
	assert_string_equal(pv->audiences[0], "api.example.com");
	assert_int_equal(pv->jwks_source, CONFIG_JWKS_REMOTE);
	assert_null(pv->local_jwks_json);
	assert_string_equal(pv->remote.uri, "https://foo.bar.com/jwks.json");
	assert_ptr_equal(pv->remote.backend, b);
	assert_int_equal(pv->remote.backend_port, 443);
	assert_int_equal(pv->remote.cache_duration_ms, 300000);
	assert_int_equal(pv->remote.failed_refetch_duration_ms, 1000);
	assert_int_equal(pv->remote.request_timeout_ms, 10000);
	assert_int_equal(pv->remote.retry.num_retries, 3);
	assert_int_equal(pv->remote.retry.base_interval_ms, 1000);
	assert_int_equal(pv->remote.retry.max_interval_ms, 5000);
	assert_int_equal(pv->remote.retry.triggers,
	                 CONFIG_RETRY_ON_5XX | CONFIG_RETRY_ON_GATEWAY_ERROR | CONFIG_RETRY_ON_RESET);
	assert_int_equal(pv->n_claim_to_headers, 2);
	assert_string_equal(pv->claim_to_headers[1].header, "x-org");
	assert_string_equal(pv->claim_to_headers[1].claim, "org.name");
	assert_true(pv->has_extract_from);
	assert_int_equal(pv->n_extract_headers, 1);
	assert_string_equal(pv->extract_headers[0].name, "authorization"); /* lower-cased */
	assert_string_equal(pv->extract_headers[0].value_prefix, "Bearer ");
	assert_int_equal(pv->n_extract_cookies, 1);
	assert_string_equal(pv->extract_cookies[0], "session_token");
	assert_string_equal(pv->extract_params[0], "access_token");
	assert_int_equal(pv->clock_skew_s, 60);
	assert_true(pv->forward);
	assert_string_equal(pv->forward_payload_header, "x-jwt-payload");
	assert_int_equal(pv->max_lifetime_s, 24 * 3600);
	config_free(cfg);
}

static void t_load_shipped(const char *rel)
{
	char p[512];
	struct config *cfg = NULL;

	snprintf(p, sizeof(p), "%s/%s", t_source_root(), rel);
	if (t_load_path(p, &cfg) != 0)
		fail_msg("%s: %s", rel, t_errbuf);
	assert_non_null(cfg);
	assert_true(cfg->n_listeners >= 1);
	assert_int_equal(cfg->n_providers, 1);
	config_free(cfg);
}

static void test_shipped_configs_load(void **state)
{
	struct config *cfg = NULL;
	char p[512];

	JG_UNUSED(state);
	t_load_shipped("conf/jwtgate.yaml");
	t_load_shipped("conf/examples/remote-jwks.yaml");
	/* conf/jwtgate.yaml: jwks.json resolved against conf/, access log on stdout */
	snprintf(p, sizeof(p), "%s/conf/jwtgate.yaml", t_source_root());
	assert_int_equal(t_load_path(p, &cfg), 0);
	assert_string_equal(cfg->access_log_path, "stdout");
	assert_int_equal(cfg->access_log_format, CONFIG_LOG_TEXT);
	assert_non_null(strstr(cfg->policies[0].providers[0].local_jwks_json, "\"keys\""));
	config_free(cfg);
}

static void test_full_options_and_normalisation(void **state)
{
	struct config *cfg = NULL;
	const struct config_match *m;
	const struct config_rule *r;
	const struct config_provider *pv;

	JG_UNUSED(state);
	t_write("keys/k.json", "{\"keys\":[]}", 11);
	if (t_load("workers: 3\n"
	           "admin: {address: 127.0.0.1:9901}\n"
	           "accessLog: {path: logs/access.log, format: json}\n"
	           "log: {level: debug}\n"
	           "tokenCache: {size: 0}\n"
	           "limits: {maxHeaderBytes: 64KiB, maxHeaderCount: 50, maxRequestLine: 4096, maxBodySize: "
	           "1MiB,\n"
	           "         headerTimeout: 500ms, idleTimeout: 1h30m, drainTimeout: 0s, maxConnections: 7,\n"
	           "         http2MaxConcurrentStreams: 9, listenBacklog: 512}\n"
	           "listeners: [{name: a, address: 127.0.0.1:0}, {name: b, address: 127.0.0.2:0}]\n"
	           "backends:\n"
	           "  - name: be\n"
	           "    loadBalancer: {type: LeastRequest}\n"
	           "    timeouts: {connect: 1s, request: 0s, idle: 5m}\n"
	           "    circuitBreaker: {maxConnections: 10, maxPendingRequests: 0, maxParallelRequests: 3}\n"
	           "    healthCheck: {panicThreshold: 0}\n"
	           "    endpoints: [{ip: {address: \"::1\", port: 81}}]\n"
	           "  - name: h2\n"
	           "    protocol: H2\n"
	           "    tls: {wellKnownCACertificates: System, hostname: API.Example.com}\n"
	           "    endpoints: [{fqdn: {hostname: API.Example.com, port: 443}}]\n"
	           "httpRoutes:\n"
	           "  - name: r\n"
	           "    hostnames: [\"WWW.Example.COM\", \"*.Example.org\"]\n"
	           "    rules:\n"
	           "      - matches:\n"
	           "          - path: {value: /api/}\n"
	           "            method: POST\n"
	           "            headers: [{name: X-Ver, value: \"2\"}, {name: X-Re, type: RegularExpression, "
	           "value: \"a|b\"}]\n"
	           "            queryParams: [{name: Q, value: v}]\n"
	           "          - path: {type: RegularExpression, value: \"/v[0-9]+\"}\n"
	           "          - path: {type: Exact, value: /}\n"
	           "        backendRefs: [{name: be, weight: 3, port: 8081}, {name: be, weight: 0}]\n"
	           "  - name: plain\n"
	           "    rules: [{backendRefs: [{name: be, kind: Backend, group: \"\"}]}]\n"
	           "grpcRoutes:\n"
	           "  - name: g\n"
	           "    rules:\n"
	           "      - matches: [{method: {service: pkg.Svc}}, {method: {type: RegularExpression, "
	           "method: \"Get.*\"}}]\n"
	           "        backendRefs: [{name: h2}]\n"
	           "securityPolicies:\n"
	           "  - name: gw\n"
	           "    targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: eg, sectionName: "
	           "b}\n"
	           "    jwt: {optional: true, providers: [{name: p1, localJWKS: {type: File, file: "
	           "keys/k.json}}]}\n"
	           "  - name: route\n"
	           "    targetRefs: [{kind: HTTPRoute, name: r}]\n"
	           "    jwt:\n"
	           "      failOpen: true\n"
	           "      providers:\n"
	           "        - name: p1\n"
	           "          localJWKS: {type: Inline, inline: '{\"keys\": []}'}\n"
	           "          claimToHeaders: [{header: X-Sub, claim: sub}]\n"
	           "          recomputeRoute: true\n"
	           "          extractFrom: {params: [tok]}\n"
	           "          clockSkew: 1m30s\n"
	           "          forward: false\n"
	           "          forwardPayloadHeader: X-Payload\n"
	           "          requireExpiration: true\n"
	           "          maxLifetime: 1h\n"
	           "          remoteJWKSx: 1\n",
	           &cfg) != 1)
		fail_msg("%s", t_errbuf);
	/* the last line is a deliberate typo: a single error, and nothing else is wrong */
	t_expect(59, 11, "unknown key \"remoteJWKSx\" (at securityPolicies[1].jwt.providers[0])");

	/* same file without the typo */
	{
		char *text = t_read(t_path, NULL);

		*strstr(text, "          remoteJWKSx") = '\0';
		if (t_load(text, &cfg) != 0)
			fail_msg("%s", t_errbuf);
		free(text);
	}
	assert_int_equal(cfg->workers, 3);
	assert_true(cfg->has_admin);
	assert_int_equal(cfg->admin_addr.ss_family, AF_INET);
	{
		char p[512];

		snprintf(p, sizeof(p), "%s/logs/access.log", t_dir);
		assert_string_equal(cfg->access_log_path, p);
	}
	assert_int_equal(cfg->access_log_format, CONFIG_LOG_JSON);
	assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
	assert_int_equal(cfg->token_cache_size, 0);
	assert_int_equal(cfg->limits.max_header_bytes, 65536);
	assert_int_equal(cfg->limits.max_header_count, 50);
	assert_int_equal(cfg->limits.max_request_line, 4096);
	assert_int_equal(cfg->limits.max_body_bytes, 1048576);
	assert_int_equal(cfg->limits.header_timeout_ms, 500);
	assert_int_equal(cfg->limits.idle_timeout_ms, 5400000);
	assert_int_equal(cfg->limits.drain_timeout_ms, 0);
	assert_int_equal(cfg->limits.max_connections, 7);
	assert_int_equal(cfg->limits.h2_max_concurrent_streams, 9);
	assert_int_equal(cfg->limits.listen_backlog, 512);

	assert_int_equal(cfg->backends[0].lb, CONFIG_LB_LEAST_REQUEST);
	assert_int_equal(cfg->backends[0].connect_timeout_ms, 1000);
	assert_int_equal(cfg->backends[0].request_timeout_ms, 0);
	assert_int_equal(cfg->backends[0].idle_timeout_ms, 300000);
	assert_int_equal(cfg->backends[0].max_connections, 10);
	assert_int_equal(cfg->backends[0].max_pending, 0);
	assert_int_equal(cfg->backends[0].max_requests, 3);
	assert_int_equal(cfg->backends[0].panic_threshold, 0);
	assert_int_equal(cfg->backends[1].panic_threshold, 50); /* Envoy's default */
	assert_int_equal(cfg->backends[0].endpoints[0].addr.ss_family, AF_INET6);
	assert_true(cfg->backends[1].tls.well_known_system);
	assert_string_equal(cfg->backends[1].tls.hostname, "api.example.com");
	assert_string_equal(cfg->backends[1].endpoints[0].host, "api.example.com");

	assert_string_equal(cfg->routes[0].hostnames[0], "www.example.com");
	assert_string_equal(cfg->routes[0].hostnames[1], "*.example.org");
	r = &cfg->routes[0].rules[0];
	assert_int_equal(r->n_backend_refs, 2);
	assert_int_equal(r->backend_refs[0].weight, 3);
	assert_int_equal(r->backend_refs[0].port, 8081);
	assert_int_equal(r->backend_refs[1].weight, 0);
	assert_int_equal(r->total_weight, 3);
	m = &r->matches[0];
	assert_int_equal(m->path.type, CONFIG_MATCH_PATH_PREFIX); /* default type */
	assert_string_equal(m->path.value, "/api");               /* trailing '/' dropped */
	assert_string_equal(m->method, "POST");
	assert_string_equal(m->headers[0].name, "x-ver");
	assert_int_equal(m->headers[0].type, CONFIG_MATCH_EXACT);
	assert_true(m->headers[1].has_re);
	assert_int_equal(regexec(&m->headers[1].re, "a", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&m->headers[1].re, "ab", 0, NULL, 0), 0); /* anchored */
	assert_string_equal(m->query_params[0].name, "Q");                     /* not lower-cased */
	m = &r->matches[1];
	assert_true(m->path.has_re);
	assert_int_equal(regexec(&m->path.re, "/v12", 0, NULL, 0), 0);
	assert_int_not_equal(regexec(&m->path.re, "/v12/x", 0, NULL, 0), 0);
	assert_string_equal(r->matches[2].path.value, "/"); /* "/" stays "/" */
	assert_int_equal(r->matches[2].path.type, CONFIG_MATCH_EXACT);

	m = &cfg->routes[2].rules[0].matches[0];
	assert_true(m->has_grpc_method);
	assert_int_equal(m->grpc_type, CONFIG_MATCH_EXACT);
	assert_string_equal(m->grpc_service, "pkg.Svc");
	assert_null(m->grpc_method);
	m = &cfg->routes[2].rules[0].matches[1];
	assert_true(m->has_grpc_method_re);
	assert_false(m->has_grpc_service_re);
	assert_int_equal(regexec(&m->grpc_method_re, "GetUser", 0, NULL, 0), 0);

	/* Gateway policy narrowed to listener "b" (index 1); route policy overrides it on r */
	assert_ptr_equal(config_route_policy(&cfg->routes[0], 0), &cfg->policies[1]);
	assert_ptr_equal(config_route_policy(&cfg->routes[0], 1), &cfg->policies[1]);
	assert_null(config_route_policy(&cfg->routes[1], 0));
	assert_ptr_equal(config_route_policy(&cfg->routes[1], 1), &cfg->policies[0]);
	assert_ptr_equal(config_route_policy(&cfg->routes[2], 1), &cfg->policies[0]);
	assert_true(cfg->policies[0].optional);
	assert_true(cfg->policies[1].fail_open);

	assert_int_equal(cfg->n_providers, 2);
	assert_int_equal(cfg->policies[0].providers[0].index, 0);
	assert_int_equal(cfg->policies[1].providers[0].index, 1);
	assert_string_equal(cfg->policies[0].providers[0].local_jwks_json, "{\"keys\":[]}");
	pv = &cfg->policies[1].providers[0];
	assert_string_equal(pv->local_jwks_origin, "inline");
	assert_string_equal(pv->local_jwks_json, "{\"keys\": []}");
	assert_string_equal(pv->claim_to_headers[0].header, "x-sub");
	assert_true(pv->recompute_route);
	assert_true(pv->has_extract_from);
	assert_int_equal(pv->n_extract_headers, 0);
	assert_string_equal(pv->extract_params[0], "tok");
	assert_int_equal(pv->clock_skew_s, 90);
	assert_false(pv->forward);
	assert_string_equal(pv->forward_payload_header, "x-payload");
	assert_true(pv->require_expiration);
	assert_int_equal(pv->max_lifetime_s, 3600);
	config_free(cfg);
}

static void test_gateway_policy_all_listeners(void **state)
{
	struct config *cfg = NULL;

	JG_UNUSED(state);
	t_write("k.json", "{}", 2);
	if (t_load("listeners: [{name: a, address: 127.0.0.1:1}, {name: b, address: 127.0.0.1:2}]\n"
	           "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}]\n"
	           "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	           "securityPolicies:\n"
	           "  - name: gw\n"
	           "    targetRefs: [{kind: Gateway, name: eg}]\n"
	           "    jwt: {providers: [{name: p, localJWKS: {type: File, file: k.json}}]}\n",
	           &cfg) != 0)
		fail_msg("%s", t_errbuf);
	assert_ptr_equal(config_route_policy(&cfg->routes[0], 0), &cfg->policies[0]);
	assert_ptr_equal(config_route_policy(&cfg->routes[0], 1), &cfg->policies[0]);
	/* a retry block without maxInterval: 10 x base; without retryOn: the default triggers */
	config_free(cfg);
}

/* clientTrafficPolicies: Envoy Gateway's defaults without one; a sectionName policy overrides the
 * Gateway-wide one on its listener; conflicts and other target kinds are errors. */
static void test_client_traffic_policies(void **state)
{
	static const char base[] =
	        "listeners: [{name: a, address: 127.0.0.1:1}, {name: b, address: 127.0.0.1:2}]\n"
	        "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}]\n"
	        "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n";
	char yaml[2048];
	struct config *cfg = NULL;

	JG_UNUSED(state);
	if (t_load(base, &cfg) != 0)
		fail_msg("%s", t_errbuf);
	assert_int_equal(cfg->listeners[0].client.underscores, CONFIG_UNDERSCORES_REJECT);
	assert_int_equal(cfg->listeners[0].client.escaped_slashes,
	                 CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT);
	assert_true(cfg->listeners[0].client.merge_slashes);
	assert_null(cfg->listeners[0].client.policy_name);
	config_free(cfg);

	snprintf(yaml, sizeof(yaml),
	         "%sclientTrafficPolicies:\n"
	         "  - name: gw\n"
	         "    targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: eg}\n"
	         "    headers: {withUnderscoresAction: DropHeader}\n"
	         "  - name: only-b\n"
	         "    targetRefs: [{kind: Gateway, name: eg, sectionName: b}]\n"
	         "    headers: {withUnderscoresAction: Allow}\n"
	         "    path: {escapedSlashesAction: KeepUnchanged, disableMergeSlashes: true}\n",
	         base);
	if (t_load(yaml, &cfg) != 0)
		fail_msg("%s", t_errbuf);
	assert_int_equal(cfg->listeners[0].client.underscores, CONFIG_UNDERSCORES_DROP);
	assert_int_equal(cfg->listeners[0].client.escaped_slashes,
	                 CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT);
	assert_true(cfg->listeners[0].client.merge_slashes);
	assert_string_equal(cfg->listeners[0].client.policy_name, "gw");
	assert_int_equal(cfg->listeners[1].client.underscores, CONFIG_UNDERSCORES_ALLOW);
	assert_int_equal(cfg->listeners[1].client.escaped_slashes, CONFIG_ESCAPED_SLASHES_KEEP_UNCHANGED);
	assert_false(cfg->listeners[1].client.merge_slashes);
	assert_string_equal(cfg->listeners[1].client.policy_name, "only-b");
	config_free(cfg);

	snprintf(yaml, sizeof(yaml),
	         "%sclientTrafficPolicies:\n"
	         "  - name: x\n"
	         "    targetRef: {kind: Gateway, sectionName: a}\n"
	         "  - name: y\n"
	         "    targetRef: {kind: Gateway, sectionName: a}\n",
	         base);
	t_fails(yaml, 1, 8, 16, "listener \"a\" already has clientTrafficPolicy \"x\"");
	snprintf(yaml, sizeof(yaml),
	         "%sclientTrafficPolicies:\n"
	         "  - name: x\n"
	         "    targetRef: {kind: HTTPRoute, name: r}\n"
	         "    path: {escapedSlashesAction: Unescape}\n",
	         base);
	t_fails(yaml, 2, 6, 23, "invalid value \"HTTPRoute\" (expected one of Gateway)");
	t_expect(7, 34,
	         "invalid value \"Unescape\" (expected one of UnescapeAndRedirect, KeepUnchanged, "
	         "RejectRequest, "
	         "UnescapeAndForward)");
	snprintf(yaml, sizeof(yaml),
	         "%sclientTrafficPolicies:\n"
	         "  - name: x\n"
	         "    targetRef: {kind: Gateway, sectionName: c}\n",
	         base);
	t_fails(yaml, 1, 6, 45, "sectionName names no listener \"c\"");
}

/* Both policy kinds attach through targetRef or targetRefs: exactly one of the two, a non-empty
 * list, and each target reported at its own key path. */
static void test_policy_target_refs(void **state)
{
	static const char base[] =
	        "listeners: [{name: a, address: 127.0.0.1:1}]\n"
	        "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}]\n"
	        "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n";
	static const char jwt[] = "    jwt: {providers: [{name: x, remoteJWKS: {uri: \"https://a/\"}}]}\n";
	static const char *const kinds[] = {"securityPolicies", "clientTrafficPolicies"};
	char yaml[2048], want[256];
	size_t k;

	JG_UNUSED(state);
	for (k = 0; k < 2; k++) {
		const char *extra = k == 0 ? jwt : "";

		snprintf(yaml, sizeof(yaml),
		         "%s%s:\n  - name: p\n    targetRef: {kind: Gateway, name: eg}\n"
		         "    targetRefs: [{kind: Gateway, name: eg}]\n%s",
		         base, kinds[k], extra);
		snprintf(want, sizeof(want), "\"targetRef\" and \"targetRefs\" are exclusive (at %s[0])",
		         kinds[k]);
		t_fails(yaml, 1, 5, 5, want);
		snprintf(yaml, sizeof(yaml), "%s%s:\n  - name: p\n%s", base, kinds[k], extra);
		snprintf(want, sizeof(want),
		         "missing required key \"targetRefs\" (or \"targetRef\") (at %s[0])", kinds[k]);
		t_fails(yaml, 1, 5, 5, want);
		snprintf(yaml, sizeof(yaml), "%s%s:\n  - name: p\n    targetRefs: []\n%s", base, kinds[k],
		         extra);
		snprintf(want, sizeof(want), "list must not be empty (at %s[0].targetRefs)", kinds[k]);
		t_fails(yaml, 1, 6, 17, want);
		snprintf(yaml, sizeof(yaml),
		         "%s%s:\n  - name: p\n    targetRefs: [{kind: Gateway, name: eg}, "
		         "{kind: Gateway, sectionName: zz}]\n%s",
		         base, kinds[k], extra);
		snprintf(want, sizeof(want), "sectionName names no listener \"zz\" (at %s[0].targetRefs[1])",
		         kinds[k]);
		t_fails(yaml, 1, 6, 74, want);
	}
}

static void test_remote_defaults(void **state)
{
	struct config *cfg = NULL;
	const struct config_remote_jwks *r;

	JG_UNUSED(state);
	if (t_load(MINI_HEAD
	           "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	           "securityPolicies:\n"
	           "  - name: p\n"
	           "    targetRef: {kind: HTTPRoute, name: r}\n"
	           "    jwt: {providers: [{name: p, remoteJWKS: {uri: \"https://idp/jwks\",\n"
	           "          backendSettings: {retry: {perRetry: {backOff: {baseInterval: 100ms}}}}}}]}\n",
	           &cfg) != 0)
		fail_msg("%s", t_errbuf);
	r = &cfg->policies[0].providers[0].remote;
	assert_null(r->backend);
	assert_int_equal(r->cache_duration_ms, 300000);
	assert_int_equal(r->failed_refetch_duration_ms, 1000);
	assert_int_equal(r->request_timeout_ms, 10000);
	assert_int_equal(r->retry.num_retries, 2);
	assert_int_equal(r->retry.base_interval_ms, 100);
	assert_int_equal(r->retry.max_interval_ms, 1000);
	assert_int_equal(r->retry.triggers, CONFIG_RETRY_ON_5XX | CONFIG_RETRY_ON_GATEWAY_ERROR |
	                                            CONFIG_RETRY_ON_RESET | CONFIG_RETRY_ON_CONNECT_FAILURE);
	config_free(cfg);
}

/* "https or http" (the issue): an http:// uri loads, with or without a backend. */
static void test_remote_http_uri(void **state)
{
	struct config *cfg = NULL;

	JG_UNUSED(state);
	if (t_load(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                     "securityPolicies:\n"
	                     "  - name: p\n"
	                     "    targetRef: {kind: HTTPRoute, name: r}\n"
	                     "    jwt: {providers: [{name: p, remoteJWKS: {uri: \"http://idp:8080/jwks\"}},\n"
	                     "                      {name: q, remoteJWKS: {uri: \"http://idp/jwks\",\n"
	                     "                                             backendRefs: [{name: b}]}}]}\n",
	           &cfg) != 0)
		fail_msg("%s", t_errbuf);
	assert_string_equal(cfg->policies[0].providers[0].remote.uri, "http://idp:8080/jwks");
	assert_null(cfg->policies[0].providers[0].remote.backend);
	assert_string_equal(cfg->policies[0].providers[1].remote.uri, "http://idp/jwks");
	assert_ptr_equal(cfg->policies[0].providers[1].remote.backend, &cfg->backends[0]);
	config_free(cfg);
}

/* ---- error classes: exact positions and messages ---- */

static void test_err_unknown_key(void **state)
{
	JG_UNUSED(state);
	t_fails(MINI_HEAD "httpRoutes:\n"
	                  "  - name: r\n"
	                  "    rules:\n"
	                  "      - matches:\n"
	                  "          - path: {type: Exact, value: /x, hostname: a}\n"
	                  "        backendRefs: [{name: b}]\n",
	        1, 7, 44, "unknown key \"hostname\" (at httpRoutes[0].rules[0].matches[0].path)");
	t_fails(MINI_HEAD "listenrs: []\n", 1, 3, 1, "unknown key \"listenrs\"\n");
	t_fails(MINI_HEAD "workers: 1\nworkers: 2\n", 1, 4, 1, "duplicate key \"workers\"");
}

static void test_err_wrong_types(void **state)
{
	JG_UNUSED(state);
	t_fails("listeners: {name: l, address: 127.0.0.1:1}\n", 1, 1, 12,
	        "expected a list, found a mapping (at listeners)");
	t_fails(MINI_HEAD "workers: lots\n", 1, 3, 10,
	        "expected a number or \"auto\", found \"lots\" (at workers)");
	t_fails(MINI_HEAD "workers: 0\n", 1, 3, 10, "0 out of range 1..1024 (at workers)");
	t_fails("listeners: [{name: l, address: 127.0.0.1:8080}]\n"
	        "backends: [{name: b, healthCheck: {panicThreshold: 101}, endpoints: [{ip: {address: "
	        "127.0.0.1, port: 80}}]}]\n",
	        1, 2, 52, "101 out of range 0..100 (at backends[0].healthCheck.panicThreshold)");
	t_fails(MINI_HEAD "limits: {headerTimeout: 10}\n", 1, 3, 25,
	        "invalid duration \"10\" (expected e.g. 500ms, 10s, 5m, 1h30m) (at limits.headerTimeout)");
	t_fails(MINI_HEAD "limits: {maxBodySize: 1MB}\n", 1, 3, 23,
	        "invalid size \"1MB\" (expected bytes, or a number with KiB, MiB or GiB) (at "
	        "limits.maxBodySize)");
	t_fails(MINI_HEAD "log: {level: loud}\n", 1, 3, 14,
	        "invalid value \"loud\" (expected one of error, warn, info, debug) (at log.level)");
	t_fails(MINI_HEAD "tokenCache: [1]\n", 1, 3, 13, "expected a mapping, found a list (at tokenCache)");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: [b]}]}]}]\n", 1, 3, 54,
	        "expected a string, found a list (at httpRoutes[0].rules[0].backendRefs[0].name)");
}

static void test_err_missing_required(void **state)
{
	JG_UNUSED(state);
	t_fails("listeners: [{name: l}]\n", 1, 1, 13, "missing required key \"address\" (at listeners[0])");
	t_fails("listeners: [{name: l, address: 127.0.0.1:1}]\nbackends: [{name: b}]\n", 1, 2, 12,
	        "missing required key \"endpoints\" (at backends[0])");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{matches: []}]}]\n", 1, 3, 32,
	        "missing required key \"backendRefs\" (at httpRoutes[0].rules[0])");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: []}]\n", 1, 3, 31,
	        "list must not be empty (at httpRoutes[0].rules)");
	t_fails("backends: []\n", 1, 1, 1, "no listeners: at least one listener is needed");
	t_fails("", 1, 1, 1, "empty configuration");
}

static void test_err_duplicates(void **state)
{
	JG_UNUSED(state);
	t_fails("listeners: [{name: l, address: 127.0.0.1:1}, {name: l, address: 127.0.0.1:2}]\n", 1, 1, 53,
	        "duplicate listener name \"l\" (at listeners[1])");
	t_fails("listeners: [{name: l, address: 127.0.0.1:1}, {name: m, address: 127.0.0.1:1}]\n", 1, 1, 65,
	        "address \"127.0.0.1:1\" is already used by listener \"l\" (at listeners[1].address)");
	t_fails(MINI_HEAD "backends: []\n", 1, 3, 1, "duplicate key \"backends\"");
	t_fails("listeners: [{name: l, address: 127.0.0.1:1}]\n"
	        "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}]},\n"
	        "           {name: b, endpoints: [{ip: {address: 127.0.0.1, port: 81}}]}]\n",
	        1, 3, 19, "duplicate backend name \"b\" (at backends[1])");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]},\n"
	                  "             {name: r, rules: [{backendRefs: [{name: b}]}]}]\n",
	        1, 4, 21, "duplicate httpRoute name \"r\" (at httpRoutes[1])");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                  "securityPolicies:\n"
	                  "  - {name: p, targetRef: {kind: HTTPRoute, name: r}, jwt: {providers: [{name: x, "
	                  "remoteJWKS: {uri: \"https://a/j\"}}]}}\n"
	                  "  - {name: p, targetRef: {kind: Gateway}, jwt: {providers: [\n"
	                  "      {name: x, remoteJWKS: {uri: \"https://a/j\"}},\n"
	                  "      {name: x, remoteJWKS: {uri: \"https://a/j\"}}]}}\n",
	        2, 6, 12, "duplicate securityPolicy name \"p\" (at securityPolicies[1])");
	t_expect(8, 14, "duplicate provider name \"x\" (at securityPolicies[1].jwt.providers[1])");
}

static void test_err_dangling_references(void **state)
{
	JG_UNUSED(state);
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: nope}]}]}]\n", 1, 3, 54,
	        "backendRefs names no backend \"nope\" (at httpRoutes[0].rules[0].backendRefs[0])");
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	        "securityPolicies:\n"
	        "  - name: p\n"
	        "    targetRefs: [{kind: GRPCRoute, name: r}, {kind: Gateway, name: eg, sectionName: x}]\n"
	        "    jwt: {providers: [{name: x, remoteJWKS: {uri: \"https://a/j\", backendRefs: [{name: "
	        "zz}]}}]}\n",
	        3, 6, 42, "targetRef names no GRPCRoute \"r\" (at securityPolicies[0].targetRefs[0])");
	t_expect(6, 85, "sectionName names no listener \"x\" (at securityPolicies[0].targetRefs[1])");
	t_expect(7, 87,
	         "remoteJWKS backendRefs names no backend \"zz\" "
	         "(at securityPolicies[0].jwt.providers[0].remoteJWKS.backendRefs[0])");
}

static void test_err_impossible_combinations(void **state)
{
	const char *route = MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                              "securityPolicies:\n"
	                              "  - name: p\n"
	                              "    targetRef: {kind: HTTPRoute, name: r}\n";
	char y[2048];

	JG_UNUSED(state);
	snprintf(y, sizeof(y),
	         "%s    jwt: {providers: [{name: x, localJWKS: {type: Inline, inline: a}, "
	         "remoteJWKS: {uri: \"https://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 23,
	        "\"localJWKS\" and \"remoteJWKS\" are exclusive (at securityPolicies[0].jwt.providers[0])");
	snprintf(y, sizeof(y), "%s    jwt: {providers: [{name: x}]}\n", route);
	t_fails(y, 1, 7, 23,
	        "a provider needs \"localJWKS\" or \"remoteJWKS\" (at securityPolicies[0].jwt.providers[0])");
	snprintf(y, sizeof(y),
	         "%s    jwt: {optional: true, failOpen: true, providers: [{name: x, "
	         "remoteJWKS: {uri: \"https://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 10, "\"optional\" and \"failOpen\" cannot be combined (at securityPolicies[0].jwt)");
	snprintf(y, sizeof(y),
	         "%s    jwt: {providers: [{name: x, recomputeRoute: true, "
	         "remoteJWKS: {uri: \"https://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 49, "recomputeRoute needs claimToHeaders (at securityPolicies[0].jwt.providers[0])");
	/* A claim header that is also where a token is read from would hide the token (fail open
	 * with optional): refused, across providers of the policy too. */
	snprintf(y, sizeof(y),
	         "%s    jwt: {optional: true, providers: [{name: x, claimToHeaders: [{header: authorization, "
	         "claim: sub}], remoteJWKS: {uri: \"https://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 38,
	        "header \"authorization\" carries claims for provider \"x\" and a token for provider \"x\": "
	        "client copies of claim headers are removed before extraction, so the token would never be "
	        "seen (at securityPolicies[0].jwt.providers)");
	snprintf(y, sizeof(y),
	         "%s    jwt: {providers: [{name: x, forwardPayloadHeader: x-tok, remoteJWKS: {uri: "
	         "\"https://a/\"}}, "
	         "{name: y, extractFrom: {headers: [{name: X-Tok}]}, remoteJWKS: {uri: \"https://b/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 22,
	        "header \"x-tok\" carries claims for provider \"x\" and a token for provider \"y\": "
	        "client copies of claim headers are removed before extraction, so the token would never be "
	        "seen (at securityPolicies[0].jwt.providers)");
	snprintf(y, sizeof(y), "%s    jwt: {providers: []}\n", route);
	t_fails(y, 1, 7, 22, "list must not be empty (at securityPolicies[0].jwt.providers)");
	snprintf(y, sizeof(y), "%s    jwt: {providers: [", route);
	{
		int i;

		for (i = 0; i < 17; i++) {
			char one[96];

			snprintf(one, sizeof(one), "%s{name: p%d, remoteJWKS: {uri: \"https://a/\"}}",
			         i ? ", " : "", i);
			strcat(y, one);
		}
		strcat(y, "]}\n");
	}
	t_fails(y, 1, 7, 22, "17 providers: a policy takes 1 to 16 (at securityPolicies[0].jwt.providers)");
	snprintf(y, sizeof(y), "%s    jwt: {providers: [{name: x, localJWKS: {type: File}}]}\n", route);
	t_fails(y, 1, 7, 44,
	        "localJWKS type File needs \"file\" (at securityPolicies[0].jwt.providers[0].localJWKS)");
	snprintf(y, sizeof(y), "%s    jwt: {providers: [{name: x, remoteJWKS: {uri: \"ftp://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 51,
	        "remoteJWKS uri \"ftp://a/\" must be an https:// or http:// URL with a host "
	        "(at securityPolicies[0].jwt.providers[0].remoteJWKS.uri)");
	snprintf(y, sizeof(y), "%s    jwt: {providers: [{name: x, remoteJWKS: {uri: \"http:///a\"}}]}\n",
	         route);
	t_fails(y, 1, 7, 51,
	        "remoteJWKS uri \"http:///a\" must be an https:// or http:// URL with a host "
	        "(at securityPolicies[0].jwt.providers[0].remoteJWKS.uri)");
	snprintf(y, sizeof(y),
	         "%s    jwt: {providers: [{name: x, remoteJWKS: {uri: \"https://a/\"}}]}\n"
	         "  - name: q\n    targetRef: {kind: HTTPRoute, name: r}\n"
	         "    jwt: {providers: [{name: x, remoteJWKS: {uri: \"https://a/\"}}]}\n",
	         route);
	t_fails(y, 1, 9, 16,
	        "HTTPRoute \"r\" is already targeted by policy \"p\" (at securityPolicies[1].targetRef)");
	/* regex that does not compile */
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, rules: [{matches: [{headers: [{name: a, type: RegularExpression, "
	        "value: \"(\"}]}], backendRefs: [{name: b}]}]}]\n",
	        1, 3, 96, "invalid regular expression: ");
	/* gRPC route on an HTTP/1.1 backend */
	t_fails(MINI_HEAD "grpcRoutes: [{name: g, rules: [{backendRefs: [{name: b}]}]}]\n", 1, 3, 54,
	        "gRPC needs HTTP/2: backend \"b\" has protocol HTTP (HTTP/1.1); set protocol H2C or H2 "
	        "(at grpcRoutes[0].rules[0].backendRefs[0])");
	/* host names are refused in listener addresses */
	t_fails("listeners: [{name: l, address: \"localhost:80\"}]\n", 1, 1, 32,
	        "invalid listener address \"localhost:80\" (expected IPv4:port or [IPv6]:port; host names "
	        "are refused) "
	        "(at listeners[0].address)");
	t_fails("listeners: [{name: l, address: 127.0.0.1:8080}]\n"
	        "backends: [{name: c, protocol: H2C, tls: {wellKnownCACertificates: System, hostname: a},\n"
	        "            endpoints: [{ip: {address: 127.0.0.1, port: 80}}]}]\n",
	        1, 2, 42,
	        "protocol H2C is cleartext; use protocol H2 for HTTP/2 over TLS (at backends[0].tls)");
}

static void test_err_headers_and_wire_values(void **state)
{
	JG_UNUSED(state);
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, rules: [{matches: [{headers: [{name: \"a b\", value: v}]}], "
	        "backendRefs: [{name: b}]}]}]\n",
	        1, 3, 61,
	        "\"a b\" is not a valid HTTP token (RFC 9110 section 5.6.2) "
	        "(at httpRoutes[0].rules[0].matches[0].headers[0].name)");
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, rules: [{matches: [{headers: [{name: a, value: \"x\\r\\ny\"}]}], "
	        "backendRefs: [{name: b}]}]}]\n",
	        1, 3, 71, "CR or LF in value (at httpRoutes[0].rules[0].matches[0].headers[0].value)");
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, hostnames: [\"a\\0b\"], rules: [{backendRefs: [{name: b}]}]}]\n",
	        1, 3, 36, "NUL byte in value (at httpRoutes[0].hostnames[0])");
	t_fails(MINI_HEAD
	        "httpRoutes: [{name: r, hostnames: [\"a.com:80\"], rules: [{backendRefs: [{name: b}]}]}]\n",
	        1, 3, 36, "invalid host name \"a.com:80\"");
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{matches: [{path: {value: foo}}], backendRefs: "
	                  "[{name: b}]}]}]\n",
	        1, 3, 58, "path \"foo\" must start with '/'");
}

static void test_err_jwks_files(void **state)
{
	char *big;
	const char *y =
	        MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                  "securityPolicies: [{name: p, targetRef: {kind: HTTPRoute, name: r},\n"
	                  "  jwt: {providers: [{name: x, localJWKS: {type: File, file: big.json}}]}}]\n";

	JG_UNUSED(state);
	t_fails(y, 1, 5, 61, "cannot read JWKS file");
	big = malloc((1u << 20) + 1);
	memset(big, ' ', (1u << 20) + 1);
	t_write("big.json", big, (1u << 20) + 1);
	free(big);
	t_fails(y, 1, 5, 61, "JWKS file \"");
	assert_non_null(strstr(t_errbuf, "big.json\" is larger than 1048576 bytes (at "
	                                 "securityPolicies[0].jwt.providers[0].localJWKS.file)"));
}

/* ---- authorization (issue 12 section 1) ---- */

#define AUTHZ_HEAD                                                                                           \
	MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"                           \
	          "securityPolicies:\n"                                                                      \
	          "  - name: p\n"                                                                            \
	          "    targetRef: {kind: HTTPRoute, name: r}\n"                                              \
	          "    jwt: {providers: [{name: example, remoteJWKS: {uri: \"https://a/j\"}}]}\n"

/* Rules are compiled at load time: claim paths split, CIDRs parsed with host bits cleared, methods as
 * bits, the provider resolved to its index; defaults as Envoy Gateway's (defaultAction Deny, rule
 * names generated, valueType String). */
static void test_authorization_compiled(void **state)
{
	struct config *cfg = NULL;
	const struct config_authz *a;
	const struct config_authz_rule *r;
	char ip[64];

	JG_UNUSED(state);
	assert_int_equal(t_load(AUTHZ_HEAD "    authorization:\n"
	                                   "      defaultAction: Allow\n"
	                                   "      rules:\n"
	                                   "        - name: admins\n"
	                                   "          action: Allow\n"
	                                   "          principal:\n"
	                                   "            clientCIDRs: [\"10.1.2.3/8\", \"2001:db8::1/32\"]\n"
	                                   "            jwt:\n"
	                                   "              provider: example\n"
	                                   "              claims: [{name: user.roles, valueType: StringArray,"
	                                   " values: [admin, ops]}, {name: sub, values: [x]}]\n"
	                                   "              scopes: [read, write]\n"
	                                   "            headers: [{name: X-Team, values: [a, b]}]\n"
	                                   "          operation: {methods: [GET, POST]}\n"
	                                   "        - action: Deny\n"
	                                   "          principal: {clientCIDRs: [\"0.0.0.0/0\"]}\n",
	                        &cfg),
	                 0);
	a = &cfg->policies[0].authz;
	assert_true(cfg->policies[0].has_authz);
	assert_true(a->default_allow);
	assert_true(a->needs_claims);
	assert_int_equal(a->n_rules, 2);
	r = &a->rules[0];
	assert_string_equal(r->name, "admins");
	assert_true(r->allow);
	assert_int_equal(r->n_cidrs, 2);
	assert_int_equal(r->cidrs[0].family, AF_INET);
	assert_int_equal(r->cidrs[0].prefix, 8);
	assert_string_equal(inet_ntop(AF_INET, r->cidrs[0].net, ip, sizeof(ip)), "10.0.0.0");
	assert_int_equal(r->cidrs[1].family, AF_INET6);
	assert_int_equal(r->cidrs[1].prefix, 32);
	assert_string_equal(inet_ntop(AF_INET6, r->cidrs[1].net, ip, sizeof(ip)), "2001:db8::");
	assert_true(r->has_jwt);
	assert_int_equal(r->jwt_provider_index, cfg->policies[0].providers[0].index);
	assert_int_equal(r->n_claims, 2);
	assert_int_equal(r->claims[0].n_segments, 2);
	assert_string_equal(r->claims[0].segments[0], "user");
	assert_string_equal(r->claims[0].segments[1], "roles");
	assert_true(r->claims[0].string_array);
	assert_int_equal(r->claims[0].n_values, 2);
	assert_false(r->claims[1].string_array);
	assert_int_equal(r->n_scopes, 2);
	assert_string_equal(r->headers[0].name, "x-team");
	assert_int_equal(r->methods, CONFIG_METHOD_GET | CONFIG_METHOD_POST);
	r = &a->rules[1];
	assert_string_equal(r->name, "rule-1");
	assert_false(r->allow);
	assert_false(r->has_jwt);
	assert_int_equal(r->methods, 0);
	config_free(cfg);
	cfg = NULL;

	/* authorization alone (no jwt), without defaultAction: Deny */
	assert_int_equal(t_load(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                                  "securityPolicies:\n"
	                                  "  - name: p\n"
	                                  "    targetRef: {kind: HTTPRoute, name: r}\n"
	                                  "    authorization: {rules: [{action: Allow, principal: {headers: "
	                                  "[{name: x, values: [y]}]}}]}\n",
	                        &cfg),
	                 0);
	assert_false(cfg->policies[0].has_jwt);
	assert_true(cfg->policies[0].has_authz);
	assert_false(cfg->policies[0].authz.default_allow);
	assert_false(cfg->policies[0].authz.needs_claims);
	config_free(cfg);
}

static void test_err_authorization(void **state)
{
	JG_UNUSED(state);
	t_fails(AUTHZ_HEAD "    authorization:\n"
	                   "      rules:\n"
	                   "        - action: Allow\n"
	                   "          principal: {jwt: {provider: nope, claims: [{name: a, values: [b]}]}}\n",
	        1, 11, 39,
	        "unknown provider \"nope\" (not a jwt provider of this policy) "
	        "(at securityPolicies[0].authorization.rules[0].principal.jwt)");
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{action: Allow, principal: {}}]}\n", 1, 8, 56,
	        "empty principal: at least one of clientCIDRs, jwt or headers "
	        "(at securityPolicies[0].authorization.rules[0].principal)");
	/* An empty list in a principal would leave the rule without that condition (an Allow for
	 * everyone): refused like an empty principal. */
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{action: Allow, principal: {clientCIDRs: []}}]}\n", 1,
	        8, 70,
	        "list must not be empty "
	        "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs)");
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{action: Allow, principal: {headers: []}}]}\n", 1, 8,
	        66,
	        "list must not be empty (at securityPolicies[0].authorization.rules[0].principal.headers)");
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{action: Allow, principal: {jwt: {provider: example, "
	                   "scopes: [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q]}}}]}\n",
	        1, 8, 90,
	        "17 items: at most 16 (at securityPolicies[0].authorization.rules[0].principal.jwt.scopes)");
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{action: Allow}]}\n", 1, 8, 29,
	        "missing required key \"principal\" (at securityPolicies[0].authorization.rules[0])");
	t_fails(AUTHZ_HEAD "    authorization: {rules: [{principal: {clientCIDRs: [10.0.0.0/8]}}]}\n", 1, 8,
	        29, "missing required key \"action\" (at securityPolicies[0].authorization.rules[0])");
	t_fails(AUTHZ_HEAD
	        "    authorization:\n"
	        "      rules:\n"
	        "        - action: Deny\n"
	        "          principal:\n"
	        "            clientCIDRs: [10.0.0.0/33, 10.0.0/8, 10.0.0.1, \"::/129\", 1.2.3.4/08]\n",
	        5, 12, 27,
	        "\"10.0.0.0/33\" is not a CIDR range (prefix length 0 to 32) "
	        "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs[0])");
	t_expect(12, 40,
	         "\"10.0.0/8\" is not a CIDR range (bad address) "
	         "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs[1])");
	t_expect(12, 50,
	         "\"10.0.0.1\" is not a CIDR range (address/prefix length) "
	         "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs[2])");
	t_expect(12, 60,
	         "\"::/129\" is not a CIDR range (prefix length 0 to 128) "
	         "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs[3])");
	t_expect(12, 70,
	         "\"1.2.3.4/08\" is not a CIDR range (prefix length 0 to 32) "
	         "(at securityPolicies[0].authorization.rules[0].principal.clientCIDRs[4])");
	t_fails(AUTHZ_HEAD "    authorization:\n"
	                   "      rules:\n"
	                   "        - action: Allow\n"
	                   "          principal: {jwt: {provider: example}}\n"
	                   "          operation: {methods: [GET, get, PURGE]}\n",
	        3, 11, 28,
	        "a jwt principal needs \"claims\" or \"scopes\" "
	        "(at securityPolicies[0].authorization.rules[0].principal.jwt)");
	t_expect(12, 38,
	         "invalid method \"get\" (expected one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, "
	         "TRACE, PATCH) (at securityPolicies[0].authorization.rules[0].operation.methods[1])");
	t_expect(12, 43,
	         "invalid method \"PURGE\" (expected one of GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, "
	         "TRACE, PATCH) (at securityPolicies[0].authorization.rules[0].operation.methods[2])");
	t_fails(AUTHZ_HEAD "    authorization:\n"
	                   "      defaultAction: allow\n"
	                   "      rules:\n"
	                   "        - {name: a, action: Allow, principal: {jwt: {provider: example, claims: "
	                   "[{name: \"x..y\", values: [z]}, {name: w, valueType: Number, values: []}]}}}\n"
	                   "        - {name: a, action: Allow, principal: {headers: [{name: \"bad name\", "
	                   "values: [v]}]}}\n",
	        6, 9, 22,
	        "invalid value \"allow\" (expected one of Allow, Deny) "
	        "(at securityPolicies[0].authorization.defaultAction)");
	t_expect(11, 89,
	         "claim name \"x..y\" has an empty segment "
	         "(at securityPolicies[0].authorization.rules[0].principal.jwt.claims[0])");
	t_expect(11, 132,
	         "invalid value \"Number\" (expected one of String, StringArray) "
	         "(at securityPolicies[0].authorization.rules[0].principal.jwt.claims[1].valueType)");
	t_expect(11, 148,
	         "list must not be empty "
	         "(at securityPolicies[0].authorization.rules[0].principal.jwt.claims[1].values)");
	t_expect(12, 18, "duplicate rule name \"a\" (at securityPolicies[0].authorization.rules[1])");
	t_expect(12, 65,
	         "\"bad name\" is not a valid HTTP token (RFC 9110 section 5.6.2) "
	         "(at securityPolicies[0].authorization.rules[1].principal.headers[0].name)");
	/* neither jwt nor authorization: nothing to enforce */
	t_fails(MINI_HEAD "httpRoutes: [{name: r, rules: [{backendRefs: [{name: b}]}]}]\n"
	                  "securityPolicies: [{name: p, targetRef: {kind: HTTPRoute, name: r}}]\n",
	        1, 4, 20, "missing required key \"jwt\" (or \"authorization\") (at securityPolicies[0])");
}

static void test_err_yaml_syntax(void **state)
{
	JG_UNUSED(state);
	t_fails("listeners:\n  - name: a\n   address: b\n", 1, 3, 4,
	        "YAML syntax error: did not find expected '-' indicator");
}

static void test_all_errors_reported_in_one_run(void **state)
{
	JG_UNUSED(state);
	t_fails("workers: x\n"
	        "listeners: [{name: l, address: \"example.com:80\"}]\n"
	        "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 0}}]}]\n"
	        "httpRoutes: [{name: r, rules: [{backendRefs: [{name: c}]}], extra: 1}]\n"
	        "limits: {idleTimeout: 1d}\n",
	        6, 1, 10, "expected a number or \"auto\", found \"x\" (at workers)");
	t_expect(2, 32, "invalid listener address \"example.com:80\"");
	t_expect(3, 66, "0 out of range 1..65535 (at backends[0].endpoints[0].ip.port)");
	t_expect(4, 61, "unknown key \"extra\" (at httpRoutes[0])");
	t_expect(4, 54, "backendRefs names no backend \"c\"");
	t_expect(5, 23, "invalid duration \"1d\"");
}

static void test_alias_bomb_is_bounded(void **state)
{
	JG_UNUSED(state);
	t_fails(MINI_HEAD
	        "x0: &a [{name: b}, {name: b}, {name: b}, {name: b}, {name: b}, {name: b}, {name: b}, {name: "
	        "b}]\n"
	        "x1: &r [{backendRefs: *a}, {backendRefs: *a}, {backendRefs: *a}, {backendRefs: *a}, "
	        "{backendRefs: *a}, {backendRefs: *a}, {backendRefs: *a}, {backendRefs: *a}]\n"
	        "x2: &s [{name: r, rules: *r}, {name: s, rules: *r}]\n",
	        3, 3, 1, "unknown key \"x0\"");
	/* a wide alias fan-out through the schema stops at the visit budget instead of taking minutes */
	{
		char y[8192];
		int i;

		snprintf(y, sizeof(y), "%s", MINI_HEAD "a: &m [");
		for (i = 0; i < 60; i++)
			strcat(y, i ? ", {path: {value: /x}}" : "{path: {value: /x}}");
		strcat(y, "]\nb: &r [");
		for (i = 0; i < 60; i++)
			strcat(y, i ? ", {matches: *m, backendRefs: [{name: b}]}"
			            : "{matches: *m, backendRefs: [{name: b}]}");
		strcat(y, "]\nc: &h [");
		for (i = 0; i < 60; i++)
			strcat(y, i ? ", {name: r, rules: *r}" : "{name: r, rules: *r}");
		strcat(y, "]\nhttpRoutes: *h\n");
		{
			struct config *cfg = NULL;
			int rc = t_load(y, &cfg);

			assert_null(cfg);
			assert_true(rc > 0);
			assert_non_null(strstr(t_errbuf, "configuration too large"));
		}
	}
}

/* ---- parsers ---- */

static void test_parse_duration(void **state)
{
	uint64_t ms = 7;

	JG_UNUSED(state);
	assert_int_equal(config_parse_duration_ms("500ms", &ms), 0);
	assert_int_equal(ms, 500);
	assert_int_equal(config_parse_duration_ms("1s", &ms), 0);
	assert_int_equal(ms, 1000);
	assert_int_equal(config_parse_duration_ms("5m", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(config_parse_duration_ms("1h", &ms), 0);
	assert_int_equal(ms, 3600000);
	assert_int_equal(config_parse_duration_ms("1h30m", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(config_parse_duration_ms("1h2m3s4ms", &ms), 0);
	assert_int_equal(ms, 3723004);
	assert_int_equal(config_parse_duration_ms("300s", &ms), 0);
	assert_int_equal(ms, 300000);
	assert_int_equal(config_parse_duration_ms("0s", &ms), 0); /* zero is a valid duration */
	assert_int_equal(ms, 0);
	ms = 7;
	assert_int_equal(config_parse_duration_ms("", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms("10", &ms), JG_ERR_INVAL); /* unit required */
	assert_int_equal(config_parse_duration_ms("1d", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms("1s1h", &ms), JG_ERR_INVAL); /* units in decreasing order */
	assert_int_equal(config_parse_duration_ms("1s1s", &ms), JG_ERR_INVAL); /* each unit once */
	assert_int_equal(config_parse_duration_ms("-1s", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms("1.5s", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms(" 1s", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms("1s ", &ms), JG_ERR_INVAL);
	assert_int_equal(config_parse_duration_ms("99999999999999999999s", &ms), JG_ERR_LIMIT);
	assert_int_equal(config_parse_duration_ms("9999999999999999h", &ms), JG_ERR_LIMIT);
	assert_int_equal(ms, 7); /* untouched on failure */
}

static void test_parse_size(void **state)
{
	uint64_t v = 7;

	JG_UNUSED(state);
	assert_int_equal(config_parse_size("123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(config_parse_size("64KiB", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(config_parse_size("1MiB", &v), 0);
	assert_int_equal(v, 1048576);
	assert_int_equal(config_parse_size("2Gi", &v), 0);
	assert_int_equal(v, 2147483648ull);
	assert_int_equal(config_parse_size("0", &v), 0);
	assert_int_equal(v, 0);
	v = 7;
	assert_int_equal(config_parse_size("1MB", &v), JG_ERR_INVAL);
	assert_int_equal(config_parse_size("KiB", &v), JG_ERR_INVAL);
	assert_int_equal(config_parse_size("-1", &v), JG_ERR_INVAL);
	assert_int_equal(config_parse_size("1 KiB", &v), JG_ERR_INVAL);
	assert_int_equal(config_parse_size("18446744073709551616", &v), JG_ERR_LIMIT);
	assert_int_equal(config_parse_size("17179869184GiB", &v), JG_ERR_LIMIT);
	assert_int_equal(v, 7);
}

static void test_parse_address(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char ip[64];
	uint16_t port;

	JG_UNUSED(state);
	assert_int_equal(config_parse_address("0.0.0.0:8080", &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_string_equal(t_ip(&ss, ip, &port), "0.0.0.0");
	assert_int_equal(port, 8080);
	assert_int_equal(config_parse_address("[::1]:8080", &ss, &len), 0);
	assert_int_equal(len, sizeof(struct sockaddr_in6));
	assert_string_equal(t_ip(&ss, ip, &port), "::1");
	assert_int_equal(port, 8080);
	assert_int_equal(config_parse_address("127.0.0.1:0", &ss, &len), 0); /* kernel-chosen port */
	assert_int_equal(config_parse_address("127.0.0.1:65535", &ss, &len), 0);
	assert_int_equal(config_parse_address("localhost:80", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("example.com:80", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("::1:8080", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("[::1]8080", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("[::1]:", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("127.0.0.1", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("127.0.0.1:65536", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("127.0.0.1:-1", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("127.0.0.1:80x", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("256.0.0.1:80", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address(":80", &ss, &len), JG_ERR_INVAL);
	assert_int_equal(config_parse_address("[127.0.0.1]:80", &ss, &len), JG_ERR_INVAL);
}

static void test_unreadable_file(void **state)
{
	struct config *cfg = (struct config *)1;
	char p[256];

	JG_UNUSED(state);
	snprintf(p, sizeof(p), "%s/none.yaml", t_dir);
	assert_int_equal(t_load_path(p, &cfg), JG_ERR_IO);
	assert_null(cfg);
	assert_non_null(strstr(t_errbuf, "cannot open"));
}

#define HC_HEAD "listeners: [{name: l, address: 127.0.0.1:8080}]\n"

/* healthCheck.active: Envoy Gateway's defaults, every field read, GRPC on an H2C backend. */
static void test_active_health_check(void **state)
{
	struct config *cfg = NULL;
	const struct config_active_hc *h;

	JG_UNUSED(state);
	if (t_load(HC_HEAD "backends:\n"
	                   "  - name: d\n"
	                   "    healthCheck: {active: {type: HTTP, http: {path: /healthz}}}\n"
	                   "    endpoints: [{ip: {address: 127.0.0.1, port: 80}}]\n"
	                   "  - name: f\n"
	                   "    healthCheck:\n"
	                   "      panicThreshold: 0\n"
	                   "      active: {type: HTTP, timeout: 250ms, interval: 2s, unhealthyThreshold: 5,\n"
	                   "               healthyThreshold: 2, http: {path: \"/ready?x=1\", method: HEAD,\n"
	                   "               expectedStatuses: [200, 204, 599]}}\n"
	                   "    endpoints: [{ip: {address: 127.0.0.1, port: 81}}]\n"
	                   "  - name: g\n"
	                   "    protocol: H2C\n"
	                   "    healthCheck: {active: {type: GRPC, grpc: {service: pkg.Svc}}}\n"
	                   "    endpoints: [{ip: {address: 127.0.0.1, port: 82}}]\n"
	                   "  - name: n\n"
	                   "    endpoints: [{ip: {address: 127.0.0.1, port: 83}}]\n",
	           &cfg) != 0)
		fail_msg("%s", t_errbuf);
	h = &cfg->backends[0].active_hc;
	assert_int_equal(h->type, CONFIG_HC_HTTP);
	assert_int_equal(h->timeout_ms, 1000); /* Envoy Gateway's defaults */
	assert_int_equal(h->interval_ms, 3000);
	assert_int_equal(h->unhealthy_threshold, 3);
	assert_int_equal(h->healthy_threshold, 1);
	assert_string_equal(h->http_path, "/healthz");
	assert_string_equal(h->http_method, "GET");
	assert_int_equal(h->n_expected_statuses, 1);
	assert_int_equal(h->expected_statuses[0], 200);
	h = &cfg->backends[1].active_hc;
	assert_int_equal(cfg->backends[1].panic_threshold, 0);
	assert_int_equal(h->timeout_ms, 250);
	assert_int_equal(h->interval_ms, 2000);
	assert_int_equal(h->unhealthy_threshold, 5);
	assert_int_equal(h->healthy_threshold, 2);
	assert_string_equal(h->http_path, "/ready?x=1");
	assert_string_equal(h->http_method, "HEAD");
	assert_int_equal(h->n_expected_statuses, 3);
	assert_int_equal(h->expected_statuses[1], 204);
	assert_int_equal(h->expected_statuses[2], 599);
	h = &cfg->backends[2].active_hc;
	assert_int_equal(h->type, CONFIG_HC_GRPC);
	assert_string_equal(h->grpc_service, "pkg.Svc");
	assert_int_equal(h->interval_ms, 3000);
	assert_int_equal(cfg->backends[3].active_hc.type, CONFIG_HC_NONE);
	assert_int_equal(cfg->backends[3].panic_threshold, 50);
	config_free(cfg);
}

#define HC_BE "backends: [{name: b, endpoints: [{ip: {address: 127.0.0.1, port: 80}}], healthCheck: "

static void test_err_active_health_check(void **state)
{
	JG_UNUSED(state);
	t_fails(HC_HEAD HC_BE "{active: {http: {path: /h}}}}]\n", 1, 2, 95,
	        "missing required key \"type\" (at backends[0].healthCheck.active)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP}}}]\n", 1, 2, 95,
	        "health check type HTTP needs an \"http\" block (at backends[0].healthCheck.active)");
	t_fails(HC_HEAD HC_BE "{active: {type: TCP}}}]\n", 1, 2, 102,
	        "health check type TCP is not supported (use HTTP or GRPC) (at "
	        "backends[0].healthCheck.active)");
	t_fails(HC_HEAD HC_BE "{active: {type: GRPC}}}]\n", 1, 2, 102,
	        "health check type GRPC needs an HTTP/2 backend (protocol H2C or H2) (at "
	        "backends[0].healthCheck.active)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: /h}, grpc: {}}}}]\n", 1, 2, 132,
	        "\"grpc\" is only for health check type GRPC (at backends[0].healthCheck.active.grpc)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: h}}}}]\n", 1, 2, 121,
	        "path must start with \"/\" and be at most 1024 bytes (at "
	        "backends[0].healthCheck.active.http.path)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: \"/a b\"}}}}]\n", 1, 2, 121,
	        "path has a byte that cannot go on a request line (at "
	        "backends[0].healthCheck.active.http.path)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: /h, method: CONNECT}}}}]\n", 1, 2, 133,
	        "invalid value \"CONNECT\" (expected one of GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, "
	        "PATCH) (at backends[0].healthCheck.active.http.method)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: /h, expectedStatuses: [200, 600]}}}}]\n", 1,
	        2, 149,
	        "600 out of range 100..599 (at backends[0].healthCheck.active.http.expectedStatuses[1])");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, unhealthyThreshold: 0, http: {path: /h}}}}]\n", 1, 2,
	        128, "0 out of range 1..4294967295 (at backends[0].healthCheck.active.unhealthyThreshold)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, interval: 0s, http: {path: /h}}}}]\n", 1, 2, 118,
	        "duration \"0s\" is below the minimum of 1ms (at backends[0].healthCheck.active.interval)");
	t_fails(HC_HEAD HC_BE "{active: {type: HTTP, http: {path: /h, expectedResponse: {}}}}}]\n", 1, 2, 143,
	        "expectedResponse (matching the body) is not supported (at "
	        "backends[0].healthCheck.active.http.expectedResponse)");
}

#define T(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_seed_scenario_from_config_md),
	        T(test_remote_scenario_from_config_md),
	        T(test_shipped_configs_load),
	        T(test_full_options_and_normalisation),
	        T(test_gateway_policy_all_listeners),
	        T(test_client_traffic_policies),
	        T(test_policy_target_refs),
	        T(test_remote_defaults),
	        T(test_remote_http_uri),
	        T(test_err_unknown_key),
	        T(test_err_wrong_types),
	        T(test_err_missing_required),
	        T(test_err_duplicates),
	        T(test_err_dangling_references),
	        T(test_err_impossible_combinations),
	        T(test_err_headers_and_wire_values),
	        T(test_err_jwks_files),
	        T(test_authorization_compiled),
	        T(test_err_authorization),
	        T(test_err_yaml_syntax),
	        T(test_all_errors_reported_in_one_run),
	        T(test_alias_bomb_is_bounded),
	        T(test_parse_duration),
	        T(test_parse_size),
	        T(test_parse_address),
	        T(test_unreadable_file),
	        T(test_active_health_check),
	        T(test_err_active_health_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
