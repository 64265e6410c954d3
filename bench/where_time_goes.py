"""Where a booking's time goes on slotlock's HTTP path, under load.

    python bench/where_time_goes.py                       # contended, C=8, 10 s + 10 s profiled
    python bench/where_time_goes.py --quick               # 3 s + 3 s
    python bench/where_time_goes.py --workload uncontended --clients 2 --top 30

Starts slotlock as bench/compare.py does (the Procfile's web line + one ``slotlock worker`` +
a private redis-server, SLOTLOCK_RATE_LIMIT out of the way), with bench/probe on PYTHONPATH:
a sitecustomize that counts every redis-py round trip by label in each process. Then:

1. a measured run: CPU ms per booking of web / worker / redis-server / clients (from /proc),
   Redis ``INFO commandstats`` before and after (commands per booking, by command, including
   those run inside scripts); then GET /healthz in the same closed loop: the CPU of gunicorn +
   Flask with no booking work, the floor under the web's figure;
2. a profiled run of the same workload: ``py-spy record`` (``--gil``: samples of the thread
   holding the GIL, i.e. Python CPU) of each gunicorn worker and of the lease worker; prints the
   share of samples by package (self time) and the top functions by self and by total time;
3. on a second stack started with bench/probe on PYTHONPATH (a sitecustomize that counts every
   redis-py round trip by label; it costs the worker a few per cent, so runs 1 and 2 go
   without it): round trips per booking from the web and from the worker, split by call.

Calls driven by time rather than by bookings (lease renewals, the sweep) are divided by the
bookings too: their share per booking falls as throughput rises.

"Per booking" means per booking request answered (201 or 409 alike).
Needs py-spy (pip install py-spy; ptrace must be allowed, as for root in a container).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loadgen
import redis
from compare import (
    CONTENDED_BASE,
    CONTENDED_CALENDARS,
    DAYS_PER_CALENDAR,
    UNCONTENDED_BASE,
    UNCONTENDED_CALENDAR,
    WARMUP_BASE,
    WARMUP_CALENDAR,
    Meter,
    body,
    path,
    row,
)
from stacks import ROOT, SlotlockStack, procfile_line, stop_on_signals, tree

PROBE = Path(__file__).resolve().parent / "probe"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")

# package of a frame's file, for "self time by package"
PACKAGES = [
    ("redis-py reply parsing", ("redis/_parsers/",)),
    ("redis-py connection/commands", ("/redis/",)),
    ("flask-limiter / limits", ("flask_limiter/", "/limits/")),
    ("flask", ("/flask/",)),
    ("werkzeug", ("/werkzeug/",)),
    ("gunicorn", ("/gunicorn/",)),
    ("pydantic", ("/pydantic/", "pydantic_core")),
    ("json", ("/json/",)),
    ("click", ("/click/",)),
    ("slotlock.web", ("slotlock/web/",)),
    ("slotlock.client", ("slotlock/client.py",)),
    ("slotlock.users", ("slotlock/users.py",)),
    ("slotlock.days", ("slotlock/days/",)),
    ("slotlock.workers", ("slotlock/workers/",)),
    ("slotlock.model", ("slotlock/model/",)),
    ("slotlock (other)", ("slotlock/",)),
    ("zoneinfo/datetime", ("/zoneinfo/", "/datetime.py", "/_strptime.py")),
    ("socket/selectors/threads", ("/socket.py", "/selectors.py", "/threading.py", "/queue.py",
                                  "/concurrent/futures/")),
]


def package(file: str) -> str:
    for name, needles in PACKAGES:
        if any(n in file for n in needles):
            return name
    return "other (stdlib, ...)"


def short(frame: str) -> str:
    m = FRAME.match(frame)
    if not m:
        return frame
    file = m.group("file")
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


def read_raw(files: list[Path]) -> list[tuple[list[str], int]]:
    stacks = []
    for f in files:
        if not f.exists():
            continue
        for line in f.read_text().splitlines():
            head, _, count = line.rpartition(" ")
            if head and count.isdigit():
                frames = [fr for fr in head.split(";") if not fr.startswith(("process ", "thread "))]
                stacks.append((frames, int(count)))
    return stacks


def profile_report(title: str, stacks: list[tuple[list[str], int]], top: int) -> list[str]:
    total = sum(n for _, n in stacks)
    if not total:
        return [f"{title}: no samples"]
    by_pkg, self_fn, incl_fn = Counter(), Counter(), Counter()
    for frames, n in stacks:
        if not frames:
            continue
        leaf = frames[-1]
        m = FRAME.match(leaf)
        by_pkg[package(m.group("file") if m else leaf)] += n
        self_fn[short(leaf)] += n
        for fr in {short(f) for f in frames}:
            incl_fn[fr] += n
    out = [f"{title}: {total} samples (py-spy --gil)", "  self time by package:"]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in by_pkg.most_common()]
    out.append(f"  top {top} functions by self time:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in self_fn.most_common(top)]
    out.append(f"  top {top} functions by total time (with callees), slotlock's and redis-py's:")
    interesting = [(k, v) for k, v in incl_fn.most_common()
                   if k.split("(")[-1].startswith(("slotlock/", "redis/", "flask_limiter/",
                                                   "limits/", "pydantic/"))]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in interesting[:top]]
    return out


def probe_counts(directory: Path, pids: set[int]) -> Counter:
    counts: Counter = Counter()
    for f in directory.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if data["pid"] in pids:
            counts.update(data["counts"])
    return counts


def commandstats(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}


class Session:
    """One slotlock stack with its calendars, a token and a workload generator."""

    def __init__(self, tmp: Path, args: argparse.Namespace, probe_dir: Path | None):
        extra = {}
        if probe_dir:
            extra = {"PYTHONPATH": os.pathsep.join([str(PROBE), str(ROOT / "src")]),
                     "SLOTLOCK_PROBE_DIR": str(probe_dir)}
        self.args = args
        self.stack = SlotlockStack(tmp / ("probed" if probe_dir else "plain"), args.rate_limit,
                                   extra_env=extra)
        self.counter = iter(range(10**9))

    def start(self) -> Session:
        self.stack.start()
        for cal in [*CONTENDED_CALENDARS, UNCONTENDED_CALENDAR, WARMUP_CALENDAR]:
            self.stack.put_calendar(cal)
        self.token = self.stack.add_user("bench")
        self.redis = redis.Redis.from_url(self.stack.redis.url)
        loadgen.closed_loop("127.0.0.1", self.stack.port, self.token, self.args.clients, 1.0,
                            lambda i: (path(WARMUP_CALENDAR),
                                       body(WARMUP_BASE + timedelta(days=i), 40, 42, "w")))
        return self

    def make_for(self, run_no: int):
        days = [CONTENDED_BASE + timedelta(days=DAYS_PER_CALENDAR * run_no + d)
                for d in range(DAYS_PER_CALENDAR)]
        rng = random.Random(run_no)

        def make(i: int):
            if self.args.workload == "uncontended":
                return path(UNCONTENDED_CALENDAR), body(
                    UNCONTENDED_BASE + timedelta(days=next(self.counter)), 40, 42, "fresh")
            cal = CONTENDED_CALENDARS[rng.randrange(len(CONTENDED_CALENDARS))]
            length = rng.randint(1, 4)
            q0 = rng.randrange(32, 72 - length + 1)
            return path(cal), body(days[rng.randrange(len(days))], q0, q0 + length, f"b {i}")
        return make

    def run(self, run_no: int, seconds: float, make=None, workload: str | None = None):
        with Meter(self.stack.groups()) as meter:
            t0 = time.monotonic()
            run = loadgen.closed_loop("127.0.0.1", self.stack.port, self.token,
                                      self.args.clients, seconds, make or self.make_for(run_no))
            wall = time.monotonic() - t0
        return meter.result("slotlock", workload or self.args.workload, self.args.clients, run,
                            wall)


def measured(session: Session, seconds: float) -> None:
    """CPU per process group and INFO commandstats, no probe and no profiler attached."""
    r = session.redis
    cs0, info0 = commandstats(r), r.info("stats")["total_commands_processed"]
    result = session.run(1, seconds)
    cs1, info1 = commandstats(r), r.info("stats")["total_commands_processed"]
    n = result.requests
    print("\n1. measured run (no probe, no profiler)\n" + row(result))
    print(f"\nRedis: {(info1 - info0 - 1) / n:.1f} commands per booking in all "
          "(INFO commandstats, commands inside scripts included):")
    deltas = Counter({k: cs1.get(k, 0) - cs0.get(k, 0) for k in cs1})
    deltas["info"] -= 2  # the two INFO calls of this script
    for cmd, calls in deltas.most_common():
        if calls > 0:
            print(f"  {calls / n:6.2f}  {cmd}")
    base = session.run(0, min(seconds, 5.0), lambda i: ("/healthz", b""), "GET /healthz")
    print("\nbaseline: the web's floor, GET /healthz (gunicorn + Flask, no token, no Redis)\n"
          + row(base))


def profiled(session: Session, seconds: float, tmp: Path, pyspy: str, spies: list) -> None:
    args, stack = session.args, session.stack
    gunicorn_workers = [p for p in tree(stack.web.pid) if p != stack.web.pid]
    targets = {"web": gunicorn_workers, "worker": [stack.worker.pid]}
    outs: dict[str, list[Path]] = defaultdict(list)
    duration = int(seconds) + 1
    for group, pids in targets.items():
        for pid in pids:
            out = tmp / f"{group}-{pid}.txt"
            outs[group].append(out)
            spies.append(subprocess.Popen(
                [pyspy, "record", "--pid", str(pid), "--duration", str(duration),
                 "--rate", str(args.rate), "--gil", "--full-filenames", "--format", "raw",
                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    time.sleep(0.5)
    result = session.run(2, seconds)
    for spy in spies:
        try:
            spy.wait(duration + 20)
        except subprocess.TimeoutExpired:
            spy.send_signal(signal.SIGINT)
            spy.wait(10)
    print("\n2. profiled run (py-spy attached: slower)\n" + row(result))
    for group in ("web", "worker"):
        print()
        print("\n".join(profile_report(f"{group} ({len(targets[group])} process(es))",
                                       read_raw(outs[group]), args.top)))
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        for files in outs.values():
            for f in files:
                if f.exists():
                    shutil.copy(f, args.keep)


def round_trips(session: Session, seconds: float, probe_dir: Path) -> None:
    stack = session.stack
    web_pids, worker_pids = set(tree(stack.web.pid)), set(tree(stack.worker.pid))
    time.sleep(0.6)  # the probe writes its counts twice a second
    before = {"web": probe_counts(probe_dir, web_pids),
              "worker": probe_counts(probe_dir, worker_pids)}
    result = session.run(3, seconds)
    time.sleep(0.6)
    after = {"web": probe_counts(probe_dir, web_pids),
             "worker": probe_counts(probe_dir, worker_pids)}
    n = result.requests
    print("\n3. round trips (bench/probe counting every redis-py round trip)\n" + row(result))
    for group in ("web", "worker"):
        d = after[group] - before[group]
        total = d.pop("(round trips)", 0)
        print(f"\nround trips per booking from the {group}: {total / n:.2f}")
        # a pipeline of many days' scripts (renewals, idle releases) is one label, whatever
        # the number of days in it
        folded = Counter()
        for label, calls in d.items():
            folded[re.sub(r"x\d{2,}\b", "xN", label)] += calls
        small = 0
        for label, calls in folded.most_common():
            if calls / n < 0.005:
                small += 1
                continue
            print(f"  {calls / n:6.2f}  {label}")
        if small:
            print(f"          ({small} more, under 0.005 each)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--workload", default="contended", choices=["contended", "uncontended"])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="each of the three runs")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="3 s runs")
    parser.add_argument("--rate-limit", default="1000000/minute")
    parser.add_argument("--keep", help="copy the py-spy raw profiles into this directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds = 3.0
    pyspy = shutil.which("py-spy")
    stop_on_signals()
    spies: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="slotlock-where-") as tmp:
        tmp = Path(tmp)
        session = Session(tmp, args, None)
        print(f"slotlock: {procfile_line('web').replace('0.0.0.0', '127.0.0.1')}\n  + slotlock worker + redis-server; "
              f"{args.workload}, C={args.clients}, {args.seconds:g} s per run; "
              f"SLOTLOCK_RATE_LIMIT={args.rate_limit}")
        try:
            session.start()
            measured(session, args.seconds)
            if pyspy:
                profiled(session, args.seconds, tmp, pyspy, spies)
            else:
                print("\npy-spy not found (pip install py-spy): no profile")
        finally:
            for spy in spies:
                if spy.poll() is None:
                    spy.kill()
                    spy.wait()
            session.stack.stop()
        probe_dir = tmp / "probe"
        probe_dir.mkdir()
        session = Session(tmp, args, probe_dir)
        try:
            session.start()
            round_trips(session, args.seconds, probe_dir)
        finally:
            session.stack.stop()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: every process started here has been stopped", file=sys.stderr)
        sys.exit(130)
