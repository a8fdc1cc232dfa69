"""HTTP/2 downstream codec: h2c prior knowledge and TLS ALPN on the same proxy core as HTTP/1.1.
Each stream reaches the upstream as the same protocol-neutral request, bodies stream both ways
intact, local answers (404, JWT denials, upstream failures) are rendered per protocol, and HTTP/1.1
keeps working on the same port."""

import json
import os
import signal
import socket
import ssl
import subprocess
import time

import h2.settings
import pytest

import h2util
import jgtest
from jgtest import get, header, pattern, sha256

MiB = 1024 * 1024
SEED_JWKS = os.path.join(jgtest.SOURCE_ROOT, "conf", "jwks.json")


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    d = str(tmp_path_factory.mktemp("h2"))
    cert, key = h2util.make_cert(d)
    log_path = os.path.join(d, "access.log")
    dead = jgtest.free_port()  # nothing listens there: connect fails
    # A listening socket that never accepts: connections complete in the kernel, nothing answers.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    state = {"silent": silent}

    def config(port):
        tls_port = jgtest.free_port()
        state["tls_port"] = tls_port
        cfg = jgtest.base_config(port, {
            "backend": [up.port],
            "dead": [dead],
            "slow": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": up.port}}],
                     "timeouts": {"request": "500ms"}},
            "grpc-be": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": dead}}]},
            "grpc-dead": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": dead}}]},
            "grpc-silent": {"protocol": "H2C", "timeouts": {"request": "500ms"},
                            "endpoints": [{"ip": {"address": "127.0.0.1", "port": silent.getsockname()[1]}}]},
        }, [
            {"name": "foo", "hostnames": ["www.example.com"],
             "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/foo"}}],
                        "backendRefs": [{"name": "backend"}]}]},
            {"name": "dead", "hostnames": ["dead.example.com"], "rules": [{"backendRefs": [{"name": "dead"}]}]},
            {"name": "slow", "hostnames": ["slow.example.com"], "rules": [{"backendRefs": [{"name": "slow"}]}]},
            {"name": "open", "hostnames": ["www.example.com"], "rules": [{"backendRefs": [{"name": "backend"}]}]},
        ], workers=1, accessLog={"path": log_path, "format": "json"})
        cfg["listeners"].append({"name": "https", "address": f"127.0.0.1:{tls_port}",
                                 "tls": {"certificateFile": cert, "privateKeyFile": key}})
        cfg["grpcRoutes"] = [
            {"name": "yages", "hostnames": ["grpc-example.com"], "rules": [{"backendRefs": [{"name": "grpc-be"}]}]},
            {"name": "grpc-dead", "hostnames": ["grpc-dead.example.com"],
             "rules": [{"backendRefs": [{"name": "grpc-dead"}]}]},
            {"name": "grpc-slow", "hostnames": ["grpc-slow.example.com"],
             "rules": [{"backendRefs": [{"name": "grpc-silent"}]}]},
        ]
        cfg["securityPolicies"] = [{
            "name": "jwt-example",
            "targetRefs": [{"kind": "HTTPRoute", "name": "foo"}, {"kind": "GRPCRoute", "name": "yages"}],
            "jwt": {"providers": [{"name": "example", "localJWKS": {"type": "File", "file": SEED_JWKS}}]},
        }]
        return cfg

    px = start_proxy_module(config)
    assert jgtest.wait_port(state["tls_port"])
    # (the silent socket is kept referenced for the module's lifetime)
    yield {"up": up, "px": px, "port": px.port, "tls_port": state["tls_port"], "log": log_path, "silent": silent}
    silent.close()


@pytest.fixture(autouse=True)
def _fresh(env):
    env["up"].reset()
    yield


def url(env, path, tls=False):
    return f"{'https' if tls else 'http'}://127.0.0.1:{env['tls_port'] if tls else env['port']}{path}"


