"""The web process: ``create_app`` builds a Flask app; blueprints add the API (and, later,
the HTML views). Run under gunicorn: ``gunicorn 'slotlock.web:create_app()'``."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from flask import Flask, current_app, request
from flask_limiter import Limiter
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.middleware.proxy_fix import ProxyFix

from ..config import Settings
from ..days.keys import DEV_SECRET_KEY, RATE_LIMIT_PREFIX
from ..errors import UnsuitableRedis
from ..redis_conn import check_server, connect, limiter_storage, use_cluster
from . import api, errors, health, ui
from .auth import client_address_key
from .fastlane import FastLane
from .services import Services

log = logging.getLogger("slotlock.web")


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Defaults, then the environment (``Settings()``), then ``test_config``."""
    settings = settings or Settings()
    server_ok = _refuse_evicting_redis(settings)
    if settings.secret_key_generated and settings.env == "development":
        settings = settings.model_copy(update={"secret_key": _shared_dev_secret(settings)})
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    if test_config:
        app.config.update(test_config)
    app.json.sort_keys = False
    app.extensions["slotlock"] = Services(settings)
    app.extensions["slotlock"].server_ok = server_ok
    errors.register(app)
    _rate_limits(app, settings)
    app.before_request(_server_checked)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    ui.init_app(app, settings, exempt=(api.bp, health.bp))
    # Bookings by a token this process knows skip Flask's request cycle (web/fastlane.py).
    app.wsgi_app = FastLane(app, app.wsgi_app)
    if settings.trusted_proxies:
        # Only the last N hops of X-Forwarded-For/-Proto/-Host/-Port are believed: what a
        # client puts in front of them is ignored (see README, Security: behind a proxy).
        # Outermost, so that the fast lane sees the same client address and scheme as Flask.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_port=n)
    return app


def _refuse_evicting_redis(settings: Settings) -> bool:
    """A web process does not start on a Redis that may evict keys (``EvictingRedis``) or
    on a Redis Cluster (``ClusterUnsupported``). If Redis does not answer yet, the process
    starts and makes the check on its requests once Redis answers (``_server_checked``:
    503 until it passes); the lease workers check too and refuse to apply anything on such
    a Redis. Whether the check passed."""
    try:
        client = connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                         cluster=use_cluster(settings))
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("Redis unreachable at start-up (%s); requests and /readyz check it "
                    "(eviction policy, cluster mode) once it answers", exc)
        return False
    try:
        check_server(client, settings)
        return True
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("Redis unreachable at start-up (%s); requests and /readyz check it "
                    "(eviction policy, cluster mode) once it answers", exc)
        return False
    finally:
        client.close()


def _server_checked() -> None:
    """A process that started while Redis was down checks the server on its first requests
    (``Services.server_checked``): on an unsuitable one it answers 503 to everything but
    the health checks (``/readyz`` says why), not only when a readiness probe asks."""
    services = current_app.extensions["slotlock"]
    if services.server_ok or request.blueprint == health.bp.name:
        return
    try:
        services.server_checked()
    except UnsuitableRedis as exc:
        raise ServiceUnavailable(f"this server's Redis is unsuitable: {exc}") from exc
    except (redis.ConnectionError, redis.TimeoutError):
        pass  # the request finds out itself, and answers its usual 503
    except redis.RedisError as exc:  # e.g. an ACL refusal: the check cannot be made
        log.warning("could not check the Redis server: %s", exc)
        raise ServiceUnavailable("the data store could not be checked; retry shortly") from exc


def _seconds_to_reset(limiter: Limiter) -> int:
    try:
        limit = limiter.current_limit
        return max(1, int(limit.reset_at - time.time())) if limit else 1
    except (redis.ConnectionError, redis.TimeoutError):
        return 1


def _shared_dev_secret(settings: Settings) -> str:
    """Without SECRET_KEY (development only), every web process must still sign sessions
    with the same key, or a sign-in made by one gunicorn process is void in the next: the
    first process stores its random key in Redis and the others take it from there."""
    client = None
    try:
        client = connect(settings.redis_url, timeout_ms=settings.redis_timeout_ms,
                         cluster=use_cluster(settings))
        client.set(DEV_SECRET_KEY, settings.secret_key, nx=True, ex=30 * 86_400)
        return client.get(DEV_SECRET_KEY) or settings.secret_key
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("no SECRET_KEY and Redis unreachable (%s): sessions are valid in this "
                    "process only", exc)
        return settings.secret_key
    finally:
        if client is not None:
            client.close()


def _rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Counted in Redis so that every gunicorn process shares the count.

    Here: the web UI's limits (sign-in per address and per account, UI posts per user).
    The API counts its own requests (``web/tokens.py``): a verified token's against that
    token (``SLOTLOCK_RATE_LIMIT``), any other against its client address
    (``SLOTLOCK_ANONYMOUS_RATE_LIMIT``): a made-up token never earns its own allowance.

    If Redis is unreachable the limiter lets the request through (``swallow_errors``)
    and the view answers 503 itself; a limiter must never turn an outage into a 500.
    """
    timeout = settings.redis_timeout_ms / 1000

    # The X-RateLimit-* headers on every response would cost two more Redis calls per
    # request (the window's stats); only a 429 gets its Retry-After, computed here.
    @app.after_request
    def _retry_after_on_429(response):
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(_seconds_to_reset(limiter))
        return response

    limiter = Limiter(
        key_func=client_address_key,
        **limiter_storage(settings, {"socket_timeout": timeout,
                                     "socket_connect_timeout": min(timeout, 1.0),
                                     "retry": Retry(NoBackoff(), 0)}),
        strategy="fixed-window",
        headers_enabled=False,
        swallow_errors=True,
        key_prefix=RATE_LIMIT_PREFIX,
    )
    # The API counts its requests itself (web/tokens.py): a verified token's in the round
    # trip that checks it (SLOTLOCK_RATE_LIMIT), any other against its client address
    # (SLOTLOCK_ANONYMOUS_RATE_LIMIT). Flask-Limiter's hooks stay off the API's path.
    limiter.exempt(api.bp)
    limiter.init_app(app)
    app.extensions["slotlock.limiter"] = limiter
    return limiter
