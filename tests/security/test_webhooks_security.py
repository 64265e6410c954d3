"""Attacks on webhooks: a shared signing key, SSRF, redirects, slow receivers, leaky logs.

Every refusal leaves the events in the outbox (nothing lost, nothing marked delivered).
Traffic stays on loopback: where a test needs a host to resolve to another address, the
resolver is replaced and any attempt to connect there fails the test.
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time

import fakeredis
import pytest
from click.testing import CliRunner

from slotlock.catalog import Catalog
from slotlock.cli import main
from slotlock.days.keys import DayKeys, calendar_key, delivered_key, webhook_secret_key
from slotlock.webhooks import Policy, WebhookRefused, check_url, redact, rotate_secret, secret_of
from slotlock.workers import delivery
from slotlock.workers.notify import SIGNATURE_HEADER, DeliveryFailed, Publisher, verify
from tests.conftest import make_settings
from tests.jobs_support import Receiver, history, put_calendar

PART = "main:2024-01-10"
KEYS = DayKeys(PART)
STRONG = "k" * 40
DEV = {"env": "development"}
PROD = {"env": "production", "secret_key": STRONG}


def events_waiting(settings, redis, url: str, *, secret: bool = True) -> list[str]:
    put_calendar(redis, webhook_url=url)
    if secret:
        rotate_secret(redis, "main")
    history(settings, redis)
    outbox = redis.lrange(KEYS.outbox, 0, -1)
    assert len(outbox) == 4
    return outbox


def assert_nothing_lost(redis, outbox: list[str]) -> None:
    assert redis.lrange(KEYS.outbox, 0, -1) == outbox
    for raw in outbox:
        assert not redis.exists(delivered_key(json.loads(raw)["event_id"]))


# -- the signing key ---------------------------------------------------------------------------

def test_events_are_signed_with_the_calendars_own_secret_never_with_secret_key(fake_redis):
    settings = make_settings(**DEV, secret_key=STRONG)
    with Receiver() as receiver:
        events_waiting(settings, fake_redis, receiver.url)
        secret = secret_of(fake_redis, "main")
        assert Publisher(fake_redis, settings).publish_day(PART).delivered == 4
    for headers, body in receiver.requests:
        assert verify(secret, headers[SIGNATURE_HEADER], body)
        assert not verify(STRONG, headers[SIGNATURE_HEADER], body)
    assert STRONG not in secret


def test_a_calendar_without_a_secret_gets_nothing_delivered_and_loses_nothing(fake_redis):
    settings = make_settings(**DEV, secret_key=STRONG)
    with Receiver() as receiver:
        outbox = events_waiting(settings, fake_redis, receiver.url, secret=False)
        with pytest.raises(DeliveryFailed, match="no webhook secret.*--rotate-webhook-secret"):
            Publisher(fake_redis, settings).publish_day(PART)
    assert receiver.requests == []
    assert_nothing_lost(fake_redis, outbox)


def test_the_old_global_webhook_secret_setting_is_refused(monkeypatch):
    monkeypatch.setenv("SLOTLOCK_WEBHOOK_SECRET", "shared-by-every-receiver")
    with pytest.raises(ValueError, match="SLOTLOCK_WEBHOOK_SECRET is no longer used"):
        make_settings(**DEV)


@pytest.fixture
def cli(redis_server, real_redis):
    runner = CliRunner()
    base = {"REDIS_URL": redis_server.url, "SECRET_KEY": STRONG, "SLOTLOCK_ENV": "production"}

    def run(*args: str, code: int = 0, **env: str):
        result = runner.invoke(main, list(args), env={**base, **env})
        assert result.exit_code == code, result.output
        return result

    return run


def test_calendar_put_makes_one_secret_per_calendar_shown_once_and_kept_out_of_the_calendar(
        cli, real_redis):
    first = cli("calendar", "put", "room-a", "--webhook-url", "https://a.example.com/h?t=tok1")
    second = cli("calendar", "put", "room-b", "--webhook-url", "https://b.example.com/h")
    secret_a = first.output.splitlines()[-1]
    secret_b = second.output.splitlines()[-1]
    assert secret_a.startswith("whsec_") and len(secret_a) > 40
    assert secret_a != secret_b != STRONG
    assert real_redis.get(webhook_secret_key("room-a")) == secret_a
    # not in the calendar JSON (what GET /api/v1/calendars is built from), nor its revisions
    for calendar in Catalog(real_redis).all():
        assert secret_a not in json.dumps(calendar.to_dict())
    assert secret_a not in real_redis.get(calendar_key("room-a"))
    assert "tok1" not in first.output  # the URL's query is not echoed either
    # the same URL again: no new secret, nothing shown
    again = cli("calendar", "put", "room-a", "--webhook-url", "https://a.example.com/h?t=tok1")
    assert "whsec_" not in again.output
    assert real_redis.get(webhook_secret_key("room-a")) == secret_a
    # rotation: a new secret, shown once; the old one is gone
    rotated = cli("calendar", "put", "room-a", "--rotate-webhook-secret")
    new = rotated.output.splitlines()[-1]
    assert new.startswith("whsec_") and new != secret_a
    assert real_redis.get(webhook_secret_key("room-a")) == new
    # another receiver gets another secret
    moved = cli("calendar", "put", "room-a", "--webhook-url", "https://c.example.com/h")
    assert moved.output.splitlines()[-1] not in (new, secret_a)
    # removing the URL removes the secret; rotating without a URL is an error
    cli("calendar", "put", "room-a", "--webhook-url", "")
    assert not real_redis.exists(webhook_secret_key("room-a"))
    refused = cli("calendar", "put", "room-a", "--rotate-webhook-secret", code=1)
    assert "no webhook URL" in refused.output


@pytest.mark.parametrize("url, reason", [
    ("http://hooks.example.com/h", "must use https"),
    ("ftp://hooks.example.com/h", "must start with https://"),
    ("https://127.0.0.1/h", "loopback"),
    ("https://localhost:8443/h", "loopback"),
    ("https://10.0.0.7/h", "private"),
    ("https://169.254.169.254/latest/meta-data", "link-local"),
    ("https://[::1]/h", "loopback"),
    ("https:///h", "no host"),
])
def test_calendar_put_refuses_a_webhook_url_it_would_never_call(cli, real_redis, url, reason):
    result = cli("calendar", "put", "main", "--webhook-url", url, code=1)
    assert reason in result.output
    assert not real_redis.exists(calendar_key("main"))
    assert not real_redis.exists(webhook_secret_key("main"))


def test_development_may_use_http_on_loopback(cli, real_redis):
    result = cli("calendar", "put", "main", "--webhook-url", "http://127.0.0.1:9/hook",
                 SLOTLOCK_ENV="development")
    assert result.output.splitlines()[-1].startswith("whsec_")


# -- where a delivery may connect --------------------------------------------------------------

FORBIDDEN = ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1",
             "169.254.169.254", "100.100.100.200", "0.0.0.0", "224.0.0.1", "::1", "fe80::1",
             "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "2002:7f00:1::1"]


@pytest.fixture
def no_connect(monkeypatch):
    """Fails the test if a delivery connects anywhere but loopback."""
    attempts: list[tuple] = []
    real = delivery.connect

    def guarded(address, timeout, options):
        attempts.append(address)
        if address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"the delivery tried to connect to {address}")
        return real(address, timeout, options)

    monkeypatch.setattr(delivery, "connect", guarded)
    return attempts


def resolving_to(monkeypatch, *addresses: str) -> None:
    def resolve(host, port):
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in addresses]

    monkeypatch.setattr(delivery, "resolve", resolve)


@pytest.mark.parametrize("address", FORBIDDEN)
def test_a_name_resolving_to_an_internal_address_is_refused_before_connecting(
        fake_redis, monkeypatch, no_connect, address):
    settings = make_settings(**PROD)
    outbox = events_waiting(settings, fake_redis, "https://hooks.example.com/h")
    resolving_to(monkeypatch, address)
    with pytest.raises(DeliveryFailed, match="resolves to"):
        Publisher(fake_redis, settings).publish_day(PART)
    assert no_connect == []
    assert_nothing_lost(fake_redis, outbox)


def test_one_internal_address_among_public_ones_refuses_the_whole_name(
        fake_redis, monkeypatch, no_connect):
    settings = make_settings(**PROD)
    outbox = events_waiting(settings, fake_redis, "https://hooks.example.com/h")
    resolving_to(monkeypatch, "93.184.216.34", "127.0.0.1")
    with pytest.raises(DeliveryFailed, match="127.0.0.1, a loopback address"):
        Publisher(fake_redis, settings).publish_day(PART)
    assert no_connect == []
    assert_nothing_lost(fake_redis, outbox)


def test_a_live_loopback_receiver_behind_a_public_name_gets_nothing_in_production(
        fake_redis, monkeypatch, no_connect):
    settings = make_settings(**PROD)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        outbox = events_waiting(settings, fake_redis, f"https://hooks.example.com:{port}/hook")
        resolving_to(monkeypatch, "127.0.0.1")  # DNS rebinding to the box itself
        with pytest.raises(DeliveryFailed, match="loopback"):
            Publisher(fake_redis, settings).publish_day(PART)
    assert receiver.requests == [] and no_connect == []
    assert_nothing_lost(fake_redis, outbox)


def test_plain_http_is_refused_outside_development_even_if_stored(fake_redis, no_connect):
    settings = make_settings(**PROD)
    with Receiver() as receiver:
        outbox = events_waiting(settings, fake_redis, receiver.url)  # stored before the rule
        with pytest.raises(DeliveryFailed, match="must use https"):
            Publisher(fake_redis, settings).publish_day(PART)
    assert receiver.requests == [] and no_connect == []
    assert_nothing_lost(fake_redis, outbox)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass_the_address_check(address):
    from slotlock.webhooks import address_refusal

    assert address_refusal(address, Policy.for_env("production")) is None


# -- redirects, slow receivers ------------------------------------------------------------------

class Redirector(Receiver):
    """Answers every POST with a redirect to ``target``."""

    def __init__(self, target: str, status: int = 307):
        super().__init__()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((dict(self.headers), b""))
                self.send_response(status)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server.RequestHandlerClass = Handler


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_nor_counted_as_delivered(fake_redis, status):
    settings = make_settings(**DEV)
    with Receiver() as target, Redirector(target.url, status) as redirector:
        outbox = events_waiting(settings, fake_redis, redirector.url)
        with pytest.raises(DeliveryFailed, match=f"HTTP {status}: redirects are not followed"):
            Publisher(fake_redis, settings).publish_day(PART)
        assert len(redirector.requests) == 1
        assert target.requests == []
    assert_nothing_lost(fake_redis, outbox)


class Dripper:
    """A receiver that answers one byte of its status line every 0.2 s (for at most 20 s)."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            deadline = time.monotonic() + 20
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


