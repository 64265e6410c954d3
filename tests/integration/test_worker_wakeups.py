"""A lease worker watching the days it holds (workers/wakeups.py), against a real redis-server:
new commands come back with the read that waits for them, no command is missed, and a
rules change reaches a held day within the documented bound."""

import json
import signal
import time
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.days.keys import calendar_changes_key, calendar_key, calendar_revisions_key
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


@pytest.mark.parametrize("watch_max, watch_s", [(1, 1.0), (64, 0.02)])
def test_days_that_stop_being_watched_miss_nothing(settings, client, monkeypatch, watch_max,
                                                   watch_s):
    """More held days than a read watches, or days that went cold: their commands are
    decided by the read that watches them, or by a batch that reads them. The sweep (the
    safety net for wake-ups lost to the stream's cap) is off: the wake-ups must do it."""
    from slotlock.workers import wakeups

    monkeypatch.setattr(wakeups, "WATCH_MAX", watch_max)
    monkeypatch.setattr(wakeups, "WATCH_S", watch_s)
    days = [date(2030, 12, d) for d in range(5, 10)]
    thread = WorkerThread(settings)
    thread.worker.sweep = lambda now: None
    with thread as worker:
        ids = []
        for round_ in range(6):
            for i, day in enumerate(days):
                start = datetime(day.year, day.month, day.day, 8 + round_, 15 * (i % 3))
                ids.append(client.book(f"u{i}", "main", start, start + timedelta(minutes=15),
                                       "x", wait_ms=0).command_id)
            time.sleep(0.03 * (round_ % 3))
        started = time.monotonic()
        outcomes = [client.wait(cid, 3000) for cid in ids]
        waited = time.monotonic() - started
    assert [o["status"] for o in outcomes] == ["accepted"] * len(ids), outcomes
    assert waited < 2.0  # decided by reads, not by the idle release (60 s here)
    assert len(worker.wakeups.watching) <= watch_max


def test_a_day_that_stops_being_watched_owing_a_wakeup_is_read_again(real_redis):
    """The bookkeeping behind dropping wake-ups of watched days, step by step."""
    from collections import Counter

    from slotlock.days.index import WorkIndex
    from slotlock.days.scripts import Scripts
    from slotlock.workers.leases import LeaseBook
    from slotlock.workers.wakeups import Wakeups

    real_redis.flushall()
    scripts = Scripts(real_redis)
    index = WorkIndex(real_redis, scripts)
    leases = LeaseBook(real_redis, scripts, "w1", 5000, 1000, Counter())
    part = "main:2030-12-05"
    assert leases.try_acquire(part)
    owned = leases.owned[part]
    owned.day, owned.dirty = object(), False  # its state is known (only that matters here)
    wakeups = Wakeups(real_redis, real_redis, index, leases, 256, stopping=lambda: False)
    leases.worked(owned, time.monotonic())
    wakeups.read(None)
    assert wakeups.watching == set()  # one batch: not watched (a fresh day per request)
    leases.worked(owned, time.monotonic())
    wakeups.read(None)
    assert wakeups.watching == {part}  # two: hot
    index.wake([part])  # a command came: its wake-up is read with a commit
    pipe = real_redis.pipeline(transaction=False)
    wakeups.queue(pipe)
    wakeups.took(pipe.execute()[0])
    assert not owned.dirty and owned.wake_owed  # dropped: the next watching read covers it
    owned.last_work -= 60  # but the day goes cold before that read
    wakeups.read(None)
    assert wakeups.watching == set()
    assert owned.dirty  # so its next batch reads it: the command is not missed
    owned.dirty = False
    index.wake([part])  # a wake-up of a held day nobody watches marks it dirty
    wakeups.read(None)
    assert owned.dirty


def test_days_commit_together_and_a_failing_day_leaves_the_others_be(settings, client,
                                                                     real_redis):
    """Commands queued on three days before the worker starts: it takes the three days,
    decides them, and commits them in one round trip; one day's commit script fails
    (a key of the wrong type), and only that day is let go of."""
    from slotlock.days.keys import DayKeys

    days = [date(2030, 12, d) for d in (10, 11, 12)]
    ids = [client.book("ann", "main", datetime(d.year, d.month, d.day, 9),
                       datetime(d.year, d.month, d.day, 10), "x", wait_ms=0).command_id
           for d in days]
    bad = DayKeys.of("main", days[0])
    real_redis.set(bad.tokens, "not a list")  # commit.lua's LINDEX fails: WRONGTYPE
    with WorkerThread(settings) as worker:
        outcomes = [client.wait(cid, 3000) for cid in ids[1:]]
    assert [o["status"] for o in outcomes] == ["accepted", "accepted"]
    assert worker.stats["multi_day_commits"] >= 1
    assert worker.stats["day_errors"] == 1
    assert not real_redis.hget(bad.done, ids[0])  # no outcome: nothing of that day written
    assert client.status(ids[0])["status"] == "pending"


