"""The days one worker holds: acquire, renew (one round trip a tick), let go.

Each day's lease is a :class:`~slotlock.days.lease.DayLease`; this book keeps them, with
the committed state the worker caches for each day while it holds it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import redis

from ..days.keys import DayKeys, split_partition
from ..days.lease import DayLease
from ..days.scripts import Scripts
from ..days.store import STATE_FIELDS
from ..model import Day
from .applier import JsonMemo

log = logging.getLogger("slotlock.worker")

# Free days asked for in one round trip (a bounded reply). Each day's reply is taken on its
# own (an error fails that day alone), every grant is recorded before any read is taken
# in, and each day's read is used only if its calendar's change stream did not move
# across it (see ``DayBatches.queue_first_read``).
ACQUIRE_CHUNK = 64
# a day that worked this many times under our grant is hot: reads watch it (``Wakeups``);
# one that got a single command (a fresh day per request) seldom gets a second one soon
HOT_AFTER = 2


@dataclass
class OwnedDay:
    keys: DayKeys
    lease: DayLease
    day: Day | None = None  # cached committed state; None: read it again before deciding
    cursor: str = "0-0"
    _dirty: bool = True
    renew_at: float = 0.0
    last_work: float = 0.0
    works: int = 0  # batches committed under this grant (``HOT_AFTER``)
    acquired_at: float = 0.0
    calendar_raw: str | None = None
    calendar_id: str = ""
    change_id: str = "0-0"  # the calendar's last change entry before calendar_raw was read
    calendar_stale: bool = False  # a change came after it: read the calendar again
    wake_owed: bool = False  # a wake-up was dropped: the next watching read must cover it
    # our removal took the day out of the index after the last commands we decided: an
    # idle release needs no look at its score first (``Maintenance.release_idle``)
    unindexed: bool = False
    # the book's set of dirty days, kept with ``dirty`` so the loop never scans every day
    dirty_set: set[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dirty = self._dirty

    @property
    def dirty(self) -> bool:
        """The day has (or may have) commands to decide: its next batch reads it."""
        return self._dirty

    @dirty.setter
    def dirty(self, value: bool) -> None:
        self._dirty = value
        if self.dirty_set is not None:
            if value:
                self.dirty_set.add(self.keys.part)
            else:
                self.dirty_set.discard(self.keys.part)
    # commands a watching read brought back: (the cursor they follow, stream entries)
    prefetched: tuple[str, list] | None = None
    # the day's index score read before the commands of its next batch (None: not read)
    read_score: float | None = None
    # the day's score in the index when this worker last looked (sweep, read): a new one
    # means a command came since
    seen_score: float | None = None
    json_memo: JsonMemo = field(default_factory=JsonMemo)
    noted_at: float = 0.0  # when the jobs were last told of a commit of this day


class LeaseBook:
    def __init__(self, client: redis.Redis, scripts: Scripts, holder: str, ttl_ms: int,
                 renew_interval_ms: int, stats: Counter):
        self.client = client
        self.scripts = scripts
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.renew_s = renew_interval_ms / 1000
        self.stats = stats
        self.owned: dict[str, OwnedDay] = {}
        self.retry_at: dict[str, float] = {}  # days held by others: when their lease may lapse
        # reads a day's calendar, state and commands with its acquisition (DayBatches)
        self.reader = None
        # of the free days about to be taken, those to take (FairShare.admit)
        self.admit: Callable[[list[str], float], list[str]] | None = None
        # parts whose day may be dirty (a superset: check ``owned[part].dirty``)
        self.dirty_parts: set[str] = set()
        self._next_renewal = float("inf")
        # held days, the one that worked last at the end (``worked``)
        self.recent: OrderedDict[str, OwnedDay] = OrderedDict()
        # of those, the days that worked more than once under our grant, in the same order:
        # the ones a read watches (``Wakeups.watched``)
        self.hot: OrderedDict[str, OwnedDay] = OrderedDict()

    def try_acquire(self, part: str, now: float | None = None) -> bool:
        """Take the day's lease if it is free (see ``try_acquire_many``)."""
        if part in self.owned:
            return False
        return self.try_acquire_many([part], now) == 1

    def try_acquire_many(self, parts: list[str], now: float | None = None) -> int:
        """Take the leases of those days that are free, in one round trip for up to
        ``ACQUIRE_CHUNK`` days; with a ``reader`` (the worker's batches) each day's calendar,
        state and commands are read in the same round trip. Days already held are skipped.
        Returns how many were taken."""
        now = time.monotonic() if now is None else now
        parts = [part for part in dict.fromkeys(parts) if part not in self.owned]
        if parts and self.admit is not None:
            parts = self.admit(parts, now)
        if not parts:
            return 0
        reader = self.reader
        if reader is None:
            taken = 0
            for part in parts:
                lease = DayLease(self.client, self.scripts, DayKeys(part), self.holder,
                                 self.ttl_ms)
                taken += self._took(part, lease, lease.acquire(), now) is not None
            return taken
        taken = 0
        for at in range(0, len(parts), ACQUIRE_CHUNK):
            taken += self._acquire_chunk(parts[at:at + ACQUIRE_CHUNK], reader, now)
        return taken

    def _acquire_chunk(self, parts: list[str], reader, now: float) -> int:
        """One round trip: the acquisitions of ``parts``, each reading its day's state and
        commands if granted, among the reads the reader queues around them."""
        leases = {part: DayLease(self.client, self.scripts, DayKeys(part), self.holder,
                                 self.ttl_ms) for part in parts}
        planned = []

        def acquire(pipe, part: str) -> float:
            return leases[part].queue_acquire(pipe, reader.first_read_count, STATE_FIELDS)

        def build(pipe) -> None:
            planned[:] = [reader.queue_first_reads(pipe, parts, acquire)]

        replies = self.scripts.run_pipeline(build, raise_on_error=False)
        reads = planned[0]
        granted: list[OwnedDay] = []
        for part in parts:  # every grant recorded first
            reply = replies[reads.acquire[part]]
            if isinstance(reply, Exception):
                # nothing is known of this day's lease: if the script granted it before
                # failing, the grant lapses after the TTL; try again after that
                self.stats["acquire_errors"] += 1
                log.error("acquiring %s failed: %s", part, reply)
                self.retry_at[part] = now + (self.ttl_ms + 5) / 1000
                continue
            lease = leases[part]
            owned = self._took(part, lease, lease.acquired(reply, reads.started[part]), now)
            if owned is not None:
                granted.append(owned)
        for owned in granted:
            part = owned.keys.part
            try:
                before, reply, after = reads.of(replies, part)
                reader.took_first_read(part, owned, before, *DayLease.granted_read(reply), after)
            except Exception:  # noqa: BLE001 - a poisoned day: its first batch reads it again
                log.exception("taking in the first read of %s", part)
                owned.day, owned.prefetched, owned.read_score = None, None, None
                owned.dirty = True
        return len(granted)

    def _took(self, part: str, lease: DayLease, granted: bool, now: float) -> OwnedDay | None:
        if not granted:
            # try again just after the holder's lease would lapse
            self.retry_at[part] = now + (lease.retry_in_ms + 5) / 1000
            return None
        self.retry_at.pop(part, None)
        self.stats["acquired"] += 1
        owned = OwnedDay(lease.keys, lease, renew_at=now + self.renew_s, last_work=now,
                         acquired_at=now, calendar_id=split_partition(part)[0], dirty_set=self.dirty_parts)
        self._next_renewal = min(self._next_renewal, owned.renew_at)
        self.owned[part] = owned
        self.recent[part] = owned
        # DEBUG: with a fresh day per request this is a line per booking (6 % of the
        # worker's CPU at INFO); the heartbeat counts acquisitions, `slotlock status` shows
        log.debug("acquired %s with token %d", part, lease.token)
        return owned

    def renew_due(self, now: float) -> None:
        """Renew every lease that is due, all in one pipelined round trip; drop those lost."""
        if now < self._next_renewal:
            return
        # renew the ones due soon too, so that renewals bunch up: one pass every half
        # interval or so, not one for each day's own moment
        soon = now + self.renew_s / 2
        due = [(part, owned) for part, owned in self.owned.items() if owned.renew_at <= soon]
        if not due:
            self._next_renewal = min((o.renew_at for o in self.owned.values()),
                                     default=float("inf"))
            return
        started = time.monotonic()
        pipe = self.client.pipeline(transaction=False)
        for _, owned in due:
            owned.lease.queue_renew(pipe)
        try:
            results = pipe.execute()
        except redis.exceptions.NoScriptError:
            self.scripts.load_all()
            raise
        for (part, owned), ok in zip(due, results):
            if owned.lease.renewed(ok, started):
                owned.renew_at = now + self.renew_s
                self.stats["renewals"] += 1
            else:
                self.stats["leases_lost"] += 1
                log.warning("lost lease of %s: expired or passed to another worker", part)
                self.drop(part)
        self._next_renewal = min((o.renew_at for o in self.owned.values()),
                                 default=float("inf"))

    @property
    def expiry_margin_s(self) -> float:
        """How far from its expiry (by our own clock) a lease must be to be acted under."""
        return self.ttl_ms / 4000

    def near_expiry(self, owned: OwnedDay, now: float) -> bool:
        return owned.lease.expires_at - now < self.expiry_margin_s

    def held_clear_of_expiry(self, owned: OwnedDay, now: float) -> bool:
        """``owned`` is still the book's grant of its day, its lease not near expiry:
        nobody else can hold the day yet."""
        return (self.owned.get(owned.keys.part) is owned and owned.lease.held
                and not self.near_expiry(owned, now))

    def next_renewal(self) -> float | None:
        return None if self._next_renewal == float("inf") else self._next_renewal

    def dirty_days(self) -> list[tuple[str, OwnedDay]]:
        """The held days marked dirty."""
        days = []
        for part in list(self.dirty_parts):
            owned = self.owned.get(part)
            if owned is None or not owned.dirty:
                self.dirty_parts.discard(part)  # let go of, or marked by an old grant's object
            else:
                days.append((part, owned))
        return days

    def drop(self, part: str, retry_in_s: float = 0.0) -> OwnedDay | None:
        """Forget a day (its lease is gone or given up); try it again after ``retry_in_s``."""
        self.retry_at[part] = time.monotonic() + retry_in_s if retry_in_s else 0.0
        return self.forget(part)

    def forget(self, part: str) -> OwnedDay | None:
        """Take a day out of the book (its lease is let go of, or lapses)."""
        self.recent.pop(part, None)
        self.hot.pop(part, None)
        return self.owned.pop(part, None)

    def worked(self, owned: OwnedDay, now: float) -> None:
        owned.last_work = now
        owned.works += 1
        part = owned.keys.part
        if self.recent.get(part) is owned:
            self.recent.move_to_end(part)
            if owned.works >= HOT_AFTER:
                self.hot[part] = owned
                self.hot.move_to_end(part)

    def release(self, part: str) -> None:
        owned = self.forget(part)
        if owned is not None:
            owned.lease.release()
            self.stats["released"] += 1

    def release_all(self) -> list[str]:
        parts = list(self.owned)
        for part in parts:
            self.owned[part].lease.release()
        self.owned.clear()
        self.recent.clear()
        self.hot.clear()
        return parts

    def forget_cached_state(self) -> None:
        """After a Redis error we cannot know whether the last commit landed: read again."""
        for owned in self.owned.values():
            owned.day = None
            owned.prefetched = None
            owned.read_score = None
            owned.dirty = True
