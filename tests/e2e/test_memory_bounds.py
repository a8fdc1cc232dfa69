"""Bounded memory under misbehaving peers (the "buffer everything" class of bug).

Each scenario starts a fresh proxy (workers: 1), measures its RSS (/proc/PID/status VmRSS) before the
misbehaving peer starts, samples it while the peer acts for a few seconds, and asserts that the growth
stays under a generous bound. A proxy that keeps reading from one side while the other side does not
take the bytes grows by the whole transfer (hundreds of MB here) and fails.

1. HTTP/2 client that opens streams for 1 MiB responses up to (and past) the advertised concurrency,
   never reads its socket and never sends WINDOW_UPDATE (default windows, and huge windows granted up
   front, and with streams reset and replaced as it goes), and one that floods new streams past the
   limit (each refused with an RST_STREAM the proxy cannot write).
2. HTTP/2 client uploading large request bodies on many streams to an upstream that never reads.
3. HTTP/1.1: a huge chunked request body towards an upstream that reads slowly; a huge response read
   by a client at about 10 KB/s.
4. Many slow connections: each sent part of a request head (HTTP/1.1) or the preface and part of a
   header block (HTTP/2); RSS per connection must be modest.

The RSS series of every scenario is printed (pytest -s shows it).
"""

import socket
import struct
import threading
import time

import hpack
import hyperframe.frame as hf
import pytest

import h2util
import jgtest

KiB = 1024
MiB = 1024 * 1024
BOUND_KIB = 64 * 1024  # allowed RSS growth over the baseline, KiB
ACT_SECONDS = 5.0  # misbehaviour time per scenario (scenario 1 default windows: twice that)


# ---------------------------------------------------------------------------------------------------
# measuring

class Rss:
    """RSS samples of one process: (seconds since start, KiB)."""

    def __init__(self, px, name):
        self.px = px
        self.pid = px.proc.pid
        self.name = name
        self.t0 = time.monotonic()
        self.baseline = jgtest.rss_kib(self.pid)
        self.samples = []

    def sample(self):
        assert self.px.proc.poll() is None, f"proxy died (rc={self.px.proc.returncode})\n{self.px.logs()}"
        v = jgtest.rss_kib(self.pid)
        self.samples.append((time.monotonic() - self.t0, v))
        return v

    @property
    def peak(self):
        return max([v for _, v in self.samples] + [self.baseline])

    @property
    def growth(self):
        return self.peak - self.baseline

    def run(self, seconds, step=0.25, action=None):
        """Calls action() (if any) and samples every step for seconds."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if action is not None:
                action()
            self.sample()
            time.sleep(step)

    def report(self):
        step = max(1, len(self.samples) // 12)
        series = " ".join(f"{t:.1f}s:{v // 1024}M" for t, v in self.samples[::step])
        return (f"[{self.name}] baseline {self.baseline} KiB, peak {self.peak} KiB, "
                f"growth {self.growth} KiB; series {series}")

    def check(self, bound_kib=BOUND_KIB):
        print("\n" + self.report())
        assert self.growth < bound_kib, "RSS grew without bound: " + self.report()


def settle(px, seconds=0.3):
    time.sleep(seconds)
    return jgtest.rss_kib(px.proc.pid)


def config(port, backends, **limits):
    top = {"workers": 1}
    if limits:
        top["limits"] = limits
    return jgtest.base_config(port, backends, [jgtest.catch_all_route()], **top)


def still_serves_h1(px, path="/after"):
    r = jgtest.get(px.port, path, timeout=10)
    assert r.status == 200, r


def still_serves_h2(px, path="/after-h2"):
    with h2util.H2Conn(px.port, timeout=10) as c:
        sid = c.request(path)
        r = c.response(sid)
        assert r["headers"][":status"] == "200"


# ---------------------------------------------------------------------------------------------------
# peers

class SilentH2Client:
    """A raw h2c client that writes frames and never reads its socket (small receive buffer, so that
    the kernel cannot absorb the proxy's output for it)."""

    def __init__(self, port, settings=None, conn_window=0, rcvbuf=4096):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(2.0)
        self.enc = hpack.Encoder()
        self.next_sid = 1
        self.open_sids = []
        self.closed = False
        s = hf.SettingsFrame(0)
        for k, v in (settings or {}).items():
            s.settings[k] = v
        data = h2util.PREFACE + s.serialize()
        if conn_window:
            data += hf.WindowUpdateFrame(0, window_increment=conn_window).serialize()
        self.send(data)

    def send(self, data):
        if self.closed:
            return False
        try:
            self.sock.sendall(data)
            return True
        except (OSError, socket.timeout):
            self.closed = True
            return False

    def headers(self, path, method="GET", end_stream=True):
        sid = self.next_sid
        self.next_sid += 2
        f = hf.HeadersFrame(sid)
        f.data = self.enc.encode([(":method", method), (":scheme", "http"),
                                  (":authority", "www.example.com"), (":path", path)])
        f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        self.open_sids.append(sid)
        return f.serialize()

    def open(self, path, n):
        return self.send(b"".join(self.headers(f"{path}?s={self.next_sid + 2 * i}") for i in range(n)))

    def reset_oldest(self, n):
        out = bytearray()
        for _ in range(min(n, len(self.open_sids))):
            sid = self.open_sids.pop(0)
            out += hf.RstStreamFrame(sid, error_code=0x8).serialize()  # CANCEL
        return self.send(bytes(out))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class NonReadingUpstream:
    """Accepts connections and never reads from them (small receive buffers, inherited by accepted
    sockets). Subclasses do something with each accepted socket (on_accept)."""

    def __init__(self, rcvbuf=16 * KiB):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopping = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            self.on_accept(c)

    def on_accept(self, c):
        pass

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


class SlowReadingUpstream(NonReadingUpstream):
    """Reads each connection at about rate bytes/s (small receive buffers); never answers."""

    def __init__(self, rate=20 * KiB, rcvbuf=16 * KiB):
        self.rate = rate
        self.received = 0
        super().__init__(rcvbuf)

    def on_accept(self, c):
        threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        step = 0.1
        c.settimeout(1.0)
        while not self.stopping.is_set():
            try:
                data = c.recv(int(self.rate * step))
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += len(data)
            time.sleep(step)


class StreamingUpstream:
    """Answers every request with a Content-Length response of `size` bytes, written in 64 KiB
    pieces as fast as the proxy takes them (never holds the whole body)."""

    def __init__(self, size):
        self.size = size
        self.sent = 0

        def handler(conn, head):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % size)
            block = jgtest.pattern(64 * KiB)
            left = size
            while left > 0:
                n = min(left, len(block))
                conn.sendall(block[:n])
                self.sent += n
                left -= n
            return True

        self.raw = jgtest.RawUpstream(handler)
        self.port = self.raw.port

    def stop(self):
        self.raw.stop()


