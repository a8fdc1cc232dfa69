/* test_router.c: router_match (host selection, Gateway API precedence, gRPC) and router_pick_backend.
 * Configurations are built by hand (no config loader), regexes compiled as config.h describes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "config/config.h"
#include "core/request.h"
#include "route/router.h"

#define T_MAX_ROUTES  16
#define T_MAX_RULES   8
#define T_MAX_MATCHES 4
#define T_MAX_ITEMS   4 /* headers / query params / backend refs per match or rule */

/* ---- configuration builder ---- */

static struct config *t_config_new(void)
{
	struct config *cfg = calloc(1, sizeof(*cfg));

	assert_non_null(cfg);
	cfg->routes = calloc(T_MAX_ROUTES, sizeof(*cfg->routes));
	assert_non_null(cfg->routes);
	return cfg;
}

/* hostnames: NULL-terminated list, or NULL for none. Routes must be added httpRoutes first. */
static struct config_route *t_route(struct config *cfg, enum config_route_kind kind, const char **hostnames)
{
	struct config_route *route;

	assert_true(cfg->n_routes < T_MAX_ROUTES);
	route = &cfg->routes[cfg->n_routes];
	route->index = (int)cfg->n_routes++;
	route->kind = kind;
	route->rules = calloc(T_MAX_RULES, sizeof(*route->rules));
	assert_non_null(route->rules);
	while (hostnames != NULL && hostnames[route->n_hostnames] != NULL)
		route->n_hostnames++;
	route->hostnames = (char **)hostnames;
	return route;
}

static struct config_rule *t_rule(struct config_route *route)
{
	struct config_rule *rule;

	assert_true(route->n_rules < T_MAX_RULES);
	rule = &route->rules[route->n_rules];
	rule->index = (int)route->n_rules++;
	rule->route = route;
	rule->matches = calloc(T_MAX_MATCHES, sizeof(*rule->matches));
	rule->backend_refs = calloc(T_MAX_ITEMS, sizeof(*rule->backend_refs));
	assert_non_null(rule->matches);
	assert_non_null(rule->backend_refs);
	return rule;
}

static struct config_match *t_match(struct config_rule *rule)
{
	struct config_match *m;

	assert_true(rule->n_matches < T_MAX_MATCHES);
	m = &rule->matches[rule->n_matches++];
	m->headers = calloc(T_MAX_ITEMS, sizeof(*m->headers));
	m->query_params = calloc(T_MAX_ITEMS, sizeof(*m->query_params));
	assert_non_null(m->headers);
	assert_non_null(m->query_params);
	return m;
}

/* Compiles pattern the way the config loader does: REG_EXTENDED|REG_NOSUB, wrapped in ^(...)$. */
static void t_regcomp(regex_t *re, const char *pattern)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "^(%s)$", pattern);
	assert_int_equal(regcomp(re, buf, REG_EXTENDED | REG_NOSUB), 0);
}

static void t_string_match(struct config_string_match *sm, enum config_match_type type, const char *name,
                           const char *value)
{
	sm->type = type;
	sm->name = (char *)name;
	sm->value = (char *)value;
	sm->value_len = strlen(value);
	if (type == CONFIG_MATCH_REGEX) {
		t_regcomp(&sm->re, value);
		sm->has_re = true;
	}
}

static struct config_match *t_path(struct config_rule *rule, enum config_match_type type, const char *value)
{
	struct config_match *m = t_match(rule);

	m->has_path = true;
	t_string_match(&m->path, type, NULL, value);
	return m;
}

static void t_header(struct config_match *m, enum config_match_type type, const char *name, const char *value)
{
	assert_true(m->n_headers < T_MAX_ITEMS);
	t_string_match(&m->headers[m->n_headers++], type, name, value);
}

static void t_query(struct config_match *m, enum config_match_type type, const char *name, const char *value)
{
	assert_true(m->n_query_params < T_MAX_ITEMS);
	t_string_match(&m->query_params[m->n_query_params++], type, name, value);
}

