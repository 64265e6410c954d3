"""Submit a command and wait (bounded) for its outcome; read a day's committed state.

Used by the web layer, the CLI and the tests. It never decides anything itself:
commands go to the day's stream, and the day's lease holder decides them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from .catalog import Catalog
from .config import Settings
from .days.index import WorkIndex
from .days.keys import DayKeys, idempotency_key
from .days.scripts import Scripts
from .days.store import DayStore
from .errors import IdempotencyMismatch, InvalidRequest
from .ids import new_ids, parse_booking_id, parse_command_id
from .model import Book, Calendar, Cancel, Command, Day, Rejected
from .model.booking import Booking
from .model.rules import booking_window
from .model.timeutil import TimeError, local_date, to_utc
from .redis_conn import MAY_HAVE_RUN, connect, connect_blocking, is_cluster_client, use_cluster

CALENDAR_CACHE_S = 1.0
MARKER = "-"  # submit.lua's "nothing queued" marker for a fused wait (never an outcome)
MARKER_TTL_MS = 10_000
BARRIER_TTL_MS = 60_000  # the replication barrier (DayKeys.barrier) expires on its own
# A thread past WebClient's cap of waiters still waits this long in the submit's round trip:
# a flash crowd's bookings are mostly decided by then (fewer 202s), and the thread is
# busy no longer than an ordinary request.
OVER_CAP_WAIT_MS = 100
ACTOR_TAG_HEX = 16


@dataclass(frozen=True, slots=True)
class Result:
    """What a submit gives back: the outcome dict, or None while still pending."""

    command_id: str
    outcome: dict[str, Any] | None
    duplicate: bool = False

    @property
    def pending(self) -> bool:
        return self.outcome is None


@dataclass(frozen=True, slots=True)
class DayView:
    calendar: Calendar
    date: date
    version: int
    bookings: list[dict[str, Any]] = field(default_factory=list)
    pending: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "calendar": self.calendar.id,
            "date": self.date.isoformat(),
            "version": self.version,
            "bookings": self.bookings,
        }


WINDOW_SKEW = timedelta(minutes=5)  # the web's clock may differ a little from Redis's


def outside_window(calendar: Calendar, command: Book) -> Rejected | None:
    """The model's booking-window refusal, checked before anything is written.

    The worker decides with the Redis time of the command's stream entry; here the web's
    clock stands in, with a margin, so this refuses only what the worker would refuse too
    (the worker stays the authority for the rest).
    """
    booking = Booking(command.booking_id, command.calendar, command.start, command.end,
                      command.title, command.actor, command.start)
    day = Day(calendar, command.date)
    now = datetime.now(UTC)
    for moment, rule in ((now - WINDOW_SKEW, "past"), (now + WINDOW_SKEW, "horizon")):
        violation = booking_window(day, booking, moment, command.admin)
        if violation is not None and violation.details.get("rule") == rule:
            return Rejected(command.command_id, violation.code, violation.message,
                            violation.details)
    return None


def fingerprint(command: Command) -> str:
    body = command.to_dict()
    for volatile in ("command_id", "booking_id", "idempotency_key", "admin", "date"):
        body.pop(volatile, None)
    if isinstance(command, Cancel):
        body["booking_id"] = command.booking_id
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def with_actor(command_id: str, actor: str) -> str:
    """The command id with the actor's tag appended to its random part.

    ``GET /api/v1/commands/{id}`` answers only the command's actor (or an admin); the
    tag lets it tell who that is from the id alone, with no record to store or expire.
    The tag is not secret: it only ties the id, which the asker already holds, to one
    user name (64 bits of sha256, so no other name matches it by chance).
    """
    return command_id + _actor_tag(command_id.rpartition(".")[2], actor)


def issued_by(command_id: str, actor: str) -> bool | None:
    """True/False for a tagged command id; None for an untagged one (e.g. made elsewhere)."""
    rand = command_id.rpartition(".")[2]
    if len(rand) != 2 * ACTOR_TAG_HEX:
        return None
    tag = _actor_tag(rand[:ACTOR_TAG_HEX], actor)
    return hmac.compare_digest(rand[ACTOR_TAG_HEX:], tag)


def _actor_tag(rand: str, actor: str) -> str:
    return hashlib.sha256(f"slotlock-actor\0{actor}\0{rand}".encode()).hexdigest()[:ACTOR_TAG_HEX]


class Client:
    def __init__(self, settings: Settings, client: redis.Redis | None = None,
                 blocking: redis.Redis | None = None):
        self.settings = settings
        cluster = use_cluster(settings)
        self.redis = client or connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                                       cluster=cluster)
        self.blocking = blocking or connect_blocking(
            settings.redis_url, block_ms=settings.reply_timeout_ms,
            timeout_ms=settings.redis_timeout_ms, cluster=cluster,
        )
        self.scripts = Scripts(self.redis)
        self.blocking_scripts = Scripts(self.blocking)
        self.store = DayStore(self.redis, self.scripts)
        self.index = WorkIndex(self.redis, self.scripts)
        self.catalog = Catalog(self.redis, self.scripts)
        self._calendars: dict[str, tuple[float, Calendar]] = {}
        self._zone_locked: set[str] = set()

    # -- commands ------------------------------------------------------------------------

    def calendar(self, calendar_id: str) -> Calendar:
        """A calendar, cached for a second: only its time zone is used before the worker."""
        now = time.monotonic()
        cached = self._calendars.get(calendar_id)
        if cached and cached[0] > now:
            return cached[1]
        calendar = self.catalog.get(calendar_id)
        self._calendars[calendar_id] = (now + CALENDAR_CACHE_S, calendar)
        return calendar

    def zone_locked_calendar(self, calendar_id: str) -> Calendar:
        """The calendar, with its time zone locked at the one returned (``Catalog.lock_zone``).

        A command's day and instants are computed in this zone; once locked it cannot
        change, so they stay right. One round trip per calendar and process, the first time.
        """
        for _ in range(5):
            calendar = self.calendar(calendar_id)
            if calendar_id in self._zone_locked:
                return calendar
            moved = self.catalog.lock_zone(calendar_id, calendar.timezone)
            if moved is None:
                self._zone_locked.add(calendar_id)
                return calendar
            self._calendars.pop(calendar_id, None)  # read the new zone and compute again
        raise InvalidRequest(f"the time zone of calendar {calendar_id!r} keeps changing")

    def book(self, actor: str, calendar_id: str, start: datetime, end: datetime, title: str, *,
             admin: bool = False, idempotency_key: str | None = None,
             wait_ms: int | None = None) -> Result:
        calendar = self.zone_locked_calendar(calendar_id)
        try:
            start_utc = to_utc(start, calendar.tz)
            end_utc = to_utc(end, calendar.tz)
        except TimeError as exc:
            raise InvalidRequest(str(exc), field="start") from exc
        day = local_date(start_utc, calendar.tz)
        command_id, booking_id = new_ids(calendar.id, day)
        command_id = with_actor(command_id, actor)
        command = Book(command_id, actor, calendar.id, day, booking_id, start_utc, end_utc, title,
                       admin=admin, idempotency_key=idempotency_key)
        # nothing is written for a day outside the window (G8), unless this is a retry
        return self.submit(command, wait_ms=wait_ms, refusal=outside_window(calendar, command))

    def cancel(self, actor: str, calendar_id: str, booking_id: str, *, admin: bool = False,
               idempotency_key: str | None = None, wait_ms: int | None = None) -> Result:
        calendar = self.calendar(calendar_id)
        day = parse_booking_id(booking_id)
        command_id, _ = new_ids(calendar.id, day)
        command_id = with_actor(command_id, actor)
        command = Cancel(command_id, actor, calendar.id, day, booking_id, admin=admin,
                         idempotency_key=idempotency_key)
        refusal = None
        if not self.index.day_known(DayKeys.of(calendar.id, day).part):
            # no command was ever queued on that day, so no such booking: nothing is written
            refusal = Rejected(command_id, "not_found", f"no booking {booking_id} on "
                               f"{calendar.id} {day.isoformat()}", {"booking_id": booking_id})
        return self.submit(command, wait_ms=wait_ms, refusal=refusal)

    def submit(self, command: Command, *, wait_ms: int | None = None,
               refusal: Rejected | None = None) -> Result:
        """Queue ``command`` (once per idempotency key) and wait up to ``wait_ms`` for it.

        With ``refusal`` the command is answered with it and nothing is written, unless its
        idempotency key names an earlier command: a retry is still told the first outcome.
        """
        reserved = None
        if command.idempotency_key:
            command, reserved, told = self._reserve_key(command)
            if told is not None:  # refused before queueing, the first time: the same answer
                return Result(command.command_id, told, True)
        keys = DayKeys.of(command.calendar, command.date)
        scoped_key = f"{command.actor}:{command.idempotency_key}" if command.idempotency_key else None
        # One round trip: index the day, append, then bump the index of days with work and
        # wake the workers (a spurious wake-up after a duplicate or a refusal costs a worker
        # one empty read).
        command_json = json.dumps(command.to_dict())
        print_ = fingerprint(command) if scoped_key else ""
        wait = self.settings.reply_timeout_ms if wait_ms is None else min(
            wait_ms, self.settings.reply_timeout_ms)
        # A fresh command id (not a retry's) has a reply list nobody else waits on: the wait
        # for the outcome rides in the same round trip, after the wake-up (see submit.lua).
        fused = refusal is None and wait > 0 and (reserved is not None
                                                  or not command.idempotency_key)
        held = fused and self.acquire_wait()
        if fused and not held:  # past the cap of waiting threads: only a glance
            wait = min(wait, OVER_CAP_WAIT_MS)
        try:
            return self._submit(command, keys, command_json, scoped_key, print_, wait,
                                refusal, reserved, fused)
        finally:
            if held:
                self.release_wait()

    def acquire_wait(self) -> bool:
        """May this thread block waiting for an outcome? (``WebClient`` caps the waiters.)"""
        return True

    def release_wait(self) -> None:
        pass

    def _submit(self, command: Command, keys: DayKeys, command_json: str,
                scoped_key: str | None, print_: str, wait: int, refusal: Rejected | None,
                reserved: tuple[str, str] | None, fused: bool) -> Result:
        submit_at = [0]  # where the script's reply is

        def build(pipe) -> None:
            if refusal is None and self.index.note_day(keys.part, command.date, pipe=pipe):
                pipe.barrier()  # noted before the append
            submit_at[0] = len(pipe)
            self.store.submit(keys, command.command_id, command_json, scoped_key,
                              self.settings.backlog_limit, pipe=pipe, fingerprint=print_,
                              refuse=refusal is not None,
                              marker_ttl_ms=MARKER_TTL_MS if fused else 0)
            pipe.barrier()  # the index bumped after the append (see days/index.py)
            if refusal is None:
                self.index.mark(keys.part, pipe=pipe)
            if fused:
                reply = keys.reply(command.command_id)
                pipe.blmove(reply, reply, wait / 1000, "LEFT", "RIGHT")

        # fused: submit.lua goes by its source (EVAL), since a NOSCRIPT would not stop the
        # BLMOVE behind it, which would then wait out its timeout (Redis restarted with an
        # empty script cache: redis-py reconnects without telling us)
        replies = (self.blocking_scripts if fused else self.scripts).run_pipeline(build)
        if refusal is None:
            self.index.noted(keys.part)
        try:
            submitted = self.store.submitted(keys, command.command_id,
                                             replies[submit_at[0]],
                                             command.idempotency_key or "")
        except IdempotencyMismatch:
            if reserved is not None:  # the key's global record we just wrote pins nothing
                self.scripts.delete_if_equal(keys=[reserved[0]], args=[reserved[1]])
            raise
        if submitted.refused:
            # the key stays pinned to this request and to this answer (its global record,
            # with its TTL): a retry is told the same even if the rules changed meanwhile,
            # another body with the key is a mismatch
            told = refusal.to_dict()
            if command.idempotency_key:
                key = idempotency_key(command.actor, command.idempotency_key)
                record = {"command_id": command.command_id, "booking_id": command.booking_id,
                          "fingerprint": print_, "outcome": told}
                self.redis.set(key, json.dumps(record), xx=True, keepttl=True)
            return Result(command.command_id, told)
        if submitted.outcome is not None:  # a retry of a decided command: no wait at all
            outcome = json.loads(submitted.outcome)
            return Result(submitted.command_id, outcome if self.replicated(keys) else None,
                          True)
        if fused and not submitted.duplicate:
            raw = replies[-1]
            if raw and raw != MARKER:
                return Result(submitted.command_id,
                              json.loads(raw) if self.replicated(keys) else None)
            outcome = self.wait(submitted.command_id, 0)  # timed out: decided since?
        else:
            outcome = self.wait(submitted.command_id, wait)
        return Result(submitted.command_id, outcome, submitted.duplicate)

    def _reserve_key(self, command: Command
                     ) -> tuple[Command, tuple[str, str] | None, dict[str, Any] | None]:
        """Pin an idempotency key to one command id and request body, across all days.

        Returns the command to submit; when this call wrote the key's record, the record's
        (key, value) so that a refusal further on can take it back; and the outcome the
        record holds for a request refused before anything was queued.
        """
        key = idempotency_key(command.actor, command.idempotency_key)
        record = {
            "command_id": command.command_id,
            "booking_id": command.booking_id,
            "fingerprint": fingerprint(command),
        }
        value = json.dumps(record)
        if self.redis.set(key, value, nx=True, ex=self.settings.idempotency_ttl_s):
            return command, (key, value), None
        existing = json.loads(self.redis.get(key) or json.dumps(record))
        if existing["fingerprint"] != record["fingerprint"]:
            raise IdempotencyMismatch(command.idempotency_key, existing["command_id"])
        _, day = parse_command_id(existing["command_id"])
        fields = {f: getattr(command, f) for f in command.__slots__}
        fields.update(command_id=existing["command_id"], booking_id=existing["booking_id"],
                      date=day)
        return type(command)(**fields), None, existing.get("outcome")

    # -- outcomes ------------------------------------------------------------------------

    def wait(self, command_id: str, wait_ms: int) -> dict[str, Any] | None:
        """The outcome of ``command_id``, waiting at most ``wait_ms``; None if still pending."""
        calendar_id, day = parse_command_id(command_id)
        keys = DayKeys.of(calendar_id, day)
        reply = keys.reply(command_id)
        deadline = time.monotonic() + wait_ms / 1000
        while wait_ms > 0:
            # Rotating the reply list (not popping it) lets every waiter of a command see it.
            raw = self.blocking.blmove(reply, reply, wait_ms / 1000, "LEFT", "RIGHT")
            if raw == MARKER:
                # submit.lua's "nothing queued" marker, left by an earlier attempt with this
                # command id (e.g. answered 503 busy, then retried with its key): not an
                # outcome; drop it and wait for the real one
                self.redis.lrem(reply, 0, MARKER)
                wait_ms = int((deadline - time.monotonic()) * 1000)
                continue
            if raw:
                return json.loads(raw) if self.replicated(keys) else None
            break
        raw = self.store.outcome(keys, command_id)
        return json.loads(raw) if raw and self.replicated(keys) else None

    def replicated(self, keys: DayKeys) -> bool:
        """True once everything this client has *seen* of the day ``keys`` is on
        ``wait_replicas`` replicas.

        The worker's commit (and the reply inside it) happens on the primary before any
        replica has it. WAIT only covers the calling connection's own writes, so we write
        a barrier *after* having seen the outcome and WAIT for that: the replication
        stream is one ordered log, so a replica that acknowledged the barrier also holds
        the commit we saw (and the command before it). If too few replicas answer in
        time the outcome is not told (the caller answers 202 / "pending" instead). The
        barrier is a key of the day's slot (``DayKeys.barrier``, expiring): on a Redis
        Cluster the day's node is the one whose replication counts.
        """
        wanted = self.settings.wait_replicas
        if wanted <= 0:
            return True
        if is_cluster_client(self.redis):
            return self._replicated_on_cluster(keys, wanted)
        pipe = self.redis.pipeline(transaction=False)  # one connection: the write, then WAIT
        pipe.set(keys.barrier, "1", px=BARRIER_TTL_MS)
        pipe.execute_command("WAIT", wanted, self.settings.wait_replicas_timeout_ms)
        _, acked = pipe.execute()
        return int(acked) >= wanted

    def _replicated_on_cluster(self, keys: DayKeys, wanted: int) -> bool:
        """``replicated`` on the day's node's own client: a cluster pipeline would send the
        keyless WAIT to another node. A slot that moved (MOVED) or a node that does not
        answer says "not known to be replicated" (the caller answers pending); the cluster
        client learns the new shape from its own next command to that slot."""
        try:
            node = self.redis.get_node_from_key(keys.barrier)
            pipe = node.redis_connection.pipeline(transaction=False)
            pipe.set(keys.barrier, "1", px=BARRIER_TTL_MS)
            pipe.execute_command("WAIT", wanted, self.settings.wait_replicas_timeout_ms)
            _, acked = pipe.execute()
        except (redis.ResponseError, *MAY_HAVE_RUN):
            return False
        return int(acked) >= wanted

    def status(self, command_id: str, *, reader: str | None = None,
               admin: bool = False) -> dict[str, Any] | None:
        """``{"command_id", "status", ...}`` or None for an unknown command.

        With ``reader`` (not an admin): None as well unless ``reader`` issued the command,
        told by the id's actor tag or, for an untagged id, by the accepted outcome."""
        calendar_id, day = parse_command_id(command_id)
        keys = DayKeys.of(calendar_id, day)
        raw = self.store.outcome(keys, command_id)
        if raw is None:
            return None
        if reader is not None and not admin and not _readable_by(command_id, raw, reader):
            return None
        if raw == "" or not self.replicated(keys):
            return {"command_id": command_id, "status": "pending"}
        return json.loads(raw)

    # -- reads ---------------------------------------------------------------------------

    def read_day(self, calendar_id: str, day: date) -> DayView:
        calendar = self.calendar(calendar_id)
        state = self.store.read_state(DayKeys.of(calendar_id, day))
        return DayView(calendar, day, state.version, state.bookings, state.pending)

    def get_booking(self, calendar_id: str, booking_id: str) -> dict[str, Any] | None:
        view = self.read_day(calendar_id, parse_booking_id(booking_id))
        for booking in view.bookings:
            if booking["id"] == booking_id:
                return booking
        return None


def _readable_by(command_id: str, raw_outcome: str, reader: str) -> bool:
    tagged = issued_by(command_id, reader)
    if tagged is not None:
        return tagged
    if not raw_outcome:
        return False  # untagged and pending: nothing says who sent it
    outcome = json.loads(raw_outcome)
    if outcome.get("status") != "accepted":
        return False
    actor = outcome.get("cancelled_by") or (outcome.get("booking") or {}).get("owner")
    return actor == reader
