"""Retention: keep Redis small without breaking the audit of the days it keeps.

For a day older than ``SLOTLOCK_RETENTION_DAYS`` the job first audits it; only a clean
day is retained: its replayed state at the committed cursor becomes the day's snapshot
(``sl:{P}:snapshot``), the applied commands up to that cursor are trimmed from the
stream, and their outcomes and idempotency records are pruned — all in one script
(``retain.lua``). The audit then starts from the snapshot. A day with findings is left
untouched, so the evidence stays. Reply keys left without a TTL get one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path

import redis

from ..catalog import Catalog
from ..days.keys import DayKeys, split_partition
from .audit import START, audit_and_record, known_days

log = logging.getLogger("slotlock.retention")


@cache
def _source() -> str:
    return (Path(__file__).parent / "retain.lua").read_text()


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
    replies: int = 0


def cutoff(today: date, retention_days: int) -> date:
    """Days strictly before this date are retained."""
    return today - timedelta(days=retention_days)


def old_days(client: redis.Redis, before: date) -> list[str]:
    return [p for p in known_days(client) if split_partition(p)[1] < before]


def retain_day(client: redis.Redis, part: str, *, reply_ttl_ms: int,
               catalog: Catalog | None = None, now_ms: int | None = None) -> Retained:
    keys = DayKeys(part)
    replies = expire_replies(client, keys, reply_ttl_ms)
    snap_cursor = client.hget(keys.snapshot, "cursor")
    state_cursor = client.hget(keys.state, "cursor") or START
    if snap_cursor == state_cursor or state_cursor == START:
        return Retained(part, "unchanged", replies=replies)
    report = audit_and_record(client, part, catalog)
    if not report.ok or report.bookings is None:
        log.warning("day %s not retained: the audit has %d finding(s)", part,
                    len(report.findings))
        return Retained(part, "findings", replies=replies)
    script = client.register_script(_source())
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    result = script(
        keys=[keys.cmds, keys.state, keys.done, keys.idem, keys.snapshot],
        args=[report.cursor, next_id(report.cursor),
              json.dumps(report.bookings, separators=(",", ":")), report.version,
              report.applied, "" if report.revision is None else report.revision, now_ms,
              *report.command_ids],
    )
    if int(result[0]) != 1:
        return Retained(part, str(result[1]), replies=replies)
    out = Retained(part, "retained", int(result[1]), int(result[2]), int(result[3]), replies)
    log.info("retained %s at %s: %d commands trimmed, %d outcomes and %d idempotency "
             "records pruned", part, report.cursor, out.trimmed, out.outcomes, out.idempotency)
    return out


def expire_replies(client: redis.Redis, keys: DayKeys, reply_ttl_ms: int) -> int:
    """Reply keys get a PEXPIRE at commit; give one to any that lost it."""
    fixed = 0
    for key in client.scan_iter(match=keys.reply_pattern, count=1000):
        if client.pttl(key) == -1:
            client.pexpire(key, reply_ttl_ms)
            fixed += 1
    return fixed


def run_retention(client: redis.Redis, retention_days: int, reply_ttl_ms: int,
                  today: date | None = None) -> list[Retained]:
    today = today or datetime.now(UTC).date()
    catalog = Catalog(client)
    return [retain_day(client, part, reply_ttl_ms=reply_ttl_ms, catalog=catalog)
            for part in old_days(client, cutoff(today, retention_days))]
