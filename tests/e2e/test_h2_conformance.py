"""HTTP/2 conformance in the manner of h2spec (github.com/summerwind/h2spec, which reviewers run against
jwtgate's listener and which is not packaged in Debian): hand-made frames on a socket, each case
asserting the reaction that RFC 9113 (HTTP/2) or RFC 7541 (HPACK) requires.

- connection error (RFC 9113 section 5.4.1): a GOAWAY with the named error code, then the connection
  is closed;
- stream error (section 5.4.2): a RST_STREAM with the named code on that stream, and the connection
  keeps serving; where the RFC says "stream error" but section 5.4.1 lets an endpoint treat it as a
  connection error ("stream_or_conn"), either form with the named code is accepted, as h2spec does;
- otherwise a normal answer (a response, a SETTINGS or PING acknowledgement).

Each case runs over h2c with prior knowledge and over TLS with ALPN h2, against jwtgate proxying to a
real HTTP/1.1 upstream on loopback. Case ids carry h2spec's section numbers: `-k 6.5.2`, `-k hpack`,
`-k "tls and 8.1.2"`. Every read is bounded (TIMEOUT)."""

import os
import socket
import ssl
import struct
import time

import hpack
import pytest

import h2util
import jgtest

TIMEOUT = 3.0
MAX_STREAMS = 8  # limits.http2MaxConcurrentStreams for this proxy: 5.1.2 opens one more

# Frame types (RFC 9113 section 6) and error codes (section 7).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x8, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6
UNKNOWN_TYPE = 0x16


def frame(ftype, flags, sid, payload=b"", length=None):
    """One frame as bytes; `length` overrides the length field (for the frame-size cases)."""
    n = len(payload) if length is None else length
    return struct.pack(">I", n)[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def settings(*pairs, flags=0, sid=0):
    return frame(SETTINGS, flags, sid, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc))


def rst(sid, code):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def priority(sid, dep=0, weight=15, exclusive=False):
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep | (0x80000000 if exclusive else 0), weight))


