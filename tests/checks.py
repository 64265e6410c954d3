"""Invariant checks on one day's committed data, shared by the e2e and fault tests."""

from __future__ import annotations

import itertools
import json

import redis

from slotlock.days.keys import DayKeys
from slotlock.model.timeutil import parse_instant


def check_day(client: redis.Redis, part: str) -> dict:
    """Assert G1/G3/G6 on a day and return counts.

    Every stream entry up to the cursor has exactly one outcome, recorded for that very
    entry (an outcome decided twice would carry another stream id or move ``applied``);
    the committed bookings equal the fold of the accepted outcomes in stream order; no two
    bookings overlap.
    """
    keys = DayKeys(part)
    entries = client.xrange(keys.cmds)
    done = client.hgetall(keys.done)
    state = client.hgetall(keys.state)
    cursor = state.get("cursor", "0-0")
    applied_entries = [e for e in entries if _le(e[0], cursor)]
    assert int(state.get("applied", 0)) == len(applied_entries), "applied count != stream prefix"
    assert int(state.get("pending", 0)) == len(entries) - len(applied_entries)
    live: dict[str, dict] = {}
    accepted = rejected = 0
    for stream_id, fields in applied_entries:
        command = json.loads(fields["c"])
        raw = done.get(command["command_id"])
        assert raw, f"no outcome for {command['command_id']} (entry {stream_id})"
        outcome = json.loads(raw)
        assert outcome["stream_id"] == stream_id, "outcome recorded for another entry"
        if outcome["status"] == "accepted":
            accepted += 1
            booking = outcome["booking"]
            if outcome["event"] == "booked":
                assert booking["id"] not in live, f"{booking['id']} booked twice"
                live[booking["id"]] = booking
            else:
                assert live.pop(booking["id"], None) is not None, "cancelled a missing booking"
        else:
            rejected += 1
    committed = {b["id"]: b for b in json.loads(state.get("bookings") or "[]")}
    assert committed == live, "committed state differs from the fold of accepted outcomes"
    spans = sorted((parse_instant(b["start"]), parse_instant(b["end"])) for b in committed.values())
    for (s1, e1), (s2, e2) in itertools.pairwise(spans):
        assert e1 <= s2, f"overlap: {s1}-{e1} and {s2}-{e2}"
    tokens = [int(t) for t in client.lrange(keys.tokens, 0, -1)]
    assert tokens == sorted(set(tokens)), f"token history not increasing: {tokens}"
    return {"entries": len(entries), "applied": len(applied_entries), "accepted": accepted,
            "rejected": rejected, "bookings": len(committed), "tokens": tokens}


def _le(a: str, b: str) -> bool:
    ams, aseq = (int(x) for x in a.split("-"))
    bms, bseq = (int(x) for x in b.split("-"))
    return (ams, aseq) <= (bms, bseq)
