"""TLS towards backends (backends[].tls, BackendTLSPolicy `validation`): jwtgate verifies the backend's
certificate against the configured CA bundle (file or inline) and the configured hostname (SNI and the name
the certificate must carry), and fails closed when either does not hold.

A private CA (python3-cryptography, jwksutil.CA) issues a certificate for `backend.internal`; a second CA
that jwtgate does not trust issues the same name. Backends:
  - gRPC (protocol H2: HTTP/2 over TLS, ALPN h2): grpc_echo_server's yages.Echo on a
    grpc.ssl_server_credentials port, reached by python3-grpcio clients over h2c to the proxy;
  - HTTP/1.1 over TLS: jgtest's echo upstream behind a threaded ssl-module server that records the SNI,
    the negotiated ALPN and the handshakes that failed.
Every backend is reached by IP (127.0.0.1) with tls.hostname naming the certificate.
"""

import os
import ssl
import subprocess
import threading
import json
from concurrent import futures

import grpc
import pytest

import grpc_echo_server as echo
import jgtest
import jwksutil

HOSTNAME = "backend.internal"


# ---------------------------------------------------------------------------------------------------
# Backends

class TlsGrpcServer:
    """yages.Echo served over TLS only (the insecure port EchoServer binds is never given to jwtgate), plus
    jgtest.Tls/Info answering the call's transport security type as the server saw it."""

    def __init__(self, cert, key):
        self.echo = echo.EchoServer()
        with open(cert, "rb") as f:
            chain = f.read()
        with open(key, "rb") as f:
            pkey = f.read()
        creds = grpc.ssl_server_credentials([(pkey, chain)])
        self.port = self.echo.server.add_secure_port("127.0.0.1:0", creds)
        assert self.port, "cannot bind a TLS gRPC port"
        info = {"Info": grpc.unary_unary_rpc_method_handler(self._info, echo.decode_empty, echo.encode_content)}
        self.echo.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("jgtest.Tls", info),))
        self.echo.start()

    @staticmethod
    def _info(req, context):
        ac = context.auth_context()
        return ",".join(v.decode() for v in ac.get("transport_security_type", []))

    def calls(self):
        with self.echo.lock:
            return len(self.echo.metadata)

    def stop(self):
        self.echo.stop()


class _TlsUpServer(jgtest._Server):
    """jgtest's echo upstream server with a TLS handshake in each connection's thread."""

    def finish_request(self, request, client_address):
        up = self.upstream
        request.settimeout(10)
        try:
            conn = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            with up.lock:
                up.failed_handshakes.append(repr(e))
            return
        conn.settimeout(None)
        with up.lock:
            up.handshakes.append({"version": conn.version(), "alpn": conn.selected_alpn_protocol()})
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass


class TlsUpstream:
    """An HTTPS/1.1 echo server (jgtest._Handler: the JSON echo names the path) on an ephemeral port."""

    def __init__(self, name, cert, key):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []
        self.connections = []
        self.conn_seq = 0
        self.stopping = threading.Event()
        self.sni = []                # server names the clients sent
        self.handshakes = []         # completed handshakes
        self.failed_handshakes = []  # handshakes that failed (the proxy refused the certificate)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._on_sni
        self.server = _TlsUpServer(("127.0.0.1", 0), jgtest._Handler)
        self.server.upstream = self
        self.server.ctx = ctx
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _on_sni(self, sslobj, server_name, ctx):
        with self.lock:
            self.sni.append(server_name)

    def snapshot(self):
        with self.lock:
            return [dict(r) for r in self.requests]

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------------
# The proxy

