"""HTTP/2 helpers for jwtgate's end-to-end tests (python3-h2 / hyperframe, curl, nghttp, openssl).

- H2Conn: a raw HTTP/2 client on a socket (plain or TLS) built on h2.connection, with helpers to send
  hand-made frames (hyperframe) and to collect responses, RST_STREAM and GOAWAY.
- curl_h2(): runs curl --http2-prior-knowledge (or https with ALPN) and returns status, headers, body.
- make_cert(): a self-signed certificate and key for a TLS listener (openssl req).
"""

import os
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hyperframe.frame as hf

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(port, tls, timeout, host="127.0.0.1"):
    """A TCP connection for HTTP/2 (TCP_NODELAY), over TLS with ALPN h2 when tls (the test
    certificates are self-signed: not verified)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2"
    return sock


class H2Conn:
    """A client connection. Events are accumulated per stream (.responses) and for the connection
    (.goaway, .resets) so that tests can assert what the proxy answered."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls=False, settings=None, raw=False):
        self.sock = connect(port, tls, timeout, host)
        self.timeout = timeout
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=not raw, normalize_outbound_headers=not raw,
                                        validate_inbound_headers=False)
        self.conn = h2.connection.H2Connection(config=cfg)
        if settings:
            self.conn.local_settings = h2.settings.Settings(client=True, initial_values=settings)
        self.conn.initiate_connection()
        self.flush()
        self.responses = {}  # stream id -> dict(headers, data, trailers, ended, reset)
        self.goaway = None  # (error_code, last_stream_id)
        self.resets = {}  # stream id -> error code
        self.closed = False

    # ---- sending ----
    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", authority="www.example.com", headers=(), body=None, end=True):
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
        hdrs += list(headers)
        self.conn.send_headers(sid, hdrs, end_stream=end and body is None)
        if body is not None:
            self.send_body(sid, body, end=end)
        self.flush()
        return sid

    def send_body(self, sid, body, end=True):
        """Sends body respecting flow control (reads events while the window is closed)."""
        view = memoryview(body)
        while view:
            window = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.flush()
                self._read_events(timeout=self.timeout)
                continue
            chunk = view[:window]
            self.conn.send_data(sid, bytes(chunk))
            view = view[len(chunk):]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()

    # ---- receiving ----
    def _read_events(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return []
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.closed = True
            return []
        for ev in events:
            self._on_event(ev)
        try:
            self.flush()
        except OSError:
            pass
        return events

    def _stream(self, sid):
        return self.responses.setdefault(sid, {"headers": None, "informational": [], "data": bytearray(),
                                               "trailers": None, "ended": False, "reset": None})

    def _on_event(self, ev):
        if isinstance(ev, h2.events.ResponseReceived):
            self._stream(ev.stream_id)["headers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            self._stream(ev.stream_id)["informational"].append(dict(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            self._stream(ev.stream_id)["data"] += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            self._stream(ev.stream_id)["trailers"] = dict(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            self._stream(ev.stream_id)["ended"] = True
        elif isinstance(ev, h2.events.StreamReset):
            self._stream(ev.stream_id)["reset"] = ev.error_code
            self.resets[ev.stream_id] = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = (ev.error_code, ev.last_stream_id)

    def wait(self, pred, timeout=None):
        """Reads until pred(self) is true; returns False on timeout or when the peer closed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not pred(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return pred(self)
            try:
                self._read_events(remaining)
            except socket.timeout:
                return pred(self)
        return True

    def response(self, sid, timeout=None):
        ok = self.wait(lambda c: sid in c.responses and (c.responses[sid]["ended"] or
                                                        c.responses[sid]["reset"] is not None), timeout)
        assert ok, f"no complete response on stream {sid}: {self.responses.get(sid)} goaway={self.goaway}"
        return self.responses[sid]

    def wait_goaway(self, timeout=None):
        self.wait(lambda c: c.goaway is not None or c.closed, timeout)
        return self.goaway

    def wait_closed(self, timeout=None):
        """Reads and discards until the proxy closes the connection; True when it did."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.closed and time.monotonic() < deadline:
            try:
                self._read_events(max(0.01, deadline - time.monotonic()))
            except socket.timeout:
                break
        return self.closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_frames(*frames):
    """Serialises hyperframe frames."""
    return b"".join(f.serialize() for f in frames)


def headers_block(conn, headers):
    """HPACK-encodes a header list with the connection's encoder (keeps its dynamic table in step)."""
    return conn.conn.encoder.encode(headers)


def curl_h2(url, args=(), data=None, timeout=30, tls=False, http2=True):
    """curl with HTTP/2 (prior knowledge for http://, ALPN for https://). Returns (rc, status, headers,
    body, version)."""
    cmd = ["curl", "-sS", "-o", "-", "-D", "/dev/stderr", "--max-time", str(timeout)]
    if http2:
        cmd.append("--http2" if tls else "--http2-prior-knowledge")
    else:
        cmd.append("--http1.1")
    if tls:
        cmd.append("-k")
    cmd += list(args)
    if data is not None:
        cmd += ["--data-binary", "@-"]
    cmd.append(url)
    p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout + 10)
    head = p.stderr.decode("latin-1")
    status, version, headers = None, None, {}
    for line in head.split("\r\n"):
        if line.startswith("HTTP/"):
            parts = line.split(" ")
            version, status = parts[0], int(parts[1])
            headers = {}
        elif ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
    return p.returncode, status, headers, p.stdout, version


def make_cert(directory):
    """A self-signed EC certificate for CN=localhost; returns (cert_path, key_path)."""
    cert = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


class RawH2:
    """A frame-level client for attack sequences: nothing is validated on our side, every frame the
    proxy sends is recorded (GOAWAY, RST_STREAM, HEADERS decoded with HPACK, DATA)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, settings=None):
        import hpack
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536
        self.buf = bytearray()
        self.goaway = None  # (error_code, last_stream_id)
        self.rst = {}  # stream id -> error code
        self.headers = {}  # stream id -> [dict, ...]
        self.data = {}  # stream id -> bytes
        self.ended = set()
        self.closed = False
        s = hf.SettingsFrame(0)
        for k, v in (settings or {}).items():
            s.settings[k] = v
        self.sock.sendall(PREFACE + s.serialize())

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed = True
            return False

    def headers_frame(self, sid, hdrs, end_stream=True, end_headers=True):
        f = hf.HeadersFrame(sid)
        f.data = self.enc.encode(hdrs)
        if end_headers:
            f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        return f.serialize()

    @staticmethod
    def request_headers(path="/", method="GET", authority="www.example.com", extra=()):
        return [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)] + list(extra)

    def _pump(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
            return
        self.buf += chunk
        while len(self.buf) >= 9:
            f, length = hf.Frame.parse_frame_header(memoryview(self.buf[:9]))
            if len(self.buf) < 9 + length:
                break
            f.parse_body(memoryview(bytes(self.buf[9:9 + length])))
            del self.buf[:9 + length]
            self._on_frame(f)

    def _on_frame(self, f):
        if isinstance(f, hf.GoAwayFrame):
            self.goaway = (f.error_code, f.last_stream_id)
        elif isinstance(f, hf.RstStreamFrame):
            self.rst[f.stream_id] = f.error_code
        elif isinstance(f, hf.HeadersFrame):
            self.headers.setdefault(f.stream_id, []).append(dict(
                (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                for k, v in self.dec.decode(f.data, raw=True)))
            if "END_STREAM" in f.flags:
                self.ended.add(f.stream_id)
        elif isinstance(f, hf.DataFrame):
            self.data[f.stream_id] = self.data.get(f.stream_id, b"") + f.data
            if "END_STREAM" in f.flags:
                self.ended.add(f.stream_id)
        elif isinstance(f, hf.SettingsFrame) and "ACK" not in f.flags:
            ack = hf.SettingsFrame(0)
            ack.flags.add("ACK")
            self.send(ack.serialize())

    def wait(self, pred, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while not pred(self) and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                self._pump(remaining)
            except socket.timeout:
                break
        return pred(self)

    def wait_goaway_or_close(self, timeout=None):
        """True when the proxy sent GOAWAY and/or closed the connection within timeout."""
        return self.wait(lambda c: c.closed, timeout) or self.goaway is not None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
