#!/usr/bin/python3
"""bench/scrape.py HOST PORT PATH INTERVAL_S: a Prometheus-like scraper for bench/ab.sh --scrape-a/-b.

GETs http://HOST:PORT/PATH on a fixed schedule (every INTERVAL_S seconds from the start, as Prometheus
does; a tick missed because a scrape ran late is skipped, not caught up) until SIGTERM, then prints one
line that ab.sh parses:

  JGSCRAPE scrapes=N ok=M bytes=B max_ms=X cpu_ms=Y

ok counts answers with status 200; bytes is the size of the last answer; cpu_ms is this process's own
CPU time from the first scrape on (start-up left out), which runs on the load CPUs next to wrk and
the upstream. One process for the whole round
rather than a curl per scrape: a fork and exec every 100 ms would cost the load side far more than the
scrape costs the proxy.
"""
import os
import signal
import socket
import sys
import time


class Stop(Exception):
    pass


def on_term(signum, frame):
    raise Stop()


def scrape(host, port, path):
    """One GET; returns (status, bytes). The admin endpoint closes every connection after its answer."""
    req = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    with socket.create_connection((host, port), timeout=1.0) as s:
        s.sendall(req)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    line = data.split(b"\r\n", 1)[0].split()
    status = int(line[1]) if len(line) >= 2 and line[1].isdigit() else 0
    return status, len(data)


def main():
    host, port, path, interval = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    signal.signal(signal.SIGTERM, on_term)
    n = ok = size = 0
    worst = 0.0
    t_start = os.times()
    try:
        t_next = time.monotonic()
        while True:
            t0 = time.monotonic()
            try:
                status, size = scrape(host, port, path)
            except OSError:
                status = 0
            n += 1  # counted once finished: a scrape cut by SIGTERM is neither ok nor failed
            ok += status == 200
            worst = max(worst, time.monotonic() - t0)
            t_next += interval
            now = time.monotonic()
            while t_next <= now:
                t_next += interval
            time.sleep(t_next - now)
    except Stop:
        pass
    t = os.times()
    print(f"JGSCRAPE scrapes={n} ok={ok} bytes={size} max_ms={worst * 1000:.2f} "
          f"cpu_ms={(t.user + t.system - t_start.user - t_start.system) * 1000:.0f}", flush=True)


if __name__ == "__main__":
    main()