class Peer:
    """A frame-level HTTP/2 client that validates nothing and records every frame jwtgate sends."""

    def __init__(self, port, tls, local_settings=(), handshake=True):
        self.sock = h2util.connect(port, tls, TIMEOUT)
        self.tls = tls
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.buf = bytearray()
        self.frames = []  # (type, flags, stream id, payload) in arrival order
        self.server_settings = {}
        self.settings_acks = 0
        self.ping_acks = []
        self.goaway = None  # (error code, last stream id)
        self.rst = {}  # stream id -> error code
        self.headers = {}  # stream id -> [header dict, ...]
        self.data = {}  # stream id -> bytes
        self.data_frames = {}  # stream id -> [length, ...]
        self.ended = set()
        self.closed = False
        self.next_sid = 1
        self._block = None  # (stream id, bytes, END_STREAM) of a header block being received
        if handshake:
            self.send(h2util.PREFACE + settings(*local_settings))
            # Like h2spec: the server's SETTINGS (acknowledged by _on_frame) and the ACK of ours
            # before any case starts, so that no SETTINGS exchange interleaves with it.
            assert self.wait(lambda p: p.server_settings and p.settings_acks >= 1), \
                f"no SETTINGS / SETTINGS ACK from jwtgate: {self.frames} goaway={self.goaway}"

    def sid(self):
        s = self.next_sid
        self.next_sid += 2
        return s

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.closed = True
            return False

    def _pump(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
            payload = bytes(self.buf[9:9 + n])
            del self.buf[:9 + n]
            self._on_frame(ftype, flags, sid, payload)

    def _on_frame(self, ftype, flags, sid, payload):
        self.frames.append((ftype, flags, sid, payload))
        if ftype == SETTINGS:
            if flags & ACK:
                self.settings_acks += 1
            else:
                for i in range(0, len(payload) - len(payload) % 6, 6):
                    k, v = struct.unpack(">HI", payload[i:i + 6])
                    self.server_settings[k] = v
                self.server_settings.setdefault(0, 0)  # "received", even when empty
                self.send(settings(flags=ACK))
        elif ftype == PING and flags & ACK:
            self.ping_acks.append(payload)
        elif ftype == GOAWAY:
            self.goaway = struct.unpack(">II", payload[:8])[::-1]
            self.goaway = (self.goaway[0], self.goaway[1] & 0x7FFFFFFF)
        elif ftype == RST_STREAM:
            self.rst[sid] = struct.unpack(">I", payload[:4])[0]
        elif ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                body = payload
                if flags & PADDED:
                    body = body[1:len(body) - body[0]]
                if flags & PRIORITY_FLAG:
                    body = body[5:]
                self._block = (sid, body, bool(flags & END_STREAM))
            else:
                self._block = (sid, self._block[1] + payload, self._block[2])
            if flags & END_HEADERS:
                s, block, end = self._block
                self._block = None
                self.headers.setdefault(s, []).append(
                    {k.decode(): v.decode() for k, v in self.dec.decode(block, raw=True)})
                if end:
                    self.ended.add(s)
        elif ftype == DATA:
            body = payload[1:len(payload) - payload[0]] if flags & PADDED else payload
            self.data[sid] = self.data.get(sid, b"") + body
            self.data_frames.setdefault(sid, []).append(len(body))
            if flags & END_STREAM:
                self.ended.add(sid)

    def wait(self, pred, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not pred(self) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._pump(remaining)
            except socket.timeout:
                break
        return bool(pred(self))

    def ping(self, timeout=TIMEOUT):
        """A PING round trip: True when jwtgate answered it, which also means it processed (and
        so ignored) every frame sent before."""
        payload = os.urandom(8)
        self.send(frame(PING, 0, 0, payload))
        return self.wait(lambda p: payload in p.ping_acks, timeout)

    def block(self, hdrs):
        return self.enc.encode(hdrs)

    def headers_frame(self, sid, hdrs, flags=END_STREAM | END_HEADERS):
        return frame(HEADERS, flags, sid, self.block(hdrs) if isinstance(hdrs, list) else hdrs)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def req(path="/", method="GET", extra=()):
    return [(":method", method), (":scheme", "http"), (":authority", "www.example.com"), (":path", path)] + \
        list(extra)


# ---- verdicts ----

def _seen(p):
    kinds = {DATA: "DATA", HEADERS: "HEADERS", PRIORITY: "PRIORITY", RST_STREAM: "RST_STREAM",
             SETTINGS: "SETTINGS", PING: "PING", GOAWAY: "GOAWAY", WINDOW_UPDATE: "WINDOW_UPDATE"}
    return [(kinds.get(t, t), f, s) for t, f, s, _ in p.frames]


def conn_error(p, code):
    """RFC 9113 section 5.4.1: GOAWAY with `code` as the last frame, then the connection closes."""
    p.wait(lambda x: x.closed)
    assert p.goaway is not None, f"no GOAWAY (closed={p.closed}); received {_seen(p)}"
    assert p.goaway[0] == code, f"GOAWAY code {p.goaway[0]:#x}, expected {code:#x}"
    assert p.closed, "GOAWAY for a connection error, but the connection stayed open"
    assert p.frames[-1][0] == GOAWAY, f"frames after the GOAWAY: {_seen(p)}"


def still_serves(p, env):
    """The connection keeps working: a new stream gets a normal answer."""
    sid = p.sid()
    p.send(p.headers_frame(sid, req(f"/after/{jgtest.marker()}")))
    assert p.wait(lambda x: sid in x.ended or sid in x.rst or x.goaway is not None), \
        f"no answer on a new stream {sid} after the stream error; received {_seen(p)}"
    assert p.goaway is None and sid not in p.rst, f"goaway={p.goaway} rst={p.rst}"
    assert p.headers[sid][0][":status"] == "200"


def stream_error(p, sid, code, env=None):
    """RFC 9113 section 5.4.2: RST_STREAM(code) on the stream; the connection keeps serving."""
    assert p.wait(lambda x: sid in x.rst or x.goaway is not None), \
        f"no RST_STREAM on stream {sid}; received {_seen(p)} goaway={p.goaway}"
    assert p.goaway is None, f"connection error {p.goaway} where a stream error was due"
    assert p.rst[sid] == code, f"RST_STREAM code {p.rst[sid]:#x}, expected {code:#x}"
    assert sid not in p.headers, f"stream {sid} was answered {p.headers[sid]} as well as reset"
    if env is not None:
        still_serves(p, env)


def stream_or_conn(p, sid, code):
    """A stream error the endpoint may raise to a connection error (RFC 9113 section 5.4.1)."""
    assert p.wait(lambda x: sid in x.rst or x.goaway is not None), \
        f"neither RST_STREAM on {sid} nor GOAWAY; received {_seen(p)}"
    if p.goaway is not None:
        conn_error(p, code)
    else:
        assert p.rst[sid] == code, f"RST_STREAM code {p.rst[sid]:#x}, expected {code:#x}"


def response(p, sid, status="200"):
    assert p.wait(lambda x: sid in x.ended or sid in x.rst or x.goaway is not None), \
        f"no complete response on stream {sid}; received {_seen(p)}"
    assert sid not in p.rst and p.goaway is None, f"rst={p.rst} goaway={p.goaway}"
    assert p.headers[sid][0][":status"] == status, p.headers[sid]
    return p.data.get(sid, b"")


def ignored(p, env):
    """Nothing happened: the next PING is answered and a new request served."""
    assert p.ping(), f"no PING ACK; received {_seen(p)} goaway={p.goaway}"
    assert p.goaway is None and not p.rst, f"goaway={p.goaway} rst={p.rst}"
    still_serves(p, env)


def not_forwarded(env, mark):
    time.sleep(0.05)
    assert env["up"].matching(mark) == [], "a malformed request reached the upstream"


# ---- cases ----

CASES = []


def case(cid, **opts):
    def reg(fn):
        fn.cid = cid
        fn.opts = opts
        CASES.append(fn)
        return fn
    return reg


def post_open(p, path=None):
    """A POST whose body is still to come: the stream is open."""
    sid = p.sid()
    p.send(p.headers_frame(sid, req(path or f"/echo-body?{jgtest.marker()}", "POST"), END_HEADERS))
    return sid


def get_pending(p):
    """A GET held 500 ms by the upstream: the stream is half-closed (remote) meanwhile."""
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/slow/500")))
    return sid


def get_done(p):
    """A GET answered in full: the stream is closed."""
    sid = p.sid()
    p.send(p.headers_frame(sid, req()))
    response(p, sid)
    return sid


# generic: the ordinary exchanges h2spec's "generic" section checks


@case("generic-1-preface-then-settings", handshake=False)
def _(p, env):
    p.send(h2util.PREFACE + settings())
    assert p.wait(lambda x: x.frames)
    assert p.frames[0][0] == SETTINGS and not p.frames[0][1] & ACK, "the server preface is a SETTINGS frame"
    assert p.wait(lambda x: x.settings_acks >= 1)


@case("generic-4.1-get")
def _(p, env):
    m = jgtest.marker()
    sid = p.sid()
    p.send(p.headers_frame(sid, req(f"/g/{m}")))
    assert m in response(p, sid).decode()
    assert env["up"].matching(m)[0]["method"] == "GET"


@case("generic-4.2-head")
def _(p, env):
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/", "HEAD")))
    assert response(p, sid) == b""


@case("generic-4.3-post")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, 0, sid, b"abc") + frame(DATA, END_STREAM, sid, b"def"))
    assert response(p, sid) == b"abcdef"


@case("generic-4.4-post-with-trailers")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, 0, sid, b"abc") + p.headers_frame(sid, [("x-trailer", "t")]))
    assert response(p, sid) == b"abc"


