"""Bearer tokens for the JSON API; the user of the request lives in ``flask.g.user``.

Rate limits must never trust what a request merely claims: an API request counts
against its token only once the token is verified (``tokens.TokenGate``); every
other request, and every sign-in, counts against the client address
(``client_address_key``), which is the peer address unless ``SLOTLOCK_TRUSTED_PROXIES``
says how many proxies in front may set X-Forwarded-For (werkzeug's ProxyFix).
"""

from __future__ import annotations

from flask import current_app, g, request

from ..users import USER_NAME, User
from .errors import ApiError

_UNCHECKED = object()


def bearer_token() -> str | None:
    return parse_bearer(request.headers.get("Authorization", ""))


def parse_bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_user() -> User | None:
    """The user of the request's bearer token, checked once per request (cached in g);
    a verified token's request is counted against its rate limit in the same round trip
    (``tokens.TokenGate``)."""
    cached = g.get("token_user", _UNCHECKED)
    if cached is _UNCHECKED:
        token = bearer_token()
        cached, g.retry_after_s = None, 0
        if token is not None:
            checked = current_app.extensions["slotlock"].tokens.check(token)
            cached, g.retry_after_s = checked.user, checked.retry_after_s
        g.token_user = cached
    return cached


def authenticate() -> User:
    """Raise 401 unless the request carries the token of a known user, 429 if that token
    is over its rate limit (``SLOTLOCK_RATE_LIMIT``)."""
    if bearer_token() is None:
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' "
                                            "(create one with: slotlock user add NAME)")
    user = token_user()
    if user is None:
        raise ApiError(401, "unauthorized", "unknown, expired or revoked token")
    if g.retry_after_s > 0:
        raise ApiError(429, "rate_limited", "too many requests with this token: "
                       f"{current_app.extensions['slotlock'].settings.rate_limit}",
                       headers={"Retry-After": str(g.retry_after_s)})
    g.user = user
    return user


def current_user() -> User:
    return g.user


def client_address_key() -> str:
    return f"addr:{request.remote_addr or '-'}"


def sign_in_user_key() -> str:
    """Per user name typed into the sign-in form, whatever the address (per-account backoff)."""
    name = request.form.get("username", "")
    return f"signin-user:{name if USER_NAME.match(name) else '-'}"
