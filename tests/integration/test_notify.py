"""Publishing the outbox: signed, in order, at least once, deduplicated by event id; on rq."""

from __future__ import annotations

import json

import fakeredis
import pytest
from rq import SimpleWorker
from rq.registry import FailedJobRegistry

from slotlock.days.keys import OUTBOX_DAYS, DayKeys, delivered_key
from slotlock.webhooks import rotate_secret
from slotlock.workers import jobs
from slotlock.workers.audit import list_findings
from slotlock.workers.notify import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    DeliveryFailed,
    Publisher,
    sign,
    sweep_outboxes,
    verify,
)
from tests.conftest import make_settings
from tests.jobs_support import Receiver, history, put_calendar

PART = "main:2024-01-10"
KEYS = DayKeys(PART)


def test_a_signature_verifies_only_the_exact_body_within_its_tolerance():
    body = b'{"event_id":"main:2024-01-10/1-0"}'
    header = sign("s3cret", body, 1_700_000_000)
    assert verify("s3cret", header, body, now=1_700_000_010)
    assert not verify("s3cret", header, body + b" ", now=1_700_000_010)
    assert not verify("other", header, body, now=1_700_000_010)
    assert not verify("s3cret", header, body, now=1_700_000_000 + 301)
    assert not verify("s3cret", "garbage", body)


class Recorder:
    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple[str, bytes, dict]] = []
        self.fail_at = fail_at

    def __call__(self, url, body, headers, timeout):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            self.fail_at = None
            raise DeliveryFailed(headers[EVENT_ID_HEADER], url, "HTTP 503")
        self.calls.append((url, body, headers))


def with_events(settings, redis) -> list[str]:
    put_calendar(redis, webhook_url="http://127.0.0.1:9/hook")
    history(settings, redis)
    return redis.lrange(KEYS.outbox, 0, -1)


def test_the_outbox_is_delivered_in_order_signed_and_then_trimmed(any_redis):
    settings = make_settings()
    outbox = with_events(settings, any_redis)
    secret = rotate_secret(any_redis, "main")
    types = [json.loads(e)["type"] for e in outbox]
    assert types == ["booking.created"] * 3 + ["booking.cancelled"]
    assert any_redis.zscore(OUTBOX_DAYS, PART)  # the lease worker's hint

    post = Recorder()
    result = Publisher(any_redis, settings, post).publish_day(PART)

    assert result.delivered == 4
    assert [body.decode() for _, body, _ in post.calls] == outbox
    for _, body, headers in post.calls:
        assert verify(secret, headers[SIGNATURE_HEADER], body)
        assert headers[EVENT_ID_HEADER] == json.loads(body)["event_id"]
    assert any_redis.llen(KEYS.outbox) == 0
    assert any_redis.zscore(OUTBOX_DAYS, PART) is None
    assert Publisher(any_redis, settings, post).publish_day(PART).delivered == 0


def test_a_failure_keeps_the_rest_in_order_and_a_retry_does_not_resend(any_redis):
    settings = make_settings()
    outbox = with_events(settings, any_redis)
    rotate_secret(any_redis, "main")
    post = Recorder(fail_at=2)
    with pytest.raises(DeliveryFailed):
        Publisher(any_redis, settings, post).publish_day(PART)
    assert any_redis.lrange(KEYS.outbox, 0, -1) == outbox[2:]
    assert not any_redis.exists(f"sl:notify:lock:{PART}")  # the lock is released
    Publisher(any_redis, settings, post).publish_day(PART)
    assert [body.decode() for _, body, _ in post.calls] == outbox


def test_an_event_marked_delivered_before_a_crash_is_not_sent_again(any_redis):
    settings = make_settings()
    outbox = with_events(settings, any_redis)
    rotate_secret(any_redis, "main")
    # crash after the POST and the mark, before the ack: the entry is still in the outbox
    any_redis.set(delivered_key(json.loads(outbox[0])["event_id"]), "1")
    post = Recorder()
    result = Publisher(any_redis, settings, post).publish_day(PART)
    assert (result.skipped, result.delivered) == (1, 3)
    assert [body.decode() for _, body, _ in post.calls] == outbox[1:]


