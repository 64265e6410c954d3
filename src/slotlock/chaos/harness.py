"""One fault-harness run: start the cluster, drive clients, inject faults, heal, check.

    run(RunConfig(duration_s=60, seed=7, fault_rate=0.3)) -> RunReport

The workload (all of it from the seed): calendars in three zones with dates around DST
changes and days in the past (``clients.plan_calendars``), users booking, cancelling,
retrying and reusing keys, an admin cancelling other users' bookings and booking in the
past (``clients``), an operator changing rules and trying zone changes (``operator``),
``slotlock jobs`` running retention and the audit on short intervals, and a webhook
receiver on loopback (``webhook``).

The run directory keeps every process's log, ``history.jsonl`` (every operation) and
``report.json`` (the figures and the checker's verdict).
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..catalog import Catalog
from ..days.keys import DayKeys, idempotency_key, partition
from ..model import Calendar, Rules
from ..users import Users
from ..webhooks import rotate_secret
from ..workers.audit import list_findings
from .checker import AUDIT_KINDS, Checker, Sampler, check_webhook, wait_settled
from .checker import KINDS as ANOMALY_KINDS
from .clients import ClientThread, Mix, Shared, plan_calendars
from .cluster import Cluster, ClusterConfig
from .faults import KINDS, Injector, schedule, worker_fence_refusals
from .history import History
from .operator import Operator
from .ops import HttpOps
from .webhook import WebhookReceiver

FAILOVER_LABELS = {
    "sigkill": "SIGKILL -> successor's first commit",
    "sigkill_queued": "SIGKILL -> every command queued at the kill decided",
    "sigterm": "SIGTERM -> successor's first commit (every day held)",
    "sigterm_queued": "SIGTERM -> every command queued at the signal decided",
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
    clients: int = 8  # the first one is an admin
    days: int = 3  # per calendar, around its DST change (plus 2 past days for the admin)
    lease_ttl_ms: int = 1000
    kinds: dict[str, float] = field(default_factory=lambda: dict(KINDS))
    disable_fencing: bool = False  # test-only broken build (honoured under pytest only)
    disable_day_bounds: bool = False  # test-only broken build: no within_local_day rule
    appendfsync: str = "always"
    settle_timeout_s: float = 60.0
    webhook_idle_s: float = 15.0  # after settling: events missing once none came for this long
    think_s: float = 0.0
    mix: Mix = field(default_factory=Mix)
    operator: bool = True  # rule changes and zone change attempts during the run
    jobs: int = 1  # ``slotlock jobs`` processes (retention, audit, webhooks)


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
    workload: dict = field(default_factory=dict)

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
        lines.append("workload: " + "  ".join(f"{k}={v}" for k, v in self.workload.items()))
        lines.append(f"samples of committed state during the run: {self.samples}")
        lines.append("anomalies: " + "  ".join(f"{k}={v}" for k, v in self.anomalies.items())
                     + f"  (total {self.anomaly_count})")
        lines.extend(f"  e.g. {e}" for e in self.examples[:16])
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


JOBS_ENV = {
    "SLOTLOCK_RETENTION_DAYS": "1",  # the admin's past days are older than that
    "SLOTLOCK_RETENTION_INTERVAL_S": "4",
    "SLOTLOCK_AUDIT_INTERVAL_S": "4",
    "SLOTLOCK_OUTBOX_SWEEP_S": "5",
    "SLOTLOCK_NOTIFY_POLL_MS": "100",
    "SLOTLOCK_NOTIFY_RETRY_INTERVALS": "1,1,1,2,2,3,3,5,5,5",
    "SLOTLOCK_WEBHOOK_TIMEOUT_S": "2",
}


def setup_calendars(catalog: Catalog, plans, webhook_url: str) -> None:
    """The run's calendars: no booking window at first (the DST dates are years ahead; the
    operator narrows and widens it during the run), every event to the receiver."""
    for plan in plans:
        catalog.put(Calendar(plan.id, plan.id.title(), plan.timezone,
                             rules=Rules(horizon_days=0), webhook_url=webhook_url))
        rotate_secret(catalog.client, plan.id)  # what `calendar put --webhook-url` makes


def wait_webhook(receiver: WebhookReceiver, outcomes_by_day: dict, idle_s: float,
                 cap_s: float = 240.0) -> list:
    """Wait for every event to reach the receiver while deliveries keep coming: give up once
    none arrived for ``idle_s`` (or after ``cap_s``); what is missing then is lost."""
    started = last_progress = time.monotonic()
    seen = -1
    while True:
        events = receiver.events()
        found = check_webhook(events, outcomes_by_day)
        if not any(kind == "webhook_lost" for kind, _ in found):
            return found
        now = time.monotonic()
        if len(events) != seen:
            seen, last_progress = len(events), now
        if now - last_progress > idle_s or now - started > cap_s:
            return found
        time.sleep(0.5)


def run(config: RunConfig, log=print) -> RunReport:
    cluster = Cluster(ClusterConfig(config.run_dir, workers=config.workers, webs=config.webs,
                                    lease_ttl_ms=config.lease_ttl_ms,
                                    appendfsync=config.appendfsync,
                                    disable_fencing=config.disable_fencing,
                                    disable_day_bounds=config.disable_day_bounds,
                                    jobs=config.jobs, jobs_env=JOBS_ENV))
    plans = plan_calendars(datetime.now(UTC).date(), config.days)
    parts = [partition(plan.id, d) for plan in plans for d in plan.all_dates]
    history = History()
    stop_clients, stop_faults, stop_sampler = (threading.Event() for _ in range(3))
    clients: list[ClientThread] = []
    injector = sampler = operator = None
    receiver = WebhookReceiver(config.seed).start()
    try:
        log(f"starting redis, proxy, {config.webs} web, {config.workers} worker and "
            f"{config.jobs} jobs processes in {config.run_dir}")
        cluster.start()
        setup_calendars(Catalog(cluster.redis), plans, receiver.url)
        users = Users(cluster.redis)
        tokens = {}
        for i in range(config.clients):
            name = f"chaos{i}"
            users.add(name, admin=i == 0)
            tokens[name] = users.issue_token(name)
        t0 = time.monotonic()
        sampler = Sampler(cluster.redis, parts, stop_sampler)
        sampler.start()
        timeout_s = config.lease_ttl_ms / 1000 + 10
        shared = Shared()
        forgotten: dict[tuple[str, str], dict] = {}
        forget_lock = threading.Lock()

        def forget(user: str, key: str) -> None:
            """The key's global idempotency record expires (its TTL passed, as it were)."""
            with forget_lock:
                raw = cluster.redis.getdel(idempotency_key(user, key))
                if raw and (user, key) not in forgotten:
                    forgotten[(user, key)] = json.loads(raw)
        for i, (name, token) in enumerate(tokens.items()):
            ops = HttpOps(cluster.web_urls(), token, timeout_s=timeout_s,
                          rng=random.Random(config.seed * 1000 + i))
            clients.append(ClientThread(name, ops, plans, history, config.seed * 7919 + i, t0,
                                        stop_clients, think_s=config.think_s, admin=i == 0,
                                        mix=config.mix, shared=shared, forget=forget))
        for client in clients:
            client.start()
        if config.operator:
            operator = Operator(cluster.redis, cluster.redis_server.url, plans, history,
                                config.seed, t0, stop_clients)
            operator.start()
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
        if operator is not None:
            operator.join(60)
        # heal: every link back to normal, every worker running
        for link in cluster.proxy.links.values():
            link.normal()
        for proc in cluster.workers.values():
            proc.send(signal.SIGCONT)
        settled = wait_settled(cluster.redis, parts, config.settle_timeout_s)
        stop_sampler.set()
        sampler.join(10)
        survival = survival_of(cluster, injector)
        checker = Checker(cluster.redis, parts, forgotten)
        verdict = checker.check(history.ops, sampler)
        if not settled:
            checker.add("unsettled", "commands still queued after the settle timeout")
        if config.jobs:
            for kind, detail in wait_webhook(receiver, verdict["outcomes_by_day"],
                                             config.webhook_idle_s):
                checker.add(kind, detail)
            for item in list_findings(cluster.redis):  # what the jobs' audits recorded
                if item["day"] in parts:
                    for finding in item["findings"]:
                        checker.add(AUDIT_KINDS.get(finding["code"], "replay"),
                                    f"{item['day']} (slotlock jobs audit at "
                                    f"{item['audited_at']}): [{finding['code']}] "
                                    f"{finding['message']}")
        counts = Counter(kind for kind, _ in checker.anomalies)
        verdict["anomalies"] = {k: counts.get(k, 0) for k in ANOMALY_KINDS}
        by_kind: dict[str, list[str]] = {}
        for kind, detail in checker.anomalies:
            by_kind.setdefault(kind, []).append(f"{kind}: {detail}")
        verdict["examples"] = [e for found in by_kind.values() for e in found[:4]]
        verdict["anomalies"]["crash"] += survival["crashed"]
        history.write(config.run_dir / "history.jsonl")
        by_type = Counter(op.type or "unfinished" for op in history.ops)
        by_f = Counter(f"{op.f}:{op.type}" for op in history.ops)
        pipe = cluster.redis.pipeline(transaction=False)
        for part in parts:
            pipe.hget(DayKeys(part).snapshot, "cursor")
        retained = sum(1 for cursor in pipe.execute() if cursor)
        events = receiver.events()
        workload = {
            "calendars": ",".join(f"{p.id}({p.timezone})" for p in plans),
            "days": len(parts),
            "rules_revisions": operator.revisions if operator else 0,
            "zone_change_attempts": by_f.get("zone:ok", 0) + by_f.get("zone:fail", 0),
            "admin_cancels": sum(1 for op in history.ops if op.f == "cancel"
                                 and op.client == "chaos0" and not op.day),
            "retries_same_key": sum(1 for op in history.ops if op.f == "retry"),
            "key_reuses": sum(1 for op in history.ops if op.f == "reuse"),
            "global_key_records_dropped": len(forgotten),
            "days_retained": retained,
            "webhook_events": len(events),
            "webhook_distinct": len({e["event_id"] for e in events}),
            "webhook_refused": receiver.refused,
        }
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
                "sigkill_queued": percentiles(injector.failover["kill_queued"],
                                              config.lease_ttl_ms + 250),
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
            harness_errors=injector.errors + [e for c in clients for e in c.errors]
            + (operator.errors if operator else []),
            days=verdict["days"],
            run_dir=str(config.run_dir),
            workload=workload,
        )
        (config.run_dir / "faults.jsonl").write_text(
            "".join(json.dumps(asdict(f)) + "\n" for f in injector.faults))
        (config.run_dir / "webhook.jsonl").write_text(
            "".join(json.dumps(e) + "\n" for e in events))
        (config.run_dir / "report.json").write_text(json.dumps(asdict(report), indent=2,
                                                               default=str))
        return report
    finally:
        stop_faults.set()
        stop_clients.set()
        stop_sampler.set()
        cluster.stop()
        receiver.stop()


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
        # the jobs' logs hold a traceback for each webhook delivery the receiver refused
        "tracebacks_logged": cluster.log_count(r"Traceback \(most recent call last\)",
                                               [p for p in cluster.all_procs()
                                                if not p.name.startswith("jobs")]),
    }
