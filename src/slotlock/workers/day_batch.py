"""One batch of one day: load, decide, fenced commit, tell the jobs.

The step the lease worker runs for each day it holds that has work. Reads go through the
day store, the catalog and the work index; the decision is the pure ``apply_entries``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import redis

from ..catalog import Catalog
from ..config import Settings
from ..days.index import WorkIndex
from ..days.keys import split_partition
from ..days.staged import Staged
from ..days.store import START, DayStore
from ..errors import CursorMismatch, FenceRejected
from ..redis_conn import CLUSTER_DOWN, MAY_HAVE_RUN
from ..model import Calendar
from .applier import Batch, apply_entries, load_day
from .drained import DrainedDays
from .failpoints import Failpoints
from .leases import LeaseBook, OwnedDay
from .wakeups import Wakeups

log = logging.getLogger("slotlock.worker")

UNKNOWN_CALENDAR_RETRY_S = 5.0  # a day whose calendar is missing is tried again this late
CALENDARS_KEPT = 256  # parsed calendars kept, by their stored JSON
NOTE_EVERY_S = 1.0  # at most this often per day: tell the jobs of its commits


@dataclass
class FirstReads:
    """Where each reply of ``DayBatches.queue_first_reads`` lies in its pipeline."""

    before: dict[str, int] = field(default_factory=dict)  # calendar -> its change, calendar
    after: dict[str, int] = field(default_factory=dict)  # calendar -> its change again
    score: dict[str, int] = field(default_factory=dict)  # day -> its index score
    acquire: dict[str, int] = field(default_factory=dict)  # day -> its acquisition
    started: dict[str, float] = field(default_factory=dict)  # day -> when it was queued

    def of(self, replies: list, part: str) -> tuple[list, object, list]:
        """A day's replies, for ``took_first_read``: (its calendar's change and calendar and
        its score, its acquisition, its calendar's change after)."""
        calendar_id = split_partition(part)[0]
        at = self.before[calendar_id]
        return ([replies[at], replies[at + 1], replies[self.score[part]]],
                replies[self.acquire[part]], [replies[self.after[calendar_id]]])


@dataclass
class Decided:
    """One day's decided batch, waiting for its commit."""

    part: str
    owned: OwnedDay
    commands: int
    batch: Batch
    bookings_json: str
    note: bool  # tell the jobs with this commit
    decided_at: float
    score: float | None = None  # the day's index score, read before its commands


