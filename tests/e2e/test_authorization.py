"""SecurityPolicy `authorization` end to end (issue 12 section 1): Envoy Gateway's "JWT Claim-Based
Authorization" answers over HTTP/1.1, h2c and gRPC, on HTTPRoute, GRPCRoute and Gateway targets.

Tokens: the seed's test.jwt (name "John Doe", admin true) and with-different-claim.jwt (name "Tom")
with the task's jwks.json, and tokens minted here (python3-cryptography, RS256) with nested objects,
arrays, scopes in both claims, numbers and booleans. A denial is 403 `RBAC: access denied`
(text/plain, no WWW-Authenticate), gRPC status 7 with that message; a denied request never reaches the
backend. Failed authentication still answers 401 first.
"""

import base64
import json
import os
import subprocess
import time
import urllib.parse

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import jgtest
from jgtest import get
from test_grpc_jwt import RecordingEchoServer, calls_with, md, ping, raw_call
from test_jwt import int_b64u

SEED_DIR = jgtest.SEED_DIR
HOST = "www.example.com"
AUTHORITY = "grpc-example.com"
DENIED = "RBAC: access denied"
SETTLE = 0.3


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def read_seed(name):
    with open(os.path.join(SEED_DIR, name)) as f:
        return f.read().strip()


class Minter:
    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pn = self.key.public_key().public_numbers()
        self.jwk = {"kty": "RSA", "kid": "authz", "alg": "RS256", "n": int_b64u(pn.n), "e": int_b64u(pn.e)}

    def __call__(self, claims):
        head = b64u(json.dumps({"alg": "RS256", "kid": "authz"}).encode())
        body = b64u(json.dumps(claims).encode())
        sig = self.key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{head}.{body}.{b64u(sig)}"


def route(name, prefix):
    return {"name": name, "hostnames": [HOST],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                       "backendRefs": [{"name": "backend"}]}]}


