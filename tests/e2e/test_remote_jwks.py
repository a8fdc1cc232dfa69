"""Remote JWKS over HTTPS with a private CA (the seed's second scenario) and its lifecycle
(reference/jwt-behaviour.md "Remote JWKS lifecycle"): first fetch before the listeners open, fail closed
without keys, retries per the retry policy, refresh, old keys kept when a refresh fails, TLS trust and
host name, bounded bodies, and one rate-limited refetch for unknown kids (no fetch storm,
envoyproxy/gateway#4791). Then the seed's scenario with the seed's own files, http:// URIs ("https or http",
never a downgrade of https), unresolvable hosts, several tokens while the fetch fails (Envoy
CVE-2025-64527), and the counters line logged after every fetch cycle."""

import json
import os
import re
import signal
import subprocess
import time

import pytest

import jgtest
import jwksutil
from jwksutil import JwksServer, SigningKey, get_with_token, remote_config, remote_provider

FETCH_FAILED = b"Jwks remote fetch is failed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = jwksutil.CA("jwks test CA")
    other = jwksutil.CA("some other CA")
    cert, key = ca.issue(d, hostnames=("foo.bar.com",))
    od = d / "other"
    od.mkdir()
    ocert, okey = other.issue(od, hostnames=("foo.bar.com",))
    return {"dir": d, "ca": ca.write(str(d / "ca.pem")), "cert": cert, "key": key,
            "other_cert": ocert, "other_key": okey}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    return {k: SigningKey(k, d) for k in ("k1", "k2", "k3")}


@pytest.fixture
def jwks_server(pki):
    servers = []

    def make(cert=None, key=None, port=None, start=True, plain=False):
        s = JwksServer(None, None, port) if plain else JwksServer(cert or pki["cert"], key or pki["key"], port)
        servers.append(s)
        return s.start() if start else s

    yield make
    for s in servers:
        s.stop()


def start(start_proxy, upstream, srv, pki, **kw):
    return start_proxy(lambda port: remote_config(port, upstream.port, srv.port, pki["ca"], **kw))


