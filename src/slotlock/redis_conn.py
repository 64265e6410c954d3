"""Redis clients. Retries are off: callers decide what a failed call means.

redis-py 8 retries a failed call ten times with backoff by default; for a commit
script that hides whether the write happened, and for a web request it turns a
down Redis into a long hang instead of a quick 503.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import (ClusterDownError, RedisClusterException, SlotNotCoveredError,
                              TryAgainError)

# redis-py 8.2 tells "no node reachable" apart; before, it is a RedisClusterException
RedisClusterUnreachableError = getattr(redis.exceptions, "RedisClusterUnreachableError",
                                       RedisClusterException)
from redis.retry import Retry

log = logging.getLogger("slotlock")


def connect(url: str, *, timeout_ms: int = 2000, cluster: bool = False,
            **kwargs) -> redis.Redis:
    """A client of ``url``; with ``cluster`` redis-py's cluster client (``url`` names any
    node), which follows MOVED and ASK redirects. A command whose node failed raises and
    the next one finds the new topology, but a cluster *pipeline* sends a command whose
    node timed out or dropped the connection once more, whatever the retry setting: the
    scripts a pipeline carries must bear running twice (``submit.lua`` does)."""
    common = dict(socket_timeout=timeout_ms / 1000,
                  socket_connect_timeout=min(timeout_ms, 1000) / 1000,
                  retry=Retry(NoBackoff(), 0), decode_responses=True)
    if cluster:
        return _cluster_client(url, **common, **kwargs)
    return redis.Redis.from_url(url, health_check_interval=0, **common, **kwargs)


def _cluster_client(url: str, **kwargs) -> RedisCluster:
    """redis-py's cluster client, which asks a node for the slots' owners as it is made:
    a node that answers but is no node of a cluster is ``NotACluster``; no node answering,
    or slots not served yet, a ``ConnectionError`` (as a plain client's first command)."""
    from .errors import NotACluster

    try:
        return RedisCluster.from_url(url, **kwargs)
    except RedisClusterException as exc:
        if "Cluster mode is not enabled" in str(exc):
            raise NotACluster(str(exc)) from exc
        # no node answered, or not every slot is served yet (a failover): try again later
        raise redis.ConnectionError(str(exc)) from exc


def is_cluster_client(client) -> bool:
    """Whether ``client`` is redis-py's cluster client (``connect(cluster=True)``)."""
    return isinstance(client, RedisCluster)


def use_cluster(settings) -> bool:
    """Whether processes use redis-py's cluster client: ``SLOTLOCK_REDIS_CLUSTER=on``."""
    return settings.redis_cluster == "on"


def limiter_storage(settings, options: dict) -> dict:
    """Flask-Limiter's ``storage_uri`` and ``storage_options`` for the configured Redis: on
    a cluster (``use_cluster``) the ``limits`` package's cluster storage, whose scheme is
    ``redis+cluster://`` (TLS through its options: it has no ``rediss+cluster``)."""
    if not use_cluster(settings):
        return {"storage_uri": settings.redis_url, "storage_options": options}
    parts = urlsplit(settings.redis_url)
    options = dict(options)
    if parts.scheme == "rediss":
        options["ssl"] = True
    netloc = parts.netloc  # user:password@host:port, as limits reads it
    return {"storage_uri": f"redis+cluster://{netloc}", "storage_options": options}


def connect_blocking(url: str, *, block_ms: int, timeout_ms: int = 2000,
                     cluster: bool = False) -> redis.Redis:
    """A client of its own for blocking reads, whose socket outlives the longest block."""
    return connect(url, timeout_ms=block_ms + timeout_ms, cluster=cluster)


# redis-py's cluster client raises some errors outside ``RedisError``: no node reachable
# (``RedisClusterUnreachableError``), a slot with no node yet in a failover
# (``SlotNotCoveredError``). Handlers of Redis errors catch these tuples.
CLUSTER_DOWN = (RedisClusterUnreachableError, SlotNotCoveredError, ClusterDownError,
                TryAgainError)
# Errors after which a command sent may or may not have run (the connection, not the data)
MAY_HAVE_RUN = (redis.ConnectionError, redis.TimeoutError, OSError, *CLUSTER_DOWN)
REDIS_ERRORS = (redis.RedisError, RedisClusterException)

SAFE_POLICIES = ("noeviction",)


def is_cluster(client: redis.Redis) -> bool:
    """True if the server is a node of a Redis Cluster (``INFO cluster``)."""
    return str(client.info("cluster").get("cluster_enabled", 0)) == "1"


def check_not_cluster(client: redis.Redis, mode: str) -> None:
    """Refuse a Redis Cluster (``ClusterUnsupported``) that ``mode`` (``auto``) detected:
    with a plain client, commands for keys of other nodes fail (MOVED) and the ones that
    span slots cannot run, so a process would half work. ``off`` skips the check; ``on``
    means the process uses the cluster client (``use_cluster``: the preview of
    docs/cluster.md). Connection errors propagate."""
    from .errors import ClusterUnsupported

    if mode == "off" or (mode == "on" and is_cluster_client(client)):
        return
    if mode == "on":
        raise ClusterUnsupported(detected=False)
    try:
        detected = is_cluster(client)
    except redis.ResponseError as exc:  # INFO may be denied by an ACL (@dangerous)
        log.warning(
            "could not ask Redis whether it is a cluster (%s); going on as if not: set "
            "SLOTLOCK_REDIS_CLUSTER=off to skip the check", exc)
        return
    if detected:
        raise ClusterUnsupported(detected=True)


def check_server(client: redis.Redis, settings) -> None:
    """Every check a process makes of its Redis before it starts work: not a cluster (see
    ``check_not_cluster``), no eviction (``check_eviction_policy``), no data left under key
    names of an earlier release (``legacy_keys.check_migrated``). Raises a
    ``UnsuitableRedis``; connection errors propagate."""
    from .legacy_keys import check_migrated

    check_not_cluster(client, settings.redis_cluster)
    check_eviction_policy(client, allow=settings.allow_eviction)
    check_migrated(client)


def check_eviction_policy(client: redis.Redis, *, allow: bool) -> str:
    """Refuse a Redis that may evict keys: an evicted lease, fence counter or queued command
    breaks fencing or loses work. Returns the policy; raises ``EvictingRedis`` unless it is
    ``noeviction`` or the operator allowed it (``SLOTLOCK_ALLOW_EVICTION=1``).

    Reads ``INFO memory`` (allowed on managed services where ``CONFIG GET`` is not). If an
    ACL denies INFO the policy cannot be known: refused unless the operator allowed it.
    Connection errors propagate: the caller checks again once Redis answers.
    """
    from .errors import EvictingRedis

    try:
        policy = _eviction_policy(client)
    except redis.ResponseError as exc:  # INFO denied by an ACL (managed Redis)
        if allow:
            log.warning(
                "cannot read Redis's maxmemory-policy (%s); going on because "
                "SLOTLOCK_ALLOW_EVICTION is set: make sure it is noeviction", exc)
            return "unknown"
        raise EvictingRedis(None, reason=str(exc)) from exc
    if policy in SAFE_POLICIES:
        return policy
    if allow:
        log.warning(
            "Redis maxmemory-policy is %s: keys may be evicted under memory pressure, which "
            "can break fencing and lose commands (allowed by SLOTLOCK_ALLOW_EVICTION)", policy)
        return policy
    raise EvictingRedis(policy)


def _eviction_policy(client) -> str:
    """The server's ``maxmemory-policy``; of a cluster, every primary's (the first unsafe
    one, if any: each primary holds its slots' leases and commands)."""
    if not is_cluster_client(client):
        return str(client.info("memory").get("maxmemory_policy", "unknown"))
    replies = client.info("memory", target_nodes=RedisCluster.PRIMARIES)
    infos = replies.values() if all(isinstance(v, dict) for v in replies.values()) else [replies]
    policies = [str(info.get("maxmemory_policy", "unknown")) for info in infos]
    return next((p for p in policies if p not in SAFE_POLICIES), policies[0])