def test_ack_removes_only_what_was_delivered_even_with_a_concurrent_commit(any_redis):
    settings = make_settings()
    outbox = with_events(settings, any_redis)
    publisher = Publisher(any_redis, settings, Recorder())
    any_redis.rpush(KEYS.outbox, "late event")  # appended by a commit after our read
    assert publisher.scripts.outbox_ack(keys=[KEYS.outbox], args=outbox[:2]) == 2
    assert publisher.scripts.outbox_ack(keys=[KEYS.outbox], args=outbox[:2]) == 0  # no longer the head
    assert any_redis.lrange(KEYS.outbox, 0, -1) == outbox[2:] + ["late event"]


def test_a_day_held_by_another_publisher_is_left_to_it(any_redis):
    settings = make_settings()
    with_events(settings, any_redis)
    any_redis.set(f"sl:notify:lock:{PART}", "someone")
    result = Publisher(any_redis, settings, Recorder()).publish_day(PART)
    assert result.locked and any_redis.llen(KEYS.outbox) == 4


def test_the_sweep_finds_an_outbox_whose_hint_was_lost(any_redis):
    settings = make_settings()
    with_events(settings, any_redis)
    any_redis.delete(OUTBOX_DAYS)
    assert sweep_outboxes(any_redis) == 1
    assert any_redis.zscore(OUTBOX_DAYS, PART)


# -- on rq, with fakeredis (Lua) -------------------------------------------------------------

@pytest.fixture
def rq_ctx():
    server = fakeredis.FakeServer()
    decoded = fakeredis.FakeRedis(server=server, decode_responses=True)
    raw = fakeredis.FakeRedis(server=server)
    # development: the receiver is plain http on loopback
    ctx = jobs.configure(make_settings(env="development", notify_retry_intervals="0,0"),
                         client=decoded, rq=raw)
    yield ctx
    jobs._override = None
    jobs._context = None


def run_queued(ctx):
    jobs.make_worker(ctx, SimpleWorker).work(burst=True)


def test_publish_jobs_run_on_rq_once_per_outbox_head(rq_ctx):
    with Receiver() as receiver:
        put_calendar(rq_ctx.client, webhook_url=receiver.url)
        secret = rotate_secret(rq_ctx.client, "main")
        history(rq_ctx.settings, rq_ctx.client)
        assert jobs.dispatch_publishes(rq_ctx) == 1
        assert jobs.dispatch_publishes(rq_ctx) == 0  # a second process: same job id, unique
        run_queued(rq_ctx)
        assert len(receiver.events()) == 4 == len(receiver.unique_events())
        for headers, body in receiver.requests:
            assert verify(secret, headers[SIGNATURE_HEADER], body)
    assert rq_ctx.client.llen(KEYS.outbox) == 0
    assert jobs.dispatch_publishes(rq_ctx) == 0
    assert rq_ctx.client.zscore(OUTBOX_DAYS, PART) is None


def test_a_failed_delivery_is_retried_by_rq(rq_ctx):
    with Receiver(statuses=[500, 503]) as receiver:
        put_calendar(rq_ctx.client, webhook_url=receiver.url)
        rotate_secret(rq_ctx.client, "main")
        history(rq_ctx.settings, rq_ctx.client)
        jobs.dispatch_publishes(rq_ctx)
        # intervals "0,0": rq puts the failed job straight back, so one burst sees it through
        run_queued(rq_ctx)
        statuses_seen = len(receiver.requests)
        assert statuses_seen == 6  # refused twice, then four taken
        assert [e["event_id"] for e in receiver.events()[:3]] == [
            receiver.events()[0]["event_id"]] * 3
        assert len(receiver.unique_events()) == 4
    assert rq_ctx.client.llen(KEYS.outbox) == 0


def test_a_job_that_exhausts_its_retries_leaves_the_events_for_the_next_dispatch(rq_ctx):
    with Receiver(statuses=[500, 500, 500]) as receiver:
        put_calendar(rq_ctx.client, webhook_url=receiver.url)
        rotate_secret(rq_ctx.client, "main")
        history(rq_ctx.settings, rq_ctx.client)
        jobs.dispatch_publishes(rq_ctx)
        run_queued(rq_ctx)
        assert len(receiver.requests) == 3 and rq_ctx.client.llen(KEYS.outbox) == 4
        failed = FailedJobRegistry(queue=jobs.queue(rq_ctx)).get_job_ids()
        assert len(failed) == 1
        # the failed job keeps its id for failure_ttl; a job under a second id takes over
        assert jobs.dispatch_publishes(rq_ctx) == 1
        assert jobs.dispatch_publishes(rq_ctx) == 0  # once per ORPHAN_RETRY_S
        run_queued(rq_ctx)
        assert len(receiver.unique_events()) == 4
    assert rq_ctx.client.llen(KEYS.outbox) == 0


