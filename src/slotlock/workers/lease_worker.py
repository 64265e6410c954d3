"""``slotlock worker``: holds fenced leases on days and applies their commands serially.

The loop has the shape of rq's ``Worker.work``: maintain (renew, release idle days,
sweep for orphaned days, heartbeat), process one batch per day with work, else block
on the wake-up stream. The first SIGTERM asks for a warm stop (finish the batch in
hand, release every lease, wake the other workers); a second one stops at once.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import socket
import time
from collections import Counter
from dataclasses import dataclass

import redis

from ..catalog import Catalog
from ..config import Settings
from ..days.index import WorkIndex
from ..days.keys import (
    CHANGED,
    DAYS,
    OUTBOX_DAYS,
    READY,
    WORKERS,
    DayKeys,
    split_partition,
    worker_alive_key,
)
from ..days.lease import DayLease
from ..days.scripts import Scripts
from ..days.store import DayStore
from ..errors import CursorMismatch, FenceRejected, LeaseLost
from ..model import Day
from ..redis_conn import connect, connect_blocking
from .applier import apply_entries, load_day

log = logging.getLogger("slotlock.worker")

BLOCK_MS = 50  # longest blocking read; also the sweep period for orphaned days
HEARTBEAT_S = 1.0
REINDEX_S = 1.0  # one incremental step over sl:days for queued days missing from the index
DAY_ERROR_BACKOFF_S = 5.0  # a day whose batch raised is left alone this long
FAILPOINT_ENV = "SLOTLOCK_FAILPOINT"  # test-only: "<name>:N" acts at the N-th commit
FAILPOINTS = ("stop_before_commit", "sleep_before_commit", "kill_after_commit")
# "stop_before_commit:usr1": fire at the first commit after a SIGUSR1, if one comes within
# ARMED_FOR_S (the fault harness uses it to make a stale writer certain, not lucky).
ARMED_BY_SIGNAL = "usr1"
ARMED_FOR_S = 2.0
DISABLE_FENCING_ENV = "SLOTLOCK_TEST_DISABLE_FENCING"


def fencing_disabled_for_test() -> bool:
    """Test-only broken build: commit without the lease token (and cursor) check.

    Honoured only when the process also runs under pytest (``PYTEST_CURRENT_TEST`` is
    inherited from the test that started it), so a stray variable cannot break production.
    It exists to prove that the fault checker catches what fencing prevents.
    """
    return os.environ.get(DISABLE_FENCING_ENV) == "1" and bool(os.environ.get("PYTEST_CURRENT_TEST"))


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


@dataclass
class OwnedDay:
    keys: DayKeys
    lease: DayLease
    day: Day | None = None  # cached committed state; None: read it again before deciding
    cursor: str = "0-0"
    dirty: bool = True
    renew_at: float = 0.0
    last_work: float = 0.0
    calendar_raw: str | None = None


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
                 blocking: redis.Redis | None = None):
        self.settings = settings
        self.holder = settings.worker_id
        self.client = client or connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms)
        self.blocking = blocking or connect_blocking(settings.redis_url, block_ms=BLOCK_MS,
                                                     timeout_ms=settings.redis_timeout_ms)
        self.unfenced = fencing_disabled_for_test()
        if day_bounds_disabled_for_test():
            _disable_day_bounds()
        self.scripts = Scripts(self.client, unfenced_commit=self.unfenced)
        self.store = DayStore(self.client, self.scripts)
        self.index = WorkIndex(self.client, self.scripts)
        self.catalog = Catalog(self.client)
        self.owned: dict[str, OwnedDay] = {}
        self.retry_at: dict[str, float] = {}  # days held by others: when their lease may lapse
        self.seen_scores: dict[str, float] = {}
        self.wake_id: str | None = None
        self.stats: Counter[str] = Counter()
        self.started_at = time.time()
        self._stop: str | None = None
        self._waiting = False
        self._next_sweep = 0.0
        self._next_heartbeat = 0.0
        self._next_reindex = 0.0
        self._failpoint = self._read_failpoint()
        self._commits_seen = 0
        self._armed_until = 0.0

    # -- the loop ------------------------------------------------------------------------

    def work(self, *, install_signals: bool = True, max_seconds: float | None = None) -> int:
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            if self._failpoint and self._failpoint[1] == ARMED_BY_SIGNAL:
                signal.signal(signal.SIGUSR1, self._arm_failpoint)
        if self.unfenced:
            log.warning("TEST BUILD: fencing disabled, commits are not checked against the lease")
        deadline = time.monotonic() + max_seconds if max_seconds else None
        log.info("worker %s started (pid %d, lease ttl %d ms, batch %d)", self.holder,
                 os.getpid(), self.settings.lease_ttl_ms, self.settings.batch_size)
        backoff = Backoff()
        try:
            while not self._stop:
                if deadline and time.monotonic() > deadline:
                    break
                try:
                    self.maintain()
                    if not self.process_days():
                        self.wait_for_work()
                    backoff.reset()
                except _Wake:
                    self._reset_blocking()
                except (redis.RedisError, OSError) as exc:
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
        self.blocking.connection_pool.disconnect()

    # -- maintenance ---------------------------------------------------------------------

    def maintain(self) -> None:
        now = time.monotonic()
        for part, owned in list(self.owned.items()):
            if owned.renew_at <= now:
                self._renew(part, owned, now)
        self._release_idle(now)
        if now >= self._next_sweep:
            self._next_sweep = now + BLOCK_MS / 1000
            self.sweep(now)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_S
            self.heartbeat()
        if now >= self._next_reindex:
            self._next_reindex = now + REINDEX_S
            for part in self.index.reindex_step():
                log.warning("day %s had queued commands but was missing from the index", part)

    def _renew(self, part: str, owned: OwnedDay, now: float) -> None:
        try:
            owned.lease.renew()
            owned.renew_at = now + self.settings.renew_interval_ms / 1000
            self.stats["renewals"] += 1
        except LeaseLost as exc:
            self.stats["leases_lost"] += 1
            log.warning("lost lease: %s", exc)
            self._drop(part)

    def _release_idle(self, now: float) -> None:
        idle = self.settings.idle_release_ms / 1000
        for part, owned in list(self.owned.items()):
            if owned.dirty or now - owned.last_work < idle:
                continue
            if owned.day is None:
                owned.dirty = True  # our view is stale: read the day again before letting go
                continue
            score = self.index.score(part)  # read before the check: see index_remove.lua
            if self.store.read_commands(owned.keys, owned.cursor, 1):
                owned.dirty = True
                continue
            if score is not None:
                self.index.remove_if_unchanged(part, score)
            owned.lease.release()
            self.stats["released"] += 1
            del self.owned[part]
            log.debug("released idle day %s", part)

    def sweep(self, now: float) -> None:
        """Look at the index of days with work: take orphans, notice missed wake-ups."""
        for part, score in self.index.active():
            owned = self.owned.get(part)
            if owned is not None:
                if self.seen_scores.get(part) != score:
                    owned.dirty = True
                self.seen_scores[part] = score
                continue
            if self.retry_at.get(part, 0.0) <= now and not self._stop:
                self.try_acquire(part, now)

    def try_acquire(self, part: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        keys = DayKeys(part)
        lease = DayLease(self.client, self.scripts, keys, self.holder, self.settings.lease_ttl_ms)
        if not lease.acquire():
            # try again just after the holder's lease would lapse
            self.retry_at[part] = now + (lease.retry_in_ms + 5) / 1000
            return False
        self.retry_at.pop(part, None)
        self.stats["acquired"] += 1
        self.owned[part] = OwnedDay(keys, lease, renew_at=now + self.settings.renew_interval_ms
                                    / 1000, last_work=now)
        log.info("acquired %s with token %d", part, lease.token)
        return True

    def heartbeat(self, alive: bool = True) -> None:
        status = {
            "alive": alive,
            "id": self.holder,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": self.started_at,
            "seen_at": time.time(),
            "days": {part: o.lease.token for part, o in self.owned.items()},
            "stats": dict(self.stats),
        }
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(WORKERS, self.holder, json.dumps(status))
        if alive:
            pipe.set(worker_alive_key(self.holder), "1", px=self.settings.lease_ttl_ms * 3)
        else:
            pipe.delete(worker_alive_key(self.holder))
        pipe.execute()

    # -- waiting -------------------------------------------------------------------------

    def wait_for_work(self) -> None:
        """Block on the wake-up stream; cheap to call, and never longer than ``BLOCK_MS``."""
        self._read_wakeups(block_ms=self._block_ms())

    def _block_ms(self) -> int:
        now = time.monotonic()
        due = [self._next_sweep, self._next_heartbeat, *(o.renew_at for o in self.owned.values())]
        return max(1, min(BLOCK_MS, int((min(due) - now) * 1000)))

    def _read_wakeups(self, block_ms: int | None) -> None:
        if self.wake_id is None:
            self.wake_id = self.index.last_wakeup_id()
        if block_ms is None:
            reply = self.client.xread({READY: self.wake_id}, count=1000)
        else:
            self._waiting = True
            try:
                if self._stop:
                    return
                reply = self.blocking.xread({READY: self.wake_id}, count=1000, block=block_ms)
            finally:
                self._waiting = False
        now = time.monotonic()
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                self.wake_id = entry_id  # carry the last id seen, never "$"
                part = fields.get("p")
                if not part:
                    continue
                if fields.get("r"):
                    self.retry_at.pop(part, None)  # its holder let go: no need to wait for expiry
                owned = self.owned.get(part)
                if owned is not None:
                    owned.dirty = True
                elif not self._stop and (fields.get("r") or self.retry_at.get(part, 0.0) <= now):
                    # a released lease is free now: don't wait for its old expiry
                    self.try_acquire(part, now)

    # -- applying ------------------------------------------------------------------------

    def process_days(self) -> bool:
        worked = False
        for part in list(self.owned):
            owned = self.owned.get(part)
            if owned is None or not owned.dirty:
                continue
            if self._stop and worked:
                break  # warm stop: finish what is in hand, leave the rest to a successor
            try:
                worked = self.process_batch(part, owned) > 0 or worked
            except (redis.ConnectionError, redis.TimeoutError, OSError, _Wake):
                raise  # the connection, not the day: the loop backs off and reads again
            # a bug, a script error or a poisoned day must not stop the other days (logged)
            except Exception:  # noqa: BLE001
                self._let_go_after_error(part, owned)
        if any(o.dirty for o in self.owned.values()):
            self._read_wakeups(block_ms=None)  # keep other days from starving behind a hot one
        return worked

    def process_batch(self, part: str, owned: OwnedDay) -> int:
        calendar_id, day = split_partition(part)
        keys = owned.keys
        if owned.day is None:
            calendar = self.catalog.find(calendar_id)
            if calendar is None:
                log.error("commands for unknown calendar %s; leaving them queued", calendar_id)
                owned.dirty = False
                return 0
            state = self.store.read_state(keys)
            owned.day = load_day(calendar, day, state.bookings, state.version)
            owned.cursor = state.cursor
            owned.calendar_raw = None
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.catalog_key(calendar_id))
        pipe.xrange(keys.cmds, min=f"({owned.cursor}", max="+", count=self.settings.batch_size)
        calendar_raw, entries = pipe.execute()
        if not entries:
            owned.dirty = False
            return 0
        if calendar_raw and calendar_raw != owned.calendar_raw:
            from ..model import Calendar

            owned.day = owned.day.with_calendar(Calendar.from_dict(json.loads(calendar_raw)))
            owned.calendar_raw = calendar_raw
        batch = apply_entries(owned.day, owned.cursor,
                              [(sid, fields["c"]) for sid, fields in entries], part,
                              with_events=bool(owned.day.calendar.webhook_url))
        self._maybe_failpoint(part, owned)
        try:
            self.store.commit(owned.lease, owned.cursor, batch.cursor, batch.bookings_json(),
                              batch.day.version, batch.outcomes, batch.events,
                              self.settings.reply_ttl_ms)
        except FenceRejected as exc:
            self.stats["fence_refusals"] += 1
            log.warning("FENCED: %s; dropping the day, nothing of this batch was written", exc)
            self._drop(part)
            return 0
        except CursorMismatch as exc:
            self.stats["cursor_refusals"] += 1
            log.warning("refused: %s; reading the day again", exc)
            owned.day = None
            return 0
        self._maybe_failpoint_after_commit(part, owned)
        self._note_commit(part, day, bool(batch.events))
        owned.day = batch.day
        owned.cursor = batch.cursor
        owned.last_work = time.monotonic()
        owned.dirty = len(entries) >= self.settings.batch_size
        self.stats["commits"] += 1
        self.stats["commands"] += len(entries)
        self.stats["accepted"] += batch.accepted
        return len(entries)

    def _note_commit(self, part: str, day, had_events: bool) -> None:
        """Tell the background jobs (issue 6) about a commit: after it, like submitters do.

        Not atomic with the commit (global keys stay out of day scripts): a crash right
        here loses only the hint; ``slotlock jobs`` finds the day by its periodic SCAN.
        """
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(DAYS, {part: day.toordinal()})
        pipe.zadd(CHANGED, {part: int(time.time() * 1000)})
        if had_events:
            pipe.zincrby(OUTBOX_DAYS, 1, part)
        try:
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not note commit of %s for the jobs (%s)", part, exc)

    def _let_go_after_error(self, part: str, owned: OwnedDay) -> None:
        self.stats["day_errors"] += 1
        log.exception("error while applying %s (token %s); nothing of the batch was written; "
                      "letting the day go for %.0f s", part, owned.lease.token,
                      DAY_ERROR_BACKOFF_S)
        self.owned.pop(part, None)
        self.retry_at[part] = time.monotonic() + DAY_ERROR_BACKOFF_S
        try:
            owned.lease.release()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # it lapses after the TTL

    @staticmethod
    def catalog_key(calendar_id: str) -> str:
        from ..days.keys import calendar_key

        return calendar_key(calendar_id)

    def _drop(self, part: str) -> None:
        self.owned.pop(part, None)
        self.retry_at[part] = 0.0

    def _forget_cached_state(self) -> None:
        """After a Redis error we cannot know whether the last commit landed: read again."""
        for owned in self.owned.values():
            owned.day = None
            owned.dirty = True
        self.wake_id = None

    # -- test-only failpoint -------------------------------------------------------------

    @staticmethod
    def _read_failpoint() -> tuple[str, int] | None:
        raw = os.environ.get(FAILPOINT_ENV)
        if not raw:
            return None
        name, _, nth = raw.partition(":")
        if name not in FAILPOINTS:
            raise ValueError(f"unknown failpoint {raw!r}")
        return name, nth if nth == ARMED_BY_SIGNAL else int(nth or 1)

    def _arm_failpoint(self, signum, frame) -> None:
        self._armed_until = time.monotonic() + ARMED_FOR_S

    def _maybe_failpoint(self, part: str, owned: OwnedDay) -> None:
        if self._failpoint is None or self._failpoint[0] == "kill_after_commit":
            return
        self._commits_seen += 1
        name, nth = self._failpoint
        if nth == ARMED_BY_SIGNAL:
            if time.monotonic() > self._armed_until:
                return
            self._armed_until = 0.0
        elif self._commits_seen != nth:
            return
        log.warning("FAILPOINT %s: %s token %d", name, part, owned.lease.token)
        for handler in logging.getLogger().handlers:
            handler.flush()
        if name == "stop_before_commit":
            os.kill(os.getpid(), signal.SIGSTOP)  # the test resumes us with SIGCONT
        else:
            time.sleep(30)  # only a second SIGTERM (cold stop) cuts this short
        log.warning("FAILPOINT resumed: committing %s with token %d", part, owned.lease.token)

    def _maybe_failpoint_after_commit(self, part: str, owned: OwnedDay) -> None:
        # test-only (issue 6): die by SIGKILL right after the N-th commit, before anything
        # else (reply reads, job hints) happens: the "crash between commit and enqueue".
        if self._failpoint is None or self._failpoint[0] != "kill_after_commit":
            return
        self._commits_seen += 1
        if self._commits_seen == self._failpoint[1]:
            log.warning("FAILPOINT kill_after_commit: %s token %d, killing myself", part,
                        owned.lease.token)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    # -- stopping ------------------------------------------------------------------------

    def shutdown(self) -> None:
        parts = list(self.owned)
        try:
            for part in parts:
                self.owned[part].lease.release()
            self.owned.clear()
            self.index.wake(parts, released=True)  # successors take over now, not after the TTL
            self.heartbeat(alive=False)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("could not release leases (%s); they lapse after the TTL", exc)
        log.info("worker %s stopped: %s", self.holder,
                 " ".join(f"{k}={v}" for k, v in sorted(self.stats.items())) or "idle")
