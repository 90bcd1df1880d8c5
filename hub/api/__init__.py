"""The ``/api/v1`` JSON API: one flask-smorest blueprint per resource."""
from __future__ import annotations

from flask import current_app, g, request
from flask_smorest import Blueprint

from hub.api.auth import require_workspace
from hub.api.errors import ApiError


def runtime():
    return current_app.extensions["coexhub"]


def workspace_blueprint(name: str, description: str) -> Blueprint:
    """A blueprint whose every route needs a workspace API key (``g.workspace_id``)."""
    bp = Blueprint(name, __name__, url_prefix="/api/v1", description=description)
    bp.before_request(_authenticate)
    return bp


def _authenticate() -> None:
    require_workspace()  # a before_request hook must return None to let the view run


def page_args(default: int = 50, maximum: int = 500) -> tuple[int, int]:
    try:
        limit = min(int(request.args.get("limit", default)), maximum)
        offset = int(request.args.get("offset", 0))
    except ValueError as exc:
        raise ApiError(400, "bad_request", "limit and offset must be integers") from exc
    return max(limit, 1), min(max(offset, 0), 2**62)


def owned(session, model, object_id):
    """The workspace's object with this id, or 404 (another workspace's objects do not exist;
    an integer id is named by its public id in the message)."""
    if isinstance(object_id, int) and not 0 < object_id < 2**63:
        raise ApiError(404, "not_found", f"no {model.__tablename__[:-1]}")
    obj = session.get(model, object_id)
    if obj is None or obj.workspace_id != g.workspace_id:
        from hub.api import ids

        prefix = ids.TABLES.get(model.__tablename__)
        if isinstance(object_id, int) and prefix:
            raise ids.not_found(prefix, ids.encode(prefix, object_id))
        raise ApiError(404, "not_found", f"no {model.__tablename__[:-1]} {object_id}")
    return obj
