"""Production is the default: a strong SECRET_KEY or no start; no session key in Redis;
settings errors and CLI output never show a credential."""

from __future__ import annotations

import stat

import pytest
import redis
from click.testing import CliRunner
from pydantic import ValidationError

from slotlock.cli import main
from slotlock.config import Settings, redacted_url
from slotlock.days.keys import DEV_SECRET_KEY
from slotlock.embedded import RedisServer
from slotlock.web import create_app

STRONG = "k" * 32


def settings(**kw) -> Settings:
    return Settings(**{"redis_url": "redis://127.0.0.1:1/0", **kw})


def test_the_default_environment_is_production(monkeypatch):
    monkeypatch.delenv("SLOTLOCK_ENV", raising=False)
    assert Settings(secret_key=STRONG).env == "production"


@pytest.mark.parametrize("key", [None, "", "short", "k" * 31])
def test_production_refuses_to_start_without_a_strong_secret_key(key):
    with pytest.raises(ValidationError, match="SECRET_KEY of at least 32 characters"):
        settings(env="production", secret_key=key)


def test_only_production_and_development_are_environments():
    for bad in ("prod", "staging", "Production", ""):
        with pytest.raises(ValidationError, match="'production' or 'development'"):
            settings(env=bad, secret_key=STRONG)


def test_a_bad_setting_is_named_without_its_value():
    with pytest.raises(ValidationError) as caught:
        settings(env="development", port="hunter2-is-my-password")
    assert "port" in str(caught.value).lower()
    assert "hunter2" not in str(caught.value)


def test_production_keeps_no_session_key_in_redis(redis_server, real_redis):
    app = create_app(Settings(redis_url=redis_server.url, env="production", secret_key=STRONG))
    assert app.config["SECRET_KEY"] == STRONG and app.config["SESSION_COOKIE_SECURE"]
    assert real_redis.get(DEV_SECRET_KEY) is None


def test_the_cli_refuses_production_without_a_key_clearly(monkeypatch):
    monkeypatch.setenv("SLOTLOCK_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 1 and "SECRET_KEY of at least 32 characters" in result.output


def test_redis_passwords_are_never_printed():
    url = "redis://:s3cr3t-pw@127.0.0.1:1/0"
    assert "s3cr3t" not in redacted_url(url) and "127.0.0.1:1" in redacted_url(url)
    assert redacted_url("rediss://user:s3cr3t-pw@h.example:6380/2") == "rediss://***@h.example:6380/2"
    result = CliRunner().invoke(main, ["status"], env={"REDIS_URL": url})
    assert result.exit_code == 1 and "unreachable" in result.output
    assert "s3cr3t" not in result.output


def test_slotlock_up_leaves_a_redis_it_did_not_start_alone(redis_server, real_redis):
    result = CliRunner().invoke(main, ["up"], env={"REDIS_URL": redis_server.url})
    assert result.exit_code == 1 and "--reuse-redis" in result.output
    assert real_redis.keys("sl:{user:*") == []


def test_the_embedded_redis_wants_its_password_and_keeps_its_data_private(tmp_path):
    with RedisServer(tmp_path / "data", password="pw-only-we-know") as server:
        assert redis.Redis.from_url(server.url).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port, socket_timeout=2).ping()
        assert "pw-only-we-know" not in " ".join(server.process.args)  # not visible in ps
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
