"""The audit replays a day's history through the pure model and reports every inconsistency."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from slotlock.cli import main
from slotlock.days.keys import DayKeys
from slotlock.workers.audit import audit_and_record, audit_day, list_findings, select_days
from tests.conftest import make_settings
from tests.jobs_support import history

PART = "main:2024-01-10"
KEYS = DayKeys(PART)


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


def overlapping_booking(redis) -> tuple[dict, dict]:
    """Write a booking straight into the committed state, overlapping booking 'a'."""
    bookings = json.loads(redis.hget(KEYS.state, "bookings"))
    victim = next(b for b in bookings if b["title"] == "a")
    intruder = dict(victim, id="20240110.deadbeefdeadbeef", title="intruder", owner="mallory",
                    start="2024-01-10T09:45:00+00:00", end="2024-01-10T10:15:00+00:00")
    redis.hset(KEYS.state, "bookings", json.dumps(bookings + [intruder]))
    return victim, intruder


def test_a_clean_history_with_a_rules_change_passes(any_redis):
    history(make_settings(), any_redis)
    report = audit_day(any_redis, PART)
    assert report.ok, report.findings
    assert report.replayed == 5
    assert [b["title"] for b in report.bookings] == ["a", "d"]
    assert any_redis.hget(KEYS.state, "applied") == "5"


def test_an_overlapping_booking_written_behind_the_workers_back_is_reported(any_redis):
    history(make_settings(), any_redis)
    victim, intruder = overlapping_booking(any_redis)
    report = audit_and_record(any_redis, PART)
    overlaps = [f for f in report.findings if f.code == "overlap"]
    assert len(overlaps) == 1
    assert [b["id"] for b in overlaps[0].details["bookings"]] == [victim["id"], intruder["id"]]
    assert overlaps[0].details["bookings"][1]["title"] == "intruder"
    unexplained = [f for f in report.findings if f.code == "state"]
    assert [f.details["booking"]["id"] for f in unexplained] == [intruder["id"]]
    stored = list_findings(any_redis)
    assert [item["day"] for item in stored] == [PART]
    assert {f["code"] for f in stored[0]["findings"]} == {"overlap", "state"}


def test_findings_are_cleared_by_a_clean_audit(any_redis):
    history(make_settings(), any_redis)
    original = any_redis.hget(KEYS.state, "bookings")
    overlapping_booking(any_redis)
    assert not audit_and_record(any_redis, PART).ok
    any_redis.hset(KEYS.state, "bookings", original)
    assert audit_and_record(any_redis, PART).ok
    assert list_findings(any_redis) == []


def test_a_tampered_outcome_is_reported(any_redis):
    made = history(make_settings(), any_redis)
    outcome = json.loads(any_redis.hget(KEYS.done, made["b"]))
    assert outcome["status"] == "rejected"
    outcome["error"]["code"] = "quota_exceeded"
    any_redis.hset(KEYS.done, made["b"], json.dumps(outcome))
    report = audit_day(any_redis, PART)
    assert codes(report) == ["outcome"]
    assert report.findings[0].details["replayed"]["error"]["code"] == "overlap"


def test_a_missing_outcome_and_a_wrong_cursor_are_reported(any_redis):
    made = history(make_settings(), any_redis)
    any_redis.hdel(KEYS.done, made["a"])
    assert "outcome" in codes(audit_day(any_redis, PART))
    history_cursor = any_redis.hget(KEYS.state, "cursor")
    ms, seq = history_cursor.split("-")
    any_redis.hset(KEYS.state, "cursor", f"{ms}-{int(seq) + 7}")
    assert "cursor" in codes(audit_day(any_redis, PART))


def test_lease_tokens_must_strictly_increase(any_redis):
    history(make_settings(), any_redis)
    tokens = any_redis.lrange(KEYS.tokens, 0, -1)
    assert [int(t) for t in tokens] == sorted(int(t) for t in tokens)
    any_redis.rpush(KEYS.tokens, "1")
    report = audit_day(any_redis, PART)
    assert "token_history" in codes(report)


def test_a_counter_drift_is_reported(any_redis):
    history(make_settings(), any_redis)
    any_redis.hincrby(KEYS.state, "version", 1)
    assert codes(audit_day(any_redis, PART)) == ["counters"]


def test_days_are_found_by_the_index_the_submitter_writes_first(any_redis):
    from slotlock.days.index import WorkIndex

    history(make_settings(), any_redis)
    assert select_days(any_redis) == [PART]
    any_redis.delete("sl:days")  # data written before submitters indexed days
    assert select_days(any_redis) == []
    assert WorkIndex(any_redis).backfill_days() == 1  # what slotlock migrate does once
    assert select_days(any_redis) == [PART]
    assert select_days(any_redis, "main") == [PART]
    assert select_days(any_redis, "other") == []


@pytest.fixture
def cli_env(redis_server, real_redis):
    return {"REDIS_URL": redis_server.url, "SECRET_KEY": "test"}


def test_slotlock_audit_exits_1_on_a_finding_and_status_shows_it(real_redis, cli_env):
    history(make_settings(), real_redis)
    runner = CliRunner()
    clean = runner.invoke(main, ["audit", "--calendar", "main", "--date", "2024-01-10"],
                          env=cli_env)
    assert clean.exit_code == 0, clean.output
    assert "main:2024-01-10: ok" in clean.output
    victim, intruder = overlapping_booking(real_redis)
    bad = runner.invoke(main, ["audit"], env=cli_env)
    assert bad.exit_code == 1, bad.output
    assert "[overlap]" in bad.output and intruder["id"] in bad.output and victim["id"] in bad.output
    status = runner.invoke(main, ["status", "--json"], env=cli_env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["findings"][0]["day"] == PART
    text = runner.invoke(main, ["status"], env=cli_env)
    assert "audit findings (1 day(s))" in text.output and "[overlap]" in text.output
