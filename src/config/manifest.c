/* manifest.c: Envoy Gateway / Gateway API manifests -> the native configuration document.
 *
 * The translation is structural and small on purpose: it resolves what Kubernetes would resolve
 * (names across objects, namespaces, Services to endpoints, Secrets and ConfigMaps to their content)
 * and copies everything else as it is, keeping each node's source mark, for config.c's parser to
 * validate. So a field jwtgate does not implement (an HTTPRoute filter, a SecurityPolicy's basicAuth)
 * reaches the native parser as an unknown key and is an error at its manifest position, never
 * dropped. What the translation itself consumes (metadata, parentRefs, Gateway listeners, backendRefs,
 * targetRefs) it checks key by key here, with the same rule: an unsupported key is an error.
 *
 * Namespaces: an object without metadata.namespace is in "default"; references resolve within the
 * referring object's namespace, and a reference naming another namespace is refused (that needs a
 * ReferenceGrant, which jwtgate does not implement). Native names are the object's name, prefixed
 * with "<namespace>/" outside "default"; a Service becomes one backend per port used, named
 * "<service>:<port>".
 */
#include "config/manifest.h"
#include "core/common.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MF_MAX_DEPTH     64     /* nesting copied as-is; deeper is refused (the native schema is shallower) */
#define MF_MAX_COPY      200000 /* nodes copied, aliases expanded: bounds a "billion laughs" input */
#define MF_MAX_PEM_BYTES (1u << 20)

enum mf_kind {
	MF_GATEWAYCLASS = 0,
	MF_GATEWAY,
	MF_HTTPROUTE,
	MF_GRPCROUTE,
	MF_SECURITYPOLICY,
	MF_BACKEND,
	MF_SERVICE,
	MF_ENDPOINTSLICE,
	MF_SECRET,
	MF_CONFIGMAP,
	MF_N_KINDS,
};

/* kind, apiVersion, the top-level keys besides apiVersion/kind/metadata/status */
static const struct {
	const char *kind;
	const char *api;
	const char *const keys[5];
} mf_kinds[MF_N_KINDS] = {
        [MF_GATEWAYCLASS] = {"GatewayClass", "gateway.networking.k8s.io/v1", {"spec", NULL}},
        [MF_GATEWAY] = {"Gateway", "gateway.networking.k8s.io/v1", {"spec", NULL}},
        [MF_HTTPROUTE] = {"HTTPRoute", "gateway.networking.k8s.io/v1", {"spec", NULL}},
        [MF_GRPCROUTE] = {"GRPCRoute", "gateway.networking.k8s.io/v1", {"spec", NULL}},
        [MF_SECURITYPOLICY] = {"SecurityPolicy", "gateway.envoyproxy.io/v1alpha1", {"spec", NULL}},
        [MF_BACKEND] = {"Backend", "gateway.envoyproxy.io/v1alpha1", {"spec", NULL}},
        [MF_SERVICE] = {"Service", "v1", {"spec", NULL}},
        [MF_ENDPOINTSLICE] = {"EndpointSlice",
                              "discovery.k8s.io/v1",
                              {"addressType", "endpoints", "ports", NULL}},
        [MF_SECRET] = {"Secret", "v1", {"type", "data", "stringData", "immutable", NULL}},
        [MF_CONFIGMAP] = {"ConfigMap", "v1", {"data", "immutable", NULL}},
};

struct mf_obj {
	enum mf_kind kind;
	const struct manifest_src *src;
	yaml_node_t *root;
	yaml_node_t *spec; /* NULL when absent */
	const char *name;
	const char *ns;
	const char *service_label; /* EndpointSlice: kubernetes.io/service-name */
	char label[352];           /* "Kind/name" (namespace-qualified outside default) */
	char qname[320];           /* the native name (name <= 253, namespace <= 63 bytes) */
};

/* A backend made from a Service port; the same Service port used twice is one backend. */
struct mf_svc_backend {
	const struct mf_obj *svc;
	long port;
	bool is_h2c;
	char name[352];
};

struct mf_ctx {
	const char *const *files;
	FILE *err;
	int n_errors;
	struct mf_obj *objs;
	size_t n_objs;
	const struct mf_obj *gateway;
	struct manifest_result *out;
	int seq[MANIFEST_N_SECTIONS];
	long copies;
	struct mf_svc_backend *svcs;
	size_t n_svcs;
};

/* snprintf for key paths and names: longer text is cut (messages only; names are bounded by the
 * Kubernetes name limits well below the buffers). */
static void mf_fmt(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void mf_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

/* ---------------------------------------------------------------- messages ---- */

const char *config_show(const char *s, char *buf)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i < CONFIG_SHOW_MAX; i++)
		buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
	if (s[i] != '\0') {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

static void mf_error(struct mf_ctx *c, const struct mf_obj *o, const struct manifest_src *src,
                     const yaml_node_t *n, const char *path, const char *fmt, ...)
        __attribute__((format(printf, 6, 7)));

/* One error at n's position in src (o's document when src is NULL), "(at Kind/name path)". */
static void mf_error(struct mf_ctx *c, const struct mf_obj *o, const struct manifest_src *src,
                     const yaml_node_t *n, const char *path, const char *fmt, ...)
{
	va_list ap;

	if (src == NULL && o != NULL)
		src = o->src;
	fprintf(c->err, "%s:%lu:%lu: ", src != NULL ? c->files[src->file] : c->files[0],
	        n != NULL ? (unsigned long)n->start_mark.line + 1 : 1UL,
	        n != NULL ? (unsigned long)n->start_mark.column + 1 : 1UL);
	va_start(ap, fmt);
	vfprintf(c->err, fmt, ap);
	va_end(ap);
	if (o != NULL)
		fprintf(c->err, " (at %s%s%s)", o->label, path != NULL && path[0] != '\0' ? " " : "",
		        path != NULL ? path : "");
	fputc('\n', c->err);
	c->n_errors++;
}

/* ---------------------------------------------------------------- source nodes ---- */

static yaml_node_t *mf_node(const struct mf_obj *o, int id)
{
	return yaml_document_get_node((yaml_document_t *)&o->src->doc, id);
}

static bool mf_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n == NULL || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	       strcmp(v, "NULL") == 0;
}

/* The text of a scalar without NUL bytes, else NULL. */
static const char *mf_text(const yaml_node_t *n)
{
	if (n == NULL || n->type != YAML_SCALAR_NODE ||
	    memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL)
		return NULL;
	return (const char *)n->data.scalar.value;
}

/* Value of key in the mapping map of o's document, or NULL (absent, null or map not a mapping). */
static yaml_node_t *mf_find_in(const yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node((yaml_document_t *)doc, p->key);
		yaml_node_t *v;
		const char *t = mf_text(k);

		if (t == NULL || strcmp(t, key) != 0)
			continue;
		v = yaml_document_get_node((yaml_document_t *)doc, p->value);
		return mf_is_null(v) ? NULL : v;
	}
	return NULL;
}

static yaml_node_t *mf_find(const struct mf_obj *o, const yaml_node_t *map, const char *key)
{
	return mf_find_in(&o->src->doc, map, key);
}

