"""Retention trims old days' streams behind a verified snapshot; their audit still passes."""

from __future__ import annotations

import json
import time
from datetime import date

from slotlock.client import Client
from slotlock.days.keys import DayKeys
from slotlock.workers.audit import audit_day
from slotlock.workers.retention import run_retention
from tests.conftest import make_settings
from tests.integration.test_audit import overlapping_booking
from tests.jobs_support import at, drain, history

PART = "main:2024-01-10"
KEYS = DayKeys(PART)
TODAY = date(2024, 3, 1)  # 2024-01-10 is older than a 30-day window


def test_a_day_older_than_the_window_is_trimmed_and_still_passes_the_audit(any_redis):
    settings = make_settings()
    made = history(settings, any_redis)
    before = any_redis.hgetall(KEYS.state)
    assert any_redis.xlen(KEYS.cmds) == 5 and any_redis.hlen(KEYS.idem) == 1

    results = run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY)

    # the stream goes; outcomes and idempotency records stay while a retry may need them
    assert [(r.day, r.status, r.trimmed, r.outcomes, r.idempotency) for r in results] == [
        (PART, "retained", 5, 0, 0)]
    assert any_redis.xlen(KEYS.cmds) == 0
    assert any_redis.hlen(KEYS.done) == 5 and any_redis.hlen(KEYS.idem) == 1
    assert any_redis.hgetall(KEYS.state) == before  # the committed state is untouched
    snapshot = any_redis.hgetall(KEYS.snapshot)
    assert snapshot["cursor"] == before["cursor"] and snapshot["applied"] == "5"
    assert json.loads(snapshot["bookings"]) == json.loads(before["bookings"])
    report = audit_day(any_redis, PART)
    assert report.ok, report.findings
    assert report.base == before["cursor"] and report.replayed == 0

    # the day keeps working on top of the snapshot, and its audit replays from there
    client = Client(settings, client=any_redis, blocking=any_redis)
    client.book("dee", "main", at("2024-01-10", "16:00"), at("2024-01-10", "17:00"), "late",
                wait_ms=0, admin=True)  # admins may book the past
    drain(settings, any_redis)
    report = audit_day(any_redis, PART)
    assert report.ok, report.findings
    assert report.replayed == 1 and report.applied == 6
    assert made  # history really ran

    # a second pass trims the new command too; a third one finds nothing to do
    again = run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY)
    assert [(r.status, r.trimmed) for r in again] == [("retained", 1)]
    assert [r.status for r in run_retention(any_redis, 30, settings.idempotency_ttl_s,
                                            today=TODAY)] == ["unchanged"]
    assert audit_day(any_redis, PART).ok


def test_a_trimmed_day_still_reports_later_corruption(any_redis):
    settings = make_settings()
    history(settings, any_redis)
    run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY)
    overlapping_booking(any_redis)
    assert {f.code for f in audit_day(any_redis, PART).findings} == {"overlap", "state"}


def test_a_day_with_findings_is_not_trimmed(any_redis):
    settings = make_settings()
    history(settings, any_redis)
    overlapping_booking(any_redis)
    results = run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY)
    assert [r.status for r in results] == ["findings"]
    assert any_redis.xlen(KEYS.cmds) == 5 and not any_redis.exists(KEYS.snapshot)


def test_days_inside_the_window_are_left_alone(any_redis):
    settings = make_settings()
    history(settings, any_redis)
    assert run_retention(any_redis, 30, settings.idempotency_ttl_s, today=date(2024, 2, 1)) == []
    assert any_redis.xlen(KEYS.cmds) == 5


def test_outcomes_and_idempotency_records_go_once_older_than_the_idempotency_ttl(any_redis):
    settings = make_settings()
    history(settings, any_redis)
    later_ms = int(time.time() * 1000) + (settings.idempotency_ttl_s + 120) * 1000
    results = run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY,
                            now_ms=later_ms)
    assert [(r.status, r.trimmed, r.outcomes, r.idempotency) for r in results] == [
        ("retained", 5, 5, 1)]
    assert any_redis.hlen(KEYS.done) == 0 and any_redis.hlen(KEYS.idem) == 0
    assert audit_day(any_redis, PART).ok


def test_a_busy_day_is_compacted_whatever_its_date(any_redis):
    """G8: a day inside the window that collects many commands (rejections included) is
    snapshotted and trimmed too; its outcomes stay while a retry may still need them."""
    from slotlock.days.keys import CHANGED

    settings = make_settings()
    from datetime import timedelta

    busy = (date.today() + timedelta(days=30)).isoformat()  # inside the booking window
    keys = DayKeys(f"main:{busy}")
    history(settings, any_redis, day=busy)
    any_redis.zadd(CHANGED, {f"main:{busy}": int(time.time() * 1000)})
    assert run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY,
                         compact_after=10) == []  # 5 entries: not busy
    results = run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY,
                            compact_after=4)
    assert [(r.day, r.status, r.trimmed) for r in results] == [(f"main:{busy}", "retained", 5)]
    assert any_redis.xlen(keys.cmds) == 0 and any_redis.hlen(keys.done) == 5
    assert audit_day(any_redis, f"main:{busy}").ok


def test_a_fully_retained_day_is_skipped_until_it_changes(any_redis):
    """Issue 11 (scan amplification): later runs read no key of a day retention finished."""
    from slotlock.days.keys import CHANGED

    settings = make_settings()
    history(settings, any_redis)
    later_ms = int(time.time() * 1000) + (settings.idempotency_ttl_s + 120) * 1000
    run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY, now_ms=later_ms)
    assert run_retention(any_redis, 30, settings.idempotency_ttl_s, today=TODAY) == []
    any_redis.zadd(CHANGED, {PART: int(time.time() * 1000) + 1000})  # committed to again
    assert [r.day for r in run_retention(any_redis, 30, settings.idempotency_ttl_s,
                                         today=TODAY)] == [PART]
