"""A fair share of the days for each lease worker.

Without it the first worker to read a wake-up takes the day, and a day with steady work
stays with its holder for good (it is let go of only when idle): a worker started later,
or one that came back after a fault, idles while another holds every busy day.

Each heartbeat (once a second) a worker writes how many days it holds to ``sl:workers:load``
and reads everyone's count in the same round trip. Workers whose count is fresh (written
within ``LIVE_S``) share the days held: fair = ceil(held by all / live workers), and a
worker may hold ``fair`` plus a slack (a tenth, at least ``MIN_SLACK``). Over that cap it
**sheds**: it gives up the leases of the days it worked least lately down to ``fair`` (a
plain release, then a wake-up marked released, so another worker takes each day at once),
and does not take those days again for ``SHED_HOLD_S``. Only a day held for ``SETTLED_S``
is given up: two workers that both looked over their share by stale counts would
otherwise pass a day back and forth, and find it in each other's hold (measured: a day
waited 1.2 s); if nobody took one by then, its
sweep takes it back (nothing waits for good).

A worker over its share still takes free days: the counts are a second old, and while the
days with work grow every worker looks over a share computed from the smaller total
before (leaving free days to "the others" then left them to nobody: measured with
``bench/workers_bench.py``, two workers fell from 293 to 200 outcomes a second). Free days
go to whichever worker reads their wake-up first, which spreads fresh days about evenly;
what shedding fixes is the day that never goes free.

The counts are a second old at worst and the workers act on their own, so the shares
settle over a few heartbeats rather than at once; each step moves days from workers over
their share to the others, never back (``SHED_HOLD_S`` > the heartbeat).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter

import redis

from ..days.index import WorkIndex
from ..days.keys import WORKER_LOAD
from .leases import LeaseBook

log = logging.getLogger("slotlock.worker")

LIVE_S = 3.0  # a worker whose count is older than this is not counted
FORGET_S = 60.0  # counts older than this are deleted (the hash stays bounded)
MIN_SLACK = 2  # days over ``fair`` a worker may hold before it sheds
SHED_HOLD_S = 2.0  # a day given up is not taken back by its worker this long
SETTLED_S = 3.0  # only a day held this long is given up (none is passed back and forth)


class FairShare:
    def __init__(self, client: redis.Redis, index: WorkIndex, leases: LeaseBook,
                 stats: Counter):
        self.client = client
        self.index = index
        self.leases = leases
        self.stats = stats
        self.fair: int | None = None  # None: alone, or not known yet
        self.cap: int | None = None
        self.shed_until: dict[str, float] = {}  # days given up: not taken back before then

    # -- the count, with the heartbeat -----------------------------------------------------

    def queue_beat(self, pipe, alive: bool) -> None:
        """Queue the write of our count (or its removal when we stop) and the read of all."""
        holder = self.leases.holder
        if alive:
            pipe.hset(WORKER_LOAD, holder, json.dumps(
                {"held": len(self.leases.owned), "at": time.time()}))
        else:
            pipe.hdel(WORKER_LOAD, holder)
        pipe.hgetall(WORKER_LOAD)

    def took_beat(self, loads: dict[str, str]) -> None:
        """Work out our share from everyone's counts (the reply of ``queue_beat``)."""
        now = time.time()
        live, total, stale = 0, 0, []
        for holder, raw in loads.items():
            try:
                load = json.loads(raw)
                held, at = int(load["held"]), float(load["at"])
            except (ValueError, KeyError, TypeError):
                stale.append(holder)
                continue
            if holder == self.leases.holder:
                held, at = len(self.leases.owned), now
            if now - at > FORGET_S:
                stale.append(holder)
            elif now - at <= LIVE_S:
                live += 1
                total += held
        if stale:
            self.client.hdel(WORKER_LOAD, *stale)
        if live <= 1:
            self.fair = self.cap = None
            return
        self.fair = math.ceil(total / live)
        self.cap = self.fair + max(MIN_SLACK, self.fair // 10)

    # -- acting on it ----------------------------------------------------------------------

    def shed(self) -> list[str]:
        """Over our cap: give up the days worked least lately, down to our fair share, in
        one round trip; the days given up."""
        if self.cap is None or len(self.leases.owned) <= self.cap:
            return []
        count = len(self.leases.owned) - self.fair
        now = time.monotonic()
        parts = [part for part, owned in self.leases.recent.items()
                 if now - owned.acquired_at >= SETTLED_S][:count]
        if not parts:
            return []
        leases = [self.leases.owned[part].lease for part in parts]

        def build(pipe) -> None:
            for lease in leases:
                lease.queue_release(pipe)

        # the scripts' own pipeline: one that Redis lost (a restart) is loaded and sent again
        replies = self.leases.scripts.run_pipeline(build, raise_on_error=False)
        until = now + SHED_HOLD_S
        given = []
        for part, lease, reply in zip(parts, leases, replies):
            if isinstance(reply, Exception):
                continue  # not released: still ours, kept and renewed
            self.leases.forget(part)  # released or not ours any more: either way not held
            lease.released()
            self.shed_until[part] = until
            if int(reply) == 1:
                given.append(part)
        self._prune(self.shed_until, now)
        if given:
            self.index.wake(given, released=True)
            self.stats["shed"] += len(given)
            log.info("gave up %d day(s) to the other workers (held %d, fair share %d)",
                     len(given), len(self.leases.owned) + len(parts), self.fair)
        return given

    def admit(self, parts: list[str], now: float) -> list[str]:
        """Of the free days we would take now, those we take (``LeaseBook``): none that we
        gave up lately."""
        if self.shed_until:
            parts = [p for p in parts if self.shed_until.get(p, 0.0) <= now]
        return parts

    @staticmethod
    def _prune(until: dict[str, float], now: float) -> None:
        for part in [p for p, t in until.items() if t <= now]:
            del until[part]
