"""The audit: replay a day's history through the pure model and check every invariant.

A day's committed state is the fold of its command stream: a command's ``now`` is its
stream id's time and each outcome records the calendar revision it was decided under,
so deciding the stream again from an empty day (or from a verified retention snapshot)
with ``applier.apply_entries`` must give the committed bookings, version and outcomes
exactly. Anything else is a finding, kept in ``sl:findings`` until a clean audit.

Checks: no two committed bookings overlap; the committed state equals the replay (so
every booking was allowed by the rules in force when it was applied); each recorded
outcome equals the replayed one (a wrongful rejection, a wrong booking field, an outcome
the model would not give); the cursor is the last applied stream entry; every command up
to the cursor has its outcome; the counters agree; the tokens that committed strictly
increase and the last one is the state's; no entry was rejected as ``internal`` (the
worker could not decide it: a finding ``internal_error``, replayed the same way).

Guarantees hold for instants, so :func:`calendar_overlaps` checks every committed
booking of a calendar, across all its days, in UTC: a booking filed under D and one
under D+1 that cover the same instant are an ``overlap``. The audit CLI and the fault
harness's checker both run it.

The report also carries what the fault checker folds over (outcomes and commands by
command id, the committed bookings, counts), so there is one day checker, this one.

The day is read in one MULTI/EXEC (all its keys share a hash tag), so a concurrent
commit is seen entirely or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import redis

from ..catalog import Catalog
from ..days.keys import (
    DAYS,
    FINDINGS,
    DayKeys,
    partition,
    split_partition,
)
from ..model import Calendar
from ..model.booking import Booking
from ..model.timeutil import UTC
from .applier import apply_entries, load_day

START = "0-0"


def sid(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class DayReport:
    day: str
    cursor: str = START
    replayed: int = 0
    base: str = START  # the snapshot cursor the replay started from ("0-0": empty day)
    findings: list[Finding] = field(default_factory=list)
    # the replayed day, for retention's snapshot (None when the replay could not run)
    bookings: list[dict[str, Any]] | None = None
    version: int = 0
    applied: int = 0
    revision: int | None = None
    command_ids: list[str] = field(default_factory=list)  # commands applied after ``base``
    # what the day holds, for the fault checker (``slotlock.chaos.checker``)
    committed: dict[str, dict[str, Any]] = field(default_factory=dict)  # booking id -> booking
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)  # command id -> recorded
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)  # command id -> in stream
    tokens: list[int] = field(default_factory=list)  # the tokens that committed, in order
    entries: int = 0  # stream entries still held (retention trims those before ``base``)
    waiting: int = 0  # entries after the cursor

    @property
    def counts(self) -> dict[str, Any]:
        accepted = sum(1 for o in self.outcomes.values() if o.get("status") == "accepted")
        return {"entries": self.entries, "applied": self.entries - self.waiting,
                "waiting": self.waiting, "accepted": accepted,
                "rejected": len(self.outcomes) - accepted, "bookings": len(self.committed),
                "tokens": list(self.tokens)}

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, code: str, message: str, **details: Any) -> None:
        self.findings.append(Finding(code, message, details))

    def to_dict(self) -> dict[str, Any]:
        calendar_id, day = split_partition(self.day)
        return {
            "day": self.day,
            "calendar": calendar_id,
            "date": day.isoformat(),
            "cursor": self.cursor,
            "base": self.base,
            "replayed": self.replayed,
            "audited_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "findings": [asdict(f) for f in self.findings],
        }


@dataclass
class _Read:
    state: dict[str, str]
    entries: list[tuple[str, str]]
    done: dict[str, str]
    tokens: list[str]
    fence: str | None
    snapshot: dict[str, str]


def _read(client: redis.Redis, keys: DayKeys) -> _Read:
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.state)
        pipe.xrange(keys.cmds, "-", "+")
        pipe.hgetall(keys.done)
        pipe.lrange(keys.tokens, 0, -1)
        pipe.get(keys.fence)
        pipe.hgetall(keys.snapshot)
        state, entries, done, tokens, fence, snapshot = pipe.execute()
    return _Read(state, [(i, f.get("c", "")) for i, f in entries], done, tokens, fence, snapshot)


def audit_day(client: redis.Redis, part: str, catalog: Catalog | None = None) -> DayReport:
    """Audit one day; never writes. See :func:`audit_and_record` to keep the findings."""
    catalog = catalog or Catalog(client)
    calendar_id, day = split_partition(part)
    keys = DayKeys(part)
    data = _read(client, keys)
    report = DayReport(part)
    report.entries = len(data.entries)
    for stream_id, raw in data.entries:
        try:
            command = json.loads(raw)
            report.commands[command["command_id"]] = command | {"stream_id": stream_id}
        except (ValueError, KeyError, TypeError):
            pass  # the replay decides it as unreadable, as the worker did
    try:
        raw_bookings = json.loads(data.state.get("bookings") or "[]")
        committed = [Booking.from_dict(b) for b in raw_bookings]
        report.committed = {b["id"]: b for b in raw_bookings}
    except (ValueError, KeyError, TypeError) as exc:
        report.add("unreadable_state", f"committed bookings cannot be read: {exc}")
        return report
    cursor = data.state.get("cursor") or START
    report.cursor = cursor
    current = catalog.find(calendar_id)
    tz = (current.tz if current else UTC)
    _check_overlaps(report, committed, tz)
    _check_tokens(report, data)
    if current is None:
        report.add("unknown_calendar", f"no calendar {calendar_id!r} for this day")
        return report
    _replay(report, client, catalog, current, day, committed, data)
    return report


def overlapping(bookings: list[Booking]) -> list[tuple[Booking, Booking]]:
    """Every pair of bookings that share an instant (sorted by start, then a short scan)."""
    ordered = sorted(bookings, key=lambda b: (b.start, b.id))
    pairs = []
    for i, first in enumerate(ordered):
        for second in ordered[i + 1:]:
            if second.start >= first.end:
                break
            pairs.append((first, second))
    return pairs


def _check_overlaps(report: DayReport, bookings: list[Booking], tz) -> None:
    for first, second in overlapping(bookings):
        report.add("overlap", f"bookings {first.id} and {second.id} overlap",
                   bookings=[first.to_dict(tz), second.to_dict(tz)])


def calendar_overlaps(bookings_by_day: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    """Overlaps across days: ``bookings_by_day`` maps each day (``cal:date``) of one calendar
    to its committed bookings; any two that share an instant in UTC, filed under two
    different days, are a finding (pairs within one day are the day audit's)."""
    filed: dict[str, str] = {}
    bookings = []
    for part, items in bookings_by_day.items():
        for item in items:
            booking = Booking.from_dict(item)
            filed[booking.id] = part
            bookings.append(booking)
    findings = []
    for first, second in overlapping(bookings):
        if filed[first.id] != filed[second.id]:
            findings.append(Finding(
                "overlap", f"bookings {first.id} ({filed[first.id]}) and {second.id} "
                f"({filed[second.id]}) cover the same instant",
                {"bookings": [first.to_dict(UTC), second.to_dict(UTC)],
                 "days": [filed[first.id], filed[second.id]]}))
    return findings


def read_committed(client: redis.Redis, parts: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Each day's committed bookings (one pipeline; a day without state has none)."""
    pipe = client.pipeline(transaction=False)
    for part in parts:
        pipe.hget(DayKeys(part).state, "bookings")
    return {part: json.loads(raw or "[]") for part, raw in zip(parts, pipe.execute())}


def audit_calendars(client: redis.Redis, parts: list[str]) -> dict[str, list[Finding]]:
    """The cross-day overlap check of every calendar that has a day among ``parts``, over all
    the known days of that calendar. Calendar id -> findings (only calendars with some)."""
    out: dict[str, list[Finding]] = {}
    for calendar_id in sorted({split_partition(p)[0] for p in parts}):
        days = sorted(set(select_days(client, calendar_id))
                      | {p for p in parts if split_partition(p)[0] == calendar_id})
        findings = calendar_overlaps(read_committed(client, days))
        if findings:
            out[calendar_id] = findings
    return out


def _check_tokens(report: DayReport, data: _Read) -> None:
    try:
        tokens = [int(t) for t in data.tokens]
    except ValueError:
        report.add("token_history", "unreadable token history", tokens=data.tokens)
        return
    report.tokens = tokens
    for i in range(1, len(tokens)):
        if tokens[i] <= tokens[i - 1]:
            report.add("token_history", "lease tokens that committed do not strictly increase",
                       tokens=tokens, at=i)
            break
    state_token = data.state.get("token")
    if tokens and state_token and int(state_token) != tokens[-1]:
        report.add("token_history", "the state's token is not the last token that committed",
                   state_token=int(state_token), last=tokens[-1])
    if tokens and data.fence is not None and int(data.fence) < tokens[-1]:
        report.add("token_history", "a token committed that the fence never granted",
                   fence=int(data.fence), last=tokens[-1])


def _calendar_at(catalog: Catalog, report: DayReport, current: Calendar, revision,
                 cache: dict) -> Calendar:
    if revision is None:
        return current
    if revision not in cache:
        found = catalog.revision(current.id, int(revision))
        if found is None:
            report.add("unknown_revision", f"rules revision {revision} is not recorded",
                       rules_revision=revision)
            found = current
        cache[revision] = found
    return cache[revision]


def _replay(report: DayReport, client, catalog: Catalog, current: Calendar, day: date,
            committed: list[Booking], data: _Read) -> None:
    snap = data.snapshot
    base = snap.get("cursor") or START
    base_bookings = json.loads(snap.get("bookings") or "[]")
    base_version = int(snap.get("version") or 0)
    base_applied = int(snap.get("applied") or 0)
    base_revision = int(snap["revision"]) if snap.get("revision") else None
    report.base = base
    cursor = report.cursor
    if sid(cursor) < sid(base):
        report.add("cursor", f"cursor {cursor} is behind the retention snapshot {base}")
        return
    applied = [(i, c) for i, c in data.entries if sid(base) < sid(i) <= sid(cursor)]
    waiting = [(i, c) for i, c in data.entries if sid(i) > sid(cursor)]
    if cursor != base and (not applied or applied[-1][0] != cursor):
        report.add("cursor", f"cursor {cursor} is not an entry of the command stream",
                   last_entry=applied[-1][0] if applied else None)
    recorded: dict[str, dict] = {}  # stream id -> recorded outcome
    for command_id, raw in data.done.items():
        if not raw:
            continue
        try:
            outcome = json.loads(raw)
            recorded[outcome["stream_id"]] = outcome
            report.outcomes[command_id] = outcome
        except (ValueError, KeyError, TypeError):
            report.add("outcome", f"unreadable outcome of {command_id}", command_id=command_id)
    report.waiting = len(waiting)
    for stream_id, _raw in waiting:
        if stream_id in recorded:
            report.add("outcome", f"command {stream_id} has an outcome but lies after the cursor",
                       stream_id=stream_id)
    pending = int(data.state.get("pending") or 0)
    if pending != len(waiting):
        report.add("counters", f"pending is {pending}, the stream holds {len(waiting)} "
                   "commands after the cursor", pending=pending, waiting=len(waiting))

    cache: dict = {}
    calendar = _calendar_at(catalog, report, current, base_revision, cache)
    state = load_day(calendar, day, base_bookings, base_version)
    revision = base_revision
    runs: list[tuple[object, list]] = []
    for stream_id, raw in applied:
        rec = recorded.get(stream_id)
        if rec is None:
            report.add("outcome", f"no outcome recorded for command {stream_id} up to the cursor",
                       stream_id=stream_id)
        else:
            revision = rec.get("rules_revision", revision)
            if rec.get("status") == "rejected" and (rec.get("error") or {}).get(
                    "code") == "internal":
                report.add("internal_error", f"command {stream_id} could not be decided by the "
                           "worker (rejected as internal)", stream_id=stream_id,
                           command_id=rec.get("command_id"), error=rec.get("error"))
        if runs and runs[-1][0] == revision:
            runs[-1][1].append((stream_id, raw))
        else:
            runs.append((revision, [(stream_id, raw)]))
    at = base
    part = report.day
    for rev, run in runs:
        state = state.with_calendar(_calendar_at(catalog, report, current, rev, cache))
        batch = apply_entries(state, at, run, part, with_events=False)
        for (stream_id, _), (command_id, outcome_json) in zip(run, batch.outcomes):
            report.command_ids.append(command_id)
            replayed = json.loads(outcome_json)
            rec = recorded.get(stream_id)
            if rec is not None and rec != replayed:
                report.add("outcome", f"the outcome recorded for {stream_id} differs from the "
                           "replay", stream_id=stream_id, recorded=rec, replayed=replayed)
        state, at = batch.day, batch.cursor
        revision = rev
    report.replayed = len(applied)
    report.revision = revision
    report.version = state.version
    report.applied = base_applied + len(applied)
    report.bookings = state.bookings_dicts()
    tz = state.calendar.tz

    expected = {b.id: b for b in state.bookings}
    actual = {b.id: b for b in committed}
    missing = [expected[i].to_dict(tz) for i in expected if i not in actual]
    unexpected = [actual[i].to_dict(tz) for i in actual if i not in expected]
    changed = [{"replayed": expected[i].to_dict(tz), "committed": actual[i].to_dict(tz)}
               for i in expected if i in actual and expected[i] != actual[i]]
    if len(committed) != len(actual):
        report.add("state", "the committed state holds a booking id twice")
    for booking in unexpected:
        report.add("state", f"booking {booking['id']} is in the committed state but no command "
                   "applied it", booking=booking)
    for booking in missing:
        report.add("state", f"booking {booking['id']} was applied by a command but is missing "
                   "from the committed state", booking=booking)
    for pair in changed:
        report.add("state", f"booking {pair['committed']['id']} differs from the replay", **pair)
    version = int(data.state.get("version") or 0)
    if data.state and version != state.version:
        report.add("counters", f"version is {version}, the replay gives {state.version}",
                   version=version, replayed=state.version)
    count = int(data.state.get("applied") or 0)
    if data.state and count != report.applied:
        report.add("counters", f"applied is {count}, the replay gives {report.applied}",
                   applied=count, replayed=report.applied)


# -- findings in Redis ------------------------------------------------------------------------

def record(client: redis.Redis, report: DayReport) -> None:
    if report.ok:
        client.hdel(FINDINGS, report.day)
    else:
        client.hset(FINDINGS, report.day, json.dumps(report.to_dict()))


def audit_and_record(client: redis.Redis, part: str, catalog: Catalog | None = None) -> DayReport:
    report = audit_day(client, part, catalog)
    record(client, report)
    return report


def list_findings(client: redis.Redis) -> list[dict[str, Any]]:
    """Every day whose last audit found something: for ``slotlock status`` and the admin API.

    Each item: ``{"day", "calendar", "date", "cursor", "base", "replayed", "audited_at",
    "findings": [{"code", "message", "details"}]}``, sorted by day. Works with a client
    with or without ``decode_responses``.
    """
    items = []
    for raw in client.hgetall(FINDINGS).values():
        items.append(json.loads(raw))
    return sorted(items, key=lambda item: item["day"])


# -- which days -------------------------------------------------------------------------------

def known_days(client: redis.Redis, before: date | None = None) -> list[str]:
    """Every day ever written (``sl:days``, by local date), optionally only those before a date.

    Submitters add a day to the index *before* appending its first command, and the worker
    after each commit, so no crash leaves a day with data outside it; nothing SCANs the
    keyspace (``slotlock migrate`` backfills the index once for data written before it).
    """
    if before is None:
        days = client.zrange(DAYS, 0, -1)
    else:
        days = client.zrangebyscore(DAYS, "-inf", f"({before.toordinal()}")
    found = []
    for part in days:
        try:
            split_partition(part)
        except ValueError:
            continue
        found.append(part)
    return sorted(found)


def select_days(client: redis.Redis, calendar_id: str | None = None,
                day: date | None = None) -> list[str]:
    if calendar_id and day:
        return [partition(calendar_id, day)]
    chosen = []
    for part in known_days(client):
        cal, d = split_partition(part)
        if (calendar_id is None or cal == calendar_id) and (day is None or d == day):
            chosen.append(part)
    return chosen
