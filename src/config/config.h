/* config.h: the parsed configuration (immutable once loaded, shared read-only by every worker).
 *
 * config_load() reads the YAML file of CONFIG.md with libyaml, reports every error as
 * "file:line:column: message (at key.path)" and resolves every reference (backendRefs -> backends,
 * targetRefs -> routes, policies attached to routes). Workers only ever read a struct config.
 */
#ifndef JWTGATE_CONFIG_H
#define JWTGATE_CONFIG_H

#include <regex.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* ---- matches ---- */

enum config_match_type {
	CONFIG_MATCH_EXACT = 0,
	CONFIG_MATCH_PATH_PREFIX,
	CONFIG_MATCH_REGEX, /* RegularExpression: POSIX ERE, anchored to the whole value */
};

struct config_string_match {
	enum config_match_type type;
	char *name;  /* header or query parameter name (headers: lower-cased at load) */
	char *value; /* exact value, or the pattern text */
	size_t value_len;
	regex_t re; /* compiled with REG_EXTENDED|REG_NOSUB, pattern wrapped in ^(...)$ */
	bool has_re;
};

/* One entry of rules[].matches[]: every present field must match (AND). */
struct config_match {
	bool has_path;
	struct config_string_match path; /* name unused; PathPrefix value normalised without trailing '/' */
	char *method;                    /* NULL: any method */
	struct config_string_match *headers;
	size_t n_headers;
	struct config_string_match *query_params;
	size_t n_query_params;
	/* gRPC routes: method {type, service, method}; NULL service/method = any */
	bool has_grpc_method;
	enum config_match_type grpc_type; /* EXACT or REGEX */
	char *grpc_service;
	char *grpc_method;
	regex_t grpc_service_re, grpc_method_re;
	bool has_grpc_service_re, has_grpc_method_re;
};

/* ---- backends ---- */

enum config_backend_protocol { CONFIG_PROTO_HTTP = 0, CONFIG_PROTO_H2C, CONFIG_PROTO_H2 };
enum config_lb_type { CONFIG_LB_ROUND_ROBIN = 0, CONFIG_LB_LEAST_REQUEST, CONFIG_LB_RANDOM };
enum config_endpoint_kind { CONFIG_ENDPOINT_IP = 0, CONFIG_ENDPOINT_FQDN };

struct config_endpoint {
	enum config_endpoint_kind kind;
	char *host; /* IP literal (kind IP) or host name (kind FQDN) */
	uint16_t port;
	struct sockaddr_storage addr; /* filled for kind IP at load time */
	socklen_t addr_len;
};

struct config_tls_validation {
	bool enabled;
	char **ca_files; /* caCertificateRefs[].file, resolved against the config folder */
	size_t n_ca_files;
	char **ca_inline; /* caCertificateRefs[].inline PEM text */
	size_t n_ca_inline;
	bool well_known_system; /* wellKnownCACertificates: System */
	char *hostname;         /* SNI and the name the certificate must carry */
};

/* healthCheck.active: Envoy Gateway's ActiveHealthCheck (api/v1alpha1 healthcheck_types.go). */
enum config_hc_type { CONFIG_HC_NONE = 0, CONFIG_HC_HTTP, CONFIG_HC_GRPC };

struct config_active_hc {
	enum config_hc_type type;     /* NONE: no active health check */
	uint64_t timeout_ms;          /* default 1s */
	uint64_t interval_ms;         /* default 3s */
	uint32_t unhealthy_threshold; /* default 3, at least 1 */
	uint32_t healthy_threshold;   /* default 1, at least 1 */
	char *http_path;              /* HTTP: required, "/..." at most 1024 bytes */
	char *http_method;            /* HTTP: default "GET" (never CONNECT) */
	uint16_t *expected_statuses;  /* HTTP: default {200}; each 100..599 */
	size_t n_expected_statuses;
	char *grpc_service; /* GRPC: HealthCheckRequest.service; NULL = the whole server ("") */
};

