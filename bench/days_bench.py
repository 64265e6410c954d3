"""Many days, a few active: does a worker's cost follow the days with work?

    python bench/days_bench.py                                  # 1,000 / 10,000 / 100,000 days, 60 s each
    python bench/days_bench.py --days 1000,100000 --seconds 300 # the issue's 5-minute check
    python bench/days_bench.py --quick                          # 1,000 / 10,000 days, 10 s: checks the script

For each size N: a private redis-server (AOF everysec, as deployed), 20 calendars, N days
stored with bookings (each a copy of a day booked through the real path: its state, its
commands, its outcomes, its entry in ``sl:days``), then one ``slotlock worker`` process and
an open-loop load of --rate bookings a second spread over --active of those days (a new
15-minute slot each time), from --threads client threads, for --seconds. Latency is
submit -> outcome measured from each request's scheduled moment (no coordinated omission).

Prints per size: worker CPU (seconds per second), Redis commands per second, leases lost
(the worker's own count, from its heartbeat, and its log), p50/p99/max submit -> outcome,
outcomes by status, Redis memory, and at the end each size's p99 against the smallest's.
Bounded: every run stops after --seconds; the worker and redis-server are stopped by pid.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.config import Settings
from slotlock.days.keys import DAYS, WORKERS, DayKeys
from slotlock.embedded import RedisServer
from slotlock.workers.lease_worker import LeaseWorker

CALENDARS = [f"r{i:02d}" for i in range(20)]
FIRST_DAY = date(2040, 1, 1)
TEMPLATE_SLOTS = 4  # the stored days hold 00:00-01:00 in four bookings
FILL_PIPELINE = 2_000


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settings_for(url: str) -> Settings:
    return Settings(redis_url=url, env="development", secret_key="bench", worker_id="bench",
                    backlog_limit=0)


def make_calendars(client: Client) -> None:
    catalog = Catalog(client.redis)
    default, _ = catalog.ensure_default("UTC")
    for calendar_id in CALENDARS:  # fixed dates years ahead: no booking horizon
        catalog.put(default.with_changes(
            id=calendar_id, name=calendar_id,
            rules=dataclasses.replace(default.rules, horizon_days=0)))


def template_day(settings: Settings, client: Client) -> dict:
    """Book one day through the real path (an in-process worker decides) and read its keys."""
    keys = DayKeys.of(CALENDARS[0], FIRST_DAY)
    ids = []
    for slot in range(TEMPLATE_SLOTS):
        start = datetime.combine(FIRST_DAY, datetime.min.time()) + timedelta(minutes=15 * slot)
        ids.append(client.book("stored", CALENDARS[0], start, start + timedelta(minutes=15),
                               "stored", wait_ms=0).command_id)
    worker = LeaseWorker(settings)
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    for command_id in ids:
        outcome = client.wait(command_id, 5_000)
        assert outcome and outcome["status"] == "accepted", outcome
    worker.request_stop()
    thread.join(10)
    r = client.redis
    return {"part": keys.part, "state": r.hgetall(keys.state), "cmds": r.xrange(keys.cmds),
            "done": r.hgetall(keys.done)}


def fill(client: Client, template: dict, n: int) -> list[str]:
    """``n`` days with bookings (the template's, moved to each day); their partitions."""
    src_cal, src_day = template["part"].rsplit(":", 1)
    src_compact = src_day.replace("-", "")
    blob = json.dumps({k: template[k] for k in ("state", "cmds", "done")})
    parts = []
    pipe = client.redis.pipeline(transaction=False)
    per_calendar = -(-n // len(CALENDARS))
    for i in range(n):
        calendar_id = CALENDARS[i % len(CALENDARS)]
        day = FIRST_DAY + timedelta(days=i // len(CALENDARS))
        keys = DayKeys.of(calendar_id, day)
        parts.append(keys.part)
        if keys.part != template["part"]:
            moved = json.loads(blob.replace(src_day, day.isoformat())
                               .replace(src_compact, day.strftime("%Y%m%d"))
                               .replace(f'"{src_cal}', f'"{calendar_id}')
                               .replace(f"{src_cal}.", f"{calendar_id}."))
            pipe.hset(keys.state, mapping=moved["state"])
            for entry_id, fields in moved["cmds"]:
                pipe.xadd(keys.cmds, fields, id=entry_id)
            pipe.hset(keys.done, mapping=moved["done"])
            pipe.zadd(DAYS, {keys.part: day.toordinal()})
        if len(pipe) >= FILL_PIPELINE:
            pipe.execute()
        if i and i % 20_000 == 0:
            print(f"    stored {i:,} of {n:,} days", flush=True)
    pipe.execute()
    assert per_calendar > 0
    return parts


def start_worker(url: str, log_path: Path, name: str = "bench-days") -> subprocess.Popen:
    env = dict(os.environ, REDIS_URL=url, SLOTLOCK_WORKER_ID=name,
               SLOTLOCK_ENV="development", SLOTLOCK_LOG_LEVEL="INFO")
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "slotlock", "worker"], env=env,
                                stdout=log, stderr=subprocess.STDOUT)


def load(client_settings: Settings, active: list[str], rate: float, seconds: float,
         threads: int) -> tuple[list[float], Counter]:
    """Open loop: request k is due at start + k / rate; latency counts from then."""
    slots = Counter()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)
    counter = iter(range(total))
    rng = random.Random(11)
    order = [rng.choice(active) for _ in range(total)]

    def run() -> None:
        client = Client(client_settings)
        while True:
            with lock:
                k = next(counter, None)
                if k is None:
                    return
                part = order[k]
                slot = TEMPLATE_SLOTS + slots[part] % (96 - TEMPLATE_SLOTS)
                slots[part] += 1
            due = start + k / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            calendar_id, day = part.rsplit(":", 1)
            begin = datetime.fromisoformat(day) + timedelta(minutes=15 * slot)
            try:
                result = client.book("bench", calendar_id, begin, begin + timedelta(minutes=15),
                                     "load")
                status = result.outcome["status"] if result.outcome else "pending"
            except Exception as exc:  # noqa: BLE001 - counted and shown, never hidden
                status = type(exc).__name__
            elapsed = time.monotonic() - due
            with lock:
                latencies.append(elapsed * 1000)
                statuses[status] += 1

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + 30)
    return latencies, statuses