def test_periodic_jobs_are_enqueued_once_per_slot_by_any_number_of_tickers(rq_ctx):
    first, second = jobs.Ticker(rq_ctx, clock=lambda: 1_000_000.0), jobs.Ticker(
        rq_ctx, clock=lambda: 1_000_000.5)
    first.tick()
    second.tick()
    ids = sorted(jobs.queue(rq_ctx).job_ids)
    assert len(ids) == len(jobs.PERIODIC) == len({i.rsplit("-", 1)[0] for i in ids})
    later = jobs.Ticker(rq_ctx, clock=lambda: 1_000_000.0 + 86_400)
    later.tick()
    assert len(jobs.queue(rq_ctx).job_ids) == 2 * len(jobs.PERIODIC)


def test_the_periodic_jobs_run_on_rq(rq_ctx):
    history(rq_ctx.settings, rq_ctx.client)
    part_keys = DayKeys(PART)
    bookings = json.loads(rq_ctx.client.hget(part_keys.state, "bookings"))
    rq_ctx.client.hset(part_keys.state, "bookings", json.dumps(bookings + bookings[:1]))
    q = jobs.queue(rq_ctx)
    recent = q.enqueue(jobs.audit_recent_job)
    nightly = q.enqueue(jobs.audit_nightly_job, "2024-01-12")
    retain = q.enqueue(jobs.retention_job)
    run_queued(rq_ctx)
    assert recent.return_value()["with_findings"] == [PART]
    assert nightly.return_value() == {"audited": 1, "with_findings": [PART]}
    assert retain.return_value()["retained"] == []  # a day with findings is never trimmed
    assert [f["day"] for f in list_findings(rq_ctx.client)] == [PART]


def test_the_lock_of_a_dead_scheduler_is_released_for_the_next_rq_worker(real_redis):
    """Found by the fault harness: a Redis restart killed rq's scheduler while it held its
    lock; the next rq worker could not schedule retries of refused deliveries for minutes."""
    from types import SimpleNamespace

    from slotlock.workers.jobs import Context, release_dead_scheduler_lock

    ctx = Context(make_settings(), real_redis, real_redis, 0)  # the lock is rq's: on ctx.rq
    key = "rq:scheduler-lock:slotlock"
    dead = SimpleNamespace(is_alive=lambda: False)
    alive = SimpleNamespace(is_alive=lambda: True)
    real_redis.set(key, "sched-a")
    assert not release_dead_scheduler_lock(ctx, SimpleNamespace(
        scheduler=SimpleNamespace(name="sched-a", _process=alive)))
    assert not release_dead_scheduler_lock(ctx, SimpleNamespace(
        scheduler=SimpleNamespace(name="sched-b", _process=dead)))  # someone else's
    assert real_redis.get(key) == "sched-a"
    assert release_dead_scheduler_lock(ctx, SimpleNamespace(
        scheduler=SimpleNamespace(name="sched-a", _process=dead)))
    assert real_redis.get(key) is None


def test_a_publish_job_orphaned_by_a_dead_work_horse_is_replaced(rq_ctx):
    """Found by the fault harness: a work horse killed mid-publish (Redis restart) left its
    job "started"; the same job id was refused as a duplicate and the day's events waited
    until rq gave the job up, minutes later."""
    from rq.job import Job, JobStatus

    from slotlock.days.keys import publish_lock_key

    part, head = "main:2030-01-01", "head-event"
    assert jobs.enqueue_publish(rq_ctx, part, head)
    orphan = Job.fetch(jobs.publish_job_id(part, head), connection=rq_ctx.rq,
                       serializer=jobs.SERIALIZER)
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # still queued: it will run
    orphan.set_status(JobStatus.STARTED)  # dequeued by a horse that then died
    rq_ctx.client.set(publish_lock_key(part), "live", px=1000)
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # a live publisher holds the day
    rq_ctx.client.delete(publish_lock_key(part))
    assert jobs.enqueue_publish(rq_ctx, part, head)  # nobody holds it: replaced
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # once per interval


