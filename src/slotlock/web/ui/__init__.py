"""The form-based web UI: sign in, see a day, book, cancel. Works without JavaScript.

``bp`` is only the URL table's owner; the views live in ``views.py``, the forms in
``forms.py``, the grid of a day in ``grid.py``, cookies/CSRF/headers in ``security.py``.
Like the JSON API, the views talk to ``slotlock.client.Client`` and the users module,
never to Redis keys.
"""

from __future__ import annotations

from flask import Flask

from ...config import Settings
from . import security, views
from .views import bp

# Password guesses per client address (argon2 makes each one slow; this makes them few).
SIGN_IN_LIMIT = "10/minute"


def init_app(app: Flask, settings: Settings, *, exempt=()) -> None:
    """Register the UI on ``app``; ``exempt`` are the blueprints that need no CSRF token."""
    security.init_app(app, production=settings.env == "production", exempt=exempt)
    app.register_blueprint(bp)
    limiter = app.extensions.get("slotlock.limiter")
    if limiter is not None:
        app.view_functions["ui.sign_in"] = limiter.limit(SIGN_IN_LIMIT, methods=["POST"])(
            views.sign_in)


__all__ = ["bp", "init_app"]