static void t_grpc(struct config_match *m, enum config_match_type type, const char *service,
                   const char *method)
{
	m->has_grpc_method = true;
	m->grpc_type = type;
	m->grpc_service = (char *)service;
	m->grpc_method = (char *)method;
	if (type == CONFIG_MATCH_REGEX && service != NULL) {
		t_regcomp(&m->grpc_service_re, service);
		m->has_grpc_service_re = true;
	}
	if (type == CONFIG_MATCH_REGEX && method != NULL) {
		t_regcomp(&m->grpc_method_re, method);
		m->has_grpc_method_re = true;
	}
}

static void t_string_match_free(struct config_string_match *sm)
{
	if (sm->has_re)
		regfree(&sm->re);
}

static void t_config_free(struct config *cfg)
{
	size_t i, j, k, l;

	for (i = 0; i < cfg->n_routes; i++) {
		struct config_route *route = &cfg->routes[i];

		for (j = 0; j < route->n_rules; j++) {
			struct config_rule *rule = &route->rules[j];

			for (k = 0; k < rule->n_matches; k++) {
				struct config_match *m = &rule->matches[k];

				t_string_match_free(&m->path);
				for (l = 0; l < m->n_headers; l++)
					t_string_match_free(&m->headers[l]);
				for (l = 0; l < m->n_query_params; l++)
					t_string_match_free(&m->query_params[l]);
				if (m->has_grpc_service_re)
					regfree(&m->grpc_service_re);
				if (m->has_grpc_method_re)
					regfree(&m->grpc_method_re);
				free(m->headers);
				free(m->query_params);
			}
			free(rule->matches);
			free(rule->backend_refs);
		}
		free(route->rules);
	}
	free(cfg->routes);
	free(cfg);
}

/* ---- requests ---- */

struct t_ctx {
	struct arena arena;
	struct request req;
};

static int t_setup(void **state)
{
	struct t_ctx *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	arena_init(&c->arena, 4096, 1 << 20);
	*state = c;
	return 0;
}

static int t_teardown(void **state)
{
	struct t_ctx *c = *state;

	arena_free(&c->arena);
	free(c);
	return 0;
}

/* Fills a request directly: host as routing sees it (lower-case, no port), target split at '?'.
 * The authority is set to host + ":8443" so a router comparing the authority would fail. */
static struct request *t_req(struct t_ctx *c, const char *method, const char *host, const char *target)
{
	struct request *req = &c->req;
	const char *q = strchr(target, '?');
	char authority[256];

	request_init(req, &c->arena);
	req->method = arena_strndup(&c->arena, method, strlen(method));
	req->method_len = strlen(method);
	req->host = arena_strndup(&c->arena, host, strlen(host));
	req->host_len = strlen(host);
	snprintf(authority, sizeof(authority), "%s:8443", host);
	req->authority = arena_strndup(&c->arena, authority, strlen(authority));
	req->authority_len = strlen(authority);
	req->target = arena_strndup(&c->arena, target, strlen(target));
	req->target_len = strlen(target);
	req->path_len = q != NULL ? (size_t)(q - target) : strlen(target);
	req->path = arena_strndup(&c->arena, target, req->path_len);
	if (q != NULL) {
		req->query = arena_strndup(&c->arena, q + 1, strlen(q + 1));
		req->query_len = strlen(q + 1);
	}
	return req;
}

static void t_hdr(struct t_ctx *c, const char *name, const char *value)
{
	assert_int_equal(request_header_add(&c->req, name, strlen(name), value, strlen(value)), 0);
}

static const struct config_rule *t_route_match(struct config *cfg, struct t_ctx *c, const char *method,
                                               const char *host, const char *target)
{
	struct router *r = router_new(cfg);
	const struct config_rule *rule;

	t_req(c, method, host, target);
	rule = router_match(r, &c->req);
	router_free(r);
	return rule;
}

/* ---- tests ---- */

static const char *host_www[] = {"www.example.com", NULL};

/* The task's seed scenario: two routes on www.example.com, /foo and /bar. */
static void test_seed_scenario(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *foo, *bar;
	struct router *r;

	foo = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, host_www));
	t_path(foo, CONFIG_MATCH_PATH_PREFIX, "/foo");
	bar = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, host_www));
	t_path(bar, CONFIG_MATCH_PATH_PREFIX, "/bar");
	r = router_new(cfg);

	assert_ptr_equal(router_match(r, t_req(c, "GET", "www.example.com", "/foo")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "www.example.com", "/foo/x?a=b")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "www.example.com", "/bar")), bar);
	assert_ptr_equal(router_match(r, t_req(c, "POST", "www.example.com", "/bar/baz")), bar);
	assert_null(router_match(r, t_req(c, "GET", "www.example.com", "/baz")));
	assert_null(router_match(r, t_req(c, "GET", "www.example.com", "/")));
	assert_null(router_match(r, t_req(c, "GET", "other.example.com", "/foo")));
	assert_null(router_match(r, t_req(c, "GET", "", "/foo")));

	router_free(r);
	t_config_free(cfg);
}

