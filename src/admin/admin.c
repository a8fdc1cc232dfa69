/* admin.c: the admin endpoint on the control thread (admin.h). A connection reads one request head
 * with llhttp (strict, as the traffic listeners), answers it and closes. Nothing here is on the
 * request path of the traffic listeners: a scrape reads the workers' counters with relaxed loads
 * (stats.h) and never waits for a worker. */
#include "admin/admin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <jansson.h>
#include <llhttp.h>

#include "core/common.h"
#include "upstream/health.h"
#include "jwt/jwk.h"
#include "jwt/jwks_fetch.h"
#include "jwt/jwt.h"
#include "core/log.h"
#include "server/reload.h"
#include "server/worker.h"

#define ADMIN_TARGET_MAX 2048 /* request target bytes kept (the paths we serve are short) */

struct admin {
	struct event_base *base;
	struct admin_state *st;
	struct evconnlistener *listener;
	struct event heartbeat_ev;
	struct admin_conn *conns; /* every open admin connection (freed with the admin) */
	unsigned n_conns;
	uint32_t max_head_bytes;
	uint64_t timeout_ms;
};

enum admin_conn_state {
	ADMIN_CONN_READING = 0, /* request head not complete */
	ADMIN_CONN_WRITING,     /* response queued; close once it is out */
};

struct admin_conn {
	struct admin *a;
	struct admin_conn *prev, *next;
	struct bufferevent *bev;
	enum admin_conn_state state;
	llhttp_t parser;
	char target[ADMIN_TARGET_MAX + 1];
	size_t target_len;
	bool is_target_too_long;
	bool is_head_done;
	size_t head_bytes;
};

static llhttp_settings_t admin_parser_settings;

static const char *admin_conn_state_str(enum admin_conn_state s)
{
	return s == ADMIN_CONN_READING ? "reading" : "writing";
}

static void admin_conn_set_state(struct admin_conn *c, enum admin_conn_state s)
{
	if (!(c->state == ADMIN_CONN_READING && s == ADMIN_CONN_WRITING)) {
		log_error("admin: illegal state change %s -> %s", admin_conn_state_str(c->state),
		          admin_conn_state_str(s));
		abort();
	}
	log_debug("admin: connection %s -> %s", admin_conn_state_str(c->state), admin_conn_state_str(s));
	c->state = s;
}

static void admin_conn_free(struct admin_conn *c)
{
	struct admin *a = c->a;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	a->n_conns--;
	bufferevent_free(c->bev);
	free(c);
}

/* ---- /live and /ready ---- */

int admin_live_reasons(const struct worker *workers, int n, bool is_draining, uint64_t now_ms,
                       struct evbuffer *out)
{
	int i, bad = 0;

	for (i = 0; i < n; i++) {
		const struct worker *w = &workers[i];
		uint64_t stamp = atomic_load_explicit(&w->heartbeat_ms, memory_order_relaxed);

		if (is_draining)
			continue;
		if (atomic_load(&w->is_exited)) {
			evbuffer_add_printf(out, "worker %d has exited\n", i);
			bad++;
		} else if (now_ms > stamp && now_ms - stamp > ADMIN_LIVE_MAX_AGE_MS) {
			evbuffer_add_printf(out,
			                    "worker %d has not answered a heartbeat for %" PRIu64 " ms\n", i,
			                    now_ms - stamp);
			bad++;
		}
	}
	return bad;
}

/* One line per reason the process should not get traffic yet (or any more); returns how many. */
static int admin_ready_reasons(struct admin_state *st, struct evbuffer *out)
{
	const struct config *cfg = st->current->cfg;
	size_t i, j;
	int bad = 0;

	if (st->is_draining) {
		evbuffer_add_printf(out, "draining: shutting down\n");
		bad++;
	}
	if (!st->is_listening) {
		evbuffer_add_printf(out, "listeners not open yet\n");
		bad++;
	}
	for (i = 0; i < cfg->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];

		for (j = 0; j < pol->n_providers; j++) {
			const struct config_provider *p = &pol->providers[j];
			struct jwks *ks;

			if (p->jwks_source != CONFIG_JWKS_REMOTE || pol->fail_open)
				continue;
			ks = auth_shared_keys(st->current->auth, p->index);
			if (ks == NULL) {
				evbuffer_add_printf(
				        out, "policy %s provider %s: no key set yet (remote JWKS %s)\n",
				        pol->name, p->name, p->remote.uri);
				bad++;
			}
			jwks_unref(ks);
		}
	}
	return bad;
}

/* ---- /metrics ---- */

