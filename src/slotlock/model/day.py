"""One calendar on one local date: the unit of serialisation. ``evolve`` and ``fold``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from .booking import Booking
from .calendar import Calendar
from .outcomes import BookingCancelled, BookingMade, Event
from .timeutil import day_bounds


@dataclass(frozen=True, slots=True)
class Day:
    calendar: Calendar
    date: date
    bookings: tuple[Booking, ...] = ()  # sorted by start
    version: int = 0

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return day_bounds(self.date, self.calendar.tz)

    def find(self, booking_id: str) -> Booking | None:
        for booking in self.bookings:
            if booking.id == booking_id:
                return booking
        return None

    def with_calendar(self, calendar: Calendar) -> Day:
        return replace(self, calendar=calendar)

    def bookings_dicts(self) -> list[dict[str, Any]]:
        tz = self.calendar.tz
        return [b.to_dict(tz) for b in self.bookings]


def evolve(day: Day, event: Event) -> Day:
    """The day after ``event``; every event moves the version on by one."""
    if isinstance(event, BookingMade):
        bookings = tuple(sorted((*day.bookings, event.booking), key=lambda b: (b.start, b.id)))
    elif isinstance(event, BookingCancelled):
        bookings = tuple(b for b in day.bookings if b.id != event.booking.id)
    else:  # pragma: no cover - exhaustive over Event
        raise TypeError(f"not an event: {event!r}")
    return replace(day, bookings=bookings, version=day.version + 1)


def fold(day: Day, events: Iterable[Event]) -> Day:
    for event in events:
        day = evolve(day, event)
    return day