@case("generic-3.1-data-padded")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, PADDED | END_STREAM, sid, bytes([4]) + b"hello" + b"\0" * 4))
    assert response(p, sid) == b"hello"


@case("generic-3.2-headers-padded-with-priority")
def _(p, env):
    sid = p.sid()
    block = p.block(req())
    payload = bytes([3]) + struct.pack(">IB", 0, 200) + block + b"\0" * 3
    p.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG, sid, payload))
    response(p, sid)


@case("generic-3.3-priority-frames")
def _(p, env):
    p.send(priority(1, 0, 0) + priority(3, 1, 255, exclusive=True) + priority(7, 0, 15))
    sid = p.sid()  # 1: lower than an idle stream given a priority (7)
    p.send(p.headers_frame(sid, req()))
    response(p, sid)


@case("generic-2-frames-on-half-closed-and-closed")
def _(p, env):
    sid = get_pending(p)
    p.send(window_update(sid, 100) + priority(sid, 0, 10))
    response(p, sid)
    p.send(priority(sid, 0, 20) + window_update(sid, 1) + rst(sid, CANCEL))
    ignored(p, env)


@case("generic-3.5-settings-each-parameter")
def _(p, env):
    p.send(settings((S_HEADER_TABLE_SIZE, 4096), (S_ENABLE_PUSH, 0), (S_MAX_CONCURRENT_STREAMS, 100),
                    (S_INITIAL_WINDOW_SIZE, 65535), (S_MAX_FRAME_SIZE, 16384), (S_MAX_HEADER_LIST_SIZE, 65536)))
    assert p.wait(lambda x: x.settings_acks >= 2)
    ignored(p, env)


@case("generic-3.10-continuation")
def _(p, env):
    sid = p.sid()
    block = p.block(req(extra=[("x-c", "v" * 50)]))
    p.send(frame(HEADERS, END_STREAM, sid, block[:5]) + frame(CONTINUATION, 0, sid, block[5:20]) +
           frame(CONTINUATION, END_HEADERS, sid, block[20:]))
    response(p, sid)


@case("generic-7-unknown-error-code")
def _(p, env):
    sid = post_open(p)
    p.send(rst(sid, 0xFF))
    ignored(p, env)


@case("generic-5-hpack-representations")
def _(p, env):
    # Literal with incremental indexing (new name and indexed name), then the same fields indexed from
    # the dynamic table, never-indexed and without indexing, raw and Huffman coded.
    for huffman in (False, True, False):
        sid = p.sid()
        hdrs = req(extra=[("x-new", "one"), ("user-agent", "h2spec-like"),
                          hpack.NeverIndexedHeaderTuple("x-never", "secret")])
        p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, p.enc.encode(hdrs, huffman=huffman)))
        response(p, sid)
    sid = p.sid()
    # Without indexing: 0000 name-index, value.
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, p.block(req()) + b"\x0f\x2b\x03abc"))
    response(p, sid)


@case("generic-5-hpack-table-size-updates")
def _(p, env):
    sid = p.sid()
    # Two updates at the start of a block (to 0, then back to 4096), RFC 7541 section 4.2.
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, b"\x20\x3f\xe1\x1f" + hpack.Encoder().encode(req())))
    response(p, sid)


# http2 3.5 / 4.x


@case("http2-3.5-invalid-preface", handshake=False)
def _(p, env):
    # RFC 9113 section 3.4: a connection error of type PROTOCOL_ERROR; the GOAWAY may be omitted.
    p.send(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n" + settings())
    assert p.wait(lambda x: x.closed), "connection left open after an invalid preface"
    assert p.goaway is None or p.goaway[0] == PROTOCOL_ERROR
    assert not p.headers


@case("http2-3.5-preface-not-followed-by-settings", handshake=False)
def _(p, env):
    # RFC 9113 section 3.4: the preface "MUST be followed by a SETTINGS frame"; anything else is a
    # connection error PROTOCOL_ERROR.
    p.send(h2util.PREFACE + p.headers_frame(1, req()))
    conn_error(p, PROTOCOL_ERROR)
    assert 1 not in p.headers


@case("generic-3.8-client-goaway-in-flight-request-served")
def _(p, env):
    # A client's GOAWAY (NO_ERROR) names the last server-initiated stream it accepts; its own requests
    # in flight are still answered (RFC 9113 section 6.8), after which the connection may close.
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/slow/200")))
    p.send(frame(GOAWAY, 0, 0, struct.pack(">II", 0, NO_ERROR)))
    response(p, sid)


@case("http2-4.1-unknown-type")
def _(p, env):
    sid = get_pending(p)
    p.send(frame(UNKNOWN_TYPE, 0, 0, b"\x01\x02") + frame(UNKNOWN_TYPE, 0xFF, sid, b"xyz") +
           frame(0xFF, 0, 99, b""))
    response(p, sid)
    ignored(p, env)


@case("http2-4.1-unknown-flags")
def _(p, env):
    p.send(frame(PING, 0x16, 0, b"flagged!"))  # 0x16: no ACK bit, only undefined ones
    assert p.wait(lambda x: b"flagged!" in x.ping_acks), f"no PING ACK; received {_seen(p)}"
    sid = p.sid()
    p.send(p.headers_frame(sid, req(), END_STREAM | END_HEADERS | 0xC2))  # 0x40/0x80/0x02 undefined
    response(p, sid)


@case("http2-4.1-reserved-bit")
def _(p, env):
    p.send(frame(PING, 0, 0x80000000, b"reserved"))
    assert p.wait(lambda x: b"reserved" in x.ping_acks), f"no PING ACK; received {_seen(p)}"
    sid = p.sid()
    p.send(p.headers_frame(sid | 0x80000000, req()))
    response(p, sid)


@case("http2-4.2-data-16384")
def _(p, env):
    sid = post_open(p)
    body = os.urandom(16384)
    p.send(frame(DATA, END_STREAM, sid, body))
    # the echo comes back in frames of at most 16384 octets (our SETTINGS_MAX_FRAME_SIZE)
    assert response(p, sid) == body
    assert max(p.data_frames[sid]) <= 16384


@case("http2-4.2-data-over-max-frame-size")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, END_STREAM, sid, b"x" * 16385))
    stream_or_conn(p, sid, FRAME_SIZE_ERROR)


