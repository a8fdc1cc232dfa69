"""Routing: the seed scenario's hosts and paths (no policy), match types, precedence, weights."""

import pytest

import jgtest
from jgtest import RawConn, get


def rule(backend, **match):
    r = {"backendRefs": [{"name": backend}]}
    if match:
        r["matches"] = [match]
    return r


def prefix(v):
    return {"type": "PathPrefix", "value": v}


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    ups = {n: make_upstream_module(n) for n in ("A", "B", "C", "W1", "W3")}
    routes = [
        # The seed scenario, standalone: foo and bar on www.example.com.
        {"name": "foo", "hostnames": ["www.example.com"], "rules": [rule("A", path=prefix("/foo"))]},
        {"name": "bar", "hostnames": ["www.example.com"], "rules": [rule("B", path=prefix("/bar"))]},
        # Match types and precedence.
        {"name": "types", "hostnames": ["match.example.com"], "rules": [
            rule("A", path={"type": "Exact", "value": "/exact"}),
            rule("B", path=prefix("/p")),
            rule("A", path=prefix("/p/long")),
            rule("C", path={"type": "Exact", "value": "/p/special"}),
            rule("C", path={"type": "RegularExpression", "value": "/re/[0-9]+"}),
        ]},
        {"name": "headers", "hostnames": ["hdr.example.com"], "rules": [
            rule("B", path=prefix("/"), headers=[{"name": "X-Env", "value": "canary"}]),
            rule("C", path=prefix("/"), headers=[{"name": "x-ver", "type": "RegularExpression",
                                                  "value": "v[0-9]+"}]),
            rule("A", path=prefix("/")),
        ]},
        {"name": "method", "hostnames": ["method.example.com"], "rules": [
            rule("B", path=prefix("/"), method="POST"),
            rule("A", path=prefix("/")),
        ]},
        {"name": "query", "hostnames": ["query.example.com"], "rules": [
            rule("C", path=prefix("/"), queryParams=[{"name": "mode", "value": "debug"}]),
            rule("A", path=prefix("/")),
        ]},
        {"name": "wild", "hostnames": ["*.wild.example.com"], "rules": [rule("A", path=prefix("/"))]},
        {"name": "wild-exact", "hostnames": ["special.wild.example.com"], "rules": [rule("B", path=prefix("/"))]},
        {"name": "weighted", "hostnames": ["weighted.example.com"], "rules": [
            {"matches": [{"path": prefix("/")}],
             "backendRefs": [{"name": "W1", "weight": 1}, {"name": "W3", "weight": 3}]}]},
    ]
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {n: [u.port] for n, u in ups.items()}, routes, workers=1))
    return {"ups": ups, "port": px.port}


@pytest.fixture(autouse=True)
def _fresh(env):
    for u in env["ups"].values():
        u.reset()
    yield


def routed(env, path, host, **kw):
    """Which upstream served the request (by name), or the status when it was not 200."""
    r = get(env["port"], path, host=host, **kw)
    if r.status != 200:
        return r.status
    return r.json()["upstream"]


def nothing_forwarded(env):
    return all(not u.snapshot() for u in env["ups"].values())


SEED = [
    ("/foo", "www.example.com", "A"),
    ("/foo/", "www.example.com", "A"),
    ("/foo/x", "www.example.com", "A"),
    ("/foo?q=1", "www.example.com", "A"),
    ("/bar", "www.example.com", "B"),
    ("/bar/baz", "www.example.com", "B"),
    ("/foobar", "www.example.com", 404),
    ("/barn", "www.example.com", 404),
    ("/", "www.example.com", 404),
    ("/baz", "www.example.com", 404),
    ("/foo", "other.example.com", 404),
    ("/foo", "www.example.com:8080", "A"),
    ("/bar", "www.example.com:80", "B"),
    ("/foo", "WWW.Example.COM", "A"),
]


@pytest.mark.parametrize("path,host,expected", SEED, ids=[f"{h}{p}" for p, h, _ in SEED])
def test_seed_scenario_routing(env, path, host, expected):
    assert routed(env, path, host) == expected
    if expected == 404:
        assert nothing_forwarded(env)


def test_404_has_short_text_body(env):
    with RawConn(env["port"]) as c:
        r = c.request("GET", "/nowhere", host="www.example.com")
        assert r.status == 404
        assert 0 < len(r.body) <= 256
        assert all(32 <= b < 127 or b in (9, 10, 13) for b in r.body), r.body
        assert (r.header("Content-Type") or "").startswith("text/plain")
    assert nothing_forwarded(env)


