"""HTTP/1.1 reverse proxy core: what a client sends reaches the upstream intact, and back."""

import json
import os
import re
import threading
import time

import pytest

import jgtest
from jgtest import RawConn, get, header, pattern, sha256

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    logdir = tmp_path_factory.mktemp("accesslog")
    log_path = os.path.join(str(logdir), "access.log")
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        accessLog={"path": log_path, "format": "text"}))
    return {"up": up, "px": px, "port": px.port, "log": log_path}


@pytest.fixture(autouse=True)
def _fresh(env):
    env["up"].reset()
    yield


def only(up):
    reqs = up.snapshot()
    assert len(reqs) == 1, reqs
    return reqs[0]


def test_get_forwards_method_path_query_and_host(env):
    r = get(env["port"], "/foo/bar?x=1&y=%20z", headers=[("X-Custom", "v1")])
    assert r.status == 200
    assert r.header("X-Upstream") == "backend"  # upstream response headers relayed
    rec = r.json()
    assert rec["method"] == "GET"
    assert rec["path"] == "/foo/bar?x=1&y=%20z"
    assert header(rec, "host") == ["www.example.com"]
    assert header(rec, "x-custom") == ["v1"]
    assert only(env["up"])["state"] == "complete"


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("size", [1, 1000, 8 * MiB], ids=["1B", "1000B", "8MiB"])
def test_sized_request_body_arrives_intact(env, method, size):
    body = pattern(size)
    with RawConn(env["port"], timeout=30) as c:
        r = c.request(method, "/upload", body=body)
    assert r.status == 200
    rec = r.json()
    assert rec["method"] == method
    assert rec["body_len"] == size
    assert rec["body_sha256"] == sha256(body)


