"""The processes of one harness run: redis-server, the proxy, web, worker and jobs processes.

Every process is started with its own log file and stopped by its pid; everything
binds 127.0.0.1. Workers, web and jobs processes reach Redis only through the proxy; the
harness itself (sampler, checker, fault injector) talks to Redis directly.

Processes are started as ``sys.executable -m slotlock ...`` and ``-m gunicorn``, so the
harness works from an installed package: the web command is the Procfile's when a
Procfile is at hand (source tree or working directory), else ``PROCFILE_WEB``, its copy
(a test keeps the two equal).
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..embedded import RedisServer, free_port
from .proxy import Link, Proxy

SOURCE_ROOT = Path(__file__).resolve().parents[3]
# the Procfile's web line, for an installed package (tests/faults/test_parts.py keeps it equal)
PROCFILE_WEB = ("gunicorn 'slotlock.web:create_app()' --bind 0.0.0.0:${PORT:-8000} "
                "--worker-class slotlock.web.gworker.BufferedThreadWorker --workers 2 --threads 16 "
                "--graceful-timeout 20 "
                "--timeout 30")


class Proc:
    """One child process writing to its own log file, signalled and stopped by pid."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                                     stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self) -> str:
        """The kernel's state letter (R, S, T when stopped, Z), or "gone"."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except FileNotFoundError:
            return "gone"
        return stat.rsplit(")", 1)[1].split()[0]

    def send(self, sig: int) -> bool:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
            return True
        return False

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.send(signal.SIGCONT)
            self.send(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.send(signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def procfile_web_command(procfile: Path | None = None) -> tuple[str, str]:
    """(the ``web:`` command, where it came from): the Procfile of the source tree or the
    working directory, else the copy shipped in this module (an installed package)."""
    candidates = [procfile] if procfile else [SOURCE_ROOT / "Procfile", Path.cwd() / "Procfile"]
    for path in candidates:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith("web:"):
                    return line.split(":", 1)[1].strip(), str(path)
            raise RuntimeError(f"no web: line in {path}")
    return PROCFILE_WEB, "slotlock.chaos.cluster.PROCFILE_WEB"


def procfile_web_argv(port: int, web_workers: int | None, procfile: Path | None = None) -> list[str]:
    """The Procfile's ``web:`` line, bound to 127.0.0.1:``port``, run by this interpreter."""
    command, path = procfile_web_command(procfile)
    command = re.sub(r"\$\{PORT(:-\d+)?\}|\$PORT", str(port), command)
    argv = shlex.split(command)
    if argv[0] != "gunicorn":
        raise RuntimeError(f"unexpected web command in {path}: {command}")
    argv = [sys.executable, "-m", "gunicorn", *argv[1:]]
    for i, arg in enumerate(argv):
        if arg == "--bind":
            argv[i + 1] = f"127.0.0.1:{port}"
        elif arg == "--workers" and web_workers:
            argv[i + 1] = str(web_workers)
    return argv


def direct_client(url: str) -> redis.Redis:
    """The harness's own client: retries, because the faults hit its connections too."""
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                socket_connect_timeout=2,
                                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 8),
                                retry_on_error=[redis.ConnectionError, redis.TimeoutError,
                                                redis.BusyLoadingError])


@dataclass
class ClusterConfig:
    run_dir: Path
    workers: int = 3
    webs: int = 2
    web_workers: int = 1  # gunicorn processes per web (the Procfile says 2; 2 CPUs here)
    lease_ttl_ms: int = 1000
    reply_timeout_ms: int = 5000
    appendfsync: str = "always"
    disable_fencing: bool = False
    disable_day_bounds: bool = False  # test-only broken build: no within_local_day rule
    jobs: int = 0  # ``slotlock jobs`` processes
    jobs_env: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)


