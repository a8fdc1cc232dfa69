/* config.c: loads the YAML file of CONFIG.md into an immutable struct config.
 *
 * The file is read (bounded) and loaded into a libyaml document; the loader then walks the document
 * following the schema, never recursing generically, so nesting depth is fixed by the schema. Every
 * problem is reported as "file:line:column: message (at key.path)" and the walk continues, so one run
 * shows all errors. Aliases may make one node reachable many times; a visit budget bounds the work and
 * the memory a small hostile file can cause ("billion laughs").
 */
#include "config/config.h"
#include "config/manifest.h"
#include "core/common.h"
#include "core/log.h"
#include "core/log_writer.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define CONFIG_MAX_FILE_BYTES  (4u << 20) /* the configuration file itself */
#define CONFIG_MAX_JWKS_BYTES  (1u << 20) /* localJWKS type File */
#define CONFIG_MAX_NODE_VISITS 200000L    /* bound on nodes walked, aliases included */
#define CONFIG_MAX_PROVIDERS   16         /* Envoy Gateway: providers 1..16 */
#define CONFIG_KP_MAX          256        /* key path text in messages (truncated beyond) */
#define CONFIG_MAX_PATTERN     4096       /* regular expression source length */
#define CONFIG_MAX_WORKERS     1024
#define CONFIG_MAX_WEIGHT      1000000u /* Gateway API backendRef weight bound */
#define CONFIG_MAX_FILES       256      /* -c files, folders expanded */
#define CONFIG_MAX_DOCUMENTS   4096     /* YAML documents across them */

struct cfg_ctx {
	const char *path;
	FILE *err;
	int n_errors;
	yaml_document_t doc;
	struct config *cfg;
	long budget;
	bool over_budget;
	int next_provider;
	const struct config_policy **gateway_by_listener;       /* conflict detection for Gateway targets */
	const struct config_client_policy **client_by_listener; /* clientTrafficPolicy by sectionName */
	const struct config_client_policy *client_gateway;      /* clientTrafficPolicy on the whole Gateway */
	/* Manifests (NULL for a native file): the file of each node and the object each top-level item
	 * came from, so that a message names the manifest's file, position and object. */
	const struct manifest_result *mf;
	const char *const *files;
};

/* ---------------------------------------------------------------- messages ---- */

static void cfg_error(struct cfg_ctx *c, const yaml_node_t *node, const char *kp, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* " (at key.path)"; with manifests a path under a top-level list names the object the item came from
 * instead ("httpRoutes[1].rules[0]" -> "HTTPRoute/bar spec.rules[0]"). */
static void cfg_print_kp(struct cfg_ctx *c, const char *kp)
{
	static const char *const sections[MANIFEST_N_SECTIONS] = {"listeners", "backends", "httpRoutes",
	                                                          "grpcRoutes", "securityPolicies"};
	size_t s, len;

	for (s = 0; c->mf != NULL && s < MANIFEST_N_SECTIONS; s++) {
		char *end;
		unsigned long i;

		len = strlen(sections[s]);
		if (strncmp(kp, sections[s], len) != 0 || kp[len] != '[')
			continue;
		i = strtoul(kp + len + 1, &end, 10);
		if (*end != ']' || i >= c->mf->n_labels[s])
			break;
		fprintf(c->err, " (at %s%s)", c->mf->labels[s][i], end + 1);
		return;
	}
	fprintf(c->err, " (at %s)", kp);
}

/* Prints one error at node's start mark (libyaml marks are 0-based, messages 1-based). */
static void cfg_error(struct cfg_ctx *c, const yaml_node_t *node, const char *kp, const char *fmt, ...)
{
	va_list ap;
	unsigned long line = node != NULL ? (unsigned long)node->start_mark.line + 1 : 1;
	unsigned long col = node != NULL ? (unsigned long)node->start_mark.column + 1 : 1;

	const char *path = c->path;

	if (c->mf != NULL && node != NULL) {
		size_t id = (size_t)(node - c->doc.nodes.start);

		if (id < c->mf->n_node_file)
			path = c->files[c->mf->node_file[id]];
	}
	fprintf(c->err, "%s:%lu:%lu: ", path, line, col);
	va_start(ap, fmt);
	vfprintf(c->err, fmt, ap);
	va_end(ap);
	if (kp != NULL && kp[0] != '\0')
		cfg_print_kp(c, kp);
	fputc('\n', c->err);
	c->n_errors++;
}

/* Key paths are for messages only: a path longer than CONFIG_KP_MAX ends in "...". */
static void kp_truncated(char *out, int written)
{
	if (written < 0 || written >= CONFIG_KP_MAX)
		memcpy(out + CONFIG_KP_MAX - 4, "...", 4);
}

static void kp_key(char *out, const char *parent, const char *key)
{
	int w;

	if (parent[0] != '\0')
		w = snprintf(out, CONFIG_KP_MAX, "%s.%s", parent, key);
	else
		w = snprintf(out, CONFIG_KP_MAX, "%s", key);
	kp_truncated(out, w);
}

static void kp_idx(char *out, const char *parent, size_t i)
{
	kp_truncated(out, snprintf(out, CONFIG_KP_MAX, "%s[%zu]", parent, i));
}

/* ---------------------------------------------------------------- nodes ---- */

static yaml_node_t *cfg_node(struct cfg_ctx *c, int id)
{
	return yaml_document_get_node(&c->doc, id);
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

/* A plain empty, "~" or "null" scalar is YAML null: treated as an absent key. */
static bool node_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n == NULL || n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
	       strcmp(v, "NULL") == 0;
}

/* Charges n visits against the budget; false (error reported once) when exhausted. */
static bool cfg_spend(struct cfg_ctx *c, const yaml_node_t *node, size_t n)
{
	if (c->over_budget)
		return false;
	c->budget -= (long)n;
	if (c->budget < 0) {
		c->over_budget = true;
		cfg_error(c, node, "",
		          "configuration too large: more than %ld nodes to walk (aliases count each use)",
		          CONFIG_MAX_NODE_VISITS);
		return false;
	}
	return true;
}

static size_t map_len(const yaml_node_t *m)
{
	return (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
}

static size_t seq_len(const yaml_node_t *s)
{
	return (size_t)(s->data.sequence.items.top - s->data.sequence.items.start);
}

static yaml_node_t *seq_item(struct cfg_ctx *c, const yaml_node_t *s, size_t i)
{
	return cfg_node(c, s->data.sequence.items.start[i]);
}

static bool scalar_has_nul(const yaml_node_t *n)
{
	return memchr(n->data.scalar.value, '\0', n->data.scalar.length) != NULL;
}

/* Value of key in mapping map, or NULL (absent or null). */
static yaml_node_t *map_find(struct cfg_ctx *c, const yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = cfg_node(c, p->key);
		yaml_node_t *v;

		if (k == NULL || k->type != YAML_SCALAR_NODE ||
		    strcmp((const char *)k->data.scalar.value, key) != 0)
			continue;
		v = cfg_node(c, p->value);
		return node_is_null(v) ? NULL : v;
	}
	return NULL;
}

/* Checks that node is a mapping whose keys are all in allowed (NULL-terminated) and not repeated.
 * Reports every unknown or duplicate key. Returns true when node is a mapping (even with bad keys),
 * so the caller still walks the known keys; false when it is not a mapping or the budget is spent. */
static bool check_map(struct cfg_ctx *c, const yaml_node_t *node, const char *kp, const char *const *allowed)
{
	yaml_node_pair_t *p, *q;
	char show[CONFIG_SHOW_MAX + 4];

	if (node->type != YAML_MAPPING_NODE) {
		cfg_error(c, node, kp, "expected a mapping, found %s", node_kind(node));
		return false;
	}
	if (!cfg_spend(c, node, 1 + map_len(node)))
		return false;
	for (p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = cfg_node(c, p->key);
		const char *k;
		size_t i;
		bool known = false;

		if (kn == NULL || kn->type != YAML_SCALAR_NODE || scalar_has_nul(kn)) {
			cfg_error(c, kn != NULL ? kn : node, kp, "mapping keys must be plain strings");
			continue;
		}
		k = (const char *)kn->data.scalar.value;
		for (i = 0; allowed[i] != NULL; i++) {
			if (strcmp(allowed[i], k) == 0) {
				known = true;
				break;
			}
		}
		if (!known)
			cfg_error(c, kn, kp, "unknown key \"%s\"", config_show(k, show));
		for (q = node->data.mapping.pairs.start; q < p; q++) {
			yaml_node_t *qn = cfg_node(c, q->key);

			if (qn != NULL && qn->type == YAML_SCALAR_NODE &&
			    strcmp((const char *)qn->data.scalar.value, k) == 0) {
				cfg_error(c, kn, kp, "duplicate key \"%s\"", config_show(k, show));
				break;
			}
		}
	}
	return true;
}

/* Looks up key in map; writes the child key path to kp. Reports a missing required key at the map.
 * Returns the value node or NULL. */
static yaml_node_t *field(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                          bool required, char *kp)
{
	yaml_node_t *v = map_find(c, map, key);

	kp_key(kp, pkp, key);
	if (v == NULL && required)
		cfg_error(c, map, pkp, "missing required key \"%s\"", key);
	return v;
}

/* ---------------------------------------------------------------- scalars ---- */

#define S_MULTILINE (1u << 0) /* CR and LF allowed (PEM, JWKS JSON); never for values put on the wire */
#define S_NONEMPTY  (1u << 1)
#define S_TOKEN     (1u << 2) /* RFC 9110 section 5.6.2 token (header names, methods) */
#define S_LOWER     (1u << 3)

static bool is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (!is_tchar((unsigned char)*s))
			return false;
	}
	return true;
}

static void str_lower(char *s)
{
	for (; *s != '\0'; s++) {
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
	}
}

/* Returns n's text when it is a scalar satisfying flags, else reports and returns NULL. The text is
 * owned by the document. */
static const char *as_str(struct cfg_ctx *c, const yaml_node_t *n, const char *kp, unsigned flags)
{
	const char *v;
	char show[CONFIG_SHOW_MAX + 4];

	if (n->type != YAML_SCALAR_NODE) {
		cfg_error(c, n, kp, "expected a string, found %s", node_kind(n));
		return NULL;
	}
	v = (const char *)n->data.scalar.value;
	if (scalar_has_nul(n)) {
		cfg_error(c, n, kp, "NUL byte in value");
		return NULL;
	}
	if (!(flags & S_MULTILINE) && strpbrk(v, "\r\n") != NULL) {
		cfg_error(c, n, kp, "CR or LF in value");
		return NULL;
	}
	if ((flags & S_NONEMPTY) && v[0] == '\0') {
		cfg_error(c, n, kp, "value must not be empty");
		return NULL;
	}
	if ((flags & S_TOKEN) && !is_token(v)) {
		cfg_error(c, n, kp, "\"%s\" is not a valid HTTP token (RFC 9110 section 5.6.2)",
		          config_show(v, show));
		return NULL;
	}
	return v;
}

/* Like as_str, returning a copy the caller owns (lower-cased with S_LOWER). */
static char *dup_str(struct cfg_ctx *c, const yaml_node_t *n, const char *kp, unsigned flags)
{
	const char *v = as_str(c, n, kp, flags);
	char *d;

	if (v == NULL)
		return NULL;
	d = jg_xstrdup(v);
	if (flags & S_LOWER)
		str_lower(d);
	return d;
}

/* Optional or required string key of map into *out (owned by the caller). Returns 0, or -1 after an
 * error. *out is left untouched when the key is absent. */
static int get_str(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key, bool required,
                   unsigned flags, char **out)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, required, kp);
	char *v;

	if (n == NULL)
		return required ? -1 : 0;
	v = dup_str(c, n, kp, flags);
	if (v == NULL)
		return -1;
	free(*out);
	*out = v;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return JG_ERR_INVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return JG_ERR_LIMIT;
		v = v * 10 + d;
	}
	if (*s != '\0')
		return JG_ERR_INVAL;
	*out = v;
	return 0;
}

static int as_u64(struct cfg_ctx *c, const yaml_node_t *n, const char *kp, uint64_t min, uint64_t max,
                  uint64_t *out)
{
	const char *s = as_str(c, n, kp, 0);
	uint64_t v;
	char show[CONFIG_SHOW_MAX + 4];

	if (s == NULL)
		return -1;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || parse_u64(s, &v) == JG_ERR_INVAL) {
		cfg_error(c, n, kp, "expected a number, found \"%s\"", config_show(s, show));
		return -1;
	}
	if (parse_u64(s, &v) != 0 || v < min || v > max) {
		cfg_error(c, n, kp, "%s out of range %llu..%llu", config_show(s, show),
		          (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

static int get_u64(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key, uint64_t min,
                   uint64_t max, uint64_t *out)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, false, kp);

	if (n == NULL)
		return 0;
	return as_u64(c, n, kp, min, max, out);
}

static int get_u32(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key, uint32_t min,
                   uint32_t max, uint32_t *out)
{
	uint64_t v = *out;

	if (get_u64(c, map, pkp, key, min, max, &v) != 0)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int get_bool(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key, bool *out)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, false, kp);
	const char *s;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return 0;
	s = as_str(c, n, kp, 0);
	if (s == NULL)
		return -1;
	if (strcmp(s, "true") == 0) {
		*out = true;
	} else if (strcmp(s, "false") == 0) {
		*out = false;
	} else {
		cfg_error(c, n, kp, "expected true or false, found \"%s\"", config_show(s, show));
		return -1;
	}
	return 0;
}

/* Duration key; min_ms is the smallest accepted value. */
static int get_duration(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                        uint64_t min_ms, uint64_t *out_ms)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, false, kp);
	const char *s;
	uint64_t v;
	int rc;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return 0;
	s = as_str(c, n, kp, 0);
	if (s == NULL)
		return -1;
	rc = config_parse_duration_ms(s, &v);
	if (rc == JG_ERR_LIMIT) {
		cfg_error(c, n, kp, "duration \"%s\" is too large", config_show(s, show));
		return -1;
	}
	if (rc != 0) {
		cfg_error(c, n, kp, "invalid duration \"%s\" (expected e.g. 500ms, 10s, 5m, 1h30m)",
		          config_show(s, show));
		return -1;
	}
	if (v < min_ms) {
		cfg_error(c, n, kp, "duration \"%s\" is below the minimum of %llums", config_show(s, show),
		          (unsigned long long)min_ms);
		return -1;
	}
	*out_ms = v;
	return 0;
}

static int get_size(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key, uint64_t min,
                    uint64_t max, uint64_t *out)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, false, kp);
	const char *s;
	uint64_t v;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return 0;
	s = as_str(c, n, kp, 0);
	if (s == NULL)
		return -1;
	if (config_parse_size(s, &v) != 0) {
		cfg_error(c, n, kp, "invalid size \"%s\" (expected bytes, or a number with KiB, MiB or GiB)",
		          config_show(s, show));
		return -1;
	}
	if (v < min || v > max) {
		cfg_error(c, n, kp, "size %s out of range %llu..%llu bytes", config_show(s, show),
		          (unsigned long long)min, (unsigned long long)max);
		return -1;
	}
	*out = v;
	return 0;
}

/* Enumerated string key: *out = index of the name in names (NULL-terminated). */
static int get_enum(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                    const char *const *names, int *out)
{
	char kp[CONFIG_KP_MAX];
	char list[256] = "";
	yaml_node_t *n = field(c, map, pkp, key, false, kp);
	const char *s;
	int i;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return 0;
	s = as_str(c, n, kp, 0);
	if (s == NULL)
		return -1;
	for (i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], s) == 0) {
			*out = i;
			return 0;
		}
		if (strlen(list) + strlen(names[i]) + 3 < sizeof(list)) {
			if (i > 0)
				strcat(list, ", ");
			strcat(list, names[i]);
		}
	}
	cfg_error(c, n, kp, "invalid value \"%s\" (expected one of %s)", config_show(s, show), list);
	return -1;
}

