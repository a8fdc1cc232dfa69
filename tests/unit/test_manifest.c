/* test_manifest.c: Kubernetes manifests through config_load_many (src/config/manifest.c): what each
 * supported kind becomes in the native configuration, and one case per unsupported field or
 * reference, each with its exact "file:line:column: message (at Kind/name path)". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <ftw.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "core/common.h"
#include "config/config.h"

static char t_dir[64];
static char t_a[128], t_b[128];
static char *t_err;

/* The cluster part: the Gateway and a Service with its EndpointSlice (a.yaml). */
static const char base_gateway[] = "apiVersion: gateway.networking.k8s.io/v1\n"
                                   "kind: Gateway\n"
                                   "metadata: {name: eg}\n"
                                   "spec:\n"
                                   "  gatewayClassName: eg\n"
                                   "  listeners: [{name: http, protocol: HTTP, port: 18080}]\n";
static const char base_rest[] = "---\n"
                                "apiVersion: v1\n"
                                "kind: Service\n"
                                "metadata: {name: backend}\n"
                                "spec:\n"
                                "  ports: [{name: http, port: 3000, targetPort: 3000}]\n"
                                "---\n"
                                "apiVersion: discovery.k8s.io/v1\n"
                                "kind: EndpointSlice\n"
                                "metadata:\n"
                                "  name: backend-1\n"
                                "  labels: {kubernetes.io/service-name: backend}\n"
                                "addressType: IPv4\n"
                                "ports: [{name: http, port: 3001}]\n"
                                "endpoints:\n"
                                "- addresses: [127.0.0.2]\n"
                                "- addresses: [127.0.0.3]\n"
                                "  conditions: {ready: false}\n";

/* A route (b.yaml) that the cases start from. */
#define ROUTE_HEAD                                                                                           \
	"apiVersion: gateway.networking.k8s.io/v1\n"                                                         \
	"kind: HTTPRoute\n"                                                                                  \
	"metadata: {name: foo}\n"                                                                            \
	"spec:\n"                                                                                            \
	"  parentRefs: [{name: eg}]\n"

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
	strcpy(t_dir, "/tmp/jg-test-manifest-XXXXXX");
	assert_non_null(mkdtemp(t_dir));
	snprintf(t_a, sizeof(t_a), "%s/a.yaml", t_dir);
	snprintf(t_b, sizeof(t_b), "%s/b.yaml", t_dir);
	t_err = NULL;
	return 0;
}

