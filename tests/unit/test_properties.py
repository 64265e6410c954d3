"""Properties over random command sequences (hypothesis)."""

import itertools
from datetime import date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from slotlock.model import Accepted, Book, Cancel, Day, decide, evolve, fold
from slotlock.model.timeutil import day_bounds

from .factories import NOW, calendar

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
DATES = [date(2026, 3, 8), date(2026, 3, 29), date(2026, 10, 25), date(2026, 11, 1),
         date(2026, 4, 5), date(2026, 7, 14)]
ACTORS = ["alice", "bob", "carol"]


@st.composite
def scenario(draw):
    tz = draw(st.sampled_from(ZONES))
    on = draw(st.sampled_from(DATES))
    rules = {
        "granularity_minutes": draw(st.sampled_from([5, 15, 30, 60])),
        "buffer_minutes": draw(st.sampled_from([0, 0, 10])),
        "max_bookings_per_owner": draw(st.sampled_from([None, None, 3])),
    }
    cal = calendar(tz, **rules)
    opens, closes = day_bounds(on, cal.tz)
    span = int((closes - opens) / timedelta(minutes=5))
    ops = []
    for i in range(draw(st.integers(1, 40))):
        actor = draw(st.sampled_from(ACTORS))
        if ops and draw(st.integers(0, 3)) == 0:
            target = draw(st.integers(0, len(ops) - 1))
            ops.append(Cancel(f"c{i}", actor, cal.id, on, f"b{target}",
                              admin=draw(st.booleans())))
            continue
        a = draw(st.integers(-12, span + 12))
        length = draw(st.integers(-2, 60))
        start = opens + timedelta(minutes=5 * a)
        ops.append(Book(f"c{i}", actor, cal.id, on, f"b{i}", start,
                        start + timedelta(minutes=5 * length), "t"))
    return cal, on, ops


def run(cal, on, ops):
    d = Day(cal, on)
    events = []
    for i, cmd in enumerate(ops):
        outcome = decide(d, cmd, NOW + timedelta(seconds=i))
        if isinstance(outcome, Accepted):
            events.append(outcome.event)
            d = evolve(d, outcome.event)
    return d, events


@settings(max_examples=300, deadline=None)
@given(scenario())
def test_no_sequence_of_commands_yields_overlapping_bookings(case):
    cal, on, ops = case
    d, _ = run(cal, on, ops)
    opens, closes = day_bounds(on, cal.tz)
    buffer = timedelta(minutes=cal.rules.buffer_minutes)
    bookings = sorted(d.bookings, key=lambda b: b.start)
    for a, b in itertools.pairwise(bookings):
        assert a.end + buffer <= b.start, (a, b)
    for b in bookings:
        assert opens <= b.start < b.end <= closes


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_replaying_accepted_events_rebuilds_the_same_state(case):
    cal, on, ops = case
    d, events = run(cal, on, ops)
    assert fold(Day(cal, on), events) == d
    assert d.version == len(events)


@settings(max_examples=100, deadline=None)
@given(scenario())
def test_deciding_is_deterministic(case):
    cal, on, ops = case
    assert run(cal, on, ops) == run(cal, on, ops)


def test_a_day_with_every_slot_booked_accepts_nothing_more():
    cal = calendar("Europe/Berlin", granularity_minutes=60)
    on = date(2026, 10, 25)
    opens, closes = day_bounds(on, cal.tz)
    d = Day(cal, on)
    hours = int((closes - opens) / timedelta(hours=1))
    for h in range(hours):
        start = opens + timedelta(hours=h)
        outcome = decide(d, Book(f"c{h}", "a", "main", on, f"b{h}", start,
                                 start + timedelta(hours=1), "t"), NOW)
        d = evolve(d, outcome.event)
    assert len(d.bookings) == 25
    late = decide(d, Book("x", "a", "main", on, "bx", opens + timedelta(hours=3),
                          opens + timedelta(hours=4), "t"), NOW)
    assert late.code == "overlap"
    assert datetime  # imported for readers of the scenario strategy


def test_the_memoised_bookings_json_equals_a_full_serialisation():
    from slotlock.workers.applier import Batch, JsonMemo

    from .factories import at, book, day

    memo = JsonMemo()
    d = day()
    for h in range(0, 20, 2):
        d = evolve(d, decide(d, book(at(h), at(h + 1)), NOW).event)
        assert Batch(d, "0-0").bookings_json(memo) == Batch(d, "0-0").bookings_json()
    victim = d.bookings[3]
    d = evolve(d, decide(d, Cancel("c-x", victim.owner, "main", d.date, victim.id), NOW).event)
    assert Batch(d, "0-0").bookings_json(memo) == Batch(d, "0-0").bookings_json()