/* A list-valued key. Returns the sequence node (and its length in *n) or NULL when absent or not a
 * list (reported). With required, absence and an empty list are errors. */
static yaml_node_t *get_seq(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                            bool required, char *kp, size_t *n)
{
	yaml_node_t *s = field(c, map, pkp, key, required, kp);

	*n = 0;
	if (s == NULL)
		return NULL;
	if (s->type != YAML_SEQUENCE_NODE) {
		cfg_error(c, s, kp, "expected a list, found %s", node_kind(s));
		return NULL;
	}
	if (!cfg_spend(c, s, 1 + seq_len(s)))
		return NULL;
	*n = seq_len(s);
	if (required && *n == 0) {
		cfg_error(c, s, kp, "list must not be empty");
		return NULL;
	}
	return s;
}

/* A list of 1 to max items (an empty list would match nothing or everything; the bound is what the
 * man page promises). Returns the sequence or NULL (reported, or absent when not required). */
static yaml_node_t *get_list_max(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                                 bool required, char *kp, size_t *n, size_t max)
{
	yaml_node_t *s = map_find(c, map, key) != NULL ? get_seq(c, map, pkp, key, true, kp, n)
	                                               : get_seq(c, map, pkp, key, required, kp, n);

	if (s != NULL && *n > max) {
		cfg_error(c, s, kp, "%zu items: at most %zu", *n, max);
		*n = 0;
		return NULL;
	}
	return s;
}

/* A list of strings into a new array (*out, *n_out), with flags applied to each. */
static void get_str_list(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                         unsigned flags, char ***out, size_t *n_out)
{
	char kp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	size_t n, i;
	yaml_node_t *s = get_seq(c, map, pkp, key, false, kp, &n);

	if (s == NULL || n == 0)
		return;
	*out = jg_xcalloc(n, sizeof(char *));
	for (i = 0; i < n; i++) {
		char *v;

		kp_idx(ikp, kp, i);
		v = dup_str(c, seq_item(c, s, i), ikp, flags);
		if (v != NULL)
			(*out)[(*n_out)++] = v;
	}
}

/* ---------------------------------------------------------------- helpers ---- */

/* Resolves a relative path against the configuration file's folder. Returns a new string. */
static char *resolve_path(struct cfg_ctx *c, const char *p)
{
	size_t dl, pl;
	char *r;

	if (p[0] == '/')
		return jg_xstrdup(p);
	dl = strlen(c->cfg->dir);
	pl = strlen(p);
	r = jg_xmalloc(dl + pl + 2);
	memcpy(r, c->cfg->dir, dl);
	r[dl] = '/';
	memcpy(r + dl + 1, p, pl + 1);
	return r;
}

/* A file path key, resolved; with must_read the file must be readable now. */
static int get_path(struct cfg_ctx *c, const yaml_node_t *map, const char *pkp, const char *key,
                    bool required, bool must_read, char **out)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, map, pkp, key, required, kp);
	const char *s;
	char show[CONFIG_SHOW_MAX + 4];

	if (n == NULL)
		return required ? -1 : 0;
	s = as_str(c, n, kp, S_NONEMPTY);
	if (s == NULL)
		return -1;
	free(*out);
	*out = resolve_path(c, s);
	if (must_read && access(*out, R_OK) == -1) {
		cfg_error(c, n, kp, "cannot read \"%s\": %s", config_show(*out, show), strerror(errno));
		return -1;
	}
	return 0;
}

/* Compiles pattern as POSIX ERE anchored ^(...)$. Returns 0 or reports and returns -1. */
static int compile_re(struct cfg_ctx *c, const yaml_node_t *n, const char *kp, const char *pattern,
                      regex_t *re)
{
	size_t len = strlen(pattern);
	char *src;
	int rc;

	if (len > CONFIG_MAX_PATTERN) {
		cfg_error(c, n, kp, "regular expression longer than %d bytes", CONFIG_MAX_PATTERN);
		return -1;
	}
	src = jg_xmalloc(len + 5);
	memcpy(src, "^(", 2);
	memcpy(src + 2, pattern, len);
	memcpy(src + 2 + len, ")$", 3);
	rc = regcomp(re, src, REG_EXTENDED | REG_NOSUB);
	free(src);
	if (rc != 0) {
		char buf[128];

		regerror(rc, re, buf, sizeof(buf));
		cfg_error(c, n, kp, "invalid regular expression: %s", buf);
		return -1;
	}
	return 0;
}

/* Host names: letters, digits, '-', '.', an optional leading "*." wildcard; no port. */
static bool is_hostname(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	if (s[0] == '*') {
		if (s[1] != '.' || s[2] == '\0')
			return false;
		s += 2;
	}
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

/* Header names jwtgate must never let a claim or payload header overwrite: they frame the message. */
static bool is_reserved_header(const char *h)
{
	static const char *const reserved[] = {
	        "host", "content-length", "transfer-encoding", "connection", "upgrade",
	        "te",   "keep-alive",     "proxy-connection",  "trailer",    NULL};
	size_t i;

	for (i = 0; reserved[i] != NULL; i++) {
		if (strcmp(reserved[i], h) == 0)
			return true;
	}
	return false;
}

/* ---------------------------------------------------------------- public parsers ---- */

/* Gateway API duration: one to four <digits><unit> parts, units h, m, s, ms, each at most once and in
 * decreasing order ("1h30m", "500ms", "0s"). Returns 0, JG_ERR_INVAL, or JG_ERR_LIMIT on overflow. */
int config_parse_duration_ms(const char *s, uint64_t *out_ms)
{
	uint64_t total = 0;
	int last_rank = 5;

	if (s == NULL || *s == '\0')
		return JG_ERR_INVAL;
	while (*s != '\0') {
		uint64_t v = 0, mult;
		int rank, digits = 0;

		if (*s < '0' || *s > '9')
			return JG_ERR_INVAL;
		for (; *s >= '0' && *s <= '9'; s++) {
			unsigned d = (unsigned)(*s - '0');

			if (v > (UINT64_MAX - d) / 10)
				return JG_ERR_LIMIT;
			v = v * 10 + d;
			digits++;
		}
		if (s[0] == 'm' && s[1] == 's') {
			mult = 1;
			rank = 1;
			s += 2;
		} else if (s[0] == 'h') {
			mult = 3600000;
			rank = 4;
			s++;
		} else if (s[0] == 'm') {
			mult = 60000;
			rank = 3;
			s++;
		} else if (s[0] == 's') {
			mult = 1000;
			rank = 2;
			s++;
		} else {
			return JG_ERR_INVAL;
		}
		if (rank >= last_rank)
			return JG_ERR_INVAL;
		last_rank = rank;
		if (v > UINT64_MAX / mult || total > UINT64_MAX - v * mult)
			return JG_ERR_LIMIT;
		total += v * mult;
		JG_UNUSED(digits);
	}
	*out_ms = total;
	return 0;
}

/* Size: decimal bytes, or with a binary suffix Ki/KiB, Mi/MiB, Gi/GiB. Returns 0, JG_ERR_INVAL, or
 * JG_ERR_LIMIT on overflow. */
int config_parse_size(const char *s, uint64_t *out)
{
	static const struct {
		const char *suffix;
		unsigned shift;
	} units[] = {{"", 0}, {"Ki", 10}, {"KiB", 10}, {"Mi", 20}, {"MiB", 20}, {"Gi", 30}, {"GiB", 30}};
	uint64_t v = 0;
	size_t i;

	if (s == NULL || *s < '0' || *s > '9')
		return JG_ERR_INVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (v > (UINT64_MAX - d) / 10)
			return JG_ERR_LIMIT;
		v = v * 10 + d;
	}
	for (i = 0; i < JG_ARRAY_SIZE(units); i++) {
		if (strcmp(s, units[i].suffix) == 0) {
			if (v > (UINT64_MAX >> units[i].shift))
				return JG_ERR_LIMIT;
			*out = v << units[i].shift;
			return 0;
		}
	}
	return JG_ERR_INVAL;
}

/* "IPv4:port" or "[IPv6]:port" with a numeric port 0..65535 (0: the kernel picks one). Host names are
 * refused: a listener binds to an address. Returns 0 and fills ss/len, or JG_ERR_INVAL. */
int config_parse_address(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *hs;
	size_t hl;
	uint64_t port;

	if (s == NULL)
		return JG_ERR_INVAL;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return JG_ERR_INVAL;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return JG_ERR_INVAL;
		hs = s;
		hl = (size_t)(colon - s);
		if (memchr(s, ':', hl) != NULL) /* IPv6 without brackets */
			return JG_ERR_INVAL;
	}
	if (hl == 0 || hl >= sizeof(host))
		return JG_ERR_INVAL;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (colon[1] == '\0' || strlen(colon + 1) > 5 || parse_u64(colon + 1, &port) != 0 || port > 65535)
		return JG_ERR_INVAL;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return JG_ERR_INVAL;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;

		if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
			return JG_ERR_INVAL;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
	}
	return 0;
}

/* ---------------------------------------------------------------- listeners ---- */

static void parse_listener(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_listener *l)
{
	static const char *const keys[] = {"name", "address", "tls", NULL};
	static const char *const tls_keys[] = {"certificateFile", "privateKeyFile",    "certificate",
	                                       "privateKey",      "ticketKeyRotation", NULL};
	struct config *cfg = c->cfg;
	char ckp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *v;
	int i;

	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &l->name) == 0) {
		for (i = 0; i < l->index; i++) {
			if (cfg->listeners[i].name != NULL && strcmp(cfg->listeners[i].name, l->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp, "duplicate listener name \"%s\"",
				          config_show(l->name, show));
		}
	}
	v = field(c, n, kp, "address", true, ckp);
	if (v != NULL && (l->address_text = dup_str(c, v, ckp, S_NONEMPTY)) != NULL) {
		if (config_parse_address(l->address_text, &l->addr, &l->addr_len) != 0) {
			cfg_error(c, v, ckp,
			          "invalid listener address \"%s\" (expected IPv4:port or [IPv6]:port; "
			          "host names are refused)",
			          config_show(l->address_text, show));
		} else {
			for (i = 0; i < l->index; i++) {
				struct config_listener *o = &cfg->listeners[i];

				if (o->addr_len == l->addr_len &&
				    memcmp(&o->addr, &l->addr, l->addr_len) == 0 &&
				    ntohs(((struct sockaddr_in *)&l->addr)->sin_port) != 0)
					cfg_error(c, v, ckp,
					          "address \"%s\" is already used by listener \"%s\"",
					          config_show(l->address_text, show),
					          o->name != NULL ? o->name : "?");
			}
		}
	}
	v = field(c, n, kp, "tls", false, ckp);
	if (v != NULL && check_map(c, v, ckp, tls_keys)) {
		/* files, or the PEM text inline (what a Kubernetes TLS Secret holds) */
		bool is_inline =
		        map_find(c, v, "certificate") != NULL || map_find(c, v, "privateKey") != NULL;

		l->has_tls = true;
		l->tls_ticket_rotation_ms = CONFIG_TICKET_ROTATION_DEFAULT_MS;
		get_duration(c, v, ckp, "ticketKeyRotation", 1000, &l->tls_ticket_rotation_ms);
		if (is_inline &&
		    (map_find(c, v, "certificateFile") != NULL || map_find(c, v, "privateKeyFile") != NULL)) {
			cfg_error(c, v, ckp,
			          "\"certificate\"/\"privateKey\" (inline PEM) and \"certificateFile\"/"
			          "\"privateKeyFile\" are exclusive");
		} else if (is_inline) {
			get_str(c, v, ckp, "certificate", true, S_MULTILINE | S_NONEMPTY, &l->tls_cert_pem);
			get_str(c, v, ckp, "privateKey", true, S_MULTILINE | S_NONEMPTY, &l->tls_key_pem);
		} else {
			get_path(c, v, ckp, "certificateFile", true, true, &l->tls_cert_file);
			get_path(c, v, ckp, "privateKeyFile", true, true, &l->tls_key_file);
		}
	}
}

/* ---------------------------------------------------------------- backends ---- */

static void parse_endpoint(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_endpoint *e)
{
	static const char *const keys[] = {"ip", "fqdn", NULL};
	static const char *const ip_keys[] = {"address", "port", NULL};
	static const char *const fqdn_keys[] = {"hostname", "port", NULL};
	char ckp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *ip, *fqdn, *v;
	uint64_t port = 0;

	if (!check_map(c, n, kp, keys))
		return;
	ip = map_find(c, n, "ip");
	fqdn = map_find(c, n, "fqdn");
	if ((ip == NULL) == (fqdn == NULL)) {
		cfg_error(c, n, kp, "an endpoint needs exactly one of \"ip\" and \"fqdn\"");
		return;
	}
	if (ip != NULL) {
		kp_key(ckp, kp, "ip");
		e->kind = CONFIG_ENDPOINT_IP;
		if (!check_map(c, ip, ckp, ip_keys))
			return;
		get_str(c, ip, ckp, "address", true, S_NONEMPTY, &e->host);
		v = map_find(c, ip, "port");
		if (v == NULL)
			cfg_error(c, ip, ckp, "missing required key \"port\"");
	} else {
		kp_key(ckp, kp, "fqdn");
		e->kind = CONFIG_ENDPOINT_FQDN;
		if (!check_map(c, fqdn, ckp, fqdn_keys))
			return;
		if (get_str(c, fqdn, ckp, "hostname", true, S_NONEMPTY | S_LOWER, &e->host) == 0 &&
		    (!is_hostname(e->host) || e->host[0] == '*'))
			cfg_error(c, map_find(c, fqdn, "hostname"), ckp, "invalid host name \"%s\"",
			          config_show(e->host, show));
		v = map_find(c, fqdn, "port");
		if (v == NULL)
			cfg_error(c, fqdn, ckp, "missing required key \"port\"");
	}
	if (v != NULL) {
		char pkp[CONFIG_KP_MAX];

		kp_key(pkp, ckp, "port");
		if (as_u64(c, v, pkp, 1, 65535, &port) == 0)
			e->port = (uint16_t)port;
	}
	if (e->kind == CONFIG_ENDPOINT_IP && e->host != NULL && e->port != 0) {
		int af = strchr(e->host, ':') != NULL ? AF_INET6 : AF_INET;

		memset(&e->addr, 0, sizeof(e->addr));
		if (af == AF_INET6) {
			struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&e->addr;

			if (inet_pton(AF_INET6, e->host, &a6->sin6_addr) == 1) {
				a6->sin6_family = AF_INET6;
				a6->sin6_port = htons(e->port);
				e->addr_len = sizeof(*a6);
			}
		} else {
			struct sockaddr_in *a4 = (struct sockaddr_in *)&e->addr;

			if (inet_pton(AF_INET, e->host, &a4->sin_addr) == 1) {
				a4->sin_family = AF_INET;
				a4->sin_port = htons(e->port);
				e->addr_len = sizeof(*a4);
			}
		}
		if (e->addr_len == 0)
			cfg_error(c, map_find(c, ip, "address"), ckp,
			          "\"%s\" is not an IP address (use fqdn: {hostname, port} for names)",
			          config_show(e->host, show));
	}
}

static void parse_backend_tls(struct cfg_ctx *c, yaml_node_t *n, const char *kp,
                              struct config_tls_validation *t)
{
	static const char *const keys[] = {"caCertificateRefs", "hostname", "wellKnownCACertificates", NULL};
	static const char *const ref_keys[] = {"file", "inline", "name", "kind", "group", NULL};
	static const char *const wk[] = {"System", NULL};
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *refs;
	size_t n_refs, i;
	int sys = -1;

