"""A lease worker watching the days it holds (workers/wakeups.py), against a real redis-server:
new commands come back with the read that waits for them, no command is missed, and a
rules change reaches a held day within the documented bound."""

import time
from dataclasses import replace
from datetime import date, datetime

import pytest

from slotlock.catalog import Catalog
from slotlock.client import Client
from tests.conftest import make_settings, open_default
from tests.procs import WorkerThread

DAY = date(2030, 12, 4)


def at(h, m=0):
    return datetime(DAY.year, DAY.month, DAY.day, h, m)


@pytest.fixture
def settings(redis_server, real_redis):
    real_redis.flushall()
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=1000, idle_release_ms=60_000,
                         reply_timeout_ms=3000)


@pytest.fixture
def client(settings):
    open_default(Client(settings).redis)
    return Client(settings)


def test_commands_on_a_held_day_are_decided_from_the_watching_read(settings, client):
    with WorkerThread(settings) as worker:
        outcomes = [client.book("alice", "main", at(8 + i), at(9 + i), f"b{i}").outcome
                    for i in range(8)]
    # the first command finds the day fresh; its successors come back with the read that
    # waits on the held day's stream, or are read again for a calendar older than the bound
    stats = dict(worker.stats)  # read once the worker stopped (it counts after its commit)
    assert [o["status"] for o in outcomes] == ["accepted"] * 8
    assert stats["commands"] == 8
    assert stats.get("prefetched_batches", 0) + stats.get("calendar_rereads", 0) >= 6
    assert stats.get("prefetched_batches", 0) >= 1


def test_no_command_is_missed_while_the_day_is_held(settings, client):
    """Commands queued without waiting, in bursts, while the worker holds the day and
    drops the wake-ups that name it: every one is decided."""
    with WorkerThread(settings):
        client.book("alice", "main", at(6), at(7), "first")
        ids = []
        for burst in range(5):
            for i in range(4):
                hour = 8 + (burst * 4 + i) % 14
                ids.append(client.book(f"u{burst}{i}", "main", at(hour), at(hour, 15), "x",
                                       wait_ms=0).command_id)
            time.sleep(0.02)
        outcomes = [client.wait(cid, 3000) for cid in ids]
    assert all(o["status"] in ("accepted", "rejected") for o in outcomes), outcomes


def test_a_rules_change_applies_at_once_to_a_held_day(settings, client):
    """The held day is watched, not read, between commands: the change must reach it
    through the calendar's change stream before the next command is decided."""
    catalog = Catalog(client.redis)
    with WorkerThread(settings) as worker:
        for i in range(6):
            assert client.book("alice", "main", at(2 + i), at(2 + i, 15),
                               "held").outcome["status"] == "accepted"
        for length in (30, 45, 15, 60):
            calendar = catalog.get("main")
            changed, _ = catalog.put(calendar.with_changes(
                rules=replace(calendar.rules, max_length_minutes=length)))
            outcome = client.book("bob", "main", at(10), at(11), "an hour").outcome
            assert outcome["rules_revision"] == changed.revision, outcome
            assert outcome["status"] == ("accepted" if length == 60 else "rejected"), outcome
    assert worker.stats["calendar_rereads"] >= 3
    assert worker.stats["prefetched_batches"] >= 3
