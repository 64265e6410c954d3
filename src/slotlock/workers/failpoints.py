"""Test-only failpoints of the lease worker, passed in: never part of its logic.

``SLOTLOCK_FAILPOINT=<name>:N`` acts at the N-th commit:

- ``stop_before_commit``: SIGSTOP ourselves between decide and commit (the test resumes us
  with SIGCONT): a paused holder whose lease passes to another worker.
- ``sleep_before_commit``: sleep 30 s there (only a second SIGTERM cuts it short).
- ``kill_after_commit``: SIGKILL ourselves right after the N-th commit's round trip
  (which also carries the note to the jobs), before the worker updates its own state.

``stop_before_commit:usr1`` fires at the first commit after a SIGUSR1, if one comes within
``ARMED_FOR_S`` (the fault harness uses it to make a stale writer certain, not lucky).
``SLOTLOCK_TEST_DISABLE_FENCING=1`` is the test-only broken build without the fence.
"""

from __future__ import annotations

import logging
import os
import signal
import time

log = logging.getLogger("slotlock.worker")

FAILPOINT_ENV = "SLOTLOCK_FAILPOINT"
NAMES = ("stop_before_commit", "sleep_before_commit", "kill_after_commit")
ARMED_BY_SIGNAL = "usr1"
ARMED_FOR_S = 2.0
DISABLE_FENCING_ENV = "SLOTLOCK_TEST_DISABLE_FENCING"


def fencing_disabled_for_test() -> bool:
    """Test-only broken build: commit without the lease token (and cursor) check.

    Honoured only when the process also runs under pytest (``PYTEST_CURRENT_TEST`` is
    inherited from the test that started it), so a stray variable cannot break production.
    It exists to prove that the fault checker catches what fencing prevents.
    """
    return os.environ.get(DISABLE_FENCING_ENV) == "1" and bool(os.environ.get("PYTEST_CURRENT_TEST"))


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


class Failpoints:
    """The failpoint of one worker process (or none: every hook is then a no-op)."""

    def __init__(self, raw: str | None = None):
        self.name: str | None = None
        self.nth: int | str = 0
        if raw:
            name, _, nth = raw.partition(":")
            if name not in NAMES:
                raise ValueError(f"unknown failpoint {raw!r}")
            self.name = name
            self.nth = nth if nth == ARMED_BY_SIGNAL else int(nth or 1)
        self._commits_seen = 0
        self._armed_until = 0.0

    @classmethod
    def from_env(cls) -> Failpoints:
        """The failpoint named in the environment, honoured only under pytest or with
        ``SLOTLOCK_ENV=development`` (a stray variable cannot stop a production worker)."""
        raw = os.environ.get(FAILPOINT_ENV)
        if raw and not (os.environ.get("PYTEST_CURRENT_TEST")
                        or os.environ.get("SLOTLOCK_ENV") == "development"):
            log.error("%s=%s ignored: failpoints act only under pytest or with "
                      "SLOTLOCK_ENV=development", FAILPOINT_ENV, raw)
            return cls(None)
        return cls(raw)

    @property
    def armed_by_signal(self) -> bool:
        return self.nth == ARMED_BY_SIGNAL

    def arm(self, signum=None, frame=None) -> None:
        """SIGUSR1 handler for ``<name>:usr1``."""
        self._armed_until = time.monotonic() + ARMED_FOR_S

    def before_commit(self, part: str, token: int | None) -> None:
        if self.name is None or self.name == "kill_after_commit":
            return
        self._commits_seen += 1
        if self.armed_by_signal:
            if time.monotonic() > self._armed_until:
                return
            self._armed_until = 0.0
        elif self._commits_seen != self.nth:
            return
        log.warning("FAILPOINT %s: %s token %d", self.name, part, token)
        _flush_logs()
        if self.name == "stop_before_commit":
            os.kill(os.getpid(), signal.SIGSTOP)  # the test resumes us with SIGCONT
        else:
            time.sleep(30)  # only a second SIGTERM (cold stop) cuts this short
        log.warning("FAILPOINT resumed: committing %s with token %d", part, token)

    def after_commit(self, part: str, token: int | None) -> None:
        if self.name != "kill_after_commit":
            return
        self._commits_seen += 1
        if self._commits_seen == self.nth:
            log.warning("FAILPOINT kill_after_commit: %s token %d, killing myself", part, token)
            _flush_logs()
            os.kill(os.getpid(), signal.SIGKILL)
