"""The real stack for browser tests: a private redis-server, the Procfile's web line under
gunicorn on a free loopback port, a ``slotlock worker`` process, and Debian's chromium
driven by Playwright's Python package (no browser download)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from slotlock.catalog import Catalog
from slotlock.users import Users
from tests.conftest import ARTIFACTS, ROOT
from tests.procs import Procs, wait_for

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
PASSWORDS = {"alice": "alice-browser-pw", "bob": "bob-browser-pw"}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SLOTLOCK_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile_web(port: int) -> list[str]:
    """The Procfile's web line, bound to loopback on ``port``."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            args = shlex.split(line.split(":", 1)[1])
            break
    else:  # pragma: no cover - the Procfile is part of the contract
        raise AssertionError("no web line in the Procfile")
    assert args[0] == "gunicorn"
    args = [a.replace("0.0.0.0:${PORT:-8000}", f"127.0.0.1:{port}") for a in args[1:]]
    assert f"127.0.0.1:{port}" in args, args
    return [sys.executable, "-m", "gunicorn", *args]


class Gunicorn:
    def __init__(self, port: int, env: dict[str, str], log_path: Path):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(procfile_web(port),
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


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
def stack(redis_server, tmp_path_factory):
    """gunicorn (two processes, one SECRET_KEY) + one lease worker on the private Redis."""
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    db.flushall()
    Catalog(db).ensure_default("UTC")
    users = Users(db)
    for name, password in PASSWORDS.items():
        users.add(name, password=password)
    tmp = tmp_path_factory.mktemp("browser-stack")
    env = {"REDIS_URL": redis_server.url, "SECRET_KEY": "browser-test-secret",
           "SLOTLOCK_RATE_LIMIT": "100000/minute", "SLOTLOCK_REPLY_TIMEOUT_MS": "8000"}
    procs = Procs(tmp, env)
    worker = procs.worker("browser-worker")
    web = Gunicorn(free_port(), env, tmp / "gunicorn.log")
    try:
        wait_for(web.ready, 60, 0.2, "gunicorn to answer /readyz")
        worker.wait_log(r"started", timeout=60)
        yield {"url": web.url, "redis": db, "settings_env": env}
    finally:
        web.stop()
        procs.stop_all()
        db.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