struct config_backend {
	char *name;
	enum config_backend_protocol protocol;
	struct config_endpoint *endpoints;
	size_t n_endpoints;
	enum config_lb_type lb;
	uint64_t connect_timeout_ms; /* default 5s */
	uint64_t request_timeout_ms; /* default 30s; 0 = none */
	uint64_t idle_timeout_ms;    /* pooled connection idle, default 60s */
	uint32_t max_connections;    /* circuitBreaker, default 1024 per worker */
	uint32_t max_pending;        /* default 1024 */
	uint32_t max_requests;       /* default 1024 */
	/* healthCheck.panicThreshold: below this percentage of non-ejected endpoints, balance over all of
	 * them (Envoy's healthy_panic_threshold); default 50, 0 = never */
	uint32_t panic_threshold;
	struct config_active_hc active_hc; /* healthCheck.active */
	struct config_tls_validation tls;
	int index; /* position in config.backends */
};

struct config_backend_ref {
	char *name;
	struct config_backend *backend; /* resolved */
	uint16_t port;                  /* 0: the endpoint's own port */
	uint32_t weight;                /* default 1; 0 = never picked */
};

/* ---- routes ---- */

enum config_route_kind { CONFIG_ROUTE_HTTP = 0, CONFIG_ROUTE_GRPC };

struct config_route;

struct config_rule {
	struct config_match *matches; /* none: matches everything (PathPrefix "/") */
	size_t n_matches;
	struct config_backend_ref *backend_refs;
	size_t n_backend_refs;
	uint32_t total_weight;
	struct config_route *route; /* back pointer */
	int index;                  /* position within route->rules */
};

struct config_policy;

struct config_route {
	char *name;
	enum config_route_kind kind;
	char **hostnames; /* lower-cased; "*.example.com" wildcards kept as written */
	size_t n_hostnames;
	struct config_rule *rules;
	size_t n_rules;
	/* Policy in force for this route on a given listener: route policy overrides Gateway policy.
	 * policy_any_listener applies on every listener; policy_by_listener[i] (may be NULL) is the Gateway
	 * policy narrowed by sectionName to listener i; config_route_policy() picks. */
	const struct config_policy *route_policy;
	const struct config_policy **gateway_policy_by_listener; /* n_listeners entries, NULL = none */
	int index;
};

/* ---- security policies ---- */

struct config_claim_to_header {
	char *header; /* lower-cased */
	char *claim;  /* dot path */
};

struct config_extract_header {
	char *name;         /* lower-cased */
	char *value_prefix; /* may be empty */
};

struct config_retry {
	uint32_t num_retries;      /* default 2 */
	uint64_t base_interval_ms; /* default 25ms (Envoy) */
	uint64_t max_interval_ms;  /* default 10 x base */
	unsigned triggers;         /* CONFIG_RETRY_ON_* bits */
};

#define CONFIG_RETRY_ON_5XX             (1u << 0)
#define CONFIG_RETRY_ON_GATEWAY_ERROR   (1u << 1)
#define CONFIG_RETRY_ON_RESET           (1u << 2)
#define CONFIG_RETRY_ON_CONNECT_FAILURE (1u << 3)
#define CONFIG_RETRY_ON_RETRIABLE_4XX   (1u << 4)

struct config_remote_jwks {
	char *uri;
	char *backend_name;
	struct config_backend *backend; /* resolved backendRefs[0], or NULL */
	uint16_t backend_port;
	uint64_t cache_duration_ms;          /* default 300s */
	uint64_t failed_refetch_duration_ms; /* default 1s */
	uint64_t request_timeout_ms;         /* default 10s */
	struct config_retry retry;
};

enum config_jwks_source { CONFIG_JWKS_LOCAL = 0, CONFIG_JWKS_REMOTE };

