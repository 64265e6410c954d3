"""Set-up and checks for the conventional stack's database (the benchmark's side, not the
app's): schema, users and tokens, calendars, and the overlap check after a run."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import psycopg

SCHEMA = Path(__file__).with_name("schema.sql")


def apply_schema(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(SCHEMA.read_text())


def add_user(conninfo: str, name: str, *, admin: bool = False) -> str:
    """Create ``name`` and return a fresh token ``slk_<id>.<secret>`` (only its hash is kept)."""
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO users (name, admin) VALUES (%s, %s) "
                     "ON CONFLICT (name) DO UPDATE SET admin = excluded.admin", (name, admin))
        conn.execute("INSERT INTO api_tokens (id, user_name, hash) VALUES (%s, %s, %s)",
                     (token_id, name, hashlib.sha256(secret.encode()).hexdigest()))
    return f"slk_{token_id}.{secret}"


def put_calendar(conninfo: str, calendar_id: str, timezone: str = "UTC") -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO calendars (id, name, timezone) VALUES (%s, %s, %s) "
                     "ON CONFLICT (id) DO UPDATE SET timezone = excluded.timezone",
                     (calendar_id, calendar_id, timezone))


def overlapping_pairs(conninfo: str) -> int:
    """Pairs of stored bookings of one calendar that share an instant (must be 0)."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM bookings a JOIN bookings b ON a.calendar = b.calendar "
            "AND a.id < b.id AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)"
        ).fetchone()[0]


def bookings_per_calendar(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return dict(conn.execute("SELECT calendar, count(*) FROM bookings GROUP BY calendar")
                    .fetchall())
