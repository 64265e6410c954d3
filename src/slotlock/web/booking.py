"""One booking request, from its raw body to its answer.

The same functions serve the Flask view (``api.book``) and the fast lane
(``fastlane.py``), so the two answer alike by construction: an ``Answer`` is a status,
a JSON-ready body and the headers of its own (security headers are added by whoever
writes the response). Errors are raised (``ApiError``, pydantic's ``ValidationError``,
the core's exceptions) and mapped in one place, ``errors.as_api_error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from ..client import Client, Result
from ..users import User
from . import schemas
from .errors import ApiError, rejection

M = TypeVar("M", bound=BaseModel)
IDEMPOTENCY_KEY_MAX = 200


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc


def whole_body(raw: bytes, length: int | None) -> bytes:
    """``raw`` if it holds the whole body its ``Content-Length`` announced, else 400 (a
    client that stopped sending: neither path books on a body cut short)."""
    if length is not None and len(raw) < length:
        raise ApiError(400, "bad_request", f"the body ended after {len(raw)} of the "
                       f"{length} bytes its Content-Length announced")
    return raw


def checked_idempotency_key(key: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value, or None without one; 422 if it is not 1-200
    printable ASCII characters."""
    if key is None:
        return None
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX or not (key.isascii() and key.isprintable()):
        raise ApiError(422, "invalid", "Idempotency-Key must be 1-200 printable ASCII characters",
                       {"field": "Idempotency-Key"})
    return key


def out(model: type[M], data: dict[str, Any], *, exclude_none: bool = False) -> dict[str, Any]:
    """``data`` as the response schema ``model`` writes it (what the OpenAPI document says)."""
    return model.model_validate(data).model_dump(mode="json", exclude_none=exclude_none)


def pending(command_id: str, root: str) -> Answer:
    """202 with the command's status URL; ``root`` is the app's mount point (SCRIPT_NAME)."""
    url = f"{root}/api/v1/commands/{command_id}"
    return Answer(202, out(schemas.Pending, {"command_id": command_id, "status_url": url}),
                  {"Location": url})


def decided(result: Result) -> dict[str, Any] | None:
    """The accepted outcome, None while pending; a rejection becomes its ApiError."""
    if result.outcome is None:
        return None
    if result.outcome["status"] == "rejected":
        raise rejection(result.outcome["error"])
    return result.outcome


def book(client: Client, user: User, calendar_id: str, raw: bytes, key: str | None,
         root: str) -> Answer:
    """``POST /api/v1/calendars/{calendar_id}/bookings`` with body ``raw`` by ``user``;
    ``key`` is the ``Idempotency-Key`` header as sent (checked after the body)."""
    body = schemas.BookingRequest.model_validate(parse_json(raw))
    result = client.book(user.name, calendar_id, body.start, body.end, body.title,
                         admin=user.admin, idempotency_key=checked_idempotency_key(key))
    outcome = decided(result)
    if outcome is None:
        return pending(result.command_id, root)
    booking = outcome["booking"]
    location = f"{root}/api/v1/calendars/{booking['calendar']}/bookings/{booking['id']}"
    return Answer(201, out(schemas.Booking, booking), {"Location": location})