def test_404_keeps_client_connection_alive(env):
    # A 404 is a routine answer, not a protocol error: closing the connection after each one (as after
    # each 401 that shares this path) costs the client a new TCP handshake per denial. Envoy keeps it.
    with RawConn(env["port"]) as c:
        r = c.request("GET", "/nowhere", host="www.example.com")
        assert r.status == 404
        assert (r.header("Connection") or "").lower() != "close"
        r2 = c.request("GET", "/foo", host="www.example.com")
        assert r2.status == 200 and r2.json()["upstream"] == "A"
    assert len(env["ups"]["A"].snapshot()) == 1


TYPES = [
    ("/exact", "A"),
    ("/exact/", 404),
    ("/exact/x", 404),
    ("/p", "B"),
    ("/p/q", "B"),
    ("/pq", 404),
    ("/p/long", "A"),       # longest prefix wins
    ("/p/long/x", "A"),
    ("/p/longer", "B"),     # prefixes match whole segments
    ("/p/special", "C"),    # Exact beats PathPrefix
    ("/p/special2", "B"),
    ("/re/123", "C"),
    ("/re/abc", 404),
    ("/re/123/x", 404),     # regex is anchored to the whole path
    ("/x/re/123", 404),
]


@pytest.mark.parametrize("path,expected", TYPES, ids=[p for p, _ in TYPES])
def test_match_types_and_precedence(env, path, expected):
    assert routed(env, path, "match.example.com") == expected


HEADERS = [
    ([("X-Env", "canary")], "B"),
    ([("x-env", "canary")], "B"),      # header names are case-insensitive
    ([("X-Env", "CANARY")], "A"),      # values are exact
    ([("X-Env", "canary2")], "A"),
    ([("X-Ver", "v12")], "C"),
    ([("X-Ver", "v12x")], "A"),        # regex anchored
    ([("X-Ver", "vx")], "A"),
    ([], "A"),
]


@pytest.mark.parametrize("headers,expected", HEADERS, ids=[repr(h) for h, _ in HEADERS])
def test_header_match(env, headers, expected):
    assert routed(env, "/h", "hdr.example.com", headers=headers) == expected


def test_method_match(env):
    assert routed(env, "/m", "method.example.com", method="POST", body=b"x") == "B"
    assert routed(env, "/m", "method.example.com") == "A"
    assert routed(env, "/m", "method.example.com", method="PUT", body=b"x") == "A"


@pytest.mark.parametrize("target,expected", [
    ("/q?mode=debug", "C"),
    ("/q?a=1&mode=debug&b=2", "C"),
    ("/q?mode=debugx", "A"),
    ("/q?xmode=debug", "A"),
    ("/q", "A"),
])
def test_query_param_match(env, target, expected):
    assert routed(env, target, "query.example.com") == expected


@pytest.mark.parametrize("host,expected", [
    ("a.wild.example.com", "A"),
    ("x.y.wild.example.com", "A"),
    ("special.wild.example.com", "B"),  # exact hostname beats wildcard
    ("wild.example.com", 404),          # the wildcard needs at least one label
    ("awild.example.com", 404),
    ("a.wild.example.com:9999", "A"),
])
def test_wildcard_hostnames(env, host, expected):
    assert routed(env, "/w", host) == expected


def test_weighted_backends(env):
    n = 400
    counts = {"W1": 0, "W3": 0}
    with RawConn(env["port"]) as c:
        for i in range(n):
            r = c.request("GET", f"/w/{i}", host="weighted.example.com")
            assert r.status == 200
            counts[r.json()["upstream"]] += 1
    assert counts["W1"] + counts["W3"] == n
    assert counts["W1"] > 0 and counts["W3"] > 0, counts
    assert counts["W3"] > counts["W1"], counts
    # expected 300 +- 8.7 (binomial sd); a loose bound that a fair coin (200) or ignoring weights fails
    assert 240 <= counts["W3"] <= 360, counts


def test_absolute_form_target_routes_by_its_authority(env):
    # RFC 9112 section 3.2.2: a server must accept absolute-form and use its authority, ignoring Host.
    with RawConn(env["port"]) as c:
        c.send(b"GET http://www.example.com/foo/abs?x=1 HTTP/1.1\r\nHost: other.example.com\r\n\r\n")
        r = c.read_response()
    assert r.status == 200
    rec = r.json()
    assert rec["upstream"] == "A"
    assert rec["path"] in ("/foo/abs?x=1", "http://www.example.com/foo/abs?x=1")


def test_host_routing_is_not_fooled_by_forwarded_headers(env):
    # Only Host (or the absolute-form authority) selects the virtual host.
    r = get(env["port"], "/foo", host="other.example.com",
            headers=[("X-Forwarded-Host", "www.example.com"), ("Forwarded", "host=www.example.com")])
    assert r.status == 404
    assert nothing_forwarded(env)