@pytest.fixture(scope="module")
def env(start_proxy_module, tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    good_ca = jwksutil.CA("jwtgate upstream test CA")
    evil_ca = jwksutil.CA("untrusted CA")
    ca_path = good_ca.write(str(d / "ca.pem"))
    os.mkdir(d / "good")
    os.mkdir(d / "evil")
    good = good_ca.issue(d / "good", hostnames=(HOSTNAME,))
    evil = evil_ca.issue(d / "evil", hostnames=(HOSTNAME,))

    servers = {
        "grpc_ok": TlsGrpcServer(*good),
        "grpc_evil": TlsGrpcServer(*evil),     # certificate from the untrusted CA
        "grpc_wrong": TlsGrpcServer(*good),    # good certificate, backend configured with another hostname
        "https_ok": TlsUpstream("https_ok", *good),
        "https_evil": TlsUpstream("https_evil", *evil),
        "https_wrong": TlsUpstream("https_wrong", *good),
    }
    file_ref = [{"file": ca_path}]
    inline_ref = [{"inline": good_ca.pem().decode()}]

    def be(proto, srv, refs=file_ref, hostname=HOSTNAME):
        tls = {"caCertificateRefs": refs, "hostname": hostname}
        return {"protocol": proto, "endpoints": [{"ip": {"address": "127.0.0.1", "port": servers[srv].port}}],
                "timeouts": {"connect": "2s", "request": "20s"}, "tls": tls}

    backends = {
        "grpc-ok": be("H2", "grpc_ok"),
        "grpc-inline": be("H2", "grpc_ok", inline_ref),
        "grpc-evil": be("H2", "grpc_evil"),
        "grpc-wrong": be("H2", "grpc_wrong", hostname="wrong.internal"),
        "http-ok": be("HTTP", "https_ok"),
        "http-inline": be("HTTP", "https_ok", inline_ref),
        "http-evil": be("HTTP", "https_evil"),
        "http-wrong": be("HTTP", "https_wrong", hostname="wrong.internal"),
    }

    def config(port):
        http_routes = [jgtest.catch_all_route(n, hostnames=[n + ".test"]) for n in backends if n.startswith("http-")]
        for i, r in enumerate(http_routes):
            r["name"] = "h%d" % i
        cfg = jgtest.base_config(port, backends, http_routes, workers=1)
        cfg["grpcRoutes"] = [{"name": n, "hostnames": [n + ".test"], "rules": [{"backendRefs": [{"name": n}]}]}
                             for n in backends if n.startswith("grpc-")]
        return cfg

    px = start_proxy_module(config)
    yield {"port": px.port, "proxy": px, **servers}
    for s in servers.values():
        s.stop()


@pytest.fixture
def grpc_channel(env):
    chans = []

    def make(backend):
        c = grpc.insecure_channel("127.0.0.1:%d" % env["port"],
                                  options=[("grpc.default_authority", backend + ".test")])
        chans.append(c)
        return c
    yield make
    for c in chans:
        c.close()


def unary(ch, method, req_ser=echo.encode_content, service="yages.Echo"):
    return ch.unary_unary("/%s/%s" % (service, method), request_serializer=req_ser,
                          response_deserializer=echo.decode_content)


def curl(env, backend, path, data=None):
    """curl through the proxy (HTTP/1.1, cleartext). Returns (rc, status, body)."""
    cmd = ["curl", "-sS", "--http1.1", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
           "-H", "Host: %s.test" % backend]
    if data is not None:
        cmd += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
    cmd.append("http://127.0.0.1:%d%s" % (env["port"], path))
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=30)
    body, _, code = p.stdout.rpartition(b"\n")
    return p.returncode, int(code or b"0"), body


# ---------------------------------------------------------------------------------------------------
# gRPC over TLS (protocol H2)

@pytest.mark.parametrize("backend", ["grpc-ok", "grpc-inline"])
def test_grpc_over_tls_unary_calls(env, grpc_channel, backend):
    ch = grpc_channel(backend)
    srv = env["grpc_ok"]
    before = srv.calls()
    assert unary(ch, "Ping", echo.encode_empty)(None, timeout=10) == "pong"
    resp, call = unary(ch, "Reverse").with_call("stressed", timeout=10, metadata=(("x-trace", "tls1"),))
    assert resp == "desserts"
    assert call.code() == grpc.StatusCode.OK
    assert srv.calls() == before + 2
    assert dict(srv.echo.metadata[-1]).get("x-trace") == "tls1"


@pytest.mark.parametrize("backend", ["grpc-ok", "grpc-inline"])
def test_grpc_backend_sees_tls(env, grpc_channel, backend):
    assert unary(grpc_channel(backend), "Info", echo.encode_empty, service="jgtest.Tls")(None, timeout=10) == "ssl"


def test_grpc_over_tls_server_streaming(grpc_channel):
    ss = grpc_channel("grpc-ok").unary_stream("/yages.Echo/ServerStream", request_serializer=echo.encode_content,
                                              response_deserializer=echo.decode_content)
    assert list(ss("100:item", timeout=10)) == ["item-%d" % i for i in range(100)]


