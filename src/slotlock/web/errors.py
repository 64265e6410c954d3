"""One error format for the whole API: ``{"error": {"code", "message", "details"}}``.

Every failure a request can meet is mapped here, in one place: HTTP errors raised
by Flask (404, 405, 413), rate limits (429), the core's exceptions, and Redis being
unreachable (503 at once, never a 500 or a hang past the socket timeout).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from ..errors import Backpressure, IdempotencyMismatch, InvalidRequest, UnknownCalendar
from .schemas import Error

log = logging.getLogger("slotlock.web")

# Outcome codes of the model and the HTTP status each one means.
OUTCOME_STATUS = {
    "overlap": 409,
    "quota_exceeded": 409,
    "invalid": 422,
    "rule_violation": 422,
    "not_found": 404,
    "forbidden": 403,
    "internal": 500,  # an entry the worker could not decide (logged; the audit reports it)
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None):
    body = Error.model_validate({"error": {"code": code, "message": message,
                                           "details": details or {}}})
    response = jsonify(body.model_dump(mode="json"))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def rejection(error: dict[str, Any]) -> ApiError:
    """The ApiError for a model rejection (``outcome["error"]``)."""
    status = OUTCOME_STATUS.get(error["code"], 422)
    return ApiError(status, error["code"], error["message"], error.get("details"))


def validation_details(exc: ValidationError) -> dict[str, Any]:
    return {"errors": [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        headers = dict(exc.headers)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="slotlock"'
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.errorhandler(ValidationError)
    def _invalid_body(exc: ValidationError):
        return error_response(422, "invalid", "the request body does not match its schema",
                              validation_details(exc))

    @app.errorhandler(InvalidRequest)
    def _invalid(exc: InvalidRequest):
        return error_response(422, "invalid", str(exc), {"field": exc.field} if exc.field else {})

    @app.errorhandler(UnknownCalendar)
    def _unknown_calendar(exc: UnknownCalendar):
        return error_response(404, "not_found", str(exc), {"calendar": exc.calendar_id})

    @app.errorhandler(IdempotencyMismatch)
    def _mismatch(exc: IdempotencyMismatch):
        return error_response(422, "idempotency_mismatch", str(exc),
                              {"command_id": exc.command_id})

    @app.errorhandler(Backpressure)
    def _backpressure(exc: Backpressure):
        return error_response(503, "backlog_full", "too many commands are waiting for this day; "
                              "retry shortly", {"pending": exc.pending}, {"Retry-After": "1"})

    @app.errorhandler(redis.RedisError)
    def _redis_down(exc: redis.RedisError):
        log.warning("redis error on %s %s: %s: %s", request.method, request.path,
                    type(exc).__name__, exc)
        return error_response(503, "unavailable", "the data store is unreachable; retry shortly",
                              headers={"Retry-After": "1"})

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "error")
        headers = {name: value for name, value in exc.get_headers()
                   if name in ("Allow", "Retry-After", "WWW-Authenticate")}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="slotlock"'
        message = exc.description or exc.name
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal", "an unexpected error happened")
