"""Calendars and the rule set in force on them."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import time
from typing import Any

from .timeutil import TimeError, zone

CALENDAR_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Rules:
    """The business rules of one calendar. Every field has a small rule in ``rules.py``.

    ``open_from``/``open_until`` are local wall-clock times; ``open_until`` of
    ``None`` means the day's closing midnight.
    """

    granularity_minutes: int = 15
    min_length_minutes: int | None = None  # defaults to one slot
    max_length_minutes: int | None = None  # no maximum
    open_from: time = time(0)
    open_until: time | None = None
    buffer_minutes: int = 0
    max_bookings_per_owner: int | None = None  # per day; over it: quota_exceeded
    max_title_length: int = 200
    horizon_days: int = 365  # bookings start at most this many days after today; 0: no limit

    def __post_init__(self) -> None:
        if not 1 <= self.granularity_minutes <= 24 * 60:
            raise ValueError("granularity_minutes must be between 1 and 1440")
        if self.min_length_minutes is not None and self.min_length_minutes < 1:
            raise ValueError("min_length_minutes must be positive")
        if self.max_length_minutes is not None and self.max_length_minutes < 1:
            raise ValueError("max_length_minutes must be positive")
        if self.buffer_minutes < 0:
            raise ValueError("buffer_minutes must not be negative")
        if self.max_bookings_per_owner is not None and self.max_bookings_per_owner < 1:
            raise ValueError("max_bookings_per_owner must be positive")
        if self.horizon_days < 0:
            raise ValueError("horizon_days must not be negative (0: no limit)")
        if not 1 <= self.max_title_length <= 200:
            raise ValueError("max_title_length must be between 1 and 200")
        if self.open_until is not None and self.open_until <= self.open_from:
            raise ValueError("open_until must be after open_from")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["open_from"] = self.open_from.strftime("%H:%M")
        data["open_until"] = self.open_until.strftime("%H:%M") if self.open_until else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rules:
        data = dict(data)
        if isinstance(data.get("open_from"), str):
            data["open_from"] = time.fromisoformat(data["open_from"])
        if isinstance(data.get("open_until"), str):
            until = data["open_until"]
            data["open_until"] = None if until in ("24:00", "") else time.fromisoformat(until)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True, slots=True)
class Calendar:
    """A bookable resource. ``revision`` grows on every change of its rules."""

    id: str
    name: str
    timezone: str = "UTC"
    rules: Rules = field(default_factory=Rules)
    revision: int = 1
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        if not CALENDAR_ID.match(self.id):
            raise ValueError(
                f"calendar id {self.id!r} must be 1-64 characters of a-z, 0-9, '_' and '-'"
            )
        if not self.name or len(self.name) > 200:
            raise ValueError("calendar name must have 1-200 characters")
        try:
            zone(self.timezone)
        except TimeError as exc:
            raise ValueError(str(exc)) from exc

    @property
    def tz(self):
        return zone(self.timezone)

    def with_changes(self, **changes: Any) -> Calendar:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "timezone": self.timezone,
            "rules": self.rules.to_dict(),
            "revision": self.revision,
            "webhook_url": self.webhook_url,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calendar:
        return cls(
            id=data["id"],
            name=data["name"],
            timezone=data.get("timezone", "UTC"),
            rules=Rules.from_dict(data.get("rules") or {}),
            revision=int(data.get("revision", 1)),
            webhook_url=data.get("webhook_url"),
        )
