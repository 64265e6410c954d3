"""Issue 12: slotlock does not run on Redis Cluster yet, so every process refuses one at
start with a message that says so (before, a plain client got MOVED for keys of other
nodes and a process half worked), against a real local cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from slotlock.embedded_cluster import LocalCluster
from slotlock.errors import ClusterUnsupported
from slotlock.web import create_app
from tests.conftest import make_settings


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with LocalCluster(tmp_path_factory.mktemp("cluster"), primaries=3) as started:
        yield started


def run(args, redis_url, **env):
    merged = dict(os.environ, REDIS_URL=redis_url, SLOTLOCK_ENV="development",
                  SECRET_KEY="x" * 32, **env)
    return subprocess.run([sys.executable, "-m", "slotlock", *args], env=merged, check=False,
                          capture_output=True, text=True, timeout=30)


def said_cluster(text: str) -> bool:
    return "Redis Cluster" in text and "docs/cluster.md" in text


@pytest.mark.timeout(60)
def test_the_worker_refuses_a_cluster(cluster):
    done = run(["worker"], cluster.url)
    assert done.returncode == 2 and said_cluster(done.stderr), done.stderr[-2000:]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [["migrate"], ["jobs", "--burst"], ["status"]])
def test_commands_refuse_a_cluster(cluster, args):
    done = run(args, cluster.url)
    assert done.returncode == 1 and said_cluster(done.stderr), done.stderr[-2000:]
    assert "cluster_enabled:1" in done.stderr  # told why: the server said so


@pytest.mark.timeout(60)
def test_the_web_refuses_a_cluster(cluster):
    with pytest.raises(ClusterUnsupported):
        create_app(make_settings(redis_url=cluster.url))


@pytest.mark.timeout(60)
def test_on_refuses_and_off_skips_the_check(redis_server, real_redis):
    done = run(["migrate"], redis_server.url, SLOTLOCK_REDIS_CLUSTER="on")
    assert done.returncode == 1 and said_cluster(done.stderr)
    assert "SLOTLOCK_REDIS_CLUSTER=on" in done.stderr
    done = run(["migrate"], redis_server.url, SLOTLOCK_REDIS_CLUSTER="off")
    assert done.returncode == 0, done.stderr
    done = run(["migrate"], redis_server.url, SLOTLOCK_REDIS_CLUSTER="maybe")
    assert done.returncode == 1 and "SLOTLOCK_REDIS_CLUSTER" in done.stderr
