"""Drained days out of the index of days with work, so that the sweep reads only days
with work.

A day is drained when a commit that landed decided every command queued when its score
in ``sl:active`` was read (the score is read before the commands: ``DayBatches``). It is
taken out with ``index_remove.lua`` (compare the score, then remove) in the next round trip
the worker sends anyway (a commit, or the maintenance pass); a command that came since
moved the score and keeps it there. Days whose batches came from a watching read (no score
read) stay in the index until they are let go of for idleness.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from ..config import Settings
from ..days.index import WorkIndex
from ..days.scripts import Scripts
from .leases import LeaseBook, OwnedDay

log = logging.getLogger("slotlock.worker")


class DrainedDays:
    def __init__(self, settings: Settings, scripts: Scripts, index: WorkIndex,
                 leases: LeaseBook, stats: Counter):
        self.settings = settings
        self.scripts = scripts
        self.index = index
        self.leases = leases
        self.stats = stats
        self.pending: dict[str, tuple[OwnedDay, float]] = {}  # day -> (its grant, score)

    def add(self, part: str, owned: OwnedDay, score: float | None) -> None:
        """Every command queued when the day's score was ``score`` is decided and committed
        under the grant ``owned``."""
        if score is not None:
            self.pending[part] = (owned, score)

    def due(self) -> list[tuple[str, float, OwnedDay]]:
        """The days to take out of the index now: only those still held under the grant
        that drained them, with a lease well clear of its expiry. The compare is on the
        score alone, and a day taken out and put back starts again at 1: while we hold the
        day nobody else takes it out, so its score only grows; once our lease may have
        lapsed, another holder may have, and an old score could match a new command's.
        (This worker takes days out too: a score read before one of its removals is never
        recorded here, see ``took``.)"""
        due = []
        now = time.monotonic()
        for part, (owned, score) in self.pending.items():
            if self.leases.held_clear_of_expiry(owned, now):
                due.append((part, score, owned))
            else:
                self.stats["unindex_skipped"] += 1
        self.pending.clear()
        return due

    def queue(self, pipe, due: list[tuple[str, float, OwnedDay]]) -> None:
        for part, score, _owned in due:
            self.index.queue_remove_if_unchanged(pipe, part, score)

    def took(self, due: list[tuple[str, float, OwnedDay]], replies: list) -> set[str]:
        """Take in the removals' replies; the days taken out. A score read before a day was
        taken out says nothing of the commands after: the day may be back in the index at
        that same score (``DayBatches.commit`` does not record it)."""
        out = set()
        for (part, score, grant), removed in zip(due, replies):
            if isinstance(removed, Exception):
                log.warning("could not take %s out of the index (%s); the sweep will look "
                            "at it once more", part, removed)
            elif int(removed):
                # a new command puts the day back with a score that may equal the old one
                if self.leases.owned.get(part) is grant:  # still the grant ``due`` checked
                    grant.unindexed = True
                    if grant.seen_score == score:
                        grant.seen_score = None
                self.stats["unindexed"] += 1
                out.add(part)
        return out

    def flush(self) -> None:
        """Take the drained days out of the index when no commit carried them there."""
        due = self.due()
        if not due:
            return
        replies = self.scripts.run_pipeline(lambda pipe: self.queue(pipe, due),
                                            raise_on_error=False)
        self.took(due, replies)
