"""HTTP/2 attacks of reference/security.md section 4, as hand-made frame sequences. Each must end in the
expected GOAWAY / RST_STREAM / 431, and the proxy must keep serving other clients afterwards."""

import os
import time

import hyperframe.frame as hf
import pytest

import h2util
import jgtest

ENHANCE_YOUR_CALM = 0xB
REFUSED_STREAM = 0x7
PROTOCOL_ERROR = 0x1


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    up = make_upstream_module("backend")
    px = start_proxy_module(lambda port: jgtest.base_config(
        port, {"backend": [up.port]}, [jgtest.catch_all_route()], workers=1,
        limits={"idleTimeout": "2s", "headerTimeout": "2s", "maxHeaderBytes": 16384, "maxHeaderCount": 50}))
    return {"up": up, "px": px, "port": px.port}


def still_serves(env):
    """A fresh client gets a normal answer (the attack did not take the proxy down)."""
    with h2util.H2Conn(env["port"]) as c:
        sid = c.request("/after-attack")
        r = c.response(sid)
        assert r["headers"][":status"] == "200"
    assert env["px"].proc.poll() is None


def test_rapid_reset_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        out = bytearray()
        for i in range(3000):
            sid = 1 + 2 * i
            out += c.headers_frame(sid, c.request_headers(f"/rr/{i}"))
            out += hf.RstStreamFrame(sid, error_code=0x8).serialize()  # CANCEL
        c.send(bytes(out))
        assert c.wait_goaway_or_close(timeout=10)
        assert c.goaway is not None
    still_serves(env)


def test_continuation_flood_closes(env):
    with h2util.RawH2(env["port"]) as c:
        block = c.enc.encode(c.request_headers("/cont"))
        h = hf.HeadersFrame(1, data=block)  # no END_HEADERS
        out = bytearray(h.serialize())
        for _ in range(100):
            cf = hf.ContinuationFrame(1, data=c.enc.encode([("x-filler", "a" * 10)]))
            out += cf.serialize()
        c.send(bytes(out))
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] != 0
    still_serves(env)


def test_trickled_header_block_is_cut_at_the_header_timeout(env):
    """HEADERS without END_HEADERS, then one small CONTINUATION a second: each frame restarts the idle
    timer (2 s), so only the header timeout (2 s from the block's start) can end it; the trickle
    would last 6 s."""
    import time
    with h2util.RawH2(env["port"], timeout=10) as c:
        # Take the server's SETTINGS (and ACK them) first: no other frame may interrupt the block.
        c.wait(lambda x: False, timeout=0.3)
        t0 = time.monotonic()
        c.send(hf.HeadersFrame(1, data=c.enc.encode(c.request_headers("/trickle"))).serialize())
        for i in range(6):
            if c.wait_goaway_or_close(timeout=1.0):
                break
            try:
                c.send(hf.ContinuationFrame(1, data=c.enc.encode([(f"x-t{i}", "a")])).serialize())
            except OSError:
                break
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == 0
        assert time.monotonic() - t0 < 4.0, "the header block outlived the header timeout"
    still_serves(env)


def test_header_block_deadline_holds_while_other_streams_answer(env):
    """An open header block is cut at the header timeout even while jwtgate keeps writing responses
    of other streams on the connection: our writes must not push the block's deadline back."""
    import time
    with h2util.RawH2(env["port"], timeout=10) as c:
        c.wait(lambda x: False, timeout=0.3)
        out = bytearray()
        for i in range(8):  # answers written at 0.5 s, 1 s, ... 4 s
            out += c.headers_frame(1 + 2 * i, c.request_headers(f"/slow/{500 * (i + 1)}"))
        c.send(bytes(out))
        t0 = time.monotonic()
        c.send(hf.HeadersFrame(17, data=c.enc.encode(c.request_headers("/never-ends"))).serialize())
        assert c.wait_goaway_or_close(timeout=8)
        assert c.goaway is not None
        assert time.monotonic() - t0 < 3.5, "responses on other streams extended the header block"
    still_serves(env)


def test_too_many_header_fields_is_431(env):
    with h2util.RawH2(env["port"]) as c:
        extra = [(f"x-h{i}", "v") for i in range(80)]  # limit 50
        c.send(c.headers_frame(1, c.request_headers("/many", extra=extra)))
        assert c.wait(lambda x: 1 in x.ended or 1 in x.rst)
        assert c.headers[1][0][":status"] == "431"
    assert env["up"].matching("/many") == []
    still_serves(env)


def test_huge_header_list_is_431(env):
    with h2util.RawH2(env["port"]) as c:
        extra = [(f"x-big{i}", "b" * 4000) for i in range(6)]  # 24 KB > 16 KiB
        block = c.enc.encode(c.request_headers("/huge", extra=extra))
        assert len(block) > 16000
        h = hf.HeadersFrame(1, data=block[:16000])
        h.flags.add("END_STREAM")
        cont = hf.ContinuationFrame(1, data=block[16000:])
        cont.flags.add("END_HEADERS")
        c.send(h.serialize() + cont.serialize())
        assert c.wait(lambda x: 1 in x.ended or 1 in x.rst)
        assert 1 in x_rst_or_431(c)
    assert env["up"].matching("/huge") == []
    still_serves(env)


def x_rst_or_431(c):
    return {sid for sid in set(c.rst) | set(c.headers)
            if c.rst.get(sid) is not None or c.headers[sid][0].get(":status") == "431"}


