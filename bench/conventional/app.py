"""What a team builds instead of slotlock: Flask + PostgreSQL, the overlap rule an
``EXCLUDE USING gist`` constraint. The same contract as slotlock's
``POST /api/v1/calendars/{cal}/bookings``:

- ``Authorization: Bearer slk_<id>.<secret>``, checked against PostgreSQL in one query
  (the token's sha256 compared with ``hmac.compare_digest``); 401 otherwise;
- the same per-token rate limit (Flask-Limiter, fixed window, counted in Redis, the
  storage a team running several gunicorn processes would share; ``RATE_LIMIT``);
- 400 malformed JSON, 422 ``invalid`` (pydantic: start, end, title of 1-200 characters;
  end after start; the 15-minute grid; one local day), 422 ``rule_violation`` (past), 404
  unknown calendar;
- one INSERT (the calendar's time zone read inside the same statement); 201 with the
  booking, or on the exclusion violation 409 ``overlap`` with the conflicting bookings
  (at most 5 in full, 50 ids, the total), as slotlock answers.

Connections come from a psycopg pool (one per thread), in autocommit: a 201 costs two
statements (token, INSERT), a 409 three (token, INSERT, conflicts).

    gunicorn 'app:create_app()' --chdir bench/conventional --worker-class gthread \
        --workers 2 --threads 8 --bind 127.0.0.1:8001
    env: DATABASE_URL, RATELIMIT_STORAGE_URI (redis://...), RATE_LIMIT (e.g. 600/minute)

Simplifications, none of which favours this stack: every calendar has a 15-minute grid
and no opening hours, buffers or quotas (as the benchmark's calendars on both stacks).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask import Flask, jsonify, request
from flask_limiter import Limiter
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TOKEN = re.compile(r"^slk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
GRID_MINUTES = 15
CONFLICTS_SHOWN, CONFLICT_IDS_SHOWN = 5, 50

AUTH_SQL = """SELECT u.name, u.admin, t.hash FROM api_tokens t
              JOIN users u ON u.name = t.user_name WHERE t.id = %s"""

# One statement: resolve the calendar's zone, refuse the past (admins excepted), insert.
INSERT_SQL = """
WITH c AS (SELECT id, timezone FROM calendars WHERE id = %(cal)s),
     b AS (SELECT c.id AS calendar, c.timezone,
                  coalesce(%(start_abs)s::timestamptz, %(start)s::timestamp AT TIME ZONE c.timezone)
                      AS start_at,
                  coalesce(%(end_abs)s::timestamptz, %(end)s::timestamp AT TIME ZONE c.timezone)
                      AS end_at
           FROM c),
     ins AS (INSERT INTO bookings (id, calendar, start_at, end_at, title, owner)
             SELECT %(id)s, calendar, start_at, end_at, %(title)s, %(owner)s FROM b
             WHERE %(admin)s OR start_at >= now()
             RETURNING id, calendar, start_at, end_at, title, owner, created_at)
SELECT ins.id, ins.calendar, ins.start_at, ins.end_at, ins.title, ins.owner, ins.created_at,
       b.timezone
FROM ins, b
"""

CONFLICTS_SQL = """
SELECT x.id, x.calendar, x.start_at, x.end_at, x.title, x.owner, x.created_at, c.timezone,
       count(*) OVER () AS total
FROM calendars c JOIN bookings x ON x.calendar = c.id
WHERE c.id = %(cal)s
  AND tstzrange(x.start_at, x.end_at) && tstzrange(
      coalesce(%(start_abs)s::timestamptz, %(start)s::timestamp AT TIME ZONE c.timezone),
      coalesce(%(end_abs)s::timestamptz, %(end)s::timestamp AT TIME ZONE c.timezone))