/* clockSkew of a provider without one (Envoy's jwt_authn default); jwtgate-token verify uses it too. */
#define CONFIG_CLOCK_SKEW_DEFAULT_S 60

struct config_provider {
	char *name;
	char *issuer; /* NULL: not checked */
	char **audiences;
	size_t n_audiences;
	enum config_jwks_source jwks_source;
	char *local_jwks_json; /* Inline text, or the File's content read at load time */
	size_t local_jwks_len;
	char *local_jwks_origin; /* "inline" or the file path, for log lines */
	struct config_remote_jwks remote;
	struct config_claim_to_header *claim_to_headers;
	size_t n_claim_to_headers;
	bool recompute_route;
	bool has_extract_from; /* false: default Authorization "Bearer " + ?access_token= */
	struct config_extract_header *extract_headers;
	size_t n_extract_headers;
	char **extract_cookies;
	size_t n_extract_cookies;
	char **extract_params;
	size_t n_extract_params;
	uint64_t clock_skew_s;        /* default CONFIG_CLOCK_SKEW_DEFAULT_S */
	bool forward;                 /* default true */
	char *forward_payload_header; /* lower-cased, NULL = none */
	bool require_expiration;      /* default false */
	uint64_t max_lifetime_s;      /* 0 = unlimited */
	int index;                    /* global provider index, for per-worker key set and cache slots */
};

enum config_target_kind { CONFIG_TARGET_HTTPROUTE = 0, CONFIG_TARGET_GRPCROUTE, CONFIG_TARGET_GATEWAY };

struct config_target_ref {
	enum config_target_kind kind;
	char *name;         /* route name; for Gateway: ignored */
	char *section_name; /* listener name or NULL */
};

/* ---- authorization (Envoy Gateway SecurityPolicy `authorization`), compiled at load time ---- */

#define CONFIG_AUTHZ_MAX_RULES   256 /* per policy (jwtgate's bound; a verified token keeps 1 bit per rule) */
#define CONFIG_AUTHZ_MAX_VALUES  16  /* claims, claim values and scopes of a jwt principal */
#define CONFIG_AUTHZ_MAX_HEADERS 256 /* clientCIDRs, headers and header values of a principal */

/* Operation methods as bits (Gateway API HTTPMethod); 0 = every method. */
#define CONFIG_METHOD_GET     (1u << 0)
#define CONFIG_METHOD_HEAD    (1u << 1)
#define CONFIG_METHOD_POST    (1u << 2)
#define CONFIG_METHOD_PUT     (1u << 3)
#define CONFIG_METHOD_DELETE  (1u << 4)
#define CONFIG_METHOD_CONNECT (1u << 5)
#define CONFIG_METHOD_OPTIONS (1u << 6)
#define CONFIG_METHOD_TRACE   (1u << 7)
#define CONFIG_METHOD_PATCH   (1u << 8)

/* The CONFIG_METHOD_* bit of a method name, compared case-insensitively as Envoy Gateway's RBAC
 * matcher does (ignore_case on :method); 0 for any other method. Inline: the request path calls it. */
static inline unsigned config_method_bit(const char *name, size_t len)
{
	static const char *const names[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
	                                    "CONNECT", "OPTIONS", "TRACE", "PATCH"};
	size_t i, j;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		for (j = 0; j < len && names[i][j] != '\0'; j++)
			if ((name[j] & ~0x20) != names[i][j])
				break;
		if (j == len && names[i][j] == '\0')
			return 1u << i;
	}
	return 0;
}

struct config_cidr {
	int family;      /* AF_INET or AF_INET6 */
	unsigned prefix; /* 0..32 or 0..128 */
	uint8_t net[16]; /* address with the host bits cleared (network order) */
};

struct config_authz_claim {
	char *name;      /* dot path as written ("user.roles") */
	char **segments; /* name split at '.' (Envoy Gateway: one metadata key per segment) */
	size_t n_segments;
	bool string_array; /* valueType StringArray: the claim is an array with one element in values */
	char **values;     /* valueType String: the claim is a string equal to one of them */
	size_t n_values;
};

