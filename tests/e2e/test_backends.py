"""Backends: FQDN endpoints resolved asynchronously, the three load balancers, ejection of an endpoint
that keeps failing, and the 503 when no endpoint can be used."""

import collections
import re

import pytest

import jgtest
from jgtest import get


@pytest.fixture(scope="module")
def env(make_upstream_module, start_proxy_module):
    a = make_upstream_module("A")
    b = make_upstream_module("B")
    slow = make_upstream_module("S")
    fast = make_upstream_module("F")
    dead = jgtest.free_port()  # nothing listens there
    backends = {
        # "localhost" comes from the hosts file through evdns, never from a blocking resolver call
        "fqdn": {"endpoints": [{"fqdn": {"hostname": "localhost", "port": a.port}}]},
        "nowhere": {"endpoints": [{"fqdn": {"hostname": "nonexistent.invalid", "port": a.port}}]},
        "rr": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": p}} for p in (a.port, b.port)],
               "loadBalancer": {"type": "RoundRobin"}},
        "random": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": p}} for p in (a.port, b.port)],
                   "loadBalancer": {"type": "Random"}},
        "least": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": p}} for p in (slow.port, fast.port)],
                  "loadBalancer": {"type": "LeastRequest"}},
        "eject": {"endpoints": [{"ip": {"address": "127.0.0.1", "port": p}} for p in (dead, b.port)],
                  "loadBalancer": {"type": "RoundRobin"}},
    }
    routes = [{"name": n, "hostnames": [f"{n}.example.com"], "rules": [{"backendRefs": [{"name": n}]}]}
              for n in backends]
    px = start_proxy_module(lambda port: jgtest.base_config(port, backends, routes, workers=1))
    return {"a": a, "b": b, "slow": slow, "fast": fast, "port": px.port, "px": px}


def served_by(env, host, n):
    """Sends n requests to host and counts which upstream answered each."""
    seen = collections.Counter()
    for _ in range(n):
        r = get(env["port"], "/x", host=host)
        assert r.status == 200, r
        seen[r.json()["upstream"]] += 1
    return seen


def test_fqdn_endpoint_is_resolved(env):
    r = jgtest.wait_for(lambda: get(env["port"], "/f", host="fqdn.example.com").status == 200, 5.0, 0.1)
    assert r, "a localhost FQDN endpoint never became usable"
    assert get(env["port"], "/f", host="fqdn.example.com").json()["upstream"] == "A"


def test_unresolvable_fqdn_is_503_and_others_still_work(env):
    r = get(env["port"], "/n", host="nowhere.example.com")
    assert r.status == 503
    assert b"no healthy upstream" in r.body
    assert get(env["port"], "/f", host="rr.example.com").status == 200


def test_round_robin_alternates(env):
    seen = served_by(env, "rr.example.com", 20)
    assert seen["A"] == 10 and seen["B"] == 10, seen


def test_random_uses_both(env):
    seen = served_by(env, "random.example.com", 60)
    assert seen["A"] >= 10 and seen["B"] >= 10, seen


def test_least_request_avoids_the_busy_endpoint(env):
    # One slow request is in flight on one endpoint; LeastRequest must send every quick request that
    # follows (one at a time) to the other endpoint, where RoundRobin would alternate.
    import threading

    results = []
    before = len(env["slow"].snapshot()) + len(env["fast"].snapshot())

    def slow_call():
        results.append(get(env["port"], "/slow/1500", host="least.example.com", timeout=10).json()["upstream"])

    t = threading.Thread(target=slow_call)
    t.start()
    assert jgtest.wait_for(lambda: len(env["slow"].snapshot()) + len(env["fast"].snapshot()) > before, 3.0)
    quick = served_by(env, "least.example.com", 10)
    t.join()
    idle = "F" if results[0] == "S" else "S"
    assert quick[idle] == 10, (quick, results)


def test_failing_endpoint_is_ejected(env):
    # Every connect to the dead endpoint fails and is retried on the live one, so all requests pass;
    # after three failures in a row the dead endpoint is ejected and no longer tried.
    seen = served_by(env, "eject.example.com", 12)
    assert seen["B"] == 12
    logs = env["px"].logs()
    assert re.search(r"ejected for \d+ ms after 3 connect failures", logs), logs[-2000:]
