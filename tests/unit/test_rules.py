"""Truth tables, one per rule."""

from datetime import time

import pytest

from slotlock.model import decide, evolve
from slotlock.model import rules as R

from .factories import NOW, at, book, calendar, day


def booking_of(cmd):
    outcome = decide(day(calendar()), cmd, NOW)
    return outcome.event.booking


def run_rule(rule, cal, start, end, title="meeting", existing=()):
    d = day(cal)
    for s, e, owner in existing:
        d = evolve(d, decide(d, book(s, e, cal=cal, actor=owner), NOW).event)
    cmd = book(start, end, cal=cal, title=title)
    from slotlock.model.booking import Booking

    candidate = Booking(cmd.booking_id, cal.id, cmd.start, cmd.end, cmd.title, cmd.actor, NOW)
    return rule(d, candidate)


@pytest.mark.parametrize("title, ok", [
    ("x", True), ("a" * 200, True), ("", False), ("   ", False), ("a" * 201, False),
    ("tab\there", False), ("Café ☕ planning", True),
    ("bidi \u202eevil", False), ("zero\u200bwidth", False), ("line\u2028sep", False),
    ("para\u2029sep", False), ("nul\x00", False), ("del\x7f", False), ("日本語 会議", True),
])
def test_title_limits(title, ok):
    v = run_rule(R.title_limits, calendar(), at(10), at(11), title=title)
    assert (v is None) == ok
    if not ok:
        assert v.code == "invalid"


@pytest.mark.parametrize("start, end, ok", [
    (at(10), at(11), True), (at(11), at(10), False), (at(10), at(10), False),
])
def test_positive_length(start, end, ok):
    assert (run_rule(R.positive_length, calendar(), start, end) is None) == ok


@pytest.mark.parametrize("start, end, ok", [
    (at(0), at(1), True),
    (at(23), at(24), True),          # may end at the midnight that closes the day
    (at(23), at(24, 15), False),     # crosses into the next day
    (at(-1), at(1), False),          # starts the day before
])
def test_within_local_day(start, end, ok):
    v = run_rule(R.within_local_day, calendar(), start, end)
    assert (v is None) == ok
    if not ok:
        assert v.code == "invalid"


@pytest.mark.parametrize("granularity, start, end, ok", [
    (15, at(10), at(10, 15), True),
    (15, at(10, 5), at(10, 20), False),
    (15, at(10), at(10, 20), False),
    (30, at(10), at(10, 30), True),
    (30, at(10, 15), at(10, 45), False),
    (60, at(9), at(11), True),
])
def test_granularity(granularity, start, end, ok):
    v = run_rule(R.granularity, calendar(granularity_minutes=granularity), start, end)
    assert (v is None) == ok
    if not ok:
        assert v.code == "rule_violation" and v.details["rule"] == "granularity"


@pytest.mark.parametrize("rules, start, end, ok", [
    ({}, at(10), at(10, 15), True),
    ({"max_length_minutes": 60}, at(10), at(11), True),
    ({"max_length_minutes": 60}, at(10), at(11, 15), False),
    ({"min_length_minutes": 30}, at(10), at(10, 15), False),
    ({"min_length_minutes": 30}, at(10), at(10, 30), True),
])
def test_length_limits(rules, start, end, ok):
    assert (run_rule(R.length_limits, calendar(**rules), start, end) is None) == ok


@pytest.mark.parametrize("open_from, open_until, start, end, ok", [
    (time(8), time(18), at(8), at(9), True),
    (time(8), time(18), at(7, 45), at(9), False),
    (time(8), time(18), at(17), at(18), True),
    (time(8), time(18), at(17), at(18, 15), False),
    (time(8), None, at(23), at(24), True),
    (time(0), time(18), at(23), at(24), False),
])
def test_opening_hours(open_from, open_until, start, end, ok):
    cal = calendar(open_from=open_from, open_until=open_until)
    assert (run_rule(R.opening_hours, cal, start, end) is None) == ok


@pytest.mark.parametrize("buffer, existing, start, end, conflicts", [
    (0, [(at(10), at(11))], at(11), at(12), 0),          # touching is fine
    (0, [(at(10), at(11))], at(10, 45), at(11, 15), 1),
    (0, [(at(10), at(11))], at(9), at(12), 1),           # encloses
    (0, [(at(10), at(11))], at(10, 15), at(10, 30), 1),  # enclosed
    (0, [(at(10), at(11)), (at(12), at(13))], at(10, 30), at(12, 30), 2),
    (15, [(at(10), at(11))], at(11), at(12), 1),         # inside the buffer
    (15, [(at(10), at(11))], at(11, 15), at(12), 0),
])
def test_no_overlap(buffer, existing, start, end, conflicts):
    v = run_rule(R.no_overlap, calendar(buffer_minutes=buffer), start, end,
                 existing=[(s, e, "bob") for s, e in existing])
    if conflicts == 0:
        assert v is None
    else:
        assert v.code == "overlap"
        assert len(v.details["conflicts"]) == conflicts
        assert all(c["owner"] == "bob" for c in v.details["conflicts"])


