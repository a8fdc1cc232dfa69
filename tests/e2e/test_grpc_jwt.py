"""JWT authentication of a GRPCRoute end to end: the gRPC half of Envoy Gateway's "JWT Authentication"
task (seed/jwt-authentication.md, conformance/envoy-gateway-jwt/grpc-jwt.yaml).

jwtgate (JWTGATE_BIN) is configured like conf/jwtgate.yaml's grpcRoutes + securityPolicies: GRPCRoute
`yages` for hostname grpc-example.com to an H2C backend, guarded by provider `example` with the task's
jwks.json. The backend is a real python3-grpcio yages.Echo server (grpc_echo_server.py) on an
ephemeral loopback port; clients are python3-grpcio channels with the authority overridden to
grpc-example.com (grpcurl's -authority), plus raw HTTP/2 clients (h2util) for the wire format.

A second GRPCRoute (grpc-aud.example.com) is guarded by a provider with `audiences: [api.example.com]`
and an inline JWKS holding the public half of an RSA key generated here; its tokens are minted with
jwtgate-token (JWTGATE_TOKEN_BIN).

Answers are those of reference/jwt-behaviour.md "Denial": a trailers-only response, :status 200,
content-type application/grpc, grpc-status 16 (UNAUTHENTICATED) or 7 (PERMISSION_DENIED), grpc-message
percent-encoded. A refused call never reaches the backend: every call carries a unique x-jg-marker
metadata entry and the backend records the metadata of every call it received (reflection included).
"""

import base64
import json
import os
import subprocess
import time

import grpc
import hyperframe.frame as hf
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import grpc_echo_server as echo
import h2util
import jgtest
from test_jwt import MSG_AUDIENCE, MSG_BAD_FORMAT, MSG_KID, MSG_MISSING, MSG_VERIFY, int_b64u

TOKEN_BIN = jgtest.TOKEN_BIN
SEED_DIR = jgtest.SEED_DIR
AUTHORITY = "grpc-example.com"           # the seed's GRPCRoute hostname
AUD_AUTHORITY = "grpc-aud.example.com"   # the route whose provider requires aud api.example.com
REFLECTION_INFO = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
LIST_SERVICES = b"\x3a\x00"              # ServerReflectionRequest{list_services: ""}
SETTLE = 0.3                             # how long a stray forwarded call gets to show up at the backend


