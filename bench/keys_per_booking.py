"""The Redis keys one booking touches, per Redis Cluster hash slot (issue 12: "no global hot
key on the booking path; show the keys one booking touches, per slot").

    python bench/keys_per_booking.py            # the table, ~15 s
    python bench/keys_per_booking.py --json out.json

Starts slotlock as deployed (``bench/stacks.py``: the Procfile's web line under gunicorn,
one ``slotlock worker``, a private redis-server on a loopback port), makes a user and a
token, warms the web processes up, then watches Redis with ``MONITOR`` while it

1. listens for ``--idle`` seconds with no request: the worker's periodic commands
   (heartbeat, sweep, re-index), which are not part of any booking;
2. books once on a fresh day and waits until the worker let the day go (its acquisition,
   commit, index removal and idle release belong to that booking);
3. books again, on a day the worker holds (the day of a booking just before).

Every command Redis ran is listed with its keys (Redis's own ``COMMAND GETKEYS``; commands
run inside scripts are shown under the script that ran them), the process that sent it
(web or worker: client ports mapped to pids with ``ss -tnp``), each key's hash slot
(``CLUSTER KEYSLOT``'s CRC16, computed by redis-py) and its kind: a key of the booking's
day (``sl:{calendar:date}:...``), of its calendar (``sl:{cal:ID}``), its user
(``sl:{user:NAME}``), its token, its idempotency key, or a **global** key that every
booking of every calendar touches (one slot, so one node of a cluster, for the whole
fleet). Not a test: it prints what it sees.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import redis
from redis.crc import key_slot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stacks import SlotlockStack, stop_on_signals, tree  # noqa: E402

LINE = re.compile(r'^(\d+\.\d+) \[(\d+) ([^\]]*)\] (.*)$')
ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
PERIODIC_NOTE = "periodic (heartbeat, sweep, re-index, renewals): not per booking"


def unquote(arg: str) -> str:
    return re.sub(r'\\x([0-9a-f]{2})|\\(.)',
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else m.group(2), arg)


class Monitor(threading.Thread):
    """Every line ``MONITOR`` prints, with its client (``ip:port`` or ``lua``)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.lines: list[tuple[float, str, list[str]]] = []
        self.stopped = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            connection = monitor.connection
            while not self.stopped.is_set():
                try:
                    raw = connection.read_response()
                except redis.ConnectionError:
                    return  # the server stopped
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", "replace")
                m = LINE.match(raw or "")
                if m:
                    args = [unquote(a) for a in ARG.findall(m.group(4))]
                    self.lines.append((float(m.group(1)), m.group(3), args))

    def mark(self) -> float:
        """A point in MONITOR's stream: an ECHO from a client of our own, returned as the
        server's timestamp of it."""
        token = f"mark-{time.monotonic_ns()}"
        self.client.echo(token)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for at, _who, args in reversed(self.lines):
                if args[-1:] == [token]:
                    return at
            time.sleep(0.01)
        raise RuntimeError("MONITOR did not show our mark")

    def between(self, start: float, end: float) -> list[tuple[float, str, list[str]]]:
        return [line for line in self.lines if start < line[0] < end]


def ports_by_group(stack: SlotlockStack, redis_port: int) -> dict[str, str]:
    """Client ``ip:port`` of every connection to our redis-server -> web / worker."""
    pids = {pid: "web" for pid in tree(stack.web.pid)}
    pids[stack.worker.pid] = "worker"
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( dport = :{redis_port} )"],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split()
        local = fields[2] if len(fields) > 2 else ""
        for pid in re.findall(r"pid=(\d+)", line):
            group = pids.get(int(pid))
            if group:
                found[local.replace("[::ffff:", "").replace("]", "")] = group
    return found


DAY_KEY = re.compile(r"^sl:\{[a-z0-9][a-z0-9_-]*:\d{4}-\d{2}-\d{2}\}:")


def kind_of(key: str, part: str, calendar: str, user: str) -> str:
    if key.startswith(f"sl:{{{part}}}"):
        return "day"
    if DAY_KEY.match(key):
        return "another day"  # the re-index's look at every day, a step at a time
    if key.startswith(f"sl:{{cal:{calendar}}}"):
        return "calendar"
    if key.startswith(f"sl:{{user:{user}}}"):
        return "user"
    if key.startswith("sl:token:"):
        return "token"
    if key.startswith("sl:idem:"):
        return "idempotency key"
    if key.startswith("sl:ratelimit:{token:") or key.startswith("LIMITS:"):
        return "rate limit (per token)"
    return "GLOBAL"


def keys_of(client: redis.Redis, args: list[str], cache: dict) -> list[str]:
    if not args:
        return []
    name = args[0].lower()
    if name in ("echo", "ping", "monitor", "wait", "info", "time", "script", "client",
                "hello", "select", "command", "multi", "exec", "config", "memory", "dbsize"):
        return []
    signature = tuple(args)
    if signature not in cache:
        try:
            cache[signature] = [k.decode() if isinstance(k, bytes) else k
                                for k in client.command_getkeys(*args)]
        except redis.ResponseError:
            cache[signature] = []
    return cache[signature]