static void admin_metrics(struct admin_state *st, struct evbuffer *out)
{
	struct stats_worker *ws[256];
	struct stats_labels l;
	const struct config *cfg = st->current->cfg;
	int i, n = st->n_workers < 256 ? st->n_workers : 256;
	size_t k;

	stats_family(out, "jwtgate_build_info", "gauge", "Always 1; the version in a label.");
	stats_labels_init(&l);
	stats_labels_add(&l, "version", JG_VERSION);
	stats_sample_u64(out, "jwtgate_build_info", &l, 1);
	stats_family(out, "jwtgate_process_start_time_seconds", "gauge",
	             "Start time of the process since the Unix epoch, in seconds.");
	stats_sample_i64(out, "jwtgate_process_start_time_seconds", NULL, st->start_time);
	stats_family(out, "jwtgate_config_generation", "gauge",
	             "Configuration generation in force: 1 at start, +1 per reload applied.");
	stats_sample_u64(out, "jwtgate_config_generation", NULL, st->generation);
	stats_family(out, "jwtgate_workers", "gauge", "Worker threads.");
	stats_sample_i64(out, "jwtgate_workers", NULL, st->n_workers);
	for (i = 0; i < n; i++)
		ws[i] = st->workers[i].stats;
	stats_write_workers(out, cfg, st->workers != NULL ? st->current->stats : NULL, ws, n, jg_now_ms());
	if (st->jwks != NULL) {
		static const char *const fam[][3] = {
		        {"jwtgate_jwks_fetches_total", "counter",
		         "Remote JWKS fetch attempts, by provider and outcome (providers sharing a URI share "
		         "the counts)."},
		        {"jwtgate_jwks_last_success_timestamp_seconds", "gauge",
		         "When the key set in use was fetched, since the Unix epoch (absent: never)."},
		        {"jwtgate_jwks_keys", "gauge", "Keys in the provider's remote key set in use."},
		        {"jwtgate_jwks_kid_refetches_total", "counter",
		         "Fetches started because a token named a key the set does not have."},
		};
		size_t f;
		int o;

		for (f = 0; f < JG_ARRAY_SIZE(fam); f++) {
			stats_family(out, fam[f][0], fam[f][1], fam[f][2]);
			for (k = 0; k < cfg->n_policies; k++) {
				size_t j;

				for (j = 0; j < cfg->policies[k].n_providers; j++) {
					const struct config_provider *p = &cfg->policies[k].providers[j];
					int fi = jwks_fetch_index_of_provider(st->jwks, p->index);
					struct jwks_fetch_stats fs;

					if (fi < 0 ||
					    jwks_fetch_get_stats(st->jwks, (size_t)fi, NULL, &fs) < 0)
						continue;
					stats_labels_init(&l);
					stats_labels_add(&l, "policy", cfg->policies[k].name);
					stats_labels_add(&l, "provider", p->name);
					if (f == 0) {
						for (o = 0; o < JWKS_FETCH_FAILURE_KINDS; o++) {
							struct stats_labels lo = l;

							stats_labels_add(&lo, "outcome",
							                 jwks_fetch_failure_key(
							                         (enum jwks_fetch_failure)o));
							stats_sample_u64(out, fam[f][0], &lo,
							                 o == JWKS_FETCH_OK ? fs.successes
							                                    : fs.failures[o]);
						}
					} else if (f == 1) {
						if (fs.has_keys)
							stats_sample_i64(
							        out, fam[f][0], &l,
							        jg_wall_time() -
							                (int64_t)(fs.keys_age_ms / 1000));
					} else if (f == 2) {
						stats_sample_u64(out, fam[f][0], &l,
						                 fs.has_keys ? fs.n_keys : 0);
					} else {
						stats_sample_u64(out, fam[f][0], &l, fs.kid_refetches);
					}
				}
			}
		}
	}
	stats_registry_collect(&st->extra, out);
}

/* ---- /status ---- */

static const char *admin_kty_str(enum jwk_kty k)
{
	switch (k) {
	case JWK_KTY_RSA:
		return "RSA";
	case JWK_KTY_EC:
		return "EC";
	case JWK_KTY_OKP:
		return "OKP";
	default:
		return "oct";
	}
}

static json_t *admin_keys_json(const struct jwks *ks)
{
	json_t *arr = json_array();
	size_t i;

	for (i = 0; ks != NULL && i < ks->n_keys; i++) {
		const struct jwk *k = &ks->keys[i];

		json_array_append_new(arr, json_pack("{s:s?,s:s,s:s?}", "kid", k->kid, "kty",
		                                     admin_kty_str(k->kty), "alg",
		                                     k->alg != JWT_ALG_UNSET ? jwt_alg_name(k->alg) : NULL));
	}
	return arr;
}

