"""Rate limits key on what is verified: the client address, the user name typed, a token
once checked. A made-up bearer token, a forged X-Forwarded-For never buy a fresh allowance."""

from __future__ import annotations

import threading
import time

from tests.security.conftest import forged_token, sign_in

ADDR = {"REMOTE_ADDR": "198.51.100.7"}


def test_forged_bearer_tokens_do_not_reset_the_sign_in_limit(make_app):
    client = make_app(signin_rate_limit="3/minute").test_client()
    codes = [sign_in(client, "alice", f"guess-{i}", environ_base=ADDR,
                     headers={"Authorization": f"Bearer {forged_token()}"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    # ... and the limit is the address's: the right password is refused too until it resets.
    assert sign_in(client, "alice", "alice-pw-1", environ_base=ADDR).status_code == 429


def test_guesses_on_one_account_from_many_addresses_are_limited_per_account(make_app):
    client = make_app(signin_user_rate_limit="3/hour").test_client()
    codes = [sign_in(client, "alice", f"guess-{i}",
                     environ_base={"REMOTE_ADDR": f"203.0.113.{i}"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    # Another account is not locked by it; a successful sign-in never counts.
    other = {"REMOTE_ADDR": "203.0.113.99"}
    assert [sign_in(client, "bob", "bob-pw-2", environ_base=other).status_code
            for _ in range(4)] == [303] * 4


def test_api_requests_with_made_up_tokens_count_per_address(make_app):
    client = make_app(anonymous_rate_limit="3/minute").test_client()
    codes = [client.get("/api/v1/calendars", environ_base=ADDR,
                        headers={"Authorization": f"Bearer {forged_token()}"}).status_code
             for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]


def test_a_verified_token_has_its_own_allowance_and_uses_it_alone(make_app, users):
    token = users.issue_token("alice")
    client = make_app(rate_limit="3/minute", anonymous_rate_limit="2/minute").test_client()
    for _ in range(3):  # the anonymous limit of the same address does not touch it
        client.get("/api/v1/calendars", environ_base=ADDR,
                   headers={"Authorization": f"Bearer {forged_token()}"})
    codes = [client.get("/api/v1/calendars", environ_base=ADDR,
                        headers={"Authorization": f"Bearer {token}"}).status_code
             for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_forged_x_forwarded_for_from_an_untrusted_peer_does_not_change_the_key(make_app):
    client = make_app(signin_rate_limit="3/minute").test_client()  # no trusted proxy
    codes = [sign_in(client, "alice", "guess", environ_base=ADDR,
                     headers={"X-Forwarded-For": f"192.0.2.{i}"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]


def test_behind_one_trusted_proxy_the_last_hop_is_the_client(make_app):
    client = make_app(signin_rate_limit="2/minute", trusted_proxies=1).test_client()
    proxy = {"REMOTE_ADDR": "10.0.0.2"}

    def attempt(forwarded_for):
        return sign_in(client, "alice", "guess", environ_base=proxy,
                       headers={"X-Forwarded-For": forwarded_for}).status_code

    # The client prepends forged hops; the proxy appends the address it saw.
    assert [attempt(f"192.0.2.{i}, 203.0.113.5") for i in range(3)] == [401, 401, 429]
    assert attempt("203.0.113.6") == 401  # another real client has its own allowance


def test_https_is_seen_through_a_trusted_proxy_only(make_app):
    headers = {"X-Forwarded-Proto": "https"}
    direct = make_app(env="development").test_client().get("/signin", headers=headers)
    assert "Strict-Transport-Security" not in direct.headers
    proxied = make_app(env="development", trusted_proxies=1).test_client().get(
        "/signin", headers=headers)
    assert proxied.headers["Strict-Transport-Security"].startswith("max-age=")


def test_password_hashes_are_capped_per_process_and_over_the_cap_answer_503_at_once(make_app):
    app = make_app(max_concurrent_hashes=1)
    users = app.extensions["slotlock"].users
    hold = threading.Event()
    original = users._verify

    def slow_verify(name, password):
        hold.wait(10)
        return original(name, password)

    users._verify = slow_verify
    first = threading.Thread(target=sign_in, args=(app.test_client(), "alice", "x"))
    first.start()
    try:
        time.sleep(0.2)  # the first sign-in holds the only hash slot
        started = time.monotonic()
        response = sign_in(app.test_client(), "bob", "bob-pw-2")
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        assert time.monotonic() - started < 0.5
    finally:
        hold.set()
        first.join(10)
    assert sign_in(app.test_client(), "bob", "bob-pw-2").status_code == 303