def test_grpc_over_tls_error_status_passes_unchanged(grpc_channel):
    with pytest.raises(grpc.RpcError) as ei:
        unary(grpc_channel("grpc-ok"), "Fail")("bad input over tls", timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ei.value.details() == "bad input over tls"


def test_grpc_over_tls_large_message(grpc_channel):
    # 1 MiB each way: many TLS records and HTTP/2 flow-control windows.
    text = "".join(chr(97 + i % 26) for i in range(1 << 20))
    assert unary(grpc_channel("grpc-ok"), "Reverse")(text, timeout=20) == text[::-1]


def test_grpc_over_tls_calls_multiplexed_on_one_connection(env, grpc_channel):
    peer = unary(grpc_channel("grpc-ok"), "Peer", echo.encode_empty)
    with futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: peer(None, timeout=10), range(16)))
    assert len(set(results)) == 1, set(results)


@pytest.mark.parametrize("backend,server", [("grpc-evil", "grpc_evil"), ("grpc-wrong", "grpc_wrong")])
def test_grpc_tls_verification_failure_is_unavailable(env, grpc_channel, backend, server):
    ch = grpc_channel(backend)
    for _ in range(2):  # and again: a failed handshake is not cached as a usable connection
        with pytest.raises(grpc.RpcError) as ei:
            unary(ch, "Ping", echo.encode_empty)(None, timeout=10)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE, (ei.value.code(), ei.value.details())
    assert env[server].calls() == 0, "a call reached a backend whose certificate failed verification"


# ---------------------------------------------------------------------------------------------------
# HTTP/1.1 over TLS (protocol HTTP with a tls block)

@pytest.mark.parametrize("backend", ["http-ok", "http-inline"])
def test_http1_over_tls_echo(env, backend):
    up = env["https_ok"]
    mk = jgtest.marker()
    rc, status, body = curl(env, backend, "/tls/" + mk + "?q=1")
    assert rc == 0 and status == 200, (rc, status, body)
    rec = json.loads(body)
    assert rec["path"] == "/tls/" + mk + "?q=1"
    assert rec["upstream"] == "https_ok"
    assert any(r["path"].startswith("/tls/" + mk) for r in up.snapshot())
    with up.lock:
        assert up.handshakes, "no TLS handshake completed"
        assert all(h["alpn"] == "http/1.1" for h in up.handshakes), up.handshakes
        assert all(h["version"] in ("TLSv1.2", "TLSv1.3") for h in up.handshakes), up.handshakes
        assert up.sni and set(up.sni) == {HOSTNAME}, up.sni  # SNI is tls.hostname, not the IP


def test_http1_over_tls_body_and_keepalive(env):
    up = env["https_ok"]
    data = jgtest.pattern(256 * 1024)
    rc, status, body = curl(env, "http-ok", "/echo-body", data=data)
    assert rc == 0 and status == 200, (rc, status, len(body))
    assert body == data
    with up.lock:
        before = len(up.handshakes)
    for i in range(5):
        rc, status, body = curl(env, "http-ok", "/again/%d" % i)
        assert status == 200 and json.loads(body)["path"] == "/again/%d" % i
    with up.lock:
        new = len(up.handshakes) - before
    assert new <= 1, f"pooled TLS connections not reused: {new} handshakes for 5 sequential requests"


@pytest.mark.parametrize("backend,server,sni", [("http-evil", "https_evil", HOSTNAME),
                                                ("http-wrong", "https_wrong", "wrong.internal")])
def test_http1_tls_verification_failure_fails_closed(env, backend, server, sni):
    up = env[server]
    for i in range(2):
        rc, status, body = curl(env, backend, "/never/%d" % i)
        assert rc == 0 and status in (502, 503), (rc, status, body)
        assert b"/never/" not in body
    assert up.snapshot() == [], "a request reached a backend whose certificate failed verification"
    # The server thread sees the proxy's alert a moment after the proxy answered.
    assert jgtest.wait_for(lambda: len(up.failed_handshakes) > 0, timeout=5), "the proxy never tried TLS"
    with up.lock:
        assert not up.handshakes, "a TLS handshake completed although verification must fail"
        assert set(up.sni) == {sni}, up.sni  # SNI carries the configured hostname


def test_proxy_still_serves_after_failures(env, grpc_channel):
    assert unary(grpc_channel("grpc-ok"), "Ping", echo.encode_empty)(None, timeout=10) == "pong"
    rc, status, body = curl(env, "http-ok", "/still")
    assert status == 200 and json.loads(body)["path"] == "/still"