	if (!check_map(c, n, kp, keys))
		return;
	t->enabled = true;
	if (get_str(c, n, kp, "hostname", true, S_NONEMPTY | S_LOWER, &t->hostname) == 0 &&
	    (!is_hostname(t->hostname) || t->hostname[0] == '*'))
		cfg_error(c, map_find(c, n, "hostname"), kp, "invalid host name \"%s\"",
		          config_show(t->hostname, show));
	if (get_enum(c, n, kp, "wellKnownCACertificates", wk, &sys) == 0 && sys == 0)
		t->well_known_system = true;
	refs = get_seq(c, n, kp, "caCertificateRefs", false, ckp, &n_refs);
	if (refs != NULL && n_refs > 0) {
		t->ca_files = jg_xcalloc(n_refs, sizeof(char *));
		t->ca_inline = jg_xcalloc(n_refs, sizeof(char *));
	}
	for (i = 0; refs != NULL && i < n_refs; i++) {
		yaml_node_t *r = seq_item(c, refs, i);
		bool has_file, has_inline;

		kp_idx(ikp, ckp, i);
		if (!check_map(c, r, ikp, ref_keys))
			continue;
		has_file = map_find(c, r, "file") != NULL;
		has_inline = map_find(c, r, "inline") != NULL;
		if (has_file == has_inline) {
			cfg_error(c, r, ikp,
			          "a CA certificate reference needs exactly one of \"file\" and \"inline\"");
			continue;
		}
		if (has_file) {
			char *p = NULL;

			if (get_path(c, r, ikp, "file", true, true, &p) == 0)
				t->ca_files[t->n_ca_files++] = p;
			else
				free(p);
		} else {
			char *p = NULL;

			if (get_str(c, r, ikp, "inline", true, S_MULTILINE | S_NONEMPTY, &p) == 0)
				t->ca_inline[t->n_ca_inline++] = p;
		}
	}
	if (t->well_known_system && n_refs > 0)
		cfg_error(c, n, kp, "\"caCertificateRefs\" and \"wellKnownCACertificates\" are exclusive");
	else if (!t->well_known_system && n_refs == 0 && sys != 0)
		cfg_error(c, n, kp, "tls needs \"caCertificateRefs\" or \"wellKnownCACertificates: System\"");
}

/* healthCheck.active into h: Envoy Gateway's ActiveHealthCheck with its defaults (timeout 1s, interval
 * 3s, unhealthyThreshold 3, healthyThreshold 1; HTTP method GET, expectedStatuses [200]). Type TCP (raw
 * payloads) is not supported; GRPC needs an HTTP/2 backend (the gRPC health protocol runs over h2). */
static void parse_active_hc(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_backend *b)
{
	static const char *const keys[] = {
	        "type", "timeout", "interval", "unhealthyThreshold", "healthyThreshold",
	        "http", "grpc",    NULL};
	static const char *const types[] = {"HTTP", "GRPC", "TCP", NULL};
	static const char *const http_keys[] = {"path", "method", "expectedStatuses", "expectedResponse",
	                                        NULL};
	static const char *const grpc_keys[] = {"service", NULL};
	/* RFC 9110 section 9 methods; CONNECT asks for a tunnel, not a response (Envoy refuses it too). */
	static const char *const methods[] = {"GET",     "HEAD",  "POST",  "PUT", "DELETE",
	                                      "OPTIONS", "TRACE", "PATCH", NULL};
	struct config_active_hc *h = &b->active_hc;
	char hkp[CONFIG_KP_MAX], gkp[CONFIG_KP_MAX], skp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	yaml_node_t *http, *grpc, *t, *st;
	int type = -1, method = 0;
	size_t n_st, i;

	h->timeout_ms = 1000;
	h->interval_ms = 3000;
	h->unhealthy_threshold = 3;
	h->healthy_threshold = 1;
	if (!check_map(c, n, kp, keys))
		return;
	t = field(c, n, kp, "type", true, hkp);
	if (t != NULL)
		get_enum(c, n, kp, "type", types, &type);
	get_duration(c, n, kp, "timeout", 1, &h->timeout_ms);
	get_duration(c, n, kp, "interval", 1, &h->interval_ms);
	get_u32(c, n, kp, "unhealthyThreshold", 1, UINT32_MAX, &h->unhealthy_threshold);
	get_u32(c, n, kp, "healthyThreshold", 1, UINT32_MAX, &h->healthy_threshold);
	http = field(c, n, kp, "http", false, hkp);
	grpc = field(c, n, kp, "grpc", false, gkp);
	if (type < 0)
		return; /* missing or invalid, reported: nothing to check the blocks against */
	if (type == 2) {
		cfg_error(c, t, kp, "health check type TCP is not supported (use HTTP or GRPC)");
		return;
	}
	if (type == 0 && http == NULL)
		cfg_error(c, n, kp, "health check type HTTP needs an \"http\" block");
	if (type != 0 && http != NULL)
		cfg_error(c, http, hkp, "\"http\" is only for health check type HTTP");
	if (type != 1 && grpc != NULL)
		cfg_error(c, grpc, gkp, "\"grpc\" is only for health check type GRPC");
	if (type == 1 && b->protocol == CONFIG_PROTO_HTTP)
		cfg_error(c, t, kp, "health check type GRPC needs an HTTP/2 backend (protocol H2C or H2)");
	if (type == 0 && http != NULL && check_map(c, http, hkp, http_keys)) {
		yaml_node_t *er = field(c, http, hkp, "expectedResponse", false, ikp);

		if (er != NULL)
			cfg_error(c, er, ikp, "expectedResponse (matching the body) is not supported");
		if (get_str(c, http, hkp, "path", true, S_NONEMPTY, &h->http_path) == 0 &&
		    h->http_path != NULL) {
			const char *q;

			kp_key(ikp, hkp, "path");
			if (h->http_path[0] != '/' || strlen(h->http_path) > 1024)
				cfg_error(c, map_find(c, http, "path"), ikp,
				          "path must start with \"/\" and be at most 1024 bytes");
			for (q = h->http_path; *q != '\0'; q++)
				if ((unsigned char)*q <= 0x20 || (unsigned char)*q >= 0x7f || *q == '#') {
					cfg_error(c, map_find(c, http, "path"), ikp,
					          "path has a byte that cannot go on a request line");
					break;
				}
		}
		get_enum(c, http, hkp, "method", methods, &method);
		h->http_method = jg_xstrdup(methods[method]);
		st = get_seq(c, http, hkp, "expectedStatuses", false, skp, &n_st);
		if (st != NULL && n_st > 0) {
			h->expected_statuses = jg_xcalloc(n_st, sizeof(*h->expected_statuses));
			for (i = 0; i < n_st; i++) {
				uint64_t v = 200;

				kp_idx(ikp, skp, i);
				as_u64(c, seq_item(c, st, i), ikp, 100, 599, &v);
				h->expected_statuses[h->n_expected_statuses++] = (uint16_t)v;
			}
		}
		if (h->n_expected_statuses == 0) {
			h->expected_statuses = jg_xcalloc(1, sizeof(*h->expected_statuses));
			h->expected_statuses[h->n_expected_statuses++] = 200;
		}
	}
	if (type == 1 && grpc != NULL && check_map(c, grpc, gkp, grpc_keys)) {
		if (get_str(c, grpc, gkp, "service", false, 0, &h->grpc_service) == 0 &&
		    h->grpc_service != NULL && strlen(h->grpc_service) > 1024) {
			kp_key(ikp, gkp, "service");
			cfg_error(c, map_find(c, grpc, "service"), ikp,
			          "service name longer than 1024 bytes");
		}
	}
	if (type == 0)
		h->type = CONFIG_HC_HTTP;
	else if (type == 1)
		h->type = CONFIG_HC_GRPC;
}

static void parse_backend(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_backend *b)
{
	static const char *const keys[] = {"name",           "protocol",    "endpoints",
	                                   "loadBalancer",   "timeouts",    "tls",
	                                   "circuitBreaker", "healthCheck", NULL};
	static const char *const protos[] = {"HTTP", "H2C", "H2", NULL};
	static const char *const lb_keys[] = {"type", NULL};
	static const char *const lbs[] = {"RoundRobin", "LeastRequest", "Random", NULL};
	static const char *const to_keys[] = {"connect", "request", "idle", NULL};
	static const char *const cb_keys[] = {"maxConnections", "maxPendingRequests", "maxParallelRequests",
	                                      NULL};
	static const char *const hc_keys[] = {"panicThreshold", "active", NULL};
	struct config *cfg = c->cfg;
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *v, *eps;
	size_t n_eps, i;
	int proto = CONFIG_PROTO_HTTP, lb = CONFIG_LB_ROUND_ROBIN;

	b->connect_timeout_ms = 5000;
	b->request_timeout_ms = 30000;
	b->idle_timeout_ms = 60000;
	b->max_connections = 1024;
	b->max_pending = 1024;
	b->max_requests = 1024;
	b->panic_threshold = 50;
	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &b->name) == 0) {
		for (i = 0; i < (size_t)b->index; i++) {
			if (cfg->backends[i].name != NULL && strcmp(cfg->backends[i].name, b->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp, "duplicate backend name \"%s\"",
				          config_show(b->name, show));
		}
	}
	get_enum(c, n, kp, "protocol", protos, &proto);
	b->protocol = (enum config_backend_protocol)proto;
	eps = get_seq(c, n, kp, "endpoints", true, ckp, &n_eps);
	if (eps != NULL) {
		b->endpoints = jg_xcalloc(n_eps, sizeof(*b->endpoints));
		b->n_endpoints = n_eps;
		for (i = 0; i < n_eps; i++) {
			kp_idx(ikp, ckp, i);
			parse_endpoint(c, seq_item(c, eps, i), ikp, &b->endpoints[i]);
		}
	}
	v = field(c, n, kp, "loadBalancer", false, ckp);
	if (v != NULL && check_map(c, v, ckp, lb_keys)) {
		get_enum(c, v, ckp, "type", lbs, &lb);
		b->lb = (enum config_lb_type)lb;
	}
	v = field(c, n, kp, "timeouts", false, ckp);
	if (v != NULL && check_map(c, v, ckp, to_keys)) {
		get_duration(c, v, ckp, "connect", 1, &b->connect_timeout_ms);
		get_duration(c, v, ckp, "request", 0, &b->request_timeout_ms);
		get_duration(c, v, ckp, "idle", 1, &b->idle_timeout_ms);
	}
	v = field(c, n, kp, "circuitBreaker", false, ckp);
	if (v != NULL && check_map(c, v, ckp, cb_keys)) {
		get_u32(c, v, ckp, "maxConnections", 1, UINT32_MAX, &b->max_connections);
		get_u32(c, v, ckp, "maxPendingRequests", 0, UINT32_MAX, &b->max_pending);
		get_u32(c, v, ckp, "maxParallelRequests", 1, UINT32_MAX, &b->max_requests);
	}
	/* Envoy Gateway's BackendTrafficPolicy healthCheck: panicThreshold (a percentage) and active. The
	 * protocol is known here: parse_active_hc checks GRPC against it. */
	v = field(c, n, kp, "healthCheck", false, ckp);
	if (v != NULL && check_map(c, v, ckp, hc_keys)) {
		yaml_node_t *a;

		get_u32(c, v, ckp, "panicThreshold", 0, 100, &b->panic_threshold);
		a = field(c, v, ckp, "active", false, ikp);
		if (a != NULL)
			parse_active_hc(c, a, ikp, b);
	}
	v = field(c, n, kp, "tls", false, ckp);
	if (v != NULL)
		parse_backend_tls(c, v, ckp, &b->tls);
	if (b->protocol == CONFIG_PROTO_H2 && v == NULL)
		cfg_error(c, n, kp,
		          "protocol H2 is HTTP/2 over TLS and needs a \"tls\" block (H2C is cleartext)");
	if (b->protocol == CONFIG_PROTO_H2C && v != NULL)
		cfg_error(c, v, ckp, "protocol H2C is cleartext; use protocol H2 for HTTP/2 over TLS");
}

static struct config_backend *find_backend(struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_backends; i++) {
		if (cfg->backends[i].name != NULL && strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	}
	return NULL;
}

/* ---------------------------------------------------------------- routes ---- */

/* {type, value} (paths) or {name, value, type} (headers, query parameters) into m. */
static void parse_string_match(struct cfg_ctx *c, yaml_node_t *n, const char *kp,
                               struct config_string_match *m, bool is_path, bool is_header)
{
	static const char *const path_keys[] = {"type", "value", NULL};
	static const char *const hdr_keys[] = {"name", "value", "type", NULL};
	static const char *const path_types[] = {"Exact", "PathPrefix", "RegularExpression", NULL};
	static const char *const val_types[] = {"Exact", "RegularExpression", NULL};
	char vkp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *vn;
	int type = is_path ? CONFIG_MATCH_PATH_PREFIX : CONFIG_MATCH_EXACT;

	if (!check_map(c, n, kp, is_path ? path_keys : hdr_keys))
		return;
	if (is_path) {
		get_enum(c, n, kp, "type", path_types, &type);
	} else {
		int t = 0;

		get_str(c, n, kp, "name", true, is_header ? (S_TOKEN | S_LOWER) : S_NONEMPTY, &m->name);
		if (get_enum(c, n, kp, "type", val_types, &t) == 0)
			type = t == 0 ? CONFIG_MATCH_EXACT : CONFIG_MATCH_REGEX;
	}
	m->type = (enum config_match_type)type;
	vn = field(c, n, kp, "value", !is_path, vkp);
	if (vn == NULL) {
		if (is_path) /* Gateway API default: PathPrefix "/" */
			m->value = jg_xstrdup("/");
	} else {
		m->value = dup_str(c, vn, vkp, 0);
	}
	if (m->value == NULL)
		return;
	if (m->type == CONFIG_MATCH_REGEX) {
		if (compile_re(c, vn, vkp, m->value, &m->re) == 0)
			m->has_re = true;
	} else if (is_path) {
		if (m->value[0] != '/' || strpbrk(m->value, "?# ") != NULL) {
			cfg_error(c, vn, vkp, "path \"%s\" must start with '/' and hold no '?', '#' or space",
			          config_show(m->value, show));
		} else if (m->type == CONFIG_MATCH_PATH_PREFIX) {
			size_t l = strlen(m->value);

			while (l > 1 && m->value[l - 1] == '/')
				m->value[--l] = '\0';
		}
	}
	m->value_len = strlen(m->value);
}

static void parse_match_list(struct cfg_ctx *c, yaml_node_t *map, const char *pkp, const char *key,
                             bool is_header, struct config_string_match **out, size_t *n_out)
{
	char kp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	size_t n, i;
	yaml_node_t *s = get_seq(c, map, pkp, key, false, kp, &n);

	if (s == NULL || n == 0)
		return;
	*out = jg_xcalloc(n, sizeof(**out));
	*n_out = n;
	for (i = 0; i < n; i++) {
		kp_idx(ikp, kp, i);
		parse_string_match(c, seq_item(c, s, i), ikp, &(*out)[i], false, is_header);
	}
}

static void parse_grpc_method(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_match *m)
{
	static const char *const keys[] = {"type", "service", "method", NULL};
	static const char *const types[] = {"Exact", "RegularExpression", NULL};
	char skp[CONFIG_KP_MAX], mkp[CONFIG_KP_MAX];
	yaml_node_t *sn, *mn;
	int t = 0;

	if (!check_map(c, n, kp, keys))
		return;
	m->has_grpc_method = true;
	get_enum(c, n, kp, "type", types, &t);
	m->grpc_type = t == 0 ? CONFIG_MATCH_EXACT : CONFIG_MATCH_REGEX;
	sn = field(c, n, kp, "service", false, skp);
	mn = field(c, n, kp, "method", false, mkp);
	if (sn == NULL && mn == NULL) {
		cfg_error(c, n, kp, "a gRPC method match needs \"service\", \"method\" or both");
		return;
	}
	if (sn != NULL)
		m->grpc_service = dup_str(c, sn, skp, S_NONEMPTY);
	if (mn != NULL)
		m->grpc_method = dup_str(c, mn, mkp, S_NONEMPTY);
	if (m->grpc_type == CONFIG_MATCH_REGEX) {
		if (m->grpc_service != NULL &&
		    compile_re(c, sn, skp, m->grpc_service, &m->grpc_service_re) == 0)
			m->has_grpc_service_re = true;
		if (m->grpc_method != NULL && compile_re(c, mn, mkp, m->grpc_method, &m->grpc_method_re) == 0)
			m->has_grpc_method_re = true;
	} else {
		if (m->grpc_service != NULL && strchr(m->grpc_service, '/') != NULL)
			cfg_error(c, sn, skp, "a gRPC service name holds no '/'");
		if (m->grpc_method != NULL && strchr(m->grpc_method, '/') != NULL)
			cfg_error(c, mn, mkp, "a gRPC method name holds no '/'");
	}
}

