"""Differential test of HTTP/1.1 request framing (issue 10: generalise, do not patch).

The same bytes go to jwtgate and to REF, an independent strict HTTP/1.1 request parser written here from
RFC 9112 (it shares no code or rules with jwtgate's C codec). jwtgate forwards to an upstream that
records every byte it receives and frames it with REF as well. For every case of a generated corpus
(framing variations: whitespace, case, duplicates, chunk-size forms, CR/LF/NUL placement, obs-fold,
stray bytes), followed on the same connection by a second, well-formed request:

- what reaches the upstream, framed by REF, must be the messages REF finds in the client's bytes, in
  order (method, target, body bytes and the client's own fields), or a prefix of them: jwtgate may
  refuse more than REF (fail closed), never frame a message otherwise or forward one REF refuses;
- when REF refuses a message (or jwtgate refuses more), the client gets an error status (>= 400) for it
  and the connection closes; a message whose body turned bad after its head was forwarded never
  reaches the upstream complete, and its upstream connection is closed, not reused;
- the upstream never receives bytes that REF cannot frame;
- an eighth of the corpus is left unmutated (well-formed, with empty values, inner whitespace,
  obs-text, OWS around framing fields): those must all be served, or "refuse everything" would pass.

REF's choices where RFC 9112 leaves one, matching what jwtgate documents (man/jwtgate.8, HTTP/1.1
PARSING): Transfer-Encoding together with Content-Length is refused (section 6.3 allows handling it as
an error); Transfer-Encoding in HTTP/1.0 is refused (section 6.1); CR and LF bytes before a request line
are skipped (section 2.2: a server SHOULD ignore empty lines there; they are never forwarded); the
request-line separators may be several SP (section 3: recipients MAY parse on whitespace boundaries;
jwtgate rebuilds the line). Everything else is the strict grammar: CR LF ends every line, no obs-fold,
field names are tokens, field values are VCHAR / obs-text / SP / HTAB, chunk-size is 1*HEXDIG with
optional chunk-ext, chunk data is followed by CR LF.
"""

import random
import re
import socket
import threading
import time

import pytest

import jgtest

SEED = 20261206
N_CASES = 1500

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
QSTRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]+)((?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" +
                        QSTRING + rb"))?)*)")
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") +([\x21-\x7e]+) +HTTP/([0-9])\.([0-9])")


# ---- REF: the reference parser ----

class Reject(Exception):
    pass


class Incomplete(Exception):
    pass


class Message:
    def __init__(self, method, target, minor, fields, body, close):
        self.method, self.target, self.minor = method, target, minor
        self.fields, self.body, self.close = fields, body, close

    def sig(self):
        return (self.method, self.target, self.body)

    def __repr__(self):
        return f"<{self.method!r} {self.target!r} body={self.body[:40]!r}{'...' if len(self.body) > 40 else ''}>"


def ref_line(data, pos):
    """One line ended by CR LF; a bare CR or LF is an error."""
    cr, lf = data.find(b"\r", pos), data.find(b"\n", pos)
    if lf != -1 and (cr == -1 or lf < cr):
        raise Reject("bare LF")
    if cr == -1:
        raise Incomplete()
    if cr + 1 >= len(data):
        raise Incomplete()
    if data[cr + 1] != 0x0A:
        raise Reject("bare CR")
    return data[pos:cr], cr + 2


def ref_field_line(line):
    if line[:1] in (b" ", b"\t"):
        raise Reject("obs-fold")
    name, sep, value = line.partition(b":")
    if not sep or not name or any(c not in TCHAR for c in name):
        raise Reject("field name")
    value = value.strip(b" \t")
    if any(c < 0x20 and c != 0x09 or c == 0x7F for c in value):
        raise Reject("field value")
    return name.lower(), value


def ref_fields(data, pos):
    fields = []
    while True:
        line, pos = ref_line(data, pos)
        if line == b"":
            return fields, pos
        fields.append(ref_field_line(line))


