"""The audit as assertions, for the e2e and fault tests.

There is one day checker, ``slotlock.workers.audit`` (the fault harness's checker uses it
too): it replays each day through ``decide``/``evolve`` with the recorded rules revisions
and compares outcomes and state; ``audit_calendars`` checks overlaps across days, in UTC.
"""

from __future__ import annotations

import pytest
import redis

from slotlock.catalog import Catalog
from slotlock.workers.audit import audit_calendars, audit_day, select_days


def check_day(client: redis.Redis, part: str) -> dict:
    """Assert that the audit finds nothing on a day; return its counts (entries, applied,
    waiting, accepted, rejected, bookings, tokens)."""
    report = audit_day(client, part)
    assert report.ok, "\n".join(f"{f.code}: {f.message}" for f in report.findings)
    return report.counts


def audit_findings(client: redis.Redis) -> list[str]:
    """Every finding of the audit over every day the Redis knows, and across days."""
    catalog = Catalog(client)
    parts = select_days(client)
    found = [f"{part}: [{f.code}] {f.message}"
             for part in parts for f in audit_day(client, part, catalog).findings]
    found += [f"{cal}: [{f.code}] {f.message}"
              for cal, findings in audit_calendars(client, parts).items() for f in findings]
    return found


@pytest.fixture(autouse=True)
def audit_after_test(request):
    """After each test that used the private redis-server, audit every day it holds (and
    every calendar across its days) and fail the test on any finding. A test that leaves
    findings on purpose marks itself ``@pytest.mark.audit_findings_expected``."""
    yield
    if "redis_server" not in request.fixturenames:
        return
    if request.node.get_closest_marker("audit_findings_expected"):
        return
    server = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        found = audit_findings(client)
    finally:
        client.close()
    if found:
        pytest.fail("the audit after the test found:\n" + "\n".join(found[:20]),
                    pytrace=False)
