"""End-to-end HTTP booking benchmark: gunicorn (the Procfile's web line) + 1 lease worker +
a private redis-server on this machine, driven by N concurrent keep-alive clients.

    python bench/http_bench.py [--clients 8] [--seconds 10]

Workloads:
  contended    every request books a random 15-minute slot on ONE day (one serial lease
               worker partition; most requests end in 409 once the day fills up, and the
               day is reset between rounds by using a fresh date)
  uncontended  every request books on its own day (spread over many partitions; all 201)

Prints throughput (requests/s) and p50/p99 latency per workload.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.e2e.http_stack import HttpStack

URL = "/api/v1/calendars/main/bookings"
COUNTER = itertools.count()  # shared by every run, so no two runs book the same day


def run(stack: HttpStack, token: str, workload: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    base = date(2040, 1, 1) if workload == "contended" else date(2050, 1, 1)

    def client(n: int) -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        mine, mine_status = [], Counter()
        while time.monotonic() < stop_at:
            i = next(COUNTER)
            if workload == "contended":
                # 96 slots per day; move to the next day every 400 requests so the day
                # keeps both accepted and refused bookings
                day = base + timedelta(days=i // 400)
                slot = (i * 37) % 96
            else:
                day = base + timedelta(days=i)
                slot = 40
            body = {"start": f"{day}T{slot // 4:02d}:{slot % 4 * 15:02d}",
                    "end": f"{day}T{(slot + 1) // 4:02d}:{(slot + 1) % 4 * 15:02d}"
                    if slot < 95 else f"{day + timedelta(days=1)}T00:00",
                    "title": f"bench {n}-{i}"}
            t0 = time.perf_counter()
            r = session.post(stack.url + URL, json=body, headers=headers, timeout=30)
            mine.append(time.perf_counter() - t0)
            mine_status[r.status_code] += 1
        with lock:
            latencies.extend(mine)
            statuses.update(mine_status)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "workload": workload,
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "statuses": dict(sorted(statuses.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slotlock-bench-") as tmp:
        with HttpStack(Path(tmp), workers=1) as stack:
            token = stack.token("bench", admin=True)
            run(stack, token, "uncontended", args.clients, args.warmup)
            print(f"gunicorn (Procfile web line: 2 processes x 16 threads) + 1 worker + "
                  f"redis-server; {args.clients} clients, {args.seconds:.0f} s each")
            print(f"{'workload':<12} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
                  "  statuses")
            for workload in ("contended", "uncontended"):
                r = run(stack, token, workload, args.clients, args.seconds)
                print(f"{r['workload']:<12} {r['requests']:>9} {r['rps']:>8.0f} "
                      f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}  {r['statuses']}")
                assert not [s for s in r["statuses"] if s >= 500], r["statuses"]


if __name__ == "__main__":
    main()