struct config_authz_header {
	char *name; /* lower-cased */
	char **values;
	size_t n_values;
};

struct config_authz_rule {
	char *name; /* given, or "rule-<index>" */
	bool allow; /* action */
	struct config_cidr *cidrs;
	size_t n_cidrs;
	bool has_jwt;
	char *jwt_provider;     /* principal.jwt.provider */
	int jwt_provider_index; /* its config_provider.index */
	struct config_authz_claim *claims;
	size_t n_claims;
	char **scopes;
	size_t n_scopes;
	struct config_authz_header *headers;
	size_t n_headers;
	unsigned methods; /* CONFIG_METHOD_* bits, 0 = any */
};

struct config_authz {
	bool default_allow; /* defaultAction; Envoy Gateway's default is Deny */
	struct config_authz_rule *rules;
	size_t n_rules;
	bool needs_claims; /* some rule has a jwt principal */
};

struct config_policy {
	char *name;
	struct config_target_ref *targets;
	size_t n_targets;
	bool has_jwt;
	struct config_provider *providers;
	size_t n_providers;
	bool optional;
	bool fail_open;
	bool has_authz;
	struct config_authz authz;
	int index;
};

/* ---- client traffic (Envoy Gateway ClientTrafficPolicy: headers, path) ---- */

/* headers.withUnderscoresAction: what a request header whose name contains '_' gets. */
enum config_underscores_action {
	CONFIG_UNDERSCORES_REJECT = 0, /* RejectRequest (Envoy Gateway's default): 400 */
	CONFIG_UNDERSCORES_ALLOW,      /* Allow: forwarded as received */
	CONFIG_UNDERSCORES_DROP,       /* DropHeader: removed before routing, auth and forwarding */
};

/* path.escapedSlashesAction: what %2F / %5C (any case) in the path get. */
enum config_escaped_slashes_action {
	CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT = 0, /* Envoy Gateway's default */
	CONFIG_ESCAPED_SLASHES_KEEP_UNCHANGED,
	CONFIG_ESCAPED_SLASHES_REJECT_REQUEST,
	CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_FORWARD,
};

/* The settings a listener applies to every request it receives, from the clientTrafficPolicy that
 * targets it (sectionName) or the whole Gateway, else these defaults (Envoy Gateway's). */
struct config_client_traffic {
	enum config_underscores_action underscores;         /* default RejectRequest */
	enum config_escaped_slashes_action escaped_slashes; /* default UnescapeAndRedirect */
	bool merge_slashes;                                 /* !disableMergeSlashes, default true */
	const char *policy_name;                            /* the policy in force, NULL = defaults */
};

struct config_client_policy {
	char *name;
	struct config_target_ref *targets;
	size_t n_targets;
	struct config_client_traffic settings;
	bool has_headers, has_path;
	int index;
};

/* ---- listeners and top level ---- */

#define CONFIG_TICKET_ROTATION_DEFAULT_MS (3600 * 1000) /* tls.ticketKeyRotation: 1h */

struct config_listener {
	char *name;
	char *address_text;
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool has_tls;
	char *tls_cert_file; /* NULL when inline */
	char *tls_key_file;
	char *tls_cert_pem; /* tls.certificate / tls.privateKey: PEM text inline (from a Secret) */
	char *tls_key_pem;
	uint64_t tls_ticket_rotation_ms;     /* tls.ticketKeyRotation: a new session ticket key this often */
	struct config_client_traffic client; /* clientTrafficPolicies in force, or the defaults */
	int index;
};

enum config_log_format { CONFIG_LOG_TEXT = 0, CONFIG_LOG_JSON };

