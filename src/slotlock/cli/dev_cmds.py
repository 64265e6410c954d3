"""Development: ``slotlock up`` (everything on one machine). ``chaos`` is in ``chaos_cmds.py``."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from ..config import redacted_url
from ..embedded import RedisServer, reachable
from ..users import Users
from .core import main, redis_or_exit, settings_or_exit

# The Procfile's web line, bound to loopback for a local run.
GUNICORN_OPTIONS = ["--worker-class", "gthread", "--workers", "2", "--threads", "16",
                    "--graceful-timeout", "20", "--timeout", "30"]
DEMO_USER = "demo"
STOP_TIMEOUT_S = 25.0


class Stack:
    """Child processes of ``slotlock up``, each in its own session: Ctrl-C reaches only us,
    and we stop each child once, by pid (a second SIGTERM would cold-stop a worker)."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.children.append((name, process))
        return process

    def exited(self) -> tuple[str, int] | None:
        for name, process in self.children:
            if process.poll() is not None:
                return name, process.returncode
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        for _, process in self.children:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, process in self.children:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                click.echo(f"{name} (pid {process.pid}) did not stop; killing it", err=True)
                process.kill()
                process.wait()


def _wait_ready(url: str, stack: Stack, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = stack.exited()
        if gone:
            raise click.ClickException(f"{gone[0]} exited with status {gone[1]} while starting")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise click.ClickException(f"the web process did not answer at {url} within {timeout:.0f} s")


@main.command()
@click.option("--data-dir", default=".slotlock/redis", show_default=True,
              help="Data folder of the embedded Redis (used when REDIS_URL is unreachable).")
@click.option("--reuse-redis", is_flag=True,
              help="Run on the Redis of REDIS_URL when it answers, and create (or reset) the "
                   "admin user 'demo' there. Without it, an answering REDIS_URL is refused.")
def up(data_dir: str, reuse_redis: bool) -> None:
    """Run web, lease worker (and jobs) on this machine until Ctrl-C, in development mode."""
    settings = settings_or_exit(env="development")
    env = dict(os.environ)
    env["SLOTLOCK_ENV"] = "development"
    env.setdefault("SECRET_KEY", secrets.token_hex(32))  # one key for all web processes
    env.setdefault("REDIS_URL", settings.redis_url)
    server: RedisServer | None = None
    shown = redacted_url(settings.redis_url)
    if reachable(settings.redis_url):
        if not reuse_redis:
            raise click.ClickException(
                f"Redis at {shown} answers, and slotlock up did not start it: it would create "
                f"or reset the admin user {DEMO_USER!r} there. Pass --reuse-redis to do that, "
                "or set REDIS_URL to an address where nothing listens to get a private Redis.")
        click.echo(f"Redis: {shown}")
    else:
        # A password of its own, never printed: only the processes started here know it.
        server = RedisServer(Path(data_dir), appendonly=True, appendfsync="everysec",
                             password=secrets.token_urlsafe(24)).start()
        env["REDIS_URL"] = server.url
        click.echo(f"Redis: {shown} unreachable; started an embedded server at "
                   f"{redacted_url(server.url)} (password protected; data in {data_dir}, AOF on; "
                   f"pid {server.process.pid})")
    stack = Stack()
    stopping: list[int] = []

    def _on_signal(signum, frame) -> None:
        stopping.append(signum)

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        slotlock = [sys.executable, "-m", "slotlock"]
        subprocess.run([*slotlock, "migrate"], env=env, check=True, timeout=60)
        users = Users(redis_or_exit(settings.model_copy(update={"redis_url": env["REDIS_URL"]})))
        password = secrets.token_urlsafe(9)  # a fresh one each run, for the web UI
        users.add(DEMO_USER, admin=True, password=password)
        token = users.issue_token(DEMO_USER)
        port = settings.port
        url = f"http://127.0.0.1:{port}"
        stack.start("web", [sys.executable, "-m", "gunicorn", "slotlock.web:create_app()",
                            "--bind", f"127.0.0.1:{port}", *GUNICORN_OPTIONS], env)
        stack.start("worker", [*slotlock, "worker"], env)
        if "jobs" in main.commands:
            stack.start("jobs", [*slotlock, "jobs"], env)
        _wait_ready(url, stack)
        pids = ", ".join(f"{name} pid {p.pid}" for name, p in stack.children)
        click.echo(f"slotlock is up at {url} ({pids}); Ctrl-C stops it.")
        click.echo(f"Web UI: {url}/ — sign in as {DEMO_USER!r} with password {password}")
        click.echo(f"Admin user {DEMO_USER!r}, fresh API token:\n  {token}\nTry:")
        day = (datetime.now(UTC) + timedelta(days=7)).date().isoformat()  # inside the window
        click.echo(f"  curl -s -X POST {url}/api/v1/calendars/main/bookings \\\n"
                   f"    -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
                   f"    -d '{{\"start\": \"{day}T10:00\", \"end\": \"{day}T10:30\", "
                   f"\"title\": \"Stand-up\"}}'")
        click.echo(f"  curl -s {url}/api/v1/calendars/main/days/{day} "
                   f"-H 'Authorization: Bearer {token}'", nl=True)
        sys.stdout.flush()
        while not stopping:
            gone = stack.exited()
            if gone:
                click.echo(f"{gone[0]} exited with status {gone[1]}; stopping", err=True)
                break
            time.sleep(0.2)
    finally:
        click.echo("stopping...")
        stack.stop()
        if server is not None:
            server.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
        click.echo("stopped.")

