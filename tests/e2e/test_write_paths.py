"""The response write paths and the lazy deadline timers.

On a plain client socket the proxy holds the final response head back: when the whole sized body
arrives in the same upstream read, head and body leave in one sendmsg straight from memory (what the
socket does not take is queued and written when it is writable); otherwise the head is queued before
any body byte and a deferred flush writes it. These tests check that a head is never held back until
a late body, that bodyless and empty-bodied responses still get their head out with correct framing,
and that responses stay complete and in order when the client's socket is full and writes are partial.

The header, idle keep-alive, upstream request and pooled-upstream idle timeouts are lazy timers that
record a new deadline and re-arm when their event fires early; upstream exchanges are recycled per
worker. The timer tests move each deadline many times and check that it fires neither early nor
never.
"""

import socket
import struct
import threading
import time

import pytest

import jgtest
from jgtest import RawConn, RawUpstream, pattern

HOST = "www.example.com"


# ---------------------------------------------------------------------------------------------------
# helpers

@pytest.fixture
def raw_upstream():
    made = []

    def make(handler):
        u = RawUpstream(handler)
        made.append(u)
        return u

    yield make
    for u in made:
        u.stop()


def proxy_for(start_proxy, port, backend=None, **top):
    """A one-worker proxy routing everything to the upstream on port (backend: extra backend keys)."""
    spec = {"endpoints": [{"ip": {"address": "127.0.0.1", "port": port}}]}
    spec.update(backend or {})
    return start_proxy(lambda lp: jgtest.base_config(lp, {"backend": spec}, [jgtest.catch_all_route()],
                                                     workers=1, **top))


def request_bytes(path, method="GET"):
    return f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()


def read_head_within(c, timeout):
    """Reads up to and including the blank line ending a response head (socket.timeout if it is not
    complete within timeout seconds)."""
    return c._read_until(b"\r\n\r\n", time.monotonic() + timeout)


class SmallBufConn(RawConn):
    """A RawConn whose receive buffer is set small before connecting, so that a client that does not
    read makes the proxy's writes partial (then EAGAIN) quickly."""

    def __init__(self, port, rcvbuf=8192, timeout=15.0):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s
        self.buf = bytearray()
        self.timeout = timeout


def ok_response(body=b"ok", extra=b""):
    return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
            + extra + b"\r\n" + body)


# ---------------------------------------------------------------------------------------------------
# 1. A head is written before a late body

BODY_DELAY = 1.5


@pytest.mark.parametrize("framing", ["sized", "sized-partial", "chunked"])
def test_head_reaches_client_before_delayed_body(raw_upstream, start_proxy, framing):
    n = 20000
    body = pattern(n)
    early = 1000 if framing == "sized-partial" else 0

    def handler(sock, head):
        if head.startswith(b"GET /after"):
            sock.sendall(ok_response(b"after"))
            return True
        if framing == "chunked":
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            time.sleep(BODY_DELAY)
            sock.sendall(b"%x\r\n" % n + body + b"\r\n0\r\n\r\n")
        else:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % n + body[:early])
            time.sleep(BODY_DELAY)
            sock.sendall(body[early:])
        return False  # close after the body

    up = raw_upstream(handler)
    px = proxy_for(start_proxy, up.port)
    with RawConn(px.port, timeout=5) as c:
        start = time.monotonic()
        c.send(request_bytes("/delayed"))
        try:
            head = read_head_within(c, 0.8)
        except socket.timeout:
            raise AssertionError(f"{framing}: no complete response head within 0.8 s although the upstream "
                                 f"sent it at once (body {BODY_DELAY} s later); got {bytes(c.buf)!r}\n"
                                 + px.logs())
        assert head.startswith(b"HTTP/1.1 200"), head
        assert len(c.buf) <= early, \
            f"{framing}: {len(c.buf)} bytes after the head before the rest of the body was sent"
        # Put the head back and parse the whole response normally.
        c.buf[:0] = head
        r = c.read_response(timeout=5)
        elapsed = time.monotonic() - start
        assert r.status == 200
        assert r.body == body, f"{framing}: body differs (len {len(r.body)} vs {n})"
        assert elapsed >= BODY_DELAY - 0.3, f"body complete after {elapsed:.2f} s, before it was sent?"
        if framing != "chunked":
            assert r.header("Content-Length") == str(n)
        # The client connection stays usable: framing was exact.
        r2 = c.request("GET", "/after")
        assert (r2.status, r2.body) == (200, b"after"), r2


