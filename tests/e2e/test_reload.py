"""Live reload of everything a configuration names (issue 11 section 3): SIGHUP re-reads listener
certificates and keys (new handshakes get the new certificate, open connections keep theirs, sessions
resume across the reload), backend CA bundles and local JWKS files; a change only a restart applies
(workers, listeners) or a file that cannot be loaded refuses the reload, names why, and the running
configuration keeps serving. `reload: {watch: true}` reloads without a signal when the file or a file
it names changes, including a Kubernetes ConfigMap-style `..data` symlink swap.
"""

import json
import os
import shutil
import signal
import socket
import ssl
import time

import pytest
from cryptography import x509

import jgtest
import jwksutil
from jgtest import get
from test_upstream_tls import TlsUpstream

WAIT = 5.0  # bound on every wait for a reload to show


def logs(px):
    with open(px.stderr_path, "rb") as f:
        return f.read().decode("latin-1")


def wait_log(px, text, count=1, timeout=WAIT):
    """Waits until `text` appears `count` times in the proxy's stderr."""
    return jgtest.wait_for(lambda: logs(px).count(text) >= count, timeout, 0.05)


def upstream_of(port):
    try:
        r = get(port, "/r", timeout=2.0)
    except OSError:
        return None
    return r.json()["upstream"] if r.status == 200 else r.status


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def write_config(path, cfg):
    write(path, jgtest.dump_yaml(cfg))


def replace_atomically(path, data):
    """Writes a sibling file and renames it over path (what editors and cert-manager do)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, path)


# ---------------------------------------------------------------------------------------------------
# Listener certificates

class TlsSite:
    """A TLS listener's files: a CA the client trusts and the certificate/key jwtgate serves."""

    def __init__(self, d):
        self.dir = str(d)
        self.ca = jwksutil.CA("reload test CA")
        self.ca_path = self.ca.write(os.path.join(self.dir, "ca.pem"))
        self.cert, self.key = self.ca.issue(self.dir, hostnames=("www.example.com",), ips=("127.0.0.1",))

    def renew(self):
        """Issues a new certificate and key for the same name, written in place; returns its serial."""
        d = os.path.join(self.dir, "next")
        os.makedirs(d, exist_ok=True)
        cert, key = self.ca.issue(d, hostnames=("www.example.com",), ips=("127.0.0.1",))
        shutil.copyfile(key, self.key)
        shutil.copyfile(cert, self.cert)
        return serial_of_file(self.cert)

    def client_ctx(self):
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.check_hostname = False
        return ctx


def serial_of_file(path):
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).serial_number


def serial_of(sock):
    return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def tls_connect(port, ctx, session=None):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="www.example.com", session=session)


def tls_request(s, path="/r"):
    """One keep-alive HTTP/1.1 request on an open TLS socket; returns the status code."""
    s.sendall(b"GET %s HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % path.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "connection closed before the response head"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "connection closed in the response body"
        body += chunk
    return int(head.split(b" ")[1])


def tls_config(site, up, tls_port, **top):
    def config(port):
        cfg = jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], **top)
        cfg["listeners"].append({"name": "https", "address": f"127.0.0.1:{tls_port}",
                                 "tls": {"certificateFile": site.cert, "privateKeyFile": site.key}})
        return cfg
    return config


def test_sighup_renews_listener_certificate_and_open_connections_keep_theirs(make_upstream, start_proxy,
                                                                            tmp_path):
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    old_serial = serial_of_file(site.cert)
    tls_port = jgtest.free_port()
    px = start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()

    before = tls_connect(tls_port, ctx)
    assert tls_request(before) == 200
    assert serial_of(before) == old_serial
    session = before.session

    new_serial = site.renew()
    assert new_serial != old_serial
    px.signal(signal.SIGHUP)
    assert wait_log(px, "configuration reloaded"), px.logs()

    with tls_connect(tls_port, ctx) as after:
        assert serial_of(after) == new_serial, "a new handshake after SIGHUP still got the old certificate"
        assert tls_request(after) == 200
    # The connection opened before the reload goes on with the certificate it was accepted with.
    assert tls_request(before) == 200
    assert serial_of(before) == old_serial
    before.close()
    # Session ticket keys survive the reload: a client resumes instead of a full handshake.
    with tls_connect(tls_port, ctx, session=session) as resumed:
        assert tls_request(resumed) == 200
        assert resumed.session_reused, "the session did not resume across the reload"


def test_sessions_resume_on_every_worker(make_upstream, start_proxy, tmp_path):
    """One TLS context per listener shared by the workers: a ticket issued by one worker is accepted
    by the others (SO_REUSEPORT spreads a client's connections over them)."""
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=2))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()
    with tls_connect(tls_port, ctx) as first:
        assert tls_request(first) == 200
        session = first.session
    reused = []
    for _ in range(12):
        with tls_connect(tls_port, ctx, session=session) as s:
            assert tls_request(s) == 200
            reused.append(s.session_reused)
    assert all(reused), f"resumed {sum(reused)} of {len(reused)} connections"


