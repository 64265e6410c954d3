"""Daylight-saving days: 23 and 25 hours, gaps refused, repeated hours kept apart."""

from datetime import date, datetime, timedelta

import pytest

from slotlock.model import Accepted, Day, Rejected, decide, evolve
from slotlock.model.timeutil import TimeError, day_bounds, localize, zone

from .factories import NOW, book, calendar

BERLIN = "Europe/Berlin"
SPRING = date(2026, 3, 29)  # 02:00 -> 03:00, 23 hours
AUTUMN = date(2026, 10, 25)  # 03:00 -> 02:00, 25 hours


@pytest.mark.parametrize("on, hours", [(SPRING, 23), (AUTUMN, 25), (date(2026, 6, 1), 24)])
def test_day_length(on, hours):
    start, end = day_bounds(on, zone(BERLIN))
    assert end - start == timedelta(hours=hours)


def test_time_in_the_spring_gap_is_refused():
    with pytest.raises(TimeError, match="does not exist"):
        localize(datetime(2026, 3, 29, 2, 30), zone(BERLIN))


def test_ambiguous_autumn_time_takes_first_occurrence():
    first = localize(datetime(2026, 10, 25, 2, 30), zone(BERLIN))
    assert first.isoformat() == "2026-10-25T00:30:00+00:00"  # 02:30 CEST (+02:00)


def test_whole_23_hour_day_can_be_booked_and_is_23_hours():
    cal = calendar(BERLIN)
    cmd = book(datetime(2026, 3, 29, 0), datetime(2026, 3, 30, 0), cal=cal, on=SPRING)
    outcome = decide(Day(cal, SPRING), cmd, NOW)
    assert isinstance(outcome, Accepted)
    b = outcome.event.booking
    assert b.end - b.start == timedelta(hours=23)


def test_both_repeated_hours_of_the_25_hour_day_are_bookable_separately():
    cal = calendar(BERLIN)
    tz = zone(BERLIN)
    d = Day(cal, AUTUMN)
    # arithmetic in UTC: aware datetimes sharing a ZoneInfo add by wall clock
    first_2am = datetime(2026, 10, 25, 2, 0, tzinfo=tz, fold=0).astimezone(zone("UTC"))
    second_2am = datetime(2026, 10, 25, 2, 0, tzinfo=tz, fold=1).astimezone(zone("UTC"))
    assert second_2am - first_2am == timedelta(hours=1)
    one = book(first_2am, first_2am + timedelta(hours=1), cal=cal, on=AUTUMN)
    two = book(second_2am, second_2am + timedelta(hours=1), cal=cal, on=AUTUMN)
    o1 = decide(d, one, NOW)
    assert isinstance(o1, Accepted)
    d = evolve(d, o1.event)
    o2 = decide(d, two, NOW)
    assert isinstance(o2, Accepted), o2
    d = evolve(d, o2.event)
    rendered = [b["start"] for b in d.bookings_dicts()]
    assert rendered == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]
    overlapping = book(datetime(2026, 10, 25, 1, 30), datetime(2026, 10, 25, 2, 30), cal=cal,
                       on=AUTUMN)
    assert decide(d, overlapping, NOW).code == "overlap"


def test_booking_past_the_short_days_end_is_refused():
    cal = calendar(BERLIN)
    start = localize(datetime(2026, 3, 29, 23, 0), zone(BERLIN))
    cmd = book(start, start + timedelta(hours=2), cal=cal, on=SPRING)
    outcome = decide(Day(cal, SPRING), cmd, NOW)
    assert isinstance(outcome, Rejected) and outcome.code == "invalid"


def test_granularity_holds_across_the_switch():
    cal = calendar(BERLIN, granularity_minutes=60)
    cmd = book(datetime(2026, 3, 29, 1, 0), datetime(2026, 3, 29, 3, 0), cal=cal, on=SPRING)
    outcome = decide(Day(cal, SPRING), cmd, NOW)
    assert isinstance(outcome, Accepted)
    assert outcome.event.booking.end - outcome.event.booking.start == timedelta(hours=1)
