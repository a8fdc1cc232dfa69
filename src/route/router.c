/* router.c: choose the route rule for a protocol-neutral request (Gateway API semantics, answered the
 * way Envoy Gateway's generated Envoy configuration answers).
 *
 * Model. Envoy Gateway turns every distinct route hostname into an Envoy virtual host and routes
 * without hostnames into the "*" virtual host. Envoy picks exactly one virtual host per request
 * (exact name, else the longest matching wildcard suffix, else "*") and then walks that virtual
 * host's route list in order; when nothing matches the answer is 404. There is NO fall-through to a
 * less specific host: a request for an exact host that matches none of its rules is a 404 even when a
 * catch-all route would have matched. router_new() builds the same structure:
 *
 *   - exact virtual hosts: a sorted array, found by binary search on the request host;
 *   - wildcard virtual hosts: a sorted array of suffixes (".example.com" for "*.example.com"); the
 *     request host's suffixes are tried from the longest (first '.') to the shortest, so the first hit
 *     is the longest wildcard. "*.example.com" matches "a.example.com" and "a.b.example.com" (one or
 *     more labels, as Gateway API says), never "example.com";
 *   - the catch-all virtual host, for routes without hostnames.
 *
 * Each virtual host holds two entry lists (httpRoutes, grpcRoutes), one entry per (rule, match),
 * sorted by precedence once, so router_match() is a lookup plus an ordered scan that stops at the
 * first entry that matches. router_match() never allocates.
 *
 * HTTP precedence inside a virtual host (Gateway API HTTPRouteRule, with the brief's choices where the
 * spec leaves it to the implementation):
 *   1. path: Exact > RegularExpression > PathPrefix (longer prefix first) > any path, as Envoy
 *      Gateway sorts them (internal/gatewayapi/sort.go; Gateway API leaves regex to implementations).
 *      "Any path" is a match without a path, a rule without matches, or PathPrefix "/": Gateway API
 *      defaults a missing path to PathPrefix "/", the shortest prefix of all.
 *   2. a method match beats none;
 *   3. more header matches; 4. more query parameter matches;
 *   5. order of appearance: route position, then rule index, then match index.
 *
 * gRPC requests (req->is_grpc) first walk the grpcRoutes entries of the chosen virtual host, then its
 * httpRoutes entries; other requests walk httpRoutes only. gRPC precedence (GRPCRoute spec): Exact
 * service and method > Exact service or method only (longer service, then longer method first) >
 * RegularExpression > no method match; then more header matches; then order of appearance.
 *
 * Values compared: header values as sent (several headers of one name are joined with "," as Envoy
 * does, up to ROUTER_JOIN_MAX bytes); query parameter values raw, NOT percent-decoded (the first
 * occurrence of the name counts, as in Envoy; Envoy decodes before comparing, jwtgate does not).
 */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "route/router.h"

/* Joined value of repeated request headers tested against a header match: bounded so a peer cannot
 * make the router copy more. A longer joined value does not match. */
#define ROUTER_JOIN_MAX 4096

enum router_path_kind {
	ROUTER_PATH_ANY = 0, /* no path match, no matches at all, or PathPrefix "/" */
	ROUTER_PATH_PREFIX,
	ROUTER_PATH_REGEX,
	ROUTER_PATH_EXACT,
};

/* One (rule, match) pair with its precedence keys. */
struct router_entry {
	const struct config_rule *rule;
	const struct config_match *match; /* NULL: the rule has no matches, every request matches */
	enum router_path_kind path_kind;  /* HTTP entries */
	size_t prefix_len;                /* PathPrefix length without trailing '/' */
	/* precedence keys, compared in this order (see router_entry_cmp) */
	int rank;     /* HTTP: path_kind; gRPC: 3 exact service+method, 2 exact one, 1 regex, 0 none */
	size_t len_a; /* HTTP: prefix length; gRPC exact: service length */
	size_t len_b; /* gRPC exact: method length */
	bool has_method;
	size_t n_headers;
	size_t n_query;
	size_t route_pos, rule_pos, match_pos;
};

struct router_vhost {
	const char *name; /* exact host, or wildcard suffix starting with '.'; borrowed from the config */
	size_t name_len;
	struct router_entry *http;
	size_t n_http;
	struct router_entry *grpc;
	size_t n_grpc;
};

