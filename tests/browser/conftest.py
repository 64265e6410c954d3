"""The real stack for browser tests: a private redis-server, the Procfile's web line under
gunicorn on a free loopback port, a ``slotlock worker`` process (``tests/e2e/http_stack``),
and Debian's chromium
driven by Playwright's Python package (no browser download)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis

from slotlock.users import Users
from tests.conftest import ARTIFACTS
from tests.e2e.http_stack import HttpStack

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
PASSWORDS = {"alice": "alice-browser-pw", "bob": "bob-browser-pw"}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SLOTLOCK_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def chromium():
    path = chromium_path()
    if path is None:
        pytest.skip("browser tests need Chromium: no chromium executable found "
                    "(install Debian's 'chromium' package, or set SLOTLOCK_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The Procfile's web line (gunicorn, two processes, one SECRET_KEY) + one lease worker
    + a private redis-server, as the HTTP end-to-end tests run it."""
    env = {"SECRET_KEY": "browser-test-secret", "SLOTLOCK_RATE_LIMIT": "100000/minute",
           "SLOTLOCK_REPLY_TIMEOUT_MS": "8000"}
    with HttpStack(tmp_path_factory.mktemp("browser-stack"), workers=1, env=env) as web:
        db = redis.Redis.from_url(web.redis.url, decode_responses=True)
        users = Users(db)
        for name, password in PASSWORDS.items():
            users.add(name, password=password)
        try:
            yield {"url": web.url, "redis": db, "settings_env": web.env}
        finally:
            db.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