def log_lines(env):
    with open(env["log"]) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def test_curl_prior_knowledge_get_reaches_upstream_as_the_same_request(env):
    m = jgtest.marker()
    rc, status, hdrs, body, version = h2util.curl_h2(url(env, f"/open/{m}?x=1&y=%20z"),
                                                      ["-H", "Host: www.example.com", "-H", "X-Custom: v1"])
    assert rc == 0 and version == "HTTP/2" and status == 200
    assert hdrs["x-upstream"] == "backend"
    rec = json.loads(body)
    assert rec["method"] == "GET" and rec["path"] == f"/open/{m}?x=1&y=%20z"
    assert header(rec, "host") == ["www.example.com"]
    assert header(rec, "x-custom") == ["v1"]
    assert header(rec, "x-forwarded-proto") == ["http"]
    assert header(rec, "x-forwarded-for") == ["127.0.0.1"]
    assert jgtest.UUID_RE.match(header(rec, "x-request-id")[0])
    lines = jgtest.wait_for(lambda: [e for e in log_lines(env) if m in json.dumps(e)])
    assert lines and "HTTP/2" in json.dumps(lines[0]) and "200" in json.dumps(lines[0])


@pytest.mark.parametrize("size", [1, 1000, 100000, 8 * MiB], ids=["1B", "1000B", "100kB", "8MiB"])
def test_request_body_arrives_intact(env, size):
    body = pattern(size)
    rc, status, _, out, version = h2util.curl_h2(url(env, f"/upload/{jgtest.marker()}"),
                                                  ["-H", "Host: www.example.com"], data=body)
    assert rc == 0 and version == "HTTP/2" and status == 200
    rec = json.loads(out)
    assert rec["method"] == "POST" and rec["state"] == "complete"
    assert rec["body_len"] == size and rec["body_sha256"] == sha256(body)


@pytest.mark.parametrize("path", ["/big/8388608", "/chunked/8388608"])
def test_large_response_body_arrives_intact(env, path):
    rc, status, _, out, version = h2util.curl_h2(url(env, path), ["-H", "Host: www.example.com"])
    assert rc == 0 and version == "HTTP/2" and status == 200
    assert len(out) == 8 * MiB and sha256(out) == sha256(pattern(8 * MiB))


def test_eight_mib_echo_both_ways(env):
    body = os.urandom(8 * MiB)
    rc, status, _, out, _ = h2util.curl_h2(url(env, "/echo-body"), ["-H", "Host: www.example.com"], data=body)
    assert rc == 0 and status == 200
    assert sha256(out) == sha256(body)


def test_concurrent_streams_on_one_connection(env):
    # 20 requests each held 300 ms by the upstream: served concurrently they take ~0.3 s, not 6 s.
    with h2util.H2Conn(env["port"], timeout=10) as c:
        t0 = time.monotonic()
        sids = [c.request(f"/slow/300?i={i}") for i in range(20)]
        for i, sid in enumerate(sids):
            r = c.response(sid, timeout=10)
            assert r["headers"][":status"] == "200"
            assert json.loads(bytes(r["data"]))["path"] == f"/slow/300?i={i}"
        assert time.monotonic() - t0 < 3.0
    assert len(env["up"].complete()) == 20


def test_new_stream_served_while_a_large_download_streams(env):
    # The proxy stops parsing a client's frames while its output towards it is full (bounded memory
    # against a client that does not read), and must resume between writes: a request sent on the
    # same connection during a 64 MiB download, read as fast as this client can, is answered long
    # before the download ends.
    size = 64 * MiB
    with h2util.H2Conn(env["port"], timeout=20, settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24}) as c:
        c.conn.increment_flow_control_window(1 << 24)
        c.flush()
        big = c.request(f"/big/{size}")
        assert c.wait(lambda c: len(c._stream(big)["data"]) >= 2 * MiB, timeout=10)
        t0 = time.monotonic()
        small = c.request("/status/200")
        r = c.response(small, timeout=10)
        waited = time.monotonic() - t0
        got_then = len(c.responses[big]["data"])
        assert r["headers"][":status"] == "200"
        assert got_then < size, "the download ended first: the test proves nothing"
        assert waited < 2.0, f"the new stream waited {waited:.2f} s behind the download"
        assert c.response(big, timeout=60)["data"] == pattern(size)