def test_key_not_matching_certificate_refuses_reload(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    old_serial = serial_of_file(site.cert)
    tls_port = jgtest.free_port()
    px = start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    os.mkdir(os.path.join(site.dir, "other"))
    other = jwksutil.CA("other").issue(os.path.join(site.dir, "other"), hostnames=("x",))
    shutil.copyfile(other[1], site.key)  # a key that belongs to another certificate
    px.signal(signal.SIGHUP)
    assert wait_log(px, "reload (SIGHUP) refused"), px.logs()
    text = logs(px)
    assert "refused: listener https: privateKeyFile" in text, text
    assert px.proc.poll() is None
    with tls_connect(tls_port, site.client_ctx()) as s:
        assert serial_of(s) == old_serial
        assert tls_request(s) == 200


# ---------------------------------------------------------------------------------------------------
# Backend CA bundles

@pytest.fixture
def tls_backend(tmp_path):
    d = tmp_path / "backend"
    os.mkdir(d)
    ca_a = jwksutil.CA("backend CA A")
    cert, key = ca_a.issue(d, hostnames=("backend.internal",))
    up = TlsUpstream("tls", cert, key)
    ca_path = ca_a.write(str(d / "ca.pem"))
    yield {"up": up, "ca_path": ca_path, "dir": d}
    up.stop()


def ca_config(tb):
    def config(port):
        be = {"endpoints": [{"ip": {"address": "127.0.0.1", "port": tb["up"].port}}],
              "tls": {"caCertificateRefs": [{"file": tb["ca_path"]}], "hostname": "backend.internal"}}
        return jgtest.base_config(port, {"backend": be}, [jgtest.catch_all_route()], workers=1)
    return config


def test_backend_ca_bundle_rotation_on_sighup(start_proxy, tls_backend):
    px = start_proxy(ca_config(tls_backend))
    assert get(px.port, "/r").status == 200
    # The backend moves to a certificate from another CA; the bundle is rotated with it.
    ca_b = jwksutil.CA("backend CA B")
    d = tls_backend["dir"] / "b"
    os.mkdir(d)
    cert, key = ca_b.issue(d, hostnames=("backend.internal",))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    tls_backend["up"].server.ctx = ctx
    ca_b.write(tls_backend["ca_path"])
    px.signal(signal.SIGHUP)
    assert wait_log(px, "configuration reloaded"), px.logs()
    assert jgtest.wait_for(lambda: get(px.port, "/r").status == 200, WAIT, 0.1), \
        "the rotated CA bundle is not used for new backend connections"


def test_unloadable_backend_ca_bundle_refuses_reload(start_proxy, tls_backend):
    px = start_proxy(ca_config(tls_backend))
    assert get(px.port, "/r").status == 200
    write(tls_backend["ca_path"], "-----BEGIN CERTIFICATE-----\ntruncated\n")
    px.signal(signal.SIGHUP)
    assert wait_log(px, "reload (SIGHUP) refused"), px.logs()
    assert jgtest.wait_for(lambda: "backend backend: CA bundle" in logs(px), 3.0), logs(px)
    for _ in range(3):  # the running bundle still verifies the backend
        assert get(px.port, "/r", headers=[("Connection", "close")]).status == 200


# ---------------------------------------------------------------------------------------------------
# Local JWKS files

def test_local_jwks_file_rotation_on_sighup(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    k1 = jwksutil.SigningKey("k1", tmp_path)
    k2 = jwksutil.SigningKey("k2", tmp_path)
    jwks_path = str(tmp_path / "jwks.json")
    with open(jwks_path, "wb") as f:
        f.write(jwksutil.jwks_body(k1))

    def config(port):
        policy = {"name": "p", "targetRefs": [{"kind": "HTTPRoute", "name": "all"}],
                  "jwt": {"providers": [{"name": "local", "localJWKS": {"type": "File", "file": jwks_path}}]}}
        return jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
                                  securityPolicies=[policy])

    px = start_proxy(config)
    t1, t2 = k1.token(), k2.token()
    assert jwksutil.get_with_token(px.port, t1).status == 200
    assert jwksutil.get_with_token(px.port, t2).status == 401
    replace_atomically(jwks_path, jwksutil.jwks_body(k2))
    px.signal(signal.SIGHUP)
    assert wait_log(px, "configuration reloaded"), px.logs()
    assert jwksutil.get_with_token(px.port, t2).status == 200, "a token of the new key is refused"
    assert jwksutil.get_with_token(px.port, t1).status == 401, "a token of the removed key is accepted"


# ---------------------------------------------------------------------------------------------------
# Changes only a restart applies

def two_backends(a, b):
    return {"backend": [a.port], "other": [b.port]}


def test_workers_change_refused_and_nothing_else_applied(make_upstream, start_proxy):
    a, b = make_upstream("A"), make_upstream("B")
    holder = {}

    def config(port):
        holder["port"] = port
        return jgtest.base_config(port, {"backend": [a.port]}, [jgtest.catch_all_route()], workers=1)

    px = start_proxy(config)
    assert upstream_of(px.port) == "A"
    write_config(px.conf_path, jgtest.base_config(holder["port"], {"backend": [b.port]},
                                                  [jgtest.catch_all_route()], workers=2))
    px.signal(signal.SIGHUP)
    assert wait_log(px, "workers: 1 -> 2 needs a restart; running configuration kept"), px.logs()
    assert upstream_of(px.port) == "A", "a refused reload applied part of the new file"
    # Back to the running worker count: the rest applies.
    write_config(px.conf_path, jgtest.base_config(holder["port"], {"backend": [b.port]},
                                                  [jgtest.catch_all_route()], workers=1))
    px.signal(signal.SIGHUP)
    assert jgtest.wait_for(lambda: upstream_of(px.port) == "B", WAIT, 0.1), px.logs()


def test_listener_added_refused_with_its_name(make_upstream, start_proxy):
    a = make_upstream("A")
    holder = {}

    def config(port):
        holder["port"] = port
        return jgtest.base_config(port, {"backend": [a.port]}, [jgtest.catch_all_route()], workers=1)

    px = start_proxy(config)
    cfg = config(holder["port"])
    extra = jgtest.free_port()
    cfg["listeners"].append({"name": "second", "address": f"127.0.0.1:{extra}"})
    write_config(px.conf_path, cfg)
    px.signal(signal.SIGHUP)
    assert wait_log(px, f"listener second (127.0.0.1:{extra}) added: needs a restart"), px.logs()
    assert upstream_of(px.port) == "A"


# ---------------------------------------------------------------------------------------------------
# reload: {watch: true}

def watch_config(port, up, **top):
    return jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
                              reload={"watch": True}, **top)


