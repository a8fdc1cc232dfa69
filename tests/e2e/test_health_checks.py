"""Active health checks (healthCheck.active, issue 11 section 2): an endpoint that starts failing its
check stops getting requests within interval x unhealthyThreshold, and gets them again after
healthyThreshold passes; one checker per endpoint for the process whatever the number of workers; the
HTTP type over HTTP/1.1 and the GRPC type (grpc.health.v1.Health/Check) on an H2C backend.
Upstreams are real servers on loopback ephemeral ports whose health answer a test flips."""

import collections
import http.server
import socketserver
import threading
import time

import grpc
import pytest

import jgtest
from jgtest import get

INTERVAL = 0.2  # seconds
UNHEALTHY = 2
HEALTHY = 3
SLACK = 1.0  # scheduling, a check in flight, a request already routed


class HealthUpstream:
    """HTTP/1.1 upstream: /healthz answers self.health_status; every other path 200 with the name.
    Counts requests by kind (health checks and traffic), with the time of each health check."""

    def __init__(self, name):
        self.name = name
        self.health_status = 200
        self.lock = threading.Lock()
        self.traffic = 0
        self.checks = []  # (time, method, host header)
        up = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                if self.path == "/healthz":
                    with up.lock:
                        up.checks.append((time.monotonic(), self.command, self.headers.get("Host")))
                    status = up.health_status
                    body = b"health\n"
                else:
                    with up.lock:
                        up.traffic += 1
                    status = 200
                    body = up.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _any

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def n_traffic(self):
        with self.lock:
            return self.traffic

    def n_checks(self):
        with self.lock:
            return len(self.checks)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _hc(**over):
    hc = {"type": "HTTP", "interval": "200ms", "timeout": "500ms", "unhealthyThreshold": UNHEALTHY,
          "healthyThreshold": HEALTHY, "http": {"path": "/healthz", "expectedStatuses": [200, 204]}}
    hc.update(over)
    return hc


@pytest.fixture(scope="module")
def env(start_proxy_module):
    a, b = HealthUpstream("A"), HealthUpstream("B")
    backends = {
        "pair": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": u.port}} for u in (a, b)],
                 "loadBalancer": {"type": "RoundRobin"},
                 "healthCheck": {"panicThreshold": 0, "active": _hc()}},
    }
    routes = [jgtest.catch_all_route("pair")]
    px = start_proxy_module(lambda port: jgtest.base_config(port, backends, routes, workers=2))
    yield {"a": a, "b": b, "port": px.port, "px": px}
    a.health_status = b.health_status = 200
    a.stop()
    b.stop()


def traffic(env, n):
    """Sends n requests; returns how many each upstream served (and the statuses seen)."""
    seen = collections.Counter()
    for _ in range(n):
        r = get(env["port"], "/x")
        seen[r.body.decode() if r.status == 200 else r.status] += 1
    return seen


def wait_until(pred, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_both_healthy_share_traffic(env):
    assert wait_until(lambda: env["a"].n_checks() > 0 and env["b"].n_checks() > 0, 3.0), env["px"].logs()
    seen = traffic(env, 20)  # two workers, each with its own round robin
    assert seen["A"] >= 5 and seen["B"] >= 5 and seen["A"] + seen["B"] == 20, seen


def test_failing_endpoint_gets_no_traffic_then_comes_back(env):
    a = env["a"]
    a.health_status = 503
    t0 = time.monotonic()
    bound = INTERVAL * UNHEALTHY + SLACK
    # Within interval x unhealthyThreshold (+ slack) no request reaches A any more.
    assert wait_until(lambda: "unhealthy after" in env["px"].logs(), bound), env["px"].logs()
    assert time.monotonic() - t0 <= bound
    before = a.n_traffic()
    seen = traffic(env, 20)
    assert seen == {"B": 20}, seen
    assert a.n_traffic() == before
    # Back after healthyThreshold passes: not after one pass, yes within healthyThreshold x interval.
    n0 = a.n_checks()
    a.health_status = 204  # an expected status other than 200
    assert wait_until(lambda: a.n_checks() >= n0 + 1, 2.0)
    if a.n_checks() < n0 + HEALTHY:  # only just passed once or twice: still out of rotation
        assert traffic(env, 4) == {"B": 4}
    t1 = time.monotonic()
    assert wait_until(lambda: traffic(env, 2)["A"] > 0, INTERVAL * HEALTHY + SLACK + 1.0), env["px"].logs()
    assert time.monotonic() - t1 <= INTERVAL * HEALTHY + SLACK + 1.0
    assert jgtest.wait_for(lambda: "healthy after %d passed checks" % HEALTHY in env["px"].logs(), 3.0), env["px"].logs()
    seen = traffic(env, 20)
    assert seen["A"] >= 5 and seen["B"] >= 5 and seen["A"] + seen["B"] == 20, seen


def test_all_unhealthy_without_panic_is_503(env):
    env["a"].health_status = env["b"].health_status = 500
    assert wait_until(lambda: traffic(env, 1).get(503, 0) == 1, INTERVAL * UNHEALTHY + SLACK + 1.0)
    r = get(env["port"], "/x")
    assert r.status == 503 and b"no healthy upstream" in r.body
    env["a"].health_status = env["b"].health_status = 200
    assert wait_until(lambda: traffic(env, 1).get(503, 0) == 0, INTERVAL * HEALTHY + SLACK + 1.0)


def test_one_checker_per_endpoint_not_per_worker(env):
    """Two workers, one checker: about one check per interval reaches each endpoint."""
    a = env["a"]
    n0 = a.n_checks()
    time.sleep(2.0)
    n = a.n_checks() - n0
    assert 2.0 / INTERVAL * 0.5 <= n <= 2.0 / INTERVAL + 3, n
    _, method, host = a.checks[-1]
    assert method == "GET" and host == "127.0.0.1:%d" % a.port


def test_unhealthy_counts_for_panic(start_proxy):
    """Envoy's panic threshold counts actively unhealthy hosts: with one endpoint of two failing and
    panicThreshold 60, the pool is in panic and both endpoints take traffic."""
    a, b = HealthUpstream("A"), HealthUpstream("B")
    try:
        a.health_status = 503
        backends = {"pair": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": u.port}} for u in (a, b)],
                             "healthCheck": {"panicThreshold": 60, "active": _hc()}}}
        px = start_proxy(lambda port: jgtest.base_config(port, backends, [jgtest.catch_all_route("pair")],
                                                         workers=1))
        assert wait_until(lambda: "unhealthy after" in px.logs(), 3.0), px.logs()
        seen = traffic({"port": px.port}, 10)
        assert seen["A"] == 5 and seen["B"] == 5, seen
    finally:
        a.stop()
        b.stop()


