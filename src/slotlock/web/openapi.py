"""The OpenAPI 3.1 document of ``/api/v1``, built from the pydantic models in ``schemas``.

Only the URL table below is written here; every body schema comes from
``model_json_schema`` so it cannot drift from what the views validate.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from .. import __version__
from . import schemas

REF = "#/components/schemas/{model}"

ERRORS = {
    400: "Malformed JSON",
    401: "No or unknown token",
    403: "Only the owner of a booking or an admin may cancel it",
    404: "No such calendar, booking or command",
    409: "Conflict (overlap, quota_exceeded); details.conflicts lists the conflicting bookings",
    413: "Body too large",
    422: "Invalid request or rule violation (invalid, rule_violation, idempotency_mismatch)",
    429: "Too many requests for this token",
    503: "Redis unreachable or the day's backlog is full; see Retry-After",
}


def _ref(model) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _op(op_id: str, summary: str, ok: dict[int, tuple], errors: tuple[int, ...],
        params: list[dict] | None = None, body=None) -> dict[str, Any]:
    responses = {str(code): _json(model, text) for code, (model, text) in ok.items()}
    for code in (401, *errors, 429, 503):
        responses[str(code)] = _json(schemas.Error, ERRORS[code])
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses,
                          "parameters": params or []}
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": _ref(body)}}}
    return op


def _path(name: str, fmt: str | None = None, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if fmt:
        schema["format"] = fmt
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


IDEMPOTENCY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "description": "Retries with the same key return the first outcome; the same key with "
                   "a different body is refused (422 idempotency_mismatch).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$"},
}


def _components() -> dict[str, Any]:
    pairs = [(m, "serialization") for m in schemas.RESPONSE_MODELS]
    pairs += [(m, "validation") for m in schemas.REQUEST_MODELS]
    _, top = models_json_schema(pairs, ref_template=REF)
    return top["$defs"]


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    cal = _path("calendar")
    booking_id = _path("booking_id")
    pending = (schemas.Pending, "Queued; no outcome within the reply timeout")
    paths = {
        "/api/v1/calendars": {"get": _op(
            "listCalendars", "Calendars", {200: (schemas.CalendarList, "Calendars")}, ())},
        "/api/v1/calendars/{calendar}/days/{date}": {"get": _op(
            "getDay", "A calendar's committed bookings on one local date",
            {200: (schemas.DayView, "The day")}, (404,), [cal, _path("date", "date")])},
        "/api/v1/calendars/{calendar}/bookings": {"post": _op(
            "book", "Book a time; naive times are read in the calendar's time zone",
            {201: (schemas.Booking, "Booked"), 202: pending},
            (400, 404, 409, 413, 422), [cal, IDEMPOTENCY], body=schemas.BookingRequest)},
        "/api/v1/calendars/{calendar}/bookings/{booking_id}": {
            "get": _op("getBooking", "One booking", {200: (schemas.Booking, "The booking")},
                       (404,), [cal, booking_id]),
            "delete": _op("cancel", "Cancel a booking (owner or admin)",
                          {200: (schemas.Cancelled, "Cancelled"), 202: pending},
                          (403, 404, 422), [cal, booking_id, IDEMPOTENCY]),
        },
        "/api/v1/commands/{command_id}": {"get": _op(
            "commandStatus", "Pending, accepted or rejected",
            {200: (schemas.CommandStatus, "Status")}, (404,), [_path("command_id")])},
        "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "security": [],
                             "responses": {"200": _json(schemas.Health, "Alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "Redis reachable", "security": [],
                            "responses": {"200": _json(schemas.Health, "Ready"),
                                          "503": _json(schemas.Health, "Redis unreachable")}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "slotlock", "version": __version__},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