@pytest.fixture
def stoppers():
    items = []
    yield items
    for s in items:
        s.stop()


# ---------------------------------------------------------------------------------------------------
# 1. HTTP/2 client that never reads, large responses

BIG = 1 * MiB


def test_h2_silent_client_default_windows(make_upstream, start_proxy):
    """Streams up to SETTINGS_MAX_CONCURRENT_STREAMS (100) for 1 MiB responses, then more all the
    time (refused, or admitted when others end); never a WINDOW_UPDATE, never a read."""
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    still_serves_h2(px)
    settle(px)
    rss = Rss(px, "h2 silent client, default windows")
    c = SilentH2Client(px.port)
    try:
        c.open(f"/big/{BIG}", 100)
        rss.run(2 * ACT_SECONDS, action=lambda: c.open(f"/big/{BIG}", 10))
        opened = (c.next_sid - 1) // 2
        print(f"\nstreams opened {opened}, client send closed: {c.closed}")
        rss.check()
        still_serves_h2(px)
    finally:
        c.close()


def test_h2_silent_client_huge_windows(make_upstream, start_proxy):
    """Same, but the client grants 2^31-1 stream and connection windows up front: flow control no
    longer stops the proxy, only its own output bound can."""
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    still_serves_h2(px)
    settle(px)
    rss = Rss(px, "h2 silent client, huge windows")
    c = SilentH2Client(px.port, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1},
                       conn_window=2**31 - 1 - 65535)
    try:
        c.open(f"/big/{BIG}", 100)
        rss.run(ACT_SECONDS, action=lambda: c.open(f"/big/{BIG}", 10))
        print(f"\nstreams opened {(c.next_sid - 1) // 2}, client send closed: {c.closed}")
        rss.check()
        still_serves_h2(px)
    finally:
        c.close()