class DayBatches:
    def __init__(self, settings: Settings, client: redis.Redis, store: DayStore,
                 catalog: Catalog, index: WorkIndex, leases: LeaseBook, failpoints: Failpoints,
                 stats: Counter, wakeups: Wakeups):
        self.settings = settings
        self.client = client
        self.store = store
        self.catalog = catalog
        self.index = index
        self.leases = leases
        self.failpoints = failpoints
        self.stats = stats
        self.wakeups = wakeups
        self.drained = DrainedDays(settings, store.scripts, index, leases, stats)
        self._calendars: dict[str, Calendar] = {}  # stored JSON -> calendar

    def process(self, part: str, owned: OwnedDay) -> int:
        """Decide and commit the next batch of ``part``; the number of commands applied."""
        decided = self.decide(part, owned)
        return self.commit([decided]) if decided is not None else 0

    def decide(self, part: str, owned: OwnedDay) -> Decided | None:
        """Decide the next batch of ``part`` (reading the day unless a watching read
        brought its commands); ``None`` if there is nothing to commit."""
        entries = self._take_prefetched(owned)
        if entries is None:
            entries = self._read(part, owned)
            if entries is None:
                return None
        score, owned.read_score = owned.read_score, None
        if not entries:
            owned.dirty = False
            self.drained.add(part, owned, score)
            return None
        batch = apply_entries(owned.day, owned.cursor, DayStore.commands_of(entries), part,
                              with_events=bool(owned.day.calendar.webhook_url))
        self.failpoints.before_commit(part, owned.lease.token)
        now = time.monotonic()
        note = bool(batch.events) or now - owned.noted_at >= NOTE_EVERY_S
        return Decided(part, owned, len(entries), batch, batch.bookings_json(owned.json_memo),
                       note, now, score)

    def commit(self, decided: list[Decided],
               on_error: Callable[[str, OwnedDay, Exception], None] | None = None) -> int:
        """Commit decided batches of several days in one round trip; the number of commands
        applied. Each day's commit is its own fenced script: one refused or failing leaves
        the others be. A script error of one day goes to ``on_error`` (raised without).

        The round trip also reads the wake-up stream that the submit of these commands
        wrote to (see ``Wakeups``) and tells the jobs (``WorkIndex.queue_note_commit``), at
        most once a second per day: the audit of recent days and compaction look back over
        minutes; a day with webhook events is told at once. The note is not atomic with the
        commit (global keys stay out of day scripts) but runs after it in Redis; a refused
        commit leaves a note that makes the jobs look at a day that did not change
        (harmless); a lost note is made up by the outbox sweep and the nightly audit (by
        ``sl:days``, which the submitter wrote)."""
        def build(pipe) -> None:
            for d in decided:
                self.store.queue_commit(pipe, d.owned.lease, d.owned.cursor, d.batch.cursor,
                                        d.bookings_json, d.batch.day.version, d.batch.outcomes,
                                        d.batch.events, self.settings.reply_ttl_ms)
            self.wakeups.queue(pipe)
            self.drained.queue(pipe, unindex)
            pipe.barrier()  # the notes after the commits (on a cluster, see Staged)
            for d in decided:
                if d.note:
                    self.index.queue_note_commit(pipe, d.part, int(time.time() * 1000),
                                                 bool(d.batch.events))

        unindex = self.drained.due()
        replies = self.store.scripts.run_pipeline(build, raise_on_error=False)
        wakes = self.wakeups.queued_reads
        removals = len(decided) + wakes  # after the commits and the read of the wake-ups
        taken_out = self.drained.took(unindex, replies[removals:removals + len(unindex)])
        applied = 0
        for d, result in zip(decided, replies):
            if d.part in taken_out:
                d.score = None  # read before the day was taken out: it may be back at it
            applied += self._committed(d, result, on_error)
        wake_reply = replies[len(decided)] if wakes else None  # after the commits are taken
        if not isinstance(wake_reply, Exception):  # in: it may acquire
            self.wakeups.took(wake_reply)
        if len(decided) > 1:
            self.stats["multi_day_commits"] += 1
        return applied

    def _committed(self, d: Decided, result, on_error) -> int:
        part, owned, batch = d.part, d.owned, d.batch
        if isinstance(result, CLUSTER_DOWN):
            # the day's node is failing over (CLUSTERDOWN, TRYAGAIN): read the day again
            # before deciding anything more on it (the cursor compare keeps a commit that
            # did land from landing twice)
            self.stats["commit_cluster_down"] += 1
            log.warning("commit of %s not taken: %s; reading the day again", part, result)
            owned.day = None
            owned.dirty = True
            return 0
        try:
            if isinstance(result, Exception):
                raise result
            DayStore.committed(result, owned.lease, owned.cursor, batch.cursor,
                               batch.day.version)
        except FenceRejected as exc:
            self.stats["fence_refusals"] += 1
            log.warning("FENCED: %s; dropping the day, nothing of this batch was written", exc)
            self.leases.drop(part)
            return 0
        except CursorMismatch as exc:
            self.stats["cursor_refusals"] += 1
            log.warning("refused: %s; reading the day again", exc)
            owned.day = None
            owned.dirty = True
            return 0
        except redis.ResponseError as exc:
            if on_error is None:
                raise
            on_error(part, owned, exc)
            return 0
        self.failpoints.after_commit(part, owned.lease.token)
        if d.note:
            owned.noted_at = d.decided_at
        owned.day = batch.day
        owned.cursor = batch.cursor
        owned.unindexed = False  # new commands: their submit put the day in the index
        self.leases.worked(owned, time.monotonic())
        owned.dirty = d.commands >= self.settings.batch_size
        if not owned.dirty:
            self.drained.add(part, owned, d.score)
        self.stats["commits"] += 1
        self.stats["commands"] += d.commands
        self.stats["accepted"] += batch.accepted
        return d.commands

    def _take_prefetched(self, owned: OwnedDay) -> list | None:
        """The commands a watching read brought back, if the batch may use them: they follow
        the cursor we hold, and that read saw no change of the calendar since we read it (it
        watches the calendar's change stream too, see ``Wakeups``)."""
        prefetched, owned.prefetched = owned.prefetched, None
        if prefetched is None or owned.day is None or prefetched[0] != owned.cursor:
            return None
        if owned.calendar_stale:
            self.stats["calendar_rereads"] += 1
            return None
        self.stats["prefetched_batches"] += 1
        return prefetched[1]

    def _read(self, part: str, owned: OwnedDay) -> list | None:
        """Read the calendar and the commands after the cursor (a fresh day: its committed
        state too), in one round trip; ``None`` if the day cannot be decided now."""
        keys = owned.keys
        fresh = owned.day is None  # no cached state: read it in the same round trip
        pipe = Staged(self.client)
        self.queue_calendar(pipe, part)
        # the day's score in the index of days with work, read *before* the stream: every
        # later command bumps it after its append, so the sweep marks the day dirty again
        # only if something came after this read (no empty re-reads for what we took here)
        self.index.queue_score(pipe, part)
        pipe.barrier()  # the calendar and the score before the day (on a cluster)
        if fresh:
            self.store.queue_read_state(pipe, keys)
        # a fresh day's cursor is not known yet: read from the start, right for a day
        # nothing was applied to (the common case); otherwise read again after the cursor
        self.store.queue_read_commands(pipe, keys, START if fresh else owned.cursor,
                                       self.settings.batch_size)
        replies = pipe.execute()
        self._read_with_score(part, owned, replies[2])
        entries = self._load(part, owned, replies[0], replies[1],
                             replies[3] if fresh else None, replies[-1])
        if fresh and entries is not None and owned.cursor != START:
            # the commands after the cursor now known: read them with the calendar again,
            # so that a rules change between the two reads is seen before they are decided
            return self._read(part, owned)
        return entries

    # -- the first read of a day, in the round trip that acquires it (LeaseBook) ----------

    def queue_calendar(self, pipe, part: str) -> None:
        """Queue the read of a day's calendar: its last change first (a change between the
        two is then seen again, never missed), then the calendar itself."""
        calendar_id = split_partition(part)[0]
        self.catalog.queue_last_change(pipe, calendar_id)
        self.catalog.queue_raw(pipe, calendar_id)

    @property
    def first_read_count(self) -> int:
        return self.settings.batch_size

    def queue_first_reads(self, pipe, parts: list[str], acquire) -> FirstReads:
        """Queue the reads around acquisitions that read each day's state and commands
        (``LeaseBook``; ``acquire(pipe, part)`` queues one and returns its start time): each
        calendar's last change and the calendar, once for all its days; each day's score in
        the index of days with work (read before its commands, as in ``_read``), then its
        acquisition; then each calendar's last change again. Other clients' commands may run
        between those of a pipeline: if a calendar's change stream moved across the
        acquisitions, a rules change may have come between the calendar and some day's
        commands, and those days' reads are not used (``took_first_read``)."""
        reads = FirstReads()
        calendars = list(dict.fromkeys(split_partition(part)[0] for part in parts))
        for calendar_id in calendars:
            reads.before[calendar_id] = len(pipe)
            self.catalog.queue_last_change(pipe, calendar_id)
            self.catalog.queue_raw(pipe, calendar_id)
        for part in parts:
            reads.score[part] = len(pipe)
            self.index.queue_score(pipe, part)
        pipe.barrier()  # calendars and scores before the days (on a cluster, see Staged)
        for part in parts:
            reads.started[part] = acquire(pipe, part)
            reads.acquire[part] = len(pipe) - 1
        pipe.barrier()
        for calendar_id in calendars:
            reads.after[calendar_id] = len(pipe)
            self.catalog.queue_last_change(pipe, calendar_id)
        return reads

    def took_first_read(self, part: str, owned: OwnedDay, before: list, state_raw: list,
                        entries: list, after: list) -> None:
        """A day just acquired, with its calendar, state and the commands after its cursor
        read in the same round trip: its first batch needs no other read. A read that
        failed, or that a rules change may have cut across, is dropped: the day stays dirty
        with no cached state, so its first batch reads it again."""
        if any(isinstance(reply, Exception) for reply in (*before, *after)):
            log.warning("the first read of %s failed; reading it again", part)
            return
        if Catalog.change_id(before[0]) != Catalog.change_id(after[0]):
            self.stats["calendar_rereads"] += 1
            return
        taken = self._load(part, owned, before[0], before[1], state_raw, entries)
        if taken is not None:
            owned.prefetched = (owned.cursor, taken)
            self._read_with_score(part, owned, before[2])

    def _read_with_score(self, part: str, owned: OwnedDay, score) -> None:
        """The commands just read were read after the day's index score ``score``."""
        owned.read_score = score
        if score is not None:
            owned.seen_score = score

    def _calendar(self, raw: str) -> Calendar:
        """The calendar stored as ``raw``, parsed once per revision (a fresh day per request
        would parse the same JSON for every day; ``Calendar`` is immutable)."""
        calendar = self._calendars.get(raw)
        if calendar is None:
            if len(self._calendars) >= CALENDARS_KEPT:
                self._calendars.clear()
            calendar = self._calendars[raw] = Calendar.from_dict(Catalog.parse(raw))
        return calendar

    def _load(self, part: str, owned: OwnedDay, change_reply, calendar_raw, state_raw,
              entries) -> list | None:
        """Take a read of the calendar (and, for a fresh day, its state) into ``owned``;
        the entries, or ``None`` if the day cannot be decided now."""
        calendar_id, day = split_partition(part)
        if not calendar_raw:
            # let go of the day and try it again later: holding it, the worker read it
            # again at every idle check, forever
            log.error("commands for unknown calendar %s; leaving them queued and letting "
                      "%s go for %.0f s", calendar_id, part, UNKNOWN_CALENDAR_RETRY_S)
            self.stats["unknown_calendar"] += 1
            owned.day, owned.prefetched, owned.read_score = None, None, None
            owned.dirty = False
            self.leases.drop(part, retry_in_s=UNKNOWN_CALENDAR_RETRY_S)
            try:
                owned.lease.release()
            except MAY_HAVE_RUN:
                pass  # it lapses after the TTL
            return None
        owned.change_id, owned.calendar_stale = Catalog.change_id(change_reply), False
        if state_raw is not None:
            state = self.store.stored_state(state_raw)
            owned.day = load_day(self._calendar(calendar_raw), day, state.bookings,
                                 state.version)
            owned.cursor = state.cursor
            owned.calendar_raw = calendar_raw
        elif calendar_raw != owned.calendar_raw:
            owned.day = owned.day.with_calendar(self._calendar(calendar_raw))
            owned.calendar_raw = calendar_raw
        return entries
