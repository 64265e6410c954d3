"""Redis memory per booking and per command, measured (README "Redis sizing").

    python bench/redis_sizing.py [--days 20] [--per-day 90]

Starts its own redis-server on a free loopback port, books ``days x per-day`` bookings
(with Idempotency-Keys, as API clients send them) and as many refused requests on the same
slots, with a real lease worker in this process, and prints the memory they take: at once
(stream entry + outcome + idempotency record + state; reply lists expire after
SLOTLOCK_REPLY_TTL_MS) and after retention (snapshot + state only). Not a test.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.config import Settings
from slotlock.days.keys import DayKeys
from slotlock.embedded import RedisServer
from slotlock.workers.lease_worker import LeaseWorker
from slotlock.workers.retention import run_retention


class WorkerThread:
    def __init__(self, settings):
        self.worker = LeaseWorker(settings)
        self.thread = threading.Thread(target=self.worker.work,
                                       kwargs={"install_signals": False}, daemon=True)

    def __enter__(self):
        self.thread.start()

    def __exit__(self, *exc):
        self.worker.request_stop()
        self.thread.join(15)


def used(client) -> int:
    return int(client.info("memory")["used_memory"])


def by_kind(client) -> dict[str, int]:
    """MEMORY USAGE of every key (a benchmark may SCAN), by kind: the day keys' last part
    (cmds, state, done, idem, snapshot, reply, ...), or the key itself for global ones."""
    totals: dict[str, int] = {}
    for key in client.scan_iter(count=1000):
        if client.pttl(key) > 0 and ":reply:" in key:
            kind = "reply (expiring)"
        elif key.startswith("sl:{"):
            kind = key.rsplit("}:", 1)[1].split(":")[0]
        else:
            kind = ":".join(key.split(":")[:2])  # sl:idem (24 h TTL), sl:ready, sl:days ...
        totals[kind] = totals.get(kind, 0) + (client.memory_usage(key, samples=0) or 0)
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def submit(client: Client, first: date, days: int, per_day: int, actor: str, title: str,
           key: str) -> None:
    for d in range(days):
        day = first + timedelta(days=d)
        for slot in range(per_day):
            start = datetime(day.year, day.month, day.day) + timedelta(minutes=15 * slot)
            client.book(actor, "main", start, start + timedelta(minutes=15), title,
                        idempotency_key=f"{key}-{d}-{slot}", wait_ms=0)


def drain(client: Client, parts: list[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(int(client.redis.hget(DayKeys(p).state, "pending") or 0) == 0 for p in parts):
            return
        time.sleep(0.05)
    raise SystemExit("the worker did not drain the days in 120 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=90)
    args = parser.parse_args()
    n = args.days * args.per_day
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), appendfsync="no").start()
        try:
            settings = Settings(redis_url=server.url, secret_key="x" * 32, env="development",
                                reply_ttl_ms=1000)
            client = Client(settings)
            catalog = Catalog(client.redis)
            calendar, _ = catalog.ensure_default("UTC")
            catalog.put(calendar.with_changes(rules=replace(calendar.rules, horizon_days=0)))
            first = date.today() + timedelta(days=400)
            parts = [DayKeys.of("main", first + timedelta(days=d)).part for d in range(args.days)]
            with WorkerThread(settings):
                base = used(client.redis)
                submit(client, first, args.days, args.per_day, "alice", "Weekly planning", "a")
                drain(client, parts)
                time.sleep(1.5)  # reply lists expire (SLOTLOCK_REPLY_TTL_MS=1000 here)
                after_accepted = used(client.redis)
                kinds_accepted = by_kind(client.redis)
                submit(client, first, args.days, args.per_day, "bob", "Clash", "b")
                drain(client, parts)
                time.sleep(1.5)
                after_rejected = used(client.redis)
            later_ms = int(time.time() * 1000) + (settings.idempotency_ttl_s + 120) * 1000
            run_retention(client.redis, 1, settings.idempotency_ttl_s,
                          today=first + timedelta(days=args.days + 2), now_ms=later_ms)
            at_rest = used(client.redis)
            kinds_rest = by_kind(client.redis)
            keys_rest = sum(kinds_rest.values())
            kinds_all = by_kind(client.redis)
        finally:
            server.stop()
    print(f"{n} bookings on {args.days} days ({args.per_day} a day), then {n} refused requests")
    print(f"  accepted booking, before retention: {(after_accepted - base) / n:8.0f} bytes")
    print(f"  refused request (overlap, conflicts capped), before retention: "
          f"{(after_rejected - after_accepted) / n:8.0f} bytes")
    print(f"  booking at rest (after retention, outcomes older than the idempotency TTL "
          f"pruned): {(at_rest - base) / n:8.0f} bytes")
    print("  keys after the bookings, MEMORY USAGE per booking: " + ", ".join(
        f"{k} {v / n:.0f}" for k, v in kinds_accepted.items() if v / n >= 1))
    print("  keys at rest, MEMORY USAGE per booking: " + ", ".join(
        f"{k} {v / n:.0f}" for k, v in kinds_all.items() if v / n >= 1)
          + f"; total {keys_rest / n:.0f}")
    print("  (used_memory deltas include allocator overhead and fragmentation; the key sums do "
          "not)")


if __name__ == "__main__":
    main()