static void test_prefix_whole_segments(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *foo = t_rule(route), *slash = t_rule(route);
	struct router *r;

	t_path(foo, CONFIG_MATCH_PATH_PREFIX, "/foo/"); /* trailing '/' is the same prefix */
	t_path(slash, CONFIG_MATCH_PATH_PREFIX, "/");
	r = router_new(cfg);

	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/foo")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/foo/")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/foo/x/y")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/foo?q=1")), foo);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/foobar")), slash);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/fo")), slash);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/")), slash);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/anything/else")), slash);

	router_free(r);
	t_config_free(cfg);
}

static void test_longest_prefix_wins(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *api, *v1, *v1b;

	/* Shorter prefix first in the file, so order of appearance would give the wrong answer. */
	api = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));
	t_path(api, CONFIG_MATCH_PATH_PREFIX, "/api");
	v1 = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));
	t_path(v1, CONFIG_MATCH_PATH_PREFIX, "/api/v1");
	v1b = t_rule(&cfg->routes[0]);
	t_path(v1b, CONFIG_MATCH_PATH_PREFIX, "/api/v1/b");

	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/api/v1/x"), v1);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/api/v1"), v1);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/api/v1/b/c"), v1b);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/api/v1b"), api);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/api/v2"), api);
	assert_null(t_route_match(cfg, c, "GET", "h", "/apix"));
	t_config_free(cfg);
}

static void test_exact_beats_prefix(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *prefix = t_rule(route), *exact = t_rule(route);

	t_path(prefix, CONFIG_MATCH_PATH_PREFIX, "/login");
	t_path(exact, CONFIG_MATCH_EXACT, "/login");

	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/login"), exact);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/login?next=/"), exact);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/login/"), prefix);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/login/x"), prefix);
	t_config_free(cfg);
}

static void test_exact_path_only(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *exact = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));

	t_path(exact, CONFIG_MATCH_EXACT, "/a/b/");
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/a/b/"), exact);
	assert_null(t_route_match(cfg, c, "GET", "h", "/a/b"));
	assert_null(t_route_match(cfg, c, "GET", "h", "/a/b/c"));
	assert_null(t_route_match(cfg, c, "GET", "h", "/a/b/x"));
	t_config_free(cfg);
}

static void test_regex_path(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *all = t_rule(route), *re = t_rule(route), *prefix = t_rule(route);

	t_path(all, CONFIG_MATCH_PATH_PREFIX, "/");
	t_path(re, CONFIG_MATCH_REGEX, "/users/[0-9]+");
	t_path(prefix, CONFIG_MATCH_PATH_PREFIX, "/users/42");

	/* regex beats the catch-all, and is anchored to the whole path (not the query) */
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/7"), re);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/7?x=1"), re);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/7/x"), all);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/abc"), all);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/x/users/7"), all);
	/* a regex beats any PathPrefix (Envoy Gateway's order); the prefix serves what the regex misses */
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/42"), re);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/users/42/x"), prefix);
	t_config_free(cfg);
}

static void test_method(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *any = t_rule(route), *post = t_rule(route), *hdrs = t_rule(route);
	struct config_match *m;

	t_path(any, CONFIG_MATCH_PATH_PREFIX, "/items");
	m = t_path(post, CONFIG_MATCH_PATH_PREFIX, "/items");
	m->method = "POST";
	/* more headers, but a method match ranks first */
	m = t_path(hdrs, CONFIG_MATCH_PATH_PREFIX, "/items");
	t_header(m, CONFIG_MATCH_EXACT, "x-a", "1");

	assert_ptr_equal(t_route_match(cfg, c, "POST", "h", "/items"), post);
	assert_ptr_equal(t_route_match(cfg, c, "GET", "h", "/items"), any);
	assert_ptr_equal(t_route_match(cfg, c, "post", "h", "/items"), any); /* case-sensitive */
	assert_ptr_equal(t_route_match(cfg, c, "POSTX", "h", "/items"), any);

	t_req(c, "POST", "h", "/items");
	t_hdr(c, "x-a", "1");
	{
		struct router *r = router_new(cfg);

		assert_ptr_equal(router_match(r, &c->req), post);
		t_req(c, "GET", "h", "/items");
		t_hdr(c, "x-a", "1");
		assert_ptr_equal(router_match(r, &c->req), hdrs);
		router_free(r);
	}
	t_config_free(cfg);
}