static int t_teardown(void **state)
{
	JG_UNUSED(state);
	free(t_err);
	t_err = NULL;
	nftw(t_dir, t_rm, 8, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static void t_write(const char *path, const char *a, const char *b)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	fputs(a, f);
	if (b != NULL)
		fputs(b, f);
	fclose(f);
}

/* Loads a.yaml (gateway part, or the default, plus the rest) and b.yaml; returns the result code,
 * the errors in t_err. */
static int t_load(const char *gateway, const char *b, struct config **out)
{
	const char *paths[2] = {t_a, t_b};
	size_t len = 0;
	FILE *err;
	int rc;

	t_write(t_a, gateway != NULL ? gateway : base_gateway, base_rest);
	t_write(t_b, b, NULL);
	free(t_err);
	t_err = NULL;
	err = open_memstream(&t_err, &len);
	assert_non_null(err);
	rc = config_load_many(paths, 2, err, out);
	fclose(err);
	return rc;
}

/* Expects an error whose text, with "F:" standing for b.yaml's path (or "A:" for a.yaml's), is in
 * the output. */
static void t_expect(const char *gateway, const char *b, const char *want)
{
	struct config *cfg = NULL;
	char line[1024];
	int rc = t_load(gateway, b, &cfg);

	assert_true(rc > 0);
	assert_null(cfg);
	snprintf(line, sizeof(line), "%s:%s", want[0] == 'A' ? t_a : t_b, want + 2);
	if (strstr(t_err, line) == NULL)
		fail_msg("expected\n  %s\nin\n%s", line, t_err);
}

/* ---- what the kinds become ---- */

static void test_route_service_slice_policy(void **state)
{
	static const char b[] = ROUTE_HEAD
	        "  hostnames: [www.example.com]\n"
	        "  rules:\n"
	        "  - matches: [{path: {type: PathPrefix, value: /foo}}]\n"
	        "    backendRefs: [{group: \"\", kind: Service, name: backend, port: 3000, weight: 2}]\n"
	        "---\n"
	        "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
	        "kind: SecurityPolicy\n"
	        "metadata:\n"
	        "  name: jwt-example\n"
	        "  labels: {a: b}\n"
	        "  annotations: {c: d}\n"
	        "spec:\n"
	        "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: foo}\n"
	        "  jwt:\n"
	        "    providers:\n"
	        "    - name: example\n"
	        "      localJWKS: {type: ValueRef, valueRef: {group: \"\", kind: ConfigMap, name: keys}}\n"
	        "status: {conditions: []}\n"
	        "---\n"
	        "apiVersion: v1\n"
	        "kind: ConfigMap\n"
	        "metadata: {name: keys}\n"
	        "data:\n"
	        "  jwks: '{\"keys\":[]}'\n";
	struct config *cfg = NULL;
	struct config_backend *be;

	JG_UNUSED(state);
	assert_int_equal(t_load(NULL, b, &cfg), 0);
	assert_true(cfg->is_from_manifests);
	assert_int_equal(cfg->n_sources, 2);
	assert_int_equal(cfg->n_listeners, 1);
	assert_string_equal(cfg->listeners[0].name, "http");
	assert_string_equal(cfg->listeners[0].address_text, "0.0.0.0:18080");
	assert_int_equal(cfg->n_backends, 1);
	be = &cfg->backends[0];
	assert_string_equal(be->name, "backend:3000");
	assert_int_equal(be->protocol, CONFIG_PROTO_HTTP);
	/* the EndpointSlice's port named like the Service port; the not-ready endpoint left out */
	assert_int_equal(be->n_endpoints, 1);
	assert_string_equal(be->endpoints[0].host, "127.0.0.2");
	assert_int_equal(be->endpoints[0].port, 3001);
	assert_int_equal(cfg->n_routes, 1);
	assert_string_equal(cfg->routes[0].name, "foo");
	assert_int_equal(cfg->routes[0].rules[0].backend_refs[0].weight, 2);
	assert_ptr_equal(cfg->routes[0].rules[0].backend_refs[0].backend, be);
	assert_int_equal(cfg->n_policies, 1);
	assert_ptr_equal(cfg->routes[0].route_policy, &cfg->policies[0]);
	assert_string_equal(cfg->policies[0].providers[0].local_jwks_json, "{\"keys\":[]}");
	config_free(cfg);
}

static void test_grpc_route_dns_service_and_tls_secret(void **state)
{
	/* the Gateway and its Secret in the route's namespace */
	static const char gw[] = "apiVersion: gateway.networking.k8s.io/v1\n"
	                         "kind: Gateway\n"
	                         "metadata: {name: eg, namespace: grpc}\n"
	                         "spec:\n"
	                         "  gatewayClassName: eg\n"
	                         "  listeners:\n"
	                         "  - name: https\n"
	                         "    protocol: HTTPS\n"
	                         "    port: 18443\n"
	                         "    tls:\n"
	                         "      mode: Terminate\n"
	                         "      certificateRefs: [{kind: Secret, name: cert}]\n"
	                         "---\n"
	                         "apiVersion: v1\n"
	                         "kind: Secret\n"
	                         "metadata: {name: cert, namespace: grpc}\n"
	                         "type: kubernetes.io/tls\n"
	                         "data:\n"
	                         "  tls.crt: Q0VSVAo=\n"
	                         "  tls.key: S0VZCg==\n";
	static const char b[] = "apiVersion: gateway.networking.k8s.io/v1\n"
	                        "kind: GRPCRoute\n"
	                        "metadata: {name: yages, namespace: grpc}\n"
	                        "spec:\n"
	                        "  parentRefs: [{name: eg, namespace: grpc}]\n"
	                        "  rules:\n"
	                        "  - backendRefs: [{name: yages, port: 9000}]\n"
	                        "---\n"
	                        "apiVersion: v1\n"
	                        "kind: Service\n"
	                        "metadata: {name: yages, namespace: grpc}\n"
	                        "spec:\n"
	                        "  ports: [{port: 9000, targetPort: 9001}]\n";
	struct config *cfg = NULL;

	JG_UNUSED(state);
	assert_int_equal(t_load(gw, b, &cfg), 0);
	assert_true(cfg->listeners[0].has_tls);
	assert_null(cfg->listeners[0].tls_cert_file);
	assert_string_equal(cfg->listeners[0].tls_cert_pem, "CERT\n");
	assert_string_equal(cfg->listeners[0].tls_key_pem, "KEY\n");
	/* namespace-qualified names; no EndpointSlice: the cluster DNS name at the Service port; a
	 * GRPCRoute's backend is HTTP/2 */
	assert_string_equal(cfg->routes[0].name, "grpc/yages");
	assert_string_equal(cfg->backends[0].name, "grpc/yages:9000/grpc");
	assert_int_equal(cfg->backends[0].protocol, CONFIG_PROTO_H2C);
	assert_int_equal(cfg->backends[0].endpoints[0].kind, CONFIG_ENDPOINT_FQDN);
	assert_string_equal(cfg->backends[0].endpoints[0].host, "yages.grpc.svc");
	assert_int_equal(cfg->backends[0].endpoints[0].port, 9000);
	config_free(cfg);
}

/* ---- every unsupported field: an error at its position ---- */

static void test_unsupported_route_fields(void **state)
{
	JG_UNUSED(state);
	/* copied as is: the native parser's unknown key, at the manifest's position */
	t_expect(NULL,
	         ROUTE_HEAD "  rules:\n"
	                    "  - backendRefs: [{name: backend, port: 3000}]\n"
	                    "    filters: [{type: RequestHeaderModifier}]\n",
	         "F:8:5: unknown key \"filters\" (at HTTPRoute/foo spec.rules[0])");
	t_expect(NULL,
	         ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, port: 3000}]\n    timeouts: {}\n",
	         "F:8:5: unknown key \"timeouts\" (at HTTPRoute/foo spec.rules[0])");
	t_expect(NULL, ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, port: 3000, filters: []}]\n",
	         "F:7:47: \"filters\" is not supported by jwtgate (at HTTPRoute/foo "
	         "spec.rules[0].backendRefs[0])");
	t_expect(NULL, ROUTE_HEAD "  useDefaultGateways: All\n  rules: []\n",
	         "F:6:3: \"useDefaultGateways\" is not supported by jwtgate (at HTTPRoute/foo spec)");
	t_expect(NULL,
	         "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: foo}\n"
	         "spec:\n  parentRefs: [{name: eg, sectionName: http}]\n  rules: []\n",
	         "F:5:27: \"sectionName\" is not supported by jwtgate (at HTTPRoute/foo spec.parentRefs[0])");
	t_expect(NULL,
	         "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: foo}\n"
	         "spec:\n  parentRefs: [{name: other}]\n  rules: []\n",
	         "F:5:23: no Gateway \"other\" in namespace \"default\" in the input");
	t_expect(NULL,
	         "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: foo}\n"
	         "spec:\n  rules: []\n",
	         "F:5:3: missing required key \"parentRefs\" (at HTTPRoute/foo spec)");
	t_expect(NULL,
	         ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, namespace: other, port: 3000}]\n",
	         "F:7:46: a reference to namespace \"other\" needs a ReferenceGrant");
	t_expect(NULL, ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, port: 4000}]\n",
	         "F:7:19: Service/backend has no port 4000 (at HTTPRoute/foo spec.rules[0].backendRefs[0])");
	t_expect(NULL, ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend}]\n",
	         "F:7:19: a Service backendRef needs \"port\"");
	t_expect(NULL, ROUTE_HEAD "  rules:\n  - backendRefs: [{kind: ServiceImport, name: backend}]\n",
	         "F:7:26: a reference to kind \"ServiceImport\" is not supported here");
}

