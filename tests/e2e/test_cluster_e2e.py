"""Issue 12 (the preview of docs/cluster.md): the Procfile's web line and two
``slotlock worker`` processes with ``SLOTLOCK_REDIS_CLUSTER=on`` on a real local Redis
Cluster of three primaries. One slot raced by many gives one 201; random contended
bookings over several days store no overlap and every 201 is stored; the jobs refuse."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from slotlock.embedded import RedisServer
from slotlock.embedded_cluster import LocalCluster
from slotlock.redis_conn import connect
from tests.jobs_support import Receiver
from tests.procs import wait_for

from .http_stack import HttpStack, stop

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
BOOKINGS = "/api/v1/calendars/main/bookings"
DAYS = ["2031-02-03", "2031-02-04", "2031-02-05"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster-e2e")
    with LocalCluster(tmp / "cluster", primaries=3) as cluster:
        with HttpStack(tmp / "stack", workers=2, redis=cluster,
                       env={"SLOTLOCK_REDIS_CLUSTER": "on",
                            "SLOTLOCK_MAX_REPLY_WAITS": "32"}) as running:
            yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bookings_of(stack, token: str, day: str) -> list[dict]:
    response = requests.get(f"{stack.url}/api/v1/calendars/main/days/{day}",
                            headers=bearer(token), timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["bookings"]


def test_one_slot_raced_by_30_gives_one_201(stack):
    tokens = [stack.token(f"racer{i}") for i in range(30)]
    barrier = threading.Barrier(30, timeout=30)
    body = {"start": "2031-02-02T09:00", "end": "2031-02-02T10:00", "title": "the slot"}

    def attempt(token: str) -> int:
        session = requests.Session()
        barrier.wait()
        return session.post(stack.url + BOOKINGS, json=body, headers=bearer(token),
                            timeout=30).status_code

    with ThreadPoolExecutor(30) as pool:
        statuses = sorted(pool.map(attempt, tokens))
    assert statuses == [201] + [409] * 29, statuses
    assert len(bookings_of(stack, tokens[0], "2031-02-02")) == 1


def test_contended_bookings_over_days_store_no_overlap_and_every_201(stack):
    tokens = [stack.token(f"client{i}") for i in range(6)]
    created: list[dict] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(i)
        session = requests.Session()
        for _ in range(40):
            day = rng.choice(DAYS)
            start = rng.randrange(8 * 4, 18 * 4 - 4)  # quarter hours
            length = rng.randrange(1, 5)
            body = {"start": f"{day}T{start // 4:02d}:{start % 4 * 15:02d}",
                    "end": f"{day}T{(start + length) // 4:02d}:{(start + length) % 4 * 15:02d}",
                    "title": f"c{i}"}
            response = session.post(stack.url + BOOKINGS, json=body,
                                    headers=bearer(tokens[i]), timeout=30)
            assert response.status_code in (201, 409), response.text
            if response.status_code == 201:
                with lock:
                    created.append(response.json())

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(client, range(6)))
    assert created
    stored = {b["id"]: b for day in DAYS for b in bookings_of(stack, tokens[0], day)}
    assert {b["id"] for b in created} == set(stored)
    for day in DAYS:
        spans = sorted((b["start"], b["end"]) for b in stored.values()
                       if b["start"].startswith(day))
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, (day, spans)


def test_the_jobs_need_a_standalone_redis_for_rq_and_then_deliver_webhooks(stack, tmp_path):
    done = subprocess.run([sys.executable, "-m", "slotlock", "jobs", "--burst"], env=stack.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "SLOTLOCK_JOBS_REDIS_URL" in done.stderr, done.stderr[-2000:]
    on_cluster = subprocess.run([sys.executable, "-m", "slotlock", "jobs", "--burst"],
                                env={**stack.env, "SLOTLOCK_JOBS_REDIS_URL": stack.redis.url},
                                capture_output=True, text=True, timeout=60)
    assert on_cluster.returncode == 1, on_cluster.stderr[-2000:]
    assert "rq needs a standalone Redis" in on_cluster.stderr
    status = subprocess.run([sys.executable, "-m", "slotlock", "status", "--json"],
                            env=stack.env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr[-2000:]
    with RedisServer(tmp_path / "rq") as rq_redis, Receiver() as receiver:
        env = {**stack.env, "SLOTLOCK_JOBS_REDIS_URL": rq_redis.url}
        put = subprocess.run([sys.executable, "-m", "slotlock", "calendar", "put", "main",
                              "--webhook-url", receiver.url], env=env, capture_output=True,
                             text=True, timeout=60)
        assert put.returncode == 0, put.stderr[-2000:]
        jobs = subprocess.Popen([sys.executable, "-m", "slotlock", "jobs"], env=env,
                                stdout=open(tmp_path / "jobs.log", "wb"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            token = stack.token("hooked")
            response = requests.post(stack.url + BOOKINGS, headers=bearer(token), timeout=30,
                                     json={"start": "2031-02-09T09:00",
                                           "end": "2031-02-09T10:00", "title": "hooked"})
            assert response.status_code == 201, response.text
            wait_for(lambda: any(e["booking"]["title"] == "hooked"
                                 for e in receiver.unique_events().values()), 30,
                     what="the webhook of the booking")
            # rq's keys are on its own Redis, none on the cluster
            assert connect(rq_redis.url).exists("rq:queues")
            assert not connect(stack.redis.url, cluster=True).keys("rq:*")
        finally:
            stop(jobs)
        assert jobs.returncode == 0, (tmp_path / "jobs.log").read_text()[-3000:]