static bool mf_in(const char *const *list, const char *s)
{
	size_t i;

	for (i = 0; list != NULL && list[i] != NULL; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* Checks that n is a mapping whose keys are all in allowed or ignored, none repeated; reports each
 * other key as unsupported. Returns false when n is not a mapping. */
static bool mf_check(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *n, const char *path,
                     const char *const *allowed, const char *const *ignored)
{
	yaml_node_pair_t *p, *q;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return false;
	if (n->type != YAML_MAPPING_NODE) {
		mf_error(c, o, NULL, n, path, "expected a mapping");
		return false;
	}
	for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = mf_node(o, p->key);
		const char *k = mf_text(kn);

		if (k == NULL) {
			mf_error(c, o, NULL, kn != NULL ? kn : n, path, "mapping keys must be plain strings");
			continue;
		}
		if (!mf_in(allowed, k) && !mf_in(ignored, k))
			mf_error(c, o, NULL, kn, path, "\"%s\" is not supported by jwtgate",
			         config_show(k, show));
		for (q = n->data.mapping.pairs.start; q < p; q++) {
			const char *qk = mf_text(mf_node(o, q->key));

			if (qk != NULL && strcmp(qk, k) == 0) {
				mf_error(c, o, NULL, kn, path, "duplicate key \"%s\"", config_show(k, show));
				break;
			}
		}
	}
	return true;
}

/* A required or optional string key; reports a missing required key or a non-string value. */
static const char *mf_str(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *map, const char *path,
                          const char *key, bool required)
{
	yaml_node_t *v = mf_find(o, map, key);
	const char *t;

	if (v == NULL) {
		if (required)
			mf_error(c, o, NULL, map, path, "missing required key \"%s\"", key);
		return NULL;
	}
	t = mf_text(v);
	if (t == NULL || t[0] == '\0' || strpbrk(t, "\r\n") != NULL) {
		mf_error(c, o, NULL, v, path, "\"%s\" must be a non-empty one-line string", key);
		return NULL;
	}
	return t;
}

static long mf_port(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *n, const char *path)
{
	const char *t = mf_text(n);
	char *end;
	long v;

	if (t == NULL || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || t[0] < '0' || t[0] > '9') {
		mf_error(c, o, NULL, n, path, "expected a port number");
		return -1;
	}
	v = strtol(t, &end, 10);
	if (*end != '\0' || v < 1 || v > 65535) {
		mf_error(c, o, NULL, n, path, "port out of range 1..65535");
		return -1;
	}
	return v;
}

static size_t mf_seq_len(const yaml_node_t *s)
{
	return s != NULL && s->type == YAML_SEQUENCE_NODE
	               ? (size_t)(s->data.sequence.items.top - s->data.sequence.items.start)
	               : 0;
}

static yaml_node_t *mf_seq_item(const struct mf_obj *o, const yaml_node_t *s, size_t i)
{
	return mf_node(o, s->data.sequence.items.start[i]);
}

/* A list value, or NULL after an error (reported) or when absent. */
static yaml_node_t *mf_seq(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *map, const char *path,
                           const char *key, bool required)
{
	yaml_node_t *v = mf_find(o, map, key);

	if (v == NULL) {
		if (required)
			mf_error(c, o, NULL, map, path, "missing required key \"%s\"", key);
		return NULL;
	}
	if (v->type != YAML_SEQUENCE_NODE) {
		mf_error(c, o, NULL, v, path, "\"%s\" must be a list", key);
		return NULL;
	}
	return v;
}

/* ---------------------------------------------------------------- native nodes ---- */

/* Records the file and the source mark of a new native node. */
static int mf_mark(struct mf_ctx *c, int id, const struct mf_obj *o, const yaml_node_t *from)
{
	struct manifest_result *r = c->out;
	yaml_node_t *n;

	if (id == 0) {
		fprintf(stderr, "jwtgate: out of memory\n");
		abort();
	}
	if ((size_t)id > r->cap_node_file) {
		r->cap_node_file = r->cap_node_file ? r->cap_node_file * 2 : 256;
		if ((size_t)id > r->cap_node_file)
			r->cap_node_file = (size_t)id;
		r->node_file = jg_xrealloc(r->node_file, r->cap_node_file * sizeof(*r->node_file));
	}
	r->node_file[id - 1] = o != NULL ? o->src->file : 0;
	if ((size_t)id > r->n_node_file)
		r->n_node_file = (size_t)id;
	n = yaml_document_get_node(&r->doc, id);
	if (from != NULL) {
		n->start_mark = from->start_mark;
		n->end_mark = from->end_mark;
	}
	return id;
}

static int mf_scalar(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *from, const char *text)
{
	yaml_scalar_style_t style =
	        strchr(text, '\n') != NULL ? YAML_LITERAL_SCALAR_STYLE : YAML_PLAIN_SCALAR_STYLE;

	/* plain only when the text reads back as itself; the emitter quotes where it must */
	if (style == YAML_PLAIN_SCALAR_STYLE &&
	    (text[0] == '\0' || strpbrk(text, ":#{}[],&*!|>'\"%@`") != NULL))
		style = YAML_ANY_SCALAR_STYLE;
	return mf_mark(
	        c,
	        yaml_document_add_scalar(&c->out->doc, NULL, (yaml_char_t *)text, (int)strlen(text), style),
	        o, from);
}

static int mf_map(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *from)
{
	return mf_mark(c, yaml_document_add_mapping(&c->out->doc, NULL, YAML_BLOCK_MAPPING_STYLE), o, from);
}

static int mf_list(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *from)
{
	return mf_mark(c, yaml_document_add_sequence(&c->out->doc, NULL, YAML_BLOCK_SEQUENCE_STYLE), o, from);
}

/* Adds key: value to the native mapping map; the key carries the mark of key_from. */
static void mf_put(struct mf_ctx *c, int map, const struct mf_obj *o, const yaml_node_t *key_from,
                   const char *key, int value)
{
	int k = mf_scalar(c, o, key_from, key);

	if (!yaml_document_append_mapping_pair(&c->out->doc, map, k, value)) {
		fprintf(stderr, "jwtgate: out of memory\n");
		abort();
	}
}

static void mf_push(struct mf_ctx *c, int seq, int item)
{
	if (!yaml_document_append_sequence_item(&c->out->doc, seq, item)) {
		fprintf(stderr, "jwtgate: out of memory\n");
		abort();
	}
}

/* Copies n (of o's document) and everything under it, marks included. Returns the native id, or a
 * null scalar after an error (too deep or too many nodes). */
static int mf_copy(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *n, int depth)
{
	int id;

	if (++c->copies > MF_MAX_COPY || depth > MF_MAX_DEPTH) {
		if (c->copies == MF_MAX_COPY + 1 || depth == MF_MAX_DEPTH + 1)
			mf_error(c, o, NULL, n, "",
			         "too large or too deeply nested (aliases count each use)");
		return mf_scalar(c, o, n, "~");
	}
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return mf_mark(c,
		               yaml_document_add_scalar(&c->out->doc, n->tag, n->data.scalar.value,
		                                        (int)n->data.scalar.length, n->data.scalar.style),
		               o, n);
	case YAML_SEQUENCE_NODE: {
		yaml_node_item_t *it;

		id = mf_mark(c, yaml_document_add_sequence(&c->out->doc, n->tag, n->data.sequence.style), o,
		             n);
		for (it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++)
			mf_push(c, id, mf_copy(c, o, mf_node(o, *it), depth + 1));
		return id;
	}
	case YAML_MAPPING_NODE: {
		yaml_node_pair_t *p;

		id = mf_mark(c, yaml_document_add_mapping(&c->out->doc, n->tag, n->data.mapping.style), o, n);
		for (p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
			int k = mf_copy(c, o, mf_node(o, p->key), depth + 1);
			int v = mf_copy(c, o, mf_node(o, p->value), depth + 1);

			if (!yaml_document_append_mapping_pair(&c->out->doc, id, k, v)) {
				fprintf(stderr, "jwtgate: out of memory\n");
				abort();
			}
		}
		return id;
	}
	default:
		return mf_scalar(c, o, n, "~");
	}
}

/* Adds an item to a native top-level list and records what it came from. */
static void mf_section_add(struct mf_ctx *c, enum manifest_section s, int item, const char *label)
{
	struct manifest_result *r = c->out;

	mf_push(c, c->seq[s], item);
	r->labels[s] = jg_xrealloc(r->labels[s], (r->n_labels[s] + 1) * sizeof(char *));
	r->labels[s][r->n_labels[s]++] = jg_xstrdup(label);
}

/* ---------------------------------------------------------------- objects ---- */

static void mf_qualify(char *out, size_t size, const char *ns, const char *name)
{
	if (strcmp(ns, "default") == 0)
		snprintf(out, size, "%s", name);
	else
		snprintf(out, size, "%s/%s", ns, name);
}

static const struct mf_obj *mf_lookup(const struct mf_ctx *c, enum mf_kind kind, const char *ns,
                                      const char *name)
{
	size_t i;

	for (i = 0; i < c->n_objs; i++) {
		const struct mf_obj *o = &c->objs[i];

		if (o->kind == kind && strcmp(o->ns, ns) == 0 && strcmp(o->name, name) == 0)
			return o;
	}
	return NULL;
}

/* metadata: name (required), namespace; labels, annotations ignored (an EndpointSlice's
 * kubernetes.io/service-name label is read). */
static bool mf_metadata(struct mf_ctx *c, struct mf_obj *o)
{
	static const char *const keys[] = {"name", "namespace", NULL};
	static const char *const ignored[] = {"labels", "annotations", NULL};
	yaml_node_t *meta = mf_find(o, o->root, "metadata");

	if (meta == NULL) {
		mf_error(c, o, NULL, o->root, "", "missing required key \"metadata\"");
		return false;
	}
	if (!mf_check(c, o, meta, "metadata", keys, ignored))
		return false;
	o->name = mf_str(c, o, meta, "metadata", "name", true);
	o->ns = mf_str(c, o, meta, "metadata", "namespace", false);
	if (o->ns == NULL)
		o->ns = "default";
	if (o->name == NULL)
		return false;
	if (strlen(o->name) > 253 || strlen(o->ns) > 63) {
		/* Kubernetes' own limits (RFC 1123 subdomain, label): native names are never cut */
		mf_error(c, o, NULL, meta, "metadata",
		         "name longer than 253 or namespace longer than 63 bytes");
		return false;
	}
	if (strchr(o->name, '/') != NULL || strchr(o->ns, '/') != NULL) {
		mf_error(c, o, NULL, meta, "metadata", "names and namespaces cannot contain '/'");
		return false;
	}
	if (o->kind == MF_ENDPOINTSLICE) {
		yaml_node_t *labels = mf_find(o, meta, "labels");

		o->service_label = mf_text(mf_find(o, labels, "kubernetes.io/service-name"));
	}
	return true;
}

