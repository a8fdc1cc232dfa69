"""Helpers for the remote JWKS end-to-end tests: a private CA, signing keys as JWKs, and an HTTPS (or plain
HTTP) JWKS server whose behaviour the test scripts (python3-cryptography and the standard library only).

JwksServer answers each request with the next action of `script` (then `default`):
  ("jwks", framing)     the current key set; framing "cl" (Content-Length), "chunked" or "close"
  ("status", N)         status N with a small body
  ("reset",)            RST without answering
  ("slow", S)           wait S seconds, then the key set
  ("raw", body, framing) any body
Every request that reached HTTP is counted (`count()`); TLS handshakes that failed are counted apart. A plain
HTTP server (JwksServer(None, None)) answers a TLS ClientHello with a 400 as a real HTTP server would, and
counts it in `tls_hellos` (not in `count()`).
"""

import base64
import datetime
import ipaddress
import json
import os
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import jgtest

TOKEN_BIN = jgtest.TOKEN_BIN
ISSUER = "https://issuer.example.com"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------------
# PKI

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A private certificate authority; issue() makes server certificates signed by it."""

    def __init__(self, name="jwtgate test CA"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.pem())
        return path

    def issue(self, dirpath, hostnames=("foo.bar.com",), ips=()):
        """Writes server.crt / server.key for the names into dirpath; returns (cert_path, key_path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        san = [x509.DNSName(h) for h in hostnames] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (x509.CertificateBuilder().subject_name(_name(hostnames[0] if hostnames else "server"))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        cp = os.path.join(str(dirpath), "server.crt")
        kp = os.path.join(str(dirpath), "server.key")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM) + self.pem())
        with open(kp, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cp, kp


# ---------------------------------------------------------------------------------------------------
# Signing keys and tokens

class SigningKey:
    """An ES256 key with a kid: its public JWK for the server, its private JWK file for jwtgate-token."""

    def __init__(self, kid, dirpath):
        self.kid = kid
        k = ec.generate_private_key(ec.SECP256R1())
        n = k.private_numbers()
        self.public = {"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
                       "x": b64u(n.public_numbers.x.to_bytes(32, "big")),
                       "y": b64u(n.public_numbers.y.to_bytes(32, "big"))}
        priv = dict(self.public, d=b64u(n.private_value.to_bytes(32, "big")))
        self.path = os.path.join(str(dirpath), f"key-{kid}.json")
        with open(self.path, "w") as f:
            json.dump(priv, f)

    def token(self, kid=None, **claims):
        args = [TOKEN_BIN, "--key", self.path, "--kid", kid or self.kid, "--iss", ISSUER, "--sub", "alice"]
        for k, v in claims.items():
            args += ["--claim", f"{k}={v}"]
        out = subprocess.run(args, check=True, capture_output=True, timeout=20)
        return out.stdout.decode().strip()


def jwks_body(*keys):
    return json.dumps({"keys": [k.public for k in keys]}).encode()


# ---------------------------------------------------------------------------------------------------
# HTTPS JWKS server

class _TLSServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        srv = self.server.jwks_server
        if srv.ctx is None:
            conn = self.request
        else:
            try:
                conn = srv.ctx.wrap_socket(self.request, server_side=True)
            except (ssl.SSLError, OSError):
                with srv.lock:
                    srv.failed_handshakes += 1
                return
        conn.settimeout(10)
        head = b""
        try:
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
                if srv.ctx is None and head[:1] == b"\x16":  # a TLS handshake record on a plain port
                    with srv.lock:
                        srv.tls_hellos += 1
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    conn.close()
                    return
        except (OSError, ssl.SSLError):
            return
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        action = srv.next_action(line, head)
        try:
            srv.perform(conn, action)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


class JwksServer:
    """An HTTPS server on 127.0.0.1 serving a JWKS (plain HTTP when cert is None); see the module comment for
    the actions."""

    def __init__(self, cert, key, port=None):
        self.ctx = None
        if cert is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert, key)
        self.lock = threading.Lock()
        self.body = b'{"keys":[]}'
        self.script = []
        self.default = ("jwks", "cl")
        self.requests = []  # request lines, in order
        self.heads = []  # whole request heads, in order
        self.failed_handshakes = 0
        self.tls_hellos = 0
        self.port = port or jgtest.free_port()
        self.server = None
        self.stopping = threading.Event()

    def start(self):
        self.server = _TLSServer(("127.0.0.1", self.port), _Handler)
        self.server.jwks_server = self
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def serve(self, *keys):
        with self.lock:
            self.body = jwks_body(*keys)

    def serve_bytes(self, body):
        """Serves these bytes as the key set (a JWKS file as it is)."""
        with self.lock:
            self.body = body

    def set_script(self, actions, default=None):
        with self.lock:
            self.script = list(actions)
            if default is not None:
                self.default = default

    def count(self):
        with self.lock:
            return len(self.requests)

    def next_action(self, line, head):
        with self.lock:
            self.requests.append(line)
            self.heads.append(head)
            return self.script.pop(0) if self.script else self.default

    def perform(self, conn, action):
        kind = action[0]
        if kind == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if kind == "status":
            body = b"unavailable\n"
            conn.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (action[1], len(body))
                         + body)
            return
        if kind == "slow":
            if self.stopping.wait(action[1]):
                return
            kind, action = "jwks", ("jwks", "cl")
        if kind == "jwks":
            with self.lock:
                body = self.body
            framing = action[1]
        else:  # raw
            body, framing = action[1], action[2]
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if framing == "cl":
            conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        elif framing == "chunked":
            conn.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
            step = max(1, len(body) // 5 + 1)
            for i in range(0, len(body), step):
                c = body[i:i + step]
                conn.sendall(b"%x\r\n" % len(c) + c + b"\r\n")
            conn.sendall(b"0\r\n\r\n")
        else:  # close-delimited
            conn.sendall(head + b"Connection: close\r\n\r\n" + body)
        if isinstance(conn, ssl.SSLSocket):
            try:
                conn.unwrap()
            except (OSError, ssl.SSLError, ValueError):
                pass


# ---------------------------------------------------------------------------------------------------
# Configuration

def remote_provider(name, jwks_port, *, uri_host="foo.bar.com", path="/jwks.json", backend="remote-jwks",
                    cache="300s", failed="1s", timeout="2s", retry=None, scheme="https", issuer=ISSUER):
    r = {"uri": f"{scheme}://{uri_host}:{jwks_port}{path}", "cacheDuration": cache, "failedRefetchDuration": failed,
         "backendSettings": {"timeout": {"http": {"requestTimeout": timeout}},
                             "retry": retry or {"numRetries": 1,
                                                "perRetry": {"backOff": {"baseInterval": "50ms",
                                                                         "maxInterval": "200ms"}},
                                                "retryOn": {"triggers": ["5xx", "gateway-error", "reset",
                                                                         "connect-failure"]}}}}
    if backend:
        r["backendRefs"] = [{"name": backend, "port": jwks_port}]
    p = {"name": name, "remoteJWKS": r}
    if issuer is not None:
        p["issuer"] = issuer
    return p


def remote_config(listen_port, upstream_port, jwks_port, ca_path, *, hostname="foo.bar.com", providers=None,
                  endpoint=None, **provider_kw):
    """One route guarded by one remote-JWKS provider, the JWKS server reached by IP with tls.hostname
    (ca_path None: a backend without a tls block; endpoint: another endpoint dict than 127.0.0.1)."""
    backends = {
        "backend": [upstream_port],
        "remote-jwks": {"endpoints": [endpoint or {"ip": {"address": "127.0.0.1", "port": jwks_port}}]},
    }
    if ca_path is not None:
        backends["remote-jwks"]["tls"] = {"caCertificateRefs": [{"file": ca_path}], "hostname": hostname}
    cfg = jgtest.base_config(listen_port, backends, [jgtest.catch_all_route()])
    cfg["securityPolicies"] = [{
        "name": "jwt", "targetRef": {"kind": "HTTPRoute", "name": "all"},
        "jwt": {"providers": providers or [remote_provider("example", jwks_port, **provider_kw)]}}]
    return cfg


def get_with_token(port, token, path="/", timeout=5.0):
    headers = [("Authorization", "Bearer " + token)] if token else []
    return jgtest.get(port, path, headers=headers, timeout=timeout)


def stderr_text(proxy):
    with open(proxy.stderr_path, "rb") as f:
        err = f.read().decode("latin-1")
    with open(proxy.stdout_path, "rb") as f:
        return err + f.read().decode("latin-1")


def concurrent_gets(port, token, n):
    """n requests at once, each on its own connection. Returns their statuses."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            results[i] = get_with_token(port, token).status
        except Exception as e:  # noqa: BLE001 - the assertion names it
            results[i] = repr(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return results


def wait_status(port, token, status, timeout):
    return jgtest.wait_for(lambda: get_with_token(port, token).status == status, timeout, 0.1)


def monotonic():
    return time.monotonic()
