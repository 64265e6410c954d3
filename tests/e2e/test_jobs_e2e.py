"""Real processes: lease worker, `slotlock jobs` (rq + scheduler), a private redis-server."""

from __future__ import annotations

import json
import signal
import time

import pytest

from slotlock.client import Client
from slotlock.days.keys import FINDINGS, OUTBOX_DAYS, DayKeys
from slotlock.workers.notify import SIGNATURE_HEADER, verify
from tests.conftest import make_settings
from tests.jobs_support import Receiver, at
from tests.procs import Procs, wait_for

pytestmark = pytest.mark.e2e

DAY = "2031-05-06"
PART = f"main:{DAY}"
KEYS = DayKeys(PART)


@pytest.fixture
def procs(tmp_path, redis_server, real_redis):
    # development: the receiver is plain http on loopback
    env = {"REDIS_URL": redis_server.url, "SECRET_KEY": "test", "SLOTLOCK_ENV": "development",
           "SLOTLOCK_LOG_LEVEL": "INFO"}
    p = Procs(tmp_path, env)
    yield p
    p.stop_all()


def log_of(proc) -> str:
    return proc.log()


def test_an_event_survives_a_lease_worker_killed_between_commit_and_notification(
        procs, real_redis, redis_server):
    with Receiver() as receiver:
        procs.cli("migrate")
        procs.cli("calendar", "put", "main", "--horizon-days", "0")
        put = procs.cli("calendar", "put", "main", "--webhook-url", receiver.url)
        secret = put.stdout.splitlines()[-1]  # shown once, as the last line
        worker = procs.start("worker", "worker", SLOTLOCK_FAILPOINT="kill_after_commit:1")
        client = Client(make_settings(redis_url=redis_server.url))
        result = client.book("ann", "main", at(DAY, "09:00"), at(DAY, "10:00"), "standup",
                             wait_ms=0)
        worker.wait(15)
        assert worker.returncode == -signal.SIGKILL, log_of(worker)
        # committed, with its event in the outbox; the note to the jobs rides in the commit's
        # pipeline, after it: lose it as a connection cut between the two would
        state = json.loads(real_redis.hget(KEYS.state, "bookings"))
        assert [b["title"] for b in state] == ["standup"]
        assert real_redis.llen(KEYS.outbox) == 1
        real_redis.zrem(OUTBOX_DAYS, PART)
        assert receiver.requests == []

        # two jobs processes, as during a deploy: the event still arrives, once
        jobs = [procs.start("jobs", "jobs"), procs.start("jobs", "jobs")]
        wait_for(lambda: receiver.requests and real_redis.llen(KEYS.outbox) == 0, 30,
                 what="the event to be delivered")
        time.sleep(1.5)  # a few more ticks: nothing is delivered again
        unique = receiver.unique_events()
        assert len(unique) == 1, receiver.events()
        event = next(iter(unique.values()))
        assert event["type"] == "booking.created"
        assert event["command_id"] == result.command_id
        assert event["booking"]["title"] == "standup"
        headers, body = receiver.requests[0]
        assert verify(secret, headers[SIGNATURE_HEADER], body)
        assert len(receiver.requests) == 1  # our own dedup held too

        for proc in jobs:  # warm shutdown on SIGTERM
            proc.send_signal(signal.SIGTERM)
        for proc in jobs:
            assert proc.wait(20) == 0, log_of(proc)


@pytest.mark.audit_findings_expected  # it plants a corruption for the audit to find
def test_the_scheduled_audit_finds_a_corruption_and_a_failing_webhook_is_retried(
        procs, real_redis, redis_server):
    with Receiver(statuses=[500, 502]) as receiver:
        procs.cli("migrate")
        procs.cli("calendar", "put", "main", "--horizon-days", "0")
        procs.cli("calendar", "put", "main", "--webhook-url", receiver.url)
        procs.start("worker", "worker")
        jobs = procs.start("jobs", "jobs", SLOTLOCK_AUDIT_INTERVAL_S="3",
                           SLOTLOCK_NOTIFY_RETRY_INTERVALS="1,1,1")
        client = Client(make_settings(redis_url=redis_server.url))
        for hour in ("09", "11"):
            outcome = client.book("ann", "main", at(DAY, f"{hour}:00"), at(DAY, f"{hour}:30"),
                                  "x", wait_ms=5000).outcome
            assert outcome and outcome["status"] == "accepted"
        # the audit of recently changed days runs every 3 s, over the last 6 s of commits
        assert real_redis.hlen(FINDINGS) == 0
        bookings = json.loads(real_redis.hget(KEYS.state, "bookings"))
        intruder = dict(bookings[0], id="20310506.00000000000000ff", title="intruder")
        real_redis.hset(KEYS.state, "bookings", json.dumps(bookings + [intruder]))
        found = wait_for(lambda: real_redis.hget(FINDINGS, PART), 20, what="the scheduled audit")
        wait_for(lambda: len(receiver.unique_events()) == 2, 30, what="retried deliveries")
        assert len(receiver.requests) >= 4  # two refusals, retried with backoff by rq
        overlap = [f for f in json.loads(found)["findings"] if f["code"] == "overlap"]
        assert {b["id"] for b in overlap[0]["details"]["bookings"]} == {bookings[0]["id"],
                                                                        intruder["id"]}
        audit = procs.cli("audit", check=False)
        assert audit.returncode == 1, audit.stdout + audit.stderr
        jobs.send_signal(signal.SIGTERM)
        assert jobs.wait(20) == 0, log_of(jobs)


def test_the_retention_job_trims_an_old_day_which_still_passes_the_audit(
        procs, real_redis, redis_server):
    old = "2024-01-10"
    keys = DayKeys(f"main:{old}")
    procs.cli("migrate")
    procs.cli("calendar", "put", "main", "--horizon-days", "0")
    procs.start("worker", "worker")
    client = Client(make_settings(redis_url=redis_server.url))
    for hour in ("09", "10", "11"):
        outcome = client.book("ann", "main", at(old, f"{hour}:00"), at(old, f"{hour}:30"), "x",
                              wait_ms=5000, admin=True).outcome  # admins may book the past
        assert outcome and outcome["status"] == "accepted"
    assert real_redis.xlen(keys.cmds) == 3
    jobs = procs.start("jobs", "jobs", SLOTLOCK_RETENTION_DAYS="30")
    wait_for(lambda: real_redis.hget(keys.snapshot, "cursor"), 20, what="the retention job")
    assert real_redis.xlen(keys.cmds) == 0
    assert real_redis.hget(keys.snapshot, "cursor") == real_redis.hget(keys.state, "cursor")
    audit = procs.cli("audit", "--calendar", "main", "--date", old)
    assert f"main:{old}: ok (cursor" in audit.stdout and "from snapshot" in audit.stdout
    jobs.send_signal(signal.SIGTERM)
    assert jobs.wait(20) == 0, log_of(jobs)
