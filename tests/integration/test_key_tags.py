"""Issue 12, item 1 (a first part): a calendar's keys share the hash tag {cal:ID} and a
user's {user:NAME}, so their transactions stay in one Redis Cluster slot. Shown against a
real local cluster (before, Catalog.put and Users.add raised CrossSlotTransactionError);
and the keys of the release before are copied by ``slotlock migrate`` and kept in step
while processes of that release may still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from redis.cluster import RedisCluster, key_slot

from slotlock import legacy_keys
from slotlock.catalog import Catalog
from slotlock.days.keys import (LEGACY_KEYS_COPIED, calendar_changes_key, calendar_key,
                                calendar_revisions_key, legacy_calendar_keys,
                                legacy_user_keys, user_key, user_tokens_key,
                                webhook_secret_key)
from slotlock.embedded_cluster import LocalCluster
from slotlock.errors import MigrationNeeded
from slotlock.model import Calendar
from slotlock.redis_conn import check_server
from slotlock.users import Users
from slotlock.webhooks import rotate_secret, secret_of
from tests.conftest import make_settings


def test_a_calendars_keys_and_a_users_keys_each_share_one_slot():
    for calendar_id in ("main", "room-b", "x" * 64):
        keys = [calendar_key(calendar_id), calendar_revisions_key(calendar_id),
                calendar_changes_key(calendar_id), webhook_secret_key(calendar_id)]
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
    for name in ("bob", "a.b@example.org"):
        keys = [user_key(name), user_tokens_key(name)]
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys


@pytest.mark.timeout(60)
def test_calendars_and_users_work_on_a_redis_cluster(tmp_path):
    with LocalCluster(tmp_path, primaries=3) as cluster:
        client = RedisCluster.from_url(cluster.url, decode_responses=True)
        try:
            catalog = Catalog(client)
            first, changed = catalog.put(Calendar("room-b", "Room B", "Europe/Berlin"))
            assert changed and first.revision == 1
            second, changed = catalog.put(first.with_changes(name="Room B (big)"))
            assert changed and second.revision == 2
            catalog.put(Calendar("room-c", "Room C", "UTC"))
            assert [c.id for c in catalog.all()] == ["room-b", "room-c"]
            assert catalog.revision("room-b", 1).name == "Room B"
            assert catalog.lock_zone("room-b", "Europe/Berlin") is None
            secret = rotate_secret(client, "room-b")
            assert secret_of(client, "room-b") == secret

            users = Users(client)
            users.add("bob", password="bob-pw-123")
            users.add("bob", admin=True)
            token = users.issue_token("bob")
            assert users.authenticate(token).admin
            assert users.check_password("bob", "bob-pw-123") is not None
            assert [t.token_id for t in users.tokens("bob")] == [token[4:20]]
            assert users.remove("bob") and users.authenticate(token) is None
        finally:
            client.close()


def as_left_by_the_release_before(client) -> None:
    """Rename today's keys to the names the release before used (same contents)."""
    for calendar_id in client.smembers("sl:calendars"):
        for new, old in legacy_calendar_keys(calendar_id).items():
            if client.exists(new):
                client.rename(new, old)
    for name in client.smembers("sl:users"):
        for new, old in legacy_user_keys(name).items():
            if client.exists(new):
                client.rename(new, old)
    client.delete(LEGACY_KEYS_COPIED)


def migrate(redis_url: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, REDIS_URL=redis_url, SLOTLOCK_ENV="development", SECRET_KEY="x" * 32)
    return subprocess.run([sys.executable, "-m", "slotlock", "migrate"], env=env, check=False,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(60)
def test_migrate_copies_the_keys_of_the_release_before_and_keeps_them_in_step(
        redis_server, real_redis):
    catalog, users = Catalog(real_redis), Users(real_redis)
    catalog.put(Calendar("main", "Main", "Europe/Paris"))
    rotate_secret(real_redis, "main")
    users.add("bob", password="bob-pw-123")
    token = users.issue_token("bob")
    as_left_by_the_release_before(real_redis)
    old_main = legacy_calendar_keys("main")[calendar_key("main")]
    old_bob = legacy_user_keys("bob")[user_key("bob")]

    # this release sees nothing until migrate: every process refuses to start
    assert catalog.find("main") is None and users.authenticate(token) is None
    with pytest.raises(MigrationNeeded, match="slotlock migrate"):
        check_server(real_redis, make_settings(redis_url=redis_server.url))

    done = migrate(redis_server.url)
    assert done.returncode == 0, done.stderr
    assert "copied to their new names" in done.stdout
    assert "calendar main: present (time zone Europe/Paris" in done.stdout  # not made anew
    check_server(real_redis, make_settings(redis_url=redis_server.url))
    assert catalog.get("main").timezone == "Europe/Paris"
    assert users.authenticate(token).name == "bob"
    assert users.check_password("bob", "bob-pw-123") is not None
    assert real_redis.exists(old_main, old_bob) == 2  # kept for the processes of before

    # a change by this release reaches the old names too: an old worker watching the old
    # change stream reads the new rules, an old web process sees bob removed
    old_changes = legacy_calendar_keys("main")[calendar_changes_key("main")]
    before = len(real_redis.xrange(old_changes))
    changed, _ = catalog.put(catalog.get("main").with_changes(name="Main hall"))
    assert json.loads(real_redis.get(old_main))["name"] == "Main hall"
    assert len(real_redis.xrange(old_changes)) == before + 1
    users.remove("bob")
    assert not real_redis.keys("sl:user:*")  # record and token list

    # a migrate within the hour copies nothing more and deletes nothing
    assert migrate(redis_server.url).returncode == 0 and real_redis.exists(old_main)
    # the next release's migrate (an hour on) deletes the old names
    copied_at = float(real_redis.get(LEGACY_KEYS_COPIED))
    assert legacy_keys.migrate(real_redis, now=copied_at + legacy_keys.KEEP_S) == (0, 4)
    assert not real_redis.keys("sl:cal:*") and not real_redis.keys("sl:user:*")
    assert catalog.get("main").name == "Main hall"
