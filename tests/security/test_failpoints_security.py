"""Test-only failpoints (a worker that stops or kills itself at a commit) never act in
production: a stray ``SLOTLOCK_FAILPOINT`` is ignored there, with an error in the log."""

from __future__ import annotations

import logging

import pytest

from slotlock.workers.failpoints import FAILPOINT_ENV, Failpoints


def test_a_failpoint_is_ignored_outside_tests_and_development(monkeypatch, caplog):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.setenv("SLOTLOCK_ENV", "production")
    monkeypatch.setenv(FAILPOINT_ENV, "kill_after_commit:1")
    with caplog.at_level(logging.ERROR, logger="slotlock.worker"):
        assert Failpoints.from_env().name is None
    assert "SLOTLOCK_FAILPOINT=kill_after_commit:1 ignored" in caplog.text


@pytest.mark.parametrize("env", [{"PYTEST_CURRENT_TEST": "x"}, {"SLOTLOCK_ENV": "development"}])
def test_a_failpoint_acts_under_pytest_or_in_development(monkeypatch, env):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("SLOTLOCK_ENV", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(FAILPOINT_ENV, "kill_after_commit:2")
    failpoint = Failpoints.from_env()
    assert (failpoint.name, failpoint.nth) == ("kill_after_commit", 2)
