"""Path normalisation and header names with underscores, before routing (issue 10 sections 2 and 1).

The JWT policy must be decided on the path the upstream will act on. With the seed's routes (a JWT
policy on /foo, none on /bar, host www.example.com) the issue's four paths `/bar/../foo`,
`/bar/%2e%2e/foo`, `/bar/..%2ffoo`, `/bar//../../foo` matched the open /bar and reached an origin that
resolves them to /foo without a token. jwtgate now normalises once, in the protocol-neutral request
(RFC 3986 dot segments, merged slashes, percent-decoded unreserved characters, escaped slashes per
clientTrafficPolicies path.escapedSlashesAction), then routes, authenticates and forwards that path;
the query is never changed. Header names with '_' get headers.withUnderscoresAction.

Clients never normalise here: HTTP/1.1 over raw sockets (jgtest.RawConn; curl would remove dot
segments itself) and h2c with a frame-level client (h2util.RawH2), gRPC included. Upstreams are the
recording jgtest.Upstream and the python3-grpcio echo server. One proxy has four listeners:
  default  no clientTrafficPolicy: Envoy Gateway's defaults (RejectRequest, UnescapeAndRedirect, merge)
  fwd      escapedSlashesAction UnescapeAndForward, withUnderscoresAction DropHeader
  keep     escapedSlashesAction KeepUnchanged, withUnderscoresAction Allow, disableMergeSlashes
  reject   escapedSlashesAction RejectRequest
  nomerge  disableMergeSlashes (escaped slashes redirected)
"""

import json
import subprocess
import os
import time

import hyperframe.frame as hf
import pytest

import grpc_echo_server as echo
import h2util
import jgtest
from jgtest import RawConn, get
from test_jwt import MSG_MISSING, rsa_jwk

