"""The JSON API (``/api/v1``): parse the request into a command, submit it, map the outcome.

The views never touch Redis keys; they talk to ``slotlock.client.Client``.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any, TypeVar

import redis
from flask import Blueprint, current_app, jsonify, request, url_for
from pydantic import BaseModel

from ..client import Client, Result
from ..errors import InvalidRequest
from ..ids import parse_booking_id, parse_command_id
from ..workers.audit import list_findings
from . import schemas
from .auth import authenticate, client_address_key, current_user, token_user
from .errors import ApiError, rejection
from .openapi import document

bp = Blueprint("api", __name__, url_prefix="/api/v1")

M = TypeVar("M", bound=BaseModel)
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PUBLIC = {"api.openapi"}


@bp.before_request
def _authenticate() -> None:
    """Every API request is counted once: against its token once verified, else against its
    client address (``web/tokens.py``); then it must carry a valid token, unless public."""
    if token_user() is None:
        try:
            wait = current_app.extensions["slotlock"].tokens.count_anonymous(
                client_address_key())
        except (redis.ConnectionError, redis.TimeoutError):
            wait = 0  # as Flask-Limiter's swallow_errors: an outage is not a 429 (nor a 500)
        if wait:
            raise ApiError(429, "rate_limited", "too many requests without a valid token "
                           "from this address", headers={"Retry-After": str(wait)})
    if request.endpoint not in PUBLIC:
        authenticate()


def client() -> Client:
    return current_app.extensions["slotlock"].client


def reply(model: type[M], data: dict[str, Any], status: int = 200, headers=None, *,
          exclude_none: bool = False):
    body = model.model_validate(data).model_dump(mode="json", exclude_none=exclude_none)
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def parse_body(model: type[M]) -> M:
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
    return model.model_validate(data)


def idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 200 or not (key.isascii() and key.isprintable()):
        raise ApiError(422, "invalid", "Idempotency-Key must be 1-200 printable ASCII characters",
                       {"field": "Idempotency-Key"})
    return key


def path_date(value: str) -> date:
    try:
        if DATE.match(value):
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise ApiError(404, "not_found", f"{value!r} is not a date like 2030-05-04")


def path_booking_id(booking_id: str) -> str:
    try:
        parse_booking_id(booking_id)
    except InvalidRequest as exc:
        raise ApiError(404, "not_found", str(exc), {"booking_id": booking_id}) from exc
    return booking_id


def pending(command_id: str):
    url = url_for("api.command_status", command_id=command_id)
    return reply(schemas.Pending, {"command_id": command_id, "status_url": url}, 202,
                 {"Location": url})


def decided(result: Result) -> dict[str, Any] | None:
    """The accepted outcome, None while pending; a rejection becomes its ApiError."""
    if result.outcome is None:
        return None
    if result.outcome["status"] == "rejected":
        raise rejection(result.outcome["error"])
    return result.outcome


# -- calendars and days --------------------------------------------------------------------

@bp.get("/calendars")
def calendars():
    items = [{k: v for k, v in c.to_dict().items() if k != "webhook_url"}
             for c in client().catalog.all()]
    return reply(schemas.CalendarList, {"calendars": items})


@bp.get("/calendars/<calendar_id>/days/<day>")
def day_view(calendar_id: str, day: str):
    view = client().read_day(calendar_id, path_date(day))
    return reply(schemas.DayView, view.to_dict())


# -- bookings ------------------------------------------------------------------------------

@bp.post("/calendars/<calendar_id>/bookings")
def book(calendar_id: str):
    body = parse_body(schemas.BookingRequest)
    user = current_user()
    result = client().book(user.name, calendar_id, body.start, body.end, body.title,
                           admin=user.admin, idempotency_key=idempotency_key())
    outcome = decided(result)
    if outcome is None:
        return pending(result.command_id)
    booking = outcome["booking"]
    location = url_for("api.get_booking", calendar_id=booking["calendar"], booking_id=booking["id"])
    return reply(schemas.Booking, booking, 201, {"Location": location})


@bp.get("/calendars/<calendar_id>/bookings/<booking_id>")
def get_booking(calendar_id: str, booking_id: str):
    booking = client().get_booking(calendar_id, path_booking_id(booking_id))
    if booking is None:
        raise ApiError(404, "not_found", f"no booking {booking_id} on {calendar_id}",
                       {"booking_id": booking_id})
    return reply(schemas.Booking, booking)


@bp.delete("/calendars/<calendar_id>/bookings/<booking_id>")
def cancel(calendar_id: str, booking_id: str):
    user = current_user()
    result = client().cancel(user.name, calendar_id, path_booking_id(booking_id),
                             admin=user.admin, idempotency_key=idempotency_key())
    outcome = decided(result)
    if outcome is None:
        return pending(result.command_id)
    return reply(schemas.Cancelled, {"booking": outcome["booking"], "status": "cancelled"})


# -- commands ------------------------------------------------------------------------------

@bp.get("/commands/<command_id>")
def command_status(command_id: str):
    try:
        parse_command_id(command_id)
    except InvalidRequest as exc:
        raise ApiError(404, "not_found", str(exc), {"command_id": command_id}) from exc
    user = current_user()
    # Another user's command is answered as if it did not exist: 404, never 403.
    status = client().status(command_id, reader=user.name, admin=user.admin)
    if status is None:
        raise ApiError(404, "not_found", f"no command {command_id}", {"command_id": command_id})
    data = {"command_id": command_id, "status": status["status"]}
    if status["status"] == "accepted":
        data["booking"] = status["booking"]
    elif status["status"] == "rejected":
        data["error"] = status["error"]
    return reply(schemas.CommandStatus, data, exclude_none=True)


# -- admin ---------------------------------------------------------------------------------

@bp.get("/admin/findings")
def audit_findings():
    if not current_user().admin:
        raise ApiError(403, "forbidden", "only admins may read audit findings")
    return reply(schemas.FindingList, {"days": list_findings(client().redis)})


@bp.get("/openapi.json")
def openapi():
    return jsonify(document())
