"""The audit is the harness's day checker: what it must see beyond a single day's state."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from slotlock.client import Client
from slotlock.days.keys import DAYS, DayKeys, partition
from slotlock.days.store import DayStore
from slotlock.ids import new_ids
from slotlock.workers.audit import audit_calendars, audit_day, calendar_overlaps
from tests.conftest import make_settings, open_default
from tests.procs import WorkerThread

DAY = date(2031, 6, 2)


def booking(id_, start, end, calendar="main"):
    return {"id": id_, "calendar": calendar, "start": start, "end": end, "title": "t",
            "owner": "u", "created_at": "2026-01-01T00:00:00+00:00"}


def test_overlap_is_checked_on_instants_across_days():
    # D ends at 23:00Z in Berlin (summer): a booking of D+1 from 23:30Z shares nothing with
    # one of D that ends at midnight local; one that spills past D's end does
    d, d1 = "main:2031-06-02", "main:2031-06-03"
    fine = {d: [booking("a", "2031-06-02T23:00:00+02:00", "2031-06-03T00:00:00+02:00")],
            d1: [booking("b", "2031-06-03T00:00:00+02:00", "2031-06-03T00:30:00+02:00")]}
    assert calendar_overlaps(fine) == []
    spilled = {d: [booking("a", "2031-06-02T23:00:00+02:00", "2031-06-03T00:45:00+02:00")],
               d1: [booking("b", "2031-06-03T00:00:00+02:00", "2031-06-03T00:30:00+02:00")]}
    [finding] = calendar_overlaps(spilled)
    assert finding.code == "overlap" and finding.details["days"] == [d, d1]
    # the same instant written with another offset (a zone change) is the same instant
    moved = {d: [booking("a", "2031-06-02T22:00:00+00:00", "2031-06-02T23:00:00+00:00")],
             d1: [booking("b", "2031-06-03T00:30:00+02:00", "2031-06-03T01:00:00+02:00")]}
    assert len(calendar_overlaps(moved)) == 1


def test_audit_calendars_reads_every_day_of_the_calendar(real_redis):
    for part, items in {partition("main", date(2031, 6, 2)):
                        [booking("a", "2031-06-02T23:00:00+00:00", "2031-06-03T00:30:00+00:00")],
                        partition("main", date(2031, 6, 3)):
                        [booking("b", "2031-06-03T00:00:00+00:00", "2031-06-03T00:15:00+00:00")]
                        }.items():
        real_redis.hset(DayKeys(part).state, "bookings", json.dumps(items))
        real_redis.zadd(DAYS, {part: 0})
    found = audit_calendars(real_redis, [partition("main", date(2031, 6, 3))])
    assert [f.code for f in found["main"]] == ["overlap"]
    real_redis.flushall()  # on purpose inconsistent data: not for the audit after the test


@pytest.fixture
def settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=500, idle_release_ms=200,
                         reply_timeout_ms=3000)


@pytest.mark.audit_findings_expected
def test_the_audit_reports_an_entry_the_worker_could_not_decide(settings):
    client = Client(settings)
    open_default(client.redis)
    command_id, booking_id = new_ids("main", DAY)
    raw = {"kind": "book", "command_id": command_id, "actor": "mallory", "admin": False,
           "calendar": "main", "date": DAY.isoformat(), "booking_id": booking_id,
           "start": "2031-06-02T08:00:00+00:00", "end": "2031-06-02T09:00:00+00:00",
           "title": None, "idempotency_key": None}
    keys = DayKeys.of("main", DAY)
    DayStore(client.redis).submit(keys, command_id, json.dumps(raw))
    client.index.mark(keys.part)
    with WorkerThread(settings):
        good = client.book("bob", "main", datetime(2031, 6, 2, 10), datetime(2031, 6, 2, 11),
                           "after")
        assert good.outcome and good.outcome["status"] == "accepted"
    report = audit_day(client.redis, keys.part)
    # replayed the same way (no replay finding), reported as what it is
    assert [f.code for f in report.findings] == ["internal_error"]
    assert report.findings[0].details["command_id"] == command_id
    assert report.counts["accepted"] == 1 and report.counts["rejected"] == 1
