/* auth.c: placeholder until the JWT stage lands: every protected request is denied (fail closed). */
#include "jwtgate/auth.h"

#include <stdio.h>
#include <stdlib.h>

struct auth_shared {
	int unused;
};

struct auth_worker {
	int unused;
};

struct auth_shared *auth_shared_new(const struct config *cfg, FILE *err)
{
	return calloc(1, sizeof(struct auth_shared));
}

void auth_shared_free(struct auth_shared *s)
{
	free(s);
}

struct auth_worker *auth_worker_new(const struct auth_shared *s, uint32_t cache_size)
{
	return calloc(1, sizeof(struct auth_worker));
}

void auth_worker_free(struct auth_worker *w)
{
	free(w);
}

void auth_check(struct auth_worker *w, const struct config_policy *policy, struct request *req, int64_t now,
		struct auth_decision *out)
{
	out->verdict = AUTH_DENY;
	out->http_status = 401;
	out->grpc_status = 16;
	out->jwt_status = 26;
	out->message = "Jwt verification fails";
	out->invalid_token = true;
	out->recompute_route = false;
}

size_t auth_www_authenticate(const struct request *req, const struct auth_decision *d, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "Bearer realm=\"%s://%.*s%.*s\"%s", req->scheme, (int)req->authority_len,
			 req->authority ? req->authority : "", (int)req->target_len, req->target ? req->target : "",
			 d->invalid_token ? ", error=\"invalid_token\"" : "");

	return n < 0 ? 0 : (size_t)n;
}
