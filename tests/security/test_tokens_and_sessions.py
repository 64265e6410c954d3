"""Tokens and sessions end when they should: revoked, expired, user removed, password
changed. Checks never raise on odd input. Command status is only for its actor."""

from __future__ import annotations

import time

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from slotlock.cli import main
from slotlock.days.keys import token_key, user_key, user_tokens_key
from slotlock.users import Users
from tests.security.conftest import PASSWORDS, forged_token, sign_in

DAY_URL = "/calendars/main/days/2030-05-04"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_a_revoked_token_stops_at_once(make_app, users):
    keep, drop = users.issue_token("alice"), users.issue_token("alice")
    client = make_app().test_client()
    assert client.get("/api/v1/calendars", headers=bearer(drop)).status_code == 200
    assert users.revoke(drop.split(".")[0])  # by id: slk_<id>
    assert client.get("/api/v1/calendars", headers=bearer(drop)).status_code == 401
    assert client.get("/api/v1/calendars", headers=bearer(keep)).status_code == 200


def test_an_expired_token_is_refused_and_redis_drops_it(make_app, users, real_redis):
    token = users.issue_token("alice", expires_in_s=3600)
    token_id = token[4:20]
    assert 0 < real_redis.ttl(token_key(token_id)) <= 3600
    client = make_app().test_client()
    assert client.get("/api/v1/calendars", headers=bearer(token)).status_code == 200
    real_redis.hset(token_key(token_id), "expires_at", str(int(time.time()) - 1))
    response = client.get("/api/v1/calendars", headers=bearer(token))
    assert response.status_code == 401 and "expired" in response.get_json()["error"]["message"]


def test_removing_a_user_ends_its_tokens_and_web_sessions_at_once(make_app, users, real_redis):
    token = users.issue_token("alice")
    app = make_app()
    browser = app.test_client()
    assert sign_in(browser, "alice", PASSWORDS["alice"]).status_code == 303
    assert browser.get(DAY_URL).status_code == 200
    assert users.remove("alice")
    assert app.test_client().get("/api/v1/calendars", headers=bearer(token)).status_code == 401
    assert browser.get(DAY_URL).status_code == 302  # back to the sign-in page
    assert real_redis.keys("sl:token:*") == []  # only alice had a token
    # A new user of the same name does not inherit the old session.
    users.add("alice", password="new-pw")
    assert browser.get(DAY_URL).status_code == 302


def test_a_password_change_ends_every_session_of_the_user(make_app, users):
    app = make_app()
    alice, bob = app.test_client(), app.test_client()
    sign_in(alice, "alice", PASSWORDS["alice"])
    sign_in(bob, "bob", PASSWORDS["bob"])
    users.add("alice", password="changed-pw")
    assert alice.get(DAY_URL).status_code == 302
    assert bob.get(DAY_URL).status_code == 200
    assert sign_in(alice, "alice", "changed-pw").status_code == 303
    assert alice.get(DAY_URL).status_code == 200


ODD = ["", " ", "slk_", "slk_zz.zz", forged_token() + "x", "slk_" + "a" * 16 + "." + "é" * 43,
       "\ud800", "\x00" * 50, "A" * 1_000_000, "Bearer " + forged_token(), None, 42, b"slk_"]


@pytest.mark.parametrize("value", ODD, ids=range(len(ODD)))
def test_verify_never_raises_on_odd_input(users, value):
    assert users.authenticate(value) is None
    assert users.check_password(value, "x") is None
    assert users.check_password("alice", value) is None


def test_odd_bearer_tokens_are_a_plain_401(make_app):
    client = make_app().test_client()
    for value in ("slk_" + "é" * 60, "x" * 10_000, forged_token()):
        response = client.get("/api/v1/calendars", headers={"Authorization": "Bearer " + value})
        assert response.status_code == 401


def test_a_hash_with_old_argon2_parameters_is_upgraded_on_sign_in(real_redis):
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1)
    Users(real_redis, hasher=weak).add("carol", password="pw-carol")
    old = real_redis.hget(user_key("carol"), "password")
    users = Users(real_redis)
    assert users.check_password("carol", "pw-carol").name == "carol"
    new = real_redis.hget(user_key("carol"), "password")
    assert new != old and not users.hasher.check_needs_rehash(new)
    assert users.check_password("carol", "pw-carol").name == "carol"