# ---------------------------------------------------------------------------------------------------
# 2. An empty chunked body

@pytest.mark.parametrize("split", [False, True], ids=["one-write", "head-then-end"])
def test_empty_chunked_response_keeps_connection_usable(raw_upstream, start_proxy, split):
    def handler(sock, head):
        if head.startswith(b"GET /empty-chunked"):
            h = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            if split:
                sock.sendall(h)
                time.sleep(0.2)
                sock.sendall(b"0\r\n\r\n")
            else:
                sock.sendall(h + b"0\r\n\r\n")
        else:
            sock.sendall(ok_response(b"second:" + head.split(b" ")[1]))
        return True

    up = raw_upstream(handler)
    px = proxy_for(start_proxy, up.port)
    with RawConn(px.port, timeout=5) as c:
        for i in range(3):
            r = c.request("GET", f"/empty-chunked/{i}")
            assert r.status == 200, r
            assert r.body == b"", r
            assert r.header("Content-Length") in (None, "0"), r
            r2 = c.request("GET", f"/next/{i}")
            assert (r2.status, r2.body) == (200, b"second:/next/%d" % i), \
                f"request after an empty chunked response: {r2}"
        assert c.buf == b"", f"stray bytes after the responses: {bytes(c.buf)!r}"


def test_empty_chunked_response_pipelined(raw_upstream, start_proxy):
    def handler(sock, head):
        if head.startswith(b"GET /empty-chunked"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        else:
            sock.sendall(ok_response(head.split(b" ")[1]))
        return True

    up = raw_upstream(handler)
    px = proxy_for(start_proxy, up.port)
    paths = [f"/empty-chunked/{i}" if i % 2 == 0 else f"/sized/{i}" for i in range(20)]
    with RawConn(px.port, timeout=5) as c:
        c.send(b"".join(request_bytes(p) for p in paths))
        for p in paths:
            r = c.read_response()
            assert r.status == 200, (p, r)
            expect = b"" if p.startswith("/empty-chunked") else p.encode()
            assert r.body == expect, f"response for {p}: {r}"


# ---------------------------------------------------------------------------------------------------
# Module proxy in front of jgtest.Upstream (bodyless and pipelined responses)

@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    up = make_upstream_module("backend")
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1))
    return {"up": up, "px": px, "port": px.port}


@pytest.fixture
def _fresh(env):
    env["up"].reset()
    yield


# 3. Bodyless responses

@pytest.mark.parametrize("method,path,status", [
    ("GET", "/status/204", 204),
    ("GET", "/status/304", 304),
    ("HEAD", "/big/12345", 200),
    ("HEAD", "/chunked/5000", 200),
    ("GET", "/big/0", 200),
], ids=["204", "304", "HEAD-sized", "HEAD-chunked", "zero-length"])
def test_bodyless_response_then_get_on_same_connection(env, _fresh, method, path, status):
    with RawConn(env["port"], timeout=5) as c:
        for i in range(3):
            c.send(request_bytes(path, method))
            r = c.read_response(method, timeout=3)
            assert r.status == status, r
            assert r.body == b""
            if path == "/big/12345":
                assert r.header("Content-Length") == "12345", r
            r2 = c.request("GET", f"/after-bodyless/{i}", timeout=3)
            assert r2.status == 200, f"GET after {method} {path}: {r2}"
            assert r2.json()["path"] == f"/after-bodyless/{i}", r2
        # Nothing extra may follow (a body sent for a bodyless response would show up here).
        assert not c.readable(0.2) and c.buf == b"", f"stray bytes: {bytes(c.buf)!r}"


