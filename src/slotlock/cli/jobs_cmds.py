"""``slotlock jobs`` and ``slotlock audit``: the background work of issue 6."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import date

import click
import redis

from .. import logs
from ..errors import UnsuitableRedis
from ..legacy_keys import check_migrated
from ..config import redacted_url
from ..redis_conn import check_eviction_policy, connect, is_cluster, use_cluster
from .core import main, redis_or_exit, settings_or_exit


@main.command()
@click.option("--burst", is_flag=True, help="Run the jobs queued now, then exit (for tests, cron).")
def jobs(burst: bool) -> None:
    """Run the rq worker (with its scheduler) for audit, notifications and retention."""
    from ..workers import jobs as jobs_mod

    logs.setup("jobs")
    settings = settings_or_exit()
    if use_cluster(settings) and not settings.jobs_redis_url:
        # rq's scripts and transactions span its keys' slots
        raise click.ClickException(
            "SLOTLOCK_REDIS_CLUSTER=on, and rq cannot run on a Redis Cluster: set "
            "SLOTLOCK_JOBS_REDIS_URL to a standalone Redis (noeviction) for the jobs' "
            "queues (docs/cluster.md)")
    client = redis_or_exit(settings)
    try:
        check_eviction_policy(client, allow=settings.allow_eviction)
        check_migrated(client)  # else a webhook's calendar looks gone, and its events dropped
        if settings.jobs_redis_url:
            _check_jobs_redis(settings)
    except UnsuitableRedis as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(jobs_mod.run(settings, burst=burst))


def _check_jobs_redis(settings) -> None:
    """``SLOTLOCK_JOBS_REDIS_URL`` answers, is no Redis Cluster node and evicts nothing (a
    queued job, an rq registry or the scheduler's lock must not go)."""
    rq_client = connect(settings.jobs_redis_url, timeout_ms=settings.redis_timeout_ms)
    where = redacted_url(settings.jobs_redis_url)
    try:
        if is_cluster(rq_client):
            raise click.ClickException(f"SLOTLOCK_JOBS_REDIS_URL ({where}) is a Redis Cluster "
                                       "node: rq needs a standalone Redis")
        check_eviction_policy(rq_client, allow=settings.allow_eviction)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"SLOTLOCK_JOBS_REDIS_URL ({where}) is unreachable: "
                                   f"{exc}") from exc
    finally:
        rq_client.close()


def _date(ctx, param, value):
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date like 2025-01-31") from exc


@main.command()
@click.option("--calendar", "calendar_id", help="Only this calendar.")
@click.option("--date", "day", callback=_date, help="Only this date (YYYY-MM-DD).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def audit(calendar_id: str | None, day: date | None, as_json: bool) -> None:
    """Audit days now: replay their history and check every invariant. Exit 1 on findings."""
    from ..workers.audit import audit_and_record, audit_calendars, select_days

    settings = settings_or_exit()
    client = redis_or_exit(settings)
    parts = select_days(client, calendar_id, day)
    reports = [audit_and_record(client, part) for part in parts]
    # guarantees hold for instants: each audited calendar's bookings across all its days
    across = audit_calendars(client, parts)
    bad = [r for r in reports if not r.ok]
    if as_json:
        click.echo(json.dumps({"audited": len(reports), "days": [r.to_dict() for r in reports],
                               "calendars": {c: [asdict(f) for f in fs]
                                             for c, fs in across.items()}}, indent=2))
    else:
        for r in reports:
            click.echo(f"{r.day}: {'ok' if r.ok else f'{len(r.findings)} finding(s)'} "
                       f"(cursor {r.cursor}, {r.replayed} commands replayed"
                       f"{f' from snapshot {r.base}' if r.base != '0-0' else ''})")
            for f in r.findings:
                click.echo(f"  [{f.code}] {f.message}")
                if f.details:
                    click.echo("    " + json.dumps(f.details, sort_keys=True))
        for cal, findings in across.items():
            click.echo(f"calendar {cal}, across days: {len(findings)} finding(s)")
            for f in findings:
                click.echo(f"  [{f.code}] {f.message}")
        click.echo(f"audited {len(reports)} day(s), {len(bad)} with findings"
                   + (f", {len(across)} calendar(s) with overlaps across days" if across else ""))
    sys.exit(1 if bad or across else 0)