static void parse_match(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_match *m, bool grpc)
{
	static const char *const http_keys[] = {"path", "headers", "method", "queryParams", NULL};
	static const char *const grpc_keys[] = {"method", "headers", NULL};
	char ckp[CONFIG_KP_MAX];
	yaml_node_t *v;

	if (!check_map(c, n, kp, grpc ? grpc_keys : http_keys))
		return;
	parse_match_list(c, n, kp, "headers", true, &m->headers, &m->n_headers);
	if (grpc) {
		v = field(c, n, kp, "method", false, ckp);
		if (v != NULL)
			parse_grpc_method(c, v, ckp, m);
		return;
	}
	v = field(c, n, kp, "path", false, ckp);
	if (v != NULL) {
		m->has_path = true;
		parse_string_match(c, v, ckp, &m->path, true, false);
	}
	get_str(c, n, kp, "method", false, S_TOKEN, &m->method);
	parse_match_list(c, n, kp, "queryParams", false, &m->query_params, &m->n_query_params);
}

static void parse_backend_ref(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_backend_ref *r,
                              enum config_route_kind kind)
{
	static const char *const keys[] = {"name", "port", "weight", "group", "kind", NULL};
	static const char *const kinds[] = {"Backend", "Service", NULL};
	char show[CONFIG_SHOW_MAX + 4];
	uint64_t port = 0;
	int k;

	r->weight = 1;
	if (!check_map(c, n, kp, keys))
		return;
	get_enum(c, n, kp, "kind", kinds, &k);
	get_u32(c, n, kp, "weight", 0, CONFIG_MAX_WEIGHT, &r->weight);
	if (get_u64(c, n, kp, "port", 1, 65535, &port) == 0)
		r->port = (uint16_t)port;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &r->name) != 0)
		return;
	r->backend = find_backend(c->cfg, r->name);
	if (r->backend == NULL) {
		cfg_error(c, map_find(c, n, "name"), kp, "backendRefs names no backend \"%s\"",
		          config_show(r->name, show));
	} else if (kind == CONFIG_ROUTE_GRPC && r->backend->protocol == CONFIG_PROTO_HTTP) {
		cfg_error(c, map_find(c, n, "name"), kp,
		          "gRPC needs HTTP/2: backend \"%s\" has protocol HTTP (HTTP/1.1); set protocol H2C "
		          "or H2",
		          config_show(r->name, show));
	}
}

static void parse_rule(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_rule *r,
                       enum config_route_kind kind)
{
	static const char *const keys[] = {"matches", "backendRefs", NULL};
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	yaml_node_t *s;
	size_t cnt, i;

	if (!check_map(c, n, kp, keys))
		return;
	s = get_seq(c, n, kp, "matches", false, ckp, &cnt);
	if (s != NULL && cnt > 0) {
		r->matches = jg_xcalloc(cnt, sizeof(*r->matches));
		r->n_matches = cnt;
		for (i = 0; i < cnt; i++) {
			kp_idx(ikp, ckp, i);
			parse_match(c, seq_item(c, s, i), ikp, &r->matches[i], kind == CONFIG_ROUTE_GRPC);
		}
	}
	s = get_seq(c, n, kp, "backendRefs", true, ckp, &cnt);
	if (s != NULL) {
		r->backend_refs = jg_xcalloc(cnt, sizeof(*r->backend_refs));
		r->n_backend_refs = cnt;
		for (i = 0; i < cnt; i++) {
			kp_idx(ikp, ckp, i);
			parse_backend_ref(c, seq_item(c, s, i), ikp, &r->backend_refs[i], kind);
			r->total_weight +=
			        r->backend_refs[i].weight; /* each <= 1e6: no overflow below 4294 refs */
			if (r->total_weight > UINT32_MAX - CONFIG_MAX_WEIGHT) {
				cfg_error(c, s, ckp, "too many backendRefs");
				break;
			}
		}
	}
}

static void parse_route(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_route *rt,
                        size_t first_of_kind)
{
	static const char *const keys[] = {"name", "hostnames", "rules", NULL};
	struct config *cfg = c->cfg;
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *s;
	size_t cnt, i;

	if (cfg->n_listeners > 0)
		rt->gateway_policy_by_listener = jg_xcalloc(cfg->n_listeners, sizeof(struct config_policy *));
	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &rt->name) == 0) {
		for (i = first_of_kind; i < (size_t)rt->index; i++) {
			if (cfg->routes[i].name != NULL && strcmp(cfg->routes[i].name, rt->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp, "duplicate %s name \"%s\"",
				          rt->kind == CONFIG_ROUTE_GRPC ? "grpcRoute" : "httpRoute",
				          config_show(rt->name, show));
		}
	}
	s = get_seq(c, n, kp, "hostnames", false, ckp, &cnt);
	if (s != NULL && cnt > 0) {
		rt->hostnames = jg_xcalloc(cnt, sizeof(char *));
		for (i = 0; i < cnt; i++) {
			yaml_node_t *h = seq_item(c, s, i);
			char *v;

			kp_idx(ikp, ckp, i);
			v = dup_str(c, h, ikp, S_NONEMPTY | S_LOWER);
			if (v == NULL)
				continue;
			if (!is_hostname(v)) {
				cfg_error(c, h, ikp,
				          "invalid host name \"%s\" (no port, no scheme; \"*.\" wildcard "
				          "allowed)",
				          config_show(v, show));
				free(v);
				continue;
			}
			rt->hostnames[rt->n_hostnames++] = v;
		}
	}
	s = get_seq(c, n, kp, "rules", true, ckp, &cnt);
	if (s != NULL) {
		rt->rules = jg_xcalloc(cnt, sizeof(*rt->rules));
		rt->n_rules = cnt;
		for (i = 0; i < cnt; i++) {
			rt->rules[i].route = rt;
			rt->rules[i].index = (int)i;
			kp_idx(ikp, ckp, i);
			parse_rule(c, seq_item(c, s, i), ikp, &rt->rules[i], rt->kind);
		}
	}
}

/* ---------------------------------------------------------------- policies ---- */

static void parse_remote_jwks(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_remote_jwks *r)
{
	static const char *const keys[] = {
	        "uri", "backendRefs", "cacheDuration", "failedRefetchDuration", "backendSettings", NULL};
	static const char *const ref_keys[] = {"name", "port", "group", "kind", NULL};
	static const char *const bs_keys[] = {"timeout", "retry", NULL};
	static const char *const to_keys[] = {"http", NULL};
	static const char *const http_keys[] = {"requestTimeout", NULL};
	static const char *const retry_keys[] = {"numRetries", "perRetry", "retryOn", NULL};
	static const char *const per_keys[] = {"backOff", NULL};
	static const char *const bo_keys[] = {"baseInterval", "maxInterval", NULL};
	static const char *const on_keys[] = {"triggers", NULL};
	static const char *const triggers[] = {
	        "5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", NULL};
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX], tkp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *v, *w, *refs;
	size_t cnt, i;
	bool has_max = false;

	r->cache_duration_ms = 300000;
	r->failed_refetch_duration_ms = 1000;
	r->request_timeout_ms = 10000;
	r->retry.num_retries = 2;
	r->retry.base_interval_ms = 25;
	r->retry.triggers = CONFIG_RETRY_ON_5XX | CONFIG_RETRY_ON_GATEWAY_ERROR | CONFIG_RETRY_ON_RESET |
	                    CONFIG_RETRY_ON_CONNECT_FAILURE;
	if (!check_map(c, n, kp, keys))
		return;
	v = field(c, n, kp, "uri", true, ckp);
	if (v != NULL && (r->uri = dup_str(c, v, ckp, S_NONEMPTY)) != NULL) {
		/* "https or http" (the issue): http is fetched in clear unless the backend has a tls block;
		 * https is always TLS with verification (jwks_fetch.h). */
		size_t slen = strncmp(r->uri, "https://", 8) == 0  ? 8
		              : strncmp(r->uri, "http://", 7) == 0 ? 7
		                                                   : 0;

		if (slen == 0 || r->uri[slen] == '\0' || r->uri[slen] == '/' ||
		    strpbrk(r->uri, " \t") != NULL)
			cfg_error(c, v, ckp,
			          "remoteJWKS uri \"%s\" must be an https:// or http:// URL with a host",
			          config_show(r->uri, show));
	}
	get_duration(c, n, kp, "cacheDuration", 1, &r->cache_duration_ms);
	get_duration(c, n, kp, "failedRefetchDuration", 1, &r->failed_refetch_duration_ms);
	refs = get_seq(c, n, kp, "backendRefs", false, ckp, &cnt);
	if (refs != NULL && cnt > 1)
		cfg_error(c, refs, ckp, "remoteJWKS takes one backendRef, found %zu", cnt);
	if (refs != NULL && cnt >= 1) {
		w = seq_item(c, refs, 0);
		kp_idx(ikp, ckp, 0);
		if (check_map(c, w, ikp, ref_keys)) {
			uint64_t port = 0;

			if (get_u64(c, w, ikp, "port", 1, 65535, &port) == 0)
				r->backend_port = (uint16_t)port;
			if (get_str(c, w, ikp, "name", true, S_NONEMPTY, &r->backend_name) == 0) {
				r->backend = find_backend(c->cfg, r->backend_name);
				if (r->backend == NULL)
					cfg_error(c, map_find(c, w, "name"), ikp,
					          "remoteJWKS backendRefs names no backend \"%s\"",
					          config_show(r->backend_name, show));
			}
		}
	}
	v = field(c, n, kp, "backendSettings", false, ckp);
	if (v == NULL || !check_map(c, v, ckp, bs_keys))
		goto done;
	w = field(c, v, ckp, "timeout", false, ikp);
	if (w != NULL && check_map(c, w, ikp, to_keys)) {
		w = field(c, w, ikp, "http", false, tkp);
		if (w != NULL && check_map(c, w, tkp, http_keys))
			get_duration(c, w, tkp, "requestTimeout", 1, &r->request_timeout_ms);
	}
	w = field(c, v, ckp, "retry", false, ikp);
	if (w != NULL && check_map(c, w, ikp, retry_keys)) {
		yaml_node_t *x, *trig;

		get_u32(c, w, ikp, "numRetries", 0, 100, &r->retry.num_retries);
		x = field(c, w, ikp, "perRetry", false, tkp);
		if (x != NULL && check_map(c, x, tkp, per_keys)) {
			char bkp[CONFIG_KP_MAX];

			x = field(c, x, tkp, "backOff", false, bkp);
			if (x != NULL && check_map(c, x, bkp, bo_keys)) {
				get_duration(c, x, bkp, "baseInterval", 1, &r->retry.base_interval_ms);
				if (map_find(c, x, "maxInterval") != NULL &&
				    get_duration(c, x, bkp, "maxInterval", 1, &r->retry.max_interval_ms) ==
				            0) {
					has_max = true;
					if (r->retry.max_interval_ms < r->retry.base_interval_ms)
						cfg_error(c, map_find(c, x, "maxInterval"), bkp,
						          "maxInterval is below baseInterval");
				}
			}
		}
		x = field(c, w, ikp, "retryOn", false, tkp);
		if (x != NULL && check_map(c, x, tkp, on_keys)) {
			char gkp[CONFIG_KP_MAX], ekp[CONFIG_KP_MAX];

			trig = get_seq(c, x, tkp, "triggers", false, gkp, &cnt);
			if (trig != NULL)
				r->retry.triggers = 0;
			for (i = 0; trig != NULL && i < cnt; i++) {
				yaml_node_t *t = seq_item(c, trig, i);
				const char *s;
				size_t j;

				kp_idx(ekp, gkp, i);
				s = as_str(c, t, ekp, 0);
				if (s == NULL)
					continue;
				for (j = 0; triggers[j] != NULL; j++) {
					if (strcmp(triggers[j], s) == 0)
						break;
				}
				if (triggers[j] == NULL)
					cfg_error(c, t, ekp,
					          "unknown retry trigger \"%s\" (expected 5xx, "
					          "gateway-error, reset, "
					          "connect-failure or retriable-4xx)",
					          config_show(s, show));
				else
					r->retry.triggers |= 1u << j;
			}
		}
	}
done:
	if (!has_max)
		r->retry.max_interval_ms = r->retry.base_interval_ms > UINT64_MAX / 10
		                                   ? UINT64_MAX
		                                   : r->retry.base_interval_ms * 10;
}

/* Reads a localJWKS File (bounded by CONFIG_MAX_JWKS_BYTES) into p. */
static void read_jwks_file(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_provider *p)
{
	char show[CONFIG_SHOW_MAX + 4];
	FILE *f;
	char *buf = NULL;
	size_t len;

	f = fopen(p->local_jwks_origin, "rb");
	if (f == NULL) {
		cfg_error(c, n, kp, "cannot read JWKS file \"%s\": %s",
		          config_show(p->local_jwks_origin, show), strerror(errno));
		return;
	}
	buf = jg_xmalloc(CONFIG_MAX_JWKS_BYTES + 1);
	len = fread(buf, 1, CONFIG_MAX_JWKS_BYTES + 1, f);
	if (ferror(f)) {
		cfg_error(c, n, kp, "cannot read JWKS file \"%s\"", config_show(p->local_jwks_origin, show));
		goto cleanup;
	}
	if (len > CONFIG_MAX_JWKS_BYTES) {
		cfg_error(c, n, kp, "JWKS file \"%s\" is larger than %u bytes",
		          config_show(p->local_jwks_origin, show), CONFIG_MAX_JWKS_BYTES);
		goto cleanup;
	}
	buf[len] = '\0';
	p->local_jwks_json = jg_xrealloc(buf, len + 1);
	p->local_jwks_len = len;
	buf = NULL;
cleanup:
	free(buf);
	fclose(f);
}

static void parse_local_jwks(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_provider *p)
{
	static const char *const keys[] = {"type", "file", "inline", NULL};
	static const char *const types[] = {"File", "Inline", NULL};
	char ckp[CONFIG_KP_MAX];
	yaml_node_t *v;
	int type = -1;

	if (!check_map(c, n, kp, keys))
		return;
	if (map_find(c, n, "type") == NULL) {
		cfg_error(c, n, kp, "missing required key \"type\" (File or Inline)");
		return;
	}
	if (get_enum(c, n, kp, "type", types, &type) != 0)
		return;
	if (type == 0) {
		if (map_find(c, n, "inline") != NULL)
			cfg_error(c, map_find(c, n, "inline"), kp, "\"inline\" is only for type Inline");
		v = field(c, n, kp, "file", false, ckp);
		if (v == NULL) {
			cfg_error(c, n, kp, "localJWKS type File needs \"file\"");
			return;
		}
		if (get_path(c, n, kp, "file", true, false, &p->local_jwks_origin) == 0)
			read_jwks_file(c, v, ckp, p);
	} else {
		if (map_find(c, n, "file") != NULL)
			cfg_error(c, map_find(c, n, "file"), kp, "\"file\" is only for type File");
		v = field(c, n, kp, "inline", false, ckp);
		if (v == NULL) {
			cfg_error(c, n, kp, "localJWKS type Inline needs \"inline\"");
			return;
		}
		p->local_jwks_json = dup_str(c, v, ckp, S_MULTILINE | S_NONEMPTY);
		if (p->local_jwks_json != NULL) {
			p->local_jwks_len = strlen(p->local_jwks_json);
			p->local_jwks_origin = jg_xstrdup("inline");
		}
	}
}

