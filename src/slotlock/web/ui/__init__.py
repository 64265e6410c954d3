"""The form-based web UI: sign in, see a day, book, cancel. Works without JavaScript.

``bp`` is only the URL table's owner; the views live in ``views.py``, the forms in
``forms.py``, the grid of a day in ``grid.py``, cookies/CSRF/headers in ``security.py``.
Like the JSON API, the views talk to ``slotlock.client.Client`` and the users module,
never to Redis keys.
"""

from __future__ import annotations

from flask import Flask

from ...config import Settings
from ..auth import client_address_key, sign_in_user_key
from . import security, views
from .auth import ui_user_key
from .views import bp


def init_app(app: Flask, settings: Settings, *, exempt=()) -> None:
    """Register the UI on ``app``; ``exempt`` are the blueprints that need no CSRF token."""
    security.init_app(app, production=settings.env == "production", exempt=exempt)
    app.register_blueprint(bp)
    limiter = app.extensions.get("slotlock.limiter")
    if limiter is not None:
        # Password guesses: per client address (every POST), and per user name typed (only
        # the failed ones, so an owner who signs in is not slowed). The Authorization
        # header plays no part here. argon2 makes each guess slow; these make them few.
        view = limiter.limit(settings.signin_rate_limit, key_func=client_address_key,
                             methods=["POST"])(views.sign_in)
        view = limiter.limit(settings.signin_user_rate_limit, key_func=sign_in_user_key,
                             methods=["POST"], deduct_when=lambda r: r.status_code == 401)(view)
        app.view_functions["ui.sign_in"] = view
        # Bookings and cancels from the forms count per signed-in user, like API requests
        # per token (SLOTLOCK_RATE_LIMIT): every command is stored, so none is unlimited.
        for endpoint, func in (("ui.book", views.book), ("ui.cancel", views.cancel)):
            app.view_functions[endpoint] = limiter.limit(
                settings.rate_limit, key_func=ui_user_key, methods=["POST"])(func)


__all__ = ["bp", "init_app"]
