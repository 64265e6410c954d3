"""Invariant checks on one day's committed data (G1, G3, G6), as a list of anomalies.

Shared by the fault checker and the e2e tests (``tests/checks.py`` asserts on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import redis

from ..days.keys import DayKeys
from ..model.timeutil import parse_instant


@dataclass
class DayReport:
    part: str
    counts: dict = field(default_factory=dict)
    anomalies: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail)
    bookings: dict[str, dict] = field(default_factory=dict)  # committed, by id
    outcomes: dict[str, dict] = field(default_factory=dict)  # command id -> outcome
    commands: dict[str, dict] = field(default_factory=dict)  # command id -> command (stream)

    def add(self, kind: str, detail: str) -> None:
        self.anomalies.append((kind, f"{self.part}: {detail}"))


def stream_le(a: str, b: str) -> bool:
    ams, aseq = (int(x) for x in a.split("-"))
    bms, bseq = (int(x) for x in b.split("-"))
    return (ams, aseq) <= (bms, bseq)


def overlaps(bookings) -> list[tuple[dict, dict]]:
    """Pairs of overlapping bookings (sorted sweep: each against the latest end so far)."""
    spans = sorted(((parse_instant(b["start"]), parse_instant(b["end"]), b) for b in bookings),
                   key=lambda s: (s[0], s[1]))
    found = []
    latest = None
    for start, end, booking in spans:
        if latest is not None and start < latest[1]:
            found.append((latest[2], booking))
        if latest is None or end > latest[1]:
            latest = (start, end, booking)
    return found


def check_day(client: redis.Redis, part: str) -> DayReport:
    """Every stream entry up to the cursor has exactly one outcome, recorded for that very
    entry (an outcome decided twice would carry another stream id or move ``applied``);
    the committed bookings equal the fold of the accepted outcomes in stream order; no two
    bookings overlap; the tokens that committed only ever grew; nothing queued is left
    without an outcome past the cursor's count."""
    report = DayReport(part)
    keys = DayKeys(part)
    entries = client.xrange(keys.cmds)
    done = client.hgetall(keys.done)
    state = client.hgetall(keys.state)
    cursor = state.get("cursor", "0-0")
    applied_entries = [e for e in entries if stream_le(e[0], cursor)]
    applied = int(state.get("applied", 0))
    pending = int(state.get("pending", 0))
    if applied != len(applied_entries):  # more: commands applied twice; fewer: skipped
        report.add("duplicate" if applied > len(applied_entries) else "order",
                   f"applied count {applied} != stream prefix {len(applied_entries)}")
    if pending != len(entries) - len(applied_entries):
        report.add("unsettled" if pending > len(entries) - len(applied_entries) else "duplicate",
                   f"pending {pending} != entries after the cursor "
                   f"{len(entries) - len(applied_entries)}")
    live: dict[str, dict] = {}
    accepted = rejected = 0
    for stream_id, fields in entries:
        command = json.loads(fields["c"])
        report.commands[command["command_id"]] = command | {"stream_id": stream_id}
    for stream_id, fields in applied_entries:
        command = json.loads(fields["c"])
        raw = done.get(command["command_id"])
        if not raw:
            report.add("unsettled", f"no outcome for {command['command_id']} (entry {stream_id})")
            continue
        outcome = json.loads(raw)
        report.outcomes[command["command_id"]] = outcome
        if outcome.get("stream_id") != stream_id:
            report.add("order", f"outcome of {command['command_id']} recorded for entry "
                                f"{outcome.get('stream_id')}, not {stream_id}")
        if outcome["status"] == "accepted":
            accepted += 1
            booking = outcome["booking"]
            if outcome["event"] == "booked":
                if booking["id"] in live:
                    report.add("duplicate", f"{booking['id']} booked twice")
                live[booking["id"]] = booking
            elif live.pop(booking["id"], None) is None:
                report.add("order", f"cancelled {booking['id']}, which the fold does not hold")
        else:
            rejected += 1
    committed = {b["id"]: b for b in json.loads(state.get("bookings") or "[]")}
    report.bookings = committed
    if committed != live:
        missing = sorted(set(live) - set(committed))
        extra = sorted(set(committed) - set(live))
        report.add("order", f"committed state differs from the fold of accepted outcomes in "
                            f"stream order (missing {missing[:5]}, extra {extra[:5]})")
    for first, second in overlaps(committed.values()):
        report.add("overlap", f"{first['id']} {first['start']}-{first['end']} and "
                              f"{second['id']} {second['start']}-{second['end']}")
    tokens = [int(t) for t in client.lrange(keys.tokens, 0, -1)]
    if tokens != sorted(set(tokens)):
        report.add("fence", f"token history not increasing: {tokens[-10:]}")
    report.counts = {"entries": len(entries), "applied": len(applied_entries),
                     "accepted": accepted, "rejected": rejected, "bookings": len(committed),
                     "tokens": tokens}
    return report
