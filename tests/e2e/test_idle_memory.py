"""Memory per idle connection (issue 13): what a keep-alive connection costs while it waits.

A fresh proxy (workers: 1) serves one request on each of N connections, which then stay open and
idle; the RSS growth (/proc/PID/status VmRSS) divided by N is the cost of an idle connection. A
proxy that keeps per-request memory (the request arena's chunk, the parser, the request head) on an
idle connection pays ~4 KiB more per connection and fails the HTTP/1.1 bound.

An idle h2c connection gives the pages of nghttp2's frame buffer and stream table back after 1 s
without traffic (http2.c h2_mem_idle): the h2 rows wait longer than that before RSS is read, and a
connection that was idle that long must still serve requests with its HPACK state intact.

bench/idle_memory.sh measures the same at 10,000 connections next to nginx. ASan builds add a redzone
to every allocation and keep freed memory in quarantine: their bounds are looser.
"""

import json
import resource
import socket
import time

import hpack
import hyperframe.frame as hf
import pytest

import h2util
import jgtest

N_H1 = 2000
N_H2 = 1000
H1_BOUND_KIB = 3.0  # measured 1.9 KiB (before issue 13: 6.6 KiB)
# measured ~8 KiB at 1000: nghttp2's session object and HPACK tables; the stream table's page goes
# back with the frame buffer's, as nghttp2 keeps no closed stream (the codec judges frames on closed
# streams itself, bench/README.md); before issue 13 ~16.6 KiB
H2_BOUND_KIB = 11.0
H2_MEM_IDLE_S = 1.0  # http2.c H2_MEM_IDLE_MS
ASAN_FACTOR = 3.0


@pytest.fixture(autouse=True)
def _no_malloc_perturb(monkeypatch):
    # meson test sets MALLOC_PERTURB_, which makes glibc fill every allocation: pages a real process
    # never touches (most of nghttp2's 16 KiB frame buffer) would be counted.
    monkeypatch.delenv("MALLOC_PERTURB_", raising=False)


@pytest.fixture(autouse=True)
def _nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4 * (N_H1 + N_H2) + 256)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def is_asan(pid):
    with open(f"/proc/{pid}/maps") as f:
        return "libasan" in f.read()


def start(make_upstream, start_proxy):
    up = make_upstream("backend")
    return start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"headerTimeout": "60s", "idleTimeout": "60s"}))


def h1_one_request(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /idle HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, "connection closed before the response head"
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:40]
    length = 0
    for ln in head.split(b"\r\n")[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        d = s.recv(65536)
        assert d, "connection closed in the response body"
        body += d
    return s


def h2_one_request(port):
    """An h2c (prior knowledge) connection after one GET on stream 1, its SETTINGS acknowledged."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "www.example.com"),
                        (":path", "/idle")])
    s.sendall(h2util.PREFACE + hf.SettingsFrame(0).serialize() +
              hf.HeadersFrame(1, data=block, flags=["END_STREAM", "END_HEADERS"]).serialize())
    buf, acked, ended = b"", False, False
    while not (acked and ended):
        d = s.recv(65536)
        assert d, "connection closed before the response"
        buf += d
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            buf = buf[9 + n:]
            assert ftype not in (3, 7), "stream reset or GOAWAY"
            if ftype == 4 and not flags & 1:
                s.sendall(hf.SettingsFrame(0, flags=["ACK"]).serialize())
                acked = True
            if ftype in (0, 1) and sid == 1 and flags & 1:
                ended = True
    return s


def idle_cost(px, n, opener, settle=1.0):
    """KiB of RSS per connection for n idle connections opened by opener (after a warm-up)."""
    for _ in range(20):
        opener(px.port).close()
    time.sleep(0.5)
    base = jgtest.rss_kib(px.proc.pid)
    socks = []
    try:
        for _ in range(n):
            socks.append(opener(px.port))
        time.sleep(settle)
        grown = jgtest.rss_kib(px.proc.pid) - base
        for s in socks:  # every connection is still open: the proxy did not shed them
            s.setblocking(False)
            try:
                assert s.recv(1, socket.MSG_PEEK) != b"", "the proxy closed an idle connection"
            except BlockingIOError:
                pass
    finally:
        for s in socks:
            s.close()
    return grown / n


def test_idle_h1_keepalive_connection_memory(make_upstream, start_proxy):
    px = start(make_upstream, start_proxy)
    per = idle_cost(px, N_H1, h1_one_request)
    bound = H1_BOUND_KIB * (ASAN_FACTOR if is_asan(px.proc.pid) else 1)
    print(f"\n{N_H1} idle HTTP/1.1 keep-alive connections: {per:.2f} KiB each (bound {bound})")
    assert per < bound
    assert jgtest.get(px.port, "/after", timeout=10).status == 200


def test_idle_h2c_connection_memory(make_upstream, start_proxy):
    px = start(make_upstream, start_proxy)
    # every connection idle for longer than H2_MEM_IDLE_S (the lazy timer fires within a few ms)
    per = idle_cost(px, N_H2, h2_one_request, settle=H2_MEM_IDLE_S + 1.5)
    bound = H2_BOUND_KIB * (ASAN_FACTOR if is_asan(px.proc.pid) else 1)
    print(f"\n{N_H2} idle h2c connections: {per:.2f} KiB each (bound {bound})")
    assert per < bound


def test_h2c_connection_idle_past_buffer_release_still_serves(make_upstream, start_proxy):
    """After H2_MEM_IDLE_S of quiet the connection's frame buffer and stream table read as zero
    pages. The next requests must find the HPACK tables intact (the client refers to the entries it
    indexed, and decodes our header blocks with the state it kept), and the frame buffer must carry
    a response of several full DATA frames and a second stream on the same connection."""
    px = start(make_upstream, start_proxy)
    conns = [h2util.H2Conn(px.port, timeout=10) for _ in range(4)]
    try:
        for c in conns:
            sid = c.request("/first", headers=[("x-idle-test", "v" * 40)])
            r = c.response(sid)
            assert r["headers"][":status"] == "200"
            assert json.loads(bytes(r["data"]))["path"] == "/first"
        time.sleep(H2_MEM_IDLE_S + 1.0)
        for rounds in range(2):
            for c in conns:
                # the same fields again: python-h2's encoder now sends dynamic-table indices
                small = c.request("/again", headers=[("x-idle-test", "v" * 40)])
                big = c.request("/big/100000")
                r = c.response(small)
                assert r["headers"][":status"] == "200", r
                assert json.loads(bytes(r["data"]))["path"] == "/again"
                r = c.response(big)
                assert r["headers"][":status"] == "200", r
                assert bytes(r["data"]) == jgtest.pattern(100000)
                assert c.goaway is None and not c.resets
            time.sleep(H2_MEM_IDLE_S + 0.5)
    finally:
        for c in conns:
            c.close()
