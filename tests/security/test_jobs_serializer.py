"""rq jobs are JSON, not pickle: a job planted in Redis cannot make `slotlock jobs` run code."""

from __future__ import annotations

import json
import zlib

import fakeredis
import pytest
from rq import Queue, SimpleWorker
from rq.job import Job

from slotlock.workers import jobs
from tests.conftest import make_settings


class Planted:
    """Unpickling this object runs ``open(path, "w")``: code execution by deserialisation."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def ctx():
    server = fakeredis.FakeServer()
    context = jobs.configure(make_settings(), client=fakeredis.FakeRedis(
        server=server, decode_responses=True), rq=fakeredis.FakeRedis(server=server))
    yield context
    jobs._override = None
    jobs._context = None


def test_a_pickled_job_planted_on_the_queue_runs_no_code(ctx, tmp_path):
    marker = tmp_path / "pwned"
    Queue(jobs.QUEUE, connection=ctx.rq).enqueue(print, Planted(str(marker)))  # pickle
    assert not marker.exists()
    jobs.make_worker(ctx, SimpleWorker).work(burst=True)
    assert not marker.exists(), "the jobs worker unpickled a planted job"


def test_every_job_slotlock_enqueues_is_stored_as_json(ctx):
    jobs.enqueue_publish(ctx, "main:2031-05-06", "head")
    jobs.Ticker(ctx, clock=lambda: 1_000_000.0).tick()
    ids = jobs.queue(ctx).job_ids
    assert len(ids) == 1 + len(jobs.PERIODIC)
    for job_id in ids:
        data = ctx.rq.hget(Job.key_for(job_id), "data")
        func, _instance, _args, _kwargs = json.loads(zlib.decompress(data))
        assert func.startswith("slotlock.workers.jobs.")
