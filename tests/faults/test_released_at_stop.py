"""The harness reads which days a worker released at its warm stop from its log, so a day
let go of for idleness just before the signal is not taken for a slow handover."""

from slotlock.chaos.faults import _released_at_stop


def test_the_last_line_counts():
    log = ("12:00:00.000 worker[1] INFO slotlock.worker: released at stop: a:2030-01-01\n"
           "12:00:01.000 worker[1] INFO slotlock.worker: released at stop: b:2030-01-02 "
           "c:2030-01-03\n")
    assert _released_at_stop(log) == {"b:2030-01-02", "c:2030-01-03"}


def test_none_released_and_no_line():
    assert _released_at_stop("x INFO slotlock.worker: released at stop: -\n") == set()
    assert _released_at_stop("x INFO slotlock.worker: worker w1 stopped: idle\n") is None
