"""The ``slotlock`` command."""

from __future__ import annotations

import json
import sys
import time
from datetime import time as dtime

import click
import redis
from pydantic import ValidationError

from .. import logs, webhooks
from ..catalog import Catalog
from ..config import Settings
from ..days.index import WorkIndex
from ..days.keys import ACTIVE, DAYS, WORKERS, DayKeys, worker_alive_key
from ..days.store import DayStore
from ..errors import ZoneLocked
from ..model import Calendar, Rules
from ..redis_conn import connect


def settings_or_exit() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("bad configuration:\n" + "\n".join(lines)) from exc


def redis_or_exit(settings: Settings) -> redis.Redis:
    client = connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise click.ClickException(f"Redis at {settings.redis_url} is unreachable: {exc}") from exc
    return client


@click.group()
@click.version_option(package_name="slotlock")
def main() -> None:
    """slotlock: bookings that stay correct while processes crash, pause and redeploy."""


@main.command()
def worker() -> None:
    """Run a lease worker: applies the commands of the days it holds, serially per day."""
    from ..workers.lease_worker import LeaseWorker

    logs.setup("worker")
    settings = settings_or_exit()
    sys.exit(LeaseWorker(settings).work())


@main.command()
def migrate() -> None:
    """Idempotent set-up: make sure the default calendar 'main' exists."""
    settings = settings_or_exit()
    client = redis_or_exit(settings)
    catalog = Catalog(client)
    calendar, created = catalog.ensure_default(settings.default_timezone)
    click.echo(f"calendar {calendar.id}: {'created' if created else 'present'} "
               f"(time zone {calendar.timezone}, revision {calendar.revision})")
    added = WorkIndex(client).backfill_days()
    if added:
        click.echo(f"index of days: {added} day(s) added")
    in_use = {p for p in client.zrange(DAYS, 0, -1)} | {p for p in client.zrange(ACTIVE, 0, -1)}
    for calendar_id in catalog.lock_zones_in_use(in_use):
        click.echo(f"calendar {calendar_id}: in use, time zone locked")


@main.group()
def calendar() -> None:
    """Calendars and their rules."""


def _hhmm(value: str | None):
    if value is None:
        return None
    if value == "24:00":
        return "24:00"
    try:
        return dtime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a time of day like 08:00") from exc


@calendar.command("put")
@click.argument("calendar_id")
@click.option("--name", help="Display name (default: the id, or the current name).")
@click.option("--timezone", help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--granularity", type=int, help="Slot size in minutes (default 15).")
@click.option("--min-length", type=int, help="Shortest booking in minutes (default: one slot).")
@click.option("--max-length", type=int, help="Longest booking in minutes (0: no maximum).")
@click.option("--open-from", help="Opening time, local, HH:MM.")
@click.option("--open-until", help="Closing time, local, HH:MM (24:00: midnight).")
@click.option("--buffer", type=int, help="Minutes to keep free between bookings.")
@click.option("--quota", type=int, help="Bookings per owner per day (0: no limit).")
@click.option("--horizon-days", type=int,
              help="Bookings start at most this many days after today (default 365; 0: no limit).")
@click.option("--webhook-url", help="https URL that receives booking events ('' to remove); "
              "a new URL gets a new signing secret, printed once.")
@click.option("--rotate-webhook-secret", is_flag=True,
              help="Replace the webhook signing secret (printed once; the old one stops now).")
def calendar_put(calendar_id, name, timezone, granularity, min_length, max_length, open_from,
                 open_until, buffer, quota, horizon_days, webhook_url,
                 rotate_webhook_secret) -> None:
    """Create or change calendar CALENDAR_ID; options not given keep their current value."""
    settings = settings_or_exit()
    catalog = Catalog(redis_or_exit(settings))
    current = catalog.find(calendar_id)
    rules = (current.rules if current else Rules()).to_dict()
    changes = {
        "granularity_minutes": granularity,
        "min_length_minutes": min_length,
        "max_length_minutes": max_length,
        "open_from": _hhmm(open_from),
        "open_until": _hhmm(open_until),
        "buffer_minutes": buffer,
        "max_bookings_per_owner": quota,
        "horizon_days": horizon_days,
    }
    for key, value in changes.items():
        if value is not None:
            rules[key] = value
    for key in ("max_length_minutes", "max_bookings_per_owner", "min_length_minutes"):
        if rules.get(key) == 0:
            rules[key] = None
    try:
        new = Calendar(
            id=calendar_id,
            name=name or (current.name if current else calendar_id),
            timezone=timezone or (current.timezone if current else settings.default_timezone),
            rules=Rules.from_dict(rules),
            webhook_url=(webhook_url or None) if webhook_url is not None else
            (current.webhook_url if current else None),
        )
        webhooks.check_put(current, new, rotate_webhook_secret, settings.env)
    except (ValueError, TypeError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        stored, changed = catalog.put(new)
        secret = webhooks.after_put(catalog.client, current, stored, rotate=rotate_webhook_secret)
    except ZoneLocked as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "unchanged" if not changed else ("created" if current is None else "changed")
    click.echo(f"calendar {stored.id} {verb} (revision {stored.revision})")
    click.echo(json.dumps({**stored.to_dict(), "webhook_url": webhooks.redact(stored.webhook_url)
                           if stored.webhook_url else None}, indent=2))
    if secret:
        click.echo(f"webhook secret (shown only now; verify X-Slotlock-Signature with it):\n{secret}")


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
    for part, _score in client.zrange(ACTIVE, 0, 999, withscores=True):
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
    if as_json:
        click.echo(json.dumps({"workers": workers, "days": days, "findings": findings},
                              indent=2))
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


if __name__ == "__main__":
    main()
