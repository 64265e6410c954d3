"""A lean closed-loop HTTP/1.1 keep-alive client on asyncio: one event loop, one connection
per simulated client, a request sent as soon as the previous answer is read. It costs far
less CPU than threads with ``requests``, which matters when the clients share the
machine's CPUs with the servers; its own CPU is measured and reported."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# make(i) -> (path, body bytes); i counts requests across all clients of one run; an empty
# body makes a GET
Maker = Callable[[int], tuple[str, bytes]]


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)  # of the 2xx answers, when kept
    elapsed: float = 0.0
    client_cpu: float = 0.0


class Connection:
    def __init__(self, host: str, port: int, token: str):
        self.host, self.port = host, port
        self.head = (f"Host: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
            self.writer = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self.writer is None:
            await self.open()
        self.writer.write(b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method.encode(), path.encode(), self.head, len(body), body))
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()  # the server closed an idle keep-alive connection: once more
            await self.open()
            self.writer.write(b"%s %s HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s" % (
                method.encode(), path.encode(), self.head, len(body), body))
            head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, data


async def _closed_loop(host: str, port: int, token: str, clients: int, seconds: float,
                       max_requests: int, make: Maker, keep_bodies: bool) -> Run:
    run = Run()
    counter = iter(range(max_requests))
    conns = [Connection(host, port, token) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))
    stop_at = time.monotonic() + seconds

    async def client(conn: Connection) -> None:
        while time.monotonic() < stop_at:
            i = next(counter, None)
            if i is None:
                return
            path, body = make(i)
            t0 = time.perf_counter()
            status, data = await conn.request("POST" if body else "GET", path, body)
            run.latencies.append(time.perf_counter() - t0)
            run.statuses.append(status)
            if keep_bodies and status < 300:
                run.bodies.append(data)

    cpu0, t0 = self_cpu(), time.monotonic()
    await asyncio.gather(*(client(c) for c in conns))
    run.elapsed = time.monotonic() - t0
    run.client_cpu = self_cpu() - cpu0
    for c in conns:
        c.close()
    return run


def closed_loop(url_host: str, port: int, token: str, clients: int, seconds: float,
                make: Maker, *, max_requests: int = 1_000_000, keep_bodies: bool = False) -> Run:
    return asyncio.run(_closed_loop(url_host, port, token, clients, seconds, max_requests, make,
                                    keep_bodies))


async def _crowd(host: str, port: int, token: str, path: str, body: bytes, n: int) -> Run:
    """``n`` connections opened and warmed (GET /healthz), then ``n`` identical POSTs at once."""
    run = Run()
    conns = [Connection(host, port, token) for _ in range(n)]
    await asyncio.gather(*(c.open() for c in conns))
    await asyncio.gather(*(c.request("GET", "/healthz") for c in conns))

    async def one(conn: Connection) -> None:
        t0 = time.perf_counter()
        status, data = await conn.request("POST", path, body)
        run.latencies.append(time.perf_counter() - t0)
        run.statuses.append(status)
        run.bodies.append(data)

    cpu0, t0 = self_cpu(), time.monotonic()
    await asyncio.gather(*(one(c) for c in conns))
    run.elapsed = time.monotonic() - t0
    run.client_cpu = self_cpu() - cpu0
    for c in conns:
        c.close()
    return run


def crowd(host: str, port: int, token: str, path: str, body: bytes, n: int) -> Run:
    return asyncio.run(_crowd(host, port, token, path, body, n))


async def _get_all(host: str, port: int, token: str, paths: list[str],
                   clients: int) -> list[tuple[int, bytes]]:
    results: list[tuple[int, bytes] | None] = [None] * len(paths)
    todo = iter(range(len(paths)))

    async def client() -> None:
        conn = Connection(host, port, token)
        for i in todo:
            results[i] = await conn.request("GET", paths[i])
        conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return results


def get_all(host: str, port: int, token: str, paths: list[str],
            clients: int = 4) -> list[tuple[int, bytes]]:
    return asyncio.run(_get_all(host, port, token, paths, clients))
