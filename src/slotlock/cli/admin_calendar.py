"""Administration: ``slotlock calendar put``."""

from __future__ import annotations

import json
from datetime import time as dtime

import click

from .. import webhooks
from ..catalog import Catalog
from ..errors import ZoneLocked
from ..model import Calendar, Rules
from .core import main, redis_or_exit, settings_or_exit


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