/* Reads one document into c->objs: apiVersion, kind, metadata and the kind's top-level keys. */
static void mf_collect(struct mf_ctx *c, const struct manifest_src *src)
{
	yaml_node_t *root = yaml_document_get_root_node((yaml_document_t *)&src->doc);
	struct mf_obj o;
	const char *kind, *api;
	char show[CONFIG_SHOW_MAX + 4], show2[CONFIG_SHOW_MAX + 4];
	const char *top[8];
	size_t i, k;

	if (root == NULL || mf_is_null(root))
		return; /* an empty document between two "---" */
	memset(&o, 0, sizeof(o));
	o.src = src;
	o.root = root;
	if (root->type != YAML_MAPPING_NODE) {
		mf_error(c, NULL, src, root, "", "a Kubernetes object must be a mapping");
		return;
	}
	kind = mf_text(mf_find_in(&src->doc, root, "kind"));
	api = mf_text(mf_find_in(&src->doc, root, "apiVersion"));
	if (kind == NULL || api == NULL) {
		mf_error(c, NULL, src, root, "",
		         "a Kubernetes object needs \"apiVersion\" and \"kind\" (a native jwtgate.yaml must "
		         "be "
		         "given alone)");
		return;
	}
	for (k = 0; k < MF_N_KINDS; k++)
		if (strcmp(mf_kinds[k].kind, kind) == 0)
			break;
	if (k == MF_N_KINDS) {
		mf_error(c, NULL, src, mf_find_in(&src->doc, root, "kind"), "",
		         "kind \"%s\" is not supported by jwtgate (supported: Gateway, GatewayClass, "
		         "HTTPRoute, "
		         "GRPCRoute, SecurityPolicy, Backend, Service, EndpointSlice, Secret, ConfigMap)",
		         config_show(kind, show));
		return;
	}
	if (strcmp(mf_kinds[k].api, api) != 0) {
		mf_error(c, NULL, src, mf_find_in(&src->doc, root, "apiVersion"), "",
		         "apiVersion \"%s\" of %s is not supported (expected %s)", config_show(api, show),
		         config_show(kind, show2), mf_kinds[k].api);
		return;
	}
	o.kind = (enum mf_kind)k;
	snprintf(o.label, sizeof(o.label), "%s", mf_kinds[k].kind);
	if (!mf_metadata(c, &o))
		return;
	mf_qualify(o.qname, sizeof(o.qname), o.ns, o.name);
	snprintf(o.label, sizeof(o.label), "%s/%s", mf_kinds[k].kind, o.qname);
	top[0] = "apiVersion";
	top[1] = "kind";
	top[2] = "metadata";
	for (i = 0; mf_kinds[k].keys[i] != NULL; i++)
		top[3 + i] = mf_kinds[k].keys[i];
	top[3 + i] = NULL;
	{
		static const char *const ignored[] = {"status", NULL};

		mf_check(c, &o, root, "", top, ignored);
	}
	o.spec = mf_find(&o, root, "spec");
	if (mf_kinds[k].keys[0] != NULL && strcmp(mf_kinds[k].keys[0], "spec") == 0 && o.spec == NULL &&
	    o.kind != MF_SERVICE) {
		mf_error(c, &o, NULL, root, "", "missing required key \"spec\"");
		return;
	}
	if (mf_lookup(c, o.kind, o.ns, o.name) != NULL) {
		mf_error(c, &o, NULL, mf_find(&o, root, "metadata"), "metadata.name",
		         "%s \"%s\" is defined twice", mf_kinds[k].kind, config_show(o.qname, show));
		return;
	}
	c->objs = jg_xrealloc(c->objs, (c->n_objs + 1) * sizeof(*c->objs));
	c->objs[c->n_objs++] = o;
}

/* ---------------------------------------------------------------- references ---- */

/* Checks a reference's namespace (absent or the referrer's own) and group/kind (absent = the given
 * defaults; kinds = the accepted kinds). Returns the index in kinds, or -1 after an error. */
static int mf_ref_kind(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *ref, const char *path,
                       const char *def_group, const char *def_kind, const char *const *groups,
                       const char *const *kinds)
{
	const char *ns = mf_str(c, o, ref, path, "namespace", false);
	yaml_node_t *gn = mf_find(o, ref, "group");
	const char *g = gn != NULL ? mf_text(gn) : def_group;
	const char *k = mf_str(c, o, ref, path, "kind", false);
	char show[CONFIG_SHOW_MAX + 4];
	size_t i;

	if (gn == NULL)
		g = def_group;
	if (ns != NULL && strcmp(ns, o->ns) != 0) {
		mf_error(c, o, NULL, mf_find(o, ref, "namespace"), path,
		         "a reference to namespace \"%s\" needs a ReferenceGrant, which jwtgate does not "
		         "support",
		         config_show(ns, show));
		return -1;
	}
	if (k == NULL)
		k = def_kind;
	for (i = 0; kinds[i] != NULL; i++) {
		if (strcmp(kinds[i], k) == 0) {
			if (g == NULL || strcmp(g, groups[i]) != 0) {
				mf_error(c, o, NULL, gn != NULL ? gn : ref, path,
				         "group \"%s\" does not go with kind %s (expected \"%s\")",
				         g != NULL ? config_show(g, show) : "?", kinds[i], groups[i]);
				return -1;
			}
			return (int)i;
		}
	}
	mf_error(c, o, NULL, mf_find(o, ref, "kind"), path,
	         "a reference to kind \"%s\" is not supported here", config_show(k, show));
	return -1;
}

/* ---------------------------------------------------------------- Secrets ---- */

static int mf_b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Decodes standard base64 (RFC 4648 section 4, padded; whitespace skipped as YAML folds it) into a
 * new NUL-terminated string. Returns NULL when the text is not base64 or decodes to a NUL byte. */
static char *mf_b64_decode(const char *s)
{
	size_t len = strlen(s), n = 0, i;
	char *out = jg_xmalloc(len / 4 * 3 + 4);
	unsigned acc = 0;
	int bits = 0, pad = 0;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		int v;

		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		v = mf_b64_value(ch);
		if (v < 0 || pad > 0)
			goto bad;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n] = (char)((acc >> bits) & 0xff);
			if (out[n] == '\0')
				goto bad;
			n++;
		}
	}
	if (pad > 2 || (bits > 0 && (acc & ((1u << bits) - 1)) != 0))
		goto bad;
	out[n] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* The text of key in a Secret (data: base64, or stringData: text) or ConfigMap (data: text). Returns
 * a new string or NULL after an error naming the reference ref of referrer o. */
static char *mf_object_value(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *ref,
                             const char *path, const struct mf_obj *holder, const char *key)
{
	yaml_node_t *data = mf_find(holder, holder->root, "data");
	yaml_node_t *v;
	char show[CONFIG_SHOW_MAX + 4];
	char *text;

	if (data != NULL && data->type != YAML_MAPPING_NODE) {
		mf_error(c, holder, NULL, data, "data", "expected a mapping");
		return NULL;
	}
	v = mf_find(holder, data, key);
	if (v == NULL && holder->kind == MF_SECRET) {
		yaml_node_t *sd = mf_find(holder, holder->root, "stringData");

		v = mf_find(holder, sd, key);
		if (v != NULL && mf_text(v) != NULL)
			return jg_xstrdup(mf_text(v));
	}
	if (v == NULL) {
		mf_error(c, o, NULL, ref, path, "%s has no key \"%s\"", holder->label,
		         config_show(key, show));
		return NULL;
	}
	if (mf_text(v) == NULL || strlen(mf_text(v)) > MF_MAX_PEM_BYTES * 2) {
		mf_error(c, holder, NULL, v, "data", "\"%s\" must be a string of at most %u bytes",
		         config_show(key, show), MF_MAX_PEM_BYTES);
		return NULL;
	}
	if (holder->kind == MF_CONFIGMAP)
		return jg_xstrdup(mf_text(v));
	text = mf_b64_decode(mf_text(v));
	if (text == NULL)
		mf_error(c, holder, NULL, v, "data", "\"%s\" is not base64 text", config_show(key, show));
	return text;
}