struct router {
	struct router_vhost *exact; /* sorted by router_name_cmp */
	size_t n_exact;
	struct router_vhost *wild; /* sorted by router_name_cmp */
	size_t n_wild;
	struct router_vhost any;
	bool has_any;
};

enum router_tier { ROUTER_TIER_EXACT = 0, ROUTER_TIER_WILD, ROUTER_TIER_ANY };

/* Build-time record: route at route_pos is served under the host name (name, len) of tier. */
struct router_placement {
	enum router_tier tier;
	const char *name;
	size_t len;
	size_t route_pos;
};

/* The parts of a gRPC path "/package.Service/Method"; is_valid false when the path has another shape. */
struct router_grpc_path {
	bool is_valid;
	const char *service;
	size_t service_len;
	const char *method;
	size_t method_len;
};

/* Orders byte strings: memcmp on the common length, then shorter first. Used to sort and search the
 * virtual host arrays, so both must use it. */
static int router_name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c != 0)
		return c;
	return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int router_placement_cmp(const void *pa, const void *pb)
{
	const struct router_placement *a = pa, *b = pb;
	int c;

	if (a->tier != b->tier)
		return a->tier < b->tier ? -1 : 1;
	c = router_name_cmp(a->name, a->len, b->name, b->len);
	if (c != 0)
		return c;
	return a->route_pos < b->route_pos ? -1 : a->route_pos > b->route_pos ? 1 : 0;
}

#define ROUTER_CMP_DESC(x, y)                                                                                \
	do {                                                                                                 \
		if ((x) != (y))                                                                              \
			return (x) > (y) ? -1 : 1;                                                           \
	} while (0)
#define ROUTER_CMP_ASC(x, y)                                                                                 \
	do {                                                                                                 \
		if ((x) != (y))                                                                              \
			return (x) < (y) ? -1 : 1;                                                           \
	} while (0)

/* qsort comparator: most specific entry first; the position keys make the order total, so the
 * unstable qsort still yields one deterministic order. */
static int router_entry_cmp(const void *pa, const void *pb)
{
	const struct router_entry *a = pa, *b = pb;

	ROUTER_CMP_DESC(a->rank, b->rank);
	ROUTER_CMP_DESC(a->len_a, b->len_a);
	ROUTER_CMP_DESC(a->len_b, b->len_b);
	ROUTER_CMP_DESC(a->has_method, b->has_method);
	ROUTER_CMP_DESC(a->n_headers, b->n_headers);
	ROUTER_CMP_DESC(a->n_query, b->n_query);
	ROUTER_CMP_ASC(a->route_pos, b->route_pos);
	ROUTER_CMP_ASC(a->rule_pos, b->rule_pos);
	ROUTER_CMP_ASC(a->match_pos, b->match_pos);
	return 0;
}

/* Fills the precedence keys of an HTTP entry from its match (NULL: rule without matches). */
static void router_entry_init_http(struct router_entry *e, const struct config_match *m)
{
	e->path_kind = ROUTER_PATH_ANY;
	if (m != NULL && m->has_path) {
		switch (m->path.type) {
		case CONFIG_MATCH_EXACT:
			e->path_kind = ROUTER_PATH_EXACT;
			break;
		case CONFIG_MATCH_PATH_PREFIX:
			/* Gateway API: "/abc/" and "/abc" are the same prefix; "/" matches everything. */
			e->prefix_len = m->path.value_len;
			while (e->prefix_len > 0 && m->path.value[e->prefix_len - 1] == '/')
				e->prefix_len--;
			e->path_kind = e->prefix_len > 0 ? ROUTER_PATH_PREFIX : ROUTER_PATH_ANY;
			break;
		case CONFIG_MATCH_REGEX:
			e->path_kind = ROUTER_PATH_REGEX;
			break;
		}
	}
	e->rank = (int)e->path_kind;
	e->len_a = e->path_kind == ROUTER_PATH_PREFIX ? e->prefix_len : 0;
	if (m != NULL) {
		e->has_method = m->method != NULL;
		e->n_headers = m->n_headers;
		e->n_query = m->n_query_params;
	}
}

