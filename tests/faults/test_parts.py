"""The harness's parts on their own: the loopback proxy and the test-only fencing switch."""

from __future__ import annotations

import time

import pytest
import redis

from slotlock.chaos import cluster
from slotlock.chaos.proxy import Proxy
from slotlock.workers import lease_worker


@pytest.fixture
def proxy(redis_server):
    p = Proxy(redis_server.port)
    yield p
    p.close()


def test_proxy_forwards_delays_and_holds_traffic(proxy, real_redis):
    link = proxy.link("w")
    client = redis.Redis.from_url(link.url, socket_timeout=0.5)
    assert client.ping()
    link.set_latency(100)
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.18  # both directions delayed
    link.set_latency(0)
    link.hold()
    with pytest.raises(redis.TimeoutError):
        client.set("held", "1")
    assert real_redis.get("held") is None
    link.release()  # the held write is delivered late, as a slow network would
    deadline = time.monotonic() + 5
    while real_redis.get("held") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert real_redis.get("held") == "1"


def test_fencing_switch_needs_pytest_too(monkeypatch):
    monkeypatch.setenv("SLOTLOCK_TEST_DISABLE_FENCING", "1")
    assert lease_worker.fencing_disabled_for_test()  # we are under pytest
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert not lease_worker.fencing_disabled_for_test()
    monkeypatch.delenv("SLOTLOCK_TEST_DISABLE_FENCING")
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "x")
    assert not lease_worker.fencing_disabled_for_test()


def test_day_bounds_switch_needs_pytest_too(monkeypatch):
    monkeypatch.setenv("SLOTLOCK_TEST_DISABLE_DAY_BOUNDS", "1")
    assert lease_worker.day_bounds_disabled_for_test()
    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    assert not lease_worker.day_bounds_disabled_for_test()


def test_the_shipped_web_command_is_the_procfiles(tmp_path, monkeypatch):
    """``slotlock chaos`` from an installed package has no Procfile: it uses its copy."""
    command, where = cluster.procfile_web_command()
    assert where.endswith("Procfile") and command == cluster.PROCFILE_WEB
    monkeypatch.setattr(cluster, "SOURCE_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cluster.procfile_web_command() == (cluster.PROCFILE_WEB,
                                              "slotlock.chaos.cluster.PROCFILE_WEB")
    argv = cluster.procfile_web_argv(8123, 1)
    assert argv[1:3] == ["-m", "gunicorn"] and "127.0.0.1:8123" in argv
