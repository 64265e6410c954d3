"""Log format shared by every slotlock process: one line, with the process's role and pid."""

from __future__ import annotations

import logging
import os
import sys


def setup(role: str, level: str | None = None) -> None:
    level = (level or os.environ.get("SLOTLOCK_LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s.%(msecs)03d {role}[%(process)d] %(levelname)s %(name)s: %(message)s",
        "%H:%M:%S",
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