def test_watch_reloads_on_edit_and_refuses_broken_file(make_upstream, start_proxy):
    a, b, c = make_upstream("A"), make_upstream("B"), make_upstream("C")
    holder = {}

    def config(port):
        holder["port"] = port
        return watch_config(port, a)

    px = start_proxy(config)
    assert upstream_of(px.port) == "A"
    write_config(px.conf_path, watch_config(holder["port"], b))  # in place, no signal
    assert jgtest.wait_for(lambda: upstream_of(px.port) == "B", WAIT, 0.1), \
        "an edit of the watched file was not reloaded\n" + px.logs()
    # the log writer thread writes the control thread's line a moment later, maybe after a worker's
    assert jgtest.wait_for(lambda: "(watch, generation 2)" in logs(px), 3.0), logs(px)

    write(px.conf_path, "listeners: [\n")  # broken, e.g. half written
    assert wait_log(px, "reload (watch) refused"), px.logs()
    assert px.proc.poll() is None
    assert upstream_of(px.port) == "B", "the running configuration was lost after a broken file"

    write_config(px.conf_path, watch_config(holder["port"], c))  # fixed: the next change applies
    assert jgtest.wait_for(lambda: upstream_of(px.port) == "C", WAIT, 0.1), px.logs()


def test_watch_reloads_renewed_certificate(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=1, reload={"watch": True}))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()
    new_serial = site.renew()

    def served():
        with tls_connect(tls_port, ctx) as s:
            return serial_of(s)
    assert jgtest.wait_for(lambda: served() == new_serial, WAIT, 0.1), \
        "the renewed certificate was not picked up without a signal"


def test_watch_sees_configmap_data_symlink_swap(make_upstream, start_proxy, tmp_path):
    """A ConfigMap volume: jwtgate.yaml -> ..data/jwtgate.yaml, ..data -> ..2026_01_01; kubelet writes
    a new timestamped folder, renames a new ..data symlink over the old one, removes the old folder."""
    a, b = make_upstream("A"), make_upstream("B")
    port = jgtest.free_port()
    d = tmp_path / "configmap"
    os.makedirs(d / "..2026_01_01")
    write_config(str(d / "..2026_01_01" / "jwtgate.yaml"), watch_config(port, a))
    os.symlink("..2026_01_01", d / "..data")
    os.symlink("..data/jwtgate.yaml", d / "jwtgate.yaml")
    px = jgtest.Proxy(d, watch_config(port, a), "jwtgate")  # writes through the symlink: same content
    assert os.path.islink(px.conf_path)
    start_proxy.procs.append(px)
    px.start(port)
    assert upstream_of(port) == "A"

    os.makedirs(d / "..2026_01_02")
    write_config(str(d / "..2026_01_02" / "jwtgate.yaml"), watch_config(port, b))
    os.symlink("..2026_01_02", d / "..data_tmp")
    os.rename(d / "..data_tmp", d / "..data")
    shutil.rmtree(d / "..2026_01_01")
    assert jgtest.wait_for(lambda: upstream_of(port) == "B", WAIT, 0.1), \
        "the ..data swap was not reloaded\n" + px.logs()
    time.sleep(0.6)  # past the debounce: the old folder's removal must not reload again
    assert logs(px).count("configuration reloaded from") == 1, "one ConfigMap update, more than one reload"
