"""Webhooks: each calendar's signing secret, which URLs may receive events, safe logging.

A calendar's secret lives in its own key beside the calendar (``sl:{cal:ID}:webhook-secret``),
never inside the calendar JSON that ``GET /api/v1/calendars`` serves, and never derives
from ``SECRET_KEY``: a receiver holds only the key of its own calendar's events.

    calendar put ID --webhook-url URL     a new or changed URL gets a new secret, shown once
    calendar put ID --rotate-webhook-secret   a new secret, shown once; the old one stops now
    calendar put ID --webhook-url ''      the URL and its secret are removed

Who may be called: ``https`` only; ``http`` and loopback receivers only when
``SLOTLOCK_ENV=development``. Addresses are checked where the connection is made (after
DNS resolution, see ``workers/delivery.py``); this module's ``check_url`` is the early,
friendlier check at ``calendar put``.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import redis

from . import legacy_keys
from .days.keys import legacy_calendar_keys, webhook_secret_key
from .model import Calendar

SECRET_PREFIX = "whsec_"


class WebhookRefused(ValueError):
    """A webhook URL or address that slotlock will not call."""


# -- secrets ----------------------------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_of(client: redis.Redis, calendar_id: str) -> str | None:
    return client.get(webhook_secret_key(calendar_id))


def rotate_secret(client: redis.Redis, calendar_id: str) -> str:
    """Store a fresh secret for the calendar and return it (the only time it is shown)."""
    secret = new_secret()
    client.set(webhook_secret_key(calendar_id), secret)
    _mirror_secret(client, calendar_id)
    return secret


def _mirror_secret(client: redis.Redis, calendar_id: str) -> None:
    key = webhook_secret_key(calendar_id)
    legacy_keys.mirror(client, {key: legacy_calendar_keys(calendar_id)[key]})


def after_put(client: redis.Redis, before: Calendar | None, after: Calendar, *,
              rotate: bool = False) -> str | None:
    """Keep the calendar's secret in step with its webhook URL; returns a new secret or None.

    A URL set for the first time or changed gets a new secret (a new receiver never learns
    the old one); ``rotate`` makes a new one for the same URL; no URL, no secret.
    """
    if not after.webhook_url:
        client.delete(webhook_secret_key(after.id))
        _mirror_secret(client, after.id)
        return None
    changed = before is None or before.webhook_url != after.webhook_url
    if rotate or changed or secret_of(client, after.id) is None:
        return rotate_secret(client, after.id)
    return None


def check_put(before: Calendar | None, after: Calendar, rotate: bool, env: str | None) -> None:
    """Before ``calendar put`` stores anything: a new URL must be callable; rotate needs a URL."""
    if after.webhook_url and after.webhook_url != (before.webhook_url if before else None):
        check_url(after.webhook_url, Policy.for_env(env))
    if rotate and not after.webhook_url:
        raise WebhookRefused(f"calendar {after.id} has no webhook URL: no secret to rotate")


# -- which URLs and addresses -----------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """What a delivery may reach. Production: https to public addresses only."""

    allow_http: bool = False
    allow_loopback: bool = False

    @classmethod
    def for_env(cls, env: str | None) -> Policy:
        development = env == "development"
        return cls(allow_http=development, allow_loopback=development)


def address_refusal(address: str, policy: Policy) -> str | None:
    """Why ``address`` (an IP literal) may not be called, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            reason = address_refusal(str(embedded), policy)
            return f"{reason} (inside {ip})" if reason else None
    if ip.is_loopback:
        return None if policy.allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a unicast address"
    if ip.is_private or not ip.is_global:
        return "a private or non-public address"
    return None


def check_url(url: str, policy: Policy) -> str:
    """The URL if slotlock may call it; WebhookRefused with the reason otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(f"webhook URL is malformed: {exc}") from None
    if parts.scheme not in ("https", "http"):
        raise WebhookRefused("webhook URL must start with https://")
    if parts.scheme == "http" and not policy.allow_http:
        raise WebhookRefused("webhook URL must use https (http only with SLOTLOCK_ENV=development)")
    if not parts.hostname:
        raise WebhookRefused("webhook URL has no host")
    if port == 0:
        raise WebhookRefused("webhook URL has port 0")
    try:
        reason = address_refusal(parts.hostname, policy)
    except ValueError:
        reason = None  # a name: checked after resolution, at every connection
        if parts.hostname.rstrip(".").lower() in ("localhost", "localhost.localdomain") \
                and not policy.allow_loopback:
            reason = "a loopback address"
    if reason:
        raise WebhookRefused(f"webhook host {parts.hostname} is {reason}")
    return url


def redact(url: str | None) -> str:
    """A URL fit for logs: scheme, host and port only (paths and queries often hold tokens)."""
    if not url:
        return "-"
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<malformed url>"
    if ":" in host:
        host = f"[{host}]"
    tail = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{host}{port}{tail}"
