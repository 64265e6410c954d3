"""The pure timetable model.

Nothing in this package imports Redis, Flask, rq, ``os`` or reads the clock: time
comes in as data (``now``), so every decision can be replayed exactly by the audit.
"""

from .booking import Booking
from .calendar import Calendar, Rules
from .commands import Book, Cancel, Command
from .day import Day, evolve, fold
from .decide import decide
from .outcomes import Accepted, BookingCancelled, BookingMade, Event, Outcome, Rejected

__all__ = [
    "Accepted",
    "Book",
    "Booking",
    "BookingCancelled",
    "BookingMade",
    "Calendar",
    "Cancel",
    "Command",
    "Day",
    "Event",
    "Outcome",
    "Rejected",
    "Rules",
    "decide",
    "evolve",
    "fold",
]
