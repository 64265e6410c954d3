"""A small TCP proxy on loopback between slotlock processes and Redis.

Each :class:`Link` is one listening port (the harness gives every worker its own, and
the web processes one), so a fault can slow or stall one process's traffic while the
others go on: a stalled worker is the network version of a paused one. Traffic held
by a stall is delivered late and in order when the stall ends, the way a congested
or partitioned network delivers it, so a commit a worker gave up on can still reach
Redis after its lease has passed to someone else.
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger("slotlock.chaos.proxy")

CHUNK = 65536


class Link:
    def __init__(self, proxy: Proxy, name: str):
        self.proxy = proxy
        self.name = name
        self.port = 0
        self.latency_s = 0.0
        self._open: asyncio.Event | None = None
        self._server: asyncio.AbstractServer | None = None
        self.connections = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # called from any thread
    def set_latency(self, ms: float) -> None:
        self.latency_s = ms / 1000

    def hold(self) -> None:
        self.proxy.call(self._open.clear)

    def release(self) -> None:
        self.proxy.call(self._open.set)

    def normal(self) -> None:
        self.set_latency(0)
        self.release()

    async def _start(self, port: int) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.proxy.upstream_port)
        except OSError:
            writer.close()
            return
        self.connections += 1
        pumps = [asyncio.ensure_future(self._pump(reader, up_writer)),
                 asyncio.ensure_future(self._pump(up_reader, writer))]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    return
                await self._open.wait()
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return


class Proxy:
    """An asyncio loop in a thread of the harness, holding any number of links."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        self.links: dict[str, Link] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxy", daemon=True)
        self._thread.start()

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def link(self, name: str, port: int = 0) -> Link:
        if name in self.links:
            return self.links[name]
        link = Link(self, name)
        asyncio.run_coroutine_threadsafe(link._start(port), self.loop).result(5)
        self.links[name] = link
        return link

    def close(self) -> None:
        async def _close():
            for link in self.links.values():
                link._server.close()
                link._open.set()

        try:
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
