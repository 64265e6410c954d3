"""The operation layer: one booking or cancel through the public API, as an attempt.

An attempt ends ``ok`` (201/200), ``fail`` (a decided rejection: 409/422/404/403),
``pending`` (202: queued, decided later) or ``unknown`` (timeout, reset, 5xx: it may
or may not have been queued). The driver in ``clients`` turns attempts into one
operation with retries under the same Idempotency-Key. ``HttpOps`` talks to the web
processes; ``ClientOps`` calls ``slotlock.client.Client`` in-process (same contract,
handy without a web tier). Switching is one class.
"""

from __future__ import annotations

import http.client
import json
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

DEFINITE_FAIL = {403, 404, 409, 422}


@dataclass
class Attempt:
    result: str  # ok | fail | pending | unknown
    status: int | None = None
    booking_id: str | None = None
    command_id: str | None = None
    code: str | None = None
    sent: bool = True  # False: certainly never reached the server (connection refused)


class HttpOps:
    def __init__(self, addresses: list[tuple[str, int]], token: str, timeout_s: float,
                 rng: random.Random):
        self.addresses = addresses
        self.token = token
        self.timeout_s = timeout_s
        self.rng = rng
        self.conn: http.client.HTTPConnection | None = None
        self.address = rng.choice(addresses)

    def _switch(self) -> None:
        self.close()
        others = [a for a in self.addresses if a != self.address] or self.addresses
        self.address = self.rng.choice(others)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def _call(self, method: str, path: str, body: dict | None = None,
              key: str | None = None) -> tuple[int, dict[str, Any]] | Attempt:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        if self.conn is None:
            self.conn = http.client.HTTPConnection(*self.address, timeout=self.timeout_s)
        try:
            if self.conn.sock is None:
                self.conn.connect()
        except OSError:
            self._switch()
            return Attempt("unknown", sent=False)
        try:
            self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                              headers=headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._switch()  # reset, timeout or a web process going away mid-request
            return Attempt("unknown")
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return response.status, data

    @staticmethod
    def _attempt(reply, ok_status: int) -> Attempt:
        if isinstance(reply, Attempt):
            return reply
        status, data = reply
        if status == ok_status:
            booking = data.get("booking", data)
            return Attempt("ok", status, booking_id=booking.get("id"))
        if status == 202:
            return Attempt("pending", status, command_id=data.get("command_id"))
        if status in DEFINITE_FAIL:
            return Attempt("fail", status, code=data.get("error", {}).get("code"))
        return Attempt("unknown", status, code=data.get("error", {}).get("code"))

    def book(self, calendar: str, start: datetime, end: datetime, title: str,
             key: str) -> Attempt:
        body = {"start": start.isoformat(), "end": end.isoformat(), "title": title}
        return self._attempt(self._call("POST", f"/api/v1/calendars/{calendar}/bookings",
                                        body, key), 201)

    def cancel(self, calendar: str, booking_id: str, key: str) -> Attempt:
        return self._attempt(self._call("DELETE",
                                        f"/api/v1/calendars/{calendar}/bookings/{booking_id}",
                                        None, key), 200)

    def status(self, command_id: str) -> Attempt:
        reply = self._call("GET", f"/api/v1/commands/{command_id}")
        if isinstance(reply, Attempt):
            return reply
        status, data = reply
        if status != 200:
            return Attempt("unknown", status)
        if data.get("status") == "accepted":
            return Attempt("ok", status, booking_id=(data.get("booking") or {}).get("id"),
                           command_id=command_id)
        if data.get("status") == "rejected":
            return Attempt("fail", status, command_id=command_id,
                           code=(data.get("error") or {}).get("code"))
        return Attempt("pending", status, command_id=command_id)


class ClientOps:
    """The same attempts through ``slotlock.client.Client`` (no web tier in between)."""

    def __init__(self, client, actor: str):
        self.client = client
        self.actor = actor

    def close(self) -> None:
        pass

    @staticmethod
    def _from_result(result, ok_event: str) -> Attempt:
        if result.outcome is None:
            return Attempt("pending", command_id=result.command_id)
        outcome = result.outcome
        if outcome["status"] == "accepted":
            return Attempt("ok", booking_id=outcome["booking"]["id"],
                           command_id=result.command_id)
        return Attempt("fail", command_id=result.command_id, code=outcome["error"]["code"])

    def _guard(self, fn) -> Attempt:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError):
            return Attempt("unknown")

    def book(self, calendar, start, end, title, key) -> Attempt:
        return self._guard(lambda: self._from_result(
            self.client.book(self.actor, calendar, start, end, title, idempotency_key=key),
            "booked"))

    def cancel(self, calendar, booking_id, key) -> Attempt:
        return self._guard(lambda: self._from_result(
            self.client.cancel(self.actor, calendar, booking_id, idempotency_key=key),
            "cancelled"))

    def status(self, command_id) -> Attempt:
        def read():
            data = self.client.status(command_id)
            if not data or data.get("status") not in ("accepted", "rejected"):
                return Attempt("pending", command_id=command_id)
            if data["status"] == "accepted":
                return Attempt("ok", booking_id=data["booking"]["id"], command_id=command_id)
            return Attempt("fail", command_id=command_id, code=data["error"]["code"])

        return self._guard(read)