def test_bodyless_responses_pipelined(env, _fresh):
    reqs = [("GET", "/status/204"), ("GET", "/p/1"), ("GET", "/status/304"), ("GET", "/p/2"),
            ("HEAD", "/big/777"), ("GET", "/p/3"), ("GET", "/big/0"), ("GET", "/big/5")]
    with RawConn(env["port"], timeout=5) as c:
        c.send(b"".join(request_bytes(p, m) for m, p in reqs))
        got = [c.read_response(m) for m, _ in reqs]
        assert not c.readable(0.2) and c.buf == b"", f"stray bytes: {bytes(c.buf)!r}"
    assert [r.status for r in got] == [204, 200, 304, 200, 200, 200, 200, 200]
    assert [got[i].json()["path"] for i in (1, 3, 5)] == ["/p/1", "/p/2", "/p/3"]
    assert got[4].header("Content-Length") == "777" and got[4].body == b""
    assert got[6].body == b"" and got[7].body == pattern(5)


# 4, 5. Pipelined responses to a client that does not read for a while

def pipelined_sizes_read_back(port, sizes, stall=1.0):
    """Sends GET /big/N for every size in one write, reads nothing for `stall` seconds, then reads all
    responses and checks every one (status, length, content) in order."""
    with SmallBufConn(port) as c:
        c.send(b"".join(request_bytes(f"/big/{n}") for n in sizes))
        time.sleep(stall)
        for i, n in enumerate(sizes):
            try:
                r = c.read_response(timeout=10)
            except (jgtest.Closed, socket.timeout) as e:
                raise AssertionError(f"response {i} of {len(sizes)} (size {n}) not received: {e!r}")
            assert r.status == 200, f"response {i}: {r}"
            assert r.header("Content-Length") == str(n), f"response {i}: expected size {n}, got {r}"
            assert len(r.body) == n and r.body == pattern(n), \
                f"response {i} (size {n}): body differs (length {len(r.body)})"
        assert not c.readable(0.2) and c.buf == b"", \
            f"stray bytes after the last response: {bytes(c.buf)[:200]!r}"


def test_pipelined_large_responses_to_stalled_client(env, _fresh):
    # ~15 KB each (head and body fit one upstream read, so each is a candidate for the direct write),
    # all different so that order shows. 400 of them, ~6 MB: on loopback the kernel takes ~3 MB
    # (tcp_wmem up to 4 MB) before a direct write comes back partial and the rest is queued.
    sizes = [15000 + i for i in range(400)]
    pipelined_sizes_read_back(env["port"], sizes)
    assert [r["path"] for r in env["up"].snapshot()] == [f"/big/{n}" for n in sizes]