def pct(msg):
    """grpc-message as jwt-behaviour.md shows it (`Jwt%20is%20missing`): bytes outside 0x21-0x7E and
    '%' percent-encoded."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else "%%%02X" % b for b in msg.encode())


class RecordingEchoServer(echo.EchoServer):
    """EchoServer whose reflection calls are recorded too (the Echo methods record their invocation
    metadata already): srv.metadata then holds one entry per call that reached the backend."""

    def reflection(self, it, context):
        self._note(context)
        yield from super().reflection(it, context)


def read_seed(name):
    with open(os.path.join(SEED_DIR, name)) as f:
        return f.read().strip()


@pytest.fixture(scope="module")
def env(start_proxy_module, tmp_path_factory):
    srv = RecordingEchoServer().start()
    keydir = str(tmp_path_factory.mktemp("grpc-jwt-keys"))
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pn, pv = k.public_key().public_numbers(), k.private_numbers()
    pub = {"kty": "RSA", "kid": "grpc-aud", "alg": "RS256", "n": int_b64u(pn.n), "e": int_b64u(pn.e)}
    priv = dict(pub, d=int_b64u(pv.d), p=int_b64u(pv.p), q=int_b64u(pv.q), dp=int_b64u(pv.dmp1),
                dq=int_b64u(pv.dmq1), qi=int_b64u(pv.iqmp))
    key_path = os.path.join(keydir, "aud.private.json")
    with open(key_path, "w") as f:
        json.dump(priv, f)

    def config(port):
        backends = {"yages": {"protocol": "H2C",
                              "endpoints": [{"ip": {"address": "127.0.0.1", "port": srv.port}}]}}
        cfg = jgtest.base_config(port, backends, [], workers=1)
        del cfg["httpRoutes"]
        cfg["grpcRoutes"] = [
            # conf/jwtgate.yaml's GRPCRoute, exactly: no matches, every service of the host
            {"name": "yages", "hostnames": [AUTHORITY], "rules": [{"backendRefs": [{"name": "yages"}]}]},
            {"name": "yages-aud", "hostnames": [AUD_AUTHORITY], "rules": [{"backendRefs": [{"name": "yages"}]}]},
        ]
        cfg["securityPolicies"] = [
            {"name": "jwt-example", "targetRefs": [{"kind": "GRPCRoute", "name": "yages"}],
             "jwt": {"providers": [{"name": "example",
                                    "localJWKS": {"type": "File",
                                                  "file": os.path.join(SEED_DIR, "jwks.json")}}]}},
            {"name": "jwt-aud", "targetRefs": [{"kind": "GRPCRoute", "name": "yages-aud"}],
             "jwt": {"providers": [{"name": "aud", "audiences": ["api.example.com"],
                                    "localJWKS": {"type": "Inline",
                                                  "inline": json.dumps({"keys": [pub]})}}]}},
        ]
        return cfg

    px = start_proxy_module(config, "grpc-jwt")
    yield {"srv": srv, "port": px.port, "proxy": px, "key": key_path}
    srv.stop()


def mint(env, *args):
    proc = subprocess.run([TOKEN_BIN, "--key", env["key"], *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def channel(env, authority=AUTHORITY):
    return grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", authority)])


@pytest.fixture
def ch(env):
    c = channel(env)
    yield c
    c.close()


@pytest.fixture
def ch_aud(env):
    c = channel(env, AUD_AUTHORITY)
    yield c
    c.close()


def ping(ch):
    return ch.unary_unary("/yages.Echo/Ping", request_serializer=echo.encode_empty,
                          response_deserializer=echo.decode_content)


def reflection(ch):
    return ch.stream_stream(REFLECTION_INFO, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def md(marker, token=None):
    """Call metadata: the marker, and `authorization: Bearer <token>` when a token is given."""
    out = [("x-jg-marker", marker)]
    if token is not None:
        out.append(("authorization", "Bearer " + token))
    return tuple(out)


def calls_with(srv, marker):
    """Invocation metadata of the backend calls that carried marker."""
    with srv.lock:
        return [m for m in srv.metadata if ("x-jg-marker", marker) in m]


def assert_refused(env, call, code, details):
    """Runs call(marker) (a grpcio call that must fail) and checks the status, the message, and that
    the call never reached the backend."""
    m = jgtest.marker()
    with pytest.raises(grpc.RpcError) as ei:
        call(m)
    err = ei.value
    assert err.code() == code, (err.code(), err.details())
    assert err.details() == details
    time.sleep(SETTLE)
    assert calls_with(env["srv"], m) == [], "a refused call reached the backend"
    return err


def assert_reached(env, call):
    """Runs call(marker) and checks that exactly one backend call carried the marker; returns
    (result, backend metadata as a dict)."""
    m = jgtest.marker()
    out = call(m)
    recs = jgtest.wait_for(lambda: calls_with(env["srv"], m), timeout=2.0)
    assert len(recs) == 1, recs
    return out, dict(recs[0])


def raw_call(env, authority=AUTHORITY, path="/yages.Echo/Ping", extra=()):
    """One gRPC call with a frame-level HTTP/2 client: HEADERS, then DATA (an empty message) with
    END_STREAM. Returns (list of HEADERS frames as dicts, DATA bytes, ended, RST_STREAM code or None)."""
    with h2util.RawH2(env["port"]) as c:
        sid = 1
        hdrs = c.request_headers(path, "POST", authority,
                                 [("content-type", "application/grpc"), ("te", "trailers")] + list(extra))
        d = hf.DataFrame(sid)
        d.data = echo.grpc_frame(b"")
        d.flags.add("END_STREAM")
        c.send(c.headers_frame(sid, hdrs, end_stream=False) + d.serialize())
        assert c.wait(lambda c: sid in c.ended or sid in c.rst), \
            f"no answer on stream {sid}: headers={c.headers} rst={c.rst} goaway={c.goaway}"
        return c.headers.get(sid, []), c.data.get(sid, b""), sid in c.ended, c.rst.get(sid)


def assert_trailers_only(frames, data, ended, rst, grpc_status, message):
    assert ended and rst in (None, 0), (ended, rst)
    assert data == b"", data
    assert len(frames) == 1, f"not trailers-only: {frames}"
    h = frames[0]
    assert h[":status"] == "200", h
    assert h["content-type"] == "application/grpc", h
    assert h["grpc-status"] == str(grpc_status), h
    assert h["grpc-message"] == pct(message), h
    return h


# ---- the seed: grpcurl -plaintext -authority=grpc-example.com GATEWAY:80 yages.Echo/Ping ----

def test_seed_ping_without_token_is_unauthenticated_jwt_is_missing(env, ch):
    assert_refused(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m)),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_MISSING)


def test_seed_missing_token_on_the_wire(env):
    m = jgtest.marker()
    frames, data, ended, rst = raw_call(env, extra=[("x-jg-marker", m)])
    h = assert_trailers_only(frames, data, ended, rst, 16, MSG_MISSING)
    assert h["grpc-message"] == "Jwt%20is%20missing"  # exactly, as in jwt-behaviour.md
    time.sleep(SETTLE)
    assert calls_with(env["srv"], m) == []


def test_seed_ping_with_test_jwt_is_pong(env, ch):
    tok = read_seed("test.jwt")
    out, rec = assert_reached(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, tok)))
    assert out == "pong"
    assert rec.get("authorization") == "Bearer " + tok  # forwarded (provider default forward: true)


def test_seed_ping_with_different_claim_jwt_is_pong(env, ch):
    out, _ = assert_reached(env, lambda m: ping(ch)(None, timeout=5,
                                                   metadata=md(m, read_seed("with-different-claim.jwt"))))
    assert out == "pong"


def test_seed_valid_token_on_the_wire(env):
    frames, data, ended, rst = raw_call(env, extra=[("authorization", "Bearer " + read_seed("test.jwt"))])
    assert ended and rst in (None, 0), (ended, rst)
    assert len(frames) == 2, frames  # response headers, then trailers
    assert frames[0][":status"] == "200" and frames[0]["content-type"] == "application/grpc", frames
    assert "grpc-status" not in frames[0], frames
    assert frames[1]["grpc-status"] == "0", frames
    assert echo.decode_content(data[5:]) == "pong"


# ---- invalid tokens ----

def test_garbage_token_is_unauthenticated_bad_format(env, ch):
    assert_refused(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, "garbage")),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_BAD_FORMAT)


def test_garbage_token_on_the_wire(env):
    m = jgtest.marker()
    frames, data, ended, rst = raw_call(env, extra=[("authorization", "Bearer garbage"), ("x-jg-marker", m)])
    assert_trailers_only(frames, data, ended, rst, 16, MSG_BAD_FORMAT)
    time.sleep(SETTLE)
    assert calls_with(env["srv"], m) == []


def test_flipped_signature_is_unauthenticated(env, ch):
    h, p, s = read_seed("test.jwt").split(".")
    s = s[:5] + ("A" if s[5] != "A" else "B") + s[6:]
    assert_refused(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, f"{h}.{p}.{s}")),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_VERIFY)


def test_generated_key_token_refused_by_seed_provider(env, ch):
    assert_refused(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, mint(env, "--aud", "api.example.com"))),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_VERIFY)


# ---- audiences: 403 -> PERMISSION_DENIED ----

def test_token_without_aud_is_permission_denied(env, ch_aud):
    tok = mint(env)
    assert "aud" not in _payload(tok)
    assert_refused(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m, tok)),
                   grpc.StatusCode.PERMISSION_DENIED, MSG_AUDIENCE)


def test_token_with_other_aud_is_permission_denied(env, ch_aud):
    tok = mint(env, "--aud", "other.example.com")
    assert_refused(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m, tok)),
                   grpc.StatusCode.PERMISSION_DENIED, MSG_AUDIENCE)


def test_audience_denial_on_the_wire(env):
    m = jgtest.marker()
    frames, data, ended, rst = raw_call(env, AUD_AUTHORITY,
                                        extra=[("authorization", "Bearer " + mint(env)), ("x-jg-marker", m)])
    assert_trailers_only(frames, data, ended, rst, 7, MSG_AUDIENCE)
    time.sleep(SETTLE)
    assert calls_with(env["srv"], m) == []


def test_token_with_the_audience_is_pong(env, ch_aud):
    tok = mint(env, "--aud", "api.example.com")
    out, _ = assert_reached(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m, tok)))
    assert out == "pong"


def test_seed_token_on_aud_route_is_permission_denied(env, ch_aud):
    # test.jwt has no aud; the audience is checked before the signature (jwt-behaviour.md "Order of
    # checks"), so the answer is 403 -> PERMISSION_DENIED although the inline JWKS lacks its key
    assert_refused(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m, read_seed("test.jwt"))),
                   grpc.StatusCode.PERMISSION_DENIED, MSG_AUDIENCE)


def test_other_key_with_the_audience_is_unauthenticated(env, ch_aud):
    # the seed's key.json (kid b520...) with the right aud: the audience passes, no key matches its kid
    proc = subprocess.run([TOKEN_BIN, "--key", os.path.join(SEED_DIR, "key.json"), "--aud", "api.example.com"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_refused(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m, proc.stdout.strip())),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_KID)


def test_missing_token_on_aud_route_is_unauthenticated(env, ch_aud):
    assert_refused(env, lambda m: ping(ch_aud)(None, timeout=5, metadata=md(m)),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_MISSING)


# ---- server reflection (what grpcurl calls first: "failed to query for service descriptor") ----

def test_reflection_without_token_is_refused(env, ch):
    assert_refused(env, lambda m: list(reflection(ch)(iter([LIST_SERVICES]), timeout=5, metadata=md(m))),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_MISSING)


def test_reflection_with_garbage_token_is_refused(env, ch):
    assert_refused(env, lambda m: list(reflection(ch)(iter([LIST_SERVICES]), timeout=5, metadata=md(m, "garbage"))),
                   grpc.StatusCode.UNAUTHENTICATED, MSG_BAD_FORMAT)


def test_reflection_without_token_on_the_wire(env):
    frames, data, ended, rst = raw_call(env, path=REFLECTION_INFO)
    assert_trailers_only(frames, data, ended, rst, 16, MSG_MISSING)


def test_reflection_with_test_jwt_works(env, ch):
    tok = read_seed("test.jwt")
    resp, _ = assert_reached(env, lambda m: list(reflection(ch)(iter([LIST_SERVICES]), timeout=5,
                                                               metadata=md(m, tok))))
    assert len(resp) == 1 and b"yages.Echo" in resp[0]
    resp, _ = assert_reached(env, lambda m: list(reflection(ch)(iter([b"\x22\x0ayages.Echo"]), timeout=5,
                                                               metadata=md(m, tok))))
    assert b"yages/echo.proto" in resp[0] and b"Ping" in resp[0]


# ---- no invalid call ever reached the backend; the channel stays usable ----

def test_denials_keep_the_channel_usable(env, ch):
    # denials and accepted calls alternate on one channel (one HTTP/2 connection)
    tok = read_seed("test.jwt")
    for i in range(10):
        bad = None if i % 2 == 0 else "garbage"
        assert_refused(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, bad)),
                       grpc.StatusCode.UNAUTHENTICATED, MSG_MISSING if bad is None else MSG_BAD_FORMAT)
        out, _ = assert_reached(env, lambda m: ping(ch)(None, timeout=5, metadata=md(m, tok)))
        assert out == "pong"


def test_backend_saw_only_authenticated_calls(env):
    """Over the module so far: every call that reached the backend carried a seed token or a token of
    the generated key with the required audience."""
    seeds = {"Bearer " + read_seed("test.jwt"), "Bearer " + read_seed("with-different-claim.jwt")}
    with env["srv"].lock:
        seen = [dict(m) for m in env["srv"].metadata]
    for rec in seen:
        auth = rec.get("authorization")
        assert auth is not None, f"a call without a token reached the backend: {rec}"
        if auth not in seeds:
            assert auth.startswith("Bearer "), rec
            assert _payload(auth[len("Bearer "):]).get("aud") == "api.example.com", rec


def _payload(tok):
    p = tok.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