/* Fills the precedence keys of a gRPC entry from its match (NULL: rule without matches). */
static void router_entry_init_grpc(struct router_entry *e, const struct config_match *m)
{
	e->path_kind = ROUTER_PATH_ANY;
	if (m == NULL)
		return;
	e->n_headers = m->n_headers;
	if (!m->has_grpc_method || (m->grpc_service == NULL && m->grpc_method == NULL))
		return;
	if (m->grpc_type == CONFIG_MATCH_REGEX) {
		e->rank = 1;
		return;
	}
	e->rank = m->grpc_service != NULL && m->grpc_method != NULL ? 3 : 2;
	e->len_a = m->grpc_service != NULL ? strlen(m->grpc_service) : 0;
	e->len_b = m->grpc_method != NULL ? strlen(m->grpc_method) : 0;
}

/* Appends the entries of route `route_pos` to vhost (one per rule and match, into http or grpc by the
 * route's kind). The arrays were sized beforehand by the caller. */
static void router_vhost_add_route(struct router_vhost *vh, const struct config *cfg, size_t route_pos)
{
	const struct config_route *route = &cfg->routes[route_pos];
	bool is_grpc = route->kind == CONFIG_ROUTE_GRPC;
	size_t i, j;

	for (i = 0; i < route->n_rules; i++) {
		const struct config_rule *rule = &route->rules[i];
		size_t n = rule->n_matches > 0 ? rule->n_matches : 1;

		for (j = 0; j < n; j++) {
			struct router_entry *e = is_grpc ? &vh->grpc[vh->n_grpc++] : &vh->http[vh->n_http++];
			const struct config_match *m = rule->n_matches > 0 ? &rule->matches[j] : NULL;

			memset(e, 0, sizeof(*e));
			e->rule = rule;
			e->match = m;
			e->route_pos = route_pos;
			e->rule_pos = i;
			e->match_pos = j;
			if (is_grpc)
				router_entry_init_grpc(e, m);
			else
				router_entry_init_http(e, m);
		}
	}
}

/* Counts the entries a route contributes (one per match; a rule without matches counts one). */
static size_t router_route_entries(const struct config_route *route)
{
	size_t i, n = 0;

	for (i = 0; i < route->n_rules; i++)
		n += route->rules[i].n_matches > 0 ? route->rules[i].n_matches : 1;
	return n;
}

/* Builds one virtual host from placements[0..n) (same tier and name, distinct routes ascending). */
static void router_vhost_build(struct router_vhost *vh, const struct config *cfg,
                               const struct router_placement *placements, size_t n)
{
	size_t i, n_http = 0, n_grpc = 0;

	vh->name = placements[0].name;
	vh->name_len = placements[0].len;
	for (i = 0; i < n; i++) {
		const struct config_route *route = &cfg->routes[placements[i].route_pos];

		if (route->kind == CONFIG_ROUTE_GRPC)
			n_grpc += router_route_entries(route);
		else
			n_http += router_route_entries(route);
	}
	vh->http = n_http > 0 ? jg_xcalloc(n_http, sizeof(*vh->http)) : NULL;
	vh->grpc = n_grpc > 0 ? jg_xcalloc(n_grpc, sizeof(*vh->grpc)) : NULL;
	for (i = 0; i < n; i++)
		router_vhost_add_route(vh, cfg, placements[i].route_pos);
	if (vh->n_http > 1)
		qsort(vh->http, vh->n_http, sizeof(*vh->http), router_entry_cmp);
	if (vh->n_grpc > 1)
		qsort(vh->grpc, vh->n_grpc, sizeof(*vh->grpc), router_entry_cmp);
}

/* Builds the router for cfg. The router borrows strings, rules and compiled regexes from cfg, which
 * must outlive it. Start-up tier: aborts on allocation failure. Returns a new router (router_free). */
struct router *router_new(const struct config *cfg)
{
	struct router *r = jg_xcalloc(1, sizeof(*r));
	struct router_placement *pl;
	size_t n_pl = 0, cap = 0, i, j, start;

