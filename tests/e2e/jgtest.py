"""Helpers for jwtgate's end-to-end tests (standard library only).

- free_port(): an ephemeral loopback port.
- dump_yaml(obj): a small block-style YAML writer for the configs the tests build as dicts.
- Upstream: a threaded HTTP/1.1 keep-alive server that echoes what it received as JSON and records
  every request head and whether its body arrived complete; special paths below.
- Proxy: runs `jwtgate -c FILE`, waits for its listener, stops it with SIGTERM and checks exit 0.
- RawConn: a raw socket client that parses responses itself (pipelining, 1xx, smuggling checks).
- RawUpstream: a raw socket upstream whose handler writes each response itself (timing, framing).

Upstream special paths:
  /status/NNN     answer with status NNN (JSON echo body unless 1xx/204/304)
  /slow/MS        wait MS milliseconds before answering
  /big/N          N-byte body (pattern(N)) with Content-Length
  /chunked/N      N-byte body (pattern(N)) sent chunked in several chunks
  /reset          close the socket (RST) without answering
  /hang           never answer (until the upstream is stopped)
  /headers-1xx    send 103 Early Hints, then the 200 echo
  /echo-body      return the request body as the response body
  /truncate/N     announce N bytes, send N/2, close
  /garbage        answer bytes that are not HTTP, then close
  /hop-response   a response carrying hop-by-hop headers (Connection: x-up-hop, Keep-Alive, ...)
"""

