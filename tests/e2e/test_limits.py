"""Configured limits: request line, header bytes and count, body size, header and idle timeouts,
maximum connections. Each limit is checked just inside (served) and just outside (refused), so the
configured value, not some built-in one, is what is enforced."""

import socket
import time

import pytest

import jgtest
from jgtest import RawConn, get

LIMITS = {
    "maxRequestLine": 1024,
    "maxHeaderBytes": 4096,
    "maxHeaderCount": 20,
    "maxBodySize": "1KiB",
    "headerTimeout": "1s",
    "idleTimeout": "2s",
}


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    up = make_upstream_module("backend")
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1, limits=LIMITS))
    return {"up": up, "port": px.port}


@pytest.fixture(autouse=True)
def _fresh(env):
    env["up"].reset()
    yield


def send_raw(port, data, timeout=5):
    c = RawConn(port, timeout=timeout)
    try:
        c.send(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return c


def test_request_line_within_limit_served(env):
    path = "/" + "a" * 900
    r = get(env["port"], path)
    assert r.status == 200
    assert r.json()["path"] == path


def test_request_line_over_limit_414(env):
    with send_raw(env["port"], b"GET /rl-over" + b"a" * 2000 + b" HTTP/1.1\r\nHost: www.example.com\r\n\r\n") as c:
        r = c.read_response()
        assert r.status == 414
        assert len(r.body) <= 256
    assert env["up"].matching("/rl-over") == []


def test_headers_within_limit_served(env):
    hs = [(f"X-H{i}", "v" * 100) for i in range(15)]  # ~1.8 KB, 16 fields with Host
    r = get(env["port"], "/h", headers=hs)
    assert r.status == 200
    assert jgtest.header(r.json(), "x-h14") == ["v" * 100]


def test_one_huge_header_431(env):
    with send_raw(env["port"], b"GET /h-huge HTTP/1.1\r\nHost: www.example.com\r\nX-Big: " + b"b" * 5000
                  + b"\r\n\r\n") as c:
        r = c.read_response()
        assert r.status == 431
    assert env["up"].matching("/h-huge") == []


def test_header_bytes_over_limit_431(env):
    # 15 fields (under the count limit) of 300 bytes: 4.5 KB, over maxHeaderBytes 4096
    hs = "".join(f"X-H{i}: {'v' * 300}\r\n" for i in range(15))
    with send_raw(env["port"], ("GET /h-bytes HTTP/1.1\r\nHost: www.example.com\r\n" + hs + "\r\n").encode()) as c:
        r = c.read_response()
        assert r.status == 431
    assert env["up"].matching("/h-bytes") == []


def test_too_many_headers_431(env):
    hs = "".join(f"X-H{i}: v\r\n" for i in range(25))  # short, 26 fields with Host > 20
    with send_raw(env["port"], ("GET /h-count HTTP/1.1\r\nHost: www.example.com\r\n" + hs + "\r\n").encode()) as c:
        r = c.read_response()
        assert r.status == 431
    assert env["up"].matching("/h-count") == []


def test_body_within_limit_served(env):
    body = jgtest.pattern(1000)
    r = get(env["port"], "/b", method="POST", body=body)
    assert r.status == 200
    assert r.json()["body_sha256"] == jgtest.sha256(body)


def test_body_over_limit_content_length_413_nothing_forwarded(env):
    with send_raw(env["port"], b"POST /b-cl HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 2000\r\n\r\n"
                  + jgtest.pattern(2000)) as c:
        r = c.read_response()
        assert r.status == 413
    time.sleep(0.2)
    assert env["up"].matching("/b-cl") == [], "a body known to be too large must not be forwarded"


def test_body_over_limit_chunked_413_never_completed(env):
    body = jgtest.pattern(3000)
    chunks = b"".join(b"%x\r\n" % 500 + body[i:i + 500] + b"\r\n" for i in range(0, 3000, 500))
    with send_raw(env["port"], b"POST /b-chunked HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + chunks + b"0\r\n\r\n") as c:
        try:
            r = c.read_response()
        except jgtest.Closed:
            r = None
        # Only the upstream could have started a response before the body ended, and it waits for the
        # whole body; so the proxy can always answer 413.
        assert r is not None and r.status == 413
    time.sleep(0.2)  # a head forwarded before the body grew too large may still be on its way
    mine = lambda: env["up"].matching("/b-chunked")
    assert jgtest.wait_for(lambda: all(q["state"] != "head" for q in mine()), 3.0), mine()
    assert all(q["state"] != "complete" for q in mine()), mine()


def test_slowloris_408_and_close(env):
    with RawConn(env["port"]) as c:
        start = time.monotonic()
        c.send(b"GET /slowloris HTTP/1.1\r\n")
        answered = False
        while time.monotonic() - start < 4:
            if c.readable(0.25):
                answered = True
                break
            try:
                c.send(b"X-Drip: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert answered, "no answer while headers dripped past headerTimeout"
        r = c.read_response(timeout=2)
        assert r.status == 408
        assert 0.8 <= time.monotonic() - start <= 3.0
        assert c.is_closed(2.0)
    assert env["up"].matching("/slowloris") == []


def test_silent_connection_closed_after_header_timeout(env):
    with RawConn(env["port"]) as c:
        start = time.monotonic()
        closed = c.is_closed(4.0)
        assert closed, "a connection that never sends a request is not closed"
        assert time.monotonic() - start >= 0.8
        assert c.buf == b"" or c.buf.startswith(b"HTTP/1.1 408")


def test_idle_keepalive_connection_closed_after_idle_timeout(env):
    with RawConn(env["port"]) as c:
        assert c.request("GET", "/one").status == 200
        time.sleep(0.5)
        assert c.request("GET", "/two").status == 200, "closed well before idleTimeout"
        start = time.monotonic()
        assert c.is_closed(5.0), "idle keep-alive connection never closed"
        elapsed = time.monotonic() - start
        assert 1.5 <= elapsed <= 4.5, elapsed  # idleTimeout is 2s


def test_max_connections(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"maxConnections": 3}))
    held = []

    def open_served(i):
        # The start-up probe connection (and any just-closed one) may still hold a slot for a moment:
        # retry briefly instead of racing the proxy's bookkeeping.
        deadline = time.monotonic() + 3.0
        while True:
            c = RawConn(px.port)
            try:
                if c.request("GET", f"/held/{i}").status == 200:
                    return c
            except (jgtest.Closed, OSError):
                pass
            c.close()
            assert time.monotonic() < deadline, f"connection {i} of {3} (within the limit) not served"
            time.sleep(0.1)

    try:
        for i in range(3):
            held.append(open_served(i))

        # A fourth connection is refused or closed: it never gets a request served.
        served = False
        try:
            extra = RawConn(px.port, timeout=2)
            try:
                extra.send(b"GET /extra HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
                r = extra.read_response(timeout=2)
                served = r.status == 200
            except (jgtest.Closed, socket.timeout, OSError):
                pass
            finally:
                extra.close()
        except OSError:
            pass
        assert not served, "connection beyond maxConnections was served"
        assert "/extra" not in up.paths()

        # The existing ones keep working.
        for i, c in enumerate(held):
            assert c.request("GET", f"/still/{i}").status == 200

        # Closing one frees a slot for a new connection.
        held.pop().close()
        def new_works():
            try:
                return get(px.port, "/freed", timeout=1).status == 200
            except (jgtest.Closed, OSError):
                return False
        assert jgtest.wait_for(new_works, 4.0, 0.2), "slot not freed after a connection closed"
    finally:
        for c in held:
            c.close()