@pytest.mark.parametrize("limit, held_by_alice, ok", [
    (None, 5, True), (2, 1, True), (2, 2, False), (1, 0, True),
])
def test_owner_quota(limit, held_by_alice, ok):
    existing = [(at(h), at(h, 15), "alice") for h in range(held_by_alice)] + [(at(20), at(21), "bob")]
    v = run_rule(R.owner_quota, calendar(max_bookings_per_owner=limit), at(12), at(13),
                 existing=existing)
    assert (v is None) == ok
    if not ok:
        assert v.code == "quota_exceeded" and len(v.details["conflicts"]) == held_by_alice


@pytest.mark.parametrize("buffer, start, end, ok", [
    (0, at(0), at(0, 15), True),
    (0, at(23, 45), "2026-12-02T00:00:00", True),
    (30, at(0, 30), at(1), True),       # the buffer stays inside the day       # the buffer stays inside the day
    (30, at(0), at(0, 15), False),      # its buffer reaches back over midnight
    (30, at(0, 15), at(0, 45), False),
    (30, at(22), at(23, 30), True),
    (30, at(23, 45), "2026-12-02T00:00:00", False),  # reaches over the closing midnight
    (15, at(23), at(23, 45), True),
])
def test_buffer_within_the_day(buffer, start, end, ok):
    """Issue 9 bug 2: a buffer that reaches over midnight would not be seen by the next day."""
    v = run_rule(R.buffer_within_day, calendar(buffer_minutes=buffer), start, end)
    assert (v is None) == ok
    if not ok:
        assert v.code == "rule_violation" and v.details["rule"] == "buffer"


def test_a_refusal_stays_small_whatever_the_day_holds():
    """Issue 11: a 296-byte request stored a 43 KB outcome (every conflict in full)."""
    import json

    cal = calendar()
    d = day(cal)
    for h in range(24):
        for m in (0, 15, 30, 45):
            d = evolve(d, decide(d, book(at(h, m), at(h, m + 15) if m < 45 else at(h + 1) if h < 23
                                         else "2026-12-02T00:00:00", cal=cal, actor="bob",
                                         title="x" * 200), NOW).event)
    assert len(d.bookings) == 96
    outcome = decide(d, book(at(0), "2026-12-02T00:00:00", cal=cal), NOW)
    details = outcome.details
    assert details["conflicts_total"] == 96
    assert len(details["conflicts"]) == R.CONFLICTS_SHOWN
    assert len(details["conflict_ids"]) == R.CONFLICT_IDS_SHOWN
    assert len(json.dumps(outcome.to_dict())) < 6_000


@pytest.mark.parametrize("tz, horizon, start, admin, rule", [
    ("UTC", 365, "2026-01-01T09:00:00", False, None),              # now is fine
    ("UTC", 365, "2026-01-01T08:45:00", False, "past"),
    ("UTC", 365, "2026-01-01T08:45:00", True, None),               # admins may book the past
    ("UTC", 365, "2027-01-01T10:00:00", False, None),              # today + 365
    ("UTC", 365, "2027-01-02T10:00:00", False, "horizon"),
    ("UTC", 365, "2027-01-02T10:00:00", True, "horizon"),          # the horizon holds for all
    ("UTC", 0, "2098-01-02T10:00:00", False, None),                # 0: no limit
    ("Pacific/Kiritimati", 1, "2026-01-02T20:00:00", False, None),  # today there is 01-01
    ("Pacific/Kiritimati", 1, "2026-01-03T00:00:00", False, "horizon"),
])
def test_booking_window(tz, horizon, start, admin, rule):
    from datetime import datetime as dt
    from datetime import timedelta as td

    cal = calendar(tz, horizon_days=horizon)
    begin = dt.fromisoformat(start)
    cmd = book(begin, begin + td(minutes=15), cal=cal, admin=admin)
    outcome = decide(day(cal, on=cmd.date), cmd, NOW)
    if rule is None:
        assert outcome.status == "accepted", outcome
    else:
        assert outcome.code == "rule_violation" and outcome.details["rule"] == rule