def test_pipelined_mixed_sizes_to_stalled_client(env, _fresh):
    # Small, sized-in-one-read and multi-read (70 KB: queued, with the upstream paused above the
    # output high mark) responses in turn; 360 of them, ~5.4 MB, so that the socket fills up.
    cycle = [1, 100, 4000, 15000, 70000, 0]
    sizes = [cycle[i % len(cycle)] + i // len(cycle) for i in range(360)]
    pipelined_sizes_read_back(env["port"], sizes)
    assert [r["path"] for r in env["up"].snapshot()] == [f"/big/{n}" for n in sizes]


@pytest.mark.parametrize("mixed", [False, True], ids=["15KB", "mixed"])
def test_pipelined_client_resumes_reading_while_proxy_answers(env, _fresh, mixed):
    """The client stalls until ~4.5 MB of answers are on their way (more than the kernel takes), then
    reads while the proxy is still answering: output queued behind a full socket drains while new
    responses arrive, so direct writes, partial writes and appends behind queued bytes interleave."""
    cycle = [1, 100, 4000, 15000, 70000, 0]
    if mixed:
        sizes = [cycle[i % len(cycle)] + i // len(cycle) for i in range(900)]
    else:
        sizes = [15000 + i for i in range(800)]
    up = env["up"]
    with SmallBufConn(env["port"]) as c:
        c.send(b"".join(request_bytes(f"/big/{n}") for n in sizes))
        # Stall until ~4.5 MB were answered, or until the proxy stops forwarding (a large response
        # paused above the output high mark holds the connection's later requests back).
        seen, quiet_since = 0, time.monotonic()
        while True:
            n = len(up.snapshot())
            if n != seen:
                seen, quiet_since = n, time.monotonic()
            if n >= 300 or time.monotonic() - quiet_since > 0.3:
                break
            time.sleep(0.02)
        assert seen >= 100, f"only {seen} requests forwarded before the client read anything"
        for i, n in enumerate(sizes):
            try:
                r = c.read_response(timeout=10)
            except (jgtest.Closed, socket.timeout) as e:
                raise AssertionError(f"response {i} of {len(sizes)} (size {n}) not received: {e!r}")
            assert r.status == 200 and r.header("Content-Length") == str(n), \
                f"response {i} (size {n}): {r!r:.300}"
            assert r.body == pattern(n), f"response {i} (size {n}): body differs (length {len(r.body)})"
        assert not c.readable(0.2) and c.buf == b"", f"stray bytes: {bytes(c.buf)[:200]!r}"
    assert len(up.snapshot()) == len(sizes)


def test_pipelining_client_that_does_not_read_is_not_buffered_without_bound(env, _fresh):
    """2000 pipelined requests for 16 KB answers (32 MB) and a client that reads nothing: the proxy
    stops starting requests once its output towards the client is full (256 KB above what the kernel
    holds), instead of forwarding all of them and keeping every answer in memory. Reading resumes it:
    every answer then arrives, whole and in order."""
    n_req, size = 2000, 16000
    up = env["up"]
    with SmallBufConn(env["port"]) as c:
        data = request_bytes(f"/big/{size}") * n_req
        sender = threading.Thread(target=lambda: c.sock.sendall(data), daemon=True)
        sender.start()
        seen, quiet_since = 0, time.monotonic()
        while time.monotonic() - quiet_since < 1.0:
            n = len(up.snapshot())
            if n != seen:
                seen, quiet_since = n, time.monotonic()
            time.sleep(0.05)
        # The kernel's send and receive buffers on loopback hold up to ~4 MB + 8 KB here (~260 answers);
        # our own output adds at most ~17. Without the bound all 2000 are forwarded within a second.
        assert seen < 600, f"{seen} of {n_req} requests forwarded to a client that reads nothing"
        for i in range(n_req):
            r = c.read_response(timeout=10)
            assert r.status == 200 and len(r.body) == size and r.body == pattern(size), f"response {i}: {r!r:.200}"
        sender.join(5)
    assert len(up.snapshot()) == n_req


# ---------------------------------------------------------------------------------------------------
# 6. Upstream request timeout with recycled exchanges

REQUEST_TIMEOUT = 1.0


def test_request_timeout_fires_on_recycled_exchange(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = proxy_for(start_proxy, up.port, {"timeouts": {"request": "1s"}})
    with RawConn(px.port, timeout=5) as c:
        # Fast exchanges spread over ~0.6 s: each recycled exchange moves the same lazy timer, whose
        # event stays armed for an earlier deadline.
        for i in range(20):
            r = c.request("GET", f"/fast/{i}")
            assert r.status == 200 and r.json()["path"] == f"/fast/{i}", r
            time.sleep(0.03)
        start = time.monotonic()
        try:
            r = c.request("GET", "/hang", timeout=REQUEST_TIMEOUT + 3)
        except (jgtest.Closed, socket.timeout) as e:
            raise AssertionError(f"/hang got no 504 within {REQUEST_TIMEOUT + 3} s: {e!r}\n{px.logs()}")
        elapsed = time.monotonic() - start
    assert r.status == 504, r
    assert REQUEST_TIMEOUT - 0.15 <= elapsed <= REQUEST_TIMEOUT + 1.0, \
        f"504 after {elapsed:.2f} s with a {REQUEST_TIMEOUT} s request timeout"
    r = jgtest.get(px.port, "/after-timeout")
    assert r.status == 200 and r.json()["path"] == "/after-timeout", r
    # And again: the exchange that timed out is recycled too.
    for i in range(5):
        assert jgtest.get(px.port, f"/again/{i}").status == 200
    start = time.monotonic()
    r = jgtest.get(px.port, "/hang", timeout=REQUEST_TIMEOUT + 3)
    elapsed = time.monotonic() - start
    assert r.status == 504 and REQUEST_TIMEOUT - 0.15 <= elapsed <= REQUEST_TIMEOUT + 1.0, (r, elapsed)


def test_request_timeout_not_early_after_recent_exchanges(make_upstream, start_proxy):
    """Slow-but-in-time requests right after fast ones: a stale timer event of a recycled exchange must
    not end them early."""
    up = make_upstream("backend")
    px = proxy_for(start_proxy, up.port, {"timeouts": {"request": "1s"}})
    with RawConn(px.port, timeout=5) as c:
        for i in range(3):
            assert c.request("GET", f"/fast/{i}").status == 200
            time.sleep(0.2)
            # 700 ms answers: within the 1 s timeout, but past the deadline of an exchange started
            # 0.2-0.9 s earlier.
            r = c.request("GET", "/slow/700", timeout=4)
            assert r.status == 200, f"round {i}: a 700 ms answer with a 1 s request timeout got {r}"


# ---------------------------------------------------------------------------------------------------
# 7. Pooled upstream connections close after the idle timeout

def test_pooled_upstream_connection_closed_after_idle_timeout(raw_upstream, start_proxy):
    up = raw_upstream(lambda sock, head: (sock.sendall(ok_response(head.split(b" ")[1])), True)[1])
    px = proxy_for(start_proxy, up.port, {"timeouts": {"idle": "1s"}})
    with RawConn(px.port, timeout=5) as c:
        # Requests 0.3 s apart on the pooled connection: each use moves its idle deadline.
        for i in range(6):
            r = c.request("GET", f"/pooled/{i}")
            assert (r.status, r.body) == (200, b"/pooled/%d" % i), r
            time.sleep(0.3)
    conns = up.snapshot()
    assert len(conns) == 1, f"the pooled upstream connection was not reused (or closed early): {conns}"
    assert conns[0]["requests"] == 6 and conns[0]["eof"] is None, conns

    closed = jgtest.wait_for(lambda: up.snapshot()[0]["eof"] is not None, 4.0)
    conns = up.snapshot()
    assert closed, \
        f"pooled upstream connection not closed within 4 s of idling (idle 1s): {conns}\n{px.logs()}"
    idle_for = conns[0]["eof"] - conns[0]["last_response"]
    assert 0.5 <= idle_for <= 3.0, f"upstream connection closed after {idle_for:.2f} s idle (idle 1s)"

    r = jgtest.get(px.port, "/after-idle")
    assert (r.status, r.body) == (200, b"/after-idle"), r
    conns = up.snapshot()
    assert len(conns) == 2 and conns[1]["requests"] == 1, conns


def test_idle_pooled_connection_kept_while_busy(raw_upstream, start_proxy):
    """An upstream connection busy for longer than the idle timeout (one slow answer) is not closed by
    the idle bound, and goes idle afterwards."""
    def handler(sock, head):
        if head.startswith(b"GET /slow"):
            time.sleep(1.5)
        sock.sendall(ok_response(head.split(b" ")[1]))
        return True

    up = raw_upstream(handler)
    px = proxy_for(start_proxy, up.port, {"timeouts": {"idle": "1s", "request": "5s"}})
    with RawConn(px.port, timeout=5) as c:
        assert c.request("GET", "/first").status == 200
        r = c.request("GET", "/slow")
        assert (r.status, r.body) == (200, b"/slow"), \
            f"slow answer cut by the idle timeout? {r}\n{px.logs()}"
        assert c.request("GET", "/third").status == 200
    conns = up.snapshot()
    assert len(conns) == 1 and conns[0]["requests"] == 3, conns
    assert jgtest.wait_for(lambda: up.snapshot()[0]["eof"] is not None, 4.0), "never closed when idle"
    conns = up.snapshot()
    idle_for = conns[0]["eof"] - conns[0]["last_response"]
    assert 0.5 <= idle_for <= 3.0, idle_for


# ---------------------------------------------------------------------------------------------------
# 8. Client idle keep-alive timeout moved by every request

def test_client_idle_timeout_moved_by_each_request(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"idleTimeout": "1s", "headerTimeout": "10s"}))
    with RawConn(px.port, timeout=5) as c:
        first = time.monotonic()
        for i in range(10):
            try:
                r = c.request("GET", f"/ka/{i}")
            except (jgtest.Closed, OSError) as e:
                raise AssertionError(f"connection closed at request {i}, {time.monotonic() - first:.2f} s "
                                     f"in, although no pause exceeded 0.3 s (idleTimeout 1s): {e!r}")
            assert r.status == 200 and r.json()["path"] == f"/ka/{i}", r
            if i < 9:
                time.sleep(0.3)
        assert time.monotonic() - first > 2.5
        start = time.monotonic()
        assert c.is_closed(4.0), "idle keep-alive connection not closed within 4 s (idleTimeout 1s)"
        elapsed = time.monotonic() - start
        assert 0.8 <= elapsed <= 3.0, f"closed after {elapsed:.2f} s idle (idleTimeout 1s)"
        assert c.buf == b"", f"bytes before the close: {bytes(c.buf)!r}"


def test_header_timeout_after_keepalive_requests(make_upstream, start_proxy):
    """After requests that moved the idle deadline, a partial request head still gets its 408 after the
    header timeout (not at a stale idle deadline, not never)."""
    up = make_upstream("backend")
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"idleTimeout": "3s", "headerTimeout": "1500ms"}))
    with RawConn(px.port, timeout=5) as c:
        for i in range(5):
            assert c.request("GET", f"/ka/{i}").status == 200
            time.sleep(0.2)
        start = time.monotonic()
        c.send(b"GET /partial HTTP/1.1\r\nHost: www.example.com\r\n")
        r = c.read_response(timeout=5)
        elapsed = time.monotonic() - start
        assert r.status == 408, r
        assert 1.2 <= elapsed <= 3.0, f"408 after {elapsed:.2f} s (headerTimeout 1.5s)"
        assert c.is_closed(2.0)
    assert "/partial" not in up.paths()