static void test_unsupported_policy_fields(void **state)
{
	static const char head[] =
	        ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, port: 3000}]\n"
	                   "---\n"
	                   "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
	                   "kind: SecurityPolicy\n"
	                   "metadata: {name: p}\n"
	                   "spec:\n"
	                   "  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, "
	                   "name: foo}\n";
	char b[2048];

	JG_UNUSED(state);
	snprintf(b, sizeof(b), "%s  basicAuth: {users: {name: u}}\n", head);
	t_expect(NULL, b, "F:14:3: unknown key \"basicAuth\" (at SecurityPolicy/p spec)");
	snprintf(b, sizeof(b),
	         "%s  targetSelectors: []\n  jwt: {providers: [{name: x, remoteJWKS: {uri: https://a/}}]}\n",
	         head);
	t_expect(NULL, b, "F:14:3: unknown key \"targetSelectors\" (at SecurityPolicy/p spec)");
	snprintf(b, sizeof(b),
	         "%s  jwt:\n    providers:\n    - name: x\n      remoteJWKS: {uri: https://a/, foo: 1}\n",
	         head);
	t_expect(NULL, b,
	         "F:17:37: unknown key \"foo\" (at SecurityPolicy/p spec.jwt.providers[0].remoteJWKS)");
	snprintf(b, sizeof(b),
	         "%s  jwt:\n    providers:\n    - name: x\n      localJWKS: {type: ValueRef, valueRef: "
	         "{name: nope}}\n",
	         head);
	t_expect(NULL, b, "F:17:52: no ConfigMap \"nope\" in the input");
	/* a jwtgate-only localJWKS type is not an Envoy Gateway manifest's */
	snprintf(
	        b, sizeof(b),
	        "%s  jwt:\n    providers:\n    - name: x\n      localJWKS: {type: File, file: /etc/passwd}\n",
	        head);
	t_expect(NULL, b, "F:17:25: localJWKS type \"File\" is not supported (Inline or ValueRef)");
	snprintf(b, sizeof(b), "%s  jwt: {providers: [{name: x, remoteJWKS: {uri: https://a/}}]}\n", head);
	b[strlen(b) - 1] = '\0';
	strcat(b,
	       "\n---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: "
	       "q}\n"
	       "spec:\n  targetRef: {kind: Gateway, name: other}\n  jwt: {providers: [{name: y, remoteJWKS: "
	       "{uri: https://a/}}]}\n");
	t_expect(NULL, b, "F:20:36: no Gateway \"other\" in the input (at SecurityPolicy/q spec.targetRef)");
}

