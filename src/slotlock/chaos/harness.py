"""One fault-harness run: start the cluster, drive clients, inject faults, heal, check.

    run(RunConfig(duration_s=60, seed=7, fault_rate=0.3)) -> RunReport

The run directory keeps every process's log, ``history.jsonl`` (every operation) and
``report.json`` (the figures and the checker's verdict).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

from ..catalog import Catalog
from ..days.keys import partition
from ..users import Users
from .checker import Checker, Sampler, wait_settled
from .clients import CALENDAR, ClientThread
from .cluster import Cluster, ClusterConfig
from .faults import KINDS, Injector, schedule, worker_fence_refusals
from .history import History
from .ops import HttpOps

FAILOVER_LABELS = {
    "sigkill": "SIGKILL -> successor's first commit",
    "sigterm": "SIGTERM -> successor's first commit (every day held)",
    "sigterm_queued": "SIGTERM -> successor's first commit (days with commands queued)",
    "sigterm_lease": "SIGTERM -> successor holds the lease",
    "sigterm_ready": "SIGTERM -> successor's first commit (another worker was up)",
}

@dataclass
class RunConfig:
    run_dir: Path
    duration_s: float = 60.0
    seed: int = 1
    fault_rate: float = 0.25  # faults per second
    workers: int = 3
    webs: int = 2
    clients: int = 8
    days: int = 3
    lease_ttl_ms: int = 1000
    kinds: dict[str, float] = field(default_factory=lambda: dict(KINDS))
    disable_fencing: bool = False  # test-only broken build (honoured under pytest only)
    appendfsync: str = "always"
    settle_timeout_s: float = 60.0
    think_s: float = 0.0


@dataclass
class RunReport:
    seed: int
    duration_s: float
    operations: dict
    faults: dict
    fence_refusals_logged: int
    fence_refusals_heartbeats: int
    failover: dict
    anomalies: dict
    examples: list
    resolved: dict
    samples: int
    settled: bool
    survival: dict
    harness_errors: list
    days: dict
    run_dir: str

    @property
    def anomaly_count(self) -> int:
        return sum(self.anomalies.values())

    def summary(self) -> str:
        ops = self.operations
        lines = [
            f"seed {self.seed}, {self.duration_s:.0f} s, run dir {self.run_dir}",
            f"operations: {ops['total']} ({ops['rate_per_s']:.1f}/s)  "
            + "  ".join(f"{k}={v}" for k, v in sorted(ops["by_type"].items())),
            f"faults: {self.faults['total']}  "
            + "  ".join(f"{k}={v}" for k, v in sorted(self.faults["by_kind"].items())),
            f"stale commits forced mid-commit: {self.faults['stale_mid_commit']}",
            (f"fencing refusals observed: {self.fence_refusals_logged} (FENCED: log lines), "
            f"{self.fence_refusals_heartbeats} (heartbeat counters of the last workers)"),
        ]
        for kind, figures in self.failover.items():
            if figures["n"]:
                lines.append(f"failover, {FAILOVER_LABELS.get(kind, kind)}: n={figures['n']} "
                             f"p50={figures['p50_ms']} ms max={figures['max_ms']} ms "
                             f"(target {figures['target_ms']} ms)")
        lines.append(f"samples of committed state during the run: {self.samples}")
        lines.append("anomalies: " + "  ".join(f"{k}={v}" for k, v in self.anomalies.items())
                     + f"  (total {self.anomaly_count})")
        lines.extend(f"  e.g. {e}" for e in self.examples[:10])
        if self.resolved:
            lines.append("undecided operations settled by the checker: "
                         + "  ".join(f"{k}={v}" for k, v in sorted(self.resolved.items())))
        lines.append("survival: " + "  ".join(f"{k}={v}" for k, v in self.survival.items()))
        if self.harness_errors:
            lines.append(f"harness errors: {self.harness_errors[:5]}")
        return "\n".join(lines)


def percentiles(values: list[float], target_ms: float) -> dict:
    if not values:
        return {"n": 0, "p50_ms": None, "max_ms": None, "target_ms": target_ms}
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1000),
            "max_ms": round(max(values) * 1000), "target_ms": target_ms}


def run(config: RunConfig, log=print) -> RunReport:
    cluster = Cluster(ClusterConfig(config.run_dir, workers=config.workers, webs=config.webs,
                                    lease_ttl_ms=config.lease_ttl_ms,
                                    appendfsync=config.appendfsync,
                                    disable_fencing=config.disable_fencing))
    first_day = date(2031, 3, 3)
    days = [first_day + timedelta(days=i) for i in range(config.days)]
    parts = [partition(CALENDAR, d) for d in days]
    history = History()
    stop_clients, stop_faults, stop_sampler = (threading.Event() for _ in range(3))
    clients: list[ClientThread] = []
    injector = sampler = None
    try:
        log(f"starting redis, proxy, {config.webs} web and {config.workers} worker processes "
            f"in {config.run_dir}")
        cluster.start()
        catalog = Catalog(cluster.redis)
        main_calendar, _ = catalog.ensure_default("UTC")
        catalog.put(main_calendar.with_changes(  # its fixed dates lie years ahead
            rules=dataclasses.replace(main_calendar.rules, horizon_days=0)))
        users = Users(cluster.redis)
        tokens = {}
        for i in range(config.clients):
            name = f"chaos{i}"
            users.add(name)
            tokens[name] = users.issue_token(name)
        t0 = time.monotonic()
        sampler = Sampler(cluster.redis, parts, stop_sampler)
        sampler.start()
        timeout_s = config.lease_ttl_ms / 1000 + 10
        for i, (name, token) in enumerate(tokens.items()):
            ops = HttpOps(cluster.web_urls(), token, timeout_s=timeout_s,
                          rng=__import__("random").Random(config.seed * 1000 + i))
            clients.append(ClientThread(name, ops, days, history, config.seed * 7919 + i, t0,
                                        stop_clients, think_s=config.think_s))
        for client in clients:
            client.start()
        plan = schedule(config.seed, config.duration_s, config.fault_rate, config.kinds)
        injector = Injector(cluster, plan, parts, config.seed, t0, stop_faults)
        injector.start()
        log(f"running {config.duration_s:.0f} s with {len(plan)} faults planned")
        next_note = 30.0
        while time.monotonic() - t0 < config.duration_s:
            time.sleep(0.5)
            if time.monotonic() - t0 >= next_note:
                log(f"  {next_note:.0f} s: {len(history.ops)} operations, "
                    f"{len(injector.faults)} faults")
                next_note += 30.0
        stop_faults.set()
        injector.join(60)
        elapsed = time.monotonic() - t0
        stop_clients.set()
        for client in clients:
            client.join(60)
        # heal: every link back to normal, every worker running
        for link in cluster.proxy.links.values():
            link.normal()
        for proc in cluster.workers.values():
            proc.send(signal.SIGCONT)
        settled = wait_settled(cluster.redis, parts, config.settle_timeout_s)
        stop_sampler.set()
        sampler.join(10)
        survival = survival_of(cluster, injector)
        checker = Checker(cluster.redis, parts)
        verdict = checker.check(history.ops, sampler)
        if not settled:
            checker.add("unsettled", "commands still queued after the settle timeout")
            verdict["anomalies"]["unsettled"] += 1
        verdict["anomalies"]["crash"] += survival["crashed"]
        history.write(config.run_dir / "history.jsonl")
        by_type = Counter(op.type or "unfinished" for op in history.ops)
        by_f = Counter(f"{op.f}:{op.type}" for op in history.ops)
        report = RunReport(
            seed=config.seed,
            duration_s=round(elapsed, 1),
            operations={"total": len(history.ops), "rate_per_s": len(history.ops) / elapsed,
                        "by_type": dict(by_type), "by_f": dict(by_f)},
            faults={"total": len(injector.faults),
                    "by_kind": dict(Counter(f.kind for f in injector.faults)),
                    "stale_mid_commit": sum(1 for f in injector.faults
                                            if f.detail.get("mid_commit"))},
            fence_refusals_logged=cluster.log_count(r"FENCED:"),
            fence_refusals_heartbeats=worker_fence_refusals(cluster),
            failover={
                "sigkill": percentiles(injector.failover["kill"], config.lease_ttl_ms + 250),
                "sigterm": percentiles(injector.failover["term"], 100),
                "sigterm_queued": percentiles(injector.failover["term_queued"], 100),
                "sigterm_lease": percentiles(injector.failover["term_lease"], 100),
                "sigterm_ready": percentiles(injector.failover["term_ready"], 100),
            },
            anomalies=verdict["anomalies"],
            examples=verdict["examples"],
            resolved=verdict["resolved"],
            samples=sampler.samples,
            settled=settled,
            survival=survival,
            harness_errors=injector.errors + [e for c in clients for e in c.errors],
            days=verdict["days"],
            run_dir=str(config.run_dir),
        )
        (config.run_dir / "faults.jsonl").write_text(
            "".join(json.dumps(asdict(f)) + "\n" for f in injector.faults))
        (config.run_dir / "report.json").write_text(json.dumps(asdict(report), indent=2))
        return report
    finally:
        stop_faults.set()
        stop_clients.set()
        stop_sampler.set()
        cluster.stop()


def survival_of(cluster: Cluster, injector: Injector) -> dict:
    """Processes that exited although the harness never stopped them are crashes."""
    crashed = [p.name for p in cluster.all_procs()
               if not p.alive() and p.pid not in injector.intended_exits]
    return {
        "crashed": len(crashed),
        "crashed_names": ",".join(crashed) or "-",
        "worker_processes": sum(1 for p in cluster.all_procs() if p.name.startswith("w")
                                and not p.name.startswith("web")),
        "web_processes": sum(1 for p in cluster.all_procs() if p.name.startswith("web")),
        "worker_redis_errors_logged": cluster.log_count(r"redis error \("),
        "tracebacks_logged": cluster.log_count(r"Traceback \(most recent call last\)"),
    }
