"""What an app needs from the core, created on first use (never at import time)."""

from __future__ import annotations

import logging
import threading
import time

from ..client import Client
from ..config import Settings
from ..errors import UnsuitableRedis
from ..redis_conn import check_server
from ..users import Users
from .tokens import TokenGate

log = logging.getLogger("slotlock.web")

UNSUITABLE_LOG_S = 60.0  # an unsuitable server is logged at most this often, per process
RECHECK_S = 1.0  # an unsuitable server is told from memory this long (every request asks)


class WebClient(Client):
    """The core client with a cap on how many of this process's threads wait for an outcome.

    A web thread blocked on a reply is a thread nobody else gets; without a cap a burst
    of bookings for a day whose worker is slow takes every thread, and even ``/readyz``
    waits. Past ``SLOTLOCK_MAX_REPLY_WAITS`` waiting threads a new command is waited for
    at most ``client.OVER_CAP_WAIT_MS`` in its submit's round trip, any other request
    reads the outcome once; if it is not there yet, the answer is 202 with its status URL.
    """

    def __init__(self, settings: Settings, **kwargs):
        super().__init__(settings, **kwargs)
        self.waits = threading.BoundedSemaphore(settings.max_reply_waits)  # 0: nobody waits

    def acquire_wait(self) -> bool:
        return self.waits.acquire(blocking=False)

    def release_wait(self) -> None:
        self.waits.release()

    def wait(self, command_id: str, wait_ms: int):
        if wait_ms <= 0 or not self.acquire_wait():
            return super().wait(command_id, 0)
        try:
            return super().wait(command_id, wait_ms)
        finally:
            self.release_wait()


class Services:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._users: Users | None = None
        self._tokens: TokenGate | None = None
        # set by create_app once Redis passed check_server; if it did not answer then,
        # every request makes the check until it passes (``server_checked``)
        self.server_ok = False
        self._check_lock = threading.Lock()
        self._unsuitable: UnsuitableRedis | None = None  # the last check's refusal
        self._next_check = 0.0
        self._next_unsuitable_log = 0.0

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = WebClient(self.settings)
        return self._client

    def server_checked(self, *, fresh: bool = False) -> None:
        """Check the server (``check_server``) if the start-up could not: raises
        ``UnsuitableRedis`` until the server changes, or a Redis error. ``/readyz`` and
        every other request but ``/healthz`` ask, so a process started while Redis was down
        serves nothing on an unsuitable Redis, with or without a readiness probe.

        One thread checks at a time (the others wait for its answer), and an unsuitable
        server is told from memory for ``RECHECK_S`` (``fresh``: ask it again now, as
        ``/readyz`` does) and logged at most once per ``UNSUITABLE_LOG_S``; a check that
        could not reach Redis is not remembered."""
        if self.server_ok:
            return
        with self._check_lock:
            if self.server_ok:
                return
            now = time.monotonic()
            if self._unsuitable is not None and now < self._next_check and not fresh:
                raise self._unsuitable
            try:
                check_server(self.client.redis, self.settings)
            except UnsuitableRedis as exc:
                self._unsuitable, self._next_check = exc, now + RECHECK_S
                if now >= self._next_unsuitable_log:
                    self._next_unsuitable_log = now + UNSUITABLE_LOG_S
                    log.error("not serving: %s", exc)
                raise
            self._unsuitable = None
            self.server_ok = True

    @property
    def tokens(self) -> TokenGate:
        if self._tokens is None:
            users, scripts = self.users, self.client.scripts  # outside the lock: they take it
            with self._lock:
                if self._tokens is None:
                    self._tokens = TokenGate(users, scripts, self.settings.rate_limit,
                                             self.settings.anonymous_rate_limit)
        return self._tokens

    @property
    def users(self) -> Users:
        if self._users is None:
            self._users = Users(self.client.redis,
                                max_hashes=self.settings.max_concurrent_hashes)
        return self._users
