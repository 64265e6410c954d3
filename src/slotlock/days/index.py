"""The index of days with work, and the wake-up stream that lets idle workers react at once.

Submitters append to a day's stream *first* and then bump the day's score in
``sl:active`` and post a wake-up to ``sl:ready``. A worker that drained a day removes
it from the index only if the score is unchanged since before it looked (see
``index_remove.lua``), so a day with queued commands is never forgotten.
"""

from __future__ import annotations

import time
from datetime import date

import redis

from .keys import (
    ACTIVE,
    CHANGED,
    DAYS,
    OUTBOX_DAYS,
    READY,
    DayKeys,
    day_key_pattern,
    partition_of,
    split_partition,
)
from .scripts import Scripts
from .staged import Staged, is_cluster_client

READY_MAXLEN = 10_000


NOTED_S = 60.0  # on a cluster, a day noted in sl:days is not noted again this long
NOTED_MAX = 10_000  # days remembered as noted, per process

REINDEX_CHUNK = 100  # days per re-index step (the worker takes one every REINDEX_S)


class WorkIndex:
    def __init__(self, client: redis.Redis, scripts: Scripts | None = None):
        self.client = client
        self.scripts = scripts or Scripts(client)
        self._reindex_at = 0  # rank in sl:days where the next re-index step starts
        # on a cluster: days this process put into sl:days -> until when that is trusted
        self._noted: dict[str, float] | None = {} if is_cluster_client(client) else None

    def mark(self, part: str, pipe=None) -> None:
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        target.zincrby(ACTIVE, 1, part)
        target.xadd(READY, {"p": part}, maxlen=READY_MAXLEN, approximate=True)
        if pipe is None:
            target.execute()

    def wake(self, parts: list[str], released: bool = False) -> None:
        """Wake the workers for ``parts``; ``released``: their leases were just given up, so
        a worker waiting for those leases to expire may take them now."""
        if not parts:
            return
        fields = {"r": "1"} if released else {}
        pipe = self.client.pipeline(transaction=False)
        for part in parts:
            pipe.xadd(READY, {"p": part, **fields}, maxlen=READY_MAXLEN, approximate=True)
        pipe.execute()

    def active(self, limit: int = 10_000) -> list[tuple[str, float]]:
        return self.client.zrange(ACTIVE, 0, limit - 1, withscores=True)

    def day_known(self, part: str) -> bool:
        """True if any command was ever submitted for this day (see ``note_day``)."""
        return self.client.zscore(DAYS, part) is not None

    def queue_score(self, pipe, part: str) -> None:
        pipe.zscore(ACTIVE, part)

    @staticmethod
    def queue_note_commit(pipe, part: str, at_ms: int, had_events: bool) -> None:
        """Queued after a commit, in its pipeline: the day changed (audit of recent days,
        compaction) and, with webhook events, its outbox has something to publish. The day
        is (again) put into ``sl:days``: a submitter of an older version, during a rolling
        deploy, did not."""
        pipe.zadd(DAYS, {part: split_partition(part)[1].toordinal()}, nx=True)
        pipe.zadd(CHANGED, {part: at_ms})
        if had_events:
            pipe.zincrby(OUTBOX_DAYS, 1, part)

    def score(self, part: str) -> float | None:
        return self.client.zscore(ACTIVE, part)

    def queue_remove_if_unchanged(self, pipe, part: str, score: float) -> None:
        self.scripts.queue(pipe, "index_remove", [ACTIVE], [part, repr(score)])

    def remove_if_unchanged(self, part: str, score: float) -> bool:
        return bool(int(self.scripts.index_remove(keys=[ACTIVE], args=[part, repr(score)])))

    def note_day(self, part: str, day: date, pipe) -> bool:
        """Add a day to ``sl:days`` (by local date) *before* its first command is appended;
        whether it was queued (then ``pipe.barrier()`` before the append).

        The pipeline runs in order, so a submitter that dies after the append has already
        indexed the day: the re-index below and the jobs find every day with data without
        SCANning the keyspace. On a Redis Cluster that order costs a round trip of its own
        (``Staged``), so a day this process noted within ``NOTED_S`` is not noted again
        (nothing takes a day out of ``sl:days``; the bound covers a Redis that lost writes).
        """
        if self._noted is not None:
            now = time.monotonic()
            if self._noted.get(part, 0.0) > now:
                return False
            if len(self._noted) >= NOTED_MAX:
                self._noted.clear()
            self._noted[part] = now + NOTED_S  # taken back by ``not_noted`` if it failed
        pipe.zadd(DAYS, {part: day.toordinal()}, nx=True)
        return True

    def not_noted(self, part: str) -> None:
        """The pipeline that carried ``note_day`` for ``part`` failed."""
        if self._noted is not None:
            self._noted.pop(part, None)

    def reindex_step(self, chunk: int = REINDEX_CHUNK) -> list[str]:
        """Check the next ``chunk`` days of ``sl:days`` for queued commands missing from the index.

        The safety net for a submitter that died between its append and its index bump
        (both travel in one pipeline, so the window is tiny, but it exists). Incremental:
        each call costs two round trips whatever the number of days; a full cycle over N
        days takes N / chunk calls. Small steps: the worker's loop runs them inline, and
        500 days at once held it ~6 ms (p90 9 ms), the Python side of 1,000 commands,
        which showed in the p99 of every booking.
        """
        parts = self.client.zrange(DAYS, self._reindex_at, self._reindex_at + chunk - 1)
        self._reindex_at = 0 if len(parts) < chunk else self._reindex_at + chunk
        if not parts:
            return []
        pipe = Staged(self.client)
        pipe.zmscore(ACTIVE, parts)  # before the states: a day drained since is not taken
        pipe.barrier()               # for one missing from the index
        for part in parts:
            pipe.hget(DayKeys(part).state, "pending")
        scores, *pending = pipe.execute()
        restored = []
        for part, score, queued in zip(parts, scores, pending):
            if score is None and int(queued or 0) > 0:
                self.mark(part)
                restored.append(part)
        return restored

    def backfill_days(self, scan_count: int = 1000) -> int:
        """Put every day with state into ``sl:days`` (``slotlock migrate``, once, for data
        written before submitters indexed days themselves). SCANs: never on a hot path."""
        added = 0
        for key in self.client.scan_iter(match=day_key_pattern("state"), count=scan_count):
            part = partition_of(key, "state")
            try:
                _, day = split_partition(part)
            except ValueError:
                continue
            added += self.client.zadd(DAYS, {part: day.toordinal()}, nx=True)
        return added

    def last_wakeup_id(self) -> str:
        entries = self.client.xrevrange(READY, count=1)
        return entries[0][0] if entries else "0-0"
