"""Users, tokens and passwords in Redis; ``slotlock user add`` and ``slotlock up``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import redis
import requests
from click.testing import CliRunner

from slotlock.cli import main
from slotlock.days.keys import token_key, user_key
from slotlock.embedded import free_port
from slotlock.users import Users


def test_tokens_are_stored_only_as_hashes_and_authenticate(real_redis):
    users = Users(real_redis)
    users.add("alice")
    token = users.issue_token("alice")
    token_id, secret = re.match(r"^slk_([0-9a-f]{16})\.(.+)$", token).groups()
    dump = str({k: real_redis.dump(k) for k in real_redis.keys("*")})
    assert secret not in dump and token not in dump
    assert real_redis.hget(token_key(token_id), "user") == "alice"
    assert users.authenticate(token).name == "alice"
    assert users.authenticate(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert users.authenticate("") is None


def test_passwords_are_argon2_hashes(real_redis):
    users = Users(real_redis)
    users.add("bob", password="correct horse")
    stored = real_redis.hget(user_key("bob"), "password")
    assert stored.startswith("$argon2") and "correct horse" not in stored
    assert users.check_password("bob", "correct horse").name == "bob"
    assert users.check_password("bob", "wrong") is None
    assert users.check_password("nobody", "x") is None


def test_bad_user_names_are_refused(real_redis):
    with pytest.raises(ValueError):
        Users(real_redis).add("a:b")


def test_user_add_prints_the_token_last_and_reads_the_password(real_redis, redis_server):
    result = CliRunner().invoke(main, ["user", "add", "carol", "--admin", "--password-stdin"],
                                input="s3cret\n", env={"REDIS_URL": redis_server.url})
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    users = Users(real_redis)
    user = users.authenticate(token)
    assert user.name == "carol" and user.admin
    assert users.check_password("carol", "s3cret")


def test_user_add_without_redis_fails_cleanly():
    result = CliRunner().invoke(main, ["user", "add", "dave"],
                                env={"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 1 and "unreachable" in result.output


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.e2e
def test_slotlock_up_starts_an_embedded_redis_serves_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", "PORT": str(port)}
    up = subprocess.Popen([sys.executable, "-m", "slotlock", "up"], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, "slotlock up exited early:\n" + "".join(lines)
            lines.append(line)
            if line.startswith("  curl -s http"):
                break
        out = "".join(lines)
        token = re.search(r"(slk_\S+)", out).group(1)
        # the embedded Redis wants a password, which is never printed
        embedded = re.search(r"embedded server at redis://\*\*\*@127\.0\.0\.1:(\d+)/0", out)
        assert embedded, out
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=int(embedded.group(1)), socket_timeout=2).ping()
        pids = [int(p) for p in re.findall(r"pid (\d+)", out)]
        assert len(pids) >= 3  # redis, web, worker
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}/api/v1/calendars/main/bookings"
        day = re.search(r'"start": "(\d{4}-\d{2}-\d{2})T', out).group(1)  # as printed
        body = {"start": f"{day}T10:00", "end": f"{day}T10:30", "title": "up"}
        response = requests.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        assert (tmp_path / ".slotlock" / "redis" / "appendonlydir").is_dir()
        # the printed password signs in to the web UI, and the session holds on every
        # request, whichever of the two gunicorn processes answers it
        password = re.search(r"sign in as 'demo' with password (\S+)", out).group(1)
        browser = requests.Session()
        page = browser.get(f"http://127.0.0.1:{port}/signin", timeout=10).text
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        signed_in = browser.post(f"http://127.0.0.1:{port}/signin", timeout=10, data={
            "csrf_token": csrf, "username": "demo", "password": password})
        assert signed_in.status_code == 200 and "Signed in as" in signed_in.text
        for _ in range(6):
            day = browser.get(f"http://127.0.0.1:{port}/calendars/main/days/2030-05-04",
                              timeout=10)
            assert day.status_code == 200 and "Signed in as" in day.text, day.url
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(30)
        except subprocess.TimeoutExpired:
            up.kill()
            raise
    assert up.returncode == 0
    assert "stopped." in up.stdout.read()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
