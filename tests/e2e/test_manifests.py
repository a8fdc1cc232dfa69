"""Envoy Gateway manifests as they are (jwtgate.yaml(5) MANIFESTS): the seed's jwt.yaml and grpc-jwt.yaml,
byte for byte (tests/data/envoy-gateway-manifests/), with the user's file for what a cluster provides
(conf/examples/cluster.yaml, grpc-cluster.yaml: the Gateway, the Services and their EndpointSlices).

The seed's remote JWKS is https://raw.githubusercontent.com/...: it is never contacted here. These tests run
without network (the name does not resolve, the fetch fails within milliseconds and the seed's route
answers the fail-closed 401 "Jwks remote fetch is failed"); where the name resolves, the seed-unchanged
tests are skipped rather than reach out. The happy path uses a copy of jwt.yaml whose only change is the
URI, pointed at a local HTTPS JWKS server (jwksutil) whose CA is given to jwtgate with SSL_CERT_FILE (a
remoteJWKS without backendRefs verifies with the default CA bundle, as Envoy Gateway does).

The ports the user's files name (8080 for the listener, the EndpointSlices' 3000 and 9000) are rewritten
into temporary copies: ephemeral loopback ports only.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

import grpc
import pytest

import grpc_echo_server as echo
import jgtest
import jwksutil

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(jgtest.DATA, "envoy-gateway-manifests")
EXAMPLES = os.path.join(jgtest.SOURCE_ROOT, "conf", "examples")
SEED_HOST = "raw.githubusercontent.com"


def seed_token():
    with open(os.path.join(jgtest.SEED_DIR, "test.jwt")) as f:
        return f.read().strip()


def seed_host_resolves():
    try:
        socket.getaddrinfo(SEED_HOST, 443)
        return True
    except OSError:
        return False


def user_file(tmp, name, listen_port, slice_ports):
    """A copy of conf/examples/<name> with the listener port and the EndpointSlices' ports rewritten."""
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    assert "port: 8080" in text
    text = text.replace("port: 8080", "port: %d" % listen_port)
    docs = text.split("\n---\n")
    for i, d in enumerate(docs):
        if "kind: EndpointSlice" in d:
            for old, new in slice_ports.items():
                d = re.sub(r"(\n\s+port: )%d\n" % old, r"\g<1>%d\n" % new, d)
            docs[i] = d
    path = os.path.join(str(tmp), name)
    with open(path, "w") as f:
        f.write("\n---\n".join(docs))
    return path


def seed_copy(tmp, name):
    path = os.path.join(str(tmp), name)
    shutil.copyfile(os.path.join(MANIFESTS, name), path)
    return path


