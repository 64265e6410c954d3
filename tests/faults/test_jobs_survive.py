"""Found by the fault harness: ``slotlock jobs`` must outlive Redis faults (the rq worker
quit on a connection error while redis-server restarted, and notifications stopped)."""

from __future__ import annotations

import os
import re
import time

import pytest
import redis

from slotlock.embedded import RedisServer
from tests.procs import Procs, wait_for

pytestmark = pytest.mark.e2e


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
        # and a scheduler runs again (retries of refused webhook deliveries need it): the
        # lock of the scheduler that died with the old rq worker does not block for minutes
        wait_for(lambda: direct.get("rq:scheduler-lock:slotlock"), 10, 0.1,
                 what=f"a scheduler lock after the faults:\n{jobs.log()[-3000:]}")
        scheduler_pid = int(re.findall(r"Scheduler for slotlock started with PID (\d+)",
                                       jobs.log())[-1])
        os.kill(scheduler_pid, 0)  # alive
    finally:
        procs.stop_all()
        direct.close()
