"""Found by the fault harness: ``slotlock jobs`` must outlive Redis faults (the rq worker
quit on a connection error while redis-server restarted, and notifications stopped)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from slotlock.embedded import RedisServer
from tests.procs import Procs, wait_for

pytestmark = pytest.mark.e2e

LOCK = "rq:scheduler-lock:slotlock"


def running(pid: int) -> bool:
    """A live process: a dead child not yet reaped (a zombie) passes ``os.kill(pid, 0)``."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.parent.parent.is_dir():  # no procfs: the best that is portable
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def live_scheduler(direct: redis.Redis) -> int | None:
    """The pid of the rq scheduler holding the queue's lock, if that process runs."""
    name = direct.get(LOCK)
    pid = name and direct.hget(f"rq:scheduler:{name}", "pid")
    return int(pid) if pid and running(int(pid)) else None


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    yield server
    server.stop()


@pytest.mark.timeout(180)
def test_the_jobs_process_survives_dropped_connections_and_a_redis_restart(tmp_path, own_redis):
    procs = Procs(tmp_path, {"REDIS_URL": own_redis.url, "SLOTLOCK_NOTIFY_POLL_MS": "50",
                             "SLOTLOCK_AUDIT_INTERVAL_S": "1"})
    direct = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        jobs = procs.start("jobs", "jobs", SLOTLOCK_WORKER_ID="jobs-a")
        jobs.wait_log(r"Listening on|Worker .* started", timeout=30)
        for _ in range(4):  # the harness's client_kill
            direct.execute_command("CLIENT", "KILL", "TYPE", "normal")
            time.sleep(0.5)
        for down_s in (0.3, 1.0):  # the harness's redis_restart
            own_redis.kill()
            time.sleep(down_s)
            own_redis.start(timeout=30)
            time.sleep(2)
        assert jobs.poll() is None, f"slotlock jobs exited:\n{jobs.log()[-3000:]}"
        # and it still works: periodic audits are enqueued and run after the faults
        mark = len(jobs.log())
        wait_for(lambda: "audit-recent" in jobs.log()[mark:], 30, 0.2,
                 what=f"an audit after the faults:\n{jobs.log()[-3000:]}")
        # and a scheduler runs again (retries of refused webhook deliveries need it): one
        # killed by a Redis error is restarted, and the lock of one that died with the old
        # rq worker does not block for minutes. Found by CI (1 run in 9): the newest
        # scheduler's pid was checked once, and it was a zombie or gone.
        wait_for(lambda: live_scheduler(direct), 20, 0.1,
                 what=f"a live scheduler holding {LOCK} after the faults:\n"
                      f"{jobs.log()[-3000:]}")
    finally:
        procs.stop_all()
        direct.close()


@pytest.mark.timeout(90)
def test_a_dead_rq_scheduler_is_restarted_within_seconds(tmp_path, own_redis):
    """rq's scheduler process dies on any Redis error, and rq restarts it only at its
    worker's maintenance (every MAINTENANCE_S at best, once an idle dequeue returns: minutes),
    so retries of refused webhook deliveries waited that long."""
    procs = Procs(tmp_path, {"REDIS_URL": own_redis.url, "SLOTLOCK_NOTIFY_POLL_MS": "50"})
    direct = redis.Redis.from_url(own_redis.url, decode_responses=True)
    try:
        jobs = procs.start("jobs", "jobs", SLOTLOCK_WORKER_ID="jobs-a")
        first = wait_for(lambda: live_scheduler(direct), 30, 0.1,
                         what=f"a scheduler:\n{jobs.log()[-3000:]}")
        for _ in range(2):  # and again: the restarted one is watched too
            os.kill(first, signal.SIGKILL)
            restarted = wait_for(lambda: (pid := live_scheduler(direct)) != first and pid, 10,
                                 0.1, what=f"a new scheduler after SIGKILL of {first}:\n"
                                           f"{jobs.log()[-3000:]}")
            first = restarted
        assert jobs.poll() is None, jobs.log()[-3000:]
    finally:
        procs.stop_all()
        direct.close()
