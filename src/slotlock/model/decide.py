"""``decide(day, command, now) -> outcome``: the one place where the rules are applied."""

from __future__ import annotations

from datetime import datetime

from .booking import Booking
from .commands import Book, Cancel, Command
from .day import Day
from .outcomes import Accepted, BookingCancelled, BookingMade, Outcome, Rejected
from .rules import booking_window, first_violation


def decide(day: Day, command: Command, now: datetime) -> Outcome:
    if command.calendar != day.calendar.id or command.date != day.date:
        return Rejected(
            command.command_id,
            "invalid",
            f"command for {command.calendar}/{command.date} sent to "
            f"{day.calendar.id}/{day.date}",
        )
    if isinstance(command, Book):
        return _decide_book(day, command, now)
    if isinstance(command, Cancel):
        return _decide_cancel(day, command, now)
    raise TypeError(f"not a command: {command!r}")  # pragma: no cover


def _decide_book(day: Day, command: Book, now: datetime) -> Outcome:
    if day.find(command.booking_id) is not None:
        return Rejected(command.command_id, "invalid", "a booking with this id exists already")
    booking = Booking(
        id=command.booking_id,
        calendar=command.calendar,
        start=command.start,
        end=command.end,
        title=command.title,
        owner=command.actor,
        created_at=now,
    )
    violation = booking_window(day, booking, now, command.admin) or first_violation(day, booking)
    if violation is not None:
        return Rejected(command.command_id, violation.code, violation.message, violation.details)
    return Accepted(command.command_id, BookingMade(booking))


def _decide_cancel(day: Day, command: Cancel, now: datetime) -> Outcome:
    booking = day.find(command.booking_id)
    if booking is None:
        return Rejected(
            command.command_id,
            "not_found",
            f"no booking {command.booking_id} on {day.calendar.id} {day.date.isoformat()}",
            {"booking_id": command.booking_id},
        )
    if booking.owner != command.actor and not command.admin:
        return Rejected(
            command.command_id,
            "forbidden",
            "only the owner of a booking or an admin may cancel it",
            {"booking_id": booking.id, "owner": booking.owner},
        )
    return Accepted(command.command_id, BookingCancelled(booking, command.actor, now))
