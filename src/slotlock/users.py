"""Users and their API tokens, in Redis.

A token reads ``slk_<id>.<secret>``: the id (8 random bytes) finds the record, the
secret (32 random bytes) proves it. Only the sha256 of the secret is stored and it
is compared with ``hmac.compare_digest``, so neither a Redis dump nor response
timing reveals a usable token. A plain hash is enough for a high-entropy secret;
passwords (for the web UI) are low-entropy, so they get argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from .days.keys import USERS, token_key, user_key

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "slk_"

_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class User:
    name: str
    admin: bool = False


TOKEN = re.compile(r"^slk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Users:
    def __init__(self, client: redis.Redis):
        self.client = client

    def get(self, name: str) -> User | None:
        data = self.client.hgetall(user_key(name))
        if not data:
            return None
        return User(data["name"], data.get("admin") == "1")

    def add(self, name: str, *, admin: bool = False, password: str | None = None) -> User:
        """Create user ``name``, or change its admin flag (and password, when given)."""
        if not USER_NAME.match(name):
            raise ValueError(f"user name {name!r} must be 1-64 characters of letters, digits, "
                             "'_', '.', '@' and '-', starting with a letter or digit")
        fields = {"name": name, "admin": "1" if admin else "0"}
        if password is not None:
            if not password:
                raise ValueError("the password must not be empty")
            fields["password"] = _hasher.hash(password)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(user_key(name), "created_at", str(int(time.time())))
            pipe.hset(user_key(name), mapping=fields)
            pipe.sadd(USERS, name)
            pipe.execute()
        return User(name, admin)

    def issue_token(self, name: str) -> str:
        """A fresh API token for an existing user; the token itself is not stored."""
        if self.get(name) is None:
            raise KeyError(name)
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        self.client.hset(token_key(token_id), mapping={"user": name, "hash": hash_secret(secret)})
        return f"{TOKEN_PREFIX}{token_id}.{secret}"

    def authenticate(self, token: str) -> User | None:
        match = TOKEN.match(token or "")
        if not match:
            return None
        token_id, secret = match.groups()
        record = self.client.hgetall(token_key(token_id))
        if not record or not hmac.compare_digest(record["hash"], hash_secret(secret)):
            return None
        return self.get(record["user"])

    def revoke(self, token: str) -> bool:
        match = TOKEN.match(token or "")
        return bool(match and self.client.delete(token_key(match.group(1))))

    def check_password(self, name: str, password: str) -> User | None:
        stored = self.client.hget(user_key(name), "password")
        if not stored:
            _hasher.hash(password)  # same cost whether or not the user exists
            return None
        try:
            _hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        return self.get(name)