def test_reload_keeps_verdicts(start_proxy, tmp_path):
    """SIGHUP: new checkers take over; an unhealthy endpoint stays out of rotation across the reload."""
    import signal

    a, b = HealthUpstream("A"), HealthUpstream("B")
    try:
        a.health_status = 503
        backends = {"pair": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": u.port}} for u in (a, b)],
                             "healthCheck": {"panicThreshold": 0, "active": _hc(interval="1s")}}}
        px = start_proxy(lambda port: jgtest.base_config(port, backends, [jgtest.catch_all_route("pair")],
                                                         workers=1))
        assert wait_until(lambda: "unhealthy after" in px.logs(), 3.0), px.logs()
        px.signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in px.logs(), 5.0), px.logs()
        seen = traffic({"port": px.port}, 10)
        assert seen == {"B": 10}, seen
        # The old checkers stopped: checks go on at one per interval, not two.
        n0 = a.n_checks()
        time.sleep(2.5)
        assert a.n_checks() - n0 <= 4, a.n_checks() - n0
    finally:
        a.stop()
        b.stop()


# ---- GRPC type ----

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _decode_service(req):
    """HealthCheckRequest{string service = 1}, hand-decoded (Debian ships no grpc_health)."""
    if not req:
        return ""
    assert req[0] == 0x0A, req
    n, i, shift = 0, 1, 0
    while True:
        c = req[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
    return req[i:i + n].decode()


class GrpcHealthUpstream:
    """A grpcio server with grpc.health.v1.Health/Check (status SERVING=1 / NOT_SERVING=2, flippable) and
    test.Who/Name answering its name."""

    def __init__(self, name):
        from concurrent import futures

        self.name = name
        self.status = 1
        self.lock = threading.Lock()
        self.services = []
        self.traffic = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
        health = {"Check": grpc.unary_unary_rpc_method_handler(self.check, lambda b: b, lambda b: b)}
        who = {"Name": grpc.unary_unary_rpc_method_handler(self.who, lambda b: b, lambda b: b)}
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("grpc.health.v1.Health", health),
                                              grpc.method_handlers_generic_handler("test.Who", who)))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def check(self, req, context):
        with self.lock:
            self.services.append(_decode_service(req))
        return b"\x08" + _varint(self.status)  # HealthCheckResponse{status = 1}

    def who(self, req, context):
        with self.lock:
            self.traffic += 1
        return self.name.encode()

    def stop(self):
        self.server.stop(0).wait(5)


def test_grpc_not_serving_is_removed_and_comes_back(start_proxy):
    a, b = GrpcHealthUpstream("GA"), GrpcHealthUpstream("GB")
    try:
        backends = {"g": {"protocol": "H2C",
                          "endpoints": [{"ip": {"address": "127.0.0.1", "port": u.port}} for u in (a, b)],
                          "healthCheck": {"panicThreshold": 0, "active": {
                              "type": "GRPC", "interval": "200ms", "timeout": "1s",
                              "unhealthyThreshold": UNHEALTHY, "healthyThreshold": 1,
                              "grpc": {"service": "test.Who"}}}}}

        def config(port):
            cfg = jgtest.base_config(port, backends, [], workers=2)
            del cfg["httpRoutes"]
            cfg["grpcRoutes"] = [{"name": "g", "rules": [{"backendRefs": [{"name": "g"}]}]}]
            return cfg

        px = start_proxy(config)
        ch = grpc.insecure_channel("127.0.0.1:%d" % px.port)
        call = ch.unary_unary("/test.Who/Name", request_serializer=lambda b: b, response_deserializer=lambda b: b)

        def names(n):
            return collections.Counter(call(b"", timeout=5).decode() for _ in range(n))

        assert wait_until(lambda: a.services and b.services, 3.0), px.logs()
        assert a.services[-1] == "test.Who"  # HealthCheckRequest.service as configured
        assert names(10) == {"GA": 5, "GB": 5}
        a.status = 2  # NOT_SERVING
        t0 = time.monotonic()
        assert wait_until(lambda: "unhealthy after" in px.logs(), INTERVAL * UNHEALTHY + SLACK), px.logs()
        assert time.monotonic() - t0 <= INTERVAL * UNHEALTHY + SLACK
        before = a.traffic
        assert names(10) == {"GB": 10}
        assert a.traffic == before
        a.status = 1
        assert wait_until(lambda: names(2)["GA"] > 0, INTERVAL + SLACK + 1.0), px.logs()
        ch.close()
    finally:
        a.stop()
        b.stop()