static json_t *admin_provider_status(struct admin_state *st, const struct config_policy *pol,
                                     const struct config_provider *p)
{
	json_t *o = json_pack("{s:s,s:s}", "policy", pol->name, "name", p->name);
	struct jwks *ks = auth_shared_keys(st->current->auth, p->index);

	if (p->jwks_source == CONFIG_JWKS_LOCAL) {
		json_object_set_new(o, "source",
		                    json_pack("{s:s,s:s}", "type", "local", "origin",
		                              p->local_jwks_origin ? p->local_jwks_origin : "inline"));
	} else {
		struct jwks_fetch_stats fs;
		int fi = jwks_fetch_index_of_provider(st->jwks, p->index);
		json_t *src = json_pack("{s:s,s:s,s:s?}", "type", "remote", "uri", p->remote.uri, "backend",
		                        p->remote.backend_name);

		if (fi >= 0 && jwks_fetch_get_stats(st->jwks, (size_t)fi, NULL, &fs) == 0) {
			json_t *fails = json_object();
			int o2;

			for (o2 = 1; o2 < JWKS_FETCH_FAILURE_KINDS; o2++)
				json_object_set_new(fails,
				                    jwks_fetch_failure_key((enum jwks_fetch_failure)o2),
				                    json_integer((json_int_t)fs.failures[o2]));
			json_object_set_new(src, "successes", json_integer((json_int_t)fs.successes));
			json_object_set_new(src, "failures", fails);
			json_object_set_new(src, "kidRefetches", json_integer((json_int_t)fs.kid_refetches));
			if (fs.last_attempt_time != 0) {
				json_object_set_new(src, "lastFetchTime", json_integer(fs.last_attempt_time));
				json_object_set_new(src, "lastFetchOutcome",
				                    json_string(jwks_fetch_failure_key(fs.last_outcome)));
			}
			if (fs.has_keys)
				json_object_set_new(
				        src, "keysFetchedTime",
				        json_integer(jg_wall_time() - (int64_t)(fs.keys_age_ms / 1000)));
			if (fs.next_fetch_ms >= 0)
				json_object_set_new(src, "nextFetchSeconds",
				                    json_real((double)fs.next_fetch_ms / 1000.0));
		}
		json_object_set_new(o, "source", src);
	}
	json_object_set_new(o, "hasKeys", json_boolean(ks != NULL));
	json_object_set_new(o, "keys", admin_keys_json(ks));
	jwks_unref(ks);
	return o;
}

/* The reload status (reload.h): generation, counts, and the last attempt with its reason when it was
 * refused (the running configuration stayed). */
static json_t *admin_reload_json(void)
{
	static const char *const outcomes[] = {"none", "applied", "refused"};
	struct reload_status rs;

	reload_status_get(&rs);
	return json_pack("{s:I,s:I,s:I,s:s,s:s,s:s,s:I,s:I,s:b}", "generation", (json_int_t)rs.generation,
	                 "applied", (json_int_t)rs.n_ok, "refused", (json_int_t)rs.n_refused, "lastOutcome",
	                 outcomes[rs.last_outcome], "lastTrigger", rs.last_trigger, "lastReason",
	                 rs.last_reason, "lastAttemptTimeMs", (json_int_t)rs.last_attempt_ms,
	                 "configLoadedTimeMs", (json_int_t)rs.last_ok_ms, "watching", rs.is_watching);
}

