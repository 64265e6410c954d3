"""The checks every process makes of its Redis (redis_conn.check_server) on the paths the
start-up alone does not cover: a user whose ACL denies INFO (managed Redis), and a web
process that started while Redis did not answer (/readyz makes the check then)."""

from __future__ import annotations

import pytest
import redis

from slotlock.embedded import RedisServer, free_port
from slotlock.errors import EvictingRedis
from slotlock.redis_conn import check_server, connect
from slotlock.web import create_app
from tests.conftest import make_settings


@pytest.fixture
def no_info_url(redis_server, real_redis):
    real_redis.acl_setuser("noinfo", enabled=True, passwords=["+pw"], keys=["*"],
                           channels=["*"], commands=["+@all", "-info"], reset=True)
    yield redis_server.url.replace("redis://", "redis://noinfo:pw@")
    real_redis.acl_deluser("noinfo")


def test_a_user_denied_info_is_told_the_policy_cannot_be_checked(no_info_url):
    client = connect(no_info_url)
    with pytest.raises(EvictingRedis) as raised:
        check_server(client, make_settings(redis_url=no_info_url))
    text = str(raised.value)
    assert "INFO" in text and "SLOTLOCK_ALLOW_EVICTION" in text, text


def test_a_user_denied_info_may_start_when_the_operator_says_so(no_info_url, caplog):
    client = connect(no_info_url)
    check_server(client, make_settings(redis_url=no_info_url, allow_eviction=True))
    assert "cannot read" in caplog.text
    create_app(make_settings(redis_url=no_info_url, allow_eviction=True))


@pytest.mark.timeout(60)
def test_readyz_checks_a_redis_that_did_not_answer_at_start_up(tmp_path):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    app = create_app(make_settings(redis_url=url))  # nothing listens yet: it starts
    web = app.test_client()
    assert web.get("/readyz").status_code == 503
    server = RedisServer(tmp_path, port=port, extra=["--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        answer = web.get("/readyz")
        assert answer.status_code == 503, answer.json
        assert answer.json["status"] == "unsuitable" and "allkeys-lru" in answer.json["error"]
        connect(url).config_set("maxmemory-policy", "noeviction")
        assert web.get("/readyz").status_code == 200
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_without_a_probe_requests_are_refused_on_a_redis_found_unsuitable_later(tmp_path, caplog):
    """A process started while Redis was down makes the check on its first requests too:
    with no readiness probe it must not serve on an evicting Redis; /healthz (liveness)
    still answers, and the refusal is logged once, not on every request."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    app = create_app(make_settings(redis_url=url))
    web = app.test_client()
    server = RedisServer(tmp_path, port=port, extra=["--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        caplog.clear()
        api = web.get("/api/v1/calendars", headers={"Authorization": "Bearer slk_x"})
        assert api.status_code == 503, api.json
        assert "allkeys-lru" in api.json["error"]["message"]
        page = web.get("/")
        assert page.status_code == 503 and b"allkeys-lru" in page.data
        assert web.get("/healthz").status_code == 200
        assert web.get("/readyz").status_code == 503
        assert caplog.text.count("not serving") == 1, caplog.text
        connect(url).config_set("maxmemory-policy", "noeviction")
        assert web.get("/readyz").status_code == 200  # asks again at once
        assert web.get("/api/v1/calendars").status_code == 401  # served again: no token
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_the_fast_lane_hands_bookings_to_flask_until_the_server_is_checked(tmp_path):
    """The fast lane answers bookings of tokens this process knows without Flask's hooks:
    until the server passed its check, it must hand them to Flask, which refuses on an
    unsuitable Redis (the lane would have booked)."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    app = create_app(make_settings(redis_url=url))
    services = app.extensions["slotlock"]
    services.tokens.knows = lambda token: True  # as if this process had verified it
    server = RedisServer(tmp_path, port=port, extra=["--maxmemory-policy", "allkeys-lru"])
    server.start()
    try:
        answer = app.test_client().post(
            "/api/v1/calendars/main/bookings", headers={"Authorization": "Bearer slk_x_y"},
            json={"start": "2031-01-01T09:00:00Z", "end": "2031-01-01T10:00:00Z",
                  "title": "x"})
        assert answer.status_code == 503, answer.json
        assert "allkeys-lru" in answer.json["error"]["message"]
    finally:
        server.stop()
