"""Outcomes of deciding a command. A rejection is a value, never an exception."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .booking import Booking
from .timeutil import parse_instant, rfc3339


@dataclass(frozen=True, slots=True)
class BookingMade:
    booking: Booking

    kind = "booked"


@dataclass(frozen=True, slots=True)
class BookingCancelled:
    booking: Booking
    cancelled_by: str
    at: datetime

    kind = "cancelled"


Event = BookingMade | BookingCancelled


@dataclass(frozen=True, slots=True)
class Accepted:
    command_id: str
    event: Event

    status = "accepted"

    def to_dict(self, tz: ZoneInfo) -> dict[str, Any]:
        data: dict[str, Any] = {
            "command_id": self.command_id,
            "status": "accepted",
            "event": self.event.kind,
            "booking": self.event.booking.to_dict(tz),
        }
        if isinstance(self.event, BookingCancelled):
            data["cancelled_by"] = self.event.cancelled_by
            data["cancelled_at"] = rfc3339(self.event.at, tz)
        return data


@dataclass(frozen=True, slots=True)
class Rejected:
    command_id: str
    code: str  # overlap, quota_exceeded, rule_violation, invalid, not_found, forbidden
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    status = "rejected"

    def to_dict(self, tz: ZoneInfo | None = None) -> dict[str, Any]:
        return {
            "command_id": self.command_id,
            "status": "rejected",
            "error": {"code": self.code, "message": self.message, "details": self.details},
        }


Outcome = Accepted | Rejected


def outcome_from_dict(data: dict[str, Any]) -> Outcome:
    if data["status"] == "rejected":
        err = data["error"]
        return Rejected(data["command_id"], err["code"], err["message"], err.get("details") or {})
    booking = Booking.from_dict(data["booking"])
    if data.get("event") == "cancelled":
        event: Event = BookingCancelled(
            booking, data["cancelled_by"], parse_instant(data["cancelled_at"])
        )
    else:
        event = BookingMade(booking)
    return Accepted(data["command_id"], event)