@case("http2-4.2-headers-over-max-frame-size")
def _(p, env):
    # a frame carrying a field block alters the connection's HPACK state: connection error (4.2)
    sid = p.sid()
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                 p.enc.encode(req(extra=[("x-pad", "p" * 16500)]), huffman=False)[:16385]))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-4.3-invalid-header-block")
def _(p, env):
    sid = p.sid()
    # literal with :authority's name, value length 15 but no value bytes
    p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, b"\x82\x86\x84\x41\x0f"))
    conn_error(p, COMPRESSION_ERROR)


@case("http2-4.3-priority-inside-header-block")
def _(p, env):
    sid = p.sid()
    p.send(frame(HEADERS, END_STREAM, sid, p.block(req())) + priority(sid))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-4.3-headers-other-stream-inside-header-block")
def _(p, env):
    sid = p.sid()
    p.send(frame(HEADERS, END_STREAM, sid, p.block(req())) + p.headers_frame(sid + 2, req()))
    conn_error(p, PROTOCOL_ERROR)


# 5.1 stream states


@case("http2-5.1-idle-data")
def _(p, env):
    p.send(frame(DATA, END_STREAM, 1, b"x"))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1-6.4-idle-rst-stream")
def _(p, env):
    p.send(rst(1, CANCEL))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1-idle-window-update")
def _(p, env):
    p.send(window_update(1, 100))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1-idle-continuation")
def _(p, env):
    p.send(frame(CONTINUATION, END_HEADERS, 1, p.block(req())))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1-6.1-half-closed-remote-data")
def _(p, env):
    sid = get_pending(p)
    p.send(frame(DATA, END_STREAM, sid, b"late"))
    stream_or_conn(p, sid, STREAM_CLOSED)


@case("http2-5.1-8.1-half-closed-remote-headers")
def _(p, env):
    sid = get_pending(p)
    p.send(p.headers_frame(sid, [("x-trailer", "t")]))
    stream_or_conn(p, sid, STREAM_CLOSED)


@case("http2-5.1-half-closed-remote-continuation")
def _(p, env):
    sid = get_pending(p)
    p.send(frame(CONTINUATION, END_HEADERS, sid, p.block([("x-c", "c")])))
    # a CONTINUATION outside a header block is also a connection error PROTOCOL_ERROR (6.10)
    assert p.wait(lambda x: sid in x.rst or x.goaway is not None)
    if p.goaway is not None and p.goaway[0] == PROTOCOL_ERROR:
        conn_error(p, PROTOCOL_ERROR)
    else:
        stream_or_conn(p, sid, STREAM_CLOSED)


def _closed_after_rst(p):
    sid = post_open(p)
    p.send(rst(sid, CANCEL))
    assert p.ping()
    return sid


def _closed_reaction(p, sid, allow_protocol=False):
    # 5.1 closed: "An endpoint that receives any frame other than PRIORITY after receiving a
    # RST_STREAM MUST treat that as a stream error of type STREAM_CLOSED", and frames after END_STREAM
    # a connection error of type STREAM_CLOSED.
    assert p.wait(lambda x: sid in x.rst or x.goaway is not None), \
        f"frame on a closed stream ignored; received {_seen(p)}"
    if allow_protocol and p.goaway is not None and p.goaway[0] == PROTOCOL_ERROR:
        conn_error(p, PROTOCOL_ERROR)
    else:
        stream_or_conn(p, sid, STREAM_CLOSED)


for _kind, _mk in (("after-rst", _closed_after_rst), ("after-end-stream", get_done)):
    def _data(p, env, mk=_mk):
        sid = mk(p)
        p.send(frame(DATA, END_STREAM, sid, b"late"))
        _closed_reaction(p, sid)

    def _headers(p, env, mk=_mk):
        sid = mk(p)
        p.send(p.headers_frame(sid, req()))
        _closed_reaction(p, sid)

    def _cont(p, env, mk=_mk):
        sid = mk(p)
        p.send(frame(CONTINUATION, END_HEADERS, sid, p.block([("x-c", "c")])))
        _closed_reaction(p, sid, allow_protocol=True)

    case(f"http2-5.1-closed-{_kind}-data")(_data)
    case(f"http2-5.1-closed-{_kind}-headers")(_headers)
    case(f"http2-5.1-closed-{_kind}-continuation")(_cont)


def _split_sends(p, data, cuts):
    """`data` in separate TCP writes (TLS records) cut at `cuts`, with a pause between them so that
    jwtgate reads each on its own."""
    prev = 0
    for cut in list(cuts) + [len(data)]:
        assert p.send(data[prev:cut])
        prev = cut
        time.sleep(0.1)


@case("http2-5.1-closed-after-end-stream-data-split-header")
def _(p, env):
    # jwtgate finds the DATA frame's header in the bytes it reads (nghttp2 ignores DATA on the
    # closed streams it dropped): a header cut across three reads, the first read also ending a
    # PING, must still be judged.
    sid = get_done(p)
    data = frame(PING, 0, 0, b"12345678") + frame(DATA, END_STREAM, sid, b"late")
    _split_sends(p, data, (9 + 8 + 2, 9 + 8 + 6))
    _closed_reaction(p, sid)


@case("http2-5.1-8.1-data-after-early-431-split-header-ignored")
def _(p, env):
    # the same cut on a stream jwtgate reset: the frames are ignored (section 5.1)
    sid = p.sid()
    hdrs = req(f"/early/{jgtest.marker()}", "POST", extra=[(f"x-h{i}", "v") for i in range(120)])
    p.send(p.headers_frame(sid, hdrs, END_HEADERS))
    assert p.wait(lambda x: sid in x.ended or sid in x.rst or x.goaway is not None)
    assert p.headers[sid][0][":status"] == "431"
    _split_sends(p, frame(DATA, 0, sid, b"x" * 100) + frame(DATA, 0, sid, b"y" * 100), (4, 109 + 8))
    ignored(p, env)