def test_h2_silent_client_reset_churn(make_upstream, start_proxy):
    """100 streams for 1 MiB responses, huge windows, never a read; the oldest streams are reset and
    replaced (within the rapid-reset budget), so the proxy keeps starting and abandoning exchanges."""
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    still_serves_h2(px)
    settle(px)
    rss = Rss(px, "h2 silent client, reset churn")
    c = SilentH2Client(px.port, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 2**31 - 1},
                       conn_window=2**31 - 1 - 65535)

    def churn():
        c.reset_oldest(5)
        c.open(f"/big/{BIG}", 5)

    try:
        c.open(f"/big/{BIG}", 100)
        rss.run(ACT_SECONDS, step=0.2, action=churn)
        print(f"\nstreams opened {(c.next_sid - 1) // 2}, client send closed: {c.closed}")
        rss.check()
        still_serves_h2(px)
    finally:
        c.close()


def test_h2_silent_client_refused_stream_flood(make_upstream, start_proxy):
    """100 streams for 1 MiB responses that the client never reads, then as many new streams as it
    can send (13-byte HEADERS frames, fully HPACK-indexed). The proxy refuses each one with an
    RST_STREAM(REFUSED_STREAM) that it cannot write (the client does not read): those frames must not
    pile up in memory without bound (nghttp2 1.52 does not count RST_STREAM in its outbound flood
    limit, so the proxy must stop reading, or count them itself)."""
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    still_serves_h2(px)
    settle(px)
    rss = Rss(px, "h2 silent client, refused-stream flood")
    c = SilentH2Client(px.port)
    frames = 0
    try:
        c.open(f"/big/{BIG}", 100)
        c.send(c.headers("/r"))  # enters :path "/r" in the HPACK dynamic table: every later block is 4 bytes
        block = c.enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "www.example.com"),
                              (":path", "/r")])
        assert len(block) == 4
        head = struct.pack(">I", len(block))[1:] + b"\x01\x05"  # HEADERS, END_STREAM | END_HEADERS
        c.sock.settimeout(0.5)
        end = time.monotonic() + ACT_SECONDS
        while time.monotonic() < end and not c.closed:
            sid = c.next_sid
            batch = b"".join(head + struct.pack(">I", sid + 2 * i) + block for i in range(10000))
            c.next_sid += 20000
            try:
                c.sock.sendall(batch)
                frames += 10000
            except socket.timeout:
                pass  # the proxy stopped reading: what a bounded proxy does
            except OSError:
                break
            rss.sample()
            if rss.growth > 4 * BOUND_KIB:
                break  # proven; do not take the machine's memory
        time.sleep(0.5)
        rss.sample()
        print(f"\nrefused-stream HEADERS sent: {frames} ({frames * 13 // KiB} KiB)")
        still_serves_h2(px)
        rss.check()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------
# 2. HTTP/2 request bodies towards an upstream that never reads

def test_h2_uploads_to_non_reading_upstream(start_proxy, stoppers):
    up = NonReadingUpstream()
    stoppers.append(up)
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    settle(px)
    rss = Rss(px, "h2 uploads, upstream never reads")
    c = h2util.H2Conn(px.port, timeout=5)
    sent = [0]
    try:
        sids = []
        for i in range(100):
            sid = c.conn.get_next_available_stream_id()
            c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                                      (":authority", "www.example.com"), (":path", f"/upload/{i}")],
                                end_stream=False)
            sids.append(sid)
        c.flush()
        chunk = b"x" * 16384

        def pump():
            # send whatever the windows allow, then take the proxy's WINDOW_UPDATEs
            for _ in range(64):
                progressed = False
                for sid in sids:
                    if sid in c.resets or c.closed:
                        continue
                    w = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size)
                    if w > 0:
                        c.conn.send_data(sid, chunk[:w])
                        sent[0] += w
                        progressed = True
                c.flush()
                try:
                    c._read_events(0.01)
                except socket.timeout:
                    pass
                if not progressed:
                    break

        rss.run(ACT_SECONDS, action=pump)
        print(f"\nclient sent {sent[0] // KiB} KiB of request bodies; resets {len(c.resets)} "
              f"goaway {c.goaway}")
        rss.check()
    finally:
        c.close()


# ---------------------------------------------------------------------------------------------------
# 3. HTTP/1.1: huge chunked request body to a slow upstream; huge response to a slow client

