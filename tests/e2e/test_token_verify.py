"""jwtgate-token verify and inspect (issue 12 section 3) against the running proxy.

Every denial of reference/jwt-behaviour.md's status table that a token alone can trigger is sent to a
jwtgate whose providers have the settings the tool is given (issuer, audiences, requireExpiration,
maxLifetime, a local JWKS file), and to `jwtgate-token verify`; the message (the proxy's 401/403 body)
and the status must be the same. The happy path names the key that verified; batches read stdin; a JWKS
URL is fetched over HTTPS with --ca (tests/e2e/jwksutil.py). inspect shows the claims with times relative
to now and says the token is not verified.
Run: /usr/bin/python3 -m pytest tests/e2e/test_token_verify.py (binaries from JWTGATE_BIN, JWTGATE_TOKEN_BIN).
"""

import base64
import json
import os
import re
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import jgtest
import jwksutil

TOKEN_BIN = jgtest.TOKEN_BIN
SEED_DIR = jgtest.SEED_DIR
HOST = "www.example.com"
ISSUER = "https://issuer.example.com"
AUDIENCE = "api.example.com"


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64u(n, length=None):
    length = length or max(1, (n.bit_length() + 7) // 8)
    return b64u(n.to_bytes(length, "big"))


def raw_token(header, payload, sig=b"x" * 256):
    """A token from JSON-able (or str: already JSON text) header and payload, without a real signature."""
    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    return f"{b64u(h)}.{b64u(p)}.{b64u(sig)}"


def rsa_keypair(kid):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pn, pv = k.public_key().public_numbers(), k.private_numbers()
    pub = {"kty": "RSA", "kid": kid, "alg": "RS256", "n": int_b64u(pn.n), "e": int_b64u(pn.e)}
    priv = dict(pub, d=int_b64u(pv.d), p=int_b64u(pv.p), q=int_b64u(pv.q), dp=int_b64u(pv.dmp1),
                dq=int_b64u(pv.dmq1), qi=int_b64u(pv.iqmp))
    return priv, pub


def ed_public(kid):
    k = ed25519.Ed25519PrivateKey.generate()
    x = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "x": b64u(x)}


def run(*args, stdin=None):
    return subprocess.run([TOKEN_BIN, *args], input=stdin, capture_output=True, text=True, timeout=60)


DENIED = re.compile(r"^(?:(\d+): )?DENIED \((\d{3})\): (.*)$")


def verdict(line):
    """(status, message) of a DENIED result line, or ("OK", line) for a verified one."""
    m = DENIED.match(line)
    if m:
        return int(m.group(2)), m.group(3)
    assert "OK: verified by key " in line, line
    return "OK", line


class Env:
    def __init__(self, proxy, keydir, jwks):
        self.proxy, self.keydir, self.jwks = proxy, keydir, jwks

    def mint(self, key, *args):
        proc = run("--key", os.path.join(self.keydir, key + ".json"), *args)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def proxy_answer(self, path, token):
        r = jgtest.get(self.proxy.port, path, host=HOST, headers=[("Authorization", "Bearer " + token)])
        if r.status == 200:
            return "OK", ""
        return r.status, r.body.decode()


