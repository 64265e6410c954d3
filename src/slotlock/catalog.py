"""Calendars in Redis, with every revision of their rules kept for the audit."""

from __future__ import annotations

import json

import redis

from .days.keys import CALENDARS, calendar_key, calendar_revisions_key
from .errors import UnknownCalendar
from .model import Calendar

DEFAULT_CALENDAR_ID = "main"


class Catalog:
    def __init__(self, client: redis.Redis):
        self.client = client

    def find(self, calendar_id: str) -> Calendar | None:
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
        raws = self.client.mget([calendar_key(i) for i in ids])
        return [Calendar.from_dict(json.loads(raw)) for raw in raws if raw]

    def revision(self, calendar_id: str, revision: int) -> Calendar | None:
        raw = self.client.hget(calendar_revisions_key(calendar_id), str(revision))
        return Calendar.from_dict(json.loads(raw)) if raw else None

    def put(self, calendar: Calendar) -> tuple[Calendar, bool]:
        """Create or change a calendar; a change gets the next revision. Returns (stored, changed)."""
        key = calendar_key(calendar.id)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = Calendar.from_dict(json.loads(raw)) if raw else None
                    if current is not None:
                        candidate = calendar.with_changes(revision=current.revision)
                        if candidate == current:
                            pipe.unwatch()
                            return current, False
                        calendar = calendar.with_changes(revision=current.revision + 1)
                    else:
                        calendar = calendar.with_changes(revision=1)
                    data = json.dumps(calendar.to_dict(), sort_keys=True)
                    pipe.multi()
                    pipe.set(key, data)
                    pipe.hset(calendar_revisions_key(calendar.id), str(calendar.revision), data)
                    pipe.sadd(CALENDARS, calendar.id)
                    pipe.execute()
                    return calendar, True
                except redis.WatchError:
                    continue

    def ensure_default(self, timezone: str) -> tuple[Calendar, bool]:
        """The calendar ``main`` (15-minute slots, no overlap, open all day), made once."""
        current = self.find(DEFAULT_CALENDAR_ID)
        if current is not None:
            return current, False
        return self.put(Calendar(DEFAULT_CALENDAR_ID, "Main", timezone))
