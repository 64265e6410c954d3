"""Issue 9, bug 5: one entry the model cannot decide must not stop its day."""

import json
from datetime import date, datetime

import pytest

from slotlock.client import Client
from slotlock.days.keys import DayKeys
from slotlock.days.store import DayStore
from slotlock.ids import new_ids
from tests.conftest import make_settings, open_default
from tests.procs import WorkerThread

DAY = date(2031, 6, 2)


def at(h, m=0):
    return datetime(DAY.year, DAY.month, DAY.day, h, m)


@pytest.fixture
def settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=500, idle_release_ms=200,
                         reply_timeout_ms=3000)


def poison(client: Client) -> str:
    """A well-formed command json whose title is null: it parses, but no rule can read it."""
    command_id, booking_id = new_ids("main", DAY)
    raw = {"kind": "book", "command_id": command_id, "actor": "mallory", "admin": False,
           "calendar": "main", "date": DAY.isoformat(), "booking_id": booking_id,
           "start": "2031-06-02T08:00:00+00:00", "end": "2031-06-02T09:00:00+00:00",
           "title": None, "idempotency_key": None}
    keys = DayKeys.of("main", DAY)
    DayStore(client.redis).submit(keys, command_id, json.dumps(raw))
    client.index.mark(keys.part)
    return command_id


def test_an_entry_that_cannot_be_decided_is_rejected_and_the_day_goes_on(settings):
    client = Client(settings)
    open_default(client.redis)
    before = client.book("alice", "main", at(7), at(8), "first", wait_ms=0)
    bad = poison(client)
    with WorkerThread(settings):
        good = client.book("bob", "main", at(10), at(11), "after")
        assert good.outcome is not None, "the day is stuck behind the bad entry"
        assert good.outcome["status"] == "accepted"
        assert client.wait(before.command_id, 3000)["status"] == "accepted"
        failed = client.status(bad)
    assert failed["status"] == "rejected" and failed["error"]["code"] == "internal"
    assert [b["title"] for b in client.read_day("main", DAY).bookings] == ["first", "after"]
