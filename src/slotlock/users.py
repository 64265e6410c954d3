"""Users and their API tokens, in Redis.

A token reads ``slk_<id>.<secret>``: the id (8 random bytes) finds the record, the
secret (32 random bytes) proves it. Only the sha256 of the secret is stored and it
is compared with ``hmac.compare_digest``, so neither a Redis dump nor response
timing reveals a usable token. A plain hash is enough for a high-entropy secret;
passwords (for the web UI) are low-entropy, so they get argon2.

A token may expire (``expires_at``, and the key's TTL so Redis drops it). Removing a
user deletes its record and every token at once. Web sessions carry the user's
``session`` epoch, a random value renewed on every password change and on removal:
a session whose epoch is not the user's current one is over.

``authenticate`` and ``check_password`` never raise on odd input (garbage, non-ASCII,
huge strings, lone surrogates): they answer None.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import legacy_keys
from .days.keys import USERS, legacy_user_keys, token_key, user_key, user_tokens_key

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "slk_"
TOKEN = re.compile(r"^slk_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
TOKEN_ID = re.compile(r"^(?:slk_)?([0-9a-f]{16})(?:\.[A-Za-z0-9_-]{43})?$")
MAX_PASSWORD_LENGTH = 1024
MAX_TOKEN_LENGTH = 128

_hasher = PasswordHasher()


class HashCapacity(Exception):
    """Too many password hashes running in this process: answer 503 at once, do not queue."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    admin: bool = False
    # The session epoch (see the module's docstring); "" for users made before it existed.
    session: str = field(default="", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What never changes about a token whose secret was checked: its id, owner, expiry."""

    token_id: str
    user: str
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    user: str
    created_at: int | None
    expires_at: int | None


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_id_of(value: str) -> str | None:
    """The id of ``slk_<id>.<secret>``, ``slk_<id>`` or ``<id>``; None if it is none of these."""
    match = TOKEN_ID.match(value) if isinstance(value, str) else None
    return match.group(1) if match else None


class Users:
    """``max_hashes`` caps the argon2 hashes (64 MiB each) running at once through this
    object (one per web process); over the cap ``check_password`` raises HashCapacity."""

    def __init__(self, client: redis.Redis, *, max_hashes: int | None = None,
                 hasher: PasswordHasher | None = None):
        self.client = client
        self.hasher = hasher or _hasher
        self._slots = threading.BoundedSemaphore(max_hashes) if max_hashes else None

    def get(self, name: str) -> User | None:
        if not isinstance(name, str) or not USER_NAME.match(name):
            return None
        return self.user_of(self.client.hgetall(user_key(name)))

    @staticmethod
    def user_of(data: dict[str, str] | None) -> User | None:
        """The user of a ``sl:{user:<name>}`` record read by ``HGETALL``; None if gone."""
        if not data or "name" not in data:
            return None
        return User(data["name"], data.get("admin") == "1", data.get("session", ""))

    def add(self, name: str, *, admin: bool = False, password: str | None = None) -> User:
        """Create user ``name``, or change its admin flag (and password, when given).

        A new password ends every web session of the user."""
        if not USER_NAME.match(name):
            raise ValueError(f"user name {name!r} must be 1-64 characters of letters, digits, "
                             "'_', '.', '@' and '-', starting with a letter or digit")
        fields = {"name": name, "admin": "1" if admin else "0"}
        if password is not None:
            if not password:
                raise ValueError("the password must not be empty")
            if len(password) > MAX_PASSWORD_LENGTH:
                raise ValueError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
            fields["password"] = self.hasher.hash(password)
            fields["session"] = secrets.token_hex(8)
        # listed first: the list is in another slot than the user's record
        self.client.sadd(USERS, name)
        with self.client.pipeline(transaction=True) as pipe:  # one slot: {user:NAME}
            pipe.hsetnx(user_key(name), "created_at", str(int(time.time())))
            pipe.hsetnx(user_key(name), "session", secrets.token_hex(8))
            pipe.hset(user_key(name), mapping=fields)
            pipe.execute()
        legacy_keys.mirror(self.client, legacy_keys.user_pairs(name))
        return self.get(name) or User(name, admin)

    def remove(self, name: str) -> bool:
        """Delete user ``name`` and all its tokens; its sessions end with the record."""
        if self.get(name) is None:
            return False
        # The record goes first: from then on no token or session of the user works, even
        # if this process dies before the tokens are deleted. Keys of other slots are never
        # in one transaction (Redis Cluster), so the order is what makes it safe.
        # Token ids listed under the old name too (issued by a process of the release
        # before, see legacy_keys), and that record deleted first: a crash then leaves the
        # user removed for old processes and present for this release, which a second
        # removal completes.
        old_record, old_tokens = legacy_user_keys(name).values()
        token_ids = self.client.smembers(user_tokens_key(name)) | self.client.smembers(old_tokens)
        self.client.delete(old_record)
        self.client.delete(user_key(name))
        with self.client.pipeline(transaction=False) as pipe:
            for token_id in token_ids:
                pipe.delete(token_key(token_id))
            pipe.delete(user_tokens_key(name))
            pipe.delete(old_tokens)  # another slot: its own DEL
            pipe.srem(USERS, name)
            pipe.execute()
        return True

    # -- API tokens ----------------------------------------------------------------------

    def issue_token(self, name: str, *, expires_in_s: int | None = None) -> str:
        """A fresh API token for an existing user; the token itself is not stored."""
        if self.get(name) is None:
            raise KeyError(name)
        if expires_in_s is not None and expires_in_s <= 0:
            raise ValueError("a token's lifetime must be positive")
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = int(time.time())
        record = {"user": name, "hash": hash_secret(secret), "created_at": str(now)}
        if expires_in_s is not None:
            record["expires_at"] = str(now + expires_in_s)
        # Listed before it exists, so that no working token is ever missing from the list.
        self.client.sadd(user_tokens_key(name), token_id)
        with self.client.pipeline(transaction=True) as pipe:  # one key
            pipe.hset(token_key(token_id), mapping=record)
            if expires_in_s is not None:
                pipe.expireat(token_key(token_id), now + expires_in_s)
            pipe.execute()
        return f"{TOKEN_PREFIX}{token_id}.{secret}"

    def authenticate(self, token: object) -> User | None:
        """The user of a valid, unexpired token; None for anything else (never raises)."""
        verified = self.verify_token(token)
        return self.get(verified.user) if verified is not None else None

    def verify_token(self, token: object) -> VerifiedToken | None:
        """The token's id, owner and expiry if its secret matches the stored hash and it has
        not expired (the owner is not looked up); None for anything else (never raises)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            return None
        match = TOKEN.match(token)
        if not match:
            return None
        token_id, secret = match.groups()
        record = self.client.hgetall(token_key(token_id))
        stored = record.get("hash") if record else None
        if not stored or not hmac.compare_digest(stored, hash_secret(secret)):
            return None
        expires_at = record.get("expires_at")
        expiry = int(expires_at) if expires_at and expires_at.isdigit() else None
        if expiry is not None and expiry <= time.time():
            return None
        return VerifiedToken(token_id, record.get("user", ""), expiry)

    def tokens(self, name: str) -> list[TokenInfo]:
        """The user's live tokens (ids only: secrets are not stored), oldest first."""
        found = []
        for token_id in sorted(self.client.smembers(user_tokens_key(name))):
            record = self.client.hgetall(token_key(token_id))
            if not record:  # expired: Redis dropped it; forget the id too
                self.client.srem(user_tokens_key(name), token_id)
                continue
            found.append(TokenInfo(token_id, record.get("user", name),
                                   _int(record.get("created_at")), _int(record.get("expires_at"))))
        return sorted(found, key=lambda t: (t.created_at or 0, t.token_id))

    def revoke(self, token: str) -> bool:
        """Revoke a token given as ``slk_<id>.<secret>``, ``slk_<id>`` or its id."""
        token_id = token_id_of(token)
        if token_id is None:
            return False
        owner = self.client.hget(token_key(token_id), "user")
        deleted = self.client.delete(token_key(token_id))
        if owner:
            self.client.srem(user_tokens_key(owner), token_id)
        return bool(deleted)

    # -- passwords -----------------------------------------------------------------------

    def check_password(self, name: object, password: object) -> User | None:
        """The user if ``password`` is right, else None (never raises on odd input).

        Raises HashCapacity when ``max_hashes`` hashes are already running. A hash made
        with older argon2 parameters is replaced on a successful sign-in."""
        if not isinstance(name, str) or not USER_NAME.match(name):
            return None
        if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD_LENGTH:
            return None
        try:
            password.encode()
        except UnicodeError:  # lone surrogates
            return None
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise HashCapacity("too many sign-ins at once; try again in a second")
        try:
            return self._verify(name, password)
        finally:
            if self._slots is not None:
                self._slots.release()

    def _verify(self, name: str, password: str) -> User | None:
        stored = self.client.hget(user_key(name), "password")
        if not stored:
            self.hasher.hash(password)  # same cost whether or not the user exists
            return None
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if self.hasher.check_needs_rehash(stored):
            # Only if the hash is still the one we checked: a concurrent change wins.
            new = self.hasher.hash(password)
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(user_key(name))
                    if pipe.hget(user_key(name), "password") == stored:
                        pipe.multi()
                        pipe.hset(user_key(name), "password", new)
                        pipe.execute()
                except redis.WatchError:
                    pass
        return self.get(name)


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None
