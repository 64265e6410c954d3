"""Settings, read from the environment by a function (never at import time)."""

from __future__ import annotations

import os
import secrets
import socket
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_KEY_LENGTH = 32


class Settings(BaseSettings):
    """Every knob of slotlock. ``Settings()`` reads the environment; tests pass overrides."""

    # hide_input_in_errors: a bad setting is named in the error, its value (a password in
    # REDIS_URL, a SECRET_KEY) never is.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True,
                                      hide_input_in_errors=True)

    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias="REDIS_URL")
    # rq's queues (slotlock jobs): REDIS_URL unless set; a standalone Redis is required when
    # slotlock's data is on a Redis Cluster (rq's scripts and transactions span slots)
    jobs_redis_url: str | None = Field(None, validation_alias="SLOTLOCK_JOBS_REDIS_URL")
    port: int = Field(8000, validation_alias="PORT")
    secret_key: str | None = Field(None, validation_alias="SECRET_KEY")
    env: Literal["production", "development"] = Field("production", validation_alias="SLOTLOCK_ENV")
    lease_ttl_ms: int = Field(2000, validation_alias="SLOTLOCK_LEASE_TTL_MS", ge=100)
    reply_timeout_ms: int = Field(5000, validation_alias="SLOTLOCK_REPLY_TIMEOUT_MS", ge=0)
    # Web threads (G8): requests waiting for their outcome at once, per web process; past it
    # a request answers 202 at once. And how long a client may take to send a whole request.
    max_reply_waits: int = Field(12, validation_alias="SLOTLOCK_MAX_REPLY_WAITS", ge=0)
    request_read_timeout_s: float = Field(10.0, validation_alias="SLOTLOCK_REQUEST_READ_TIMEOUT_S",
                                          gt=0, le=300)
    worker_id: str | None = Field(None, validation_alias="SLOTLOCK_WORKER_ID")
    default_timezone: str = Field("UTC", validation_alias="SLOTLOCK_DEFAULT_TIMEZONE")
    batch_size: int = Field(256, validation_alias="SLOTLOCK_BATCH_SIZE", ge=1, le=5000)
    backlog_limit: int = Field(10_000, validation_alias="SLOTLOCK_BACKLOG_LIMIT", ge=0)
    idle_release_ms: int = Field(1000, validation_alias="SLOTLOCK_IDLE_RELEASE_MS", ge=0)
    reply_ttl_ms: int = Field(120_000, validation_alias="SLOTLOCK_REPLY_TTL_MS", ge=1000)
    idempotency_ttl_s: int = Field(86_400, validation_alias="SLOTLOCK_IDEMPOTENCY_TTL_S", ge=60)
    redis_timeout_ms: int = Field(2000, validation_alias="SLOTLOCK_REDIS_TIMEOUT_MS", ge=100)
    # Redis Cluster: "auto" asks the server (INFO cluster) and refuses one, "on" says it is one
    # (the cluster client: a preview for the web, the workers and the CLI; the jobs refuse),
    # "off" skips the check (docs/cluster.md).
    redis_cluster: Literal["auto", "on", "off"] = Field("auto",
                                                        validation_alias="SLOTLOCK_REDIS_CLUSTER")
    # Deployments with Redis replicas: an outcome is only told once N replicas have it.
    wait_replicas: int = Field(0, validation_alias="SLOTLOCK_WAIT_REPLICAS", ge=0)
    wait_replicas_timeout_ms: int = Field(1000, validation_alias="SLOTLOCK_WAIT_REPLICAS_TIMEOUT_MS",
                                          ge=1)
    # run on a Redis whose maxmemory-policy may evict keys (unsafe: see redis_conn)
    allow_eviction: bool = Field(False, validation_alias="SLOTLOCK_ALLOW_EVICTION")
    rate_limit: str = Field("600/minute", validation_alias="SLOTLOCK_RATE_LIMIT")
    # -- sign-in and proxies (see README, Security) --------------------------------------------
    # Unverified requests (no or a bad token, sign-in pages) per client address.
    anonymous_rate_limit: str = Field("60/minute", validation_alias="SLOTLOCK_ANONYMOUS_RATE_LIMIT")
    # Password guesses: per client address, and per user name (whatever the address).
    signin_rate_limit: str = Field("10/minute", validation_alias="SLOTLOCK_SIGNIN_RATE_LIMIT")
    signin_user_rate_limit: str = Field("20/hour", validation_alias="SLOTLOCK_SIGNIN_USER_RATE_LIMIT")
    # argon2 hashes (64 MiB each) at once per web process; over it a sign-in gets a quick 503.
    max_concurrent_hashes: int = Field(2, validation_alias="SLOTLOCK_MAX_CONCURRENT_HASHES", ge=1)
    # How many proxies in front of the web process set X-Forwarded-For/-Proto/-Host (0: none,
    # the headers are ignored and the peer address is the client).
    trusted_proxies: int = Field(0, validation_alias="SLOTLOCK_TRUSTED_PROXIES", ge=0, le=5)
    max_body_bytes: int = Field(16_384, validation_alias="SLOTLOCK_MAX_BODY_BYTES", ge=256)
    # -- background jobs (slotlock jobs): audit, notifications, retention --------------------
    audit_interval_s: int = Field(300, validation_alias="SLOTLOCK_AUDIT_INTERVAL_S", ge=1)
    audit_nightly_days: int = Field(7, validation_alias="SLOTLOCK_AUDIT_NIGHTLY_DAYS", ge=1)
    audit_nightly_hour: int = Field(3, validation_alias="SLOTLOCK_AUDIT_NIGHTLY_HOUR", ge=0, le=23)
    retention_days: int = Field(30, validation_alias="SLOTLOCK_RETENTION_DAYS", ge=1)
    retention_interval_s: int = Field(3600, validation_alias="SLOTLOCK_RETENTION_INTERVAL_S",
                                      ge=1)
    # a day changed lately whose stream holds more entries than this is compacted (snapshot
    # and trim) whatever its date, so no day's stream grows without bound (G8)
    compact_after: int = Field(5000, validation_alias="SLOTLOCK_COMPACT_AFTER", ge=10)
    outbox_sweep_s: int = Field(60, validation_alias="SLOTLOCK_OUTBOX_SWEEP_S", ge=1)
    notify_poll_ms: int = Field(500, validation_alias="SLOTLOCK_NOTIFY_POLL_MS", ge=10)
    # Gone: each calendar has its own webhook secret (slotlock.webhooks). Refused if set, so
    # that nobody believes it still signs anything.
    webhook_secret: str | None = Field(None, validation_alias="SLOTLOCK_WEBHOOK_SECRET")
    webhook_timeout_s: float = Field(5.0, validation_alias="SLOTLOCK_WEBHOOK_TIMEOUT_S", gt=0)
    notify_retry_intervals: str = Field("2,10,30,120,600",
                                        validation_alias="SLOTLOCK_NOTIFY_RETRY_INTERVALS")
    notify_dedup_ttl_s: int = Field(7 * 86_400, validation_alias="SLOTLOCK_NOTIFY_DEDUP_TTL_S",
                                    ge=60)

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from .model.timeutil import zone

        zone(value)
        return value

    # True when SECRET_KEY was not configured and a random development key was made here.
    _secret_key_generated: bool = PrivateAttr(False)

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.worker_id:
            self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        if self.env == "production" and len(self.secret_key or "") < MIN_SECRET_KEY_LENGTH:
            raise ValueError(
                f"SECRET_KEY of at least {MIN_SECRET_KEY_LENGTH} characters is required when "
                "SLOTLOCK_ENV=production (the default); make one with: python3 -c "
                "'import secrets; print(secrets.token_urlsafe(32))', or set "
                "SLOTLOCK_ENV=development on a machine of your own")
        if not self.secret_key:
            self.secret_key = secrets.token_hex(32)
            self._secret_key_generated = True
        if ":" in self.worker_id:
            raise ValueError("SLOTLOCK_WORKER_ID may not contain ':'")
        return self

    @field_validator("webhook_secret")
    @classmethod
    def _no_global_webhook_secret(cls, value: str | None) -> None:
        if value is not None:
            raise ValueError("SLOTLOCK_WEBHOOK_SECRET is no longer used: each calendar has its "
                             "own webhook secret (slotlock calendar put ID "
                             "--rotate-webhook-secret); unset it")

    @field_validator("notify_retry_intervals")
    @classmethod
    def _intervals(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or any(not p.isdigit() for p in parts):
            raise ValueError("a comma-separated list of seconds, e.g. 2,10,30")
        return ",".join(parts)

    @property
    def retry_intervals(self) -> list[int]:
        return [int(p) for p in self.notify_retry_intervals.split(",")]

    @property
    def secret_key_generated(self) -> bool:
        return self._secret_key_generated

    @property
    def renew_interval_ms(self) -> int:
        """Renew a lease three times per TTL, so two renewals may fail before it lapses."""
        return max(self.lease_ttl_ms // 3, 30)


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)


def redacted_url(url: str) -> str:
    """``url`` with its password (and user) replaced by ``***``: fit for logs and output."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # unparsable (e.g. a bad port): show nothing of it
        return "<unparsable URL>"
