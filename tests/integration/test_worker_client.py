"""The client and a lease worker (in a thread) against a real redis-server."""

import time
from datetime import date, datetime

import pytest

from slotlock.client import Client
from slotlock.days.keys import ACTIVE, DayKeys
from slotlock.errors import Backpressure, IdempotencyMismatch, InvalidRequest
from slotlock.model import Calendar, Rules
from tests.conftest import make_settings, open_default
from tests.procs import WorkerThread

DAY = date(2030, 12, 3)


def at(h, m=0, on=DAY):
    return datetime(on.year, on.month, on.day, h, m)


@pytest.fixture
def settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=500, idle_release_ms=200,
                         reply_timeout_ms=3000)


@pytest.fixture
def client(settings):
    open_default(Client(settings).redis, "Europe/Berlin")
    return Client(settings)


def test_book_conflict_and_cancel_roundtrip(settings, client):
    with WorkerThread(settings):
        first = client.book("alice", "main", at(10), at(11), "standup")
        assert first.outcome["status"] == "accepted"
        booking = first.outcome["booking"]
        assert booking["start"] == "2030-12-03T10:00:00+01:00"
        clash = client.book("bob", "main", at(10, 30), at(11, 30), "retro")
        assert clash.outcome["error"]["code"] == "overlap"
        assert clash.outcome["error"]["details"]["conflicts"][0]["id"] == booking["id"]
        forbidden = client.cancel("bob", "main", booking["id"])
        assert forbidden.outcome["error"]["code"] == "forbidden"
        gone = client.cancel("alice", "main", booking["id"])
        assert gone.outcome["status"] == "accepted"
        view = client.read_day("main", DAY)
        assert view.bookings == [] and view.version == 2
        assert client.status(first.command_id)["status"] == "accepted"
        assert client.status(clash.command_id)["status"] == "rejected"


def test_nothing_is_lost_while_no_worker_runs(settings, client):
    queued = client.book("alice", "main", at(9), at(10), "early", wait_ms=0)
    assert queued.pending
    assert client.status(queued.command_id) == {"command_id": queued.command_id,
                                               "status": "pending"}
    with WorkerThread(settings):
        outcome = client.wait(queued.command_id, 3000)
    assert outcome["status"] == "accepted"
    assert client.read_day("main", DAY).bookings[0]["title"] == "early"


def test_idempotency_key_returns_the_first_outcome(settings, client):
    with WorkerThread(settings):
        one = client.book("alice", "main", at(12), at(13), "lunch", idempotency_key="k-1")
        two = client.book("alice", "main", at(12), at(13), "lunch", idempotency_key="k-1")
        assert two.duplicate and two.command_id == one.command_id
        assert two.outcome == one.outcome
        with pytest.raises(IdempotencyMismatch):
            client.book("alice", "main", at(14), at(15), "lunch", idempotency_key="k-1")
        other_user = client.book("bob", "main", at(14), at(15), "tea", idempotency_key="k-1")
        assert other_user.outcome["status"] == "accepted"
    assert len(client.read_day("main", DAY).bookings) == 2


def test_time_in_the_spring_gap_is_an_invalid_request(client):
    with pytest.raises(InvalidRequest, match="does not exist"):
        client.book("alice", "main", datetime(2030, 3, 31, 2, 30), datetime(2030, 3, 31, 3, 30),
                    "x", wait_ms=0)


def test_rule_changes_apply_to_later_commands(settings, client):
    with WorkerThread(settings):
        assert client.book("a", "main", at(8), at(11), "long").outcome["status"] == "accepted"
        client.catalog.put(Calendar("main", "Main", "Europe/Berlin",
                                    Rules(max_length_minutes=60, horizon_days=0)))
        late = client.book("a", "main", at(12), at(15), "long")
        assert late.outcome["error"]["code"] == "rule_violation"
        assert late.outcome["rules_revision"] == 3  # 1: created, 2: no horizon (open_default)


