"""The index of days with work, and the wake-up stream that lets idle workers react at once.

Submitters append to a day's stream *first* and then bump the day's score in
``sl:active`` and post a wake-up to ``sl:ready``. A worker that drained a day removes
it from the index only if the score is unchanged since before it looked (see
``index_remove.lua``), so a day with queued commands is never forgotten.
"""

from __future__ import annotations

import redis

from .keys import ACTIVE, READY, day_key_pattern, partition_of
from .scripts import Scripts

READY_MAXLEN = 10_000


class WorkIndex:
    def __init__(self, client: redis.Redis, scripts: Scripts | None = None):
        self.client = client
        self.scripts = scripts or Scripts(client)

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

    def score(self, part: str) -> float | None:
        return self.client.zscore(ACTIVE, part)

    def remove_if_unchanged(self, part: str, score: float) -> bool:
        return bool(int(self.scripts.index_remove(keys=[ACTIVE], args=[part, repr(score)])))

    def reindex(self, scan_count: int = 500) -> list[str]:
        """Put back every day whose state counts queued commands but is missing from the index.

        The safety net for a submitter that died between its append and its index bump
        (the two travel in one pipeline, so the window is tiny, but it exists).
        """
        restored = []
        for key in self.client.scan_iter(match=day_key_pattern("state"), count=scan_count):
            part = partition_of(key, "state")
            if int(self.client.hget(key, "pending") or 0) > 0 and self.score(part) is None:
                self.mark(part)
                restored.append(part)
        return restored

    def last_wakeup_id(self) -> str:
        entries = self.client.xrevrange(READY, count=1)
        return entries[0][0] if entries else "0-0"