class Gate:
    """jwtgate -c A -c B ... (not jgtest.Proxy: that one takes a single file)."""

    def __init__(self, tmp, paths, port, env=None):
        self.err_path = os.path.join(str(tmp), "jwtgate-%d.stderr" % port)
        self.err = open(self.err_path, "wb")
        args = [jgtest.BIN]
        for p in paths:
            args += ["-c", p]
        self.proc = subprocess.Popen(args, stdout=self.err, stderr=self.err, cwd=str(tmp),
                                     env=dict(os.environ, **(env or {})))
        self.port = port
        if not jgtest.wait_port(port, 10.0, self.proc):
            self.stop()
            raise AssertionError("jwtgate did not listen: " + self.logs())

    def logs(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("latin-1")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = None
        else:
            rc = self.proc.returncode
        self.err.close()
        return rc


def get(port, path, token=None):
    headers = [("Authorization", "Bearer " + token)] if token else []
    return jgtest.get(port, path, host="www.example.com", headers=headers)


def wait_first_fetch_failed(port, token, timeout=5.0):
    """The first fetch of the unreachable seed JWKS fails fast (DNS); until then a request waits or
    answers the same 401. Bounded."""
    deadline = time.monotonic() + timeout
    while True:
        r = get(port, "/foo", token)
        if r.status == 401 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


@pytest.fixture
def upstream(make_upstream):
    return make_upstream("backend")


def test_seed_jwt_yaml_unchanged_fails_closed(tmp_path, upstream):
    if seed_host_resolves():
        pytest.skip("%s resolves here: the seed's unchanged JWKS URI would be contacted" % SEED_HOST)
    port = jgtest.free_port()
    jwt = seed_copy(tmp_path, "jwt.yaml")
    with open(jwt, "rb") as a, open(os.path.join(MANIFESTS, "jwt.yaml"), "rb") as b:
        assert a.read() == b.read()
    cluster = user_file(tmp_path, "cluster.yaml", port, {3000: upstream.port})
    started = time.monotonic()
    g = Gate(tmp_path, [jwt, cluster], port)
    try:
        r = wait_first_fetch_failed(port, seed_token())
        assert time.monotonic() - started < 8.0  # fails fast, no slow timeout
        assert r.status == 401, r
        assert r.body == b"Jwks remote fetch is failed", r
        r = get(port, "/foo")
        assert r.status == 401 and r.body == b"Jwt is missing", r
        upstream.reset()
        r = get(port, "/bar")
        assert r.status == 200, r
        assert upstream.paths() == ["/bar"]  # nothing of /foo reached the backend
    finally:
        assert g.stop() == 0, g.logs()


def test_seed_jwt_yaml_happy_path_with_only_the_uri_changed(tmp_path, upstream):
    ca = jwksutil.CA()
    certdir = tmp_path / "certs"
    certdir.mkdir()
    cert, key = ca.issue(certdir, hostnames=("localhost",), ips=("127.0.0.1",))
    ca_path = str(tmp_path / "ca.pem")
    ca.write(ca_path)
    srv = jwksutil.JwksServer(cert, key).start()
    with open(os.path.join(jgtest.SEED_DIR, "jwks.json"), "rb") as f:
        srv.serve_bytes(f.read())
    try:
        port = jgtest.free_port()
        with open(os.path.join(MANIFESTS, "jwt.yaml")) as f:
            text = f.read()
        seed_uri = "https://raw.githubusercontent.com/envoyproxy/gateway/main/examples/kubernetes/jwt/jwks.json"
        assert text.count(seed_uri) == 1
        jwt = str(tmp_path / "jwt.yaml")
        with open(jwt, "w") as f:
            f.write(text.replace(seed_uri, "https://localhost:%d/jwks.json" % srv.port))
        cluster = user_file(tmp_path, "cluster.yaml", port, {3000: upstream.port})
        g = Gate(tmp_path, [jwt, cluster], port, env={"SSL_CERT_FILE": ca_path})
        try:
            token = seed_token()
            deadline = time.monotonic() + 10
            while True:
                r = get(port, "/foo", token)
                if r.status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert r.status == 200, (r, g.logs())
            assert get(port, "/foo").status == 401
            r = get(port, "/foo", token[:-4] + "AAAA")
            assert r.status == 401 and r.body == b"Jwt verification fails", r
            assert get(port, "/bar").status == 200
        finally:
            assert g.stop() == 0, g.logs()
    finally:
        srv.stop()


def test_seed_grpc_jwt_yaml_unchanged(tmp_path):
    if seed_host_resolves():
        pytest.skip("%s resolves here: the seed's unchanged JWKS URI would be contacted" % SEED_HOST)
    srv = echo.EchoServer().start()
    try:
        port = jgtest.free_port()
        grpc_jwt = seed_copy(tmp_path, "grpc-jwt.yaml")
        cluster = user_file(tmp_path, "grpc-cluster.yaml", port, {9000: srv.port})
        g = Gate(tmp_path, [grpc_jwt, cluster], port)
        try:
            ch = grpc.insecure_channel("127.0.0.1:%d" % port, options=[("grpc.default_authority", "grpc-example.com")])
            ping = ch.unary_unary("/yages.Echo/Ping", request_serializer=echo.encode_empty,
                                  response_deserializer=echo.decode_content)
            with pytest.raises(grpc.RpcError) as e:
                ping(b"", timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert e.value.details() == "Jwt is missing"
            deadline = time.monotonic() + 5
            while True:
                with pytest.raises(grpc.RpcError) as e:
                    ping(b"", timeout=5, metadata=[("authorization", "Bearer " + seed_token())])
                if e.value.details() == "Jwks remote fetch is failed" or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert e.value.details() == "Jwks remote fetch is failed"
            ch.close()
        finally:
            assert g.stop() == 0, g.logs()
    finally:
        srv.stop()


def run(*args):
    return subprocess.run([jgtest.BIN, *args], capture_output=True, text=True, timeout=30)


def test_print_config_round_trip(tmp_path):
    """--print-config writes a native jwtgate.yaml that loads to the same configuration: printing it
    again gives the same text, and --check accepts it."""
    jwt = seed_copy(tmp_path, "jwt.yaml")
    cluster = user_file(tmp_path, "cluster.yaml", 18080, {3000: 13000})
    p1 = run("--print-config", "-c", jwt, "-c", cluster)
    assert p1.returncode == 0, p1.stderr
    assert "apiVersion" not in p1.stdout and "httpRoutes:" in p1.stdout
    native = tmp_path / "native.yaml"
    native.write_text(p1.stdout)
    p2 = run("--print-config", "-c", str(native))
    assert p2.returncode == 0, p2.stderr
    body = lambda s: s.split("\n", 1)[1]  # the first line names the files read
    assert body(p2.stdout) == body(p1.stdout)
    c = run("--check", "-c", str(native))
    assert c.returncode == 0, c.stderr


def test_folder_is_every_yaml_in_it(tmp_path, upstream):
    d = tmp_path / "manifests"
    d.mkdir()
    seed_copy(d, "jwt.yaml")
    user_file(d, "cluster.yaml", 18080, {3000: 13000})
    (d / "README.txt").write_text("not read")
    p = run("--print-config", "-c", str(d))
    assert p.returncode == 0, p.stderr
    assert "name: foo" in p.stdout and "address: 0.0.0.0:18080" in p.stdout


def test_errors_name_the_manifest_file_and_object(tmp_path):
    jwt = seed_copy(tmp_path, "jwt.yaml")
    cluster = user_file(tmp_path, "cluster.yaml", 18080, {3000: 13000})
    bad = tmp_path / "bad.yaml"
    bad.write_text("""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: baz
spec:
  parentRefs:
  - name: eg
  rules:
  - backendRefs:
    - name: backend
      port: 3000
    filters:
    - type: RequestHeaderModifier
""")
    c = run("--check", "-c", jwt, "-c", cluster, "-c", str(bad))
    assert c.returncode == 1
    assert '%s:12:5: unknown key "filters" (at HTTPRoute/baz spec.rules[0])' % bad in c.stderr, c.stderr


def test_https_listener_from_a_tls_secret(tmp_path, upstream):
    """An HTTPS listener's certificateRefs -> a kubernetes.io/tls Secret (base64 data), served inline."""
    if seed_host_resolves():
        pytest.skip("%s resolves here: the seed's unchanged JWKS URI would be contacted" % SEED_HOST)
    import base64
    import ssl

    ca = jwksutil.CA()
    cert, key = ca.issue(tmp_path, hostnames=("www.example.com",))
    b64 = lambda p: base64.b64encode(open(p, "rb").read()).decode()
    port = jgtest.free_port()
    jwt = seed_copy(tmp_path, "jwt.yaml")
    cluster = user_file(tmp_path, "cluster.yaml", port, {3000: upstream.port})
    text = open(cluster).read().replace(
        "    - name: http\n      protocol: HTTP\n      port: %d\n" % port,
        "    - name: https\n      protocol: HTTPS\n      port: %d\n      tls:\n        certificateRefs:\n"
        "          - {kind: Secret, name: eg-cert}\n" % port)
    text += "\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: eg-cert}\ntype: kubernetes.io/tls\n" \
            "data:\n  tls.crt: %s\n  tls.key: %s\n" % (b64(cert), b64(key))
    open(cluster, "w").write(text)
    g = Gate(tmp_path, [jwt, cluster], port)
    try:
        ctx = ssl.create_default_context(cafile=None)
        ca_path = str(tmp_path / "ca.pem")
        ca.write(ca_path)
        ctx.load_verify_locations(ca_path)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="www.example.com") as t:
                t.sendall(b"GET /bar HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
    finally:
        assert g.stop() == 0, g.logs()


def test_sighup_reads_every_c_argument_again(tmp_path, upstream):
    """reload re-reads each -c file and folder: a route file added to a -c folder is served after SIGHUP."""
    if seed_host_resolves():
        pytest.skip("%s resolves here: the seed's unchanged JWKS URI would be contacted" % SEED_HOST)
    d = tmp_path / "routes"
    d.mkdir()
    port = jgtest.free_port()
    cluster = user_file(tmp_path, "cluster.yaml", port, {3000: upstream.port})
    with open(os.path.join(MANIFESTS, "jwt.yaml")) as f:
        bar = f.read().split("\n---\n")[-1]  # the HTTPRoute bar
    (d / "jwt.yaml").write_text(open(os.path.join(MANIFESTS, "jwt.yaml")).read().rsplit("\n---\n", 1)[0] + "\n")
    g = Gate(tmp_path, [cluster, str(d)], port)
    try:
        assert get(port, "/bar").status == 404
        (d / "bar.yaml").write_text(bar)
        g.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while get(port, "/bar").status != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert get(port, "/bar").status == 200, g.logs()
    finally:
        assert g.stop() == 0, g.logs()


AUTHZ_POLICY = """apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata:
  name: bar-authz
spec:
  targetRefs:
    - group: gateway.networking.k8s.io
      kind: HTTPRoute
      name: bar
  jwt:
    providers:
      - name: local
        localJWKS:
          type: Inline
          inline: '%s'
  authorization:
    defaultAction: Deny
    rules:
      - name: john-only
        action: Allow
        principal:
          jwt:
            provider: local
            claims:
              - name: name
                values: ["John Doe"]
"""


def test_security_policy_authorization_passes_through_manifests(tmp_path, upstream):
    """A SecurityPolicy manifest's authorization block reaches the native loader unchanged (issue 12 §1
    with §2): the seed's test.jwt (name "John Doe") is allowed on /bar, with-different-claim.jwt (name
    "Tom") gets 403 "RBAC: access denied", and --print-config shows the block."""
    with open(os.path.join(jgtest.SEED_DIR, "jwks.json")) as f:
        jwks = " ".join(f.read().split())
    pol = tmp_path / "authz.yaml"
    pol.write_text(AUTHZ_POLICY % jwks)
    port = jgtest.free_port()
    jwt = seed_copy(tmp_path, "jwt.yaml")
    cluster = user_file(tmp_path, "cluster.yaml", port, {3000: upstream.port})
    out = run("--print-config", "-c", jwt, "-c", cluster, "-c", str(pol))
    assert out.returncode == 0, out.stderr
    assert "authorization:" in out.stdout and "john-only" in out.stdout, out.stdout
    g = Gate(tmp_path, [jwt, cluster, str(pol)], port)
    try:
        r = get(port, "/bar", seed_token())
        assert r.status == 200, (r, g.logs())
        with open(os.path.join(jgtest.SEED_DIR, "with-different-claim.jwt")) as f:
            tom = f.read().strip()
        r = get(port, "/bar", tom)
        assert r.status == 403 and r.body == b"RBAC: access denied", r
        assert get(port, "/bar").status == 401  # no token: authentication answers first
    finally:
        assert g.stop() == 0, g.logs()


def test_one_file_of_manifests_may_start_with_an_empty_document(tmp_path):
    """kubectl takes a stream whose first document is empty ("---" twice, or a comment-only head):
    jwtgate reads such a file as manifests too, not as a native file with a second document."""
    jwt = seed_copy(tmp_path, "jwt.yaml")
    cluster = user_file(tmp_path, "cluster.yaml", 18080, {3000: 13000})
    one = tmp_path / "all.yaml"
    one.write_text("---\n---\n" + open(jwt).read() + "\n---\n" + open(cluster).read())
    p = run("--print-config", "-c", str(one))
    assert p.returncode == 0, p.stderr
    assert "name: foo" in p.stdout and "address: 0.0.0.0:18080" in p.stdout
