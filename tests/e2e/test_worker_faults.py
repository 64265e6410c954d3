"""Guarantees G3-G6 with real `slotlock worker` processes and a real redis-server."""

from __future__ import annotations

import json
import random
import signal
import time
from datetime import date, datetime, timedelta

from slotlock.days.keys import WORKERS, DayKeys
from slotlock.days.lease import parse_lease
from tests.checks import check_day
from tests.procs import wait_for

DAY = date(2030, 12, 1)
PART = f"main:{DAY.isoformat()}"
KEYS = DayKeys(PART)


def random_books(client, n, seed, wait_ms=0):
    rng = random.Random(seed)
    ids = []
    for _ in range(n):
        slot = rng.randrange(0, 96)
        start = datetime(2030, 12, 1) + timedelta(minutes=15 * slot)
        length = timedelta(minutes=15 * rng.randint(1, 4))
        end = min(start + length, datetime(2030, 12, 2))
        ids.append(client.book(f"user{rng.randrange(5)}", "main", start, end, "t",
                               wait_ms=wait_ms).command_id)
    return ids


def all_settled(client, ids):
    return all((client.status(i) or {}).get("status") in ("accepted", "rejected") for i in ids)


def holder_name(client):
    value = client.redis.get(KEYS.lease)
    return parse_lease(value)[1] if value else None


def test_sigkill_of_the_holder_loses_and_duplicates_nothing(procs, client, e2e_settings):
    a = procs.worker("wa", SLOTLOCK_LOG_LEVEL="DEBUG")  # acquisitions are logged at DEBUG
    b = procs.worker("wb", SLOTLOCK_LOG_LEVEL="DEBUG")
    a.wait_log("started")
    b.wait_log("started")
    ids = random_books(client, 150, seed=1)
    name = wait_for(lambda: holder_name(client), 5, what="a lease holder")
    victim, survivor = (a, b) if name == "wa" else (b, a)
    killed_at = time.monotonic()
    victim.send(signal.SIGKILL)
    victim.wait(5)
    ids += random_books(client, 150, seed=2)
    wait_for(lambda: all_settled(client, ids), 20, 0.05, "every command settled")
    took_over = time.monotonic() - killed_at
    counts = check_day(client.redis, PART)
    assert counts["applied"] == counts["entries"] == 300
    survivor.wait_log(r"acquired main:2030-12-01 with token \d+")
    # takeover needs the lease TTL to lapse (no clean release): bounded by TTL + polling
    assert took_over < e2e_settings.lease_ttl_ms / 1000 + 10
    assert len(counts["tokens"]) >= 2


def test_sigterm_hands_the_day_over_at_once(procs, client):
    # A long TTL: a successor that had to wait for expiry would need 5 s.
    a = procs.worker("wa", SLOTLOCK_LEASE_TTL_MS=5000)
    a.wait_log("started")
    assert client.book("u", "main", datetime(2030, 12, 1, 9), datetime(2030, 12, 1, 10),
                       "x").outcome["status"] == "accepted"
    b = procs.worker("wb", SLOTLOCK_LEASE_TTL_MS=5000)
    b.wait_log("started")
    ids = random_books(client, 50, seed=3)
    sent = time.monotonic()
    a.send(signal.SIGTERM)
    assert a.wait(5) == 0
    exited = time.monotonic() - sent
    assert exited < 1.0, f"worker took {exited:.3f}s to stop"
    assert "stopped" in a.log()
    result = client.book("u", "main", datetime(2030, 12, 1, 22), datetime(2030, 12, 1, 23), "y")
    handoff = time.monotonic() - sent
    assert result.outcome is not None
    # far under the lease TTL: the lease was released and B woken, not left to expire
    assert handoff < 2.5, f"successor answered {handoff * 1000:.0f} ms after SIGTERM"
    wait_for(lambda: all_settled(client, ids), 10, 0.05, "every command settled")
    counts = check_day(client.redis, PART)
    assert counts["applied"] == counts["entries"] == 52
    assert holder_name(client) == "wb"


def test_second_sigterm_stops_at_once_and_loses_nothing(procs, client):
    a = procs.worker("wa", SLOTLOCK_FAILPOINT="sleep_before_commit:1")
    a.wait_log("started")
    queued = client.book("u", "main", datetime(2030, 12, 1, 9), datetime(2030, 12, 1, 10), "x",
                         wait_ms=0)
    a.wait_log("FAILPOINT sleep_before_commit")
    a.send(signal.SIGTERM)
    a.wait_log("finishing the batch in hand")
    sent = time.monotonic()
    a.send(signal.SIGTERM)
    assert a.wait(5) == 1
    assert time.monotonic() - sent < 1.0
    assert "cold stop" in a.log() and "FAILPOINT resumed" not in a.log()
    # takes the day once the abandoned lease lapses (acquisitions are logged at DEBUG)
    b = procs.worker("wb", SLOTLOCK_LOG_LEVEL="DEBUG")
    assert client.wait(queued.command_id, 5000)["status"] == "accepted"
    assert check_day(client.redis, PART)["applied"] == 1
    b.wait_log("acquired main:2030-12-01 with token 2")


def test_paused_holder_past_its_ttl_cannot_commit(procs, client, e2e_settings):
    """G4: the stale writer is certain, not lucky: the failpoint stops the worker mid-batch."""
    a = procs.worker("wa", SLOTLOCK_FAILPOINT="stop_before_commit:1")
    a.wait_log("started")
    ids = random_books(client, 40, seed=4)
    wait_for(lambda: a.state() == "T", 5, what="worker A stopped between decide and commit")
    a.wait_log("FAILPOINT stop_before_commit: main:2030-12-01 token 1")
    time.sleep(e2e_settings.lease_ttl_ms / 1000 * 1.5)  # A's lease lapses while it is paused
    assert client.redis.get(KEYS.lease) is None
    b = procs.worker("wb", SLOTLOCK_LOG_LEVEL="DEBUG")  # acquisitions are logged at DEBUG
    wait_for(lambda: all_settled(client, ids), 10, 0.05, "B settled every command")
    b.wait_log("acquired main:2030-12-01 with token 2")
    before = check_day(client.redis, PART)
    assert before["tokens"] == [2]

    a.send(signal.SIGCONT)  # A wakes up holding a decided batch under token 1
    a.wait_log("FAILPOINT resumed: committing main:2030-12-01 with token 1")
    a.wait_log(r"FENCED: commit refused.*token 1")
    after = check_day(client.redis, PART)
    assert after == before, "the stale commit changed something"
    assert after["applied"] == 40
    outcomes = client.redis.hgetall(KEYS.done)
    assert len(outcomes) == 40 and all(outcomes.values())
    # A reports the refusal in its counters too, and both go on working correctly
    wait_for(lambda: json.loads(client.redis.hget(WORKERS, "wa") or "{}").get(
        "stats", {}).get("fence_refusals") == 1, 5, what="A's fence_refusals counter")
    more = random_books(client, 20, seed=5)
    wait_for(lambda: all_settled(client, more), 10, 0.05, "later commands settled")
    final = check_day(client.redis, PART)
    assert final["applied"] == 60
    a.send(signal.SIGTERM)
    assert a.wait(5) == 0
    assert "fence_refusals=1" in a.log()