static json_t *admin_status_json(struct admin_state *st)
{
	const struct config *cfg = st->current->cfg;
	json_t *root, *arr, *pols, *provs;
	struct evbuffer *tmp = evbuffer_new();
	size_t i, j, k;

	root = json_pack("{s:s,s:s,s:I,s:I,s:I,s:b,s:b,s:i}", "version", JG_VERSION, "configFile",
	                 st->config_path, "generation", (json_int_t)st->generation, "startTime",
	                 (json_int_t)st->start_time, "uptimeSeconds",
	                 (json_int_t)((jg_now_ms() - st->start_ms) / 1000), "ready",
	                 tmp != NULL && admin_ready_reasons(st, tmp) == 0, "draining", st->is_draining,
	                 "workers", st->n_workers);
	if (tmp != NULL)
		evbuffer_free(tmp);
	json_object_set_new(root, "reload", admin_reload_json());
	arr = json_array();
	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];

		json_array_append_new(arr,
		                      json_pack("{s:s,s:s,s:b,s:b,s:s?}", "name", l->name, "address",
		                                l->address_text, "tls", l->has_tls, "open", st->is_listening,
		                                "clientTrafficPolicy", l->client.policy_name));
	}
	json_object_set_new(root, "listeners", arr);
	arr = json_array();
	for (i = 0; i < cfg->n_routes; i++) {
		const struct config_route *r = &cfg->routes[i];
		json_t *att = json_array(), *hosts = json_array();

		for (k = 0; k < r->n_hostnames; k++)
			json_array_append_new(hosts, json_string(r->hostnames[k]));
		for (k = 0; k < cfg->n_listeners; k++) {
			const struct config_policy *p = config_route_policy(r, (int)k);

			json_array_append_new(att, json_pack("{s:s,s:s?}", "listener", cfg->listeners[k].name,
			                                     "policy", p != NULL ? p->name : NULL));
		}
		json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:I,s:o}", "name", r->name, "kind",
		                                     r->kind == CONFIG_ROUTE_GRPC ? "GRPCRoute" : "HTTPRoute",
		                                     "hostnames", hosts, "rules", (json_int_t)r->n_rules,
		                                     "policyByListener", att));
	}
	json_object_set_new(root, "routes", arr);
	pols = json_array();
	provs = json_array();
	for (i = 0; i < cfg->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];
		json_t *targets = json_array();

		for (k = 0; k < pol->n_targets; k++) {
			const struct config_target_ref *t = &pol->targets[k];

			json_array_append_new(
			        targets, json_pack("{s:s,s:s?,s:s?}", "kind",
			                           t->kind == CONFIG_TARGET_GATEWAY     ? "Gateway"
			                           : t->kind == CONFIG_TARGET_GRPCROUTE ? "GRPCRoute"
			                                                                : "HTTPRoute",
			                           "name", t->kind == CONFIG_TARGET_GATEWAY ? NULL : t->name,
			                           "sectionName", t->section_name));
		}
		/* A configuration with any error is refused as a whole (config_load), so every policy in
		 * force has been accepted: Envoy Gateway's Accepted condition, status True. */
		json_array_append_new(pols, json_pack("{s:s,s:o,s:[{s:s,s:s,s:s,s:s}]}", "name", pol->name,
		                                      "targetRefs", targets, "conditions", "type", "Accepted",
		                                      "status", "True", "reason", "Accepted", "message",
		                                      "Policy has been accepted."));
		for (j = 0; j < pol->n_providers; j++)
			json_array_append_new(provs, admin_provider_status(st, pol, &pol->providers[j]));
	}
	json_object_set_new(root, "policies", pols);
	json_object_set_new(root, "providers", provs);
	arr = json_array();
	for (i = 0; i < cfg->n_backends; i++) {
		const struct config_backend *be = &cfg->backends[i];
		json_t *eps = json_array();
		uint64_t now = jg_now_ms();

		for (k = 0; k < be->n_endpoints; k++) {
			const struct stats_gen *g = st->workers != NULL ? st->current->stats : NULL;
			unsigned ej = stats_gen_endpoint_ejected(g, be->index, k, now);
			struct health_endpoint_stats hs;
			const char *health = "unchecked";

			if (health_endpoint_get_stats(st->current->health, i, k, &hs) == 0 && hs.is_checked)
				health = hs.is_healthy ? "healthy" : "unhealthy";
			json_array_append_new(
			        eps, json_pack("{s:s,s:i,s:s,s:b,s:i,s:I,s:I}", "host", be->endpoints[k].host,
			                       "port", (int)be->endpoints[k].port, "health", health,
			                       "ejected", ej > 0, "ejectedWorkers", (int)ej, "ejections",
			                       (json_int_t)stats_gen_endpoint_sum(g, be->index, k,
			                                                          STATS_EP_EJECTIONS),
			                       "activeRequests",
			                       (json_int_t)stats_gen_endpoint_sum(g, be->index, k,
			                                                          STATS_EP_ACTIVE)));
		}
		json_array_append_new(arr, json_pack("{s:s,s:o}", "name", be->name, "endpoints", eps));
	}
	json_object_set_new(root, "backends", arr);
	return root;
}

/* ---- /config ---- */

/* JWK members that are public (RFC 7517 section 4, RFC 7518 section 6): anything else (d, p, q, dp,
 * dq, qi, oth, and k of an oct key) is left out. An allow-list, so an unknown private member is
 * never printed either. */
static json_t *admin_public_jwks(const char *text, size_t len)
{
	static const char *const pub[] = {"kty", "kid", "alg", "use", "key_ops", "crv", "n", "e", "x", "y"};
	json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL), *keys, *outk, *k;
	size_t i, m;

	if (doc == NULL)
		return json_null();
	keys = json_object_get(doc, "keys");
	outk = json_array();
	json_array_foreach(keys, i, k)
	{
		json_t *o = json_object();
		const char *kty = json_string_value(json_object_get(k, "kty"));

		for (m = 0; m < JG_ARRAY_SIZE(pub); m++) {
			json_t *v = json_object_get(k, pub[m]);

			/* An oct key's x/y/n/e would be nonsense; print only what names it. */
			if (v != NULL && (kty == NULL || strcmp(kty, "oct") != 0 || m < 5))
				json_object_set(o, pub[m], v);
		}
		json_array_append_new(outk, o);
	}
	json_decref(doc);
	return json_pack("{s:o}", "keys", outk);
}

static json_t *admin_strings(char *const *v, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static const char *admin_match_type(enum config_match_type t)
{
	return t == CONFIG_MATCH_EXACT         ? "Exact"
	       : t == CONFIG_MATCH_PATH_PREFIX ? "PathPrefix"
	                                       : "RegularExpression";
}

static json_t *admin_string_matches(const struct config_string_match *m, size_t n)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s,s:s?,s:s}", "type", admin_match_type(m[i].type),
		                                   "name", m[i].name, "value", m[i].value));
	return a;
}

