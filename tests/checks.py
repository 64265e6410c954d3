"""Invariant checks on one day's committed data, shared by the e2e and fault tests.

The checks themselves live in ``slotlock.chaos.daycheck`` (the fault harness uses them
too); here they become assertions.
"""

from __future__ import annotations

import redis

from slotlock.chaos.daycheck import check_day as day_report


def check_day(client: redis.Redis, part: str) -> dict:
    """Assert G1/G3/G6 on a day and return counts (see ``slotlock.chaos.daycheck``)."""
    report = day_report(client, part)
    assert not report.anomalies, "\n".join(f"{k}: {d}" for k, d in report.anomalies)
    return report.counts
