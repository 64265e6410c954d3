"""``slotlock worker``: holds fenced leases on days and applies their commands serially.

The loop has the shape of rq's ``Worker.work``: maintain (renew, release idle days,
sweep for orphaned days, heartbeat, one re-index step: :mod:`.maintenance`), process one batch per day with
work, else block on one read of the wake-up stream, the held days' streams and their
calendars' change streams (:mod:`.wakeups`). The first SIGTERM asks for a warm stop (finish
the batch in hand, release every lease, wake the other workers); a second one stops at
once. The pieces: :mod:`.leases` (the days held), :mod:`.day_batch` (load, decide,
commit one batch), :mod:`.failpoints` (test-only, passed in).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections import Counter

import redis

from ..catalog import Catalog
from ..config import Settings
from ..days.index import WorkIndex
from ..days.scripts import Scripts
from ..days.store import DayStore
from ..errors import UnsuitableRedis
from ..redis_conn import (CLUSTER_DOWN, MAY_HAVE_RUN, REDIS_ERRORS, check_server, connect,
                          connect_blocking, is_cluster_client, use_cluster)
from .day_batch import DayBatches
from .failpoints import Failpoints, fencing_disabled_for_test
from .leases import LeaseBook, OwnedDay
from .maintenance import BLOCK_MS, Maintenance
from .wakeups import Wakeups

log = logging.getLogger("slotlock.worker")

DAY_ERROR_BACKOFF_S = 5.0  # a day whose batch raised is left alone this long
PASS_BUDGET = 0.25  # of the renewal interval: the longest a pass decides before renewals

__all__ = ["LeaseWorker", "OwnedDay", "fencing_disabled_for_test"]


DISABLE_DAY_BOUNDS_ENV = "SLOTLOCK_TEST_DISABLE_DAY_BOUNDS"


def day_bounds_disabled_for_test() -> bool:
    """Test-only broken build: decide without the ``within_local_day`` rule, so a booking
    may spill into the neighbouring local day. Honoured only under pytest, like
    :func:`fencing_disabled_for_test`; it proves the instant-overlap check catches it."""
    return (os.environ.get(DISABLE_DAY_BOUNDS_ENV) == "1"
            and bool(os.environ.get("PYTEST_CURRENT_TEST")))


def _disable_day_bounds() -> None:
    from ..model import rules

    rules.first_violation.__defaults__ = (
        tuple(r for r in rules.BOOKING_RULES if r is not rules.within_local_day),)
    log.warning("TEST BUILD: the within_local_day rule is disabled")


class _Wake(Exception):
    """Raised from the signal handler to cut a blocking read short."""


class _ColdStop(BaseException):
    pass


class Backoff:
    def __init__(self, first: float = 0.05, cap: float = 2.0):
        self.first, self.cap, self.attempt = first, cap, 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class LeaseWorker:
    def __init__(self, settings: Settings, client: redis.Redis | None = None,
                 blocking: redis.Redis | None = None, failpoints: Failpoints | None = None):
        self.settings = settings
        self.holder = settings.worker_id
        cluster = use_cluster(settings)
        self.client = client or connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                                        cluster=cluster)
        self.blocking = blocking or connect_blocking(settings.redis_url, block_ms=BLOCK_MS,
                                                     timeout_ms=settings.redis_timeout_ms,
                                                     cluster=cluster)
        self.unfenced = fencing_disabled_for_test()
        if day_bounds_disabled_for_test():
            _disable_day_bounds()
        self.scripts = Scripts(self.client, unfenced_commit=self.unfenced)
        self.store = DayStore(self.client, self.scripts)
        self.index = WorkIndex(self.client, self.scripts)
        self.catalog = Catalog(self.client, self.scripts)
        self.stats: Counter[str] = Counter()
        self.failpoints = failpoints if failpoints is not None else Failpoints.from_env()
        self.leases = LeaseBook(self.client, self.scripts, self.holder, settings.lease_ttl_ms,
                                settings.renew_interval_ms, self.stats)
        self.wakeups = Wakeups(self.client, self.blocking, self.index, self.leases,
                               settings.batch_size, stopping=lambda: bool(self._stop))
        self.batches = DayBatches(settings, self.client, self.store, self.catalog, self.index,
                                  self.leases, self.failpoints, self.stats, self.wakeups)
        self.leases.reader = self.batches
        self.started_at = time.time()
        self._stop: str | None = None
        self._waiting = False
        self.maintenance = Maintenance(settings, self.client, self.scripts, self.index,
                                       self.leases, self.batches, self.wakeups, self.stats,
                                       stopping=lambda: bool(self._stop),
                                       started_at=self.started_at)

    @property
    def owned(self) -> dict[str, OwnedDay]:
        return self.leases.owned

    @property
    def retry_at(self) -> dict[str, float]:
        return self.leases.retry_at

    def try_acquire(self, part: str, now: float | None = None) -> bool:
        return self.leases.try_acquire(part, now)

    def process_batch(self, part: str, owned: OwnedDay) -> int:
        return self.batches.process(part, owned)

    # -- the loop ------------------------------------------------------------------------

    def work(self, *, install_signals: bool = True, max_seconds: float | None = None) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            if self.failpoints.armed_by_signal:
                signal.signal(signal.SIGUSR1, self.failpoints.arm)
        if self.unfenced:
            log.warning("TEST BUILD: fencing disabled, commits are not checked against the lease")
        deadline = time.monotonic() + max_seconds if max_seconds else None
        log.info("worker %s started (pid %d, lease ttl %d ms, batch %d)", self.holder,
                 os.getpid(), self.settings.lease_ttl_ms, self.settings.batch_size)
        backoff = Backoff()
        policy_checked = False
        try:
            while not self._stop:
                if deadline and time.monotonic() > deadline:
                    break
                try:
                    if not policy_checked:
                        check_server(self.client, self.settings)
                        policy_checked = True
                    self.maintain()
                    if not self.process_days():
                        self.wait_for_work()
                    backoff.reset()
                except _Wake:
                    self._reset_blocking()
                except UnsuitableRedis as exc:
                    log.error("%s", exc)
                    return 2
                except (*REDIS_ERRORS, OSError) as exc:
                    self.stats["redis_errors"] += 1
                    self._forget_cached_state()
                    delay = backoff.next()
                    log.warning("redis error (%s: %s); retrying in %.0f ms",
                                type(exc).__name__, exc, delay * 1000)
                    self._sleep(delay)
                except Exception:  # a bug outside any one day: log it, back off, go on
                    self.stats["errors"] += 1
                    self._forget_cached_state()
                    log.exception("unexpected error in the worker loop")
                    self._sleep(backoff.next())
        except _ColdStop:
            log.warning("worker %s: cold stop, leases left to expire", self.holder)
            return 1
        self.shutdown()
        return 0

    def request_stop(self) -> None:
        """Warm stop from another thread (tests, ``slotlock up``)."""
        self._stop = "warm"

    def _on_signal(self, signum, frame) -> None:
        if self._stop:
            raise _ColdStop()
        self._stop = "warm"
        log.info("worker %s: %s, finishing the batch in hand", self.holder,
                 signal.Signals(signum).name)
        if self._waiting:
            raise _Wake()

    def _sleep(self, seconds: float) -> None:
        self._waiting = True
        try:
            if not self._stop:
                time.sleep(seconds)
        except _Wake:
            pass
        finally:
            self._waiting = False

    def _reset_blocking(self) -> None:
        """After a signal cut a blocking read short: its connection may hold the reply of
        a read nobody takes. (On a cluster the loop never reads on it: the shard readers
        do, on their own.)"""
        if not is_cluster_client(self.blocking):
            self.blocking.connection_pool.disconnect()

    # -- maintenance (workers/maintenance.py) --------------------------------------------

    def maintain(self) -> None:
        self.maintenance.run(time.monotonic())

    def sweep(self, now: float) -> None:
        self.maintenance.sweep(now)

    def heartbeat(self, alive: bool = True) -> None:
        self.maintenance.heartbeat(alive)

    # -- waiting -------------------------------------------------------------------------

    def wait_for_work(self) -> None:
        """Block on the wake-up stream; cheap to call, and never longer than ``BLOCK_MS``."""
        self._read_wakeups(block_ms=self._block_ms())

    def _block_ms(self) -> int:
        now = time.monotonic()
        due = [self.maintenance.next_due()]
        renewal = self.leases.next_renewal()
        if renewal is not None:
            due.append(renewal)
        return max(1, min(BLOCK_MS, int((min(due) - now) * 1000)))

    def _read_wakeups(self, block_ms: int | None) -> None:
        if block_ms is None:
            self.wakeups.read(None)
            return
        if self._stop:
            return
        streams, watched = self.wakeups.prepare()
        self._waiting = True  # only the blocking wait: a signal never cuts an acquisition
        try:
            reply = self.wakeups.fetch(streams, block_ms)
        finally:
            self._waiting = False
        self.wakeups.take(reply, watched)

    # -- applying ------------------------------------------------------------------------

    def process_days(self) -> bool:
        """Decide a batch of every dirty day, then commit them all in one round trip.

        A pass is cut short after ``PASS_BUDGET`` of the renewal interval (the days left
        stay dirty for the next pass, which comes after the renewals), and a day whose lease
        is within a quarter TTL of its expiry by our own clock is left for the renewal to
        come first: a slow pass never makes a lease lapse under a batch in hand. Days that
        worked least lately go first, so a cut pass starves nobody."""
        started = time.monotonic()
        budget = self.settings.renew_interval_ms / 1000 * PASS_BUDGET
        decided = []
        for part, owned in sorted(self.leases.dirty_days(), key=lambda d: d[1].last_work):
            if self.owned.get(part) is not owned or not owned.dirty:
                continue  # let go of while an earlier day was processed
            if self._stop and decided:
                break  # warm stop: finish what is in hand, leave the rest to a successor
            now = time.monotonic()
            if decided and now - started > budget:
                self.stats["passes_cut"] += 1
                break  # the renewals first; the days left stay dirty
            if self.leases.near_expiry(owned, now):
                self.stats["deferred_near_expiry"] += 1
                continue  # renewed (or found lost) by the next maintenance pass first
            try:
                batch = self.batches.decide(part, owned)
            except (redis.ConnectionError, redis.TimeoutError, *CLUSTER_DOWN, OSError, _Wake):
                raise  # the connection, not the day: the loop backs off and reads again
            # a bug, a script error or a poisoned day must not stop the other days (logged)
            except Exception as exc:  # noqa: BLE001
                self._let_go_after_error(part, owned, exc)
                continue
            if batch is not None:
                decided.append(batch)
        worked = bool(decided) and self.batches.commit(
            decided, on_error=self._let_go_after_error) > 0
        if self.leases.dirty_days():
            self._read_wakeups(block_ms=None)  # keep other days from starving behind a hot one
        return worked

    def _let_go_after_error(self, part: str, owned: OwnedDay, exc: Exception) -> None:
        self.stats["day_errors"] += 1
        log.error("error while applying %s (token %s); nothing of the batch was written; "
                  "letting the day go for %.0f s", part, owned.lease.token,
                  DAY_ERROR_BACKOFF_S, exc_info=exc)
        self.leases.drop(part, retry_in_s=DAY_ERROR_BACKOFF_S)
        try:
            owned.lease.release()
        except MAY_HAVE_RUN:
            pass  # it lapses after the TTL

    def _forget_cached_state(self) -> None:
        """After a Redis error we cannot know whether the last commit landed: read again."""
        self.leases.forget_cached_state()
        self.wakeups.reset()

    # -- stopping ------------------------------------------------------------------------

    def shutdown(self) -> None:
        try:
            parts = self.leases.release_all()
            self.index.wake(parts, released=True)  # successors take over now, not after the TTL
            log.info("released at stop: %s", " ".join(sorted(parts)) or "-")
            self.heartbeat(alive=False)
        except MAY_HAVE_RUN as exc:
            log.warning("could not release leases (%s); they lapse after the TTL", exc)
        self.wakeups.close()
        log.info("worker %s stopped: %s", self.holder,
                 " ".join(f"{k}={v}" for k, v in sorted(self.stats.items())) or "idle")
