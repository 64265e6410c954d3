"""Many days, a few active: does a worker's cost follow the days with work?

    python bench/days_bench.py                                  # 1,000 / 10,000 / 100,000 days, 60 s each
    python bench/days_bench.py --days 1000,100000 --seconds 300 # the issue's 5-minute check
    python bench/days_bench.py --quick                          # 1,000 / 10,000 days, 10 s: checks the script
    python bench/days_bench.py --days 1000,100000 --seconds 60 --rounds 5   # interleaved

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
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
         threads: int, slots: Counter | None = None,
         seed: int = 11) -> tuple[list[float], Counter]:
    """Open loop: request k is due at start + k / rate; latency counts from then. ``slots``
    (each day's next free slot) carries over between windows on the same days."""
    slots = Counter() if slots is None else slots
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    start = time.monotonic() + 0.2
    total = int(rate * seconds)
    counter = iter(range(total))
    rng = random.Random(seed)
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


class RewriteWatch:
    """How long Redis spent rewriting its AOF during the window (sampled every 0.25 s): a
    rewrite forks and copies the whole data set, and the copy-on-write faults slow Redis
    while it runs, for a time that grows with the data stored."""

    def __init__(self, url: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.seconds = 0.0
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> "RewriteWatch":
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.halt.wait(0.25):
            if self.client.info("persistence").get("aof_rewrite_in_progress"):
                self.seconds += 0.25

    def stop(self) -> None:
        self.halt.set()
        self.thread.join(5)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


class Size:
    """One size N, ready to measure: its own redis-server with N days stored, its own
    ``slotlock worker``; ``window`` measures one stretch of load on it."""

    def __init__(self, n: int, args):
        self.n, self.args = n, args
        self.slots: Counter = Counter()
        self.windows = 0

    def __enter__(self) -> "Size":
        args = self.args
        self._tmp = tempfile.TemporaryDirectory()
        tmp = self._tmp.name
        extra = ["--auto-aof-rewrite-percentage", "0"] if args.aof_rewrite == "off" else []
        self.server = RedisServer(tmp, extra=extra).start()
        try:
            self.settings = settings_for(self.server.url)
            self.client = client = Client(self.settings)
            make_calendars(client)
            template = template_day(self.settings, client)
            started = time.monotonic()
            parts = fill(client, template, self.n)
            self.active = random.Random(self.n).sample(parts, min(args.active, len(parts)))
            info = client.redis.info("memory")
            print(f"  {self.n:,} days stored in {time.monotonic() - started:.1f} s, Redis "
                  f"{info['used_memory'] / 2**20:.0f} MiB; {len(self.active):,} of them active",
                  flush=True)
            settled_s = settle_aof(client.redis)
            if settled_s:
                print(f"  AOF rewrite after the fill: waited {settled_s:.1f} s for it", flush=True)
            self.log_path = Path(tmp) / "worker.log"
            self.worker = start_worker(self.server.url, self.log_path)
            time.sleep(args.settle)  # the worker's first passes (script loading, re-index start)
        except BaseException:
            self.server.stop()
            self._tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(20)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait()
        self.server.stop()
        self._tmp.cleanup()

    def window(self, seconds: float) -> dict:
        args, r = self.args, self.client.redis
        cpu0, ops0 = cpu_seconds(self.worker.pid), r.info("stats")["total_commands_processed"]
        forks0 = r.info("stats")["total_forks"]
        rewriting = RewriteWatch(self.server.url).start()
        t0 = time.monotonic()
        latencies, statuses = load(self.settings, self.active, args.rate, seconds,
                                   args.threads, self.slots, seed=11 + self.windows)
        wall = time.monotonic() - t0
        rewriting.stop()
        self.windows += 1
        cpu1, ops1 = cpu_seconds(self.worker.pid), r.info("stats")["total_commands_processed"]
        forks = r.info("stats")["total_forks"] - forks0
        time.sleep(1.2)  # one more heartbeat
        status = json.loads(r.hget(WORKERS, "bench-days") or "{}")
        stats = status.get("stats", {})
        return {
            "days": self.n, "active": len(self.active), "wall_s": wall,
            "worker_cpu_per_s": (cpu1 - cpu0) / wall,
            "redis_ops_per_s": (ops1 - ops0) / wall,
            "leases_lost": stats.get("leases_lost", 0),  # the worker's total so far
            "lost_in_log": self.log_path.read_text().count("lost lease of"),
            "requests": len(latencies), "p50_ms": pct(latencies, 0.50),
            "p99_ms": pct(latencies, 0.99), "max_ms": max(latencies, default=float("nan")),
            "latencies": latencies,
            "statuses": dict(statuses),
            "redis_mib": r.info("memory")["used_memory"] / 2**20,
            "acquired": stats.get("acquired", 0), "released": stats.get("released", 0),
            "redis_forks": forks, "aof_rewriting_s": rewriting.seconds,
            "latest_fork_ms": r.info("stats")["latest_fork_usec"] / 1000,
        }


def row(r: dict) -> str:
    return (f"days {r['days']:>7,}  worker CPU {r['worker_cpu_per_s']:.3f} s/s  Redis "
            f"{r['redis_ops_per_s']:,.0f} commands/s  leases lost {r['leases_lost']} "
            f"(log: {r['lost_in_log']})  submit->outcome p50 {r['p50_ms']:.1f} p99 "
            f"{r['p99_ms']:.1f} max {r['max_ms']:.1f} ms  {r['requests']:,} requests "
            f"Redis forks {r['redis_forks']} (AOF rewriting {r['aof_rewriting_s']:.1f} s, "
            f"last fork {r['latest_fork_ms']:.1f} ms)  "
            f"{r['statuses']}  acquired {r['acquired']:,} released {r['released']:,}  "
            f"Redis {r['redis_mib']:.0f} MiB")


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
    parser.add_argument("--aof-rewrite", choices=["auto", "off"], default="auto",
                        help="Redis's automatic AOF rewrites during the window (default: auto, "
                             "as Redis ships; off: auto-aof-rewrite-percentage 0)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with more than 1: every size ready at once, then this many "
                             "windows of --seconds on each, alternating (see ``rounds``)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    if args.quick:
        args.days, args.seconds = "1000,10000", 10.0
    logging.basicConfig(level=logging.WARNING)
    sizes = [int(x) for x in args.days.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  days {sizes}, {args.active} active, "
          f"{args.rate:g} bookings/s open loop from {args.threads} threads, {args.seconds:g} s "
          f"each, one `slotlock worker` process, AOF rewrites {args.aof_rewrite}", flush=True)
    if args.rounds == 1:
        results = []
        for n in sizes:
            with Size(n, args) as size:
                results.append(size.window(args.seconds))
            print(row(results[-1]), flush=True)
        base = results[0]
        for r in results[1:]:
            print(f"p99 at {r['days']:,} days / at {base['days']:,} days: "
                  f"{r['p99_ms'] / base['p99_ms']:.2f}x; worker CPU "
                  f"{r['worker_cpu_per_s'] / base['worker_cpu_per_s']:.2f}x")
    else:
        results = rounds(sizes, args)
    if args.json:
        for r in results:
            r.pop("latencies", None)
        Path(args.json).write_text(json.dumps(results, indent=2))


def rounds(sizes: list[int], args) -> list[dict]:
    """Every size ready at once (its own Redis and worker), then --rounds windows of
    --seconds on each, the sizes' order alternating round by round: the VM's speed drifts
    by a third between runs minutes apart, which a ratio of runs taken one after the
    other measures instead of the sizes."""
    results: list[dict] = []
    with ExitStack() as stack:
        ready = [stack.enter_context(Size(n, args)) for n in sizes]
        for k in range(args.rounds):
            order = ready if k % 2 == 0 else list(reversed(ready))
            print(f"round {k + 1} of {args.rounds}: {', '.join(f'{s.n:,}' for s in order)}",
                  flush=True)
            for size in order:
                results.append(size.window(args.seconds))
                print("  " + row(results[-1]), flush=True)
    by_size = {n: [r for r in results if r["days"] == n] for n in sizes}
    base = sizes[0]
    print(f"\nover {args.rounds} rounds of {args.seconds:g} s per size:")
    for n, mine in by_size.items():
        pooled = [x for r in mine for x in r["latencies"]]
        lost = max(r["leases_lost"] for r in mine)
        cpu = statistics.median(r["worker_cpu_per_s"] for r in mine)
        line = (f"  days {n:>7,}: {len(pooled):,} requests, p50 {pct(pooled, 0.5):.1f} p99 "
                f"{pct(pooled, 0.99):.1f} max {max(pooled):.1f} ms, worker CPU (median) "
                f"{cpu:.3f} s/s, leases lost {lost}")
        if n != base:
            ratios = [m["p99_ms"] / b["p99_ms"] for m, b in zip(mine, by_size[base])]
            base_pooled = [x for r in by_size[base] for x in r["latencies"]]
            line += (f"; p99 / {base:,} days: pooled {pct(pooled, 0.99) / pct(base_pooled, 0.99):.2f}x, "
                     f"median of rounds {statistics.median(ratios):.2f}x "
                     f"(rounds: {', '.join(f'{x:.2f}x' for x in ratios)})")
        print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