class Cluster:
    def __init__(self, config: ClusterConfig):
        self.config = config
        self.run_dir = config.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.redis_server = RedisServer(self.run_dir / "redis", appendfsync=config.appendfsync)
        self.proxy: Proxy | None = None
        self.workers: dict[int, Proc] = {}  # slot -> current process
        self.webs: dict[int, Proc] = {}
        self.jobs: dict[int, Proc] = {}
        self.web_ports: dict[int, int] = {}
        self.retired: list[Proc] = []
        self._generation = 0
        self.redis: redis.Redis | None = None

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> Cluster:
        self.redis_server.start()
        self.redis = direct_client(self.redis_server.url)
        self.proxy = Proxy(self.redis_server.port)
        for slot in range(self.config.workers):
            self.start_worker(slot)
        for slot in range(self.config.webs):
            self.web_ports[slot] = free_port()
            self.start_web(slot)
        for slot in range(self.config.jobs):
            self.start_jobs(slot)
        for slot in self.webs:
            self.wait_web_ready(slot)
        return self

    def stop(self) -> None:
        if self.proxy:
            for link in self.proxy.links.values():
                link.normal()
        for proc in [*self.workers.values(), *self.webs.values(), *self.jobs.values()]:
            proc.stop()
        for proc in self.retired:
            if proc.alive():
                proc.stop()
        if self.proxy:
            self.proxy.close()
        self.redis_server.stop()

    def base_env(self) -> dict[str, str]:
        env = {
            "SLOTLOCK_LEASE_TTL_MS": str(self.config.lease_ttl_ms),
            "SLOTLOCK_REPLY_TIMEOUT_MS": str(self.config.reply_timeout_ms),
            "SLOTLOCK_RATE_LIMIT": "1000000/minute",
            "SLOTLOCK_ENV": "development",
            "SECRET_KEY": "chaos",
            "SLOTLOCK_LOG_LEVEL": "INFO",
            **self.config.extra_env,
        }
        if self.config.disable_fencing:
            env["SLOTLOCK_TEST_DISABLE_FENCING"] = "1"
        if self.config.disable_day_bounds:
            env["SLOTLOCK_TEST_DISABLE_DAY_BOUNDS"] = "1"
        return env

    def worker_link(self, slot: int) -> Link:
        return self.proxy.link(f"worker{slot}")

    def web_link(self) -> Link:
        return self.proxy.link("web")

    def start_worker(self, slot: int) -> Proc:
        self._generation += 1
        name = f"w{slot}g{self._generation}"
        env = {**self.base_env(), "REDIS_URL": self.worker_link(slot).url,
               "SLOTLOCK_WORKER_ID": name, "SLOTLOCK_FAILPOINT": "stop_before_commit:usr1"}
        proc = Proc(name, [sys.executable, "-m", "slotlock", "worker"],
                    self.run_dir / f"{name}.log", env)
        old = self.workers.get(slot)
        if old is not None:
            self.retired.append(old)
        self.workers[slot] = proc
        return proc

    def start_jobs(self, slot: int) -> Proc:
        self._generation += 1
        name = f"jobs{slot}g{self._generation}"
        env = {**self.base_env(), "REDIS_URL": self.proxy.link("jobs").url,
               "SLOTLOCK_WORKER_ID": name, **self.config.jobs_env}
        proc = Proc(name, [sys.executable, "-m", "slotlock", "jobs"],
                    self.run_dir / f"{name}.log", env)
        old = self.jobs.get(slot)
        if old is not None:
            self.retired.append(old)
        self.jobs[slot] = proc
        return proc

    def start_web(self, slot: int) -> Proc:
        self._generation += 1
        name = f"web{slot}g{self._generation}"
        port = self.web_ports[slot]
        env = {**self.base_env(), "REDIS_URL": self.web_link().url, "PORT": str(port)}
        proc = Proc(name, procfile_web_argv(port, self.config.web_workers),
                    self.run_dir / f"{name}.log", env)
        old = self.webs.get(slot)
        if old is not None:
            self.retired.append(old)
        self.webs[slot] = proc
        return proc

    def wait_web_ready(self, slot: int, timeout: float = 30.0) -> float:
        port = self.web_ports[slot]
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if not self.webs[slot].alive():
                raise RuntimeError(f"web {slot} exited: {self.webs[slot].log()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"web {slot} not ready after {timeout}s")

    def web_urls(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.web_ports.values()]

    # -- what the processes report -------------------------------------------------------

    def all_procs(self) -> list[Proc]:
        return [*self.retired, *self.workers.values(), *self.webs.values(),
                *self.jobs.values()]

    def log_count(self, pattern: str, procs: list[Proc] | None = None) -> int:
        regex = re.compile(pattern)
        return sum(len(regex.findall(p.log())) for p in (procs or self.all_procs()))

    def restart_redis(self, down_s: float = 0.3) -> float:
        """Crash redis-server (SIGKILL) and start it again on the same port and data."""
        self.redis_server.kill()
        time.sleep(down_s)
        started = time.monotonic()
        self.redis_server.start(timeout=30)
        return time.monotonic() - started
