"""The fair share's counts and shedding (workers/share.py, share_beat.lua) against a real
redis-server: Redis's clock, the clean-up of stale counts, the share worked out, which days
are given up and when not."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from slotlock.days.index import WorkIndex
from slotlock.days.keys import READY, WORKER_LOAD, DayKeys
from slotlock.days.scripts import Scripts
from slotlock.workers import share as share_mod
from slotlock.workers.leases import LeaseBook
from slotlock.workers.share import FairShare


def make_share(client, holder: str) -> FairShare:
    scripts = Scripts(client)
    leases = LeaseBook(client, scripts, holder, ttl_ms=5000, renew_interval_ms=1000,
                       stats=Counter())
    return FairShare(WorkIndex(client, scripts), leases, Counter())


def beat(share: FairShare, alive: bool = True) -> list:
    live = share.leases.scripts.run_pipeline(lambda pipe: share.queue_beat(pipe, alive))[-1]
    if alive:
        share.took_beat(live)
    return live


def redis_now(client) -> float:
    sec, usec = client.time()
    return sec + usec / 1e6


def hold(share: FairShare, n: int, now: float) -> list[str]:
    parts = [f"main:2031-01-{i + 1:02d}" for i in range(n)]
    assert share.leases.try_acquire_many(parts, now) == n
    return parts


def test_counts_are_stamped_with_redis_clock_and_each_process_counts_once(real_redis):
    a, a2 = make_share(real_redis, "wa"), make_share(real_redis, "wa")  # same id, two processes
    live = beat(a)
    beat(a2)
    stored = real_redis.hgetall(WORKER_LOAD)
    assert set(stored) == {a.instance, a2.instance} and a.instance != a2.instance
    assert abs(json.loads(stored[a.instance])["at"] - redis_now(real_redis)) < 2
    assert live == [a.instance, 0]
    beat(a)
    assert a.fair == 0 and a.cap == share_mod.MIN_SLACK  # two live counts, not one


def test_stale_counts_are_not_counted_and_old_ones_are_deleted(real_redis):
    now = redis_now(real_redis)
    real_redis.hset(WORKER_LOAD, mapping={
        "gone:1": json.dumps({"held": 50, "at": now - share_mod.FORGET_S - 5}),
        "paused:1": json.dumps({"held": 50, "at": now - share_mod.LIVE_S - 1}),
        "junk:1": "not json",
        "live:1": json.dumps({"held": 7, "at": now}),
    })
    a = make_share(real_redis, "wa")
    live = beat(a)
    assert dict(zip(live[::2], live[1::2])) == {a.instance: 0, "live:1": 7}
    assert set(real_redis.hgetall(WORKER_LOAD)) == {a.instance, "paused:1", "live:1"}
    assert (a.fair, a.cap) == (4, 4 + share_mod.MIN_SLACK)
    beat(a, alive=False)
    assert a.instance not in real_redis.hgetall(WORKER_LOAD)


def test_a_worker_over_its_cap_gives_up_the_days_it_worked_least_lately(real_redis):
    a, b = make_share(real_redis, "wa"), make_share(real_redis, "wb")
    t0 = 1000.0
    parts = hold(a, 12, t0)
    for part in parts[6:]:
        a.leases.worked(a.leases.owned[part], t0 + 1)  # the last six worked lately
    beat(b)
    beat(a)
    assert (a.fair, a.cap) == (6, 8)
    assert a.shed(t0 + share_mod.SETTLED_S - 0.1) == []  # none held long enough yet
    given = a.shed(t0 + share_mod.SETTLED_S)
    assert sorted(given) == sorted(parts[:6])
    assert sorted(a.leases.owned) == sorted(parts[6:])
    assert all(real_redis.get(DayKeys(p).lease) is None for p in given)
    woken = real_redis.xrange(READY)
    assert sorted(e[1]["p"] for e in woken) == sorted(given)
    assert all(e[1].get("r") == "1" for e in woken)
    # the new count went with the releases, not a heartbeat later
    assert json.loads(real_redis.hget(WORKER_LOAD, a.instance))["held"] == 6
    # not taken back at once, then again later
    now = t0 + share_mod.SETTLED_S
    assert a.admit(given, now + 0.1) == []
    assert a.admit(given, now + share_mod.SHED_HOLD_S) == given


def test_no_second_shedding_before_every_count_knows_of_the_first(real_redis):
    a, b = make_share(real_redis, "wa"), make_share(real_redis, "wb")
    t0 = 1000.0
    hold(a, 12, t0)
    beat(b)
    beat(a)
    now = t0 + share_mod.SETTLED_S
    assert len(a.shed(now)) == 6
    # a stale view that still shows us over the cap: no shedding in the quiet time
    a.fair, a.cap = 2, 4
    assert a.shed(now + share_mod.QUIET_S - 0.1) == []
    assert len(a.shed(now + share_mod.QUIET_S)) == 4


def test_alone_there_is_no_share_and_nothing_is_given_up(real_redis):
    a = make_share(real_redis, "wa")
    hold(a, 10, 1000.0)
    beat(a)
    assert a.fair is None and a.shed(2000.0) == []
    assert len(a.leases.owned) == 10


@pytest.mark.parametrize("n_workers,held,expect", [(3, [10, 0, 0], 4), (4, [7, 1, 0, 0], 2)])
def test_the_fair_share_is_the_ceiling_of_the_mean(real_redis, n_workers, held, expect):
    now = redis_now(real_redis)
    for i, n in enumerate(held[1:]):
        real_redis.hset(WORKER_LOAD, f"w{i}:x", json.dumps({"held": n, "at": now}))
    a = make_share(real_redis, "wa")
    hold(a, held[0], 1000.0)
    beat(a)
    assert a.fair == expect


def test_a_connection_error_while_shedding_forgets_the_days_it_may_have_released(real_redis):
    """Redis may have run the releases before the connection broke: the days must leave the
    book (renewing a lease that may be free is waste, deciding on it is the fence's to stop;
    those not released lapse after the TTL), as ``release_idle`` does."""
    import redis as redis_lib

    a, b = make_share(real_redis, "wa"), make_share(real_redis, "wb")
    t0 = 1000.0
    parts = hold(a, 12, t0)
    beat(b)
    beat(a)

    def broken(build, **kwargs):
        raise redis_lib.ConnectionError("connection lost mid-pipeline")

    a.leases.scripts.run_pipeline = broken
    with pytest.raises(redis_lib.ConnectionError):
        a.shed(t0 + share_mod.SETTLED_S)
    assert len(a.leases.owned) == 6
    assert all(p not in a.leases.owned for p in parts[:6])
    # not taken back at once, and no second shedding straight away
    assert a.admit(parts[:6], t0 + share_mod.SETTLED_S + 0.1) == []
    a.fair, a.cap = 2, 4
    assert a.shed(t0 + share_mod.SETTLED_S + 0.1) == []
