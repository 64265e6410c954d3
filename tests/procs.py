"""Real processes for end-to-end tests: started with a log file, stopped by pid."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from slotlock.chaos.cluster import Proc as ClusterProc


def wait_for(predicate, timeout: float, interval: float = 0.01, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Proc(ClusterProc):
    """One slotlock process (``python -m slotlock ARGS``) writing to its own log file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]):
        super().__init__(log_path.stem, [sys.executable, "-m", "slotlock", *args], log_path, env)
        self.args = args

    def wait_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        regex = re.compile(pattern)
        return wait_for(lambda: regex.search(self.log()), timeout, 0.02,
                        f"/{pattern}/ in {self.log_path.name}:\n{self.log()[-3000:]}")

    send_signal = ClusterProc.send

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


class Procs:
    """Every process a test started, stopped by pid at the end even if the test failed."""

    def __init__(self, tmp_path: Path, env: dict[str, str]):
        self.tmp_path = tmp_path
        self.env = env
        self.started: list[Proc] = []

    def start(self, name: str, *args: str, **env) -> Proc:
        """``python -m slotlock ARGS`` with this set's environment plus ``env``."""
        merged = {**self.env, **{k: str(v) for k, v in env.items()}}
        proc = Proc(list(args), self.tmp_path / f"{name}-{len(self.started)}.log", merged)
        self.started.append(proc)
        return proc

    def worker(self, name: str, **env) -> Proc:
        return self.start(name, "worker", SLOTLOCK_WORKER_ID=name, **env)

    def cli(self, *args: str, check: bool = True, **env) -> subprocess.CompletedProcess:
        """Run a short ``slotlock`` command to its end."""
        merged = dict(os.environ, **self.env, **{k: str(v) for k, v in env.items()})
        return subprocess.run([sys.executable, "-m", "slotlock", *args], env=merged,
                              capture_output=True, text=True, timeout=30, check=check)

    def stop_all(self, timeout: float = 20.0) -> None:
        for proc in self.started:
            proc.stop(timeout)


class WorkerThread:
    """A real ``LeaseWorker`` in a thread of the test process (no signals; stopped warm)."""

    def __init__(self, settings):
        from slotlock.workers.lease_worker import LeaseWorker

        self.worker = LeaseWorker(settings)
        self.thread = threading.Thread(target=self.worker.work,
                                       kwargs={"install_signals": False}, daemon=True)

    def start(self) -> WorkerThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self.worker.request_stop()  # what SIGTERM does: finish the batch, release, exit
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the lease worker did not stop"

    def __enter__(self):
        return self.start().worker

    def __exit__(self, *exc) -> None:
        self.stop()
