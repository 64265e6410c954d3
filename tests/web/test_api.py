"""Every path of the JSON API through Flask's test client, on a real redis-server with a real
lease worker deciding the commands."""

from __future__ import annotations

import time

import pytest

from slotlock.catalog import Catalog
from slotlock.model import Calendar, Rules
from slotlock.web import create_app
from tests.conftest import make_settings
from tests.procs import wait_for

BOOKINGS = "/api/v1/calendars/main/bookings"


def slot(hour: int, minute: int = 0, length: int = 30, day: str = "2030-05-04",
         title: str = "Meeting") -> dict:
    start_min = hour * 60 + minute
    end_min = start_min + length
    return {"start": f"{day}T{start_min // 60:02d}:{start_min % 60:02d}:00",
            "end": f"{day}T{end_min // 60:02d}:{end_min % 60:02d}:00", "title": title}


def error_code(response) -> str:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    return body["error"]["code"]


def settled(client, status_url: str, headers) -> dict:
    """Poll a status URL until the command is decided."""
    def decided():
        status = client.get(status_url, headers=headers).get_json()
        return status if status["status"] != "pending" else None
    return wait_for(decided, 10, 0.05, f"{status_url} to settle")


def day_bookings(client, headers, day="2030-05-04", calendar="main") -> list[dict]:
    response = client.get(f"/api/v1/calendars/{calendar}/days/{day}", headers=headers)
    assert response.status_code == 200
    return response.get_json()["bookings"]


# -- health and auth -----------------------------------------------------------------------

def test_healthz_and_readyz_answer_ok_without_a_token(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc", "Bearer slk_0000000000000000."
                                    + "A" * 43])
def test_requests_without_a_valid_token_get_401(client, tokens, header):
    headers = {"Authorization": header} if header else {}
    response = client.get("/api/v1/calendars", headers=headers)
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_gets_401(client, real_redis):
    from slotlock.users import Users

    users = Users(real_redis)
    users.add("carol")
    token = users.issue_token("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/calendars", headers=headers).status_code == 200
    assert users.revoke(token)
    assert client.get("/api/v1/calendars", headers=headers).status_code == 401


# -- calendars and days --------------------------------------------------------------------

def test_calendars_lists_main(client, tokens, real_redis):
    Catalog(real_redis).put(Calendar("room-b", "Room B", "Europe/Berlin", Rules(horizon_days=0),
                                     webhook_url="http://example.invalid/hook"))
    response = client.get("/api/v1/calendars", headers=tokens["alice"])
    assert response.status_code == 200
    calendars = {c["id"]: c for c in response.get_json()["calendars"]}
    assert set(calendars) == {"main", "room-b"}
    assert calendars["room-b"]["timezone"] == "Europe/Berlin"
    assert "webhook_url" not in calendars["room-b"]  # may hold a secret


def test_day_of_an_unknown_calendar_or_a_bad_date_is_404(client, tokens):
    assert client.get("/api/v1/calendars/nope/days/2030-05-04",
                      headers=tokens["alice"]).status_code == 404
    for bad in ("2030-13-01", "tomorrow", "2030-5-4"):
        response = client.get(f"/api/v1/calendars/main/days/{bad}", headers=tokens["alice"])
        assert response.status_code == 404 and error_code(response) == "not_found"


# -- booking -------------------------------------------------------------------------------

def test_book_answers_201_with_the_booking_which_the_day_and_get_show(client, tokens):
    response = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"])
    assert response.status_code == 201
    booking = response.get_json()
    assert set(booking) == {"id", "calendar", "start", "end", "title", "owner", "created_at"}
    assert booking["owner"] == "alice" and booking["start"] == "2030-05-04T10:00:00+00:00"
    assert response.headers["Location"] == f"{BOOKINGS}/{booking['id']}"
    assert client.get(response.headers["Location"], headers=tokens["bob"]).get_json() == booking
    assert day_bookings(client, tokens["bob"]) == [booking]


def test_naive_times_are_read_in_the_calendars_zone_and_offsets_kept(client, tokens, real_redis):
    Catalog(real_redis).put(Calendar("berlin", "Berlin", "Europe/Berlin",
                                     Rules(horizon_days=0)))
    naive = client.post("/api/v1/calendars/berlin/bookings", json=slot(10),
                        headers=tokens["alice"])
    assert naive.status_code == 201
    assert naive.get_json()["start"] == "2030-05-04T10:00:00+02:00"
    aware = client.post("/api/v1/calendars/berlin/bookings", headers=tokens["alice"], json={
        "start": "2030-05-04T10:00:00Z", "end": "2030-05-04T10:30:00Z", "title": "UTC"})
    assert aware.status_code == 201
    assert aware.get_json()["start"] == "2030-05-04T12:00:00+02:00"