def test_token_signed_by_served_key_passes(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki)
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 200, r
    assert srv.count() == 1
    assert srv.requests[0] == "GET /jwks.json HTTP/1.1"
    # A key the server does not serve, and no token at all, are refused.
    r = get_with_token(p.port, keys["k2"].token(kid="k1"))
    assert r.status == 401 and b"Jwt verification fails" in r.body, r
    r = get_with_token(p.port, None)
    assert r.status == 401 and b"Jwt is missing" in r.body, r
    assert jgtest.wait_for(lambda: "fetched 1 key" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_chunked_and_close_delimited_bodies(start_proxy, upstream, jwks_server, pki, keys, framing):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([], default=("jwks", framing))
    p = start(start_proxy, upstream, srv, pki)
    assert get_with_token(p.port, keys["k1"].token()).status == 200


def test_server_down_at_start_fails_closed_then_recovers(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server(start=False)
    srv.serve(keys["k1"])
    token = keys["k1"].token()
    p = start(start_proxy, upstream, srv, pki, failed="1s")
    r = get_with_token(p.port, token)
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 0
    srv.start()
    t0 = time.monotonic()
    assert jwksutil.wait_status(p.port, token, 200, 5.0), jwksutil.stderr_text(p)
    assert time.monotonic() - t0 < 4.0  # refetched every failedRefetchDuration (1s), not at cacheDuration


def test_503_twice_then_200_with_three_retries(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([("status", 503), ("status", 503)])
    retry = {"numRetries": 3, "perRetry": {"backOff": {"baseInterval": "50ms", "maxInterval": "200ms"}},
             "retryOn": {"triggers": ["5xx"]}}
    p = start(start_proxy, upstream, srv, pki, retry=retry)
    # The listeners opened after the first fetch (with its retries) finished: the first request passes.
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 200, (r, jwksutil.stderr_text(p))
    assert srv.count() == 3


def test_status_not_in_triggers_is_not_retried(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([("status", 503)])
    retry = {"numRetries": 3, "perRetry": {"backOff": {"baseInterval": "50ms"}},
             "retryOn": {"triggers": ["retriable-4xx"]}}
    p = start(start_proxy, upstream, srv, pki, retry=retry, failed="1s")
    token = keys["k1"].token()
    r = get_with_token(p.port, token)
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 1
    # The next fetch comes after failedRefetchDuration and succeeds.
    assert jwksutil.wait_status(p.port, token, 200, 4.0)
    assert srv.count() == 2


def test_reset_retried(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([("reset",)])
    retry = {"numRetries": 2, "perRetry": {"backOff": {"baseInterval": "20ms"}}, "retryOn": {"triggers": ["reset"]}}
    p = start(start_proxy, upstream, srv, pki, retry=retry)
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert srv.count() == 2


def test_untrusted_certificate_never_trusted(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server(cert=pki["other_cert"], key=pki["other_key"])
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki)
    token = keys["k1"].token()
    r = get_with_token(p.port, token)
    assert r.status == 401 and FETCH_FAILED in r.body, r
    time.sleep(1.5)  # a refetch or two happen meanwhile, and fail the same way
    assert get_with_token(p.port, token).status == 401
    assert srv.count() == 0 and srv.failed_handshakes >= 1
    assert jgtest.wait_for(lambda: "certificate verify failed" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_wrong_hostname_refused(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki, hostname="other.example.com")
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 0
    assert jgtest.wait_for(lambda: "certificate verify failed" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_unknown_kid_triggers_one_refetch(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki, cache="300s", failed="1s")
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert srv.count() == 1
    # The server rotates to a new key; many clients arrive at once with tokens naming it.
    srv.serve(keys["k1"], keys["k2"])
    t2 = keys["k2"].token()
    statuses = jwksutil.concurrent_gets(p.port, t2, 30)
    assert all(s in (200, 401) for s in statuses), statuses
    assert jwksutil.wait_status(p.port, t2, 200, 3.0), jwksutil.stderr_text(p)
    time.sleep(0.5)
    assert srv.count() == 2, srv.requests  # one refetch for all of them
    # Within the cooldown, more unknown kids cause no fetch at all.
    statuses = jwksutil.concurrent_gets(p.port, keys["k3"].token(), 30)
    assert statuses == [401] * 30
    time.sleep(1.0)
    assert srv.count() == 2
    assert get_with_token(p.port, keys["k1"].token()).status == 200


def kidless_set(kidless, *keys):
    """A key set like the seed's jwks.json: first a key without a kid, then `keys`."""
    first = {k: v for k, v in kidless.public.items() if k != "kid"}
    return json.dumps({"keys": [first] + [k.public for k in keys]}).encode()


def test_unknown_kid_refetch_with_kidless_key_in_set(start_proxy, upstream, jwks_server, pki, keys, tmp_path):
    """issue 10 section 4: the set also holds a key without a kid, which every token is tried against, so a
    token with a rotated-in kid fails with "Jwt verification fails" (not JwksKidAlgMismatch). It must still
    trigger the (rate-limited) refetch instead of waiting for cacheDuration."""
    nokid = SigningKey("nokid", tmp_path)
    srv = jwks_server()
    srv.serve_bytes(kidless_set(nokid, keys["k1"]))
    p = start(start_proxy, upstream, srv, pki, cache="300s", failed="1s")
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert srv.count() == 1
    # The server rotates k1 out and k2 in, keeping its kid-less key; clients arrive with k2 tokens.
    srv.serve_bytes(kidless_set(nokid, keys["k2"]))
    t2 = keys["k2"].token()
    t0 = time.monotonic()
    statuses = jwksutil.concurrent_gets(p.port, t2, 30)
    assert all(s in (200, 401) for s in statuses), statuses
    assert jwksutil.wait_status(p.port, t2, 200, 3.0), jwksutil.stderr_text(p)
    assert time.monotonic() - t0 < 5.0  # cacheDuration is 300 s: this is the refetch
    time.sleep(0.5)
    assert srv.count() == 2, srv.requests  # one refetch for all of them
    # Within the cooldown a flood of other unknown kids fetches nothing; each gets the same answer as
    # without a refetch (the kid-less key was tried and failed).
    t9 = keys["k1"].token(kid="k9")
    results = [get_with_token(p.port, t9) for _ in range(5)]
    assert all(r.status == 401 and b"Jwt verification fails" in r.body for r in results), results
    statuses = jwksutil.concurrent_gets(p.port, t9, 30)
    assert statuses == [401] * 30
    time.sleep(1.0)
    assert srv.count() == 2, srv.requests
    assert jwksutil.stderr_text(p).count("refetching now") == 1, jwksutil.stderr_text(p)


def test_fetched_key_refused_with_its_reason(start_proxy, upstream, jwks_server, pki, keys):
    """issue 10 section 4: a fetched key that is refused is logged with its index, kid and own reason; the
    other keys serve."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    n = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key().public_numbers().n
    weak = {"kty": "RSA", "kid": "weak", "e": "AQAB", "n": jwksutil.b64u(n.to_bytes(128, "big"))}
    srv = jwks_server()
    srv.serve_bytes(json.dumps({"keys": [weak, keys["k1"].public]}).encode())
    p = start(start_proxy, upstream, srv, pki)
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert ('key #0 kid "weak" skipped: RSA modulus is 1024 bits; at least 2048 are required'
            in jwksutil.stderr_text(p)), jwksutil.stderr_text(p)


def test_unknown_kid_storm_is_one_fetch(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki)
    statuses = jwksutil.concurrent_gets(p.port, keys["k3"].token(), 50)
    assert statuses == [401] * 50
    assert jgtest.wait_for(lambda: srv.count() == 2, 3.0)
    time.sleep(1.0)
    assert srv.count() == 2


@pytest.mark.parametrize("failure", [("status", 503), ("reset",), ("raw", b"{not json", "cl"),
                                     ("raw", b'{"keys":[]}', "cl")])
def test_refresh_failure_keeps_old_keys(start_proxy, upstream, jwks_server, pki, keys, failure):
    srv = jwks_server()
    srv.serve(keys["k1"])
    retry = {"numRetries": 0}
    p = start(start_proxy, upstream, srv, pki, cache="1s", failed="300ms", retry=retry)
    token = keys["k1"].token()
    assert get_with_token(p.port, token).status == 200
    srv.set_script([], default=failure)
    assert jgtest.wait_for(lambda: srv.count() >= 4, 5.0), srv.requests
    assert get_with_token(p.port, token).status == 200
    assert jgtest.wait_for(lambda: "keeping the previous keys" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_refresh_replaces_keys(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki, cache="1s")
    t1, t2 = keys["k1"].token(), keys["k2"].token()
    assert get_with_token(p.port, t1).status == 200
    srv.serve(keys["k2"])
    assert jwksutil.wait_status(p.port, t2, 200, 4.0)
    assert get_with_token(p.port, t1).status == 401  # the old key is gone with the new set


@pytest.mark.parametrize("framing", ["cl", "chunked", "close"])
def test_oversize_body_refused(start_proxy, upstream, jwks_server, pki, keys, framing):
    srv = jwks_server()
    big = b'{"keys":[],"pad":"' + b"x" * (1024 * 1024) + b'"}'
    srv.set_script([], default=("raw", big, framing))
    p = start(start_proxy, upstream, srv, pki, retry={"numRetries": 0})
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert jgtest.wait_for(lambda: "body too large" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_bad_json_refused(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.set_script([], default=("raw", b"<html>not a jwks</html>", "cl"))
    p = start(start_proxy, upstream, srv, pki)
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 1  # a 200 with a bad body is not retried
    assert jgtest.wait_for(lambda: "invalid JWKS" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_request_timeout_bounds_start_up(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([], default=("slow", 30))
    t0 = time.monotonic()
    retry = {"numRetries": 1, "perRetry": {"backOff": {"baseInterval": "50ms"}}, "retryOn": {"triggers": ["reset"]}}
    p = start(start_proxy, upstream, srv, pki, timeout="500ms", retry=retry)
    assert time.monotonic() - t0 < 4.0
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 2
    assert jgtest.wait_for(lambda: "request timeout" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_listeners_open_after_first_fetch(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([("slow", 1.5)])
    t0 = time.monotonic()
    p = start(start_proxy, upstream, srv, pki, timeout="5s")
    assert time.monotonic() - t0 >= 1.3  # the port was not open while the first fetch ran
    assert get_with_token(p.port, keys["k1"].token()).status == 200


def test_providers_sharing_a_jwks_share_one_fetcher(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])

    def cfg(port):
        c = remote_config(port, upstream.port, srv.port, pki["ca"])
        c["httpRoutes"] = [jgtest.catch_all_route(hostnames=["a.example.com"]),
                           dict(jgtest.catch_all_route(hostnames=["b.example.com"]), name="b")]
        c["securityPolicies"].append({"name": "jwt-b", "targetRef": {"kind": "HTTPRoute", "name": "b"},
                                      "jwt": {"providers": [remote_provider("other", srv.port)]}})
        return c

    p = start_proxy(cfg)
    tok = keys["k1"].token()
    for host in ("a.example.com", "b.example.com"):
        r = jgtest.get(p.port, "/", host=host, headers=[("Authorization", "Bearer " + tok)])
        assert r.status == 200, (host, r)
    assert srv.count() == 1


def test_check_does_not_fetch(tmp_path, upstream, jwks_server, pki):
    srv = jwks_server()
    path = tmp_path / "c.yaml"
    path.write_text(jgtest.dump_yaml(remote_config(jgtest.free_port(), upstream.port, srv.port, pki["ca"])))
    out = subprocess.run([jgtest.BIN, "-c", str(path), "--check"], capture_output=True, timeout=20)
    assert out.returncode == 0, out
    time.sleep(0.3)
    assert srv.count() == 0 and srv.failed_handshakes == 0


def test_no_backendrefs_uses_system_store(start_proxy, upstream, jwks_server, pki, keys):
    # Without backendRefs the URI host is connected and verified against the system CA store, which
    # does not know the private CA: the fetch fails closed.
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start_proxy(lambda port: remote_config(
        port, upstream.port, srv.port, pki["ca"],
        providers=[remote_provider("sys", srv.port, uri_host="127.0.0.1", backend=None,
                                   retry={"numRetries": 0})]))
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 0 and srv.failed_handshakes >= 1


def test_reload_keeps_keys_and_fetches_for_the_new_configuration(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki)
    t1 = keys["k1"].token()
    assert get_with_token(p.port, t1).status == 200
    srv.set_script([], default=("status", 503))  # the reload's own fetch fails: the adopted keys must hold
    p.signal(signal.SIGHUP)
    assert jgtest.wait_for(lambda: "configuration reloaded" in jwksutil.stderr_text(p), 5.0)
    for _ in range(20):
        assert get_with_token(p.port, t1).status == 200
    assert jgtest.wait_for(lambda: srv.count() >= 2, 3.0)
    # The new configuration's fetcher serves unknown kids too.
    srv.serve(keys["k1"], keys["k2"])
    srv.set_script([], default=("jwks", "cl"))
    t2 = keys["k2"].token()
    assert jwksutil.wait_status(p.port, t2, 200, 4.0), jwksutil.stderr_text(p)


# ---------------------------------------------------------------------------------------------------
# The seed's second scenario, plain HTTP, fail-closed paths, several tokens, and the counters line.

SEED = jgtest.SEED_DIR
SEED_RETRY = {"numRetries": 3, "perRetry": {"backOff": {"baseInterval": "1s", "maxInterval": "5s"}},
              "retryOn": {"triggers": ["5xx", "gateway-error", "reset"]}}
STATS_RE = re.compile(r"jwks (\S+): fetch (ok|failed) \(keys=(\d+), ok=(\d+) fail\{([^}]*)\} "
                      r"kid_refetch=(\d+), age=(\w+)\)")


def stats_lines(proxy):
    """The counters lines of the proxy's log, in order: dicts with uri, outcome, keys, ok, fail{...},
    kid_refetch and age (seconds, or None without keys)."""
    out = []
    for m in STATS_RE.finditer(jwksutil.stderr_text(proxy)):
        fails = dict((k, int(v)) for k, v in (kv.split("=") for kv in m.group(5).split(",")))
        age = None if m.group(7) == "none" else int(m.group(7).rstrip("s"))
        out.append({"uri": m.group(1), "outcome": m.group(2), "keys": int(m.group(3)), "ok": int(m.group(4)),
                    "fail": fails, "kid_refetch": int(m.group(6)), "age": age})
    return out


def no_fail(**counts):
    d = dict.fromkeys(("connect", "tls", "reset", "timeout", "status", "too_large", "bad_jwks", "config"), 0)
    d.update(counts)
    return d


def foo_bar_config(listen_port, upstream_port, providers, backends=None, fail_open=False):
    """The seed's routes: /foo guarded by the policy, /bar open, both for www.example.com."""
    bes = {"backend": [upstream_port]}
    bes.update(backends or {})
    routes = [{"name": name, "hostnames": ["www.example.com"],
               "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/" + name}}],
                          "backendRefs": [{"name": "backend"}]}]} for name in ("foo", "bar")]
    cfg = jgtest.base_config(listen_port, bes, routes)
    cfg["securityPolicies"] = [{"name": "jwt-example", "targetRef": {"kind": "HTTPRoute", "name": "foo"},
                                "jwt": {"providers": providers}}]
    if fail_open:
        cfg["securityPolicies"][0]["jwt"]["failOpen"] = True
    return cfg


def tls_backend(jwks_port, ca_path, endpoint=None):
    return {"remote-jwks": {"endpoints": [endpoint or {"ip": {"address": "127.0.0.1", "port": jwks_port}}],
                            "tls": {"caCertificateRefs": [{"file": ca_path}], "hostname": "foo.bar.com"}}}


def test_seed_remote_jwks_scenario_with_seed_files(start_proxy, upstream, jwks_server, pki):
    # The seed's second scenario end to end: its jwks.json behind HTTPS with a private CA (made here), the
    # provider with the seed's retry policy, and its test.jwt.
    with open(os.path.join(SEED, "jwks.json"), "rb") as f:
        seed_jwks = f.read()
    with open(os.path.join(SEED, "test.jwt")) as f:
        seed_token = f.read().strip()
    srv = jwks_server()
    srv.serve_bytes(seed_jwks)
    srv.set_script([("status", 503)])  # one 5xx: the retry policy (backoff 1s..5s) brings the keys anyway
    prov = remote_provider("example", srv.port, cache="60s", timeout="5s", retry=SEED_RETRY, issuer=None)
    p = start_proxy(lambda port: foo_bar_config(port, upstream.port, [prov], tls_backend(srv.port, pki["ca"])))
    r = jgtest.get(p.port, "/foo", headers=[("Authorization", "Bearer " + seed_token)])
    assert r.status == 200, (r, jwksutil.stderr_text(p))
    r = jgtest.get(p.port, "/foo")
    assert r.status == 401 and b"Jwt is missing" in r.body, r
    assert jgtest.get(p.port, "/bar").status == 200
    assert srv.requests == ["GET /jwks.json HTTP/1.1"] * 2
    assert b"\r\nHost: foo.bar.com:%d\r\n" % srv.port in srv.heads[1]
    assert jgtest.wait_for(lambda: "fetched 2 keys" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)
    assert [(s["outcome"], s["ok"], s["fail"]) for s in stats_lines(p)] == [("ok", 1, no_fail(status=1))]


@pytest.mark.parametrize("via", ["backend", "uri-host"])
def test_http_uri_fetched_in_clear(start_proxy, upstream, jwks_server, keys, via):
    srv = jwks_server(plain=True)
    srv.serve(keys["k1"])
    if via == "backend":  # a backend without a tls block
        p = start_proxy(lambda port: remote_config(port, upstream.port, srv.port, None, scheme="http"))
        host = "foo.bar.com"
    else:
        p = start_proxy(lambda port: remote_config(
            port, upstream.port, srv.port, None,
            providers=[remote_provider("plain", srv.port, uri_host="127.0.0.1", backend=None, scheme="http")]))
        host = "127.0.0.1"
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert get_with_token(p.port, None).status == 401
    assert srv.requests == ["GET /jwks.json HTTP/1.1"] and srv.tls_hellos == 0
    assert b"\r\nHost: %s:%d\r\n" % (host.encode(), srv.port) in srv.heads[0]
    assert jgtest.wait_for(lambda: "plain HTTP without TLS" in jwksutil.stderr_text(p), 3.0), jwksutil.stderr_text(p)


def test_http_uri_through_tls_backend_is_tls(start_proxy, upstream, jwks_server, pki, keys):
    # A backend with a tls block means TLS whatever the URI's scheme: the TLS-only server answers.
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start_proxy(lambda port: remote_config(port, upstream.port, srv.port, pki["ca"], scheme="http"))
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert srv.count() == 1 and srv.failed_handshakes == 0
    assert "plain HTTP" not in jwksutil.stderr_text(p)


@pytest.mark.parametrize("via", ["backend", "uri-host"])
def test_https_uri_to_plain_http_server_fails_closed(start_proxy, upstream, jwks_server, pki, keys, via):
    # https is never downgraded: a server that speaks plain HTTP gets a ClientHello, never a request.
    srv = jwks_server(plain=True)
    srv.serve(keys["k1"])
    if via == "backend":
        p = start(start_proxy, upstream, srv, pki)
    else:
        p = start_proxy(lambda port: remote_config(
            port, upstream.port, srv.port, pki["ca"],
            providers=[remote_provider("sys", srv.port, uri_host="127.0.0.1", backend=None)]))
    r = get_with_token(p.port, keys["k1"].token())
    assert r.status == 401 and FETCH_FAILED in r.body, r
    assert srv.count() == 0 and srv.tls_hellos >= 2  # the first attempt and its retry
    log = jwksutil.stderr_text(p)
    assert "TLS failure" in log, log
    first = stats_lines(p)[0]
    assert first["outcome"] == "failed" and first["keys"] == 0 and first["age"] is None, first
    assert first["fail"] == no_fail(tls=2), first


@pytest.mark.parametrize("via", ["fqdn-endpoint", "uri-host"])
def test_unresolvable_host_fails_closed_other_routes_served(start_proxy, upstream, jwks_server, pki, keys, via):
    jwks_port = jgtest.free_port()
    retry = {"numRetries": 1, "perRetry": {"backOff": {"baseInterval": "50ms"}},
             "retryOn": {"triggers": ["connect-failure"]}}
    if via == "fqdn-endpoint":
        prov = remote_provider("example", jwks_port, timeout="1s", retry=retry)
        bes = tls_backend(jwks_port, pki["ca"], {"fqdn": {"hostname": "nonexistent.invalid", "port": jwks_port}})
    else:
        prov = remote_provider("example", jwks_port, uri_host="nonexistent.invalid", backend=None, timeout="1s",
                               retry=retry)
        bes = None
    p = start_proxy(lambda port: foo_bar_config(port, upstream.port, [prov], bes))
    token = keys["k1"].token()
    for _ in range(3):
        r = jgtest.get(p.port, "/foo", headers=[("Authorization", "Bearer " + token)])
        assert r.status == 401 and FETCH_FAILED in r.body, r
        assert jgtest.get(p.port, "/bar").status == 200
    log = jwksutil.stderr_text(p)
    assert "cannot resolve" in log or "connect timeout" in log, log
    first = stats_lines(p)[0]
    assert first["outcome"] == "failed" and first["fail"] == no_fail(connect=2), first
    assert p.proc.poll() is None


@pytest.mark.parametrize("fail_open", [False, True])
def test_several_tokens_while_fetch_fails(start_proxy, upstream, jwks_server, pki, keys, fail_open):
    # Envoy CVE-2025-64527: several tokens in one request while the remote JWKS fetch fails crashed Envoy
    # (with allow_missing_or_failed, our failOpen). Here: 401 (or, failing open, 200), and the proxy lives on.
    srv = jwks_server()
    srv.set_script([], default=("status", 503))
    prov = remote_provider("example", srv.port, retry={"numRetries": 0})
    p = start_proxy(lambda port: foo_bar_config(port, upstream.port, [prov], tls_backend(srv.port, pki["ca"]),
                                                fail_open=fail_open))
    t1, t2 = keys["k1"].token(), keys["k2"].token()
    shapes = [
        ("/foo", [("Authorization", "Bearer " + t1), ("Authorization", "Bearer " + t2)]),
        ("/foo?access_token=" + t2, [("Authorization", "Bearer " + t1)]),
        ("/foo?access_token=" + t1 + "&access_token=" + t2, [("Authorization", "Bearer " + t1)]),
        ("/foo", [("Authorization", "Bearer " + t1)] * 9),
    ]
    for _ in range(5):
        for path, headers in shapes:
            r = jgtest.get(p.port, path, headers=headers)
            if fail_open:
                assert r.status == 200, (path, r)
            else:
                assert r.status == 401, (path, r)
                assert FETCH_FAILED in r.body or b"Found multiple Jwt tokens" in r.body, (path, r)
    assert p.proc.poll() is None
    assert jgtest.get(p.port, "/bar").status == 200
    r = jgtest.get(p.port, "/foo")
    assert r.status == (200 if fail_open else 401), r


def test_counters_line_after_503_503_200(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    srv.set_script([("status", 503), ("status", 503)])
    retry = {"numRetries": 3, "perRetry": {"backOff": {"baseInterval": "50ms", "maxInterval": "200ms"}},
             "retryOn": {"triggers": ["5xx"]}}
    p = start(start_proxy, upstream, srv, pki, retry=retry)
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    lines = stats_lines(p)
    assert len(lines) == 1, lines  # one line per fetch cycle, not per attempt
    assert lines[0] == {"uri": f"https://foo.bar.com:{srv.port}/jwks.json", "outcome": "ok", "keys": 1, "ok": 1,
                        "fail": no_fail(status=2), "kid_refetch": 0, "age": 0}, lines
    # An unknown kid: one refetch, counted.
    srv.serve(keys["k1"], keys["k2"])
    assert jwksutil.wait_status(p.port, keys["k2"].token(), 200, 3.0)
    assert jgtest.wait_for(lambda: len(stats_lines(p)) == 2, 3.0)
    second = stats_lines(p)[1]
    assert (second["outcome"], second["keys"], second["ok"], second["fail"], second["kid_refetch"]) == \
        ("ok", 2, 2, no_fail(status=2), 1), second


def test_counters_report_age_of_kept_keys(start_proxy, upstream, jwks_server, pki, keys):
    srv = jwks_server()
    srv.serve(keys["k1"])
    p = start(start_proxy, upstream, srv, pki, cache="1s", failed="500ms", retry={"numRetries": 0})
    srv.set_script([], default=("status", 500))
    assert get_with_token(p.port, keys["k1"].token()).status == 200
    assert jgtest.wait_for(lambda: any(s["outcome"] == "failed" and s["age"] >= 1 for s in stats_lines(p)), 5.0), \
        stats_lines(p)
    failed = [s for s in stats_lines(p) if s["outcome"] == "failed"]
    assert all(s["keys"] == 1 and s["ok"] == 1 for s in failed), failed
    assert [s["fail"]["status"] for s in failed] == list(range(1, len(failed) + 1)), failed
    assert get_with_token(p.port, keys["k1"].token()).status == 200
