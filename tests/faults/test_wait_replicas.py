"""SLOTLOCK_WAIT_REPLICAS: an outcome is told only once a replica holds it."""

from __future__ import annotations

import signal
import threading
from datetime import datetime

import pytest
import redis

from slotlock.client import Client
from slotlock.days.keys import DayKeys
from slotlock.embedded import RedisServer
from slotlock.workers.lease_worker import LeaseWorker
from tests.conftest import make_settings, open_default
from tests.procs import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def primary_and_replica(tmp_path):
    primary = RedisServer(tmp_path / "primary", appendfsync="always").start()
    replica = RedisServer(tmp_path / "replica", extra=["--replicaof", "127.0.0.1",
                                                        str(primary.port)]).start()
    check = redis.Redis.from_url(replica.url)
    wait_for(lambda: check.info("replication").get("master_link_status") == "up", 10, 0.05,
             what="the replica to sync")
    yield primary, replica
    replica.process.send_signal(signal.SIGCONT)
    replica.stop()
    primary.stop()


@pytest.fixture
def waiting_client(primary_and_replica):
    """A client that waits for one replica (300 ms at most), a lease worker on the primary."""
    primary, replica = primary_and_replica
    settings = make_settings(redis_url=primary.url, wait_replicas=1,
                             wait_replicas_timeout_ms=300, reply_timeout_ms=3000)
    client = Client(settings)
    open_default(client.redis)
    worker = LeaseWorker(make_settings(redis_url=primary.url, worker_id="wr"))
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        yield client, replica
    finally:
        worker.request_stop()
        thread.join(10)


def test_outcomes_wait_for_the_replica(waiting_client):
    client, replica = waiting_client
    told = client.book("u", "main", datetime(2031, 1, 1, 9), datetime(2031, 1, 1, 10), "a")
    assert told.outcome["status"] == "accepted"  # replica attached: told at once
    replica_client = redis.Redis.from_url(replica.url, decode_responses=True)
    assert replica_client.hget(DayKeys.of("main", datetime(2031, 1, 1).date()).done,
                               told.command_id)

    replica.process.send_signal(signal.SIGSTOP)  # the replica stops acknowledging
    held = client.book("u", "main", datetime(2031, 1, 1, 11), datetime(2031, 1, 1, 12), "b")
    assert held.outcome is None  # decided on the primary, but not told: 202 / pending
    assert client.status(held.command_id)["status"] == "pending"
    keys = DayKeys.of("main", datetime(2031, 1, 1).date())
    assert client.store.outcome(keys, held.command_id)  # the primary has decided it

    replica.process.send_signal(signal.SIGCONT)
    wait_for(lambda: client.status(held.command_id)["status"] == "accepted", 10, 0.05,
             what="the outcome once the replica caught up")


def test_the_barrier_is_written_on_the_days_own_slot(waiting_client):
    """The barrier before WAIT is a key of the day's slot (issue 12: no global key on the
    booking path; on a Redis Cluster the WAIT must follow a write on the day's node), with
    a TTL so that it leaves nothing behind."""
    client, _replica = waiting_client
    told = client.book("u", "main", datetime(2031, 1, 2, 9), datetime(2031, 1, 2, 10), "a")
    assert told.outcome["status"] == "accepted"
    keys = DayKeys.of("main", datetime(2031, 1, 2).date())
    assert client.redis.exists(keys.barrier)
    assert 0 < client.redis.pttl(keys.barrier) <= 60_000
    assert not client.redis.exists("sl:replication-barrier")
    assert client.status(told.command_id)["status"] == "accepted"