struct config_limits {
	uint32_t max_header_bytes;          /* request line + headers, default 60 KiB -> 431 */
	uint32_t max_header_count;          /* default 100 -> 431 */
	uint32_t max_request_line;          /* default 8 KiB -> 414 */
	uint64_t max_body_bytes;            /* 0 = unlimited -> 413 */
	uint64_t header_timeout_ms;         /* default 10s -> 408 */
	uint64_t idle_timeout_ms;           /* keep-alive idle, default 60s */
	uint64_t drain_timeout_ms;          /* SIGTERM drain bound, default 10s */
	uint32_t max_connections;           /* per process, default 10000 */
	uint32_t h2_max_concurrent_streams; /* default 100 */
	uint32_t listen_backlog;            /* listen(2) backlog, default 4096, capped by somaxconn */
};

struct config {
	char *path;     /* the (first) file or folder given with -c */
	char *dir;      /* its folder, for relative paths (a native file's) */
	char **sources; /* every file read, folders expanded, in load order (reload watches them) */
	size_t n_sources;
	char **source_dirs; /* folders given with -c: a *.yaml added there is seen by reload.watch */
	size_t n_source_dirs;
	bool is_from_manifests; /* Kubernetes manifests translated (jwtgate.yaml(5) MANIFESTS) */
	int workers;            /* resolved: `auto` = online CPUs */
	bool has_admin;
	struct sockaddr_storage admin_addr;
	socklen_t admin_addr_len;
	char *access_log_path; /* NULL = off; "stdout" / "stderr" / file */
	enum config_log_format access_log_format;
	bool access_log_sub;        /* accessLog.includeSub: JSON lines carry the verified token's sub */
	uint64_t access_log_buffer; /* accessLog.bufferSize: bytes queued per worker; default 256 KiB */
	int log_level;              /* enum log_level */
	uint32_t token_cache_size;  /* per worker verified-token cache entries; 0 = off; default 4096 */
	struct config_limits limits;
	bool reload_watch; /* reload.watch: reload when the file or a file it names changes (inotify) */

	struct config_listener *listeners;
	size_t n_listeners;
	struct config_backend *backends;
	size_t n_backends;
	struct config_route *routes; /* httpRoutes then grpcRoutes */
	size_t n_routes;
	struct config_policy *policies;
	size_t n_policies;
	size_t n_providers; /* across all policies */
	struct config_client_policy *client_policies;
	size_t n_client_policies;
};

/* Loads and validates the file. On success returns 0 and *out owns a new config. On failure writes
 * every error as "file:line:column: message" to err (one per line), returns the error count (> 0) or a
 * negative JG_ERR_* when the file cannot be read at all. */
int config_load(const char *path, FILE *err, struct config **out);

/* Like config_load over several -c arguments: each a file or a folder (its *.yaml and *.yml files, in
 * name order, like `kubectl apply -f dir/`). One native file, or any number of Kubernetes manifest
 * files (multi-document streams; see jwtgate.yaml(5) MANIFESTS), which are translated into the native
 * configuration and validated by the same parser; errors name the manifest's file:line:column. */
int config_load_many(const char *const *paths, size_t n_paths, FILE *err, struct config **out);

/* Loads like config_load_many and, when the configuration is valid, writes it to out as a native
 * jwtgate.yaml (what --print-config shows). Returns like config_load_many. */
int config_print(const char *const *paths, size_t n_paths, FILE *out, FILE *err);
void config_free(struct config *cfg);

/* The policy in force for a route reached through a listener: route policy, else the Gateway's. */
const struct config_policy *config_route_policy(const struct config_route *route, int listener_index);

/* Parsing helpers shared with other modules (and tested on their own). */
int config_parse_duration_ms(const char *s, uint64_t *out_ms); /* "1h30m", "500ms", "300s" */
int config_parse_size(const char *s, uint64_t *out);           /* "64KiB", "1MiB", "123" */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len); /* IP:port, [v6]:port */

#endif
