"""Each worker takes a fair share of the held days (workers/share.py), with real processes.

Before the fair share, a day with work stayed with the worker that took it first: a worker
started later held nothing while another held every busy day (here: idle days are kept for
a minute, so every day stays "busy")."""

from __future__ import annotations

import signal
from collections import Counter
from datetime import date, datetime, timedelta

import pytest

from slotlock.days.keys import DayKeys
from slotlock.days.lease import parse_lease
from tests.procs import wait_for

DAYS = [date(2030, 12, 1) + timedelta(days=i) for i in range(30)]


def holders(client) -> Counter:
    values = client.redis.mget([DayKeys.of("main", day).lease for day in DAYS])
    return Counter(parse_lease(v)[1] if v else None for v in values)


def book_every_day(client, hour: int) -> list[str]:
    return [client.book("u", "main", datetime(d.year, d.month, d.day, hour),
                        datetime(d.year, d.month, d.day, hour + 1), "t").command_id
            for d in DAYS]


def settled(client, ids) -> bool:
    return all((client.status(i) or {}).get("status") == "accepted" for i in ids)


@pytest.mark.timeout(90)
def test_a_worker_that_joins_gets_its_share_and_gives_it_back_when_it_stops(procs, client):
    a = procs.worker("wa")
    a.wait_log("started")
    ids = book_every_day(client, 9)
    wait_for(lambda: settled(client, ids), 20, 0.05, "the first bookings")
    assert holders(client)["wa"] == len(DAYS)  # idle days are kept for a minute here

    b = procs.worker("wb")
    b.wait_log("started")
    # fair share 15 each; wa sheds down to 15 once it is over 17 (the slack)
    wait_for(lambda: holders(client)["wb"] >= 13, 15, 0.1,
             f"wb to take its share: {holders(client)}")
    a.wait_log(r"gave up \d+ day\(s\) to the other workers")
    ids = book_every_day(client, 11)  # both apply: every day, whoever holds it
    wait_for(lambda: settled(client, ids), 20, 0.05, "the bookings after the join")
    spread = holders(client)
    assert spread["wa"] + spread["wb"] == len(DAYS) and min(spread["wa"], spread["wb"]) >= 13, spread

    b.send(signal.SIGTERM)  # released at stop: wa takes them all again, nothing waits
    b.wait(15)
    ids = book_every_day(client, 13)
    wait_for(lambda: settled(client, ids), 20, 0.05, "the bookings after wb stopped")
    assert holders(client)["wa"] == len(DAYS)
