"""Opaque ids that still say which day they belong to, so any process can route them.

command id ``<calendar>.<yyyymmdd>.<random>``; booking id ``<yyyymmdd>.<random>``.
"""

from __future__ import annotations

import re
import secrets
from datetime import date

from .errors import InvalidRequest

_COMMAND = re.compile(r"^([a-z0-9][a-z0-9_-]{0,63})\.(\d{8})\.([0-9a-f]{16,32})$")
_BOOKING = re.compile(r"^(\d{8})\.([0-9a-f]{16,32})$")


def new_ids(calendar_id: str, day: date) -> tuple[str, str]:
    """A fresh command id and the id its booking will have if a ``book`` is accepted."""
    rand = secrets.token_hex(8)
    stamp = day_stamp(day)
    return f"{calendar_id}.{stamp}.{rand}", f"{stamp}.{rand}"


def day_stamp(day: date) -> str:
    """``yyyymmdd``, zero-padded (``strftime("%Y")`` drops the zeros of years below 1000)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _day(stamp: str) -> date:
    try:
        return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8]))
    except ValueError as exc:
        raise InvalidRequest(f"no such date {stamp}") from exc


def parse_command_id(command_id: str) -> tuple[str, date]:
    match = _COMMAND.match(command_id)
    if not match:
        raise InvalidRequest(f"{command_id!r} is not a command id")
    return match.group(1), _day(match.group(2))


def parse_booking_id(booking_id: str) -> date:
    match = _BOOKING.match(booking_id)
    if not match:
        raise InvalidRequest(f"{booking_id!r} is not a booking id")
    return _day(match.group(1))
