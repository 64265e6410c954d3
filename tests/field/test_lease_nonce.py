"""Issue 9, bug 6: a lease value is unique per grant, even when the fence counter went back
(a Redis restart without appendfsync always, a failover) and two workers share an id."""

import pytest

from slotlock.days.keys import DayKeys
from slotlock.days.lease import DayLease, parse_lease
from slotlock.days.scripts import Scripts
from slotlock.days.store import DayStore
from slotlock.errors import FenceRejected

KEYS = DayKeys("main:2031-06-03")
OUT = [("main.20310603.00000000000000aa", '{"status":"rejected"}')]


def test_same_holder_same_token_after_the_fence_went_back_cannot_commit(any_redis):
    scripts = Scripts(any_redis)
    store = DayStore(any_redis, scripts)
    a = DayLease(any_redis, scripts, KEYS, "web.1-42", 10_000)
    assert a.acquire()
    # Redis lost its last second of writes: the fence counter and the lease are gone
    any_redis.delete(KEYS.lease)
    any_redis.set(KEYS.fence, a.token - 1)
    b = DayLease(any_redis, scripts, KEYS, "web.1-42", 10_000)  # a twin with the same id
    assert b.acquire() and b.token == a.token
    assert a.value != b.value
    store.commit(b, "0-0", "1-0", "[]", 1, OUT, [], 1000)
    with pytest.raises(FenceRejected):
        store.commit(a, "0-0", "1-0", "[]", 1, OUT, [], 1000)
    with pytest.raises(FenceRejected):  # nor mistake b's commit for its own earlier one
        store.commit(a, "0-0", "1-0", "[]", 1, OUT, [], 1000)


def test_a_repeated_commit_of_our_own_is_still_recognised(any_redis):
    scripts = Scripts(any_redis)
    store = DayStore(any_redis, scripts)
    a = DayLease(any_redis, scripts, KEYS, "w", 10_000)
    assert a.acquire()
    assert store.commit(a, "0-0", "1-0", "[]", 1, OUT, [], 1000) == 1
    assert store.commit(a, "0-0", "1-0", "[]", 1, OUT, [], 1000) == 1  # the reply was lost


def test_lease_values_read_back(any_redis):
    lease = DayLease(any_redis, Scripts(any_redis), KEYS, "host-1", 1000)
    assert lease.acquire()
    token, holder = parse_lease(any_redis.get(KEYS.lease))
    assert (token, holder) == (lease.token, "host-1")
