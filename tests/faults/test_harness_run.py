"""The fault harness against real processes: a short seeded run of the wide workload keeps
every guarantee, and deliberately broken builds (fencing disabled, the local-day rule
disabled) are caught by the checker (so the checker is known to work)."""

from __future__ import annotations

import pytest

from slotlock.chaos.clients import Mix
from slotlock.chaos.faults import KINDS, schedule
from slotlock.chaos.harness import RunConfig, run

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def test_schedule_is_a_function_of_the_seed():
    assert schedule(7, 60, 0.5) == schedule(7, 60, 0.5)
    assert schedule(7, 60, 0.5) != schedule(8, 60, 0.5)
    plan = schedule(7, 600, 0.25)
    assert 100 <= len(plan) <= 200 and {kind for _, kind in plan} == set(KINDS)


@pytest.mark.timeout(240)
def test_short_run_under_every_fault_kind_keeps_the_guarantees(tmp_path):
    # Every kind at least once: seed 9's schedule holds each kind in its first 30 s.
    kinds = {kind: 1.0 for kind in KINDS}
    assert {kind for at, kind in schedule(9, 45, 0.5, kinds) if at < 30} == set(KINDS)
    report = run(RunConfig(tmp_path / "run", duration_s=45, seed=9, fault_rate=0.5,
                           kinds=kinds, clients=6, think_s=0.05), log=lambda _: None)
    print(report.summary())
    assert sum(report.anomalies.values()) == 0, report.summary()
    assert report.settled
    assert report.survival["crashed"] == 0
    assert not report.harness_errors, report.harness_errors
    assert report.operations["total"] >= 200
    assert report.operations["by_type"].get("ok", 0) > 0
    assert report.faults["stale_mid_commit"] >= 1
    # stale writers were really stopped by the fence, not just absent
    assert report.fence_refusals_logged > 0
    assert report.samples > 50
    assert set(report.faults["by_kind"]) == set(KINDS), report.faults
    # the workload is the wide one: every part of it ran
    work = report.workload
    assert work["calendars"].count("(") == 3 and "Europe/Berlin" in work["calendars"]
    assert work["rules_revisions"] > 0 and work["zone_change_attempts"] > 0
    assert work["admin_cancels"] > 0
    assert work["retries_same_key"] > 0 and work["key_reuses"] > 0
    assert work["days_retained"] > 0  # slotlock jobs retained the admin's past days
    assert work["webhook_distinct"] > 0 and work["webhook_refused"] > 0


@pytest.mark.timeout(180)
def test_checker_catches_a_build_without_fencing(tmp_path):
    report = run(RunConfig(tmp_path / "broken", duration_s=15, seed=2, fault_rate=0.4,
                           kinds={"stale_commit": 1.0}, clients=6, think_s=0.02,
                           disable_fencing=True), log=lambda _: None)
    print(report.summary())
    assert report.faults["stale_mid_commit"] >= 1
    assert report.fence_refusals_logged == 0  # nothing refused: the stale commits landed
    assert report.anomaly_count > 0, report.summary()
    # a stale batch lands on top of its successor's: commands applied twice, tokens go back,
    # the audit's replay disagrees with the state
    assert (report.anomalies["duplicate"] + report.anomalies["fence"]
            + report.anomalies["replay"]) > 0


@pytest.mark.timeout(180)
def test_the_instant_overlap_check_catches_a_build_without_the_local_day_rule(tmp_path):
    """Bookings that reach over midnight are accepted by this build and spill into the next
    day, where other bookings hold the same instants: only a check across days sees it."""
    report = run(RunConfig(tmp_path / "broken", duration_s=15, seed=3, fault_rate=0.0,
                           clients=6, think_s=0.02, disable_day_bounds=True, operator=False,
                           mix=Mix(midnight=0.5, cancel=0.1)), log=lambda _: None)
    print(report.summary())
    assert report.anomalies["overlap"] > 0, report.summary()
    assert any("cover the same instant" in e for e in report.examples), report.examples