/* ---------------------------------------------------------------- Gateway ---- */

static void mf_listener_tls(struct mf_ctx *c, const struct mf_obj *gw, const yaml_node_t *tls,
                            const char *path, int native_l)
{
	static const char *const keys[] = {"mode", "certificateRefs", NULL};
	static const char *const ref_keys[] = {"group", "kind", "name", "namespace", NULL};
	static const char *const groups[] = {"", NULL};
	static const char *const kinds[] = {"Secret", NULL};
	char kp[128];
	const char *mode, *name, *type;
	yaml_node_t *refs, *ref;
	const struct mf_obj *secret;
	char *crt, *key;
	int t;

	if (!mf_check(c, gw, tls, path, keys, NULL))
		return;
	mode = mf_str(c, gw, tls, path, "mode", false);
	if (mode != NULL && strcmp(mode, "Terminate") != 0) {
		mf_error(c, gw, NULL, mf_find(gw, tls, "mode"), path,
		         "tls mode \"%s\" is not supported (Terminate)", mode);
		return;
	}
	refs = mf_seq(c, gw, tls, path, "certificateRefs", true);
	if (refs == NULL)
		return;
	mf_fmt(kp, sizeof(kp), "%s.certificateRefs", path);
	if (mf_seq_len(refs) != 1) {
		mf_error(c, gw, NULL, refs, kp, "exactly one certificateRef is supported");
		return;
	}
	ref = mf_seq_item(gw, refs, 0);
	mf_fmt(kp, sizeof(kp), "%s.certificateRefs[0]", path);
	if (!mf_check(c, gw, ref, kp, ref_keys, NULL) ||
	    mf_ref_kind(c, gw, ref, kp, "", "Secret", groups, kinds) < 0 ||
	    (name = mf_str(c, gw, ref, kp, "name", true)) == NULL)
		return;
	secret = mf_lookup(c, MF_SECRET, gw->ns, name);
	if (secret == NULL) {
		mf_error(c, gw, NULL, mf_find(gw, ref, "name"), kp, "no Secret \"%s\" in the input", name);
		return;
	}
	type = mf_text(mf_find(secret, secret->root, "type"));
	if (type == NULL || strcmp(type, "kubernetes.io/tls") != 0) {
		mf_error(c, secret, NULL, secret->root, "type",
		         "a certificate Secret must have type kubernetes.io/tls");
		return;
	}
	crt = mf_object_value(c, gw, ref, kp, secret, "tls.crt");
	key = mf_object_value(c, gw, ref, kp, secret, "tls.key");
	if (crt != NULL && key != NULL) {
		t = mf_map(c, gw, tls);
		mf_put(c, t, gw, ref, "certificate", mf_scalar(c, gw, ref, crt));
		mf_put(c, t, gw, ref, "privateKey", mf_scalar(c, gw, ref, key));
		mf_put(c, native_l, gw, tls, "tls", t);
	}
	free(crt);
	free(key);
}

static void mf_listener(struct mf_ctx *c, const struct mf_obj *gw, const yaml_node_t *l, const char *path)
{
	static const char *const keys[] = {"name", "port", "protocol", "tls", "allowedRoutes", NULL};
	const char *name, *proto, *from;
	yaml_node_t *tls, *ar;
	char addr[32], label[512], kp[128];
	long port = -1;
	int nl;

	if (!mf_check(c, gw, l, path, keys, NULL))
		return;
	name = mf_str(c, gw, l, path, "name", true);
	proto = mf_str(c, gw, l, path, "protocol", true);
	if (mf_find(gw, l, "port") == NULL)
		mf_error(c, gw, NULL, l, path, "missing required key \"port\"");
	else
		port = mf_port(c, gw, mf_find(gw, l, "port"), path);
	tls = mf_find(gw, l, "tls");
	if (proto != NULL && strcmp(proto, "HTTP") != 0 && strcmp(proto, "HTTPS") != 0) {
		mf_error(c, gw, NULL, mf_find(gw, l, "protocol"), path,
		         "protocol \"%s\" is not supported (HTTP or HTTPS)", proto);
		return;
	}
	if (proto != NULL && (strcmp(proto, "HTTPS") == 0) != (tls != NULL)) {
		mf_error(c, gw, NULL, l, path,
		         "an HTTPS listener needs \"tls\", an HTTP listener takes none");
		return;
	}
	ar = mf_find(gw, l, "allowedRoutes");
	if (ar != NULL) {
		/* Same is the default; anything wider would need namespaces jwtgate does not model */
		static const char *const ar_keys[] = {"namespaces", NULL};
		static const char *const ns_keys[] = {"from", NULL};

		mf_fmt(kp, sizeof(kp), "%s.allowedRoutes", path);
		if (mf_check(c, gw, ar, kp, ar_keys, NULL)) {
			yaml_node_t *ns = mf_find(gw, ar, "namespaces");

			mf_fmt(kp, sizeof(kp), "%s.allowedRoutes.namespaces", path);
			if (ns != NULL && mf_check(c, gw, ns, kp, ns_keys, NULL) &&
			    (from = mf_str(c, gw, ns, kp, "from", false)) != NULL &&
			    strcmp(from, "Same") != 0)
				mf_error(c, gw, NULL, mf_find(gw, ns, "from"), kp,
				         "allowedRoutes from \"%s\" is not supported (Same)", from);
		}
	}
	if (name == NULL || port < 0)
		return;
	nl = mf_map(c, gw, l);
	mf_put(c, nl, gw, mf_find(gw, l, "name"), "name", mf_scalar(c, gw, mf_find(gw, l, "name"), name));
	mf_fmt(addr, sizeof(addr), "0.0.0.0:%ld", port);
	mf_put(c, nl, gw, mf_find(gw, l, "port"), "address", mf_scalar(c, gw, mf_find(gw, l, "port"), addr));
	if (tls != NULL) {
		mf_fmt(kp, sizeof(kp), "%s.tls", path);
		mf_listener_tls(c, gw, tls, kp, nl);
	}
	mf_fmt(label, sizeof(label), "%s %s", gw->label, path);
	mf_section_add(c, MANIFEST_LISTENERS, nl, label);
}

static void mf_gateway(struct mf_ctx *c, const struct mf_obj *gw)
{
	static const char *const keys[] = {"gatewayClassName", "listeners", NULL};
	yaml_node_t *ls;
	char kp[64];
	size_t i, n;

	if (!mf_check(c, gw, gw->spec, "spec", keys, NULL))
		return;
	mf_str(c, gw, gw->spec, "spec", "gatewayClassName", true);
	ls = mf_seq(c, gw, gw->spec, "spec", "listeners", true);
	n = mf_seq_len(ls);
	if (ls != NULL && n == 0)
		mf_error(c, gw, NULL, ls, "spec.listeners", "a Gateway needs at least one listener");
	for (i = 0; i < n; i++) {
		mf_fmt(kp, sizeof(kp), "spec.listeners[%zu]", i);
		mf_listener(c, gw, mf_seq_item(gw, ls, i), kp);
	}
}

static void mf_gatewayclass(struct mf_ctx *c, const struct mf_obj *o)
{
	static const char *const keys[] = {"controllerName", "description", NULL};

	if (mf_check(c, o, o->spec, "spec", keys, NULL))
		mf_str(c, o, o->spec, "spec", "controllerName", true);
}

/* ---------------------------------------------------------------- backends ---- */

/* The native backend of an EG Backend: name, protocol from appProtocols, endpoints as they are. */
static void mf_backend(struct mf_ctx *c, const struct mf_obj *o)
{
	static const char *const keys[] = {"endpoints", "appProtocols", NULL};
	yaml_node_t *ep, *ap;
	size_t i;
	int nb;
	bool is_h2c = false;

	if (!mf_check(c, o, o->spec, "spec", keys, NULL))
		return;
	ap = mf_seq(c, o, o->spec, "spec", "appProtocols", false);
	for (i = 0; i < mf_seq_len(ap); i++) {
		yaml_node_t *p = mf_seq_item(o, ap, i);
		const char *t = mf_text(p);

		if (t != NULL && strcmp(t, "gateway.envoyproxy.io/h2c") == 0)
			is_h2c = true;
		else
			mf_error(c, o, NULL, p, "spec.appProtocols",
			         "appProtocol \"%s\" is not supported (gateway.envoyproxy.io/h2c)",
			         t != NULL ? t : "?");
	}
	ep = mf_find(o, o->spec, "endpoints");
	nb = mf_map(c, o, o->spec);
	mf_put(c, nb, o, o->spec, "name", mf_scalar(c, o, mf_find(o, o->root, "metadata"), o->qname));
	if (is_h2c)
		mf_put(c, nb, o, ap, "protocol", mf_scalar(c, o, ap, "H2C"));
	if (ep != NULL)
		mf_put(c, nb, o, mf_find(o, o->spec, "endpoints"), "endpoints", mf_copy(c, o, ep, 0));
	else
		mf_error(c, o, NULL, o->spec, "spec", "missing required key \"endpoints\"");
	{
		char label[512];

		mf_fmt(label, sizeof(label), "%s spec", o->label);
		mf_section_add(c, MANIFEST_BACKENDS, nb, label);
	}
}