	for (i = 0; i < cfg->n_routes; i++)
		cap += cfg->routes[i].n_hostnames > 0 ? cfg->routes[i].n_hostnames : 1;
	pl = jg_xcalloc(cap > 0 ? cap : 1, sizeof(*pl));
	for (i = 0; i < cfg->n_routes; i++) {
		const struct config_route *route = &cfg->routes[i];

		if (route->n_hostnames == 0)
			pl[n_pl++] = (struct router_placement){ROUTER_TIER_ANY, "", 0, i};
		for (j = 0; j < route->n_hostnames; j++) {
			const char *h = route->hostnames[j];
			struct router_placement *p = &pl[n_pl++];

			if (strcmp(h, "*") == 0) {
				*p = (struct router_placement){ROUTER_TIER_ANY, "", 0, i};
			} else if (h[0] == '*') {
				/* "*.example.com" -> suffix ".example.com" (the config validated the shape)
				 */
				*p = (struct router_placement){ROUTER_TIER_WILD, h + 1, strlen(h + 1), i};
			} else {
				*p = (struct router_placement){ROUTER_TIER_EXACT, h, strlen(h), i};
			}
		}
	}
	qsort(pl, n_pl, sizeof(*pl), router_placement_cmp);

	/* Drop a route listed twice under one name (hostnames ["a", "a"]): equal placements are adjacent. */
	for (i = 0, j = 0; i < n_pl; i++) {
		if (j > 0 && router_placement_cmp(&pl[j - 1], &pl[i]) == 0)
			continue;
		pl[j++] = pl[i];
	}
	n_pl = j;

	for (i = 0; i < n_pl; i++) {
		if (pl[i].tier == ROUTER_TIER_EXACT)
			r->n_exact++;
		else if (pl[i].tier == ROUTER_TIER_WILD)
			r->n_wild++;
	}
	r->exact = r->n_exact > 0 ? jg_xcalloc(r->n_exact, sizeof(*r->exact)) : NULL;
	r->wild = r->n_wild > 0 ? jg_xcalloc(r->n_wild, sizeof(*r->wild)) : NULL;
	r->n_exact = r->n_wild = 0;

	/* Group runs of the same (tier, name); placements are sorted, so the arrays come out sorted. */
	for (start = 0; start < n_pl; start = i) {
		struct router_vhost *vh;

		for (i = start + 1;
		     i < n_pl && pl[i].tier == pl[start].tier &&
		     router_name_cmp(pl[i].name, pl[i].len, pl[start].name, pl[start].len) == 0;
		     i++)
			;
		if (pl[start].tier == ROUTER_TIER_EXACT) {
			vh = &r->exact[r->n_exact++];
		} else if (pl[start].tier == ROUTER_TIER_WILD) {
			vh = &r->wild[r->n_wild++];
		} else {
			vh = &r->any;
			r->has_any = true;
		}
		router_vhost_build(vh, cfg, &pl[start], i - start);
	}
	free(pl);
	return r;
}

static void router_vhost_clear(struct router_vhost *vh)
{
	free(vh->http);
	vh->http = NULL;
	free(vh->grpc);
	vh->grpc = NULL;
}

/* Frees the router (not the config it borrows from). Accepts NULL. */
void router_free(struct router *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->n_exact; i++)
		router_vhost_clear(&r->exact[i]);
	for (i = 0; i < r->n_wild; i++)
		router_vhost_clear(&r->wild[i]);
	router_vhost_clear(&r->any);
	free(r->exact);
	free(r->wild);
	free(r);
}

