"""The fenced, expiring lease on one calendar-day.

A plain Redis lock (``SET NX PX`` with a random value, as redis-py's ``Lock``) does
not protect the data: the holder can pause past the expiry and keep writing.

    worker A          acquire (token 7) ── decide batch ── ✕ paused (GC, SIGSTOP) ─────────── resumes: commit(token 7)
    lease             ██████ token 7 ██████░░ expired
    worker B                                    acquire (token 8) ── decide ── commit(token 8) ✓
    Redis commit.lua                                                      token 8 current ✓   token 7 ≠ lease → refused

Every grant takes a new token from the day's counter (``sl:{P}:fence``), and the
commit script compares the lease value ``token:holder:nonce`` *inside Redis*, atomically
with the write. The random nonce makes each grant's value unique even if the fence
counter goes back (Redis restarted without ``appendfsync always``, a failover lost the
last writes) while two workers share an id (same ``SLOTLOCK_WORKER_ID``, or host name
and pid in twin containers): without it both would hold byte-identical leases. A stale holder's late commit is refused as a whole; the commands it
decided stay queued after the committed cursor and the new holder decides them.

Renew and release only ever touch a lease that still carries our token, so an old
holder cannot extend or delete its successor's lease.
"""

from __future__ import annotations

import secrets
import time

import redis

from ..errors import LeaseLost
from .keys import DayKeys
from .scripts import Scripts


def parse_lease(value: str) -> tuple[int, str]:
    """(token, holder) of a lease value ``token:holder:nonce``."""
    token, _, rest = value.partition(":")
    holder, _, _nonce = rest.rpartition(":")
    return int(token), holder


class DayLease:
    def __init__(self, client: redis.Redis, scripts: Scripts, keys: DayKeys, holder: str,
                 ttl_ms: int):
        self.client = client
        self.scripts = scripts
        self.keys = keys
        self.holder = holder
        self.ttl_ms = ttl_ms
        self.token: int | None = None
        self.nonce = ""
        self.expires_at = 0.0  # our own, conservative view: time.monotonic() of the grant + ttl

    @property
    def value(self) -> str:
        return f"{self.token}:{self.holder}:{self.nonce}"

    @property
    def held(self) -> bool:
        return self.token is not None

    def acquire(self) -> bool:
        """Take the lease if nobody holds it. Returns False (and sets ``retry_in_ms``) if held."""
        started = time.monotonic()
        self.nonce = secrets.token_hex(6)
        result = self.scripts.lease_acquire(
            keys=[self.keys.lease, self.keys.fence], args=[self.holder, self.ttl_ms, self.nonce]
        )
        return self.acquired(result, started)

    def queue_acquire(self, pipe, read_count: int, state_fields: tuple[str, ...]) -> float:
        """Queue ``acquire`` on a pipeline (``Scripts.run_pipeline``), reading, if granted,
        the day's state fields and up to ``read_count`` commands after its cursor in the
        same script; pass its reply and the time returned here to ``acquired``, and the
        reply to ``granted_read`` for the read."""
        self.nonce = secrets.token_hex(6)
        self.scripts.queue(pipe, "lease_acquire",
                           [self.keys.lease, self.keys.fence, self.keys.state, self.keys.cmds],
                           [self.holder, self.ttl_ms, self.nonce, read_count, *state_fields])
        return time.monotonic()

    @staticmethod
    def granted_read(result) -> tuple[list, list]:
        """(state as HMGET, commands as XRANGE entries) of a granted ``queue_acquire``."""
        state, entries = result[2], result[3]
        return list(state), [(entry_id, dict(zip(fields[::2], fields[1::2])))
                             for entry_id, fields in entries]

    def acquired(self, result, started: float) -> bool:
        if int(result[0]) == 1:
            self.token = int(result[1])
            self.expires_at = started + self.ttl_ms / 1000
            return True
        self.token = None
        pttl = int(result[2])
        self.retry_in_ms = max(0, pttl)
        return False

    def renew(self) -> None:
        if self.token is None:
            raise LeaseLost("renew without a lease", day=self.keys.part)
        started = time.monotonic()
        ok = self.scripts.lease_renew(keys=[self.keys.lease], args=[self.value, self.ttl_ms])
        if not int(ok):
            token, self.token = self.token, None
            raise LeaseLost("lease expired or passed to another worker", day=self.keys.part,
                            token=token)
        self.expires_at = started + self.ttl_ms / 1000

    def queue_renew(self, pipe) -> None:
        """Queue a renewal on a pipeline (many leases renewed in one round trip); read its
        reply with :meth:`renewed`."""
        if self.token is None:
            raise LeaseLost("renew without a lease", day=self.keys.part)
        self.scripts.queue(pipe, "lease_renew", [self.keys.lease], [self.value, self.ttl_ms])

    def renewed(self, ok, started: float) -> bool:
        """Apply a queued renewal's reply; False (and no token) if the lease was lost."""
        if not int(ok):
            self.token = None
            return False
        self.expires_at = started + self.ttl_ms / 1000
        return True

    def queue_release(self, pipe) -> None:
        """Queue :meth:`release` on a pipeline (``Scripts.queue``); then call ``released``."""
        if self.token is not None:
            self.scripts.queue(pipe, "lease_release", [self.keys.lease], [self.value])

    def queue_release_if_idle(self, pipe, cursor: str) -> None:
        """Queue a release that happens only if no command follows ``cursor``
        (``lease_release_idle.lua``: 1 released, 0 kept, -1 no longer ours); then call
        ``released`` if it was."""
        self.scripts.queue(pipe, "lease_release_idle", [self.keys.lease, self.keys.cmds],
                           [self.value, cursor])

    def released(self) -> None:
        self.token = None

    def release(self) -> bool:
        if self.token is None:
            return False
        ok = self.scripts.lease_release(keys=[self.keys.lease], args=[self.value])
        self.token = None
        return bool(int(ok))