def settle_aof(r, timeout: float = 600.0) -> float:
    """Rewrite the AOF now and wait for the rewrite to end; the seconds waited.

    Filling N days appends hundreds of MiB to the AOF, which makes Redis start background
    rewrites (a fork, then a child that writes the whole data set, on one of this machine's
    two CPUs) at each doubling of the file: left alone, one runs into the measured window
    at 100,000 days and not at 1,000, and the comparison measures Redis's rewrite instead
    of the worker. In service the rewrite's cost is Redis's, and it grows with the data
    whatever the worker does; ``total_forks`` during the window is reported."""
    import redis

    started = time.monotonic()
    try:
        r.bgrewriteaof()
    except redis.ResponseError:
        pass  # one is running already: wait for it
    deadline = started + timeout
    while time.monotonic() < deadline:
        info = r.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("the AOF rewrite did not end in time")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def one_size(n: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(tmp) as server:
        settings = settings_for(server.url)
        client = Client(settings)
        make_calendars(client)
        template = template_day(settings, client)
        started = time.monotonic()
        parts = fill(client, template, n)
        rng = random.Random(n)
        active = rng.sample(parts, min(args.active, len(parts)))
        info = client.redis.info("memory")
        print(f"  {n:,} days stored in {time.monotonic() - started:.1f} s, Redis "
              f"{info['used_memory'] / 2**20:.0f} MiB; {len(active):,} of them active", flush=True)
        settled_s = settle_aof(client.redis)
        if settled_s:
            print(f"  AOF rewrite after the fill: waited {settled_s:.1f} s for it", flush=True)
        log_path = Path(tmp) / "worker.log"
        worker = start_worker(server.url, log_path)
        try:
            time.sleep(args.settle)  # the worker's first passes (script loading, re-index start)
            cpu0, ops0 = cpu_seconds(worker.pid), client.redis.info("stats")["total_commands_processed"]
            forks0 = client.redis.info("stats")["total_forks"]
            t0 = time.monotonic()
            latencies, statuses = load(settings, active, args.rate, args.seconds, args.threads)
            wall = time.monotonic() - t0
            cpu1, ops1 = cpu_seconds(worker.pid), client.redis.info("stats")["total_commands_processed"]
            forks = client.redis.info("stats")["total_forks"] - forks0
            time.sleep(1.2)  # one more heartbeat
            status = json.loads(client.redis.hget(WORKERS, "bench-days") or "{}")
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        log_text = log_path.read_text()
        stats = status.get("stats", {})
        return {
            "days": n, "active": len(active), "wall_s": wall,
            "worker_cpu_per_s": (cpu1 - cpu0) / wall,
            "redis_ops_per_s": (ops1 - ops0) / wall,
            "leases_lost": stats.get("leases_lost", 0),
            "lost_in_log": log_text.count("lost lease of"),
            "requests": len(latencies), "p50_ms": pct(latencies, 0.50),
            "p99_ms": pct(latencies, 0.99), "max_ms": max(latencies, default=float("nan")),
            "statuses": dict(statuses),
            "redis_mib": client.redis.info("memory")["used_memory"] / 2**20,
            "acquired": stats.get("acquired", 0), "released": stats.get("released", 0),
            "redis_forks": forks,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", default="1000,10000,100000",
                        help="comma-separated numbers of stored days, one run each")
    parser.add_argument("--active", type=int, default=1000, help="days that get bookings")
    parser.add_argument("--rate", type=float, default=200.0, help="bookings per second (open loop)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 days, 10 s")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.days, args.seconds = "1000,10000", 10.0
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(x) for x in args.days.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  days {sizes}, {args.active} active, "
          f"{args.rate:g} bookings/s open loop from {args.threads} threads, {args.seconds:g} s "
          f"each, one `slotlock worker` process", flush=True)
    results = []
    for n in sizes:
        r = one_size(n, args)
        results.append(r)
        print(f"days {r['days']:>7,}  worker CPU {r['worker_cpu_per_s']:.3f} s/s  Redis "
              f"{r['redis_ops_per_s']:,.0f} commands/s  leases lost {r['leases_lost']} "
              f"(log: {r['lost_in_log']})  submit->outcome p50 {r['p50_ms']:.1f} p99 "
              f"{r['p99_ms']:.1f} max {r['max_ms']:.1f} ms  {r['requests']:,} requests "
              f"Redis forks {r['redis_forks']}  "
              f"{r['statuses']}  acquired {r['acquired']:,} released {r['released']:,}  "
              f"Redis {r['redis_mib']:.0f} MiB", flush=True)
    base = results[0]
    for r in results[1:]:
        print(f"p99 at {r['days']:,} days / at {base['days']:,} days: "
              f"{r['p99_ms'] / base['p99_ms']:.2f}x; worker CPU {r['worker_cpu_per_s'] / base['worker_cpu_per_s']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
