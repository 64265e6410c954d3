"""A local Redis Cluster of private redis-servers on loopback ports (tests and benchmarks).

Built on :class:`slotlock.embedded.RedisServer`: every node is one redis-server with
``--cluster-enabled yes`` in its own sub-directory of ``data_dir``. The cluster is formed
from Python with redis-py (``CLUSTER SET-CONFIG-EPOCH``, ``MEET``, ``ADDSLOTSRANGE``,
``REPLICATE``), so no ``redis-cli`` is needed::

    with LocalCluster(tmp_path, primaries=3, replicas_per_primary=1) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url, decode_responses=True)

Cluster mode has a single database, so ``url`` always ends in ``/0``. Every wait is
bounded and its error names the nodes that were not ready and why.
"""

from __future__ import annotations

import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis
from redis.crc import key_slot

from slotlock.embedded import EmbeddedRedisError, RedisServer

SLOTS = 16384
PRIMARY = "primary"
REPLICA = "replica"


class ClusterNotReady(EmbeddedRedisError):
    pass


class ClusterNode(RedisServer):
    """One node: a RedisServer plus its cluster identity and last known role.

    ``role`` ("primary" or "replica") and ``primary_id`` are refreshed by every successful
    :meth:`LocalCluster.wait_ok`; ``alive`` turns False after :meth:`LocalCluster.kill_node`
    or :meth:`LocalCluster.stop`.
    """

    def __init__(self, data_dir: Path, port: int, bus_port: int, index: int, role: str,
                 node_timeout_ms: int, appendfsync: str, binary: str | None):
        self.bus_port = bus_port
        self.index = index
        self.role = role
        self.primary_id: str | None = None
        self.node_id = ""
        self.alive = False
        extra = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(node_timeout_ms),
            "--cluster-port", str(bus_port),
            # Replicas always stand for election, however long their link was down.
            "--cluster-replica-validity-factor", "0",
            # The default 5 s wait before a diskless full sync would dominate start-up.
            "--repl-diskless-sync-delay", "0",
        ]
        super().__init__(data_dir, port, appendfsync=appendfsync, binary=binary, extra=extra)
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        """A plain (non-cluster) client to this node only, for admin commands."""
        if self._client is None:
            self._client = redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True,
                                       socket_connect_timeout=0.5, socket_timeout=2)
        return self._client

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def name(self) -> str:
        return f"node{self.index}(:{self.port} {self.role}{'' if self.alive else ', down'})"

    def __repr__(self) -> str:
        return f"<ClusterNode {self.name} id={self.node_id[:8]}>"


@dataclass(frozen=True)
class _Peer:
    """One line of CLUSTER NODES."""
    node_id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags


def _parse_nodes(text: str) -> dict[str, _Peer]:
    peers = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        address = fields[1].split(",")[0].split("@")[0]
        port = int(address.rsplit(":", 1)[1] or 0)
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a migrating/importing slot
                continue
            low, _, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        peers[fields[0]] = _Peer(fields[0], port, frozenset(fields[2].split(",")),
                                 None if fields[3] == "-" else fields[3], tuple(sorted(slots)))
    return peers


def _info_fields(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _even_ranges(primaries: int) -> list[tuple[int, int]]:
    bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(primaries)]


