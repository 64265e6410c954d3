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
their share to the others, never back (``SHED_HOLD_S`` > the heartbeat). A worker that
shed writes its new count with the releases and sheds again only after ``QUIET_S``, when
every live worker has written a count that knows of those days.

Counts are stamped with Redis's clock, in one script with the read and the clean-up
(``share_beat.lua``): workers on hosts whose clocks disagree still agree on who is live,
and a count is deleted as stale only if it still is. Each worker process counts under its
own instance name (worker id + a random nonce), so two processes given the same
``SLOTLOCK_WORKER_ID`` still count as two.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections import Counter


from ..days.index import WorkIndex
from ..days.keys import WORKER_LOAD
from ..redis_conn import MAY_HAVE_RUN
from .leases import LeaseBook

log = logging.getLogger("slotlock.worker")

LIVE_S = 3.0  # a worker whose count is older than this is not counted
FORGET_S = 60.0  # counts older than this are deleted (the hash stays bounded)
MIN_SLACK = 2  # days over ``fair`` a worker may hold before it sheds
SHED_HOLD_S = 2.0  # a day given up is not taken back by its worker this long
SETTLED_S = 3.0  # only a day held this long is given up (none is passed back and forth)
QUIET_S = 2.5  # after shedding, no more until every count knows of it (> 2 heartbeats)


class FairShare:
    def __init__(self, index: WorkIndex, leases: LeaseBook, stats: Counter):
        self.index = index
        self.leases = leases
        self.stats = stats
        # this process's name in the counts: ids are the operator's, and two processes
        # given the same one must still count as two
        self.instance = f"{leases.holder}:{secrets.token_hex(4)}"
        self.fair: int | None = None  # None: alone, or not known yet
        self.cap: int | None = None
        self.shed_until: dict[str, float] = {}  # days given up: not taken back before then
        self.quiet_until = 0.0  # no shedding before then (monotonic)

    # -- the count, with the heartbeat -----------------------------------------------------

    def queue_beat(self, pipe, alive: bool, held: int | None = None) -> None:
        """Queue the write of our count (``held``, by default the days we hold; or its
        removal when we stop) with the read of every live count (``share_beat.lua``)."""
        count = "" if not alive else len(self.leases.owned) if held is None else held
        self.leases.scripts.queue(pipe, "share_beat", [WORKER_LOAD], [
            self.instance, count, int(LIVE_S * 1000), int(FORGET_S * 1000)])

    def took_beat(self, live: list) -> None:
        """Work out our share from the live counts (the reply of ``queue_beat``)."""
        counts = dict(zip(live[::2], live[1::2]))
        counts[self.instance] = len(self.leases.owned)  # ours as it is now
        if len(counts) <= 1:
            self.fair = self.cap = None
            return
        self.fair = math.ceil(sum(int(n) for n in counts.values()) / len(counts))
        self.cap = self.fair + max(MIN_SLACK, self.fair // 10)

    # -- acting on it ----------------------------------------------------------------------

    def shed(self, now: float | None = None) -> list[str]:
        """Over our cap: give up the days worked least lately, down to our fair share, in
        one round trip with our new count; the days given up."""
        now = time.monotonic() if now is None else now
        if self.cap is None or len(self.leases.owned) <= self.cap or now < self.quiet_until:
            return []
        count = len(self.leases.owned) - self.fair
        parts = [part for part, owned in self.leases.recent.items()
                 if now - owned.acquired_at >= SETTLED_S][:count]
        if not parts:
            return []
        leases = [self.leases.owned[part].lease for part in parts]

        def build(pipe) -> None:
            for lease in leases:
                lease.queue_release(pipe)
            self.queue_beat(pipe, True, held=len(self.leases.owned) - len(leases))

        until = now + SHED_HOLD_S
        self.quiet_until = now + QUIET_S
        try:
            # the scripts' own pipeline: one that Redis lost (a restart) is loaded and sent
            replies = self.leases.scripts.run_pipeline(build, raise_on_error=False)
        except MAY_HAVE_RUN:
            # Redis may have run the releases: forget the days rather than renew leases
            # that may be free (those not released lapse after the TTL), as release_idle
            for part, lease in zip(parts, leases):
                self.leases.forget(part)
                lease.released()
                self.shed_until[part] = until
            raise
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