static void test_headers(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *one = t_rule(route), *two = t_rule(route), *re = t_rule(route);
	struct config_match *m;
	struct router *r;

	m = t_path(one, CONFIG_MATCH_PATH_PREFIX, "/");
	t_header(m, CONFIG_MATCH_EXACT, "X-Version", "v1"); /* mixed case on purpose */
	m = t_path(two, CONFIG_MATCH_PATH_PREFIX, "/");
	t_header(m, CONFIG_MATCH_EXACT, "x-version", "v1");
	t_header(m, CONFIG_MATCH_EXACT, "x-canary", "true");
	m = t_path(re, CONFIG_MATCH_PATH_PREFIX, "/");
	t_header(m, CONFIG_MATCH_REGEX, "user-agent", "curl/[0-9.]+");
	r = router_new(cfg);

	t_req(c, "GET", "h", "/");
	t_hdr(c, "X-VERSION", "v1");
	assert_ptr_equal(router_match(r, &c->req), one);

	/* two header matches beat one, though the one-header rule comes first */
	t_hdr(c, "X-Canary", "true");
	assert_ptr_equal(router_match(r, &c->req), two);

	/* values are case-sensitive and exact */
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-version", "V1");
	assert_null(router_match(r, &c->req));
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-version", "v1 ");
	assert_null(router_match(r, &c->req));

	/* regex, anchored to the whole value */
	t_req(c, "GET", "h", "/");
	t_hdr(c, "user-agent", "curl/8.1.2");
	assert_ptr_equal(router_match(r, &c->req), re);
	t_req(c, "GET", "h", "/");
	t_hdr(c, "user-agent", "curl/8.1.2 (x)");
	assert_null(router_match(r, &c->req));

	/* a removed header no longer matches */
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-version", "v1");
	c->req.headers[0].removed = true;
	assert_null(router_match(r, &c->req));

	/* repeated headers are tested joined with ',' (Envoy) */
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-version", "v1");
	t_hdr(c, "x-version", "v2");
	assert_null(router_match(r, &c->req));

	router_free(r);
	t_config_free(cfg);
}

static void test_headers_joined(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *rule = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));
	struct config_match *m = t_match(rule);
	struct router *r;

	t_header(m, CONFIG_MATCH_EXACT, "x-tag", "a,b");
	r = router_new(cfg);
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-tag", "a");
	t_hdr(c, "other", "z");
	t_hdr(c, "x-tag", "b");
	assert_ptr_equal(router_match(r, &c->req), rule);
	t_req(c, "GET", "h", "/");
	t_hdr(c, "x-tag", "a");
	assert_null(router_match(r, &c->req));
	router_free(r);
	t_config_free(cfg);
}

static void test_query_params(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *one = t_rule(route), *two = t_rule(route), *re = t_rule(route),
	                   *hdr = t_rule(route);
	struct config_match *m;
	struct router *r;

	m = t_path(one, CONFIG_MATCH_PATH_PREFIX, "/q");
	t_query(m, CONFIG_MATCH_EXACT, "debug", "a%20b");
	m = t_path(two, CONFIG_MATCH_PATH_PREFIX, "/q");
	t_query(m, CONFIG_MATCH_EXACT, "debug", "a%20b");
	t_query(m, CONFIG_MATCH_EXACT, "v", "2");
	m = t_path(re, CONFIG_MATCH_PATH_PREFIX, "/q");
	t_query(m, CONFIG_MATCH_REGEX, "id", "[0-9]{3}");
	/* one header outranks two query parameters */
	m = t_path(hdr, CONFIG_MATCH_PATH_PREFIX, "/q");
	t_header(m, CONFIG_MATCH_EXACT, "x-h", "1");
	r = router_new(cfg);

	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/q?debug=a%20b")), one);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/q?x=1&debug=a%20b&y")), one);
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?debug=a b")));   /* raw, not decoded */
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?Debug=a%20b"))); /* name is exact */
	assert_null(router_match(r, t_req(c, "GET", "h", "/q")));
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/q?v=2&debug=a%20b")), two);
	/* first occurrence of a name counts */
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?debug=x&debug=a%20b")));

	/* regex on a value in the middle of the query string: anchored at both ends of the value */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/q?id=123&z=9")), re);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "h", "/q?a=1&id=123")), re);
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?id=1234&z=9")));
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?id=12&z=9")));
	assert_null(router_match(r, t_req(c, "GET", "h", "/q?xid=123")));

	t_req(c, "GET", "h", "/q?debug=a%20b&v=2");
	t_hdr(c, "x-h", "1");
	assert_ptr_equal(router_match(r, &c->req), hdr);

	router_free(r);
	t_config_free(cfg);
}