HOST = "www.example.com"
GRPC_HOST = "grpc.example.com"
TOKEN_BIN = jgtest.TOKEN_BIN
ISSUE_PATHS = ["/bar/../foo", "/bar/%2e%2e/foo", "/bar/..%2ffoo", "/bar//../../foo"]


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module, tmp_path_factory):
    up = make_upstream_module("backend")
    srv = echo.EchoServer().start()
    keydir = str(tmp_path_factory.mktemp("path-keys"))
    priv, pub = rsa_jwk("path-rsa")
    key_path = os.path.join(keydir, "rsa.private.json")
    with open(key_path, "w") as f:
        json.dump(priv, f)
    ports = {name: jgtest.free_port() for name in ("fwd", "keep", "reject", "nomerge")}

    def config(port):
        ports["default"] = port
        routes = [{"name": n, "hostnames": [HOST],
                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/" + n}}],
                              "backendRefs": [{"name": "backend"}]}]} for n in ("foo", "bar")]
        grpc_routes = [
            # the secured method, and every other call of the host open: a path that does not parse
            # as /yages.Echo/Reverse would fall to the open route
            {"name": "reverse", "hostnames": [GRPC_HOST],
             "rules": [{"matches": [{"method": {"service": "yages.Echo", "method": "Reverse"}}],
                        "backendRefs": [{"name": "yages"}]}]},
            {"name": "open", "hostnames": [GRPC_HOST], "rules": [{"backendRefs": [{"name": "yages"}]}]},
        ]
        jwks = json.dumps({"keys": [pub]})
        policies = [{"name": "jwt", "targetRefs": [{"kind": "HTTPRoute", "name": "foo"},
                                                   {"kind": "GRPCRoute", "name": "reverse"}],
                     "jwt": {"providers": [{"name": "p", "localJWKS": {"type": "Inline", "inline": jwks}}]}}]
        backends = {"backend": [up.port],
                    "yages": {"protocol": "H2C",
                              "endpoints": [{"ip": {"address": "127.0.0.1", "port": srv.port}}]}}
        cfg = jgtest.base_config(port, backends, routes, grpcRoutes=grpc_routes, securityPolicies=policies)
        cfg["listeners"] = [{"name": "default", "address": f"127.0.0.1:{port}"}] + [
            {"name": n, "address": f"127.0.0.1:{ports[n]}"} for n in ("fwd", "keep", "reject", "nomerge")]
        cfg["clientTrafficPolicies"] = [
            {"name": "fwd", "targetRef": {"kind": "Gateway", "name": "eg", "sectionName": "fwd"},
             "headers": {"withUnderscoresAction": "DropHeader"},
             "path": {"escapedSlashesAction": "UnescapeAndForward"}},
            {"name": "keep", "targetRef": {"kind": "Gateway", "name": "eg", "sectionName": "keep"},
             "headers": {"withUnderscoresAction": "Allow"},
             "path": {"escapedSlashesAction": "KeepUnchanged", "disableMergeSlashes": True}},
            {"name": "reject", "targetRef": {"kind": "Gateway", "name": "eg", "sectionName": "reject"},
             "path": {"escapedSlashesAction": "RejectRequest"}},
            {"name": "nomerge", "targetRef": {"kind": "Gateway", "name": "eg", "sectionName": "nomerge"},
             "path": {"disableMergeSlashes": True}},
        ]
        return cfg

    proxy = start_proxy_module(config, "paths")
    for n in ("fwd", "keep", "reject", "nomerge"):
        assert jgtest.wait_port(ports[n], 10.0), proxy.logs()
    proc = subprocess.run([TOKEN_BIN, "--key", key_path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    yield {"proxy": proxy, "up": up, "srv": srv, "ports": ports, "token": proc.stdout.strip()}
    srv.stop()


def h1(env, listener, path, headers=(), method="GET"):
    """One HTTP/1.1 request with a unique marker in the query; (response, upstream records)."""
    m = jgtest.marker()
    target = f"{path}{'&' if '?' in path else '?'}m={m}"
    r = get(env["ports"][listener], target, host=HOST, headers=headers, method=method)
    recs = jgtest.wait_for(lambda: env["up"].matching(m), 2.0) if r.status == 200 else env["up"].matching(m)
    return r, recs, m


def h2(env, listener, path, headers=(), authority=HOST):
    """One h2c request; (status, headers dict, body, upstream records, marker)."""
    m = jgtest.marker()
    target = f"{path}{'&' if '?' in path else '?'}m={m}"
    with h2util.RawH2(env["ports"][listener]) as c:
        c.send(c.headers_frame(1, c.request_headers(target, "GET", authority, list(headers))))
        assert c.wait(lambda c: 1 in c.ended or 1 in c.rst), (c.headers, c.rst, c.goaway)
        assert 1 not in c.rst, c.rst
        hd = c.headers[1][0]
        body = c.data.get(1, b"")
    status = int(hd[":status"])
    recs = jgtest.wait_for(lambda: env["up"].matching(m), 2.0) if status == 200 else env["up"].matching(m)
    return status, hd, body, recs, m


def bearer(env):
    return ("authorization", "Bearer " + env["token"])


# ---- the issue's four paths: never the open /bar, never without a token ----

@pytest.mark.parametrize("path", [p for p in ISSUE_PATHS if "%2f" not in p])
def test_issue_paths_denied_without_token_http1(env, path):
    r, recs, _ = h1(env, "default", path)
    assert r.status == 401, r
    assert r.body == MSG_MISSING.encode(), r
    assert 'realm="http://www.example.com/foo?' in r.header("www-authenticate"), r
    assert recs == [], "a request without a token reached the upstream"


@pytest.mark.parametrize("path", [p for p in ISSUE_PATHS if "%2f" not in p])
def test_issue_paths_denied_without_token_h2c(env, path):
    status, hd, body, recs, _ = h2(env, "default", path)
    assert status == 401, (hd, body)
    assert body == MSG_MISSING.encode()
    assert recs == []


@pytest.mark.parametrize("path", ISSUE_PATHS)
@pytest.mark.parametrize("proto", ["http1", "h2c"])
def test_issue_paths_denied_without_token_when_slashes_are_forwarded(env, path, proto):
    if proto == "http1":
        r, recs, _ = h1(env, "fwd", path)
        status, body = r.status, r.body
    else:
        status, _, body, recs, _ = h2(env, "fwd", path)
    assert status == 401 and body == MSG_MISSING.encode(), (status, body)
    assert recs == []


@pytest.mark.parametrize("path", ISSUE_PATHS)
def test_issue_paths_with_token_reach_upstream_normalised_query_unchanged(env, path):
    query = "?a=/../%2e%2F&b=%zz"  # the query is never decoded or normalised
    r, recs, m = h1(env, "fwd", path + query, headers=[bearer(env)])
    assert r.status == 200, r
    assert [rec["path"] for rec in recs] == [f"/foo{query}&m={m}"]
    status, _, _, recs, m = h2(env, "fwd", path + query, headers=[bearer(env)])
    assert status == 200
    assert [rec["path"] for rec in recs] == [f"/foo{query}&m={m}"]


# ---- escapedSlashesAction ----

def test_escaped_slash_redirects_by_default_http1(env):
    r, recs, m = h1(env, "default", "/bar/..%2ffoo?x=%2f")
    assert r.status == 307, r
    assert r.header("location") == f"/foo?x=%2f&m={m}", r
    assert recs == []
    # the client following the redirect asks for /foo, which needs a token
    r2 = get(env["ports"]["default"], r.header("location"), host=HOST)
    assert r2.status == 401, r2


def test_escaped_slash_redirects_by_default_h2c(env):
    status, hd, _, recs, m = h2(env, "default", "/bar/..%2Ffoo")
    assert status == 307, hd
    assert hd["location"] == f"/foo?m={m}", hd
    assert recs == []


def test_escaped_backslash_is_a_slash(env):
    r, recs, m = h1(env, "default", "/bar/..%5cfoo")
    assert r.status == 307 and r.header("location") == f"/foo?m={m}", r
    r, recs, _ = h1(env, "fwd", "/bar/..%5Cfoo")
    assert r.status == 401 and recs == [], r
    r, recs, _ = h1(env, "fwd", "/bar\\..\\foo")  # a raw backslash too
    assert r.status == 401 and recs == [], r


@pytest.mark.parametrize("path", ["/%2F/evil.example/x", "/%5cevil.example", "/\\%2fevil.example"])
def test_redirect_never_leaves_the_host(env, path):
    # without merging, an unescaped "//host" as Location would send the client to another host
    r, recs, _ = h1(env, "nomerge", path)
    assert r.status == 400 and r.header("location") is None and recs == [], r
    r, recs, m = h1(env, "nomerge", "/bar/%2Fx")
    assert r.status == 307 and r.header("location") == f"/bar//x?m={m}", r


def test_escaped_slash_kept_unchanged_is_forwarded_encoded(env):
    r, recs, m = h1(env, "keep", "/bar/..%2ffoo")
    assert r.status == 200, r
    assert [rec["path"] for rec in recs] == [f"/bar/..%2Ffoo?m={m}"]


@pytest.mark.parametrize("path", ["/bar/..%2ffoo", "/bar/a%5Cb"])
def test_escaped_slash_rejected(env, path):
    r, recs, _ = h1(env, "reject", path)
    assert r.status == 400 and recs == [], r
    status, _, _, recs, _ = h2(env, "reject", path)
    assert status == 400 and recs == []


# ---- percent-encoding, dots and slashes ----

@pytest.mark.parametrize("path", ["/bar/%00/x", "/bar/%zz", "/bar/%4", "/bar/%", "/bar/%4g"])
def test_invalid_percent_encoding_is_400(env, path):
    r, recs, _ = h1(env, "default", path)
    assert r.status == 400 and recs == [], r
    status, _, _, recs, _ = h2(env, "default", path)
    assert status == 400 and recs == []


def test_encoded_unreserved_characters_are_decoded(env):
    # /%66oo is /foo: it needs a token, and with one the upstream gets /foo
    r, recs, _ = h1(env, "default", "/%66%6F%6f")
    assert r.status == 401 and recs == [], r
    r, recs, m = h1(env, "default", "/bar/%7e%41%3f%23%25", headers=[bearer(env)])
    assert r.status == 200, r
    assert [rec["path"] for rec in recs] == [f"/bar/~A%3F%23%25?m={m}"]


def test_slashes_merged_by_default_and_kept_when_disabled(env):
    r, recs, _ = h1(env, "default", "//foo")
    assert r.status == 401 and recs == [], r
    r, recs, m = h1(env, "default", "/bar//x///y")
    assert r.status == 200 and [rec["path"] for rec in recs] == [f"/bar/x/y?m={m}"], r
    r, recs, m = h1(env, "keep", "/bar//x/./y/")
    assert r.status == 200 and [rec["path"] for rec in recs] == [f"/bar//x/y/?m={m}"], r


def test_absolute_form_path_is_normalised(env):
    m = jgtest.marker()
    with RawConn(env["ports"]["default"]) as c:
        c.send(f"GET http://{HOST}/bar/%2e%2E/foo?m={m} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        r = c.read_response()
    assert r.status == 401, r
    assert env["up"].matching(m) == []


# ---- header names with underscores ----

UNDERSCORE_HEADERS = [("Transfer_Encoding", "chunked"), ("X_Forwarded_For", "10.9.9.9")]


def names(rec):
    return [k.lower() for k, _ in rec["headers"]]


@pytest.mark.parametrize("hdr", UNDERSCORE_HEADERS)
def test_underscore_header_rejected_by_default(env, hdr):
    r, recs, _ = h1(env, "default", "/bar", headers=[hdr])
    assert r.status == 400 and recs == [], r
    status, _, _, recs, _ = h2(env, "default", "/bar", headers=[(hdr[0].lower(), hdr[1])])
    assert status == 400 and recs == []


def test_underscore_rejection_keeps_the_connection(env):
    # the head was framed without doubt, so the 400 needs no close: the next request is served
    m = jgtest.marker()
    with RawConn(env["ports"]["default"]) as c:
        r = c.request("GET", "/bar", HOST, headers=[("X_Forwarded_For", "10.9.9.9")])
        assert r.status == 400 and r.body == b"header name with underscore\n", r
        r = c.request("GET", f"/bar?m={m}", HOST)
        assert r.status == 200, r
    assert len(env["up"].matching(m)) == 1


@pytest.mark.parametrize("hdr", UNDERSCORE_HEADERS)
def test_underscore_header_dropped(env, hdr):
    r, recs, _ = h1(env, "fwd", "/bar", headers=[hdr, ("X-Kept", "1")])
    assert r.status == 200 and len(recs) == 1, r
    assert hdr[0].lower() not in names(recs[0]) and "x-kept" in names(recs[0]), recs
    status, _, _, recs, _ = h2(env, "fwd", "/bar", headers=[(hdr[0].lower(), hdr[1]), ("x-kept", "1")])
    assert status == 200 and len(recs) == 1
    assert hdr[0].lower() not in names(recs[0]) and "x-kept" in names(recs[0]), recs


@pytest.mark.parametrize("hdr", UNDERSCORE_HEADERS)
def test_underscore_header_allowed(env, hdr):
    r, recs, _ = h1(env, "keep", "/bar", headers=[hdr])
    assert r.status == 200 and len(recs) == 1, r
    assert hdr[0].lower() in names(recs[0]), recs


# ---- gRPC: a service/method path cannot step around its GRPCRoute's policy ----

def grpc_call(env, listener, path, token=None):
    """Reverse("abc") over h2c; returns (grpc-status, response message bytes)."""
    with h2util.RawH2(env["ports"][listener]) as c:
        extra = [("content-type", "application/grpc"), ("te", "trailers")]
        if token:
            extra.append(("authorization", "Bearer " + token))
        d = hf.DataFrame(1)
        d.data = echo.grpc_frame(echo.encode_content("abc"))
        d.flags.add("END_STREAM")
        c.send(c.headers_frame(1, c.request_headers(path, "POST", GRPC_HOST, extra), end_stream=False) +
               d.serialize())
        assert c.wait(lambda c: 1 in c.ended or 1 in c.rst), (c.headers, c.rst)
        assert 1 not in c.rst, c.rst
        last = c.headers[1][-1]
        return last.get("grpc-status"), c.data.get(1, b"")


@pytest.mark.parametrize("path", ["/yages.Echo/./Reverse", "/yages.Echo//Reverse", "/x/../yages.Echo/Reverse",
                                  "/yages.Echo/%52everse", "/yages.Echo/x/../Reverse"])
def test_grpc_dot_paths_do_not_bypass_the_policy(env, path):
    assert grpc_call(env, "default", path)[0] == "16"
    status, data = grpc_call(env, "default", path, env["token"])
    assert status == "0" and echo.decode_content(data[5:]) == "cba", (status, data)


def test_grpc_escaped_slash(env):
    # a gRPC client cannot follow a redirect: Envoy answers 400, which is grpc-status 13 (INTERNAL)
    assert grpc_call(env, "default", "/yages.Echo%2FReverse")[0] == "13"
    assert grpc_call(env, "fwd", "/yages.Echo%2fReverse")[0] == "16"
    status, data = grpc_call(env, "fwd", "/yages.Echo%2FReverse", env["token"])
    assert status == "0" and echo.decode_content(data[5:]) == "cba"


# ---- fragments: no request target has one (RFC 9112 section 3.2, RFC 9113 section 8.3.1) ----

@pytest.mark.parametrize("target", ["/admin#x", "/admin#/../x", "/admin/%2e%2e/admin#", "/x?q#frag"])
def test_fragment_in_target_is_400_and_never_reaches_a_catch_all(start_proxy, make_upstream, target):
    """"/admin#x" does not match the secured /admin, so it fell to the open catch-all "/" and went
    upstream as it was; an origin that drops "#x" then served /admin without a token. Now 400 over
    HTTP/1.1 and h2c, nothing forwarded."""
    up = make_upstream("backend")
    _, pub = rsa_jwk("frag-rsa")
    routes = [{"name": "admin", "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                                           "backendRefs": [{"name": "backend"}]}]},
              jgtest.catch_all_route()]
    policies = [{"name": "jwt", "targetRefs": [{"kind": "HTTPRoute", "name": "admin"}],
                 "jwt": {"providers": [{"name": "p", "localJWKS": {"type": "Inline",
                                                                  "inline": json.dumps({"keys": [pub]})}}]}}]
    px = start_proxy(lambda port: jgtest.base_config(port, {"backend": [up.port]}, routes,
                                                     securityPolicies=policies), "fragment")
    assert get(px.port, "/admin", host=HOST).status == 401
    assert get(px.port, "/open", host=HOST).status == 200
    up.reset()
    r = get(px.port, target, host=HOST)
    assert r.status == 400, r
    with h2util.RawH2(px.port) as c:
        c.send(c.headers_frame(1, c.request_headers(target, "GET", HOST)))
        assert c.wait(lambda c: 1 in c.ended or 1 in c.rst), (c.headers, c.rst, c.goaway)
        assert 1 in c.rst or c.headers[1][0][":status"] == "400", c.headers
    time.sleep(0.2)
    assert up.snapshot() == [], up.snapshot()
