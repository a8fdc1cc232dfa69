/* router.h: choose the route rule for a protocol-neutral request (Gateway API semantics). */
#ifndef JWTGATE_ROUTER_H
#define JWTGATE_ROUTER_H

#include "config/config.h"
#include "core/request.h"

struct router;

/* Builds the lookup structure for a config (start-up tier: aborts on allocation failure). */
struct router *router_new(const struct config *cfg);
void router_free(struct router *r);

/* Returns the matching rule, or NULL (404). gRPC requests (req->is_grpc) are matched against
 * grpcRoutes first, then httpRoutes; other requests against httpRoutes only.
 * Host: exact hostnames beat wildcard ones (longest suffix first), which beat routes without
 * hostnames. Within the chosen host, Envoy Gateway's precedence: Exact path > RegularExpression
 * > longest PathPrefix (whole segments), then method, then most headers, then most query params,
 * then the order of appearance. */
const struct config_rule *router_match(const struct router *r, const struct request *req);

/* Picks a backendRef of the rule by weight; `rnd` is a caller-provided random number. */
const struct config_backend_ref *router_pick_backend(const struct config_rule *rule, uint32_t rnd);

#endif
