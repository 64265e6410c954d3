"""The wake-up streams of a sharded index (Redis Cluster), read by a thread per shard.

On a cluster one ``XREAD`` reads keys of one hash slot, and each shard's wake-up stream has
a slot of its own (``keys.shard_ready_key``): no single blocking read can wait on all of
them. So a worker on a cluster runs one thread per shard, each blocking on its stream (the
cluster client routes it to the shard's node) and handing what it read to the worker's
loop through a queue; the loop waits on that queue where it would block on ``XREAD``.

A reader starts from the stream's last entry, as the loop's single read does; after an
error it starts there again, so wake-ups written meanwhile are not read: the sweep of the
index of days with work finds those days (the index, not the stream, is what must not
lose a day). Entries come back in the reply format of ``XREAD``.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..redis_conn import REDIS_ERRORS

log = logging.getLogger("slotlock.worker")

READER_BLOCK_MS = 1000  # a reader's blocking read; it looks whether to stop between two
READER_RETRY_S = 0.2  # after an error


class ShardReaders:
    def __init__(self, blocking, index, count: int):
        self.blocking = blocking
        self.index = index
        self.count = count  # entries per read
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        for shard, key in self.index.shards.ready_keys.items():
            thread = threading.Thread(target=self._read, args=(shard, key), daemon=True,
                                      name=f"wake-up reader {key}")
            thread.start()
            self._threads.append(thread)

    def close(self, timeout: float = 3.0) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout)

    def _read(self, shard: int | None, key: str) -> None:
        last: str | None = None
        while not self._closed.is_set():
            try:
                if last is None:
                    last = self.index.last_wakeup_id(shard)
                reply = self.blocking.xread({key: last}, count=self.count,
                                            block=READER_BLOCK_MS)
            except (*REDIS_ERRORS, OSError) as exc:
                if not self._closed.is_set():
                    log.debug("wake-up reader of %s: %s; again in %.1f s", key, exc,
                              READER_RETRY_S)
                last = None
                self._closed.wait(READER_RETRY_S)
                continue
            for stream, entries in reply or ():
                if entries:
                    last = entries[-1][0]
                    self.inbox.put((stream, entries))

    def fetch(self, block_ms: int | None) -> list:
        """What the readers brought since the last call, as an ``XREAD`` reply; with
        ``block_ms``, waiting up to that long for the first of it."""
        got: dict[str, list] = {}
        try:
            if block_ms:
                stream, entries = self.inbox.get(timeout=block_ms / 1000)
                got.setdefault(stream, []).extend(entries)
            while True:
                stream, entries = self.inbox.get_nowait()
                got.setdefault(stream, []).extend(entries)
        except queue.Empty:
            pass
        return list(got.items())