/* Validates a Service's spec; returns its ports list or NULL. */
static yaml_node_t *mf_service_ports(struct mf_ctx *c, const struct mf_obj *svc)
{
	static const char *const keys[] = {"ports", "type", NULL};
	/* how a cluster selects and addresses the pods: the EndpointSlices (or DNS) stand for it here */
	static const char *const ignored[] = {"selector",        "clusterIP",
	                                      "clusterIPs",      "ipFamilies",
	                                      "ipFamilyPolicy",  "internalTrafficPolicy",
	                                      "sessionAffinity", NULL};
	const char *type, *aff;

	if (svc->spec == NULL) {
		mf_error(c, svc, NULL, svc->root, "", "missing required key \"spec\"");
		return NULL;
	}
	if (!mf_check(c, svc, svc->spec, "spec", keys, ignored))
		return NULL;
	type = mf_str(c, svc, svc->spec, "spec", "type", false);
	if (type != NULL && strcmp(type, "ClusterIP") != 0 && strcmp(type, "NodePort") != 0 &&
	    strcmp(type, "LoadBalancer") != 0) {
		mf_error(c, svc, NULL, mf_find(svc, svc->spec, "type"), "spec.type",
		         "Service type \"%s\" is not supported", type);
		return NULL;
	}
	aff = mf_str(c, svc, svc->spec, "spec", "sessionAffinity", false);
	if (aff != NULL && strcmp(aff, "None") != 0) {
		mf_error(c, svc, NULL, mf_find(svc, svc->spec, "sessionAffinity"), "spec.sessionAffinity",
		         "sessionAffinity \"%s\" is not supported (None)", aff);
		return NULL;
	}
	return mf_seq(c, svc, svc->spec, "spec", "ports", true);
}

/* The endpoints of one EndpointSlice for the Service port named port_name (NULL: unnamed) with
 * numeric targetPort fallback; appends ip endpoints to the native list eps. Returns the count added. */
static size_t mf_slice_endpoints(struct mf_ctx *c, const struct mf_obj *es, const char *port_name,
                                 long target, int eps)
{
	static const char *const ep_keys[] = {"addresses", "conditions", NULL};
	static const char *const ep_ignored[] = {"hostname", "nodeName", "zone", "targetRef", "hints", NULL};
	static const char *const cond_keys[] = {"ready", "serving", "terminating", NULL};
	static const char *const port_keys[] = {"name", "port", "protocol", "appProtocol", NULL};
	const char *at = mf_str(c, es, es->root, "", "addressType", true);
	yaml_node_t *ports = mf_seq(c, es, es->root, "", "ports", false);
	yaml_node_t *list = mf_seq(c, es, es->root, "", "endpoints", false);
	yaml_node_t *port_node = NULL;
	long port = target;
	size_t i, added = 0;
	char kp[64], num[16];

	if (at == NULL)
		return 0;
	if (strcmp(at, "IPv4") != 0 && strcmp(at, "IPv6") != 0) {
		mf_error(c, es, NULL, mf_find(es, es->root, "addressType"), "addressType",
		         "addressType \"%s\" is not supported (IPv4 or IPv6)", at);
		return 0;
	}
	for (i = 0; i < mf_seq_len(ports); i++) {
		yaml_node_t *p = mf_seq_item(es, ports, i);
		const char *n, *proto;

		mf_fmt(kp, sizeof(kp), "ports[%zu]", i);
		if (!mf_check(c, es, p, kp, port_keys, NULL))
			continue;
		n = mf_text(mf_find(es, p, "name"));
		proto = mf_str(c, es, p, kp, "protocol", false);
		if (proto != NULL && strcmp(proto, "TCP") != 0) {
			mf_error(c, es, NULL, mf_find(es, p, "protocol"), kp,
			         "protocol \"%s\" is not supported (TCP)", proto);
			continue;
		}
		if ((port_name == NULL && (n == NULL || n[0] == '\0')) ||
		    (port_name != NULL && n != NULL && strcmp(port_name, n) == 0)) {
			port_node = mf_find(es, p, "port");
			if (port_node == NULL)
				mf_error(c, es, NULL, p, kp, "missing required key \"port\"");
			else
				port = mf_port(c, es, port_node, kp);
		}
	}
	if (port <= 0) {
		if (port == 0)
			mf_error(c, es, NULL, es->root, "ports",
			         "no port named \"%s\", and the Service's targetPort is a name",
			         port_name != NULL ? port_name : "");
		return 0;
	}
	mf_fmt(num, sizeof(num), "%ld", port);
	for (i = 0; i < mf_seq_len(list); i++) {
		yaml_node_t *e = mf_seq_item(es, list, i);
		yaml_node_t *addrs, *cond, *ready, *first;
		const char *a;
		int ne, ip;

		mf_fmt(kp, sizeof(kp), "endpoints[%zu]", i);
		if (!mf_check(c, es, e, kp, ep_keys, ep_ignored))
			continue;
		cond = mf_find(es, e, "conditions");
		if (cond != NULL && mf_check(c, es, cond, kp, cond_keys, NULL)) {
			ready = mf_find(es, cond, "ready");
			/* EndpointConditions: an unknown readiness (absent) counts as ready */
			if (ready != NULL && mf_text(ready) != NULL && strcmp(mf_text(ready), "false") == 0)
				continue;
		}
		addrs = mf_seq(c, es, e, kp, "addresses", true);
		if (mf_seq_len(addrs) == 0) {
			if (addrs != NULL)
				mf_error(c, es, NULL, addrs, kp, "an endpoint needs an address");
			continue;
		}
		/* "clients may choose to only use the first element" (EndpointSlice API): the addresses
		 * of one endpoint are one pod's */
		first = mf_seq_item(es, addrs, 0);
		a = mf_text(first);
		if (a == NULL) {
			mf_error(c, es, NULL, first, kp, "an address must be a string");
			continue;
		}
		ne = mf_map(c, es, e);
		ip = mf_map(c, es, first);
		mf_put(c, ip, es, first, "address", mf_scalar(c, es, first, a));
		mf_put(c, ip, es, port_node != NULL ? port_node : first, "port",
		       mf_scalar(c, es, port_node != NULL ? port_node : first, num));
		mf_put(c, ne, es, first, "ip", ip);
		mf_push(c, eps, ne);
		added++;
	}
	return added;
}

/* The native backend for port `port` of Service svc (made once per port and protocol), its name in
 * *name_out (points into c->svcs). is_grpc: a GRPCRoute's backend is HTTP/2 whatever the Service
 * says, as in Envoy Gateway. Returns false after an error reported at ref. */
