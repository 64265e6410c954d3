"""The two stacks of the HTTP benchmark, each started from scratch on loopback and stopped
by pid: slotlock as deployed (the Procfile's web line + ``slotlock worker`` + a private
redis-server) and the conventional stack (``bench/conventional``: gunicorn gthread 2x8 +
a private PostgreSQL + a private redis-server for the rate limit).

Also: CPU seconds of a process tree from ``/proc``, and the host's busy share, so that a
figure taken on a shared machine says how shared it was.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "src"))

from slotlock.embedded import RedisServer, free_port
from slotlock.embedded_cluster import LocalCluster

CLK_TCK = os.sysconf("SC_CLK_TCK")
PG_USER = "slbench"


# -- processes -----------------------------------------------------------------------------

def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # fields from "state" on


def tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of ``root``'s live tree, plus its reaped children's."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])
            if pid == root:
                total += int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def host_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values[:8]) - idle, sum(values[:8])


def stop_pid(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
             timeout: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        process.send_signal(sig)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM unwind the run through its ``finally`` blocks, which stop every
    process by pid (SIGINT too when it was inherited ignored, as by a background job)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def wait_http(url: str, processes: list[subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args} exited with {p.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready in {timeout} s")


def shim_bin(directory: Path) -> Path:
    """``gunicorn`` and ``slotlock`` on PATH that run in this interpreter."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("gunicorn", "slotlock"):
        path = directory / name
        path.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {name} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return directory


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


# -- slotlock ------------------------------------------------------------------------------

class SlotlockStack:
    store = "redis-server"

    def __init__(self, tmp: Path, rate_limit: str, *, extra_env: dict[str, str] | None = None,
                 web_options: str | None = None, cluster_primaries: int = 0):
        """``cluster_primaries``: slotlock's data on a local Redis Cluster of that many
        primaries (no replicas), ``SLOTLOCK_REDIS_CLUSTER=on``: the stack "slotlock-cluster"."""
        self.name = "slotlock-cluster" if cluster_primaries else "slotlock"
        self.tmp = tmp / self.name
        self.web_options = web_options  # replaces the Procfile's --worker-class ... --threads N
        self.rate_limit = rate_limit
        self.extra_env = extra_env or {}
        self.cluster = (LocalCluster(self.tmp / "cluster", primaries=cluster_primaries)
                        if cluster_primaries else None)
        if self.cluster is not None:
            self.extra_env = {"SLOTLOCK_REDIS_CLUSTER": "on", **self.extra_env}
        self.redis = self.cluster or RedisServer(self.tmp / "redis")  # AOF everysec
        self.port = free_port()
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.web_command = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SlotlockStack:
        self.tmp.mkdir(parents=True)
        self.redis.start()  # a LocalCluster waits until every slot is served
        self.env = {
            **os.environ,
            "PATH": f"{shim_bin(self.tmp / 'bin')}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
            "REDIS_URL": self.redis.url,
            "PORT": str(self.port),
            "SLOTLOCK_ENV": "production",
            "SECRET_KEY": secrets.token_hex(32),
            "SLOTLOCK_RATE_LIMIT": self.rate_limit,
            **self.extra_env,
        }
        self.cli("migrate")
        self.web_command = procfile_line("web").replace("--bind 0.0.0.0:", "--bind 127.0.0.1:")
        if self.web_options:
            self.web_command = re.sub(r"--worker-class \S+ --workers \d+ --threads \d+",
                                      self.web_options, self.web_command)
        with open(self.tmp / "web.log", "wb") as log:
            self.web = subprocess.Popen(["/bin/sh", "-c", f"exec {self.web_command}"],
                                        env=self.env, stdout=log, stderr=log,
                                        start_new_session=True)
        with open(self.tmp / "worker.log", "wb") as log:
            self.worker = subprocess.Popen([sys.executable, "-m", "slotlock", "worker"],
                                           env={**self.env, "SLOTLOCK_WORKER_ID": "bench-w0"},
                                           stdout=log, stderr=log, start_new_session=True)
        wait_http(f"{self.url}/readyz", [self.web, self.worker])
        return self

    def cli(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "slotlock", *args], env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"slotlock {' '.join(args)}: {done.stderr or done.stdout}")
        self.last_returncode = done.returncode
        return done.stdout

    def add_user(self, name: str) -> str:
        return self.cli("user", "add", name).strip().splitlines()[-1]

    def put_calendar(self, calendar_id: str) -> None:
        self.cli("calendar", "put", calendar_id, "--timezone", "UTC", "--horizon-days", "0")

    def groups(self) -> dict[str, int]:
        redis_pids = ([node.process.pid for node in self.cluster.nodes] if self.cluster
                      else self.redis.process.pid)
        return {"web": self.web.pid, "worker": self.worker.pid, "redis-server": redis_pids}

    def stop(self) -> None:
        stop_pid(self.web)
        stop_pid(self.worker)
        self.redis.stop()


