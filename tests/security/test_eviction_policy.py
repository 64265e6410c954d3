"""Issue 11 (G8): no process runs on a Redis that may evict a lease, a fence or a command."""

import subprocess
import sys

import pytest

from slotlock.errors import EvictingRedis
from slotlock.web import create_app
from tests.conftest import make_settings


@pytest.fixture
def evicting(redis_server, real_redis):
    real_redis.config_set("maxmemory-policy", "allkeys-lru")
    yield redis_server
    real_redis.config_set("maxmemory-policy", "noeviction")


def run(args, redis_url, **env):
    import os

    merged = dict(os.environ, REDIS_URL=redis_url, SLOTLOCK_ENV="development",
                  SECRET_KEY="x" * 32, **env)
    return subprocess.run([sys.executable, "-m", "slotlock", *args], env=merged, check=False,
                          capture_output=True, text=True, timeout=30)


def test_the_worker_refuses_an_evicting_redis(evicting):
    done = run(["worker"], evicting.url)
    assert done.returncode == 2
    assert "allkeys-lru" in done.stderr and "noeviction" in done.stderr


def test_the_jobs_refuse_an_evicting_redis(evicting):
    done = run(["jobs", "--burst"], evicting.url)
    assert done.returncode == 1
    assert "maxmemory-policy" in done.stderr


def test_the_web_refuses_an_evicting_redis(evicting):
    with pytest.raises(EvictingRedis, match="allkeys-lru"):
        create_app(make_settings(redis_url=evicting.url))


def test_the_operator_may_allow_it_explicitly(evicting):
    app = create_app(make_settings(redis_url=evicting.url, allow_eviction=True))
    assert app is not None
    done = run(["jobs", "--burst"], evicting.url, SLOTLOCK_ALLOW_EVICTION="1")
    assert done.returncode == 0, done.stderr
