"""Loads the ``.lua`` files beside the modules once and registers them per client."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import redis

from .staged import Staged

HERE = Path(__file__).parent
WORKERS = HERE.parent / "workers"
WEB = HERE.parent / "web"
PLACES = {"retain": WORKERS, "prune": WORKERS, "share_beat": WORKERS, "workers_seen": WORKERS,
          "outbox_ack": WORKERS, "rate_count": WEB}  # scripts that live beside their module


@cache
def source(name: str) -> str:
    return (PLACES.get(name, HERE) / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one Redis client (``redis.commands.core.Script`` each)."""

    NAMES = (
        "lease_acquire",
        "lease_renew",
        "lease_release",
        "lease_release_idle",
        "submit",
        "commit",
        "index_remove",
        "delete_if_equal",
        "lock_zone",
        "retain",
        "prune",
        "rate_count",
        "share_beat",
        "workers_seen",
        "outbox_ack",
    )

    def __init__(self, client: redis.Redis, *, unfenced_commit: bool = False):
        self.client = client
        for name in self.NAMES:
            setattr(self, name, client.register_script(source(name)))
        if unfenced_commit:  # test-only broken build, see workers.lease_worker
            self.commit = client.register_script(unfenced(source("commit")))

    def queue(self, pipe, name: str, keys: list, args: list) -> None:
        """Queue ``EVALSHA`` of a script on a pipeline.

        Unlike calling the script with ``client=pipe``, this does not make redis-py send a
        ``SCRIPT EXISTS`` round trip before every such pipeline. If Redis lost its script
        cache (a restart), the pipeline raises ``NoScriptError``: the caller runs
        :meth:`load_all` and builds the pipeline again (see ``run_pipeline``).
        """
        # execute_command: a cluster pipeline blocks its evalsha() and eval() methods, but
        # routes the command itself by its keys
        pipe.execute_command("EVALSHA", getattr(self, name).sha, len(keys), *keys, *args)

    def queue_source(self, pipe, name: str, keys: list, args: list) -> None:
        """Queue ``EVAL`` with the script's source: never ``NOSCRIPT``. For a pipeline whose
        later commands must not run after a failed script (a blocking wait behind it)."""
        pipe.execute_command("EVAL", getattr(self, name).script, len(keys), *keys, *args)

    def load_all(self) -> None:
        for name in self.NAMES:
            script = getattr(self, name)
            script.sha = self.client.script_load(script.script)
        if getattr(self, "commit", None) is not None:
            self.commit.sha = self.client.script_load(self.commit.script)

    def run_pipeline(self, build, *, raise_on_error: bool = True) -> list:
        """``build(pipe)`` queues commands (scripts through :meth:`queue`) on a ``Staged``
        pipeline (``pipe.barrier()`` where the order across keys matters on a Redis
        Cluster); execute them, loading the scripts and building again once if Redis had
        lost them. Without
        ``raise_on_error`` an error of one command is its reply (an exception object);
        connection errors raise either way."""
        for attempt in (1, 2):
            pipe = Staged(self.client)
            build(pipe)
            try:
                replies = pipe.execute(raise_on_error=raise_on_error)
            except redis.exceptions.NoScriptError:
                if attempt == 2:
                    raise
                self.load_all()
                continue
            if attempt == 1 and any(isinstance(r, redis.exceptions.NoScriptError)
                                    for r in replies):
                self.load_all()
                continue
            return replies
        raise AssertionError("unreachable")


def unfenced(commit_source: str) -> str:
    """TEST-ONLY BROKEN BUILD of commit.lua: the same write with the fence cut out.

    Neither the lease token nor the cursor is compared, so a stale holder's late commit
    lands (both checks must go: the cursor compare-and-set alone already refuses a stale
    batch). It exists so the fault checker can prove that it sees the damage.
    """
    head, begin, rest = commit_source.partition("-- fence:begin")
    _, end, tail = rest.partition("-- fence:end\n")
    if not (begin and end):
        raise ValueError("commit.lua has lost its fence markers")
    return head + tail
