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
    {"method": "POST", "path": BOOKINGS + "%0A"},  # "$" would match before the newline
    {"method": "POST", "cookie": "x"},  # a signed-in session: Flask refreshes its cookie
    {"method": "POST", "environ_overrides": {"wsgi.url_scheme": "wss"}},
    {"method": "POST", "headers": {"Transfer-Encoding": "chunked"}},
    {"method": "POST", "data": b"x" * 70_000},  # over SLOTLOCK_MAX_BODY_BYTES: Flask's 413
])
def test_other_requests_go_to_flask(client, tokens, lane_calls, request_kwargs):
    assert client.post(BOOKINGS, json=slot(9), headers=tokens["alice"]).status_code == 201
    kwargs = {"path": BOOKINGS, "json": slot(10), **request_kwargs}
    kwargs["headers"] = {**tokens["alice"], **kwargs.get("headers", {})}
    if "data" in kwargs:
        kwargs.pop("json")
    if "cookie" in kwargs:
        client.set_cookie("slotlock_session", kwargs.pop("cookie"))
    client.open(**kwargs)
    assert lane_calls == []


def test_a_revoked_token_is_401_and_then_counted_against_the_address(
        client, real_redis, lane_calls):
    users = Users(real_redis)
    users.add("carol")
    token = users.issue_token("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post(BOOKINGS, json=slot(9), headers=headers).status_code == 201
    users.revoke(token)
    anonymous = counted(real_redis, "anon:addr:127.0.0.1")
    response = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert response.status_code == 401 and error_code(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="slotlock"'
    assert counted(real_redis, "anon:addr:127.0.0.1") == anonymous + 1
    # forgotten by the lane: the next one is Flask's, which counts it against the address too
    client.post(BOOKINGS, json=slot(11), headers=headers)
    assert counted(real_redis, "anon:addr:127.0.0.1") == anonymous + 2
    assert lane_calls == []


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
    """Status line, headers and body bytes, with what differs between twin runs masked:
    ids, the twin calendars' names, creation times."""
    body = re.sub(r'"created_at":"[^"]+"', '"created_at":"<t>"', _mask(response.get_data(as_text=True)))
    headers = sorted((k, _mask(v)) for k, v in response.headers.items() if k != "Content-Length")
    return response.status, headers, body


def twins(settings):
    """An app with its lane and one without (Flask alone), on the same settings."""
    return create_app(settings).test_client(), flask_only(create_app(settings)).test_client()


def know(client, *headers):
    for header in headers:  # the process verifies each token's secret once
        assert client.get("/api/v1/calendars", headers=header).status_code == 200


def test_the_lane_answers_exactly_as_flask_does(web_settings, tokens, real_redis,
                                                start_worker, lane_calls):
    """The same requests, on twin calendars, through the lane and through Flask alone."""
    from datetime import time as dtime

    start_worker(web_settings)
    rules = Rules(horizon_days=0, open_from=dtime(8), open_until=dtime(18),
                  max_bookings_per_owner=3)
    for name in ("lane-a", "flask-a"):
        Catalog(real_redis).put(Calendar(name, name, rules=rules))
    lane, flask = twins(web_settings)

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
        know(client, tokens["alice"], tokens["bob"])
        return [_normalised(client.post(url, **kwargs)) for url, kwargs in requests(prefix)]

    through_lane = run(lane, "lane")
    assert len(lane_calls) == len(requests("lane"))
    through_flask = run(flask, "flask")
    assert len(lane_calls) == len(requests("lane"))  # Flask alone: the lane saw none
    statuses = [int(answer[0].split()[0]) for answer in through_flask]
    assert statuses == [201, 409, 422, 422, 400, 201, 201, 422, 422, 201, 201, 409, 404]
    for number, (ours, theirs) in enumerate(zip(through_lane, through_flask)):
        assert ours == theirs, f"request {number}"


def test_the_lane_answers_401_429_503_and_202_as_flask_does(web_settings, real_redis,
                                                              lane_calls):
    """No worker (202s, a full backlog), tight limits; each app with its own user and
    address, so that neither spends the other's allowance."""
    settings = web_settings.model_copy(update={
        "reply_timeout_ms": 50, "backlog_limit": 2, "rate_limit": "4/minute",
        "anonymous_rate_limit": "1/minute"})
    lane, flask = twins(settings)
    users = Users(real_redis)
    answers = {}
    for name, client in (("lane", lane), ("flask", flask)):
        users.add(f"{name}-user")
        token = users.issue_token(f"{name}-user")
        headers = {"Authorization": f"Bearer {token}"}
        base = {"environ_base": {"REMOTE_ADDR": f"192.0.2.{1 if name == 'lane' else 2}"},
                "base_url": "https://localhost/mnt"}
        assert client.get("/api/v1/calendars", headers=headers, **base).status_code == 200
        got = [client.post("/api/v1/calendars/main/bookings", json=slot(9 + i,
                           day=f"2031-0{1 if name == 'lane' else 2}-01"), headers=headers,
                           **base) for i in range(4)]  # 202, 202, 503 backlog_full, 429
        users.revoke(token)
        for _ in range(2):  # 401 (counted against the address), then 429 for the address
            got.append(client.post("/api/v1/calendars/main/bookings", json=slot(14),
                                   headers=headers, **base))
        answers[name] = [_normalised(r) for r in got]
    statuses = [int(a[0].split()[0]) for a in answers["flask"]]
    assert statuses == [202, 202, 503, 429, 401, 429]
    assert len(lane_calls) == 3  # the 202s and the 503; the rest answered before booking
    lane_answers = [(st, [(k, v.replace("2031-01", "2031-02")) for k, v in h], b)
                    for st, h, b in answers["lane"]]
    for number, (ours, theirs) in enumerate(zip(lane_answers, answers["flask"])):
        assert _retry_after_masked(ours) == _retry_after_masked(theirs), f"request {number}"


def _retry_after_masked(answer):
    status, headers, body = answer
    return status, [(k, "<s>" if k == "Retry-After" and v != "1" else v) for k, v in headers], body


def _hook_names(funcs) -> dict:
    def name(func):
        func = getattr(func, "func", func)  # a functools.partial
        return f"{func.__module__}.{func.__qualname__}"
    return {key: [name(f) for f in value] for key, value in funcs.items() if value}


def test_every_hook_of_flasks_request_cycle_is_one_the_lane_mirrors(app):
    """The lane skips Flask's request cycle. Each hook below is mirrored by it or does
    nothing for the API (Flask-Limiter: the API is exempt; CSRF: exempt; the UI's sign-in:
    not its blueprint); a new hook or host check must be mirrored in web/fastlane.py
    (or make the lane hand the request to Flask), and this list updated."""
    assert _hook_names(app.before_request_funcs) == {
        None: ["flask_limiter._extension.Limiter._check_request_limit",
               # the lane hands every request to Flask until the server passed its check
               "slotlock.web._server_checked",
               "flask_wtf.csrf.CSRFProtect.init_app.<locals>.csrf_protect"],
        "api": ["slotlock.web.api._authenticate"],            # the lane: TokenGate.check
        "ui": ["slotlock.web.ui.views._require_sign_in"],
    }
    assert _hook_names(app.after_request_funcs) == {None: [
        "slotlock.web._rate_limits.<locals>._retry_after_on_429",  # the lane's 429s have one
        "flask_limiter._extension.Limiter.__inject_headers",       # headers_enabled=False
        "slotlock.web.ui.security.init_app.<locals>._security_headers",  # the lane: HEADERS
    ]}
    assert _hook_names(app.teardown_request_funcs) == {
        None: ["flask_limiter._extension.Limiter.__release_context"]}
    assert not app.url_value_preprocessors and not app.url_default_functions
    assert app.config.get("TRUSTED_HOSTS") is None and app.config["SERVER_NAME"] is None


def test_a_body_cut_short_is_400_on_both_paths(web_settings, tokens, lane_calls):
    """A client that sends less than its Content-Length and stops: gunicorn hands over what
    came (``wsgi.input_terminated``); neither path books on it."""
    import io

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    body = json.dumps(slot(9)).encode()
    answers = []
    for client in twins(web_settings):
        know(client, tokens["alice"])
        environ = EnvironBuilder(path=BOOKINGS, method="POST", headers=tokens["alice"],
                                 data=body, content_type="application/json").get_environ()
        environ.update({"CONTENT_LENGTH": str(len(body) + 50), "wsgi.input": io.BytesIO(body),
                        "wsgi.input_terminated": True})
        chunks, status, headers = run_wsgi_app(client.application, environ)
        answers.append((status, json.loads(b"".join(chunks))["error"]["code"]))
    assert answers == [("400 BAD REQUEST", "bad_request")] * 2
    assert lane_calls == []  # refused before the booking
