"""``/healthz`` (process up), ``/readyz`` (database and Redis answer), ``/metrics``."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from hub.core.metrics import generate_latest

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(ok=True)


@bp.get("/readyz")
def readyz():
    rt = current_app.extensions["coexhub"]
    checks = {}
    for name, probe in (("database", rt.db.ping), ("redis", rt.redis.ping)):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # reported, not raised: this endpoint exists to say so
            checks[name] = f"error: {type(exc).__name__}: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(ok=ready, checks=checks), 200 if ready else 503


@bp.get("/metrics")
def metrics():
    registry = current_app.extensions["coexhub.metrics"]
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4")
