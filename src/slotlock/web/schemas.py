"""Pydantic models of every JSON body the API reads or writes; the OpenAPI document is built
from these, so a schema is written once."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Responses carry times exactly as the core writes them (RFC 3339 with the calendar's offset).
Instant = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
LocalDate = Annotated[str, Field(json_schema_extra={"format": "date"})]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------

class BookingRequest(BaseModel):
    """A time with an offset is taken as is; a naive one is read in the calendar's time zone."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "start": "2030-05-04T10:00:00", "end": "2030-05-04T10:30:00", "title": "Stand-up"}})

    start: datetime
    end: datetime
    title: str = Field(min_length=1, max_length=200)

    @field_validator("start", "end")
    @classmethod
    def _sane_year(cls, value: datetime) -> datetime:
        # Far years overflow when moved between zones and do not fit the ids' yyyymmdd.
        if not 1970 <= value.year <= 9998:
            raise ValueError("the year must be between 1970 and 9998")
        return value


# -- responses -----------------------------------------------------------------------------

class Booking(_Out):
    id: str
    calendar: str
    start: Instant
    end: Instant
    title: str
    owner: str
    created_at: Instant


class Rules(_Out):
    granularity_minutes: int
    min_length_minutes: int | None
    max_length_minutes: int | None
    open_from: str
    open_until: str | None
    buffer_minutes: int
    max_bookings_per_owner: int | None
    max_title_length: int
    horizon_days: int = Field(description="bookings start at most this many days after today "
                              "in the calendar's zone; 0: no limit")


class Calendar(_Out):
    id: str
    name: str
    timezone: str
    rules: Rules
    revision: int


class CalendarList(_Out):
    calendars: list[Calendar]


class DayView(_Out):
    calendar: str
    date: LocalDate
    version: int
    bookings: list[Booking]


class Cancelled(_Out):
    booking: Booking
    status: Literal["cancelled"]


class Pending(_Out):
    """The command is queued; it will be decided when a worker reaches it."""

    command_id: str
    status_url: str


class ErrorDetail(_Out):
    code: str = Field(description="overlap, quota_exceeded, invalid, rule_violation, not_found, "
                                  "forbidden, unauthorized, malformed_json, too_large, "
                                  "rate_limited, unavailable, backlog_full, "
                                  "idempotency_mismatch, method_not_allowed")
    message: str
    details: dict[str, Any] = Field(default_factory=dict,
                                    description="e.g. conflicts: the conflicting bookings")


class Error(_Out):
    error: ErrorDetail


class CommandStatus(_Out):
    command_id: str
    status: Literal["pending", "accepted", "rejected"]
    booking: Booking | None = None
    error: ErrorDetail | None = None


class Finding(_Out):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class AuditedDay(BaseModel):
    """A day whose last audit found something (``slotlock audit`` / the scheduled audit)."""

    model_config = ConfigDict(extra="allow")

    day: str
    calendar: str
    date: LocalDate
    audited_at: float | int | str | None = None
    findings: list[Finding]


class FindingList(_Out):
    days: list[AuditedDay]


class Health(_Out):
    status: Literal["ok", "unavailable"]


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    Booking, CalendarList, DayView, Cancelled, Pending, Error, CommandStatus, FindingList, Health,
)
REQUEST_MODELS: tuple[type[BaseModel], ...] = (BookingRequest,)