static json_t *admin_route_json(const struct config_route *r)
{
	json_t *rules = json_array();
	size_t i, j;

	for (i = 0; i < r->n_rules; i++) {
		const struct config_rule *ru = &r->rules[i];
		json_t *matches = json_array(), *refs = json_array();

		for (j = 0; j < ru->n_matches; j++) {
			const struct config_match *m = &ru->matches[j];
			json_t *o = json_object();

			if (m->has_path)
				json_object_set_new(o, "path",
				                    json_pack("{s:s,s:s}", "type",
				                              admin_match_type(m->path.type), "value",
				                              m->path.value));
			if (m->method != NULL)
				json_object_set_new(o, "method", json_string(m->method));
			if (m->n_headers)
				json_object_set_new(o, "headers",
				                    admin_string_matches(m->headers, m->n_headers));
			if (m->n_query_params)
				json_object_set_new(o, "queryParams",
				                    admin_string_matches(m->query_params, m->n_query_params));
			if (m->has_grpc_method)
				json_object_set_new(o, "method",
				                    json_pack("{s:s,s:s?,s:s?}", "type",
				                              admin_match_type(m->grpc_type), "service",
				                              m->grpc_service, "method", m->grpc_method));
			json_array_append_new(matches, o);
		}
		for (j = 0; j < ru->n_backend_refs; j++) {
			const struct config_backend_ref *b = &ru->backend_refs[j];

			json_array_append_new(refs, json_pack("{s:s,s:i,s:I}", "name", b->name, "port",
			                                      (int)b->port, "weight", (json_int_t)b->weight));
		}
		json_array_append_new(rules, json_pack("{s:o,s:o}", "matches", matches, "backendRefs", refs));
	}
	return json_pack("{s:s,s:s,s:o,s:o}", "name", r->name, "kind",
	                 r->kind == CONFIG_ROUTE_GRPC ? "GRPCRoute" : "HTTPRoute", "hostnames",
	                 admin_strings(r->hostnames, r->n_hostnames), "rules", rules);
}

static json_t *admin_provider_json(const struct config_provider *p)
{
	json_t *o =
	        json_pack("{s:s,s:s?,s:o,s:b,s:I,s:b,s:s?,s:b,s:I}", "name", p->name, "issuer", p->issuer,
	                  "audiences", admin_strings(p->audiences, p->n_audiences), "recomputeRoute",
	                  p->recompute_route, "clockSkewSeconds", (json_int_t)p->clock_skew_s, "forward",
	                  p->forward, "forwardPayloadHeader", p->forward_payload_header, "requireExpiration",
	                  p->require_expiration, "maxLifetimeSeconds", (json_int_t)p->max_lifetime_s);
	json_t *c2h = json_array();
	size_t i;

	for (i = 0; i < p->n_claim_to_headers; i++)
		json_array_append_new(c2h, json_pack("{s:s,s:s}", "header", p->claim_to_headers[i].header,
		                                     "claim", p->claim_to_headers[i].claim));
	json_object_set_new(o, "claimToHeaders", c2h);
	if (p->has_extract_from) {
		json_t *hs = json_array();

		for (i = 0; i < p->n_extract_headers; i++)
			json_array_append_new(hs,
			                      json_pack("{s:s,s:s}", "name", p->extract_headers[i].name,
			                                "valuePrefix", p->extract_headers[i].value_prefix));
		json_object_set_new(o, "extractFrom",
		                    json_pack("{s:o,s:o,s:o}", "headers", hs, "cookies",
		                              admin_strings(p->extract_cookies, p->n_extract_cookies),
		                              "params",
		                              admin_strings(p->extract_params, p->n_extract_params)));
	}
	if (p->jwks_source == CONFIG_JWKS_REMOTE)
		json_object_set_new(o, "remoteJWKS",
		                    json_pack("{s:s,s:s?,s:I,s:I,s:I,s:I}", "uri", p->remote.uri,
		                              "backendRef", p->remote.backend_name, "cacheDurationMs",
		                              (json_int_t)p->remote.cache_duration_ms,
		                              "failedRefetchDurationMs",
		                              (json_int_t)p->remote.failed_refetch_duration_ms,
		                              "requestTimeoutMs", (json_int_t)p->remote.request_timeout_ms,
		                              "numRetries", (json_int_t)p->remote.retry.num_retries));
	else
		json_object_set_new(o, "localJWKS",
		                    json_pack("{s:s,s:o}", "origin",
		                              p->local_jwks_origin ? p->local_jwks_origin : "inline",
		                              "publicKeys",
		                              admin_public_jwks(p->local_jwks_json, p->local_jwks_len)));
	return o;
}

