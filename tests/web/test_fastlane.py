"""The fast lane (``web/fastlane.py``): which requests it takes, and that its answers are
Flask's answers, on a real redis-server with a real lease worker."""

from __future__ import annotations

import json
import re

import pytest
import redis

from slotlock.catalog import Catalog
from slotlock.model import Calendar, Rules
from slotlock.users import Users
from slotlock.web import create_app, fastlane
from slotlock.web.fastlane import FastLane
from tests.web.test_api import BOOKINGS, error_code, slot


@pytest.fixture
def lane_calls(monkeypatch):
    """How many requests the lane decided (its call of ``booking.book``)."""
    calls = []
    real = fastlane.book

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(fastlane, "book", spy)
    return calls


def flask_only(app):
    """The same app without its lane: every request goes through Flask's request cycle."""
    assert isinstance(app.wsgi_app, FastLane)
    app.wsgi_app = app.wsgi_app.inner
    return app


def counted(real_redis, subject: str) -> int:
    """Requests counted against a rate-limit subject (``token:<id>`` or ``anon:addr:<ip>``)."""
    keys = real_redis.keys(f"sl:ratelimit:{{{subject}}}:*")
    return max((int(real_redis.get(k) or 0) for k in keys), default=0)


def token_id(headers) -> str:
    return re.match(r"Bearer slk_([0-9a-f]{16})\.", headers["Authorization"]).group(1)


def test_a_known_tokens_booking_takes_the_lane_a_first_seen_one_does_not(client, tokens,
                                                                         lane_calls):
    first = client.post(BOOKINGS, json=slot(9), headers=tokens["alice"])
    assert first.status_code == 201 and lane_calls == []  # Flask verified the secret
    second = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"])
    assert second.status_code == 201 and lane_calls == ["main"]
    assert second.headers["Location"] == (f"/api/v1/calendars/main/bookings/"
                                          f"{second.get_json()['id']}")
    assert second.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("request_kwargs", [
    {"method": "GET"},
    {"method": "POST", "path": BOOKINGS + "/"},
    {"method": "POST", "path": "/api/v1/calendars/Main/bookings"},
    {"method": "POST", "headers": {"Transfer-Encoding": "chunked"}},
    {"method": "POST", "data": b"x" * 70_000},  # over SLOTLOCK_MAX_BODY_BYTES: Flask's 413
])
def test_other_requests_go_to_flask(client, tokens, lane_calls, request_kwargs):
    assert client.post(BOOKINGS, json=slot(9), headers=tokens["alice"]).status_code == 201
    kwargs = {"path": BOOKINGS, "json": slot(10), **request_kwargs}
    kwargs["headers"] = {**tokens["alice"], **kwargs.get("headers", {})}
    if "data" in kwargs:
        kwargs.pop("json")
    client.open(**kwargs)
    assert lane_calls == []


def test_a_revoked_token_is_401_counted_against_the_address_not_the_token(
        client, real_redis, lane_calls):
    users = Users(real_redis)
    users.add("carol")
    token = users.issue_token("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post(BOOKINGS, json=slot(9), headers=headers).status_code == 201
    users.revoke(token)
    response = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="slotlock"'


def test_a_removed_users_token_is_401_and_counted_once(client, real_redis, lane_calls):
    users = Users(real_redis)
    users.add("dave")
    headers = {"Authorization": f"Bearer {users.issue_token('dave')}"}
    assert client.post(BOOKINGS, json=slot(9), headers=headers).status_code == 201
    assert client.post(BOOKINGS, json=slot(10), headers=headers).status_code == 201
    assert lane_calls == ["main"]
    assert counted(real_redis, f"token:{token_id(headers)}") == 2
    users.remove("dave")
    anonymous = counted(real_redis, "anon:addr:127.0.0.1")
    response = client.post(BOOKINGS, json=slot(11), headers=headers)
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="slotlock"'
    # one count for the request: the dead token's check, then the address's (as Flask does)
    assert counted(real_redis, f"token:{token_id(headers)}") == 3
    assert counted(real_redis, "anon:addr:127.0.0.1") == anonymous + 1


def test_over_the_token_limit_is_429_in_the_lane(web_settings, tokens, start_worker, lane_calls):
    start_worker(web_settings)
    client = create_app(web_settings.model_copy(update={"rate_limit": "2/minute"})).test_client()
    statuses = [client.post(BOOKINGS, json=slot(9 + i), headers=tokens["alice"]).status_code
                for i in range(3)]
    assert statuses == [201, 201, 429]
    response = client.post(BOOKINGS, json=slot(13), headers=tokens["alice"])
    assert response.status_code == 429 and error_code(response) == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert lane_calls == ["main"]  # the 429s never reached the booking


def test_security_headers_and_hsts_over_https(client, tokens, lane_calls):
    client.post(BOOKINGS, json=slot(9), headers=tokens["alice"], base_url="https://localhost")
    response = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"],
                           base_url="https://localhost")
    assert lane_calls == ["main"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    plain = client.post(BOOKINGS, json=slot(11), headers=tokens["alice"])
    assert "Strict-Transport-Security" not in plain.headers


def test_behind_a_trusted_proxy_the_lane_sees_the_forwarded_address_and_scheme(
        web_settings, real_redis, start_worker, lane_calls):
    start_worker(web_settings)
    client = create_app(web_settings.model_copy(update={"trusted_proxies": 1})).test_client()
    users = Users(real_redis)
    users.add("erin")
    token = users.issue_token("erin")
    headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9",
               "X-Forwarded-Proto": "https"}
    assert client.post(BOOKINGS, json=slot(9), headers=headers).status_code == 201
    response = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert lane_calls == ["main"]
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    users.revoke(token)
    assert client.post(BOOKINGS, json=slot(11), headers=headers).status_code == 401
    assert counted(real_redis, "anon:addr:203.0.113.9") == 1


