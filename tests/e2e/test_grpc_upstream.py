"""gRPC through jwtgate to an H2C backend: python3-grpcio clients -> jwtgate (HTTP/2 downstream codec)
-> multiplexed HTTP/2 upstream connections -> the yages.Echo server of grpc_echo_server.py.

Checks what a gRPC user relies on: every call shape (unary, server/client/bidi streaming), status and
trailers passed unchanged, cancellation and deadlines reaching the server, many calls multiplexed on
one upstream connection, flow control with messages larger than any window, and UNAVAILABLE when the
backend is down."""

import os
import queue
import subprocess
import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

import grpc_echo_server as echo
import jgtest

AUTHORITY = "grpc.example.com"


@pytest.fixture(scope="module")
def env(start_proxy_module):
    srv = echo.EchoServer().start()
    dead = jgtest.free_port()  # nothing listens there
    backends = {
        "yages": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": srv.port}}],
                  "timeouts": {"request": "20s"}},
        "dead": {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": dead}}],
                 "timeouts": {"connect": "1s"}},
    }

    def config(port):
        cfg = jgtest.base_config(port, backends, [], workers=1)
        del cfg["httpRoutes"]
        cfg["grpcRoutes"] = [
            {"name": "yages", "hostnames": [AUTHORITY], "rules": [{"backendRefs": [{"name": "yages"}]}]},
            {"name": "dead", "hostnames": ["dead.example.com"], "rules": [{"backendRefs": [{"name": "dead"}]}]},
        ]
        return cfg

    px = start_proxy_module(config)
    yield {"srv": srv, "port": px.port, "proxy": px}
    srv.stop()


def channel(env, authority=AUTHORITY):
    return grpc.insecure_channel("127.0.0.1:%d" % env["port"], options=[("grpc.default_authority", authority)])


@pytest.fixture
def ch(env):
    c = channel(env)
    yield c
    c.close()


def unary(ch, method, req_ser=echo.encode_content):
    return ch.unary_unary("/yages.Echo/" + method, request_serializer=req_ser,
                          response_deserializer=echo.decode_content)


def test_unary_ping(ch):
    assert unary(ch, "Ping", echo.encode_empty)(None, timeout=5) == "pong"


def test_unary_reverse_and_metadata_forwarded(env, ch):
    resp, call = unary(ch, "Reverse").with_call("stressed", timeout=5, metadata=(("x-trace", "abc123"),))
    assert resp == "desserts"
    assert call.code() == grpc.StatusCode.OK
    md = dict(env["srv"].metadata[-1])
    assert md.get("x-trace") == "abc123"
    assert md.get("x-forwarded-for") is not None


def test_server_streaming(ch):
    ss = ch.unary_stream("/yages.Echo/ServerStream", request_serializer=echo.encode_content,
                         response_deserializer=echo.decode_content)
    got = list(ss("200:item", timeout=10))
    assert got == ["item-%d" % i for i in range(200)]


def test_client_streaming(ch):
    cs = ch.stream_unary("/yages.Echo/ClientStream", request_serializer=echo.encode_content,
                         response_deserializer=echo.decode_content)
    parts = ["p%d" % i for i in range(100)]
    assert cs(iter(parts), timeout=10) == ",".join(parts)


def test_bidi_streaming_interleaved(ch):
    # Each message is answered before the next is sent: the proxy must not hold data back.
    bidi = ch.stream_stream("/yages.Echo/BidiStream", request_serializer=echo.encode_content,
                            response_deserializer=echo.decode_content)
    q = queue.Queue()

    def requests():
        while True:
            item = q.get()
            if item is None:
                return
            yield item

    responses = bidi(requests(), timeout=10)
    for i in range(20):
        q.put("m%d" % i)
        assert next(responses) == "m%d" % i
    q.put(None)
    assert list(responses) == []


