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
from slotlock.days.keys import (LEGACY_KEYS_KEPT, DayKeys, calendar_changes_key, calendar_key,
                                calendar_revisions_key, legacy_calendar_keys,
                                legacy_user_keys, user_key, user_tokens_key,
                                webhook_secret_key)
from slotlock.embedded_cluster import LocalCluster
from slotlock.errors import MigrationNeeded, ZoneLocked
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


def test_no_calendar_or_user_key_is_a_days_key():
    """A user or calendar named like a date shares its tag with a day of a calendar named
    ``user`` or ``cal``: the suffixes keep the keys apart."""
    day_kinds = ("cmds", "state", "lease", "fence", "done", "idem", "outbox", "tokens",
                 "snapshot")
    for name in ("2026-12-04", "bob"):
        ours = {user_key(name), user_tokens_key(name), calendar_key(name),
                calendar_revisions_key(name), calendar_changes_key(name),
                webhook_secret_key(name)}
        for calendar_id in ("user", "cal"):
            days = DayKeys(f"{calendar_id}:{name}")
            theirs = {getattr(days, kind) for kind in day_kinds} | {days.reply("x")}
            assert not ours & theirs


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


# the names the release before used (literal: a wrong legacy_*_keys would not pass)
OLD = {"main": "sl:cal:main", "main_revisions": "sl:cal:main:revisions",
       "main_changes": "sl:cal:main:changes", "main_secret": "sl:cal:main:webhook-secret",
       "bob": "sl:user:bob", "bob_tokens": "sl:user:bob:tokens"}


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
    client.delete(LEGACY_KEYS_KEPT)


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, REDIS_URL=redis_url, SLOTLOCK_ENV="development", SECRET_KEY="x" * 32)
    return subprocess.run([sys.executable, "-m", "slotlock", *args], env=env, check=False,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def old_release(redis_server, real_redis):
    """Redis as the release before left it: calendar main (zone locked, webhook secret),
    user bob with a password and a token."""
    catalog, users = Catalog(real_redis), Users(real_redis)
    catalog.put(Calendar("main", "Main", "Europe/Paris"))
    catalog.lock_zone("main", "Europe/Paris")
    rotate_secret(real_redis, "main")
    users.add("bob", password="bob-pw-123")
    token = users.issue_token("bob")
    as_left_by_the_release_before(real_redis)
    assert real_redis.exists(*OLD.values()) == len(OLD)
    return catalog, users, token


@pytest.mark.timeout(60)
def test_nothing_runs_on_data_of_the_release_before_until_migrate(old_release, redis_server,
                                                                   real_redis):
    catalog, users, token = old_release
    assert catalog.find("main") is None and users.authenticate(token) is None
    with pytest.raises(MigrationNeeded, match="slotlock migrate"):
        check_server(real_redis, make_settings(redis_url=redis_server.url))
    for args in (["calendar", "put", "main", "--name", "x"], ["user", "add", "carl"],
                 ["status"], ["jobs", "--burst"]):
        done = cli(redis_server.url, *args)
        assert done.returncode == 1 and "slotlock migrate" in done.stderr, (args, done.stderr)
    assert real_redis.get("sl:{cal:main}") is None  # the put did not hide the real one


@pytest.mark.timeout(60)
def test_migrate_copies_the_keys_of_the_release_before_and_keeps_them_in_step(
        old_release, redis_server, real_redis):
    catalog, users, token = old_release
    done = cli(redis_server.url, "migrate")
    assert done.returncode == 0, done.stderr
    assert "copied to their new names" in done.stdout and "--drop-old-keys" in done.stdout
    assert "calendar main: present (time zone Europe/Paris" in done.stdout  # not made anew
    check_server(real_redis, make_settings(redis_url=redis_server.url))
    assert catalog.get("main").timezone == "Europe/Paris"
    assert users.authenticate(token).name == "bob"
    assert users.check_password("bob", "bob-pw-123") is not None
    assert real_redis.exists(*OLD.values()) == len(OLD)  # kept for the processes of before
    again = cli(redis_server.url, "migrate")
    assert again.returncode == 0 and "copied" not in again.stdout
    assert "--drop-old-keys" in cli(redis_server.url, "status").stdout

    # this release's changes are made under the old names too: an old worker watching the
    # old change stream reads the new rules; an old web process sees the new password
    before = len(real_redis.xrange(OLD["main_changes"]))
    catalog.put(catalog.get("main").with_changes(name="Main hall"))
    assert json.loads(real_redis.get(OLD["main"]))["name"] == "Main hall"
    assert json.loads(real_redis.get(OLD["main"]))["zone_locked"] is True
    assert len(real_redis.xrange(OLD["main_changes"])) == before + 1
    users.add("bob", password="bob-pw-456")
    assert real_redis.hget(OLD["bob"], "password") == real_redis.hget(user_key("bob"), "password")
    new_secret = rotate_secret(real_redis, "main")
    assert real_redis.get(OLD["main_secret"]) == new_secret
    # a calendar made now exists for old processes too (an old jobs process would drop
    # the events of a calendar it cannot find)
    catalog.put(Calendar("room-b", "Room B", "UTC"))
    assert json.loads(real_redis.get("sl:cal:room-b"))["name"] == "Room B"
    # an old web process locked room-b's zone at its first booking: no zone change here
    real_redis.set("sl:cal:room-b", json.dumps(
        {**json.loads(real_redis.get("sl:cal:room-b")), "zone_locked": True}))
    with pytest.raises(ZoneLocked):
        catalog.put(Calendar("room-b", "Room B", "Asia/Tokyo"))
    catalog.put(Calendar("room-b", "Room B, renamed", "UTC"))
    assert json.loads(real_redis.get("sl:{cal:room-b}")).get("zone_locked") is True

    # a token issued by an old process is listed under the old name only: removing bob
    # revokes it as well, and the old record goes
    real_redis.hset("sl:token:0123456789abcdef", mapping={"user": "bob", "hash": "x"})
    real_redis.sadd(OLD["bob_tokens"], "0123456789abcdef")
    assert users.remove("bob")
    assert users.authenticate(token) is None
    assert not real_redis.exists("sl:token:0123456789abcdef", OLD["bob"], OLD["bob_tokens"])

    # --drop-old-keys: an old key whose new name is missing is copied first, then the old
    # names go and nothing is mirrored any more
    real_redis.hset("sl:user:dora", mapping={"name": "dora", "admin": "0", "session": "s"})
    real_redis.sadd("sl:users", "dora")
    done = cli(redis_server.url, "migrate", "--drop-old-keys")
    assert done.returncode == 0, done.stderr
    assert not real_redis.keys("sl:cal:*") and not real_redis.keys("sl:user:*")
    assert users.get("dora") is not None and catalog.get("main").name == "Main hall"
    assert not legacy_keys.kept(real_redis)
    assert "--drop-old-keys" not in cli(redis_server.url, "status").stdout
    catalog.put(catalog.get("main").with_changes(name="Main hall 2"))
    assert not real_redis.keys("sl:cal:*")
    check_server(real_redis, make_settings(redis_url=redis_server.url))
    # an old name a write mirrored while the old names were dropped is left behind: it
    # does not stop this release, and the next --drop-old-keys deletes it
    real_redis.set(OLD["main"], real_redis.get("sl:{cal:main}"))
    check_server(real_redis, make_settings(redis_url=redis_server.url))
    assert cli(redis_server.url, "migrate", "--drop-old-keys").returncode == 0
    assert not real_redis.exists(OLD["main"])


@pytest.mark.timeout(60)
def test_migrate_on_a_cluster_has_nothing_to_copy(tmp_path):
    with LocalCluster(tmp_path, primaries=3) as cluster:
        client = RedisCluster.from_url(cluster.url, decode_responses=True)
        try:
            Catalog(client).put(Calendar("main", "Main", "UTC"))
            Users(client).add("bob")
            assert legacy_keys.migrate(client) == (0, 0)
            assert legacy_keys.migrate(client, drop=True) == (0, 0)
        finally:
            client.close()