def _answered_early(p, env, extra=(), content_length=None):
    # RFC 9113 section 8.1: a server may answer before the request is complete and then reset the
    # stream (NO_ERROR); the client's frames already in flight "MUST" be ignored (section 5.1,
    # closed), not taken for a protocol error that would end every other stream of the connection.
    sid = p.sid()
    hdrs = req(f"/early/{jgtest.marker()}", "POST", extra=list(extra) +
               ([("content-length", str(content_length))] if content_length else []))
    p.send(p.headers_frame(sid, hdrs, END_HEADERS))
    assert p.wait(lambda x: sid in x.ended or sid in x.rst or x.goaway is not None)
    status = p.headers[sid][0][":status"] if sid in p.headers else None
    p.send(frame(DATA, 0, sid, b"x" * 1000) + frame(DATA, 0, sid, b"y" * 1000))  # the body goes on
    ignored(p, env)
    return status


@case("http2-5.1-8.1-data-after-early-431-ignored")
def _(p, env):
    assert _answered_early(p, env, extra=[(f"x-h{i}", "v") for i in range(120)]) == "431"


@case("http2-5.1-8.1-data-after-early-413-ignored")
def _(p, env):
    assert _answered_early(p, env, content_length=2 * 1024 * 1024) == "413"


@case("http2-5.1.1-even-stream-id")
def _(p, env):
    p.send(p.headers_frame(2, req()))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1.1-decreasing-stream-id")
def _(p, env):
    p.send(p.headers_frame(5, req()))
    response(p, 5)
    p.send(p.headers_frame(3, req()))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-5.1.2-exceed-max-concurrent-streams")
def _(p, env):
    limit = p.server_settings.get(S_MAX_CONCURRENT_STREAMS)
    assert limit == MAX_STREAMS
    sids = [post_open(p) for _ in range(limit + 1)]
    assert p.wait(lambda x: x.rst or x.goaway is not None), f"all {limit + 1} streams admitted"
    if p.goaway is not None:
        # nghttp2 raises this stream error to a connection error once our SETTINGS are acknowledged
        # (section 5.4.1 allows it); the admitted streams are not cut short by the GOAWAY's last id
        assert p.goaway[1] == sids[-2]
        conn_error(p, PROTOCOL_ERROR)
        return
    assert list(p.rst) == [sids[-1]] and p.rst[sids[-1]] in (REFUSED_STREAM, PROTOCOL_ERROR), p.rst
    # the admitted streams still work
    p.send(frame(DATA, END_STREAM, sids[0], b"ok"))
    assert response(p, sids[0]) == b"ok"


@case("http2-5.3.1-headers-depends-on-itself")
def _(p, env):
    sid = p.sid()
    payload = struct.pack(">IB", sid, 15) + p.block(req())
    p.send(frame(HEADERS, END_STREAM | END_HEADERS | PRIORITY_FLAG, sid, payload))
    stream_or_conn(p, sid, PROTOCOL_ERROR)


@case("http2-5.3.1-priority-depends-on-itself")
def _(p, env):
    p.send(priority(1, 1))
    stream_or_conn(p, 1, PROTOCOL_ERROR)


@case("http2-5.4.1-goaway-after-connection-error")
def _(p, env):
    sid = get_done(p)
    p.send(frame(PING, 0, 0, b"123456"))  # wrong length
    conn_error(p, FRAME_SIZE_ERROR)
    assert p.goaway[1] == sid, f"GOAWAY last stream id {p.goaway[1]}, processed up to {sid}"


@case("http2-5.4.1-connection-closed-after-goaway")
def _(p, env):
    # "After sending the GOAWAY frame for an error condition, the endpoint MUST close the TCP
    # connection"; jwtgate(8) promises it within 100 ms, a lingering read of a second is too long.
    p.send(frame(PING, 0, 0, b"123456"))
    assert p.wait(lambda x: x.goaway is not None), f"no GOAWAY; received {_seen(p)}"
    t0 = time.monotonic()
    assert p.goaway[0] == FRAME_SIZE_ERROR
    assert p.wait(lambda x: x.closed, timeout=3.0), "connection open 3 s after GOAWAY"
    assert time.monotonic() - t0 < 0.6, f"closed {time.monotonic() - t0:.2f} s after the GOAWAY"


@case("http2-5.5-unknown-extension-frame")
def _(p, env):
    sid = post_open(p)
    p.send(frame(0xFE, 0, 0, b"ext") + frame(0xFE, 0x01, sid, b"ext"))
    p.send(frame(DATA, END_STREAM, sid, b"body"))
    assert response(p, sid) == b"body"
    ignored(p, env)


@case("http2-5.5-unknown-extension-frame-inside-header-block")
def _(p, env):
    sid = p.sid()
    block = p.block(req())
    p.send(frame(HEADERS, END_STREAM, sid, block[:3]) + frame(0xFE, 0, sid, b"ext") +
           frame(CONTINUATION, END_HEADERS, sid, block[3:]))
    conn_error(p, PROTOCOL_ERROR)


# 6.x frame definitions


@case("http2-6.1-data-stream-0")
def _(p, env):
    post_open(p)
    p.send(frame(DATA, 0, 0, b"x"))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.1-data-bad-padding")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, PADDED | END_STREAM, sid, bytes([6]) + b"hello"))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.2-headers-stream-0")
def _(p, env):
    p.send(p.headers_frame(0, req()))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.2-headers-bad-padding")
def _(p, env):
    block = p.block(req())
    p.send(frame(HEADERS, END_STREAM | END_HEADERS | PADDED, 1, bytes([len(block) + 1]) + block))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.2-continuation-missing")
