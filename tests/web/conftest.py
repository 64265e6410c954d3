"""Flask test-client fixtures: an app on the private redis-server, users with tokens, and a
real LeaseWorker in a thread so that outcomes arrive."""

from __future__ import annotations

import pytest

from slotlock.users import Users
from slotlock.web import create_app
from tests.checks import audit_after_test  # noqa: F401 (autouse: audit every day after a test)
from tests.conftest import make_settings, open_default


@pytest.fixture
def web_settings(real_redis, redis_server):
    open_default(real_redis)
    return make_settings(redis_url=redis_server.url, reply_timeout_ms=3000,
                         rate_limit="100000/minute")


@pytest.fixture
def app(web_settings, start_worker):
    start_worker(web_settings)
    return create_app(web_settings)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(real_redis):
    users = Users(real_redis)
    out = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        users.add(name, admin=admin)
        out[name] = {"Authorization": f"Bearer {users.issue_token(name)}"}
    return out
