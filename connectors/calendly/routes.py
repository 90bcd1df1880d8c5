"""``POST /api/v1/installations/<id>/calendly/subscribe`` (added through the ``coexhub_blueprints`` hook)."""
from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from hub.api.auth import require_workspace
from hub.api.errors import ApiError

bp = Blueprint("calendly", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate() -> None:
    require_workspace()  # a workspace API key, like every /api/v1 route


@bp.route("/installations/<installation_id>/calendly/subscribe", methods=["POST"])
def subscribe(installation_id: str):
    """Create the Calendly webhook subscription; 201 with what Calendly created, else a clear 4xx/502."""
    from connectors.calendly.subscribe import SubscribeError, subscribe_installation

    body = request.get_json(silent=True) if request.content_length else {}
    scope = body.get("scope") if isinstance(body, dict) else None
    if scope not in (None, "user", "organization"):
        raise ApiError(422, "validation_error", "scope must be 'user' or 'organization'")
    try:
        result = subscribe_installation(current_app.extensions["coexhub"], installation_id, g.workspace_id, scope)
    except SubscribeError as exc:
        details = {"calendly": exc.calendly} if exc.calendly is not None else {}
        raise ApiError(exc.status, exc.code, exc.message, **details) from exc
    return jsonify(result), 201
