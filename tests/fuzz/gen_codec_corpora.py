#!/usr/bin/python3
"""Writes the seed corpora of the codec fuzz targets (http1, http1_response, http2) from the e2e cases.

- http1: the raw request bytes of tests/e2e/test_smuggling.py (HEAD_CASES, BODY_CASES, each followed by
  the smuggled request as the test sends them), plus the well-formed requests of the other e2e tests
  (keep-alive, pipelining, HTTP/1.0, Expect, chunked bodies, JWT), each once whole and once a few bytes
  per write (test_split_heads.py).
- http1_response: upstream responses as the e2e upstreams write them (jgtest, test_split_heads,
  test_upstream_errors): interim 1xx, chunked with trailers, close-delimited, bodiless statuses,
  malformed heads.
- http2: the frame sequences of tests/e2e/test_h2_attacks.py (rapid reset, CONTINUATION flood, SETTINGS,
  PING, WINDOW_UPDATE, PRIORITY and empty DATA floods, too many streams, invalid messaging) written
  in fuzz_http2.c's operation format.

File names are content hashes, so re-running is idempotent. Run from anywhere:
  /usr/bin/python3 tests/fuzz/gen_codec_corpora.py [OUTPUT_DIR]
(default: tests/fuzz/corpus; the committed corpora are these seeds merged with what the fuzzer found,
see README.md).
"""

import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import test_smuggling  # noqa: E402  (the e2e cases themselves)

TOKEN = open(os.path.join(ROOT, "conf", "examples", "test.jwt")).read().strip().encode()


OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")


