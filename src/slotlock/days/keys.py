"""Every Redis key name slotlock uses is built here.

Keys of one day share the hash tag ``{<calendar>:<date>}`` so each day script
touches one Redis Cluster slot. Keys outside a day are never passed to a day script.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

PREFIX = "sl"

ACTIVE = f"{PREFIX}:active"  # zset: partitions that may have queued commands
READY = f"{PREFIX}:ready"  # stream: "this partition has new work" wake-ups for workers
CALENDARS = f"{PREFIX}:calendars"  # set of calendar ids
WORKERS = f"{PREFIX}:workers"  # hash: worker id -> status json
# zset: worker id -> unix s last seen (forgotten after a day). Its hash tag is the whole name
# of sl:workers, which has none: one slot for both, as workers_seen.lua needs on a cluster
WORKERS_SEEN = f"{PREFIX}:{{{WORKERS}}}:seen"
WORKERS_SEEN_BEFORE = f"{PREFIX}:workers:seen"  # its name before 2026-12-05 (migrate deletes)
WORKER_LOAD = f"{PREFIX}:workers:load"  # hash: worker id -> {"held", "at"} (workers/share.py)
DEV_SECRET_KEY = f"{PREFIX}:dev:secret-key"  # shared session key of web processes without SECRET_KEY
DAYS = f"{PREFIX}:days"  # zset: every partition ever written, scored by local date ordinal
# -- background jobs (issue 6) ----------------------------------------------------------------
RETAINED = f"{PREFIX}:days:retained"  # zset: old days retention has finished -> epoch ms
CHANGED = f"{PREFIX}:days:changed"  # zset: partition -> epoch ms of its last commit (audit)
OUTBOX_DAYS = f"{PREFIX}:outbox:days"  # zset: partitions whose outbox may hold events (bump)
FINDINGS = f"{PREFIX}:findings"  # hash: partition -> json of the last audit's findings


# On a Redis Cluster the index of days with work and the wake-ups are sharded: a day's
# shard is crc32(day) mod SHARDS_ON_CLUSTER, each shard's keys under the tag {shard:K} (a
# slot of its own, so no node takes every booking). On one Redis there is one shard, under
# the names above (sl:active, sl:ready): nothing to migrate.
SHARDS_ON_CLUSTER = 16


def shard_active_key(shard: int | None) -> str:
    """The zset of one shard's days with work (``None``: the one shard of a single Redis)."""
    return ACTIVE if shard is None else f"{PREFIX}:{{shard:{shard}}}:active"


def shard_ready_key(shard: int | None) -> str:
    """The wake-up stream of one shard (``None``: the one shard of a single Redis)."""
    return READY if shard is None else f"{PREFIX}:{{shard:{shard}}}:ready"


def delivered_key(event_id: str) -> str:
    """Marks one event as delivered to its webhook (with a TTL): our side of the dedup."""
    return f"{PREFIX}:notify:delivered:{event_id}"


def publish_lock_key(part: str) -> str:
    return f"{PREFIX}:notify:lock:{part}"


def job_tick_key(name: str, slot: int) -> str:
    """Claimed (SET NX) by the one ``slotlock jobs`` process that enqueues a periodic run."""
    return f"{PREFIX}:jobs:tick:{name}:{slot}"
# -- end background jobs ----------------------------------------------------------------------


RATE_LIMIT_PREFIX = f"{PREFIX}:ratelimit"  # Flask-Limiter's counters


def day_key_pattern(kind: str) -> str:
    """A SCAN pattern for one kind of key of every day, e.g. ``sl:{*}:state``."""
    return f"{PREFIX}:{{*}}:{kind}"


def partition_of(key: str, kind: str) -> str:
    """The partition of a day key found by ``day_key_pattern(kind)``."""
    return key[len(PREFIX) + 2:-len(f"}}:{kind}")]


def partition(calendar_id: str, day: date) -> str:
    return f"{calendar_id}:{day.isoformat()}"


def split_partition(part: str) -> tuple[str, date]:
    calendar_id, _, day = part.rpartition(":")
    return calendar_id, date.fromisoformat(day)


# A calendar's keys share the hash tag {cal:ID} and a user's {user:NAME}, so that the
# transactions over them stay in one Redis Cluster slot. Before 2026-12 they had no tag
# (``sl:cal:ID``, ``sl:user:NAME``): see ``legacy_keys`` and ``slotlock migrate``.


def calendar_key(calendar_id: str) -> str:
    return f"{PREFIX}:{{cal:{calendar_id}}}"


def calendar_revisions_key(calendar_id: str) -> str:
    return f"{PREFIX}:{{cal:{calendar_id}}}:revisions"


