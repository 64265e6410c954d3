"""A lease worker's pass over its dirty days, against a real redis-server: it never holds
the loop so long that a lease lapses under it (issue 12, a loop whose cost follows the
work)."""

import time
from datetime import date, datetime, timedelta

from slotlock.days.keys import DayKeys
from tests.integration.test_worker_wakeups import client, settings  # noqa: F401 - fixtures

DAYS = [date(2030, 12, 10) + timedelta(days=i) for i in range(3)]


def book_each_day(client):
    ids = []
    for d in DAYS:
        start = datetime.combine(d, datetime.min.time()) + timedelta(hours=9)
        ids.append(client.book("ann", "main", start, start + timedelta(hours=1), "x",
                               wait_ms=0).command_id)
    return ids


def test_a_pass_over_its_budget_leaves_the_other_days_for_the_next(settings, client,
                                                                   monkeypatch):
    from slotlock.workers import lease_worker
    from slotlock.workers.lease_worker import LeaseWorker

    monkeypatch.setattr(lease_worker, "PASS_BUDGET", 0.0)  # every pass: one day, then cut
    ids = book_each_day(client)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    assert len(worker.owned) == 3
    for passes in range(1, 4):
        assert worker.process_days()
        assert worker.stats["commits"] == passes
    assert worker.stats["passes_cut"] == 2
    assert [client.wait(cid, 1000)["status"] for cid in ids] == ["accepted"] * 3
    worker.shutdown()


def test_a_day_near_its_lease_expiry_is_renewed_before_it_is_decided(settings, client):
    from slotlock.workers.lease_worker import LeaseWorker

    ids = book_each_day(client)
    worker = LeaseWorker(settings)
    worker.sweep(time.monotonic())
    late = worker.owned[DayKeys.of("main", DAYS[0]).part]
    late.lease.expires_at = time.monotonic() + 0.1  # a slow pass: about to lapse, by our clock
    late.renew_at = time.monotonic()
    worker.leases._next_renewal = late.renew_at
    assert worker.process_days()
    assert worker.stats["deferred_near_expiry"] == 1
    assert client.status(ids[0])["status"] == "pending"
    worker.maintain()  # the renewal comes first
    assert late.lease.expires_at > time.monotonic() + 0.5
    assert worker.process_days()
    assert [client.wait(cid, 1000)["status"] for cid in ids] == ["accepted"] * 3
    worker.shutdown()
