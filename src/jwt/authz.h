/* authz.h: Envoy Gateway SecurityPolicy `authorization` (its RBAC filter), decided after the JWT stage.
 *
 * Two steps, so that a cached token costs a walk over small arrays and no allocation:
 *   1. once per verified token (cache miss), authz_match_claims() evaluates every rule's jwt principal
 *      (provider, claims, scopes) against the token's claims and keeps one bit per rule; the token
 *      cache stores the bits with the entry (token_cache.h);
 *   2. per request, authz_decide() walks the rules in order: a rule matches when its jwt bit is set (or
 *      it has no jwt principal), the client address is in one of its clientCIDRs, every header
 *      principal matches and the method is one of its operation methods. The first matching rule's
 *      action decides; none matching: defaultAction (Deny unless set).
 *
 * Matching follows what Envoy Gateway configures in Envoy (internal/xds/translator/authorization.go):
 * - claim valueType String: the claim is a JSON string equal to one of the values; StringArray: the
 *   claim is a JSON array with a string element equal to one of the values. A number, boolean, object
 *   or null claim never matches (Envoy's metadata StringMatcher only sees strings): `admin: true` does
 *   not match the value "true".
 * - scopes: every listed scope must be among the token's scopes, read from `scope` (a space-separated
 *   string, as Envoy Gateway's normalisation splits it, or an array of strings) and also, where
 *   jwtgate goes further, from `scp` (string or array: Azure AD, Okta).
 * - headers: the values of every field with that name joined with "," (Envoy's header input) equal one
 *   of the values exactly; an absent header does not match.
 * - clientCIDRs: the TCP peer address (an IPv4-mapped IPv6 peer is compared as IPv4). */
#ifndef JWTGATE_AUTHZ_H
#define JWTGATE_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config/config.h"
#include "core/request.h"

#define AUTHZ_WORDS ((CONFIG_AUTHZ_MAX_RULES + 63) / 64)

/* Words of bits a policy's rules need (0 when no rule has a jwt principal). */
static inline size_t authz_words(const struct config_authz *a)
{
	return a->needs_claims ? (a->n_rules + 63) / 64 : 0;
}

/* Sets bits[i / 64] bit i % 64 for every rule i whose jwt principal matches the claims `payload` of a
 * token that provider index `provider` verified; clears the others. bits holds authz_words(a) words. */
void authz_match_claims(const struct config_authz *a, int provider, const json_t *payload, uint64_t *bits);

/* The answer for one request: `jwt_bits` NULL when no token was verified (then no jwt principal
 * matches). Returns the index of the deciding rule, or -1 for defaultAction; *allow is the action.
 * Allocates nothing. */
int authz_decide(const struct config_authz *a, const uint64_t *jwt_bits, const struct request *req,
                 bool *allow);

/* Whether a peer address lies in a CIDR range (exposed for the unit tests). */
bool authz_cidr_contains(const struct config_cidr *c, const struct sockaddr *sa);

#define AUTHZ_DENIED_MESSAGE "RBAC: access denied" /* Envoy's RBAC filter body */

#endif
