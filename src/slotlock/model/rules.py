"""The rules, one small function each: ``rule(day, booking) -> Violation | None``.

Adding a business rule means adding a function here and listing it in ``BOOKING_RULES``;
the worker, the store and the web layer do not change.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .booking import Booking
from .day import Day
from .timeutil import local_date


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Rule = Callable[[Day, Booking], "Violation | None"]

# control (tabs, newlines, NUL), format (bidi overrides, zero-width), line/paragraph separators
FORBIDDEN_IN_TITLES = frozenset({"Cc", "Cf", "Zl", "Zp"})
CONFLICTS_SHOWN = 5  # bookings given in full in a refusal (every outcome is stored: G8)
CONFLICT_IDS_SHOWN = 50


def conflict_details(day: Day, conflicts: list[Booking]) -> dict[str, Any]:
    """``conflicts``: the first few bookings in the way, in full; ``conflict_ids``: more of
    their ids; ``conflicts_total``: how many there are. Bounded whatever the day holds."""
    tz = day.calendar.tz
    return {"conflicts": [b.to_dict(tz) for b in conflicts[:CONFLICTS_SHOWN]],
            "conflict_ids": [b.id for b in conflicts[:CONFLICT_IDS_SHOWN]],
            "conflicts_total": len(conflicts)}


def booking_window(day: Day, booking: Booking, now: datetime, admin: bool) -> Violation | None:
    """A booking starts no earlier than now (admins excepted) and at most ``horizon_days``
    after today in the calendar's zone: no request can fill Redis with far-off days (G8)."""
    if booking.start < now and not admin:
        return Violation("rule_violation", "a booking may not start in the past",
                         {"rule": "past"})
    horizon = day.calendar.rules.horizon_days
    if horizon and day.date > local_date(now, day.calendar.tz) + timedelta(days=horizon):
        return Violation(
            "rule_violation",
            f"bookings open at most {horizon} days ahead on this calendar",
            {"rule": "horizon", "horizon_days": horizon},
        )
    return None


def title_limits(day: Day, booking: Booking) -> Violation | None:
    limit = day.calendar.rules.max_title_length
    title = booking.title
    if not title.strip() or len(title) > limit:
        return Violation("invalid", f"a title has 1 to {limit} characters", {"field": "title"})
    if any(unicodedata.category(ch) in FORBIDDEN_IN_TITLES for ch in title):
        return Violation("invalid", "a title may not hold control, format or line/paragraph "
                         "separator characters", {"field": "title"})
    return None


def positive_length(day: Day, booking: Booking) -> Violation | None:
    if booking.end <= booking.start:
        return Violation("invalid", "a booking must end after it starts", {"field": "end"})
    return None


def within_local_day(day: Day, booking: Booking) -> Violation | None:
    opens, closes = day.bounds
    if booking.start < opens or booking.end > closes:
        return Violation(
            "invalid",
            f"a booking lies within one local day ({day.date.isoformat()} in "
            f"{day.calendar.timezone}); it may end at the midnight that closes it",
            {"field": "end" if booking.start >= opens else "start"},
        )
    return None


def buffer_within_day(day: Day, booking: Booking) -> Violation | None:
    """A booking's buffer stays inside its own day.

    Each day is decided alone, so a buffer that reached over midnight would not be seen
    by the neighbouring day's worker: 23:45-24:00 on D and 00:00-00:15 on D+1 would both
    pass a 30-minute buffer. Keeping the buffered span inside the day keeps the guarantee
    on instants: with a buffer of B minutes, bookings keep B minutes from both midnights.
    """
    minutes = day.calendar.rules.buffer_minutes
    if not minutes:
        return None
    buffer = timedelta(minutes=minutes)
    opens, closes = day.bounds
    if booking.start - buffer < opens or booking.end + buffer > closes:
        return Violation(
            "rule_violation",
            f"with a {minutes}-minute buffer, bookings keep {minutes} minutes from midnight "
            "(the buffer may not reach into the next or previous day)",
            {"rule": "buffer", "buffer_minutes": minutes},
        )
    return None


def granularity(day: Day, booking: Booking) -> Violation | None:
    step = timedelta(minutes=day.calendar.rules.granularity_minutes)
    opens, _ = day.bounds
    if (booking.start - opens) % step or (booking.end - opens) % step:
        minutes = day.calendar.rules.granularity_minutes
        return Violation(
            "rule_violation",
            f"bookings start and end on the {minutes}-minute grid",
            {"rule": "granularity", "granularity_minutes": minutes},
        )
    return None


def length_limits(day: Day, booking: Booking) -> Violation | None:
    rules = day.calendar.rules
    minutes = (booking.end - booking.start) / timedelta(minutes=1)
    shortest = rules.min_length_minutes or rules.granularity_minutes
    if minutes < shortest:
        return Violation(
            "rule_violation",
            f"a booking lasts at least {shortest} minutes",
            {"rule": "min_length", "min_length_minutes": shortest},
        )
    if rules.max_length_minutes is not None and minutes > rules.max_length_minutes:
        return Violation(
            "rule_violation",
            f"a booking lasts at most {rules.max_length_minutes} minutes",
            {"rule": "max_length", "max_length_minutes": rules.max_length_minutes},
        )
    return None


def opening_hours(day: Day, booking: Booking) -> Violation | None:
    rules = day.calendar.rules
    tz = day.calendar.tz
    start_local = booking.start.astimezone(tz)
    end_local = booking.end.astimezone(tz)
    too_early = start_local.time() < rules.open_from
    too_late = rules.open_until is not None and (
        end_local.date() > day.date or end_local.time() > rules.open_until
    )
    if too_early or too_late:
        until = rules.open_until.strftime("%H:%M") if rules.open_until else "24:00"
        return Violation(
            "rule_violation",
            f"the calendar is open from {rules.open_from.strftime('%H:%M')} to {until}",
            {"rule": "opening_hours", "open_from": rules.open_from.strftime("%H:%M"),
             "open_until": until},
        )
    return None


def no_overlap(day: Day, booking: Booking) -> Violation | None:
    buffer = timedelta(minutes=day.calendar.rules.buffer_minutes)
    start, end = booking.start - buffer, booking.end + buffer
    conflicts = [b for b in day.bookings if b.start < end and start < b.end]  # hot path
    if conflicts:
        what = "overlaps" if not buffer else f"is within {day.calendar.rules.buffer_minutes} minutes of"
        return Violation(
            "overlap",
            f"this time {what} {len(conflicts)} existing booking(s)",
            conflict_details(day, conflicts),
        )
    return None


def owner_quota(day: Day, booking: Booking) -> Violation | None:
    limit = day.calendar.rules.max_bookings_per_owner
    if limit is None:
        return None
    held = [b for b in day.bookings if b.owner == booking.owner]
    if len(held) >= limit:
        return Violation(
            "quota_exceeded",
            f"{booking.owner} already holds {len(held)} booking(s) on this day (limit {limit})",
            {"limit": limit, **conflict_details(day, held)},
        )
    return None


BOOKING_RULES: tuple[Rule, ...] = (
    title_limits,
    positive_length,
    within_local_day,
    granularity,
    length_limits,
    opening_hours,
    buffer_within_day,
    no_overlap,
    owner_quota,
)


def first_violation(day: Day, booking: Booking, rules: tuple[Rule, ...] = BOOKING_RULES):
    for rule in rules:
        violation = rule(day, booking)
        if violation is not None:
            return violation
    return None