def ref_message(data, pos):
    line, pos = ref_line(data, pos)
    m = REQUEST_LINE.fullmatch(line)
    if not m or m.group(3) != b"1":
        raise Reject("request line")
    method, target, minor = m.group(1), m.group(2), int(m.group(4))
    fields, pos = ref_fields(data, pos)
    get = lambda n: [v for k, v in fields if k == n]  # noqa: E731
    hosts = get(b"host")
    if len(hosts) > 1 or (minor >= 1 and len(hosts) != 1):
        raise Reject("Host")
    te, cl = get(b"transfer-encoding"), get(b"content-length")
    conn = {t.strip(b" \t").lower() for v in get(b"connection") for t in v.split(b",")}
    close = b"close" in conn or (minor == 0 and b"keep-alive" not in conn)
    body = b""
    if te:
        if minor == 0 or cl:
            raise Reject("Transfer-Encoding in HTTP/1.0, or with Content-Length")
        codings = [c.strip(b" \t").lower() for v in te for c in v.split(b",")]
        codings = [c for c in codings if c]  # empty list elements are ignored (RFC 9110 section 5.6.1)
        if not codings or any(not re.fullmatch(TOKEN, c) for c in codings):
            raise Reject("transfer coding")
        if codings[-1] != b"chunked" or codings.count(b"chunked") != 1:
            raise Reject("chunked not final, or twice")
        while True:
            line, pos = ref_line(data, pos)
            m = CHUNK_LINE.fullmatch(line)
            if not m:
                raise Reject("chunk line")
            size = int(m.group(1), 16)
            if size == 0:
                break
            if len(data) < pos + size + 2:
                raise Incomplete()
            body += data[pos:pos + size]
            if data[pos + size:pos + size + 2] != b"\r\n":
                raise Reject("chunk data not followed by CR LF")
            pos += size + 2
        _trailers, pos = ref_fields(data, pos)
    elif cl:
        vals = [x.strip(b" \t") for v in cl for x in v.split(b",")]
        if any(not re.fullmatch(rb"[0-9]+", x) for x in vals) or len({int(x) for x in vals}) != 1:
            raise Reject("Content-Length")
        n = int(vals[0])
        if len(data) < pos + n:
            raise Incomplete()
        body, pos = data[pos:pos + n], pos + n
    return Message(method, target, minor, fields, body, close), pos


def ref_parse(data):
    """Frames a byte stream of requests. Returns (messages, end, consumed): end is "ok" (every byte
    used), "closed" (a message ended the connection; later bytes are not requests), "incomplete" or
    "reject" (after the messages returned); consumed is where the last complete message ended."""
    msgs, pos = [], 0
    while True:
        while pos < len(data) and data[pos] in b"\r\n":
            pos += 1
        if pos == len(data):
            return msgs, "ok", pos
        try:
            m, end = ref_message(data, pos)
        except Reject:
            return msgs, "reject", pos
        except Incomplete:
            return msgs, "incomplete", pos
        msgs.append(m)
        pos = end
        if m.close:
            return msgs, "closed", pos


