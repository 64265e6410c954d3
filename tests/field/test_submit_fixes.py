"""Issue 9, bugs 4, 7 and 8: what a retry or an odd id does at the submit step.

Real redis-server, a real lease worker in a thread.
"""

import time
from datetime import date, datetime

import pytest

from slotlock.client import Client
from slotlock.days.keys import DayKeys, idempotency_key
from slotlock.errors import IdempotencyMismatch
from slotlock.ids import new_ids, parse_booking_id, parse_command_id
from tests.conftest import make_settings, open_default
from tests.procs import WorkerThread

DAY = date(2031, 6, 1)


def at(h, m=0, on=DAY):
    return datetime(on.year, on.month, on.day, h, m)


@pytest.fixture
def settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=500, idle_release_ms=200,
                         reply_timeout_ms=3000)


@pytest.fixture
def client(settings):
    open_default(Client(settings).redis)
    return Client(settings)


def test_a_retry_after_the_reply_key_expired_answers_at_once(settings, client):
    with WorkerThread(settings):
        first = client.book("alice", "main", at(10), at(11), "standup", idempotency_key="k")
        assert first.outcome["status"] == "accepted"
        keys = DayKeys.of("main", DAY)
        client.redis.delete(keys.reply(first.command_id))  # its short TTL ran out
        started = time.monotonic()
        again = client.book("alice", "main", at(10), at(11), "standup", idempotency_key="k")
        took = time.monotonic() - started
    assert again.duplicate and again.outcome == first.outcome
    assert took < settings.reply_timeout_ms / 1000 / 3, f"the retry waited {took:.2f} s"


def test_same_key_other_body_after_the_global_record_expired_is_refused(settings, client):
    with WorkerThread(settings):
        first = client.book("alice", "main", at(10), at(11), "standup", idempotency_key="k")
        assert first.outcome["status"] == "accepted"
        client.redis.delete(idempotency_key("alice", "k"))  # its 24 h TTL ran out
        with pytest.raises(IdempotencyMismatch):
            client.book("alice", "main", at(12), at(13), "other", idempotency_key="k")
        # the same body is still the same request
        again = client.book("alice", "main", at(10), at(11), "standup", idempotency_key="k")
        assert again.duplicate and again.command_id == first.command_id
    keys = DayKeys.of("main", DAY)
    assert client.redis.xlen(keys.cmds) == 1  # nothing else was queued


@pytest.mark.parametrize("year", [1, 5, 999])
def test_ids_of_years_below_1000_are_zero_padded_and_round_trip(year):
    day = date(year, 3, 4)
    command_id, booking_id = new_ids("main", day)
    assert parse_command_id(command_id) == ("main", day)
    assert parse_booking_id(booking_id) == day
    assert booking_id.startswith(f"{year:04d}0304.")


def test_cancel_of_an_early_year_id_is_answered_and_writes_nothing(settings, client):
    result = client.cancel("alice", "main", "00050101.0123456789abcdef")
    assert result.outcome["status"] == "rejected"
    assert result.outcome["error"]["code"] == "not_found"
    keys = DayKeys.of("main", date(5, 1, 1))
    assert not client.redis.exists(keys.cmds, keys.done, keys.state)
    assert client.redis.zscore("sl:days", keys.part) is None


@pytest.mark.parametrize("start", [datetime(9998, 1, 2, 10), datetime(2001, 1, 2, 10)])
def test_a_booking_outside_the_window_writes_nothing(settings, real_redis, start):
    """G8: refused before anything is stored (the worker would refuse it too)."""
    from slotlock.catalog import Catalog

    Catalog(real_redis).ensure_default("UTC")  # the default 365-day window
    result = Client(settings).book("alice", "main", start, start.replace(hour=11), "far")
    assert result.outcome["error"]["code"] == "rule_violation"
    assert result.outcome["error"]["details"]["rule"] in ("horizon", "past")
    assert real_redis.zcard("sl:days") == 0
    assert not real_redis.keys("sl:{main:*")


