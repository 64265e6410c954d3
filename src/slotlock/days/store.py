"""A day's command stream and committed state: submit, read, and the fenced commit."""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from ..errors import Backpressure, CursorMismatch, FenceRejected, IdempotencyMismatch
from .keys import DayKeys
from .lease import DayLease
from .scripts import Scripts

START = "0-0"


@dataclass(frozen=True, slots=True)
class Submitted:
    command_id: str  # the command that will decide: ours, or the first one with this key
    duplicate: bool
    stream_id: str | None = None
    outcome: str | None = None  # a duplicate's outcome json, if it is decided already
    refused: bool = False  # the caller's refusal stands: nothing was written


@dataclass(frozen=True, slots=True)
class StoredState:
    bookings: list  # booking dicts
    cursor: str
    version: int
    pending: int
    applied: int
    token: int | None


def _stored_state(raw: list) -> StoredState:
    bookings, cursor, version, pending, applied, token = raw
    return StoredState(
        bookings=json.loads(bookings) if bookings else [],
        cursor=cursor or START,
        version=int(version or 0),
        pending=int(pending or 0),
        applied=int(applied or 0),
        token=int(token) if token else None,
    )


STATE_FIELDS = ("bookings", "cursor", "version", "pending", "applied", "token")


class DayStore:
    def __init__(self, client: redis.Redis, scripts: Scripts | None = None):
        self.client = client
        self.scripts = scripts or Scripts(client)

    def submit(self, keys: DayKeys, command_id: str, command_json: str,
               idempotency_key: str | None = None, backlog_limit: int = 0,
               pipe=None, fingerprint: str = "", refuse: bool = False,
               marker_ttl_ms: int = 0) -> Submitted | None:
        """Append a command. With ``pipe``, queue the call there and read it with ``submitted``.

        With an idempotency key, a retry is told the first command (and its outcome, if
        decided) only if it carries the same request ``fingerprint``. With
        ``marker_ttl_ms`` the caller waits on the command's reply list later in the same
        pipeline: if nothing is queued, the script puts a marker there (``submit.lua``).
        """
        script_keys = [keys.cmds, keys.idem, keys.state, keys.done]
        script_args = [command_id, command_json, idempotency_key or "", backlog_limit, fingerprint,
                       "1" if refuse else ""]
        if marker_ttl_ms:
            script_keys.append(keys.reply(command_id))
            script_args.append(marker_ttl_ms)
        if pipe is not None:
            if marker_ttl_ms:  # a BLMOVE follows: a NOSCRIPT here would leave it waiting
                self.scripts.queue_source(pipe, "submit", script_keys, script_args)
            else:
                self.scripts.queue(pipe, "submit", script_keys, script_args)
            return None
        reply = self.scripts.submit(keys=script_keys, args=script_args)
        return self.submitted(keys, command_id, reply)

    @staticmethod
    def submitted(keys: DayKeys, command_id: str, reply, idempotency_key: str = "") -> Submitted:
        kind, value = reply[0], (reply[1] if len(reply) > 1 else None)
        if kind == "busy":
            raise Backpressure(keys.part, int(value))
        if kind == "refused":
            return Submitted(command_id, False, refused=True)
        if kind == "mismatch":
            raise IdempotencyMismatch(idempotency_key, value)
        if kind == "duplicate":
            return Submitted(value, True, outcome=reply[2] or None)
        return Submitted(command_id, False, value)

    def read_state(self, keys: DayKeys) -> StoredState:
        return _stored_state(self.client.hmget(keys.state, STATE_FIELDS))

    @staticmethod
    def queue_read_state(pipe, keys: DayKeys) -> None:
        """Queue ``read_state`` on a pipeline; turn its reply into state with ``stored_state``."""
        pipe.hmget(keys.state, STATE_FIELDS)

    @staticmethod
    def stored_state(reply: list) -> StoredState:
        return _stored_state(reply)

    def queue_read_commands(self, pipe, keys: DayKeys, after: str, count: int) -> None:
        """Queue a read of up to ``count`` commands after ``after`` (see ``commands_of``)."""
        pipe.xrange(keys.cmds, min=f"({after}", max="+", count=count)

    @staticmethod
    def commands_of(entries) -> list[tuple[str, str]]:
        return [(entry_id, fields["c"]) for entry_id, fields in entries]

    def read_commands(self, keys: DayKeys, after: str, count: int) -> list[tuple[str, str]]:
        entries = self.client.xrange(keys.cmds, min=f"({after}", max="+", count=count)
        return [(entry_id, fields["c"]) for entry_id, fields in entries]

    def last_stream_id(self, keys: DayKeys) -> str | None:
        entries = self.client.xrevrange(keys.cmds, count=1)
        return entries[0][0] if entries else None

    def outcome(self, keys: DayKeys, command_id: str) -> str | None:
        return self.client.hget(keys.done, command_id)

    def commit(self, lease: DayLease, base_cursor: str, new_cursor: str, bookings_json: str,
               version: int, outcomes: list[tuple[str, str]], events: list[str],
               reply_ttl_ms: int) -> int:
        """Write a decided batch atomically; refused as a whole unless our token is current."""
        keys, args = self._commit_call(lease, base_cursor, new_cursor, bookings_json, version,
                                       outcomes, events, reply_ttl_ms)
        result = self.scripts.commit(keys=keys, args=args)
        return self.committed(result, lease, base_cursor, new_cursor, version)

    def queue_commit(self, pipe, lease: DayLease, base_cursor: str, new_cursor: str,
                     bookings_json: str, version: int, outcomes: list[tuple[str, str]],
                     events: list[str], reply_ttl_ms: int) -> None:
        """Queue ``commit`` on a pipeline (``Scripts.run_pipeline``); read its reply with
        ``committed``."""
        keys, args = self._commit_call(lease, base_cursor, new_cursor, bookings_json, version,
                                       outcomes, events, reply_ttl_ms)
        self.scripts.queue(pipe, "commit", keys, args)

    @staticmethod
    def _commit_call(lease: DayLease, base_cursor: str, new_cursor: str, bookings_json: str,
                     version: int, outcomes: list[tuple[str, str]], events: list[str],
                     reply_ttl_ms: int) -> tuple[list, list]:
        keys = lease.keys
        args: list = [lease.value, lease.token, base_cursor, new_cursor, bookings_json, version,
                      reply_ttl_ms, len(outcomes), len(events)]
        for command_id, outcome_json in outcomes:
            args.append(command_id)
            args.append(outcome_json)
        args.extend(events)
        return ([keys.lease, keys.state, keys.done, keys.outbox, keys.tokens,
                 *(keys.reply(cid) for cid, _ in outcomes)], args)

    @staticmethod
    def committed(result, lease: DayLease, base_cursor: str, new_cursor: str,
                  version: int) -> int:
        """The committed version, or ``FenceRejected`` / ``CursorMismatch``."""
        keys = lease.keys
        if int(result[0]) == 1:
            return int(result[1])
        if result[1] == "fenced":
            raise FenceRejected(f"commit refused, lease is now {result[2] or 'free'!r}",
                                day=keys.part, token=lease.token)
        cursor, committer = result[2], result[3]
        if cursor == new_cursor and committer == lease.value:
            return version  # our own commit (this very grant), whose reply was lost
        raise CursorMismatch(f"commit refused, cursor is {cursor} not {base_cursor}",
                             day=keys.part, token=lease.token)
