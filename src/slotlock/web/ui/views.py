"""The HTML views. A booking or a cancel goes through ``Client`` exactly as in the JSON
API; the outcome becomes a redirect with a flash message (accepted), the form again
with the reason and the conflicting bookings highlighted (refused), or a status page
that refreshes itself until the command is decided (no outcome within the timeout)."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timedelta
from typing import Any

import redis
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_wtf.csrf import CSRFError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException

from ...client import Client, Result
from ...errors import Backpressure, InvalidRequest, UnknownCalendar
from ...ids import parse_booking_id, parse_command_id
from ...model import Calendar
from ...model.timeutil import parse_instant
from ...users import HashCapacity
from . import auth, grid
from .forms import BookingForm, ConfirmForm, SignInForm

log = logging.getLogger("slotlock.web.ui")

bp = Blueprint("ui", __name__)

PUBLIC = {"ui.sign_in"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DEFAULT_CALENDAR = "main"
# Typed values of commands still pending, kept to show the form again if one is refused.
MAX_PENDING_KEPT = 5
STATUS_REFRESH_S = 1


def client() -> Client:
    return current_app.extensions["slotlock"].client


@bp.before_request
def _require_sign_in():
    if request.endpoint in PUBLIC:
        return None
    if auth.load_user() is None:
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("ui.sign_in", next=target))
    return None


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    from flask import g

    return {"user": g.get("ui_user"), "confirm_form": ConfirmForm}


# -- sign in / out -------------------------------------------------------------------------

@bp.route("/signin", methods=["GET", "POST"])
def sign_in():
    form = SignInForm()
    if request.method == "GET":
        form.next.data = auth.safe_next(request.args.get("next")) or ""
        if auth.load_user() is not None:
            return redirect(form.next.data or url_for("ui.index"))
    if form.validate_on_submit():
        try:
            user = auth.sign_in(form.username.data, form.password.data)
        except HashCapacity as exc:
            page, status = error_page(503, "Busy", f"{exc}.")
            return page, status, {"Retry-After": "1"}
        if user is not None:
            flash(f"Signed in as {form.username.data}.", "success")
            return redirect(auth.safe_next(form.next.data) or url_for("ui.index"), 303)
        form.password.errors.append("Wrong user name or password.")
    status = 401 if request.method == "POST" else 200
    return render_template("signin.html", form=form), status


@bp.post("/signout")
def sign_out():
    auth.sign_out()
    flash("Signed out.", "success")
    return redirect(url_for("ui.sign_in"), 303)


# -- days ----------------------------------------------------------------------------------

def parse_day(value: str | None) -> date | None:
    try:
        if value and DATE.match(value):
            day = date.fromisoformat(value)
            if 1970 <= day.year <= 9998:
                return day
    except ValueError:
        pass
    return None


def today(calendar: Calendar) -> date:
    return datetime.now(calendar.tz).date()


def default_calendar() -> Calendar:
    found = client().catalog.find(DEFAULT_CALENDAR)
    if found is None:
        calendars = client().catalog.all()
        if not calendars:
            abort(404, "there is no calendar yet (run: slotlock migrate)")
        found = calendars[0]
    return found


@bp.get("/")
def index():
    calendar = default_calendar()
    return redirect(url_for("ui.day", calendar_id=calendar.id, day=today(calendar).isoformat()))


@bp.get("/go")
def go():
    """The target of the calendar switcher and date picker (a GET form)."""
    calendar_id = request.args.get("calendar") or default_calendar().id
    calendar = client().catalog.get(calendar_id)
    day = parse_day(request.args.get("date")) or today(calendar)
    return redirect(url_for("ui.day", calendar_id=calendar.id, day=day.isoformat()))


def path_day(value: str) -> date:
    day = parse_day(value)
    if day is None:
        abort(404, f"{value!r} is not a date like 2030-05-04")
    return day


def booking_form_from_args(calendar: Calendar) -> BookingForm:
    """A free slot's link pre-fills the form through query parameters."""
    if any(k in request.args for k in ("start", "end", "duration", "title")):
        return BookingForm(formdata=request.args)
    form = BookingForm(formdata=None)
    form.duration.data = calendar.rules.granularity_minutes
    return form