def test_overlap_is_409_with_the_conflicting_bookings(client, tokens):
    first = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"]).get_json()
    response = client.post(BOOKINGS, json=slot(10, 15), headers=tokens["bob"])
    assert response.status_code == 409
    assert error_code(response) == "overlap"
    assert response.get_json()["error"]["details"]["conflicts"] == [first]
    assert day_bookings(client, tokens["bob"]) == [first]


def test_quota_exceeded_is_409(client, tokens, real_redis):
    Catalog(real_redis).put(Calendar("q", "Q", rules=Rules(max_bookings_per_owner=1,
                                                                 horizon_days=0)))
    url = "/api/v1/calendars/q/bookings"
    assert client.post(url, json=slot(9), headers=tokens["alice"]).status_code == 201
    response = client.post(url, json=slot(11), headers=tokens["alice"])
    assert response.status_code == 409 and error_code(response) == "quota_exceeded"
    assert len(response.get_json()["error"]["details"]["conflicts"]) == 1


def test_rule_violation_and_invalid_times_are_422(client, tokens, real_redis):
    from datetime import time as dtime

    Catalog(real_redis).put(Calendar("office", "Office", rules=Rules(horizon_days=0, open_from=dtime(8),
                                                                       open_until=dtime(18))))
    response = client.post("/api/v1/calendars/office/bookings", json=slot(19),
                           headers=tokens["alice"])
    assert response.status_code == 422 and error_code(response) == "rule_violation"
    backwards = {"start": "2030-05-04T11:00", "end": "2030-05-04T10:00", "title": "x"}
    response = client.post(BOOKINGS, json=backwards, headers=tokens["alice"])
    assert response.status_code == 422 and error_code(response) == "invalid"
    assert day_bookings(client, tokens["alice"]) == []