static void parse_extract_from(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_provider *p)
{
	static const char *const keys[] = {"headers", "cookies", "params", NULL};
	static const char *const hdr_keys[] = {"name", "valuePrefix", NULL};
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	yaml_node_t *s;
	size_t cnt, i;

	if (!check_map(c, n, kp, keys))
		return;
	p->has_extract_from = true;
	s = get_seq(c, n, kp, "headers", false, ckp, &cnt);
	if (s != NULL && cnt > 0) {
		p->extract_headers = jg_xcalloc(cnt, sizeof(*p->extract_headers));
		p->n_extract_headers = cnt;
		for (i = 0; i < cnt; i++) {
			struct config_extract_header *h = &p->extract_headers[i];
			yaml_node_t *hn = seq_item(c, s, i);

			kp_idx(ikp, ckp, i);
			if (!check_map(c, hn, ikp, hdr_keys))
				continue;
			get_str(c, hn, ikp, "name", true, S_TOKEN | S_LOWER, &h->name);
			get_str(c, hn, ikp, "valuePrefix", false, 0, &h->value_prefix);
			if (h->value_prefix == NULL)
				h->value_prefix = jg_xstrdup("");
		}
	}
	get_str_list(c, n, kp, "cookies", S_TOKEN, &p->extract_cookies, &p->n_extract_cookies);
	get_str_list(c, n, kp, "params", S_NONEMPTY, &p->extract_params, &p->n_extract_params);
	if (p->n_extract_headers + p->n_extract_cookies + p->n_extract_params == 0 && !c->over_budget)
		cfg_error(c, n, kp, "extractFrom names no header, cookie or parameter");
}

static void parse_provider(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol,
                           size_t idx)
{
	static const char *const keys[] = {"name",
	                                   "issuer",
	                                   "audiences",
	                                   "localJWKS",
	                                   "remoteJWKS",
	                                   "claimToHeaders",
	                                   "recomputeRoute",
	                                   "extractFrom",
	                                   "clockSkew",
	                                   "forward",
	                                   "forwardPayloadHeader",
	                                   "requireExpiration",
	                                   "maxLifetime",
	                                   NULL};
	static const char *const cth_keys[] = {"header", "claim", NULL};
	struct config_provider *p = &pol->providers[idx];
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *local, *remote, *v;
	uint64_t ms;
	size_t cnt, i;

	p->index = c->next_provider++;
	p->clock_skew_s = CONFIG_CLOCK_SKEW_DEFAULT_S;
	p->forward = true;
	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &p->name) == 0) {
		for (i = 0; i < idx; i++) {
			if (pol->providers[i].name != NULL && strcmp(pol->providers[i].name, p->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp, "duplicate provider name \"%s\"",
				          config_show(p->name, show));
		}
	}
	get_str(c, n, kp, "issuer", false, 0, &p->issuer);
	if (p->issuer != NULL && p->issuer[0] == '\0') { /* empty issuer: not checked */
		free(p->issuer);
		p->issuer = NULL;
	}
	get_str_list(c, n, kp, "audiences", S_NONEMPTY, &p->audiences, &p->n_audiences);
	local = field(c, n, kp, "localJWKS", false, ckp);
	remote = map_find(c, n, "remoteJWKS");
	if (local != NULL && remote != NULL)
		cfg_error(c, n, kp, "\"localJWKS\" and \"remoteJWKS\" are exclusive");
	else if (local == NULL && remote == NULL)
		cfg_error(c, n, kp, "a provider needs \"localJWKS\" or \"remoteJWKS\"");
	if (local != NULL) {
		p->jwks_source = CONFIG_JWKS_LOCAL;
		parse_local_jwks(c, local, ckp, p);
	}
	if (remote != NULL) {
		kp_key(ckp, kp, "remoteJWKS");
		if (local == NULL)
			p->jwks_source = CONFIG_JWKS_REMOTE;
		parse_remote_jwks(c, remote, ckp, &p->remote);
	}
	v = get_seq(c, n, kp, "claimToHeaders", false, ckp, &cnt);
	if (v != NULL && cnt > 0) {
		p->claim_to_headers = jg_xcalloc(cnt, sizeof(*p->claim_to_headers));
		p->n_claim_to_headers = cnt;
		for (i = 0; i < cnt; i++) {
			struct config_claim_to_header *h = &p->claim_to_headers[i];
			yaml_node_t *hn = seq_item(c, v, i);

			kp_idx(ikp, ckp, i);
			if (!check_map(c, hn, ikp, cth_keys))
				continue;
			if (get_str(c, hn, ikp, "header", true, S_TOKEN | S_LOWER, &h->header) == 0 &&
			    is_reserved_header(h->header))
				cfg_error(c, map_find(c, hn, "header"), ikp,
				          "header \"%s\" frames the message and cannot carry a claim",
				          h->header);
			get_str(c, hn, ikp, "claim", true, S_NONEMPTY, &h->claim);
		}
	}
	get_bool(c, n, kp, "recomputeRoute", &p->recompute_route);
	if (p->recompute_route && p->n_claim_to_headers == 0)
		cfg_error(c, map_find(c, n, "recomputeRoute"), kp, "recomputeRoute needs claimToHeaders");
	v = field(c, n, kp, "extractFrom", false, ckp);
	if (v != NULL)
		parse_extract_from(c, v, ckp, p);
	ms = p->clock_skew_s * 1000;
	if (get_duration(c, n, kp, "clockSkew", 0, &ms) == 0)
		p->clock_skew_s = ms / 1000;
	get_bool(c, n, kp, "forward", &p->forward);
	if (get_str(c, n, kp, "forwardPayloadHeader", false, S_TOKEN | S_LOWER, &p->forward_payload_header) ==
	            0 &&
	    p->forward_payload_header != NULL && is_reserved_header(p->forward_payload_header))
		cfg_error(c, map_find(c, n, "forwardPayloadHeader"), kp,
		          "header \"%s\" frames the message and cannot carry the payload",
		          p->forward_payload_header);
	get_bool(c, n, kp, "requireExpiration", &p->require_expiration);
	ms = 0;
	if (get_duration(c, n, kp, "maxLifetime", 0, &ms) == 0)
		p->max_lifetime_s = ms / 1000;
}

/* Client-sent copies of every claim header of a policy are dropped before tokens are extracted
 * (auth.c). A claim header (or forwardPayloadHeader) that is also a header a token is read from
 * would therefore make that token always "missing", and with `optional` the request would pass
 * unauthenticated: refused here. */
static bool provider_extracts_from(const struct config_provider *p, const char *name)
{
	size_t i;

	if (!p->has_extract_from)
		return strcmp(name, "authorization") == 0;
	for (i = 0; i < p->n_extract_headers; i++)
		if (p->extract_headers[i].name != NULL && strcmp(p->extract_headers[i].name, name) == 0)
			return true;
	return false;
}

static void check_claim_headers_vs_extraction(struct cfg_ctx *c, yaml_node_t *n, const char *kp,
                                              const struct config_policy *pol)
{
	size_t i, j, k;

	for (i = 0; i < pol->n_providers; i++) {
		const struct config_provider *p = &pol->providers[i];

		for (j = 0; j <= p->n_claim_to_headers; j++) {
			const char *h = j < p->n_claim_to_headers ? p->claim_to_headers[j].header
			                                          : p->forward_payload_header;

			if (h == NULL)
				continue;
			for (k = 0; k < pol->n_providers; k++)
				if (provider_extracts_from(&pol->providers[k], h))
					cfg_error(c, n, kp,
					          "header \"%s\" carries claims for provider \"%s\" and a "
					          "token for "
					          "provider \"%s\": client copies of claim headers are "
					          "removed before "
					          "extraction, so the token would never be seen",
					          h, p->name ? p->name : "?",
					          pol->providers[k].name ? pol->providers[k].name : "?");
		}
	}
}

static struct config_route *find_route(struct config *cfg, enum config_route_kind kind, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_routes; i++) {
		if (cfg->routes[i].kind == kind && cfg->routes[i].name != NULL &&
		    strcmp(cfg->routes[i].name, name) == 0)
			return &cfg->routes[i];
	}
	return NULL;
}

static struct config_listener *find_listener(struct config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++) {
		if (cfg->listeners[i].name != NULL && strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	}
	return NULL;
}

/* Parses one targetRef and attaches pol to what it names: a route (route_policy) or the Gateway
 * (gateway_policy_by_listener of every route, for one listener with sectionName, else all). */
static void parse_target(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol,
                         struct config_target_ref *t)
{
	static const char *const keys[] = {"group", "kind", "name", "sectionName", NULL};
	static const char *const kinds[] = {"HTTPRoute", "GRPCRoute", "Gateway", NULL};
	struct config *cfg = c->cfg;
	char show[CONFIG_SHOW_MAX + 4];
	char *group = NULL;
	int kind = -1;
	size_t i, j;

	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "group", false, 0, &group) == 0 && group != NULL && group[0] != '\0' &&
	    strcmp(group, "gateway.networking.k8s.io") != 0)
		cfg_error(c, map_find(c, n, "group"), kp,
		          "unsupported group \"%s\" (expected gateway.networking.k8s.io)",
		          config_show(group, show));
	free(group);
	if (map_find(c, n, "kind") == NULL) {
		cfg_error(c, n, kp, "missing required key \"kind\" (HTTPRoute, GRPCRoute or Gateway)");
		return;
	}
	if (get_enum(c, n, kp, "kind", kinds, &kind) != 0)
		return;
	t->kind = (enum config_target_kind)kind;
	get_str(c, n, kp, "name", t->kind != CONFIG_TARGET_GATEWAY, S_NONEMPTY, &t->name);
	get_str(c, n, kp, "sectionName", false, S_NONEMPTY, &t->section_name);
	if (t->kind != CONFIG_TARGET_GATEWAY) {
		enum config_route_kind rk =
		        t->kind == CONFIG_TARGET_GRPCROUTE ? CONFIG_ROUTE_GRPC : CONFIG_ROUTE_HTTP;
		struct config_route *rt;

		if (t->section_name != NULL)
			cfg_error(c, map_find(c, n, "sectionName"), kp,
			          "sectionName is only supported with kind Gateway (a listener name)");
		if (t->name == NULL)
			return;
		rt = find_route(cfg, rk, t->name);
		if (rt == NULL) {
			cfg_error(c, map_find(c, n, "name"), kp, "targetRef names no %s \"%s\"", kinds[kind],
			          config_show(t->name, show));
			return;
		}
		if (rt->route_policy != NULL) {
			cfg_error(c, n, kp, "%s \"%s\" is already targeted by policy \"%s\"", kinds[kind],
			          config_show(t->name, show),
			          rt->route_policy->name ? rt->route_policy->name : "?");
			return;
		}
		rt->route_policy = pol;
		return;
	}
	for (i = 0; i < cfg->n_listeners; i++) {
		if (t->section_name != NULL) {
			struct config_listener *l = find_listener(cfg, t->section_name);

			if (l == NULL) {
				cfg_error(c, map_find(c, n, "sectionName"), kp,
				          "sectionName names no listener \"%s\"",
				          config_show(t->section_name, show));
				return;
			}
			i = (size_t)l->index;
		}
		if (c->gateway_by_listener[i] != NULL) {
			cfg_error(c, n, kp, "listener \"%s\" already has Gateway policy \"%s\"",
			          cfg->listeners[i].name ? cfg->listeners[i].name : "?",
			          c->gateway_by_listener[i]->name ? c->gateway_by_listener[i]->name : "?");
			return;
		}
		c->gateway_by_listener[i] = pol;
		for (j = 0; j < cfg->n_routes; j++) {
			if (cfg->routes[j].gateway_policy_by_listener != NULL)
				cfg->routes[j].gateway_policy_by_listener[i] = pol;
		}
		if (t->section_name != NULL)
			break;
	}
}

/* ---------------------------------------------------------------- authorization ---- */

/* "a.b.c.d/n" or "v6/n" into *out, host bits cleared (as Envoy's CidrRange and Go's net.ParseCIDR
 * do). Returns 0 or -1 (reported). */
static int parse_cidr(struct cfg_ctx *c, const yaml_node_t *n, const char *kp, struct config_cidr *out)
{
	char show[CONFIG_SHOW_MAX + 4], addr[INET6_ADDRSTRLEN];
	const char *s = as_str(c, n, kp, S_NONEMPTY), *slash;
	uint64_t prefix;
	unsigned i, max;

	if (s == NULL)
		return -1;
	slash = strchr(s, '/');
	if (slash == NULL || (size_t)(slash - s) >= sizeof(addr) || parse_u64(slash + 1, &prefix) < 0) {
		cfg_error(c, n, kp, "\"%s\" is not a CIDR range (address/prefix length)",
		          config_show(s, show));
		return -1;
	}
	memcpy(addr, s, (size_t)(slash - s));
	addr[slash - s] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, addr, out->net) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, addr, out->net) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else {
		cfg_error(c, n, kp, "\"%s\" is not a CIDR range (bad address)", config_show(s, show));
		return -1;
	}
	if (prefix > max || (slash[1] == '0' && slash[2] != '\0')) {
		cfg_error(c, n, kp, "\"%s\" is not a CIDR range (prefix length 0 to %u)",
		          config_show(s, show), max);
		return -1;
	}
	out->prefix = (unsigned)prefix;
	for (i = 0; i < max / 8; i++) {
		if (i * 8 >= prefix)
			out->net[i] = 0;
		else if (i * 8 + 8 > prefix)
			out->net[i] &= (uint8_t)(0xff00u >> (prefix - i * 8));
	}
	return 0;
}

static void parse_authz_claim(struct cfg_ctx *c, yaml_node_t *n, const char *kp,
                              struct config_authz_claim *cl)
{
	static const char *const keys[] = {"name", "valueType", "values", NULL};
	static const char *const types[] = {"String", "StringArray", NULL};
	char vkp[CONFIG_KP_MAX];
	int type = 0;
	size_t i, cnt;
	const char *p;

	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &cl->name) == 0) {
		/* Envoy Gateway splits the name at every '.' into metadata keys: an empty segment
		 * ("a..b", ".a") can never name a claim. */
		cl->n_segments = 1;
		for (p = cl->name; *p != '\0'; p++)
			cl->n_segments += *p == '.';
		cl->segments = jg_xcalloc(cl->n_segments, sizeof(char *));
		for (i = 0, p = cl->name; i < cl->n_segments; i++) {
			const char *dot = strchr(p, '.');
			size_t len = dot != NULL ? (size_t)(dot - p) : strlen(p);

			if (len == 0 && !c->over_budget) {
				cfg_error(c, map_find(c, n, "name"), kp,
				          "claim name \"%s\" has an empty segment", cl->name);
				break;
			}
			cl->segments[i] = jg_xstrndup(p, len);
			p += len + 1;
		}
	}
	get_enum(c, n, kp, "valueType", types, &type);
	cl->string_array = type == 1;
	if (get_list_max(c, n, kp, "values", true, vkp, &cnt, CONFIG_AUTHZ_MAX_VALUES) != NULL)
		get_str_list(c, n, kp, "values", 0, &cl->values, &cl->n_values);
}

