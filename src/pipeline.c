/* pipeline.c: router -> JWT stage -> backend choice, and forwarding headers (codec-neutral). */
#include "jwtgate/pipeline.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "jwtgate/common.h"
#include "jwtgate/router.h"
#include "jwtgate/worker.h"

static void pipeline_respond(struct pipeline_outcome *out, int status, const char *message)
{
	out->result = PIPELINE_RESPOND;
	out->status = status;
	out->grpc_status = pipeline_grpc_status(status);
	out->message = message;
}

/* The client traffic settings of listener index; Envoy Gateway's defaults (the strictest) for an index
 * that names no listener, which would be a bug in a codec. */
static const struct config_client_traffic *pipeline_client_settings(const struct config *cfg, int index)
{
	static const struct config_client_traffic defaults = {
	        .underscores = CONFIG_UNDERSCORES_REJECT,
	        .escaped_slashes = CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT,
	        .merge_slashes = true,
	};

	if (index < 0 || (size_t)index >= cfg->n_listeners)
		return &defaults;
	return &cfg->listeners[index].client;
}

/* The listener's clientTrafficPolicy (Envoy Gateway ClientTrafficPolicy headers and path), applied
 * before routing so that the route, the JWT policy and the upstream see the same request. Returns
 * true to go on, false when out holds the local answer. */
static bool pipeline_client_traffic(const struct config_client_traffic *ct, struct request *req,
                                    struct pipeline_outcome *out)
{
	enum request_escaped_slashes slashes;
	struct request_header *h;
	size_t pos = 0;
	int rc;

	/* Some upstreams (CGI, PHP, Django, nginx with underscores_in_headers) read X_Forwarded_For as
	 * X-Forwarded-For: a name with '_' can smuggle a header we control past us. */
	if (ct->underscores != CONFIG_UNDERSCORES_ALLOW) {
		while ((h = request_header_next_underscore(req, &pos)) != NULL) {
			if (ct->underscores == CONFIG_UNDERSCORES_REJECT) {
				pipeline_respond(out, 400, "header name with underscore");
				return false;
			}
			h->removed = true;
			pos++;
		}
	}
	switch (ct->escaped_slashes) {
	case CONFIG_ESCAPED_SLASHES_KEEP_UNCHANGED:
		slashes = REQUEST_SLASHES_KEEP;
		break;
	case CONFIG_ESCAPED_SLASHES_REJECT_REQUEST:
		slashes = REQUEST_SLASHES_REJECT;
		break;
	default:
		slashes = REQUEST_SLASHES_UNESCAPE;
		break;
	}
	rc = request_normalise_path(req, slashes, ct->merge_slashes);
	if (rc == JG_ERR_NOMEM) {
		pipeline_respond(out, 503, "out of memory");
		return false;
	}
	if (rc < 0) {
		pipeline_respond(out, 400, "invalid path");
		return false;
	}
	if ((rc & REQUEST_PATH_SLASH_UNESCAPED) &&
	    ct->escaped_slashes == CONFIG_ESCAPED_SLASHES_UNESCAPE_AND_REDIRECT) {
		/* Envoy: 307 with Location = the normalised path and query, so the client itself asks
		 * for what it will be served; a gRPC client cannot follow a redirect, so it gets 400
		 * (grpc-status INTERNAL), as from Envoy. */
		if (req->is_grpc) {
			pipeline_respond(out, 400, "path with escaped slash");
			return false;
		}
		/* With disableMergeSlashes, "/%2F/evil.example" unescapes to "//evil.example": as a
		 * Location that is a network-path reference (RFC 3986 section 4.2) to another host. */
		if (req->path_len > 1 && req->path[1] == '/') {
			pipeline_respond(out, 400, "path with escaped slash");
			return false;
		}
		pipeline_respond(out, 307, "redirect to the normalised path");
		out->location = req->target;
		out->location_len = req->target_len;
		return false;
	}
	return true;
}

