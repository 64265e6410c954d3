"""The ``slotlock`` command: one click group; each module adds the commands of its area."""

from .core import main

# Areas register their commands on import (keep one line each; see docs in each module).
from . import core as _core  # noqa: F401,E402
from . import jobs_cmds as _jobs_cmds  # noqa: F401,E402,I001

__all__ = ["main"]
