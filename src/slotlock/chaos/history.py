"""The history of a run: every client operation with its invoke and completion times.

Jepsen's vocabulary: an operation completes ``ok`` (acknowledged), ``fail`` (definitely
rejected: it had no effect, or its effect was a recorded rejection) or ``info`` (the
client cannot know: it timed out; the checker settles it from the committed data).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Op:
    id: int
    client: str  # the user name: idempotency keys are scoped to it
    f: str  # book | cancel | retry (same key, same body) | reuse (same key, other body) | zone
    key: str  # Idempotency-Key
    day: str  # YYYY-MM-DD
    invoke: float  # seconds since the run started
    start: str | None = None
    end: str | None = None
    target: str | None = None  # cancel: the booking id
    complete: float | None = None
    type: str | None = None  # ok | fail | info
    booking_id: str | None = None
    command_id: str | None = None
    code: str | None = None
    status: int | None = None  # the last HTTP status
    expect: str | None = None  # retry: what the first attempt was told (its code or "ok")
    calendar: str | None = None
    attempts: int = 0
    notes: list[str] = field(default_factory=list)


class History:
    def __init__(self):
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def add(self, op: Op) -> Op:
        with self._lock:
            op.id = len(self.ops)
            self.ops.append(op)
        return op

    def completed(self) -> list[Op]:
        return [op for op in self.ops if op.type is not None]

    def write(self, path: Path) -> None:
        with open(path, "w") as out:
            out.writelines(json.dumps(asdict(op)) + "\n" for op in list(self.ops))