static void parse_authz_jwt(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol,
                            struct config_authz_rule *r)
{
	static const char *const keys[] = {"provider", "claims", "scopes", NULL};
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX], show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *s;
	size_t i, cnt;

	if (!check_map(c, n, kp, keys))
		return;
	r->has_jwt = true;
	r->jwt_provider_index = -1;
	if (get_str(c, n, kp, "provider", true, S_NONEMPTY, &r->jwt_provider) == 0) {
		/* Envoy Gateway reads the claims a provider of the same policy put in metadata: any other
		 * name could never match, which for an Allow rule silently locks everyone out and for a
		 * Deny rule silently lets everyone through. */
		for (i = 0; i < pol->n_providers; i++)
			if (pol->providers[i].name != NULL &&
			    strcmp(pol->providers[i].name, r->jwt_provider) == 0)
				r->jwt_provider_index = pol->providers[i].index;
		if (r->jwt_provider_index < 0)
			cfg_error(c, map_find(c, n, "provider"), kp,
			          "unknown provider \"%s\" (not a jwt provider of this policy)",
			          config_show(r->jwt_provider, show));
	}
	s = get_list_max(c, n, kp, "claims", false, ckp, &cnt, CONFIG_AUTHZ_MAX_VALUES);
	if (s != NULL && cnt > 0) {
		r->claims = jg_xcalloc(cnt, sizeof(*r->claims));
		r->n_claims = cnt;
		for (i = 0; i < cnt; i++) {
			kp_idx(ikp, ckp, i);
			parse_authz_claim(c, seq_item(c, s, i), ikp, &r->claims[i]);
		}
	}
	if (get_list_max(c, n, kp, "scopes", false, ckp, &cnt, CONFIG_AUTHZ_MAX_VALUES) != NULL)
		get_str_list(c, n, kp, "scopes", S_NONEMPTY, &r->scopes, &r->n_scopes);
	for (i = 0; i < r->n_scopes; i++)
		if (strchr(r->scopes[i], ' ') != NULL)
			cfg_error(c, map_find(c, n, "scopes"), kp, "scope \"%s\" contains a space",
			          config_show(r->scopes[i], show));
	if (map_find(c, n, "claims") == NULL && map_find(c, n, "scopes") == NULL && !c->over_budget)
		cfg_error(c, n, kp, "a jwt principal needs \"claims\" or \"scopes\"");
}

static void parse_authz_rule(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol,
                             size_t idx)
{
	static const char *const keys[] = {"name", "action", "principal", "operation", NULL};
	static const char *const pkeys[] = {"clientCIDRs", "jwt", "headers", NULL};
	static const char *const hkeys[] = {"name", "values", NULL};
	static const char *const okeys[] = {"methods", NULL};
	static const char *const actions[] = {"Allow", "Deny", NULL};
	struct config_authz_rule *r = &pol->authz.rules[idx];
	char pkp[CONFIG_KP_MAX], ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX], show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *pr, *op, *s, *v;
	size_t i, j, cnt;
	int action = -1;

	if (!check_map(c, n, kp, keys))
		return;
	get_str(c, n, kp, "name", false, S_NONEMPTY, &r->name);
	if (r->name == NULL) {
		char gen[32];

		snprintf(gen, sizeof(gen), "rule-%zu", idx);
		r->name = jg_xstrdup(gen);
	} else {
		/* names label /metrics series: two rules of a policy with one name would be one series */
		for (i = 0; i < idx; i++)
			if (pol->authz.rules[i].name != NULL &&
			    strcmp(pol->authz.rules[i].name, r->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp, "duplicate rule name \"%s\"",
				          config_show(r->name, show));
	}
	if (map_find(c, n, "action") == NULL)
		cfg_error(c, n, kp, "missing required key \"action\"");
	get_enum(c, n, kp, "action", actions, &action);
	r->allow = action == 0;
	pr = field(c, n, kp, "principal", true, pkp);
	if (pr != NULL && check_map(c, pr, pkp, pkeys)) {
		s = get_list_max(c, pr, pkp, "clientCIDRs", false, ckp, &cnt, CONFIG_AUTHZ_MAX_HEADERS);
		if (s != NULL && cnt > 0) {
			r->cidrs = jg_xcalloc(cnt, sizeof(*r->cidrs));
			for (i = 0; i < cnt; i++) {
				kp_idx(ikp, ckp, i);
				if (parse_cidr(c, seq_item(c, s, i), ikp, &r->cidrs[r->n_cidrs]) == 0)
					r->n_cidrs++;
			}
		}
		v = field(c, pr, pkp, "jwt", false, ckp);
		if (v != NULL) {
			parse_authz_jwt(c, v, ckp, pol, r);
			pol->authz.needs_claims = true;
		}
		s = get_list_max(c, pr, pkp, "headers", false, ckp, &cnt, CONFIG_AUTHZ_MAX_HEADERS);
		if (s != NULL && cnt > 0) {
			r->headers = jg_xcalloc(cnt, sizeof(*r->headers));
			r->n_headers = cnt;
			for (i = 0; i < cnt; i++) {
				struct config_authz_header *h = &r->headers[i];
				yaml_node_t *hn = seq_item(c, s, i);
				char vkp[CONFIG_KP_MAX];

				kp_idx(ikp, ckp, i);
				if (!check_map(c, hn, ikp, hkeys))
					continue;
				get_str(c, hn, ikp, "name", true, S_TOKEN | S_LOWER, &h->name);
				if (get_list_max(c, hn, ikp, "values", true, vkp, &j,
				                 CONFIG_AUTHZ_MAX_HEADERS) != NULL)
					get_str_list(c, hn, ikp, "values", 0, &h->values, &h->n_values);
			}
		}
		if (map_find(c, pr, "clientCIDRs") == NULL && map_find(c, pr, "jwt") == NULL &&
		    map_find(c, pr, "headers") == NULL)
			cfg_error(c, pr, pkp, "empty principal: at least one of clientCIDRs, jwt or headers");
	}
	op = field(c, n, kp, "operation", false, ckp);
	if (op != NULL && check_map(c, op, ckp, okeys)) {
		s = get_seq(c, op, ckp, "methods", true, ikp, &cnt);
		for (i = 0; s != NULL && i < cnt; i++) {
			char mkp[CONFIG_KP_MAX];
			const char *m;
			unsigned bit;

			kp_idx(mkp, ikp, i);
			m = as_str(c, seq_item(c, s, i), mkp, S_TOKEN);
			if (m == NULL)
				continue;
			/* Gateway API HTTPMethod is an enum of upper-case names */
			bit = config_method_bit(m, strlen(m));
			if (strspn(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(m))
				bit = 0;
			if (bit == 0)
				cfg_error(c, seq_item(c, s, i), mkp,
				          "invalid method \"%s\" (expected one of GET, HEAD, POST, PUT, "
				          "DELETE, "
				          "CONNECT, OPTIONS, TRACE, PATCH)",
				          config_show(m, show));
			r->methods |= bit;
		}
	}
}

static void parse_authorization(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol)
{
	static const char *const keys[] = {"defaultAction", "rules", NULL};
	static const char *const actions[] = {"Allow", "Deny", NULL};
	char rkp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	int action = 1; /* Envoy Gateway: Deny when unset */
	yaml_node_t *s;
	size_t i, cnt;

	if (!check_map(c, n, kp, keys))
		return;
	pol->has_authz = true;
	get_enum(c, n, kp, "defaultAction", actions, &action);
	pol->authz.default_allow = action == 0;
	s = get_seq(c, n, kp, "rules", false, rkp, &cnt);
	if (s == NULL || cnt == 0)
		return;
	if (cnt > CONFIG_AUTHZ_MAX_RULES) {
		cfg_error(c, s, rkp, "%zu rules: a policy takes at most %d", cnt, CONFIG_AUTHZ_MAX_RULES);
		return;
	}
	pol->authz.rules = jg_xcalloc(cnt, sizeof(*pol->authz.rules));
	pol->authz.n_rules = cnt;
	for (i = 0; i < cnt; i++) {
		pol->authz.rules[i].jwt_provider_index = -1;
		kp_idx(ikp, rkp, i);
		parse_authz_rule(c, seq_item(c, s, i), ikp, pol, i);
	}
}

/* A policy's targets: "targetRef" (one) or "targetRefs" (a list), exactly one of the two, as in
 * Gateway API policy attachment. */
struct target_refs {
	yaml_node_t *one; /* targetRef, or NULL */
	yaml_node_t *seq; /* targetRefs, or NULL */
	char kp[CONFIG_KP_MAX];
};

/* Reads which form the policy n uses. Returns the number of targets; 0 after an error was reported
 * (both forms, neither, or targetRefs not a list). */
static size_t target_refs_get(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct target_refs *t)
{
	size_t cnt = 0;

	t->one = field(c, n, kp, "targetRef", false, t->kp);
	t->seq = NULL;
	if (t->one != NULL && map_find(c, n, "targetRefs") != NULL) {
		cfg_error(c, n, kp, "\"targetRef\" and \"targetRefs\" are exclusive");
		return 0;
	}
	if (t->one != NULL)
		return 1;
	if (map_find(c, n, "targetRefs") == NULL) {
		cfg_error(c, n, kp, "missing required key \"targetRefs\" (or \"targetRef\")");
		return 0;
	}
	t->seq = get_seq(c, n, kp, "targetRefs", true, t->kp, &cnt);
	return t->seq != NULL ? cnt : 0;
}

/* Target i (below target_refs_get's count) and its key path, written to ikp (CONFIG_KP_MAX bytes). */
static yaml_node_t *target_refs_item(struct cfg_ctx *c, const struct target_refs *t, size_t i, char *ikp)
{
	if (t->seq == NULL) {
		snprintf(ikp, CONFIG_KP_MAX, "%s", t->kp);
		return t->one;
	}
	kp_idx(ikp, t->kp, i);
	return seq_item(c, t->seq, i);
}

static void parse_policy(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_policy *pol)
{
	static const char *const keys[] = {"name", "targetRef", "targetRefs", "jwt", "authorization", NULL};
	static const char *const jwt_keys[] = {"providers", "optional", "failOpen", NULL};
	struct config *cfg = c->cfg;
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	struct target_refs refs;
	yaml_node_t *jwt, *s;
	size_t cnt, i;

	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &pol->name) == 0) {
		for (i = 0; i < (size_t)pol->index; i++) {
			if (cfg->policies[i].name != NULL && strcmp(cfg->policies[i].name, pol->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp,
				          "duplicate securityPolicy name \"%s\"",
				          config_show(pol->name, show));
		}
	}
	/* jwt first: targets attach the policy, and a policy is whole before anything points at it */
	jwt = field(c, n, kp, "jwt", false, ckp);
	if (jwt == NULL && map_find(c, n, "authorization") == NULL)
		cfg_error(c, n, kp, "missing required key \"jwt\" (or \"authorization\")");
	if (jwt != NULL && check_map(c, jwt, ckp, jwt_keys)) {
		pol->has_jwt = true;
		s = get_seq(c, jwt, ckp, "providers", true, ikp, &cnt);
		if (s != NULL && cnt > CONFIG_MAX_PROVIDERS) {
			cfg_error(c, s, ikp, "%zu providers: a policy takes 1 to %d", cnt,
			          CONFIG_MAX_PROVIDERS);
		} else if (s != NULL) {
			char pkp[CONFIG_KP_MAX];

			pol->providers = jg_xcalloc(cnt, sizeof(*pol->providers));
			pol->n_providers = cnt;
			for (i = 0; i < cnt; i++) {
				kp_idx(pkp, ikp, i);
				parse_provider(c, seq_item(c, s, i), pkp, pol, i);
			}
			check_claim_headers_vs_extraction(c, s, ikp, pol);
		}
		get_bool(c, jwt, ckp, "optional", &pol->optional);
		get_bool(c, jwt, ckp, "failOpen", &pol->fail_open);
		if (pol->optional && pol->fail_open)
			cfg_error(c, jwt, ckp, "\"optional\" and \"failOpen\" cannot be combined");
	}
	/* after jwt: rules name its providers */
	s = field(c, n, kp, "authorization", false, ckp);
	if (s != NULL)
		parse_authorization(c, s, ckp, pol);
	cnt = target_refs_get(c, n, kp, &refs);
	if (cnt == 0)
		return;
	pol->targets = jg_xcalloc(cnt, sizeof(*pol->targets));
	pol->n_targets = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *tn = target_refs_item(c, &refs, i, ikp);

		parse_target(c, tn, ikp, pol, &pol->targets[i]);
	}
}

/* ------------------------------------------------------- client traffic ---- */

static const struct config_client_traffic client_traffic_defaults = {
        .underscores = CONFIG_UNDERSCORES_REJECT,
        .escaped_slashes = CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT,
        .merge_slashes = true,
};

/* One targetRef of a clientTrafficPolicy: only the Gateway (every listener) or one listener of it
 * (sectionName). Records the listener index in *listener (-1 = all); returns -1 when refused. */
static int parse_client_target(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_target_ref *t,
                               int *listener)
{
	static const char *const keys[] = {"group", "kind", "name", "sectionName", NULL};
	static const char *const kinds[] = {"Gateway", NULL};
	char show[CONFIG_SHOW_MAX + 4];
	char *group = NULL;
	int kind = -1;

	if (!check_map(c, n, kp, keys))
		return -1;
	if (get_str(c, n, kp, "group", false, 0, &group) == 0 && group != NULL && group[0] != '\0' &&
	    strcmp(group, "gateway.networking.k8s.io") != 0)
		cfg_error(c, map_find(c, n, "group"), kp,
		          "unsupported group \"%s\" (expected gateway.networking.k8s.io)",
		          config_show(group, show));
	free(group);
	if (map_find(c, n, "kind") == NULL) {
		cfg_error(c, n, kp, "missing required key \"kind\" (Gateway)");
		return -1;
	}
	if (get_enum(c, n, kp, "kind", kinds, &kind) != 0)
		return -1;
	t->kind = CONFIG_TARGET_GATEWAY;
	get_str(c, n, kp, "name", false, S_NONEMPTY, &t->name);
	get_str(c, n, kp, "sectionName", false, S_NONEMPTY, &t->section_name);
	*listener = -1;
	if (t->section_name != NULL) {
		struct config_listener *l = find_listener(c->cfg, t->section_name);

		if (l == NULL) {
			cfg_error(c, map_find(c, n, "sectionName"), kp,
			          "sectionName names no listener \"%s\"", config_show(t->section_name, show));
			return -1;
		}
		*listener = l->index;
	}
	return 0;
}

/* A clientTrafficPolicy (Envoy Gateway's ClientTrafficPolicy, the parts jwtgate has: headers and
 * path). Settings left out keep their defaults. The policy is applied to listeners afterwards by
 * apply_client_policies(), where a sectionName target overrides a whole-Gateway one. */
static void parse_client_policy(struct cfg_ctx *c, yaml_node_t *n, const char *kp,
                                struct config_client_policy *cp)
{
	static const char *const keys[] = {"name", "targetRef", "targetRefs", "headers", "path", NULL};
	static const char *const header_keys[] = {"withUnderscoresAction", NULL};
	static const char *const path_keys[] = {"escapedSlashesAction", "disableMergeSlashes", NULL};
	static const char *const underscores[] = {"RejectRequest", "Allow", "DropHeader", NULL};
	static const char *const slashes[] = {"UnescapeAndRedirect", "KeepUnchanged", "RejectRequest",
	                                      "UnescapeAndForward", NULL};
	struct config *cfg = c->cfg;
	char ckp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	struct target_refs refs;
	yaml_node_t *v;
	size_t cnt, i;
	int e;
	bool disable_merge = false;

