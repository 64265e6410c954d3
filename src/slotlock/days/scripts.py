"""Loads the ``.lua`` files beside the modules once and registers them per client."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import redis

HERE = Path(__file__).parent
WORKERS = HERE.parent / "workers"
PLACES = {"retain": WORKERS, "prune": WORKERS}  # scripts that live beside their module


@cache
def source(name: str) -> str:
    return (PLACES.get(name, HERE) / f"{name}.lua").read_text()


class Scripts:
    """The registered scripts of one Redis client (``redis.commands.core.Script`` each)."""

    NAMES = (
        "lease_acquire",
        "lease_renew",
        "lease_release",
        "submit",
        "commit",
        "index_remove",
        "delete_if_equal",
        "lock_zone",
        "retain",
        "prune",
    )

    def __init__(self, client: redis.Redis, *, unfenced_commit: bool = False):
        for name in self.NAMES:
            setattr(self, name, client.register_script(source(name)))
        if unfenced_commit:  # test-only broken build, see workers.lease_worker
            self.commit = client.register_script(unfenced(source("commit")))


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