def test_nghttp_several_streams(env):
    p = subprocess.run(["nghttp", "-n", "-s", "-m", "8", "-H", ":authority: www.example.com",
                        url(env, "/big/100000")], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    # -s prints one line per finished stream ("responseEnd")
    assert p.stdout.decode().count("/big/100000") >= 8, p.stdout.decode()
    assert len(env["up"].complete()) == 8


def test_unknown_host_is_404_text(env):
    rc, status, hdrs, body, version = h2util.curl_h2(url(env, "/x"), ["-H", "Host: nowhere.example.org"])
    assert version == "HTTP/2" and status == 404
    assert hdrs["content-type"] == "text/plain"
    assert body == b"route not found\n"
    assert env["up"].snapshot() == []


def test_http1_still_works_on_the_same_port(env):
    r = get(env["port"], "/open/h1")
    assert r.status == 200 and r.version == "HTTP/1.1"
    assert r.json()["path"] == "/open/h1"


def test_http1_request_starting_like_the_preface_is_not_taken_for_http2(env):
    with jgtest.RawConn(env["port"]) as c:
        c.send(b"PRI / HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        r = c.read_response()
        assert r.status in (200, 400, 405)  # answered as HTTP/1.1, whatever the method verdict
        assert r.version == "HTTP/1.1"


def test_tls_alpn_h2(env):
    rc, status, _, out, version = h2util.curl_h2(url(env, "/open/tls", tls=True),
                                                  ["-H", "Host: www.example.com"], tls=True)
    assert rc == 0 and version == "HTTP/2" and status == 200
    rec = json.loads(out)
    assert header(rec, "x-forwarded-proto") == ["https"]


def test_tls_alpn_http11(env):
    rc, status, _, out, version = h2util.curl_h2(url(env, "/open/tls1", tls=True),
                                                  ["-H", "Host: www.example.com"], tls=True, http2=False)
    assert rc == 0 and version == "HTTP/1.1" and status == 200
    assert header(json.loads(out), "x-forwarded-proto") == ["https"]


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["alpn-http11", "no-alpn"])
def test_tls_http11_by_alpn_never_switches_to_http2_on_preface(env, alpn):
    # After the TLS handshake the protocol is decided (issue 10): only ALPN "h2" speaks HTTP/2. A client
    # that agreed on http/1.1 (or on nothing) and then sends the HTTP/2 preface is an HTTP/1.1 client
    # sending a bad request: an HTTP/1.1 error and close, never a SETTINGS frame.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", env["tls_port"]), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="www.example.com") as s:
            assert s.selected_alpn_protocol() == (alpn[0] if alpn else None)
            settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # empty SETTINGS frame
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings)
            got = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    d = s.recv(4096)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not d:
                    break
                got += d
    assert got.startswith(b"HTTP/1.1 4") or got.startswith(b"HTTP/1.1 5"), got[:64]


def test_tls_h2_large_body_both_ways(env):
    body = pattern(2 * MiB)
    rc, status, _, out, version = h2util.curl_h2(url(env, "/echo-body", tls=True), ["-H", "Host: www.example.com"],
                                                  data=body, tls=True)
    assert rc == 0 and version == "HTTP/2" and status == 200 and sha256(out) == sha256(body)


def test_http_denial_has_401_text_and_www_authenticate(env):
    rc, status, hdrs, body, version = h2util.curl_h2(url(env, "/foo"), ["-H", "Host: www.example.com"])
    assert version == "HTTP/2" and status == 401
    assert body == b"Jwt is missing"
    assert hdrs["www-authenticate"].startswith('Bearer realm="http://www.example.com/foo"')
    assert env["up"].snapshot() == []


def grpc_call(env, authority, path="/yages.Echo/Ping", headers=()):
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request(path, method="POST", authority=authority,
                        headers=[("content-type", "application/grpc"), ("te", "trailers")] + list(headers),
                        body=b"\x00\x00\x00\x00\x00")
        return c.response(sid)