def refusal_view(error: dict[str, Any], calendar: Calendar, form: BookingForm) -> dict[str, Any]:
    """The reason in plain words, and the conflicting bookings as the person will read them."""
    tz = calendar.tz
    details = error.get("details") or {}
    conflicts = [{"title": b["title"], "owner": b["owner"],
                  "start": grid.hhmm(parse_instant(b["start"]), tz),
                  "end": grid.hhmm(parse_instant(b["end"]), tz), "id": b["id"]}
                 for b in details.get("conflicts") or []]
    code, message = error["code"], error["message"]
    if code == "overlap" and calendar.rules.buffer_minutes == 0:
        count = "another booking" if len(conflicts) == 1 else f"{len(conflicts)} other bookings"
        text = f"This time is already taken: it overlaps {count}, highlighted in the day."
    elif code == "quota_exceeded":
        text = f"You have reached this calendar's limit: {message}."
    elif code == "rule_violation":
        text = f"This calendar's rules do not allow it: {message}."
    else:
        text = f"Not booked: {message}."
    field = details.get("field")
    if code == "invalid" and field in ("start", "end", "title"):
        getattr(form, field).errors.append(message[:1].upper() + message[1:] + ".")
    return {"code": code, "text": text, "conflicts": conflicts,
            "ids": {c["id"] for c in conflicts}}


def render_day(calendar: Calendar, day: date, form: BookingForm, *, status: int = 200,
               refusal: dict[str, Any] | None = None):
    view = client().read_day(calendar.id, day)
    user = auth.current()
    rows = grid.rows(calendar, day, view.bookings, user=user.name, admin=user.admin,
                     conflicts=refusal["ids"] if refusal else frozenset())
    mine = [b for b in view.bookings if b["owner"] == user.name]
    return render_template(
        "day.html", calendar=calendar, day=day, rows=rows, form=form, refusal=refusal,
        calendars=client().catalog.all(), today=today(calendar), mine=len(mine),
        prev_day=(day - timedelta(days=1)).isoformat(), next_day=(day + timedelta(days=1)).isoformat(),
        pending=view.pending,
    ), status


@bp.get("/calendars/<calendar_id>/days/<day>")
def day(calendar_id: str, day: str):
    calendar = client().catalog.get(calendar_id)
    when = path_day(day)
    return render_day(calendar, when, booking_form_from_args(calendar))


@bp.post("/calendars/<calendar_id>/days/<day>")
def book(calendar_id: str, day: str):
    calendar = client().catalog.get(calendar_id)
    when = path_day(day)
    form = BookingForm()
    if not form.validate():
        return render_day(calendar, when, form, status=422)
    instants = form.instants(when, calendar.tz)
    if instants is None:
        return render_day(calendar, when, form, status=422)
    user = auth.current()
    try:
        result = client().book(user.name, calendar.id, instants[0], instants[1],
                               form.title.data, admin=user.admin)
    except InvalidRequest as exc:
        form.start.errors.append(str(exc))
        return render_day(calendar, when, form, status=422)
    return booked(result, calendar, when, form)


def booked(result: Result, calendar: Calendar, when: date, form: BookingForm):
    if result.pending:
        remember(result.command_id, "book", {f: request.form.get(f, "") for f in
                                             ("start", "end", "duration", "title", "fold")})
        return redirect(url_for("ui.command", command_id=result.command_id), 303)
    outcome = result.outcome
    if outcome["status"] == "accepted":
        flash(accepted_message(outcome, calendar), "success")
        return redirect(url_for("ui.day", calendar_id=calendar.id, day=when.isoformat()), 303)
    refusal = refusal_view(outcome["error"], calendar, form)
    status = 409 if outcome["error"]["code"] in ("overlap", "quota_exceeded") else 422
    return render_day(calendar, when, form, status=status, refusal=refusal)


def accepted_message(outcome: dict[str, Any], calendar: Calendar) -> str:
    b = outcome["booking"]
    tz = calendar.tz
    span = f"{grid.hhmm(parse_instant(b['start']), tz)}–{grid.hhmm(parse_instant(b['end']), tz)}"
    if outcome.get("event") == "cancelled":
        return f"Cancelled “{b['title']}” ({span})."
    return f"Booked “{b['title']}”, {span}."


# -- cancel --------------------------------------------------------------------------------

def booking_or_404(calendar: Calendar, booking_id: str) -> dict[str, Any]:
    try:
        parse_booking_id(booking_id)
    except InvalidRequest:
        abort(404)
    booking = client().get_booking(calendar.id, booking_id)
    if booking is None:
        abort(404, "This booking does not exist (any more).")
    return booking


