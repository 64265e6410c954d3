"""LocalCluster: a real Redis Cluster of private redis-servers on loopback ports."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException

from slotlock.embedded_cluster import LocalCluster

SAME_SLOT = "return redis.call('SET', KEYS[1], ARGV[1]) and redis.call('SET', KEYS[2], ARGV[1])"


def keys_on_each_primary(cluster: LocalCluster, per_primary: int = 3) -> dict[int, list[str]]:
    """Key names, ``per_primary`` per primary, keyed by the primary's port."""
    found: dict[int, list[str]] = {n.port: [] for n in cluster.nodes if n.role == "primary"}
    i = 0
    while any(len(keys) < per_primary for keys in found.values()):
        key = f"key:{i}"
        port = cluster.primary_for(key).port
        if len(found[port]) < per_primary:
            found[port].append(key)
        i += 1
    return found


def cluster_client(cluster: LocalCluster) -> RedisCluster:
    return RedisCluster.from_url(cluster.url, decode_responses=True)


def acked_write(node, key: str, value: str) -> None:
    """SET on ``node`` and ``WAIT 1 1000`` on the same connection: a replica has it."""
    with node.client.pipeline(transaction=False) as pipe:
        pipe.set(key, value)
        pipe.execute_command("WAIT", 1, 1000)
        _, replicated = pipe.execute()
    assert replicated >= 1


@pytest.mark.timeout(60)
def test_three_primaries_serve_keys_and_same_slot_scripts(tmp_path):
    with LocalCluster(tmp_path, primaries=3) as cluster:
        assert cluster.start_seconds < 10
        assert [n.role for n in cluster.nodes] == ["primary"] * 3
        assert cluster.url == f"redis://127.0.0.1:{cluster.nodes[0].port}/0"
        client = cluster_client(cluster)
        try:
            by_port = keys_on_each_primary(cluster)
            assert len(by_port) == 3
            for keys in by_port.values():
                for key in keys:
                    client.set(key, key.upper())
            for node in cluster.nodes:  # each key is stored on the primary owning its slot
                for key in by_port[node.port]:
                    assert node.client.get(key) == key.upper()
                assert node.client.dbsize() == len(by_port[node.port])
            for node in cluster.nodes:
                info = node.client.execute_command("CLUSTER", "INFO")
                assert "cluster_state:ok" in info
                assert "cluster_slots_assigned:16384" in info
                assert "cluster_known_nodes:3" in info

            assert key_slot(b"{x}:a") == key_slot(b"{x}:b")
            assert client.eval(SAME_SLOT, 2, "{x}:a", "{x}:b", "v") is not None
            assert client.mget("{x}:a", "{x}:b") == ["v", "v"]
            assert key_slot(b"a") != key_slot(b"b")
            with pytest.raises(RedisClusterException, match="same key slot"):
                client.eval(SAME_SLOT, 2, "a", "b", "v")  # refused by redis-py itself
            with pytest.raises(redis.ResponseError, match="same slot"):  # and by the server (CROSSSLOT)
                cluster.primary_for("a").client.eval(SAME_SLOT, 2, "a", "b", "v")
        finally:
            client.close()
    assert not any(n.alive or n.process.poll() is None for n in cluster.nodes)


class Writer(threading.Thread):
    """Writes and reads back numbered keys through the cluster client until stopped."""

    def __init__(self, client: RedisCluster):
        super().__init__(daemon=True)
        self.client = client
        self.acked: list[str] = []
        self.errors: list[Exception] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.halt.is_set():
            key = f"w:{i}"
            try:
                self.client.set(key, str(i))
                self.acked.append(key)
                if self.client.get(key) != str(i):
                    self.errors.append(AssertionError(f"{key} read back wrong"))
            except redis.RedisError as exc:
                self.errors.append(exc)
                time.sleep(0.01)
            i += 1


@pytest.mark.timeout(90)
def test_failover_of_a_replica_keeps_acknowledged_writes(tmp_path):
    with LocalCluster(tmp_path, primaries=3, replicas_per_primary=1) as cluster:
        assert cluster.start_seconds < 10
        primaries = [n for n in cluster.nodes if n.role == "primary"]
        assert len(primaries) == 3 and len(cluster.nodes) == 6
        for primary in primaries:
            replica = cluster.replica_of(primary)
            assert replica.client.info("replication")["master_port"] == primary.port
        client = cluster_client(cluster)
        writer = Writer(client)
        try:
            primary = cluster.primary_for("acked")
            replica = cluster.replica_of(primary)
            acked_write(primary, "acked", "before-failover")
            writer.start()
            time.sleep(0.3)
            began = time.monotonic()
            cluster.failover(replica, timeout=30)
            failover_seconds = time.monotonic() - began
            time.sleep(0.3)
            writer.halt.set()
            writer.join(10)
            assert not writer.is_alive()

            assert replica.role == "primary" and primary.role == "replica"
            assert primary.primary_id == replica.node_id
            assert cluster.primary_for("acked") is replica
            assert cluster.replica_of(replica) is primary
            assert replica.client.get("acked") == "before-failover"
            assert client.get("acked") == "before-failover"
            # A manual failover waits for the replica to catch up: no acknowledged write
            # of the writer is lost either.
            assert len(writer.acked) > 50
            assert not [e for e in writer.errors if isinstance(e, AssertionError)]
            values = client.mget_nonatomic(writer.acked)
            assert values == [k.split(":")[1] for k in writer.acked]
            client.set("after", "1")  # still writable through the same client
            assert client.get("after") == "1"
            assert failover_seconds < 15, failover_seconds
            print(f"failover {failover_seconds:.2f}s, {len(writer.acked)} writes, "
                  f"client errors: {[type(e).__name__ for e in writer.errors]}")
        finally:
            writer.halt.set()
            client.close()


@pytest.mark.timeout(90)
def test_sigkill_of_a_primary_promotes_its_replica(tmp_path):
    with LocalCluster(tmp_path, primaries=3, replicas_per_primary=1,
                      node_timeout_ms=2000) as cluster:
        client = cluster_client(cluster)
        try:
            victim = cluster.primary_for("acked")
            replica = cluster.replica_of(victim)
            acked_write(victim, "acked", "before-kill")
            others = keys_on_each_primary(cluster, 1)
            for keys in others.values():
                client.set(keys[0], "x")

            began = time.monotonic()
            cluster.kill_node(victim)
            assert victim.process.poll() is not None and not victim.alive
            # Failure detection takes node_timeout (2 s), then a replica election
            # (500 ms + up to 500 ms random + rank); bounded well within 15 s.
            cluster.wait_ok(timeout=15)
            promoted_after = time.monotonic() - began
            assert 1.5 < promoted_after < 15, promoted_after
            assert replica.role == "primary" and replica.primary_id is None
            assert cluster.primary_for("acked") is replica
            assert replica.client.get("acked") == "before-kill"
            assert len({n.port for n in cluster.live_nodes if n.role == "primary"}) == 3
            assert cluster.url != f"redis://127.0.0.1:{victim.port}/0"

            # The cluster client learns the new owner after its connection errors.
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert client.get("acked") == "before-kill"
                    break
                except (redis.ConnectionError, redis.TimeoutError, RedisClusterException):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for keys in others.values():
                assert client.get(keys[0]) == "x"
            print(f"replica promoted {promoted_after:.2f}s after SIGKILL")
        finally:
            client.close()