def _(p, env):
    sid = p.sid()
    p.send(frame(HEADERS, 0, sid, p.block(req("/", "POST"))) + frame(DATA, END_STREAM, sid, b"x"))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.3-priority-stream-0")
def _(p, env):
    p.send(priority(0))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.3-priority-wrong-length")
def _(p, env):
    sid = get_pending(p)
    p.send(frame(PRIORITY, 0, sid, b"\0\0\0\0"))
    stream_or_conn(p, sid, FRAME_SIZE_ERROR)


@case("http2-6.4-rst-stream-0")
def _(p, env):
    p.send(rst(0, CANCEL))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.4-rst-stream-wrong-length")
def _(p, env):
    sid = post_open(p)
    p.send(frame(RST_STREAM, 0, sid, b"\0\0\0"))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-6.5-settings-ack-with-payload")
def _(p, env):
    p.send(frame(SETTINGS, ACK, 0, struct.pack(">HI", S_ENABLE_PUSH, 0)))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-6.5-settings-stream-non-0")
def _(p, env):
    p.send(settings((S_ENABLE_PUSH, 0), sid=1))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.5-settings-length-not-multiple-of-6")
def _(p, env):
    p.send(frame(SETTINGS, 0, 0, b"\0\x02\0\0\0\0\0\0\0"))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-6.5.2-enable-push-2")
def _(p, env):
    p.send(settings((S_ENABLE_PUSH, 2)))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.5.2-6.9.2-initial-window-size-over-max")
def _(p, env):
    p.send(settings((S_INITIAL_WINDOW_SIZE, 2**31)))
    conn_error(p, FLOW_CONTROL_ERROR)


@case("http2-6.5.2-max-frame-size-below-initial")
def _(p, env):
    p.send(settings((S_MAX_FRAME_SIZE, 16383)))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.5.2-max-frame-size-over-max")
def _(p, env):
    p.send(settings((S_MAX_FRAME_SIZE, 2**24)))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.5.2-unknown-setting-ignored")
def _(p, env):
    p.send(settings((0xFF, 1), (0x4242, 0xFFFFFFFF)))
    assert p.wait(lambda x: x.settings_acks >= 2), f"no SETTINGS ACK; received {_seen(p)}"
    ignored(p, env)


@case("http2-6.5.3-settings-ack-and-last-value-wins")
def _(p, env):
    # the values of one frame apply in order: the window is 1, not 100
    p.send(settings((S_INITIAL_WINDOW_SIZE, 100), (S_INITIAL_WINDOW_SIZE, 1)))
    assert p.wait(lambda x: x.settings_acks >= 2), f"no SETTINGS ACK; received {_seen(p)}"
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/big/1000")))
    assert p.wait(lambda x: sid in x.data_frames or x.goaway is not None or sid in x.rst)
    assert p.ping()
    assert p.data_frames[sid] == [1], p.data_frames[sid]


@case("http2-6.7-ping-ack")
def _(p, env):
    p.send(frame(PING, 0, 0, b"h2spec!!"))
    assert p.wait(lambda x: x.ping_acks)
    acks = [(f, s, pl) for t, f, s, pl in p.frames if t == PING]
    assert acks == [(ACK, 0, b"h2spec!!")]


@case("http2-6.7-ping-ack-not-answered")
def _(p, env):
    p.send(frame(PING, ACK, 0, b"unsolict"))
    assert p.ping()
    assert len([1 for t, *_ in p.frames if t == PING]) == 1, "a PING ACK was answered"
    assert b"unsolict" not in p.ping_acks


@case("http2-6.7-ping-stream-non-0")
def _(p, env):
    p.send(frame(PING, 0, 1, b"12345678"))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.7-ping-wrong-length")
def _(p, env):
    p.send(frame(PING, 0, 0, b"123456789"))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-6.8-goaway-stream-non-0")
def _(p, env):
    p.send(frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR)))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.9-window-update-0-connection")
def _(p, env):
    p.send(window_update(0, 0))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.9-window-update-0-stream")
def _(p, env):
    sid = post_open(p)
    p.send(window_update(sid, 0))
    stream_or_conn(p, sid, PROTOCOL_ERROR)


@case("http2-6.9-window-update-wrong-length")
def _(p, env):
    p.send(frame(WINDOW_UPDATE, 0, 0, b"\0\0\0\x01\0"))
    conn_error(p, FRAME_SIZE_ERROR)


@case("http2-6.9.1-connection-window-overflow")
def _(p, env):
    p.send(window_update(0, 2**31 - 1))
    conn_error(p, FLOW_CONTROL_ERROR)


@case("http2-6.9.1-stream-window-overflow")
def _(p, env):
    sid = post_open(p)
    p.send(window_update(sid, 2**31 - 1))
    stream_error(p, sid, FLOW_CONTROL_ERROR, env)


@case("http2-6.9.1-initial-window-1", local_settings=[(S_INITIAL_WINDOW_SIZE, 1)])
def _(p, env):
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/big/100")))
    assert p.wait(lambda x: sid in x.data_frames or x.goaway is not None or sid in x.rst)
    assert p.ping()
    assert p.data_frames[sid] == [1]
    p.send(window_update(sid, 99))
    assert p.wait(lambda x: sid in x.ended)
    assert p.data[sid] == jgtest.pattern(100)


@case("http2-6.9.2-initial-window-change-applies-to-open-streams",
      local_settings=[(S_INITIAL_WINDOW_SIZE, 0)])