# -- the conventional stack ----------------------------------------------------------------

def _pg_user() -> tuple[int, int] | None:
    """PostgreSQL refuses to run as root: a system user for it, created once."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        PG_USER], check=True)
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def pg_binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/local/bin")
    if not found:
        raise RuntimeError(f"no {name} on PATH: PostgreSQL is needed for the conventional stack")
    return found


class PostgresServer:
    """A private PostgreSQL on a loopback port, its data in a temporary directory."""

    def __init__(self, synchronous_commit: str = "on"):
        self.synchronous_commit = synchronous_commit
        self.port = free_port()
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def start(self) -> PostgresServer:
        ids = _pg_user()
        self.dir = Path(tempfile.mkdtemp(prefix="slotlock-bench-pg-"))
        data, sock = self.dir / "data", self.dir / "sock"
        sock.mkdir()
        if ids:
            for path in (self.dir, sock):
                os.chown(path, *ids)
        as_user = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(self.dir)}
        subprocess.run([pg_binary("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], env=env,
                       check=True, capture_output=True, cwd=self.dir, **as_user)
        with open(self.dir / "postgres.log", "wb") as log:
            self.process = subprocess.Popen(
                [pg_binary("postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sock}",
                 "-c", f"synchronous_commit={self.synchronous_commit}",
                 "-c", "max_connections=60"],
                env=env, stdout=log, stderr=log, cwd=self.dir, start_new_session=True, **as_user)
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("postgres exited: "
                                   + (self.dir / "postgres.log").read_text()[-2000:])
            try:
                psycopg.connect(self.conninfo, connect_timeout=1).close()
                return self
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        stop_pid(self.process, signal.SIGINT)  # fast shutdown
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


class ConventionalStack:
    name = "conventional"
    store = "postgres"

    def __init__(self, tmp: Path, rate_limit: str, *, synchronous_commit: str = "on",
                 workers: int = 2, threads: int = 8):
        self.tmp = tmp / "conventional"
        self.rate_limit = rate_limit
        self.pg = PostgresServer(synchronous_commit)
        self.limits = RedisServer(self.tmp / "redis", appendonly=False)
        self.port = free_port()
        self.workers, self.threads = workers, threads
        self.web: subprocess.Popen | None = None
        self.web_command = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConventionalStack:
        from conventional import db

        self.tmp.mkdir(parents=True)
        self.pg.start()
        self.limits.start()
        db.apply_schema(self.pg.conninfo)
        argv = [sys.executable, "-m", "gunicorn", "app:create_app()",
                "--chdir", str(BENCH / "conventional"), "--bind", f"127.0.0.1:{self.port}",
                "--worker-class", "gthread", "--workers", str(self.workers),
                "--threads", str(self.threads), "--graceful-timeout", "20", "--timeout", "30"]
        self.web_command = " ".join(shlex.quote(a) for a in argv[1:])
        env = {**os.environ, "DATABASE_URL": self.pg.conninfo,
               "RATELIMIT_STORAGE_URI": self.limits.url, "RATE_LIMIT": self.rate_limit,
               "POOL_SIZE": str(self.threads)}
        with open(self.tmp / "web.log", "wb") as log:
            self.web = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                        start_new_session=True)
        wait_http(f"{self.url}/healthz", [self.web])
        return self

    def add_user(self, name: str) -> str:
        from conventional import db

        return db.add_user(self.pg.conninfo, name)

    def put_calendar(self, calendar_id: str) -> None:
        from conventional import db

        db.put_calendar(self.pg.conninfo, calendar_id)

    def groups(self) -> dict[str, int]:
        return {"web": self.web.pid, "postgres": self.pg.process.pid,
                "redis-server": self.limits.process.pid}

    def stop(self) -> None:
        stop_pid(self.web)
        self.limits.stop()
        self.pg.stop()
