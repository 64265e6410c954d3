"""slotlock: a booking service that stays correct while processes crash, pause and scale."""

__version__ = "0.1.0"
