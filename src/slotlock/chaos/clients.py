"""Concurrent clients: book and cancel with unique Idempotency-Keys, retried until decided.

Each client thread is one user. A retry repeats the same request with the same key, so
an attempt that timed out after being queued is never applied twice; a ``pending``
answer (202) is followed on the command's status URL. An operation that is still
undecided when its deadline passes is recorded as ``info``.
"""

from __future__ import annotations

import random
import threading
import time
from datetime import date, datetime, timedelta

from .history import History, Op
from .ops import Attempt

CALENDAR = "main"


class ClientThread(threading.Thread):
    def __init__(self, name: str, ops, days: list[date], history: History, seed: int,
                 t0: float, stop: threading.Event, op_deadline_s: float = 20.0,
                 cancel_ratio: float = 0.35, think_s: float = 0.0):
        super().__init__(name=f"client-{name}", daemon=True)
        self.user = name
        self.ops = ops
        self.days = days
        self.history = history
        self.rng = random.Random(seed)
        self.t0 = t0
        self.stop_event = stop
        self.op_deadline_s = op_deadline_s
        self.cancel_ratio = cancel_ratio
        self.think_s = think_s
        self.live: list[tuple[str, str]] = []  # (booking id, day) acknowledged, not cancelled
        self.seq = 0
        self.errors: list[str] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if self.live and self.rng.random() < self.cancel_ratio:
                    self.cancel()
                else:
                    self.book()
                if self.think_s:
                    time.sleep(self.rng.uniform(0, self.think_s))
        except Exception as exc:  # a harness bug must show, not hide as fewer operations
            self.errors.append(repr(exc))
            raise
        finally:
            self.ops.close()

    def _key(self) -> str:
        self.seq += 1
        return f"{self.user}-{self.seq}-{self.rng.getrandbits(32):08x}"

    def book(self) -> None:
        day = self.rng.choice(self.days)
        slot = self.rng.randrange(0, 96)
        start = datetime(day.year, day.month, day.day) + timedelta(minutes=15 * slot)
        end = min(start + timedelta(minutes=15 * self.rng.randint(1, 4)),
                  datetime(day.year, day.month, day.day) + timedelta(days=1))
        op = self.history.add(Op(0, self.user, "book", self._key(), day.isoformat(), self.now(),
                                 start=start.isoformat(), end=end.isoformat()))
        self._drive(op, lambda: self.ops.book(CALENDAR, start, end, "chaos", op.key))
        if op.type == "ok" and op.booking_id:
            self.live.append((op.booking_id, op.day))

    def cancel(self) -> None:
        booking_id, day = self.live.pop(self.rng.randrange(len(self.live)))
        op = self.history.add(Op(0, self.user, "cancel", self._key(), day, self.now(),
                                 target=booking_id))
        self._drive(op, lambda: self.ops.cancel(CALENDAR, booking_id, op.key))

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
