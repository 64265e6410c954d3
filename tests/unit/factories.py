"""Small factories for model objects (overrides by keyword), in the spirit of Indico's fixtures."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from slotlock.model import Book, Calendar, Cancel, Day, Rules
from slotlock.model.timeutil import UTC, to_utc

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # before every date the unit tests book
DAY = date(2026, 12, 1)


def calendar(tz: str = "UTC", **rules) -> Calendar:
    return Calendar("main", "Main", tz, Rules(**rules))


def day(cal: Calendar | None = None, on: date = DAY, bookings=()) -> Day:
    return Day(cal or calendar(), on, tuple(bookings))


_counter = iter(range(10**9))


def book(start: str | datetime, end: str | datetime, *, cal: Calendar | None = None,
         actor: str = "alice", title: str = "meeting", on: date | None = None,
         admin: bool = False) -> Book:
    cal = cal or calendar()
    start_dt = datetime.fromisoformat(start) if isinstance(start, str) else start
    end_dt = datetime.fromisoformat(end) if isinstance(end, str) else end
    start_utc = to_utc(start_dt, cal.tz)
    end_utc = to_utc(end_dt, cal.tz)
    n = next(_counter)
    return Book(f"c{n}", actor, cal.id, on or start_utc.astimezone(cal.tz).date(), f"b{n}",
                start_utc, end_utc, title, admin=admin)


def cancel(booking_id: str, *, actor: str = "alice", on: date = DAY, admin: bool = False,
           cal_id: str = "main") -> Cancel:
    n = next(_counter)
    return Cancel(f"c{n}", actor, cal_id, on, booking_id, admin=admin)


def at(hour: int, minute: int = 0, on: date = DAY) -> str:
    return (datetime.combine(on, datetime.min.time()) + timedelta(hours=hour, minutes=minute)
            ).isoformat()
