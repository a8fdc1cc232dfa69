"""Heads that arrive a few bytes at a time, in both directions.

The HTTP/1.1 codecs reference a URL, header name or value in the parser's input while it arrives in
one piece and copy it only when it is split across reads (common.h, jg_piece). These tests split the
request head (client side) and the response head (upstream side) into tiny writes, so that names,
values, the URL and the reason phrase all end in a later read than they began, and check that every
byte arrives exactly. (Without the copy, the ASan build reports a heap-use-after-free here.)
"""

import time

import jgtest
from jgtest import RawConn, header

PIECE = 3          # bytes per write
PAUSE = 0.003      # between writes: each piece is its own read on the other side


def trickle(sock, data):
    for i in range(0, len(data), PIECE):
        sock.sendall(data[i:i + PIECE])
        time.sleep(PAUSE)


def test_request_head_split_into_tiny_reads(upstream, start_proxy):
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [upstream.port]}, [jgtest.catch_all_route()], workers=1))
    value = "alpha beta-gamma/" + "x" * 40 + " omega"
    head = ("GET /split/path/%s?q=one%%20two HTTP/1.1\r\n"
            "Host: www.example.com\r\n"
            "X-Long-Header-Name-For-Splitting: %s\r\n"
            "X-Second: 2\r\n"
            "\r\n" % (jgtest.marker(), value)).encode()
    with RawConn(px.port) as c:
        trickle(c.sock, head)
        r = c.read_response()
    assert r.status == 200, r
    reqs = upstream.snapshot()
    assert len(reqs) == 1, reqs
    rec = reqs[0]
    assert rec["path"].startswith("/split/path/") and rec["path"].endswith("?q=one%20two"), rec["path"]
    assert header(rec, "x-long-header-name-for-splitting") == [value]
    assert header(rec, "x-second") == ["2"]


def trickling_upstream(reason, headers, body):
    """Answers every request with a fixed response head written PIECE bytes at a time, then a sized
    body, keeping the connection."""
    lines = ["HTTP/1.1 200 %s" % reason] + ["%s: %s" % kv for kv in headers]
    lines.append("Content-Length: %d" % len(body))
    response = ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def answer(sock, head):
        trickle(sock, response)
        return True

    return jgtest.RawUpstream(answer)


def test_response_head_split_into_tiny_reads(start_proxy):
    value = "v1, v2; q=0.5 " + "y" * 50
    up = trickling_upstream("Quite Fine Thank You", [("X-Split-Response-Header", value), ("X-B", "b")],
                         b"split body")
    try:
        px = start_proxy(lambda port: jgtest.base_config(
            port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1))
        with RawConn(px.port) as c:
            for _ in range(2):  # the second response reuses the pooled upstream connection
                c.send(b"GET /r HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
                r = c.read_response()
                assert r.status == 200, r
                assert r.reason == "Quite Fine Thank You", r
                assert r.header("x-split-response-header") == value
                assert r.header("x-b") == "b"
                assert r.body == b"split body"
    finally:
        up.stop()


def trickle_bytes(sock, data, piece=1):
    for i in range(0, len(data), piece):
        try:
            sock.sendall(data[i:i + piece])
        except (BrokenPipeError, ConnectionResetError):
            return
        time.sleep(PAUSE)


# The line-end and obs-fold checks look at the bytes before each position llhttp reports, which may
# lie in earlier reads (http1.c, h1_look_back): one byte per read must change no verdict (issue 10).
SPLIT_BAD = [
    b"GET /s HTTP/1.1\r\nX-A:\r\n b\r\nHost: www.example.com\r\n\r\n",
    b"GET /s HTTP/1.1\r\nX-A: a\r\n \t \r\nHost: www.example.com\r\n\r\n",
    b"GET /s HTTP/1.1\r\nHost: www.example.com\r\nX-A:  \r\n  \r\n\r\n",
    b"GET /s HTTP/1.1\nHost: www.example.com\r\n\r\n",
    b"GET /s HTTP/1.1\r\nHost: www.example.com\r\n\n",
    b"POST /s HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T:\r\n \r\n\r\n",
    b"POST /s HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\n",
]


def test_fold_and_bare_lf_found_one_byte_per_read(upstream, start_proxy):
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [upstream.port]}, [jgtest.catch_all_route()], workers=1))
    for data in SPLIT_BAD:
        with RawConn(px.port) as c:
            trickle_bytes(c.sock, data)
            r = c.read_response()
            assert r.status == 400, (data, r)
    time.sleep(0.2)
    assert all(rec["state"] != "complete" for rec in upstream.snapshot()), upstream.snapshot()


def test_legal_whitespace_and_chunks_pass_one_byte_per_read(upstream, start_proxy):
    px = start_proxy(lambda port: jgtest.base_config(
        port, {"backend": [upstream.port]}, [jgtest.catch_all_route()], workers=1))
    data = (b"POST /echo-body HTTP/1.1\r\nHost:  \t www.example.com \t \r\nX-Sp: a  b\t\tc \r\nX-E:\r\n"
            b"Transfer-Encoding:\t chunked \r\n\r\n"
            b"3;n=v\r\nab\r\r\n2\r\n\n \r\n0\r\nX-T: t  \r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
    with RawConn(px.port) as c:
        trickle_bytes(c.sock, data)
        r1 = c.read_response(method="POST")
        r2 = c.read_response()
    assert r1.status == 200 and r1.body == b"ab\r\n ", r1
    assert r2.status == 200 and r2.json()["path"] == "/next", r2