def test_error_status_message_and_trailers_pass_unchanged(ch):
    with pytest.raises(grpc.RpcError) as ei:
        unary(ch, "Fail")("the reason: bad input", timeout=5)
    err = ei.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "the reason: bad input"
    assert ("x-fail", "yes") in [(m.key, m.value) for m in err.trailing_metadata()]


def test_large_messages_flow_control(ch):
    # 3 MiB each way: far beyond the stream windows, so WINDOW_UPDATEs must flow both ways.
    text = "".join(chr(97 + i % 26) for i in range(3 * 1024 * 1024))
    rev = ch.unary_unary("/yages.Echo/Reverse", request_serializer=echo.encode_content,
                         response_deserializer=echo.decode_content)
    assert rev(text, timeout=20) == text[::-1]


def test_client_cancel_reaches_server(env, ch):
    srv = env["srv"]
    srv.cancel_event.clear()
    before = srv.cancelled.count("ServerStream")
    ss = ch.unary_stream("/yages.Echo/ServerStream", request_serializer=echo.encode_content,
                         response_deserializer=echo.decode_content)
    call = ss("-1:tick", timeout=30)
    for _ in range(3):
        next(call)
    call.cancel()
    assert jgtest.wait_for(lambda: srv.cancelled.count("ServerStream") > before, timeout=5), \
        "the server never saw the cancellation"


def test_deadline_reaches_server(env, ch):
    srv = env["srv"]
    before = srv.cancelled.count("Slow")
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as ei:
        unary(ch, "Slow")("5", timeout=0.5)
    assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 3
    assert jgtest.wait_for(lambda: srv.cancelled.count("Slow") > before, timeout=5)


def test_grpc_timeout_enforced_by_proxy(env):
    """A client that sends grpc-timeout but never cancels itself: jwtgate's own deadline ends the call
    (DEADLINE_EXCEEDED or a reset) and the upstream stream is cancelled."""
    import h2.config
    import h2.connection
    import h2.events

    srv = env["srv"]
    before = srv.cancelled.count("Slow")
    sock = socket.create_connection(("127.0.0.1", env["port"]), timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"), (":authority", AUTHORITY),
                            (":path", "/yages.Echo/Slow"), ("content-type", "application/grpc"),
                            ("te", "trailers"), ("grpc-timeout", "300m")])
    conn.send_data(sid, echo.grpc_frame(echo.encode_content("5")), end_stream=True)
    sock.sendall(conn.data_to_send())
    start = time.monotonic()
    status = None
    done = False
    try:
        while not done and time.monotonic() - start < 4:
            data = sock.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    hd = dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                              for k, v in ev.headers)
                    status = hd.get("grpc-status", status)
                if isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)) and ev.stream_id == sid:
                    done = True
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    elapsed = time.monotonic() - start
    assert done, "the call did not end"
    assert elapsed < 2.5, elapsed
    assert status in (None, "4"), status  # DEADLINE_EXCEEDED, or a reset after the head
    assert jgtest.wait_for(lambda: srv.cancelled.count("Slow") > before, timeout=5)


def test_concurrent_calls_multiplexed_on_one_upstream_connection(env, ch):
    srv = env["srv"]
    with srv.lock:
        srv.peers.clear()
    peer = unary(ch, "Peer", echo.encode_empty)
    with futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: peer(None, timeout=10), range(200)))
    assert len(results) == 200
    # Every call came over the same upstream connection (the backend's max concurrent streams is
    # far above 32, so one connection has room for all of them).
    assert len(set(results)) == 1, set(results)


def test_many_streams_then_more_work(ch):
    # Streams close and their slots are reused: 1000 sequential calls on one connection.
    rev = unary(ch, "Reverse")
    for i in range(1000):
        assert rev("n%d" % i, timeout=5) == ("n%d" % i)[::-1]