@pytest.mark.parametrize("body", [
    {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30"},  # no title
    {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30", "title": ""},
    {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30", "title": "x" * 201},
    {"start": "soon", "end": "2030-05-04T10:30", "title": "x"},
    {"start": "0001-01-01T00:00+05:00", "end": "0001-01-01T00:30+05:00", "title": "x"},
    {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30", "title": "x", "extra": 1},
    ["not", "an", "object"],
])
def test_a_body_that_breaks_the_schema_is_422(client, tokens, body):
    response = client.post(BOOKINGS, json=body, headers=tokens["alice"])
    assert response.status_code == 422
    assert error_code(response) == "invalid"


def test_a_time_inside_the_spring_forward_gap_is_422(client, tokens, real_redis):
    Catalog(real_redis).put(Calendar("berlin", "Berlin", "Europe/Berlin",
                                     Rules(horizon_days=0)))
    body = {"start": "2030-03-31T02:15", "end": "2030-03-31T02:45", "title": "gap"}
    response = client.post("/api/v1/calendars/berlin/bookings", json=body,
                           headers=tokens["alice"])
    assert response.status_code == 422


def test_malformed_json_is_400(client, tokens):
    for raw in (b"{bad", b"\xff\xfe", b"", b"[" * 5000):
        response = client.post(BOOKINGS, data=raw, headers=tokens["alice"],
                               content_type="application/json")
        assert response.status_code == 400, raw[:10]
        assert error_code(response) == "malformed_json"


def test_a_body_over_the_limit_is_413(client, tokens):
    body = slot(10, title="x" * 100)
    raw = ('{"pad": "' + "y" * 20_000 + '", ' + str(body)[1:]).encode()
    response = client.post(BOOKINGS, data=raw, headers=tokens["alice"],
                           content_type="application/json")
    assert response.status_code == 413
    assert error_code(response) == "too_large"


def test_booking_on_an_unknown_calendar_is_404(client, tokens):
    response = client.post("/api/v1/calendars/nope/bookings", json=slot(10),
                           headers=tokens["alice"])
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_get_booking_unknown_or_malformed_id_is_404(client, tokens):
    for booking_id in ("20300504.0123456789abcdef", "not-an-id", "20301340.0123456789abcdef"):
        response = client.get(f"{BOOKINGS}/{booking_id}", headers=tokens["alice"])
        assert response.status_code == 404 and error_code(response) == "not_found"


# -- cancelling ----------------------------------------------------------------------------

def test_only_the_owner_or_an_admin_may_cancel(client, tokens):
    booking = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"]).get_json()
    url = f"{BOOKINGS}/{booking['id']}"
    response = client.delete(url, headers=tokens["bob"])
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert day_bookings(client, tokens["bob"]) == [booking]
    response = client.delete(url, headers=tokens["root"])
    assert response.status_code == 200
    assert response.get_json() == {"booking": booking, "status": "cancelled"}
    assert day_bookings(client, tokens["bob"]) == []
    assert client.get(url, headers=tokens["alice"]).status_code == 404


def test_owner_cancels_and_a_second_cancel_is_404(client, tokens):
    booking = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"]).get_json()
    url = f"{BOOKINGS}/{booking['id']}"
    assert client.delete(url, headers=tokens["alice"]).status_code == 200
    response = client.delete(url, headers=tokens["alice"])
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert client.post(BOOKINGS, json=slot(10), headers=tokens["bob"]).status_code == 201


def test_cancel_with_a_malformed_id_is_404(client, tokens):
    response = client.delete(f"{BOOKINGS}/nope", headers=tokens["alice"])
    assert response.status_code == 404


# -- idempotency ---------------------------------------------------------------------------

def test_same_idempotency_key_returns_the_first_outcome_and_books_once(client, tokens):
    headers = {**tokens["alice"], "Idempotency-Key": "k-1"}
    first = client.post(BOOKINGS, json=slot(10), headers=headers)
    again = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert len(day_bookings(client, tokens["alice"])) == 1


def test_same_key_for_a_rejection_returns_the_same_rejection(client, tokens):
    client.post(BOOKINGS, json=slot(10), headers=tokens["bob"])
    headers = {**tokens["alice"], "Idempotency-Key": "k-2"}
    first = client.post(BOOKINGS, json=slot(10), headers=headers)
    again = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert first.status_code == again.status_code == 409
    assert first.get_json() == again.get_json()


def test_same_key_with_a_different_body_is_422_and_changes_nothing(client, tokens):
    headers = {**tokens["alice"], "Idempotency-Key": "k-3"}
    first = client.post(BOOKINGS, json=slot(10), headers=headers).get_json()
    response = client.post(BOOKINGS, json=slot(12), headers=headers)
    assert response.status_code == 422 and error_code(response) == "idempotency_mismatch"
    assert day_bookings(client, tokens["alice"]) == [first]


def test_keys_are_per_user(client, tokens):
    a = client.post(BOOKINGS, json=slot(10), headers={**tokens["alice"], "Idempotency-Key": "k"})
    b = client.post(BOOKINGS, json=slot(12), headers={**tokens["bob"], "Idempotency-Key": "k"})
    assert a.status_code == b.status_code == 201
    assert a.get_json()["id"] != b.get_json()["id"]


def test_delete_with_an_idempotency_key_repeats_its_200(client, tokens):
    booking = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"]).get_json()
    headers = {**tokens["alice"], "Idempotency-Key": "cancel-1"}
    url = f"{BOOKINGS}/{booking['id']}"
    first = client.delete(url, headers=headers)
    again = client.delete(url, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.get_json() == first.get_json()


def test_a_bad_idempotency_key_is_422(client, tokens):
    headers = {**tokens["alice"], "Idempotency-Key": "x" * 201}
    response = client.post(BOOKINGS, json=slot(10), headers=headers)
    assert response.status_code == 422
    assert day_bookings(client, tokens["alice"]) == []


# -- the 202 path --------------------------------------------------------------------------

def test_without_a_worker_202_then_the_status_url_reports_the_outcome(
        web_settings, tokens, start_worker):
    settings = web_settings.model_copy(update={"reply_timeout_ms": 100})
    client = create_app(settings).test_client()
    response = client.post(BOOKINGS, json=slot(10), headers=tokens["alice"])
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"command_id", "status_url"}
    assert body["status_url"] == f"/api/v1/commands/{body['command_id']}"
    status = client.get(body["status_url"], headers=tokens["alice"])
    assert status.get_json() == {"command_id": body["command_id"], "status": "pending"}

    start_worker(settings)
    status = settled(client, body["status_url"], tokens["alice"])
    assert status["status"] == "accepted"
    assert status["booking"]["start"] == "2030-05-04T10:00:00+00:00"
    assert "error" not in status


def test_a_rejected_command_reports_its_error(web_settings, tokens, start_worker):
    settings = web_settings.model_copy(update={"reply_timeout_ms": 100})
    client = create_app(settings).test_client()
    pending = [client.post(BOOKINGS, json=slot(10), headers=tokens[name]).get_json()
               for name in ("alice", "bob")]
    start_worker(settings)
    statuses = [settled(client, body["status_url"], tokens[name])
                for body, name in zip(pending, ("alice", "bob"))]
    assert [s["status"] for s in statuses] == ["accepted", "rejected"]  # stream order
    assert statuses[1]["error"]["code"] == "overlap"
    assert statuses[1]["error"]["details"]["conflicts"] == [statuses[0]["booking"]]
    assert "booking" not in statuses[1]


def test_unknown_or_malformed_command_is_404(client, tokens):
    for command_id in ("main.20300504.0123456789abcdef", "garbage"):
        response = client.get(f"/api/v1/commands/{command_id}", headers=tokens["alice"])
        assert response.status_code == 404 and error_code(response) == "not_found"


# -- faults at the door --------------------------------------------------------------------

def test_a_full_backlog_is_503_with_retry_after(web_settings, tokens):
    settings = web_settings.model_copy(update={"reply_timeout_ms": 50, "backlog_limit": 2})
    client = create_app(settings).test_client()  # no worker: commands stay queued
    statuses = [client.post(BOOKINGS, json=slot(h), headers=tokens["alice"]).status_code
                for h in (8, 9, 10)]
    assert statuses == [202, 202, 503]
    response = client.post(BOOKINGS, json=slot(11), headers=tokens["alice"])
    assert response.status_code == 503 and error_code(response) == "backlog_full"
    assert response.headers["Retry-After"] == "1"


def test_rate_limit_per_token_is_429_with_retry_after(web_settings, tokens, start_worker):
    client = create_app(web_settings.model_copy(update={"rate_limit": "3/minute"})).test_client()
    statuses = [client.get("/api/v1/calendars", headers=tokens["alice"]).status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/calendars", headers=tokens["alice"])
    assert error_code(response) == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert client.get("/api/v1/calendars", headers=tokens["bob"]).status_code == 200


@pytest.mark.parametrize("method,path,body", [
    ("get", "/api/v1/calendars", None),
    ("get", "/api/v1/calendars/main/days/2030-05-04", None),
    ("post", BOOKINGS, slot(10)),
    ("delete", f"{BOOKINGS}/20300504.0123456789abcdef", None),
    ("get", "/api/v1/commands/main.20300504.0123456789abcdef", None),
])
def test_redis_unreachable_is_a_quick_503(method, path, body):
    settings = make_settings(redis_url="redis://127.0.0.1:1/0", reply_timeout_ms=5000)
    client = create_app(settings).test_client()
    headers = {"Authorization": "Bearer slk_0123456789abcdef." + "A" * 43}
    started = time.monotonic()
    response = getattr(client, method)(path, json=body, headers=headers)
    assert response.status_code == 503
    assert error_code(response) == "unavailable"
    assert time.monotonic() - started < 2
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_unknown_api_path_and_method_use_the_error_format(client, tokens):
    response = client.get("/api/v1/nothing", headers=tokens["alice"])
    assert response.status_code == 404 and error_code(response) == "not_found"
    response = client.put(BOOKINGS, json={}, headers=tokens["alice"])
    assert response.status_code == 405 and error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


# -- OpenAPI -------------------------------------------------------------------------------

def test_openapi_document_is_built_from_the_models(client):
    from slotlock.web.schemas import BookingRequest

    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/v1/calendars", "/api/v1/calendars/{calendar}/days/{date}",
        "/api/v1/calendars/{calendar}/bookings",
        "/api/v1/calendars/{calendar}/bookings/{booking_id}", "/api/v1/commands/{command_id}",
        "/api/v1/admin/findings",
        "/healthz", "/readyz",
    }
    schemas = doc["components"]["schemas"]
    assert schemas["BookingRequest"]["properties"] == \
        BookingRequest.model_json_schema()["properties"]
    post = doc["paths"]["/api/v1/calendars/{calendar}/bookings"]["post"]
    assert set(post["responses"]) == {"201", "202", "400", "401", "404", "409", "413", "422",
                                      "429", "503"}
    refs = str(doc).count("#/components/schemas/")
    assert refs > 10 and all(f"#/components/schemas/{n}" in str(doc) for n in schemas)


# -- admin ---------------------------------------------------------------------------------

@pytest.mark.audit_findings_expected  # it plants a finding
def test_audit_findings_are_visible_to_admins_only(client, tokens, real_redis):
    import json as _json

    from slotlock.days.keys import DayKeys
    from slotlock.workers.audit import audit_and_record

    response = client.post(BOOKINGS, json=slot(9), headers=tokens["alice"])
    assert response.status_code == 201
    assert client.get("/api/v1/admin/findings", headers=tokens["root"]).get_json() == {"days": []}
    # corrupt the committed state behind the worker's back, then audit the day
    keys = DayKeys("main:2030-05-04")
    bookings = _json.loads(real_redis.hget(keys.state, "bookings"))
    twin = dict(bookings[0], id="20300504.ffffffffffffffff")
    real_redis.hset(keys.state, "bookings", _json.dumps([*bookings, twin]))
    audit_and_record(real_redis, "main:2030-05-04")
    assert client.get("/api/v1/admin/findings", headers=tokens["alice"]).status_code == 403
    days = client.get("/api/v1/admin/findings", headers=tokens["root"]).get_json()["days"]
    assert [d["day"] for d in days] == ["main:2030-05-04"]
    assert {f["code"] for f in days[0]["findings"]} >= {"overlap"}