# ---------------------------------------------------------------------------------------------------
# Responses whose framing or syntax the upstream got wrong (found by network fuzzing)

BODYLESS_WITH_FRAMING = {
    # A 204 that announces (and sends) a body: its bytes must not reach the client, where they would
    # be read as the next response (response splitting), and no Content-Length may go with it.
    "204-cl-and-bytes": b"HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n"
                        b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
    # A 304 may carry the representation's Content-Length (RFC 9110 section 8.6) and has no body:
    # waiting for one would hang the connection's next request until the request timeout.
    "304-cl-no-body": b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 100\r\n\r\n",
    "304-chunked": b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BODYLESS_WITH_FRAMING))
def test_bodyless_status_ends_at_its_head_whatever_its_framing_says(raw_upstream, start_proxy, case):
    def handler(sock, head):
        if b" /first " in head:
            sock.sendall(BODYLESS_WITH_FRAMING[case])
        else:
            sock.sendall(ok_response(b"second"))
        return True

    up = raw_upstream(handler)
    px = proxy_for(start_proxy, up.port, backend={"timeouts": {"request": "5s"}})
    with RawConn(px.port, timeout=5) as c:
        c.send(request_bytes("/first"))
        head = read_head_within(c, 2.0)
        status = int(head.split(b" ")[1])
        assert status in (204, 304), head
        if status == 204:
            assert b"content-length" not in head.lower(), f"Content-Length on a 204: {head!r}"
        t0 = time.monotonic()
        r = c.request("GET", "/second")
        assert (r.status, r.body) == (200, b"second"), f"the next response on the connection: {r!r}"
        assert time.monotonic() - t0 < 1.0, "the next request waited for a body that is not there"
        assert not c.readable(0.2) and c.buf == b"", f"stray bytes: {bytes(c.buf)!r}"


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\nx-tok : abc\r\nContent-Length: 2\r\n\r\nok",  # space before the colon
    b"HTTP/1.1 200 OK\r\nser ver: x\r\nContent-Length: 2\r\n\r\nok",  # space in the name
    b"HTTP/1.1 200 OK\r\n:empty\r\nContent-Length: 2\r\n\r\nok",  # empty name
    b"HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok",  # NUL in the reason phrase
    b"HTTP/1.1 200 OK\x01\r\nContent-Length: 2\r\n\r\nok",  # control byte in the reason phrase
    b"HTTP/1.1 000 OK\r\nContent-Length: 2\r\n\r\nok",  # status below 100: not an interim response
    b"HTTP/1.1 099 X\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 600 X\r\nContent-Length: 2\r\n\r\nok",  # above 599
], ids=["ws-before-colon", "space-in-name", "empty-name", "nul-in-reason", "ctl-in-reason", "status-000",
        "status-099", "status-600"])
