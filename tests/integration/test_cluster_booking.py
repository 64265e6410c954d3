"""Issue 12, item 1: the booking path on a real local Redis Cluster (3 primaries).

The client and a lease worker (in a thread) use redis-py's cluster client; every order the
single-node pipelines keep (the index bumped after the append, a day's score and calendar
read before its commands, the notes after the commits) is kept by ``Staged`` with a round
trip per stage. ``tests/e2e/test_cluster_e2e.py`` runs the same with real processes
(``SLOTLOCK_REDIS_CLUSTER=on``)."""

from __future__ import annotations

import threading
from datetime import date, datetime

import pytest
from redis.cluster import RedisCluster, key_slot

from slotlock.client import Client
from slotlock.days.index import Shards
from slotlock.days.keys import (ACTIVE, CHANGED, DAYS, READY, SHARDS_ON_CLUSTER, DayKeys,
                                calendar_key)
from slotlock.days.staged import Staged
from slotlock.embedded_cluster import LocalCluster
from slotlock.redis_conn import connect, connect_blocking
from slotlock.workers.lease_worker import LeaseWorker
from tests.conftest import make_settings, open_default

DAY = date(2030, 12, 3)
pytestmark = pytest.mark.timeout(120)


def at(h, m=0, on=DAY):
    return datetime(on.year, on.month, on.day, h, m)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(tmp_path_factory.mktemp("cluster"), primaries=3) as running:
        yield running


@pytest.fixture
def settings(cluster):
    client = connect(cluster.url, cluster=True)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    return make_settings(redis_url=cluster.url, redis_cluster="off", lease_ttl_ms=500,
                         idle_release_ms=200, reply_timeout_ms=3000)


def cluster_client(settings) -> Client:
    return Client(settings, connect(settings.redis_url, cluster=True),
                  connect_blocking(settings.redis_url, block_ms=settings.reply_timeout_ms,
                                   cluster=True))


class ClusterWorker:
    def __init__(self, settings):
        self.worker = LeaseWorker(settings, connect(settings.redis_url, cluster=True),
                                  connect_blocking(settings.redis_url, block_ms=2000,
                                                   cluster=True))
        self.thread = threading.Thread(target=self.worker.work,
                                       kwargs={"install_signals": False}, daemon=True)

    def __enter__(self) -> LeaseWorker:
        self.thread.start()
        return self.worker

    def __exit__(self, *exc) -> None:
        self.worker.request_stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "the lease worker did not stop"


def test_the_keys_of_one_booking_span_nodes(cluster):
    """Else the tests below would prove little: the day's commands, its shard of the index
    and its calendar sit on different nodes, so the order the barriers keep (the score and
    the calendar read before the commands, the index bumped after the append) is an order
    between nodes."""
    keys = DayKeys.of("main", DAY)
    index_key = Shards(SHARDS_ON_CLUSTER).active(keys.part)
    day_node = cluster.primary_for(keys.cmds)
    assert cluster.primary_for(index_key) is not day_node
    assert cluster.primary_for(calendar_key("main")) is not day_node
    assert len({key_slot(k.encode()) for k in (keys.cmds, index_key, DAYS)}) == 3


def test_staged_runs_a_stage_per_barrier_on_a_cluster_and_one_on_a_single_node(settings,
                                                                                 real_redis):
    on_cluster = Staged(connect(settings.redis_url, cluster=True))
    single = Staged(real_redis)
    for pipe in (on_cluster, single):
        pipe.set("sl:test:a", 1)
        pipe.barrier()
        pipe.barrier()  # an empty stage costs nothing
        pipe.get("sl:test:a")
        pipe.incr("sl:test:b")
        assert len(pipe) == 3
        assert pipe.stages == (2 if pipe is on_cluster else 1)
        assert pipe.execute() == [True, "1", 1]


def test_book_conflict_and_cancel_on_a_cluster(settings):
    client = cluster_client(settings)
    open_default(client.redis, "Europe/Berlin")
    with ClusterWorker(settings):
        first = client.book("alice", "main", at(10), at(11), "standup")
        assert first.outcome["status"] == "accepted", first
        booking = first.outcome["booking"]
        clash = client.book("bob", "main", at(10, 30), at(11, 30), "retro")
        assert clash.outcome["error"]["code"] == "overlap"
        other_day = client.book("bob", "main", at(10, on=date(2030, 12, 4)),
                                at(11, on=date(2030, 12, 4)), "retro")
        assert other_day.outcome["status"] == "accepted"
        gone = client.cancel("alice", "main", booking["id"])
        assert gone.outcome["status"] == "accepted"
        assert client.read_day("main", DAY).bookings == []


