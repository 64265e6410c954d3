"""Notifications: publish each day's outbox to its calendar's webhook, at least once.

commit.lua appends the events of a batch to ``sl:{P}:outbox`` atomically with the
state, so an accepted booking and its event exist together or not at all. Publishing
happens later, here:

    lease worker   commit(state + outbox) ── ZINCRBY sl:outbox:days ─ ✕ (crash: hint lost)
    jobs ticker        sees the day in sl:outbox:days ─────────┐  or the periodic SCAN of
    publish job        lock day ── POST event ── mark delivered ── ack (trim head) ── unlock
                                                                     outboxes finds it

An event leaves the outbox only after its webhook answered 2xx (or after it was found
marked delivered), so a crash anywhere re-delivers rather than loses it. Our side of
the dedup is ``sl:notify:delivered:<event id>`` (with a TTL), checked before each POST;
receivers dedup by the ``X-Slotlock-Event-Id`` header (= ``event_id`` in the body).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from ..catalog import Catalog
from ..config import Settings
from ..days.keys import (
    DAYS,
    OUTBOX_DAYS,
    DayKeys,
    delivered_key,
    publish_lock_key,
    split_partition,
)
from ..days.scripts import Scripts
from ..webhooks import Policy, WebhookRefused, redact, secret_of
from . import delivery

log = logging.getLogger("slotlock.notify")

SIGNATURE_HEADER = "X-Slotlock-Signature"
EVENT_ID_HEADER = "X-Slotlock-Event-Id"
READ_BATCH = 50
MAX_EVENTS_PER_RUN = 1000


class DeliveryFailed(Exception):
    """A webhook did not take an event (refused URL, network error, non-2xx, redirect,
    deadline passed, no secret); the job is retried and the event stays in the outbox."""

    def __init__(self, event_id: str, url: str | None, reason: str):
        super().__init__(f"event {event_id} to {redact(url)}: {reason}")
        self.event_id = event_id
        self.url = redact(url)
        self.reason = reason


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: recompute the HMAC over the raw body, refuse stale timestamps."""
    try:
        fields = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


Poster = Callable[[str, bytes, dict[str, str], float], None]


def http_poster(policy: Policy) -> Poster:
    """The real POST (``workers/delivery.py``): https, public addresses, no redirects."""

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
        try:
            delivery.post(url, body, headers, timeout, policy)
        except (delivery.PostFailed, WebhookRefused) as exc:
            raise DeliveryFailed(headers[EVENT_ID_HEADER], url, str(exc)) from None

    return post


@dataclass
class PublishResult:
    day: str
    delivered: int = 0
    skipped: int = 0  # found already delivered (a crash after the POST, before the ack)
    dropped: int = 0  # the calendar has no webhook any more
    locked: bool = False  # another publisher holds the day: nothing done


class Publisher:
    def __init__(self, client: redis.Redis, settings: Settings, post: Poster | None = None):
        self.client = client
        self.settings = settings
        self.post = post or http_poster(Policy.for_env(settings.env))
        self.scripts = Scripts(client)
        self.catalog = Catalog(client)

    @property
    def lock_ms(self) -> int:
        return int(self.settings.webhook_timeout_s * 1000) * 2 + 10_000

    def publish_day(self, part: str) -> PublishResult:
        """Deliver the day's outbox in order; raise DeliveryFailed at the first failure."""
        result = PublishResult(part)
        lock = publish_lock_key(part)
        token = secrets.token_hex(8)
        if not self.client.set(lock, token, nx=True, px=self.lock_ms):
            result.locked = True
            return result
        try:
            self._drain(part, lock, token, result)
        finally:
            self.scripts.lease_release(keys=[lock], args=[token])  # compare-and-delete
        return result

    def _drain(self, part: str, lock: str, token: str, result: PublishResult) -> None:
        keys = DayKeys(part)
        calendar_id, _ = split_partition(part)
        handled = 0
        while handled < MAX_EVENTS_PER_RUN:
            score = self.client.zscore(OUTBOX_DAYS, part)  # read before the emptiness check
            entries = self.client.lrange(keys.outbox, 0, READ_BATCH - 1)
            if not entries:
                if score is not None:
                    self.scripts.index_remove(keys=[OUTBOX_DAYS], args=[part, repr(score)])
                return
            calendar = self.catalog.find(calendar_id)
            url = calendar.webhook_url if calendar else None
            secret = secret_of(self.client, calendar_id) if url else None
            done: list[str] = []
            try:
                for raw in entries:
                    self._deliver(raw, url, secret, result)
                    done.append(raw)
                    self.scripts.lease_renew(keys=[lock], args=[token, self.lock_ms])
            finally:
                if done:
                    self.scripts.outbox_ack(keys=[keys.outbox], args=done)
            handled += len(entries)

    def _deliver(self, raw: str, url: str | None, secret: str | None,
                 result: PublishResult) -> None:
        event = json.loads(raw)
        event_id = event["event_id"]
        marker = delivered_key(event_id)
        if self.client.exists(marker):
            result.skipped += 1
            return
        if not url:
            result.dropped += 1
            log.info("event %s dropped: calendar %s has no webhook", event_id,
                     event.get("calendar"))
            return
        if not secret:
            raise DeliveryFailed(event_id, url, f"calendar {event.get('calendar')} has no webhook "
                                 "secret; make one with `slotlock calendar put "
                                 f"{event.get('calendar')} --rotate-webhook-secret`")
        body = raw.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "slotlock-webhook/1",
            EVENT_ID_HEADER: event_id,
            SIGNATURE_HEADER: sign(secret, body, int(time.time())),
        }
        self.post(url, body, headers, self.settings.webhook_timeout_s)
        self.client.set(marker, "1", ex=self.settings.notify_dedup_ttl_s)
        result.delivered += 1
        log.info("event %s delivered to %s", event_id, redact(url))


# -- finding days with events -----------------------------------------------------------------

def days_with_events(client: redis.Redis) -> list[tuple[str, float]]:
    return client.zrange(OUTBOX_DAYS, 0, 9_999, withscores=True)


def sweep_outboxes(client: redis.Redis, chunk: int = 1000) -> int:
    """Index every non-empty outbox: the safety net for a hint lost in a crash.

    Walks ``sl:days`` (written by submitters before a day's first command, so it holds
    every day that can have events) with one pipelined ``LLEN`` per day, ``chunk`` days a
    round trip: no keyspace SCAN.
    """
    found = 0
    start = 0
    while True:
        parts = client.zrange(DAYS, start, start + chunk - 1)
        if not parts:
            return found
        pipe = client.pipeline(transaction=False)
        for part in parts:
            pipe.llen(DayKeys(part).outbox)
        waiting = [p for p, n in zip(parts, pipe.execute()) if int(n)]
        if waiting:
            pipe = client.pipeline(transaction=False)
            for part in waiting:
                pipe.zincrby(OUTBOX_DAYS, 1, part)
            pipe.execute()
            found += len(waiting)
        start += chunk


def outbox_head(client: redis.Redis, part: str) -> str | None:
    raw = client.lindex(DayKeys(part).outbox, 0)
    if raw is None:
        return None
    try:
        return json.loads(raw)["event_id"]
    except (ValueError, KeyError, TypeError):
        return hashlib.sha1(raw.encode()).hexdigest()
