"""Process lifecycle: graceful SIGTERM/SIGINT (drain in-flight, refuse new, exit 0, bounded by
drainTimeout), several workers, SIGHUP reload, and the seed configuration file."""

import os
import signal
import socket
import subprocess
import threading
import time

import jgtest
from jgtest import RawConn, get


def simple(up, **top):
    return lambda port: jgtest.base_config(port, {"backend": [up.port]}, [jgtest.catch_all_route()], **top)


def new_connection_served(port):
    """True if a new connection gets a 200; False if refused, reset, closed or left unanswered."""
    try:
        with RawConn(port, timeout=1.0) as c:
            c.send(b"GET /new HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
            return c.read_response(timeout=1.0).status == 200
    except (jgtest.Closed, OSError):
        return False


def test_sigterm_drains_in_flight_request_and_refuses_new(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(simple(up, workers=1, limits={"drainTimeout": "10s"}))
    result = {}

    def slow():
        try:
            with RawConn(px.port, timeout=10) as c:
                r = c.request("GET", "/slow/1500")
                result["status"] = r.status
                result["path"] = r.json()["path"]
        except Exception as e:  # reported below
            result["error"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    assert jgtest.wait_for(lambda: up.snapshot(), 2.0), "slow request did not reach the upstream"
    start = time.monotonic()
    px.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert px.proc.poll() is None, "exited before the in-flight request finished"
    assert not new_connection_served(px.port), "new connection served after SIGTERM"
    t.join(10)
    assert result.get("status") == 200, result
    assert result.get("path") == "/slow/1500"
    rc = px.wait(15)
    px.stopped = True
    assert rc == 0, px.logs()
    assert time.monotonic() - start < 5.0
    assert "/new" not in up.paths()


def test_sigterm_does_not_wait_for_idle_keepalive_connection(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(simple(up, workers=1, limits={"drainTimeout": "5s", "idleTimeout": "60s"}))
    with RawConn(px.port) as c:
        assert c.request("GET", "/idle").status == 200
        start = time.monotonic()
        px.signal(signal.SIGTERM)
        rc = px.wait(15)
        px.stopped = True
        assert rc == 0, px.logs()
        assert time.monotonic() - start < 3.0, "an idle connection held shutdown for the drain timeout"
        assert c.is_closed(1.0)


def test_drain_timeout_bounds_shutdown(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(simple(up, workers=1, limits={"drainTimeout": "1s"}))
    c = RawConn(px.port, timeout=10)
    try:
        c.send(b"GET /hang HTTP/1.1\r\nHost: www.example.com\r\n\r\n")
        assert jgtest.wait_for(lambda: up.snapshot(), 2.0)
        start = time.monotonic()
        px.signal(signal.SIGTERM)
        rc = px.wait(15)
        px.stopped = True
        elapsed = time.monotonic() - start
        assert rc == 0, px.logs()
        assert 0.8 <= elapsed <= 3.5, elapsed
        # the client's connection is not left open after the process is gone
        try:
            c.read_response(timeout=2)
        except jgtest.Closed:
            pass
    finally:
        c.close()


def test_sigint_exits_zero(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(simple(up, workers=1))
    assert get(px.port, "/x").status == 200
    px.signal(signal.SIGINT)
    rc = px.wait(15)
    px.stopped = True
    assert rc == 0, px.logs()


def test_two_workers_serve_requests(make_upstream, start_proxy):
    up = make_upstream("backend")
    px = start_proxy(simple(up, workers=2))
    errors = []

    def client(k):
        for i in range(10):
            try:
                r = get(px.port, f"/w/{k}/{i}")
                if r.status != 200 or r.json()["path"] != f"/w/{k}/{i}":
                    errors.append(r)
            except Exception as e:
                errors.append(e)

    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errors, errors[:3]
    assert len(up.complete()) == 40
    threads = len(os.listdir(f"/proc/{px.proc.pid}/task"))
    assert threads >= 3, f"workers: 2 should run a main thread and two workers, found {threads} threads"


def test_sighup_reload_applies_good_and_refuses_bad(make_upstream, start_proxy):
    a = make_upstream("A")
    b = make_upstream("B")
    holder = {}

    def cfg(port):
        holder["port"] = port
        return jgtest.base_config(port, {"backend": [a.port]}, [jgtest.catch_all_route()], workers=1)

    px = start_proxy(cfg)
    assert get(px.port, "/r").json()["upstream"] == "A"

    with open(px.conf_path, "w") as f:
        f.write(jgtest.dump_yaml(jgtest.base_config(holder["port"], {"backend": [b.port]},
                                                    [jgtest.catch_all_route()], workers=1)))
    px.signal(signal.SIGHUP)
    assert jgtest.wait_for(lambda: get(px.port, "/r").json()["upstream"] == "B", 5.0, 0.1), \
        "SIGHUP did not apply the new configuration"

    with open(px.conf_path, "w") as f:
        f.write("listeners: [\n")  # broken
    px.signal(signal.SIGHUP)
    time.sleep(0.5)
    assert px.proc.poll() is None, "a bad file on reload killed the process"
    r = get(px.port, "/r")
    assert r.status == 200 and r.json()["upstream"] == "B", "running configuration lost after a bad reload"


def test_seed_configuration_checks(tmp_path):
    conf = os.path.join(jgtest.SOURCE_ROOT, "conf", "jwtgate.yaml")
    assert os.path.isfile(conf), f"missing {conf}"
    p = subprocess.run([jgtest.BIN, "-c", conf, "--check"], capture_output=True, timeout=10,
                       cwd=jgtest.SOURCE_ROOT)
    assert p.returncode == 0, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_second_instance_on_a_busy_port_refuses_to_start(make_upstream, start_proxy, tmp_path):
    """The workers' listening sockets share a port through SO_REUSEPORT; without a check, a second
    jwtgate started by mistake on the same address would join them and take part of the new
    connections silently. It must refuse to start instead, naming the address."""
    up1, up2 = make_upstream("first"), make_upstream("second")
    px = start_proxy(simple(up1, workers=2))
    second = jgtest.Proxy(tmp_path, simple(up2, workers=1)(px.port), "second")
    second.port = px.port
    second._out = open(second.stdout_path, "wb")
    second._err = open(second.stderr_path, "wb")
    second.proc = subprocess.Popen([jgtest.BIN, "-c", second.conf_path], stdout=second._out,
                                   stderr=second._err, cwd=second.dir)
    try:
        rc = second.proc.wait(10)
    except subprocess.TimeoutExpired:
        rc = None
    try:
        assert rc is not None and rc != 0, f"a second jwtgate started on a busy port\n{second.logs()}"
        assert f"127.0.0.1:{px.port}" in second.logs() and "already in use" in second.logs(), second.logs()
        for i in range(40):  # new connections: every one reaches the first instance's upstream
            assert get(px.port, f"/n/{i}").status == 200
        assert len(up1.complete()) == 40 and not up2.complete()
    finally:
        if second.proc.poll() is None:
            second.proc.kill()
            second.proc.wait()
        second.stopped = True
