"""The web process: ``create_app`` builds a Flask app; blueprints add the API (and, later,
the HTML views). Run under gunicorn: ``gunicorn 'slotlock.web:create_app()'``."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_limiter import HeaderNames, Limiter
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..config import Settings
from . import api, errors, health
from .auth import rate_limit_key
from .services import Services

LIMITER_RETRY_AFTER = "X-RateLimit-Retry-After"


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Defaults, then the environment (``Settings()``), then ``test_config``."""
    settings = settings or Settings()
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
    errors.register(app)
    _rate_limits(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    return app


def _rate_limits(app: Flask, settings: Settings) -> Limiter:
    """Per token, counted in Redis so that every gunicorn process shares the count.

    If Redis is unreachable the limiter lets the request through (``swallow_errors``)
    and the view answers 503 itself; a limiter must never turn an outage into a 500.
    """
    timeout = settings.redis_timeout_ms / 1000

    # Flask-Limiter puts Retry-After on every response (and would overwrite the one of a
    # 503); it writes its own header name instead, copied to Retry-After on a 429 only.
    # Registered before the limiter's own hook, so it runs after it.
    @app.after_request
    def _retry_after_on_429(response):
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = response.headers.get(LIMITER_RETRY_AFTER, "1")
        return response

    limiter = Limiter(
        key_func=rate_limit_key,
        storage_uri=settings.redis_url,
        storage_options={"socket_timeout": timeout, "socket_connect_timeout": min(timeout, 1.0),
                         "retry": Retry(NoBackoff(), 0)},
        strategy="fixed-window",
        headers_enabled=True,
        swallow_errors=True,
        key_prefix="sl:ratelimit",
        header_name_mapping={HeaderNames.RETRY_AFTER: LIMITER_RETRY_AFTER},
    )
    limiter.limit(settings.rate_limit)(api.bp)
    limiter.init_app(app)
    app.extensions["slotlock.limiter"] = limiter
    return limiter