def test_a_receiver_dripping_its_answer_is_cut_off_at_one_overall_deadline(fake_redis):
    settings = make_settings(**DEV, webhook_timeout_s=1.0)
    with Dripper() as dripper:
        outbox = events_waiting(settings, fake_redis, dripper.url)
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="deadline of 1 s"):
            Publisher(fake_redis, settings).publish_day(PART)
        took = time.monotonic() - started
    assert took < 2.5, f"the delivery took {took:.1f} s for a 1 s deadline"
    assert_nothing_lost(fake_redis, outbox)


# -- logs ----------------------------------------------------------------------------------------

def test_webhook_urls_are_redacted_in_logs_and_errors(fake_redis, monkeypatch, caplog, no_connect):
    caplog.set_level(logging.DEBUG)
    settings = make_settings(**DEV)
    with Receiver() as receiver:
        port = receiver.server.server_address[1]
        url = f"http://alice:pa55word@127.0.0.1:{port}/hooks/T0K3N?sig=QUERYSECRET"
        events_waiting(settings, fake_redis, url)
        assert Publisher(fake_redis, settings).publish_day(PART).delivered == 4
    sent = {k.lower(): v for k, v in receiver.requests[0][0].items()}
    assert sent["authorization"].startswith("Basic ")  # the userinfo is still used
    prod, other = make_settings(**PROD), fakeredis.FakeRedis(decode_responses=True)
    events_waiting(prod, other, "https://bob:pa55word@hooks.example.com/T0K3N?q=QUERYSECRET")
    resolving_to(monkeypatch, "10.0.0.1")
    with pytest.raises(DeliveryFailed) as failed:
        Publisher(other, prod).publish_day(PART)
    logged = caplog.text + str(failed.value) + failed.value.url
    assert "delivered to http://127.0.0.1" in caplog.text
    for secret in ("pa55word", "alice", "T0K3N", "QUERYSECRET"):
        assert secret not in logged
    assert redact(url) == f"http://127.0.0.1:{port}/…"


def test_check_url_gives_the_reason():
    with pytest.raises(WebhookRefused, match="must use https"):
        check_url("http://hooks.example.com/", Policy.for_env("production"))
    assert check_url("https://hooks.example.com/x", Policy.for_env("production"))