def test_command_status_is_only_for_its_actor_or_an_admin(make_app, users):
    client = make_app(reply_timeout_ms=0).test_client()  # no worker: stays pending
    tokens = {name: bearer(users.issue_token(name)) for name in PASSWORDS}
    body = {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30", "title": "private"}
    queued = client.post("/api/v1/calendars/main/bookings", json=body, headers=tokens["alice"])
    assert queued.status_code == 202
    url = queued.get_json()["status_url"]
    assert client.get(url, headers=tokens["alice"]).status_code == 200
    assert client.get(url, headers=tokens["root"]).status_code == 200
    other = client.get(url, headers=tokens["bob"])
    assert other.status_code == 404 and "private" not in other.get_data(as_text=True)


def test_command_status_in_the_web_ui_is_only_for_its_actor(make_app, users):
    app = make_app(reply_timeout_ms=0)
    api = app.test_client()
    body = {"start": "2030-05-04T10:00", "end": "2030-05-04T10:30", "title": "private"}
    token = bearer(users.issue_token("alice"))
    command_id = api.post("/api/v1/calendars/main/bookings", json=body,
                          headers=token).get_json()["command_id"]
    bob = app.test_client()
    sign_in(bob, "bob", PASSWORDS["bob"])
    assert bob.get(f"/commands/{command_id}").status_code == 404


def test_cli_token_list_revoke_and_user_remove(redis_server, users, real_redis):
    env = {"REDIS_URL": redis_server.url}
    run = CliRunner().invoke
    made = run(main, ["token", "add", "alice", "--expires-in", "30d"], env=env)
    assert made.exit_code == 0, made.output
    token = made.output.strip().splitlines()[-1]
    token_id = token.split(".")[0]
    listed = run(main, ["token", "list", "alice"], env=env)
    assert listed.exit_code == 0 and token_id in listed.output
    assert token.split(".")[1] not in listed.output  # never the secret
    assert run(main, ["token", "revoke", token_id], env=env).exit_code == 0
    assert users.authenticate(token) is None
    again = run(main, ["token", "revoke", token_id], env=env)
    assert again.exit_code == 1 and "no token" in again.output
    bad = run(main, ["user", "add", "dave", "--expires-in", "soon"], env=env)
    assert bad.exit_code == 2 and "not a positive duration" in bad.output
    assert run(main, ["user", "remove", "alice"], env=env).exit_code == 0
    assert users.get("alice") is None and not real_redis.exists(user_tokens_key("alice"))
    gone = run(main, ["user", "remove", "alice"], env=env)
    assert gone.exit_code == 1 and "no user" in gone.output


def test_a_remembered_token_sees_its_owners_admin_flag_change_at_once(make_app, users):
    """The web remembers a verified token's id and owner (web/tokens.py) but reads the
    owner's record on every request: taking away admin takes effect on the next request."""
    users.add("root", admin=True)
    token = users.issue_token("root")
    client = make_app().test_client()
    findings = "/api/v1/admin/findings"
    assert client.get(findings, headers=bearer(token)).status_code == 200
    users.add("root", admin=False)
    assert client.get(findings, headers=bearer(token)).status_code == 403


def test_remembered_tokens_are_bounded_and_a_forged_one_is_never_remembered(users, real_redis,
                                                                             monkeypatch):
    from slotlock.days.scripts import Scripts
    from slotlock.web import tokens

    monkeypatch.setattr(tokens, "MAX_REMEMBERED", 2)
    gate = tokens.TokenGate(users, Scripts(real_redis), "100/minute")
    issued = [users.issue_token("alice") for _ in range(3)]
    assert all(gate.check(t).user.name == "alice" for t in issued)
    assert list(gate._known) == issued[1:]  # the oldest went first
    assert gate.check(forged_token()).user is None
    assert gate.check(issued[1][:-1] + "x").user is None  # right id, wrong secret
    assert list(gate._known) == issued[1:]