static void test_host_tiers(void **state)
{
	static const char *h_wild[] = {"*.example.com", NULL};
	static const char *h_wild_long[] = {"*.api.example.com", NULL};
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *any, *wild, *wild_long, *exact;
	struct router *r;

	/* catch-all first, exact last: the tier, not the order, decides */
	any = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));
	wild = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, h_wild));
	wild_long = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, h_wild_long));
	exact = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, host_www));
	t_path(exact, CONFIG_MATCH_PATH_PREFIX, "/only");
	r = router_new(cfg);

	assert_ptr_equal(router_match(r, t_req(c, "GET", "www.example.com", "/only/x")), exact);
	/* Envoy: the exact virtual host answers 404, no fall-through to the wildcard or catch-all */
	assert_null(router_match(r, t_req(c, "GET", "www.example.com", "/other")));
	assert_ptr_equal(router_match(r, t_req(c, "GET", "a.example.com", "/other")), wild);
	/* one or more labels */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "a.b.example.com", "/")), wild);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "x.www.example.com", "/")), wild);
	/* longest wildcard suffix */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "x.api.example.com", "/")), wild_long);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "x.y.api.example.com", "/")), wild_long);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "api.example.com", "/")), wild);
	/* the wildcard does not match the bare domain nor an unrelated suffix */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "example.com", "/")), any);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "aexample.com", "/")), any);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "example.com.evil.org", "/")), any);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "", "/")), any);
	router_free(r);
	t_config_free(cfg);
}

static void test_host_no_catch_all(void **state)
{
	static const char *h_wild[] = {"*.example.com", NULL};
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *wild = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, h_wild));
	struct router *r = router_new(cfg);

	assert_ptr_equal(router_match(r, t_req(c, "GET", "a.example.com", "/")), wild);
	assert_null(router_match(r, t_req(c, "GET", "example.com", "/")));
	assert_null(router_match(r, t_req(c, "GET", ".example.com", "/")));
	assert_null(router_match(r, t_req(c, "GET", "a.example.org", "/")));
	router_free(r);
	t_config_free(cfg);
}

static void test_host_not_authority(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *rule = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, host_www));
	struct router *r = router_new(cfg);

	/* t_req sets authority "www.example.com:8443": the port must not matter */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "www.example.com", "/")), rule);
	assert_string_equal(c->req.authority, "www.example.com:8443");

	/* the authority says www.example.com, but routing compares req->host */
	t_req(c, "GET", "evil.example.org", "/");
	c->req.authority = "www.example.com";
	c->req.authority_len = strlen("www.example.com");
	assert_null(router_match(r, &c->req));

	router_free(r);
	t_config_free(cfg);
}

