"""The list of workers (``sl:workers``, what ``slotlock status`` shows) is bounded (G8): a
worker not seen for a day is forgotten. Before, every worker id ever started stayed, and a
PaaS gives each deploy new ids (host-pid)."""

from __future__ import annotations

import json
import time

from slotlock.days.keys import WORKERS, WORKERS_SEEN
from slotlock.days.scripts import Scripts
from slotlock.workers import maintenance
from tests.conftest import make_settings
from tests.procs import wait_for


def test_the_script_forgets_workers_not_seen_lately_by_redis_clock(real_redis):
    scripts = Scripts(real_redis)
    real_redis.hset(WORKERS, "old-1", json.dumps({"id": "old-1"}))  # from before the list

    def seen(worker_id: str, forget_s: int) -> int:
        return scripts.run_pipeline(lambda pipe: scripts.queue(
            pipe, "workers_seen", [WORKERS, WORKERS_SEEN], [worker_id, forget_s]))[0]

    assert seen("w-1", 1) == 0
    assert set(real_redis.zrange(WORKERS_SEEN, 0, -1)) == {"old-1", "w-1"}
    time.sleep(2.1)
    real_redis.hset(WORKERS, "w-2", json.dumps({"id": "w-2"}))
    assert seen("w-2", 1) == 2  # old-1 and w-1: not seen for over a second
    assert set(real_redis.hkeys(WORKERS)) == {"w-2"}
    assert real_redis.zrange(WORKERS_SEEN, 0, -1) == ["w-2"]


def test_a_running_worker_forgets_dead_ones_and_keeps_itself(real_redis, redis_server,
                                                             start_worker, monkeypatch):
    monkeypatch.setattr(maintenance, "WORKER_FORGET_S", 1)
    real_redis.hset(WORKERS, "ghost-9", json.dumps({"id": "ghost-9", "alive": True}))
    start_worker(make_settings(redis_url=redis_server.url, worker_id="live-1"))
    wait_for(lambda: set(real_redis.hkeys(WORKERS)) == {"live-1"}, 10, 0.1,
             f"the ghost to be forgotten: {real_redis.hkeys(WORKERS)}")
    time.sleep(2.5)  # the worker's own beats keep it
    assert set(real_redis.hkeys(WORKERS)) == {"live-1"}