void pipeline_run(struct worker *w, struct request *req, struct pipeline_outcome *out)
{
	const struct config_policy *policy;

	memset(out, 0, sizeof(*out));
	out->gen = worker_gen_acquire(w);
	if (!pipeline_client_traffic(pipeline_client_settings(out->gen->cfg, req->listener_index), req, out))
		return;
	out->rule = router_match(out->gen->router, req);
	if (out->rule == NULL) {
		pipeline_respond(out, 404, "route not found");
		return;
	}
	policy = config_route_policy(out->rule->route, req->listener_index);
	if (policy != NULL && policy->has_jwt) {
		struct auth_decision d;

		auth_check(out->gen->auth, policy, req, jg_wall_time(), &d);
		if (d.verdict == AUTH_DENY) {
			pipeline_respond(out, d.http_status, d.message);
			out->grpc_status = d.grpc_status;
			auth_www_authenticate(req, &d, out->www_authenticate, sizeof(out->www_authenticate));
			return;
		}
		if (d.recompute_route) {
			/* Claim headers may select another rule (recomputeRoute); the policy already ran. */
			out->rule = router_match(out->gen->router, req);
			if (out->rule == NULL) {
				pipeline_respond(out, 404, "route not found");
				return;
			}
		}
	}
	out->ref = router_pick_backend(out->rule, (uint32_t)worker_random(w));
	if (out->ref == NULL) {
		pipeline_respond(out, 500, "no backend with a weight");
		return;
	}
	out->result = PIPELINE_FORWARD;
}

int pipeline_grpc_status(int http_status)
{
	switch (http_status) {
	case 200:
		return 0;
	case 400:
		return 13; /* INTERNAL */
	case 401:
		return 16; /* UNAUTHENTICATED */
	case 403:
		return 7; /* PERMISSION_DENIED */
	case 404:
		return 12; /* UNIMPLEMENTED */
	case 429:
	case 502:
	case 503:
		return 14; /* UNAVAILABLE */
	case 504:
		return 4; /* DEADLINE_EXCEEDED */
	default:
		return 2; /* UNKNOWN */
	}
}

/* Appends n bytes at *len in buf (capacity cap); false when they do not fit. */
static bool pipeline_put(char *buf, size_t cap, size_t *len, const char *s, size_t n)
{
	if (n > cap - *len)
		return false;
	memcpy(buf + *len, s, n);
	*len += n;
	return true;
}

/* A random RFC 9562 version 4 UUID, as text (36 bytes and a NUL), without printf. */
static void pipeline_make_request_id(struct worker *w, char id[40])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t r[2] = {worker_random(w), worker_random(w)};
	unsigned char b[16];
	size_t i, o = 0;

	memcpy(b, r, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* variant 10 */
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			id[o++] = '-';
		id[o++] = hex[b[i] >> 4];
		id[o++] = hex[b[i] & 0xf];
	}
	id[o] = '\0';
}

int pipeline_forward_headers(struct worker *w, struct request *req, const char *client_ip, char *buf,
                             size_t cap, char request_id[40])
{
	struct request_header *h;
	size_t pos = 0, n = 0, len = 0;
	bool ok = true;

	/* Earlier proxies' X-Forwarded-For values, joined, then the client: one header line. */
	while ((h = request_header_next(req, "x-forwarded-for", 15, &pos)) != NULL) {
		ok = ok && (n++ ? pipeline_put(buf, cap, &len, ", ", 2)
		                : pipeline_put(buf, cap, &len, "x-forwarded-for: ", 17));
		ok = ok && pipeline_put(buf, cap, &len, h->value, h->value_len);
		h->removed = true;
		pos++;
	}
	ok = ok && (n ? pipeline_put(buf, cap, &len, ", ", 2)
	              : pipeline_put(buf, cap, &len, "x-forwarded-for: ", 17));
	ok = ok && pipeline_put(buf, cap, &len, client_ip, strlen(client_ip));
	ok = ok && pipeline_put(buf, cap, &len, "\r\n", 2);
	/* X-Forwarded-Proto is ours to say: a client's value is dropped. */
	request_header_remove(req, "x-forwarded-proto", 17);
	ok = ok && pipeline_put(buf, cap, &len, "x-forwarded-proto: ", 19);
	ok = ok && pipeline_put(buf, cap, &len, req->scheme, strlen(req->scheme));
	ok = ok && pipeline_put(buf, cap, &len, "\r\n", 2);
	h = request_header_get(req, "x-request-id", 12);
	if (h == NULL) {
		pipeline_make_request_id(w, request_id);
		ok = ok && pipeline_put(buf, cap, &len, "x-request-id: ", 14);
		ok = ok && pipeline_put(buf, cap, &len, request_id, 36);
		ok = ok && pipeline_put(buf, cap, &len, "\r\n", 2);
	} else {
		size_t l = h->value_len < 39 ? h->value_len : 39;

		memcpy(request_id, h->value, l);
		request_id[l] = '\0';
	}
	return ok ? (int)len : JG_ERR_LIMIT;
}
