/* pipeline.h: the protocol-neutral middle of the request path, shared by every codec:
 * router -> JWT stage -> backend choice, and the forwarding headers a proxy adds. A codec decodes a
 * request, calls pipeline_run(), then either renders the local answer (HTTP text, or gRPC
 * trailers-only) or starts the upstream exchange with the chosen backend. */
#ifndef JWTGATE_PIPELINE_H
#define JWTGATE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "jwtgate/auth.h"
#include "jwtgate/config.h"
#include "jwtgate/request.h"

struct worker;

enum pipeline_result {
	PIPELINE_FORWARD = 0, /* rule and ref are set */
	PIPELINE_RESPOND,     /* answer locally with status/message (and www_authenticate when set) */
};

struct pipeline_outcome {
	enum pipeline_result result;
	/* The worker generation the decision was made with, referenced for the request's lifetime:
	 * start the exchange with gen->upstream and call worker_gen_release(w, gen) when the request
	 * is over (rule and ref point into its configuration). */
	struct worker_gen *gen;
	const struct config_rule *rule; /* NULL when no route matched */
	const struct config_backend_ref *ref;
	int status;                 /* local answer: 401, 403, 404, 500 */
	int grpc_status;            /* the same answer for a gRPC client (16, 7, 12, 13) */
	const char *message;        /* static text without newline */
	char www_authenticate[512]; /* empty unless a JWT denial */
	/* A 307 to the normalised path (escapedSlashesAction UnescapeAndRedirect): the new target,
	 * path plus "?query", in the request's arena; NULL otherwise. */
	const char *location;
	size_t location_len;
};

/* Applies the listener's client traffic settings, then routes and authenticates req (whose head is
 * complete: request_finish_head done, is_grpc and listener_index set). Always sets out->gen, which
 * the caller must release. The client traffic step is the one place, for every codec, where header
 * names with '_' are refused or dropped (headers.withUnderscoresAction) and the path is normalised
 * (request_normalise_path(): req->path and req->target change), before anything looks at either.
 * May add or remove request headers (claim headers). */
void pipeline_run(struct worker *w, struct request *req, struct pipeline_outcome *out);

/* Writes the header lines a proxy adds upstream into buf ("name: value\r\n" each):
 * X-Forwarded-For (client appended to what earlier proxies sent, as one line), X-Forwarded-Proto,
 * and X-Request-Id when the client sent none. The request's own copies of the first two are
 * marked removed. request_id receives the id in force (40 bytes). Returns the length, or a negative
 * JG_ERR_LIMIT when buf is too small. */
int pipeline_forward_headers(struct worker *w, struct request *req, const char *client_ip, char *buf,
                             size_t cap, char request_id[40]);

/* gRPC status for an HTTP status of a local answer or upstream failure (gRPC's HTTP mapping). */
int pipeline_grpc_status(int http_status);

#endif