def test_reference_parser_itself():
    # REF is the yardstick: check it on known answers before trusting it with the corpus.
    ok = b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=\"y\"\r\nabc\r\n0\r\nT: 1\r\n\r\n"
    msgs, end, _ = ref_parse(ok + b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n")
    assert end == "ok" and [m.sig() for m in msgs] == [(b"POST", b"/a", b"abc"), (b"GET", b"/b", b"")]
    assert ref_parse(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2 \r\n\r\nxy")[1] == "ok"
    assert ref_parse(b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n")[1] == "ok"
    for bad in [b"GET /a HTTP/1.1\nHost: h\r\n\r\n", b"GET /a HTTP/1.1\r\nHost: h\r\n\n",
                b"GET /a HTTP/1.1\r\nHost:\r\n h\r\n\r\n", b"GET /a HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
                b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\naXY0\r\n\r\n",
                b"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\rX",
                b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]:
        assert ref_parse(bad)[1] == "reject", bad


# ---- the corpus ----

OWS = [b"", b" ", b"\t", b"  ", b" \t", b"\t "]
TE_VALUES = [b"chunked", b"Chunked", b"CHUNKED", b"chunked, chunked", b"gzip, chunked", b"chunked, gzip",
             b",chunked", b"chunked,", b"identity", b"chunked;q=1", b"chunk", b"chunked\x00", b'"chunked"']
CL_FORMS = ["{n}", "0{n}", "+{n}", "-{n}", "{n}.0", "0x{n:x}", "{n} {n}", "{n},{n}", "{n}, {n}", "{n},{m}", "",
            "{n}\x00", "1{n}"]
SIZE_FORMS = ["{s:x}", "{s:X}", "0{s:x}", "000{s:x}", " {s:x}", "{s:x} ", "{s:x}\t", "+{s:x}", "-{s:x}",
              "0x{s:x}", "{s:x};e", "{s:x};e=v", '{s:x};e="q v"', "{s:x} ;e", "{s:x};e\x00", "{s:x}_",
              "1{s:016x}"]
DATA_ENDS = [b"\r\n", b"\n", b"\r", b"", b"XY", b"\r\r\n", b"\n\r", b"\r\nX", b"X\r\n"]
LINE_ENDS = [b"\r\n", b"\n", b"\r", b"\r\r\n", b"\n\r", b"\r\x00\n"]
INSERTS = [b"\r", b"\n", b"\x00", b" ", b"\t", b"\r\n", b"\x0b", b"\x7f", b"\r\n ", b"\r\n\t", b":", b";"]
VALUES = [b"", b"v", b"a b", b"a\t\tb", b"\x80\xff", b"a, b;q=1", b'"q"', b"=", b"x" * 70]
NAMES_CL = [b"Content-Length", b"content-length", b"CONTENT-LENGTH", b"Content-length"]
NAMES_TE = [b"Transfer-Encoding", b"transfer-encoding", b"TRANSFER-ENCODING", b"Transfer-encoding"]


class Draft:
    """A request as lines (each with its own line end) and body pieces, mutated before it is joined."""

    def __init__(self, rnd, tag):
        self.rnd = rnd
        self.method = rnd.choice([b"POST", b"PUT", b"POST", b"GET"])
        self.target = b"/%s/%d" % (tag, rnd.randrange(100))
        self.version = b"HTTP/1.1"
        self.fields = [[b"Host", b" ", b"www.example.com", b""], [b"X-Case", b" ", tag, b""]]
        for _ in range(rnd.randrange(3)):  # other fields: empty values, inner whitespace, obs-text
            self.fields.append([b"X-Other-%d" % len(self.fields), rnd.choice(OWS),
                                rnd.choice(VALUES), rnd.choice(OWS)])
        self.ends = None  # per line, filled by lines()
        self.body_kind = rnd.choice(["cl", "chunked", "chunked", "none"])
        data = b"GET /%s/inner HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % tag
        self.payload = rnd.choice([b"hello", data, b"0\r\n\r\n", b"x" * rnd.randrange(1, 40)])
        self.chunks = []  # [size text, data, data end]
        self.trailers = []
        if self.body_kind == "cl":
            self.fields.append([rnd.choice(NAMES_CL), b" ", b"%d" % len(self.payload), b""])
        elif self.body_kind == "chunked":
            self.fields.append([rnd.choice(NAMES_TE), b" ", b"chunked", b""])
            cut = rnd.randrange(1, len(self.payload) + 1)
            for piece in (self.payload[:cut], self.payload[cut:]):
                if piece:
                    self.chunks.append([b"%x" % len(piece), piece, b"\r\n"])
            self.last = b"0"
            if rnd.random() < 0.3:
                self.trailers.append([b"X-Trailer", b" ", b"t", b""])
        self.rnd.shuffle(self.fields)

    def head_lines(self):
        out = [b"%s %s %s" % (self.method, self.target, self.version)]
        out += [n + b":" + a + v + b for n, a, v, b in self.fields]
        return out

    def render(self, line_ends=None):
        lines = self.head_lines() + [b""]
        ends = line_ends or [b"\r\n"] * len(lines)
        out = b"".join(l + e for l, e in zip(lines, ends))
        if self.body_kind == "cl":
            out += self.payload
        elif self.body_kind == "chunked":
            for size, data, end in self.chunks:
                out += size + b"\r\n" + data + end
            out += self.last + b"\r\n"
            out += b"".join(n + b":" + a + v + b + b"\r\n" for n, a, v, b in self.trailers) + b"\r\n"
        return out


def framing_field(d):
    for f in d.fields:
        if f[0].lower() in (b"content-length", b"transfer-encoding"):
            return f
    return None


def mutate(d, rnd):
    """Applies one structured mutation; returns the rendered bytes."""
    kind = rnd.randrange(14)
    f = framing_field(d)
    if kind == 0 and f is not None:  # OWS around the framing value
        f[1], f[3] = rnd.choice(OWS), rnd.choice(OWS)
    elif kind == 1 and f is not None:  # whitespace before the colon, or in the name
        f[0] = rnd.choice([f[0] + b" ", f[0] + b"\t", b" " + f[0], f[0][:4] + b" " + f[0][4:]])
    elif kind == 2:  # a second framing field
        extra = rnd.choice([[rnd.choice(NAMES_TE), b" ", rnd.choice(TE_VALUES), b""],
                            [rnd.choice(NAMES_CL), b" ", b"%d" % rnd.randrange(0, 12), b""]])
        d.fields.insert(rnd.randrange(len(d.fields) + 1), extra)
    elif kind == 3 and f is not None and f[0].lower() == b"transfer-encoding":
        f[2] = rnd.choice(TE_VALUES)
    elif kind == 3 and f is not None:
        n = len(d.payload)
        f[2] = rnd.choice(CL_FORMS).format(n=n, m=n + 1).encode("latin-1")
    elif kind == 4 and d.chunks:  # chunk-size forms
        c = rnd.choice(d.chunks)
        c[0] = rnd.choice(SIZE_FORMS).format(s=len(c[1])).encode("latin-1")
    elif kind == 5 and d.chunks:  # what follows chunk data
        rnd.choice(d.chunks)[2] = rnd.choice(DATA_ENDS)
    elif kind == 6 and d.body_kind == "chunked":  # the last-chunk line and the trailer section
        d.last = rnd.choice([b"0", b"00", b"0;e", b"0 ", b"0\r", b"0\n"])
        d.trailers.append(rnd.choice([[b"X-T", b" ", b"a", b"\r\n b"], [b"X-T", b"", b"", b"\r\n b"],
                                      [b"X-T", b" ", b"a", b"\r"], [b"X-T", b" ", b"a", b"\n"],
                                      [b"X-T", b"", b"", b"\r\n "], [b"X-T", b" ", b"a", b""]]))
    elif kind == 7:  # a line ended otherwise
        lines = d.head_lines() + [b""]
        ends = [b"\r\n"] * len(lines)
        ends[rnd.randrange(len(ends))] = rnd.choice(LINE_ENDS)
        return d.render(ends)
    elif kind == 8:  # obs-fold: a value continued, or started, on the next line
        g = rnd.choice(d.fields)
        fold = rnd.choice([b"\r\n ", b"\r\n\t", b"\r\n  "])
        if rnd.random() < 0.5:
            g[1], g[2] = b"", fold + g[2]
        else:
            g[2] = g[2][:1] + fold + g[2][1:]
    elif kind == 9:  # the request line
        d.method, d.target, d.version = rnd.choice([
            (d.method + b" ", d.target, d.version), (d.method, d.target + b" ", d.version),
            (d.method, d.target, b"HTTP/1.0"), (d.method, d.target, b"HTTP/1.1 "),
            (d.method.lower(), d.target, d.version), (d.method, d.target + b"\t", d.version),
            (d.method, d.target, b"HTTP/1.10"), (d.method, d.target, b"http/1.1")])
    elif kind == 10:  # case and duplicates of the framing name
        if f is not None:
            f[0] = f[0].swapcase()
            if rnd.random() < 0.5:
                d.fields.append(list(f))
    elif kind == 11 and f is not None:  # the framing field as an obs-folded continuation
        f[1], f[2] = b"", b"\r\n " + f[2]
    data = d.render()
    if kind >= 12:  # a stray byte anywhere
        pos = rnd.randrange(len(data) + 1)
        data = data[:pos] + rnd.choice(INSERTS) + data[pos:]
    return data


def corpus():
    rnd = random.Random(SEED)
    cases = []
    for i in range(N_CASES):
        tag = b"c%d" % i
        d = Draft(rnd, tag)
        baseline = i % 8 == 0  # an eighth unmutated: well-formed messages that must be served
        data = d.render() if baseline else mutate(d, rnd)
        follow = rnd.choice([b"GET /%s/follow HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % tag,
                             b"POST /%s/follow HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: 3\r\n\r\nabc" % tag])
        cases.append((tag, data + follow, baseline))
    return cases


# ---- the recording upstream ----

class RecordingUpstream:
    """Frames what jwtgate sends with REF and answers each complete request with 200. Per connection it
    keeps the messages (with arrival order), whether bytes REF refuses arrived, and whether the
    connection ended."""

    RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

    def __init__(self):
        self.lock = threading.Lock()
        self.conns = []
        self.seq = 0
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
            rec = {"msgs": [], "pending": b"", "bad": None, "eof": False, "sock": conn}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._conn, args=(conn, rec), daemon=True).start()

    def _conn(self, conn, rec):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                with self.lock:
                    rec["pending"] += data
                    msgs, end, used = ref_parse(rec["pending"])
                    rec["pending"] = rec["pending"][used:]
                    for m in msgs:
                        self.seq += 1
                        rec["msgs"].append((self.seq, m))
                    if end == "reject":
                        rec["bad"] = rec["bad"] or rec["pending"][:300]
                conn.sendall(self.RESPONSE * len(msgs))
                if end in ("reject", "closed"):
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                rec["eof"] = True
            conn.close()

    def messages_since(self, seq):
        """REF-framed messages that arrived after number seq, in arrival order, and the last number
        (cases run one after the other, so these are the current case's)."""
        with self.lock:
            got = sorted(((s, m) for r in self.conns for s, m in r["msgs"] if s > seq), key=lambda x: x[0])
            return [m for _s, m in got], self.seq

    def open_partials(self):
        with self.lock:
            return [r["pending"][:120] for r in self.conns if r["pending"] and not r["eof"]]

    def bad(self):
        with self.lock:
            return [r["bad"] for r in self.conns if r["bad"]]

    def stop(self):
        self.sock.close()
        with self.lock:
            for r in self.conns:
                try:
                    r["sock"].shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


# ---- the client side ----

def statuses(port, data, want, close_write):
    """Sends data, reads responses until `want` were read, the connection closed or 5 s passed (only a
    proxy that waits for bytes the reference does not expect makes a case wait that long).
    Returns (statuses, closed)."""
    got = []
    with jgtest.RawConn(port, timeout=5) as c:
        try:
            c.send(data)
            if close_write:
                c.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        deadline = time.monotonic() + 5.0
        while len(got) < want and time.monotonic() < deadline:
            try:
                r = c.read_response(method="POST", timeout=max(0.05, deadline - time.monotonic()))
            except jgtest.Closed:
                return got, True
            except (OSError, AssertionError, ValueError):
                break
            got.append(r.status)
            if r.status >= 400:
                break  # an error ends the connection: what follows must be its close
        closed = c.is_closed(3.0) if (not got or got[-1] >= 400) else False
        return got, closed


HOP = {b"host", b"connection", b"keep-alive", b"te", b"transfer-encoding", b"content-length", b"upgrade",
       b"proxy-connection", b"trailer", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
       b"forwarded", b"x-request-id", b"via", b"x-envoy-external-address"}


@pytest.fixture(scope="module")
def env(start_proxy_module):
    up = RecordingUpstream()
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"headerTimeout": "2s"}))
    yield {"up": up, "port": px.port}
    up.stop()


