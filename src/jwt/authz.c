/* authz.c: SecurityPolicy authorization rules (authz.h). */
#include "jwt/authz.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

/* ---- claims (once per verified token) ---- */

/* The value at a claim's path (segments of "user.roles"), or NULL. */
static const json_t *authz_claim_find(const json_t *payload, const struct config_authz_claim *cl)
{
	const json_t *cur = payload;
	size_t i;

	for (i = 0; i < cl->n_segments && cur != NULL; i++) {
		if (!json_is_object(cur) || cl->segments[i] == NULL)
			return NULL;
		cur = json_object_get(cur, cl->segments[i]);
	}
	return cur;
}

static bool authz_str_in(const char *s, size_t len, char *const *values, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strlen(values[i]) == len && memcmp(values[i], s, len) == 0)
			return true;
	return false;
}

static bool authz_claim_matches(const json_t *payload, const struct config_authz_claim *cl)
{
	const json_t *v = authz_claim_find(payload, cl);
	size_t i;

	if (v == NULL)
		return false;
	if (!cl->string_array)
		return json_is_string(v) &&
		       authz_str_in(json_string_value(v), json_string_length(v), cl->values, cl->n_values);
	if (!json_is_array(v))
		return false;
	for (i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);

		if (json_is_string(e) &&
		    authz_str_in(json_string_value(e), json_string_length(e), cl->values, cl->n_values))
			return true;
	}
	return false;
}

/* Whether `scope` is one of the space-separated words of s. */
static bool authz_word_in(const char *s, size_t len, const char *scope, size_t slen)
{
	size_t i = 0;

	while (i < len) {
		size_t j = i;

		while (j < len && s[j] != ' ')
			j++;
		if (j - i == slen && memcmp(s + i, scope, slen) == 0)
			return true;
		i = j + 1;
	}
	return false;
}

/* Whether the token grants `scope` through claim `name`: a space-separated string, or an array whose
 * string elements are each one whole scope (an element is compared as it is, not split). */
static bool authz_scope_in(const json_t *payload, const char *name, const char *scope)
{
	const json_t *v = json_object_get(payload, name);
	size_t slen = strlen(scope), i;

	if (json_is_string(v))
		return authz_word_in(json_string_value(v), json_string_length(v), scope, slen);
	if (!json_is_array(v))
		return false;
	for (i = 0; i < json_array_size(v); i++) {
		const json_t *e = json_array_get(v, i);

		if (json_is_string(e) && json_string_length(e) == slen &&
		    memcmp(json_string_value(e), scope, slen) == 0)
			return true;
	}
	return false;
}

static bool authz_jwt_matches(const struct config_authz_rule *r, int provider, const json_t *payload)
{
	size_t i;

	/* Envoy Gateway reads claims under the provider's name in the jwt_authn metadata: only a token
	 * that provider verified has them. */
	if (r->jwt_provider_index < 0 || r->jwt_provider_index != provider || !json_is_object(payload))
		return false;
	for (i = 0; i < r->n_claims; i++)
		if (!authz_claim_matches(payload, &r->claims[i]))
			return false;
	for (i = 0; i < r->n_scopes; i++)
		if (!authz_scope_in(payload, "scope", r->scopes[i]) &&
		    !authz_scope_in(payload, "scp", r->scopes[i]))
			return false;
	return true;
}

void authz_match_claims(const struct config_authz *a, int provider, const json_t *payload, uint64_t *bits)
{
	size_t i, words = authz_words(a);

	memset(bits, 0, words * sizeof(*bits));
	for (i = 0; i < a->n_rules && words > 0; i++)
		if (a->rules[i].has_jwt && authz_jwt_matches(&a->rules[i], provider, payload))
			bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* ---- per request ---- */

bool authz_cidr_contains(const struct config_cidr *c, const struct sockaddr *sa)
{
	static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	const uint8_t *addr;
	unsigned full, rest;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		if (c->family != AF_INET)
			return false;
		addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		addr = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (c->family == AF_INET) {
			/* a dual-stack listener shows IPv4 clients as ::ffff:a.b.c.d */
			if (memcmp(addr, v4mapped, sizeof(v4mapped)) != 0)
				return false;
			addr += 12;
		}
	} else {
		return false;
	}
	full = c->prefix / 8;
	rest = c->prefix % 8;
	if (memcmp(addr, c->net, full) != 0)
		return false;
	return rest == 0 || ((addr[full] ^ c->net[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

/* Envoy's header input: all values of the field joined with ","; equal to `want` exactly. */
static bool authz_header_value_is(const struct request *req, const struct config_authz_header *h,
                                  const char *want, size_t wlen)
{
	size_t pos = 0, off = 0, nlen = strlen(h->name);
	const struct request_header *f;
	bool any = false;

	while ((f = request_header_next(req, h->name, nlen, &pos)) != NULL) {
		if (any) {
			if (off >= wlen || want[off] != ',')
				return false;
			off++;
		}
		if (f->value_len > wlen - off || memcmp(want + off, f->value, f->value_len) != 0)
			return false;
		off += f->value_len;
		any = true;
		pos++;
	}
	return any && off == wlen;
}

static bool authz_headers_match(const struct config_authz_rule *r, const struct request *req)
{
	size_t i, j;

	for (i = 0; i < r->n_headers; i++) {
		const struct config_authz_header *h = &r->headers[i];
		bool one = false;

		for (j = 0; j < h->n_values && !one; j++)
			one = authz_header_value_is(req, h, h->values[j], strlen(h->values[j]));
		if (!one)
			return false;
	}
	return true;
}

int authz_decide(const struct config_authz *a, const uint64_t *jwt_bits, const struct request *req,
                 bool *allow)
{
	unsigned method = 0;
	bool method_known = false;
	size_t i, j;

	for (i = 0; i < a->n_rules; i++) {
		const struct config_authz_rule *r = &a->rules[i];

		if (r->has_jwt && (jwt_bits == NULL || !(jwt_bits[i / 64] >> (i % 64) & 1)))
			continue;
		if (r->methods != 0) {
			if (!method_known) {
				method = config_method_bit(req->method, req->method_len);
				method_known = true;
			}
			if (!(r->methods & method))
				continue;
		}
		if (r->n_cidrs > 0) {
			bool in = false;

			for (j = 0; j < r->n_cidrs && !in; j++)
				in = authz_cidr_contains(&r->cidrs[j], req->peer);
			if (!in)
				continue;
		}
		if (!authz_headers_match(r, req))
			continue;
		*allow = r->allow;
		return (int)i;
	}
	*allow = a->default_allow;
	return -1;
}
