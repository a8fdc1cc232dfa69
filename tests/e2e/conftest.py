"""pytest fixtures for jwtgate's end-to-end tests: upstreams and proxies that clean up after themselves.

Every proxy started through `start_proxy` is stopped with SIGTERM at teardown, and the test fails if it
does not exit 0 within 15 s (a crash or a hang at shutdown is a bug whatever the test was about).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jgtest  # noqa: E402


class _Proxies:
    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.procs = []

    def __call__(self, config_fn, name="jwtgate"):
        """config_fn(listen_port) -> config dict (or YAML text). Returns a started jgtest.Proxy."""
        for attempt in range(3):
            # free_port() released the port before jwtgate binds it: a test running at the same
            # time may take it first, and jwtgate then refuses the busy address. Another port.
            port = jgtest.free_port()
            d = self.tmp_path_factory.mktemp(name)
            p = jgtest.Proxy(d, config_fn(port), name)
            try:
                p.start(port)
            except AssertionError:
                if attempt < 2 and "already in use" in p.logs():
                    continue
                raise
            self.procs.append(p)
            return p

    def finish(self):
        failures = []
        for p in self.procs:
            if p.proc is None or p.stopped:
                continue
            rc = p.stop(15.0)
            if rc != 0:
                failures.append(f"jwtgate exited with {rc} after SIGTERM (expected 0)\n{p.logs()}")
        assert not failures, "\n".join(failures)


def _proxies_fixture(request, tmp_path_factory):
    pr = _Proxies(tmp_path_factory)
    yield pr
    pr.finish()


@pytest.fixture
def start_proxy(request, tmp_path_factory):
    yield from _proxies_fixture(request, tmp_path_factory)


@pytest.fixture(scope="module")
def start_proxy_module(request, tmp_path_factory):
    yield from _proxies_fixture(request, tmp_path_factory)


class _Upstreams:
    def __init__(self):
        self.ups = []

    def __call__(self, name="up"):
        u = jgtest.Upstream(name)
        self.ups.append(u)
        return u

    def finish(self):
        for u in self.ups:
            u.stop()


@pytest.fixture
def make_upstream():
    ups = _Upstreams()
    yield ups
    ups.finish()


@pytest.fixture(scope="module")
def make_upstream_module():
    ups = _Upstreams()
    yield ups
    ups.finish()


@pytest.fixture
def upstream(make_upstream):
    return make_upstream("backend")