static bool mf_service_backend(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *ref,
                               const char *path, const struct mf_obj *svc, long port, bool is_grpc,
                               const char **name_out)
{
	yaml_node_t *ports = mf_service_ports(c, svc), *sp = NULL;
	const char *pname = NULL, *app = NULL;
	long target = port;
	bool is_h2c;
	size_t i, n_slices = 0, n_eps = 0;
	char kp[64], label[512];
	int nb, eps;
	struct mf_svc_backend *b;

	if (ports == NULL)
		return false;
	for (i = 0; i < mf_seq_len(ports); i++) {
		static const char *const keys[] = {"name",     "port",        "targetPort",
		                                   "protocol", "appProtocol", NULL};
		static const char *const ignored[] = {"nodePort", NULL};
		yaml_node_t *p = mf_seq_item(svc, ports, i), *pn;

		mf_fmt(kp, sizeof(kp), "spec.ports[%zu]", i);
		if (!mf_check(c, svc, p, kp, keys, ignored))
			continue;
		pn = mf_find(svc, p, "port");
		if (pn != NULL && mf_text(pn) != NULL && strtol(mf_text(pn), NULL, 10) == port) {
			sp = p;
			break;
		}
	}
	if (sp == NULL) {
		mf_error(c, o, NULL, ref, path, "%s has no port %ld", svc->label, port);
		return false;
	}
	{
		yaml_node_t *tp = mf_find(svc, sp, "targetPort");
		const char *proto = mf_str(c, svc, sp, kp, "protocol", false);

		pname = mf_text(mf_find(svc, sp, "name"));
		app = mf_str(c, svc, sp, kp, "appProtocol", false);
		if (proto != NULL && strcmp(proto, "TCP") != 0) {
			mf_error(c, svc, NULL, mf_find(svc, sp, "protocol"), kp,
			         "protocol \"%s\" is not supported (TCP)", proto);
			return false;
		}
		if (app != NULL && strcmp(app, "kubernetes.io/h2c") != 0 && strcmp(app, "http") != 0) {
			mf_error(c, svc, NULL, mf_find(svc, sp, "appProtocol"), kp,
			         "appProtocol \"%s\" is not supported (kubernetes.io/h2c or http)", app);
			return false;
		}
		if (tp != NULL) {
			const char *t = mf_text(tp);

			if (t != NULL && t[0] >= '0' && t[0] <= '9')
				target = mf_port(c, svc, tp, kp);
			else
				target = 0; /* a port name: the EndpointSlice's port of that name says */
			if (target < 0)
				return false;
		}
	}
	is_h2c = is_grpc || (app != NULL && strcmp(app, "kubernetes.io/h2c") == 0);
	for (i = 0; i < c->n_svcs; i++) {
		if (c->svcs[i].svc == svc && c->svcs[i].port == port && c->svcs[i].is_h2c == is_h2c) {
			*name_out = c->svcs[i].name;
			return true;
		}
	}
	c->svcs = jg_xrealloc(c->svcs, (c->n_svcs + 1) * sizeof(*c->svcs));
	b = &c->svcs[c->n_svcs++];
	b->svc = svc;
	b->port = port;
	b->is_h2c = is_h2c;
	snprintf(b->name, sizeof(b->name), "%s:%ld%s", svc->qname, port,
	         is_h2c && !(app != NULL && strcmp(app, "kubernetes.io/h2c") == 0) ? "/grpc" : "");
	*name_out = b->name;

	nb = mf_map(c, svc, sp);
	mf_put(c, nb, svc, sp, "name", mf_scalar(c, svc, sp, b->name));
	if (is_h2c)
		mf_put(c, nb, svc, sp, "protocol", mf_scalar(c, svc, sp, "H2C"));
	eps = mf_list(c, svc, sp);
	for (i = 0; i < c->n_objs; i++) {
		const struct mf_obj *es = &c->objs[i];

		if (es->kind != MF_ENDPOINTSLICE || strcmp(es->ns, svc->ns) != 0 ||
		    es->service_label == NULL || strcmp(es->service_label, svc->name) != 0)
			continue;
		n_slices++;
		n_eps += mf_slice_endpoints(c, es, pname, target, eps);
	}
	if (n_slices == 0) {
		/* no EndpointSlice in the input: the cluster's DNS name, at the Service port (ClusterIP) */
		char host[300], num[16];
		int ne = mf_map(c, svc, sp), fq = mf_map(c, svc, sp);

		mf_fmt(host, sizeof(host), "%s.%s.svc", svc->name, svc->ns);
		mf_fmt(num, sizeof(num), "%ld", port);
		mf_put(c, fq, svc, sp, "hostname", mf_scalar(c, svc, sp, host));
		mf_put(c, fq, svc, sp, "port", mf_scalar(c, svc, sp, num));
		mf_put(c, ne, svc, sp, "fqdn", fq);
		mf_push(c, eps, ne);
	} else if (n_eps == 0) {
		mf_error(c, svc, NULL, sp, kp, "the EndpointSlices of %s have no ready endpoint for port %ld",
		         svc->label, port);
	}
	mf_put(c, nb, svc, sp, "endpoints", eps);
	mf_fmt(label, sizeof(label), "%s %s", svc->label, kp);
	mf_section_add(c, MANIFEST_BACKENDS, nb, label);
	return true;
}

/* A route's or remoteJWKS's backendRef -> native {name, weight?}. Returns the native id or 0. */
static int mf_backend_ref(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *ref, const char *path,
                          bool is_grpc)
{
	static const char *const keys[] = {"group", "kind", "name", "namespace", "port", "weight", NULL};
	static const char *const groups[] = {"", "gateway.envoyproxy.io", NULL};
	static const char *const kinds[] = {"Service", "Backend", NULL};
	const char *name, *native = NULL;
	yaml_node_t *pn, *wn;
	int k, nr;

	if (!mf_check(c, o, ref, path, keys, NULL))
		return 0;
	k = mf_ref_kind(c, o, ref, path, "", "Service", groups, kinds);
	name = mf_str(c, o, ref, path, "name", true);
	if (k < 0 || name == NULL)
		return 0;
	pn = mf_find(o, ref, "port");
	if (k == 0) {
		const struct mf_obj *svc = mf_lookup(c, MF_SERVICE, o->ns, name);
		long port;

		if (svc == NULL) {
			mf_error(c, o, NULL, mf_find(o, ref, "name"), path, "no Service \"%s\" in the input",
			         name);
			return 0;
		}
		if (pn == NULL) {
			mf_error(c, o, NULL, ref, path, "a Service backendRef needs \"port\"");
			return 0;
		}
		port = mf_port(c, o, pn, path);
		if (port < 0 || !mf_service_backend(c, o, ref, path, svc, port, is_grpc, &native))
			return 0;
	} else {
		const struct mf_obj *be = mf_lookup(c, MF_BACKEND, o->ns, name);

		if (be == NULL) {
			mf_error(c, o, NULL, mf_find(o, ref, "name"), path, "no Backend \"%s\" in the input",
			         name);
			return 0;
		}
		native = be->qname; /* its endpoints carry their ports */
	}
	nr = mf_map(c, o, ref);
	mf_put(c, nr, o, mf_find(o, ref, "name"), "name", mf_scalar(c, o, mf_find(o, ref, "name"), native));
	if (k == 1 && pn != NULL)
		mf_put(c, nr, o, pn, "port", mf_copy(c, o, pn, 0));
	wn = mf_find(o, ref, "weight");
	if (wn != NULL)
		mf_put(c, nr, o, wn, "weight", mf_copy(c, o, wn, 0));
	return nr;
}

/* ---------------------------------------------------------------- routes ---- */

static void mf_parent_refs(struct mf_ctx *c, const struct mf_obj *o)
{
	static const char *const keys[] = {"group", "kind", "name", "namespace", NULL};
	static const char *const groups[] = {"gateway.networking.k8s.io", NULL};
	static const char *const kinds[] = {"Gateway", NULL};
	yaml_node_t *prs = mf_seq(c, o, o->spec, "spec", "parentRefs", true);
	char kp[64];
	size_t i;

	if (prs != NULL && mf_seq_len(prs) == 0)
		mf_error(c, o, NULL, prs, "spec.parentRefs", "parentRefs must name the Gateway");
	for (i = 0; i < mf_seq_len(prs); i++) {
		yaml_node_t *pr = mf_seq_item(o, prs, i);
		const char *name;

		mf_fmt(kp, sizeof(kp), "spec.parentRefs[%zu]", i);
		/* sectionName and port would narrow the route to some listeners: jwtgate serves every
		 * route on every listener, so they are refused rather than widened */
		if (!mf_check(c, o, pr, kp, keys, NULL) ||
		    mf_ref_kind(c, o, pr, kp, "gateway.networking.k8s.io", "Gateway", groups, kinds) < 0 ||
		    (name = mf_str(c, o, pr, kp, "name", true)) == NULL)
			continue;
		if (c->gateway != NULL &&
		    (strcmp(name, c->gateway->name) != 0 || strcmp(o->ns, c->gateway->ns) != 0))
			mf_error(c, o, NULL, mf_find(o, pr, "name"), kp,
			         "no Gateway \"%s\" in namespace \"%s\" in the input (the Gateway is \"%s\" "
			         "in "
			         "namespace \"%s\")",
			         name, o->ns, c->gateway->name, c->gateway->ns);
	}
}

