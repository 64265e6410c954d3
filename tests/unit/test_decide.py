"""decide/evolve: outcomes are values; accepted outcomes evolve the day."""

from datetime import date

from slotlock.model import Accepted, BookingCancelled, Rejected, decide, evolve, fold
from slotlock.model.commands import command_from_dict
from slotlock.model.outcomes import outcome_from_dict

from .factories import NOW, at, book, calendar, cancel, day


def accepted_day(*cmds):
    d = day()
    for cmd in cmds:
        outcome = decide(d, cmd, NOW)
        assert isinstance(outcome, Accepted), outcome
        d = evolve(d, outcome.event)
    return d


def test_book_then_overlap_is_rejected_with_the_conflict():
    first = book(at(10), at(11), actor="alice")
    d = accepted_day(first)
    outcome = decide(d, book(at(10, 30), at(11, 30), actor="bob"), NOW)
    assert isinstance(outcome, Rejected) and outcome.code == "overlap"
    assert [c["id"] for c in outcome.details["conflicts"]] == [first.booking_id]
    assert d.version == 1 and len(d.bookings) == 1


def test_booking_carries_owner_and_now():
    d = accepted_day(book(at(9), at(10), actor="carol", title="1:1"))
    (b,) = d.bookings
    assert (b.owner, b.title, b.created_at) == ("carol", "1:1", NOW)


def test_cancel_by_owner_frees_the_slot():
    first = book(at(10), at(11), actor="alice")
    d = accepted_day(first)
    outcome = decide(d, cancel(first.booking_id, actor="alice"), NOW)
    assert isinstance(outcome.event, BookingCancelled)
    d = evolve(d, outcome.event)
    assert d.bookings == () and d.version == 2
    assert isinstance(decide(d, book(at(10), at(11), actor="bob"), NOW), Accepted)


def test_cancel_by_someone_else_is_forbidden_unless_admin():
    first = book(at(10), at(11), actor="alice")
    d = accepted_day(first)
    refused = decide(d, cancel(first.booking_id, actor="mallory"), NOW)
    assert isinstance(refused, Rejected) and refused.code == "forbidden"
    allowed = decide(d, cancel(first.booking_id, actor="root", admin=True), NOW)
    assert isinstance(allowed, Accepted)


def test_cancel_unknown_booking_is_not_found():
    outcome = decide(day(), cancel("20261201.nope"), NOW)
    assert isinstance(outcome, Rejected) and outcome.code == "not_found"


def test_command_for_another_day_is_invalid():
    outcome = decide(day(on=date(2026, 12, 2)), book(at(10), at(11)), NOW)
    assert isinstance(outcome, Rejected) and outcome.code == "invalid"


def test_rule_change_applies_to_later_commands_only():
    d = accepted_day(book(at(10), at(12)))
    stricter = d.with_calendar(calendar(max_length_minutes=60))
    assert len(stricter.bookings) == 1
    outcome = decide(stricter, book(at(13), at(15)), NOW)
    assert isinstance(outcome, Rejected) and outcome.code == "rule_violation"


def test_fold_equals_stepwise_evolve():
    cmds = [book(at(h), at(h + 1)) for h in (8, 10, 12)]
    events = []
    d = day()
    for cmd in cmds:
        outcome = decide(d, cmd, NOW)
        events.append(outcome.event)
        d = evolve(d, outcome.event)
    assert fold(day(), events) == d


def test_commands_and_outcomes_roundtrip_through_dicts():
    cal = calendar()
    cmd = book(at(10), at(11))
    assert command_from_dict(cmd.to_dict()) == cmd
    c2 = cancel("20261201.x", admin=True)
    assert command_from_dict(c2.to_dict()) == c2
    outcome = decide(day(), cmd, NOW)
    assert outcome_from_dict(outcome.to_dict(cal.tz)) == outcome
    rejected = decide(accepted_day(cmd), book(at(10), at(11)), NOW)
    assert outcome_from_dict(rejected.to_dict(cal.tz)) == rejected
