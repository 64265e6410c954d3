"""Retention: keep Redis small without breaking the audit of the days it keeps.

For a day older than ``SLOTLOCK_RETENTION_DAYS``, and for a day changed lately whose stream
holds more than ``SLOTLOCK_COMPACT_AFTER`` entries (whatever its date), the job first audits it; only a clean
day is retained: its replayed state at the committed cursor becomes the day's snapshot
(``sl:{P}:snapshot``) and the applied commands up to that cursor are trimmed from the
stream (``retain.lua``). The audit then starts from the snapshot. A day with findings
is left untouched, so the evidence stays.

Outcomes and idempotency records are pruned separately (``prune.lua``) and only once
they are older than the idempotency TTL: a retry inside that window must still find
its first outcome, or it would be queued and applied a second time.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis

from ..catalog import Catalog
from ..days.keys import CHANGED, RETAINED, DayKeys
from ..days.scripts import Scripts
from .audit import START, audit_and_record, known_days

PRUNE_MARGIN_MS = 60_000  # clocks of the web, the jobs and Redis may differ a little

log = logging.getLogger("slotlock.retention")


def next_id(stream_id: str) -> str:
    ms, _, seq = stream_id.partition("-")
    return f"{ms}-{int(seq or 0) + 1}"


@dataclass
class Retained:
    day: str
    status: str  # retained, unchanged, findings, behind, ahead
    trimmed: int = 0
    outcomes: int = 0
    idempotency: int = 0


def cutoff(today: date, retention_days: int) -> date:
    """Days strictly before this date are retained."""
    return today - timedelta(days=retention_days)


def old_days(client: redis.Redis, before: date) -> list[str]:
    """Days before ``before`` that may still need retention: every day not yet marked done
    in ``sl:days:retained``, and done ones committed to since (an admin's late booking).
    Three round trips whatever the number of days; no per-day key is read for a day done."""
    parts = known_days(client, before=before)
    if not parts:
        return []
    retained = client.zmscore(RETAINED, parts)
    changed = client.zmscore(CHANGED, parts)
    return [p for p, done_at, changed_at in zip(parts, retained, changed)
            if done_at is None or (changed_at is not None and changed_at > done_at)]


def retain_day(client: redis.Redis, part: str, *, idempotency_ttl_s: int,
               catalog: Catalog | None = None, now_ms: int | None = None) -> Retained:
    keys = DayKeys(part)
    scripts = Scripts(client)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    snap_cursor = client.hget(keys.snapshot, "cursor")
    state_cursor = client.hget(keys.state, "cursor") or START
    if snap_cursor == state_cursor or state_cursor == START:
        out = Retained(part, "unchanged", 0, *prune(scripts, keys, now_ms, idempotency_ttl_s))
        mark_done(client, keys)
        return out
    report = audit_and_record(client, part, catalog)
    if not report.ok or report.bookings is None:
        log.warning("day %s not retained: the audit has %d finding(s)", part,
                    len(report.findings))
        return Retained(part, "findings")
    result = scripts.retain(
        keys=[keys.cmds, keys.state, keys.snapshot],
        args=[report.cursor, next_id(report.cursor),
              json.dumps(report.bookings, separators=(",", ":")), report.version,
              report.applied, "" if report.revision is None else report.revision, now_ms],
    )
    if int(result[0]) != 1:
        return Retained(part, str(result[1]), 0, *prune(scripts, keys, now_ms, idempotency_ttl_s))
    out = Retained(part, "retained", int(result[1]),
                   *prune(scripts, keys, now_ms, idempotency_ttl_s))
    mark_done(client, keys)
    log.info("retained %s at %s: %d commands trimmed, %d outcomes and %d idempotency "
             "records pruned", part, report.cursor, out.trimmed, out.outcomes, out.idempotency)
    return out


def mark_done(client: redis.Redis, keys: DayKeys) -> None:
    """A retained day with nothing left to prune is skipped by later runs (``old_days``)
    until it is committed to again."""
    if client.hlen(keys.done) == 0:
        client.zadd(RETAINED, {keys.part: int(time.time() * 1000)})


def prune(scripts: Scripts, keys: DayKeys, now_ms: int, idempotency_ttl_s: int
          ) -> tuple[int, int]:
    """Drop outcomes and idempotency records folded into the snapshot and older than the TTL."""
    # the age is measured by Redis's clock inside the script (stream ids and the global
    # record's TTL use it); ``now_ms`` (tests) moves "now" forward by that much
    skew_ms = max(0, now_ms - int(time.time() * 1000))
    age_ms = idempotency_ttl_s * 1000 + PRUNE_MARGIN_MS - skew_ms
    outcomes, idempotency = scripts.prune(keys=[keys.snapshot, keys.done, keys.idem],
                                          args=[age_ms])
    return int(outcomes), int(idempotency)


def busy_days(client: redis.Redis, compact_after: int, since_ms: int) -> list[str]:
    """Days committed to since ``since_ms`` whose stream holds more than ``compact_after``
    entries (the index of recently changed days, never a SCAN)."""
    parts = client.zrangebyscore(CHANGED, since_ms, "+inf")
    if not parts:
        return []
    pipe = client.pipeline(transaction=False)
    for part in parts:
        pipe.xlen(DayKeys(part).cmds)
    return [p for p, n in zip(parts, pipe.execute()) if int(n) > compact_after]


def run_retention(client: redis.Redis, retention_days: int, idempotency_ttl_s: int,
                  today: date | None = None, now_ms: int | None = None,
                  compact_after: int | None = None, busy_since_ms: int = 0) -> list[Retained]:
    today = today or datetime.now(UTC).date()
    catalog = Catalog(client)
    parts = old_days(client, cutoff(today, retention_days))
    if compact_after is not None:
        old = set(parts)
        parts += [p for p in busy_days(client, compact_after, busy_since_ms) if p not in old]
    return [retain_day(client, part, idempotency_ttl_s=idempotency_ttl_s, catalog=catalog,
                       now_ms=now_ms)
            for part in parts]