def write(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


# ---- http1 (flag byte: see fuzz_http1.c) ----
def http1_seeds():
    out = []
    for _id, data, _status in test_smuggling.HEAD_CASES:
        out.append(data.replace(b" /s HTTP/", b" /s-x HTTP/", 1) + test_smuggling.SMUGGLED)
    head = test_smuggling.req([test_smuggling.H, test_smuggling.TE])
    for _id, body in test_smuggling.BODY_CASES:
        out.append(head + body + test_smuggling.SMUGGLED)
    H = b"Host: www.example.com\r\n"
    out += [
        b"GET / HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /a HTTP/1.1\r\n" + H + b"\r\nGET /b HTTP/1.1\r\n" + H + b"\r\nHEAD /c HTTP/1.1\r\n" + H + b"\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n" + H + b"\r\nGET /2 HTTP/1.0\r\n\r\n",
        b"POST /p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\n" + H + b"\r\n",
        b"POST /p HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: v\r\n\r\n",
        b"POST /p HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"PUT /p HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 2\r\n\r\nok",
        b"GET http://www.example.com/abs?q=1 HTTP/1.1\r\nHost: other\r\n\r\n",
        b"GET /a/../b/%2e%2e/c?x=1#f HTTP/1.1\r\n" + H + b"\r\n",
        b"GET /x HTTP/1.1\r\n" + H + b"Connection: x-hop, keep-alive\r\nX-Hop: 1\r\nTE: trailers\r\n"
        b"Upgrade: websocket\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: secure.example\r\nAuthorization: Bearer " + TOKEN + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: secure.example\r\nAuthorization: Bearer e30.e30.e30\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: secure.example\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + H + b"X-Long: " + b"v" * 5000 + b"\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
        b"CONNECT www.example.com:443 HTTP/1.1\r\n" + H + b"\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]
    return out


def gen_http1():
    for data in http1_seeds():
        write("http1", b"\x00" + data)  # whole, Content-Length answers
        write("http1", bytes([0x01 | (2 << 3)]) + data)  # chunked answers, 2 bytes per write
        if len(data) < 600:
            write("http1", bytes([0x42 | (3 << 3)]) + data)  # close-delimited answers, half-close
        write("http1", bytes([0x80 | 0x06 * (len(data) % 2)]) + data)  # drained; some reset upstream
        if b"Content-Length: " in data or b"chunked" in data:
            write("http1", bytes([0x05 | (4 << 3)]) + data)  # answered before the body, 8 bytes per write


# ---- http1_response (flag byte: see fuzz_http1_response.c) ----
def gen_http1_response():
    resps = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
        b"HTTP/1.1 200 Quite Fine Thank You\r\nX-Split-Response-Header: " + b"s" * 300 + b"\r\nX-B: b\r\n"
        b"Content-Length: 10\r\n\r\nsplit body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged",
        b"HTTP/1.1 200 OK\r\nX-Bad: a\rb\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n b\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 999 Nope\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 099 Nope\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nold style",
        b"HTTP/1.1 200 OK\r\nConnection: close, x-drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nContent-Length: 1\r\n\r\nx",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"garbage\r\n\r\n",
    ]
    for i, r in enumerate(resps):
        write("http1_response", bytes([0x00]) + r)  # GET, one write
        write("http1_response", bytes([0x0D | (i % 16) << 4]) + r)  # HEAD+second, upstream closes, split
        write("http1_response", bytes([0x06 | (8 << 4)]) + r)  # POST+second, split in the middle
        write("http1_response", bytes([0x0B]) + r)  # HTTP/1.0, upstream closes


# ---- http2 (operation format: see fuzz_http2.c) ----
def hv(pairs):
    out = bytes([len(pairs)])
    for n, v in pairs:
        n, v = n.encode(), v.encode()
        out += bytes([len(n)]) + n + bytes([len(v)]) + v
    return out


def req_headers(path="/", method="GET", authority="www.example.com", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + list(extra)


def headers(sid, pairs, flags=0x05):
    return bytes([1, flags, sid]) + hv(pairs)


def cont(sid, pairs, flags=0x04):
    return bytes([3, flags, sid]) + hv(pairs)


def data(sid, payload, flags=0x01):
    return bytes([2, flags, sid, len(payload)]) + payload


def frame(ftype, flags, sid, payload):
    if len(payload) < 256:
        return bytes([0, ftype, flags, sid, len(payload)]) + payload
    return bytes([4, ftype, flags, sid]) + struct.pack(">H", len(payload)) + payload


SETTINGS = frame(4, 0, 0, b"")
SETTINGS_ACK = frame(4, 1, 0, b"")
FLUSH = bytes([5])


def gen_http2():
    seqs = [
        SETTINGS + headers(1, req_headers()),
        SETTINGS + headers(1, req_headers("/p", "POST", extra=[("content-length", "5")]), 0x04)
        + data(1, b"hello"),
        SETTINGS + SETTINGS_ACK + headers(1, req_headers("/a")) + headers(3, req_headers("/b"))
        + headers(5, req_headers("/c", "HEAD")),
        # rapid reset
        SETTINGS + b"".join(headers(1 + 2 * i, req_headers("/rr/%d" % i)) + frame(3, 0, 1 + 2 * i, b"\0\0\0\x08")
                            for i in range(8)),
        # CONTINUATION flood
        SETTINGS + headers(1, req_headers("/c"), 0x01) + b"".join(cont(1, [("x-c", "v" * 20)], 0) for _ in range(12)),
        SETTINGS + headers(1, req_headers("/c"), 0x01) + cont(1, [("x-a", "1")]),
        # SETTINGS, PING, WINDOW_UPDATE, PRIORITY floods
        SETTINGS + SETTINGS * 20,
        SETTINGS + frame(6, 0, 0, b"12345678") * 20,
        SETTINGS + frame(8, 0, 0, b"\0\0\0\x01") * 20,
        SETTINGS + frame(2, 0, 1, b"\0\0\0\0\x10") * 20,
        # empty DATA flood
        SETTINGS + headers(1, req_headers("/e", "POST"), 0x04) + data(1, b"", 0) * 20,
        # too many streams
        SETTINGS + b"".join(headers(1 + 2 * i, req_headers("/slow/%d" % i)) for i in range(40)),
        # invalid messaging
        SETTINGS + headers(1, req_headers("/upper", extra=[("X-Upper", "v")])),
        SETTINGS + headers(1, req_headers("/te", extra=[("transfer-encoding", "chunked")])),
        SETTINGS + headers(1, req_headers("/cl", "POST", extra=[("content-length", "3")]), 0x04)
        + data(1, b"toolong"),
        SETTINGS + headers(1, [(":method", "GET"), (":path", "/")]),
        SETTINGS + headers(1, req_headers("/", extra=[("connection", "close")])),
        SETTINGS + headers(1, req_headers("/", authority="secure.example",
                                          extra=[("authorization", "Bearer e30.e30.e30")])),
        SETTINGS + headers(1, req_headers("/g", "POST", extra=[("content-type", "application/grpc"),
                                                               ("te", "trailers")]), 0x04)
        + data(1, b"\0\0\0\0\0") + headers(1, [("x-trailer", "t")], 0x05),
        # settings values: max frame size, window size, header table size
        frame(4, 0, 0, struct.pack(">HI", 5, 1 << 20) + struct.pack(">HI", 4, 0) + struct.pack(">HI", 1, 0))
        + headers(1, req_headers()) + FLUSH + frame(8, 0, 1, b"\0\0\x10\0"),
        # GOAWAY from the client, then a request
        SETTINGS + frame(7, 0, 0, b"\0\0\0\0\0\0\0\0") + headers(1, req_headers()),
        # a stream id that goes down
        SETTINGS + headers(5, req_headers()) + headers(3, req_headers()),
        # push promise from a client
        SETTINGS + frame(5, 4, 1, b"\0\0\0\x02"),
        # frames on closed streams (judged by the codec, not nghttp2): after the client's RST_STREAM,
        # after both END_STREAMs, and after a reset of ours (the body exceeds content-length)
        SETTINGS + headers(1, req_headers("/r", "POST"), 0x04) + frame(3, 0, 1, b"\0\0\0\x08") + data(1, b"late"),
        SETTINGS + headers(1, req_headers("/d")) + FLUSH + FLUSH + data(1, b"late") + headers(1, req_headers()),
        SETTINGS + headers(1, req_headers("/cl", "POST", extra=[("content-length", "1")]), 0x04)
        + data(1, b"toolong", 0) + FLUSH + data(1, b"more") + headers(3, req_headers()),
    ]
    for i, s in enumerate(seqs):
        write("http2", bytes([0x00]) + s)
        write("http2", bytes([0x01 | ((i % 3) + 1) << 3]) + s)  # chunked answers, 4-64 bytes per write
        write("http2", bytes([0x20 | 0x06 * (i % 2)]) + s)  # drained (GOAWAY); every other one reset
        if b"POST" in s:
            write("http2", bytes([0x05]) + s)  # answered before the body
    write("http2", bytes([0x80]) + b"\0\0\0\x04\0\0\0\0\0")  # raw: an empty SETTINGS


if __name__ == "__main__":
    gen_http1()
    gen_http1_response()
    gen_http2()
