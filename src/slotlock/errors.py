"""Infrastructure failures. A Lua script's failure value becomes one of these in one place."""

from __future__ import annotations


class SlotlockError(Exception):
    """Base of every slotlock infrastructure error."""


class DayError(SlotlockError):
    def __init__(self, message: str, *, day: str, token: int | None = None):
        super().__init__(f"{message} (day {day}, token {token})")
        self.day = day
        self.token = token


class LeaseLost(DayError):
    """The lease this worker held on a day expired or passed to another worker."""


class FenceRejected(DayError):
    """Redis refused a commit: the token it carried is no longer the day's current one."""


class CursorMismatch(DayError):
    """Redis refused a commit: the day's cursor moved since this worker read it."""


class Backpressure(SlotlockError):
    """A day's backlog passed its limit; the caller should retry later."""

    def __init__(self, day: str, pending: int):
        super().__init__(f"day {day} has {pending} commands waiting")
        self.day = day
        self.pending = pending


class IdempotencyMismatch(SlotlockError):
    """An idempotency key came back with a different request body."""

    def __init__(self, key: str, command_id: str):
        super().__init__(f"idempotency key {key!r} was used for a different request")
        self.key = key
        self.command_id = command_id


class UnknownCalendar(SlotlockError):
    def __init__(self, calendar_id: str):
        super().__init__(f"no calendar {calendar_id!r}")
        self.calendar_id = calendar_id


class UnsuitableRedis(SlotlockError):
    """The Redis configured is one slotlock refuses to run on (the process does not start)."""


class ClusterUnsupported(UnsuitableRedis):
    """The Redis configured is a Redis Cluster, which slotlock does not fully run on yet."""

    def __init__(self, detected: bool):
        how = ("the server says it is a Redis Cluster (INFO cluster: cluster_enabled:1)"
               if detected else "SLOTLOCK_REDIS_CLUSTER=on")
        super().__init__(
            f"{how}, and slotlock does not fully run on Redis Cluster yet: the index of days "
            "with work is not sharded, and the fault harness does not run on a cluster yet "
            "(docs/cluster.md lists what is missing; SLOTLOCK_REDIS_CLUSTER=on runs it on one "
            "as a preview, with rq's queues on a standalone Redis, SLOTLOCK_JOBS_REDIS_URL). "
            "Use a single Redis primary (with replicas and SLOTLOCK_WAIT_REPLICAS for "
            "failover).")
        self.detected = detected


class NotACluster(UnsuitableRedis):
    """``SLOTLOCK_REDIS_CLUSTER=on``, and the server is no node of a Redis Cluster."""

    def __init__(self, reason: str):
        super().__init__(f"SLOTLOCK_REDIS_CLUSTER=on, but REDIS_URL names no node of a Redis "
                         f"Cluster ({reason}); set it to auto for a single Redis "
                         "(docs/cluster.md)")


class EvictingRedis(UnsuitableRedis):
    """Redis runs with a maxmemory-policy that may evict slotlock's keys."""

    def __init__(self, policy: str | None, reason: str = ""):
        if policy is None:  # it could not be read
            super().__init__(
                f"slotlock cannot read Redis's maxmemory-policy: INFO is refused ({reason}). "
                "A policy that evicts keys may evict a lease, a fence counter or queued "
                "commands, which breaks fencing and loses work. Allow INFO to slotlock's "
                "Redis user (ACL SETUSER <user> +info), or, once you have made sure the "
                "policy is noeviction, start with SLOTLOCK_ALLOW_EVICTION=1.")
        else:
            super().__init__(
                f"Redis maxmemory-policy is {policy!r}: under memory pressure Redis may evict "
                "a lease, a fence counter or queued commands, which breaks fencing and loses "
                "work. Set 'maxmemory-policy noeviction' (CONFIG SET maxmemory-policy "
                "noeviction, or your provider's setting), or start with "
                "SLOTLOCK_ALLOW_EVICTION=1 to run anyway.")
        self.policy = policy


class MigrationNeeded(UnsuitableRedis):
    """Redis holds data of an earlier release that ``slotlock migrate`` has not moved yet."""

    def __init__(self, what: str):
        super().__init__(
            f"Redis holds {what} under the key names of an earlier release; run `slotlock "
            "migrate` first (the Procfile's release phase does) so that this release finds "
            "them.")


class ZoneLocked(SlotlockError):
    """A calendar in use cannot move to another time zone."""

    def __init__(self, calendar_id: str, timezone: str, wanted: str):
        super().__init__(
            f"calendar {calendar_id!r} is in use (it has bookings or commands), so its time zone "
            f"cannot change from {timezone} to {wanted}: its days and bookings were computed in "
            f"{timezone}. To use {wanted}, create a new calendar "
            f"(slotlock calendar put NEW_ID --timezone {wanted}) and book there.")
        self.calendar_id = calendar_id
        self.timezone = timezone
        self.wanted = wanted


class InvalidRequest(SlotlockError):
    """A request that cannot become a command (bad time, unknown id format)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field
