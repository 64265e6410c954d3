"""The fenced lease scripts, on fakeredis and on a real redis-server."""

import time

import pytest

from slotlock.days.keys import DayKeys
from slotlock.days.lease import DayLease
from slotlock.days.scripts import Scripts
from slotlock.errors import LeaseLost

KEYS = DayKeys("main:2026-12-01")


def lease(client, holder, ttl_ms=1000):
    return DayLease(client, Scripts(client), KEYS, holder, ttl_ms)


def test_every_grant_takes_a_larger_token(any_redis):
    tokens = []
    for holder in ("a", "b", "c"):
        held = lease(any_redis, holder)
        assert held.acquire()
        tokens.append(held.token)
        held.release()
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_a_held_lease_is_refused_with_its_remaining_time(any_redis):
    a, b = lease(any_redis, "a", 5000), lease(any_redis, "b")
    assert a.acquire()
    assert not b.acquire()
    assert 0 < b.retry_in_ms <= 5000
    assert any_redis.get(KEYS.lease) == a.value == f"{a.token}:a:{a.nonce}"


def test_renew_and_release_only_for_the_current_token(any_redis):
    a = lease(any_redis, "a", 100)
    assert a.acquire()
    old_token = a.token
    any_redis.delete(KEYS.lease)  # as if it expired
    b = lease(any_redis, "b", 5000)
    assert b.acquire() and b.token == old_token + 1
    with pytest.raises(LeaseLost):
        a.renew()
    stale = lease(any_redis, "a")
    stale.token = old_token
    assert stale.release() is False
    assert any_redis.get(KEYS.lease) == b.value


def test_same_holder_reacquiring_gets_a_new_token_not_the_old_one(any_redis):
    a1 = lease(any_redis, "a", 100)
    assert a1.acquire()
    any_redis.delete(KEYS.lease)
    a2 = lease(any_redis, "a", 5000)
    assert a2.acquire() and a2.token == a1.token + 1
    with pytest.raises(LeaseLost):
        a1.renew()  # same holder name, older token: not ours any more


def test_lease_expires_by_itself_on_a_real_server(real_redis):
    a = lease(real_redis, "a", 100)
    assert a.acquire()
    time.sleep(0.2)
    b = lease(real_redis, "b")
    assert b.acquire() and b.token == a.token + 1
    with pytest.raises(LeaseLost):
        a.renew()


def test_renew_extends_the_expiry(real_redis):
    a = lease(real_redis, "a", 300)
    assert a.acquire()
    for _ in range(4):
        time.sleep(0.1)
        a.renew()
    assert real_redis.pttl(KEYS.lease) > 150