static void mf_route(struct mf_ctx *c, const struct mf_obj *o)
{
	static const char *const keys[] = {"parentRefs", "hostnames", "rules", NULL};
	bool is_grpc = o->kind == MF_GRPCROUTE;
	yaml_node_t *rules, *hn;
	int nr, nrules;
	char kp[64], label[512];
	size_t i;

	if (!mf_check(c, o, o->spec, "spec", keys, NULL))
		return;
	mf_parent_refs(c, o);
	nr = mf_map(c, o, o->spec);
	mf_put(c, nr, o, mf_find(o, o->root, "metadata"), "name",
	       mf_scalar(c, o, mf_find(o, o->root, "metadata"), o->qname));
	hn = mf_find(o, o->spec, "hostnames");
	if (hn != NULL)
		mf_put(c, nr, o, hn, "hostnames", mf_copy(c, o, hn, 0));
	rules = mf_seq(c, o, o->spec, "spec", "rules", !is_grpc);
	nrules = mf_list(c, o, rules != NULL ? rules : o->spec);
	for (i = 0; i < mf_seq_len(rules); i++) {
		yaml_node_t *rule = mf_seq_item(o, rules, i), *brs;
		yaml_node_pair_t *p;
		int nrule;

		mf_fmt(kp, sizeof(kp), "spec.rules[%zu]", i);
		if (rule->type != YAML_MAPPING_NODE) {
			mf_error(c, o, NULL, rule, kp, "expected a mapping");
			continue;
		}
		nrule = mf_map(c, o, rule);
		for (p = rule->data.mapping.pairs.start; p < rule->data.mapping.pairs.top; p++) {
			yaml_node_t *kn = mf_node(o, p->key);
			const char *k = mf_text(kn);
			size_t j;

			if (k == NULL || strcmp(k, "backendRefs") != 0) {
				/* matches as they are; anything else reaches the native parser as an
				 * unknown key, an error at this position */
				mf_put(c, nrule, o, kn, k != NULL ? k : "?",
				       mf_copy(c, o, mf_node(o, p->value), 0));
				continue;
			}
			brs = mf_node(o, p->value);
			if (brs->type != YAML_SEQUENCE_NODE) {
				mf_put(c, nrule, o, kn, k, mf_copy(c, o, brs, 0));
				continue;
			}
			{
				int nbrs = mf_list(c, o, brs);

				for (j = 0; j < mf_seq_len(brs); j++) {
					char bkp[96];
					int br;

					mf_fmt(bkp, sizeof(bkp), "%s.backendRefs[%zu]", kp, j);
					br = mf_backend_ref(c, o, mf_seq_item(o, brs, j), bkp, is_grpc);
					if (br != 0)
						mf_push(c, nbrs, br);
				}
				mf_put(c, nrule, o, kn, "backendRefs", nbrs);
			}
		}
		mf_push(c, nrules, nrule);
	}
	mf_put(c, nr, o, rules != NULL ? rules : o->spec, "rules", nrules);
	mf_fmt(label, sizeof(label), "%s spec", o->label);
	mf_section_add(c, is_grpc ? MANIFEST_GRPC_ROUTES : MANIFEST_HTTP_ROUTES, nr, label);
}

/* ---------------------------------------------------------------- SecurityPolicy ---- */

static int mf_target_ref(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *t, const char *path)
{
	static const char *const keys[] = {"group", "kind", "name", "sectionName", NULL};
	static const char *const groups[] = {"gateway.networking.k8s.io", "gateway.networking.k8s.io",
	                                     "gateway.networking.k8s.io", NULL};
	static const char *const kinds[] = {"HTTPRoute", "GRPCRoute", "Gateway", NULL};
	const char *name;
	yaml_node_t *sn;
	char qname[320];
	int k, nt;

	if (!mf_check(c, o, t, path, keys, NULL))
		return 0;
	if (mf_find(o, t, "kind") == NULL) {
		mf_error(c, o, NULL, t, path, "missing required key \"kind\"");
		return 0;
	}
	k = mf_ref_kind(c, o, t, path, "gateway.networking.k8s.io", "", groups, kinds);
	name = mf_str(c, o, t, path, "name", true);
	if (k < 0 || name == NULL)
		return 0;
	if (k == 2 && (c->gateway == NULL || strcmp(name, c->gateway->name) != 0 ||
	               strcmp(o->ns, c->gateway->ns) != 0)) {
		mf_error(c, o, NULL, mf_find(o, t, "name"), path, "no Gateway \"%s\" in the input", name);
		return 0;
	}
	mf_qualify(qname, sizeof(qname), o->ns, name);
	nt = mf_map(c, o, t);
	mf_put(c, nt, o, mf_find(o, t, "kind"), "kind", mf_copy(c, o, mf_find(o, t, "kind"), 0));
	mf_put(c, nt, o, mf_find(o, t, "name"), "name", mf_scalar(c, o, mf_find(o, t, "name"), qname));
	sn = mf_find(o, t, "sectionName");
	if (sn != NULL)
		mf_put(c, nt, o, sn, "sectionName", mf_copy(c, o, sn, 0));
	return nt;
}

/* localJWKS: Inline (the default type, as in Envoy Gateway) or ValueRef to a ConfigMap's "jwks". */
static int mf_local_jwks(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *lj, const char *path)
{
	static const char *const keys[] = {"type", "inline", "valueRef", NULL};
	static const char *const ref_keys[] = {"group", "kind", "name", NULL};
	static const char *const groups[] = {"", NULL};
	static const char *const kinds[] = {"ConfigMap", NULL};
	const char *type, *name;
	yaml_node_t *vr, *in;
	char kp[160];
	int n;

	if (!mf_check(c, o, lj, path, keys, NULL))
		return 0;
	type = mf_str(c, o, lj, path, "type", false);
	vr = mf_find(o, lj, "valueRef");
	in = mf_find(o, lj, "inline");
	if (type != NULL && strcmp(type, "Inline") != 0 && strcmp(type, "ValueRef") != 0) {
		mf_error(c, o, NULL, mf_find(o, lj, "type"), path,
		         "localJWKS type \"%s\" is not supported (Inline or ValueRef)", type);
		return 0;
	}
	n = mf_map(c, o, lj);
	if (type == NULL || strcmp(type, "Inline") == 0) {
		if (vr != NULL) {
			mf_error(c, o, NULL, vr, path, "\"valueRef\" is only for type ValueRef");
			return 0;
		}
		mf_put(c, n, o, lj, "type", mf_scalar(c, o, lj, "Inline"));
		if (in != NULL)
			mf_put(c, n, o, in, "inline", mf_copy(c, o, in, 0));
		return n;
	}
	if (in != NULL || vr == NULL) {
		mf_error(c, o, NULL, lj, path, "type ValueRef needs \"valueRef\" and no \"inline\"");
		return 0;
	}
	mf_fmt(kp, sizeof(kp), "%s.valueRef", path);
	if (!mf_check(c, o, vr, kp, ref_keys, NULL) ||
	    mf_ref_kind(c, o, vr, kp, "", "ConfigMap", groups, kinds) < 0 ||
	    (name = mf_str(c, o, vr, kp, "name", true)) == NULL)
		return 0;
	{
		const struct mf_obj *cm = mf_lookup(c, MF_CONFIGMAP, o->ns, name);
		char *jwks;

		if (cm == NULL) {
			mf_error(c, o, NULL, mf_find(o, vr, "name"), kp, "no ConfigMap \"%s\" in the input",
			         name);
			return 0;
		}
		jwks = mf_object_value(c, o, vr, kp, cm, "jwks");
		if (jwks == NULL)
			return 0;
		mf_put(c, n, o, lj, "type", mf_scalar(c, o, lj, "Inline"));
		mf_put(c, n, o, vr, "inline", mf_scalar(c, o, vr, jwks));
		free(jwks);
	}
	return n;
}

/* One provider: copied as it is, but remoteJWKS.backendRefs resolved and localJWKS made Inline. */
static int mf_provider(struct mf_ctx *c, const struct mf_obj *o, const yaml_node_t *pv, const char *path)
{
	yaml_node_pair_t *p, *q;
	char kp[160];
	int np;

	if (pv->type != YAML_MAPPING_NODE)
		return mf_copy(c, o, pv, 0);
	np = mf_map(c, o, pv);
	for (p = pv->data.mapping.pairs.start; p < pv->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = mf_node(o, p->key), *v = mf_node(o, p->value);
		const char *k = mf_text(kn);

		if (k != NULL && strcmp(k, "localJWKS") == 0 && !mf_is_null(v)) {
			int lj;

			mf_fmt(kp, sizeof(kp), "%s.localJWKS", path);
			lj = mf_local_jwks(c, o, v, kp);
			if (lj != 0)
				mf_put(c, np, o, kn, k, lj);
			continue;
		}
		if (k == NULL || strcmp(k, "remoteJWKS") != 0 || v->type != YAML_MAPPING_NODE) {
			mf_put(c, np, o, kn, k != NULL ? k : "?", mf_copy(c, o, v, 0));
			continue;
		}
		{
			int rj = mf_map(c, o, v);

			for (q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
				yaml_node_t *rk = mf_node(o, q->key), *rv = mf_node(o, q->value);
				const char *rks = mf_text(rk);
				size_t j;

				if (rks == NULL || strcmp(rks, "backendRefs") != 0 ||
				    rv->type != YAML_SEQUENCE_NODE) {
					mf_put(c, rj, o, rk, rks != NULL ? rks : "?", mf_copy(c, o, rv, 0));
					continue;
				}
				{
					int brs = mf_list(c, o, rv);

					for (j = 0; j < mf_seq_len(rv); j++) {
						int br;

						mf_fmt(kp, sizeof(kp), "%s.remoteJWKS.backendRefs[%zu]", path,
						       j);
						br = mf_backend_ref(c, o, mf_seq_item(o, rv, j), kp, false);
						if (br != 0)
							mf_push(c, brs, br);
					}
					mf_put(c, rj, o, rk, rks, brs);
				}
			}
			mf_put(c, np, o, kn, k, rj);
		}
	}
	return np;
}