import hashlib
import json
import os
import re
import select
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("JWTGATE_SOURCE_ROOT", os.path.abspath(os.path.join(HERE, "..", "..")))
# The repository's own test data (tests/data/PROVENANCE); tests never read outside the repository.
DATA = os.path.abspath(os.path.join(HERE, "..", "data"))
SEED_DIR = os.path.join(DATA, "envoy-gateway-jwt")  # the seed scenario's jwks.json, key.json, tokens
BIN = os.environ.get("JWTGATE_BIN", os.path.join(SOURCE_ROOT, "build", "jwtgate"))
TOKEN_BIN = os.environ.get("JWTGATE_TOKEN_BIN", os.path.join(SOURCE_ROOT, "build", "jwtgate-token"))

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def free_port():
    """An ephemeral loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pattern(n):
    """Deterministic body of n bytes (so that the receiver can check content, not only length)."""
    block = bytes(range(256)) * 64  # 16 KiB
    reps, rest = divmod(n, len(block))
    return block * reps + block[:rest]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------
# YAML writer (block style; strings always double-quoted with JSON escapes, which YAML accepts)

def _scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))


def _dump(obj, indent, out):
    pad = " " * indent
    if isinstance(obj, dict):
        if not obj:
            out.append(pad + "{}")
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{k}:")
                _dump(v, indent + 2, out)
            elif isinstance(v, dict):
                out.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                out.append(f"{pad}{k}: []")
            else:
                out.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = []
                _dump(v, indent + 2, sub)
                first = sub[0]
                out.append(pad + "- " + first[indent + 2:])
                out.extend(sub[1:])
            else:
                out.append(pad + "- " + (_scalar(v) if not isinstance(v, (dict, list)) else ("{}" if isinstance(v, dict) else "[]")))
    else:
        out.append(pad + _scalar(obj))


def dump_yaml(obj):
    out = []
    _dump(obj, 0, out)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------
# Upstream

class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A peer (the proxy) that resets a connection is what several tests provoke: not worth a
        # traceback on stderr. Anything else is still printed.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2e-upstream"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        # One write per response and no Nagle: otherwise delayed ACKs add ~40 ms per keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = self.server.upstream
        with up.lock:
            up.conn_seq += 1
            self.conn_id = up.conn_seq
            up.connections.append(self.client_address[1])

    # BaseHTTPRequestHandler would answer "Expect: 100-continue" itself; keep that (HTTP/1.1 server).

    def _read_body(self, rec):
        """Reads the request body strictly. Returns bytes, or None when the message was incomplete or
        malformed (recorded as aborted)."""
        te = self.headers.get_all("Transfer-Encoding") or []
        cl = self.headers.get_all("Content-Length") or []
        if te and cl:
            rec["state"] = "ambiguous"
            return None
        if len(cl) > 1:
            rec["state"] = "ambiguous"
            return None
        try:
            if te:
                if ",".join(te).strip().lower() != "chunked":
                    rec["state"] = "bad-te"
                    return None
                body = bytearray()
                while True:
                    line = self.rfile.readline(1024)
                    if not line.endswith(b"\r\n"):
                        rec["state"] = "aborted"
                        return None
                    size_txt = line[:-2].split(b";", 1)[0]
                    if not re.fullmatch(rb"[0-9a-fA-F]{1,15}", size_txt):
                        rec["state"] = "bad-chunk"
                        return None
                    size = int(size_txt, 16)
                    if size == 0:
                        while True:  # trailers
                            t = self.rfile.readline(8192)
                            if t == b"\r\n":
                                return bytes(body)
                            if not t.endswith(b"\r\n"):
                                rec["state"] = "aborted"
                                return None
                    data = self.rfile.read(size)
                    if len(data) != size or self.rfile.read(2) != b"\r\n":
                        rec["state"] = "aborted"
                        return None
                    body += data
            if cl:
                if not re.fullmatch(r"[0-9]+", cl[0].strip()):
                    rec["state"] = "bad-cl"
                    return None
                n = int(cl[0])
                data = self.rfile.read(n) if n else b""
                if len(data) != n:
                    rec["state"] = "aborted"
                    return None
                return data
            return b""
        except (OSError, ValueError):
            rec["state"] = "aborted"
            return None

    def _send(self, status, body, headers=(), head_only=False, reason=None):
        self.send_response(status, reason)
        for k, v in headers:
            self.send_header(k, v)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")
        if not head_only and status >= 200 and status not in (204, 304):
            self._headers_buffer.append(body)
        self.flush_headers()

    def _handle(self):
        up = self.server.upstream
        rec = {
            "method": self.command,
            "path": self.path,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "client_port": self.client_address[1],
            "conn_id": self.conn_id,
            "state": "head",
            "upstream": up.name,
        }
        with up.lock:
            up.requests.append(rec)
        body = self._read_body(rec)
        if body is None:
            self.close_connection = True
            return
        rec["body_len"] = len(body)
        rec["body_sha256"] = sha256(body)
        rec["state"] = "complete"
        path = self.path.split("?", 1)[0]
        head_only = self.command == "HEAD"
        echo = json.dumps(rec).encode()
        jh = [("Content-Type", "application/json"), ("X-Upstream", up.name)]

        m = re.fullmatch(r"/status/(\d{3})", path)
        if m:
            self._send(int(m.group(1)), echo, jh, head_only)
            return
        m = re.fullmatch(r"/slow/(\d+)", path)
        if m:
            if up.stopping.wait(int(m.group(1)) / 1000.0):
                return
            self._send(200, echo, jh, head_only)
            return
        m = re.fullmatch(r"/big/(\d+)", path)
        if m:
            self._send(200, pattern(int(m.group(1))), [("Content-Type", "application/octet-stream"),
                                                       ("X-Upstream", up.name)], head_only)
            return
        m = re.fullmatch(r"/chunked/(\d+)", path)
        if m:
            data = pattern(int(m.group(1)))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if not head_only:
                step = max(1, len(data) // 7 + 1)
                for i in range(0, len(data), step):
                    c = data[i:i + step]
                    self.wfile.write(b"%x\r\n" % len(c) + c + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        if path == "/reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        if path == "/hang":
            up.stopping.wait(60)
            self.close_connection = True
            return
        if path == "/headers-1xx":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.05)
            self._send(200, echo, jh, head_only)
            return
        if path == "/echo-body":
            self._send(200, body, [("Content-Type", "application/octet-stream"), ("X-Upstream", up.name)],
                       head_only)
            return
        m = re.fullmatch(r"/truncate/(\d+)", path)
        if m:
            n = int(m.group(1))
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + pattern(n // 2))
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/garbage":
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        if path == "/hop-response":
            self._send(200, echo, jh + [("Connection", "x-up-hop"), ("X-Up-Hop", "secret"),
                                        ("Keep-Alive", "timeout=99"), ("X-Up-Normal", "kept")], head_only)
            return
        self._send(200, echo, jh, head_only)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


class Upstream:
    """A real HTTP/1.1 upstream on an ephemeral loopback port that records what reached it."""

    def __init__(self, name="up", port=0):
        self.name = name
        self.lock = threading.Lock()
        self.requests = []
        self.connections = []  # client ports, one per accepted connection
        self.conn_seq = 0
        self.stopping = threading.Event()
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.upstream = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.connections.clear()

    def snapshot(self):
        with self.lock:
            return [dict(r) for r in self.requests]

    def matching(self, marker):
        """Recorded requests whose path contains marker (tests use a unique marker per request so that
        a late record from an earlier test cannot be mistaken for theirs)."""
        return [r for r in self.snapshot() if marker in r["path"]]

    def complete(self):
        return [r for r in self.snapshot() if r["state"] == "complete"]

    def paths(self):
        return [r["path"] for r in self.snapshot()]

    def stop(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class RawUpstream:
    """A raw-socket HTTP/1.1 upstream on an ephemeral loopback port. For each request head (requests
    carry no body here) it calls handler(sock, head), which writes the response itself and returns True
    to keep the connection for the next request. Records per connection when it was accepted, when the
    last response was written and when the proxy closed it (EOF)."""

    def __init__(self, handler):
        self.handler = handler
        self.lock = threading.Lock()
        self.conns = []  # dicts: accepted, requests, last_response, eof
        self.socks = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            rec = {"accepted": time.monotonic(), "requests": 0, "last_response": None, "eof": None}
            with self.lock:
                self.conns.append(rec)
                self.socks.append(conn)
            threading.Thread(target=self._conn, args=(conn, rec), daemon=True).start()

    def _conn(self, conn, rec):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        rec["eof"] = time.monotonic()
                        return
                    buf += data
                i = buf.index(b"\r\n\r\n") + 4
                head, buf = buf[:i], buf[i:]
                rec["requests"] += 1
                keep = self.handler(conn, head)
                rec["last_response"] = time.monotonic()
                if not keep:
                    return
        except OSError:
            rec["eof"] = rec["eof"] or time.monotonic()
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def snapshot(self):
        with self.lock:
            return [dict(r) for r in self.conns]

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            for s in self.socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def header(rec, name):
    """All values of header `name` (case-insensitive) in a recorded upstream request."""
    return [v for k, v in rec["headers"] if k.lower() == name.lower()]


# ---------------------------------------------------------------------------------------------------
# Raw client

class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def headers_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


class Closed(Exception):
    """The peer closed the connection before a complete response arrived."""


class RawConn:
    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()  # bytearray: appending to bytes is quadratic on multi-MiB bodies
        self.timeout = timeout

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for response bytes")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise Closed(bytes(self.buf))
        self.buf += chunk

    def _read_until(self, token, deadline):
        while token not in self.buf:
            self._fill(deadline)
        i = self.buf.index(token) + len(token)
        out = bytes(self.buf[:i])
        del self.buf[:i]
        return out

    def _read_n(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method="GET", timeout=None, allow_1xx=False):
        """Reads one response. 1xx interim responses are skipped (returned in .interim) unless
        allow_1xx. Bodies: HEAD/1xx/204/304 none; chunked; Content-Length; else until close."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim = []
        while True:
            head = self._read_until(b"\r\n\r\n", deadline)
            lines = head[:-4].split(b"\r\n")
            m = re.fullmatch(rb"(HTTP/\d\.\d) (\d{3})(?: (.*))?", lines[0])
            assert m, f"bad status line {lines[0]!r}"
            version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode("latin-1")
            headers = []
            for ln in lines[1:]:
                k, sep, v = ln.partition(b":")
                assert sep, f"bad response header line {ln!r}"
                headers.append((k.decode("latin-1"), v.strip().decode("latin-1")))
            resp = Response(version, status, reason, headers, b"", head)
            if 100 <= status < 200:
                if allow_1xx:
                    return resp
                interim.append(resp)
                continue
            break
        resp.interim = interim
        te = resp.header("Transfer-Encoding")
        cl = resp.header("Content-Length")
        if method == "HEAD" or status in (204, 304):
            return resp
        if te is not None and "chunked" in te.lower():
            body = bytearray()
            while True:
                line = self._read_until(b"\r\n", deadline)
                size = int(line[:-2].split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n", deadline) != b"\r\n":
                        pass
                    break
                body += self._read_n(size, deadline)
                assert self._read_n(2, deadline) == b"\r\n", "chunk not followed by CRLF"
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self._read_n(int(cl), deadline)
        else:
            try:
                while True:
                    self._fill(deadline)
            except Closed:
                pass
            resp.body, self.buf = bytes(self.buf), bytearray()
        return resp

    def request(self, method="GET", path="/", host="www.example.com", headers=(), body=None,
                version="HTTP/1.1", timeout=None):
        lines = [f"{method} {path} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        for k, v in headers:
            lines.append(f"{k}: {v}")
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        self.send(data)
        return self.read_response(method, timeout=timeout)

    def is_closed(self, timeout=2.0):
        """True when the peer closes (EOF or RST) within timeout with no further bytes; raises
        AssertionError if bytes arrive instead; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.buf += chunk

    def readable(self, timeout):
        r, _, _ = select.select([self.sock], [], [], timeout)
        return bool(r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def get(port, path="/", host="www.example.com", headers=(), method="GET", body=None, timeout=5.0):
    """One request on a fresh connection."""
    with RawConn(port, timeout=timeout) as c:
        return c.request(method, path, host, headers=headers, body=body)


# ---------------------------------------------------------------------------------------------------
# The proxy process

def wait_port(port, timeout=10.0, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def listens(pid, port):
    """True when process pid holds a listening TCP socket on port (from /proc: which process
    answered a connect is not known otherwise, and SO_REUSEPORT lets several share a port)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            pass
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


class Proxy:
    def __init__(self, tmpdir, config, name="jwtgate"):
        assert os.path.isfile(BIN) and os.access(BIN, os.X_OK), f"jwtgate binary not found: {BIN} (set JWTGATE_BIN)"
        self.dir = str(tmpdir)
        self.config = config
        self.conf_path = os.path.join(self.dir, name + ".yaml")
        with open(self.conf_path, "w") as f:
            f.write(config if isinstance(config, str) else dump_yaml(config))
        self.stdout_path = os.path.join(self.dir, name + ".stdout")
        self.stderr_path = os.path.join(self.dir, name + ".stderr")
        self.proc = None
        self.port = None
        self.stopped = False

    def start(self, port):
        self.port = port
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([BIN, "-c", self.conf_path], stdout=self._out, stderr=self._err,
                                     cwd=self.dir)
        if not wait_port(port, 10.0, self.proc) or not wait_for(
                lambda: self.proc.poll() is not None or listens(self.proc.pid, port), 10.0) or \
                self.proc.poll() is not None:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"jwtgate did not listen on {port}: rc={self.proc.returncode}\n{self.logs()}")
        return self

    def logs(self):
        out = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                with open(p, "rb") as f:
                    out.append(f"--- {os.path.basename(p)}\n" + f.read()[-4000:].decode("latin-1"))
            except OSError:
                pass
        return "\n".join(out)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=15.0):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
        self._err.close()
        return rc


def base_config(listen_port, backends, routes, **top):
    """listeners/backends/httpRoutes in CONFIG.md's shape. backends: {name: [port, ...]} or full dicts."""
    bes = []
    for name, spec in backends.items():
        if isinstance(spec, dict):
            be = {"name": name}
            be.update(spec)
        else:
            be = {"name": name, "endpoints": [{"ip": {"address": "127.0.0.1", "port": p}} for p in spec]}
        bes.append(be)
    cfg = {"listeners": [{"name": "http", "address": f"127.0.0.1:{listen_port}"}], "backends": bes,
           "httpRoutes": routes}
    cfg.update(top)
    return cfg


def catch_all_route(backend="backend", hostnames=None):
    r = {"name": "all", "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                   "backendRefs": [{"name": backend}]}]}
    if hostnames:
        r["hostnames"] = hostnames
    return r


def marker():
    """A unique path-safe token."""
    return "m%x" % time.monotonic_ns()


def rss_kib(pid):
    """Resident set size of process pid, in KiB (/proc/PID/status VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(pred, timeout=3.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)