/* Binary search of a sorted virtual host array; NULL when name is absent. */
static const struct router_vhost *router_vhost_find(const struct router_vhost *arr, size_t n,
                                                    const char *name, size_t len)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = router_name_cmp(name, len, arr[mid].name, arr[mid].name_len);

		if (c == 0)
			return &arr[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* The one virtual host that serves host (lower-case, no port): exact, else longest wildcard suffix
 * with at least one character before it, else the catch-all. NULL when none (404). */
static const struct router_vhost *router_select_vhost(const struct router *r, const char *host,
                                                      size_t host_len)
{
	const struct router_vhost *vh;
	size_t i;

	if (host == NULL)
		host_len = 0;
	if (host_len > 0) {
		vh = router_vhost_find(r->exact, r->n_exact, host, host_len);
		if (vh != NULL)
			return vh;
		/* Suffixes from the first '.' onwards, longest first; i > 0 keeps one label before. */
		for (i = 1; r->n_wild > 0 && i < host_len; i++) {
			if (host[i] != '.')
				continue;
			vh = router_vhost_find(r->wild, r->n_wild, host + i, host_len - i);
			if (vh != NULL)
				return vh;
		}
	}
	return r->has_any ? &r->any : NULL;
}

/* Anchored POSIX regex test of s[0..len) (need not be NUL-terminated: glibc REG_STARTEND). */
static bool router_regex_matches(const regex_t *re, const char *s, size_t len)
{
	regmatch_t pm[1];

	pm[0].rm_so = 0;
	pm[0].rm_eo = (regoff_t)len;
	return regexec(re, s, 1, pm, REG_STARTEND) == 0;
}

/* Exact or RegularExpression test of a header / query parameter value. */
static bool router_value_matches(const struct config_string_match *m, const char *s, size_t len)
{
	switch (m->type) {
	case CONFIG_MATCH_EXACT:
		return len == m->value_len && memcmp(s, m->value, len) == 0;
	case CONFIG_MATCH_REGEX:
		return m->has_re && router_regex_matches(&m->re, s, len);
	case CONFIG_MATCH_PATH_PREFIX:
		break;
	}
	return false;
}

/* Header match: the named header must be present; several headers of that name are tested as one
 * value joined with "," (Envoy), up to ROUTER_JOIN_MAX bytes. */
static bool router_header_matches(const struct config_string_match *m, const struct request *req)
{
	size_t name_len = strlen(m->name);
	const struct request_header *first = NULL;
	char joined[ROUTER_JOIN_MAX];
	size_t i, n = 0, len = 0;

	for (i = 0; i < req->n_headers; i++) {
		const struct request_header *h = &req->headers[i];

		if (h->removed || !jg_case_eq(h->name, h->name_len, m->name, name_len))
			continue;
		if (first == NULL)
			first = h;
		n++;
	}
	if (first == NULL)
		return false;
	if (n == 1)
		return router_value_matches(m, first->value, first->value_len);
	for (i = first - req->headers; i < req->n_headers; i++) {
		const struct request_header *h = &req->headers[i];

		if (h->removed || !jg_case_eq(h->name, h->name_len, m->name, name_len))
			continue;
		if (len + (len > 0) + h->value_len > sizeof(joined))
			return false;
		if (len > 0)
			joined[len++] = ',';
		memcpy(joined + len, h->value, h->value_len);
		len += h->value_len;
	}
	return router_value_matches(m, joined, len);
}

/* Query parameter match on the first occurrence of the name, raw (not percent-decoded) value. */
static bool router_query_matches(const struct config_string_match *m, const struct request *req)
{
	const char *value;
	size_t value_len, pos = 0;

	if (req->query == NULL)
		return false;
	if (request_query_next(req, m->name, strlen(m->name), &value, &value_len, &pos) != 1)
		return false;
	return router_value_matches(m, value, value_len);
}

/* Headers and query parameters of m (all must match). */
static bool router_match_extras(const struct config_match *m, const struct request *req)
{
	size_t i;

	for (i = 0; i < m->n_headers; i++)
		if (!router_header_matches(&m->headers[i], req))
			return false;
	for (i = 0; i < m->n_query_params; i++)
		if (!router_query_matches(&m->query_params[i], req))
			return false;
	return true;
}

/* Path test of an HTTP entry. PathPrefix matches whole segments: "/foo" matches "/foo", "/foo/",
 * "/foo/x", never "/foobar". */
static bool router_path_matches(const struct router_entry *e, const struct request *req)
{
	const char *path = req->path != NULL ? req->path : "";
	size_t len = req->path != NULL ? req->path_len : 0;
	const struct config_string_match *pm = &e->match->path;

	switch (e->path_kind) {
	case ROUTER_PATH_ANY:
		return true;
	case ROUTER_PATH_EXACT:
		return len == pm->value_len && memcmp(path, pm->value, len) == 0;
	case ROUTER_PATH_PREFIX:
		return len >= e->prefix_len && memcmp(path, pm->value, e->prefix_len) == 0 &&
		       (len == e->prefix_len || path[e->prefix_len] == '/');
	case ROUTER_PATH_REGEX:
		return pm->has_re && router_regex_matches(&pm->re, path, len);
	}
	return false;
}

static bool router_http_entry_matches(const struct router_entry *e, const struct request *req)
{
	const struct config_match *m = e->match;

	if (m == NULL)
		return true;
	if (!router_path_matches(e, req))
		return false;
	if (m->method != NULL) {
		size_t mlen = strlen(m->method);

		if (req->method == NULL || req->method_len != mlen ||
		    memcmp(req->method, m->method, mlen) != 0)
			return false;
	}
	return router_match_extras(m, req);
}

/* Splits "/package.Service/Method" (gRPC over HTTP/2, PROTOCOL-HTTP2.md "Path"). */
static void router_grpc_path_parse(struct router_grpc_path *gp, const struct request *req)
{
	const char *p = req->path, *slash;
	size_t len = req->path_len;

	memset(gp, 0, sizeof(*gp));
	if (p == NULL || len < 4 || p[0] != '/')
		return;
	slash = memchr(p + 1, '/', len - 1);
	if (slash == NULL || slash == p + 1 || slash == p + len - 1 ||
	    memchr(slash + 1, '/', (size_t)(p + len - slash - 1)) != NULL)
		return;
	gp->is_valid = true;
	gp->service = p + 1;
	gp->service_len = (size_t)(slash - p - 1);
	gp->method = slash + 1;
	gp->method_len = (size_t)(p + len - slash - 1);
}

/* gRPC method match: NULL service / method means any; Exact compares bytes, RegularExpression runs the
 * anchored pattern on the service and the method separately. */
static bool router_grpc_method_matches(const struct config_match *m, const struct router_grpc_path *gp)
{
	if (!m->has_grpc_method)
		return true;
	if (!gp->is_valid)
		return false;
	if (m->grpc_type == CONFIG_MATCH_REGEX) {
		if (m->grpc_service != NULL &&
		    !(m->has_grpc_service_re &&
		      router_regex_matches(&m->grpc_service_re, gp->service, gp->service_len)))
			return false;
		if (m->grpc_method != NULL &&
		    !(m->has_grpc_method_re &&
		      router_regex_matches(&m->grpc_method_re, gp->method, gp->method_len)))
			return false;
		return true;
	}
	if (m->grpc_service != NULL && (strlen(m->grpc_service) != gp->service_len ||
	                                memcmp(m->grpc_service, gp->service, gp->service_len) != 0))
		return false;
	if (m->grpc_method != NULL && (strlen(m->grpc_method) != gp->method_len ||
	                               memcmp(m->grpc_method, gp->method, gp->method_len) != 0))
		return false;
	return true;
}

/* Returns the first (most specific) matching rule of the request's virtual host, or NULL (404).
 * Reads req only; allocates nothing. */
const struct config_rule *router_match(const struct router *r, const struct request *req)
{
	const struct router_vhost *vh = router_select_vhost(r, req->host, req->host_len);
	size_t i;

	if (vh == NULL)
		return NULL;
	if (req->is_grpc && vh->n_grpc > 0) {
		struct router_grpc_path gp;

		router_grpc_path_parse(&gp, req);
		for (i = 0; i < vh->n_grpc; i++) {
			const struct router_entry *e = &vh->grpc[i];

			if (e->match == NULL ||
			    (router_grpc_method_matches(e->match, &gp) && router_match_extras(e->match, req)))
				return e->rule;
		}
	}
	for (i = 0; i < vh->n_http; i++)
		if (router_http_entry_matches(&vh->http[i], req))
			return vh->http[i].rule;
	return NULL;
}

/* Weighted pick among rule's backendRefs with the caller's random number: ref i is chosen when
 * rnd % total falls in its share, so weight 0 is never chosen. Returns NULL when every weight is 0
 * (Gateway API: no backend, the caller answers 500). The sum is taken here rather than trusting
 * rule->total_weight, so a rule built by hand cannot send the scan past the array. */
const struct config_backend_ref *router_pick_backend(const struct config_rule *rule, uint32_t rnd)
{
	uint64_t total = 0, x, acc = 0;
	size_t i;

	if (rule == NULL || rule->n_backend_refs == 0)
		return NULL;
	if (rule->n_backend_refs == 1)
		return rule->backend_refs[0].weight > 0 ? &rule->backend_refs[0] : NULL;
	for (i = 0; i < rule->n_backend_refs; i++)
		total += rule->backend_refs[i].weight;
	if (total == 0)
		return NULL;
	x = rnd % total;
	for (i = 0; i < rule->n_backend_refs; i++) {
		acc += rule->backend_refs[i].weight;
		if (x < acc)
			return &rule->backend_refs[i];
	}
	return NULL;
}