static void test_multiple_hostnames_and_order(void **state)
{
	static const char *h_two[] = {"a.test", "b.test", "a.test", NULL};
	static const char *h_b[] = {"b.test", NULL};
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *first, *second;
	struct router *r;

	first = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, h_two));
	t_path(first, CONFIG_MATCH_PATH_PREFIX, "/p");
	second = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, h_b));
	t_path(second, CONFIG_MATCH_PATH_PREFIX, "/p");
	t_path(second, CONFIG_MATCH_EXACT, "/e");
	r = router_new(cfg);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "a.test", "/p")), first);
	/* equal precedence: the route that appears first wins */
	assert_ptr_equal(router_match(r, t_req(c, "GET", "b.test", "/p")), first);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "b.test", "/e")), second);
	assert_null(router_match(r, t_req(c, "GET", "a.test", "/e")));
	router_free(r);

	/* swap the routes: now the other one wins the tie */
	{
		struct config_route tmp = cfg->routes[0];

		cfg->routes[0] = cfg->routes[1];
		cfg->routes[1] = tmp;
		first->route = &cfg->routes[1];
		second->route = &cfg->routes[0];
	}
	r = router_new(cfg);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "b.test", "/p")), second);
	assert_ptr_equal(router_match(r, t_req(c, "GET", "a.test", "/p")), first);
	router_free(r);
	t_config_free(cfg);
}

static const char *host_grpc[] = {"grpc.example.com", NULL};

static void test_grpc_service_method(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_route *route;
	struct config_rule *re, *svc, *exact, *hdr;
	struct config_match *m;
	struct router *r;

	route = t_route(cfg, CONFIG_ROUTE_GRPC, host_grpc);
	/* less specific rules first: precedence, not order, must decide */
	re = t_rule(route);
	t_grpc(t_match(re), CONFIG_MATCH_REGEX, "yages\\.[A-Za-z]+", "P.*");
	svc = t_rule(route);
	t_grpc(t_match(svc), CONFIG_MATCH_EXACT, "yages.Echo", NULL);
	exact = t_rule(route);
	t_grpc(t_match(exact), CONFIG_MATCH_EXACT, "yages.Echo", "Ping");
	hdr = t_rule(route);
	m = t_match(hdr);
	t_grpc(m, CONFIG_MATCH_EXACT, NULL, "Status");
	t_header(m, CONFIG_MATCH_EXACT, "x-team", "blue");
	r = router_new(cfg);

	t_req(c, "POST", "grpc.example.com", "/yages.Echo/Ping");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), exact);
	t_req(c, "POST", "grpc.example.com", "/yages.Echo/Other");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), svc);
	t_req(c, "POST", "grpc.example.com", "/yages.Health/Probe");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), re);
	t_req(c, "POST", "grpc.example.com", "/yages.Health/Ping");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), re);
	/* regexes are anchored on service and on method separately */
	t_req(c, "POST", "grpc.example.com", "/yages.v1.Health/Probe");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));
	t_req(c, "POST", "grpc.example.com", "/yages.Health/xProbe");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));
	/* method-only match plus header */
	t_req(c, "POST", "grpc.example.com", "/any.Svc/Status");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));
	t_hdr(c, "x-team", "blue");
	assert_ptr_equal(router_match(r, &c->req), hdr);
	/* malformed gRPC paths match no method rule */
	t_req(c, "POST", "grpc.example.com", "/yages.Echo/Ping/extra");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));
	t_req(c, "POST", "grpc.example.com", "/yages.Echo");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));
	/* not gRPC: grpcRoutes are not consulted */
	assert_null(router_match(r, t_req(c, "POST", "grpc.example.com", "/yages.Echo/Ping")));
	/* other host */
	t_req(c, "POST", "other.example.com", "/yages.Echo/Ping");
	c->req.is_grpc = true;
	assert_null(router_match(r, &c->req));

	router_free(r);
	t_config_free(cfg);
}

static void test_grpc_rule_without_matches(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *all = t_rule(t_route(cfg, CONFIG_ROUTE_GRPC, host_grpc));
	struct router *r = router_new(cfg);

	t_req(c, "POST", "grpc.example.com", "/grpc.health.v1.Health/Check");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), all);
	t_req(c, "POST", "grpc.example.com", "/whatever");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), all);
	assert_null(router_match(r, t_req(c, "GET", "grpc.example.com", "/")));
	router_free(r);
	t_config_free(cfg);
}