def claim(name, values, array=False):
    c = {"name": name, "values": values}
    if array:
        c["valueType"] = "StringArray"
    return c


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    up = make_upstream_module("backend")
    srv = RecordingEchoServer().start()
    mint = Minter()
    seed_jwks = os.path.join(SEED_DIR, "jwks.json")
    providers = [{"name": "example", "localJWKS": {"type": "File", "file": seed_jwks}},
                 {"name": "minted", "localJWKS": {"type": "Inline", "inline": json.dumps({"keys": [mint.jwk]})}}]
    rules = [
        {"name": "deny-tom", "action": "Deny",
         "principal": {"jwt": {"provider": "example", "claims": [claim("name", ["Tom"])]}}},
        {"name": "admins", "action": "Allow",
         "principal": {"jwt": {"provider": "minted", "claims": [claim("user.roles", ["admin"], True)]}}},
        {"name": "readers", "action": "Allow", "operation": {"methods": ["GET"]},
         "principal": {"jwt": {"provider": "minted", "scopes": ["read"]}}},
        {"name": "john", "action": "Allow",
         "principal": {"jwt": {"provider": "example", "claims": [claim("name", ["John Doe"])]}}},
        {"name": "flag-as-string", "action": "Allow",
         "principal": {"jwt": {"provider": "minted", "claims": [claim("level", ["5"]), claim("ok", ["true"])]}}},
    ]

    def config(port):
        backends = {"backend": [up.port],
                    "yages": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": srv.port}}]}}
        cfg = jgtest.base_config(port, backends, [route("authz", "/authz"), route("lan", "/lan"),
                                                  route("office", "/office"), route("open", "/open")],
                                 workers=1)
        cfg["grpcRoutes"] = [{"name": "yages", "hostnames": [AUTHORITY], "rules": [{"backendRefs": [{"name": "yages"}]}]}]
        cfg["securityPolicies"] = [
            {"name": "authz", "targetRefs": [{"kind": "HTTPRoute", "name": "authz"}],
             "jwt": {"providers": providers}, "authorization": {"rules": rules}},
            # authorization alone: the client address decides
            {"name": "lan", "targetRefs": [{"kind": "HTTPRoute", "name": "lan"}],
             "authorization": {"rules": [{"action": "Allow", "principal": {"clientCIDRs": ["127.0.0.1/32"]}}]}},
            {"name": "office", "targetRefs": [{"kind": "HTTPRoute", "name": "office"}],
             "authorization": {"defaultAction": "Allow", "rules": [
                 {"name": "outside", "action": "Deny", "principal": {"clientCIDRs": ["10.0.0.0/8", "::/0"]}},
                 {"name": "team", "action": "Deny", "principal": {"headers": [{"name": "x-team", "values": ["red"]}]}}]}},
            {"name": "grpc", "targetRefs": [{"kind": "GRPCRoute", "name": "yages"}],
             "jwt": {"providers": providers[:1]},
             "authorization": {"rules": [{"name": "john", "action": "Allow",
                                          "principal": {"jwt": {"provider": "example",
                                                                "claims": [claim("name", ["John Doe"])]}}}]}},
        ]
        return cfg

    px = start_proxy_module(config, "authz")
    yield {"port": px.port, "up": up, "srv": srv, "mint": mint, "proxy": px}
    srv.stop()


def request(env, path, token=None, method="GET", headers=()):
    m = jgtest.marker()
    hs = list(headers)
    if token is not None:
        hs.append(("Authorization", "Bearer " + token))
    r = get(env["port"], f"{path}?m={m}", host=HOST, headers=hs, method=method)
    recs = jgtest.wait_for(lambda: env["up"].matching(m), timeout=2.0) if r.status == 200 else None
    if r.status != 200:
        time.sleep(0.05)
        recs = env["up"].matching(m)
    return r, recs


def assert_denied(env, path, token=None, **kw):
    r, recs = request(env, path, token, **kw)
    assert r.status == 403, r
    assert r.body == DENIED.encode(), r
    assert r.header("content-type") == "text/plain"
    assert r.header("www-authenticate") is None, r
    assert recs == [], "a denied request reached the upstream"


def assert_allowed(env, path, token=None, **kw):
    r, recs = request(env, path, token, **kw)
    assert r.status == 200, r
    assert len(recs) == 1


# ---- HTTP/1.1 ----

def test_seed_token_allowed_by_name_claim(env):
    assert_allowed(env, "/authz", read_seed("test.jwt"))


def test_seed_different_claim_denied_by_the_first_rule(env):
    assert_denied(env, "/authz", read_seed("with-different-claim.jwt"))


def test_missing_and_invalid_tokens_are_401_before_authorization(env):
    r, recs = request(env, "/authz")
    assert r.status == 401 and r.body == b"Jwt is missing" and recs == []
    r, recs = request(env, "/authz", env["mint"]({"sub": "x", "exp": 1}))
    assert r.status == 401 and r.body == b"Jwt is expired" and recs == []


def test_nested_array_claim(env):
    mint = env["mint"]
    assert_allowed(env, "/authz", mint({"user": {"roles": ["dev", "admin"]}}))
    assert_denied(env, "/authz", mint({"user": {"roles": "admin"}}))      # a string is not a StringArray
    assert_denied(env, "/authz", mint({"user": {"roles": ["Admin"]}}))    # exact
    assert_denied(env, "/authz", mint({"user.roles": ["admin"]}))         # a path, not a name with dots


def test_scopes_both_claims_and_methods(env):
    mint = env["mint"]
    assert_allowed(env, "/authz", mint({"scope": "openid read"}))
    assert_allowed(env, "/authz", mint({"scp": ["read"]}))
    assert_allowed(env, "/authz", mint({"scp": "email read"}))
    assert_denied(env, "/authz", mint({"scope": "readonly"}))
    assert_denied(env, "/authz", mint({"scope": "read"}), method="DELETE")  # readers: GET only


def test_numbers_and_booleans_never_match_strings(env):
    mint = env["mint"]
    assert_denied(env, "/authz", mint({"level": 5, "ok": True}))
    assert_allowed(env, "/authz", mint({"level": "5", "ok": "true"}))


def test_cached_token_keeps_its_answer(env):
    tok = env["mint"]({"scope": "read", "n": 1})
    for _ in range(3):
        assert_allowed(env, "/authz", tok)
    tok = env["mint"]({"scope": "write", "n": 2})
    for _ in range(3):
        assert_denied(env, "/authz", tok)


def test_client_cidrs_without_jwt(env):
    assert_allowed(env, "/lan")
    assert_allowed(env, "/office")                       # 127.0.0.1 is outside 10/8 and not IPv6
    assert_denied(env, "/office", headers=[("X-Team", "red")])
    assert_allowed(env, "/open")                         # no policy


# ---- h2c (curl --http2-prior-knowledge) ----

def curl_h2(env, path, token):
    proc = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_code}",
                           "-H", f"Host: {HOST}", "-H", f"Authorization: Bearer {token}", "--max-time", "10",
                           f"http://127.0.0.1:{env['port']}{path}"], capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    body, _, code = proc.stdout.rpartition(b"\n")
    return int(code), body