	cp->settings = client_traffic_defaults;
	if (!check_map(c, n, kp, keys))
		return;
	if (get_str(c, n, kp, "name", true, S_NONEMPTY, &cp->name) == 0) {
		for (i = 0; i < (size_t)cp->index; i++) {
			if (cfg->client_policies[i].name != NULL &&
			    strcmp(cfg->client_policies[i].name, cp->name) == 0)
				cfg_error(c, map_find(c, n, "name"), kp,
				          "duplicate clientTrafficPolicy name \"%s\"",
				          config_show(cp->name, show));
		}
	}
	cp->settings.policy_name = cp->name;
	v = field(c, n, kp, "headers", false, ckp);
	if (v != NULL && check_map(c, v, ckp, header_keys)) {
		cp->has_headers = true;
		e = (int)cp->settings.underscores;
		if (get_enum(c, v, ckp, "withUnderscoresAction", underscores, &e) == 0)
			cp->settings.underscores = (enum config_underscores_action)e;
	}
	v = field(c, n, kp, "path", false, ckp);
	if (v != NULL && check_map(c, v, ckp, path_keys)) {
		cp->has_path = true;
		e = (int)cp->settings.escaped_slashes;
		if (get_enum(c, v, ckp, "escapedSlashesAction", slashes, &e) == 0)
			cp->settings.escaped_slashes = (enum config_escaped_slashes_action)e;
		if (get_bool(c, v, ckp, "disableMergeSlashes", &disable_merge) == 0)
			cp->settings.merge_slashes = !disable_merge;
	}
	cnt = target_refs_get(c, n, kp, &refs);
	if (cnt == 0)
		return;
	cp->targets = jg_xcalloc(cnt, sizeof(*cp->targets));
	cp->n_targets = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *tn = target_refs_item(c, &refs, i, ikp);
		int li;

		if (parse_client_target(c, tn, ikp, &cp->targets[i], &li) != 0)
			continue;
		if (li < 0) {
			if (c->client_gateway != NULL && c->client_gateway != cp) {
				cfg_error(c, tn, ikp, "the Gateway already has clientTrafficPolicy \"%s\"",
				          c->client_gateway->name ? c->client_gateway->name : "?");
				continue;
			}
			c->client_gateway = cp;
		} else {
			if (c->client_by_listener[li] != NULL && c->client_by_listener[li] != cp) {
				cfg_error(c, tn, ikp,
				          "listener \"%s\" already has clientTrafficPolicy \"%s\"",
				          cfg->listeners[li].name ? cfg->listeners[li].name : "?",
				          c->client_by_listener[li]->name ? c->client_by_listener[li]->name
				                                          : "?");
				continue;
			}
			c->client_by_listener[li] = cp;
		}
	}
}

/* Gives each listener its client traffic settings: the policy naming it by sectionName, else the
 * Gateway-wide one, else the defaults. */
static void apply_client_policies(struct cfg_ctx *c)
{
	struct config *cfg = c->cfg;
	size_t i;

	for (i = 0; i < cfg->n_listeners; i++) {
		const struct config_client_policy *cp =
		        c->client_by_listener != NULL ? c->client_by_listener[i] : NULL;

		if (cp == NULL)
			cp = c->client_gateway;
		cfg->listeners[i].client = cp != NULL ? cp->settings : client_traffic_defaults;
	}
}

/* ---------------------------------------------------------------- top level ---- */

static void parse_limits(struct cfg_ctx *c, yaml_node_t *n, const char *kp, struct config_limits *l)
{
	static const char *const keys[] = {"maxHeaderBytes",
	                                   "maxHeaderCount",
	                                   "maxRequestLine",
	                                   "maxBodySize",
	                                   "headerTimeout",
	                                   "idleTimeout",
	                                   "drainTimeout",
	                                   "maxConnections",
	                                   "http2MaxConcurrentStreams",
	                                   "listenBacklog",
	                                   NULL};
	uint64_t v;

	if (!check_map(c, n, kp, keys))
		return;
	v = l->max_header_bytes;
	if (get_size(c, n, kp, "maxHeaderBytes", 1024, 1u << 24, &v) == 0)
		l->max_header_bytes = (uint32_t)v;
	get_u32(c, n, kp, "maxHeaderCount", 1, 10000, &l->max_header_count);
	v = l->max_request_line;
	if (get_size(c, n, kp, "maxRequestLine", 64, 1u << 24, &v) == 0)
		l->max_request_line = (uint32_t)v;
	get_size(c, n, kp, "maxBodySize", 0, UINT64_MAX, &l->max_body_bytes);
	get_duration(c, n, kp, "headerTimeout", 1, &l->header_timeout_ms);
	get_duration(c, n, kp, "idleTimeout", 1, &l->idle_timeout_ms);
	get_duration(c, n, kp, "drainTimeout", 0, &l->drain_timeout_ms);
	get_u32(c, n, kp, "maxConnections", 1, 10000000, &l->max_connections);
	get_u32(c, n, kp, "http2MaxConcurrentStreams", 1, 1u << 20, &l->h2_max_concurrent_streams);
	get_u32(c, n, kp, "listenBacklog", 1, 1u << 20, &l->listen_backlog);
	if (l->max_request_line > l->max_header_bytes)
		cfg_error(c, n, kp, "maxRequestLine is larger than maxHeaderBytes");
}

