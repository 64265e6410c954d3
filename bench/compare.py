"""Side-by-side HTTP benchmark: slotlock as deployed against the conventional Flask +
PostgreSQL ``EXCLUDE USING gist`` stack, same contract, same workloads, one run.

    python bench/compare.py                      # 10 s per run, C=2 and C=8, every workload
    python bench/compare.py --quick              # 3 s per run: checks the script, not the figures
    python bench/compare.py --workload contended --clients 8 --seconds 60

Stacks (each started from scratch, measured, stopped before the other starts):
  slotlock      the Procfile's web line (gunicorn gthread) + one ``slotlock worker`` + a private
                redis-server (AOF everysec); SLOTLOCK_ENV=production with a 64-character
                SECRET_KEY; SLOTLOCK_RATE_LIMIT=--rate-limit (default 1000000/minute: out of the
                way; the default 600/minute per token would answer 429 within seconds)
  conventional  bench/conventional: Flask under gunicorn gthread 2 workers x 8 threads, a psycopg
                pool, tokens checked against PostgreSQL (sha256, one query), the same per-token
                limit with Flask-Limiter counted in a private redis-server (no persistence),
                one INSERT into a table with EXCLUDE USING gist; a private PostgreSQL 127.0.0.1
                (synchronous_commit=--pg-synchronous-commit, default on: PostgreSQL's default)

Workloads (closed loop, keep-alive, one asyncio client process: this one):
  contended    4 calendars x 5 days (fresh days per run), random 15-60 min bookings on the
               15-minute grid inside 08:00-18:00; after ~2 s most answers are 409
  uncontended  a fresh day per request (one calendar)
  flash        --crowd (60) connections, warmed, then one POST each for the same slot at once;
               --flash-rounds rounds; exactly one 201 per round is required

Prints per stack and workload: requests/s, p50/p90/p99/max latency, status counts, CPU ms per
request of each process group (web, worker, redis-server / postgres, clients; from /proc),
the host's busy share (the machine may be shared), the ratio slotlock/conventional, and after
the runs whether either stack stored an overlap (PostgreSQL: a self-join; slotlock: every day
touched read back over the API, and ``slotlock audit`` with --audit).
Bounded: every run stops after --seconds or --max-requests, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
from stacks import ConventionalStack, SlotlockStack, cpu_seconds, host_jiffies, stop_on_signals

CONTENDED_CALENDARS = ["c0", "c1", "c2", "c3"]
# (what, calendar, body or None for malformed JSON, token?) -> the status both stacks must give
CONTRACT = [
    ("no token", "w0", {"start": "2099-06-01T10:00", "end": "2099-06-01T10:15", "title": "t"},
     False, 401),
    ("malformed JSON", "w0", None, True, 400),
    ("no title", "w0", {"start": "2099-06-01T10:00", "end": "2099-06-01T10:15"}, True, 422),
    ("off the grid", "w0", {"start": "2099-06-01T10:07", "end": "2099-06-01T10:15", "title": "t"},
     True, 422),
    ("end before start", "w0",
     {"start": "2099-06-01T10:15", "end": "2099-06-01T10:00", "title": "t"}, True, 422),
    ("in the past", "w0", {"start": "2001-01-01T10:00", "end": "2001-01-01T10:15", "title": "t"},
     True, 422),
    ("unknown calendar", "nope",
     {"start": "2099-06-01T10:00", "end": "2099-06-01T10:15", "title": "t"}, True, 404),
    ("book", "w0", {"start": "2099-06-01T10:00", "end": "2099-06-01T11:00", "title": "t"},
     True, 201),
    ("overlap", "w0", {"start": "2099-06-01T10:30", "end": "2099-06-01T10:45", "title": "t"},
     True, 409),
]
DAYS_PER_CALENDAR = 5
UNCONTENDED_CALENDAR, FLASH_CALENDAR, WARMUP_CALENDAR = "u0", "f0", "w0"
CONTENDED_BASE = date(2031, 3, 2)
UNCONTENDED_BASE = date(2033, 1, 1)
FLASH_BASE = date(2040, 6, 1)
WARMUP_BASE = date(2041, 1, 1)
OPEN, CLOSE = 8 * 4, 18 * 4  # quarter hours


def path(calendar: str) -> str:
    return f"/api/v1/calendars/{calendar}/bookings"


def quarter(day: date, q: int) -> str:
    if q == 96:
        return f"{day + timedelta(days=1)}T00:00"
    return f"{day}T{q // 4:02d}:{q % 4 * 15:02d}"


def body(day: date, q0: int, q1: int, title: str) -> bytes:
    return json.dumps({"start": quarter(day, q0), "end": quarter(day, q1),
                       "title": title}).encode()


@dataclass
class Result:
    stack: str
    workload: str
    clients: int
    requests: int
    elapsed: float
    latencies: list[float]
    statuses: Counter
    cpu_ms: dict[str, float]  # per request, by process group
    host_busy: float  # share of all the host's CPUs busy during the run (anyone's work)
    ours: float  # share of all the host's CPUs used by this stack and its clients
    notes: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        if not lat:
            return float("nan")
        return 1000 * lat[min(len(lat) - 1, max(0, math.ceil(q * len(lat)) - 1))]

    def to_dict(self) -> dict:
        return {"stack": self.stack, "workload": self.workload, "clients": self.clients,
                "requests": self.requests, "seconds": round(self.elapsed, 3),
                "rps": round(self.rps, 1),
                **{f"p{int(q * 100)}_ms": round(self.pct(q), 2) for q in (0.5, 0.9, 0.99)},
                "max_ms": round(self.pct(1.0), 2),
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "cpu_ms_per_request": {k: round(v, 3) for k, v in self.cpu_ms.items()},
                "host_busy": round(self.host_busy, 3), "ours": round(self.ours, 3),
                "notes": self.notes}


class Meter:
    """CPU of each process group, the clients' and the host's across one run."""

    def __init__(self, groups: dict[str, int | list[int]]):
        self.groups = groups  # name -> the root pid of each of its process trees

    def _cpu(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in (pids if isinstance(pids, list)
                                                       else [pids]))
                for name, pids in self.groups.items()}

    def __enter__(self) -> Self:
        self.before = self._cpu()
        self.host_before = host_jiffies()
        return self

    def __exit__(self, *exc) -> None:
        self.after = self._cpu()
        self.host_after = host_jiffies()

    def result(self, stack: str, workload: str, clients: int, run: loadgen.Run,
               wall: float) -> Result:
        n = max(1, len(run.statuses))
        cpu = {g: 1000 * (self.after[g] - self.before[g]) / n for g in self.groups}
        cpu["clients"] = 1000 * run.client_cpu / n
        cpu["total"] = sum(cpu.values())
        busy = self.host_after[0] - self.host_before[0]
        total = max(1, self.host_after[1] - self.host_before[1])
        ncpu = len([line for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("cpu") and line[3:4].isdigit()])
        ours = (cpu["total"] * n / 1000) / max(wall * ncpu, 1e-9)
        return Result(stack, workload, clients, len(run.statuses), run.elapsed, run.latencies,
                      Counter(run.statuses), cpu, busy / total, ours)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.results: list[Result] = []
        self.checks: list[str] = []
        self.contended_runs = 0
        self.stack_runs: Counter = Counter()  # by stack name
        self.uncontended_next = 0
        self.warmup_next = 0

    def workload_order(self, stack: str) -> list[str]:
        """The workloads in the order asked, with contended and uncontended swapped in every
        other stack run, so that neither always runs in the later (often slower) spell."""
        order = list(self.args.workload)
        if self.stack_runs[stack] % 2 and {"contended", "uncontended"} <= set(order):
            i, j = order.index("contended"), order.index("uncontended")
            order[i], order[j] = order[j], order[i]
        return order

    # -- one stack -------------------------------------------------------------------------

    def measure(self, stack, workload: str, clients: int, fn) -> tuple[Result, loadgen.Run]:
        with Meter(stack.groups()) as meter:
            t0 = time.monotonic()
            run = fn()
            wall = time.monotonic() - t0
        result = meter.result(stack.name, workload, clients, run, wall)
        self.results.append(result)
        print(row(result), flush=True)
        return result, run

    def run_stack(self, stack) -> None:
        args = self.args
        for cal in [*CONTENDED_CALENDARS, UNCONTENDED_CALENDAR, FLASH_CALENDAR, WARMUP_CALENDAR]:
            stack.put_calendar(cal)
        token = stack.add_user("bench")
        host, port = "127.0.0.1", stack.port
        touched: dict[str, set[date]] = defaultdict(set)
        accepted: Counter = Counter()  # 201s per calendar
        pending: Counter = Counter()  # 202s per calendar
        print(f"\n== {stack.name}: {stack.web_command}", flush=True)
        self.contract(stack, token)

        # warm-up (not counted): imports, pools, prepared statements
        start = self.warmup_next

        def warm(i: int):
            return path(WARMUP_CALENDAR), body(WARMUP_BASE + timedelta(days=start + i), 40, 42,
                                               "warm-up")
        warm_run = loadgen.closed_loop(host, port, token, max(args.clients), args.warmup, warm,
                                       max_requests=args.max_requests)
        self.warmup_next += len(warm_run.statuses)

        for workload in self.workload_order(stack.name):
            if workload == "flash":
                self.flash(stack, token, touched, accepted)
                continue
            for clients in args.clients:
                if workload == "contended":
                    days = [CONTENDED_BASE + timedelta(days=DAYS_PER_CALENDAR * self.contended_runs
                                                       + d) for d in range(DAYS_PER_CALENDAR)]
                    self.contended_runs += 1
                    rng = random.Random(f"{stack.name}-{clients}")

                    def make(i: int, rng=rng, days=days):
                        cal = CONTENDED_CALENDARS[rng.randrange(len(CONTENDED_CALENDARS))]
                        day = days[rng.randrange(len(days))]
                        length = rng.randint(1, 4)
                        q0 = rng.randrange(OPEN, CLOSE - length + 1)
                        return path(cal), body(day, q0, q0 + length, f"bench {i}")
                    for cal in CONTENDED_CALENDARS:
                        touched[cal].update(days)
                else:
                    first = self.uncontended_next

                    def make(i: int, first=first):
                        return path(UNCONTENDED_CALENDAR), body(
                            UNCONTENDED_BASE + timedelta(days=first + i), 40, 42, f"fresh {i}")
                fn = (lambda make=make, clients=clients, keep=workload == "contended":
                      loadgen.closed_loop(host, port, token, clients, args.seconds, make,
                                          max_requests=args.max_requests, keep_bodies=keep))
                result, run = self.measure(stack, workload, clients, fn)
                if workload == "uncontended":
                    touched[UNCONTENDED_CALENDAR].update(
                        UNCONTENDED_BASE + timedelta(days=first + i) for i in range(result.requests))
                    self.uncontended_next += result.requests
                    accepted[UNCONTENDED_CALENDAR] += result.statuses[201]
                    pending[UNCONTENDED_CALENDAR] += result.statuses[202]
                else:
                    # count 201s by calendar from the bodies (a 201's body is the booking)
                    for data in run.bodies:
                        cal = json.loads(data).get("calendar", "?")
                        (accepted if cal != "?" else pending)[cal] += 1
        self.stack_runs[stack.name] += 1
        self.verify(stack, token, touched, accepted, pending)

    def contract(self, stack, token: str) -> None:
        """The same answers from both stacks to the same requests, before any figure."""

        async def ask() -> list[tuple[int, bytes]]:
            answers = []
            for _, cal, data, with_token, _ in CONTRACT:
                conn = loadgen.Connection("127.0.0.1", stack.port, token if with_token else "x")
                raw = b"{not json" if data is None else json.dumps(data).encode()
                answers.append(await conn.request("POST", path(cal), raw))
                conn.close()
            return answers

        answers = asyncio.run(ask())
        got = []
        for (what, *_, want), (status, data) in zip(CONTRACT, answers, strict=True):
            mark = "" if status == want else f" (want {want})"
            if status == 409:
                details = json.loads(data)["error"]["details"]
                mark += f" conflicts={len(details.get('conflicts', []))}"
            got.append(f"{what}: {status}{mark}")
        ok = all(a[0] == c[-1] for a, c in zip(answers, CONTRACT, strict=True))
        line = f"{stack.name}: contract {'ok' if ok else 'BROKEN'}: " + "; ".join(got)
        self.checks.append(line)
        print(line, flush=True)

    def flash(self, stack, token: str, touched, accepted) -> None:
        args = self.args
        rounds: list[loadgen.Run] = []

        def all_rounds() -> loadgen.Run:
            merged = loadgen.Run()
            for r in range(args.flash_rounds):
                day = FLASH_BASE + timedelta(days=r)
                touched[FLASH_CALENDAR].add(day)
                one = body(day, 36, 40, "flash crowd")
                run = loadgen.crowd("127.0.0.1", stack.port, token, path(FLASH_CALENDAR), one,
                                    args.crowd)
                rounds.append(run)
                merged.latencies += run.latencies
                merged.statuses += run.statuses
                merged.elapsed += run.elapsed
                merged.client_cpu += run.client_cpu
            return merged

        # CPU is read over all rounds (one round is too short to read); it includes the
        # GET /healthz that opens each connection before the crowd is let go
        result, _ = self.measure(stack, "flash", args.crowd, all_rounds)
        winners = [Counter(run.statuses)[201] for run in rounds]
        accepted[FLASH_CALENDAR] += sum(winners)
        note = (f"{len(rounds)} rounds of {args.crowd}: 201s per round {winners} "
                f"({'exactly one each' if set(winners) == {1} else 'NOT exactly one'})")
        result.notes.append(note)
        print(f"   {note}")

    # -- after the runs: did either stack store an overlap? ---------------------------------

    def verify(self, stack, token: str, touched, accepted: Counter, pending: Counter) -> None:
        time.sleep(1.0)  # let a 202's command be applied
        stored: Counter = Counter()
        overlaps = 0
        if isinstance(stack, ConventionalStack):
            from conventional import db

            overlaps = db.overlapping_pairs(stack.pg.conninfo)
            stored.update(db.bookings_per_calendar(stack.pg.conninfo))
            how = "PostgreSQL self-join over every calendar"
        else:
            paths, owners = [], []
            for cal, days in touched.items():
                for day in sorted(days):
                    paths.append(f"/api/v1/calendars/{cal}/days/{day}")
                    owners.append(cal)
            answers = loadgen.get_all("127.0.0.1", stack.port, token, paths)
            bad = 0
            for cal, (status, data) in zip(owners, answers):
                if status != 200:
                    bad += 1
                    continue
                bookings = sorted(json.loads(data)["bookings"], key=lambda b: b["start"])
                stored[cal] += len(bookings)
                for a, b in itertools.pairwise(bookings):
                    if datetime.fromisoformat(b["start"]) < datetime.fromisoformat(a["end"]):
                        overlaps += 1
            how = f"{len(paths)} days read back over the API ({bad} not 200)"
            if self.args.audit:
                out = stack.cli("audit")
                how += f"; slotlock audit: {out.strip().splitlines()[-1]} (exit " \
                       f"{stack.last_returncode})"
        lines = [f"{stack.name}: overlapping pairs stored: {overlaps} ({how})"]
        for cal in sorted(set(accepted) | set(stored)):
            if cal == WARMUP_CALENDAR or cal == "?":
                continue
            flag = "" if stored[cal] == accepted[cal] else (
                f"  <- differs (202s: {pending[cal]})" if pending[cal] else "  <- DIFFERS")
            lines.append(f"  {cal}: 201 answers {accepted[cal]}, stored {stored[cal]}{flag}")
        self.checks += lines
        print("\n".join(lines), flush=True)


def row(r: Result) -> str:
    statuses = " ".join(f"{k}:{v}" for k, v in sorted(r.statuses.items()))
    cpu = " ".join(f"{k}={v:.2f}" for k, v in r.cpu_ms.items())
    return (f"{r.stack:<12} {r.workload:<11} C={r.clients:<3} {r.requests:>7} req "
            f"{r.rps:>7.0f}/s  p50 {r.pct(.5):6.1f}  p90 {r.pct(.9):6.1f}  p99 {r.pct(.99):6.1f}  "
            f"max {r.pct(1):7.1f} ms  [{statuses}]\n"
            f"{'':<12} CPU ms/request: {cpu}   host busy {100 * r.host_busy:.0f}% "
            f"(this stack + clients {100 * r.ours:.0f}%)")


def summary(results: list[Result]) -> str:
    """Per workload and C: the median over rounds of each stack's figures, their ratio, and
    the ratio of each round (stacks alternate their order round by round, so a drift of
    the host's speed does not favour one of them)."""
    by: dict[tuple, list[Result]] = defaultdict(list)
    for r in results:
        by[(r.stack, r.workload, r.clients)].append(r)
    out = []
    for ours, other in (("slotlock", "conventional"), ("slotlock-cluster", "slotlock")):
        out += ratios(by, ours, other)
    out += within_stack(by)
    return "\n".join(out)


def ratios(by: dict[tuple, list[Result]], ours: str, other: str) -> list[str]:
    """The lines of ``summary`` comparing the stack ``ours`` with ``other``, if both ran."""
    out = ["", f"ratio {ours} / {other} (requests/s; p99; CPU ms per request; medians):"]
    for (stack, workload, clients), mine in by.items():
        theirs = by.get((other, workload, clients))
        if stack != ours or not theirs:
            continue
        rps = [s.rps / max(c.rps, 1e-9) for s, c in zip(mine, theirs)]
        ratio = median(r.rps for r in mine) / max(median(r.rps for r in theirs), 1e-9)
        p99 = [median(r.pct(.99) for r in side) for side in (mine, theirs)]
        cpu = [median(r.cpu_ms["total"] for r in side) for side in (mine, theirs)]
        rounds = f"   (rounds: {', '.join(f'{x:.2f}x' for x in rps)})" if len(rps) > 1 else ""
        out.append(f"  {workload:<11} C={clients:<3} {ratio:5.2f}x req/s   "
                   f"p99 {p99[0]:.1f} vs {p99[1]:.1f} ms   CPU {cpu[0]:.2f} vs {cpu[1]:.2f} ms"
                   + rounds)
    return out if len(out) > 2 else []


def within_stack(by: dict[tuple, list[Result]]) -> list[str]:
    """Each stack's uncontended requests/s over its contended requests/s, round by round
    (the two ran a minute apart on the same stack, in alternating order): the ratio least
    at the mercy of the host's drift between stacks."""
    out = []
    for (stack, workload, clients), fresh in by.items():
        held = by.get((stack, "contended", clients))
        if workload != "uncontended" or not held:
            continue
        if not out:
            out = ["", "uncontended / contended, same stack, per round (median of the rounds):"]
        ratios = [u.rps / max(c.rps, 1e-9) for u, c in zip(fresh, held)]
        out.append(f"  {stack:<12} C={clients:<3} {median(ratios):5.2f}x   (rounds: "
                   f"{', '.join(f'{x:.2f}x' for x in ratios)})")
    return out


def median(values) -> float:
    return statistics.median(list(values))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--seconds", type=float, default=10.0, help="per run (default 10)")
    parser.add_argument("--clients", default="2,8", help="comma-separated (default 2,8)")
    parser.add_argument("--workload", default="contended,uncontended,flash",
                        help="comma-separated of contended, uncontended, flash")
    parser.add_argument("--stack", default="slotlock,conventional",
                        help="comma-separated of slotlock, conventional, slotlock-cluster "
                        "(slotlock on a local Redis Cluster, SLOTLOCK_REDIS_CLUSTER=on)")
    parser.add_argument("--cluster-primaries", type=int, default=3,
                        help="primaries of slotlock-cluster's Redis Cluster (default 3)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, 2 flash rounds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=200_000, help="per run")
    parser.add_argument("--crowd", type=int, default=60)
    parser.add_argument("--flash-rounds", type=int, default=5)
    parser.add_argument("--rate-limit", default="1000000/minute",
                        help="per token, both stacks (default: out of the way)")
    parser.add_argument("--pg-synchronous-commit", default="on", choices=["on", "off"],
                        help="off matches Redis AOF everysec's durability (default on)")
    parser.add_argument("--audit", action="store_true", help="also run `slotlock audit`")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every run this many times, the stacks' order alternating; "
                        "figures are medians (the host's speed drifts: use 3 for the README)")
    parser.add_argument("--web-options", help="slotlock's gunicorn options instead of the "
                        "Procfile's, e.g. \"--worker-class gthread --workers 2 --threads 8\"")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup, args.flash_rounds = 3.0, 0.5, 2
    args.clients = [int(c) for c in args.clients.split(",")]
    args.workload = args.workload.split(",")
    args.stack = args.stack.split(",")
    unknown = set(args.stack) - {"slotlock", "conventional", "slotlock-cluster"}
    if unknown:
        parser.error(f"unknown stack(s): {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    stop_on_signals()
    bench = Bench(args)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {args.seconds:g} s per run, clients "
          f"{args.clients}, workloads {args.workload}, rate limit {args.rate_limit} per token "
          f"on both stacks, PostgreSQL synchronous_commit={args.pg_synchronous_commit}")
    with tempfile.TemporaryDirectory(prefix="slotlock-compare-") as tmp:
        for round_ in range(args.rounds):
            order = args.stack if round_ % 2 == 0 else list(reversed(args.stack))
            if args.rounds > 1:
                print(f"\n#### round {round_ + 1} of {args.rounds}: {', '.join(order)}")
            for name in order:
                where = Path(tmp) / f"round{round_}"
                where.mkdir(exist_ok=True)
                if name == "conventional":
                    stack = ConventionalStack(where, args.rate_limit,
                                              synchronous_commit=args.pg_synchronous_commit)
                else:
                    stack = SlotlockStack(where, args.rate_limit, web_options=args.web_options,
                                          cluster_primaries=(args.cluster_primaries
                                                             if name == "slotlock-cluster"
                                                             else 0))
                try:
                    stack.start()
                    bench.run_stack(stack)
                finally:
                    stack.stop()
    print(summary(bench.results))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "results": [r.to_dict() for r in bench.results], "checks": bench.checks}, indent=2))
    failed = [c for c in bench.checks if "DIFFERS" in c or "BROKEN" in c
              or ("overlapping" in c and "pairs stored: 0" not in c)]
    return 1 if failed or any("NOT exactly" in n for r in bench.results for n in r.notes) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process started here has been stopped", file=sys.stderr)
        sys.exit(130)
