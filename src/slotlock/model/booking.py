"""A booking: a half-open interval [start, end) of one local day, in UTC inside the model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .timeutil import parse_instant, rfc3339


@dataclass(frozen=True, slots=True)
class Booking:
    id: str
    calendar: str
    start: datetime
    end: datetime
    title: str
    owner: str
    created_at: datetime

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end

    def to_dict(self, tz: ZoneInfo) -> dict[str, Any]:
        return {
            "id": self.id,
            "calendar": self.calendar,
            "start": rfc3339(self.start, tz),
            "end": rfc3339(self.end, tz),
            "title": self.title,
            "owner": self.owner,
            "created_at": rfc3339(self.created_at, tz),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Booking:
        return cls(
            id=data["id"],
            calendar=data["calendar"],
            start=parse_instant(data["start"]),
            end=parse_instant(data["end"]),
            title=data["title"],
            owner=data["owner"],
            created_at=parse_instant(data["created_at"]),
        )
