"""The admin endpoint (issue 11 section 1): /ready, /live, /metrics, /status, /config on their own
listener; GET and HEAD only (405 otherwise), 404 for unknown paths. /metrics is read with a real
parser (Debian's python3-prometheus-client, and promtool when installed) and its counters must move by
exactly the requests a test sends. /ready is 503 until every remote JWKS has keys, and again from the
moment a SIGTERM drain starts, while the admin listener stays open."""

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

import jgtest
import jwksutil
from jwksutil import remote_config

OCT_SECRET = b"admin-test-secret-0123456789abcdefghijklmnop"  # 44 bytes: above the 32-byte minimum
OCT_K = base64.urlsafe_b64encode(OCT_SECRET).rstrip(b"=").decode()
ISSUER = "https://admin.example.com"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def hs256(claims, kid="k1"):
    head = b64u(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64u(json.dumps(claims).encode())
    sig = hmac.new(OCT_SECRET, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64u(sig)}"


def admin_get(port, path, method="GET", timeout=5.0):
    """One request to the admin listener: (status, headers dict, body bytes)."""
    r = jgtest.get(port, path, host="localhost", method=method, timeout=timeout)
    return r.status, r.headers, r.body


def hdr(headers, name):
    for k, v in (headers.items() if isinstance(headers, dict) else headers):
        if k.lower() == name:
            return v if isinstance(v, str) else v[0]
    return None


def metrics(port):
    """{(name, frozenset(labels)): value} of every sample, parsed by prometheus_client."""
    status, _, body = admin_get(port, "/metrics")
    assert status == 200
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out, body


def raw_exchange(port, data, timeout=5.0):
    """Sends data on a fresh connection and returns every byte until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            out += b
    return out


def val(m, name, **labels):
    return m.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("adminpki")
    ca = jwksutil.CA("admin test CA")
    cert, key = ca.issue(d, hostnames=("localhost",))
    return {"cert": cert, "key": key}


@pytest.fixture(scope="module")
def env(start_proxy_module, make_upstream_module, pki):
    up = make_upstream_module("backend")
    state = {}

    def config(port):
        state["admin"] = jgtest.free_port()
        state["tls"] = jgtest.free_port()
        jwks = json.dumps({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": OCT_K}]})
        prov = {"name": "hs", "issuer": ISSUER, "audiences": ["api"],
                "localJWKS": {"type": "Inline", "inline": jwks}}
        routes = [
            {"name": "open", "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/open"}}],
                                        "backendRefs": [{"name": "backend"}]}]},
            {"name": "secure", "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/secure"}}],
                                          "backendRefs": [{"name": "backend"}]}]},
        ]
        cfg = jgtest.base_config(port, {"backend": [up.port]}, routes, workers=2,
                                 admin={"address": f"127.0.0.1:{state['admin']}"})
        cfg["listeners"].append({"name": "https", "address": f"127.0.0.1:{state['tls']}",
                                 "tls": {"certificateFile": pki["cert"], "privateKeyFile": pki["key"]}})
        cfg["securityPolicies"] = [{"name": "jwt", "targetRefs": [{"kind": "HTTPRoute", "name": "secure"}],
                                    "jwt": {"providers": [prov]}}]
        return cfg

    p = start_proxy_module(config, "admin")
    p.admin = state["admin"]
    assert jgtest.wait_port(p.admin)
    return p


def test_ready_live_and_unknown_paths(env):
    status, h, body = admin_get(env.admin, "/ready")
    assert (status, body) == (200, b"ready\n")
    status, h, body = admin_get(env.admin, "/live")
    assert (status, body) == (200, b"live\n")
    assert admin_get(env.admin, "/nope")[0] == 404
    assert admin_get(env.admin, "/readyx")[0] == 404
    # Only GET and HEAD: anything else is 405 with Allow, whatever the path.
    for m in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, h, _ = admin_get(env.admin, "/ready", method=m)
        assert status == 405, m
        assert hdr(h, "allow") == "GET, HEAD"
    # A query string does not change the path.
    assert admin_get(env.admin, "/ready?verbose=1")[0] == 200


def test_head_has_the_get_headers_without_body(env):
    for path in ("/ready", "/live", "/status", "/config", "/nope"):
        gs, gh, gb = admin_get(env.admin, path)
        raw = raw_exchange(env.admin, f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head, _, rest = raw.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == str(gs).encode(), path
        assert rest == b"", path  # no body after a HEAD answer
        assert f"content-length: {len(gb)}".encode() in head.lower(), path


def test_metrics_parse_and_move_by_exactly_the_requests_sent(env):
    before, _ = metrics(env.admin)
    now = int(time.time())
    good = hs256({"iss": ISSUER, "aud": "api", "exp": now + 3600, "sub": "u1"})
    expired = hs256({"iss": ISSUER, "aud": "api", "exp": now - 3600})
    bad_aud = hs256({"iss": ISSUER, "aud": "other", "exp": now + 3600})
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    n_open = 5
    for _ in range(n_open):
        assert jgtest.get(env.port, "/open").status == 200
    assert jgtest.get(env.port, "/secure").status == 401  # missing
    assert jgtest.get(env.port, "/secure", headers=[("Authorization", "Bearer " + expired)]).status == 401
    assert jgtest.get(env.port, "/secure", headers=[("Authorization", "Bearer " + bad_aud)]).status == 403
    assert jgtest.get(env.port, "/secure", headers=[("Authorization", "Bearer " + forged)]).status == 401
    # The same good token on one connection: one worker, so a miss then a hit of its cache.
    with jgtest.RawConn(env.port, timeout=5.0) as c:
        for _ in range(2):
            r = c.request("GET", "/secure", "www.example.com", headers=[("Authorization", "Bearer " + good)])
            assert r.status == 200
    assert jgtest.get(env.port, "/nowhere").status == 404
    after, body = metrics(env.admin)

    def d(name, **labels):
        return val(after, name, **labels) - val(before, name, **labels)

    req = "jwtgate_requests_total"
    assert d(req, listener="http", route="open", code="2xx") == n_open
    assert d(req, listener="http", route="secure", code="2xx") == 2
    assert d(req, listener="http", route="secure", code="4xx") == 4
    assert d(req, listener="http", route="", code="4xx") == 1
    assert d("jwtgate_request_duration_seconds_count", route="open") == n_open
    assert d("jwtgate_request_duration_seconds_bucket", route="open", le="+Inf") == n_open
    jwt = "jwtgate_jwt_outcomes_total"
    for reason, n in (("ok", 2), ("missing", 1), ("expired", 1), ("bad_audience", 1), ("bad_signature", 1),
                      ("malformed", 0), ("unknown_key", 0)):
        assert d(jwt, policy="jwt", provider="hs", reason=reason) == n, reason
    # Misses: expired, bad audience, forged and the first good one are verified; the second good is a hit.
    assert d("jwtgate_token_cache_hits_total") == 1
    assert d("jwtgate_token_cache_misses_total") == 4
    ep = {"backend": "backend", "endpoint": f"127.0.0.1:{env.config['backends'][0]['endpoints'][0]['ip']['port']}"}
    assert d("jwtgate_upstream_requests_total", **ep) == n_open + 2
    assert val(after, "jwtgate_upstream_active_requests", **ep) == 0
    # Connections: 5 + 4 + 1 + 1 new TCP connections on the plaintext listener (plus none on TLS).
    assert d("jwtgate_connections_accepted_total", listener="http") == n_open + 4 + 1 + 1
    assert d("jwtgate_connections_accepted_total", listener="https") == 0
    assert val(after, "jwtgate_build_info", version="0.1.0") == 1
    assert val(after, "jwtgate_config_generation") == 1
    assert abs(val(after, "jwtgate_process_start_time_seconds") - time.time()) < 3600
    # Every name carries the jwtgate_ prefix and the exposition ends with a newline (format 0.0.4).
    for (name, _labels) in after:
        assert name.startswith("jwtgate_"), name
    assert body.endswith(b"\n")


def test_promtool_accepts_the_exposition(env):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    _, body = metrics(env.admin)
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_http2_streams_and_connections_open(env):
    # An h2c connection that stays open shows in connections_open{protocol=http2}.
    s = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        assert jgtest.wait_for(lambda: val(metrics(env.admin)[0], "jwtgate_connections_open", listener="http",
                                           protocol="http2") == 1)
    finally:
        s.close()
    assert jgtest.wait_for(lambda: val(metrics(env.admin)[0], "jwtgate_connections_open", listener="http",
                                       protocol="http2") == 0)


def test_status_json_shape(env):
    status, h, body = admin_get(env.admin, "/status")
    assert status == 200 and hdr(h, "content-type") == "application/json"
    st = json.loads(body)
    assert st["generation"] == 1 and st["ready"] is True and st["draining"] is False
    assert st["configFile"].endswith("admin.yaml") and st["uptimeSeconds"] >= 0
    assert [l["name"] for l in st["listeners"]] == ["http", "https"]
    assert all(l["open"] for l in st["listeners"])
    routes = {r["name"]: r for r in st["routes"]}
    assert {x["listener"]: x["policy"] for x in routes["secure"]["policyByListener"]} == {"http": "jwt",
                                                                                          "https": "jwt"}
    assert all(x["policy"] is None for x in routes["open"]["policyByListener"])
    pol = st["policies"][0]
    assert pol["name"] == "jwt"
    assert pol["conditions"][0]["type"] == "Accepted" and pol["conditions"][0]["status"] == "True"
    prov = st["providers"][0]
    assert prov["name"] == "hs" and prov["source"]["type"] == "local" and prov["hasKeys"] is True
    assert prov["keys"] == [{"kid": "k1", "kty": "oct", "alg": "HS256"}]
    ep = st["backends"][0]["endpoints"][0]
    assert ep["ejected"] is False and ep["ejections"] == 0
    assert OCT_K.encode() not in body


def test_config_prints_no_secret_material(env, pki):
    status, h, body = admin_get(env.admin, "/config")
    assert status == 200
    cfg = json.loads(body)
    # The inline oct key: kid and alg are shown, k never.
    keys = cfg["securityPolicies"][0]["providers"][0]["localJWKS"]["publicKeys"]["keys"]
    assert keys == [{"kty": "oct", "kid": "k1", "alg": "HS256"}]
    assert OCT_K.encode() not in body
    # The TLS listener: the key file's name, never its content.
    with open(pki["key"], "rb") as f:
        pem = f.read()
    for line in pem.splitlines():
        if line and not line.startswith(b"-----"):
            assert line not in body
    assert b"PRIVATE KEY" not in body
    assert cfg["listeners"][1]["tls"]["keyFile"] == pki["key"]
    assert cfg["backends"][0]["name"] == "backend"
    assert [r["name"] for r in cfg["routes"]] == ["open", "secure"]


def test_bad_and_oversized_requests_are_bounded(env):
    assert raw_exchange(env.admin, b"GET /ready HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").startswith(
        b"HTTP/1.1 400")
    big = b"GET /ready HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    assert raw_exchange(env.admin, big).startswith(b"HTTP/1.1 431")
    # The listener still answers.
    assert admin_get(env.admin, "/live")[0] == 200


def test_ready_waits_for_remote_jwks_keys(start_proxy, upstream, tmp_path):
    """503 with a reason per line while a remote provider has no key set (its server is down at start),
    200 once a fetch succeeded."""
    keydir = tmp_path / "keys"
    keydir.mkdir()
    key = jwksutil.SigningKey("k1", keydir)
    srv = jwksutil.JwksServer(None, None)  # plain HTTP, not started: connects are refused
    srv.serve(key)
    admin = jgtest.free_port()

    def config(port):
        cfg = remote_config(port, upstream.port, srv.port, None, scheme="http", failed="1s")
        cfg["admin"] = {"address": f"127.0.0.1:{admin}"}
        return cfg

    p = start_proxy(config, "ready")
    status, _, body = admin_get(admin, "/ready")
    assert status == 503, body
    assert b"policy jwt provider example: no key set yet" in body, body
    srv.start()
    try:
        assert jgtest.wait_for(lambda: admin_get(admin, "/ready")[0] == 200, timeout=6.0), jwksutil.stderr_text(p)
        m, _ = metrics(admin)
        assert val(m, "jwtgate_jwks_fetches_total", policy="jwt", provider="example", outcome="ok") >= 1
        assert val(m, "jwtgate_jwks_fetches_total", policy="jwt", provider="example", outcome="connect") >= 1
        assert val(m, "jwtgate_jwks_keys", policy="jwt", provider="example") == 1
        st = json.loads(admin_get(admin, "/status")[2])
        src = st["providers"][0]["source"]
        assert src["type"] == "remote" and src["lastFetchOutcome"] == "ok" and src["nextFetchSeconds"] > 0
        assert st["providers"][0]["keys"][0]["kid"] == "k1"
    finally:
        srv.stop()


def test_ready_is_503_from_the_start_of_a_drain(start_proxy, upstream):
    """SIGTERM with a slow request in flight: the process stays up to finish it, the admin listener keeps
    answering, /ready says 503 (so a balancer stops sending) and /live stays 200; then exit 0."""
    admin = jgtest.free_port()

    def config(port):
        cfg = jgtest.base_config(port, {"backend": [upstream.port]}, [jgtest.catch_all_route()],
                                 admin={"address": f"127.0.0.1:{admin}"})
        return cfg

    p = start_proxy(config, "drain")
    assert admin_get(admin, "/ready")[0] == 200
    result = {}

    def slow():
        result["r"] = jgtest.get(p.port, "/slow/2500", timeout=10.0)

    t = threading.Thread(target=slow)
    t.start()
    assert jgtest.wait_for(lambda: val(metrics(admin)[0], "jwtgate_connections_open", listener="http",
                                       protocol="http1") == 1)
    p.signal(signal.SIGTERM)
    # The signal and an admin request can be ready in the same turn of the control loop: the drain
    # starts when the loop handles the signal, so /ready turns 503 within that turn, not before it.
    assert jgtest.wait_for(lambda: admin_get(admin, "/ready")[0] == 503, timeout=2.0)
    status, _, body = admin_get(admin, "/ready")
    assert status == 503 and b"draining" in body, body
    assert admin_get(admin, "/live")[0] == 200
    assert p.proc.poll() is None  # still finishing the request
    t.join(10.0)
    assert result["r"].status == 200
    assert p.wait(10.0) == 0
    p.stopped = True
    p._out.close()
    p._err.close()
    # The admin listener closed with the process.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", admin), timeout=1).close()


def test_health_verdicts_and_refused_reloads_are_reported(start_proxy, tmp_path):
    """Active health check verdicts reach /metrics (jwtgate_upstream_healthy, jwtgate_health_checks_total)
    and /status (each endpoint's health); a refused reload (SIGHUP with a broken file) keeps the running
    configuration and shows in /metrics (jwtgate_reloads_total{outcome="refused"}) and /status (the
    reload block with the reason); an applied one moves the generation in both."""
    from test_health_checks import HealthUpstream

    a, b = HealthUpstream("A"), HealthUpstream("B")
    admin = jgtest.free_port()
    try:
        a.health_status = 503
        hc = {"type": "HTTP", "interval": "200ms", "timeout": "500ms", "unhealthyThreshold": 1,
              "healthyThreshold": 1, "http": {"path": "/healthz"}}
        backends = {"pair": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": u.port}} for u in (a, b)],
                             "healthCheck": {"panicThreshold": 0, "active": hc}}}

        def config(port):
            return jgtest.base_config(port, backends, [jgtest.catch_all_route("pair")], workers=1,
                                      admin={"address": f"127.0.0.1:{admin}"})

        px = start_proxy(config, "healthreload")
        ea, eb = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        assert jgtest.wait_for(lambda: val(metrics(admin)[0], "jwtgate_upstream_healthy", backend="pair",
                                           endpoint=ea) == 0 and
                               val(metrics(admin)[0], "jwtgate_health_checks_total", backend="pair",
                                   endpoint=ea, outcome="status") >= 1, timeout=5.0), px.logs()
        m, _ = metrics(admin)
        assert val(m, "jwtgate_upstream_healthy", backend="pair", endpoint=eb) == 1
        assert val(m, "jwtgate_health_checks_total", backend="pair", endpoint=eb, outcome="ok") >= 1
        assert val(m, "jwtgate_health_checks_total", backend="pair", endpoint=ea, outcome="ok") == 0
        st = json.loads(admin_get(admin, "/status")[2])
        eps = {f"{e['host']}:{e['port']}": e["health"] for e in st["backends"][0]["endpoints"]}
        assert eps == {ea: "unhealthy", eb: "healthy"}, eps
        assert st["reload"]["generation"] == 1 and st["reload"]["refused"] == 0

        # A broken file: refused, counted, the reason kept; the running configuration still serves.
        good = open(px.conf_path).read()
        with open(px.conf_path, "w") as f:
            f.write(good + "\nnoSuchKey: 1\n")
        px.signal(signal.SIGHUP)
        assert jgtest.wait_for(lambda: val(metrics(admin)[0], "jwtgate_reloads_total", outcome="refused") == 1,
                               timeout=5.0), px.logs()
        m, _ = metrics(admin)
        assert val(m, "jwtgate_reloads_total", outcome="applied") == 0
        assert val(m, "jwtgate_config_generation") == 1
        st = json.loads(admin_get(admin, "/status")[2])
        assert st["reload"]["lastOutcome"] == "refused" and st["reload"]["lastTrigger"] == "SIGHUP"
        assert 'unknown key "noSuchKey"' in st["reload"]["lastReason"], st["reload"]
        assert st["generation"] == 1
        assert jgtest.get(px.port, "/x").body == b"B"

        # The fixed file applies: generation 2 in both, verdicts carried over.
        with open(px.conf_path, "w") as f:
            f.write(good)
        px.signal(signal.SIGHUP)
        assert jgtest.wait_for(lambda: val(metrics(admin)[0], "jwtgate_reloads_total", outcome="applied") == 1,
                               timeout=5.0), px.logs()
        m, _ = metrics(admin)
        assert val(m, "jwtgate_config_generation") == 2
        assert val(m, "jwtgate_upstream_healthy", backend="pair", endpoint=ea) == 0
        st = json.loads(admin_get(admin, "/status")[2])
        assert st["generation"] == 2 and st["reload"]["lastOutcome"] == "applied"
        # Both log-drop series exist (nothing blocked here, so nothing was dropped).
        assert ("jwtgate_log_dropped_lines_total", frozenset({("log", "access")})) in m
        assert val(m, "jwtgate_log_dropped_lines_total", log="error") == 0
    finally:
        a.stop()
        b.stop()
