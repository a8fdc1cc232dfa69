"""Large HTTP/1.1 bodies on the direct-send path (issue 13): a sized body is sent from the buffer the
parser found it in while nothing is queued, and copied into the output buffer only when the socket does
not take it all. These tests drive the switches between the two (slow readers, peers that go away
mid-body, a pipelined request right behind a body) and check that every byte arrives, once, in order."""

import socket
import time

import pytest

import jgtest
from jgtest import RawConn, pattern, sha256

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    up = make_upstream_module("backend")
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1))
    return {"up": up, "px": px, "port": px.port}


@pytest.fixture(autouse=True)
def _fresh(env):
    env["up"].reset()
    yield


def healthy(port):
    """The proxy still serves a large sized download and upload, intact."""
    with RawConn(port, timeout=30) as c:
        r = c.request("GET", "/big/%d" % (4 * MiB))
        assert r.status == 200 and sha256(r.body) == sha256(pattern(4 * MiB))
        body = pattern(3 * MiB + 7)
        r = c.request("POST", "/up-after", body=body)
        assert r.status == 200 and r.json()["body_sha256"] == sha256(body)


def test_slow_reader_gets_a_sized_download_intact(env):
    """The client reads slowly at first (a 16 KiB receive buffer, pauses): direct sends come back
    partial, the rest is queued, the upstream is paused and resumed; then it reads fast."""
    size = 24 * MiB
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    s.settimeout(30)
    s.connect(("127.0.0.1", env["port"]))
    try:
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % size)
        buf = bytearray()
        deadline = time.monotonic() + 60
        slow_until = time.monotonic() + 1.5
        while True:
            if b"\r\n\r\n" in buf:
                head_len = buf.index(b"\r\n\r\n") + 4
                if len(buf) >= head_len + size:
                    break
            assert time.monotonic() < deadline, "download did not finish"
            if time.monotonic() < slow_until:
                time.sleep(0.02)
                chunk = s.recv(4096)
            else:
                chunk = s.recv(1 << 20)
            assert chunk, "closed after %d bytes" % len(buf)
            buf += chunk
        head = bytes(buf[:head_len])
        assert head.startswith(b"HTTP/1.1 200")
        assert b"content-length: %d" % size in head.lower()
        assert len(buf) == head_len + size, "bytes beyond the body"
        assert sha256(bytes(buf[head_len:])) == sha256(pattern(size))
        # the same connection goes on
        s.sendall(b"GET /again HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        c = RawConn.__new__(RawConn)
        c.sock, c.buf, c.timeout = s, bytearray(), 10
        assert c.read_response().json()["path"] == "/again"
    finally:
        s.close()


def test_sized_download_then_pipelined_request(env):
    size = 8 * MiB
    with RawConn(env["port"], timeout=30) as c:
        c.send(b"GET /big/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n"
               b"GET /second HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % size)
        r1 = c.read_response()
        assert r1.status == 200 and len(r1.body) == size
        assert sha256(r1.body) == sha256(pattern(size))
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["path"] == "/second"


def test_sized_upload_then_pipelined_request(env):
    body = pattern(8 * MiB + 3)
    with RawConn(env["port"], timeout=30) as c:
        c.send(b"POST /first HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: %d\r\n\r\n" % len(body)
               + body + b"GET /second HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        r1 = c.read_response()
        assert r1.status == 200
        rec = r1.json()
        assert rec["path"] == "/first" and rec["body_len"] == len(body)
        assert rec["body_sha256"] == sha256(body)
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["path"] == "/second"


def test_keepalive_reuse_after_sized_bodies_both_ways(env):
    """One client connection, sized bodies both ways in turn: every body intact, and the proxy keeps
    using one pooled upstream connection (each exchange ended at its body's last byte)."""
    with RawConn(env["port"], timeout=30) as c:
        for i in range(4):
            size = (2 + i) * MiB + i
            r = c.request("GET", "/big/%d" % size)
            assert r.status == 200 and sha256(r.body) == sha256(pattern(size))
            body = pattern(size + 1)
            r = c.request("POST", "/up/%d" % i, body=body)
            assert r.status == 200 and r.json()["body_sha256"] == sha256(body)
    recs = env["up"].snapshot()
    assert len(recs) == 8 and all(r["state"] == "complete" for r in recs)
    assert len({r["conn_id"] for r in recs}) == 1, [r["conn_id"] for r in recs]


def test_upstream_closes_mid_sized_body(env):
    """The upstream announces 8 MiB and closes after 4: the client must not get a complete response,
    and the proxy goes on."""
    n = 8 * MiB
    with RawConn(env["port"], timeout=30) as c:
        c.send(b"GET /truncate/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % n)
        try:
            r = c.read_response(timeout=20)
        except jgtest.Closed as e:
            r = None
            assert len(e.args[0]) < n, "more than the upstream sent"
        if r is not None:
            assert r.status == 502, r  # never a short 200 passed as complete
    healthy(env["port"])


def test_client_closes_mid_sized_download(env):
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", env["port"]), timeout=10)
        try:
            s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % (64 * MiB))
            got = 0
            while got < MiB:
                chunk = s.recv(65536)
                assert chunk
                got += len(chunk)
        finally:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # RST with bytes unread
    healthy(env["port"])


def test_client_closes_mid_sized_upload(env):
    size = 16 * MiB
    s = socket.create_connection(("127.0.0.1", env["port"]), timeout=10)
    try:
        s.sendall(b"POST /cut HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: %d\r\n\r\n" % size
                  + pattern(2 * MiB))
        time.sleep(0.3)
    finally:
        s.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recs = [r for r in env["up"].snapshot() if r["path"] == "/cut"]
        if recs and recs[0]["state"] != "head":
            break
        time.sleep(0.1)
    recs = [r for r in env["up"].snapshot() if r["path"] == "/cut"]
    assert len(recs) == 1
    assert recs[0]["state"] != "complete", "an upload cut short reached the upstream as complete"
    healthy(env["port"])
