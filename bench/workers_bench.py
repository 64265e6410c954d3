"""Several lease workers on one Redis: throughput and how the days are shared.

    python bench/workers_bench.py                         # 1, 2 and 4 workers, 30 s each
    python bench/workers_bench.py --workers 2 --join 10   # the second worker starts 10 s late
    python bench/workers_bench.py --quick                 # 1 and 2 workers, 8 s: checks the script

For each worker count K: a private redis-server (AOF everysec), 20 calendars, K
``slotlock worker`` processes and an open-loop load of --rate bookings a second spread over
--active days (a new 15-minute slot each time) for --seconds; with --join, the workers after
the first start that many seconds into the load. Latency is submit -> outcome from each
request's scheduled moment. Twice a second the days each worker holds are read from
``sl:workers:load`` (its fair-share count, workers/share.py).

Prints per K: outcomes per second, p50/p99/max, each worker's commands applied and days
held (mean over the second half of the run), days given up to others (shed) and leases
lost. On this 2-CPU machine more workers cannot mean more speed (web clients, workers and
Redis share two CPUs): the figures show the sharing and its cost, not a speed-up.
Bounded: every run stops after --seconds; processes are stopped by pid.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

from days_bench import (CALENDARS, FIRST_DAY, load, make_calendars, pct, settings_for,
                        start_worker)

from slotlock.client import Client
from slotlock.days.keys import WORKER_LOAD, WORKERS
from slotlock.embedded import RedisServer


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_count(k: int, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(tmp) as server:
        settings = settings_for(server.url)
        client = Client(settings)
        make_calendars(client)
        per_calendar = -(-args.active // len(CALENDARS))
        active = [f"{cal}:{(FIRST_DAY + timedelta(days=i)).isoformat()}"
                  for cal in CALENDARS for i in range(per_calendar)][:args.active]
        names = [f"w{i + 1}" for i in range(k)]
        procs: dict[str, subprocess.Popen] = {}
        samples: list[tuple[float, dict]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                loads = {name.split(":")[0]: json.loads(raw)["held"]  # "id:nonce"
                         for name, raw in client.redis.hgetall(WORKER_LOAD).items()}
                samples.append((time.monotonic(), loads))

        def join_late() -> None:
            if not done.wait(args.join):
                for name in names[1:]:
                    procs[name] = start_worker(server.url, Path(tmp) / f"{name}.log", name)

        try:
            for name in names[:1] if args.join else names:
                procs[name] = start_worker(server.url, Path(tmp) / f"{name}.log", name)
            time.sleep(args.settle)
            helpers = [threading.Thread(target=sample, daemon=True)]
            if args.join and k > 1:
                helpers.append(threading.Thread(target=join_late, daemon=True))
            for t in helpers:
                t.start()
            t0 = time.monotonic()
            latencies, statuses = load(settings, active, args.rate, args.seconds, args.threads)
            wall = time.monotonic() - t0
            done.set()
            time.sleep(1.2)  # one more heartbeat of each worker
            status = {name: json.loads(client.redis.hget(WORKERS, name) or "{}")
                      for name in names}
        finally:
            done.set()
            for proc in procs.values():
                stop(proc)
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                for name in procs:
                    log_text = (Path(tmp) / f"{name}.log").read_text()
                    (Path(args.logs) / f"{k}-{name}.log").write_text(log_text)
        half = t0 + wall / 2
        late = [loads for at, loads in samples if at >= half]
        held = {name: sum(s.get(name, 0) for s in late) / max(1, len(late)) for name in names}
        stats = {name: status[name].get("stats", {}) for name in names}
        return {
            "workers": k, "join_s": args.join, "wall_s": wall, "requests": len(latencies),
            "per_s": len(latencies) / wall, "p50_ms": pct(latencies, 0.50),
            "p99_ms": pct(latencies, 0.99), "max_ms": max(latencies, default=float("nan")),
            "statuses": dict(statuses),
            "commands": {n: stats[n].get("commands", 0) for n in names},
            "held_mean_late": held,
            "shed": {n: stats[n].get("shed", 0) for n in names},
            "leases_lost": sum(stats[n].get("leases_lost", 0) for n in names),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--active", type=int, default=1000, help="days that get bookings")
    parser.add_argument("--rate", type=float, default=300.0, help="bookings per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--join", type=float, default=0.0,
                        help="start the workers after the first this late into the load")
    parser.add_argument("--quick", action="store_true", help="1 and 2 workers, 8 s")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--logs", help="copy the workers' logs into this directory")
    args = parser.parse_args()
    if args.quick:
        args.workers, args.seconds = "1,2", 8.0
    logging.basicConfig(level=logging.WARNING)
    counts = [int(x) for x in args.workers.split(",")]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  workers {counts}, {args.active} active days, "
          f"{args.rate:g} bookings/s open loop from {args.threads} threads, {args.seconds:g} s "
          f"each" + (f", workers after the first join at {args.join:g} s" if args.join else ""),
          flush=True)
    results = []
    for k in counts:
        r = one_count(k, args)
        results.append(r)
        commands = " ".join(f"{n}={c:,}" for n, c in r["commands"].items())
        held = " ".join(f"{n}={h:.0f}" for n, h in r["held_mean_late"].items())
        shed = " ".join(f"{n}={c}" for n, c in r["shed"].items())
        print(f"workers {k}  {r['per_s']:,.0f} outcomes/s  p50 {r['p50_ms']:.1f} p99 "
              f"{r['p99_ms']:.1f} max {r['max_ms']:.1f} ms  {r['statuses']}  commands "
              f"[{commands}]  days held, 2nd half [{held}]  shed [{shed}]  leases lost "
              f"{r['leases_lost']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
