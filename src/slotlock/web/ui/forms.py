"""The HTML forms. Every one is a ``FlaskForm``, so each carries and checks a CSRF token."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from flask_wtf import FlaskForm
from wtforms import HiddenField, IntegerField, PasswordField, StringField, TimeField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from ...model.timeutil import TimeError

TIME_FORMATS = ["%H:%M", "%H:%M:%S"]


class SignInForm(FlaskForm):
    username = StringField("User name", validators=[DataRequired(), Length(max=64)],
                           render_kw={"autocomplete": "username", "autocapitalize": "none",
                                      "spellcheck": "false"})
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "current-password"})
    next = HiddenField()


class BookingForm(FlaskForm):
    start = TimeField("Start", format=TIME_FORMATS, validators=[DataRequired("Give a start time.")])
    end = TimeField("End", format=TIME_FORMATS, validators=[Optional()])
    duration = IntegerField("Duration (minutes)", validators=[
        Optional(), NumberRange(1, 25 * 60, "A duration is 1 to 1500 minutes.")])
    title = StringField("Title", validators=[DataRequired("Give the booking a title."),
                                             Length(max=200, message="A title has at most 200 characters.")])
    fold = HiddenField(default="0")

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if ok and self.end.data is None and self.duration.data is None:
            self.end.errors.append("Give an end time or a duration.")
            return False
        return ok

    def instants(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """Start and end in UTC; None (with the reason on the field) for a time that does not
        exist on ``day``. An end of 00:00 is the midnight that closes the day; an end given
        as a time wins over a duration."""
        try:
            start = local_instant(day, self.start.data, tz, fold=1 if self.fold.data == "1" else 0)
        except TimeError as exc:
            self.start.errors.append(str(exc))
            return None
        if self.end.data is None:
            return start, start + timedelta(minutes=self.duration.data)
        if self.end.data == time(0):
            return start, local_instant(day + timedelta(days=1), time(0), tz)
        try:
            end = local_instant(day, self.end.data, tz)
            if end <= start:  # on the repeated autumn hour, the later of the two
                later = local_instant(day, self.end.data, tz, fold=1)
                end = later if later > start else end
        except TimeError as exc:
            self.end.errors.append(str(exc))
            return None
        return start, end


class ConfirmForm(FlaskForm):
    """A form with nothing but its CSRF token: cancel, sign out."""


def local_instant(day: date, at: time, tz: ZoneInfo, fold: int = 0) -> datetime:
    """The UTC instant of wall-clock ``at`` on ``day`` in ``tz``; ``fold=1`` picks the second of
    a repeated time. A time inside the spring-forward gap is refused, never shifted."""
    naive = datetime.combine(day, at)
    aware = naive.replace(tzinfo=tz, fold=fold)
    if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) != naive:
        raise TimeError(f"{at.strftime('%H:%M')} does not exist on {day.isoformat()} in "
                        f"{tz.key} (the clocks skip it)")
    return aware.astimezone(UTC)
