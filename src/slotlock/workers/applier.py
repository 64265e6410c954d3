"""Decide a batch of stream entries against a day: the pure step between read and commit."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..model import Accepted, Calendar, Day, Rejected, decide, evolve
from ..model.booking import Booking
from ..model.commands import command_from_dict
from ..model.outcomes import BookingCancelled
from ..model.timeutil import from_epoch_ms, rfc3339

log = logging.getLogger("slotlock.worker")


def dumps(value: Any) -> str:
    """Compact JSON (orjson: UTF-8, no spaces; what ``json.dumps(separators=(",", ":"),
    ensure_ascii=False)`` writes)."""
    return orjson.dumps(value).decode()


def stream_time(stream_id: str):
    """A command's ``now``: the Redis server time at which it was appended (its stream id)."""
    return from_epoch_ms(int(stream_id.split("-", 1)[0]))


def load_day(calendar: Calendar, day, bookings: list[dict[str, Any]], version: int) -> Day:
    items = tuple(sorted((Booking.from_dict(b) for b in bookings), key=lambda b: (b.start, b.id)))
    return Day(calendar, day, items, version)


@dataclass
class Batch:
    day: Day
    cursor: str
    outcomes: list[tuple[str, str]] = field(default_factory=list)  # (command id, outcome json)
    events: list[str] = field(default_factory=list)  # outbox entries
    accepted: int = 0

    def bookings_json(self, memo: JsonMemo | None = None) -> str:
        if memo is not None:
            return memo.bookings_json(self.day)
        return dumps(self.day.bookings_dicts())


class JsonMemo:
    """The committed bookings' JSON, kept per booking so that a commit serialises only the
    bookings it adds (a day's state is written whole on every commit). Bookings are frozen
    and ``evolve`` keeps the objects it does not touch, so identity says unchanged."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[Booking, str, str]] = {}

    def bookings_json(self, day: Day) -> str:
        tz = day.calendar.tz
        zone = day.calendar.timezone
        kept: dict[str, tuple[Booking, str, str]] = {}
        parts = []
        for booking in day.bookings:
            cached = self._by_id.get(booking.id)
            if cached is None or cached[0] is not booking or cached[1] != zone:
                cached = (booking, zone, dumps(booking.to_dict(tz)))
            kept[booking.id] = cached
            parts.append(cached[2])
        self._by_id = kept
        return "[" + ",".join(parts) + "]"


def event_record(part: str, stream_id: str, outcome: Accepted, tz) -> dict[str, Any]:
    event = outcome.event
    kind = "booking.cancelled" if isinstance(event, BookingCancelled) else "booking.created"
    return {
        "event_id": f"{part}/{stream_id}",
        "type": kind,
        "calendar": event.booking.calendar,
        "booking": event.booking.to_dict(tz),
        "command_id": outcome.command_id,
        "at": rfc3339(stream_time(stream_id), tz),
    }


def apply_entries(day: Day, cursor: str, entries: list[tuple[str, str]], part: str,
                  with_events: bool) -> Batch:
    """Decide ``entries`` in stream order, each against the day as the ones before left it."""
    batch = Batch(day, cursor)
    tz = day.calendar.tz
    revision = day.calendar.revision
    for stream_id, raw in entries:
        now = stream_time(stream_id)
        data = None
        try:
            data = orjson.loads(raw)
            command = command_from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:  # orjson.JSONDecodeError is a ValueError
            command_id = data.get("command_id") if isinstance(data, dict) else None
            outcome = Rejected(command_id or f"unreadable-{stream_id}", "invalid",
                               f"unreadable command: {exc}")
            kind = None
        else:
            kind = command.kind
            try:
                outcome = decide(batch.day, command, now)
            except Exception as exc:  # noqa: BLE001 - one bad entry must not stop its day
                log.error("entry %s of %s (command %s) cannot be decided: %s: %s; rejected as "
                          "internal", stream_id, part, command.command_id, type(exc).__name__, exc)
                outcome = Rejected(command.command_id, "internal",
                                   "this command could not be decided; it was not applied",
                                   {"stream_id": stream_id})
        if isinstance(outcome, Accepted):
            batch.day = evolve(batch.day, outcome.event)
            batch.accepted += 1
            if with_events:
                batch.events.append(dumps(event_record(part, stream_id, outcome, tz)))
        record = outcome.to_dict(tz)
        record["kind"] = kind
        record["stream_id"] = stream_id
        record["rules_revision"] = revision
        batch.outcomes.append((outcome.command_id, dumps(record)))
        batch.cursor = stream_id
    return batch
