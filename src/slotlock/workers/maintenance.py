"""The lease worker's maintenance between batches: renewals, letting go of idle days, the
sweep of the index of days with work, the heartbeat and one step of the re-index.

Each runs on its own period from :meth:`Maintenance.run`, which the loop calls on every
turn; none of them holds the loop longer than a round trip or two.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import Counter
from typing import Callable

import redis

from ..config import Settings
from ..days.index import WorkIndex
from ..days.keys import WORKERS, WORKERS_SEEN, worker_alive_key
from ..days.scripts import Scripts
from ..redis_conn import MAY_HAVE_RUN
from .day_batch import DayBatches
from .leases import LeaseBook
from .share import FairShare
from .wakeups import Wakeups

log = logging.getLogger("slotlock.worker")

BLOCK_MS = 50  # longest blocking read; also the sweep period for orphaned days
HEARTBEAT_S = 1.0
WORKER_FORGET_S = 86_400  # a worker not seen for this long leaves the list (status)
IDLE_CHECK_S = 0.1  # at most this often, a look for held days idle long enough to let go
REINDEX_S = 0.2  # one small step over sl:days (REINDEX_CHUNK days) for queued days missing from the index


class Maintenance:
    def __init__(self, settings: Settings, client: redis.Redis, scripts: Scripts,
                 index: WorkIndex, leases: LeaseBook, batches: DayBatches, wakeups: Wakeups,
                 stats: Counter, stopping: Callable[[], bool], started_at: float):
        self.settings = settings
        self.client = client
        self.scripts = scripts
        self.index = index
        self.leases = leases
        self.batches = batches
        self.wakeups = wakeups
        self.stats = stats
        self.stopping = stopping
        self.started_at = started_at
        self.next_sweep = 0.0
        self.next_heartbeat = 0.0
        self.next_reindex = 0.0
        self.next_idle_check = 0.0
        self.share = FairShare(index, leases, stats)
        leases.admit = self.share.admit

    def run(self, now: float) -> None:
        self.leases.renew_due(now)
        if now >= self.next_idle_check:
            # a look at every held day: a few times per idle period, not on every wake
            self.next_idle_check = now + min(IDLE_CHECK_S, self.settings.idle_release_ms / 4000)
            self.batches.drained.flush()
            self.release_idle(now)
        if now >= self.next_sweep:
            self.next_sweep = now + BLOCK_MS / 1000
            self.sweep(now)
        if now >= self.next_heartbeat:
            self.next_heartbeat = now + HEARTBEAT_S
            self.heartbeat()
        if now >= self.next_reindex:
            self.next_reindex = now + REINDEX_S
            for part in self.index.reindex_step():
                log.warning("day %s had queued commands but was missing from the index", part)

    def next_due(self) -> float:
        """The next moment a periodic step is due (the blocking read waits no longer)."""
        return min(self.next_sweep, self.next_heartbeat)

    def release_idle(self, now: float) -> None:
        """Let go of the days idle for ``SLOTLOCK_IDLE_RELEASE_MS``, in at most two round trips
        for all of them. The first reads each day's score in the index of days with work, then
        looks for a command after our cursor; for each day with none, the second takes it
        out of the index if its score did not move (only while our grant is well clear of
        its expiry, as for a drained day: ``DrainedDays``), then releases its lease if still
        no command came after our cursor (``lease_release_idle.lua``: the check and the
        release are one step). A command appended after the first look moved the score (the
        day stays indexed); one appended between the removal and the release put the day
        back and is seen by the script (the lease is kept and the day read); one appended
        after finds the lease free, the day indexed and a wake-up posted.

        A day that our own removal took out of the index after the last commands we decided
        (``OwnedDay.unindexed``: a fresh day drained by its first batch) needs no first
        look: it has no score to remove, and the release script looks for a command itself.
        (Should a command appended before the drained batch's read have its index bump land
        after our removal, the day is back in the index; while we hold it the sweep marks
        it dirty, and if the idle release comes first the day stays indexed with nobody
        holding it: the sweep takes it, finds nothing to decide, and takes it out.)"""
        idle = self.settings.idle_release_ms / 1000
        candidates, drained = [], []
        for part, owned in self.leases.owned.items():
            if owned.dirty or now - owned.last_work < idle:
                continue
            if owned.day is None or not owned.lease.held:
                owned.dirty = True  # our view is stale: read the day again before letting go
                continue
            (drained if owned.unindexed else candidates).append((part, owned))
        removals = self._look_before_release(candidates, drained) if candidates else {}
        if drained:
            self._release(drained, removals)

    def _look_before_release(self, candidates: list, drained: list) -> dict[str, float]:
        """The first round trip of ``release_idle``: each day's score, then its commands
        after our cursor. Days with none go to ``drained``; returns the scores of those to
        take out of the index before their release."""

        def look(pipe) -> None:
            for part, _owned in candidates:
                self.index.queue_score(pipe, part)  # before the look at the commands
            pipe.barrier()
            for _part, owned in candidates:
                self.batches.store.queue_read_commands(pipe, owned.keys, owned.cursor, 1)

        looked = self.scripts.run_pipeline(look, raise_on_error=False)
        removals = {}
        for i, (part, owned) in enumerate(candidates):
            score, entries = looked[i], looked[len(candidates) + i]
            if isinstance(entries, Exception):
                continue  # looked at again at the next idle check
            if entries:
                owned.dirty = True  # a command came: decide it first
                continue
            drained.append((part, owned))
            if (score is not None and not isinstance(score, Exception)
                    and self.leases.held_clear_of_expiry(owned, time.monotonic())):
                removals[part] = score
        return removals

    def _release(self, drained: list, removals: dict[str, float]) -> None:
        """The second round trip of ``release_idle``: take the days of ``removals`` out of
        the index, and let go of each lease if its day is still idle."""

        def build(pipe) -> None:
            for part, _owned in drained:  # taken out of the index while still held: first
                if part in removals:
                    self.index.queue_remove_if_unchanged(pipe, part, removals[part])
            pipe.barrier()  # (on a cluster, see Staged)
            for _part, owned in drained:
                owned.lease.queue_release_if_idle(pipe, owned.cursor)

        try:
            replies = self.scripts.run_pipeline(build, raise_on_error=False)
        except MAY_HAVE_RUN:
            # Redis may have run the releases: forget the days rather than hold on to
            # leases that may be free (those not released lapse after the TTL)
            for part, _owned in drained:
                self.leases.forget(part)
            raise
        at = sum(1 for part, _owned in drained if part in removals)  # the removals' replies:
        for part, owned in drained:  # taken or not, the release decides
            result = replies[at]
            at += 1
            if isinstance(result, Exception):
                log.warning("could not let go of idle %s (%s); trying again", part, result)
            elif int(result) == 0:
                owned.dirty = True  # a command came: decide it first
            elif int(result) < 0:
                self.stats["leases_lost"] += 1
                log.warning("lost lease of %s: expired or passed to another worker", part)
                self.leases.drop(part)
            else:
                self.leases.forget(part)
                owned.lease.released()
                self.stats["released"] += 1

    def sweep(self, now: float) -> None:
        """Look at the index of days with work: take orphans, notice missed wake-ups (the
        wake-up stream is capped). Held days that a read watches need no look."""
        orphans = []
        for part, score in self.index.active():
            owned = self.leases.owned.get(part)
            if owned is not None:
                if owned.seen_score != score and part not in self.wakeups.watching:
                    owned.dirty = True
                owned.seen_score = score
                continue
            if self.leases.retry_at.get(part, 0.0) <= now and not self.stopping():
                orphans.append(part)
        if orphans:
            self.leases.try_acquire_many(orphans, now)  # one round trip for all of them

    def heartbeat(self, alive: bool = True) -> None:
        status = {
            "alive": alive,
            "id": self.leases.holder,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at,
            "seen_at": time.time(),
            "days": {part: o.lease.token for part, o in self.leases.owned.items()},
            "stats": dict(self.stats),
        }

        def build(pipe) -> None:
            pipe.hset(WORKERS, self.leases.holder, json.dumps(status))
            self.leases.scripts.queue(pipe, "workers_seen", [WORKERS, WORKERS_SEEN],
                                      [self.leases.holder, WORKER_FORGET_S])
            if alive:
                pipe.set(worker_alive_key(self.leases.holder), "1",
                         px=self.settings.lease_ttl_ms * 3)
            else:
                pipe.delete(worker_alive_key(self.leases.holder))
            self.share.queue_beat(pipe, alive)  # our count of days, and everyone's (share.py)

        # the scripts' pipeline: a script Redis lost (a restart) is loaded and sent again
        replies = self.leases.scripts.run_pipeline(build)
        if alive and not self.stopping():
            self.share.took_beat(replies[-1])
            self.share.shed()