static void test_grpc_falls_back_to_http(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct config_rule *http, *grpc;
	struct router *r;

	/* httpRoutes come first in cfg->routes; gRPC must still prefer the grpcRoute */
	http = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, host_grpc));
	t_path(http, CONFIG_MATCH_PATH_PREFIX, "/");
	grpc = t_rule(t_route(cfg, CONFIG_ROUTE_GRPC, host_grpc));
	t_grpc(t_match(grpc), CONFIG_MATCH_EXACT, "yages.Echo", NULL);
	r = router_new(cfg);

	t_req(c, "POST", "grpc.example.com", "/yages.Echo/Ping");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), grpc);
	t_req(c, "POST", "grpc.example.com", "/other.Svc/Ping");
	c->req.is_grpc = true;
	assert_ptr_equal(router_match(r, &c->req), http);
	assert_ptr_equal(router_match(r, t_req(c, "POST", "grpc.example.com", "/yages.Echo/Ping")), http);
	router_free(r);
	t_config_free(cfg);
}

static void t_backend(struct config_rule *rule, const char *name, uint32_t weight)
{
	struct config_backend_ref *ref;

	assert_true(rule->n_backend_refs < T_MAX_ITEMS);
	ref = &rule->backend_refs[rule->n_backend_refs++];
	ref->name = (char *)name;
	ref->weight = weight;
	rule->total_weight += weight;
}

static void test_pick_backend_weights(void **state)
{
	struct config *cfg = t_config_new();
	struct config_rule *rule = t_rule(t_route(cfg, CONFIG_ROUTE_HTTP, NULL));
	size_t counts[T_MAX_ITEMS] = {0};
	uint32_t rnd;

	(void)state;
	t_backend(rule, "a", 1);
	t_backend(rule, "zero", 0);
	t_backend(rule, "b", 3);

	assert_ptr_equal(router_pick_backend(rule, 0), &rule->backend_refs[0]);
	assert_ptr_equal(router_pick_backend(rule, 1), &rule->backend_refs[2]);
	assert_ptr_equal(router_pick_backend(rule, 3), &rule->backend_refs[2]);
	assert_ptr_equal(router_pick_backend(rule, 4), &rule->backend_refs[0]);
	assert_ptr_equal(router_pick_backend(rule, UINT32_MAX), &rule->backend_refs[2]); /* 2^32-1 % 4 = 3 */

	for (rnd = 0; rnd < 4000; rnd++) {
		const struct config_backend_ref *ref = router_pick_backend(rule, rnd * 7919u);

		assert_non_null(ref);
		counts[ref - rule->backend_refs]++;
	}
	assert_int_equal(counts[0], 1000);
	assert_int_equal(counts[1], 0);
	assert_int_equal(counts[2], 3000);
	t_config_free(cfg);
}

static void test_pick_backend_zero(void **state)
{
	struct config *cfg = t_config_new();
	struct config_route *route = t_route(cfg, CONFIG_ROUTE_HTTP, NULL);
	struct config_rule *all_zero = t_rule(route), *one_zero = t_rule(route), *one = t_rule(route),
	                   *none = t_rule(route);
	uint32_t rnd;

	(void)state;
	t_backend(all_zero, "a", 0);
	t_backend(all_zero, "b", 0);
	t_backend(one_zero, "a", 0);
	t_backend(one, "a", 5);
	for (rnd = 0; rnd < 100; rnd++) {
		assert_null(router_pick_backend(all_zero, rnd));
		assert_null(router_pick_backend(one_zero, rnd));
		assert_ptr_equal(router_pick_backend(one, rnd), &one->backend_refs[0]);
	}
	assert_null(router_pick_backend(none, 1));
	t_config_free(cfg);
}

static void test_empty_config(void **state)
{
	struct t_ctx *c = *state;
	struct config *cfg = t_config_new();
	struct router *r = router_new(cfg);

	assert_null(router_match(r, t_req(c, "GET", "www.example.com", "/")));
	router_free(r);
	router_free(NULL);
	t_config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(test_seed_scenario, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_prefix_whole_segments, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_longest_prefix_wins, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_exact_beats_prefix, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_exact_path_only, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_regex_path, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_method, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_headers, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_headers_joined, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_query_params, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_host_tiers, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_host_no_catch_all, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_host_not_authority, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_multiple_hostnames_and_order, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_grpc_service_method, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_grpc_rule_without_matches, t_setup, t_teardown),
	        cmocka_unit_test_setup_teardown(test_grpc_falls_back_to_http, t_setup, t_teardown),
	        cmocka_unit_test(test_pick_backend_weights),
	        cmocka_unit_test(test_pick_backend_zero),
	        cmocka_unit_test_setup_teardown(test_empty_config, t_setup, t_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
