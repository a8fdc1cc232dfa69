"""TLS session tickets (issue 13, TLS): on by default, sealed with per-listener keys that every worker
and every reload share, rotated every `tls.ticketKeyRotation` with the previous keys still opening
tickets for their lifetime; a ticket no key of ours opens (another server's, a stale one) gives a
full handshake, never a failed one.

Tickets are read with `openssl s_client -sess_out` and `openssl sess_id -text`: the first 16 bytes
of a ticket are the name of the key that sealed it (RFC 5077 section 4), which shows a rotation.
"""

import re
import socket
import ssl
import subprocess
import time

import pytest

import jgtest
from test_reload import TlsSite, tls_config, tls_connect, tls_request

TIMEOUT = 10  # bound on every openssl run


def s_client(port, tmp_path, name, sess_in=None):
    """One TLS 1.3 connection with a GET (Connection: close); saves its session to tmp_path/name.
    Returns (reused, http_status_line)."""
    out = str(tmp_path / name)
    args = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3", "-servername",
            "www.example.com", "-ign_eof", "-sess_out", out]
    if sess_in is not None:
        args += ["-sess_in", str(tmp_path / sess_in)]
    req = b"GET /r HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n"
    p = subprocess.run(args, input=req, capture_output=True, timeout=TIMEOUT)
    text = p.stdout.decode("latin-1")
    status = re.search(r"^HTTP/1\.1 (\d+)", text, re.M)
    return ("Reused, TLSv1.3" in text), (int(status.group(1)) if status else None)


def ticket_info(tmp_path, name):
    """(key name, lifetime hint in seconds) of the ticket in a saved session."""
    p = subprocess.run(["openssl", "sess_id", "-in", str(tmp_path / name), "-text", "-noout"],
                       capture_output=True, timeout=TIMEOUT, check=True)
    text = p.stdout.decode()
    first = re.search(r"TLS session ticket:\n\s*0000 - ([0-9a-f -]+?)\s\s", text)
    hint = re.search(r"lifetime hint: (\d+)", text)
    assert first and hint, text
    return first.group(1).replace(" ", "").replace("-", ""), int(hint.group(1))


def rotating_config(site, up, tls_port, rotation, workers):
    base = tls_config(site, up, tls_port, workers=workers)

    def config(port):
        cfg = base(port)
        cfg["listeners"][1]["tls"]["ticketKeyRotation"] = rotation
        return cfg
    return config


