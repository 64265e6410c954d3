"""The ``slotlock`` command: one click group; each module adds the commands of its area."""

# Areas register their commands on import (one line each).
from . import chaos_cmds as _chaos_cmds  # noqa: F401
from . import core as _core  # noqa: F401
from . import jobs_cmds as _jobs_cmds  # noqa: F401
from . import web_cmds as _web_cmds  # noqa: F401
from .core import main

__all__ = ["main"]
