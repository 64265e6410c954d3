"""A whole slotlock on loopback for end-to-end tests and the HTTP benchmark: a private
redis-server, the Procfile's web line (gunicorn) bound to 127.0.0.1 on a free port, and
``slotlock worker`` processes. Every process is stopped by its pid."""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import requests

from slotlock.embedded import RedisServer, free_port
from slotlock.redis_conn import connect
from slotlock.users import Users

ROOT = Path(__file__).resolve().parents[2]


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def shim_bin(directory: Path) -> Path:
    """``gunicorn`` and ``slotlock`` on PATH that run in this interpreter (this checkout)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, module in (("gunicorn", "gunicorn"), ("slotlock", "slotlock")):
        path = directory / name
        path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return directory


def stack_env(redis_url: str, port: int, bin_dir: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{env.get('PYTHONPATH', '')}",
        "REDIS_URL": redis_url,
        "PORT": str(port),
        "SLOTLOCK_ENV": "development",
        "SECRET_KEY": "e2e",
        "SLOTLOCK_RATE_LIMIT": "1000000/minute",
        "SLOTLOCK_ANONYMOUS_RATE_LIMIT": "1000000/minute",
    })
    env.update(extra)
    return env


def wait_ready(base_url: str, processes=(), timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            assert p.poll() is None, f"process {p.args} exited with {p.returncode}"
        try:
            if requests.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{base_url} not ready in {timeout} s")


def stop(process: subprocess.Popen, timeout: float = 25.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class HttpStack:
    def __init__(self, tmp: Path, *, workers: int = 1, env: dict[str, str] | None = None,
                 appendfsync: str = "everysec", quiet: bool = True,
                 redis: RedisServer | None = None, redis_url: str | None = None):
        """``redis``: a running server of the caller's (who stops it); ``redis_url``: what
        the processes use instead of its URL (another Redis user, say)."""
        self.tmp = Path(tmp)
        self.own_redis = redis is None
        self.redis = redis or RedisServer(self.tmp / "redis", appendfsync=appendfsync)
        self.redis_url = redis_url
        self.port = free_port()
        self.n_workers = workers
        self.extra_env = env or {}
        self.quiet = quiet
        self.web: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _out(self, name: str):
        if self.quiet:
            return open(self.tmp / f"{name}.log", "wb")
        return None

    def start(self) -> HttpStack:
        if self.own_redis:
            self.redis.start()
        self.env = stack_env(self.redis_url or self.redis.url, self.port,
                             shim_bin(self.tmp / "bin"),
                             **self.extra_env)
        subprocess.run([sys.executable, "-m", "slotlock", "migrate"], env=self.env, check=True,
                       capture_output=True, timeout=60)
        # no booking horizon: the tests use fixed dates years ahead
        subprocess.run([sys.executable, "-m", "slotlock", "calendar", "put", "main",
                        "--horizon-days", "0"], env=self.env, check=True, capture_output=True,
                       timeout=60)
        web = procfile_line("web").replace("--bind 0.0.0.0:", "--bind 127.0.0.1:")
        assert "127.0.0.1:${PORT" in web
        out = self._out("web")
        self.web = subprocess.Popen(["/bin/sh", "-c", f"exec {web}"], env=self.env,
                                    stdout=out, stderr=out, start_new_session=True)
        for i in range(self.n_workers):
            self.add_worker(f"w{i}")
        wait_ready(self.url, [self.web])
        return self

    def add_worker(self, name: str) -> subprocess.Popen:
        out = self._out(f"worker-{name}")
        env = {**self.env, "SLOTLOCK_WORKER_ID": f"e2e-{name}"}
        process = subprocess.Popen([sys.executable, "-m", "slotlock", "worker"], env=env,
                                   stdout=out, stderr=out, start_new_session=True)
        self.workers.append(process)
        return process

    def token(self, name: str, admin: bool = False) -> str:
        cluster = self.env.get("SLOTLOCK_REDIS_CLUSTER") == "on"
        users = Users(connect(self.redis.url, cluster=cluster))
        users.add(name, admin=admin)
        return users.issue_token(name)

    def stop(self) -> None:
        for process in [*self.workers, *([self.web] if self.web else [])]:
            stop(process)
        if self.own_redis:
            self.redis.stop()

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