def test_a_day_read_again_from_its_state_decides_under_the_rules_of_its_commands(
        settings, client):
    """A held day whose cached state was lost (a cursor refusal, a Redis error) is read
    again: its state first, then, its cursor being past the start, its commands. A rules
    change and a command that arrive between the two reads: the command must be decided
    under the new rules (found by review: the second read took no calendar)."""
    from slotlock.workers.lease_worker import LeaseWorker

    catalog = Catalog(client.redis)
    first = client.book("ann", "main", at(8), at(9), "first", wait_ms=0).command_id
    worker = LeaseWorker(settings)
    part = f"main:{DAY.isoformat()}"
    assert worker.leases.try_acquire(part)
    owned = worker.owned[part]
    assert worker.batches.process(part, owned) == 1
    assert client.wait(first, 1000)["status"] == "accepted"
    owned.day, owned.prefetched, owned.dirty = None, None, True  # the cached state is lost

    load, calls = worker.batches._load, []
    changed = {}

    def load_then_change(*args):
        entries = load(*args)
        if not calls:  # between the state read and the commands read
            calendar = catalog.get("main")
            changed["calendar"], _ = catalog.put(calendar.with_changes(
                rules=replace(calendar.rules, max_length_minutes=30)))
            changed["id"] = client.book("bob", "main", at(10), at(11), "an hour",
                                        wait_ms=0).command_id
        calls.append(1)
        return entries

    worker.batches._load = load_then_change
    assert worker.batches.process(part, owned) == 1
    outcome = client.wait(changed["id"], 1000)
    assert outcome["rules_revision"] == changed["calendar"].revision, outcome
    assert outcome["status"] == "rejected", outcome
    worker.leases.release_all()


