"""The index of days with work, and the wake-up stream that lets idle workers react at once.

Submitters append to a day's stream *first* and then bump the day's score in
``sl:active`` and post a wake-up to ``sl:ready``. A worker that drained a day removes
it from the index only if the score is unchanged since before it looked (see
``index_remove.lua``), so a day with queued commands is never forgotten. On a Redis
Cluster both are sharded (``Shards``): a day's score and wake-ups are in its shard's keys.
"""

from __future__ import annotations

import time
import zlib
from datetime import date

import redis

from ..redis_conn import is_cluster_client
from .keys import (
    ACTIVE,
    CHANGED,
    DAYS,
    OUTBOX_DAYS,
    SHARDS_ON_CLUSTER,
    DayKeys,
    day_key_pattern,
    partition_of,
    shard_active_key,
    shard_ready_key,
    split_partition,
)
from .scripts import Scripts
from .staged import Staged

READY_MAXLEN = 10_000


NOTED_S = 60.0  # on a cluster, a day noted in sl:days is not noted again this long
NOTED_MAX = 10_000  # days remembered as noted, per process

REINDEX_CHUNK = 100  # days per re-index step (the worker takes one every REINDEX_S)


class Shards:
    """The shards of the index of days with work and of the wake-ups (``keys.py``): one on a
    single Redis (``sl:active``, ``sl:ready``), ``SHARDS_ON_CLUSTER`` on a cluster."""

    def __init__(self, count: int):
        self.count = count
        ids: list[int | None] = [None] if count == 1 else list(range(count))
        self.active_keys = {k: shard_active_key(k) for k in ids}
        self.ready_keys = {k: shard_ready_key(k) for k in ids}

    @classmethod
    def of_client(cls, client) -> Shards:
        return cls(SHARDS_ON_CLUSTER if is_cluster_client(client) else 1)

    def of(self, part: str) -> int | None:
        return None if self.count == 1 else zlib.crc32(part.encode()) % self.count

    def active(self, part: str) -> str:
        return self.active_keys[self.of(part)]

    def ready(self, part: str) -> str:
        return self.ready_keys[self.of(part)]


class WorkIndex:
    def __init__(self, client: redis.Redis, scripts: Scripts | None = None):
        self.client = client
        self.scripts = scripts or Scripts(client)
        self.shards = Shards.of_client(client)
        self._reindex_at = 0  # rank in sl:days where the next re-index step starts
        # on a cluster: days this process put into sl:days -> until when that is trusted
        self._noted: dict[str, float] | None = {} if is_cluster_client(client) else None

    def mark(self, part: str, pipe=None) -> None:
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        target.zincrby(self.shards.active(part), 1, part)
        target.xadd(self.shards.ready(part), {"p": part}, maxlen=READY_MAXLEN,
                    approximate=True)
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
            pipe.xadd(self.shards.ready(part), {"p": part, **fields}, maxlen=READY_MAXLEN,
                      approximate=True)
        pipe.execute()

    def active(self, limit: int = 10_000) -> list[tuple[str, float]]:
        """Days with work and their scores: up to ``limit`` of each shard."""
        if self.shards.count == 1:
            return self.client.zrange(ACTIVE, 0, limit - 1, withscores=True)
        pipe = self.client.pipeline(transaction=False)
        for key in self.shards.active_keys.values():
            pipe.zrange(key, 0, limit - 1, withscores=True)
        return [entry for entries in pipe.execute() for entry in entries]

    def day_known(self, part: str) -> bool:
        """True if any command was ever submitted for this day (see ``note_day``)."""
        return self.client.zscore(DAYS, part) is not None

    def queue_score(self, pipe, part: str) -> None:
        pipe.zscore(self.shards.active(part), part)

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
        return self.client.zscore(self.shards.active(part), part)

    def queue_remove_if_unchanged(self, pipe, part: str, score: float) -> None:
        self.scripts.queue(pipe, "index_remove", [self.shards.active(part)],
                           [part, repr(score)])

    def remove_if_unchanged(self, part: str, score: float) -> bool:
        return bool(int(self.scripts.index_remove(keys=[self.shards.active(part)],
                                                  args=[part, repr(score)])))

    def note_day(self, part: str, day: date, pipe) -> bool:
        """Add a day to ``sl:days`` (by local date) *before* its first command is appended;
        whether it was queued (then ``pipe.barrier()`` before the append).

        The pipeline runs in order, so a submitter that dies after the append has already
        indexed the day: the re-index below and the jobs find every day with data without
        SCANning the keyspace. On a Redis Cluster that order costs a round trip of its own
        (``Staged``), so a day this process noted within ``NOTED_S`` is not noted again
        (nothing takes a day out of ``sl:days``; the bound covers a Redis that lost writes).
        """
        if self._noted is not None and self._noted.get(part, 0.0) > time.monotonic():
            return False
        pipe.zadd(DAYS, {part: day.toordinal()}, nx=True)
        return True

    def noted(self, part: str) -> None:
        """The pipeline that carried ``note_day`` for ``part`` ran (on a cluster: trust it
        for ``NOTED_S``; only then, so that no other thread skips a note not yet made)."""
        if self._noted is not None:
            if len(self._noted) >= NOTED_MAX:
                self._noted.clear()
            self._noted[part] = time.monotonic() + NOTED_S

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
        by_shard: dict[int | None, list[str]] = {}
        for part in parts:
            by_shard.setdefault(self.shards.of(part), []).append(part)
        pipe = Staged(self.client)
        for shard, some in by_shard.items():  # before the states: a day drained since is
            pipe.zmscore(self.shards.active_keys[shard], some)  # not taken for one missing
        pipe.barrier()                                           # from the index
        for part in parts:
            pipe.hget(DayKeys(part).state, "pending")
        replies = pipe.execute()
        score_of = {part: score for some, scores in zip(by_shard.values(), replies)
                    for part, score in zip(some, scores)}
        scores, pending = [score_of[part] for part in parts], replies[len(by_shard):]
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

    def last_wakeup_id(self, shard: int | None = None) -> str:
        entries = self.client.xrevrange(self.shards.ready_keys[shard], count=1)
        return entries[0][0] if entries else "0-0"
