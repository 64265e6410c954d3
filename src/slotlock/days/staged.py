"""Pipelines whose order across hash slots holds on a Redis Cluster too.

On one Redis a non-transactional pipeline runs in the order it was queued: slotlock relies
on it where one read must come before another of a different key (a day's score in the
index before its commands, a calendar before the commands decided under it) or a write
before another (a command appended before the index is bumped). redis-py's cluster client
groups a pipeline by node and sends to every node before reading any reply, so that order
is lost between keys of different nodes.

``Staged`` keeps it: the caller marks with ``barrier()`` where the order matters. On one
Redis a barrier costs nothing (one pipeline, one round trip, as before); on a cluster each
stage between barriers is a round trip of its own, sent after the one before has answered.
Within a stage the commands of one node still run in order (one connection per node).
"""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

from ..redis_conn import is_cluster_client


class Staged:
    """A non-transactional pipeline with barriers (see the module's docstring). Every other
    attribute is the current stage's pipeline's (``pipe.zadd(...)``,
    ``pipe.execute_command(...)``), and ``len()`` counts the commands of every stage, so a
    reply's index is its position in the order the commands were queued."""

    def __init__(self, client: redis.Redis | RedisCluster):
        self._client = client
        self._split = is_cluster_client(client)
        self._stages = [client.pipeline(transaction=False)]

    def barrier(self) -> None:
        """Everything queued after this runs after everything queued before it."""
        if self._split and len(self._stages[-1]):
            self._stages.append(self._client.pipeline(transaction=False))

    @property
    def stages(self) -> int:
        """Round trips ``execute`` takes (1 on one Redis)."""
        return sum(1 for stage in self._stages if len(stage)) or 1

    def __getattr__(self, name: str):
        return getattr(self._stages[-1], name)

    def __len__(self) -> int:
        return sum(len(stage) for stage in self._stages)

    def execute(self, raise_on_error: bool = True) -> list:
        """Each stage in turn; their replies in one list. With ``raise_on_error`` a command
        error stops before the next stage; connection errors raise either way (a stage not
        sent was not run; one sent may have run in part)."""
        replies: list = []
        for stage in self._stages:
            if len(stage):
                replies.extend(stage.execute(raise_on_error=raise_on_error))
        return replies

    def reset(self) -> None:
        for stage in self._stages:
            stage.reset()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, *exc) -> None:
        self.reset()
