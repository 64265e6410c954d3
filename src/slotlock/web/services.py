"""What an app needs from the core, created on first use (never at import time)."""

from __future__ import annotations

import threading

from ..client import Client
from ..config import Settings
from ..users import Users


class Services:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.Lock()
        self._client: Client | None = None
        self._users: Users | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = Client(self.settings)
        return self._client

    @property
    def users(self) -> Users:
        if self._users is None:
            self._users = Users(self.client.redis,
                                max_hashes=self.settings.max_concurrent_hashes)
        return self._users