def test_retention_never_lets_a_retry_apply_a_command_twice(settings, client):
    """Bug 3: retention pruned done/idempotency records while the 24 h global record still
    named the command; a retry queued it again and, after a cancel, re-made the booking."""
    from slotlock.workers.retention import run_retention

    old = date(2024, 1, 10)
    with WorkerThread(settings):
        made = client.book("alice", "main", at(9, on=old), at(10, on=old), "x", admin=True,
                           idempotency_key="once")
        assert made.outcome["status"] == "accepted", made.outcome
        booking_id = made.outcome["booking"]["id"]
        assert client.cancel("alice", "main", booking_id).outcome["status"] == "accepted"
        results = run_retention(client.redis, 30, settings.reply_ttl_ms,
                                today=date(2024, 3, 1))
        assert [r.status for r in results] == ["retained"]
        client.redis.delete(DayKeys.of("main", old).reply(made.command_id))
        again = client.book("alice", "main", at(9, on=old), at(10, on=old), "x", admin=True,
                            idempotency_key="once")
    assert again.duplicate and again.command_id == made.command_id
    assert again.outcome == made.outcome
    assert client.read_day("main", old).bookings == []  # not booked a second time


def test_a_submit_is_one_round_trip_without_script_exists_and_survives_a_script_flush(
        settings, client):
    client.redis.config_resetstat()
    client.book("alice", "main", at(15), at(16), "x", wait_ms=0)
    stats = client.redis.info("commandstats")
    assert "cmdstat_script|exists" not in stats and "cmdstat_script" not in stats
    client.redis.script_flush()  # e.g. Redis restarted and lost its script cache
    again = client.book("alice", "main", at(16), at(17), "y", wait_ms=0)
    assert again.pending and client.redis.xlen(DayKeys.of("main", DAY).cmds) == 2


def test_a_retry_gets_its_first_outcome_even_once_outside_the_window(settings, client):
    """Found by the widened harness: the window check ran before the idempotency check."""
    from dataclasses import replace

    with WorkerThread(settings):
        first = client.book("alice", "main", at(9), at(10), "x", idempotency_key="w")
        assert first.outcome["status"] == "accepted"
        calendar = client.catalog.get("main")
        client.catalog.put(calendar.with_changes(rules=replace(calendar.rules, horizon_days=1)))
        client._calendars.clear()
        client.redis.delete(idempotency_key("alice", "w"))  # the global record expired too
        again = client.book("alice", "main", at(9), at(10), "x", idempotency_key="w")
        assert again.duplicate and again.outcome == first.outcome
        with pytest.raises(IdempotencyMismatch):
            client.book("alice", "main", at(11), at(12), "other", idempotency_key="w")
        fresh = client.book("alice", "main", at(13), at(14), "new", idempotency_key="v")
        assert fresh.outcome["error"]["details"]["rule"] == "horizon"


def test_a_request_refused_before_queueing_keeps_its_answer_for_its_retries(settings, client):
    """Found by the 10-minute chaos run: refused (outside the window, nothing written), the
    rules widened, the retry with the same key was queued and accepted: 422 then 201."""
    from dataclasses import replace

    calendar = client.catalog.get("main")
    client.catalog.put(calendar.with_changes(rules=replace(calendar.rules, horizon_days=1)))
    client._calendars.clear()
    with WorkerThread(settings):
        first = client.book("alice", "main", at(9), at(10), "x", idempotency_key="r")
        assert first.outcome["error"]["details"]["rule"] == "horizon"
        calendar = client.catalog.get("main")
        client.catalog.put(calendar.with_changes(rules=replace(calendar.rules, horizon_days=0)))
        client._calendars.clear()
        again = client.book("alice", "main", at(9), at(10), "x", idempotency_key="r")
        assert again.duplicate and again.outcome == first.outcome
        with pytest.raises(IdempotencyMismatch):
            client.book("alice", "main", at(11), at(12), "other", idempotency_key="r")
        fresh = client.book("alice", "main", at(9), at(10), "x", idempotency_key="s")
        assert fresh.outcome["status"] == "accepted"


def test_a_submit_script_sent_twice_appends_its_command_once(settings, client, real_redis):
    """Found by review (issue 12): redis-py's cluster pipeline sends a command whose node
    timed out once more, whatever its retry setting; a submit without an idempotency key
    whose first run landed was appended twice (decided against itself, and ``done`` of the
    first overwritten by the second's outcome)."""
    keys = DayKeys.of("main", DAY)
    command_id, _ = new_ids("main", DAY)
    first = client.store.submit(keys, command_id, '{"kind": "book"}')
    again = client.store.submit(keys, command_id, '{"kind": "book"}')
    assert not first.duplicate and again.duplicate and again.command_id == command_id
    assert real_redis.xlen(keys.cmds) == 1
    assert real_redis.hget(keys.state, "pending") == "1"
