"""Logs that never stall traffic (issue 11 section 4), and the service manager notifications (section 5).

- A stdout pipe that nobody reads: the access log fills it, then its lines are dropped and counted,
  and 1000 requests still succeed quickly (before the log writer, the worker blocked in fwrite and
  every later request hung).
- The same for stderr and the process log (log.level debug logs every connection state change).
- A fast reader sees whole lines in order, and lines seen + lines dropped = requests sent.
- SIGUSR1 reopens the access log file (logrotate renames, then signals).
- The JSON access log: every line parses with json.loads, carries the JWT outcome reason, and the
  verified token's sub when accessLog.includeSub is set; invalid UTF-8 and control bytes are escaped.
- $NOTIFY_SOCKET: READY=1 once listening, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 at drain.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import jgtest
from jgtest import RawConn, get

SEED_DIR = jgtest.SEED_DIR
HOST = "www.example.com"


def read_seed(name):
    with open(os.path.join(SEED_DIR, name)) as f:
        return f.read().strip()


def mint(*args):
    proc = subprocess.run([jgtest.TOKEN_BIN, "--key", os.path.join(SEED_DIR, "key.json"), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


class PipedProxy:
    """jwtgate with stdout and/or stderr as pipes that the test reads (or never reads)."""

    def __init__(self, tmpdir, config, stdout_pipe=True, stderr_pipe=False, env=None):
        self.dir = str(tmpdir)
        self.conf_path = os.path.join(self.dir, "jwtgate.yaml")
        with open(self.conf_path, "w") as f:
            f.write(jgtest.dump_yaml(config))
        self.err_path = os.path.join(self.dir, "stderr")
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([jgtest.BIN, "-c", self.conf_path],
                                     stdout=subprocess.PIPE if stdout_pipe else subprocess.DEVNULL,
                                     stderr=subprocess.PIPE if stderr_pipe else self._err,
                                     cwd=self.dir, env=env)

    def start(self, port):
        if not jgtest.wait_port(port, 10.0, self.proc):
            self.kill()
            raise AssertionError(f"jwtgate did not listen: rc={self.proc.returncode}\n{self.stderr_text()}")
        return self

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("latin-1")

    def stop(self, timeout=15.0):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            self.kill()
        self._err.close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def config(port, up_port, **top):
    return jgtest.base_config(port, {"backend": [up_port]}, [jgtest.catch_all_route()], **top)


def hammer(port, n, path="/r", per_conn=100, timeout=5.0, deadline_s=30.0):
    """n keep-alive GETs (per_conn on each connection); returns the statuses. Every request has a
    timeout, and the whole run a deadline: a stalled worker fails the test instead of hanging it."""
    statuses = []
    t0 = time.monotonic()
    i = 0
    while i < n:
        with RawConn(port, timeout=timeout) as c:
            for _ in range(min(per_conn, n - i)):
                assert time.monotonic() - t0 < deadline_s, f"{i} requests took over {deadline_s}s"
                r = c.request("GET", f"{path}?seq={i}", HOST)
                statuses.append(r.status)
                i += 1
    return statuses


def dropped_from(stderr_text):
    m = re.search(r"access log: (\d+) lines dropped", stderr_text)
    assert m, f"no drop count at exit in:\n{stderr_text[-3000:]}"
    return int(m.group(1))


def test_unread_stdout_pipe_does_not_stall_requests(make_upstream, tmp_path):
    up = make_upstream("backend")
    port = jgtest.free_port()
    # 1000 lines of ~1.1 KiB overflow the pipe (64 KiB), the writer's 64 KiB and the default
    # 256 KiB buffer for certain.
    cfg = config(port, up.port, workers=1, accessLog={"path": "stdout", "format": "text"})
    p = PipedProxy(tmp_path, cfg, stdout_pipe=True).start(port)
    try:
        t0 = time.monotonic()
        statuses = hammer(port, 1000, path="/" + "x" * 1000)
        elapsed = time.monotonic() - t0
        assert statuses == [200] * 1000
        assert elapsed < 30.0
        rc = p.stop()
    finally:
        p.kill()
    assert rc == 0, p.stderr_text()
    assert dropped_from(p.stderr_text()) > 0


def test_unread_stderr_pipe_does_not_stall_requests(make_upstream, tmp_path):
    """The process log too: at debug level every connection logs several lines to stderr."""
    up = make_upstream("backend")
    port = jgtest.free_port()
    cfg = config(port, up.port, workers=1, log={"level": "debug"})
    p = PipedProxy(tmp_path, cfg, stdout_pipe=False, stderr_pipe=True).start(port)
    try:
        statuses = hammer(port, 1000, per_conn=1)  # a connection per request: more lines
        assert statuses == [200] * 1000
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(15.0) == 0
    finally:
        p.kill()


def test_fast_reader_sees_whole_lines_in_order(make_upstream, tmp_path):
    up = make_upstream("backend")
    port = jgtest.free_port()
    # A small buffer: a reader that falls behind for a moment makes drops, which must be counted.
    cfg = config(port, up.port, workers=2, accessLog={"path": "stdout", "format": "json", "bufferSize": "16KiB"})
    p = PipedProxy(tmp_path, cfg, stdout_pipe=True).start(port)
    lines = []

    def reader():
        for ln in p.proc.stdout:
            lines.append(ln)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    n = 2000
    try:
        assert hammer(port, n, per_conn=n) == [200] * n  # one connection: one worker, one order
        assert p.stop() == 0
        t.join(10)
    finally:
        p.kill()
    seqs = []
    for ln in lines:
        assert ln.endswith(b"\n")
        rec = json.loads(ln)  # a torn or interleaved line would not parse
        m = re.search(r"seq=(\d+)", rec["path"])
        seqs.append(int(m.group(1)))
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "lines out of order or repeated"
    assert len(seqs) + dropped_from(p.stderr_text()) == n


def test_sigusr1_reopens_the_access_log_file(make_upstream, start_proxy, tmp_path):
    up = make_upstream("backend")
    log_path = str(tmp_path / "access.log")
    p = start_proxy(lambda port: config(port, up.port, accessLog={"path": log_path, "format": "text"}))

    def has(path, marker):
        try:
            with open(path) as f:
                return marker in f.read()
        except OSError:
            return False

    assert get(p.port, "/before-rotate").status == 200
    assert jgtest.wait_for(lambda: has(log_path, "/before-rotate"), 3.0)
    os.rename(log_path, log_path + ".1")
    p.signal(signal.SIGUSR1)
    # The reopen happens on the writer thread: wait until the new file exists.
    assert jgtest.wait_for(lambda: os.path.exists(log_path), 3.0), "SIGUSR1 did not reopen the file"
    assert get(p.port, "/after-rotate").status == 200
    assert jgtest.wait_for(lambda: has(log_path, "/after-rotate"), 3.0)
    assert not has(log_path + ".1", "/after-rotate")
    assert not has(log_path, "/before-rotate")
    assert p.proc.poll() is None, "SIGUSR1 must not end the process"


@pytest.mark.parametrize("include_sub", [True, False])
def test_json_access_log_fields(make_upstream, start_proxy, tmp_path, include_sub):
    up = make_upstream("backend")
    log_path = str(tmp_path / "access.json")

    def cfg(port):
        routes = [{"name": n, "hostnames": [HOST],
                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/" + n}}],
                              "backendRefs": [{"name": "backend"}]}]} for n in ("foo", "bar")]
        pol = {"name": "jwt-example", "targetRefs": [{"kind": "HTTPRoute", "name": "foo"}],
               "jwt": {"providers": [{"name": "example", "localJWKS": {
                   "type": "File", "file": os.path.join(SEED_DIR, "jwks.json")}}]}}
        return jgtest.base_config(port, {"backend": [up.port]}, routes, securityPolicies=[pol],
                                  accessLog={"path": log_path, "format": "json", "includeSub": include_sub})

    p = start_proxy(cfg)
    seed = read_seed("test.jwt")  # sub 1234567890
    odd_sub = 'al"ice\\\u00e9\u2603'
    cases = [
        ("/foo/ok", [("Authorization", "Bearer " + seed)], 200, "ok", "1234567890"),
        ("/foo/odd", [("Authorization", "Bearer " + mint("--sub", odd_sub))], 200, "ok", odd_sub),
        ("/foo/missing", [], 401, "missing", None),
        ("/foo/garbage", [("Authorization", "Bearer not.a.jwt")], 401, "malformed", None),
        ("/foo/expired", [("Authorization", "Bearer " + mint("--exp-in", "-1h"))], 401, "expired", None),
        ("/foo/early", [("Authorization", "Bearer " + mint("--nbf-in", "1h"))], 401, "not_yet_valid", None),
        ("/bar/open", [("Authorization", "Bearer " + seed)], 200, "none", None),
    ]
    for path, headers, status, _, _ in cases:
        assert get(p.port, path, HOST, headers=headers).status == status, path
    # Peer-controlled bytes: a tab (a control byte a field value may hold) and bytes that are not
    # UTF-8 (obs-text) in the client's X-Request-Id, which the log shows.
    assert get(p.port, "/bar/bytes", HOST, headers=[("X-Request-Id", "id\t\xff\xfe\"")]).status == 200

    def records():
        try:
            with open(log_path, "rb") as f:
                return [json.loads(ln) for ln in f if ln.strip()]
        except OSError:
            return []

    recs = jgtest.wait_for(lambda: (lambda r: r if len(r) >= len(cases) + 1 else None)(records()), 3.0)
    assert recs, "access log lines missing"
    by_path = {r["path"]: r for r in recs}
    for path, _, status, reason, sub in cases:
        r = by_path[path]
        assert r["status"] == status
        assert r["jwt"] == reason, (path, r)
        if include_sub:
            assert r["sub"] == sub, (path, r)
        else:
            assert "sub" not in r
        for k in ("time", "client", "host", "method", "path", "route", "upstream", "request_id", "protocol",
                  "status", "bytes", "duration_ms", "jwt"):
            assert k in r, (k, r)
    odd = [r for r in recs if r["path"] == "/bar/bytes"]
    assert odd and odd[0]["request_id"] == 'id\t\ufffd\ufffd"', odd


def test_sd_notify_ready_reloading_stopping(make_upstream, tmp_path):
    up = make_upstream("backend")
    port = jgtest.free_port()
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10.0)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path)
    p = PipedProxy(tmp_path, config(port, up.port), stdout_pipe=False, env=env)
    try:
        assert s.recv(4096) == b"READY=1"
        # READY comes after the listeners are open.
        with socket.create_connection(("127.0.0.1", port), timeout=2.0):
            pass
        p.proc.send_signal(signal.SIGHUP)
        assert s.recv(4096) == b"RELOADING=1"
        assert s.recv(4096) == b"READY=1"
        p.proc.send_signal(signal.SIGTERM)
        assert s.recv(4096) == b"STOPPING=1"
        assert p.proc.wait(15.0) == 0
    finally:
        p.kill()
        s.close()


def test_reload_errors_with_unread_stderr_do_not_block_the_main_loop(make_upstream, tmp_path):
    """Configuration errors at reload go through the log writer too: with stderr a full pipe, a
    refused reload must not block the main loop, so a later good reload still applies."""
    up = make_upstream("backend")
    port = jgtest.free_port()
    cfg = config(port, up.port, workers=1, log={"level": "debug"})
    p = PipedProxy(tmp_path, cfg, stdout_pipe=False, stderr_pipe=True).start(port)
    try:
        assert hammer(port, 1000, per_conn=1) == [200] * 1000  # debug lines fill the pipe
        with open(p.conf_path, "w") as f:
            f.write("listeners: [\n" + "unknownKey: 1\n" * 2000)  # many error lines
        for _ in range(5):
            p.proc.send_signal(signal.SIGHUP)
            time.sleep(0.05)
        good = config(port, up.port, workers=1, log={"level": "debug"})
        good["httpRoutes"][0]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "/only"}}]
        with open(p.conf_path, "w") as f:
            f.write(jgtest.dump_yaml(good))
        p.proc.send_signal(signal.SIGHUP)
        assert jgtest.wait_for(lambda: get(port, "/elsewhere", HOST).status == 404, 5.0), \
            "the good reload was not applied: the main loop is stuck"
        assert get(port, "/only", HOST).status == 200
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(15.0) == 0
    finally:
        p.kill()
