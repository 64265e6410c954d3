"""Core bugs the fault harness found, each pinned by a test with real processes."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest

from slotlock.client import Client
from tests.conftest import make_settings, open_default
from tests.procs import Procs

pytestmark = pytest.mark.e2e

TTL_MS = 5000  # long, so that waiting for the lease's expiry cannot pass for a handover


@pytest.fixture
def setup(tmp_path, redis_server, real_redis):
    settings = make_settings(redis_url=redis_server.url, lease_ttl_ms=TTL_MS)
    procs = Procs(tmp_path, {"REDIS_URL": redis_server.url, "SLOTLOCK_LEASE_TTL_MS": str(TTL_MS),
                             "SLOTLOCK_IDLE_RELEASE_MS": "60000"})
    client = Client(settings)
    open_default(client.redis)
    yield procs, client
    procs.stop_all()


def test_sigterm_handover_does_not_wait_for_a_successor_that_already_tried(setup):
    """Found by the harness (SIGTERM failover p50 454 ms with a 1 s TTL): a worker that had
    tried the day while another held it ignored the releasing worker's wake-up until the
    old lease's expiry, so a rolling restart waited up to a whole TTL, not ~100 ms."""
    procs, client = setup
    a = procs.worker("wa")
    a.wait_log("started")
    assert client.book("u", "main", datetime(2031, 2, 1, 9), datetime(2031, 2, 1, 10),
                       "x").outcome["status"] == "accepted"
    b = procs.worker("wb", SLOTLOCK_LOG_LEVEL="DEBUG")  # the acquisition is logged at DEBUG
    b.wait_log("started")
    # b's sweep sees the day (it has work) held by a, fails to acquire and waits for expiry
    queued = client.book("u", "main", datetime(2031, 2, 1, 11), datetime(2031, 2, 1, 12), "y")
    assert queued.outcome["status"] == "accepted"
    time.sleep(0.5)
    sent = time.monotonic()
    a.send(signal.SIGTERM)
    assert a.wait(5) == 0
    result = client.book("u", "main", datetime(2031, 2, 1, 13), datetime(2031, 2, 1, 14), "z",
                         wait_ms=TTL_MS)
    handoff = time.monotonic() - sent
    assert result.outcome is not None and result.outcome["status"] == "accepted"
    b.wait_log("acquired main:2031-02-01")
    # before the fix: >= 3 s here (the rest of a's lease); generous for a loaded machine
    assert handoff < 1.5, f"successor answered {handoff * 1000:.0f} ms after SIGTERM"
