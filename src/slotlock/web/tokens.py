"""API tokens on the fast path: verify, check and count a request in one round trip.

A token's id and owner never change (a token cannot move to another user), so a process
remembers them once it has verified the token's secret against its stored hash
(``Users.verify_token``, one ``HGETALL``). Everything else is read again on every
request, in one pipeline with the request's count against its token's rate limit:

    HMGET sl:token:<id> user expires_at   revoked or expired since?  (stops working at once)
    HGETALL sl:{user:<owner>}       removed, or admin flag changed?    (at once as well)
    EVALSHA rate_count              fixed windows per token, as ``SLOTLOCK_RATE_LIMIT``

Only a request whose token was verified (here, or by an earlier request of this process)
counts against the token: a made-up token never gets an allowance of its own; any
request without a verified token counts against its client address
(``count_anonymous``). A first-seen token costs one round trip more.

The remembered tokens are bounded (``MAX_REMEMBERED``, oldest dropped first) and hold
no secret beyond what the request itself carried.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from limits import parse_many

from ..days.keys import RATE_LIMIT_PREFIX, token_key, user_key
from ..days.scripts import Scripts
from ..users import User, Users, VerifiedToken

MAX_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Checked:
    user: User | None
    retry_after_s: int  # > 0: over the token's rate limit


class TokenGate:
    def __init__(self, users: Users, scripts: Scripts, rate_limit: str,
                 anonymous_rate_limit: str = ""):
        self.users = users
        self.scripts = scripts
        self.limits = _limits(rate_limit)
        self.anonymous_limits = _limits(anonymous_rate_limit)
        self._known: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._lock = threading.Lock()

    def count_anonymous(self, address_key: str) -> int:
        """Count a request without a verified token against its client address
        (``SLOTLOCK_ANONYMOUS_RATE_LIMIT``): the seconds to wait if it is over, else 0."""
        keys, args = _counters(f"anon:{address_key}", self.anonymous_limits)
        return int(self.scripts.rate_count(keys=keys, args=args)) if keys else 0

    def knows(self, token: str) -> bool:
        """Whether this process verified ``token``'s secret before (and has not forgotten it)."""
        return self._remembered(token) is not None

    def check(self, token: str) -> Checked:
        """The token's user (None: unknown, revoked, expired, owner gone) and, for a
        verified token, whether this request is over the token's rate limit."""
        known = self._remembered(token)
        if known is None:
            known = self.users.verify_token(token)
            if known is None:
                return Checked(None, 0)
            self._remember(token, known)
        keys, args = _counters(f"token:{known.token_id}", self.limits)

        def build(pipe) -> None:
            pipe.hmget(token_key(known.token_id), ["user", "expires_at"])
            pipe.hgetall(user_key(known.user))
            if keys:
                self.scripts.queue(pipe, "rate_count", keys, args)

        replies = self.scripts.run_pipeline(build)
        (owner, expires_at), record = replies[0], replies[1]
        retry_after = int(replies[2]) if keys else 0
        if owner != known.user or (expires_at and expires_at.isdigit()
                                   and int(expires_at) <= time.time()):
            self._forget(token)  # revoked, expired or (never) given to someone else
            return Checked(None, 0)
        user = Users.user_of(record)
        if user is None or user.name != known.user:
            return Checked(None, 0)
        return Checked(user, retry_after)

    def _remembered(self, token: str) -> VerifiedToken | None:
        with self._lock:
            return self._known.get(token)

    def _remember(self, token: str, known: VerifiedToken) -> None:
        with self._lock:
            self._known[token] = known
            while len(self._known) > MAX_REMEMBERED:
                self._known.popitem(last=False)

    def _forget(self, token: str) -> None:
        with self._lock:
            self._known.pop(token, None)


def _limits(text: str) -> list[tuple[int, int]]:
    return [(item.amount, item.get_expiry()) for item in parse_many(text)] if text else []


def _counters(subject: str, limits: list[tuple[int, int]]) -> tuple[list[str], list[int]]:
    """``rate_count.lua``'s keys (one hash tag per subject) and arguments."""
    keys = [f"{RATE_LIMIT_PREFIX}:{{{subject}}}:{amount}/{seconds}" for amount, seconds in limits]
    return keys, [seconds for _, seconds in limits] + [amount for amount, _ in limits]
