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

void pipeline_run(struct worker *w, struct request *req, struct pipeline_outcome *out)
{
	const struct config_policy *policy;

	memset(out, 0, sizeof(*out));
	out->gen = worker_gen_acquire(w);
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

static void pipeline_make_request_id(struct worker *w, char id[40])
{
	uint64_t a = worker_random(w), b = worker_random(w);

	/* RFC 9562 version 4 layout. */
	snprintf(id, 40, "%08x-%04x-4%03x-%04x-%012" PRIx64, (unsigned)(a >> 32),
	         (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff, (unsigned)((b >> 48) & 0x3fff) | 0x8000,
	         (uint64_t)(b & 0xffffffffffffull));
}

int pipeline_forward_headers(struct worker *w, struct request *req, const char *client_ip, char *buf,
                             size_t cap, char request_id[40])
{
	struct request_header *h;
	size_t pos = 0, n = 0, len = 0;
	int k;

	/* Earlier proxies' X-Forwarded-For values, joined, then the client: one header line. */
	while ((h = request_header_next(req, "x-forwarded-for", 15, &pos)) != NULL) {
		k = snprintf(buf + len, cap - len, "%s%.*s",
		             n++ ? ", " : "x-forwarded-for: ", (int)h->value_len, h->value);
		if (k < 0 || (size_t)k >= cap - len)
			return JG_ERR_LIMIT;
		len += (size_t)k;
		h->removed = true;
		pos++;
	}
	k = snprintf(buf + len, cap - len, "%s%s\r\n", n ? ", " : "x-forwarded-for: ", client_ip);
	if (k < 0 || (size_t)k >= cap - len)
		return JG_ERR_LIMIT;
	len += (size_t)k;
	/* X-Forwarded-Proto is ours to say: a client's value is dropped. */
	request_header_remove(req, "x-forwarded-proto", 17);
	k = snprintf(buf + len, cap - len, "x-forwarded-proto: %s\r\n", req->scheme);
	if (k < 0 || (size_t)k >= cap - len)
		return JG_ERR_LIMIT;
	len += (size_t)k;
	h = request_header_get(req, "x-request-id", 12);
	if (h == NULL) {
		pipeline_make_request_id(w, request_id);
		k = snprintf(buf + len, cap - len, "x-request-id: %s\r\n", request_id);
		if (k < 0 || (size_t)k >= cap - len)
			return JG_ERR_LIMIT;
		len += (size_t)k;
	} else {
		snprintf(request_id, 40, "%.*s", (int)(h->value_len < 39 ? h->value_len : 39), h->value);
	}
	return (int)len;
}
