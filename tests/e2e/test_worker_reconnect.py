"""Workers survive dropped connections and a Redis restart, and lose nothing."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta

import pytest
import redis

from slotlock.client import Client
from slotlock.embedded import RedisServer
from tests.checks import check_day
from tests.conftest import make_settings, open_default
from tests.procs import Procs, wait_for

DAY = date(2030, 12, 3)
PART = f"main:{DAY.isoformat()}"


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture
def setup(tmp_path, own_redis):
    settings = make_settings(redis_url=own_redis.url, lease_ttl_ms=600)
    procs = Procs(tmp_path, {"REDIS_URL": own_redis.url, "SLOTLOCK_LEASE_TTL_MS": "600"})
    client = Client(settings)
    open_default(client.redis)
    yield procs, client
    procs.stop_all()


def book(client, slot, wait_ms=3000, key=None):
    start = datetime(2030, 12, 3) + timedelta(minutes=15 * slot)
    return client.book("u", "main", start, start + timedelta(minutes=15), f"s{slot}",
                       wait_ms=wait_ms, idempotency_key=key)


def test_worker_survives_killed_connections(setup):
    procs, client = setup
    worker = procs.worker("wa")
    worker.wait_log("started")
    assert book(client, 0).outcome["status"] == "accepted"
    for round_ in range(3):
        killed = client.redis.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        result = book(client, round_ + 1, wait_ms=5000)
        assert result.outcome and result.outcome["status"] == "accepted"
    assert worker.proc.poll() is None
    assert check_day(client.redis, PART)["accepted"] == 4


def test_worker_survives_a_redis_restart_and_keeps_what_was_acknowledged(setup, own_redis):
    procs, client = setup
    worker = procs.worker("wa")
    worker.wait_log("started")
    acknowledged = [book(client, s).outcome["booking"]["id"] for s in range(5)]
    own_redis.kill()  # crash, not a clean shutdown; appendfsync always keeps every ack
    time.sleep(0.5)
    own_redis.start()
    worker.wait_log("redis error")
    client = Client(client.settings)  # fresh pools: the old sockets died with the server
    result = wait_for(lambda: _try_book(client, 10), 15, 0.2, "a booking after the restart")
    assert result.outcome["status"] == "accepted"
    bookings = {b["id"] for b in client.read_day("main", DAY).bookings}
    assert set(acknowledged) <= bookings
    assert worker.proc.poll() is None, "the worker must survive the restart"
    check_day(client.redis, PART)


def _try_book(client, slot):
    try:
        result = book(client, slot, wait_ms=2000, key=f"retry-{slot}")  # retries are safe
    except (redis.ConnectionError, redis.TimeoutError):
        return None
    return result if result.outcome else None
