"""create_app: the session key every web process must share."""

from slotlock.config import Settings
from slotlock.days.keys import DEV_SECRET_KEY
from slotlock.web import create_app


def test_without_secret_key_all_web_processes_share_one_development_key(redis_server,
                                                                         real_redis):
    first = create_app(Settings(redis_url=redis_server.url))  # as two gunicorn processes
    second = create_app(Settings(redis_url=redis_server.url))
    assert first.config["SECRET_KEY"] == second.config["SECRET_KEY"]
    assert real_redis.get(DEV_SECRET_KEY) == first.config["SECRET_KEY"]


def test_a_configured_secret_key_is_used_as_is(redis_server, real_redis):
    app = create_app(Settings(redis_url=redis_server.url, secret_key="configured"))
    assert app.config["SECRET_KEY"] == "configured"
    assert real_redis.get(DEV_SECRET_KEY) is None


def test_without_redis_the_key_stays_per_process():
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert len(app.config["SECRET_KEY"]) == 64
