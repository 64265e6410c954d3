"""Attacks on the web's threads with the Procfile's web line (real gunicorn, 2 x 16 threads).

1. Slow clients: far more connections than threads, each dripping its request head or
   its body a byte at a time. The site must still answer ``/readyz`` and take a booking
   at once, and every slow connection must be closed at the read deadline.
2. Reply waits: with no lease worker, every booking waits for its outcome; far more
   bookings than threads at once must not keep ``/readyz`` waiting: past the cap of
   waiting threads a booking answers 202 at once (its command is queued, not lost).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.e2e.http_stack import HttpStack

pytestmark = pytest.mark.e2e

THREADS = 2 * 16  # the Procfile's --workers x --threads
SLOW = 5 * THREADS
READ_TIMEOUT_S = 4
BOOKINGS = "/api/v1/calendars/main/bookings"


def slot(hour: int, days_ahead: int = 2) -> dict:
    day = (datetime.now(UTC) + timedelta(days=days_ahead)).date().isoformat()
    return {"start": f"{day}T{hour:02d}:00", "end": f"{day}T{hour:02d}:30", "title": f"at {hour}"}


def timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    response = requests.get(url, timeout=30)
    return response.status_code, time.monotonic() - started


class Drip:
    """Connections that each send a prefix at once, then one byte of the rest every
    ``interval`` s (bounded in time)."""

    def __init__(self, port: int, payloads: list[tuple[bytes, bytes]], interval: float = 0.5,
                 limit_s: float = 30.0):
        self.socks = []
        for prefix, _ in payloads:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(prefix)
            s.setblocking(False)
            self.socks.append(s)
        self.payloads = payloads
        self.interval = interval
        self.limit_s = limit_s
        self.closed_at: dict[int, float] = {}
        self.answers: dict[int, bytes] = {}
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        position = 0
        while not self.stop.is_set() and time.monotonic() - self.started < self.limit_s:
            for i, s in enumerate(self.socks):
                if i in self.closed_at:
                    continue
                try:
                    answer = s.recv(4096)
                    self.answers[i] = self.answers.get(i, b"") + answer
                    if not answer:
                        self.closed_at[i] = time.monotonic() - self.started
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    self.closed_at[i] = time.monotonic() - self.started
                    continue
                payload = self.payloads[i][1]
                if position < len(payload):
                    try:
                        s.send(payload[position:position + 1])
                    except OSError:
                        self.closed_at[i] = time.monotonic() - self.started
            position += 1
            self.stop.wait(self.interval)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        for s in self.socks:
            s.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    env = {"SLOTLOCK_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
           "SLOTLOCK_REPLY_TIMEOUT_MS": "5000", "SLOTLOCK_MAX_REPLY_WAITS": "8"}
    with HttpStack(tmp_path_factory.mktemp("threads"), workers=1, env=env) as running:
        yield running


def test_more_slow_clients_than_threads_leave_readyz_and_bookings_served(stack):
    token = stack.token("alice")
    head = (f"POST {BOOKINGS} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n").encode()
    body = b"{" + b" " * 399
    payloads = [(head[:20], head[20:] + body)] * (SLOW // 2) + [(head, body)] * (SLOW - SLOW // 2)
    with Drip(stack.port, payloads) as drip:
        time.sleep(1.5)  # every slow connection has sent its first bytes
        for _ in range(3):
            status, took = timed_get(stack.url + "/readyz")
            assert (status, took < 1.0) == (200, True), f"/readyz: {status} after {took:.1f} s"
        started = time.monotonic()
        booked = requests.post(stack.url + BOOKINGS, json=slot(9), timeout=30,
                               headers={"Authorization": f"Bearer {token}"})
        assert booked.status_code == 201, booked.text
        assert time.monotonic() - started < 3.0
        # the slow ones are cut at the read deadline (polled once a second), with a 408
        deadline = time.monotonic() + READ_TIMEOUT_S + 6
        while len(drip.closed_at) < SLOW and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(drip.closed_at) == SLOW, f"{SLOW - len(drip.closed_at)} slow ones still open"
        assert max(drip.closed_at.values()) < READ_TIMEOUT_S + 3
        assert all(a.startswith(b"HTTP/1.1 408") for a in drip.answers.values() if a)
    # nothing half-sent was stored: the day holds the one booking made
    day = slot(9)["start"][:10]
    bookings = requests.get(f"{stack.url}/api/v1/calendars/main/days/{day}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}).json()["bookings"]
    assert [b["title"] for b in bookings] == ["at 9"]


def test_a_kept_alive_connection_serves_request_after_request(stack):
    token = stack.token("keeper")
    # one connection, kept alive between requests (requests does not retry a broken one)
    session = requests.Session()
    for i in range(3):
        assert session.get(stack.url + "/readyz", timeout=10).status_code == 200
        booked = session.post(stack.url + BOOKINGS, json=slot(12 + i), timeout=10,
                              headers={"Authorization": f"Bearer {token}"})
        assert booked.status_code == 201, booked.text
    pools = session.get_adapter(stack.url).poolmanager.pools
    opened = sum(pools[key].num_connections for key in pools.keys())  # noqa: SIM118 (no iter)
    assert opened == 1  # every request went over the one kept-alive connection


def test_a_flood_of_reply_waits_leaves_readyz_served_and_answers_202_early(stack):
    tokens = [stack.token(f"waiter{i}") for i in range(2 * THREADS)]
    for process in stack.workers:  # nobody decides: every booking would wait 5 s
        process.terminate()
        process.wait(20)
    barrier = threading.Barrier(len(tokens), timeout=30)

    def book(i_token):
        i, token = i_token
        barrier.wait()
        started = time.monotonic()
        response = requests.post(stack.url + BOOKINGS, json=slot(10 + i % 12, 3 + i // 12),
                                 headers={"Authorization": f"Bearer {token}"}, timeout=30)
        return response.status_code, time.monotonic() - started

    with ThreadPoolExecutor(len(tokens)) as pool:
        futures = pool.map(book, enumerate(tokens))
        time.sleep(1.0)
        readyz = [timed_get(stack.url + "/readyz") for _ in range(3)]
        results = list(futures)
    assert all(status == 200 and took < 1.5 for status, took in readyz), readyz
    assert [status for status, _ in results] == [202] * len(tokens)
    quick = [took for _, took in results if took < 2.0]
    assert len(quick) >= len(tokens) - 2 * 8, "more threads waited than the cap allows"
    # every command is queued: a worker that comes back decides them all
    stack.add_worker("back")
    for token in tokens[:3]:
        for _ in range(100):
            answer = requests.get(f"{stack.url}/api/v1/calendars/main/days/"
                                  f"{slot(10, 3)['start'][:10]}", timeout=10,
                                  headers={"Authorization": f"Bearer {token}"})
            if answer.json()["bookings"]:
                break
            time.sleep(0.1)
        assert answer.json()["bookings"]


@pytest.mark.parametrize("data, complete", [
    (b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"GET /readyz HTTP/1.1\r\nHost: x\r\n", False),
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcd", False),
    (b"POST / HTTP/1.1\r\ncontent-length : 5\r\n\r\nabcde", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", False),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", False),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n0\r\n\r\r\n0\r\n", False),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", True),  # 400
    (b"POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", False),
    (b"POST / HTTP/1.1\r\nContent-Length: 999999\r\n\r\n", True),  # too big: the app's 413
    (b"GET /" + b"a" * 70_000, True),  # an oversized head: gunicorn's 400
])
def test_a_request_goes_to_a_thread_only_once_complete(data, complete):
    from slotlock.web.gworker import request_complete

    assert request_complete(data) is complete


def raw_exchange(stack, parts: list[bytes], pause: float = 0.3) -> bytes:
    """Send a request in pieces over one socket; return everything answered until close."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        for part in parts:
            sock.sendall(part)
            time.sleep(pause)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_chunked_and_expect_100_continue_bookings_are_buffered_and_served(stack):
    token = stack.token("chunky")
    body = json.dumps(slot(16)).encode()
    head = (f"POST {BOOKINGS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n").encode()
    chunked = raw_exchange(stack, [
        head + b"Transfer-Encoding: chunked\r\n\r\n",
        b"%x\r\n%s\r\n" % (10, body[:10]),
        b"%x\r\n%s\r\n" % (len(body) - 10, body[10:]),
        b"0\r\n\r\n"])
    assert chunked.startswith(b"HTTP/1.1 201"), chunked[:200]
    body = json.dumps(slot(17)).encode()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(head + b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(body)
        answer = b""
        while b"HTTP/1.1 201" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
    assert b"HTTP/1.1 201" in answer, answer[:300]