class LocalCluster:
    """``primaries`` primaries, each with ``replicas_per_primary`` replicas, on loopback."""

    def __init__(self, data_dir: str | Path, primaries: int = 3, replicas_per_primary: int = 0,
                 appendfsync: str = "everysec", *, node_timeout_ms: int = 2000,
                 binary: str | None = None):
        if primaries < 1:
            raise ValueError("a cluster needs at least one primary")
        if replicas_per_primary < 0:
            raise ValueError("replicas_per_primary must be >= 0")
        self.data_dir = Path(data_dir).resolve()
        self.primaries = primaries
        self.replicas_per_primary = replicas_per_primary
        self.appendfsync = appendfsync
        self.node_timeout_ms = node_timeout_ms
        self.binary = binary
        self.nodes: list[ClusterNode] = []
        self.start_seconds: float | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def live_nodes(self) -> list[ClusterNode]:
        return [node for node in self.nodes if node.alive]

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the first live primary (the first primary
        until a failover or kill changes that)."""
        live = [n for n in self.live_nodes if n.role == PRIMARY] or self.live_nodes
        if not live:
            raise EmbeddedRedisError("the cluster has no live node")
        return f"redis://127.0.0.1:{live[0].port}/0"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every live node, e.g. for redis-py ``startup_nodes``."""
        return [("127.0.0.1", node.port) for node in self.live_nodes]

    def node_by_id(self, node_id: str) -> ClusterNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise LookupError(f"no node with id {node_id}")

    # -- life cycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> Self:
        if self.nodes:
            raise EmbeddedRedisError("this LocalCluster was already started")
        began = time.monotonic()
        deadline = began + timeout
        count = self.primaries * (1 + self.replicas_per_primary)
        for index in range(count):
            node_dir = self.data_dir / f"node{index}"
            if node_dir.exists() and any(node_dir.iterdir()):
                raise EmbeddedRedisError(f"{node_dir} is not empty (a cluster lives there?)")
        try:
            self._start_processes(count, deadline)
            self._form(deadline)
            self.wait_ok(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self

    def _start_processes(self, count: int, deadline: float) -> None:
        ports = _free_ports(2 * count)
        for index in range(count):
            role = PRIMARY if index < self.primaries else REPLICA
            self.nodes.append(ClusterNode(
                self.data_dir / f"node{index}", ports[2 * index], ports[2 * index + 1], index,
                role, self.node_timeout_ms, self.appendfsync, self.binary))

        def launch(node: ClusterNode) -> None:
            # A free port can be taken between choosing it and binding it: retry with others.
            for attempt in range(3):
                try:
                    node.start(timeout=max(0.5, deadline - time.monotonic()))
                    node.alive = True
                    return
                except EmbeddedRedisError as exc:
                    node.stop()
                    if "Address already in use" not in str(exc) or attempt == 2:
                        raise EmbeddedRedisError(f"{node.name} did not start: {exc}") from exc
                    shutil.rmtree(node.data_dir, ignore_errors=True)
                    node.port, node.bus_port = _free_ports(2)
                    node.extra[node.extra.index("--cluster-port") + 1] = str(node.bus_port)

        with ThreadPoolExecutor(max_workers=min(count, 8)) as pool:
            for future in [pool.submit(launch, node) for node in self.nodes]:
                future.result()

    def _form(self, deadline: float) -> None:
        primaries = self.nodes[:self.primaries]
        for epoch, node in enumerate(self.nodes, start=1):
            node.node_id = node.client.execute_command("CLUSTER", "MYID")
            # Distinct epochs up front, as redis-cli does: no epoch-collision round later.
            node.client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        for node, (low, high) in zip(primaries, _even_ranges(self.primaries)):
            node.client.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        # A full mesh of MEETs: learning peers from gossip alone (as after redis-cli's
        # MEETs from one node) takes a random 1-4 s more.
        for i, node in enumerate(self.nodes):
            for peer in self.nodes[i + 1:]:
                node.client.execute_command("CLUSTER", "MEET", "127.0.0.1", peer.port,
                                            peer.bus_port)
        # A replica can only REPLICATE a primary it already knows.
        self._wait(deadline, "nodes to learn each other", self._all_known)
        for offset, node in enumerate(self.nodes[self.primaries:]):
            primary = primaries[offset // self.replicas_per_primary]
            node.client.execute_command("CLUSTER", "REPLICATE", primary.node_id)
            node.primary_id = primary.node_id

    def _all_known(self) -> dict[ClusterNode, str]:
        problems = {}
        ids = {node.node_id for node in self.nodes}
        for node in self.nodes:
            peers = _parse_nodes(node.client.execute_command("CLUSTER", "NODES"))
            missing = ids - peers.keys()
            handshaking = [p.port for p in peers.values() if "handshake" in p.flags]
            if missing or handshaking:
                problems[node] = (f"knows {len(ids - missing)}/{len(ids)} nodes"
                                  + (f", handshake with {handshaking}" if handshaking else ""))
        return problems

    def stop(self) -> None:
        """Stop every node (SIGTERM, by pid), in parallel."""
        def stop_one(node: ClusterNode) -> None:
            node.close_client()
            node.stop()
            node.alive = False

        if self.nodes:
            with ThreadPoolExecutor(max_workers=min(len(self.nodes), 8)) as pool:
                list(pool.map(stop_one, self.nodes))

    def kill_node(self, node: ClusterNode) -> None:
        """SIGKILL one node (no shutdown, no last fsync). Its replica, if any, is promoted
        after about node_timeout_ms plus an election delay; :meth:`wait_ok` waits for that."""
        node.close_client()
        node.kill()
        node.alive = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- topology --------------------------------------------------------------------------

    def _slot_owner_id(self, slot: int) -> str:
        last_error: Exception | None = None
        for node in self.live_nodes:
            try:
                peers = _parse_nodes(node.client.execute_command("CLUSTER", "NODES"))
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                last_error = exc
                continue
            for peer in peers.values():
                if peer.is_primary and any(lo <= slot <= hi for lo, hi in peer.slots):
                    return peer.node_id
            raise LookupError(f"slot {slot} has no owner in the view of {node.name}")
        raise EmbeddedRedisError(f"no live node answered: {last_error}")

    def primary_for(self, key: str | bytes) -> ClusterNode:
        """The node that owns ``key``'s slot now (asked of a live node, not cached)."""
        data = key.encode() if isinstance(key, str) else key
        return self.node_by_id(self._slot_owner_id(key_slot(data)))

    def replicas_of(self, primary: ClusterNode) -> list[ClusterNode]:
        """Live replicas of ``primary``, as of the last :meth:`wait_ok`."""
        return [node for node in self.live_nodes
                if node.role == REPLICA and node.primary_id == primary.node_id]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        replicas = self.replicas_of(primary)
        if not replicas:
            raise LookupError(f"{primary.name} has no live replica")
        return replicas[0]

    # -- waiting ---------------------------------------------------------------------------

    def _wait(self, deadline: float, what: str, check) -> None:
        """Poll ``check`` (node -> problem) until it returns no problem, or raise."""
        while True:
            try:
                problems = check()
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                problems = {None: f"{type(exc).__name__}: {exc}"}
            if not problems:
                return
            if time.monotonic() >= deadline:
                detail = "; ".join(f"{node.name if node else 'cluster'}: {problem}"
                                   for node, problem in problems.items())
                raise ClusterNotReady(f"timed out waiting for {what}: {detail}")
            time.sleep(0.05)

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok``, all live nodes agree on
        who owns which slots and who replicates whom, every slot is owned by a live primary,
        and every live replica's link is up and not syncing. Then refresh ``role`` and
        ``primary_id`` of each live node."""
        self._wait(time.monotonic() + timeout, "cluster_state:ok", self._check_ok)

    def _check_ok(self) -> dict[ClusterNode | None, str]:
        problems: dict[ClusterNode | None, str] = {}
        live = self.live_nodes
        live_ids = {node.node_id for node in live}
        views: dict[ClusterNode, dict[str, _Peer]] = {}
        for node in live:
            try:
                info = _info_fields(node.client.execute_command("CLUSTER", "INFO"))
                views[node] = _parse_nodes(node.client.execute_command("CLUSTER", "NODES"))
                repl = node.client.info("replication")
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
                problems[node] = f"{type(exc).__name__}: {exc}"
                continue
            if info.get("cluster_state") != "ok":
                problems[node] = f"cluster_state:{info.get('cluster_state')}"
            elif repl.get("role") == "slave" and (repl.get("master_link_status") != "up"
                                                   or repl.get("master_sync_in_progress") != 0):
                problems[node] = (f"replica link {repl.get('master_link_status')}, "
                                  f"sync in progress {repl.get('master_sync_in_progress')}")
        if problems:
            return problems

        def summary(view: dict[str, _Peer]):
            owners = tuple(sorted((rng, p.node_id) for p in view.values() if p.is_primary
                                  for rng in p.slots))
            roles = tuple(sorted((p.node_id, p.primary_id if not p.is_primary else None)
                                 for p in view.values() if p.node_id in live_ids))
            return owners, roles

        # Each node is the authority on its own role; everyone must agree with that.
        truth = {}
        for node, view in views.items():
            me = view[node.node_id]
            truth[node.node_id] = None if me.is_primary else me.primary_id
        for node, view in views.items():
            owners, roles = summary(view)
            if dict(roles) != truth:
                problems[node] = "disagrees on roles"
                continue
            failing = [p.port for p in view.values()
                       if p.node_id in live_ids and {"fail", "fail?"} & p.flags]
            if failing:
                problems[node] = f"flags live nodes {failing} as failing"
                continue
            covered = sum(hi - lo + 1 for (lo, hi), owner in owners if owner in live_ids)
            if covered != SLOTS:
                dead = sorted({owner[:8] for _, owner in owners if owner not in live_ids})
                problems[node] = (f"{covered}/{SLOTS} slots on live primaries"
                                  + (f" (still assigned to down node(s) {dead})" if dead else ""))
        if problems:
            return problems
        distinct = {summary(view)[0] for view in views.values()}
        if len(distinct) > 1:
            return {None: f"nodes disagree on slot owners ({len(distinct)} different views)"}
        for node in live:
            node.primary_id = truth[node.node_id]
            node.role = PRIMARY if node.primary_id is None else REPLICA
        return {}

    # -- failover --------------------------------------------------------------------------

    def failover(self, replica: ClusterNode, timeout: float = 30.0, *,
                 force: bool = False) -> None:
        """``CLUSTER FAILOVER`` (or ``FAILOVER FORCE``) on ``replica``; wait until it is a
        primary, the old primary (if alive) replicates it, and the cluster is ok again."""
        if not replica.alive:
            raise EmbeddedRedisError(f"{replica.name} is down")
        role = replica.client.info("replication").get("role")
        if role != "slave":
            raise EmbeddedRedisError(f"{replica.name} is not a replica (role {role})")
        old_primary_id = replica.primary_id
        deadline = time.monotonic() + timeout
        replica.client.execute_command("CLUSTER", "FAILOVER", *(["FORCE"] if force else []))

        def promoted() -> dict[ClusterNode, str]:
            me = _parse_nodes(replica.client.execute_command("CLUSTER", "NODES"))[replica.node_id]
            return {} if me.is_primary else {replica: "not yet primary"}

        self._wait(deadline, f"{replica.name} to become primary", promoted)
        self._wait(deadline, "cluster_state:ok after the failover", self._check_ok)
        if old_primary_id and self.node_by_id(old_primary_id).alive:
            old = self.node_by_id(old_primary_id)

            def demoted() -> dict[ClusterNode | None, str]:
                problems = self._check_ok()
                if problems:
                    return problems
                return {} if old.primary_id == replica.node_id else {old: "not yet a replica"}

            self._wait(deadline, f"{old.name} to replicate {replica.name}", demoted)
