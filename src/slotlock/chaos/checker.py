"""The checker: does the history, sampled during the run and read at its end, keep G1-G6?

Every day is checked by the audit (``slotlock.workers.audit``): it replays the day through
``decide``/``evolve`` with the recorded rules revisions, so a wrongful rejection, a wrong
booking field or an outcome the model would not give is an anomaly. Overlaps are checked
on instants across days (every committed booking of a calendar, in UTC). On top, the
history: what each client was told against what Redis holds.

Anomaly kinds (each must be 0):

- ``overlap``           two committed bookings of a calendar share an instant, on one day or
                        across days (sampled during the run, and at the end)
- ``replay``            the audit's replay disagrees with a recorded outcome, the committed
                        state, the cursor or the counters (audit codes outcome, state, ...)
- ``internal_error``    the worker could not decide an entry (rejected as ``internal``)
- ``lost_ack``          an acknowledged booking is gone though no cancel of it was accepted
- ``cancelled_present`` an acknowledged cancel, yet the booking is still committed
- ``rejected_present``  a rejected booking was seen in committed state, at any sample or the end
- ``ack_mismatch``      what the client was told differs from the outcome recorded in Redis
- ``duplicate``         an idempotency key queued more than once; a retry with the same key
                        and body told another outcome than the first attempt
- ``idempotency``       a key reused with another body not refused with 422
                        ``idempotency_mismatch``
- ``zone_change``       the time zone of a calendar with bookings or queued commands changed
- ``webhook_lost``      an accepted booking or cancel whose event never reached the webhook
- ``webhook_order``     events of one day first arrived out of stream order
- ``unsettled``         a queued command without an outcome once the faults are over
- ``order``             the committed cursor or version went back between two samples
- ``fence``             a commit under an older token after a newer one (token history)
- ``crash``             a worker or web process exited without the harness stopping it
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from itertools import pairwise

import redis

from ..catalog import Catalog
from ..days.keys import DayKeys, idempotency_key, split_partition
from ..workers.audit import DayReport, audit_day, calendar_overlaps, sid
from .clients import signature
from .history import Op

KINDS = ("overlap", "replay", "internal_error", "lost_ack", "cancelled_present",
         "rejected_present", "ack_mismatch", "duplicate", "idempotency", "zone_change",
         "webhook_lost", "webhook_order", "unsettled", "order", "fence", "crash")

# audit finding code -> anomaly kind
AUDIT_KINDS = {"overlap": "overlap", "token_history": "fence", "internal_error": "internal_error"}


def by_calendar(parts: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for part in parts:
        out[split_partition(part)[0]].append(part)
    return dict(out)


# refusals the web gives without queueing anything (the key may still be pinned to them)
REFUSED_BEFORE_QUEUEING = frozenset({"rule_violation", "not_found"})


class Sampler(threading.Thread):
    """Reads every day's committed state every ``interval_s`` and checks each snapshot:
    no two bookings of a calendar share an instant (across its days), cursors and versions
    never go back."""

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
        self._reported: set[tuple[str, str]] = set()

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
        committed: dict[str, dict[str, list]] = defaultdict(dict)
        for part, (raw, cursor, version) in zip(self.parts, rows):
            bookings = json.loads(raw) if raw else []
            self.seen.update(b["id"] for b in bookings)
            committed[split_partition(part)[0]][part] = bookings
            cursor, version = cursor or "0-0", int(version or 0)
            last = self._last.get(part)
            if last and (sid(cursor) < sid(last[0]) or version < last[1]):
                self.anomalies.append(("order", (f"{part} went back: cursor {last[0]} -> "
                                                f"{cursor}, version {last[1]} -> {version}")))
            self._last[part] = (cursor, version)
        for days in committed.values():
            # one sweep over all days of the calendar: pairs within a day count too
            merged = {"*": [b for items in days.values() for b in items]}
            for finding in calendar_overlaps(merged):
                pair = tuple(sorted(b["id"] for b in finding.details["bookings"]))
                if pair not in self._reported:  # each pair once, not once per sample
                    self._reported.add(pair)
                    self.anomalies.append(("overlap", f"sampled: {finding.message}"))


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
    def __init__(self, client: redis.Redis, parts: list[str],
                 forgotten: dict[tuple[str, str], dict] | None = None):
        self.client = client
        self.parts = parts
        self.forgotten = forgotten or {}  # (user, key) -> the global record the run dropped
        self.anomalies: list[tuple[str, str]] = []
        self.resolved: Counter[str] = Counter()

    def add(self, kind: str, detail: str) -> None:
        self.anomalies.append((kind, detail))

    def check(self, ops: list[Op], sampler: Sampler | None) -> dict:
        catalog = Catalog(self.client)
        reports: dict[str, DayReport] = {p: audit_day(self.client, p, catalog)
                                         for p in self.parts}
        for part, report in reports.items():
            for finding in report.findings:
                self.add(AUDIT_KINDS.get(finding.code, "replay"),
                         f"{part}: [{finding.code}] {finding.message}")
            if report.waiting:
                self.add("unsettled", f"{part}: {report.waiting} commands past the cursor")
        for days in by_calendar(self.parts).values():
            for finding in calendar_overlaps({p: list(reports[p].committed.values())
                                              for p in days}):
                self.add("overlap", finding.message)
        if sampler is not None:
            self.anomalies.extend(sampler.anomalies)
        outcomes: dict[str, dict] = {}
        commands: dict[str, dict] = {}
        committed: dict[str, dict] = {}
        for report in reports.values():
            outcomes.update(report.outcomes)
            commands.update(report.commands)
            committed.update(report.committed)
        self._idempotency(commands)
        cancelled = {o["booking"]["id"] for o in outcomes.values()
                     if o["status"] == "accepted" and o.get("event") == "cancelled"}
        seen = (sampler.seen if sampler else set()) | set(committed)
        self._queued = set(commands)
        for op in ops:
            self._op(op, outcomes, committed, cancelled, seen)
        counts = Counter(kind for kind, _ in self.anomalies)
        return {"anomalies": {k: counts.get(k, 0) for k in KINDS},
                "examples": [f"{k}: {d}" for k, d in self.anomalies[:20]],
                "resolved": dict(self.resolved),
                "outcomes_by_day": {p: r.outcomes for p, r in reports.items()},
                "days": {p: {k: v for k, v in r.counts.items() if k != "tokens"}
                         | {"tokens": len(r.counts["tokens"])} for p, r in reports.items()}}

    def _idempotency(self, commands: dict[str, dict]) -> None:
        by_key: dict[tuple[str, str], list[str]] = defaultdict(list)
        for command_id, command in commands.items():
            if command.get("idempotency_key"):
                by_key[(command["actor"], command["idempotency_key"])].append(command_id)
        for key, ids in by_key.items():
            if len(ids) > 1:
                self.add("duplicate", f"key {key} queued {len(ids)} times: {ids}")

    def _record(self, op: Op) -> dict | None:
        if (op.client, op.key) in self.forgotten:
            return self.forgotten[(op.client, op.key)]
        raw = self.client.get(idempotency_key(op.client, op.key))
        return json.loads(raw) if raw else None

    def _op(self, op: Op, outcomes, committed, cancelled, seen) -> None:
        if op.f == "reuse":  # the same key with another body: refused before anything queued
            dropped = self.forgotten.get((op.client, op.key))
            if dropped is not None and dropped.get("command_id") not in self._queued:
                # the first request was refused before anything was queued (outside the
                # booking window) and its key's global record expired: nothing pins the key
                # any more, so the reuse is a new request, decided on its own
                self.resolved["reuse of a key that pins nothing"] += 1
                return
            if op.type != "fail" or op.code != "idempotency_mismatch":
                self.add("idempotency", f"op {op.id}: key {op.key} reused with another body "
                         f"was {op.type} ({op.code}, HTTP {op.status}), not 422 "
                         "idempotency_mismatch")
            return
        if op.f == "zone":
            if op.type == "ok":
                self.add("zone_change", f"op {op.id}: the zone of {op.target}, a calendar with "
                         f"bookings, changed: {op.notes}")
            return
        if op.f == "retry":  # the same key and body again: must be told the first outcome
            dropped = self.forgotten.get((op.client, op.key))
            if dropped is not None and dropped.get("command_id") not in self._queued:
                # refused before queueing, and the key's record (which held that answer)
                # expired: nothing remembers the first request, the retry is a new one
                self.resolved["retry of a key that pins nothing"] += 1
                return
            if op.type in ("ok", "fail") and signature(op) != op.expect:
                self.add("duplicate", f"op {op.id}: retry of key {op.key} told "
                         f"{signature(op)}, the first attempt was told {op.expect}")
            return
        if op.f == "rules":
            return
        record = self._record(op)
        command_id = (record or {}).get("command_id") or op.command_id
        final = outcomes.get(command_id) if command_id else None
        if op.type == "info":
            self.resolved["info->" + (final["status"] if final else "never queued")] += 1
        if op.type is None:
            self.resolved["unfinished"] += 1
            return
        told = {"ok": "accepted", "fail": "rejected"}.get(op.type)
        never_queued = final is None and command_id not in self._queued
        if op.type == "fail" and never_queued and (
                (record is None and not op.command_id)
                or op.code in REFUSED_BEFORE_QUEUEING):
            # refused before anything was queued (a local time in a DST gap, a booking id of
            # another calendar: no key is pinned; a booking outside the window, a cancel on
            # a day never written: the key is pinned to a command that was never appended)
            self.resolved["fail->refused before queueing"] += 1
            return
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


def check_webhook(received: list[dict], outcomes_by_day: dict[str, dict[str, dict]],
                  ) -> list[tuple[str, str]]:
    """At-least-once and order per day: every accepted booking or cancel of the given days
    (``day -> command id -> outcome``) arrived (deduplicated by event id), and the first
    arrivals of one day's events are in stream order."""
    anomalies = []
    first: dict[str, list[str]] = defaultdict(list)  # day -> stream ids in first-arrival order
    seen: set[str] = set()
    for event in received:
        event_id = event["event_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        part, _, stream_id = event_id.rpartition("/")
        first[part].append(stream_id)
    for part, ids in sorted(first.items()):
        for a, b in pairwise(ids):
            if sid(b) < sid(a):
                anomalies.append(("webhook_order", f"{part}: event {b} arrived after {a}"))
                break
    for part, outcomes in sorted(outcomes_by_day.items()):
        for outcome in outcomes.values():
            if outcome.get("status") != "accepted":
                continue
            if f"{part}/{outcome['stream_id']}" not in seen:
                anomalies.append(("webhook_lost", (
                    f"event {part}/{outcome['stream_id']} ({outcome.get('event')} "
                    f"{outcome['booking']['id']}) never arrived")))
    return anomalies