def test_framing_agrees_with_reference_parser(env):
    up, port = env["up"], env["port"]
    failures, stats = [], {"same": 0, "stricter": 0, "both-refuse": 0}
    seq = 0
    stricter = []  # refused by jwtgate, accepted by the reference: allowed (fail closed), shown with -s
    started = time.monotonic()
    for tag, data, baseline in corpus():
        ref_msgs, ref_end, _ = ref_parse(data)
        want = len(ref_msgs) + (1 if ref_end == "reject" else 0)
        got, closed = statuses(port, data, max(want, 1), ref_end == "incomplete")
        if ref_end == "incomplete" or (got and got[-1] >= 400):
            time.sleep(0.01)  # let a (wrongly) forwarded message arrive before looking
        # A forwarded head whose body turned bad: its upstream connection must close, never be reused.
        if not jgtest.wait_for(lambda: not up.open_partials(), 2.0):
            failures.append((tag, data, "upstream connection left open mid-message", up.open_partials()))
        fwd, seq = up.messages_since(seq)
        ref_sigs = [m.sig() for m in ref_msgs]
        fwd_sigs = [m.sig() for m in fwd]
        problem = None
        if fwd_sigs != ref_sigs[:len(fwd_sigs)]:
            problem = f"forwarded {fwd} but the reference frames {ref_msgs} ({ref_end})"
        else:
            for rm, fm in zip(ref_msgs, fwd):  # the client's own fields arrive as the reference read them
                missing = [(k, v) for k, v in rm.fields if k not in HOP and (k, v) not in fm.fields]
                if missing:
                    problem = f"fields {missing} of {rm} not forwarded as read"
                    break
        if problem is None:
            ok_count = sum(1 for s in got if s < 400)
            refused = len(fwd) < len(ref_msgs) or ref_end == "reject"
            if ok_count != len(fwd) and ref_end != "incomplete":  # (our half-close may cut answers)
                problem = f"client got {got} for {len(fwd)} forwarded messages"
            elif refused and ref_end != "incomplete" and not (got and got[-1] >= 400 and closed):
                problem = f"refused message not answered with an error and a close: {got}, closed={closed}"
        if problem is None and baseline and (ref_end != "ok" or len(fwd) != len(ref_msgs)):
            # Refusing more than REF is allowed, but not a well-formed message: that is a bug too.
            problem = f"well-formed messages {ref_msgs} ({ref_end}) not all served: forwarded {fwd}, got {got}"
        if problem:
            failures.append((tag, data, problem))
        elif ref_end == "reject" and len(fwd) == len(ref_msgs):
            stats["both-refuse"] += 1
        elif len(fwd) < len(ref_msgs):
            stats["stricter"] += 1
            stricter.append((got, data))
        else:
            stats["same"] += 1
    elapsed = time.monotonic() - started
    print(f"\n{N_CASES} cases in {elapsed:.1f}s: {stats}")
    for got, data in stricter:
        print(f"  stricter: {got} {data[:160]!r}")
    assert not up.bad(), f"the upstream received bytes the reference cannot frame: {up.bad()[:3]}"
    assert not failures, "\n".join(f"{t.decode()}: {p}\n    sent {d!r}" for t, d, p, *_ in failures[:15]) + \
        f"\n({len(failures)} failures of {N_CASES})"
    # The corpus must exercise both sides: many messages forwarded as framed, many refused by both.
    assert stats["same"] > N_CASES // 5 and stats["both-refuse"] > N_CASES // 5, stats
