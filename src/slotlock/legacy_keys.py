"""Calendar and user keys before their hash tags (``sl:cal:ID`` → ``sl:{cal:ID}``,
``sl:user:NAME`` → ``sl:{user:NAME}``, 2026-12), across a rolling deploy.

``slotlock migrate`` (the release phase) copies each old key to its new name and marks the
old names as kept (``LEGACY_KEYS_KEPT``). Processes of the release before keep running for
a while and read the old names, so while they are kept, every write of a calendar or user
by this release is also made under the old name (``mirror``): an old worker sees a rules
change on the old change stream, an old web process sees a removed user as removed or a
new password, an old jobs process finds a calendar created since and does not drop its
webhook events. Old names are written first where that is the safe side (a removal), and
a calendar's zone lock taken by an old web process is honoured.

``slotlock migrate --drop-old-keys``, run once no process of the release before is left
(the next deploy), copies any old key whose new name is missing and deletes the old
names; after it, going back to the release before is not possible.

What a process of the release before writes after the copy (a user, a token, a calendar
put through its CLI) is not seen by this release: change users and calendars after a
deploy, not during it. On a Redis Cluster there are no old names (slotlock never ran on
one before them): migrate leaves nothing to mirror.
"""

from __future__ import annotations

import json

import redis

from .days.keys import (CALENDARS, LEGACY_KEYS_DROPPED, LEGACY_KEYS_KEPT, USERS, calendar_key,
                        legacy_calendar_keys, legacy_user_keys, user_key)
from .errors import MigrationNeeded
from .redis_conn import is_cluster_client


def kept(client: redis.Redis) -> bool:
    """Whether the old names are kept (and writes mirrored onto them)."""
    return bool(client.exists(LEGACY_KEYS_KEPT))


def mirror(client: redis.Redis, pairs: dict[str, str]) -> None:
    """While the old names are kept: write each new key under its old name too (a deleted
    new key deletes the old one)."""
    if not kept(client):
        return
    with client.pipeline(transaction=False) as pipe:
        for new in pairs:
            pipe.exists(new)
        found = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for (new, old), there in zip(pairs.items(), found):
            if there:
                pipe.copy(new, old, replace=True)
            else:
                pipe.delete(old)
        pipe.execute()


def old_zone_lock(client: redis.Redis, calendar_id: str) -> str | None:
    """The zone an old web process locked the calendar in under its old name, if any."""
    if not kept(client):
        return None
    raw = client.get(legacy_calendar_keys(calendar_id)[calendar_key(calendar_id)])
    record = json.loads(raw) if raw else {}
    return record.get("timezone") if record.get("zone_locked") else None


def user_pairs(name: str) -> dict[str, str]:
    """A user's keys mirrored: the record only. Token ids are listed under both names by
    whichever release issued them, and read from both by ``Users.remove``."""
    new = user_key(name)
    return {new: legacy_user_keys(name)[new]}


def all_pairs(client: redis.Redis) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for calendar_id in sorted(client.smembers(CALENDARS)):
        pairs.update(legacy_calendar_keys(calendar_id))
    for name in sorted(client.smembers(USERS)):
        pairs.update(legacy_user_keys(name))
    return pairs


def _copy_present(client: redis.Redis, pairs: dict[str, str]) -> tuple[int, bool]:
    """Copy each old key that exists to its new name unless that exists already; (keys
    copied, whether any old key exists)."""
    with client.pipeline(transaction=False) as pipe:
        for old in pairs.values():
            pipe.exists(old)
        found = pipe.execute() if pairs else []
    present = [(new, old) for (new, old), there in zip(pairs.items(), found) if there]
    if not present:
        return 0, False
    with client.pipeline(transaction=False) as pipe:
        for new, old in present:
            pipe.copy(old, new, replace=False)
        return sum(int(r) for r in pipe.execute()), True


def migrate(client: redis.Redis, *, drop: bool = False) -> tuple[int, int]:
    """Copy the old names to the new (a new key already there is kept) and keep the old
    names; with ``drop``, delete them instead once copied. Returns (copied, deleted)."""
    if is_cluster_client(client):
        return 0, 0  # no old names there, and a copy across slots cannot run
    pairs = all_pairs(client)
    copied, present = _copy_present(client, pairs)
    if not drop:
        if present:
            client.set(LEGACY_KEYS_KEPT, "1")
        return copied, 0
    # marked first: a write mirrored just before could leave an old name behind (deleted
    # by the next --drop-old-keys), and the start-up check must not take it for old data
    client.set(LEGACY_KEYS_DROPPED, "1")
    client.delete(LEGACY_KEYS_KEPT)
    with client.pipeline(transaction=False) as pipe:
        for old in pairs.values():
            pipe.delete(old)
        deleted = sum(pipe.execute()) if pairs else 0
    return copied, deleted


def check_migrated(client: redis.Redis) -> None:
    """Raise ``MigrationNeeded`` if calendars are stored under their old names and
    ``slotlock migrate`` never copied them (every process checks before it starts work:
    without it this release would see no calendar and no user)."""
    if client.exists(LEGACY_KEYS_KEPT, LEGACY_KEYS_DROPPED):
        return
    ids = sorted(client.smembers(CALENDARS))
    if not ids:
        return
    with client.pipeline(transaction=False) as pipe:
        for calendar_id in ids:
            pipe.exists(legacy_calendar_keys(calendar_id)[calendar_key(calendar_id)])
        if any(pipe.execute()):
            raise MigrationNeeded("calendars and users")