@pytest.mark.parametrize("framing", ["chunked", "sized"])
def test_h1_upload_to_slow_upstream(start_proxy, stoppers, framing):
    """A 1 GiB request body to an upstream that reads 20 KB/s: what jwtgate buffers stops at its
    output bound. The sized body goes out from the client's input buffer when nothing is queued
    (issue 13), the chunked one through a copy: both paths must stop reading the client."""
    up = SlowReadingUpstream(rate=20 * KiB)
    stoppers.append(up)
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    settle(px)
    rss = Rss(px, f"h1 {framing} upload, upstream reads 20 KB/s")
    sent = [0]
    stop = threading.Event()
    if framing == "chunked":
        head = b"POST /upload HTTP/1.1\r\nHost: www.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
        piece = b"%x\r\n" % (64 * KiB) + b"y" * (64 * KiB) + b"\r\n"
    else:
        head = b"POST /upload HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: %d\r\n\r\n" % (1024 * MiB)
        piece = b"y" * (64 * KiB)

    def client():
        s = socket.create_connection(("127.0.0.1", px.port))
        s.settimeout(1.0)
        try:
            s.sendall(head)
            while not stop.is_set() and sent[0] < 1024 * MiB:
                try:
                    s.sendall(piece)
                    sent[0] += 64 * KiB
                except socket.timeout:
                    continue
        except OSError:
            pass
        finally:
            s.close()

    t = threading.Thread(target=client, daemon=True)
    t.start()
    try:
        rss.run(ACT_SECONDS)
    finally:
        stop.set()
        t.join(5)
    print(f"\nclient sent {sent[0] // KiB} KiB, upstream read {up.received // KiB} KiB")
    rss.check()


def test_h1_huge_response_to_slow_client(start_proxy, stoppers):
    size = 200 * MiB
    up = StreamingUpstream(size)
    stoppers.append(up)
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}))
    settle(px)
    rss = Rss(px, "h1 200 MB response, client reads 10 KB/s")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * KiB)
    s.connect(("127.0.0.1", px.port))
    got = [0]
    try:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        s.setblocking(False)

        def read_slowly():
            # 10 KB/s at 4 samples/s
            try:
                got[0] += len(s.recv(2500))
            except BlockingIOError:
                pass

        rss.run(ACT_SECONDS, action=read_slowly)
        print(f"\nclient read {got[0] // KiB} KiB; upstream wrote {up.sent // KiB} KiB")
        rss.check()
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------------
# 4. Many slow connections

N_CONNS = 2000


def _open_many(port, n, first_bytes):
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", port))
        s.sendall(first_bytes)
        socks.append(s)
    return socks


def test_many_partial_h1_heads(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}, headerTimeout="30s", idleTimeout="30s"))
    still_serves_h1(px)
    settle(px)
    rss = Rss(px, f"{N_CONNS} partial HTTP/1.1 heads")
    socks = []
    try:
        socks = _open_many(px.port, N_CONNS,
                           b"GET /slow HTTP/1.1\r\nHost: www.example.com\r\nX-Filler: " + b"f" * 200)
        rss.run(2.0)
        still_serves_h1(px)
        per_conn = rss.growth / N_CONNS
        print(f"\n{per_conn:.1f} KiB per connection")
        rss.check(bound_kib=min(BOUND_KIB, 32 * N_CONNS))
    finally:
        for s in socks:
            s.close()


def test_many_partial_h2_header_blocks(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(lambda port: config(port, {"backend": [up.port]}, headerTimeout="30s", idleTimeout="30s"))
    still_serves_h2(px)
    settle(px)
    rss = Rss(px, f"{N_CONNS} h2c connections with a partial header block")
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "www.example.com"),
                        (":path", "/slow")])
    first = h2util.PREFACE + hf.SettingsFrame(0).serialize() + hf.HeadersFrame(1, data=block).serialize()
    socks = []
    try:
        socks = _open_many(px.port, N_CONNS, first)
        rss.run(2.0)
        still_serves_h2(px)
        per_conn = rss.growth / N_CONNS
        print(f"\n{per_conn:.1f} KiB per connection")
        # ~20 KiB per connection (nghttp2 session, buffers), ~38 KiB in the ASan build.
        rss.check(bound_kib=48 * N_CONNS)
    finally:
        for s in socks:
            s.close()
