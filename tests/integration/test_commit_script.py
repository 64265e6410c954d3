"""Submit and the fenced commit, on fakeredis and on a real redis-server."""

import json

import pytest

from slotlock.days.keys import DayKeys
from slotlock.days.lease import DayLease
from slotlock.days.scripts import Scripts
from slotlock.days.store import DayStore
from slotlock.errors import Backpressure, CursorMismatch, FenceRejected

KEYS = DayKeys("main:2026-12-01")


def setup(client, n=3):
    store = DayStore(client)
    ids = [store.submit(KEYS, f"cmd{i}", json.dumps({"n": i})).stream_id for i in range(n)]
    return store, ids


def holder(client, name="w1", ttl=5000):
    lease = DayLease(client, Scripts(client), KEYS, name, ttl)
    assert lease.acquire()
    return lease


def commit(store, lease, base, ids, outcomes=None, events=()):
    outcomes = outcomes or [(f"cmd{i}", json.dumps({"status": "accepted", "i": i}))
                            for i in range(len(ids))]
    return store.commit(lease, base, ids[-1], '[{"id": "b"}]', len(ids), outcomes, list(events),
                        60_000)


def test_commit_writes_state_cursor_outcomes_replies_atomically(any_redis):
    store, ids = setup(any_redis)
    lease = holder(any_redis)
    assert store.read_state(KEYS).pending == 3
    assert store.read_commands(KEYS, "0-0", 10) == [(i, json.dumps({"n": n}))
                                                    for n, i in enumerate(ids)]
    assert commit(store, lease, "0-0", ids, events=['{"event_id": "e1"}']) == 3
    state = store.read_state(KEYS)
    assert (state.cursor, state.version, state.pending, state.applied, state.token) == (
        ids[-1], 3, 0, 3, lease.token)
    assert json.loads(store.outcome(KEYS, "cmd1")) == {"status": "accepted", "i": 1}
    assert any_redis.lrange(KEYS.reply("cmd2"), 0, -1) == [json.dumps({"status": "accepted",
                                                                       "i": 2})]
    assert 0 < any_redis.pttl(KEYS.reply("cmd2")) <= 60_000
    assert any_redis.lrange(KEYS.outbox, 0, -1) == ['{"event_id": "e1"}']
    assert any_redis.lrange(KEYS.tokens, 0, -1) == [str(lease.token)]
    assert store.read_commands(KEYS, ids[-1], 10) == []


def test_stale_token_commit_is_refused_and_writes_nothing(any_redis):
    store, ids = setup(any_redis)
    old = holder(any_redis, "old", ttl=5000)
    any_redis.delete(KEYS.lease)  # the lease lapsed while "old" was paused
    new = holder(any_redis, "new")
    assert commit(store, new, "0-0", ids[:1]) == 1
    with pytest.raises(FenceRejected) as refused:
        commit(store, old, "0-0", ids)
    assert refused.value.token == old.token
    state = store.read_state(KEYS)
    assert (state.cursor, state.version, state.applied, state.pending) == (ids[0], 1, 1, 2)
    assert store.outcome(KEYS, "cmd1") == ""  # still pending: the stale decision was not kept
    assert not any_redis.exists(KEYS.reply("cmd1"))
    assert any_redis.lrange(KEYS.tokens, 0, -1) == [str(new.token)]


def test_commit_without_any_lease_is_refused(any_redis):
    store, ids = setup(any_redis)
    lease = holder(any_redis)
    any_redis.delete(KEYS.lease)
    with pytest.raises(FenceRejected):
        commit(store, lease, "0-0", ids)
    assert store.read_state(KEYS).version == 0


def test_commit_from_an_old_cursor_is_refused(any_redis):
    store, ids = setup(any_redis)
    lease = holder(any_redis)
    commit(store, lease, "0-0", ids[:2])
    with pytest.raises(CursorMismatch):
        commit(store, lease, "0-0", ids)  # would apply the first two commands twice
    assert store.read_state(KEYS).applied == 2


def test_repeated_commit_after_a_lost_reply_is_recognised_as_ours(any_redis):
    store, ids = setup(any_redis)
    lease = holder(any_redis)
    assert commit(store, lease, "0-0", ids) == 3
    assert commit(store, lease, "0-0", ids) == 3  # same batch again: already applied, no-op
    assert store.read_state(KEYS).applied == 3


def test_idempotency_key_appends_once(any_redis):
    store = DayStore(any_redis)
    first = store.submit(KEYS, "cmdA", "{}", "alice:k1")
    again = store.submit(KEYS, "cmdB", "{}", "alice:k1")
    other = store.submit(KEYS, "cmdC", "{}", "bob:k1")
    assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
    assert again.command_id == "cmdA"
    assert len(store.read_commands(KEYS, "0-0", 10)) == 2
    assert store.read_state(KEYS).pending == 2


def test_backlog_limit_refuses_new_commands(any_redis):
    store = DayStore(any_redis)
    for i in range(3):
        store.submit(KEYS, f"c{i}", "{}", backlog_limit=3)
    with pytest.raises(Backpressure) as busy:
        store.submit(KEYS, "c4", "{}", backlog_limit=3)
    assert busy.value.pending == 3
    assert len(store.read_commands(KEYS, "0-0", 10)) == 3


def test_the_test_only_unfenced_build_differs_from_commit_lua_by_the_fence_alone(any_redis):
    from slotlock.days.scripts import source, unfenced

    broken = unfenced(source("commit"))
    assert 'return {0, "fenced"' not in broken and 'return {0, "cursor"' not in broken
    assert len(source("commit").splitlines()) - len(broken.splitlines()) == 10
    store, ids = setup(any_redis)
    stale = holder(any_redis, "old")
    any_redis.delete(KEYS.lease)
    holder(any_redis, "new")
    store.scripts.commit = any_redis.register_script(broken)
    commit(store, stale, "0-0", ids)  # lands: exactly what fencing exists to prevent
    assert store.read_state(KEYS).token == stale.token
