"""Fixtures shared by every layer: settings, a private redis-server, fakeredis."""

from __future__ import annotations

import os
from pathlib import Path

import fakeredis
import pytest
import redis

from slotlock.config import Settings
from slotlock.embedded import RedisServer

# The tests run in development (SLOTLOCK_ENV defaults to production, which needs a strong
# SECRET_KEY); every process they start inherits this. Production is tested explicitly.
os.environ["SLOTLOCK_ENV"] = "development"

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A redis-server of our own on a free loopback port (never the one on 6379)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), appendfsync="everysec")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def real_redis(redis_server) -> redis.Redis:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def fake_redis() -> redis.Redis:
    return fakeredis.FakeRedis(decode_responses=True)


@pytest.fixture(params=["fakeredis", "redis-server"])
def any_redis(request) -> redis.Redis:
    """Each Redis-side test runs twice: on fakeredis (with Lua) and on a real server."""
    if request.param == "fakeredis":
        return request.getfixturevalue("fake_redis")
    return request.getfixturevalue("real_redis")


def make_settings(**overrides) -> Settings:
    base = {"env": "development", "secret_key": "test", "redis_url": "redis://127.0.0.1:1/0", "worker_id": "test-worker"}
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def start_worker():
    """Start real lease workers in threads of this process; all are stopped (warm) after."""
    from tests.procs import WorkerThread

    started = []

    def start(settings):
        started.append(WorkerThread(settings).start())
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


def pytest_configure(config):
    os.environ.setdefault("SLOTLOCK_LOG_LEVEL", "INFO")


def open_default(client, timezone: str = "UTC"):
    """The default calendar ``main`` with no booking horizon, so tests can use fixed dates
    years ahead (past dates are refused to non-admins whatever the horizon)."""
    from dataclasses import replace

    from slotlock.catalog import Catalog

    catalog = Catalog(client)
    calendar, _ = catalog.ensure_default(timezone)
    stored, _ = catalog.put(calendar.with_changes(rules=replace(calendar.rules, horizon_days=0)))
    return stored
