"""Concurrent clients: the seeded workload, retried until decided.

Each client thread is one user; one of them is an admin. An operation is one of:

- ``book``   a booking on one of the calendars' days, as naive local times (read in the
  calendar's zone; some fall in a DST gap and are refused), now and then one that
  reaches over midnight (refused: a booking lies within one local day); admins also
  book days in the past (which retention then trims);
- ``cancel`` one of the client's own bookings, or (the admin) another user's booking;
- ``retry``  the same Idempotency-Key and body as an earlier, decided booking: must be
  told what the first attempt was told;
- ``reuse``  an earlier key with another body: must be refused, 422 ``idempotency_mismatch``.

Half of the retries and reuses first drop the key's global idempotency record (as its
TTL would), so the day's own record of the key must answer them.

A retry of an attempt that ended unknown (timeout, reset) repeats the same request with
the same key, so a request that was queued is never applied twice; a ``pending`` answer
(202) is followed on the command's status URL. An operation still undecided when its
deadline passes is recorded as ``info``.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from .history import History, Op
from .ops import Attempt

CALENDAR = "main"


@dataclass(frozen=True)
class CalendarPlan:
    """One calendar of the run: its zone, the days anyone books, the past days admins book."""

    id: str
    timezone: str
    dates: tuple[date, ...]
    past: tuple[date, ...] = ()

    @property
    def all_dates(self) -> tuple[date, ...]:
        return self.past + self.dates


# three zones: one observing DST (with dates around its change), one with another DST rule
# (the change on another date), one with a half-hour offset and no DST
ZONES = (("berlin", "Europe/Berlin", date(2030, 3, 31)),
         ("newyork", "America/New_York", date(2030, 3, 10)),
         ("kolkata", "Asia/Kolkata", date(2030, 6, 1)))


def plan_calendars(today: date, days: int, past_days: int = 2,
                   zones=ZONES) -> list[CalendarPlan]:
    """``days`` dates around each zone's anchor (the DST change), and ``past_days`` dates
    before yesterday (older than a 1-day retention window)."""
    before = days // 2
    plans = []
    for calendar_id, timezone, anchor in zones:
        dates = tuple(anchor + timedelta(days=i - before) for i in range(days))
        past = tuple(today - timedelta(days=past_days + 1 - i) for i in range(past_days))
        plans.append(CalendarPlan(calendar_id, timezone, dates, past))
    return plans


@dataclass
class Mix:
    """How often each kind of operation is chosen (the rest are bookings)."""

    cancel: float = 0.30
    admin_cancel: float = 0.15  # of the admin's operations: cancel another user's booking
    retry: float = 0.05
    reuse: float = 0.03
    midnight: float = 0.05  # of the bookings: half reach over midnight, half start after it
    forget: float = 0.5  # of the retries and reuses: the key's global record expired first


@dataclass
class Shared:
    """Bookings acknowledged to any client and not cancelled: what an admin may cancel."""

    live: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (owner, calendar)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ClientThread(threading.Thread):
    def __init__(self, name: str, ops, plans: list[CalendarPlan], history: History, seed: int,
                 t0: float, stop: threading.Event, op_deadline_s: float = 20.0,
                 think_s: float = 0.0, admin: bool = False, mix: Mix | None = None,
                 shared: Shared | None = None, forget=None):
        super().__init__(name=f"client-{name}", daemon=True)
        self.user = name
        self.ops = ops
        self.plans = plans
        self.history = history
        self.rng = random.Random(seed)
        self.t0 = t0
        self.stop_event = stop
        self.op_deadline_s = op_deadline_s
        self.think_s = think_s
        self.admin = admin
        self.mix = mix or Mix()
        self.shared = shared or Shared()
        self.forget = forget  # (user, key) -> None: drop the key's global record
        self.live: list[tuple[str, str, str]] = []  # (booking id, calendar, day) not cancelled
        self.decided: list[tuple[Op, dict]] = []  # book ops decided by a worker, with their body
        self.seq = 0
        self.errors: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self.step()
                if self.think_s:
                    time.sleep(self.rng.uniform(0, self.think_s))
        except Exception as exc:  # a harness bug must show, not hide as fewer operations
            self.errors.append(repr(exc))
            raise
        finally:
            self.ops.close()

    def step(self) -> None:
        mix = self.mix
        bands = (
            (self.cancel, mix.cancel if self.live else 0.0),
            (self.admin_cancel, mix.admin_cancel if self.admin and self._others() else 0.0),
            (self.retry, mix.retry if self.decided else 0.0),
            (self.reuse, mix.reuse if self.decided else 0.0),
        )
        r = self.rng.random()
        for operation, share in bands:
            if r < share:
                operation()
                return
            r -= share
        self.book()

    def _key(self) -> str:
        self.seq += 1
        return f"{self.user}-{self.seq}-{self.rng.getrandbits(32):08x}"

    def _others(self) -> list[str]:
        with self.shared.lock:
            return [b for b, (owner, _) in self.shared.live.items() if owner != self.user]

    def _times(self, day: date) -> tuple[datetime, datetime]:
        midnight = datetime(day.year, day.month, day.day) + timedelta(days=1)
        if self.rng.random() < self.mix.midnight:  # around midnight: over it, or just after
            if self.rng.random() < 0.5:
                start = midnight - timedelta(minutes=15 * self.rng.randint(1, 4))
                return start, midnight + timedelta(minutes=15 * self.rng.randint(1, 4))
            start = midnight - timedelta(days=1, minutes=-15 * self.rng.randrange(0, 4))
            return start, start + timedelta(minutes=15 * self.rng.randint(1, 4))
        start = midnight - timedelta(days=1) + timedelta(minutes=15 * self.rng.randrange(0, 96))
        return start, min(start + timedelta(minutes=15 * self.rng.randint(1, 4)), midnight)

    def book(self) -> None:
        plan = self.rng.choice(self.plans)
        day = self.rng.choice(plan.all_dates if self.admin else plan.dates)
        start, end = self._times(day)
        body = {"calendar": plan.id, "start": start, "end": end, "title": "chaos"}
        op = self.history.add(Op(0, self.user, "book", self._key(), day.isoformat(), self.now(),
                                 start=start.isoformat(), end=end.isoformat(),
                                 calendar=plan.id))
        self._drive(op, lambda: self.ops.book(plan.id, start, end, "chaos", op.key))
        if op.type == "ok" and op.booking_id:
            self.live.append((op.booking_id, plan.id, op.day))
            with self.shared.lock:
                self.shared.live[op.booking_id] = (self.user, plan.id)
        # decided by the model: the key is pinned to this request (a 422 from the web layer,
        # e.g. a local time in a DST gap, is refused before the key is recorded)
        if op.type == "ok" or op.code in ("overlap", "quota_exceeded", "rule_violation"):
            self.decided.append((op, body))

    def cancel(self) -> None:
        booking_id, calendar, day = self.live.pop(self.rng.randrange(len(self.live)))
        with self.shared.lock:
            self.shared.live.pop(booking_id, None)
        self._cancel(booking_id, calendar, day)

    def admin_cancel(self) -> None:
        with self.shared.lock:
            others = sorted(b for b, (owner, _) in self.shared.live.items() if owner != self.user)
            booking_id = self.rng.choice(others)
            _, calendar = self.shared.live.pop(booking_id)
        self._cancel(booking_id, calendar, "")

    def _cancel(self, booking_id: str, calendar: str, day: str) -> None:
        op = self.history.add(Op(0, self.user, "cancel", self._key(), day, self.now(),
                                 target=booking_id, calendar=calendar))
        self._drive(op, lambda: self.ops.cancel(calendar, booking_id, op.key))

    def _maybe_forget(self, key: str) -> None:
        if self.forget is not None and self.rng.random() < self.mix.forget:
            self.forget(self.user, key)

    def retry(self) -> None:
        first, body = self.rng.choice(self.decided)
        self._maybe_forget(first.key)
        op = self.history.add(Op(0, self.user, "retry", first.key, first.day, self.now(),
                                 start=first.start, end=first.end, calendar=body["calendar"],
                                 expect=signature(first)))
        self._drive(op, lambda: self.ops.book(body["calendar"], body["start"], body["end"],
                                              body["title"], first.key))

    def reuse(self) -> None:
        """The same key and times (so the same day), another title."""
        first, body = self.rng.choice(self.decided)
        self._maybe_forget(first.key)
        op = self.history.add(Op(0, self.user, "reuse", first.key, first.day, self.now(),
                                 start=first.start, end=first.end, calendar=body["calendar"]))
        self._drive(op, lambda: self.ops.book(body["calendar"], body["start"], body["end"],
                                              "chaos, renamed", first.key))

    def _drive(self, op: Op, call) -> None:
        deadline = time.monotonic() + self.op_deadline_s
        delay = 0.05
        attempt: Attempt | None = None
        while time.monotonic() < deadline:
            if attempt is not None and attempt.result == "pending" and attempt.command_id:
                attempt = self.ops.status(attempt.command_id)
                if attempt.result == "unknown":
                    attempt = Attempt("pending", command_id=op.command_id)
            else:
                op.attempts += 1
                attempt = call()
            if attempt.command_id:
                op.command_id = attempt.command_id
            if attempt.status:
                op.status = attempt.status
            if attempt.result in ("ok", "fail"):
                op.type = attempt.result
                op.booking_id = attempt.booking_id
                op.code = attempt.code
                break
            if attempt.status:
                op.notes.append(str(attempt.status))
            time.sleep(delay * self.rng.uniform(0.5, 1.0))
            delay = min(delay * 2, 0.5 if attempt.result == "pending" else 1.0)
        else:
            op.type = "info"
        op.complete = self.now()


def signature(op: Op) -> str:
    """What an operation was told, comparable across retries: the booking or the error code."""
    return f"ok:{op.booking_id}" if op.type == "ok" else f"{op.type}:{op.code}"
