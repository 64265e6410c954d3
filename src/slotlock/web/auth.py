"""Bearer tokens for the JSON API; the user of the request lives in ``flask.g.user``."""

from __future__ import annotations

from flask import current_app, g, request

from ..users import TOKEN, User
from .errors import ApiError


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate() -> User:
    """Raise 401 unless the request carries the token of a known user."""
    token = bearer_token()
    if token is None:
        raise ApiError(401, "unauthorized", "send 'Authorization: Bearer <token>' "
                                            "(create one with: slotlock user add NAME)")
    user = current_app.extensions["slotlock"].users.authenticate(token)
    if user is None:
        raise ApiError(401, "unauthorized", "unknown or revoked token")
    g.user = user
    return user


def current_user() -> User:
    return g.user


def rate_limit_key() -> str:
    """Rate limits count per token (its public id part), else per client address."""
    match = TOKEN.match(bearer_token() or "")
    if match:
        return f"token:{match.group(1)}"
    return f"addr:{request.remote_addr or '-'}"
