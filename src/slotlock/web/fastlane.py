"""The fast lane: ``POST /api/v1/calendars/{id}/bookings`` answered without Flask's request cycle.

A booking is the request a closed-loop client sends most, and Flask's request cycle
(request and response objects, URL matching, before/after hooks, context locals) was
most of the web's CPU per booking. This WSGI middleware, inside ProxyFix and in front of
Flask, answers a booking itself when it can do exactly what Flask would:

- the method is POST and the path is exactly a calendar's bookings (a calendar id as
  the model writes it, a mount point of plain characters);
- the request carries ``Authorization: Bearer <token>`` for a token this process has
  verified before (``TokenGate.knows``: a first-seen token's secret is checked by Flask);
- the body has a ``Content-Length`` within ``MAX_CONTENT_LENGTH`` and no
  ``Transfer-Encoding``;
- the process has checked its Redis (``Services.server_ok``: a process started while Redis
  was down checks it in Flask's ``_server_checked``).

Anything else goes to Flask untouched, before anything is read or counted. In the lane
the request is counted and checked like Flask's (``TokenGate.check``: one round trip; a
token no longer valid is counted against the client address and answered 401, or 429
over ``SLOTLOCK_ANONYMOUS_RATE_LIMIT``), then decided by ``booking.book``, the function the
Flask view calls; errors are mapped by ``errors.as_api_error``, the Flask handlers'
mapping, and the security headers are ``ui.security``'s. ``tests/web/test_fastlane.py``
compares the lane's answers with Flask's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

import redis
from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from .auth import parse_bearer
from .booking import Answer, book, whole_body
from .errors import KNOWN, ApiError, as_api_error, error_body
from .ui.security import HEADERS

log = logging.getLogger("slotlock.web")

# matched whole (fullmatch: "$" would also match before a final newline, "...bookings%0A")
PATH = re.compile(r"/api/v1/calendars/([a-z0-9][a-z0-9_-]{0,63})/bookings")
ROOT = re.compile(r"[A-Za-z0-9/_.-]*")
STATUS = {code: f"{code} {reason.upper()}" for code, reason in HTTP_STATUS_CODES.items()}
HSTS = ("Strict-Transport-Security", "max-age=31536000")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastLane:
    def __init__(self, app: Flask, inner: WSGIApp):
        self.app = app
        self.inner = inner

    def __call__(self, environ: dict[str, Any], start_response) -> Iterable[bytes]:
        taken = self._taken(environ)
        if taken is None:
            return self.inner(environ, start_response)
        calendar_id, token, length = taken
        path = environ.get("PATH_INFO", "")
        try:
            try:
                answer = self._book(environ, calendar_id, token, length)
            except KNOWN as exc:
                error = as_api_error(exc, f"POST {path}")
                answer = Answer(error.status,
                                error_body(error.code, error.message, error.details),
                                error.headers)
            status, headers, body = self._encoded(environ, answer)
        except Exception:
            log.exception("unexpected error on POST %s", path)
            status, headers, body = self._encoded(environ, Answer(
                500, error_body("internal", "an unexpected error happened")))
        start_response(status, headers)
        return [body]

    def _taken(self, environ: dict[str, Any]) -> tuple[str, str, int] | None:
        """(calendar id, token, body length) if the lane answers this request, else None."""
        if environ.get("REQUEST_METHOD") != "POST":
            return None
        match = PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or not ROOT.fullmatch(environ.get("SCRIPT_NAME", "")):
            return None
        if environ.get("wsgi.url_scheme") not in ("http", "https"):
            return None  # e.g. "wss" from a proxy: Flask's 400
        token = parse_bearer(environ.get("HTTP_AUTHORIZATION", ""))
        if token is None or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        if f"{self.app.config['SESSION_COOKIE_NAME']}=" in environ.get("HTTP_COOKIE", ""):
            return None  # Flask refreshes a signed-in session's cookie (and says Vary: Cookie)
        length = environ.get("CONTENT_LENGTH", "")
        if not (length.isascii() and length.isdigit() and len(length) <= 12):
            return None
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if limit is not None and int(length) > limit:
            return None  # Flask's 413
        services = self.app.extensions["slotlock"]
        if not services.server_ok:
            return None  # Flask checks the server first (web._server_checked)
        if not services.tokens.knows(token):
            return None
        return match.group(1), token, int(length)

    def _book(self, environ: dict[str, Any], calendar_id: str, token: str,
              length: int) -> Answer:
        services = self.app.extensions["slotlock"]
        checked = services.tokens.check(token)
        if checked.user is None:  # revoked, expired or its user removed since
            _count_anonymous(services.tokens, environ)
            raise ApiError(401, "unauthorized", "unknown, expired or revoked token")
        if checked.retry_after_s > 0:
            raise ApiError(429, "rate_limited", "too many requests with this token: "
                           f"{services.settings.rate_limit}",
                           headers={"Retry-After": str(checked.retry_after_s)})
        raw = whole_body(environ["wsgi.input"].read(length) if length else b"", length)
        return book(services.client, checked.user, calendar_id, raw,
                    environ.get("HTTP_IDEMPOTENCY_KEY"),
                    environ.get("SCRIPT_NAME", "").rstrip("/"))

    def _encoded(self, environ: dict[str, Any], answer: Answer
                 ) -> tuple[str, list[tuple[str, str]], bytes]:
        """Status line, headers and body, byte for byte as Flask's ``jsonify`` and the
        security hook (``ui.security``) write them."""
        provider = self.app.json
        if (provider.compact is None and self.app.debug) or provider.compact is False:
            text = provider.dumps(answer.body, indent=2)
        else:
            text = provider.dumps(answer.body, separators=(",", ":"))
        body = f"{text}\n".encode()
        headers = [("Content-Type", provider.mimetype), ("Content-Length", str(len(body)))]
        headers.extend(answer.headers.items())
        headers.extend(HEADERS.items())
        if environ.get("wsgi.url_scheme") == "https":
            headers.append(HSTS)
        return STATUS.get(answer.status, f"{answer.status} UNKNOWN"), headers, body


def _count_anonymous(tokens, environ: dict[str, Any]) -> None:
    """As Flask's ``api._authenticate`` does for a request without a valid token: count it
    against the client address; 429 over ``SLOTLOCK_ANONYMOUS_RATE_LIMIT``."""
    try:
        wait = tokens.count_anonymous(f"addr:{environ.get('REMOTE_ADDR') or '-'}")
    except (redis.ConnectionError, redis.TimeoutError):
        wait = 0  # an outage is not a 429
    if wait:
        raise ApiError(429, "rate_limited", "too many requests without a valid token "
                       "from this address", headers={"Retry-After": str(wait)})
