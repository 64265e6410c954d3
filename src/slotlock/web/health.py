"""Liveness and readiness, outside the API (no token, no rate limit)."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    try:
        current_app.extensions["slotlock"].client.redis.ping()
    except redis.RedisError:
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})
