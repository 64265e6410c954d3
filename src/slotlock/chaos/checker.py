"""The checker: does the history, sampled during the run and read at its end, keep G1-G6?

Anomaly kinds (each must be 0):

- ``overlap``           two committed bookings overlap (sampled during the run, and at the end)
- ``lost_ack``          an acknowledged booking is gone though no cancel of it was accepted
- ``cancelled_present`` an acknowledged cancel, yet the booking is still committed
- ``rejected_present``  a rejected booking was seen in committed state, at any sample or the end
- ``ack_mismatch``      what the client was told differs from the outcome recorded in Redis
- ``duplicate``         an idempotency key queued or applied more than once; a booking made twice
- ``unsettled``         a queued command without an outcome once the faults are over
- ``order``             outcomes not decided in stream order: fold mismatch, cursor going back
- ``fence``             a commit under an older token after a newer one (token history)
- ``crash``             a worker or web process exited without the harness stopping it
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict

import redis

from ..days.keys import DayKeys, idempotency_key
from .daycheck import DayReport, check_day, overlaps, stream_le
from .history import Op

KINDS = ("overlap", "lost_ack", "cancelled_present", "rejected_present", "ack_mismatch",
         "duplicate", "unsettled", "order", "fence", "crash")


class Sampler(threading.Thread):
    """Reads every day's committed state every ``interval_s`` and checks each snapshot."""

    def __init__(self, client: redis.Redis, parts: list[str], stop: threading.Event,
                 interval_s: float = 0.1):
        super().__init__(name="sampler", daemon=True)
        self.client = client
        self.parts = parts
        self.stop_event = stop
        self.interval_s = interval_s
        self.samples = 0
        self.failed_reads = 0
        self.seen: set[str] = set()  # every booking id ever seen committed
        self.anomalies: list[tuple[str, str]] = []
        self._last: dict[str, tuple[str, int]] = {}

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval_s)
        self.sample()

    def sample(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for part in self.parts:
                pipe.hmget(DayKeys(part).state, ["bookings", "cursor", "version"])
            rows = pipe.execute()
        except redis.RedisError:
            self.failed_reads += 1
            return
        self.samples += 1
        for part, (raw, cursor, version) in zip(self.parts, rows):
            bookings = json.loads(raw) if raw else []
            self.seen.update(b["id"] for b in bookings)
            for a, b in overlaps(bookings):
                self.anomalies.append(("overlap", f"{part} sampled: {a['id']} and {b['id']}"))
            cursor, version = cursor or "0-0", int(version or 0)
            last = self._last.get(part)
            if last and (not stream_le(last[0], cursor) or version < last[1]):
                self.anomalies.append(("order", (f"{part} went back: cursor {last[0]} -> "
                                                f"{cursor}, version {last[1]} -> {version}")))
            self._last[part] = (cursor, version)


def wait_settled(client: redis.Redis, parts: list[str], timeout: float) -> bool:
    """Wait until no day has a command past its cursor (or give up after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            settled = True
            for part in parts:
                keys = DayKeys(part)
                cursor = client.hget(keys.state, "cursor") or "0-0"
                if client.xrange(keys.cmds, min=f"({cursor}", max="+", count=1):
                    settled = False
                    break
            if settled:
                return True
        except redis.RedisError:
            pass
        time.sleep(0.1)
    return False


class Checker:
    def __init__(self, client: redis.Redis, parts: list[str]):
        self.client = client
        self.parts = parts
        self.anomalies: list[tuple[str, str]] = []
        self.resolved: Counter[str] = Counter()

    def add(self, kind: str, detail: str) -> None:
        self.anomalies.append((kind, detail))

    def check(self, ops: list[Op], sampler: Sampler | None) -> dict:
        reports: dict[str, DayReport] = {p: check_day(self.client, p) for p in self.parts}
        for report in reports.values():
            self.anomalies.extend(report.anomalies)
            pending_after = report.counts["entries"] - report.counts["applied"]
            if pending_after:
                self.add("unsettled", f"{report.part}: {pending_after} commands past the cursor")
        if sampler is not None:
            self.anomalies.extend(sampler.anomalies)
        outcomes: dict[str, dict] = {}
        commands: dict[str, dict] = {}
        committed: dict[str, dict] = {}
        for report in reports.values():
            outcomes.update(report.outcomes)
            commands.update(report.commands)
            committed.update(report.bookings)
        self._idempotency(commands, outcomes)
        cancelled = {o["booking"]["id"] for o in outcomes.values()
                     if o["status"] == "accepted" and o.get("event") == "cancelled"}
        seen = (sampler.seen if sampler else set()) | set(committed)
        for op in ops:
            self._op(op, outcomes, committed, cancelled, seen)
        counts = Counter(kind for kind, _ in self.anomalies)
        return {"anomalies": {k: counts.get(k, 0) for k in KINDS},
                "examples": [f"{k}: {d}" for k, d in self.anomalies[:20]],
                "resolved": dict(self.resolved),
                "days": {p: {k: v for k, v in r.counts.items() if k != "tokens"}
                         | {"tokens": len(r.counts["tokens"])} for p, r in reports.items()}}

    def _idempotency(self, commands: dict[str, dict], outcomes: dict[str, dict]) -> None:
        by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
        for command_id, command in commands.items():
            if command.get("idempotency_key"):
                by_key[(command["actor"], command["idempotency_key"])].append(command_id)
        for key, ids in by_key.items():
            if len(ids) > 1:
                self.add("duplicate", f"key {key} queued {len(ids)} times: {ids}")

    def _record(self, op: Op) -> dict | None:
        raw = self.client.get(idempotency_key(op.client, op.key))
        return json.loads(raw) if raw else None

    def _op(self, op: Op, outcomes, committed, cancelled, seen) -> None:
        record = self._record(op)
        command_id = (record or {}).get("command_id") or op.command_id
        final = outcomes.get(command_id) if command_id else None
        if op.type == "info":
            self.resolved["info->" + (final["status"] if final else "never queued")] += 1
        if op.type is None:
            self.resolved["unfinished"] += 1
            return
        told = {"ok": "accepted", "fail": "rejected"}.get(op.type)
        if told and final is None:
            self.add("ack_mismatch" if op.type == "ok" else "unsettled",
                     f"op {op.id} {op.f} {op.key} was {op.type} but Redis holds no outcome "
                     f"for {command_id}")
            return
        if told and final["status"] != told:
            self.add("ack_mismatch", f"op {op.id} {op.f} told {op.type}, Redis says "
                                     f"{final['status']} ({command_id})")
        booking_id = (record or {}).get("booking_id") or op.booking_id
        if op.f == "book":
            if op.type == "ok" and booking_id not in committed and booking_id not in cancelled:
                self.add("lost_ack", f"op {op.id}: booking {booking_id} acknowledged, now gone")
            if op.type == "fail" and booking_id and booking_id in seen:
                self.add("rejected_present", f"op {op.id}: rejected booking {booking_id} "
                                             "was committed")
        elif op.f == "cancel" and op.type == "ok" and op.target in committed:
            self.add("cancelled_present", f"op {op.id}: {op.target} cancelled, still committed")
