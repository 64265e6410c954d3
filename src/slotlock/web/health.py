"""Liveness and readiness, outside the API (no token, no rate limit)."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from ..errors import UnsuitableRedis
from ..redis_conn import REDIS_ERRORS

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    services = current_app.extensions["slotlock"]
    try:
        services.client.redis.ping()
        services.server_checked(fresh=True)  # if Redis did not answer at start-up
    except UnsuitableRedis as exc:  # logged by server_checked, at most once a minute
        return jsonify({"status": "unsuitable", "error": str(exc)}), 503
    except REDIS_ERRORS:
        return jsonify({"status": "unavailable"}), 503
    return jsonify({"status": "ok"})
