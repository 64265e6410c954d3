"""Calendar and user keys before their hash tags (``sl:cal:ID`` → ``sl:{cal:ID}``,
``sl:user:NAME`` → ``sl:{user:NAME}``, 2026-12), across a rolling deploy.

``slotlock migrate`` (the release phase) copies each old key to its new name. Processes of
the release before keep running for a while and read the old names, so until the old keys
are gone every write of a calendar or user by this release is mirrored onto them
(``mirror``): an old worker sees a rules change on the old change stream, an old web
process sees a removed user as removed. A later ``slotlock migrate``, once the copy is
``KEEP_S`` old (the next release), deletes the old keys. A change made through a process of
the earlier release after the copy is not seen by this one: change users and calendars
after a deploy, not during it.

On a Redis Cluster there are no old keys (slotlock never ran on one before them).
"""

from __future__ import annotations

import time

import redis

from .days.keys import (CALENDARS, LEGACY_KEYS_COPIED, USERS, calendar_key,
                        legacy_calendar_keys, legacy_user_keys)
from .errors import MigrationNeeded

KEEP_S = 3600  # old keys are deleted by a migrate at least this long after the copy


def mirror(client: redis.Redis, pairs: dict[str, str]) -> None:
    """Copy each new key over its old name if the old one still exists (a deleted new key
    deletes the old one). Nothing to do once the old keys are gone."""
    with client.pipeline(transaction=False) as pipe:
        for new, old in pairs.items():
            pipe.exists(old)
            pipe.exists(new)
        found = pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for i, (new, old) in enumerate(pairs.items()):
            old_there, new_there = found[2 * i], found[2 * i + 1]
            if not old_there:
                continue
            if new_there:
                pipe.copy(new, old, replace=True)
            else:
                pipe.delete(old)
        if len(pipe):
            pipe.execute()


def all_pairs(client: redis.Redis) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for calendar_id in sorted(client.smembers(CALENDARS)):
        pairs.update(legacy_calendar_keys(calendar_id))
    for name in sorted(client.smembers(USERS)):
        pairs.update(legacy_user_keys(name))
    return pairs


def migrate(client: redis.Redis, now: float | None = None) -> tuple[int, int]:
    """Copy old keys to their new names (a new key already there is kept); delete the old
    keys once the first copy is ``KEEP_S`` old. Returns (copied, deleted)."""
    now = time.time() if now is None else now
    pairs = all_pairs(client)
    copied_at = client.get(LEGACY_KEYS_COPIED)
    if copied_at is not None and now - float(copied_at) >= KEEP_S:
        with client.pipeline(transaction=False) as pipe:
            for old in pairs.values():
                pipe.delete(old)
            deleted = sum(pipe.execute()) if pairs else 0
        return 0, deleted
    with client.pipeline(transaction=False) as pipe:
        for new, old in pairs.items():
            pipe.copy(old, new, replace=False)
        copied = sum(int(r) for r in pipe.execute()) if pairs else 0
    client.set(LEGACY_KEYS_COPIED, repr(now), nx=True)
    return copied, 0


def check_migrated(client: redis.Redis) -> None:
    """Raise ``MigrationNeeded`` if calendars are stored under their old names only and
    ``slotlock migrate`` never copied them (every process checks before it starts work:
    without it this release would see no calendar and no user)."""
    if client.exists(LEGACY_KEYS_COPIED):
        return
    ids = sorted(client.smembers(CALENDARS))
    if not ids:
        return
    with client.pipeline(transaction=False) as pipe:
        for calendar_id in ids:
            pipe.exists(legacy_calendar_keys(calendar_id)[calendar_key(calendar_id)])
        if any(pipe.execute()):
            raise MigrationNeeded("calendars and users")
