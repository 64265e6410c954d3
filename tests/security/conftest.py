"""Attack tests: each performs an attack or feeds bad input and shows it refused."""

from __future__ import annotations

import secrets

import pytest

from slotlock.catalog import Catalog
from slotlock.users import Users
from slotlock.web import create_app
from tests.conftest import make_settings

PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "root": "root-pw-3"}


def forged_token() -> str:
    return f"slk_{secrets.token_hex(8)}.{secrets.token_urlsafe(32)}"


@pytest.fixture
def users(real_redis) -> Users:
    Catalog(real_redis).ensure_default("UTC")
    users = Users(real_redis)
    for name, password in PASSWORDS.items():
        users.add(name, admin=name == "root", password=password)
    return users


@pytest.fixture
def make_app(redis_server, users):
    """An app on the private Redis with CSRF off (these tests attack the limits, not CSRF)."""
    def make(**overrides):
        base = {"redis_url": redis_server.url, "rate_limit": "100000/minute",
                "anonymous_rate_limit": "100000/minute", "signin_rate_limit": "100000/minute",
                "signin_user_rate_limit": "100000/minute", "reply_timeout_ms": 3000}
        base.update(overrides)
        return create_app(make_settings(**base), {"WTF_CSRF_ENABLED": False})
    return make


def sign_in(client, name, password, **kw):
    return client.post("/signin", data={"username": name, "password": password}, **kw)
