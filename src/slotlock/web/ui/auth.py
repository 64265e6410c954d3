"""Who is signed in: the user name and the user's session epoch live in the signed session
cookie; the user record (admin flag, epoch) is read again on every request, so a removed
user, or one whose password changed, is out at once."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, request, session

from ...users import User


def users():
    return current_app.extensions["slotlock"].users


def load_user() -> User | None:
    name = session.get("user")
    user = users().get(name) if isinstance(name, str) else None
    if user is not None and session.get("epoch") != user.session:
        user = None  # signed in before a password change, or before a removal
    if user is None and name is not None:
        session.clear()
    g.ui_user = user
    return user


def sign_in(name: str, password: str) -> User | None:
    """The user, or None for a wrong name or password; HashCapacity when too busy."""
    user = users().check_password(name, password)
    if user is not None:
        session.clear()  # nothing from before sign-in survives it (CSRF token included)
        session["user"] = user.name
        session["epoch"] = user.session
        session.permanent = True
    return user


def ui_user_key() -> str:
    """Rate-limit key of a UI form post: the signed-in user (the session cookie is signed,
    so it cannot be made up), else the client address."""
    name = session.get("user")
    if isinstance(name, str) and name:
        return f"ui-user:{name}"
    return f"addr:{request.remote_addr or '-'}"


def sign_out() -> None:
    session.clear()


def current() -> User:
    return g.ui_user


def safe_next(target: str | None) -> str | None:
    """Only a path on this site: never ``//host`` or ``https://host`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None