def test_a_publish_job_dequeued_by_a_worker_that_died_before_starting_it_is_replaced(
        rq_ctx):
    """Found by CI's short chaos run (35 events of one day never arrived): rq 2 dequeues a
    job by moving it to an intermediate list and marks it started in the work horse; the
    rq worker died of a killed Redis connection in between, leaving the job "queued" but in
    no queue until rq's maintenance a minute later, and the ticker took "queued" for "it
    will run"."""
    part, head = "main:2030-01-01", "head-event"
    assert jobs.enqueue_publish(rq_ctx, part, head)
    queue = jobs.queue(rq_ctx)
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # queued: it will run
    rq_ctx.rq.lmove(queue.key, queue.intermediate_queue_key)  # what rq's dequeue does
    assert jobs.enqueue_publish(rq_ctx, part, head)  # in no queue: replaced
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # once per interval


def test_a_publish_retry_stranded_by_a_dead_rq_scheduler_is_replaced(rq_ctx):
    """Found by CI's short chaos run (51 events of one day never arrived): a delivery refused
    with a 503 is scheduled for a retry; a Redis error then killed rq's scheduler process,
    which rq restarts only at its next maintenance (10 minutes), so the retry never ran and
    the ticker kept seeing the job "scheduled"."""
    from datetime import UTC, datetime, timedelta

    from rq.job import Job

    part, head = "main:2030-01-01", "head-event"
    assert jobs.enqueue_publish(rq_ctx, part, head)
    job = Job.fetch(jobs.publish_job_id(part, head), connection=rq_ctx.rq,
                    serializer=jobs.SERIALIZER)
    queue = jobs.queue(rq_ctx)
    queue.remove(job)
    queue.schedule_job(job, datetime.now(UTC) + timedelta(seconds=2))
    assert not jobs.enqueue_publish(rq_ctx, part, head)  # its retry is due soon: it will run
    queue.schedule_job(job, datetime.now(UTC) - timedelta(seconds=jobs.STALLED_AFTER_S + 1))
    assert jobs.enqueue_publish(rq_ctx, part, head)  # overdue: nobody moves it; replaced
    assert not jobs.enqueue_publish(rq_ctx, part, head)


def test_a_publish_job_that_gave_up_is_replaced_while_its_events_wait(rq_ctx):
    """A job that used up its retries stays "failed" for its failure TTL; its events must
    not wait that long (nothing is lost, deliveries go on at most every ORPHAN_RETRY_S)."""
    from rq.job import Job, JobStatus

    part, head = "main:2030-01-01", "head-event"
    assert jobs.enqueue_publish(rq_ctx, part, head)
    job = Job.fetch(jobs.publish_job_id(part, head), connection=rq_ctx.rq,
                    serializer=jobs.SERIALIZER)
    job.set_status(JobStatus.FAILED)
    assert jobs.enqueue_publish(rq_ctx, part, head)
    assert not jobs.enqueue_publish(rq_ctx, part, head)


def test_the_jobs_process_waits_for_redis_to_make_its_next_rq_worker(monkeypatch):
    """Found by CI (tests/faults/test_jobs_survive.py, 1 run in 4): after a Redis restart
    the next rq worker was made while Redis was still down; rq names itself in Redis as it
    is made, the ConnectionError escaped, and `slotlock jobs` exited."""
    from types import SimpleNamespace

    import redis

    made = []

    def make_worker(ctx, **kwargs):
        made.append(kwargs["name"])
        if len(made) == 1:
            raise redis.ConnectionError("Error 111 connecting. Connection refused.")
        return SimpleNamespace(work=lambda **kw: None, _shutdown_requested_date=None,
                               _stop_requested=True)

    monkeypatch.setattr(jobs, "make_worker", make_worker)
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    monkeypatch.setattr(jobs, "Ticker", lambda ctx: SimpleNamespace(
        start=lambda: None, stop=lambda: None))
    settings = make_settings(redis_url="redis://127.0.0.1:9/0")
    try:
        assert jobs.run(settings) == 0
    finally:
        jobs._override = None
        jobs._context = None
    assert len(made) == 2
