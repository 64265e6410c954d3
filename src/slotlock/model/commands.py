"""Commands: requests to change one calendar-day. Imperative names; decided by ``decide``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .timeutil import UTC, parse_instant


@dataclass(frozen=True, slots=True)
class Book:
    command_id: str
    actor: str
    calendar: str
    date: date
    booking_id: str
    start: datetime
    end: datetime
    title: str
    admin: bool = False
    idempotency_key: str | None = None

    kind = "book"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "book",
            "command_id": self.command_id,
            "actor": self.actor,
            "admin": self.admin,
            "calendar": self.calendar,
            "date": self.date.isoformat(),
            "booking_id": self.booking_id,
            "start": self.start.astimezone(UTC).isoformat(),
            "end": self.end.astimezone(UTC).isoformat(),
            "title": self.title,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class Cancel:
    command_id: str
    actor: str
    calendar: str
    date: date
    booking_id: str
    admin: bool = False
    idempotency_key: str | None = None

    kind = "cancel"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "cancel",
            "command_id": self.command_id,
            "actor": self.actor,
            "admin": self.admin,
            "calendar": self.calendar,
            "date": self.date.isoformat(),
            "booking_id": self.booking_id,
            "idempotency_key": self.idempotency_key,
        }


Command = Book | Cancel


def command_from_dict(data: dict[str, Any]) -> Command:
    common = {
        "command_id": data["command_id"],
        "actor": data["actor"],
        "admin": bool(data.get("admin", False)),
        "calendar": data["calendar"],
        "date": date.fromisoformat(data["date"]),
        "booking_id": data["booking_id"],
        "idempotency_key": data.get("idempotency_key"),
    }
    kind = data.get("kind")
    if kind == "book":
        return Book(
            start=parse_instant(data["start"]),
            end=parse_instant(data["end"]),
            title=data["title"],
            **common,
        )
    if kind == "cancel":
        return Cancel(**common)
    raise ValueError(f"unknown command kind {kind!r}")
