"""What wakes a lease worker: the wake-up stream, the streams of the days it holds, and
the change streams of their calendars.

One ``XREAD`` reads them all. The wake-up stream (``sl:ready``) tells of days nobody may
hold yet (a first command, a released lease); the streams of the days this worker holds are
read from their cursors, so a new command on a held day comes back *with* the read that
waits for it, and the batch needs no second read (``OwnedDay.prefetched``). A batch decides
under the calendar it read, unless a change of the calendar came since: every rules
revision writes an entry to the calendar's change stream in the transaction that writes the
calendar (``Catalog.put``), the same ``XREAD`` watches it from the last change seen, and a
change marks the held days of that calendar stale, so their next batch reads the calendar
again. A command queued after a change is therefore not decided under the rules before
it: the change entry is older than the command, and the read that returns the command also
returns it, or an earlier read did (a read pipeline reads the change, the calendar, then
the commands, in that order). Not covered: a change that lands between a batch's decision
and its commit (README, Known limits).

A read watches the held days that worked last (at most ``WATCH_MAX``, each within
``WATCH_S`` of its last commit) and more than once (``leases.HOT_AFTER``): a worker may hold
thousands of days for a while after one command each, a read names every day it watches,
and a day that got one command (a fresh day per request) seldom gets a second one soon
(watching the 64 that worked last packed the names and ids of 64 streams that brought
nothing into every read). A wake-up entry naming a watched day is dropped: its command
was appended before the entry, so it is at or before the day's cursor (decided), or after
it, where the next read, which watches the day at its cursor, finds it. The day is marked as owing that read (``OwnedDay.wake_owed``) until a read that
watches it is sent; a day that stops being watched while it owes one is marked dirty, so its
next batch reads it. A wake-up entry naming a held day that is not watched marks it dirty.

After a commit the worker reads the wake-up stream in the commit's own pipeline (``queue``
and ``took``): the submit that woke it also wrote a wake-up entry, and reading it there
saves the round trip of a blocking read that would return at once.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import redis

from ..days.index import WorkIndex
from ..days.keys import READY, calendar_changes_key
from ..redis_conn import is_cluster_client
from .leases import LeaseBook, OwnedDay
from .shard_readers import ShardReaders

log = logging.getLogger("slotlock.worker")

WAKE_COUNT = 1000  # wake-up entries, and commands per held day, per read
WATCH_MAX = 64  # held days one read watches: the hot ones (leases.HOT_AFTER) that worked last
WATCH_S = 1.0  # a held day is watched this long after its last commit


class Wakeups:
    def __init__(self, client: redis.Redis, blocking: redis.Redis, index: WorkIndex,
                 leases: LeaseBook, batch_size: int, stopping: Callable[[], bool]):
        self.client = client
        self.blocking = blocking
        self.index = index
        self.leases = leases
        self.batch_size = batch_size
        self.stopping = stopping
        self.wake_id: str | None = None
        self.change_seen: dict[str, str] = {}  # calendar id -> its last change entry read
        self.watching: set[str] = set()  # the held days the last read watched
        # On a Redis Cluster one XREAD reads keys of one slot, and the wake-ups are sharded
        # (``days/index.py``'s ``Shards``): a thread per shard reads them
        # (``shard_readers.py``), and no held day is watched (its command marks it dirty by
        # its wake-up entry, and its batch reads the calendar with the commands).
        self.readers = (ShardReaders(blocking, index, WAKE_COUNT)
                        if is_cluster_client(client) else None)
        self.watch = self.readers is None
        self.ready_keys = set(index.shards.ready_keys.values())

    def reset(self) -> None:
        """After a Redis error: read the wake-up stream from its end again (the shard
        readers of a cluster do so themselves)."""
        self.wake_id = None

    def close(self) -> None:
        if self.readers is not None:
            self.readers.close()

    def _start_id(self) -> str:
        if self.wake_id is None:
            self.wake_id = self.index.last_wakeup_id()
        return self.wake_id

    def watched(self) -> dict[str, OwnedDay | str]:
        """The held days the next read watches: clean, hot ones (``leases.HOT_AFTER``) whose
        state and cursor we know, that worked last. Days that stop being watched while they
        owe a read are made dirty (see the module's docstring)."""
        since = time.monotonic() - WATCH_S if self.watch else float("inf")
        hot = []
        for owned in reversed(self.leases.hot.values()):  # the one that worked last first
            if owned.last_work < since or len(hot) == WATCH_MAX:
                break
            if not owned.dirty and owned.day is not None:
                hot.append(owned)
        watching = {owned.keys.part for owned in hot}
        for part in self.watching - watching:
            owned = self.leases.owned.get(part)
            if owned is not None and owned.wake_owed:
                owned.wake_owed = False
                owned.dirty = True
        self.watching = watching
        for owned in hot:
            owned.wake_owed = False  # the read about to be sent covers every earlier entry
        return {owned.keys.cmds: owned for owned in hot}

    def read(self, block_ms: int | None) -> None:
        """One ``XREAD`` of the wake-up stream and the watched days (blocking up to
        ``block_ms`` on the blocking connection, or not at all), then take in what it
        brought (which may acquire free days)."""
        streams, watched = self.prepare()
        self.take(self.fetch(streams, block_ms), watched)

    def fetch(self, streams: dict[str, str], block_ms: int | None):
        """The ``XREAD`` of ``read``, of the streams ``prepare`` named (on a cluster: what
        the shard readers brought)."""
        if self.readers is not None:
            self.readers.start()
            return self.readers.fetch(block_ms)
        if block_ms is None:
            return self.client.xread(streams, count=WAKE_COUNT)
        return self.blocking.xread(streams, count=WAKE_COUNT, block=block_ms)

    def prepare(self) -> tuple[dict[str, str], dict]:
        """The streams the next read names, from which ids, and what each one watches."""
        watched = self.watched()
        if self.readers is not None:
            return {}, watched
        streams = {READY: self._start_id()}
        streams.update((key, owned.cursor) for key, owned in watched.items())
        changes: dict[str, str] = {}  # calendar id -> read its changes after this id
        for owned in watched.values():
            since = changes.get(owned.calendar_id)
            if since is None or (owned.change_id != since
                                 and _order(owned.change_id) < _order(since)):
                changes[owned.calendar_id] = owned.change_id
        for calendar_id, since in changes.items():
            seen = self.change_seen.get(calendar_id, "0-0")
            key = calendar_changes_key(calendar_id)
            # days whose change id is older than the last seen are already marked stale
            streams[key] = since if since == seen else max(since, seen, key=_order)
            watched[key] = calendar_id
        return streams, watched

    @property
    def queued_reads(self) -> int:
        """Commands ``queue`` queues: none on a cluster (the shard readers read)."""
        return 0 if self.readers is not None else 1

    def queue(self, pipe) -> None:
        """Queue a read of the wake-up stream alone on a pipeline (see ``took``)."""
        if self.readers is None:
            pipe.xread({READY: self._start_id()}, count=WAKE_COUNT)

    def took(self, reply) -> None:
        """Take in the reply of ``queue`` (``None`` on a cluster: what the shard readers
        brought, without waiting)."""
        self.take(self.readers.fetch(None) if self.readers is not None else reply, {})

    def take(self, reply, watched: dict) -> None:
        """Take in a reply of ``fetch`` (kept apart so that a signal may cut the wait short,
        the lease worker's ``_Wake``, but never what follows it)."""
        now = time.monotonic()
        for stream, entries in reply or ():
            if stream in self.ready_keys:
                self._wakeups(entries, now)
                continue
            owned = watched.get(stream)
            if owned is None or not entries:
                continue
            if isinstance(owned, str):
                self._changed(owned, entries[-1][0])
                continue
            if self.leases.owned.get(owned.keys.part) is not owned:
                continue  # let go of since the read was sent
            owned.prefetched = (owned.cursor, entries[:self.batch_size])
            owned.read_score = None  # read with no score: the day stays in the index
            owned.dirty = True

    def _changed(self, calendar_id: str, change_id: str) -> None:
        """A rules revision of ``calendar_id``: its held days read the calendar again."""
        self.change_seen[calendar_id] = change_id
        for owned in self.leases.owned.values():
            if (owned.calendar_id == calendar_id
                    and _order(owned.change_id) < _order(change_id)):
                owned.calendar_stale = True

    def _wakeups(self, entries, now: float) -> None:
        free: list[str] = []  # days nobody held when their wake-up was written
        for entry_id, fields in entries:
            self.wake_id = entry_id  # carry the last id seen, never "$"
            part = fields.get("p")
            if not part:
                continue
            if fields.get("r"):
                self.leases.retry_at.pop(part, None)  # its holder let go: no wait for expiry
            owned = self.leases.owned.get(part)
            if owned is not None:
                if part in self.watching:
                    owned.wake_owed = True  # the next read that watches it covers it
                else:
                    owned.dirty = True
                continue
            if not self.stopping() and (fields.get("r")
                                        or self.leases.retry_at.get(part, 0.0) <= now):
                # a released lease is free now: don't wait for its old expiry
                free.append(part)
        if free:
            self.leases.try_acquire_many(free, now)  # one round trip for all of them


def _order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
