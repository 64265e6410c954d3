"""Session cookies, CSRF and response headers for the HTML side of the app.

* The session cookie is HttpOnly and SameSite=Lax always; it is Secure when
  ``SLOTLOCK_ENV=production`` (TLS usually ends at a proxy, so the app cannot see it)
  or when the request itself came over HTTPS.
* Every form of the UI carries a CSRF token (Flask-WTF); the JSON API and the health
  checks are exempt: they take bearer tokens, which a browser never sends by itself.
* Headers: a CSP that allows nothing but this origin (no inline script or style, no
  framing), nosniff, a strict referrer policy, and HSTS over HTTPS.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFProtect

CSP = ("default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SessionInterface(SecureCookieSessionInterface):
    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def init_app(app: Flask, *, production: bool, exempt=()) -> CSRFProtect:
    app.config["SESSION_COOKIE_SECURE"] = bool(app.config.get("SESSION_COOKIE_SECURE")) or production
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="slotlock_session",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # A token lives as long as the session: a day view left open for an hour still books.
        WTF_CSRF_TIME_LIMIT=None,
    )
    app.session_interface = SessionInterface()
    csrf = CSRFProtect(app)
    for blueprint in exempt:
        csrf.exempt(blueprint)

    @app.after_request
    def _security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.blueprint == "ui":
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return csrf