def test_idle_day_is_released_and_dropped_from_the_index(settings, client):
    with WorkerThread(settings) as worker:
        client.book("alice", "main", at(16), at(17), "x")
        keys = DayKeys.of("main", DAY)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and client.redis.exists(keys.lease):
            time.sleep(0.05)
        assert not client.redis.exists(keys.lease)
        assert client.redis.zscore(ACTIVE, keys.part) is None
        assert worker.stats["released"] >= 1
        # and work after the release is picked up again
        assert client.book("bob", "main", at(18), at(19), "y").outcome["status"] == "accepted"


def test_a_day_drained_and_taken_out_of_the_index_is_let_go_of_without_a_look(settings,
                                                                              client):
    """A fresh day's first batch drains it and the next round trip takes it out of the
    index: its idle release is one script, with no first round trip reading its score and
    commands (two commands a day, for a day per booking). A command that comes while it is
    held is still decided before the release, and one after it finds the lease free."""
    thread = WorkerThread(settings)
    looked: list[str] = []
    look = thread.worker.maintenance._look_before_release

    def spy(candidates, drained):
        looked.extend(part for part, _ in candidates)
        return look(candidates, drained)

    thread.worker.maintenance._look_before_release = spy
    keys = DayKeys.of("main", DAY)
    with thread as worker:
        assert client.book("alice", "main", at(16), at(17), "x").outcome["status"] == "accepted"
        # a second day's command: its commit pipeline carries the first day's index removal
        client.book("alice", "main", at(9, 0, on=date(2030, 12, 24)), at(10, 0,
                    on=date(2030, 12, 24)), "x")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and client.redis.exists(keys.lease):
            time.sleep(0.02)
        assert not client.redis.exists(keys.lease)
        assert client.redis.zscore(ACTIVE, keys.part) is None
        assert keys.part not in looked, looked
        assert worker.stats["released"] >= 1
        outcome = client.book("bob", "main", at(18), at(19), "y").outcome
        assert outcome["status"] == "accepted"


def test_backpressure_when_the_backlog_is_full(settings, client):
    tight = Client(settings.model_copy(update={"backlog_limit": 2}))
    tight.book("a", "main", at(1), at(2), "x", wait_ms=0)
    tight.book("a", "main", at(3), at(4), "x", wait_ms=0)
    with pytest.raises(Backpressure):
        tight.book("a", "main", at(5), at(6), "x", wait_ms=0)


def test_many_days_are_served_by_one_worker(settings, client):
    with WorkerThread(settings) as worker:
        results = [client.book("a", "main", at(10, on=date(2031, 1, d)), at(11, on=date(2031, 1, d)),
                               "x") for d in range(1, 11)]
        assert all(r.outcome["status"] == "accepted" for r in results)
        assert worker.stats["acquired"] >= 10


def test_a_queued_day_missing_from_the_index_is_found_again(settings, client):
    queued = client.book("alice", "main", at(7), at(8), "orphan", wait_ms=0)
    client.redis.delete(ACTIVE)  # as if the submitter died between append and index bump
    with WorkerThread(settings):
        outcome = client.wait(queued.command_id, 3000)
    assert outcome and outcome["status"] == "accepted"


def test_a_day_whose_batch_raises_is_let_go_and_the_others_go_on(settings, client,
                                                                 monkeypatch):
    from slotlock.workers import day_batch

    poisoned = date(2030, 12, 9)
    real_apply = day_batch.apply_entries

    def apply(day, cursor, entries, part, with_events):
        if part == f"main:{poisoned.isoformat()}":
            raise RuntimeError("a bug in a rule")
        return real_apply(day, cursor, entries, part, with_events)

    monkeypatch.setattr(day_batch, "apply_entries", apply)
    with WorkerThread(settings) as worker:
        stuck = client.book("a", "main", at(9, on=poisoned), at(10, on=poisoned), "x",
                            wait_ms=500)
        assert stuck.pending
        fine = client.book("a", "main", at(9), at(10), "y")
        assert fine.outcome["status"] == "accepted"
        assert worker.stats["day_errors"] >= 1
        assert not client.redis.exists(DayKeys.of("main", poisoned).lease)
        assert client.status(stuck.command_id)["status"] == "pending"  # nothing half-written