# Each route's provider, and the verify options that say the same.
ROUTES = {
    "plain": ({}, []),
    "iss": ({"issuer": ISSUER}, ["--issuer", ISSUER]),
    "aud": ({"audiences": [AUDIENCE, "other.example.com"]},
            ["--audience", AUDIENCE, "--audience", "other.example.com"]),
    "strict": ({"requireExpiration": True, "maxLifetime": "1h", "clockSkew": "5s"},
               ["--require-exp", "--max-lifetime", "1h", "--clock-skew", "5s"]),
}


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    keydir = str(tmp_path_factory.mktemp("keys"))
    priv, pub = rsa_keypair("k1")
    stranger, _ = rsa_keypair("k1")  # same kid, another key: signature fails
    with open(os.path.join(keydir, "rsa.json"), "w") as f:
        json.dump(priv, f)
    with open(os.path.join(keydir, "stranger.json"), "w") as f:
        json.dump(stranger, f)
    jwks = os.path.join(keydir, "jwks.json")
    with open(jwks, "w") as f:
        json.dump({"keys": [pub, ed_public("ed1")]}, f)

    def config(port):
        routes, policies = [], []
        for name, (extra, _) in ROUTES.items():
            routes.append({"name": name, "hostnames": [HOST],
                           "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/" + name}}],
                                      "backendRefs": [{"name": "backend"}]}]})
            prov = {"name": name, "localJWKS": {"type": "File", "file": jwks}}
            prov.update(extra)
            policies.append({"name": name, "targetRefs": [{"kind": "HTTPRoute", "name": name}],
                             "jwt": {"providers": [prov]}})
        routes.append({"name": "seed", "hostnames": [HOST],
                       "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/seed"}}],
                                  "backendRefs": [{"name": "backend"}]}]})
        policies.append({"name": "seed", "targetRefs": [{"kind": "HTTPRoute", "name": "seed"}],
                         "jwt": {"providers": [{"name": "example", "localJWKS": {
                             "type": "File", "file": os.path.join(SEED_DIR, "jwks.json")}}]}})
        return jgtest.base_config(port, {"backend": [up.port]}, routes, securityPolicies=policies)

    return Env(start_proxy_module(config, "tokverify"), keydir, jwks)


def cases(env):
    """(table message, route, token): every row of the table a token alone triggers, on a route whose
    provider can give it."""
    ok_h = {"alg": "RS256", "kid": "k1"}
    mint = env.mint
    return [
        ("Jwt not yet valid", "plain", mint("rsa", "--nbf-in", "1h")),
        ("Jwt is expired", "plain", mint("rsa", "--exp-in", "-1h")),
        # expired AND badly signed: the time check comes first (jwt-behaviour.md "Order of checks")
        ("Jwt is expired", "plain", mint("stranger", "--exp-in", "-1h")),
        ("Jwt is expired", "strict", mint("rsa", "--no-exp")),  # requireExpiration
        ("Jwt is expired", "strict", mint("rsa", "--exp-in", "2h")),  # maxLifetime 1h
        ("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", "plain", "abc.def"),
        ("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", "plain", "a.b.c.d"),
        ("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections", "plain",
         raw_token(ok_h, {"pad": "x" * 9000})),  # over the default 8 KiB cap
        ("Jwt header is an invalid Base64url encoded", "plain", "e30=.e30.e30"),
        ("Jwt header is an invalid JSON", "plain", raw_token("{not json", {})),
        ("Jwt header [alg] field is required and must be a string", "plain", raw_token({"typ": "JWT"}, {})),
        ("Jwt header [alg] field is required and must be a string", "plain", raw_token({"alg": 256}, {})),
        ("Jwt header [alg] is not supported", "plain", raw_token({"alg": "none"}, {}, b"")),
        ("Jwt header [alg] is not supported", "plain", raw_token({"alg": "rs256"}, {})),
        ("Jwt header [kid] field is not a string", "plain", raw_token({"alg": "RS256", "kid": 7}, {})),
        ("Jwt payload is an invalid Base64url encoded", "plain", b64u(json.dumps(ok_h)) + ".e30*.e30"),
        ("Jwt payload is an invalid JSON", "plain", raw_token(ok_h, "[1,")),
        ("Jwt payload [iss] field is not a string", "plain", raw_token(ok_h, {"iss": 1})),
        ("Jwt payload [sub] field is not a string", "plain", raw_token(ok_h, {"sub": ["a"]})),
        ("Jwt payload [iat] field is not an integer", "plain", raw_token(ok_h, {"iat": "1700000000"})),
        ("Jwt payload [iat] field is not a positive 64 bit integer", "plain", raw_token(ok_h, {"iat": -1})),
        ("Jwt payload [nbf] field is not an integer", "plain", raw_token(ok_h, {"nbf": 1.5})),
        ("Jwt payload [nbf] field is not a positive 64 bit integer", "plain", raw_token(ok_h, {"nbf": -5})),
        ("Jwt payload [exp] field is not an integer", "plain", raw_token(ok_h, {"exp": True})),
        ("Jwt payload [exp] field is not a positive 64 bit integer", "plain", raw_token(ok_h, "{\"exp\":1e300}")),
        ("Jwt payload [jti] field is not a string", "plain", raw_token(ok_h, {"jti": 3})),
        ("Jwt payload [aud] field is not a string or string list", "plain", raw_token(ok_h, {"aud": [1]})),
        ("Jwt signature is an invalid Base64url encoded", "plain",
         raw_token(ok_h, {}).rsplit(".", 1)[0] + ".ab=c"),
        ("Jwt ED25519 signature is wrong length", "plain", raw_token({"alg": "EdDSA", "kid": "ed1"}, {}, b"x" * 10)),
        ("Jwt issuer is not configured", "iss", mint("rsa", "--iss", "https://evil.example.com")),
        ("Jwt issuer is not configured", "iss", mint("rsa")),  # no iss at all
        ("Audiences in Jwt are not allowed", "aud", mint("rsa", "--aud", "elsewhere.example.com")),
        ("Audiences in Jwt are not allowed", "aud", mint("rsa")),  # no aud at all
        ("Jwt verification fails", "plain", mint("stranger")),
        ("Jwt verification fails", "plain", mint("rsa")[:-4] + "AAAA"),
        ("Jwt verification fails", "plain", raw_token({"alg": "RS256", "kid": "k1", "crit": ["exp"]}, {})),
        ("Jwks doesn't have key to match kid or alg from Jwt", "plain", mint("rsa", "--kid", "unknown")),
        ("Jwks doesn't have key to match kid or alg from Jwt", "plain", raw_token({"alg": "ES256"}, {})),
    ]