static json_t *admin_config_json(const struct config *cfg)
{
	json_t *root, *arr;
	size_t i, j;
	char addr[INET6_ADDRSTRLEN + 8] = "";

	if (cfg->has_admin) {
		char ip[INET6_ADDRSTRLEN] = "";

		if (cfg->admin_addr.ss_family == AF_INET6) {
			const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&cfg->admin_addr;

			inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
			snprintf(addr, sizeof(addr), "[%s]:%u", ip, ntohs(s6->sin6_port));
		} else {
			const struct sockaddr_in *s4 = (const struct sockaddr_in *)&cfg->admin_addr;

			inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
			snprintf(addr, sizeof(addr), "%s:%u", ip, ntohs(s4->sin_port));
		}
	}
	root = json_pack("{s:s,s:i,s:s?,s:s?,s:s,s:i,s:I}", "file", cfg->path, "workers", cfg->workers,
	                 "admin", cfg->has_admin ? addr : NULL, "accessLog", cfg->access_log_path,
	                 "accessLogFormat", cfg->access_log_format == CONFIG_LOG_JSON ? "json" : "text",
	                 "logLevel", cfg->log_level, "tokenCacheSize", (json_int_t)cfg->token_cache_size);
	json_object_set_new(root, "limits",
	                    json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "maxHeaderBytes",
	                              (json_int_t)cfg->limits.max_header_bytes, "maxHeaderCount",
	                              (json_int_t)cfg->limits.max_header_count, "maxRequestLine",
	                              (json_int_t)cfg->limits.max_request_line, "maxBodyBytes",
	                              (json_int_t)cfg->limits.max_body_bytes, "headerTimeoutMs",
	                              (json_int_t)cfg->limits.header_timeout_ms, "idleTimeoutMs",
	                              (json_int_t)cfg->limits.idle_timeout_ms, "drainTimeoutMs",
	                              (json_int_t)cfg->limits.drain_timeout_ms, "maxConnections",
	                              (json_int_t)cfg->limits.max_connections, "h2MaxConcurrentStreams",
	                              (json_int_t)cfg->limits.h2_max_concurrent_streams, "listenBacklog",
	                              (json_int_t)cfg->limits.listen_backlog));
	arr = json_array();
	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_listener *l = &cfg->listeners[i];
		json_t *o = json_pack("{s:s,s:s}", "name", l->name, "address", l->address_text);

		/* File names only: the key itself is never read here, let alone printed. */
		if (l->has_tls)
			json_object_set_new(o, "tls",
			                    json_pack("{s:s?,s:s?}", "certificateFile", l->tls_cert_file,
			                              "keyFile", l->tls_key_file));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "listeners", arr);
	arr = json_array();
	for (i = 0; i < cfg->n_backends; i++) {
		const struct config_backend *be = &cfg->backends[i];
		json_t *eps = json_array();
		static const char *const protos[] = {"HTTP", "H2C", "H2"};
		static const char *const lbs[] = {"RoundRobin", "LeastRequest", "Random"};
		json_t *o;

		for (j = 0; j < be->n_endpoints; j++)
			json_array_append_new(eps, json_pack("{s:s,s:i}", "host", be->endpoints[j].host,
			                                     "port", (int)be->endpoints[j].port));
		o = json_pack(
		        "{s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "name", be->name, "protocol",
		        protos[be->protocol], "loadBalancer", lbs[be->lb], "endpoints", eps,
		        "connectTimeoutMs", (json_int_t)be->connect_timeout_ms, "requestTimeoutMs",
		        (json_int_t)be->request_timeout_ms, "idleTimeoutMs", (json_int_t)be->idle_timeout_ms,
		        "maxConnections", (json_int_t)be->max_connections, "maxPendingRequests",
		        (json_int_t)be->max_pending, "maxParallelRequests", (json_int_t)be->max_requests,
		        "panicThreshold", (json_int_t)be->panic_threshold);
		if (be->tls.enabled)
			json_object_set_new(o, "tls",
			                    json_pack("{s:o,s:I,s:b,s:s?}", "caCertificateFiles",
			                              admin_strings(be->tls.ca_files, be->tls.n_ca_files),
			                              "inlineCACertificates", (json_int_t)be->tls.n_ca_inline,
			                              "wellKnownSystem", be->tls.well_known_system,
			                              "hostname", be->tls.hostname));
		json_array_append_new(arr, o);
	}
	json_object_set_new(root, "backends", arr);
	arr = json_array();
	for (i = 0; i < cfg->n_routes; i++)
		json_array_append_new(arr, admin_route_json(&cfg->routes[i]));
	json_object_set_new(root, "routes", arr);
	arr = json_array();
	for (i = 0; i < cfg->n_policies; i++) {
		const struct config_policy *pol = &cfg->policies[i];
		json_t *provs = json_array(), *targets = json_array();

		for (j = 0; j < pol->n_targets; j++)
			json_array_append_new(
			        targets,
			        json_pack("{s:s,s:s?,s:s?}", "kind",
			                  pol->targets[j].kind == CONFIG_TARGET_GATEWAY     ? "Gateway"
			                  : pol->targets[j].kind == CONFIG_TARGET_GRPCROUTE ? "GRPCRoute"
			                                                                    : "HTTPRoute",
			                  "name", pol->targets[j].name, "sectionName",
			                  pol->targets[j].section_name));
		for (j = 0; j < pol->n_providers; j++)
			json_array_append_new(provs, admin_provider_json(&pol->providers[j]));
		json_array_append_new(arr, json_pack("{s:s,s:o,s:b,s:b,s:o}", "name", pol->name, "targetRefs",
		                                     targets, "optional", pol->optional, "failOpen",
		                                     pol->fail_open, "providers", provs));
	}
	json_object_set_new(root, "securityPolicies", arr);
	arr = json_array();
	for (i = 0; i < cfg->n_client_policies; i++) {
		const struct config_client_policy *cp = &cfg->client_policies[i];
		static const char *const us[] = {"RejectRequest", "Allow", "DropHeader"};
		static const char *const es[] = {"UnescapeAndRedirect", "KeepUnchanged", "RejectRequest",
		                                 "UnescapeAndForward"};

		json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:b}", "name", cp->name,
		                                     "withUnderscoresAction", us[cp->settings.underscores],
		                                     "escapedSlashesAction", es[cp->settings.escaped_slashes],
		                                     "mergeSlashes", cp->settings.merge_slashes));
	}
	json_object_set_new(root, "clientTrafficPolicies", arr);
	return root;
}

