"""Issue 12, item 7: slotlock on a Redis as managed services offer it — TLS only
(``rediss://``) with a certificate from a private CA (a provider's self-signed one), and an
ACL user with a password instead of the default user, denied the ``@dangerous`` commands
but ``INFO`` (a common restricted profile; the policy check needs INFO, see
test_server_checks.py). Every process connects that way: the
Procfile's web line (and its Flask-Limiter counts), ``slotlock worker``, ``slotlock jobs``
(rq and its scheduler) and the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests

from slotlock.embedded import EmbeddedRedisError, RedisServer
from slotlock.web import create_app
from tests.conftest import make_settings
from tests.jobs_support import Receiver
from tests.procs import wait_for

from .http_stack import HttpStack, stop

pytestmark = pytest.mark.e2e
APP_USER, APP_PASSWORD = "slotlock-app", "app-pw-Zq8"


def make_certs(directory: Path) -> Path:
    """A CA of our own and a server certificate for 127.0.0.1 signed by it."""
    directory.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.crt", "-days", "2", "-subj", "/CN=slotlock test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "redis.key", "-out",
            "redis.csr", "-subj", "/CN=localhost")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "redis.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "redis.crt", "-days", "2", "-extfile", "san.ext")
    return directory


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("managed")
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make the test certificates")
    server = RedisServer(tmp / "redis", password="admin-pw", tls_dir=make_certs(tmp / "tls"))
    try:
        server.start()
    except EmbeddedRedisError as exc:
        if "TLS" not in str(exc):
            raise
        pytest.skip(f"{server.binary} was built without TLS: {str(exc)[-200:]}")
    admin = redis.Redis.from_url(server.url)
    admin.acl_setuser(APP_USER, enabled=True, passwords=[f"+{APP_PASSWORD}"], keys=["*"],
                      channels=["*"], commands=["+@all", "-@dangerous", "+info"], reset=True)
    admin.close()
    ca = quote(str(server.tls_dir / "ca.crt"), safe="/")
    app_url = (f"rediss://{APP_USER}:{APP_PASSWORD}@127.0.0.1:{server.port}/0"
               f"?ssl_ca_certs={ca}")
    yield server, app_url, tmp
    server.stop()


def test_there_is_no_plain_port_and_an_unknown_ca_is_refused(tls_redis):
    server, app_url, _ = tls_redis
    plain = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2,
                        username=APP_USER, password=APP_PASSWORD)
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    no_ca = redis.Redis.from_url(app_url.split("?")[0], socket_timeout=2)
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        no_ca.ping()


@pytest.mark.timeout(120)
def test_every_process_books_notifies_and_limits_over_tls_as_an_acl_user(tls_redis):
    server, app_url, tmp = tls_redis
    with Receiver() as receiver, HttpStack(tmp / "stack", redis=server,
                                           redis_url=app_url) as stack:
        put = subprocess.run([sys.executable, "-m", "slotlock", "calendar", "put", "main",
                              "--webhook-url", receiver.url], env=stack.env,
                             capture_output=True, text=True, timeout=60)
        assert put.returncode == 0, put.stderr
        jobs = subprocess.Popen([sys.executable, "-m", "slotlock", "jobs"], env=stack.env,
                                stdout=open(tmp / "jobs.log", "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            token = stack.token("ann")
            url = f"{stack.url}/api/v1/calendars/main/bookings"
            headers = {"Authorization": f"Bearer {token}"}
            first = requests.post(url, headers=headers, timeout=10, json={
                "start": "2031-04-01T09:00", "end": "2031-04-01T10:00", "title": "standup"})
            assert first.status_code == 201, first.text
            clash = requests.post(url, headers=headers, timeout=10, json={
                "start": "2031-04-01T09:30", "end": "2031-04-01T10:30", "title": "clash"})
            assert clash.status_code == 409, clash.text
            wait_for(lambda: any(e.get("booking", {}).get("title") == "standup"
                                 for e in receiver.events()), 30, 0.1,
                     f"the webhook through rq over TLS: {(tmp / 'jobs.log').read_text()[-2000:]}")
        finally:
            stop(jobs)
        status = subprocess.run([sys.executable, "-m", "slotlock", "status"], env=stack.env,
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "workers (1 alive)" in status.stdout, status.stderr
    for log in [tmp / "jobs.log", *(tmp / "stack").glob("*.log")]:
        text = log.read_text(errors="replace")
        assert "NOPERM" not in text and "no permissions" not in text, (log, text[-2000:])


def test_the_sign_in_limit_counts_over_tls(tls_redis):
    from slotlock.users import Users
    from slotlock.redis_conn import connect

    _, app_url, _ = tls_redis
    Users(connect(app_url)).add("bea", password="bea-pw-12345")
    app = create_app(make_settings(redis_url=app_url, signin_rate_limit="3/minute"),
                     {"WTF_CSRF_ENABLED": False})
    web = app.test_client()
    codes = [web.post("/signin", data={"username": "bea", "password": f"guess-{i}"},
                      environ_base={"REMOTE_ADDR": "198.51.100.9"}).status_code
             for i in range(5)]
    assert codes == [401, 401, 401, 429, 429]