static void test_unsupported_gateway_and_cluster_fields(void **state)
{
	static const char route[] = ROUTE_HEAD "  rules:\n  - backendRefs: [{name: backend, port: 3000}]\n";

	JG_UNUSED(state);
	t_expect("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	         "  gatewayClassName: eg\n  listeners: [{name: http, protocol: HTTP, port: 80, hostname: "
	         "a.b}]\n",
	         route, "A:6:54: \"hostname\" is not supported by jwtgate (at Gateway/eg spec.listeners[0])");
	t_expect("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	         "  gatewayClassName: eg\n  addresses: []\n  listeners: [{name: http, protocol: HTTP, port: "
	         "80}]\n",
	         route, "A:6:3: \"addresses\" is not supported by jwtgate (at Gateway/eg spec)");
	t_expect("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	         "  gatewayClassName: eg\n  listeners: [{name: t, protocol: TCP, port: 80}]\n",
	         route, "A:6:35: protocol \"TCP\" is not supported (HTTP or HTTPS)");
	t_expect("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	         "  gatewayClassName: eg\n  listeners: [{name: s, protocol: HTTPS, port: 443, tls: {mode: "
	         "Passthrough}}]\n",
	         route, "A:6:65: tls mode \"Passthrough\" is not supported (Terminate)");
	t_expect(
	        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: eg}\nspec:\n"
	        "  gatewayClassName: eg\n  listeners: [{name: http, protocol: HTTP, port: 80, allowedRoutes: "
	        "{namespaces: {from: All}}}]\n",
	        route, "A:6:89: allowedRoutes from \"All\" is not supported (Same)");
	t_expect(NULL, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
	         "F:2:7: kind \"Deployment\" is not supported by jwtgate");
	t_expect(NULL,
	         "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: d}\n",
	         "F:1:13: apiVersion \"gateway.networking.k8s.io/v1beta1\" of HTTPRoute is not supported");
	t_expect(NULL, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, uid: x}\n",
	         "F:3:21: \"uid\" is not supported by jwtgate (at ConfigMap metadata)");
	t_expect(NULL, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nbinaryData: {}\n",
	         "F:4:1: \"binaryData\" is not supported by jwtgate (at ConfigMap/c)");
	t_expect(NULL,
	         "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: two}\nspec:\n"
	         "  gatewayClassName: eg\n  listeners: [{name: h, protocol: HTTP, port: 81}]\n",
	         "F:1:1: a second Gateway: jwtgate serves one Gateway");
	t_expect(NULL,
	         ROUTE_HEAD
	         "  rules:\n  - backendRefs: [{name: svc2, port: 80}]\n---\napiVersion: v1\nkind: Service\n"
	         "metadata: {name: svc2}\nspec:\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n",
	         "F:13:20: sessionAffinity \"ClientIP\" is not supported (None)");
	t_expect(
	        NULL,
	        ROUTE_HEAD
	        "  rules:\n  - backendRefs: [{name: svc2, port: 80}]\n---\napiVersion: v1\nkind: Service\n"
	        "metadata: {name: svc2}\nspec:\n  ports: [{port: 80}]\n---\napiVersion: discovery.k8s.io/v1\n"
	        "kind: EndpointSlice\nmetadata: {name: s, labels: {kubernetes.io/service-name: svc2}}\n"
	        "addressType: FQDN\nendpoints: [{addresses: [a.b]}]\n",
	        "F:18:14: addressType \"FQDN\" is not supported (IPv4 or IPv6)");
	t_expect(NULL,
	         ROUTE_HEAD
	         "  rules:\n  - backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: be}]\n"
	         "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: be}\n"
	         "spec:\n  endpoints: [{ip: {address: 127.0.0.1, port: 1}}]\n  tls: {}\n",
	         "F:14:3: \"tls\" is not supported by jwtgate (at Backend/be spec)");
	t_expect(NULL,
	         ROUTE_HEAD
	         "  rules:\n  - backendRefs: [{group: gateway.envoyproxy.io, kind: Backend, name: be}]\n"
	         "---\napiVersion: gateway.envoyproxy.io/v1alpha1\nkind: Backend\nmetadata: {name: be}\n"
	         "spec:\n  endpoints: [{unix: {path: /s}}]\n",
	         "F:13:16: unknown key \"unix\" (at Backend/be spec.endpoints[0])");
}

#define T(f) cmocka_unit_test_setup_teardown(f, t_setup, t_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_route_service_slice_policy),
	        T(test_grpc_route_dns_service_and_tls_secret),
	        T(test_unsupported_route_fields),
	        T(test_unsupported_policy_fields),
	        T(test_unsupported_gateway_and_cluster_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
