"""Core benchmark: single-day apply throughput and submit->outcome latency.

    python bench/core_bench.py [--commands 10000] [--latency-samples 2000]

Starts its own redis-server on a free loopback port (appendfsync everysec) and one
lease worker in this process, and prints the figures. Not a test: numbers vary by machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, datetime, timedelta

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.config import Settings
from slotlock.days.keys import DayKeys
from slotlock.embedded import RedisServer
from slotlock.ids import new_ids
from slotlock.model import Book, Cancel
from slotlock.model.timeutil import UTC
from slotlock.workers.lease_worker import LeaseWorker


def prefill(client: Client, day: date, n: int, mode: str, seed: int = 7) -> int:
    """Append n commands to one day's stream without any worker running."""
    rng = random.Random(seed)
    keys = DayKeys.of("main", day)
    pipe_every = 500
    commands = []
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    i = 0
    while len(commands) < n:
        slot = (i % 96) if mode == "book-cancel" else rng.randrange(96)
        start = midnight + timedelta(minutes=15 * slot)
        end = start + timedelta(minutes=15 if mode == "book-cancel" else 15 * rng.randint(1, 4))
        end = min(end, midnight + timedelta(days=1))
        cid, bid = new_ids("main", day)
        commands.append(Book(cid, f"user{i % 7}", "main", day, bid, start, end, "bench"))
        if mode == "book-cancel":
            cid2, _ = new_ids("main", day)
            commands.append(Cancel(cid2, f"user{i % 7}", "main", day, bid))
        i += 1
    commands = commands[:n]
    script = client.scripts.submit
    for chunk in range(0, n, pipe_every):
        pipe = client.redis.pipeline(transaction=False)
        for cmd in commands[chunk:chunk + pipe_every]:
            script(keys=[keys.cmds, keys.idem, keys.state, keys.done],
                   args=[cmd.command_id, json.dumps(cmd.to_dict()), "", 0], client=pipe)
        pipe.execute()
    client.index.mark(keys.part)
    return n


def run_worker(settings: Settings):
    worker = LeaseWorker(settings)
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    return worker, thread


def throughput(settings: Settings, client: Client, n: int, mode: str, day: date) -> dict:
    prefill(client, day, n, mode)
    keys = DayKeys.of("main", day)
    started = time.perf_counter()
    worker, thread = run_worker(settings)
    while client.store.read_state(keys).applied < n:
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    worker.request_stop()
    thread.join(5)
    state = client.store.read_state(keys)
    return {"mode": mode, "commands": n, "seconds": elapsed, "per_second": n / elapsed,
            "commits": worker.stats["commits"], "accepted": worker.stats["accepted"],
            "bookings_left": len(state.bookings)}


def latency(settings: Settings, client: Client, samples: int) -> dict:
    """Sequential bookings through the client API, one `slotlock worker` process deciding."""
    env = dict(os.environ, REDIS_URL=settings.redis_url, SLOTLOCK_WORKER_ID="bench-latency",
               SLOTLOCK_ENV="development",
               SLOTLOCK_IDLE_RELEASE_MS="60000", SLOTLOCK_LOG_LEVEL="WARNING")
    worker = subprocess.Popen([sys.executable, "-m", "slotlock", "worker"], env=env)
    time.sleep(1.0)
    timings = []
    base = date(2030, 1, 1)
    for i in range(samples + 50):
        day = base + timedelta(days=i // 96)
        start = datetime(day.year, day.month, day.day) + timedelta(minutes=15 * (i % 96))
        t0 = time.perf_counter()
        result = client.book("alice", "main", start, start + timedelta(minutes=15), "lat")
        elapsed = time.perf_counter() - t0
        assert result.outcome and result.outcome["status"] == "accepted", result
        if i >= 50:  # warm-up: first acquisitions, script loading
            timings.append(elapsed * 1000)
    worker.terminate()
    worker.wait(10)
    timings.sort()
    return {"samples": len(timings), "p50_ms": statistics.median(timings),
            "p99_ms": timings[int(len(timings) * 0.99) - 1], "max_ms": timings[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, RedisServer(tmp) as server:
        # development: no SECRET_KEY of 32 characters (nothing here signs anything)
        settings = Settings(redis_url=server.url, env="development", secret_key="bench",
                            worker_id="bench",
                            batch_size=args.batch_size, idle_release_ms=60_000,
                            backlog_limit=0)
        client = Client(settings)
        catalog = Catalog(client.redis)
        main_calendar, _ = catalog.ensure_default("UTC")
        catalog.put(main_calendar.with_changes(  # fixed dates years ahead: no booking horizon
            rules=dataclasses.replace(main_calendar.rules, horizon_days=0)))
        print(f"redis-server {server.binary} on port {server.port} (appendfsync everysec)")
        for mode, day in (("book-cancel", date(2029, 1, 1)), ("contended", date(2029, 1, 2))):
            r = throughput(settings, client, args.commands, mode, day)
            print(f"apply throughput [{mode}]: {r['commands']} commands in {r['seconds']:.3f} s "
                  f"= {r['per_second']:,.0f} commands/s ({r['commits']} commits, "
                  f"{r['accepted']} accepted, {r['bookings_left']} bookings left)")
        lat = latency(settings, client, args.latency_samples)
        print(f"submit->outcome latency (1 worker process, idle, sequential): p50 {lat['p50_ms']:.2f} ms, "
              f"p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.2f} ms over {lat['samples']} "
              f"bookings")


if __name__ == "__main__":
    main()
