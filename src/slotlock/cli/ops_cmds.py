"""Operations: the Procfile processes (``worker``, ``migrate``) and ``status``.

``jobs`` and ``audit`` live in ``jobs_cmds.py``.
"""

from __future__ import annotations

import json
import sys
import time

import click
import redis

from .. import legacy_keys, logs
from ..catalog import Catalog
from ..config import redacted_url
from ..days.index import WorkIndex
from ..days.keys import (DAYS, WORKERS, WORKERS_SEEN, WORKERS_SEEN_BEFORE, DayKeys,
                         worker_alive_key)
from ..days.store import DayStore
from ..errors import UnsuitableRedis
from .core import main, redis_or_exit, settings_or_exit


@main.command()
def worker() -> None:
    """Run a lease worker: applies the commands of the days it holds, serially per day."""
    from ..workers.lease_worker import LeaseWorker

    logs.setup("worker")
    settings = settings_or_exit()
    try:  # a plain client connects on first use; the cluster client as it is made
        worker_ = LeaseWorker(settings)
    except UnsuitableRedis as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"Redis at {redacted_url(settings.redis_url)} is "
                                   f"unreachable: {exc}") from exc
    sys.exit(worker_.work())


@main.command()
@click.option("--drop-old-keys", is_flag=True,
              help="Delete the key names of the release before 2026-12 (once none of its "
                   "processes runs: going back to it is not possible after this).")
def migrate(drop_old_keys: bool) -> None:
    """Idempotent set-up: the default calendar 'main'; index and zone locks of older data;
    keys of calendars and users copied from the names of the release before."""
    settings = settings_or_exit()
    client = redis_or_exit(settings, migrated=False)
    # first: the default calendar must be looked for under its new name after the copy
    copied, deleted = legacy_keys.migrate(client, drop=drop_old_keys)
    if copied:
        click.echo(f"keys of calendars and users: {copied} copied to their new names")
    if deleted:
        click.echo(f"keys of calendars and users under their old names: {deleted} deleted")
    elif legacy_keys.kept(client):
        click.echo("the old key names of calendars and users are kept, and changes are made "
                   "under both, for processes of the release before that may still run; "
                   "once none runs: slotlock migrate --drop-old-keys")
    if client.delete(WORKERS_SEEN_BEFORE):  # workers_seen.lua fills the new one from sl:workers
        click.echo(f"{WORKERS_SEEN_BEFORE}: deleted (now {WORKERS_SEEN})")
    catalog = Catalog(client)
    calendar, created = catalog.ensure_default(settings.default_timezone)
    click.echo(f"calendar {calendar.id}: {'created' if created else 'present'} "
               f"(time zone {calendar.timezone}, revision {calendar.revision})")
    added = WorkIndex(client).backfill_days()
    if added:
        click.echo(f"index of days: {added} day(s) added")
    in_use = set(client.zrange(DAYS, 0, -1)) | {p for p, _ in WorkIndex(client).active()}
    for calendar_id in catalog.lock_zones_in_use(in_use):
        click.echo(f"calendar {calendar_id}: in use, time zone locked")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Leases, holders, backlog per day, workers."""
    settings = settings_or_exit()
    client = redis_or_exit(settings)
    store = DayStore(client)
    workers = []
    for worker_id, raw in sorted(client.hgetall(WORKERS).items()):
        info = json.loads(raw)
        info["alive"] = bool(client.exists(worker_alive_key(worker_id)))
        workers.append(info)
    days = []
    for part, _score in WorkIndex(client).active(1000)[:1000]:
        keys = DayKeys(part)
        state = store.read_state(keys)
        lease = client.get(keys.lease)
        days.append({
            "day": part,
            "backlog": state.pending,
            "version": state.version,
            "lease": lease,
            "lease_ms_left": client.pttl(keys.lease) if lease else None,
        })
    # -- findings of the audit (issue 6) --
    from ..workers.audit import list_findings

    findings = list_findings(client)
    # -- end findings --
    old_keys_kept = legacy_keys.kept(client)
    if as_json:
        click.echo(json.dumps({"workers": workers, "days": days, "findings": findings,
                               "old_keys_kept": old_keys_kept}, indent=2))
        return
    now = time.time()
    click.echo(f"workers ({sum(w['alive'] for w in workers)} alive):")
    for w in workers:
        if not w["alive"] and now - w.get("seen_at", 0) > 3600:
            continue
        stats = " ".join(f"{k}={v}" for k, v in sorted(w.get("stats", {}).items()))
        click.echo(f"  {w['id']:<32} {'alive' if w['alive'] else 'gone ':<6} "
                   f"days={len(w.get('days', {}))} {stats}")
    click.echo(f"days with work ({len(days)}):")
    for d in days:
        holder = d["lease"] or "-"
        click.echo(f"  {d['day']:<32} backlog={d['backlog']:<6} version={d['version']:<6} "
                   f"lease={holder}")
    # -- findings of the audit (issue 6) --
    click.echo(f"audit findings ({len(findings)} day(s)):")
    for item in findings:
        click.echo(f"  {item['day']:<32} audited {item['audited_at']}")
        for f in item["findings"]:
            click.echo(f"    [{f['code']}] {f['message']}")
    # -- end findings --
    if old_keys_kept:
        click.echo("old key names of calendars and users kept for processes of the release "
                   "before 2026-12 (once none runs: slotlock migrate --drop-old-keys)")