def test_h2c_denial_and_allow(env):
    code, body = curl_h2(env, "/authz", read_seed("with-different-claim.jwt"))
    assert (code, body) == (403, DENIED.encode())
    code, _ = curl_h2(env, "/authz", read_seed("test.jwt"))
    assert code == 200


# ---- gRPC (GRPCRoute) ----

@pytest.fixture
def ch(env):
    c = grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", AUTHORITY)])
    yield c
    c.close()


def test_grpc_allowed_by_claim(env, ch):
    assert ping(ch)(None, timeout=5, metadata=md(jgtest.marker(), read_seed("test.jwt"))) == "pong"


def test_grpc_denied_is_permission_denied(env, ch):
    m = jgtest.marker()
    with pytest.raises(grpc.RpcError) as ei:
        ping(ch)(None, timeout=5, metadata=md(m, read_seed("with-different-claim.jwt")))
    assert ei.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert ei.value.details() == DENIED
    time.sleep(SETTLE)
    assert calls_with(env["srv"], m) == []


def test_grpc_denial_on_the_wire(env):
    frames, data, ended, rst = raw_call(env, extra=[("authorization", "Bearer " + read_seed("with-different-claim.jwt"))])
    assert ended and rst in (None, 0) and data == b"" and len(frames) == 1, (frames, data, ended, rst)
    h = frames[0]
    assert (h[":status"], h["content-type"], h["grpc-status"]) == ("200", "application/grpc", "7"), h
    # percent-encoded as the codec encodes every grpc-message (space as %20, as jwt-behaviour.md shows)
    assert "%20" in h["grpc-message"] and urllib.parse.unquote(h["grpc-message"]) == DENIED, h
    assert "www-authenticate" not in h


# ---- Gateway target ----

def test_gateway_policy_applies_to_every_route(make_upstream, start_proxy):
    up = make_upstream("backend")
    admin = jgtest.free_port()

    def config(port):
        cfg = jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
                                 admin={"address": f"127.0.0.1:{admin}"})
        cfg["securityPolicies"] = [{"name": "gw", "targetRefs": [{"kind": "Gateway", "name": "eg"}],
                                    "authorization": {"rules": [
                                        {"action": "Allow", "principal": {"headers": [{"name": "x-k", "values": ["1"]}]}}]}}]
        return cfg

    px = start_proxy(config, "authz-gw")
    r = get(px.port, "/any", host=HOST)
    assert r.status == 403 and r.body == DENIED.encode()
    r = get(px.port, "/any", host=HOST, headers=[("x-k", "1")])
    assert r.status == 200
    # /metrics: one series per rule and one for defaultAction (rule=""), bounded by the config
    m = get(admin, "/metrics", host="127.0.0.1").body.decode()
    assert 'jwtgate_authz_decisions_total{policy="gw",rule="rule-0",action="allow"} 1' in m, m
    assert 'jwtgate_authz_decisions_total{policy="gw",rule="",action="deny"} 1' in m, m