def test_a_fused_wait_returns_at_once_when_nothing_was_queued(settings, client):
    """The wait for the outcome rides in the submit's round trip (``submit.lua``'s marker):
    a refusal by the script (backlog full, a key's earlier command on the day) must not
    wait out the reply timeout (3 s here)."""
    from slotlock.days.keys import idempotency_key

    tight = Client(settings.model_copy(update={"backlog_limit": 1}))
    tight.book("a", "main", at(1), at(2), "x", wait_ms=0)
    started = time.monotonic()
    with pytest.raises(Backpressure):
        tight.book("a", "main", at(3), at(4), "x")  # waits by default
    assert time.monotonic() - started < 1.0
    # the key's global record expired while the day still knows it: told the first command
    first = client.book("a", "main", at(5), at(6), "y", idempotency_key="k-9", wait_ms=0)
    client.redis.delete(idempotency_key("a", "k-9"))
    with WorkerThread(settings):
        started = time.monotonic()
        again = client.book("a", "main", at(5), at(6), "y", idempotency_key="k-9")
        assert again.duplicate and again.command_id == first.command_id
        assert again.outcome["status"] in ("accepted", "rejected")
        assert time.monotonic() - started < 2.5


def test_a_fused_wait_gets_the_outcome_in_the_submit_round_trip(settings, client):
    with WorkerThread(settings):
        result = client.book("alice", "main", at(7), at(8), "fused")
        assert result.outcome["status"] == "accepted" and not result.duplicate


def test_a_fused_wait_never_waits_out_a_noscript(settings, client):
    """A NOSCRIPT inside the fused pipeline does not stop the BLMOVE behind it: a process's
    first booking, and any booking after Redis lost its script cache (a restart, which
    redis-py reconnects from silently), waited the whole reply timeout (found by the
    thread-exhaustion e2e test and by review)."""
    fresh = Client(settings)
    with WorkerThread(settings):
        for hour in (20, 21, 22):
            client.redis.script_flush()
            started = time.monotonic()
            assert fresh.book("alice", "main", at(hour), at(hour, 30), "x").outcome
            assert time.monotonic() - started < 1.5


def test_a_retry_after_a_busy_answer_is_not_told_the_marker(settings, client):
    """Found by review: a fused request with a key answered "busy" leaves submit.lua's
    marker in the reply list of the command id its key is pinned to; the retry with that
    key waits on the same list and must get the real outcome, not the marker."""
    tight = Client(settings.model_copy(update={"backlog_limit": 1}))
    first = tight.book("a", "main", at(1), at(2), "first", wait_ms=0)
    with pytest.raises(Backpressure):
        tight.book("a", "main", at(3), at(4), "x", idempotency_key="k-busy")
    with WorkerThread(settings):
        assert tight.wait(first.command_id, 3000)  # the backlog is free again
        retried = tight.book("a", "main", at(3), at(4), "x", idempotency_key="k-busy")
        assert retried.outcome["status"] == "accepted"
        again = tight.book("a", "main", at(3), at(4), "x", idempotency_key="k-busy")
        assert again.outcome == retried.outcome


def test_the_heartbeat_goes_on_after_redis_lost_its_scripts(settings, client, real_redis):
    """The heartbeat's pipeline holds two scripts (workers_seen, share_beat): after a
    SCRIPT FLUSH (a Redis restart) they are loaded and the beat sent again, so the worker
    stays in the list and its count of days stays fresh."""
    import json

    from slotlock.days.keys import WORKER_LOAD, WORKERS_SEEN

    with WorkerThread(settings):
        deadline = time.monotonic() + 5
        while not real_redis.zcard(WORKERS_SEEN) and time.monotonic() < deadline:
            time.sleep(0.05)
        [(worker, seen)] = real_redis.zrange(WORKERS_SEEN, 0, -1, withscores=True)
        real_redis.script_flush()
        flushed_at = real_redis.time()[0]
        time.sleep(2.5)  # two heartbeats
        assert real_redis.zscore(WORKERS_SEEN, worker) >= flushed_at + 1
        counts = [json.loads(v) for v in real_redis.hvals(WORKER_LOAD)]
        assert counts and max(c["at"] for c in counts) >= flushed_at + 1
        assert client.book("alice", "main", at(9), at(10), "after").outcome["status"] == \
            "accepted"
