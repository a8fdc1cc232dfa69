"""RST_STREAM only for real aborts: a stream that closed normally in both directions is never reset.

An upstream guarding against rapid reset (CVE-2023-44487; Debian's nghttp2 1.52.0-1+deb12u3 counts
the RST_STREAM frames it receives) answers GOAWAY once a connection sent about a thousand, and every
call in flight on it fails. jwtgate used to send RST_STREAM(CANCEL) after every complete upstream
response (the end was seen inside nghttp2's frame callback, before nghttp2 marked the stream
half-closed). The H2C upstream here is python3-h2 on loopback; it counts the RST_STREAM frames it
receives straight from the bytes (before h2 parses them, so a reset of a closed stream counts too).
Checked: complete gRPC calls, plain h2 requests from an HTTP/2 and from an HTTP/1.1 client receive
no reset upstream (nor downstream); a client that cancels mid-response still resets the upstream
stream."""

import socket
import struct
import threading
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest

import h2util
import jgtest

GRPC_AUTHORITY = "grpc.example.com"
PLAIN_AUTHORITY = "www.example.com"
N = 60  # complete exchanges per shape: enough to see a per-exchange reset, far below any guard
RST_STREAM = 0x3


class CountingH2Upstream:
    """An H2C server: answers every request once its END_STREAM arrived. gRPC requests
    (content-type application/grpc) get HEADERS, one message, trailers grpc-status 0; others
    200 with a small body; gRPC paths starting with /only get a trailers-only answer (NOT_FOUND).
    Paths starting with /slow get HEADERS and one DATA frame, then nothing:
    the stream stays open until the peer resets it. Every RST_STREAM frame received is recorded
    as (stream id, error code, path of that stream)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.resets = []  # (stream id, error code, path)
        self.completed = 0  # responses sent with END_STREAM
        self.slow_started = 0
        self.stopping = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _count_resets(self, state, data, paths):
        """Splits the raw bytes into frames and records RST_STREAM frames (preface skipped)."""
        state["buf"] += data
        buf = state["buf"]
        if not state["preface_done"]:
            if len(buf) < len(h2util.PREFACE):
                return
            buf = buf[len(h2util.PREFACE):]
            state["preface_done"] = True
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            ftype = buf[3]
            sid = struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF
            if ftype == RST_STREAM and length == 4:
                code = struct.unpack(">I", buf[9:13])[0]
                with self.lock:
                    self.resets.append((sid, code, paths.get(sid, "?")))
            buf = buf[9 + length:]
        state["buf"] = buf

    def _serve(self, sock):
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        conn = h2.connection.H2Connection(config=cfg)
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        state = {"buf": b"", "preface_done": False}
        heads = {}
        paths = {}
        sock.settimeout(30)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                self._count_resets(state, data, paths)
                try:
                    events = conn.receive_data(data)
                except h2.exceptions.ProtocolError:
                    return
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        heads[ev.stream_id] = dict(ev.headers)
                        paths[ev.stream_id] = heads[ev.stream_id].get(":path", "?")
                    elif isinstance(ev, h2.events.DataReceived):
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in heads:
                        self._answer(conn, ev.stream_id, heads.pop(ev.stream_id))
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
        except OSError:
            return
        finally:
            sock.close()

    def _answer(self, conn, sid, head):
        grpc_call = head.get("content-type", "").startswith("application/grpc")
        slow = head.get(":path", "").startswith("/slow")
        if grpc_call and head.get(":path", "").startswith("/only"):
            # Trailers-only (a gRPC error): one HEADERS frame with END_STREAM ends the stream.
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc"),
                                    ("grpc-status", "5"), ("grpc-message", "nothing here")], end_stream=True)
            with self.lock:
                self.completed += 1
            return
        if grpc_call:
            conn.send_headers(sid, [(":status", "200"), ("content-type", "application/grpc")])
            conn.send_data(sid, b"\x00\x00\x00\x00\x02\x0a\x00")
        else:
            conn.send_headers(sid, [(":status", "200"), ("content-type", "text/plain")])
            conn.send_data(sid, b"first part\n")
        if slow:
            with self.lock:
                self.slow_started += 1
            return  # left open: only the peer's reset ends it
        if grpc_call:
            conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
        else:
            conn.send_data(sid, b"last part\n", end_stream=True)
        with self.lock:
            self.completed += 1

    def snapshot(self):
        with self.lock:
            return list(self.resets), self.completed

    def stop(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture(scope="module")
def env(start_proxy_module):
    up = CountingH2Upstream()
    backends = {"h2up": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": up.port}}],
                         "timeouts": {"request": "20s"}}}

    def config(port):
        cfg = jgtest.base_config(port, backends, [jgtest.catch_all_route("h2up", hostnames=[PLAIN_AUTHORITY])],
                                 workers=1)
        cfg["grpcRoutes"] = [{"name": "g", "hostnames": [GRPC_AUTHORITY],
                              "rules": [{"backendRefs": [{"name": "h2up"}]}]}]
        return cfg

    px = start_proxy_module(config)
    yield {"up": up, "port": px.port}
    up.stop()


def resets_since(up, before, path_prefix=""):
    resets, _ = up.snapshot()
    return [r for r in resets[before:] if r[2].startswith(path_prefix)]


def test_complete_grpc_calls_are_not_reset_upstream(env):
    up = env["up"]
    before, done0 = len(up.snapshot()[0]), up.snapshot()[1]
    ch = grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", GRPC_AUTHORITY)])
    try:
        call = ch.unary_unary("/yages.Echo/Ping", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for _ in range(N):
            assert call(b"", timeout=5) == b"\x0a\x00"
    finally:
        ch.close()
    assert jgtest.wait_for(lambda: up.snapshot()[1] - done0 >= N, timeout=5)
    time.sleep(0.3)  # a reset would follow the response at once
    assert resets_since(up, before) == [], "complete gRPC calls were reset upstream"


def test_trailers_only_grpc_answers_are_not_reset_upstream(env):
    up = env["up"]
    before, done0 = len(up.snapshot()[0]), up.snapshot()[1]
    ch = grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", GRPC_AUTHORITY)])
    try:
        call = ch.unary_unary("/only/Missing", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for _ in range(N):
            with pytest.raises(grpc.RpcError) as ei:
                call(b"", timeout=5)
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        ch.close()
    assert jgtest.wait_for(lambda: up.snapshot()[1] - done0 >= N, timeout=5)
    time.sleep(0.3)
    assert resets_since(up, before) == [], "trailers-only gRPC answers were reset upstream"


def test_complete_h2_requests_are_not_reset_either_side(env):
    up = env["up"]
    before, done0 = len(up.snapshot()[0]), up.snapshot()[1]
    with h2util.H2Conn(env["port"]) as c:
        for i in range(N):
            body = b"x" * 100 if i % 2 else None  # with and without a request body
            sid = c.request("/plain/%d" % i, method="POST" if body else "GET", authority=PLAIN_AUTHORITY,
                            body=body)
            r = c.response(sid)
            assert r["ended"] and r["reset"] is None
            assert r["headers"][":status"] == "200"
            assert bytes(r["data"]) == b"first part\nlast part\n"
        assert c.resets == {}, "jwtgate reset complete downstream streams"
    assert jgtest.wait_for(lambda: up.snapshot()[1] - done0 >= N, timeout=5)
    time.sleep(0.3)
    assert resets_since(up, before) == [], "complete h2 requests were reset upstream"


def test_complete_http1_requests_to_h2_upstream_are_not_reset(env):
    up = env["up"]
    before = len(up.snapshot()[0])
    with jgtest.RawConn(env["port"]) as c:
        for i in range(N):
            r = c.request(path="/h1/%d" % i, host=PLAIN_AUTHORITY)
            assert r.status == 200 and r.body == b"first part\nlast part\n"
    time.sleep(0.3)
    assert resets_since(up, before) == [], "HTTP/1.1 requests were reset on the h2 upstream"


def test_client_cancel_mid_response_still_resets_upstream(env):
    up = env["up"]
    before = len(up.snapshot()[0])
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request("/slow/cancel", authority=PLAIN_AUTHORITY)
        assert c.wait(lambda cc: sid in cc.responses and len(cc.responses[sid]["data"]) > 0)
        c.conn.reset_stream(sid, error_code=8)  # CANCEL
        c.flush()
        assert jgtest.wait_for(lambda: resets_since(up, before, "/slow/cancel"), timeout=5), \
            "the cancelled call did not reach the upstream as RST_STREAM"
        # The connection goes on serving.
        sid2 = c.request("/after-cancel", authority=PLAIN_AUTHORITY)
        assert c.response(sid2)["ended"]
    got = resets_since(up, before, "/slow/cancel")
    assert len(got) == 1 and got[0][1] == 8, got


def test_grpc_client_cancel_still_resets_upstream(env):
    up = env["up"]
    before = len(up.snapshot()[0])
    ch = grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", GRPC_AUTHORITY)])
    try:
        ss = ch.unary_stream("/slow/Stream", request_serializer=lambda b: b, response_deserializer=lambda b: b)
        it = ss(b"", timeout=10)
        assert next(it) == b"\x0a\x00"
        it.cancel()
        assert jgtest.wait_for(lambda: resets_since(up, before, "/slow/Stream"), timeout=5), \
            "the cancelled gRPC call did not reach the upstream as RST_STREAM"
    finally:
        ch.close()
