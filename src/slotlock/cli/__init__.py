"""The ``slotlock`` command: one click group; each module adds the commands of its area."""

# Areas register their commands on import (one line each), by audience:
# operations (worker, migrate, status; jobs, audit), administration (calendar; user,
# token), development (up; chaos).
from . import admin_calendar as _admin_calendar  # noqa: F401
from . import admin_users as _admin_users  # noqa: F401
from . import chaos_cmds as _chaos_cmds  # noqa: F401
from . import core as _core  # noqa: F401
from . import dev_cmds as _dev_cmds  # noqa: F401
from . import jobs_cmds as _jobs_cmds  # noqa: F401
from . import ops_cmds as _ops_cmds  # noqa: F401
from .core import main

__all__ = ["main"]