def _(p, env):
    sid = p.sid()
    p.send(p.headers_frame(sid, req("/big/1000")))
    assert p.wait(lambda x: sid in x.headers), f"no response HEADERS; received {_seen(p)}"
    assert p.ping() and sid not in p.data_frames, "DATA sent into a zero window"
    p.send(settings((S_INITIAL_WINDOW_SIZE, 100)))
    assert p.wait(lambda x: sum(x.data_frames.get(sid, [])) >= 100)
    assert p.ping() and sum(p.data_frames[sid]) == 100
    # 100 received with a window of 100: a new initial size of 50 leaves the stream window at -50
    # (6.9.2: it may become negative); a WINDOW_UPDATE of 60 then allows exactly 10 more octets.
    p.send(settings((S_INITIAL_WINDOW_SIZE, 50)))
    assert p.wait(lambda x: x.settings_acks >= 3)
    p.send(window_update(sid, 60))
    assert p.wait(lambda x: sum(x.data_frames.get(sid, [])) >= 110)
    assert p.ping() and sum(p.data_frames[sid]) == 110, p.data_frames[sid]
    assert p.goaway is None and not p.rst


@case("http2-6.10-continuation-other-stream")
def _(p, env):
    sid = p.sid()
    block = p.block(req())
    p.send(frame(HEADERS, END_STREAM, sid, block[:3]) + frame(CONTINUATION, END_HEADERS, sid + 2, block[3:]))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.10-continuation-after-end-headers")
def _(p, env):
    sid = p.sid()
    p.send(frame(HEADERS, END_HEADERS, sid, p.block(req("/", "POST"))) +
           frame(CONTINUATION, END_HEADERS, sid, p.block([("x-c", "c")])))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.10-continuation-after-continuation-end-headers")
def _(p, env):
    sid = p.sid()
    block = p.block(req("/", "POST"))
    p.send(frame(HEADERS, 0, sid, block[:3]) + frame(CONTINUATION, END_HEADERS, sid, block[3:]) +
           frame(CONTINUATION, END_HEADERS, sid, p.block([("x-c", "c")])))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.10-continuation-after-data")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, 0, sid, b"x") + frame(CONTINUATION, END_HEADERS, sid, p.block([("x-c", "c")])))
    conn_error(p, PROTOCOL_ERROR)


@case("http2-6.10-continuation-stream-0")
def _(p, env):
    sid = p.sid()
    block = p.block(req())
    p.send(frame(HEADERS, END_STREAM, sid, block[:3]) + frame(CONTINUATION, END_HEADERS, 0, block[3:]))
    conn_error(p, PROTOCOL_ERROR)


# 8.x HTTP semantics: malformed requests are stream errors PROTOCOL_ERROR (RFC 9113 section 8.1.1),
# the connection keeps serving and nothing reaches the upstream.


def _malformed(hdrs_fn, trailers=None):
    def run(p, env):
        mark = jgtest.marker()
        sid = p.sid()
        hdrs = hdrs_fn(f"/malformed/{mark}")
        if trailers is None:
            p.send(p.headers_frame(sid, hdrs))
        else:
            p.send(p.headers_frame(sid, hdrs, END_HEADERS) + frame(DATA, 0, sid, b"x") +
                   p.headers_frame(sid, trailers))
        stream_error(p, sid, PROTOCOL_ERROR, env)
        if trailers is None:
            not_forwarded(env, mark)
    return run


def _without(name):
    return lambda path: [h for h in req(path) if h[0] != name]


def _dup(name):
    return lambda path: req(path)[:4] + [h for h in req(path) if h[0] == name]


MALFORMED = {
    "8.1.2-uppercase-field-name": lambda path: req(path, extra=[("X-Upper", "v")]),
    "8.1.2.1-unknown-pseudo-header": lambda path: req(path)[:1] + [(":foo", "bar")] + req(path)[1:],
    "8.1.2.1-response-pseudo-header-in-request": lambda path: req(path, extra=[(":status", "200")]),
    "8.1.2.1-pseudo-header-after-regular": lambda path: req(path)[:3] + [("x-a", "b")] + req(path)[3:],
    "8.1.2.2-connection": lambda path: req(path, extra=[("connection", "keep-alive")]),
    "8.1.2.2-keep-alive": lambda path: req(path, extra=[("keep-alive", "timeout=5")]),
    "8.1.2.2-transfer-encoding": lambda path: req(path, "POST", extra=[("transfer-encoding", "chunked")]),
    "8.1.2.2-proxy-connection": lambda path: req(path, extra=[("proxy-connection", "keep-alive")]),
    "8.1.2.2-upgrade": lambda path: req(path, extra=[("upgrade", "websocket")]),
    "8.1.2.2-te-not-trailers": lambda path: req(path, extra=[("te", "trailers, deflate")]),
    "8.1.2.3-empty-path": lambda path: req("")[:3] + [(":path", "")],
    "8.1.2.3-missing-method": _without(":method"),
    "8.1.2.3-missing-scheme": _without(":scheme"),
    "8.1.2.3-missing-path": _without(":path"),
    "8.1.2.3-duplicate-method": _dup(":method"),
    "8.1.2.3-duplicate-scheme": _dup(":scheme"),
    "8.1.2.3-duplicate-path": _dup(":path"),
    "8.1.2.3-path-not-origin-form": lambda path: req(path)[:3] + [(":path", "malformed" + path)],
    "8.1.2.6-content-length-without-data": lambda path: req(path, "POST", extra=[("content-length", "3")]),
    # RFC 9113 section 8.2.1: field names and values an HTTP/1.1 upstream would read differently
    "8.2.1-value-with-crlf": lambda path: req(path, extra=[("x-a", "b\r\nx-injected: 1")]),
    "8.2.1-value-with-nul": lambda path: req(path, extra=[("x-a", "b\x00c")]),
    "8.2.1-value-with-leading-space": lambda path: req(path, extra=[("x-a", " b")]),
    "8.2.1-value-with-trailing-tab": lambda path: req(path, extra=[("x-a", "b\t")]),
    "8.2.1-name-with-space": lambda path: req(path, extra=[("x a", "b")]),
    "8.2.1-name-with-colon": lambda path: req(path, extra=[("x:a", "b")]),
    "8.2.1-empty-name": lambda path: req(path, extra=[("", "b")]),
}
for _name, _fn in MALFORMED.items():
    case(f"http2-{_name}")(_malformed(_fn))

