"""End to end over HTTP: the Procfile's web line under gunicorn, two ``slotlock worker``
processes and a private redis-server, driven by many concurrent clients."""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta

import pytest
import requests

from slotlock.embedded import RedisServer, free_port
from slotlock.redis_conn import connect
from slotlock.users import Users

from .http_stack import ROOT, HttpStack, shim_bin, stack_env, stop, wait_ready

pytestmark = pytest.mark.e2e
BOOKINGS = "/api/v1/calendars/main/bookings"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Every thread may wait for its outcome here (the cap that answers 202 early under a
    # flood of waits is tests/security/test_thread_exhaustion.py's business): these tests
    # race 60 requests and want each one's final answer.
    with HttpStack(tmp_path_factory.mktemp("http"), workers=2,
                   env={"SLOTLOCK_MAX_REPLY_WAITS": "16"}) as running:
        yield running


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def day_bookings(stack, token, day: str) -> list[dict]:
    response = requests.get(f"{stack.url}/api/v1/calendars/main/days/{day}",
                            headers=bearer(token), timeout=10)
    assert response.status_code == 200
    return response.json()["bookings"]


def test_60_concurrent_requests_for_one_slot_give_one_201_and_59_409(stack):
    tokens = [stack.token(f"racer{i}") for i in range(60)]
    barrier = threading.Barrier(60, timeout=30)
    body = {"start": "2031-01-10T09:00", "end": "2031-01-10T10:00", "title": "the slot"}

    def attempt(token: str) -> requests.Response:
        session = requests.Session()
        barrier.wait()
        return session.post(stack.url + BOOKINGS, json=body, headers=bearer(token), timeout=30)

    with ThreadPoolExecutor(60) as pool:
        responses = list(pool.map(attempt, tokens))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 59
    winner = next(r.json() for r in responses if r.status_code == 201)
    for r in responses:
        if r.status_code == 409:
            assert r.json()["error"]["details"]["conflicts"] == [winner]
    assert day_bookings(stack, tokens[0], "2031-01-10") == [winner]


def _overlaps(bookings: list[dict]) -> list[tuple[str, str]]:
    spans = sorted((datetime.fromisoformat(b["start"]), datetime.fromisoformat(b["end"]), b["id"])
                   for b in bookings)
    return [(a[2], b[2]) for a, b in itertools.pairwise(spans) if b[0] < a[1]]


def test_random_concurrent_books_and_cancels_keep_every_promise(stack):
    days = ["2031-02-01", "2031-02-02"]
    names = [f"load{i}" for i in range(8)]
    tokens = {name: stack.token(name) for name in names}
    lock = threading.Lock()
    created: dict[str, dict] = {}  # booking id -> booking, from each 201
    cancelled: set[str] = set()
    refused_titles: set[str] = set()
    statuses: list[int] = []
    deadline = time.monotonic() + 60

    def client(n: int) -> None:
        rng = random.Random(n)
        session = requests.Session()
        mine: list[str] = []
        for i in range(40):
            if time.monotonic() > deadline:
                return
            name = rng.choice(names)
            headers = bearer(tokens[name])
            if mine and rng.random() < 0.3:
                booking_id = mine.pop(rng.randrange(len(mine)))
                owner = created[booking_id]["owner"]
                r = session.delete(f"{stack.url}{BOOKINGS}/{booking_id}",
                                   headers=bearer(tokens[owner]), timeout=30)
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        cancelled.add(booking_id)
                continue
            day = rng.choice(days)
            start = rng.randrange(8 * 4, 18 * 4)
            length = rng.choice([1, 2, 4])
            title = f"c{n}-{i}"
            body = {"start": f"{day}T{start // 4:02d}:{start % 4 * 15:02d}",
                    "end": f"{day}T{(start + length) // 4:02d}:{(start + length) % 4 * 15:02d}",
                    "title": title}
            r = session.post(stack.url + BOOKINGS, json=body, headers=headers, timeout=30)
            with lock:
                statuses.append(r.status_code)
                if r.status_code == 201:
                    created[r.json()["id"]] = r.json()
                    mine.append(r.json()["id"])
                elif r.status_code == 409:
                    refused_titles.add(title)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(client, range(12)))

    assert statuses and all(s < 500 for s in statuses), sorted(set(statuses))
    assert set(statuses) <= {200, 201, 409}, sorted(set(statuses))
    assert created and refused_titles and cancelled
    committed = [b for day in days for b in day_bookings(stack, tokens["load0"], day)]
    by_id = {b["id"]: b for b in committed}
    assert not [pair for day in days for pair in
                _overlaps([b for b in committed if b["start"].startswith(day)])]
    assert set(by_id) == set(created) - cancelled  # every 201 present unless cancelled
    assert all(by_id[i] == created[i] for i in by_id)
    assert not refused_titles & {b["title"] for b in committed}  # every 409 absent


def test_schemathesis_finds_no_5xx_and_no_schema_breaking_response(stack, tmp_path):
    token = stack.token("fuzzer", admin=True)
    report = tmp_path / "schemathesis.txt"
    args = [sys.executable, "-m", "schemathesis.cli", "run", f"{stack.url}/api/v1/openapi.json",
            "--url", stack.url,
            "--checks", ("not_a_server_error,status_code_conformance,content_type_conformance,"
                         "response_schema_conformance"),
            "--max-examples", "25", "--phases", "examples,coverage,fuzzing", "--seed", "1",
            "--request-timeout", "10", "-H", f"Authorization: Bearer {token}"]
    started = time.monotonic()
    result = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False,
                            env={**os.environ, "NO_COLOR": "1"})
    report.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
    assert time.monotonic() - started < 120


def test_the_procfile_runs_as_is_under_honcho(tmp_path):
    """release (migrate) first, as a platform does; then web, worker and jobs together."""
    server = RedisServer(tmp_path / "redis").start()
    port = free_port()
    env = stack_env(server.url, port, shim_bin(tmp_path / "bin"))
    honcho = None
    try:
        subprocess.run([sys.executable, "-m", "slotlock", "migrate"], env=env, check=True,
                       capture_output=True, timeout=60)
        # The Procfile as is, but for the bind address: test servers listen on loopback only.
        original = (ROOT / "Procfile").read_text()
        procfile = tmp_path / "Procfile"
        procfile.write_text(original.replace("--bind 0.0.0.0:", "--bind 127.0.0.1:"))
        assert procfile.read_text().count("127.0.0.1") == original.count("0.0.0.0") == 1
        with open(tmp_path / "honcho.log", "wb") as log:
            honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", str(procfile),
                                       "-d", str(tmp_path), "start", "web", "worker", "jobs"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, [honcho], timeout=60)
        users = Users(connect(server.url))
        users.add("honcho")
        token = users.issue_token("honcho")
        day = (date.today() + timedelta(days=7)).isoformat()  # the default 365-day window
        body = {"start": f"{day}T09:00", "end": f"{day}T09:30", "title": "honcho"}
        response = requests.post(base + BOOKINGS, json=body, headers=bearer(token), timeout=15)
        assert response.status_code == 201, response.text
    finally:
        if honcho is not None:
            stop(honcho)
            assert honcho.returncode is not None
        server.stop()
    text = (tmp_path / "honcho.log").read_text(errors="replace")
    assert "web.1" in text and "worker.1" in text and "jobs.1" in text
    assert "Traceback" not in text, text[-4000:]
