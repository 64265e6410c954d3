"""Calendars in Redis, with every revision of their rules kept for the audit."""

from __future__ import annotations

import json

import redis

from . import legacy_keys
from .days.keys import (CALENDARS, calendar_changes_key, calendar_key, calendar_revisions_key,
                        legacy_calendar_keys)
from .days.scripts import Scripts
from .errors import UnknownCalendar, ZoneLocked
from .model import Calendar
from .model.calendar import CALENDAR_ID

DEFAULT_CALENDAR_ID = "main"
CHANGES_KEPT = 16  # entries of a calendar's change stream (workers need only the last)


class Catalog:
    def __init__(self, client: redis.Redis, scripts: Scripts | None = None):
        self.client = client
        self._scripts = scripts

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            self._scripts = Scripts(self.client)
        return self._scripts

    @staticmethod
    def parse(raw: str) -> dict:
        return json.loads(raw)

    def queue_raw(self, pipe, calendar_id: str) -> None:
        """Queue a read of the calendar's stored JSON on a pipeline (see ``parse``)."""
        pipe.get(calendar_key(calendar_id))

    @staticmethod
    def queue_last_change(pipe, calendar_id: str) -> None:
        """Queue a read of the calendar's last change entry (see ``change_id``). Queue it
        *before* ``queue_raw``: a change between the two is then seen again, never missed."""
        pipe.xrevrange(calendar_changes_key(calendar_id), count=1)

    @staticmethod
    def change_id(reply) -> str:
        return reply[0][0] if reply else "0-0"

    def find(self, calendar_id: str) -> Calendar | None:
        if not isinstance(calendar_id, str) or not CALENDAR_ID.match(calendar_id):
            return None  # no key is built from an id that cannot be a calendar's
        raw = self.client.get(calendar_key(calendar_id))
        return Calendar.from_dict(json.loads(raw)) if raw else None

    def get(self, calendar_id: str) -> Calendar:
        calendar = self.find(calendar_id)
        if calendar is None:
            raise UnknownCalendar(calendar_id)
        return calendar

    def all(self) -> list[Calendar]:
        ids = sorted(self.client.smembers(CALENDARS))
        if not ids:
            return []
        with self.client.pipeline(transaction=False) as pipe:  # one slot per calendar
            for calendar_id in ids:
                pipe.get(calendar_key(calendar_id))
            raws = pipe.execute()
        return [Calendar.from_dict(json.loads(raw)) for raw in raws if raw]

    def revision(self, calendar_id: str, revision: int) -> Calendar | None:
        raw = self.client.hget(calendar_revisions_key(calendar_id), str(revision))
        return Calendar.from_dict(json.loads(raw)) if raw else None

    def put(self, calendar: Calendar) -> tuple[Calendar, bool]:
        """Create or change a calendar; a change gets the next revision. Returns (stored, changed).

        Refuses (``ZoneLocked``) to change the time zone of a calendar in use: the check and
        the write are one transaction on the calendar's key, which ``lock_zone`` also writes.
        """
        key = calendar_key(calendar.id)
        old_lock = legacy_keys.old_zone_lock(self.client, calendar.id)
        if old_lock is not None:  # an old web process locked its zone: so is it here
            if calendar.timezone != old_lock:
                raise ZoneLocked(calendar.id, old_lock, calendar.timezone)
            if self.find(calendar.id) is not None:
                self.lock_zone(calendar.id, old_lock)  # kept when mirrored back
        # listed before it exists (the list is in another slot than the calendar): a
        # listed id whose calendar is missing is skipped by every reader
        self.client.sadd(CALENDARS, calendar.id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    stored = json.loads(raw) if raw else None
                    current = Calendar.from_dict(stored) if stored else None
                    locked = bool(stored and stored.get("zone_locked"))
                    if current is not None:
                        if locked and calendar.timezone != current.timezone:
                            pipe.unwatch()
                            raise ZoneLocked(calendar.id, current.timezone, calendar.timezone)
                        candidate = calendar.with_changes(revision=current.revision)
                        if candidate == current:
                            pipe.unwatch()
                            legacy_keys.mirror(self.client, legacy_calendar_keys(calendar.id))
                            return current, False
                        calendar = calendar.with_changes(revision=current.revision + 1)
                    else:
                        calendar = calendar.with_changes(revision=1)
                    record = calendar.to_dict()
                    if locked:
                        record["zone_locked"] = True
                    data = json.dumps(record, sort_keys=True)
                    pipe.multi()
                    pipe.set(key, data)
                    pipe.hset(calendar_revisions_key(calendar.id), str(calendar.revision), data)
                    pipe.xadd(calendar_changes_key(calendar.id), {"r": calendar.revision},
                              maxlen=CHANGES_KEPT, approximate=False)
                    pipe.execute()
                    legacy_keys.mirror(self.client, legacy_calendar_keys(calendar.id))
                    return calendar, True
                except redis.WatchError:
                    continue

    def lock_zone(self, calendar_id: str, timezone: str) -> str | None:
        """Freeze the calendar's zone at ``timezone`` before a command computed in it is queued.

        Returns None when the zone is (now) locked at ``timezone``, else the calendar's
        current zone, which the caller must read and compute in again.
        """
        result = self.scripts.lock_zone(keys=[calendar_key(calendar_id)], args=[timezone])
        if int(result[0]) == 1:
            return None
        if result[1] == "missing":
            raise UnknownCalendar(calendar_id)
        return result[1]

    def lock_zones_in_use(self, parts) -> list[str]:
        """Lock the zone of every calendar that has a day among ``parts`` (``slotlock migrate``:
        calendars written before zones were locked)."""
        locked = []
        for calendar_id in sorted({p.rpartition(":")[0] for p in parts}):
            current = self.find(calendar_id)
            if current is not None and self.lock_zone(calendar_id, current.timezone) is None:
                locked.append(calendar_id)
        return locked

    def ensure_default(self, timezone: str) -> tuple[Calendar, bool]:
        """The calendar ``main`` (15-minute slots, no overlap, open all day), made once."""
        current = self.find(DEFAULT_CALENDAR_ID)
        if current is not None:
            return current, False
        return self.put(Calendar(DEFAULT_CALENDAR_ID, "Main", timezone))
