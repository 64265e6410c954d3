"""One error format for the whole API: ``{"error": {"code", "message", "details"}}``.

Every failure a request can meet is mapped here, in one place: HTTP errors raised
by Flask (404, 405, 413), rate limits (429), the core's exceptions, and Redis being
unreachable (503 at once, never a 500 or a hang past the socket timeout).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from ..errors import Backpressure, IdempotencyMismatch, InvalidRequest, UnknownCalendar
from ..redis_conn import REDIS_ERRORS
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


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return Error.model_validate({"error": {"code": code, "message": message,
                                           "details": details or {}}}).model_dump(mode="json")


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None):
    response = jsonify(error_body(code, message, details))
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


# What a request's own handling may raise that the API answers as an error of its own;
# anything else is a 500. The fast lane (web/fastlane.py) catches the same tuple.
KNOWN: tuple[type[BaseException], ...] = (
    ApiError, ValidationError, InvalidRequest, UnknownCalendar, IdempotencyMismatch,
    Backpressure, *REDIS_ERRORS,
)


def as_api_error(exc: BaseException, where: str) -> ApiError:
    """The ApiError that answers ``exc`` (one of ``KNOWN``); ``where`` (method and path)
    only goes to the log, for Redis errors."""
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, ValidationError):
        error = ApiError(422, "invalid", "the request body does not match its schema",
                         validation_details(exc))
    elif isinstance(exc, InvalidRequest):
        error = ApiError(422, "invalid", str(exc), {"field": exc.field} if exc.field else {})
    elif isinstance(exc, UnknownCalendar):
        error = ApiError(404, "not_found", str(exc), {"calendar": exc.calendar_id})
    elif isinstance(exc, IdempotencyMismatch):
        error = ApiError(422, "idempotency_mismatch", str(exc), {"command_id": exc.command_id})
    elif isinstance(exc, Backpressure):
        error = ApiError(503, "backlog_full", "too many commands are waiting for this day; "
                         "retry shortly", {"pending": exc.pending}, {"Retry-After": "1"})
    elif isinstance(exc, REDIS_ERRORS):
        log.warning("redis error on %s: %s: %s", where, type(exc).__name__, exc)
        error = ApiError(503, "unavailable", "the data store is unreachable; retry shortly",
                         headers={"Retry-After": "1"})
    else:
        raise TypeError(f"not an error the API answers: {exc!r}") from exc
    if error.status == 401:
        error.headers = {**error.headers, "WWW-Authenticate": 'Bearer realm="slotlock"'}
    return error


def register(app: Flask) -> None:
    def _known(exc: BaseException):
        error = as_api_error(exc, f"{request.method} {request.path}")
        return error_response(error.status, error.code, error.message, error.details,
                              error.headers)

    for kind in KNOWN:
        app.register_error_handler(kind, _known)

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