@pytest.mark.parametrize("size", [5, 100000, 8 * MiB], ids=["5B", "100kB", "8MiB"])
def test_chunked_request_body_arrives_intact(env, size):
    body = pattern(size)
    step = 65536 if size > 65536 else max(1, size // 3)
    chunks = b"".join(b"%x\r\n" % len(body[i:i + step]) + body[i:i + step] + b"\r\n"
                      for i in range(0, size, step))
    with RawConn(env["port"], timeout=30) as c:
        c.send(b"POST /chunked-upload HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
               + chunks + b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        rec = r.json()
        assert rec["body_len"] == size
        assert rec["body_sha256"] == sha256(body)
        # the connection stays usable: the terminating chunk was consumed exactly
        assert c.request("GET", "/after").json()["path"] == "/after"


def test_chunked_request_body_with_extension_and_trailer(env):
    with RawConn(env["port"]) as c:
        c.send(b"POST /ext HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_sha256"] == sha256(b"hello world")
        assert c.request("GET", "/next").status == 200


@pytest.mark.parametrize("size", [0, 1, 70000, 8 * MiB], ids=["0B", "1B", "70kB", "8MiB"])
def test_sized_response_body(env, size):
    with RawConn(env["port"], timeout=30) as c:
        r = c.request("GET", f"/big/{size}")
        assert r.status == 200
        assert r.header("Content-Length") == str(size)
        assert len(r.body) == size
        assert sha256(r.body) == sha256(pattern(size))
        assert c.request("GET", "/again").status == 200


@pytest.mark.parametrize("size", [10, 300000, 8 * MiB], ids=["10B", "300kB", "8MiB"])
def test_chunked_response_body(env, size):
    with RawConn(env["port"], timeout=30) as c:
        r = c.request("GET", f"/chunked/{size}")
        assert r.status == 200
        assert len(r.body) == size
        assert sha256(r.body) == sha256(pattern(size))
        # never both framings at once towards the client
        assert not (r.header("Content-Length") is not None and r.header("Transfer-Encoding") is not None)
        assert c.request("GET", "/again").status == 200


def test_echo_body_round_trip(env):
    body = os.urandom(200000)
    with RawConn(env["port"]) as c:
        r = c.request("POST", "/echo-body", body=body)
    assert r.status == 200
    assert r.body == body


def test_head_keeps_content_length_and_sends_no_body(env):
    with RawConn(env["port"]) as c:
        r = c.request("HEAD", "/big/12345")
        assert r.status == 200
        assert r.header("Content-Length") == "12345"
        # If the proxy had sent body bytes, they would be parsed as the next response's status line.
        r2 = c.request("GET", "/after-head")
        assert r2.status == 200
        assert r2.json()["path"] == "/after-head"
    assert [q["method"] for q in env["up"].snapshot()] == ["HEAD", "GET"]


def test_expect_100_continue(env):
    body = pattern(5000)
    with RawConn(env["port"]) as c:
        c.send("POST /expect HTTP/1.1\r\nHost: www.example.com\r\nExpect: 100-continue\r\n"
               f"Content-Length: {len(body)}\r\n\r\n")
        interim = c.read_response(allow_1xx=True, timeout=3)
        assert interim.status == 100, "client must get 100 Continue before sending the body"
        c.send(body)
        r = c.read_response()
        assert r.status == 200
        rec = r.json()
        assert rec["body_len"] == len(body)
        assert rec["body_sha256"] == sha256(body)


def test_keepalive_many_requests_one_connection_and_upstream_pooling(env):
    n = 30
    with RawConn(env["port"]) as c:
        for i in range(n):
            r = c.request("GET", f"/ka/{i}")
            assert r.status == 200
            assert r.json()["path"] == f"/ka/{i}"
    reqs = env["up"].snapshot()
    assert len(reqs) == n
    conns = {q["conn_id"] for q in reqs}
    assert len(conns) <= n // 2, f"upstream connections not reused: {len(conns)} connections for {n} requests"


def test_upstream_pool_shared_across_client_connections(env):
    n = 10
    for i in range(n):
        r = get(env["port"], f"/sep/{i}", headers=[("Connection", "close")])
        assert r.status == 200
    conns = {q["conn_id"] for q in env["up"].snapshot()}
    assert len(conns) < n, "each client connection opened its own upstream connection: no pooling"


def test_pipelined_requests_answered_in_order(env):
    with RawConn(env["port"]) as c:
        c.send(b"GET /slow/300 HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
               b"POST /second HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 3\r\n\r\nabc"
               b"GET /big/7 HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
               b"GET /status/201 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        r1 = c.read_response()
        r2 = c.read_response()
        r3 = c.read_response()
        r4 = c.read_response()
    assert (r1.status, r1.json()["path"]) == (200, "/slow/300")
    assert (r2.status, r2.json()["path"], r2.json()["body_len"]) == (200, "/second", 3)
    assert (r3.status, r3.body) == (200, pattern(7))
    assert (r4.status, r4.json()["path"]) == (201, "/status/201")


def test_http10_client_gets_compatible_response_and_close(env):
    with RawConn(env["port"]) as c:
        c.send(b"GET /chunked/5000 HTTP/1.0\r\nHost: www.example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.version in ("HTTP/1.0", "HTTP/1.1")
        te = r.header("Transfer-Encoding")
        assert te is None, "chunked sent to an HTTP/1.0 client"
        assert r.body == pattern(5000)
        assert c.is_closed(2.0), "HTTP/1.0 connection without keep-alive must be closed"


def test_http10_keepalive_honoured(env):
    with RawConn(env["port"]) as c:
        c.send(b"GET /big/100 HTTP/1.0\r\nHost: www.example.com\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 200
        assert r.body == pattern(100)
        assert (r.header("Connection") or "").lower() == "keep-alive"
        c.send(b"GET /second HTTP/1.0\r\nHost: www.example.com\r\nConnection: keep-alive\r\n\r\n")
        r2 = c.read_response(timeout=3)
        assert r2.status == 200
        assert r2.json()["path"] == "/second"


def test_http10_without_host(env):
    # HTTP/1.0 does not require Host; the catch-all route (no hostnames) serves it.
    with RawConn(env["port"]) as c:
        c.send(b"GET /nohost HTTP/1.0\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    assert r.json()["path"] == "/nohost"


def test_hop_by_hop_request_headers_not_forwarded(env):
    r = get(env["port"], "/hop", headers=[
        ("Connection", "keep-alive, X-Custom-Hop"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "gzip"),
        ("Upgrade", "foo/1"),
        ("Proxy-Connection", "keep-alive"),
        ("X-Custom-Hop", "secret"),
        ("X-Normal", "kept"),
    ])
    assert r.status == 200
    rec = r.json()
    names = [k.lower() for k, _ in rec["headers"]]
    for h in ("keep-alive", "upgrade", "proxy-connection", "x-custom-hop"):
        assert h not in names, f"hop-by-hop header {h} forwarded: {rec['headers']}"
    assert all(v.lower() == "trailers" for v in header(rec, "te")), "TE other than trailers forwarded"
    for v in header(rec, "connection"):  # the proxy may speak for its own hop (keep-alive/close)
        assert "x-custom-hop" not in v.lower()
        assert v.lower().strip() in ("keep-alive", "close")
    assert header(rec, "x-normal") == ["kept"]


def test_hop_by_hop_response_headers_not_relayed(env):
    r = get(env["port"], "/hop-response")
    assert r.status == 200
    names = [k.lower() for k, _ in r.headers]
    assert "x-up-hop" not in names
    assert r.header("Keep-Alive") != "timeout=99"
    assert "x-up-hop" not in (r.header("Connection") or "").lower()
    assert r.header("X-Up-Normal") == "kept"


def test_x_forwarded_for_and_proto(env):
    rec = get(env["port"], "/xff").json()
    assert header(rec, "x-forwarded-for") == ["127.0.0.1"]
    assert header(rec, "x-forwarded-proto") == ["http"]


def test_x_forwarded_for_appends_client_ip(env):
    rec = get(env["port"], "/xff", headers=[("X-Forwarded-For", "203.0.113.7")]).json()
    xff = header(rec, "x-forwarded-for")
    assert len(xff) == 1
    parts = [p.strip() for p in xff[0].split(",")]
    assert parts[-1] == "127.0.0.1"
    assert "203.0.113.7" in parts


def test_x_forwarded_proto_not_spoofable(env):
    rec = get(env["port"], "/xfp", headers=[("X-Forwarded-Proto", "https")]).json()
    assert header(rec, "x-forwarded-proto") == ["http"]


def test_request_id_generated_when_absent(env):
    ids = []
    for i in range(3):
        rec = get(env["port"], f"/rid/{i}").json()
        vals = header(rec, "x-request-id")
        assert len(vals) == 1
        assert jgtest.UUID_RE.match(vals[0]), vals[0]
        ids.append(vals[0])
    assert len(set(ids)) == 3, "request ids must be unique"


def test_request_id_kept_when_present(env):
    rec = get(env["port"], "/rid", headers=[("X-Request-Id", "my-own-id-42")]).json()
    assert header(rec, "x-request-id") == ["my-own-id-42"]


def test_1xx_from_upstream_then_final_response(env):
    with RawConn(env["port"]) as c:
        r = c.request("GET", "/headers-1xx")
        assert r.status == 200
        assert r.json()["path"] == "/headers-1xx"
        for i in r.interim:  # relaying 103 is allowed; anything relayed must be that 103
            assert i.status == 103
            assert i.header("Link") == "</style.css>; rel=preload"
        r2 = c.request("GET", "/after-1xx")
        assert r2.status == 200 and r2.json()["path"] == "/after-1xx"


def test_status_codes_relayed(env):
    for code in (201, 204, 301, 404, 418, 500, 503):
        r = get(env["port"], f"/status/{code}")
        assert r.status == code
        if code == 204:
            assert r.body == b""


def test_access_log_line(env):
    marker = "m%d" % time.monotonic_ns()
    r = get(env["port"], f"/status/418?marker={marker}", method="GET")
    assert r.status == 418

    def line():
        try:
            with open(env["log"]) as f:
                for ln in f:
                    if marker in ln:
                        return ln
        except OSError:
            return None
        return None

    ln = jgtest.wait_for(line, 3.0)
    assert ln, f"no access log line with {marker} in {env['log']}"
    assert "GET" in ln
    assert "/status/418" in ln
    assert re.search(r"\b418\b", ln)


def test_connection_close_honoured(env):
    with RawConn(env["port"]) as c:
        r = c.request("GET", "/bye", headers=[("Connection", "close")])
        assert r.status == 200
        assert c.is_closed(2.0), "Connection: close from the client must close after the response"


def test_many_pipelined_requests_in_one_write(env):
    n = 100
    data = b"".join(b"GET /pipe/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % i for i in range(n))
    with RawConn(env["port"], timeout=10) as c:
        c.send(data)
        for i in range(n):
            r = c.read_response()
            assert r.status == 200
            assert r.json()["path"] == f"/pipe/{i}"
    assert len(env["up"].complete()) == n


def test_slow_client_response_buffering_is_bounded(env):
    # A client that does not read while the upstream sends 32 MiB: the proxy must apply backpressure
    # (bounded buffers) rather than hold the whole response in memory.
    size = 32 * MiB
    pid = env["px"].proc.pid
    # Let what earlier tests of this module started (large transfers, deferred frees) settle first, so
    # that the growth measured below is this request's alone.
    time.sleep(0.5)
    before = jgtest.rss_kib(pid)
    with RawConn(env["port"], timeout=30) as c:
        c.sock.setsockopt(jgtest.socket.SOL_SOCKET, jgtest.socket.SO_RCVBUF, 65536)
        c.send(b"GET /big/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % size)
        time.sleep(1.5)  # upstream writes as fast as it may; the client reads nothing
        grown = jgtest.rss_kib(pid) - before
        assert grown < 16 * 1024, f"proxy RSS grew by {grown} KiB while the client was not reading"
        r = c.read_response(timeout=30)
        assert r.status == 200
        assert len(r.body) == size
        assert sha256(r.body) == sha256(pattern(size))


def test_concurrent_large_chunked_responses_arrive_whole(env):
    # Regression: with many slow clients the upstream parser pauses and resumes often; llhttp then
    # reported zero-length body pieces, which the client side framed as "0\r\n\r\n" and so ended
    # chunked bodies early (truncated 8 MiB responses that still looked complete).
    import threading

    size = 8 * MiB
    bad = []

    def one():
        with RawConn(env["port"], timeout=30) as c:
            r = c.request("GET", "/chunked/%d" % size, host="www.example.com")
            if r.status != 200 or len(r.body) != size or sha256(r.body) != sha256(pattern(size)):
                bad.append((r.status, len(r.body)))

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bad == [], bad
