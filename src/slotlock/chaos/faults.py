"""Faults on a seeded schedule, and the failover times they cause.

The schedule (times and kinds) comes from the seed alone; which process a fault hits
is drawn from the same seed among the processes alive at that moment, preferring
the holder of a busy day so that every kill or pause interrupts real work.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field

from ..days.keys import WORKERS, DayKeys
from ..days.lease import parse_lease
from ..workers import jobs
from .cluster import Cluster

log = logging.getLogger("slotlock.chaos")

# kind -> weight. See README "Guarantees under faults" for what each one attacks.
KINDS = {
    "kill_worker": 2.0,  # SIGKILL a day's holder, start a replacement
    "stale_commit": 2.0,  # stop a holder between decide and commit, past the TTL, resume it
    "pause_worker": 1.0,  # SIGSTOP a worker wherever it is, past the TTL, then SIGCONT
    "term_worker": 2.0,  # SIGTERM (rolling restart) a holder, start a replacement
    "term_web": 1.0,  # SIGTERM (rolling restart) a web process, start a replacement
    "client_kill": 1.0,  # CLIENT KILL TYPE normal: every connection dropped
    "redis_restart": 0.5,  # SIGKILL redis-server, restart it from its AOF
    "net_slow": 1.0,  # one link gets 20-150 ms per chunk for a few seconds
    "net_stall": 1.0,  # one link holds all traffic for 0.3-3 s, then delivers it late
    "kill_scheduler": 0.5,  # SIGKILL rq's scheduler process, as a Redis error ends it
}


def schedule(seed: int, duration_s: float, rate: float, kinds: dict[str, float] | None = None,
             warmup_s: float = 2.0) -> list[tuple[float, str]]:
    """Poisson arrivals at ``rate`` faults per second, kinds drawn by weight."""
    kinds = kinds or KINDS
    rng = random.Random(seed)
    names, weights = list(kinds), list(kinds.values())
    out, t = [], warmup_s
    while rate > 0:
        t += rng.expovariate(rate)
        if t >= duration_s:
            break
        out.append((t, rng.choices(names, weights)[0]))
    return out


@dataclass
class Fault:
    kind: str
    at: float
    target: str = ""
    detail: dict = field(default_factory=dict)
    took_s: float = 0.0


class Injector(threading.Thread):
    def __init__(self, cluster: Cluster, plan: list[tuple[float, str]], days: list[str],
                 seed: int, t0: float, stop: threading.Event):
        super().__init__(name="faults", daemon=True)
        self.cluster = cluster
        self.plan = plan
        self.days = days
        self.rng = random.Random(seed ^ 0x5EED)
        self.t0 = t0
        self.stop_event = stop
        self.faults: list[Fault] = []
        # seconds from the signal to the successor's first commit on each day the victim
        # held; "term_queued" only counts days that had commands queued at the signal (on
        # an idle day the first commit also waits for the next command to arrive), and
        # "term_lease" is the handover itself: the signal until a successor holds the lease
        # "term_ready" counts only handovers with another worker up and running at the signal
        # (a replacement from the previous fault may still be importing Python)
        self.failover: dict[str, list[float]] = {"kill": [], "kill_queued": [], "term": [],
                                                 "term_queued": [],
                                                 "term_lease": [], "term_ready": []}
        self.intended_exits: set[int] = set()  # pids the harness stopped on purpose
        self.errors: list[str] = []
        self.ttl_s = cluster.config.lease_ttl_ms / 1000

    def run(self) -> None:
        for at, kind in self.plan:
            while not self.stop_event.is_set() and time.monotonic() - self.t0 < at:
                self.stop_event.wait(0.05)
            if self.stop_event.is_set():
                return
            fault = Fault(kind, round(time.monotonic() - self.t0, 3))
            started = time.monotonic()
            try:
                getattr(self, kind)(fault)
            except Exception as exc:  # recorded: a fault that could not be injected
                log.exception("fault %s failed", kind)
                self.errors.append(f"{kind} at {fault.at}: {exc!r}")
            fault.took_s = round(time.monotonic() - started, 3)
            self.faults.append(fault)
            log.info("fault %s %s %s", kind, fault.target, fault.detail)

    # -- choosing a victim ---------------------------------------------------------------

    def holders(self) -> dict[str, tuple[str, int]]:
        """part -> (holder id, token) of every day lease held now."""
        pipe = self.cluster.redis.pipeline(transaction=False)
        for part in self.days:
            pipe.get(DayKeys(part).lease)
        out = {}
        for part, value in zip(self.days, pipe.execute()):
            if value:
                token, holder = parse_lease(value)
                out[part] = (holder, token)
        return out

    def pick_worker(self, holding: bool = True) -> tuple[int, dict[str, int]]:
        """A worker slot (a lease holder if any) and the days it holds with their tokens."""
        held = self.holders()
        by_holder: dict[str, dict[str, int]] = {}
        for part, (holder, token) in held.items():
            by_holder.setdefault(holder, {})[part] = token
        slots = {p.name: slot for slot, p in self.cluster.workers.items()}
        candidates = [name for name in by_holder if name in slots] if holding else []
        if candidates:
            name = self.rng.choice(sorted(candidates))
            return slots[name], by_holder[name]
        slot = self.rng.choice(sorted(self.cluster.workers))
        return slot, by_holder.get(self.cluster.workers[slot].name, {})

    def queued_work(self, days) -> dict[str, tuple[int, int]]:
        """The days with commands waiting, each with the id of its last stream entry."""
        pipe = self.cluster.redis.pipeline(transaction=False)
        for part in days:
            pipe.hget(DayKeys(part).state, "pending")
            pipe.xrevrange(DayKeys(part).cmds, count=1)
        replies = pipe.execute()
        queued = {}
        for i, part in enumerate(days):
            pending, last = replies[2 * i], replies[2 * i + 1]
            if int(pending or 0) > 0 and last:
                queued[part] = stream_id(last[0][0])
        return queued

    def watch(self, days: dict[str, int], queued: dict[str, tuple[int, int]], since: float,
              timeout: float) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
        """Per day, seconds from ``since`` until (1) a successor holds its lease, (2) a
        successor committed, and (3) for days in ``queued``, its committed cursor reached
        the entry that was last when the fault came: every command queued then is decided,
        by whoever. One poll of every day each 2 ms, so no figure waits for another."""
        found: tuple[dict[str, float], ...] = ({}, {}, {})
        deadline = since + timeout
        while time.monotonic() < deadline:
            lease_wait = [p for p in days if p not in found[0]]
            state_wait = [p for p in days if p not in found[1]]
            queue_wait = [p for p in queued if p not in found[2]]
            if not (lease_wait or state_wait or queue_wait):
                break
            pipe = self.cluster.redis.pipeline(transaction=False)
            for part in lease_wait:
                pipe.get(DayKeys(part).lease)
            for part in state_wait + queue_wait:
                pipe.hmget(DayKeys(part).state, ["token", "cursor"])
            replies = pipe.execute()
            now = time.monotonic() - since
            for part, value in zip(lease_wait, replies):
                if value and int(value.split(":", 1)[0]) > days[part]:
                    found[0][part] = now
            states = replies[len(lease_wait):]
            for part, (token, _) in zip(state_wait, states):
                if token and int(token) > days[part]:
                    found[1][part] = now
            for part, (_, cursor) in zip(queue_wait, states[len(state_wait):]):
                if cursor and stream_id(cursor) >= queued[part]:
                    found[2][part] = now
            time.sleep(0.002)
        return found

    def kill_worker(self, fault: Fault) -> None:
        slot, days = self.pick_worker()
        proc = self.cluster.workers[slot]
        fault.target = proc.name
        self.intended_exits.add(proc.pid)
        queued = self.queued_work(days)
        sent = time.monotonic()
        proc.send(signal.SIGKILL)
        proc.wait(5)
        self.cluster.start_worker(slot)
        _, commits, decided = self.watch(days, queued, sent, self.ttl_s + 10)
        times = list(commits.values())
        fault.detail = {"days": len(days), "failover_ms": [round(t * 1000) for t in times],
                        "queued_decided_ms": {p: round(t * 1000) for p, t in decided.items()}}
        self.failover["kill"].extend(times)
        self.failover["kill_queued"].extend(decided.values())

    def term_worker(self, fault: Fault) -> None:
        slot, days = self.pick_worker()
        proc = self.cluster.workers[slot]
        fault.target = proc.name
        self.intended_exits.add(proc.pid)
        queued = self.queued_work(days)
        ready = [p.name for other, p in self.cluster.workers.items() if other != slot
                 and p.alive() and p.state() != "T" and "started (pid" in p.log()]
        sent = time.monotonic()
        proc.send(signal.SIGTERM)
        leases, commits, decided = self.watch(days, queued, sent, self.ttl_s + 10)
        code = proc.wait(10)
        # a day the worker let go of for idleness between the look at the holders and the
        # signal has no lease to hand over: its next lease waits for its next command
        released = _released_at_stop(proc.log())
        if released is not None:
            idle = sorted(p for p in days if p not in released)
            leases = {p: t for p, t in leases.items() if p in released}
            commits = {p: t for p, t in commits.items() if p in released}
        else:
            idle = []
        self.cluster.start_worker(slot)
        fault.detail = {"days": len(days), "exit": code, "queued": sorted(queued),
                        "idle_released_before": idle,
                        "successors_ready": ready,
                        "lease_ms": {p: round(t * 1000) for p, t in leases.items()},
                        "queued_decided_ms": {p: round(t * 1000) for p, t in decided.items()},
                        "failover_ms": [round(t * 1000) for t in commits.values()]}
        self.failover["term"].extend(commits.values())
        self.failover["term_queued"].extend(decided.values())
        self.failover["term_lease"].extend(leases.values())
        if ready:
            self.failover["term_ready"].extend(commits.values())

    def _pause(self, proc, fault: Fault) -> None:
        hold = self.ttl_s * self.rng.uniform(1.3, 2.5)
        time.sleep(hold)
        proc.send(signal.SIGCONT)
        fault.detail["paused_ms"] = round(hold * 1000)

    def pause_worker(self, fault: Fault) -> None:
        slot, _ = self.pick_worker(holding=self.rng.random() < 0.7)
        proc = self.cluster.workers[slot]
        fault.target = proc.name
        proc.send(signal.SIGSTOP)
        self._pause(proc, fault)

    def stale_commit(self, fault: Fault) -> None:
        """The failpoint stops the worker between deciding a batch and committing it; its
        lease lapses while it is stopped, so on SIGCONT it commits under a stale token."""
        slot, _ = self.pick_worker()
        proc = self.cluster.workers[slot]
        fault.target = proc.name
        proc.send(signal.SIGUSR1)
        deadline = time.monotonic() + 2.5
        while proc.state() != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        fault.detail["mid_commit"] = proc.state() == "T"
        if not fault.detail["mid_commit"]:
            proc.send(signal.SIGSTOP)  # no commit came: a plain pause instead
        self._pause(proc, fault)

    def term_web(self, fault: Fault) -> None:
        slot = self.rng.choice(sorted(self.cluster.webs))
        proc = self.cluster.webs[slot]
        fault.target = proc.name
        self.intended_exits.add(proc.pid)
        proc.send(signal.SIGTERM)
        fault.detail["exit"] = proc.wait(30)
        self.cluster.start_web(slot)
        fault.detail["ready_s"] = round(self.cluster.wait_web_ready(slot), 3)

    def client_kill(self, fault: Fault) -> None:
        fault.target = "redis"
        fault.detail["killed"] = self.cluster.redis.execute_command("CLIENT", "KILL", "TYPE",
                                                                    "normal")

    def kill_scheduler(self, fault: Fault) -> None:
        """rq's scheduler process (a child of ``slotlock jobs``) exits on any Redis error
        and its worker restarts it only at maintenance; retries of refused webhook
        deliveries wait for it (found by CI's chaos run: events never arrived)."""
        client = self.cluster.redis
        name = client.get(f"rq:scheduler-lock:{jobs.QUEUE}")
        pid = client.hget(f"rq:scheduler:{name}", "pid") if name else None
        fault.target = f"rq scheduler {name or '-'}"
        fault.detail["pid"] = int(pid) if pid else None
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                fault.detail["gone"] = True

    def redis_restart(self, fault: Fault) -> None:
        fault.target = "redis"
        # down up to 2.5 s: longer than the jobs process's 1 s pause before it makes its next
        # rq worker (CI found that one exiting when Redis was still down then)
        fault.detail["restart_s"] = round(self.cluster.restart_redis(
            down_s=self.rng.uniform(0.1, 2.5)), 3)

    def _link(self):
        slot = self.rng.choice(sorted(self.cluster.workers) + ["web"])
        return self.cluster.web_link() if slot == "web" else self.cluster.worker_link(slot)

    def net_slow(self, fault: Fault) -> None:
        link = self._link()
        fault.target = link.name
        ms = self.rng.uniform(20, 150)
        for_s = self.rng.uniform(1, 4)
        link.set_latency(ms)
        time.sleep(for_s)
        link.set_latency(0)
        fault.detail = {"latency_ms": round(ms), "for_ms": round(for_s * 1000)}

    def net_stall(self, fault: Fault) -> None:
        link = self._link()
        fault.target = link.name
        for_s = self.rng.uniform(0.3, 3.0)
        link.hold()
        time.sleep(for_s)
        link.release()
        fault.detail = {"held_ms": round(for_s * 1000)}


def stream_id(value: str) -> tuple[int, int]:
    ms, _, seq = value.partition("-")
    return int(ms), int(seq or 0)


def worker_fence_refusals(cluster: Cluster) -> int:
    """The ``fence_refusals`` counters of every worker's last heartbeat in ``sl:workers``."""
    total = 0
    for raw in cluster.redis.hvals(WORKERS):
        total += json.loads(raw).get("stats", {}).get("fence_refusals", 0)
    return total


def _released_at_stop(log_text: str) -> set[str] | None:
    """The days a worker released at a warm stop, from its last ``released at stop:`` line
    (``None`` if it logged none: a cold stop, or a worker of an older version)."""
    lines = [line for line in log_text.splitlines() if "released at stop: " in line]
    if not lines:
        return None
    parts = lines[-1].split("released at stop: ", 1)[1].split()
    return set() if parts == ["-"] else set(parts)
