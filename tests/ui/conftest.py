"""The web UI through Flask's test client, on the private redis-server, with a real
LeaseWorker in a thread deciding the commands, and CSRF protection switched on."""

from __future__ import annotations

import re

import pytest

from slotlock.users import Users
from slotlock.web import create_app
from tests.conftest import make_settings, open_default

PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "root": "root-pw-3"}
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def ui_settings(real_redis, redis_server):
    open_default(real_redis)
    users = Users(real_redis)
    for name, password in PASSWORDS.items():
        users.add(name, admin=name == "root", password=password)
    return make_settings(redis_url=redis_server.url, reply_timeout_ms=4000,
                         rate_limit="100000/minute")


@pytest.fixture
def app(ui_settings, start_worker):
    start_worker(ui_settings)
    return create_app(ui_settings)


@pytest.fixture
def idle_app(ui_settings):
    """No worker: every command stays pending (reply timeout kept short)."""
    return create_app(ui_settings.model_copy(update={"reply_timeout_ms": 300}))


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


class Browser:
    """A test client that signs in and posts forms the way a browser does (token included)."""

    def __init__(self, client):
        self.client = client

    def get(self, url, **kw):
        return self.client.get(url, **kw)

    def sign_in(self, name: str, password: str | None = None, next_url: str = ""):
        page = self.client.get(f"/signin?next={next_url}" if next_url else "/signin")
        return self.client.post("/signin", data={
            "username": name, "password": PASSWORDS[name] if password is None else password,
            "next": next_url, "csrf_token": csrf_token(page.get_data(as_text=True))})

    def submit(self, page_url: str, action: str, data: dict):
        page = self.client.get(page_url)
        assert page.status_code == 200, page.status_code
        return self.client.post(action, data={**data,
                                              "csrf_token": csrf_token(page.get_data(as_text=True))})

    def book(self, day: str, start: str, title: str, *, duration=None, end=None,
             calendar: str = "main", fold: str = "0"):
        url = f"/calendars/{calendar}/days/{day}"
        data = {"start": start, "title": title, "fold": fold,
                "duration": "" if duration is None else str(duration), "end": end or ""}
        return self.submit(url, url, data)


@pytest.fixture
def browser_for(app):
    def make(name: str | None = None, target=None) -> Browser:
        b = Browser((target or app).test_client())
        if name:
            assert b.sign_in(name).status_code == 303
        return b

    return make