ORDER BY x.start_at
LIMIT %(limit)s
"""

CALENDAR_SQL = "SELECT timezone FROM calendars WHERE id = %s"


class BookingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    title: str = Field(min_length=1, max_length=200)

    @field_validator("start", "end")
    @classmethod
    def _sane_year(cls, value: datetime) -> datetime:
        if not 1970 <= value.year <= 9998:
            raise ValueError("the year must be between 1970 and 9998")
        return value


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error(status: int, code: str, message: str, details: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


def rfc3339(instant: datetime, zone: str) -> str:
    return instant.astimezone(ZoneInfo(zone)).isoformat()


def booking_json(row) -> dict:
    zone = row[7]
    return {"id": row[0], "calendar": row[1], "start": rfc3339(row[2], zone),
            "end": rfc3339(row[3], zone), "title": row[4], "owner": row[5],
            "created_at": rfc3339(row[6], zone)}


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def rate_limit_key() -> str:
    match = TOKEN.match(bearer_token() or "")
    return f"token:{match.group(1)}" if match else f"addr:{request.remote_addr or '-'}"


def authenticate(conn) -> tuple[str, bool]:
    match = TOKEN.match(bearer_token() or "")
    if not match:
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>'")
    token_id, secret = match.groups()
    row = conn.execute(AUTH_SQL, (token_id,)).fetchone()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    if row is None or not hmac.compare_digest(row[2], digest):
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    return row[0], row[1]


def validate(body: BookingRequest) -> None:
    """The rules slotlock's model checks before the overlap, for these calendars."""
    start, end = body.start, body.end
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise ApiError(422, "invalid", "start and end must both have an offset or neither")
    if end <= start:
        raise ApiError(422, "invalid", "a booking must end after it starts")
    for value in (start, end):
        if value.minute % GRID_MINUTES or value.second or value.microsecond:
            raise ApiError(422, "rule_violation", f"times must lie on the {GRID_MINUTES}-minute "
                           "grid", {"rule": "granularity"})
    next_midnight = datetime.combine(start.date() + timedelta(days=1), time(0), start.tzinfo)
    if end.date() != start.date() and end != next_midnight:
        raise ApiError(422, "invalid", "a booking lies within one local day")


def params(cal: str, body: BookingRequest) -> dict:
    aware = body.start.tzinfo is not None
    return {"cal": cal, "title": body.title,
            "start": None if aware else body.start, "end": None if aware else body.end,
            "start_abs": body.start if aware else None, "end_abs": body.end if aware else None}


def create_app() -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 16_384
    threads = int(os.environ.get("POOL_SIZE", "8"))
    pool = ConnectionPool(os.environ["DATABASE_URL"], min_size=threads, max_size=threads,
                          kwargs={"autocommit": True}, open=True)
    limiter = Limiter(key_func=rate_limit_key, app=app,
                      storage_uri=os.environ["RATELIMIT_STORAGE_URI"],
                      strategy="fixed-window", headers_enabled=False)

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(429)
    def _too_many(exc):
        return error(429, "rate_limited", f"too many requests ({exc.description})")

    @app.errorhandler(413)
    def _too_large(exc):
        return error(413, "too_large", "the body is too large")

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    @app.post("/api/v1/calendars/<cal>/bookings")
    @limiter.limit(os.environ.get("RATE_LIMIT", "600/minute"))
    def book(cal: str):
        try:
            data = json.loads(request.get_data(cache=True))
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
        with pool.connection() as conn:
            owner, admin = authenticate(conn)
            try:
                body = BookingRequest.model_validate(data)
            except ValidationError as exc:
                raise ApiError(422, "invalid", "the request is not a booking", {"errors": [
                    {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                    for e in exc.errors(include_url=False, include_context=False,
                                        include_input=False)]}) from exc
            validate(body)
            args = params(cal, body)
            day = body.start.strftime("%Y%m%d")
            args.update(id=f"{day}.{secrets.token_hex(8)}", owner=owner, admin=admin)
            try:
                row = conn.execute(INSERT_SQL, args).fetchone()
            except pg_errors.ExclusionViolation:
                args["limit"] = CONFLICT_IDS_SHOWN
                rows = conn.execute(CONFLICTS_SQL, args).fetchall()
                total = rows[0][8] if rows else 0
                raise ApiError(409, "overlap", f"this time overlaps {total} existing booking(s)",
                               {"conflicts": [booking_json(r) for r in rows[:CONFLICTS_SHOWN]],
                                "conflict_ids": [r[0] for r in rows],
                                "conflicts_total": total}) from None
            if row is None:
                if conn.execute(CALENDAR_SQL, (cal,)).fetchone() is None:
                    raise ApiError(404, "not_found", f"no calendar {cal!r}")
                raise ApiError(422, "rule_violation", "a booking may not start in the past",
                               {"rule": "past"})
        booking = booking_json(row)
        response = jsonify(booking)
        response.status_code = 201
        response.headers["Location"] = f"/api/v1/calendars/{cal}/bookings/{booking['id']}"
        return response

    return app
