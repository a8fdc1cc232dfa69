#!/usr/bin/python3
"""bench/idle_conns.py: open N idle client connections to a proxy and report its RSS per connection.

Used by bench/idle_memory.sh (and usable alone). Kinds:
  h1-fresh  HTTP/1.1 connection that has sent nothing
  h1-idle   HTTP/1.1 keep-alive connection after one complete request/response, back in idle
  h2-fresh  h2c (prior knowledge) connection after the preface and SETTINGS, no stream yet
  h2-idle   h2c connection after one complete request/response on stream 1, back in idle

The proxy's memory is the VmRSS sum of --pid and all its descendants (nginx: master and workers),
read from /proc: once after a warm-up (a few connections of the same kind that are closed again,
so one-time allocations such as the upstream connection are in the baseline), and once after all N
connections are open and idle and the proxy had --settle seconds to finish its work. Prints one
line `JGIDLE kind=... n=... base_kib=... rss_kib=... kib_per_conn=...`.

No dependency beyond the Python standard library: the h2 frames are built by hand (HPACK static
table indices and literals with incremental indexing, RFC 7541 section 6).
"""

import argparse
import os
import resource
import selectors
import socket
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def hpack_lit(index, value):
    # literal header field with incremental indexing, indexed name (RFC 7541 6.2.1), as browsers,
    # nghttp2 and gRPC clients send :authority and :path: the server's decoder keeps them
    v = value.encode()
    assert index < 63 and len(v) < 127
    return bytes([0x40 | index, len(v)]) + v


def h2_request(host, path):
    block = b"\x82\x86" + hpack_lit(4, path) + hpack_lit(1, host)  # GET, http, :path, :authority
    return frame(1, 0x5, 1, block)  # HEADERS, END_STREAM | END_HEADERS, stream 1


def tree_pids(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def rss_kib(pids):
    total = 0
    for root in pids:
        for p in tree_pids(root):
            try:
                with open(f"/proc/{p}/status") as f:
                    for ln in f:
                        if ln.startswith("VmRSS:"):
                            total += int(ln.split()[1])
            except OSError:
                pass
    return total


class Conn:
    def __init__(self, kind, host, path, port):
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.buf = b""
        self.done = False
        if kind == "h1-fresh":
            self.done = True
        elif kind == "h1-idle":
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        else:
            out = PREFACE + frame(4, 0, 0)
            if kind == "h2-idle":
                out += h2_request(host, path)
            self.sock.sendall(out)
            self.acked = False

    def on_readable(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            raise RuntimeError(f"{self.kind}: the server closed a connection")
        self.buf += data
        if self.kind == "h1-idle":
            self.h1_parse()
        else:
            self.h2_parse()

    def h1_parse(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1").split("\r\n")
        if not head[0].startswith("HTTP/1.1 2"):
            raise RuntimeError(f"h1-idle: unexpected response {head[0]!r}")
        length = 0
        for ln in head[1:]:
            k, _, v = ln.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        if len(self.buf) >= end + 4 + length:
            self.done = True

    def h2_parse(self):
        while len(self.buf) >= 9:
            n = struct.unpack(">I", b"\0" + self.buf[:3])[0]
            if len(self.buf) < 9 + n:
                return
            ftype, flags = self.buf[3], self.buf[4]
            sid = struct.unpack(">I", self.buf[5:9])[0] & 0x7FFFFFFF
            self.buf = self.buf[9 + n:]
            if ftype == 4 and not flags & 1:  # SETTINGS: acknowledge
                self.sock.sendall(frame(4, 1, 0))
                self.acked = True
                if self.kind == "h2-fresh":
                    self.done = True
            elif ftype == 7:
                raise RuntimeError("h2: GOAWAY from the server")
            elif ftype == 3 and sid == 1:
                raise RuntimeError("h2: stream 1 reset")
            if ftype in (0, 1) and sid == 1 and flags & 1 and self.acked:
                self.done = True


def open_conns(kind, n, port, host, path, timeout):
    sel = selectors.DefaultSelector()
    conns, pending = [], 0
    batch = 200
    deadline = time.monotonic() + timeout
    for start in range(0, n, batch):
        for _ in range(min(batch, n - start)):
            c = Conn(kind, host, path, port)
            conns.append(c)
            if not c.done:
                sel.register(c.sock, selectors.EVENT_READ, c)
                pending += 1
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: {pending} connections did not finish their exchange")
            for key, _ in sel.select(1.0):
                c = key.data
                c.on_readable()
                if c.done:
                    sel.unregister(c.sock)
                    pending -= 1
    sel.close()
    return conns


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, action="append", required=True,
                    help="server process (its descendants are counted too); repeatable")
    ap.add_argument("--kind", choices=["h1-fresh", "h1-idle", "h2-fresh", "h2-idle"], required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--host", default="www.example.com")
    ap.add_argument("--path", default="/bar")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + a.warmup + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    warm = open_conns(a.kind, a.warmup, a.port, a.host, a.path, a.timeout)
    for c in warm:
        c.sock.close()
    time.sleep(a.settle)
    base = rss_kib(a.pid)
    conns = open_conns(a.kind, a.n, a.port, a.host, a.path, a.timeout)
    time.sleep(a.settle)
    rss = rss_kib(a.pid)
    # every connection must still be open: a closed one would not cost the server anything
    lost = 0
    for c in conns:
        try:
            if c.sock.recv(1, socket.MSG_PEEK) == b"":
                lost += 1
        except BlockingIOError:
            pass
    for c in conns:
        c.sock.close()
    if lost:
        print(f"idle_conns: {lost} of {a.n} connections were closed by the server", file=sys.stderr)
        return 1
    print(f"JGIDLE kind={a.kind} n={a.n} base_kib={base} rss_kib={rss} "
          f"kib_per_conn={(rss - base) / a.n:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
