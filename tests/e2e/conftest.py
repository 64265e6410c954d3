"""End-to-end fixtures: a private redis-server, real worker processes, a client."""

from __future__ import annotations

import pytest

from slotlock.client import Client
from tests.checks import audit_after_test  # noqa: F401 (autouse: audit every day after a test)
from tests.conftest import make_settings, open_default
from tests.procs import Procs

pytestmark = pytest.mark.e2e


@pytest.fixture
def e2e_settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=600, reply_timeout_ms=5000)


@pytest.fixture
def procs(tmp_path, e2e_settings):
    env = {"REDIS_URL": e2e_settings.redis_url,
           "SLOTLOCK_LEASE_TTL_MS": str(e2e_settings.lease_ttl_ms),
           "SLOTLOCK_IDLE_RELEASE_MS": "60000"}
    started = Procs(tmp_path, env)
    yield started
    started.stop_all()


@pytest.fixture
def client(e2e_settings):
    c = Client(e2e_settings)
    open_default(c.redis)
    return c