def test_hpack_bomb_is_refused(env):
    # One 4000-byte field enters the dynamic table, then is referenced 1000 times by index (1 byte
    # each): a few KB on the wire, 4 MB decoded. The list bound must stop it.
    with h2util.RawH2(env["port"]) as c:
        first = c.enc.encode(c.request_headers("/bomb") + [("x-bomb", "z" * 4000)])
        # the entry just added is dynamic index 62
        refs = bytes([0x80 | 62]) * 1000
        h = hf.HeadersFrame(1, data=first + refs)
        h.flags.add("END_HEADERS")
        h.flags.add("END_STREAM")
        c.send(h.serialize())
        assert c.wait(lambda x: 1 in x.ended or 1 in x.rst or x.goaway is not None)
        assert c.goaway is not None or 1 in x_rst_or_431(c)
    assert env["up"].matching("/bomb") == []
    still_serves(env)


def test_settings_flood_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        c.send(hf.SettingsFrame(0, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize() * 5000)
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == ENHANCE_YOUR_CALM
    still_serves(env)


def test_ping_flood_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        c.send(hf.PingFrame(0, opaque_data=b"12345678").serialize() * 5000)
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == ENHANCE_YOUR_CALM
    still_serves(env)


def test_too_many_streams_are_refused(env):
    with h2util.RawH2(env["port"], timeout=10) as c:
        out = bytearray()
        for i in range(130):
            out += c.headers_frame(1 + 2 * i, c.request_headers(f"/slow/1000?s={i}"))
        c.send(bytes(out))
        assert c.wait(lambda x: len(x.rst) >= 30, timeout=5)
        assert all(code == REFUSED_STREAM for code in c.rst.values())
        assert len(c.rst) == 30  # advertised SETTINGS_MAX_CONCURRENT_STREAMS 100
        # the admitted ones are served
        assert c.wait(lambda x: len(x.ended) >= 100, timeout=10)
        assert all(c.headers[sid][0][":status"] == "200" for sid in c.ended)
    still_serves(env)


def test_empty_data_flood_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        c.send(c.headers_frame(1, c.request_headers("/echo-body", method="POST"), end_stream=False))
        c.send(hf.DataFrame(1, data=b"").serialize() * 200)
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == ENHANCE_YOUR_CALM
    still_serves(env)


def test_window_update_flood_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        c.send(hf.WindowUpdateFrame(0, window_increment=1).serialize() * 5000)
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == ENHANCE_YOUR_CALM
    still_serves(env)


def test_priority_flood_gets_goaway(env):
    with h2util.RawH2(env["port"]) as c:
        out = bytearray()
        for i in range(2000):
            out += hf.PriorityFrame(1 + 2 * (i % 50), depends_on=0, stream_weight=15).serialize()
        c.send(bytes(out))
        assert c.wait_goaway_or_close(timeout=5)
        assert c.goaway is not None and c.goaway[0] == ENHANCE_YOUR_CALM
    still_serves(env)


def test_invalid_messaging_is_a_stream_error(env):
    with h2util.RawH2(env["port"]) as c:
        c.send(c.headers_frame(1, c.request_headers("/upper", extra=[("X-Upper", "v")])))
        assert c.wait(lambda x: 1 in x.rst)
        assert c.rst[1] == PROTOCOL_ERROR
    assert env["up"].matching("/upper") == []
    still_serves(env)


def test_slow_reader_is_bounded_and_timed_out(env):
    pid = env["px"].proc.pid
    before = jgtest.rss_kib(pid)
    # A zero stream window: the proxy may not send any DATA; it must neither buffer the whole 64 MiB
    # response nor keep the connection past the idle timeout (2 s here).
    with h2util.RawH2(env["port"], timeout=10, settings={hf.SettingsFrame.INITIAL_WINDOW_SIZE: 0}) as c:
        c.send(c.headers_frame(1, c.request_headers(f"/big/{64 * 1024 * 1024}")))
        assert c.wait(lambda x: 1 in x.headers, timeout=5)
        still_serves(env)
        assert jgtest.rss_kib(pid) - before < 32 * 1024, "proxy buffered the response instead of pausing the upstream"
        assert c.wait(lambda x: x.closed, timeout=10)
        assert c.goaway is not None
        assert 1 not in c.ended
    still_serves(env)


def test_silent_connection_gets_goaway_after_header_timeout(env):
    with h2util.RawH2(env["port"], timeout=10) as c:
        assert c.wait(lambda x: x.closed, timeout=6)
        assert c.goaway is not None and c.goaway[0] == 0
    still_serves(env)


def test_idle_deadline_moves_with_each_request_then_goaway(env):
    # idleTimeout 2 s: requests every 0.5 s for 3 s keep the connection (each moves the deadline);
    # then, silent, it gets GOAWAY(NO_ERROR) about 2 s later, not at once and not never.
    with h2util.H2Conn(env["port"], timeout=10) as c:
        t_end = time.monotonic() + 3.0
        while time.monotonic() < t_end:
            sid = c.request("/keep")
            assert c.response(sid)["headers"][":status"] == "200"
            assert c.goaway is None, "closed while requests kept coming"
            time.sleep(0.5)
        t0 = time.monotonic()
        assert c.wait(lambda x: x.goaway is not None or x.closed, timeout=8)
        waited = time.monotonic() - t0
        assert c.goaway is not None and c.goaway[0] == 0, c.goaway
        assert 1.0 < waited < 4.0, f"GOAWAY {waited:.2f} s after the last request (idle timeout 2 s)"
    still_serves(env)