def test_grpc_missing_token_is_trailers_only_unauthenticated(env):
    r = grpc_call(env, "grpc-example.com")
    h = r["headers"]
    assert r["ended"] and r["data"] == b"" and r["trailers"] is None  # one HEADERS frame, END_STREAM
    assert h[":status"] == "200"
    assert h["content-type"] == "application/grpc"
    assert h["grpc-status"] == "16"
    assert h["grpc-message"] == "Jwt%20is%20missing"
    assert env["up"].snapshot() == []


def test_grpc_upstream_unreachable_is_unavailable(env):
    r = grpc_call(env, "grpc-dead.example.com")
    assert r["headers"][":status"] == "200" and r["headers"]["grpc-status"] == "14"


def test_grpc_upstream_timeout_is_deadline_exceeded(env):
    r = grpc_call(env, "grpc-slow.example.com")
    assert r["headers"][":status"] == "200" and r["headers"]["grpc-status"] == "4"


def test_http_upstream_unreachable_is_502(env):
    rc, status, hdrs, body, _ = h2util.curl_h2(url(env, "/x"), ["-H", "Host: dead.example.com"])
    assert status == 502 and hdrs["content-type"] == "text/plain"


def test_http_upstream_timeout_is_504(env):
    rc, status, _, _, _ = h2util.curl_h2(url(env, "/hang"), ["-H", "Host: slow.example.com"])
    assert status == 504


def test_upstream_failure_mid_response_resets_the_stream(env):
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request("/truncate/200000")
        r = c.response(sid)
        assert r["headers"][":status"] == "200"
        assert r["reset"] == 2  # INTERNAL_ERROR
        # the connection stays usable
        sid2 = c.request("/open/after-reset")
        assert c.response(sid2)["headers"][":status"] == "200"


def test_client_reset_cancels_the_upstream_exchange(env):
    m = jgtest.marker()
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request(f"/slow/2000?{m}")
        assert jgtest.wait_for(lambda: env["up"].matching(m))
        c.conn.reset_stream(sid)
        c.flush()
        sid2 = c.request("/open/next")
        assert c.response(sid2)["headers"][":status"] == "200"
    lines = jgtest.wait_for(lambda: [e for e in log_lines(env) if m in json.dumps(e)])
    assert lines and lines[0]["status"] == 499


def test_head_request_has_no_body(env):
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request("/big/5000", method="HEAD")
        r = c.response(sid)
        assert r["headers"][":status"] == "200" and r["headers"]["content-length"] == "5000"
        assert r["data"] == b""


def test_cookie_fields_are_joined_for_the_upstream(env):
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request("/open/cookie", headers=[("cookie", "a=1"), ("cookie", "b=2")])
        rec = json.loads(bytes(c.response(sid)["data"]))
    assert header(rec, "cookie") == ["a=1; b=2"]


def test_host_differing_from_authority_is_refused(env):
    with h2util.H2Conn(env["port"], raw=True) as c:
        sid = c.request("/open/x", headers=[("host", "evil.example.com")])
        assert c.response(sid)["headers"][":status"] == "400"
    assert env["up"].snapshot() == []


def test_graceful_drain_finishes_in_flight_streams(make_upstream, start_proxy):
    up = make_upstream("drain")
    px = start_proxy(lambda port: jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()],
                                                     workers=1))
    with h2util.RawH2(px.port, timeout=10) as c:
        goaways = []
        c._on_goaway_seen = goaways
        c.send(c.headers_frame(1, c.request_headers("/slow/1500")))
        assert jgtest.wait_for(lambda: up.snapshot())
        px.signal(signal.SIGTERM)
        # first the shutdown notice (last stream 2^31-1), the in-flight response, then the final GOAWAY
        assert c.wait(lambda x: x.goaway is not None)
        assert c.goaway == (0, 2**31 - 1)
        assert c.wait(lambda x: 1 in x.ended, timeout=10)
        assert c.headers[1][0][":status"] == "200"
        assert json.loads(c.data[1])["path"] == "/slow/1500"
        assert c.wait(lambda x: x.goaway == (0, 1), timeout=5)
        assert c.wait(lambda x: x.closed, timeout=5)
    assert px.wait(10) == 0