def calendar_changes_key(calendar_id: str) -> str:
    """Stream: one entry per rules revision written (``Catalog.put``), so a worker watching
    a calendar's days learns of a change in the read that waits for their commands."""
    return f"{PREFIX}:{{cal:{calendar_id}}}:changes"


def webhook_secret_key(calendar_id: str) -> str:
    """The calendar's webhook signing secret: beside the calendar, never inside its JSON."""
    return f"{PREFIX}:{{cal:{calendar_id}}}:webhook-secret"


def idempotency_key(actor: str, key: str) -> str:
    return f"{PREFIX}:idem:{actor}:{key}"


def worker_alive_key(worker_id: str) -> str:
    return f"{PREFIX}:worker:{worker_id}"


@dataclass(frozen=True, slots=True)
class DayKeys:
    part: str

    @classmethod
    def of(cls, calendar_id: str, day: date) -> DayKeys:
        return cls(partition(calendar_id, day))

    @property
    def tag(self) -> str:
        return "{" + self.part + "}"

    @property
    def cmds(self) -> str:
        return f"{PREFIX}:{self.tag}:cmds"

    @property
    def state(self) -> str:
        return f"{PREFIX}:{self.tag}:state"

    @property
    def lease(self) -> str:
        return f"{PREFIX}:{self.tag}:lease"

    @property
    def fence(self) -> str:
        return f"{PREFIX}:{self.tag}:fence"

    @property
    def done(self) -> str:
        return f"{PREFIX}:{self.tag}:done"

    @property
    def idem(self) -> str:
        return f"{PREFIX}:{self.tag}:idem"

    @property
    def outbox(self) -> str:
        return f"{PREFIX}:{self.tag}:outbox"

    @property
    def tokens(self) -> str:
        """List of every token that committed, in commit order (the audit checks it grows)."""
        return f"{PREFIX}:{self.tag}:tokens"

    @property
    def snapshot(self) -> str:
        """Hash: the verified state at a cursor, base of the audit once the stream is trimmed."""
        return f"{PREFIX}:{self.tag}:snapshot"

    @property
    def barrier(self) -> str:
        """String with a short TTL, written before ``WAIT`` (``SLOTLOCK_WAIT_REPLICAS``): on
        the day's own slot, so that on a Redis Cluster the WAIT follows a write on the node
        that holds the day, and no key of the booking path is global."""
        return f"{PREFIX}:{self.tag}:barrier"

    def reply(self, command_id: str) -> str:
        return f"{PREFIX}:{self.tag}:reply:{command_id}"

    @property
    def reply_pattern(self) -> str:
        return self.reply("*")


USERS = f"{PREFIX}:users"  # set of user names


def user_key(name: str) -> str:
    """Hash: name, admin flag, argon2 password hash, created_at."""
    return f"{PREFIX}:{{user:{name}}}"


def token_key(token_id: str) -> str:
    """Hash: the user an API token belongs to, the sha256 of the token's secret part,
    created_at and (optional) expires_at; a token with an expiry also has the key's TTL."""
    return f"{PREFIX}:token:{token_id}"


def user_tokens_key(name: str) -> str:
    """Set: the ids of a user's API tokens (``slotlock token list``, removal of the user).
    Not ``:tokens``: a user named like a date shares its tag with a day of a calendar named
    ``user``, and ``DayKeys.tokens`` is that day's key (the suffixes must differ)."""
    return f"{PREFIX}:{{user:{name}}}:token-ids"


# -- keys before the hash tags (2026-12), kept for the processes of the release before ----

def legacy_calendar_keys(calendar_id: str) -> dict[str, str]:
    """Each key of a calendar -> its name before the hash tag."""
    old = f"{PREFIX}:cal:{calendar_id}"
    return {calendar_key(calendar_id): old,
            calendar_revisions_key(calendar_id): f"{old}:revisions",
            calendar_changes_key(calendar_id): f"{old}:changes",
            webhook_secret_key(calendar_id): f"{old}:webhook-secret"}


def legacy_user_keys(name: str) -> dict[str, str]:
    """Each key of a user -> its name before the hash tag."""
    old = f"{PREFIX}:user:{name}"
    return {user_key(name): old, user_tokens_key(name): f"{old}:tokens"}


# set by ``slotlock migrate`` when it copied the old names, deleted with them by
# ``slotlock migrate --drop-old-keys``: while it exists, writes are mirrored onto the old names
LEGACY_KEYS_KEPT = f"{PREFIX}:migrate:old-keys-kept"
LEGACY_KEYS_DROPPED = f"{PREFIX}:migrate:old-keys-dropped"  # set by --drop-old-keys