/* ---- requests ---- */

static const char *admin_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	default:
		return "Service Unavailable";
	}
}

/* Queues the response (body is consumed; NULL: text) and switches to WRITING. */
static void admin_respond(struct admin_conn *c, int status, const char *type, struct evbuffer *body,
                          const char *text, bool is_head)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = body != NULL ? evbuffer_get_length(body) : strlen(text);

	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: "
	                    "no-store\r\n%sConnection: close\r\n\r\n",
	                    status, admin_reason(status), type, len,
	                    status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (!is_head) {
		if (body != NULL)
			evbuffer_add_buffer(out, body);
		else
			evbuffer_add(out, text, len);
	}
	admin_conn_set_state(c, ADMIN_CONN_WRITING);
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_enable(c->bev, EV_WRITE);
}

static void admin_respond_json(struct admin_conn *c, json_t *doc, bool is_head)
{
	char *s = doc != NULL ? json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	struct evbuffer *b = evbuffer_new();

	json_decref(doc);
	if (s == NULL || b == NULL) {
		free(s);
		if (b != NULL)
			evbuffer_free(b);
		admin_respond(c, 500, "text/plain", NULL, "out of memory\n", is_head);
		return;
	}
	evbuffer_add(b, s, strlen(s));
	evbuffer_add(b, "\n", 1);
	free(s);
	admin_respond(c, 200, "application/json", b, NULL, is_head);
	evbuffer_free(b);
}

static void admin_dispatch(struct admin_conn *c)
{
	struct admin_state *st = c->a->st;
	int method = llhttp_get_method(&c->parser);
	bool is_head = method == HTTP_HEAD;
	size_t plen = strcspn(c->target, "?");
	struct evbuffer *b;
	int bad;

	if (method != HTTP_GET && method != HTTP_HEAD) {
		admin_respond(c, 405, "text/plain", NULL, "method not allowed: GET or HEAD\n", false);
		return;
	}
#define ADMIN_PATH_IS(p) (plen == sizeof(p) - 1 && memcmp(c->target, p, plen) == 0)
	if (ADMIN_PATH_IS("/config")) {
		admin_respond_json(c, admin_config_json(st->current->cfg), is_head);
		return;
	}
	if (ADMIN_PATH_IS("/status")) {
		admin_respond_json(c, admin_status_json(st), is_head);
		return;
	}
	if (!ADMIN_PATH_IS("/ready") && !ADMIN_PATH_IS("/live") && !ADMIN_PATH_IS("/metrics")) {
		admin_respond(c, 404, "text/plain", NULL, "not found\n", is_head);
		return;
	}
	b = evbuffer_new();
	if (b == NULL) {
		admin_respond(c, 503, "text/plain", NULL, "out of memory\n", is_head);
		return;
	}
	if (ADMIN_PATH_IS("/metrics")) {
		admin_metrics(st, b);
		admin_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", b, NULL, is_head);
	} else if (ADMIN_PATH_IS("/ready")) {
		bad = admin_ready_reasons(st, b);
		if (bad == 0)
			evbuffer_add_printf(b, "ready\n");
		admin_respond(c, bad == 0 ? 200 : 503, "text/plain", b, NULL, is_head);
	} else {
		bad = admin_live_reasons(st->workers, st->workers != NULL ? st->n_workers : 0,
		                         st->is_draining, jg_now_ms(), b);
		if (bad == 0)
			evbuffer_add_printf(b, "live\n");
		admin_respond(c, bad == 0 ? 200 : 503, "text/plain", b, NULL, is_head);
	}
#undef ADMIN_PATH_IS
	evbuffer_free(b);
}