case("http2-8.1.2.1-pseudo-header-in-trailers")(
    _malformed(lambda path: req(path, "POST"), trailers=[(":method", "POST")]))


@case("http2-8.1-trailers-without-end-stream")
def _(p, env):
    sid = post_open(p)
    p.send(frame(DATA, 0, sid, b"x") + p.headers_frame(sid, [("x-trailer", "t")], END_HEADERS))
    stream_error(p, sid, PROTOCOL_ERROR, env)


@case("http2-8.1.2-te-trailers-allowed")
def _(p, env):
    sid = p.sid()
    p.send(p.headers_frame(sid, req(extra=[("te", "trailers")])))
    response(p, sid)


def _content_length(parts, declared):
    def run(p, env):
        mark = jgtest.marker()
        sid = p.sid()
        p.send(p.headers_frame(sid, req(f"/echo-body?{mark}", "POST", extra=[("content-length", str(declared))]),
                               END_HEADERS))
        for i, part in enumerate(parts):
            p.send(frame(DATA, END_STREAM if i == len(parts) - 1 else 0, sid, part))
        stream_error(p, sid, PROTOCOL_ERROR, env)
    return run


case("http2-8.1.2.6-content-length-above-data")(_content_length([b"abc"], 4))
case("http2-8.1.2.6-content-length-below-data")(_content_length([b"abcdef"], 4))
case("http2-8.1.2.6-content-length-below-sum-of-data")(_content_length([b"ab", b"cd", b"ef"], 5))


@case("http2-8.2-client-push-promise")
def _(p, env):
    sid = get_pending(p)
    p.send(frame(PUSH_PROMISE, END_HEADERS, sid, struct.pack(">I", 2) + p.block(req())))
    conn_error(p, PROTOCOL_ERROR)


# hpack: RFC 7541 decoding errors are connection errors COMPRESSION_ERROR (RFC 9113 section 4.3)


def _hpack(bad, at_start=False):
    def run(p, env):
        sid = p.sid()
        block = bad + p.block(req()) if at_start else p.block(req()) + bad
        p.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, block))
        conn_error(p, COMPRESSION_ERROR)
    return run


HPACK = {
    "2.3.3-indexed-field-invalid-index": b"\xc6",  # index 70: 61 static + empty dynamic table
    "2.3.3-literal-name-invalid-index": b"\x7f\x07\x01a",  # name index 70
    "5.2-huffman-eos-in-string": b"\x40\x01a\x84\xff\xff\xff\xff",
    "5.2-huffman-padding-over-7-bits": b"\x40\x01a\x82\x1f\xff",  # 'a' then 11 bits of 1
    "5.2-huffman-padding-not-eos-prefix": b"\x40\x01a\x81\x18",  # 'a' then 000
    "6.1-indexed-field-index-0": b"\x80",
    "6.3-table-size-update-not-at-start": b"\x20",
}
for _name, _bad in HPACK.items():
    case(f"hpack-{_name}")(_hpack(_bad))
case("hpack-4.2-table-size-update-over-limit")(_hpack(b"\x3f\xe2\x1f", at_start=True))  # 4097 > 4096


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    d = str(tmp_path_factory.mktemp("h2spec"))
    cert, key = h2util.make_cert(d)
    state = {}

    def config(port):
        state["tls_port"] = jgtest.free_port()
        state["admin"] = jgtest.free_port()
        cfg = jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
                                 limits={"http2MaxConcurrentStreams": MAX_STREAMS, "maxBodySize": "1MiB"},
                                 admin={"address": f"127.0.0.1:{state['admin']}"})
        cfg["listeners"].append({"name": "https", "address": f"127.0.0.1:{state['tls_port']}",
                                 "tls": {"certificateFile": cert, "privateKeyFile": key}})
        return cfg

    px = start_proxy_module(config)
    assert jgtest.wait_port(state["tls_port"]) and jgtest.wait_port(state["admin"])
    return {"up": up, "px": px, "h2c": px.port, "tls": state["tls_port"], "admin": state["admin"]}


@pytest.mark.parametrize("transport", ["h2c", "tls"])
@pytest.mark.parametrize("spec", CASES, ids=[c.cid for c in CASES])
def test_h2spec(env, transport, spec):
    p = Peer(env[transport], transport == "tls", local_settings=spec.opts.get("local_settings", ()),
             handshake=spec.opts.get("handshake", True))
    try:
        spec(p, env)
    finally:
        p.close()
    assert env["px"].proc.poll() is None, "jwtgate exited"


def goaways_sent(env):
    """jwtgate_http2_goaways_sent_total by reason, from /metrics."""
    r = jgtest.get(env["admin"], "/metrics", host="localhost")
    assert r.status == 200
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("jwtgate_http2_goaways_sent_total{"):
            labels, value = line.split("}", 1)
            out[labels.split('reason="', 1)[1].rstrip('"')] = float(value)
    return out


def test_connection_errors_are_counted_as_goaways_sent(env):
    """jwtgate(8): jwtgate_http2_goaways_sent_total{reason} counts every GOAWAY sent, the ones for
    connection errors that nghttp2 finds (frame size, HPACK) as well as those jwtgate finds."""
    before = goaways_sent(env)
    for bad, code in ((frame(GOAWAY, 0, 1, struct.pack(">II", 0, NO_ERROR)), PROTOCOL_ERROR),
                      (frame(PING, 0, 0, b"123"), FRAME_SIZE_ERROR),
                      (frame(HEADERS, END_STREAM | END_HEADERS, 1, b"\x80"), COMPRESSION_ERROR)):
        p = Peer(env["h2c"], False)
        try:
            p.send(bad)
            conn_error(p, code)
        finally:
            p.close()
    after = goaways_sent(env)
    assert after["protocol_error"] - before["protocol_error"] == 1, (before, after)
    assert after["other"] - before["other"] == 2, (before, after)
