"""The day as rows of a table: slots at the calendar's granularity, stepped in UTC.

Stepping in UTC (not in wall-clock time) is what gives a daylight-saving day its 23 or
25 hours of rows; each row is labelled in the calendar's local time, and a wall-clock
time that occurs twice (the autumn hour) carries its zone abbreviation and ``fold``.
Bookings that touch the same slots share one cell that spans them (``rowspan``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ...model import Calendar
from ...model.booking import Booking
from ...model.day import Day
from ...model.rules import opening_hours
from ...model.timeutil import UTC, day_bounds


@dataclass(frozen=True, slots=True)
class Slot:
    start: datetime  # UTC
    end: datetime  # UTC
    label: str  # local "HH:MM", with the zone abbreviation on an ambiguous wall-clock time
    time: str  # local "HH:MM" for the booking form
    fold: int  # 1 for the second occurrence of a repeated wall-clock time
    open: bool


@dataclass(slots=True)
class Entry:
    """One booking as the grid shows it."""

    id: str
    title: str
    owner: str
    start: str  # local "HH:MM"
    end: str
    mine: bool
    can_cancel: bool
    conflict: bool


@dataclass(slots=True)
class Row:
    """A ``<tr>``: ``kind`` is ``free``, ``booked`` (a cell spanning ``span`` rows),
    ``covered`` (inside a booked cell: no cell of its own) or ``closed`` (a run of
    closed slots folded into one row, ``label`` its time range)."""

    kind: str
    slot: Slot
    label: str
    span: int = 1
    entries: list[Entry] = field(default_factory=list)

    @property
    def conflict(self) -> bool:
        return any(e.conflict for e in self.entries)

    @property
    def mine(self) -> bool:
        return any(e.mine for e in self.entries)


def hhmm(instant: datetime, tz: ZoneInfo) -> str:
    return instant.astimezone(tz).strftime("%H:%M")


def until(instant: datetime, tz: ZoneInfo, day: date) -> str:
    """An end time: the midnight that closes ``day`` reads 24:00."""
    local = instant.astimezone(tz)
    return "24:00" if local.date() > day and local.time().hour == local.time().minute == 0 \
        else local.strftime("%H:%M")


def _ambiguous(local: datetime) -> bool:
    return local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()


def slots(calendar: Calendar, day: date) -> list[Slot]:
    tz = calendar.tz
    opens, closes = day_bounds(day, tz)
    step = timedelta(minutes=calendar.rules.granularity_minutes)
    probe = Day(calendar, day)
    out = []
    start = opens
    while start < closes:
        end = min(start + step, closes)
        local = start.astimezone(tz)
        label = local.strftime("%H:%M")
        if _ambiguous(local):
            label = f"{label} {local.tzname()}"
        is_open = opening_hours(probe, Booking("probe", calendar.id, start, end, "probe", "-",
                                               start)) is None
        out.append(Slot(start, end, label, local.strftime("%H:%M"), local.fold, is_open))
        start = end
    return out


def _entry(data: dict[str, Any], tz: ZoneInfo, day: date, user: str, admin: bool,
           conflicts: set[str]) -> tuple[Booking, Entry]:
    booking = Booking.from_dict(data)
    return booking, Entry(booking.id, booking.title, booking.owner, hhmm(booking.start, tz),
                          until(booking.end, tz, day), booking.owner == user,
                          booking.owner == user or admin, booking.id in conflicts)


def rows(calendar: Calendar, day: date, bookings: list[dict[str, Any]], *, user: str,
         admin: bool = False, conflicts: set[str] | frozenset[str] = frozenset()) -> list[Row]:
    tz = calendar.tz
    placed = sorted((_entry(b, tz, day, user, admin, set(conflicts)) for b in bookings),
                    key=lambda pair: (pair[0].start, pair[0].id))
    out: list[Row] = []
    cell: Row | None = None
    cell_end = datetime.min.replace(tzinfo=UTC)
    pending = list(placed)
    for slot in slots(calendar, day):
        touching = [pair for pair in pending if pair[0].start < slot.end and slot.start < pair[0].end]
        if cell is not None and slot.start < cell_end:
            for pair in touching:
                cell.entries.append(pair[1])
                cell_end = max(cell_end, pair[0].end)
                pending.remove(pair)
            cell.span += 1
            out.append(Row("covered", slot, slot.label))
            continue
        cell = None
        if touching:
            cell = Row("booked", slot, slot.label, entries=[p[1] for p in touching])
            cell_end = max(p[0].end for p in touching)
            for pair in touching:
                pending.remove(pair)
            out.append(cell)
        elif not slot.open:
            last = out[-1] if out else None
            if last is not None and last.kind == "closed":
                last.label = f"{last.label.split('–')[0]}–{until(slot.end, tz, day)}"
                last.slot = Slot(last.slot.start, slot.end, last.slot.label, last.slot.time,
                                 last.slot.fold, False)
            else:
                out.append(Row("closed", slot, f"{slot.time}–{until(slot.end, tz, day)}"))
        else:
            out.append(Row("free", slot, slot.label))
    return out