static int admin_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *c = p->data;

	if (len > ADMIN_TARGET_MAX - c->target_len) {
		c->is_target_too_long = true;
		return 0;
	}
	memcpy(c->target + c->target_len, at, len);
	c->target_len += len;
	c->target[c->target_len] = '\0';
	return 0;
}

static int admin_on_headers_complete(llhttp_t *p)
{
	struct admin_conn *c = p->data;

	c->is_head_done = true;
	return HPE_PAUSED; /* one request per connection: nothing after the head is read */
}

static void admin_on_read(struct bufferevent *bev, void *arg)
{
	struct admin_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec v;
	llhttp_errno_t err = HPE_OK;

	while (c->state == ADMIN_CONN_READING && evbuffer_peek(in, -1, NULL, &v, 1) == 1) {
		size_t n = v.iov_len;

		if (c->head_bytes + n > c->a->max_head_bytes) {
			admin_respond(c, 431, "text/plain", NULL, "request head too large\n", false);
			return;
		}
		err = llhttp_execute(&c->parser, v.iov_base, n);
		c->head_bytes += n;
		evbuffer_drain(in, n);
		if (c->is_head_done) {
			if (c->is_target_too_long)
				admin_respond(c, 404, "text/plain", NULL, "not found\n", false);
			else
				admin_dispatch(c);
			return;
		}
		if (err != HPE_OK) {
			admin_respond(c, 400, "text/plain", NULL, "bad request\n", false);
			return;
		}
	}
}

static void admin_on_write(struct bufferevent *bev, void *arg)
{
	struct admin_conn *c = arg;

	if (c->state == ADMIN_CONN_WRITING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		admin_conn_free(c);
}

static void admin_on_event(struct bufferevent *bev, short what, void *arg)
{
	struct admin_conn *c = arg;

	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && c->state == ADMIN_CONN_READING) {
		admin_respond(c, 408, "text/plain", NULL, "request timeout\n", false);
		return;
	}
	admin_conn_free(c); /* EOF, error, or a write that timed out */
}

static void admin_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                            void *arg)
{
	struct admin *a = arg;
	struct admin_conn *c;
	struct timeval tv = {(time_t)(a->timeout_ms / 1000), (suseconds_t)(a->timeout_ms % 1000) * 1000};

	if (a->n_conns >= ADMIN_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
		log_warn("admin: %u connections open, closing a new one", a->n_conns);
		close(fd);
		return;
	}
	c->bev = bufferevent_socket_new(a->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	c->a = a;
	c->state = ADMIN_CONN_READING;
	llhttp_init(&c->parser, HTTP_REQUEST, &admin_parser_settings);
	c->parser.data = c;
	c->next = a->conns;
	if (a->conns != NULL)
		a->conns->prev = c;
	a->conns = c;
	a->n_conns++;
	bufferevent_setcb(c->bev, admin_on_read, admin_on_write, admin_on_event, c);
	/* The header timeout bounds the request; the same bound then applies to writing the answer. */
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ);
}

static void admin_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	struct admin *a = arg;
	int i;

	if (a->st->workers == NULL || a->st->is_draining)
		return;
	for (i = 0; i < a->st->n_workers; i++)
		worker_heartbeat(&a->st->workers[i]);
}

struct admin *admin_new(struct event_base *base, const struct config *cfg, struct admin_state *st, FILE *err)
{
	struct admin *a;
	struct timeval hb = {ADMIN_HEARTBEAT_MS / 1000, (ADMIN_HEARTBEAT_MS % 1000) * 1000};

	llhttp_settings_init(&admin_parser_settings);
	admin_parser_settings.on_url = admin_on_url;
	admin_parser_settings.on_headers_complete = admin_on_headers_complete;
	a = jg_xcalloc(1, sizeof(*a));
	a->base = base;
	a->st = st;
	a->max_head_bytes = cfg->limits.max_header_bytes;
	a->timeout_ms = cfg->limits.header_timeout_ms ? cfg->limits.header_timeout_ms : 10000;
	a->listener = evconnlistener_new_bind(
	        base, admin_on_accept, a, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
	        64, (const struct sockaddr *)&cfg->admin_addr, (int)cfg->admin_addr_len);
	if (a->listener == NULL) {
		fprintf(err, "jwtgate: admin: cannot listen: %s\n", strerror(errno));
		free(a);
		return NULL;
	}
	event_assign(&a->heartbeat_ev, base, -1, EV_PERSIST, admin_on_heartbeat, a);
	evtimer_add(&a->heartbeat_ev, &hb);
	return a;
}

void admin_free(struct admin *a)
{
	if (a == NULL)
		return;
	evtimer_del(&a->heartbeat_ev);
	while (a->conns != NULL)
		admin_conn_free(a->conns);
	evconnlistener_free(a->listener);
	free(a);
}