def test_free_days_are_taken_with_their_reads_and_a_held_one_is_left_alone(
        settings, client, real_redis):
    """Five days with a queued command, one of them held by another worker: one round trip
    (up to ``ACQUIRE_CHUNK`` days) takes each free one with its calendar, state and
    command; the held one is tried again once its lease would lapse."""
    from slotlock.workers.leases import ACQUIRE_CHUNK
    from slotlock.days.keys import DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    days = [date(2030, 12, d) for d in (20, 21, 22, 23, 24)]
    ids = [client.book("ann", "main", datetime(d.year, d.month, d.day, 9),
                       datetime(d.year, d.month, d.day, 10), "x", wait_ms=0).command_id
           for d in days]
    held = DayKeys.of("main", days[0])
    real_redis.set(held.lease, "7:other:abc", px=60_000)
    worker = LeaseWorker(settings)
    pipelines = []
    run_pipeline = worker.scripts.run_pipeline

    def counted(build, **kwargs):
        pipelines.append(build)
        return run_pipeline(build, **kwargs)

    worker.scripts.run_pipeline = counted
    worker.sweep(time.monotonic())
    assert len(pipelines) == -(-5 // ACQUIRE_CHUNK)
    assert sorted(worker.owned) == sorted(DayKeys.of("main", d).part for d in days[1:])
    assert worker.retry_at[held.part] > time.monotonic() + 50  # after the other's lease
    assert all(o.prefetched and len(o.prefetched[1]) == 1 for o in worker.owned.values())
    assert worker.process_days()
    assert [client.wait(cid, 1000)["status"] for cid in ids[1:]] == ["accepted"] * 4
    assert client.status(ids[0])["status"] == "pending"
    worker.shutdown()


def _queue_days(client, days):
    return [client.book("ann", "main", datetime(d.year, d.month, d.day, 9),
                        datetime(d.year, d.month, d.day, 10), "x", wait_ms=0).command_id
            for d in days]


def test_one_days_failing_acquisition_leaves_the_others_taken(settings, client, real_redis):
    """A day whose acquisition script fails (here: its lease key holds the wrong type) is
    tried again later; the other days of the same round trip are taken with their reads."""
    from slotlock.days.keys import DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    days = [date(2030, 12, d) for d in (20, 21, 22)]
    ids = _queue_days(client, days)
    broken = DayKeys.of("main", days[0])
    real_redis.rpush(broken.lease, "not a lease")
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert sorted(worker.owned) == sorted(DayKeys.of("main", d).part for d in days[1:])
    assert worker.retry_at[broken.part] > time.monotonic()
    assert worker.stats["acquire_errors"] == 1
    assert worker.process_days()
    assert [client.wait(cid, 1000)["status"] for cid in ids[1:]] == ["accepted"] * 2
    worker.shutdown()


def test_a_rules_change_across_an_acquisition_makes_the_day_read_again(settings, client,
                                                                        real_redis):
    """The calendar's change stream moved between the calendar read and the acquisition's
    read of the commands (other clients' commands may run between those of a pipeline):
    the first read is dropped and the command is decided under the new rules."""
    from slotlock.workers.lease_worker import LeaseWorker

    worker = LeaseWorker(settings)
    catalog = Catalog(real_redis)
    cid = client.book("ann", "main", at(10), at(11), "an hour", wait_ms=0).command_id
    queue_first_reads = worker.batches.queue_first_reads
    changed = {}

    def change_between(pipe, parts, acquire):
        def change_then_acquire(pipe, part):
            # what another client's Catalog.put could run between the calendar's read and
            # the acquisition (queued here so that it runs exactly there)
            calendar = catalog.find("main")
            new = calendar.with_changes(rules=replace(calendar.rules, max_length_minutes=30),
                                        revision=calendar.revision + 1)
            data = json.dumps(new.to_dict(), sort_keys=True)
            pipe.set(calendar_key("main"), data)
            pipe.hset(calendar_revisions_key("main"), str(new.revision), data)
            pipe.xadd(calendar_changes_key("main"), {"r": new.revision})
            changed["calendar"] = new
            return acquire(pipe, part)

        return queue_first_reads(pipe, parts, change_then_acquire)

    worker.batches.queue_first_reads = change_between
    worker.sweep(time.monotonic())
    (owned,) = worker.owned.values()
    assert owned.prefetched is None and owned.day is None and owned.dirty
    assert worker.stats["calendar_rereads"] == 1
    assert worker.process_days()
    outcome = client.wait(cid, 1000)
    assert outcome["status"] == "rejected", outcome
    assert outcome["rules_revision"] == changed["calendar"].revision
    worker.shutdown()


def test_a_drained_day_leaves_the_index_and_comes_back_with_its_next_command(
        settings, client, real_redis):
    """After the commit that decides every command queued when its score was read, a held
    day leaves the index of days with work with the next round trip (here: the next day's
    commit); a command that comes between the read and the commit keeps it there, and one
    after puts it back: nothing is missed either way."""
    from slotlock.days.keys import ACTIVE, DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    part = DayKeys.of("main", DAY).part
    other = DAY + timedelta(days=1)
    worker = LeaseWorker(settings)
    first = client.book("ann", "main", at(8), at(9), "x", wait_ms=0).command_id
    worker.sweep(time.monotonic())
    assert worker.process_days()
    assert client.wait(first, 1000)["status"] == "accepted"
    assert real_redis.zscore(ACTIVE, part) is not None  # drained; leaves with the next round trip
    next_day = client.book("ann", "main", datetime.combine(other, datetime.min.time()),
                           datetime.combine(other, datetime.min.time()) + timedelta(hours=1),
                           "x", wait_ms=0).command_id
    worker.sweep(time.monotonic())
    assert worker.process_days()  # the other day's commit carries the removal
    assert client.wait(next_day, 1000)["status"] == "accepted"
    assert real_redis.zscore(ACTIVE, part) is None
    assert worker.stats["unindexed"] == 1

    # a command between the read and the commit: the score moved, the day stays indexed
    second = client.book("ann", "main", at(9), at(10), "x", wait_ms=0).command_id
    owned = worker.owned[part]
    owned.dirty = True  # as a wake-up marks it: the batch reads the day, its score first
    decide = worker.batches.decide
    late = {}

    def decide_then_submit(p, o):
        decided = decide(p, o)
        if p == part and "id" not in late:
            late["id"] = client.book("ann", "main", at(10), at(11), "x",
                                     wait_ms=0).command_id
        return decided

    worker.batches.decide = decide_then_submit
    assert worker.process_days()
    worker.batches.decide = decide
    assert part in worker.batches.drained.pending
    worker.maintain()  # no commit follows: the maintenance pass carries the removal
    assert not worker.batches.drained.pending
    assert real_redis.zscore(ACTIVE, part) is not None  # refused: the score moved
    assert client.status(late["id"])["status"] == "pending"
    worker.wait_for_work()  # the read that watches the held day brings the late command
    assert worker.process_days()
    assert [client.wait(c, 1000)["status"] for c in (second, late["id"])] == ["accepted"] * 2
    worker.shutdown()


def test_a_drained_day_stays_indexed_once_its_lease_may_have_lapsed(settings, client,
                                                                     real_redis):
    """A removal is sent only under the grant that drained the day, well before that lease
    may lapse: after it, another worker may have taken the day out and a new command put it
    back with the same score, which a late removal would then take out."""
    from slotlock.days.keys import ACTIVE, DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    part = DayKeys.of("main", DAY).part
    worker = LeaseWorker(settings)
    client.book("ann", "main", at(8), at(9), "x", wait_ms=0)
    worker.sweep(time.monotonic())
    assert worker.process_days()
    worker.owned[part].lease.expires_at = time.monotonic() + 0.01  # about to lapse
    worker.batches.drained.flush()
    assert real_redis.zscore(ACTIVE, part) == 1.0
    assert worker.stats["unindex_skipped"] == 1

    client.book("ann", "main", at(9), at(10), "x", wait_ms=0)
    worker.owned[part].lease.expires_at = time.monotonic() + 60
    worker.sweep(time.monotonic())
    assert worker.process_days()
    worker.leases.drop(part)  # lost (e.g. a renewal refused) before the removal went
    real_redis.delete(DayKeys(part).lease)  # it lapsed
    worker.sweep(time.monotonic())  # and the day is taken again: a new grant
    assert part in worker.owned and worker.owned[part].lease.held
    worker.batches.drained.flush()
    assert real_redis.zscore(ACTIVE, part) == 2.0
    assert worker.stats["unindex_skipped"] == 2
    worker.shutdown()


def test_a_signal_cuts_only_the_blocking_wait_short(settings, client, monkeypatch):
    """SIGTERM raises into the worker only while it blocks on its read: the acquisitions
    that read's reply causes are never cut in the middle (a grant would be lost)."""
    from slotlock.workers.lease_worker import LeaseWorker, _Wake

    worker = LeaseWorker(settings)
    worker.wakeups.wake_id = "0-0"
    client.book("ann", "main", at(8), at(9), "x", wait_ms=0)
    waiting = []
    try_acquire_many = worker.leases.try_acquire_many

    def record(parts, now=None):
        waiting.append(worker._waiting)
        return try_acquire_many(parts, now)

    monkeypatch.setattr(worker.leases, "try_acquire_many", record)
    worker.wait_for_work()
    assert waiting == [False]
    assert len(worker.owned) == 1

    # and the wait itself is still cut short
    fetch = worker.wakeups.fetch

    def signalled(streams, block_ms):
        assert worker._waiting
        worker._on_signal(signal.SIGTERM, None)
        return fetch(streams, block_ms)

    monkeypatch.setattr(worker.wakeups, "fetch", signalled)
    with pytest.raises(_Wake):
        worker.wait_for_work()
    assert worker._stop == "warm" and not worker._waiting
    worker.shutdown()


def test_an_idle_day_is_let_go_of_only_with_nothing_after_its_cursor(settings, client,
                                                                      real_redis):
    """The idle release checks for commands and releases in one script: a day with a
    command after the holder's cursor is kept (and read), one whose lease is no longer
    ours is dropped, one with nothing is released and taken out of the index."""
    from slotlock.days.keys import ACTIVE, DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    days = [DAY + timedelta(days=i) for i in range(3)]
    parts = [DayKeys.of("main", d).part for d in days]
    for d in days:
        start = datetime.combine(d, datetime.min.time())
        client.book("ann", "main", start, start + timedelta(hours=1), "x", wait_ms=0)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert worker.process_days()
    worker.batches.drained.pending.clear()  # as if no round trip carried the removals: still indexed
    start = datetime.combine(days[0], datetime.min.time()) + timedelta(hours=2)
    late = client.book("ann", "main", start, start + timedelta(hours=1), "x",
                       wait_ms=0).command_id
    real_redis.set(DayKeys(parts[1]).lease, "99:someone:else", px=60_000)
    worker.maintenance.release_idle(time.monotonic() + 3600)
    assert sorted(worker.owned) == [parts[0]] and worker.owned[parts[0]].dirty
    assert worker.stats["leases_lost"] == 1 and worker.stats["released"] == 1
    assert real_redis.get(DayKeys(parts[2]).lease) is None
    assert real_redis.zscore(ACTIVE, parts[2]) is None
    assert real_redis.zscore(ACTIVE, parts[0]) is not None
    assert real_redis.get(DayKeys(parts[1]).lease) == "99:someone:else"  # left alone
    assert worker.process_days()
    assert client.wait(late, 1000)["status"] == "accepted"
    worker.shutdown()


def test_an_idle_release_keeps_a_day_whose_command_comes_during_it(settings, client,
                                                                    real_redis):
    """A command appended between the idle release's read of the index score and its
    removal and release: the score moved, so the day stays in the index; the release
    script sees the command, so the lease is kept and the day read."""
    from slotlock.days.keys import ACTIVE, DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    part = DayKeys.of("main", DAY).part
    client.book("ann", "main", at(8), at(9), "x", wait_ms=0)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert worker.process_days()
    worker.batches.drained.pending.clear()  # still indexed
    run_pipeline = worker.scripts.run_pipeline
    calls, late = [], {}

    def command_before_second(build, **kwargs):
        calls.append(build)
        if len(calls) == 2:
            late["id"] = client.book("ann", "main", at(9), at(10), "x", wait_ms=0).command_id
        return run_pipeline(build, **kwargs)

    worker.scripts.run_pipeline = command_before_second
    worker.maintenance.release_idle(time.monotonic() + 3600)
    worker.scripts.run_pipeline = run_pipeline
    assert len(calls) == 2
    assert part in worker.owned and worker.owned[part].dirty
    assert real_redis.zscore(ACTIVE, part) is not None
    assert worker.process_days()
    assert client.wait(late["id"], 1000)["status"] == "accepted"
    worker.shutdown()


def test_acquisitions_of_two_calendars_drop_only_the_changed_calendars_reads(
        settings, client, real_redis):
    """One round trip takes days of two calendars, each calendar read once; a rules change
    of one of them across the acquisitions drops only its days' reads, and every command
    is decided under the rules of its calendar. The calendars are parsed once each."""
    from slotlock.days.keys import DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    catalog = Catalog(real_redis)
    main = catalog.find("main")
    catalog.put(main.with_changes(id="other", name="Other"))
    days = [DAY, DAY + timedelta(days=1)]
    ids = {}
    for calendar_id in ("main", "other"):
        for d in days:
            start = datetime.combine(d, datetime.min.time()) + timedelta(hours=10)
            ids[DayKeys.of(calendar_id, d).part] = client.book(
                "ann", calendar_id, start, start + timedelta(hours=1), "an hour",
                wait_ms=0).command_id
    worker = LeaseWorker(settings)
    pipelines = []
    queue_first_reads = worker.batches.queue_first_reads

    def change_other(pipe, parts, acquire):
        pipelines.append(parts)

        def change_then_acquire(pipe, part):
            if part == parts[-1]:  # after the calendar reads, before this acquisition
                other = catalog.find("other")
                new = other.with_changes(
                    rules=replace(other.rules, max_length_minutes=30),
                    revision=other.revision + 1)
                data = json.dumps(new.to_dict(), sort_keys=True)
                pipe.set(calendar_key("other"), data)
                pipe.hset(calendar_revisions_key("other"), str(new.revision), data)
                pipe.xadd(calendar_changes_key("other"), {"r": new.revision})
            return acquire(pipe, part)

        return queue_first_reads(pipe, parts, change_then_acquire)

    worker.batches.queue_first_reads = change_other
    parsed = []
    calendar = worker.batches._calendar
    worker.batches._calendar = lambda raw: parsed.append(raw) or calendar(raw)
    worker.sweep(time.monotonic())
    assert len(pipelines) == 1 and len(pipelines[0]) == 4
    for part, owned in worker.owned.items():
        if part.startswith("main:"):
            assert owned.prefetched is not None and owned.day is not None
        else:
            assert owned.prefetched is None and owned.day is None  # read again
    assert worker.process_days()
    statuses = {part: client.wait(cid, 1000)["status"] for part, cid in ids.items()}
    assert statuses == {part: "accepted" if part.startswith("main:") else "rejected"
                        for part in ids}
    assert len(worker.batches._calendars) == 2  # main, and other's new revision
    assert len(parsed) == 4
    worker.shutdown()


def test_a_score_read_before_the_day_was_taken_out_is_not_used_again(settings, client,
                                                                      real_redis,
                                                                      monkeypatch):
    """A submitter's append and its index bump reach Redis apart: a batch reads the score
    (2) with a command whose bump has not landed, and the same round trip as its commit
    takes the day out at 2 (an earlier drain). The late bump puts it back at 1, the next
    command at 2: a removal recorded at 2 would take the day out with that command
    queued."""
    from slotlock.days.keys import ACTIVE, DayKeys
    from slotlock.workers.lease_worker import LeaseWorker

    part = DayKeys.of("main", DAY).part
    client.book("ann", "main", at(8), at(9), "x", wait_ms=0)
    client.book("ann", "main", at(9), at(10), "x", wait_ms=0)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert worker.process_days()
    assert worker.batches.drained.pending[part][1] == 2.0
    mark = client.index.mark
    monkeypatch.setattr(client.index, "mark", lambda part, pipe=None: None)
    late = client.book("ann", "main", at(10), at(11), "x", wait_ms=0).command_id  # no bump yet
    monkeypatch.setattr(client.index, "mark", mark)
    worker.owned[part].dirty = True
    assert worker.process_days()  # reads score 2 with it; its commit takes the day out at 2
    assert client.wait(late, 1000)["status"] == "accepted"
    assert real_redis.zscore(ACTIVE, part) is None
    client.index.mark(part)  # the late bump: back at 1
    queued = client.book("ann", "main", at(11), at(12), "x", wait_ms=0).command_id  # 2
    worker.batches.drained.flush()
    assert real_redis.zscore(ACTIVE, part) == 2.0  # still indexed, with its command queued
    worker.wait_for_work()
    assert worker.process_days()
    assert client.wait(queued, 1000)["status"] == "accepted"
    worker.shutdown()


def test_a_release_round_trip_that_fails_forgets_its_days(settings, client, real_redis):
    """Redis may have run the releases of a round trip that raised: the worker forgets
    those days rather than hold on to leases that may be free."""
    import redis

    from slotlock.workers.lease_worker import LeaseWorker

    client.book("ann", "main", at(8), at(9), "x", wait_ms=0)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert worker.process_days()
    run_pipeline, calls = worker.scripts.run_pipeline, []

    def release_then_fail(build, **kwargs):
        calls.append(build)
        replies = run_pipeline(build, **kwargs)
        if len(calls) == 2:
            raise redis.ConnectionError("connection lost after the releases ran")
        return replies

    worker.scripts.run_pipeline = release_then_fail
    with pytest.raises(redis.ConnectionError):
        worker.maintenance.release_idle(time.monotonic() + 3600)
    worker.scripts.run_pipeline = run_pipeline
    assert not worker.owned
    worker.shutdown()


def test_a_day_of_an_unknown_calendar_is_let_go_of_and_tried_again_later(settings, client,
                                                                          real_redis):
    """A day whose calendar is missing (a key lost outside slotlock) keeps its commands
    queued; the worker lets go of it and tries again after a while, instead of holding it
    and reading it again at every idle check."""
    from slotlock.days.keys import DayKeys
    from slotlock.workers.day_batch import UNKNOWN_CALENDAR_RETRY_S
    from slotlock.workers.lease_worker import LeaseWorker

    part = DayKeys.of("main", DAY).part
    cid = client.book("ann", "main", at(8), at(9), "x", wait_ms=0).command_id
    raw = real_redis.get(calendar_key("main"))
    real_redis.delete(calendar_key("main"))
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert part not in worker.owned and worker.stats["unknown_calendar"] == 1
    assert worker.retry_at[part] > time.monotonic() + UNKNOWN_CALENDAR_RETRY_S - 1
    assert real_redis.get(DayKeys(part).lease) is None
    assert client.status(cid)["status"] == "pending"
    worker.sweep(time.monotonic())  # not yet
    assert part not in worker.owned
    real_redis.set(calendar_key("main"), raw)
    worker.retry_at[part] = 0.0  # as if the wait were over
    worker.sweep(time.monotonic())
    assert worker.process_days()
    assert client.wait(cid, 1000)["status"] == "accepted"
    worker.shutdown()
