"""Issue 9, bug 1: a calendar's time zone cannot change once it is in use, or two days
of different zones could hold the same instant."""

from datetime import date, datetime

import pytest

from slotlock.catalog import Catalog
from slotlock.client import Client
from slotlock.errors import ZoneLocked
from slotlock.model import Calendar, Rules
from tests.conftest import make_settings, open_default
from tests.procs import Procs, WorkerThread


@pytest.fixture
def settings(redis_server, real_redis):
    return make_settings(redis_url=redis_server.url, lease_ttl_ms=500, idle_release_ms=200,
                         reply_timeout_ms=3000)


def test_the_zone_of_a_used_calendar_cannot_change_and_the_instant_stays_single(
        settings, redis_server, tmp_path):
    client = Client(settings)
    open_default(client.redis)
    with WorkerThread(settings):
        alice = client.book("alice", "main", datetime(2031, 5, 4, 23), datetime(2031, 5, 5, 0),
                            "late")
        assert alice.outcome["status"] == "accepted"
        procs = Procs(tmp_path, {"REDIS_URL": redis_server.url, "SECRET_KEY": "x" * 32,
                                 "SLOTLOCK_ENV": "development"})
        moved = procs.cli("calendar", "put", "main", "--timezone", "Europe/Berlin", check=False)
        assert moved.returncode == 1, moved.stdout + moved.stderr
        assert "time zone" in moved.stderr and "new calendar" in moved.stderr
        assert Catalog(client.redis).get("main").timezone == "UTC"
        # bob's 01:00-02:00 local on 05-05 is still read in UTC: no second day holds 23:00Z
        bob = client.book("bob", "main", datetime(2031, 5, 5, 1), datetime(2031, 5, 5, 2), "x")
        assert bob.outcome["booking"]["start"] == "2031-05-05T01:00:00+00:00"
        # other changes still go through, and the zone stays locked after them
        assert procs.cli("calendar", "put", "main", "--buffer", "0", "--name", "Main room"
                         ).returncode == 0
        again = procs.cli("calendar", "put", "main", "--timezone", "Asia/Tokyo", check=False)
        assert again.returncode == 1


def test_an_unused_calendar_may_change_zone(real_redis):
    catalog = Catalog(real_redis)
    catalog.put(Calendar("room", "Room", "UTC"))
    stored, changed = catalog.put(Calendar("room", "Room", "Europe/Berlin"))
    assert changed and stored.timezone == "Europe/Berlin"


def test_the_lock_is_taken_atomically_with_the_zone_the_submitter_used(real_redis):
    """A submitter that read the zone before a change must not lock the new zone and queue
    a command computed in the old one: the lock compares the zone it was computed in."""
    catalog = Catalog(real_redis)
    catalog.put(Calendar("room", "Room", "UTC"))
    catalog.put(Calendar("room", "Room", "Europe/Berlin"))  # changed after our read
    assert catalog.lock_zone("room", "UTC") == "Europe/Berlin"  # refused: re-read
    assert catalog.lock_zone("room", "Europe/Berlin") is None
    with pytest.raises(ZoneLocked):
        catalog.put(Calendar("room", "Room", "UTC"))


def test_a_client_with_a_stale_zone_reads_it_again(settings):
    writer = Client(settings)
    writer.catalog.put(Calendar("room", "Room", "UTC", Rules(horizon_days=0)))
    client = Client(settings)
    assert client.calendar("room").timezone == "UTC"  # cached now
    writer.catalog.put(Calendar("room", "Room", "Asia/Kolkata", Rules(horizon_days=0)))
    result = client.book("alice", "room", datetime(2031, 5, 6, 10), datetime(2031, 5, 6, 11),
                         "x", wait_ms=0)
    assert result.pending
    raw = client.redis.xrange(f"sl:{{room:{date(2031, 5, 6).isoformat()}}}:cmds")
    assert raw and '"start": "2031-05-06T04:30:00+00:00"' in raw[0][1]["c"]
