"""The day's rows and the booking form's times, without Redis: DST days, closed hours,
bookings spanning slots, the repeated autumn hour and the skipped spring hour."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest

from slotlock.model import Calendar, Rules
from slotlock.model.booking import Booking
from slotlock.model.timeutil import UTC, TimeError, day_bounds, zone
from slotlock.web.ui import grid
from slotlock.web.ui.forms import local_instant

BERLIN = Calendar("b", "Berlin", "Europe/Berlin", Rules(granularity_minutes=60))


def booking(cal: Calendar, day: date, start: str, end: str, owner="alice", bid="x") -> dict:
    tz = cal.tz
    s = local_instant(day, time.fromisoformat(start), tz)
    e = local_instant(day, time.fromisoformat(end), tz) if end != "24:00" else \
        day_bounds(day, tz)[1]
    return Booking(bid, cal.id, s, e, f"T-{bid}", owner, s).to_dict(tz)


@pytest.mark.parametrize("day, hours", [(date(2030, 3, 31), 23), (date(2030, 6, 1), 24),
                                        (date(2030, 10, 27), 25)])
def test_a_day_has_as_many_hour_rows_as_hours(day, hours):
    rows = grid.rows(BERLIN, day, [], user="alice")
    assert len(rows) == hours
    assert all(r.kind == "free" for r in rows)


def test_the_repeated_autumn_hour_is_labelled_with_its_zone_and_fold():
    rows = grid.rows(BERLIN, date(2030, 10, 27), [], user="alice")
    labels = [r.label for r in rows[:5]]
    assert labels == ["00:00", "01:00", "02:00 CEST", "02:00 CET", "03:00"]
    assert [r.slot.fold for r in rows[2:4]] == [0, 1]


def test_the_skipped_spring_hour_has_no_row():
    rows = grid.rows(BERLIN, date(2030, 3, 31), [], user="alice")
    assert [r.label for r in rows[:4]] == ["00:00", "01:00", "03:00", "04:00"]


def test_closed_hours_fold_into_one_row_each_and_end_at_24_00():
    cal = Calendar("r", "Room", "UTC", Rules(30, open_from=time(8), open_until=time(18)))
    rows = grid.rows(cal, date(2030, 5, 4), [], user="alice")
    assert [(r.kind, r.label) for r in (rows[0], rows[-1])] == [("closed", "00:00–08:00"),
                                                               ("closed", "18:00–24:00")]
    assert len(rows) == 2 + 20


def test_a_booking_is_one_cell_spanning_its_slots_with_ownership_and_conflict():
    cal = Calendar("r", "Room", "UTC", Rules(15))
    day = date(2030, 5, 4)
    rows = grid.rows(cal, day, [booking(cal, day, "10:00", "11:00", owner="bob", bid="b1")],
                     user="alice", conflicts={"b1"})
    cell = rows[40]
    assert (cell.kind, cell.span, cell.label) == ("booked", 4, "10:00")
    [entry] = cell.entries
    assert (entry.start, entry.end, entry.owner, entry.mine, entry.can_cancel, entry.conflict) == \
        ("10:00", "11:00", "bob", False, False, True)
    assert [r.kind for r in rows[41:44]] == ["covered"] * 3
    assert rows[44].kind == "free"
    admin_rows = grid.rows(cal, day, [booking(cal, day, "10:00", "11:00", owner="bob")],
                           user="root", admin=True)
    assert admin_rows[40].entries[0].can_cancel


def test_bookings_off_the_grid_share_the_cells_they_touch():
    cal = Calendar("r", "Room", "UTC", Rules(60))
    day = date(2030, 5, 4)
    rows = grid.rows(cal, day, [booking(cal, day, "10:00", "10:30", bid="a"),
                                booking(cal, day, "10:30", "11:30", bid="b"),
                                booking(cal, day, "23:00", "24:00", bid="c")], user="alice")
    assert (rows[10].kind, rows[10].span, [e.id for e in rows[10].entries]) == \
        ("booked", 2, ["a", "b"])
    assert rows[11].kind == "covered" and rows[12].kind == "free"
    assert rows[23].entries[0].end == "24:00"
    assert sum(r.span for r in rows if r.kind != "covered") == 24


def test_form_times_pick_the_fold_and_refuse_the_gap():
    tz = zone("Europe/Berlin")
    first = local_instant(date(2030, 10, 27), time(2, 30), tz)
    second = local_instant(date(2030, 10, 27), time(2, 30), tz, fold=1)
    assert second - first == timedelta(hours=1)
    assert first == first.astimezone(UTC)
    with pytest.raises(TimeError, match="clocks skip it"):
        local_instant(date(2030, 3, 31), time(2, 30), tz)
