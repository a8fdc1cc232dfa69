"""JWT authentication end to end: Envoy Gateway's "JWT Authentication" task (seed/jwt-authentication.md)
with the task's own files, then every policy feature over the wire against a recording upstream.

The seed routes (/foo protected by provider `example` with the task's jwks.json, /bar open) are as in
conf/jwtgate.yaml, on ephemeral ports with this test's upstream. The other routes use keys generated
here (python3-cryptography) and tokens minted with jwtgate-token (JWTGATE_TOKEN_BIN).
Answers are those of reference/jwt-behaviour.md; a rejected request must never reach the upstream
(reference/security.md section 2).
"""

import base64
import json
import os
import subprocess

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import jgtest
from jgtest import RawConn, get, header

TOKEN_BIN = jgtest.TOKEN_BIN
SEED_DIR = jgtest.SEED_DIR
HOST = "www.example.com"

MSG_MISSING = "Jwt is missing"
MSG_BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
MSG_EXPIRED = "Jwt is expired"
MSG_AUDIENCE = "Audiences in Jwt are not allowed"
MSG_VERIFY = "Jwt verification fails"
MSG_KID = "Jwks doesn't have key to match kid or alg from Jwt"


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def int_b64u(n, length=None):
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


def rsa_jwk(kid):
    """(private JWK, public JWK) of a new RSA-2048 key."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pn, pv = k.public_key().public_numbers(), k.private_numbers()
    pub = {"kty": "RSA", "kid": kid, "alg": "RS256", "n": int_b64u(pn.n), "e": int_b64u(pn.e)}
    priv = dict(pub, d=int_b64u(pv.d), p=int_b64u(pv.p), q=int_b64u(pv.q), dp=int_b64u(pv.dmp1),
                dq=int_b64u(pv.dmq1), qi=int_b64u(pv.iqmp))
    return priv, pub


def ec_jwk(kid):
    k = ec.generate_private_key(ec.SECP256R1())
    pn = k.public_key().public_numbers()
    pub = {"kty": "EC", "kid": kid, "alg": "ES256", "crv": "P-256", "x": int_b64u(pn.x, 32),
           "y": int_b64u(pn.y, 32)}
    priv = dict(pub, d=int_b64u(k.private_numbers().private_value, 32))
    return priv, pub


def read_seed(name):
    with open(os.path.join(SEED_DIR, name)) as f:
        return f.read().strip()


def payload_of(token):
    return json.loads(unb64u(token.split(".")[1]))


class Env:
    """The running proxy, its upstream, and the key files."""

    def __init__(self, proxy, upstream, keydir):
        self.proxy = proxy
        self.port = proxy.port
        self.up = upstream
        self.keydir = keydir

    def mint(self, key="rsa", *args):
        """A token from jwtgate-token signed with one of the generated keys (rsa, ec, stranger)."""
        proc = subprocess.run([TOKEN_BIN, "--key", os.path.join(self.keydir, key + ".private.json"), *args],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def req(self, path, headers=(), host=HOST):
        """GET path with a fresh marker in the query; returns (response, upstream records)."""
        m = jgtest.marker()
        sep = "&" if "?" in path else "?"
        r = get(self.port, f"{path}{sep}m={m}", host=host, headers=headers)
        recs = jgtest.wait_for(lambda: self.up.matching(m), timeout=2.0) if r.status == 200 else self.up.matching(m)
        return r, recs

    def denied(self, path, headers, status, message, invalid_token=True):
        """Asserts a denial with body and WWW-Authenticate, and that nothing reached the upstream."""
        r, recs = self.req(path, headers)
        assert r.status == status, r
        assert r.body == message.encode(), r
        assert r.header("content-type") == "text/plain"
        www = r.header("www-authenticate")
        assert www is not None and www.startswith(f'Bearer realm="http://{HOST}{path.split("?")[0]}')
        assert ('error="invalid_token"' in www) == invalid_token, www
        assert recs == [], "a rejected request reached the upstream"
        # a late record would show up here too
        return r

    def passed(self, path, headers=()):
        r, recs = self.req(path, headers)
        assert r.status == 200, r
        assert len(recs) == 1, recs
        return recs[0]


def bearer(tok):
    return ("Authorization", f"Bearer {tok}")


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    keydir = str(tmp_path_factory.mktemp("keys"))
    pubs = {}
    for name, gen in (("rsa", lambda: rsa_jwk("e2e-rsa")), ("ec", lambda: ec_jwk("e2e-ec")),
                      ("stranger", lambda: rsa_jwk("e2e-rsa"))):
        priv, pub = gen()
        pubs[name] = pub
        with open(os.path.join(keydir, name + ".private.json"), "w") as f:
            json.dump(priv, f)
    rsa_jwks = os.path.join(keydir, "rsa.jwks.json")
    ec_jwks = os.path.join(keydir, "ec.jwks.json")
    with open(rsa_jwks, "w") as f:
        json.dump({"keys": [pubs["rsa"]]}, f)
    with open(ec_jwks, "w") as f:
        json.dump({"keys": [pubs["ec"]]}, f)

    def route(name, prefix):
        return {"name": name, "hostnames": [HOST],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                           "backendRefs": [{"name": "backend"}]}]}

    def provider(name, jwks_file, **extra):
        p = {"name": name, "localJWKS": {"type": "File", "file": jwks_file}}
        p.update(extra)
        return p

    def policy(name, route_name, providers, **jwt):
        j = {"providers": providers}
        j.update(jwt)
        return {"name": name, "targetRefs": [{"kind": "HTTPRoute", "name": route_name}], "jwt": j}

    claims = [{"header": "x-sub", "claim": "sub"}, {"header": "x-org", "claim": "org.name"},
              {"header": "x-admin", "claim": "admin"}, {"header": "x-level", "claim": "level"},
              {"header": "x-roles", "claim": "roles"}]

    def config(port):
        routes = [route(n, "/" + n) for n in ("foo", "bar", "aud", "claims", "optional", "failopen",
                                              "cookie", "multi", "noforward")]
        policies = [
            # the seed's SecurityPolicy, exactly: one provider `example` with the task's jwks.json
            policy("jwt-example", "foo", [provider("example", os.path.join(SEED_DIR, "jwks.json"))]),
            policy("aud", "aud", [provider("aud", rsa_jwks, audiences=["api.example.com"])]),
            policy("claims", "claims", [provider("claims", rsa_jwks, claimToHeaders=claims,
                                                 forwardPayloadHeader="x-jwt-payload")]),
            policy("optional", "optional", [provider("optional", rsa_jwks, claimToHeaders=claims[:1])],
                   optional=True),
            policy("failopen", "failopen", [provider("failopen", rsa_jwks, claimToHeaders=claims[:1])],
                   failOpen=True),
            policy("cookie", "cookie", [provider("cookie", rsa_jwks,
                                                 extractFrom={"cookies": ["session_token"]})]),
            policy("multi", "multi", [provider("one", rsa_jwks, claimToHeaders=[{"header": "x-p", "claim": "iss"}]),
                                      provider("two", ec_jwks, claimToHeaders=[{"header": "x-p", "claim": "iss"}])]),
            policy("noforward", "noforward", [provider("noforward", rsa_jwks, forward=False)]),
        ]
        return jgtest.base_config(port, {"backend": [up.port]}, routes, securityPolicies=policies)

    proxy = start_proxy_module(config, "jwt")
    return Env(proxy, up, keydir)


def curl(env, path, *headers):
    """curl as the seed task runs it: -H "Host: www.example.com" [-H ...]; returns (code, headers, body)."""
    cmd = ["curl", "-sS", "-o", "-", "-D", "/dev/stderr", "-H", f"Host: {HOST}", "--max-time", "10"]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(f"http://127.0.0.1:{env.port}{path}")
    proc = subprocess.run(cmd, capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    head = proc.stderr.decode("latin-1").split("\r\n")
    code = int(head[0].split()[1])
    hdrs = {}
    for ln in head[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return code, hdrs, proc.stdout


# ---- the seed scenario ----

def test_seed_foo_without_token_is_401_jwt_is_missing(env):
    code, hdrs, body = curl(env, "/foo")
    assert code == 401
    assert body == b"Jwt is missing"
    assert hdrs["www-authenticate"] == [f'Bearer realm="http://{HOST}/foo"']
    assert hdrs["content-type"] == ["text/plain"]


def test_seed_foo_with_test_jwt_is_200(env):
    code, _, body = curl(env, "/foo", "Authorization: Bearer " + read_seed("test.jwt"))
    assert code == 200
    assert json.loads(body)["path"] == "/foo"


def test_seed_foo_with_different_claim_jwt_is_200(env):
    tok = read_seed("with-different-claim.jwt")
    assert payload_of(tok)["name"] == "Tom"
    code, _, _ = curl(env, "/foo", "Authorization: Bearer " + tok)
    assert code == 200


def test_seed_bar_without_token_is_200(env):
    code, _, body = curl(env, "/bar")
    assert code == 200
    assert json.loads(body)["path"] == "/bar"


def test_seed_missing_token_never_reaches_upstream(env):
    env.denied("/foo", [], 401, MSG_MISSING, invalid_token=False)


def test_seed_token_is_forwarded_to_upstream(env):
    tok = read_seed("test.jwt")
    rec = env.passed("/foo", [bearer(tok)])
    assert header(rec, "authorization") == [f"Bearer {tok}"]


def test_garbage_token_401_invalid_token(env):
    code, hdrs, body = curl(env, "/foo", "Authorization: Bearer garbage")
    assert code == 401
    assert body == MSG_BAD_FORMAT.encode()
    assert hdrs["www-authenticate"] == [f'Bearer realm="http://{HOST}/foo", error="invalid_token"']
    env.denied("/foo", [bearer("garbage")], 401, MSG_BAD_FORMAT)


def test_seed_token_with_flipped_signature_byte_is_401(env):
    tok = read_seed("test.jwt")
    h, p, s = tok.split(".")
    s = ("A" if s[5] != "A" else "B").join([s[:5], s[6:]])
    env.denied("/foo", [bearer(f"{h}.{p}.{s}")], 401, MSG_VERIFY)


def test_generated_key_token_refused_by_seed_provider(env):
    # a token signed with a key the seed JWKS does not hold: its first key has no kid, so it is tried
    # (jwt-behaviour.md "Key selection") and the signature fails
    env.denied("/foo", [bearer(env.mint("rsa"))], 401, MSG_VERIFY)


# ---- verification answers ----

def test_audience_mismatch_is_403(env):
    tok = env.mint("rsa", "--aud", "other.example.com")
    env.denied("/aud", [bearer(tok)], 403, MSG_AUDIENCE)
    env.passed("/aud", [bearer(env.mint("rsa", "--aud", "https://api.example.com/"))])


def test_expired_token_is_401(env):
    tok = env.mint("rsa", "--exp-in", "-1h")
    assert payload_of(tok)["exp"] < payload_of(tok)["iat"]
    env.denied("/claims", [bearer(tok)], 401, MSG_EXPIRED)
    # the same claims, not expired, pass (the key and route are fine)
    env.passed("/claims", [bearer(env.mint("rsa"))])


def test_wrong_key_same_kid_is_401(env):
    # "stranger" carries the same kid as the configured RSA key but is another key
    env.denied("/claims", [bearer(env.mint("stranger"))], 401, MSG_VERIFY)


def test_unknown_kid_is_401(env):
    # the EC token's kid (e2e-ec) names no key of the RSA-only provider
    env.denied("/claims", [bearer(env.mint("ec"))], 401, MSG_KID)


def test_two_authorization_headers_one_bad_is_401(env):
    good = env.mint("rsa")
    env.denied("/claims", [bearer(good), bearer("garbage")], 401, MSG_BAD_FORMAT)
    env.denied("/claims", [bearer(env.mint("rsa", "--exp-in", "-1h")), bearer(good)], 401, MSG_EXPIRED)
    env.passed("/claims", [bearer(good), bearer(env.mint("rsa", "--sub", "other"))])


def test_header_plus_query_param_both_must_be_valid(env):
    good = env.mint("rsa")
    env.denied(f"/claims?access_token={env.mint('rsa', '--exp-in', '-1h')}", [bearer(good)], 401, MSG_EXPIRED)
    env.denied(f"/claims?access_token={good}", [bearer("garbage")], 401, MSG_BAD_FORMAT)
    env.passed(f"/claims?access_token={good}", [bearer(good)])


def test_denial_keeps_the_connection_usable(env):
    with RawConn(env.port) as c:
        r = c.request("GET", "/foo", HOST)
        assert r.status == 401 and r.body == MSG_MISSING.encode()
        r = c.request("GET", "/foo", HOST, headers=[bearer(read_seed("test.jwt"))])
        assert r.status == 200


# ---- claim headers ----

def test_claim_to_headers_reach_upstream(env):
    tok = env.mint("rsa", "--sub", "alice", "--claim-json", 'org={"name":"acme"}', "--claim-json", "admin=true",
                   "--claim-json", "level=3", "--claim-json", 'roles=["a","b"]')
    rec = env.passed("/claims", [bearer(tok)])
    assert header(rec, "x-sub") == ["alice"]
    assert header(rec, "x-org") == ["acme"]
    assert header(rec, "x-admin") == ["true"]
    assert header(rec, "x-level") == ["3"]
    assert json.loads(unb64u(header(rec, "x-roles")[0])) == ["a", "b"]
    assert header(rec, "x-jwt-payload") == [tok.split(".")[1]]
    assert json.loads(unb64u(header(rec, "x-jwt-payload")[0]))["sub"] == "alice"


def test_absent_claim_adds_no_header(env):
    rec = env.passed("/claims", [bearer(env.mint("rsa", "--sub", "bob"))])
    assert header(rec, "x-sub") == ["bob"]
    assert header(rec, "x-org") == []
    assert header(rec, "x-admin") == []


def test_client_claim_headers_stripped_with_valid_token(env):
    tok = env.mint("rsa", "--sub", "alice")
    rec = env.passed("/claims", [("X-Sub", "admin"), ("x-org", "evil"), ("X-Jwt-Payload", "e30"), bearer(tok),
                                 ("X-Other", "kept")])
    assert header(rec, "x-sub") == ["alice"]
    assert header(rec, "x-org") == []
    assert header(rec, "x-jwt-payload") == [tok.split(".")[1]]
    assert header(rec, "x-other") == ["kept"]


def test_client_claim_header_stripped_without_token_on_optional_policy(env):
    rec = env.passed("/optional", [("X-Sub", "admin"), ("X-Other", "kept")])
    assert header(rec, "x-sub") == []
    assert header(rec, "x-other") == ["kept"]


def test_claim_value_with_crlf_never_becomes_a_header(env):
    tok = env.mint("rsa", "--claim-json", 'sub="a\\r\\nX-Injected: 1"', "--claim-json", 'org={"name":"b\\nX-Evil: 2"}')
    r, recs = env.req("/claims", [bearer(tok)])
    assert r.status in (200, 401, 403), r
    for rec in recs:
        assert header(rec, "x-injected") == [] and header(rec, "x-evil") == []
        assert header(rec, "x-sub") == [] and header(rec, "x-org") == []
        for k, v in rec["headers"]:
            assert "\r" not in v and "\n" not in v


# ---- optional and failOpen ----

def test_optional_missing_passes_invalid_rejected(env):
    env.passed("/optional")
    env.denied("/optional", [bearer("garbage")], 401, MSG_BAD_FORMAT)
    env.denied("/optional", [bearer(env.mint("rsa", "--exp-in", "-1h"))], 401, MSG_EXPIRED)
    rec = env.passed("/optional", [bearer(env.mint("rsa", "--sub", "carol"))])
    assert header(rec, "x-sub") == ["carol"]


def test_fail_open_missing_and_invalid_pass(env):
    env.passed("/failopen")
    rec = env.passed("/failopen", [bearer("garbage"), ("X-Sub", "admin")])
    assert header(rec, "x-sub") == []
    rec = env.passed("/failopen", [bearer(env.mint("rsa", "--sub", "eve", "--exp-in", "-1h"))])
    assert header(rec, "x-sub") == []  # an invalid token's claims are never used
    rec = env.passed("/failopen", [bearer(env.mint("rsa", "--sub", "dan"))])
    assert header(rec, "x-sub") == ["dan"]


# ---- extraction ----

def test_token_in_cookie(env):
    tok = env.mint("rsa")
    env.passed("/cookie", [("Cookie", f"theme=dark; session_token={tok}; lang=en")])
    env.denied("/cookie", [("Cookie", "session_token=garbage")], 401, MSG_BAD_FORMAT)
    # extractFrom replaces the default places: a bearer header is not looked at
    env.denied("/cookie", [bearer(tok)], 401, MSG_MISSING, invalid_token=False)


def test_token_in_access_token_query_parameter(env):
    tok = env.mint("rsa", "--sub", "qp")
    rec = env.passed(f"/claims?access_token={tok}")
    assert header(rec, "x-sub") == ["qp"]
    env.denied("/claims?access_token=garbage", [], 401, MSG_BAD_FORMAT)


def test_bearer_scheme_case_insensitive(env):
    env.passed("/claims", [("Authorization", "bearer " + env.mint("rsa"))])


# ---- several providers ----

def test_two_providers_each_key_accepted(env):
    rec = env.passed("/multi", [bearer(env.mint("rsa", "--iss", "from-rsa"))])
    assert header(rec, "x-p") == ["from-rsa"]
    rec = env.passed("/multi", [bearer(env.mint("ec", "--iss", "from-ec"))])
    assert header(rec, "x-p") == ["from-ec"]
    env.denied("/multi", [bearer(env.mint("stranger"))], 401, MSG_VERIFY)
    env.denied("/multi", [], 401, MSG_MISSING, invalid_token=False)


# ---- forwarding the token ----

def test_forward_default_keeps_authorization(env):
    tok = env.mint("rsa")
    rec = env.passed("/claims", [bearer(tok)])
    assert header(rec, "authorization") == [f"Bearer {tok}"]


def test_forward_false_removes_authorization(env):
    tok = env.mint("rsa")
    rec = env.passed("/noforward", [bearer(tok), ("X-Other", "kept")])
    assert header(rec, "authorization") == []
    assert header(rec, "x-other") == ["kept"]
    env.denied("/noforward", [bearer("garbage")], 401, MSG_BAD_FORMAT)


def test_invalid_tokens_never_reach_upstream(env):
    good = env.mint("rsa")
    h, p, s = good.split(".")
    admin = b64u(b'{"sub":"admin"}')
    alg_none = b64u(b'{"alg":"none"}')
    cases = [
        ("/claims", [bearer("garbage")]),
        ("/claims", [bearer(f"{h}.{p}.")]),
        ("/claims", [bearer(f"{h}.{admin}.{s}")]),
        ("/claims", [bearer(env.mint("rsa", "--exp-in", "-1h"))]),
        ("/claims", [bearer(env.mint("rsa", "--nbf-in", "1h"))]),
        ("/claims", [bearer(env.mint("stranger"))]),
        ("/aud", [bearer(env.mint("rsa", "--aud", "nope"))]),
        ("/foo", [bearer(f"{alg_none}.{p}.")]),
        ("/claims", [bearer(good)] * 9),
    ]
    env.up.reset()
    for path, hdrs in cases:
        r, recs = env.req(path, hdrs)
        assert r.status in (401, 403), (path, r)
        assert recs == []
    # nothing at all reached the upstream, not even late
    assert jgtest.wait_for(lambda: env.up.snapshot(), timeout=0.3) == []