def describe(lines, groups: dict[str, str], client: redis.Redis, part: str, calendar: str,
             user: str) -> list[dict]:
    """One row per command: who sent it, the command, its keys with slot and kind; commands
    inside a script go under the script's sender."""
    rows, cache, sender = [], {}, "?"
    for _at, who, args in lines:
        if who == "lua":
            source = f"{sender} (in script)"
        else:
            sender = groups.get(who, "other")
            source = sender
        if sender == "other" or not args:
            continue
        keys = keys_of(client, args, cache)
        if not keys:
            continue
        rows.append({"from": source, "command": args[0].upper(),
                     "keys": [{"key": k, "slot": key_slot(k.encode()),
                               "kind": kind_of(k, part, calendar, user)} for k in keys]})
    return rows


def signatures(rows: list[dict]) -> set[tuple[str, str, str]]:
    """(sender, command, key) of every key a row touched."""
    return {(r["from"], r["command"], k["key"]) for r in rows for k in r["keys"]}


def print_phase(title: str, rows: list[dict], periodic: set[tuple[str, str, str]]) -> dict:
    """The keys of one phase; a (sender, command, key) also seen with no request at all is
    marked periodic and left out of the slots and the global keys, as are other days' keys
    (the re-index)."""
    print(f"\n== {title}")
    slots: dict[int, set[str]] = defaultdict(set)
    counts: Counter = Counter()
    global_keys = set()
    for row in rows:
        for k in row["keys"]:
            tag = k["kind"]
            if (row["from"], row["command"], k["key"]) in periodic:
                tag = "periodic"
            counts[(row["from"], row["command"], k["key"], tag, k["slot"])] += 1
            if tag not in ("periodic", "another day"):
                slots[k["slot"]].add(k["key"])
            if tag == "GLOBAL":
                global_keys.add(k["key"])
    for (source, command, key, tag, slot), n in sorted(counts.items()):
        times = f" x{n}" if n > 1 else ""
        print(f"  {source:22s} {command:10s}{times:5s} slot {slot:5d}  {tag:22s} {key}")
    print(f"  -> {len(slots)} slots; global keys on this booking's path: "
          f"{', '.join(sorted(global_keys)) or 'none'}")
    return {"slots": {str(s): sorted(keys) for s, keys in sorted(slots.items())},
            "global_keys": sorted(global_keys), "commands": rows}


def post(url: str, token: str, day: date, hour: int) -> int:
    body = json.dumps({"start": f"{day.isoformat()}T{hour:02d}:00:00Z",
                       "end": f"{day.isoformat()}T{hour:02d}:30:00Z", "title": "keys"})
    request = urllib.request.Request(f"{url}/api/v1/calendars/main/bookings",
                                     data=body.encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=2.0,
                        help="seconds of no request first, to tell the periodic commands")
    parser.add_argument("--json", help="write every command and key to this file")
    args = parser.parse_args()
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="slotlock-keys-") as tmp:
        stack = SlotlockStack(Path(tmp), "1000000/minute").start()
        try:
            stack.put_calendar("main")  # UTC, no booking window: days far ahead are open
            token = stack.add_user("alice")
            first = date.today() + timedelta(days=400)
            for i in range(6):  # every web process verifies the token once (the fast lane)
                if post(stack.url, token, first - timedelta(days=1 + i), 9) != 201:
                    raise SystemExit("the warm-up booking was not accepted")
            time.sleep(2.5)  # the warm-up days are let go of
            monitor = Monitor(stack.redis.url)
            monitor.start()
            monitor.ready.wait(5)
            groups = ports_by_group(stack, stack.redis.port)
            client = redis.Redis.from_url(stack.redis.url, decode_responses=True)

            t0 = monitor.mark()
            time.sleep(args.idle)
            t1 = monitor.mark()
            idle_rows = describe(monitor.between(t0, t1), groups, client, "-", "main", "alice")
            periodic = signatures(idle_rows)

            fresh = first
            status = post(stack.url, token, fresh, 10)
            time.sleep(2.0)  # the worker lets the day go (idle for 1 s)
            t2 = monitor.mark()
            part = f"main:{fresh.isoformat()}"
            fresh_rows = describe(monitor.between(t1, t2), groups, client, part, "main",
                                  "alice")

            held = first + timedelta(days=1)
            post(stack.url, token, held, 8)
            t3 = monitor.mark()
            status_held = post(stack.url, token, held, 10)
            time.sleep(0.3)
            t4 = monitor.mark()
            part_held = f"main:{held.isoformat()}"
            held_rows = describe(monitor.between(t3, t4), groups, client, part_held, "main",
                                 "alice")
            monitor.stopped.set()
        finally:
            stack.stop()
    print(f"slotlock as deployed (Procfile web line + slotlock worker + redis-server); "
          f"booking answers: fresh day {status}, held day {status_held}")
    print(f"\n== {args.idle:.0f} s with no request: {PERIODIC_NOTE}")
    for source, command, key in sorted(periodic):
        print(f"  {source:22s} {command:10s}      slot {key_slot(key.encode()):5d}  {key}")
    result = {
        "periodic": sorted(periodic),
        "fresh_day": print_phase(f"one booking on a fresh day ({part}), until its release",
                                 fresh_rows, periodic),
        "held_day": print_phase(f"one booking on a held day ({part_held})", held_rows,
                                periodic),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