def test_malformed_response_head_is_502_not_relayed(raw_upstream, start_proxy, response):
    up = raw_upstream(lambda sock, head: (sock.sendall(response), False)[1])
    px = proxy_for(start_proxy, up.port)
    r = jgtest.get(px.port, "/x")
    assert r.status == 502, f"a response head we could not relay faithfully was passed on: {r!r}"


def test_empty_chunked_request_retried_after_a_stale_pooled_connection(start_proxy):
    """The pooled upstream connection turns out dead when the next request uses it (the upstream
    resets it on that request): the request is re-sent on a fresh connection. When its chunked body
    was empty and had already ended, the last chunk must follow the head there, once: not be lost
    (the upstream would wait for it) and not go before the head (the upstream would read "0" as a
    request line)."""
    seen = []  # (connection number, bytes received up to the end of the request)
    lock = threading.Lock()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def conn(n, s):
        s.settimeout(3)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                if n == 1 and b"POST" in buf.split(b"\r\n", 1)[0]:
                    # The pooled connection dies under the second request: reset, no answer.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if b"transfer-encoding: chunked" in buf.lower():
                    while not buf.endswith(b"0\r\n\r\n"):
                        data = s.recv(65536)
                        if not data:
                            return
                        buf += data
                with lock:
                    seen.append((n, buf))
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ngot")
                buf = b""
        except OSError:
            pass
        finally:
            s.close()

    def serve():
        n = 0
        while True:
            try:
                s, _ = srv.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=conn, args=(n, s), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        px = proxy_for(start_proxy, srv.getsockname()[1], backend={"timeouts": {"request": "5s"}})
        r = jgtest.get(px.port, "/warm")  # pools connection 1
        assert r.status == 200, r
        with RawConn(px.port, timeout=5) as c:
            t0 = time.monotonic()
            c.send(b"POST /chunked-empty HTTP/1.1\r\nHost: www.example.com\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            r = c.read_response(timeout=5)
            assert (r.status, r.body) == (200, b"got"), r
            assert time.monotonic() - t0 < 2.0, "the retried request waited for its last chunk"
        with lock:
            retried = [b for n, b in seen if n > 1]
        assert len(retried) == 1, seen
        assert retried[0].startswith(b"POST /chunked-empty HTTP/1.1\r\n"), retried[0][:80]
        assert retried[0].split(b"\r\n\r\n", 1)[1] == b"0\r\n\r\n", retried[0]  # the last chunk, once
    finally:
        srv.close()
