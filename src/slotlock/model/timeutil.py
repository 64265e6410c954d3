"""Local days, time zones and RFC 3339, with daylight-saving days handled explicitly.

Internally every instant is an aware ``datetime`` in UTC: Python compares and
subtracts two datetimes that share a ``ZoneInfo`` by wall clock, ignoring ``fold``,
which is wrong on the 25-hour day. Local time is only for parsing and display.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TimeError(ValueError):
    """A time that cannot be used: unknown zone, missing offset rules, a local time in a gap."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeError(f"unknown time zone {name!r}") from exc


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Read a wall-clock time in ``tz``; an ambiguous time takes its first occurrence.

    A time that does not exist (inside the spring-forward gap) is refused rather
    than silently shifted by an hour.
    """
    aware = naive.replace(tzinfo=tz, fold=0)
    back = aware.astimezone(UTC).astimezone(tz)
    if back.replace(tzinfo=None) != naive:
        raise TimeError(f"{naive.isoformat()} does not exist in {tz.key} (clocks skip it)")
    return aware.astimezone(UTC)


def to_utc(value: datetime, tz: ZoneInfo) -> datetime:
    """An instant in UTC from a datetime with an offset, or a naive one read in ``tz``."""
    if value.tzinfo is None:
        return localize(value, tz)
    return value.astimezone(UTC)


@lru_cache(maxsize=4096)
def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of local midnight opening and closing ``day`` (23, 24 or 25 h apart)."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def local_date(instant: datetime, tz: ZoneInfo) -> date:
    return instant.astimezone(tz).date()


def rfc3339(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).isoformat()


def parse_instant(text: str) -> datetime:
    """Parse an RFC 3339 string with an offset (as written by :func:`rfc3339`) into UTC."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise TimeError(f"{text!r} has no offset")
    return value.astimezone(UTC)


def from_epoch_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