static void parse_workers(struct cfg_ctx *c, yaml_node_t *root)
{
	char kp[CONFIG_KP_MAX];
	yaml_node_t *n = field(c, root, "", "workers", false, kp);
	uint64_t v;
	long cpus;

	if (n != NULL && n->type == YAML_SCALAR_NODE &&
	    strcmp((const char *)n->data.scalar.value, "auto") != 0) {
		const char *t = (const char *)n->data.scalar.value;
		char show[CONFIG_SHOW_MAX + 4];

		if (parse_u64(t, &v) == JG_ERR_INVAL || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
			cfg_error(c, n, kp, "expected a number or \"auto\", found \"%s\"",
			          config_show(t, show));
		else if (as_u64(c, n, kp, 1, CONFIG_MAX_WORKERS, &v) == 0)
			c->cfg->workers = (int)v;
		return;
	}
	if (n != NULL && as_str(c, n, kp, 0) == NULL)
		return;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	c->cfg->workers = cpus < 1 ? 1 : cpus > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (int)cpus;
}

static void parse_top_misc(struct cfg_ctx *c, yaml_node_t *root)
{
	static const char *const admin_keys[] = {"address", NULL};
	static const char *const al_keys[] = {"path", "format", "includeSub", "bufferSize", NULL};
	static const char *const formats[] = {"text", "json", NULL};
	static const char *const log_keys[] = {"level", NULL};
	static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
	static const char *const tc_keys[] = {"size", NULL};
	static const char *const reload_keys[] = {"watch", NULL};
	struct config *cfg = c->cfg;
	char kp[CONFIG_KP_MAX], akp[CONFIG_KP_MAX];
	char show[CONFIG_SHOW_MAX + 4];
	yaml_node_t *n, *v;

	parse_workers(c, root);
	n = field(c, root, "", "admin", false, kp);
	if (n != NULL && check_map(c, n, kp, admin_keys)) {
		v = field(c, n, kp, "address", true, akp);
		if (v != NULL) {
			const char *s = as_str(c, v, akp, S_NONEMPTY);

			if (s != NULL && config_parse_address(s, &cfg->admin_addr, &cfg->admin_addr_len) != 0)
				cfg_error(c, v, akp,
				          "invalid admin address \"%s\" (expected IPv4:port or [IPv6]:port; "
				          "host names are refused)",
				          config_show(s, show));
			else if (s != NULL)
				cfg->has_admin = true;
		}
	}
	n = field(c, root, "", "accessLog", false, kp);
	if (n != NULL && check_map(c, n, kp, al_keys)) {
		int f = CONFIG_LOG_TEXT;

		v = field(c, n, kp, "path", true, akp);
		if (v != NULL) {
			const char *s = as_str(c, v, akp, S_NONEMPTY);

			if (s != NULL && (strcmp(s, "stdout") == 0 || strcmp(s, "stderr") == 0))
				cfg->access_log_path = jg_xstrdup(s);
			else if (s != NULL)
				cfg->access_log_path = resolve_path(c, s);
		}
		get_enum(c, n, kp, "format", formats, &f);
		cfg->access_log_format = (enum config_log_format)f;
		get_bool(c, n, kp, "includeSub", &cfg->access_log_sub);
		get_size(c, n, kp, "bufferSize", LOG_WRITER_RING_MIN, LOG_WRITER_RING_MAX,
		         &cfg->access_log_buffer);
	}
	n = field(c, root, "", "log", false, kp);
	if (n != NULL && check_map(c, n, kp, log_keys)) {
		int lv = LOG_LEVEL_INFO;

		if (get_enum(c, n, kp, "level", levels, &lv) == 0)
			cfg->log_level = lv;
	}
	n = field(c, root, "", "tokenCache", false, kp);
	if (n != NULL && check_map(c, n, kp, tc_keys))
		get_u32(c, n, kp, "size", 0, 1u << 24, &cfg->token_cache_size);
	n = field(c, root, "", "limits", false, kp);
	if (n != NULL)
		parse_limits(c, n, kp, &cfg->limits);
	n = field(c, root, "", "reload", false, kp);
	if (n != NULL && check_map(c, n, kp, reload_keys))
		get_bool(c, n, kp, "watch", &cfg->reload_watch);
}

static void config_set_defaults(struct config *cfg)
{
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->token_cache_size = 4096;
	cfg->access_log_format = CONFIG_LOG_TEXT;
	cfg->access_log_buffer = LOG_WRITER_RING_DEFAULT;
	cfg->limits.max_header_bytes = 60 * 1024;
	cfg->limits.max_header_count = 100;
	cfg->limits.max_request_line = 8 * 1024;
	cfg->limits.max_body_bytes = 0;
	cfg->limits.header_timeout_ms = 10000;
	cfg->limits.idle_timeout_ms = 60000;
	cfg->limits.drain_timeout_ms = 10000;
	cfg->limits.max_connections = 10000;
	cfg->limits.h2_max_concurrent_streams = 100;
	cfg->limits.listen_backlog = 4096;
}

/* Walks the whole document in dependency order: listeners, backends, routes (need backends),
 * policies (need routes and listeners), whatever the order of keys in the file. */
static void parse_root(struct cfg_ctx *c, yaml_node_t *root)
{
	static const char *const keys[] = {
	        "listeners",        "backends",
	        "httpRoutes",       "grpcRoutes",
	        "securityPolicies", "clientTrafficPolicies",
	        "workers",          "admin",
	        "accessLog",        "log",
	        "tokenCache",       "limits",
	        "reload",           NULL,
	};
	struct config *cfg = c->cfg;
	char kp[CONFIG_KP_MAX], ikp[CONFIG_KP_MAX];
	yaml_node_t *s, *hs, *gs;
	size_t cnt, n_http, n_grpc, i;

	if (!check_map(c, root, "", keys))
		return;
	parse_top_misc(c, root);

	s = get_seq(c, root, "", "listeners", false, kp, &cnt);
	if (cnt == 0 && !c->over_budget) {
		yaml_node_t *l = map_find(c, root, "listeners");

		if (l == NULL || l->type == YAML_SEQUENCE_NODE)
			cfg_error(c, l != NULL ? l : root, "",
			          "no listeners: at least one listener is needed");
	}
	if (s != NULL && cnt > 0) {
		cfg->listeners = jg_xcalloc(cnt, sizeof(*cfg->listeners));
		cfg->n_listeners = cnt;
		c->gateway_by_listener = jg_xcalloc(cnt, sizeof(*c->gateway_by_listener));
		c->client_by_listener = jg_xcalloc(cnt, sizeof(*c->client_by_listener));
		for (i = 0; i < cnt; i++) {
			cfg->listeners[i].index = (int)i;
			kp_idx(ikp, kp, i);
			parse_listener(c, seq_item(c, s, i), ikp, &cfg->listeners[i]);
		}
	}

	s = get_seq(c, root, "", "backends", false, kp, &cnt);
	if (s != NULL && cnt > 0) {
		cfg->backends = jg_xcalloc(cnt, sizeof(*cfg->backends));
		cfg->n_backends = cnt;
		for (i = 0; i < cnt; i++) {
			cfg->backends[i].index = (int)i;
			kp_idx(ikp, kp, i);
			parse_backend(c, seq_item(c, s, i), ikp, &cfg->backends[i]);
		}
	}

	hs = get_seq(c, root, "", "httpRoutes", false, kp, &n_http);
	gs = get_seq(c, root, "", "grpcRoutes", false, ikp, &n_grpc);
	if (n_http + n_grpc > 0) {
		cfg->routes = jg_xcalloc(n_http + n_grpc, sizeof(*cfg->routes));
		cfg->n_routes = n_http + n_grpc;
	}
	for (i = 0; hs != NULL && i < n_http; i++) {
		cfg->routes[i].index = (int)i;
		cfg->routes[i].kind = CONFIG_ROUTE_HTTP;
		kp_idx(ikp, "httpRoutes", i);
		parse_route(c, seq_item(c, hs, i), ikp, &cfg->routes[i], 0);
	}
	for (i = 0; gs != NULL && i < n_grpc; i++) {
		struct config_route *rt = &cfg->routes[n_http + i];

		rt->index = (int)(n_http + i);
		rt->kind = CONFIG_ROUTE_GRPC;
		kp_idx(ikp, "grpcRoutes", i);
		parse_route(c, seq_item(c, gs, i), ikp, rt, n_http);
	}

	s = get_seq(c, root, "", "securityPolicies", false, kp, &cnt);
	if (s != NULL && cnt > 0) {
		cfg->policies = jg_xcalloc(cnt, sizeof(*cfg->policies));
		cfg->n_policies = cnt;
		for (i = 0; i < cnt; i++) {
			cfg->policies[i].index = (int)i;
			kp_idx(ikp, kp, i);
			parse_policy(c, seq_item(c, s, i), ikp, &cfg->policies[i]);
		}
	}
	cfg->n_providers = (size_t)c->next_provider;

	s = get_seq(c, root, "", "clientTrafficPolicies", false, kp, &cnt);
	if (s != NULL && cnt > 0) {
		cfg->client_policies = jg_xcalloc(cnt, sizeof(*cfg->client_policies));
		cfg->n_client_policies = cnt;
		for (i = 0; i < cnt; i++) {
			cfg->client_policies[i].index = (int)i;
			kp_idx(ikp, kp, i);
			parse_client_policy(c, seq_item(c, s, i), ikp, &cfg->client_policies[i]);
		}
	}
	apply_client_policies(c);
}

/* Reads the whole file (bounded by CONFIG_MAX_FILE_BYTES) into a new buffer. */
static int read_file(const char *path, FILE *err, unsigned char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	size_t n;
	int rc = JG_ERR_IO;

	if (f == NULL) {
		fprintf(err, "%s: cannot open: %s\n", path, strerror(errno));
		return JG_ERR_IO;
	}
	buf = jg_xmalloc(CONFIG_MAX_FILE_BYTES + 1);
	n = fread(buf, 1, CONFIG_MAX_FILE_BYTES + 1, f);
	if (ferror(f)) {
		fprintf(err, "%s: cannot read: %s\n", path, strerror(errno));
		goto cleanup;
	}
	if (n > CONFIG_MAX_FILE_BYTES) {
		fprintf(err, "%s: larger than %u bytes\n", path, CONFIG_MAX_FILE_BYTES);
		rc = JG_ERR_LIMIT;
		goto cleanup;
	}
	*out = buf;
	*len = n;
	buf = NULL;
	rc = 0;
cleanup:
	free(buf);
	fclose(f);
	return rc;
}

/* The files of the -c arguments: a file as given, a folder's regular *.yaml / *.yml files in name
 * order (hidden names skipped: Kubernetes' ConfigMap folders keep "..data" links there). Appends to
 * cfg->sources and cfg->source_dirs. Returns 0 or a negative JG_ERR_* after a message. */
static int config_expand_paths(const char *const *paths, size_t n_paths, FILE *err, struct config *cfg)
{
	size_t i;

	for (i = 0; i < n_paths; i++) {
		struct stat st;
		struct dirent **ents = NULL;
		int n, j, rc = 0;

		if (stat(paths[i], &st) == -1) {
			fprintf(err, "%s: cannot open: %s\n", paths[i], strerror(errno));
			return JG_ERR_IO;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (cfg->n_sources == CONFIG_MAX_FILES)
				goto too_many;
			cfg->sources = jg_xrealloc(cfg->sources, (cfg->n_sources + 1) * sizeof(char *));
			cfg->sources[cfg->n_sources++] = jg_xstrdup(paths[i]);
			continue;
		}
		cfg->source_dirs = jg_xrealloc(cfg->source_dirs, (cfg->n_source_dirs + 1) * sizeof(char *));
		cfg->source_dirs[cfg->n_source_dirs++] = jg_xstrdup(paths[i]);
		n = scandir(paths[i], &ents, NULL, alphasort);
		if (n == -1) {
			fprintf(err, "%s: cannot read the folder: %s\n", paths[i], strerror(errno));
			return JG_ERR_IO;
		}
		for (j = 0; j < n; j++) {
			const char *name = ents[j]->d_name;
			size_t len = strlen(name), pl = strlen(paths[i]);
			char *full;
			struct stat fst;

			if (rc == 0 && name[0] != '.' &&
			    ((len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
			     (len > 4 && strcmp(name + len - 4, ".yml") == 0))) {
				full = jg_xmalloc(pl + len + 2);
				snprintf(full, pl + len + 2, "%s%s%s", paths[i],
				         pl > 0 && paths[i][pl - 1] == '/' ? "" : "/", name);
				if (stat(full, &fst) == 0 && S_ISREG(fst.st_mode) &&
				    cfg->n_sources < CONFIG_MAX_FILES) {
					cfg->sources = jg_xrealloc(cfg->sources,
					                           (cfg->n_sources + 1) * sizeof(char *));
					cfg->sources[cfg->n_sources++] = full;
				} else {
					if (cfg->n_sources == CONFIG_MAX_FILES)
						rc = JG_ERR_LIMIT;
					free(full);
				}
			}
			free(ents[j]);
		}
		free(ents);
		if (rc != 0)
			goto too_many;
	}
	if (cfg->n_sources == 0) {
		fprintf(err, "%s: no *.yaml file to read\n", n_paths > 0 ? paths[0] : "-c");
		return JG_ERR_INVAL;
	}
	return 0;
too_many:
	fprintf(err, "%s: more than %u configuration files\n", paths[i], CONFIG_MAX_FILES);
	return JG_ERR_LIMIT;
}

/* Every YAML document of every file, parsed; syntax errors reported. Returns the error count (> 0),
 * 0, or a negative JG_ERR_* when a file cannot be read. */
static int config_parse_sources(struct config *cfg, FILE *err, struct manifest_src **out, size_t *n_out)
{
	size_t f;
	int n_errors = 0;

	for (f = 0; f < cfg->n_sources; f++) {
		const char *path = cfg->sources[f];
		yaml_parser_t parser;
		unsigned char *text = NULL;
		size_t len = 0;
		int rc = read_file(path, err, &text, &len);

		if (rc != 0)
			return rc;
		if (!yaml_parser_initialize(&parser)) {
			free(text);
			fprintf(err, "%s: cannot initialise the YAML parser\n", path);
			return JG_ERR_NOMEM;
		}
		yaml_parser_set_input_string(&parser, text, len);
		for (;;) {
			yaml_document_t doc;

			if (!yaml_parser_load(&parser, &doc)) {
				fprintf(err, "%s:%lu:%lu: YAML syntax error: %s", path,
				        (unsigned long)parser.problem_mark.line + 1,
				        (unsigned long)parser.problem_mark.column + 1,
				        parser.problem != NULL ? parser.problem : "unknown problem");
				if (parser.context != NULL)
					fprintf(err, " (%s)", parser.context);
				fputc('\n', err);
				n_errors++;
				break;
			}
			if (yaml_document_get_root_node(&doc) == NULL) {
				yaml_document_delete(&doc); /* the end of the stream */
				break;
			}
			if (*n_out == CONFIG_MAX_DOCUMENTS) {
				fprintf(err, "%s: more than %u YAML documents\n", path, CONFIG_MAX_DOCUMENTS);
				yaml_document_delete(&doc);
				n_errors++;
				break;
			}
			*out = jg_xrealloc(*out, (*n_out + 1) * sizeof(**out));
			(*out)[*n_out].doc = doc;
			(*out)[*n_out].file = (int)f;
			(*n_out)++;
		}
		yaml_parser_delete(&parser);
		free(text);
	}
	return n_errors;
}

/* Writes the native document as YAML (libyaml's emitter). Returns 0 or JG_ERR_IO. */
static int config_emit(yaml_document_t *doc, const struct config *cfg, FILE *out)
{
	yaml_emitter_t em;
	int rc = 0;
	size_t i;

	fprintf(out, "# jwtgate.yaml(5), from");
	for (i = 0; i < cfg->n_sources; i++)
		fprintf(out, " %s", cfg->sources[i]);
	fputc('\n', out);
	if (!yaml_emitter_initialize(&em))
		return JG_ERR_NOMEM;
	yaml_emitter_set_output_file(&em, out);
	yaml_emitter_set_unicode(&em, 1);
	yaml_emitter_set_width(&em, 100);
	/* yaml_emitter_dump takes the document's nodes (the document is empty afterwards) */
	if (!yaml_emitter_open(&em) || !yaml_emitter_dump(&em, doc) || !yaml_emitter_close(&em) ||
	    !yaml_emitter_flush(&em))
		rc = JG_ERR_IO;
	yaml_emitter_delete(&em);
	return rc;
}

static int config_load_impl(const char *const *paths, size_t n_paths, FILE *err, FILE *print,
                            struct config **out)
{
	struct cfg_ctx c;
	struct manifest_src *srcs = NULL;
	struct manifest_result mf;
	size_t n_srcs = 0, i;
	bool is_native;
	const char *slash;
	yaml_node_t *root;
	int rc;

	*out = NULL;
	memset(&c, 0, sizeof(c));
	memset(&mf, 0, sizeof(mf));
	c.err = err;
	c.budget = CONFIG_MAX_NODE_VISITS;
	if (n_paths == 0) {
		fprintf(err, "no configuration file\n");
		return JG_ERR_INVAL;
	}
	c.cfg = jg_xcalloc(1, sizeof(*c.cfg));
	c.cfg->path = jg_xstrdup(paths[0]);
	rc = config_expand_paths(paths, n_paths, err, c.cfg);
	if (rc != 0)
		goto cleanup;
	c.path = c.cfg->sources[0];
	c.files = (const char *const *)c.cfg->sources;
	slash = strrchr(c.path, '/');
	if (slash == NULL)
		c.cfg->dir = jg_xstrdup(".");
	else if (slash == c.path)
		c.cfg->dir = jg_xstrdup("/");
	else
		c.cfg->dir = jg_xstrndup(c.path, (size_t)(slash - c.path));
	config_set_defaults(c.cfg);

	rc = config_parse_sources(c.cfg, err, &srcs, &n_srcs);
	if (rc != 0)
		goto cleanup;
	/* One native document in one file keeps its meaning (and its relative paths); anything with a
	 * Kubernetes object in it is manifests, every document of them. */
	is_native = c.cfg->n_sources == 1;
	for (i = 0; i < n_srcs && is_native; i++)
		is_native = !manifest_doc_is_object(&srcs[i].doc); /* also past empty documents */
	if (is_native) {
		if (n_srcs > 0) {
			c.doc = srcs[0].doc;
			memset(&srcs[0].doc, 0, sizeof(srcs[0].doc));
		}
		if (n_srcs > 1) {
			/* a second document would be silently ignored: refuse it (c.doc's nodes are not
			 * srcs[1]'s, so the position is printed here) */
			yaml_node_t *xr = yaml_document_get_root_node(&srcs[1].doc);

			fprintf(err,
			        "%s:%lu:%lu: only one YAML document is allowed in a native configuration\n",
			        c.path, (unsigned long)xr->start_mark.line + 1,
			        (unsigned long)xr->start_mark.column + 1);
			c.n_errors++;
		}
		root = yaml_document_get_root_node(&c.doc);
		if (c.n_errors == 0) {
			if (root == NULL || node_is_null(root))
				cfg_error(&c, NULL, "",
				          "empty configuration: at least one listener is needed");
			else
				parse_root(&c, root);
		}
	} else {
		c.cfg->is_from_manifests = true;
		rc = manifest_translate(srcs, n_srcs, c.files, err, &mf);
		if (rc != 0) {
			c.n_errors = rc;
		} else {
			/* the translated document is parsed as a native one, errors pointing at the
			 * manifests */
			c.doc = mf.doc;
			c.mf = &mf;
			root = yaml_document_get_root_node(&c.doc);
			parse_root(&c, root);
		}
	}
	rc = c.n_errors;
	if (rc == 0 && print != NULL && config_emit(&c.doc, c.cfg, print) != 0) {
		fprintf(err, "cannot write the configuration\n");
		rc = 1;
	}
	if (rc == 0) {
		*out = c.cfg;
		c.cfg = NULL;
	}
cleanup:
	if (c.mf == NULL)
		yaml_document_delete(&c.doc); /* the native document (or a zeroed, empty one) */
	else
		mf.doc = c.doc; /* the same document, possibly emptied by the emitter */
	manifest_result_free(&mf);
	for (i = 0; i < n_srcs; i++)
		yaml_document_delete(&srcs[i].doc);
	free(srcs);
	free(c.gateway_by_listener);
	free(c.client_by_listener);
	config_free(c.cfg);
	return rc;
}

/* Loads and validates path (see config.h). All errors go to err; *out is set only on success. */
int config_load(const char *path, FILE *err, struct config **out)
{
	return config_load_many(&path, 1, err, out);
}

int config_load_many(const char *const *paths, size_t n_paths, FILE *err, struct config **out)
{
	return config_load_impl(paths, n_paths, err, NULL, out);
}

int config_print(const char *const *paths, size_t n_paths, FILE *out, FILE *err)
{
	struct config *cfg = NULL;
	int rc = config_load_impl(paths, n_paths, err, out, &cfg);

	config_free(cfg);
	return rc;
}

/* ---------------------------------------------------------------- free ---- */

static void free_strv(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void free_string_match(struct config_string_match *m)
{
	free(m->name);
	free(m->value);
	if (m->has_re)
		regfree(&m->re);
}

static void free_match(struct config_match *m)
{
	size_t i;

	if (m->has_path)
		free_string_match(&m->path);
	free(m->method);
	for (i = 0; i < m->n_headers; i++)
		free_string_match(&m->headers[i]);
	free(m->headers);
	for (i = 0; i < m->n_query_params; i++)
		free_string_match(&m->query_params[i]);
	free(m->query_params);
	free(m->grpc_service);
	free(m->grpc_method);
	if (m->has_grpc_service_re)
		regfree(&m->grpc_service_re);
	if (m->has_grpc_method_re)
		regfree(&m->grpc_method_re);
}

static void free_provider(struct config_provider *p)
{
	size_t i;

	free(p->name);
	free(p->issuer);
	free_strv(p->audiences, p->n_audiences);
	free(p->local_jwks_json);
	free(p->local_jwks_origin);
	free(p->remote.uri);
	free(p->remote.backend_name);
	for (i = 0; i < p->n_claim_to_headers; i++) {
		free(p->claim_to_headers[i].header);
		free(p->claim_to_headers[i].claim);
	}
	free(p->claim_to_headers);
	for (i = 0; i < p->n_extract_headers; i++) {
		free(p->extract_headers[i].name);
		free(p->extract_headers[i].value_prefix);
	}
	free(p->extract_headers);
	free_strv(p->extract_cookies, p->n_extract_cookies);
	free_strv(p->extract_params, p->n_extract_params);
	free(p->forward_payload_header);
}

static void free_authz_rule(struct config_authz_rule *r)
{
	size_t i;

	free(r->name);
	free(r->cidrs);
	free(r->jwt_provider);
	for (i = 0; i < r->n_claims; i++) {
		free(r->claims[i].name);
		free_strv(r->claims[i].segments, r->claims[i].n_segments);
		free_strv(r->claims[i].values, r->claims[i].n_values);
	}
	free(r->claims);
	free_strv(r->scopes, r->n_scopes);
	for (i = 0; i < r->n_headers; i++) {
		free(r->headers[i].name);
		free_strv(r->headers[i].values, r->headers[i].n_values);
	}
	free(r->headers);
}

/* Frees cfg and everything it owns (compiled regexes included). NULL is a no-op. */
void config_free(struct config *cfg)
{
	size_t i, j, k;

	if (cfg == NULL)
		return;
	for (i = 0; i < cfg->n_listeners; i++) {
		free(cfg->listeners[i].name);
		free(cfg->listeners[i].address_text);
		free(cfg->listeners[i].tls_cert_file);
		free(cfg->listeners[i].tls_key_file);
		free(cfg->listeners[i].tls_cert_pem);
		free(cfg->listeners[i].tls_key_pem);
	}
	free(cfg->listeners);
	for (i = 0; i < cfg->n_backends; i++) {
		struct config_backend *b = &cfg->backends[i];

		free(b->name);
		for (j = 0; j < b->n_endpoints; j++)
			free(b->endpoints[j].host);
		free(b->endpoints);
		free_strv(b->tls.ca_files, b->tls.n_ca_files);
		free_strv(b->tls.ca_inline, b->tls.n_ca_inline);
		free(b->tls.hostname);
		free(b->active_hc.http_path);
		free(b->active_hc.http_method);
		free(b->active_hc.expected_statuses);
		free(b->active_hc.grpc_service);
	}
	free(cfg->backends);
	for (i = 0; i < cfg->n_routes; i++) {
		struct config_route *rt = &cfg->routes[i];

		free(rt->name);
		free_strv(rt->hostnames, rt->n_hostnames);
		for (j = 0; j < rt->n_rules; j++) {
			struct config_rule *r = &rt->rules[j];

			for (k = 0; k < r->n_matches; k++)
				free_match(&r->matches[k]);
			free(r->matches);
			for (k = 0; k < r->n_backend_refs; k++)
				free(r->backend_refs[k].name);
			free(r->backend_refs);
		}
		free(rt->rules);
		free(rt->gateway_policy_by_listener);
	}
	free(cfg->routes);
	for (i = 0; i < cfg->n_policies; i++) {
		struct config_policy *pol = &cfg->policies[i];

		for (j = 0; j < pol->n_targets; j++) {
			free(pol->targets[j].name);
			free(pol->targets[j].section_name);
		}
		free(pol->targets);
		for (j = 0; j < pol->n_providers; j++)
			free_provider(&pol->providers[j]);
		free(pol->providers);
		for (j = 0; j < pol->authz.n_rules; j++)
			free_authz_rule(&pol->authz.rules[j]);
		free(pol->authz.rules);
		free(pol->name);
	}
	free(cfg->policies);
	for (i = 0; i < cfg->n_client_policies; i++) {
		struct config_client_policy *cp = &cfg->client_policies[i];

		for (j = 0; j < cp->n_targets; j++) {
			free(cp->targets[j].name);
			free(cp->targets[j].section_name);
		}
		free(cp->targets);
		free(cp->name);
	}
	free(cfg->client_policies);
	free(cfg->access_log_path);
	free(cfg->path);
	free(cfg->dir);
	free_strv(cfg->sources, cfg->n_sources);
	free_strv(cfg->source_dirs, cfg->n_source_dirs);
	free(cfg);
}

/* The policy in force for route on listener listener_index: its own, else the Gateway's (or NULL). */
const struct config_policy *config_route_policy(const struct config_route *route, int listener_index)
{
	if (route == NULL)
		return NULL;
	if (route->route_policy != NULL)
		return route->route_policy;
	if (route->gateway_policy_by_listener == NULL || listener_index < 0)
		return NULL;
	/* gateway_policy_by_listener has n_listeners entries; callers pass a listener's own index */
	return route->gateway_policy_by_listener[listener_index];
}