def test_session_resumes_on_a_second_connection(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()
    with tls_connect(tls_port, ctx) as first:
        assert tls_request(first) == 200
        assert not first.session_reused
        session = first.session
    with tls_connect(tls_port, ctx, session=session) as second:
        assert tls_request(second) == 200
        assert second.session_reused, "a ticket from this server did not resume"


def test_tickets_from_before_a_rotation_resume_on_every_worker(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(rotating_config(site, up, tls_port, "1s", workers=2))
    assert jgtest.wait_port(tls_port, 5.0)

    reused, status = s_client(tls_port, tmp_path, "old.pem")
    assert status == 200 and not reused
    old_key, hint = ticket_info(tmp_path, "old.pem")
    # 8 keys at most, a new one every second: tickets are good for 7 s and say so.
    assert hint == 7, hint
    time.sleep(2.2)  # two rotations
    reused, status = s_client(tls_port, tmp_path, "new.pem")
    assert status == 200 and not reused
    new_key, _ = ticket_info(tmp_path, "new.pem")
    assert new_key != old_key, "the ticket key did not rotate"
    # The old ticket still opens, whichever of the two workers accepts the connection.
    for i in range(6):
        reused, status = s_client(tls_port, tmp_path, f"again{i}.pem", sess_in="old.pem")
        assert status == 200
        assert reused, f"connection {i}: a ticket from before the rotation did not resume"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_ticket_from_another_server_gives_a_full_handshake(make_upstream, start_proxy, tmp_path, version):
    """Two jwtgates with the same certificate but their own keys: B cannot open A's ticket, and the
    connection goes on with a full handshake (never an alert)."""
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    port_a, port_b = jgtest.free_port(), jgtest.free_port()
    start_proxy(tls_config(site, up, port_a, workers=1), name="a")
    start_proxy(tls_config(site, up, port_b, workers=1), name="b")
    assert jgtest.wait_port(port_a, 5.0) and jgtest.wait_port(port_b, 5.0)
    ctx = site.client_ctx()
    ctx.maximum_version = version
    with tls_connect(port_a, ctx) as a:
        assert tls_request(a) == 200
        session = a.session
    for _ in range(2):
        with tls_connect(port_b, ctx, session=session) as b:
            assert tls_request(b) == 200
            assert not b.session_reused, "B resumed a session sealed by A's keys"
    # And A still takes its own ticket.
    with tls_connect(port_a, ctx, session=session) as a2:
        assert tls_request(a2) == 200
        assert a2.session_reused


def test_connection_close_sends_close_notify_before_fin(make_upstream, start_proxy, tmp_path):
    """RFC 8446 section 6.1: a response jwtgate closes the connection after (Connection: close) ends
    with close_notify, so the client can tell the end of the data from a truncation; before, the FIN
    went first and the alert failed (EPIPE): OpenSSL clients saw "unexpected eof"."""
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # Python sets it: a bare FIN would read as a clean end
    for http11 in (True, False):
        raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
        s = ctx.wrap_socket(raw, server_hostname="www.example.com", suppress_ragged_eofs=False)
        if http11:
            s.sendall(b"GET /r HTTP/1.1\r\nHost: www.example.com\r\nConnection: close\r\n\r\n")
        else:
            s.sendall(b"GET /r HTTP/1.0\r\nHost: www.example.com\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(65536)  # b"" only after close_notify; SSLEOFError on a bare FIN
                if not chunk:
                    break
                data += chunk
        except ssl.SSLEOFError as e:
            raise AssertionError(f"connection closed without close_notify after {data[:40]!r}") from e
        finally:
            s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:80]


def read_response(s, buf=b""):
    """One HTTP/1.1 response (Content-Length or chunked) from a TLS socket: (status, body, rest)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, "closed before the head"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    fields = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip() for l in head.split(b"\r\n")[1:]}
    if b"content-length" in fields:
        n = int(fields[b"content-length"])
        while len(rest) < n:
            chunk = s.recv(65536)
            assert chunk, "closed in the body"
            rest += chunk
        return int(head.split(b" ")[1]), rest[:n], rest[n:]
    body = b""
    while True:  # chunked
        while b"\r\n" not in rest:
            rest += s.recv(65536)
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(rest) < size + 2:
            chunk = s.recv(65536)
            assert chunk, "closed in a chunk"
            rest += chunk
        body += rest[:size]
        rest = rest[size + 2:]
        if size == 0:
            return int(head.split(b" ")[1]), body, rest


def test_https_responses_large_small_and_pipelined_on_one_connection(make_upstream, start_proxy, tmp_path):
    """HTTPS/1.1 responses are written with SSL_write of the output, the write event only while the
    socket is full: a 3 MB body to a client that reads late (the socket fills, libevent finishes the
    write with the same bytes), then chunked, small and pipelined responses on the same connection,
    every byte checked."""
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    s = tls_connect(tls_port, site.client_ctx())
    try:
        s.sendall(b"GET /big/3000000 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        time.sleep(0.5)  # let the socket buffers fill
        status, body, rest = read_response(s)
        assert status == 200 and body == jgtest.pattern(3000000)
        s.sendall(b"GET /chunked/200000 HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        status, body, rest = read_response(s, rest)
        assert status == 200 and body == jgtest.pattern(200000)
        s.sendall(b"".join(b"GET /big/%d HTTP/1.1\r\nHost: www.example.com\r\n\r\n" % n for n in (1, 100, 20000, 5)))
        for n in (1, 100, 20000, 5):
            status, body, rest = read_response(s, rest)
            assert status == 200 and body == jgtest.pattern(n), n
        assert rest == b""
    finally:
        s.close()


def test_changed_ticket_key_rotation_refuses_the_reload(make_upstream, start_proxy, tmp_path):
    """The key store lives as long as the process: a new ticketKeyRotation cannot apply at a reload,
    so the reload is refused and says so, rather than accepted and silently ignored."""
    import signal
    from test_reload import wait_log, write_config
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    holder = {}
    make = rotating_config(site, up, tls_port, "1h", workers=1)

    def config(port):
        holder["port"] = port
        return make(port)

    px = start_proxy(config)
    cfg = make(holder["port"])
    cfg["listeners"][1]["tls"]["ticketKeyRotation"] = "30m"
    write_config(px.conf_path, cfg)
    px.signal(signal.SIGHUP)
    assert wait_log(px, "tls.ticketKeyRotation needs a restart; running configuration kept"), px.logs()


def test_http2_close_sends_close_notify_before_fin(make_upstream, start_proxy, tmp_path):
    """The same over ALPN h2: a connection jwtgate ends (here: after a connection error it answers
    with GOAWAY) gets close_notify before the FIN; before, h2 over TLS sent neither, and the client
    saw the connection cut."""
    import hyperframe.frame as hf
    up = make_upstream("backend")
    site = TlsSite(tmp_path)
    tls_port = jgtest.free_port()
    start_proxy(tls_config(site, up, tls_port, workers=1))
    assert jgtest.wait_port(tls_port, 5.0)
    ctx = site.client_ctx()
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", tls_port), timeout=5)
    s = ctx.wrap_socket(raw, server_hostname="www.example.com", suppress_ragged_eofs=False)
    assert s.selected_alpn_protocol() == "h2"
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + hf.SettingsFrame(0).serialize()
              + b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"12345678")  # PING on stream 1: PROTOCOL_ERROR
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except ssl.SSLEOFError as e:
        raise AssertionError(f"h2 connection closed without close_notify after {len(data)} bytes") from e
    finally:
        s.close()
    assert b"\x07" in data, "no GOAWAY frame"  # frame type 7 somewhere in what was read
