"""Helpers for the background-job tests (issue 6): a day with history, a webhook receiver."""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime
from typing import Self

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.days.index import WorkIndex
from slotlock.model import Calendar, Rules
from slotlock.workers.lease_worker import LeaseWorker


def at(day: str, hhmm: str) -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmm}:00").replace(tzinfo=UTC)


def put_calendar(redis, calendar_id: str = "main", **changes) -> Calendar:
    catalog = Catalog(redis)
    current = catalog.find(calendar_id) or Calendar(calendar_id, calendar_id.title())
    stored, _ = catalog.put(current.with_changes(**changes))
    return stored


def drain(settings, redis) -> LeaseWorker:
    """Apply every queued command with a lease worker in this process, then let go."""
    worker = LeaseWorker(settings, client=redis, blocking=redis)
    for _ in range(50):
        parts = [p for p, _ in WorkIndex(redis).active()]
        for part in parts:
            if part not in worker.owned:
                worker.try_acquire(part)
        worked = sum(worker.process_batch(p, o) for p, o in list(worker.owned.items()))
        if not worked:
            break
    worker.shutdown()
    return worker


def history(settings, redis, day: str = "2024-01-10", calendar_id: str = "main") -> dict:
    """A day with accepted, rejected and cancelled bookings, applied by a real lease worker.

    The day lies in the past (retention works on old days), so its bookings are made by
    admins, who may book the past."""
    if Catalog(redis).find(calendar_id) is None:
        put_calendar(redis, calendar_id)
    client = Client(settings, client=redis, blocking=redis)
    made = {}
    made["a"] = client.book("ann", calendar_id, at(day, "09:00"), at(day, "10:00"), "a",
                            wait_ms=0, admin=True).command_id
    made["b"] = client.book("bob", calendar_id, at(day, "09:30"), at(day, "10:30"), "b overlaps",
                            wait_ms=0, admin=True).command_id
    made["c"] = client.book("bob", calendar_id, at(day, "11:00"), at(day, "12:00"), "c",
                            wait_ms=0, idempotency_key="k-c", admin=True).command_id
    drain(settings, redis)
    # a rules change between batches: the earlier bookings stay valid under their revision
    put_calendar(redis, calendar_id, rules=Rules(granularity_minutes=60))
    made["d"] = client.book("cy", calendar_id, at(day, "14:00"), at(day, "15:00"), "d",
                            wait_ms=0, admin=True).command_id
    booking_c = json.loads(redis.hget(f"sl:{{{calendar_id}:{day}}}:done", made["c"]))
    made["cancel_c"] = client.cancel("bob", calendar_id, booking_c["booking"]["id"],
                                     wait_ms=0).command_id
    drain(settings, redis)
    return made


class Receiver:
    """A webhook receiver on 127.0.0.1; ``statuses`` are answered in turn, then 200."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])
        self.requests: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict]:
        with self.lock:
            return [json.loads(body) for _, body in self.requests]

    def unique_events(self) -> dict[str, dict]:
        """Deduplicated by event id, as a receiver should."""
        return {e["event_id"]: e for e in self.events()}

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
