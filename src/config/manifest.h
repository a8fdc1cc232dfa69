/* manifest.h: Envoy Gateway / Gateway API manifests translated into the native configuration.
 *
 * A user's `kubectl apply -f` files (Gateway, HTTPRoute, GRPCRoute, SecurityPolicy, Backend and the
 * Kubernetes Services, EndpointSlices, Secrets and ConfigMaps they refer to) become one native
 * document (the jwtgate.yaml of jwtgate.yaml(5)) that config_load's own parser then validates: one
 * source of truth for what a configuration means. Every node of the native document keeps the source
 * mark of the manifest node it came from, and the file it is in, so an error the native parser finds
 * still names the manifest's file:line:column. Only config.c uses this module.
 */
#ifndef JWTGATE_MANIFEST_H
#define JWTGATE_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <yaml.h>

/* One YAML document of the input and the file (index into the caller's file names) it came from. */
struct manifest_src {
	yaml_document_t doc;
	int file;
};

/* The native top-level lists whose items a manifest object becomes; an error's key path under one of
 * them is shown as the object it came from ("HTTPRoute/foo spec" for httpRoutes[0]). */
enum manifest_section {
	MANIFEST_LISTENERS = 0,
	MANIFEST_BACKENDS,
	MANIFEST_HTTP_ROUTES,
	MANIFEST_GRPC_ROUTES,
	MANIFEST_POLICIES,
	MANIFEST_N_SECTIONS,
};

struct manifest_result {
	yaml_document_t doc; /* the native document; valid when manifest_translate returned 0 */
	bool has_doc;
	int *node_file; /* node_file[id - 1]: the file of native node id */
	size_t n_node_file, cap_node_file;
	char **labels[MANIFEST_N_SECTIONS]; /* labels[s][i]: "Kind/name path" of item i of section s */
	size_t n_labels[MANIFEST_N_SECTIONS];
};

/* User text quoted in a configuration message: at most CONFIG_SHOW_MAX bytes, then "...". */
#define CONFIG_SHOW_MAX 64
/* Writes s into buf (CONFIG_SHOW_MAX + 4 bytes) with control bytes shown as '?', so a message line
 * never carries a terminal escape or a line break from the file. Returns buf. Shared by the native
 * loader and the manifest translation. */
const char *config_show(const char *s, char *buf);

/* True when doc's root is a mapping with an `apiVersion` or `kind` key: a Kubernetes object, not a
 * native configuration. */
bool manifest_doc_is_object(yaml_document_t *doc);

/* Translates the objects of srcs[0..n) (documents with a null root are skipped) into out->doc.
 * Errors go to err as "file:line:column: message (at Kind/name path)" with file = files[src.file].
 * Returns the number of errors (0: out->doc is the native document). out is always to be released
 * with manifest_result_free. */
int manifest_translate(const struct manifest_src *srcs, size_t n, const char *const *files, FILE *err,
                       struct manifest_result *out);
void manifest_result_free(struct manifest_result *out);

#endif