def test_every_token_denial_is_the_proxys(env):
    seen = set()
    for message, route, token in cases(env):
        want = env.proxy_answer("/" + route, token)
        assert want == (403 if message.startswith("Audiences") else 401, message), (route, token, want)
        proc = run("verify", "--jwks", env.jwks, *ROUTES[route][1], token)
        assert proc.returncode == 1, (message, proc.stdout, proc.stderr)
        lines = proc.stdout.splitlines()
        assert lines and verdict(lines[0]) == want, (message, token, proc.stdout)
        seen.add(message)
    # the table's rows a token alone can trigger (MultipleTokens needs two, Jwks* rows a key set, and
    # JwtMissed no token: test_missing_token)
    assert len(seen) == 26


def test_missing_token(env):
    r = jgtest.get(env.proxy.port, "/plain", host=HOST)
    proc = run("verify", "--jwks", env.jwks, "")
    assert proc.returncode == 1
    assert verdict(proc.stdout.splitlines()[0]) == (r.status, r.body.decode()) == (401, "Jwt is missing")


def test_verified_token_names_its_key(env):
    token = env.mint("rsa", "--iss", ISSUER, "--aud", AUDIENCE, "--sub", "alice", "--exp-in", "30m")
    for route in ROUTES:
        assert env.proxy_answer("/" + route, token) == ("OK", "")
        proc = run("verify", "--jwks", env.jwks, *ROUTES[route][1], token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out = proc.stdout.splitlines()
        assert out[0] == "OK: verified by key kid=k1 (RSA, RS256)"
        assert "  iss  " + ISSUER in out and "  sub  alice" in out and "  aud  " + AUDIENCE in out
        assert any(re.fullmatch(r"  exp  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(expires in (30m|29m5\ds)\)", ln)
                   for ln in out), out


def test_seed_token_verifies_with_the_kidless_key(env):
    with open(os.path.join(SEED_DIR, "test.jwt")) as f:
        token = f.read().strip()
    assert env.proxy_answer("/seed", token) == ("OK", "")
    proc = run("verify", "--jwks", os.path.join(SEED_DIR, "jwks.json"), token)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "OK: verified by key without kid, valid key 1 of 2 (RSA, RS256)"
    # an invalid key is skipped (named on stderr), and the count is of the keys kept
    with open(os.path.join(SEED_DIR, "jwks.json")) as f:
        jwks = json.load(f)
    jwks["keys"].insert(0, {"kty": "RSA", "kid": "weak", "n": "AQAB", "e": "AQAB"})
    mixed = os.path.join(env.keydir, "mixed.json")
    with open(mixed, "w") as f:
        json.dump(jwks, f)
    proc = run("verify", "--jwks", mixed, token)
    assert proc.stdout.splitlines()[0] == "OK: verified by key without kid, valid key 1 of 2 (RSA, RS256)"
    assert 'kid "weak" skipped' in proc.stderr
    # "Bearer " as pasted from a curl line is accepted, like the proxy's default extraction
    proc = run("verify", "--jwks", os.path.join(SEED_DIR, "jwks.json"), "Bearer " + token)
    assert proc.returncode == 0, proc.stdout


def test_batch_from_stdin_one_result_per_line(env):
    good = env.mint("rsa")
    expired = env.mint("rsa", "--exp-in", "-2h")
    lines = [good, expired, "", "garbage", "Bearer " + good]
    proc = run("verify", "--jwks", env.jwks, "-", stdin="\n".join(lines) + "\n")
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout.splitlines()
    assert out == ["1: OK: verified by key kid=k1 (RSA, RS256)",
                   "2: DENIED (401): Jwt is expired",
                   "4: DENIED (401): Jwt is not in the form of Header.Payload.Signature with two dots and 3 "
                   "sections",
                   "5: OK: verified by key kid=k1 (RSA, RS256)"]
    # all good (no TOKEN argument reads stdin too): exit 0
    proc = run("verify", "--jwks", env.jwks, stdin=f"{good}\r\n{good}")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.splitlines() == ["1: OK: verified by key kid=k1 (RSA, RS256)",
                                        "2: OK: verified by key kid=k1 (RSA, RS256)"]


def test_batch_line_over_any_cap_is_bad_format(env):
    proc = run("verify", "--jwks", env.jwks, stdin="a" * 200000 + "\n" + env.mint("rsa") + "\n")
    assert proc.returncode == 1
    assert proc.stdout.splitlines() == [
        "1: DENIED (401): Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        "2: OK: verified by key kid=k1 (RSA, RS256)"]


def test_jwks_url_over_https_with_ca(env, tmp_path):
    ca = jwksutil.CA()
    ca_path = ca.write(str(tmp_path / "ca.pem"))
    cert, key = ca.issue(tmp_path, hostnames=("localhost",), ips=("127.0.0.1",))
    srv = jwksutil.JwksServer(cert, key).start()
    try:
        with open(env.jwks, "rb") as f:
            srv.serve_bytes(f.read())
        token = env.mint("rsa", "--iss", ISSUER)
        url = f"https://127.0.0.1:{srv.port}/keys/jwks.json"
        proc = run("verify", "--jwks", url, "--ca", ca_path, "--issuer", ISSUER, token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.splitlines()[0] == "OK: verified by key kid=k1 (RSA, RS256)"
        assert srv.requests[-1].startswith("GET /keys/jwks.json ")
        # a denial from fetched keys is the same as from the file
        proc = run("verify", "--jwks", url, "--ca", ca_path, env.mint("stranger"))
        assert verdict(proc.stdout.splitlines()[0]) == (401, "Jwt verification fails")
        # by name: the certificate carries localhost
        proc = run("verify", "--jwks", f"https://localhost:{srv.port}/keys/jwks.json", "--ca", ca_path, token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        # without the CA the peer is not trusted: no keys, so the proxy's "remote fetch is failed"
        proc = run("verify", "--jwks", url, token)
        assert proc.returncode == 1
        assert verdict(proc.stdout.splitlines()[0]) == (401, "Jwks remote fetch is failed")
        assert "tls" in proc.stderr.lower(), proc.stderr
        # a 503 is a failed fetch too, and the claim checks still come first
        srv.set_script([("status", 503), ("status", 503)])
        proc = run("verify", "--jwks", url, "--ca", ca_path, token)
        assert verdict(proc.stdout.splitlines()[0]) == (401, "Jwks remote fetch is failed")
        proc = run("verify", "--jwks", url, "--ca", ca_path, env.mint("rsa", "--exp-in", "-1h"))
        assert verdict(proc.stdout.splitlines()[0]) == (401, "Jwt is expired")
    finally:
        srv.stop()


def test_jwks_url_unreachable_fails_closed(env):
    port = jgtest.free_port()
    proc = run("verify", "--jwks", f"http://127.0.0.1:{port}/jwks.json", "--timeout", "3s", env.mint("rsa"))
    assert proc.returncode == 1
    assert verdict(proc.stdout.splitlines()[0]) == (401, "Jwks remote fetch is failed")
    assert "plain HTTP" in proc.stderr


def test_usage_errors():
    assert run("verify", "tok").returncode == 2  # no --jwks
    assert run("verify", "--jwks", "/nonexistent/jwks.json", "a.b.c").returncode == 2
    assert run("verify", "--jwks", "x.json", "--clock-skew", "soon", "a.b.c").returncode == 2
    proc = run("verify", "--help")
    assert proc.returncode == 0 and "--jwks FILE|URL" in proc.stdout


def test_unusable_jwks_file_is_the_proxys_message(tmp_path):
    p = tmp_path / "jwks.json"
    p.write_text('{"keys": "no"}')
    proc = run("verify", "--jwks", str(p), "a.b.c")
    assert proc.returncode == 2
    assert "[keys] in Jwks is not an array" in proc.stderr


# ---- inspect ----

def test_inspect_shows_claims_and_relative_times(env):
    token = env.mint("rsa", "--exp-in", "-3h", "--sub", "bob", "--claim-json", 'org={"name":"acme"}')
    proc = run("inspect", token)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.splitlines()[0].startswith("NOT VERIFIED")
    assert '"kid": "k1"' in out and '"alg": "RS256"' in out
    assert '"sub": "bob"' in out and '"name": "acme"' in out
    assert re.search(r"^  exp  \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(expired 3h ago\)$", out, re.M), out
    assert re.search(r"^  iat  .*Z \(issued (0s|1s|2s) ago\)$", out, re.M), out
    # from stdin, with times ahead
    token = env.mint("rsa", "--exp-in", "5m", "--nbf-in", "2m")
    proc = run("inspect", "-", stdin=token + "\n")
    assert proc.returncode == 0
    assert re.search(r"\(expires in (5m|4m5\ds)\)", proc.stdout), proc.stdout
    assert re.search(r"\(valid in (2m|1m5\ds)\)", proc.stdout), proc.stdout


def test_inspect_malformed_gives_the_proxys_parse_message(env):
    token = raw_token({"alg": "RS256"}, {"exp": "tomorrow"})
    assert env.proxy_answer("/plain", token) == (401, "Jwt payload [exp] field is not an integer")
    proc = run("inspect", token)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith("Jwt payload [exp] field is not an integer")
    assert '"exp": "tomorrow"' in proc.stdout  # what decodes is still shown
    proc = run("inspect", "nodots")
    assert proc.returncode == 1
    assert "Jwt is not in the form of Header.Payload.Signature" in proc.stderr


def test_mint_subcommand_and_bare_options_both_mint(env):
    a = run("mint", "--key", os.path.join(env.keydir, "rsa.json"), "--sub", "x")
    b = run("--key", os.path.join(env.keydir, "rsa.json"), "--sub", "x")
    assert a.returncode == 0 and b.returncode == 0
    for out in (a.stdout.strip(), b.stdout.strip()):
        assert run("verify", "--jwks", env.jwks, out).returncode == 0
