"""The JSON API (``/api/v1``): parse the request into a command, submit it, map the outcome.

The views never touch Redis keys; they talk to ``slotlock.client.Client``.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, TypeVar

import redis
from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel

from ..client import Client
from ..errors import InvalidRequest
from ..ids import parse_booking_id, parse_command_id
from ..workers.audit import list_findings
from . import booking, schemas
from .auth import authenticate, client_address_key, current_user, token_user
from .booking import Answer, checked_idempotency_key, out, whole_body
from .errors import ApiError
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
    return respond(Answer(status, out(model, data, exclude_none=exclude_none), headers or {}))


def respond(answer: Answer):
    response = jsonify(answer.body)
    response.status_code = answer.status
    for name, value in answer.headers.items():
        response.headers[name] = value
    return response


def idempotency_key() -> str | None:
    return checked_idempotency_key(request.headers.get("Idempotency-Key"))


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
    # The fast lane (web/fastlane.py) answers most of these before Flask sees them, with
    # the same function: this view serves the requests it hands on.
    raw = whole_body(request.get_data(cache=True), request.content_length)  # over the limit: 413
    return respond(booking.book(client(), current_user(), calendar_id, raw,
                                request.headers.get("Idempotency-Key"), request.script_root))


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
    outcome = booking.decided(result)
    if outcome is None:
        return respond(booking.pending(result.command_id, request.script_root))
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