def test_upstream_down_is_unavailable(env):
    c = channel(env, "dead.example.com")
    try:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as ei:
            unary(c, "Ping", echo.encode_empty)(None, timeout=5)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - start < 3
    finally:
        c.close()


def test_server_reflection_through_proxy(ch):
    info = ch.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                            request_serializer=lambda b: b, response_deserializer=lambda b: b)
    # ServerReflectionRequest{list_services: ""}
    resp = list(info(iter([b"\x3a\x00"]), timeout=5))
    assert len(resp) == 1
    assert b"yages.Echo" in resp[0]
    # file_containing_symbol: yages.Echo -> a FileDescriptorProto naming the methods
    resp = list(info(iter([b"\x22\x0ayages.Echo"]), timeout=5))
    assert b"yages/echo.proto" in resp[0] and b"BidiStream" in resp[0]


def test_proxy_survives_and_still_serves(ch):
    # After cancellations, deadlines and failures above, the proxy still answers.
    assert unary(ch, "Ping", echo.encode_empty)(None, timeout=5) == "pong"


# ---- connection management against the C peer (bench/grpc_upstream: --max-streams, --goaway-after) ----

GRPC_UPSTREAM = os.environ.get("GRPC_UPSTREAM_BIN",
                               os.path.join(os.path.dirname(jgtest.BIN), "bench", "grpc_upstream"))


class CPeer:
    """bench/grpc_upstream on an ephemeral port; counts the connections it accepted."""

    def __init__(self, tmp_path, *args):
        assert os.access(GRPC_UPSTREAM, os.X_OK), "build bench/grpc_upstream (ninja bench/grpc_upstream)"
        self.port = jgtest.free_port()
        self.log = str(tmp_path / ("cpeer-%d.log" % self.port))
        self.out = open(self.log, "w")
        self.proc = subprocess.Popen([GRPC_UPSTREAM, "--port", str(self.port)] + list(args), stdout=self.out)
        assert jgtest.wait_port(self.port, 5.0, self.proc)

    def connections(self):
        with open(self.log) as f:
            return f.read().count("accepted connection")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)
        self.out.close()


def c_peer_proxy(start_proxy, peer, max_connections=None):
    be = {"protocol": "H2C", "endpoints": [{"ip": {"address": "127.0.0.1", "port": peer.port}}]}
    if max_connections:
        be["circuitBreaker"] = {"maxConnections": max_connections}

    def config(port):
        cfg = jgtest.base_config(port, {"c": be}, [], workers=1)
        del cfg["httpRoutes"]
        cfg["grpcRoutes"] = [{"name": "c", "rules": [{"backendRefs": [{"name": "c"}]}]}]
        return cfg
    return start_proxy(config)


def test_peer_max_concurrent_streams_spreads_over_connections(start_proxy, tmp_path):
    peer = CPeer(tmp_path, "--max-streams", "4")
    try:
        px = c_peer_proxy(start_proxy, peer)
        c = grpc.insecure_channel("127.0.0.1:%d" % px.port)
        ping = unary(c, "Ping", echo.encode_empty)
        with futures.ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(lambda _: ping(None, timeout=10), range(400)))
        c.close()
        assert results == ["pong"] * 400
        # 40 calls in flight, 4 streams per connection: the proxy must have opened more than one.
        assert peer.connections() >= 2, peer.connections()
    finally:
        peer.stop()


def test_goaway_streams_retried_on_new_connection(start_proxy, tmp_path):
    peer = CPeer(tmp_path, "--goaway-after", "5")
    try:
        px = c_peer_proxy(start_proxy, peer)
        c = grpc.insecure_channel("127.0.0.1:%d" % px.port)
        ping = unary(c, "Ping", echo.encode_empty)
        with futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda _: ping(None, timeout=10), range(100)))
        c.close()
        assert results == ["pong"] * 100  # no call lost to a GOAWAY
        assert peer.connections() >= 100 // 5 - 1, peer.connections()
    finally:
        peer.stop()