@bp.route("/calendars/<calendar_id>/bookings/<booking_id>/cancel", methods=["GET", "POST"])
def cancel(calendar_id: str, booking_id: str):
    calendar = client().catalog.get(calendar_id)
    booking = booking_or_404(calendar, booking_id)
    user = auth.current()
    if booking["owner"] != user.name and not user.admin:
        abort(403, "Only the owner of a booking or an admin may cancel it.")
    when = parse_booking_id(booking_id)
    form = ConfirmForm()
    if not form.validate_on_submit():
        tz = calendar.tz
        shown = dict(booking, start_local=grid.hhmm(parse_instant(booking["start"]), tz),
                     end_local=grid.hhmm(parse_instant(booking["end"]), tz))
        return render_template("cancel.html", calendar=calendar, booking=shown, day=when,
                               form=form)
    result = client().cancel(user.name, calendar.id, booking_id, admin=user.admin)
    if result.pending:
        remember(result.command_id, "cancel", {})
        return redirect(url_for("ui.command", command_id=result.command_id), 303)
    if result.outcome["status"] == "accepted":
        flash(accepted_message(result.outcome, calendar), "success")
    else:
        flash(f"Not cancelled: {result.outcome['error']['message']}.", "error")
    return redirect(url_for("ui.day", calendar_id=calendar.id, day=when.isoformat()), 303)


# -- commands still pending ----------------------------------------------------------------

def remember(command_id: str, kind: str, typed: dict[str, str]) -> None:
    kept = dict(session.get("pending") or {})
    kept[command_id] = {"kind": kind, "typed": typed}
    session["pending"] = dict(list(kept.items())[-MAX_PENDING_KEPT:])


def forget(command_id: str) -> dict[str, Any] | None:
    kept = dict(session.get("pending") or {})
    entry = kept.pop(command_id, None)
    session["pending"] = kept
    return entry


@bp.get("/commands/<command_id>")
def command(command_id: str):
    """Refreshes itself while the command waits for a worker; then goes where it belongs."""
    try:
        calendar_id, when = parse_command_id(command_id)
    except InvalidRequest:
        abort(404)
    user = auth.current()
    status = client().status(command_id, reader=user.name, admin=user.admin)
    if status is None:  # unknown, or another user's: the same answer
        abort(404, "There is no such request.")
    calendar = client().catalog.get(calendar_id)
    day_url = url_for("ui.day", calendar_id=calendar.id, day=when.isoformat())
    if status["status"] == "pending":
        return render_template("pending.html", calendar=calendar, day=when, day_url=day_url,
                               refresh=STATUS_REFRESH_S, command_id=command_id), 202
    entry = forget(command_id)
    if status["status"] == "accepted":
        flash(accepted_message(status, calendar), "success")
        return redirect(day_url, 303)
    if entry and entry["kind"] == "book":
        form = BookingForm(formdata=MultiDict(entry["typed"]))
        refusal = refusal_view(status["error"], calendar, form)
        code = 409 if status["error"]["code"] in ("overlap", "quota_exceeded") else 422
        return render_day(calendar, when, form, status=code, refusal=refusal)
    flash(f"Refused: {status['error']['message']}.", "error")
    return redirect(day_url, 303)


# -- errors as pages -----------------------------------------------------------------------

def error_page(status: int, title: str, message: str):
    return render_template("error.html", status=status, title=title, message=message), status


@bp.errorhandler(CSRFError)
def _csrf(exc: CSRFError):
    return error_page(400, "Form refused", "This form was refused because it did not carry a "
                      "valid security token (it may have expired, or come from another site). "
                      "Go back, reload the page and try again.")


@bp.errorhandler(UnknownCalendar)
def _unknown_calendar(exc: UnknownCalendar):
    return error_page(404, "No such calendar", f"There is no calendar “{exc.calendar_id}”.")


@bp.errorhandler(Backpressure)
def _busy(exc: Backpressure):
    return error_page(503, "Busy", "Too many requests are waiting for this day. "
                      "Please try again in a moment.")


@bp.errorhandler(redis.RedisError)
def _redis_down(exc: redis.RedisError):
    log.warning("redis error on %s %s: %s", request.method, request.path, exc)
    return error_page(503, "Temporarily unavailable", "The booking store cannot be reached "
                      "right now. Please try again in a moment.")


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException):
    return error_page(exc.code or 500, exc.name, exc.description or exc.name)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_page(500, "Something went wrong", "An unexpected error happened. "
                      "Please try again.")