static void mf_security_policy(struct mf_ctx *c, const struct mf_obj *o)
{
	yaml_node_pair_t *p;
	char kp[128], label[512];
	int np;

	if (o->spec->type != YAML_MAPPING_NODE) {
		mf_error(c, o, NULL, o->spec, "spec", "expected a mapping");
		return;
	}
	np = mf_map(c, o, o->spec);
	mf_put(c, np, o, mf_find(o, o->root, "metadata"), "name",
	       mf_scalar(c, o, mf_find(o, o->root, "metadata"), o->qname));
	/* the spec as it is (the native securityPolicies entry has Envoy Gateway's shape), with the
	 * references resolved */
	for (p = o->spec->data.mapping.pairs.start; p < o->spec->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = mf_node(o, p->key), *v = mf_node(o, p->value);
		const char *k = mf_text(kn);
		size_t i;

		if (k != NULL && strcmp(k, "targetRef") == 0) {
			int t = mf_target_ref(c, o, v, "spec.targetRef");

			if (t != 0)
				mf_put(c, np, o, kn, k, t);
		} else if (k != NULL && strcmp(k, "targetRefs") == 0 && v->type == YAML_SEQUENCE_NODE) {
			int ts = mf_list(c, o, v);

			for (i = 0; i < mf_seq_len(v); i++) {
				int t;

				mf_fmt(kp, sizeof(kp), "spec.targetRefs[%zu]", i);
				t = mf_target_ref(c, o, mf_seq_item(o, v, i), kp);
				if (t != 0)
					mf_push(c, ts, t);
			}
			mf_put(c, np, o, kn, k, ts);
		} else if (k != NULL && strcmp(k, "jwt") == 0 && v->type == YAML_MAPPING_NODE) {
			yaml_node_pair_t *q;
			int nj = mf_map(c, o, v);

			for (q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top; q++) {
				yaml_node_t *jk = mf_node(o, q->key), *jv = mf_node(o, q->value);
				const char *jks = mf_text(jk);

				if (jks == NULL || strcmp(jks, "providers") != 0 ||
				    jv->type != YAML_SEQUENCE_NODE) {
					mf_put(c, nj, o, jk, jks != NULL ? jks : "?", mf_copy(c, o, jv, 0));
					continue;
				}
				{
					int ps = mf_list(c, o, jv);

					for (i = 0; i < mf_seq_len(jv); i++) {
						mf_fmt(kp, sizeof(kp), "spec.jwt.providers[%zu]", i);
						mf_push(c, ps, mf_provider(c, o, mf_seq_item(o, jv, i), kp));
					}
					mf_put(c, nj, o, jk, jks, ps);
				}
			}
			mf_put(c, np, o, kn, k, nj);
		} else if (k != NULL && strcmp(k, "name") == 0) {
			mf_error(c, o, NULL, kn, "spec",
			         "\"name\" is not a SecurityPolicy spec field (metadata.name names it)");
		} else {
			/* authorization and the rest: the native parser validates them */
			mf_put(c, np, o, kn, k != NULL ? k : "?", mf_copy(c, o, v, 0));
		}
	}
	mf_fmt(label, sizeof(label), "%s spec", o->label);
	mf_section_add(c, MANIFEST_POLICIES, np, label);
}

/* ---------------------------------------------------------------- entry ---- */

bool manifest_doc_is_object(yaml_document_t *doc)
{
	yaml_node_t *root = yaml_document_get_root_node(doc);

	return root != NULL && root->type == YAML_MAPPING_NODE &&
	       (mf_find_in(doc, root, "apiVersion") != NULL || mf_find_in(doc, root, "kind") != NULL);
}

static void mf_secret_check(struct mf_ctx *c, const struct mf_obj *o)
{
	yaml_node_t *d = mf_find(o, o->root, "data");

	if (d != NULL && d->type != YAML_MAPPING_NODE)
		mf_error(c, o, NULL, d, "data", "expected a mapping");
	if (o->kind == MF_SECRET) {
		d = mf_find(o, o->root, "stringData");
		if (d != NULL && d->type != YAML_MAPPING_NODE)
			mf_error(c, o, NULL, d, "stringData", "expected a mapping");
	}
}

int manifest_translate(const struct manifest_src *srcs, size_t n, const char *const *files, FILE *err,
                       struct manifest_result *out)
{
	static const char *const section_keys[MANIFEST_N_SECTIONS] = {"listeners", "backends", "httpRoutes",
	                                                              "grpcRoutes", "securityPolicies"};
	struct mf_ctx c;
	size_t i, k;
	int root;
	const struct mf_obj *first = NULL;

	memset(out, 0, sizeof(*out));
	memset(&c, 0, sizeof(c));
	c.files = files;
	c.err = err;
	c.out = out;
	for (i = 0; i < n; i++)
		mf_collect(&c, &srcs[i]);
	for (i = 0; i < c.n_objs; i++) {
		if (c.objs[i].kind != MF_GATEWAY)
			continue;
		if (c.gateway == NULL)
			c.gateway = &c.objs[i];
		else
			mf_error(&c, &c.objs[i], NULL, c.objs[i].root, "",
			         "a second Gateway: jwtgate serves one Gateway (%s)", c.gateway->label);
	}
	if (c.gateway == NULL && c.n_errors == 0)
		mf_error(&c, NULL, n > 0 ? &srcs[0] : NULL, NULL, "",
		         "no Gateway in the input: jwtgate needs the Gateway its routes attach to");
	if (!yaml_document_initialize(&out->doc, NULL, NULL, NULL, 1, 1)) {
		fprintf(stderr, "jwtgate: out of memory\n");
		abort();
	}
	out->has_doc = true;
	for (i = 0; i < c.n_objs && first == NULL; i++)
		first = &c.objs[i];
	root = mf_map(&c, first, first != NULL ? first->root : NULL);
	for (k = 0; k < MANIFEST_N_SECTIONS; k++)
		c.seq[k] = mf_list(&c, first, first != NULL ? first->root : NULL);
	if (c.gateway != NULL)
		mf_gateway(&c, c.gateway);
	for (i = 0; i < c.n_objs; i++) {
		const struct mf_obj *o = &c.objs[i];

		switch (o->kind) {
		case MF_GATEWAYCLASS:
			mf_gatewayclass(&c, o);
			break;
		case MF_BACKEND:
			mf_backend(&c, o);
			break;
		case MF_HTTPROUTE:
		case MF_GRPCROUTE:
			mf_route(&c, o);
			break;
		case MF_SERVICE:
			mf_service_ports(&c, o);
			break;
		case MF_ENDPOINTSLICE:
			if (o->service_label == NULL)
				mf_error(&c, o, NULL, mf_find(o, o->root, "metadata"), "metadata.labels",
				         "an EndpointSlice needs the label kubernetes.io/service-name");
			break;
		case MF_SECRET:
		case MF_CONFIGMAP:
			mf_secret_check(&c, o);
			break;
		default:
			break;
		}
	}
	for (i = 0; i < c.n_objs; i++)
		if (c.objs[i].kind == MF_SECURITYPOLICY)
			mf_security_policy(&c, &c.objs[i]);
	for (k = 0; k < MANIFEST_N_SECTIONS; k++)
		if (out->n_labels[k] > 0)
			mf_put(&c, root, first, NULL, section_keys[k], c.seq[k]);
	free(c.objs);
	free(c.svcs);
	return c.n_errors;
}

void manifest_result_free(struct manifest_result *out)
{
	size_t k, i;

	if (out->has_doc)
		yaml_document_delete(&out->doc);
	out->has_doc = false;
	free(out->node_file);
	out->node_file = NULL;
	for (k = 0; k < MANIFEST_N_SECTIONS; k++) {
		for (i = 0; i < out->n_labels[k]; i++)
			free(out->labels[k][i]);
		free(out->labels[k]);
		out->labels[k] = NULL;
		out->n_labels[k] = 0;
	}
}