def test_an_unexpected_error_is_a_500_in_the_api_format(client, tokens, monkeypatch, caplog):
    client.post(BOOKINGS, json=slot(9), headers=tokens["alice"])

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(fastlane, "book", broken)
    response = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"])
    assert response.status_code == 500 and error_code(response) == "internal"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "unexpected error on POST" in caplog.text


def test_redis_gone_after_the_token_was_known_is_a_503(client, tokens, monkeypatch, app,
                                                       lane_calls):
    assert client.post(BOOKINGS, json=slot(9), headers=tokens["alice"]).status_code == 201
    gate = app.extensions["slotlock"].tokens

    def gone(token):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(gate, "check", gone)
    response = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"])
    assert response.status_code == 503 and error_code(response) == "unavailable"
    assert response.headers["Retry-After"] == "1"
    assert lane_calls == []  # answered in the lane before the booking


IDS = re.compile(r"\d{8}\.[0-9a-f]{16,48}")


def _mask(text: str) -> str:
    return IDS.sub("<id>", text).replace("lane-", "cal-").replace("flask-", "cal-")


def _normalised(response) -> tuple:
    """Status, body and headers with what differs between the twin runs masked (ids, the
    calendar's name, creation times); the body's JSON as a value, not as bytes."""
    def untimed(value):
        if isinstance(value, dict):
            return {k: "<t>" if k == "created_at" else untimed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [untimed(v) for v in value]
        return value

    body = untimed(json.loads(_mask(response.get_data(as_text=True))))
    headers = {k: _mask(v) for k, v in response.headers.items() if k != "Content-Length"}
    return response.status_code, body, headers


def test_the_lane_answers_exactly_as_flask_does(web_settings, tokens, real_redis,
                                                start_worker, lane_calls):
    """The same requests, on twin calendars, through the lane and through Flask alone."""
    from datetime import time as dtime

    start_worker(web_settings)
    rules = Rules(horizon_days=0, open_from=dtime(8), open_until=dtime(18),
                  max_bookings_per_owner=3)
    for name in ("lane-a", "flask-a"):
        Catalog(real_redis).put(Calendar(name, name, rules=rules))
    lane = create_app(web_settings).test_client()
    flask = flask_only(create_app(web_settings)).test_client()

    def requests(prefix: str):
        url = f"/api/v1/calendars/{prefix}-a/bookings"
        alice, bob = tokens["alice"], tokens["bob"]
        return [
            (url, {"json": slot(9), "headers": alice}),                      # 201
            (url, {"json": slot(9, 15), "headers": bob}),                    # 409 overlap
            (url, {"json": slot(19), "headers": bob}),                       # 422 rule
            (url, {"json": {"start": "x", "end": "y", "title": "t"}, "headers": bob}),  # 422
            (url, {"data": b"{not json", "headers": bob}),                   # 400
            (url, {"json": slot(11), "headers": {**bob, "Idempotency-Key": f"{prefix}-k1"}}),   # 201
            (url, {"json": slot(11), "headers": {**bob, "Idempotency-Key": f"{prefix}-k1"}}),   # same
            (url, {"json": slot(12), "headers": {**bob, "Idempotency-Key": f"{prefix}-k1"}}),   # 422
            (url, {"json": slot(13), "headers": {**bob, "Idempotency-Key": "é" * 3}}),
            (url, {"json": slot(10, title="ünïcode ✓"), "headers": alice}),  # 201
            (url, {"json": slot(14), "headers": alice}),                     # 201
            (url, {"json": slot(15), "headers": alice}),                     # 409 quota
            (f"/api/v1/calendars/{prefix}-nope/bookings", {"json": slot(9), "headers": bob}),
        ]

    def run(client, prefix):
        client.get("/api/v1/calendars", headers=tokens["alice"])  # both tokens known first
        client.get("/api/v1/calendars", headers=tokens["bob"])
        return [_normalised(client.post(url, **kwargs)) for url, kwargs in requests(prefix)]

    through_lane = run(lane, "lane")
    assert len(lane_calls) == len(requests("lane"))
    through_flask = run(flask, "flask")
    assert len(lane_calls) == len(requests("lane"))  # Flask alone: the lane saw none
    statuses = [answer[0] for answer in through_flask]
    assert statuses == [201, 409, 422, 422, 400, 201, 201, 422, 422, 201, 201, 409, 404]
    for number, (ours, theirs) in enumerate(zip(through_lane, through_flask)):
        assert ours == theirs, f"request {number}"