def test_concurrent_bookings_of_one_slot_on_a_cluster_one_wins(settings):
    client = cluster_client(settings)
    open_default(client.redis, "UTC")
    outcomes = []

    def book(i):
        outcomes.append(cluster_client(settings).book(f"u{i}", "main", at(9), at(10), f"t{i}"))

    with ClusterWorker(settings):
        threads = [threading.Thread(target=book, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    statuses = sorted(r.outcome["status"] for r in outcomes)
    assert statuses.count("accepted") == 1 and len(statuses) == 8, statuses
    assert len(client.read_day("main", DAY).bookings) == 1


def test_the_index_and_the_wake_ups_are_sharded_on_a_cluster_only(settings, real_redis):
    assert Shards.of_client(real_redis).active_keys == {None: ACTIVE}  # one Redis: as before
    assert Shards.of_client(real_redis).ready_keys == {None: READY}
    shards = Shards(SHARDS_ON_CLUSTER)
    keys = [*shards.active_keys.values(), *shards.ready_keys.values()]
    assert len({key_slot(k.encode()) for k in keys}) == SHARDS_ON_CLUSTER  # a slot per shard
    client = cluster_client(settings)
    open_default(client.redis, "UTC")
    days = [date(2030, 12, d) for d in range(1, 13)]
    with ClusterWorker(settings):
        for day in days:
            assert client.book("alice", "main", at(9, on=day), at(10, on=day),
                               "x").outcome["status"] == "accepted"
    assert client.index.shards.count == SHARDS_ON_CLUSTER
    redis = client.redis
    assert not redis.exists(ACTIVE) and not redis.exists(READY)  # no global key
    used = {shards.of(DayKeys.of("main", day).part) for day in days}
    assert len(used) >= 4  # 12 days over 16 shards
    for shard in used:
        assert redis.xlen(shards.ready_keys[shard]) > 0


def test_the_barriers_order_the_stages_on_a_cluster(settings, monkeypatch):
    """Every ``Staged`` pipeline sent while booking on a cluster, by stage: the order that a
    barrier keeps (see ``days/staged.py``) holds between stages, whatever nodes the keys
    are on. Removing a barrier fails this test."""
    sent: list[list[list[tuple]]] = []  # per execution, per stage: (command, first key)
    execute = Staged.execute

    def recording(self, raise_on_error=True):
        sent.append([[(str(c.args[0]).upper(), *c.args[1:4])
                      for c in stage._execution_strategy.command_queue]
                     for stage in self._stages if len(stage)])
        return execute(self, raise_on_error)

    monkeypatch.setattr(Staged, "execute", recording)
    client = cluster_client(settings)
    open_default(client.redis, "UTC")
    sha = {name: getattr(client.scripts, name).sha for name in ("commit", "lease_acquire")}
    with ClusterWorker(settings):
        for day in (DAY, DAY, date(2030, 12, 4)):
            client.book("alice", "main", at(9, on=day), at(10, on=day), "x")

    def stages_of(execution, test) -> set[int]:
        return {i for i, stage in enumerate(execution) for cmd in stage if test(cmd)}

    def index(cmd):
        return cmd[0] in ("ZSCORE", "ZMSCORE") and ":active" in str(cmd[1])

    def script(name):
        return lambda cmd: cmd[0] == "EVALSHA" and cmd[1] == sha[name]

    checked = set()
    for execution in sent:
        submits = stages_of(execution, lambda c: c[0] == "EVAL" and ":cmds" in str(c[3]))
        if submits:  # noted before the append, bumped after it
            noted = stages_of(execution, lambda c: c[0] == "ZADD" and c[1] == DAYS)
            assert not noted or max(noted) < min(submits)
            assert min(submits) < min(stages_of(execution, lambda c: c[0] == "ZINCRBY"))
            checked.add("submit")
        reads = stages_of(execution, lambda c: c[0] == "XRANGE")
        if reads and stages_of(execution, index):  # the score before the commands
            assert max(stages_of(execution, index)) < min(reads)
            checked.add("read")
        acquired = stages_of(execution, script("lease_acquire"))
        if acquired and stages_of(execution, index):  # and before the acquisitions' reads
            assert max(stages_of(execution, index)) < min(acquired)
            checked.add("acquire")
        commits = stages_of(execution, script("commit"))
        notes = stages_of(execution, lambda c: c[0] == "ZADD" and c[1] == CHANGED)
        if commits and notes:  # the notes after the commits
            assert max(commits) < min(notes)
            checked.add("notes")
    assert {"submit", "acquire", "notes"} <= checked, checked
